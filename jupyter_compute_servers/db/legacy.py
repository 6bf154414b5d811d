"""The SQLite migrations of the releases before the database owner, frozen.

Until then each store was migrated by these scripts, in order, with ``PRAGMA user_version``
naming how many had run. They are kept, unchanged, as the way to reach the baseline (the first
Alembic revision, ``migrations/versions/0001_baseline.py``): a new SQLite store runs all six, a
store at an older ``user_version`` runs the rest, then it is stamped at the baseline. Never edit
them: a schema change is a new Alembic revision.
"""

from __future__ import annotations

from sqlalchemy import Connection

SQL: tuple[str, ...] = (
    # 1: servers and their state history.
    """
    CREATE TABLE servers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        color TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        cloud TEXT NOT NULL,
        state TEXT NOT NULL,
        state_reason TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL,
        idle_timeout_minutes INTEGER,
        spend_limit TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        cloud_data TEXT NOT NULL DEFAULT '{}',
        operation TEXT,
        operation_owner TEXT,
        progress TEXT
    );
    CREATE TABLE state_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        server_id INTEGER NOT NULL,
        at REAL NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        action TEXT
    );
    CREATE INDEX state_history_server ON state_history (server_id, at);
    """,
    # 2: the kernels found on each server (cached, so kernel specs exist while it is off).
    """
    ALTER TABLE servers ADD COLUMN kernel_specs TEXT;
    """,
    # 3: on-prem hosts (the ssh cloud), the slices of them given to servers, and the queue of
    # servers waiting for GPUs there.
    """
    CREATE TABLE hosts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        hostname TEXT NOT NULL,
        port INTEGER NOT NULL,
        username TEXT NOT NULL,
        identity_file TEXT,
        use_agent INTEGER NOT NULL DEFAULT 0,
        host_key TEXT,
        host_key_source TEXT,
        pending_host_key TEXT,
        python TEXT NOT NULL DEFAULT 'python3',
        hourly_rate REAL,
        gpu_rates TEXT NOT NULL DEFAULT '{}',
        gpu_wait_minutes REAL NOT NULL DEFAULT 30,
        inventory TEXT,
        inventory_error TEXT NOT NULL DEFAULT '',
        inventoried REAL,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE host_slices (
        server_id INTEGER PRIMARY KEY,
        host_id INTEGER NOT NULL REFERENCES hosts (id),
        cpu INTEGER NOT NULL,
        memory_gb REAL NOT NULL,
        gpu_uuids TEXT NOT NULL DEFAULT '[]',
        token TEXT NOT NULL,
        allocated REAL NOT NULL
    );
    CREATE TABLE gpu_queue (
        server_id INTEGER PRIMARY KEY,
        host_id INTEGER NOT NULL REFERENCES hosts (id),
        requested REAL NOT NULL
    );
    """,
    # 4: costs: each server's daily stop time, the hourly rates in effect over time (so that
    # spend already incurred never changes with a new configuration or price table), and the
    # cost alerts already given (so each is given once, across restarts and processes).
    """
    ALTER TABLE servers ADD COLUMN daily_stop TEXT;
    CREATE TABLE rate_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        server_id INTEGER NOT NULL,
        at REAL NOT NULL,
        rates TEXT NOT NULL
    );
    CREATE INDEX rate_history_server ON rate_history (server_id, at);
    CREATE TABLE cost_alerts (
        key TEXT PRIMARY KEY,
        at REAL NOT NULL
    );
    """,
    # 5: file sync: each server's settings, the record of the last synced state of each pair
    # of trees (see sync/records.py), and every sync's progress and summary.
    """
    CREATE TABLE sync_settings (
        server_id INTEGER PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
        settings TEXT NOT NULL
    );
    CREATE TABLE sync_trees (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
        local_root TEXT NOT NULL,
        remote_root TEXT NOT NULL,
        remote_tree_id TEXT NOT NULL,
        UNIQUE (server_id, local_root, remote_root, remote_tree_id)
    );
    CREATE TABLE sync_files (
        tree_id INTEGER NOT NULL REFERENCES sync_trees (id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        mode INTEGER NOT NULL,
        local_size INTEGER,
        local_mtime_ns INTEGER,
        local_ino INTEGER,
        local_ctime_ns INTEGER,
        remote_size INTEGER,
        remote_mtime_ns INTEGER,
        remote_ino INTEGER,
        remote_ctime_ns INTEGER,
        PRIMARY KEY (tree_id, path)
    ) WITHOUT ROWID;
    CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        server_id INTEGER NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
        direction TEXT NOT NULL,
        path TEXT NOT NULL,
        trigger TEXT NOT NULL,
        state TEXT NOT NULL,
        started REAL NOT NULL,
        finished REAL,
        owner TEXT,
        progress TEXT,
        summary TEXT,
        error TEXT
    );
    CREATE INDEX sync_runs_server ON sync_runs (server_id, id);
    """,
    # 6: file sync: a generation per pair of trees, bumped by every change to its record, so a
    # process can keep the record in memory and know when another process changed it.
    """
    ALTER TABLE sync_trees ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    """,
)

#: The ``user_version`` of the baseline.
BASELINE_VERSION = len(SQL)


def user_version(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA user_version").scalar_one())


def upgrade(connection: Connection) -> None:
    """Run the scripts this SQLite store has not run yet (all of them for a new one), in the
    caller's transaction."""
    version = user_version(connection)
    if version > BASELINE_VERSION:
        raise RuntimeError(
            f"The database has schema version {version}, newer than this "
            f"jupyter_compute_servers knows ({BASELINE_VERSION}). Upgrade the package."
        )
    for number, script in enumerate(SQL[version:], start=version + 1):
        for statement in script.split(";"):
            if statement.strip():
                connection.exec_driver_sql(statement)
        connection.exec_driver_sql(f"PRAGMA user_version = {number}")
