"""REST handlers for compute servers and clouds: parse the URL, call the manager, answer."""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import NotFoundError, ValidationError
from ..models import DEPROVISION_WARNING
from .base import ComputeServersAPIHandler


class ServersHandler(ComputeServersAPIHandler):
    """``GET /servers``: the caller's servers (``?scope=all``: everyone's, for an admin in
    team mode, each with its owner). ``POST /servers``: create one (deprovisioned)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        scope = self.get_query_argument("scope", "mine")
        if scope not in ("mine", "all"):
            raise ValidationError("scope must be mine or all.", field="scope")
        if scope == "all":
            self.require_admin("list every user's compute servers")
            servers = self.store.all_servers()
        else:
            servers = self.manager.list_servers()
        # Encoded server by server (``list_json``): the same JSON as one ``json.dumps``.
        self.write_json_text(
            '{"servers": [' + ", ".join(map(json.dumps, self.presenter.list_json(servers))) + "]}"
        )

    @web.authenticated
    @authorized
    async def post(self) -> None:
        manager = self.manager
        server = await manager.create_server_on_available_cloud(self.get_json_object(required=True))
        self.set_header("Location", self.request.path.rstrip("/") + f"/{server.id}")
        self.write_json(self.presenter.to_json(server), status=201)


class ServerHandler(ComputeServersAPIHandler):
    """``GET``/``PATCH``/``DELETE /servers/{id}``."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        server_number = self.path_id(server_id, owned=False)
        try:
            server = self.manager.get_server(server_number)
        except NotFoundError:
            # An admin sees another user's server too (only its owner acts on it); anyone
            # else gets the same 404 for it as for an unknown id.
            if not (self.team.enabled and self.identity.admin):
                raise
            server = self.store.get_any(server_number)
        self.write_json(self.presenter.to_json(server))

    @web.authenticated
    @authorized
    async def patch(self, server_id: str) -> None:
        manager = self.manager
        server = await manager.update_server(
            self.path_id(server_id), self.get_json_object(required=True)
        )
        self.write_json(self.presenter.to_json(server))

    @web.authenticated
    @authorized
    async def delete(self, server_id: str) -> None:
        await self.manager.delete_server(self.path_id(server_id))
        self.set_status(204)
        self.finish()


class ServerActionHandler(ComputeServersAPIHandler):
    """``POST /servers/{id}/actions/{action}``: 202, the transition runs in the background."""

    @web.authenticated
    @authorized
    async def post(self, server_id: str, action: str) -> None:
        manager = self.manager
        server = manager.request_action(self.path_id(server_id), action, self.get_json_object())
        self.write_json(self.presenter.to_json(server), status=202)


class ServerHistoryHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/history``: every state change, oldest first."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        history = self.manager.history(self.path_id(server_id))
        self.write_json(
            {
                "history": [
                    {"at": h.at, "state": h.state.value, "reason": h.reason, "action": h.action}
                    for h in history
                ]
            }
        )


class CloudsHandler(ComputeServersAPIHandler):
    """``GET /clouds``: the enabled clouds, whether each is usable now, and what it offers."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        clouds = []
        for cloud in self.clouds.values():
            available, reason = await cloud.availability()
            entry = cloud.summary()
            entry.update(
                available=available, reason=reason, offerings=cloud.offerings() if available else {}
            )
            clouds.append(entry)
        self.write_json({"clouds": clouds, "deprovision_warning": DEPROVISION_WARNING})
