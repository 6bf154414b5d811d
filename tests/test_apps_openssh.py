"""Web apps on servers of a registered host reached through OpenSSH's own sshd: the proxy over
that connection, and two servers sharing the host (each one's URL reaches only its ports)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from .app_helpers import ECHO_APP, run_on_server, until_listening
from .kernel_helpers import process_alive, wait_until
from .test_apps import proxied, services, write_event_file
from .test_hosts import host, server_on, trusted_host  # noqa: F401 - fixtures


async def running_on(api, wait_for_state, host_id: int, name: str) -> dict[str, Any]:
    server = await server_on(api, host_id, name)
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running", "error", timeout=60)
    assert server["state"] == "running", server["state_reason"]
    return server


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "ssh"]
    return config


async def test_apps_on_a_host_behind_openssh(
    api,
    wait_for_state,
    host,  # noqa: F811 - the fixture imported above
    jp_fetch,
    jp_serverapp,
    jp_http_port,
    jp_base_url,
):
    registered = await trusted_host(api, host)
    first = await running_on(api, wait_for_state, registered["id"], "first")
    second = await running_on(api, wait_for_state, registered["id"], "second")
    pids: set[int] = set()
    try:
        manager, apps = services(jp_serverapp)

        files = await run_on_server(
            manager,
            first["id"],
            "files",
            [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
        )
        echo = await run_on_server(
            manager, second["id"], "echo", [sys.executable, "-c", ECHO_APP, "{port}"]
        )
        await until_listening(apps, first["id"], files)
        await until_listening(apps, second["id"], echo)
        for server in (first, second):
            pids.update(p["pid"] for p in await apps.ports(server["id"]))

        # Each server lists its own processes' ports only (they share the host's loopback).
        code, listed = await api("GET", f"servers/{first['id']}/ports")
        assert code == 200
        assert files in {p["port"] for p in listed["ports"]}
        assert echo not in {p["port"] for p in listed["ports"]}
        assert host["sshd"].port not in {p["port"] for p in listed["ports"]}

        response = await proxied(jp_fetch, first["id"], "proxy", str(files), "")
        assert response.code == 200 and b"Directory listing" in response.body
        response = await proxied(jp_fetch, first["id"], "proxy", str(echo), "headers")
        assert response.code == 404

        response = await proxied(jp_fetch, second["id"], "proxy", str(echo), "headers")
        seen = json.loads(response.body)
        assert "authorization" not in {k.lower() for k in seen["headers"]}

        token = jp_serverapp.identity_provider.token
        ws = await websocket_connect(
            HTTPRequest(
                f"ws://127.0.0.1:{jp_http_port}{jp_base_url}compute-servers/servers/"
                f"{second['id']}/proxy/{echo}/ws",
                headers={"Authorization": f"token {token}"},
            )
        )
        try:
            await ws.write_message("over openssh")
            assert await asyncio.wait_for(ws.read_message(), 10) == "over openssh"
        finally:
            ws.close()

        # TensorBoard from the image, with an event file in the workspace on the host.
        endpoint = await manager.endpoint(first["id"])
        workspace = Path(os.path.expanduser(endpoint.workspace.replace("~", str(host["home"]), 1)))
        await asyncio.to_thread(write_event_file, workspace / "runs" / "over-openssh")
        code, app = await api("POST", f"servers/{first['id']}/apps/tensorboard")
        assert code == 201, app
        for _ in range(150):
            response = await proxied(jp_fetch, first["id"], "apps", "tensorboard", "data", "runs")
            if response.code == 200:
                break
            assert response.code == 503, response.body
            await asyncio.sleep(0.2)
        assert json.loads(response.body) == ["runs/over-openssh"]
        code, _ = await api("DELETE", f"servers/{first['id']}/apps/tensorboard")
        assert code == 204
    finally:
        # Stopping a host's server ends every process carrying its token: the apps too.
        for server in (first, second):
            await api("POST", f"servers/{server['id']}/actions/stop")
            await wait_for_state(server["id"], "off", "error", timeout=60)
    await wait_until(lambda: not any(process_alive(pid) for pid in pids))
