"""Compute servers on a Slurm cluster, side by side with a local compute server and a local
kernel, in one run.

    python benchmarks/slurm.py [--repeat N] [--round-trips N]

It starts the tests' one-node Slurm cluster (tests/slurm.py: munged, slurmctld, slurmd in a
temp dir; needs slurm-wlm and munge) and a real OpenSSH sshd as its login node
(tests/sshd.py), registers the login node (its key pinned from known_hosts), and measures:

(a) start: from asking a start to the server ``running``: the slurm server (sbatch, the
    scheduler, the job running on its node) and the local one (a sandbox's SSH server), each
    started and stopped ``--repeat`` times, interleaved; medians;
(b) running to kernel ready: ``AsyncKernelManager.start_kernel()`` and ``wait_for_ready()``
    for a local ipykernel, the local server's kernel and the slurm server's kernel (the agent
    started in the job with ``srun --overlap``); the first start of each remote kind is cold
    (it includes the SSH connection and the agent) and reported apart; medians;
(c) the round trip of ``execute('pass')`` (shell reply and IOPub idle), median and p95, for
    the three kernels.

It prints a table and ratios against the local baselines, and exits 0 when it could measure.
Everything it started is stopped and its temporary directory removed. The machine is shared
and noisy: compare the figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from kernels import (  # noqa: E402  (benchmarks/kernels.py: the shared helpers)
    Resources,
    Target,
    Workdir,
    cli,
    execute,
    median,
    p95,
    start_kernel,
)


def start_cluster_and_login(
    work: Workdir, *, gpu_devices: list[str] | None = None, gpu_type: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The tests' one-node cluster (``gpu_devices``: real GPUs as its GRES) and an OpenSSH
    login node whose key is pinned in ``known_hosts``; Jupyter's config (in
    ``JUPYTER_CONFIG_DIR``) enables the slurm cloud on it as ``hpc``. Answers the cluster, the
    sshd and what registering the login node as a host needs. The caller stops both."""
    import asyncssh

    from tests.slurm import GPU_TYPE, start_cluster
    from tests.sshd import start_sshd

    os.environ["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
    )
    home = work.root / "home"
    (home / ".ssh").mkdir(parents=True)
    os.environ["HOME"] = str(home)
    cluster = start_cluster(
        work.root / "slurm", gpu_devices=gpu_devices, gpu_type=gpu_type or GPU_TYPE
    )
    try:
        key = asyncssh.generate_private_key("ssh-ed25519")
        identity = home / ".ssh" / "id_cluster"
        identity.write_bytes(key.export_private_key())
        identity.chmod(0o600)
        cluster_home = work.root / "cluster-home"
        cluster_home.mkdir()
        (work.root / "sshd").mkdir()
        sshd = start_sshd(
            work.root / "sshd",
            key.export_public_key().decode().strip(),
            env={"HOME": str(cluster_home), "SLURM_CONF": str(cluster.conf)},
        )
    except BaseException:
        cluster.stop()
        raise
    # The login node's key, pinned from known_hosts as an admin would have it.
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n")
    config = {
        "ComputeServersApp": {
            "enabled_clouds": ["local", "slurm"],
            "data_dir": str(work.data_dir),
        },
        "SlurmCloud": {
            "clusters": {"hpc": {"host": "login", "partitions": ["debug"]}},
            "poll_seconds": 0.1,
        },
    }
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config))
    login = {"port": sshd.port, "username": sshd.username, "identity": str(identity)}
    return cluster, sshd, login


async def register_login(services: Any, login: dict[str, Any]) -> None:
    """Register the login node as the host ``login`` (its key pinned from known_hosts)."""
    host = await services.hosts.create(
        {
            "name": "login",
            "hostname": "127.0.0.1",
            "port": login["port"],
            "username": login["username"],
            "identity_file": login["identity"],
            "python": sys.executable,
        }
    )
    if not host.trusted or not host.inventory:
        raise RuntimeError(f"the login node is not ready: {host.inventory_error}")


async def wait_state(manager: Any, server_id: int, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while True:
        server = manager.store.get(server_id)
        if server.operation is None and server.state.value in ("running", "off", "error"):
            return str(server.state.value)
        if time.monotonic() > deadline:
            raise RuntimeError(f"server {server_id} stayed {server.state.value}")
        await asyncio.sleep(0.02)


async def measure_starts(
    login: dict[str, Any], repeat: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Register the login node, create both servers, start and stop each ``repeat`` times;
    leave both running."""
    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services

    services = build_services(load_settings())
    manager = services.manager
    try:
        await register_login(services, login)
        ids = {}
        for label, body in (
            (
                "slurm",
                {
                    "name": "hpc-job",
                    "cloud": "slurm",
                    "config": {
                        "cpu": 1,
                        "memory_gb": 0.5,
                        "extra": {"cluster": "hpc", "partition": "debug", "time_minutes": 60},
                    },
                },
            ),
            ("local", {"name": "sandbox", "cloud": "local", "config": {"cpu": 1}}),
        ):
            ids[label] = (await manager.create_server_on_available_cloud(body)).id
        times: dict[str, list[float]] = {"slurm": [], "local": []}
        for round_ in range(repeat):
            for label, server_id in ids.items():
                started = time.perf_counter()
                manager.request_action(server_id, "start")
                state = await wait_state(manager, server_id)
                if state != "running":
                    reason = manager.store.get(server_id).state_reason
                    raise RuntimeError(f"{label} server: {state}: {reason}")
                times[label].append(time.perf_counter() - started)
                if round_ < repeat - 1:
                    manager.request_action(server_id, "stop")
                    await wait_state(manager, server_id)
        return times, ids
    finally:
        await services.close()


async def measure_kernels(
    res: Resources, specs: dict[str, str], cwd: Path, repeat: int, round_trips: int
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, list[float]]]:
    ready: dict[str, list[float]] = {label: [] for label in specs}
    cold: dict[str, float] = {}
    for label, spec in specs.items():  # the first start of each: cold
        km, kc, _, seconds, _ = await start_kernel(res, spec, cwd)
        cold[label] = seconds
        kc.stop_channels()
        res.clients.remove(kc)
        await km.shutdown_kernel(now=True)
        res.kernel_managers.remove(km)
    for _ in range(repeat):
        for label, spec in specs.items():
            km, kc, _, seconds, _ = await start_kernel(res, spec, cwd)
            ready[label].append(seconds)
            kc.stop_channels()
            res.clients.remove(kc)
            await km.shutdown_kernel(now=True)
            res.kernel_managers.remove(km)
    trips: dict[str, list[float]] = {label: [] for label in specs}
    kernels = {}
    for label, spec in specs.items():
        km, kc, *_ = await start_kernel(res, spec, cwd)
        Target.disconnect(res, kc)
        kernels[label] = km
    targets = [
        Target(label, functools.partial(km.get_connection_info, session=False))
        for label, km in kernels.items()
    ]
    clients = {target.label: await target.connect(res) for target in targets}
    for _ in range(round_trips):
        for label, kc in clients.items():
            seconds, _ = await execute(kc, "pass")
            trips[label].append(seconds)
    return ready, cold, trips


def report(
    starts: dict[str, list[float]],
    ready: dict[str, list[float]],
    cold: dict[str, float],
    trips: dict[str, list[float]],
) -> None:
    print(f"\n(a) start to running (median of {len(starts['slurm'])})")
    for label, values in starts.items():
        print(f"  {label:38s} {median(values):8.3f} s")
    ratio = median(starts["slurm"]) / median(starts["local"])
    print(f"  {'ratio slurm / local':38s} {ratio:8.2f}x")
    print("\n(b) kernel start to ready (median; cold first start apart)")
    base = median(ready["local ipykernel"])
    for label, values in ready.items():
        print(
            f"  {label:38s} {median(values):8.3f} s   cold {cold[label]:6.3f} s   "
            f"{median(values) / base:5.2f}x local"
        )
    print("\n(c) execute('pass') round trip")
    base = median(trips["local ipykernel"])
    for label, values in trips.items():
        print(
            f"  {label:38s} median {median(values) * 1000:7.2f} ms   p95 "
            f"{p95(values) * 1000:7.2f} ms   {median(values) / base:5.2f}x local"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=200)
    opts = parser.parse_args(argv)

    work = Workdir(Path(tempfile.mkdtemp(prefix="jcs-bench-slurm-")))
    cluster = sshd = None
    res = Resources()
    ids: dict[str, int] = {}
    status = 1
    try:
        print("Starting a one-node Slurm cluster and its login node...", file=sys.stderr)
        cluster, sshd, login = start_cluster_and_login(work)
        print(f"(a) {opts.repeat} starts of each server...", file=sys.stderr)
        starts, ids = asyncio.run(measure_starts(login, opts.repeat))
        specs = {
            "local ipykernel": "python3",
            "local compute server kernel": f"compute-{ids['local']}-python3",
            "slurm job kernel (srun --overlap)": f"compute-{ids['slurm']}-python3",
        }

        async def kernels() -> Any:
            try:
                return await measure_kernels(
                    res, specs, work.workspace, opts.repeat, opts.round_trips
                )
            finally:
                await res.close_async()
                res.close_runtime()

        print("(b, c) kernels...", file=sys.stderr)
        ready, cold, trips = asyncio.run(kernels())
        report(starts, ready, cold, trips)
        status = 0
    except KeyboardInterrupt:
        status = 130
    except Exception as e:
        print(f"The benchmark failed: {type(e).__name__}: {e}", file=sys.stderr)
        traceback.print_exc()
    finally:
        res.kill_leftovers()
        for name in ("hpc-job", "sandbox"):
            if ids:
                try:
                    cli(work, "stop", name)
                except Exception as e:
                    print(f"Could not stop {name}: {e}", file=sys.stderr)
        if cluster is not None:
            cluster.cancel_all()
            cluster.stop()
        if sshd is not None:
            sshd.process.terminate()
            sshd.process.wait()
        shutil.rmtree(work.root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
