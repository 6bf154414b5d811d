"""REST handlers for the kernels running on a compute server."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..kernels.runtime import KernelRuntime
from .base import ComputeServersAPIHandler


class _KernelsHandler(ComputeServersAPIHandler):
    @property
    def runtime(self) -> KernelRuntime:
        runtime: KernelRuntime = self.settings["compute_servers_kernel_runtime"]
        return runtime


class ServerKernelsHandler(_KernelsHandler):
    """``GET /servers/{id}/kernels``: the kernels running there, orphans included (asks the
    server's agent, starting it on the server if it is not running yet)."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json({"kernels": await self.runtime.list_kernels(self.path_id(server_id))})


class ServerKernelHandler(_KernelsHandler):
    """``DELETE /servers/{id}/kernels/{kernel_id}``: shut one down (``execute``: it ends a
    process on the server, as Jupyter's own kernels need ``execute`` to be run)."""

    @web.authenticated
    @authorized("execute")
    async def delete(self, server_id: str, kernel_id: str) -> None:
        await self.runtime.shutdown_kernel(self.path_id(server_id), kernel_id, self.kernel_manager)
        self.set_status(204)
        self.finish()
