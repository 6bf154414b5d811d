"""Terminals on compute servers (REST and the terminado websocket) and SSH access."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket

from ..access import ssh_access
from ..errors import ComputeServersError
from ..models import parse_path_id
from ..terminals import RemoteTerminals, TerminalSession, check_terminal_name
from .base import AUTH_RESOURCE, ComputeServersAPIHandler


def _terminals(handler: web.RequestHandler) -> RemoteTerminals:
    terminals: RemoteTerminals = handler.settings["compute_servers_terminals"]
    return terminals


class ServerTerminalsHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/terminals``: its terminals (asks the server's agent, starting it on
    the server if it is not running yet). ``POST``: start one (a shell: ``execute``)."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json({"terminals": await _terminals(self).list(self.path_id(server_id))})

    @web.authenticated
    @authorized("execute")
    async def post(self, server_id: str) -> None:
        terminal = await _terminals(self).create(self.path_id(server_id), self.get_json_object())
        self.write_json(terminal, status=201)


class ServerTerminalHandler(ComputeServersAPIHandler):
    """``DELETE /servers/{id}/terminals/{name}``: end its shell (``execute``, as starting one)."""

    @web.authenticated
    @authorized("execute")
    async def delete(self, server_id: str, terminal_name: str) -> None:
        await _terminals(self).delete(self.path_id(server_id), terminal_name)
        self.set_status(204)
        self.finish()


class ServerSSHAccessHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/ssh-access``: an ssh config snippet for the user's own tools. It
    hands out a login to the server (the path of its key), so it needs ``execute``."""

    @web.authenticated
    @authorized("execute")
    async def get(self, server_id: str) -> None:
        self.write_json(await ssh_access(self.manager, self.path_id(server_id)))


class TerminalWebSocketHandler(WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """``servers/{id}/terminals/websocket/{name}``: terminado's protocol, so JupyterLab's own
    Terminal widget connects to it as to Jupyter's terminals (origin checked the same way)."""

    auth_resource = AUTH_RESOURCE
    session: TerminalSession | None = None

    @ws_authenticated
    @authorized
    async def get(self, server_id: str, terminal_name: str) -> None:
        # A terminal runs commands: reading is not enough. (An authorizer may be async.)
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(
                403, f"User is not authorized to execute on resource: {AUTH_RESOURCE}."
            )
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            # Tornado would answer this in plain text; the API answers in JSON.
            raise web.HTTPError(400, 'Can "Upgrade" only to "WebSocket".')
        try:
            check_terminal_name(terminal_name)
            await _terminals(self).connect_info(
                parse_path_id(server_id, "server_id", "compute server"), terminal_name
            )
        except ComputeServersError as e:
            raise web.HTTPError(e.status, e.message) from None
        await super().get(server_id, terminal_name)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Refused before the upgrade: answer like the rest of the API, in JSON.
        error = kwargs.get("exc_info", (None, None))[1]
        message = getattr(error, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        if status_code == 405:
            self.set_header("Allow", "GET")
        self.finish(json.dumps({"message": message, "reason": self._reason}))

    def open(self, server_id: str, terminal_name: str) -> None:
        super().open()
        self.session = TerminalSession(
            _terminals(self), int(server_id), terminal_name, self._send_message
        )
        self.write_message(json.dumps(["setup", {}]))
        self.session.start()

    def _send_message(self, message: list[Any]) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        self.write_message(json.dumps(message))
        if message[0] == "disconnect":
            reason = self.session.close_reason if self.session is not None else None
            if reason is None:
                self.close()
            else:  # 1011: the server end failed; a close reason is at most 123 bytes
                self.close(1011, reason.encode()[:120].decode("utf-8", "ignore"))

    def on_message(self, message: str | bytes) -> None:
        if self.session is None:
            return
        try:
            self.session.receive(json.loads(message))
        except (ValueError, UnicodeDecodeError):
            self.log.debug("Ignored a terminal message that is not JSON")

    def on_close(self) -> None:
        if self.session is not None:
            asyncio.get_running_loop().create_task(self.session.close())
