"""An admin's **revocation** of a Hub user's access to the team's compute servers, and its
undoing (restore).

A revoked user gets nothing more from the control plane (no certificate, no database login, no
proxied Compute Engine call: ``check`` answers 403), their database role is made NOLOGIN and
its open sessions ended (``logins.DatabaseLogins.disable``), and the certificates the CA issued
to them that have not expired yet are listed in the OpenSSH KRL that hosts fetch for sshd's
``RevokedKeys`` (``krl``). Restoring lets the user get new credentials; the certificates
revoked stay revoked until they expire (whoever holds them may be who left).

Kept in one JSON file (0600, the Hub's account's; written whole and renamed, so a crash leaves
the old or the new): the revoked users (who revoked them, when) and what the CA issued in the
last validity window (serial, user, valid_before), which the KRL needs. A file rather than a
table because a control plane may run with no database (the CA or the Compute Engine proxy
alone) and revocation is for every configuration; it sits beside the CA key by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..hub_user_names import user_name_problem
from .errors import ControlPlaneError
from .private_files import check_private

#: What a revoked user is told, whatever they asked for.
REVOKED_MESSAGE = "your access to the team's compute servers was revoked by an admin; ask them"


class Revoked(ControlPlaneError):
    """The caller's access was revoked by an admin."""

    def __init__(self) -> None:
        super().__init__(REVOKED_MESSAGE, status=403, field="user")


@dataclass(frozen=True)
class Revocation:
    user: str
    by: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "revoked_by": self.by, "revoked_at": self.at}


def valid_user(value: Any) -> str:
    """A Hub user name as given in a request, or the control plane's 400."""
    problem = user_name_problem(value)
    if problem is not None:
        raise ControlPlaneError(problem, field="user")
    return value


class Revocations:
    """The revoked users and the certificates issued, in the JSON file at ``path``."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self.revoked: dict[str, Revocation] = {}
        #: Certificates issued and not yet expired: serial -> (user, valid_before).
        self.issued: dict[int, tuple[str, int]] = {}
        #: Serials revoked (with their expiry): in the KRL until they expire.
        self.revoked_serials: dict[int, int] = {}
        self._krl: bytes | None = None
        self._load()

    # --- the file -----------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._save()
            return
        check_private(self.path, "The revocations file", "revocations_file", ControlPlaneError)
        try:
            data = json.loads(self.path.read_text())
            self.revoked = {
                r["user"]: Revocation(str(r["user"]), str(r["by"]), float(r["at"]))
                for r in data["revoked"]
            }
            self.issued = {int(s): (str(u), int(v)) for s, u, v in data["issued"]}
            self.revoked_serials = {int(s): int(v) for s, v in data["revoked_serials"]}
        except (ValueError, KeyError, TypeError) as e:
            raise ControlPlaneError(
                f"The revocations file {self.path} is not one the control plane wrote ({e}); "
                f"restore it from a backup, or remove it to start with no revocations.",
                field="revocations_file",
            ) from None

    def _save(self) -> None:
        self._prune()
        data = {
            "revoked": [{"user": r.user, "by": r.by, "at": r.at} for r in self.revoked.values()],
            "issued": [[s, u, v] for s, (u, v) in self.issued.items()],
            "revoked_serials": [[s, v] for s, v in self.revoked_serials.items()],
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".revocations-")
        try:
            with os.fdopen(fd, "w") as f:  # (mkstemp's file is 0600)
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _prune(self) -> None:
        now = self.clock()
        self.issued = {s: (u, v) for s, (u, v) in self.issued.items() if v > now}
        before = len(self.revoked_serials)
        self.revoked_serials = {s: v for s, v in self.revoked_serials.items() if v > now}
        if len(self.revoked_serials) != before:
            self._krl = None

    # --- revoking -----------------------------------------------------------------------

    def check(self, user: str) -> None:
        """Raise ``Revoked`` (403) when ``user``'s access is revoked."""
        if user in self.revoked:
            raise Revoked()

    def revoke(self, user: str, by: str) -> Revocation:
        """Revoke ``user`` (again: the first revocation stands); their certificates not yet
        expired go into the KRL."""
        with self._lock:
            revocation = self.revoked.get(user) or Revocation(user, by, self.clock())
            self.revoked[user] = revocation
            for serial, (owner, valid_before) in list(self.issued.items()):
                if owner == user:
                    self.revoked_serials[serial] = valid_before
                    del self.issued[serial]
            self._krl = None
            self._save()
        return revocation

    def restore(self, user: str) -> bool:
        """Let ``user`` get credentials again; False when they were not revoked. The
        certificates revoked stay in the KRL until they expire."""
        with self._lock:
            if self.revoked.pop(user, None) is None:
                return False
            self._save()
        return True

    def list(self) -> list[Revocation]:
        return sorted(self.revoked.values(), key=lambda r: (r.at, r.user))

    def record_issued(self, serial: int, user: str, valid_before: int) -> None:
        """Remember a certificate the CA issued, until it expires (the KRL may need it).
        Raises ``Revoked`` when ``user`` was revoked since it was asked for: it is not to be
        handed out then (a revocation's list of serials would miss it)."""
        with self._lock:
            self.check(user)
            self.issued[serial] = (user, valid_before)
            self._save()

    # --- the KRL ------------------------------------------------------------------------

    def krl(self, ca_public_key: str) -> bytes:
        """The OpenSSH KRL of the revoked certificates of the CA ``ca_public_key`` (made by
        ``ssh-keygen -k``; kept until the revoked serials change). Blocking: call it off the
        event loop."""
        with self._lock:
            self._prune()
            if self._krl is None:
                self._krl = _make_krl(ca_public_key, sorted(self.revoked_serials))
            return self._krl


def _make_krl(ca_public_key: str, serials: list[int]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="compute-servers-krl-") as directory:
        d = Path(directory)
        (d / "ca.pub").write_text(ca_public_key + "\n")
        (d / "spec").write_text("".join(f"serial: {s}\n" for s in serials))
        try:
            done = subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-k",
                    "-f",
                    str(d / "krl"),
                    "-s",
                    str(d / "ca.pub"),
                    str(d / "spec"),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except FileNotFoundError:
            raise ControlPlaneError(
                "ssh-keygen is not installed where the control plane runs: install OpenSSH's "
                "client (apt-get install openssh-client) to serve the revoked keys.",
                status=503,
                field="krl",
            ) from None
        if done.returncode:
            raise ControlPlaneError(
                f"ssh-keygen could not make the KRL: {done.stderr.strip()}",
                status=503,
                field="krl",
            )
        return (d / "krl").read_bytes()
