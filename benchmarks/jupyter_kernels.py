"""Kernels as the Lab reaches them: ``execute('pass')`` through Jupyter's kernel websocket.

    python benchmarks/jupyter_kernels.py [--quick] [--round-trips N] [--repeat N]

``benchmarks/kernels.py`` times jupyter_client on the kernel's own ports, with the tunnel in a
private thread (the standalone runtime). A notebook goes through Jupyter instead, and there
the tunnel runs on Jupyter's own event loop, beside everything else Jupyter serves. This runs
a real ``jupyter server`` with the extension and a ``local`` compute server, starts two kernels
through ``POST /api/kernels`` (a local ipykernel and the server's ``compute-<id>-python3``), and
times each as a notebook waits for a cell: from the ``execute_request`` sent on the kernel's
websocket until its ``execute_reply`` and IOPub ``idle`` status came back. Three times:

(a) the baseline: Jupyter's own kernel websocket connection, which leaves Nagle's algorithm
    on (``c.ComputeServersApp.kernel_websocket_nodelay = False``; a Jupyter of its own);
(b) with the extension's (``handlers/kernel_websocket.py``), Jupyter otherwise idle;
(c) the same with Jupyter's event loop busy: a third kernel, local, flushing a line of output
    every millisecond to its own websocket (read by another process), as a neighbouring
    notebook that prints: Jupyter relays each of those messages on the same loop as our tunnel.

Blocks of round trips alternate between the two kernels; medians and p95.

(d) Before (b), with Jupyter keeping a warm kernel on the server
    (``c.ComputeServerProvisioner.warm_kernels = 1``): kernel starts as a notebook waits for
    them, from ``POST /api/kernels`` until the ``kernel_info_reply`` to the request the Lab
    sends on the new kernel's websocket (the kernel shows "idle" then), a local ipykernel and
    the server's kernel in turn; before each start, the pool has refilled (the server's
    ``warm_kernels.count`` in the API), as when a user picks a kernel, and no refill runs
    beside a start.

(e) With ``--tunnel-thread``, a third Jupyter whose remote kernels go through a runtime on a
    thread and event loop of their own, the one jupyter_client uses outside Jupyter
    (``kernels/runtime.py``): the round trips of (b) and (c) again, so that what moving the
    tunnel off Jupyter's loop would give is measured, not guessed. That runtime has an SSH
    connection of its own, which nothing else shares: the best case for such a move. (An
    experiment, not a product setting: Jupyter's config file swaps the runtime in.)

It prints the ratios against #22's targets (round trip remote / local <= 1.2x; start with a
warm kernel <= 0.3x local) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apps import Jupyter, wait_for
from onprem_host import DAEMONS, ENABLED_CLOUDS, OnPremHost, add_cloud_argument, start_onprem_host


class JupyterRun(NamedTuple):
    """One Jupyter of the benchmark, and what is measured in it."""

    #: Its phases' names in the report start with this ("nagle idle", "thread busy", ...).
    prefix: str
    args: tuple[str, ...]
    #: Jupyter's loop busy, (c), after it idle.
    busy: bool
    #: (d)'s kernel starts first.
    starts: bool = False
    #: The text of a Jupyter config file, read by Jupyter and by the standalone runtime.
    config: str = ""


#: (e)'s Jupyter config file: the extension's runtime is never installed as the server's, so
#: its provisioners start the standalone one (a thread and loop of its own) on first use.
TUNNEL_THREAD_CONFIG = """\
from jupyter_compute_servers.kernels import runtime

_install = runtime.set_server_runtime
runtime.set_server_runtime = lambda _runtime: _install(None)
"""

#: What the neighbour kernel of (c) runs: a line of output flushed every millisecond.
NEIGHBOUR_CODE = (
    "import time\nfor i in range(10**9):\n    print(i, flush=True)\n    time.sleep(0.001)"
)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else math.nan


def shell_request(session_id: str, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """A shell request as the Lab sends it on a kernel's websocket (Jupyter signs it)."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": session_id,
            "username": "bench",
            "date": "",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "buffers": [],
        "channel": "shell",
    }


def execute_request(session_id: str, code: str) -> dict[str, Any]:
    return shell_request(
        session_id, "execute_request", {"code": code, "silent": False, "store_history": False}
    )


class KernelSocket:
    """A kernel's websocket in Jupyter, as the Lab opens it; runs cells and times them."""

    def __init__(self, jupyter: Jupyter, kernel_id: str) -> None:
        self.url = f"ws://127.0.0.1:{jupyter.port}/api/kernels/{kernel_id}/channels"
        self.headers = jupyter.headers
        self.session_id = uuid.uuid4().hex
        self.ws: Any = None

    async def __aenter__(self) -> KernelSocket:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = f"{self.url}?session_id={self.session_id}"
        self.ws = await websocket_connect(HTTPRequest(url, headers=self.headers))
        # As a browser's socket: no Nagle delay on what it sends.
        self.ws.protocol.set_nodelay(True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ws.close()

    def send(self, message: dict[str, Any]) -> str:
        self.ws.write_message(json.dumps(message))
        return str(message["header"]["msg_id"])

    def send_execute(self, code: str) -> str:
        return self.send(execute_request(self.session_id, code))

    async def next_for(self, msg_id: str, timeout: float) -> dict[str, Any]:
        """The next message on the socket in answer to request ``msg_id``."""
        while True:
            raw = await asyncio.wait_for(self.ws.read_message(), timeout)
            if raw is None:
                raise RuntimeError("the kernel's websocket closed")
            message: dict[str, Any] = json.loads(raw)
            if message["parent_header"].get("msg_id") == msg_id:
                return message

    async def kernel_info(self, timeout: float = 120) -> None:
        """Ask kernel_info as the Lab does on a new kernel's socket; wait for the reply (the
        IOPub status announcing it comes first, and is not what (d) times)."""
        msg_id = self.send(shell_request(self.session_id, "kernel_info_request", {}))
        while (await self.next_for(msg_id, timeout))["msg_type"] != "kernel_info_reply":
            pass

    async def execute(self, code: str, timeout: float = 60) -> float:
        """Seconds until the reply and the idle status of one cell both came back."""
        started = time.perf_counter()
        msg_id = self.send_execute(code)
        replied = idle = False
        while not (replied and idle):
            message = await self.next_for(msg_id, timeout)
            if message["msg_type"] == "execute_reply":
                if message["content"]["status"] != "ok":
                    raise RuntimeError(f"the cell failed: {message['content']}")
                replied = True
            elif (
                message["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
            ):
                idle = True
        return time.perf_counter() - started


async def post_kernel(jupyter: Jupyter, session: aiohttp.ClientSession, name: str) -> str:
    """``POST /api/kernels`` for kernel spec ``name``: answers the new kernel's id."""
    url = f"{jupyter.base}api/kernels"
    async with session.post(url, json={"name": name}, headers=jupyter.headers) as response:
        text = await response.text()
        if response.status >= 400:
            raise RuntimeError(f"POST api/kernels {name}: {response.status} {text}")
    return str(json.loads(text)["id"])


async def start_kernel(jupyter: Jupyter, session: aiohttp.ClientSession, name: str) -> str:
    kernel_id = await post_kernel(jupyter, session, name)
    # Ready as a notebook sees it: a cell runs.
    async with KernelSocket(jupyter, kernel_id) as kernel:
        await kernel.execute("pass", timeout=120)
    return kernel_id


async def start_as_notebook(
    jupyter: Jupyter, session: aiohttp.ClientSession, name: str
) -> tuple[str, float, float]:
    """Start a kernel as the Lab does and wait until it shows "idle": answers (its id, seconds
    until ``POST /api/kernels`` answered, seconds until the ``kernel_info_reply`` came)."""
    started = time.perf_counter()
    kernel_id = await post_kernel(jupyter, session, name)
    posted = time.perf_counter() - started
    async with KernelSocket(jupyter, kernel_id) as kernel:
        await kernel.kernel_info()
    return kernel_id, posted, time.perf_counter() - started


async def measure_starts(
    jupyter: Jupyter, session: aiohttp.ClientSession, server_id: int, repeat: int
) -> dict[str, list[tuple[float, float]]]:
    """(d): local and warm remote starts in turn, each kernel shut down after (not timed)."""
    kinds = {"local ipykernel": "python3", "remote, warm kernel": f"compute-{server_id}-python3"}
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in kinds}

    async def warm_kernel_waiting() -> bool:
        server = await jupyter.api(session, "GET", f"servers/{server_id}")
        return bool((server.get("warm_kernels") or {}).get("count"))

    for i in range(repeat + 1):  # the first of each: not counted (imports, the first fill)
        order = list(kinds.items())
        for label, name in order if i % 2 == 0 else order[::-1]:
            # Before every start, local ones too: no refill launching a kernel beside it.
            await wait_for(warm_kernel_waiting, "a warm kernel", timeout=180)
            kernel_id, posted, idle = await start_as_notebook(jupyter, session, name)
            url = f"{jupyter.base}api/kernels/{kernel_id}"
            async with session.delete(url, headers=jupyter.headers) as response:
                await response.read()
            if i:
                samples[label].append((posted, idle))
    # The pool refills after the last start: not while round trips are timed.
    await wait_for(warm_kernel_waiting, "a warm kernel", timeout=180)
    return samples


def neighbour_main(url: str, token: str) -> None:
    """(c)'s neighbour: runs the printing cell on its kernel and reads its websocket."""

    async def run() -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
        message = execute_request(uuid.uuid4().hex, NEIGHBOUR_CODE)
        ws.write_message(json.dumps(message))
        while await ws.read_message() is not None:
            pass

    asyncio.run(run())


async def measure(
    jupyter: Jupyter, kernels: dict[str, str], round_trips: int, block: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {label: [] for label in kernels}
    rounds = math.ceil(round_trips / block)
    for i in range(rounds):
        order = list(kernels.items())
        for label, kernel_id in order if i % 2 == 0 else order[::-1]:
            async with KernelSocket(jupyter, kernel_id) as kernel:
                for _ in range(3):  # the fresh websocket's first messages
                    await kernel.execute("pass")
                for _ in range(block):
                    samples[label].append(await kernel.execute("pass"))
    return samples


async def start_server_on_host(
    jupyter: Jupyter, session: aiohttp.ClientSession, host: OnPremHost
) -> int:
    """As :meth:`Jupyter.start_server`, on the on-prem host, registered through the REST API
    as an admin does (its host key confirmed by the fingerprint shown)."""
    await wait_for(lambda: jupyter.api(session, "GET", "status"), "Jupyter")
    registered = await jupyter.api(session, "POST", "hosts", host.registration())
    if not registered["trusted"]:
        confirm = {"trust_host_key": registered["pending_host_key_fingerprint"]}
        await jupyter.api(session, "PATCH", f"hosts/{registered['id']}", confirm)
    return await jupyter.start_server(
        session, cloud="ssh", config=host.server_config(registered["id"])
    )


async def run(
    work: Path,
    opts: argparse.Namespace,
    spec: JupyterRun,
    clouds: tuple[str, ...] = (),
    host: OnPremHost | None = None,
) -> dict[str, dict[str, list[Any]]]:
    """The round trips with Jupyter idle ("idle"), then, if ``spec.busy``, with its loop
    busy; with ``spec.starts`` (a warm kernel kept), (d)'s starts first ("starts")."""
    # A Jupyter root of its own, as a user's: kernels start in it, so its push before each
    # (file sync's hook) copies a notebook, not the run's logs and store.
    notebooks = work / "notebooks"
    notebooks.mkdir()
    (notebooks / "analysis.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4}))
    if spec.config:
        (work / "config").mkdir()
        (work / "config" / "jupyter_server_config.py").write_text(spec.config)
    jupyter = Jupyter(work, (*clouds, *spec.args, *opts.jupyter_args), root_dir=notebooks)
    neighbour: subprocess.Popen[bytes] | None = None
    jupyter.start()
    try:
        async with aiohttp.ClientSession() as session:
            if host is None:
                sid = await jupyter.start_server(session)
            else:
                sid = await start_server_on_host(jupyter, session, host)

            async def spec_listed() -> bool:
                url = f"{jupyter.base}api/kernelspecs"
                async with session.get(url, headers=jupyter.headers) as response:
                    specs = (await response.json())["kernelspecs"]
                return f"compute-{sid}-python3" in specs

            await wait_for(spec_listed, "the server's kernel spec", timeout=180)
            results: dict[str, dict[str, list[Any]]] = {}
            if spec.starts:
                print(f"(d) {opts.repeat} kernel starts each...", file=sys.stderr)
                results["starts"] = await measure_starts(jupyter, session, sid, opts.repeat)
            print("Starting the kernels...", file=sys.stderr)
            kernels = {
                "local ipykernel": await start_kernel(jupyter, session, "python3"),
                f"remote (compute-{sid}-python3)": await start_kernel(
                    jupyter, session, f"compute-{sid}-python3"
                ),
            }
            neighbour_id = await start_kernel(jupyter, session, "python3")
            phase = "(b)" if spec.busy else "(a)"
            print(f"{phase} {opts.round_trips} round trips each, Jupyter idle...", file=sys.stderr)
            results["idle"] = await measure(jupyter, kernels, opts.round_trips, opts.block)
            if not spec.busy:
                return results

            url = f"ws://127.0.0.1:{jupyter.port}/api/kernels/{neighbour_id}/channels"
            neighbour = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [sys.executable, __file__, "--neighbour", url, jupyter.token],
                stdout=subprocess.DEVNULL,
                stderr=open(work / "neighbour.log", "wb"),  # noqa: SIM115, ASYNC230
            )
            await asyncio.sleep(2)  # its output under way
            if neighbour.poll() is not None:
                raise RuntimeError("the neighbour ended: " + (work / "neighbour.log").read_text())
            print(f"(c) {opts.round_trips} round trips each, Jupyter busy...", file=sys.stderr)
            results["busy"] = await measure(jupyter, kernels, opts.round_trips, opts.block)
            return results
    finally:
        if neighbour is not None:
            neighbour.terminate()
            neighbour.wait()
        jupyter.stop()


def report(results: dict[str, dict[str, list[Any]]], opts: argparse.Namespace) -> None:
    starts = results.pop("starts", None)
    print()
    print(
        f"execute('pass') through Jupyter's kernel websocket, on one machine "
        f"({os.cpu_count()} CPUs), {opts.round_trips} round trips each, milliseconds; "
        f"{DAEMONS[opts.cloud]}"
    )
    titles = {
        "nagle idle": "(a) Jupyter's own kernel websocket (Nagle on), Jupyter otherwise idle",
        "idle": "(b) ours (Nagle off), Jupyter otherwise idle",
        "busy": "(c) ours, Jupyter busy: a neighbouring kernel flushing output every millisecond",
        "thread idle": "(e) ours, the tunnel on a thread of its own, Jupyter otherwise idle",
        "thread busy": "(e) ours, the tunnel on a thread of its own, Jupyter busy as in (c)",
    }
    #: Each phase's medians, (local, remote): every kernel's samples in that order.
    medians: dict[str, tuple[float, float]] = {}
    for phase, samples in results.items():
        print()
        print(titles[phase])
        print(f"    {'':40} {'median':>7} {'p95':>7} {'min':>7}")
        for label, values in samples.items():
            ms = [v * 1000 for v in values]
            print(f"    {label:40} {statistics.median(ms):7.2f} {p95(ms):7.2f} {min(ms):7.2f}")
        local, remote = (statistics.median(v) for v in samples.values())
        medians[phase] = (local, remote)
    print()
    print("Targets (remote = the compute server's kernel through the extension's tunnel)")
    for phase, (local, remote) in medians.items():
        ratio = remote / local
        label = f"round trip median through Jupyter ({phase}), remote / local"
        if phase.startswith("thread"):  # (e): an experiment, not the product
            print(f"    {label:66} {ratio:5.2f}x            (info)")
            continue
        verdict = "met" if ratio <= 1.2 else "MISSED"
        print(f"    {label:66} {ratio:5.2f}x  <= 1.20x  {verdict}")
    label = "local kernel's round trip, Nagle off / Jupyter's own websocket"
    print(f"    {label:66} {medians['idle'][0] / medians['nagle idle'][0]:5.2f}x            (info)")
    for phase in ("idle", "busy"):
        if f"thread {phase}" in medians:
            on_thread, on_loop = medians[f"thread {phase}"][1], medians[phase][1]
            label = f"(e) remote round trip ({phase}), own thread / Jupyter's loop"
            print(f"    {label:66} {on_thread / on_loop:5.2f}x            (info)")
    if starts:
        report_starts(starts, opts)


def report_starts(starts: dict[str, list[tuple[float, float]]], opts: argparse.Namespace) -> None:
    print()
    print(
        f"(d) kernel start as a notebook waits for it, seconds, {opts.repeat} each: from POST"
        " /api/kernels until the kernel_info_reply on its websocket (the kernel shows idle)"
    )
    print(f"    {'':40} {'median':>7} {'min':>7} {'max':>7} {'POST answered':>14}")
    for label, samples in starts.items():
        idle = [s[1] for s in samples]
        posted = statistics.median(s[0] for s in samples)
        print(
            f"    {label:40} {statistics.median(idle):7.3f} {min(idle):7.3f} {max(idle):7.3f}"
            f" {posted:14.3f}"
        )
    local, warm = (statistics.median(s[1] for s in samples) for samples in starts.values())
    verdict = "met" if warm / local <= 0.3 else "MISSED"
    label = "start as a notebook waits, warm kernel, remote / local"
    print(f"    {label:66} {warm / local:5.2f}x  <= 0.30x  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 round trips each")
    parser.add_argument("--round-trips", type=int, help="per kernel and phase (default 200)")
    parser.add_argument("--repeat", type=int, help="(d)'s starts of each (default 5; quick 2)")
    add_cloud_argument(parser)
    parser.add_argument("--neighbour", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--jupyter-arg", dest="jupyter_args", action="append", default=[])
    parser.add_argument(
        "--tunnel-thread", action="store_true", help="(e): the tunnel on a thread of its own too"
    )
    opts = parser.parse_args(argv)
    if opts.neighbour:
        neighbour_main(*opts.neighbour)
        return 0
    opts.round_trips = opts.round_trips or (50 if opts.quick else 200)
    opts.repeat = opts.repeat or (2 if opts.quick else 5)
    opts.block = 25
    results: dict[str, dict[str, list[Any]]] = {}
    runs = [
        JupyterRun("nagle", ("--ComputeServersApp.kernel_websocket_nodelay=False",), busy=False),
        JupyterRun("", ("--ComputeServerProvisioner.warm_kernels=1",), busy=True, starts=True),
    ]
    host = host_dir = None
    clouds: tuple[str, ...] = ()
    clouds_config = ""
    if opts.cloud == "ssh":
        host_dir = Path(tempfile.mkdtemp(prefix="jcs-bench-host-"))
        host = start_onprem_host(host_dir)
        clouds = tuple(f"--ComputeServersApp.enabled_clouds={name}" for name in ENABLED_CLOUDS)
        # The standalone runtime reads Jupyter's config files, not its command line.
        clouds_config = f"c.ComputeServersApp.enabled_clouds = {list(ENABLED_CLOUDS)!r}\n"
    elif opts.cloud == "local-asyncssh":
        clouds = ("--LocalCloud.ssh_daemon=asyncssh",)
    if opts.tunnel_thread:
        config = TUNNEL_THREAD_CONFIG + clouds_config
        runs.append(JupyterRun("thread", (), busy=True, config=config))
    try:
        for spec in runs:
            work = Path(tempfile.mkdtemp(prefix="jcs-bench-jupyter-kernels-"))
            try:
                measured = asyncio.run(run(work, opts, spec, clouds, host))
            except BaseException:
                print(f"Failed; logs in {work}", file=sys.stderr)
                raise
            results.update(
                {f"{spec.prefix} {phase}".strip(): rows for phase, rows in measured.items()}
            )
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if host is not None:
            host.stop()
        if host_dir is not None:
            shutil.rmtree(host_dir, ignore_errors=True)
    report(results, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
