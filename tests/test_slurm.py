"""The slurm cloud on a real one-node Slurm cluster (tests/slurm.py: munged, slurmctld and
slurmd started for the session) whose login node is a real OpenSSH sshd on 127.0.0.1.

The node has two ``a100`` GPUs as a GRES backed by placeholder device files: Slurm allocates
them and sets ``CUDA_VISIBLE_DEVICES`` for real. A first job that holds the whole node shows
a server pending with Slurm's reason.
"""

from __future__ import annotations

import asyncio
import copy
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from .kernel_helpers import execute, process_alive, wait_until
from .slurm import GPU_TYPE, SlurmCluster, start_cluster
from .sshd import start_sshd
from .test_terminals import open_screen


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    started = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield started
    started.cancel_all()
    started.stop()


@pytest.fixture
def login(tmp_path: Path, cluster: SlurmCluster, monkeypatch) -> Iterator[dict[str, Any]]:
    """The cluster's login node: an OpenSSH sshd whose sessions see the cluster's slurm.conf,
    and the user's key for it (in this machine's ~/.ssh for the test)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    key = asyncssh.generate_private_key("ssh-ed25519")
    identity = home / ".ssh" / "id_cluster"
    identity.write_bytes(key.export_private_key())
    identity.chmod(0o600)
    cluster_home = tmp_path / "cluster-home"
    cluster_home.mkdir()
    sshd_dir = tmp_path / "sshd"
    sshd_dir.mkdir()
    server = start_sshd(
        sshd_dir,
        key.export_public_key().decode().strip(),
        env={"HOME": str(cluster_home), "SLURM_CONF": str(cluster.conf)},
        # As on many clusters: no port forwarding on the login node. Kernels' channels reach
        # the job's node through srun instead.
        tcp_forwarding=False,
    )
    yield {"sshd": server, "identity": str(identity), "home": cluster_home}
    cluster.cancel_all()
    server.process.terminate()
    server.process.wait()


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "slurm"]
    config["SlurmCloud"] = {
        "clusters": {
            "hpc": {
                "host": "login",
                "partitions": ["debug", "long"],
                "accounts": [],
                "max_time_minutes": 600,
                "cpu_hour_rate": 0.02,
                "gpu_hour_rates": {GPU_TYPE: 1.5},
            }
        },
        "watch_seconds": 1.0,
        "poll_seconds": 0.3,
        # A one-minute job is told at once that it ends soon; 30-minute ones are not.
        "warn_minutes": 5,
    }
    return config


async def register_login(api, login: dict[str, Any]) -> dict[str, Any]:
    code, registered = await api(
        "POST",
        "hosts",
        {
            "name": "login",
            "hostname": "127.0.0.1",
            "port": login["sshd"].port,
            "username": login["sshd"].username,
            "identity_file": login["identity"],
            # The cluster's Python with ipykernel (here: this one), as an admin would set it.
            "python": sys.executable,
        },
    )
    assert code == 201, registered
    code, trusted = await api(
        "PATCH",
        f"hosts/{registered['id']}",
        {"trust_host_key": registered["pending_host_key_fingerprint"]},
    )
    assert code == 200 and trusted["trusted"], trusted
    return trusted


async def job_server(api, name: str, **config: Any) -> dict[str, Any]:
    extra = {"cluster": "hpc", "partition": "debug", "time_minutes": 30}
    extra.update(config.pop("extra", {}))
    body = {
        "name": name,
        "cloud": "slurm",
        "config": {"cpu": 1, "memory_gb": 0.5, "extra": extra, **config},
    }
    code, server = await api("POST", "servers", body)
    assert code == 201, server
    return server


async def running(api, wait_for_state, server: dict[str, Any]) -> dict[str, Any]:
    code, answer = await api("POST", f"servers/{server['id']}/actions/start")
    assert code == 202, answer
    started = await wait_for_state(server["id"], "running", "error", timeout=90)
    assert started["state"] == "running", started["state_reason"]
    return started


def job_of(jp_serverapp, server_id: int) -> dict[str, Any]:
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    return dict(manager.store.get(server_id).cloud_data)


def squeue(cluster: SlurmCluster, job_id: str) -> str:
    return cluster.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).strip()


async def test_the_create_dialog_offers_what_the_cluster_has(api, login, cluster):
    code, clouds = await api("GET", "clouds")
    slurm = next(c for c in clouds["clouds"] if c["name"] == "slurm")
    assert slurm["available"] is False  # the login node is not registered yet
    assert "login" in slurm["reason"]

    await register_login(api, login)
    code, clouds = await api("GET", "clouds")
    slurm = next(c for c in clouds["clouds"] if c["name"] == "slurm")
    assert slurm["available"] is True, slurm["reason"]
    (hpc,) = slurm["offerings"]["clusters"]
    partitions = {p["name"]: p for p in hpc["partitions"]}
    assert set(partitions) == {"debug", "long"}
    assert partitions["debug"]["max_time_minutes"] == 120
    assert partitions["long"]["max_time_minutes"] == 600  # the admin's limit is lower
    assert partitions["debug"]["cpu"] == cluster.cpus
    assert partitions["debug"]["gpus"] == [{"type": GPU_TYPE, "count": 2}]
    assert slurm["defaults"]["extra"]["partition"] in partitions

    # What the cluster does not have, or the admin does not allow, is refused by field.
    for config, field in [
        ({"extra": {"cluster": "hpc", "partition": "gpu", "time_minutes": 5}}, "partition"),
        ({"extra": {"cluster": "hpc", "partition": "debug", "time_minutes": 121}}, "time_minutes"),
        ({"extra": {"cluster": "nope", "partition": "debug", "time_minutes": 5}}, "cluster"),
        ({"extra": {"cluster": "hpc", "partition": "debug;id", "time_minutes": 5}}, "partition"),
        (
            {"extra": {"cluster": "hpc", "partition": "debug", "time_minutes": 5, "qos": "high"}},
            "qos",
        ),
        ({"extra": {"cluster": "hpc", "partition": "debug", "time_minutes": 5, "x": 1}}, "x"),
        ({"cpu": cluster.cpus + 1}, "cpu"),
        ({"gpu": {"type": "h100", "count": 1}}, "gpu.type"),
        ({"gpu": {"type": GPU_TYPE, "count": 3}}, "gpu.count"),
    ]:
        body = {"name": "bad", "cloud": "slurm", "config": config}
        if "extra" not in config:
            config["extra"] = {"cluster": "hpc", "partition": "debug", "time_minutes": 5}
        code, error = await api("POST", "servers", body)
        fields = (f"config.{field}", f"config.extra.{field}")
        assert code == 400 and error["field"] in fields, (config, error)


async def test_a_server_is_a_job_pending_then_running_then_cancelled(
    api, wait_for_state, login, cluster, jp_serverapp
):
    await register_login(api, login)
    # A first job holds every CPU of the node: ours must wait for it.
    blocker = cluster.run(
        "sbatch",
        "--parsable",
        f"--cpus-per-task={cluster.cpus}",
        "--mem=500M",
        "--output=/dev/null",
        "--wrap",
        "sleep 600",
    ).strip()
    server = await job_server(api, "queued", gpu={"type": GPU_TYPE, "count": 1})
    await api("POST", f"servers/{server['id']}/actions/start")

    def waiting(answer: tuple[int, Any]) -> bool:
        return "waiting: Resources" in ((answer[1]["progress"] or {}).get("message") or "")

    code, pending = await wait_until(
        lambda: api("GET", f"servers/{server['id']}"), predicate=waiting
    )
    assert pending["state"] == "starting"
    assert "0 jobs ahead" in pending["progress"]["message"]
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    assert squeue(cluster, job_id) == "PENDING"
    # The job carries the server's options, from validated values.
    shown = cluster.run("scontrol", "show", "job", "-o", job_id)
    assert f"JobName=jupyter-compute-server-{server['id']}" in shown
    assert "Partition=debug" in shown and "TimeLimit=00:30:00" in shown
    assert f"gres:gpu:{GPU_TYPE}:1" in shown

    # Another one, stopped while its job waits: the job is cancelled, the server is off.
    given_up = await job_server(api, "given-up")
    await api("POST", f"servers/{given_up['id']}/actions/start")
    await wait_until(
        lambda: api("GET", f"servers/{given_up['id']}"),
        # Behind the first (its reason is Priority, not Resources).
        predicate=lambda answer: (
            " waiting: " in ((answer[1]["progress"] or {}).get("message") or "")
        ),
    )
    given_up_job = job_of(jp_serverapp, given_up["id"])["job_id"]
    assert squeue(cluster, given_up_job) == "PENDING"
    code, answer = await api("POST", f"servers/{given_up['id']}/actions/stop")
    assert code == 202, answer
    stopped = await wait_for_state(given_up["id"], "off", "deprovisioned", "error", timeout=60)
    assert stopped["state"] == "off", stopped["state_reason"]
    assert "start cancelled" in stopped["state_reason"]
    assert squeue(cluster, given_up_job) in ("", "CANCELLED")

    cluster.run("scancel", blocker)
    started = await wait_for_state(server["id"], "running", "error", timeout=60)
    assert started["state"] == "running", started["state_reason"]
    data = job_of(jp_serverapp, server["id"])
    assert data["node"] == cluster.node and squeue(cluster, job_id) == "RUNNING"
    workspace = Path(data["workspace"])
    assert workspace == (login["home"] / "jupyter-compute-servers" / str(server["id"])).resolve()

    code, answer = await api("POST", f"servers/{server['id']}/actions/stop")
    assert code == 202, answer
    stopped = await wait_for_state(server["id"], "off", "error", timeout=60)
    assert stopped["state"] == "off", stopped["state_reason"]
    assert squeue(cluster, job_id) in ("", "CANCELLED")
    assert job_of(jp_serverapp, server["id"])["job_id"] is None


async def test_kernels_terminals_and_sync_run_inside_the_allocation(
    api, wait_for_state, login, cluster, jp_serverapp, jp_root_dir, jp_ws_fetch
):
    await register_login(api, login)
    server = await running(
        api, wait_for_state, await job_server(api, "gpu", gpu={"type": GPU_TYPE, "count": 2})
    )
    job_id = job_of(jp_serverapp, server["id"])["job_id"]

    manager = jp_serverapp.kernel_manager
    kernel_id = await manager.start_kernel(kernel_name=f"compute-{server['id']}-python3")
    kernel = manager.get_kernel(kernel_id).client()
    kernel.start_channels()
    await kernel.wait_for_ready(timeout=60)
    _, out = await execute(
        kernel,
        "import os; print(os.environ['SLURM_JOB_ID'], os.environ['CUDA_VISIBLE_DEVICES'], "
        "os.environ['SLURM_STEP_ID'])",
    )
    job, gpus, step = out.split()
    assert job == job_id and gpus == "0,1"  # Slurm's own allocation of the two GPUs
    assert step != "batch"  # a step of the job (srun --overlap), not the batch script
    kernel.stop_channels()

    # A terminal in the Lab: its shell is in the job, attached through srun too.
    data = job_of(jp_serverapp, server["id"])
    code, terminal = await api("POST", f"servers/{server['id']}/terminals")
    assert code == 201, terminal
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    screen.type("echo job-$SLURM_JOB_ID gpus-$CUDA_VISIBLE_DEVICES pid-$$; pwd\r")
    text = await screen.until(f"job-{job_id} gpus-0,1 pid-")
    shell = int(text.split(f"job-{job_id} gpus-0,1 pid-")[-1].split()[0])
    await screen.until(data["workspace"])
    screen.ws.close()

    # Sync reaches the workspace on the shared filesystem.
    (jp_root_dir / "notes.txt").write_text("on the cluster")
    code, run = await api("POST", f"servers/{server['id']}/sync", {})
    assert code == 202, run
    deadline = time.monotonic() + 60
    while run["state"] == "running":
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.1)
        code, run = await api("GET", f"servers/{server['id']}/syncs/{run['id']}")
    assert run["state"] == "completed", run
    assert (Path(data["workspace"]) / "notes.txt").read_text() == "on the cluster"

    # Stop ends what ran in the job, then the job.
    await manager.shutdown_kernel(kernel_id, now=True)
    await api("POST", f"servers/{server['id']}/actions/stop")
    assert (await wait_for_state(server["id"], "off", "error", timeout=60))["state"] == "off"
    assert not process_alive(shell)
    assert squeue(cluster, job_id) in ("", "CANCELLED")


async def test_a_job_cancelled_from_outside_turns_the_server_off_with_the_reason(
    api, wait_for_state, login, cluster, jp_serverapp
):
    await register_login(api, login)
    server = await running(api, wait_for_state, await job_server(api, "outside"))
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    cluster.run("scancel", job_id)
    off = await wait_for_state(server["id"], "off", timeout=30)
    assert off["state_reason"] == f"the server's job {job_id} was cancelled"


async def test_a_job_at_its_time_limit_turns_the_server_off_with_the_reason(
    api, wait_for_state, login, cluster, jp_serverapp
):
    events: list[dict[str, Any]] = []

    class Listener:
        async def __call__(self, logger, schema_id, data):
            events.append(dict(data))

    jp_serverapp.event_logger.add_listener(
        schema_id="https://events.jupyter.org/jupyter_compute_servers/server/v1",
        listener=Listener(),
    )
    await register_login(api, login)
    server = await running(
        api, wait_for_state, await job_server(api, "short", extra={"time_minutes": 1})
    )
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    # Slurm checks time limits about every 30 s: the job ends within a minute and a half.
    off = await wait_for_state(server["id"], "off", timeout=150)
    assert off["state_reason"] == f"the server's job {job_id} reached its time limit (00:01:00)"
    # The user was told before, once, in words.
    told = [e for e in events if e["kind"] == "ending_soon"]
    assert len(told) == 1, told
    assert told[0]["server_id"] == server["id"] and told[0]["state"] == "running"
    assert told[0]["message"].startswith(f"Job {job_id} reaches its time limit at ")
    assert "left): save your work" in told[0]["message"]


async def test_slurmctld_down_for_30_s_loses_nothing(
    api, wait_for_state, login, cluster, jp_serverapp
):
    await register_login(api, login)
    server = await running(api, wait_for_state, await job_server(api, "steady"))
    late = await job_server(api, "late")
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    cluster.stop_ctld()
    try:
        # A start asked meanwhile waits for Slurm to answer, then submits once.
        code, answer = await api("POST", f"servers/{late['id']}/actions/start")
        assert code == 202, answer
        await asyncio.sleep(30)  # the watch asks Slurm every second meanwhile
        code, now = await api("GET", f"servers/{server['id']}")
        assert now["state"] == "running", now["state_reason"]
        code, waiting = await api("GET", f"servers/{late['id']}")
        assert waiting["state"] == "starting", waiting
        # A stop asked meanwhile waits for Slurm (retries with backoff) instead of failing.
        code, answer = await api("POST", f"servers/{server['id']}/actions/stop")
        assert code == 202, answer
        await asyncio.sleep(3)
        code, now = await api("GET", f"servers/{server['id']}")
        assert now["state"] == "stopping", now
    finally:
        cluster.start_ctld()
    stopped = await wait_for_state(server["id"], "off", "error", timeout=120)
    assert stopped["state"] == "off", stopped["state_reason"]
    assert squeue(cluster, job_id) in ("", "CANCELLED")
    started = await wait_for_state(late["id"], "running", "error", timeout=120)
    assert started["state"] == "running", started["state_reason"]
    jobs = cluster.run(
        "squeue", "-h", f"--name=jupyter-compute-server-{late['id']}", "-o", "%i"
    ).split()
    assert jobs == [job_of(jp_serverapp, late["id"])["job_id"]]


@pytest.fixture(autouse=True)
def _no_leftover_jobs(cluster: SlurmCluster) -> Iterator[None]:
    yield
    cluster.cancel_all()
    for name, process in cluster.processes.items():
        assert process.poll() is None, f"{name} exited"
    assert os.path.exists(cluster.conf)
