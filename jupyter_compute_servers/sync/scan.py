"""Scans of both sides, as the planner takes them.

Both sides are scanned by the same code (``SyncTree.scan`` in ``agent/sync_agent.py``): the Jupyter
root on a thread here, the workspace by the sync process on the server. What it does:

- walks the tree without following links (a link is reported, never followed or synced);
- leaves out what the excludes say (gitignore syntax; defaults in ``settings.py``), the
  server-only directories, and directories that are Python virtual environments (they hold
  a ``pyvenv.cfg``) or conda environments (``conda-meta/``), reported as left out;
- reports files over the size limit, special files and names that are not UTF-8 as skipped;
- takes no hashes: a file is hashed only when its signature differs from the record's (see
  ``plan.py``), so a sync where little changed reads little.

The server's answer is checked before anything is planned from it, because every path in it
may end up written in the Jupyter root: each must be a well-formed relative path (no "..", no
absolute path, no empty or "." part) inside the synced sub-path, listed once, and not excluded
here; the numbers must be numbers. A bad answer fails the sync; nothing is written.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from typing import Any

from ..agent.sync_agent import SyncExcludes
from .plan import Base, FileState, Side
from .transfer import SyncChannelError

HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_REASON = 300


#: An empty, "." or ".." component anywhere (also a leading or trailing slash).
_BAD_PART = re.compile(r"(?:^|/)(?:\.\.?)?(?:/|$)")


def _int(value: Any, minimum: int | None = None) -> int:
    if type(value) is not int:  # not bool either
        raise ValueError(f"not an integer: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"out of range: {value!r}")
    return value


def valid_path(path: Any) -> bool:
    """A relative tree path: "/"-separated, no empty, "." or ".." part, no NUL, UTF-8, parts of
    at most 255 bytes (the rules of ``agent.sync_agent.sync_parts``, checked faster)."""
    if type(path) is not str or not path or len(path) > 4096:
        return False
    if "\x00" in path or _BAD_PART.search(path):
        return False
    if not path.isascii():
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return len(path) <= 255 or all(len(part.encode()) <= 255 for part in path.split("/"))


def _path(value: Any, scope: str) -> str:
    if not valid_path(value):
        raise ValueError(f"invalid path {value!r}")
    if scope and value != scope and not value.startswith(scope + "/"):
        raise ValueError(f"{value!r} is outside {scope!r}")
    return str(value)


def _sig(value: Any) -> tuple[int, int, int, int]:
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError(f"not a signature: {value!r}")
    size, mtime, ino, ctime = (_int(v) for v in value)
    if size < 0:
        raise ValueError(f"not a signature: {value!r}")
    return (size, mtime, ino, ctime)


class _Excluded:
    """Whether a path (or a directory above it) is excluded here; directories memoized."""

    def __init__(self, excludes: SyncExcludes) -> None:
        self.excludes = excludes
        self.dirs: dict[str, bool] = {"": False}

    def directory(self, path: str) -> bool:
        known = self.dirs.get(path)
        if known is None:
            parent = path.rpartition("/")[0]
            known = self.directory(parent) or bool(self.excludes.excluded(path, True))
            self.dirs[path] = known
        return known

    def __call__(self, path: str) -> bool:
        return self.directory(path.rpartition("/")[0]) or bool(self.excludes.excluded(path, False))


def _reason(entry: list[Any]) -> str:
    if entry[1] == "too large":
        return f"larger than the size limit ({_int(entry[2], 0) / 2**20:.1f} MB)"
    return str(entry[1])[:MAX_REASON]


def side_from_local(raw: dict[str, Any], umask: int = 0) -> Side:
    """Our own scan of the Jupyter root (made by our code: no checks needed). Modes are seen
    through ``umask``, like the server's (see ``side_from_scan``)."""
    side = Side()
    keep = 0o777 & ~umask
    side.files = {
        path: FileState(size, mtime, mode & keep, (size, mtime, ino, ctime))
        for path, size, mtime, mode, ino, ctime in raw["files"]
    }
    side.skipped = {entry[0]: _reason(entry) for entry in raw["skipped"]}
    side.pruned = {path: reason for path, reason in raw["pruned"]}
    return side


def side_from_scan(
    raw: Any,
    scope: str,
    excludes: SyncExcludes,
    *,
    where: str = "the server",
    known: Container[str] = (),
    previous: tuple[str, dict[str, FileState]] | None = None,
    umask: int = 0,
) -> Side:
    """The server's scan answer as a ``Side``; SyncChannelError when malformed. Paths in
    ``known`` (the local scan's) are known to be well-formed, in scope and not excluded.

    Modes are seen through ``umask`` (the Jupyter server's): sync carries only the permission
    bits a file created here may have, so a file pulled from the server is never group- or
    world-writable (or executable) unless our umask allows it, and a server's 0o777 looks
    like the 0o755 its copy here has (nothing to do next time).

    The answer may be only the changes (``changed``, ``removed``) since an earlier one, whose
    token and files (as checked then) are ``previous``.
    """
    try:
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        skipped, pruned = raw.get("skipped"), raw.get("pruned")
        side = Side()
        if "since" in raw:
            if previous is None or raw["since"] != previous[0]:
                raise ValueError("changes since a scan this end does not have")
            files, removed = raw.get("changed"), raw.get("removed")
            if not isinstance(removed, list):
                raise ValueError("removed must be a list")
            side.files = dict(previous[1])
            for path in removed:
                if not isinstance(path, str):
                    raise ValueError(f"bad removed entry {path!r}")
                side.files.pop(path, None)
            listed: set[str] = set()
        else:
            files, listed = raw.get("files"), set()
        if not (isinstance(files, list) and isinstance(skipped, list) and isinstance(pruned, list)):
            raise ValueError("files, skipped and pruned must be lists")
        excluded = _Excluded(excludes)
        keep = 0o777 & ~umask
        states = side.files
        delta = "since" in raw
        for entry in files:
            try:
                path, size, mtime_ns, mode, ino, ctime_ns = entry
            except (TypeError, ValueError):
                raise ValueError(f"bad file entry {entry!r}") from None
            if (
                type(size) is not int
                or type(mtime_ns) is not int
                or type(mode) is not int
                or type(ino) is not int
                or type(ctime_ns) is not int
                or size < 0
                or not 0 <= mode <= 0o777
            ):
                raise ValueError(f"bad file entry {entry!r}")
            if path not in known:
                _path(path, scope)
                if excluded(path):
                    states.pop(path, None)
                    continue  # not ours to sync, whatever the other side thinks
            if path in (listed if delta else states):
                raise ValueError(f"{path!r} is listed twice")
            listed.add(path)
            states[path] = FileState(size, mtime_ns, mode & keep, (size, mtime_ns, ino, ctime_ns))
        for entry in skipped:
            if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[1], str):
                raise ValueError(f"bad skipped entry {entry!r}")
            path = entry[0] if isinstance(entry[0], str) else ""
            reason = _reason(entry)
            try:
                side.skipped[_path(path, scope)] = reason
            except ValueError:
                if reason != "name is not valid UTF-8":
                    raise
                side.skipped[path[:1000]] = reason  # shown, never acted upon
        for entry in pruned:
            if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], str):
                raise ValueError(f"bad pruned entry {entry!r}")
            side.pruned[_path(entry[0], scope)] = entry[1][:MAX_REASON]
        return side
    except ValueError as e:
        raise SyncChannelError(f"The scan from {where} is malformed: {e}") from None


def state_from_hash(answer: Any, umask: int = 0) -> FileState:
    """A hash answer (``SyncTree.hash``) as a FileState, its mode seen through ``umask``;
    ValueError when malformed."""
    if not isinstance(answer, dict) or not isinstance(answer.get("hash"), str):
        raise ValueError(f"bad hash answer {answer!r}")
    if not HASH.match(answer["hash"]):
        raise ValueError(f"bad hash {answer['hash']!r}")
    sig = _sig(answer.get("sig"))
    mode = _int(answer.get("mode"), 0)
    if mode > 0o777:
        raise ValueError(f"bad mode {mode!r}")
    return FileState(
        sig[0],
        sig[1],
        mode & ~umask,
        sig,
        hash=answer["hash"],
        trusted=answer.get("trusted") is True,
    )


def inherit_hashes(
    base: dict[str, Base], local: Side, remote: Side, paths: Iterable[str] | None = None
) -> set[str]:
    """Files whose signature is the recorded one have the recorded content: give them its hash
    (and keep trusting the signature). Answers the paths settled on both sides (signatures and
    mode as recorded), which need nothing at all. Only ``paths``, when given."""
    settled = set()
    local_files, remote_files = local.files, remote.files
    records = (
        base.items() if paths is None else ((p, base[p]) for p in paths if p in base)  # only these
    )
    for path, record in records:
        here, there = local_files.get(path), remote_files.get(path)
        if here is not None and here.sig == record.local_sig:
            if (
                there is not None
                and there.sig == record.remote_sig
                and here.mode == record.mode == there.mode
            ):
                settled.add(path)
                continue
            local_files[path] = here._replace(hash=record.hash, trusted=True)
        if there is not None and there.sig == record.remote_sig:
            remote_files[path] = there._replace(hash=record.hash, trusted=True)
    return settled
