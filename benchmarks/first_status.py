"""A fresh client's first kernel_info: its IOPub status lost, and wait_for_ready asking again.

    python benchmarks/first_status.py [--starts N] [--window-ms 200]

A ZeroMQ SUB socket subscribes a moment after ``connect()`` returned: what is published before
its subscription arrived is not for it ("slow joiner"). jupyter_client's ``wait_for_ready``
asks kernel_info and then waits 0.2 s for any IOPub message; when none came it asks again, a
quarter second more for the start. Kernels start one after another, on a local compute server
(the sandbox cloud, SSH on loopback: the shortest path ours has, where a late subscription
shows most) and as plain local ipykernels, alternately. For each start, once the kernel
answers (ours: as ``start_kernel`` returns, its provisioner checked that; a local one: after a
first kernel_info of a client of its own):

- a fresh client (``start_channels``) asks kernel_info at once and waits up to 2 s for that
  request's IOPub status: within ``--window-ms`` ("on time"), later ("late"), never ("lost");
- another fresh client runs ``wait_for_ready``: how many kernel_info it sent (1: none again).

It prints a table (counts, median time to the status) and exits 0 (a report); what it starts
is stopped and its temporary directory removed. The machine is shared and noisy: losses come
with load, compare the two rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

OURS, LOCAL = "compute-1-python3", "python3"


def cli(data_dir: Path, *args: str, check: bool = True) -> None:
    command = [sys.executable, "-m", "jupyter_compute_servers.cli"]
    subprocess.run(
        [*command, "--set", f"data_dir={data_dir}", *args],
        check=check,
        capture_output=True,
        timeout=300,
    )


async def first_status(kc: Any) -> float | None:
    """Ask kernel_info once: seconds until its IOPub status (None: none within 2 s)."""
    started = time.perf_counter()
    msg_id = kc.kernel_info()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            break
        if msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") == msg_id:
            return time.perf_counter() - started
    return None


async def asks_of_wait_for_ready(kc: Any) -> int:
    """How many kernel_info requests ``wait_for_ready`` sent."""
    asked = 0
    kernel_info = kc.kernel_info

    def counted() -> str:
        nonlocal asked
        asked += 1
        return str(kernel_info())

    kc.kernel_info = counted
    await kc.wait_for_ready(timeout=60)
    return asked


async def one_start(kernel_name: str, cwd: Path) -> tuple[float | None, int]:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel_name)
    await km.start_kernel(cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clients = []

    def client() -> Any:
        kc = km.client()
        kc.start_channels(hb=False)
        clients.append(kc)
        return kc

    try:
        if kernel_name == LOCAL:  # until it answers (importing is not what is measured)
            await client().kernel_info(reply=True, timeout=60)
        took = await first_status(client())
        asks = await asks_of_wait_for_ready(client())
        return took, asks
    finally:
        for kc in clients:
            kc.stop_channels()
        await km.shutdown_kernel(now=True)


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, list[tuple[float | None, int]]]:
    data_dir = tmp / "compute-servers"
    cli(data_dir, "create", "box")
    cli(data_dir, "start", "box")
    results: dict[str, list[tuple[float | None, int]]] = {OURS: [], LOCAL: []}
    try:
        for name in results:  # a first start of each, not counted (imports, connection)
            await one_start(name, tmp)
        for i in range(args.starts):
            for name in results:
                results[name].append(await one_start(name, tmp))
            print(f"{i + 1}/{args.starts}", end="\r", file=sys.stderr)
    finally:
        from jupyter_compute_servers.kernels.runtime import close_standalone_runtimes

        close_standalone_runtimes()
        cli(data_dir, "stop", "box", check=False)
    return results


def report(results: dict[str, list[tuple[float | None, int]]], window: float) -> None:
    print(f"a fresh client's first kernel_info: its IOPub status within {window * 1000:g} ms?")
    print(
        f"{'kernel':<22}{'starts':>7}{'on time':>9}{'late':>6}{'lost':>6}{'median ms':>11}"
        f"{'wait_for_ready asked again':>28}"
    )
    for name, rows in results.items():
        got = [t for t, _ in rows if t is not None]
        on_time = sum(t <= window for t in got)
        median = f"{statistics.median(got) * 1000:.1f}" if got else "-"
        again = sum(asks > 1 for _, asks in rows)
        label = "ours (local server)" if name == OURS else "local ipykernel"
        print(
            f"{label:<22}{len(rows):>7}{on_time:>9}{len(got) - on_time:>6}"
            f"{len(rows) - len(got):>6}{median:>11}{again:>28}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--window-ms", type=float, default=200)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="first-status-"))
    names = [f"JUPYTER_{name.upper()}_DIR" for name in ("data", "config", "runtime")]
    saved = {key: os.environ.get(key) for key in [*names, "JUPYTER_PLATFORM_DIRS"]}
    try:
        # Jupyter's paths of this run only: the CLI publishes the server's kernel spec there.
        for key in names:
            path = tmp / key.lower()
            path.mkdir()
            os.environ[key] = str(path)
        os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
        results = asyncio.run(measure(args, tmp))
        report(results, args.window_ms / 1000)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
