"""The Jupyter Server extension: configuration (``c.ComputeServersApp.*``) and wiring."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, List, Type, Unicode, default

from . import __version__
from .clouds import Cloud, load_cloud_class
from .handlers.routes import api_handlers
from .manager import ComputeServerManager
from .ssh import KeyStore, SSHConnections
from .store import ServerStore

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

    def build_clouds(self) -> dict[str, Cloud]:
        clouds: dict[str, Cloud] = {}
        for name in self.enabled_clouds:
            cls = load_cloud_class(name)
            clouds[name] = cls(parent=self, data_dir=str(Path(self.data_dir) / name))
        return clouds

    def build_manager(self, **kwargs: Any) -> ComputeServerManager:
        """The manager over this configuration's store and clouds; the CLI uses it too."""
        data_dir = Path(self.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        keys = KeyStore(data_dir / "keys")
        ssh = SSHConnections(
            keys,
            keepalive_interval=self.ssh_keepalive_interval,
            connect_timeout=self.ssh_connect_timeout,
        )
        return self.manager_class(
            ServerStore(self.db_url, clock=time.time),
            self.build_clouds(),
            keys,
            ssh,
            log=self.log,
            **kwargs,
        )

    def initialize_settings(self) -> None:
        assert self.serverapp is not None and self.serverapp.event_logger is not None
        event_logger = self.serverapp.event_logger
        event_logger.register_event_schema(EVENT_SCHEMA_PATH)

        def publish(data: dict[str, Any]) -> None:
            event_logger.emit(schema_id=EVENT_SCHEMA_ID, data=data)

        self.manager = self.build_manager(on_event=publish)
        self.settings["compute_servers_manager"] = self.manager
        self._reconcile_task: asyncio.Task[Any] | None = None
        if self.reconcile_on_start:
            self._reconcile_task = asyncio.get_event_loop().create_task(self.manager.reconcile())

    def initialize_handlers(self) -> None:
        self.handlers.extend(api_handlers())

    async def stop_extension(self) -> None:
        await self.manager.shutdown(
            stop_servers=lambda cloud: bool(getattr(cloud, "stop_on_shutdown", False))
        )
        self.manager.store.close()
