"""Kernels and sync over a long link (a delaying proxy), side by side with OpenSSH and rsync.

    python benchmarks/link.py [--rtt-ms 50,100] [--round-trips N] [--files N] [--repeat N]

No netem here (see ../shared/TOOLCHAIN.md), so the link is ``benchmarks/delay_proxy.py``: a TCP
proxy in its own process between this process (Jupyter's side) and a real OpenSSH sshd on
127.0.0.1 (tests/sshd.py), holding every byte for half the round trip each way. One compute
server (the OpenSSH test cloud: this machine, a workspace of its own) is reached only through
the proxy, by us and by the baselines alike. For each round trip (default 50 and 100 ms; 0 is
the proxy without delay), with the kernel runtime on this process's loop as in Jupyter:

(a) kernel start to ready (``start_kernel()`` then ``wait_for_ready()``) of the server's
    ``compute-1-python3`` kernel, median of ``--repeat`` after a first (not counted: it may
    open the SSH connection), against a local ipykernel's start and OpenSSH's login
    (``ssh host true`` through the proxy: what any tool that logs in pays);
(a') the same with the warm kernel the pool keeps (``c.ComputeServerProvisioner.warm_kernels
    = 1``, refilled before each start), against a local start (the issue's target: 0.3x);
(b) the round trip of ``execute('pass')`` (shell reply and IOPub idle), median, through the
    provisioner's tunnel and through OpenSSH's ``ssh -tt -L`` (as benchmarks/kernels.py);
    beside them, what neither tunnel can go below: the proxy's own round trip (a TCP echo
    through a second proxy of the same delay: its timers fire late) plus a local kernel's
    ``execute('pass')``, so that what our path adds beyond both shows;
(c) a sync when nothing changed (the Sync button's, both ways, on the server's one connection)
    against ``rsync -a`` through the proxy (which logs in each time; rsync minus its login is
    given too);
(d) a first sync of a small tree (``--files``, 1-8 KiB each) to an empty workspace, against
    ``rsync -a`` to an empty directory.

The kernel start also gives when each request was sent and answered (ms from the start of
the last one timed), so what overlaps shows. For each of ours it gives the link round trips it
took (time over the round trip; for (a) the time beyond a local start), and checks the issue's
targets: start <= local + 4 round trips, execute <= round trip + 2 ms (as the issue writes it:
the link's round trip alone, though the kernel's own execute takes more than 2 ms here), no-op
sync <= 2 round trips. It prints a table and exits 0 (a report). Everything it starts is
stopped and its temporary directory removed at the end. The machine is shared and noisy:
compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import kernels as kb  # noqa: E402 - benchmarks/kernels.py: kernel and OpenSSH tunnel helpers
import sync as sb  # noqa: E402 - benchmarks/sync.py: the tree and rsync helpers

SYNC_RECORD = ".jupyter-compute-servers-sync.json"


class Proxy:
    """benchmarks/delay_proxy.py in its own process, on one port kept across restarts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self, rtt_ms: float) -> None:
        self.stop()
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "delay_proxy.py"),
                str(self.target_port),
                f"--delay-ms={rtt_ms / 2}",
                f"--port={self.port}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"the delay proxy did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


class Echo:
    """A TCP echo server on 127.0.0.1, in a thread of its own (off the measured loop): what
    the delaying proxy's own round trip is, through a second proxy in front of it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._echo, args=(sock,), daemon=True).start()

    @staticmethod
    def _echo(sock: socket.socket) -> None:
        with sock:
            while data := sock.recv(65536):
                sock.sendall(data)

    def close(self) -> None:
        self.listener.close()


def echo_once(sock: socket.socket, size: int = 600) -> float:
    """One round trip of ``size`` bytes (about an execute_request's) to the echo server
    through the proxy ``sock`` is connected to (blocking: run in a thread)."""
    start = time.perf_counter()
    sock.sendall(b"x" * size)
    got = 0
    while got < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the echo through the proxy closed")
        got += len(chunk)
    return time.perf_counter() - start


async def warm_pid(pool: Any, server_id: int) -> int:
    """The pid of the warm kernel the pool holds for the server, once it holds one."""
    deadline = time.monotonic() + 120
    while True:
        for warm in pool.held(server_id):
            if warm.provisioner.remote_kernel:
                return int(warm.provisioner.remote_kernel["pid"])
        if time.monotonic() > deadline:
            raise RuntimeError("the pool kept no warm kernel within 120 s")
        pool.fill(server_id)
        await asyncio.sleep(0.05)


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


async def measure(args: argparse.Namespace, tmp: Path, res: kb.Resources) -> list[dict]:
    # asyncssh after the package, whose _quiet silences asyncssh's DSA warnings at import
    from jupyter_compute_servers.agent import AgentClient  # noqa: I001
    from jupyter_compute_servers.access import openssh_options
    from jupyter_compute_servers.config import ComputeServersSettings
    from jupyter_compute_servers.kernels.runtime import KernelRuntime, set_server_runtime
    from jupyter_compute_servers.kernels.warm import WarmKernelPool
    from traitlets.config import Config
    from jupyter_compute_servers.models import State
    from jupyter_compute_servers.services import build_services
    from jupyter_compute_servers.ssh import KeyStore
    from jupyter_compute_servers.ssh_endpoint import SSHEndpoint
    from jupyter_compute_servers.sync.transfer import SyncSession
    from tests.sshd import OpenSSHHost, start_sshd
    import asyncssh

    # What ours asks the server (the agent's methods, the sync process's requests), in order:
    # each request whose answer is awaited before the next is sent is one link round trip.
    sent_ops: list[str] = []
    # when each was sent (seconds since the operation began) and, for awaited ones, answered
    sent_at: list[tuple[float, float | None]] = []
    began = [0.0]
    send, call = SyncSession.send, AgentClient.call

    def sent(op: str) -> int:
        sent_ops.append(op)
        sent_at.append((time.perf_counter() - began[0], None))
        return len(sent_at) - 1

    def answered(i: int) -> None:
        if i < len(sent_at):
            sent_at[i] = (sent_at[i][0], time.perf_counter() - began[0])

    def counting_send(self: SyncSession, message: dict[str, Any], payload: bytes = b"") -> None:
        sent(f"sync {message.get('op')}")
        send(self, message, payload)

    async def counting_call(self: AgentClient, method: str, *args: Any, **kwargs: Any) -> Any:
        i = sent(f"agent {method}")
        try:
            return await call(self, method, *args, **kwargs)
        finally:
            answered(i)

    SyncSession.send = counting_send  # type: ignore[method-assign]
    AgentClient.call = counting_call  # type: ignore[method-assign]
    # SSH channels opened (a round trip each, before anything goes through them): tunnels'
    # connections (direct-tcpip) and sessions (a relay, a command).
    for name, label in (("create_connection", "tcp"), ("create_session", "session")):
        original = getattr(asyncssh.SSHClientConnection, name)

        async def counting_open(
            self: Any, *args: Any, _original: Any = original, _label: str = label, **kwargs: Any
        ) -> Any:
            i = sent(f"channel {_label}")
            try:
                return await _original(self, *args, **kwargs)
            finally:
                answered(i)

        setattr(asyncssh.SSHClientConnection, name, counting_open)
    data = tmp / "compute_servers"
    keys = KeyStore(data / "keys")
    sshd = start_sshd(tmp, keys.ensure(1))
    proxy = Proxy(sshd.port)
    echo = Echo()
    echo_proxy = Proxy(echo.port)
    services = None
    rows: list[dict] = []
    try:
        proxy.start(args.rtts[0])
        root, workspace, target = tmp / "root", tmp / "workspace", tmp / "rsync-target"
        for path in (root, workspace):
            path.mkdir(exist_ok=True)
        sb.make_tree(root, args.files, 0, 0)
        endpoint = SSHEndpoint(
            host="127.0.0.1",
            port=proxy.port,
            username=sshd.username,
            host_key=sshd.host_key,
            workspace=str(workspace),
            python=sys.executable,
            runtime_dir=str(tmp / "remote-runtime"),
        )
        cloud = OpenSSHHost(data_dir=str(tmp / "cloud"))
        cloud.endpoint = endpoint
        # The kernel specs where jupyter_client looks (JUPYTER_DATA_DIR points into tmp).
        settings = ComputeServersSettings(
            data_dir=str(data),
            kernel_specs_dir=os.path.join(os.environ["JUPYTER_DATA_DIR"], "kernels"),
        )
        services = build_services(settings, clouds={"openssh": cloud}, sync_root=str(root))
        manager = services.manager
        runtime = KernelRuntime(manager, asyncio.get_running_loop(), str(root))
        set_server_runtime(runtime)
        server = manager.create_server({"name": "link", "cloud": "openssh"})
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        assert manager.get_server(server.id).state is State.RUNNING
        for _ in range(600):
            if manager.get_server(server.id).kernel_specs:
                break
            await asyncio.sleep(0.1)
        spec = f"compute-{server.id}-python3"
        ssh = kb.SSHTarget(
            f"{endpoint.username}@{endpoint.host}",
            openssh_options(keys.private_key_path(server.id), endpoint, str(tmp)),
            tmp,
        )
        rsync = [
            "rsync",
            "-a",
            "-e",
            " ".join(["ssh", *ssh.options]),
            f"{root}/",
            f"{ssh.user_host}:{target}/",
        ]

        # a first local start, not counted: imports
        km, kc, *_ = await kb.start_kernel(res, "python3", workspace)
        await kb.stop_kernel(res, km, kc)

        async def sync(direction: str = "both") -> float:
            sent_ops.clear()
            start = time.perf_counter()
            result = await services.sync.run(server.id, direction, "", "cli")
            took = time.perf_counter() - start
            if result["state"] != "completed" or result["summary"]["errors"]:
                raise RuntimeError(f"sync failed: {result['error'] or result['summary']['errors']}")
            return took

        def empty_targets() -> None:
            shutil.rmtree(target, ignore_errors=True)
            for entry in workspace.iterdir():
                if not entry.name.startswith(".") or entry.name == SYNC_RECORD:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()

        for n, rtt_ms in enumerate(args.rtts):
            if n:
                # the same port, a new delay: every connection is made again through it
                await manager.ssh.close_all()
                proxy.start(rtt_ms)
            print(f"round trip {rtt_ms:g} ms...", file=sys.stderr)
            row: dict[str, Any] = {"rtt": rtt_ms / 1000}
            row["login"] = min(
                seconds(["ssh", *ssh.options, ssh.user_host, "true"]) for _ in range(args.repeat)
            )

            # (a) kernel starts, each after a local one (the machine's load drifts: a pair is
            # comparable, runs minutes apart are not); the first pair is not counted
            local_starts, local_lives, starts, lives = [], [], [], []
            after_listen: list[float] = []
            returned_to_live: list[float] = []
            for i in range(args.repeat + 1):
                lkm, lkc, _, local_ready, local_live = await kb.start_kernel(
                    res, "python3", workspace
                )
                await kb.stop_kernel(res, lkm, lkc)
                sent_ops.clear()
                sent_at.clear()
                began[0] = time.perf_counter()
                # in the Jupyter root, as a notebook there: the push of its directory included
                km, kc, launched, ready, live = await kb.start_kernel(res, spec, root)
                offset = began[0] - (time.perf_counter() - ready)  # start_kernel's own start
                if i < args.repeat:
                    await kb.stop_kernel(res, km, kc)
                if i:
                    local_starts.append(local_ready)
                    local_lives.append(local_live)
                    starts.append(ready)
                    lives.append(live)
                    returned_to_live.append(live - launched)
                    # from the launch's answer (the kernel listens) to live: what the link
                    # costs after the kernel's own start, free of how long it took to listen
                    answered_at = sent_at[sent_ops.index("agent kernel_launch")][1]
                    if answered_at is not None:
                        after_listen.append(live - offset - answered_at)
            row["start"], row["local_start"] = (
                statistics.median(starts),
                statistics.median(local_starts),
            )
            row["live"], row["local_live"] = (
                statistics.median(lives),
                statistics.median(local_lives),
            )
            # beyond the local start of the same pair, median
            row["start_extra"] = statistics.median(
                r - local for r, local in zip(starts, local_starts, strict=True)
            )
            row["after_listen"] = statistics.median(after_listen) if after_listen else math.nan
            row["returned_to_live"] = statistics.median(returned_to_live)
            row["live_extra"] = statistics.median(
                r - local for r, local in zip(lives, local_lives, strict=True)
            )
            row["start_ops"] = list(sent_ops)
            # the last start's requests, then when start_kernel() returned, and when the client
            # was live and ready
            row["start_timeline"] = list(zip(sent_ops, sent_at, strict=True)) + [
                (f"client {name}", (at - offset, None))
                for name, at in (("returned", launched), ("live", live), ("ready", ready))
            ]

            # (b) execute round trips: the provisioner's tunnel, then OpenSSH's
            kb.Target.disconnect(res, kc)
            remote_ports = {
                name: int(km.provisioner.remote_kernel["ports"][f"{name}_port"])
                for name in kb.CHANNELS
            }
            info = km.get_connection_info(session=False)
            ports = await kb.open_openssh(res, ssh, remote_ports, "tt")
            tunnelled = {**info, **{f"{c}_port": ports[c] for c in kb.CHANNELS}}
            targets = {"ours": km.get_connection_info(session=False), "openssh": tunnelled}
            clients = {
                label: await kb.Target(label, functools.partial(dict, connection)).connect(res)
                for label, connection in targets.items()
            }
            # What the "RTT + 2 ms" leaves out, measured in turn with ours and
            # OpenSSH's (the machine's load drifts): the proxy's own round trip (a TCP echo
            # through a proxy of the same delay: its timers fire late too) and a local
            # kernel's own execute.
            echo_proxy.start(rtt_ms)
            lkm, clients["local"], *_ = await kb.start_kernel(res, "python3", workspace)
            echo_socket = socket.create_connection(("127.0.0.1", echo_proxy.port))
            echo_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times: dict[str, list[float]] = {label: [] for label in (*clients, "echo")}
            try:
                for _ in range(args.round_trips + 2):
                    for label, client in clients.items():
                        times[label].append((await kb.execute(client, "pass"))[0])
                    times["echo"].append(await asyncio.to_thread(echo_once, echo_socket))
            finally:
                echo_socket.close()
                echo_proxy.stop()
            for label, measured in times.items():
                row[f"execute_{label}"] = statistics.median(measured[2:])
            row["echo"] = row.pop("execute_echo")
            for label in targets:
                kb.Target.disconnect(res, clients[label])
            await kb.stop_kernel(res, lkm, clients["local"])
            kb.Resources.kill_ssh(res)
            await kb.stop_kernel(res, km, kc)

            # (a') starts that take the warm kernel the pool keeps (refilled before each),
            # each after a local one; the first pair is not counted
            pool = WarmKernelPool(
                manager,
                Config({"ComputeServerProvisioner": {"warm_kernels": 1}}),
                str(data),
            )
            pool.start(runtime)
            warm_starts, warm_locals = [], []
            try:
                for i in range(args.repeat + 1):
                    lkm, lkc, _, local_ready, _ = await kb.start_kernel(res, "python3", workspace)
                    await kb.stop_kernel(res, lkm, lkc)
                    pid = await warm_pid(pool, server.id)
                    sent_ops.clear()
                    sent_at.clear()
                    began[0] = time.perf_counter()
                    wkm, wkc, launched, ready, live = await kb.start_kernel(res, spec, root)
                    offset = began[0] - (time.perf_counter() - ready)
                    if wkm.provisioner.remote_kernel["pid"] != pid:
                        raise RuntimeError("a start with a warm kernel launched one instead")
                    await kb.stop_kernel(res, wkm, wkc)
                    if i:
                        warm_starts.append(ready)
                        warm_locals.append(local_ready)
            finally:
                await pool.close()
                runtime.warm = None
            row["warm_start"] = statistics.median(warm_starts)
            row["warm_local"] = statistics.median(warm_locals)
            row["warm_extra"] = statistics.median(
                r - local for r, local in zip(warm_starts, warm_locals, strict=True)
            )
            # what the start asked, not the pool's refill that follows it
            asked_by_start = [
                (op, at)
                for op, at in zip(sent_ops, sent_at, strict=True)
                if at[0] <= ready - offset
            ]
            row["warm_timeline"] = asked_by_start + [
                (f"client {name}", (at - offset, None))
                for name, at in (("returned", launched), ("live", live), ("ready", ready))
            ]

            # (d) first syncs (before (c), which needs a synced tree)
            firsts, rsync_firsts = [], []
            for _ in range(args.repeat):
                empty_targets()
                rsync_firsts.append(seconds(rsync))
                firsts.append(await sync())
            row["first"], row["rsync_first"] = min(firsts), min(rsync_firsts)
            # (c) nothing changed
            noops, rsync_noops = [], []
            for _ in range(args.repeat):
                rsync_noops.append(seconds(rsync))
                noops.append(await sync())
            row["noop"], row["rsync_noop"] = min(noops), min(rsync_noops)
            row["noop_ops"] = list(sent_ops)
            row["complete"] = sb.same_trees(root, workspace) and sb.same_trees(root, target)
            rows.append(row)
    finally:
        await res.close_async()
        if services is not None:
            set_server_runtime(None)
            await services.close()
        proxy.stop()
        echo_proxy.stop()
        echo.close()
        sshd.process.terminate()
        sshd.process.wait()
    return rows


def report(rows: list[dict], args: argparse.Namespace) -> None:
    print(
        "\nkernel starts: each remote one right after a local one; 'ours in RTTs' is the median"
        f" over {args.repeat} pairs of the remote start's time beyond its local one, in RTTs"
    )
    print(f"{'':34}{'ours':>9}{'OpenSSH/rsync':>15}{'ratio':>8}{'ours in RTTs':>14}  target")

    def line(
        label: str, ours: float | None, theirs: float | None, rtts: float, target: str = ""
    ) -> None:
        if not rtt:
            target = ""  # no link: the row shows what the proxy and this machine cost
        mine = f"{ours * 1000:>7.1f}ms" if ours is not None else " " * 9
        base = f"{theirs * 1000:>13.1f}ms" if theirs is not None else " " * 15
        ratio = f"{ours / theirs:>7.2f}x" if ours is not None and theirs else " " * 8
        print(f"{label:34}{mine}{base}{ratio}{rtts:>14.2f}  {target}")

    rtt = 0.0
    for row in rows:
        rtt, login = row["rtt"], row["login"]
        in_rtts = (lambda t, rtt=rtt: t / rtt) if rtt else (lambda t: math.nan)
        print(f"-- link round trip {rtt * 1000:g} ms " + "-" * 70)
        line("OpenSSH login (ssh host true)", None, login, in_rtts(login), "(OpenSSH's RTTs)")
        local, local_live = row["local_start"], row["local_live"]
        line("    local ipykernel start to ready", None, local, math.nan)
        line(
            "(a) kernel start to ready",
            row["start"],
            local + login,
            in_rtts(row["start_extra"]),
            f"<= local + 4 RTT {verdict(row['start_extra'] <= 4 * rtt)}",
        )
        line("    local ipykernel start to live", None, local_live, math.nan)
        line(
            "    to live (kernel_info + IOPub)",
            row["live"],
            local_live + login,
            in_rtts(row["live_extra"]),
            f"<= local + 4 RTT {verdict(row['live_extra'] <= 4 * rtt)}",
        )
        line(
            "    launch answered to live",
            row["after_listen"],
            None,
            in_rtts(row["after_listen"]),
            "(the kernel listening: the rest of its start, then the link)",
        )
        line(
            "    start_kernel() returned to live",
            row["returned_to_live"],
            None,
            in_rtts(row["returned_to_live"]),
            "(the client's handshakes and first kernel_info)",
        )
        print(f"{'    ours asked the server':34}{asked(row['start_ops'])}")
        print(f"{'    when (ms: sent-answered)':34}{timeline(row['start_timeline'])}")
        line(
            "(a') warm kernel start to ready",
            row["warm_start"],
            row["warm_local"],
            in_rtts(row["warm_extra"]),
            f"<= 0.3x local {verdict(row['warm_start'] <= 0.3 * row['warm_local'])}",
        )
        print(f"{'    when (ms: sent-answered)':34}{timeline(row['warm_timeline'])}")
        target = rtt + 0.002
        ours = row["execute_ours"]
        line(
            "(b) execute('pass') round trip",
            ours,
            row["execute_openssh"],
            in_rtts(ours),
            f"<= RTT + 2 ms ({target * 1000:.0f} ms) {verdict(ours <= target)}",
        )
        line("    OpenSSH ssh -tt -L", None, None, in_rtts(row["execute_openssh"]))
        # The target as written counts the link and nothing else; the decomposition below
        # says what of the rest is the proxy's and the kernel's, and what is ours.
        floor = row["echo"] + row["execute_local"]
        line("    the proxy's round trip (TCP echo)", None, row["echo"], in_rtts(row["echo"]))
        line("    local execute('pass')", None, row["execute_local"], math.nan)
        line(
            "    proxy round trip + local execute",
            ours,
            floor,
            in_rtts(floor),
            f"ours beyond it: {(ours - floor) * 1000:+.1f} ms",
        )
        line(
            "    ssh -tt -L beyond it",
            None,
            row["execute_openssh"] - floor,
            math.nan,
            "(what OpenSSH's path adds)",
        )
        for key, label, goal in (
            ("noop", "(c) no-op sync", 2),
            ("first", f"(d) first sync, {args.files} files", None),
        ):
            ours, theirs = row[key], row[f"rsync_{key}"]
            met = "" if goal is None else verdict(ours <= goal * rtt)
            line(
                label,
                ours,
                theirs,
                in_rtts(ours),
                "" if goal is None else f"<= {goal} RTT ({goal * rtt * 1000:.0f} ms) {met}",
            )
            line("    rsync minus its login", ours, theirs - login, in_rtts(theirs - login))
            if key == "noop":
                print(f"{'    ours asked the server':34}{asked(row['noop_ops'])}")
        print(f"{'    copies complete':34}{'yes' if row['complete'] else 'NO'}")
    print(
        "\n(a): OpenSSH's column is a local start plus one OpenSSH login, and ours in RTTs is the"
        " time beyond a local start; (b): `ssh -tt -L`; (c), (d): rsync -a, which logs in each"
        f" run. (a), (b): medians; (c), (d), logins: best of {args.repeat}."
    )


def slopes(rows: list[dict]) -> None:
    """Round trips per operation from the two longest links: (t2 - t1) / (rtt2 - rtt1), free of
    what the operation costs on this machine."""
    linked = sorted((row for row in rows if row["rtt"]), key=lambda row: row["rtt"])
    if len(linked) < 2:
        return
    a, b = linked[-2], linked[-1]
    span = b["rtt"] - a["rtt"]
    print(
        f"\nlink round trips per operation, from the {a['rtt'] * 1000:g} and "
        f"{b['rtt'] * 1000:g} ms runs ((t2 - t1) / (rtt2 - rtt1)):"
    )
    print(f"{'':34}{'ours':>9}{'baseline':>10}  target")
    for label, ours, theirs, target in (
        # beyond the local start of the same pair: free of the kernel's own start time
        ("(a) kernel start to ready", "start_extra", "login", "<= 4 (OpenSSH: a login)"),
        ("    to live", "live_extra", "login", "<= 4"),
        ("    launch answered to live", "after_listen", "login", ""),
        ("    start_kernel() returned to live", "returned_to_live", "login", ""),
        ("(a') warm kernel start to ready", "warm_start", "login", "(OpenSSH: a login)"),
        ("(b) execute('pass') round trip", "execute_ours", "execute_openssh", "<= 1 (ssh -tt -L)"),
        ("(c) no-op sync", "noop", "rsync_noop", "<= 2 (rsync -a)"),
        ("(d) first sync", "first", "rsync_first", "(rsync -a)"),
    ):
        mine, base = (b[ours] - a[ours]) / span, (b[theirs] - a[theirs]) / span
        print(f"{label:34}{mine:>9.1f}{base:>10.1f}  {target}")


def asked(ops: list[str]) -> str:
    """The requests in order, a run of the same one as ``name xN``."""
    runs: list[list[Any]] = []
    for op in ops:
        if runs and runs[-1][0] == op:
            runs[-1][1] += 1
        else:
            runs.append([op, 1])
    return ", ".join(op if n == 1 else f"{op} x{n}" for op, n in runs)


def timeline(events: list[tuple[str, tuple[float, float | None]]]) -> str:
    """The last kernel start's requests with when each was sent and answered (ms from the
    start): overlapping spans cost one round trip together."""
    parts = []
    for op, (at, done) in events:
        span = f"{at * 1000:.0f}" + (f"-{done * 1000:.0f}" if done is not None else "")
        parts.append(f"{op.split()[-1]} {span}")
    return ", ".join(parts)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt-ms", default="0,50,100", help="round trips to run, comma-separated")
    parser.add_argument("--round-trips", type=int, default=20, help="execute('pass') per target")
    parser.add_argument("--files", type=int, default=200, help="files of the tree to sync")
    parser.add_argument("--repeat", type=int, default=3, help="kernel starts, syncs, logins")
    args = parser.parse_args()
    args.rtts = [float(v) for v in args.rtt_ms.split(",")]
    for tool in ("rsync", "ssh"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (apt-get install rsync openssh-client)")
            return 0
    tmp = Path(tempfile.mkdtemp(prefix="jcs-bench-link-"))
    work = kb.Workdir(tmp)  # JUPYTER_* into tmp, before jupyter is imported
    res = kb.Resources()
    try:
        rows = asyncio.run(measure(args, work.root, res))
        report(rows, args)
        slopes(rows)
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        res.kill_leftovers()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
