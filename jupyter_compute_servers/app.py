"""The Jupyter Server extension: configuration (``c.ComputeServersApp.*``) and wiring."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, List, Type, Unicode, default

from . import __version__
from .billing.service import ComputeServerCosts
from .clouds import Cloud, load_cloud_class
from .handlers.routes import api_handlers
from .images.catalog import ImageCatalog
from .kernels.provisioner import ComputeServerProvisioner
from .kernels.runtime import KernelRuntime, set_server_runtime
from .kernels.specs import KernelSpecPublisher
from .manager import ComputeServerManager
from .ssh import KeyStore, SSHConnections
from .store import ServerStore
from .sync.service import SyncService
from .terminals import RemoteTerminals

EVENT_SCHEMA_PATH = Path(__file__).parent / "event_schemas" / "server-v1.json"
EVENT_SCHEMA_ID = "https://events.jupyter.org/jupyter_compute_servers/server/v1"


class ComputeServersApp(ExtensionApp):
    """Compute servers for Jupyter: machines that run kernels, terminals and file sync."""

    name = "jupyter_compute_servers"
    app_name = "Compute Servers"
    description = __doc__
    version = __version__
    load_other_extensions = True

    data_dir = Unicode(
        help=(
            "Where compute servers keep their files: the database (unless db_url says "
            "otherwise), SSH keys, and the local cloud's sandboxes. Defaults to "
            "<jupyter data dir>/compute_servers."
        ),
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "compute_servers")

    db_url = Unicode(
        help=(
            "Database URL of the server store, e.g. sqlite:////shared/team/servers.db for one "
            "store shared by a team. Defaults to a SQLite file in data_dir."
        ),
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return f"sqlite:///{Path(self.data_dir) / 'servers.db'}"

    enabled_clouds = List(
        Unicode(),
        default_value=["local"],
        help=(
            "Names of the clouds users may create compute servers on, in the order the UI "
            "offers them (the first is the default). Each is an entry point in the "
            "'jupyter_compute_servers.clouds' group."
        ),
    ).tag(config=True)

    manager_class = Type(
        default_value=ComputeServerManager,
        klass=ComputeServerManager,
        help="The service class that owns the servers' lifecycle; replace to customise it.",
    ).tag(config=True)

    ssh_keepalive_interval = Float(
        15.0,
        help="Seconds between SSH keep-alives on each server's connection.",
    ).tag(config=True)

    ssh_connect_timeout = Float(
        15.0,
        help="Seconds to wait for one SSH connection attempt to a server.",
    ).tag(config=True)

    reconcile_on_start = Bool(
        True,
        help=(
            "When Jupyter starts, settle servers that a crash left mid-operation by asking "
            "their clouds what they really are."
        ),
    ).tag(config=True)

    kernel_specs_dir = Unicode(
        help=(
            "Where the kernel specs of compute servers (compute-<id>-<kernel>) are written. "
            "Defaults to the kernels directory of the Jupyter data dir, which every "
            "jupyter_client finds, so `jupyter console --kernel compute-1-python3` works too; "
            "the extension also adds it to the Jupyter server's kernel search path."
        ),
    ).tag(config=True)

    @default("kernel_specs_dir")
    def _default_kernel_specs_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "kernels")

    shutdown_kernels_on_exit = Bool(
        True,
        help=(
            "When Jupyter stops cleanly, shut down the kernels it started on compute servers. "
            "When False they keep running there (and keep their GPUs); the sidebar lists them "
            "so they can be shut down later."
        ),
    ).tag(config=True)

    image_catalog = Unicode(
        "",
        help=(
            "The image catalogue: a path or an http(s) URL of a JSON document (see "
            "jupyter_compute_servers/images/catalog.schema.json). Empty: the one shipped with "
            "the package. Reload it with POST compute-servers/api/images/reload."
        ),
    ).tag(config=True)

    def build_clouds(self) -> dict[str, Cloud]:
        clouds: dict[str, Cloud] = {}
        for name in self.enabled_clouds:
            cls = load_cloud_class(name)
            clouds[name] = cls(parent=self, data_dir=str(Path(self.data_dir) / name))
        return clouds

    def build_manager(self, *, sync_root: str | None = None, **kwargs: Any) -> ComputeServerManager:
        """The manager over this configuration's store and clouds; the CLI uses it too.
        ``sync_root`` is the tree servers sync with (the Jupyter root; default: the current
        directory)."""
        data_dir = Path(self.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = KeyStore(data_dir / "keys")
        ssh = SSHConnections(
            keys,
            keepalive_interval=self.ssh_keepalive_interval,
            connect_timeout=self.ssh_connect_timeout,
        )
        manager = self.manager_class(
            ServerStore(self.db_url, clock=time.time),
            self.build_clouds(),
            keys,
            ssh,
            log=self.log,
            **kwargs,
        )
        manager.images = ImageCatalog(self.image_catalog, data_dir / "images-tested.json")
        manager.images.load_or_default()
        if manager.images.load_error:
            self.log.error("%s; using the built-in catalogue.", manager.images.load_error)
        for cloud in manager.clouds.values():
            cloud.bind(manager)
        manager.billing = ComputeServerCosts(manager, parent=self)
        manager.listeners.append(manager.billing.on_event)
        publisher = KernelSpecPublisher(manager, self.kernel_specs_dir, str(data_dir))
        manager.kernel_specs = publisher
        manager.listeners.append(publisher.on_event)
        # Kernels are synced before they start only where the root is known: the Jupyter
        # server's root_dir (elsewhere, jupyter execute or nbclient, the root would be a guess).
        manager.sync = SyncService(
            manager,
            sync_root or os.getcwd(),
            data_dir / "sync",
            before_kernels=sync_root is not None,
        )
        return manager

    def initialize_settings(self) -> None:
        assert self.serverapp is not None and self.serverapp.event_logger is not None
        event_logger = self.serverapp.event_logger
        event_logger.register_event_schema(EVENT_SCHEMA_PATH)

        def publish(data: dict[str, Any]) -> None:
            event_logger.emit(schema_id=EVENT_SCHEMA_ID, data=data)

        self.manager = self.build_manager(on_event=publish, sync_root=self.serverapp.root_dir)
        self.settings["compute_servers_manager"] = self.manager
        self.kernel_specs = self.manager.kernel_specs
        assert self.kernel_specs is not None
        try:
            self.kernel_specs.sync()
        except OSError as e:
            self.log.error(
                "Cannot write compute servers' kernel specs to %s: %s", self.kernel_specs_dir, e
            )
        self._add_kernel_specs_dir()
        self.kernel_runtime = KernelRuntime(
            self.manager, asyncio.get_event_loop(), self.serverapp.root_dir
        )
        set_server_runtime(self.kernel_runtime)
        self.settings["compute_servers_kernel_runtime"] = self.kernel_runtime
        terminals = RemoteTerminals(self.manager)
        self.settings["compute_servers_terminals"] = terminals
        costs = self.manager.billing
        assert costs is not None
        costs.attach(self.serverapp.kernel_manager, self.kernel_runtime)
        terminals.on_input = costs.activity.terminal_input
        costs.start()
        self._reconcile_task: asyncio.Task[Any] | None = None
        if self.reconcile_on_start:
            self._reconcile_task = asyncio.get_event_loop().create_task(self.manager.reconcile())
        assert self.manager.sync is not None
        self.manager.sync.start_schedule()
        # Running servers that stop on their own (preempted spot VMs) are noticed and recorded.
        self.manager.start_watching()

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers())

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

    async def stop_extension(self) -> None:
        await self._end_remote_kernels()
        if self.kernel_specs is not None:
            await self.kernel_specs.close()
        set_server_runtime(None)
        if self.manager.sync is not None:
            await self.manager.sync.close()
        if self.manager.billing is not None:
            await self.manager.billing.close()
        await self.manager.shutdown(
            stop_servers=lambda cloud: bool(getattr(cloud, "stop_on_shutdown", False))
        )
        self.manager.store.close()
