"""The kernel's IOPub relay (``agent/rpc_agent.py``'s ``iopub_relay``) against a real ZeroMQ
PUB socket: messages of every size, large frames first or last (received into buffers of their
own and sent without joining), arrive whole and in order on the relay's wire, live and when a
client resumes from a message the relay keeps, and without waiting for the kernel's next
message when one record filled a client's queue."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from random import Random

import pytest
import zmq

from jupyter_compute_servers.agent import rpc_agent
from jupyter_compute_servers.kernels.iopub import RecordReader

TOKEN = "relay-test-token"
#: Frames this large are received into buffers of their own.
LARGE = getattr(rpc_agent, "RELAY_LARGE_FRAME", 65536)


class RelayClient:
    """A client of the relay's wire, written from its documented protocol (not the agent's
    own reader): a JSON hello, a JSON answer, then records."""

    def __init__(self, port: int, start: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall((json.dumps({"token": TOKEN, "from": start}) + "\n").encode())
        self.data = bytearray()
        while b"\n" not in self.data:
            self._read()
        line, _, rest = bytes(self.data).partition(b"\n")
        self.answer = json.loads(line)
        self.data = bytearray(rest)

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the relay closed the connection")
        self.data += chunk

    def _take(self, count: int) -> bytes:
        while len(self.data) < count:
            self._read()
        taken = bytes(self.data[:count])
        del self.data[:count]
        return taken

    def record(self) -> tuple[int, list[bytes]]:
        seq = int.from_bytes(self._take(8), "big")
        count = int.from_bytes(self._take(4), "big")
        frames = [self._take(int.from_bytes(self._take(4), "big")) for _ in range(count)]
        return seq, frames

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def running_relay(iopub_port: int) -> Iterator[int]:
    """A relay reading the kernel's IOPub on ``iopub_port``; answers its port. It runs in a
    thread until its "kernel", a sleeping process here, ends: at the end of the block."""
    kernel = subprocess.Popen(["sleep", "300"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    args = (listener, iopub_port, TOKEN, kernel.pid, rpc_agent._start_time(kernel.pid))
    thread = threading.Thread(
        target=rpc_agent.iopub_relay, args=(*args, 64 * 1024 * 1024, 1000), daemon=True
    )
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        kernel.kill()
        kernel.wait()
        thread.join(10)
        listener.close()
    assert not thread.is_alive(), "the relay did not end with its kernel"


@pytest.fixture
def relay() -> Iterator[tuple[zmq.Socket, int]]:
    """A PUB socket standing in for the kernel's IOPub, and the port of a relay reading it."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    pub.sndhwm = 0
    try:
        with running_relay(pub.bind_to_random_port("tcp://127.0.0.1")) as port:
            yield pub, port
    finally:
        pub.close()
        context.term()


def subscribed(pub: zmq.Socket, client: RelayClient) -> int:
    """Publish probes until the relay's subscription is live; answers the next seq."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pub.send_multipart([b"probe"])
        client.sock.settimeout(0.1)
        try:
            client._read()
        except TimeoutError:
            continue
        finally:
            client.sock.settimeout(30)
        seq, frames = client.record()
        assert frames == [b"probe"]
        time.sleep(0.2)  # let the probes still in flight land, then skip them
        client.sock.settimeout(0.2)
        try:
            while True:
                seq, frames = client.record()
                assert frames == [b"probe"]
        except TimeoutError:
            pass
        finally:
            client.sock.settimeout(30)
        assert not client.data
        return seq + 1
    raise AssertionError("the relay never subscribed")


def messages() -> list[list[bytes]]:
    big = os.urandom(3 * 1024 * 1024)
    return [
        # a Jupyter stream message whose content, its last frame, is MBs
        [b"kernel.x.stream", b"<IDS|MSG>", b"signature", b"{}", b"{}", b"{}", big],
        [b"small"],
        # a large frame that is not the last (binary buffers after a message's content)
        [b"topic", os.urandom(200_000), b"after", os.urandom(100_000)],
        # just at the size where frames are received into buffers of their own, and below
        [os.urandom(LARGE), os.urandom(LARGE - 1)],
        [b""],
        [big[:300] * 1000],
    ]


def test_messages_of_every_size_arrive_whole_and_in_order(relay: tuple[zmq.Socket, int]) -> None:
    pub, port = relay
    client = RelayClient(port, 0)
    try:
        first = subscribed(pub, client)
        sent = messages() * 2
        for frames in sent:
            pub.send_multipart(frames)
        for i, frames in enumerate(sent):
            assert client.record() == (first + i, frames)

        # A client resuming from the large messages gets them again, from the relay's buffer.
        again = RelayClient(port, first + 2)
        try:
            assert again.answer["first"] == first + 2
            for i, frames in enumerate(sent[2:], start=2):
                assert again.record() == (first + i, frames)
        finally:
            again.close()

        # Output goes on after, to both.
        pub.send_multipart([b"later"])
        assert client.record() == (first + len(sent), [b"later"])
    finally:
        client.close()


def test_our_end_reads_the_relays_records_in_whatever_pieces_they_come(
    relay: tuple[zmq.Socket, int],
) -> None:
    """Our end (``kernels/iopub.py``'s ``RecordReader``) splits the relay's real stream into
    the messages published, however the channel cuts it: a byte at a time, across headers,
    mid-frame, several records at once."""
    pub, port = relay
    client = RelayClient(port, 0)
    try:
        first = subscribed(pub, client)
        sent = messages() + [[b"empty last", b""], [b"one"]] * 3
        for frames in sent:
            pub.send_multipart(frames)
        wire = bytearray()
        expected = sum(12 + sum(4 + len(frame) for frame in frames) for frames in sent)
        while len(wire) < expected:
            wire += client.sock.recv(1 << 20)
        assert len(wire) == expected
    finally:
        client.close()
    random = Random(22)
    # Where the stream is cut: every byte of its first 20,000 (headers, small frames, a large
    # frame's start), then pieces of random sizes; and in whole packets, and all at once.
    cuttings = [
        [*range(1, 20_001), *range(20_000, len(wire), 70_001)],
        sorted(random.sample(range(1, len(wire)), 500)),
        list(range(256 * 1024, len(wire), 256 * 1024)),
        [],
    ]
    for cuts in cuttings:
        reader = RecordReader()
        received: list[tuple[int, list[bytes]]] = []
        for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
            received += reader.feed(bytes(wire[start:end]))
        assert [(seq, [bytes(f) for f in frames]) for seq, frames in received] == [
            (first + i, frames) for i, frames in enumerate(sent)
        ]
        assert not reader.buffer and reader.seq is None and reader.pieces is None


class RawPublisher:
    """A ZeroMQ PUB peer speaking ZMTP 3.0 by hand on a listening socket, so that a test can
    send part of a frame and wait, or hang up half-way through one (as a kernel that dies
    while sending does); libzmq always sends a message whole."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.peer: socket.socket | None = None

    def accept(self) -> None:
        """Take the relay's (next) connection and finish its handshake."""
        peer, _ = self.listener.accept()
        peer.settimeout(30)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00")
        peer.sendall(greeting + b"\x00" * 32)
        received = b""
        while len(received) < 64:
            received += peer.recv(64 - len(received))
        body = b"\x05READY" + b"\x0bSocket-Type" + (3).to_bytes(4, "big") + b"PUB"
        peer.sendall(bytes([0x04, len(body)]) + body)
        self.peer = peer

    def frame_header(self, size: int, more: bool = False) -> bytes:
        return bytes([0x02 | (0x01 if more else 0)]) + size.to_bytes(8, "big")

    def send(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.sendall(data)

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
        self.listener.close()


@pytest.fixture
def raw_relay() -> Iterator[tuple[RawPublisher, int]]:
    publisher = RawPublisher()
    try:
        with running_relay(publisher.port) as port:
            publisher.accept()
            yield publisher, port
    finally:
        publisher.close()


def test_a_large_last_frame_is_sent_on_as_it_arrives(
    raw_relay: tuple[RawPublisher, int],
) -> None:
    publisher, port = raw_relay
    client = RelayClient(port, 0)
    try:
        big = os.urandom(2 * 1024 * 1024)
        half = len(big) // 2
        publisher.send(
            publisher.frame_header(5, more=True) + b"topic" + publisher.frame_header(len(big))
        )
        publisher.send(big[:half])
        # The record's head and the half that came are there before the rest is sent.
        head = 8 + 4 + 4 + 5 + 4
        deadline = time.monotonic() + 30
        while len(client.data) < head + half and time.monotonic() < deadline:
            client._read()
        assert bytes(client.data[:head]) == (
            (0).to_bytes(8, "big")
            + (2).to_bytes(4, "big")
            + (5).to_bytes(4, "big")
            + b"topic"
            + len(big).to_bytes(4, "big")
        )
        assert bytes(client.data[head:]) == big[:half]
        # A client that comes meanwhile gets the same, from the start.
        late = RelayClient(port, 0)
        publisher.send(big[half:] + bytes([0, 5]) + b"after")
        try:
            for reader in (client, late):
                assert reader.record() == (0, [b"topic", big])
                assert reader.record() == (1, [b"after"])
        finally:
            late.close()
    finally:
        client.close()


def test_a_message_cut_off_by_the_kernel_is_not_kept(
    raw_relay: tuple[RawPublisher, int],
) -> None:
    publisher, port = raw_relay
    client = RelayClient(port, 0)
    try:
        publisher.send(bytes([0, 5]) + b"first")
        assert client.record() == (0, [b"first"])
        big = os.urandom(1024 * 1024)
        publisher.send(publisher.frame_header(len(big)) + big[:1000])
        while len(client.data) < 8 + 4 + 4 + 1000:
            client._read()
        # The kernel's socket goes away half-way through the frame: the client that was sent
        # part of it is hung up on (it would resume before it)...
        assert publisher.peer is not None
        publisher.peer.close()
        with pytest.raises(ConnectionError):
            while True:
                client._read()
        # ...and the relay, subscribed again, numbers the next message in its place.
        publisher.accept()
        again = RelayClient(port, 1)
        try:
            publisher.send(bytes([0, 4]) + b"next")
            assert again.answer["first"] == 1
            assert again.record() == (1, [b"next"])
        finally:
            again.close()
    finally:
        client.close()
