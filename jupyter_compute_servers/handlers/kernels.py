"""REST handlers for the kernels running on a compute server."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.services.kernels.handlers import KernelActionHandler, MainKernelHandler
from jupyter_server.services.sessions.handlers import SessionHandler, SessionRootHandler
from jupyter_server.utils import ensure_async
from tornado import web

from ..kernels.provisioner import KernelStartError
from ..kernels.runtime import KernelRuntime
from ..kernels.specs import SPEC_PREFIX
from .base import AUTH_RESOURCE, ComputeServersAPIHandler


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


async def check_may_run_code_there(handler: Any, kernel_name: Any) -> None:
    """A kernel on a compute server runs code there: starting one needs ``execute`` on the
    compute servers, not only Jupyter's ``write`` on kernels (or sessions)."""
    if not (isinstance(kernel_name, str) and kernel_name.startswith(SPEC_PREFIX)):
        return
    allowed = await ensure_async(
        handler.authorizer.is_authorized(handler, handler.current_user, "execute", AUTH_RESOURCE)
    )
    if not allowed:
        raise web.HTTPError(
            403,
            f"Starting the kernel {kernel_name[:80]!r} runs code on a compute server: it needs "
            f"the execute permission on {AUTH_RESOURCE}.",
        )


def _json_body(handler: Any) -> dict[str, Any]:
    try:
        body = handler.get_json_body()
    except web.HTTPError:
        return {}  # Jupyter's own handler answers the bad body
    return body if isinstance(body, dict) else {}


class GuardedMainKernelHandler(MainKernelHandler):
    """Jupyter's ``POST /api/kernels``, refusing a compute server's kernel without
    ``execute``. (Added by the extension, its route comes before Jupyter's own.)"""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        await check_may_run_code_there(self, _json_body(self).get("name"))
        result = super().post()
        if result is not None:
            await result


def _session_kernel_name(body: dict[str, Any]) -> Any:
    kernel = body.get("kernel")
    return kernel.get("name") if isinstance(kernel, dict) else None


class GuardedSessionRootHandler(SessionRootHandler):
    """Jupyter's ``POST /api/sessions`` (which starts a kernel), guarded the same way."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        await check_may_run_code_there(self, _session_kernel_name(_json_body(self)))
        result = super().post()
        if result is not None:
            await result


class GuardedSessionHandler(SessionHandler):
    """Jupyter's ``PATCH /api/sessions/{id}`` (which may start a kernel), guarded the same
    way."""

    @web.authenticated
    @authorized
    async def patch(self, session_id: str) -> None:
        await check_may_run_code_there(self, _session_kernel_name(_json_body(self)))
        result = super().patch(session_id)
        if result is not None:
            await result


def kernel_action_handlers() -> list[tuple[str, type]]:
    """Jupyter's kernel and session routes that start or restart a kernel, in our versions."""
    from jupyter_server.services.kernels.handlers import default_handlers as kernel_routes
    from jupyter_server.services.sessions.handlers import default_handlers as session_routes

    ours: dict[type, type] = {
        KernelActionHandler: ExplainedKernelActionHandler,
        MainKernelHandler: GuardedMainKernelHandler,
        SessionRootHandler: GuardedSessionRootHandler,
        SessionHandler: GuardedSessionHandler,
    }
    return [
        (pattern, ours[handler])
        for pattern, handler in [*kernel_routes, *session_routes]
        if handler in ours
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
