"""A local server's SSH daemon, either one (``c.LocalCloud.ssh_daemon``): OpenSSH's sshd, the
default where installed, and the built-in ``local_sshd``. Both give the same sandbox."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from jupyter_compute_servers.clouds import local_openssh
from jupyter_compute_servers.clouds.local import processes_with_token, sshd_pids

from .kernel_helpers import process_alive
from .sshd import daemon_and_sessions


@pytest.fixture(params=["auto", "asyncssh"])
def ssh_daemon(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], ssh_daemon: str) -> dict[str, Any]:
    config = copy.deepcopy(jp_server_config)
    config["LocalCloud"]["ssh_daemon"] = ssh_daemon
    return config


async def started_server(api, wait_for_state) -> int:
    code, server = await api("POST", "servers", {"name": "box", "cloud": "local"})
    assert code == 201, server
    await api("POST", f"servers/{server['id']}/actions/start")
    running = await wait_for_state(server["id"], "running", "error")
    assert running["state"] == "running", running["state_reason"]
    return int(server["id"])


async def test_either_daemon_gives_the_same_sandbox(
    api, wait_for_state, jp_serverapp, compute_data_dir, ssh_daemon
):
    server_id = await started_server(api, wait_for_state)
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    cloud_data = manager.get_server(server_id).cloud_data
    token, listener = cloud_data["token"], cloud_data["pid"]
    sandbox = compute_data_dir / "local" / str(server_id)

    # Which daemon: OpenSSH's where it is installed, unless the built-in one is asked for.
    executable = os.readlink(f"/proc/{listener}/exe")
    if ssh_daemon == "auto":
        assert os.path.basename(executable) == "sshd", executable
        # Its config carries the sandbox's environment: this account's alone.
        assert (sandbox / "run" / "sshd_config").stat().st_mode & 0o777 == 0o600
    else:
        assert "local_sshd" in Path(f"/proc/{listener}/cmdline").read_text()
    assert sshd_pids(token) == [listener]
    # Only the server's client key logs in: the start's probe key is gone.
    assert len((sandbox / "ssh" / "authorized_keys").read_text().splitlines()) == 1

    connection = await manager.connection(server_id)
    result = await connection.run(
        "sh",
        "-c",
        'pwd; echo "$HOME"; echo "$JUPYTER_COMPUTE_SERVER_SANDBOX"; '
        'echo "[$CUDA_VISIBLE_DEVICES]"; echo "$JUPYTER_COMPUTE_SERVER_NAME"; echo "$PATH"',
    )
    disk = str(sandbox / "disk")
    assert result.stdout.splitlines() == [disk, disk, token, "[]", "box", os.environ["PATH"]]
    # A command that fails says so with its status.
    assert (await connection.run("sh", "-c", "exit 3", check=False)).exit_status == 3

    # Tunnels reach this machine's loopback only.
    reader, writer = await connection.connection.open_connection("127.0.0.1", cloud_data["port"])
    assert (await reader.readline()).startswith(b"SSH-2.0-")
    writer.close()
    with pytest.raises(asyncssh.ChannelOpenError):
        await connection.connection.open_connection("192.0.2.1", 22)

    # A stop ends everything of the sandbox, the daemon's processes per connection included.
    await connection.run("sh", "-c", "sleep 300 >/dev/null 2>&1 &")
    daemon = daemon_and_sessions(listener)
    assert set(daemon) <= set(processes_with_token(token))
    await api("POST", f"servers/{server_id}/actions/stop")
    assert (await wait_for_state(server_id, "off", "error"))["state"] == "off"
    assert processes_with_token(token) == []
    assert not any(process_alive(pid) for pid in daemon)


async def test_auto_falls_back_to_the_built_in_daemon_where_sshd_cannot_serve(
    jp_serverapp, api, wait_for_state, compute_data_dir, ssh_daemon
):
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    cloud = manager.clouds["local"]
    # A '%' is a token of sshd_config's: OpenSSH's sshd cannot be given this sandbox's files.
    odd = compute_data_dir / "100% ours"
    cloud.data_dir = str(odd)
    server_id = await started_server(api, wait_for_state)
    listener = manager.get_server(server_id).cloud_data["pid"]
    assert "local_sshd" in Path(f"/proc/{listener}/cmdline").read_text()
    assert (odd / str(server_id) / "disk").is_dir()

    await api("POST", f"servers/{server_id}/actions/stop")
    assert (await wait_for_state(server_id, "off", "error"))["state"] == "off"
    if ssh_daemon != "auto":
        return
    # Asked for OpenSSH's by name, the start fails and says why and what to do.
    cloud.ssh_daemon = "openssh"
    await api("POST", f"servers/{server_id}/actions/start")
    failed = await wait_for_state(server_id, "error", "off")
    assert "cannot be written in an sshd_config" in failed["state_reason"], failed
    assert "ssh_daemon = 'auto'" in failed["state_reason"]


async def test_a_login_that_fails_ends_the_daemon_and_says_why(tmp_path: Path):
    sandbox = tmp_path / "sandbox"
    for sub in ("disk", "ssh", "run"):
        (sandbox / sub).mkdir(parents=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    (sandbox / "ssh" / "host_key").write_bytes(host_key.export_private_key())
    os.chmod(sandbox / "ssh" / "host_key", 0o600)
    (sandbox / "ssh" / "host_key.pub").write_bytes(host_key.export_public_key())
    authorized = asyncssh.generate_private_key("ssh-ed25519")
    (sandbox / "ssh" / "authorized_keys").write_bytes(authorized.export_public_key())
    environment = {"JUPYTER_COMPUTE_SERVER_SANDBOX": "t0ken"}

    # The authorized key logs in: the daemon runs, its sessions in the sandbox's disk.
    started = await local_openssh.start(sandbox, environment, authorized, 10)
    try:
        assert started.process.poll() is None
        assert sshd_pids("t0ken") == [started.process.pid]  # found by its config's token
    finally:
        started.process.send_signal(signal.SIGTERM)
        started.process.wait(10)

    # A key it does not accept: the start fails, naming the login, and leaves no daemon.
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(local_openssh.OpenSSHStartError, match="a login through sshd failed"):
        await local_openssh.start(sandbox, environment, stranger, 10)
    assert sshd_pids("t0ken") == []
