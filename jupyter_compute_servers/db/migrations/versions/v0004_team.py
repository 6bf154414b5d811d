"""Team mode: each server's owner, the owner in the state history (so spend per user outlives
the server), and the audit log of who did what.

Rows from before have the owner ``''``: standalone (which does not filter by owner) they stay
the local user's as before; in team mode they belong to nobody and only admins see them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sa.Text
    op.add_column("servers", sa.Column("owner", text, nullable=False, server_default=""))
    op.create_index("servers_owner", "servers", ["owner"])
    op.add_column("state_history", sa.Column("owner", text, nullable=False, server_default=""))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("actor", text, nullable=False),
        sa.Column("owner", text, nullable=False),
        sa.Column("server_id", sa.Integer),
        sa.Column("server_name", text, nullable=False, server_default=""),
        sa.Column("action", text, nullable=False),
        sa.Column("detail", text, nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )
    op.create_index("audit_log_at", "audit_log", ["at"])
