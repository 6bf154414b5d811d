"""REST handlers for the kernels running on a compute server."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.services.kernels.handlers import KernelActionHandler
from tornado import web

from ..kernels.provisioner import KernelStartError
from ..kernels.runtime import KernelRuntime
from .base import ComputeServersAPIHandler


class RemoteKernelError(KernelStartError, web.HTTPError):
    """A remote kernel's action failed: Jupyter's REST API answers with this message (the
    server, what failed, what to do) instead of "Unhandled error"."""

    def __init__(self, message: str, status: int = 503) -> None:
        KernelStartError.__init__(self, message)
        web.HTTPError.__init__(self, status, message)
        self.args = ()  # the message is not a format string

    def __str__(self) -> str:
        return str(self.log_message)


def remote_kernel_error(message: str) -> Exception:
    return RemoteKernelError(message)


class ExplainedKernelActionHandler(KernelActionHandler):
    """Jupyter's ``POST /api/kernels/{id}/{restart|interrupt}``, except that a restart that
    failed for a reason we know answers with that reason, not "Exception restarting kernel".
    (Added by the extension, its route comes before Jupyter's own.)"""

    @web.authenticated
    @authorized
    async def post(self, kernel_id: str, action: str) -> None:
        try:
            result = super().post(kernel_id=kernel_id, action=action)
            if result is not None:
                await result
        except web.HTTPError as e:
            cause = e.__cause__
            if isinstance(cause, RemoteKernelError):
                raise cause from None
            raise


def kernel_action_handlers() -> list[tuple[str, type]]:
    from jupyter_server.services.kernels.handlers import default_handlers

    return [
        (pattern, ExplainedKernelActionHandler)
        for pattern, handler in default_handlers
        if handler is KernelActionHandler
    ]


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
