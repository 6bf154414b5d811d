"""Team mode through a real JupyterHub (tests/hub.py): two users and an admin, each with their
own Jupyter server spawned by the Hub, on one PostgreSQL database. Each user sees and acts on
their own servers only, another's id is the 404 of an unknown one, the admin sees everyone's
with the owner, a quota refuses a start saying why, and the audit log keeps what a deleted
server went through.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .hub import ADMIN, Hub


@pytest.fixture(scope="module")
def hub(postgres_server) -> Iterator[Hub]:
    # One Hub for the module: starting it and three user servers takes about a minute here.
    hub = Hub(
        postgres_server.create_database(),
        quotas={"*": {"running_servers": 2}, "user:bob": {"running_servers": 0}},
        enabled_clouds=["local", "ssh"],
        access={"cloud:ssh": ["group:compute-admins"]},
    )
    try:
        for user in ("alice", "bob", ADMIN):
            hub.start_server(user)
        yield hub
    finally:
        hub.close()


@pytest.mark.timeout(600)
def test_two_users_through_the_hub_each_see_their_own_and_the_admin_sees_all(hub: Hub) -> None:
    created = {}
    for user in ("alice", "bob"):
        response = hub.call(user, "POST", "/servers", body={"name": f"{user}-box"})
        assert response.status_code == 201, response.text
        created[user] = response.json()
        assert created[user]["owner"] == user

    # Each lists their own only.
    for user in ("alice", "bob"):
        listed = hub.call(user, "GET", "/servers").json()["servers"]
        assert [(s["name"], s["owner"]) for s in listed] == [(f"{user}-box", user)]

    # Bob asking his server about Alice's id: the same 404 as for an id nobody has.
    alice_id = created["alice"]["id"]
    unknown = max(s["id"] for s in created.values()) + 1000
    for server_id in (alice_id, unknown):
        for method, path, body in (
            ("GET", f"/servers/{server_id}", None),
            ("PATCH", f"/servers/{server_id}", {"notes": "bob was here"}),
            ("POST", f"/servers/{server_id}/actions/start", None),
            ("GET", f"/servers/{server_id}/history", None),
            ("GET", f"/servers/{server_id}/syncs", None),
            ("GET", f"/servers/{server_id}/syncs/1", None),
            ("GET", f"/servers/{server_id}/terminals", None),
            ("GET", f"/servers/{server_id}/kernels", None),
            ("GET", f"/servers/{server_id}/ssh-access", None),
            ("GET", f"/servers/{server_id}/mount", None),
            ("GET", f"/servers/{server_id}/apps", None),
            ("DELETE", f"/servers/{server_id}", None),
        ):
            response = hub.call("bob", method, path, body=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json() == {
                "message": f"No compute server with id {server_id}.",
                "reason": "NotFoundError",
                "field": "id",
            }
    assert hub.call("alice", "GET", f"/servers/{alice_id}").json()["notes"] == ""
    # Nor is Bob let into Alice's Jupyter server at all (the Hub's own check).
    assert hub.call("bob", "GET", "/servers", server="alice").status_code in (403, 302)
    # Bob may not list everyone's.
    refused = hub.call("bob", "GET", "/servers?scope=all")
    assert refused.status_code == 403 and refused.json()["field"] == "user"

    # Who is asking, from the Hub: the admin by the Hub group in team_admin_groups.
    me = hub.call(ADMIN, "GET", "/team").json()
    assert me["team_mode"] is True and me["user"]["admin"] is True
    assert me["user"]["groups"] == ["compute-admins"]
    everyone = hub.call(ADMIN, "GET", "/servers?scope=all").json()["servers"]
    assert [(s["name"], s["owner"]) for s in everyone] == [
        ("alice-box", "alice"),
        ("bob-box", "bob"),
    ]
    assert hub.call(ADMIN, "GET", f"/servers/{alice_id}").json()["owner"] == "alice"
    assert hub.call(ADMIN, "GET", "/servers").json()["servers"] == []  # their own: none

    # The ssh cloud's access list keeps it for the admins' group.
    refused = hub.call("alice", "POST", "/servers", body={"name": "on-ssh", "cloud": "ssh"})
    assert refused.status_code == 403, refused.text
    assert refused.json() == {
        "message": "alice may not use the cloud 'ssh': its access list keeps it for others. "
        "Ask an admin to add you or one of your groups.",
        "reason": "ForbiddenError",
        "field": "cloud",
    }
    let_in = hub.call(ADMIN, "POST", "/servers", body={"name": "on-ssh", "cloud": "ssh"})
    # (past the access list, the admin is told what the cloud needs first)
    assert let_in.status_code == 409, let_in.text
    assert let_in.json()["message"].startswith("The ssh cloud cannot be used now: Register a host")

    # Shared hosts are the admin's: a user cannot register one (nor change or trust one).
    host = {"name": "lab-gpu", "hostname": "127.0.0.1", "username": "u"}
    refused = hub.call("alice", "POST", "/hosts", body=host)
    assert refused.status_code == 403, refused.text
    assert "Only a compute servers admin may register a host" in refused.json()["message"]


@pytest.mark.timeout(600)
def test_a_quota_refuses_a_start_saying_why_and_the_audit_outlives_a_deletion(hub: Hub) -> None:
    # Shown before a create: what Bob may run, and what he holds.
    team = hub.call("bob", "GET", "/team").json()
    assert team["owner"] == "bob" and team["user"] == {
        "name": "bob",
        "groups": [],
        "admin": False,
    }
    assert team["quota"] == {"running_servers": 0, "gpus": None}
    assert team["left"] == {"running_servers": 0, "gpus": None}
    server = hub.call("bob", "POST", "/servers", body={"name": "bob-quota"}).json()
    refused = hub.call("bob", "POST", f"/servers/{server['id']}/actions/start")
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"].startswith(
        "Quota reached: bob may have 0 compute server(s) running at once and has 0."
    )
    assert refused.json()["field"] == "quota.running_servers"
    assert hub.call("bob", "GET", f"/servers/{server['id']}").json()["state"] == "deprovisioned"

    # Alice creates, renames and deletes a server; the admin's audit log keeps all of it.
    made = hub.call("alice", "POST", "/servers", body={"name": "scratch"}).json()
    assert hub.call("alice", "PATCH", f"/servers/{made['id']}", body={"name": "scratch-2"}).ok
    assert hub.call("alice", "DELETE", f"/servers/{made['id']}").status_code == 204
    assert hub.call("alice", "GET", "/audit").status_code == 403
    entries = hub.call(ADMIN, "GET", "/audit").json()["entries"]
    assert ("bob", "bob", "bob-quota", "create") in [
        (e["actor"], e["owner"], e["server_name"], e["action"]) for e in entries
    ]  # (the refused start changed nothing, so it left no line)
    assert not [e for e in entries if e["server_id"] == server["id"] and e["action"] == "start"]
    assert [
        (e["actor"], e["owner"], e["server_name"], e["action"])
        for e in entries
        if e["server_id"] == made["id"]
    ] == [
        ("alice", "alice", "scratch", "create"),
        ("alice", "alice", "scratch-2", "edit"),
        ("alice", "alice", "scratch-2", "delete"),
    ]
    csv = hub.call(ADMIN, "GET", "/audit?format=csv")
    assert csv.headers["Content-Type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0] == "at,actor,owner,server_id,server_name,action,detail"
    assert lines[-1].endswith(f",alice,alice,{made['id']},scratch-2,delete,")
