"""What a server's workspace mount is asked to be: which tree of the Jupyter root, read-only
or not, and where in the server's workspace; each field checked with errors that name it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError

#: Where a mount goes in the workspace unless the request says otherwise.
DEFAULT_MOUNT_POINT = "jupyter"

_NAME = re.compile(r"[^\x00/]{1,255}")


@dataclass
class MountRequest:
    """What to mount: ``path`` (relative to the Jupyter root; '' is the root), whether
    read-only, and where in the workspace (``mount_point``, relative)."""

    path: str = ""
    read_only: bool = False
    mount_point: str = DEFAULT_MOUNT_POINT

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "read_only": self.read_only, "mount_point": self.mount_point}


def _relative(value: Any, name: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string", field=name)
    value = value.strip("/") if value not in ("", "/") else ""
    if not value:
        if allow_empty:
            return ""
        raise ValidationError(f"{name} must not be empty", field=name)
    parts = value.split("/")
    if len(value) > 1024 or any(p in (".", "..") or not _NAME.fullmatch(p) for p in parts):
        raise ValidationError(
            f"{name} must be a relative path without '.', '..' or empty parts", field=name
        )
    return value


def parse_request(body: Any) -> MountRequest:
    """A mount request's body, each field checked (errors name the field)."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object")
    unknown = sorted(set(body) - {"path", "read_only", "mount_point"})
    if unknown:
        raise ValidationError(f"Unknown field {unknown[0]!r}", field=unknown[0])
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ValidationError("read_only must be true or false", field="read_only")
    return MountRequest(
        path=_relative(body.get("path", ""), "path", allow_empty=True),
        read_only=read_only,
        mount_point=_relative(
            body.get("mount_point", DEFAULT_MOUNT_POINT), "mount_point", allow_empty=False
        ),
    )
