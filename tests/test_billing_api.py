"""Costs in the Jupyter server, on the real local cloud with a controllable clock: estimates,
spend by the second, spend limits, the monthly budget, daily stop times and idle shutdown (with
real remote kernels), their reasons, events and the API's contract."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import pytest

from jupyter_compute_servers.billing.limits import fmt
from jupyter_compute_servers.billing.prices import PriceBook, builtin_tables, parse_table
from jupyter_compute_servers.billing.service import ComputeServerCosts
from jupyter_compute_servers.clouds.base import Cloud
from jupyter_compute_servers.clouds.local import LocalCloud
from jupyter_compute_servers.terminals import TerminalSession

from .kernel_helpers import execute, wait_until

HOUR = 3600.0
#: 09:00 UTC on a Thursday; the clock moves only when a test says so.
START = dt.datetime(2030, 3, 14, 9, 0, tzinfo=dt.timezone.utc).timestamp()
EVENT_SCHEMA = "https://events.jupyter.org/jupyter_compute_servers/server/v1"

#: The local cloud at $0.36 an hour running ($0.0001 a second) and its disk at $0.73 a GB-month
#: (10 GB: $0.01 an hour), so running costs $0.37 an hour and off $0.01.
RATE_CARD = {
    "cloud": "local",
    "kind": "rate_card",
    "currency": "USD",
    "sources": {"test": {"url": "tests/test_billing_api.py", "as_of": "2030-01-01"}},
    "rates": {
        "running_hour": {"price": 0.36, "source": "test"},
        "disk_gb_month": {"price": 0.73, "source": "test"},
    },
}
RUNNING = Decimal("0.37")
OFF = Decimal("0.01")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    card = tmp_path / "local-prices.json"
    card.write_text(json.dumps(RATE_CARD))
    config["ComputeServerCosts"] = {
        # The tests drive evaluate() themselves (one test starts the watcher).
        "check_interval": 0,
        "price_tables": {"local": str(card)},
        "timezone": "UTC",
    }
    config["ComputeServerProvisioner"] = {"poll_timeout": 2.0}
    return config


@pytest.fixture
def manager(jp_serverapp):
    return jp_serverapp.web_app.settings["compute_servers_manager"]


@pytest.fixture
def costs(jp_serverapp) -> ComputeServerCosts:
    return jp_serverapp.web_app.settings["compute_servers_costs"]


@pytest.fixture
def clock(manager) -> Clock:
    clock = Clock(START)
    manager.store.clock = clock  # the costs clock is the store's
    return clock


@pytest.fixture
def events(jp_serverapp) -> list[dict[str, Any]]:
    """Every event of the compute servers schema that the Jupyter server published (each was
    validated against the schema by jupyter_events on the way)."""
    seen: list[dict[str, Any]] = []

    class Listener:
        async def __call__(self, logger: Any, schema_id: str, data: Any) -> None:
            seen.append(dict(data))

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA, listener=Listener())
    return seen


async def settle() -> None:
    """Let the event logger's listeners run."""
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind]


async def create(api, name: str = "box", **fields: Any) -> dict[str, Any]:
    code, server = await api("POST", "servers", {"name": name, **fields})
    assert code == 201, server
    return server


async def start(api, wait_for_state, server_id: int) -> dict[str, Any]:
    code, answer = await api("POST", f"servers/{server_id}/actions/start")
    assert code == 202, answer
    server = await wait_for_state(server_id, "running", "error")
    assert server["state"] == "running", server["state_reason"]
    return server


async def stop(api, wait_for_state, server_id: int) -> None:
    code, answer = await api("POST", f"servers/{server_id}/actions/stop")
    assert code == 202, answer
    await wait_for_state(server_id, "off")


# --- estimates ---------------------------------------------------------------------------


async def test_the_estimate_before_creating(api):
    code, estimate = await api("POST", "estimate", {"cloud": "local", "config": {"cpu": 1}})
    assert code == 200, estimate
    rates = estimate["rates"]
    assert rates["running"]["hourly"] == 0.37 and rates["running"]["unknown"] == []
    assert rates["off"]["hourly"] == 0.01
    assert rates["suspended"] is None  # the local cloud cannot suspend
    assert rates["deprovisioned"] == {"hourly": 0.0, "unknown": [], "parts": []}
    assert [p["name"] for p in rates["running"]["parts"]] == ["machine", "disk"]
    assert rates["running"]["parts"][0]["source"] == "tests/test_billing_api.py"
    assert rates["running"]["parts"][0]["as_of"] == "2030-01-01"
    assert estimate["projection"] == {
        "days": 30,
        "hours_per_day": 24,
        "amount": 266.4,  # 720 h x $0.37
        "unknown": [],
    }
    assert estimate["complete"] is True and estimate["config"]["cpu"] == 1
    code, estimate = await api("POST", "estimate", {"hours_per_day": 8})
    assert code == 200, estimate
    assert estimate["cloud"] == "local"  # the first enabled cloud
    assert estimate["projection"]["amount"] == 93.6  # 30 x (8 h x $0.37 + 16 h x $0.01)


async def test_the_estimate_of_an_edit(api):
    server = await create(api)
    code, estimate = await api(
        "POST", "estimate", {"server_id": server["id"], "config": {"disk_gb": 20}}
    )
    assert code == 200, estimate
    assert estimate["rates"]["off"]["hourly"] == 0.02
    assert (
        estimate["config"]["disk_gb"] == 20 and estimate["config"]["cpu"] == server["config"]["cpu"]
    )


ESTIMATE_ERRORS = [
    (b"[1]", 400, "body"),
    ({"bogus": 1}, 400, "bogus"),
    ({"name": "x"}, 400, "name"),
    ({"cloud": "nowhere"}, 400, "cloud"),
    ({"cloud": 7}, 400, "cloud"),
    ({"config": {"cpu": 0}}, 400, "config.cpu"),
    ({"config": {"machine_type": "n1-standard-4"}}, 400, "config.machine_type"),
    ({"config": {"gpu": {"type": "H100", "count": 1}}}, 400, "config.gpu"),
    ({"hours_per_day": 25}, 400, "hours_per_day"),
    ({"hours_per_day": "8"}, 400, "hours_per_day"),
    ({"server_id": 999}, 404, "server_id"),
    ({"server_id": "1"}, 400, "server_id"),
    ({"server_id": "{id}", "cloud": "gcp"}, 400, "cloud"),
]


@pytest.mark.parametrize(("body", "status", "field"), ESTIMATE_ERRORS)
async def test_estimate_input_is_validated(api, body, status, field):
    server = await create(api)
    if isinstance(body, dict) and body.get("server_id") == "{id}":
        body = {**body, "server_id": server["id"]}
    raw = body if isinstance(body, bytes) else None
    code, answer = await api("POST", "estimate", None if raw else body, raw=raw)
    assert (code, answer.get("field")) == (status, field), answer
    assert answer["message"]


class StandInGcp(Cloud):
    """Only what an estimate needs of a GCP cloud: its configuration fields and defaults."""

    name: ClassVar[str] = "gcp"
    label: ClassVar[str] = "Google Cloud (stand-in)"
    supports_suspend: ClassVar[bool] = True
    config_fields: ClassVar[frozenset[str]] = frozenset(
        {"machine_type", "gpu", "disk_gb", "disk_type", "spot", "region", "zone"}
    )

    def defaults(self) -> dict[str, Any]:
        return {"machine_type": "n1-standard-4", "disk_gb": 100, "region": "us-central1"}


async def test_the_estimate_of_a_gcp_configuration_names_unknown_prices(api, manager):
    manager.clouds["gcp"] = StandInGcp()
    body = {"cloud": "gcp", "config": {"gpu": {"type": "nvidia-tesla-t4", "count": 2}}}
    code, estimate = await api("POST", "estimate", body)
    assert code == 200, estimate
    disk = 100 * 0.10 / 730  # pd-balanced by default
    running = 4 * 0.031611 + 15 * 0.004237 + 2 * 0.35 + 0.005 + disk
    assert estimate["rates"]["running"]["hourly"] == pytest.approx(running, abs=1e-6)
    assert estimate["rates"]["off"]["hourly"] == pytest.approx(disk, abs=1e-6)
    # Suspended: the disk, and memory at a price nobody knows with confidence.
    assert estimate["rates"]["suspended"]["unknown"] == ["suspended memory (15 GB)"]
    assert estimate["complete"] is False
    assert estimate["projection"]["unknown"] == []  # running and off are all known
    # Spot: the machine and the T4 at the spot prices shipped with their dates.
    body = {
        "cloud": "gcp",
        "config": {"spot": True, "gpu": {"type": "nvidia-tesla-t4", "count": 1}},
    }
    code, spot = await api("POST", "estimate", body)
    assert code == 200, spot
    assert spot["projection"]["unknown"] == []
    vcpu = spot["rates"]["running"]["parts"][0]
    assert vcpu["name"] == "vCPU" and vcpu["hourly"] > 0
    assert vcpu["note"] == f"spot price of {vcpu['as_of']}; may have changed"
    gpu = spot["rates"]["running"]["parts"][2]
    assert gpu["name"] == "GPU" and gpu["hourly"] == pytest.approx(0.14)
    assert gpu["note"].endswith("; may have changed") and gpu["as_of"] in gpu["note"]
    assert "skypilot-catalog" in gpu["source"]


# --- metering ----------------------------------------------------------------------------


async def test_a_server_running_3_hours_then_off_21_is_priced_exactly(
    api, wait_for_state, costs, clock
):
    server = await create(api)
    assert server["cost"]["rates"]["running"] == {"hourly": 0.37, "unknown": []}
    assert server["cost"]["rates"]["off"] == {"hourly": 0.01, "unknown": []}
    assert server["cost"]["hourly"] == {"hourly": 0.0, "unknown": []}  # deprovisioned
    await start(api, wait_for_state, server["id"])
    clock.advance(3 * HOUR)
    _, running = await api("GET", f"servers/{server['id']}")
    assert running["cost"]["hourly"]["hourly"] == 0.37
    assert running["cost"]["spent"]["total"] == 1.11
    await stop(api, wait_for_state, server["id"])
    clock.advance(21 * HOUR)
    record = costs.servers.get_server(server["id"])
    exact = costs.spend_of(record)["total"].amount
    assert exact == RUNNING * 3 + OFF * 21 == Decimal("1.32")
    _, got = await api("GET", f"servers/{server['id']}")
    # 09:00 + 24 h: 09:00 the next day (UTC); today began at midnight, 9 h ago, all off.
    assert got["cost"]["spent"] == {
        "today": 0.09,
        "month": 1.32,
        "total": 1.32,
        "unknown": [],
    }
    code, total = await api("GET", "costs")
    assert code == 200, total
    assert total["spent"]["total"] == 1.32 and total["hourly"]["hourly"] == 0.01
    assert total["month"] == "2030-03" and total["timezone"] == "UTC"
    assert [s["cost"]["spent"]["total"] for s in total["servers"]] == [1.32]
    assert total["budget"] is None


# --- spend limits ------------------------------------------------------------------------


async def test_a_spend_limit_stops_the_server_at_its_second_after_one_warning(
    api, wait_for_state, costs, clock, events
):
    # $0.37 at $0.37 an hour: reached exactly one hour after it started.
    server = await create(api, spend_limit={"amount": 0.37, "period_days": 7})
    server_id = server["id"]
    await start(api, wait_for_state, server_id)
    clock.advance(0.8 * HOUR - 1)
    assert not (await costs.evaluate()).alerted
    clock.advance(1)  # 80 %
    result = await costs.evaluate()
    assert [(a.scope, a.threshold) for a in result.alerted] == [("spend_limit", 0.8)]
    _, got = await api("GET", f"servers/{server_id}")
    assert got["cost"]["spend_limit"]["status"] == "warning"
    assert got["cost"]["spend_limit"]["reached_at"] == START + HOUR
    clock.advance(60)
    assert not (await costs.evaluate()).alerted  # once
    clock.now = START + HOUR - 1  # a second before: still running
    result = await costs.evaluate()
    assert not result.stopped and result.plan.next_at == START + HOUR
    clock.now = START + HOUR
    result = await costs.evaluate()
    assert [s.trigger for s in result.stopped] == ["spend_limit"]
    off = await wait_for_state(server_id, "off")
    reason = "Stopped automatically: its spend limit of $0.37 per 7 days was reached ($0.37 spent)."
    assert off["state_reason"] == reason
    _, history = await api("GET", f"servers/{server_id}/history")
    assert [(h["state"], h["reason"]) for h in history["history"][-2:]] == [
        ("stopping", reason),
        ("off", reason),
    ]
    await settle()
    warnings = of_kind(events, "cost_warning")
    assert len(warnings) == 1 and warnings[0]["server_id"] == server_id
    assert warnings[0]["scope"] == "spend_limit" and warnings[0]["threshold"] == 0.8
    assert warnings[0]["spent"] == pytest.approx(0.296) and warnings[0]["limit"] == 0.37
    assert warnings[0]["period_days"] == 7 and "80%" in warnings[0]["message"]
    stopped = of_kind(events, "auto_stopped")
    assert [(e["server_id"], e["trigger"], e["message"]) for e in stopped] == [
        (server_id, "spend_limit", reason)
    ]
    # It cannot start again while the limit is spent...
    code, refused = await api("POST", f"servers/{server_id}/actions/start")
    assert code == 409 and refused["field"] == "spend_limit", refused
    assert "spend limit" in refused["message"]
    # ...and nothing is said twice.
    clock.advance(60)
    result = await costs.evaluate()
    assert not result.stopped and not result.alerted
    # Raising the limit lets it start.
    code, _ = await api(
        "PATCH", f"servers/{server_id}", {"spend_limit": {"amount": 5, "period_days": 7}}
    )
    assert code == 200
    await start(api, wait_for_state, server_id)
    await stop(api, wait_for_state, server_id)


async def test_limits_are_evaluated_again_after_a_restart(
    api, wait_for_state, manager, costs, clock, events
):
    server = await create(api, spend_limit={"amount": 0.37, "period_days": 1})
    await start(api, wait_for_state, server["id"])
    clock.advance(0.9 * HOUR)
    assert len((await costs.evaluate()).alerted) == 1
    # Jupyter restarts (nothing of the old watcher is left) while the limit is passed.
    clock.advance(HOUR)
    fresh = ComputeServerCosts(manager, parent=costs.parent)
    result = await fresh.evaluate()
    assert [s.trigger for s in result.stopped] == ["spend_limit"]
    assert not result.alerted  # the 80 % warning was given before the restart
    await wait_for_state(server["id"], "off")
    # A rolling window: a day later the spend has dropped out, and the alerts re-arm.
    clock.advance(24 * HOUR)
    result = await fresh.evaluate()
    assert result.plan.rearm == [
        f"spend_limit:{server['id']}:0.37:1:warning",
        f"spend_limit:{server['id']}:0.37:1:reached",
    ]
    await start(api, wait_for_state, server["id"])
    await stop(api, wait_for_state, server["id"])


class SpotSandbox(LocalCloud):
    """Real local sandboxes (they start, run and stop) under the name gcp, configured as a
    spot n1-standard-4 in us-central1 and priced by the gcp table (shipped or refreshed), as
    a spot GCE VM would be: the pricing is what is under test, not Compute Engine."""

    name: ClassVar[str] = "gcp"
    config_fields: ClassVar[frozenset[str]] = LocalCloud.config_fields | {
        "machine_type",
        "spot",
        "region",
    }

    def defaults(self) -> dict[str, Any]:
        return {
            **super().defaults(),
            "machine_type": "n1-standard-4",
            "region": "us-central1",
            "spot": True,
        }

    def price(self, config: Any) -> None:
        return None  # the gcp table prices it


def _n1_us_central1(table: Any, tier: str) -> Decimal:
    """An n1-standard-4 with 10 GB of the default disk, running, per hour in us-central1."""
    region = table.data["regions"]["us-central1"]
    machines = region["machines"]["n1"][tier]
    disk = Decimal(str(region["disks"][table.default_disk_type]["gb_month"]["price"]))
    return (
        4 * Decimal(str(machines["vcpu_hour"]["price"]))
        + 15 * Decimal(str(machines["memory_gb_hour"]["price"]))
        + Decimal(str(region["external_ip"][tier]["price"]))
        + 10 * disk / 730
    )


@pytest.fixture
def spot_gcp(manager, tmp_path) -> SpotSandbox:
    local = manager.clouds["local"]
    cloud = SpotSandbox(parent=local.parent, data_dir=str(tmp_path / "gcp"))
    cloud.catalog = local.catalog  # (what bind() gives a local cloud)
    manager.clouds["gcp"] = cloud
    return cloud


async def test_a_shipped_spot_price_counts_at_on_demand_for_the_spend_limit(
    api, wait_for_state, costs, clock, spot_gcp
):
    table = builtin_tables()["gcp"]
    spot = _n1_us_central1(table, "spot")
    demand = _n1_us_central1(table, "on_demand")
    assert spot < demand  # what the test is about
    limit = float(demand)  # one hour at the on-demand price
    server = await create(api, cloud="gcp", spend_limit={"amount": limit, "period_days": 1})
    running = server["cost"]["rates"]["running"]
    assert running["hourly"] == pytest.approx(float(spot), abs=1e-6)
    assert running["limit_hourly"] == pytest.approx(float(demand), abs=1e-6)
    assert "on-demand price, while the spot price is not refreshed" in running["limit_note"]
    await start(api, wait_for_state, server["id"])
    clock.advance(HOUR - 1)
    result = await costs.evaluate()
    assert not result.stopped and result.plan.next_at == pytest.approx(START + HOUR, abs=1e-3)
    clock.advance(1)
    result = await costs.evaluate()
    assert [(s.server_id, s.trigger) for s in result.stopped] == [(server["id"], "spend_limit")]
    off = await wait_for_state(server["id"], "off")
    assert off["state_reason"] == (
        f"Stopped automatically: its spend limit of {fmt(limit)} per day was reached "
        f"({fmt(limit)} spent; dated spot prices counted at the on-demand price, "
        f"{fmt(spot)} at the prices shown)."
    )
    # Shown: an hour at the spot price. Counted by the limit: an hour at the on-demand one.
    assert off["cost"]["spent"]["total"] == pytest.approx(float(spot), abs=1e-6)
    assert off["cost"]["spend_limit"]["spent"] == pytest.approx(limit, abs=1e-6)
    assert off["cost"]["spend_limit"]["status"] == "reached"
    # The budget counts the same way.
    costs.monthly_budget = limit
    code, total = await api("GET", "costs")
    assert code == 200, total
    assert total["spent"]["month"] == pytest.approx(float(spot), abs=1e-6)
    assert total["budget"]["spent"] == pytest.approx(limit, abs=1e-6)
    assert total["budget"]["status"] == "reached"


async def test_a_live_spot_price_counts_as_it_is_for_the_spend_limit(
    api, wait_for_state, costs, clock, spot_gcp
):
    # The Billing Catalog refresh gave a current spot price: limits count it, not on-demand.
    from jupyter_compute_servers.billing.catalog import CATALOG_SOURCE

    data = copy.deepcopy(builtin_tables()["gcp"].data)
    data["sources"][CATALOG_SOURCE] = {"url": "Cloud Billing Catalog API", "as_of": "2030-03-14"}
    region = data["regions"]["us-central1"]
    for unit in ("vcpu_hour", "memory_gb_hour"):
        region["machines"]["n1"]["spot"][unit]["source"] = CATALOG_SOURCE
    region["external_ip"]["spot"]["source"] = CATALOG_SOURCE
    costs.book.builtin["gcp"] = parse_table(data, "refreshed gcp table")
    table = costs.book.builtin["gcp"]
    spot = _n1_us_central1(table, "spot")
    server = await create(api, cloud="gcp", spend_limit={"amount": float(spot), "period_days": 1})
    running = server["cost"]["rates"]["running"]
    assert running["hourly"] == pytest.approx(float(spot), abs=1e-6)
    assert "limit_hourly" not in running and "limit_note" not in running
    await start(api, wait_for_state, server["id"])
    clock.advance(HOUR - 1)
    assert not (await costs.evaluate()).stopped  # an on-demand count would have stopped it
    clock.advance(1)
    result = await costs.evaluate()
    assert [(s.server_id, s.trigger) for s in result.stopped] == [(server["id"], "spend_limit")]
    off = await wait_for_state(server["id"], "off")
    assert off["cost"]["spend_limit"]["spent"] == pytest.approx(float(spot), abs=1e-6)
    assert off["cost"]["spent"]["total"] == pytest.approx(float(spot), abs=1e-6)


# --- the monthly budget ------------------------------------------------------------------


async def test_the_monthly_budget_stops_every_server_that_costs_money(
    api, wait_for_state, costs, clock, events
):
    costs.monthly_budget = 0.74  # two servers at $0.37 an hour: one hour
    first = await create(api, "first")
    second = await create(api, "second")
    await start(api, wait_for_state, first["id"])
    await start(api, wait_for_state, second["id"])
    clock.advance(0.8 * HOUR)
    result = await costs.evaluate()
    assert [(a.scope, a.server_id, a.threshold) for a in result.alerted] == [("budget", None, 0.8)]
    _, total = await api("GET", "costs")
    assert total["budget"] == {
        "monthly": 0.74,
        "spent": 0.592,
        "fraction": 0.8,
        "status": "warning",
        "warning_fraction": 0.8,
    }
    clock.advance(0.2 * HOUR - 1)
    assert not (await costs.evaluate()).stopped
    clock.advance(1)
    result = await costs.evaluate()
    assert sorted((s.server_id, s.trigger) for s in result.stopped) == [
        (first["id"], "budget"),
        (second["id"], "budget"),
    ]
    assert [(a.scope, a.threshold) for a in result.alerted] == [("budget", 1.0)]
    for server in (first, second):
        off = await wait_for_state(server["id"], "off")
        assert off["state_reason"].startswith(
            "Stopped automatically: the monthly budget of $0.74 was reached"
        )
    code, refused = await api("POST", f"servers/{first['id']}/actions/start")
    assert code == 409 and "monthly budget" in refused["message"], refused
    await settle()
    budget_events = [e for e in of_kind(events, "cost_warning") if e["scope"] == "budget"]
    assert [(e["server_id"], e["threshold"], e["month"]) for e in budget_events] == [
        (None, 0.8, "2030-03"),
        (None, 1.0, "2030-03"),
    ]
    assert len(of_kind(events, "auto_stopped")) == 2
    # Next month the budget is fresh.
    clock.now = dt.datetime(2030, 4, 1, tzinfo=dt.timezone.utc).timestamp()
    await start(api, wait_for_state, first["id"])
    await stop(api, wait_for_state, first["id"])


# --- daily stop time ---------------------------------------------------------------------


async def test_a_daily_stop_time_stops_a_server_running_since_before_it(
    api, wait_for_state, costs, clock
):
    server = await create(api, daily_stop={"time": "19:00", "timezone": "UTC"})
    assert server["daily_stop"] == {"time": "19:00", "timezone": "UTC"}
    clock.now = START + 9 * HOUR  # 18:00 UTC
    await start(api, wait_for_state, server["id"])
    _, running = await api("GET", f"servers/{server['id']}")
    assert running["auto_stop"]["daily_stop_at"] == START + 10 * HOUR
    clock.advance(HOUR - 1)
    result = await costs.evaluate()
    assert not result.stopped and result.plan.next_at == START + 10 * HOUR
    clock.advance(1)
    result = await costs.evaluate()
    assert [s.trigger for s in result.stopped] == ["daily_stop"]
    off = await wait_for_state(server["id"], "off")
    assert off["state_reason"] == "Stopped automatically at its daily stop time, 19:00 (UTC)."
    # Started again after the stop time, it runs until the next day's.
    clock.advance(HOUR / 2)
    await start(api, wait_for_state, server["id"])
    clock.advance(12 * HOUR)
    assert not (await costs.evaluate()).stopped
    clock.now = START + 34 * HOUR  # 19:00 the next day
    assert [s.trigger for s in (await costs.evaluate()).stopped] == ["daily_stop"]
    await wait_for_state(server["id"], "off")


@pytest.mark.parametrize(
    ("daily_stop", "field"),
    [
        ({"time": "25:00"}, "daily_stop.time"),
        ({"time": "7pm"}, "daily_stop.time"),
        ({}, "daily_stop.time"),
        ({"time": "19:00", "timezone": "Mars/Olympus"}, "daily_stop.timezone"),
        ({"time": "19:00", "timezone": "../../etc/passwd"}, "daily_stop.timezone"),
        ({"time": "19:00", "tz": "UTC"}, "daily_stop.tz"),
        ("19:00", "daily_stop"),
    ],
)
async def test_daily_stop_is_validated(api, daily_stop, field):
    server = await create(api)
    code, answer = await api("PATCH", f"servers/{server['id']}", {"daily_stop": daily_stop})
    assert code == 400 and answer["field"] == field, answer
    code, answer = await api("POST", "servers", {"name": "other", "daily_stop": daily_stop})
    assert code == 400 and answer["field"] == field, answer


# --- idle shutdown -----------------------------------------------------------------------


async def kernel_on(jp_fetch, jp_serverapp, server_id: int) -> tuple[str, Any, Any]:
    name = f"compute-{server_id}-python3"

    async def has_spec() -> bool:
        response = await jp_fetch("api", "kernelspecs")
        return name in json.loads(response.body)["kernelspecs"]

    await wait_until(has_spec)
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
    kernel_id = json.loads(response.body)["id"]
    kernel = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    kernel_client = kernel.client()
    kernel_client.start_channels()
    await kernel_client.wait_for_ready(timeout=60)
    return kernel_id, kernel, kernel_client


async def test_a_busy_kernel_is_never_idle_and_an_idle_one_is(
    api, wait_for_state, jp_fetch, jp_serverapp, costs, clock, events
):
    server = await create(api, idle_timeout_minutes=1)
    server_id = server["id"]
    await start(api, wait_for_state, server_id)
    kernel_id, kernel, kernel_client = await kernel_on(jp_fetch, jp_serverapp, server_id)
    try:
        # A long training loop: the kernel is busy while the clock runs on for hours.
        training = asyncio.ensure_future(
            execute(kernel_client, "import time\nfor _ in range(600): time.sleep(0.1)", 120)
        )
        await wait_until(lambda: kernel.execution_state == "busy")
        for _ in range(4):
            clock.advance(HOUR)
            result = await costs.evaluate()
            assert not result.stopped and not result.deferred
        _, got = await api("GET", f"servers/{server_id}")
        assert got["state"] == "running"
        # It finishes (interrupted here, to be quick): from its last output on, it is idle.
        await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body="")
        reply, _ = await asyncio.wait_for(training, 30)
        assert reply["content"]["status"] == "error"
        await wait_until(lambda: kernel.execution_state == "idle")
        await costs.evaluate()  # sees the kernel's last activity now
        idle_since = clock.now
        clock.advance(59)
        assert not (await costs.evaluate()).stopped
        _, got = await api("GET", f"servers/{server_id}")
        assert got["auto_stop"]["idle"]["idle_since"] == idle_since
        assert got["auto_stop"]["idle"]["stops_at"] == idle_since + 60
        clock.advance(1)
        result = await costs.evaluate()
        assert [s.trigger for s in result.stopped] == ["idle"]
        off = await wait_for_state(server_id, "off")
        assert off["state_reason"] == (
            "Stopped automatically after 1 minute idle (no kernel activity, terminal input "
            "or GPU use)."
        )
        await settle()
        assert [e["trigger"] for e in of_kind(events, "auto_stopped")] == ["idle"]
    finally:
        kernel_client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_terminal_input_counts_as_activity(api, wait_for_state, jp_serverapp, costs, clock):
    server = await create(api, idle_timeout_minutes=1)
    await start(api, wait_for_state, server["id"])
    terminals = jp_serverapp.web_app.settings["compute_servers_terminals"]
    session = TerminalSession(terminals, server["id"], "1", lambda message: None)
    clock.advance(50)
    session.receive(["set_size", 24, 80])  # not input
    session.receive(["stdin", "python train.py\r"])
    clock.advance(50)
    assert not (await costs.evaluate()).stopped
    assert costs.activity.last(server["id"]).what == "terminal input"
    clock.advance(10)
    assert [s.trigger for s in (await costs.evaluate()).stopped] == ["idle"]
    await wait_for_state(server["id"], "off")


# --- the watcher in the Jupyter server ---------------------------------------------------


async def test_the_watcher_stops_a_server_when_its_limit_is_due(api, wait_for_state, costs):
    """With the real clock: at $3,600 an hour a $2 limit is reached two seconds after the
    start, long before the next regular check (10 minutes away)."""
    card = copy.deepcopy(RATE_CARD)
    card["rates"] = {"running_hour": {"price": 3600, "source": "test"}}
    costs.book = PriceBook(builtin_tables(), {"local": parse_table(card, "test card")})
    server = await create(api, spend_limit={"amount": 2, "period_days": 1})
    await start(api, wait_for_state, server["id"])
    costs.check_interval = 600
    costs.start()
    try:
        off = await wait_for_state(server["id"], "off", timeout=60)
        assert off["state_reason"].startswith("Stopped automatically: its spend limit of $2.00")
    finally:
        await costs.close()


# --- the API contract --------------------------------------------------------------------


def openapi_schema(name: str) -> dict[str, Any]:
    document = json.loads(files("jupyter_compute_servers").joinpath("openapi.json").read_text())
    return dict(document["components"]["schemas"][name])


async def test_answers_carry_what_the_openapi_document_says(api, wait_for_state, clock):
    server = await create(api, idle_timeout_minutes=30, spend_limit={"amount": 9, "period_days": 2})
    await start(api, wait_for_state, server["id"])
    _, got = await api("GET", f"servers/{server['id']}")
    assert set(openapi_schema("Server")["required"]) <= set(got)
    assert set(openapi_schema("ServerCost")["required"]) == set(got["cost"])
    assert set(openapi_schema("AutoStop")["required"]) == set(got["auto_stop"])
    assert got["auto_stop"]["watching"] is False  # check_interval 0 in these tests
    limit = got["cost"]["spend_limit"]
    assert set(openapi_schema("ServerCost")["properties"]["spend_limit"]["required"]) == set(limit)
    _, estimate = await api("POST", "estimate", {})
    assert set(openapi_schema("Estimate")["required"]) == set(estimate)
    assert set(openapi_schema("CostPart")["required"]) == set(
        estimate["rates"]["running"]["parts"][0]
    )
    _, total = await api("GET", "costs")
    assert set(openapi_schema("Costs")["required"]) == set(total)
    await stop(api, wait_for_state, server["id"])


async def test_the_servers_list_shows_each_servers_own_costs(api, wait_for_state, costs, clock):
    # GET servers works out what servers share once for all (the calendar, the JSON of
    # alike rates): each server must still read exactly as it does on its own.
    alike = await create(api, "alike", config={"disk_gb": 10})
    limited = await create(
        api, "limited", config={"disk_gb": 10}, spend_limit={"amount": 1, "period_days": 1}
    )
    bigger = await create(api, "bigger", config={"disk_gb": 20})
    await start(api, wait_for_state, limited["id"])
    clock.advance(2 * HOUR)
    _, listed = await api("GET", "servers")
    by_name = {s["name"]: s for s in listed["servers"]}
    for server in (alike, limited, bigger):
        _, alone = await api("GET", f"servers/{server['id']}")
        assert by_name[server["name"]]["cost"] == alone["cost"], server["name"]
        assert by_name[server["name"]]["config"] == alone["config"], server["name"]
    assert by_name["alike"]["cost"]["rates"]["running"]["hourly"] == 0.37
    assert by_name["bigger"]["cost"]["rates"]["running"]["hourly"] == 0.38
    assert by_name["limited"]["cost"]["hourly"]["hourly"] == 0.37
    assert by_name["alike"]["cost"]["hourly"]["hourly"] == 0.0
    assert by_name["limited"]["cost"]["spent"]["total"] == 0.74
    assert by_name["limited"]["cost"]["spend_limit"]["spent"] == 0.74
    assert by_name["alike"]["cost"]["spend_limit"] is None
    # As a Jupyter that just started lists them: every ledger built from the histories read
    # for all servers together, not server by server.
    costs._ledgers.clear()
    _, fresh = await api("GET", "servers")
    assert [s["cost"] for s in fresh["servers"]] == [s["cost"] for s in listed["servers"]]
    await stop(api, wait_for_state, limited["id"])
