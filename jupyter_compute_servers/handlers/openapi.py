from __future__ import annotations

from importlib.resources import files

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import ComputeServersAPIHandler

OPENAPI_DOCUMENT = files("jupyter_compute_servers").joinpath("openapi.json")


class OpenAPIHandler(ComputeServersAPIHandler):
    """``GET /compute-servers/api/openapi.json``: the description of this REST API."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(OPENAPI_DOCUMENT.read_bytes())
