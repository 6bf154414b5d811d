"""The image catalogue's tested marks in the database (``images/marks.py``): in team mode an
admin's mark is the team's, seen by every user's server; PostgreSQL lets only the admins'
group role write them (``db/roles``), which is applied again here where the migrating role may
create roles (else at the control plane's start, as for 0007).

Standalone servers keep their marks in their data directory's file: the table is made on
SQLite too (every store's tables are made on both) but stays empty there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jupyter_compute_servers.db import roles

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "image_marks",
        sa.Column("image_id", sa.Text, primary_key=True),
        sa.Column("tag", sa.Text, primary_key=True),
        sa.Column("marked_by", sa.Text, nullable=False),
        sa.Column("marked_at", sa.Double, nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name != "sqlite" and roles.may_create_roles(bind):
        roles.apply(bind)


def downgrade() -> None:
    op.drop_table("image_marks")
