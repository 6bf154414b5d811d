"""Price tables, and the hourly rates of a configuration in each state.

A configuration costs, per hour:

- **running**: its machine (vCPUs and memory, or a flat rate), its GPUs, its disk and its
  external IP;
- **off**: its disk;
- **suspended**: its disk, and its memory kept while suspended (clouds that can suspend);
- **deprovisioned**: nothing.

Each charge is a ``Part`` with the figure it comes from (source and as-of date). A part whose
price is not known is kept, with its price ``None`` and a note saying why: the UI then shows
"price unknown" and names it, never a guess.

Where the rates of a cloud come from, first match wins:

1. a table configured for it (``c.ComputeServerCosts.price_tables``, a path or URL);
2. the cloud's own ``Cloud.price(config)`` (the local cloud's ``hourly_rate``, ssh hosts'
   per-host rates);
3. the table shipped in ``price_tables/<cloud>.json`` (GCP);
4. otherwise every price is unknown.

Tables are JSON of two kinds, checked against ``price_tables/price-table.schema.json``:
``regional`` (a cloud with regions, machine families, GPUs, disk types and external IPs, on
demand and spot: GCP) and ``rate_card`` (flat rates per vCPU, GB of memory, GPU, disk GB:
charge-back for local or on-prem machines).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from ..fetch import read_url
from ..models import ServerConfig

if TYPE_CHECKING:
    from ..clouds.base import Cloud

#: Hours in a month, as cloud providers count them to turn a monthly price into an hourly one.
HOURS_PER_MONTH = Decimal(730)
CURRENCY = "USD"
UNKNOWN = "unknown"
ZERO = Decimal(0)
#: The source name of the figures read from Google's Cloud Billing Catalog (``catalog``): the
#: current prices, not a published snapshot.
LIVE_SOURCE = "catalog"
#: Amounts the API answers are rounded to a millionth of a dollar.
_MICRO = Decimal("0.000001")
#: Rates in words are said to a hundredth of a cent ($0.2018/h).
_CENT_HUNDREDTH = Decimal("0.0001")

TABLES_DIR = files("jupyter_compute_servers").joinpath("billing").joinpath("price_tables")
SCHEMA_NAME = "price-table.schema.json"


def money(amount: Decimal) -> float:
    """A dollar amount for JSON, rounded to a millionth."""
    return float(amount.quantize(_MICRO))


def _usd(amount: Decimal) -> str:
    text = f"{amount:f}"
    return "$" + (text.rstrip("0").rstrip(".") if "." in text else text)


# --- rates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One charge of a configuration in one state: ``hourly`` dollars, or None if unknown."""

    name: str
    detail: str
    hourly: Decimal | None
    source: str = ""
    as_of: str = ""
    note: str = ""
    #: The hourly that spend limits and the budget count, where it is higher than ``hourly``:
    #: a spot price from a published snapshot (it may have risen since, up to the on-demand
    #: price) counts at the on-demand price. None: limits count ``hourly``.
    limit_hourly: Decimal | None = None
    #: From a source of current prices (the Billing Catalog), not a dated snapshot.
    live: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.detail})" if self.detail else self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "detail": self.detail,
            "hourly": None if self.hourly is None else money(self.hourly),
            "source": self.source,
            "as_of": self.as_of,
            "note": self.note,
        }


@dataclass(frozen=True)
class Rate:
    """What a configuration costs per hour in one state: the sum of its parts."""

    parts: tuple[Part, ...] = ()

    @property
    def hourly(self) -> Decimal:
        """The sum of the parts whose price is known."""
        return sum((p.hourly for p in self.parts if p.hourly is not None), ZERO)

    @property
    def unknown(self) -> list[str]:
        """The parts whose price is not known, by label."""
        return [p.label for p in self.parts if p.hourly is None]

    @property
    def limit_hourly(self) -> Decimal:
        """What spend limits and the budget count per hour: ``hourly``, with each spot price of
        a published snapshot at the on-demand price where that is higher (see ``Part``)."""
        return sum(
            (
                p.hourly if p.limit_hourly is None else p.limit_hourly
                for p in self.parts
                if p.hourly is not None
            ),
            ZERO,
        )

    @property
    def limit_note(self) -> str:
        """Why limits count more than ``hourly`` ("" where they count the same)."""
        if self.limit_hourly == self.hourly:
            return ""
        counted = _usd(self.limit_hourly.quantize(_CENT_HUNDREDTH))
        return (
            f"spend limits and the budget count {counted}/h, the on-demand price, while the "
            f"spot price is not refreshed (c.ComputeServerCosts.gcp_catalog_refresh)"
        )

    @property
    def is_known_zero(self) -> bool:
        return not self.unknown and self.hourly == 0

    def to_json(self, *, parts: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"hourly": money(self.hourly), "unknown": self.unknown}
        if self.limit_hourly != self.hourly:
            data["limit_hourly"] = money(self.limit_hourly)
            data["limit_note"] = self.limit_note
        if parts:
            data["parts"] = [p.to_json() for p in self.parts]
        return data

    def snapshot(self) -> dict[str, Any]:
        """Exact, for the rate history (see ``metering``); ``limit_hourly`` only where limits
        count more than is shown, so the rates recorded before it existed read the same."""
        snapshot: dict[str, Any] = {"hourly": str(self.hourly), "unknown": self.unknown}
        if self.limit_hourly != self.hourly:
            snapshot["limit_hourly"] = str(self.limit_hourly)
        return snapshot

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Rate:
        hourly = Decimal(str(data.get("hourly", "0")))
        limit = data.get("limit_hourly")
        parts = [
            Part(
                "recorded rate",
                "",
                hourly,
                limit_hourly=None if limit is None else Decimal(str(limit)),
            )
        ]
        parts.extend(Part(label, "", None) for label in data.get("unknown", []))
        return cls(tuple(parts))


#: The rate that applies in each state (a transitional state at its target state's rate).
#: An error is priced as off: its disk most likely exists, and whether its machine runs is
#: not known (the cloud is asked when Jupyter starts again; see ``manager.reconcile``).
STATE_RATE = {
    "running": "running",
    "starting": "running",
    "stopping": "off",
    "off": "off",
    "error": "off",
    "suspending": "suspended",
    "suspended": "suspended",
    "deprovisioning": None,
    "deprovisioned": None,
}


@dataclass(frozen=True)
class StateRates:
    """The hourly rates of one configuration in each state. ``suspended`` is None on a cloud
    that cannot suspend."""

    running: Rate
    off: Rate
    suspended: Rate | None = None
    #: The rate while starting, where it is not the running one: a Slurm job waiting in the
    #: queue costs nothing until it runs. None: starting is charged as running.
    starting: Rate | None = None
    #: The rate while stopping, where it is not the off one: a Slurm job holds (and is
    #: charged for) its allocation until it ends. None: stopping is charged as off.
    stopping: Rate | None = None

    def for_state(self, state: str) -> Rate:
        if state == "starting" and self.starting is not None:
            return self.starting
        if state == "stopping" and self.stopping is not None:
            return self.stopping
        key = STATE_RATE[state]
        if key is None:
            return Rate()
        if key == "suspended":
            return self.suspended if self.suspended is not None else self.off
        return self.running if key == "running" else self.off

    def to_json(self, *, parts: bool = False) -> dict[str, Any]:
        return {
            "running": self.running.to_json(parts=parts),
            "off": self.off.to_json(parts=parts),
            "suspended": None if self.suspended is None else self.suspended.to_json(parts=parts),
            "deprovisioned": Rate().to_json(parts=parts),
        }

    def snapshot(self) -> dict[str, Any]:
        snapshot = {
            "running": self.running.snapshot(),
            "off": self.off.snapshot(),
            "suspended": None if self.suspended is None else self.suspended.snapshot(),
        }
        if self.starting is not None:
            snapshot["starting"] = self.starting.snapshot()
        if self.stopping is not None:
            snapshot["stopping"] = self.stopping.snapshot()
        return snapshot

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> StateRates:
        suspended = data.get("suspended")
        starting = data.get("starting")
        stopping = data.get("stopping")
        return cls(
            running=Rate.from_snapshot(data["running"]),
            off=Rate.from_snapshot(data["off"]),
            suspended=None if suspended is None else Rate.from_snapshot(suspended),
            starting=None if starting is None else Rate.from_snapshot(starting),
            stopping=None if stopping is None else Rate.from_snapshot(stopping),
        )

    @classmethod
    def flat(
        cls,
        running: float | Decimal,
        off: float | Decimal = 0,
        *,
        source: str,
        as_of: str = "",
        suspended: float | Decimal | None = None,
    ) -> StateRates:
        """Flat hourly rates (a configured charge-back rate, an on-prem host's rate)."""

        def rate(amount: float | Decimal, what: str) -> Rate:
            hourly = Decimal(str(amount))
            return Rate((Part(what, f"{_usd(hourly)}/h", hourly, source, as_of),))

        return cls(
            running=rate(running, "machine"),
            off=rate(off, "machine off"),
            suspended=None if suspended is None else rate(suspended, "machine suspended"),
        )

    @classmethod
    def unknown(cls, note: str, *, supports_suspend: bool = False) -> StateRates:
        def rate() -> Rate:
            return Rate((Part("price", "", None, note=note),))

        return cls(rate(), rate(), rate() if supports_suspend else None)


# --- figures and tables --------------------------------------------------------------------


class PriceTableError(ValidationError):
    """A price table is malformed: the message names the table and ``field`` the entry."""


@dataclass(frozen=True)
class Figure:
    """One price from a table, with where it comes from; ``price`` None means unknown."""

    price: Decimal | None
    source: str = ""
    as_of: str = ""
    note: str = ""
    #: From the Billing Catalog (``LIVE_SOURCE``): a current price.
    live: bool = False

    def part(self, name: str, detail: str, quantity: Decimal, per_month: bool = False) -> Part:
        hourly = None
        if self.price is not None:
            hourly = self.price * quantity / (HOURS_PER_MONTH if per_month else 1)
        return Part(name, detail, hourly, self.source, self.as_of, self.note, live=self.live)


def _missing(note: str) -> Figure:
    return Figure(None, note=note)


class _Reader:
    """Turns a schema-valid table into figures, checking what a schema cannot."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        self.where = where
        self.sources: Mapping[str, Any] = data["sources"]

    def error(self, path: str, message: str) -> PriceTableError:
        return PriceTableError(f"{self.where}: {path}: {message}", field=path)

    def figure(self, value: Mapping[str, Any], path: str) -> Figure:
        source = self.sources.get(value.get("source", ""))
        if value["price"] == UNKNOWN:
            note = value.get("note") or "no trustworthy figure is known"
            return Figure(None, source["url"] if source else "", note=note)
        if source is None:
            known = ", ".join(sorted(self.sources)) or "none"
            raise self.error(
                f"{path}.source",
                f"names no entry of sources ({value.get('source')!r}; sources: {known})",
            )
        return Figure(
            Decimal(str(value["price"])),
            source["url"],
            source["as_of"],
            value.get("note", ""),
            live=value.get("source") == LIVE_SOURCE,
        )


class PriceTable:
    """One cloud's prices."""

    cloud: str
    kind: str

    def rates(self, config: ServerConfig, *, supports_suspend: bool) -> StateRates:
        raise NotImplementedError


_MACHINE_TYPE = re.compile(r"^(?P<family>[a-z0-9]+)-(?P<shape>[a-z]+)-(?P<vcpus>[0-9]+)$")


@dataclass
class _RegionPrices:
    machines: dict[str, dict[str, dict[str, Figure]]] = field(default_factory=dict)
    #: Machine types priced as a whole (their GPUs included), by type and tier.
    machine_types: dict[str, dict[str, Figure]] = field(default_factory=dict)
    gpus: dict[str, dict[str, Figure]] = field(default_factory=dict)
    disks: dict[str, Figure] = field(default_factory=dict)
    external_ip: dict[str, Figure] = field(default_factory=dict)
    suspended_memory: Figure | None = None


class RegionalTable(PriceTable):
    """Prices per region, on demand and spot: machine families per vCPU and GB of memory,
    GPUs per type, disks per type and GB-month, and an external IP per hour (GCP)."""

    kind = "regional"

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        reader = _Reader(data, where)
        #: The table as read (the catalog refresh builds on it).
        self.data: dict[str, Any] = dict(data)
        self.cloud = data["cloud"]
        self.default_disk_type: str | None = data.get("default_disk_type")
        self.families: dict[str, dict[str, float]] = {
            name: dict(family["shapes"]) for name, family in data.get("families", {}).items()
        }
        self.machine_types: dict[str, dict[str, Any]] = dict(data.get("machine_types", {}))
        for name, machine in self.machine_types.items():
            if machine["family"] not in self.families:
                raise reader.error(
                    f"machine_types.{name}.family", f"{machine['family']!r} is not in families"
                )
        self.regions: dict[str, _RegionPrices] = {}
        for region, entry in data["regions"].items():
            at = f"regions.{region}"
            prices = _RegionPrices()
            for family, tiers in entry.get("machines", {}).items():
                if family not in self.families:
                    raise reader.error(f"{at}.machines.{family}", "is not in families")
                prices.machines[family] = {
                    tier: {
                        unit: reader.figure(value, f"{at}.machines.{family}.{tier}.{unit}")
                        for unit, value in units.items()
                    }
                    for tier, units in tiers.items()
                }
            for name, tiers in entry.get("machine_types", {}).items():
                prices.machine_types[name] = {
                    tier: reader.figure(value, f"{at}.machine_types.{name}.{tier}")
                    for tier, value in tiers.items()
                }
            for gpu, tiers in entry.get("gpus", {}).items():
                prices.gpus[gpu] = {
                    tier: reader.figure(value, f"{at}.gpus.{gpu}.{tier}")
                    for tier, value in tiers.items()
                }
            for disk, units in entry.get("disks", {}).items():
                prices.disks[disk] = reader.figure(units["gb_month"], f"{at}.disks.{disk}.gb_month")
            for tier, value in entry.get("external_ip", {}).items():
                prices.external_ip[tier] = reader.figure(value, f"{at}.external_ip.{tier}")
            if "suspended_memory_gb_month" in entry:
                prices.suspended_memory = reader.figure(
                    entry["suspended_memory_gb_month"], f"{at}.suspended_memory_gb_month"
                )
            self.regions[region] = prices

    def _shape(self, config: ServerConfig) -> tuple[str, Decimal, Decimal] | str:
        """(family, vCPUs, GB of memory) of the machine, or why it cannot be priced."""
        machine_type = config.machine_type
        if not machine_type:
            return "the machine has no machine_type (a custom shape is not priced)"
        known = self.machine_types.get(machine_type)
        if known is not None:
            return (
                known["family"],
                Decimal(str(known["vcpu"])),
                Decimal(str(known["memory_gb"])),
            )
        match = _MACHINE_TYPE.fullmatch(machine_type)
        if match is None or match["family"] not in self.families:
            return f"machine type {machine_type} is not in the price table"
        ratio = self.families[match["family"]].get(match["shape"])
        if ratio is None:
            return f"machine type {machine_type} is not in the price table"
        vcpus = Decimal(match["vcpus"])
        return match["family"], vcpus, vcpus * Decimal(str(ratio))

    def rates(self, config: ServerConfig, *, supports_suspend: bool) -> StateRates:
        rates = self._rates(config, supports_suspend=supports_suspend)
        if not config.spot:
            return rates
        # A spot price of a published snapshot may have risen since (Google changes them up
        # to once every 30 days), never above the on-demand price: spend limits and the budget
        # count the on-demand price for it, so that they stop a server no later than its
        # real spend says. A live (catalog) spot price counts as it is.
        demand = self._rates(replace(config, spot=False), supports_suspend=supports_suspend)
        running = []
        for part, other in zip(rates.running.parts, demand.running.parts, strict=False):
            if (
                not part.live
                and part.name == other.name
                and part.hourly is not None
                and other.hourly is not None
                and other.hourly > part.hourly
            ):
                part = replace(part, limit_hourly=other.hourly)
            running.append(part)
        return replace(rates, running=Rate(tuple(running)))

    def _rates(self, config: ServerConfig, *, supports_suspend: bool) -> StateRates:
        region = config.region or (config.zone.rsplit("-", 1)[0] if config.zone else None)
        if region is None:
            return StateRates.unknown(
                "the configuration names no region", supports_suspend=supports_suspend
            )
        prices = self.regions.get(region)
        if prices is None:
            return StateRates.unknown(
                f"the price table has no prices for region {region}",
                supports_suspend=supports_suspend,
            )
        tier = "spot" if config.spot else "on_demand"
        where = f"{region}, {'spot' if config.spot else 'on demand'}"
        running: list[Part] = []
        whole = prices.machine_types.get(config.machine_type or "")
        memory: Decimal | None = None
        if whole is not None:
            figure = whole.get(
                tier, _missing(f"no {tier.replace('_', '-')} price for {config.machine_type}")
            )
            running.append(figure.part("machine", f"{config.machine_type} in {where}", Decimal(1)))
        elif isinstance(shape := self._shape(config), str):
            running.append(Part("machine", config.machine_type or "custom", None, note=shape))
        else:
            family, vcpus, memory = shape
            figures = prices.machines.get(family, {}).get(tier, {})
            missing = _missing(f"no {family} prices for {where} in the price table")
            vcpu = figures.get("vcpu_hour", missing)
            ram = figures.get("memory_gb_hour", missing)
            running.append(vcpu.part("vCPU", f"{_num(vcpus)} x {family} in {where}", vcpus))
            running.append(ram.part("memory", f"{_num(memory)} GB x {family} in {where}", memory))
        if config.gpu is not None and whole is not None:
            # The machine type's price includes its GPUs: shown, at no extra charge.
            included = Figure(ZERO, note=f"included in the price of {config.machine_type}")
            running.append(
                included.part("GPU", f"{config.gpu.count} x {config.gpu.type}", Decimal(1))
            )
        elif config.gpu is not None:
            count = Decimal(config.gpu.count)
            gpu = prices.gpus.get(config.gpu.type, {}).get(
                tier, _missing(f"no price for GPU {config.gpu.type} in {where}")
            )
            running.append(gpu.part("GPU", f"{config.gpu.count} x {config.gpu.type}", count))
        disk: list[Part] = []
        if config.disk_gb:
            disk_type = config.disk_type or self.default_disk_type or "disk"
            figure = prices.disks.get(
                disk_type, _missing(f"no price for disk type {disk_type} in {region}")
            )
            size = Decimal(config.disk_gb)
            disk.append(
                figure.part("disk", f"{config.disk_gb} GB {disk_type}", size, per_month=True)
            )
        ip = prices.external_ip.get(tier, _missing(f"no external IP price for {where}"))
        running.append(ip.part("external IP", where, Decimal(1)))
        suspended = None
        if supports_suspend:
            kept = prices.suspended_memory or _missing(f"no price for suspended memory in {region}")
            if memory is None:
                kept = _missing("the machine's memory is not known")
            suspended = Rate(
                (
                    *disk,
                    kept.part(
                        "suspended memory",
                        f"{_num(memory)} GB" if memory is not None else "the machine's",
                        memory or ZERO,
                        per_month=True,
                    ),
                )
            )
        return StateRates(Rate((*running, *disk)), Rate(tuple(disk)), suspended)


class RateCard(PriceTable):
    """Flat rates for any cloud: an hourly rate while running or off, per vCPU, per GB of
    memory, per GPU type and per disk GB-month. What a card leaves out is not charged."""

    kind = "rate_card"

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        reader = _Reader(data, where)
        self.cloud = data["cloud"]
        rates = data["rates"]
        self.figures: dict[str, Figure] = {
            key: reader.figure(value, f"rates.{key}")
            for key, value in rates.items()
            if key != "gpu_hour"
        }
        self.gpus: dict[str, Figure] | None = None
        if "gpu_hour" in rates:
            self.gpus = {
                gpu: reader.figure(value, f"rates.gpu_hour.{gpu}")
                for gpu, value in rates["gpu_hour"].items()
            }

    def rates(self, config: ServerConfig, *, supports_suspend: bool) -> StateRates:
        f = self.figures
        one = Decimal(1)
        running: list[Part] = []
        off: list[Part] = []
        if "running_hour" in f:
            running.append(f["running_hour"].part("machine", "while running", one))
        if "off_hour" in f:
            off.append(f["off_hour"].part("machine off", "while off", one))
        if "vcpu_hour" in f and config.cpu:
            running.append(f["vcpu_hour"].part("vCPU", f"{config.cpu}", Decimal(config.cpu)))
        memory = Decimal(str(config.memory_gb)) if config.memory_gb else None
        if "memory_gb_hour" in f and memory:
            running.append(f["memory_gb_hour"].part("memory", f"{_num(memory)} GB", memory))
        if config.gpu is not None and self.gpus is not None:
            gpu = self.gpus.get(
                config.gpu.type, _missing(f"the rate card has no rate for GPU {config.gpu.type}")
            )
            running.append(
                gpu.part(
                    "GPU", f"{config.gpu.count} x {config.gpu.type}", Decimal(config.gpu.count)
                )
            )
        if "disk_gb_month" in f and config.disk_gb:
            off.append(
                f["disk_gb_month"].part(
                    "disk", f"{config.disk_gb} GB", Decimal(config.disk_gb), per_month=True
                )
            )
        suspended = None
        if supports_suspend:
            kept = list(off)
            if "suspended_memory_gb_month" in f and memory:
                kept.append(
                    f["suspended_memory_gb_month"].part(
                        "suspended memory", f"{_num(memory)} GB", memory, per_month=True
                    )
                )
            suspended = Rate(tuple(kept))
        disk = [p for p in off if p.name == "disk"]
        return StateRates(Rate((*running, *disk)), Rate(tuple(off)), suspended)


def _num(value: Decimal) -> str:
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- loading -------------------------------------------------------------------------------


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(TABLES_DIR.joinpath(SCHEMA_NAME).read_text())
    return schema


def _json_path(parts: Iterator[Any] | Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_table(data: Any, where: str) -> PriceTable:
    """A price table from its JSON, or a ``PriceTableError`` naming the entry at fault."""
    import jsonschema  # a dependency of jupyter_server (jupyter_events); imported when used

    validator = jsonschema.Draft202012Validator(_schema())
    # The deepest error names the entry most precisely ("...price" rather than its figure).
    errors = sorted(
        validator.iter_errors(data),
        key=lambda e: (-len(e.absolute_path), [str(p) for p in e.absolute_path]),
    )
    if errors:
        best = jsonschema.exceptions.best_match([errors[0]])
        path = _json_path(best.absolute_path) or "(the table)"
        raise PriceTableError(f"{where}: {path}: {best.message}", field=path)
    if data["kind"] == "regional":
        return RegionalTable(data, where)
    return RateCard(data, where)


#: The largest price table read from a URL, unless configured otherwise.
MAX_TABLE_BYTES = 16 * 1024 * 1024


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def read_location(location: str, timeout: float = 10.0, max_bytes: int = MAX_TABLE_BYTES) -> bytes:
    """The bytes at a path or an http(s) URL (at most ``max_bytes``, within ``timeout``)."""
    if is_url(location):
        return read_url(
            location,
            timeout=timeout,
            max_bytes=max_bytes,
            timeout_setting="price_table_timeout",
            size_setting="price_table_max_bytes",
        )
    return Path(location).expanduser().read_bytes()


def load_table(
    location: str, cloud: str, timeout: float = 10.0, max_bytes: int = MAX_TABLE_BYTES
) -> PriceTable:
    """Read and check the table configured for ``cloud`` at a path or URL."""
    where = f"price table for {cloud} ({location})"
    try:
        raw = read_location(location, timeout, max_bytes)
    except OSError as e:
        raise PriceTableError(f"{where}: cannot be read: {e}", field="price_tables") from e
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PriceTableError(f"{where}: is not valid JSON: {e}", field="(the table)") from e
    table = parse_table(data, where)
    if table.cloud != cloud:
        raise PriceTableError(
            f"{where}: cloud: the table is for {table.cloud!r}, not {cloud!r}", field="cloud"
        )
    return table


def builtin_tables() -> dict[str, PriceTable]:
    """The tables shipped in the package, by cloud (a dict of the caller's own: a price
    refresh replaces one in its book)."""
    return dict(_parsed_builtin_tables())


@cache
def _parsed_builtin_tables() -> dict[str, PriceTable]:
    # Read and checked once per process: checking gcp.json against the schema takes a tenth
    # of a second or more, and the tables are never changed in place (a refresh makes a new
    # one from a deep copy).
    tables: dict[str, PriceTable] = {}
    for entry in TABLES_DIR.iterdir():
        if entry.name.endswith(".json") and entry.name != SCHEMA_NAME:
            table = parse_table(json.loads(entry.read_text()), f"built-in {entry.name}")
            tables[table.cloud] = table
    return tables


class PriceBook:
    """Every cloud's prices, as configured; answers the rates of a configuration."""

    def __init__(
        self,
        builtin: dict[str, PriceTable],
        configured: dict[str, PriceTable],
        errors: dict[str, str] | None = None,
    ) -> None:
        self.builtin = builtin
        self.configured = configured
        #: Configured tables that could not be used, by cloud: its prices are unknown.
        self.errors = dict(errors or {})

    @classmethod
    def load(
        cls,
        locations: Mapping[str, str],
        timeout: float = 10.0,
        max_bytes: int = MAX_TABLE_BYTES,
        *,
        pending: Mapping[str, str] | None = None,
    ) -> PriceBook:
        """The book of the tables at ``locations``; those in ``pending`` (by cloud, the reason)
        are not read and their prices show as unknown for that reason."""
        configured: dict[str, PriceTable] = {}
        errors: dict[str, str] = dict(pending or {})
        for cloud, location in locations.items():
            if cloud in errors:
                continue
            try:
                configured[cloud] = load_table(location, cloud, timeout, max_bytes)
            except PriceTableError as e:
                errors[cloud] = e.message
        return cls(builtin_tables(), configured, errors)

    def table(self, cloud_name: str) -> PriceTable | None:
        return self.configured.get(cloud_name) or self.builtin.get(cloud_name)

    def rates(self, cloud_name: str, cloud: Cloud | None, config: ServerConfig) -> StateRates:
        supports_suspend = bool(cloud and cloud.supports_suspend)
        if cloud_name in self.errors:
            return StateRates.unknown(self.errors[cloud_name], supports_suspend=supports_suspend)
        table = self.configured.get(cloud_name)
        if table is None and cloud is not None:
            own = cloud.price(config)
            if own is not None:
                return own
        table = table or self.builtin.get(cloud_name)
        if table is None:
            return StateRates.unknown(
                f"there is no price table for the {cloud_name} cloud",
                supports_suspend=supports_suspend,
            )
        return table.rates(config, supports_suspend=supports_suspend)
