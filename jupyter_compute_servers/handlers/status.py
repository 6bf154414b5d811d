from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .. import __version__
from .base import ComputeServersAPIHandler


class StatusHandler(ComputeServersAPIHandler):
    """``GET /compute-servers/api/status``: the package version and the enabled clouds."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"version": __version__, "clouds": list(self.clouds)})
