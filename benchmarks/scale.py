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

Targets (issue #22): ``GET servers`` with 500 servers <= 50 ms; one SSH connection whatever the
number of kernels; memory and descriptors growing linearly (the report gives the growth per
kernel between checkpoints). It prints the tables and exits 0 (a report). Everything it started
is stopped and its temporary directory removed at the end. The machine is shared and noisy:
compare figures within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
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
    ports = set()
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "jupyter_compute_servers.clouds.local_sshd" in cmdline:
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
) -> tuple[list[dict[str, Any]], list[str]]:
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
    return rows, kernel_ids


async def run(args: argparse.Namespace, work: Path) -> None:
    # Room for the servers of (a) and the one of (b), above the default limit; a Jupyter root
    # of its own (apps.py's is the run's directory, which holds the store and the local
    # cloud's sandboxes: each kernel's push of its directory would scan them).
    (work / "root").mkdir()
    jupyter = ab.Jupyter(
        work, (f"--ComputeServersApp.max_servers={args.servers + 10}",), work / "root"
    )
    jupyter.start()
    server_rows: list[dict[str, Any]] = []
    kernel_rows: list[dict[str, Any]] = []
    kernel_ids: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            await ab.wait_for(lambda: jupyter.api(session, "GET", "status"), "Jupyter")
            server_rows = await servers_in_store(jupyter, session, args)
            if args.kernels:
                kernel_rows, kernel_ids = await kernels_on_a_server(jupyter, session, args)
            for kernel_id in kernel_ids:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.delete(
                        f"{jupyter.base}api/kernels/{kernel_id}", headers=jupyter.headers
                    ) as response:
                        await response.read()
    finally:
        jupyter.stop()  # c.LocalCloud.stop_on_shutdown stops the server
    report(server_rows, kernel_rows)


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
    args = parser.parse_args()
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
