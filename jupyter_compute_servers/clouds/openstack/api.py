"""The connection to OpenStack: credentials from clouds.yaml (OpenStack's own convention) or the
cloud's settings, one openstacksdk ``Connection``, and its blocking calls run in threads with
errors worded (``errors.explain``). Credentials never leave this module: not in logs, not in
offerings, not in errors.

In team mode (a control plane configured) clouds.yaml and ``auth`` are never read: the
connection's credential is a short-lived token of the user's own project that the control
plane issues and renews (``issued``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ...control_plane_client import ControlPlaneClient
from .errors import OpenStackError, explain

if TYPE_CHECKING:
    import logging

    from openstack.connection import Connection

    from ..base import CloudServices

T = TypeVar("T")


class ApiAccess:
    """The API access of ``OpenStackCloud`` (a part of it: it uses the cloud's settings)."""

    cloud: str
    clouds_yaml: str
    auth: dict[str, Any]
    region_name: str
    api_timeout: float
    log: logging.Logger
    _services: CloudServices | None

    def _api_init(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="openstack")
        self._connection: Connection | None = None
        self._connection_lock = threading.Lock()
        #: Team mode's token plugin, once connected (its project's name, how many tokens).
        self._issued_plugin: Any = None

    def _connect(self) -> Connection:
        """The connection, made on first use (in a worker thread: it may read files)."""
        import openstack
        import openstack.config
        from openstack import exceptions as sdk

        with self._connection_lock:
            if self._connection is not None:
                return self._connection
            control_plane = self._services.control_plane if self._services else None
            if control_plane is not None:
                self._connection = self._connect_issued(control_plane)
                return self._connection
            try:
                if self.auth:
                    region = openstack.config.OpenStackConfig(load_yaml_config=False).get_one(
                        auth=dict(self.auth),
                        region_name=self.region_name or None,
                        api_timeout=self.api_timeout,
                    )
                else:
                    files = [self.clouds_yaml] if self.clouds_yaml else None
                    config = openstack.config.OpenStackConfig(config_files=files)
                    region = config.get_one(
                        cloud=self.cloud or None,
                        region_name=self.region_name or None,
                        api_timeout=self.api_timeout,
                    )
            except sdk.ConfigException as e:
                raise OpenStackError(
                    f"No usable OpenStack configuration: {e}. Put the cloud in clouds.yaml "
                    f"(~/.config/openstack/clouds.yaml, or c.OpenStackCloud.clouds_yaml) and name "
                    f"it with c.OpenStackCloud.cloud, or set c.OpenStackCloud.auth."
                ) from None
            self._connection = openstack.connection.Connection(config=region)
            return self._connection

    def _connect_issued(self, control_plane: ControlPlaneClient) -> Connection:
        """Team mode: a connection whose token is the control plane's (asked now, so that a
        refusal reads as the control plane's reason). Blocking, under ``_connection_lock``."""
        import openstack.connection
        from keystoneauth1.session import Session

        from .issued import IssuedToken, ask

        if self.clouds_yaml or self.auth or self.cloud:
            self.log.warning(
                "c.OpenStackCloud.clouds_yaml, cloud and auth are ignored in team mode with a "
                "control plane: OpenStack is called with tokens of your own project that the "
                "control plane issues."
            )
        plugin = IssuedToken(lambda: ask(control_plane))
        session = Session(auth=plugin, timeout=self.api_timeout)
        plugin.get_access(session)
        connection = openstack.connection.Connection(
            session=session,
            region_name=self.region_name or plugin.region or None,
            api_timeout=self.api_timeout,
        )
        self._issued_plugin = plugin
        return connection

    def _issued_project(self) -> str:
        """Team mode: the name of the project of the token the control plane issued."""
        return str(self._issued_plugin.project_name) if self._issued_plugin else ""

    async def _call(self, doing: str, function: Callable[[Connection], T]) -> T:
        """Run ``function(connection)`` in a thread; errors worded with ``doing``."""

        def run() -> T:
            try:
                return function(self._connect())
            except OpenStackError:
                raise
            except Exception as e:  # openstacksdk, keystoneauth, requests: all worded
                raise explain(e, doing) from None

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    def _api_close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
