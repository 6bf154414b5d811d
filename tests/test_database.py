"""The database owner: db_url, the set-up of every pooled connection, and the migrations.

Stores made by the releases before it (tests/legacy_stores: SQLite files made by that code,
with PRAGMA user_version and no alembic_version) migrate forward with every row kept; a new
SQLite store has exactly their schema; the tables the modules define are the tables the
migrations make, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from jupyter_compute_servers.billing.records import CostRecords
from jupyter_compute_servers.config import ComputeServersSettings
from jupyter_compute_servers.db import BASELINE_REVISION, Database, engine_url, metadata
from jupyter_compute_servers.db.database import without_password
from jupyter_compute_servers.errors import ValidationError
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.kernels.runtime import close_standalone_runtimes, runtime_for
from jupyter_compute_servers.models import DailyStop, GpuSpec, SpendLimit, State
from jupyter_compute_servers.services import build_services
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.sync.plan import Base
from jupyter_compute_servers.sync.records import SyncStore

LEGACY = Path(__file__).parent / "legacy_stores"
ROOT = Path(__file__).parent.parent
#: The clock of tests/legacy_stores/make.py: T0, then each call 1.000001 s later.
T0 = 1_900_000_000.123456


def tick(n: int) -> float:
    return T0 + n * 1.000001


def rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but Alembic's), as SQLite has it."""
    with sqlite3.connect(path) as db:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
            if r[0] != "alembic_version"
        ]
        return {t: db.execute(f'SELECT * FROM "{t}" ORDER BY 1, 2').fetchall() for t in tables}


def schema(path: Path) -> list[tuple[str, ...]]:
    """sqlite_master (but Alembic's table) and user_version: the schema, to the byte."""
    with sqlite3.connect(path) as db:
        master = db.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
            " WHERE tbl_name != 'alembic_version' ORDER BY type, name"
        ).fetchall()
        return [*master, ("user_version", str(db.execute("PRAGMA user_version").fetchone()[0]))]


def legacy_copy(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "servers.db"
    shutil.copy(LEGACY / name, path)
    return path


def test_a_store_of_the_last_release_migrates_with_nothing_lost(tmp_path):
    path = legacy_copy(tmp_path, "v6.db")
    before_rows, before_schema = rows(path), schema(path)
    assert sum(map(len, before_rows.values())) > 20 and all(
        before_rows[t] for t in before_rows if t != "sqlite_sequence"
    )
    store = ServerStore(f"sqlite:///{path}", clock=time.time)
    database = store.database
    assert database.revision == Database.head_revision()
    # Stamped at the baseline, not made again: the same tables, the same rows; then the
    # revisions since (ADDED_COLUMNS: 0002 the servers' workspace setting, NULL in old rows;
    # 0003 the GPU shares a host allows, none, and a slice's share and Unix user, whole and
    # unknown; 0004 the owners, '' before owners were kept) and the empty audit log (0004).
    # 0006 made the servers' table again (names unique per owner): every row, its id and the
    # counter of ids (server 4 was deleted: the counter stays at 4) are kept, and the sync
    # tables' rows that reference servers were not cascaded away by the old table's drop.
    after = rows(path)
    assert after.pop("audit_log") == [] and after.pop("team_members") == []
    assert after.pop("image_marks") == []  # (0008: the tested marks, team mode's)
    assert after == rows_since_baseline(before_rows)
    # The baseline's schema with those columns; the tables and indexes the revisions add are
    # checked against a new store's below.
    assert [
        e
        for e in schema(path)
        if e[2:3] not in (("audit_log",), ("team_members",), ("image_marks",))
        and e[1] not in ("servers_owner", "servers_owner_name_nocase")
        and e[0] != "view"  # (0009: db/usage's views, checked below)
    ] == since_baseline(before_schema)
    # 0009: the narrow views of everyone's rows (plain views on SQLite), which read the rows
    # migrated: the old servers' GPUs, CPUs and RAM as their configuration asks.
    assert [e[1] for e in schema(path) if e[0] == "view"] == [
        "history_usage",
        "server_usage",
        "slice_usage",
    ]
    with sqlite3.connect(path) as db:
        usage = {
            row[0]: json.loads(row[1])
            for row in db.execute("SELECT id, resources FROM server_usage")
        }
    assert sorted(usage) == [s.id for s in store.servers()]
    for server in store.servers():
        assert usage[server.id]["gpu"] == (server.config.gpu and server.config.to_json()["gpu"])

    # And each store reads its rows as they were written.
    first, plain, queued = store.servers()
    assert first.name == "Ünïcode box" and first.notes.startswith("notes\nwith 'quotes'")
    assert first.state is State.RUNNING and first.state_reason == "up"
    assert first.config.cpu == 4 and first.config.memory_gb == 16.5
    assert first.config.gpu == GpuSpec("NVIDIA A100-SXM4-80GB", 1)
    assert first.config.extra == {"host": 1}
    assert first.idle_timeout_minutes == 45 and first.spend_limit == SpendLimit(12.5, 7)
    assert (first.operation, first.operation_owner) == ("start", "h:1")
    assert first.cloud_data == {"pid": 4242, "token": "t"} and first.progress == {"step": 2}
    assert first.kernel_specs == {"python3": {"display_name": "Python 3", "argv": ["python", "-m"]}}
    assert first.daily_stop == DailyStop("19:30", "Europe/Paris")
    assert first.created == tick(1)
    assert (plain.name, plain.state, queued.name) == ("plain", State.DEPROVISIONED, "queued")
    assert [h.action for h in store.history(first.id)] == [None, "start", None]
    assert store.history()[-1].reason == "deleted"  # server 4's history outlives it

    hosts = HostStore(database, clock=time.time)
    rack, spare = hosts.hosts()
    assert (rack.name, rack.port, rack.use_agent, rack.hourly_rate) == (
        "gpu-host",
        2222,
        True,
        1.25,
    )
    assert rack.gpu_rates == {"NVIDIA A100-SXM4-80GB": 2.5} and rack.gpu_wait_minutes == 12.5
    assert [g["uuid"] for g in rack.gpus()] == ["GPU-0", "GPU-1"] and rack.trusted
    assert (spare.python, spare.inventory, spare.use_agent) == ("python3", None, False)
    slice_ = hosts.slice_of(first.id)
    assert slice_ is not None and (slice_.cpu, slice_.memory_gb, slice_.gpu_uuids) == (
        2,
        8.0,
        ["GPU-0"],
    )
    assert hosts.queue_position(queued.id) == 1

    sync = SyncStore(database)
    settings = sync.settings(first.id)
    assert settings.excludes == ("*.tmp",) and settings.auto_sync_minutes == 15
    tree = sync.tree(first.id, "/home/u/work", "~/work", "f" * 32)
    big = 5 * 2**32
    assert sync.load(tree) == {
        "a.txt": Base("a" * 64, 10, 1_900_000_000_123_456_789, 0o644, (10, 1, 2, 3), None),
        "dir/é b.bin": Base(
            "b" * 64,
            big,
            1_900_000_001_000_000_001,
            0o755,
            (big, 1_900_000_001_000_000_001, 2**40 + 7, 1_900_000_002_000_000_002),
            (big, 1_900_000_003_000_000_003, 99, 1_900_000_004_000_000_004),
        ),
    }
    newest, done = sync.runs(first.id)
    assert (done["state"], done["summary"], done["progress"]) == (
        "done",
        {"sent": 1, "conflicts": []},
        {"phase": "done"},
    )
    assert [run["id"] for run in sync.unfinished()] == [newest["id"]]

    costs = CostRecords(database, clock=time.time)
    assert [(r.server_id, r.rates) for r in costs.rates_history()] == [
        (1, {"running": {"hourly": "3.75"}, "off": {"hourly": "0.01"}}),
        (2, {"running": {"hourly": "0.1"}}),
        (4, {"running": {"hourly": "1"}}),
    ]
    assert costs.rates_history(2)[0].at == T0 + 0.5
    assert costs.cost_alerts() == {"spend:1:80", "budget:2030-03:100"}

    # Life goes on: ids are never reused (server 4 was deleted).
    created = store.create(
        name="after",
        color="#000000",
        notes="",
        cloud="local",
        config=first.config,
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    assert created.id == 5
    store.close()
    assert ServerStore(f"sqlite:///{path}", clock=time.time).get(5).name == "after"


def test_an_older_store_runs_the_scripts_it_lacks_then_is_stamped(tmp_path):
    path = legacy_copy(tmp_path, "v3.db")
    before = rows(path)
    store = ServerStore(f"sqlite:///{path}", clock=time.time)
    assert store.database.revision == Database.head_revision()
    after = rows(path)
    # Migrations 4-6 added a column (daily_stop, empty in old rows) and tables (empty);
    # then Alembic's 0002 the workspace setting (empty too), 0003 the GPU shares, 0004 the
    # owners ('' before owners were kept) and the audit log, 0005 the queue's places, caps and
    # cancellations (none) and the team's members, 0008 the tested marks (none).
    assert after["servers"] == [(*row, None, None, "") for row in before["servers"]]
    since = rows_since_baseline(before)
    for table in ("state_history", "hosts", "host_slices", "gpu_queue", "sqlite_sequence"):
        assert after[table] == since[table]
    assert set(after) - set(before) == {
        "audit_log",
        "image_marks",
        "team_members",
        "rate_history",
        "cost_alerts",
        "sync_settings",
        "sync_trees",
        "sync_files",
        "sync_runs",
    }
    assert not any(after[t] for t in set(after) - set(before))
    # The same schema as the last release's store migrated to the head.
    (tmp_path / "v6").mkdir()
    v6 = legacy_copy(tmp_path / "v6", "v6.db")
    ServerStore(f"sqlite:///{v6}", clock=time.time).close()
    assert schema(path) == schema(v6)
    old = store.get(1)
    assert old.spend_limit == SpendLimit(5.0, 1) and old.config.gpu == GpuSpec("T4", 1)
    assert old.kernel_specs is None and old.daily_stop is None
    hosts = HostStore(store.database, clock=time.time)
    assert hosts.slice_of(1) is not None and hosts.queue_position(2) == 1
    store.close()


def test_a_new_sqlite_store_has_exactly_the_last_releases_schema_migrated(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'new.db'}", migrate=False)
    with database.transaction() as connection:
        command.upgrade(database._alembic(connection), BASELINE_REVISION)
    database.close()
    assert schema(tmp_path / "new.db") == schema(LEGACY / "v6.db")
    # At the head, a new store and the last release's migrated are alike to the byte.
    Database(f"sqlite:///{tmp_path / 'new.db'}").close()
    Database(f"sqlite:///{legacy_copy(tmp_path, 'v6.db')}").close()
    assert schema(tmp_path / "new.db") == schema(tmp_path / "servers.db")


#: The columns the revisions since the baseline add (SQL as ALTER TABLE ADD COLUMN appends it)
#: and their values in existing rows: 0002 ``servers.workspace``; 0003 ``hosts.gpu_fractions``,
#: ``host_slices.gpu_fraction`` and ``host_slices.unix_user``; 0004 ``servers.owner`` and
#: ``state_history.owner``; 0005 ``gpu_queue.place``, ``.user_cap`` and ``.cancelled_by``.
#: (0006 makes ``servers`` again: ``since_baseline`` has it.)
ADDED_COLUMNS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "servers": (", workspace TEXT, owner TEXT DEFAULT '' NOT NULL", (None, "")),
    "state_history": (", owner TEXT DEFAULT '' NOT NULL", ("",)),
    "hosts": (", gpu_fractions TEXT DEFAULT '{}' NOT NULL", ("{}",)),
    "host_slices": (", gpu_fraction DOUBLE, unix_user TEXT DEFAULT '' NOT NULL", (None, "")),
    "gpu_queue": (", place DOUBLE, user_cap DOUBLE, cancelled_by TEXT", (None, None, None)),
}


def since_baseline(baseline: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The schema a store of the baseline (BASELINE_REVISION: the last release's) has after the
    revisions since (``ADDED_COLUMNS``; 0006: ``servers`` made again by SQLite's rename, which
    quotes its name, without the name column's own UNIQUE and so without its index)."""
    changed = []
    for entry in baseline:
        if entry[0] == "table" and entry[1] in ADDED_COLUMNS:
            kind, name, table, sql = entry
            assert sql.endswith(")")
            entry = (kind, name, table, sql[:-1] + ADDED_COLUMNS[name][0] + ")")
        if entry[:2] == ("table", "servers"):
            sql = entry[3].replace("CREATE TABLE servers (", 'CREATE TABLE "servers" (', 1)
            sql = sql.replace("name TEXT NOT NULL UNIQUE COLLATE", "name TEXT NOT NULL COLLATE")
            assert "UNIQUE" not in sql and sql.startswith('CREATE TABLE "servers"')
            entry = (*entry[:3], sql)
        if entry[:2] == ("index", "sqlite_autoindex_servers_1"):
            continue
        changed.append(entry)
    return changed


def rows_since_baseline(before: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """A baseline store's rows after the revisions since: the added columns' values appended."""
    return {
        table: [(*row, *ADDED_COLUMNS.get(table, ("", ()))[1]) for row in table_rows]
        for table, table_rows in before.items()
    }


def test_the_tables_the_modules_define_are_the_tables_the_migrations_make(db_url):
    database = Database(db_url)
    with database.engine.connect() as connection:
        if database.is_sqlite:
            # SQLite reflects its loose types and defaults loosely: tables and columns only
            # (the schema itself is checked to the byte above).
            found = inspect(connection)
            for table in metadata.sorted_tables:
                assert [c["name"] for c in found.get_columns(table.name)] == [
                    c.name for c in table.columns
                ], table.name
            assert set(found.get_table_names()) == {*metadata.tables, "alembic_version"}
        else:
            # database_logins (0007) is no store's: the control plane's, in db/roles.py's SQL.
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": lambda name, kind, _parent: (
                        not (kind == "table" and name == "database_logins")
                    ),
                },
            )
            assert compare_metadata(context, metadata) == []
    database.close()


def test_every_pooled_connection_is_set_up_for_durability(tmp_path):
    path = tmp_path / "servers.db"
    database = Database(f"sqlite:///{path}")
    connections = [database.engine.connect() for _ in range(4)]  # four of the pool, at once
    try:
        for connection in connections:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 30000
    finally:
        for connection in connections:
            connection.close()
        database.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_store_newer_than_this_package_is_refused(tmp_path, db_url):
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(RuntimeError, match="newer than this"):
        Database(f"sqlite:///{path}")
    database = Database(db_url)
    with database.transaction() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    database.close()
    with pytest.raises(RuntimeError, match="Upgrade the package"):
        Database(db_url)


OPEN = """
import sys
from jupyter_compute_servers.db import Database
Database(sys.argv[1]).close()
"""


def test_processes_opening_a_new_database_at_once_migrate_it_once(db_url):
    openers = [
        subprocess.Popen([sys.executable, "-c", OPEN, db_url], cwd=ROOT, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for opener in openers:
        _, err = opener.communicate(timeout=120)
        assert opener.returncode == 0, err.decode()
    database = Database(db_url)
    assert database.revision == Database.head_revision()
    database.close()


def test_db_urls(tmp_path):
    url, path = engine_url(f"sqlite:///{tmp_path}/a.db")
    assert path == tmp_path / "a.db" and url.drivername == "sqlite+pysqlite"
    assert url.database == str(tmp_path / "a.db")
    # Three slashes and four both name an absolute path (as db_url always did).
    assert engine_url("sqlite:///srv/a.db")[1] == Path("/srv/a.db")
    assert engine_url("sqlite:////srv/a.db")[1] == Path("/srv/a.db")
    for given in ("postgresql", "postgres", "postgresql+psycopg"):
        url, path = engine_url(f"{given}://me:secret@db.example:6543/servers?sslmode=require")
        assert path is None and url.drivername == "postgresql+psycopg"
        assert (url.username, url.password, url.host, url.port, url.database) == (
            "me",
            "secret",
            "db.example",
            6543,
            "servers",
        )
        assert url.query == {"sslmode": "require"}
    for bad in ("mysql://me:secret@host/db", "postgresql://me:secret@host", "sqlite://", "x"):
        with pytest.raises(ValidationError) as error:
            engine_url(bad)
        assert error.value.field == "db_url" and "secret" not in error.value.message


def test_the_database_url_keeps_its_password_to_itself(postgres_server):
    url = postgres_server.create_database().replace("postgres@", "postgres:hunter2@")
    database = Database(url)
    assert "hunter2" not in repr(database)
    database.close()
    with pytest.raises(OperationalError) as error:
        Database(url.replace(f":{postgres_server.port}/", ":1/"))
    assert "hunter2" not in str(error.value)


def test_kernel_specs_carry_no_database_password(tmp_path, postgres_server):
    """Kernel specs are readable files: the store's URL is written without its password, and a
    process started from a spec (nbclient, papermill) takes the configured URL, password and
    all, when it names the same database."""
    url = postgres_server.create_database()
    scheme, rest = url.split("://", 1)
    user, at_host = rest.split("@", 1)
    with_password = f"{scheme}://{user}:s3cret-pw@{at_host}"  # trust auth: any password works
    settings = ComputeServersSettings(
        data_dir=str(tmp_path), kernel_specs_dir=str(tmp_path / "kernels"), db_url=with_password
    )
    services = build_services(settings)
    try:
        services.manager.create_server({"name": "box"})
        services.kernel_specs.sync()
        spec_text = (tmp_path / "kernels" / "compute-1-python3" / "kernel.json").read_text()
    finally:
        services.manager.store.database.close()
    assert "s3cret-pw" not in spec_text
    spec_url = json.loads(spec_text)["metadata"]["kernel_provisioner"]["config"]["db_url"]
    assert spec_url == without_password(with_password) == url

    # A process running the spec's kernel, with the configuration of a user whose Jupyter
    # uses that database: its runtime connects with the configured URL.
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ComputeServersApp": {"db_url": with_password}})
    )
    runtime = runtime_for(str(tmp_path), spec_url)
    try:
        assert runtime.manager.store.url == with_password
        assert runtime.manager.get_server(1).name == "box"
        assert runtime.matches(str(tmp_path), spec_url)
        assert not runtime.matches(str(tmp_path), url.rsplit("/", 1)[0] + "/another")
    finally:
        close_standalone_runtimes()
