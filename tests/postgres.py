"""A real PostgreSQL for the tests: the package's own cluster in a temp dir
(jupyter_compute_servers/team_try/postgres.py, Debian's PostgreSQL 15 on a free port of
127.0.0.1), started once per test session, with a new database per test.

Nothing here skips: when PostgreSQL cannot be started, every test that needs it fails, saying
why.
"""

from __future__ import annotations

import itertools

from jupyter_compute_servers.team_try import postgres
from jupyter_compute_servers.team_try.postgres import free_port

__all__ = ["PostgresServer", "free_port"]


class PostgresServer(postgres.PostgresServer):
    def __init__(self) -> None:
        super().__init__()
        self.names = itertools.count(1)
        self.databases: list[str] = []

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database: its URL. The databases made before are dropped first: a
        test's database outlives the test a little (a Jupyter server stops after the fixtures
        that made its configuration), but not the next test's start."""
        name = name or f"test_{next(self.names)}"
        with self.admin() as admin:
            for old in self.databases:
                admin.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
            self.databases = [name]
        return super().create_database(name)


def login_url(owner_url: str, hub_user: str, *, admin: bool = False) -> str:
    """``owner_url``'s database as ``hub_user``'s own login, issued as the control plane
    issues it (``db.roles.issue``: an hour, a user's or an admin's privileges), with its
    password in the URL: a store on it is a user's server's, PostgreSQL's policies and all.
    A SQLite URL is one person's, returned as it is."""
    if owner_url.startswith("sqlite"):
        return owner_url
    from sqlalchemy.engine import make_url

    from jupyter_compute_servers.db import Database, roles

    owner = Database(owner_url)  # (migrated first, as the control plane does at its start)
    try:
        with owner.transaction() as connection:
            login = roles.issue(connection, hub_user, admin=admin)
    finally:
        owner.close()
    url = make_url(owner_url).set(username=login.role, password=login.password)
    return url.render_as_string(hide_password=False)
