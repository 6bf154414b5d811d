"""Remote kernels inside the Jupyter server, on the real local cloud: kernel specs that follow
the servers, launch through SSH tunnels, the working directory, interrupts, restarts, a poll
that survives network blips, and shutdowns that leave nothing behind on either side."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import Session
from traitlets.config import Config

from jupyter_compute_servers.kernels.provisioner import ComputeServerProvisioner, KernelStartError

from .kernel_helpers import (
    execute,
    listening_on_loopback,
    process_alive,
    until_iopub_live,
    wait_until,
)
from .sshd import daemon_and_sessions, signal_all


@pytest.fixture
def kernel_specs_dir(tmp_path: Path) -> Path:
    # Outside every Jupyter path: the extension itself must put it on the search path.
    return tmp_path / "kernel-specs"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], kernel_specs_dir: Path) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["kernel_specs_dir"] = str(kernel_specs_dir)
    config["ComputeServerProvisioner"] = {"poll_timeout": 2.0}
    return config


@pytest.fixture
def runtime(jp_serverapp):
    return jp_serverapp.web_app.settings["compute_servers_kernel_runtime"]


async def kernelspecs(jp_fetch) -> dict[str, Any]:
    response = await jp_fetch("api", "kernelspecs")
    return json.loads(response.body)["kernelspecs"]


async def running_server(api, wait_for_state, name: str = "box") -> dict[str, Any]:
    code, server = await api("POST", "servers", {"name": name})
    assert code == 201, server
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running", "error")
    assert server["state"] == "running", server["state_reason"]
    return server


async def start_kernel(jp_fetch, name: str, path: str | None = None) -> str:
    if path is None:
        response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": name}))
        return str(json.loads(response.body)["id"])
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": name}}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    return str(json.loads(response.body)["kernel"]["id"])


def client(jp_serverapp, kernel_id: str):
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    kernel_client = manager.client()
    kernel_client.start_channels()
    return manager, kernel_client


async def test_specs_follow_servers_onto_the_kernel_search_path(api, jp_fetch, kernel_specs_dir):
    code, server = await api("POST", "servers", {"name": "gpu-box", "color": "#2ca02c"})
    assert code == 201
    name = f"compute-{server['id']}-python3"
    specs = await kernelspecs(jp_fetch)
    assert name in specs, list(specs)
    spec = specs[name]["spec"]
    assert spec["display_name"] == "Python 3 (ipykernel) on gpu-box"
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "compute-server",
        "config": {
            "server_id": server["id"],
            "kernel": "python3",
            "data_dir": spec["metadata"]["kernel_provisioner"]["config"]["data_dir"],
            "db_url": spec["metadata"]["kernel_provisioner"]["config"]["db_url"],
        },
    }
    assert spec["metadata"]["compute_server"]["name"] == "gpu-box"
    assert spec["metadata"]["compute_server"]["color"] == "#2ca02c"
    assert "logo-svg" in specs[name]["resources"]
    assert (kernel_specs_dir / name / "kernel.json").is_file()

    await api("PATCH", f"servers/{server['id']}", {"name": "a100"})
    specs = await kernelspecs(jp_fetch)
    assert specs[name]["spec"]["display_name"] == "Python 3 (ipykernel) on a100"

    code, _ = await api("DELETE", f"servers/{server['id']}")
    assert code == 204
    assert name not in await kernelspecs(jp_fetch)
    assert not (kernel_specs_dir / name).exists()


async def test_a_change_to_one_server_touches_only_its_own_specs(api, jp_fetch, kernel_specs_dir):
    # Each event syncs only its server's specs: deleting server N must leave server N0's
    # (whose name starts with the same digits) and every other server's in place.
    code, first = await api("POST", "servers", {"name": "first"})
    assert code == 201, first
    others = []
    while not any(str(s["id"]).startswith(str(first["id"])) for s in others):
        code, server = await api("POST", "servers", {"name": f"other-{len(others)}"})
        assert code == 201, server
        others.append(server)
        assert len(others) < 20
    await api("PATCH", f"servers/{first['id']}", {"name": "renamed"})
    specs = await kernelspecs(jp_fetch)
    assert specs[f"compute-{first['id']}-python3"]["spec"]["display_name"].endswith("renamed")
    code, _ = await api("DELETE", f"servers/{first['id']}")
    assert code == 204
    specs = await kernelspecs(jp_fetch)
    assert f"compute-{first['id']}-python3" not in specs
    for server in others:
        name = f"compute-{server['id']}-python3"
        assert name in specs, name
        assert (kernel_specs_dir / name / "kernel.json").is_file()
        assert specs[name]["spec"]["display_name"].endswith(f"on {server['name']}")


async def test_kernels_found_on_the_server_are_published(api, wait_for_state, jp_serverapp):
    server = await running_server(api, wait_for_state)
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    found = await wait_until(lambda: manager.get_server(server["id"]).kernel_specs)
    assert "python3" in found
    # A bare "python" in a spec means the server's Python, as jupyter_client reads it locally.
    assert os.path.isabs(found["python3"]["argv"][0])
    assert not any(name.startswith("compute-") for name in found)  # our own specs: not kernels


async def test_a_remote_kernel_runs_in_the_notebooks_directory(
    api, wait_for_state, jp_fetch, jp_serverapp, jp_root_dir, compute_data_dir
):
    server = await running_server(api, wait_for_state)
    (jp_root_dir / "project" / "data").mkdir(parents=True)
    kernel_id = await start_kernel(
        jp_fetch, f"compute-{server['id']}-python3", "project/data/analysis.ipynb"
    )
    _, kernel_client = client(jp_serverapp, kernel_id)
    try:
        await kernel_client.wait_for_ready(timeout=30)
        reply, out = await execute(
            kernel_client,
            "import os; print(os.getcwd(), os.getpid(), os.environ.get('JPY_SESSION_NAME'),"
            " os.environ.get('JUPYTER_DATA_DIR'))",
        )
        assert reply["content"]["status"] == "ok"
        cwd, pid, session, data_dir = out.split()
        workspace = compute_data_dir / "local" / str(server["id"]) / "disk"
        assert cwd == str(workspace / "project" / "data")
        assert int(pid) != os.getpid() and process_alive(int(pid))
        # The session's path, which Jupyter sets (the notebook's directory joined with the
        # session's name, "" here), is the same place on the server...
        assert session == str(workspace / "project" / "data")
        # ...while the rest of the environment Jupyter passes on (all of its own, such as the
        # JUPYTER_DATA_DIR the tests set) stays here.
        assert data_dir == "None"
    finally:
        kernel_client.stop_channels()


async def test_a_burst_of_output_arrives_whole_and_in_order(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    # ipykernel sends a cell's printed output as a few large stream messages: each of MBs
    # reaches the relay in many reads, and through it and the SSH channel in many pieces.
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    _, kernel_client = client(jp_serverapp, kernel_id)
    lines = 12_000
    try:
        await kernel_client.wait_for_ready(timeout=30)
        reply, out = await execute(
            kernel_client,
            f"for i in range({lines}):\n    print(f'{{i:07d}}' + 'x' * 1016)",
            timeout=120,
        )
        assert reply["content"]["status"] == "ok"
        assert out == "".join(f"{i:07d}" + "x" * 1016 + "\n" for i in range(lines))
        # ...and small messages right after it still come one by one, each at once.
        for i in range(3):
            reply, out = await execute(kernel_client, f"print({i})")
            assert out == f"{i}\n"
    finally:
        kernel_client.stop_channels()


async def test_the_remote_kernel_is_private_detached_and_on_loopback(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    provisioner = manager.provisioner
    assert isinstance(provisioner, ComputeServerProvisioner)
    remote = provisioner.remote_kernel
    pid = remote["pid"]

    connection_file = Path(remote["connection_file"])
    assert stat.S_IMODE(connection_file.stat().st_mode) == 0o600
    connection = json.loads(connection_file.read_text())
    assert connection["ip"] == "127.0.0.1"
    assert connection["key"].encode() == manager.session.key
    # The key travelled over SSH, not on a command line anyone on the server can read.
    assert connection["key"] not in Path(f"/proc/{pid}/cmdline").read_text()
    # Its own session: the end of the SSH channel that started it does not hang it up.
    assert os.getsid(pid) == pid
    ports = [remote["ports"][f"{name}_port"] for name in ("shell", "iopub", "control", "hb")]
    await wait_until(lambda: all(listening_on_loopback(port) for port in ports))

    assert manager.ip == "127.0.0.1"
    for port in provisioner.tunnel.local_ports.values():
        assert listening_on_loopback(port)


async def test_interrupts_by_signal_and_by_message(
    api, wait_for_state, jp_fetch, jp_serverapp, compute_data_dir
):
    server = await running_server(api, wait_for_state)
    settings = jp_serverapp.web_app.settings
    manager = settings["compute_servers_manager"]
    await wait_until(lambda: manager.get_server(server["id"]).kernel_specs)
    # A second kernel on the server, identical but for interrupting by message.
    specs = dict(manager.get_server(server["id"]).kernel_specs)
    specs["python3-msg"] = {**specs["python3"], "interrupt_mode": "message"}
    manager.store.update_fields(server["id"], kernel_specs=specs)
    jp_serverapp.web_app.settings["compute_servers_kernel_specs"].sync()

    for kernel in ("python3", "python3-msg"):
        kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-{kernel}")
        _, kernel_client = client(jp_serverapp, kernel_id)
        try:
            await kernel_client.wait_for_ready(timeout=30)
            # The child process shares the kernel's process group, which a signal reaches.
            running = asyncio.ensure_future(
                execute(kernel_client, "import subprocess; subprocess.run(['sleep', '60'])")
            )
            await asyncio.sleep(1.5)
            await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body="")
            reply, _ = await asyncio.wait_for(running, 20)
            assert reply["content"]["status"] == "error", kernel
            assert reply["content"]["ename"] == "KeyboardInterrupt", kernel
            reply, out = await execute(kernel_client, "print('still here')")
            assert out.strip() == "still here"
        finally:
            kernel_client.stop_channels()


async def test_restart_keeps_the_local_ports_and_replaces_the_process(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager, kernel_client = client(jp_serverapp, kernel_id)
    try:
        await kernel_client.wait_for_ready(timeout=30)
        await execute(kernel_client, "x = 42")
        before = manager.get_connection_info()
        old_pid = manager.provisioner.remote_kernel["pid"]
        await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
        assert manager.get_connection_info() == before
        new_pid = manager.provisioner.remote_kernel["pid"]
        assert new_pid != old_pid and not process_alive(old_pid)
        await kernel_client.wait_for_ready(timeout=30)
        reply, _ = await execute(kernel_client, "x")
        assert reply["content"]["status"] == "error"  # a fresh kernel: x is gone
        _, out = await execute(kernel_client, "print('restarted')")
        assert out.strip() == "restarted"
    finally:
        kernel_client.stop_channels()


async def test_shutdown_leaves_nothing_behind_on_either_side(
    api, wait_for_state, jp_fetch, jp_serverapp, runtime
):
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    provisioner = manager.provisioner
    remote = dict(provisioner.remote_kernel)
    local_ports = dict(provisioner.tunnel.local_ports)
    assert kernel_id in runtime.kernels
    code, listed = await api("GET", f"servers/{server['id']}/kernels")
    assert code == 200 and [k["kernel_id"] for k in listed["kernels"]] == [kernel_id]

    await jp_fetch("api", "kernels", kernel_id, method="DELETE")

    # On the server: no process, no connection file (it held the key), no record.
    assert not process_alive(remote["pid"])
    assert not Path(remote["connection_file"]).exists()
    code, listed = await api("GET", f"servers/{server['id']}/kernels")
    assert listed["kernels"] == []
    # Here: no listener, no forwarded connection, no task, no registration.
    assert provisioner.tunnel is None
    for port in local_ports.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert kernel_id not in runtime.kernels
    leftover = [
        task
        for task in asyncio.all_tasks()
        if "tunnel" in getattr(task.get_coro(), "__qualname__", "").lower()
        or "_open_channel" in repr(task.get_coro())
    ]
    assert leftover == []


async def test_a_network_blip_never_kills_a_kernel(
    api, wait_for_state, jp_fetch, jp_serverapp, compute_data_dir
):
    server = await running_server(api, wait_for_state)
    settings = jp_serverapp.web_app.settings
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager, kernel_client = client(jp_serverapp, kernel_id)
    provisioner = manager.provisioner
    try:
        await kernel_client.wait_for_ready(timeout=30)
        await execute(kernel_client, "state = 'kept'")

        # The SSH connection drops: the kernel on the server lives on, and everything rides
        # a new connection.
        servers = settings["compute_servers_manager"]
        old = await servers.connection(server["id"])
        old.connection.abort()
        assert await provisioner.poll() is None
        assert (await servers.connection(server["id"])) is not old
        await until_iopub_live(kernel_client)
        _, out = await execute(kernel_client, "print(state)")
        assert out.strip() == "kept"

        # The server stops answering for a while (its SSH server frozen): still alive.
        sshd = json.loads(
            (compute_data_dir / "local" / str(server["id"]) / "run" / "sshd.json").read_text()
        )
        (await servers.connection(server["id"])).connection.abort()
        daemon = daemon_and_sessions(sshd["pid"])
        signal_all(daemon, signal.SIGSTOP)
        try:
            assert await provisioner.poll() is None
        finally:
            signal_all(daemon, signal.SIGCONT)

        # The kernel process really dies: now poll says so.
        manager.stop_restarter()  # (it would bring a new kernel up meanwhile)
        os.kill(provisioner.remote_kernel["pid"], signal.SIGKILL)
        assert await wait_until(provisioner.poll, predicate=lambda code: code is not None)
    finally:
        kernel_client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE", raise_error=False)


async def test_a_kernel_on_a_stopped_server_starts_it_first(api, jp_fetch, jp_serverapp):
    code, server = await api("POST", "servers", {"name": "sleepy"})
    assert code == 201 and server["state"] == "deprovisioned"
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    _, server = await api("GET", f"servers/{server['id']}")
    assert server["state"] == "running"
    _, kernel_client = client(jp_serverapp, kernel_id)
    try:
        await kernel_client.wait_for_ready(timeout=30)
        _, out = await execute(kernel_client, "print(6 * 7)")
        assert out.strip() == "42"
    finally:
        kernel_client.stop_channels()


async def test_a_stopped_server_is_not_started_when_so_configured(api, jp_serverapp):
    from jupyter_client.manager import AsyncKernelManager

    code, server = await api("POST", "servers", {"name": "sleepy"})
    assert code == 201
    config = Config({"ComputeServerProvisioner": {"start_stopped_server": False}})
    manager = AsyncKernelManager(
        kernel_name=f"compute-{server['id']}-python3",
        kernel_spec_manager=jp_serverapp.kernel_spec_manager,
        config=config,
    )
    with pytest.raises(KernelStartError, match=r"is deprovisioned\. Start it"):
        await manager.start_kernel()
    _, server = await api("GET", f"servers/{server['id']}")
    assert server["state"] == "deprovisioned"


async def test_stopping_the_server_ends_its_kernels_and_it_stays_stopped(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    pid = manager.provisioner.remote_kernel["pid"]
    manager.stop_restarter()  # the test plays the restarter itself, below
    local_ports = [manager.iopub_port, manager.shell_port, manager.control_port]
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")
    assert not process_alive(pid)
    assert await manager.provisioner.poll() is not None
    # The restarter's relaunch must not bring back a server the user stopped.
    with pytest.raises(KernelStartError, match="is off"):
        await manager.restart_kernel(now=True)
    _, server = await api("GET", f"servers/{server['id']}")
    assert server["state"] == "off"
    # jupyter_client never cleans up after a failed restart (it drops the kernel as it is):
    # its listeners here (the tunnel's, IOPub's) were released by the failed launch itself.
    for port in local_ports:
        await wait_until(lambda port=port: not listening_on_loopback(port))


async def test_a_new_iopub_subscriber_is_welcomed(api, wait_for_state, jp_fetch, jp_serverapp):
    """As by a local ipykernel 7 (JEP 65): clients take any IOPub message as the sign that
    their subscription is live (wait_for_ready, Jupyter's nudge), and a status published before
    it arrived is lost to them, so without a welcome they asked kernel_info again 0.2 s later."""
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    session = Session(key=manager.session.key, signature_scheme="hmac-sha256")
    subscriber = zmq.asyncio.Context.instance().socket(zmq.SUB)
    subscriber.linger = 0
    subscriber.setsockopt(zmq.SUBSCRIBE, b"")
    subscriber.connect(f"tcp://127.0.0.1:{manager.iopub_port}")
    try:
        while True:
            frames = await asyncio.wait_for(subscriber.recv_multipart(), 30)
            _, parts = session.feed_identities(frames)
            message = session.deserialize(parts)  # signed with the kernel's key
            if message["msg_type"] == "iopub_welcome":
                break
        assert message["content"] == {"subscription": ""}
    finally:
        subscriber.close()


async def test_kernels_api_lists_and_shuts_down(api, wait_for_state, jp_fetch, jp_serverapp):
    server = await running_server(api, wait_for_state)
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3", "nb.ipynb")
    code, listed = await api("GET", f"servers/{server['id']}/kernels")
    assert code == 200
    (kernel,) = listed["kernels"]
    assert kernel["kernel_id"] == kernel_id and kernel["attached"] is True
    assert kernel["kernel"] == "python3" and kernel["display_name"].endswith(" on box")
    assert set(kernel) == {
        "kernel_id",
        "kernel",
        "display_name",
        "pid",
        "cwd",
        "owner",
        "started",
        "attached",
    }

    code, error = await api("DELETE", f"servers/{server['id']}/kernels/not%20an%20id")
    assert code == 400 and error["field"] == "kernel_id"
    code, error = await api("DELETE", f"servers/{server['id']}/kernels/no-such-kernel")
    assert code == 404 and error["field"] == "kernel_id"

    code, _ = await api("DELETE", f"servers/{server['id']}/kernels/{kernel_id}")
    assert code == 204
    assert kernel_id not in jp_serverapp.kernel_manager  # its session's kernel is gone too
    assert not process_alive(kernel["pid"])
    code, listed = await api("GET", f"servers/{server['id']}/kernels")
    assert listed["kernels"] == []


async def test_kernels_of_a_server_that_is_not_running(api):
    code, server = await api("POST", "servers", {"name": "idle"})
    code, listed = await api("GET", f"servers/{server['id']}/kernels")
    assert code == 200 and listed == {"kernels": []}
    code, _ = await api("GET", "servers/999/kernels")
    assert code == 404


async def test_kernel_changes_are_published_as_events(api, wait_for_state, jp_fetch, jp_serverapp):
    from jupyter_compute_servers.app import EVENT_SCHEMA_ID

    kinds: list[str] = []

    async def listener(logger, schema_id, data):
        kinds.append(data["kind"])

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
    server = await running_server(api, wait_for_state)
    await wait_until(lambda: "kernelspecs" in kinds)  # found on the server once it ran
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    await asyncio.sleep(0.2)  # listeners run as tasks
    assert kinds.count("kernels") == 2, kinds


FIRST_PORT_TAKEN = """
import os, runpy, sys
marker = os.path.join(os.path.dirname(sys.argv[1]), "port-taken-once")
if not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:1')")
sys.argv = ["ipykernel_launcher", "-f", sys.argv[1]]
runpy.run_module("ipykernel_launcher", run_name="__main__")
"""


async def test_a_port_taken_before_the_kernel_binds_it_is_retried(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    await wait_until(lambda: manager.get_server(server["id"]).kernel_specs)
    specs = dict(manager.get_server(server["id"]).kernel_specs)
    specs["unlucky"] = {
        **specs["python3"],
        "argv": [sys.executable, "-c", FIRST_PORT_TAKEN, "{connection_file}"],
    }
    manager.store.update_fields(server["id"], kernel_specs=specs)
    jp_serverapp.web_app.settings["compute_servers_kernel_specs"].sync()
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-unlucky")
    _, kernel_client = client(jp_serverapp, kernel_id)
    try:
        await kernel_client.wait_for_ready(timeout=30)
        _, out = await execute(kernel_client, "print('second ports')")
        assert out.strip() == "second ports"
    finally:
        kernel_client.stop_channels()


async def test_a_kernel_that_exits_while_starting_says_why(
    api, wait_for_state, jp_fetch, jp_serverapp
):
    """The readiness check on the server sees the kernel exit: the start fails at once with
    its exit code and the end of its output."""
    from tornado.httpclient import HTTPClientError

    server = await running_server(api, wait_for_state)
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    await wait_until(lambda: manager.get_server(server["id"]).kernel_specs)
    specs = dict(manager.get_server(server["id"]).kernel_specs)
    broken = "import sys, time; time.sleep(0.5); print('no module named pandas'); sys.exit(3)"
    specs["broken"] = {**specs["python3"], "argv": [sys.executable, "-c", broken]}
    manager.store.update_fields(server["id"], kernel_specs=specs)
    jp_serverapp.web_app.settings["compute_servers_kernel_specs"].sync()
    with pytest.raises(HTTPClientError) as refused:
        await start_kernel(jp_fetch, f"compute-{server['id']}-broken")
    message = json.loads(refused.value.response.body)["message"]
    assert "exited" in message and "exit code 3" in message, message
    assert "no module named pandas" in message, message
