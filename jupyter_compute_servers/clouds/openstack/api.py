"""The connection to OpenStack: credentials from clouds.yaml (OpenStack's own convention) or the
cloud's settings, one openstacksdk ``Connection``, and its blocking calls run in threads with
errors worded (``errors.explain``). Credentials never leave this module: not in logs, not in
offerings, not in errors.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import OpenStackError, explain

if TYPE_CHECKING:
    from openstack.connection import Connection

T = TypeVar("T")


class ApiAccess:
    """The API access of ``OpenStackCloud`` (a part of it: it uses the cloud's settings)."""

    cloud: str
    clouds_yaml: str
    auth: dict[str, Any]
    region_name: str
    api_timeout: float

    def _api_init(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="openstack")
        self._connection: Connection | None = None
        self._connection_lock = threading.Lock()

    def _connect(self) -> Connection:
        """The connection, made on first use (in a worker thread: it may read files)."""
        import openstack
        import openstack.config
        from openstack import exceptions as sdk

        with self._connection_lock:
            if self._connection is not None:
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
