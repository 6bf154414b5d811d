"""GCP prices from the Cloud Billing Catalog API (``CloudCatalogClient.list_skus`` on the
Compute Engine service), when google-cloud-billing is installed and credentials allow.

The catalog lists SKUs ("N2 Instance Core running in Americas", "Nvidia Tesla T4 GPU running
in ...", "SSD backed PD Capacity") with their regions, usage type (on demand or preemptible,
i.e. spot) and tiered unit prices. The ones the gcp table uses are recognised by their
descriptions and units; each becomes a figure of the refreshed table with the catalog as its
source and today as its as-of date. Everything else of the built-in table stays as it is
(figures the catalog does not give keep their own source and date). SKUs whose description or
unit is not recognised are ignored, so a change in the catalog's wording leaves the built-in
figures in place rather than guessing.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from .prices import LIVE_SOURCE, PriceTable, PriceTableError, RegionalTable, parse_table

COMPUTE_ENGINE_SERVICE = "services/6F81-5844-456A"
CATALOG_SOURCE = LIVE_SOURCE

_SPOT = r"(?P<spot>(?:Spot )?Preemptible )?"
_REGION_SUFFIX = r" running in .+$"
_MACHINES = {
    "n1": r"N1 Predefined Instance",
    "e2": r"E2 Instance",
    "n2": r"N2 Instance",
    "n2d": r"N2D AMD Instance",
    "c2": r"Compute optimized",
}
_MACHINE_SKU = [
    (family, re.compile(rf"^{_SPOT}{prefix} (?P<what>Core|Ram){_REGION_SUFFIX}"))
    for family, prefix in _MACHINES.items()
]
_GPUS = {
    "Nvidia Tesla T4": "nvidia-tesla-t4",
    "Nvidia Tesla P4": "nvidia-tesla-p4",
    "Nvidia Tesla P100": "nvidia-tesla-p100",
    "Nvidia Tesla V100": "nvidia-tesla-v100",
    "Nvidia Tesla A100": "nvidia-tesla-a100",
    "Nvidia Tesla A100 80GB": "nvidia-a100-80gb",
    "Nvidia L4": "nvidia-l4",
    "Nvidia H100 80GB": "nvidia-h100-80gb",
}
_GPU_SKU = re.compile(rf"^{_SPOT}(?P<gpu>Nvidia .+?) GPU{_REGION_SUFFIX}")
_DISKS = {
    "Storage PD Capacity": "pd-standard",
    "Balanced PD Capacity": "pd-balanced",
    "SSD backed PD Capacity": "pd-ssd",
}
_IPS = {
    "External IP Charge on a Standard VM": "on_demand",
    "External IP Charge on a Spot Preemptible VM": "spot",
}


def unit_price(sku: Any) -> tuple[Decimal, str] | None:
    """(price per usage unit in the last tier, the unit) of a SKU's latest pricing."""
    if not sku.pricing_info:
        return None
    expression = sku.pricing_info[-1].pricing_expression
    if not expression.tiered_rates:
        return None
    # The last tier is the marginal price once any free allowance is used up.
    money = expression.tiered_rates[-1].unit_price
    if money.currency_code and money.currency_code != "USD":
        return None
    price = Decimal(int(money.units or 0)) + Decimal(int(money.nanos or 0)) / Decimal(10**9)
    return price, expression.usage_unit


def figures_from_skus(skus: Iterable[Any]) -> list[tuple[str, tuple[str, ...], Decimal]]:
    """(region, path in the region's entry, price) for each SKU the gcp table uses."""
    found: list[tuple[str, tuple[str, ...], Decimal]] = []
    for sku in skus:
        description = sku.description.strip()
        usage = sku.category.usage_type
        if usage not in ("OnDemand", "Preemptible"):
            continue  # commitments, sole tenancy...
        priced = unit_price(sku)
        if priced is None:
            continue
        price, unit = priced
        path: tuple[str, ...] | None = None
        for family, pattern in _MACHINE_SKU:
            match = pattern.match(description)
            if match:
                core = match["what"] == "Core"
                if unit == ("h" if core else "GiBy.h"):
                    tier = "spot" if match["spot"] or usage == "Preemptible" else "on_demand"
                    path = ("machines", family, tier, "vcpu_hour" if core else "memory_gb_hour")
                break
        if path is None and (match := _GPU_SKU.match(description)) and unit == "h":
            gpu = _GPUS.get(match["gpu"])
            if gpu is not None:
                tier = "spot" if match["spot"] or usage == "Preemptible" else "on_demand"
                path = ("gpus", gpu, tier)
        if path is None and description in _DISKS and unit == "GiBy.mo":
            path = ("disks", _DISKS[description], "gb_month")
        if path is None and description in _IPS and unit == "h":
            path = ("external_ip", _IPS[description])
        if path is None:
            continue
        found.extend((region, path, price) for region in sku.service_regions)
    return found


def table_data_from_skus(
    skus: Iterable[Any], base: dict[str, Any], today: str
) -> tuple[dict[str, Any], int]:
    """The gcp table's JSON with the catalog's figures in place, and how many there were."""
    data = copy.deepcopy(base)
    data["sources"][CATALOG_SOURCE] = {
        "url": f"Cloud Billing Catalog API, {COMPUTE_ENGINE_SERVICE} (list_skus)",
        "as_of": today,
    }
    figures = figures_from_skus(skus)
    count = 0

    def put(region: str, path: tuple[str, ...], price: Decimal, *, override: bool) -> None:
        nonlocal count
        entry = data["regions"].setdefault(region, {})
        *parents, leaf = path
        for key in parents:
            entry = entry.setdefault(key, {})
        if override or entry.get(leaf, {}).get("source") != CATALOG_SOURCE:
            entry[leaf] = {"price": float(price), "source": CATALOG_SOURCE}
            count += 1

    for region, path, price in figures:
        if region != "global":
            put(region, path, price, override=True)
    # A SKU of every region ("global", the external IP) applies to each, unless the catalog
    # gave that region its own.
    for region, path, price in figures:
        if region == "global":
            for name in list(data["regions"]):
                put(name, path, price, override=False)
    return data, count


def refresh_gcp_table(
    base: PriceTable | None, *, client: Any = None, today: str | None = None
) -> tuple[PriceTable | None, str]:
    """The gcp table refreshed from the catalog, or (None, why not)."""
    if not isinstance(base, RegionalTable):
        return None, "there is no built-in gcp table to refresh"
    try:
        billing_v1 = importlib.import_module("google.cloud.billing_v1")
    except ImportError:
        return None, "google-cloud-billing is not installed (pip install google-cloud-billing)"
    try:
        import google.auth.exceptions

        client = client or billing_v1.CloudCatalogClient()
    except google.auth.exceptions.DefaultCredentialsError as e:
        return None, f"no Google credentials: {e}"
    try:
        request = billing_v1.ListSkusRequest(parent=COMPUTE_ENGINE_SERVICE, currency_code="USD")
        skus = list(client.list_skus(request=request))
    except Exception as e:  # GoogleAPICallError, a transport error: keep the built-in table
        return None, f"the Cloud Billing Catalog could not be read: {e}"
    today = today or dt.date.today().isoformat()
    data, count = table_data_from_skus(skus, base.data, today)
    if not count:
        return None, f"none of the {len(skus)} SKUs read gives a price the gcp table uses"
    try:
        table = parse_table(data, "gcp prices from the Cloud Billing Catalog")
    except PriceTableError as e:
        return None, e.message
    return table, f"{count} prices from {len(skus)} SKUs, as of {today}"
