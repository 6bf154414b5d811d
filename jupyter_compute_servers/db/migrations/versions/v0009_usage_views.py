"""Team mode: a user's login reads only their own servers, state history and slices; what the
quotas, the fair GPU queue, its estimates and spend per group need of everyone's is read
through three narrow views (``db/usage.py``):

- ``server_usage``: each server's id, owner, cloud, state, daily stop, and of its
  configuration only the GPUs, CPUs and RAM it asks for (``resources``, JSON);
- ``history_usage``: each state change's server id, time, state and owner (no reason: an
  error's text may name a hostname);
- ``slice_usage``: each slice's server id, host, CPUs, RAM, GPUs, share, Unix user, when it
  was given and its server's owner (no token).

On PostgreSQL they are ``security_barrier`` views owned by the database's owner, which row
level security does not restrict, so a reader granted a view sees every row of those columns
and no other column; ``db/roles`` grants them and narrows the tables' SELECT policies (applied
here where the migrating role may create roles, else at the control plane's start). On SQLite
(one person's database, no logins) they are plain views, so that the code reads the same.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from jupyter_compute_servers.db import roles, usage

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for statement in usage.create_statements(bind.dialect.name):
        op.execute(statement)
    if bind.dialect.name != "sqlite" and roles.may_create_roles(bind):
        roles.apply(bind)


def downgrade() -> None:
    for statement in usage.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
