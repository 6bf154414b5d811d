"""Sharing GPUs on an on-prem host, over a real OpenSSH sshd on 127.0.0.1 and the real agent:
MIG instances (made by an admin) given as GPUs of their own, shares of a GPU through MPS packed
without exceeding it and queued when they do not fit, their limits and the GPU's MPS control
daemon, GPU use by slice in the metrics and the idle check, and the 400s for what is not
offered.

CI has no GPU: the host side runs the stand-in NVML of tests/fake_nvml (MIG instances, running
compute processes and their samples) and the stand-in ``nvidia-cuda-mps-control`` of
tests/fake_nvml/bin, on the host's PATH, which logs what it was started with and told.
Every test runs with the store on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.models import GpuSpec

from .kernel_helpers import execute, wait_until
from .sshd import start_sshd_with_identity
from .test_billing_api import Clock
from .test_hosts import jp_kernel

FAKE_NVML = Path(__file__).parent / "fake_nvml"
A100 = "NVIDIA A100-SXM4-80GB"
MIG_1G = f"{A100} MIG 1g.10gb"
MIG_3G = f"{A100} MIG 3g.40gb"
GIB = 2**30


def gpu_layout() -> list[dict[str, Any]]:
    """GPU 0 split by its admin into MIG instances (two 1g.10gb, one 3g.40gb); GPUs 1 and 2
    whole."""
    return [
        {
            "name": A100,
            "uuid": "GPU-a100-mig",
            "memory_total": 80 * GIB,
            "mig": True,
            "mig_devices": [
                {"name": MIG_1G, "uuid": "MIG-1g-a", "memory_total": 10 * GIB},
                {"name": MIG_1G, "uuid": "MIG-1g-b", "memory_total": 10 * GIB},
                {"name": MIG_3G, "uuid": "MIG-3g-a", "memory_total": 40 * GIB},
            ],
        },
        *(
            {
                "name": A100,
                "uuid": f"GPU-a100-{i}",
                "memory_total": 80 * GIB,
                "memory_used": 0,
                "utilization": 0,
            }
            for i in (1, 2)
        ),
    ]


@pytest.fixture
def host(request, tmp_path: Path, home: Path, host_home: Path):
    """An OpenSSH sshd standing for a GPU host (stand-in NVML and MPS daemon on its paths; a
    test named ``test_without_mps_tools...`` gets no MPS daemon)."""
    identity = home / ".ssh" / "id_lab"
    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps(gpu_layout()))
    server = start_sshd_with_identity(
        tmp_path / "sshd",
        identity,
        env={
            "HOME": str(host_home),
            "PYTHONPATH": str(FAKE_NVML),
            "FAKE_NVML_GPUS": str(gpus),
            "PATH": (
                "/usr/local/bin:/usr/bin:/bin"
                if request.node.name.startswith("test_without_mps_tools")
                else f"{FAKE_NVML / 'bin'}:/usr/local/bin:/usr/bin:/bin"
            ),
        },
    )
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {server.host_key}\n")
    yield {"sshd": server, "identity": str(identity), "home": host_home, "gpus": gpus}
    # Whatever MPS daemon a failed test left behind.
    for pid_file in host_home.glob(".jupyter-compute-servers/mps/*/pipe/*.pid"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    server.process.terminate()
    server.process.wait()


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], db_url: str) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "ssh"]
    config["ComputeServersApp"]["db_url"] = db_url
    config["ComputeServerCosts"] = {"check_interval": 0, "idle_gpu_threshold": 10}
    return config


async def register(api, host: dict[str, Any], **extra: Any) -> dict[str, Any]:
    code, registered = await api(
        "POST",
        "hosts",
        {
            "name": "lab",
            "hostname": "127.0.0.1",
            "port": host["sshd"].port,
            "username": host["sshd"].username,
            "identity_file": host["identity"],
            "python": sys.executable,
            **extra,
        },
    )
    assert code == 201 and registered["trusted"], registered
    return registered


async def server_on(
    api, host_id: int, name: str, gpu: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    config = {"cpu": 1, "memory_gb": 0.25, "extra": {"host": host_id}, "gpu": gpu}
    code, server = await api(
        "POST", "servers", {"name": name, "cloud": "ssh", "config": config, **fields}
    )
    assert code == 201, server
    return server


async def ssh_offerings(api) -> dict[str, Any]:
    code, answer = await api("GET", "clouds")
    assert code == 200
    (ssh,) = [c for c in answer["clouds"] if c["name"] == "ssh"]
    return ssh["offerings"]


async def start(api, wait_for_state, server_id: int) -> dict[str, Any]:
    await api("POST", f"servers/{server_id}/actions/start")
    server = await wait_for_state(server_id, "running", "error", "off")
    assert server["state"] == "running", server["state_reason"]
    return server


async def environ(jp_serverapp, server_id: int, *names: str) -> list[str]:
    kernel = await jp_kernel(jp_serverapp, server_id)
    try:
        _, out = await execute(
            kernel, f"import os; print(*[os.environ.get(n, '-') for n in {list(names)!r}])"
        )
    finally:
        kernel.stop_channels()
    return out.split()


def mps_log(host: dict[str, Any], uuid: str) -> list[dict[str, Any]]:
    path = host["home"] / ".jupyter-compute-servers" / "mps" / uuid / "log" / "control.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_mig_instances_are_gpus_of_their_own(api, wait_for_state, host, jp_serverapp):
    registered = await register(api, host)
    (parent, *_) = registered["inventory"]["gpus"]
    assert parent["mig"] and [d["uuid"] for d in parent["mig_devices"]] == [
        "MIG-1g-a",
        "MIG-1g-b",
        "MIG-3g-a",
    ]
    assert parent["mig_devices"][0]["mig_profile"] == "1g.10gb"
    offerings = await ssh_offerings(api)
    (offered,) = offerings["hosts"]
    counts = {g["type"]: (g["count"], g["mig_profile"]) for g in offered["gpus"]}
    # The GPU in MIG mode is not offered whole: its instances are.
    assert counts == {MIG_1G: (2, "1g.10gb"), MIG_3G: (1, "3g.40gb"), A100: (2, None)}

    first = await server_on(api, registered["id"], "first", {"type": MIG_1G})
    second = await server_on(api, registered["id"], "second", {"type": MIG_1G})
    third = await server_on(api, registered["id"], "third", {"type": MIG_1G})
    for server in (first, second):
        await start(api, wait_for_state, server["id"])
    seen = {
        (await environ(jp_serverapp, s["id"], "CUDA_VISIBLE_DEVICES"))[0] for s in (first, second)
    }
    assert seen == {"MIG-1g-a", "MIG-1g-b"}

    # Its metrics are its instance's (which has no utilization reading in NVML).
    code, metrics = await api("GET", f"servers/{first['id']}/metrics")
    assert code == 200
    (gpu,) = metrics["gpus"]
    assert gpu["uuid"] in seen and gpu["name"] == MIG_1G and gpu["utilization"] is None
    assert gpu["memory_total"] == 10 * GIB and gpu["own"]["processes"] == 0

    # Both 1g instances taken: the third waits in the same queue as whole GPUs, then gets one.
    await api("POST", f"servers/{third['id']}/actions/start")
    await wait_until(
        lambda: api("GET", f"servers/{third['id']}"),
        predicate=lambda a: "1st in line" in (a[1]["progress"] or {}).get("message", ""),
    )
    await api("POST", f"servers/{first['id']}/actions/stop")
    await wait_for_state(first["id"], "off")
    assert (await wait_for_state(third["id"], "running", "error", "off"))["state"] == "running"

    # A profile the admin has not made: 400, naming what there is.
    code, error = await api(
        "POST",
        "servers",
        {
            "name": "big",
            "cloud": "ssh",
            "config": {"extra": {"host": registered["id"]}, "gpu": {"type": f"{A100} MIG 7g.80gb"}},
        },
    )
    assert code == 400 and error["field"] == "config.gpu.type", error
    assert MIG_1G in error["message"] and MIG_3G in error["message"]


async def test_shares_are_packed_limited_and_queued(api, wait_for_state, host, jp_serverapp):
    # GPU 1 may be shared in quarters and halves; GPU 2 stays whole.
    registered = await register(
        api, host, gpu_fractions={"GPU-a100-1": [0.25, 0.5]}, gpu_rates={A100: 2.0}
    )
    host_id = registered["id"]
    offerings = await ssh_offerings(api)
    (a100,) = [g for g in offerings["hosts"][0]["gpus"] if g["type"] == A100]
    assert a100["fractions"] == [0.25, 0.5]

    # Priced per share.
    code, estimate = await api(
        "POST",
        "estimate",
        {
            "cloud": "ssh",
            "config": {"extra": {"host": host_id}, "gpu": {"type": A100, "fraction": 0.25}},
        },
    )
    assert code == 200 and estimate["rates"]["running"]["hourly"] == 0.5, estimate

    # (This machine has 2 CPUs, so at most two slices of a CPU each run at once.)
    half = await server_on(api, host_id, "half", {"type": A100, "fraction": 0.5})
    quarter = await server_on(api, host_id, "quarter", {"type": A100, "fraction": 0.25})
    whole = await server_on(api, host_id, "whole", {"type": A100})
    slices = jp_serverapp.web_app.settings["compute_servers_manager"].hosts.hosts
    await start(api, wait_for_state, half["id"])
    assert slices.slice_of(half["id"]).gpu_uuids == ["GPU-a100-1"]
    await start(api, wait_for_state, whole["id"])
    assert slices.slice_of(whole["id"]).gpu_uuids == ["GPU-a100-2"]  # never a shared GPU
    await api("POST", f"servers/{whole['id']}/actions/stop")
    await wait_for_state(whole["id"], "off")
    await start(api, wait_for_state, quarter["id"])
    assert slices.slice_of(quarter["id"]).gpu_uuids == ["GPU-a100-1"]  # packed onto it

    # The share's processes get its limits and the GPU's MPS daemon, started once for it.
    visible, threads, memory, pipe = await environ(
        jp_serverapp,
        half["id"],
        "CUDA_VISIBLE_DEVICES",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT",
        "CUDA_MPS_PIPE_DIRECTORY",
    )
    assert (visible, threads, memory) == ("GPU-a100-1", "50", f"0={40 * 1024}M")
    (quarter_threads, quarter_memory) = await environ(
        jp_serverapp,
        quarter["id"],
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT",
    )
    assert (quarter_threads, quarter_memory) == ("25", f"0={20 * 1024}M")
    (started,) = [e for e in mps_log(host, "GPU-a100-1") if e["event"] == "started"]
    assert started["CUDA_VISIBLE_DEVICES"] == "GPU-a100-1"
    assert started["CUDA_MPS_PIPE_DIRECTORY"] == pipe
    assert mps_log(host, "GPU-a100-2") == []  # a whole GPU runs no MPS

    # 0.75 of the GPU is given: another half waits in line until the quarter's room is back.
    other = await server_on(api, host_id, "other", {"type": A100, "fraction": 0.5})
    await api("POST", f"servers/{other['id']}/actions/start")
    waiting = await wait_until(
        lambda: api("GET", f"servers/{other['id']}"),
        predicate=lambda a: "1st in line" in (a[1]["progress"] or {}).get("message", ""),
    )
    assert "0.5 share of a" in waiting[1]["progress"]["message"]
    assert "0.25 of one free" in waiting[1]["progress"]["message"]
    await api("POST", f"servers/{quarter['id']}/actions/stop")
    await wait_for_state(quarter["id"], "off")
    assert (await wait_for_state(other["id"], "running", "error", "off"))["state"] == "running"
    assert slices.slice_of(other["id"]).gpu_uuids == ["GPU-a100-1"]

    # The last share gone, the GPU's MPS daemon is told to quit.
    for server in (half, other):
        await api("POST", f"servers/{server['id']}/actions/stop")
        await wait_for_state(server["id"], "off")
    assert [e["command"] for e in mps_log(host, "GPU-a100-1") if e["event"] == "command"] == [
        "quit"
    ]


async def test_one_unix_user_per_gpu_mps_server(api, host, jp_serverapp):
    """A GPU's shares go to one Unix user's slices at a time: another user's share waits (the
    allocator, in its transaction, on the real store)."""
    registered = await register(api, host, gpu_fractions={A100: [0.25]})
    hosts = jp_serverapp.web_app.settings["compute_servers_manager"].hosts.hosts
    mine = hosts.get(registered["id"])
    # The same machine registered by a colleague who logs in as someone else.
    theirs = dataclasses.replace(mine, inventory={**(mine.inventory or {}), "user": "colleague"})
    spec = dataclasses.make_dataclass("Gpu", ["type", "count", "fraction"])
    quarter = spec(A100, 1, 0.25)
    first = hosts.allocate(101, mine, 0, 0.01, quarter)
    second = hosts.allocate(102, mine, 0, 0.01, quarter)
    assert not isinstance(first, str) and not isinstance(second, str)
    assert first.gpu_uuids == second.gpu_uuids  # packed
    # The colleague's share goes to the other shareable GPU, the one no user's MPS serves.
    other = hosts.allocate(103, theirs, 0, 0.01, quarter)
    assert not isinstance(other, str) and other.gpu_uuids != first.gpu_uuids
    assert other.unix_user == "colleague"
    # Three quarters of the first GPU are free, but for this user only: the colleague waits.
    hosts.allocate(104, theirs, 0, 0.01, quarter)
    hosts.allocate(105, theirs, 0, 0.01, quarter)
    hosts.allocate(106, theirs, 0, 0.01, quarter)
    waiting = hosts.allocate(107, theirs, 0, 0.01, quarter)
    assert isinstance(waiting, str) and "one MPS server serves one Unix user" in waiting
    assert "root" in waiting or mine.unix_user in waiting
    for server_id in (101, 102):
        hosts.release(server_id)
    granted = hosts.allocate(107, theirs, 0, 0.01, quarter)
    assert not isinstance(granted, str) and granted.gpu_uuids == first.gpu_uuids


async def test_in_team_mode_a_share_is_the_account_of_the_user_s_certificate(
    api, host, jp_serverapp
):
    """Team mode: every user's slices of one host record run as their own account (the
    certificate's), so the one-account-per-MPS-server rule is kept per user, not per host."""
    registered = await register(api, host, gpu_fractions={A100: [0.25]})
    hosts = jp_serverapp.web_app.settings["compute_servers_manager"].hosts.hosts
    record = hosts.get(registered["id"])
    quarter = dataclasses.make_dataclass("Gpu", ["type", "count", "fraction"])(A100, 1, 0.25)
    alice = hosts.allocate(201, record, 0, 0.01, quarter, unix_user="jcst-alice")
    bob = hosts.allocate(202, record, 0, 0.01, quarter, unix_user="jcst-bob")
    assert not isinstance(alice, str) and not isinstance(bob, str)
    assert (alice.unix_user, bob.unix_user) == ("jcst-alice", "jcst-bob")
    assert hosts.slice_of(202).unix_user == "jcst-bob"
    assert alice.gpu_uuids != bob.gpu_uuids  # never one MPS server for both
    # Both shareable GPUs serve someone else now: a third user's share waits.
    carol = hosts.allocate(203, record, 0, 0.01, quarter, unix_user="jcst-carol")
    assert isinstance(carol, str) and "one MPS server serves one Unix user" in carol
    assert "jcst-alice" in carol or "jcst-bob" in carol
    hosts.leave_queue(203)  # (first come, first served: Carol gives up her place)
    more = hosts.allocate(204, record, 0, 0.01, quarter, unix_user="jcst-alice")
    assert not isinstance(more, str) and more.gpu_uuids == alice.gpu_uuids


async def test_what_is_not_offered_is_refused_naming_the_field(api, host):
    registered = await register(api, host, gpu_fractions={"GPU-a100-1": [0.25, 0.5]})
    host_id = registered["id"]
    for gpu, field, words in (
        # A share of a GPU whose admin allows none (the MIG instances).
        ({"type": MIG_1G, "fraction": 0.5}, "config.gpu.fraction", [A100]),
        # A share outside the allowed steps.
        ({"type": A100, "fraction": 0.3}, "config.gpu.fraction", ["0.25, 0.5"]),
        ({"type": A100, "fraction": 0.5, "count": 2}, "config.gpu.count", ["1"]),
        ({"type": A100, "fraction": 0}, "config.gpu.fraction", []),
        ({"type": A100, "fraction": "half"}, "config.gpu.fraction", []),
    ):
        code, error = await api(
            "POST",
            "servers",
            {"name": "x", "cloud": "ssh", "config": {"extra": {"host": host_id}, "gpu": gpu}},
        )
        assert code == 400 and error["field"] == field, (gpu, error)
        assert all(w in error["message"] for w in words), error
    # Another cloud gives whole GPUs only.
    code, error = await api(
        "POST",
        "servers",
        {"name": "x", "cloud": "local", "config": {"gpu": {"type": A100, "fraction": 0.5}}},
    )
    assert code == 400 and error["field"] == "config.gpu.fraction", error
    # The admin's steps are checked too.
    for fractions, field in (
        ({"GPU-a100-1": [1.0]}, "gpu_fractions.GPU-a100-1"),
        ({"GPU-a100-1": []}, "gpu_fractions.GPU-a100-1"),
        ({"GPU-a100-1": 0.5}, "gpu_fractions.GPU-a100-1"),
        ([0.5], "gpu_fractions"),
    ):
        code, error = await api("PATCH", f"hosts/{host_id}", {"gpu_fractions": fractions})
        assert code == 400 and error["field"] == field, (fractions, error)


async def test_gpu_use_and_idleness_are_the_slices_own(api, wait_for_state, host, jp_serverapp):
    registered = await register(api, host, gpu_fractions={"GPU-a100-1": [0.5]})
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    costs = jp_serverapp.web_app.settings["compute_servers_costs"]
    clock = Clock(manager.store.clock())
    manager.store.clock = clock
    share = {"type": A100, "fraction": 0.5}
    busy = await server_on(api, registered["id"], "busy", share, idle_timeout_minutes=1)
    idle = await server_on(api, registered["id"], "idle", share, idle_timeout_minutes=1)
    for server in (busy, idle):
        await start(api, wait_for_state, server["id"])

    # The busy server's kernel works on the GPU: 6 GiB and 40% of it; the GPU as a whole is
    # 40% busy, which is all the busy server's.
    kernel = await jp_kernel(jp_serverapp, busy["id"])
    _, pid = await execute(kernel, "import os; print(os.getpid())")
    layout = gpu_layout()
    layout[1].update(
        utilization=40,
        memory_used=6 * GIB,
        processes=[{"pid": int(pid), "memory_used": 6 * GIB, "utilization": 40}],
    )
    host["gpus"].write_text(json.dumps(layout))

    code, metrics = await api("GET", f"servers/{busy['id']}/metrics")
    assert code == 200, metrics
    (gpu,) = metrics["gpus"]
    assert gpu["shared"] and gpu["utilization"] == 40
    assert gpu["own"] == {"memory_used": 6 * GIB, "utilization": 40, "processes": 1}
    _, metrics = await api("GET", f"servers/{idle['id']}/metrics")
    (gpu,) = metrics["gpus"]
    assert gpu["utilization"] == 40  # the whole GPU's, shown beside its own
    assert gpu["own"] == {"memory_used": 0, "utilization": 0, "processes": 0}

    assert await costs.gpu_probe(manager.get_server(busy["id"])) == 40.0
    assert await costs.gpu_probe(manager.get_server(idle["id"])) == 0.0
    # A minute on, the neighbour's job keeps only its own server alive.
    clock.advance(61)
    stopped = (await costs.evaluate()).stopped
    assert [s.server_id for s in stopped] == [idle["id"]], stopped
    await wait_for_state(idle["id"], "off")
    assert costs.activity.last(busy["id"]).what == "GPU 40% busy"

    # A driver without per-process samples: the busy one's use is unknown, not zero.
    layout[1]["process_samples"] = False
    host["gpus"].write_text(json.dumps(layout))
    assert await costs.gpu_probe(manager.get_server(busy["id"])) is None
    kernel.stop_channels()
    await api("POST", f"servers/{busy['id']}/actions/stop")
    await wait_for_state(busy["id"], "off")


async def test_without_mps_tools_a_share_fails_to_start_saying_why(
    api, wait_for_state, host, jp_serverapp
):
    registered = await register(api, host, gpu_fractions={"GPU-a100-1": [0.5]})
    server = await server_on(api, registered["id"], "half", {"type": A100, "fraction": 0.5})
    await api("POST", f"servers/{server['id']}/actions/start")
    failed = await wait_for_state(server["id"], "running", "error", "off")
    assert failed["state"] != "running"
    assert "nvidia-cuda-mps-control is not on this host's PATH" in failed["state_reason"]
    # The share is given back: nothing holds the GPU.
    hosts = jp_serverapp.web_app.settings["compute_servers_manager"].hosts.hosts
    assert hosts.slice_of(server["id"]) is None and hosts.shares_on("GPU-a100-1") == []


def mps_daemon_pid(host: dict[str, Any], uuid: str) -> int | None:
    """The GPU's stand-in MPS control daemon's pid, if that process is alive (not a zombie)."""
    pid_file = host["home"] / ".jupyter-compute-servers" / "mps" / uuid / "pipe"
    pid_file = pid_file / "nvidia-cuda-mps-control.pid"
    try:
        pid = int(pid_file.read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, ValueError):
        return None
    return None if state == "Z" else pid


async def test_the_watch_restarts_a_dead_mps_daemon_and_says_so(
    api, wait_for_state, host, jp_serverapp
):
    registered = await register(api, host, gpu_fractions={"GPU-a100-1": [0.5]})
    share = {"type": A100, "fraction": 0.5}
    one = await server_on(api, registered["id"], "one", share)
    two = await server_on(api, registered["id"], "two", share)
    for server in (one, two):
        await start(api, wait_for_state, server["id"])
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    first = mps_daemon_pid(host, "GPU-a100-1")
    assert first is not None
    _, metrics = await api("GET", f"servers/{one['id']}/metrics")
    assert "mps_warning" not in metrics["gpus"][0]

    # The daemon dies under the running shares: the watch finds it gone and starts it again.
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: mps_daemon_pid(host, "GPU-a100-1") is None)
    await manager.watch_once({"ssh"})
    second = mps_daemon_pid(host, "GPU-a100-1")
    assert second is not None and second != first
    started = [e for e in mps_log(host, "GPU-a100-1") if e["event"] == "started"]
    assert len(started) == 2 and started[1]["CUDA_VISIBLE_DEVICES"] == "GPU-a100-1"

    # Both servers holding a share of that GPU say so in their metrics (as of now).
    for server in (one, two):
        code, metrics = await api("GET", f"servers/{server['id']}/metrics")
        assert code == 200, metrics
        (gpu,) = metrics["gpus"]
        assert gpu["mps_warning"].startswith(
            "The MPS daemon of GPU GPU-a100-1 stopped and was restarted at "
        )
        assert "may have lost their GPU context" in gpu["mps_warning"]

    # A daemon that answers is left alone.
    await manager.watch_once({"ssh"})
    assert mps_daemon_pid(host, "GPU-a100-1") == second
    for server in (one, two):
        await api("POST", f"servers/{server['id']}/actions/stop")
        await wait_for_state(server["id"], "off")
    assert mps_daemon_pid(host, "GPU-a100-1") is None


async def test_a_share_starting_while_the_last_one_stops_keeps_its_daemon(
    api, wait_for_state, host, jp_serverapp
):
    registered = await register(api, host, gpu_fractions={"GPU-a100-1": [0.5]})
    share = {"type": A100, "fraction": 0.5}
    leaving = await server_on(api, registered["id"], "leaving", share)
    coming = await server_on(api, registered["id"], "coming", share)
    await start(api, wait_for_state, leaving["id"])
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    store = manager.hosts.hosts
    host_record = store.get(registered["id"])
    log_dir = host["home"] / ".jupyter-compute-servers" / "mps" / "GPU-a100-1" / "log"
    (log_dir / "quit_delay").write_text("2")

    # The last share stops; while its daemon is quitting, another share of the GPU is
    # allocated (as another Jupyter process sharing the database would, its start's
    # ``mps_ensure`` perhaps answered by the daemon about to quit).
    await api("POST", f"servers/{leaving['id']}/actions/stop")
    await wait_until(lambda: [e for e in mps_log(host, "GPU-a100-1") if e.get("command") == "quit"])
    granted = store.allocate(coming["id"], host_record, 1, 0.25, GpuSpec(A100, 1, 0.5))
    assert granted.gpu_uuids == ["GPU-a100-1"], granted
    await wait_for_state(leaving["id"], "off")
    (log_dir / "quit_delay").unlink()
    assert mps_daemon_pid(host, "GPU-a100-1") is not None  # the new share has its daemon
    assert (await start(api, wait_for_state, coming["id"]))["state"] == "running"

    # And the other way round: a share allocated before the stop's release keeps the daemon
    # (no quit at all).
    await start(api, wait_for_state, leaving["id"])
    quits = len([e for e in mps_log(host, "GPU-a100-1") if e.get("command") == "quit"])
    await api("POST", f"servers/{coming['id']}/actions/stop")
    await wait_for_state(coming["id"], "off")
    assert len([e for e in mps_log(host, "GPU-a100-1") if e.get("command") == "quit"]) == quits
    assert mps_daemon_pid(host, "GPU-a100-1") is not None
    await api("POST", f"servers/{leaving['id']}/actions/stop")
    await wait_for_state(leaving["id"], "off")
    assert mps_daemon_pid(host, "GPU-a100-1") is None
