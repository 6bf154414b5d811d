"""``MountService``: a tree of the Jupyter root mounted on a running compute server.

The server runs ``sshfs -o passive`` (``slave`` on sshfs 2) on an exec channel of its one SSH
connection, behind a small relay of the RPC agent (``rpc_agent.py --mount-relay``); this end
serves SFTP on that channel, confined to the tree (``sftp.py``). No login, port or key is
added. Before mounting, the agent checks that sshfs, /dev/fuse and fusermount are there.

A mount follows its connection: when the channel ends without an unmount (the connection
dropped), the relay kills sshfs so that the mount point stays a dead mount whose every access
fails ("Transport endpoint is not connected") rather than an empty directory, and this service
mounts again as soon as the server answers (state ``remounting`` meanwhile). Stopping the
server, and Jupyter's shutdown, unmount first. Each change of state is published as a
``mount`` event and shows in the server's JSON (``mount``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncssh

from ..agent import RPC_AGENT_SOURCE, agent_command
from ..errors import (
    CloudError,
    ComputeServersError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from ..models import State
from ..ssh import quote_command
from ..sync.holdback import HoldBack
from .sftp import serve
from .workspace import MountRequest, Workspace

if TYPE_CHECKING:
    from ..manager import ComputeServerManager, ServerAgent

log = logging.getLogger(__name__)

#: sshfs's caches, short enough that a file saved in the Lab is seen on the server within
#: about a second: sshfs keeps directory listings (with their entries' attributes) for 1 s, the
#: kernel keeps attributes and names for half a second, no negative entries. Without sshfs's
#: own cache (``cache=no``) every ``stat`` after a listing is one more round trip: listing
#: 2,000 files took 2.7x as long (``benchmarks/mount.py --sshfs-options``). The page cache
#: stays on and is dropped at each open (sshfs's default), so a saved file is read afresh and
#: large reads stream.
SSHFS_OPTIONS = "dcache_timeout=1,attr_timeout=0.5,entry_timeout=0.5,negative_timeout=0"


class MountError(CloudError):
    """A mount could not be made on the server (the message says why and what to do)."""


@dataclass
class Mount:
    """One server's mount: what was asked, where it is, and how it is now."""

    request: MountRequest
    #: mounting, mounted, remounting, failed
    state: str = "mounting"
    reason: str = ""
    #: The mount point on the server (absolute), once known.
    remote_path: str = ""
    since: float = field(default_factory=time.time)
    process: asyncssh.SSHClientProcess[bytes] | None = None
    serving: asyncio.Task[None] | None = None
    watch: asyncio.Task[None] | None = None
    #: Set when the user (or a stop) asked for the unmount: no remount then.
    ending: bool = False
    #: Made for the server's workspace setting (``mounted``/``both``), not by the Mount button.
    automatic: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            **self.request.to_json(),
            "state": self.state,
            "reason": self.reason,
            "remote_path": self.remote_path,
            "since": self.since,
        }


class MountService:
    def __init__(
        self,
        manager: ComputeServerManager,
        root_dir: str,
        *,
        mount_timeout: float = 20,
        retry_interval: float = 1.0,
    ) -> None:
        self.manager = manager
        self.root_dir = os.path.realpath(root_dir)
        self.mount_timeout = mount_timeout
        self.retry_interval = retry_interval
        self._mounts: dict[int, Mount] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        #: The workspace setting last applied to each server, and the task applying it.
        self._applied: dict[int, Workspace] = {}
        self._applying: dict[int, asyncio.Task[None]] = {}

    # --- what others read -------------------------------------------------------------------

    def state(self, server_id: int) -> dict[str, Any] | None:
        mount = self._mounts.get(server_id)
        return mount.to_json() if mount else None

    def server_only(self, server_id: int) -> tuple[str, ...]:
        """The mount point, which file sync must never enter (it is the Jupyter root again)."""
        mount = self._mounts.get(server_id)
        return (mount.request.mount_point,) if mount else ()

    def kernel_directory(self, server_id: int, relative: str) -> str | None:
        """Where a kernel whose notebook is in ``relative`` (of the Jupyter root) starts: in
        the mounted tree when the mount holds that directory and is mounted, else None."""
        mount = self._mounts.get(server_id)
        if mount is None or mount.state != "mounted":
            return None
        base, relative = mount.request.path, relative.strip("/")
        if base and relative != base and not relative.startswith(base + "/"):
            return None
        inside = relative[len(base) :].strip("/") if base else relative
        return f"{mount.request.mount_point}/{inside}" if inside else mount.request.mount_point

    def _lock(self, server_id: int) -> asyncio.Lock:
        return self._locks.setdefault(server_id, asyncio.Lock())

    def _set(self, server_id: int, mount: Mount, state: str, reason: str = "") -> None:
        mount.state, mount.reason, mount.since = state, reason, time.time()
        self.manager.notify("mount", server_id, mount=mount.to_json())

    # --- mount and unmount ------------------------------------------------------------------

    def local_tree(self, request: MountRequest) -> str:
        local = os.path.realpath(os.path.join(self.root_dir, request.path))
        if not (local == self.root_dir or local.startswith(self.root_dir + os.sep)):
            raise ValidationError("path leads outside the Jupyter root", field="path")
        if not os.path.isdir(local):
            raise ValidationError(
                f"path {request.path!r} is not a directory of the Jupyter root", field="path"
            )
        return local

    async def mount(
        self, server_id: int, request: MountRequest, *, automatic: bool = False
    ) -> dict[str, Any]:
        """Mount ``request`` on the running server; answers once it is mounted (or raises
        with the reason). A server already mounted is unmounted first. A mount ``automatic``
        (for the workspace setting) that fails stays shown as failed, with the reason."""
        self.manager.running(server_id, "start it before mounting the workspace.")
        # Asked for now: a bad path is refused before anything changes. Automatic: the tree
        # may have been removed since it was chosen, which shows as the mount's failure.
        local = None if automatic else self.local_tree(request)
        async with self._lock(server_id):
            old = self._mounts.get(server_id)
            if old is not None:
                await self._end(server_id, old)
            mount = Mount(request, automatic=automatic)
            self._mounts[server_id] = mount
            self._set(server_id, mount, "mounting")
            try:
                if local is None:
                    local = self.local_tree(request)
                await self._attach(server_id, mount, local)
            except ComputeServersError as e:
                if automatic:
                    mount.ending = True
                    self._set(server_id, mount, "failed", e.message)
                else:
                    self._mounts.pop(server_id, None)
                    self.manager.notify("mount", server_id, mount=None)
                raise e
            self._set(server_id, mount, "mounted")
            mount.watch = asyncio.ensure_future(self._watch(server_id, mount, local))
            return mount.to_json()

    async def unmount(self, server_id: int) -> dict[str, Any] | None:
        async with self._lock(server_id):
            mount = self._mounts.pop(server_id, None)
            if mount is None:
                return None
            await self._end(server_id, mount)
            self.manager.notify("mount", server_id, mount=None)
            return mount.to_json()

    # --- the workspace setting ---------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Apply a server's workspace setting when it comes up running and when it is edited
        (a server event observer, see ``services.py``)."""
        server_id = event.get("server_id")
        if server_id is None:
            return
        if event.get("kind") == "state" and event.get("state") == "running":
            self._applied.pop(server_id, None)  # a new machine: mount afresh
            self._schedule(server_id)
        elif event.get("kind") == "updated" and event.get("state") == "running":
            self._schedule(server_id)
        elif event.get("kind") == "deleted":
            self._applied.pop(server_id, None)

    def restore(self) -> None:
        """Jupyter (re)started: mount on each running server whose setting asks for it."""
        for server in self.manager.store.servers():
            if server.state is State.RUNNING and server.workspace.mounts:
                self._schedule(server.id)

    async def ready(self, server_id: int) -> None:
        """Wait for the workspace setting to be applied (a kernel or terminal about to start
        there would otherwise miss the mount being made)."""
        task = self._applying.get(server_id)
        if task is not None:
            await asyncio.shield(task)

    def _schedule(self, server_id: int) -> None:
        previous = self._applying.get(server_id)

        async def apply() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await self._apply(server_id)

        task = asyncio.get_running_loop().create_task(apply())
        self._applying[server_id] = task

        def done(task: asyncio.Task[None]) -> None:
            if self._applying.get(server_id) is task:
                del self._applying[server_id]

        task.add_done_callback(done)

    async def _apply(self, server_id: int) -> None:
        try:
            server = self.manager.get_server(server_id)
        except NotFoundError:
            return
        wanted = server.workspace
        if server.state is not State.RUNNING or self._applied.get(server_id) == wanted:
            return
        self._applied[server_id] = wanted
        current = self._mounts.get(server_id)
        try:
            if wanted.mounts:
                if current is None or current.request != wanted.mount or current.state == "failed":
                    await self.mount(server_id, wanted.mount, automatic=True)
            elif current is not None and current.automatic:
                await self.unmount(server_id)
        except ComputeServersError as e:
            # Shown on the server's row (the failed mount's reason); tried again at its next
            # start, the next edit of the setting, or by the Mount button.
            log.warning("Could not mount the workspace of compute server %s: %s", server_id, e)
        except Exception:
            log.exception("Applying the workspace setting of compute server %s failed", server_id)

    async def before_disconnect(self, server_id: int) -> None:
        """The manager is about to close the server's connection (stop, suspend, reboot,
        deprovision): unmount while the server still answers."""
        if server_id in self._mounts:
            with contextlib.suppress(ComputeServersError):
                await self.unmount(server_id)

    async def close(self) -> None:
        """Jupyter is shutting down: unmount everything."""
        for task in list(self._applying.values()):
            task.cancel()
        for server_id in list(self._mounts):
            with contextlib.suppress(ComputeServersError, asyncio.TimeoutError):
                await asyncio.wait_for(self.unmount(server_id), 10)

    async def _agent(self, server_id: int) -> ServerAgent:
        return await self.manager.agent_for(server_id, "start it before mounting the workspace.")

    async def _attach(self, server_id: int, mount: Mount, local: str) -> None:
        agent = await self._agent(server_id)
        check = await agent.call("mount_check")
        missing = check.get("missing") or []
        if missing:
            server = self.manager.get_server(server_id)
            raise MountError(
                f"Server {server.name!r} cannot mount the workspace: "
                f"{', '.join(missing)} missing there. Install sshfs on the server "
                f"(Debian/Ubuntu: apt-get install sshfs; it brings fuse3 and fusermount3) and "
                f"make sure /dev/fuse exists (containers need --device /dev/fuse).",
                missing=missing,
            )
        workspace = agent.endpoint.workspace
        prepared = await agent.call(
            "mount_prepare", workspace=workspace, path=mount.request.mount_point
        )
        mount.remote_path = str(prepared["path"])
        sshfs = quote_command(
            str(check["sshfs"]),
            "-f",
            "-o",
            f"{check.get('passive') or 'passive'},{SSHFS_OPTIONS}"
            + (",ro" if mount.request.read_only else ""),
            "jupyter:/",
            mount.remote_path,
        )
        connection = await self.manager.connection(server_id, "mount the workspace")
        command = f"{agent_command(RPC_AGENT_SOURCE, agent.endpoint.python)} --mount-relay {sshfs}"
        process = await connection.connection.create_process(command, encoding=None)
        process.stdin.write(RPC_AGENT_SOURCE)
        mount.process = process
        hold_back = HoldBack(self.manager.sync_settings(server_id).pull_executable_config)

        def held(local: bytes) -> bool:
            relative = os.path.relpath(os.fsdecode(local), self.root_dir)
            # As a file and as a directory (``mkdir bin``): the rule holds both back.
            return relative != "." and (hold_back.held(relative) or hold_back.held(f"{relative}/-"))

        mount.serving = asyncio.ensure_future(
            serve(
                process.stdout,
                process.stdin,
                process.channel,
                local,
                read_only=mount.request.read_only,
                held=held,
            )
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.mount_timeout
        while True:
            state = await agent.call(
                "mount_state", workspace=workspace, path=mount.request.mount_point
            )
            if state.get("mounted"):
                return
            if mount.serving.done() or process.exit_status is not None or loop.time() > deadline:
                stderr = await self._stderr(process)
                process.close()
                mount.serving.cancel()
                raise MountError(
                    f"sshfs did not mount the workspace on server {server_id}"
                    + (f": {stderr}" if stderr else f" within {self.mount_timeout:g} s")
                )
            await asyncio.sleep(0.1)

    async def _stderr(self, process: asyncssh.SSHClientProcess[bytes]) -> str:
        with contextlib.suppress(Exception):
            data = await asyncio.wait_for(process.stderr.read(8192), 1)
            return data.decode("utf-8", "replace").strip()[-500:]
        return ""

    async def _end(self, server_id: int, mount: Mount) -> None:
        mount.ending = True
        if mount.watch is not None:
            mount.watch.cancel()
        try:
            agent = await self._agent(server_id)
            await agent.call(
                "unmount",
                timeout=30,
                workspace=agent.endpoint.workspace,
                path=mount.request.mount_point,
            )
        finally:
            if mount.process is not None:
                mount.process.close()
            if mount.serving is not None:
                mount.serving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await mount.serving

    async def _watch(self, server_id: int, mount: Mount, local: str) -> None:
        """Mount again whenever the channel ends without an unmount."""
        while not mount.ending:
            assert mount.serving is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(mount.serving)
            if mount.ending:
                return
            self._set(server_id, mount, "remounting", "the connection to the server dropped")
            while not mount.ending:
                await asyncio.sleep(self.retry_interval)
                try:
                    async with self._lock(server_id):
                        if mount.ending:
                            return
                        await self._attach(server_id, mount, local)
                    self._set(server_id, mount, "mounted")
                    break
                except ConflictError as e:
                    # The server is no longer running (stopped elsewhere): nothing to remount.
                    self._set(server_id, mount, "failed", e.message)
                    return
                except MountError as e:
                    self._set(server_id, mount, "failed", e.message)
                    return
                except (ComputeServersError, asyncssh.Error, OSError) as e:
                    mount.reason = getattr(e, "message", str(e))
