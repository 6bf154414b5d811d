"""What costs add to the API and what one evaluation of the watcher takes.

    python benchmarks/costs.py [--servers N] [--cycles C] [--repeat R]

Builds a store in a temporary directory with N servers (local cloud, a rate card, a spend
limit and an idle timeout each), each started and stopped C times (2 history entries per
cycle, plus a recorded rate change every 10 cycles), then times, as medians of R runs:

(a) ``GET servers``: ``to_json`` of every server, with and without its ``cost`` (the
    difference is what metering adds), and with every server's ledger built again (as after
    each server changed state);
(b) ``GET costs``: every server's spend and the totals;
(c) one ``evaluate()`` of the watcher (nothing due, so nothing is stopped).

It prints a table and exits 0 (it is a report). The machine is shared and noisy: compare the
figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jupyter_compute_servers.billing.prices import StateRates
from jupyter_compute_servers.config import load_settings
from jupyter_compute_servers.models import ServerConfig, SpendLimit, State
from jupyter_compute_servers.presenter import ServerPresenter
from jupyter_compute_servers.services import build_services

CARD = {
    "cloud": "local",
    "kind": "rate_card",
    "currency": "USD",
    "sources": {"bench": {"url": "benchmarks/costs.py", "as_of": "2030-01-01"}},
    "rates": {
        "running_hour": {"price": 0.36, "source": "bench"},
        "disk_gb_month": {"price": 0.1, "source": "bench"},
    },
}


def median_ms(action: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def populate(services: Any, servers: int, cycles: int) -> None:
    store = services.store
    records = services.costs.records
    clock = [time.time() - cycles * 2 * 3600.0]
    store.clock = lambda: clock[0]
    for n in range(servers):
        record = store.create(
            name=f"bench-{n}",
            color="#1f77b4",
            notes="",
            cloud="local",
            config=ServerConfig(image="python", image_tag="system", cpu=1, disk_gb=10),
            idle_timeout_minutes=30,
            spend_limit=SpendLimit(amount=1000.0, period_days=7),
        )
        records.record_rates(record.id, services.costs.rates_of(record).snapshot(), at=clock[0])
    start = clock[0]
    for n in range(servers):
        clock[0] = start
        for cycle in range(cycles):
            store.transition(n + 1, to=State.RUNNING)
            clock[0] += 3600
            store.transition(n + 1, to=State.OFF)
            clock[0] += 3600
            if cycle % 10 == 9:
                rates = StateRates.flat(0.36 + cycle / 1000, 0.01, source="bench")
                records.record_rates(n + 1, rates.snapshot(), at=clock[0])
    store.clock = time.time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        card = Path(tmp) / "card.json"
        card.write_text(json.dumps(CARD))
        # Kernel specs of the benchmark's servers go with it, not into the user's data dir.
        settings = load_settings({"data_dir": tmp, "kernel_specs_dir": f"{tmp}/kernels"})
        settings.config.ComputeServerCosts.price_tables = {"local": str(card)}
        services = build_services(settings)
        manager, costs, present = services.manager, services.costs, services.presenter.to_json
        populate(services, args.servers, args.cycles)
        entries = len(manager.store.history())
        servers = manager.list_servers()

        class NoCosts:
            def server_json(self, server: object) -> dict[str, object]:
                return {}

        without_costs = ServerPresenter(services.clouds, NoCosts(), services.sync.store)  # type: ignore[arg-type]

        def list_without_costs() -> None:
            [without_costs.to_json(s) for s in manager.list_servers()]

        def cold() -> None:
            costs._ledgers.clear()
            [present(s) for s in manager.list_servers()]

        rows = [
            ("GET servers without costs", median_ms(list_without_costs, args.repeat)),
            ("GET servers, ledgers rebuilt", median_ms(cold, args.repeat)),
            (
                "GET servers with costs",
                median_ms(lambda: [present(s) for s in manager.list_servers()], args.repeat),
            ),
            ("GET costs", median_ms(costs.costs_json, args.repeat)),
            (
                "one evaluate() of the watcher",
                median_ms(lambda: asyncio.run(costs.evaluate()), args.repeat),
            ),
        ]
        print(
            f"{len(servers)} servers, {entries} history entries, "
            f"{len(costs.records.rates_history())} recorded rates; "
            f"medians of {args.repeat}"
        )
        for name, ms in rows:
            print(f"  {name:32} {ms:9.1f} ms")
        services.store.database.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
