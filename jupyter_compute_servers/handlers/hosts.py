"""REST handlers for on-prem hosts, and for a running server's live metrics."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import ComputeServersAPIHandler


class HostsHandler(ComputeServersAPIHandler):
    """``GET /hosts``: registered hosts. ``POST /hosts``: register one."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        hosts = self.hosts.hosts.hosts()
        self.write_json({"hosts": [host.to_json() for host in hosts]})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        host = await self.hosts.create(self.get_json_object(required=True))
        self.set_header("Location", self.request.path.rstrip("/") + f"/{host.id}")
        self.write_json(host.to_json(), status=201)


class HostHandler(ComputeServersAPIHandler):
    """``GET``/``PATCH``/``DELETE /hosts/{id}`` (PATCH ``trust_host_key`` confirms its key)."""

    @web.authenticated
    @authorized
    async def get(self, host_id: str) -> None:
        self.write_json(self.hosts.hosts.get(self.path_id(host_id, "host_id", "host")).to_json())

    @web.authenticated
    @authorized
    async def patch(self, host_id: str) -> None:
        host = await self.hosts.update(
            self.path_id(host_id, "host_id", "host"), self.get_json_object(required=True)
        )
        self.write_json(host.to_json())

    @web.authenticated
    @authorized
    async def delete(self, host_id: str) -> None:
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
    """``GET /servers/{id}/metrics``: GPU, CPU and memory use, sampled on the server now."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        agent = await self.manager.agent_for(self.path_id(server_id), "metrics need it running.")
        self.write_json(await agent.call("metrics", timeout=20))
