"""REST handlers for the live workspace: the Jupyter root (or a tree of it) mounted on a
server."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import ConflictError
from ..mount.workspace import parse_request
from .base import ComputeServersAPIHandler


class ServerMountHandler(ComputeServersAPIHandler):
    """``GET``: the mount (null when none); ``POST``: mount (200 once mounted, with it);
    ``DELETE``: unmount (200 with what was mounted; 409 when nothing is: a DELETE that
    answers 2xx must leave nothing to GET, and the server itself is there, so not a 404).

    A mount runs sshfs on the server and lets it read (and unless read-only, write) the
    tree of the Jupyter root, so it needs ``execute`` on compute servers and ``write`` on
    ``contents``, as sync does."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        server = self.manager.get_server(self.path_id(server_id))
        self.write_json({"mount": self.mounts.state(server.id)})

    @web.authenticated
    @authorized("execute")
    @authorized("write", resource="contents")
    async def post(self, server_id: str) -> None:
        server_id_ = self.path_id(server_id)
        self.manager.get_server(server_id_)
        request = parse_request(self.get_json_object())
        self.write_json({"mount": await self.mounts.mount(server_id_, request)})

    @web.authenticated
    @authorized("execute")
    async def delete(self, server_id: str) -> None:
        server_id_ = self.path_id(server_id)
        self.manager.get_server(server_id_)
        unmounted = await self.mounts.unmount(server_id_)
        if unmounted is None:
            raise ConflictError(
                f"Nothing is mounted on server {server_id_} by this Jupyter server.",
                field="server_id",
            )
        self.write_json({"mount": unmounted})
