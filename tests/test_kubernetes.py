"""The kubernetes cloud against a fake Kubernetes API server at the wire
(tests/fake_kubernetes.py), driven by the real kubernetes_asyncio client from a real
kubeconfig file. The fake's pods run their container's command for real (the package's
sshd.sh, so OpenSSH's sshd), reached through the port-forward websocket: SSH, the agent and
kernels run end to end through the path production uses."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import getpass
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from jupyter_compute_servers.clouds.kubernetes import SSHD_SCRIPT, KubernetesCloud
from jupyter_compute_servers.errors import ValidationError
from jupyter_compute_servers.kernels.runtime import KernelRuntime, set_server_runtime
from jupyter_compute_servers.manager import ComputeServerManager
from jupyter_compute_servers.models import State

from .composition import services_for
from .fake_kubernetes import GPU, FakeKubernetes
from .kernel_helpers import execute, wait_until

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
    services = services_for(tmp_path, {"kubernetes": cloud})
    try:
        yield services.manager
    finally:
        await services.close()
        await cloud.close()


def recorded_events(manager: ComputeServerManager) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    manager.events.listeners.append(events.append)
    return events


async def act(manager: ComputeServerManager, server_id: int, action: str, **body: Any):
    manager.request_action(server_id, action, body or None)
    await manager.wait_for_action(server_id)
    return manager.get_server(server_id)


def create(manager: ComputeServerManager, name: str = "box", **config: Any):
    return manager.create_server({"name": name, "cloud": "kubernetes", "config": config})


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
            assert spec["volumes"][0] == {"name": "disk", "persistentVolumeClaim": {"claimName": name}}
            assert "nodeSelector" not in spec and "tolerations" not in spec

            await wait_until(lambda: manager.get_server(server.id).kernel_specs)
            specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
            kernel = AsyncKernelManager(
                kernel_name=f"compute-{server.id}-python3", kernel_spec_manager=specs
            )
            await kernel.start_kernel()
            client = kernel.client()
            client.start_channels()
            try:
                await client.wait_for_ready(timeout=30)
                _, out = await execute(
                    client,
                    "import os; open(os.path.expanduser('~/kept.txt'), 'w').write('42'); "
                    "print(os.environ['HOME'], os.getcwd())",
                )
                # The kernel runs in the pod, on its disk (the claim mounted as home).
                assert out.split() == [str(claim_dir), str(claim_dir / "work")]
            finally:
                client.stop_channels()
                await kernel.shutdown_kernel()
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


def test_the_pod_command_is_valid_shell():
    subprocess.run(["sh", "-n", "-c", SSHD_SCRIPT], check=True)
