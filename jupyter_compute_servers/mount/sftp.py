"""An SFTP server confined to one tree of the Jupyter root, run over any byte stream (the
stdin/stdout of the server's ``sshfs -o passive`` on an exec channel).

The compute server is untrusted: every path it sends is mapped into the tree (``..`` stops at
the tree's top, an absolute path is taken from the tree's top) and then resolved here with
``os.path.realpath``; whatever resolves outside the tree is refused with "permission denied".
So a link in the tree that points outside is never followed (reading it as a link, ``lstat``,
and removing it are allowed; ``readlink`` is refused, since its target names a place outside),
no link may be made that points outside, and a rename cannot move a link somewhere from which
its relative target leaves the tree (it is refused). asyncssh's handler serves one request at a
time, so nothing the client sends can change the tree between a check and the use of its
result. Every request but a read runs on a thread (path checks included: realpath reads the
disk), so a slow disk does not stall the event loop on metadata; a read is one ``pread`` of at
most ``MAX_READ`` bytes, inline (a thread hop per chunk halved the throughput).
"""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import asyncssh
from asyncssh.sftp import SFTPAttrs, SFTPName

T = TypeVar("T")

#: The most bytes one read request gets (sshfs asks for 64 KiB at a time by default).
MAX_READ = 256 * 1024

_WRITE_FLAGS = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC


class Refused(asyncssh.SFTPPermissionDenied):
    pass


def _os_error(e: OSError) -> asyncssh.SFTPError:
    """An OSError as the SFTP status sshfs turns back into the same errno."""
    if e.errno == errno.ENOENT:
        return asyncssh.SFTPNoSuchFile(e.strerror or "No such file")
    if e.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
        return asyncssh.SFTPPermissionDenied(e.strerror or "Permission denied")
    if e.errno == errno.EEXIST:
        return asyncssh.SFTPFileAlreadyExists(e.strerror or "File exists")
    if e.errno == errno.ENOTEMPTY:
        return asyncssh.SFTPDirNotEmpty(e.strerror or "Directory not empty")
    if e.errno == errno.ENOTDIR:
        return asyncssh.SFTPNotADirectory(e.strerror or "Not a directory")
    if e.errno == errno.EISDIR:
        return asyncssh.SFTPFileIsADirectory(e.strerror or "Is a directory")
    if e.errno == errno.ENOSPC:
        return asyncssh.SFTPNoSpaceOnFilesystem(e.strerror or "No space left")
    return asyncssh.SFTPFailure(e.strerror or str(e))


class _Handle:
    """An open file (asyncssh tests handles for truth, and a descriptor may be 0)."""

    def __init__(self, fd: int, local: bytes) -> None:
        self.fd = fd
        self.local = local


def _fd(file_obj: object) -> int:
    assert isinstance(file_obj, _Handle)
    return file_obj.fd


class ConfinedSFTPServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server with every path checked against ``root`` (an absolute,
    resolved directory) and, when ``read_only``, every change refused. ``held`` (a local
    path: bool) names paths the server may read but never change, because a change there
    could run code on the Jupyter host (file sync's hold-back rule: dotfiles, ``bin/``...)."""

    def __init__(
        self,
        chan: Any,
        root: str,
        *,
        read_only: bool = False,
        held: Callable[[bytes], bool] | None = None,
    ) -> None:
        super().__init__(chan)
        self.root = os.fsencode(os.path.realpath(root))
        self.read_only = read_only
        self.held = held

    # --- paths ------------------------------------------------------------------------------

    def _inside(self, local: bytes) -> bool:
        return local == self.root or local.startswith(self.root + b"/")

    def map_path(self, path: bytes) -> bytes:
        """The client's path inside the tree, lexically (``..`` cannot climb above the top)."""
        if b"\0" in path:
            raise Refused("NUL in a path")
        normal = posixpath.normpath(posixpath.join(b"/", path)).lstrip(b"/")
        return posixpath.join(self.root, normal) if normal else self.root

    def reverse_map_path(self, path: bytes) -> bytes:
        if path == self.root:
            return b"/"
        if path.startswith(self.root + b"/"):
            return path[len(self.root) :]
        raise Refused("outside the mounted tree")

    def resolve(self, path: bytes) -> bytes:
        """The local path, every link followed, refused if it leaves the tree."""
        local = os.path.realpath(self.map_path(path))
        if not self._inside(local):
            raise Refused("the path leads outside the mounted tree")
        return local

    def resolve_entry(self, path: bytes) -> bytes:
        """The local path of the entry itself (a link is not followed): its directory
        resolved and refused if outside, the last component kept."""
        mapped = self.map_path(path)
        if mapped == self.root:
            return self.root
        parent, name = posixpath.split(mapped)
        local_parent = os.path.realpath(parent)
        if not self._inside(local_parent):
            raise Refused("the path leads outside the mounted tree")
        return posixpath.join(local_parent, name)

    def _writable(self) -> None:
        if self.read_only:
            raise Refused("the mount is read-only")

    def _guard(self, local: bytes) -> None:
        """Refuse a change at a path that could run code on the Jupyter host."""
        if self.held is not None and local != self.root and self.held(local):
            raise Refused(
                "this path could run code on the Jupyter host (a dotfile, bin/, a Jupyter or "
                "Python start-up file): changes are allowed only by name in the server's sync "
                "settings (pull_executable_config)"
            )

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as e:
            raise _os_error(e) from None

    # --- files --------------------------------------------------------------------------------
    # Each request but a read runs wholly on a thread (path checks included).

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        return _Handle(*await self._io(self._open, path, pflags, attrs))

    def _open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> tuple[int, bytes]:
        if pflags & _WRITE_FLAGS:
            self._writable()
        local = self.resolve(path)
        if pflags & _WRITE_FLAGS:
            self._guard(local)
        if local == self.root:
            raise asyncssh.SFTPFileIsADirectory("Is a directory")
        if pflags & asyncssh.FXF_READ and pflags & asyncssh.FXF_WRITE:
            flags = os.O_RDWR
        elif pflags & asyncssh.FXF_WRITE:
            flags = os.O_WRONLY
        else:
            flags = os.O_RDONLY
        for bit, flag in (
            (asyncssh.FXF_APPEND, os.O_APPEND),
            (asyncssh.FXF_CREAT, os.O_CREAT),
            (asyncssh.FXF_TRUNC, os.O_TRUNC),
            (asyncssh.FXF_EXCL, os.O_EXCL),
        ):
            if pflags & bit:
                flags |= flag
        perms = 0o666 if attrs.permissions is None else attrs.permissions & 0o7777
        # O_NOFOLLOW: the resolved path has no link left; one appearing now is refused.
        return os.open(local, flags | os.O_NOFOLLOW | os.O_CLOEXEC, perms), local

    async def open56(self, *args: Any) -> object:
        raise asyncssh.SFTPOpUnsupported("SFTP v5/v6 opens are not served")

    async def close(self, file_obj: object) -> None:
        await self._io(os.close, _fd(file_obj))

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        # Inline, not on a thread: a chunk of at most MAX_READ bytes (sshfs asks for 64 KiB)
        # costs microseconds from the page cache, while a thread hop per chunk halved the
        # throughput (benchmarks/mount.py); the handler serves one request at a time anyway.
        try:
            return os.pread(_fd(file_obj), min(size, MAX_READ), offset)
        except OSError as e:
            raise _os_error(e) from None

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        self._writable()
        return await self._io(os.pwrite, _fd(file_obj), data, offset)

    async def fstat(self, file_obj: object) -> os.stat_result:
        return await self._io(os.fstat, _fd(file_obj))

    async def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        self._writable()
        assert isinstance(file_obj, _Handle)
        self._guard(file_obj.local)
        await self._io(_setstat, _fd(file_obj), attrs)

    async def fsync(self, file_obj: object) -> None:
        await self._io(os.fsync, _fd(file_obj))

    async def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        return await self._io(os.fstatvfs, _fd(file_obj))

    async def lock(self, *args: Any) -> None:
        raise asyncssh.SFTPOpUnsupported("locks are not served")

    async def unlock(self, *args: Any) -> None:
        raise asyncssh.SFTPOpUnsupported("locks are not served")

    # --- metadata -----------------------------------------------------------------------------

    async def stat(self, path: bytes) -> os.stat_result:
        return await self._io(lambda: os.stat(self.resolve(path)))

    async def lstat(self, path: bytes) -> os.stat_result:
        return await self._io(lambda: os.lstat(self.resolve_entry(path)))

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable()
        await self._io(self._setstat, path, attrs)

    def _setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        local = self.resolve(path)
        self._guard(local)
        _setstat(local, attrs)

    async def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable()
        await self._io(self._lsetstat, path, attrs)

    def _lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        local = self.resolve_entry(path)
        if os.path.islink(local):
            raise Refused("the attributes of a link are not changed")
        self._guard(local)
        _setstat(local, attrs)

    async def statvfs(self, path: bytes) -> os.statvfs_result:
        return await self._io(lambda: os.statvfs(self.resolve(path)))

    async def realpath(self, path: bytes) -> bytes:
        return self.reverse_map_path(await self._io(self.resolve, path))

    async def readlink(self, path: bytes) -> bytes:
        return await self._io(self._readlink, path)

    def _readlink(self, path: bytes) -> bytes:
        local = self.resolve_entry(path)
        target = os.readlink(local)
        # Only a link that stays inside is shown, as the client would name its target.
        where = os.path.realpath(posixpath.join(posixpath.dirname(local), target))
        if not self._inside(where):
            raise Refused("the link points outside the mounted tree")
        if posixpath.isabs(target):
            return self.reverse_map_path(where)
        return target

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        entries = await self._io(lambda: _listdir(self.resolve(path)))
        for name, st in entries:
            yield SFTPName(name, attrs=SFTPAttrs.from_local(st))

    # --- changes ------------------------------------------------------------------------------

    async def remove(self, path: bytes) -> None:
        self._writable()
        await self._io(lambda: os.remove(self._changeable(path)))

    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        self._writable()
        mode = 0o777 if attrs.permissions is None else attrs.permissions & 0o7777
        await self._io(lambda: os.mkdir(self._changeable(path), mode))

    async def rmdir(self, path: bytes) -> None:
        self._writable()
        await self._io(lambda: os.rmdir(self._changeable(path)))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        await self._io(self._rename, oldpath, newpath, False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        await self._io(self._rename, oldpath, newpath, True)

    def _rename(self, oldpath: bytes, newpath: bytes, replace: bool) -> None:
        old, new = self._changeable(oldpath), self._changeable(newpath)
        self._check_links_moved(old, new)
        if not replace and os.path.lexists(new):
            raise asyncssh.SFTPFileAlreadyExists("File already exists")
        os.rename(old, new)

    def _check_links_moved(self, old: bytes, new: bytes) -> None:
        """A relative link that is inside at its place may lead out from another: refuse a
        rename that would make any link under ``old`` point outside."""
        links = [old] if os.path.islink(old) else []
        if not links and os.path.isdir(old):
            for top, dirs, files in os.walk(old):
                links += [posixpath.join(top, n) for n in dirs + files]
            links = [p for p in links if os.path.islink(p)]
        for link in links:
            moved = new + link[len(old) :]
            target = os.readlink(link)
            where = os.path.realpath(posixpath.join(posixpath.dirname(moved), target))
            if posixpath.isabs(target) or not self._inside(where):
                raise Refused("a link moved there would point outside the mounted tree")

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        await self._io(self._symlink, oldpath, newpath)

    def _symlink(self, oldpath: bytes, newpath: bytes) -> None:
        local = self._changeable(newpath)
        # Only relative targets that resolve inside: an absolute one means a place on the
        # server's machine to the server, and a place here to us.
        if posixpath.isabs(oldpath) or b"\0" in oldpath:
            raise Refused("a link must be relative and stay inside the mounted tree")
        where = os.path.realpath(posixpath.join(posixpath.dirname(local), oldpath))
        if not self._inside(where):
            raise Refused("a link must be relative and stay inside the mounted tree")
        os.symlink(oldpath, local)

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        self._writable()
        await self._io(self._link, oldpath, newpath)

    def _link(self, oldpath: bytes, newpath: bytes) -> None:
        source = self.resolve_entry(oldpath)
        if os.path.islink(source):
            raise Refused("hard links to links are not made")
        os.link(source, self._changeable(newpath), follow_symlinks=False)

    def _changeable(self, path: bytes) -> bytes:
        local = self.resolve_entry(path)
        if local == self.root:
            raise Refused("the mounted tree's top cannot be changed")
        self._guard(local)
        return local


def _listdir(local: bytes) -> list[tuple[bytes, os.stat_result]]:
    out = [(b".", os.stat(local)), (b"..", os.stat(local))]
    with os.scandir(local) as entries:
        for entry in entries:
            try:
                out.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    return out


def _setstat(target: bytes | int, attrs: SFTPAttrs) -> None:
    if attrs.size is not None:
        os.truncate(target, attrs.size)
    if attrs.permissions is not None:
        os.chmod(target, attrs.permissions & 0o7777)
    if attrs.atime is not None and attrs.mtime is not None:
        atime_ns = attrs.atime * 1_000_000_000 + (attrs.atime_ns or 0)
        mtime_ns = attrs.mtime * 1_000_000_000 + (attrs.mtime_ns or 0)
        os.utime(target, ns=(atime_ns, mtime_ns))
    # uid/gid changes are ignored: the files stay the Jupyter user's.


async def serve(
    reader: asyncssh.SSHReader[bytes],
    writer: asyncssh.SSHWriter[bytes],
    channel: Any,
    root: str,
    *,
    read_only: bool = False,
    held: Callable[[bytes], bool] | None = None,
) -> None:
    """Serve SFTP for ``root`` on a byte stream until the client goes away."""
    from asyncssh.sftp import SFTPServerHandler

    server = ConfinedSFTPServer(channel, root, read_only=read_only, held=held)
    handler = SFTPServerHandler(server, reader, writer, 3)
    # sshfs sends a symlink's target first, as OpenSSH's sftp-server expects (asyncssh finds
    # that out from the SSH client's version, which here is our own).
    handler._nonstandard_symlink = True
    await handler.run()
