"""Spend, by the second, from the durable state history.

Each interval of a server's state history is charged at its state's hourly rate (a
transitional state at its target state's rate, see ``prices.STATE_RATE``) for exactly as long
as it lasted. The rates are those recorded for the server at the time (``rate_history``: a
new configuration or a new price table changes what comes next, never what was spent); a
server with no recorded rates yet is charged at its current ones.

Amounts are ``Decimal``: three hours at $0.38 is $1.14, not 1.1400000000000001. Nothing is
kept in memory: after a crash or a restart the same history gives the same spend.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..store import HistoryEntry, RatesEntry
from .prices import ZERO, StateRates, money

SECONDS_PER_HOUR = Decimal(3600)


@dataclass
class Spend:
    """Dollars spent in a window; ``unknown`` names the parts whose price was not known for
    some of it (so the amount is a lower bound)."""

    amount: Decimal = ZERO
    unknown: set[str] = field(default_factory=set)

    def add(self, other: Spend) -> None:
        self.amount += other.amount
        self.unknown |= other.unknown

    def to_json(self) -> dict[str, Any]:
        return {"amount": money(self.amount), "unknown": sorted(self.unknown)}


def _d(t: float) -> Decimal:
    return Decimal(repr(float(t)))


def rate_timeline(entries: Iterable[RatesEntry]) -> list[tuple[Decimal, StateRates]]:
    return sorted(
        ((_d(e.at), StateRates.from_snapshot(e.rates)) for e in entries), key=lambda x: x[0]
    )


def meter(
    history: Sequence[HistoryEntry],
    timeline: Sequence[tuple[Decimal, StateRates]],
    current: StateRates | None,
    windows: Mapping[str, tuple[float, float]],
    now: float,
) -> dict[str, Spend]:
    """Spend of one server in each window ``[start, end)``, up to ``now``.

    ``history`` is the server's state history, oldest first; ``timeline`` its recorded rates,
    oldest first (the first applies before it too); ``current`` the rates to use when none
    were recorded (None: a deleted server with none recorded, whose spend is unknown).
    """
    spends = {name: Spend() for name in windows}
    bounds = {name: (_d(a), _d(b)) for name, (a, b) in windows.items()}
    end_of_time = _d(now)
    for index, entry in enumerate(history):
        start = _d(entry.at)
        end = _d(history[index + 1].at) if index + 1 < len(history) else end_of_time
        end = min(end, end_of_time)
        if end <= start:
            continue
        state = entry.state.value
        for seg_start, seg_end, rates in _segments(start, end, timeline, current):
            if rates is None:
                rate_hourly, unknown = ZERO, ["the recorded rates of this deleted server"]
                if state in ("deprovisioned", "deprovisioning"):
                    continue
            else:
                rate = rates.for_state(state)
                rate_hourly, unknown = rate.hourly, rate.unknown
                if rate_hourly == 0 and not unknown:
                    continue
            for name, (w_start, w_end) in bounds.items():
                overlap = min(seg_end, w_end) - max(seg_start, w_start)
                if overlap > 0:
                    spend = spends[name]
                    spend.amount += rate_hourly * overlap / SECONDS_PER_HOUR
                    spend.unknown.update(unknown)
    return spends


def _segments(
    start: Decimal,
    end: Decimal,
    timeline: Sequence[tuple[Decimal, StateRates]],
    current: StateRates | None,
) -> list[tuple[Decimal, Decimal, StateRates | None]]:
    """``[start, end)`` cut where the recorded rates change, each piece with its rates."""
    if not timeline:
        return [(start, end, current)]
    pieces: list[tuple[Decimal, Decimal, StateRates | None]] = []
    rates = timeline[0][1]
    cut = start
    for at, next_rates in timeline:
        if at <= start:
            rates = next_rates
            continue
        if at >= end:
            break
        pieces.append((cut, at, rates))
        cut, rates = at, next_rates
    pieces.append((cut, end, rates))
    return pieces


def meter_all(
    history: Sequence[HistoryEntry],
    rates: Sequence[RatesEntry],
    current: Mapping[int, StateRates],
    windows: Mapping[str, tuple[float, float]],
    now: float,
) -> dict[int, dict[str, Spend]]:
    """``meter`` for every server in a history (deleted ones too), by server id."""
    histories: dict[int, list[HistoryEntry]] = defaultdict(list)
    for entry in history:
        histories[entry.server_id].append(entry)
    recorded: dict[int, list[RatesEntry]] = defaultdict(list)
    for rates_entry in rates:
        recorded[rates_entry.server_id].append(rates_entry)
    return {
        server_id: meter(
            entries,
            rate_timeline(recorded.get(server_id, ())),
            current.get(server_id),
            windows,
            now,
        )
        for server_id, entries in histories.items()
    }


# --- calendar ------------------------------------------------------------------------------


def local_zone() -> dt.tzinfo:
    """The time zone of the machine running Jupyter (``TZ``, else /etc/localtime, else UTC)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return zoneinfo.ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return dt.timezone.utc


def day_start(now: float, tz: dt.tzinfo) -> float:
    """Midnight that began the day of ``now`` in ``tz``."""
    local = dt.datetime.fromtimestamp(now, tz)
    return dt.datetime(local.year, local.month, local.day, tzinfo=tz).timestamp()


def month_start(now: float, tz: dt.tzinfo) -> float:
    """Midnight that began the month of ``now`` in ``tz``."""
    local = dt.datetime.fromtimestamp(now, tz)
    return dt.datetime(local.year, local.month, 1, tzinfo=tz).timestamp()


def month_name(now: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(now, tz).strftime("%Y-%m")
