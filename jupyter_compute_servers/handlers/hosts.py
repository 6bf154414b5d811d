"""REST handlers for on-prem hosts, and for a running server's live metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import AUTH_RESOURCE, ComputeServersAPIHandler

if TYPE_CHECKING:
    from ..hosts import HostRecord


class _SharedHostsMixin(ComputeServersAPIHandler):
    def _shared_host_change(self, what: str) -> None:
        """In team mode hosts are shared: only an admin changes them, or confirms the key a
        machine answered with (a user could point a shared host at a machine they control)."""
        if self.team.enabled:
            self.require_admin(what)


async def _python_needs_execute(handler: ComputeServersAPIHandler, body: dict[str, Any]) -> None:
    """A host's ``python`` is the program run there with the user's login: choosing it is
    running code, so it needs ``execute`` besides ``write``."""
    if "python" not in body:
        return
    allowed = await ensure_async(
        handler.authorizer.is_authorized(handler, handler.current_user, "execute", AUTH_RESOURCE)
    )
    if not allowed:
        raise web.HTTPError(
            403, f"Setting a host's python needs permission to execute on {AUTH_RESOURCE}."
        )


def _hosts_json(handler: ComputeServersAPIHandler, records: list[HostRecord]) -> list[Any]:
    """Hosts as the caller may see them: an admin (always so standalone) also sees who holds
    which slice (``slices``: server, owner, account); a team's user does not see the others'
    servers there."""
    found = [host.to_json() for host in records]
    if handler.identity.admin:
        held = handler.hosts.hosts.holders()
        for host in found:
            host["slices"] = held.get(host["id"], [])
    return found


class HostsHandler(_SharedHostsMixin):
    """``GET /hosts``: registered hosts. ``POST /hosts``: register one."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"hosts": _hosts_json(self, self.hosts.hosts.hosts())})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self._shared_host_change("register a host")
        body = self.get_json_object(required=True)
        await _python_needs_execute(self, body)
        host = await self.hosts.create(body)
        self.set_header("Location", self.request.path.rstrip("/") + f"/{host.id}")
        self.write_json(host.to_json(), status=201)


class HostHandler(_SharedHostsMixin):
    """``GET``/``PATCH``/``DELETE /hosts/{id}`` (PATCH ``trust_host_key`` confirms its key)."""

    @web.authenticated
    @authorized
    async def get(self, host_id: str) -> None:
        host = self.hosts.hosts.get(self.path_id(host_id, "host_id", "host"))
        self.write_json(_hosts_json(self, [host])[0])

    @web.authenticated
    @authorized
    async def patch(self, host_id: str) -> None:
        self._shared_host_change("change a host or confirm its key")
        body = self.get_json_object(required=True)
        await _python_needs_execute(self, body)
        host = await self.hosts.update(self.path_id(host_id, "host_id", "host"), body)
        self.write_json(host.to_json())

    @web.authenticated
    @authorized
    async def delete(self, host_id: str) -> None:
        self._shared_host_change("delete a host")
        await self.hosts.delete(self.path_id(host_id, "host_id", "host"))
        self.set_status(204)
        self.finish()


class HostInventoryHandler(ComputeServersAPIHandler):
    """``POST /hosts/{id}/inventory``: log in and take the inventory again."""

    @web.authenticated
    @authorized
    async def post(self, host_id: str) -> None:
        host = await self.hosts.refresh(self.path_id(host_id, "host_id", "host"))
        self.write_json(host.to_json())


class ServerMetricsHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/metrics``: GPU, CPU and memory use, sampled on the server now (by
    its agent, started there if it is not running yet)."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json(await self.manager.metrics(self.path_id(server_id)))
