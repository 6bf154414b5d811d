"""The sync record in the database, SQLite and PostgreSQL (kept in memory between syncs, but
never stale across processes), and the checks on a server's scan answers, whole or as changes
since the last one."""

from __future__ import annotations

import time

import pytest

from jupyter_compute_servers.agent.sync_agent import SyncExcludes
from jupyter_compute_servers.db import Database
from jupyter_compute_servers.models import ServerConfig
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.sync.plan import Base, FileState
from jupyter_compute_servers.sync.records import SyncStore
from jupyter_compute_servers.sync.scan import side_from_scan, valid_path
from jupyter_compute_servers.sync.transfer import SyncChannelError


@pytest.fixture
def database(db_url):
    servers = ServerStore(db_url, clock=time.time)
    server = servers.create(
        name="box",
        color="#000000",
        notes="",
        cloud="local",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    yield servers, server.id
    servers.close()


def base(digest: str) -> Base:
    return Base(digest * 64, 1, 2, 0o644, (1, 2, 3, 4), None)


def test_the_record_in_memory_follows_commits_from_another_process(database):
    servers, server_id = database
    # Two processes' views: each its own Database (engine and pool) on the same database.
    here_db, there_db = Database(servers.url), Database(servers.url)
    here, there = SyncStore(here_db), SyncStore(there_db)
    tree = here.tree(server_id, "/root", "/ws", "a" * 32)
    assert there.tree(server_id, "/root", "/ws", "a" * 32) == tree
    here.commit(tree, [("x", base("1")), ("d/y", base("2"))])
    assert here.load(tree) == {"x": base("1"), "d/y": base("2")}
    assert here.load(tree, "d") == {"d/y": base("2")}
    there.commit(tree, [("x", None), ("z", base("3"))])
    assert here.load(tree) == {"d/y": base("2"), "z": base("3")}
    # A copy each time: what a sync does with it never changes the record.
    here.load(tree).clear()
    assert len(here.load(tree)) == 2
    # A new disk on the server: a new pair, an empty record, the old one dropped.
    fresh = here.tree(server_id, "/root", "/ws", "b" * 32)
    assert fresh != tree and here.load(fresh) == {} and there.load(tree) == {}
    # Deleting the server deletes its records (foreign keys).
    here.commit(fresh, [("x", base("1"))])
    servers.delete(server_id)
    assert here.load(fresh) == {}
    here.close()
    there.close()
    here_db.close()
    there_db.close()


def test_a_scope_is_the_paths_below_it_byte_by_byte(database):
    """ "a/b" holds "a/b" and "a/b/..." only, whatever the database's collation (the test
    PostgreSQL's default is ICU English, where "a/B/x" sorts between "a/b/" and "a/b0")."""
    servers, server_id = database
    store = SyncStore(servers.database)
    tree = store.tree(server_id, "/root", "/ws", "a" * 32)
    paths = ["a/b", "a/b/x", "a/b/é/y", "a/B/x", "a/b-c", "a/b.txt", "a/b0", "a/bé", "a/b c"]
    store.commit(tree, [(path, base("1")) for path in paths])
    assert set(store.load(tree, "a/b")) == {"a/b", "a/b/x", "a/b/é/y"}
    # From the database, not from the copy in memory.
    fresh = SyncStore(servers.database)
    assert set(fresh.load(tree, "a/b")) == {"a/b", "a/b/x", "a/b/é/y"}
    assert set(fresh.load(tree, "a/B")) == {"a/B/x"}
    assert set(fresh.load(tree)) == set(paths)
    # Sizes, times in nanoseconds and inode numbers of 64 bits come back whole.
    big = Base(
        "f" * 64, 5 * 2**40, 1_900_000_000_123_456_789, 0o755, (2**62, 2**61, 2**63 - 1, 1), None
    )
    store.commit(tree, [("big", big)])
    assert SyncStore(servers.database).load(tree, "big") == {"big": big}


EXCLUDES = SyncExcludes([".git/"])


def test_scan_answers_are_checked_whole_and_as_changes():
    full = {
        "files": [["a.txt", 1, 2, 0o644, 3, 4], ["d/b.txt", 1, 2, 0o644, 5, 6]],
        "skipped": [["big", "too large", 5 * 2**20]],
        "pruned": [["env", "virtual environment"]],
        "token": "t1",
    }
    side = side_from_scan(full, "", EXCLUDES)
    assert set(side.files) == {"a.txt", "d/b.txt"}
    assert side.skipped == {"big": "larger than the size limit (5.0 MB)"}
    changes = {
        "since": "t1",
        "changed": [["a.txt", 9, 2, 0o755, 3, 7], ["c.txt", 1, 2, 0o644, 8, 9]],
        "removed": ["d/b.txt"],
        "skipped": [],
        "pruned": [],
        "token": "t2",
    }
    after = side_from_scan(changes, "", EXCLUDES, previous=("t1", side.files))
    assert after.files["a.txt"] == FileState(9, 2, 0o755, (9, 2, 3, 7))
    assert set(after.files) == {"a.txt", "c.txt"}
    assert set(side.files) == {"a.txt", "d/b.txt"}  # the earlier scan is left as it was
    with pytest.raises(SyncChannelError, match="does not have"):
        side_from_scan(changes, "", EXCLUDES, previous=("t0", side.files))
    with pytest.raises(SyncChannelError, match="does not have"):
        side_from_scan(changes, "", EXCLUDES)


@pytest.mark.parametrize(
    "answer",
    [
        {"files": [["../x", 1, 2, 0o644, 3, 4]], "skipped": [], "pruned": []},
        {"files": [["a", -1, 2, 0o644, 3, 4]], "skipped": [], "pruned": []},
        {"files": [["a", 1, 2, 0o7777, 3, 4]], "skipped": [], "pruned": []},
        {"files": [["a", True, 2, 0o644, 3, 4]], "skipped": [], "pruned": []},
        {"files": [["a", 1, 2, 0o644, 3]], "skipped": [], "pruned": []},
        {"files": [["a", 1, 2, 0o644, 3, 4]] * 2, "skipped": [], "pruned": []},
        {"files": [], "skipped": [["/etc", "symbolic link", 0]], "pruned": []},
        {"files": [], "skipped": [], "pruned": [["a/../..", "x"]]},
        {"files": "a", "skipped": [], "pruned": []},
        ["not", "an", "object"],
    ],
)
def test_malformed_scan_answers_are_refused(answer):
    with pytest.raises(SyncChannelError, match="malformed"):
        side_from_scan(answer, "", EXCLUDES)


def test_paths_outside_the_synced_sub_path_are_refused():
    answer = {"files": [["other/x", 1, 2, 0o644, 3, 4]], "skipped": [], "pruned": []}
    with pytest.raises(SyncChannelError, match="outside"):
        side_from_scan(answer, "mine", EXCLUDES)


@pytest.mark.parametrize(
    ("path", "valid"),
    [
        ("a", True),
        ("a/b.c", True),
        ("...", True),
        (".hidden/x", True),
        ("é/ü", True),
        ("", False),
        ("/a", False),
        ("a/", False),
        ("a//b", False),
        ("./a", False),
        ("a/..", False),
        ("a\x00b", False),
        ("\udcff", False),
        ("x" * 256, False),
        (3, False),
    ],
)
def test_valid_paths(path, valid):
    assert valid_path(path) is valid
