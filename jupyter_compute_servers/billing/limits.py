"""Spend limits, the monthly budget and daily stop times: what is due, decided from the meter.

- A server's **spend limit** is ``amount`` dollars in any ``period_days`` days (a rolling
  window, everything the server cost in it: running, off, suspended). Reaching it stops the
  server; it cannot be started again until its spend in the window falls below the limit or
  the limit is raised. A warning is given once when the spend passes the warning fraction
  (80 % by default), and again only after it fell below it.
- The **monthly budget** is dollars per calendar month across all servers (deleted ones
  included). Reaching it stops every server that costs something while running, and such
  servers cannot be started until the next month or a higher budget. Warned once a month.
- A **daily stop time** stops a server that has been running since before that time of day
  (one started after it runs until the next day's).

Everything here is a pure function of the spend, the history and the clock.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from ..models import DailyStop, SpendLimit, State
from ..store import HistoryEntry


def fmt(amount: Decimal | float) -> str:
    """Dollars as people read them: $25.00, $0.0042."""
    value = Decimal(str(amount))
    if value != 0 and abs(value) < Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:,.2f}"


@dataclass(frozen=True)
class LimitStatus:
    """Where spend stands against a limit."""

    spent: Decimal
    limit: Decimal
    warning_fraction: float

    @property
    def fraction(self) -> float:
        return float(self.spent / self.limit) if self.limit else 0.0

    @property
    def reached(self) -> bool:
        return self.spent >= self.limit

    @property
    def warned(self) -> bool:
        return self.spent >= self.limit * Decimal(str(self.warning_fraction))

    @property
    def status(self) -> str:
        return "reached" if self.reached else "warning" if self.warned else "ok"

    def seconds_until(self, fraction: float, hourly: Decimal) -> float | None:
        """At the current rate, how long until spend reaches ``fraction`` of the limit (a
        lower bound for a rolling window, whose old spend drops out); None if never."""
        target = self.limit * Decimal(str(fraction))
        if self.spent >= target:
            return 0.0
        if hourly <= 0:
            return None
        return float((target - self.spent) / hourly * 3600)


def spend_limit_window(limit: SpendLimit, now: float) -> tuple[float, float]:
    return now - limit.period_days * 86400, now


def describe_limit(limit: SpendLimit) -> str:
    days = "day" if limit.period_days == 1 else f"{limit.period_days} days"
    return f"{fmt(limit.amount)} per {days}"


# --- daily stop ----------------------------------------------------------------------------


def _zone(daily_stop: DailyStop, default: dt.tzinfo) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(daily_stop.timezone) if daily_stop.timezone else default


def _stop_on(day: dt.date, daily_stop: DailyStop, tz: dt.tzinfo) -> float:
    hour, minute = (int(x) for x in daily_stop.time.split(":"))
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp()


def last_daily_stop(daily_stop: DailyStop, now: float, default: dt.tzinfo) -> float:
    """The latest stop time at or before ``now``."""
    tz = _zone(daily_stop, default)
    today = dt.datetime.fromtimestamp(now, tz).date()
    at = _stop_on(today, daily_stop, tz)
    return at if at <= now else _stop_on(today - dt.timedelta(days=1), daily_stop, tz)


def next_daily_stop(daily_stop: DailyStop, now: float, default: dt.tzinfo) -> float:
    """The first stop time after ``now``."""
    tz = _zone(daily_stop, default)
    today = dt.datetime.fromtimestamp(now, tz).date()
    at = _stop_on(today, daily_stop, tz)
    return at if at > now else _stop_on(today + dt.timedelta(days=1), daily_stop, tz)


def running_since(history: list[HistoryEntry]) -> float | None:
    """When the server last became running (reboots do not count), or None if it is not."""
    since = None
    for entry in history:
        if entry.state is State.RUNNING:
            if since is None:
                since = entry.at
        else:
            since = None
    return since


def daily_stop_due(
    daily_stop: DailyStop, history: list[HistoryEntry], now: float, default: dt.tzinfo
) -> float | None:
    """The stop time that is due now (the server has run since before it), else None."""
    since = running_since(history)
    if since is None:
        return None
    last = last_daily_stop(daily_stop, now, default)
    return last if since < last <= now else None
