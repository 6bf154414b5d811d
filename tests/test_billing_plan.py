"""``plan()``: what is due, as a pure function of servers, spend, history and the clock; and
the configuration of costs."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets import TraitError

from jupyter_compute_servers.billing.metering import Spend
from jupyter_compute_servers.billing.prices import PriceBook, parse_table
from jupyter_compute_servers.billing.service import ComputeServerCosts
from jupyter_compute_servers.models import ServerConfig, SpendLimit, State
from jupyter_compute_servers.store import HistoryEntry, ServerRecord

NOW = 1_900_000_000.0


def card(cloud: str, running: float) -> Any:
    return parse_table(
        {
            "cloud": cloud,
            "kind": "rate_card",
            "currency": "USD",
            "sources": {"t": {"url": "test", "as_of": "2030-01-01"}},
            "rates": {"running_hour": {"price": running, "source": "t"}},
        },
        cloud,
    )


@pytest.fixture
def costs() -> ComputeServerCosts:
    manager = SimpleNamespace(clouds={}, store=SimpleNamespace(clock=lambda: NOW))
    costs = ComputeServerCosts(manager, monthly_budget=100, timezone="UTC")  # type: ignore[arg-type]
    costs.book = PriceBook({}, {"paid": card("paid", 1.0), "free": card("free", 0.0)})
    costs.activity.started = NOW - 86400  # watching for a day
    return costs


def server(server_id: int, cloud: str = "paid", **fields: Any) -> ServerRecord:
    values: dict[str, Any] = {
        "id": server_id,
        "name": f"s{server_id}",
        "color": "#1f77b4",
        "notes": "",
        "cloud": cloud,
        "state": State.RUNNING,
        "state_reason": "",
        "config": ServerConfig(),
        "idle_timeout_minutes": None,
        "spend_limit": None,
        "created": NOW - 86400,
        "updated": NOW - 86400,
    }
    values.update(fields)
    return ServerRecord(**values)


def spent(amount: str, limit: str | None = None) -> dict[str, Spend]:
    spend = {name: Spend(Decimal(amount)) for name in ("today", "month", "total")}
    if limit is not None:
        spend["limit"] = Spend(Decimal(limit))
    return spend


def started(server_id: int, at: float) -> list[HistoryEntry]:
    return [
        HistoryEntry(server_id, at, State.STARTING, "", "start"),
        HistoryEntry(server_id, at, State.RUNNING, "", None),
    ]


def test_the_budget_stops_only_servers_that_cost_money(costs):
    servers = [server(1), server(2, "free"), server(3, state=State.OFF)]
    spends = {1: spent("60"), 2: spent("0"), 3: spent("40"), 9: spent("5")}  # 9: deleted
    plan = costs.plan(NOW, servers, spends, {}, set())
    assert [(s.server_id, s.trigger) for s in plan.stops] == [(1, "budget")]
    assert [(a.key, a.silent) for a in plan.alerts] == [
        ("budget:2030-03:100.0:warning", True),
        ("budget:2030-03:100.0:reached", False),
    ]


def test_one_stop_per_server_the_most_pressing_reason_first(costs):
    costs.monthly_budget = 0
    limited = server(
        1, spend_limit=SpendLimit(10, 7), idle_timeout_minutes=1, state=State.SUSPENDED
    )
    idle = server(2, idle_timeout_minutes=1)
    plan = costs.plan(
        NOW,
        [limited, idle],
        {1: spent("10", limit="10"), 2: spent("1")},
        {1: started(1, NOW - 3600), 2: started(2, NOW - 3600)},
        set(),
    )
    # A suspended server is stopped for its limit (its memory costs), never for idleness.
    assert [(s.server_id, s.trigger) for s in plan.stops] == [(1, "spend_limit"), (2, "idle")]


def test_a_server_busy_with_an_action_is_left_until_it_is_done(costs):
    busy = server(1, operation="reboot")
    plan = costs.plan(NOW, [busy], {1: spent("200")}, {}, set())
    assert plan.stops == []


def test_alerts_re_arm_when_spend_falls_below_them(costs):
    costs.monthly_budget = 0
    limited = server(1, spend_limit=SpendLimit(10, 7), state=State.OFF)
    given = {"spend_limit:1:10:7:warning", "spend_limit:1:10:7:reached"}
    plan = costs.plan(NOW, [limited], {1: spent("9", limit="9")}, {}, given)
    assert plan.rearm == ["spend_limit:1:10:7:reached"] and not plan.alerts
    plan = costs.plan(NOW, [limited], {1: spent("2", limit="2")}, {}, given)
    assert sorted(plan.rearm) == sorted(given)
    # Reached while off: said at once (there is no stop to say it).
    plan = costs.plan(NOW, [limited], {1: spent("11", limit="11")}, {}, set())
    assert [(a.threshold, a.silent) for a in plan.alerts] == [(0.8, True), (1.0, False)]


def test_the_plan_says_when_to_look_again(costs):
    costs.monthly_budget = 0
    running = server(1, spend_limit=SpendLimit(Decimal("2"), 1), idle_timeout_minutes=30)
    plan = costs.plan(NOW, [running], {1: spent("1", limit="1")}, {1: started(1, NOW - 60)}, set())
    # $1 an hour: 80 % of $2 in 36 minutes; idle at 29 minutes from now (started a minute ago).
    assert plan.next_at == NOW - 60 + 30 * 60


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("monthly_budget", -1),
        ("warning_fraction", 1.5),
        ("warning_fraction", 0),
        ("timezone", "Mars/Olympus"),
        ("check_interval", -5),
        ("idle_gpu_threshold", 101),
    ],
)
def test_the_configuration_is_validated(name, value):
    with pytest.raises(TraitError, match=name):
        ComputeServerCosts(None, **{name: value})  # type: ignore[arg-type]
