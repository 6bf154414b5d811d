"""The REST API end to end, on a real Jupyter server with the real local cloud."""

from __future__ import annotations

import asyncio
import json
import os
import re
from importlib.resources import files

import pytest

from jupyter_compute_servers.clouds.local import processes_with_token
from jupyter_compute_servers.handlers.base import AUTH_RESOURCE, NotFoundHandler
from jupyter_compute_servers.handlers.routes import API_PREFIX, api_handlers


async def create(api, name="box", **body):
    code, server = await api("POST", "servers", {"name": name, **body})
    assert code == 201, server
    return server


async def test_the_list_answers_each_server_as_its_own_get_does(api, wait_for_state):
    """``GET servers`` reads costs and sync settings once for all servers: each entry is what
    ``GET servers/{id}`` answers (history, rates and settings told apart by server)."""
    plain = await create(api, "plain")
    synced = await create(api, "synced", sync={"excludes": ["*.csv"], "auto_sync_minutes": 5})
    limited = await create(api, "limited", spend_limit={"amount": 3, "period_days": 7})
    await api("POST", f"servers/{limited['id']}/actions/start")
    assert (await wait_for_state(limited["id"], "running", "error"))["state"] == "running"
    await api("POST", f"servers/{limited['id']}/actions/stop")
    await wait_for_state(limited["id"], "off")

    _, listing = await api("GET", "servers")
    for entry in listing["servers"]:
        _, own = await api("GET", f"servers/{entry['id']}")
        for answer in (entry, own):  # spend moves on by the second: compare what does not
            answer["cost"].pop("spent")
        assert entry == own, entry["name"]
    by_name = {s["name"]: s for s in listing["servers"]}
    assert by_name["synced"]["sync"]["excludes"] == ["*.csv"]
    assert by_name["plain"]["sync"]["excludes"] == [] and plain["id"] != synced["id"]
    assert by_name["limited"]["cost"]["spend_limit"] is not None
    assert by_name["plain"]["cost"]["spend_limit"] is None


async def test_create_list_get_patch_delete(api):
    server = await create(api, "alpha", notes="for tests")
    assert server["state"] == "deprovisioned"
    assert server["cloud"] == "local"
    assert server["config"]["cpu"] >= 1 and server["config"]["disk_gb"] == 10
    assert server["allowed_actions"] == ["start", "delete"]
    assert re.match(r"^#[0-9a-f]{6}$", server["color"])

    code, listing = await api("GET", "servers")
    assert code == 200 and [s["name"] for s in listing["servers"]] == ["alpha"]

    code, edited = await api(
        "PATCH",
        f"servers/{server['id']}",
        {
            "name": "beta",
            "color": "#123456",
            "config": {"cpu": 1},
            "spend_limit": {"amount": 25, "period_days": 7},
        },
    )
    assert code == 200, edited
    assert (edited["name"], edited["color"], edited["config"]["cpu"]) == ("beta", "#123456", 1)
    assert edited["spend_limit"] == {"amount": 25.0, "period_days": 7}

    code, _ = await api("DELETE", f"servers/{server['id']}")
    assert code == 204
    code, missing = await api("GET", f"servers/{server['id']}")
    assert code == 404 and "No compute server" in missing["message"]


async def test_clouds_lists_local_with_its_offerings(api):
    code, body = await api("GET", "clouds")
    assert code == 200
    (local,) = body["clouds"]
    assert local["name"] == "local" and local["available"] is True
    assert local["offerings"]["cpu"]["max"] == os.cpu_count()
    assert "synced back" in body["deprovision_warning"]


async def test_local_server_lifecycle_runs_real_processes(
    api, wait_for_state, jp_serverapp, compute_data_dir
):
    server = await create(api)
    server_id = server["id"]
    code, started = await api("POST", f"servers/{server_id}/actions/start")
    assert code == 202 and started["state"] == "starting"
    running = await wait_for_state(server_id, "running", "error")
    assert running["state"] == "running", running["state_reason"]
    assert set(running["allowed_actions"]) == {"stop", "reboot", "deprovision"}

    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    info = await manager.info(server_id)
    assert info["cpu_count"] == os.cpu_count()
    connection = await manager.connection(server_id)
    result = await connection.run("sh", "-c", "pwd; sleep 300 >/dev/null 2>&1 & echo started")
    sandbox_disk = compute_data_dir / "local" / str(server_id) / "disk"
    assert result.stdout.splitlines() == [str(sandbox_disk), "started"]
    token = manager.get_server(server_id).cloud_data["token"]
    assert len(processes_with_token(token)) >= 2  # the SSH server, the agent, the sleep

    # A running server refuses what only a stopped one may do, and says what it may do.
    code, refused = await api("POST", f"servers/{server_id}/actions/start")
    assert code == 409 and refused["state"] == "running"
    assert set(refused["allowed_actions"]) == {"stop", "reboot", "deprovision"}
    code, refused = await api("PATCH", f"servers/{server_id}", {"config": {"cpu": 1}})
    assert code == 409 and refused["field"] == "config.cpu"
    code, grown = await api("PATCH", f"servers/{server_id}", {"config": {"disk_gb": 12}})
    assert code == 200 and grown["config"]["disk_gb"] == 12

    await api("POST", f"servers/{server_id}/actions/stop")
    assert (await wait_for_state(server_id, "off", "error"))["state"] == "off"
    assert processes_with_token(token) == []  # the sleep started over SSH is gone too
    assert sandbox_disk.is_dir()

    code, refused = await api("POST", f"servers/{server_id}/actions/deprovision")
    assert code == 400 and refused["field"] == "confirm" and "synced back" in refused["message"]
    code, refused = await api("DELETE", f"servers/{server_id}")
    assert code == 409

    await api("POST", f"servers/{server_id}/actions/start")
    assert (await wait_for_state(server_id, "running", "error"))["state"] == "running"
    code, _ = await api("POST", f"servers/{server_id}/actions/deprovision", {"confirm": True})
    assert code == 202
    assert (await wait_for_state(server_id, "deprovisioned", "error"))["state"] == "deprovisioned"
    assert not sandbox_disk.exists()
    assert processes_with_token(token) == []
    code, _ = await api("DELETE", f"servers/{server_id}")
    assert code == 204

    code, _ = await api("GET", f"servers/{server_id}/history")
    assert code == 404


async def test_history_records_every_change(api, wait_for_state):
    server = await create(api)
    await api("POST", f"servers/{server['id']}/actions/start")
    await wait_for_state(server["id"], "running")
    await api("POST", f"servers/{server['id']}/actions/reboot")
    await asyncio.sleep(0)
    await wait_for_state(server["id"], "running")
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")
    _, body = await api("GET", f"servers/{server['id']}/history")
    states = [(h["state"], h["action"]) for h in body["history"]]
    assert states[:3] == [("deprovisioned", None), ("starting", "start"), ("running", None)]
    assert ("running", "reboot") in states
    assert states[-2:] == [("stopping", "stop"), ("off", None)]
    times = [h["at"] for h in body["history"]]
    assert times == sorted(times)


async def test_actions_on_one_server_are_serialized(api, wait_for_state):
    server = await create(api)
    answers = await asyncio.gather(
        *[api("POST", f"servers/{server['id']}/actions/start") for _ in range(5)]
    )
    codes = sorted(code for code, _ in answers)
    assert codes == [202, 409, 409, 409, 409]
    assert (await wait_for_state(server["id"], "running"))["state"] == "running"
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")


async def test_events_are_published(api, wait_for_state, jp_serverapp):
    seen: list[dict] = []

    class Listener:
        async def __call__(self, logger, schema_id, data):
            seen.append(dict(data))

    jp_serverapp.event_logger.add_listener(
        schema_id="https://events.jupyter.org/jupyter_compute_servers/server/v1",
        listener=Listener(),
    )
    server = await create(api)
    await api("POST", f"servers/{server['id']}/actions/start")
    await wait_for_state(server["id"], "running")
    await asyncio.sleep(0.1)
    kinds = [(e["kind"], e["state"]) for e in seen]
    assert ("created", "deprovisioned") in kinds
    assert ("state", "starting") in kinds and ("state", "running") in kinds
    assert any(kind == "progress" for kind, _ in kinds)
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")


MALFORMED = [
    ("POST", "servers", b"{not json", "body"),
    ("POST", "servers", b"[1, 2]", "body"),
    ("POST", "servers", {}, "name"),
    ("POST", "servers", {"name": ""}, "name"),
    ("POST", "servers", {"name": "has space"}, "name"),
    ("POST", "servers", {"name": "x" * 64}, "name"),
    ("POST", "servers", {"name": 5}, "name"),
    ("POST", "servers", {"name": "ok", "bogus": 1}, "bogus"),
    ("POST", "servers", {"name": "ok", "cloud": "nowhere"}, "cloud"),
    ("POST", "servers", {"name": "ok", "color": "red"}, "color"),
    ("POST", "servers", {"name": "ok", "config": []}, "config"),
    ("POST", "servers", {"name": "ok", "config": {"cpu": -1}}, "config.cpu"),
    ("POST", "servers", {"name": "ok", "config": {"cpu": 100000}}, "config.cpu"),
    ("POST", "servers", {"name": "ok", "config": {"memory_gb": "lots"}}, "config.memory_gb"),
    (
        "POST",
        "servers",
        {"name": "ok", "config": {"machine_type": "n1-standard-4"}},
        "config.machine_type",
    ),
    ("POST", "servers", {"name": "ok", "config": {"spot": True}}, "config.spot"),
    ("POST", "servers", {"name": "ok", "config": {"image": "nope"}}, "config.image"),
    (
        "POST",
        "servers",
        {"name": "ok", "config": {"gpu": {"type": "H100", "count": 64}}},
        "config.gpu.count",
    ),
    ("POST", "servers", {"name": "ok", "config": {"extra": {"vpc": "x"}}}, "config.extra.vpc"),
    ("POST", "servers", {"name": "ok", "idle_timeout_minutes": 0}, "idle_timeout_minutes"),
    ("POST", "servers", {"name": "ok", "spend_limit": {"amount": 5}}, "spend_limit.period_days"),
    (
        "POST",
        "servers",
        {"name": "ok", "spend_limit": {"amount": -5, "period_days": 7}},
        "spend_limit.amount",
    ),
    ("POST", "servers", {"name": "ok", "notes": "n" * 10_001}, "notes"),
    ("PATCH", "servers/{id}", {"cloud": "local"}, "cloud"),
    ("PATCH", "servers/{id}", {"name": "taken"}, "name"),
    ("PATCH", "servers/{id}", {"config": {"disk_gb": 0}}, "config.disk_gb"),
    ("POST", "servers/{id}/actions/start", {"force": True}, "force"),
    ("POST", "servers/{id}/actions/deprovision", {"confirm": "yes"}, "confirm"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), MALFORMED)
async def test_malformed_requests_get_a_clear_4xx_and_change_nothing(
    api, jp_serverapp, method, path, body, field
):
    server = await create(api, "target")
    await create(api, "taken")
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    before = [(s, manager.store.history(s.id)) for s in manager.list_servers()]
    raw = body if isinstance(body, bytes) else None
    code, answer = await api(method, path.format(id=server["id"]), None if raw else body, raw=raw)
    assert code in (400, 404, 409), answer
    assert answer["field"] == field, answer
    assert answer["message"]
    after = [(s, manager.store.history(s.id)) for s in manager.list_servers()]
    assert after == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "servers/999"),
        ("PATCH", "servers/999"),
        ("DELETE", "servers/999"),
        ("POST", "servers/999/actions/start"),
        ("GET", "servers/999/history"),
        ("POST", "servers/{id}/actions/explode"),
    ],
)
async def test_unknown_ids_and_actions_are_404(api, method, path):
    server = await create(api)
    code, answer = await api(
        method, path.format(id=server["id"]), {} if method in ("PATCH", "POST") else None
    )
    assert code == 404 and answer["message"]


def _openapi_operations() -> set[tuple[str, str]]:
    document = json.loads(files("jupyter_compute_servers").joinpath("openapi.json").read_text())
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def _handler_operations() -> set[tuple[str, str]]:
    operations = set()
    for pattern, handler in api_handlers():
        if handler is NotFoundHandler:  # any other path: a JSON 404, no operation
            continue
        path = pattern[len(API_PREFIX) :]
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)
        # The methods a handler class defines itself are the operations it serves.
        operations.update(
            (path, method)
            for method in handler.SUPPORTED_METHODS
            if method.lower() in handler.__dict__
        )
    return operations


def test_openapi_document_matches_the_handlers():
    assert _openapi_operations() == _handler_operations()


@pytest.mark.parametrize(("path", "method"), sorted(_openapi_operations()))
async def test_every_operation_is_authorized(api, authorizer, path, method):
    server = await create(api, "authz")
    authorizer.denied = {(action, AUTH_RESOURCE) for action in ("read", "write", "execute")}
    concrete = path.replace("{server_id}", str(server["id"])).replace("{action}", "start")
    concrete = concrete.replace("{host_id}", "1")
    code, _ = await api(method, concrete, {} if method in ("POST", "PATCH") else None)
    assert code == 403
