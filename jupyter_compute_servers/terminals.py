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
from collections.abc import Callable
from typing import Any

import asyncssh

from .errors import ComputeServersError, ConflictError, NotFoundError, ValidationError
from .images.runtime import container_for
from .manager import ComputeServerManager
from .models import State

TERMINAL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: How long a session keeps trying to reattach after its SSH connection dropped.
REATTACH_SECONDS = 60.0

log = logging.getLogger(__name__)


def check_terminal_name(name: Any) -> str:
    if not isinstance(name, str) or not TERMINAL_NAME.fullmatch(name):
        raise ValidationError(
            "A terminal name is 1-64 letters, digits, '-' or '_'.", field="terminal_name"
        )
    return name


class RemoteTerminals:
    """Creates, lists, ends and attaches to the terminals of compute servers."""

    def __init__(
        self,
        manager: ComputeServerManager,
        *,
        on_input: Callable[[int], None] | None = None,
    ) -> None:
        self.manager = manager
        #: Called with the server's id on every keystroke a user sends (idle shutdown).
        self.on_input = on_input

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
        cwd = body.get("cwd", "")
        if not isinstance(cwd, str) or cwd.startswith("/") or ".." in cwd.split("/"):
            raise ValidationError("cwd must be a path inside the server's workspace.", field="cwd")
        existing = {t["name"] for t in await self.list(server_id)}
        if "name" in body:
            name = check_terminal_name(body["name"])
            if name in existing:
                raise ConflictError(f"Terminal {name!r} exists on this server.", field="name")
        else:
            name = next(str(n) for n in range(1, len(existing) + 2) if str(n) not in existing)
        container = container_for(self.manager, self.manager.get_server(server_id))
        terminal = await self._call(
            server_id, "terminal_start", name=name, cwd=cwd, container=container, **size
        )
        self.manager.notify("terminals", server_id)
        return dict(terminal)

    async def list(self, server_id: int) -> list[dict[str, Any]]:
        """The server's terminals (none while it is not running)."""
        if self.manager.get_server(server_id).state is not State.RUNNING:
            return []
        return list((await self._call(server_id, "terminal_list"))["terminals"])

    async def delete(self, server_id: int, name: str) -> None:
        check_terminal_name(name)
        answer = await self._call(server_id, "terminal_kill", name=name)
        if not answer["killed"]:
            raise NotFoundError(f"No terminal {name!r} on this server.", field="terminal_name")
        self.manager.notify("terminals", server_id)

    async def connect_info(self, server_id: int, name: str) -> dict[str, Any]:
        answer = await self._call(server_id, "terminal_connect", name=check_terminal_name(name))
        if not answer["exists"]:
            raise NotFoundError(f"No terminal {name!r} on this server.", field="terminal_name")
        return dict(answer)


class TerminalSession:
    """One client's attachment to a remote terminal, speaking terminado's messages to it:
    ``["stdout", text]`` and ``["disconnect", 1]`` out; ``["stdin", text]`` and
    ``["set_size", rows, cols, ...]`` in."""

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
        self.offset = 0
        self._writer: asyncssh.SSHWriter[bytes] | None = None
        self._pending: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def receive(self, message: Any) -> None:
        """A message from the client: forwarded to the shell (queued while reattaching)."""
        if not isinstance(message, list) or not message:
            return
        if message[0] == "stdin" and len(message) >= 2 and isinstance(message[1], str):
            line = ["stdin", message[1]]
            if self.terminals.on_input is not None:
                self.terminals.on_input(self.server_id)
        elif (
            message[0] == "set_size"
            and len(message) >= 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in message[1:3])
        ):
            line = ["set_size", message[1], message[2]]
        else:
            return  # not a message a terminal takes
        data = (json.dumps(line) + "\n").encode()
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)
        elif len(self._pending) < 1000:
            self._pending.append(data)

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
            except (ComputeServersError, OSError, asyncssh.Error, ValueError) as e:
                server = None
                with contextlib.suppress(NotFoundError):
                    server = self.terminals.manager.get_server(self.server_id)
                if server is None or server.state is not State.RUNNING:
                    break  # the server stopped: so did its shells
                give_up_at = give_up_at or loop.time() + REATTACH_SECONDS
                if loop.time() > give_up_at:
                    log.warning("Terminal %s lost for good: %s", self.name, e)
                    break
                await asyncio.sleep(0.5)
        self._writer = None
        if not self.closed:
            self.send(["disconnect", 1])

    async def _attach_once(self) -> bool:
        """Attach and relay until the connection ends; answer whether the shell ended."""
        info = await self.terminals.connect_info(self.server_id, self.name)
        connection = await self.terminals.manager.connection(self.server_id)
        reader, writer = await connection.connection.open_connection("127.0.0.1", info["port"])
        try:
            hello = {"token": info["token"], "offset": self.offset}
            writer.write((json.dumps(hello) + "\n").encode())
            self._writer = writer
            for data in self._pending:
                writer.write(data)
            self._pending.clear()
            while True:
                line = await reader.readline()
                if not line:
                    return False  # the channel dropped: the shell lives on
                message = json.loads(line)
                if message[0] == "stdout":
                    self.offset = int(message[2])
                    if message[1]:
                        self.send(["stdout", message[1]])
                elif message[0] == "exit":
                    return True
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
