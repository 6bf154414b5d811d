"""What a user's own database login (row-level security, ``db/roles.py``) costs against the
owner's login, on the store's hot paths, side by side in one run.

    python benchmarks/team_db.py [--servers N] [--owners K] [--files F] [--repeat R]

Starts a PostgreSQL 15 of its own (tests/postgres.py: a temp dir, a free port), makes N
servers over K owners, and times as medians of R runs, each with the owner's login and with
the first owner's issued login (a user's, as the control plane issues it):

(a) one owner's scoped list of servers;
(b) a start and a stop of one server (``transition``: the row lock, the history and audit
    lines; the quota check's read of everyone's rows is in (a)'s kind);
(c) a first sync's record: F files committed to a pair's record (``SyncStore.commit``, one
    prepared statement for all rows: the ``sync_files`` policy is checked per row);
(d) a new connection's login (``SELECT 1`` on a fresh engine; a user's issued login is a
    SCRAM password check, the owner's here is trust, as in the tests).

Then what revision 0009's narrow views cost (``db/usage.py``: a user's login reads others'
rows only through them), each against the table read the code made before, by the owner's
login (which row-level security does not restrict), interleaved:

(e) the quota check's read of what one owner holds (``ServerStore.holding``: the view's
    ``resources`` against the configurations' JSON, parsed in Python);
(f) every server's owner, state and GPUs/CPUs/RAM asked for (all N rows: the view parses
    each configuration in PostgreSQL, with a function that answers NULL for no JSON).

Prints a table with the ratios (user / owner) and exits 0 (it is a report). The machine is
shared and noisy: compare the figures of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, select, text  # noqa: E402

from jupyter_compute_servers.db import Database, engine_url  # noqa: E402
from jupyter_compute_servers.db.usage import server_usage  # noqa: E402
from jupyter_compute_servers.models import ServerConfig, State  # noqa: E402
from jupyter_compute_servers.store import ServerStore, servers  # noqa: E402
from jupyter_compute_servers.sync.plan import Base  # noqa: E402
from jupyter_compute_servers.sync.records import SyncStore  # noqa: E402
from jupyter_compute_servers.team import HOLDING_STATES  # noqa: E402
from tests.postgres import PostgresServer, login_url  # noqa: E402


def median_ms(action: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--owners", type=int, default=50)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    postgres = PostgresServer()
    try:
        owner_url = postgres.create_database()
        setup = Database(owner_url)
        stores = {
            f"user{i}": ServerStore(setup, clock=time.time, owner=f"user{i}", scoped=True)
            for i in range(args.owners)
        }
        names = list(stores)
        for n in range(args.servers):
            stores[names[n % args.owners]].create(
                name=f"s{n}",
                color="#1f77b4",
                notes="",
                cloud="local",
                config=ServerConfig(cpu=1, memory_gb=1.0),
                idle_timeout_minutes=None,
                spend_limit=None,
            )
        with setup.transaction() as connection:  # half of them running: what quotas count
            connection.execute(text("UPDATE servers SET state = 'running' WHERE id % 2 = 0"))
        user_url = login_url(owner_url, "user0")
        rows: list[tuple[str, float, float]] = []
        logins = {"owner": owner_url, "user": user_url}
        databases = {kind: Database(url, migrate=False) for kind, url in logins.items()}
        scoped = {
            kind: ServerStore(db, clock=time.time, owner="user0", scoped=True)
            for kind, db in databases.items()
        }
        server = {kind: store.servers()[0].id for kind, store in scoped.items()}

        def listing(kind: str) -> None:
            scoped[kind].servers()

        def start_stop(kind: str) -> None:
            scoped[kind].transition(server[kind], to=State.RUNNING, action="start")
            scoped[kind].transition(server[kind], to=State.OFF, action="stop")

        files = [
            (f"dir{i // 100}/file{i}.txt", Base(f"{i:064x}", 4096, i, 0o644, None, None))
            for i in range(args.files)
        ]
        sync = {kind: SyncStore(db) for kind, db in databases.items()}
        pairs = iter(range(10**6))

        def first_sync(kind: str) -> None:
            tree = sync[kind].tree(server[kind], "/local", "/remote", f"tree-{next(pairs)}")
            sync[kind].commit(tree, files)  # type: ignore[arg-type]

        def connect(kind: str) -> None:
            engine = create_engine(engine_url(logins[kind])[0])
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            engine.dispose()

        for label, action, repeat in (
            ("(a) one owner's list", listing, args.repeat),
            ("(b) start + stop", start_stop, args.repeat),
            (f"(c) record {args.files} synced files", first_sync, max(3, args.repeat // 4)),
            ("(d) a new connection's login", connect, args.repeat),
        ):
            # Interleaved, so that the machine's noise falls on both alike.
            figures: dict[str, list[float]] = {"owner": [], "user": []}
            for _ in range(repeat):
                for kind in ("owner", "user"):
                    figures[kind].append(median_ms(lambda k=kind, a=action: a(k), 1))
            rows.append(
                (label, statistics.median(figures["owner"]), statistics.median(figures["user"]))
            )
        print(f"{'':38} {'owner ms':>10} {'user ms':>10} {'ratio':>7}")
        for label, owner, user in rows:
            print(f"{label:38} {owner:10.2f} {user:10.2f} {user / owner:7.2f}")

        holding_states = [s.value for s in HOLDING_STATES]

        def holding_before() -> None:
            with databases["owner"].read() as connection:
                found = connection.execute(
                    select(servers.c.config, servers.c.cloud).where(
                        servers.c.owner == "user1", servers.c.state.in_(holding_states)
                    )
                ).all()
            [json.loads(r.config) for r in found]

        def holding_view() -> None:
            with databases["user"].read() as connection:
                scoped["user"].holding(connection, "user1")

        def everyone_before() -> None:
            with databases["owner"].read() as connection:
                found = connection.execute(
                    select(servers.c.owner, servers.c.state, servers.c.config)
                ).all()
            [json.loads(r.config) for r in found]

        def everyone_view() -> None:
            with databases["user"].read() as connection:
                found = connection.execute(
                    select(server_usage.c.owner, server_usage.c.state, server_usage.c.resources)
                ).all()
            [json.loads(r.resources) for r in found]

        print(f"\n{'':38} {'table ms':>10} {'view ms':>10} {'ratio':>7}")
        for label, before, after in (
            ("(e) one owner's holding (quota)", holding_before, holding_view),
            (f"(f) all {args.servers} servers' usage", everyone_before, everyone_view),
        ):
            table_ms, view_ms = [], []
            for _ in range(args.repeat):
                table_ms.append(median_ms(before, 1))
                view_ms.append(median_ms(after, 1))
            t, v = statistics.median(table_ms), statistics.median(view_ms)
            print(f"{label:38} {t:10.2f} {v:10.2f} {v / t:7.2f}")
        for db in (*databases.values(), setup):
            db.close()
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
