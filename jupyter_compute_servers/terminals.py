"""Terminals on compute servers: shells that live on the server, watched from the Lab.

The agent starts each shell on a PTY held by a host process on the server (see the terminals
section of ``agent/rpc_agent.py``), detached, so it survives the SSH connection and the browser.
A ``TerminalSession`` is one browser tab's view of it: it attaches over the server's shared
SSH connection and, when that drops, attaches again and resumes from the last byte it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncssh

from .agent import AgentError
from .errors import (
    CloudError,
    ComputeServersError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from .images.runtime import container_for
from .manager import ComputeServerManager
from .models import State
from .tunnel import open_stream, route_of

TERMINAL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: How long a session keeps trying to reattach after its SSH connection dropped.
REATTACH_SECONDS = 60.0
#: The longest ``cwd`` a terminal may be started in (characters), and one of its parts (bytes).
MAX_CWD_CHARS = 1024
MAX_CWD_PART_BYTES = 255
#: The longest line the terminal host on a server may send us; one longer is not our protocol.
#: (The host sends at most 64 KiB of output per line, and 256 KiB of scrollback on attaching,
#: each at most six times longer as JSON.)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Keystrokes go to the host in lines of at most this many characters (a paste is split).
STDIN_CHUNK_CHARS = 16 * 1024
#: What a session keeps of the user's input while it is reattaching (bytes); more is dropped.
MAX_PENDING_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


def check_terminal_name(name: Any, field: str = "terminal_name") -> str:
    if not isinstance(name, str) or not TERMINAL_NAME.fullmatch(name):
        raise ValidationError("A terminal name is 1-64 letters, digits, '-' or '_'.", field=field)
    return name


def check_cwd(cwd: Any) -> str:
    """A terminal's working directory: a relative path inside the server's workspace."""
    if not isinstance(cwd, str):
        raise ValidationError("cwd must be a string.", field="cwd")
    if len(cwd) > MAX_CWD_CHARS:
        raise ValidationError(
            f"cwd is {len(cwd)} characters long; at most {MAX_CWD_CHARS} are allowed.",
            field="cwd",
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in cwd):
        raise ValidationError(
            "cwd must not contain NUL, newlines or other control characters.", field="cwd"
        )
    parts = cwd.split("/")
    if cwd.startswith("/") or ".." in parts:
        raise ValidationError("cwd must be a path inside the server's workspace.", field="cwd")
    if any(len(part.encode()) > MAX_CWD_PART_BYTES for part in parts):
        raise ValidationError(
            f"Each part of cwd may be at most {MAX_CWD_PART_BYTES} bytes long.", field="cwd"
        )
    return cwd


class TerminalProtocolError(Exception):
    """The terminal host on the server sent something that is not our protocol."""


def _answer(answer: Any, method: str, **expected: type | tuple[type, ...]) -> dict[str, Any]:
    """An agent's answer about terminals, checked: a server's answer is not trusted."""
    if not isinstance(answer, dict) or not all(
        isinstance(answer.get(key), kind) for key, kind in expected.items()
    ):
        raise CloudError(f"The server answered {method} with something malformed.")
    return answer


class RemoteTerminals:
    """Creates, lists, ends and attaches to the terminals of compute servers."""

    def __init__(
        self,
        manager: ComputeServerManager,
        *,
        on_input: Callable[[int], None] | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        max_terminals: int = 0,
    ) -> None:
        self.manager = manager
        #: The most terminals one server may have open (0: no limit).
        self.max_terminals = max_terminals
        #: Called with the server's id on every keystroke a user sends (idle shutdown).
        self.on_input = on_input
        #: The longest line a server's terminal host may send (a longer one closes it).
        self.max_message_bytes = max_message_bytes

    async def _call(self, server_id: int, method: str, **params: Any) -> Any:
        agent = await self.manager.agent_for(server_id, "start it to use terminals.")
        endpoint = agent.endpoint
        return await agent.call(
            method, runtime_dir=endpoint.runtime_dir, workspace=endpoint.workspace, **params
        )

    async def create(self, server_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """Start a shell in the server's workspace (or ``cwd`` below it)."""
        unknown = set(body) - {"name", "cwd", "rows", "cols"}
        if unknown:
            field = sorted(unknown)[0]
            raise ValidationError(f"Unknown field {field!r}.", field=field)
        size = {}
        for field in ("rows", "cols"):
            if field in body:
                value = body[field]
                if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1000:
                    raise ValidationError(f"{field} must be an integer 1-1000.", field=field)
                size[field] = value
        cwd = check_cwd(body.get("cwd", ""))
        if "name" in body:
            check_terminal_name(body["name"], field="name")
        existing = {t["name"] for t in await self.list(server_id)}
        if self.max_terminals and len(existing) >= self.max_terminals:
            raise ConflictError(
                f"This server has {len(existing)} terminals open, the most allowed "
                "(c.ComputeServersApp.max_terminals_per_server); close one first."
            )
        if "name" in body:
            name = body["name"]
            if name in existing:
                raise ConflictError(f"Terminal {name!r} exists on this server.", field="name")
        else:
            name = next(str(n) for n in range(1, len(existing) + 2) if str(n) not in existing)
        server = self.manager.get_server(server_id)
        # A server whose workspace is only mounted opens its shells in the mounted tree (``cwd``
        # is relative to the workspace, where the mount point is, so it is taken as given).
        if not cwd and not server.workspace.syncs:
            cwd = await self.manager.working_directory(server_id, "") or ""
        container = container_for(self.manager, server)
        try:
            terminal = await self._call(
                server_id, "terminal_start", name=name, cwd=cwd, container=container, **size
            )
        except AgentError as e:
            # The directory exists on the server as a file, or leads out by a link.
            if e.message.startswith("WorkingDirectoryError:"):
                reason = e.message.split(":", 1)[1].strip()
                raise ValidationError(f"cwd: {reason}", field="cwd") from None
            raise
        self.manager.notify("terminals", server_id)
        return dict(_answer(terminal, "terminal_start", name=str))

    async def list(self, server_id: int) -> list[dict[str, Any]]:
        """The server's terminals (none while it is not running)."""
        if self.manager.get_server(server_id).state is not State.RUNNING:
            return []
        answer = _answer(
            await self._call(server_id, "terminal_list"), "terminal_list", terminals=list
        )
        terminals = answer["terminals"]
        for terminal in terminals:
            _answer(terminal, "terminal_list", name=str)
        return list(terminals)

    async def delete(self, server_id: int, name: str) -> None:
        check_terminal_name(name)
        answer = _answer(
            await self._call(server_id, "terminal_kill", name=name), "terminal_kill", killed=bool
        )
        if not answer["killed"]:
            raise NotFoundError(f"No terminal {name!r} on this server.", field="terminal_name")
        self.manager.notify("terminals", server_id)

    async def connect_info(self, server_id: int, name: str) -> dict[str, Any]:
        answer = _answer(
            await self._call(server_id, "terminal_connect", name=check_terminal_name(name)),
            "terminal_connect",
            exists=bool,
        )
        if not answer["exists"]:
            raise NotFoundError(f"No terminal {name!r} on this server.", field="terminal_name")
        port, token = answer.get("port"), answer.get("token")
        if (
            not isinstance(port, int)
            or isinstance(port, bool)
            or not 0 < port < 65536
            or not isinstance(token, str)
        ):
            raise CloudError("The server answered terminal_connect with something malformed.")
        return dict(answer)


class TerminalSession:
    """One client's attachment to a remote terminal, speaking terminado's messages to it:
    ``["stdout", text]`` and ``["disconnect", 1]`` out; ``["stdin", text]`` and
    ``["set_size", rows, cols, ...]`` in.

    What the terminal host on the server sends is checked: a line that is not our protocol (or
    one longer than the terminals' ``max_message_bytes``) closes the terminal for this client,
    with a message it sees (``close_reason``), never a relay that silently stops."""

    def __init__(
        self,
        terminals: RemoteTerminals,
        server_id: int,
        name: str,
        send: Callable[[list[Any]], None],
    ) -> None:
        self.terminals = terminals
        self.server_id = server_id
        self.name = name
        self.send = send
        self.max_message_bytes = terminals.max_message_bytes
        self.offset = 0
        self._writer: asyncssh.SSHWriter[bytes] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        #: Why the terminal was closed on the client, when it was not the shell ending.
        self.close_reason: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def receive(self, message: Any) -> None:
        """A message from the client: forwarded to the shell (queued while reattaching)."""
        if not isinstance(message, list) or not message:
            return
        if message[0] == "stdin" and len(message) >= 2 and isinstance(message[1], str):
            text = message[1]
            lines = [
                ["stdin", text[i : i + STDIN_CHUNK_CHARS]]
                for i in range(0, len(text), STDIN_CHUNK_CHARS)
            ]
            if self.terminals.on_input is not None:
                self.terminals.on_input(self.server_id)
        elif (
            message[0] == "set_size"
            and len(message) >= 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in message[1:3])
        ):
            lines = [["set_size", min(max(message[1], 1), 1000), min(max(message[2], 1), 1000)]]
        else:
            return  # not a message a terminal takes
        for line in lines:
            data = (json.dumps(line) + "\n").encode()
            if self._writer is not None and not self._writer.is_closing():
                self._writer.write(data)
            elif self._pending_bytes + len(data) <= MAX_PENDING_BYTES:
                self._pending.append(data)
                self._pending_bytes += len(data)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        give_up_at: float | None = None
        while not self.closed:
            try:
                if await self._attach_once():
                    break  # the shell ended
                give_up_at = None
            except NotFoundError:
                break  # ended while we were away
            except asyncio.CancelledError:
                raise
            except TerminalProtocolError as e:
                # A server that speaks something else is not retried: it would do it again.
                log.warning("Terminal %s of server %s closed: %s", self.name, self.server_id, e)
                self.close_reason = f"the server sent {e}"
                break
            except (ComputeServersError, OSError, asyncssh.Error, ValueError, EOFError) as e:
                server = None
                with contextlib.suppress(NotFoundError):
                    server = self.terminals.manager.get_server(self.server_id)
                if server is None or server.state is not State.RUNNING:
                    break  # the server stopped: so did its shells
                give_up_at = give_up_at or loop.time() + REATTACH_SECONDS
                if loop.time() > give_up_at:
                    log.warning("Terminal %s lost for good: %s", self.name, e)
                    self.close_reason = f"the terminal could not be reached: {e}"
                    break
                await asyncio.sleep(0.5)
            except Exception as e:  # never a relay that dies without telling the client
                log.exception("Terminal %s of server %s failed", self.name, self.server_id)
                self.close_reason = f"the terminal failed: {type(e).__name__}: {e}"
                break
        self._writer = None
        if not self.closed:
            if self.close_reason is not None:
                self.send(["stdout", f"\r\n[Terminal closed: {self.close_reason}]\r\n"])
            self.send(["disconnect", 1])

    async def _lines(self, reader: asyncssh.SSHReader[bytes]) -> AsyncIterator[bytes]:
        """The host's lines, each at most ``max_message_bytes`` long."""
        buffer = bytearray()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return  # the channel dropped (a partial line is lost with it)
            buffer += chunk
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                if end > self.max_message_bytes:
                    break
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                yield line
            if len(buffer) > self.max_message_bytes:
                raise TerminalProtocolError(
                    f"a message longer than the limit of {self.max_message_bytes} bytes"
                )

    def _relay(self, line: bytes) -> bool:
        """Pass one of the host's messages on; answer whether the shell ended."""
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, ValueError):
            raise TerminalProtocolError(f"a line that is not JSON: {line[:60]!r}") from None
        if isinstance(message, list) and message and message[0] == "exit":
            return True
        if (
            isinstance(message, list)
            and len(message) >= 3
            and message[0] == "stdout"
            and isinstance(message[1], str)
            and isinstance(message[2], int)
            and not isinstance(message[2], bool)
            and message[2] >= 0
        ):
            self.offset = message[2]
            if message[1]:
                self.send(["stdout", message[1]])
            return False
        raise TerminalProtocolError(f"a malformed message: {json.dumps(message)[:60]}")

    async def _attach_once(self) -> bool:
        """Attach and relay until the connection ends; answer whether the shell ended."""
        info = await self.terminals.connect_info(self.server_id, self.name)
        connection = await self.terminals.manager.connection(self.server_id)
        reader, writer = await open_stream(
            connection.connection, route_of(connection.endpoint), int(info["port"])
        )
        try:
            hello = {"token": info["token"], "offset": self.offset}
            writer.write((json.dumps(hello) + "\n").encode())
            self._writer = writer
            for data in self._pending:
                writer.write(data)
            self._pending.clear()
            self._pending_bytes = 0
            async for line in self._lines(reader):
                if self._relay(line):
                    return True
            return False  # the channel dropped: the shell lives on
        finally:
            self._writer = None
            writer.close()

    async def close(self) -> None:
        """The client went away; the shell stays (a reload attaches again)."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
