"""A TCP proxy that delays every byte by a fixed time each way: a long link without netem.

    python benchmarks/delay_proxy.py TARGET_PORT --delay-ms 25 [--port 0]

It listens on 127.0.0.1 (``--port``, 0 picks one), prints ``listening PORT`` on stdout once it
accepts, and forwards each connection to 127.0.0.1:TARGET_PORT, holding every chunk read from
either side for ``--delay-ms`` before writing it on (25 ms each way is a 50 ms round trip).
Chunks keep their order and are not held back by one another (a chunk read 1 ms after another
leaves 1 ms after it), so the link has latency but no bandwidth limit, like a fast long-haul
link. Both sockets get TCP_NODELAY, so the proxy adds no Nagle delay of its own.

It runs in a process of its own (``benchmarks/link.py`` starts it): in the measuring process
it would share, and disturb, the event loop being measured. SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk ``delay`` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        # the other side's end of input, delayed like the data
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        with contextlib.suppress(OSError):
            writer.write_eof()

    # The queue is unbounded (no backpressure beyond the writer's): fine for the benchmarks'
    # sizes, where the link's latency, not its buffer, is what is measured.
    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(1 << 16)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


def nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def serve(target_port: int, port: int, delay: float) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            c_writer.close()
            return
        nodelay(c_writer)
        nodelay(s_writer)
        try:
            await asyncio.gather(pump(c_reader, s_writer, delay), pump(s_reader, c_writer, delay))
        finally:
            for writer in (c_writer, s_writer):
                with contextlib.suppress(OSError):
                    writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target_port", type=int)
    parser.add_argument("--delay-ms", type=float, default=25.0, help="added each way")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.target_port, args.port, args.delay_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
