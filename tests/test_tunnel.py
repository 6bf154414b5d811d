"""The tunnel's channels opened ahead (``Tunnel.prepare``), through a real OpenSSH sshd: the
next local connections ride them with what the far end sent first kept, a spare the far end
closed is not used, and a retarget drops them. The same on uvloop's event loop, which a process
using the tunnel outside Jupyter may run (its transports are not asyncio's classes)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncssh
import pytest
import uvloop

from jupyter_compute_servers.ssh import KeyStore
from jupyter_compute_servers.tunnel import Tunnel

from .sshd import start_sshd


class Greeter:
    """A TCP server on the loopback that greets each connection first (as a ZeroMQ socket
    does), then echoes; it keeps its connections to count and close them."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            writer.write(f"hello {len(self.writers)}\n".encode())
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(1024):
                    writer.write(data)
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def open(self) -> list[asyncio.StreamWriter]:
        return [w for w in self.writers if not w.is_closing()]


async def until(check, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def talk(port: int, line: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        greeting = await asyncio.wait_for(reader.readline(), 10)
        writer.write(line)
        echo = await asyncio.wait_for(reader.readline(), 10)
        return greeting, echo
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_channels_opened_ahead_carry_the_next_connections(tmp_path: Path) -> None:
    await channels_opened_ahead_carry_the_next_connections(tmp_path)


def test_the_tunnel_carries_connections_on_uvloops_event_loop(tmp_path: Path) -> None:
    uvloop.run(channels_opened_ahead_carry_the_next_connections(tmp_path))


async def channels_opened_ahead_carry_the_next_connections(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys")
    sshd = start_sshd(tmp_path, keys.ensure(1))
    greeter = Greeter()
    port = await greeter.start()
    connection = await asyncssh.connect(
        "127.0.0.1",
        sshd.port,
        username=sshd.username,
        client_keys=[str(keys.private_key_path(1))],
        known_hosts=([asyncssh.import_public_key(sshd.host_key)], [], []),
    )

    async def get_connection() -> asyncssh.SSHClientConnection:
        return connection

    tunnel = Tunnel(get_connection)
    try:
        local = (await tunnel.open({"a": port}))["a"]
        tunnel.prepare({"a": 3})
        # Three channels reach the far end before anything connects here.
        await until(lambda: len(greeter.open()) == 3)
        # The far end drops the third spare (as ZeroMQ drops a silent peer): not used.
        greeter.open()[2].close()
        await asyncio.sleep(0.2)
        # The first two connections ride the spares, greeting kept; the third a new channel.
        assert await talk(local, b"one\n") == (b"hello 1\n", b"one\n")
        assert await talk(local, b"two\n") == (b"hello 2\n", b"two\n")
        assert await talk(local, b"three\n") == (b"hello 4\n", b"three\n")
        # A retarget (a restarted kernel) drops the spares not taken.
        tunnel.prepare({"a": 1})
        await until(lambda: len(greeter.writers) == 5 and len(greeter.open()) == 1)
        tunnel.retarget({"a": port})
        await until(lambda: not greeter.open())
        assert await talk(local, b"four\n") == (b"hello 6\n", b"four\n")
    finally:
        await tunnel.close()
        connection.close()
        assert greeter.server is not None
        greeter.server.close()
        sshd.process.terminate()
        sshd.process.wait()


class Recorder:
    """A TCP server on the loopback that records what each connection sends."""

    def __init__(self) -> None:
        self.received: list[bytearray] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got = bytearray()
            self.received.append(got)
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(1024):
                    got += data
            writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


async def connected(tmp_path: Path):  # type: ignore[no-untyped-def]
    keys = KeyStore(tmp_path / "keys")
    sshd = start_sshd(tmp_path, keys.ensure(1))
    connection = await asyncssh.connect(
        "127.0.0.1",
        sshd.port,
        username=sshd.username,
        client_keys=[str(keys.private_key_path(1))],
        known_hosts=([asyncssh.import_public_key(sshd.host_key)], [], []),
    )
    return sshd, connection


@pytest.mark.asyncio
async def test_a_greeted_spare_carries_a_zeromq_client(tmp_path: Path) -> None:
    """A spare of a ZeroMQ socket sends a client's greeting ahead; a real DEALER connecting
    here then talks to the real ROUTER there (its own greeting swallowed, the ROUTER's given
    at once and its own dropped), both ways. Its first request goes without waiting for the
    far end's answer to the greeting: a far end that never answers gets it."""
    import zmq
    import zmq.asyncio

    from jupyter_compute_servers.tunnel import ROUTER_READY, ZMTP_GREETING

    sshd, connection = await connected(tmp_path)
    recorder = Recorder()
    recorded = await recorder.start()
    context = zmq.asyncio.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    async def get_connection() -> asyncssh.SSHClientConnection:
        return connection

    tunnel = Tunnel(get_connection)
    try:
        local = await tunnel.open({"shell": port, "raw": recorded})
        tunnel.prepare({"shell": 1, "raw": 2}, greet=frozenset({"shell", "raw"}))
        # The greeting goes ahead, before anything connects here.
        await until(lambda: [bytes(r) for r in recorder.received] == [ZMTP_GREETING] * 2)

        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(f"tcp://127.0.0.1:{local['shell']}")
        await dealer.send_multipart([b"ping", b"1"])
        identity, *request = await asyncio.wait_for(router.recv_multipart(), 10)
        assert request == [b"ping", b"1"]
        await router.send_multipart([identity, b"pong"])
        assert await asyncio.wait_for(dealer.recv_multipart(), 10) == [b"pong"]
        assert tunnel._spares["shell"] == []  # it rode the spare
        # ...and works on after the far end's own handshake came and was dropped.
        await dealer.send_multipart([b"again"])
        identity, *request = await asyncio.wait_for(router.recv_multipart(), 10)
        assert request == [b"again"]
        dealer.close()

        # A far end that never answers the greeting (the recorder) gets the client's READY
        # and its first message all the same.
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(f"tcp://127.0.0.1:{local['raw']}")
        await dealer.send_multipart([b"first"])
        await until(lambda: b"first" in bytes(recorder.received[0]))
        assert bytes(recorder.received[0]).startswith(ZMTP_GREETING + b"\x04")  # its READY
        dealer.close()

        # A client that is not a ZeroMQ one cannot go on: it is given the handshake, and its
        # connection closes.
        reader, writer = await asyncio.open_connection("127.0.0.1", local["raw"])
        writer.write(b"GET / HTTP/1.1\r\n" + b"x" * 64)
        assert await asyncio.wait_for(reader.read(), 10) == ZMTP_GREETING + ROUTER_READY
        writer.close()
    finally:
        await tunnel.close()
        context.destroy(linger=0)
        connection.close()
        assert recorder.server is not None
        recorder.server.close()
        sshd.process.terminate()
        sshd.process.wait()
