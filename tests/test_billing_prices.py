"""Price tables: the shipped GCP table, rate cards, tables replaced by configuration (a path or
a URL) and checked on load, the Cloud.price hook, and the Cloud Billing Catalog refresh
against a stand-in of its REST API."""

from __future__ import annotations

import copy
import json
import sys
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.billing import catalog
from jupyter_compute_servers.billing.prices import (
    HOURS_PER_MONTH,
    PriceBook,
    PriceTableError,
    StateRates,
    builtin_tables,
    load_table,
    parse_table,
)
from jupyter_compute_servers.clouds.local import LocalCloud
from jupyter_compute_servers.models import GpuSpec, ServerConfig

GCP = json.loads(
    (
        Path(__file__).parents[1] / "jupyter_compute_servers/billing/price_tables/gcp.json"
    ).read_text()
)


def gcp_rates(**config: Any) -> StateRates:
    return PriceBook(builtin_tables(), {}).rates("gcp", None, ServerConfig(**config))


def parts(rate: Any) -> dict[str, Decimal | None]:
    return {part.name: part.hourly for part in rate.parts}


def test_the_gcp_table_prices_a_gpu_machine_part_by_part():
    rates = gcp_rates(
        machine_type="n1-standard-4",
        gpu=GpuSpec("nvidia-tesla-t4", 1),
        disk_gb=100,
        disk_type="pd-ssd",
        region="us-central1",
    )
    disk = Decimal("0.17") * 100 / HOURS_PER_MONTH
    assert parts(rates.running) == {
        "vCPU": Decimal("0.031611") * 4,
        "memory": Decimal("0.004237") * 15,  # n1-standard: 3.75 GB per vCPU
        "GPU": Decimal("0.35"),
        "external IP": Decimal("0.005"),
        "disk": disk,
    }
    assert (
        rates.running.hourly == Decimal("0.126444") + Decimal("0.063555") + Decimal("0.355") + disk
    )
    assert rates.off.hourly == disk and rates.off.unknown == []
    assert rates.for_state("deprovisioned").hourly == 0
    # Each figure says where it comes from and when.
    vcpu = rates.running.parts[0]
    source = GCP["sources"]["general-purpose"]
    assert (vcpu.source, vcpu.as_of) == (source["url"], source["as_of"])
    assert "pricing.yml" in vcpu.source and vcpu.as_of == "2026-07-30"


def test_shared_core_machines_zones_and_default_disks():
    rates = gcp_rates(machine_type="e2-medium", disk_gb=10, zone="us-east1-b")
    disk = Decimal("0.10") * 10 / HOURS_PER_MONTH  # pd-balanced by default
    assert (
        rates.running.hourly
        == Decimal("0.02181159") + Decimal("0.00292353") * 4 + Decimal("0.005") + disk
    )
    assert rates.running.unknown == []


def test_unknown_prices_are_named_never_guessed():
    spot = gcp_rates(machine_type="c2-standard-8", disk_gb=50, region="us-central1", spot=True)
    assert spot.running.unknown == [
        "vCPU (8 x c2 in us-central1, spot)",
        "memory (32 GB x c2 in us-central1, spot)",
    ]
    # What is known still counts: the spot external IP and the disk.
    assert spot.running.hourly == Decimal("0.0025") + Decimal("0.10") * 50 / HOURS_PER_MONTH
    note = spot.running.parts[0].note
    assert "Spot prices change" in note
    l4 = gcp_rates(machine_type="n1-standard-4", gpu=GpuSpec("nvidia-l4", 2), region="us-central1")
    assert l4.running.unknown == ["GPU (2 x nvidia-l4)"]
    nowhere = gcp_rates(machine_type="n1-standard-4", region="mars-north1")
    assert nowhere.running.unknown == ["price"] and "mars-north1" in nowhere.running.parts[0].note
    custom = gcp_rates(cpu=6, memory_gb=20, region="us-central1")
    assert custom.running.unknown == ["machine (custom)"]
    odd = gcp_rates(machine_type="z9-standard-4", region="us-central1")
    assert "not in the price table" in odd.running.parts[0].note


def write(tmp_path: Path, data: Any, name: str = "table.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


RATE_CARD = {
    "cloud": "local",
    "kind": "rate_card",
    "currency": "USD",
    "sources": {"chargeback": {"url": "https://intranet/chargeback", "as_of": "2025-01-01"}},
    "rates": {
        "running_hour": {"price": 0.38, "source": "chargeback"},
        "disk_gb_month": {"price": 0.1, "source": "chargeback"},
        "gpu_hour": {"A100": {"price": 1.5, "source": "chargeback"}},
    },
}


def test_a_configured_rate_card_replaces_the_clouds_own_prices(tmp_path):
    cloud = LocalCloud(hourly_rate=9.0)
    config = ServerConfig(cpu=2, memory_gb=4, disk_gb=10)
    assert PriceBook.load({}).rates("local", cloud, config).running.hourly == 9  # the hook
    book = PriceBook.load({"local": write(tmp_path, RATE_CARD)})
    rates = book.rates("local", cloud, config)
    disk = Decimal("0.1") * 10 / HOURS_PER_MONTH
    assert rates.running.hourly == Decimal("0.38") + disk
    assert rates.off.hourly == disk
    assert rates.running.parts[0].source == "https://intranet/chargeback"
    gpu = book.rates("local", cloud, ServerConfig(gpu=GpuSpec("T4", 1)))
    assert gpu.running.unknown == ["GPU (1 x T4)"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda t: t["rates"]["running_hour"].update(price=-1), "rates.running_hour.price"),
        (
            lambda t: t["rates"]["running_hour"].update(source="nowhere"),
            "rates.running_hour.source",
        ),
        (lambda t: t["rates"]["running_hour"].pop("source"), "rates.running_hour"),
        (lambda t: t["rates"].update(disk_gb_month={"price": "unknown"}), "rates.disk_gb_month"),
        (
            lambda t: t["rates"].update(gpu_hour={"A100": {"price": "free"}}),
            "rates.gpu_hour.A100.price",
        ),
        (lambda t: t.update(currency="EUR"), "currency"),
        (lambda t: t.update(kind="flat"), "kind"),
        (lambda t: t.update(bogus=1), "(the table)"),
        (
            lambda t: t["sources"]["chargeback"].update(as_of="last year"),
            "sources.chargeback.as_of",
        ),
        (lambda t: t.update(cloud="gcp"), "cloud"),
    ],
)
def test_a_table_is_checked_on_load_naming_the_entry_at_fault(tmp_path, change, field):
    table = copy.deepcopy(RATE_CARD)
    change(table)
    with pytest.raises(PriceTableError) as raised:
        load_table(write(tmp_path, table), "local")
    assert raised.value.field == field, raised.value.message
    assert "price table for local" in raised.value.message


def test_regional_tables_are_checked_too():
    table = copy.deepcopy(GCP)
    table["regions"]["us-central1"]["gpus"]["nvidia-tesla-t4"]["on_demand"]["price"] = -0.35
    with pytest.raises(PriceTableError) as raised:
        parse_table(table, "gcp.json")
    assert raised.value.field == "regions.us-central1.gpus.nvidia-tesla-t4.on_demand.price"
    table = copy.deepcopy(GCP)
    table["regions"]["us-central1"]["machines"]["z9"] = {}
    with pytest.raises(PriceTableError) as raised:
        parse_table(table, "gcp.json")
    assert raised.value.field == "regions.us-central1.machines.z9"


def test_a_table_that_cannot_be_used_makes_its_clouds_prices_unknown(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    book = PriceBook.load(
        {"gcp": str(tmp_path / "bad.json"), "local": str(tmp_path / "missing.json")}
    )
    rates = book.rates(
        "gcp", None, ServerConfig(machine_type="n1-standard-4", region="us-central1")
    )
    assert rates.running.unknown == ["price"]
    assert "is not valid JSON" in rates.running.parts[0].note
    local = book.rates("local", LocalCloud(), ServerConfig())
    assert "cannot be read" in local.running.parts[0].note and local.off.unknown


class _Files(BaseHTTPRequestHandler):
    pages: dict[str, tuple[int, bytes]] = {}
    requests: list[str] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        path, _, query = self.path.partition("?")
        # The most specific page first: a path with its query's key=value pairs.
        candidates = [
            (k, v)
            for k, v in self.pages.items()
            if path.startswith(k.partition("?")[0])
            and all(pair in query.split("&") for pair in k.partition("?")[2].split("&") if pair)
        ]
        candidates.sort(key=lambda kv: -len(kv[0]))
        status, body = candidates[0][1] if candidates else (404, b"{}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.pages, _Files.requests = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Files
    server.shutdown()
    server.server_close()


def test_a_table_can_be_read_from_a_url(web):
    url, files = web
    files.pages["/prices/local.json"] = (200, json.dumps(RATE_CARD).encode())
    book = PriceBook.load({"local": f"{url}/prices/local.json", "gcp": f"{url}/gone.json"})
    assert book.rates("local", None, ServerConfig()).running.hourly == Decimal("0.38")
    assert "HTTP Error 404" in book.errors["gcp"]


# --- the Cloud Billing Catalog ------------------------------------------------------------


def sku(description: str, regions: list[str], unit: str, price: str, usage: str = "OnDemand"):
    units, _, fraction = price.partition(".")
    nanos = int((fraction + "000000000")[:9])
    return {
        "name": f"services/6F81-5844-456A/skus/{abs(hash(description)) % 10**8}",
        "skuId": "X",
        "description": description,
        "category": {
            "serviceDisplayName": "Compute Engine",
            "resourceFamily": "Compute",
            "resourceGroup": "Stand-in",
            "usageType": usage,
        },
        "serviceRegions": regions,
        "pricingInfo": [
            {
                "pricingExpression": {
                    "usageUnit": unit,
                    "tieredRates": [
                        {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": "0"}},
                        {
                            "startUsageAmount": 1,
                            "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos},
                        },
                    ],
                }
            }
        ],
        "serviceProviderName": "Google",
    }


CATALOG_PAGES = [
    [
        sku("N1 Predefined Instance Core running in Americas", ["us-central1"], "h", "0.0400"),
        sku("N1 Predefined Instance Ram running in Americas", ["us-central1"], "GiBy.h", "0.0050"),
        sku(
            "Spot Preemptible N1 Predefined Instance Core running in Americas",
            ["us-central1", "us-south1"],
            "h",
            "0.0070",
            "Preemptible",
        ),
        sku(
            "Commitment v1: N1 Core in Americas for 1 Year",
            ["us-central1"],
            "h",
            "0.02",
            "Commit1Yr",
        ),
    ],
    [
        sku(
            "Spot Preemptible N1 Predefined Instance Ram running in Americas",
            ["us-central1"],
            "GiBy.h",
            "0.0009",
            "Preemptible",
        ),
        sku("Nvidia L4 GPU running in Americas", ["us-central1"], "h", "0.56"),
        sku("SSD backed PD Capacity", ["us-central1"], "GiBy.mo", "0.18"),
        sku("External IP Charge on a Standard VM", ["global"], "h", "0.005"),
        sku("A description nobody recognises", ["us-central1"], "h", "99"),
    ],
]


def test_prices_are_refreshed_from_the_catalog_at_the_wire(web):
    """The real google-cloud-billing client, over REST, against a stand-in of the API."""
    pytest.importorskip("google.cloud.billing_v1")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import billing_v1

    url, files = web
    path = "/v1/services/6F81-5844-456A/skus"
    files.pages[f"{path}?pageToken=2"] = (
        200,
        json.dumps({"skus": CATALOG_PAGES[1]}).encode(),
    )
    files.pages[path] = (
        200,
        json.dumps({"skus": CATALOG_PAGES[0], "nextPageToken": "2"}).encode(),
    )
    client = billing_v1.CloudCatalogClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options={"api_endpoint": url},
    )
    base = builtin_tables()["gcp"]
    table, why = catalog.refresh_gcp_table(base, client=client, today="2030-01-02")
    assert table is not None, why
    # 7 regional figures (one SKU in two regions), and the global IP in each of the table's 10
    # regions and the catalog's us-south1.
    assert why == "18 prices from 9 SKUs, as of 2030-01-02"
    assert len(files.requests) == 2 and "currencyCode=USD" in files.requests[0]
    book = PriceBook({"gcp": table}, {})
    config = ServerConfig(
        machine_type="n1-standard-2",
        gpu=GpuSpec("nvidia-l4", 1),
        disk_gb=10,
        disk_type="pd-ssd",
        region="us-central1",
    )
    running = book.rates("gcp", None, config).running
    assert parts(running) == {
        "vCPU": Decimal("0.04") * 2,
        "memory": Decimal("0.005") * Decimal("7.5"),
        "GPU": Decimal("0.56"),
        "external IP": Decimal("0.005"),  # a "global" SKU: every region's
        "disk": Decimal("0.18") * 10 / HOURS_PER_MONTH,
    }
    assert running.parts[0].as_of == "2030-01-02" and "Catalog" in running.parts[0].source
    assert running.parts[3].as_of == "2030-01-02"
    assert book.rates("gcp", None, config).off.parts[0].as_of == "2030-01-02"
    # What the catalog did not give keeps the built-in figure, source and date.
    t4 = book.rates(
        "gcp", None, ServerConfig(gpu=GpuSpec("nvidia-tesla-t4", 1), region="us-central1")
    )
    built_in = GCP["sources"]["n1-gpus"]
    assert [(p.hourly, p.source, p.as_of) for p in t4.running.parts if p.name == "GPU"] == [
        (Decimal("0.35"), built_in["url"], built_in["as_of"])
    ]
    spot = book.rates(
        "gcp", None, ServerConfig(machine_type="n1-standard-2", region="us-central1", spot=True)
    )
    assert parts(spot.running)["vCPU"] == Decimal("0.014") and not spot.running.unknown
    # A region only the catalog knows gets what the catalog gives, and unknown for the rest.
    south = book.rates(
        "gcp", None, ServerConfig(machine_type="n1-standard-2", region="us-south1", spot=True)
    )
    assert south.running.unknown == [
        "memory (7.5 GB x n1 in us-south1, spot)",
        "external IP (us-south1, spot)",  # the catalog gave the on-demand IP only
    ]


def test_a_refreshed_table_in_one_book_leaves_the_built_in_tables_of_others():
    # The built-in tables are read once per process; a refresh replaces one in its own book.
    refreshed = parse_table(copy.deepcopy(GCP), "a refreshed table")
    PriceBook.load({}).builtin["gcp"] = refreshed
    assert PriceBook.load({}).builtin["gcp"] is not refreshed
    assert builtin_tables()["gcp"] is not refreshed


def test_the_catalog_refresh_says_why_it_cannot_run(monkeypatch, web):
    base = builtin_tables()["gcp"]
    # No credentials anywhere (and no metadata server to ask): the built-in table stays.
    for variable in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("HOME", "/nonexistent")
    pytest.importorskip("google.cloud.billing_v1")
    table, why = catalog.refresh_gcp_table(base)
    assert table is None and why.startswith("no Google credentials")
    # The API answers an error: the built-in table stays.
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import billing_v1

    url, files = web
    files.pages["/v1/"] = (403, b'{"error": {"code": 403, "message": "denied"}}')
    client = billing_v1.CloudCatalogClient(
        credentials=AnonymousCredentials(), transport="rest", client_options={"api_endpoint": url}
    )
    table, why = catalog.refresh_gcp_table(base, client=client)
    assert table is None and why.startswith("the Cloud Billing Catalog could not be read")
    # google-cloud-billing not installed.
    monkeypatch.setitem(sys.modules, "google.cloud.billing_v1", None)
    table, why = catalog.refresh_gcp_table(base)
    assert table is None and "google-cloud-billing is not installed" in why


# --- accelerator-optimized machine types, and what the gcp cloud offers ----------------------


def _whole(region: str, machine_type: str) -> Decimal:
    """The table's own on-demand figure for a machine type priced as a whole."""
    figure = GCP["regions"][region]["machine_types"][machine_type]["on_demand"]
    return Decimal(str(figure["price"]))


def test_a_g2_machine_with_its_l4_is_priced_as_the_table_gives_it():
    from jupyter_compute_servers.billing.estimate import estimate_json

    config = ServerConfig(
        machine_type="g2-standard-4",
        gpu=GpuSpec("nvidia-l4", 1),
        disk_gb=50,
        disk_type="pd-balanced",
        region="us-central1",
    )
    rates = gcp_rates(**config.__dict__)
    region = GCP["regions"]["us-central1"]
    disk = Decimal(str(region["disks"]["pd-balanced"]["gb_month"]["price"])) * 50 / HOURS_PER_MONTH
    ip = Decimal(str(region["external_ip"]["on_demand"]["price"]))
    machine = _whole("us-central1", "g2-standard-4")
    assert parts(rates.running) == {"machine": machine, "GPU": 0, "external IP": ip, "disk": disk}
    assert rates.running.unknown == [] and rates.running.hourly == machine + ip + disk
    gpu = next(p for p in rates.running.parts if p.name == "GPU")
    assert gpu.note == "included in the price of g2-standard-4"
    source = GCP["sources"]["accelerator-optimized"]
    whole = rates.running.parts[0]
    assert (whole.source, whole.as_of) == (source["url"], source["as_of"])
    answer = estimate_json("gcp", config, rates, 24)
    assert answer["projection"]["unknown"] == []
    assert Decimal(str(answer["rates"]["running"]["hourly"])) == (machine + ip + disk).quantize(
        Decimal("0.000001")
    )


def test_accelerator_optimized_prices_stay_unknown_where_none_is_published():
    # A size whose price is not in the table: unknown, never derived from another size.
    data = copy.deepcopy(GCP)
    del data["regions"]["us-central1"]["machine_types"]["g2-standard-8"]
    book = PriceBook({"gcp": parse_table(data, "test")}, {})
    config = ServerConfig(
        machine_type="g2-standard-8", gpu=GpuSpec("nvidia-l4", 1), region="us-central1"
    )
    assert book.rates("gcp", None, config).running.unknown == [
        "machine (g2-standard-8)",
        "GPU (1 x nvidia-l4)",
    ]
    # Every region the cloud offers has the whole price, its disk and its IP.
    taiwan = gcp_rates(
        machine_type="g2-standard-8", gpu=GpuSpec("nvidia-l4", 1), disk_gb=10, region="asia-east1"
    )
    assert taiwan.running.unknown == []
    assert parts(taiwan.running)["machine"] == _whole("asia-east1", "g2-standard-8")


def test_spot_prices_are_shipped_with_their_date():
    spot = gcp_rates(
        machine_type="a3-highgpu-1g",
        gpu=GpuSpec("nvidia-h100-80gb", 1),
        region="us-central1",
        spot=True,
    )
    figure = GCP["regions"]["us-central1"]["machine_types"]["a3-highgpu-1g"]["spot"]
    machine = spot.running.parts[0]
    assert spot.running.unknown == []
    assert machine.hourly == Decimal(str(figure["price"])) < _whole("us-central1", "a3-highgpu-1g")
    source = GCP["sources"]["spot"]
    assert (machine.source, machine.as_of) == (source["url"], source["as_of"])
    assert machine.note == f"spot price of {source['as_of']}; may have changed"
    # General-purpose families too, per vCPU and GB.
    n2 = gcp_rates(machine_type="n2-standard-8", region="asia-east1", spot=True)
    units = GCP["regions"]["asia-east1"]["machines"]["n2"]["spot"]
    assert parts(n2.running)["vCPU"] == Decimal(str(units["vcpu_hour"]["price"])) * 8
    assert parts(n2.running)["memory"] == Decimal(str(units["memory_gb_hour"]["price"])) * 32
    assert "may have changed" in n2.running.parts[0].note
    # The spot IP of a region the shipped source does not give stays unknown.
    assert n2.running.unknown == ["external IP (asia-east1, spot)"]


_ALL = (
    "us-central1",
    "us-east1",
    "us-east4",
    "us-west1",
    "us-west4",
    "europe-west1",
    "europe-west4",
    "asia-east1",
    "asia-northeast1",
    "asia-southeast1",
)
#: What the create dialog offers for gcp (clouds/gcp/catalog.py) and the table does not price,
#: per region, with why: nothing. A catalog change that adds a machine type, GPU or region
#: fails test_every_offered_configuration_is_priced_or_listed until it is priced or listed here.
NO_PUBLISHED_PRICE: dict[str, dict[str, str]] = {}
#: The regions without a GPU that attaches to N1: Google offers none there (no row in SkyPilot's
#: catalog; not in Cyclenerd's tools/acceleratortyperegion.csv). The dialog does not offer it
#: there and the table says so; every other region has its price.
NOT_OFFERED: dict[str, tuple[str, ...]] = {
    "nvidia-tesla-t4": (),
    "nvidia-tesla-v100": (
        "us-east4",
        "us-west4",
        "europe-west1",
        "asia-northeast1",
        "asia-southeast1",
    ),
    "nvidia-tesla-p100": ("us-east4", "us-west4", "asia-northeast1", "asia-southeast1"),
    "nvidia-tesla-p4": (
        "us-east1",
        "us-west1",
        "us-west4",
        "europe-west1",
        "asia-east1",
        "asia-northeast1",
    ),
}


def _dialog_regions(gpu_type: str | None = None) -> list[str]:
    """The regions the create dialog offers (for a GPU: those with a zone that has it, as the
    gcp cloud's offerings give them before the live list is read; every region where that is
    not known)."""
    from jupyter_compute_servers.clouds.gcp import catalog as gcp

    zones = gcp.BUILTIN_GPU_ZONES.get(gpu_type or "")
    return [
        region
        for region, region_zones in gcp.REGIONS.items()
        if zones is None or set(region_zones) & set(zones)
    ]


def _offered() -> list[tuple[str, dict[str, Any], tuple[str, ...], list[str]]]:
    """(item, configuration, parts that must be known, regions) for each thing the dialog
    offers."""
    from jupyter_compute_servers.clouds.gcp import catalog as gcp

    offered: list[tuple[str, dict[str, Any], tuple[str, ...], list[str]]] = []
    general = [m for m in gcp.machine_types() if m["gpu"] is None]
    for family in dict.fromkeys(m["family"] for m in general):
        name = next(m["name"] for m in general if m["family"] == family)
        offered.append((family, {"machine_type": name}, ("vCPU", "memory"), _dialog_regions()))
    for m in gcp.machine_types():
        if m["gpu"] is not None:
            gpu = GpuSpec(m["gpu"]["type"], m["gpu"]["count"])
            config = {"machine_type": m["name"], "gpu": gpu}
            offered.append((m["name"], config, ("machine", "GPU"), _dialog_regions(gpu.type)))
    for model in gcp.GPUS.values():
        if model.attachable:
            config = {"machine_type": "n1-standard-4", "gpu": GpuSpec(model.type, 1)}
            offered.append((model.type, config, ("GPU",), _dialog_regions(model.type)))
    return offered


def test_every_offered_configuration_is_priced_or_listed():
    from jupyter_compute_servers.clouds.gcp import catalog as gcp

    assert tuple(gcp.REGIONS) == _ALL
    listed = {item: list(regions) for item, regions in NO_PUBLISHED_PRICE.items()}
    # On demand and spot alike: a spot price is shipped with its date for everything offered.
    for spot in (False, True):
        unpriced: dict[str, list[str]] = {}
        for item, config, needed, regions in _offered():
            for region in regions:
                running = gcp_rates(region=region, spot=spot, **config).running
                known = [p for p in running.parts if p.name in needed and p.hourly is not None]
                if len(known) < len(needed):
                    unpriced.setdefault(item, []).append(region)
                for part in known if spot else ():
                    if part.note.startswith("included in the price of"):
                        continue  # a g2/a2/a3 machine's GPUs: its spot price has the date
                    assert "may have changed" in part.note and part.as_of, (item, region, part)
        assert unpriced == listed, "spot" if spot else "on demand"


def test_a_gpu_google_does_not_offer_in_a_region_is_neither_offered_nor_priced_there():
    from jupyter_compute_servers.clouds.gcp import catalog as gcp

    assert set(NOT_OFFERED) == {m.type for m in gcp.GPUS.values() if m.attachable}
    for gpu, absent in NOT_OFFERED.items():
        # The dialog offers it exactly where Google does...
        assert _dialog_regions(gpu) == [r for r in _ALL if r not in absent], gpu
        # ... and the table prices it there and nowhere else, saying why.
        for region in _ALL:
            figures = GCP["regions"][region]["gpus"][gpu]
            for tier in ("on_demand", "spot"):
                if region in absent:
                    assert figures[tier]["price"] == "unknown"
                    assert f"{gpu} is not offered in {region}" in figures[tier]["note"]
                    assert "SkyPilot" in figures[tier]["note"]
                else:
                    assert figures[tier]["source"] == "n1-gpus", (gpu, region, tier)
        if absent:
            rates = gcp_rates(
                machine_type="n1-standard-4", gpu=GpuSpec(gpu, 1), region=absent[0]
            ).running
            assert rates.unknown == [f"GPU (1 x {gpu})"]
            assert "is not offered in" in rates.parts[2].note


def test_gpus_attached_to_n1_are_priced_per_gpu_in_every_region_that_offers_them():
    from jupyter_compute_servers.clouds.gcp import catalog as gcp

    source = GCP["sources"]["n1-gpus"]
    assert "skypilot-catalog/blob/" in source["url"] and source["url"].endswith("vms.csv")
    assert "Cloud Billing Catalog" in source["note"] and "sustained-use" in source["note"]
    for model in (m for m in gcp.GPUS.values() if m.attachable):
        for region in gcp.REGIONS:
            if region in NOT_OFFERED[model.type]:
                continue
            figures = GCP["regions"][region]["gpus"][model.type]
            demand = Decimal(str(figures["on_demand"]["price"]))
            spot = Decimal(str(figures["spot"]["price"]))
            count = model.counts()[-1]
            config = {"machine_type": "n1-standard-4", "gpu": GpuSpec(model.type, count)}
            running = gcp_rates(region=region, **config).running
            gpu = next(p for p in running.parts if p.name == "GPU")
            # Priced per GPU, from the source named, with its date.
            assert gpu.hourly == demand * count and 0 < spot < demand
            assert (gpu.source, gpu.as_of) == (source["url"], source["as_of"])
            # Spot: "about $X/h (spot price ...; may have changed)"; limits count on demand.
            spot_gpu = next(
                p
                for p in gcp_rates(region=region, spot=True, **config).running.parts
                if p.name == "GPU"
            )
            assert spot_gpu.hourly == spot * count and spot_gpu.limit_hourly == demand * count
            assert spot_gpu.note.endswith("; may have changed") and source["as_of"] in spot_gpu.note
    # Where the older figures (source "gpu") overlapped, the new source gives the same price.
    assert GCP["regions"]["us-central1"]["gpus"]["nvidia-tesla-v100"]["on_demand"] == {
        "price": 2.48,
        "source": "n1-gpus",
    }
    assert (
        parts(
            gcp_rates(
                machine_type="n1-standard-8",
                gpu=GpuSpec("nvidia-tesla-t4", 2),
                region="asia-northeast1",
                spot=True,
            ).running
        )["GPU"]
        == Decimal("0.1342") * 2
    )


def test_each_price_in_the_gcp_table_names_a_source_and_a_date():
    def figures(node: Any) -> Any:
        if isinstance(node, dict):
            if "price" in node:
                yield node
            else:
                for value in node.values():
                    yield from figures(value)

    for figure in figures(GCP["regions"]):
        if figure["price"] == "unknown":
            assert figure["note"]
        else:
            source = GCP["sources"][figure["source"]]
            assert source["url"] and source["as_of"]
