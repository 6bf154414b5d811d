"""Persistence of compute servers and their state history.

The tables ``servers`` and ``state_history`` are this module's; they live in the one database
every store shares (``db.Database``: SQLite or PostgreSQL, its transactions, its migrations).
Every change is one transaction, committed before the API answers, so a kill -9 loses nothing
that was acknowledged. A change decided from the server's current state locks its row first
(``FOR UPDATE``), so two processes never both win the same compare-and-swap.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Index,
    Integer,
    RowMapping,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from .db import Database, inserted_id, metadata
from .errors import ConflictError, NotFoundError
from .models import DailyStop, ServerConfig, SpendLimit, State
from .mount.workspace import Workspace

servers = Table(
    "servers",
    metadata,
    Column("id", Integer, primary_key=True),
    # Unique regardless of case (SQLite: COLLATE NOCASE; PostgreSQL: an index on lower(name)).
    Column("name", Text, nullable=False),
    Column("color", Text, nullable=False),
    Column("notes", Text, nullable=False, server_default=""),
    Column("cloud", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("state_reason", Text, nullable=False, server_default=""),
    Column("config", Text, nullable=False),
    Column("idle_timeout_minutes", Integer),
    Column("spend_limit", Text),
    Column("created", Double, nullable=False),
    Column("updated", Double, nullable=False),
    Column("cloud_data", Text, nullable=False, server_default="{}"),
    Column("operation", Text),
    Column("operation_owner", Text),
    Column("progress", Text),
    Column("kernel_specs", Text),
    Column("daily_stop", Text),
    # Revision 0002: the workspace setting (mount/workspace.py), None for the default.
    Column("workspace", Text),
    sqlite_autoincrement=True,
)
Index("servers_name_nocase", func.lower(servers.c.name), unique=True)

#: Every state change of every server, kept after the server is deleted (for cost reports).
state_history = Table(
    "state_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("server_id", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("action", Text),
    Index("state_history_server", "server_id", "at"),
    sqlite_autoincrement=True,
)


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
    workspace: Workspace = field(default_factory=Workspace)


@dataclass(frozen=True)
class HistoryEntry:
    server_id: int
    at: float
    state: State
    reason: str
    action: str | None


def _row_to_record(row: RowMapping) -> ServerRecord:
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
        workspace=Workspace.from_json(json.loads(row["workspace"]) if row["workspace"] else None),
    )


def _spend_json(limit: SpendLimit | None) -> str | None:
    return json.dumps({"amount": limit.amount, "period_days": limit.period_days}) if limit else None


def _daily_stop_json(daily_stop: DailyStop | None) -> str | None:
    return json.dumps(daily_stop.to_json()) if daily_stop else None


def _workspace_json(workspace: Workspace) -> str | None:
    return None if workspace == Workspace() else json.dumps(workspace.to_json())


def _state_for_update(db: Connection, server_id: int) -> str:
    """The server's state, its row locked until the transaction ends; 404 if it is gone."""
    state = db.execute(
        select(servers.c.state).where(servers.c.id == server_id).with_for_update()
    ).scalar()
    if state is None:
        raise NotFoundError(f"No compute server with id {server_id}.", field="id")
    return str(state)


class ServerStore:
    """All reads and writes of servers go through here. Thread-safe; cheap enough (well under
    a millisecond a call on SQLite) to call from the event loop.

    ``database`` is the shared ``Database``, or a ``db_url`` to open one of its own (closed
    with the store).
    """

    def __init__(self, database: Database | str, *, clock: Callable[[], float]) -> None:
        self._owns_database = isinstance(database, str)
        self.database = Database(database) if isinstance(database, str) else database
        self.url = self.database.url
        #: The SQLite file (None on PostgreSQL).
        self.path: Path | None = self.database.path
        self.clock = clock

    def close(self) -> None:
        """Close the database if the store opened it (a shared one is its owner's to close)."""
        if self._owns_database:
            self.database.close()

    # --- reads ----------------------------------------------------------------------------

    def servers(self) -> list[ServerRecord]:
        with self.database.read() as db:
            rows = db.execute(select(servers).order_by(servers.c.id)).mappings().all()
        return [_row_to_record(row) for row in rows]

    def get(self, server_id: int) -> ServerRecord:
        with self.database.read() as db:
            row = db.execute(select(servers).where(servers.c.id == server_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"No compute server with id {server_id}.", field="id")
        return _row_to_record(row)

    def find(self, id_or_name: str) -> ServerRecord:
        """A server by id (digits) or by name (in any case), for the CLI."""
        if id_or_name.isdigit():
            return self.get(int(id_or_name))
        with self.database.read() as db:
            row = db.execute(select(servers).where(_named(id_or_name))).mappings().first()
        if row is None:
            raise NotFoundError(f"No compute server named {id_or_name!r}.", field="name")
        return _row_to_record(row)

    def history(self, server_id: int | None = None) -> list[HistoryEntry]:
        query = select(state_history).order_by(state_history.c.id)
        if server_id is not None:
            query = query.where(state_history.c.server_id == server_id)
        with self.database.read() as db:
            rows = db.execute(query).mappings().all()
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
        workspace: Workspace | None = None,
    ) -> ServerRecord:
        now = self.clock()
        with self.database.transaction() as db:
            self._check_name_free(db, name, None)
            result = db.execute(
                insert(servers).values(
                    name=name,
                    color=color,
                    notes=notes,
                    cloud=cloud,
                    state=State.DEPROVISIONED.value,
                    state_reason="",
                    config=json.dumps(config.to_json()),
                    idle_timeout_minutes=idle_timeout_minutes,
                    spend_limit=_spend_json(spend_limit),
                    daily_stop=_daily_stop_json(daily_stop),
                    workspace=_workspace_json(workspace or Workspace()),
                    created=now,
                    updated=now,
                )
            )
            server_id = inserted_id(result)
            db.execute(
                insert(state_history).values(
                    server_id=server_id,
                    at=now,
                    state=State.DEPROVISIONED.value,
                    reason="created",
                    action=None,
                )
            )
        return self.get(server_id)

    def _check_name_free(self, db: Connection, name: str, server_id: int | None) -> None:
        # Two creations of one name must not both find it free (the unique index is the last
        # word, but it would answer with a 500).
        self.database.lock(db, "servers.name")
        row = db.execute(
            select(servers.c.id).where(_named(name), servers.c.id.is_distinct_from(server_id))
        ).first()
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
            elif key == "workspace":
                columns[key] = _workspace_json(value)
            elif key in ("cloud_data", "progress", "kernel_specs"):
                columns[key] = None if value is None else json.dumps(value)
            elif key in ("name", "color", "notes", "idle_timeout_minutes", "cloud"):
                columns[key] = value
            else:
                raise ValueError(f"not an updatable column: {key}")
        with self.database.transaction() as db:
            state = _state_for_update(db, server_id)
            if expected_state is not None and state != expected_state.value:
                raise ConflictError(
                    f"The server changed state to {state} meanwhile; try again.", state=state
                )
            if "name" in columns:
                self._check_name_free(db, columns["name"], server_id)
            if columns:
                columns["updated"] = self.clock()
                db.execute(update(servers).where(servers.c.id == server_id).values(**columns))
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
        with self.database.transaction() as db:
            current = State(_state_for_update(db, server_id))
            if expected is not None and current not in expected:
                raise ConflictError(
                    f"The server is {current.value}; another action is under way or finished "
                    f"first.",
                    state=current.value,
                )
            changes: dict[str, Any] = {"state": to.value, "state_reason": reason, "updated": now}
            if not keep_operation:
                changes.update(operation=operation, operation_owner=owner, progress=None)
            db.execute(update(servers).where(servers.c.id == server_id).values(**changes))
            if current is not to or action is not None:
                db.execute(
                    insert(state_history).values(
                        server_id=server_id, at=now, state=to.value, reason=reason, action=action
                    )
                )
        return self.get(server_id)

    def delete(self, server_id: int) -> None:
        """Remove a deprovisioned server. Its history stays, for cost reports."""
        with self.database.transaction() as db:
            state = _state_for_update(db, server_id)
            if state != State.DEPROVISIONED.value:
                raise ConflictError(
                    f"Only a deprovisioned server can be deleted (this one is {state}), "
                    f"so that no billed disk is left behind. Deprovision it first.",
                    state=state,
                    allowed_actions=[],
                )
            db.execute(delete(servers).where(servers.c.id == server_id))
            db.execute(
                insert(state_history).values(
                    server_id=server_id,
                    at=self.clock(),
                    state=State.DEPROVISIONED.value,
                    reason="deleted",
                    action="delete",
                )
            )

    def state_counts(self, server_id: int | None = None) -> dict[int, int]:
        """How many state changes each server has (the history only ever grows), by server
        id: with ``billing.records.CostRecords.rate_counts``, a cheap check that a server's
        spend must be worked out again."""
        query = select(state_history.c.server_id, func.count()).group_by(state_history.c.server_id)
        if server_id is not None:
            query = query.where(state_history.c.server_id == server_id)
        with self.database.read() as db:
            return {row[0]: row[1] for row in db.execute(query)}


def _named(name: str) -> Any:
    """Servers of this name, in any case (as the unique index compares them)."""
    return func.lower(servers.c.name) == func.lower(name)
