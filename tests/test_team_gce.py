"""No cloud account credential in a user's server: the control plane is the authorizing proxy
of the Compute Engine API.

A real JupyterHub runs the control plane as its service with the project's service account key
(``--gce-credentials-file``, a 0600 file of the Hub's account) and the fake Compute Engine
(tests/fake_gce.py) as its endpoint. Each user's Jupyter server (team mode, spawned by the Hub)
has no credentials file: its gcp cloud calls the control plane with its Hub token. Alice's
server creates, starts, stops and deletes a VM through it, and the fake sees only the service
account's token; Bob cannot get, stop or delete Alice's VM, nor make one labelled as hers; a
call off the allow-list, another project, and a request without a Hub token are refused. A
restarted control plane lets only an operation's owner wait for it; a key file others may read
is refused; a credentials file configured for users' servers is never read.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jupyter_compute_servers.control_plane.gce import OWNER_LABEL, owner_value

from .fake_gce import FakeGCE
from .hub import ADMIN, Hub, admin_secret, user_server_pid, wait_state, wire_fake
from .postgres import free_port

SERVICE = "compute-control"
ZONE = "us-central1-a"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGCE]:
    with wire_fake("compute-servers-gce-", lambda directory: FakeGCE(directory).start()) as gce:
        yield gce


@pytest.fixture(scope="module")
def key_file(fake: FakeGCE) -> Iterator[Path]:
    """The service account key, as an admin keeps it."""
    with admin_secret("service-account.json", fake.service_account_file) as path:
        yield path


@pytest.fixture(scope="module")
def hub(postgres_server, fake: FakeGCE, key_file: Path) -> Iterator[Hub]:
    # The Hub's control plane (its CA and database logins, as every team test's) with the
    # project's key: the Compute Engine proxy.
    hub = Hub(
        postgres_server.create_database(),
        control_plane=("--gce-credentials-file", str(key_file), "--gce-endpoint", fake.url),
        # The users' servers know where VMs are and how to reach them; no credentials.
        user_settings={
            "GCPCloud.ssh_port": fake.ssh_port,
            "GCPCloud.ssh_username": getpass.getuser(),
            "GCPCloud.poll_interval": 0.05,
            "GCPCloud.preemption_check_interval": 0.0,
            "GCPCloud.zone": ZONE,
        },
        enabled_clouds=["gcp"],
    )
    try:
        hub.wait_for_control_plane("api/gce")
        hub.start_server("alice")
        yield hub
    finally:
        hub.close()
        shutil.rmtree(hub.dir, ignore_errors=True)


def _gce(
    hub: Hub,
    token: str | None,
    method: str,
    path: str,
    body: Any = None,
    project: str = "test-project",
) -> requests.Response:
    """A Compute Engine call through the proxy, as the client library makes it (Bearer)."""
    return requests.request(
        method,
        f"{hub.url}/services/{SERVICE}/gce/compute/v1/projects/{project}/{path}",
        headers={"Authorization": f"Bearer {token}"} if token else {},
        json=body,
        timeout=60,
    )


def _insert_body(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "machineType": f"zones/{ZONE}/machineTypes/e2-small",
        "labels": labels or {},
        "disks": [
            {
                "boot": True,
                "autoDelete": True,
                "initializeParams": {
                    "diskName": name,
                    "diskSizeGb": "10",
                    "diskType": f"zones/{ZONE}/diskTypes/pd-balanced",
                    "sourceImage": "projects/debian-cloud/global/images/family/debian-12",
                    "labels": dict(labels or {}),
                },
            }
        ],
        "metadata": {"items": []},
    }


@pytest.mark.timeout(600)
def test_alices_server_runs_a_vm_through_the_control_plane_without_the_key(
    hub: Hub, fake: FakeGCE, key_file: Path
) -> None:
    # Her server's configuration names no credentials, and the cloud is usable all the same.
    user_config = (hub.config.server_config_dir / "jupyter_server_config.py").read_text()
    assert "credentials_file" not in user_config and str(key_file) not in user_config
    first_call = len(fake.requests)
    # Operations take a moment, so that they are waited for (through the proxy too).
    fake.operation_delay = 0.2

    created = hub.call(
        "alice",
        "POST",
        "/servers",
        body={
            "name": "alice-vm",
            "cloud": "gcp",
            "config": {"machine_type": "e2-standard-2", "zone": ZONE},
        },
    )
    assert created.status_code == 201, created.text
    server_id = created.json()["id"]
    assert hub.call("alice", "POST", f"/servers/{server_id}/actions/start").status_code == 202
    wait_state(hub, "alice", server_id, "running")
    vm = fake.vm()
    # The proxy stamped her name on the VM and its disk.
    assert vm.body["labels"][OWNER_LABEL] == "alice"
    assert fake.disks[(ZONE, vm.name)]["labels"][OWNER_LABEL] == "alice"

    assert hub.call("alice", "POST", f"/servers/{server_id}/actions/stop").status_code == 202
    wait_state(hub, "alice", server_id, "off")
    assert vm.status == "TERMINATED"
    assert hub.call("alice", "POST", f"/servers/{server_id}/actions/start").status_code == 202
    wait_state(hub, "alice", server_id, "running")
    deprovision = hub.call(
        "alice", "POST", f"/servers/{server_id}/actions/deprovision", body={"confirm": True}
    )
    assert deprovision.status_code == 202, deprovision.text
    wait_state(hub, "alice", server_id, "deprovisioned")
    assert not fake.vms and not fake.disks
    assert hub.call("alice", "DELETE", f"/servers/{server_id}").status_code == 204
    fake.operation_delay = 0.0

    # Every call reached Compute Engine with the service account's token, none with hers:
    # the fake accepts only tokens of its token endpoint (or the key's own signature).
    calls = [r for r in fake.requests[first_call:] if "/compute/v1/" in r.path]
    actions = {r.action for r in calls}
    assert {"insert", "get", "wait", "stop", "start", "delete", "getGuestAttributes"} <= actions
    assert all(r.authorized for r in calls)

    # Nothing of the key is in her server: not in its environment, not in any file it wrote.
    key = json.loads(key_file.read_text())["private_key"].encode()
    environ = Path(f"/proc/{user_server_pid('alice')}/environ").read_bytes()
    assert key not in environ and str(key_file).encode() not in environ
    for root, _dirs, files in os.walk(hub.dir / "home" / "alice"):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                assert key not in path.read_bytes(), path


def test_bob_cannot_touch_alices_vm_nor_make_one_in_her_name(hub: Hub, fake: FakeGCE) -> None:
    alice, bob = hub.service_token("alice"), hub.service_token("bob")
    name = "alice-own-vm"
    made = _gce(hub, alice, "POST", f"zones/{ZONE}/instances", _insert_body(name))
    assert made.status_code == 200, made.text
    operation = made.json()["name"]
    instance = f"zones/{ZONE}/instances/{name}"
    assert _gce(hub, alice, "GET", instance).json()["labels"][OWNER_LABEL] == "alice"

    # Bob: not her VM, nor its disk, nor her operation.
    for method, path in (
        ("GET", instance),
        ("POST", f"{instance}/stop"),
        ("DELETE", instance),
        ("POST", f"{instance}/setMachineType"),
        ("GET", f"zones/{ZONE}/disks/{name}"),
        ("DELETE", f"zones/{ZONE}/disks/{name}"),
        ("POST", f"zones/{ZONE}/operations/{operation}/wait"),
    ):
        refused = _gce(hub, bob, method, path, {} if method == "POST" else None)
        assert refused.status_code == 403, (method, path, refused.text)
        body = refused.json()
        assert body["reason"] == "Refused"
        # Google's shape too, which the client library shows.
        assert body["error"]["message"] == body["message"]
        what = "operation" if "operations" in path else ("disk" if "disks" in path else name)
        assert what in body["message"], body
    assert fake.vm(name).status == "RUNNING"
    assert (ZONE, name) in fake.disks

    # Bob's VM labelled as Alice's is his: the proxy overwrites the label, VM and disk.
    forged = {OWNER_LABEL: "alice", "team": "x"}
    mine = _gce(hub, bob, "POST", f"zones/{ZONE}/instances", _insert_body("bob-vm", forged))
    assert mine.status_code == 200, mine.text
    assert fake.vm("bob-vm").body["labels"] == {OWNER_LABEL: "bob", "team": "x"}
    assert fake.disks[(ZONE, "bob-vm")]["labels"][OWNER_LABEL] == "bob"
    assert _gce(hub, alice, "GET", f"zones/{ZONE}/instances/bob-vm").status_code == 403
    assert _gce(hub, bob, "GET", f"zones/{ZONE}/instances/bob-vm").status_code == 200
    # ... and what would reach beyond a new VM of his own is refused: an existing disk (hers),
    # a copy of one, a service account the admin did not allow, an instance template.
    attach = _insert_body("bob-vm-2")
    attach["disks"] = [{"boot": True, "source": f"zones/{ZONE}/disks/{name}"}]
    copy = _insert_body("bob-vm-3")
    copy["disks"][0]["initializeParams"]["sourceSnapshot"] = "global/snapshots/alice-snap"
    powerful = {**_insert_body("bob-vm-4"), "serviceAccounts": [{"email": "owner@x"}]}
    for body, field in ((attach, "disks"), (copy, "disks"), (powerful, "serviceAccounts")):
        refused = _gce(hub, bob, "POST", f"zones/{ZONE}/instances", body)
        assert refused.status_code == 403 and refused.json()["field"] == field, refused.text
    template = requests.post(
        f"{hub.url}/services/{SERVICE}/gce/compute/v1/projects/test-project/zones/{ZONE}/"
        f"instances?sourceInstanceTemplate=global/instanceTemplates/t",
        headers={"Authorization": f"Bearer {bob}"},
        json=_insert_body("bob-vm-5"),
        timeout=30,
    )
    assert template.status_code == 403 and template.json()["field"] == "sourceInstanceTemplate"
    assert {vm.name for vm in fake.vms.values()} == {name, "bob-vm"}

    # Alice's own calls, and an admin's (a member of the team's admin group), go through.
    assert _gce(hub, alice, "POST", f"zones/{ZONE}/operations/{operation}/wait").ok
    admin = hub.service_token(ADMIN)
    assert _gce(hub, admin, "GET", instance).status_code == 200
    for token, vm_name in ((admin, name), (bob, "bob-vm")):
        deleted = _gce(hub, token, "DELETE", f"zones/{ZONE}/instances/{vm_name}")
        assert deleted.status_code == 200, deleted.text
        done = _gce(hub, token, "POST", f"zones/{ZONE}/operations/{deleted.json()['name']}/wait")
        assert done.status_code == 200, done.text
    assert not fake.vms


def test_only_listed_calls_of_the_project_are_forwarded_and_only_with_a_hub_token(
    hub: Hub, fake: FakeGCE
) -> None:
    alice = hub.service_token("alice")
    # The catalogue is everyone's.
    zones = _gce(hub, alice, "GET", "zones")
    assert zones.status_code == 200 and zones.json()["items"][0]["name"] == ZONE
    assert _gce(hub, alice, "GET", "aggregated/acceleratorTypes").status_code == 200
    # Paths and methods off the list: refused before Compute Engine hears of them.
    before = len(fake.requests)
    for method, path in (
        ("GET", f"zones/{ZONE}/instances"),  # everyone's VMs
        ("POST", f"zones/{ZONE}/instances/x/setLabels"),  # the owner label
        ("POST", f"zones/{ZONE}/instances/x/setMetadata"),
        ("GET", "global/snapshots"),
        ("POST", "global/firewalls"),
        ("DELETE", "zones"),
    ):
        refused = _gce(hub, alice, method, path, {} if method == "POST" else None)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "is not a call the control plane forwards" in refused.json()["message"]
    other = _gce(hub, alice, "GET", "zones", project="another-project")
    assert other.status_code == 403 and other.json()["field"] == "project"
    assert len(fake.requests) == before

    # No token, a token the Hub does not know, a token without the service's scope: refused.
    assert _gce(hub, None, "GET", "zones").status_code in (401, 403)
    assert _gce(hub, "not-a-token", "GET", "zones").status_code in (401, 403)
    assert _gce(hub, hub.tokens["alice"], "GET", "zones").status_code == 403
    assert len(fake.requests) == before
    assert owner_value("Alice@example.org").startswith("h-")
    assert owner_value("h-x") != "h-x"


# --- the proxy's policy on its own (no Hub: the caller as the Hub would name them) ---------


def test_a_restarted_control_plane_lets_only_the_owner_wait_for_an_operation(
    fake: FakeGCE, key_file: Path
) -> None:
    """Operations are remembered in memory: after a restart, an operation is the caller's
    when its target is (a start in flight goes on), and nobody else's."""
    import asyncio

    from jupyter_compute_servers.control_plane.gce import Caller, Refused, proxy_from_args

    def proxy():  # type: ignore[no-untyped-def]
        return proxy_from_args(str(key_file), endpoint=fake.url)

    alice, bob = Caller("alice", admin=False), Caller("bob", admin=False)
    body = json.dumps(_insert_body("alice-restart")).encode()
    fake.operation_delay = 0.5

    async def scenario() -> None:
        made = await proxy().handle(
            alice, "POST", "test-project", f"zones/{ZONE}/instances", {}, body
        )
        assert made.status == 200, made.body
        wait = f"zones/{ZONE}/operations/{made.json()['name']}/wait"
        restarted = proxy()
        with pytest.raises(Refused) as refused:
            await restarted.handle(bob, "POST", "test-project", wait, {}, b"")
        assert refused.value.status == 403 and refused.value.field == "operation"
        done = await restarted.handle(alice, "POST", "test-project", wait, {}, b"")
        assert done.status == 200 and done.json()["status"] == "DONE"
        deleted = await restarted.handle(
            alice, "DELETE", "test-project", f"zones/{ZONE}/instances/alice-restart", {}, b""
        )
        assert deleted.status == 200
        wait = f"zones/{ZONE}/operations/{deleted.json()['name']}/wait"
        assert (await restarted.handle(alice, "POST", "test-project", wait, {}, b"")).status == 200

    try:
        asyncio.run(scenario())
    finally:
        fake.operation_delay = 0.0
    assert not fake.vms


def test_the_control_plane_refuses_a_key_others_may_read(fake: FakeGCE, tmp_path: Path) -> None:
    key = fake.service_account_file(tmp_path / "key.json")
    os.chmod(key, 0o644)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.control_plane",
            "--gce-credentials-file",
            str(key),
            "--url",
            f"http://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "may be read by others (mode 644); chmod 600 it" in done.stderr


def test_in_team_mode_the_gcp_cloud_never_reads_a_credentials_file(
    hub: Hub, fake: FakeGCE, tmp_path: Path
) -> None:
    """A key configured for users' servers by mistake is not read: the cloud's only credential
    is the Hub token, and its project the control plane's."""
    import asyncio

    from jupyter_compute_servers.clouds.base import CloudServices
    from jupyter_compute_servers.clouds.gcp import GCPCloud
    from jupyter_compute_servers.clouds.gcp.proxy import HubTokenCredentials
    from jupyter_compute_servers.control_plane_client import ControlPlaneClient

    mistaken = tmp_path / "mistaken-key.json"  # not there: reading it would fail the cloud
    cloud = GCPCloud(data_dir=str(tmp_path / "gcp"), credentials_file=str(mistaken))
    url = f"{hub.url}/services/{SERVICE}/"
    cloud.bind(
        CloudServices(
            images=None,  # type: ignore[arg-type]
            hosts=None,  # type: ignore[arg-type]
            store=None,  # type: ignore[arg-type]
            ssh=None,  # type: ignore[arg-type]
            control_plane=ControlPlaneClient(url, hub.service_token("alice")),
        )
    )
    before = len(fake.requests)
    assert asyncio.run(cloud.availability()) == (True, "")
    credentials, project = cloud._auth  # type: ignore[misc]
    assert isinstance(credentials, HubTokenCredentials) and project == "test-project"
    zones = [r for r in fake.requests[before:] if r.path.endswith("/zones")]
    assert zones and all(r.authorized for r in zones)
    assert cloud.offerings()["live"] is True

    # What the control plane refuses reads as its refusal, with its reason.
    from jupyter_compute_servers.clouds.gcp.errors import GoogleError

    async def elsewhere() -> None:
        clients, _ = await cloud._api()
        await cloud._call("list zones", clients.zones.list, project="another-project")

    with pytest.raises(GoogleError) as refused:
        asyncio.run(elsewhere())
    message = refused.value.message
    assert message.startswith("Could not list zones: the team's control plane refused 403: ")
    assert message.endswith("The control plane acts in project test-project, not another-project.")
