"""REST handlers for file sync between the Jupyter root and a server's workspace."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..sync.settings import DEFAULT_EXCLUDES
from .base import ComputeServersAPIHandler


class ServerSyncHandler(ComputeServersAPIHandler):
    """``POST /servers/{id}/sync``: start a sync; 202 with it (its id), progress follows.

    It runs a process on the server and writes into the Jupyter root, so it needs ``execute``
    on compute servers and ``write`` on ``contents`` (what saving a file in Jupyter needs)."""

    @web.authenticated
    @authorized("execute")
    @authorized("write", resource="contents")
    async def post(self, server_id: str) -> None:
        run = self.sync.start(self.path_id(server_id), self.get_json_object())
        self.set_header("Location", self.request.path.rstrip("/") + f"s/{run['id']}")
        self.write_json(run, status=202)


class ServerSyncsHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/syncs``: the latest syncs, newest first."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        service = self.sync
        self.write_json(
            {
                "syncs": service.history(self.path_id(server_id)),
                "running": service.running(self.path_id(server_id)),
                "default_excludes": list(DEFAULT_EXCLUDES),
            }
        )


class ServerSyncRunHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/syncs/{sync_id}``: one sync's progress, or its summary."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str, sync_id: str) -> None:
        self.write_json(
            self.sync.get(self.path_id(server_id), self.path_id(sync_id, "sync_id", "sync"))
        )


class ServerSyncCancelHandler(ComputeServersAPIHandler):
    """``POST /servers/{id}/syncs/{sync_id}/cancel``: stop a running sync (202)."""

    @web.authenticated
    @authorized
    async def post(self, server_id: str, sync_id: str) -> None:
        run_id = self.path_id(sync_id, "sync_id", "sync")
        self.write_json(self.sync.cancel(self.path_id(server_id), run_id), status=202)
