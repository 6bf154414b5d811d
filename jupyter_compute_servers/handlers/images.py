"""REST handlers for the image catalogue."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import ValidationError
from .base import ComputeServersAPIHandler


class ImagesHandler(ComputeServersAPIHandler):
    """``GET /images``: the catalogue (tested versions; ``?include_untested=true`` for all)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        flag = self.get_query_argument("include_untested", "false")
        if flag not in ("true", "false"):
            raise ValidationError(
                "include_untested must be true or false.", field="include_untested"
            )
        catalog = self.images
        self.write_json(
            {
                "images": catalog.images(include_untested=flag == "true"),
                "source": catalog.loaded_from,
                "load_error": catalog.load_error,
            }
        )


class ImagesReloadHandler(ComputeServersAPIHandler):
    """``POST /images/reload``: read the catalogue again (400 naming the entry if invalid, or
    saying which limit a catalogue at a URL exceeded), off the event loop."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        catalog = self.images
        await catalog.reload()
        self.write_json(
            {"images": catalog.images(include_untested=True), "source": catalog.loaded_from}
        )
