"""The gcp cloud against a fake Compute Engine at the wire (tests/fake_gce.py), driven by the
real google-cloud-compute client over REST, authenticated with a service account key whose
signature the fake checks. The fake's VMs are OpenSSH sshds on 127.0.0.N, so SSH, the agent and
kernels run for real, and the startup script that reports readiness is the package's own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from traitlets import TraitError

from jupyter_compute_servers.app import EVENT_SCHEMA_PATH
from jupyter_compute_servers.clouds.gcp import STARTUP_SCRIPT, GCPCloud
from jupyter_compute_servers.clouds.gcp import catalog as gcp_catalog
from jupyter_compute_servers.errors import ConflictError, ValidationError
from jupyter_compute_servers.kernels.runtime import KernelRuntime, set_server_runtime
from jupyter_compute_servers.models import State
from jupyter_compute_servers.store import ServerStore

from .composition import act, create_server, recorded_events, services_over
from .fake_gce import FakeGCE
from .kernel_helpers import execute, server_kernel, wait_until

ZONE = "us-central1-a"


@pytest.fixture
def fake(tmp_path: Path):
    gce = FakeGCE(tmp_path / "gce").start()
    yield gce
    gce.close()


@pytest.fixture
def key_file(fake: FakeGCE, tmp_path: Path) -> Path:
    return fake.service_account_file(tmp_path / "service-account.json")


@pytest.fixture
def no_google_credentials(tmp_path: Path, monkeypatch) -> None:
    """A machine with no Application Default Credentials, not on Google Cloud."""
    home = tmp_path / "empty-home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(home / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)


def make_cloud(fake: FakeGCE, key_file: Path | None, tmp_path: Path, **traits: Any) -> GCPCloud:
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "gcp"),
        "api_endpoint": fake.url,
        "ssh_port": fake.ssh_port,
        "ssh_username": getpass.getuser(),
        "poll_interval": 0.05,
        "preemption_check_interval": 0.0,
        "zone": ZONE,
    }
    if key_file is not None:
        values["credentials_file"] = str(key_file)
    values.update(traits)
    return GCPCloud(**values)


def gcp_services(tmp_path: Path, cloud: GCPCloud):
    return services_over(tmp_path, "gcp", cloud)


@contextlib.asynccontextmanager
async def gcp_manager(tmp_path: Path, cloud: GCPCloud):
    async with gcp_services(tmp_path, cloud) as services:
        yield services.manager


create = functools.partial(create_server, cloud="gcp")


def metadata(body: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in body["metadata"]["items"]}


# --- insert, readiness and what was asked of Google -------------------------------------------


async def test_start_inserts_the_vm_and_waits_for_its_host_key_and_the_startup_script(
    fake, key_file, tmp_path
):
    fake.boot_delay = 0.3  # the guest takes a moment: start must wait for it, not guess
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        server = create(manager, "Box_One.1", machine_type="n1-standard-4")
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason

        vm = fake.vm()
        assert vm.name.startswith(f"jcs-box-one-1-{server.id}-")
        # The pinned key is the one the VM published in guest attributes, and SSH works with it.
        assert server.cloud_data["host_key"] == (
            f"ssh-ed25519 {vm.attributes['hostkeys/ssh-ed25519']}"
        )
        assert server.cloud_data["address"] == vm.address
        # The startup script (the package's own) ran on the VM and said which Python it found.
        assert vm.attributes["jupyter-compute-servers/ready"] == vm.boot_id
        assert server.cloud_data["python"] == sys.executable
        info = await manager.info(server.id)
        assert info["python_executable"] == sys.executable
        progress = [e["progress"] for e in events if e["kind"] == "progress"]
        assert f"Creating VM {vm.name} in {ZONE}" in progress
        assert any(p.startswith("On the VM: ") for p in progress), progress

        insert = fake.calls("insert")[0]
        assert uuid.UUID(insert.query["requestId"])  # retries of the insert are idempotent
        body = insert.body
        assert body["name"] == vm.name
        assert body["machineType"] == f"zones/{ZONE}/machineTypes/n1-standard-4"
        disk = body["disks"][0]
        assert disk["boot"] is True and disk["autoDelete"] is True
        assert disk["initializeParams"] == {
            "diskName": vm.name,
            "diskSizeGb": "50",
            "diskType": f"zones/{ZONE}/diskTypes/pd-balanced",
            "sourceImage": "projects/debian-cloud/global/images/family/debian-12",
            "labels": body["labels"],
        }
        assert body["labels"]["managed-by"] == "jupyter-compute-servers"
        assert body["labels"]["compute-server-id"] == str(server.id)
        assert body["labels"]["compute-server-name"] == "box_one-1"
        assert re.match(r"^[0-9a-f]{8}$", body["labels"]["compute-server-owner"])
        items = metadata(body)
        public_key = manager.keys.ensure(server.id).split()
        user = getpass.getuser()
        assert items["ssh-keys"] == f"{user}:{public_key[0]} {public_key[1]} {user}"
        assert items["enable-guest-attributes"] == "TRUE"
        assert items["enable-oslogin"] == "FALSE"
        assert items["startup-script"] == STARTUP_SCRIPT
        assert "install-nvidia-driver" not in items
        assert "guestAccelerators" not in body
        assert body["scheduling"] == {"onHostMaintenance": "MIGRATE", "automaticRestart": True}
        assert body["networkInterfaces"] == [
            {
                "network": f"projects/{fake.project}/global/networks/default",
                "accessConfigs": [{"name": "External NAT", "type": "ONE_TO_ONE_NAT"}],
            }
        ]
        # Every call was signed with the service account's key (the fake checks signatures).
        assert fake.requests and all(r.authorized for r in fake.requests)


async def test_gpu_and_spot_map_to_accelerators_and_scheduling(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        t4 = create(
            manager,
            "t4",
            machine_type="n1-standard-8",
            gpu={"type": "nvidia-tesla-t4", "count": 2},
            spot=True,
        )
        assert (await act(manager, t4.id, "start")).state is State.RUNNING
        body = fake.calls("insert")[0].body
        assert body["guestAccelerators"] == [
            {
                "acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4",
                "acceleratorCount": 2,
            }
        ]
        assert body["scheduling"] == {
            "onHostMaintenance": "TERMINATE",
            "automaticRestart": False,
            "provisioningModel": "SPOT",
            "instanceTerminationAction": "STOP",
        }
        assert metadata(body)["install-nvidia-driver"] == "True"
        assert body["disks"][0]["initializeParams"]["sourceImage"] == (
            "projects/deeplearning-platform-release/global/images/family/"
            "common-cu124-debian-11-py310"
        )

        # L4 comes with its G2 machine type: no guest_accelerators, still no live migration.
        l4 = create(
            manager,
            "l4",
            machine_type="g2-standard-8",
            gpu={"type": "nvidia-l4", "count": 1},
            disk_type="pd-ssd",
        )
        assert (await act(manager, l4.id, "start")).state is State.RUNNING
        body = fake.calls("insert")[1].body
        assert body["machineType"] == f"zones/{ZONE}/machineTypes/g2-standard-8"
        assert "guestAccelerators" not in body
        assert body["scheduling"] == {"onHostMaintenance": "TERMINATE", "automaticRestart": True}
        assert body["disks"][0]["initializeParams"]["diskType"] == f"zones/{ZONE}/diskTypes/pd-ssd"


async def test_boot_images_follow_the_table_and_explicit_source_images(fake, key_file, tmp_path):
    cloud = make_cloud(
        fake,
        key_file,
        tmp_path,
        boot_images={"r": {"source": "projects/my-images/global/images/family/r-base"}},
    )
    assert cloud.boot_image(cloud.make_config({"image": "r"}))["source"] == (
        "projects/my-images/global/images/family/r-base"
    )
    own = "projects/my-project/global/images/golden-2024"
    assert cloud.boot_image(cloud.make_config({"image": own}))["source"] == own
    assert cloud.boot_image(cloud.make_config({"image": "scipy"}))["source"].endswith(
        "family/debian-12"
    )
    arm = cloud.make_config({"machine_type": "t2a-standard-4"})
    assert cloud.arch(arm) == "arm64" and cloud.arch(cloud.make_config({})) == "x86_64"
    assert cloud.boot_image(arm)["source"].endswith("family/debian-12-arm64")
    with pytest.raises(TraitError, match="boot_images"):
        cloud.boot_images = {"x": {"source": "debian-12"}}
    with pytest.raises(TraitError, match="label key"):
        cloud.labels = {"Team": "x"}


# --- lifecycle ------------------------------------------------------------------------------


async def test_stop_start_suspend_resume_reboot_and_deprovision(fake, key_file, tmp_path):
    fake.boot_delay = 0.2
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = create(manager)
        server = await act(manager, server.id, "start")
        vm = fake.vm()
        first_boot = vm.boot_id

        server = await act(manager, server.id, "stop")
        assert server.state is State.OFF, server.state_reason
        assert vm.status == "TERMINATED" and vm.sshd is None

        # The last boot's "ready" is still in the guest attributes: start waits for this boot's.
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason
        assert vm.boot_id != first_boot
        assert server.cloud_data["boot"] == vm.boot_id
        assert [r.action for r in fake.requests if r.action in ("insert", "start")] == [
            "insert",
            "start",
        ]

        server = await act(manager, server.id, "suspend")
        assert server.state is State.SUSPENDED and vm.status == "SUSPENDED"
        server = await act(manager, server.id, "resume")
        assert server.state is State.RUNNING and vm.status == "RUNNING"
        assert (await manager.info(server.id))["hostname"]

        booted = vm.boot_id
        server = await act(manager, server.id, "reboot")
        assert server.state is State.RUNNING, server.state_reason
        assert len(fake.calls("reset")) == 1 and vm.boot_id != booted
        assert server.cloud_data["boot"] == vm.boot_id

        disk_dir = vm.disk_dir
        server = await act(manager, server.id, "deprovision", confirm=True)
        assert server.state is State.DEPROVISIONED, server.state_reason
        assert fake.vms == {} and fake.disks == {} and not disk_dir.exists()
        assert server.cloud_data.get("instance") is None

        # Started again: a new VM, and a VM deleted behind our back is deprovisioned quietly.
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING
        second = fake.vm().name
        assert second != vm.name
        fake.vanish()
        fake.disks.clear()
        server = await act(manager, server.id, "deprovision", confirm=True)
        assert server.state is State.DEPROVISIONED, server.state_reason


async def test_a_leftover_disk_is_deleted_with_the_vm(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        # As if the VM had been made without auto-delete: the disk outlives it.
        fake.vm().body["disks"][0]["autoDelete"] = False
        name = server.cloud_data["instance"]
        server = await act(manager, server.id, "deprovision", confirm=True)
        assert server.state is State.DEPROVISIONED
        assert fake.disks == {}
        prefix = f"/compute/v1/projects/test-project/zones/{ZONE}"
        assert [r.path for r in fake.calls("delete")] == [
            f"{prefix}/instances/{name}",
            f"{prefix}/disks/{name}",
        ]


async def test_suspend_is_refused_with_gpus_before_anything_happens(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_services(tmp_path, cloud) as services:
        manager, present = services.manager, services.presenter.to_json
        server = create(
            manager, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t4", "count": 1}
        )
        server = await act(manager, server.id, "start")
        assert "suspend" not in present(server)["allowed_actions"]
        assert "stop" in present(server)["allowed_actions"]
        with pytest.raises(ConflictError, match="cannot suspend a VM with GPUs") as refused:
            manager.request_action(server.id, "suspend")
        assert refused.value.status == 409 and refused.value.field == "action"
        assert manager.get_server(server.id).state is State.RUNNING
        assert fake.calls("suspend") == []


# --- edits ----------------------------------------------------------------------------------


async def test_hardware_changes_while_off_reach_the_vm(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = create(
            manager, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t4", "count": 1}
        )
        server = await act(manager, server.id, "start")
        with pytest.raises(ConflictError, match="Stop it first"):
            await manager.update_server(server.id, {"config": {"machine_type": "n1-standard-8"}})
        assert fake.calls("setMachineType") == []

        server = await act(manager, server.id, "stop")
        server = await manager.update_server(
            server.id,
            {
                "config": {
                    "machine_type": "n1-standard-16",
                    "gpu": {"type": "nvidia-tesla-v100", "count": 2},
                    "spot": True,
                }
            },
        )
        assert server.config.machine_type == "n1-standard-16"
        assert fake.calls("setMachineType")[0].body == {
            "machineType": f"zones/{ZONE}/machineTypes/n1-standard-16"
        }
        assert fake.calls("setMachineResources")[0].body == {
            "guestAccelerators": [
                {
                    "acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-v100",
                    "acceleratorCount": 2,
                }
            ]
        }
        assert fake.calls("setScheduling")[0].body == {
            "onHostMaintenance": "TERMINATE",
            "automaticRestart": False,
            "provisioningModel": "SPOT",
            "instanceTerminationAction": "STOP",
        }
        vm = fake.vm()
        assert vm.body["machineType"].endswith("/n1-standard-16")

        # Another machine family needs another VM.
        with pytest.raises(ConflictError, match="deprovision it first"):
            await manager.update_server(
                server.id,
                {"config": {"machine_type": "g2-standard-4", "gpu": {"type": "nvidia-l4"}}},
            )

        # A step that fails undoes the ones before it, and the record does not change.
        fake.fail("setMachineResources", http_status=400, reason="invalid", message="Nope.")
        with pytest.raises(Exception, match="Nope"):
            await manager.update_server(
                server.id,
                {
                    "config": {
                        "machine_type": "n1-standard-8",
                        "gpu": {"type": "nvidia-tesla-t4", "count": 2},
                    }
                },
            )
        assert [c.body["machineType"].rsplit("/", 1)[-1] for c in fake.calls("setMachineType")][
            1:
        ] == ["n1-standard-8", "n1-standard-16"]
        assert vm.body["machineType"].endswith("/n1-standard-16")
        assert manager.get_server(server.id).config.machine_type == "n1-standard-16"

        assert (await act(manager, server.id, "start")).state is State.RUNNING


async def test_a_disk_grown_while_running_is_resized_and_its_filesystem_grown(
    fake, key_file, tmp_path
):
    # Stand-ins for the VM's disk tools (this machine's real disk is not to be touched).
    tools = tmp_path / "tools"
    tools.mkdir()
    log = tmp_path / "tools.log"
    stubs = {
        "sudo": 'shift; exec "$@"',  # sudo -n ...
        "findmnt": 'case "$*" in *FSTYPE*) echo ext4 ;; *) echo /dev/sda1 ;; esac',
        "lsblk": "echo sda",
        "growpart": "exit 0",
        "resize2fs": "exit 0",
        "df": "echo 60G",
    }
    for name, body in stubs.items():
        path = tools / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}\n')
        path.chmod(0o755)
    fake.vm_env = {"PATH": f"{tools}:/usr/bin:/bin"}
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        server = await manager.update_server(server.id, {"config": {"disk_gb": 60}})
        assert server.config.disk_gb == 60
        assert fake.calls("resize")[0].body == {"sizeGb": "60"}
        assert next(iter(fake.disks.values()))["sizeGb"] == "60"
        ran = log.read_text().splitlines()
        assert "growpart /dev/sda 1" in ran and "resize2fs /dev/sda1" in ran, ran
        assert server.cloud_data.get("grow_filesystem") is None
        assert server.progress and server.progress["message"] == "The filesystem fills the disk"

        # While off, the disk grows and the image grows its filesystem at the next boot.
        server = await act(manager, server.id, "stop")
        server = await manager.update_server(server.id, {"config": {"disk_gb": 70}})
        assert fake.calls("resize")[1].body == {"sizeGb": "70"}
        with pytest.raises(ConflictError, match="only grow"):
            await manager.update_server(server.id, {"config": {"disk_gb": 65}})


# --- preemption -----------------------------------------------------------------------------


def event_schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(EVENT_SCHEMA_PATH.read_text()))


async def test_a_preempted_spot_server_becomes_off_with_the_reason_and_an_event(
    fake, key_file, tmp_path
):
    cloud = make_cloud(fake, key_file, tmp_path, preemption_check_interval=0.2)
    async with gcp_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        server = create(manager, spot=True)
        server = await act(manager, server.id, "start")
        assert await manager.watch_once() == []  # running and well: nothing to say

        manager.start_watching()
        fake.preempt()
        await wait_until(lambda: manager.get_server(server.id).state is State.OFF, timeout=10)
        server = manager.get_server(server.id)
        assert "preempted this spot VM" in server.state_reason
        assert "config.spot false" in server.state_reason
        assert manager.history(server.id)[-1].action == "preempted"
        preempted = [e for e in events if e["kind"] == "preempted"]
        assert len(preempted) == 1 and preempted[0]["state"] == "off"
        assert preempted[0]["state_reason"] == server.state_reason
        event_schema_validator().validate(preempted[0])
        assert not manager.ssh.is_connected(server.id)
        # An off server can be started again, on the same disk.
        assert (await act(manager, server.id, "start")).state is State.RUNNING


async def test_a_preempted_server_is_restarted_when_configured(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path, restart_preempted=True)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, spot=True).id, "start")
        first_boot = fake.vm().boot_id
        fake.preempt()
        cloud.preemption_check_interval = 60  # watched (watch_once here, not a timer)
        [found] = await manager.watch_once()
        assert found.state is State.OFF
        await manager.wait_for_action(server.id)
        server = manager.get_server(server.id)
        assert server.state is State.RUNNING, server.state_reason
        assert server.state_reason == "started again after preemption"
        assert fake.vm().boot_id != first_boot


async def test_an_on_demand_vm_stopped_outside_jupyter_is_recorded_off(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path, preemption_check_interval=60)
    async with gcp_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        server = await act(manager, create(manager).id, "start")
        fake.preempt()  # from our side it looks the same: TERMINATED without our asking
        await manager.watch_once()
        server = manager.get_server(server.id)
        assert server.state is State.OFF
        assert "stopped outside Jupyter" in server.state_reason
        assert [e["kind"] for e in events][-1] == "state"


# --- errors -----------------------------------------------------------------------------------


async def test_quota_errors_name_the_quota_region_and_what_to_try(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = create(
            manager, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t4", "count": 1}
        )
        fake.fail(
            "insert",
            http_status=403,
            reason="quotaExceeded",
            message="Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 0.0 in region us-central1.",
        )
        server = await act(manager, server.id, "start")
        # Nothing was created, so nothing is recorded, and the zone may be changed now.
        assert server.state is State.DEPROVISIONED
        assert server.cloud_data.get("instance") is None and fake.vms == {}
        reason = server.state_reason
        assert reason.startswith("start failed: Quota NVIDIA_T4_GPUS is used up in region ")
        assert "us-central1 (limit 0)" in reason and ZONE in reason
        assert "1 x NVIDIA T4 on n1-standard-4" in reason
        assert "another region, fewer GPUs" in reason
        assert "console.cloud.google.com/iam-admin/quotas?project=test-project" in reason

        # The same from the operation, with Google's quota details.
        fake.fail(
            "insert",
            operation_code="QUOTA_EXCEEDED",
            message="Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1.",
            quota={
                "metricName": "compute.googleapis.com/cpus",
                "limit": 24,
                "dimensions": {"region": "us-central1"},
            },
        )
        server = await manager.update_server(server.id, {"config": {"spot": True}})
        server = await act(manager, server.id, "start")
        assert server.state is State.DEPROVISIONED
        assert "Quota compute.googleapis.com/cpus is used up in region us-central1 (limit 24)" in (
            server.state_reason
        )
        assert "PREEMPTIBLE_" in server.state_reason

        # Fixed: the next start works.
        assert (await act(manager, server.id, "start")).state is State.RUNNING


async def test_an_exhausted_zone_names_the_zone_and_suggests_another_or_on_demand(
    fake, key_file, tmp_path
):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = create(
            manager,
            machine_type="g2-standard-4",
            gpu={"type": "nvidia-l4", "count": 1},
            disk_type="pd-balanced",
            spot=True,
        )
        fake.fail(
            "insert",
            operation_code="ZONE_RESOURCE_POOL_EXHAUSTED",
            message=f"The zone 'projects/test-project/zones/{ZONE}' does not have enough "
            "resources available to fulfill the request.  Try a different zone, or try again "
            "later.",
        )
        server = await act(manager, server.id, "start")
        assert server.state is State.DEPROVISIONED, server.state_reason
        reason = server.state_reason
        assert f"Zone {ZONE} has no capacity for spot 1 x NVIDIA L4 on g2-standard-4" in reason
        assert "ZONE_RESOURCE_POOL_EXHAUSTED" in reason
        assert "another zone" in reason and "set config.zone and start it again" in reason
        assert "on-demand instead of spot (config.spot false)" in reason
        assert fake.vms == {} and server.cloud_data.get("instance") is None

        # The user takes the advice: another zone works.
        server = await manager.update_server(server.id, {"config": {"zone": "us-central1-b"}})
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING
        assert fake.vm().zone == "us-central1-b"

        # Starting an existing VM in an exhausted zone leaves it off; moving means deprovisioning.
        server = await act(manager, server.id, "stop")
        fake.fail("start", operation_code="ZONE_RESOURCE_POOL_EXHAUSTED", message="No room.")
        server = await act(manager, server.id, "start")
        assert server.state is State.OFF, server.state_reason
        assert "Zone us-central1-b has no capacity" in server.state_reason
        assert "deprovision the server (its disk is deleted), set config.zone" in (
            server.state_reason
        )


async def test_an_insert_whose_answer_is_lost_carries_on_with_the_vm(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = create(manager)
        fake.fail("insert", after_creating=True)
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason
        assert server.cloud_data["instance"] == fake.vm().name


async def test_a_startup_script_that_fails_stops_the_vm_and_says_why(fake, key_file, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "apt-get").write_text("#!/bin/sh\nexit 100\n")
    (tools / "apt-get").chmod(0o755)
    fake.script_env = {
        "JCS_PYTHON_CANDIDATES": str(tmp_path / "no-python"),
        "JCS_APT_RETRY_DELAY": "0",
        "PATH": f"{tools}:/usr/bin:/bin",
    }
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.OFF
        assert "startup script failed: could not install python3-ipykernel" in server.state_reason
        assert fake.vm().status == "TERMINATED"

        # Fixed on the VM: the next boot is ready, and that old error is never taken for news.
        fake.script_env = {"JCS_PYTHON_CANDIDATES": sys.executable}
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason
        assert "error" in "".join(fake.vm().attributes)  # still there, from the failed boot
        assert (await act(manager, server.id, "suspend")).state is State.SUSPENDED
        server = await act(manager, server.id, "resume")
        assert server.state is State.RUNNING, server.state_reason


async def test_the_startup_script_installs_ipykernel_when_the_image_lacks_it(
    fake, key_file, tmp_path
):
    tools = tmp_path / "tools"
    tools.mkdir()
    python = tmp_path / "image-python3"
    # "Installing" puts a python3 with ipykernel where the image's python3 would be.
    packaged = tmp_path / "packaged-python3"
    packaged.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    packaged.chmod(0o755)
    (tools / "apt-get").write_text(
        f'#!/bin/sh\necho "apt-get $*" >> {tmp_path / "apt.log"}\n'
        f'case "$*" in *" install "*) cp {packaged} {python} ;; esac\n'
    )
    (tools / "apt-get").chmod(0o755)
    fake.script_env = {"JCS_PYTHON_CANDIDATES": str(python), "PATH": f"{tools}:/usr/bin:/bin"}
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.RUNNING, server.state_reason
        assert server.cloud_data["python"] == str(python)
        assert (
            "install -y -qq python3 python3-ipykernel rsync" in (tmp_path / "apt.log").read_text()
        )
        assert "On the VM: installing python3 and ipykernel" in [e["progress"] for e in events]


async def test_a_vm_that_never_gets_ready_is_stopped_after_the_boot_timeout(
    fake, key_file, tmp_path
):
    fake.run_startup_script = False
    fake.boot_delay = 30  # the guest never publishes anything in time
    cloud = make_cloud(fake, key_file, tmp_path, boot_timeout=0.5)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.OFF
        assert "was not ready for kernels within" in server.state_reason
        assert "gcloud compute instances get-serial-port-output" in server.state_reason
        assert fake.vm().status == "TERMINATED"


# --- availability, credentials, offerings ----------------------------------------------------


async def test_no_credentials_make_the_cloud_unavailable_with_the_reason(
    fake, tmp_path, no_google_credentials
):
    cloud = make_cloud(fake, None, tmp_path)
    available, reason = await cloud.availability()
    assert available is False
    assert reason.startswith("No Google Cloud credentials: Application Default Credentials")
    assert "gcloud auth application-default login" in reason
    assert fake.requests == []


async def test_application_default_credentials_are_used(
    fake, key_file, tmp_path, no_google_credentials, monkeypatch
):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    cloud = make_cloud(fake, None, tmp_path)
    assert await cloud.availability() == (True, "")
    offerings = cloud.offerings()
    assert offerings["project"] == "test-project" and offerings["live"] is True


async def test_credentials_google_refuses_make_it_unavailable(fake, tmp_path):
    untrusted = fake.service_account_file(tmp_path / "other.json", trusted=False)
    cloud = make_cloud(fake, untrusted, tmp_path)
    available, reason = await cloud.availability()
    assert available is False
    assert reason.startswith("Google refused the credentials")
    key = json.loads(untrusted.read_text())
    assert key["private_key_id"] not in reason and "PRIVATE KEY" not in reason


async def test_a_project_is_required(fake, tmp_path, no_google_credentials):
    user = tmp_path / "user.json"
    user.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "x",
                "client_secret": "y",
                "refresh_token": "z",
            }
        )
    )
    cloud = make_cloud(fake, user, tmp_path)
    available, reason = await cloud.availability()
    assert (available, reason) == (
        False,
        "No Google Cloud project: set c.GCPCloud.project (or GOOGLE_CLOUD_PROJECT).",
    )
    other = tmp_path / "federated.json"
    other.write_text(json.dumps({"type": "external_account", "audience": "x"}))
    available, reason = await make_cloud(fake, other, tmp_path / "2").availability()
    assert not available and "'external_account' file" in reason


async def test_offerings_come_from_the_live_zones_and_gpus(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    builtin = cloud.offerings()
    assert builtin["live"] is False  # before the API was asked: the built-in table
    # Its GPUs attached to N1 only in the zones that have them (not a V100 in us-west4); the
    # zones of the accelerator-optimized types' GPUs are not known without the API.
    zones = {g["type"]: g["zones"] for g in builtin["gpus"]}
    assert zones["nvidia-tesla-v100"] == sorted(gcp_catalog.BUILTIN_GPU_ZONES["nvidia-tesla-v100"])
    assert "us-east1-c" in zones["nvidia-tesla-t4"] and "us-east1-b" not in zones["nvidia-tesla-t4"]
    assert not any(zone.startswith("us-west4-") for zone in zones["nvidia-tesla-v100"])
    assert zones["nvidia-l4"] is None and zones["nvidia-h100-80gb"] is None
    every = {zone for region in builtin["regions"] for zone in region["zones"]}
    assert all(set(z) <= every for z in zones.values() if z is not None)
    assert await cloud.availability() == (True, "")
    offerings = cloud.offerings()
    assert offerings["regions"] == [
        {"name": "europe-west4", "zones": ["europe-west4-a"]},
        {
            "name": "us-central1",
            "zones": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
        },
    ]
    gpus = {g["type"]: g for g in offerings["gpus"]}
    assert gpus["nvidia-tesla-t4"]["zones"] == ["europe-west4-a", "us-central1-a", "us-central1-b"]
    assert gpus["nvidia-tesla-t4"]["counts"] == [1, 2, 4]
    assert gpus["nvidia-l4"]["machine_types"][0] == "g2-standard-4"
    assert gpus["nvidia-tesla-p4"]["zones"] == []
    assert {d["name"] for d in offerings["disk_types"]} == {"pd-balanced", "pd-ssd", "pd-standard"}
    types = {m["name"]: m for m in offerings["machine_types"]}
    assert types["a2-ultragpu-1g"]["gpu"] == {"type": "nvidia-a100-80gb", "count": 1}
    assert offerings["suspend"] == {"supported": True, "with_gpus": False}

    # With the live catalogue, a GPU the zone lacks is refused before any call.
    with pytest.raises(ValidationError, match="Zone us-central1-c has no nvidia-l4") as error:
        cloud.make_config(
            {
                "machine_type": "g2-standard-4",
                "gpu": {"type": "nvidia-l4"},
                "zone": "us-central1-c",
            }
        )
    assert error.value.field == "config.zone"
    assert "us-central1-a, us-central1-b" in error.value.message
    with pytest.raises(ValidationError, match="not offered") as error:
        cloud.make_config({"zone": "us-central1-z"})
    assert error.value.field == "config.zone"


# --- compatibility, checked before any API call ----------------------------------------------

T4, V100, P100, P4 = "nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-p4"
L4, A100, A100_80, H100 = "nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb"

COMPATIBILITY = [
    # machine type, GPU type, count, field at fault (None: fine), words of the message
    ("n1-standard-4", T4, 1, None, ""),
    ("n1-standard-4", T4, 2, None, ""),
    ("n1-standard-4", T4, 4, None, ""),
    ("n1-standard-4", T4, 3, "config.gpu.count", "1, 2 or 4 x NVIDIA T4, not 3"),
    ("n1-standard-4", T4, 8, "config.gpu.count", "1, 2 or 4 x NVIDIA T4"),
    ("n1-standard-8", V100, 8, None, ""),
    ("n1-standard-16", V100, 1, "config.machine_type", "at most 12 vCPUs"),
    ("n1-standard-4", P100, 4, None, ""),
    ("n1-standard-4", P4, 2, None, ""),
    ("custom-4-16384", T4, 1, None, ""),
    ("e2-standard-4", T4, 1, "config.machine_type", "attach only to N1 machine types"),
    ("n2-standard-4", V100, 1, "config.machine_type", "n2-standard-4 is N2"),
    ("g2-standard-4", L4, 1, None, ""),
    ("g2-standard-24", L4, 2, None, ""),
    ("g2-standard-24", L4, 1, "config.gpu.count", "exactly 2 x NVIDIA L4"),
    ("n1-standard-4", L4, 1, "config.machine_type", "comes only with G2 machine types"),
    ("g2-standard-4", T4, 1, "config.gpu.type", "comes with NVIDIA L4 (nvidia-l4), not"),
    ("g2-standard-7", L4, 1, "config.machine_type", "Unknown G2 machine type"),
    ("a2-highgpu-2g", A100, 2, None, ""),
    ("a2-highgpu-1g", A100_80, 1, "config.gpu.type", "comes with NVIDIA A100 40GB"),
    ("a2-ultragpu-1g", A100_80, 1, None, ""),
    ("a2-ultragpu-8g", A100_80, 4, "config.gpu.count", "for 4 use a2-ultragpu-4g"),
    ("n1-standard-8", A100, 1, "config.machine_type", "comes only with A2 STANDARD"),
    ("a3-highgpu-8g", H100, 8, None, ""),
    ("a2-highgpu-8g", H100, 8, "config.gpu.type", "not nvidia-h100-80gb"),
    ("n1-standard-4", "nvidia-tesla-k80", 1, "config.gpu.type", "not a Compute Engine GPU"),
]


@pytest.mark.parametrize(("machine_type", "gpu", "count", "field", "words"), COMPATIBILITY)
def test_gpu_and_machine_family_compatibility(tmp_path, machine_type, gpu, count, field, words):
    cloud = GCPCloud(data_dir=str(tmp_path), project="p")
    body = {"machine_type": machine_type, "gpu": {"type": gpu, "count": count}}
    if field is None:
        config = cloud.make_config(body)
        assert config.gpu is not None and config.gpu.count == count
        return
    with pytest.raises(ValidationError) as error:
        cloud.make_config(body)
    assert error.value.field == field
    assert words in error.value.message, error.value.message


def test_accelerator_optimized_types_need_their_gpus_named(tmp_path):
    cloud = GCPCloud(data_dir=str(tmp_path), project="p")
    with pytest.raises(ValidationError) as error:
        cloud.make_config({"machine_type": "a2-highgpu-1g"})
    assert error.value.field == "config.gpu"
    assert 'set config.gpu {"type": "nvidia-tesla-a100", "count": 1}' in error.value.message


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        (
            {"machine_type": "g2-standard-4", "gpu": {"type": L4}, "disk_type": "pd-standard"},
            "config.disk_type",
            "cannot use pd-standard",
        ),
        ({"disk_type": "pd-extreme"}, "config.disk_type", "must be one of pd-balanced"),
        ({"disk_gb": 5}, "config.disk_gb", "between 10 and 65536"),
        (
            {"machine_type": "n1-standard-4", "gpu": {"type": T4}, "disk_gb": 20},
            "config.disk_gb",
            "between 50 and",
        ),
        ({"zone": "europe-west4-a"}, "config.zone", "not in config.region us-central1"),
        ({"zone": "us-central1"}, "config.zone", "is not a zone"),
        ({"region": "Mars"}, "config.region", "is not a region"),
        ({"machine_type": "N1_STANDARD"}, "config.machine_type", "not a machine type name"),
        ({"image": "projects/x/images/y"}, "config.image", "is not a source image"),
        ({"image": None}, "config.image", "config.image is required"),
        ({"extra": {"network": "x"}}, "config.extra.network", "no extra options"),
        ({"cpu": 4}, "config.cpu", "does not apply to the gcp cloud"),
        ({"spot": "yes"}, "config.spot", "true or false"),
    ],
)
def test_configuration_errors_name_the_field(tmp_path, config, field, words):
    cloud = GCPCloud(data_dir=str(tmp_path), project="p")
    with pytest.raises(ValidationError) as error:
        cloud.make_config(config)
    assert error.value.field == field
    assert words in error.value.message, error.value.message


def test_the_catalogue_is_consistent():
    for name, (gpu, count) in gcp_catalog.BUNDLED_GPUS.items():
        assert gpu in gcp_catalog.GPUS and count in gcp_catalog.GPUS[gpu].counts()
        assert gcp_catalog.check_gpu(name, gpu, count) == ("", "")
    for model in gcp_catalog.GPUS.values():
        assert model.attachable == (model.family == "n1")


# --- a whole server: create, start, a kernel on it, stop, deprovision --------------------------


async def test_a_kernel_runs_on_a_gcp_server_from_start_to_deprovision(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        root = tmp_path / "root"
        root.mkdir()
        set_server_runtime(KernelRuntime(manager, asyncio.get_running_loop(), str(root)))
        try:
            server = create(manager, "gpu-less")
            server = await act(manager, server.id, "start")
            assert server.state is State.RUNNING, server.state_reason
            async with server_kernel(manager, server.id, tmp_path / "kernels") as client:
                _, out = await execute(client, "import os; print(os.getcwd())")
                home = fake.vm().disk_dir / "home"
                assert out.strip() == str(home / "work")
            assert (await act(manager, server.id, "stop")).state is State.OFF
            server = await act(manager, server.id, "deprovision", confirm=True)
            assert server.state is State.DEPROVISIONED and fake.vms == {}
        finally:
            set_server_runtime(None)


def test_the_startup_script_is_valid_shell():
    import subprocess

    subprocess.run(["bash", "-n", "-c", STARTUP_SCRIPT], check=True)
    assert os.access(
        Path(__file__).parents[1] / "jupyter_compute_servers" / "clouds" / "gcp" / "startup.sh",
        os.R_OK,
    )


# --- through the Jupyter server: the REST API, the watch, and crashes ------------------------


@pytest.fixture
def jp_server_config(jp_server_config, fake, tmp_path):
    config = json.loads(json.dumps(jp_server_config, default=str))
    config["ServerApp"]["authorizer_class"] = jp_server_config["ServerApp"]["authorizer_class"]
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "gcp"]
    config["GCPCloud"] = {
        "api_endpoint": fake.url,
        "ssh_port": fake.ssh_port,
        "ssh_username": getpass.getuser(),
        "poll_interval": 0.05,
        "preemption_check_interval": 0.2,
        "zone": ZONE,
    }
    return config


@pytest.fixture
def adc(key_file, monkeypatch, no_google_credentials) -> Path:
    """Application Default Credentials: the service account key, by the environment."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    return key_file


async def test_the_api_lists_gcp_unavailable_without_credentials(no_google_credentials, api):
    code, answer = await api("GET", "clouds")
    assert code == 200
    gcp = next(c for c in answer["clouds"] if c["name"] == "gcp")
    assert gcp["available"] is False and gcp["offerings"] == {}
    assert gcp["reason"].startswith("No Google Cloud credentials")
    assert gcp["supports_suspend"] is True
    assert gcp["defaults"]["machine_type"] == "e2-standard-2"


async def test_a_server_through_the_api_from_create_to_preemption(adc, fake, api, wait_for_state):
    code, answer = await api("GET", "clouds")
    gcp = next(c for c in answer["clouds"] if c["name"] == "gcp")
    assert gcp["available"] is True, gcp["reason"]
    assert gcp["offerings"]["project"] == "test-project"

    code, error = await api(
        "POST",
        "servers",
        {"name": "a100", "cloud": "gcp", "config": {"machine_type": "a2-highgpu-1g"}},
    )
    assert code == 400 and error["field"] == "config.gpu", error
    assert fake.calls("insert") == []

    code, server = await api(
        "POST", "servers", {"name": "spotty", "cloud": "gcp", "config": {"spot": True}}
    )
    assert code == 201, server
    code, server = await api("POST", f"servers/{server['id']}/actions/start")
    assert code == 202, server
    server = await wait_for_state(server["id"], "running", timeout=60)
    assert "cloud_data" not in server
    text = json.dumps(server)
    assert fake.vm().attributes["hostkeys/ssh-ed25519"] not in text
    assert "suspend" in server["allowed_actions"]

    fake.preempt()  # the Jupyter server's own watch notices
    server = await wait_for_state(server["id"], "off", timeout=30)
    assert "preempted this spot VM" in server["state_reason"]
    code, history = await api("GET", f"servers/{server['id']}/history")
    assert history["history"][-1]["action"] == "preempted"


CRASH_CONFIG = """
c.ComputeServersApp.enabled_clouds = ["gcp"]
c.GCPCloud.credentials_file = {key_file!r}
c.GCPCloud.api_endpoint = {url!r}
c.GCPCloud.ssh_port = {port}
c.GCPCloud.ssh_username = {user!r}
c.GCPCloud.poll_interval = 0.05
c.GCPCloud.zone = {zone!r}
"""


@pytest.mark.parametrize("insert_reached_google", [False, True])
def test_a_crash_around_the_insert_leaves_the_store_consistent(
    fake, key_file, tmp_path, insert_reached_google
):
    """Jupyter is killed while its insert is on the way. Either the insert never got to Google
    (nothing exists: the server is found deprovisioned) or it did (the VM exists: found running,
    usable, and deprovisioning deletes it). Either way nothing is left that nobody knows of."""
    from .jupyter_process import JupyterProcess

    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    config = tmp_path / "crash_config.py"
    config.write_text(
        CRASH_CONFIG.format(
            key_file=str(key_file),
            url=fake.url,
            port=fake.ssh_port,
            user=getpass.getuser(),
            zone=ZONE,
        )
    )
    fake.hold_action = "insert"
    fake.discard_held = not insert_reached_google
    jupyter = JupyterProcess(data, root, f"--config={config}")
    try:
        code, server = jupyter.call("POST", "servers", {"name": "crashy", "cloud": "gcp"})
        assert code == 201, server
        server_id = server["id"]
        code, _ = jupyter.call("POST", f"servers/{server_id}/actions/start")
        assert code == 202
        assert fake.held.wait(30), "the insert never came"
        # The instance's name was recorded before the insert left.
        store = ServerStore(f"sqlite:///{data / 'servers.db'}", clock=time.time)
        recorded = store.get(server_id)
        store.close()
        name = recorded.cloud_data["instance"]
        assert recorded.state is State.STARTING and name.startswith("jcs-crashy-")
        jupyter.kill()
    finally:
        fake.release.set()
        if jupyter.process.poll() is None:
            jupyter.kill()
    deadline = time.monotonic() + 10
    while insert_reached_google and not fake.vms and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bool(fake.vms) is insert_reached_google

    jupyter = JupyterProcess(data, root, f"--config={config}")
    try:
        server = jupyter.wait_settled(server_id)
        assert server["state_reason"].startswith("start was interrupted by a restart; found")
        if not insert_reached_google:
            assert server["state"] == "deprovisioned", server
            assert f"there is no VM {name} in {ZONE}" in server["state_reason"]
            fake.hold_action = ""
            code, _ = jupyter.call("POST", f"servers/{server_id}/actions/start")
            assert code == 202
            server = jupyter.wait_settled(server_id, timeout=60)
            assert server["state"] == "running", server
            assert list(fake.vms) == [(ZONE, name)]  # the name it had recorded
        else:
            assert server["state"] == "running", server
            # Its address and host key are asked of Google: SSH works without a new start.
            code, kernels = jupyter.call("GET", f"servers/{server_id}/kernels")
            assert code == 200, kernels
        code, _ = jupyter.call(
            "POST", f"servers/{server_id}/actions/deprovision", {"confirm": True}
        )
        assert code == 202
        server = jupyter.wait_settled(server_id)
        assert server["state"] == "deprovisioned", server
        assert fake.vms == {} and fake.disks == {}
    finally:
        jupyter.stop()


async def test_a_start_checks_the_configuration_again_before_any_call(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = create(
            manager, machine_type="n1-standard-4", gpu={"type": "nvidia-tesla-t4", "count": 1}
        )
        # Since the server was made, the zone stopped offering T4s.
        del fake.accelerators["nvidia-tesla-t4"][ZONE]
        assert await cloud.availability() == (True, "")
        server = await act(manager, server.id, "start")
        assert server.state is State.DEPROVISIONED
        assert f"Zone {ZONE} has no nvidia-tesla-t4 GPUs" in server.state_reason
        assert "us-central1-b" in server.state_reason
        assert fake.calls("insert") == []


async def test_slow_operations_are_waited_for_through_a_flaky_connection(fake, key_file, tmp_path):
    fake.operation_delay = 1.5  # longer than one zoneOperations.wait of the fake (1 s)
    fake.fail("wait", http_status=503, reason="backendError", message="Try again.")
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.RUNNING, server.state_reason
        waits = [r for r in fake.calls("wait") if r.path.endswith("-insert/wait")]
        assert len(waits) >= 3  # the failed one, one that timed out, the one that saw it done
        assert all(r.path.startswith("/compute/v1/projects/test-project/zones/") for r in waits)


async def test_status_follows_the_instance_status(fake, key_file, tmp_path):
    cloud = make_cloud(fake, key_file, tmp_path)
    async with gcp_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        vm = fake.vm()
        expected = {
            "PROVISIONING": State.RUNNING,
            "STAGING": State.RUNNING,
            "RUNNING": State.RUNNING,
            "REPAIRING": State.RUNNING,
            "STOPPING": State.OFF,
            "TERMINATED": State.OFF,
            "SUSPENDING": State.SUSPENDED,
            "SUSPENDED": State.SUSPENDED,
        }
        for status, state in expected.items():
            vm.status = status
            found = await cloud.status(server.id, server.cloud_data)
            assert found.state is state, status
            assert found.preempted is False
        vm.status = "RUNNING"
        fake.vanish()
        found = await cloud.status(server.id, server.cloud_data)
        assert found.state is State.DEPROVISIONED
        assert f"there is no VM {vm.name}" in found.reason
        assert (await cloud.status(server.id, {})).state is State.DEPROVISIONED
