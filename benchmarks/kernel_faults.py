"""Remote kernels under faults: partitions and Jupyter restarts, side by side with baselines.

    python benchmarks/kernel_faults.py [--quick] [--partitions 10,60,300] [--restarts N]

In one run, on this machine, against a ``local`` compute server started for the run:

(d) partitions: a cell prints a counter every 10 ms while the server's SSH daemon is stalled
    (SIGSTOP, then SIGCONT) for each partition length. Our connection has a short keep-alive
    (1 s x 2), so it is given up and replaced during the stall, and the kernel's output comes
    back through the IOPub relay. The baseline is the same kernel reached through plain
    OpenSSH tunnels (``ssh -N -L``, one per port, OpenSSH's defaults), stalled the same way.
    For each: messages lost and doubled, and seconds from the link restored (SIGCONT) to the
    first output printed after the last one received before the stall.
(e) Jupyter restarts: a Jupyter server holding a remote kernel is killed (kill -9) and started
    again; from the moment it answers HTTP, seconds until the kernel is back in /api/kernels
    and until a cell runs on it through its websocket. The baseline is the same Jupyter start
    with nothing to adopt (``adopt_orphan_kernels=False``): how long Jupyter takes to answer.

Targets (issue #16): output resumed within 1 s of the link, 0 lost, reattached within 2 s of
Jupyter's start. It prints a table and always exits 0 (a report). Everything it starts is
stopped and its temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernels import (
    CHANNELS,
    SERVER_NAME,
    Resources,
    SSHTarget,
    Target,
    Workdir,
    cli,
    free_ports,
    median,
    open_openssh,
    start_kernel,
    wait_iopub_live,
)

from tests.jupyter_process import jupyter_server_command

OURS = "provisioner (relay, keep-alive 1 s x 2)"
BASELINE = "OpenSSH ssh -N -L, one per port"
TOKEN = "kernel-faults-benchmark"
#: The counter's period, seconds.
TICK = 0.01


@dataclass
class Partition:
    seconds: float
    lost: int
    doubled: int
    resumed: float  # seconds from SIGCONT to the first new line; nan if none came


@dataclass
class Results:
    partitions: dict[str, list[Partition]] = field(default_factory=dict)
    #: (answers HTTP, kernel listed, a cell ran), seconds from the Jupyter process's spawn
    restarts: list[tuple[float, float, float]] = field(default_factory=list)
    plain_starts: list[float] = field(default_factory=list)


def sshd_pid(work: Workdir, server_id: int) -> int:
    ready = work.data_dir / "local" / str(server_id) / "run" / "sshd.json"
    return int(json.loads(ready.read_text())["pid"])


async def partition(kc: Any, pid: int, seconds: float) -> Partition:
    """Run the counter cell on ``kc``, stalling the daemon ``pid`` for ``seconds`` from 1 s
    in; count what arrived."""
    total = int((1 + seconds + 4) / TICK)
    code = (
        f"import time\nfor i in range({total}):\n    print(i, flush=True)\n    time.sleep({TICK})"
    )
    msg_id = kc.execute(code)
    received: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()
    stalled_at = resumed_at = None
    last_before = -1
    # The cell sleeps a little longer than TICK each time (more on a busy machine): wait for
    # its idle status, or for 30 s of silence after the link is back (a baseline that lost
    # the rest, the status included). What never arrived then counts as lost.
    heard = loop.time()
    deadline = loop.time() + 3 * (1 + seconds + 4) + 60
    while loop.time() < deadline:
        now = loop.time()
        if resumed_at is not None and now - max(heard, resumed_at) > 30:
            break
        if stalled_at is None and received and received[-1][1] * TICK >= 1.0:
            os.kill(pid, signal.SIGSTOP)
            stalled_at = now
            last_before = received[-1][1]
        if stalled_at is not None and resumed_at is None and now - stalled_at >= seconds:
            os.kill(pid, signal.SIGCONT)
            resumed_at = now
        try:
            msg = await kc.get_iopub_msg(timeout=0.05)
        except Exception:  # queue.Empty: nothing yet
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        heard = loop.time()
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            for line in msg["content"]["text"].splitlines():
                if line.isdigit():
                    received.append((loop.time(), int(line)))
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    if resumed_at is None:
        os.kill(pid, signal.SIGCONT)
        resumed_at = loop.time()
    numbers = [n for _, n in received]
    after = [t for t, n in received if n > last_before and t >= resumed_at]
    return Partition(
        seconds=seconds,
        lost=total - len(set(numbers)),
        doubled=len(numbers) - len(set(numbers)),
        resumed=(after[0] - resumed_at) if after else float("nan"),
    )


async def measure_partitions(
    work: Workdir, server_id: int, lengths: list[float], results: Results, res: Resources
) -> None:
    from jupyter_compute_servers.access import openssh_options
    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services

    manager = build_services(load_settings({"data_dir": str(work.data_dir)})).manager
    try:
        endpoint = await manager.endpoint(server_id)
        key_path = manager.keys.private_key_path(server_id)
    finally:
        await manager.ssh.close_all()
        manager.store.database.close()
    ssh = SSHTarget(
        f"{endpoint.username}@{endpoint.host}",
        openssh_options(key_path, endpoint, str(work.root)),
        work.root,
    )
    pid = sshd_pid(work, server_id)
    km, kc, *_ = await start_kernel(res, f"compute-{server_id}-python3", work.workspace)
    res.runtime = km.provisioner.runtime
    remote_ports = {
        name: int(km.provisioner.remote_kernel["ports"][f"{name}_port"]) for name in CHANNELS
    }
    info = km.get_connection_info(session=False)
    for seconds in lengths:
        print(f"(d) a {seconds:g} s partition, through the provisioner...", file=sys.stderr)
        await wait_iopub_live(kc)
        results.partitions.setdefault(OURS, []).append(await partition(kc, pid, seconds))
        print(f"(d) a {seconds:g} s partition, through OpenSSH...", file=sys.stderr)
        ports = await open_openssh(res, ssh, remote_ports, "per-port")
        baseline_info = {**info, **{f"{n}_port": ports[n] for n in CHANNELS}}
        target = Target(BASELINE, functools.partial(dict, baseline_info))
        try:
            baseline_kc = await target.connect(res)
        except RuntimeError:
            results.partitions.setdefault(BASELINE, []).append(
                Partition(seconds, -1, 0, float("nan"))
            )
            continue
        try:
            results.partitions.setdefault(BASELINE, []).append(
                await partition(baseline_kc, pid, seconds)
            )
        finally:
            Target.disconnect(res, baseline_kc)
            res.kill_ssh()


# --- (e) Jupyter restarts -------------------------------------------------------------------


class Jupyter:
    """A real ``jupyter server`` with the extension on the run's store, in its own process."""

    def __init__(self, work: Workdir, *options: str) -> None:
        self.port = free_ports(1)[0]
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen(
            jupyter_server_command(
                self.port,
                TOKEN,
                work.root,
                work.data_dir,
                "--ComputeServersApp.shutdown_kernels_on_exit=False",
                *options,
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(work.root / "jupyter.log", "ab"),  # noqa: SIM115
        )

    def request(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    async def until(self, probe: Any, timeout: float = 60) -> float:
        """Seconds from the spawn until ``probe()`` is true."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                if probe():
                    return time.perf_counter() - self.spawned
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    raise RuntimeError("Jupyter exited; see jupyter.log") from None
            await asyncio.sleep(0.02)
        raise RuntimeError(f"not within {timeout} s")

    async def run_cell(self, kernel_id: str) -> float:
        """Seconds from the spawn until ``print(1)`` ran through the kernel's websocket."""
        from jupyter_client.jsonutil import json_default
        from jupyter_client.session import Session
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        session = Session(session=str(uuid.uuid4()), username="bench")
        url = f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels"
        ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"}))
        try:
            message = session.msg("execute_request", content={"code": "print(1)", "silent": False})
            message["channel"] = "shell"
            await ws.write_message(json.dumps(message, default=json_default))
            while True:
                raw = await asyncio.wait_for(ws.read_message(), 60)
                if raw is None:
                    raise RuntimeError("the kernel's websocket closed")
                reply = json.loads(raw)
                if (
                    reply["parent_header"].get("msg_id") == message["header"]["msg_id"]
                    and reply["msg_type"] == "execute_reply"
                ):
                    return time.perf_counter() - self.spawned
        finally:
            ws.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


async def measure_restarts(work: Workdir, server_id: int, rounds: int, results: Results) -> None:
    jupyter = Jupyter(work)
    kernel_id = ""
    try:
        await jupyter.until(lambda: jupyter.request("GET", "api/status"))
        kernel_id = jupyter.request(
            "POST", "api/kernels", {"name": f"compute-{server_id}-python3"}
        )["id"]
        for i in range(rounds):
            jupyter.kill()
            print(f"(e) Jupyter restart {i + 1}/{rounds}...", file=sys.stderr)
            jupyter = Jupyter(work)
            answers = await jupyter.until(lambda j=jupyter: j.request("GET", "api/status"))
            listed = await jupyter.until(
                lambda j=jupyter: any(k["id"] == kernel_id for k in j.request("GET", "api/kernels"))
            )
            ran = await jupyter.run_cell(kernel_id)
            results.restarts.append((answers, listed, ran))
            # The baseline: the same start with nothing to adopt.
            plain = Jupyter(work, "--ComputeServersApp.adopt_orphan_kernels=False")
            try:
                results.plain_starts.append(
                    await plain.until(lambda p=plain: p.request("GET", "api/status"))
                )
            finally:
                plain.kill()
    finally:
        if kernel_id and jupyter.process.poll() is None:
            try:
                jupyter.request("DELETE", f"api/kernels/{kernel_id}")
            except Exception as e:
                print(f"Could not shut the kernel down: {e}", file=sys.stderr)
        jupyter.kill()


# --- the report -----------------------------------------------------------------------------


def report(results: Results) -> None:
    print()
    print(f"Remote kernels under faults, on one machine ({os.cpu_count()} CPUs)")
    if results.partitions:
        print()
        print("(d) the server's SSH daemon stalled while a cell prints every 10 ms")
        print(f"    {'':40} {'stall s':>7} {'lost':>6} {'doubled':>7} {'resumed s':>9}")
        for label, rows in results.partitions.items():
            for row in rows:
                lost = "n/a" if row.lost < 0 else str(row.lost)
                print(
                    f"    {label:40} {row.seconds:7g} {lost:>6} {row.doubled:7d} {row.resumed:9.3f}"
                )
        ours = results.partitions.get(OURS, [])
        base = {row.seconds: row for row in results.partitions.get(BASELINE, [])}
        print()
        for row in ours:
            other = base.get(row.seconds)
            ratio = (
                f"{row.resumed / other.resumed:5.2f}x the baseline's"
                if other is not None and other.resumed == other.resumed and other.resumed > 0
                else "the baseline never resumed"
            )
            met = "met" if row.lost == 0 and row.doubled == 0 and row.resumed <= 1.0 else "MISSED"
            print(
                f"    {row.seconds:g} s: lost {row.lost}, doubled {row.doubled} (target 0), "
                f"resumed in {row.resumed:.3f} s (target <= 1 s; {ratio}): {met}"
            )
    if results.restarts:
        answers = median([r[0] for r in results.restarts])
        listed = median([r[1] - r[0] for r in results.restarts])
        ran = median([r[2] - r[0] for r in results.restarts])
        plain = median(results.plain_starts)
        print()
        print(f"(e) Jupyter killed (kill -9) and started again, x{len(results.restarts)}, medians")
        print(f"    Jupyter answers HTTP, with a kernel to adopt:    {answers:7.3f} s from spawn")
        print(f"    Jupyter answers HTTP, nothing to adopt (baseline): {plain:5.3f} s from spawn")
        print(f"    ratio, with / without adoption: {answers / plain:5.2f}x")
        print(f"    the kernel back in /api/kernels: {listed:7.3f} s after Jupyter answers")
        print(f"    a cell ran on it (websocket):    {ran:7.3f} s after Jupyter answers")
        met = "met" if listed <= 2.0 else "MISSED"
        print(f"    target: reattached within 2 s of Jupyter's start: {met}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short partitions (5, 15 s), 2 restarts")
    p.add_argument("--partitions", help="partition lengths in seconds (default 10,60,300)")
    p.add_argument("--restarts", type=int, help="Jupyter restarts (default 5; quick 2)")
    args = p.parse_args(argv)
    default = "5,15" if args.quick else "10,60,300"
    lengths = [float(s) for s in (args.partitions or default).split(",") if s]
    rounds = args.restarts or (2 if args.quick else 5)

    work = Workdir(Path(tempfile.mkdtemp(prefix="jcs-bench-faults-")))
    # The short keep-alive of the issue's partitions, for the kernels' runtime here.
    (work.root / "jupyter_config" / "jupyter_server_config.json").write_text(
        json.dumps(
            {"ComputeServersApp": {"ssh_keepalive_interval": 1.0, "ssh_keepalive_count_max": 2}}
        )
    )
    os.environ["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
    )
    res = Resources()
    results = Results()
    server_id = None
    try:
        print("Creating and starting a local compute server...", file=sys.stderr)
        server_id = int(json.loads(cli(work, "create", SERVER_NAME, "--json"))["id"])
        cli(work, "start", SERVER_NAME)

        async def run() -> None:
            try:
                await measure_partitions(work, server_id, lengths, results, res)
            finally:
                await res.close_async()
                res.close_runtime()
            await measure_restarts(work, server_id, rounds, results)

        asyncio.run(run())
    except KeyboardInterrupt:
        print("Interrupted; cleaning up.", file=sys.stderr)
    except Exception as e:
        print(f"The benchmark failed: {type(e).__name__}: {e}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if server_id is not None:
            # Whatever a failure left stalled goes on before the server stops.
            with contextlib.suppress(OSError, ValueError):
                os.kill(sshd_pid(work, server_id), signal.SIGCONT)
        res.kill_leftovers()
        if server_id is not None:
            try:
                cli(work, "stop", SERVER_NAME)
            except Exception as e:
                print(f"Could not stop the server: {e}", file=sys.stderr)
        shutil.rmtree(work.root, ignore_errors=True)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
