"""What team mode's Kubernetes credentials (the control plane's short-lived tokens,
``control_plane/kubernetes.py`` and ``clouds/kubernetes/team.py``) cost against a kubeconfig in
the user's server.

    python benchmarks/team_kubernetes.py [--repeat R]

In one run: the fake Kubernetes API server (tests/fake_kubernetes.py) and a real JupyterHub
(tests/hub.py) whose control plane holds the fake's admin kubeconfig. The same calls are made
with the real kubernetes_asyncio client, interleaved, (a) with a kubeconfig (the standalone
way: ``api.connect``) and (b) with the control plane's token (``api.connect_team``: the
Configuration's refresh hook runs before each request): ``read pod`` of a pod, ``list pods``,
and ``create + delete secret``. Medians of R, with the ratios (b)/(a); the fake authorizes an
issued token by its RoleBindings, which the admin's skips, so (b) carries that too. Then what a
token costs once per three quarters of its life: ``POST api/kubernetes-credentials`` (the
namespace, account, Role and binding ensured, then a TokenRequest), median of R. Exits 0 (a
report); the machine is shared and noisy: compare the figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_compute_servers.clouds.kubernetes.api import (  # noqa: E402
    KubeAPI,
    connect,
    connect_team,
)
from jupyter_compute_servers.clouds.kubernetes.team import IssuedCredentials  # noqa: E402
from jupyter_compute_servers.control_plane_client import ControlPlaneClient  # noqa: E402
from tests.fake_kubernetes import FakeKubernetes  # noqa: E402
from tests.hub import Hub  # noqa: E402
from tests.postgres import free_port  # noqa: E402

SERVICE = "compute-control"


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code in (401, 403, 405)
    except requests.ConnectionError:
        return False


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}]},
    }


async def measure(fake: FakeKubernetes, kubeconfig: Path, control: ControlPlaneClient, repeat: int):
    direct = await connect(kubeconfig=str(kubeconfig), context="", in_cluster=False, namespace="")
    team = await connect_team(IssuedCredentials(control))
    apis = {"kubeconfig": direct, "control plane": team}
    for api in apis.values():
        await api.call("create pod", api.core.create_namespaced_pod, api.namespace, _pod("bench"))

    async def read(api: KubeAPI) -> None:
        await api.call("read pod", api.core.read_namespaced_pod, "bench", api.namespace)

    async def listed(api: KubeAPI) -> None:
        await api.call("list pods", api.core.list_namespaced_pod, api.namespace)

    async def secret(api: KubeAPI) -> None:
        body = {"metadata": {"name": "bench"}, "stringData": {"k": "v"}}
        await api.call("create secret", api.core.create_namespaced_secret, api.namespace, body)
        await api.call("delete secret", api.core.delete_namespaced_secret, "bench", api.namespace)

    calls: dict[str, Callable[[KubeAPI], Awaitable[None]]] = {
        "read pod": read,
        "list pods": listed,
        "create + delete secret": secret,
    }
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for call, action in calls.items():
            for api in apis.values():
                await action(api)  # warm (connections)
            results[call] = {label: [] for label in apis}
            for _ in range(repeat):  # interleaved, so that noise falls on both
                for label, api in apis.items():
                    started = time.perf_counter()
                    await action(api)
                    results[call][label].append((time.perf_counter() - started) * 1000)
    finally:
        for api in apis.values():
            await api.close()
    return results


def run(repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-team-k8s-"))
    fake = FakeKubernetes(work / "cluster").start()
    kubeconfig = fake.kubeconfig(work / "admin.kubeconfig")
    os.chmod(kubeconfig, 0o600)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyter_compute_servers.control_plane",
        "--kubeconfig",
        str(kubeconfig),
        "--revocations-file",
        str(work / "revocations.json"),
    ]
    hub = Hub(
        "sqlite:///unused",  # no user server is started
        control_plane=None,
        hub_config=(
            f"c.JupyterHub.services.append({{'name': {SERVICE!r}, "
            f"'url': 'http://127.0.0.1:{port}', 'command': {command!r}}})",
            f"c.JupyterHub.load_roles.append({{'name': 'user', 'scopes': ['self', "
            f"'access:services!service={SERVICE}']}})",
        ),
    )
    try:
        url = f"http://127.0.0.1:{port}/services/{SERVICE}/"
        hub._wait(lambda: _answers(url + "api/kubernetes-credentials"), "the control plane")
        made = hub.api(
            "POST",
            "/users/alice/tokens",
            json={"note": "bench", "scopes": [f"access:services!service={SERVICE}"]},
        )
        control = ControlPlaneClient(url, made.json()["token"])
        results = asyncio.run(measure(fake, kubeconfig, control, repeat))
        print(f"{'call':24} {'kubeconfig ms':>14} {'issued token ms':>16} {'ratio':>6}")
        for call, by in results.items():
            a, b = statistics.median(by["kubeconfig"]), statistics.median(by["control plane"])
            print(f"{call:24} {a:14.2f} {b:16.2f} {b / a:6.2f}")
        issues = []
        for _ in range(repeat):
            started = time.perf_counter()
            control.post("api/kubernetes-credentials", {}, what="a token")
            issues.append((time.perf_counter() - started) * 1000)
        print(
            f"a new token (POST api/kubernetes-credentials), once per 3/4 of its life: "
            f"{statistics.median(issues):.1f} ms median"
        )
    finally:
        hub.close()
        fake.close()
        shutil.rmtree(hub.dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    run(parser.parse_args().repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
