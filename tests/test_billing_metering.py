"""Metering by the second from the durable state history, on a real store (SQLite and
PostgreSQL) driven by a controllable clock."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal

import pytest

from jupyter_compute_servers.billing.metering import (
    day_start,
    meter,
    meter_all,
    month_start,
    rate_timeline,
)
from jupyter_compute_servers.billing.prices import StateRates
from jupyter_compute_servers.billing.records import CostRecords
from jupyter_compute_servers.models import ServerConfig, State
from jupyter_compute_servers.store import ServerStore

HOUR = 3600.0
START = dt.datetime(2030, 3, 14, 9, 0, tzinfo=dt.timezone.utc).timestamp()


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def store(db_url: str, clock: Clock):
    store = ServerStore(db_url, clock=clock)
    yield store
    store.close()


@pytest.fixture
def records(store: ServerStore, clock: Clock) -> CostRecords:
    return CostRecords(store.database, clock=clock)


def new_server(
    store: ServerStore,
    records: CostRecords,
    name: str = "box",
    running: str = "0.38",
    off: str = "0.012",
):
    server = store.create(
        name=name,
        color="#1f77b4",
        notes="",
        cloud="stand-in",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    rates = StateRates.flat(Decimal(running), Decimal(off), source="test")
    records.record_rates(server.id, rates.snapshot())
    return server, rates


def go(store: ServerStore, server_id: int, *states: State) -> None:
    for state in states:
        store.transition(server_id, to=state)


def spend(
    store: ServerStore,
    records: CostRecords,
    server_id: int,
    now: float,
    **windows: tuple[float, float],
):
    windows = windows or {"total": (0.0, now)}
    return meter(
        store.history(server_id),
        rate_timeline(records.rates_history(server_id)),
        None,
        windows,
        now,
    )


def test_three_hours_running_then_twenty_one_off_is_priced_exactly(store, records, clock):
    server, _ = new_server(store, records)
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(3 * HOUR)
    go(store, server.id, State.STOPPING, State.OFF)
    clock.advance(21 * HOUR)
    total = spend(store, records, server.id, clock.now)["total"]
    assert total.amount == Decimal("0.38") * 3 + Decimal("0.012") * 21 == Decimal("1.392")
    assert total.unknown == set()


def test_transitional_states_are_charged_at_their_targets_rate(store, records, clock):
    server, _ = new_server(store, records, running="3.6", off="0.36")  # $0.001 and $0.0001 a second
    go(store, server.id, State.STARTING)
    clock.advance(100)  # starting: at the running rate
    go(store, server.id, State.RUNNING)
    clock.advance(1000)
    go(store, server.id, State.STOPPING)
    clock.advance(50)  # stopping: at the off rate
    go(store, server.id, State.OFF)
    clock.advance(850)
    go(store, server.id, State.DEPROVISIONING)
    clock.advance(30)  # deprovisioning: nothing
    go(store, server.id, State.DEPROVISIONED)
    clock.advance(5000)
    total = spend(store, records, server.id, clock.now)["total"].amount
    assert total == Decimal("0.001") * 1100 + Decimal("0.0001") * 900


def test_an_error_is_charged_as_off(store, records, clock):
    server, _ = new_server(store, records, running="3.6", off="0.36")
    go(store, server.id, State.STARTING)
    clock.advance(10)
    go(store, server.id, State.ERROR)
    clock.advance(1000)
    total = spend(store, records, server.id, clock.now)["total"].amount
    assert total == Decimal("0.01") + Decimal("0.1")


def test_spend_already_incurred_never_changes_with_new_rates(store, records, clock):
    server, _ = new_server(store, records, running="1", off="0")
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(2 * HOUR)
    go(store, server.id, State.STOPPING, State.OFF)
    before = spend(store, records, server.id, clock.now)["total"].amount
    # Bigger hardware (or a new price table) from now on.
    records.record_rates(server.id, StateRates.flat(10, 0, source="test").snapshot())
    assert spend(store, records, server.id, clock.now)["total"].amount == before == 2
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(HOUR / 2)
    assert spend(store, records, server.id, clock.now)["total"].amount == 2 + 5


def test_a_rate_change_while_running_splits_the_interval(store, records, clock):
    server, _ = new_server(store, records, running="1", off="0")
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(HOUR)
    records.record_rates(server.id, StateRates.flat(2, 0, source="test").snapshot())  # disk grew
    clock.advance(HOUR)
    assert spend(store, records, server.id, clock.now)["total"].amount == 3


def test_windows_cut_intervals_at_their_edges_in_a_time_zone(store, records, clock):
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
    server, _ = new_server(store, records, running="3.6", off="0")
    clock.now = dt.datetime(2030, 3, 31, 23, 0, tzinfo=tokyo).timestamp()
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(2 * HOUR)  # 01:00 on April 1st in Tokyo
    now = clock.now
    assert day_start(now, tokyo) == month_start(now, tokyo)
    windows = {
        "today": (day_start(now, tokyo), now),
        "month": (month_start(now, tokyo), now),
        "total": (0.0, now),
    }
    result = spend(store, records, server.id, now, **windows)
    assert result["today"].amount == result["month"].amount == Decimal("3.6")
    assert result["total"].amount == Decimal("7.2")


def test_unknown_prices_make_spend_a_named_lower_bound(store, records, clock):
    server = store.create(
        name="gpu",
        color="#1f77b4",
        notes="",
        cloud="stand-in",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    records.record_rates(
        server.id,
        {
            "running": {"hourly": "0.5", "unknown": ["GPU (1 x nvidia-l4)"]},
            "off": {"hourly": "0.01", "unknown": []},
            "suspended": None,
        },
    )
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(2 * HOUR)
    total = spend(store, records, server.id, clock.now)["total"]
    assert total.amount == 1 and total.unknown == {"GPU (1 x nvidia-l4)"}


def test_deleted_servers_keep_their_spend(store, records, clock):
    kept, _ = new_server(store, records, "kept", running="1", off="0")
    gone, _ = new_server(store, records, "gone", running="2", off="0")
    go(store, kept.id, State.STARTING, State.RUNNING)
    go(store, gone.id, State.STARTING, State.RUNNING)
    clock.advance(HOUR)
    go(store, gone.id, State.DEPROVISIONING, State.DEPROVISIONED)
    store.delete(gone.id)
    clock.advance(HOUR)
    spends = meter_all(
        store.history(), records.rates_history(), {}, {"total": (0.0, clock.now)}, clock.now
    )
    assert spends[kept.id]["total"].amount == 2
    assert spends[gone.id]["total"].amount == 2


def test_the_same_history_gives_the_same_spend_after_a_restart(db_url, store, records, clock):
    server, _ = new_server(store, records)
    go(store, server.id, State.STARTING, State.RUNNING)
    clock.advance(HOUR)
    first = spend(store, records, server.id, clock.now)["total"].amount
    store.close()
    reopened = ServerStore(db_url, clock=clock)
    again = spend(reopened, CostRecords(reopened.database, clock=clock), server.id, clock.now)
    assert again["total"].amount == first == Decimal("0.38")
    reopened.close()


def test_a_starting_rate_of_its_own_charges_a_queued_job_nothing():
    """The slurm cloud's rates: a job waiting in the queue (the server starting) costs
    nothing; once it runs, the running rate; stored and read back as recorded."""
    from jupyter_compute_servers.billing.prices import Part, Rate
    from jupyter_compute_servers.store import HistoryEntry

    running = Rate((Part("CPU", "4 CPU", Decimal("0.08"), "cluster hpc's rates"),))
    nothing = Rate((Part("queued job", "hpc", Decimal(0), "cluster hpc's rates"),))
    rates = StateRates(running=running, off=Rate(()), starting=nothing)
    restored = StateRates.from_snapshot(rates.snapshot())  # as rate_history keeps it
    assert restored.for_state("starting").hourly == 0
    assert restored.for_state("running").hourly == Decimal("0.08")
    older = rates.snapshot()
    del older["starting"]  # recorded before starting rates existed
    assert StateRates.from_snapshot(older).starting is None
    history = [
        HistoryEntry(1, START, State.STARTING, "", "start"),
        HistoryEntry(1, START + 3 * HOUR, State.RUNNING, "", None),
        HistoryEntry(1, START + 5 * HOUR, State.OFF, "job ended", "found"),
    ]
    spent = meter(history, [], rates, {"all": (START, START + 10 * HOUR)}, START + 10 * HOUR)
    assert spent["all"].amount == Decimal("0.16")  # 2 h running; the 3 h queued are free
    # Without a starting rate of its own, starting is charged as running (other clouds).
    plain = StateRates(running=running, off=Rate(()))
    spent = meter(history, [], plain, {"all": (START, START + 10 * HOUR)}, START + 10 * HOUR)
    assert spent["all"].amount == Decimal("0.40")
