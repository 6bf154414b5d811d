"""The service layer: every rule about compute servers lives here, under the handlers and CLI.

``ComputeServerManager`` validates requests, enforces the state machine and the editing rules,
runs lifecycle operations on the clouds in the background, and records every state change in
the store before anyone is told about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .agent import AgentChannelError, AgentClient, AgentError
from .clouds.base import Cloud, Operation
from .errors import (
    ComputeServersError,
    ConflictError,
    NotFoundError,
    OperationFailed,
    ValidationError,
)
from .events import ServerEvents
from .hosts import HostRegistry
from .images.catalog import ImageCatalog
from .images.runtime import container_for
from .models import (
    CREATE_FIELDS,
    DEPROVISION_WARNING,
    PATCH_FIELDS,
    Action,
    ServerConfig,
    State,
    check_action_allowed,
    check_config_change,
    check_no_unknown,
    parse_bool,
    parse_color,
    parse_daily_stop,
    parse_idle_timeout,
    parse_name,
    parse_notes,
    parse_object,
    parse_spend_limit,
    parse_str,
)
from .mount.workspace import parse_workspace
from .ssh import (
    HostKeyMismatchError,
    KeyStore,
    ServerConnection,
    ServerStoppedError,
    ServerUnreachableError,
    SSHConnectError,
    SSHConnections,
)
from .ssh_endpoint import SSHEndpoint
from .store import HistoryEntry, ServerRecord, ServerStore
from .sync.settings import SyncSettings
from .sync.settings import parse_settings as parse_sync_settings
from .team import Team

#: A palette for servers created without a colour, so each new one looks different.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def this_process() -> str:
    """Identifies the process running an operation, so a restart can tell abandoned ones."""
    return f"{socket.gethostname()}:{os.getpid()}"


#: Seconds a failed start may take to stop what it had started.
FAILED_START_STOP_TIMEOUT = 120.0


def owner_alive(owner: str | None) -> bool:
    """Whether the process an ``owner`` string (host:pid) names still runs here."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        # Another machine's process cannot be checked from here: settle the server from its
        # cloud's truth, as for a dead one, rather than leave it stuck mid-operation.
        return False
    if int(pid) == os.getpid():
        # We have just started: nothing of ours is running yet, so this is a reused pid.
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: What each agent method does, in words, for the errors users read.
DOING = {
    "kernel_launch": "start a kernel",
    "kernel_status": "ask about a kernel",
    "kernel_signal": "signal a kernel",
    "kernel_cleanup": "clean up after a kernel",
    "kernel_log": "read a kernel's log",
    "kernel_list": "list its kernels",
    "kernelspecs": "list its kernel specs",
    "metrics": "read its metrics",
    "info": "read its hardware",
    "terminal_start": "start a terminal",
    "terminal_list": "list its terminals",
    "app_start": "start a web app",
    "app_list": "list its web apps",
    "app_log": "read a web app's log",
    "app_stop": "stop a web app",
    "listening_ports": "list its open ports",
    "ping": "reach its agent",
}


def unreachable(
    name: str, doing: str, cause: str, *, interval: float = 0
) -> ServerUnreachableError:
    """The error users see when a running server does not answer: the server, what failed,
    why, and what to do."""
    again = f"It is checked again every {interval:g} s; if" if interval > 0 else "If"
    return ServerUnreachableError(
        f"Could not {doing} on compute server {name!r}: it is not answering over SSH "
        f"({cause}). Its kernels keep running there and reconnect when it answers again. "
        f"{again} it stays unreachable, stop it and start it again from the Compute Servers "
        f"panel (or: jupyter compute-servers stop {name})."
    )


#: How the reason of a server that stopped answering begins (the health watch records it, and
#: looks again at servers in ``error`` with it).
UNREACHABLE = "the server's SSH daemon is not answering since "


def is_unreachable(server: ServerRecord) -> bool:
    """Whether the server is in ``error`` only because it stopped answering (it may come
    back: its kernels are not dead)."""
    return server.state is State.ERROR and (server.state_reason or "").startswith(UNREACHABLE)


@dataclass(frozen=True)
class ServerAgent:
    """A running server's agent, with the endpoint it was reached at (its workspace and
    runtime directory are what most calls need beside it).

    A call that has no answer after half the connect timeout checks the SSH link itself (one
    round trip): a dead link is dropped and the call fails at once with a message naming the
    server, so nothing waits for a busy agent's full timeout on a server that is gone."""

    client: AgentClient
    endpoint: SSHEndpoint
    server_name: str = ""
    connection: ServerConnection | None = None
    check_after: float = 2.5
    interval: float = 0
    #: The server's state now, as the store has it: a call broken once the server has left
    #: ``running`` (its stop closes the connection under calls in flight) says so.
    state_now: Callable[[], State | None] | None = None

    async def call(self, method: str, timeout: float = 60, **params: Any) -> Any:
        doing = DOING.get(method, f"run {method}")
        # The client's call is awaited here, not in a task of its own: it writes the request
        # in this step, so the work the loop runs meanwhile (a kernel start's push, say) does
        # not hold it back. The link's check runs beside it.
        watch = None
        if self.connection is not None and timeout > self.check_after:
            watch = asyncio.ensure_future(self._watch_link(self.connection, doing))
            # Its error is raised below when it broke the call; either way it counts as seen.
            watch.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            return await self.client.call(method, timeout=timeout, **params)
        except AgentChannelError as e:
            if watch is not None and watch.done() and not watch.cancelled():
                found = watch.exception()
                if found is not None:
                    raise found from None  # the link is dead: said as the check found it
            raise self._broken(doing, e.message) from None
        except asyncio.TimeoutError:
            raise self._broken(doing, f"no answer within {timeout:g} s") from None
        finally:
            if watch is not None:
                watch.cancel()

    def _broken(self, doing: str, cause: str) -> ServerUnreachableError:
        """The error of a call left without an answer: a 409 when the server's own stop broke
        it (it has left ``running`` since), else the server is unreachable for ``cause``."""
        state = self.state_now() if self.state_now is not None else None
        # Not ``error``: a server that stopped answering is put there, and that is what the
        # unreachable message explains.
        if state is not None and state not in (State.RUNNING, State.ERROR):
            return ServerStoppedError(
                f"Could not {doing} on compute server {self.server_name!r}: it is "
                f"{state.value} now.",
                state=state.value,
            )
        return unreachable(self.server_name, doing, cause, interval=self.interval)

    async def _watch_link(self, connection: ServerConnection, doing: str) -> None:
        """Once a call has waited ``check_after`` seconds, one SSH round trip: a link that does
        not answer it is dropped, which fails the call (its channel closes) with the error
        raised here."""
        await asyncio.sleep(self.check_after)
        try:
            await connection.ping(self.check_after)
        except (asyncio.TimeoutError, ConnectionError, OSError) as e:
            connection.connection.abort()
            raise self._broken(
                doing,
                f"no answer within {2 * self.check_after:g} s"
                if isinstance(e, asyncio.TimeoutError)
                else "its connection closed",
            ) from None


class SyncSettingsStore(Protocol):
    """Where a server's sync settings are kept (sync/records.py); the manager reads and saves
    the ``sync`` field of create and edit requests through it."""

    def settings(self, server_id: int) -> SyncSettings: ...

    def all_settings(self) -> dict[int, SyncSettings]: ...

    def save_settings(self, server_id: int, settings: SyncSettings) -> None: ...


class ComputeServerManager:
    def __init__(
        self,
        store: ServerStore,
        clouds: dict[str, Cloud],
        keys: KeyStore,
        ssh: SSHConnections,
        *,
        images: ImageCatalog,
        hosts: HostRegistry,
        events: ServerEvents,
        sync_settings: SyncSettingsStore,
        team: Team | None = None,
        max_servers: int = 0,
        health_interval: float = 0.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self.clouds = clouds
        self.keys = keys
        self.ssh = ssh
        #: The software images servers may run.
        self.images = images
        #: The registered on-prem hosts (the ssh cloud's machines).
        self.hosts = hosts
        self.events = events
        self.sync_settings_store = sync_settings
        #: Team mode's quotas (standalone: a Team that limits nothing).
        self.team = team or Team(enabled=False, owner=store.owner)
        #: The most servers the store may hold (0: no limit).
        self.max_servers = max_servers
        self.log = log or logging.getLogger(__name__)
        #: Checks run before a start or resume is recorded; each raises ConflictError to
        #: refuse (costs registers its spend limits and budget here).
        self.admission_checks: list[Callable[[ServerRecord], None]] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}
        #: Servers whose start the user cancelled (stopped while starting).
        self._cancelling: set[int] = set()
        self._watch_task: asyncio.Task[None] | None = None
        #: Running servers whose cloud said they end soon, and who were told (``watch_once``).
        self._ending_told: set[int] = set()
        #: Seconds between health checks of running servers (0: none); see ``start_watching``.
        self.health_interval = health_interval
        self._health_task: asyncio.Task[None] | None = None
        #: When each server last answered a health check (time.time()).
        self._answered: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.owner = this_process()
        #: Awaited with (server id, the kernel's directory relative to the Jupyter root)
        #: before a kernel is launched there (sync pushes that directory).
        self.before_kernel_launch: list[Callable[[int, str], Awaitable[None]]] = []
        #: Awaited with the server id before an action closes its connection (stop, suspend,
        #: reboot, deprovision), while it still answers (mounts unmount there).
        self.before_disconnect: list[Callable[[int], Awaitable[None]]] = []
        #: Asked with (server id, a kernel's directory relative to the Jupyter root) for the
        #: directory to start it in, relative to the workspace, or None: the first answer
        #: wins (a live workspace mount answers for directories inside its tree).
        self.kernel_directory: list[Callable[[int, str], str | None]] = []
        #: Awaited with the server id before a kernel's or terminal's directory is chosen
        #: (a workspace mount being made for the server's setting is waited for).
        self.before_directory_choice: list[Callable[[int], Awaitable[None]]] = []

    async def working_directory(self, server_id: int, relative: str) -> str | None:
        """Where on the server (relative to its workspace) a kernel or terminal for the
        Jupyter root's directory ``relative`` starts, when something other than the synced
        copy answers for it (a mount), else None."""
        for hook in self.before_directory_choice:
            await hook(server_id)
        for mapper in self.kernel_directory:
            mapped = mapper(server_id, relative)
            if mapped is not None:
                return mapped
        return None

    # --- presentation ---------------------------------------------------------------------

    def cloud_for(self, server: ServerRecord) -> Cloud:
        cloud = self.clouds.get(server.cloud)
        if cloud is None:
            raise ConflictError(
                f"Server {server.name!r} is on the {server.cloud!r} cloud, which is not enabled "
                f"here. Enable it with c.ComputeServersApp.enabled_clouds.",
                field="cloud",
            )
        return cloud

    def _emit(
        self, kind: str, server: ServerRecord | None, server_id: int | None, **extra: Any
    ) -> None:
        self.events.publish(kind, server, server_id, **extra)

    def notify(self, kind: str, server_id: int | None, **extra: Any) -> None:
        """Tell observers that something about a server changed (its kernels, its kernel
        specs) that they should read again; ``extra`` goes into the event. A cost alert about
        all servers (the budget) has ``server_id`` None."""
        server: ServerRecord | None = None
        if server_id is not None:
            with contextlib.suppress(NotFoundError):
                server = self.store.get(server_id)
        self._emit(kind, server, server_id, **extra)

    # --- CRUD -----------------------------------------------------------------------------

    def list_servers(self) -> list[ServerRecord]:
        return self.store.servers()

    def get_server(self, server_id: int) -> ServerRecord:
        return self.store.get(server_id)

    def history(self, server_id: int) -> list[HistoryEntry]:
        """Every state change of a server, oldest first (404 for an unknown server)."""
        self.store.get(server_id)
        return self.store.history(server_id)

    def create_server(self, body: Any) -> ServerRecord:
        data = parse_object(body, "body")
        check_no_unknown(data, CREATE_FIELDS, "")
        if "name" not in data:
            raise ValidationError("name is required.", field="name")
        name = parse_name(data["name"])
        cloud_name = data.get("cloud", next(iter(self.clouds), None))
        cloud_name = parse_str(cloud_name, "cloud", max_length=64) if cloud_name else ""
        if cloud_name not in self.clouds:
            enabled = ", ".join(self.clouds) or "none"
            raise ValidationError(
                f"cloud {cloud_name!r} is not enabled here (enabled: {enabled}).", field="cloud"
            )
        self.team.check_access("cloud", cloud_name, "cloud")
        cloud = self.clouds[cloud_name]
        config = cloud.make_config(
            parse_object(data["config"], "config") if "config" in data else None
        )
        self.images.check(config, arch=cloud.arch(config))
        self._check_access(config)
        color = (
            parse_color(data["color"])
            if "color" in data
            else PALETTE[self.store.count() % len(PALETTE)]
        )
        sync_settings = self._parse_sync_settings(data, None)
        if self.max_servers and self.store.count() >= self.max_servers:
            raise ConflictError(
                f"There are {self.max_servers} compute servers, the most allowed here "
                f"(c.ComputeServersApp.max_servers); delete one first."
            )
        server = self.store.create(
            name=name,
            color=color,
            notes=parse_notes(data.get("notes", "")),
            cloud=cloud_name,
            config=config,
            idle_timeout_minutes=parse_idle_timeout(data.get("idle_timeout_minutes")),
            spend_limit=parse_spend_limit(data.get("spend_limit")),
            daily_stop=parse_daily_stop(data.get("daily_stop")),
            workspace=parse_workspace(data["workspace"]) if "workspace" in data else None,
        )
        if sync_settings is not None:
            self._save_sync_settings(server.id, sync_settings)
        self._emit("created", server, server.id)
        return server

    async def create_server_on_available_cloud(self, body: Any) -> ServerRecord:
        """``create_server`` for a request (the API, the CLI): a cloud that cannot be used now
        (no credentials, its API unreachable) is refused with why (409), before anything is
        recorded, rather than left to fail at the first start."""
        data = parse_object(body, "body")
        name = data.get("cloud", next(iter(self.clouds), None))
        cloud = self.clouds.get(name) if isinstance(name, str) else None
        if cloud is not None:
            self.team.check_access("cloud", cloud.name, "cloud")
            available, reason = await cloud.availability()
            if not available:
                raise ConflictError(
                    f"The {cloud.name} cloud cannot be used now: {reason}", field="cloud"
                )
        return self.create_server(data)

    async def update_server(self, server_id: int, body: Any) -> ServerRecord:
        data = parse_object(body, "body")
        check_no_unknown(data, PATCH_FIELDS, "")
        async with self._lock(server_id):
            server = self.store.get(server_id)
            changes: dict[str, Any] = {}
            if "name" in data:
                changes["name"] = parse_name(data["name"])
            if "color" in data:
                changes["color"] = parse_color(data["color"])
            if "notes" in data:
                changes["notes"] = parse_notes(data["notes"])
            if "idle_timeout_minutes" in data:
                changes["idle_timeout_minutes"] = parse_idle_timeout(data["idle_timeout_minutes"])
            if "spend_limit" in data:
                changes["spend_limit"] = parse_spend_limit(data["spend_limit"])
            if "daily_stop" in data:
                changes["daily_stop"] = parse_daily_stop(data["daily_stop"])
            if "workspace" in data:
                changes["workspace"] = parse_workspace(data["workspace"], server.workspace)
            sync_settings = self._parse_sync_settings(data, server_id)
            grow_disk_to: int | None = None
            if "config" in data:
                cloud = self.cloud_for(server)
                await cloud.load_offerings()
                config = cloud.make_config(
                    parse_object(data["config"], "config"), base=server.config
                )
                self.images.check(config, arch=cloud.arch(config))
                self._check_access(config)
                changed = check_config_change(server.config, config, server.state)
                if changed:
                    changes["config"] = config
                    if "disk_gb" in changed and server.state in (State.RUNNING, State.SUSPENDED):
                        grow_disk_to = config.disk_gb
                    elif server.state is State.OFF:
                        await cloud.reconfigure(self._operation(server), config)
            if grow_disk_to is not None:
                await self.cloud_for(server).resize_disk(self._operation(server), grow_disk_to)
            server = self.store.update_fields(server_id, expected_state=server.state, **changes)
            if sync_settings is not None:
                self._save_sync_settings(server_id, sync_settings)
        self._emit("updated", server, server_id)
        return server

    def _check_access(self, config: ServerConfig) -> None:
        """The team's access lists for what a configuration uses: its image, GPU type and
        host (403 naming the field; standalone nothing is checked)."""
        if not self.team.enabled:
            return
        if config.image:
            self.team.check_access("image", config.image, "config.image")
        if config.gpu is not None:
            self.team.check_access("gpu", config.gpu.type, "config.gpu.type")
        host_id = config.extra.get("host")
        if isinstance(host_id, int) and self.hosts is not None:
            host = self.hosts.hosts.get(host_id)
            self.team.check_access("host", host.name, "config.extra.host")

    # --- sync settings (the ``sync`` object of a server; see sync/settings.py) ---------------

    def sync_settings(self, server_id: int) -> SyncSettings:
        return self.sync_settings_store.settings(server_id)

    def _parse_sync_settings(
        self, data: dict[str, Any], server_id: int | None
    ) -> SyncSettings | None:
        if "sync" not in data:
            return None
        return parse_sync_settings(
            data["sync"], self.sync_settings(server_id) if server_id is not None else None
        )

    def _save_sync_settings(self, server_id: int, settings: SyncSettings) -> None:
        self.sync_settings_store.save_settings(server_id, settings)

    async def delete_server(self, server_id: int) -> None:
        async with self._lock(server_id):
            self.store.delete(server_id)
            self.keys.remove(server_id)
            self._locks.pop(server_id, None)
        self._emit("deleted", None, server_id)

    # --- actions --------------------------------------------------------------------------

    def _lock(self, server_id: int) -> asyncio.Lock:
        return self._locks.setdefault(server_id, asyncio.Lock())

    def _operation(self, server: ServerRecord) -> Operation:
        server_id = server.id

        def report(message: str, fraction: float | None) -> None:
            updated = self.store.update_fields(
                server_id, progress={"message": message, "fraction": fraction, "at": time.time()}
            )
            self._emit("progress", updated, server_id)

        def save(cloud_data: dict[str, Any]) -> None:
            self.store.update_fields(server_id, cloud_data=cloud_data)

        return Operation(
            server_id=server.id,
            server_name=server.name,
            config=server.config,
            cloud_data=dict(server.cloud_data),
            client_public_key=self.keys.ensure(server.id),
            report=report,
            save=save,
        )

    def request_action(
        self, server_id: int, action_name: str, body: Any = None, *, reason: str = ""
    ) -> ServerRecord:
        """Begin an action: record the transitional state now, run the work in the background.

        Returns the server as recorded; the caller answers 202 and watches for events.
        ``reason`` says why, when it is not the user's request (an automatic stop): it is
        recorded in the history and stays the server's ``state_reason`` once it is done.
        """
        try:
            action = Action(action_name)
        except ValueError:
            raise NotFoundError(
                f"Unknown action {action_name!r}; actions are "
                f"{', '.join(a.value for a in Action)}.",
                field="action",
            ) from None
        data = parse_object(body if body is not None else {}, "body")
        check_no_unknown(data, ("confirm",), "")
        confirmed = parse_bool(data["confirm"], "confirm") if "confirm" in data else False
        server = self.store.get(server_id)
        cloud = self.cloud_for(server)
        if action is Action.STOP and server.state is State.STARTING:
            return self._cancel_start(server)
        transition = check_action_allowed(
            action, server.state, supports_suspend=cloud.supports_suspend
        )
        refusal = cloud.refuse_action(action.value, server.config)
        if refusal:
            raise ConflictError(
                f"Cannot {action.value} {server.name!r}: {refusal}.",
                field="action",
                state=server.state.value,
            )
        if action is Action.DEPROVISION and not confirmed:
            raise ValidationError(
                f'Deprovisioning needs "confirm": true. {DEPROVISION_WARNING}',
                field="confirm",
                warning=DEPROVISION_WARNING,
            )
        if server_id in self._tasks and not self._tasks[server_id].done():
            raise ConflictError(
                f"Another action ({server.operation}) is still running on {server.name!r}.",
                state=server.state.value,
            )
        if action in (Action.START, Action.RESUME):
            # An access list may have changed since the server was made.
            self.team.check_access("cloud", server.cloud, "cloud")
            self._check_access(server.config)
            for check in self.admission_checks:
                check(server)  # 409 when, say, a spend limit or the budget is spent
        previous = server.state
        starting = action in (Action.START, Action.RESUME)
        server = self.store.transition(
            server_id,
            to=transition.during,
            expected=transition.from_states,
            reason=reason or f"{action.value} requested",
            action=action.value,
            operation=action.value,
            owner=self.owner,
            # The team's quotas, checked in the transaction that commits the start.
            admit=(
                (
                    lambda db, owner, config: self.team.check_start(
                        db, self.store, owner, config, server.cloud
                    )
                )
                if starting and self.team.enabled
                else None
            ),
        )
        self._emit("state", server, server_id)
        self._tasks[server_id] = asyncio.create_task(
            self._run_action(server, action, previous, transition.to, reason)
        )
        return server

    def _cancel_start(self, server: ServerRecord) -> ServerRecord:
        """Stop a server that is still starting (waiting in a GPU queue, a Slurm job
        pending, a machine booting): the start is cancelled, what it made is stopped, and the
        server is ``off``. Only the process running the start can cancel it."""
        task = self._tasks.get(server.id)
        if task is None or task.done():
            raise ConflictError(
                f"Server {server.name!r} is being started by another process "
                f"({server.operation_owner or 'unknown'}); stop it once it is running.",
                state=server.state.value,
            )
        if server.id not in self._cancelling:
            self._cancelling.add(server.id)
            task.cancel()
        return server

    async def wait_for_action(self, server_id: int) -> None:
        task = self._tasks.get(server_id)
        if task is not None:
            await asyncio.shield(task)

    async def _run_action(
        self, server: ServerRecord, action: Action, previous: State, target: State, reason: str = ""
    ) -> None:
        cloud = self.cloud_for(server)
        async with self._lock(server.id):
            op = self._operation(server)
            try:
                if action in (Action.STOP, Action.SUSPEND, Action.REBOOT, Action.DEPROVISION):
                    for hook in self.before_disconnect:
                        try:
                            await hook(server.id)
                        except Exception:  # a hook must never keep a server from stopping
                            self.log.exception("Before %s of %s", action.value, server.name)
                if action is Action.START:
                    await self.ssh.close(server.id)
                    if previous is State.DEPROVISIONED:
                        await cloud.create(op)
                    else:
                        await cloud.start(op)
                    await self._wait_ssh(server.id, cloud, op)
                elif action is Action.RESUME:
                    await cloud.resume(op)
                    await self._wait_ssh(server.id, cloud, op)
                elif action is Action.STOP:
                    await self.ssh.close(server.id)
                    await cloud.stop(op)
                elif action is Action.SUSPEND:
                    await self.ssh.close(server.id)
                    await cloud.suspend(op)
                elif action is Action.REBOOT:
                    await self.ssh.close(server.id)
                    await cloud.reboot(op)
                    await self._wait_ssh(server.id, cloud, op)
                elif action is Action.DEPROVISION:
                    await self.ssh.close(server.id)
                    await cloud.deprovision(op)
            except asyncio.CancelledError:
                if server.id not in self._cancelling:
                    # The Jupyter server is going down mid-operation: leave the transitional
                    # state for reconcile() to settle against the cloud on the next start.
                    raise
                # The user stopped it while it was starting (_cancel_start).
                self._cancelling.discard(server.id)
                # Carry on (Python 3.11+ counts cancellations; asyncio.timeout would see it).
                uncancel = getattr(asyncio.current_task(), "uncancel", None)
                if uncancel is not None:
                    uncancel()
                op.progress(f"Cancelling the {action.value}", None)
                to, reason = await self._stop_cancelled_start(server, cloud, op, action, previous)
                stopped = self.store.transition(server.id, to=to, action="stop", reason=reason)
                self._emit("state", stopped, server.id)
                return
            except Exception as e:
                message = (
                    e.message if isinstance(e, ComputeServersError) else f"{type(e).__name__}: {e}"
                )
                self.log.warning(
                    "%s of compute server %s failed: %s",
                    action.value,
                    server.name,
                    message,
                    exc_info=not isinstance(e, ComputeServersError),
                )
                to, reason = State.ERROR, f"{action.value} failed: {message}"
                if isinstance(e, OperationFailed):
                    # A cloud that knows where a failure left the server says so (a VM that
                    # could not be created: deprovisioned), so it can be edited and retried.
                    to = State(e.state)
                elif action in (Action.START, Action.RESUME, Action.REBOOT):
                    to, reason = await self._stop_after_failed_start(server, cloud, op, reason)
                failed = self.store.transition(server.id, to=to, action=action.value, reason=reason)
                self._emit("state", failed, server.id)
                return
            done = self.store.transition(
                server.id,
                to=target,
                reason=reason or f"{action.value} finished",
                at=op.happened_at,
            )
            self._emit("state", done, server.id)

    async def _stop_after_failed_start(
        self, server: ServerRecord, cloud: Cloud, op: Operation, reason: str
    ) -> tuple[State, str]:
        """A start that failed after the cloud had started the machine (its image could not
        be pulled, its agent did not answer) leaves nothing running, or costing, behind: the
        machine is stopped again and the server is ``off``, saying why. When even that fails,
        it is ``error`` with both reasons (stop it once the cause is fixed)."""
        stop_message = await self._stop_what_started(server, cloud, op)
        if stop_message is not None:
            return State.ERROR, f"{reason}; stopping it again failed too: {stop_message}"
        return State.OFF, f"{reason}. It was stopped again; fix the cause and start it again."

    async def _stop_what_started(
        self, server: ServerRecord, cloud: Cloud, op: Operation
    ) -> str | None:
        """Close the server's connection and stop its machine, within a bounded time; answer
        why that failed, or None."""
        try:
            await self.ssh.close(server.id)
            await asyncio.wait_for(cloud.stop(op), FAILED_START_STOP_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return e.message if isinstance(e, ComputeServersError) else str(e)
        return None

    async def _stop_cancelled_start(
        self, server: ServerRecord, cloud: Cloud, op: Operation, action: Action, previous: State
    ) -> tuple[State, str]:
        """After a cancelled start, whatever it had made (a queued job, a booting machine, a
        place in a GPU queue) is stopped: nothing keeps running or costing. A server that had
        no machine and still has none is deprovisioned again, else off."""
        reason = f"{action.value} cancelled (stopped while starting)"
        message = await self._stop_what_started(server, cloud, op)
        if message is not None:
            return State.ERROR, (
                f"{action.value} cancelled, but stopping what it had started failed: {message}. "
                "Stop it again once the cause is fixed."
            )
        if previous is State.DEPROVISIONED:
            with contextlib.suppress(Exception):
                status = await asyncio.wait_for(
                    cloud.status(server.id, self.store.get(server.id).cloud_data),
                    FAILED_START_STOP_TIMEOUT,
                )
                if status.state is State.DEPROVISIONED:
                    return State.DEPROVISIONED, reason
        return State.OFF, reason

    async def _wait_ssh(self, server_id: int, cloud: Cloud, op: Operation) -> None:
        """A server is running when we can log in and talk to its agent (and its image is
        there: a container image is pulled on first use, its progress shown)."""
        op.progress("Connecting over SSH", 0.9)
        agent = await self.ssh.agent(server_id, lambda: self.endpoint(server_id), patient=True)
        await agent.call("ping", timeout=20)
        container = container_for(self, self.store.get(server_id))
        if container is not None and container["engine"] in ("docker", "podman"):
            image = container["image"]
            op.progress(f"Looking for the image {image}", 0.95)
            try:
                await agent.call(
                    "container_pull",
                    timeout=3600,
                    container=container,
                    progress=lambda line: op.progress(f"Pulling {image}: {line}", 0.95),
                )
            except AgentChannelError:
                raise
            except AgentError as e:
                # The agent's message already names the image, the cause and what to do;
                # the exception's type ("RuntimeError: ") says nothing to a user.
                raise AgentError(e.message.removeprefix("RuntimeError: ")) from None

    # --- SSH ------------------------------------------------------------------------------

    async def endpoint(self, server_id: int) -> SSHEndpoint:
        server = self.store.get(server_id)
        return await self.cloud_for(server).ssh_endpoint(server_id, server.cloud_data)

    def running(self, server_id: int, hint: str = "start it first.") -> ServerRecord:
        """The server, if it is running and no action is under way (a reboot keeps the state
        ``running`` while its SSH server restarts); else one 409 saying what it is."""
        server = self.store.get(server_id)
        if server.state is not State.RUNNING:
            why = f" ({server.state_reason})" if server.state is State.ERROR else ""
            raise ConflictError(
                f"Server {server.name!r} is {server.state.value}{why}; {hint}",
                state=server.state.value,
            )
        if server.operation is not None:
            raise ConflictError(
                f"Server {server.name!r} is busy ({server.operation}); try again when it is done.",
                state=server.state.value,
            )
        return server

    async def connection(self, server_id: int, doing: str = "connect") -> ServerConnection:
        """The running server's shared SSH connection (kernels, terminals and sync use it);
        within the connect timeout, or a ``ServerUnreachableError`` that says why. A server
        recorded as not answering is tried too: its kernels' channels come back the moment
        it answers, not at the next health check."""
        server = self.store.get(server_id)
        if not is_unreachable(server):
            server = self.running(server_id)
        try:
            return await self.ssh.get(server_id, lambda: self.endpoint(server_id))
        except HostKeyMismatchError:
            raise
        except SSHConnectError as e:
            raise unreachable(
                server.name, doing, e.message, interval=self.health_interval
            ) from None

    async def agent_for(self, server_id: int, hint: str = "start it first.") -> ServerAgent:
        """The running server's agent over its one SSH connection: the one way every service
        reaches a server's agent (409, naming the state and ``hint``, when it is not running;
        a ``ServerUnreachableError`` within the connect timeout when it does not answer)."""
        server = self.running(server_id, hint)
        try:
            endpoint = await self.endpoint(server_id)
            client = await self.ssh.agent(server_id, endpoint)
        except HostKeyMismatchError:
            raise
        except (SSHConnectError, AgentChannelError) as e:
            raise unreachable(
                server.name, "reach its agent", e.message, interval=self.health_interval
            ) from None
        return ServerAgent(
            client,
            endpoint,
            server.name,
            self.ssh.current(server_id),
            check_after=self.ssh.connect_timeout / 2,
            interval=self.health_interval,
            state_now=lambda: self._state_now(server_id),
        )

    def _state_now(self, server_id: int) -> State | None:
        try:
            return self.get_server(server_id).state
        except NotFoundError:
            return None

    async def metrics(self, server_id: int) -> dict[str, Any]:
        """GPU, CPU and memory use now, as the running server's agent samples them, with what
        its cloud has to tell of its GPUs (``mps_warning``)."""
        agent = await self.agent_for(server_id, "metrics need it running.")
        answer = dict(await agent.call("metrics", timeout=20))
        server = self.store.get(server_id)
        cloud = self.clouds.get(server.cloud)
        warnings = cloud.gpu_warnings(server_id) if cloud is not None else {}
        gpus = answer.get("gpus")
        if warnings and isinstance(gpus, list):
            answer["gpus"] = [
                {**gpu, "mps_warning": warnings[gpu["uuid"]]}
                if isinstance(gpu, dict) and gpu.get("uuid") in warnings
                else gpu
                for gpu in gpus
            ]
        return answer

    async def info(self, server_id: int) -> dict[str, Any]:
        """Hardware and software of a running server, as its agent reports them."""
        agent = await self.agent_for(server_id)
        return dict(await agent.call("info", workspace=agent.endpoint.workspace))

    # --- start-up and shutdown ------------------------------------------------------------

    async def reconcile(self) -> list[ServerRecord]:
        """Settle servers left mid-operation by a process that died, from the clouds' truth."""
        settled = []
        for server in self.store.servers():
            if not server.state.is_transitional or owner_alive(server.operation_owner):
                continue
            cloud = self.clouds.get(server.cloud)
            if cloud is None:
                continue
            since = None
            try:
                status = await cloud.status(server.id, server.cloud_data)
                state, reason, since = status.state, status.reason, status.since
                if status.found:
                    self.store.update_fields(
                        server.id, cloud_data={**server.cloud_data, **status.found}
                    )
            except Exception as e:
                state, reason = State.ERROR, f"could not ask the cloud: {e}"
            interrupted = f"{server.operation or 'an action'} was interrupted by a restart"
            server = self.store.transition(
                server.id,
                to=state,
                reason=f"{interrupted}; found {state.value}" + (f" ({reason})" if reason else ""),
                action="reconcile",
                at=since,
            )
            self.log.info("Reconciled compute server %s: %s", server.name, server.state_reason)
            self._emit("state", server, server.id)
            settled.append(server)
        return settled

    # --- the watch: running servers that stop on their own (spot preemption) ---------------

    def start_watching(self) -> None:
        """Check running servers of clouds with a ``watch_interval`` periodically, and the
        health of every cloud's running servers every ``health_interval``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the Jupyter server builds us before its loop runs
            loop = asyncio.get_event_loop()
        intervals = [c.watch_interval() for c in self.clouds.values() if c.watch_interval() > 0]
        if intervals and self._watch_task is None:
            self._watch_task = loop.create_task(self._watch(min(intervals)))
        if self.health_interval > 0 and self._health_task is None:
            self._health_task = loop.create_task(self._watch_health())

    # --- health: running servers whose SSH daemon, agent or machine is gone ------------------

    async def _watch_health(self) -> None:
        everything = True  # at start: every running server; then those in use
        while True:
            try:
                await self.check_health(every_running=everything)
            except Exception:  # the watch goes on whatever one round met
                self.log.exception("Checking the health of compute servers failed")
            everything = False
            await asyncio.sleep(self.health_interval)

    async def check_health(self, *, every_running: bool = True) -> list[ServerRecord]:
        """Check running servers (every one, or those this process uses: it holds their
        connection) and servers that had stopped answering; record what changed. A server
        that does not answer is asked of its cloud: a daemon that died on an intact machine
        is revived, a machine that is gone is recorded as it is found, and one that is there
        but silent goes to ``error`` saying since when, until it answers again."""
        checks = []
        for server in self.store.servers():
            unreachable = is_unreachable(server)
            if (server.state is not State.RUNNING and not unreachable) or (
                server.operation is not None
                or (server.id in self._tasks and not self._tasks[server.id].done())
                or server.cloud not in self.clouds
            ):
                continue
            if every_running or unreachable or self.ssh.known(server.id):
                checks.append(self._check_health(server))
        results = await asyncio.gather(*checks, return_exceptions=True)
        changed = []
        for result in results:
            if isinstance(result, ServerRecord):
                changed.append(result)
            elif isinstance(result, BaseException):
                self.log.warning("A health check failed: %s", result)
        return changed

    async def _probe(self, server_id: int) -> str | None:
        """None when the server answers one SSH round trip within the connect timeout, else
        why not."""
        timeout = self.ssh.connect_timeout
        connection: ServerConnection | None = None
        try:
            connection = await self.ssh.get(server_id, lambda: self.endpoint(server_id))
            await connection.ping(timeout)
        except ComputeServersError as e:
            return e.message
        except asyncio.TimeoutError:
            if connection is not None:
                connection.connection.abort()
            return f"no answer within {timeout:g} s"
        except (ConnectionError, OSError) as e:
            return str(e) or type(e).__name__
        self._answered[server_id] = time.time()
        return None

    async def _check_health(self, server: ServerRecord) -> ServerRecord | None:
        cloud = self.clouds[server.cloud]
        unreachable = is_unreachable(server)
        problem = await self._probe(server.id)
        if problem is None:
            if not unreachable:
                return None
            since = (server.state_reason or "")[len(UNREACHABLE) :].split(" ", 1)[0]
            return self._record_health(
                server,
                State.RUNNING,
                f"answering again over SSH (it had not answered since {since})",
                "answering",
            )
        try:
            status = await cloud.status(server.id, server.cloud_data)
        except Exception as e:
            self.log.warning("Could not ask %s's cloud how it is: %s", server.name, e)
            status = None
        if status is not None and status.state is not State.RUNNING:
            # The daemon or the whole machine is gone: bring the daemon back if the cloud
            # can (the machine is intact), else record what the cloud found.
            try:
                revived = await cloud.revive(self._operation(server))
            except Exception as e:
                self.log.warning("Could not revive %s: %s", server.name, e)
                revived = None
            await self.ssh.close(server.id)
            if revived:
                self.log.warning("Compute server %s: %s", server.name, revived)
                recorded = self._record_health(server, State.RUNNING, revived, "revived")
                self.notify("kernels", server.id)
                return recorded
            return self._record_health(
                server,
                status.state,
                status.reason or f"found {status.state.value}",
                "found",
                at=status.since,
            )
        if unreachable:
            return None  # still silent: recorded already
        since = time.strftime(
            "%H:%M:%S", time.localtime(self._answered.get(server.id) or time.time())
        )
        return self._record_health(
            server,
            State.ERROR,
            f"{UNREACHABLE}{since} ({problem}). Its kernels keep running there and are found "
            f"again when it answers; it is checked every {self.health_interval:g} s. If it "
            f"stays so, stop it and start it again.",
            "unreachable",
        )

    def _record_health(
        self, server: ServerRecord, state: State, reason: str, action: str, at: float | None = None
    ) -> ServerRecord | None:
        try:
            recorded = self.store.transition(
                server.id,
                to=state,
                expected=frozenset({server.state}),
                reason=reason,
                action=action,
                at=at,
            )
        except ConflictError:
            return None  # an action began meanwhile: its outcome stands
        self.log.warning("Compute server %s: %s", server.name, reason)
        self._emit("state", recorded, server.id)
        return recorded

    async def _watch(self, interval: float) -> None:
        last: dict[str, float] = {}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = {
                name
                for name, cloud in self.clouds.items()
                if cloud.watch_interval() > 0
                and now - last.get(name, 0.0) >= cloud.watch_interval() * 0.99
            }
            last.update(dict.fromkeys(due, now))
            try:
                await self.watch_once(due)
            except Exception:  # the watch goes on whatever one round met
                self.log.exception("Checking running compute servers failed")

    async def watch_once(self, cloud_names: set[str] | None = None) -> list[ServerRecord]:
        """Ask the clouds about their running servers (no action in flight); record each one
        found stopped, with the cloud's reason and a ``preempted`` event when the provider
        took it back, and start it again when the cloud says so. Answers those recorded."""
        changed = []
        for server in self.store.servers():
            cloud = self.clouds.get(server.cloud)
            if (
                cloud is None
                or server.state is not State.RUNNING
                or cloud.watch_interval() <= 0
                or (cloud_names is not None and server.cloud not in cloud_names)
                or server.operation is not None
                or (server.id in self._tasks and not self._tasks[server.id].done())
            ):
                continue
            try:
                status = await cloud.status(server.id, server.cloud_data)
            except Exception as e:
                self.log.warning("Could not ask %s's cloud how it is: %s", server.name, e)
                continue
            if status.state is State.RUNNING:
                # Told once per run: a server started again may be told again.
                if not status.ending_soon:
                    self._ending_told.discard(server.id)
                elif server.id not in self._ending_told:
                    self._ending_told.add(server.id)
                    self._emit("ending_soon", server, server.id, message=status.ending_soon)
                continue
            try:
                server = self.store.transition(
                    server.id,
                    to=status.state,
                    expected=frozenset({State.RUNNING}),
                    reason=status.reason or f"found {status.state.value}",
                    action="preempted" if status.preempted else "found",
                    at=status.since,
                )
            except ConflictError:
                continue  # an action began meanwhile: its outcome stands
            # Told at once, as recorded; then its connection is closed.
            self.log.warning("Compute server %s: %s", server.name, server.state_reason)
            self._emit("preempted" if status.preempted else "state", server, server.id)
            await self.ssh.close(server.id)
            changed.append(server)
            if status.restart:
                try:
                    self.request_action(
                        server.id, Action.START.value, reason="started again after preemption"
                    )
                except ComputeServersError as e:
                    self.log.warning("Could not start %s again: %s", server.name, e.message)
        return changed

    async def shutdown(self, *, stop_servers: Callable[[Cloud], bool] | None = None) -> None:
        """Jupyter is stopping: let operations finish briefly, stop servers whose cloud asks
        for it, and close every connection."""
        for task in (self._watch_task, self._health_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch_task = self._health_task = None
        pending = [task for task in self._tasks.values() if not task.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=10)
            for task in still:
                task.cancel()
        if stop_servers is not None:
            for server in self.store.servers():
                cloud = self.clouds.get(server.cloud)
                up = server.state is State.RUNNING or is_unreachable(server)
                if cloud is not None and up and stop_servers(cloud):
                    try:
                        self.request_action(server.id, Action.STOP.value)
                        await self.wait_for_action(server.id)
                    except ComputeServersError as e:
                        self.log.warning("Could not stop %s at shutdown: %s", server.name, e)
        await self.ssh.close_all()
        for name, cloud in self.clouds.items():
            try:
                await cloud.close()
            except Exception as e:  # one cloud's failure must not keep the others open
                self.log.warning("Could not close the %s cloud: %s", name, e)
