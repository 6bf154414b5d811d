"""Persistence of compute servers and their state history, in SQLite.

Durability: WAL journal with ``synchronous=FULL``, and every change is one transaction that is
committed before the API answers, so a kill -9 loses nothing that was acknowledged. Schema
changes are versioned migrations (``MIGRATIONS``), applied in order on open.

The database is named by a URL (``sqlite:///absolute/path.db``) so a deployment can point every
user at one file on shared storage; other backends would plug in here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .errors import ConflictError, NotFoundError, ValidationError
from .models import DailyStop, ServerConfig, SpendLimit, State

MIGRATIONS: list[str] = [
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
]


@dataclass
class ServerRecord:
    """A compute server as stored. ``cloud_data`` is the cloud's private bookkeeping (a pid,
    an instance name); it never leaves the server side."""

    id: int
    name: str
    color: str
    notes: str
    cloud: str
    state: State
    state_reason: str
    config: ServerConfig
    idle_timeout_minutes: int | None
    spend_limit: SpendLimit | None
    created: float
    updated: float
    cloud_data: dict[str, Any] = field(default_factory=dict)
    operation: str | None = None
    operation_owner: str | None = None
    progress: dict[str, Any] | None = None
    #: Kernel specs found on the server (name -> spec), or None before it was first asked.
    kernel_specs: dict[str, Any] | None = None
    daily_stop: DailyStop | None = None


@dataclass(frozen=True)
class HistoryEntry:
    server_id: int
    at: float
    state: State
    reason: str
    action: str | None


@dataclass(frozen=True)
class RatesEntry:
    """The hourly rates of a server's configuration from ``at`` on (see ``billing``)."""

    server_id: int
    at: float
    rates: dict[str, Any]


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:////abs/path.db`` or ``sqlite:///abs/path.db`` -> a Path."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ValidationError(
            f"Unsupported database URL {url!r}: only sqlite:///path/to/file.db is supported.",
            field="db_url",
        )
    path = unquote(parsed.path)
    if not path or path == "/":
        raise ValidationError(f"The database URL {url!r} names no file.", field="db_url")
    return Path(path)


def _row_to_record(row: sqlite3.Row) -> ServerRecord:
    spend = json.loads(row["spend_limit"]) if row["spend_limit"] else None
    return ServerRecord(
        id=row["id"],
        name=row["name"],
        color=row["color"],
        notes=row["notes"],
        cloud=row["cloud"],
        state=State(row["state"]),
        state_reason=row["state_reason"],
        config=ServerConfig.from_json(json.loads(row["config"])),
        idle_timeout_minutes=row["idle_timeout_minutes"],
        spend_limit=SpendLimit(**spend) if spend else None,
        created=row["created"],
        updated=row["updated"],
        cloud_data=json.loads(row["cloud_data"]),
        operation=row["operation"],
        operation_owner=row["operation_owner"],
        progress=json.loads(row["progress"]) if row["progress"] else None,
        kernel_specs=json.loads(row["kernel_specs"]) if row["kernel_specs"] else None,
        daily_stop=DailyStop(**json.loads(row["daily_stop"])) if row["daily_stop"] else None,
    )


def _spend_json(limit: SpendLimit | None) -> str | None:
    return json.dumps({"amount": limit.amount, "period_days": limit.period_days}) if limit else None


def _daily_stop_json(daily_stop: DailyStop | None) -> str | None:
    return json.dumps(daily_stop.to_json()) if daily_stop else None


class ServerStore:
    """All reads and writes of servers go through here. Thread-safe; cheap enough (well under
    a millisecond a call) to call from the event loop."""

    def __init__(self, url: str, *, clock: Callable[[], float]) -> None:
        self.url = url
        self.path = sqlite_path_from_url(url)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        os.chmod(self.path, 0o600)
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # IMMEDIATE takes the write lock up front, so two processes (the Jupyter server and
            # the CLI) never interleave a read-check-write on the same row.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"The database {self.path} has schema version {version}, newer than this "
                    f"jupyter_compute_servers knows ({len(MIGRATIONS)}). Upgrade the package."
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # --- reads ----------------------------------------------------------------------------

    def servers(self) -> list[ServerRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM servers ORDER BY id").fetchall()
        return [_row_to_record(row) for row in rows]

    def get(self, server_id: int) -> ServerRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM servers WHERE id = ?", (server_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No compute server with id {server_id}.", field="id")
        return _row_to_record(row)

    def find(self, id_or_name: str) -> ServerRecord:
        """A server by id (digits) or by name, for the CLI."""
        if id_or_name.isdigit():
            return self.get(int(id_or_name))
        with self._lock:
            row = self._db.execute("SELECT * FROM servers WHERE name = ?", (id_or_name,)).fetchone()
        if row is None:
            raise NotFoundError(f"No compute server named {id_or_name!r}.", field="name")
        return _row_to_record(row)

    def history(self, server_id: int | None = None) -> list[HistoryEntry]:
        with self._lock:
            if server_id is None:
                rows = self._db.execute("SELECT * FROM state_history ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM state_history WHERE server_id = ? ORDER BY id", (server_id,)
                ).fetchall()
        return [
            HistoryEntry(r["server_id"], r["at"], State(r["state"]), r["reason"], r["action"])
            for r in rows
        ]

    # --- writes ---------------------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        color: str,
        notes: str,
        cloud: str,
        config: ServerConfig,
        idle_timeout_minutes: int | None,
        spend_limit: SpendLimit | None,
        daily_stop: DailyStop | None = None,
    ) -> ServerRecord:
        now = self.clock()
        with self._transaction() as db:
            self._check_name_free(db, name, None)
            cursor = db.execute(
                "INSERT INTO servers (name, color, notes, cloud, state, state_reason, config,"
                " idle_timeout_minutes, spend_limit, daily_stop, created, updated)"
                " VALUES (?, ?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    color,
                    notes,
                    cloud,
                    State.DEPROVISIONED.value,
                    json.dumps(config.to_json()),
                    idle_timeout_minutes,
                    _spend_json(spend_limit),
                    _daily_stop_json(daily_stop),
                    now,
                    now,
                ),
            )
            server_id = int(cursor.lastrowid or 0)
            db.execute(
                "INSERT INTO state_history (server_id, at, state, reason, action)"
                " VALUES (?, ?, ?, 'created', NULL)",
                (server_id, now, State.DEPROVISIONED.value),
            )
        return self.get(server_id)

    def _check_name_free(self, db: sqlite3.Connection, name: str, server_id: int | None) -> None:
        row = db.execute(
            "SELECT id FROM servers WHERE name = ? AND id IS NOT ?", (name, server_id)
        ).fetchone()
        if row is not None:
            raise ConflictError(f"A compute server named {name!r} already exists.", field="name")

    def update_fields(
        self, server_id: int, *, expected_state: State | None = None, **values: Any
    ) -> ServerRecord:
        """Change descriptive or configuration fields (not the state) of one server.

        With ``expected_state``, the change applies only if the server is still in that state:
        the check the caller made and the write are one transaction.
        """
        columns: dict[str, Any] = {}
        for key, value in values.items():
            if key == "config":
                columns[key] = json.dumps(value.to_json())
            elif key == "spend_limit":
                columns[key] = _spend_json(value)
            elif key == "daily_stop":
                columns[key] = _daily_stop_json(value)
            elif key in ("cloud_data", "progress", "kernel_specs"):
                columns[key] = None if value is None else json.dumps(value)
            elif key in ("name", "color", "notes", "idle_timeout_minutes", "cloud"):
                columns[key] = value
            else:
                raise ValueError(f"not an updatable column: {key}")
        with self._transaction() as db:
            row = db.execute("SELECT state FROM servers WHERE id = ?", (server_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"No compute server with id {server_id}.", field="id")
            if expected_state is not None and row["state"] != expected_state.value:
                raise ConflictError(
                    f"The server changed state to {row['state']} meanwhile; try again.",
                    state=row["state"],
                )
            if "name" in columns:
                self._check_name_free(db, columns["name"], server_id)
            if columns:
                columns["updated"] = self.clock()
                assignments = ", ".join(f"{key} = ?" for key in columns)
                db.execute(
                    f"UPDATE servers SET {assignments} WHERE id = ?",  # noqa: S608
                    (*columns.values(), server_id),
                )
        return self.get(server_id)

    def transition(
        self,
        server_id: int,
        *,
        to: State,
        reason: str = "",
        expected: frozenset[State] | None = None,
        action: str | None = None,
        operation: str | None = None,
        owner: str | None = None,
        keep_operation: bool = False,
    ) -> ServerRecord:
        """Move a server to ``to`` and record it in the history, atomically.

        ``expected`` makes this a compare-and-swap: when the server is not in one of those
        states the change is refused with a 409 (another action got there first).
        """
        now = self.clock()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM servers WHERE id = ?", (server_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"No compute server with id {server_id}.", field="id")
            current = State(row["state"])
            if expected is not None and current not in expected:
                raise ConflictError(
                    f"The server is {current.value}; another action is under way or finished "
                    f"first.",
                    state=current.value,
                )
            if keep_operation:
                db.execute(
                    "UPDATE servers SET state = ?, state_reason = ?, updated = ? WHERE id = ?",
                    (to.value, reason, now, server_id),
                )
            else:
                db.execute(
                    "UPDATE servers SET state = ?, state_reason = ?, updated = ?, operation = ?,"
                    " operation_owner = ?, progress = NULL WHERE id = ?",
                    (to.value, reason, now, operation, owner, server_id),
                )
            if current is not to or action is not None:
                db.execute(
                    "INSERT INTO state_history (server_id, at, state, reason, action)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (server_id, now, to.value, reason, action),
                )
        return self.get(server_id)

    def delete(self, server_id: int) -> None:
        """Remove a deprovisioned server. Its history stays, for cost reports."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM servers WHERE id = ?", (server_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"No compute server with id {server_id}.", field="id")
            if row["state"] != State.DEPROVISIONED.value:
                raise ConflictError(
                    f"Only a deprovisioned server can be deleted (this one is {row['state']}), "
                    f"so that no billed disk is left behind. Deprovision it first.",
                    state=row["state"],
                    allowed_actions=[],
                )
            db.execute("DELETE FROM servers WHERE id = ?", (server_id,))
            db.execute(
                "INSERT INTO state_history (server_id, at, state, reason, action)"
                " VALUES (?, ?, ?, 'deleted', 'delete')",
                (server_id, self.clock(), State.DEPROVISIONED.value),
            )

    # --- costs (see billing/) ---------------------------------------------------------------

    def record_rates(
        self, server_id: int, rates: dict[str, Any], *, at: float | None = None
    ) -> None:
        """The server's hourly rates from now on (its configuration or the prices changed)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO rate_history (server_id, at, rates) VALUES (?, ?, ?)",
                (server_id, self.clock() if at is None else at, json.dumps(rates)),
            )

    def rates_history(self, server_id: int | None = None) -> list[RatesEntry]:
        """Every recorded change of rates (of one server, or of all), oldest first."""
        with self._lock:
            if server_id is None:
                rows = self._db.execute("SELECT * FROM rate_history ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM rate_history WHERE server_id = ? ORDER BY id", (server_id,)
                ).fetchall()
        return [RatesEntry(r["server_id"], r["at"], json.loads(r["rates"])) for r in rows]

    def history_counts(self, server_id: int | None = None) -> dict[int, tuple[int, int]]:
        """How many state changes and rate records each server has (both tables only ever
        grow), by server id: a cheap check that a server's spend must be worked out again."""
        where, args = ("WHERE server_id = ?", (server_id,)) if server_id is not None else ("", ())
        with self._lock:
            states = self._db.execute(
                f"SELECT server_id, count(*) FROM state_history {where} GROUP BY server_id",  # noqa: S608
                args,
            ).fetchall()
            rates = dict(
                self._db.execute(
                    f"SELECT server_id, count(*) FROM rate_history {where} GROUP BY server_id",  # noqa: S608
                    args,
                ).fetchall()
            )
        return {row[0]: (row[1], rates.get(row[0], 0)) for row in states}

    def cost_alerts(self) -> set[str]:
        """The keys of the cost alerts already given."""
        with self._lock:
            return {r["key"] for r in self._db.execute("SELECT key FROM cost_alerts")}

    def add_cost_alert(self, key: str) -> bool:
        """Record that an alert was given; False if it had been already (by any process)."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO cost_alerts (key, at) VALUES (?, ?)", (key, self.clock())
            )
            return cursor.rowcount == 1

    def remove_cost_alerts(self, keys: list[str]) -> None:
        """Re-arm alerts (their condition ended)."""
        if keys:
            with self._transaction() as db:
                db.executemany("DELETE FROM cost_alerts WHERE key = ?", [(k,) for k in keys])
