"""Team mode on PostgreSQL: who may touch which rows, enforced by PostgreSQL itself.

The team's control plane holds the database owner's login; each user's Jupyter server gets a
login of its own from it (``issue``): a PostgreSQL LOGIN role per Hub user, with a random
password that PostgreSQL accepts for new logins for an hour (``VALID UNTIL``; an open
connection is not cut, PostgreSQL checks it at login only), member of one of two NOLOGIN
group roles holding the privileges:

- **users** (``cs_users_<database>``): read the rows of their own servers (``servers.owner``
  is their Hub user name) and of what hangs off them (state history, slices, sync records);
  of everyone's, only what the quotas, the fair GPU queue, its estimates and spend per group
  need: the narrow views of ``db/usage`` (no server name, configuration beyond GPUs/CPUs/RAM,
  state reason nor slice token), the queue entries (ids, host, times, caps: no names), the
  recorded rates, the team's members and their groups, the hosts. They write only the rows
  of their own servers and of what hangs off them (state history, slices, queue entries,
  rates, sync records), their own ``team_members`` row, and the audit log by INSERT only,
  lines about their own servers. Of a host they may write only its inventory (a user may
  ask for it again); its hostname, port, account, pinned key and prices are the admins'.
  The image catalogue's tested marks (``image_marks``) they may only read.
- **admins** (``cs_admins_<database>``): every row of every table, except that the audit log
  and the state history are INSERT (and SELECT) only for everyone; they alone mark images
  tested (insert, update, delete ``image_marks``).

Which Hub user a login is: the table ``database_logins`` (role -> Hub user), written by the
control plane only and read through ``compute_servers_hub_user()``, a SECURITY DEFINER function
(users have no privilege on the table). Row-level security policies compare ``owner`` columns
with it. The database's owner (the control plane, migrations) is not subject to them.

Role names are cluster-wide in PostgreSQL and a cluster may hold several teams' databases: the
names carry a digest of the database's name (and the Hub user's), never the user's own text.

``apply`` makes the group roles and (re)writes the grants and policies; it is idempotent, run
by revisions 0007 to 0009 when the migrating role may create roles, and by the control plane
at every start (so a table or view added later gets its privileges there too).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from . import usage

#: The tables that hang off a server by ``server_id``.
_SERVER_ROWS = (
    "host_slices",
    "gpu_queue",
    "rate_history",
    "sync_settings",
    "sync_trees",
    "sync_runs",
)
#: Of those, the ones other users' processes must read whole (the queue's order and caps,
#: group spend's recorded rates): neither names a server nor holds a secret. Everyone's slices
#: are read through ``db/usage``'s ``slice_usage`` (a slice's token is its own server's).
_READ_BY_ALL = frozenset({"gpu_queue", "rate_history"})
#: The columns of ``hosts`` a user may write: its inventory (``POST /hosts/{id}/inventory``).
USER_HOST_COLUMNS = ("inventory", "inventory_error", "inventoried", "updated")
#: The longest and shortest life of an issued login (seconds).
MAX_VALIDITY = 24 * 3600
MIN_VALIDITY = 1


def _digest(*parts: str, size: int = 8) -> str:
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=size).hexdigest()


@dataclass(frozen=True)
class GroupRoles:
    users: str
    admins: str


def group_roles(database: str) -> GroupRoles:
    """The two NOLOGIN group roles of the team database named ``database``."""
    suffix = _digest(database, size=4)
    return GroupRoles(f"cs_users_{suffix}", f"cs_admins_{suffix}")


def login_role(database: str, hub_user: str) -> str:
    """The LOGIN role of ``hub_user`` in ``database``: a digest, whatever the name holds."""
    return f"cs_user_{_digest(database, hub_user)}"


def may_create_roles(connection: Connection) -> bool:
    row = connection.execute(
        text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    ).scalar()
    return bool(row)


def _q(connection: Connection, name: str) -> str:
    """``name`` quoted as an SQL identifier (by PostgreSQL itself)."""
    return str(connection.execute(text("SELECT quote_ident(:n)"), {"n": name}).scalar_one())


def apply(connection: Connection) -> GroupRoles:
    """Make the group roles (if missing) and set every grant and policy of the schema."""
    database, schema = connection.execute(text("SELECT current_database(), current_schema()")).one()
    roles = group_roles(database)
    for role in (roles.users, roles.admins):
        exists = connection.execute(
            text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if exists is None:
            connection.execute(text(f"CREATE ROLE {_q(connection, role)} NOLOGIN"))
    users, admins = _q(connection, roles.users), _q(connection, roles.admins)
    both = f"{users}, {admins}"
    s = _q(connection, schema)
    me = f"(SELECT {s}.compute_servers_hub_user())"
    mine = f"(SELECT id FROM {s}.servers WHERE owner = {me})"  # noqa: S608 - quoted names

    def sql(statement: str) -> None:
        connection.execute(text(statement))

    # Which Hub user the session's login is; readable by nobody but through this function.
    body = f"SELECT hub_user FROM {s}.database_logins WHERE role = session_user"  # noqa: S608
    sql(
        f"CREATE OR REPLACE FUNCTION {s}.compute_servers_hub_user() RETURNS text "
        f"LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS "
        f"$$ {body} $$"
    )
    sql(f"REVOKE ALL ON FUNCTION {s}.compute_servers_hub_user() FROM PUBLIC")
    sql(f"GRANT EXECUTE ON FUNCTION {s}.compute_servers_hub_user() TO {both}")
    sql(f"REVOKE ALL ON {s}.database_logins FROM PUBLIC")
    # CONNECT and the schema's USAGE are PUBLIC's by default; granted here too where this role
    # may (the database's owner), so that a database that revoked them from PUBLIC works.
    may_grant = connection.execute(
        text(
            "SELECT has_database_privilege(current_user, :d, 'CONNECT WITH GRANT OPTION'), "
            "has_schema_privilege(current_user, :s, 'USAGE WITH GRANT OPTION')"
        ),
        {"d": database, "s": schema},
    ).one()
    if may_grant[0]:
        sql(f"GRANT CONNECT ON DATABASE {_q(connection, database)} TO {both}")
    if may_grant[1]:
        sql(f"GRANT USAGE ON SCHEMA {s} TO {both}")
    sql(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {both}")
    sql(f"GRANT SELECT ON {s}.alembic_version TO {both}")

    # Table privileges: (users', admins').
    grants = {
        "servers": ("SELECT, INSERT, UPDATE, DELETE", "SELECT, INSERT, UPDATE, DELETE"),
        "state_history": ("SELECT, INSERT", "SELECT, INSERT"),
        "audit_log": ("INSERT", "SELECT, INSERT"),
        "team_members": ("SELECT, INSERT, UPDATE", "SELECT, INSERT, UPDATE, DELETE"),
        "hosts": (
            f"SELECT, UPDATE ({', '.join(USER_HOST_COLUMNS)})",
            "SELECT, INSERT, UPDATE, DELETE",
        ),
        "cost_alerts": ("SELECT, INSERT, DELETE", "SELECT, INSERT, DELETE"),
        "sync_files": ("SELECT, INSERT, UPDATE, DELETE", "SELECT, INSERT, UPDATE, DELETE"),
        # The tested marks: every user's server shows them; admins alone curate them.
        "image_marks": ("SELECT", "SELECT, INSERT, UPDATE, DELETE"),
        **{
            table: ("SELECT, INSERT, UPDATE, DELETE", "SELECT, INSERT, UPDATE, DELETE")
            for table in _SERVER_ROWS
        },
    }
    # (A revision before a table's applies what it has: 0007 runs this before 0008 made
    # image_marks; the control plane's start, at the head, applies all.)
    existing = set(
        connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
        ).scalars()
    )
    for table, (user_grant, admin_grant) in grants.items():
        if table not in existing:
            continue
        t = f"{s}.{table}"
        sql(f"REVOKE ALL ON {t} FROM {both}")
        sql(f"GRANT {user_grant} ON {t} TO {users}")
        sql(f"GRANT {admin_grant} ON {t} TO {admins}")
        sql(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY")
        for (name,) in connection.execute(
            text("SELECT policyname FROM pg_policies WHERE schemaname = :s AND tablename = :t"),
            {"s": schema, "t": table},
        ).all():
            sql(f"DROP POLICY {_q(connection, name)} ON {t}")
        # Admins: every row (what their grants allow them to do with it).
        sql(f"CREATE POLICY admins ON {t} TO {admins} USING (true) WITH CHECK (true)")

    def policy(table: str, command: str, using: str | None, check: str | None = None) -> None:
        if table not in existing:
            return
        clauses = (f" USING ({using})" if using else "") + (
            f" WITH CHECK ({check})" if check else ""
        )
        name = f"users_{command.lower()}"
        sql(f"CREATE POLICY {name} ON {s}.{table} FOR {command} TO {users}{clauses}")

    # servers: one's own readable and writable, never given away (what the quotas and the
    # queue need of everyone's is read through db/usage's views).
    policy("servers", "SELECT", f"owner = {me}")
    policy("servers", "INSERT", None, f"owner = {me}")
    policy("servers", "UPDATE", f"owner = {me}", f"owner = {me}")
    policy("servers", "DELETE", f"owner = {me}")
    # The state history: one's own readable (spend per group reads everyone's through
    # db/usage's history_usage), added to for oneself only.
    policy("state_history", "SELECT", f"owner = {me}")
    policy("state_history", "INSERT", None, f"owner = {me}")
    # The audit log: lines about one's own servers only; read by admins only. (The actor is
    # who the user's server says it served: an admin the Hub let into it is one.)
    policy("audit_log", "INSERT", None, f"owner = {me}")
    policy("team_members", "SELECT", "true")
    policy("team_members", "INSERT", None, f"name = {me}")
    policy("team_members", "UPDATE", f"name = {me}", f"name = {me}")
    # hosts: readable; the inventory columns of any host writable (its row lock too: a start
    # locks the host's row, FOR UPDATE, while it claims GPUs).
    policy("hosts", "SELECT", "true")
    policy("hosts", "UPDATE", "true", "true")
    policy("image_marks", "SELECT", "true")
    # A dedupe table of alerts given, keyed by text that names no owner (see README).
    policy("cost_alerts", "ALL", "true", "true")
    for table in _SERVER_ROWS:
        own = f"server_id IN {mine}"
        policy(table, "SELECT", "true" if table in _READ_BY_ALL else own)
        policy(table, "INSERT", None, own)
        policy(table, "UPDATE", own, own)
        policy(table, "DELETE", own)
    # The narrow views of everyone's rows (db/usage, revision 0009): read only. Owned by the
    # database's owner, they read their tables past these policies.
    present = set(
        connection.execute(
            text("SELECT viewname FROM pg_views WHERE schemaname = :s"), {"s": schema}
        ).scalars()
    )
    for view in usage.VIEW_NAMES:
        if view in present:
            sql(f"REVOKE ALL ON {s}.{view} FROM PUBLIC")
            sql(f"GRANT SELECT ON {s}.{view} TO {both}")
    own_tree = f"tree_id IN (SELECT id FROM {s}.sync_trees WHERE server_id IN {mine})"  # noqa: S608
    policy("sync_files", "ALL", own_tree, own_tree)
    return roles


@dataclass(frozen=True)
class Login:
    """A login issued to a Hub user: PostgreSQL accepts it for new connections until
    ``expires_at`` (Unix seconds)."""

    hub_user: str
    role: str
    password: str
    expires_at: float
    admin: bool


def issue(
    connection: Connection,
    hub_user: str,
    *,
    admin: bool = False,
    validity: float = 3600,
    clock: Any = time.time,
) -> Login:
    """Create or update ``hub_user``'s LOGIN role with a new random password valid for
    ``validity`` seconds, in the users' or the admins' group (and out of the other), recorded
    in ``database_logins``. Run as the database's owner, with CREATEROLE, in a transaction."""
    if not MIN_VALIDITY <= validity <= MAX_VALIDITY:
        raise ValueError(f"validity must be {MIN_VALIDITY} to {MAX_VALIDITY} seconds.")
    database = str(connection.execute(text("SELECT current_database()")).scalar_one())
    roles = group_roles(database)
    role = login_role(database, hub_user)
    # One issue per user at a time (two of the user's processes asking at once).
    lock_login(connection, role)
    password = secrets.token_urlsafe(32)
    # The password goes to the server as a SCRAM verifier, never in clear (no log has it).
    raw = connection.connection.driver_connection
    assert raw is not None
    verifier = raw.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    expires_at = clock() + validity
    until = str(
        connection.execute(
            text("SELECT to_char(to_timestamp(:t) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"),
            {"t": expires_at},
        ).scalar_one()
    )
    q = _q(connection, role)
    exists = connection.execute(
        text("SELECT rolsuper, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = :r"),
        {"r": role},
    ).first()
    verb = "ALTER" if exists else "CREATE"
    # Naming SUPERUSER, REPLICATION or BYPASSRLS at all in an ALTER takes a superuser (on
    # PostgreSQL 15, even to set what is already so): an ALTER by the owner with CREATEROLE
    # names them only when the role has one (then only a superuser may take it away).
    held = ("NOSUPERUSER", "NOREPLICATION", "NOBYPASSRLS")
    attributes = " ".join(a for a, on in zip(held, exists or (True,) * 3, strict=True) if on)
    # (on the driver's connection, in the same transaction: the verifier's ':' are no bind
    # parameters there)
    raw.execute(
        f"{verb} ROLE {q} WITH LOGIN {attributes} NOCREATEDB NOCREATEROLE INHERIT "
        f"PASSWORD {_literal(connection, verifier.decode())} "
        f"VALID UNTIL {_literal(connection, until + '+00')}"
    )
    member, other = (roles.admins, roles.users) if admin else (roles.users, roles.admins)
    connection.execute(text(f"GRANT {_q(connection, member)} TO {q}"))
    connection.execute(text(f"REVOKE {_q(connection, other)} FROM {q}"))
    connection.execute(
        text(
            "INSERT INTO database_logins (role, hub_user, admin, issued) "
            "VALUES (:role, :hub_user, :admin, :issued) ON CONFLICT (role) DO UPDATE SET "
            "hub_user = excluded.hub_user, admin = excluded.admin, issued = excluded.issued"
        ),
        {"role": role, "hub_user": hub_user, "admin": admin, "issued": clock()},
    )
    return Login(hub_user, role, password, expires_at, admin)


def lock_login(connection: Connection, role: str) -> None:
    """Hold ``role``'s issue lock to the end of the transaction: an issue and a revocation
    of one user's login never interleave."""
    connection.execute(
        text("SELECT pg_advisory_xact_lock(:k)"),
        {"k": int.from_bytes(bytes.fromhex(_digest("login", role)), "big", signed=True)},
    )


def disable(connection: Connection, hub_user: str) -> str | None:
    """Make ``hub_user``'s LOGIN role NOLOGIN (an admin revoked them): its name, None when it
    has none. ``issue`` makes it LOGIN again. Commit before ``end_sessions``, so that a
    session ended cannot log in again in between.

    Ending another role's sessions takes that role's privileges (``pg_terminate_backend``):
    a superuser has them; the owner with CREATEROLE grants itself the user's role here (on
    PostgreSQL 15 CREATEROLE may grant any non-superuser role; from 16 the role's creator
    holds it WITH ADMIN OPTION). Membership gives the owner nothing it lacked: it owns every
    table the user's role may touch."""
    database = str(connection.execute(text("SELECT current_database()")).scalar_one())
    role = login_role(database, hub_user)
    lock_login(connection, role)
    exists = connection.execute(
        text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
    ).first()
    if exists is None:
        return None
    q = _q(connection, role)
    connection.execute(text(f"ALTER ROLE {q} NOLOGIN"))
    privileged = connection.execute(
        text("SELECT pg_has_role(current_user, :r, 'USAGE')"), {"r": role}
    ).scalar()
    if not privileged:
        connection.execute(text(f"GRANT {q} TO CURRENT_USER"))
    return role


def end_sessions(connection: Connection, role: str) -> int:
    """End every open session of ``role`` (``disable`` made it NOLOGIN): how many."""
    ended = connection.execute(
        text(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = :r"
        ),
        {"r": role},
    ).scalar_one()
    return int(ended)


def _literal(connection: Connection, value: str) -> str:
    return str(connection.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar_one())
