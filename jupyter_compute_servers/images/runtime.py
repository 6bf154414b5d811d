"""How a server's image runs its kernels and terminals: the agent's ``container`` parameter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, ValidationError
from .catalog import CONTAINER_KINDS

if TYPE_CHECKING:
    from ..manager import ComputeServerManager
    from ..store import ServerRecord


def container_for(manager: ComputeServerManager, server: ServerRecord) -> dict[str, Any] | None:
    """None when kernels run on the server's own Python; else what to run them in."""
    if not server.config.image:
        return None
    try:
        runtime = manager.images.runtime(server.config.image, server.config.image_tag)
    except ValidationError:
        # Dropped from the catalogue since. Its kernels must not quietly run on the server's
        # own Python instead (other packages, other results): say so.
        raise ConflictError(
            f"The image {server.config.image}:{server.config.image_tag} of compute server "
            f"{server.name!r} is no longer in the image catalogue; edit the server to pick "
            f"another image, or put it back in the catalogue.",
            field="config.image",
        ) from None
    cloud = manager.clouds.get(server.cloud)
    if cloud is not None and cloud.image_is_machine:
        return None  # the server is the image (a pod): kernels run on its own Python
    if runtime["kind"] in CONTAINER_KINDS:
        return {
            "engine": runtime["kind"],
            "image": runtime["image"],
            "gpu": runtime["gpu"],
            # A tag that moves is pulled at each start; any other only when missing.
            "pull": "always" if runtime["moving"] else "missing",
        }
    if runtime["kind"] == "conda":
        return {"engine": "conda", "env": runtime["conda_env"]}
    return None
