"""One sync of one pair of trees: scan both, hash what the record cannot vouch for, plan, and
carry the plan out.

Carrying out: every operation on the server goes down one pipeline to its sync process (puts
with their data, gets, deletes, chmods, renames), with no wait per file; the answers are read
by a second task in the same order. Files of the Jupyter root are read on a pool of threads and
written on one thread of their own.

Durability, and so the record: a file counts as synced only once its new copy is durable on
the side it was written to. Every few seconds (and at the end) the pipeline asks the server
to flush its file system (one ``syncfs``, much cheaper than an fsync per file) and flushes
ours; only then are the records of what completed before written, in one transaction. A sync
stopped at any point (killed, cancelled, its connection dropped) leaves a record that is behind
what the disks hold, never ahead of it, and the next sync takes it from there: a file copied
but not recorded is found identical on both sides (it costs a hash, not a copy).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from ..agent.sync_agent import (
    SYNC_CHUNK,
    SYNC_SMALL,
    SyncChanged,
    SyncTree,
    SyncWatch,
    sync_umask,
)
from ..errors import ConflictError
from .holdback import MESSAGE, HoldBack
from .plan import (
    LOCAL,
    REMOTE,
    Action,
    Base,
    FileState,
    Kind,
    MassDeletion,
    Plan,
    Side,
    content_hash,
    needed_hashes,
    plan,
)
from .records import SyncStore
from .scan import HASH, inherit_hashes, side_from_local, side_from_scan, state_from_hash
from .settings import SyncSettings
from .transfer import MAX_LINE, SyncChannelError, SyncSession

T = TypeVar("T")

#: How often the pipeline makes what it wrote durable and records it.
CHECKPOINT_SECONDS = 3.0
#: Lists in a summary stop after this many entries (counts go on).
SUMMARY_LIMIT = 1000
#: Small files read per thread hop, and at most this many bytes at once.
READ_BATCH_FILES = 128
READ_BATCH_BYTES = 4 << 20
#: The bound of a batch's answer (``puts``: about 200 bytes a file, READ_BATCH_FILES files),
#: and of the index of a ``gets`` answer (whose files' contents come on top).
MAX_BATCH_ANSWER = 1 << 20
#: Bytes received but not yet written here, before reading waits.
MAX_UNWRITTEN = 64 << 20


class SyncRefused(ConflictError):
    """The sync would do something we refuse to do unasked (delete everything somewhere)."""


@dataclass
class Progress:
    phase: str = "starting"
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)
    transfer_started: float | None = None
    _samples: collections.deque[tuple[float, int]] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )

    def moved(self, n: int) -> None:
        self.bytes_done += n

    def rate(self) -> float:
        """Bytes per second over the last few seconds of transfer."""
        now = time.monotonic()
        self._samples.append((now, self.bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > 5:
            self._samples.popleft()
        first_time, first_bytes = self._samples[0]
        if now - first_time < 0.2:
            if self.transfer_started is None or now - self.transfer_started < 0.2:
                return 0.0
            return self.bytes_done / (now - self.transfer_started)
        return (self.bytes_done - first_bytes) / (now - first_time)

    def to_json(self) -> dict[str, Any]:
        rate = self.rate() if self.transfer_started is not None else 0.0
        left = self.bytes_total - self.bytes_done
        return {
            "phase": self.phase,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "rate": round(rate),
            "eta_seconds": round(left / rate, 1)
            if rate > 0 and self.phase == "transferring"
            else None,
            "elapsed": round(time.monotonic() - self.started, 3),
        }


class _Capped(list[Any]):
    """A list that keeps its first SUMMARY_LIMIT entries and counts the rest."""

    dropped = 0

    def add(self, entry: Any) -> None:
        if len(self) < SUMMARY_LIMIT:
            self.append(entry)
        else:
            self.dropped += 1


@dataclass
class Summary:
    sent_files: int = 0
    sent_bytes: int = 0
    received_files: int = 0
    received_bytes: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    chmod_local: int = 0
    chmod_remote: int = 0
    conflicts: _Capped = field(default_factory=_Capped)
    skipped: _Capped = field(default_factory=_Capped)
    errors: _Capped = field(default_factory=_Capped)
    changes: _Capped = field(default_factory=_Capped)
    held_back: _Capped = field(default_factory=_Capped)
    pending: int = 0
    #: When a plan would delete many files (see ``plan.MassDeletion``): what, and whether the
    #: request confirmed it (else the sync was refused).
    deletion_guard: dict[str, Any] | None = None
    #: How each side was scanned: walked whole, or from its change journal (the names it
    #: re-examined), see ``SyncWatch`` in ``agent/sync_agent.py``; and how many paths were
    #: compared with the record (all, or only those the journals name since the last sync).
    scan: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        held = len(self.held_back) + self.held_back.dropped
        return {
            "sent": {"files": self.sent_files, "bytes": self.sent_bytes},
            "received": {"files": self.received_files, "bytes": self.received_bytes},
            "deleted": {"local": self.deleted_local, "remote": self.deleted_remote},
            "chmod": {"local": self.chmod_local, "remote": self.chmod_remote},
            "conflicts": list(self.conflicts),
            "skipped": list(self.skipped),
            "errors": list(self.errors),
            "changes": list(self.changes),
            "pending": self.pending,
            "held_back": {
                "files": held,
                "paths": list(self.held_back),
                "message": MESSAGE.format(n=held) if held else None,
            },
            "deletion_guard": self.deletion_guard,
            "scan": self.scan,
            "truncated": bool(
                self.conflicts.dropped
                or self.skipped.dropped
                or self.errors.dropped
                or self.changes.dropped
                or self.held_back.dropped
            ),
        }


@dataclass
class _Row:
    """A record change, written once what it depends on is durable."""

    path: str
    base: Base | None
    remote_seq: int = 0
    local_seq: int = 0


@dataclass
class _Pending:
    """A request in the pipeline, awaiting its answer."""

    op: str
    action: Action
    seq: int = 0
    path: str = ""
    read: dict[str, Any] | None = None  # put: what was read and sent
    size: int = 0
    #: get: the request on the server whose write the copy depends on (a conflict's rename,
    #: a pull's chmod there), so its record waits for that to be durable; 0 for none.
    after: int = 0
    #: puts, gets: each file's own pending put or get, answered in this order.
    files: list[_Pending] | None = None


def _message(e: BaseException) -> str:
    if isinstance(e, SyncChanged):
        return f"{e}; it will sync next time"
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


@dataclass
class Compared:
    """What a completed sync compared, kept on its session for the next sync over it."""

    #: The scan's parameters, both trees, the record's pair and the umask it was made for.
    key: str
    #: The record's generation when the sync was done.
    generation: int
    #: The Jupyter root's files as scanned (before any hashing).
    local: dict[str, FileState]
    #: Paths settled on both sides (as recorded), and the paths it compared.
    settled: set[str]
    paths: set[str]


def _local_states(delta: dict[str, Any], umask: int) -> dict[str, FileState]:
    present = [entry for entry in delta.values() if entry is not None]
    return side_from_local({"files": present, "skipped": [], "pruned": []}, umask).files


def _remote_delta(payload: Any) -> set[str] | None:
    """The paths an answer of changes (checked by ``side_from_scan`` already) names."""
    if not isinstance(payload, dict) or "since" not in payload:
        return None
    return {entry[0] for entry in payload["changed"]} | set(payload["removed"])


def _how(scan: dict[str, Any]) -> dict[str, Any]:
    """How a side was scanned (its answer says; the server's is checked): walked whole, or
    the names its journal had re-examined."""
    walked, examined = scan.get("walked"), scan.get("examined")
    if walked is False and type(examined) is int and examined >= 0:
        return {"walked": False, "examined": examined}
    return {"walked": True}


def _sig(value: Any) -> tuple[int, int, int, int] | None:
    if isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) for v in value):
        return (value[0], value[1], value[2], value[3])
    return None


class SyncEngine:
    def __init__(
        self,
        *,
        local_root: str,
        session: SyncSession,
        store: SyncStore,
        server_id: int,
        server_name: str,
        settings: SyncSettings,
        direction: str = "both",
        scope: str = "",
        on_progress: Callable[[], None] | None = None,
        confirm_deletions: bool = False,
        local_watch: SyncWatch | None = None,
    ) -> None:
        self.local_root = local_root
        #: The Jupyter root's change journal (the service keeps it from sync to sync); None:
        #: the root is walked.
        self.local_watch = local_watch
        self.session = session
        self.store = store
        self.server_id = server_id
        self.server_name = server_name
        self.settings = settings
        self.direction = direction
        self.scope = scope
        self.confirm_deletions = confirm_deletions
        self.on_progress = on_progress or (lambda: None)
        self.progress = Progress()
        self.summary = Summary()
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="sync-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sync-write")
        self.tree: SyncTree | None = None
        #: Permission bits no file written here gets (this process's umask): modes are seen
        #: through it on both sides (see ``scan.side_from_scan``).
        self.umask = sync_umask()
        self._tree_key = 0
        #: The paths to compare (all but those settled on both sides), and what to keep of
        #: this sync for the next one's (see ``Compared``).
        self._paths: list[str] = []
        self._compared: Compared | None = None
        self._checked = 0
        #: The record's generation when loaded, and whether this sync committed to it since.
        self._generation = -1
        self._committed = False
        self._rows: list[_Row] = []
        self._remote_seq = 0
        self._remote_durable = 0
        self._remote_unflushed = False
        self._local_seq = 0
        self._local_durable = 0
        self._local_writes: list[asyncio.Future[Any]] = []
        self._unwritten = 0
        self._unwritten_changed = asyncio.Event()

    # --- helpers ---------------------------------------------------------------------------

    async def _read_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn)

    async def _write_thread(self, fn: Callable[[], T]) -> T:
        """A change to the Jupyter root, on the writing thread; counted for durability."""
        result = await asyncio.get_running_loop().run_in_executor(self._writer, fn)
        self._local_seq += 1
        return result

    def _phase(self, phase: str) -> None:
        self.progress.phase = phase
        if phase == "transferring":
            self.progress.transfer_started = time.monotonic()
        self.on_progress()

    def _done(self, action: Action, change: str | None = None) -> None:
        self.progress.files_done += 1
        if change:
            self.summary.changes.add({"path": action.path, "action": change})
        self.on_progress()

    def _error(self, path: str, e: BaseException | str) -> None:
        self.summary.errors.add({"path": path, "message": e if isinstance(e, str) else _message(e)})

    # --- the run ---------------------------------------------------------------------------

    async def run(self) -> Summary:
        try:
            self.tree = await self._read_thread(lambda: SyncTree(self.local_root))
            local, remote, base = await self._scan()
            self._phase("comparing")
            paths = self._paths
            await self._hash(base, local, remote, paths)
            try:
                the_plan = await asyncio.to_thread(
                    partial(
                        plan,
                        base,
                        local,
                        remote,
                        direction=self.direction,
                        server=self.server_name,
                        paths=paths,
                        hold_back=HoldBack(self.settings.pull_executable_config).held,
                        max_delete_fraction=self.settings.max_delete_percent / 100,
                        confirm_deletions=self.confirm_deletions,
                    )
                )
            except MassDeletion as e:
                self.summary.deletion_guard = self._guard_json(e, confirmed=False)
                raise SyncRefused(self._refusal(e)) from None
            self._report_plan(the_plan)
            await self._execute(the_plan)
            if self._compared is not None:
                # Completed: what it compared is the next sync's base (the record as this
                # sync left it, read while the server's sync lock is still held).
                compared, key = self._compared, self._tree_key
                compared.generation = (
                    await self._read_thread(lambda: self.store.generation(key))
                    if self._committed
                    else self._generation
                )
                self.session.compared = compared
            self._phase("done")
            return self.summary
        finally:
            if self.tree is not None:
                tree = self.tree
                await asyncio.get_running_loop().run_in_executor(self._writer, tree.close)
            self._readers.shutdown(wait=False)
            self._writer.shutdown(wait=False)

    async def _scan(self) -> tuple[Side, Side, dict[str, Base]]:
        self._phase("scanning")
        settings = self.settings
        assert self.tree is not None
        tree, store, scope = self.tree, self.store, self.scope
        patterns, server_only, max_size = settings.patterns, settings.server_only, settings.max_size
        # The server's sync process answers with only what changed since the scan it sent
        # last, if this end still has that one (for the same parameters).
        session = self.session
        parameters = json.dumps([scope, patterns, list(server_only), max_size])
        previous = session.last_scan if session.last_scan[1] == parameters else None

        async def remote_then_base() -> tuple[dict[str, Any], dict[str, Base]]:
            # The scan request carries the tree's ``open`` when one is pending (the service's
            # ``open_with_next``): the record's key needs the tree's identity, so the record
            # loads once that answer is here.
            answer = await session.request(
                {
                    "op": "scan",
                    "path": scope,
                    "excludes": patterns,
                    "server_only": list(server_only),
                    "max_size": max_size,
                    "since": previous[0] if previous else None,
                }
            )
            key = self._tree_key = store.tree(
                self.server_id, tree.root, session.root, session.tree_id
            )
            self._generation, record = await self._read_thread(
                lambda: store.load_current(key, scope)
            )
            return answer, record

        watch = self.local_watch
        consumer = session.consumer
        # What the last sync over this session compared; none is left if this one fails.
        before, session.compared = session.compared, None

        def local_scan() -> dict[str, Any]:
            if watch is None:
                return dict(tree.scan(scope, patterns, server_only, max_size), walked=True)
            return watch.scan(tree, scope, patterns, server_only, max_size, consumer)[0]

        # Both scans (and the record's load) at once. The local walk uses the tree, which is
        # closed when this sync ends: a failed remote scan waits for it to finish, else the
        # walk could list closed (or reused) descriptors and the journal keep what it saw.
        local_walk = asyncio.ensure_future(self._read_thread(local_scan))
        try:
            remote_answer, base = await remote_then_base()
        except BaseException:
            await asyncio.wait([local_walk])
            if not local_walk.cancelled():
                local_walk.exception()  # (retrieved: the remote's error is the sync's)
            raise
        local_raw = await local_walk
        if previous is not None and session.last_scan[0] != previous[0]:
            previous = None  # the open found another tree: no answer of changes is taken
        payload = remote_answer.get("payload")
        umask = self.umask
        key = json.dumps(
            [parameters, tree.root, session.root, session.tree_id, self._tree_key, umask]
        )
        if before is not None and before.key != key:
            before = None
        if before is not None and self._generation != before.generation:
            before = None  # the record is not as that sync left it: another process synced

        def check() -> tuple[Side, Side, list[str]]:
            local_delta = local_raw.get("since_last")
            quick = before is not None and local_delta is not None and previous is not None
            if quick:
                assert before is not None and local_delta is not None
                local = side_from_local(
                    {"files": [], "skipped": local_raw["skipped"], "pruned": local_raw["pruned"]},
                    umask,
                )
                local.files = dict(before.local)
                local.files.update(_local_states(local_delta, umask))
                for path, entry in local_delta.items():
                    if entry is None:
                        local.files.pop(path, None)
            else:
                local = side_from_local(local_raw, umask)
            snapshot = dict(local.files)
            remote = side_from_scan(
                payload,
                scope,
                settings.excludes_matcher(),
                where=session.where,
                known=local.files,
                previous=(previous[0], previous[2]) if previous else None,
                umask=umask,
            )
            remote_delta = _remote_delta(payload)
            if quick and remote_delta is not None:
                # Both journals say what changed since the last sync over this session, whose
                # comparison is here: only what changed, and what was not settled then, is
                # compared again; the rest is as settled as it was.
                assert before is not None and local_delta is not None
                changed = before.paths | local_delta.keys() | remote_delta
                self._checked = len(changed)
                settled = before.settled - changed
                settled |= inherit_hashes(base, local, remote, changed)
                paths = sorted(
                    p
                    for p in changed - settled
                    if p in base or p in local.files or p in remote.files
                )
            else:
                settled = inherit_hashes(base, local, remote)
                every = base.keys() | local.files.keys() | remote.files.keys()
                self._checked = len(every)
                paths = sorted(every - settled)
            if watch is not None and isinstance(payload, dict) and "token" in payload:
                self._compared = Compared(key, -1, snapshot, settled, set(paths))
            return local, remote, paths

        local, remote, self._paths = await asyncio.to_thread(check)
        token = payload.get("token") if isinstance(payload, dict) else None
        self.summary.scan = {
            "local": _how(local_raw),
            "remote": _how(payload) if isinstance(payload, dict) else {"walked": True},
            "compared": self._checked,
        }
        session.last_scan = (
            (token, parameters, dict(remote.files)) if isinstance(token, str) else ("", "", {})
        )
        return local, remote, base

    async def _hash(
        self, base: dict[str, Base], local: Side, remote: Side, paths: list[str]
    ) -> None:
        need_local, need_remote = await asyncio.to_thread(needed_hashes, base, local, remote, paths)
        if not need_local and not need_remote:
            return
        assert self.tree is not None
        tree = self.tree

        async def remote_hashes() -> dict[str, Any]:
            if not need_remote:
                return {}
            answer = await self.session.request({"op": "hash", "paths": sorted(need_remote)})
            payload = answer.get("payload")
            hashes = payload.get("hashes") if isinstance(payload, dict) else None
            if not isinstance(hashes, list) or not all(
                isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                for entry in hashes
            ):
                raise SyncChannelError(f"The hash answer from {self.session.where} is malformed.")
            return dict(hashes)

        local_answers, remote_answers = await asyncio.gather(
            self._read_thread(lambda: tree.hash(sorted(need_local))) if need_local else _none(),
            remote_hashes(),
        )
        umask, where = self.umask, self.session.where

        def check() -> None:
            for side, need, answers, whose in (
                (local, need_local, local_answers, "this side"),
                (remote, need_remote, remote_answers, where),
            ):
                for path in need:
                    answer = answers.get(path)
                    if isinstance(answer, dict) and "error" in answer:
                        side.files.pop(path, None)
                        side.skipped[path] = f"unreadable: {str(answer['error'])[:200]}"
                        continue
                    try:
                        side.files[path] = state_from_hash(answer, umask)
                    except ValueError as e:
                        raise SyncChannelError(
                            f"A hash answer from {whose} is malformed: {e}"
                        ) from None

        await asyncio.to_thread(check)

    def _guard_json(self, e: MassDeletion, *, confirmed: bool) -> dict[str, Any]:
        return {
            "local": e.deletions[LOCAL],
            "remote": e.deletions[REMOTE],
            "synced": e.synced,
            "max_percent": self.settings.max_delete_percent,
            "empty_side": e.side if e.empty else None,
            "confirmed": confirmed,
        }

    def _refusal(self, e: MassDeletion) -> str:
        where = "the Jupyter root" if e.side == LOCAL else "the server's workspace"
        other = "the server" if e.side == LOCAL else "the Jupyter root"
        confirm = (
            "If that is what you want, sync again confirming the deletions "
            "(confirm_deletions in the request)."
        )
        if e.empty:
            return (
                f"Refusing to sync: {where} has no files here at all, where the last sync "
                f"left some, and syncing would delete {e.count} file(s) on {other}. If it "
                f"is not mounted, mount it; if they were deleted on purpose, delete them "
                f"on {other} too, or {confirm[0].lower()}{confirm[1:]}"
            )
        share = 100 * e.count / max(e.synced, 1)
        return (
            f"Refusing to sync: it would delete {e.count} of the {e.synced} synced file(s) on "
            f"{other} ({share:.0f}%, more than this server's limit of "
            f"{self.settings.max_delete_percent}%), because they are gone from {where}. "
            f"{confirm} If not, find out why they are gone from {where}."
        )

    def _report_plan(self, the_plan: Plan) -> None:
        if the_plan.confirmed is not None:
            self.summary.deletion_guard = self._guard_json(the_plan.confirmed, confirmed=True)
        for path, side, reason in the_plan.skipped:
            self.summary.skipped.add({"path": path, "side": side, "reason": reason})
        for path in the_plan.unresolved:
            self.summary.conflicts.add({"path": path, "conflict_path": None, "resolved": False})
        self.summary.pending = the_plan.pending
        for action in the_plan.held_back:
            self.summary.held_back.add({"path": action.path, "action": action.kind.value})
        moving = [a for a in the_plan.actions if a.kind not in (Kind.RECORD, Kind.FORGET)]
        self.progress.files_total = len(moving)
        self.progress.bytes_total = sum(a.size for a in moving)

    # --- carrying it out ---------------------------------------------------------------------

    async def _execute(self, the_plan: Plan) -> None:
        for action in the_plan.actions:
            if action.kind is Kind.FORGET:
                self._rows.append(_Row(action.path, None))
            elif action.kind is Kind.RECORD:
                self._rows.append(_Row(action.path, self._record_both(action)))
        local_only = [
            a for a in the_plan.actions if a.kind in (Kind.DELETE_LOCAL, Kind.CHMOD_LOCAL)
        ]
        remote = [
            a
            for a in the_plan.actions
            if a.kind
            in (Kind.PUSH, Kind.PULL, Kind.DELETE_REMOTE, Kind.CHMOD_REMOTE, Kind.CONFLICT)
        ]
        self._phase("transferring")
        try:
            await asyncio.gather(self._local_actions(local_only), self._pipeline(remote))
        except BaseException:
            # Keep what is known durable; the rest is found again by the next sync.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._checkpoint())
            raise
        await self._checkpoint()

    def _record_both(self, action: Action) -> Base:
        """The record of a path that has the same content on both sides (RECORD)."""
        local, remote = action.local, action.remote
        assert local is not None and remote is not None
        digest = content_hash(action)
        assert digest is not None
        return Base(
            digest,
            local.size,
            local.mtime_ns,
            action.mode if action.mode is not None else local.mode,
            local.sig if local.trusted else None,
            remote.sig if remote.trusted else None,
        )

    async def _checkpoint(self) -> None:
        """Flush the Jupyter root if it was written to, then record every change whose
        writes are now durable on both sides."""
        if self._local_writes:
            await asyncio.gather(*self._local_writes, return_exceptions=True)
            self._local_writes = []
        if self._local_seq > self._local_durable:
            mark = self._local_seq
            assert self.tree is not None
            tree = self.tree
            await asyncio.get_running_loop().run_in_executor(self._writer, tree.flush)
            self._local_durable = mark
        ready = [
            row
            for row in self._rows
            if row.remote_seq <= self._remote_durable and row.local_seq <= self._local_durable
        ]
        if ready:
            self._committed = True
            self.store.commit(self._tree_key, [(row.path, row.base) for row in ready])
            done = {id(row) for row in ready}
            self._rows = [row for row in self._rows if id(row) not in done]

    async def _local_actions(self, actions: list[Action]) -> None:
        assert self.tree is not None
        tree = self.tree
        for action in actions:
            local = action.local
            assert local is not None
            try:
                if action.kind is Kind.DELETE_LOCAL:
                    await self._write_thread(partial(tree.delete, action.path, list(local.sig)))
                    self._rows.append(_Row(action.path, None, local_seq=self._local_seq))
                    self.summary.deleted_local += 1
                    self._done(action, "deleted_local")
                else:
                    assert action.mode is not None
                    result = await self._write_thread(
                        partial(tree.chmod, action.path, action.mode & ~self.umask, list(local.sig))
                    )
                    self._rows.append(
                        _Row(
                            action.path,
                            self._record_chmod(action, result, LOCAL),
                            local_seq=self._local_seq,
                        )
                    )
                    self.summary.chmod_local += 1
                    self._done(action, "chmod_local")
            except (OSError, ValueError, SyncChanged) as e:
                self._error(action.path, e)
                self._done(action)

    def _record_chmod(self, action: Action, result: dict[str, Any], side: str) -> Base:
        local, remote = action.local, action.remote
        assert local is not None and remote is not None and action.mode is not None
        digest = content_hash(action)
        assert digest is not None
        sig = _sig(result.get("sig"))
        written = sig if result.get("trusted") else None
        return Base(
            digest,
            local.size,
            local.mtime_ns,
            action.mode,
            written if side == LOCAL else (local.sig if local.trusted else None),
            written if side == REMOTE else (remote.sig if remote.trusted else None),
        )

    # --- the pipeline to the server --------------------------------------------------------

    async def _pipeline(self, actions: list[Action]) -> None:
        if not actions:
            return
        queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read_answers(queue))
        try:
            await self._send_requests(actions, queue, reader)
        except BaseException:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            raise
        await reader

    def _request(
        self,
        queue: asyncio.Queue[_Pending | None],
        pending: _Pending,
        message: dict[str, Any],
        payload: bytes = b"",
    ) -> None:
        """Queue a request for the server."""
        self._remote_seq += 1
        pending.seq = self._remote_seq
        if pending.op not in ("get", "gets"):
            self._remote_unflushed = True
        queue.put_nowait(pending)
        self.session.send(message, payload)

    async def _send_requests(
        self,
        actions: list[Action],
        queue: asyncio.Queue[_Pending | None],
        reader: asyncio.Task[None],
    ) -> None:
        session = self.session
        last_flush = time.monotonic()
        units = _units(actions)
        # Small files are read in batches on a thread, the next batch while this one is sent,
        # so that the server never waits for our disk.
        reads: dict[int, asyncio.Future[tuple[list[Action], list[dict[str, Any]]]]] = {}

        def read_ahead(k: int) -> None:
            if k < len(units) and k not in reads and _batched(units[k][0]) == "puts":
                reads[k] = asyncio.ensure_future(self._read_small(units[k]))

        try:
            for k, unit in enumerate(units):
                if reader.done():
                    reader.result()  # its error, if it failed
                    return
                read_ahead(k)
                read_ahead(k + 1)
                if k in reads:
                    ready, contents = await reads.pop(k)
                    self._send_small_pushes(ready, contents, queue)
                elif _batched(unit[0]) == "gets":
                    self._send_small_pulls(unit, queue)
                else:
                    await self._send_action(unit[0], queue)
                await session.drain()
                if self._remote_unflushed and time.monotonic() - last_flush > CHECKPOINT_SECONDS:
                    self._request(queue, _Pending("flush", unit[0]), {"op": "flush"})
                    self._remote_unflushed = False
                    last_flush = time.monotonic()
        finally:
            for future in reads.values():
                future.cancel()
        if self._remote_unflushed:
            self._request(queue, _Pending("flush", actions[-1]), {"op": "flush"})
            self._remote_unflushed = False
        queue.put_nowait(None)
        await session.drain()

    async def _read_small(self, batch: list[Action]) -> tuple[list[Action], list[dict[str, Any]]]:
        ready = [a for a in batch if await self._prepare_push(a)]
        assert self.tree is not None
        tree = self.tree
        return ready, await self._read_thread(lambda: [_read_whole(tree, a.path) for a in ready])

    async def _prepare_push(self, action: Action) -> bool:
        """A push whose merged mode is not the local file's: set it here first, so both sides
        end with the same mode. False when that failed (reported)."""
        local = action.local
        assert local is not None and action.mode is not None
        if action.kind is not Kind.PUSH or action.mode == local.mode:
            return True
        assert self.tree is not None
        tree = self.tree
        try:
            await self._write_thread(lambda: tree.chmod(action.path, action.mode, list(local.sig)))
        except (OSError, ValueError, SyncChanged) as e:
            self._error(action.path, e)
            self._done(action)
            return False
        return True

    def _put_message(
        self, path: str, read: dict[str, Any], expect: FileState | None, mode: int
    ) -> dict[str, Any]:
        return {
            "op": "put",
            "path": path,
            "size": read["size"],
            "mode": mode,
            "mtime_ns": read["mtime_ns"],
            "expect": list(expect.sig) if expect else None,
        }

    def _send_small_pushes(
        self,
        ready: list[Action],
        reads: list[dict[str, Any]],
        queue: asyncio.Queue[_Pending | None],
    ) -> None:
        # One request for the batch, answered once (``_sync_serve_puts``): the files' data in
        # one write, and no message of its own per file on either side.
        files: list[_Pending] = []
        entries: list[list[Any]] = []
        data: list[bytes] = []
        for action, read in zip(ready, reads, strict=True):
            if "error" in read:
                self._error(action.path, read["error"])
                self._done(action)
                continue
            content = read.pop("data")
            files.append(_Pending("put", action, path=action.path, read=read, size=len(content)))
            expect = action.remote
            entries.append(
                [
                    action.path,
                    len(content),
                    action.mode,
                    read["mtime_ns"],
                    list(expect.sig) if expect else None,
                ]
            )
            data.append(content)
        if not files:
            return
        payload = b"".join(data)
        batch = _Pending("puts", files[0].action, size=len(payload), files=files)
        self._request(queue, batch, {"op": "puts", "files": entries, "size": len(payload)}, payload)
        for pending in files:
            pending.seq = batch.seq
        self.progress.moved(len(payload))

    def _send_small_pulls(self, batch: list[Action], queue: asyncio.Queue[_Pending | None]) -> None:
        # One request for the batch, answered once (``_sync_serve_gets``): the server reads
        # them all in one go, and their contents come back in one answer.
        files = [_Pending("get", action, path=action.path) for action in batch]
        self._request(
            queue,
            _Pending("gets", batch[0], files=files),
            {"op": "gets", "paths": [action.path for action in batch]},
        )

    async def _send_action(self, action: Action, queue: asyncio.Queue[_Pending | None]) -> None:
        kind = action.kind
        if kind is Kind.PUSH:
            if await self._prepare_push(action):
                assert action.mode is not None
                await self._send_file(action, action.path, action.remote, action.mode, queue)
        elif kind is Kind.PULL:
            remote = action.remote
            assert remote is not None and action.mode is not None
            after = 0
            if action.mode != remote.mode:
                # Set the merged mode on the server first, so both sides end with it.
                chmod = _Pending("chmod_source", action, path=action.path)
                self._request(
                    queue,
                    chmod,
                    {
                        "op": "chmod",
                        "path": action.path,
                        "mode": action.mode,
                        "expect": list(remote.sig),
                    },
                )
                after = chmod.seq
            self._request(
                queue,
                _Pending("get", action, path=action.path, after=after),
                {"op": "get", "path": action.path},
            )
        elif kind is Kind.DELETE_REMOTE:
            assert action.remote is not None
            self._request(
                queue,
                _Pending("delete", action, path=action.path),
                {"op": "delete", "path": action.path, "expect": list(action.remote.sig)},
            )
        elif kind is Kind.CHMOD_REMOTE:
            assert action.remote is not None
            self._request(
                queue,
                _Pending("chmod", action, path=action.path),
                {
                    "op": "chmod",
                    "path": action.path,
                    "mode": action.mode,
                    "expect": list(action.remote.sig),
                },
            )
        elif kind is Kind.CONFLICT:
            # The server's version moves aside (on the server, no copy), the Jupyter root's
            # takes the name there, and the server's comes here under the conflict name.
            assert action.remote is not None and action.local is not None
            assert action.conflict_path is not None
            rename = _Pending("rename", action, path=action.path)
            self._request(
                queue,
                rename,
                {
                    "op": "rename",
                    "path": action.path,
                    "to": action.conflict_path,
                    "expect": list(action.remote.sig),
                },
            )
            await self._send_file(action, action.path, None, action.local.mode, queue)
            self._request(
                queue,
                _Pending("get", action, path=action.conflict_path, after=rename.seq),
                {"op": "get", "path": action.conflict_path},
            )

    async def _send_file(
        self,
        action: Action,
        path: str,
        expect: FileState | None,
        mode: int,
        queue: asyncio.Queue[_Pending | None],
    ) -> None:
        """Stream one file of the Jupyter root to the server."""
        assert self.tree is not None
        tree = self.tree
        try:
            reader = await self._read_thread(lambda: tree.open_read(path, digest=False))
        except (OSError, ValueError, SyncChanged) as e:
            self._error(path, e)
            self._done(action)
            return
        read: dict[str, Any] = {"size": reader.size, "mtime_ns": reader.mtime_ns}
        pending = _Pending("put", action, path=path, read=read, size=reader.size)
        try:
            self._request(queue, pending, self._put_message(path, read, expect, mode))
            sent = 0
            error: BaseException | None = None
            while sent < reader.size:
                want = min(SYNC_CHUNK, reader.size - sent)
                chunk = b""
                if error is None:
                    try:
                        chunk = await self._read_thread(partial(reader.read, want))
                    except OSError as e:
                        error = e
                    if not chunk and error is None:
                        error = SyncChanged("it shrank while it was being read")
                if error is not None:
                    chunk = bytes(want)  # the promised size must arrive: pad, then say so
                self.session.send_raw(chunk)
                sent += len(chunk)
                self.progress.moved(len(chunk))
                self.on_progress()
                await self.session.drain()
            if error is None:
                try:
                    read.update(await self._read_thread(reader.finish))
                except (OSError, SyncChanged) as e:
                    error = e
            if error is None:
                self.session.send_raw(TRAILER_OK)
            else:
                read["error"] = _message(error)
                self.session.send({"ok": False, "error": str(error)})
        finally:
            reader.close()

    async def _read_answers(self, queue: asyncio.Queue[_Pending | None]) -> None:
        # Actions (by id) whose first step failed on the server (moving a conflict's file
        # aside, or setting a pull's mode there): their later steps fail or are dropped
        # quietly, the failure having been reported once.
        failed: set[int] = set()
        while True:
            pending = await queue.get()
            if pending is None:
                return
            answer = await self.session.receive()
            op, action = pending.op, pending.action
            if op == "flush":
                if not answer.get("ok"):
                    raise SyncChannelError(f"The server could not flush: {answer.get('error')}")
                self._remote_durable = pending.seq
                await self._checkpoint()
                continue
            if op == "get":
                await self._receive_file(pending, answer, id(action) in failed)
                continue
            if op == "gets":
                await self._receive_small_files(pending, answer)
                continue
            if op == "puts":
                assert pending.files is not None
                results = await self._batch_results(answer, len(pending.files))
                for one, result in zip(pending.files, results, strict=True):
                    if result.get("ok"):
                        self._put_done(one, result)
                    else:
                        changed = "; it will sync next time" if result.get("changed") else ""
                        self._error(one.path, str(result.get("error") or "failed") + changed)
                        self._done(one.action)
                continue
            if not answer.get("ok"):
                if id(action) in failed:
                    continue
                if op in ("rename", "chmod_source"):
                    failed.add(id(action))
                changed = "; it will sync next time" if answer.get("changed") else ""
                self._error(pending.path, str(answer.get("error") or "failed") + changed)
                if op != "put" or action.kind is not Kind.CONFLICT:
                    self._done(action)
                continue
            if op == "put":
                self._put_done(pending, answer)
            elif op == "delete":
                self._rows.append(_Row(action.path, None, remote_seq=pending.seq))
                self.summary.deleted_remote += 1
                self._done(action, "deleted_remote")
            elif op == "chmod":
                base = self._record_chmod(action, answer, REMOTE)
                self._rows.append(_Row(action.path, base, remote_seq=pending.seq))
                self.summary.chmod_remote += 1
                self._done(action, "chmod_remote")
            # "rename" and "chmod_source" succeeded: the action's next steps follow.

    async def _batch_results(self, answer: dict[str, Any], count: int) -> list[dict[str, Any]]:
        """A ``puts`` answer's results: one dict per file, in order (its payload bounded, and
        parsed on a thread when it is longer than a message line)."""
        session = self.session
        if not answer.get("ok"):
            # The whole batch refused (a malformed request: a bug here): every file failed.
            return [answer] * count
        size = session.size_of(answer, MAX_BATCH_ANSWER, "a batch's answer")
        data = await session.receive_payload(size)
        results = await _batch_results(data, count)
        if results is None:
            session.broken = True
            raise SyncChannelError(
                f"The sync process on {session.where} sent a malformed answer to a batch of "
                f"{count} files."
            )
        return results

    def _put_done(self, pending: _Pending, answer: dict[str, Any]) -> None:
        action, read = pending.action, pending.read
        assert read is not None
        if "error" in read:
            self._error(pending.path, read["error"])
            if action.kind is not Kind.CONFLICT:
                self._done(action)
            return
        digest = answer.get("hash")
        if not isinstance(digest, str) or not HASH.match(digest):
            self._error(pending.path, "the server did not say what it wrote")
            return
        remote_sig = _sig(answer.get("sig"))
        local_sig = _sig(read.get("sig"))
        mode = answer.get("mode")
        base = Base(
            digest,
            read["size"],
            read["mtime_ns"],
            mode & ~self.umask if isinstance(mode, int) else 0,
            local_sig if read.get("trusted") else None,
            remote_sig if answer.get("trusted") else None,
        )
        self._rows.append(
            _Row(pending.path, base, remote_seq=pending.seq, local_seq=self._local_seq)
        )
        self.summary.sent_files += 1
        self.summary.sent_bytes += read["size"]
        if action.kind is not Kind.CONFLICT:
            self._done(action, "sent")

    async def _receive_file(self, pending: _Pending, header: dict[str, Any], skip: bool) -> None:
        """A get's answer: its data into the Jupyter root (unless an earlier step of the same
        action failed: then it is read and dropped)."""
        action, path = pending.action, pending.path
        if not header.get("ok"):
            if not skip:
                self._error(path, str(header.get("error") or "failed"))
                self._done(action)
            return
        limit = self.settings.max_size
        size = self.session.size_of(
            header, limit if limit is not None else 1 << 62, "a file", "sync.max_file_size_mb"
        )
        mode, mtime_ns = header.get("mode"), header.get("mtime_ns")
        if not isinstance(mode, int) or not 0 <= mode <= 0o777 or not isinstance(mtime_ns, int):
            raise SyncChannelError("The server sent a file without a valid mode or mtime.")
        conflict = action.kind is Kind.CONFLICT
        expect = None if conflict or action.local is None else list(action.local.sig)
        if not conflict and action.mode is not None:
            mode = action.mode
        mode &= ~self.umask  # never more than a file made here may have
        assert self.tree is not None
        tree = self.tree
        if size <= SYNC_SMALL:
            data = await self.session.receive_payload(size)
            self.progress.moved(size)
            trailer = await self.session.receive()
            if skip:
                return
            if not trailer.get("ok"):
                self._error(path, _trailer_error(trailer))
                self._done(action)
                return
            await self._wait_unwritten(size)

            def write_small() -> dict[str, Any]:
                writer = tree.open_write(path, expect, size, mode, mtime_ns)
                try:
                    writer.write(data)
                except BaseException:
                    writer.abort()
                    raise
                return writer.finish(trailer.get("hash"))

            future = asyncio.ensure_future(self._write_thread(write_small))
            self._local_writes.append(future)
            self._unwritten += size
            future.add_done_callback(lambda f: self._written(f, pending, trailer, size, mtime_ns))
            return
        writer: Any = None
        error: BaseException | None = None
        if not skip:
            try:
                writer = await self._write_thread(
                    lambda: tree.open_write(path, expect, size, mode, mtime_ns)
                )
            except (OSError, ValueError, SyncChanged) as e:
                error = e
        left = size
        try:
            while left:
                chunk = await self.session.receive_payload(min(SYNC_CHUNK, left))
                left -= len(chunk)
                self.progress.moved(len(chunk))
                self.on_progress()
                if writer is not None:
                    try:
                        await self._write_thread(partial(writer.write, chunk))
                    except OSError as e:
                        await self._write_thread(writer.abort)
                        writer, error = None, e
            trailer = await self.session.receive()
        except BaseException:
            # Cut off mid-file (cancelled, the connection dropped): no temporary file stays.
            if writer is not None:
                await asyncio.shield(self._write_thread(writer.abort))
            raise
        if writer is not None and not trailer.get("ok"):
            await self._write_thread(writer.abort)
            writer, error = None, SyncChanged(_trailer_error(trailer))
        if writer is None:
            if not skip:
                self._error(path, error or "failed")
                self._done(action)
            return
        done: Future[Any] = Future()
        try:
            done.set_result(await self._write_thread(lambda: writer.finish(trailer.get("hash"))))
        except (OSError, ValueError, SyncChanged) as e:
            done.set_exception(e)
        self._written(done, pending, trailer, size, mtime_ns)

    async def _receive_small_files(self, batch: _Pending, answer: dict[str, Any]) -> None:
        """A ``gets`` answer: each file's result, then their contents, written here through a
        temporary file each (as a get's are), in one hop to the writing thread. The server
        answers only by position: it cannot name a file that was not asked for, and every
        size, mode and mtime it sends is checked before anything is written."""
        files = batch.files
        assert files is not None
        if not answer.get("ok"):
            # The whole batch refused (a malformed request: a bug here): every file failed.
            for one in files:
                self._error(one.path, str(answer.get("error") or "failed"))
                self._done(one.action)
            return
        session, count = self.session, len(files)
        size = session.size_of(answer, MAX_BATCH_ANSWER + count * SYNC_SMALL, "a batch's answer")
        index_size = answer.get("index")

        def malformed() -> SyncChannelError:
            session.broken = True
            return SyncChannelError(
                f"The sync process on {session.where} sent a malformed answer to a batch of "
                f"{count} files."
            )

        if type(index_size) is not int or not 0 < index_size <= min(size, MAX_BATCH_ANSWER):
            raise malformed()
        data = await session.receive_payload(size)
        results = await _batch_results(data[:index_size], count)
        if results is None:
            raise malformed()
        max_size = self.settings.max_size
        limit = SYNC_SMALL if max_size is None else min(SYNC_SMALL, max_size)
        offset = index_size
        writes: list[tuple[_Pending, dict[str, Any], int, memoryview]] = []
        view = memoryview(data)
        for one, result in zip(files, results, strict=True):
            if not result.get("ok"):
                self._error(one.path, _trailer_error(result))
                self._done(one.action)
                continue
            n, mode, mtime_ns = result.get("size"), result.get("mode"), result.get("mtime_ns")
            if (
                type(n) is not int
                or not 0 <= n <= limit
                or type(mode) is not int
                or not 0 <= mode <= 0o777
                or type(mtime_ns) is not int
                or offset + n > size
            ):
                raise malformed()
            writes.append((one, result, mtime_ns, view[offset : offset + n]))
            offset += n
        if offset != size:
            raise malformed()
        self.progress.moved(size - index_size)
        if not writes:
            return
        await self._wait_unwritten(size)
        assert self.tree is not None
        tree, umask = self.tree, self.umask

        def write_all() -> list[dict[str, Any] | BaseException]:
            out: list[dict[str, Any] | BaseException] = []
            for one, _result, mtime_ns, content in writes:
                action = one.action
                assert action.mode is not None
                expect = None if action.local is None else list(action.local.sig)
                try:
                    writer = tree.open_write(
                        one.path, expect, len(content), action.mode & ~umask, mtime_ns
                    )
                    try:
                        writer.write(content)
                    except BaseException:
                        writer.abort()
                        raise
                    out.append(writer.finish())
                except (OSError, ValueError, SyncChanged) as e:
                    out.append(e)
            return out

        def written(future: asyncio.Future[list[dict[str, Any] | BaseException]]) -> None:
            self._unwritten -= size
            self._unwritten_changed.set()
            error = future.exception()
            outcomes = future.result() if error is None else [error] * len(writes)
            for (one, result, mtime_ns, content), outcome in zip(writes, outcomes, strict=True):
                self._received(one, outcome, result, len(content), mtime_ns)

        future = asyncio.ensure_future(self._write_thread(write_all))
        self._local_writes.append(future)
        self._unwritten += size
        future.add_done_callback(written)

    async def _wait_unwritten(self, size: int) -> None:
        while self._unwritten and self._unwritten + size > MAX_UNWRITTEN:
            self._unwritten_changed.clear()
            await self._unwritten_changed.wait()

    def _written(
        self,
        future: Future[Any] | asyncio.Future[Any],
        pending: _Pending,
        trailer: dict[str, Any],
        size: int,
        mtime_ns: int,
    ) -> None:
        if isinstance(future, asyncio.Future):
            self._unwritten -= size
            self._unwritten_changed.set()
        error = future.exception()
        self._received(
            pending, error if error is not None else future.result(), trailer, size, mtime_ns
        )

    def _received(
        self,
        pending: _Pending,
        result: dict[str, Any] | BaseException,
        trailer: dict[str, Any],
        size: int,
        mtime_ns: int,
    ) -> None:
        """A pulled file was written here (``result``: what ``_SyncWrite.finish`` answered),
        or failed to be: its record waits for the flush that makes it durable."""
        action, path = pending.action, pending.path
        if isinstance(result, BaseException):
            self._error(path, result)
            self._done(action)
            return
        local_sig, remote_sig = _sig(result.get("sig")), _sig(trailer.get("sig"))
        base = Base(
            result["hash"],
            size,
            mtime_ns,
            result["mode"] & ~self.umask,
            local_sig if result.get("trusted") else None,
            remote_sig if trailer.get("trusted") else None,
        )
        self._rows.append(_Row(path, base, remote_seq=pending.after, local_seq=self._local_seq))
        self.summary.received_files += 1
        self.summary.received_bytes += size
        if action.kind is Kind.CONFLICT:
            self.summary.conflicts.add(
                {"path": action.path, "conflict_path": path, "resolved": True}
            )
            self._done(action, "conflict")
        else:
            self._done(action, "received")


TRAILER_OK = b'{"ok":true}\n'


def _batched(action: Action) -> str | None:
    """The batch a small file's action goes in ("puts" or "gets"), or None: it goes alone (a
    large file is streamed; a pull whose mode changes on the server first, and a conflict,
    take more than one step)."""
    if action.kind is Kind.PUSH and action.local is not None and action.local.size <= SYNC_SMALL:
        return "puts"
    remote = action.remote
    if (
        action.kind is Kind.PULL
        and remote is not None
        and remote.size <= SYNC_SMALL
        and action.mode == remote.mode
    ):
        return "gets"
    return None


def _units(actions: list[Action]) -> list[list[Action]]:
    """The actions in order, consecutive small pushes (and consecutive small pulls) grouped
    into batches."""
    units: list[list[Action]] = []
    size = 0
    for action in actions:
        kind = _batched(action)
        if kind is not None:
            last = units[-1] if units else None
            if (
                last is not None
                and _batched(last[0]) == kind
                and len(last) < READ_BATCH_FILES
                and size < READ_BATCH_BYTES
            ):
                last.append(action)
                size += action.size
                continue
            size = action.size
        units.append([action])
    return units


async def _batch_results(index: bytes, count: int) -> list[dict[str, Any]] | None:
    """A batch answer's per-file results (a JSON list of ``count`` objects), or None when it
    is not one. A large index is decoded off the event loop."""
    try:
        results = (
            json.loads(index)
            if len(index) <= MAX_LINE
            else await asyncio.to_thread(json.loads, index)
        )
    except (ValueError, RecursionError):
        return None
    if (
        not isinstance(results, list)
        or len(results) != count
        or not all(isinstance(r, dict) for r in results)
    ):
        return None
    return results


def _trailer_error(trailer: dict[str, Any]) -> str:
    return str(trailer.get("error") or "the file changed while it was read") + (
        "; it will sync next time" if trailer.get("changed") else ""
    )


def _read_whole(tree: SyncTree, path: str) -> dict[str, Any]:
    """A small file's content and what ``_SyncRead.finish`` says (or its error)."""
    try:
        reader = tree.open_read(path, digest=False)
    except (OSError, ValueError, SyncChanged) as e:
        return {"error": _message(e)}
    try:
        data = reader.read_all()
        result = reader.finish()
        return dict(result, data=data, size=reader.size, mtime_ns=reader.mtime_ns)
    except (OSError, SyncChanged) as e:
        return {"error": _message(e)}
    finally:
        reader.close()


async def _none() -> dict[str, Any]:
    return {}
