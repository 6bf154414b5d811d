"""What sync keeps in the store's SQLite database (tables made by a migration in ``store.py``):

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

It has its own connection to the store's database file (WAL, synchronous=FULL), like the CLI in
another process would.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .plan import Base, Sig
from .settings import SyncSettings


def _sig_columns(sig: Sig | None) -> tuple[int | None, ...]:
    return (None, None, None, None) if sig is None else sig


def _sig(row: tuple[Any, ...], start: int) -> Sig | None:
    if row[start] is None:
        return None
    return (row[start], row[start + 1], row[start + 2], row[start + 3])


_COLUMNS = (
    "path, hash, size, mtime_ns, mode, local_size, local_mtime_ns, local_ino, local_ctime_ns,"
    " remote_size, remote_mtime_ns, remote_ino, remote_ctime_ns"
)


def scope_clause(scope: str) -> tuple[str, tuple[str, ...]]:
    """SQL (and its parameters) for the paths at or below ``scope`` ("" for all)."""
    if not scope:
        return "1", ()
    # Everything below "a/b" sorts between "a/b/" and "a/b0" ("0" follows "/").
    return "(path = ? OR (path > ? AND path < ?))", (scope, scope + "/", scope + "0")


class SyncStore:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        #: tree id -> (generation, the whole record of that pair).
        self._cache: dict[int, tuple[int, dict[str, Base]]] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- settings -------------------------------------------------------------------------

    def settings(self, server_id: int) -> SyncSettings:
        with self._lock:
            row = self._db.execute(
                "SELECT settings FROM sync_settings WHERE server_id = ?", (server_id,)
            ).fetchone()
        return SyncSettings.from_json(json.loads(row["settings"]) if row else None)

    def save_settings(self, server_id: int, settings: SyncSettings) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sync_settings (server_id, settings) VALUES (?, ?)"
                " ON CONFLICT (server_id) DO UPDATE SET settings = excluded.settings",
                (server_id, json.dumps(settings.to_json())),
            )

    # --- the record -----------------------------------------------------------------------

    def tree(self, server_id: int, local_root: str, remote_root: str, remote_tree_id: str) -> int:
        """The pair's id, made on first use. Pairs of the same roots on an older disk of the
        server are dropped with their records."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT id FROM sync_trees WHERE server_id = ? AND local_root = ?"
                " AND remote_root = ? AND remote_tree_id = ?",
                (server_id, local_root, remote_root, remote_tree_id),
            ).fetchone()
            if row is not None:
                return int(row["id"])
            db.execute(
                "DELETE FROM sync_trees WHERE server_id = ? AND local_root = ? AND remote_root = ?",
                (server_id, local_root, remote_root),
            )
            self._cache.clear()
            cursor = db.execute(
                "INSERT INTO sync_trees (server_id, local_root, remote_root, remote_tree_id)"
                " VALUES (?, ?, ?, ?)",
                (server_id, local_root, remote_root, remote_tree_id),
            )
            return int(cursor.lastrowid or 0)

    def load(self, tree: int, scope: str = "") -> dict[str, Base]:
        """The record of a pair (at or below ``scope``): a copy, from memory when the pair's
        generation says it is current."""
        with self._lock:
            row = self._db.execute(
                "SELECT generation FROM sync_trees WHERE id = ?", (tree,)
            ).fetchone()
            generation = row["generation"] if row else -1
            cached = self._cache.get(tree)
            if cached is not None and cached[0] == generation:
                record = cached[1]
                if not scope:
                    return dict(record)
                inside = scope + "/"
                return {p: b for p, b in record.items() if p == scope or p.startswith(inside)}
            loaded = self._load(tree, scope)
            if not scope:
                self._cache[tree] = (generation, dict(loaded))
            return loaded

    def _load(self, tree: int, scope: str) -> dict[str, Base]:
        clause, params = scope_clause(scope)
        with self._lock:
            cursor = self._db.cursor()
            cursor.row_factory = None  # plain tuples: this may be many rows
            query = f"SELECT {_COLUMNS} FROM sync_files WHERE tree_id = ? AND {clause}"  # noqa: S608
            rows = cursor.execute(query, (tree, *params)).fetchall()
        return {
            row[0]: Base(row[1], row[2], row[3], row[4], _sig(row, 5), _sig(row, 9)) for row in rows
        }

    def commit(self, tree: int, changes: list[tuple[str, Base | None]]) -> None:
        """Record files as synced (a Base) or gone from both sides (None), in one
        transaction."""
        if not changes:
            return
        with self._transaction() as db:
            row = db.execute("SELECT generation FROM sync_trees WHERE id = ?", (tree,)).fetchone()
            generation = row["generation"] if row else -1
            db.execute("UPDATE sync_trees SET generation = ? WHERE id = ?", (generation + 1, tree))
            db.executemany(
                "INSERT OR REPLACE INTO sync_files (tree_id, path, hash, size, mtime_ns, mode,"
                " local_size, local_mtime_ns, local_ino, local_ctime_ns, remote_size,"
                " remote_mtime_ns, remote_ino, remote_ctime_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
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
                ],
            )
            db.executemany(
                "DELETE FROM sync_files WHERE tree_id = ? AND path = ?",
                [(tree, path) for path, base in changes if base is None],
            )
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
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO sync_runs (server_id, direction, path, trigger, state, started,"
                " owner) VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (server_id, direction, path, trigger, at, owner),
            )
            return int(cursor.lastrowid or 0)

    def update_run(self, run_id: int, **values: Any) -> None:
        columns = {}
        for key, value in values.items():
            if key in ("progress", "summary"):
                columns[key] = None if value is None else json.dumps(value)
            elif key in ("state", "finished", "error"):
                columns[key] = value
            else:
                raise ValueError(f"not a column of sync_runs: {key}")
        assignments = ", ".join(f"{key} = ?" for key in columns)
        with self._transaction() as db:
            db.execute(
                f"UPDATE sync_runs SET {assignments} WHERE id = ?",  # noqa: S608
                (*columns.values(), run_id),
            )

    def run(self, server_id: int, run_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sync_runs WHERE id = ? AND server_id = ?", (run_id, server_id)
            ).fetchone()
        return _run_json(row) if row else None

    def runs(self, server_id: int, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM sync_runs WHERE server_id = ? ORDER BY id DESC LIMIT ?",
                (server_id, limit),
            ).fetchall()
        return [_run_json(row) for row in rows]

    def unfinished(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM sync_runs WHERE state = 'running'").fetchall()
        return [_run_json(row) for row in rows]


def _run_json(row: sqlite3.Row) -> dict[str, Any]:
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
