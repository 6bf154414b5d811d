"""A PostgreSQL cluster of its own: Debian's PostgreSQL 15 (``apt-get install postgresql``), in a
temp dir, on a free port of 127.0.0.1. The tests' database (tests/postgres.py) and
``jupyter compute-servers team-try`` run it.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user (the
Debian package makes it) and its commands run through ``runuser -u postgres --``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

USER = "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path:
    """Where initdb and pg_ctl are: ``POSTGRES_BIN``, or Debian's PostgreSQL 15."""
    return Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresNotInstalled(RuntimeError):
    pass


class PostgresServer:
    def __init__(self) -> None:
        self.bin = postgres_bin()
        for tool in ("initdb", "pg_ctl"):
            if not (self.bin / tool).exists():
                raise PostgresNotInstalled(
                    f"{self.bin / tool} is missing: install Debian's PostgreSQL 15 "
                    f"(apt-get install postgresql), or set POSTGRES_BIN."
                )
        self.as_root = os.geteuid() == 0
        # As root, under /tmp whatever TMPDIR says: the postgres user must reach it.
        self.dir = Path(
            tempfile.mkdtemp(
                prefix="compute-servers-postgres-",
                dir="/tmp" if self.as_root else None,  # noqa: S108 (mkdtemp: 0700, own name)
            )
        )
        account = pwd.getpwnam(USER) if self.as_root else None
        if account is not None:
            os.chown(self.dir, account.pw_uid, account.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                # A database whose default collation is not bytewise (ICU, English), as many
                # are: the synced paths must compare byte by byte all the same.
                "--locale=C.UTF-8",
                "--locale-provider=icu",
                "--icu-locale=en-US",
            )
            # The superuser logs in without a password; every other role (the logins the
            # control plane issues to users) with its password, checked as a real server does.
            hba = self.data / "pg_hba.conf"
            hba.write_text(
                f"local all {USER} trust\n"
                f"host all {USER} 127.0.0.1/32 trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
            )
            if account is not None:
                os.chown(hba, account.pw_uid, account.pw_gid)
            # fsync off: a cluster of tests or of a try, never a team's real data.
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} "
                "-c fsync=off -c full_page_writes=off -c max_connections=200"
            )
            log = str(self.dir / "log")
            self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", USER, "--", *command]
        # A session of its own: a Ctrl-C in the terminal of ``team-try`` reaches the command,
        # which stops PostgreSQL after the Hub, not PostgreSQL under the Hub's feet.
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, start_new_session=True
        )
        if result.returncode != 0:
            log = self.dir / "log"
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}"
                + (log.read_text()[-2000:] if log.exists() else "")
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
        )

    def create_database(self, name: str) -> str:
        """A new, empty database (``name`` is the caller's, never a user's): its URL."""
        with self.admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
