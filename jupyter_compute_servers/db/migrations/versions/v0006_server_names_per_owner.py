"""Team mode: a server's name is unique among its owner's servers (in any case), not across
the whole team, so that one user's "already exists" never tells them another user's names.

PostgreSQL: the unique index on ``lower(name)`` becomes one on ``(owner, lower(name))``.

SQLite: the name's uniqueness was the column's own ``UNIQUE`` (the baseline's, from the
releases before Alembic), which SQLite cannot drop: the table is made again without it (SQLite's
way: a new table, the rows copied, the old one dropped, the new one renamed; foreign keys are
off for the migration's transaction, see ``Database.migrate``, so that dropping the old table
does not cascade to the sync tables that reference it), its counter of ids kept (a deleted
server's id is never given again: its history and audit lines keep it), and the same index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The name column as the baseline made it, and as it is from here on (still case-blind).
_UNIQUE_NAME = "name TEXT NOT NULL UNIQUE COLLATE NOCASE"
_NAME = "name TEXT NOT NULL COLLATE NOCASE"


def _rebuild_servers_sqlite(old_name: str, new_name: str) -> None:
    """Make ``servers`` again with its name column changed, rows, ids and counter kept."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'servers'"
    ).scalar_one()
    if old_name not in sql:
        raise RuntimeError(f"servers' name column is not {old_name!r}: {sql}")
    head, _, rest = sql.partition("(")
    assert head.split()[:2] == ["CREATE", "TABLE"], sql
    sequence = bind.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'servers'"
    ).scalar()
    bind.exec_driver_sql("CREATE TABLE servers_0006 (" + rest.replace(old_name, new_name, 1))
    bind.exec_driver_sql("INSERT INTO servers_0006 SELECT * FROM servers")
    bind.exec_driver_sql("DROP TABLE servers")
    bind.exec_driver_sql("ALTER TABLE servers_0006 RENAME TO servers")
    # The copy's counter is the highest id there is now; a deleted server's may have been
    # higher (or the table empty): the old counter is kept where it is more.
    highest = max(sequence or 0, bind.exec_driver_sql("SELECT max(id) FROM servers").scalar() or 0)
    bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'servers'")
    if highest:
        bind.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('servers', ?)", (highest,)
        )
    op.create_index("servers_owner", "servers", ["owner"])


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_servers_sqlite(_UNIQUE_NAME, _NAME)
    else:
        op.drop_index("servers_name_nocase", table_name="servers")
    op.create_index(
        "servers_owner_name_nocase", "servers", ["owner", sa.text("lower(name)")], unique=True
    )


def downgrade() -> None:
    op.drop_index("servers_owner_name_nocase", table_name="servers")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_servers_sqlite(_NAME, _UNIQUE_NAME)
    else:
        op.create_index("servers_name_nocase", "servers", [sa.text("lower(name)")], unique=True)
