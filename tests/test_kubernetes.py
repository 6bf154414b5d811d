"""The kubernetes cloud against a fake Kubernetes API server at the wire
(tests/fake_kubernetes.py), driven by the real kubernetes_asyncio client from a real
kubeconfig file. The fake's pods run their container's command for real (the package's
sshd.sh, so OpenSSH's sshd), reached through the port-forward websocket: SSH, the agent and
kernels run end to end through the path production uses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import getpass
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from jupyter_compute_servers.clouds.kubernetes import SSHD_SCRIPT, KubernetesCloud
from jupyter_compute_servers.errors import ValidationError
from jupyter_compute_servers.images.runtime import container_for
from jupyter_compute_servers.kernels.runtime import KernelRuntime, set_server_runtime
from jupyter_compute_servers.models import State

from .composition import act, create_server, recorded_events, services_over
from .fake_kubernetes import GPU, FakeKubernetes
from .kernel_helpers import execute, server_kernel, wait_until

OPENAPI = Path(__file__).parent.parent / "jupyter_compute_servers" / "openapi.json"
T4 = {
    "label": "NVIDIA T4",
    "max_count": 2,
    "node_selector": {"nvidia.com/gpu.product": "Tesla-T4"},
    "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
    "hourly_rate": 0.5,
}


@pytest.fixture
def fake(tmp_path: Path):
    cluster = FakeKubernetes(tmp_path / "cluster").start()
    yield cluster
    cluster.close()


def make_cloud(fake: FakeKubernetes, tmp_path: Path, **traits: Any) -> KubernetesCloud:
    values: dict[str, Any] = {
        "data_dir": str(tmp_path / "kubernetes"),
        "kubeconfig": str(fake.kubeconfig(tmp_path / "kubeconfig")),
        "ssh_username": getpass.getuser(),
        "poll_interval": 0.05,
        "check_interval": 0.0,
        "gpu_types": {"nvidia-t4": T4},
    }
    values.update(traits)
    return KubernetesCloud(**values)


@contextlib.asynccontextmanager
async def k8s_manager(tmp_path: Path, cloud: KubernetesCloud):
    async with services_over(tmp_path, "kubernetes", cloud) as services:
        yield services.manager


create = functools.partial(create_server, cloud="kubernetes")


def progress_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["progress"] for e in events if e["kind"] == "progress"]


# --- a whole server: a kernel through the port-forward, stop keeps the disk ------------------


async def test_a_kernel_runs_in_a_pod_and_the_disk_outlives_a_stop(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        root = tmp_path / "root"
        root.mkdir()
        set_server_runtime(KernelRuntime(manager, asyncio.get_running_loop(), str(root)))
        try:
            server = create(manager, "Pod_Box.1", cpu=2, memory_gb=1.5, disk_gb=5)
            server = await act(manager, server.id, "start")
            assert server.state is State.RUNNING, server.state_reason
            name = server.cloud_data["name"]
            assert name.startswith(f"jcs-pod-box-1-{server.id}-")
            pod = fake.pod(name)
            claim_dir = fake.claim_dir(name)

            # What was asked of the API: the claim, the secret with the pinned host key and
            # the server's client key, and the pod with its resources and mounts.
            claim = fake.calls("POST", "/persistentvolumeclaims")[0].body
            assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
            assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
            secret = fake.secrets[(fake.namespace, name)]
            authorized = base64.b64decode(secret["data"]["authorized_keys"]).decode().split()
            assert authorized[:2] == manager.keys.ensure(server.id).split()[:2]
            spec = pod.body["spec"]
            container = spec["containers"][0]
            assert container["command"] == ["/bin/sh", "-c", SSHD_SCRIPT]
            assert container["resources"] == {
                "requests": {"cpu": "2", "memory": "1536Mi"},
                "limits": {"cpu": "2", "memory": "1536Mi"},
            }
            assert spec["automountServiceAccountToken"] is False
            assert spec["volumes"][0] == {
                "name": "disk",
                "persistentVolumeClaim": {"claimName": name},
            }
            assert "nodeSelector" not in spec and "tolerations" not in spec

            async with server_kernel(manager, server.id, tmp_path / "kernels") as client:
                _, out = await execute(
                    client,
                    "import os; open(os.path.expanduser('~/kept.txt'), 'w').write('42'); "
                    "print(os.environ['HOME'], os.getcwd())",
                )
                # The kernel runs in the pod, on its disk (the claim mounted as home).
                assert out.split() == [str(claim_dir), str(claim_dir / "work")]
            # The SSH connection is the one port-forward websocket of this server.
            forwards = fake.calls("GET", f"/pods/{name}/portforward")
            assert forwards and all(r.query["ports"] == "2222" for r in forwards)

            # Stop deletes the pod and its secret and keeps the claim with what was written.
            server = await act(manager, server.id, "stop")
            assert server.state is State.OFF, server.state_reason
            assert fake.pods == {} and fake.secrets == {}
            assert (claim_dir / "kept.txt").read_text() == "42"
            status = await cloud.status(server.id, server.cloud_data)
            assert status.state is State.OFF and "disk is kept" in status.reason

            # Start again: a new pod on the same claim, with a new pinned host key.
            old_key = secret["data"]["ssh_host_ed25519_key"]
            server = await act(manager, server.id, "start")
            assert server.state is State.RUNNING, server.state_reason
            assert fake.secrets[(fake.namespace, name)]["data"]["ssh_host_ed25519_key"] != old_key
            connection = await manager.ssh.get(
                server.id, lambda: cloud.ssh_endpoint(server.id, server.cloud_data)
            )
            result = await connection.run("sh", "-c", 'cat "$HOME/kept.txt"', check=True)
            assert result.stdout == "42"

            # Deprovision deletes the claim too.
            server = await act(manager, server.id, "deprovision", confirm=True)
            assert server.state is State.DEPROVISIONED
            assert fake.pods == {} and fake.claims == {} and not claim_dir.exists()
        finally:
            set_server_runtime(None)


async def test_jupyter_stopping_closes_the_port_forwards_and_leaves_the_pod(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.RUNNING, server.state_reason
        port = (await cloud.ssh_endpoint(server.id, server.cloud_data)).port
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
    # The services closed the cloud too: nothing listens on Jupyter's loopback any more, and
    # the pod is left running for the next Jupyter.
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert len(fake.pods) == 1


def test_the_pod_command_is_valid_shell():
    subprocess.run(["sh", "-n", "-c", SSHD_SCRIPT], check=True)


# --- GPUs: node selector, tolerations, limits; waiting for a free GPU -------------------------


async def test_a_gpu_server_waits_for_a_free_gpu_saying_why_then_runs(fake, tmp_path):
    fake.node_labels["nvidia.com/gpu.product"] = "Tesla-T4"
    fake.gpus = 0  # every GPU of the node is taken: the scheduler leaves the pod Pending
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        server = create(manager, "gpu", gpu={"type": "nvidia-t4", "count": 1})
        manager.request_action(server.id, "start")
        waiting = "Waiting for a node: No node can take the pod now: 1 node(s) lack the free GPU"
        await wait_until(lambda: any(p.startswith(waiting) for p in progress_of(events)))
        spec = fake.pod().body["spec"]
        assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
        assert spec["tolerations"] == T4["tolerations"]
        assert spec["containers"][0]["resources"]["limits"][GPU] == "1"
        assert manager.get_server(server.id).state is not State.RUNNING
        # Asked while it waits (what a restarted Jupyter would find): not running, and how
        # to end it.
        status = await cloud.status(server.id, manager.get_server(server.id).cloud_data)
        assert status.state is State.ERROR
        assert "is still Pending; stop the server to delete the pod" in status.reason

        def free_a_gpu() -> None:  # another user's pod ends: the scheduler retries
            fake.gpus = 1
            fake._schedule_pending()

        fake.run(free_a_gpu)
        await manager.wait_for_action(server.id)
        server = manager.get_server(server.id)
        assert server.state is State.RUNNING, server.state_reason
        assert fake.gpus == 0
        await act(manager, server.id, "stop")
        assert fake.gpus == 1  # the pod's GPU is given back with the pod; the disk stays
        assert len(fake.claims) == 1


async def test_a_pod_unschedulable_past_the_timeout_fails_with_the_reason_and_advice(
    fake, tmp_path
):
    fake.node_labels["nvidia.com/gpu.product"] = "Tesla-T4"
    cloud = make_cloud(fake, tmp_path, schedule_timeout=0.3)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = create(manager, "gpu", gpu={"type": "nvidia-t4", "count": 2})
        server = await act(manager, server.id, "start")
        assert server.state is State.OFF
        assert "1 node(s) lack the free GPU it asks for (nvidia.com/gpu)" in server.state_reason
        assert "Waited 0.3 s" in server.state_reason
        assert "try later, fewer GPUs or another GPU type" in server.state_reason
        # The pending pod is deleted (it would take the GPU whenever one frees); the disk stays.
        assert fake.pods == {} and len(fake.claims) == 1


async def test_a_node_selector_no_node_matches_is_said(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path, schedule_timeout=0.2)
    fake.gpus = 4  # GPUs, but the node is not labelled as a T4 node
    async with k8s_manager(tmp_path, cloud) as manager:
        server = create(manager, "gpu", gpu={"type": "nvidia-t4", "count": 1})
        server = await act(manager, server.id, "start")
        assert server.state is State.OFF
        assert "1 node(s) are not of its GPU type (node selector)" in server.state_reason


# --- errors in words -----------------------------------------------------------------------


async def test_an_image_that_cannot_be_pulled_fails_the_start_with_the_registry_s_answer(
    fake, tmp_path
):
    fake.unpullable.add("registry.example/missing:1")
    cloud = make_cloud(fake, tmp_path, default_image="registry.example/missing:1")
    async with k8s_manager(tmp_path, cloud) as manager:
        events = recorded_events(manager)
        server = create(manager)
        server = await act(manager, server.id, "start")
        assert server.state is State.OFF
        reason = server.state_reason
        assert (
            "The cluster cannot pull image registry.example/missing:1 (ImagePullBackOff" in reason
        )
        # The kubelet's event says what the registry answered.
        assert (
            'Failed to pull image "registry.example/missing:1"' in reason and "not found" in reason
        )
        assert "imagePullSecret" in reason
        assert any(
            p.startswith("Pulling image registry.example/missing:1 failed once")
            for p in progress_of(events)
        ), progress_of(events)
        assert fake.pods == {}


async def test_an_exceeded_quota_names_the_quota_and_what_to_do(fake, tmp_path):
    fake.node_labels["nvidia.com/gpu.product"] = "Tesla-T4"
    fake.gpus = 8
    fake.quota = {"name": "gpu-quota", "hard": {f"limits.{GPU}": 1}}
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = create(manager, "gpu", gpu={"type": "nvidia-t4", "count": 2})
        server = await act(manager, server.id, "start")
        assert server.state is State.OFF
        assert server.state_reason == "start failed: " + (
            f"Could not create pod {server.cloud_data['name']}: namespace {fake.namespace} has "
            f"no room left in its ResourceQuota gpu-quota (requested limits.nvidia.com/gpu=2, in "
            f"use limits.nvidia.com/gpu=0, limit limits.nvidia.com/gpu=1). Stop or deprovision "
            f"another server there, ask for less, or ask the cluster's administrators to raise "
            f"the quota."
        )
        assert fake.pods == {}
        # Within the quota it starts.
        server = await manager.update_server(
            server.id, {"config": {"gpu": {"type": "nvidia-t4", "count": 1}}}
        )
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason


async def test_rbac_refusals_and_bad_credentials_make_the_cloud_unavailable_with_why(
    fake, tmp_path
):
    fake.forbidden.add(("list", "pods"))
    cloud = make_cloud(fake, tmp_path)
    try:
        available, reason = await cloud.availability()
        assert not available
        assert reason.startswith(
            f"Could not list pods in namespace {fake.namespace}: the Kubernetes API forbids it"
        )
        assert 'cannot list resource "pods"' in reason and "Role in the README" in reason
    finally:
        await cloud.close()
    fake.forbidden.clear()
    stale = make_cloud(
        fake, tmp_path, kubeconfig=str(fake.kubeconfig(tmp_path / "stale", token="expired"))
    )
    try:
        available, reason = await stale.availability()
        assert not available and "did not accept the credentials" in reason
    finally:
        await stale.close()
    missing = make_cloud(fake, tmp_path, namespace="nowhere")
    try:
        available, reason = await missing.availability()
        assert not available and "namespace nowhere does not exist" in reason
    finally:
        await missing.close()
    absent = make_cloud(fake, tmp_path, kubeconfig=str(tmp_path / "no-such-kubeconfig"))
    try:
        available, reason = await absent.availability()
        assert not available and reason.startswith("Cannot load the Kubernetes configuration")
    finally:
        await absent.close()


async def test_an_evicted_pod_is_recorded_off_with_the_kubelet_s_reason(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.RUNNING, server.state_reason
        fake.evict(server.cloud_data["name"])
        status = await cloud.status(server.id, server.cloud_data)
        assert status.state is State.OFF
        assert status.reason == (
            "Kubernetes ended the pod: Evicted: The node was low on resource: memory."
        )
        # Starting again replaces the failed pod.
        await act(manager, server.id, "stop")
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason


async def test_an_image_without_sshd_fails_the_start_with_the_pod_s_own_words(fake, tmp_path):
    # The container cannot find sshd (an image without openssh-server): the pod fails, and its
    # log (terminationMessagePolicy FallbackToLogsOnError) is the reason.
    cloud = make_cloud(fake, tmp_path)
    fake.container_path = "/usr/bin:/bin"  # no sbin directories: no sshd on PATH
    async with k8s_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.OFF
        assert "this image has no OpenSSH server (sshd): install openssh-server" in (
            server.state_reason
        )


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"gpu": {"type": "a100", "count": 1}}, "config.gpu.type", "offered: nvidia-t4"),
        ({"gpu": {"type": "nvidia-t4", "count": 3}}, "config.gpu.count", "at most 2"),
        ({"cpu": 65}, "config.cpu", "at most 64"),
        ({"memory_gb": 0.1}, "config.memory_gb", "between 0.25"),
        ({"disk_gb": 4096}, "config.disk_gb", "at most 2048"),
        ({"zone": "x"}, "config.zone", "does not apply to the kubernetes cloud"),
        ({"extra": {"node": "a"}}, "config.extra.node", "has none"),
    ],
)
async def test_configuration_errors_name_the_field(fake, tmp_path, config, field, words):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        with pytest.raises(ValidationError) as raised:
            create(manager, **config)
        assert raised.value.field == field and words in raised.value.message


async def test_offerings_and_prices(fake, tmp_path):
    cloud = make_cloud(
        fake,
        tmp_path,
        cpu_hourly_rate=0.02,
        memory_gb_hourly_rate=0.005,
        disk_gb_hourly_rate=0.0001,
    )
    async with k8s_manager(tmp_path, cloud):
        offerings = cloud.offerings()
        assert offerings["gpus"] == [{"type": "nvidia-t4", "label": "NVIDIA T4", "max_count": 2}]
        ids = {image["id"] for image in offerings["images"]}
        assert {"python", "scipy", "pytorch"} <= ids  # container images are pods' images
        config = cloud.make_config(
            {
                "cpu": 4,
                "memory_gb": 16,
                "disk_gb": 100,
                "gpu": {"type": "nvidia-t4", "count": 2},
                "image": "pytorch",
                "image_tag": cloud._services.images.get("pytorch")["versions"][0]["tag"],
            }
        )
        rates = cloud.price(config)
        assert rates is not None
        assert float(rates.running.hourly) == pytest.approx(
            4 * 0.02 + 16 * 0.005 + 100 * 0.0001 + 2 * 0.5
        )
        assert float(rates.off.hourly) == pytest.approx(100 * 0.0001)


async def test_a_bigger_disk_grows_the_claim_and_a_class_without_expansion_says_so(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager, disk_gb=5).id, "start")
        server = await act(manager, server.id, "stop")
        name = server.cloud_data["name"]
        server = await manager.update_server(server.id, {"config": {"disk_gb": 8}})
        assert server.config.disk_gb == 8
        claim = fake.claims[(fake.namespace, name)]
        assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
        fake.expandable = False
        with pytest.raises(Exception) as raised:
            await manager.update_server(server.id, {"config": {"disk_gb": 9}})
        assert "must allow volume expansion (allowVolumeExpansion: true)" in str(raised.value)
        assert manager.get_server(server.id).config.disk_gb == 8


async def test_a_container_image_of_the_catalogue_is_the_pod_and_kernels_run_in_it(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        tag = cloud._services.images.get("scipy")["versions"][0]["tag"]
        server = create(manager, "sci", image="scipy", image_tag=tag)
        # No container engine inside the pod: the image is the machine.
        assert container_for(manager, server) is None
        server = await act(manager, server.id, "start")
        assert server.state is State.RUNNING, server.state_reason
        image = fake.pod().body["spec"]["containers"][0]
        assert image["image"] == f"quay.io/jupyter/scipy-notebook:{tag}"
        assert image["imagePullPolicy"] == "IfNotPresent"


# --- through the Jupyter server: the REST API and the manager's watch -------------------------


@pytest.fixture
def jp_server_config(jp_server_config, fake, tmp_path):
    config = json.loads(json.dumps(jp_server_config, default=str))
    config["ServerApp"]["authorizer_class"] = jp_server_config["ServerApp"]["authorizer_class"]
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "kubernetes"]
    config["KubernetesCloud"] = {
        "kubeconfig": str(fake.kubeconfig(tmp_path / "kubeconfig")),
        "ssh_username": getpass.getuser(),
        "poll_interval": 0.05,
        "check_interval": 0.2,
        "gpu_types": {"nvidia-t4": T4},
    }
    return config


async def test_a_server_through_the_api_from_create_to_eviction(fake, api, wait_for_state):
    code, answer = await api("GET", "clouds")
    assert code == 200
    kubernetes = next(c for c in answer["clouds"] if c["name"] == "kubernetes")
    assert kubernetes["available"] is True, kubernetes["reason"]
    assert kubernetes["offerings"]["namespace"] == fake.namespace
    assert kubernetes["offerings"]["gpus"][0]["type"] == "nvidia-t4"
    # The offerings are what the OpenAPI document says (its Offerings schema).
    document = json.loads(OPENAPI.read_text())
    jsonschema.Draft7Validator(
        {"$ref": "#/components/schemas/Offerings", "components": document["components"]}
    ).validate(kubernetes["offerings"])

    code, error = await api(
        "POST",
        "servers",
        {"name": "big", "cloud": "kubernetes", "config": {"gpu": {"type": "h100", "count": 1}}},
    )
    assert code == 400 and error["field"] == "config.gpu.type", error
    assert fake.calls("POST", "/pods") == []

    code, server = await api("POST", "servers", {"name": "api-box", "cloud": "kubernetes"})
    assert code == 201, server
    code, server = await api("POST", f"servers/{server['id']}/actions/start")
    assert code == 202, server
    server = await wait_for_state(server["id"], "running", timeout=60)
    assert "cloud_data" not in server
    secret = next(iter(fake.secrets.values()))
    assert secret["data"]["ssh_host_ed25519_key"] not in json.dumps(server)

    fake.evict(fake.pod().name)  # the Jupyter server's own watch notices
    server = await wait_for_state(server["id"], "off", timeout=30)
    assert "Evicted" in server["state_reason"]


async def test_reboot_replaces_the_pod_on_the_same_disk_with_a_new_pinned_key(fake, tmp_path):
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        first_uid = fake.pod().body["metadata"]["uid"]
        first_key = server.cloud_data["host_key"]
        (fake.claim_dir(server.cloud_data["name"]) / "note").write_text("kept")
        server = await act(manager, server.id, "reboot")
        assert server.state is State.RUNNING, server.state_reason
        assert fake.pod().body["metadata"]["uid"] != first_uid
        assert server.cloud_data["host_key"] != first_key
        connection = await manager.ssh.get(
            server.id, lambda: cloud.ssh_endpoint(server.id, server.cloud_data)
        )
        result = await connection.run("sh", "-c", 'cat "$HOME/note"', check=True)
        assert result.stdout == "kept"


async def test_a_role_without_port_forward_fails_the_start_saying_so(fake, tmp_path):
    fake.forbidden.add(("create", "pods/portforward"))
    cloud = make_cloud(fake, tmp_path)
    async with k8s_manager(tmp_path, cloud) as manager:
        server = await act(manager, create(manager).id, "start")
        assert server.state is State.OFF
        assert f"Could not port-forward to pod {server.cloud_data['name']}" in server.state_reason
        assert "the Kubernetes API forbids it" in server.state_reason
        assert "pods/portforward" in server.state_reason
        assert fake.pods == {}  # the pod nobody can reach is not left running
