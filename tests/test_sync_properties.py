"""No content is ever lost, whatever happens on either side between syncs (hypothesis).

Random sequences of edits, deletions, renames, chmods and sneaky changes (same size, mtime set
back) on both sides, with syncs in every direction in between, run through the real engine,
real files, the real SQLite record and the real agent code in its own process (on pipes: the
SSH transport is the integration tests' subject). After every sync:

- every version of a file that existed on either side at sync time and was not the recorded
  (last synced) content of its path is still there, somewhere, on some side: a change is never
  dropped; only versions superseded by the other side's change or deleted there may go;
- no temporary file is left behind;
- after a two-way sync both trees are identical (contents and modes), the record says exactly
  what they hold, and a second sync does nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_compute_servers.agent import sync_agent as agent
from jupyter_compute_servers.models import ServerConfig
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.sync.engine import SyncEngine, SyncRefused
from jupyter_compute_servers.sync.records import SyncStore
from jupyter_compute_servers.sync.settings import SyncSettings
from jupyter_compute_servers.sync.transfer import SyncSession

PATHS = ["a.txt", "b.py", "n/c.txt", "n/d", "m/o/e.csv", "f"]
CONTENTS = [b"", b"x", b"y", b"hello", b"HELLO", b"hello world", b"\x00\xff" * 40]
SIDES = ["local", "remote"]

operation = st.one_of(
    st.tuples(
        st.just("write"), st.sampled_from(SIDES), st.sampled_from(PATHS), st.sampled_from(CONTENTS)
    ),
    st.tuples(st.just("delete"), st.sampled_from(SIDES), st.integers(0, 20)),
    st.tuples(
        st.just("rename"), st.sampled_from(SIDES), st.integers(0, 20), st.sampled_from(PATHS)
    ),
    st.tuples(st.just("chmod"), st.sampled_from(SIDES), st.integers(0, 20)),
    st.tuples(st.just("sneaky"), st.sampled_from(SIDES), st.integers(0, 20)),
    st.tuples(st.just("sync"), st.sampled_from(["both", "both", "push", "pull"]), st.booleans()),
)


def files(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file under root (the marker aside): path -> (content, executable)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and path.name != ".jupyter-compute-servers-sync.json":
            found[path.relative_to(root).as_posix()] = (
                path.read_bytes(),
                bool(path.stat().st_mode & 0o100),
            )
    return found


def apply(op: tuple, roots: dict[str, Path]) -> None:
    kind, side = op[0], op[1]
    root = roots[side]
    existing = sorted(files(root))
    if kind == "write":
        target = root / op[2]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(op[3])
        return
    if not existing:
        return
    path = root / existing[op[2] % len(existing)]
    if kind == "delete":
        path.unlink()
    elif kind == "rename":
        target = root / op[3]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    elif kind == "chmod":
        path.chmod(0o644 if path.stat().st_mode & 0o100 else 0o755)
    elif kind == "sneaky":
        # Other content of the same size, and the mtime set back: only ctime tells.
        before = path.stat()
        data = path.read_bytes()
        if data:
            path.write_bytes(bytes((b + 1) % 256 for b in data))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


async def sync(
    session: SyncSession,
    store: SyncStore,
    roots: dict[str, Path],
    direction: str,
    confirm: bool = False,
    watch: agent.SyncWatch | None = None,
):
    await session.open(str(roots["remote"]))
    engine = SyncEngine(
        local_root=str(roots["local"]),
        session=session,
        store=store,
        server_id=1,
        server_name="box",
        settings=SyncSettings(),
        direction=direction,
        confirm_deletions=confirm,
        local_watch=watch,
    )
    return await engine.run()


def record(store: SyncStore, roots: dict[str, Path], session: SyncSession) -> dict[str, str]:
    tree = store.tree(1, os.path.realpath(roots["local"]), session.root, session.tree_id)
    return {path: base.hash for path, base in store.load(tree).items()}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Later:
    """The agent module's clock, 10 s ahead: every signature of the Jupyter root's files counts
    as trusted (not "racy"), so the record's signatures, not hashes, tell what changed."""

    def __getattr__(self, name: str):
        return getattr(time, name)

    @staticmethod
    def time_ns() -> int:
        return time.time_ns() + 10**10


async def run(
    tmp: Path, operations: list[tuple], trusted: bool = False, journal: bool = False
) -> None:
    roots = {"local": tmp / "local", "remote": tmp / "remote"}
    for root in roots.values():
        root.mkdir()
    servers = ServerStore(f"sqlite:///{tmp / 'servers.db'}", clock=time.time)
    servers.create(
        name="box",
        color="#000000",
        notes="",
        cloud="local",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    store = SyncStore(servers.database)
    session = await SyncSession.in_subprocess()
    # The Jupyter root's change journal, kept from sync to sync as the service keeps it (the
    # server's is the sync process's own, always): then syncs compare only what changed.
    watch = agent.SyncWatch() if journal else None
    try:
        for op in [*operations, ("sync", "both", True)]:
            if op[0] != "sync":
                apply(op, roots)
                continue
            if trusted:
                await asyncio.sleep(0.011)  # a coarse file system clock ticks on
            direction = op[1]
            before = {side: files(root) for side, root in roots.items()}
            await session.open(str(roots["remote"]))
            recorded = record(store, roots, session)
            try:
                summary = await sync(session, store, roots, direction, op[2], watch)
            except SyncRefused:
                # Many deletions, unconfirmed: nothing may have been touched.
                assert {side: files(root) for side, root in roots.items()} == before
                continue
            after = {side: files(root) for side, root in roots.items()}
            everywhere = {content for side in after.values() for content, _ in side.values()}
            for side, found in before.items():
                for path, (content, _) in found.items():
                    if recorded.get(path) != digest(content):
                        assert content in everywhere, (direction, side, path, content)
            for root in roots.values():
                assert not [p for p in root.rglob("*") if ".jcs-sync-" in p.name]
            assert not summary.errors, summary.errors
            if direction != "both":
                continue
            assert after["local"] == after["remote"]
            assert record(store, roots, session) == {
                path: digest(content) for path, (content, _) in after["local"].items()
            }
            again = (await sync(session, store, roots, "both", watch=watch)).to_json()
            assert again["sent"]["files"] == again["received"]["files"] == 0
            assert again["deleted"] == {"local": 0, "remote": 0}
            assert again["chmod"] == {"local": 0, "remote": 0}
            assert again["conflicts"] == [] and again["errors"] == []
            assert {side: files(root) for side, root in roots.items()} == after
    finally:
        if watch is not None:
            watch.close()
        await session.close()
        store.close()
        servers.close()


EXAMPLES = settings(
    max_examples=int(os.environ.get("SYNC_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@EXAMPLES
@given(operations=st.lists(operation, min_size=1, max_size=25))
def test_no_content_is_ever_lost_and_a_second_sync_does_nothing(tmp_path_factory, operations):
    asyncio.run(run(tmp_path_factory.mktemp("sync"), operations))


@EXAMPLES
@given(operations=st.lists(operation, min_size=1, max_size=25))
def test_the_same_with_trusted_signatures(tmp_path_factory, operations):
    """Here only ctime can tell a sneaky change (same size, mtime set back) from no change."""
    with mock.patch.object(agent, "time", _Later()):
        asyncio.run(run(tmp_path_factory.mktemp("sync"), operations, trusted=True))


@EXAMPLES
@given(operations=st.lists(operation, min_size=1, max_size=25))
def test_the_same_with_both_change_journals(tmp_path_factory, operations):
    """Both sides scanned from their journals and only what they name compared, where they
    can be (trusted signatures: most paths stay settled from one sync to the next)."""
    with mock.patch.object(agent, "time", _Later()):
        asyncio.run(run(tmp_path_factory.mktemp("sync"), operations, trusted=True, journal=True))
