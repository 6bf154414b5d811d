"""A real ``jupyter server`` with the extension in its own process, to kill -9 and start again."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

TOKEN = "recovery-test-token"


def jupyter_server_command(
    port: int, token: str, root_dir: Path, data_dir: Path, *extra_args: str
) -> list[str]:
    """The command line of a real ``jupyter server`` with the extension, for tests and
    benchmarks: on ``port`` only (no retries elsewhere), with ``token``, serving ``root_dir``,
    the extension's store in ``data_dir``."""
    return [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        f"--ComputeServersApp.data_dir={data_dir}",
        "--ServerApp.jpserver_extensions=jupyter_compute_servers=True",
        *extra_args,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterProcess:
    """A real ``jupyter server`` with the extension, in its own process."""

    def __init__(self, data_dir: Path, root_dir: Path, *extra_args: str) -> None:
        # A free port can be taken by another program (a kernel, another test's server) between
        # choosing it and Jupyter binding it: then Jupyter exits, or that program answers.
        # Try another port.
        for _ in range(3):
            self.port = free_port()
            self.process = subprocess.Popen(
                jupyter_server_command(self.port, TOKEN, root_dir, data_dir, *extra_args),
                stdout=subprocess.DEVNULL,
                stderr=open(data_dir / "jupyter.log", "ab"),  # noqa: SIM115
            )
            if self._answers(data_dir):
                return
            self.kill()
        raise RuntimeError(
            "Jupyter did not answer on three ports: "
            + (data_dir / "jupyter.log").read_text()[-2000:]
        )

    def _answers(self, data_dir: Path) -> bool:
        """Until Jupyter answers on its port: False when it exited, or another program answers
        there; raises after a minute with Jupyter's log."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self.call("GET", "status")
                return True
            except http.client.HTTPException:
                return False  # not HTTP: someone else's port
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    raise RuntimeError((data_dir / "jupyter.log").read_text()[-2000:]) from None
                time.sleep(0.1)

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """Call the compute servers API."""
        return self.request(method, f"compute-servers/api/{path}", body)

    def request(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """Call any of the Jupyter server's endpoints (``api/kernels``...)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_settled(self, server_id: int, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            _, server = self.call("GET", f"servers/{server_id}")
            assert isinstance(server, dict)
            if (
                server["state"] not in ("starting", "stopping", "deprovisioning")
                and server["operation"] is None
            ):
                return server
            assert time.monotonic() < deadline, server
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()


def kill_sandboxes_under(path: Path) -> list[int]:
    """SIGKILL the local cloud's sandboxes (their SSH daemons) whose data dir is under
    ``path``: what a test's Jupyter could not stop (killed after its stop timed out, or a
    fuzzer's server left starting) must not outlive the test. Answers the pids killed."""
    from jupyter_compute_servers.clouds.local_openssh import daemon_sandbox

    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            sandbox = daemon_sandbox(Path(f"/proc/{entry}/cmdline").read_bytes())
        except OSError:
            continue
        if sandbox is not None and sandbox.startswith(f"{path}/"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed


def processes_under(path: Path) -> list[int]:
    """Pids of the live processes with an argument naming something under ``path`` (a kernel
    by its connection file, its IOPub relay by its script): what a server's directory of
    kernels still has running."""
    prefix = str(path).encode() + b"/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(arg.startswith(prefix) for arg in argv):
            found.append(int(entry))
    return found


def kill_processes_under(path: Path) -> list[str]:
    """SIGKILL ``processes_under(path)``: kernels a test left on a server that outlives it (a
    host's, a sandbox's) must not outlive the test. Answers the command lines of those killed
    (for a fixture to say so: the product should have ended them)."""
    killed = []
    for pid in processes_under(path):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{pid}: {command.decode(errors='replace').strip()}")
    return killed


def kill_left_on_host(home: Path) -> None:
    """A host fixture's last step: the host outlives its sshd here, so kernels a failed test
    left on it (their files are under its home) must not outlive the test; a warning says so,
    as what a passing test left is a leak of the product's."""
    killed = kill_processes_under(home)
    if killed:
        warnings.warn(
            "Killed processes left on the test's host: " + "; ".join(killed), stacklevel=2
        )
