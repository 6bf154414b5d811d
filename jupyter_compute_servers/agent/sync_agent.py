"""The sync agent: the file-level part of file sync (standard library only).

Both sides run it. The Jupyter server imports it for its own tree; on a compute server it is
not installed: the client sends this file's source over SSH to ``python3`` there each time it
starts a sync session (see ``agent/__init__.py`` and ``jupyter_compute_servers.sync.transfer``),
so it always matches the client's version and nothing is left behind on the server. It shares
nothing with the RPC agent (``rpc_agent.py``), and a sync session sends only this file.
"""

import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import select
import stat
import struct
import sys
import threading
import time

# --- sync ---------------------------------------------------------------------------------
#
# File sync between the Jupyter root and this server's workspace (``jupyter_compute_servers.sync``
# plans it). The Jupyter server imports these same functions for its own tree, so both sides
# scan, hash, read and write by one set of rules:
#
# - A path is relative, "/"-separated, valid UTF-8, with no empty, "." or ".." component.
# - Directories are opened one component at a time with O_NOFOLLOW (``SyncTree.dir_fd``), so a
#   symbolic link never leads a read or a write out of the tree. Links are never synced.
# - A file is written to a temporary file in its directory and then put in place, and only if
#   the target is still what the caller saw (``expect``: its signature, or None for "absent"):
#   the old file is first renamed aside and checked, so a change made meanwhile is kept.
# - A signature is (size, mtime_ns, inode, ctime_ns). Any write or chmod sets ctime, which
#   cannot be set back, so an unchanged signature means unchanged content. A signature taken
#   within SYNC_RACY_NS of a change is not "trusted" (a change in the same clock tick could
#   hide behind it); the caller hashes such a file again next time.
#
# On the server this runs as its own process (this file run as a program) so that a long scan
# or transfer never holds up the agent's kernel calls. Its protocol, on stdin and stdout: every
# message is one JSON line, followed by exactly ``size`` raw bytes when the line has a "size";
# answers come in the order of the requests (a ``puts`` carries many small files in one
# request and one answer, see ``_sync_serve_puts``, and a ``gets`` brings many back, see
# ``_sync_serve_gets``). See ``jupyter_compute_servers.sync.transfer``.
# Both ends always speak the same protocol: this file is sent by the client each session.

SYNC_MARKER = ".jupyter-compute-servers-sync.json"
SYNC_TEMP = re.compile(r"^\..*\.jcs-sync-[0-9a-f]{12}\.(tmp|old)$", re.DOTALL)
SYNC_RACY_NS = 2_000_000_000
SYNC_STALE_NS = 600_000_000_000
SYNC_CHUNK = 1 << 20
SYNC_FSYNC_MAX = 64
SYNC_SMALL = 1 << 16
_SYNC_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SYNC_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SYNC_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
# What a scan leaves out of a tree, by reason: the side keeps these and sync never touches them.
SYNC_PRUNED_VENV = "virtual environment"
SYNC_PRUNED_CONDA = "conda environment"
SYNC_PRUNED_SERVER_ONLY = "server-only directory"
SYNC_PRUNED_EXCLUDED = "excluded"


def _sync_read_umask():
    """This process's umask, read without setting it (a set, even undone at once, would race
    with other threads creating files); None when it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def sync_umask():
    """The permission bits a file written here must not have: this process's umask, or 0o077
    (owner only) when it cannot be read."""
    umask = _sync_read_umask()
    return 0o077 if umask is None else umask


_SYNC_READ_UMASK = _sync_read_umask()
# Bits a new file cannot get from os.open's mode (all, when unknown: then it is fchmod'ed).
_SYNC_UMASK = 0o777 if _SYNC_READ_UMASK is None else _SYNC_READ_UMASK


class SyncChanged(Exception):
    """The file is no longer what the caller saw: it changed on this side during the sync."""


def sync_parts(path):
    """The components of a relative tree path; ValueError when it is not one."""
    if not isinstance(path, str) or not path or len(path) > 4096:
        raise ValueError(f"invalid path {path!r}")
    parts = path.split("/")
    for part in parts:
        # encode() refuses names that are not valid UTF-8 (surrogate escapes).
        if part in ("", ".", "..") or "\x00" in part or len(part.encode("utf-8")) > 255:
            raise ValueError(f"invalid path {path!r}")
    return parts


def _sync_sig(st):
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _sync_mode(st):
    return stat.S_IMODE(st.st_mode) & 0o777


# --- sync: excludes in gitignore syntax ----------------------------------------------------


_SYNC_GROUP_IDS = itertools.count(1)  # names of back-referenced groups, unique in a process


def _sync_atomic(body):
    """``body`` matched once, never revisited by backtracking (a lookahead, which Python's re
    never re-enters, then a back-reference): what keeps a glob's matching polynomial. Atomic
    groups (``(?>...)``) would do, but need Python 3.11 on the server too."""
    name = f"jcs{next(_SYNC_GROUP_IDS)}"
    return f"(?=(?P<{name}>{body}))(?P={name})"


def _sync_glob_tokens(text):
    """One gitignore glob (a path component) as a list of regular expressions, each matching
    one character, and None for each "*"."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(None)
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < len(text) and text[j] in "!^":
                j += 1
            if j < len(text) and text[j] == "]":
                j += 1
            while j < len(text) and text[j] != "]":
                j += 1
            if j >= len(text):  # no closing bracket: a literal "["
                out.append(re.escape(c))
            else:
                body = text[i + 1 : j]
                if "[:" in body:
                    raise ValueError("character classes such as [:alpha:] are not supported")
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("[", "\\[")
                out.append(f"[^/{body}]" if negate else f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return out


def _sync_glob(text):
    """A regular expression for one gitignore glob (a path component), matched in polynomial
    time whatever the pattern and the name: the glob is its pieces between stars, each of a
    fixed length, and a piece followed by another star is taken at its first place after the
    previous one (atomically), which is always right: a later place only leaves less room for
    the rest. Only the last piece, anchored at the component's end, is searched for."""
    pieces: list = [[]]
    for token in _sync_glob_tokens(text):
        if token is None:
            pieces.append([])
        else:
            pieces[-1].append(token)
    if len(pieces) == 1:
        return "".join(pieces[0])
    out = ["".join(pieces[0])]
    for piece in pieces[1:-1]:
        if piece:
            out.append(_sync_atomic("[^/]*?" + "".join(piece)))
    out.append("[^/]*" + "".join(pieces[-1]))
    return "".join(out)


def sync_pattern(line):
    """One gitignore line as (regex over the relative path, negated, directories only), or None
    for a blank line or a comment. The regex runs in polynomial time (see ``_sync_glob``; a
    "**" followed by more components is taken the same way, a component sequence at a time)."""
    if line.startswith("#"):
        return None
    # Trailing spaces go, unless escaped with a backslash.
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        stripped += " "
    line = stripped
    negate = line.startswith("!")
    if negate or line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    segments = line.split("/")
    if segments == ["**"]:
        body = ".*"
    elif not anchored:
        # One component, matched against a path's last component.
        body = "(?:.*/)?" + _sync_glob(segments[0])
    else:
        # Runs of components between "**"s: the first anchored at the start, the last at the
        # end; one between two "**"s is taken at its first place (atomically), like a piece
        # of a glob between stars.
        runs: list = [[]]
        for segment in segments:
            if segment == "**":
                runs.append([])
            else:
                runs[-1].append(_sync_glob(segment))
        if len(runs) == 1:
            body = "/".join(runs[0])
        else:
            out = ["".join(glob + "/" for glob in runs[0])]
            for run in runs[1:-1]:
                if run:
                    out.append(_sync_atomic("(?:[^/]+/)*?" + "".join(g + "/" for g in run)))
            if runs[-1]:
                out.append("(?:[^/]+/)*" + "/".join(runs[-1]))
            else:
                # "a/**" matches everything inside a, not a itself.
                out.append(".+")
            body = "".join(out)
    return re.compile(f"^{body}\\Z", re.DOTALL), negate, dir_only


class SyncExcludes:
    """Decides what a scan leaves out: gitignore-syntax patterns (later lines win; "!" brings
    back), server-only directories, and the tree's own bookkeeping files."""

    def __init__(self, patterns=(), server_only=()):
        self.rules = [rule for rule in (sync_pattern(p) for p in patterns) if rule is not None]
        self.server_only = {p.strip("/") for p in server_only}
        self._fast = None
        if not any(negate for _, negate, _ in self.rules):
            # Without negations, one combined expression per kind answers at once.
            files = [r.pattern for r, _, dir_only in self.rules if not dir_only]
            dirs = [r.pattern for r, _, _ in self.rules]
            self._fast = (
                re.compile("|".join(files), re.DOTALL) if files else None,
                re.compile("|".join(dirs), re.DOTALL) if dirs else None,
            )

    def excluded(self, path, is_dir):
        """Why ``path`` is left out, or None when it syncs."""
        if path == SYNC_MARKER or (
            ".jcs-sync-" in path and SYNC_TEMP.match(path.rpartition("/")[2])
        ):
            return SYNC_PRUNED_EXCLUDED
        if is_dir and path in self.server_only:
            return SYNC_PRUNED_SERVER_ONLY
        if self._fast is not None:
            regex = self._fast[1] if is_dir else self._fast[0]
            return SYNC_PRUNED_EXCLUDED if regex is not None and regex.match(path) else None
        for regex, negate, dir_only in reversed(self.rules):
            if (is_dir or not dir_only) and regex.match(path):
                return None if negate else SYNC_PRUNED_EXCLUDED
        return None


# --- sync: one tree ------------------------------------------------------------------------


class SyncTree:
    """One side's tree: the Jupyter root, or the server's workspace."""

    def __init__(self, root, create=False):
        root = os.path.expanduser(root)
        if create:
            os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)
        self._root_fd = os.open(self.root, _SYNC_DIR_FLAGS)
        self._fds = {"": self._root_fd}
        self._lock = threading.Lock()
        #: What changed since the last flush: files written (directory, name) and directories
        #: whose entries changed; None once there are too many to fsync one by one.
        self._dirty: set | None = set()

    def close(self):
        with self._lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = {}

    def tree_id(self):
        """This tree's identity, kept in a marker file at its root (created on first use). A
        new identity means a new disk: nothing recorded about the old one applies."""
        try:
            fd = os.open(SYNC_MARKER, _SYNC_READ_FLAGS, dir_fd=self._root_fd)
            with os.fdopen(fd, "rb") as f:
                value = json.loads(f.read(4096))["id"]
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
                return value
        except (OSError, ValueError, KeyError, TypeError):
            pass
        value = os.urandom(16).hex()
        tmp = f".{SYNC_MARKER}.jcs-sync-{os.urandom(6).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=self._root_fd)
        with os.fdopen(fd, "w") as f:
            json.dump({"id": value, "about": "jupyter-compute-servers file sync"}, f)
        os.replace(tmp, SYNC_MARKER, src_dir_fd=self._root_fd, dst_dir_fd=self._root_fd)
        return value

    def dir_fd(self, parts, create=False):
        """The directory ``parts`` (a list of components) opened without following links."""
        key = "/".join(parts)
        with self._lock:
            fd = self._fds.get(key)
        if fd is not None:
            return fd
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, _SYNC_DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=parent)
                self._changed(parts[:-1])
            fd = os.open(name, _SYNC_DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ValueError(
                    f"{key} is not a directory (a link or a file is in the way)"
                ) from None
            raise
        with self._lock:
            if key in self._fds:
                os.close(fd)
                return self._fds[key]
            self._fds[key] = fd
        return fd

    def _forget_dir(self, key):
        with self._lock:
            for cached in [k for k in self._fds if k == key or k.startswith(key + "/")]:
                if cached:
                    with contextlib.suppress(OSError):
                        os.close(self._fds.pop(cached))

    def _parent(self, path, create=False):
        parts = sync_parts(path)
        return self.dir_fd(parts[:-1], create), parts[-1], parts

    # --- scanning ----------------------------------------------------------------------

    def scan(self, path="", patterns=(), server_only=(), max_size=None, watch=None):
        """The files under ``path`` ("" for all): ``{"files": [[path, size, mtime_ns, mode,
        ino, ctime_ns]...], "skipped": [[path, reason, size]...], "pruned": [[dir, reason]...]}``.

        Skipped files exist but do not sync (links, special files, too large, unreadable
        names); pruned directories are left out whole. Stale temporary files of an
        interrupted sync are removed on the way.

        ``watch`` (``SyncWatch``'s): called with each directory walked, opened, before it is
        listed; the answer then also lists the files with more than one link ("linked").
        """
        excludes = SyncExcludes(patterns, server_only)
        result: dict = {"files": [], "skipped": [], "pruned": []}
        if watch is not None:
            result["linked"] = []
        now = time.time_ns()
        parts = sync_parts(path) if path else []
        # The way down to ``path`` must itself be a synced directory.
        for depth in range(len(parts)):
            below = "/".join(parts[: depth + 1])
            try:
                fd = self.dir_fd(parts[:depth])
                st = os.stat(parts[depth], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return result
            except ValueError:
                result["skipped"].append([below, "a link or file is in the way", 0])
                return result
            is_last = depth == len(parts) - 1
            if stat.S_ISLNK(st.st_mode):
                result["skipped"].append([below, "symbolic link", 0])
                return result
            if is_last and stat.S_ISREG(st.st_mode):
                if not excludes.excluded(below, False):
                    self._scan_file(below, st, max_size, result)
                return result
            if not stat.S_ISDIR(st.st_mode):
                result["skipped"].append([below, "not a regular file", 0])
                return result
            reason = excludes.excluded(below, True) or self._environment(parts[: depth + 1])
            if reason:
                result["pruned"].append([below, reason])
                return result
        self._walk(self.dir_fd(parts), path, excludes, max_size, now, result, 0, watch)
        return result

    def _environment(self, parts):
        try:
            names = set(os.listdir(self.dir_fd(parts)))
        except OSError:
            return None
        return _sync_environment(names)

    def _scan_file(self, path, st, max_size, result):
        if max_size is not None and st.st_size > max_size:
            result["skipped"].append([path, "too large", st.st_size])
        else:
            result["files"].append(
                [path, st.st_size, st.st_mtime_ns, st.st_mode & 0o777, st.st_ino, st.st_ctime_ns]
            )
            if st.st_nlink > 1 and "linked" in result:
                result["linked"].append(path)

    def _walk(self, fd, prefix, excludes, max_size, now, result, depth, watch=None):
        if watch is not None:
            watch(fd, prefix)  # before the listing: a change made after it is seen
        with os.scandir(fd) as listing:
            entries = list(listing)
        if depth:
            reason = _sync_environment({entry.name for entry in entries})
            if reason:
                result["pruned"].append([prefix, reason])
                return
        for entry in entries:
            name = entry.name
            path = f"{prefix}/{name}" if prefix else name
            self._walk_entry(fd, entry, path, excludes, max_size, now, result, depth, watch)

    def _walk_entry(self, fd, entry, path, excludes, max_size, now, result, depth, watch=None):
        """One entry (a DirEntry, or a ``_SyncEntry``) of the directory ``fd`` at ``depth``."""
        name = entry.name
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            result["skipped"].append([shown, "name is not valid UTF-8", 0])
            return
        if ".jcs-sync-" in name and SYNC_TEMP.match(name):
            self._clean_temp(fd, name, now)
            return
        try:
            if entry.is_dir(follow_symlinks=False):
                reason = excludes.excluded(path, True)
                if reason == SYNC_PRUNED_EXCLUDED:
                    return
                if reason:
                    result["pruned"].append([path, reason])
                elif depth >= 200:
                    result["skipped"].append([path, "too deep", 0])
                else:
                    sub = os.open(name, _SYNC_DIR_FLAGS, dir_fd=fd)
                    try:
                        self._walk(sub, path, excludes, max_size, now, result, depth + 1, watch)
                    finally:
                        os.close(sub)
                return
            if excludes.excluded(path, False):
                return
            if entry.is_symlink():
                result["skipped"].append([path, "symbolic link", 0])
            elif entry.is_file(follow_symlinks=False):
                self._scan_file(path, entry.stat(follow_symlinks=False), max_size, result)
            else:
                result["skipped"].append([path, "not a regular file", 0])
        except FileNotFoundError:
            return  # gone since the listing
        except OSError as e:
            result["skipped"].append([path, f"unreadable: {e.strerror or e}", 0])

    def _clean_temp(self, fd, name, now):
        """A temporary file left by an interrupted sync, once stale: a new file that was never
        put in place is removed; an old one set aside goes back to its name if that is free,
        and otherwise stays (hidden, never synced, never deleted)."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if st.st_ctime_ns > now - SYNC_STALE_NS or not stat.S_ISREG(st.st_mode):
                return
            if name.endswith(".tmp"):
                os.unlink(name, dir_fd=fd)
                return
            original = name[1:].rsplit(".jcs-sync-", 1)[0]
            if len(original.encode("utf-8")) < 200:  # else it may have been shortened
                _sync_move_noreplace(fd, name, original)
        except (OSError, SyncChanged):
            pass

    # --- hashing -----------------------------------------------------------------------

    def hash(self, paths, threads=4):
        """``{path: {"hash", "sig", "mode", "trusted"} or {"error"}}``, hashed in parallel."""

        def one(path):
            try:
                reader = self.open_read(path)
            except (OSError, ValueError, SyncChanged) as e:
                return path, {"error": _sync_error(e)}
            try:
                while reader.read(SYNC_CHUNK):
                    pass
                return path, reader.finish()
            except (OSError, SyncChanged) as e:
                return path, {"error": _sync_error(e)}
            finally:
                reader.close()

        if len(paths) < 2 or threads < 2:
            return dict(one(p) for p in paths)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            return dict(pool.map(one, paths))

    # --- reading and writing -----------------------------------------------------------

    def open_read(self, path, digest=True):
        return _SyncRead(self, path, digest)

    def open_write(self, path, expect, size, mode, mtime_ns):
        return _SyncWrite(self, path, expect, size, mode, mtime_ns)

    def delete(self, path, expect):
        """Remove a file that is still ``expect``; then its directories that became empty."""
        try:
            fd, name, parts = self._parent(path)
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return {}  # gone already
        aside = _sync_set_aside(fd, name, expect)
        if aside is not None:
            os.unlink(aside, dir_fd=fd)
        self._changed(parts[:-1])
        self._remove_empty(parts[:-1])
        return {}

    def chmod(self, path, mode, expect):
        """Set the permissions of a file that is still ``expect``."""
        fd, name, parts = self._parent(path)
        _sync_expect(fd, name, expect)
        file_fd = os.open(name, _SYNC_READ_FLAGS, dir_fd=fd)
        try:
            os.fchmod(file_fd, mode & 0o777)
            st = os.fstat(file_fd)
        finally:
            os.close(file_fd)
        self._changed(parts[:-1], name)
        _sync_check_same(st, expect)
        return _sync_written(st)

    def rename(self, path, to, expect):
        """Move a file that is still ``expect`` to ``to``, which must not exist."""
        fd, name, parts = self._parent(path)
        to_fd, to_name, to_parts = self._parent(to, create=True)
        _sync_expect(fd, name, expect)
        _sync_move_noreplace(fd, name, to_name, to_fd)
        self._changed(parts[:-1])
        self._changed(to_parts[:-1])
        st = os.stat(to_name, dir_fd=to_fd, follow_symlinks=False)
        _sync_check_same(st, expect)
        return _sync_written(st)

    def _changed(self, parts, name=None):
        """Note a change to flush: a file written (``name`` in directory ``parts``), or an
        entry added or removed in that directory."""
        if self._dirty is not None:
            self._dirty.add((tuple(parts), name))
            if len(self._dirty) > SYNC_FSYNC_MAX:
                self._dirty = None

    def flush(self):
        """Make every change so far durable: a few files and their directories one fsync at a
        time; many, with one syncfs of the file system (cheaper than an fsync per file, but
        it also waits for everyone else's writes there)."""
        dirty, self._dirty = self._dirty, set()
        if dirty is not None:
            try:
                for parts, name in sorted(dirty, key=lambda d: d[1] is None):
                    fd = self.dir_fd(list(parts))
                    if name is None:
                        os.fsync(fd)
                        continue
                    try:
                        file_fd = os.open(name, _SYNC_READ_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        continue  # replaced or removed since: nothing of ours to keep
                    try:
                        os.fsync(file_fd)
                    finally:
                        os.close(file_fd)
                return {}
            except (OSError, ValueError):
                pass  # fall back on the whole file system
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(self._root_fd) == 0:
                return {}
        except (OSError, AttributeError):
            pass
        os.sync()
        return {}

    def _remove_empty(self, parts):
        while parts:
            fd = self.dir_fd(parts[:-1])
            try:
                os.rmdir(parts[-1], dir_fd=fd)
            except OSError:
                return
            self._forget_dir("/".join(parts))
            if self._dirty is not None:
                self._dirty.discard((tuple(parts), None))
            parts = parts[:-1]
            self._changed(parts)


# --- sync: the change journal --------------------------------------------------------------
#
# A sync where little changed should not walk both trees. While a tree is open (a sync session
# on the server; the Jupyter server's life here), ``SyncWatch`` watches every directory its last
# walk entered, with Linux's inotify (through ctypes: standard library only), and keeps a
# journal of the names that changed since. The next scan then answers from that walk's result
# and re-examines only the journaled names (a new directory is walked, and watched, whole).
#
# The journal is trusted only when it is continuous since the walk it amends, and complete;
# anything else means a full walk, which starts a new watch and a new journal:
# - no walk yet (this process is new: the server or Jupyter restarted, the session dropped), or
#   the scan's parameters (sub-path, excludes, size limit) or the tree's real path changed;
# - the kernel's queue overflowed (IN_Q_OVERFLOW), a watch could not be added (the user's
#   inotify watch limit), the tree needs more than half the user's watches, the journal grew
#   past ``capacity``, or reading it failed;
# - a directory was renamed (the watches below it would name the wrong paths), the scanned
#   directory itself was replaced, moved, deleted or changed its permissions, or a file system
#   went away (IN_UNMOUNT);
# - a name that is not UTF-8, or a sync temporary file still present (a full walk cleans it up);
# - the tree is not on a local file system (NFS, SMB, FUSE...: inotify does not see changes
#   made by other machines), or this is not Linux.
# inotify does not see writes through a shared memory mapping until the writer closes the file,
# nor changes made through another hard link: files with more than one link are re-examined
# at every scan. What a journal could still miss is never overwritten: every write and delete
# checks the file is still what the scan saw (``expect``), and it would sync at the next walk.

SYNC_JOURNAL_MAX = 100_000
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_UNMOUNT, _IN_Q_OVERFLOW = 0x400, 0x800, 0x2000, 0x4000
_IN_IGNORED, _IN_ONLYDIR, _IN_EXCL_UNLINK, _IN_ISDIR = 0x8000, 0x1000000, 0x4000000, 0x40000000
_SYNC_WATCH_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
    | _IN_EXCL_UNLINK
)
# File systems whose every change this kernel makes, so inotify sees them all (statfs f_type):
# ext2/3/4, xfs, btrfs, tmpfs, overlayfs, zfs, f2fs, bcachefs, reiserfs, jfs.
_SYNC_LOCAL_FS = {
    0xEF53,
    0x58465342,
    0x9123683E,
    0x01021994,
    0x794C7630,
    0x2FC12FC1,
    0xF2F52010,
    0xCA451A4E,
    0x52654973,
    0x3153464A,
}
_sync_libc_cache: list = []


def _sync_libc():
    """libc with inotify's functions, or None (not Linux, no ctypes)."""
    if not _sync_libc_cache:
        libc = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.inotify_init1.argtypes = [ctypes.c_int]
                libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
                libc.fstatfs.argtypes = [ctypes.c_int, ctypes.c_char_p]
            except (ImportError, OSError, AttributeError):
                libc = None
        _sync_libc_cache.append(libc)
    return _sync_libc_cache[0]


def _sync_local_fs(libc, fd):
    """Whether the directory ``fd`` is on a file system listed in ``_SYNC_LOCAL_FS``."""
    import ctypes

    buf = ctypes.create_string_buffer(512)  # struct statfs, f_type first (a long)
    if libc.fstatfs(fd, buf) != 0:
        return False
    size = ctypes.sizeof(ctypes.c_long)
    return int.from_bytes(buf.raw[:size], sys.byteorder) in _SYNC_LOCAL_FS


def _sync_max_watches():
    """How many directories one tree may watch: half the user's inotify watches, so that a
    large tree never takes them all from the user's other tools."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return max(int(f.read()) // 2, 1)
    except (OSError, ValueError):
        return 4096  # half the smallest default there has been


class _SyncEntry:
    """One name in a directory, with the few methods of os.DirEntry a walk uses."""

    def __init__(self, fd, name):
        self.name = name
        self._st = os.stat(name, dir_fd=fd, follow_symlinks=False)

    def is_dir(self, follow_symlinks=False):
        return stat.S_ISDIR(self._st.st_mode)

    def is_symlink(self):
        return stat.S_ISLNK(self._st.st_mode)

    def is_file(self, follow_symlinks=False):
        return stat.S_ISREG(self._st.st_mode)

    def stat(self, follow_symlinks=False):
        return self._st


class SyncWatch:
    """A tree's last walk, kept current by a journal of what changed since (see above)."""

    def __init__(self, capacity=SYNC_JOURNAL_MAX):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._fd = -1
        self._wds: dict = {}  # watch descriptor -> the directory's path
        self._key = None
        self._scope = ""
        self._scope_id = None  # (st_dev, st_ino) of the scanned directory at the walk
        self.files: dict = {}  # path -> the scan's entry
        self.skipped: dict = {}
        self.pruned: dict = {}
        self.linked: set = set()  # files with more than one link: re-examined every time
        self.dirs: set = set()  # the directories walked (and watched)
        self.journal: set = set()
        self.trusted = False
        #: What the last scan did: walked the tree, or re-examined ``examined`` journaled names.
        self.walked = True
        self.examined = 0
        self.walks = 0
        self._closed = False
        #: consumer -> the paths touched since its last scan, None when not known
        self._pending: dict = {}
        self._max_watches = 0

    def close(self):
        """Stop watching; a later scan walks, and watches nothing."""
        with self._lock:
            self._closed = True
            self._stop()

    def _stop(self):
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -1
        self._wds = {}
        self.trusted = False

    def scan(self, tree, path="", patterns=(), server_only=(), max_size=None, consumer=None):
        """``(result, touched)``: the result as ``SyncTree.scan``'s, and None when the tree was
        walked, else ``{path: the entry before, or None}`` for each file it may have changed.

        Scans for several consumers (the Jupyter root's, for each server's sync) each also get
        what changed since their own last scan, in ``result["since_last"]``: ``{path: its entry
        now, or None}`` (a superset), or None when that is not known (a walk came between, a
        new consumer, too many changes)."""
        key = json.dumps([tree.root, path, list(patterns), list(server_only), max_size])
        with self._lock:
            touched = None
            if self._fd >= 0 and key == self._key and self._read(tree):
                touched = self._replay(tree, patterns, server_only, max_size)
            if touched is not None:
                self.walked = False
            else:
                self._walk(tree, key, path, patterns, server_only, max_size)
                self.walked, self.examined = True, 0
                self.walks += 1
            result = self._result()
            if consumer is not None:
                result["since_last"] = self._since_last(consumer, touched)
            return result, touched

    def _since_last(self, consumer, touched):
        pending = self._pending
        for other, paths in pending.items():
            if touched is None or paths is None:
                pending[other] = None
            else:
                paths.update(touched)
                if len(paths) > self.capacity:
                    pending[other] = None
        mine = pending.pop(consumer, None)
        pending[consumer] = set()
        while len(pending) > 64:  # consumers gone long ago (sessions closed)
            del pending[next(iter(pending))]
        return None if mine is None else {p: self.files.get(p) for p in mine}

    def _result(self):
        return {
            "files": list(self.files.values()),
            "skipped": list(self.skipped.values()),
            "pruned": [[p, reason] for p, reason in self.pruned.items()],
            # How it was answered (the sync's summary, tests): walked, or the journal's
            # names re-examined.
            "walked": self.walked,
            "examined": self.examined,
        }

    # --- the walk, and the watches it sets -------------------------------------------------

    def _walk(self, tree, key, path, patterns, server_only, max_size):
        self._stop()
        self.journal = set()
        self.dirs = set()
        self._key, self._scope, self._scope_id = key, path, None
        libc = None if self._closed else _sync_libc()
        watching = False
        if libc is not None:
            try:
                scope_fd = tree.dir_fd(sync_parts(path) if path else [])
                if _sync_local_fs(libc, scope_fd):
                    st = os.fstat(scope_fd)
                    self._scope_id = (st.st_dev, st.st_ino)
                    self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
                    watching = self._fd >= 0
            except (OSError, ValueError):
                watching = False
        self.trusted = watching
        self._max_watches = _sync_max_watches()
        try:
            result = tree.scan(
                path, patterns, server_only, max_size, self._add if watching else None
            )
        except BaseException:
            # A walk that did not finish is no base for a journal: the next scan walks again.
            self._stop()
            self._key = None
            raise
        self.files = {entry[0]: entry for entry in result["files"]}
        self.skipped = {entry[0]: entry for entry in result["skipped"]}
        self.pruned = {p: reason for p, reason in result["pruned"]}
        self.linked = set(result.get("linked") or ())
        if path not in self.dirs:
            self.trusted = False  # the scanned directory itself was not walked
        if not self.trusted:
            self._stop()

    def _add(self, fd, path):
        """Watch the directory ``fd`` (the walk's, at ``path``), before it is listed."""
        if not self.trusted:
            return
        if len(self._wds) >= self._max_watches:
            # Watches are the user's (fs.inotify.max_user_watches): leave the rest to their
            # other tools (editors, file browsers); this tree is walked instead.
            self.trusted = False
            return
        wd = _sync_libc().inotify_add_watch(
            self._fd, f"/proc/self/fd/{fd}".encode(), _SYNC_WATCH_MASK
        )
        # A failure (ENOSPC: the watch limit), or one directory under two names: no journal.
        if wd < 0 or self._wds.get(wd, path) != path:
            self.trusted = False
            return
        self._wds[wd] = path
        self.dirs.add(path)

    # --- the journal -----------------------------------------------------------------------

    def _read(self, tree):
        """Take in every event queued so far; whether the journal is still to be trusted."""
        while self.trusted:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                self.trusted = False
                break
            if not data:
                break
            self._events(data)
        if self.trusted:
            try:
                st = os.fstat(tree.dir_fd(sync_parts(self._scope) if self._scope else []))
                if (st.st_dev, st.st_ino) != self._scope_id:
                    self.trusted = False
            except (OSError, ValueError):
                self.trusted = False
        return self.trusted

    def _events(self, data):
        scope, journal = self._scope, self.journal
        offset = 0
        while offset + 16 <= len(data) and self.trusted:
            wd, mask, _cookie, size = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16 : offset + 16 + size].split(b"\0", 1)[0]
            offset += 16 + size
            if mask & (_IN_Q_OVERFLOW | _IN_UNMOUNT):
                self.trusted = False
                break
            directory = self._wds.get(wd)
            if mask & _IN_IGNORED:
                self._wds.pop(wd, None)
                if directory == scope:
                    self.trusted = False
                continue
            if directory is None:
                self.trusted = False  # an event no watch of ours explains
                break
            if not name:
                # About the directory itself: its parent's watch reports a move or a delete.
                if directory == scope and mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ATTRIB):
                    self.trusted = False
                elif mask & _IN_ATTRIB:
                    journal.add(directory)  # its permissions: walk it again
                continue
            if mask & _IN_ISDIR and mask & (_IN_MOVED_FROM | _IN_MOVED_TO):
                self.trusted = False  # a directory renamed: the paths of its watches are wrong
                break
            name = os.fsdecode(name)
            journal.add(f"{directory}/{name}" if directory else name)
            if len(journal) > self.capacity:
                self.trusted = False
        if not self.trusted:
            self.journal = set()

    def _replay(self, tree, patterns, server_only, max_size):
        """Bring the last walk's result up to date with the journal (see ``scan``); None when
        it cannot be (then the tree is walked)."""
        todo = self.journal | self.linked
        self.journal = set()
        excludes = SyncExcludes(patterns, server_only)
        depth0 = len(sync_parts(self._scope)) if self._scope else 0
        now = time.time_ns()
        touched: dict = {}
        for path in sorted(todo):
            if not self._examine(tree, path, excludes, max_size, now, depth0, touched):
                break
        else:
            if self.trusted:
                self.examined = len(todo)
                return touched
        # A walk instead: the files as they were answered last come back first, so that a
        # diff against them (the sync process's answer of changes) misses nothing.
        for path, old in touched.items():
            if old is None:
                self.files.pop(path, None)
            else:
                self.files[path] = old
        return None

    def _examine(self, tree, path, excludes, max_size, now, depth0, touched):
        """Look at ``path`` again, as the walk would have: False when only a walk will do."""
        directory, _, name = path.rpartition("/")
        if directory not in self.dirs:
            return True  # not walked: under a pruned directory, or gone (forgotten already)
        if name in ("pyvenv.cfg", "conda-meta"):
            # Whether its directory is an environment (left out whole) may have changed.
            if directory == self._scope:
                return False
            return self._examine(tree, directory, excludes, max_size, now, depth0, touched)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return False
        try:
            fd = tree.dir_fd(directory.split("/") if directory else [])
        except (FileNotFoundError, NotADirectoryError, ValueError):
            fd = None  # gone or replaced: its parent's journal says so too
        except OSError:
            return False
        if ".jcs-sync-" in name and SYNC_TEMP.match(name):
            if fd is None:
                return True
            try:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return True  # a sync's own temporary file, gone: nothing to see
            except OSError:
                pass
            return False  # still there: a walk cleans it up when stale
        self._forget(path, touched)
        if fd is None:
            return True
        try:
            entry = _SyncEntry(fd, name)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        result: dict = {"files": [], "skipped": [], "pruned": [], "linked": []}
        depth = (directory.count("/") + 1 if directory else 0) - depth0
        tree._walk_entry(fd, entry, path, excludes, max_size, now, result, depth, self._add)
        for entry in result["files"]:
            touched.setdefault(entry[0], None)
            self.files[entry[0]] = entry
        for entry in result["skipped"]:
            self.skipped[entry[0]] = entry
        for p, reason in result["pruned"]:
            self.pruned[p] = reason
        self.linked.update(result["linked"])
        return self.trusted

    def _forget(self, path, touched):
        """Drop what the walk knew of ``path``, and of everything below when it was a
        directory (recording in ``touched`` the files' entries before)."""
        old = self.files.pop(path, None)
        touched.setdefault(path, old)
        self.linked.discard(path)
        was_dir = path in self.dirs
        if (self.skipped.pop(path, None), self.pruned.pop(path, None)) == (None, None) and (
            not was_dir
        ):
            return
        inside = path + "/"
        for p in [p for p in self.files if p.startswith(inside)]:
            touched.setdefault(p, self.files.pop(p))
        for table in (self.skipped, self.pruned):
            for p in [p for p in table if p.startswith(inside)]:
                del table[p]
        self.linked = {p for p in self.linked if not p.startswith(inside)}
        self.dirs = {d for d in self.dirs if d != path and not d.startswith(inside)}


def _sync_environment(names):
    if "pyvenv.cfg" in names:
        return SYNC_PRUNED_VENV
    if "conda-meta" in names:
        return SYNC_PRUNED_CONDA
    return None


def _sync_error(e):
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def _sync_temp(name, suffix="tmp"):
    stem = name.encode("utf-8")[:200].decode("utf-8", "ignore")
    return f".{stem}.jcs-sync-{os.urandom(6).hex()}.{suffix}"


def _sync_check_same(st, expect):
    """After an operation that sets ctime: the rest must still be what the caller saw."""
    if [st.st_size, st.st_mtime_ns, st.st_ino] != list(expect)[:3]:
        raise SyncChanged("it changed on this side during the sync")


def _sync_written(st):
    """What the caller records about a file this side just wrote, renamed or chmodded. Its
    ctime is "now"; a later change of the same size would set a new mtime, so the signature
    can be trusted unless that mtime is itself recent."""
    return {
        "sig": _sync_sig(st),
        "mode": _sync_mode(st),
        "trusted": st.st_mtime_ns < time.time_ns() - SYNC_RACY_NS,
    }


def _sync_expect(fd, name, expect):
    """Raise SyncChanged unless ``name`` is what the caller saw (``expect``)."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        if expect is None:
            return None
        raise SyncChanged("it was deleted on this side during the sync") from None
    if expect is None:
        raise SyncChanged("it was created on this side during the sync")
    if not stat.S_ISREG(st.st_mode) or _sync_sig(st) != list(expect):
        raise SyncChanged("it changed on this side during the sync")
    return st


def _sync_renameat2():
    """Linux's renameat2, for RENAME_NOREPLACE in one system call (None elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        function.argtypes += [ctypes.c_uint]
        return function, ctypes.get_errno
    except (OSError, AttributeError):
        return None


_SYNC_RENAMEAT2 = _sync_renameat2()


def _sync_start_writeback():
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing a file out without
    waiting, so that the flush at the end of a sync has little left to do (None elsewhere)."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return lambda fd: function(fd, 0, 0, 2)
    except (OSError, AttributeError):
        return None


_SYNC_WRITEBACK = _sync_start_writeback()


def _sync_move_noreplace(fd, name, to, to_fd=None):
    """Rename ``name`` to ``to``, failing with SyncChanged if ``to`` exists: renameat2 with
    RENAME_NOREPLACE where the system and file system have it, else a hard link then an
    unlink (also atomic), else (no hard links either) a check then a rename."""
    to_fd = fd if to_fd is None else to_fd
    if _SYNC_RENAMEAT2 is not None:
        renameat2, get_errno = _SYNC_RENAMEAT2
        if renameat2(fd, os.fsencode(name), to_fd, os.fsencode(to), 1) == 0:
            return
        code = get_errno()
        if code == errno.EEXIST:
            raise SyncChanged("it was created on this side during the sync")
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), name)
    try:
        os.link(name, to, src_dir_fd=fd, dst_dir_fd=to_fd, follow_symlinks=False)
    except FileExistsError:
        raise SyncChanged("it was created on this side during the sync") from None
    except OSError as e:
        if e.errno not in _SYNC_NO_HARD_LINKS:
            raise
        try:
            os.stat(to, dir_fd=to_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(name, to, src_dir_fd=fd, dst_dir_fd=to_fd)
            return
        raise SyncChanged("it was created on this side during the sync") from None
    os.unlink(name, dir_fd=fd)


def _sync_set_aside(fd, name, expect):
    """Rename ``name`` to a temporary name if it is still ``expect`` (None: it must not exist)
    and answer that name; put it back and raise SyncChanged if it changed meanwhile."""
    st = _sync_expect(fd, name, expect)
    if st is None:
        return None
    aside = _sync_temp(name, "old")
    os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
    moved = os.stat(aside, dir_fd=fd, follow_symlinks=False)
    # A rename sets ctime; anything else about it must be as expected.
    if (moved.st_size, moved.st_mtime_ns, moved.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
        _sync_restore(fd, aside, name)
        raise SyncChanged("it changed on this side during the sync")
    return aside


def _sync_restore(fd, aside, name):
    """Put a file set aside back under its name, or, if that name was taken meanwhile, next to
    it as a visible copy: a user's file is never dropped."""
    try:
        _sync_move_noreplace(fd, aside, name)
    except SyncChanged:
        stem, _, ext = name.rpartition(".")
        kept = f"{stem} (kept {os.urandom(3).hex()}).{ext}" if stem else f"{name} (kept)"
        _sync_move_noreplace(fd, aside, kept)


class _SyncRead:
    """Reads one file of the tree; ``finish`` tells whether it stayed the same while read, and
    its hash (unless ``digest`` is False: a copy is hashed by its writer, once)."""

    def __init__(self, tree, path, digest=True):
        fd, name, _ = tree._parent(path)
        self.since = time.time_ns()
        self.fd = os.open(name, _SYNC_READ_FLAGS, dir_fd=fd)
        try:
            self.before = os.fstat(self.fd)
            if not stat.S_ISREG(self.before.st_mode):
                raise SyncChanged("it is no longer a regular file")
        except BaseException:
            os.close(self.fd)
            raise
        self.size = self.before.st_size
        self.mode = _sync_mode(self.before)
        self.mtime_ns = self.before.st_mtime_ns
        self.done = 0
        self.digest = hashlib.sha256() if digest else None

    def read(self, n):
        """Up to ``n`` bytes; b"" at the end (reading stops at the size it had when opened)."""
        n = min(n, self.size - self.done)
        if n <= 0:
            return b""
        data = os.read(self.fd, n)
        self.done += len(data)
        if self.digest is not None:
            self.digest.update(data)
        return data

    def read_all(self):
        """The whole file (as large as it was when opened, or less if it shrank meanwhile,
        which ``finish`` then reports)."""
        data = self.read(self.size)
        while len(data) < self.size:
            more = self.read(self.size - len(data))
            if not more:
                break
            data += more
        return data

    def finish(self):
        """``{"hash", "sig", "mode", "trusted"}``; SyncChanged if it changed while read."""
        after = os.fstat(self.fd)
        if self.done != self.size or _sync_sig(after) != _sync_sig(self.before):
            raise SyncChanged("it changed while it was being read")
        answer = {
            "sig": _sync_sig(after),
            "mode": _sync_mode(after),
            "trusted": after.st_ctime_ns < self.since - SYNC_RACY_NS,
        }
        if self.digest is not None:
            answer["hash"] = self.digest.hexdigest()
        return answer

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _SyncWrite:
    """Writes one file: a temporary file in the target's directory, put in place by finish()."""

    def __init__(self, tree, path, expect, size, mode, mtime_ns):
        if not isinstance(size, int) or size < 0 or not isinstance(mtime_ns, int):
            raise ValueError("invalid size or mtime")
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ValueError("invalid mode")
        self.tree = tree
        self.dir_fd, self.name, self.parts = tree._parent(path, create=True)
        self.expect = expect
        self.size, self.mode, self.mtime_ns = size, mode, mtime_ns
        self.tmp = _sync_temp(self.name)
        # Created with its final mode when the umask leaves that alone (else fchmod'ed).
        self.chmod = bool(mode & _SYNC_UMASK)
        self.fd = os.open(
            self.tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600 if self.chmod else mode,
            dir_fd=self.dir_fd,
        )
        self.done = 0
        self.digest = hashlib.sha256()

    def write(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.done += len(data)
        self.digest.update(data)

    def abort(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            self.tmp = ""

    def finish(self, source_hash=None):
        """Put the file in place if it is complete (and its hash is ``source_hash``, when
        given): ``{"hash", "sig", "mode", "trusted"}``."""
        try:
            digest = self.digest.hexdigest()
            if self.done != self.size:
                raise SyncChanged(f"only {self.done} of {self.size} bytes arrived")
            if source_hash is not None and source_hash != digest:
                raise SyncChanged("what arrived is not what was sent")
            if self.chmod:
                os.fchmod(self.fd, self.mode)
            os.utime(self.fd, ns=(self.mtime_ns, self.mtime_ns))
            if self.size >= SYNC_CHUNK and _SYNC_WRITEBACK is not None:
                _SYNC_WRITEBACK(self.fd)
            written = os.fstat(self.fd)
            os.close(self.fd)
            self.fd = -1
            # A new file needs no check first: putting it in place fails if one appeared.
            aside = None
            if self.expect is not None:
                aside = _sync_set_aside(self.dir_fd, self.name, self.expect)
            try:
                _sync_move_noreplace(self.dir_fd, self.tmp, self.name)
            except BaseException:
                if aside is not None:
                    _sync_restore(self.dir_fd, aside, self.name)
                raise
            self.tmp = ""
            if aside is not None:
                os.unlink(aside, dir_fd=self.dir_fd)
            self.tree._changed(self.parts[:-1], self.name)
            self.tree._changed(self.parts[:-1])
        except BaseException:
            self.abort()
            raise
        st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        _sync_check_same(st, [written.st_size, written.st_mtime_ns, written.st_ino])
        return dict(_sync_written(st), hash=digest)


# --- sync: the session process -------------------------------------------------------------


class _SyncChannel:
    """Framed messages in from a buffered binary reader, out to a file descriptor (see the
    protocol above). Answers are buffered and written out whenever no request is waiting to be
    read. (The reader is stdin's own buffer: the bootstrap read the agent's source through it,
    and it may hold the first requests already.)"""

    def __init__(self, reader, wfd):
        self.reader, self.wfd = reader, wfd
        self.buf = bytearray()
        self.pos = 0
        self.out = bytearray()

    def _fill(self):
        if self.out and not select.select([self.reader], [], [], 0)[0]:
            self.flush()
        data = self.reader.read1(SYNC_CHUNK)
        if not data:
            raise EOFError
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def read_message(self):
        """The next message's JSON line as a dict; None at the end of input."""
        while True:
            end = self.buf.find(b"\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos : end])
                self.pos = end + 1
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a message must be a JSON object")
                return message
            try:
                self._fill()
            except EOFError:
                return None

    def read_some(self, n):
        """Up to ``n`` payload bytes (at least one)."""
        if self.pos >= len(self.buf):
            self._fill()
        chunk = bytes(self.buf[self.pos : self.pos + n])
        self.pos += len(chunk)
        return chunk

    def read_exact(self, n):
        """Exactly ``n`` payload bytes (EOFError if the input ends first)."""
        out = bytearray()
        while len(out) < n:
            if self.pos >= len(self.buf):
                self._fill()
            take = min(n - len(out), len(self.buf) - self.pos)
            out += self.buf[self.pos : self.pos + take]
            self.pos += take
        return out

    def send(self, message, payload=b""):
        self.out += json.dumps(message, separators=(",", ":")).encode() + b"\n"
        self.send_raw(payload)

    def send_raw(self, data):
        self.out += data
        if len(self.out) >= SYNC_CHUNK:
            self.flush()

    def flush(self):
        view = memoryview(self.out)
        while view:
            view = view[os.write(self.wfd, view) :]
        self.out = bytearray()


def _sync_failure(e):
    return {"ok": False, "error": _sync_error(e), "changed": isinstance(e, SyncChanged)}


def _sync_serve_put(tree, request, channel):
    size = request.get("size")
    if not isinstance(size, int) or size < 0:
        raise EOFError  # the framing is lost: end the session
    writer = None
    error: Exception | None = None
    try:
        writer = tree.open_write(
            request.get("path"),
            request.get("expect"),
            size,
            request.get("mode"),
            request.get("mtime_ns"),
        )
    except Exception as e:
        error = e
    remaining = size
    try:
        while remaining:
            chunk = channel.read_some(min(remaining, SYNC_CHUNK))
            remaining -= len(chunk)
            if writer is not None:
                try:
                    writer.write(chunk)
                except Exception as e:
                    writer.abort()
                    writer, error = None, e
        trailer = channel.read_message()
        if trailer is None:
            raise EOFError
    except BaseException:
        # The client went away mid-file: no temporary file stays behind.
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        if trailer.get("ok"):
            try:
                channel.send(dict(writer.finish(trailer.get("hash")), ok=True))
                return
            except Exception as e:
                error = e
        else:
            writer.abort()
            error = SyncChanged(str(trailer.get("error") or "the source changed"))
    channel.send(_sync_failure(error))


def _sync_serve_puts(tree, request, channel):
    """Many small files in one request, so that each costs no message of its own (parsing and
    answering one is most of a small file's Python here): ``{"op": "puts", "files": [[path,
    size, mode, mtime_ns, expect], ...], "size": total}`` and then ``total`` bytes, the files'
    contents one after the other (each read whole and checked unchanged by the sender). Each
    file is written as a put writes it (a temporary file, put in place only if the target is
    still ``expect``); one answer, ``{"ok": true, "size": n}`` and ``n`` bytes: a JSON list of
    each file's result (a put's answer) in order. A file that fails leaves the others alone."""
    size = request.get("size")
    if not isinstance(size, int) or size < 0:
        raise EOFError  # the framing is lost: end the session
    data = memoryview(channel.read_exact(size))
    files = request.get("files")
    well_formed = isinstance(files, list) and all(
        isinstance(f, list) and len(f) == 5 and type(f[1]) is int and f[1] >= 0 for f in files
    )
    if tree is None:
        channel.send(_sync_failure(ValueError("no tree is open")))
        return
    if not files or not well_formed or sum(f[1] for f in files) != size:
        channel.send(_sync_failure(ValueError("invalid list of files")))
        return
    results = []
    offset = 0
    for path, n, mode, mtime_ns, expect in files:
        content = data[offset : offset + n]
        offset += n
        try:
            writer = tree.open_write(path, expect, n, mode, mtime_ns)
            try:
                writer.write(content)
            except BaseException:
                writer.abort()
                raise
            results.append(dict(writer.finish(), ok=True))
        except Exception as e:
            results.append(_sync_failure(e))
    payload = json.dumps(results, separators=(",", ":")).encode()
    channel.send({"ok": True, "size": len(payload)}, payload)


def _sync_serve_get(tree, request, channel):
    try:
        reader = tree.open_read(request.get("path"), digest=False)
    except Exception as e:
        channel.send(_sync_failure(e))
        return
    try:
        size = reader.size
        channel.send({"ok": True, "size": size, "mode": reader.mode, "mtime_ns": reader.mtime_ns})
        sent = 0
        error: Exception | None = None
        while sent < size:
            try:
                chunk = reader.read(min(SYNC_CHUNK, size - sent))
            except OSError as e:
                chunk, error = b"", e
            if not chunk:
                # The promised size must still arrive: pad, and say it is not good.
                error = error or SyncChanged("it shrank while it was being read")
                while sent < size:
                    pad = min(SYNC_CHUNK, size - sent)
                    channel.send_raw(bytes(pad))
                    sent += pad
                break
            channel.send_raw(chunk)
            sent += len(chunk)
        if error is None:
            try:
                channel.send(dict(reader.finish(), ok=True))
                return
            except (OSError, SyncChanged) as e:
                error = e
        channel.send(_sync_failure(error))
    finally:
        reader.close()


def _sync_serve_gets(tree, request, channel):
    """Many small files out in one answer, as ``puts`` brings them in: ``{"op": "gets",
    "paths": [path, ...]}`` is answered ``{"ok": true, "size": n, "index": k}`` and ``n``
    bytes: ``k`` bytes of a JSON list of each file's result in the order asked (a get's
    trailer with its "size", "mode" and "mtime_ns", or a failure), then the contents of the
    files that were read, one after the other. Each file is read whole and checked unchanged
    while read; one larger than SYNC_SMALL (it grew since the scan) fails and syncs next time.
    A file that fails leaves the others alone."""
    paths = request.get("paths")
    if tree is None:
        channel.send(_sync_failure(ValueError("no tree is open")))
        return
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        channel.send(_sync_failure(ValueError("invalid list of files")))
        return
    results = []
    data = []
    for path in paths:
        try:
            reader = tree.open_read(path, digest=False)
        except Exception as e:
            results.append(_sync_failure(e))
            continue
        try:
            if reader.size > SYNC_SMALL:
                raise SyncChanged("it changed on this side during the sync")
            content = reader.read_all()
            result = reader.finish()
        except Exception as e:
            results.append(_sync_failure(e))
            continue
        finally:
            reader.close()
        result.update(ok=True, size=reader.size, mtime_ns=reader.mtime_ns)
        results.append(result)
        data.append(content)
    index = json.dumps(results, separators=(",", ":")).encode()
    data.insert(0, index)
    payload = b"".join(data)
    channel.send({"ok": True, "size": len(payload), "index": len(index)}, payload)


#: The requests that move files' contents, each served by its own function.
_SYNC_TRANSFERS = {
    "put": _sync_serve_put,
    "get": _sync_serve_get,
    "puts": _sync_serve_puts,
    "gets": _sync_serve_gets,
}


def _sync_scan_answer(tree, request, last):
    """A scan, whole, or as the changes since the scan answered last (when the client says it
    has that one, by its token, and asks with the same parameters). The tree is walked only
    when the journal cannot say what changed since the last walk (see ``SyncWatch``)."""
    key = json.dumps(
        [request.get(k) for k in ("path", "excludes", "server_only", "max_size")], sort_keys=True
    )
    watch = last.get("watch")
    if watch is None:
        watch = last["watch"] = SyncWatch()
    previous = last.get("files")
    result, touched = watch.scan(
        tree,
        request.get("path") or "",
        request.get("excludes") or (),
        request.get("server_only") or (),
        request.get("max_size"),
    )
    files = watch.files
    token = os.urandom(8).hex()
    since = request.get("since")
    if since and last.get("token") == since and last.get("key") == key and previous is not None:
        result["since"] = since
        if touched is not None and previous is files:
            # Amended in place from the journal: only the touched paths can differ.
            result["changed"] = [
                files[p] for p, old in touched.items() if p in files and files[p] != old
            ]
            result["removed"] = [
                p for p, old in touched.items() if old is not None and p not in files
            ]
        else:
            result["changed"] = [e for p, e in files.items() if previous.get(p) != e]
            result["removed"] = [p for p in previous if p not in files]
        del result["files"]
    last.update(token=token, key=key, files=files)
    result["token"] = token
    return result


def _sync_payload(result):
    """A large answer as JSON lines, so that the client parses it a line at a time: a head
    with the other fields and ``"lists": {name: count}``, then ``[name, [entries...]]`` lines
    of about 256 KiB at most."""
    lists = {k: v for k, v in result.items() if isinstance(v, list)}
    head = {k: v for k, v in result.items() if k not in lists}
    head["lists"] = {k: len(v) for k, v in lists.items()}
    out = [json.dumps(head, separators=(",", ":")).encode()]

    def add(name, entries):
        line = json.dumps([name, entries], separators=(",", ":")).encode()
        if len(line) > 1 << 18 and len(entries) > 1:
            half = len(entries) // 2
            add(name, entries[:half])
            add(name, entries[half:])
        else:
            out.append(line)

    for name, entries in lists.items():
        for i in range(0, len(entries), 1000):
            add(name, entries[i : i + 1000])
    return b"\n".join(out) + b"\n"


def sync_session(reader, wfd):
    """Serve one sync client (requests from ``reader``, answers to ``wfd``) until it closes
    its end."""
    channel = _SyncChannel(reader, wfd)
    tree = None
    last_scan: dict = {}  # what the last scan answered, for the next one to send only changes
    try:
        while True:
            request = channel.read_message()
            if request is None:
                break
            op = request.get("op")
            try:
                transfer = _SYNC_TRANSFERS.get(op)
                if transfer is not None:
                    transfer(tree, request, channel)
                    continue
                if op == "open":
                    if tree is not None:
                        tree.close()
                        tree = None
                    tree = SyncTree(request.get("root") or "~", create=True)
                    answer = {"root": tree.root, "pid": os.getpid()}
                    if request.get("marker"):
                        answer["tree_id"] = tree.tree_id()
                    # The last scan stays the base of the next one's changes only for the
                    # same tree (path and identity): every sync opens the tree again.
                    opened = (tree.root, answer.get("tree_id"))
                    if last_scan.get("tree") != opened:
                        if "watch" in last_scan:
                            last_scan["watch"].close()
                        last_scan.clear()
                        last_scan["tree"] = opened
                elif tree is None:
                    raise ValueError("no tree is open")
                elif op in ("scan", "hash"):
                    if op == "scan":
                        result = _sync_scan_answer(tree, request, last_scan)
                    else:
                        hashes = tree.hash(list(request.get("paths") or ()))
                        result = {"hashes": [[p, h] for p, h in hashes.items()]}
                    payload = _sync_payload(result)
                    channel.send({"ok": True, "size": len(payload)}, payload)
                    continue
                elif op == "delete":
                    answer = tree.delete(request.get("path"), request.get("expect"))
                elif op == "chmod":
                    answer = tree.chmod(
                        request.get("path"), request.get("mode"), request.get("expect")
                    )
                elif op == "rename":
                    answer = tree.rename(
                        request.get("path"), request.get("to"), request.get("expect")
                    )
                elif op == "flush":
                    answer = tree.flush()
                else:
                    raise ValueError(f"unknown operation {op!r}")
                channel.send(dict(answer, ok=True))
            except EOFError:
                raise
            except Exception as e:
                channel.send(_sync_failure(e))
    except EOFError:
        pass
    finally:
        with contextlib.suppress(OSError):
            channel.flush()
        if tree is not None:
            tree.close()
        if "watch" in last_scan:
            last_scan["watch"].close()


if __name__ == "__main__":  # file sync's own process on the server
    sync_session(sys.stdin.buffer, sys.stdout.fileno())
