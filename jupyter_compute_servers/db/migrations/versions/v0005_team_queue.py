"""Team mode's fair GPU queue and spend per group: each queue entry's place in line (an
admin's reorder), its owner's per-user cap and who cancelled it; and each Hub user's groups as
last seen (a user's groups are known only to their own process).

Entries from before keep their order (``place`` None: by ``requested``), have no cap and are
not cancelled.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gpu_queue") as batch:
        batch.add_column(sa.Column("place", sa.Double))
        batch.add_column(sa.Column("user_cap", sa.Double))
        batch.add_column(sa.Column("cancelled_by", sa.Text))
    op.create_table(
        "team_members",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("groups", sa.Text, nullable=False, server_default="[]"),
        sa.Column("seen", sa.Double, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("team_members")
    with op.batch_alter_table("gpu_queue") as batch:
        batch.drop_column("cancelled_by")
        batch.drop_column("user_cap")
        batch.drop_column("place")
