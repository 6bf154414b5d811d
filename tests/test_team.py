"""Team mode in the store, on one shared database: owners, quotas checked in the start's
transaction (two starts racing for the last of a quota), the last GPU of a shared host raced
for by two users, and an audit log that outlives the servers.

Two processes are two ``ServerStore``s, each with its own ``Database`` (engine and pool), as
two users' Jupyter servers have; on PostgreSQL each logs in with its user's own login, as the
control plane issues it (tests/postgres.py ``login_url``), so PostgreSQL's row-level security
is in force as in a team. Hosts are registered with the owner's login (an admin's part).
The Hub's part (who is asking) is tests/test_team_hub.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from jupyter_compute_servers.db import Database
from jupyter_compute_servers.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from jupyter_compute_servers.hosts import HostStore, Slice
from jupyter_compute_servers.models import GpuSpec, ServerConfig, State
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.team import (
    Identity,
    Quota,
    Team,
    current_actor,
    parse_access,
    parse_quotas,
)

from .postgres import login_url
from .races import race_two_starts

GPU = "NVIDIA A100-SXM4-80GB"


def scoped(url: str, owner: str) -> ServerStore:
    return ServerStore(Database(login_url(url, owner)), clock=time.time, owner=owner, scoped=True)


def make(store: ServerStore, name: str, gpus: int = 0) -> int:
    config = ServerConfig(cpu=1, memory_gb=1.0, gpu=GpuSpec(GPU, gpus) if gpus else None)
    record = store.create(
        name=name,
        color="#1f77b4",
        notes="",
        cloud="ssh",
        config=config,
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    return record.id


def test_each_user_sees_and_changes_only_their_own_servers(db_url):
    alice, bob = scoped(db_url, "alice"), scoped(db_url, "bob")
    mine = make(alice, "alice-box")
    theirs = make(bob, "bob-box")
    assert [s.name for s in alice.servers()] == ["alice-box"]
    assert [s.owner for s in bob.servers()] == ["bob"]
    # Another's id is the very answer an unknown id gets, for every read and change.
    unknown = max(mine, theirs) + 100
    for server_id in (mine, unknown):
        for call in (
            lambda i=server_id: bob.get(i),
            lambda i=server_id: bob.transition(i, to=State.STARTING, action="start"),
            lambda i=server_id: bob.update_fields(i, notes="mine now"),
            lambda i=server_id: bob.delete(i),
        ):
            with pytest.raises(NotFoundError) as refused:
                call()
            assert refused.value.message == f"No compute server with id {server_id}."
    assert alice.get(mine).notes == "" and alice.get(mine).state is State.DEPROVISIONED
    assert [h.server_id for h in bob.history()] == [theirs]  # the history is scoped too
    # The admin's view (unscoped reads) has everyone's, each with its owner: on an admin's
    # login (PostgreSQL), where a user's login reads its own rows only, whatever it asks.
    admin = ServerStore(
        Database(login_url(db_url, "root", admin=True)), clock=time.time, owner="root"
    )
    assert [(s.name, s.owner) for s in admin.all_servers()] == [
        ("alice-box", "alice"),
        ("bob-box", "bob"),
    ]
    assert admin.get_any(mine).owner == "alice"
    admin.database.close()
    if not bob.database.is_sqlite:
        assert [(s.name, s.owner) for s in bob.all_servers()] == [("bob-box", "bob")]
        with pytest.raises(NotFoundError):
            bob.get_any(mine)
    # Standalone (unscoped), a store sees everything as before, and stamps its owner.
    plain = ServerStore(db_url, clock=time.time, owner="me")
    assert {s.name for s in plain.servers()} == {"alice-box", "bob-box"}
    assert plain.get(make(plain, "local")).owner == "me"
    for store in (alice, bob, plain):
        store.close()
        store.database.close()


def test_names_are_unique_per_owner_and_no_answer_tells_another_users(db_url):
    alice, bob = scoped(db_url, "alice"), scoped(db_url, "bob")
    mine = make(alice, "gpu-box")
    theirs = make(bob, "gpu-box")  # Alice's "gpu-box" is none of Bob's business
    assert [(s.id, s.name, s.owner) for s in alice.servers()] == [(mine, "gpu-box", "alice")]
    assert [(s.id, s.name, s.owner) for s in bob.servers()] == [(theirs, "gpu-box", "bob")]
    # Each one's lookup by name (the CLI's) finds their own, in any case.
    assert alice.find("gpu-box").id == mine and bob.find("GPU-BOX").id == theirs

    # A duplicate of one's own name: refused as it always was, at create and at a rename.
    spare = make(alice, "alice-only")
    for attempt in (
        lambda: make(alice, "GPU-Box"),
        lambda: alice.update_fields(spare, name="GPU-Box"),
    ):
        with pytest.raises(ConflictError) as refused:
            attempt()
        assert refused.value.message == "A compute server named 'GPU-Box' already exists."
        assert refused.value.field == "name"
    # Another user's name is free to take, by a rename too; and Bob asking for Alice's
    # other server by name gets the answer of a name nobody has.
    bob_spare = make(bob, "bob-box")
    assert bob.update_fields(bob_spare, name="alice-only").name == "alice-only"
    bob.update_fields(bob_spare, name="bob-box")
    for name in ("alice-only", "no-such-box"):
        with pytest.raises(NotFoundError) as missing:
            bob.find(name)
        assert missing.value.message == f"No compute server named {name!r}."

    # The database's own unique index (revision 0006) is per owner: a second row of one
    # owner's name is refused by it even past the store's check; another owner's is not.
    row = {"color": "#000000", "cloud": "ssh", "state": "deprovisioned", "config": "{}"}
    row |= {"created": 1.0, "updated": 1.0}
    insert = text(
        "INSERT INTO servers (name, owner, color, cloud, state, config, created, updated) "
        "VALUES (:name, :owner, :color, :cloud, :state, :config, :created, :updated)"
    )
    with pytest.raises(IntegrityError), alice.database.transaction() as db:
        db.execute(insert, {**row, "name": "GPU-BOX", "owner": "alice"})
    # (carol's row is made with the owner's login: alice's own may make only hers)
    plain = ServerStore(db_url, clock=time.time, owner="me")
    with plain.database.transaction() as db:
        db.execute(insert, {**row, "name": "GPU-BOX", "owner": "carol"})

    [carols] = [s.id for s in plain.all_servers() if s.owner == "carol"]
    # The admin's view (here the owner's login's) has each with its owner; so has the audit
    # log. (A user's login reads its own rows only: test_each_user_sees_and_changes_only...)
    assert [(s.name, s.owner) for s in plain.all_servers() if s.name.lower() == "gpu-box"] == [
        ("gpu-box", "alice"),
        ("gpu-box", "bob"),
        ("GPU-BOX", "carol"),
    ]
    assert [(e.owner, e.server_id) for e in plain.audit() if e.server_name == "gpu-box"] == [
        ("alice", mine),
        ("bob", theirs),
    ]
    # Standalone (unscoped: one owner) names stay unique across the store, and a name that
    # several owners of a team's database give is refused by name, naming them; ids work.
    with pytest.raises(ConflictError) as refused:
        make(plain, "gpu-box")
    assert refused.value.message == "A compute server named 'gpu-box' already exists."
    with pytest.raises(ConflictError) as ambiguous:
        plain.find("gpu-box")
    assert ambiguous.value.message == (
        f"3 compute servers are named 'gpu-box', of different owners: give the id of the one "
        f"you mean ({mine} (alice), {theirs} (bob), {carols} (carol))."
    )
    assert plain.find(str(theirs)).owner == "bob"
    for store in (alice, bob, plain):
        store.close()
        store.database.close()


def test_a_host_delete_refused_names_each_users_server_with_its_owner(db_url):
    alice, bob = scoped(db_url, "alice"), scoped(db_url, "bob")
    hosts = HostStore(Database(db_url), clock=time.time)
    host = hosts.create(name="lab-gpu", hostname="127.0.0.1", port=22, username="")
    for store in (alice, bob):
        store.create(
            name="gpu-box",
            color="#1f77b4",
            notes="",
            cloud="ssh",
            config=ServerConfig(cpu=1, memory_gb=1.0, extra={"host": host.id}),
            idle_timeout_minutes=None,
            spend_limit=None,
        )
    with pytest.raises(ConflictError) as refused:
        hosts.delete(host.id)
    assert refused.value.message == (
        "Servers use this host (gpu-box (alice), gpu-box (bob)); delete them first."
    )
    hosts.database.close()
    for store in (alice, bob):
        store.close()
        store.database.close()


def test_two_starts_racing_for_the_last_of_a_quota_one_wins_one_is_told_why(postgres_server):
    url = postgres_server.create_database()
    team = Team(enabled=True, owner="alice", quotas={"*": Quota(running_servers=1, gpus=2)})
    one, two = scoped(url, "alice"), scoped(url, "alice")  # two processes of one user
    first, second = make(one, "first", gpus=1), make(one, "second", gpus=1)
    started, refusal = race_two_starts(
        url,
        lambda db, store, owner, config: team.check_start(db, store, owner, config),
        (one, first),
        (two, second),
    )
    assert started.state is State.STARTING
    assert isinstance(refusal, ConflictError), refusal
    assert refusal.status == 409 and refusal.field == "quota.running_servers"
    assert refusal.message.startswith(
        "Quota reached: alice may have 1 compute server(s) running at once and has 1."
    )
    assert one.get(second).state is State.DEPROVISIONED
    assert one.usage("alice") == {"running_servers": 1, "gpus": 1, "cpu": 1, "memory_gb": 1.0}
    # The GPU quota says how many are left.
    team.quotas = {"*": Quota(running_servers=5, gpus=2)}
    third = make(one, "third", gpus=2)
    with pytest.raises(ConflictError) as refused:
        one.transition(
            third,
            to=State.STARTING,
            action="start",
            admit=lambda db, owner, config: team.check_start(db, one, owner, config),
        )
    assert "needs 2 GPU(s); alice has 1 of 2 GPU(s) left" in refused.value.message
    for store in (one, two):
        store.close()
        store.database.close()


def test_two_users_racing_for_a_hosts_last_gpu_one_gets_it_the_other_queues(postgres_server):
    url = postgres_server.create_database()
    alice, bob = scoped(url, "alice"), scoped(url, "bob")
    inventory = {
        "cpu_count": 8,
        "memory_total": 32 * 2**30,
        "gpus": [{"uuid": "GPU-0", "name": GPU}, {"uuid": "GPU-1", "name": GPU}],
    }
    hosts_a = HostStore(alice.database, clock=time.time)
    hosts_b = HostStore(bob.database, clock=time.time)
    admin = HostStore(Database(url), clock=time.time)
    host = admin.create(
        name="lab", hostname="127.0.0.1", port=22, username="u", inventory=inventory
    )
    held = make(alice, "holder", gpus=1)
    assert isinstance(hosts_a.allocate(held, host, 1, 1.0, GpuSpec(GPU, 1)), Slice)
    racers = {"alice": (hosts_a, make(alice, "a", gpus=1)), "bob": (hosts_b, make(bob, "b", 1))}
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def claim(user: str) -> None:
        hosts, server_id = racers[user]
        barrier.wait()
        results[user] = hosts.allocate(server_id, host, 1, 1.0, GpuSpec(GPU, 1))

    threads = [threading.Thread(target=claim, args=(user,)) for user in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [u for u, r in results.items() if isinstance(r, Slice)]
    assert len(winners) == 1, results
    loser = "bob" if winners == ["alice"] else "alice"
    assert results[winners[0]].gpu_uuids == ["GPU-1"]
    assert results[loser] == f"1 free {GPU} needed, 0 free"
    assert hosts_a.queue_position(racers[loser][1]) == 1  # it waits, first in line
    admin.database.close()
    for store in (alice, bob):
        store.close()
        store.database.close()


def test_the_audit_log_says_who_did_what_and_outlives_the_server(db_url):
    store = scoped(db_url, "alice")
    server_id = make(store, "short-lived")
    store.update_fields(server_id, notes="for a paper")
    store.update_fields(server_id, progress={"step": 1})  # bookkeeping: not audited
    token = current_actor.set("root-admin")
    try:
        store.transition(server_id, to=State.STARTING, action="start", reason="start requested")
    finally:
        current_actor.reset(token)
    store.transition(server_id, to=State.DEPROVISIONED, action="deprovision")
    store.delete(server_id)
    with pytest.raises(NotFoundError):
        store.get(server_id)
    # Read as an admin does (a user's own login may add lines, not read them).
    admin = ServerStore(Database(db_url), clock=time.time, owner="alice", scoped=True)
    entries = [(e.actor, e.owner, e.server_id, e.server_name, e.action) for e in admin.audit()]
    assert entries == [
        ("alice", "alice", server_id, "short-lived", "create"),
        ("alice", "alice", server_id, "short-lived", "edit"),
        ("root-admin", "alice", server_id, "short-lived", "start"),
        ("alice", "alice", server_id, "short-lived", "deprovision"),
        ("alice", "alice", server_id, "short-lived", "delete"),
    ]
    assert admin.audit()[1].detail == "notes"
    # The history keeps the owner too, so a deleted server's spend stays its owner's.
    assert {h.server_id for h in store.history()} == {server_id}
    for each in (store, admin):
        each.close()
        each.database.close()


def test_quotas_are_validated_and_the_most_generous_group_counts():
    quotas, budgets = parse_quotas(
        {
            "*": {"running_servers": 1, "gpus": 0},
            "group:staff": {"gpus": 4, "group_monthly_spend": 100},
            "group:course": {"running_servers": 2, "gpus": 1},
            "user:carol": {"running_servers": 3},
        }
    )
    team = Team(enabled=True, owner="alice", quotas=quotas)
    assert team.quota_for("alice", ()) == Quota(1, 0)
    assert budgets == {"staff": 100.0}  # the group's own, not each member's
    assert parse_quotas({"*": {"monthly_spend": 12.5, "memory_gb": 0.5, "cpu": 2}})[0][
        "*"
    ] == Quota(cpu=2, memory_gb=0.5, monthly_spend=12.5)
    assert team.quota_for("dave", ("course", "staff")) == Quota(None, 4)
    assert team.quota_for("erin", ("course",)) == Quota(2, 1)
    assert team.quota_for("carol", ("staff",)) == Quota(3, None)
    assert Team(enabled=False, owner="me", quotas=quotas).quota_for("me", ()) == Quota()
    for bad, says in (
        ([], "quotas must be an object."),
        ({"users:x": {}}, 'quotas key \'users:x\' must be "*", "user:NAME" or "group:NAME".'),
        (
            {"*": {"gpu": 1}},
            "quotas['*'] has an unknown field 'gpu' (known: running_servers, gpus, "
            "gpus_per_host, cpu, memory_gb, monthly_spend, group_monthly_spend).",
        ),
        ({"*": {"gpus": -1}}, "quotas['*'].gpus must be a whole number >= 0 or null."),
        ({"*": {"gpus": True}}, "quotas['*'].gpus must be a whole number >= 0 or null."),
        ({"*": {"cpu": 1.5}}, "quotas['*'].cpu must be a whole number >= 0 or null."),
        (
            {"*": {"monthly_spend": float("nan")}},
            "quotas['*'].monthly_spend must be a number >= 0 or null.",
        ),
        ({"*": {"memory_gb": "8"}}, "quotas['*'].memory_gb must be a number >= 0 or null."),
        (
            {"user:x": {"group_monthly_spend": 5}},
            "quotas['user:x'].group_monthly_spend is a group's budget: give it in a "
            '"group:NAME" entry.',
        ),
    ):
        with pytest.raises(ValidationError) as refused:
            parse_quotas(bad)
        assert (refused.value.message, refused.value.field) == (says, "quotas")


def test_admins_come_from_the_settings_or_the_hub():
    team = Team(
        enabled=True,
        owner="alice",
        admin_users=frozenset({"root"}),
        admin_groups=frozenset({"compute-admins"}),
    )

    class HubUser:
        def __init__(self, model: dict[str, Any]) -> None:
            self.hub_user = model
            self.username = model["name"]

    assert team.identity(HubUser({"name": "alice", "groups": ["course"]})) == Identity(
        "alice", ("course",), False
    )
    assert team.owner_groups == ("course",)  # the owner's groups, for their quotas
    assert team.identity(HubUser({"name": "bob", "groups": ["compute-admins"]})).admin
    assert team.identity(HubUser({"name": "root", "groups": []})).admin
    assert team.identity(HubUser({"name": "eve", "groups": [], "admin": True})).admin
    assert team.owner_groups == ("course",)  # others' requests do not change them
    assert Team(enabled=False, owner="me").identity(None) == Identity("me", (), True)


def test_access_lists_keep_a_resource_for_the_users_and_groups_they_name():
    access = parse_access(
        {"cloud:gcp": ["alice", "group:staff"], "gpu:T4": ["group:course"], "host:lab": []}
    )
    team = Team(enabled=True, owner="bob", access=access)
    team.check_access("cloud", "local", "cloud")  # not listed: open
    with pytest.raises(ForbiddenError) as refused:
        team.check_access("cloud", "gcp", "cloud")
    assert refused.value.status == 403 and refused.value.field == "cloud"
    assert refused.value.message == (
        "bob may not use the cloud 'gcp': its access list keeps it for others. Ask an admin "
        "to add you or one of your groups."
    )
    team.owner_groups = ("staff",)
    team.check_access("cloud", "gcp", "cloud")  # by a group
    with pytest.raises(ForbiddenError):
        team.check_access("gpu", "T4", "config.gpu.type")
    Team(enabled=True, owner="alice", access=access).check_access("cloud", "gcp", "cloud")
    team.owner_admin = True
    team.check_access("host", "lab", "config.extra.host")  # admins: everything
    Team(enabled=False, owner="bob", access=access).check_access("host", "lab", "x")
    for bad in ([], {"disk:x": []}, {"gpu:": []}, {"gpu:T4": "alice"}, {"gpu:T4": ["group:"]}):
        with pytest.raises(ValidationError) as invalid:
            parse_access(bad)
        assert invalid.value.field == "access"
