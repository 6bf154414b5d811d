"""The channel to the server's sync process, over the server's one SSH connection.

The sync agent (``agent/sync_agent.py``, sent alone) runs on the server as a process of its
own, so that scanning, hashing and copying never hold up the agent's kernel and terminal calls,
and a binary channel, so file contents travel as they are. Every message is one JSON line,
followed by exactly ``size`` raw bytes when the line has a "size"; answers come in the order of
requests, so many requests (and files) are in flight at once with no round trip per file: the
SSH channel's window is the only flow control.

Why not SFTP: a file costs five SFTP requests (open, write, setstat, close, rename) whose
answers are all awaited, about 2 ms per small file here (benchmarks/sync.py); and SFTP cannot
put a file in place only if the target is still what the scan saw, which is what keeps a change
made during a sync from being overwritten.

Everything the server answers is checked here: it may be hostile (see ``scan.py`` for paths).
Every answer is bounded: a message line at MAX_LINE, an answer with a payload (a scan, hashes)
at ``SyncLimits.max_answer_bytes`` and ``max_entries``; such a payload comes as JSON lines of
at most MAX_PAYLOAD_LINE each, parsed on a thread one line at a time (so that the event loop,
which needs the GIL too, runs between them). Anything over a limit or malformed fails the sync
with an error that names the server and the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncssh

from ..agent import SYNC_AGENT_SOURCE, agent_command, bootstrap
from ..errors import CloudError

#: The default bound of an answer's payload (a scan of about two million files).
MAX_ANSWER = 256 << 20
#: The default bound of the entries of one answer (files, skipped, pruned; hashes).
MAX_ENTRIES = 1_000_000
#: A message line (a header, a short answer): parsed on the event loop, so kept short.
MAX_LINE = 64 << 10
#: One line of a payload (the agent sends at most about 256 KiB).
MAX_PAYLOAD_LINE = 1 << 20
#: The SSH channel's write buffer: how much is queued before writes wait for the network.
WRITE_BUFFER = 4 << 20


_CONSUMERS = itertools.count(1)


class SyncChannelError(CloudError):
    """The channel to the server's sync process broke, or it answered nonsense."""


@dataclass(frozen=True)
class SyncLimits:
    """What an answer of the server's sync process may be (``SyncService``'s settings)."""

    max_answer_bytes: int = MAX_ANSWER
    max_entries: int = MAX_ENTRIES


class _BoundedReader:
    """Lines of at most a given length and exact reads, over a stream reader (asyncio's or
    asyncssh's, whose readline has no bound: a server could send one endless line)."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._buf = bytearray()
        self._pos = 0

    async def readline(self, limit: int) -> bytes:
        """A line with its newline; without one at the end of the stream; ValueError when
        longer than ``limit``."""
        start = self._pos
        while True:
            end = self._buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self._buf[self._pos : end + 1])
                self._pos = end + 1
                return line
            if len(self._buf) - self._pos > limit:
                raise _TooLong
            start = len(self._buf)
            data = await self._reader.read(1 << 16)
            if not data:
                line = bytes(self._buf[self._pos :])
                self._buf, self._pos = bytearray(), 0
                return line
            if self._pos:
                del self._buf[: self._pos]
                start -= self._pos
                self._pos = 0
            self._buf += data

    async def readexactly(self, n: int) -> bytes:
        have = len(self._buf) - self._pos
        if have >= n:
            data = bytes(self._buf[self._pos : self._pos + n])
            self._pos += n
            return data
        head = bytes(self._buf[self._pos :])
        self._buf, self._pos = bytearray(), 0
        return head + await self._reader.readexactly(n - len(head))


class _TooLong(Exception):
    pass


def parse_payload(data: bytes, limits: SyncLimits, where: str) -> dict[str, Any]:
    """A payload of JSON lines (see ``_sync_payload`` in the agent): a head, ``{"lists":
    {name: count}, ...}``, then ``[name, [entries...]]`` lines; answers the head's other
    fields and each list whole. Runs on a thread; SyncChannelError when malformed or over
    a limit."""

    def bad(why: str) -> SyncChannelError:
        return SyncChannelError(f"The sync process on {where} sent a malformed answer: {why}")

    if not data.endswith(b"\n"):
        raise bad("it does not end with a line end")
    lines = data[:-1].split(b"\n")
    for line in lines:
        if len(line) > MAX_PAYLOAD_LINE:
            raise SyncChannelError(
                f"The sync process on {where} sent an answer with a line of {len(line)} "
                f"bytes, more than the limit of {MAX_PAYLOAD_LINE} bytes per line."
            )
    try:
        head = json.loads(lines[0])
    except (ValueError, RecursionError):
        raise bad("its first line is not JSON") from None
    if not isinstance(head, dict) or not isinstance(head.get("lists"), dict):
        raise bad("no list of lists")
    counts = head.pop("lists")
    if not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in counts.items()):
        raise bad("bad list counts")
    total = sum(counts.values())
    if total > limits.max_entries:
        raise SyncChannelError(
            f"The sync process on {where} answered with {total} entries, more than the limit "
            f"of {limits.max_entries} (SyncService.max_scan_entries)."
        )
    result: dict[str, Any] = {name: [] for name in counts}
    for line in lines[1:]:
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            raise bad(f"not JSON: {line[:100]!r}") from None
        if (
            not isinstance(item, list)
            or len(item) != 2
            or item[0] not in counts
            or not isinstance(item[1], list)
        ):
            raise bad(f"not a part of a list: {line[:100]!r}")
        entries = result[item[0]]
        entries.extend(item[1])
        if len(entries) > counts[item[0]]:
            raise bad(f"more {item[0]} than it announced")
    for name, count in counts.items():
        if len(result[name]) != count:
            raise bad(f"fewer {name} than it announced")
    head.update(result)
    return head


class Reader(Protocol):
    async def read(self, n: int) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class SyncSession:
    """The client end of one sync process. Requests may be written while earlier answers are
    still being read (by one reader task), as long as both keep to the same order."""

    def __init__(
        self,
        reader: Reader,
        writer: Writer,
        close: Callable[[], Awaitable[None]],
        is_open: Callable[[], bool],
    ) -> None:
        self._reader = _BoundedReader(reader)
        self._writer = writer
        self._close = close
        self._is_open = is_open
        self.broken = False
        #: Who answers, for errors ("server 'gpu-box'"), and the bounds of its answers.
        self.where = "the server"
        self.limits = SyncLimits()
        #: What ``open`` answered: the tree's real path, and its identity (marker file).
        self.root = ""
        self.tree_id = ""
        #: The last scan the server sent: (its token, the scan's parameters, its files as
        #: checked), so the next answer can be only the changes since.
        self.last_scan: tuple[str, str, dict[str, Any]] = ("", "", {})
        #: What the last completed sync over this session compared (``engine.Compared``):
        #: the next one compares only the paths the journals say changed since.
        self.compared: Any = None
        #: This session's name to the Jupyter root's change journal (``SyncWatch.scan``).
        self.consumer = next(_CONSUMERS)
        #: An ``open`` not sent yet: it goes in front of the next request, in the same
        #: write, so that opening the tree costs no round trip of its own (``open_with_next``).
        self._pending_open = ""

    @classmethod
    async def over_ssh(
        cls, connection: asyncssh.SSHClientConnection, python: str = "python3"
    ) -> SyncSession:
        """Start the sync process on the server, on the shared SSH connection."""
        try:
            process = await connection.create_process(
                agent_command(SYNC_AGENT_SOURCE, python), encoding=None
            )
        except (asyncssh.Error, OSError) as e:
            raise SyncChannelError(f"Could not start file sync on the server: {e}") from e
        process.stdin.channel.set_write_buffer_limits(high=WRITE_BUFFER)
        process.stdin.write(SYNC_AGENT_SOURCE)

        async def close() -> None:
            with contextlib.suppress(asyncssh.Error, OSError):
                if not process.stdin.is_closing():
                    process.stdin.write_eof()
            process.close()
            with contextlib.suppress(asyncssh.Error, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(process.wait_closed(), 5)

        def is_open() -> bool:
            return process.exit_status is None and not process.channel.is_closing()

        return cls(process.stdout, process.stdin, close, is_open)

    @classmethod
    async def in_subprocess(cls, python: str = sys.executable) -> SyncSession:
        """The same sync process on this machine over pipes: a second tree with no SSH in
        between (tests of the engine; ``benchmarks/sync.py``)."""
        process = await asyncio.create_subprocess_exec(
            python,
            "-u",
            "-c",
            bootstrap(SYNC_AGENT_SOURCE),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(SYNC_AGENT_SOURCE)
        stdin = process.stdin

        async def close() -> None:
            with contextlib.suppress(OSError, RuntimeError):
                stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()

        return cls(process.stdout, stdin, close, lambda: process.returncode is None)

    @property
    def is_open(self) -> bool:
        return not self.broken and self._is_open()

    async def close(self) -> None:
        self.broken = True
        await self._close()

    # --- framing ----------------------------------------------------------------------------

    def send(self, message: dict[str, Any], payload: bytes = b"") -> None:
        self.send_raw(json.dumps(message, separators=(",", ":")).encode() + b"\n" + payload)

    def send_raw(self, data: bytes) -> None:
        try:
            self._writer.write(data)
        except (asyncssh.Error, OSError, ConnectionError, RuntimeError) as e:
            self.broken = True
            raise SyncChannelError(f"The connection to the server broke: {e}") from e

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (asyncssh.Error, OSError, ConnectionError) as e:
            self.broken = True
            raise SyncChannelError(f"The connection to the server broke: {e}") from e

    async def receive(self) -> dict[str, Any]:
        """The next message's line, as a dict."""
        try:
            line = await self._reader.readline(MAX_LINE)
        except _TooLong:
            self.broken = True
            raise SyncChannelError(
                f"The sync process on {self.where} sent a message line longer than the limit "
                f"of {MAX_LINE} bytes."
            ) from None
        except (asyncssh.Error, OSError, ConnectionError, ValueError) as e:
            self.broken = True
            raise SyncChannelError(f"The connection to {self.where} broke: {e}") from e
        if not line.endswith(b"\n"):
            self.broken = True
            raise SyncChannelError(f"The sync process on {self.where} ended unexpectedly.")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self.broken = True
            raise SyncChannelError(
                f"The sync process on {self.where} answered nonsense: {line[:200]!r}"
            )
        return message

    async def receive_payload(self, size: int) -> bytes:
        try:
            return await self._reader.readexactly(size)
        except (asyncssh.Error, OSError, ConnectionError, asyncio.IncompleteReadError) as e:
            self.broken = True
            raise SyncChannelError(f"The connection to the server broke: {e}") from e

    def size_of(
        self, message: dict[str, Any], limit: int, what: str = "a file", setting: str = ""
    ) -> int:
        size = message.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            self.broken = True
            raise SyncChannelError(f"The sync process on {self.where} sent a bad size: {size!r}")
        if size > limit:
            self.broken = True
            raise SyncChannelError(
                f"The sync process on {self.where} sent {what} of {size} bytes, more than the "
                f"limit of {limit} bytes{f' ({setting})' if setting else ''}."
            )
        return size

    # --- single requests (nothing else in flight) --------------------------------------------

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and read its answer (and its payload, as "payload": JSON lines,
        parsed on a thread, see ``parse_payload``). An ``open`` asked for by ``open_with_next``
        goes first, in the same write: the server answers both in order, one round trip."""
        root, self._pending_open = self._pending_open, ""
        if root:
            self.send(self._open_message(root))
        self.send(message)
        await self.drain()
        if root:
            try:
                self._opened(await self._answer({"op": "open"}))
            except SyncChannelError:
                # The answer to ``message`` is still on its way: the framing is lost.
                self.broken = True
                raise
        return await self._answer(message)

    async def _answer(self, message: dict[str, Any]) -> dict[str, Any]:
        answer = await self.receive()
        if "size" in answer:
            limit = self.limits.max_answer_bytes
            what = f"a {message.get('op')} answer"
            data = await self.receive_payload(
                self.size_of(answer, limit, what, "SyncService.max_answer_mb")
            )
            try:
                answer["payload"] = await asyncio.to_thread(
                    parse_payload, data, self.limits, self.where
                )
            except SyncChannelError:
                self.broken = True
                raise
        if not answer.get("ok"):
            raise SyncChannelError(
                f"The server could not {message.get('op')}: {answer.get('error') or 'no reason'}"
            )
        return answer

    async def open(self, root: str) -> None:
        """Open the server's tree now (a round trip of its own)."""
        self._pending_open = ""
        self._opened(await self.request(self._open_message(root)))

    def open_with_next(self, root: str) -> None:
        """Open the server's tree with the next request (a sync's scan): the same guarantees
        as ``open`` (the tree's real path and identity are checked before the next answer is
        used; a scan answered only as changes is refused if the tree is not the one scanned
        before, see ``_opened``), without waiting a round trip for it."""
        self._pending_open = root

    @staticmethod
    def _open_message(root: str) -> dict[str, Any]:
        return {"op": "open", "root": root, "marker": True}

    def _opened(self, answer: dict[str, Any]) -> None:
        real, tree_id = answer.get("root"), answer.get("tree_id")
        if not isinstance(real, str) or not real.startswith("/") or not isinstance(tree_id, str):
            raise SyncChannelError("The server's sync process did not say where its tree is.")
        if (real, tree_id) != (self.root, self.tree_id):
            # Another tree (or the first open): no scan of it is known here, so an answer of
            # only changes since one is refused (``scan.side_from_scan`` with no previous).
            self.last_scan = ("", "", {})
            self.compared = None
        self.root, self.tree_id = real, tree_id
