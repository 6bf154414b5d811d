"""Two starts racing on PostgreSQL for the last of a quota: the first holds its admission
open until the second waits for the owner's lock, so a missing lock shows as two winners."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from jupyter_compute_servers.db import Database
from jupyter_compute_servers.errors import ConflictError
from jupyter_compute_servers.models import State
from jupyter_compute_servers.store import ServerStore

#: The admission a start's transaction runs (a team's quota check): (db, store, owner, config).
Check = Callable[[Any, ServerStore, str, str], None]


def waiter_blocked(url: str) -> bool:
    """Whether a session of this database waits for an advisory lock (PostgreSQL)."""
    probe = Database(url, migrate=False)
    try:
        with probe.read() as db:
            return bool(
                db.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    )
                ).scalar()
            )
    finally:
        probe.close()


def race_two_starts(
    url: str, check: Check, first: tuple[ServerStore, int], second: tuple[ServerStore, int]
) -> tuple[Any, Any]:
    """Start ``first`` and, while its admission is held, ``second`` (each a store of its own
    process and a server id); answer each outcome: the record, or the ``ConflictError``."""
    outcomes: dict[str, Any] = {}

    def start(label: str, store: ServerStore, server_id: int, hold: bool) -> None:
        def admit(db: Any, owner: str, config: str) -> None:
            check(db, store, owner, config)
            # Hold the decision open until the other start is waiting for the owner's
            # lock: without that lock both would read what is left and both would start.
            deadline = time.monotonic() + 10
            while hold and not waiter_blocked(url) and time.monotonic() < deadline:
                time.sleep(0.05)

        try:
            outcomes[label] = store.transition(
                server_id, to=State.STARTING, action="start", admit=admit
            )
        except ConflictError as e:
            outcomes[label] = e

    holder = threading.Thread(target=start, args=("first", *first, True))
    holder.start()
    time.sleep(0.2)  # (not a timing assertion: only lets the holder take the lock first)
    racer = threading.Thread(target=start, args=("second", *second, False))
    racer.start()
    holder.join(30)
    racer.join(30)
    return outcomes["first"], outcomes["second"]
