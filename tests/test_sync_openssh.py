"""File sync with a machine reached through OpenSSH's own sshd (on 127.0.0.1, with its own
config, host key and authorized keys), as on-prem hosts and cloud VMs are: the sync process
runs there under sshd's session, not the local cloud's."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from jupyter_compute_servers.models import State
from jupyter_compute_servers.ssh import KeyStore
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint

from .composition import services_for
from .sshd import OpenSSHHost, start_sshd


@contextlib.asynccontextmanager
async def openssh_host(tmp_path: Path):
    """(manager with sync, the Jupyter root, the workspace on the OpenSSH host)."""
    keys = KeyStore(tmp_path / "keys")
    sshd = start_sshd(tmp_path, keys.ensure(1))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
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
    root = tmp_path / "root"
    root.mkdir()
    services = services_for(tmp_path, {"openssh": cloud}, sync_root=root)
    manager = services.manager
    server = manager.create_server({"name": "lab-host", "cloud": "openssh"})
    manager.request_action(server.id, "start")
    await manager.wait_for_action(server.id)
    assert manager.get_server(server.id).state is State.RUNNING
    try:
        yield services, root, workspace
    finally:
        await services.close()
        sshd.process.terminate()
        sshd.process.wait()


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != ".jupyter-compute-servers-sync.json"
    }


async def test_sync_over_openssh_both_ways(tmp_path):
    async with openssh_host(tmp_path) as (services, root, workspace):
        await sync_both_ways(services, root, workspace, tmp_path)


async def sync_both_ways(services, root: Path, workspace: Path, tmp_path: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "train.py").write_text("print('train')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    run = await services.sync.run(1)
    assert run["state"] == "completed", run
    assert run["summary"]["sent"]["files"] == 3
    assert files(workspace) == files(root)
    assert (workspace / "run.sh").stat().st_mode & 0o777 == 0o755

    # Changes on both sides, a conflict, a deletion, and a link out of the workspace there.
    (workspace / "src" / "train.py").write_text("print('tuned on the server')\n")
    (workspace / "results.csv").write_text("loss\n0.1\n")
    (root / "data.bin").unlink()
    (root / "run.sh").write_text("#!/bin/sh\necho here\n")
    (workspace / "run.sh").write_text("#!/bin/sh\necho there\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "escape").symlink_to(outside)
    (root / "escape").mkdir()
    (root / "escape" / "x.txt").write_text("stays here")
    run = await services.sync.run(1)
    assert run["state"] == "completed", run
    summary = run["summary"]
    assert summary["deleted"] == {"local": 0, "remote": 1}
    (conflict,) = summary["conflicts"]
    kept = conflict["conflict_path"]
    assert kept.startswith("run (conflict lab-host ") and kept.endswith(").sh")
    assert {"path": "escape", "side": "remote", "reason": "symbolic link"} in summary["skipped"]
    assert list(outside.iterdir()) == []
    expected = {
        "src/train.py": b"print('tuned on the server')\n",
        "results.csv": b"loss\n0.1\n",
        "run.sh": b"#!/bin/sh\necho here\n",
        kept: b"#!/bin/sh\necho there\n",
    }
    assert files(workspace) == expected
    assert files(root) == {**expected, "escape/x.txt": b"stays here"}
    again = await services.sync.run(1)
    assert again["summary"]["changes"] == []
