"""The control plane's secrets on disk (the CA key, the Compute Engine key, the revocations):
each must be a file of the account JupyterHub runs as that no one else may read, since the
whole team's access rests on it. One check, the same words everywhere."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ControlPlaneError


def check_private(path: Path, what: str, field: str, error: type[ControlPlaneError]) -> None:
    """Raise ``error`` (naming ``field``) unless ``path`` is this account's and 0600 or
    stricter; ``what`` names the file in the message ("The CA key")."""
    try:
        info = path.stat()
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror}.", field=field) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise error(
            f"{what} {path} may be read by others (mode {stat.S_IMODE(info.st_mode):o}); "
            f"chmod 600 it (only the Hub's account may read it).",
            field=field,
        )
    if info.st_uid != os.geteuid():
        raise error(
            f"{what} {path} belongs to uid {info.st_uid}, not to this account "
            f"({os.geteuid()}); chown it to the account JupyterHub runs as.",
            field=field,
        )
