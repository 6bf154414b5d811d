"""The file-level part of sync (``agent/sync_agent.py``, the same code on both sides), on real
files: excludes against git's own, what a scan reports, writes that never overwrite a change,
paths kept inside the tree, and the session process's protocol."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_compute_servers.agent import SYNC_AGENT_SOURCE, bootstrap
from jupyter_compute_servers.agent import sync_agent as agent
from jupyter_compute_servers.agent.sync_agent import SyncChanged, SyncTree, sync_parts

# --- excludes: the same answers as git ----------------------------------------------------

NAMES = ["a", "b", "c.py", "d.txt", "e f", "x1"]
GLOB_PARTS = [
    "a",
    "b",
    "c",
    "*",
    "?",
    "*.py",
    "d.*",
    "[ab]",
    "[!a]*",
    "x?",
    "e f",
    "*.*y",
    "*[a-c]*",
]


@st.composite
def patterns(draw) -> str:
    segments = draw(
        st.lists(st.sampled_from([*GLOB_PARTS, "**"]), min_size=1, max_size=3).filter(
            lambda s: s != ["**"] * len(s) or len(s) == 1
        )
    )
    line = "/".join(segments)
    if draw(st.booleans()) and len(segments) == 1:
        line = "/" + line
    if draw(st.booleans()):
        line += "/"
    if draw(st.integers(0, 4)) == 0:
        line = "!" + line
    return line


@st.composite
def trees(draw) -> list[str]:
    paths = draw(
        st.lists(
            st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
            min_size=1,
            max_size=12,
        )
    )
    # No path may be both a file and a directory.
    files = sorted(set(paths))
    return [p for p in files if not any(q.startswith(p + "/") for q in files)]


def _git_included(root: Path, lines: list[str]) -> set[str]:
    (root / ".gitignore").write_text("\n".join(lines) + "\n")
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    ).stdout
    return {p.decode() for p in listed.split(b"\0") if p} - {".gitignore"}


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("gitignore")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees(), lines=st.lists(patterns(), min_size=1, max_size=4))
def test_excludes_match_gits_own_ignore_rules(git_repo, tree, lines):
    for entry in list(git_repo.iterdir()):
        if entry.name != ".git":
            subprocess.run(["rm", "-rf", str(entry)], check=True)
    for path in tree:
        (git_repo / path).parent.mkdir(parents=True, exist_ok=True)
        (git_repo / path).write_text(path)
    scan = SyncTree(str(git_repo)).scan("", [*lines, ".git/", "/.gitignore"])
    ours = {entry[0] for entry in scan["files"]}
    assert ours == _git_included(git_repo, lines), lines


def test_pattern_syntax_details():
    excludes = agent.SyncExcludes(
        ["# a comment", "", "\\#hash", "trailing\\ ", "/anchored", "deep/**/x", "only-dir/"]
    )
    assert excludes.excluded("#hash", False)
    assert excludes.excluded("trailing ", False)
    assert excludes.excluded("anchored", False) and not excludes.excluded("a/anchored", False)
    assert excludes.excluded("deep/x", False) and excludes.excluded("deep/1/2/x", False)
    assert excludes.excluded("only-dir", True) and not excludes.excluded("only-dir", False)
    with pytest.raises(ValueError, match="character classes"):
        agent.sync_pattern("[[:alpha:]]")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("pattern", "path", "matching"),
    [
        ("*a*a*a*a*a*ab", "a" * 200, "a" * 200 + "b"),
        ("*a*a*a*a*a*ab", "x/" + "a" * 200, "x/" + "a" * 199 + "b"),
        ("/*a*a*a*a*a*ab", "a" * 200, "aaaaaab"),
        ("*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*c", "ab" * 100, "ab" * 100 + "c"),
        ("a*a*a*a*a*a*a*a*a*a*a*c/**", "a" * 250 + "/x", "a" * 250 + "c/x"),
        ("**/a/**/a/**/a/**/a/**/a/**/a/**/b", "/".join(["a"] * 200), "/".join(["a"] * 200) + "/b"),
        ("**/*a*a*a*a*a*/**/*a*a*a*a*ab", "/".join(["a" * 50] * 40), "aaaaa/x/aaaaab"),
    ],
)
def test_a_pathological_pattern_is_decided_at_once(pattern, path, matching):
    """Patterns that take a backtracking matcher exponential time (the first one did not end in
    60 s against a 200-character name): bounded by the timeout, no timing asserted."""
    for rules in ([pattern], [pattern, "!unrelated"]):
        excludes = agent.SyncExcludes(rules)
        assert excludes.excluded(path, False) is None and excludes.excluded(path, True) is None
        assert excludes.excluded(matching, False) == agent.SYNC_PRUNED_EXCLUDED
    assert agent.SyncExcludes([pattern + "/"]).excluded(path, True) is None


# --- scans --------------------------------------------------------------------------------


def test_a_scan_reports_what_it_skips_and_leaves_environments_and_server_only_dirs_out(tmp_path):
    root = tmp_path / "tree"
    (root / "env" / "lib").mkdir(parents=True)
    (root / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "env" / "lib" / "x.py").write_text("")
    (root / "conda" / "conda-meta").mkdir(parents=True)
    (root / "scratch" / "big").mkdir(parents=True)
    (root / "scratch" / "big" / "tmp.bin").write_bytes(b"x")
    (root / "kept.txt").write_text("kept")
    (root / "large.bin").write_bytes(b"x" * 2000)
    (root / "link").symlink_to(tmp_path)
    (root / "file-link").symlink_to(root / "kept.txt")
    os.mkfifo(root / "pipe")
    (root / os.fsdecode(b"bad-\xff-name")).write_text("x")
    scan = SyncTree(str(root)).scan("", [], ["scratch"], max_size=1000)
    assert [f[0] for f in scan["files"]] == ["kept.txt"]
    assert sorted(scan["pruned"]) == [
        ["conda", "conda environment"],
        ["env", "virtual environment"],
        ["scratch", "server-only directory"],
    ]
    skipped = {entry[0]: entry[1:] for entry in scan["skipped"]}
    assert skipped["large.bin"] == ["too large", 2000]
    assert skipped["link"][0] == skipped["file-link"][0] == "symbolic link"
    assert skipped["pipe"][0] == "not a regular file"
    assert skipped["bad-\ufffd-name"][0] == "name is not valid UTF-8"


def test_a_sub_path_scan_stays_inside_and_respects_excludes_above_it(tmp_path):
    root = tmp_path / "tree"
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "index.js").write_text("")
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c.txt").write_text("c")
    (root / "a" / "d.txt").write_text("d")
    tree = SyncTree(str(root))
    assert [f[0] for f in tree.scan("a/b")["files"]] == ["a/b/c.txt"]
    assert tree.scan("node_modules/pkg", ["node_modules/"])["pruned"] == [
        ["node_modules", "excluded"]
    ]
    (root / "outside").symlink_to(tmp_path)
    assert tree.scan("outside/x")["skipped"] == [["outside", "symbolic link", 0]]


def test_stale_temporary_files_are_cleaned_and_set_aside_ones_restored(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    root.mkdir()
    (root / ".a.txt.jcs-sync-0123456789ab.tmp").write_text("half a copy")
    (root / ".b.txt.jcs-sync-0123456789ab.old").write_text("the user's b")
    (root / ".c.txt.jcs-sync-0123456789ab.old").write_text("an older c")
    (root / "c.txt").write_text("the new c")
    tree = SyncTree(str(root))
    # Fresh ones belong to a sync under way: left alone, and never listed.
    assert tree.scan("")["files"] == [["c.txt", *tree.scan("")["files"][0][1:]]]
    assert len(list(root.iterdir())) == 4
    monkeypatch.setattr(agent, "SYNC_STALE_NS", 0)
    tree.scan("")
    assert sorted(p.name for p in root.iterdir()) == [
        ".c.txt.jcs-sync-0123456789ab.old",  # its name is taken: kept, never deleted
        "b.txt",
        "c.txt",
    ]
    assert (root / "b.txt").read_text() == "the user's b"


# --- writing -------------------------------------------------------------------------------


def _sig(path: Path) -> list[int]:
    st_ = path.stat()
    return [st_.st_size, st_.st_mtime_ns, st_.st_ino, st_.st_ctime_ns]


def _write(
    tree: SyncTree, path: str, data: bytes, expect, mode: int = 0o644, mtime_ns: int = 10**18
):
    writer = tree.open_write(path, expect, len(data), mode, mtime_ns)
    writer.write(data)
    return writer.finish(hashlib.sha256(data).hexdigest())


def test_a_write_puts_the_whole_file_in_place_with_its_mode_and_mtime(tmp_path):
    tree = SyncTree(str(tmp_path))
    answer = _write(tree, "new/dir/run.sh", b"#!/bin/sh\n", None, 0o755, 1_700_000_000 * 10**9)
    written = tmp_path / "new" / "dir" / "run.sh"
    assert written.read_bytes() == b"#!/bin/sh\n"
    assert written.stat().st_mode & 0o777 == 0o755
    assert written.stat().st_mtime_ns == 1_700_000_000 * 10**9
    assert answer["sig"] == _sig(written) and answer["trusted"]
    assert answer["hash"] == hashlib.sha256(b"#!/bin/sh\n").hexdigest()
    assert sorted(p.name for p in written.parent.iterdir()) == ["run.sh"]


def test_a_write_never_replaces_a_file_changed_since_the_scan(tmp_path):
    tree = SyncTree(str(tmp_path))
    target = tmp_path / "notes.txt"
    target.write_text("seen by the scan")
    seen = _sig(target)
    writer = tree.open_write("notes.txt", seen, 3, 0o644, 10**18)
    writer.write(b"new")
    target.write_text("the user's edit, during the sync")
    with pytest.raises(SyncChanged):
        writer.finish(None)
    assert target.read_text() == "the user's edit, during the sync"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no temporary file left

    # Expected absent, but created meanwhile.
    writer = tree.open_write("fresh.txt", None, 3, 0o644, 10**18)
    writer.write(b"new")
    (tmp_path / "fresh.txt").write_text("created by the user")
    with pytest.raises(SyncChanged):
        writer.finish(None)
    assert (tmp_path / "fresh.txt").read_text() == "created by the user"


def test_an_incomplete_or_corrupted_copy_never_takes_the_place_of_a_good_file(tmp_path):
    tree = SyncTree(str(tmp_path))
    good = tmp_path / "data.csv"
    good.write_text("good")
    writer = tree.open_write("data.csv", _sig(good), 10, 0o644, 10**18)
    writer.write(b"12345")  # half of it
    with pytest.raises(SyncChanged, match="only 5 of 10 bytes"):
        writer.finish(None)
    writer = tree.open_write("data.csv", _sig(good), 3, 0o644, 10**18)
    writer.write(b"bad")
    with pytest.raises(SyncChanged, match="not what was sent"):
        writer.finish("0" * 64)
    assert good.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


def test_deletes_chmods_and_renames_happen_only_to_the_file_that_was_seen(tmp_path):
    tree = SyncTree(str(tmp_path))
    (tmp_path / "d" / "e").mkdir(parents=True)
    f = tmp_path / "d" / "e" / "f.txt"
    f.write_text("seen")
    seen = _sig(f)
    f.write_text("changed")
    for call in (
        lambda: tree.delete("d/e/f.txt", seen),
        lambda: tree.chmod("d/e/f.txt", 0o700, seen),
        lambda: tree.rename("d/e/f.txt", "g.txt", seen),
    ):
        with pytest.raises(SyncChanged):
            call()
        assert f.read_text() == "changed"
    assert tree.chmod("d/e/f.txt", 0o700, _sig(f))["mode"] == 0o700
    tree.rename("d/e/f.txt", "g.txt", _sig(f))
    assert (tmp_path / "g.txt").read_text() == "changed"
    (tmp_path / "d" / "e" / "h.txt").write_text("h")
    tree.delete("d/e/h.txt", _sig(tmp_path / "d" / "e" / "h.txt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.txt"]  # emptied dirs went too
    (tmp_path / "taken.txt").write_text("taken")
    with pytest.raises(SyncChanged):
        tree.rename("g.txt", "taken.txt", _sig(tmp_path / "g.txt"))
    assert (tmp_path / "taken.txt").read_text() == "taken"


@pytest.mark.parametrize(
    "path", ["../outside.txt", "/etc/passwd", "a/../../x", "a//b", "./a", "a/.", "", "a\x00b"]
)
def test_paths_outside_the_tree_are_refused(tmp_path, path):
    tree = SyncTree(
        str(
            tmp_path / "tree",
        ),
        create=True,
    )
    with pytest.raises(ValueError):
        sync_parts(path)
    with pytest.raises(ValueError):
        tree.open_write(path, None, 1, 0o644, 0)
    assert list((tmp_path / "tree").iterdir()) == []


def test_links_never_lead_a_write_or_a_read_out_of_the_tree(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "tree"
    root.mkdir()
    (root / "link").symlink_to(outside)
    (root / "file-link").symlink_to(outside / "secret.txt")
    tree = SyncTree(str(root))
    with pytest.raises(ValueError, match="link"):
        tree.open_write("link/evil.txt", None, 1, 0o644, 0)
    with pytest.raises(ValueError):
        tree.open_read("link/secret.txt")
    with pytest.raises(OSError):
        tree.open_read("file-link")  # O_NOFOLLOW: a link is not read through
    with pytest.raises(SyncChanged):
        _write(tree, "file-link", b"x", None)  # it is there: never replaced unseen
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"


# --- the session process ------------------------------------------------------------------


class Session:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-c", bootstrap(SYNC_AGENT_SOURCE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.process.stdin.write(SYNC_AGENT_SOURCE)

    def send(self, message, payload: bytes = b"") -> None:
        self.process.stdin.write(json.dumps(message).encode() + b"\n" + payload)
        self.process.stdin.flush()

    def receive(self):
        answer = json.loads(self.process.stdout.readline())
        if "size" in answer:
            answer["payload"] = self.process.stdout.read(answer["size"])
        return answer

    def close(self) -> int:
        self.process.stdin.close()
        return self.process.wait(10)


def test_the_session_answers_in_order_and_survives_bad_requests(tmp_path):
    session = Session()
    try:
        session.send({"op": "scan"})
        assert session.receive() == {"ok": False, "error": "no tree is open", "changed": False}
        session.send({"op": "open", "root": str(tmp_path / "ws"), "marker": True})
        opened = session.receive()
        assert opened["ok"] and opened["root"] == str(tmp_path / "ws")
        marker = json.loads((tmp_path / "ws" / agent.SYNC_MARKER).read_text())
        assert marker["id"] == opened["tree_id"]
        # A bad path: its data is read and dropped, and the channel stays in step.
        session.send(
            {"op": "put", "path": "../x", "size": 5, "mode": 0o644, "mtime_ns": 0}, b"hello"
        )
        session.send({"ok": True})
        assert "invalid path" in session.receive()["error"]
        session.send(
            {"op": "put", "path": "ok.txt", "size": 2, "mode": 0o600, "mtime_ns": 0}, b"ok"
        )
        session.send({"ok": True})
        written = session.receive()
        assert written["ok"] and written["hash"] == hashlib.sha256(b"ok").hexdigest()
        # The sender found its file changed while reading: nothing is put in place.
        session.send(
            {"op": "put", "path": "torn.txt", "size": 3, "mode": 0o644, "mtime_ns": 0}, b"abc"
        )
        session.send({"ok": False, "error": "it changed while it was being read"})
        assert session.receive()["changed"] is True
        session.send({"op": "get", "path": "ok.txt"})
        header = session.receive()
        assert header["payload"] == b"ok" and header["mode"] == 0o600
        assert session.receive()["ok"]
        session.send({"op": "explode"})
        assert "unknown operation" in session.receive()["error"]
        session.send({"op": "flush"})
        assert session.receive() == {"ok": True}
        assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == [agent.SYNC_MARKER, "ok.txt"]
    finally:
        assert session.close() == 0


def test_a_batch_of_files_is_one_request_and_one_answer_each_file_on_its_own(tmp_path):
    ws = tmp_path / "ws"
    session = Session()
    try:
        session.send({"op": "puts", "files": [["a.txt", 1, 0o644, 0, None]], "size": 1}, b"a")
        assert session.receive()["error"] == "no tree is open"  # its data read and dropped
        session.send({"op": "open", "root": str(ws), "marker": True})
        assert session.receive()["ok"]
        (ws / "there.txt").write_text("mine")
        files = [
            ["a.txt", 5, 0o600, 1_000_000_000, None],
            ["../out.txt", 3, 0o644, 0, None],  # outside the tree: refused, the rest goes on
            ["there.txt", 2, 0o644, 0, None],  # expected absent, but it is there: kept
            ["sub/dir/b.txt", 0, 0o755, 0, None],
            ["c.txt", 4, 0o644, 0, None],
        ]
        session.send({"op": "puts", "files": files, "size": 14}, b"hellooutnoc.tx")
        answer = session.receive()
        assert answer["ok"]
        results = json.loads(answer["payload"])
        assert [r["ok"] for r in results] == [True, False, False, True, True]
        assert results[0]["hash"] == hashlib.sha256(b"hello").hexdigest()
        assert results[0]["mode"] == 0o600 and results[0]["sig"][1] == 1_000_000_000
        assert "invalid path" in results[1]["error"]
        assert results[2]["changed"] is True
        assert (ws / "a.txt").read_bytes() == b"hello"
        assert (ws / "a.txt").stat().st_mode & 0o777 == 0o600
        assert (ws / "sub" / "dir" / "b.txt").read_bytes() == b""
        assert (ws / "c.txt").read_bytes() == b"c.tx"
        assert (ws / "there.txt").read_text() == "mine"
        assert not (tmp_path / "out.txt").exists()
        # Sizes that do not add up to the data: nothing is written, the channel stays in step.
        session.send({"op": "puts", "files": [["d.txt", 9, 0o644, 0, None]], "size": 2}, b"dd")
        assert "invalid list of files" in session.receive()["error"]
        session.send({"op": "puts", "files": [["e.txt", 1, 0o644, 0]], "size": 1}, b"e")
        assert "invalid list of files" in session.receive()["error"]
        session.send({"op": "flush"})
        assert session.receive() == {"ok": True}
        names = sorted(p.name for p in ws.iterdir())
        assert names == [agent.SYNC_MARKER, "a.txt", "c.txt", "sub", "there.txt"]
    finally:
        assert session.close() == 0


def test_a_batch_of_files_comes_back_in_one_answer_each_file_on_its_own(tmp_path):
    ws = tmp_path / "ws"
    session = Session()
    try:
        session.send({"op": "gets", "paths": ["a.txt"]})
        assert session.receive()["error"] == "no tree is open"
        session.send({"op": "open", "root": str(ws), "marker": True})
        assert session.receive()["ok"]
        (ws / "a.txt").write_bytes(b"hello")
        (ws / "a.txt").chmod(0o640)
        os.utime(ws / "a.txt", ns=(1_000_000_000, 1_000_000_000))
        (ws / "sub").mkdir()
        (ws / "sub" / "empty.txt").write_bytes(b"")
        (ws / "c.txt").write_bytes(b"c")
        (ws / "big.bin").write_bytes(b"x" * (agent.SYNC_SMALL + 1))  # grew since the scan
        (tmp_path / "secret.txt").write_text("outside")
        (ws / "link.txt").symlink_to(tmp_path / "secret.txt")
        paths = ["a.txt", "../secret.txt", "gone.txt", "link.txt", "big.bin"]
        paths += ["sub/empty.txt", "c.txt"]
        session.send({"op": "gets", "paths": paths})
        answer = session.receive()
        assert answer["ok"]
        index = json.loads(answer["payload"][: answer["index"]])
        assert [r["ok"] for r in index] == [True, False, False, False, False, True, True]
        assert index[0]["size"] == 5 and index[0]["mode"] == 0o640
        assert index[0]["mtime_ns"] == 1_000_000_000 and index[0]["sig"][0] == 5
        assert "invalid path" in index[1]["error"]
        assert index[4]["changed"] is True
        # Only the files read, one after the other: nothing of the link's target.
        assert answer["payload"][answer["index"] :] == b"helloc"
        # Not a list of paths: refused, and the channel stays in step.
        session.send({"op": "gets", "paths": "a.txt"})
        assert "invalid list of files" in session.receive()["error"]
        session.send({"op": "gets", "paths": [1]})
        assert "invalid list of files" in session.receive()["error"]
        session.send({"op": "flush"})
        assert session.receive() == {"ok": True}
    finally:
        assert session.close() == 0


def _scan(since: str | None = None) -> dict:
    return {"op": "scan", "path": "", "excludes": [], "server_only": [], "max_size": None,
            "since": since}  # fmt: skip


@pytest.mark.asyncio
async def test_an_open_sent_with_the_scan_is_checked_and_a_reopened_tree_answers_only_changes(
    tmp_path,
):
    # The sync's open goes in the same write as its scan (one round trip for a no-op sync):
    # the tree's identity still comes first, and only the same tree's last scan is a base for
    # an answer of changes, however often it is opened (each sync opens it again).
    from jupyter_compute_servers.sync.transfer import SyncChannelError, SyncSession

    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "a.txt").write_text("a")
    (tmp_path / "other").mkdir()
    (tmp_path / "a-file").write_text("not a directory")
    session = await SyncSession.in_subprocess()
    try:
        session.open_with_next(str(tmp_path / "ws"))
        first = (await session.request(_scan()))["payload"]
        assert session.root == str(tmp_path / "ws") and len(session.tree_id) == 32
        assert "since" not in first and [f[0] for f in first["files"]] == ["a.txt"]
        session.last_scan = (first["token"], "params", {"a.txt": "as checked"})

        (tmp_path / "ws" / "b.txt").write_text("b")
        session.open_with_next(str(tmp_path / "ws"))
        again = (await session.request(_scan(first["token"])))["payload"]
        assert again["since"] == first["token"] and "files" not in again
        assert [f[0] for f in again["changed"]] == ["b.txt"] and again["removed"] == []
        assert session.last_scan[0] == first["token"]  # the same tree: still the base

        # Another tree: the answer is whole, and this end forgets the scan it had.
        session.open_with_next(str(tmp_path / "other"))
        other = (await session.request(_scan(again["token"])))["payload"]
        assert "since" not in other and other["files"] == []
        assert session.root == str(tmp_path / "other") and session.last_scan == ("", "", {})

        # An open that fails surfaces with its cause; the scan's answer behind it is unread,
        # so the session is not used again.
        session.open_with_next(str(tmp_path / "a-file"))
        with pytest.raises(SyncChannelError, match="could not open"):
            await session.request(_scan())
        assert not session.is_open
    finally:
        await session.close()
