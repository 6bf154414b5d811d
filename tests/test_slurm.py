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
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .app_helpers import run_on_server, until_listening
from .jupyter_process import JupyterProcess
from .kernel_helpers import execute, process_alive, wait_until
from .slurm import GPU_TYPE, SlurmCluster, start_cluster
from .sshd import start_sshd_with_identity
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
    identity = home / ".ssh" / "id_cluster"
    cluster_home = tmp_path / "cluster-home"
    cluster_home.mkdir()
    server = start_sshd_with_identity(
        tmp_path / "sshd",
        identity,
        env={"HOME": str(cluster_home), "SLURM_CONF": str(cluster.conf)},
        # As on many clusters: no port forwarding on the login node. Kernels' channels reach
        # the job's node through srun instead.
        tcp_forwarding=False,
    )
    yield {"sshd": server, "identity": str(identity), "home": cluster_home}
    cluster.cancel_all()
    server.process.terminate()
    server.process.wait()


def slurm_server_config(base: dict[str, Any]) -> dict[str, Any]:
    """Jupyter's config with the slurm cloud on the test cluster as ``hpc``."""
    config = copy.deepcopy(base)
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


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return slurm_server_config(jp_server_config)


def login_host(login: dict[str, Any]) -> dict[str, Any]:
    """The request that registers the cluster's login node as the host ``login``."""
    return {
        "name": "login",
        "hostname": "127.0.0.1",
        "port": login["sshd"].port,
        "username": login["sshd"].username,
        "identity_file": login["identity"],
        # The cluster's Python with ipykernel (here: this one), as an admin would set it.
        "python": sys.executable,
    }


async def register_login(api, login: dict[str, Any]) -> dict[str, Any]:
    code, registered = await api("POST", "hosts", login_host(login))
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


def job_times(cluster: SlurmCluster, job_id: str) -> tuple[float, float]:
    """The job's StartTime and EndTime as Slurm recorded them, in seconds since the epoch."""
    shown = cluster.run("env", "SLURM_TIME_FORMAT=%s", "scontrol", "show", "job", "-o", job_id)
    fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
    return float(fields["StartTime"]), float(fields["EndTime"])


async def assert_metered_from_slurm(
    api,
    server_id: int,
    job_id: str,
    cluster: SlurmCluster,
    hourly: float,
    times: tuple[float, float] | None = None,
) -> None:
    """The server's history has the job's running time exactly as Slurm's StartTime and
    EndTime (``times``, else as scontrol shows them), not when we noticed them, and its spend
    is that time at the hourly rate."""
    start, end = times or job_times(cluster, job_id)
    code, answer = await api("GET", f"servers/{server_id}/history")
    history = answer["history"]
    index = max(i for i, h in enumerate(history) if h["state"] == "running")
    # Slurm's times are whole seconds: one within the second of the change before it is
    # recorded as that change's time, so that the history stays in order.
    assert history[index]["at"] == max(start, history[index - 1]["at"]), (history, start)
    assert history[-1]["state"] == "off", history
    assert history[-1]["at"] == max(end, history[-2]["at"]), (history, end)
    code, costs = await api("GET", "costs")
    assert code == 200, costs
    (cost,) = [s["cost"] for s in costs["servers"] if s["id"] == server_id]
    # Within a second's worth (the amount is rounded to a millionth of a dollar).
    assert abs(cost["spent"]["total"] - (end - start) * hourly / 3600) <= hourly / 3600, (
        cost,
        start,
        end,
    )


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
    blocker = cluster.occupy_node()
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
    # Charged from the job's start (not its time in the queue) to its end, at 1 CPU and 1
    # a100 (stopping included: the job held its allocation until scancel ended it).
    await assert_metered_from_slurm(api, server["id"], job_id, cluster, 0.02 + 1.5)


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
    # A step that ignores SIGTERM: the cancelled job stays COMPLETING until Slurm kills it
    # (KillWait, 2 s), longer than a watch round. It is ending, not in error.
    lingering = await asyncio.create_subprocess_exec(
        *("srun", f"--jobid={job_id}", "--overlap", "--unbuffered", "sh", "-c"),
        "trap '' TERM; echo started; exec sleep 601",
        env=cluster.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert lingering.stdout is not None
        assert await asyncio.wait_for(lingering.stdout.readline(), 30) == b"started\n"
        cluster.run("scancel", job_id)
        await wait_until(
            lambda: squeue(cluster, job_id), predicate=lambda state: state == "COMPLETING"
        )
        off = await wait_for_state(server["id"], "off", "error", timeout=30)
    finally:
        if lingering.returncode is None:
            lingering.kill()
        await lingering.wait()
    assert off["state"] == "off", off["state_reason"]
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
    # Held in the queue behind a job that has the whole node, for a few seconds.
    blocker = cluster.occupy_node()
    server = await job_server(api, "short", extra={"time_minutes": 1})
    await api("POST", f"servers/{server['id']}/actions/start")
    await wait_until(
        lambda: api("GET", f"servers/{server['id']}"),
        predicate=lambda answer: (
            "waiting: Resources" in ((answer[1]["progress"] or {}).get("message") or "")
        ),
    )
    await asyncio.sleep(4)
    cluster.run("scancel", blocker)
    started = await wait_for_state(server["id"], "running", "error", timeout=60)
    assert started["state"] == "running", started["state_reason"]
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    # Slurm checks time limits about every 30 s: the job ends within a minute and a half.
    off = await wait_for_state(server["id"], "off", timeout=150)
    assert off["state_reason"] == f"the server's job {job_id} reached its time limit (00:01:00)"
    # Its 4 s and more in the queue cost nothing: charged from Slurm's StartTime to EndTime.
    code, answer = await api("GET", f"servers/{server['id']}/history")
    assert code == 200, answer
    queued = [h for h in answer["history"] if h["state"] == "starting"][-1]
    assert job_times(cluster, job_id)[0] - queued["at"] >= 4
    await assert_metered_from_slurm(api, server["id"], job_id, cluster, 0.02)
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


#: A web app that says which Slurm job it runs in.
JOB_APP = """
import http.server, os, sys
class Job(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("job " + os.environ.get("SLURM_JOB_ID", "none")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Job).serve_forever()
"""


async def test_a_web_app_in_the_job_is_reached_through_the_proxy(
    api, wait_for_state, login, cluster, jp_serverapp, jp_fetch
):
    """The app binds the compute node's loopback; the login node allows no port forwarding,
    so the proxy reaches it through srun, as kernels' channels do."""
    await register_login(api, login)
    server = await running(api, wait_for_state, await job_server(api, "apps"))
    sid = server["id"]
    job_id = job_of(jp_serverapp, sid)["job_id"]
    settings = jp_serverapp.web_app.settings
    manager, apps = settings["compute_servers_manager"], settings["compute_servers_apps"]
    port = await run_on_server(manager, sid, "job", [sys.executable, "-c", JOB_APP, "{port}"])
    await until_listening(apps, sid, port)
    code, listed = await api("GET", f"servers/{sid}/ports")
    assert code == 200 and port in {p["port"] for p in listed["ports"]}
    for _ in range(3):  # each request its own relay (the proxy's pool may keep one)
        response = await jp_fetch(
            "compute-servers", "servers", str(sid), "proxy", str(port), "", raise_error=False
        )
        assert response.code == 200, response.body
        assert response.body == f"job {job_id}".encode()

    await api("POST", f"servers/{sid}/actions/stop")
    assert (await wait_for_state(sid, "off", "error", timeout=60))["state"] == "off"
    response = await jp_fetch(
        "compute-servers", "servers", str(sid), "proxy", str(port), "", raise_error=False
    )
    assert response.code in (404, 409), response.code
    # The app ended with the server (the node is this machine: its loopback is ours).
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                break
        assert time.monotonic() < deadline, f"the app still listens on port {port}"
        await asyncio.sleep(0.2)


def test_a_server_is_edited_after_jupyter_restarts(login, cluster, tmp_path):
    """After a restart nothing has read the cluster's partitions yet: an edit reads them
    and is checked against them."""
    config = tmp_path / "jupyter_config.py"
    config.write_text(
        "c.ComputeServersApp.enabled_clouds = ['slurm']\n"
        "c.SlurmCloud.clusters = {'hpc': {'host': 'login', 'partitions': ['debug', 'long'], "
        "'max_time_minutes': 600}}\n"
    )
    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    first = JupyterProcess(data, root, f"--config={config}")
    try:
        code, host = first.call("POST", "hosts", login_host(login))
        assert code == 201, host
        assert isinstance(host, dict)
        code, trusted = first.call(
            "PATCH", f"hosts/{host['id']}", {"trust_host_key": host["pending_host_key_fingerprint"]}
        )
        assert code == 200, trusted
        extra = {"cluster": "hpc", "partition": "debug", "time_minutes": 30}
        code, server = first.call(
            "POST", "servers", {"name": "edited", "cloud": "slurm", "config": {"extra": extra}}
        )
        assert code == 201, server
        assert isinstance(server, dict)
    finally:
        first.stop()
    second = JupyterProcess(data, root, f"--config={config}")
    try:
        extra = {"cluster": "hpc", "partition": "long", "time_minutes": 300}
        code, edited = second.call("PATCH", f"servers/{server['id']}", {"config": {"extra": extra}})
        assert code == 200, edited
        assert isinstance(edited, dict) and edited["config"]["extra"] == extra
        # Checked against what the cluster offers: debug's limit is 120 minutes.
        extra = {"cluster": "hpc", "partition": "debug", "time_minutes": 300}
        code, error = second.call("PATCH", f"servers/{server['id']}", {"config": {"extra": extra}})
        assert code == 400 and isinstance(error, dict), error
        assert error["field"] == "config.extra.time_minutes", error
    finally:
        second.stop()


@pytest.fixture(autouse=True)
def _no_leftover_jobs(cluster: SlurmCluster) -> Iterator[None]:
    yield
    cluster.cancel_all()
    for name, process in cluster.processes.items():
        assert process.poll() is None, f"{name} exited"
    assert os.path.exists(cluster.conf)
