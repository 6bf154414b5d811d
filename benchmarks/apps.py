"""A web app on a local compute server: through the proxy, directly, and through ``ssh -L``.

    python benchmarks/apps.py [--quick] [--mb N]

In one run, on this machine: a Jupyter server with the extension (a subprocess, in a temporary
directory), a ``local`` compute server started through its REST API, and on that server a small
tornado app started as one of its image's apps (a catalogue of the run's own). The same app is
then reached three ways, interleaved:

- ``proxy``: ``<base_url>/compute-servers/servers/<id>/apps/bench/...`` (the Jupyter server,
  its proxy handler, the tunnel over the server's SSH connection);
- ``direct``: the app's port on the loopback (a local server shares this machine's loopback);
- ``ssh -L``: one OpenSSH client forwarding a local port to the app's, over the login that
  ``ssh-access`` gives (``-tt`` with a remote command, whose socket gets TCP_NODELAY; see
  ``../shared/TOOLCHAIN.md``).

It measures (a) the median latency of a small page (1 KiB) over one kept-alive connection,
(b) requests per second of that page with 8 concurrent clients, (c) the throughput of a
50 MiB download (MB/s, median of 3). It prints a table and the ratios against the targets
(latency at most 1.5x direct, throughput at least 0.7x direct) and exits 0 (a report).
Everything it starts is stopped, and its directory removed, at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.jupyter_process import jupyter_server_command

BENCH_APP = r"""
import sys
from tornado import ioloop, web

SMALL = b"x" * 1024
CHUNK = b"y" * (1024 * 1024)

class Small(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/plain")
        self.write(SMALL)

class Big(web.RequestHandler):
    async def get(self):
        mb = int(self.get_argument("mb", "50"))
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(mb * len(CHUNK)))
        for _ in range(mb):
            self.write(CHUNK)
            await self.flush()

web.Application([(r".*/small", Small), (r".*/big", Big)]).listen(
    int(sys.argv[1]), address="127.0.0.1"
)
ioloop.IOLoop.current().start()
"""
CONCURRENCY = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Jupyter:
    """A Jupyter server with the extension, in ``work``; its REST API with the token."""

    def __init__(
        self, work: Path, extra_args: tuple[str, ...] = (), root_dir: Path | None = None
    ) -> None:
        self.work = work
        self.extra_args = extra_args  # more command-line options for jupyter server
        self.root_dir = root_dir or work
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        catalog_path = Path(__file__).parent.parent / "jupyter_compute_servers" / "images"
        catalog = json.loads((catalog_path / "catalog.json").read_text())
        (self.work / "bench_app.py").write_text(BENCH_APP)
        python = next(i for i in catalog["images"] if i["id"] == "python")
        python["apps"] = [
            {
                "name": "bench",
                "label": "Benchmark app",
                "command": [sys.executable, str(self.work / "bench_app.py"), "{port}"],
            }
        ]
        (self.work / "catalog.json").write_text(json.dumps(catalog))
        env = dict(os.environ)
        for name in ("data", "runtime", "config"):
            (self.work / name).mkdir(exist_ok=True)
            env[f"JUPYTER_{name.upper()}_DIR"] = str(self.work / name)
        self.process = subprocess.Popen(
            jupyter_server_command(
                self.port,
                self.token,
                self.root_dir,
                self.work / "compute",
                f"--ComputeServersApp.image_catalog={self.work / 'catalog.json'}",
                "--LocalCloud.stop_on_shutdown=True",
                *self.extra_args,
            ),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / "jupyter.log", "wb"),  # noqa: SIM115 - it keeps writing
            start_new_session=True,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    async def api(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> Any:
        url = f"{self.base}compute-servers/api/{path}"
        async with session.request(method, url, json=body, headers=self.headers) as response:
            text = await response.text()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {text}")
            return json.loads(text) if text else None

    async def start_server(
        self,
        session: aiohttp.ClientSession,
        name: str = "bench",
        *,
        cloud: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> int:
        """Once Jupyter answers: create a compute server (of the default cloud, ``local``,
        unless ``cloud`` says; with ``config``, its hardware) and ask it to start (it is not
        running yet when this returns); answers its id."""
        await wait_for(lambda: self.api(session, "GET", "status"), "Jupyter")
        body: dict[str, Any] = {"name": name}
        if cloud is not None:
            body["cloud"] = cloud
        if config is not None:
            body["config"] = config
        server = await self.api(session, "POST", "servers", body)
        await self.api(session, "POST", f"servers/{server['id']}/actions/start")
        return int(server["id"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGTERM: Jupyter stops cleanly (SIGINT would ask for a confirmation first), and
            # c.LocalCloud.stop_on_shutdown stops a server left running by an error.
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


async def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            result = await check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def latency(session: aiohttp.ClientSession, url: str, headers: dict, n: int) -> float:
    """Median seconds of one small request over a kept-alive connection."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def requests_per_second(url: str, headers: dict, n: int) -> float:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                queue.pop()
                async with session.get(url, headers=headers) as response:
                    await response.read()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return n / (time.perf_counter() - start)


async def throughput(session: aiohttp.ClientSession, url: str, headers: dict, mb: int) -> float:
    start = time.perf_counter()
    size = 0
    async with session.get(url, headers=headers) as response:
        async for chunk in response.content.iter_any():
            size += len(chunk)
    assert size == mb * 1024 * 1024, size
    return size / 1e6 / (time.perf_counter() - start)


async def run(work: Path, opts: argparse.Namespace) -> dict[str, dict[str, float]]:
    jupyter = Jupyter(work)
    ssh: subprocess.Popen[bytes] | None = None
    jupyter.start()
    try:
        async with aiohttp.ClientSession() as session:
            sid = await jupyter.start_server(session)

            async def running() -> bool:
                state = (await jupyter.api(session, "GET", f"servers/{sid}"))["state"]
                if state == "error":
                    raise RuntimeError("the server did not start")
                return bool(state == "running")

            await wait_for(running, "the server to run")
            app = await jupyter.api(session, "POST", f"servers/{sid}/apps/bench")
            port = app["port"]
            access = await jupyter.api(session, "GET", f"servers/{sid}/ssh-access")
            config = work / "ssh_config"
            config.write_text(access["config"])
            forwarded = free_port()
            forward = f"127.0.0.1:{forwarded}:127.0.0.1:{port}"
            argv = ["ssh", "-F", str(config), "-tt", "-o", "BatchMode=yes", "-L", forward]
            ssh = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                [*argv, access["host_alias"], "sleep 86400"],
                # Kept open: with -tt, an end of input would end the remote command and ssh.
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=open(work / "ssh.log", "wb"),  # noqa: SIM115, ASYNC230
                start_new_session=True,
            )
            ways = {
                "proxy": (
                    f"{jupyter.base}compute-servers/servers/{sid}/apps/bench",
                    jupyter.headers,
                ),
                "direct": (f"http://127.0.0.1:{port}", {}),
                "ssh -L": (f"http://127.0.0.1:{forwarded}", {}),
            }

            async def answers(base: str, headers: dict) -> bool:
                async with session.get(f"{base}/small", headers=headers) as response:
                    return response.status == 200

            for label, (base, headers) in ways.items():
                await wait_for(lambda b=base, h=headers: answers(b, h), label)

            results: dict[str, dict[str, list[float]]] = {
                w: {"latency": [], "rps": [], "mbps": []} for w in ways
            }
            rounds = 1 if opts.quick else 3
            n = 100 if opts.quick else 300
            for _ in range(rounds):  # interleaved: the machine's noise hits each alike
                for label, (base, headers) in ways.items():
                    async with aiohttp.ClientSession() as one:
                        await latency(one, f"{base}/small", headers, 10)  # warm
                        results[label]["latency"].append(
                            await latency(one, f"{base}/small", headers, n)
                        )
                    results[label]["rps"].append(
                        await requests_per_second(f"{base}/small", headers, n)
                    )
                    async with aiohttp.ClientSession() as one:
                        results[label]["mbps"].append(
                            await throughput(one, f"{base}/big?mb={opts.mb}", headers, opts.mb)
                        )
            await jupyter.api(session, "DELETE", f"servers/{sid}/apps/bench")
            await jupyter.api(session, "POST", f"servers/{sid}/actions/stop")

            async def off() -> bool:
                return bool((await jupyter.api(session, "GET", f"servers/{sid}"))["state"] == "off")

            await wait_for(off, "the server to stop")
            return {
                label: {k: statistics.median(v) for k, v in values.items()}
                for label, values in results.items()
            }
    finally:
        if ssh is not None:
            ssh.terminate()
            ssh.wait()
        jupyter.stop()


def report(results: dict[str, dict[str, float]], opts: argparse.Namespace) -> None:
    print(f"\nA small page (1 KiB) and a {opts.mb} MiB download, one app, three ways")
    print(f"{'':10} {'latency ms':>11} {'req/s (x8)':>11} {'MB/s':>8}")
    for label, r in results.items():
        print(f"{label:10} {r['latency'] * 1000:11.2f} {r['rps']:11.0f} {r['mbps']:8.0f}")
    direct, proxy, ssh = results["direct"], results["proxy"], results["ssh -L"]
    lat = proxy["latency"] / direct["latency"]
    thr = proxy["mbps"] / direct["mbps"]
    print("\nRatios (proxy / direct, proxy / ssh -L):")
    print(
        f"  latency    {lat:5.2f}x direct, {proxy['latency'] / ssh['latency']:5.2f}x ssh -L"
        f"   target <= 1.5x direct: {'met' if lat <= 1.5 else 'MISSED'}"
    )
    print(
        f"  req/s      {proxy['rps'] / direct['rps']:5.2f}x direct, "
        f"{proxy['rps'] / ssh['rps']:5.2f}x ssh -L"
    )
    print(
        f"  throughput {thr:5.2f}x direct, {proxy['mbps'] / ssh['mbps']:5.2f}x ssh -L"
        f"   target >= 0.7x direct: {'met' if thr >= 0.7 else 'MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 100 requests")
    parser.add_argument("--mb", type=int, default=50, help="the download's size in MiB")
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="jcs-bench-apps-"))
    try:
        results = asyncio.run(run(work, opts))
    except BaseException:
        print(f"Failed; logs in {work}", file=sys.stderr)
        raise
    report(results, opts)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
