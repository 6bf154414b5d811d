"""The slurm cloud's metering on a cluster that keeps accounting: tests/slurm.py's one-node
cluster with MariaDB and slurmdbd (``accounting_storage/slurmdbd``), so that ``sacct`` lists
its jobs for real. tests/test_slurm.py's cluster keeps none: there sacct answers that
accounting storage is disabled and ``scontrol show job``'s times are used instead.

Here slurmctld forgets an ended job 2 s after it ended (``MinJobAge``, at its next purge):
after that only sacct knows when the job ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .kernel_helpers import wait_until
from .slurm import SlurmCluster, start_cluster
from .test_slurm import (
    assert_metered_from_slurm,
    job_of,
    job_server,
    login,  # noqa: F401 - a fixture: the login node, of this module's cluster
    register_login,
    running,
    slurm_server_config,
    squeue,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    started = start_cluster(
        tmp_path_factory.mktemp("slurm-accounting"), accounting=True, min_job_age=2
    )
    yield started
    started.cancel_all()
    started.stop()


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    config = slurm_server_config(jp_server_config)
    # Nothing looks at a running server unless the test asks (``watch_once``): its job can
    # end and be forgotten by slurmctld unnoticed, as while Jupyter is down.
    config["SlurmCloud"]["watch_seconds"] = 3600.0
    config["ComputeServersApp"]["health_check_interval"] = 0
    return config


async def accounted_end(cluster: SlurmCluster, job_id: str) -> dict[str, str]:
    """The job's sacct record once it has its End (slurmctld sends it to slurmdbd as the job
    ends, asynchronously)."""
    deadline = time.monotonic() + 30
    while True:
        record = cluster.sacct(job_id)
        if record.get("End", "").isdigit():
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.2)


async def test_a_job_held_in_the_queue_is_charged_from_its_accounted_start_to_its_end(
    api,
    wait_for_state,
    login,  # noqa: F811 - the fixture imported above
    cluster,
    jp_serverapp,
):
    await register_login(api, login)
    # A first job holds every CPU of the node: ours waits for it.
    blocker = cluster.occupy_node()
    server = await job_server(api, "queued")
    await api("POST", f"servers/{server['id']}/actions/start")
    await wait_until(
        lambda: api("GET", f"servers/{server['id']}"),
        predicate=lambda answer: (
            "waiting: Resources" in ((answer[1]["progress"] or {}).get("message") or "")
        ),
    )
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    cluster.run("scancel", blocker)
    started = await wait_for_state(server["id"], "running", "error", timeout=60)
    assert started["state"] == "running", started["state_reason"]

    code, answer = await api("POST", f"servers/{server['id']}/actions/stop")
    assert code == 202, answer
    stopped = await wait_for_state(server["id"], "off", "error", timeout=60)
    assert stopped["state"] == "off", stopped["state_reason"]
    record = await accounted_end(cluster, job_id)
    assert record["State"].startswith("CANCELLED"), record
    code, answer = await api("GET", f"servers/{server['id']}/history")
    queued = [h for h in answer["history"] if h["state"] == "starting"][-1]
    assert float(record["Start"]) >= queued["at"]  # the queue is not charged
    times = (float(record["Start"]), float(record["End"]))
    await assert_metered_from_slurm(api, server["id"], job_id, cluster, 0.02, times)


async def test_a_job_that_slurmctld_forgot_ends_the_server_at_its_accounted_end(
    api,
    wait_for_state,
    login,  # noqa: F811 - the fixture imported above
    cluster,
    jp_serverapp,
):
    await register_login(api, login)
    server = await running(api, wait_for_state, await job_server(api, "forgotten"))
    job_id = job_of(jp_serverapp, server["id"])["job_id"]
    cluster.run("scancel", job_id)
    # slurmctld purges it (MinJobAge=2, at its next purge of old jobs): then only sacct knows
    # the job and when it ended.
    deadline = time.monotonic() + 150
    while cluster.run("scontrol", "show", "job", "-o", job_id, check=False).strip():
        assert time.monotonic() < deadline, "slurmctld kept the ended job"
        await asyncio.sleep(0.5)
    assert squeue(cluster, job_id) == ""
    record = await accounted_end(cluster, job_id)
    code, unnoticed = await api("GET", f"servers/{server['id']}")
    assert unnoticed["state"] == "running", unnoticed  # nothing looked meanwhile

    # The watch's next round (as when Jupyter starts again after the job was forgotten).
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    (changed,) = await manager.watch_once()
    assert changed.id == server["id"]
    code, off = await api("GET", f"servers/{server['id']}")
    assert code == 200 and off["state"] == "off", off
    # Why, from sacct's state; when, from sacct's End (not when the watch noticed).
    assert off["state_reason"] == f"the server's job {job_id} was cancelled"
    times = (float(record["Start"]), float(record["End"]))
    await assert_metered_from_slurm(api, server["id"], job_id, cluster, 0.02, times)


@pytest.fixture(autouse=True)
def _no_leftover_jobs(cluster: SlurmCluster) -> Iterator[None]:
    yield
    cluster.cancel_all()
    for name, process in cluster.processes.items():
        assert process.poll() is None, f"{name} exited"
