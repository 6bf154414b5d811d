"""What sync keeps in the database every store shares (``db.Database``), in its own tables:

- ``sync_settings``: each server's settings (``SyncSettings``);
- ``sync_trees``: one row per pair of synced trees: a server, the Jupyter root (its real path),
  the workspace, and the identity of the workspace's disk (a marker file there). A new disk, a
  moved workspace or another Jupyter root is another pair, with an empty record: nothing known
  about one pair is ever applied to another;
- ``sync_files``: the record of the last synced state of each file of a pair, written as each
  file's copy is known durable on its side, so a sync killed at any moment left a record that is
  only behind, never ahead; and a record behind is safe (the planner sees both sides unchanged,
  or changed, never deleted where they were not);
- ``sync_runs``: every sync, with its progress and final summary.

The record of a pair is also kept in memory after it was read, with the pair's generation
(bumped by every commit to it, in the same transaction): a later sync reads one number, not
every row, unless another process changed the record meanwhile.

A process's copy is checked against the generation, so another process (the CLI, another
Jupyter server on the same database) is never missed.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    RowMapping,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)

from ..db import Database, inserted_id, metadata
from .plan import Base, Sig
from .settings import SyncSettings


def _server_id(**kwargs: Any) -> Column[int]:
    return Column(
        "server_id", Integer, ForeignKey("servers.id", ondelete="CASCADE"), nullable=False, **kwargs
    )


sync_settings = Table(
    "sync_settings",
    metadata,
    _server_id(primary_key=True, autoincrement=False),
    Column("settings", Text, nullable=False),
)

sync_trees = Table(
    "sync_trees",
    metadata,
    Column("id", Integer, primary_key=True),
    _server_id(),
    Column("local_root", Text, nullable=False),
    Column("remote_root", Text, nullable=False),
    Column("remote_tree_id", Text, nullable=False),
    Column("generation", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("server_id", "local_root", "remote_root", "remote_tree_id"),
    sqlite_autoincrement=True,
)

_SIG_FIELDS = ("size", "mtime_ns", "ino", "ctime_ns")

# Paths compare byte by byte (SQLite's BINARY; PostgreSQL: COLLATE "C", see the baseline
# migration), which ``scope_clause`` relies on.
sync_files = Table(
    "sync_files",
    metadata,
    Column(
        "tree_id",
        Integer,
        ForeignKey("sync_trees.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("path", Text, primary_key=True),
    Column("hash", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("mode", Integer, nullable=False),
    *(Column(f"local_{name}", BigInteger) for name in _SIG_FIELDS),
    *(Column(f"remote_{name}", BigInteger) for name in _SIG_FIELDS),
    sqlite_with_rowid=False,
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    _server_id(),
    Column("direction", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("started", Double, nullable=False),
    Column("finished", Double),
    Column("owner", Text),
    Column("progress", Text),
    Column("summary", Text),
    Column("error", Text),
    Index("sync_runs_server", "server_id", "id"),
    sqlite_autoincrement=True,
)


def _sig_columns(sig: Sig | None) -> tuple[int | None, ...]:
    return (None, None, None, None) if sig is None else sig


def _sig(row: tuple[Any, ...], start: int) -> Sig | None:
    if row[start] is None:
        return None
    return (row[start], row[start + 1], row[start + 2], row[start + 3])


_FILE_COLUMNS = [column.name for column in sync_files.columns]
# The same SQL on SQLite and PostgreSQL, but for the parameters' marks (see SyncStore._mark).
_UPSERT = (
    f"INSERT INTO sync_files ({', '.join(_FILE_COLUMNS)})"  # noqa: S608 - our column names
    f" VALUES ({', '.join('?' for _ in _FILE_COLUMNS)})"
    " ON CONFLICT (tree_id, path) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _FILE_COLUMNS[2:])
)
_DELETE = "DELETE FROM sync_files WHERE tree_id = ? AND path = ?"
# PostgreSQL: all the rows in one statement, as arrays (one per column). A user's own login
# (team mode, db/roles.py) checks the row-level policy's ownership once per statement: row by
# row (executemany) it cost 4.6x the owner's time for a first sync's 10,000 files, this way
# the same (benchmarks/team_db.py).
_PG_TYPES = ("integer", "text", "text", "bigint", "bigint", "integer", *("bigint",) * 8)
_PG_UPSERT = (
    f"INSERT INTO sync_files ({', '.join(_FILE_COLUMNS)}) SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"%s::{kind}[]" for kind in _PG_TYPES)
    + ")"
    + _UPSERT[_UPSERT.index(" ON CONFLICT") :]
)
assert len(_PG_TYPES) == len(_FILE_COLUMNS)
_PG_DELETE = "DELETE FROM sync_files WHERE tree_id = %s AND path = ANY(%s::text[])"
_SELECT = f"SELECT {', '.join(_FILE_COLUMNS[1:])} FROM sync_files"  # noqa: S608


def scope_clause(scope: str) -> tuple[str, tuple[str, ...]]:
    """SQL (and its parameters) for the paths at or below ``scope`` ("" for all)."""
    if not scope:
        return "1 = 1", ()
    # Everything below "a/b" sorts between "a/b/" and "a/b0" ("0" follows "/").
    return "(path = ? OR (path > ? AND path < ?))", (scope, scope + "/", scope + "0")


class SyncStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        #: The driver's mark of a parameter, in the SQL run by the driver itself.
        self._mark = "?" if database.is_sqlite else "%s"
        self._lock = threading.RLock()
        #: tree id -> (generation, the whole record of that pair).
        self._cache: dict[int, tuple[int, dict[str, Base]]] = {}

    def close(self) -> None:
        """Forget the records kept in memory (the database is its owner's to close)."""
        with self._lock:
            self._cache.clear()

    # --- settings -------------------------------------------------------------------------

    def settings(self, server_id: int) -> SyncSettings:
        with self.database.read() as db:
            value = db.execute(
                select(sync_settings.c.settings).where(sync_settings.c.server_id == server_id)
            ).scalar()
        return SyncSettings.from_json(json.loads(value) if value else None)

    def all_settings(self) -> dict[int, SyncSettings]:
        """Every server's settings that were saved, by server id (one query, for lists)."""
        with self.database.read() as db:
            rows = db.execute(select(sync_settings.c.server_id, sync_settings.c.settings)).all()
        return {row[0]: SyncSettings.from_json(json.loads(row[1])) for row in rows}

    def save_settings(self, server_id: int, settings: SyncSettings) -> None:
        upsert = self.database.insert(sync_settings).values(
            server_id=server_id, settings=json.dumps(settings.to_json())
        )
        with self.database.transaction() as db:
            db.execute(
                upsert.on_conflict_do_update(
                    index_elements=["server_id"], set_={"settings": upsert.excluded.settings}
                )
            )

    # --- the record -----------------------------------------------------------------------

    def tree(self, server_id: int, local_root: str, remote_root: str, remote_tree_id: str) -> int:
        """The pair's id, made on first use. Pairs of the same roots on an older disk of the
        server are dropped with their records."""
        same_roots = and_(
            sync_trees.c.server_id == server_id,
            sync_trees.c.local_root == local_root,
            sync_trees.c.remote_root == remote_root,
        )
        with self.database.transaction() as db:
            # Two processes must not both find the pair missing and make it.
            self.database.lock(db, f"sync_trees:{server_id}")
            found = db.execute(
                select(sync_trees.c.id).where(
                    same_roots, sync_trees.c.remote_tree_id == remote_tree_id
                )
            ).scalar()
            if found is not None:
                return int(found)
            db.execute(delete(sync_trees).where(same_roots))
            with self._lock:
                self._cache.clear()
            result = db.execute(
                insert(sync_trees).values(
                    server_id=server_id,
                    local_root=local_root,
                    remote_root=remote_root,
                    remote_tree_id=remote_tree_id,
                )
            )
            return inserted_id(result)

    def generation(self, tree: int) -> int:
        """The pair's record generation: it changes with every commit to it (by any process)."""
        with self.database.read() as db:
            value = db.execute(
                select(sync_trees.c.generation).where(sync_trees.c.id == tree)
            ).scalar()
        return -1 if value is None else int(value)

    def load(self, tree: int, scope: str = "") -> dict[str, Base]:
        """The record of a pair (at or below ``scope``): a copy, from memory when the pair's
        generation says it is current."""
        return self.load_current(tree, scope)[1]

    def load_current(self, tree: int, scope: str = "") -> tuple[int, dict[str, Base]]:
        """``load``'s record, and the generation it is (read in the same transaction)."""
        with self.database.read() as db:
            value = db.execute(
                select(sync_trees.c.generation).where(sync_trees.c.id == tree)
            ).scalar()
            generation = -1 if value is None else int(value)
            with self._lock:
                cached = self._cache.get(tree)
            if cached is not None and cached[0] == generation:
                record = cached[1]
                if not scope:
                    return generation, dict(record)
                inside = scope + "/"
                return generation, {
                    p: b for p, b in record.items() if p == scope or p.startswith(inside)
                }
            # Read in the same transaction as the generation: the two agree. Maybe many rows:
            # read as the driver's plain tuples.
            clause, params = scope_clause(scope)
            query = f"{_SELECT} WHERE tree_id = ? AND {clause}"
            cursor = db.connection.cursor()
            try:
                cursor.execute(query.replace("?", self._mark), (tree, *params))
                rows = cursor.fetchall()
            finally:
                cursor.close()
        loaded = {
            row[0]: Base(row[1], row[2], row[3], row[4], _sig(row, 5), _sig(row, 9)) for row in rows
        }
        if not scope:
            with self._lock:
                self._cache[tree] = (generation, dict(loaded))
        return generation, loaded

    def commit(self, tree: int, changes: list[tuple[str, Base | None]]) -> None:
        """Record files as synced (a Base) or gone from both sides (None), in one
        transaction."""
        if not changes:
            return
        # Many rows at a time (a first sync records every file): one prepared statement
        # executed for all of them by the driver, as tuples, not a statement built per row.
        kept = [
            (
                tree,
                path,
                base.hash,
                base.size,
                base.mtime_ns,
                base.mode,
                *_sig_columns(base.local_sig),
                *_sig_columns(base.remote_sig),
            )
            for path, base in changes
            if base is not None
        ]
        gone = [(tree, path) for path, base in changes if base is None]
        with self.database.transaction() as db:
            value = db.execute(
                select(sync_trees.c.generation).where(sync_trees.c.id == tree).with_for_update()
            ).scalar()
            generation = -1 if value is None else int(value)
            db.execute(
                update(sync_trees).where(sync_trees.c.id == tree).values(generation=generation + 1)
            )
            if self.database.is_sqlite:
                if kept:
                    db.exec_driver_sql(_UPSERT, kept)
                if gone:
                    db.exec_driver_sql(_DELETE, gone)
            else:
                if kept:
                    db.exec_driver_sql(
                        _PG_UPSERT, tuple(list(column) for column in zip(*kept, strict=True))
                    )
                if gone:
                    db.exec_driver_sql(_PG_DELETE, (tree, [path for _tree, path in gone]))
            with self._lock:
                cached = self._cache.pop(tree, None)
        # Committed: the copy in memory follows, if it was current.
        if cached is not None and cached[0] == generation:
            record = cached[1]
            for path, base in changes:
                if base is None:
                    record.pop(path, None)
                else:
                    record[path] = base
            with self._lock:
                self._cache[tree] = (generation + 1, record)

    # --- runs -----------------------------------------------------------------------------

    def create_run(
        self, server_id: int, direction: str, path: str, trigger: str, owner: str, at: float
    ) -> int:
        with self.database.transaction() as db:
            result = db.execute(
                insert(sync_runs).values(
                    server_id=server_id,
                    direction=direction,
                    path=path,
                    trigger=trigger,
                    state="running",
                    started=at,
                    owner=owner,
                )
            )
            return inserted_id(result)

    def update_run(self, run_id: int, **values: Any) -> None:
        columns = {}
        for key, value in values.items():
            if key in ("progress", "summary"):
                columns[key] = None if value is None else json.dumps(value)
            elif key in ("state", "finished", "error"):
                columns[key] = value
            else:
                raise ValueError(f"not a column of sync_runs: {key}")
        with self.database.transaction() as db:
            db.execute(update(sync_runs).where(sync_runs.c.id == run_id).values(**columns))

    def run(self, server_id: int, run_id: int) -> dict[str, Any] | None:
        with self.database.read() as db:
            row = (
                db.execute(
                    select(sync_runs).where(
                        sync_runs.c.id == run_id, sync_runs.c.server_id == server_id
                    )
                )
                .mappings()
                .first()
            )
        return _run_json(row) if row else None

    def runs(self, server_id: int, limit: int = 20) -> list[dict[str, Any]]:
        with self.database.read() as db:
            rows = (
                db.execute(
                    select(sync_runs)
                    .where(sync_runs.c.server_id == server_id)
                    .order_by(sync_runs.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [_run_json(row) for row in rows]

    def last_run_times(self) -> dict[int, float]:
        """By server id, when its latest sync ended (or began, while it runs): one query."""
        when = func.max(func.coalesce(sync_runs.c.finished, sync_runs.c.started))
        with self.database.read() as db:
            rows = db.execute(select(sync_runs.c.server_id, when).group_by(sync_runs.c.server_id))
            return {row[0]: float(row[1]) for row in rows if row[1] is not None}

    def unfinished(self) -> list[dict[str, Any]]:
        with self.database.read() as db:
            rows = db.execute(select(sync_runs).where(sync_runs.c.state == "running")).mappings()
            return [_run_json(row) for row in rows]


def _run_json(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "server_id": row["server_id"],
        "direction": row["direction"],
        "path": row["path"],
        "trigger": row["trigger"],
        "state": row["state"],
        "started": row["started"],
        "finished": row["finished"],
        "error": row["error"],
        "owner": row["owner"],
        "progress": json.loads(row["progress"]) if row["progress"] else None,
        "summary": json.loads(row["summary"]) if row["summary"] else None,
    }
