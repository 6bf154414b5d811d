"""Sync without walking: each side's change journal (``SyncWatch`` in ``agent/sync_agent.py``,
inotify on both sides), through the Jupyter server's API with the real agent over the local
cloud's real SSH server, and on real files: a sync where nothing changed walks neither tree,
changes on either side still sync (new directories, renames, deletions), and whatever makes the
journal doubtful (a gap in watching, an overflow, a renamed directory) makes the next scan a
walk that finds what the journal could not."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from jupyter_compute_servers.agent.sync_agent import SYNC_RACY_NS, SyncTree, SyncWatch

from .test_sync import started, sync, user_files, workspace

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="inotify is Linux's (elsewhere every scan walks)"
)

JOURNAL = {"walked": False, "examined": 0}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def test_a_sync_where_nothing_changed_walks_neither_tree_and_changes_sync_by_journal(
    api, wait_for_state, jp_root_dir, compute_data_dir
):
    root = jp_root_dir
    for i in range(40):
        write(root / f"d{i % 4}" / f"f{i}.txt", f"file {i}")
    server = await started(api, wait_for_state)
    ws = workspace(compute_data_dir, server["id"])
    first = await sync(api, server["id"])
    assert first["summary"]["scan"] == {
        "local": {"walked": True},
        "remote": {"walked": True},
        "compared": 40,
    }
    assert first["summary"]["sent"]["files"] == 40
    # The server's journal holds the 40 files the first sync wrote there: looked at once more
    # (and hashed again until their signatures are old enough to trust: see SYNC_RACY_NS).
    await asyncio.sleep(SYNC_RACY_NS / 1e9)
    second = await sync(api, server["id"])
    assert second["summary"]["scan"]["remote"]["walked"] is False
    assert second["summary"]["scan"]["local"] == JOURNAL
    # What the last sync compared and acted on (recorded) is compared once more: settled now.
    await sync(api, server["id"])

    # Nothing changed: neither side walks, nor looks at a single file again, nor compares one.
    run = await sync(api, server["id"])
    assert run["summary"]["scan"] == {"local": JOURNAL, "remote": JOURNAL, "compared": 0}
    assert run["summary"]["changes"] == []

    # What a sync left undone (a push leaves the server's change) is compared again next
    # time, though no journal names it any more.
    write(ws / "d0" / "f0.txt", "pending there")
    run = await sync(api, server["id"], {"direction": "push"})
    assert run["summary"]["pending"] == 1 and run["summary"]["scan"]["compared"] == 1
    run = await sync(api, server["id"])
    assert run["summary"]["scan"] == {"local": JOURNAL, "remote": JOURNAL, "compared": 1}
    assert (root / "d0" / "f0.txt").read_text() == "pending there"

    # One file changed here, one there, a new directory on each side (files made after the
    # watch began), a rename and a deletion: all from the journals, none walked.
    write(root / "d1" / "f1.txt", "changed here")
    write(ws / "d2" / "f2.txt", "changed there")
    write(root / "new-here" / "deep" / "a.txt", "new here")
    write(ws / "new-there" / "deep" / "b.txt", "new there")
    (root / "d3" / "f3.txt").rename(root / "d3" / "renamed.txt")
    (ws / "d0" / "f4.txt").unlink()
    run = await sync(api, server["id"])
    scan = run["summary"]["scan"]
    assert scan["local"]["walked"] is False and scan["local"]["examined"] >= 4
    assert scan["remote"]["walked"] is False and scan["remote"]["examined"] >= 3
    assert run["summary"]["errors"] == [] and run["summary"]["conflicts"] == []
    assert user_files(ws) == user_files(root)
    assert 7 <= scan["compared"] < 20
    files = user_files(root)
    assert files["d1/f1.txt"] == b"changed here" and files["d2/f2.txt"] == b"changed there"
    assert files["new-there/deep/b.txt"] == b"new there"
    assert files["new-here/deep/a.txt"] == b"new here"
    assert "d3/f3.txt" not in files and files["d3/renamed.txt"] == b"file 3"
    assert "d0/f4.txt" not in files

    # A file added later inside the new directory: it is watched now.
    write(root / "new-here" / "deep" / "later.txt", "later")
    run = await sync(api, server["id"])
    assert run["summary"]["scan"]["local"]["walked"] is False
    assert (ws / "new-here" / "deep" / "later.txt").read_text() == "later"

    # A directory renamed: its watches would name the old paths, so that side walks.
    (ws / "new-there").rename(ws / "moved-there")
    run = await sync(api, server["id"])
    assert run["summary"]["scan"]["remote"] == {"walked": True}
    assert user_files(root) == user_files(ws)
    assert (root / "moved-there" / "deep" / "b.txt").read_text() == "new there"
    assert not (root / "new-there").exists()


async def test_a_change_made_while_nothing_watched_is_found_by_a_walk(
    api, wait_for_state, jp_root_dir, compute_data_dir, jp_serverapp
):
    root = jp_root_dir
    write(root / "a.txt", "a")
    write(root / "sub" / "b.txt", "b")
    server = await started(api, wait_for_state)
    ws = workspace(compute_data_dir, server["id"])
    await sync(api, server["id"])
    await sync(api, server["id"])

    # The server restarts (its sync process, and journal, with it); meanwhile its file changes.
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off", "error")
    write(ws / "sub" / "b.txt", "changed while the server was off")
    await api("POST", f"servers/{server['id']}/actions/start")
    assert (await wait_for_state(server["id"], "running", "error"))["state"] == "running"
    run = await sync(api, server["id"])
    assert run["summary"]["scan"]["remote"] == {"walked": True}
    assert (root / "sub" / "b.txt").read_text() == "changed while the server was off"

    # Jupyter restarts (its journals go with the process); meanwhile a file here changes.
    service = jp_serverapp.web_app.settings["compute_servers_sync"]
    for watch in service._watches.values():
        watch.close()
    service._watches.clear()
    write(root / "a.txt", "changed while Jupyter was down")
    run = await sync(api, server["id"])
    assert run["summary"]["scan"]["local"] == {"walked": True}
    assert run["summary"]["scan"]["remote"]["walked"] is False
    assert (ws / "a.txt").read_text() == "changed while Jupyter was down"


async def test_an_overflowing_journal_makes_the_next_scan_a_walk(
    api, wait_for_state, jp_root_dir, compute_data_dir, jp_serverapp
):
    root = jp_root_dir
    for i in range(10):
        write(root / f"f{i}.txt", "x")
    server = await started(api, wait_for_state)
    ws = workspace(compute_data_dir, server["id"])
    await sync(api, server["id"])
    service = jp_serverapp.web_app.settings["compute_servers_sync"]
    (watch,) = service._watches.values()
    watch.capacity = 3  # the journal holds 3 names at most (the real bound is 100,000)
    for i in range(10):
        write(root / f"f{i}.txt", f"changed {i}")
    run = await sync(api, server["id"])
    assert run["summary"]["scan"]["local"] == {"walked": True}
    assert run["summary"]["sent"]["files"] == 10
    assert user_files(ws) == user_files(root)


# --- on real files, the watch alone ------------------------------------------------------


def scan(watch: SyncWatch, root: Path, **parameters) -> tuple[dict, dict | None]:
    tree = SyncTree(str(root))
    try:
        return watch.scan(tree, **parameters)
    finally:
        tree.close()


def paths(result: dict) -> set[str]:
    return {entry[0] for entry in result["files"]}


def test_the_journal_answers_what_a_walk_would(tmp_path):
    # After each change the journal's answer is checked against a walk of the tree.
    root = tmp_path / "tree"
    for i in range(20):
        write(root / f"d{i % 3}" / f"f{i}", "x")
    watch = SyncWatch()
    result, touched = scan(watch, root)
    assert touched is None and watch.walked and len(result["files"]) == 20

    def check(change, *, walked: bool = False) -> dict | None:
        change()
        result, touched = scan(watch, root)
        assert watch.walked is walked
        expected = SyncTree(str(root)).scan()
        assert sorted(result["files"]) == sorted(expected["files"])
        assert sorted(result["skipped"]) == sorted(expected["skipped"])
        assert sorted(result["pruned"]) == sorted(expected["pruned"])
        return touched

    assert check(lambda: None) == {}
    touched = check(lambda: write(root / "d0" / "f0", "changed"))
    assert set(touched) == {"d0/f0"}
    check(lambda: (root / "d1" / "f1").unlink())
    check(lambda: (root / "d2" / "f2").rename(root / "d2" / "g2"))
    check(lambda: os.chmod(root / "d0" / "f3", 0o700))
    check(lambda: write(root / "new" / "a" / "b" / "c", "deep and new"))
    check(lambda: write(root / "new" / "a" / "b" / "d", "in a directory watched since"))
    check(lambda: (root / "link").symlink_to(root / "d0" / "f0"))
    check(lambda: write(root / "d1" / "pyvenv.cfg", ""))  # d1 becomes an environment
    check(lambda: (root / "d1" / "pyvenv.cfg").unlink())  # and is one no more
    check(lambda: write(root / "d1" / "f4", "inside a directory pruned a moment ago"))
    check(lambda: __import__("shutil").rmtree(root / "new"))
    check(lambda: (root / "d2").rename(root / "d2-renamed"), walked=True)
    check(lambda: write(root / "d2-renamed" / "f5", "watched again after the walk"))
    # Something it cannot vouch for makes it walk: a sync's temporary file left in place.
    check(lambda: write(root / "d0" / ".f0.jcs-sync-0123456789ab.tmp", ""), walked=True)


def test_a_file_changed_through_another_link_is_still_seen(tmp_path):
    # inotify reports a change to the directory it was made through: a file with another
    # link outside the tree is looked at on every scan.
    root = tmp_path / "tree"
    write(root / "linked.txt", "one")
    os.link(root / "linked.txt", tmp_path / "outside.txt")
    watch = SyncWatch()
    scan(watch, root)
    (tmp_path / "outside.txt").write_text("changed outside the tree")
    result, touched = scan(watch, root)
    assert not watch.walked and touched is not None and "linked.txt" in touched
    (entry,) = result["files"]
    assert entry[1] == len("changed outside the tree")


def test_a_closed_watch_or_other_parameters_walk(tmp_path):
    root = tmp_path / "tree"
    write(root / "a" / "x.py", "x")
    write(root / "b.txt", "b")
    watch = SyncWatch()
    scan(watch, root)
    scan(watch, root)
    assert not watch.walked
    result, _ = scan(watch, root, patterns=["*.py"])  # other excludes: a walk, and a new base
    assert watch.walked and paths(result) == {"b.txt"}
    write(root / "a" / "y.py", "excluded")
    result, _ = scan(watch, root, patterns=["*.py"])
    assert not watch.walked and paths(result) == {"b.txt"}
    result, _ = scan(watch, root, path="a")  # a sub-path
    assert watch.walked and paths(result) == {"a/x.py", "a/y.py"}
    watch.close()
    write(root / "a" / "z.txt", "while nothing watched")
    result, _ = scan(watch, root, path="a")
    assert watch.walked and "a/z.txt" in paths(result)
    scan(watch, root, path="a")
    assert watch.walked  # closed: it watches no more


def test_a_tree_with_more_directories_than_its_share_of_watches_is_walked(tmp_path, monkeypatch):
    # Watches are the user's, shared with their other tools: a tree needing more than half
    # of them is walked at every scan rather than take them all.
    from jupyter_compute_servers.agent import sync_agent

    root = tmp_path / "tree"
    for i in range(5):
        write(root / f"d{i}" / "f", "x")
    monkeypatch.setattr(sync_agent, "_sync_max_watches", lambda: 3)
    watch = SyncWatch()
    scan(watch, root)
    write(root / "d0" / "f", "changed")
    result, touched = scan(watch, root)
    assert watch.walked and touched is None
    assert {entry[0]: entry[1] for entry in result["files"]}["d0/f"] == len("changed")
    monkeypatch.setattr(sync_agent, "_sync_max_watches", lambda: 6)  # 5 and the root
    scan(watch, root)
    scan(watch, root)
    assert not watch.walked


def test_an_answer_of_changes_misses_nothing_when_a_replay_gives_way_to_a_walk(tmp_path):
    # The sync process answers with the changes since its last answer: when the journal is
    # replayed part way and then must give way to a walk (here a sync temporary file still
    # there, examined after the changed file), the changes found part way are still answered.
    from jupyter_compute_servers.agent.sync_agent import SyncTree, _sync_scan_answer

    root = tmp_path / "tree"
    write(root / "a.txt", "a")
    write(root / "z" / "b.txt", "b")
    last: dict = {}
    request = {"op": "scan", "path": "", "excludes": [], "server_only": [], "max_size": None}

    def answer(since=None):
        tree = SyncTree(str(root))
        try:
            return _sync_scan_answer(tree, dict(request, since=since), last)
        finally:
            tree.close()

    first = answer()
    write(root / "a.txt", "changed")
    write(root / "z" / ".b.txt.jcs-sync-0123456789ab.tmp", "")
    second = answer(first["token"])
    assert second["walked"] is True
    assert [entry[0] for entry in second["changed"]] == ["a.txt"] and second["removed"] == []
