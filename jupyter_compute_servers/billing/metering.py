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
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..store import HistoryEntry
from .prices import ZERO, StateRates, money
from .records import RatesEntry

SECONDS_PER_HOUR = Decimal(3600)


@dataclass
class Spend:
    """Dollars spent in a window; ``unknown`` names the parts whose price was not known for
    some of it (so the amount is a lower bound)."""

    amount: Decimal = ZERO
    unknown: set[str] = field(default_factory=set)
    #: What spend limits and the budget count: ``amount`` with a snapshot's spot prices at
    #: the on-demand price (``Rate.limit_hourly``); None: the same as ``amount``.
    limit: Decimal | None = None

    @property
    def limit_amount(self) -> Decimal:
        return self.amount if self.limit is None else self.limit

    def add(self, other: Spend) -> None:
        if self.limit is not None or other.limit is not None:
            self.limit = self.limit_amount + other.limit_amount
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


@dataclass(frozen=True)
class _Piece:
    start: Decimal
    hourly: Decimal
    unknown: tuple[str, ...]
    limit_hourly: Decimal


class Ledger:
    """One server's spend as a function of time.

    Its history and recorded rates make a piecewise constant rate: a piece starts at each
    state change and each change of rates, and the last one runs on (the server is still in
    that state). With the cumulative spend at the start of every piece, the spend in any
    window is a difference of two look-ups, so a ledger, built once, answers "today", "this
    month" and "the last 7 days" in O(log n) however long the history is.
    """

    def __init__(
        self,
        history: Sequence[HistoryEntry],
        timeline: Sequence[tuple[Decimal, StateRates]],
        current: StateRates | None,
    ) -> None:
        pieces: list[_Piece] = []
        ats = [at for at, _ in timeline]
        for index, entry in enumerate(history):
            start = _d(entry.at)
            end = _d(history[index + 1].at) if index + 1 < len(history) else None
            if end is not None and end <= start:
                continue
            state = entry.state.value
            unknown: tuple[str, ...]
            for piece_start, rates in _cut(start, end, timeline, ats, current):
                if rates is None:
                    if state in ("deprovisioned", "deprovisioning"):
                        hourly, unknown = ZERO, ()
                    else:
                        hourly, unknown = ZERO, ("the recorded rates of this deleted server",)
                    limit = hourly
                else:
                    rate = rates.for_state(state)
                    hourly, unknown = rate.hourly, tuple(rate.unknown)
                    limit = rate.limit_hourly
                if pieces and (pieces[-1].hourly, pieces[-1].unknown, pieces[-1].limit_hourly) == (
                    hourly,
                    unknown,
                    limit,
                ):
                    continue  # the same rate goes on
                pieces.append(_Piece(piece_start, hourly, unknown, limit))
        self.starts = [piece.start for piece in pieces]
        self.pieces = pieces
        #: Dollar-seconds per hour spent before each piece (divided by 3600 at the end, so
        #: that whole seconds at a rate in cents give exact amounts).
        self.before: list[Decimal] = []
        #: The same at the rates limits count (``limit_hourly``).
        self.limit_before: list[Decimal] = []
        #: Whether limits count anything other than what is spent.
        self.limits_differ = any(piece.limit_hourly != piece.hourly for piece in pieces)
        total = limit_total = ZERO
        for index, piece in enumerate(pieces):
            self.before.append(total)
            self.limit_before.append(limit_total)
            if index + 1 < len(pieces):
                seconds = pieces[index + 1].start - piece.start
                total += piece.hourly * seconds
                limit_total += piece.limit_hourly * seconds

    def _cumulative(self, t: Decimal, *, limit: bool = False) -> Decimal:
        index = bisect_right(self.starts, t) - 1
        if index < 0:
            return ZERO
        piece = self.pieces[index]
        if limit:
            return self.limit_before[index] + piece.limit_hourly * (t - piece.start)
        return self.before[index] + piece.hourly * (t - piece.start)

    def spend(self, start: float, end: float) -> Spend:
        """What was spent in ``[start, end)`` (``end`` no later than now)."""
        a, b = _d(start), _d(end)
        if b <= a:
            return Spend()
        amount = (self._cumulative(b) - self._cumulative(a)) / SECONDS_PER_HOUR
        limit = None
        if self.limits_differ:
            limit = (
                self._cumulative(b, limit=True) - self._cumulative(a, limit=True)
            ) / SECONDS_PER_HOUR
        unknown: set[str] = set()
        first = max(bisect_right(self.starts, a) - 1, 0)
        for index in range(first, len(self.pieces)):
            piece = self.pieces[index]
            if piece.start >= b:
                break
            piece_end = self.starts[index + 1] if index + 1 < len(self.pieces) else None
            if piece.unknown and (piece_end is None or piece_end > a):
                unknown.update(piece.unknown)
        return Spend(amount, unknown, limit)


def _cut(
    start: Decimal,
    end: Decimal | None,
    timeline: Sequence[tuple[Decimal, StateRates]],
    ats: list[Decimal],
    current: StateRates | None,
) -> list[tuple[Decimal, StateRates | None]]:
    """``[start, end)`` cut where the recorded rates change: each piece's start and rates."""
    if not timeline:
        return [(start, current)]
    index = max(bisect_right(ats, start) - 1, 0)
    pieces: list[tuple[Decimal, StateRates | None]] = [(start, timeline[index][1])]
    for at, rates in timeline[index + 1 :]:
        if end is not None and at >= end:
            break
        if at > start:
            pieces.append((at, rates))
    return pieces


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
    ledger = Ledger(history, timeline, current)
    return {name: ledger.spend(a, min(b, now)) for name, (a, b) in windows.items()}


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
