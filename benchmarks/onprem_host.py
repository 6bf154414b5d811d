"""OpenSSH's sshd on 127.0.0.1 standing for an on-prem host: the benchmarks' ``--cloud ssh``.

On-prem hosts and cloud VMs answer with OpenSSH's sshd, where the ``local`` cloud's sandbox
answers with asyncssh's (Python). A benchmark registers this host as an admin does (the body
below: the user's identity file; then the host key confirmed by its fingerprint) and creates
its compute server on it in the ``ssh`` cloud.

Importing this imports nothing of Jupyter's (``kernels.py`` reads its arguments before it
points Jupyter's directories at its run); ``start_onprem_host`` does.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.sshd import OpenSSHServer

#: The ``ssh`` cloud enabled beside the default one (Jupyter's and the CLI's configuration).
ENABLED_CLOUDS = ["local", "ssh"]
#: What each ``--cloud`` measures, for a report's heading: which SSH daemon answers.
DAEMONS = {
    "local": "a local-cloud server (its SSH daemon: OpenSSH's sshd where installed, the default)",
    "local-asyncssh": "a local-cloud server behind the built-in SSH daemon (asyncssh's, Python)",
    "ssh": "a server on an on-prem host (its SSH daemon: OpenSSH's sshd)",
}
#: Jupyter's configuration for ``--cloud local-asyncssh`` (``c.LocalCloud.ssh_daemon``).
BUILT_IN_DAEMON = {"LocalCloud": {"ssh_daemon": "asyncssh"}}


def add_cloud_argument(parser: argparse.ArgumentParser) -> None:
    """A benchmark's ``--cloud``: which compute server, so which SSH daemon, it measures."""
    parser.add_argument(
        "--cloud",
        choices=tuple(DAEMONS),
        default="local",
        help="the compute server: the local cloud's (default: its SSH daemon is OpenSSH's sshd"
        " where installed), the local cloud's behind its built-in daemon (asyncssh's), or one on"
        " an on-prem host of the ssh cloud behind OpenSSH's sshd on 127.0.0.1",
    )


@dataclass
class OnPremHost:
    sshd: OpenSSHServer
    identity: Path

    def registration(self) -> dict[str, Any]:
        """``POST hosts``'s body for it (the REST API's and ``HostRegistry.create``'s)."""
        return {
            "name": "bench-host",
            "hostname": "127.0.0.1",
            "port": self.sshd.port,
            "username": self.sshd.username,
            "identity_file": str(self.identity),
            # The host's Python with ipykernel: this one, as an admin would set it.
            "python": sys.executable,
        }

    @staticmethod
    def server_config(host_id: int) -> dict[str, Any]:
        """A compute server's hardware on it: a slice of one CPU."""
        return {"cpu": 1, "memory_gb": 1, "extra": {"host": host_id}}

    def stop(self) -> None:
        self.sshd.process.terminate()
        self.sshd.process.wait(10)


def start_onprem_host(directory: Path) -> OnPremHost:
    """The host's sshd, accepting a key made for it, with its home (where the ``ssh`` cloud
    keeps servers' workspaces) in ``directory``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.sshd import start_sshd_with_identity

    home = directory / "host_home"
    home.mkdir()
    identity = directory / "id_host"
    sshd = start_sshd_with_identity(directory / "sshd", identity, env={"HOME": str(home)})
    return OnPremHost(sshd, identity)
