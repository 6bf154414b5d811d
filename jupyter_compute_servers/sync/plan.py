"""The three-way planner: what to do with each path, from the record of the last sync and a
scan of each side. Pure: no I/O, so every rule is tested on its own.

Each side's file is compared with the record (``Base``): it is unchanged when its signature is
the one recorded (then its content is the recorded hash), or when its hash is the recorded
hash. Content and permissions are merged separately:

- content changed on one side only: copied to the other side;
- changed on both, to the same content: nothing to copy;
- changed on both, differently: a conflict; the Jupyter root's version keeps the name on both
  sides, and the server's version is kept next to it, on both sides, as
  ``name (conflict <server> <timestamp>).ext``;
- deleted on one side and unchanged on the other: deleted there; deleted on one side and
  changed on the other: the changed file is copied back (a change is never dropped);
- the mode (permission bits) of the side that changed it wins; when both changed it, the
  Jupyter root's.

Planning runs twice: first with what the scans tell (signatures), answering which files need a
hash to decide (``Decision.need``); then with those hashes, answering actions. A path under a
directory either side left out (``pruned``), or a file either side could not sync
(``skipped``), is left alone on both sides, and so is its record.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

Sig = tuple[int, int, int, int]

LOCAL = "local"
REMOTE = "remote"


class FileState(NamedTuple):
    """A regular file on one side, as scanned (and hashed, when that was needed). (Named
    tuples: there is one per file per side, and they are cheap to make.)"""

    size: int
    mtime_ns: int
    mode: int
    sig: Sig
    #: Its content hash, when known (hashed, or the record's for an unchanged signature).
    hash: str | None = None
    #: Whether ``sig`` may later stand for ``hash`` (see ``agent.sync_agent``: racy signatures).
    trusted: bool = False


class Base(NamedTuple):
    """The record of a path as last synced: the same content on both sides."""

    hash: str
    size: int
    mtime_ns: int
    mode: int
    #: Each side's signature when it was recorded (None: not trusted; hash it again).
    local_sig: Sig | None
    remote_sig: Sig | None


class Kind(str, enum.Enum):
    PUSH = "push"  # copy the Jupyter root's file to the server
    PULL = "pull"  # copy the server's file to the Jupyter root
    DELETE_LOCAL = "delete_local"
    DELETE_REMOTE = "delete_remote"
    CHMOD_LOCAL = "chmod_local"
    CHMOD_REMOTE = "chmod_remote"
    RECORD = "record"  # the same content on both sides: only the record changes
    FORGET = "forget"  # gone from both sides: drop its record
    CONFLICT = "conflict"


#: What each direction may do; the rest waits for a sync in the other direction.
#: What changes the Jupyter root (and so waits, at a held-back path, for the user to allow it).
LOCAL_WRITES = frozenset({Kind.PULL, Kind.DELETE_LOCAL, Kind.CHMOD_LOCAL, Kind.CONFLICT})

ALLOWED = {
    "both": frozenset(Kind),
    "push": frozenset({Kind.PUSH, Kind.DELETE_REMOTE, Kind.CHMOD_REMOTE, Kind.RECORD, Kind.FORGET}),
    "pull": frozenset({Kind.PULL, Kind.DELETE_LOCAL, Kind.CHMOD_LOCAL, Kind.RECORD, Kind.FORGET}),
}


@dataclass(frozen=True)
class Action:
    kind: Kind
    path: str
    local: FileState | None = None
    remote: FileState | None = None
    base: Base | None = None
    #: The mode the written or chmodded file gets.
    mode: int | None = None
    #: CONFLICT: where the server's version goes (on both sides).
    conflict_path: str | None = None

    @property
    def size(self) -> int:
        """Bytes this action moves."""
        if self.kind is Kind.PUSH and self.local:
            return self.local.size
        if self.kind is Kind.PULL and self.remote:
            return self.remote.size
        if self.kind is Kind.CONFLICT and self.local and self.remote:
            return self.local.size + self.remote.size
        return 0


@dataclass(frozen=True)
class Decision:
    """What planning one path came to: an action, nothing, or the hashes it needs first."""

    action: Action | None = None
    need: frozenset[str] = frozenset()


@dataclass
class Side:
    """One side's scan: its files, the files it could not sync, the directories it left out."""

    files: dict[str, FileState] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    pruned: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    #: Conflicts this direction cannot resolve (push and pull never write the other side's
    #: version anywhere): path -> None.
    unresolved: list[str] = field(default_factory=list)
    #: (path, side, reason) of what was left alone.
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    #: Changes left for a sync in the other direction.
    pending: int = 0
    #: What would have changed the Jupyter root at a path held back (see ``holdback.py``):
    #: nothing is done for them on either side.
    held_back: list[Action] = field(default_factory=list)
    #: The mass deletion the request confirmed (see ``MassDeletion``), if any.
    confirmed: MassDeletion | None = None


class MassDeletion(Exception):
    """A plan would delete many of the synced files on a side: all of them because the other
    side is empty (``empty``: an unmounted disk looks like that), or more than the allowed
    share. ``side`` is the side where the files are gone; ``deletions`` counts, by side
    deleted on (LOCAL, REMOTE), what the plan would delete; ``synced`` is how many the record
    has."""

    def __init__(
        self, side: str, count: int, *, empty: bool, deletions: dict[str, int], synced: int
    ) -> None:
        super().__init__(side, count)
        self.side = side
        self.count = count
        self.empty = empty
        self.deletions = deletions
        self.synced = synced


def merge_mode(local: int, remote: int, base: int | None) -> int:
    if local == remote:
        return local
    if base is not None and local == base:
        return remote
    return local


def _unchanged(state: FileState, base: Base, base_sig: Sig | None) -> bool | None:
    """Whether a side's content is the recorded content (None: a hash would tell)."""
    if base_sig is not None and state.sig == base_sig:
        return True
    if state.hash is not None:
        return state.hash == base.hash
    if state.size != base.size:
        return False
    return None


def decide(
    path: str, base: Base | None, local: FileState | None, remote: FileState | None
) -> Decision:
    """The action for one path, in a two-way sync (directions filter it afterwards)."""
    if local is None and remote is None:
        return Decision(Action(Kind.FORGET, path, base=base) if base else None)
    if base is None:
        if remote is None:
            return Decision(Action(Kind.PUSH, path, local, None, None, local.mode))  # type: ignore[union-attr]
        if local is None:
            return Decision(Action(Kind.PULL, path, None, remote, None, remote.mode))
        return _both_new(path, local, remote)
    if remote is None:
        assert local is not None
        same = _unchanged(local, base, base.local_sig)
        if same is None:
            return Decision(need=frozenset({LOCAL}))
        if same and local.mode == base.mode:
            return Decision(Action(Kind.DELETE_LOCAL, path, local, None, base))
        return Decision(Action(Kind.PUSH, path, local, None, base, local.mode))
    if local is None:
        same = _unchanged(remote, base, base.remote_sig)
        if same is None:
            return Decision(need=frozenset({REMOTE}))
        if same and remote.mode == base.mode:
            return Decision(Action(Kind.DELETE_REMOTE, path, None, remote, base))
        return Decision(Action(Kind.PULL, path, None, remote, base, remote.mode))
    local_same = _unchanged(local, base, base.local_sig)
    remote_same = _unchanged(remote, base, base.remote_sig)
    need = frozenset(
        side for side, same in ((LOCAL, local_same), (REMOTE, remote_same)) if same is None
    )
    if need:
        return Decision(need=need)
    mode = merge_mode(local.mode, remote.mode, base.mode)
    if local_same and remote_same:
        return _same_content(path, local, remote, base, mode)
    if remote_same:
        return Decision(Action(Kind.PUSH, path, local, remote, base, mode))
    if local_same:
        return Decision(Action(Kind.PULL, path, local, remote, base, mode))
    return _both_changed(path, local, remote, base, mode)


def _both_new(path: str, local: FileState, remote: FileState) -> Decision:
    if local.size != remote.size:
        return Decision(Action(Kind.CONFLICT, path, local, remote))
    need = frozenset(
        side for side, state in ((LOCAL, local), (REMOTE, remote)) if state.hash is None
    )
    if need:
        return Decision(need=need)
    if local.hash != remote.hash:
        return Decision(Action(Kind.CONFLICT, path, local, remote))
    return _same_content(path, local, remote, None, merge_mode(local.mode, remote.mode, None))


def _both_changed(
    path: str, local: FileState, remote: FileState, base: Base, mode: int
) -> Decision:
    if local.size != remote.size:
        return Decision(Action(Kind.CONFLICT, path, local, remote, base))
    need = frozenset(
        side for side, state in ((LOCAL, local), (REMOTE, remote)) if state.hash is None
    )
    if need:
        return Decision(need=need)
    if local.hash != remote.hash:
        return Decision(Action(Kind.CONFLICT, path, local, remote, base))
    return _same_content(path, local, remote, base, mode)


def _same_content(
    path: str, local: FileState, remote: FileState, base: Base | None, mode: int
) -> Decision:
    if local.mode != mode:
        return Decision(Action(Kind.CHMOD_LOCAL, path, local, remote, base, mode))
    if remote.mode != mode:
        return Decision(Action(Kind.CHMOD_REMOTE, path, local, remote, base, mode))
    if (
        base is not None
        and base.mode == mode
        and base.local_sig == local.sig
        and base.remote_sig == remote.sig
    ):
        return Decision()  # nothing changed at all
    return Decision(Action(Kind.RECORD, path, local, remote, base, mode))


def content_hash(action: Action) -> str | None:
    """The content both sides have after a RECORD or CHMOD (known from a side or the base)."""
    for state, sig in ((action.local, "local_sig"), (action.remote, "remote_sig")):
        if state is None:
            continue
        if state.hash is not None:
            return state.hash
        if action.base is not None and getattr(action.base, sig) == state.sig:
            return action.base.hash
    return None


# --- the whole tree ---------------------------------------------------------------------


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _blocked(path: str, local: Side, remote: Side) -> tuple[str, str] | None:
    """(side, reason) when a path is to be left alone."""
    if not (local.skipped or local.pruned or remote.skipped or remote.pruned):
        return None
    for side, scan in ((LOCAL, local), (REMOTE, remote)):
        if path in scan.skipped:
            return side, scan.skipped[path]
        for ancestor in _ancestors(path):
            if ancestor in scan.pruned:
                return side, scan.pruned[ancestor]
    return None


class _Directories:
    """Whether a path is a directory of a side (some file of it lies below): by bisection in
    the side's sorted paths, made on first use."""

    def __init__(self, files: dict[str, FileState]) -> None:
        self.files = files
        self.sorted: list[str] | None = None

    def __contains__(self, path: object) -> bool:
        if self.sorted is None:
            self.sorted = sorted(self.files)
        prefix = f"{path}/"
        i = bisect.bisect_left(self.sorted, prefix)
        return i < len(self.sorted) and self.sorted[i].startswith(prefix)


def paths_in_play(base: dict[str, Base], local: Side, remote: Side) -> list[str]:
    """Every path that may need something done: all but those whose signatures on both sides
    are the recorded ones (with the recorded mode), which is most of them most of the time."""
    settled = set()
    local_files, remote_files = local.files, remote.files
    for path, record in base.items():
        here, there = local_files.get(path), remote_files.get(path)
        if (
            here is not None
            and there is not None
            and here.sig == record.local_sig
            and there.sig == record.remote_sig
            and here.mode == record.mode == there.mode
        ):
            settled.add(path)
    every = set(base)
    every.update(local_files)
    every.update(remote_files)
    return sorted(every - settled)


def needed_hashes(
    base: dict[str, Base], local: Side, remote: Side, paths: list[str] | None = None
) -> tuple[set[str], set[str]]:
    """The files each side must hash before ``plan`` can decide (``paths``: those in play,
    when the caller has them)."""
    need_local: set[str] = set()
    need_remote: set[str] = set()
    for path in paths_in_play(base, local, remote) if paths is None else paths:
        if _blocked(path, local, remote):
            continue
        decision = decide(path, base.get(path), local.files.get(path), remote.files.get(path))
        if LOCAL in decision.need:
            need_local.add(path)
        if REMOTE in decision.need:
            need_remote.add(path)
    return need_local, need_remote


def conflict_name(path: str, server: str, when: float, taken: set[str]) -> str:
    """``dir/name (conflict <server> <YYYY-MM-DD HHMMSS>).ext``, made unique against
    ``taken`` (which it joins)."""
    folder, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dotfile such as .env
        stem, dot, ext = name, "", ""
    stamp = time.strftime("%Y-%m-%d %H%M%S", time.localtime(when))
    for n in range(1, 10_000):
        suffix = f" (conflict {server} {stamp}{'' if n == 1 else f' {n}'})"
        # Keep the name within 255 bytes.
        room = 255 - len((suffix + dot + ext).encode())
        short = stem.encode()[: max(room, 1)].decode("utf-8", "ignore")
        candidate = f"{short}{suffix}{dot}{ext}"
        full = f"{folder}/{candidate}" if folder else candidate
        if full not in taken:
            taken.add(full)
            return full
    raise RuntimeError(f"no free conflict name for {path}")


def plan(
    base: dict[str, Base],
    local: Side,
    remote: Side,
    *,
    direction: str = "both",
    server: str = "server",
    now: float | None = None,
    paths: list[str] | None = None,
    hold_back: Callable[[str], bool] | None = None,
    max_delete_fraction: float = 1.0,
    confirm_deletions: bool = False,
) -> Plan:
    """Every action of a sync. Files whose hash was needed must carry it by now. An action
    that would change the Jupyter root at a path ``hold_back`` answers True for goes to
    ``held_back`` instead.

    Raises MassDeletion when one side has no files at all where the record has some and the
    plan would delete them on the other side (an unmounted disk looks like that), or when it
    would delete more than ``max_delete_fraction`` of the synced files (the record's) on a side;
    unless ``confirm_deletions``: then the plan carries it as ``confirmed``.
    """
    result = Plan()
    allowed = ALLOWED[direction]
    when = time.time() if now is None else now
    taken: set[str] = set()  # names a conflict copy must not take (filled when needed)
    for side, scan in ((LOCAL, local), (REMOTE, remote)):
        for path, reason in sorted(scan.skipped.items()):
            result.skipped.append((path, side, reason))
        for path, reason in sorted(scan.pruned.items()):
            result.skipped.append((path, side, reason))
    if paths is None:
        paths = paths_in_play(base, local, remote)
    local_dirs, remote_dirs = _Directories(local.files), _Directories(remote.files)
    for path in paths:
        if _blocked(path, local, remote):
            continue
        if (path in local.files and path in remote_dirs) or (
            path in remote.files and path in local_dirs
        ):
            result.skipped.append((path, "both", "a file on one side, a directory on the other"))
            continue
        if any(a in local.files or a in remote.files for a in _ancestors(path)):
            continue  # below such a file: reported with it
        decision = decide(path, base.get(path), local.files.get(path), remote.files.get(path))
        if decision.need:
            raise ValueError(f"{path} needs a hash on {', '.join(sorted(decision.need))}")
        action = decision.action
        if action is None:
            continue
        if action.kind not in allowed:
            if action.kind is Kind.CONFLICT:
                result.unresolved.append(path)
            else:
                result.pending += 1
            continue
        if hold_back is not None and action.kind in LOCAL_WRITES and hold_back(path):
            result.held_back.append(action)
            continue
        if (
            hold_back is not None
            and action.kind is Kind.PUSH
            and action.local is not None
            and action.mode != action.local.mode
            and hold_back(path)
        ):
            # The server's mode would be set here first: keep ours, and send it.
            action = dataclasses.replace(action, mode=action.local.mode)
        if action.kind is Kind.CONFLICT:
            if not taken:
                taken.update(base, local.files, remote.files, local.skipped, remote.skipped)
            action = Action(
                Kind.CONFLICT,
                path,
                action.local,
                action.remote,
                action.base,
                conflict_path=conflict_name(path, server, when, taken),
            )
        result.actions.append(action)
    guard = _check_mass_deletion(result, base, local, remote, max_delete_fraction)
    if guard is not None:
        if not confirm_deletions:
            raise guard
        result.confirmed = guard
    return result


def _check_mass_deletion(
    result: Plan, base: dict[str, Base], local: Side, remote: Side, max_fraction: float
) -> MassDeletion | None:
    deletions = {
        LOCAL: sum(1 for action in result.actions if action.kind is Kind.DELETE_LOCAL),
        REMOTE: sum(1 for action in result.actions if action.kind is Kind.DELETE_REMOTE),
    }
    # (side where the files are gone, side they would be deleted on)
    for gone, there, scan in ((LOCAL, REMOTE, local), (REMOTE, LOCAL, remote)):
        count = deletions[there]
        if count and not scan.files and not scan.skipped and not scan.pruned and base:
            return MassDeletion(gone, count, empty=True, deletions=deletions, synced=len(base))
    for gone, there in ((LOCAL, REMOTE), (REMOTE, LOCAL)):
        count = deletions[there]
        if count and count > max_fraction * len(base):
            return MassDeletion(gone, count, empty=False, deletions=deletions, synced=len(base))
    return None
