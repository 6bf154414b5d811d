"""Remote kernels on a local compute server, side by side with local ones and OpenSSH.

    python benchmarks/kernels.py [--quick] [--repeat N] [--naive-ssh]
                                 [--cloud local|local-asyncssh|ssh]

In one run, on this machine, against a compute server started for the run: by default one of
the ``local`` cloud, whose SSH daemon is the sandbox's own (OpenSSH's sshd where installed, as
by default; ``--cloud local-asyncssh``: the built-in one, asyncssh's, in Python); with
``--cloud ssh``, one on an on-prem host of the ``ssh`` cloud, registered and its host key
confirmed as an admin does, whose daemon is OpenSSH's sshd on 127.0.0.1 (``tests/sshd.py``),
as on-prem hosts and cloud VMs are reached. Every remote path, ours and OpenSSH's, goes
through that one daemon:

(a) kernel start to ready: ``AsyncKernelManager.start_kernel()`` then the client's
    ``wait_for_ready()``, for the server's ``compute-<id>-python3`` kernel and for a local
    ipykernel (the ``python3`` spec), interleaved, medians; then the remote kernel again with a
    warm kernel waiting on the server (``kernels/warm.py``, one kept: each start takes it, and
    the next start waits until the pool refilled), interleaved with more local starts. Each
    start is also timed until "live": a kernel_info answered with its IOPub status, what a
    notebook waits for, without ``wait_for_ready``'s final 0.2 s of IOPub silence (a fixed
    cost of jupyter_client's that alone is a third of a local start here);
(b) the round trip of ``execute('pass')`` (the shell reply and the IOPub idle status, as a
    notebook waits for them), median and p95: the local kernel, the remote kernel through the
    provisioner's tunnel, and the same remote kernel through plain OpenSSH tunnels (``ssh -L``
    with the Nagle fix of ``../shared/TOOLCHAIN.md``: one ``ssh -tt`` running a remote command,
    whose socket gets TCP_NODELAY, and one ``ssh -N`` per port); and the same remote kernel on
    its own ports, with no tunnel at all (its server is this machine): the floor that no
    tunnel, ours or OpenSSH's, can go below;
(c) the time to stream printed output (50 MiB by default) until the IOPub idle status, as MB/s.

It prints a table and the ratios against the targets, and always exits 0 (it is a report).
Everything it starts (kernels, ssh processes, the server) is stopped and its temporary
directory removed at the end, also on errors and Ctrl-C. The machine is shared and noisy:
compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Nothing of Jupyter's: it is imported once the run's directories are set (``Workdir``).
from onprem_host import (
    BUILT_IN_DAEMON,
    DAEMONS,
    ENABLED_CLOUDS,
    OnPremHost,
    add_cloud_argument,
    start_onprem_host,
)

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
LOCAL_LABEL = "local ipykernel"
TT_LABEL = "OpenSSH ssh -tt -L x5"
PER_PORT_LABEL = "OpenSSH ssh -N -L, one per port"
NAIVE_LABEL = "OpenSSH ssh -N -L x5 (no -tt)"
DIRECT_LABEL = "ours, IOPub not relayed"
NO_TUNNEL_LABEL = "remote kernel, no tunnel"
SERVER_NAME = "bench"
MIB = 1024 * 1024


# --- helpers ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(stat_path: str) -> tuple[str, list[str]] | None:
    """A process's or thread's /proc/.../stat: its command name, and the fields after it
    (state, ppid, ...); None if it is gone."""
    try:
        with open(stat_path) as f:
            head, tail = f.read().rsplit(")", 1)
    except OSError:
        return None
    return head.split("(", 1)[1], tail.split()


def cpu_seconds(stat_path: str) -> float:
    """User and system CPU seconds of a process or thread (its /proc/.../stat); 0 if gone."""
    stat = read_stat(stat_path)
    if stat is None:
        return 0.0
    fields = stat[1]
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_of(*stat_paths: str) -> Callable[[], float]:
    return lambda: sum(cpu_seconds(path) for path in stat_paths)


def daemon_processes(work: Workdir, server_id: int, sshd_pid: int | None) -> set[str]:
    """The /proc stat paths of the server's SSH daemon as it is now: OpenSSH's processes
    (``sshd_pid``: its listener, else the local server's), which fork per connection, or the
    built-in daemon's one process serving every connection; take them after the connections
    of interest are open."""
    if sshd_pid is None:
        sshd_info = work.data_dir / "local" / str(server_id) / "run" / "sshd.json"
        sshd_pid = int(json.loads(sshd_info.read_text())["pid"])
    # Only sshd's own processes: kernels and relays run in its sessions' process trees.
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        stat = read_stat(f"/proc/{entry}/stat")
        if stat is not None and stat[0] == "sshd":
            children.setdefault(int(stat[1][1]), []).append(int(entry))
    found, waiting = set(), [sshd_pid]
    while waiting:
        pid = waiting.pop()
        found.add(pid)
        waiting += children.get(pid, [])
    return {f"/proc/{pid}/stat" for pid in found}


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Workdir:
    """The run's temporary directories; JUPYTER_* point into it before jupyter is imported."""

    root: Path
    data_dir: Path = field(init=False)
    workspace: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.root / "compute_servers"
        self.workspace = self.root / "workspace"
        self.workspace.mkdir()
        for name, sub in (
            ("JUPYTER_DATA_DIR", "jupyter_data"),
            ("JUPYTER_RUNTIME_DIR", "jupyter_runtime"),
            ("JUPYTER_CONFIG_DIR", "jupyter_config"),
            ("IPYTHONDIR", "ipython"),
        ):
            (self.root / sub).mkdir()
            os.environ[name] = str(self.root / sub)


def cli(work: Workdir, *args: str) -> str:
    """Run ``jupyter compute-servers`` on the run's store; answers its stdout."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={work.data_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"compute-servers {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def start_host(work: Workdir) -> tuple[OnPremHost, int]:
    """An on-prem host (``onprem_host.py``) registered in the run's store as an admin
    registers one; the ``ssh`` cloud enabled in the run's Jupyter configuration. Answers
    (the host, its id)."""
    config_file = work.root / "jupyter_config" / "jupyter_server_config.json"
    config_file.write_text(json.dumps({"ComputeServersApp": {"enabled_clouds": ENABLED_CLOUDS}}))
    host = start_onprem_host(work.root)
    try:
        host_id = asyncio.run(register_host(work, host.registration()))
    except BaseException:
        host.stop()
        raise
    return host, host_id


async def register_host(work: Workdir, registration: dict[str, Any]) -> int:
    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services
    from jupyter_compute_servers.ssh import fingerprint

    services = build_services(load_settings({"data_dir": str(work.data_dir)}))
    try:
        host = await services.hosts.create(registration)
        if host.pending_host_key is None:
            raise RuntimeError(f"the host's key was not offered for confirmation: {host}")
        host = await services.hosts.trust(host.id, fingerprint(host.pending_host_key))
        return host.id
    finally:
        await services.close()


# --- kernels and clients ------------------------------------------------------------------


class Resources:
    """What the run started, so that everything is ended whatever happens."""

    def __init__(self) -> None:
        self.kernel_managers: list[Any] = []
        self.clients: list[Any] = []
        self.ssh: list[subprocess.Popen[bytes]] = []
        self.runtime: Any = None
        #: Tunnels of our own opened in the runtime (``open_direct_tunnel``).
        self.tunnels: list[Any] = []

    async def close_async(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.stop_channels()
        self.clients.clear()
        for tunnel in self.tunnels:
            with contextlib.suppress(Exception):
                await self.runtime.run(tunnel.close())
        self.tunnels.clear()
        for km in list(self.kernel_managers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(km.shutdown_kernel(now=True), 30)
        self.kernel_managers.clear()
        self.kill_ssh()

    def kill_leftovers(self) -> None:
        """The last resort, without an event loop: the ssh processes, and the processes of
        local kernels nobody shut down (remote ones end with the server)."""
        self.kill_ssh()
        for km in self.kernel_managers:
            process = getattr(km.provisioner, "process", None)
            if process is not None and process.poll() is None:
                with contextlib.suppress(OSError):
                    process.kill()
                    process.wait(5)
        self.kernel_managers.clear()

    def kill_ssh(self) -> None:
        for process in self.ssh:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        self.ssh.clear()

    def close_runtime(self) -> None:
        """Close the standalone runtime's SSH connection and store (before the server stops
        and its directory goes), then stop its loop so nothing runs at exit."""
        runtime, self.runtime = self.runtime, None
        if runtime is None or not runtime.loop.is_running():
            return

        async def close() -> None:
            # A launch cut short by Ctrl-C cleans up after itself: let it.
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=10)
            if runtime.warm is not None:
                with contextlib.suppress(Exception):
                    await runtime.warm.close()
            for provisioner in list(runtime.kernels.values()):
                with contextlib.suppress(Exception):
                    await provisioner.shutdown_remote()
            await runtime.manager.ssh.close_all()
            runtime.manager.store.database.close()

        with contextlib.suppress(Exception):
            runtime.run_blocking(close(), timeout=30)
        runtime.loop.call_soon_threadsafe(runtime.loop.stop)


async def start_kernel(
    res: Resources, kernel_name: str, cwd: Path
) -> tuple[Any, Any, float, float, float]:
    """Start a kernel and wait until it is ready; answers (manager, client, seconds until
    start_kernel() returned, seconds until the client's wait_for_ready() returned, seconds
    until a kernel_info was answered with its IOPub status: "live", what a notebook waits
    for, without wait_for_ready's final 0.2 s of IOPub silence)."""
    from jupyter_client.manager import AsyncKernelManager

    started = time.perf_counter()
    km = AsyncKernelManager(kernel_name=kernel_name)
    res.kernel_managers.append(km)
    # A local kernel's output (its "running over TCP" warning) would clutter the report.
    await km.start_kernel(cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    launched = time.perf_counter() - started
    kc = km.client()
    res.clients.append(kc)
    kc.start_channels(hb=False)
    await wait_iopub_live(kc, 120)
    live = time.perf_counter() - started
    await kc.wait_for_ready(timeout=120)
    ready = time.perf_counter() - started
    return km, kc, launched, ready, live


async def stop_kernel(res: Resources, km: Any, kc: Any) -> float:
    """Stop a client and shut its kernel down (gracefully); answers the seconds it took."""
    kc.stop_channels()
    with contextlib.suppress(ValueError):
        res.clients.remove(kc)
    started = time.perf_counter()
    await km.shutdown_kernel()
    with contextlib.suppress(ValueError):
        res.kernel_managers.remove(km)
    return time.perf_counter() - started


async def wait_iopub_live(kc: Any, timeout: float = 60) -> None:
    """Ask kernel_info until an IOPub status for one of the requests arrives: only then is
    the client's IOPub subscription live (through a tunnel the first status is often lost)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    asked: set[str] = set()
    while loop.time() < deadline:
        asked.add(kc.kernel_info())
        until = loop.time() + 0.25
        while (left := until - loop.time()) > 0:
            try:
                msg = await kc.get_iopub_msg(timeout=left)
            except queue.Empty:
                break
            if msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") in asked:
                return
    raise RuntimeError("no IOPub status came back")


async def execute(
    kc: Any, code: str, timeout: float = 300, text: list[str] | None = None
) -> tuple[float, int]:
    """Execute code and wait for its shell reply and its IOPub idle status, as a notebook
    does; answers (seconds, bytes of stream output received). Appends the output to
    ``text`` if given."""
    started = time.perf_counter()
    msg_id = kc.execute(code)
    received = 0
    while True:
        msg = await kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            received += len(msg["content"]["text"].encode())
            if text is not None:
                text.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    while True:
        reply = await kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - started
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"execute failed: {reply['content']}")
    return elapsed, received


@dataclass
class Target:
    """One way to reach a kernel for (b) and (c): a client is connected for each block of
    measurements and disconnected after it, so that only one client at a time receives the
    kernel's IOPub broadcast."""

    label: str
    connection: Callable[[], dict[str, Any]]
    #: CPU seconds used so far by what carries this target's messages besides the client and
    #: the kernel (our runtime's thread, the IOPub relay and the server's SSH daemon; the ssh
    #: processes and the daemon), None where nothing does (a local kernel).
    cpu: Callable[[], float] | None = None
    #: CPU seconds of each process on the path, client and kernel included, for the
    #: breakdown of (c): name -> reader.
    parts: dict[str, Callable[[], float]] = field(default_factory=dict)

    async def connect(self, res: Resources) -> Any:
        from jupyter_client.asynchronous import AsyncKernelClient
        from jupyter_client.connect import KernelConnectionInfo

        kc = AsyncKernelClient()
        kc.load_connection_info(cast(KernelConnectionInfo, self.connection()))
        res.clients.append(kc)
        kc.start_channels(hb=False)
        await wait_iopub_live(kc)
        return kc

    @staticmethod
    def disconnect(res: Resources, kc: Any) -> None:
        kc.stop_channels()
        with contextlib.suppress(ValueError):
            res.clients.remove(kc)


async def open_direct_tunnel(runtime: Any, server_id: int, remote_ports: dict[str, int]) -> Any:
    """Our ``Tunnel`` for all five channels, IOPub too, straight to the kernel's ports: what
    the kernel's IOPub relay (resumption across partitions) costs, by its absence."""
    from jupyter_compute_servers.tunnel import Tunnel

    async def connection() -> Any:
        return (await runtime.manager.connection(server_id)).connection

    tunnel = Tunnel(connection)
    await tunnel.open(remote_ports)
    return tunnel


# --- OpenSSH tunnels ------------------------------------------------------------------------


@dataclass
class SSHTarget:
    user_host: str
    options: list[str]
    logs: Path


def spawn_ssh(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start one ssh in a session of its own (Ctrl-C is for us; we end it)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            # kept open: with -tt an end of input would end the remote command, and the ssh
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


async def open_openssh(
    res: Resources, ssh: SSHTarget, remote_ports: dict[str, int], mode: str
) -> dict[str, int]:
    """Forward local ports to the remote kernel's ports with OpenSSH; answers the local port
    of each channel. ``mode``: ``tt`` (one ssh, a terminal and a remote command, which gets
    TCP_NODELAY), ``per-port`` (one ``ssh -N`` per channel) or ``naive`` (one ``ssh -N`` with
    five forwards: against OpenSSH's sshd it stalls on Nagle and delayed ACKs; the local
    cloud's built-in asyncssh server sets TCP_NODELAY on its end, which mostly hides that)."""
    local = dict(zip(CHANNELS, free_ports(len(CHANNELS)), strict=True))
    forwards = {
        name: ["-L", f"127.0.0.1:{local[name]}:127.0.0.1:{remote_ports[name]}"] for name in CHANNELS
    }
    base = [
        "ssh",
        "-F",
        "/dev/null",
        *ssh.options,
        "-o",
        "BatchMode=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "LogLevel=ERROR",
    ]
    commands: list[list[str]] = []
    if mode == "tt":
        every = [arg for name in CHANNELS for arg in forwards[name]]
        commands.append([*base, *every, "-tt", ssh.user_host, "sleep 86400"])
    elif mode == "per-port":
        commands += [[*base, *forwards[name], "-N", ssh.user_host] for name in CHANNELS]
    elif mode == "naive":
        every = [arg for name in CHANNELS for arg in forwards[name]]
        commands.append([*base, *every, "-N", ssh.user_host])
    else:
        raise ValueError(mode)
    processes = []
    for i, argv in enumerate(commands):
        process = spawn_ssh(argv, ssh.logs / f"ssh-{mode}-{i}.log")
        res.ssh.append(process)
        processes.append(process)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    waiting = set(CHANNELS)
    while waiting:
        for process in processes:
            if process.poll() is not None:
                log_text = "".join(p.read_text() for p in ssh.logs.glob(f"ssh-{mode}-*.log"))
                raise RuntimeError(f"ssh ({mode}) exited {process.returncode}: {log_text}")
        for name in list(waiting):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", local[name])
                writer.close()
                waiting.discard(name)
        if loop.time() > deadline:
            raise RuntimeError(f"ssh ({mode}) did not listen within 30 s")
        if waiting:
            await asyncio.sleep(0.05)
    return local


# --- the measurements -----------------------------------------------------------------------


@dataclass
class Options:
    quick: bool
    repeat: int
    round_trips: int
    block: int
    output_mib: int
    naive_ssh: bool
    #: Which of start, round-trip, output to measure (default: all).
    only: frozenset[str] = frozenset(("start", "round-trip", "output"))
    #: The compute server's cloud: ``local`` (its default daemon, OpenSSH's sshd where
    #: installed), ``local-asyncssh`` (its built-in daemon) or ``ssh`` (an on-prem host behind
    #: OpenSSH's sshd).
    cloud: str = "local"


@dataclass
class Results:
    #: (start_kernel returned, ready, shutdown, live) of each start.
    start: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    cold: dict[str, tuple[float, float]] = field(default_factory=dict)
    round_trip: dict[str, list[float]] = field(default_factory=dict)
    output: dict[str, list[float]] = field(default_factory=dict)
    #: CPU seconds of each target's carriers (``Target.cpu``) over its round trips / outputs.
    round_trip_cpu: dict[str, float] = field(default_factory=dict)
    output_cpu: dict[str, float] = field(default_factory=dict)
    #: (b)'s and (c)'s CPU seconds per process on each target's path (``Target.parts``).
    round_trip_parts: dict[str, dict[str, float]] = field(default_factory=dict)
    output_parts: dict[str, dict[str, float]] = field(default_factory=dict)
    output_bytes: int = 0
    notes: list[str] = field(default_factory=list)


async def measure_starts(
    res: Resources, opts: Options, kinds: dict[str, str], cwd: Path, results: Results
) -> None:
    labels = list(kinds)
    # A first, cold start of each (not counted): imports, the standalone runtime, its SSH
    # connection and the server's agent.
    for label in labels:
        km, kc, launched, ready, _ = await start_kernel(res, kinds[label], cwd)
        if res.runtime is None and getattr(km.provisioner, "remote_kernel", None) is not None:
            res.runtime = km.provisioner.runtime
        results.cold[label] = (launched, ready)
        await stop_kernel(res, km, kc)
    for i in range(opts.repeat):
        order = labels if i % 2 == 0 else labels[::-1]
        for label in order:
            km, kc, launched, ready, live = await start_kernel(res, kinds[label], cwd)
            shutdown = await stop_kernel(res, km, kc)
            results.start.setdefault(label, []).append((launched, ready, shutdown, live))
        print(f"  start round {i + 1}/{opts.repeat} done", file=sys.stderr)


async def measure_warm_starts(
    res: Resources,
    opts: Options,
    local: tuple[str, str],
    remote: tuple[str, str],
    cwd: Path,
    results: Results,
) -> None:
    """Remote starts that take the warm kernel the pool keeps on the server (started in the
    standalone runtime, as the Jupyter server starts its own), interleaved with local ones.
    Before each, the pool has refilled (a user picks a kernel long after the last one)."""
    from traitlets.config import Config

    from jupyter_compute_servers.kernels.warm import WarmKernelPool

    runtime = res.runtime
    server_id = int(remote[1].split("-")[1])

    async def start_pool() -> None:
        config = Config({"ComputeServerProvisioner": {"warm_kernels": 1}})
        WarmKernelPool(runtime.manager, config, runtime.data_dir).start(runtime)

    async def warm_pid() -> int:
        async def held() -> int | None:
            pool = runtime.warm
            for warm in pool.held(server_id):
                if warm.provisioner.remote_kernel:
                    return int(warm.provisioner.remote_kernel["pid"])
            pool.fill(server_id)
            return None

        deadline = time.monotonic() + 120
        while (pid := await runtime.run(held())) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the pool kept no warm kernel within 120 s")
            await asyncio.sleep(0.05)
        return pid

    await runtime.run(start_pool())
    label = f"{remote[0]}, warm kernel"
    for i in range(opts.repeat + 1):
        order = [local, (label, remote[1])]
        for name, spec in order if i % 2 == 0 else order[::-1]:
            pid = await warm_pid() if name == label else None
            km, kc, launched, ready, live = await start_kernel(res, spec, cwd)
            taken = pid is not None and km.provisioner.remote_kernel["pid"] == pid
            shutdown = await stop_kernel(res, km, kc)
            if name == label and not taken:
                results.notes.append("a start with a warm kernel launched one instead")
            if i == 0:  # the first of each: not counted (the pool's first fill, imports)
                results.cold.setdefault(name, (launched, ready))
                continue
            results.start.setdefault(name, []).append((launched, ready, shutdown, live))
        if i:
            print(f"  warm start round {i}/{opts.repeat} done", file=sys.stderr)


async def measure_round_trips(
    res: Resources, opts: Options, targets: list[Target], results: Results
) -> None:
    rounds = math.ceil(opts.round_trips / opts.block)
    for i in range(rounds):
        order = targets[i % len(targets) :] + targets[: i % len(targets)]
        for target in order:
            kc = await target.connect(res)
            try:
                for _ in range(3):  # warm up the fresh connections
                    await execute(kc, "pass")
                samples = results.round_trip.setdefault(target.label, [])
                cpu_before = target.cpu() if target.cpu else 0.0
                parts_before = {name: read() for name, read in target.parts.items()}
                for _ in range(min(opts.block, opts.round_trips - len(samples))):
                    elapsed, _ = await execute(kc, "pass")
                    samples.append(elapsed)
                if target.cpu:
                    used = target.cpu() - cpu_before
                    results.round_trip_cpu[target.label] = (
                        results.round_trip_cpu.get(target.label, 0.0) + used
                    )
                parts = results.round_trip_parts.setdefault(target.label, {})
                for name, read in target.parts.items():
                    parts[name] = parts.get(name, 0.0) + read() - parts_before[name]
            finally:
                target.disconnect(res, kc)
        print(f"  round-trip block {i + 1}/{rounds} done", file=sys.stderr)


async def measure_output(
    res: Resources, opts: Options, targets: list[Target], results: Results
) -> None:
    lines = opts.output_mib * 1024  # each print writes 1,023 x's and a newline
    code = f"for _ in range({lines}):\n    print('x' * 1023)"
    results.output_bytes = lines * 1024
    for i in range(opts.repeat):
        order = targets[i % len(targets) :] + targets[: i % len(targets)]
        for target in order:
            kc = await target.connect(res)
            try:
                cpu_before = target.cpu() if target.cpu else 0.0
                parts_before = {name: read() for name, read in target.parts.items()}
                elapsed, received = await execute(kc, code)
                if target.cpu:
                    used = target.cpu() - cpu_before
                    total = results.output_cpu.get(target.label, 0.0) + used
                    results.output_cpu[target.label] = total
                parts = results.output_parts.setdefault(target.label, {})
                for name, read in target.parts.items():
                    parts[name] = parts.get(name, 0.0) + read() - parts_before[name]
            finally:
                target.disconnect(res, kc)
            if received != results.output_bytes:
                results.notes.append(
                    f"{target.label}: received {received} bytes of output, "
                    f"not {results.output_bytes}"
                )
            results.output.setdefault(target.label, []).append(elapsed)
        print(f"  output round {i + 1}/{opts.repeat} done", file=sys.stderr)


async def tunnel_details(runtime: Any, server_id: int) -> str:
    async def ask() -> str:
        connection = (await runtime.manager.connection(server_id)).connection
        return (
            f"cipher {connection.get_extra_info('send_cipher')}, "
            f"mac {connection.get_extra_info('send_mac')}, "
            f"compression {connection.get_extra_info('send_compression')}"
        )

    return await runtime.run(ask())


async def python_of(res: Resources, target: Target) -> str:
    kc = await target.connect(res)
    try:
        text: list[str] = []
        await execute(kc, "import sys; print(sys.executable, end='')", text=text)
        return "".join(text)
    finally:
        target.disconnect(res, kc)


async def run_benchmark(
    work: Workdir, server_id: int, opts: Options, res: Resources, sshd_pid: int | None = None
) -> Results:
    """``sshd_pid``: OpenSSH's sshd when the server is an on-prem host behind it."""
    from jupyter_compute_servers.access import openssh_options
    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services

    results = Results()
    remote_spec = f"compute-{server_id}-python3"
    local_label, remote_label = LOCAL_LABEL, f"remote ({remote_spec})"
    try:
        # The server's SSH endpoint and our key, for the OpenSSH baseline. This manager is
        # only for that: the kernels' provisioner builds its own (in its runtime thread).
        manager = build_services(load_settings({"data_dir": str(work.data_dir)})).manager
        try:
            endpoint = await manager.endpoint(server_id)
            # An on-prem host's is the identity file registered for it.
            key_path = (
                Path(endpoint.identity_file)
                if endpoint.identity_file
                else manager.keys.private_key_path(server_id)
            )
        finally:
            await manager.ssh.close_all()
            manager.store.database.close()
        ssh = SSHTarget(
            f"{endpoint.username}@{endpoint.host}",
            openssh_options(key_path, endpoint, str(work.root)),
            work.root,
        )

        if "start" in opts.only:
            print("(a) kernel starts...", file=sys.stderr)
            await measure_starts(
                res,
                opts,
                {local_label: "python3", remote_label: remote_spec},
                work.workspace,
                results,
            )
            await measure_warm_starts(
                res,
                opts,
                (local_label, "python3"),
                (remote_label, remote_spec),
                work.workspace,
                results,
            )
            # The kernels measured below are launched: no warm kernel meanwhile.
            await res.runtime.run(res.runtime.warm.close())
            res.runtime.warm = None
        if not opts.only & {"round-trip", "output"}:
            return results

        print("(b, c) one kernel of each kind, and the OpenSSH tunnels...", file=sys.stderr)
        local_km, local_kc, *_ = await start_kernel(res, "python3", work.workspace)
        remote_km, remote_kc, *_ = await start_kernel(res, remote_spec, work.workspace)
        # These clients only served the start; the measurements connect their own.
        for kc in (local_kc, remote_kc):
            Target.disconnect(res, kc)
        if res.runtime is None:
            res.runtime = remote_km.provisioner.runtime
        results.notes.append(
            "provisioner tunnel's SSH connection: " + await tunnel_details(res.runtime, server_id)
        )
        remote_ports = {
            name: int(remote_km.provisioner.remote_kernel["ports"][f"{name}_port"])
            for name in CHANNELS
        }
        remote_info = remote_km.get_connection_info(session=False)

        def via(ports: dict[str, int]) -> Callable[[], dict[str, Any]]:
            def info() -> dict[str, Any]:
                return {**remote_info, **{f"{name}_port": ports[name] for name in CHANNELS}}

            return info

        # What carries the messages, for the CPU it uses: the server's SSH daemon (every
        # remote target's; OpenSSH's processes serving our one connection), our runtime's
        # thread and the kernel's IOPub relay, ssh processes.
        daemon = daemon_processes(work, server_id, sshd_pid)
        runtime_thread = res.runtime.thread.native_id if res.runtime.thread else None
        relay_pid = (remote_km.provisioner.remote_kernel.get("relay") or {}).get("pid")
        thread_stat = f"/proc/{os.getpid()}/task/{runtime_thread}/stat"
        ours = [*daemon, thread_stat]
        if relay_pid:
            ours.append(f"/proc/{relay_pid}/stat")
        # (c)'s breakdown: every process on each path, the client's and the kernel's too.
        process_cpu = cpu_of(f"/proc/{os.getpid()}/stat")
        thread_cpu = cpu_of(thread_stat)
        remote_pid = remote_km.provisioner.remote_kernel["pid"]
        local_pid = local_km.provisioner.process.pid
        remote_parts = {
            "client": lambda: process_cpu() - thread_cpu(),
            "kernel": cpu_of(f"/proc/{remote_pid}/stat"),
            "relay": cpu_of(f"/proc/{relay_pid}/stat"),
            "sshd": cpu_of(*daemon),
            "runtime thread": thread_cpu,
        }
        targets = [
            Target(
                local_label,
                lambda: local_km.get_connection_info(session=False),
                parts={"client": process_cpu, "kernel": cpu_of(f"/proc/{local_pid}/stat")},
            ),
            Target(
                remote_label,
                lambda: remote_km.get_connection_info(session=False),
                cpu_of(*ours),
                remote_parts,
            ),
        ]
        # What the relay hop costs: our tunnel carrying IOPub straight from the kernel's port,
        # as it carries the other four (no resumption across partitions then).
        direct = await res.runtime.run(open_direct_tunnel(res.runtime, server_id, remote_ports))
        res.tunnels.append(direct)
        targets.append(
            Target(
                DIRECT_LABEL,
                via(direct.local_ports),
                cpu_of(*daemon, thread_stat),
                {**remote_parts, "relay": lambda: 0.0},
            )
        )
        # The floor: the kernel's own loopback ports, reachable here since the server is this
        # machine. Nothing but the client and the kernel carries its messages.
        targets.append(
            Target(
                NO_TUNNEL_LABEL,
                via(remote_ports),
                lambda: 0.0,
                {"client": process_cpu, "kernel": remote_parts["kernel"]},
            )
        )
        pythons = [await python_of(res, target) for target in targets]
        if pythons[0] != pythons[1]:
            results.notes.append(
                f"the kernels run different Pythons: local {pythons[0]}, remote {pythons[1]}"
            )
        modes = [("tt", TT_LABEL), ("per-port", PER_PORT_LABEL)]
        if opts.naive_ssh:
            modes.append(("naive", NAIVE_LABEL))
        for mode, label in modes:
            started = len(res.ssh)
            before = daemon_processes(work, server_id, sshd_pid)
            ports = await open_openssh(res, ssh, remote_ports, mode)
            ssh_stats = [f"/proc/{process.pid}/stat" for process in res.ssh[started:]]
            # The local cloud's daemon serves these too; OpenSSH's forks for them.
            theirs = (
                daemon
                if sshd_pid is None
                else (daemon_processes(work, server_id, sshd_pid) - before)
            )
            parts = {
                "client": process_cpu,
                "kernel": remote_parts["kernel"],
                "sshd": cpu_of(*theirs),
                "ssh": cpu_of(*ssh_stats),
            }
            targets.append(Target(label, via(ports), cpu_of(*theirs, *ssh_stats), parts))

        if "round-trip" in opts.only:
            print(f"(b) {opts.round_trips} round trips per target...", file=sys.stderr)
            await measure_round_trips(res, opts, targets, results)
        if "output" in opts.only:
            print(f"(c) {opts.output_mib} MiB of output per target...", file=sys.stderr)
            # The naive tunnel's stall does not matter for bulk output; leave it out.
            await measure_output(res, opts, [t for t in targets if t.label != NAIVE_LABEL], results)
    finally:
        await res.close_async()
        res.close_runtime()
    return results


# --- the report -----------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(results: Results, opts: Options) -> None:
    mode = "quick" if opts.quick else "full"
    print()
    print(
        f"Remote kernels vs local, on one machine ({os.cpu_count()} CPUs), {mode} run: "
        f"{DAEMONS[opts.cloud]}; "
        f"start x{opts.repeat}, round trip x{opts.round_trips}, "
        f"output {opts.output_mib} MiB x{opts.repeat}"
    )
    if results.start:
        report_starts(results)
    if results.round_trip:
        report_round_trips(results)
    if results.output:
        report_output(results)
    for note in results.notes:
        print(f"    note: {note}")
    report_targets(results)


def report_starts(results: Results) -> None:
    print()
    print("(a) kernel start to ready (start_kernel + wait_for_ready), seconds")
    print(
        f"    {'':40} {'median':>7} {'min':>7} {'max':>7}   "
        f"{'start_kernel':>12} {'live':>6} {'shutdown':>9} {'cold':>6}"
    )
    for label, samples in results.start.items():
        ready = [s[1] for s in samples]
        print(
            f"    {label:40} {median(ready):7.3f} {min(ready):7.3f} {max(ready):7.3f}   "
            f"{median([s[0] for s in samples]):12.3f} {median([s[3] for s in samples]):6.3f} "
            f"{median([s[2] for s in samples]):9.3f} "
            f"{results.cold[label][1]:6.3f}"
        )
    print(
        "    (start_kernel: median until start_kernel() returned; live: until a kernel_info was"
        " answered with its IOPub status, before wait_for_ready, whose last 0.2 s are IOPub"
        " silence it waits out; shutdown: graceful, median; cold: the first start, not counted)"
    )


def report_round_trips(results: Results) -> None:
    print()
    print("(b) execute('pass') round trip (shell reply + IOPub idle), milliseconds")
    print(f"    {'':40} {'median':>7} {'p95':>7} {'min':>7} {'tunnel CPU':>10}")
    for label, samples in results.round_trip.items():
        ms = [s * 1000 for s in samples]
        used = results.round_trip_cpu.get(label)
        cpu = f"{used * 1000 / len(samples):10.2f}" if used is not None else f"{'':>10}"
        print(f"    {label:40} {median(ms):7.2f} {p95(ms):7.2f} {min(ms):7.2f} {cpu}")
    print(
        "    (tunnel CPU: ms of CPU per round trip used by what carries the messages besides"
        " client and kernel: ours, the runtime's thread, the IOPub relay and the server's SSH"
        " daemon; OpenSSH's, the ssh processes and that daemon. Unlike times, it hardly"
        " depends on what else the machine runs.)"
    )
    report_parts(
        "CPU per round trip, ms, per process on the path (summed over all blocks)",
        results.round_trip_parts,
        {label: len(samples) for label, samples in results.round_trip.items()},
    )


def report_output(results: Results) -> None:
    print()
    mb = results.output_bytes / 1e6
    print(f"(c) {mb:.1f} MB of printed output until IOPub idle")
    print(f"    {'':40} {'median s':>8} {'MB/s':>7} {'best s':>7} {'CPU ms/MB':>9}")
    for label, samples in results.output.items():
        used = results.output_cpu.get(label)
        cpu = f"{used * 1000 / len(samples) / mb:9.2f}" if used is not None else f"{'':>9}"
        print(
            f"    {label:40} {median(samples):8.3f} {mb / median(samples):7.1f} {min(samples):7.3f}"
            f" {cpu}"
        )
    report_parts(
        "CPU per MB of output, ms, per process on the path (summed over all runs)",
        results.output_parts,
        {label: len(samples) * mb for label, samples in results.output.items()},
    )


def report_parts(title: str, cpu_parts: dict[str, dict[str, float]], per: dict[str, float]) -> None:
    """Where the CPU goes, per process: what the remote path adds to the local one. ``per``:
    what each target's CPU seconds are divided by (round trips, MB)."""
    names = list(dict.fromkeys(name for parts in cpu_parts.values() for name in parts))
    if not names:
        return
    print()
    print(f"    {title}")
    print(f"    {'':40}" + "".join(f" {name:>14}" for name in names) + f" {'total':>8}")
    for label, parts in cpu_parts.items():
        cells = "".join(
            f" {parts[name] * 1000 / per[label]:14.3f}" if name in parts else f" {'':>14}"
            for name in names
        )
        total = sum(parts.values()) * 1000 / per[label]
        print(f"    {label:40}{cells} {total:8.3f}")
    print(
        "    (client: this process, less the runtime thread where that is a column of its"
        " own; runtime thread: the provisioner's tunnel and IOPub's local end; relay: the"
        " kernel's IOPub relay on the server)"
    )


def report_targets(results: Results) -> None:
    local = LOCAL_LABEL
    rows: list[tuple[str, float, str, bool | None]] = []
    # Issue #22's targets (a start at 0.3x of local is for a warm kernel).
    if results.start:
        remote = next(label for label in results.start if label != local)
        warm = f"{remote}, warm kernel"
        local_ready = median([s[1] for s in results.start[local]])
        start_ratio = median([s[1] for s in results.start[remote]]) / local_ready
        warm_ratio = median([s[1] for s in results.start[warm]]) / local_ready
        warm_live = median([s[3] for s in results.start[warm]]) / median(
            [s[3] for s in results.start[local]]
        )
        rows += [
            ("start to ready with a warm kernel, remote / local", warm_ratio, "<= 0.30x",
             warm_ratio <= 0.3),
            ("start to live with a warm kernel, remote / local", warm_live, "<= 0.30x",
             warm_live <= 0.3),
            ("start to ready, no warm kernel, remote / local", start_ratio, "", None),
        ]  # fmt: skip
    if results.round_trip:
        remote = next(label for label in results.round_trip if label != local)
        rt = {label: median(samples) for label, samples in results.round_trip.items()}
        rt95 = {label: p95(samples) for label, samples in results.round_trip.items()}
        cpu_ratio = (
            results.round_trip_cpu.get(remote, math.nan) / len(results.round_trip[remote])
        ) / (results.round_trip_cpu.get(TT_LABEL, math.nan) / len(results.round_trip[TT_LABEL]))
        rows += [
            ("round trip median, remote / local", rt[remote] / rt[local], "<= 1.20x",
             rt[remote] / rt[local] <= 1.2),
            (f"round trip median, remote / {TT_LABEL}", rt[remote] / rt[TT_LABEL],
             "<= 0.90x", rt[remote] / rt[TT_LABEL] <= 0.9),
            (f"round trip median, remote / {PER_PORT_LABEL}", rt[remote] / rt[PER_PORT_LABEL],
             "", None),
            (f"round trip median, {NO_TUNNEL_LABEL} / {TT_LABEL}",
             rt[NO_TUNNEL_LABEL] / rt[TT_LABEL], "", None),
            (f"round trip median, {NO_TUNNEL_LABEL} / local", rt[NO_TUNNEL_LABEL] / rt[local],
             "", None),
            ("round trip p95, remote / local", rt95[remote] / rt95[local], "", None),
            (f"tunnel CPU per round trip, remote / {TT_LABEL}", cpu_ratio, "", None),
        ]  # fmt: skip
    if results.output:
        remote = next(label for label in results.output if label != local)
        out_ratio = median(results.output[local]) / median(results.output[remote])
        best_ratio = min(results.output[local]) / min(results.output[remote])
        rows += [
            ("output throughput, remote / local", out_ratio, ">= 0.95x", out_ratio >= 1 / 1.05),
            ("output throughput, best of each, remote / local", best_ratio, "", None),
            (f"output throughput, {NO_TUNNEL_LABEL} / local",
             median(results.output[local]) / median(results.output[NO_TUNNEL_LABEL]), "", None),
        ]  # fmt: skip
    print()
    print("Targets (remote = the compute server's kernel through the provisioner's tunnel)")
    width = max(len(row[0]) for row in rows)
    for name, ratio, target, ok in rows:
        mark = "(info)" if ok is None else verdict(ok)
        print(f"    {name:{width}} {ratio:5.2f}x  {target:>8}  {mark}")


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, less output")
    p.add_argument("--repeat", type=int, help="repetitions of (a) and (c) (default 5; quick 2)")
    p.add_argument(
        "--naive-ssh",
        action="store_true",
        help="also time one plain `ssh -N` carrying five forwards (no Nagle fix)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=("start", "round-trip", "output"),
        help="measure only this part: (a) start, (b) round-trip or (c) output (repeatable)",
    )
    p.add_argument("--output-mib", type=int, help="MiB printed per run of (c) (default 50)")
    add_cloud_argument(p)
    args = p.parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 5)
    if repeat < 1:
        p.error("--repeat must be at least 1")
    return Options(
        quick=args.quick,
        repeat=repeat,
        round_trips=50 if args.quick else 200,
        block=25,
        output_mib=args.output_mib or (5 if args.quick else 50),
        naive_ssh=args.naive_ssh,
        only=frozenset(args.only or ("start", "round-trip", "output")),
        cloud=args.cloud,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    work = Workdir(Path(tempfile.mkdtemp(prefix="jcs-bench-kernels-")))
    # The server's kernels run the `python3` found on the PATH its SSH server inherits: make
    # that this Python, the one the local kernel runs, so both sides run the same code.
    os.environ["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
    )
    res = Resources()
    server_id = None
    results = None
    host = None
    status = 1
    try:
        create = ["create", SERVER_NAME, "--json"]
        if opts.cloud == "ssh":
            print("Starting OpenSSH's sshd and registering it as a host...", file=sys.stderr)
            host, host_id = start_host(work)
            create += ["--cloud", "ssh", "--config", json.dumps(host.server_config(host_id))]
        if opts.cloud == "local-asyncssh":
            config_file = work.root / "jupyter_config" / "jupyter_server_config.json"
            config_file.write_text(json.dumps(BUILT_IN_DAEMON))
        print(f"Creating and starting a compute server ({opts.cloud} cloud)...", file=sys.stderr)
        server_id = int(json.loads(cli(work, *create))["id"])
        cli(work, "start", SERVER_NAME)
        sshd_pid = host.sshd.process.pid if host is not None else None
        results = asyncio.run(run_benchmark(work, server_id, opts, res, sshd_pid))
        status = 0
    except KeyboardInterrupt:
        print("Interrupted; cleaning up.", file=sys.stderr)
        status = 130
    except Exception as e:
        print(f"The benchmark failed: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        # No second Ctrl-C half-way through the clean-up (the CLI below inherits this too).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        res.kill_leftovers()
        if server_id is not None:
            try:
                cli(work, "stop", SERVER_NAME)
            except Exception as e:
                print(f"Could not stop the server: {e}", file=sys.stderr)
        if host is not None:
            host.stop()
        shutil.rmtree(work.root, ignore_errors=True)
    if results is not None:
        report(results, opts)
    # Missed targets are part of the report, not a failure: 0 whenever it could measure.
    return status


if __name__ == "__main__":
    sys.exit(main())
