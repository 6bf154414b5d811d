"""Remote kernels come back after a kill -9 of Jupyter: the next Jupyter started with the same
store adopts them with their ids, the notebook's session still names its kernel, its state is
intact, and what the kernel printed while no Jupyter was there reaches the reconnected
notebook, once and in order."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from .jupyter_process import TOKEN, JupyterProcess
from .kernel_helpers import wait_until

LINES = 40
#: What a Jupyter logs once it has looked for orphan kernels to adopt.
ADOPTION_DONE = "Compute servers: adoption of orphan kernels done"


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    return data, root


class Notebook:
    """A notebook's connection to its kernel, as the Lab makes it: the kernel's websocket
    with the session id of the client."""

    def __init__(self, jupyter: JupyterProcess, kernel_id: str, client_id: str) -> None:
        self.jupyter = jupyter
        self.kernel_id = kernel_id
        self.session = Session(session=client_id, username="test")
        self.ws: WebSocketClientConnection | None = None

    async def connect(self) -> None:
        url = (
            f"ws://127.0.0.1:{self.jupyter.port}/api/kernels/{self.kernel_id}/channels"
            f"?session_id={self.session.session}"
        )
        request = HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"})
        self.ws = await websocket_connect(request)

    async def send_execute(self, code: str) -> str:
        message = self.session.msg(
            "execute_request",
            content={"code": code, "silent": False, "store_history": True},
        )
        message["channel"] = "shell"
        assert self.ws is not None
        await self.ws.write_message(json.dumps(message, default=json_default))
        return str(message["header"]["msg_id"])

    async def receive(self, timeout: float = 60) -> dict[str, Any] | None:
        assert self.ws is not None
        raw = await asyncio.wait_for(self.ws.read_message(), timeout)
        return None if raw is None else json.loads(raw)

    async def outputs_until_idle(self, msg_id: str, texts: list[str], stop_at: str = "") -> bool:
        """Collect the cell's stdout into ``texts`` until the kernel is idle after it (True)
        or the line ``stop_at`` was printed (False). A line may come in two stream messages
        (ipykernel sends what it has every 0.2 s, which may fall between a print's text and its
        newline): ``lines(texts)`` gives the lines."""
        while True:
            message = await self.receive()
            assert message is not None, "the websocket closed"
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "stream":
                texts.append(message["content"]["text"])
                if stop_at and f"{stop_at}\n" in "".join(texts):
                    return False
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                return True
            elif kind == "error":
                raise AssertionError(message["content"])

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


def lines(texts: list[str]) -> list[str]:
    return "".join(texts).splitlines()


def wait_running(jupyter: JupyterProcess, server_id: int) -> None:
    assert jupyter.call("POST", f"servers/{server_id}/actions/start")[0] == 202
    assert jupyter.wait_settled(server_id, timeout=60)["state"] == "running"


@pytest.mark.parametrize("leave", ["kill -9", "clean stop, kernels left running"])
async def test_kernel_and_its_output_survive_jupyter(dirs: tuple[Path, Path], leave: str) -> None:
    data_dir, root_dir = dirs
    (root_dir / "nb.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    options = ["--ComputeServersApp.shutdown_kernels_on_exit=False"]
    jupyter = JupyterProcess(data_dir, root_dir, *options)
    server_id = 0
    try:
        _, server = jupyter.call("POST", "servers", {"name": "keeper"})
        server_id = server["id"]  # type: ignore[index]
        wait_running(jupyter, server_id)
        code, session = jupyter.request(
            "POST",
            "api/sessions",
            {
                "path": "nb.ipynb",
                "name": "nb.ipynb",
                "type": "notebook",
                "kernel": {"name": f"compute-{server_id}-python3"},
            },
        )
        assert code == 201, session
        kernel_id = session["kernel"]["id"]  # type: ignore[index]
        client_id = str(uuid.uuid4())
        notebook = Notebook(jupyter, kernel_id, client_id)
        await notebook.connect()
        await notebook.outputs_until_idle(await notebook.send_execute("x = 42"), [])
        # A cell that prints a counter for a while: Jupyter goes away in the middle.
        cell = await notebook.send_execute(
            f"import time\nfor i in range({LINES}):\n"
            "    print(f'line {i}', flush=True)\n    time.sleep(0.1)"
        )
        seen: list[str] = []
        assert not await notebook.outputs_until_idle(cell, seen, stop_at="line 5")
        if leave == "kill -9":
            jupyter.kill()
        else:
            jupyter.stop()
        notebook.close()
        await asyncio.sleep(1)  # the kernel prints on with no Jupyter there

        jupyter = JupyterProcess(data_dir, root_dir, *options)
        # The kernel is back under its own id, and the notebook's session still names it.
        deadline = time.monotonic() + 30
        while True:
            code, kernels = jupyter.request("GET", "api/kernels")
            if code == 200 and any(k["id"] == kernel_id for k in kernels):  # type: ignore[union-attr]
                break
            assert time.monotonic() < deadline, kernels
            await asyncio.sleep(0.1)
        _, sessions = jupyter.request("GET", "api/sessions")
        assert [s["kernel"]["id"] for s in sessions] == [kernel_id]  # type: ignore[union-attr]
        _, listed = jupyter.call("GET", f"servers/{server_id}/kernels")
        found = [(k["kernel_id"], k["attached"]) for k in listed["kernels"]]  # type: ignore[index]
        assert found == [(kernel_id, True)]

        notebook = Notebook(jupyter, kernel_id, client_id)
        await notebook.connect()
        assert await notebook.outputs_until_idle(cell, seen)
        # Every line once, in order: what was printed while no Jupyter was there included.
        assert lines(seen) == [f"line {i}" for i in range(LINES)]
        # Its state is intact.
        printed: list[str] = []
        await notebook.outputs_until_idle(await notebook.send_execute("print(x)"), printed)
        assert lines(printed) == ["42"]
        notebook.close()
        # Jupyter shows it idle once more.
        deadline = time.monotonic() + 30
        while True:
            _, model = jupyter.request("GET", f"api/kernels/{kernel_id}")
            if model["execution_state"] == "idle":  # type: ignore[index]
                break
            assert time.monotonic() < deadline, model
            await asyncio.sleep(0.1)
        assert jupyter.request("DELETE", f"api/sessions/{sessions[0]['id']}")[0] == 204  # type: ignore[index]
    finally:
        if jupyter.process.poll() is None:
            if server_id:
                jupyter.call("POST", f"servers/{server_id}/actions/stop")
                jupyter.wait_settled(server_id)
            jupyter.stop()


async def test_kernels_of_a_live_jupyter_are_not_adopted(dirs: tuple[Path, Path]) -> None:
    """A second Jupyter on the same store leaves the first one's kernels alone."""
    data_dir, root_dir = dirs
    first = JupyterProcess(data_dir, root_dir)
    second = None
    server_id = 0
    try:
        _, server = first.call("POST", "servers", {"name": "shared"})
        server_id = server["id"]  # type: ignore[index]
        wait_running(first, server_id)
        (root_dir / "nb.ipynb").write_text(
            json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
        )
        code, session = first.request(
            "POST",
            "api/sessions",
            {
                "path": "nb.ipynb",
                "type": "notebook",
                "kernel": {"name": f"compute-{server_id}-python3"},
            },
        )
        assert code == 201, session
        kernel = session["kernel"]  # type: ignore[index]
        log = data_dir / "jupyter.log"  # both write here: the second says so once it is done
        second = JupyterProcess(data_dir, root_dir)
        await wait_until(lambda: log.read_text().count(ADOPTION_DONE) >= 2, timeout=60)
        _, kernels = second.request("GET", "api/kernels")
        assert kernels == []
        # The second keeps its sessions apart: the first's are neither listed nor deleted.
        assert second.request("GET", "api/sessions") == (200, [])
        _, sessions = first.request("GET", "api/sessions")
        assert [s["id"] for s in sessions] == [session["id"]]  # type: ignore[index]
        _, listed = second.call("GET", f"servers/{server_id}/kernels")
        found = [(k["kernel_id"], k["attached"]) for k in listed["kernels"]]  # type: ignore[index]
        assert found == [(kernel["id"], False)]  # type: ignore[index]
    finally:
        if second is not None:
            second.stop()
        if server_id:
            first.call("POST", f"servers/{server_id}/actions/stop")
            first.wait_settled(server_id)
        first.stop()
