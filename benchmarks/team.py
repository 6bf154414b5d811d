"""What team mode adds to the store: an owner's scoped list against the unscoped one, and a
start with the quota check (the owner's lock and count, in the start's transaction) against
one without.

    python benchmarks/team.py [--servers N] [--owners K] [--repeat R] [--db-url URL]

Builds a store (SQLite in a temporary directory, or the PostgreSQL database ``--db-url``
names, which must be empty) with N servers spread over K owners, then times, as medians of R
runs, side by side in one run:

(a) listing: every server (standalone's ``servers()``), one owner's (team mode's scoped
    ``servers()``, on the ``servers_owner`` index);
(b) a start and a stop of one server: ``transition`` without and with the team's ``admit``.

It prints a table with the ratios and exits 0 (it is a report). The machine is shared and
noisy: compare the figures of one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_compute_servers.db import Database
from jupyter_compute_servers.models import GpuSpec, ServerConfig, State
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.team import Quota, Team


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
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--db-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db_url or f"sqlite:///{Path(tmp) / 'servers.db'}"
        database = Database(url)
        stores = {
            f"user{i}": ServerStore(database, clock=time.time, owner=f"user{i}", scoped=True)
            for i in range(args.owners)
        }
        owners = list(stores)
        config = ServerConfig(cpu=1, memory_gb=1.0, gpu=GpuSpec("T4", 1))
        for n in range(args.servers):
            stores[owners[n % args.owners]].create(
                name=f"s{n}",
                color="#1f77b4",
                notes="",
                cloud="local",
                config=config,
                idle_timeout_minutes=None,
                spend_limit=None,
            )
        plain = ServerStore(database, clock=time.time)
        mine = stores[owners[0]]
        team = Team(enabled=True, owner=owners[0], quotas={"*": Quota(running_servers=5, gpus=5)})
        server_id = mine.servers()[0].id

        def cycle(admit: Any) -> None:
            mine.transition(server_id, to=State.STARTING, action="start", admit=admit)
            mine.transition(server_id, to=State.OFF, action="stop")

        def admit(db: Any, owner: str, cfg: str) -> None:
            team.check_start(db, mine, owner, cfg)

        rows = [
            ("list: all servers (standalone)", median_ms(plain.servers, args.repeat)),
            ("list: one owner's (team)", median_ms(mine.servers, args.repeat)),
            ("start+stop without quota check", median_ms(lambda: cycle(None), args.repeat)),
            ("start+stop with quota check", median_ms(lambda: cycle(admit), args.repeat)),
        ]
        print(
            f"{database!r}: {args.servers} servers, {args.owners} owners, median of {args.repeat}"
        )
        for label, ms in rows:
            print(f"  {label:34} {ms:8.3f} ms")
        print(f"  ratio list one owner's / all:      {rows[1][1] / rows[0][1]:.2f}")
        print(f"  ratio start+stop with / without:   {rows[3][1] / rows[2][1]:.2f}")
        database.close()


if __name__ == "__main__":
    main()
