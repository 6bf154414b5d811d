"""What needs Jupyter's ``execute`` permission on compute servers: whatever runs code on a
server or writes into the Jupyter root on its behalf. Each such endpoint answers 403 to a user
who may only read and write, with a synchronous and with an asynchronous authorizer (an
authorizer's ``is_authorized`` may be a coroutine), and nothing starts."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_compute_servers.handlers.base import AUTH_RESOURCE

from .conftest import RecordingAuthorizer
from .test_terminals import open_screen, running_server

EXECUTE = ("execute", AUTH_RESOURCE)


class AsyncRecordingAuthorizer(RecordingAuthorizer):
    """The same answers, from a coroutine (as an authorizer that asks a service gives them)."""

    async def is_authorized(  # type: ignore[override]
        self, handler: Any, user: Any, action: str, resource: str
    ) -> bool:
        return super().is_authorized(handler, user, action, resource)


@pytest.fixture(params=["sync", "async"])
def authorizer(request) -> type[RecordingAuthorizer]:
    cls = RecordingAuthorizer if request.param == "sync" else AsyncRecordingAuthorizer
    # The class attributes live on RecordingAuthorizer: both classes share them.
    RecordingAuthorizer.asked = []
    RecordingAuthorizer.denied = set()
    return cls


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], tmp_path: Path, monkeypatch):
    # An empty home: no known_hosts or ssh config of the machine's user is read.
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "ssh"]
    return config


async def test_terminals_need_execute(api, authorizer, wait_for_state, jp_ws_fetch, jp_serverapp):
    server = await running_server(api, wait_for_state)
    base = f"servers/{server['id']}/terminals"
    code, _ = await api("POST", base, {"name": "mine"})
    assert code == 201
    authorizer.denied = {EXECUTE}
    with pytest.raises(HTTPClientError) as refused:
        await open_screen(jp_ws_fetch, server["id"], "mine")
    assert refused.value.code == 403
    code, error = await api("POST", base, {"name": "other"})
    assert code == 403, error
    code, _ = await api("DELETE", f"{base}/mine")
    assert code == 403
    code, _ = await api("GET", f"servers/{server['id']}/ssh-access")
    assert code == 403
    # Reading is still allowed, and shows that nothing started or ended.
    code, listed = await api("GET", base)
    assert code == 200 and [t["name"] for t in listed["terminals"]] == ["mine"]
    assert authorizer.asked.count(EXECUTE) >= 4
    authorizer.denied = set()
    code, _ = await api("DELETE", f"{base}/mine")
    assert code == 204


async def test_kernels_sync_and_a_hosts_python_need_execute(api, authorizer, jp_serverapp):
    code, server = await api("POST", "servers", {"name": "box"})
    assert code == 201
    authorizer.denied = {EXECUTE}
    code, _ = await api("DELETE", f"servers/{server['id']}/kernels/k1")
    assert code == 403
    code, _ = await api("POST", f"servers/{server['id']}/sync", {"direction": "pull"})
    assert code == 403
    code, syncs = await api("GET", f"servers/{server['id']}/syncs")
    assert code == 200 and syncs["syncs"] == [] and syncs["running"] is None

    # Sync writes into the Jupyter root: it needs contents' write permission too.
    authorizer.denied = {("write", "contents")}
    code, _ = await api("POST", f"servers/{server['id']}/sync", {"direction": "pull"})
    assert code == 403
    authorizer.denied = set()
    code, error = await api("POST", f"servers/{server['id']}/sync", {"direction": "pull"})
    assert code == 409, error  # allowed now; refused only because the server is not running
    assert ("write", "contents") in authorizer.asked

    # A host's python is what runs there: choosing it is running code.
    authorizer.denied = {EXECUTE}
    body = {"name": "lab", "hostname": "127.0.0.1", "port": 9, "username": "me"}
    code, _ = await api("POST", "hosts", {**body, "python": "/bin/sh"})
    assert code == 403
    code, hosts = await api("GET", "hosts")
    assert code == 200 and hosts["hosts"] == []
    code, host = await api("POST", "hosts", body)  # without python: write is enough
    assert code == 201, host
    code, _ = await api("PATCH", f"hosts/{host['id']}", {"python": "/bin/sh"})
    assert code == 403
    code, _ = await api("PATCH", f"hosts/{host['id']}", {"name": "lab2"})
    assert code == 200
    code, again = await api("GET", f"hosts/{host['id']}")
    assert again["python"] == host["python"] and again["name"] == "lab2"


async def test_starting_a_kernel_on_a_compute_server_needs_execute(
    api, authorizer, wait_for_state, jp_fetch, jp_serverapp
):
    """Jupyter's own kernel and session APIs ask only for ``write``: a compute server's
    kernel needs ``execute`` too, while a local kernel still starts with ``write``."""
    server = await running_server(api, wait_for_state)
    name = f"compute-{server['id']}-python3"
    kernel_manager = jp_serverapp.kernel_manager
    authorizer.denied = {EXECUTE}

    async def answer(method: str, path: str, body: dict[str, Any]) -> int:
        response = await jp_fetch(
            *path.split("/"), method=method, body=json.dumps(body), raise_error=False
        )
        return response.code

    assert await answer("POST", "api/kernels", {"name": name}) == 403
    session = {"path": "a.ipynb", "type": "notebook", "name": "a.ipynb", "kernel": {"name": name}}
    assert await answer("POST", "api/sessions", session) == 403
    assert list(kernel_manager.list_kernel_ids()) == []

    # A local kernel: write is enough; then moving its session to a remote kernel is not.
    session["kernel"] = {"name": "python3"}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(session))
    created = json.loads(response.body)
    assert len(list(kernel_manager.list_kernel_ids())) == 1
    patch = {"kernel": {"name": name}}
    assert await answer("PATCH", f"api/sessions/{created['id']}", patch) == 403
    await jp_fetch("api", "sessions", created["id"], method="DELETE")
