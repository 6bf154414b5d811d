"""Made the stores in this directory with the code of commit 79984a5, the last before the
database owner (jupyter_compute_servers/db): SQLite files with PRAGMA user_version migrations
and no alembic_version table, as users have them. Kept as it ran, for the record; it needs that
commit's store.py (``git worktree add /tmp/old 79984a5``, then run it there with
``python tests/legacy_stores/make.py tests/legacy_stores``).

- v6.db: every migration of that code (user_version 6), with rows in every table;
- v3.db: the first three migrations only (user_version 3: servers, history, hosts, slices and
  the GPU queue), as a store last opened by an older release.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from jupyter_compute_servers import store as store_module
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.models import DailyStop, GpuSpec, ServerConfig, SpendLimit, State
from jupyter_compute_servers.store import MIGRATIONS, ServerStore
from jupyter_compute_servers.sync.plan import Base
from jupyter_compute_servers.sync.records import SyncStore
from jupyter_compute_servers.sync.settings import SyncSettings

T0 = 1_900_000_000.123456


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 1.000001
        return self.now


def servers_and_hosts(store: ServerStore) -> None:
    first = store.create(
        name="Ünïcode box",
        color="#1f77b4",
        notes="notes\nwith 'quotes' and \"double\" ones",
        cloud="ssh",
        config=ServerConfig(
            cpu=4, memory_gb=16.5, gpu=GpuSpec("NVIDIA A100-SXM4-80GB", 1), extra={"host": 1}
        ),
        idle_timeout_minutes=45,
        spend_limit=SpendLimit(12.5, 7),
    )
    store.create(
        name="plain",
        color="#ff7f0e",
        notes="",
        cloud="local",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    store.transition(first.id, to=State.STARTING, action="start", operation="start", owner="h:1")
    store.update_fields(first.id, cloud_data={"pid": 4242, "token": "t"}, progress={"step": 2})
    store.transition(first.id, to=State.RUNNING, reason="up", keep_operation=True)
    hosts = HostStore(store)
    host = hosts.create(
        name="gpu-host",
        hostname="10.0.0.7",
        port=2222,
        username="lab",
        identity_file="~/.ssh/id_lab",
        use_agent=True,
        python="/opt/py/bin/python3",
        hourly_rate=1.25,
        gpu_rates={"NVIDIA A100-SXM4-80GB": 2.5},
        gpu_wait_minutes=12.5,
    )
    hosts.update(
        host.id,
        host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA",
        host_key_source="~/.ssh/known_hosts",
        inventory={
            "cpu_count": 8,
            "memory_total": 64 * 2**30,
            "gpus": [{"name": "NVIDIA A100-SXM4-80GB", "uuid": f"GPU-{i}"} for i in range(2)],
        },
        inventoried=T0 + 5,
    )
    hosts.create(name="spare", hostname="spare.example", port=22, username="")
    host = hosts.get(host.id)
    sliced = hosts.allocate(first.id, host, 2, 8.0, GpuSpec("NVIDIA A100-SXM4-80GB", 1))
    assert not isinstance(sliced, str), sliced
    third = store.create(
        name="queued",
        color="#2ca02c",
        notes="",
        cloud="ssh",
        config=ServerConfig(cpu=1, gpu=GpuSpec("NVIDIA A100-SXM4-80GB", 2), extra={"host": 1}),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    assert isinstance(
        hosts.allocate(third.id, host, 1, 1.0, GpuSpec("NVIDIA A100-SXM4-80GB", 2)), str
    )


def make_v6(path: Path) -> None:
    store = ServerStore(f"sqlite:///{path}", clock=Clock())
    assert store.schema_version == 6
    servers_and_hosts(store)
    store.update_fields(
        1,
        kernel_specs={"python3": {"display_name": "Python 3", "argv": ["python", "-m"]}},
        daily_stop=DailyStop("19:30", "Europe/Paris"),
    )
    store.create(
        name="gone",
        color="#000000",
        notes="",
        cloud="local",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    store.delete(4)
    store.record_rates(1, {"running": {"hourly": "3.75"}, "off": {"hourly": "0.01"}})
    store.record_rates(2, {"running": {"hourly": "0.1"}}, at=T0 + 0.5)
    store.record_rates(4, {"running": {"hourly": "1"}})
    assert store.add_cost_alert("spend:1:80")
    assert store.add_cost_alert("budget:2030-03:100")
    sync = SyncStore(store.path)
    sync.save_settings(1, SyncSettings(excludes=("*.tmp",), auto_sync_minutes=15))
    tree = sync.tree(1, "/home/u/work", "~/work", "f" * 32)
    sync.commit(
        tree,
        [
            ("a.txt", Base("a" * 64, 10, 1_900_000_000_123_456_789, 0o644, (10, 1, 2, 3), None)),
            (
                "dir/é b.bin",
                Base(
                    "b" * 64,
                    5 * 2**32,
                    1_900_000_001_000_000_001,
                    0o755,
                    (5 * 2**32, 1_900_000_001_000_000_001, 2**40 + 7, 1_900_000_002_000_000_002),
                    (5 * 2**32, 1_900_000_003_000_000_003, 99, 1_900_000_004_000_000_004),
                ),
            ),
        ],
    )
    run = sync.create_run(1, "both", "", "api", "h:1", T0 + 9)
    sync.update_run(
        run,
        state="done",
        finished=T0 + 10,
        progress={"phase": "done"},
        summary={"sent": 1, "conflicts": []},
    )
    sync.create_run(1, "push", "dir", "kernel", "h:2", T0 + 11)
    sync.close()
    store.close()


def make_v3(path: Path) -> None:
    """The rows as the release of migration 3 wrote them (its columns only)."""
    store_module.MIGRATIONS[:] = MIGRATIONS[:3]
    try:
        store = ServerStore(f"sqlite:///{path}", clock=Clock())
    finally:
        store_module.MIGRATIONS[:] = ALL
    assert store.schema_version == 3
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V3_ROWS)
    db.close()


V3_ROWS = f"""
BEGIN;
INSERT INTO servers (name, color, notes, cloud, state, state_reason, config,
    idle_timeout_minutes, spend_limit, created, updated, cloud_data, operation,
    operation_owner, progress)
VALUES ('Old Box', '#1f77b4', 'from release 3', 'ssh', 'running', 'up',
    '{{"cpu": 2, "memory_gb": 4.0, "gpu": {{"type": "T4", "count": 1}}, "extra": {{"host": 1}}}}',
    30, '{{"amount": 5.0, "period_days": 1}}', {T0}, {T0 + 2}, '{{"pid": 7}}', NULL, NULL, NULL),
    ('off one', '#ff7f0e', '', 'local', 'off', '', '{{"cpu": 1, "extra": {{}}}}', NULL, NULL,
    {T0 + 3}, {T0 + 4}, '{{}}', NULL, NULL, NULL);
INSERT INTO state_history (server_id, at, state, reason, action) VALUES
    (1, {T0}, 'deprovisioned', 'created', NULL), (1, {T0 + 1}, 'starting', '', 'start'),
    (1, {T0 + 2}, 'running', 'up', NULL), (2, {T0 + 3}, 'deprovisioned', 'created', NULL),
    (2, {T0 + 4}, 'off', '', NULL);
INSERT INTO hosts (name, hostname, port, username, identity_file, use_agent, host_key,
    host_key_source, pending_host_key, python, hourly_rate, gpu_rates, gpu_wait_minutes,
    inventory, inventory_error, inventoried, created, updated)
VALUES ('rack-1', '192.168.1.9', 22, 'ops', NULL, 1, 'ssh-ed25519 AAAAkey', 'confirmed by the user',
    NULL, 'python3', NULL, '{{"T4": 0.35}}', 30,
    '{{"cpu_count": 4, "memory_total": 17179869184, "gpus": [{{"name": "T4", "uuid": "GPU-t4"}}]}}',
    '', {T0 + 1}, {T0}, {T0 + 1});
INSERT INTO host_slices (server_id, host_id, cpu, memory_gb, gpu_uuids, token, allocated)
VALUES (1, 1, 2, 4.0, '["GPU-t4"]', 'slice-token', {T0 + 1});
INSERT INTO gpu_queue (server_id, host_id, requested) VALUES (2, 1, {T0 + 5});
COMMIT;
"""


ALL = list(MIGRATIONS)


def compact(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("VACUUM")
    db.close()


if __name__ == "__main__":
    out = Path(sys.argv[1]).absolute()
    for name, make in (("v6.db", make_v6), ("v3.db", make_v3)):
        target = out / name
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        make(target)
        compact(target)
        print(target, target.stat().st_size)
