"""REST handlers for the image catalogue."""

from __future__ import annotations

import asyncio

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
        # The marks as they are now: in team mode another admin's, from the team database.
        await catalog.refresh()
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


class ImageTestedHandler(ComputeServersAPIHandler):
    """``POST /images/tested`` ``{"image", "tag", "tested": true|false}``: an admin marks a
    version of the catalogue tested (shown to users) or takes the mark back; in team mode the
    mark is the team's (its database), seen by every user's server. Others: 403."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        identity = self.require_admin("mark images tested")
        body = self.get_json_object(required=True)
        unknown = sorted(set(body) - {"image", "tag", "tested"})
        if unknown:
            raise ValidationError(f"{unknown[0]} is not a field of this request.", field=unknown[0])
        image, tag, tested = body.get("image"), body.get("tag"), body.get("tested", True)
        for name, value in (("image", image), ("tag", tag)):
            if not isinstance(value, str) or not value:
                raise ValidationError(f"{name} must be a non-empty string.", field=name)
        if not isinstance(tested, bool):
            raise ValidationError("tested must be true or false.", field="tested")
        assert isinstance(image, str) and isinstance(tag, str)
        catalog = self.images
        try:
            catalog.version(image, tag)
        except ValidationError as e:
            raise ValidationError(
                e.message.replace("config.image_tag", "tag").replace("config.image", "image"),
                field="tag" if e.field == "config.image_tag" else "image",
            ) from None
        await asyncio.to_thread(catalog.mark_tested, image, tag, tested, identity.name)
        version = catalog.version(image, tag)
        self.write_json({"image": image, "tag": tag, "tested": bool(version["tested"])})
