"""Access to the Compute Engine API: credentials, the ``compute_v1`` clients over REST, calls
run on the cloud's own threads (failures as ``GoogleError``), calls on a VM or disk in its
project and zone, and waiting for zone operations on the configured endpoint (the library's own
polling would ask Google's default one).

``ApiAccess`` is a part of ``GCPCloud`` (``cloud.py``): it uses the cloud's settings and state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import CloudError
from ..base import Operation
from .errors import GoogleError, _from_api_exception, _operation_error

if TYPE_CHECKING:
    from google.cloud import compute_v1

    from ...control_plane_client import ControlPlaneClient
    from ..base import CloudServices

T = TypeVar("T")

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def _load_credentials_file(path: str) -> tuple[Any, str]:
    """Credentials and project from a service account key or an authorized-user file (what
    ``gcloud auth application-default login`` writes). Other kinds (workload identity
    federation) go through Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS."""
    import json

    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    with open(path) as f:
        info = json.load(f)
    kind = info.get("type") if isinstance(info, dict) else None
    if kind == "service_account":
        credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
        return credentials, str(info.get("project_id") or "")
    if kind == "authorized_user":
        credentials = user_credentials.Credentials.from_authorized_user_info(info, scopes=SCOPES)
        return credentials, str(info.get("quota_project_id") or "")
    raise ValueError(
        f"it is a {kind!r} file; c.GCPCloud.credentials_file takes a service account key or an "
        f"authorized-user file (point GOOGLE_APPLICATION_CREDENTIALS at other kinds instead)"
    )


@dataclass
class _Where:
    """The VM a server has: project, zone and instance name (from ``cloud_data``)."""

    project: str
    zone: str
    instance: str

    @property
    def disk(self) -> str:
        return self.instance


class _Clients:
    """The compute_v1 clients, over REST, on one endpoint with one set of credentials."""

    def __init__(self, credentials: Any, endpoint: str) -> None:
        from google.cloud import compute_v1

        options = {"api_endpoint": endpoint} if endpoint else None
        kwargs: dict[str, Any] = {
            "credentials": credentials,
            "client_options": options,
            "transport": "rest",
        }
        self.instances = compute_v1.InstancesClient(**kwargs)
        # Operations are waited for here, on the same endpoint (the library's own polling
        # would ask Google's default endpoint).
        self.operations = compute_v1.ZoneOperationsClient(**kwargs)
        self.disks = compute_v1.DisksClient(**kwargs)
        self.zones = compute_v1.ZonesClient(**kwargs)
        self.accelerators = compute_v1.AcceleratorTypesClient(**kwargs)


class ApiAccess:
    """Credentials, clients and calls of ``GCPCloud``."""

    # What GCPCloud provides: its settings ...
    project: str
    credentials_file: str
    api_endpoint: str
    operation_timeout: float
    poll_interval: float
    log: logging.Logger
    # ... and its state (see GCPCloud.__init__).
    _executor: ThreadPoolExecutor
    _lock: threading.Lock
    _auth: tuple[Any, str] | None
    _auth_error: tuple[float, str] | None
    _clients: _Clients | None
    _services: CloudServices | None

    # --- credentials and clients -------------------------------------------------------------

    def _credentials(self) -> tuple[Any, str]:
        """(credentials, project), or a CloudError saying what is missing. Blocking."""
        import google.auth
        from google.auth import exceptions as auth_exceptions

        with self._lock:
            if self._auth is not None:
                return self._auth
            if self._auth_error is not None and time.monotonic() - self._auth_error[0] < 30:
                raise CloudError(self._auth_error[1])
            control_plane = self._services.control_plane if self._services else None
            if control_plane is not None:
                return self._through_control_plane(control_plane)
            project: str | None
            try:
                if self.credentials_file:
                    credentials, project = _load_credentials_file(self.credentials_file)
                else:
                    credentials, project = google.auth.default(scopes=SCOPES)
            except (auth_exceptions.GoogleAuthError, OSError, ValueError, KeyError) as e:
                source = (
                    f"the credentials file {self.credentials_file}"
                    if self.credentials_file
                    else "Application Default Credentials"
                )
                reason = (
                    f"No Google Cloud credentials: {source} could not be loaded ({e}). Run "
                    f"`gcloud auth application-default login`, or set "
                    f"c.GCPCloud.credentials_file to a service account key file."
                )
                self._auth_error = (time.monotonic(), reason)
                raise CloudError(reason) from None
            project = self.project or project or ""
            if not project:
                reason = (
                    "No Google Cloud project: set c.GCPCloud.project (or GOOGLE_CLOUD_PROJECT)."
                )
                self._auth_error = (time.monotonic(), reason)
                raise CloudError(reason)
            self._auth = (credentials, project)
            self._clients = _Clients(credentials, self.api_endpoint)
            return self._auth

    def _through_control_plane(self, control_plane: ControlPlaneClient) -> tuple[Any, str]:
        """Team mode: the control plane's proxy is the endpoint and the Hub token the only
        credential; ``credentials_file`` (and Application Default Credentials) are never
        read, so a key configured by mistake for users' servers gives them nothing. Blocking,
        under ``_lock``."""
        from . import proxy

        if self.credentials_file:
            self.log.warning(
                "c.GCPCloud.credentials_file is ignored in team mode with a control plane: "
                "Compute Engine is called through the control plane, which holds the key."
            )
        try:
            project = self.project or proxy.project(control_plane)
        except CloudError as e:
            self._auth_error = (time.monotonic(), e.message)
            raise
        credentials = proxy.HubTokenCredentials(control_plane.token)
        self._auth = (credentials, project)
        self._clients = _Clients(credentials, proxy.endpoint(control_plane))
        return self._auth

    async def _api(self) -> tuple[_Clients, str]:
        _, project = await self._thread(self._credentials)
        assert self._clients is not None
        return self._clients, project

    async def _thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking library code on this cloud's own threads (an operation's wait holds
        one for up to two minutes; the loop's default executor is for everyone)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args, **kwargs)
        )

    async def _call(self, doing: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API call in a thread; its failure as a GoogleError saying what we were doing."""
        kwargs.setdefault("timeout", 60.0)
        try:
            return await self._thread(fn, *args, **kwargs)
        except Exception as e:
            raise _from_api_exception(e, doing) from None

    async def _wait(
        self,
        clients: _Clients,
        where: _Where,
        operation: compute_v1.Operation,
        doing: str,
        op: Operation | None = None,
    ) -> None:
        """Wait for a zone operation (``zoneOperations.wait``) and raise its errors."""
        from google.cloud import compute_v1

        deadline = time.monotonic() + self.operation_timeout
        while operation.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise CloudError(
                    f"Could not {doing}: Compute Engine's operation {operation.name} did not "
                    f"finish within {self.operation_timeout:g} s."
                )
            try:
                # Google answers a wait when the operation is done, or after about 2 minutes.
                operation = await self._call(
                    doing,
                    clients.operations.wait,
                    project=where.project,
                    zone=where.zone,
                    operation=operation.name,
                    timeout=150.0,
                )
            except GoogleError as e:
                if e.http_status is not None and e.http_status < 500:
                    raise
                # A dropped connection or a 5xx says nothing about the operation: ask again.
                self.log.warning("Waiting for %s: %s; asking again", operation.name, e.message)
                await asyncio.sleep(min(self.poll_interval * 5, 10))
        if operation.error.errors:
            raise _operation_error(operation, doing)

    async def _operate(
        self,
        clients: _Clients,
        where: _Where,
        doing: str,
        method: Callable[..., compute_v1.Operation],
        op: Operation | None,
        **fields: Any,
    ) -> None:
        """One call on the server's VM or disk (in its project and zone), waited for."""
        operation = await self._call(
            doing, method, project=where.project, zone=where.zone, **fields
        )
        await self._wait(clients, where, operation, doing, op)

    # --- looking at the VM -----------------------------------------------------------------------

    async def _get(self, clients: _Clients, where: _Where) -> compute_v1.Instance | None:
        """The instance, or None when it does not exist."""
        try:
            return await self._call(
                f"look at VM {where.instance}",
                clients.instances.get,
                project=where.project,
                zone=where.zone,
                instance=where.instance,
            )
        except GoogleError as e:
            if e.not_found:
                return None
            raise

    async def _attributes(self, clients: _Clients, where: _Where, path: str) -> dict[str, str]:
        """Guest attributes under ``path`` (``hostkeys/``), key -> value; none yet is {}."""
        from google.cloud import compute_v1

        request = compute_v1.GetGuestAttributesInstanceRequest(
            project=where.project, zone=where.zone, instance=where.instance, query_path=path
        )
        try:
            answer = await self._call(
                "read the VM's guest attributes",
                clients.instances.get_guest_attributes,
                request=request,
            )
        except GoogleError as e:
            if e.not_found:
                return {}
            raise
        return {item.key: item.value for item in answer.query_value.items}
