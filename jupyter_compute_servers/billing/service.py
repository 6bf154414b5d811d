"""``ComputeServerCosts``: the configuration of costs, what the manager and the API ask of
them, and the watcher that stops servers when a limit, the budget, a daily stop time or an
idle timeout says so.

The watcher's work is ``evaluate()``: look at the servers' activity, ``plan()`` what is due
from the store and the clock (a pure function of them and the activity seen), then act: stop
servers (through ``ServerControl.request_action`` with the reason, which the history and
``state_reason`` keep) and give each alert once (``cost_alerts``, see ``records``). Tests call
``evaluate()`` step by step with a controllable clock; in Jupyter a background task calls it
every ``check_interval`` seconds, and sooner when something is due sooner (a limit about to
be reached, an idle timeout ending), so a stop happens at its second.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..errors import ComputeServersError, ConflictError
from ..models import Action, State
from ..store import HistoryEntry, ServerRecord, ServerStore
from .estimate import estimate_json, parse_estimate
from .idle import ActivityTracker, GpuProbe, KernelSource, UnattachedKernels
from .limits import (
    LimitStatus,
    daily_stop_due,
    describe_limit,
    fmt,
    next_daily_stop,
    spend_limit_window,
)
from .metering import (
    Ledger,
    Spend,
    day_start,
    local_zone,
    month_name,
    month_start,
    rate_timeline,
)
from .prices import CURRENCY, MAX_TABLE_BYTES, PriceBook, Rate, StateRates, is_url, money
from .records import CostRecords, RatesEntry

if TYPE_CHECKING:
    from ..clouds.base import Cloud
    from ..manager import ServerAgent

#: A server's state history and recorded rates, as its ledger is built from them.
Records = tuple[list[HistoryEntry], list[RatesEntry]]

#: Which automatic stop wins when several are due at once.
TRIGGERS = ("spend_limit", "budget", "daily_stop", "idle")


@dataclass(frozen=True)
class Stop:
    """An automatic stop that is due."""

    server_id: int
    trigger: str
    reason: str
    #: For an idle stop: since when the server has been idle.
    idle_since: float | None = None


@dataclass(frozen=True)
class Alert:
    """A cost alert to give once (``key`` is remembered in the store)."""

    key: str
    server_id: int | None
    scope: str
    threshold: float
    spent: Decimal
    limit: Decimal
    message: str
    period_days: int | None = None
    month: str | None = None
    #: Recorded without an event (a stop of the same server says it).
    silent: bool = False

    def event(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "scope": self.scope,
            "threshold": self.threshold,
            "spent": money(self.spent),
            "limit": money(self.limit),
            "message": self.message,
        }
        if self.period_days is not None:
            data["period_days"] = self.period_days
        if self.month is not None:
            data["month"] = self.month
        return data


@dataclass
class Plan:
    """What ``plan()`` found due at one instant."""

    now: float
    stops: list[Stop] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    #: Alerts whose condition ended: given again when it comes back.
    rearm: list[str] = field(default_factory=list)
    #: The next instant something may become due (a limit reached, an idle timeout).
    next_at: float | None = None
    #: The stop due for each server so far.
    due: dict[int, Stop] = field(default_factory=dict)

    def propose(self, stop: Stop) -> None:
        """A stop is due; of several for one server, the first in ``TRIGGERS`` wins."""
        current = self.due.get(stop.server_id)
        if current is None or TRIGGERS.index(stop.trigger) < TRIGGERS.index(current.trigger):
            self.due[stop.server_id] = stop

    def wake_at(self, at: float | None) -> None:
        if at is not None and at > self.now and (self.next_at is None or at < self.next_at):
            self.next_at = at


@dataclass
class Evaluation:
    """What one ``evaluate()`` did."""

    plan: Plan
    stopped: list[Stop] = field(default_factory=list)
    alerted: list[Alert] = field(default_factory=list)
    #: Stops that were due but not done now (another action under way, kernels not driven
    #: by this Jupyter server): tried again on the next evaluation.
    deferred: list[tuple[Stop, str]] = field(default_factory=list)


class ServerControl(Protocol):
    """What costs use of the servers' lifecycle: the manager, seen through this much only."""

    store: ServerStore
    clouds: dict[str, Cloud]

    def get_server(self, server_id: int) -> ServerRecord: ...

    def cloud_for(self, server: ServerRecord) -> Cloud: ...

    def request_action(
        self, server_id: int, action_name: str, body: Any = None, *, reason: str = ""
    ) -> ServerRecord: ...

    def notify(self, kind: str, server_id: int | None, **extra: Any) -> None: ...

    async def agent_for(self, server_id: int, hint: str = ...) -> ServerAgent: ...


class ComputeServerCosts(LoggingConfigurable):
    """Prices, metering, spend limits, the monthly budget, daily stop times and idle
    shutdown of compute servers. Configured as ``c.ComputeServerCosts.<option>``."""

    price_tables = Dict(
        value_trait=Unicode(),
        help=(
            "Price tables replacing the built-in ones, by cloud name: a path or an http(s) URL "
            "of a JSON table (see jupyter_compute_servers/billing/price_tables/"
            "price-table.schema.json), e.g. {'gcp': '/etc/jupyter/gcp-prices.json', 'local': "
            "'https://intranet/chargeback.json'}. A table that cannot be read or is invalid is "
            "logged and that cloud's prices show as unknown."
        ),
    ).tag(config=True)

    price_table_timeout = Float(
        10.0, help="Seconds to wait for all of a price table at a URL when Jupyter starts."
    ).tag(config=True)

    price_table_max_bytes = Int(
        MAX_TABLE_BYTES, help="The largest price table read from an http(s) URL (bytes)."
    ).tag(config=True)

    monthly_budget = Float(
        0.0,
        help=(
            "Dollars all compute servers together may cost per calendar month (in `timezone`); "
            "0 means no budget. At `warning_fraction` of it everyone is warned once; reaching "
            "it stops every server that costs money while running, and none can start until "
            "the next month or a higher budget."
        ),
    ).tag(config=True)

    warning_fraction = Float(
        0.8,
        help="The fraction of a spend limit or of the budget at which a warning is given.",
    ).tag(config=True)

    timezone = Unicode(
        "",
        help=(
            "The IANA time zone of days and months for spend (today, this month, the monthly "
            "budget) and of daily stop times that name none, e.g. 'Europe/Berlin'. Empty: the "
            "time zone of the machine running Jupyter."
        ),
    ).tag(config=True)

    check_interval = Float(
        60.0,
        help=(
            "Seconds between evaluations of spend limits, the budget, daily stop times and "
            "idleness in the Jupyter server (sooner when something is due sooner). 0 turns "
            "the automatic stops off."
        ),
    ).tag(config=True)

    idle_gpu_threshold = Float(
        10.0,
        help=(
            "GPU utilization (percent) at or above which a server counts as in use, when its "
            "GPU utilization is known."
        ),
    ).tag(config=True)

    gcp_catalog_refresh = Bool(
        False,
        help=(
            "When Jupyter starts, refresh the gcp price table from the Cloud Billing Catalog "
            "API (needs google-cloud-billing and Google credentials). A configured gcp table "
            "in price_tables wins over it."
        ),
    ).tag(config=True)

    @validate("monthly_budget")
    def _check_budget(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 1e9:
            raise TraitError(f"monthly_budget must be >= 0 (0: no budget); got {value}.")
        return value

    @validate("warning_fraction")
    def _check_warning(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 < value < 1:
            raise TraitError(f"warning_fraction must be between 0 and 1; got {value}.")
        return value

    @validate("timezone")
    def _check_timezone(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if value:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise TraitError(
                    f"timezone {value!r} is not a known IANA time zone (e.g. Europe/Berlin)."
                ) from None
        return value

    @validate("check_interval", "price_table_timeout")
    def _check_seconds(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 86400:
            raise TraitError(f"{proposal['trait'].name} must be 0-86400 seconds; got {value}.")
        return value

    @validate("idle_gpu_threshold")
    def _check_threshold(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 <= value <= 100:
            raise TraitError(f"idle_gpu_threshold must be 0-100 percent; got {value}.")
        return value

    def __init__(
        self,
        servers: ServerControl,
        *,
        clock: Callable[[], float] | None = None,
        records: CostRecords | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.servers = servers
        self._clock = clock
        self._records = records
        self._book: PriceBook | None = None
        self.activity = ActivityTracker(self.now)
        #: The Jupyter server's remote kernels (set by the app; None elsewhere).
        self.kernels: KernelSource | None = None
        #: Counts kernels on a server that this Jupyter server does not drive.
        self.unattached_kernels: UnattachedKernels | None = None
        #: GPU utilization of a server, when something can tell it (see ``idle``).
        self.gpu_probe: GpuProbe | None = None
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None
        #: Fetching price tables at URLs (start), and the book used until they are here.
        self._loading: asyncio.Task[None] | None = None
        self._provisional: PriceBook | None = None
        self._evaluated = False
        #: Ledgers by server id, with the counts (and fallback rates) they were built from.
        self._ledgers: dict[int, tuple[tuple[int, int], Any, Ledger, list[HistoryEntry]]] = {}

    @property
    def records(self) -> CostRecords:
        """The recorded rates and the alerts given (default: in the store's database)."""
        if self._records is None:
            store = self.servers.store
            self._records = CostRecords(store.database, clock=store.clock)
        return self._records

    @property
    def book(self) -> PriceBook:
        """The price tables, read when first needed (the CLI may never need them; a table at
        a URL is fetched once)."""
        if self._book is None:
            if self._loading is not None and not self._loading.done():
                # Tables at URLs are still being fetched (start): unknown until they are here.
                if self._provisional is None:
                    self._provisional = PriceBook.load(
                        self.price_tables,
                        self.price_table_timeout,
                        self.price_table_max_bytes,
                        pending=self._fetching(),
                    )
                return self._provisional
            self._book = self._load_book()
        return self._book

    @book.setter
    def book(self, book: PriceBook) -> None:
        self._book = book

    def _fetching(self) -> dict[str, str]:
        return {
            cloud: f"the price table at {location} is being fetched"
            for cloud, location in self.price_tables.items()
            if is_url(location)
        }

    def _load_book(self) -> PriceBook:
        book = PriceBook.load(
            self.price_tables, self.price_table_timeout, self.price_table_max_bytes
        )
        for cloud, error in book.errors.items():
            self.log.error("Prices of the %s cloud are unknown: %s", cloud, error)
        return book

    async def _load_book_in_background(self) -> None:
        """Fetch tables at URLs on a thread (the event loop serves requests meanwhile), then
        record the rates they give."""
        book = await asyncio.to_thread(self._load_book)
        if self._book is None:  # (unless one was set meanwhile)
            self._book = book
        self._provisional = None
        self.sync_rates()

    # --- time -----------------------------------------------------------------------------

    def now(self) -> float:
        """The costs clock: the store's unless one was given."""
        return (self._clock or self.servers.store.clock)()

    @property
    def zone(self) -> dt.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else local_zone()

    @property
    def watching(self) -> bool:
        return self._task is not None and not self._task.done()

    # --- rates ----------------------------------------------------------------------------

    def rates_of(self, server: ServerRecord) -> StateRates:
        return self.book.rates(server.cloud, self.servers.clouds.get(server.cloud), server.config)

    def sync_rates(self, server_ids: list[int] | None = None) -> None:
        """Record the rates of servers (all, or these) where they differ from the last ones
        recorded (their configuration changed, or the price tables did), effective now."""
        store = self.servers.store
        if server_ids is None:
            servers = store.servers()
            recorded = _by_server(self.records.rates_history())
        else:
            servers = []
            for server_id in server_ids:
                with contextlib.suppress(ComputeServersError):  # deleted meanwhile
                    servers.append(store.get(server_id))
            recorded = {s.id: self.records.rates_history(s.id) for s in servers}
        for server in servers:
            snapshot = self.rates_of(server).snapshot()
            last = recorded.get(server.id)
            if not last or last[-1].rates != snapshot:
                self.records.record_rates(server.id, snapshot)

    def on_event(self, event: dict[str, Any]) -> None:
        """A manager event: a new or edited server may have new rates."""
        if event.get("kind") in ("created", "updated") and isinstance(event.get("server_id"), int):
            self.sync_rates([event["server_id"]])
        elif event.get("kind") == "deleted" and isinstance(event.get("server_id"), int):
            self.activity.forget(event["server_id"])

    # --- metering -------------------------------------------------------------------------

    def _calendar(self, now: float) -> dict[str, tuple[float, float]]:
        """The windows every server's spend is shown in: today, this month and in total."""
        zone = self.zone
        return {
            "today": (day_start(now, zone), now),
            "month": (month_start(now, zone), now),
            "total": (0.0, now),
        }

    def _windows(
        self,
        now: float,
        server: ServerRecord | None,
        calendar: dict[str, tuple[float, float]] | None = None,
    ) -> dict[str, tuple[float, float]]:
        """``_calendar``'s windows (``calendar``, when the caller worked them out for many
        servers at once), and the server's spend limit's."""
        windows = dict(self._calendar(now) if calendar is None else calendar)
        if server is not None and server.spend_limit is not None:
            windows["limit"] = spend_limit_window(server.spend_limit, now)
        return windows

    def ledger(
        self,
        server_id: int,
        server: ServerRecord | None,
        counts: tuple[int, int] | None = None,
        rates: StateRates | None = None,
        records: Records | None = None,
    ) -> tuple[Ledger, list[HistoryEntry]]:
        """A server's ledger and history, built again only when its history or its recorded
        rates grew (``counts``: how many of each, ``rates``: the server's current rates, and
        ``records``: what ``_stale_records`` read for it, if the caller has them)."""
        store = self.servers.store
        if counts is None:
            counts = self.history_counts(server_id).get(server_id, (0, 0))
        current = rates if rates is not None or server is None else self.rates_of(server)
        # The current rates matter only to a server with none recorded.
        fallback = None if counts[1] or current is None else current.snapshot()
        cached = self._ledgers.get(server_id)
        if cached is not None and cached[0] == counts and cached[1] == fallback:
            return cached[2], cached[3]
        if records is not None:
            history, recorded = records
        else:
            history, recorded = store.history(server_id), self.records.rates_history(server_id)
        ledger = Ledger(history, rate_timeline(recorded), current)
        self._ledgers[server_id] = (counts, fallback, ledger, history)
        return ledger, history

    def _stale_records(self, counts: dict[int, tuple[int, int]]) -> dict[int, Records]:
        """The state and rate histories of the servers whose cached ledger is out of date, by
        id, read together (a query of each per 500 servers) where there are several: the
        first listing after Jupyter started read them server by server, two queries each,
        270 ms of Jupyter's loop with 500 servers. A ledger is then built from them only if
        its cache still misses (``ledger``)."""
        stale = [
            server_id
            for server_id, count in counts.items()
            if (cached := self._ledgers.get(server_id)) is None or cached[0] != count
        ]
        if len(stale) < 2:
            return {}
        histories = self.servers.store.histories_of(stale)
        rates = self.records.rates_histories_of(stale)
        return {server_id: (histories[server_id], rates[server_id]) for server_id in stale}

    def history_counts(self, server_id: int | None = None) -> dict[int, tuple[int, int]]:
        """How many state changes and rate records each server has (both only ever grow), by
        server id: a cheap check that a server's spend must be worked out again."""
        rates = self.records.rate_counts(server_id)
        return {
            sid: (states, rates.get(sid, 0))
            for sid, states in self.servers.store.state_counts(server_id).items()
        }

    def spend_of(self, server: ServerRecord, now: float | None = None) -> dict[str, Spend]:
        """One server's spend today, this month, in total and in its limit's window."""
        now = self.now() if now is None else now
        ledger, _ = self.ledger(server.id, server)
        return {name: ledger.spend(a, b) for name, (a, b) in self._windows(now, server).items()}

    def _spends(
        self, now: float, servers: list[ServerRecord]
    ) -> tuple[dict[int, dict[str, Spend]], dict[int, list[HistoryEntry]]]:
        """Every server's spend (deleted ones too, by id) and history."""
        by_id = {s.id: s for s in servers}
        calendar = self._calendar(now)
        spends = {}
        histories = {}
        all_counts = self.history_counts()
        stale = self._stale_records(all_counts)
        for server_id, counts in all_counts.items():
            server = by_id.get(server_id)
            ledger, histories[server_id] = self.ledger(
                server_id, server, counts, records=stale.get(server_id)
            )
            spends[server_id] = {
                name: ledger.spend(a, b)
                for name, (a, b) in self._windows(now, server, calendar).items()
            }
        return spends, histories

    def _limit_status(self, server: ServerRecord, spend: dict[str, Spend]) -> LimitStatus | None:
        if server.spend_limit is None:
            return None
        return LimitStatus(
            # What limits count: a snapshot's spot price at the on-demand price (``Rate``).
            spend["limit"].limit_amount,
            Decimal(str(server.spend_limit.amount)),
            self.warning_fraction,
        )

    def _budget_status(self, month_spent: Decimal) -> LimitStatus | None:
        if not self.monthly_budget:
            return None
        return LimitStatus(month_spent, Decimal(str(self.monthly_budget)), self.warning_fraction)

    def server_cost(
        self,
        server: ServerRecord,
        spend: dict[str, Spend],
        now: float,
        rates: StateRates | None = None,
        shown: dict[Rate | StateRates, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``rates``: the server's current rates, if the caller has them; ``shown``: see
        ``server_json_batch``."""
        rates = self.rates_of(server) if rates is None else rates
        current = rates.for_state(server.state.value)
        cost: dict[str, Any] = {
            "currency": CURRENCY,
            "rates": _to_json(rates, shown),
            "hourly": _to_json(current, shown),
            "spent": {
                "today": money(spend["today"].amount),
                "month": money(spend["month"].amount),
                "total": money(spend["total"].amount),
                "unknown": sorted(spend["total"].unknown),
            },
            "spend_limit": None,
        }
        status = self._limit_status(server, spend)
        if status is not None and server.spend_limit is not None:
            until = status.seconds_until(1.0, current.limit_hourly)
            cost["spend_limit"] = {
                "amount": server.spend_limit.amount,
                "period_days": server.spend_limit.period_days,
                "spent": money(status.spent),
                "fraction": round(status.fraction, 6),
                "status": status.status,
                "reached_at": None if until is None else now + until,
            }
        return cost

    def auto_stop(self, server: ServerRecord, history: list[HistoryEntry], now: float) -> Any:
        """When the server will stop by itself, as far as can be told now (while running)."""
        idle = None
        daily = None
        if server.state is State.RUNNING:
            # Idleness is known only where activity is watched (not in the CLI's process).
            if server.idle_timeout_minutes and (self.watching or self._evaluated):
                since = self.activity.idle_since(server, history[-1].at if history else 0.0)
                last = self.activity.last(server.id)
                idle = {
                    "timeout_minutes": server.idle_timeout_minutes,
                    "idle_since": since,
                    "stops_at": since + server.idle_timeout_minutes * 60,
                    "last_activity": None if last is None else {"at": last.at, "what": last.what},
                }
            if server.daily_stop is not None:
                daily = next_daily_stop(server.daily_stop, now, self.zone)
        return {"watching": self.watching, "idle": idle, "daily_stop_at": daily}

    def server_json_batch(self) -> Callable[[ServerRecord], dict[str, Any]]:
        """``server_json`` for many servers, all as of one moment: what does not differ
        between servers is worked out once for all, in this call: the counts that tell
        whether a ledger must be built again (two grouped queries), the records of those
        that must (``_stale_records``), the calendar's windows, and then, as servers are
        asked, the JSON of each distinct rate (servers alike share one dict: read it, never
        change it)."""
        now = self.now()
        counts = self.history_counts()
        stale = self._stale_records(counts)
        calendar = self._calendar(now)
        shown: dict[Rate | StateRates, dict[str, Any]] = {}
        return lambda server: self.server_json(
            server,
            counts.get(server.id, (0, 0)),
            now=now,
            calendar=calendar,
            shown=shown,
            records=stale.get(server.id),
        )

    def server_json(
        self,
        server: ServerRecord,
        counts: tuple[int, int] | None = None,
        *,
        now: float | None = None,
        calendar: dict[str, tuple[float, float]] | None = None,
        shown: dict[Rate | StateRates, dict[str, Any]] | None = None,
        records: Records | None = None,
    ) -> dict[str, Any]:
        """The ``cost`` and ``auto_stop`` fields of a server in the API (``counts``: its
        history and rate counts, when the caller has them; ``now``, ``calendar``, ``shown``
        and ``records``: see ``server_json_batch``)."""
        now = self.now() if now is None else now
        try:
            rates = self.rates_of(server)
            ledger, history = self.ledger(server.id, server, counts, rates, records)
            windows = self._windows(now, server, calendar)
            spend = {n: ledger.spend(a, b) for n, (a, b) in windows.items()}
            return {
                "cost": self.server_cost(server, spend, now, rates, shown),
                "auto_stop": self.auto_stop(server, history, now),
            }
        except Exception:  # a cost must never hide a server from its user
            self.log.exception("Could not work out the cost of %s", server.name)
            return {"cost": None, "auto_stop": None}

    def costs_json(self) -> dict[str, Any]:
        """``GET costs``: spend of every server and in total, the current rate, the budget."""
        now = self.now()
        servers = self.servers.store.servers()
        spends, _ = self._spends(now, servers)
        total = {name: Spend() for name in ("today", "month", "total")}
        deleted = {name: Spend() for name in ("today", "month", "total")}
        live = {s.id for s in servers}
        for server_id, spend in spends.items():
            for name in total:
                total[name].add(spend[name])
                if server_id not in live:
                    deleted[name].add(spend[name])
        hourly = Rate(
            tuple(
                part
                for server in servers
                for part in self.rates_of(server).for_state(server.state.value).parts
            )
        )
        budget = self._budget_status(total["month"].limit_amount)
        return {
            "currency": CURRENCY,
            "at": now,
            "timezone": self.timezone or str(getattr(self.zone, "key", "") or "UTC"),
            "month": month_name(now, self.zone),
            "spent": _spent_json(total),
            "hourly": hourly.to_json(),
            "budget": None
            if budget is None
            else {
                "monthly": self.monthly_budget,
                "spent": money(budget.spent),
                "fraction": round(budget.fraction, 6),
                "status": budget.status,
                "warning_fraction": self.warning_fraction,
            },
            "servers": [
                {
                    "id": server.id,
                    "name": server.name,
                    "cloud": server.cloud,
                    "state": server.state.value,
                    "cost": self.server_cost(
                        server,
                        spends.get(server.id) or _empty(self._windows(now, server)),
                        now,
                    ),
                }
                for server in servers
            ],
            "deleted_servers": {"spent": _spent_json(deleted)},
        }

    def estimate(self, body: Any) -> dict[str, Any]:
        """``POST estimate``."""
        cloud_name, cloud, config, hours = parse_estimate(self.servers, body)
        return estimate_json(cloud_name, config, self.book.rates(cloud_name, cloud, config), hours)

    # --- limits at start ------------------------------------------------------------------

    def check_start(self, server: ServerRecord) -> None:
        """Refuse (409) to start a server whose spend limit, or the budget, is spent."""
        now = self.now()
        if server.spend_limit is not None:
            spend = self.spend_of(server, now)
            status = self._limit_status(server, spend)
            if status is not None and status.reached:
                counted = _counted(status.spent, spend["limit"].amount)
                raise ConflictError(
                    f"{server.name!r} has reached its spend limit of "
                    f"{describe_limit(server.spend_limit)}: {fmt(status.spent)} in the last "
                    f"{server.spend_limit.period_days} days{counted}. Raise its spend limit to "
                    f"start it.",
                    field="spend_limit",
                    state=server.state.value,
                )
        if self.monthly_budget and not self.rates_of(server).running.is_known_zero:
            spends, _ = self._spends(now, self.servers.store.servers())
            month = sum((s["month"].limit_amount for s in spends.values()), Decimal(0))
            budget = self._budget_status(month)
            if budget is not None and budget.reached:
                raise ConflictError(
                    f"The monthly budget of {fmt(self.monthly_budget)} is spent "
                    f"({fmt(month)} in {month_name(now, self.zone)}): servers that cost money "
                    f"cannot start until next month, or until the budget "
                    f"(c.ComputeServerCosts.monthly_budget) is raised.",
                    state=server.state.value,
                )

    # --- automatic stops ------------------------------------------------------------------

    def plan(
        self,
        now: float,
        servers: list[ServerRecord],
        spends: dict[int, dict[str, Spend]],
        histories: dict[int, list[HistoryEntry]],
        given: set[str],
    ) -> Plan:
        """What is due at ``now``: stops (one per server, by ``TRIGGERS`` order), alerts not
        given yet (``given``: the keys of those that were), alerts to re-arm, and when to look
        again. A pure function of its arguments, the activity seen and the prices: it changes
        nothing."""
        plan = Plan(now)
        rates = {server.id: self.rates_of(server) for server in servers}
        for server in servers:
            history = histories.get(server.id, [])
            spend = spends.get(server.id)
            if spend is not None:
                self._plan_spend_limit(plan, server, spend, rates[server.id], given)
            self._plan_daily_stop(plan, server, history)
            self._plan_idle(plan, server, history)
        self._plan_budget(plan, servers, spends, rates, given)
        plan.stops = sorted(plan.due.values(), key=lambda stop: stop.server_id)
        return plan

    def _plan_spend_limit(
        self,
        plan: Plan,
        server: ServerRecord,
        spend: dict[str, Spend],
        rates: StateRates,
        given: set[str],
    ) -> None:
        status = self._limit_status(server, spend)
        limit = server.spend_limit
        if status is None or limit is None:
            return
        warn = self.warning_fraction
        base = f"spend_limit:{server.id}:{limit.amount}:{limit.period_days}"
        warn_key, reached_key = f"{base}:warning", f"{base}:reached"
        described = describe_limit(limit)
        hourly = rates.for_state(server.state.value).limit_hourly
        counted = _counted(status.spent, spend["limit"].amount)
        if status.reached:
            stopping = _stoppable(server, State.RUNNING, State.SUSPENDED)
            if stopping:
                plan.propose(
                    Stop(
                        server.id,
                        "spend_limit",
                        f"Stopped automatically: its spend limit of {described} was reached "
                        f"({fmt(status.spent)} spent{counted}).",
                    )
                )
            message = (
                f"{server.name} has reached its spend limit of {described} "
                f"({fmt(status.spent)} spent{counted}). It cannot start until its spend in "
                f"the last {limit.period_days} days falls below the limit, or the limit is raised."
            )
            for key, threshold in ((warn_key, warn), (reached_key, 1.0)):
                if key not in given:
                    plan.alerts.append(
                        Alert(
                            key,
                            server.id,
                            "spend_limit",
                            threshold,
                            status.spent,
                            status.limit,
                            message,
                            period_days=limit.period_days,
                            # Said by the stop, or passed on the way to the limit.
                            silent=threshold < 1.0 or stopping,
                        )
                    )
        elif status.warned:
            if reached_key in given:
                plan.rearm.append(reached_key)
            if warn_key not in given:
                plan.alerts.append(
                    Alert(
                        warn_key,
                        server.id,
                        "spend_limit",
                        warn,
                        status.spent,
                        status.limit,
                        f"{server.name} has spent {fmt(status.spent)} of its spend limit of "
                        f"{described} ({status.fraction:.0%}{counted}); it stops when it "
                        f"reaches the limit.",
                        period_days=limit.period_days,
                    )
                )
            plan.wake_at(_after(plan.now, status.seconds_until(1.0, hourly)))
        else:
            plan.rearm.extend(key for key in (warn_key, reached_key) if key in given)
            plan.wake_at(_after(plan.now, status.seconds_until(warn, hourly)))

    def _plan_daily_stop(
        self, plan: Plan, server: ServerRecord, history: list[HistoryEntry]
    ) -> None:
        daily = server.daily_stop
        if daily is None or server.state is not State.RUNNING:
            return
        due = daily_stop_due(daily, history, plan.now, self.zone)
        if due is not None and server.operation is None:
            zone = f" ({daily.timezone})" if daily.timezone else ""
            plan.propose(
                Stop(
                    server.id,
                    "daily_stop",
                    f"Stopped automatically at its daily stop time, {daily.time}{zone}.",
                )
            )
        plan.wake_at(next_daily_stop(daily, plan.now, self.zone))

    def _plan_idle(self, plan: Plan, server: ServerRecord, history: list[HistoryEntry]) -> None:
        timeout = server.idle_timeout_minutes
        if not timeout or not _stoppable(server, State.RUNNING):
            return
        since = self.activity.idle_since(server, history[-1].at if history else 0.0)
        stops_at = since + timeout * 60
        if plan.now < stops_at:
            plan.wake_at(stops_at)
            return
        minutes = "1 minute" if timeout == 1 else f"{timeout} minutes"
        plan.propose(
            Stop(
                server.id,
                "idle",
                f"Stopped automatically after {minutes} idle (no kernel activity, terminal "
                f"input or GPU use).",
                idle_since=since,
            )
        )

    def _plan_budget(
        self,
        plan: Plan,
        servers: list[ServerRecord],
        spends: dict[int, dict[str, Spend]],
        rates: dict[int, StateRates],
        given: set[str],
    ) -> None:
        month_spent = sum((spend["month"].limit_amount for spend in spends.values()), Decimal(0))
        budget = self._budget_status(month_spent)
        if budget is None:
            return
        counted = _counted(
            month_spent, sum((spend["month"].amount for spend in spends.values()), Decimal(0))
        )
        warn = self.warning_fraction
        month = month_name(plan.now, self.zone)
        base = f"budget:{month}:{self.monthly_budget}"
        now_rates = {s.id: rates[s.id].for_state(s.state.value) for s in servers}
        hourly = sum((rate.limit_hourly for rate in now_rates.values()), Decimal(0))
        described = fmt(self.monthly_budget)
        if budget.reached:
            for server in servers:
                costs_money = not now_rates[server.id].is_known_zero
                if costs_money and _stoppable(server, State.RUNNING, State.SUSPENDED):
                    plan.propose(
                        Stop(
                            server.id,
                            "budget",
                            f"Stopped automatically: the monthly budget of {described} was "
                            f"reached ({fmt(budget.spent)} spent in {month}{counted}).",
                        )
                    )
            message = (
                f"The monthly budget of {described} is reached ({fmt(budget.spent)} spent in "
                f"{month}{counted}). Servers that cost money were stopped and cannot start "
                f"until next month or a higher budget."
            )
            for key, threshold in ((f"{base}:warning", warn), (f"{base}:reached", 1.0)):
                if key not in given:
                    plan.alerts.append(
                        Alert(
                            key,
                            None,
                            "budget",
                            threshold,
                            budget.spent,
                            budget.limit,
                            message,
                            month=month,
                            silent=threshold < 1.0,
                        )
                    )
        elif budget.warned:
            key = f"{base}:warning"
            if key not in given:
                plan.alerts.append(
                    Alert(
                        key,
                        None,
                        "budget",
                        warn,
                        budget.spent,
                        budget.limit,
                        f"Compute servers have spent {fmt(budget.spent)} of the monthly budget "
                        f"of {described} ({budget.fraction:.0%}{counted}) in {month}; servers "
                        f"that cost money stop when it is reached.",
                        month=month,
                    )
                )
            plan.wake_at(_after(plan.now, budget.seconds_until(1.0, hourly)))
        else:
            plan.wake_at(_after(plan.now, budget.seconds_until(warn, hourly)))

    async def watch_activity(self, servers: list[ServerRecord]) -> None:
        """Look at the activity of running servers that have an idle timeout."""
        now = self.now()
        for server in servers:
            if server.state is not State.RUNNING:
                self.activity.forget(server.id)
                continue
            if not server.idle_timeout_minutes:
                continue
            if self.kernels is not None:
                self.activity.observe_kernels(server.id, self.kernels.kernels(server.id), now)
            if self.gpu_probe is not None and server.config.gpu is not None:
                try:
                    utilization = await self.gpu_probe(server)
                except Exception as e:
                    self.log.debug("GPU probe of %s failed: %s", server.name, e)
                    utilization = None
                if utilization is not None and utilization >= self.idle_gpu_threshold:
                    self.activity.touch(server.id, f"GPU {utilization:.0f}% busy", now)

    async def evaluate(self) -> Evaluation:
        """One step of the watcher: observe, plan, stop what is due, give new alerts."""
        store = self.servers.store
        servers = store.servers()
        await self.watch_activity(servers)
        self._evaluated = True
        now = self.now()
        spends, histories = self._spends(now, servers)
        plan = self.plan(now, servers, spends, histories, self.records.cost_alerts())
        result = Evaluation(plan)
        self.records.remove_cost_alerts(plan.rearm)
        by_id = {server.id: server for server in servers}
        for stop in plan.stops:
            blocker = await self._idle_blocker(stop, by_id[stop.server_id], now)
            if blocker:
                result.deferred.append((stop, blocker))
                continue
            try:
                server = self.servers.request_action(
                    stop.server_id, Action.STOP.value, reason=stop.reason
                )
            except ComputeServersError as e:
                result.deferred.append((stop, e.message))
                continue
            self.log.info("Compute server %s: %s", server.name, stop.reason)
            self.servers.notify(
                "auto_stopped", server.id, trigger=stop.trigger, message=stop.reason
            )
            result.stopped.append(stop)
        for alert in plan.alerts:
            if not self.records.add_cost_alert(alert.key) or alert.silent:
                continue  # given already (by another process), or said by a stop
            self.servers.notify("cost_warning", alert.server_id, **alert.event())
            result.alerted.append(alert)
        for stop, why in result.deferred:
            self.log.info("Automatic stop of server %s deferred: %s", stop.server_id, why)
        return result

    async def _idle_blocker(self, stop: Stop, server: ServerRecord, now: float) -> str:
        """Why an idle stop must wait: kernels this Jupyter server cannot watch run there."""
        if stop.trigger != "idle" or self.unattached_kernels is None:
            return ""
        try:
            count = await self.unattached_kernels(server.id)
        except Exception as e:
            timeout = (server.idle_timeout_minutes or 0) * 60
            if stop.idle_since is not None and now - stop.idle_since >= 2 * timeout:
                return ""  # unreachable for twice its timeout: idle as far as can be told
            return f"could not ask the server for its kernels: {e}"
        if count:
            what = f"{count} kernel{'s' if count > 1 else ''} not driven by this Jupyter server"
            self.activity.touch(server.id, what, now)
            return what
        return ""

    # --- the watcher ----------------------------------------------------------------------

    def attach(self, kernel_manager: Any, runtime: Any) -> None:
        """In the Jupyter server: watch its remote kernels, and GPUs through the agents."""
        from .idle import JupyterKernels, agent_gpu_probe

        self.kernels = JupyterKernels(kernel_manager, runtime)
        if self.gpu_probe is None:
            self.gpu_probe = agent_gpu_probe(self.servers)

        async def unattached(server_id: int) -> int:
            kernels = await runtime.list_kernels(server_id)
            return sum(1 for kernel in kernels if not kernel["attached"])

        self.unattached_kernels = unattached

    def start(self) -> None:
        """In the Jupyter server: record rates as they are now, refresh prices if asked,
        and start the watcher (unless ``check_interval`` is 0). Tables at URLs are fetched
        in the background; their clouds' prices are unknown until they are here."""
        loop = asyncio.get_event_loop()
        if self._book is None and self._fetching():
            self._loading = loop.create_task(self._load_book_in_background())
        else:
            self.sync_rates()
        if self.gcp_catalog_refresh:
            self._refresh = loop.create_task(self.refresh_gcp())
        if self.check_interval > 0:
            self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            delay = self.check_interval
            try:
                result = await self.evaluate()
                if result.plan.next_at is not None:
                    delay = min(delay, max(result.plan.next_at - self.now(), 0.0) + 0.01)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("Evaluating compute server costs failed")
            await asyncio.sleep(delay)

    async def refresh_gcp(self) -> None:
        """Replace the built-in gcp table by the Cloud Billing Catalog's prices, if it can."""
        from .catalog import refresh_gcp_table

        if self._loading is not None:
            with contextlib.suppress(Exception):
                await self._loading  # the configured tables first
        if "gcp" in self.book.configured:
            self.log.info("A gcp price table is configured; not refreshing from the catalog.")
            return
        base = self.book.builtin.get("gcp")
        table, why = await asyncio.get_running_loop().run_in_executor(
            None, lambda: refresh_gcp_table(base)
        )
        if table is None:
            self.log.warning("GCP prices not refreshed from the Cloud Billing Catalog: %s", why)
            return
        self.book.builtin["gcp"] = table
        self.log.info("GCP prices refreshed from the Cloud Billing Catalog: %s", why)
        self.sync_rates()

    async def close(self) -> None:
        for task in (self._task, self._refresh, self._loading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._task = None


def _counted(counted: Decimal, shown: Decimal) -> str:
    """Where a limit counted more than the cost shown (dated spot prices at the on-demand
    price, see ``prices.Rate.limit_hourly``), the words that say so; else nothing."""
    if counted == shown:
        return ""
    return f"; dated spot prices counted at the on-demand price, {fmt(shown)} at the prices shown"


def _stoppable(server: ServerRecord, *states: State) -> bool:
    """In one of ``states`` with no action under way (one would refuse a stop)."""
    return server.state in states and server.operation is None


def _after(now: float, seconds: float | None) -> float | None:
    return None if seconds is None else now + seconds


def _by_server(entries: list[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for entry in entries:
        grouped[entry.server_id].append(entry)
    return grouped


def _spent_json(spends: dict[str, Spend]) -> dict[str, Any]:
    return {
        "today": money(spends["today"].amount),
        "month": money(spends["month"].amount),
        "total": money(spends["total"].amount),
        "unknown": sorted(spends["total"].unknown),
    }


def _empty(windows: dict[str, tuple[float, float]]) -> dict[str, Spend]:
    return {name: Spend() for name in windows}


def _to_json(
    rate: Rate | StateRates, shown: dict[Rate | StateRates, dict[str, Any]] | None
) -> dict[str, Any]:
    """``rate.to_json()``, worked out once per distinct rate in ``shown`` (if given)."""
    if shown is None:
        return rate.to_json()
    data = shown.get(rate)
    if data is None:
        data = shown[rate] = rate.to_json()
    return data


__all__ = ["ComputeServerCosts", "Evaluation", "Plan"]
