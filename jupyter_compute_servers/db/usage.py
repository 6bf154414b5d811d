"""The narrow views of everyone's rows that team mode's shared computations read.

In team mode a user's database login reads only their own rows of ``servers``,
``state_history`` and ``host_slices`` (``db/roles``: row-level security). Yet the quotas, the
fair GPU queue, its estimates and spend per group are worked out from everyone's: what each
owner holds, each server's daily stop, each slice's GPUs, each state change's time. These
views give exactly those columns of every row, and nothing else: no server name, notes,
configuration beyond the GPUs/CPUs/RAM asked for, cloud bookkeeping, state reason, nor a
slice's token.

On PostgreSQL they are ``security_barrier`` views owned by the database's owner: a view reads
its tables with its owner's rights, and row-level security does not apply to a table's owner,
so a login granted SELECT on a view sees every row of its columns (and a function in the
reader's WHERE clause cannot see the rows the view filters: there are none to filter). On
SQLite (one person's, no logins) they are plain views: the same code reads both.

Revision 0009 makes them; ``db/roles.apply`` grants them.
"""

from __future__ import annotations

from sqlalchemy import Column, Double, Integer, MetaData, Table, Text

#: Not ``db.metadata``: the migrations make these (as views), never ``create_all``, and the
#: schema comparison of tables leaves them out.
views = MetaData()

#: Every server: what the quotas, the queue and its estimates need. ``resources`` is JSON,
#: ``{"gpu": ..., "cpu": ..., "memory_gb": ...}`` of its configuration (NULL when that is not
#: a JSON object), ``daily_stop`` as the table keeps it.
server_usage = Table(
    "server_usage",
    views,
    Column("id", Integer),
    Column("owner", Text),
    Column("cloud", Text),
    Column("state", Text),
    Column("daily_stop", Text),
    Column("resources", Text),
)

#: Every state change (deleted servers' too): what spend per user and group needs.
history_usage = Table(
    "history_usage",
    views,
    Column("id", Integer),
    Column("server_id", Integer),
    Column("at", Double),
    Column("state", Text),
    Column("owner", Text),
)

#: Every slice of a shared host, with its server's owner ('' when the server is gone): what
#: the queue, its per-user cap and GPU placement need.
slice_usage = Table(
    "slice_usage",
    views,
    Column("server_id", Integer),
    Column("host_id", Integer),
    Column("cpu", Integer),
    Column("memory_gb", Double),
    Column("gpu_uuids", Text),
    Column("gpu_fraction", Double),
    Column("unix_user", Text),
    Column("allocated", Double),
    Column("owner", Text),
)

VIEW_NAMES = ("server_usage", "history_usage", "slice_usage")

_HISTORY = "SELECT id, server_id, at, state, owner FROM state_history"
_SLICES = (
    "SELECT host_slices.server_id, host_id, cpu, memory_gb, gpu_uuids, gpu_fraction, "
    "unix_user, allocated, coalesce(servers.owner, '') AS owner "
    "FROM host_slices LEFT JOIN servers ON servers.id = host_slices.server_id"
)


def create_statements(dialect: str) -> list[str]:
    """The SQL that makes the views on ``dialect`` ("sqlite" or "postgresql")."""
    if dialect == "sqlite":
        resources = (
            "CASE WHEN json_valid(config) AND json_type(config) = 'object' THEN json_object("
            "'gpu', json(config -> '$.gpu'), 'cpu', json(config -> '$.cpu'), "
            "'memory_gb', json(config -> '$.memory_gb')) END"
        )
        return [
            f"CREATE VIEW server_usage AS SELECT id, owner, cloud, state, daily_stop, "  # noqa: S608
            f"{resources} AS resources FROM servers",
            f"CREATE VIEW history_usage AS {_HISTORY}",
            f"CREATE VIEW slice_usage AS {_SLICES}",
        ]
    # A configuration a user wrote by hand that is no JSON must not break everyone's reads
    # of the view (a cast's error would): parsed by a function that answers NULL instead,
    # once per row (its exception handler is a subtransaction: the one cost of the view).
    return [
        "CREATE OR REPLACE FUNCTION compute_servers_resources(config text) RETURNS text "
        "LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$ "
        "DECLARE c jsonb; "
        "BEGIN "
        "BEGIN c := config::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END; "
        "IF jsonb_typeof(c) IS DISTINCT FROM 'object' THEN RETURN NULL; END IF; "
        "RETURN jsonb_build_object("
        "'gpu', c -> 'gpu', 'cpu', c -> 'cpu', 'memory_gb', c -> 'memory_gb')::text; "
        "END $$",
        "CREATE VIEW server_usage WITH (security_barrier) AS "
        "SELECT id, owner, cloud, state, daily_stop, "
        "compute_servers_resources(config) AS resources FROM servers",
        f"CREATE VIEW history_usage WITH (security_barrier) AS {_HISTORY}",
        f"CREATE VIEW slice_usage WITH (security_barrier) AS {_SLICES}",
    ]


def drop_statements(dialect: str) -> list[str]:
    drops = [f"DROP VIEW IF EXISTS {name}" for name in VIEW_NAMES]
    if dialect != "sqlite":
        drops.append("DROP FUNCTION IF EXISTS compute_servers_resources(text)")
    return drops
