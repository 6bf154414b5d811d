"""The two agents sent to a server: each one file of the standard library only, and each session
sends its own file and nothing of the other's."""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jupyter_compute_servers import agent
from jupyter_compute_servers.agent import PROTOCOL, RPC_AGENT_SOURCE, SYNC_AGENT_SOURCE
from jupyter_compute_servers.sync.transfer import SyncSession

#: Optional imports an agent may try (guarded by ``except ImportError``), by file.
OPTIONAL = {"rpc_agent.py": {"pynvml"}, "sync_agent.py": set()}


def _top_level_names(source: bytes) -> set[str]:
    """The functions and classes an agent file defines at its top level."""
    return {
        node.name
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def _guarded_imports(tree: ast.AST) -> set[ast.AST]:
    """Import statements in the body of a ``try`` that catches ImportError."""
    guarded: set[ast.AST] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            for statement in node.body:
                guarded |= {n for n in ast.walk(statement) if isinstance(n, ast.Import)}
    return guarded


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_each_agent_imports_only_the_standard_library(name):
    path = Path(agent.__file__).parent / name
    tree = ast.parse(path.read_bytes(), filename=str(path))
    guarded = _guarded_imports(tree)
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [(alias.name.split(".")[0], node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name} imports relatively: it runs alone on the server"
            assert node.module is not None
            imported.append((node.module.split(".")[0], node))
    assert imported
    for module, node in imported:
        if module in sys.stdlib_module_names:
            continue
        assert module in OPTIONAL[name], f"{name} imports {module}, not in the standard library"
        assert node in guarded, f"{name} needs {module}: its import must be optional"


def test_the_agents_share_no_code():
    rpc, sync = _top_level_names(RPC_AGENT_SOURCE), _top_level_names(SYNC_AGENT_SOURCE)
    assert {"serve", "kernel_launch", "terminal_start", "metrics", "container_pull"} <= rpc
    assert {"sync_session", "SyncTree", "SyncExcludes", "sync_parts"} <= sync
    assert not rpc & sync


class _Stdin:
    def __init__(self) -> None:
        self.written: list[str | bytes] = []
        self.channel = SimpleNamespace(set_write_buffer_limits=lambda **kwargs: None)
        self._closing = False

    def write(self, data: str | bytes) -> None:
        self.written.append(data)

    def write_eof(self) -> None:
        self._closing = True

    def is_closing(self) -> bool:
        return self._closing


class _Stdout:
    """Says hello as the RPC agent does, then nothing more."""

    def __init__(self) -> None:
        self._hello = json.dumps({"agent": "jupyter-compute-servers", "protocol": PROTOCOL})

    async def readline(self) -> str:
        return self._hello + "\n"

    def __aiter__(self) -> _Stdout:
        return self

    async def __anext__(self) -> str:
        await asyncio.Event().wait()  # until the reader is cancelled
        raise StopAsyncIteration


class _Process:
    exit_status = None

    def __init__(self, command: str) -> None:
        self.command = command
        self.stdin = _Stdin()
        self.stdout = _Stdout()
        self.channel = SimpleNamespace(is_closing=lambda: False)

    def sent(self) -> bytes:
        """Everything that reached the server: the command line and what was written."""
        data = [d.encode() if isinstance(d, str) else d for d in self.stdin.written]
        return self.command.encode() + b"\n" + b"".join(data)

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class _Connection:
    def __init__(self) -> None:
        self.processes: list[_Process] = []

    async def create_process(self, command: str, **kwargs: Any) -> _Process:
        self.processes.append(_Process(command))
        return self.processes[-1]


def _assert_sends_only(sent: bytes, own: bytes, other: bytes) -> None:
    assert own in sent
    assert sent.count(b"def ") == own.count(b"def ")
    for name in _top_level_names(other):
        assert f"def {name}(".encode() not in sent
        assert f"class {name}".encode() not in sent


async def test_a_sync_session_sends_only_the_sync_agent():
    connection = _Connection()
    session = await SyncSession.over_ssh(connection)  # type: ignore[arg-type]
    await session.close()
    (process,) = connection.processes
    _assert_sends_only(process.sent(), SYNC_AGENT_SOURCE, RPC_AGENT_SOURCE)


async def test_the_agent_channel_sends_only_the_rpc_agent():
    connection = _Connection()
    client = await agent.AgentClient.start(connection)  # type: ignore[arg-type]
    await client.close()
    (process,) = connection.processes
    _assert_sends_only(process.sent(), RPC_AGENT_SOURCE, SYNC_AGENT_SOURCE)
