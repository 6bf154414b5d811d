"""The kernel's IOPub relay (``agent/rpc_agent.py``'s ``iopub_relay``) against a real ZeroMQ
PUB socket: messages of every size, large frames first or last (received into buffers of their
own and sent without joining), arrive whole and in order on the relay's wire, live and when a
client resumes from a message the relay keeps, and without waiting for the kernel's next
message when one record filled a client's queue."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from jupyter_compute_servers.agent import rpc_agent

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


@pytest.fixture
def relay() -> Iterator[tuple[zmq.Socket, int]]:
    """A PUB socket standing in for the kernel's IOPub, and the port of a relay reading it
    (in a thread: the relay runs until its "kernel", a sleeping process here, ends)."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    pub.sndhwm = 0
    iopub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    kernel = subprocess.Popen(["sleep", "300"])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    thread = threading.Thread(
        target=rpc_agent.iopub_relay,
        args=(
            listener,
            iopub_port,
            TOKEN,
            kernel.pid,
            rpc_agent._start_time(kernel.pid),
            64 * 1024 * 1024,
            1000,
        ),
        daemon=True,
    )
    thread.start()
    try:
        yield pub, port
    finally:
        kernel.kill()
        kernel.wait()
        thread.join(10)
        listener.close()
        pub.close()
        context.term()
    assert not thread.is_alive(), "the relay did not end with its kernel"


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
