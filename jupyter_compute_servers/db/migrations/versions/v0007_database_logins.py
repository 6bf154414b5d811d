"""Team mode on PostgreSQL: short-lived database logins per Hub user, and what each may touch.

The table ``database_logins`` (which Hub user each issued login role is, written by the
control plane), and the group roles, grants and row-level security policies of ``db/roles``,
where the migrating role may create roles (superuser or CREATEROLE: the control plane's
login must have it to issue logins). Where it may not, they are left to the control plane's
start, which applies them whatever the revision (``roles.apply`` is idempotent).

SQLite is one person's database: nothing changes there.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jupyter_compute_servers.db import roles

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    op.create_table(
        "database_logins",
        sa.Column("role", sa.Text, primary_key=True),
        sa.Column("hub_user", sa.Text, nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("issued", sa.Double, nullable=False),
    )
    if roles.may_create_roles(bind):
        roles.apply(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP FUNCTION IF EXISTS compute_servers_hub_user()")
    op.drop_table("database_logins")
