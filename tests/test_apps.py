"""Web apps on compute servers, opened through the proxy over the server's SSH connection:
real apps (``python -m http.server``, a tornado websocket echo app, TensorBoard) on local-cloud
servers, fetched through a real Jupyter server."""

from __future__ import annotations

import asyncio
import copy
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_compute_servers.handlers.base import AUTH_RESOURCE
from jupyter_compute_servers.ssh import ServerStoppedError

from .app_helpers import ECHO_APP, run_on_server, until_listening
from .kernel_helpers import process_alive, wait_until
from .test_terminals import running_server

CATALOG = Path(__file__).parent.parent / "jupyter_compute_servers" / "images" / "catalog.json"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The built-in catalogue, plus an app that fails at once on the machine's own Python."""
    catalog = json.loads(CATALOG.read_text())
    python = next(image for image in catalog["images"] if image["id"] == "python")
    python["apps"].append(
        {
            "name": "broken",
            "label": "Broken app",
            "command": ["python3", "-c", "print('cannot bind: no GPU here'); raise SystemExit(3)"],
        }
    )
    python["apps"].append(
        {
            "name": "slow",
            "label": "Slow app",
            # Listens only after 3 s, as a big app does while it loads.
            "command": [
                "python3",
                "-c",
                "import runpy, sys, time; time.sleep(3); "
                "sys.argv = ['x', '--bind', '127.0.0.1', '{port}']; "
                "runpy.run_module('http.server', run_name='__main__')",
            ],
        }
    )
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["image_catalog"] = str(path)
    return config


def services(jp_serverapp) -> tuple[Any, Any]:
    settings = jp_serverapp.web_app.settings
    return settings["compute_servers_manager"], settings["compute_servers_apps"]


async def proxied(jp_fetch, server_id: int, *path: str, **kwargs: Any):
    kwargs.setdefault("raise_error", False)
    return await jp_fetch("compute-servers", "servers", str(server_id), *path, **kwargs)


async def echo_app(jp_serverapp, compute_data_dir: Path, server_id: int) -> int:
    manager, apps = services(jp_serverapp)
    disk = compute_data_dir / "local" / str(server_id) / "disk"
    (disk / "echo_app.py").write_text(ECHO_APP)
    port = await run_on_server(
        manager, server_id, "echo", [sys.executable, "echo_app.py", "{port}"]
    )
    await until_listening(apps, server_id, port)
    return port


async def test_http_server_is_listed_and_fetched_through_the_proxy(
    api, wait_for_state, jp_fetch, jp_serverapp, compute_data_dir
):
    server = await running_server(api, wait_for_state)
    sid = server["id"]
    disk = compute_data_dir / "local" / str(sid) / "disk"
    (disk / "hello.txt").write_text("hello from the server\n")
    manager, apps = services(jp_serverapp)
    port = await run_on_server(
        manager,
        sid,
        "files",
        ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
    )
    await until_listening(apps, sid, port)

    code, listed = await api("GET", f"servers/{sid}/ports")
    assert code == 200
    entry = next(p for p in listed["ports"] if p["port"] == port)
    assert "http.server" in entry["command"]
    assert entry["url"].endswith(f"/compute-servers/servers/{sid}/proxy/{port}/")
    # Our own machinery (the SSH daemon serving the agent, kernels, terminals) is not listed.
    sshd_port = manager.get_server(sid).cloud_data["port"]
    assert sshd_port not in {p["port"] for p in listed["ports"]}

    response = await proxied(jp_fetch, sid, "proxy", str(port), "hello.txt")
    assert response.code == 200
    assert response.body == b"hello from the server\n"
    # The tunnel's local end is a Unix socket only this user reaches (not a TCP port that
    # any local user could use to reach the app without Jupyter's authentication).
    local_end = Path(await apps.target(sid, port))
    assert stat.S_IMODE(local_end.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_end.parent.stat().st_mode) == 0o700
    # Using the server's app is using the server (idle shutdown waits).
    activity = jp_serverapp.web_app.settings["compute_servers_costs"].activity.last(sid)
    assert activity is not None and activity.what == "web app use"
    # The directory listing: the app's relative links work under the proxy's prefix.
    response = await proxied(jp_fetch, sid, "proxy", str(port), "")
    assert response.code == 200 and b'href="hello.txt"' in response.body


async def test_websockets_streaming_and_what_the_app_is_told(
    api, wait_for_state, jp_fetch, jp_serverapp, compute_data_dir, jp_http_port, jp_base_url
):
    server = await running_server(api, wait_for_state)
    sid = server["id"]
    port = await echo_app(jp_serverapp, compute_data_dir, sid)
    token = jp_serverapp.identity_provider.token

    # Jupyter's credentials stay here: the Authorization header (jp_fetch sends the token),
    # the token in the query, Jupyter's cookies; the app's own cookie goes through.
    response = await proxied(
        jp_fetch,
        sid,
        "proxy",
        str(port),
        "headers",
        params={"token": token, "keep": "1"},
        headers={"Cookie": f"_xsrf=abc; app_session=mine; username-127-0-0-1-{jp_http_port}=x"},
    )
    assert response.code == 200, response.body
    seen = json.loads(response.body)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert "authorization" not in headers
    assert headers.get("cookie") == "app_session=mine"
    assert token not in seen["uri"] and "keep=1" in seen["uri"]
    assert (
        headers["x-forwarded-prefix"] == f"{jp_base_url}compute-servers/servers/{sid}/proxy/{port}"
    )

    # The app may set its own cookies, not Jupyter's; its pages are framed only by the Lab.
    response = await proxied(jp_fetch, sid, "proxy", str(port), "cookies")
    cookies = response.headers.get_list("Set-Cookie")
    assert any(c.startswith("app_session=") for c in cookies)
    assert not any(c.startswith("_xsrf=") for c in cookies)
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'self'"

    # A body goes through; a redirect to an absolute path stays under the proxy's prefix.
    response = await proxied(jp_fetch, sid, "proxy", str(port), "headers", method="POST", body="hi")
    assert json.loads(response.body) == {"body": "hi", "method": "POST"}
    response = await proxied(jp_fetch, sid, "proxy", str(port), "redirect", follow_redirects=False)
    assert response.code == 302
    assert response.headers["Location"] == (
        f"{jp_base_url}compute-servers/servers/{sid}/proxy/{port}/headers"
    )

    # 20 MB arrive whole, streamed (the app writes it in 1 MiB pieces).
    received = bytearray()
    client = AsyncHTTPClient()
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}compute-servers/servers/{sid}/proxy/{port}/big?mb=20"
    response = await client.fetch(
        HTTPRequest(
            url,
            headers={"Authorization": f"token {token}"},
            streaming_callback=received.extend,
            request_timeout=120,
        )
    )
    assert response.code == 200 and len(received) == 20 * 1024 * 1024
    assert received == b"x" * len(received)

    # The websocket echo, text and binary.
    ws = await websocket_connect(
        HTTPRequest(
            f"ws://127.0.0.1:{jp_http_port}{jp_base_url}compute-servers/servers/{sid}/proxy/{port}/ws",
            headers={"Authorization": f"token {token}"},
        )
    )
    try:
        for message in ("hello", b"\x00\x01binary"):
            await ws.write_message(message, binary=isinstance(message, bytes))
            assert await asyncio.wait_for(ws.read_message(), 10) == message
    finally:
        ws.close()


async def test_the_proxy_refuses_unauthenticated_unauthorized_and_other_servers_ports(
    api,
    wait_for_state,
    jp_fetch,
    jp_serverapp,
    compute_data_dir,
    jp_http_port,
    jp_base_url,
    authorizer,
):
    first = await running_server(api, wait_for_state, name="first")
    second = await running_server(api, wait_for_state, name="second")
    port = await echo_app(jp_serverapp, compute_data_dir, second["id"])
    base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}compute-servers/servers"
    client = AsyncHTTPClient()

    # No credentials: refused (a login redirect for a page, 403 for a websocket).
    response = await client.fetch(
        f"{base}/{second['id']}/proxy/{port}/headers", raise_error=False, follow_redirects=False
    )
    assert response.code in (302, 403)
    assert b"headers" not in response.body
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(
            f"ws://127.0.0.1:{jp_http_port}{jp_base_url}compute-servers/servers/{second['id']}/proxy/{port}/ws"
        )
    assert refused.value.code == 403

    # Read and write are not enough: an app acts with the server user's rights.
    authorizer.denied = {("execute", AUTH_RESOURCE)}
    response = await proxied(jp_fetch, second["id"], "proxy", str(port), "headers")
    assert response.code == 403
    authorizer.denied = set()

    # The second server's port through the first one's URL (the local cloud's servers share
    # this machine's loopback): nothing of the first listens there.
    response = await proxied(jp_fetch, first["id"], "proxy", str(port), "headers")
    assert response.code == 404
    assert json.loads(response.body)["field"] == "port"
    # Nor does the Jupyter server itself.
    response = await proxied(jp_fetch, first["id"], "proxy", str(jp_http_port), "api")
    assert response.code == 404
    # Its own server's URL works.
    response = await proxied(jp_fetch, second["id"], "proxy", str(port), "headers")
    assert response.code == 200

    # Bad input and a server that is off: JSON errors naming the field or the state.
    response = await proxied(jp_fetch, second["id"], "proxy", "70000", "")
    assert response.code == 400 and json.loads(response.body)["field"] == "port"
    response = await proxied(jp_fetch, 999, "proxy", str(port), "")
    assert response.code == 404
    await api("POST", f"servers/{second['id']}/actions/stop")
    await wait_for_state(second["id"], "off")
    response = await proxied(jp_fetch, second["id"], "proxy", str(port), "headers")
    assert response.code == 409


async def test_tensorboard_from_the_image_starts_is_proxied_and_stops(
    api, wait_for_state, jp_fetch, jp_serverapp, compute_data_dir
):
    server = await running_server(api, wait_for_state, name="gpu-box")
    sid = server["id"]
    disk = compute_data_dir / "local" / str(sid) / "disk"
    await asyncio.to_thread(write_event_file, disk / "runs" / "first")

    code, listed = await api("GET", f"servers/{sid}/apps")
    assert code == 200
    assert [(a["name"], a["state"]) for a in listed["apps"]] == [
        ("tensorboard", "stopped"),
        ("broken", "stopped"),
        ("slow", "stopped"),
    ]

    code, app = await api("POST", f"servers/{sid}/apps/tensorboard")
    assert code == 201, app
    assert app["state"] == "running" and app["url"].endswith(f"servers/{sid}/apps/tensorboard/")
    code, again = await api("POST", f"servers/{sid}/apps/tensorboard")
    assert code == 200 and again["port"] == app["port"]

    # Until it answers, a page says it is starting (and reloads itself).
    async def page() -> Any:
        return await proxied(
            jp_fetch, sid, "apps", "tensorboard", "", headers={"Accept": "text/html"}
        )

    response = await page()
    while response.code == 503:
        assert b"Waiting for TensorBoard" in response.body
        await asyncio.sleep(0.5)
        response = await page()
    assert response.code == 200, response.body[:500]
    assert b"<tf-tensorboard" in response.body or b"tensorboard" in response.body.lower()
    # A data request: the run the test wrote, and its scalar.
    response = await proxied(jp_fetch, sid, "apps", "tensorboard", "data", "runs")
    assert response.code == 200 and json.loads(response.body) == ["runs/first"]
    response = await proxied(
        jp_fetch, sid, "apps", "tensorboard", "data", "plugin", "scalars", "tags"
    )
    assert "loss" in json.loads(response.body)["runs/first"]

    manager, _ = services(jp_serverapp)
    agent = await manager.agent_for(sid)

    async def running_pid() -> int:
        runs = (await agent.call("app_list", runtime_dir=agent.endpoint.runtime_dir))["apps"]
        return int(next(r for r in runs if r["name"] == "tensorboard")["pid"])

    pid = await running_pid()
    assert process_alive(pid)
    code, _ = await api("DELETE", f"servers/{sid}/apps/tensorboard")
    assert code == 204
    assert not process_alive(pid)
    code, listed = await api("GET", f"servers/{sid}/apps")
    assert listed["apps"][0]["state"] == "stopped"
    response = await proxied(jp_fetch, sid, "apps", "tensorboard", "")
    assert response.code == 404

    # Started again, it stops with the server.
    code, app = await api("POST", f"servers/{sid}/apps/tensorboard")
    assert code == 201
    pid = await running_pid()
    await api("POST", f"servers/{sid}/actions/stop")
    await wait_for_state(sid, "off")
    await wait_until(lambda: not process_alive(pid))
    # A call on the agent of before, its connection closed by the stop, says the server is off.
    with pytest.raises(ServerStoppedError, match="it is off now"):
        await agent.call("app_list", runtime_dir=agent.endpoint.runtime_dir)


async def test_an_app_that_exits_shows_the_end_of_its_log(
    api, wait_for_state, jp_fetch, jp_serverapp, compute_data_dir
):
    server = await running_server(api, wait_for_state)
    sid = server["id"]
    code, _ = await api("POST", f"servers/{sid}/apps/broken")
    assert code == 201
    for _ in range(100):
        code, listed = await api("GET", f"servers/{sid}/apps")
        broken = next(a for a in listed["apps"] if a["name"] == "broken")
        if broken["state"] == "exited":
            break
        await asyncio.sleep(0.1)
    assert broken["exit_code"] == 3
    response = await proxied(jp_fetch, sid, "apps", "broken", "", headers={"Accept": "text/html"})
    assert response.code == 502
    assert b"Broken app has exited" in response.body
    assert b"cannot bind: no GPU here" in response.body
    response = await proxied(jp_fetch, sid, "apps", "broken", "")
    assert response.code == 502 and json.loads(response.body)["field"] == "app_name"


async def test_apps_rest_api_validates_and_needs_execute(
    api, wait_for_state, authorizer, jp_serverapp
):
    code, off = await api("POST", "servers", {"name": "off-box"})
    code, listed = await api("GET", f"servers/{off['id']}/ports")
    assert code == 200 and listed == {"ports": []}
    code, error = await api("POST", f"servers/{off['id']}/apps/tensorboard")
    assert code == 409
    code, error = await api("POST", f"servers/{off['id']}/apps/Not_A_Name")
    assert code == 400 and error["field"] == "app_name"
    code, error = await api("POST", f"servers/{off['id']}/apps/mlflow")
    assert code == 404 and error["field"] == "app_name"
    authorizer.denied = {("execute", AUTH_RESOURCE)}
    code, _ = await api("POST", f"servers/{off['id']}/apps/tensorboard")
    assert code == 403
    code, _ = await api("DELETE", f"servers/{off['id']}/apps/tensorboard")
    assert code == 403
    code, _ = await api("GET", f"servers/{off['id']}/apps")
    assert code == 200


def write_event_file(logdir: Path) -> None:
    """A TensorBoard event file with a scalar, written with TensorBoard's own writer."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(logdir))
    for step, value in enumerate((1.0, 0.5, 0.25)):
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="loss", simple_value=value)]
        )
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0 + step, summary=summary))
    writer.close()


async def test_an_app_not_answering_yet_gets_a_page_that_waits(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    sid = server["id"]
    code, _ = await api("POST", f"servers/{sid}/apps/slow")
    assert code == 201
    response = await proxied(jp_fetch, sid, "apps", "slow", "", headers={"Accept": "text/html"})
    assert response.code == 503
    assert response.headers["Retry-After"] == "2"
    assert b"Waiting for Slow app" in response.body
    assert b'http-equiv="refresh"' in response.body
    # An API client gets the same as JSON.
    response = await proxied(jp_fetch, sid, "apps", "slow", "")
    assert response.code == 503 and json.loads(response.body)["field"] == "app_name"
    for _ in range(100):
        response = await proxied(jp_fetch, sid, "apps", "slow", "", headers={"Accept": "text/html"})
        if response.code != 503:
            break
        await asyncio.sleep(0.2)
    # Now the app answers itself (http.server, which knows no prefix: its own 404 page).
    assert response.code == 404 and b"Error response" in response.body
