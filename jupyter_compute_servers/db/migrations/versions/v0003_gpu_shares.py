"""GPU shares: the shares of each GPU a host's admin allows (MPS), and each slice's share of
its GPU and the Unix user its processes run as (one MPS server serves one user at a time).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("gpu_fractions", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("host_slices") as batch:
        batch.add_column(sa.Column("gpu_fraction", sa.Double))
        batch.add_column(sa.Column("unix_user", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("host_slices") as batch:
        batch.drop_column("unix_user")
        batch.drop_column("gpu_fraction")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("gpu_fractions")
