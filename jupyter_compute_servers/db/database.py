"""The one owner of the database: its engine and connection pool, its transactions, and its
migration history.

``db_url`` names it:

- ``sqlite:///absolute/path.db`` (the default: a file in ``data_dir``). Every pooled
  connection is set up the same way: WAL journal, ``synchronous=FULL``, foreign keys on, a
  30-second busy timeout. A write transaction is ``BEGIN IMMEDIATE``: it takes the database's
  write lock up front, so two processes (the Jupyter server and the CLI) never interleave a
  read-check-write. Reads run in a deferred transaction (a consistent snapshot, never blocked by
  a writer).
- ``postgresql://user@host:port/dbname`` (run by psycopg 3; ``postgresql+psycopg://`` also
  works). In team mode with a control plane and no user or password in the URL, every new
  connection logs in with this user's short-lived login from the control plane
  (``credentials``), and PostgreSQL itself limits what it may touch (``roles``); such a
  login cannot migrate, so the control plane (the database's owner) does, and a user's
  server only checks the revision.
  Write transactions run at READ COMMITTED: a transaction that decides from a row it read
  locks that row (``SELECT ... FOR UPDATE``, ``with_for_update()``), and one that decides
  from the absence of a row (a free name, a new pair of synced trees) takes a named lock first
  (``Database.lock``, a transaction-scoped advisory lock). Both are no-ops on SQLite, where the
  write lock already covers them.

Every change is one transaction, committed before the caller returns, so an answer the API
gave is durable (SQLite: ``synchronous=FULL``; PostgreSQL: its default
``synchronous_commit=on``).

The stores (``store.ServerStore``, ``hosts.HostStore``, ``sync.records.SyncStore``,
``billing.records.CostRecords``) each define their own tables on ``metadata`` and share one
``Database``. The schema's history is Alembic's (``db/migrations``), run on open, in one
transaction, by whichever process opens the database first.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlparse

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ValidationError
from . import legacy
from .credentials import DatabaseCredentials

#: The tables of every store (each module adds its own).
metadata = MetaData()

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The Alembic revision that is the schema of the last release migrated by ``PRAGMA
#: user_version`` (see ``legacy``).
BASELINE_REVISION = "0001"

#: Execution option that makes a connection's transaction a write transaction.
_WRITE = "compute_servers_write"


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:////abs/path.db`` or ``sqlite:///abs/path.db`` -> a Path (always absolute,
    as this extension has always read it)."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ValidationError(f"{url!r} is not a sqlite:/// URL.", field="db_url")
    path = unquote(parsed.path).lstrip("/")
    if not path:
        raise ValidationError(f"The database URL {url!r} names no file.", field="db_url")
    return Path("/" + path)


def engine_url(url: str) -> tuple[URL, Path | None]:
    """The SQLAlchemy URL of a ``db_url``, and the file for SQLite (None for PostgreSQL)."""
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        path = sqlite_path_from_url(url)
        return URL.create("sqlite+pysqlite", database=str(path)), path
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        try:
            parsed = make_url("postgresql+psycopg" + url[len(scheme) :])
        except ArgumentError:
            raise ValidationError(
                "db_url is not a valid postgresql:// URL.", field="db_url"
            ) from None
        if not parsed.database:
            raise ValidationError(
                f"The database URL {redacted(url)} names no database.", field="db_url"
            )
        return parsed, None
    raise ValidationError(
        f"Unsupported database URL {redacted(url)}: use sqlite:///path/to/file.db or "
        f"postgresql://user@host/dbname.",
        field="db_url",
    )


def redacted(url: str) -> str:
    """The URL as it may be shown or logged: without its password."""
    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return repr(url.partition(":")[0] + ":...")


def without_password(url: str) -> str:
    """The URL with no password in it, for what is written where others may read it (kernel
    specs): a process given it finds the password in the configuration (``db_url``) or where
    libpq looks (PGPASSWORD, ~/.pgpass)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.password is None:
        return url
    # (``URL.set(password=None)`` leaves the password: None there means "unchanged".)
    return parsed._replace(password=None).render_as_string(hide_password=False)


#: The most ids one ``IN (...)`` query names: far under SQLite's limit on bound parameters
#: (999 before 3.32) and PostgreSQL's.
IN_BATCH = 500


class _OfServer(Protocol):
    @property
    def server_id(self) -> int: ...


OfServer = TypeVar("OfServer", bound=_OfServer)


def by_server(
    server_ids: Collection[int], read: Callable[[list[int]], Iterable[OfServer]]
) -> dict[int, list[OfServer]]:
    """What ``read`` answers for many servers, grouped by server id (each id present, with no
    entries if it has none). ``read`` gets the ids sorted, at most ``IN_BATCH`` at a time: one
    ``IN (...)`` query each."""
    found: dict[int, list[OfServer]] = {server_id: [] for server_id in server_ids}
    ordered = sorted(found)
    for start in range(0, len(ordered), IN_BATCH):
        for entry in read(ordered[start : start + IN_BATCH]):
            found[entry.server_id].append(entry)
    return found


def inserted_id(result: CursorResult[Any]) -> int:
    """The id an INSERT of one row gave it."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    digest = hashlib.blake2b(f"jupyter_compute_servers:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by us (_sqlite_begin), not by the sqlite3 module's guesses.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """The engine and pool over ``db_url``, migrated to the newest schema on open.

    Thread-safe: each transaction takes a connection of the pool for its duration.
    """

    def __init__(
        self, url: str, *, migrate: bool = True, credentials: DatabaseCredentials | None = None
    ) -> None:
        #: As configured (``db_url``); may hold a password: never show it, see ``redacted``.
        self.url = url
        #: This user's logins from the control plane (team mode), or None: the URL's own.
        self.credentials = credentials
        sa_url, self.path = engine_url(url)
        if credentials is not None and self.path is not None:
            raise ValidationError(
                "Database logins from the control plane are for a team's PostgreSQL; db_url "
                "names a SQLite file.",
                field="db_url",
            )
        self.dialect = sa_url.get_backend_name()
        self.engine: Engine
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Made private before SQLite writes anything into it.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)
            self.engine = create_engine(
                sa_url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(sa_url, pool_pre_ping=True)
            if credentials is not None:
                # Asked now: a server that cannot have a login fails at start, saying why.
                login = credentials.current()
                if login.dbname != sa_url.database:
                    raise ValidationError(
                        f"The control plane issues logins for the database {login.dbname!r}, "
                        f"but db_url names {sa_url.database!r}: make them the same.",
                        field="db_url",
                    )
                event.listen(self.engine, "do_connect", self._connect_with_login)
        try:
            if credentials is not None:
                self._require_head()
            elif migrate:
                self.migrate()
        except BaseException:
            self.engine.dispose()
            raise

    def _connect_with_login(
        self, dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]
    ) -> Any:
        """SQLAlchemy's ``do_connect``: a new connection logs in with the current login; one
        PostgreSQL refuses (expired, replaced by another of the user's processes, or made
        NOLOGIN by an admin's revocation) is replaced once: while the user is revoked the
        control plane refuses a new one, saying so; once restored, the new one logs in."""
        assert self.credentials is not None
        import psycopg

        login = self.credentials.current()
        try:
            return dialect.connect(
                *cargs, **{**cparams, "user": login.user, "password": login.password}
            )
        except psycopg.OperationalError as e:
            message = str(e)
            if (
                "password authentication failed" not in message
                and "is not permitted to log in" not in message
            ):
                raise
        self.credentials.drop(login)
        login = self.credentials.current()
        return dialect.connect(
            *cargs, **{**cparams, "user": login.user, "password": login.password}
        )

    def _require_head(self) -> None:
        """A user's login cannot change the schema: it must be this package's already."""
        revision, head = self.revision, self.head_revision()
        if revision != head:
            raise RuntimeError(
                f"The database {redacted(self.url)} is at schema revision {revision}, this "
                f"jupyter_compute_servers at {head}. The control plane migrates it at its start "
                f"(it holds the owner's login): ask an admin to upgrade and restart it."
            )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def close(self) -> None:
        """Close every pooled connection (the Database may not be used afterwards)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({redacted(self.url)})"

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        Never open one inside another on the same thread: on SQLite the inner one would wait
        for the outer one's write lock.
        """
        with self.engine.connect() as connection:
            connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent view for the statements of the block."""
        with self.engine.connect() as connection, connection.begin():
            yield connection

    def lock(self, connection: Connection, name: str) -> None:
        """Hold the lock ``name`` until the transaction ends: for a decision made from rows
        that are not there (no row to lock with ``FOR UPDATE``). SQLite's write transactions
        hold the whole database already."""
        if not self.is_sqlite:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})

    def insert(self, table: Table) -> sqlite.Insert | postgresql.Insert:
        """An INSERT with this database's ``on_conflict_do_nothing`` / ``_do_update``."""
        if self.is_sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    # --- migrations -----------------------------------------------------------------------

    def _alembic(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        config.attributes["connection"] = connection
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest revision, in one transaction.

        A SQLite store from before Alembic (``user_version`` set, no ``alembic_version``)
        first runs the legacy scripts it lacks, then is stamped at the baseline: its tables
        and rows stay as they are.
        """
        with self._schema_transaction() as connection:
            self.lock(connection, "migrations")
            config = self._alembic(connection)
            if (
                self.is_sqlite
                and not _has_alembic_version(connection)
                and legacy.user_version(connection) > 0
            ):
                legacy.upgrade(connection)
                command.stamp(config, BASELINE_REVISION)
            try:
                command.upgrade(config, "head")
            except CommandError as e:
                raise RuntimeError(
                    f"The database {redacted(self.url)} has a schema revision this "
                    f"jupyter_compute_servers does not know ({e}). Upgrade the package."
                ) from None

    @contextmanager
    def _schema_transaction(self) -> Iterator[Connection]:
        """The migrations' write transaction. On SQLite its foreign keys are off (they cannot
        be switched inside a transaction) and checked before the commit: SQLite's way to make
        a table again (revision 0006) drops the old one, which with foreign keys on would
        delete the rows of the tables that reference it."""
        if not self.is_sqlite:
            with self.transaction() as connection:
                yield connection
            return
        with self.engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                connection.execution_options(**{_WRITE: True})
                with connection.begin():
                    yield connection
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise RuntimeError(
                            f"The migration left a row of {broken[0]} that references a "
                            f"missing row of {broken[2]}; nothing was changed."
                        )
            finally:
                raw.execute("PRAGMA foreign_keys=ON")

    @property
    def revision(self) -> str | None:
        """The schema's Alembic revision (None before ``migrate``)."""
        with self.read() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        return ScriptDirectory.from_config(config).get_current_head()


def _has_alembic_version(connection: Connection) -> bool:
    row = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).first()
    return row is not None
