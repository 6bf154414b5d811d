"""The agents: programs sent to a server over SSH, each one stdlib-only file run by its python.

``rpc_agent.py`` is the RPC agent, one process per server connection that does every operation
on the server (info, kernels, terminals, processes, containers, metrics); ``AgentClient`` is our
end of its channel. ``sync_agent.py`` is file sync's own process (its client end is
``sync.transfer``). Each session sends only its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import shlex
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import asyncssh

from ..errors import CloudError

RPC_AGENT_SOURCE: bytes = files(__name__).joinpath("rpc_agent.py").read_bytes()
SYNC_AGENT_SOURCE: bytes = files(__name__).joinpath("sync_agent.py").read_bytes()
PROTOCOL = 1


def bootstrap(source: bytes) -> str:
    """Python code that reads exactly ``source`` from stdin and runs it; the rest of stdin is
    the protocol."""
    return (
        "import sys;"
        f"src=sys.stdin.buffer.read({len(source)});"
        "exec(compile(src,'jupyter_compute_servers_agent','exec'),"
        "{'__name__':'__main__','__agent_source__':src})"
    )


def agent_command(source: bytes, python: str = "python3", launcher: tuple[str, ...] = ()) -> str:
    """The command that runs the agent whose source is then written to its stdin, behind
    ``launcher`` (an argument vector, e.g. Slurm's ``srun --jobid=...``) if one is given."""
    prefix = "".join(f"{shlex.quote(arg)} " for arg in launcher)
    return f"{prefix}{shlex.quote(python)} -u -c {shlex.quote(bootstrap(source))}"


class AgentError(CloudError):
    """The agent on the server answered with an error, or its channel broke."""


class AgentChannelError(AgentError):
    """The agent's channel is closed or broke (the SSH connection dropped): no answer will
    come, whatever was asked."""


class AgentClient:
    """Calls into the agent on one server. Calls are answered in order; many may be in flight."""

    def __init__(self, process: asyncssh.SSHClientProcess[str]) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._progress: dict[int, Callable[[str], None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self.hello: dict[str, Any] = {}

    @classmethod
    async def start(
        cls,
        connection: asyncssh.SSHClientConnection,
        python: str = "python3",
        launcher: tuple[str, ...] = (),
    ) -> AgentClient:
        process = await connection.create_process(
            agent_command(RPC_AGENT_SOURCE, python, launcher), encoding="utf-8", errors="strict"
        )
        process.stdin.write(RPC_AGENT_SOURCE.decode())
        client = cls(process)
        line = await process.stdout.readline()
        try:
            hello = json.loads(line)
        except json.JSONDecodeError:
            stderr = ""
            with contextlib.suppress(asyncio.TimeoutError, asyncssh.Error):
                stderr = await asyncio.wait_for(process.stderr.read(4096), 2)
            process.close()
            raise AgentError(
                f"The agent did not start on the server (is python3 installed there?): "
                f"{(line or stderr).strip()[:500]}"
            ) from None
        if hello.get("protocol") != PROTOCOL:
            process.close()
            raise AgentError(f"The agent speaks protocol {hello.get('protocol')}, not {PROTOCOL}.")
        client.hello = hello
        client._reader = asyncio.create_task(client._read_answers())
        return client

    @property
    def is_open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def call(
        self,
        method: str,
        timeout: float = 60,
        progress: Callable[[str], None] | None = None,
        **params: Any,
    ) -> Any:
        """Call a method; ``progress`` receives the lines a long one reports meanwhile."""
        if not self.is_open:
            raise AgentChannelError("The agent channel is closed.")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if progress is not None:
            self._progress[request_id] = progress
        try:
            async with self._write_lock:
                self._process.stdin.write(
                    json.dumps({"id": request_id, "method": method, "params": params}) + "\n"
                )
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)
            self._progress.pop(request_id, None)

    async def _read_answers(self) -> None:
        error: BaseException = AgentChannelError("The agent channel closed.")
        try:
            async for line in self._process.stdout:
                answer = json.loads(line)
                if "progress" in answer:
                    report = self._progress.get(answer.get("id"))
                    if report is not None:
                        try:
                            report(str(answer["progress"]))
                        except Exception:  # a display problem must not break the channel
                            logging.getLogger(__name__).exception("Progress callback failed")
                    continue
                future = self._pending.get(answer.get("id"))
                if future is None or future.done():
                    continue
                if "error" in answer:
                    err = answer["error"]
                    future.set_exception(AgentError(f"{err['type']}: {err['message']}"))
                else:
                    future.set_result(answer.get("result"))
        except (asyncssh.Error, OSError, json.JSONDecodeError) as e:
            error = AgentChannelError(f"The agent channel broke: {e}")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)

    async def close(self) -> None:
        if not self._process.stdin.is_closing():
            self._process.stdin.write_eof()
        self._process.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
