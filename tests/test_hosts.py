"""On-prem hosts over a real OpenSSH sshd on 127.0.0.1: registration with the host key pinned
from known_hosts or confirmed by fingerprint, inventory, exclusive GPU slices with a queue,
processes ended on stop, workspaces removed on deprovision, and live metrics.

CI has no GPU: the host side runs a stand-in NVML module (tests/fake_nvml) describing its GPUs.
Every test runs with the store on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from jupyter_compute_servers.ssh import fingerprint

from .kernel_helpers import execute, process_alive, wait_until
from .sshd import start_sshd_with_identity

FAKE_NVML = Path(__file__).parent / "fake_nvml"
A100 = "NVIDIA A100-SXM4-80GB"
GPUS = [
    {
        "name": A100,
        "uuid": f"GPU-a100-{i}",
        "memory_total": 80 * 2**30,
        "memory_used": (i + 1) * 2**30,
        "utilization": 10 * (i + 1),
        "temperature": 50 + i,
        "power_mw": 100000 + i * 1000,
    }
    for i in range(2)
]


@pytest.fixture
def host(tmp_path: Path, home: Path, host_home: Path):
    """An OpenSSH sshd standing for a GPU host, and the user's key for it."""
    identity = home / ".ssh" / "id_lab"
    gpus = tmp_path / "gpus.json"
    gpus.write_text(json.dumps(GPUS))
    server = start_sshd_with_identity(
        tmp_path / "sshd",
        identity,
        env={"HOME": str(host_home), "PYTHONPATH": str(FAKE_NVML), "FAKE_NVML_GPUS": str(gpus)},
    )
    yield {"sshd": server, "identity": str(identity), "home": host_home}
    server.process.terminate()
    server.process.wait()


@pytest.fixture
def jp_server_config(request, jp_server_config: dict[str, Any], db_url: str) -> dict[str, Any]:
    """The ssh cloud enabled; the store on SQLite and on PostgreSQL (every test runs on
    both)."""
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["enabled_clouds"] = ["local", "ssh"]
    config["ComputeServersApp"]["db_url"] = db_url
    if request.node.name.startswith("test_the_count_of_hosts"):
        config["ComputeServersApp"]["max_hosts"] = 1
    return config


def host_body(host: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "lab",
        "hostname": "127.0.0.1",
        "port": host["sshd"].port,
        "username": host["sshd"].username,
        "identity_file": host["identity"],
        # The host's Python with ipykernel (here: this one), as an admin would set it.
        "python": sys.executable,
        **extra,
    }


async def trusted_host(api, host: dict[str, Any], **extra: Any) -> dict[str, Any]:
    code, registered = await api("POST", "hosts", host_body(host, **extra))
    assert code == 201, registered
    code, trusted = await api(
        "PATCH",
        f"hosts/{registered['id']}",
        {"trust_host_key": registered["pending_host_key_fingerprint"]},
    )
    assert code == 200 and trusted["trusted"], trusted
    return trusted


async def server_on(api, host_id: int, name: str, gpus: int = 0) -> dict[str, Any]:
    config: dict[str, Any] = {"cpu": 1, "memory_gb": 0.5, "extra": {"host": host_id}}
    if gpus:
        config["gpu"] = {"type": A100, "count": gpus}
    code, server = await api("POST", "servers", {"name": name, "cloud": "ssh", "config": config})
    assert code == 201, server
    return server


async def test_a_new_host_key_is_shown_and_must_be_confirmed(api, host):
    code, registered = await api("POST", "hosts", host_body(host))
    assert code == 201, registered
    assert registered["trusted"] is False and registered["inventory"] is None
    assert registered["pending_host_key_fingerprint"] == fingerprint(host["sshd"].host_key)

    code, error = await api(
        "PATCH", f"hosts/{registered['id']}", {"trust_host_key": "SHA256:not-the-one"}
    )
    assert code == 400 and error["field"] == "trust_host_key"
    assert registered["pending_host_key_fingerprint"] in error["message"]

    code, trusted = await api(
        "PATCH",
        f"hosts/{registered['id']}",
        {"trust_host_key": registered["pending_host_key_fingerprint"]},
    )
    assert code == 200
    assert trusted["host_key_source"] == "confirmed by the user"
    inventory = trusted["inventory"]
    assert inventory["cpu_count"] == os.cpu_count()
    assert inventory["memory_total"] > 0 and inventory["python"]
    assert [g["uuid"] for g in inventory["gpus"]] == ["GPU-a100-0", "GPU-a100-1"]
    assert inventory["gpus"][0]["name"] == A100 and inventory["gpus"][0]["cuda_version"] == "12.4"


async def test_a_host_in_known_hosts_is_pinned_from_there(api, host, home):
    sshd = host["sshd"]
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n")
    code, registered = await api("POST", "hosts", host_body(host))
    assert code == 201
    assert registered["trusted"] and registered["host_key_source"] == "~/.ssh/known_hosts"
    assert len(registered["inventory"]["gpus"]) == 2

    # A known_hosts entry that does not match what the host presents: refused, never trusted.
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    code, impostor = await api("POST", "hosts", host_body(host, name="impostor"))
    assert code == 201
    assert impostor["inventory"] is None
    assert "not the pinned one" in impostor["inventory_error"]


async def test_host_fields_are_validated(api, host):
    for body, field in (
        ({"hostname": "x"}, "name"),
        ({"name": "x"}, "hostname"),
        (host_body(host, port=70000), "port"),
        (host_body(host, identity_file="/no/such/key"), "identity_file"),
        (host_body(host, gpu_rates={"A100": -1}), "gpu_rates.A100"),
        (host_body(host, colour="red"), "colour"),
        # A trailing newline passes a "$" pattern; these are full matches.
        (host_body(host, hostname="127.0.0.1\n"), "hostname"),
        (host_body(host, hostname=".BZ05tzl.k0."), "hostname"),  # an empty label
        (host_body(host, hostname="a..b"), "hostname"),
        (host_body(host, username="root\n"), "username"),
        (host_body(host, username=False), "username"),
        (host_body(host, name="lab\n"), "name"),
    ):
        code, error = await api("POST", "hosts", body)
        assert code == 400 and error["field"] == field, (body, error)
    await trusted_host(api, host)
    code, error = await api("POST", "hosts", host_body(host))
    assert code == 409 and error["field"] == "name"


async def test_gpus_are_exclusive_queued_fairly_and_never_oversubscribed(
    api, wait_for_state, host, jp_serverapp
):
    registered = await trusted_host(api, host)
    both = await server_on(api, registered["id"], "both", gpus=2)
    one = await server_on(api, registered["id"], "one", gpus=1)
    await api("POST", f"servers/{both['id']}/actions/start")
    assert (await wait_for_state(both["id"], "running", "error"))["state"] == "running"

    await api("POST", f"servers/{one['id']}/actions/start")

    def first_in_line(answer: tuple[int, Any]) -> bool:
        return "1st in line" in (answer[1]["progress"] or {}).get("message", "")

    waiting = await wait_until(lambda: api("GET", f"servers/{one['id']}"), predicate=first_in_line)
    assert waiting[1]["state"] == "starting"
    hosts = jp_serverapp.web_app.settings["compute_servers_manager"].hosts.hosts
    assert hosts.slice_of(one["id"]) is None  # nothing left to give

    # The kernels of "both" see both GPUs, by UUID.
    kernel = await jp_kernel(jp_serverapp, both["id"])
    _, out = await execute(kernel, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")
    assert out.strip() == "GPU-a100-0,GPU-a100-1"
    kernel.stop_channels()

    await api("POST", f"servers/{both['id']}/actions/stop")
    await wait_for_state(both["id"], "off")
    running = await wait_for_state(one["id"], "running", "error")
    assert running["state"] == "running", running["state_reason"]
    slice_ = hosts.slice_of(one["id"])
    assert slice_ is not None and len(slice_.gpu_uuids) == 1

    # With everything taken and a short wait, a start gives up and says why.
    await api("PATCH", f"hosts/{registered['id']}", {"gpu_wait_minutes": 0.02})
    third = await server_on(api, registered["id"], "third", gpus=2)
    await api("POST", f"servers/{third['id']}/actions/start")
    failed = await wait_for_state(third["id"], "error", "off", "running")
    assert failed["state"] == "off", failed["state_reason"]
    assert "Nothing freed on lab" in failed["state_reason"]
    assert hosts.queue_position(third["id"]) is None

    # Stopped while it waits in line: it leaves the line with nothing allocated, and is off
    # (its workspace was made before it queued).
    await api("PATCH", f"hosts/{registered['id']}", {"gpu_wait_minutes": 10})
    fourth = await server_on(api, registered["id"], "fourth", gpus=2)
    await api("POST", f"servers/{fourth['id']}/actions/start")
    waiting = await wait_until(
        lambda: api("GET", f"servers/{fourth['id']}"), predicate=first_in_line
    )
    assert "stop" in waiting[1]["allowed_actions"]
    code, answer = await api("POST", f"servers/{fourth['id']}/actions/stop")
    assert code == 202, answer
    cancelled = await wait_for_state(fourth["id"], "off", "deprovisioned", "error")
    assert cancelled["state"] == "off", cancelled["state_reason"]
    assert "start cancelled" in cancelled["state_reason"]
    assert hosts.queue_position(fourth["id"]) is None and hosts.slice_of(fourth["id"]) is None
    assert (await api("GET", f"servers/{one['id']}"))[1]["state"] == "running"


async def jp_kernel(jp_serverapp, server_id: int):
    manager = jp_serverapp.kernel_manager
    kernel_id = await manager.start_kernel(kernel_name=f"compute-{server_id}-python3")
    client = manager.get_kernel(kernel_id).client()
    client.start_channels()
    await client.wait_for_ready(timeout=30)
    return client


async def test_stop_ends_the_servers_processes_and_deprovision_its_workspace(
    api, wait_for_state, host, jp_serverapp
):
    registered = await trusted_host(api, host)
    server = await server_on(api, registered["id"], "work")
    await api("POST", f"servers/{server['id']}/actions/start")
    assert (await wait_for_state(server["id"], "running", "error"))["state"] == "running"
    workspace = host["home"] / "jupyter-compute-servers" / str(server["id"])
    assert workspace.is_dir()

    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    # Started through the agent (which carries the server's token), detached from SSH.
    agent = await manager.ssh.agent(server["id"], await manager.endpoint(server["id"]))
    terminal = await agent.call(
        "terminal_start",
        name="t",
        runtime_dir=str(host["home"] / "rt"),
        workspace=str(workspace),
    )
    assert process_alive(terminal["pid"])

    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")
    assert not process_alive(terminal["pid"])
    assert workspace.is_dir()
    await api("POST", f"servers/{server['id']}/actions/deprovision", {"confirm": True})
    await wait_for_state(server["id"], "deprovisioned")
    assert not workspace.exists()


async def test_metrics_show_the_servers_own_gpus(api, wait_for_state, host):
    registered = await trusted_host(api, host)
    gpu_server = await server_on(api, registered["id"], "gpu", gpus=1)
    cpu_server = await server_on(api, registered["id"], "cpu")
    for server in (gpu_server, cpu_server):
        await api("POST", f"servers/{server['id']}/actions/start")
        assert (await wait_for_state(server["id"], "running", "error"))["state"] == "running"

    code, metrics = await api("GET", f"servers/{gpu_server['id']}/metrics")
    assert code == 200
    (gpu,) = metrics["gpus"]
    assert gpu["uuid"] == "GPU-a100-0" and gpu["name"] == A100
    assert gpu["utilization"] == 10 and gpu["temperature"] == 50
    assert gpu["memory_used"] == 2**30 and gpu["memory_total"] == 80 * 2**30
    assert gpu["power_watts"] == 100.0
    assert 0 <= metrics["cpu_percent"] <= 100
    assert 0 < metrics["memory_used"] < metrics["memory_total"]

    code, metrics = await api("GET", f"servers/{cpu_server['id']}/metrics")
    assert code == 200 and metrics["gpus"] == []

    code, idle = await api("POST", "servers", {"name": "idle"})
    code, _ = await api("GET", f"servers/{idle['id']}/metrics")
    assert code == 409


async def test_a_host_without_nvidia_reports_why(api, tmp_path, home):
    identity = home / ".ssh" / "id_plain"
    sshd = start_sshd_with_identity(tmp_path / "plain", identity)
    try:
        (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n")
        code, registered = await api(
            "POST",
            "hosts",
            {
                "name": "plain",
                "hostname": "127.0.0.1",
                "port": sshd.port,
                "username": sshd.username,
                "identity_file": str(identity),
                "python": sys.executable,
            },
        )
        assert code == 201, registered
        assert registered["inventory"]["gpus"] == []
        assert registered["inventory"]["gpu_reason"]  # no driver, or no nvidia-ml-py
    finally:
        sshd.process.terminate()
        sshd.process.wait()
    await asyncio.sleep(0)


async def test_servers_on_a_host_cost_its_charge_back_rates(api, host):
    registered = await trusted_host(api, host, hourly_rate=0.5, gpu_rates={A100: 2.25})
    code, estimate = await api(
        "POST",
        "estimate",
        {
            "cloud": "ssh",
            "config": {
                "cpu": 1,
                "memory_gb": 0.5,
                "gpu": {"type": A100, "count": 2},
                "extra": {"host": registered["id"]},
            },
        },
    )
    assert code == 200, estimate
    assert (
        estimate["rates"]["running"]["hourly"] == 5.0
        and estimate["rates"]["running"]["unknown"] == []
    )
    assert estimate["rates"]["off"]["hourly"] == 0.0


async def test_host_changes_are_published_as_events(api, host, jp_serverapp):
    from jupyter_compute_servers.app import EVENT_SCHEMA_ID

    seen: list[tuple[str, Any]] = []

    async def listener(logger, schema_id, data):
        seen.append((data["kind"], data.get("host_id")))

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
    registered = await trusted_host(api, host)
    await api("POST", f"hosts/{registered['id']}/inventory")
    await api("DELETE", f"hosts/{registered['id']}")
    await asyncio.sleep(0.2)  # listeners run as tasks
    assert seen.count(("hosts", registered["id"])) >= 4, seen  # created, trusted, refreshed, gone


async def test_the_count_of_hosts_is_bounded(api, host):
    await trusted_host(api, host)
    code, error = await api("POST", "hosts", host_body(host, name="second"))
    assert code == 409 and "max_hosts" in error["message"], error
    code, listing = await api("GET", "hosts")
    assert [h["name"] for h in listing["hosts"]] == ["lab"]
