"""Syncs as the API, the CLI, kernel launches and the schedule ask for them.

- One sync at a time per server: in this process (a 409 names the running one) and across
  processes (a lock file per server in the data directory, so the CLI and the Lab never sync
  the same server at once).
- Each sync is a row of ``sync_runs``: created before it starts (its id is the answer to the
  request), updated with its progress every couple of seconds, and with its summary at the end.
  A row left "running" by a process that died reads as "interrupted"; running it again is
  safe (see ``engine.py``).
- Progress reaches the Lab as ``sync`` events on the servers' event schema, at most twice a
  second per sync, and once more at the end.
- The sync process on the server is kept for the next sync while the server's connection lives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Int
from traitlets.config import Configurable, LoggingConfigurable

from ..agent.sync_agent import SyncWatch
from ..errors import ComputeServersError, ConflictError, NotFoundError
from ..models import State
from .engine import Progress, SyncEngine
from .records import SyncStore
from .settings import DEFAULT_EXCLUDES, SyncSettings, parse_request, parse_settings
from .transfer import SyncLimits, SyncSession

if TYPE_CHECKING:
    from ..manager import ComputeServerManager

log = logging.getLogger(__name__)

#: How many past syncs ``GET servers/{id}/syncs`` lists.
HISTORY = 20
#: Change journals of the Jupyter root kept at once (one per set of scan parameters in use:
#: each holds an inotify instance, of the user's 128 by default).
MAX_WATCHES = 8


@dataclass
class _Job:
    run_id: int
    server_id: int
    direction: str
    path: str
    trigger: str
    started: float
    lock_fd: int
    confirm_deletions: bool = False
    task: asyncio.Task[None] | None = None
    engine: SyncEngine | None = None
    last_event: float = 0.0
    last_saved: float = field(default_factory=time.monotonic)


def _owner_alive(owner: str | None) -> bool:
    # Imported here: the manager module imports this one (through TYPE_CHECKING only) and the
    # rule is the manager's own (one process, one host).
    from ..manager import owner_alive as alive

    return alive(owner)


def describe(progress: dict[str, Any] | None, state: str) -> str:
    """One line for a CLI or a status bar."""
    if not progress:
        return f"sync {state}"
    phase = progress.get("phase", "")
    if phase != "transferring":
        return f"sync: {phase}"
    rate = (progress.get("rate") or 0) / 1e6
    eta = progress.get("eta_seconds")
    return (
        f"sync: {progress['files_done']}/{progress['files_total']} files, "
        f"{progress['bytes_done'] / 1e6:.1f}/{progress['bytes_total'] / 1e6:.1f} MB, "
        f"{rate:.1f} MB/s" + (f", {eta:.0f} s left" if eta is not None else "")
    )


class SyncService(LoggingConfigurable):
    """Configured as ``c.SyncService.<option>``: the bounds of what a server's sync process
    may answer (a compute server is not trusted: see ``transfer.py``)."""

    max_answer_mb = Int(
        256,
        help=(
            "The largest answer (a scan of the workspace, or hashes) a server's sync process "
            "may send, in MiB; a larger one fails the sync with an error that says so. About "
            "100 bytes a file: 256 MiB is a scan of some two million files."
        ),
    ).tag(config=True)

    max_scan_entries = Int(
        1_000_000,
        help=(
            "The most entries (files, skipped files, left-out directories; hashes) one answer "
            "of a server's sync process may have; more fails the sync with an error that says "
            "so. Raise it to sync larger trees."
        ),
    ).tag(config=True)

    #: Seconds in a "minute" of auto_sync_minutes (tests shorten it).
    minute = 60.0
    #: How often the schedule is looked at.
    auto_check_seconds = 15.0

    def __init__(
        self,
        manager: ComputeServerManager,
        records: SyncStore,
        root_dir: str,
        lock_dir: str | Path,
        *,
        before_kernels: bool = True,
        parent: Configurable | None = None,
    ) -> None:
        super().__init__(parent=parent)
        self.manager = manager
        self.root_dir = os.path.realpath(root_dir)
        self.lock_dir = Path(lock_dir)
        self.store = records
        #: Directories of a server's workspace that never sync, beside its settings' own
        #: (the live workspace's mount point, which is the Jupyter root again).
        self.server_only_extra: list[Callable[[int], tuple[str, ...]]] = []
        self._jobs: dict[int, _Job] = {}
        self._sessions: dict[int, tuple[Any, SyncSession]] = {}
        #: The Jupyter root's change journals, by the scan's parameters (servers that sync
        #: the same way share one), the most recently used last; see ``_local_watch``.
        self._watches: collections.OrderedDict[str, SyncWatch] = collections.OrderedDict()
        self._seen_running: dict[int, float] = {}
        self._auto: asyncio.Task[None] | None = None
        if before_kernels:
            manager.before_kernel_launch.append(self.before_kernel_launch)

    @property
    def limits(self) -> SyncLimits:
        return SyncLimits(
            max_answer_bytes=max(self.max_answer_mb, 1) << 20,
            max_entries=max(self.max_scan_entries, 1),
        )

    # --- settings -------------------------------------------------------------------------

    def settings(self, server_id: int) -> SyncSettings:
        return self.store.settings(server_id)

    def _with_extra(self, server_id: int) -> SyncSettings:
        settings = self.settings(server_id)
        extra = tuple(p for hook in self.server_only_extra for p in hook(server_id))
        if not extra:
            return settings
        return dataclasses.replace(settings, server_only=settings.server_only + extra)

    def parse_settings(self, value: Any, server_id: int | None) -> SyncSettings:
        return parse_settings(value, self.settings(server_id) if server_id else None)

    def save_settings(self, server_id: int, settings: SyncSettings) -> None:
        self.store.save_settings(server_id, settings)

    # --- runs -----------------------------------------------------------------------------

    def start(self, server_id: int, body: Any, trigger: str = "api") -> dict[str, Any]:
        """Begin a sync (body: direction, path, confirm_deletions); answer it as recorded, at
        once."""
        self.manager.get_server(server_id)  # 404 first
        direction, path, confirm = parse_request(body)
        return self._start(server_id, direction, path, trigger, confirm)

    def _start(
        self, server_id: int, direction: str, path: str, trigger: str, confirm: bool = False
    ) -> dict[str, Any]:
        server = self.manager.get_server(server_id)
        if not server.workspace.syncs:
            raise ConflictError(
                f"Server {server.name!r} has its workspace mounted, not synced: its code reads "
                f"and writes the files here directly. To sync it too, set its workspace mode "
                f"to 'both' (or 'synced') in the server's settings.",
                field="workspace.mode",
            )
        if server.state is not State.RUNNING or server.operation is not None:
            what = server.operation or server.state.value
            raise ConflictError(
                f"Server {server.name!r} is {what}; sync needs it running.",
                state=server.state.value,
            )
        job = self._jobs.get(server_id)
        if job is not None:
            raise ConflictError(
                f"A sync of {server.name!r} is already running (sync {job.run_id}).",
                sync_id=job.run_id,
            )
        lock_fd = self._lock(server_id, server.name)
        try:
            run_id = self.store.create_run(
                server_id, direction, path, trigger, self.manager.owner, time.time()
            )
        except BaseException:
            os.close(lock_fd)
            raise
        job = _Job(run_id, server_id, direction, path, trigger, time.time(), lock_fd, confirm)
        self._jobs[server_id] = job
        job.task = asyncio.create_task(self._run(job))
        self._publish(job, force=True)
        return self.get(server_id, run_id)

    async def run(
        self,
        server_id: int,
        direction: str = "both",
        path: str = "",
        trigger: str = "api",
        *,
        confirm_deletions: bool = False,
    ) -> dict[str, Any]:
        """Sync and wait for the end (the CLI, kernel launches); answer the finished run."""
        run = self._start(server_id, direction, path, trigger, confirm_deletions)
        await self.wait(server_id, run["id"])
        return self.get(server_id, run["id"])

    async def wait(self, server_id: int, run_id: int) -> None:
        job = self._jobs.get(server_id)
        if job is not None and job.run_id == run_id and job.task is not None:
            await asyncio.shield(job.task)

    def cancel(self, server_id: int, sync_id: int) -> dict[str, Any]:
        run = self.get(server_id, sync_id)
        job = self._jobs.get(server_id)
        if job is None or job.run_id != run["id"] or job.task is None:
            raise ConflictError(
                f"Sync {run['id']} is {run['state']}, not running here.", state=run["state"]
            )
        job.task.cancel()
        return run

    def get(self, server_id: int, sync_id: int) -> dict[str, Any]:
        self.manager.get_server(server_id)
        run = self.store.run(server_id, sync_id)
        if run is None:
            raise NotFoundError(f"No sync {sync_id} of server {server_id}.", field="sync_id")
        return self._present(run)

    def history(self, server_id: int) -> list[dict[str, Any]]:
        self.manager.get_server(server_id)
        return [self._present(run) for run in self.store.runs(server_id, HISTORY)]

    def running(self, server_id: int) -> int | None:
        job = self._jobs.get(server_id)
        return job.run_id if job else None

    def _present(self, run: dict[str, Any]) -> dict[str, Any]:
        job = self._jobs.get(run["server_id"])
        if job is not None and job.run_id == run["id"] and job.engine is not None:
            run["progress"] = job.engine.progress.to_json()
            run["summary"] = job.engine.summary.to_json()
        elif (
            run["state"] == "running"
            and (job is None or job.run_id != run["id"])
            and not _owner_alive(run["owner"])
        ):
            error = "the process running it stopped (killed or restarted); sync again"
            self.store.update_run(run["id"], state="interrupted", error=error)
            run.update(state="interrupted", error=error)
        run.pop("owner", None)
        return run

    # --- one sync -------------------------------------------------------------------------

    def _lock(self, server_id: int, name: str) -> int:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / f"server-{server_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConflictError(
                f"A sync of {name!r} is running in another process (the CLI, or another "
                f"Jupyter server); try again when it is done."
            ) from None
        return fd

    async def _session(self, server_id: int, python: str) -> SyncSession:
        connection = (await self.manager.connection(server_id)).connection
        cached = self._sessions.get(server_id)
        if cached is not None:
            if cached[0] is connection and cached[1].is_open:
                return cached[1]
            await cached[1].close()
        session = await SyncSession.over_ssh(connection, python)
        self._sessions[server_id] = (connection, session)
        return session

    def _local_watch(self, scope: str, settings: SyncSettings) -> SyncWatch:
        """The Jupyter root's change journal for a scan with these parameters: kept from
        sync to sync while this Jupyter server runs (a new one walks the root first)."""
        key = json.dumps([scope, settings.patterns, list(settings.server_only), settings.max_size])
        watch = self._watches.pop(key, None) or SyncWatch()
        self._watches[key] = watch
        while len(self._watches) > MAX_WATCHES:
            self._watches.popitem(last=False)[1].close()
        return watch

    async def _drop_session(self, server_id: int) -> None:
        cached = self._sessions.pop(server_id, None)
        if cached is not None:
            await cached[1].close()

    async def _run(self, job: _Job) -> None:
        server_id = job.server_id
        state, error = "completed", None
        session: SyncSession | None = None
        try:
            server = self.manager.get_server(server_id)
            endpoint = await self.manager.endpoint(server_id)
            session = await self._session(server_id, endpoint.python)
            session.where = f"server {server.name!r}"
            session.limits = self.limits
            # Sent with the engine's first request (its scan): a no-op sync is one round trip.
            session.open_with_next(endpoint.workspace)
            settings = self._with_extra(server_id)
            job.engine = SyncEngine(
                local_root=self.root_dir,
                session=session,
                store=self.store,
                server_id=server_id,
                server_name=server.name,
                settings=settings,
                direction=job.direction,
                scope=job.path,
                on_progress=lambda: self._publish(job),
                confirm_deletions=job.confirm_deletions,
                local_watch=self._local_watch(job.path, settings),
            )
            await job.engine.run()
        except asyncio.CancelledError:
            state, error = "cancelled", "cancelled"
        except ComputeServersError as e:
            state, error = "failed", e.message
        except Exception as e:
            log.exception("Sync of compute server %s failed", server_id)
            state, error = "failed", f"{type(e).__name__}: {e}"
        finally:
            if session is not None and (state != "completed" or not session.is_open):
                # Mid-stream, the channel's framing is unknown: start afresh next time.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._drop_session(server_id))
            engine = job.engine
            self.store.update_run(
                job.run_id,
                state=state,
                error=error,
                finished=time.time(),
                progress=engine.progress.to_json() if engine else None,
                summary=engine.summary.to_json() if engine else None,
            )
            self._jobs.pop(server_id, None)
            os.close(job.lock_fd)
            self._publish(job, force=True, state=state)
            if state == "completed":
                log.info("Synced compute server %s (sync %s)", server_id, job.run_id)
            else:
                log.warning(
                    "Sync %s of compute server %s %s: %s", job.run_id, server_id, state, error
                )

    def _publish(self, job: _Job, *, force: bool = False, state: str = "running") -> None:
        """An event for the Lab (throttled), and the progress in the store (less often)."""
        now = time.monotonic()
        if not force and now - job.last_event < 0.5:
            return
        job.last_event = now
        progress = job.engine.progress.to_json() if job.engine else Progress().to_json()
        if state == "running" and now - job.last_saved > 2:
            job.last_saved = now
            self.store.update_run(job.run_id, progress=progress)
        self.manager.notify(
            "sync",
            job.server_id,
            sync={
                "id": job.run_id,
                "state": state,
                "direction": job.direction,
                "path": job.path,
                "trigger": job.trigger,
                **progress,
            },
            progress=describe(progress, state),
        )

    # --- kernels and the schedule -----------------------------------------------------------

    async def before_kernel_launch(self, server_id: int, cwd: str) -> None:
        """Push the notebook's directory before a kernel starts there (unless the server's
        settings say not to). A sync already running is waited for. A failure is logged, and
        the kernel starts anyway: the run's record says what went wrong."""
        if not self.settings(server_id).before_kernel:
            return
        if not self.manager.get_server(server_id).workspace.syncs:
            return  # mounted only: nothing is copied
        job = self._jobs.get(server_id)
        if job is not None and job.task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(job.task)
        try:
            run = await self.run(server_id, "push", cwd, "kernel")
        except ComputeServersError as e:
            log.warning("No sync before the kernel on server %s: %s", server_id, e.message)
            return
        if run["state"] != "completed":
            log.warning(
                "The sync before the kernel on server %s %s: %s",
                server_id,
                run["state"],
                run["error"],
            )

    def start_schedule(self) -> None:
        if self._auto is None:
            self._auto = asyncio.get_event_loop().create_task(self._schedule())

    async def _schedule(self) -> None:
        while True:
            await asyncio.sleep(self.auto_check_seconds)
            try:
                due = self.due_for_auto_sync(time.time())
            except Exception:
                log.exception("The sync schedule failed; it goes on")
                continue
            for server_id in due:
                self._start_auto_sync(server_id)
                # Many servers due at once: let the notebook server's other work run between
                # the starts rather than after all of them.
                await asyncio.sleep(0)

    def auto_sync_due(self, now: float) -> list[int]:
        """Start the syncs the schedule wants now; answer their server ids."""
        return [s for s in self.due_for_auto_sync(now) if self._start_auto_sync(s)]

    def due_for_auto_sync(self, now: float) -> list[int]:
        """The running servers whose automatic sync is due at ``now``. Two queries whatever
        the number of servers (their settings, the time of their last sync)."""
        settings = self.store.all_settings()
        last_runs = self.store.last_run_times()
        due = []
        for server in self.manager.list_servers():
            if server.state is not State.RUNNING or server.operation is not None:
                self._seen_running.pop(server.id, None)
                continue
            seen = self._seen_running.setdefault(server.id, now)
            chosen = settings.get(server.id)
            minutes = chosen.auto_sync_minutes if chosen is not None else None
            if not minutes or server.id in self._jobs or not server.workspace.syncs:
                continue
            if now - max(seen, last_runs.get(server.id, 0)) < minutes * self.minute:
                continue
            due.append(server.id)
        return due

    def _start_auto_sync(self, server_id: int) -> bool:
        try:
            self._start(server_id, "both", "", "auto")
        except ComputeServersError as e:
            log.info("No scheduled sync of server %s now: %s", server_id, e.message)
            return False
        return True

    async def close(self) -> None:
        """Stop the schedule and every sync (a stopped sync is safe to run again)."""
        if self._auto is not None:
            self._auto.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._auto
            self._auto = None
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for server_id in list(self._sessions):
            await self._drop_session(server_id)
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        self.store.close()


def defaults() -> dict[str, Any]:
    """What every server's sync leaves out before its own settings (for the API)."""
    return {"default_excludes": list(DEFAULT_EXCLUDES), "settings": SyncSettings().to_json()}
