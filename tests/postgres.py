"""A real PostgreSQL for the tests: Debian's PostgreSQL 15 (``apt-get install postgresql``),
its own cluster in a temp dir, on a free port of 127.0.0.1, started once per test session.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user (the
Debian package makes it) and its commands run through ``runuser -u postgres --``. Nothing here
skips: when PostgreSQL cannot be started, every test that needs it fails, saying why.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

BIN = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (BIN / tool).exists():
                raise RuntimeError(
                    f"{BIN / tool} is missing: install Debian's PostgreSQL 15 "
                    f"(apt-get install postgresql), or set POSTGRES_BIN."
                )
        self.as_root = os.geteuid() == 0
        # As root, under /tmp whatever TMPDIR says: the postgres user must reach it.
        self.dir = Path(
            tempfile.mkdtemp(
                prefix="compute-servers-postgres-", dir="/tmp" if self.as_root else None
            )
        )
        account = pwd.getpwnam(USER) if self.as_root else None
        if account is not None:
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.names = itertools.count(1)
        self.databases: list[str] = []
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            # A database whose default collation is not bytewise (ICU, English), as many are:
            # the synced paths must compare byte by byte all the same.
            "--locale=C.UTF-8",
            "--locale-provider=icu",
            "--icu-locale=en-US",
        )
        # The tests' own superuser logs in without a password; every other role (the logins the
        # control plane issues to users) with its password, checked as a real server does.
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            f"local all {USER} trust\n"
            f"host all {USER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        if account is not None:
            os.chown(hba, account.pw_uid, account.pw_gid)
        # fsync off: the tests never crash PostgreSQL, and the machine is shared and slow.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.dir / "log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(BIN / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.dir / "log"
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}"
                + (log.read_text()[-2000:] if log.exists() else "")
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
        )

    def create_database(self) -> str:
        """A new, empty database: its URL. The databases made before are dropped first: a
        test's database outlives the test a little (a Jupyter server stops after the fixtures
        that made its configuration), but not the next test's start."""
        name = f"test_{next(self.names)}"
        with self._admin() as admin:
            for old in self.databases:
                admin.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
            self.databases = [name]
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


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
