"""The ``local`` cloud: compute servers as sandboxes on this machine. Needs no account.

A local server is a directory (its "disk") under ``<data_dir>/local/<id>`` and an SSH server of
its own (``local_sshd``) on 127.0.0.1, with a host key generated for that server and accepting
only that server's client key. Kernels, terminals and sync reach it over SSH exactly as they
reach a remote machine, so everything built on it works the same on real hosts.

Hardware is this machine's: the CPU and memory a server asks for are bookkeeping (used for its
cost and shown to the user), not enforced; its GPUs are made visible to its processes with
``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import asyncssh
from traitlets import Bool, Enum, Float

from ..agent.rpc_agent import container_owner, detect_gpus, remove_containers
from ..billing.prices import StateRates
from ..errors import CloudError, ValidationError
from ..images.catalog import ImageCatalog, normalize_arch
from ..models import ServerConfig, State
from . import local_openssh, local_sshd
from .base import Cloud, CloudServices, CloudStatus, Operation, SSHEndpoint

TOKEN_VARIABLE = "JUPYTER_COMPUTE_SERVER_SANDBOX"  # noqa: S105 - a name, not a secret
START_TIMEOUT = 20.0
#: The least memory a local server may be given (a kernel needs about this much).
MIN_MEMORY_GB = 0.25
STOP_GRACE = 3.0

log = logging.getLogger(__name__)


def _memory_total_gb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 1.0


@dataclass(frozen=True)
class _Process:
    pid: int
    parent: int
    zombie: bool
    #: Its environment carries the sandbox's token.
    carries_token: bool
    #: It is a sandbox's SSH server, for this sandbox (``local_openssh.daemon_sandbox``).
    daemon_of: str | None


def _processes(token: str, *, daemons_only: bool = False) -> list[_Process]:
    """This machine's processes, each with what tells whether it is the sandbox's; with
    ``daemons_only``, only those that are a sandbox's SSH server (one read per process for
    the others, where every process needs three)."""
    marker = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                daemon_of = local_openssh.daemon_sandbox(f.read())
        except OSError:
            continue
        if daemons_only and daemon_of is None:
            continue
        stat = _stat(int(entry.name))
        if stat is None:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                carries_token = marker in f.read().split(b"\0")
        except OSError:
            carries_token = False
        found.append(
            _Process(int(entry.name), int(stat[1]), stat[0] == "Z", carries_token, daemon_of)
        )
    return found


def _daemons(token: str, processes: list[_Process]) -> list[_Process]:
    """The sandbox's SSH servers (normally one) among ``processes``. Its token is in
    ``local_sshd``'s environment; OpenSSH's sshd writes its title over its environment, so its
    config, named on its command line and written with the token, tells instead."""
    configured = f'"{TOKEN_VARIABLE}={token}"'

    def ours(process: _Process) -> bool:
        if process.daemon_of is None or process.zombie:
            return False
        if process.carries_token:
            return True
        try:
            config = (Path(process.daemon_of) / "run" / "sshd_config").read_text()
        except OSError:
            return False
        return configured in config

    found = {process.pid: process for process in processes if ours(process)}
    # A command the daemon starts looks like the daemon between its fork and its exec (the
    # same command line and environment): a child of a daemon is not another daemon.
    return [process for process in found.values() if process.parent not in found]


def sshd_pids(token: str) -> list[int]:
    """Pids of the sandbox's SSH servers (normally one)."""
    return [process.pid for process in _daemons(token, _processes(token, daemons_only=True))]


def processes_with_token(token: str) -> list[int]:
    """Pids of every process of the sandbox: those whose environment carries its token, and
    its SSH server with every process under it (OpenSSH's, per connection, whose environment
    its title has overwritten)."""
    processes = _processes(token)
    children: dict[int, list[int]] = {}
    for process in processes:
        if not process.zombie:
            children.setdefault(process.parent, []).append(process.pid)
    found = {process.pid for process in processes if process.carries_token}
    pending = [process.pid for process in _daemons(token, processes)]
    while pending:
        pid = pending.pop()
        found.add(pid)
        pending.extend(child for child in children.get(pid, []) if child not in found)
    return sorted(found)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command's name: state, parent pid, ..."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    # A zombie has finished; only its parent has not collected it yet.
    return stat is not None and stat[0] != "Z"


def unmount_under(directory: Path) -> None:
    """Lazily unmount every file system mounted under ``directory`` (a sandbox's live
    workspace mount, dead once its sshfs was ended), so that nothing stays mounted in a
    stopped server and a deprovision never deletes through a mount."""
    top = os.path.realpath(directory)
    points: list[str] = []
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as f:
        points = [line.split(" ")[1].replace("\\040", " ") for line in f if " " in line]
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
    for point in sorted((p for p in points if p.startswith(top + os.sep)), reverse=True):
        argv = [fusermount, "-u", "-z", point] if fusermount else ["umount", "-l", point]
        subprocess.run(argv, capture_output=True, check=False, timeout=30)


class LocalCloud(Cloud):
    """Sandboxes on this machine, each with its own SSH server on 127.0.0.1."""

    name: ClassVar[str] = "local"
    label: ClassVar[str] = "This machine"
    description: ClassVar[str] = (
        "A sandbox on the machine running Jupyter: its own directory and SSH server. Free, "
        "and nothing to set up."
    )
    supports_suspend: ClassVar[bool] = False
    config_fields: ClassVar[frozenset[str]] = frozenset(
        {"image", "image_tag", "cpu", "memory_gb", "gpu", "disk_gb"}
    )

    stop_on_shutdown = Bool(
        False,
        help=(
            "Stop running local servers when the Jupyter server shuts down. By default they "
            "keep running and are found again (by pid file and host key) when Jupyter starts."
        ),
    ).tag(config=True)

    ssh_daemon = Enum(
        ["auto", "openssh", "asyncssh"],
        "auto",
        help=(
            "Which SSH server serves each local server. 'openssh': OpenSSH's sshd (in C, as on "
            "cloud VMs and on-prem hosts; a third of the built-in one's CPU per kernel message); "
            "'asyncssh': the built-in one, in Python (local_sshd); 'auto': sshd where it is "
            "installed and a login through it works for this account, else the built-in one."
        ),
    ).tag(config=True)

    hourly_rate = Float(
        0.0,
        help="What a running local server costs per hour, for internal charge-back.",
    ).tag(config=True)

    def price(self, config: ServerConfig) -> StateRates:
        """``hourly_rate`` while running; nothing while off (its disk is this machine's)."""
        return StateRates.flat(self.hourly_rate, source="c.LocalCloud.hourly_rate")

    # --- offerings ------------------------------------------------------------------------

    @cached_property
    def _gpus(self) -> list[dict[str, Any]]:
        # A GPU in MIG mode runs no CUDA work as a whole: not offered here.
        return [gpu for gpu in detect_gpus()[0] if not gpu.get("mig")]

    def _gpu_types(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for gpu in self._gpus:
            counts[gpu["name"]] = counts.get(gpu["name"], 0) + 1
        return counts

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    def _disk_size_gb(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return max(1, shutil.disk_usage(self.root).total // 2**30)

    def _disk_free_gb(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        return max(1, shutil.disk_usage(self.root).free // 2**30)

    def defaults(self) -> dict[str, Any]:
        cpus = os.cpu_count() or 1
        return {
            "image": "python",
            "image_tag": "system",
            "cpu": min(2, cpus),
            "memory_gb": min(4.0, _memory_total_gb()),
            "gpu": None,
            "disk_gb": 10,
        }

    def offerings(self) -> dict[str, Any]:
        return {
            "images": [
                {
                    "id": image["id"],
                    "label": image["label"],
                    "tags": [v["tag"] for v in image["versions"]],
                }
                for image in self.catalog.images(include_untested=True)
                if self._runnable(image["runtime"]) is None
                and normalize_arch(platform.machine()) in image.get("arch", ["x86_64", "arm64"])
            ],
            "arch": normalize_arch(platform.machine()),
            "cpu": {"min": 1, "max": os.cpu_count() or 1},
            "memory_gb": {"min": MIN_MEMORY_GB, "max": _memory_total_gb()},
            "gpus": [
                {"type": name, "max_count": count} for name, count in self._gpu_types().items()
            ],
            "disk_gb": {"min": 1, "max": self._disk_free_gb()},
        }

    def check_config(self, config: ServerConfig) -> None:
        if config.extra:
            key = sorted(config.extra)[0]
            raise ValidationError(
                f"config.extra.{key} is not an option of the local cloud; it has no extra options.",
                field=f"config.extra.{key}",
            )
        if config.image is None:
            raise ValidationError("config.image is required.", field="config.image")
        problem = self._runnable(self.catalog.get(config.image)["runtime"])
        if problem is not None:
            raise ValidationError(
                f"config.image {config.image!r} cannot run on the local cloud: {problem}.",
                field="config.image",
            )
        cpus = os.cpu_count() or 1
        if config.cpu is not None and config.cpu > cpus:
            raise ValidationError(
                f"config.cpu is {config.cpu}, but this machine has {cpus} CPUs.", field="config.cpu"
            )
        if config.memory_gb is not None and config.memory_gb < MIN_MEMORY_GB:
            raise ValidationError(
                f"config.memory_gb is {config.memory_gb}; a local server needs at least "
                f"{MIN_MEMORY_GB} GB.",
                field="config.memory_gb",
            )
        # The offerings say what is free now; the hard limit is the disk itself, so that a
        # server made earlier stays editable when the disk fills up.
        if config.disk_gb is not None and config.disk_gb > (size := self._disk_size_gb()):
            raise ValidationError(
                f"config.disk_gb is {config.disk_gb}, but this machine's disk has {size} GB.",
                field="config.disk_gb",
            )
        memory = _memory_total_gb()
        if config.memory_gb is not None and config.memory_gb > memory:
            raise ValidationError(
                f"config.memory_gb is {config.memory_gb}, but this machine has {memory} GB.",
                field="config.memory_gb",
            )
        if config.gpu is not None:
            types = self._gpu_types()
            if not types:
                raise ValidationError(
                    "This machine has no GPU; set config.gpu to null.", field="config.gpu"
                )
            if config.gpu.type not in types:
                raise ValidationError(
                    f"config.gpu.type {config.gpu.type!r} is not on this machine; it has "
                    f"{', '.join(types)}.",
                    field="config.gpu.type",
                )
            if config.gpu.count > types[config.gpu.type]:
                raise ValidationError(
                    f"config.gpu.count is {config.gpu.count}, but this machine has "
                    f"{types[config.gpu.type]} {config.gpu.type}.",
                    field="config.gpu.count",
                )

    def bind(self, services: CloudServices) -> None:
        self.catalog = services.images

    @cached_property
    def catalog(self) -> ImageCatalog:
        catalog = ImageCatalog()  # until bound to the configured one
        catalog.load()
        return catalog

    def arch(self, config: ServerConfig) -> str | None:
        return normalize_arch(platform.machine())

    @staticmethod
    def _runnable(runtime: dict[str, Any]) -> str | None:
        """Why this machine cannot run an image's kernels, or None if it can."""
        kind = runtime["kind"]
        if kind == "python":
            return None
        engine = "conda" if kind == "conda" else kind
        if shutil.which(engine) is None:
            return f"it needs {engine}, which is not installed here"
        return None

    # --- sandboxes ------------------------------------------------------------------------

    def sandbox(self, server_id: int) -> Path:
        return self.root / str(server_id)

    def _prepare_sandbox(self, op: Operation) -> Path:
        sandbox = self.sandbox(op.server_id)
        for sub in ("disk", "ssh", "run"):
            (sandbox / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(sandbox / "ssh", 0o700)
        host_key_path = sandbox / "ssh" / "host_key"
        if not host_key_path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            fd = os.open(host_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key())
            (sandbox / "ssh" / "host_key.pub").write_bytes(key.export_public_key())
        (sandbox / "ssh" / "authorized_keys").write_text(op.client_public_key + "\n")
        return sandbox

    def _environment(self, op: Operation, token: str) -> dict[str, str]:
        env = {
            TOKEN_VARIABLE: token,
            "JUPYTER_COMPUTE_SERVER_ID": str(op.server_id),
            "JUPYTER_COMPUTE_SERVER_NAME": op.server_name,
        }
        if op.config.gpu is not None:
            uuids = [gpu["uuid"] for gpu in self._gpus if gpu["name"] == op.config.gpu.type]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(uuids[: op.config.gpu.count])
        else:
            # No GPU asked for: none visible, even if the machine has some.
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    async def _spawn(self, op: Operation) -> None:
        sandbox = self._prepare_sandbox(op)
        # The token is recorded before anything is spawned: every process of the sandbox
        # carries it in its environment, so a start interrupted at any moment (kill -9 of
        # Jupyter) leaves nothing that cannot be found again by it.
        token = op.cloud_data.get("token") or secrets.token_hex(16)
        host_key = (sandbox / "ssh" / "host_key.pub").read_text().strip()
        op.remember(token=token, host_key=host_key, sandbox=str(sandbox))
        run = sandbox / "run"
        found = await self._running_sshd(op.server_id, token)
        if found is not None and "hung" not in found:
            # A start that was interrupted had spawned it: never a second daemon.
            op.remember(**found)
            op.progress("The SSH server is listening", 0.8)
            return
        for pid in (found or {}).get("hung", []):
            # Alive but never listening: it is ended (it alone; kernels live on), and a new
            # one takes its place.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        environment = self._environment(op, token)
        (run / "environment.json").write_text(json.dumps(environment))
        op.progress("Starting the sandbox's SSH server", 0.3)
        process, port = await self._start_daemon(op, sandbox, environment)
        op.remember(pid=process.pid, port=port)
        # Reap the child when it exits so it does not linger as a zombie of ours. A daemon
        # thread, because the server outlives this process (and must not hold up its exit).
        threading.Thread(target=process.wait, daemon=True, name=f"reap-sshd-{process.pid}").start()
        op.progress("The SSH server is listening", 0.8)

    async def _start_daemon(
        self, op: Operation, sandbox: Path, environment: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], int]:
        """The sandbox's SSH server, started: OpenSSH's sshd where ``ssh_daemon`` allows it and
        it can serve here, else ``local_sshd``. Answers its process and port."""
        authorized = sandbox / "ssh" / "authorized_keys"
        if self.ssh_daemon != "asyncssh":
            reason = local_openssh.unavailable_reason(sandbox)
            if reason is None:
                # A key for one login that proves sessions work for this machine's account,
                # authorized only until that login is over; its private half is never written.
                probe = asyncssh.generate_private_key("ssh-ed25519")
                authorized.write_text(
                    f"{op.client_public_key}\nrestrict "
                    f"{probe.export_public_key().decode().strip()}\n"
                )
                try:
                    started = await local_openssh.start(sandbox, environment, probe, START_TIMEOUT)
                    return started.process, started.port
                except local_openssh.OpenSSHStartError as e:
                    reason = str(e)
                finally:
                    authorized.write_text(op.client_public_key + "\n")
            if self.ssh_daemon == "openssh":
                raise CloudError(
                    f"The local server's SSH server did not start: {reason}. Set "
                    f"c.LocalCloud.ssh_daemon = 'auto' to fall back to the built-in one."
                )
            log.info("Local server %s: asyncssh's SSH server, since %s", op.server_id, reason)
        return await self._start_local_sshd(sandbox, environment)

    async def _start_local_sshd(
        self, sandbox: Path, environment: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], int]:
        run = sandbox / "run"
        ready_file = run / "sshd.json"
        ready_file.unlink(missing_ok=True)
        process = local_sshd.spawn(
            [sys.executable, "-m", "jupyter_compute_servers.clouds.local_sshd", str(sandbox)],
            sandbox,
            environment,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not ready_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                tail = (run / "sshd.log").read_text(errors="replace")[-800:]
                raise CloudError(
                    f"The local server's SSH server did not start. Its log ends:\n{tail}"
                )
            await asyncio.sleep(0.05)
        return process, int(json.loads(ready_file.read_text())["port"])

    async def _end_processes(self, token: str | None) -> None:
        if not token:
            return
        # Its containers first: their engine clients carry the token, the containers do not,
        # and a killed client leaves its container running.
        await asyncio.get_running_loop().run_in_executor(
            None, remove_containers, container_owner(token)
        )
        pids = processes_with_token(token)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + STOP_GRACE
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if _alive(pid)]
                await asyncio.sleep(0.05)
            if not pids:
                return

    # --- lifecycle ------------------------------------------------------------------------

    async def create(self, op: Operation) -> None:
        op.progress("Creating the sandbox", 0.1)
        await self._spawn(op)

    async def start(self, op: Operation) -> None:
        if not (self.sandbox(op.server_id) / "disk").is_dir():
            raise CloudError(
                "The local server's disk directory is gone; deprovision the "
                "server and start it again."
            )
        await self._spawn(op)

    async def stop(self, op: Operation) -> None:
        op.progress("Ending the server's processes", 0.3)
        await self._end_processes(op.cloud_data.get("token"))
        await asyncio.get_running_loop().run_in_executor(
            None, unmount_under, self.sandbox(op.server_id)
        )
        op.remember(pid=None, port=None)

    async def reboot(self, op: Operation) -> None:
        await self.stop(op)
        await self._spawn(op)

    async def deprovision(self, op: Operation) -> None:
        await self.stop(op)
        op.progress("Deleting the sandbox and its disk", 0.7)
        sandbox = self.sandbox(op.server_id)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: shutil.rmtree(sandbox, ignore_errors=True)
        )
        op.remember(token=None, host_key=None, sandbox=None)

    async def _running_sshd(self, server_id: int, token: str) -> dict[str, Any] | None:
        """The sandbox's SSH server if one runs (its pid and port), waiting while one that
        was just spawned comes up; None when there is none. ``{"hung": [pids]}`` when one
        runs but never said it listens."""
        ready_file = self.sandbox(server_id) / "run" / "sshd.json"
        deadline = time.monotonic() + START_TIMEOUT
        while pids := sshd_pids(token):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                ready = json.loads(ready_file.read_text())
                if int(ready["pid"]) in pids:
                    return {"pid": int(ready["pid"]), "port": int(ready["port"])}
            if time.monotonic() > deadline:
                return {"hung": pids}
            await asyncio.sleep(0.05)
        return None

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        if not (self.sandbox(server_id) / "disk").is_dir():
            return CloudStatus(State.DEPROVISIONED, "the sandbox directory does not exist")
        token = cloud_data.get("token")
        found = await self._running_sshd(server_id, token) if token else None
        if found is None:
            return CloudStatus(State.OFF, "the sandbox's SSH server is not running")
        if "hung" in found:
            pids = ", ".join(map(str, found["hung"]))
            return CloudStatus(
                State.ERROR,
                f"the sandbox's SSH server (pid {pids}) runs but does not listen; stop the "
                f"server and start it again",
            )
        recorded = {"pid": cloud_data.get("pid"), "port": cloud_data.get("port")}
        # A start interrupted before it recorded the daemon's pid or port: found by the
        # sandbox's token and the port file the daemon writes once it listens.
        return CloudStatus(State.RUNNING, found=found if found != recorded else {})

    async def revive(self, op: Operation) -> str | None:
        """The sandbox's SSH server died (killed, crashed) while the sandbox is intact: start
        another one. Kernels and terminals it had started run on (detached) and are reached
        through the new one. Never a second daemon: one still alive (stalled) is left be."""
        token = op.cloud_data.get("token")
        if not token or not (self.sandbox(op.server_id) / "disk").is_dir():
            return None
        if sshd_pids(token):
            return None
        await self._spawn(op)
        return f"its SSH server had died; started another one (pid {op.cloud_data.get('pid')})"

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        if not cloud_data.get("port") or not cloud_data.get("host_key"):
            raise CloudError("The local server is not running.")
        return SSHEndpoint(
            host="127.0.0.1",
            port=int(cloud_data["port"]),
            username=getpass.getuser(),
            host_key=cloud_data["host_key"],
            workspace=str(self.sandbox(server_id) / "disk"),
            python=sys.executable,
            runtime_dir=str(self.sandbox(server_id) / "run"),
        )
