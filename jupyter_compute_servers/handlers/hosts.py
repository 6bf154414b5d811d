"""REST handlers for on-prem hosts, and for a running server's live metrics."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import ConflictError
from ..models import State
from .base import ComputeServersAPIHandler


class HostsHandler(ComputeServersAPIHandler):
    """``GET /hosts``: registered hosts. ``POST /hosts``: register one."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        hosts = self.app.manager.hosts.hosts.hosts()
        self.write_json({"hosts": [host.to_json() for host in hosts]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        host = await self.app.manager.hosts.create(self.get_json_object())
        self.set_header("Location", self.request.path.rstrip("/") + f"/{host.id}")
        self.write_json(host.to_json(), status=201)


class HostHandler(ComputeServersAPIHandler):
    """``GET``/``PATCH``/``DELETE /hosts/{id}`` (PATCH ``trust_host_key`` confirms its key)."""

    @web.authenticated
    @authorized
    async def get(self, host_id: str) -> None:
        self.write_json(self.app.manager.hosts.hosts.get(int(host_id)).to_json())

    @web.authenticated
    @authorized
    async def patch(self, host_id: str) -> None:
        host = await self.app.manager.hosts.update(int(host_id), self.get_json_object())
        self.write_json(host.to_json())

    @web.authenticated
    @authorized
    async def delete(self, host_id: str) -> None:
        await self.app.manager.hosts.delete(int(host_id))
        self.set_status(204)
        self.finish()


class HostInventoryHandler(ComputeServersAPIHandler):
    """``POST /hosts/{id}/inventory``: log in and take the inventory again."""

    @web.authenticated
    @authorized
    async def post(self, host_id: str) -> None:
        host = await self.app.manager.hosts.refresh(int(host_id))
        self.write_json(host.to_json())


class ServerMetricsHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/metrics``: GPU, CPU and memory use, sampled on the server now."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        manager = self.app.manager
        server = manager.get_server(int(server_id))
        if server.state is not State.RUNNING:
            raise ConflictError(
                f"Server {server.name!r} is {server.state.value}; metrics need it running.",
                state=server.state.value,
            )
        endpoint = await manager.endpoint(server.id)
        agent = await manager.ssh.agent(server.id, endpoint)
        self.write_json(await agent.call("metrics", timeout=20))
