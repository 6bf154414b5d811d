"""Our end of a remote kernel's IOPub: a local PUB socket fed from the kernel's relay.

The relay (``iopub_relay`` in ``agent/rpc_agent.py``) runs next to the kernel on the server,
numbers every message the kernel publishes and keeps the latest in a bounded buffer. Here they
arrive through a channel of the server's SSH connection and each is published as soon as it
is whole, frames untouched (the kernel signed them), on a ZeroMQ PUB socket bound to the
kernel's local IOPub port, which Jupyter and every other client subscribe to as they would to
a local kernel.

When the channel breaks (a partition, a stalled or replaced SSH daemon, a dropped connection)
the task connects again and asks for the message after the last one it published: nothing is
lost or doubled, for partitions as long as the relay's buffer lasts. When the relay no longer
has what was asked for, the notebook is told in a stream message exactly how many messages and
bytes are missing, then output goes on.

It acknowledges to the relay what it published, so that a Jupyter taking the kernel over after
this one died resumes after the last message published here (``from_seq=-2``). Such a takeover
*holds* the output until a client subscribes: the notebook that reconnects gets what the kernel
published while no Jupyter was there, rather than nobody (the socket is an XPUB, which sees
subscriptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from ..tunnel import PortChannel, PortSession, RouteGetter, open_port_channel

log = logging.getLogger(__name__)

ConnectionGetter = Callable[[], Awaitable[asyncssh.SSHClientConnection]]

#: Local subscribers that fall this many messages behind lose messages (ZeroMQ's high-water
#: mark); far above what Jupyter's own subscriber ever lags.
LOCAL_HWM = 1_000_000

#: Seconds between two acknowledgements to the relay while output flows. Each one is a packet
#: up the SSH connection that the server's SSH daemon and the relay must wake for: one per
#: message was a third of our side's time in a profile of execute('pass') round trips
#: (benchmarks/kernels.py), more than the forwarding itself. The first message after a quiet
#: spell is acknowledged at once; the rest of a burst within this interval, together at its
#: end. What a Jupyter killed within it had published but not acknowledged is shown again by
#: the one taking over (at most this long of output); nothing is lost.
ACK_INTERVAL = 0.05

#: The relay's channel: how much the server may send ahead of what we read, and in packets of
#: up to how many bytes. Output comes in messages of up to tens of MB (ipykernel sends what
#: was printed in 0.2 s as one); asyncssh's defaults (2 MiB, 32 KiB) made the server's SSH
#: daemon wait for a window adjustment every 2 MiB and our side handle a packet, with its
#: Python-level parsing, decryption call and buffer slicing, per 32 KiB.
RELAY_WINDOW = 16 * 1024 * 1024
RELAY_MAX_PKTSIZE = 256 * 1024
#: Frames of this size and more are collected as they arrive and joined once, and handed to
#: ZeroMQ without a copy; smaller ones are copied (cheaper than ZeroMQ's zero-copy tracking).
LARGE_FRAME = 64 * 1024
#: A published frame's send flags, worked out once: worked out per frame (seven a message),
#: their enum arithmetic took 3-4% of the runtime thread's busy time in a profile.
_MORE_TO_SEND = int(zmq.NOBLOCK | zmq.SNDMORE)
_LAST_TO_SEND = int(zmq.NOBLOCK)


class RecordReader:
    """Splits the relay's stream into its records, whatever pieces it arrives in.

    A record (``_record`` in ``agent/rpc_agent.py``) is its sequence number (8 bytes), its
    frame count (4), then each frame: its size (4) and its bytes. ``feed`` answers the
    records completed by what it is given, as (sequence number, frames). A large frame is
    kept as the pieces it came in, joined once when whole: its bytes are copied once, and
    held only as they arrive (a size in a header allocates nothing).
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        #: The record under way: its sequence number (None between records), its frames so
        #: far, and how many are still to come.
        self.seq: int | None = None
        self.frames: list[bytes] = []
        self.left = 0
        #: The large frame under way: its pieces so far, and how many bytes it still lacks.
        self.pieces: list[bytes | memoryview] | None = None
        self.missing = 0

    def feed(self, data: bytes) -> list[tuple[int, list[bytes]]]:
        records: list[tuple[int, list[bytes]]] = []
        if self.pieces is not None:
            if len(data) < self.missing:
                self.pieces.append(data)
                self.missing -= len(data)
                return records
            with memoryview(data) as view:
                self.pieces.append(view[: self.missing])
                frame = b"".join(self.pieces)
                rest = view[self.missing :].tobytes() if len(data) > self.missing else b""
            self.pieces = None
            self._frame_done(frame, records)
            data = rest
        buffer = self.buffer
        buffer += data
        pos, end = 0, len(buffer)
        with memoryview(buffer) as view:
            while True:
                if self.seq is None:
                    if end - pos < 12:
                        break
                    self.seq, self.left = struct.unpack_from(">QI", buffer, pos)
                    self.frames = []
                    pos += 12
                    if not self.left:
                        self._frame_done(None, records)
                        continue
                if end - pos < 4:
                    break
                (size,) = struct.unpack_from(">I", buffer, pos)
                if end - pos - 4 >= size:
                    self._frame_done(view[pos + 4 : pos + 4 + size].tobytes(), records)
                    pos += 4 + size
                    continue
                if size >= LARGE_FRAME:
                    # The rest of it is collected as it comes (see ``pieces``).
                    self.pieces = [view[pos + 4 : end].tobytes()]
                    self.missing = size - (end - pos - 4)
                    pos = end
                break
        del buffer[:pos]
        return records

    def _frame_done(self, frame: bytes | None, records: list[tuple[int, list[bytes]]]) -> None:
        """A frame of the record under way is whole (None: a record of no frames)."""
        if frame is not None:
            self.frames.append(frame)
            self.left -= 1
        if not self.left:
            assert self.seq is not None
            records.append((self.seq, self.frames))
            self.seq, self.frames = None, []


#: The relay's answer to our hello is one JSON line, far shorter than this.
MAX_ANSWER = 64 * 1024


class _RelayChannel(PortSession):
    """The relay's channel, read in asyncssh's own callbacks as its packets are decrypted:
    the records are published from there. A task reading a stream instead was woken through
    the event loop for each piece, and in a busy Jupyter each wake-up waited its turn behind
    whatever else the loop had to do (``benchmarks/jupyter_kernels.py``, (c)).

    Everything here runs inside asyncssh's packet loop, where an exception would take the
    whole shared connection down: a failure ends this channel instead (``ended``)."""

    def __init__(self, owner: IOPubResume, relay: dict[str, Any]) -> None:
        self.owner = owner
        self.relay = relay
        self.channel: PortChannel | None = None
        #: The answer to our hello, until its newline.
        self.head: bytearray | None = bytearray()
        self.records = RecordReader()
        #: Done when the channel ended, with why (always an exception: nothing ends it well).
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, chan: PortChannel) -> None:
        self.channel = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is not None or self.ended.done():
            return  # a route's standard error (srun's messages); or after a failure
        try:
            if self.head is not None:
                self.head += data
                line, newline, rest = self.head.partition(b"\n")
                if not newline:
                    if len(self.head) > MAX_ANSWER:
                        raise ValueError("the relay's answer has no end")
                    return
                self.head = None
                self.owner._answered(json.loads(line))
                data = bytes(rest)
            if data:
                self.owner._received(self.relay, self.records.feed(data))
        except Exception as e:
            self.end(e)

    def eof_received(self) -> bool:
        self.end(ConnectionError("the relay ended the stream"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(exc or ConnectionError("the relay's channel closed"))

    def write(self, data: bytes) -> None:
        if self.channel is not None and not self.ended.done():
            self.channel.write(data)

    def end(self, cause: BaseException) -> None:
        if not self.ended.done():
            self.ended.set_exception(cause)
        if self.channel is not None:
            self.channel.abort()


class IOPubResume:
    """A kernel's IOPub here: a PUB on 127.0.0.1, fed from its relay with resumption."""

    def __init__(
        self,
        get_connection: ConnectionGetter,
        key: bytes,
        *,
        server_name: str,
        remote_host: str = "127.0.0.1",
        route: RouteGetter = tuple,
    ) -> None:
        self.get_connection = get_connection
        #: How to reach the relay's port (see ``tunnel.RouteGetter``).
        self.route = route
        self.session = Session(key=key, signature_scheme="hmac-sha256", username="kernel")
        self.server_name = server_name
        self.remote_host = remote_host
        # The process's shared context: a context of its own, if ever left to the garbage
        # collector with a socket open, would block that collection in zmq_ctx_term forever.
        self.socket = zmq.asyncio.Context.instance().socket(zmq.XPUB)
        self.socket.linger = 0
        self.socket.sndhwm = LOCAL_HWM
        # Every subscription is seen, also a second one to the same topic.
        self.socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        #: The same socket, for sends that need no future (``_publish``).
        self._sender: zmq.Socket[bytes] = zmq.Socket.shadow(self.socket.underlying)
        #: Subscriptions seen so far (each client's IOPub socket subscribes once).
        self.subscriptions = 0
        self._release_after: int | None = None
        self._released = asyncio.Event()
        self._released.set()
        self._subscribed = asyncio.Event()
        self._subscription_task: asyncio.Task[None] | None = None
        #: The acknowledgement waiting for its turn (see ``ACK_INTERVAL``), if any.
        self._ack_pending: asyncio.Handle | None = None
        #: When the last acknowledgement was sent (loop time).
        self._last_ack = -math.inf
        self.port = 0
        self.relay: dict[str, Any] = {}
        #: The next message wanted from the relay (-1: whatever comes next).
        self.next_seq = 0
        #: Bytes of IOPub published before ``next_seq`` (to count what a gap lost).
        self.next_offset = 0
        self._known_offset = True
        #: What happened, for tests and benchmarks: resumptions, messages and bytes lost.
        self.stats = {"connects": 0, "published": 0, "lost_messages": 0, "lost_bytes": 0}
        #: Set each time a connection to the relay is established (benchmarks wait on it).
        self.on_connect: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: The relay's channel now (None between two).
        self._channel: _RelayChannel | None = None
        #: What the relay's answer said is missing before its first message, to tell the
        #: notebook with that message (messages, bytes; bytes -1 if not known), and its limits.
        self._gap: tuple[int, int] | None = None
        self._limits: dict[str, Any] = {}
        self._closed = False

    def bind(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (the given port if free, else any); answer the port."""
        if port:
            try:
                self.socket.bind(f"tcp://127.0.0.1:{port}")
                self.port = port
                return port
            except zmq.ZMQError:
                pass
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        return self.port

    def start(self, relay: dict[str, Any], from_seq: int = 0, *, hold: bool = False) -> None:
        """Feed from ``relay`` (its port and token), from message ``from_seq`` (-1: what
        comes next; -2: after the last one acknowledged). ``hold``: not before ``arm()`` was
        called and then a client subscribed."""
        self.relay = dict(relay)
        self.next_seq = from_seq
        self.next_offset = 0
        self._known_offset = from_seq == 0
        if hold:
            self._released.clear()
        loop = asyncio.get_running_loop()
        if self._subscription_task is None:
            self._subscription_task = loop.create_task(self._watch_subscriptions())
        if self._task is None:
            self._task = loop.create_task(self._run())
        else:
            self._break()

    async def arm(self, settle: float = 1.0) -> None:
        """Release held output at the next subscription. Subscriptions already under way
        (Jupyter's own activity watcher) are let in first: up to ``settle`` seconds."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), settle)
        self._release_after = self.subscriptions

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    async def wait_released(self) -> None:
        await self._released.wait()

    async def _watch_subscriptions(self) -> None:
        while not self._closed:
            try:
                message = await self.socket.recv()
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError:
                return
            if message[:1] != b"\x01":
                continue  # an unsubscription
            self.subscriptions += 1
            self._subscribed.set()
            self._welcome(message[1:])
            if self._release_after is not None and self.subscriptions > self._release_after:
                self._release_after = None
                log.info(
                    "IOPub of a kernel on %s: a client is back; output flows", self.server_name
                )
                self._released.set()

    def _welcome(self, topic: bytes) -> None:
        """Greet a new subscriber as the kernel's own IOPub does (ipykernel 7's XPUB, JEP 65):
        an ``iopub_welcome`` for its subscription. Its subscription reaches this socket a
        moment after it connected, and a status published before that is not for it (ZeroMQ's
        "slow joiner"); clients (jupyter_client's wait_for_ready, Jupyter's nudge) take any
        IOPub message as the sign that it is live, and without this one asked kernel_info again
        0.2 s later when the first status was lost. The kernel's own welcome goes to the relay,
        its one subscriber, not to clients here."""
        with contextlib.suppress(UnicodeDecodeError, zmq.ZMQError):
            subscription = topic.decode()
            self.session.send(
                self.socket,
                "iopub_welcome",
                {"subscription": subscription},
                ident=topic or None,
            )

    def retarget(self, relay: dict[str, Any]) -> None:
        """A restarted kernel has a new relay: everything of it, from its first message."""
        self.start(relay, 0)

    def _break(self) -> None:
        if self._channel is not None:
            self._channel.end(ConnectionError("broken off"))

    async def _run(self) -> None:
        delay = 0.05
        while not self._closed:
            await self._released.wait()
            relay = self.relay
            try:
                channel = await self._open(relay)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("IOPub relay on %s: not reachable (%s)", self.server_name, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            self._channel = channel
            try:
                hello = {"token": relay["token"], "from": self.next_seq}
                channel.write(json.dumps(hello).encode() + b"\n")
                await channel.ended  # the records flow meanwhile (``_received``)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("IOPub relay on %s: stream ended (%s)", self.server_name, e)
            finally:
                self._channel = None
                channel.end(ConnectionError("done"))
                if not channel.ended.cancelled():
                    channel.ended.exception()  # why it ended is logged above, or moot
            delay = 0.05
            await asyncio.sleep(0.02)

    async def _open(self, relay: dict[str, Any]) -> _RelayChannel:
        """A channel to the relay's port on the server (see ``tunnel.RouteGetter``)."""
        channel = _RelayChannel(self, relay)
        await open_port_channel(
            await self.get_connection(),
            self.route(),
            int(relay["port"]),
            channel,
            self.remote_host,
            window=RELAY_WINDOW,
            max_pktsize=RELAY_MAX_PKTSIZE,
        )
        return channel

    def _answered(self, answer: dict[str, Any]) -> None:
        """The relay's answer to our hello: where it starts, and what it no longer has."""
        first, first_offset = int(answer["first"]), int(answer["first_offset"])
        self.stats["connects"] += 1
        if self.on_connect is not None:
            self.on_connect()
        self._gap = None
        asked = self.next_seq if self.next_seq != -2 else int(answer.get("asked", -1))
        if asked >= 0 and first > asked:
            known = self._known_offset and asked == self.next_seq
            self._gap = (first - asked, first_offset - self.next_offset if known else -1)
        self.next_seq, self.next_offset, self._known_offset = first, first_offset, True
        self._limits = answer.get("limits") or {}

    def _received(self, relay: dict[str, Any], records: list[tuple[int, list[bytes]]]) -> None:
        """Publish the records that arrived from ``relay``."""
        for seq, frames in records:
            if relay is not self.relay:
                return  # retargeted (a restart): the new relay's stream replaces this one
            if self._gap is not None:
                self._tell_gap(self._gap, self._limits, frames)
                self._gap = None
            self._publish(frames)
            self.next_seq = seq + 1
            self.next_offset += sum(len(frame) for frame in frames)
            self.stats["published"] += 1
        if records:
            self._acknowledge_soon()

    def _publish(self, frames: list[bytes]) -> None:
        """Send a message's frames on, as they are (the kernel signed them). Through a
        synchronous view of the socket: a PUB never blocks (a subscriber past its high-water
        mark loses messages instead), so the asyncio socket's future for each send is only
        cost. A large frame is handed to ZeroMQ without a copy: a cell's output can be one
        frame of tens of MB (ipykernel sends what was printed in 0.2 s as one message)."""
        last = len(frames) - 1
        try:
            for i, frame in enumerate(frames):
                flags = _MORE_TO_SEND if i < last else _LAST_TO_SEND
                self._sender.send(frame, flags, copy=len(frame) < LARGE_FRAME)
        except zmq.ZMQError as e:  # closed under us (a shutdown): nobody is listening
            log.debug("IOPub of a kernel on %s: not published (%s)", self.server_name, e)

    def _acknowledge_soon(self) -> None:
        """Tell the relay what was published: at once after a quiet spell, else once
        ``ACK_INTERVAL`` after the last acknowledgement (never one per message)."""
        if self._ack_pending is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_ack + ACK_INTERVAL - loop.time()
        if wait > 0:
            self._ack_pending = loop.call_later(wait, self._acknowledge)
        else:
            self._ack_pending = loop.call_soon(self._acknowledge)

    def _acknowledge(self) -> None:
        """Tell the relay now what was published (a pending acknowledgement goes with it)."""
        if self._ack_pending is not None:
            self._ack_pending.cancel()
            self._ack_pending = None
        self._last_ack = asyncio.get_running_loop().time()
        channel = self._channel  # the relay's current channel (a broken one is replaced)
        if channel is not None:
            with contextlib.suppress(Exception):
                channel.write(json.dumps({"ack": self.next_seq}).encode() + b"\n")

    def _tell_gap(self, gap: tuple[int, int], limits: dict[str, Any], frames: list[bytes]) -> None:
        """Tell the notebook what the relay could not keep, in the cell the output was for."""
        messages, lost_bytes = gap
        self.stats["lost_messages"] += messages
        self.stats["lost_bytes"] += max(lost_bytes, 0)
        parent: dict[str, Any] = {}
        topic = b"kernel.stream"
        with contextlib.suppress(ValueError, IndexError, json.JSONDecodeError):
            delimiter = frames.index(b"<IDS|MSG>")
            parent = json.loads(frames[delimiter + 3]) or json.loads(frames[delimiter + 2])
            if delimiter:
                topic = frames[0].rsplit(b".", 1)[0] + b".stream"
        size = f"{lost_bytes:,} bytes" if lost_bytes >= 0 else "size unknown"
        keeps = ""
        if limits:
            keeps = (
                f" (it keeps the latest {int(limits.get('bytes', 0)) // 2**20} MB or "
                f"{int(limits.get('messages', 0)):,} messages per kernel)"
            )
        text = (
            f"[compute server {self.server_name!r}: {messages:,} output messages ({size}) of "
            f"this kernel were lost while the connection was down: more than the server "
            f"keeps{keeps}.]\n"
        )
        log.warning("Kernel output lost on %s: %s", self.server_name, text.strip())
        self.session.send(
            self.socket,
            "stream",
            {"name": "stderr", "text": text},
            parent=parent,
            ident=topic,
        )

    async def close(self) -> None:
        self._closed = True
        if self._ack_pending is not None:
            # A clean stop that leaves the kernel running: the next Jupyter resumes exactly.
            self._acknowledge()
        self._break()
        for task in (self._task, self._subscription_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = self._subscription_task = None
        self.socket.close(linger=0)
