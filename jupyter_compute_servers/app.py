"""The Jupyter Server extension: turns the services into handler settings and routes.

Everything is built by ``services.build_services`` from the settings (``config.py``), the same
way the CLI and the standalone kernel runtime build them; this module adds only what needs the
Jupyter server: its event bus, its kernel manager and root directory, the routes, and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool

from . import __version__
from .config import ComputeServersSettings
from .handlers.apps import close_proxy_session
from .handlers.kernel_websocket import without_nagle
from .handlers.kernels import kernel_action_handlers, remote_kernel_error
from .handlers.routes import api_handlers, proxy_handlers
from .kernels.adoption import adopt_orphan_kernels
from .kernels.provisioner import ComputeServerProvisioner
from .kernels.runtime import KernelRuntime, set_server_runtime
from .services import Services, build_services

EVENT_SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "server-v1.json"
EVENT_SCHEMA_ID = "https://events.jupyter.org/jupyter_compute_servers/server/v1"
#: Seconds a sessions request waits for the kernels of compute servers to be adopted.
ADOPTION_WAIT = 30.0


class ComputeServersApp(ComputeServersSettings, ExtensionApp):
    """Compute servers for Jupyter: machines that run kernels, terminals and file sync.

    Its options are ``ComputeServersSettings``' (``c.ComputeServersApp.*``); the settings come
    first so that their ``data_dir`` is ours, not JupyterApp's."""

    name = "jupyter_compute_servers"
    app_name = "Compute Servers"
    description = __doc__
    version = __version__
    load_other_extensions = True

    adopt_orphan_kernels = Bool(
        True,
        help=(
            "When Jupyter starts, take over the kernels on running compute servers whose "
            "Jupyter is gone (it crashed, or stopped leaving them running): they are back in "
            "the kernel list with their own ids and state, and open notebooks reconnect."
        ),
    ).tag(config=True)

    kernel_websocket_nodelay = Bool(
        True,
        help=(
            "Turn Nagle's algorithm off on kernel websockets (Jupyter's own connection class "
            "otherwise unchanged), so that a cell's reply and idle status reach the notebook "
            "at once instead of 40 ms later. Only when Jupyter's default connection class is "
            "in use (not a gateway's or a configured one)."
        ),
    ).tag(config=True)

    persist_sessions = Bool(
        True,
        help=(
            "Keep Jupyter's sessions (which notebook uses which kernel) in a file in the data "
            "directory, one per Jupyter root, rather than in memory, so that notebooks find "
            "their adopted kernels after a restart. Only when "
            "SessionManager.database_filepath is left at its default (:memory:)."
        ),
    ).tag(config=True)

    def initialize_settings(self) -> None:
        assert self.serverapp is not None and self.serverapp.event_logger is not None
        event_logger = self.serverapp.event_logger
        event_logger.register_event_schema(EVENT_SCHEMA_PATH)

        def publish(data: dict[str, Any]) -> None:
            event_logger.emit(schema_id=EVENT_SCHEMA_ID, data=data)

        services = build_services(
            self, on_event=publish, sync_root=self.serverapp.root_dir, logger=self.log
        )
        self.services = services
        services.apps.base_url = self.serverapp.base_url
        self.manager = services.manager
        try:
            services.kernel_specs.sync()
        except OSError as e:
            self.log.error(
                "Cannot write compute servers' kernel specs to %s: %s", self.kernel_specs_dir, e
            )
        self._add_kernel_specs_dir()
        self.kernel_runtime = KernelRuntime(
            self.manager, asyncio.get_event_loop(), self.serverapp.root_dir
        )
        # Errors of remote kernels reach Jupyter's REST API (and so the Lab) with their reason.
        self.kernel_runtime.error_factory = remote_kernel_error
        set_server_runtime(self.kernel_runtime)
        self.settings.update(handler_settings(services, self.kernel_runtime))
        if self.kernel_websocket_nodelay:
            current = self.serverapp.web_app.settings.get("kernel_websocket_connection_class")
            self.settings["kernel_websocket_connection_class"] = without_nagle(current)
        services.costs.attach(self.serverapp.kernel_manager, self.kernel_runtime)
        services.costs.start()
        self._reconcile_task: asyncio.Task[Any] | None = None
        if self.reconcile_on_start:
            self._reconcile_task = asyncio.get_event_loop().create_task(self.manager.reconcile())
        loop = asyncio.get_event_loop()
        self._adopted: asyncio.Future[list[str]] = loop.create_future()
        self._sessions_lock: int | None = None
        self._keep_sessions()
        # A task, not the extension's start hook: it runs wherever the server's loop runs
        # (test fixtures never call that hook).
        self._adoption_task = loop.create_task(self._adopt_orphan_kernels())
        services.sync.start_schedule()
        # Running servers that stop on their own (preempted spot VMs) are noticed and recorded.
        self.manager.start_watching()

    async def _adopt_orphan_kernels(self) -> None:
        """Once the server's loop runs: settle interrupted operations, then take over the
        kernels whose Jupyter is gone (``kernels/adoption.py``), and mount the workspaces of
        running servers that have them mounted."""
        assert self.serverapp is not None
        adopted: list[str] = []
        try:
            if self._reconcile_task is not None:
                await self._reconcile_task
            if self.adopt_orphan_kernels:
                kernel_manager = self.serverapp.kernel_manager
                adopted = await adopt_orphan_kernels(kernel_manager, self.kernel_runtime)
        except Exception:
            self.log.exception("Adopting the kernels of compute servers failed")
        finally:
            if not self._adopted.done():
                self._adopted.set_result(adopted)
            self.log.info("Compute servers: adoption of orphan kernels done (%d)", len(adopted))
        # Servers whose workspace is mounted are mounted again (their mounts ended with the
        # Jupyter that served them).
        self.services.mounts.restore()
        # Kernels kept waiting on running servers, once the adopted ones are known.
        self.services.warm_kernels.start(self.kernel_runtime)

    def _keep_sessions(self) -> None:
        """Sessions in a file (``persist_sessions``); and until the kernels are adopted, a
        session is not judged by whether its kernel is known yet (Jupyter would delete it)."""
        assert self.serverapp is not None
        sessions = self.serverapp.session_manager
        if self.persist_sessions and sessions.database_filepath == ":memory:":
            root = str(Path(self.serverapp.root_dir).resolve())
            name = hashlib.sha256(root.encode()).hexdigest()[:16]
            path = Path(self.data_dir) / "sessions" / f"{name}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            # One Jupyter at a time per file: another one running on the same root would
            # judge this one's sessions stale (their kernels are not its own) and delete them.
            lock = os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(lock)
                self.log.warning(
                    "Another Jupyter server keeps the sessions of %s; this one keeps its own "
                    "in memory (they do not survive a restart).",
                    root,
                )
            else:
                self._sessions_lock = lock  # held (open) for the server's life
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
                sessions.database_filepath = str(path)
        judge = sessions.kernel_culled
        adopted = self._adopted

        async def kernel_culled(kernel_id: str) -> bool:
            if not adopted.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(adopted), ADOPTION_WAIT)
            return bool(await ensure_async(judge(kernel_id)))

        # An instance attribute: this Jupyter's session manager only, whatever its class.
        sessions.kernel_culled = kernel_culled

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers())
        self.handlers.extend(proxy_handlers())
        self.handlers.extend(kernel_action_handlers())

    def _add_kernel_specs_dir(self) -> None:
        """Put the specs' directory on the server's kernel search path, if it is not."""
        spec_manager = getattr(self.serverapp, "kernel_spec_manager", None)
        dirs = getattr(spec_manager, "kernel_dirs", None)
        if spec_manager is None or dirs is None:
            return
        wanted = str(Path(self.kernel_specs_dir).resolve())
        if all(str(Path(d).resolve()) != wanted for d in dirs):
            spec_manager.kernel_dirs = [*dirs, wanted]

    async def _end_remote_kernels(self) -> None:
        """Shut down (or, if so configured, leave running) the remote kernels of this
        Jupyter server, while their servers' connections are still open."""
        assert self.serverapp is not None
        kernel_manager = self.serverapp.kernel_manager
        ours = []
        for kernel_id in list(kernel_manager.list_kernel_ids()):
            provisioner = getattr(kernel_manager.get_kernel(kernel_id), "provisioner", None)
            if isinstance(provisioner, ComputeServerProvisioner):
                ours.append((kernel_id, provisioner))
        if not self.shutdown_kernels_on_exit:
            for _, provisioner in ours:
                provisioner.detached = True
            return

        async def shut_down(kernel_id: str) -> None:
            try:
                await kernel_manager.shutdown_kernel(kernel_id, now=False)
            except Exception as e:
                self.log.warning("Could not shut down remote kernel %s: %s", kernel_id, e)

        await asyncio.gather(*(shut_down(kernel_id) for kernel_id, _ in ours))

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # Jupyter's hook once its loop runs, after it set its signal handlers.
        self._stop_cleanly_on_sigint()

    def _stop_cleanly_on_sigint(self) -> None:
        """JupyterHub's local spawners stop a user's server with SIGINT (then SIGTERM after
        30 s). Without a terminal Jupyter leaves SIGINT to Python: the loop ends with a
        KeyboardInterrupt and the process exits without stopping its extensions, so remote
        kernels and the local cloud's sandboxes (``stop_on_shutdown``) were left running.
        SIGINT is made the clean stop that SIGTERM is; with a terminal, Jupyter's own
        confirmation stays."""
        stop = getattr(self.serverapp, "_signal_stop", None)
        if stop is None or (sys.stdin is not None and sys.stdin.isatty()):
            return
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, stop)

    async def stop_extension(self) -> None:
        if not self._adoption_task.done():
            self._adoption_task.cancel()
        if self._sessions_lock is not None:
            os.close(self._sessions_lock)
            self._sessions_lock = None
        await self._end_remote_kernels()
        set_server_runtime(None)
        if self.serverapp is not None:
            await close_proxy_session(self.serverapp.web_app.settings)
        await self.services.close(
            stop_servers=lambda cloud: bool(getattr(cloud, "stop_on_shutdown", False))
        )


def handler_settings(services: Services, kernel_runtime: KernelRuntime) -> dict[str, Any]:
    """What the handlers read from ``self.settings``: one key per service they use."""
    return {
        "compute_servers_manager": services.manager,
        "compute_servers_team": services.team,
        "compute_servers_store": services.store,
        "compute_servers_presenter": services.presenter,
        "compute_servers_queue": services.queue,
        "compute_servers_revocations": services.revocations,
        "compute_servers_costs": services.costs,
        "compute_servers_sync": services.sync,
        "compute_servers_mounts": services.mounts,
        "compute_servers_hosts": services.hosts,
        "compute_servers_images": services.images,
        "compute_servers_clouds": services.clouds,
        "compute_servers_terminals": services.terminals,
        "compute_servers_apps": services.apps,
        "compute_servers_kernel_specs": services.kernel_specs,
        "compute_servers_kernel_runtime": kernel_runtime,
    }
