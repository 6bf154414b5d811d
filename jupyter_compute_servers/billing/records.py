"""What costs keep in the database every store shares (``db.Database``), in their own tables:

- ``rate_history``: the hourly rates in effect for each server from a time on, so that spend
  already incurred never changes with a new configuration or price table (see ``metering``);
- ``cost_alerts``: the cost alerts already given, so each is given once, across restarts and
  processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Double,
    Index,
    Integer,
    Select,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

from ..db import Database, by_server, metadata

rate_history = Table(
    "rate_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("server_id", Integer, nullable=False),
    Column("at", Double, nullable=False),
    Column("rates", Text, nullable=False),
    Index("rate_history_server", "server_id", "at"),
    sqlite_autoincrement=True,
)

cost_alerts = Table(
    "cost_alerts",
    metadata,
    Column("key", Text, primary_key=True),
    Column("at", Double, nullable=False),
)


@dataclass(frozen=True)
class RatesEntry:
    """The hourly rates of a server's configuration from ``at`` on (see ``billing``)."""

    server_id: int
    at: float
    rates: dict[str, Any]


class CostRecords:
    """The recorded rates and the alerts given, in the shared database."""

    def __init__(self, database: Database, *, clock: Callable[[], float]) -> None:
        self.database = database
        self.clock = clock

    def record_rates(
        self, server_id: int, rates: dict[str, Any], *, at: float | None = None
    ) -> None:
        """The server's hourly rates from now on (its configuration or the prices changed)."""
        with self.database.transaction() as db:
            db.execute(
                insert(rate_history).values(
                    server_id=server_id,
                    at=self.clock() if at is None else at,
                    rates=json.dumps(rates),
                )
            )

    def rates_history(self, server_id: int | None = None) -> list[RatesEntry]:
        """Every recorded change of rates (of one server, or of all), oldest first."""
        query = select(rate_history)
        if server_id is not None:
            query = query.where(rate_history.c.server_id == server_id)
        return self._rates_history(query)

    def rates_histories_of(self, server_ids: Collection[int]) -> dict[int, list[RatesEntry]]:
        """``rates_history`` of many servers, by id (a query per 500 of them)."""
        return by_server(
            server_ids,
            lambda batch: self._rates_history(
                select(rate_history).where(rate_history.c.server_id.in_(batch))
            ),
        )

    def _rates_history(self, query: Select[Any]) -> list[RatesEntry]:
        with self.database.read() as db:
            rows = db.execute(query.order_by(rate_history.c.id)).mappings().all()
        return [RatesEntry(r["server_id"], r["at"], json.loads(r["rates"])) for r in rows]

    def rate_counts(self, server_id: int | None = None) -> dict[int, int]:
        """How many rate records each server has (the table only ever grows), by server id."""
        query = select(rate_history.c.server_id, func.count()).group_by(rate_history.c.server_id)
        if server_id is not None:
            query = query.where(rate_history.c.server_id == server_id)
        with self.database.read() as db:
            return {row[0]: row[1] for row in db.execute(query)}

    def cost_alerts(self) -> set[str]:
        """The keys of the cost alerts already given."""
        with self.database.read() as db:
            return set(db.execute(select(cost_alerts.c.key)).scalars())

    def add_cost_alert(self, key: str) -> bool:
        """Record that an alert was given; False if it had been already (by any process)."""
        with self.database.transaction() as db:
            result = db.execute(
                self.database.insert(cost_alerts)
                .values(key=key, at=self.clock())
                .on_conflict_do_nothing(index_elements=["key"])
            )
            return result.rowcount == 1

    def remove_cost_alerts(self, keys: list[str]) -> None:
        """Re-arm alerts (their condition ended)."""
        if keys:
            with self.database.transaction() as db:
                db.execute(delete(cost_alerts).where(cost_alerts.c.key.in_(keys)))
