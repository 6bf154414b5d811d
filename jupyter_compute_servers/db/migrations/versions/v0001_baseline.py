"""Baseline: the schema of the last release migrated by ``PRAGMA user_version`` (6).

SQLite: exactly that schema, made by the same six scripts (``db/legacy.py``), so a new store
and one made by that release are alike to the byte of ``sqlite_master``. A store of that
release is stamped at this revision instead (``Database.migrate``).

PostgreSQL: the same tables, columns, keys and indexes in its types. Where SQLite's types were
loose: timestamps and money are ``double precision`` (SQLite's REAL), and the sizes, times in
nanoseconds and inode numbers of synced files ``bigint`` (SQLite's INTEGER holds 64 bits). Names
unique regardless of case (SQLite's ``COLLATE NOCASE``) are unique indexes on ``lower(name)``;
the paths of synced files compare byte by byte (``COLLATE "C"``, SQLite's BINARY), so that
"everything under a/b" is the range between "a/b/" and "a/b0" whatever the database's locale.

Revision ID: 0001
Revises:
Create Date: 2026-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jupyter_compute_servers.db import legacy

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        legacy.upgrade(bind)
        return
    _postgresql()


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Double, nullable=nullable)


def _server_fk(name: str = "server_id", **kwargs: object) -> sa.Column:
    return sa.Column(
        name,
        sa.Integer,
        sa.ForeignKey("servers.id", ondelete="CASCADE"),
        nullable=False,
        **kwargs,  # type: ignore[arg-type]
    )


def _postgresql() -> None:
    text = sa.Text
    # 1: servers and their state history (2: kernel_specs; 4: daily_stop).
    op.create_table(
        "servers",
        _id(),
        sa.Column("name", text, nullable=False),
        sa.Column("color", text, nullable=False),
        sa.Column("notes", text, nullable=False, server_default=""),
        sa.Column("cloud", text, nullable=False),
        sa.Column("state", text, nullable=False),
        sa.Column("state_reason", text, nullable=False, server_default=""),
        sa.Column("config", text, nullable=False),
        sa.Column("idle_timeout_minutes", sa.Integer),
        sa.Column("spend_limit", text),
        _time("created"),
        _time("updated"),
        sa.Column("cloud_data", text, nullable=False, server_default="{}"),
        sa.Column("operation", text),
        sa.Column("operation_owner", text),
        sa.Column("progress", text),
        sa.Column("kernel_specs", text),
        sa.Column("daily_stop", text),
    )
    op.create_index("servers_name_nocase", "servers", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "state_history",
        _id(),
        sa.Column("server_id", sa.Integer, nullable=False),
        _time("at"),
        sa.Column("state", text, nullable=False),
        sa.Column("reason", text, nullable=False, server_default=""),
        sa.Column("action", text),
    )
    op.create_index("state_history_server", "state_history", ["server_id", "at"])
    # 3: on-prem hosts, their slices, and the queue of servers waiting for GPUs.
    op.create_table(
        "hosts",
        _id(),
        sa.Column("name", text, nullable=False),
        sa.Column("hostname", text, nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("username", text, nullable=False),
        sa.Column("identity_file", text),
        sa.Column("use_agent", sa.Integer, nullable=False, server_default="0"),
        sa.Column("host_key", text),
        sa.Column("host_key_source", text),
        sa.Column("pending_host_key", text),
        sa.Column("python", text, nullable=False, server_default="python3"),
        sa.Column("hourly_rate", sa.Double),
        sa.Column("gpu_rates", text, nullable=False, server_default="{}"),
        sa.Column("gpu_wait_minutes", sa.Double, nullable=False, server_default="30"),
        sa.Column("inventory", text),
        sa.Column("inventory_error", text, nullable=False, server_default=""),
        _time("inventoried", nullable=True),
        _time("created"),
        _time("updated"),
    )
    op.create_index("hosts_name_nocase", "hosts", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "host_slices",
        sa.Column("server_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id"), nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory_gb", sa.Double, nullable=False),
        sa.Column("gpu_uuids", text, nullable=False, server_default="[]"),
        sa.Column("token", text, nullable=False),
        _time("allocated"),
    )
    op.create_table(
        "gpu_queue",
        sa.Column("server_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id"), nullable=False),
        _time("requested"),
    )
    # 4: costs: the rates in effect over time, and the alerts given.
    op.create_table(
        "rate_history",
        _id(),
        sa.Column("server_id", sa.Integer, nullable=False),
        _time("at"),
        sa.Column("rates", text, nullable=False),
    )
    op.create_index("rate_history_server", "rate_history", ["server_id", "at"])
    op.create_table(
        "cost_alerts",
        sa.Column("key", text, primary_key=True),
        _time("at"),
    )
    # 5: file sync (6: the generation of each pair's record).
    op.create_table(
        "sync_settings",
        _server_fk(primary_key=True, autoincrement=False),
        sa.Column("settings", text, nullable=False),
    )
    op.create_table(
        "sync_trees",
        _id(),
        _server_fk(),
        sa.Column("local_root", text, nullable=False),
        sa.Column("remote_root", text, nullable=False),
        sa.Column("remote_tree_id", text, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("server_id", "local_root", "remote_root", "remote_tree_id"),
    )
    big = sa.BigInteger
    op.create_table(
        "sync_files",
        sa.Column(
            "tree_id",
            sa.Integer,
            sa.ForeignKey("sync_trees.id", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("path", sa.Text(collation="C"), primary_key=True),
        sa.Column("hash", text, nullable=False),
        sa.Column("size", big, nullable=False),
        sa.Column("mtime_ns", big, nullable=False),
        sa.Column("mode", sa.Integer, nullable=False),
        *(
            sa.Column(f"{side}_{field}", big)
            for side in ("local", "remote")
            for field in ("size", "mtime_ns", "ino", "ctime_ns")
        ),
    )
    op.create_table(
        "sync_runs",
        _id(),
        _server_fk(),
        sa.Column("direction", text, nullable=False),
        sa.Column("path", text, nullable=False),
        sa.Column("trigger", text, nullable=False),
        sa.Column("state", text, nullable=False),
        _time("started"),
        _time("finished", nullable=True),
        sa.Column("owner", text),
        sa.Column("progress", text),
        sa.Column("summary", text),
        sa.Column("error", text),
    )
    op.create_index("sync_runs_server", "sync_runs", ["server_id", "id"])


def downgrade() -> None:
    raise NotImplementedError("The baseline is the oldest schema there is.")
