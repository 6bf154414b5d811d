"""The control plane's **database secrets engine**: it holds the team database owner's login
(never in a user's server) and issues each Hub user a login of their own, valid for an hour,
whose privileges PostgreSQL enforces (``db.roles``: a user's own servers and what hangs off
them; shared hosts, others' rows and the audit log's past are out of reach). Admins, by the
same rule as the user servers' (Hub admins, ``--admin-user``, ``--admin-group``), get a login
in the admins' group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from ..db import Database, roles
from .admins import AdminRule
from .ca import CAError


class DatabaseLogins:
    """Issues short-lived PostgreSQL logins over ``database`` (opened with the owner's login,
    migrated, and its roles and policies applied at start)."""

    def __init__(
        self,
        database: Database,
        *,
        validity: float = 3600,
        admins: AdminRule | None = None,
    ) -> None:
        if database.is_sqlite:
            raise CAError(
                "--db-url must name the team's PostgreSQL database (SQLite is one person's).",
                field="db_url",
            )
        if not roles.MIN_VALIDITY <= validity <= roles.MAX_VALIDITY:
            raise CAError(
                f"--db-login-validity must be {roles.MIN_VALIDITY} to {roles.MAX_VALIDITY} "
                f"seconds.",
                field="db_login_validity",
            )
        self.database = database
        self.validity = validity
        self.admins = admins or AdminRule()
        with database.transaction() as connection:
            if not roles.may_create_roles(connection):
                raise CAError(
                    "The control plane's database login may not create roles: give it "
                    "CREATEROLE (ALTER ROLE ... CREATEROLE).",
                    field="db_url",
                )
            roles.apply(connection)
        url = database.engine.url
        self.address = {"host": url.host, "port": url.port or 5432, "dbname": url.database}

    def issue(
        self, model: dict[str, Any], refuse: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """A new login for the Hub user of ``model`` (HubAuth's user model). ``refuse(name)``
        raises when the user may not have one (revoked): asked under the login's lock, so a
        revocation made while this waited is seen (``disable`` takes the same lock)."""
        name = str(model["name"])
        admin = self.admins.is_admin(model)
        with self.database.transaction() as connection:
            if refuse is not None:
                database = str(connection.execute(text("SELECT current_database()")).scalar())
                roles.lock_login(connection, roles.login_role(database, name))
                refuse(name)
            login = roles.issue(connection, name, admin=admin, validity=self.validity)
        return {
            "user": login.role,
            "password": login.password,
            "expires_at": login.expires_at,
            "hub_user": name,
            "admin": admin,
            **self.address,
        }

    def disable(self, hub_user: str) -> int:
        """``hub_user``'s login made NOLOGIN and its open sessions ended (revoked); how many
        sessions were ended."""
        with self.database.transaction() as connection:
            role = roles.disable(connection, hub_user)
        if role is None:
            return 0
        with self.database.transaction() as connection:
            return roles.end_sessions(connection, role)
