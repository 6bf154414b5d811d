"""Team mode through a real JupyterHub (tests/hub.py): two users and an admin, each with their
own Jupyter server spawned by the Hub, on one PostgreSQL database. Each user sees and acts on
their own servers only, another's id is the 404 of an unknown one, the admin sees everyone's
with the owner, a quota refuses a start saying why, and the audit log keeps what a deleted
server went through.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from jupyter_compute_servers.db import Database
from jupyter_compute_servers.hosts import HostStore, Slice
from jupyter_compute_servers.models import GpuSpec, State
from jupyter_compute_servers.store import ServerStore

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

    # Who is asking, from the Hub; an admin by the control plane's rule (its --admin-group).
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
    unlimited = dict.fromkeys(("gpus", "gpus_per_host", "cpu", "memory_gb", "monthly_spend"))
    assert team["quota"] == {"running_servers": 0, **unlimited}
    assert team["left"] == {"running_servers": 0, **unlimited}
    assert team["used"]["monthly_spend"] == 0.0
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


@pytest.mark.timeout(600)
def test_the_gpu_queue_through_the_hub_own_entries_foreign_404_admin_reorders(hub: Hub) -> None:
    # The host and the queue's entries are made on the shared database (no GPU host here):
    # what is tested is what each user's Jupyter answers about them, and the admin's changes.
    database = Database(hub.db_url)
    hosts = HostStore(database, clock=time.time)
    gpu = "NVIDIA A100-SXM4-80GB"
    host = hosts.create(
        name="queue-lab",
        hostname="127.0.0.1",
        port=22,
        username="u",
        inventory={"cpu_count": 8, "memory_total": 2**35, "gpus": [{"uuid": "G0", "name": gpu}]},
    )
    ids = {}
    for user in ("alice", "bob", ADMIN):
        response = hub.call(user, "POST", "/servers", body={"name": f"{user}-queued"})
        assert response.status_code == 201, response.text
        ids[user] = response.json()["id"]
    assert isinstance(hosts.allocate(ids[ADMIN], host, 1, 1.0, GpuSpec(gpu, 1)), Slice)
    for user in ("alice", "bob"):
        assert isinstance(hosts.allocate(ids[user], host, 1, 1.0, GpuSpec(gpu, 1)), str)

    # The shared host as an admin sees it: who holds which slice; a user sees no one's.
    [lab] = [h for h in hub.call(ADMIN, "GET", "/hosts").json()["hosts"] if h["id"] == host.id]
    assert [
        (s["server_id"], s["server_name"], s["owner"], s["gpu_uuids"], s["cpu"])
        for s in lab["slices"]
    ] == [(ids[ADMIN], f"{ADMIN}-queued", ADMIN, ["G0"], 1)]
    assert hub.call(ADMIN, "GET", f"/hosts/{host.id}").json()["slices"] == lab["slices"]
    assert all("slices" not in h for h in hub.call("alice", "GET", "/hosts").json()["hosts"])
    assert "slices" not in hub.call("alice", "GET", f"/hosts/{host.id}").json()

    # Each user sees their own entry, with its position.
    for user, position in (("alice", 1), ("bob", 2)):
        [entry] = hub.call(user, "GET", "/queue").json()["entries"]
        assert (entry["server_id"], entry["owner"], entry["position"]) == (
            ids[user],
            user,
            position,
        )
        assert entry["host_name"] == "queue-lab" and entry["queue_length"] == 2
        assert entry["estimated_start"]["at"] is None  # the holder has no known end
    # A waiting server's own status says where it stands.
    ServerStore(database, clock=time.time).transition(ids["alice"], to=State.STARTING)
    status = hub.call("alice", "GET", f"/servers/{ids['alice']}").json()
    assert status["queue"]["position"] == 1 and status["queue"]["queue_length"] == 2

    # Bob asking about Alice's entry: the 404 of one that is not there.
    for server_id in (ids["alice"], ids["alice"] + 1000):
        for method, body in (("GET", None), ("PATCH", {"position": 1}), ("DELETE", None)):
            response = hub.call("bob", method, f"/queue/{server_id}", body=body)
            assert response.status_code == 404, (method, response.text)
            assert response.json() == {
                "message": f"Compute server {server_id} is not in a queue.",
                "reason": "NotFoundError",
                "field": "id",
            }
    refused = hub.call("bob", "PATCH", f"/queue/{ids['bob']}", body={"position": 1})
    assert refused.status_code == 403 and refused.json()["field"] == "position"
    bad = hub.call(ADMIN, "PATCH", f"/queue/{ids['bob']}", body={"position": 0})
    assert bad.status_code == 400 and bad.json()["field"] == "position"

    # The admin sees the whole line, moves Bob to the front and cancels Alice's entry.
    line = hub.call(ADMIN, "GET", "/queue").json()["entries"]
    assert [(e["owner"], e["position"]) for e in line] == [("alice", 1), ("bob", 2)]
    moved = hub.call(ADMIN, "PATCH", f"/queue/{ids['bob']}", body={"position": 1})
    assert moved.status_code == 200 and moved.json()["position"] == 1, moved.text
    assert hub.call("alice", "GET", "/queue").json()["entries"][0]["position"] == 2
    cancelled = hub.call(ADMIN, "DELETE", f"/queue/{ids['alice']}")
    assert cancelled.json()["cancelled_by"] == ADMIN
    audit = hub.call(ADMIN, "GET", "/audit").json()["entries"]
    assert [(e["actor"], e["owner"], e["action"]) for e in audit if "queue" in e["action"]] == [
        (ADMIN, "bob", "queue_move"),
        (ADMIN, "alice", "queue_cancel"),
    ]

    # Spend per user and group: the admin's, as CSV; a user is refused; a bad month named.
    assert hub.call("alice", "GET", "/audit/spend").status_code == 403
    spend = hub.call(ADMIN, "GET", "/audit/spend?format=csv&month=2026-12")
    assert spend.status_code == 200 and spend.headers["Content-Type"].startswith("text/csv")
    assert spend.text.splitlines()[0] == (
        "month,kind,name,currency,spent,servers,deleted_servers,unknown"
    )
    bad = hub.call(ADMIN, "GET", "/audit/spend?month=2026-13")
    assert bad.status_code == 400 and bad.json()["field"] == "month"
    for server_id in ids.values():
        hosts.release(server_id)
    database.close()


@pytest.mark.timeout(600)
def test_two_users_each_name_a_server_gpu_box_and_see_only_their_own(hub: Hub) -> None:
    made = {}
    for user in ("alice", "bob"):
        response = hub.call(user, "POST", "/servers", body={"name": "gpu-box"})
        assert response.status_code == 201, response.text
        made[user] = response.json()["id"]
    # A duplicate of one's own name: the refusal it always was, about one's own server.
    again = hub.call("alice", "POST", "/servers", body={"name": "GPU-Box"})
    assert again.status_code == 409 and again.json() == {
        "message": "A compute server named 'GPU-Box' already exists.",
        "reason": "ConflictError",
        "field": "name",
    }
    for user, other in (("alice", "bob"), ("bob", "alice")):
        listed = hub.call(user, "GET", "/servers").json()["servers"]
        assert [s["id"] for s in listed if s["name"] == "gpu-box"] == [made[user]]
        # The launcher's kernel specs: "Python 3 on gpu-box" is the user's own server's.
        specs = requests.get(
            f"{hub.url}/user/{user}/api/kernelspecs",
            headers={"Authorization": f"token {hub.tokens[user]}"},
            timeout=60,
        ).json()["kernelspecs"]
        ours = [
            spec["spec"]["metadata"]["compute_server"]["id"]
            for spec in specs.values()
            if spec["spec"]["display_name"].endswith(" on gpu-box")
        ]
        assert ours and set(ours) == {made[user]}, specs.keys()
        assert made[other] not in {
            (spec["spec"]["metadata"].get("compute_server") or {}).get("id")
            for spec in specs.values()
        }
    # The admin sees both, each with its owner.
    everyone = hub.call(ADMIN, "GET", "/servers?scope=all").json()["servers"]
    assert [(s["id"], s["owner"]) for s in everyone if s["name"] == "gpu-box"] == [
        (made["alice"], "alice"),
        (made["bob"], "bob"),
    ]
