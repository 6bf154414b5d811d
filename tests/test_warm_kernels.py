"""Warm kernels (``kernels/warm.py``) on the real local cloud, with real kernels through the
real SSH tunnels: a notebook takes the waiting kernel and the pool refills; a warm kernel is not
the user's (not listed, not activity: idle shutdown still stops its server); stopping the server
leaves nothing behind; a dead warm kernel is never handed out; one left by a Jupyter that is
gone is shut down, not adopted; a launch under way when the server stops or Jupyter shuts down
leaves no kernel behind."""

from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.asynchronous import AsyncKernelClient

from jupyter_compute_servers.kernels import provisioner as provisioner_module
from jupyter_compute_servers.kernels.warm import WarmKernelPool

from .jupyter_process import JupyterProcess, kill_processes_under, processes_under
from .kernel_helpers import execute, listening_on_loopback, process_alive, wait_until
from .test_kernels import client, running_server, start_kernel


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kernel_specs_dir(tmp_path: Path) -> Path:
    return tmp_path / "kernel-specs"


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], kernel_specs_dir: Path) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    config["ComputeServersApp"]["kernel_specs_dir"] = str(kernel_specs_dir)
    # The local cloud's servers have no GPU: by default they keep none warm.
    config["ComputeServerProvisioner"] = {"poll_timeout": 2.0, "warm_kernels": 1}
    # The tests drive the idle watcher themselves.
    config["ComputeServerCosts"] = {"check_interval": 0}
    return config


async def started_pool(jp_serverapp) -> WarmKernelPool:
    runtime = jp_serverapp.web_app.settings["compute_servers_kernel_runtime"]
    # Started by the extension once the kernels of running servers were adopted.
    return await wait_until(lambda: runtime.warm)  # type: ignore[no-any-return]


async def warm_one(pool: WarmKernelPool, server_id: int, other_than: int | None = None) -> Any:
    """The server's warm kernel, once ready (one whose pid is not ``other_than``)."""
    held = await wait_until(
        lambda: [
            w
            for w in pool.held(server_id)
            if w.provisioner.remote_kernel and w.provisioner.remote_kernel["pid"] != other_than
        ],
        timeout=60,
    )
    return held[0]


async def test_a_notebook_takes_the_warm_kernel_and_the_pool_refills(
    api, wait_for_state, jp_fetch, jp_serverapp, jp_root_dir, compute_data_dir
):
    pool = await started_pool(jp_serverapp)
    server = await running_server(api, wait_for_state)
    warm = await warm_one(pool, server["id"])
    warm_pid = warm.provisioner.remote_kernel["pid"]
    assert process_alive(warm_pid)

    # Shown with the server, with its memory; not listed as one of the user's kernels.
    await wait_until(lambda: pool.state(server["id"]) and pool.state(server["id"])["memory_bytes"])
    _, got = await api("GET", f"servers/{server['id']}")
    assert got["warm_kernels"]["count"] == 1
    assert got["warm_kernels"]["memory_bytes"] > 10_000_000  # a Python with ipykernel loaded
    _, listed = await api("GET", f"servers/{server['id']}/kernels")
    assert listed["kernels"] == []

    (jp_root_dir / "project").mkdir()
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3", "project/a.ipynb")
    manager, kernel_client = client(jp_serverapp, kernel_id)
    try:
        # The very process that was waiting, now under the notebook's kernel id.
        assert manager.provisioner.remote_kernel["pid"] == warm_pid
        assert manager.provisioner.remote_kernel["kernel_id"] == kernel_id
        await kernel_client.wait_for_ready(timeout=30)
        reply, out = await execute(
            kernel_client,
            "import os; print(os.getpid(), os.getcwd(), os.environ.get('JPY_SESSION_NAME'))",
        )
        assert reply["content"]["status"] == "ok"
        assert reply["content"]["execution_count"] == 1  # the move into place left no trace
        pid, cwd, session = out.split()
        workspace = compute_data_dir / "local" / str(server["id"]) / "disk"
        assert int(pid) == warm_pid
        assert cwd == str(workspace / "project")
        assert session == str(workspace / "project")
        _, listed = await api("GET", f"servers/{server['id']}/kernels")
        assert [(k["kernel_id"], k["pid"], k["attached"]) for k in listed["kernels"]] == [
            (kernel_id, warm_pid, True)
        ]

        # The pool starts another in the background.
        refilled = await warm_one(pool, server["id"], other_than=warm_pid)
        assert process_alive(refilled.provisioner.remote_kernel["pid"])

        # The taken kernel is an ordinary one from now on: it restarts under its own id.
        await manager.restart_kernel(now=True)
        assert manager.provisioner.remote_kernel["pid"] != warm_pid
        assert not process_alive(warm_pid)
    finally:
        kernel_client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_a_warm_kernel_has_run_its_first_execution(api, wait_for_state, jp_serverapp):
    """IPython's first execution costs more than the next ones: a warm kernel ran it (silent,
    leaving no trace) as it became ready, so that a notebook's claim does not pay for it."""
    pool = await started_pool(jp_serverapp)
    server = await running_server(api, wait_for_state)
    warm = await warm_one(pool, server["id"])
    kernel_client = AsyncKernelClient()
    kernel_client.load_connection_info(warm.provisioner._connection_info())
    kernel_client.start_channels()
    try:
        await kernel_client.wait_for_ready(timeout=30)
        # The result of the execution before this one (IPython sets it as a cell ends).
        reply, out = await execute(
            kernel_client,
            "_r = get_ipython().last_execution_result\n"
            "print(_r.info.raw_cell if _r else None, _r.info.silent if _r else None)",
        )
        assert reply["content"]["status"] == "ok"
        assert out.split() == ["pass", "True"]
        assert reply["content"]["execution_count"] == 1  # silent: not counted
    finally:
        kernel_client.stop_channels()


async def test_a_dead_warm_kernel_is_never_handed_out(api, wait_for_state, jp_fetch, jp_serverapp):
    pool = await started_pool(jp_serverapp)
    server = await running_server(api, wait_for_state)
    warm = await warm_one(pool, server["id"])
    dead_pid = warm.provisioner.remote_kernel["pid"]
    os.kill(dead_pid, signal.SIGKILL)
    await wait_until(lambda: not process_alive(dead_pid))

    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3")
    manager, kernel_client = client(jp_serverapp, kernel_id)
    try:
        pid = manager.provisioner.remote_kernel["pid"]
        assert pid != dead_pid and process_alive(pid)
        await kernel_client.wait_for_ready(timeout=30)
        reply, out = await execute(kernel_client, "import os; print(os.getpid())")
        assert reply["content"]["status"] == "ok" and int(out) == pid
        # ...and the pool replaced the dead one.
        await warm_one(pool, server["id"], other_than=dead_pid)
    finally:
        kernel_client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_a_warm_kernel_that_does_not_move_into_place_is_ended_not_handed_out(
    api, wait_for_state, jp_fetch, jp_serverapp, jp_root_dir, compute_data_dir, monkeypatch
):
    """The move into the notebook's directory happens on the server as the kernel is claimed;
    a warm kernel that does not answer it (stopped here) is ended there, and the notebook gets
    a kernel launched in its directory."""
    monkeypatch.setattr(provisioner_module, "WARM_ANSWER_TIMEOUT", 2.0)
    pool = await started_pool(jp_serverapp)
    server = await running_server(api, wait_for_state)
    warm = await warm_one(pool, server["id"])
    stuck_pid = warm.provisioner.remote_kernel["pid"]
    os.kill(stuck_pid, signal.SIGSTOP)

    (jp_root_dir / "project").mkdir()
    kernel_id = await start_kernel(jp_fetch, f"compute-{server['id']}-python3", "project/a.ipynb")
    manager, kernel_client = client(jp_serverapp, kernel_id)
    try:
        assert not process_alive(stuck_pid)
        pid = manager.provisioner.remote_kernel["pid"]
        assert pid != stuck_pid and process_alive(pid)
        await kernel_client.wait_for_ready(timeout=30)
        reply, out = await execute(kernel_client, "import os; print(os.getpid(), os.getcwd())")
        assert reply["content"]["status"] == "ok"
        workspace = compute_data_dir / "local" / str(server["id"]) / "disk"
        assert out.split() == [str(pid), str(workspace / "project")]
    finally:
        kernel_client.stop_channels()
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def test_idle_shutdown_stops_a_server_whose_only_kernel_is_warm(
    api, wait_for_state, jp_serverapp
):
    pool = await started_pool(jp_serverapp)
    costs = jp_serverapp.web_app.settings["compute_servers_costs"]
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    clock = Clock(1_900_000_000.0)
    manager.store.clock = clock  # the costs clock is the store's
    code, server = await api("POST", "servers", {"name": "box", "idle_timeout_minutes": 1})
    assert code == 201, server
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running")
    warm = await warm_one(pool, server["id"])
    pid = warm.provisioner.remote_kernel["pid"]
    await costs.evaluate()
    clock.now += 61
    result = await costs.evaluate()
    assert [s.trigger for s in result.stopped] == ["idle"], result.deferred
    await wait_for_state(server["id"], "off")
    assert not process_alive(pid)
    assert pool.held(server["id"]) == []


async def test_stopping_the_server_leaves_no_warm_kernel(api, wait_for_state, jp_serverapp):
    pool = await started_pool(jp_serverapp)
    server = await running_server(api, wait_for_state)
    warm = await warm_one(pool, server["id"])
    record = warm.provisioner.remote_kernel
    local_ports = list(warm.provisioner.tunnel.local_ports.values())
    assert all(listening_on_loopback(port) for port in local_ports)
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")
    assert not process_alive(record["pid"])
    assert not process_alive(record["relay"]["pid"])
    # Nothing of it here either: its tunnel's ports are closed.
    assert not any(listening_on_loopback(port) for port in local_ports)
    assert pool.held(server["id"]) == []
    _, got = await api("GET", f"servers/{server['id']}")
    assert got["warm_kernels"] is None


async def test_a_warm_kernel_left_by_a_jupyter_that_is_gone_is_shut_down_not_adopted(
    api, wait_for_state, jp_serverapp
):
    pool = await started_pool(jp_serverapp)
    runtime = jp_serverapp.web_app.settings["compute_servers_kernel_runtime"]
    server = await running_server(api, wait_for_state)
    warm = await warm_one(pool, server["id"])
    record = dict(warm.provisioner.remote_kernel)
    # As a Jupyter that died would leave it: still running on the server, its owner gone,
    # and no pool here holding it.
    pool.take(server["id"], warm.kernel)
    warm.provisioner.detached = True  # closes what is here only
    await warm.provisioner.shutdown_remote()
    kernels_dir = Path(record["connection_file"]).parent
    record_file = kernels_dir / f"kernel-{record['kernel_id']}.record.json"
    on_disk = json.loads(record_file.read_text())
    on_disk["owner"] = "gone-host:1"
    record_file.write_text(json.dumps(on_disk))
    assert process_alive(record["pid"])

    assert await runtime.orphans(server["id"]) == []  # never adopted
    pool._swept.discard(server["id"])  # as a new Jupyter's pool, which has not looked yet
    pool.fill(server["id"])
    await wait_until(lambda: not process_alive(record["pid"]))
    await warm_one(pool, server["id"], other_than=record["pid"])


async def test_how_many_by_default_and_which_kernel(api, jp_serverapp):
    """The default rule (None): one on a server with a GPU, none elsewhere; the setting wins
    over it; the kernel kept is python3, else the server's first Python kernel."""
    from dataclasses import replace

    from traitlets.config import Config

    from jupyter_compute_servers.kernels.warm import default_kernel
    from jupyter_compute_servers.models import GpuSpec

    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    _, created = await api("POST", "servers", {"name": "box"})
    cpu = manager.get_server(created["id"])
    gpu = replace(cpu, config=replace(cpu.config, gpu=GpuSpec(type="nvidia-l4", count=1)))
    default = WarmKernelPool(manager, Config(), "")
    assert (default.target(cpu), default.target(gpu)) == (0, 1)
    none = WarmKernelPool(manager, Config({"ComputeServerProvisioner": {"warm_kernels": 0}}), "")
    assert none.target(gpu) == 0
    two = WarmKernelPool(manager, Config({"ComputeServerProvisioner": {"warm_kernels": 2}}), "")
    assert two.target(cpu) == 2

    assert default_kernel(cpu) is not None and default_kernel(cpu)[0] == "python3"
    r_and_py = {
        "ir": {"argv": ["R"], "language": "R"},
        "py311": {"argv": ["python3.11"], "language": "python"},
    }
    assert default_kernel(replace(cpu, kernel_specs=r_and_py))[0] == "py311"  # type: ignore[index]
    assert default_kernel(replace(cpu, kernel_specs={"ir": r_and_py["ir"]})) is None


async def test_the_check_asks_nothing_more_about_a_server_that_keeps_none(
    api, wait_for_state, jp_serverapp
):
    """The periodic check reads all servers in one query; a running server that keeps no warm
    kernel (the default without a GPU) costs no query of its own once it was swept."""
    import asyncio

    from sqlalchemy import event
    from traitlets.config import Config

    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    runtime = jp_serverapp.web_app.settings["compute_servers_kernel_runtime"]
    server = await running_server(api, wait_for_state)
    # The default rule, on the local cloud (no GPU): none kept. Driven here, not started.
    pool = WarmKernelPool(manager, Config(), "")
    pool.runtime = runtime
    assert pool.target(manager.get_server(server["id"])) == 0

    ours: set[asyncio.Task[Any]] = set()
    statements: list[str] = []

    def counted(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        # Only the check's own queries and its fills' (the app runs other work meanwhile).
        # SQLite's BEGIN is a transaction, not a query.
        task = asyncio.current_task()
        mine = task in ours or task in set(pool._filling.values())
        if mine and statement.strip().upper() != "BEGIN":
            statements.append(" ".join(statement.split()))

    async def checked() -> list[str]:
        statements.clear()
        check = asyncio.ensure_future(pool.check())
        ours.add(check)
        await check
        for task in list(pool._filling.values()):
            await task
        return list(statements)

    engine = manager.store.database.engine
    event.listen(engine, "before_cursor_execute", counted)
    try:
        # The first look reads the list, then the server and its connection's details (its
        # fill sweeps what a Jupyter that is gone left there).
        first = await checked()
        assert any(" WHERE servers.id = " in query for query in first), first
        assert server["id"] in pool._swept
        for _ in range(3):
            queries = await checked()
            # the list only
            assert len(queries) == 1 and " WHERE " not in queries[0], queries
            assert queries[0].startswith("SELECT servers.id,"), queries
        assert pool.held(server["id"]) == []
    finally:
        event.remove(engine, "before_cursor_execute", counted)


def slow_warm_kernels(path: Path) -> Path:
    """A directory for ``PYTHONPATH`` (the local cloud's sandboxes pass it on) whose
    ``sitecustomize`` makes a warm kernel wait a minute before it starts: the agent answers a
    launch once the kernel listens, so the pool's launch of one stays under way for a while
    (``LISTEN_WAIT``)."""
    path.mkdir()
    (path / "sitecustomize.py").write_text(
        "import sys, time\n"
        "if any('/kernel-warm-' in arg for arg in sys.argv):\n"
        "    time.sleep(60)\n"
    )
    return path


async def test_a_launch_under_way_when_the_server_stops_or_jupyter_stops_leaves_no_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The pool's fill is cancelled while the agent is starting its kernel (asked, not yet
    answered): the kernel must be ended, by the stop of the server and by Jupyter's own
    shutdown (which leaves the local server running: only the warm kernel goes)."""
    monkeypatch.setenv("PYTHONPATH", str(slow_warm_kernels(tmp_path / "slow")))
    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    jupyter = JupyterProcess(data, root, "--ComputeServerProvisioner.warm_kernels=1")
    try:
        _, server = jupyter.call("POST", "servers", {"name": "box"})
        assert isinstance(server, dict)
        server_id = server["id"]
        kernels = data / "local" / str(server_id) / "run" / "kernels"

        def start() -> None:
            assert jupyter.call("POST", f"servers/{server_id}/actions/start")[0] == 202
            assert jupyter.wait_settled(server_id, timeout=60)["state"] == "running"

        def warm_launch_under_way() -> list[int]:
            # The warm kernel's process, waiting: the agent has not answered its launch.
            return [
                pid
                for pid in processes_under(kernels)
                if b"/kernel-warm-" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]

        # The server stops while its warm kernel is starting.
        start()
        await wait_until(warm_launch_under_way, timeout=60)
        assert jupyter.call("POST", f"servers/{server_id}/actions/stop")[0] == 202
        assert jupyter.wait_settled(server_id, timeout=60)["state"] == "off"
        assert processes_under(kernels) == []

        # Jupyter shuts down (cleanly) while the warm kernel is starting: the server runs on,
        # with no kernel of the pool's left on it.
        start()
        started = await wait_until(warm_launch_under_way, timeout=60)
        jupyter.stop()
        assert not any(process_alive(pid) for pid in started)
        assert processes_under(kernels) == []
    finally:
        jupyter.stop()
        # The local server outlives its Jupyter: its SSH server, and whatever a failure left.
        kill_processes_under(data)
