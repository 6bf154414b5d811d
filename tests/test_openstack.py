"""The openstack cloud against a fake OpenStack at the wire (tests/fake_openstack.py: Keystone,
Nova, Glance and Neutron over HTTP), driven by the real openstacksdk with a clouds.yaml. The
fake's VMs are OpenSSH sshds on 127.0.2.N (floating IPs: 127.0.3.N, forwarded as NAT would),
so SSH, the agent and kernels run for real."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from traitlets import TraitError

from jupyter_compute_servers.clouds.base import Operation
from jupyter_compute_servers.clouds.openstack import OpenStackCloud
from jupyter_compute_servers.clouds.openstack.catalog import gpus_of
from jupyter_compute_servers.clouds.openstack.hostkeys import host_key_from_console
from jupyter_compute_servers.errors import ConflictError, ValidationError
from jupyter_compute_servers.kernels.runtime import KernelRuntime, set_server_runtime
from jupyter_compute_servers.models import State

from .composition import act, create_server, recorded_events, services_over
from .fake_openstack import FakeOpenStack
from .kernel_helpers import execute, server_kernel, wait_until

BOOT_IMAGES = {"*": "ubuntu-2204-20230914", "*gpu": "ubuntu-2204-nvidia-20230914"}


@pytest.fixture
def fake(tmp_path: Path):
    openstack = FakeOpenStack(tmp_path / "openstack").start()
    yield openstack
    openstack.close()


@pytest.fixture
def clouds_yaml(fake: FakeOpenStack, tmp_path: Path) -> Path:
    return fake.clouds_yaml(tmp_path / "clouds.yaml")


def cloud_traits(fake: FakeOpenStack, clouds_yaml: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "data_dir": str(tmp_path / "openstack-data"),
        "clouds_yaml": str(clouds_yaml),
        "cloud": "opengpu",
        "boot_images": BOOT_IMAGES,
        "ssh_port": fake.ssh_port,
        "ssh_username": getpass.getuser(),
        "python": sys.executable,
        "poll_interval": 0.05,
        "status_check_interval": 0.0,
    }


async def make_cloud(
    fake: FakeOpenStack, clouds_yaml: Path, tmp_path: Path, **traits: Any
) -> OpenStackCloud:
    cloud = OpenStackCloud(**{**cloud_traits(fake, clouds_yaml, tmp_path), **traits})
    # What listing the clouds does first (the create dialog reads the offerings).
    assert await cloud.refresh_catalog() == ""
    return cloud


@contextlib.asynccontextmanager
async def openstack_manager(tmp_path: Path, cloud: OpenStackCloud):
    async with services_over(tmp_path, "openstack", cloud) as services:
        yield services.manager


create = functools.partial(create_server, cloud="openstack")


# --- a whole server: a kernel on a gpu_medium VM, through every action ------------------------


async def test_a_kernel_runs_on_a_gpu_medium_server_through_every_action(
    fake, clouds_yaml, tmp_path
):
    fake.boot_delay = 0.3  # the guest takes a moment: the start waits for its console keys
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        root = tmp_path / "root"
        root.mkdir()
        set_server_runtime(KernelRuntime(manager, asyncio.get_running_loop(), str(root)))
        try:
            server = create(manager, "Gpu_Box", machine_type="gpu_medium")
            # The flavor brings its GPU (from its extra specs).
            assert server.config.gpu is not None
            assert (server.config.gpu.type, server.config.gpu.count) == ("v100", 1)
            server = await act(manager, server.id, "start")
            assert server.state is State.RUNNING, server.state_reason

            vm = fake.server()
            assert vm.flavor["name"] == "gpu_medium"
            assert vm.name == f"jcs-gpu-box-{server.id}"
            assert vm.metadata["compute-server-id"] == str(server.id)
            assert fake.images[0]["id"] == vm.image_id  # the '*gpu' boot image
            # The key pair is the server's own client key; the pinned host key is the one the
            # guest printed to its console, and SSH works with it.
            public = manager.keys.ensure(server.id).split()
            assert fake.keypairs[vm.key_name]["public_key"] == f"{public[0]} {public[1]}"
            host_key = (vm.disk_dir / "ssh_host_ed25519_key.pub").read_text().split()
            assert server.cloud_data["host_key"] == f"{host_key[0]} {host_key[1]}"
            assert server.cloud_data["address"] == vm.address
            progress = [e["progress"] for e in events if e["kind"] == "progress"]
            assert "Waiting for the VM to print its SSH host key to the console" in progress
            # Every call was authenticated with the token Keystone issued for the clouds.yaml.
            api_calls = [r for r in fake.requests if "/v2" in r.path and r.path.count("/") > 2]
            assert api_calls and all(r.headers["x-auth-token"] in fake.tokens for r in api_calls)

            async with server_kernel(manager, server.id, tmp_path / "kernels") as client:
                _, out = await execute(client, "import os; print(os.getcwd())")
                assert out.strip() == str(vm.disk_dir / "home" / "work")

            assert (await act(manager, server.id, "stop")).state is State.OFF
            assert vm.status == "SHUTOFF" and vm.sshd is None
            assert (await act(manager, server.id, "start")).state is State.RUNNING
            # Nova cannot suspend a VM with GPUs (managed save): refused before anything.
            with pytest.raises(ConflictError, match="cannot suspend a VM with GPUs") as refused:
                manager.request_action(server.id, "suspend")
            assert refused.value.status == 409 and fake.actions("suspend") == []
            assert (await act(manager, server.id, "reboot")).state is State.RUNNING
            assert (await manager.info(server.id))["python_executable"] == sys.executable
            for action in ("os-stop", "os-start", "reboot"):
                assert fake.actions(action), action
            assert fake.actions("reboot")[0].body == {"reboot": {"type": "SOFT"}}

            server = await act(manager, server.id, "deprovision", confirm=True)
            assert server.state is State.DEPROVISIONED
            assert fake.servers == {} and fake.keypairs == {}
        finally:
            set_server_runtime(None)


async def test_a_server_without_gpus_suspends_and_resumes(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_medium").id, "start")
        assert (await act(manager, server.id, "suspend")).state is State.SUSPENDED
        assert fake.server().status == "SUSPENDED" and fake.actions("suspend")
        assert (await act(manager, server.id, "resume")).state is State.RUNNING
        assert fake.actions("resume")
        assert (await manager.info(server.id))["python_executable"] == sys.executable


async def test_a_floating_ip_is_allocated_used_and_released(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path, floating_ip_network="public")
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_medium").id, "start")
        assert server.state is State.RUNNING, server.state_reason
        (ip,) = fake.floating_ips.values()
        assert ip["port_id"] == fake.server().port_id
        assert ip["floating_network_id"] == fake.networks[1]["id"]
        # SSH goes to the floating IP (relayed to the fixed address as NAT would).
        assert server.cloud_data["address"] == ip["floating_ip_address"] != fake.server().address
        assert (await manager.info(server.id))["python_executable"] == sys.executable
        await act(manager, server.id, "deprovision", confirm=True)
        assert fake.floating_ips == {} and fake.servers == {}


async def test_no_host_key_on_the_console_means_no_ssh_and_the_vm_is_stopped(
    fake, clouds_yaml, tmp_path
):
    fake.print_host_keys = False  # an image without cloud-init's keys_to_console
    cloud = await make_cloud(fake, clouds_yaml, tmp_path, boot_timeout=1.0)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_medium").id, "start")
        assert server.state is State.OFF
        assert "printed no SSH host key to its console" in server.state_reason
        assert "openstack console log show" in server.state_reason
        assert not server.cloud_data.get("host_key")
        assert fake.server().status == "SHUTOFF"


async def test_a_console_with_fingerprints_only_pins_the_key_that_matches(
    fake, clouds_yaml, tmp_path
):
    fake.print_host_keys = "fingerprints"
    cloud = await make_cloud(fake, clouds_yaml, tmp_path, boot_timeout=2.0)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, "one", machine_type="ci_medium").id, "start")
        assert server.state is State.RUNNING, server.state_reason
        host_key = (fake.server().disk_dir / "ssh_host_ed25519_key.pub").read_text().split()
        assert server.cloud_data["host_key"] == f"{host_key[0]} {host_key[1]}"
        assert (await manager.info(server.id))["python_executable"] == sys.executable

        # A key whose fingerprint the console did not print is never trusted.
        fake.console_fingerprint = "SHA256:" + "A" * 43
        other = await act(manager, create(manager, "two", machine_type="ci_medium").id, "start")
        assert other.state is State.OFF
        assert "is not one server" in other.state_reason and "not trusted" in other.state_reason
        assert not other.cloud_data.get("host_key")


def test_host_keys_come_from_the_last_complete_console_block():
    old = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMXSpK8/KX/SADHvCDPQo3wPu/QQn4lt5DD3G+vlR9NP"
    new = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK64LhTz1UlUTY2p7kKYQL2sD9i7Gz+TtlAV1HuYaIYv"
    block = "-----BEGIN SSH HOST KEY KEYS-----\n{}\n-----END SSH HOST KEY KEYS-----\n"
    log = block.format(old + " root@a") + block.format(f"{new} root@b")
    assert host_key_from_console(log) == new
    assert host_key_from_console(log + "-----BEGIN SSH HOST KEY KEYS-----\n" + old) == new
    assert host_key_from_console("no keys here") == ""
    assert host_key_from_console(block.format("ssh-ed25519 not-base64 root@x")) == ""


def test_gpus_are_read_from_extra_specs():
    assert gpus_of({"pci_passthrough:alias": "v100:1"}) == ("v100", 1)
    assert gpus_of({"pci_passthrough:alias": "a100:2, a100:2"}) == ("a100", 4)
    assert gpus_of({"resources:VGPU": "1"}) == ("vgpu", 1)
    assert gpus_of({"hw:cpu_policy": "dedicated"}) == (None, 0)
    assert gpus_of({"pci_passthrough:alias": "garbage"}) == (None, 0)


# --- errors in words -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 413])
async def test_quota_exceeded_is_explained_and_leaves_nothing(fake, clouds_yaml, tmp_path, status):
    fake.quota["cores"] = 6
    fake.quota_status = status
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_large").id, "start")
        assert server.state is State.DEPROVISIONED
        reason = server.state_reason
        assert "quota is used up" in reason
        assert "Quota exceeded for cores: Requested 8, but already used 0 of 6 cores" in reason
        assert "smaller flavor" in reason and "administrators" in reason
        assert fake.servers == {} and fake.keypairs == {}  # nothing half-made is left


async def test_no_valid_host_for_a_flavor_without_gpus_is_explained(fake, clouds_yaml, tmp_path):
    fake.no_room = True
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_large").id, "start")
        assert server.state is State.DEPROVISIONED
        reason = server.state_reason
        assert "no hypervisor with room for flavor ci_large" in reason
        assert "No valid host was found" in reason and "smaller flavor" in reason
        # The errored server was deleted, not left to count against the quota.
        assert fake.servers == {} and len(cloud.queue) == 0


async def test_an_interrupted_create_carries_on_with_its_server(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_medium").id, "start")
        nova_id = server.cloud_data["nova_id"]
        # As if Jupyter died right after Nova's create call, before recording its answer.
        lost = {k: v for k, v in server.cloud_data.items() if k in ("instance", "keypair")}
        status = await cloud.status(server.id, lost)
        assert status.state is State.RUNNING and status.found == {"nova_id": nova_id}
        progress: list[str] = []
        op = Operation(
            server_id=server.id,
            server_name=server.name,
            config=server.config,
            cloud_data=dict(lost),
            client_public_key=manager.keys.ensure(server.id),
            report=lambda message, _: progress.append(message),
            save=lambda _: None,
        )
        await cloud.create(op)
        assert op.cloud_data["nova_id"] == nova_id and len(fake.servers) == 1
        assert op.cloud_data["host_key"] == server.cloud_data["host_key"]
        assert any("from an interrupted start" in p for p in progress)
        # A namesake that is another server's (its metadata says so) is never taken for ours.
        assert (await cloud.status(server.id + 1, lost)).state is State.DEPROVISIONED


async def test_wrong_credentials_make_the_cloud_unavailable_without_showing_them(fake, tmp_path):
    bad = fake.clouds_yaml(tmp_path / "bad.yaml", password="not-the-password")
    cloud = OpenStackCloud(**{**cloud_traits(fake, bad, tmp_path)})
    available, reason = await cloud.availability()
    assert available is False
    assert "refused the credentials" in reason and "clouds.yaml" in reason
    assert "not-the-password" not in reason


async def test_credentials_may_come_from_the_auth_setting_instead(fake, tmp_path):
    cloud = OpenStackCloud(
        data_dir=str(tmp_path),
        clouds_yaml=str(tmp_path / "none.yaml"),
        region_name=fake.region,
        auth={
            "auth_url": fake.auth_url,
            "username": fake.username,
            "password": fake.password,
            "project_name": fake.project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
    )
    assert await cloud.availability() == (True, "")
    assert "gpu_medium" in {m["name"] for m in cloud.offerings()["machine_types"]}
    assert cloud.offerings()["project"] == fake.project
    assert fake.password not in json.dumps(cloud.offerings())


async def test_a_missing_clouds_yaml_is_explained(tmp_path):
    cloud = OpenStackCloud(
        data_dir=str(tmp_path), clouds_yaml=str(tmp_path / "none.yaml"), cloud="nowhere"
    )
    available, reason = await cloud.availability()
    assert available is False and "clouds.yaml" in reason


async def test_configuration_errors_name_the_field(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    with pytest.raises(ValidationError, match="its flavors: ci_large") as e:
        cloud.make_config({"machine_type": "m1.huge"})
    assert e.value.field == "config.machine_type"
    with pytest.raises(ValidationError, match="brings 1 x v100") as e:
        cloud.make_config({"machine_type": "gpu_tiny", "gpu": None})
    assert e.value.field == "config.gpu"
    with pytest.raises(ValidationError, match="does not apply") as e:
        cloud.make_config({"machine_type": "ci_medium", "zone": "nova"})
    assert e.value.field == "config.zone"
    assert cloud.make_config({"machine_type": "ci_medium"}).gpu is None
    with pytest.raises(TraitError):
        OpenStackCloud(flavor_rates={"gpu_tiny": -1})


# --- the network: chosen per server, else the admin's --------------------------------------


async def test_a_server_created_on_a_chosen_network_gets_its_port_there(
    fake, clouds_yaml, tmp_path
):
    lan = fake.add_network("gpu-lan")
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    assert [n["name"] for n in cloud.offerings()["networks"]] == ["gpu-lan", "private", "public"]
    assert cloud.offerings()["network"] == "private"  # the admin's default: the first internal
    async with openstack_manager(tmp_path, cloud) as manager:
        chosen = create(manager, "lan", machine_type="ci_medium", extra={"network": "gpu-lan"})
        assert chosen.config.extra == {"network": "gpu-lan"}
        server = await act(manager, chosen.id, "start")
        assert server.state is State.RUNNING, server.state_reason
        # Nova was asked for that network, and Neutron's port of the VM is on it.
        assert fake.server().network_id == lan["id"]
        nova_id = fake.server().id
        (port,) = await cloud._call(
            "list ports", lambda c: list(c.network.ports(device_id=nova_id))
        )
        assert port.network_id == lan["id"]
        assert (await manager.info(server.id))["python_executable"] == sys.executable
        # The network is the server's for life: an edit may not move it.
        with pytest.raises(ValidationError, match="chosen when the server is created") as e:
            await manager.update_server(server.id, {"config": {"extra": {"network": "private"}}})
        assert e.value.field == "config.extra.network"
        await act(manager, server.id, "deprovision", confirm=True)
        # Without a choice, the admin's network (here the first internal one).
        plain = await act(manager, create(manager, "plain", machine_type="ci_medium").id, "start")
        assert plain.state is State.RUNNING, plain.state_reason
        assert fake.server().network_id == fake.networks[0]["id"] != lan["id"]


async def test_a_network_the_project_lacks_is_refused_naming_the_field(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    with pytest.raises(ValidationError, match="its networks: private, public") as e:
        cloud.make_config({"machine_type": "ci_medium", "extra": {"network": "elsewhere"}})
    assert e.value.field == "config.extra.network"
    with pytest.raises(ValidationError, match="name or id of a network") as e:
        cloud.make_config({"machine_type": "ci_medium", "extra": {"network": 7}})
    assert e.value.field == "config.extra.network"
    with pytest.raises(ValidationError, match=r"takes config\.extra\.network") as e:
        cloud.make_config({"machine_type": "ci_medium", "extra": {"key_pair": "mine"}})
    assert e.value.field == "config.extra.key_pair"
    # By id as well as by name.
    by_id = {"network": fake.networks[0]["id"]}
    assert cloud.make_config({"machine_type": "ci_medium", "extra": by_id}).extra == by_id


# --- GPUs: exhausted GPUs queue, with positions ----------------------------------------------


async def test_starts_wait_in_line_for_gpus_and_get_them_in_order(fake, clouds_yaml, tmp_path):
    fake.gpu_capacity = 1
    cloud = await make_cloud(fake, clouds_yaml, tmp_path, gpu_retry_interval=0.1)
    async with openstack_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        first = await act(manager, create(manager, "first", machine_type="gpu_tiny").id, "start")
        assert first.state is State.RUNNING
        second = create(manager, "second", machine_type="gpu_medium")
        third = create(manager, "third", machine_type="gpu_large")
        manager.request_action(second.id, "start", None)
        await wait_until(lambda: cloud.queue.position(second.id) == 1)
        manager.request_action(third.id, "start", None)

        def said(server_id: int, text: str) -> bool:
            return any(
                e["kind"] == "progress" and e["server_id"] == server_id and text in e["progress"]
                for e in events
            )

        await wait_until(lambda: said(second.id, "1st in line (all GPUs in use)"))
        await wait_until(lambda: said(third.id, "2nd in line"))
        # Nova was asked for the head of the line only; its errored servers were deleted.
        assert {s.name for s in fake.servers.values()} <= {"jcs-first-1", "jcs-second-2"}
        assert all(s.status != "ERROR" or s.name == "jcs-second-2" for s in fake.servers.values())
        assert not any(
            r.body and r.body.get("server", {}).get("name") == "jcs-third-3"
            for r in fake.calls("POST", "/servers")
        )
        assert manager.get_server(second.id).state is State.STARTING

        await act(manager, first.id, "deprovision", confirm=True)
        await manager.wait_for_action(second.id)
        assert manager.get_server(second.id).state is State.RUNNING
        await wait_until(lambda: cloud.queue.position(third.id) == 1)
        assert manager.get_server(third.id).state is State.STARTING
        await act(manager, second.id, "deprovision", confirm=True)
        await manager.wait_for_action(third.id)
        assert manager.get_server(third.id).state is State.RUNNING
        assert len(cloud.queue) == 0


async def test_a_gpu_start_that_waits_too_long_fails_with_what_to_try(fake, clouds_yaml, tmp_path):
    fake.gpu_capacity = 0
    cloud = await make_cloud(
        fake, clouds_yaml, tmp_path, gpu_retry_interval=0.05, gpu_wait_minutes=0.01
    )
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="gpu_xlarge").id, "start")
        assert server.state is State.DEPROVISIONED
        assert "No GPU freed within 0.01 minutes" in server.state_reason
        assert "No valid host was found" in server.state_reason
        assert "all its GPUs are in use" in server.state_reason
        assert fake.servers == {} and fake.keypairs == {} and len(cloud.queue) == 0


# --- resize while off, and the status watch -------------------------------------------------


async def test_a_new_flavor_while_off_is_a_nova_resize_then_confirm(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="gpu_medium").id, "start")
        await act(manager, server.id, "stop")
        server = await manager.update_server(server.id, {"config": {"machine_type": "gpu_2xlarge"}})
        assert server.config.machine_type == "gpu_2xlarge"
        assert server.config.gpu is not None and server.config.gpu.count == 2
        large = next(f for f in fake.flavors.values() if f["name"] == "gpu_2xlarge")
        assert fake.actions("resize")[0].body == {"resize": {"flavorRef": large["id"]}}
        assert fake.actions("confirmResize")
        vm = fake.server()
        assert vm.flavor["name"] == "gpu_2xlarge" and vm.status == "SHUTOFF"
        assert (await act(manager, server.id, "start")).state is State.RUNNING


async def test_a_server_stopped_outside_jupyter_is_found_off(fake, clouds_yaml, tmp_path):
    cloud = await make_cloud(fake, clouds_yaml, tmp_path)
    async with openstack_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, machine_type="ci_medium").id, "start")
        status = await cloud.status(server.id, server.cloud_data)
        assert status.state is State.RUNNING
        fake.stop_outside()
        status = await cloud.status(server.id, server.cloud_data)
        assert status.state is State.OFF and "stopped outside Jupyter" in status.reason
        fake.servers.clear()
        status = await cloud.status(server.id, server.cloud_data)
        assert status.state is State.DEPROVISIONED


def test_prices_are_the_configured_rate_per_flavor():
    cloud = OpenStackCloud(
        flavor_rates={"gpu_medium": {"running": 1.5, "off": 0.25}, "ci_medium": 0.2}
    )
    config = cloud.make_config({"machine_type": "gpu_medium", "gpu": {"type": "v100"}})
    rates = cloud.price(config)
    assert rates is not None
    assert float(rates.running.hourly) == 1.5 and float(rates.off.hourly) == 0.25
    unset = cloud.price(cloud.make_config({"machine_type": "gpu_large", "gpu": {"type": "v100"}}))
    assert unset is not None and unset.running.hourly == 0
    assert "no rate is set for flavor gpu_large" in unset.running.parts[0].note


# --- through the Jupyter server: the clouds listing and a server's life -----------------------


@pytest.fixture
def jp_server_config(jp_server_config, fake, clouds_yaml, tmp_path):
    config = json.loads(json.dumps(jp_server_config, default=str))
    config["ServerApp"]["authorizer_class"] = jp_server_config["ServerApp"]["authorizer_class"]
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "openstack"]
    traits = cloud_traits(fake, clouds_yaml, tmp_path)
    traits.pop("data_dir")
    config["OpenStackCloud"] = {**traits, "flavor_rates": {"gpu_medium": 0.75}}
    return config


async def test_the_api_offers_the_flavors_and_runs_a_gpu_medium_server(fake, api, wait_for_state):
    code, answer = await api("GET", "clouds")
    assert code == 200
    cloud = next(c for c in answer["clouds"] if c["name"] == "openstack")
    assert cloud["available"] is True, cloud["reason"]
    assert fake.password not in json.dumps(answer)
    offerings = cloud["offerings"]
    flavors = {m["name"]: m for m in offerings["machine_types"]}
    assert flavors["gpu_medium"] == {
        "name": "gpu_medium",
        "family": "gpu",
        "cpu": 4,
        "memory_gb": 8.0,
        "disk_gb": 50,
        "gpu": {"type": "v100", "count": 1},
        "gpus_attachable": False,
        "arch": "x86_64",
    }
    assert flavors["ci_medium"]["gpu"] is None
    assert flavors["vgpu_small"]["gpu"] == {"type": "vgpu", "count": 1}
    v100 = next(g for g in offerings["gpus"] if g["type"] == "v100")
    assert v100["counts"] == [1, 2, 4] and "gpu_medium" in v100["machine_types"]
    assert [n["name"] for n in offerings["networks"]] == ["private", "public"]
    assert offerings["network"] == "private"
    assert {i["name"] for i in offerings["glance_images"]} == set(BOOT_IMAGES.values())
    assert cloud["defaults"]["machine_type"] == "ci_medium"  # the smallest without GPUs

    code, error = await api(
        "POST", "servers", {"name": "x", "cloud": "openstack", "config": {"machine_type": "nope"}}
    )
    assert code == 400 and error["field"] == "config.machine_type", error
    code, error = await api(
        "POST",
        "servers",
        {
            "name": "x",
            "cloud": "openstack",
            "config": {"machine_type": "ci_medium", "extra": {"network": "nope"}},
        },
    )
    assert code == 400 and error["field"] == "config.extra.network", error
    assert "its networks: private, public" in error["message"]

    code, server = await api(
        "POST",
        "servers",
        {"name": "gpu", "cloud": "openstack", "config": {"machine_type": "gpu_medium"}},
    )
    assert code == 201, server
    assert server["config"]["gpu"] == {"type": "v100", "count": 1}
    code, estimate = await api(
        "POST", "estimate", {"cloud": "openstack", "config": {"machine_type": "gpu_medium"}}
    )
    assert code == 200, estimate
    # The configured rate of the flavor (private clouds charge internally, or not at all).
    assert estimate["config"]["gpu"] == {"type": "v100", "count": 1}
    assert estimate["rates"]["running"]["hourly"] == 0.75
    assert estimate["rates"]["off"]["hourly"] == 0
    code, server = await api("POST", f"servers/{server['id']}/actions/start")
    assert code == 202, server
    server = await wait_for_state(server["id"], "running", timeout=60)
    assert "cloud_data" not in server
    assert fake.server().flavor["name"] == "gpu_medium"
