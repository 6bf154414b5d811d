"""Spend per Hub user and per Hub group in a calendar month (team mode's admin report, and
the ``monthly_spend`` quota).

Worked out from the state history (each row keeps its server's owner) and the recorded rates,
both kept after a server is deleted, so a deleted server's spend stays its owner's. A group's
spend is the sum of its members' (each user's groups as their last request carried them:
``store.team_members``); a user in two groups counts in both.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from ..errors import ValidationError
from ..models import ServerConfig
from .metering import Spend, meter_all, month_name
from .prices import money

if TYPE_CHECKING:
    from .service import ComputeServerCosts

_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


@dataclass
class OwnerSpend:
    """What one user (or group) spent in a month, and on how many servers."""

    spend: Spend = field(default_factory=Spend)
    servers: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)


def month_window(costs: ComputeServerCosts, month: str | None) -> tuple[str, float, float]:
    """``YYYY-MM`` (None: this month) as its name and its ``[start, end)`` in the costs'
    time zone; a 400 naming ``month`` for anything else."""
    zone = costs.zone
    if month is None:
        month = month_name(costs.now(), zone)
    found = _MONTH.fullmatch(month)
    if found is None:
        raise ValidationError("month must be YYYY-MM, e.g. 2026-12.", field="month")
    year, number = int(found.group(1)), int(found.group(2))
    if not 1970 <= year <= 9998:
        raise ValidationError("month must be between 1970-01 and 9998-12.", field="month")
    start = dt.datetime(year, number, 1, tzinfo=zone)
    after = dt.datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return month, start.timestamp(), after.timestamp()


def spend_by_owner(
    costs: ComputeServerCosts, start: float, end: float, owner: str | None = None
) -> dict[str, OwnerSpend]:
    """Each owner's spend in ``[start, end)`` (up to now), deleted servers included; only
    ``owner``'s when given."""
    store = costs.servers.store
    now = costs.now()
    entries = [(e, o) for e, o in store.owned_history() if owner is None or o == owner]
    owners: dict[int, str] = {}
    for entry, entry_owner in entries:
        owners[entry.server_id] = entry_owner
    live = store.server_ids() & set(owners)
    # Current rates (for a server with none recorded yet) of the servers this login may read
    # whole: in team mode a user's own (an admin's: all). Others' servers are metered at the
    # rates their owners' processes recorded (``rate_history``, at create and each change).
    readable = {s.id: s for s in store.all_servers() if s.id in live}
    current = {}
    for server_id, server in readable.items():
        try:
            current[server_id] = costs.rates_of(server)
        except Exception:  # a server whose cloud is not configured here: its recorded rates
            costs.log.warning("No current rates for server %s", server_id)
    rates = [r for r in costs.records.rates_history() if r.server_id in owners]
    metered = meter_all(
        [e for e, _ in entries], rates, current, {"month": (start, end)}, min(now, end)
    )
    result: dict[str, OwnerSpend] = defaultdict(OwnerSpend)
    for server_id, spends in metered.items():
        spend = spends["month"]
        if spend.amount == 0 and not spend.unknown:
            continue
        mine = result[owners[server_id]]
        mine.spend.add(spend)
        mine.servers.add(server_id)
        if server_id not in live:
            mine.deleted.add(server_id)
    return dict(result)


def month_spend_of(costs: ComputeServerCosts, owner: str) -> float:
    """What ``owner`` has spent this month, in dollars (what limits count: a snapshot's spot
    price at the on-demand price), for the ``monthly_spend`` quota."""
    _, start, end = month_window(costs, None)
    mine = spend_by_owner(costs, start, end, owner).get(owner)
    return float(mine.spend.limit_amount) if mine else 0.0


def group_month_spend(costs: ComputeServerCosts, group: str) -> float:
    """What the members of a Hub group have spent this month, in dollars (what limits count),
    for the group's ``group_monthly_spend`` budget."""
    _, start, end = month_window(costs, None)
    members = costs.servers.store.members()
    spent = spend_by_owner(costs, start, end)
    return float(
        sum(
            (s.spend.limit_amount for o, s in spent.items() if group in members.get(o, ())),
            Decimal(0),
        )
    )


def costs_money(costs: ComputeServerCosts, cloud: str, config_json: str) -> bool:
    """Whether a server of this cloud and configuration costs money while running (an unknown
    price counts as money)."""
    config = ServerConfig.from_json(json.loads(config_json))
    rates = costs.book.rates(cloud, costs.servers.clouds.get(cloud), config)
    return not rates.running.is_known_zero


def by_group(
    by_owner: dict[str, OwnerSpend], members: dict[str, tuple[str, ...]]
) -> dict[str, OwnerSpend]:
    """Each Hub group's spend: the sum of its members'."""
    groups: dict[str, OwnerSpend] = defaultdict(OwnerSpend)
    for owner, spent in by_owner.items():
        for group in members.get(owner, ()):
            total = groups[group]
            total.spend.add(spent.spend)
            total.servers |= spent.servers
            total.deleted |= spent.deleted
    return dict(groups)


def spend_rows(costs: ComputeServerCosts, month: str | None) -> tuple[str, list[dict[str, object]]]:
    """The month's name and one row per user, then per group, for the report."""
    name, start, end = month_window(costs, month)
    owners = spend_by_owner(costs, start, end)
    groups = by_group(owners, costs.servers.store.members())
    rows: list[dict[str, object]] = []
    for kind, table in (("user", owners), ("group", groups)):
        for key in sorted(table):
            spent = table[key]
            rows.append(
                {
                    "month": name,
                    "kind": kind,
                    "name": key,
                    "currency": "USD",
                    "spent": money(spent.spend.amount),
                    "servers": len(spent.servers),
                    "deleted_servers": len(spent.deleted),
                    "unknown": "; ".join(sorted(spent.spend.unknown)),
                }
            )
    return name, rows


__all__ = ["OwnerSpend", "by_group", "month_spend_of", "month_window", "spend_rows"]
