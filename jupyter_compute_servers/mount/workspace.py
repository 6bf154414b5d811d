"""What a server's workspace mount is asked to be: which tree of the Jupyter root, read-only
or not, and where in the server's workspace; each field checked with errors that name it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


def parse_request(body: Any, where: str = "") -> MountRequest:
    """A mount request's body (or the ``mount`` object at ``where`` of a bigger one), each
    field checked: errors name the field."""
    prefix = f"{where}." if where else ""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ValidationError(
            f"{where} must be a JSON object" if where else "The request body must be a JSON object",
            field=where or None,
        )
    unknown = sorted(set(body) - {"path", "read_only", "mount_point"})
    if unknown:
        raise ValidationError(f"Unknown field {unknown[0]!r}", field=prefix + unknown[0])
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ValidationError(
            f"{prefix}read_only must be true or false", field=f"{prefix}read_only"
        )
    return MountRequest(
        path=_relative(body.get("path", ""), f"{prefix}path", allow_empty=True),
        read_only=read_only,
        mount_point=_relative(
            body.get("mount_point", DEFAULT_MOUNT_POINT),
            f"{prefix}mount_point",
            allow_empty=False,
        ),
    )


#: How a server's code reaches the Jupyter root's files: copied by file sync (the default),
#: mounted live (no copy; nothing to sync), or both (a mount beside a synced working tree).
WORKSPACE_MODES = ("synced", "mounted", "both")


@dataclass(frozen=True)
class Workspace:
    """A server's workspace setting (the ``workspace`` object of a server): its mode, and
    for ``mounted`` and ``both`` what is mounted, each time the server runs."""

    mode: str = "synced"
    mount: MountRequest = field(default_factory=MountRequest)

    @property
    def mounts(self) -> bool:
        return self.mode != "synced"

    @property
    def syncs(self) -> bool:
        return self.mode != "mounted"

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "mount": self.mount.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Workspace:
        """A setting the store wrote (already checked); the default for None."""
        if not data:
            return cls()
        return cls(mode=data["mode"], mount=MountRequest(**data["mount"]))


def parse_workspace(value: Any, base: Workspace | None = None) -> Workspace:
    """The ``workspace`` object of a create or PATCH body: what it gives replaces ``base``'s
    (a PATCH of ``{"mode": "both"}`` keeps the mount as it was)."""
    if not isinstance(value, dict):
        raise ValidationError("workspace must be a JSON object.", field="workspace")
    unknown = sorted(set(value) - {"mode", "mount"})
    if unknown:
        raise ValidationError(
            f"Unknown field {unknown[0]!r} in workspace.", field=f"workspace.{unknown[0]}"
        )
    current = base or Workspace()
    mode = value.get("mode", current.mode)
    if mode not in WORKSPACE_MODES:
        raise ValidationError(
            f"workspace.mode must be one of {', '.join(WORKSPACE_MODES)}, not {mode!r}.",
            field="workspace.mode",
        )
    mount = current.mount
    if "mount" in value:
        given = value["mount"]
        merged = {**mount.to_json(), **given} if isinstance(given, dict) else given
        mount = parse_request(merged, "workspace.mount")
    return Workspace(mode=mode, mount=mount)
