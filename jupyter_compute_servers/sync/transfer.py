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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncssh

from ..agent import SYNC_AGENT_SOURCE, agent_command, bootstrap
from ..errors import CloudError

#: Answers larger than this (a scan of millions of files) are refused.
MAX_ANSWER = 1 << 30
#: The SSH channel's write buffer: how much is queued before writes wait for the network.
WRITE_BUFFER = 4 << 20


class SyncChannelError(CloudError):
    """The channel to the server's sync process broke, or it answered nonsense."""


class Reader(Protocol):
    async def readline(self) -> bytes: ...

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
        self._reader = reader
        self._writer = writer
        self._close = close
        self._is_open = is_open
        self.broken = False
        #: What ``open`` answered: the tree's real path, and its identity (marker file).
        self.root = ""
        self.tree_id = ""
        #: The last scan the server sent: (its token, the scan's parameters, its files as
        #: checked), so the next answer can be only the changes since.
        self.last_scan: tuple[str, str, dict[str, Any]] = ("", "", {})

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
            line = await self._reader.readline()
        except (asyncssh.Error, OSError, ConnectionError, ValueError) as e:
            self.broken = True
            raise SyncChannelError(f"The connection to the server broke: {e}") from e
        if not line.endswith(b"\n"):
            self.broken = True
            raise SyncChannelError("The server's sync process ended unexpectedly.")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.broken = True
            raise SyncChannelError(f"The server's sync process answered nonsense: {line[:200]!r}")
        return message

    async def receive_payload(self, size: int) -> bytes:
        try:
            return await self._reader.readexactly(size)
        except (asyncssh.Error, OSError, ConnectionError, asyncio.IncompleteReadError) as e:
            self.broken = True
            raise SyncChannelError(f"The connection to the server broke: {e}") from e

    @staticmethod
    def size_of(message: dict[str, Any], limit: int = MAX_ANSWER) -> int:
        size = message.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= limit:
            raise SyncChannelError(f"The server's sync process sent a bad size: {size!r}")
        return size

    # --- single requests (nothing else in flight) --------------------------------------------

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and read its answer (and its JSON payload, as "payload")."""
        self.send(message)
        await self.drain()
        answer = await self.receive()
        if "size" in answer:
            data = await self.receive_payload(self.size_of(answer))
            try:
                answer["payload"] = json.loads(data)
            except ValueError:
                self.broken = True
                raise SyncChannelError("The server's sync process sent a bad answer.") from None
        if not answer.get("ok"):
            raise SyncChannelError(
                f"The server could not {message.get('op')}: {answer.get('error') or 'no reason'}"
            )
        return answer

    async def open(self, root: str) -> None:
        answer = await self.request({"op": "open", "root": root, "marker": True})
        real, tree_id = answer.get("root"), answer.get("tree_id")
        if not isinstance(real, str) or not real.startswith("/") or not isinstance(tree_id, str):
            raise SyncChannelError("The server's sync process did not say where its tree is.")
        if (real, tree_id) != (self.root, self.tree_id):
            self.last_scan = ("", "", {})
        self.root, self.tree_id = real, tree_id
