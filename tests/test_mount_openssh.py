"""The live workspace on a machine reached through OpenSSH's own sshd (as on-prem hosts and
cloud VMs are): real sshfs and FUSE, its SFTP served over the one connection, a cut link, and
Jupyter's shutdown unmounting."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sys
from pathlib import Path

import pytest

from jupyter_compute_servers.models import State
from jupyter_compute_servers.mount.workspace import MountRequest
from jupyter_compute_servers.ssh import KeyStore
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint

from .composition import services_for
from .kernel_helpers import wait_until
from .sshd import OpenSSHHost, start_sshd

pytestmark = pytest.mark.skipif(
    shutil.which("sshfs") is None or not os.path.exists("/dev/fuse"),
    reason="needs sshfs and /dev/fuse (apt-get install sshfs)",
)


def mounted_under(path: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


async def test_a_mount_over_openssh_survives_a_cut_and_ends_with_jupyter(tmp_path: Path):
    keys = KeyStore(tmp_path / "keys")
    sshd = start_sshd(tmp_path, keys.ensure(1))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    (root / "data" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (root / "notes.txt").write_text("v1")
    cloud = OpenSSHHost(data_dir=str(tmp_path / "cloud"))
    cloud.endpoint = SSHEndpoint(
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.username,
        host_key=sshd.host_key,
        workspace=str(workspace),
        python=sys.executable,
        runtime_dir=str(tmp_path / "remote-runtime"),
    )
    services = services_for(tmp_path, {"openssh": cloud}, sync_root=root)
    manager, mounts = services.manager, services.mounts
    mounts.retry_interval = 0.2
    closed = False
    try:
        server = manager.create_server({"name": "lab-host", "cloud": "openssh"})
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        assert manager.get_server(server.id).state is State.RUNNING
        mount = await mounts.mount(server.id, MountRequest(read_only=True))
        point = Path(mount["remote_path"])
        assert point == workspace / "jupyter" and mounted_under(workspace) == [str(point)]

        async def remote(*argv: str):
            connection = await manager.connection(server.id)
            return await connection.run(*argv, check=False, timeout=60)

        out = await remote("sha256sum", str(point / "data" / "big.bin"))
        digest = out.stdout.split()[0]
        local = await asyncio.create_subprocess_exec(
            "sha256sum", str(root / "data" / "big.bin"), stdout=asyncio.subprocess.PIPE
        )
        assert digest == (await local.communicate())[0].decode().split()[0]
        # Read-only: the server cannot write into the Jupyter root.
        out = await remote("sh", "-c", f"echo x > {point}/planted")
        assert out.exit_status != 0 and not (root / "planted").exists()

        # Cut the connection: the mount fails meanwhile, comes back with today's data.
        cut = await asyncio.create_subprocess_exec(
            "ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{sshd.port}"
        )
        assert await cut.wait() == 0
        await wait_until(lambda: mounts.state(server.id)["state"] != "mounted", timeout=20)
        (root / "notes.txt").write_text("v2")
        await wait_until(lambda: mounts.state(server.id)["state"] == "mounted", timeout=30)
        out = await remote("cat", str(point / "notes.txt"))
        assert out.stdout == "v2", out.stderr
        assert mounted_under(workspace) == [str(point)]

        # Jupyter's shutdown unmounts.
        await services.close()
        closed = True
        assert mounted_under(workspace) == []
        with pytest.raises(OSError) as failed:
            os.stat(point / "notes.txt")
        assert failed.value.errno == errno.ENOENT  # an empty mount point, nothing mounted
    finally:
        if not closed:
            await services.close()
        sshd.process.terminate()
        sshd.process.wait()
