"""A kernel on a kubernetes server (through the API server's port-forward) side by side with
one reached over plain SSH, in one run.

    python benchmarks/kubernetes.py [--repeat N]

Both servers are OpenSSH sshds on this machine: the kubernetes one is a pod of the fake API
server (tests/fake_kubernetes.py), reached as production does, through ``PortForward`` and the
``pods/portforward`` websocket (aiohttp on both ends, so the fake's half of the relay is in the
figures too: a real API server and kubelet add their own); the baseline is the ``openssh`` test
cloud's sshd reached directly. Medians, interleaved:

(a) opening the server's SSH connection (``SSHConnections.get`` after ``close``);
(b) the round trip of ``execute('pass')`` on a kernel of each (shell reply and IOPub idle);
(c) 20 MiB of printed output until idle, as MB/s.

It prints a table and the ratios (kubernetes / direct), and exits 0 (it is a report).
Everything it starts is stopped and its temporary directory removed at the end. The machine is
shared and noisy: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

from jupyter_compute_servers.clouds.base import SSHEndpoint  # noqa: E402
from jupyter_compute_servers.clouds.kubernetes import KubernetesCloud  # noqa: E402
from jupyter_compute_servers.kernels.runtime import (  # noqa: E402
    KernelRuntime,
    set_server_runtime,
)
from jupyter_compute_servers.ssh import KeyStore  # noqa: E402
from tests.composition import services_for  # noqa: E402
from tests.fake_kubernetes import FakeKubernetes  # noqa: E402
from tests.kernel_helpers import execute, wait_until  # noqa: E402
from tests.sshd import OpenSSHHost, start_sshd  # noqa: E402

OUTPUT_MB = 20


async def round_trip(client: Any) -> float:
    started = time.perf_counter()
    await execute(client, "pass")
    return time.perf_counter() - started


async def output_rate(client: Any) -> float:
    started = time.perf_counter()
    await execute(client, f"print('x' * {OUTPUT_MB * 1024 * 1024})", timeout=120)
    return OUTPUT_MB / (time.perf_counter() - started)


async def main(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-kubernetes-") as temp:
        tmp = Path(temp)
        fake = FakeKubernetes(tmp / "cluster").start()
        keys = KeyStore(tmp / "keys")
        sshd = start_sshd(tmp, keys.ensure(2), {"HOME": str(tmp)})
        direct = OpenSSHHost(data_dir=str(tmp / "direct"))
        direct.endpoint = SSHEndpoint(
            host="127.0.0.1",
            port=sshd.port,
            username=sshd.username,
            host_key=sshd.host_key,
            workspace=str(tmp / "workspace"),
            python=sys.executable,
        )
        cloud = KubernetesCloud(
            data_dir=str(tmp / "kubernetes"),
            kubeconfig=str(fake.kubeconfig(tmp / "kubeconfig")),
            ssh_username=getpass.getuser(),
            poll_interval=0.05,
            check_interval=0.0,
        )
        services = services_for(tmp, {"kubernetes": cloud, "openssh": direct})
        manager = services.manager
        set_server_runtime(KernelRuntime(manager, asyncio.get_running_loop(), str(tmp)))
        kernels: list[AsyncKernelManager] = []
        try:
            pod = manager.create_server({"name": "pod", "cloud": "kubernetes"})
            host = manager.create_server({"name": "host", "cloud": "openssh"})
            assert host.id == 2, "the direct sshd authorizes server 2's key"
            for server in (pod, host):
                manager.request_action(server.id, "start")
                await manager.wait_for_action(server.id)
            await wait_until(lambda: all(manager.get_server(s).kernel_specs for s in (1, 2)))
            specs = KernelSpecManager(kernel_dirs=[str(tmp / "kernels")])
            clients = {}
            for label, server in (("kubernetes", pod), ("direct", host)):
                kernel = AsyncKernelManager(
                    kernel_name=f"compute-{server.id}-python3", kernel_spec_manager=specs
                )
                await kernel.start_kernel()
                kernels.append(kernel)
                client = kernel.client()
                client.start_channels()
                await client.wait_for_ready(timeout=60)
                await execute(client, "pass")  # warm
                clients[label] = (server.id, client)

            figures: dict[str, dict[str, list[float]]] = {
                label: {"connect": [], "round trip": [], "output": []} for label in clients
            }
            for _ in range(repeat):
                for label, (server_id, client) in clients.items():
                    endpoint = await manager.endpoint(server_id)
                    await manager.ssh.close(server_id)
                    started = time.perf_counter()
                    await manager.ssh.get(server_id, functools.partial(_same, endpoint))
                    figures[label]["connect"].append(time.perf_counter() - started)
                    for _ in range(20):
                        figures[label]["round trip"].append(await round_trip(client))
                    figures[label]["output"].append(await output_rate(client))

            print(f"{'':12}{'connect (ms)':>14}{'execute pass (ms)':>20}{'output MB/s':>14}")
            medians: dict[str, tuple[float, float, float]] = {}
            for label, values in figures.items():
                medians[label] = (
                    statistics.median(values["connect"]) * 1000,
                    statistics.median(values["round trip"]) * 1000,
                    statistics.median(values["output"]),
                )
                c, r, o = medians[label]
                print(f"{label:12}{c:14.1f}{r:20.2f}{o:14.1f}")
            k, d = medians["kubernetes"], medians["direct"]
            print(
                f"ratios kubernetes/direct: connect {k[0] / d[0]:.2f}x, round trip "
                f"{k[1] / d[1]:.2f}x, output throughput {k[2] / d[2]:.2f}x"
            )
        finally:
            for kernel in kernels:
                await kernel.shutdown_kernel(now=True)
            set_server_runtime(None)
            manager.request_action(pod.id, "deprovision", {"confirm": True})
            await manager.wait_for_action(pod.id)
            await services.close()
            await cloud.close()
            sshd.process.terminate()
            sshd.process.wait(10)
            fake.close()


async def _same(endpoint: SSHEndpoint) -> SSHEndpoint:
    return endpoint


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(parser.parse_args().repeat))
