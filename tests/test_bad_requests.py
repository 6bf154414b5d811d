"""Every bad request is a clear 4xx in JSON naming the field at fault, with nothing changed:
what a fuzzing run and a read of the code found (issue: hostile input)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from .test_api import create

DEEP = b"[" * 10_000 + b"]" * 10_000


async def servers(api) -> list[dict[str, Any]]:
    code, listing = await api("GET", "servers")
    assert code == 200
    return listing["servers"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "servers"),
        ("PATCH", "servers/{id}"),
        ("POST", "servers/{id}/actions/start"),
        ("POST", "estimate"),
        ("POST", "servers/{id}/sync"),
        ("POST", "servers/{id}/terminals"),
    ],
)
async def test_json_nested_too_deeply_is_a_400_naming_the_body(api, method, path):
    server = await create(api, "deep")
    code, error = await api(method, path.format(id=server["id"]), raw=DEEP)
    assert code == 400, error
    assert error["field"] == "body" and "nested too deeply" in error["message"]
    assert await servers(api) == [server]


async def test_a_body_larger_than_any_request_is_refused(api):
    code, error = await api("POST", "servers", raw=json.dumps({"name": "x" * 2_000_000}).encode())
    assert code == 413 and error["field"] == "body" and error["reason"] == "PayloadTooLargeError"
    assert await servers(api) == []


async def test_an_id_beyond_the_store_is_simply_not_found(api):
    code, error = await api("POST", "estimate", {"server_id": 2**63})
    assert code == 404 and error["field"] == "server_id", error
    code, error = await api("POST", "estimate", {"server_id": 10**400})
    assert code == 404 and error["field"] == "server_id", error
    code, error = await api("GET", f"servers/{2**63}")
    assert code == 404 and error["field"] == "server_id", error


@pytest.mark.parametrize("name", ["a\n", "a\r\n", "\na", "a\x00", "a b"])
async def test_a_name_with_a_line_break_or_control_character_is_refused(api, name):
    code, error = await api("POST", "servers", {"name": name})
    assert code == 400 and error["field"] == "name", error
    server = await create(api, "fine")
    code, error = await api("PATCH", f"servers/{server['id']}", {"name": name})
    assert code == 400 and error["field"] == "name", error
    assert [s["name"] for s in await servers(api)] == ["fine"]


async def test_a_config_that_is_not_an_object_is_refused(api):
    server = await create(api, "kept")
    for method, path in (("PATCH", f"servers/{server['id']}"), ("POST", "estimate")):
        code, error = await api(method, path, {"config": None})
        assert code == 400 and error["field"] == "config", error
    code, error = await api("POST", "servers", {"name": "other", "config": None})
    assert code == 400 and error["field"] == "config", error
    assert await servers(api) == [server]


@pytest.mark.parametrize(("method", "path"), [("PATCH", "servers/{id}"), ("POST", "estimate")])
async def test_a_missing_body_is_a_400_where_the_operation_needs_one(api, method, path):
    server = await create(api, "kept")
    code, error = await api(method, path.format(id=server["id"]), raw=b"")
    assert code == 400 and error["field"] == "body", error
    assert await servers(api) == [server]


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "servers/abc", "server_id"),
        ("PATCH", "servers/abc", "server_id"),
        ("DELETE", "servers/-1", "server_id"),
        ("GET", "servers/0", "server_id"),
        ("GET", "servers/1%0A", "server_id"),
        ("GET", "servers/abc/history", "server_id"),
        ("POST", "servers/abc/actions/start", "server_id"),
        ("GET", "servers/abc/kernels", "server_id"),
        ("GET", "servers/abc/terminals", "server_id"),
        ("GET", "servers/abc/syncs", "server_id"),
        ("GET", "hosts/abc", "host_id"),
        ("GET", "servers/{id}/syncs/%C2%B3", "sync_id"),  # "³" is a digit to str.isdigit
        ("GET", "servers/{id}/syncs/abc", "sync_id"),
        ("GET", "no/such/endpoint", "path"),
    ],
)
async def test_a_path_that_names_nothing_is_a_json_404(api, method, path, field):
    server = await create(api, "there")
    path = path.format(id=server["id"])
    code, error = await api(method, path, {} if method in ("POST", "PATCH") else None)
    assert code == 404, error
    assert error["field"] == field and error["reason"] == "NotFoundError", error


async def test_jupyters_own_refusals_say_their_reason_in_json(api, authorizer, jp_fetch):
    code, error = await api("PUT", "servers", {})
    assert code == 405 and error == {
        "message": "Method Not Allowed",
        "reason": "Method Not Allowed",
    }
    response = await jp_fetch(
        "compute-servers", "api", "servers", method="PUT", body="{}", raise_error=False
    )
    assert response.headers["Allow"] == "GET, POST, OPTIONS"
    authorizer.denied = {("write", "compute_servers")}
    code, error = await api("POST", "servers", {"name": "denied"})
    assert code == 403 and error["reason"] == "Forbidden" and isinstance(error["message"], str)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"disk_gb": 65536}, "config.disk_gb"),
        ({"memory_gb": 0.1}, "config.memory_gb"),
    ],
)
async def test_hardware_outside_what_the_local_cloud_offers_is_refused(api, config, field):
    code, error = await api("POST", "servers", {"name": "big", "config": config})
    assert code == 400 and error["field"] == field, error
    assert await servers(api) == []


async def test_the_count_of_servers_is_bounded(jp_server_config, api):
    for n in range(3):
        await create(api, f"s{n}")
    code, error = await api("POST", "servers", {"name": "one-too-many"})
    assert code == 409 and "max_servers" in error["message"], error
    assert len(await servers(api)) == 3


@pytest.fixture
def jp_server_config(request, jp_server_config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    if request.node.name.startswith("test_the_count_of_servers"):
        config["ComputeServersApp"]["max_servers"] = 3
    if request.node.name.startswith("test_a_cloud_that_cannot_be_used"):
        config["ComputeServersApp"]["enabled_clouds"] = ["local", "gcp"]
        # No credentials anywhere: the gcp cloud says why it cannot be used.
        config["GCPCloud"] = {"credentials_file": "/no/such/credentials.json"}
    return config


async def test_a_cloud_that_cannot_be_used_now_is_refused_at_create(api):
    code, clouds = await api("GET", "clouds")
    gcp = next(c for c in clouds["clouds"] if c["name"] == "gcp")
    assert gcp["available"] is False
    code, error = await api("POST", "servers", {"name": "on-gcp", "cloud": "gcp"})
    assert code == 409 and error["field"] == "cloud", error
    assert "cannot be used now" in error["message"] and gcp["reason"] in error["message"]
    assert await servers(api) == []
