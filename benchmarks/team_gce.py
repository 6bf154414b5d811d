"""What team mode's Compute Engine proxy (the control plane, ``control_plane/gce.py``) costs
against calling Compute Engine directly with the service account.

    python benchmarks/team_gce.py [--repeat R]

In one run: the fake Compute Engine (tests/fake_gce.py), a real JupyterHub (tests/hub.py) with
the control plane as its service, holding the fake's service account key. The same calls are
made with the real ``google.cloud.compute_v1`` client, interleaved, (a) directly to the fake
with the service account's credentials, as a standalone server does, and (b) through the
control plane with a Hub token, as a user's server in team mode does: ``instances.get`` of a
VM (the proxy's ownership check is the GET itself), ``zones.list`` (a catalogue read: no
check), and ``instances.stop`` followed by ``start``, each waited for (a per-resource call:
one more GET first, and the operation's wait checked against the remembered ones). Medians of
R, with the ratios (b)/(a). The Hub's token check is cached by the control plane (HubAuth, 5
minutes), so it is paid once. Exits 0 (a report); the machine is shared and noisy: compare the
figures of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_compute_servers.clouds.gcp import proxy  # noqa: E402
from jupyter_compute_servers.clouds.gcp.api import _Clients, _load_credentials_file  # noqa: E402
from jupyter_compute_servers.control_plane_client import ControlPlaneClient  # noqa: E402
from tests.fake_gce import FakeGCE  # noqa: E402
from tests.hub import Hub  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

SERVICE = "compute-control"
ZONE = "us-central1-a"
PROJECT = "test-project"


def wait(clients: _Clients, operation: Any) -> None:
    """As the gcp cloud waits (zoneOperations.wait on the same endpoint)."""
    while operation.status != operation.Status.DONE:
        operation = clients.operations.wait(project=PROJECT, zone=ZONE, operation=operation.name)


def stop_start(clients: _Clients, name: str) -> None:
    for method in (clients.instances.stop_unary, clients.instances.start_unary):
        wait(clients, method(project=PROJECT, zone=ZONE, instance=name))


def run(repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-team-gce-"))
    fake = FakeGCE(work / "gce").start()
    fake.run_startup_script = False
    key = fake.service_account_file(work / "key.json")
    os.chmod(key, 0o600)
    # (no user server is started; the tests' Hub gives its control plane a database)
    postgres = PostgresServer()
    hub = Hub(
        postgres.create_database(),
        control_plane=("--gce-credentials-file", str(key), "--gce-endpoint", fake.url),
    )
    try:
        url = f"http://127.0.0.1:{hub.control_plane_port}/services/{SERVICE}/"
        hub._wait(lambda: _answers(url + "api/gce"), "the control plane")
        access = ControlPlaneClient(url, hub.service_token("alice"))
        import google.auth.transport.requests
        import google.oauth2.credentials
        from google.cloud import compute_v1

        # The service account's access token, as the control plane gets and sends it (the
        # key's self-signed JWTs would cost the fake an RSA check per call, skewing (a)).
        service_account, _ = _load_credentials_file(str(key))
        service_account.refresh(google.auth.transport.requests.Request())
        credentials = google.oauth2.credentials.Credentials(service_account.token)
        direct = _Clients(credentials, fake.url)
        proxied = _Clients(proxy.HubTokenCredentials(access.token), proxy.endpoint(access))
        names = {}
        for label, clients in (("direct", direct), ("proxied", proxied)):
            name = f"bench-{label}"
            names[label] = name
            instance = compute_v1.Instance(
                name=name,
                machine_type=f"zones/{ZONE}/machineTypes/e2-small",
                disks=[
                    compute_v1.AttachedDisk(
                        boot=True,
                        initialize_params=compute_v1.AttachedDiskInitializeParams(
                            disk_size_gb=10,
                            disk_type=f"zones/{ZONE}/diskTypes/pd-balanced",
                            source_image="projects/debian-cloud/global/images/family/debian-12",
                        ),
                    )
                ],
                metadata=compute_v1.Metadata(
                    items=[compute_v1.Items(key="enable-guest-attributes", value="TRUE")]
                ),
            )
            wait(
                clients,
                clients.instances.insert_unary(
                    project=PROJECT, zone=ZONE, instance_resource=instance
                ),
            )
        results: dict[str, dict[str, list[float]]] = {}
        calls: dict[str, Callable[[_Clients, str], object]] = {
            "instances.get": lambda c, n: c.instances.get(project=PROJECT, zone=ZONE, instance=n),
            "zones.list": lambda c, n: list(c.zones.list(project=PROJECT)),
            "stop + start, waited": stop_start,
        }
        for call, action in calls.items():
            for label, clients in (("direct", direct), ("proxied", proxied)):
                action(clients, names[label])  # warm (tokens, connections, the Hub's check)
            results[call] = {"direct": [], "proxied": []}
            for _ in range(repeat):  # interleaved, so that noise falls on both
                for label, clients in (("direct", direct), ("proxied", proxied)):
                    started = time.perf_counter()
                    action(clients, names[label])
                    results[call][label].append((time.perf_counter() - started) * 1000)
        print(f"{'call':24} {'direct ms':>10} {'proxied ms':>11} {'ratio':>6}")
        for call, by in results.items():
            a, b = statistics.median(by["direct"]), statistics.median(by["proxied"])
            print(f"{call:24} {a:10.2f} {b:11.2f} {b / a:6.2f}")
    finally:
        hub.close()
        fake.close()
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(hub.dir, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code in (401, 403)
    except requests.ConnectionError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    run(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
