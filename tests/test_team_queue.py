"""Team mode's fair GPU queue, CPU/RAM and monthly spend quotas, and spend per user and group,
on one shared database (SQLite and PostgreSQL) with one ``Services`` per user, as each user's
Jupyter server builds them (``services.build_services``).

The queue through a real JupyterHub (the API, its 404s and 403s) is tests/test_team_hub.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.billing.prices import StateRates
from jupyter_compute_servers.billing.team_spend import spend_rows
from jupyter_compute_servers.clouds.local import LocalCloud
from jupyter_compute_servers.db import Database
from jupyter_compute_servers.errors import (
    CloudError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
)
from jupyter_compute_servers.hosts import HostRecord, HostStore, Slice
from jupyter_compute_servers.models import GpuSpec, ServerConfig, State
from jupyter_compute_servers.services import Services
from jupyter_compute_servers.team import Identity, current_actor

from .composition import services_for
from .postgres import login_url
from .races import race_two_starts

GPU = "NVIDIA A100-SXM4-80GB"
#: 2026-01-10 10:00 UTC: the spend tests' month is January 2026.
JANUARY = dt.datetime(2026, 1, 10, 10, 0, tzinfo=dt.timezone.utc).timestamp()
HOUR = 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def team(tmp_path: Path, db_url: str) -> Iterator[Any]:
    """``team(user, **settings)``: that user's services on the shared database (on PostgreSQL
    with the user's own login, as the control plane issues it; root's is an admin's);
    ``team.hosts``: the hosts as the database's owner registers them."""
    made: list[Services] = []
    owner = Database(db_url)

    def build(user: str, **settings: Any) -> Services:
        # The local cloud (free by default): a server that costs nothing.
        local = LocalCloud(data_dir=str(tmp_path / user / "local"))
        services = services_for(
            tmp_path / user,
            {"local": local},
            db_url=login_url(db_url, user, admin=user == "root"),
            team_mode=True,
            user=user,
            team_admin_users=["root"],
            **settings,
        )
        made.append(services)
        return services

    build.hosts = HostStore(owner, clock=time.time)  # type: ignore[attr-defined]
    yield build
    for services in made:
        asyncio.run(services.close())
    owner.close()


def make(services: Services, name: str, gpus: int = 0, cpu: int = 1, memory: float = 1.0) -> int:
    config = ServerConfig(cpu=cpu, memory_gb=memory, gpu=GpuSpec(GPU, gpus) if gpus else None)
    return services.store.create(
        name=name,
        color="#1f77b4",
        notes="",
        cloud="ssh",
        config=config,
        idle_timeout_minutes=None,
        spend_limit=None,
    ).id


def lab_host(team: Any, gpus: int = 3) -> HostRecord:
    inventory = {
        "cpu_count": 16,
        "memory_total": 64 * 2**30,
        "gpus": [{"uuid": f"GPU-{i}", "name": GPU} for i in range(gpus)],
    }
    return team.hosts.create(
        name="lab", hostname="127.0.0.1", port=22, username="u", inventory=inventory
    )


def claim(services: Services, server_id: int, host: HostRecord, gpus: int = 1) -> Slice | str:
    return services.hosts.hosts.allocate(server_id, host, 1, 1.0, GpuSpec(GPU, gpus))


def identity(name: str) -> Identity:
    return Identity(name, (), name == "root")


def test_a_user_at_their_cap_waits_with_gpus_free_while_the_next_user_is_served(team):
    alice, bob = team("alice", team_queue_user_cap=1), team("bob", team_queue_user_cap=1)
    host = lab_host(team)
    first = make(alice, "a1", gpus=1)
    assert isinstance(claim(alice, first, host), Slice)
    # Alice asks for a second GPU first; two of three are free, but she holds her cap.
    second = make(alice, "a2", gpus=1)
    waiting = claim(alice, second, host)
    assert waiting == (
        "alice holds 1 of this host's GPUs, the most one user may hold at once (1): the next "
        "user's request is served first"
    )
    # Bob, behind her in line, is served first.
    later = make(bob, "b1", gpus=1)
    granted = claim(bob, later, host)
    assert isinstance(granted, Slice) and granted.gpu_uuids == ["GPU-1"]
    # Alice still waits, first in line, and says why (in her status and the admin's queue).
    entry = alice.hosts.hosts.queue_entry(second)
    assert entry is not None
    assert (entry.position, entry.held, entry.cap, entry.over_cap) == (1, 1.0, 1.0, True)
    [seen] = alice.queue.by_server({second}).values()
    assert seen["position"] == 1 and seen["over_cap"] is True and seen["host_name"] == "lab"
    assert seen["estimated_start"]["at"] is None
    assert seen["estimated_start"]["basis"].startswith("unknown: alice holds their most GPUs")
    assert claim(alice, second, host) == waiting
    # Her first server ends: her second is served.
    alice.hosts.hosts.release(first)
    granted = claim(alice, second, host)
    assert isinstance(granted, Slice) and granted.gpu_uuids == ["GPU-0"]
    assert alice.hosts.hosts.queue() == []
    # A quota's gpus_per_host overrides the setting: with 2, a user at 1 is served at once.
    carol = team("carol", team_queue_user_cap=1, quotas={"user:carol": {"gpus_per_host": 2}})
    alice.hosts.hosts.release(second)
    c1, c2 = make(carol, "c1", gpus=1), make(carol, "c2", gpus=1)
    assert isinstance(claim(carol, c1, host), Slice)
    assert isinstance(claim(carol, c2, host), Slice)


def test_positions_estimates_reorder_and_cancel_with_foreign_entries_404(team):
    alice, bob, root = team("alice"), team("bob"), team("root")
    host = lab_host(team, gpus=1)
    holder = make(root, "holder", gpus=1)
    assert isinstance(claim(root, holder, host), Slice)
    a, b = make(alice, "a", gpus=1), make(bob, "b", gpus=1)
    assert claim(alice, a, host) == f"1 free {GPU} needed, 0 free"
    assert claim(bob, b, host) == "waiting for the servers ahead of it"

    # Each user sees their own entry only, with its position; the admin sees the line.
    [mine] = alice.queue.entries_json(identity("alice"))
    assert (mine["server_id"], mine["position"], mine["owner"]) == (a, 1, "alice")
    assert mine["queue_length"] == 2
    # The holder has no known end: the estimate is honestly unknown.
    assert mine["estimated_start"]["at"] is None
    [theirs] = bob.queue.entries_json(identity("bob"))
    assert (theirs["server_id"], theirs["position"]) == (b, 2)
    everyone = root.queue.entries_json(identity("root"))
    assert [(e["server_name"], e["owner"], e["position"]) for e in everyone] == [
        ("a", "alice", 1),
        ("b", "bob", 2),
    ]
    # With a daily stop, the holder's end is known: the first in line gets it as its estimate.
    root.store.update_fields(holder, daily_stop=_daily("23:59"))
    [mine] = alice.queue.entries_json(identity("alice"))
    assert mine["estimated_start"]["at"] is not None and mine["estimated_start"]["at"] > time.time()
    assert "1 of 1 known" in mine["estimated_start"]["basis"]
    [theirs] = bob.queue.entries_json(identity("bob"))
    assert theirs["estimated_start"]["at"] is None  # second in line, one known end
    assert alice.queue.note(a).startswith("estimated start in about ")

    # Another's entry is the 404 of one that is not there, for every read and change.
    unknown = max(a, b) + 100
    for server_id in (a, unknown):
        for call in (
            lambda i=server_id: bob.queue.get_json(i, identity("bob")),
            lambda i=server_id: bob.queue.move(i, 1, identity("bob")),
            lambda i=server_id: bob.queue.cancel(i, identity("bob")),
        ):
            with pytest.raises(NotFoundError) as refused:
                call()
            assert refused.value.message == f"Compute server {server_id} is not in a queue."
    # A user may not reorder, even their own entry.
    with pytest.raises(ForbiddenError):
        bob.queue.move(b, 1, identity("bob"))

    # The admin moves Bob to the front: he is served first when the GPU frees.
    token = current_actor.set("root")
    try:
        moved = root.queue.move(b, 1, identity("root"))
        assert moved["position"] == 1
        assert [e["server_id"] for e in root.queue.entries_json(identity("root"))] == [b, a]
        root.hosts.hosts.release(holder)
        assert claim(alice, a, host) == "waiting for the servers ahead of it"
        assert isinstance(claim(bob, b, host), Slice)
        # And cancels Alice's: her start ends at its next try, saying who cancelled it.
        cancelled = root.queue.cancel(a, identity("root"))
        assert cancelled["cancelled_by"] == "root"
    finally:
        current_actor.reset(token)
    with pytest.raises(CloudError) as ended:
        claim(alice, a, host)
    assert ended.value.message.startswith("root cancelled this server's place in lab's queue.")
    assert alice.hosts.hosts.queue_entry(a) is None
    # Both are in the audit log, the admin as the actor, the entry's owner as the owner.
    audited = [
        (e.actor, e.owner, e.server_id, e.action, e.detail)
        for e in root.store.audit()
        if e.action.startswith("queue_")
    ]
    assert audited == [
        ("root", "bob", b, "queue_move", "from 2 to 1"),
        ("root", "alice", a, "queue_cancel", "at 1"),
    ]
    # A user may cancel their own entry.
    claim(alice, a, host)
    assert alice.queue.cancel(a, identity("alice"))["cancelled_by"] == "alice"


def _daily(at: str) -> Any:
    from jupyter_compute_servers.models import DailyStop

    return DailyStop(at, "UTC")


def _start(services: Services, server_id: int) -> Any:
    """The manager's start transition, with the team's admission in its transaction."""
    store, team_ = services.store, services.team
    cloud = store.get(server_id).cloud
    return store.transition(
        server_id,
        to=State.STARTING,
        action="start",
        admit=lambda db, owner, config: team_.check_start(db, store, owner, config, cloud),
    )


def test_cpu_and_ram_quotas_on_shared_hosts(team):
    alice = team("alice", quotas={"*": {"cpu": 4, "memory_gb": 6}})
    big = make(alice, "big", cpu=3, memory=2.0)
    _start(alice, big)
    with pytest.raises(ConflictError) as refused:
        _start(alice, make(alice, "more-cpu", cpu=2, memory=1.0))
    assert refused.value.field == "quota.cpu"
    assert refused.value.message.startswith(
        "Quota reached: this server needs 2 CPU(s) of a shared host; alice has 1 of 4 left."
    )
    with pytest.raises(ConflictError) as refused:
        _start(alice, make(alice, "more-ram", cpu=1, memory=4.5))
    assert refused.value.field == "quota.memory_gb"
    assert "needs 4.5 GB of RAM of a shared host; alice has 4 of 6 left." in refused.value.message
    _start(alice, make(alice, "fits", cpu=1, memory=4.0))
    assert alice.store.usage("alice") == {
        "running_servers": 2,
        "gpus": 0,
        "cpu": 4,
        "memory_gb": 6.0,
    }
    # Other clouds' servers are not slices of shared hosts: these quotas do not count them.
    other = alice.store.create(
        name="elsewhere",
        color="#1f77b4",
        notes="",
        cloud="local",
        config=ServerConfig(cpu=8, memory_gb=32.0),
        idle_timeout_minutes=None,
        spend_limit=None,
    ).id
    _start(alice, other)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_starts_racing_for_the_last_cpus_one_wins_one_is_told_why(team, db_url):
    one = team("alice", quotas={"*": {"cpu": 4}})
    two = team("alice", quotas={"*": {"cpu": 4}})  # a second process of the same user
    first, second = make(one, "first", cpu=3), make(one, "second", cpu=3)
    team_of = {id(process.store): process.team for process in (one, two)}
    started, refusal = race_two_starts(
        db_url,
        lambda db, store, owner, config: team_of[id(store)].check_start(
            db, store, owner, config, "ssh"
        ),
        (one.store, first),
        (two.store, second),
    )
    assert started.state is State.STARTING
    assert isinstance(refusal, ConflictError) and refusal.field == "quota.cpu", refusal
    assert "alice has 1 of 4 left." in refusal.message


def _run(services: Services, clock: Clock, server_id: int, hours: float, delete: bool) -> None:
    """Run a server for ``hours`` at the clock's time, stop it (and delete it)."""
    store = services.store
    store.transition(server_id, to=State.RUNNING, action="start")
    clock.now += hours * HOUR
    store.transition(server_id, to=State.OFF, action="stop")
    if delete:
        store.transition(server_id, to=State.DEPROVISIONED, action="deprovision")
        store.delete(server_id)


def _priced(services: Services, server_id: int, hourly: str) -> None:
    rates = StateRates.flat(Decimal(hourly), Decimal(0), source="test")
    services.costs.records.record_rates(server_id, rates.snapshot(), at=0.0)


def test_spend_per_user_and_group_outlives_a_deleted_server_and_limits_starts(team):
    # (each user's and each group's: monthly_spend and a group's group_monthly_spend)
    clock = Clock(JANUARY)
    alice = team("alice", quotas={"*": {"monthly_spend": 4}})
    bob = team("bob", quotas={"*": {"monthly_spend": 4}})
    for services in (alice, bob):
        services.store.clock = clock
        services.costs._clock = clock
    alice.store.remember_member("alice", ("course",))
    bob.store.remember_member("bob", ("course", "staff"))
    gone = make(alice, "gone")
    _priced(alice, gone, "1.25")
    _run(alice, clock, gone, 4, delete=True)  # $5, then deleted
    kept = make(bob, "kept")
    _priced(bob, kept, "0.5")
    _run(bob, clock, kept, 2, delete=False)  # $1
    name, rows = spend_rows(alice.costs, "2026-01")
    assert name == "2026-01"
    columns = ("kind", "name", "spent", "servers", "deleted_servers")
    assert [tuple(r[c] for c in columns) for r in rows] == [
        ("user", "alice", 5.0, 1, 1),
        ("user", "bob", 1.0, 1, 0),
        ("group", "course", 6.0, 2, 1),
        ("group", "staff", 1.0, 1, 0),
    ]
    assert spend_rows(alice.costs, "2025-12")[1] == []
    # The monthly quota: Alice has spent $5 of $4 and cannot start another; Bob can.
    with pytest.raises(ConflictError) as refused:
        _start(alice, make(alice, "again"))
    assert refused.value.field == "quota.monthly_spend"
    assert refused.value.message.startswith(
        "Quota reached: alice has spent $5.00 of $4.00 this month;"
    )
    _start(bob, make(bob, "more"))
    # A server that costs nothing (the local cloud, free by default) still starts.
    free = alice.store.create(
        name="free",
        color="#1f77b4",
        notes="",
        cloud="local",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    ).id
    _start(alice, free)
    # A group's own budget counts all its members: course has spent $6 of $5.50 between
    # Alice and Bob, so Bob (under his own $4) may not start another.
    bob.team.group_budgets = {"course": 5.5}
    bob.team.owner_groups = ("course", "staff")  # (as his requests carry them)
    with pytest.raises(ConflictError) as refused:
        _start(bob, make(bob, "over-the-group"))
    assert refused.value.field == "quota.group_monthly_spend"
    assert refused.value.message.startswith(
        "Quota reached: the group course has spent $6.00 of its $5.50 this month;"
    )
