"""A real OpenSSH sshd on 127.0.0.1, with its own host key and authorized keys in a temp dir."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from jupyter_compute_servers.clouds.base import Cloud, CloudStatus, Operation, SSHEndpoint
from jupyter_compute_servers.models import State

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class OpenSSHServer:
    port: int
    host_key: str
    username: str
    process: subprocess.Popen[bytes]


def start_sshd(
    directory: Path,
    authorized_public_key: str,
    env: dict[str, str] | None = None,
    *,
    tcp_forwarding: bool = True,
    extra_config: str = "",
) -> OpenSSHServer:
    """``env``: extra environment for every session (HOME, PYTHONPATH...; no spaces).
    ``tcp_forwarding``: False refuses ``direct-tcpip`` channels (as many clusters' login
    nodes do). ``extra_config``: more sshd_config lines (e.g. ``TrustedUserCAKeys``)."""
    if not os.path.exists(SSHD):
        raise RuntimeError("OpenSSH's sshd is not installed: apt-get install openssh-server")
    os.makedirs("/run/sshd", exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_path = directory / "ssh_host_ed25519_key"
    host_key_path.write_bytes(host_key.export_private_key())
    os.chmod(host_key_path, 0o600)
    authorized = directory / "authorized_keys"
    authorized.write_text(authorized_public_key + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key_path}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile {directory / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        f"PubkeyAuthentication yes\nAllowTcpForwarding {'yes' if tcp_forwarding else 'no'}\n"
        "PermitRootLogin yes\n"
        f"SetEnv {' '.join(f'{k}={v}' for k, v in {'SHLVL': '1', **(env or {})}.items())}\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n" + extra_config
    )
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stderr=open(directory / "sshd.log", "ab"),  # noqa: SIM115 - sshd keeps writing to it
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((directory / "sshd.log").read_text()) from None
            time.sleep(0.05)
    return OpenSSHServer(
        port, host_key.export_public_key().decode().strip(), getpass.getuser(), process
    )


def start_sshd_with_identity(
    directory: Path, identity: Path, env: dict[str, str] | None = None, **options: Any
) -> OpenSSHServer:
    """``start_sshd`` in ``directory`` (made here), accepting a new key whose private half is
    written to ``identity`` (0600), for the user to log in with as with their own key."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    identity.write_bytes(key.export_private_key())
    identity.chmod(0o600)
    directory.mkdir()
    return start_sshd(directory, key.export_public_key().decode().strip(), env, **options)


class OpenSSHHost(Cloud):
    """A test cloud: one machine that is always there, reached through OpenSSH."""

    name = "openssh"
    label = "A host behind OpenSSH"
    config_fields = frozenset()
    endpoint: SSHEndpoint

    def defaults(self) -> dict[str, Any]:
        return {}

    def offerings(self) -> dict[str, Any]:
        return {}

    async def create(self, op: Operation) -> None:
        pass

    async def start(self, op: Operation) -> None:
        pass

    async def stop(self, op: Operation) -> None:
        pass

    async def deprovision(self, op: Operation) -> None:
        pass

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        return CloudStatus(State.RUNNING)

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        return self.endpoint


def session_daemons(listener: int) -> list[int]:
    """The sshd processes serving connections (the listener's descendants named sshd); the
    agent, the kernels and their relays are not among them."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parents[int(entry.name)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), name)
    found, frontier = [], [listener]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, name) in parents.items():
            if ppid == parent:
                frontier.append(pid)
                if name == "sshd":
                    found.append(pid)
    return found


def daemon_and_sessions(listener: int) -> list[int]:
    """A server's whole SSH daemon: its listener and the processes serving its connections
    (none of its own for ``local_sshd``, which serves them in its one process). Stopping or
    killing these is what a frozen or crashed daemon is, whichever daemon it is."""
    return [listener, *session_daemons(listener)]


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@contextlib.contextmanager
def stalled_sessions(listener: int) -> Iterator[list[int]]:
    """A stalled link for the block's length: the sshd processes serving the listener's
    connections stopped (SIGSTOP), then continued."""
    daemons = session_daemons(listener)
    assert daemons, "no session of this sshd to stall"
    signal_all(daemons, signal.SIGSTOP)
    try:
        yield daemons
    finally:
        signal_all(daemons, signal.SIGCONT)
