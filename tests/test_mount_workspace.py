"""A server's workspace setting (synced, mounted or both) on the real local cloud with real sshfs:
a mounted workspace is mounted at each start, by itself, and again after Jupyter is killed and
started anew; it is never synced; its shells and kernels start in the mounted tree; switching
back to synced unmounts it; bad settings are refused naming the field."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .jupyter_process import JupyterProcess, kill_sandboxes_under
from .kernel_helpers import execute, until_iopub_live, wait_until
from .test_mount import mounted_under, start_kernel

pytestmark = pytest.mark.skipif(
    shutil.which("sshfs") is None or not os.path.exists("/dev/fuse"),
    reason="needs sshfs and /dev/fuse (apt-get install sshfs)",
)

MOUNTED = {"mode": "mounted", "mount": {"path": "", "read_only": False, "mount_point": "jupyter"}}


async def wait_mount(api, server_id: int, state: str | None) -> dict[str, Any] | None:
    """The server's mount once it is in ``state`` (None: no mount)."""

    async def mount() -> Any:
        _, server = await api("GET", f"servers/{server_id}")
        return server["mount"]

    found = await wait_until(
        mount, predicate=lambda m: (m or {}).get("state") == state if state else m is None
    )
    return found


async def test_a_mounted_workspace_is_mounted_at_each_start_and_never_synced(
    api, wait_for_state, jp_fetch, jp_root_dir, jp_serverapp
):
    (jp_root_dir / "data").mkdir()
    (jp_root_dir / "data" / "train.csv").write_text("x\n1\n2\n")
    code, server = await api("POST", "servers", {"name": "live", "workspace": MOUNTED})
    assert code == 201, server
    assert server["workspace"] == MOUNTED and server["mount"] is None
    sid = server["id"]
    await api("POST", f"servers/{sid}/actions/start")
    assert (await wait_for_state(sid, "running", "error"))["state"] == "running"

    # Mounted by itself once the server runs: no Mount button was pressed.
    mount = await wait_mount(api, sid, "mounted")
    assert mount is not None
    point = mount["remote_path"]
    assert mounted_under(Path(point)) == [point]
    # (Read off the event loop: it serves the mount's SFTP in this process.)
    text = await asyncio.to_thread(Path(point, "data", "train.csv").read_text)
    assert text == "x\n1\n2\n"

    # Never synced: the API says why and what to do, naming the field.
    code, body = await api("POST", f"servers/{sid}/sync", {"direction": "both"})
    assert code == 409 and body["field"] == "workspace.mode", body
    assert "'both'" in body["message"]

    # A shell opens in the mounted tree.
    code, terminal = await api("POST", f"servers/{sid}/terminals", {})
    assert code == 201, terminal
    assert terminal["cwd"].rstrip("/").endswith("/jupyter"), terminal
    await api("DELETE", f"servers/{sid}/terminals/{terminal['name']}")

    # A notebook's kernel starts in the mounted tree; nothing is synced before it.
    name = f"compute-{sid}-python3"
    await wait_until(lambda: name in jp_serverapp.kernel_spec_manager.find_kernel_specs())
    kernel_id = await start_kernel(jp_fetch, name, "data/analysis.ipynb")
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await until_iopub_live(client)
        reply, printed = await execute(
            client, "import os\nprint(os.getcwd(), len(open('train.csv').read().split()))"
        )
        assert reply["content"]["status"] == "ok", reply
        assert printed.split() == [f"{point}/data", "3"]
    finally:
        client.stop_channels()
        await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    # A notebook at the root: its kernel starts at the mount point.
    kernel_id = await start_kernel(jp_fetch, name, "root.ipynb")
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await until_iopub_live(client)
        reply, printed = await execute(client, "import os\nprint(os.getcwd())")
        assert reply["content"]["status"] == "ok", reply
        assert printed.strip() == point
    finally:
        client.stop_channels()
        await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    _, listing = await api("GET", f"servers/{sid}/syncs")
    assert listing["syncs"] == []

    # Stopped: unmounted first. Started again: mounted again, by itself.
    await api("POST", f"servers/{sid}/actions/stop")
    assert (await wait_for_state(sid, "off", "error"))["state"] == "off"
    assert mounted_under(Path(point)) == []
    await api("POST", f"servers/{sid}/actions/start")
    assert (await wait_for_state(sid, "running", "error"))["state"] == "running"
    await wait_mount(api, sid, "mounted")
    assert mounted_under(Path(point)) == [point]

    # Switched to synced while running: unmounted; syncs work again.
    code, server = await api("PATCH", f"servers/{sid}", {"workspace": {"mode": "synced"}})
    assert code == 200 and server["workspace"]["mode"] == "synced", server
    await wait_mount(api, sid, None)
    assert mounted_under(Path(point)) == []
    code, body = await api("POST", f"servers/{sid}/sync", {"direction": "push"})
    assert code == 202, body

    # And to both: mounted again beside the synced tree (the PATCH keeps the mount as set).
    code, server = await api("PATCH", f"servers/{sid}", {"workspace": {"mode": "both"}})
    assert server["workspace"] == {**MOUNTED, "mode": "both"}, server
    await wait_mount(api, sid, "mounted")
    await api("POST", f"servers/{sid}/actions/stop")
    assert (await wait_for_state(sid, "off", "error"))["state"] == "off"


async def test_a_mount_that_cannot_be_made_shows_why(api, wait_for_state, jp_root_dir):
    code, server = await api(
        "POST",
        "servers",
        {"name": "gone", "workspace": {"mode": "both", "mount": {"path": "missing"}}},
    )
    assert code == 201, server
    sid = server["id"]
    await api("POST", f"servers/{sid}/actions/start")
    assert (await wait_for_state(sid, "running", "error"))["state"] == "running"
    mount = await wait_mount(api, sid, "failed")
    assert mount is not None and "missing" in mount["reason"], mount
    # Made, it is mounted at the next edit of the setting.
    (jp_root_dir / "missing").mkdir()
    code, _ = await api("PATCH", f"servers/{sid}", {"workspace": {"mount": {"read_only": True}}})
    assert code == 200
    mount = await wait_mount(api, sid, "mounted")
    assert mount is not None and mount["read_only"] and mount["path"] == "missing"
    await api("POST", f"servers/{sid}/actions/stop")
    assert (await wait_for_state(sid, "off", "error"))["state"] == "off"


@pytest.mark.parametrize(
    ("workspace", "field"),
    [
        ("mounted", "workspace"),
        ({"mode": "fused"}, "workspace.mode"),
        ({"mode": "mounted", "extra": 1}, "workspace.extra"),
        ({"mount": []}, "workspace.mount"),
        ({"mount": {"path": "../etc"}}, "workspace.mount.path"),
        ({"mount": {"mount_point": ""}}, "workspace.mount.mount_point"),
        ({"mount": {"read_only": "yes"}}, "workspace.mount.read_only"),
        ({"mount": {"size": 1}}, "workspace.mount.size"),
    ],
)
async def test_bad_workspace_settings_name_the_field(api, workspace, field):
    code, body = await api("POST", "servers", {"name": "bad", "workspace": workspace})
    assert code == 400 and body["field"] == field, body
    code, server = await api("POST", "servers", {"name": "good"})
    assert code == 201
    code, body = await api("PATCH", f"servers/{server['id']}", {"workspace": workspace})
    assert code == 400 and body["field"] == field, body
    _, server = await api("GET", f"servers/{server['id']}")
    assert server["workspace"]["mode"] == "synced"


def test_a_mounted_workspace_comes_back_after_jupyter_is_killed(tmp_path: Path) -> None:
    data_dir, root_dir = tmp_path / "data", tmp_path / "root"
    data_dir.mkdir()
    root_dir.mkdir()
    (root_dir / "notes.txt").write_text("before\n")
    jupyter = JupyterProcess(data_dir, root_dir)
    point = ""
    server_id = 0
    try:
        code, server = jupyter.call("POST", "servers", {"name": "keeper", "workspace": MOUNTED})
        assert code == 201, server
        server_id = server["id"]  # type: ignore[index]
        assert jupyter.call("POST", f"servers/{server_id}/actions/start")[0] == 202
        assert jupyter.wait_settled(server_id, timeout=60)["state"] == "running"
        point = wait_process_mount(jupyter, server_id, "mounted")["remote_path"]
        assert Path(point, "notes.txt").read_text() == "before\n"

        jupyter.kill()
        # The server runs on; its mount died with the connection: access fails, it does not
        # show an empty or stale tree.
        with pytest.raises(OSError):
            Path(point, "notes.txt").read_text()
        (root_dir / "notes.txt").write_text("after\n")

        jupyter = JupyterProcess(data_dir, root_dir)
        mount = wait_process_mount(jupyter, server_id, "mounted")
        assert mount["remote_path"] == point
        assert Path(point, "notes.txt").read_text() == "after\n"
        assert mounted_under(Path(point)) == [point]
    finally:
        if server_id:
            jupyter.call("POST", f"servers/{server_id}/actions/deprovision")
            with contextlib.suppress(AssertionError):
                jupyter.wait_settled(server_id, timeout=60)
        jupyter.stop()
        kill_sandboxes_under(tmp_path)
        if point and mounted_under(Path(point)):
            subprocess.run(["fusermount3", "-u", "-z", point], check=False)
    assert not point or mounted_under(Path(point)) == []


def wait_process_mount(jupyter: JupyterProcess, server_id: int, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        _, server = jupyter.call("GET", f"servers/{server_id}")
        mount = server["mount"]  # type: ignore[index]
        if mount and mount["state"] == state:
            return mount
        assert time.monotonic() < deadline, json.dumps(server)
        time.sleep(0.1)
