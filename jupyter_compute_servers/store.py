"""Persistence of compute servers and their state history.

The tables ``servers`` and ``state_history`` are this module's; they live in the one database
every store shares (``db.Database``: SQLite or PostgreSQL, its transactions, its migrations).
Every change is one transaction, committed before the API answers, so a kill -9 loses nothing
that was acknowledged. A change decided from the server's current state locks its row first
(``FOR UPDATE``), so two processes never both win the same compare-and-swap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
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
    Select,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from .db import Database, by_server, inserted_id, metadata
from .db.usage import history_usage, server_usage
from .errors import ConflictError, NotFoundError
from .models import DailyStop, ServerConfig, SpendLimit, State
from .mount.workspace import Workspace
from .team import HOLDING_STATES, SHARED_HOST_CLOUDS, current_actor, gpu_count, local_user

servers = Table(
    "servers",
    metadata,
    Column("id", Integer, primary_key=True),
    # Unique among its owner's servers regardless of case (revision 0006): one user's names
    # are no other user's business. Standalone there is one owner, and names stay unique
    # across the store (``ServerStore._check_name_free``).
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
    # The Hub user (team mode) or the local user who created it; '' before owners were kept.
    Column("owner", Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)
Index("servers_owner_name_nocase", servers.c.owner, func.lower(servers.c.name), unique=True)
Index("servers_owner", servers.c.owner)

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
    # The server's owner, kept here so that spend per user outlives the server.
    Column("owner", Text, nullable=False, server_default=""),
    Index("state_history_server", "server_id", "at"),
    sqlite_autoincrement=True,
)

#: Who did what to which server, and when: kept after the server is deleted (team mode's
#: audit; standalone it records the local user's own actions the same way).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Double, nullable=False),
    Column("actor", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("server_id", Integer),
    Column("server_name", Text, nullable=False, server_default=""),
    Column("action", Text, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Index("audit_log_at", "at"),
    sqlite_autoincrement=True,
    # No INSERT ... RETURNING id: a user's database login may add lines but not read any
    # (``db/roles``), and nothing needs the new line's id.
    implicit_returning=False,
)

#: Team mode: each Hub user's groups as their last request carried them (a user's groups are
#: known only to their own process), for spend per group (``billing.team_spend``).
team_members = Table(
    "team_members",
    metadata,
    Column("name", Text, primary_key=True),
    Column("groups", Text, nullable=False, server_default="[]"),
    Column("seen", Double, nullable=False),
)

#: The fields whose change is the user's (audited as an "edit"), not the bookkeeping's.
_AUDITED_FIELDS = frozenset(
    {"name", "color", "notes", "config", "idle_timeout_minutes", "spend_limit", "daily_stop"}
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
    owner: str = ""


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
        owner=row["owner"],
    )


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    owner: str
    server_id: int | None
    server_name: str
    action: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "actor": self.actor,
            "owner": self.owner,
            "server_id": self.server_id,
            "server_name": self.server_name,
            "action": self.action,
            "detail": self.detail,
        }


def _spend_json(limit: SpendLimit | None) -> str | None:
    return json.dumps({"amount": limit.amount, "period_days": limit.period_days}) if limit else None


def _daily_stop_json(daily_stop: DailyStop | None) -> str | None:
    return json.dumps(daily_stop.to_json()) if daily_stop else None


def _workspace_json(workspace: Workspace) -> str | None:
    return None if workspace == Workspace() else json.dumps(workspace.to_json())


def _row_for_update(db: Connection, server_id: int, owner: str | None) -> Any:
    """The server's state, owner, name and config, its row locked until the transaction
    ends; 404 if it is gone (or, with ``owner``, someone else's: the same answer)."""
    query = select(servers.c.state, servers.c.owner, servers.c.name, servers.c.config).where(
        servers.c.id == server_id
    )
    if owner is not None:
        query = query.where(servers.c.owner == owner)
    row = db.execute(query.with_for_update()).first()
    if row is None:
        raise NotFoundError(f"No compute server with id {server_id}.", field="id")
    return row


class ServerStore:
    """All reads and writes of servers go through here. Thread-safe; cheap enough (well under
    a millisecond a call on SQLite) to call from the event loop.

    ``database`` is the shared ``Database``, or a ``db_url`` to open one of its own (closed
    with the store).

    ``owner`` is who creates servers through this store (the Hub user or the local user).
    ``scoped`` (team mode) makes it see only that owner's servers: every read, change and
    action of another's is the 404 of an unknown id; ``all_servers``/``get_any`` are the
    admin's unscoped reads.
    """

    def __init__(
        self,
        database: Database | str,
        *,
        clock: Callable[[], float],
        owner: str | None = None,
        scoped: bool = False,
    ) -> None:
        self._owns_database = isinstance(database, str)
        self.database = Database(database) if isinstance(database, str) else database
        self.url = self.database.url
        #: The SQLite file (None on PostgreSQL).
        self.path: Path | None = self.database.path
        self.clock = clock
        self.owner = owner if owner is not None else local_user()
        self.scoped = scoped
        self._scope = self.owner if scoped else None

    def close(self) -> None:
        """Close the database if the store opened it (a shared one is its owner's to close)."""
        if self._owns_database:
            self.database.close()

    # --- reads ----------------------------------------------------------------------------

    def _mine(self, query: Any) -> Any:
        return query if self._scope is None else query.where(servers.c.owner == self._scope)

    def servers(self) -> list[ServerRecord]:
        """This store's servers (scoped: its owner's only)."""
        with self.database.read() as db:
            rows = db.execute(self._mine(select(servers).order_by(servers.c.id))).mappings().all()
        return [_row_to_record(row) for row in rows]

    def count(self) -> int:
        """How many servers this store has (scoped: its owner's)."""
        with self.database.read() as db:
            return int(
                db.execute(self._mine(select(func.count()).select_from(servers))).scalar() or 0
            )

    def all_servers(self) -> list[ServerRecord]:
        """Every owner's servers (an admin's view). Team mode on PostgreSQL: every row the
        login may read (an admin's: all; a user's: their own)."""
        with self.database.read() as db:
            rows = db.execute(select(servers).order_by(servers.c.id)).mappings().all()
        return [_row_to_record(row) for row in rows]

    def get(self, server_id: int) -> ServerRecord:
        with self.database.read() as db:
            row = (
                db.execute(self._mine(select(servers).where(servers.c.id == server_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"No compute server with id {server_id}.", field="id")
        return _row_to_record(row)

    def get_any(self, server_id: int) -> ServerRecord:
        """A server whoever owns it (an admin's view)."""
        with self.database.read() as db:
            row = db.execute(select(servers).where(servers.c.id == server_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"No compute server with id {server_id}.", field="id")
        return _row_to_record(row)

    def find(self, id_or_name: str) -> ServerRecord:
        """A server by id (digits) or by name (in any case), for the CLI: scoped, the
        owner's own of that name. Unscoped a name is unique unless the store was a team's
        (names are unique per owner): one of several owners' is refused, naming them."""
        if id_or_name.isdigit():
            return self.get(int(id_or_name))
        with self.database.read() as db:
            rows = (
                db.execute(self._mine(select(servers).where(_named(id_or_name))).limit(20))
                .mappings()
                .all()
            )
        if not rows:
            raise NotFoundError(f"No compute server named {id_or_name!r}.", field="name")
        if len(rows) > 1:
            which = ", ".join(f"{r['id']} ({r['owner'] or 'no owner'})" for r in rows)
            raise ConflictError(
                f"{len(rows)} compute servers are named {id_or_name!r}, of different owners: "
                f"give the id of the one you mean ({which}).",
                field="name",
            )
        return _row_to_record(rows[0])

    def history(self, server_id: int | None = None) -> list[HistoryEntry]:
        """Every state change (of one server, or of all), oldest first."""
        query = select(state_history)
        if server_id is not None:
            query = query.where(state_history.c.server_id == server_id)
        return self._history(query)

    def histories_of(self, server_ids: Collection[int]) -> dict[int, list[HistoryEntry]]:
        """``history`` of many servers, by id (a query per 500 of them)."""
        return by_server(
            server_ids,
            lambda batch: self._history(
                select(state_history).where(state_history.c.server_id.in_(batch))
            ),
        )

    def _history(self, query: Select[Any]) -> list[HistoryEntry]:
        if self._scope is not None:
            query = query.where(state_history.c.owner == self._scope)
        with self.database.read() as db:
            rows = db.execute(query.order_by(state_history.c.id)).mappings().all()
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
            self._check_name_free(db, name, None, self.owner)
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
                    owner=self.owner,
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
                    owner=self.owner,
                )
            )
            self._audit(db, now, self.owner, server_id, name, "create", cloud)
        return self.get(server_id)

    def _audit(
        self,
        db: Connection,
        at: float,
        owner: str,
        server_id: int | None,
        server_name: str,
        action: str,
        detail: str = "",
    ) -> None:
        """One line of the audit log, in the transaction of the change it records."""
        db.execute(
            insert(audit_log).values(
                at=at,
                actor=current_actor.get() or self.owner,
                owner=owner,
                server_id=server_id,
                server_name=server_name,
                action=action,
                detail=detail[:1000],
            )
        )

    def audit(self, *, limit: int = 1000, owner: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` lines of the audit log, oldest first (``owner``: one user's)."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if owner is not None:
            query = query.where(audit_log.c.owner == owner)
        with self.database.read() as db:
            rows = db.execute(query).mappings().all()
        return [
            AuditEntry(
                r["at"],
                r["actor"],
                r["owner"],
                r["server_id"],
                r["server_name"],
                r["action"],
                r["detail"],
            )
            for r in reversed(rows)
        ]

    def record(
        self, owner: str, server_id: int | None, server_name: str, action: str, detail: str = ""
    ) -> None:
        """One line of the audit log for an action outside a server's own changes (an
        admin's move or cancel of a queue entry)."""
        with self.database.transaction() as db:
            self._audit(db, self.clock(), owner, server_id, server_name, action, detail)

    def owned_history(self) -> list[tuple[HistoryEntry, str]]:
        """Every state change of every owner's servers (deleted ones too), oldest first,
        each with the owner it was recorded for: spend per user outlives the servers. Read
        through ``history_usage`` (team mode: a user's login reads everyone's times and
        states there, no reasons), so the entries carry no reason nor action."""
        with self.database.read() as db:
            rows = db.execute(select(history_usage).order_by(history_usage.c.id)).all()
        return [(HistoryEntry(r.server_id, r.at, State(r.state), "", None), r.owner) for r in rows]

    def server_ids(self) -> set[int]:
        """The ids of every owner's servers that exist (``server_usage``: team mode's users
        may read that much of everyone's)."""
        with self.database.read() as db:
            return set(db.execute(select(server_usage.c.id)).scalars())

    def daily_stop_of(self, server_id: int) -> DailyStop | None:
        """A server's daily stop, whoever owns it (the queue's estimates): 404 when none."""
        with self.database.read() as db:
            row = db.execute(
                select(server_usage.c.daily_stop).where(server_usage.c.id == server_id)
            ).first()
        if row is None:
            raise NotFoundError(f"No compute server with id {server_id}.", field="id")
        return DailyStop(**json.loads(row.daily_stop)) if row.daily_stop else None

    def remember_member(self, name: str, groups: tuple[str, ...]) -> None:
        """Keep a Hub user's groups (team mode), for spend per group."""
        with self.database.transaction() as db:
            db.execute(
                self.database.insert(team_members)
                .values(name=name, groups=json.dumps(list(groups)), seen=self.clock())
                .on_conflict_do_update(
                    index_elements=["name"],
                    set_={"groups": json.dumps(list(groups)), "seen": self.clock()},
                )
            )

    def members(self) -> dict[str, tuple[str, ...]]:
        """Each Hub user's groups as last seen, by name."""
        with self.database.read() as db:
            return {
                row.name: tuple(json.loads(row.groups))
                for row in db.execute(select(team_members.c.name, team_members.c.groups))
            }

    def _check_name_free(
        self, db: Connection, name: str, server_id: int | None, owner: str
    ) -> None:
        """Refuse a name ``owner`` already gives another server. Scoped (team mode) only the
        owner's own servers count, so the answer says nothing of other users' names;
        standalone every server of the store counts, as always (one owner, though rows from
        before owners were kept have none)."""
        # Two creations of one name must not both find it free (the unique index is the last
        # word, but it would answer with a 500).
        self.database.lock(db, "servers.name")
        query = select(servers.c.id).where(_named(name), servers.c.id.is_distinct_from(server_id))
        if self.scoped:
            query = query.where(servers.c.owner == owner)
        row = db.execute(query).first()
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
            row = _row_for_update(db, server_id, self._scope)
            state = row.state
            if expected_state is not None and state != expected_state.value:
                raise ConflictError(
                    f"The server changed state to {state} meanwhile; try again.", state=state
                )
            if "name" in columns:
                self._check_name_free(db, columns["name"], server_id, row.owner)
            if columns:
                columns["updated"] = self.clock()
                db.execute(update(servers).where(servers.c.id == server_id).values(**columns))
                edited = sorted(_AUDITED_FIELDS.intersection(columns))
                if edited:
                    self._audit(
                        db,
                        columns["updated"],
                        row.owner,
                        server_id,
                        columns.get("name", row.name),
                        "edit",
                        ", ".join(edited),
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
        admit: Callable[[Connection, str, str], None] | None = None,
        at: float | None = None,
    ) -> ServerRecord:
        """Move a server to ``to`` and record it in the history, atomically.

        ``at`` is when the change really happened, where the provider recorded it (a Slurm
        job's StartTime or EndTime) and it was noticed later: the history, which metering
        charges from, gets that time, kept between the server's previous change and now so
        that the history stays in order.

        ``expected`` makes this a compare-and-swap: when the server is not in one of those
        states the change is refused with a 409 (another action got there first). ``admit``
        (the connection, the owner, the config's JSON) may refuse it from inside the same
        transaction (the team quotas), so that its check and this change are one.
        """
        now = self.clock()
        with self.database.transaction() as db:
            row = _row_for_update(db, server_id, self._scope)
            current = State(row.state)
            if expected is not None and current not in expected:
                raise ConflictError(
                    f"The server is {current.value}; another action is under way or finished "
                    f"first.",
                    state=current.value,
                )
            if admit is not None:
                admit(db, row.owner, row.config)
            changes: dict[str, Any] = {"state": to.value, "state_reason": reason, "updated": now}
            if not keep_operation:
                changes.update(operation=operation, operation_owner=owner, progress=None)
            db.execute(update(servers).where(servers.c.id == server_id).values(**changes))
            if current is not to or action is not None:
                when = now
                if at is not None:
                    last = db.execute(
                        select(func.max(state_history.c.at)).where(
                            state_history.c.server_id == server_id
                        )
                    ).scalar()
                    when = min(now, max(at, last if last is not None else at))
                db.execute(
                    insert(state_history).values(
                        server_id=server_id,
                        at=when,
                        state=to.value,
                        reason=reason,
                        action=action,
                        owner=row.owner,
                    )
                )
            if action is not None:
                self._audit(db, now, row.owner, server_id, row.name, action, reason or to.value)
        return self.get(server_id)

    def delete(self, server_id: int) -> None:
        """Remove a deprovisioned server. Its history stays, for cost reports."""
        with self.database.transaction() as db:
            row = _row_for_update(db, server_id, self._scope)
            state = row.state
            if state != State.DEPROVISIONED.value:
                raise ConflictError(
                    f"Only a deprovisioned server can be deleted (this one is {state}), "
                    f"so that no billed disk is left behind. Deprovision it first.",
                    state=state,
                    allowed_actions=[],
                )
            db.execute(delete(servers).where(servers.c.id == server_id))
            now = self.clock()
            db.execute(
                insert(state_history).values(
                    server_id=server_id,
                    at=now,
                    state=State.DEPROVISIONED.value,
                    reason="deleted",
                    action="delete",
                    owner=row.owner,
                )
            )
            self._audit(db, now, row.owner, server_id, row.name, "delete")

    def holding(self, db: Connection, owner: str) -> dict[str, Any]:
        """What ``owner`` holds now (in the caller's transaction): servers in a state that
        holds resources, the GPUs they asked for, and the CPUs and GB of RAM of those that are
        slices of shared hosts."""
        # Through server_usage (its resources: the GPUs, CPUs and RAM of the configuration),
        # which every login may read, whoever's quota is checked (an admin starting a user's).
        rows = db.execute(
            select(server_usage.c.resources, server_usage.c.cloud).where(
                server_usage.c.owner == owner,
                server_usage.c.state.in_([s.value for s in HOLDING_STATES]),
            )
        ).all()
        shared = [json.loads(r.resources or "{}") for r in rows if r.cloud in SHARED_HOST_CLOUDS]
        return {
            "running_servers": len(rows),
            "gpus": sum(gpu_count(r.resources or "{}") for r in rows),
            "cpu": sum(int(c.get("cpu") or 1) for c in shared),
            "memory_gb": round(sum(float(c.get("memory_gb") or 1.0) for c in shared), 6),
        }

    def usage(self, owner: str) -> dict[str, Any]:
        with self.database.read() as db:
            return self.holding(db, owner)

    def state_counts(self, server_id: int | None = None) -> dict[int, int]:
        """How many state changes each server has (the history only ever grows), by server
        id: with ``billing.records.CostRecords.rate_counts``, a cheap check that a server's
        spend must be worked out again."""
        query = select(state_history.c.server_id, func.count()).group_by(state_history.c.server_id)
        if server_id is not None:
            query = query.where(state_history.c.server_id == server_id)
        if self._scope is not None:
            query = query.where(state_history.c.owner == self._scope)
        with self.database.read() as db:
            return {row[0]: row[1] for row in db.execute(query)}


def _named(name: str) -> Any:
    """Servers of this name, in any case (as the unique index compares them)."""
    return func.lower(servers.c.name) == func.lower(name)
