"""The server store and the hosts' slices on both databases (SQLite and PostgreSQL): records
and names, the compare-and-swap of a state change, and the decisions that must hold between
processes: two processes racing for one server's action (one winner), for one name (one
winner), and for the GPUs of one host (never the same GPU twice)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from jupyter_compute_servers.db import Database
from jupyter_compute_servers.errors import ConflictError, NotFoundError
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.models import DailyStop, GpuSpec, ServerConfig, SpendLimit, State
from jupyter_compute_servers.store import ServerStore

ROOT = Path(__file__).parent.parent
A100 = "NVIDIA A100-SXM4-80GB"


@pytest.fixture
def store(db_url):
    store = ServerStore(db_url, clock=time.time)
    yield store
    store.close()


def create(store: ServerStore, name: str, **config) -> int:
    return store.create(
        name=name,
        color="#000000",
        notes="",
        cloud="local",
        config=ServerConfig(**config),
        idle_timeout_minutes=None,
        spend_limit=None,
    ).id


def test_servers_round_trip_and_names_are_unique_in_any_case(store):
    server = store.create(
        name="Ünïcode Box",
        color="#1f77b4",
        notes="line\nbreak",
        cloud="local",
        config=ServerConfig(cpu=2, memory_gb=1.5, gpu=GpuSpec(A100, 1), extra={"a": [1]}),
        idle_timeout_minutes=30,
        spend_limit=SpendLimit(12.5, 7),
        daily_stop=DailyStop("19:30", "Europe/Paris"),
    )
    assert store.get(server.id) == server
    assert server.config.gpu == GpuSpec(A100, 1) and server.spend_limit == SpendLimit(12.5, 7)
    # Other letters of ASCII's case: the same name (as SQLite's NOCASE compares them).
    assert store.find("ÜNïCODE BOX").id == server.id == store.find(str(server.id)).id
    with pytest.raises(ConflictError):
        create(store, "ÜnïCODE box")
    other = create(store, "plain")
    with pytest.raises(ConflictError):
        create(store, "PLAIN")
    with pytest.raises(ConflictError):
        store.update_fields(other, name="Ünïcode BOX")
    store.update_fields(other, name="Plain", kernel_specs={"python3": {"argv": ["x"]}})
    assert store.find("plain").name == "Plain"
    assert store.get(other).kernel_specs == {"python3": {"argv": ["x"]}}
    # Timestamps keep every digit (SQLite's REAL, PostgreSQL's double precision).
    assert store.get(other).updated == pytest.approx(time.time(), abs=60)
    assert isinstance(store.get(other).created, float)
    with pytest.raises(NotFoundError):
        store.get(999)
    with pytest.raises(NotFoundError):
        store.find("nobody")


def test_transitions_are_a_compare_and_swap_and_keep_the_history(store):
    server_id = create(store, "box")
    start = frozenset({State.DEPROVISIONED, State.OFF})
    store.transition(server_id, to=State.STARTING, expected=start, action="start", operation="s")
    with pytest.raises(ConflictError) as refused:
        store.transition(server_id, to=State.STARTING, expected=start, action="start")
    assert refused.value.details["state"] == "starting"
    store.update_fields(server_id, progress={"step": 1})
    assert store.get(server_id).progress == {"step": 1}
    running = store.transition(server_id, to=State.RUNNING, reason="up")
    assert running.operation is None and running.progress is None
    with pytest.raises(ConflictError):
        store.update_fields(server_id, expected_state=State.OFF, notes="x")
    with pytest.raises(ConflictError):
        store.delete(server_id)
    assert [(h.state, h.reason, h.action) for h in store.history(server_id)] == [
        (State.DEPROVISIONED, "created", None),
        (State.STARTING, "", "start"),
        (State.RUNNING, "up", None),
    ]
    store.transition(server_id, to=State.DEPROVISIONED)
    store.delete(server_id)
    assert store.servers() == []
    assert store.history(server_id)[-1].reason == "deleted"
    assert store.state_counts() == {server_id: 5}


def test_histories_of_many_servers_read_together_match_each_read_alone(store, monkeypatch):
    import jupyter_compute_servers.db.database as database

    monkeypatch.setattr(database, "IN_BATCH", 2)  # three queries for five servers
    ids = [create(store, f"box-{i}") for i in range(5)]
    for server_id in ids[::2]:
        store.transition(server_id, to=State.STARTING, action="start")
        store.transition(server_id, to=State.RUNNING, reason="up")
    asked = [*ids[1:], 9999]  # a server with no history at all reads as one with none
    together = store.histories_of(asked)
    assert set(together) == set(asked)
    for server_id in ids[1:]:
        assert together[server_id] == store.history(server_id)
    assert together[9999] == []
    assert [h.state for h in together[ids[2]]] == [
        State.DEPROVISIONED,
        State.STARTING,
        State.RUNNING,
    ]


def test_a_change_recorded_at_the_providers_time_stays_in_order(db_url):
    """A cloud may give when a change really happened (a Slurm job's StartTime, EndTime):
    the history gets that time, kept between the previous change and now."""
    now = [1000.0]
    store = ServerStore(db_url, clock=lambda: now[0])
    try:
        server_id = create(store, "job")
        store.transition(server_id, to=State.STARTING, action="start")
        now[0] = 1010.0
        store.transition(server_id, to=State.RUNNING, at=1004.0)
        assert store.history(server_id)[-1].at == 1004.0
        now[0] = 1020.0
        store.transition(server_id, to=State.STOPPING)
        # Whole seconds may fall before the previous change: recorded at that change's time.
        now[0] = 1030.0
        store.transition(server_id, to=State.OFF, at=1019.0)
        assert store.history(server_id)[-1].at == 1020.0
        # Never after now.
        store.transition(server_id, to=State.STARTING, at=5000.0)
        assert store.history(server_id)[-1].at == 1030.0
        assert [h.at for h in store.history(server_id)] == [
            1000.0,
            1000.0,
            1004.0,
            1020.0,
            1020.0,
            1030.0,
        ]
    finally:
        store.close()


# --- between processes ------------------------------------------------------------------------

# Each worker opens its own Database (its own engine and pool, as another process would), says
# "ready", then for each of its tasks waits for "go", acts, and prints what it got as one JSON
# line: the workers of a race are released at once, round after round.
WORKER = """
import json, sys, time
from jupyter_compute_servers.errors import ConflictError
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.models import GpuSpec, ServerConfig, State
from jupyter_compute_servers.store import ServerStore

url, task, rounds = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
store = ServerStore(url, clock=time.time)
print("ready", flush=True)
for arg in rounds:
    sys.stdin.readline()
    result = []
    if task == "start":
        try:
            store.transition(
                arg, to=State.STARTING, expected=frozenset({State.OFF}), action="start"
            )
            result.append("won")
        except ConflictError:
            result.append("refused")
    elif task == "create":
        try:
            store.create(name=arg, color="#000000", notes="", cloud="local",
                         config=ServerConfig(), idle_timeout_minutes=None, spend_limit=None)
            result.append("won")
        except ConflictError:
            result.append("refused")
    elif task == "gpus":
        hosts = HostStore(store.database, clock=time.time)
        host = hosts.get(arg["host"])
        for _ in range(arg["rounds"]):
            for server_id in arg["servers"]:
                got = hosts.allocate(server_id, host, 1, 1.0, GpuSpec(arg["gpu"], 1))
                if isinstance(got, str):
                    hosts.leave_queue(server_id)
                    continue
                # Held from (at least) here to there: committed before, released after.
                held = time.monotonic()
                time.sleep(0.002)
                result.append([got.gpu_uuids, held, time.monotonic()])
                hosts.release(server_id)
    print(json.dumps(result), flush=True)
store.close()
"""


def race(db_url: str, task: str, rounds: list[list]) -> list[list]:
    """One worker per list of tasks; round after round, each worker's task of that round
    released at once. The results, by round."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, task, json.dumps(tasks)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for tasks in zip(*rounds, strict=True)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        results = []
        for _ in rounds:
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            results.append([json.loads(worker.stdout.readline()) for worker in workers])  # type: ignore[union-attr]
        for worker in workers:
            assert worker.wait(60) == 0
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


def test_two_processes_one_action_one_winner(store, db_url):
    servers = [create(store, f"s{n}") for n in range(5)]
    for server_id in servers:
        store.transition(server_id, to=State.OFF)
    for results in race(db_url, "start", [[server_id, server_id] for server_id in servers]):
        assert sorted(r[0] for r in results) == ["refused", "won"]
    for server_id in servers:
        assert [h.action for h in store.history(server_id)].count("start") == 1


def test_two_processes_one_name_one_winner(store, db_url):
    for results in race(db_url, "create", [[f"twin-{n}", f"TWIN-{n}"] for n in range(5)]):
        assert sorted(r[0] for r in results) == ["refused", "won"]
    assert len(store.servers()) == 5


def test_processes_never_get_the_same_gpu(store, db_url):
    hosts = HostStore(store.database, clock=time.time)
    host = hosts.create(name="rack", hostname="127.0.0.1", port=22, username="u")
    gpus = [{"name": A100, "uuid": f"GPU-{n}"} for n in range(2)]
    hosts.update(host.id, inventory={"cpu_count": 64, "memory_total": 2**40, "gpus": gpus})
    workers = [[create(store, f"w{w}-{n}") for n in range(2)] for w in range(4)]
    args = [{"host": host.id, "servers": ids, "gpu": A100, "rounds": 10} for ids in workers]
    held: dict[str, list[tuple[float, float]]] = defaultdict(list)
    (results,) = race(db_url, "gpus", [args])
    for result in results:
        for uuids, start, end in result:
            assert len(uuids) == 1
            held[uuids[0]].append((start, end))
    assert set(held) <= {"GPU-0", "GPU-1"} and sum(map(len, held.values())) > 0
    for uuid, intervals in held.items():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"{uuid} given to two servers at once"
    assert hosts.slices_on(host.id) == []


def test_a_slice_is_given_once_and_the_queue_is_first_come_first_served(store):
    hosts = HostStore(store.database, clock=time.time)
    host = hosts.create(name="rack", hostname="h", port=22, username="u")
    gpus = [{"name": A100, "uuid": "GPU-0"}]
    host = hosts.update(
        host.id, inventory={"cpu_count": 4, "memory_total": 8 * 2**30, "gpus": gpus}
    )
    first, second, third = (create(store, name) for name in ("a", "b", "c"))
    got = hosts.allocate(first, host, 2, 4.0, GpuSpec(A100, 1))
    assert not isinstance(got, str) and got.gpu_uuids == ["GPU-0"]
    assert hosts.allocate(first, host, 2, 4.0, GpuSpec(A100, 1)) == got  # asked again
    assert hosts.allocate(second, host, 1, 1.0, GpuSpec(A100, 1)) == "1 free " + A100 + (
        " needed, 0 free"
    )
    assert hosts.allocate(third, host, 1, 1.0, None) == "waiting for the servers ahead of it"
    assert (hosts.queue_position(second), hosts.queue_position(third)) == (1, 2)
    with pytest.raises(ConflictError):
        hosts.delete(host.id)
    hosts.release(first)
    assert hosts.allocate(third, host, 1, 1.0, None) == "waiting for the servers ahead of it"
    assert not isinstance(hosts.allocate(second, host, 1, 1.0, GpuSpec(A100, 1)), str)
    assert hosts.queue_position(second) is None and hosts.queue_position(third) == 1
    assert hosts.slice_of(first) is None and hosts.slice_of(second) is not None
    with pytest.raises(ConflictError):
        hosts.create(name="RACK", hostname="h", port=22, username="u")
    assert hosts.find("Rack").id == host.id == hosts.find(str(host.id)).id


def test_stores_share_one_database(db_url):
    database = Database(db_url)
    store = ServerStore(database, clock=time.time)
    server_id = create(store, "shared")
    store.close()  # not its database: still open
    assert ServerStore(database, clock=time.time).get(server_id).name == "shared"
    database.close()
