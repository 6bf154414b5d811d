"""Scale: many servers in the store, many kernels on one server, through a real Jupyter server.

    python benchmarks/scale.py [--servers 500] [--kernels 32] [--local-kernels 8] [--requests 30]

In one run, against one ``jupyter server`` with the extension (its own process, its own store in
a temporary directory, as benchmarks/apps.py starts it, with a Jupyter root of its own), over its
REST API with the token:

(a) servers in the store: ``local`` servers are created (``POST servers``, deprovisioned) up to
    1, 100 and ``--servers``; at each count ``GET servers`` is timed (median and p95 of
    ``--requests``), against ``GET /api/status`` of the same Jupyter (an authenticated handler
    doing next to nothing: the HTTP and auth cost every request pays);
(b) kernels on one server: one ``local`` server is started, and ``--kernels`` of its
    ``compute-<id>-python3`` kernels are started one after another (``POST /api/kernels``); at
    1, 8, 16... kernels, Jupyter's resident memory, its open file descriptors and its TCP
    connections to the server's SSH daemon are read from /proc (psutil); then the same for
    ``--local-kernels`` local ipykernels, the baseline of what any kernel costs Jupyter.
(c) kernels started at once: those of (b) are shut down, then ``--at-once`` (20) of the
    server's kernels are started together (concurrent ``POST /api/kernels``, each then asked
    for a kernel_info reply through Jupyter's websocket): the time until all are ready,
    against the same number started one after another in (b) (the sum of its first starts)
    and against as many local ipykernels started at once; Jupyter's RSS, descriptors and SSH
    connections with them all running.
(d) servers syncing on a schedule: ``--sync-servers`` (50) ``local`` servers with
    ``auto_sync_minutes`` 1 are started, with ``--sync-files`` small files in the Jupyter root;
    Jupyter's CPU use and its event loop's lag (the lateness of a 20 ms timer inside the Jupyter
    process: a tiny server extension of this benchmark's) are read while they idle, then over
    ``--sync-window`` seconds once the schedule's syncs began (all due at the same minute: the
    worst case), with the syncs completed meanwhile and their durations.

Targets (issue #22): ``GET servers`` with 500 servers <= 50 ms; one SSH connection whatever the
number of kernels (started one after another or at once); memory and descriptors growing
linearly (the report gives the growth per kernel between checkpoints); Jupyter's event loop
never held up long by the syncs of many servers. It prints the tables and exits 0 (a report).
Everything it started is stopped and its temporary directory removed at the end. The machine is
shared and noisy: compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apps as ab

MIB = 1024 * 1024


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def timed_get(session: aiohttp.ClientSession, url: str, headers: dict, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {url}: {response.status}")
        times.append(time.perf_counter() - start)
    return times


def ssh_daemon_ports() -> set[int]:
    """The listening ports of the local cloud's SSH daemons (one per running server)."""
    from jupyter_compute_servers.clouds.local_openssh import daemon_sandbox

    ports = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if daemon_sandbox("\0".join(cmdline).encode()) is not None:
            with contextlib.suppress(psutil.Error):
                for conn in process.net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN:
                        ports.add(conn.laddr.port)
    return ports


def footprint(pid: int, ssh_ports: set[int]) -> dict[str, float]:
    process = psutil.Process(pid)
    to_ssh = [
        c
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port in ssh_ports and c.status == psutil.CONN_ESTABLISHED
    ]
    return {
        "rss": process.memory_info().rss / MIB,
        "fds": process.num_fds(),
        "threads": process.num_threads(),
        "ssh": len(to_ssh),
    }


#: A Jupyter server extension of this benchmark's: the lateness of a 20 ms timer on Jupyter's
#: event loop (what every request and websocket message waits behind), read and reset by
#: ``GET /bench-lag`` (authenticated with the token like any handler).
LAG_EXTENSION = """
import asyncio, json, time
from jupyter_server.base.handlers import APIHandler
from tornado import web

PERIOD = 0.02
LATE = []

class LagHandler(APIHandler):
    @web.authenticated
    def get(self):
        data = list(LATE)
        LATE.clear()
        self.finish(json.dumps({"late": data}))

def _jupyter_server_extension_points():
    return [{"module": "bench_lag"}]

def _load_jupyter_server_extension(app):
    app.web_app.add_handlers(".*$", [(app.base_url + "bench-lag", LagHandler)])
    loop = asyncio.get_event_loop()
    def tick(expected):
        now = time.perf_counter()
        LATE.append(now - expected)
        loop.call_later(PERIOD, tick, now + PERIOD)
    loop.call_later(PERIOD, tick, time.perf_counter() + PERIOD)
"""


async def lag(jupyter: ab.Jupyter, session: aiohttp.ClientSession) -> list[float]:
    """The timer's lateness since the last read, in seconds."""
    async with session.get(f"{jupyter.base}bench-lag", headers=jupyter.headers) as response:
        return list((await response.json())["late"])


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def start_kernels_at_once(
    jupyter: ab.Jupyter, session: aiohttp.ClientSession, name: str, n: int
) -> tuple[float, list[str]]:
    async def one() -> str:
        async with session.post(
            f"{jupyter.base}api/kernels", json={"name": name}, headers=jupyter.headers
        ) as response:
            body = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"starting a {name} kernel: {body}")
        kernel_id = str(body["id"])
        # Ready as a notebook sees it: a kernel_info reply through Jupyter's websocket (a local
        # kernel's POST answers before it is ready; a remote one's once it is).
        url = f"{jupyter.base.replace('http', 'ws', 1)}api/kernels/{kernel_id}/channels"
        msg_id = secrets.token_hex(8)
        header = {
            "msg_id": msg_id,
            "msg_type": "kernel_info_request",
            "session": secrets.token_hex(8),
            "username": "bench",
            "date": "2026-01-01T00:00:00Z",
            "version": "5.3",
        }
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": {}}
        deadline = time.monotonic() + 120
        while True:
            # Jupyter closes a kernel's websocket when the kernel is slow to answer its own
            # nudge (many starting at once on 2 cores): connect again, as the Lab does.
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, TypeError):
                async with session.ws_connect(url, headers=jupyter.headers) as ws:
                    while True:
                        await ws.send_json({**message, "channel": "shell"})
                        with contextlib.suppress(asyncio.TimeoutError):
                            reply = await ws.receive_json(timeout=1)
                            while reply.get("parent_header", {}).get("msg_id") != msg_id or (
                                reply.get("msg_type") != "kernel_info_reply"
                            ):
                                reply = await ws.receive_json(timeout=60)
                            return kernel_id
            if time.monotonic() > deadline:
                raise RuntimeError(f"kernel {kernel_id} ({name}) never answered kernel_info")
            await asyncio.sleep(0.2)

    start = time.perf_counter()
    ids = await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - start, list(ids)


async def shut_down(
    jupyter: ab.Jupyter, session: aiohttp.ClientSession, kernel_ids: list[str]
) -> None:
    async def one(kernel_id: str) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.delete(
                f"{jupyter.base}api/kernels/{kernel_id}", headers=jupyter.headers
            ) as response:
                await response.read()

    await asyncio.gather(*(one(k) for k in kernel_ids))
    kernel_ids.clear()


async def kernels_at_once(
    jupyter: ab.Jupyter,
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    spec: str,
    kernel_ids: list[str],
) -> list[dict[str, Any]]:
    assert jupyter.process is not None
    pid = jupyter.process.pid
    await shut_down(jupyter, session, kernel_ids)
    rows = []
    for kind, name in (("remote", spec), ("local", "python3")):
        print(f"(c) {args.at_once} {kind} kernels at once...", file=sys.stderr)
        await asyncio.sleep(1)
        before = footprint(pid, ssh_daemon_ports())
        took, ids = await start_kernels_at_once(jupyter, session, name, args.at_once)
        kernel_ids.extend(ids)
        await asyncio.sleep(1)
        rows.append(
            {"kind": kind, "took": took, "before": before, **footprint(pid, ssh_daemon_ports())}
        )
        await shut_down(jupyter, session, kernel_ids)
    return rows


async def servers_syncing(
    jupyter: ab.Jupyter, session: aiohttp.ClientSession, args: argparse.Namespace
) -> dict[str, Any]:
    assert jupyter.process is not None
    pid = jupyter.process.pid
    for i in range(args.sync_files):
        (jupyter.root_dir / "synced" / f"d{i % 10}").mkdir(parents=True, exist_ok=True)
        (jupyter.root_dir / "synced" / f"d{i % 10}" / f"f{i}.txt").write_text(f"file {i}\n" * 50)
    ids = []
    print(f"(d) starting {args.sync_servers} servers that sync every minute...", file=sys.stderr)
    for i in range(args.sync_servers):
        server = await jupyter.api(
            session,
            "POST",
            "servers",
            {"name": f"sync-{i:03d}", "sync": {"auto_sync_minutes": 1}},
        )
        ids.append(server["id"])
    started = time.perf_counter()
    await asyncio.gather(
        *(jupyter.api(session, "POST", f"servers/{sid}/actions/start") for sid in ids)
    )

    async def all_running() -> bool:
        listed = (await jupyter.api(session, "GET", "servers"))["servers"]
        states = {s["id"]: s["state"] for s in listed}
        return all(states.get(sid) == "running" for sid in ids)

    await ab.wait_for(all_running, "the servers to start", timeout=600)
    start_all = time.perf_counter() - started

    async def auto_runs() -> list[dict[str, Any]]:
        async def one(sid: int) -> list[dict[str, Any]]:
            runs = (await jupyter.api(session, "GET", f"servers/{sid}/syncs"))["syncs"]
            return [r for r in runs if r.get("trigger") == "auto"]

        return [r for runs in await asyncio.gather(*(one(s) for s in ids)) for r in runs]

    # Idle: the servers run, no sync is due yet (the first is a minute after each is seen).
    await asyncio.sleep(2)
    await lag(jupyter, session)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(args.idle_window)
    idle = {
        "lag": await lag(jupyter, session),
        "cpu": (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0),
        "syncs": len(await auto_runs()),
    }
    print("(d) waiting for the schedule's syncs...", file=sys.stderr)

    async def syncing() -> bool:
        return bool(await auto_runs())

    await ab.wait_for(syncing, "the first scheduled sync", timeout=180)
    await lag(jupyter, session)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(args.sync_window)
    busy_lag = await lag(jupyter, session)
    busy_cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t0)
    runs = await auto_runs()
    done = [r for r in runs if r.get("state") == "completed" and r.get("finished")]
    durations = [r["finished"] - r["started"] for r in done]
    return {
        "servers": len(ids),
        "start_all": start_all,
        "idle": idle,
        "busy": {"lag": busy_lag, "cpu": busy_cpu},
        "runs": len(runs),
        "completed": len(done),
        "failed": [r.get("error") for r in runs if r.get("state") == "failed"][:3],
        "durations": durations,
        **footprint(pid, set()),
    }


async def servers_in_store(
    jupyter: ab.Jupyter, session: aiohttp.ClientSession, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    created = 0
    creates: list[float] = []
    status_url = f"{jupyter.base}api/status"
    servers_url = f"{jupyter.base}compute-servers/api/servers"
    for count in sorted({1, min(100, args.servers), args.servers}):
        print(f"(a) {count} servers...", file=sys.stderr)
        while created < count:
            start = time.perf_counter()
            await jupyter.api(session, "POST", "servers", {"name": f"scale-{created:04d}"})
            creates.append(time.perf_counter() - start)
            created += 1
        got = await jupyter.api(session, "GET", "servers")
        assert len(got["servers"]) == count, len(got["servers"])
        await timed_get(session, servers_url, jupyter.headers, 2)  # warm
        servers = await timed_get(session, servers_url, jupyter.headers, args.requests)
        status = await timed_get(session, status_url, jupyter.headers, args.requests)
        rows.append(
            {
                "count": count,
                "servers": statistics.median(servers),
                "servers_p95": p95(servers),
                "status": statistics.median(status),
                "create": statistics.median(creates[-min(len(creates), 50) :]),
            }
        )
    return rows


async def kernels_on_a_server(
    jupyter: ab.Jupyter, session: aiohttp.ClientSession, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[str], str]:
    assert jupyter.process is not None
    pid = jupyter.process.pid
    server = await jupyter.api(session, "POST", "servers", {"name": "kernels"})
    sid = server["id"]
    await jupyter.api(session, "POST", f"servers/{sid}/actions/start")

    async def running() -> bool:
        return bool((await jupyter.api(session, "GET", f"servers/{sid}"))["state"] == "running")

    await ab.wait_for(running, "the server to start", timeout=120)
    spec = f"compute-{sid}-python3"

    async def spec_listed() -> bool:
        async with session.get(f"{jupyter.base}api/kernelspecs", headers=jupyter.headers) as r:
            return spec in (await r.json())["kernelspecs"]

    await ab.wait_for(spec_listed, f"kernel spec {spec}", timeout=120)
    kernel_ids: list[str] = []
    rows = []
    for kind, name, total in (
        ("remote", spec, args.kernels),
        ("local", "python3", args.local_kernels),
    ):
        checkpoints = {0, 1, total} | {n for n in (8, 16, 32, 64) if n < total}
        ssh_ports = ssh_daemon_ports()
        starts: list[float] = []
        for n in range(total + 1):
            if n:
                start = time.perf_counter()
                async with session.post(
                    f"{jupyter.base}api/kernels", json={"name": name}, headers=jupyter.headers
                ) as response:
                    body = await response.json()
                    if response.status >= 400:
                        raise RuntimeError(f"starting kernel {n} ({name}): {body}")
                starts.append(time.perf_counter() - start)
                if kind == "remote":
                    args.remote_starts.append(starts[-1])
                kernel_ids.append(body["id"])
            if n in checkpoints:
                print(f"(b) {n} {kind} kernels...", file=sys.stderr)
                await asyncio.sleep(1)  # let the last start's buffers settle
                rows.append(
                    {
                        "kind": kind,
                        "kernels": n,
                        "start": statistics.median(starts[-8:]) if starts else math.nan,
                        **footprint(pid, ssh_ports),
                    }
                )
    return rows, kernel_ids, spec


async def run(args: argparse.Namespace, work: Path) -> None:
    # Room for the servers of (a) and the one of (b), above the default limit; a Jupyter root
    # of its own (apps.py's is the run's directory, which holds the store and the local
    # cloud's sandboxes: each kernel's push of its directory would scan them).
    (work / "root").mkdir()
    (work / "bench_lag.py").write_text(LAG_EXTENSION)
    # enabled by a file in the Jupyter config dir apps.py gives it (merged with its options)
    (work / "config" / "jupyter_server_config.d").mkdir(parents=True)
    (work / "config" / "jupyter_server_config.d" / "bench_lag.json").write_text(
        '{"ServerApp": {"jpserver_extensions": {"bench_lag": true}}}'
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(work), os.environ.get("PYTHONPATH")) if p
    )
    jupyter = ab.Jupyter(
        work,
        (f"--ComputeServersApp.max_servers={args.servers + args.sync_servers + 10}",),
        work / "root",
    )
    jupyter.start()
    server_rows: list[dict[str, Any]] = []
    kernel_rows: list[dict[str, Any]] = []
    at_once_rows: list[dict[str, Any]] = []
    syncing: dict[str, Any] | None = None
    kernel_ids: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            await ab.wait_for(lambda: jupyter.api(session, "GET", "status"), "Jupyter")
            server_rows = await servers_in_store(jupyter, session, args)
            if args.kernels:
                kernel_rows, kernel_ids, spec = await kernels_on_a_server(jupyter, session, args)
                if args.at_once:
                    at_once_rows = await kernels_at_once(jupyter, session, args, spec, kernel_ids)
            await shut_down(jupyter, session, kernel_ids)
            if args.sync_servers:
                syncing = await servers_syncing(jupyter, session, args)
    finally:
        jupyter.stop()  # c.LocalCloud.stop_on_shutdown stops the servers
    report(server_rows, kernel_rows)
    report_at_once(at_once_rows, kernel_rows, args)
    report_syncing(syncing)


def report_at_once(
    rows: list[dict[str, Any]], kernel_rows: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    if not rows:
        return
    n = args.at_once
    print(f"\n(c) {n} kernels started at once (concurrent POST /api/kernels), until all ready")
    sequential = [r for r in kernel_rows if r["kind"] == "remote"]
    one_by_one = sum(args.remote_starts[:n]) if len(args.remote_starts) >= n else math.nan
    local = next((r["took"] for r in rows if r["kind"] == "local"), math.nan)
    print(
        f"{'kind':>7}{'all ready':>11}{'per kernel':>12}{'vs one by one':>15}{'vs local':>10}"
        f"{'RSS':>9}{'fds':>6}{'+fds':>6}{'SSH conns':>11}"
    )
    for row in rows:
        remote = row["kind"] == "remote"
        vs_seq = f"{row['took'] / one_by_one:>14.2f}x" if remote and sequential else " " * 15
        vs_local = f"{row['took'] / local:>9.2f}x" if remote else " " * 10
        print(
            f"{row['kind']:>7}{row['took']:>10.2f}s{row['took'] / n * 1000:>10.0f}ms{vs_seq}"
            f"{vs_local}{row['rss']:>6.0f}MiB{row['fds']:>6}{row['fds'] - row['before']['fds']:>6}"
            f"{row['ssh']:>11}"
        )
    ssh = max(r["ssh"] for r in rows if r["kind"] == "remote")
    print(
        f"one by one ((b)'s first {n} remote starts, summed): {one_by_one:.2f} s. SSH connections "
        f"with {n} remote kernels: {ssh} (target: 1) {'met' if ssh <= 1 else 'MISSED'}."
    )


def report_syncing(result: dict[str, Any] | None) -> None:
    if not result:
        return

    def lag_line(label: str, lags: list[float], cpu: float) -> None:
        ms = sorted(v * 1000 for v in lags) or [math.nan]
        print(
            f"{label:>22}{cpu * 100:>7.1f}%{statistics.median(ms):>9.1f}ms"
            f"{ms[max(0, math.ceil(0.99 * len(ms)) - 1)]:>9.1f}ms{ms[-1]:>9.1f}ms{len(ms):>8}"
        )

    n = result["servers"]
    print(f"\n(d) {n} servers, each syncing both ways every minute (auto_sync_minutes 1)")
    print(f"all {n} started (concurrent POST actions/start) in {result['start_all']:.1f} s")
    print(f"{'Jupyter':>22}{'CPU':>8}{'lag p50':>11}{'p99':>11}{'max':>11}{'ticks':>8}")
    lag_line("idle, servers running", result["idle"]["lag"], result["idle"]["cpu"])
    lag_line("while syncing", result["busy"]["lag"], result["busy"]["cpu"])
    durations = sorted(result["durations"]) or [math.nan]
    failed = result["failed"]
    print(
        f"scheduled syncs in the window: {result['runs']} ({result['completed']} completed, "
        f"{len(failed)} failed{': ' + '; '.join(map(str, failed)) if failed else ''}); "
        f"duration median {statistics.median(durations):.2f} s, max {durations[-1]:.2f} s. "
        f"Jupyter: RSS {result['rss']:.0f} MiB, {result['fds']} fds, "
        f"{result['threads']} threads. "
        "Lag: how late a 20 ms timer on Jupyter's event loop fired."
    )


def report(server_rows: list[dict[str, Any]], kernel_rows: list[dict[str, Any]]) -> None:
    print("\n(a) servers in the store, GET servers through the REST handler")
    print(
        f"{'servers':>8}{'GET servers':>13}{'p95':>9}{'GET /api/status':>17}{'ratio':>8}"
        f"{'per server':>12}{'POST servers':>14}  target"
    )
    first = server_rows[0] if server_rows else None
    for row in server_rows:
        per = (
            (row["servers"] - first["servers"]) / (row["count"] - first["count"])
            if first and row["count"] > first["count"]
            else math.nan
        )
        target = ""
        if row["count"] >= 500:
            target = f"<= 50 ms {'met' if row['servers'] <= 0.050 else 'MISSED'}"
        print(
            f"{row['count']:>8}{row['servers'] * 1000:>11.1f}ms{row['servers_p95'] * 1000:>7.1f}ms"
            f"{row['status'] * 1000:>15.1f}ms{row['servers'] / row['status']:>7.1f}x"
            f"{per * 1e6:>10.0f}us{row['create'] * 1000:>12.1f}ms  {target}"
        )
    if not kernel_rows:
        return
    print("\n(b) kernels on one server: Jupyter's process")
    print(
        f"{'kind':>7}{'kernels':>9}{'RSS':>10}{'MiB/kernel':>12}{'fds':>6}{'fds/kernel':>12}"
        f"{'threads':>9}{'SSH conns':>11}{'start (POST)':>14}"
    )
    previous: dict[str, Any] | None = None
    for row in kernel_rows:
        if previous is not None and previous["kind"] != row["kind"]:
            previous = None
        step = row["kernels"] - previous["kernels"] if previous else 0
        rss_per = (row["rss"] - previous["rss"]) / step if previous and step else math.nan
        fds_per = (row["fds"] - previous["fds"]) / step if previous and step else math.nan
        print(
            f"{row['kind']:>7}{row['kernels']:>9}{row['rss']:>7.0f}MiB{rss_per:>12.2f}"
            f"{row['fds']:>6}{fds_per:>12.1f}{row['threads']:>9}{row['ssh']:>11}"
            f"{row['start'] * 1000:>12.0f}ms"
        )
        previous = row
    remote = [row for row in kernel_rows if row["kind"] == "remote"]
    if remote:
        most = max(row["ssh"] for row in remote)
        print(
            f"\nSSH connections to the server with {remote[-1]['kernels']} kernels: {most} "
            f"(target: 1) {'met' if most <= 1 else 'MISSED'}. Per-kernel figures are the growth "
            "since the previous row; 'start' is the median time of POST /api/kernels (the last "
            "8 before the row)."
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--kernels", type=int, default=32, help="0: skip (b)")
    parser.add_argument("--local-kernels", type=int, default=8)
    parser.add_argument("--requests", type=int, default=30, help="GETs timed per count")
    parser.add_argument("--at-once", type=int, default=20, help="(c): kernels started at once")
    parser.add_argument("--sync-servers", type=int, default=50, help="(d); 0: skip")
    parser.add_argument("--sync-files", type=int, default=200, help="(d): files synced")
    parser.add_argument("--idle-window", type=float, default=10, help="(d): seconds idle")
    parser.add_argument("--sync-window", type=float, default=75, help="(d): seconds syncing")
    args = parser.parse_args()
    args.remote_starts = []  # (b)'s remote starts, one after another, for (c)
    work = Path(tempfile.mkdtemp(prefix="jcs-bench-scale-"))
    try:
        asyncio.run(run(args, work))
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
