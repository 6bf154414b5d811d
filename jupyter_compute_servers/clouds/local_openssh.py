"""A local server's SSH server when OpenSSH's sshd is installed: the same sandbox as
``local_sshd`` gives, served by sshd, in C, instead of asyncssh's server, in Python.

Every kernel message, terminal keystroke and synced byte of a local server crosses its SSH
server, so the daemon's CPU is on each of them (in ``benchmarks/kernels.py``, 0.75 ms of
asyncssh's per ``execute`` round trip against 0.25 ms of sshd's). Cloud VMs and on-prem hosts
answer with OpenSSH's sshd too, so a local server now behaves as they do.

The sandbox is the same: sessions run in its ``disk/`` with ``HOME`` there, with the variables
``local_sshd`` passes (``PASSED_THROUGH``) and the sandbox's own (its token, which is how a
stop finds every process, and ``CUDA_VISIBLE_DEVICES``); only the sandbox's client key logs in;
port forwarding reaches this machine's loopback only. One sshd per sandbox, unprivileged
options only (no PAM), configured by ``run/sshd_config``; every session goes through
``run/session``, which enters the disk and runs the command with ``/bin/bash`` (``local_sshd``'s
shell), whatever the user's login shell is.

Whether a login works depends on this machine's account (its shell, a locked password): after
sshd listens, ``start`` logs in once with the sandbox's probe key, which may run nothing but
that login's command. When it cannot, the caller falls back to ``local_sshd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from .local_sshd import PASSED_THROUGH, sandbox_shell, spawn, write_atomically

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SFTP_SERVER_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
)
#: Where a root sshd insists on an empty directory (its privilege separation's chroot).
PRIVSEP_DIRECTORY = "/run/sshd"
#: Tries at a free port (another process may take the one chosen before sshd binds it).
PORT_TRIES = 3
#: Characters a path or value cannot carry into sshd_config (it reads ``%`` as a token in some
#: options, and a line ends the option).
UNQUOTABLE = re.compile(r"[\n\r\0%]")
#: Every session: into the disk, then the command (or a login shell) with the sandbox's shell,
#: as ``local_sshd`` runs it. ``SSH_ORIGINAL_COMMAND`` is the client's command, unset for a
#: login; sshd runs this with the account's shell as ``$SHELL -c '/bin/sh <this file>'``, a
#: form every shell reads alike.
SESSION_SCRIPT = """\
cd "$HOME" || exit 1
if [ -n "${SSH_ORIGINAL_COMMAND+set}" ]; then
    exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "$SHELL" -l
"""


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    candidates = ([found] if found else []) + list(SSHD_CANDIDATES)
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


def unavailable_reason(sandbox: Path) -> str | None:
    """Why OpenSSH's sshd cannot serve this sandbox here, or None if it can (so far as can be
    told before a login: ``start`` logs in to be sure)."""
    if find_sshd() is None:
        return "OpenSSH's sshd is not installed (apt-get install openssh-server)"
    if UNQUOTABLE.search(str(sandbox)) or '"' in str(sandbox):
        return f"the sandbox's path {str(sandbox)!r} cannot be written in an sshd_config"
    if os.geteuid() == 0 and not os.path.isdir(PRIVSEP_DIRECTORY):
        try:
            os.makedirs(PRIVSEP_DIRECTORY, mode=0o755, exist_ok=True)
        except OSError as e:
            return f"sshd run as root needs {PRIVSEP_DIRECTORY}, which cannot be made: {e}"
    return None


def _quoted(text: str) -> str:
    """One sshd_config argument: double-quoted, its quotes and backslashes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def session_environment(disk: Path, environment: dict[str, str]) -> dict[str, str]:
    """What every session gets besides what sshd sets itself (USER, LOGNAME, SSH_*): as
    ``local_sshd.Sandbox.env_for`` gives it. Values sshd_config cannot carry are left out."""
    env = {key: value for key, value in os.environ.items() if key in PASSED_THROUGH}
    env.update(HOME=str(disk), SHELL=sandbox_shell(), SHLVL="1")
    env.update(environment)
    return {key: value for key, value in env.items() if not UNQUOTABLE.search(value)}


def write_config(sandbox: Path, port: int, environment: dict[str, str]) -> Path:
    """``run/sshd_config`` and ``run/session`` for a daemon on 127.0.0.1:``port``."""
    run, ssh = sandbox / "run", sandbox / "ssh"
    session = run / "session"
    session.write_text(SESSION_SCRIPT)
    env = session_environment(sandbox / "disk", environment)
    sftp_server = next((p for p in SFTP_SERVER_CANDIDATES if os.access(p, os.X_OK)), None)
    lines = [
        "# Written by jupyter-compute-servers at each start of this local server.",
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {_quoted(str(ssh / 'host_key'))}",
        f"AuthorizedKeysFile {_quoted(str(ssh / 'authorized_keys'))}",
        f"AllowUsers {getpass.getuser()}",
        "PidFile none",
        "UsePAM no",
        # The sandbox is the user's own directory, under Jupyter's data dir: its modes are
        # Jupyter's to keep (the keys themselves are 0600).
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        # Forwarding to this machine's loopback only, as local_sshd allows: kernels, apps.
        "AllowTcpForwarding local",
        "PermitOpen 127.0.0.1:* localhost:* [::1]:*",
        "AllowStreamLocalForwarding no",
        "AllowAgentForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "ClientAliveInterval 30",
        # One connection carries every kernel, terminal and transfer of the server (the
        # default, 10 sessions per connection, is what a login node allows one person).
        "MaxSessions 1000",
        "LogLevel INFO",
        "SetEnv " + " ".join(_quoted(f"{key}={value}") for key, value in sorted(env.items())),
        f"ForceCommand /bin/sh {_quoted(str(session))}",
    ]
    if sftp_server:
        lines.append(f"Subsystem sftp {sftp_server}")
    config = run / "sshd_config"
    # Only this account reads it: it carries the sandbox's environment.
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    port: int


class OpenSSHStartError(Exception):
    """sshd did not start, or a login through it failed: the message says why."""


async def start(
    sandbox: Path, environment: dict[str, str], probe_key: asyncssh.SSHKey, timeout: float
) -> Started:
    """Start the sandbox's sshd with ``environment`` (its sessions get it through the config,
    which names the token: how ``local.sshd_pids`` finds the listener), write
    ``run/sshd.json``, and log in once with ``probe_key``. sshd reports a configuration it
    refuses in its log, which the error quotes."""
    sshd = find_sshd()
    if sshd is None:
        raise OpenSSHStartError("OpenSSH's sshd is not installed")
    run = sandbox / "run"
    log_path = run / "sshd.log"
    for _ in range(PORT_TRIES):
        port = _free_port()
        config = write_config(sandbox, port, environment)
        process = spawn([sshd, "-D", "-e", "-f", str(config)], sandbox, environment)
        # Written at once, so that a Jupyter killed during the start finds this daemon again.
        write_atomically(run / "sshd.json", json.dumps({"pid": process.pid, "port": port}))
        if await _listening(process, port, timeout):
            break
        _end(process)
        if "Address already in use" not in _log_tail(log_path):
            raise OpenSSHStartError(f"sshd did not start. Its log ends:\n{_log_tail(log_path)}")
    else:
        raise OpenSSHStartError(f"sshd found no free port. Its log ends:\n{_log_tail(log_path)}")
    try:
        await _log_in(port, sandbox, probe_key, timeout)
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
        _end(process)
        raise OpenSSHStartError(
            f"a login through sshd failed ({e or type(e).__name__}). Its log ends:\n"
            f"{_log_tail(log_path)}"
        ) from None
    return Started(process, port)


async def _listening(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        await asyncio.sleep(0.02)
    return False


async def _log_in(port: int, sandbox: Path, probe_key: asyncssh.SSHKey, timeout: float) -> None:
    host_key = asyncssh.read_public_key(sandbox / "ssh" / "host_key.pub")
    known_hosts = asyncssh.import_known_hosts(
        f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n"
    )
    async with asyncssh.connect(
        "127.0.0.1",
        port,
        username=getpass.getuser(),
        client_keys=[probe_key],
        known_hosts=known_hosts,
        agent_path=None,
        config=[],
        connect_timeout=timeout,
    ) as connection:
        result = await asyncio.wait_for(connection.run("true", check=False), timeout)
        if result.exit_status != 0:
            raise OSError(f"a command exited with {result.exit_status}: {result.stderr!s:.300}")


def _end(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-800:]
    except OSError:
        return ""


#: A sandbox's daemon, from its command line (NULs as spaces): ``local_sshd``'s argv, or
#: OpenSSH's sshd given ``<sandbox>/run/sshd_config`` (its argv, or the listener's title:
#: ``sshd: /usr/sbin/sshd -D -e -f <config> [listener] ...``).
_DAEMON = re.compile(
    rb"(?:-m jupyter_compute_servers\.clouds\.local_sshd (?P<asyncssh>.+)$)"
    rb"|(?:sshd.* -D -e -f (?P<openssh>.+)/run/sshd_config(?: |$))"
)


def daemon_sandbox(cmdline: bytes) -> str | None:
    """The sandbox whose SSH server this is (``/proc/<pid>/cmdline``), whichever daemon it is,
    or None when it is not one."""
    match = _DAEMON.search(cmdline.rstrip(b"\0").replace(b"\0", b" "))
    if match is None:
        return None
    return (match["asyncssh"] or match["openssh"]).decode(errors="replace")
