"""The SSH server of one local compute server: ``python -m jupyter_compute_servers.clouds.local_sshd
SANDBOX``.

It runs detached from Jupyter (its own session), listens on 127.0.0.1 on a port the kernel
picks, accepts only the sandbox's host key and its one client key, and runs commands in the
sandbox's disk directory with ``HOME`` there. Every process it starts carries the sandbox's token
in its environment, which is how the local cloud finds and ends them all on stop, including
ones that detached themselves (kernels do).

Files in the sandbox it reads: ``ssh/host_key``, ``ssh/authorized_keys``, ``run/environment.json``
(extra environment: the token, CUDA_VISIBLE_DEVICES). It writes ``run/sshd.json`` (pid, port)
once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import asyncssh

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}
#: What the sandbox's processes inherit from Jupyter's environment: the basics, and how this
#: machine's container engines are configured (a local server uses Jupyter's own engine, as
#: its admin set it up).
PASSED_THROUGH = frozenset(
    {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "CONTAINERS_CONF",
        "CONTAINERS_REGISTRIES_CONF",
        "CONTAINERS_STORAGE_CONF",
        "CONTAINER_HOST",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "XDG_RUNTIME_DIR",
    }
)


def spawn(argv: list[str], sandbox: Path, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a sandbox's SSH server, this one or OpenSSH's (``local_openssh``): in a session of
    its own (it outlives Jupyter), in the sandbox, its output appended to ``run/sshd.log``, and
    the sandbox's ``environment`` (its token) in its own."""
    with open(sandbox / "run" / "sshd.log", "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=sandbox,
            env={**os.environ, **environment},
            start_new_session=True,
        )


def sandbox_shell() -> str:
    """The shell every session of a sandbox runs its command with, whichever daemon serves it
    (not the account's login shell, so that a sandbox behaves the same under both)."""
    return "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


def exit_status(returncode: int) -> int:
    """A shell's exit status for a child's return code (killed by signal N -> 128 + N)."""
    return returncode if returncode >= 0 else 128 - returncode


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class SandboxSSHServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        # Tunnels (kernel ports) may reach this machine's loopback only.
        return dest_host in LOOPBACK_NAMES

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.disk = root / "disk"
        self.environment: dict[str, str] = json.loads(
            (root / "run" / "environment.json").read_text()
        )
        self.shell = sandbox_shell()

    def env_for(self, process: asyncssh.SSHServerProcess[bytes]) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key in PASSED_THROUGH}
        env.update(
            HOME=str(self.disk), USER=os.environ.get("USER", "root"), SHELL=self.shell, SHLVL="1"
        )
        env.update(self.environment)
        for key, value in (process.env or {}).items():
            key = key.decode() if isinstance(key, bytes) else key
            value = value.decode() if isinstance(value, bytes) else value
            if key not in self.environment and key not in ("HOME", "PATH"):
                env[key] = value
        if process.term_type:
            env["TERM"] = process.term_type
        return env

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.subsystem:
            process.exit(1)
            return
        command = process.command
        argv = [self.shell, "-c", command] if command else [self.shell, "-l"]
        env = self.env_for(process)
        try:
            if process.term_type:
                status = await self._run_with_pty(process, argv, env)
            else:
                status = await self._run_with_pipes(process, argv, env)
        except OSError as e:
            process.stderr.write(f"cannot run command: {e}\n".encode())
            status = 127
        process.exit(status)

    async def _run_with_pipes(
        self, process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]
    ) -> int:
        child = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.disk,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert child.stdin and child.stdout and child.stderr

        async def pump_in() -> None:
            try:
                while True:
                    data = await process.stdin.read(65536)
                    if not data:
                        break
                    child.stdin.write(data)  # type: ignore[union-attr]
                    await child.stdin.drain()  # type: ignore[union-attr]
            except (asyncssh.Error, OSError, ConnectionError):
                pass
            finally:
                with contextlib.suppress(OSError, RuntimeError):
                    child.stdin.close()  # type: ignore[union-attr]

        async def pump_out(reader: asyncio.StreamReader, writer: Any) -> None:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    writer.write(data)
                    await writer.drain()
                except (asyncssh.Error, OSError, ConnectionError):
                    # The client went away: keep draining so the child is not blocked.
                    continue

        feeder = asyncio.create_task(pump_in())
        await asyncio.gather(
            pump_out(child.stdout, process.stdout), pump_out(child.stderr, process.stderr)
        )
        status = await child.wait()
        feeder.cancel()
        return exit_status(status)

    async def _run_with_pty(
        self, process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]
    ) -> int:
        master, slave = pty.openpty()
        self._set_size(master, process.term_size)

        def make_controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        child = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.disk,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=make_controlling_tty,
        )
        os.close(slave)
        loop = asyncio.get_running_loop()
        os.set_blocking(master, False)
        output_done = loop.create_future()

        def on_output() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if data:
                with contextlib.suppress(asyncssh.Error, OSError):
                    process.stdout.write(data)
            else:
                loop.remove_reader(master)
                if not output_done.done():
                    output_done.set_result(None)

        loop.add_reader(master, on_output)

        async def pump_in() -> None:
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.TerminalSizeChanged as change:
                    self._set_size(
                        master, (change.width, change.height, change.pixwidth, change.pixheight)
                    )
                    continue
                except (asyncssh.Error, OSError, ConnectionError):
                    break
                if not data:
                    break
                await loop.run_in_executor(None, os.write, master, data)

        feeder = asyncio.create_task(pump_in())
        try:
            await asyncio.wait({output_done, feeder}, return_when=asyncio.FIRST_COMPLETED)
            if not output_done.done():
                # The client left: hang up the terminal, as sshd does.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGHUP)
            status = await child.wait()
        finally:
            feeder.cancel()
            loop.remove_reader(master)
            os.close(master)
        return exit_status(status)

    @staticmethod
    def _set_size(fd: int, size: tuple[int, int, int, int]) -> None:
        width, height, pixwidth, pixheight = size
        if width and height:
            fcntl.ioctl(
                fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight)
            )


async def serve(root: Path) -> None:
    sandbox = Sandbox(root)
    server = await asyncssh.create_server(
        SandboxSSHServer,
        "127.0.0.1",
        0,
        server_host_keys=[str(root / "ssh" / "host_key")],
        authorized_client_keys=str(root / "ssh" / "authorized_keys"),
        process_factory=sandbox.handle,
        encoding=None,
        sftp_factory=True,
        allow_scp=True,
        agent_forwarding=False,
        x11_forwarding=False,
        keepalive_interval=30,
        line_editor=False,
    )
    port = server.sockets[0].getsockname()[1]
    write_atomically(root / "run" / "sshd.json", json.dumps({"pid": os.getpid(), "port": port}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    asyncio.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
