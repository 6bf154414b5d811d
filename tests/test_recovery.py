"""Crashes: a kill -9 of the Jupyter server (or of any writer) loses nothing acknowledged, and a
server left mid-operation is reconciled against its cloud when Jupyter starts again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_compute_servers.clouds.local import processes_with_token, sshd_pids
from jupyter_compute_servers.store import ServerStore

from .jupyter_process import JupyterProcess


@pytest.fixture
def dirs(tmp_path):
    data, root = tmp_path / "data", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    return data, root


def db_state(data_dir: Path, server_id: int) -> str:
    with sqlite3.connect(data_dir / "servers.db") as db:
        return db.execute("SELECT state FROM servers WHERE id = ?", (server_id,)).fetchone()[0]


def db_cloud_data(data_dir: Path, server_id: int) -> dict:
    """What the cloud recorded for a server (its sandbox token, pid and port)."""
    with sqlite3.connect(data_dir / "servers.db") as db:
        row = db.execute("SELECT cloud_data FROM servers WHERE id = ?", (server_id,)).fetchone()
    return json.loads(row[0])


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.5])
def test_kill_during_start_is_reconciled_on_restart(dirs, delay):
    """kill -9 of Jupyter at any moment of a start leaves one truth: the state recorded after
    the restart is what really runs, with never two SSH daemons for one server."""
    data_dir, root_dir = dirs
    jupyter = JupyterProcess(data_dir, root_dir)
    try:
        code, server = jupyter.call("POST", "servers", {"name": "crashy"})
        assert code == 201
        server_id = server["id"]  # type: ignore[index]
        code, _ = jupyter.call("POST", f"servers/{server_id}/actions/start")
        assert code == 202
        time.sleep(delay)
        jupyter.kill()
        # On a quick machine the longest delays may outlast the start: then the kill came
        # just after it, which must come back running just the same.
        state_at_kill = db_state(data_dir, server_id)
        assert state_at_kill in ("starting", "running")
    finally:
        if jupyter.process.poll() is None:
            jupyter.kill()
    token = db_cloud_data(data_dir, server_id).get("token")
    # What the killed start left behind, before anyone looks at it again.
    daemons_before = sshd_pids(token) if token else []
    assert len(daemons_before) <= 1

    jupyter = JupyterProcess(data_dir, root_dir)
    try:
        settled = jupyter.wait_settled(server_id)
        reason = settled["state_reason"]
        if state_at_kill == "starting":
            assert "interrupted by a restart" in reason
        else:
            assert settled["state"] == "running", reason
        token = db_cloud_data(data_dir, server_id).get("token")
        daemons = sshd_pids(token) if token else []
        if daemons_before:
            # The daemon the start had spawned is found and adopted, whatever was recorded.
            assert settled["state"] == "running", reason
            assert daemons == daemons_before
            assert db_cloud_data(data_dir, server_id)["pid"] == daemons[0]
            # ... and reached: its agent answers.
            assert jupyter.call("GET", f"servers/{server_id}/kernels")[0] == 200
        else:
            assert settled["state"] in ("off", "deprovisioned"), reason
            assert "not running" in reason or "does not exist" in reason
        # Whatever it became, the user can carry on from there, still with one daemon.
        action = "stop" if settled["state"] == "running" else "start"
        assert jupyter.call("POST", f"servers/{server_id}/actions/{action}")[0] == 202
        after = jupyter.wait_settled(server_id)
        token = db_cloud_data(data_dir, server_id)["token"]
        assert len(sshd_pids(token)) == (1 if after["state"] == "running" else 0)
        if action == "start":
            assert jupyter.call("POST", f"servers/{server_id}/actions/stop")[0] == 202
            jupyter.wait_settled(server_id)
        _, final = jupyter.call("GET", f"servers/{server_id}")
        assert final["state"] == "off"  # type: ignore[index]
        assert processes_with_token(token) == []
    finally:
        jupyter.stop()


def test_second_start_adopts_a_daemon_an_interrupted_start_left(dirs):
    """A start whose daemon outlived a crash that left the server recorded ``off`` (as older
    versions did) adopts that daemon rather than spawning a second one."""
    data_dir, root_dir = dirs
    jupyter = JupyterProcess(data_dir, root_dir)
    try:
        _, server = jupyter.call("POST", "servers", {"name": "twice"})
        server_id = server["id"]  # type: ignore[index]
        jupyter.call("POST", f"servers/{server_id}/actions/start")
        assert jupyter.wait_settled(server_id)["state"] == "running"
    finally:
        jupyter.kill()
    token = db_cloud_data(data_dir, server_id)["token"]
    daemons = sshd_pids(token)
    assert len(daemons) == 1
    # The record as a start killed right after spawning left it in older versions.
    with sqlite3.connect(data_dir / "servers.db") as db:
        cloud_data = {
            k: v for k, v in db_cloud_data(data_dir, server_id).items() if k not in ("pid", "port")
        }
        db.execute(
            "UPDATE servers SET state = 'off', cloud_data = ? WHERE id = ?",
            (json.dumps(cloud_data), server_id),
        )
    jupyter = JupyterProcess(data_dir, root_dir)
    try:
        assert jupyter.call("POST", f"servers/{server_id}/actions/start")[0] == 202
        assert jupyter.wait_settled(server_id)["state"] == "running"
        assert sshd_pids(token) == daemons
        assert jupyter.call("GET", f"servers/{server_id}/kernels")[0] == 200
        assert jupyter.call("POST", f"servers/{server_id}/actions/stop")[0] == 202
        assert jupyter.wait_settled(server_id)["state"] == "off"
        assert processes_with_token(token) == []
    finally:
        jupyter.stop()


def test_running_local_server_survives_a_jupyter_restart(dirs):
    data_dir, root_dir = dirs
    jupyter = JupyterProcess(data_dir, root_dir)
    try:
        _, server = jupyter.call("POST", "servers", {"name": "durable"})
        server_id = server["id"]  # type: ignore[index]
        jupyter.call("POST", f"servers/{server_id}/actions/start")
        assert jupyter.wait_settled(server_id)["state"] == "running"
    finally:
        jupyter.stop()
    jupyter = JupyterProcess(data_dir, root_dir)
    try:
        _, again = jupyter.call("GET", f"servers/{server_id}")
        assert again["state"] == "running"  # type: ignore[index]
        # Found again by its pinned host key: a reboot reconnects and proves it.
        assert jupyter.call("POST", f"servers/{server_id}/actions/reboot")[0] == 202
        assert jupyter.wait_settled(server_id)["state"] == "running"
        assert jupyter.call("POST", f"servers/{server_id}/actions/stop")[0] == 202
        assert jupyter.wait_settled(server_id)["state"] == "off"
    finally:
        jupyter.stop()


def test_local_servers_stop_with_jupyter_when_configured(dirs):
    data_dir, root_dir = dirs
    jupyter = JupyterProcess(data_dir, root_dir, "--LocalCloud.stop_on_shutdown=True")
    try:
        _, server = jupyter.call("POST", "servers", {"name": "ephemeral"})
        server_id = server["id"]  # type: ignore[index]
        jupyter.call("POST", f"servers/{server_id}/actions/start")
        assert jupyter.wait_settled(server_id)["state"] == "running"
    finally:
        jupyter.stop()
    assert jupyter.process.returncode == 0
    assert db_state(data_dir, server_id) == "off"
    assert processes_with_token(db_cloud_data(data_dir, server_id)["token"]) == []


WRITER = """
import sys, time
from jupyter_compute_servers.models import ServerConfig
from jupyter_compute_servers.store import ServerStore
store = ServerStore(sys.argv[1], clock=time.time)
for i in range(100000):
    server = store.create(name=f"s{i}", color="#000000", notes="", cloud="local",
                          config=ServerConfig(cpu=1), idle_timeout_minutes=None,
                          spend_limit=None)
    print(server.id, flush=True)
"""


def test_kill_9_of_a_writer_loses_nothing_acknowledged(tmp_path):
    url = f"sqlite:///{tmp_path / 'servers.db'}"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    acknowledged = [int(writer.stdout.readline()) for _ in range(200)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    store = ServerStore(url, clock=time.time)
    with sqlite3.connect(tmp_path / "servers.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = {server.id for server in store.servers()}
    assert set(acknowledged) <= ids
    for server_id in acknowledged:
        assert [h.reason for h in store.history(server_id)] == ["created"]
    assert oct((tmp_path / "servers.db").stat().st_mode & 0o777) == "0o600"
