"""Helpers for driving real kernels in tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager


async def execute(kernel_client: Any, code: str, timeout: float = 30) -> tuple[dict, str]:
    """Run code as a notebook does; answer the execute reply and everything printed."""
    printed: list[str] = []

    def on_output(message: dict) -> None:
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    reply = await kernel_client.execute_interactive(code, output_hook=on_output, timeout=timeout)
    return reply, "".join(printed)


async def wait_until(
    probe: Callable[[], Any],
    *,
    predicate: Callable[[Any], bool] = bool,
    timeout: float = 30,
    interval: float = 0.1,
) -> Any:
    """Call ``probe`` (sync or async) until its value satisfies ``predicate``; answer it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r} after {timeout} s")
        await asyncio.sleep(interval)


def process_alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def listening_on_loopback(port: int) -> bool:
    """Whether a TCP socket listens on 127.0.0.1:port, and on no other address."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                address, port_hex = fields[1].rsplit(":", 1)
                if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    addresses.add(address)
    return addresses == {"0100007F"}


async def until_iopub_live(kernel_client: Any, timeout: float = 60) -> None:
    """Ask kernel_info until an IOPub status for it arrives: after a reconnection the client's
    subscription, like any ZeroMQ subscriber's, takes a moment to be live again."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        msg_id = kernel_client.kernel_info()
        try:
            while True:
                message = await kernel_client.get_iopub_msg(timeout=0.5)
                if message["parent_header"].get("msg_id") == msg_id:
                    return
        except Exception:  # queue.Empty: not yet
            continue
    raise AssertionError("IOPub never came back")


COUNTER = """
import time
for i in range({count}):
    print(i, flush=True)
    time.sleep({pause})
"""


async def run_counter(kernel_client, count: int, pause: float, fault) -> list[str]:
    """Run a cell printing 0..count-1, one message each; inject ``fault`` meanwhile; answer
    the lines that arrived."""
    printed: list[str] = []

    def on_output(message: dict) -> None:
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    cell = asyncio.ensure_future(
        kernel_client.execute_interactive(
            COUNTER.format(count=count, pause=pause), output_hook=on_output, timeout=300
        )
    )
    await wait_until(lambda: len(printed), predicate=lambda n: n >= 20, timeout=60)
    await fault()
    reply = await cell
    assert reply["content"]["status"] == "ok", reply
    return "".join(printed).splitlines()


@contextlib.asynccontextmanager
async def server_kernel(manager: Any, server_id: int, kernels_dir: Path) -> AsyncIterator[Any]:
    """A ready client of a new kernel of the server's Python 3 spec (published under
    ``kernels_dir`` once the server runs), as Jupyter starts one; shut down on the way out."""
    await wait_until(lambda: manager.get_server(server_id).kernel_specs)
    specs = KernelSpecManager(kernel_dirs=[str(kernels_dir)])
    kernel = AsyncKernelManager(
        kernel_name=f"compute-{server_id}-python3", kernel_spec_manager=specs
    )
    await kernel.start_kernel()
    client = kernel.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        yield client
    finally:
        client.stop_channels()
        await kernel.shutdown_kernel()
