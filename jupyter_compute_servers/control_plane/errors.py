"""The control plane's refusals: each says why, with its HTTP status and the input at fault,
and is answered as JSON ``{message, reason, field}`` (``reason``: the error's class name)."""

from __future__ import annotations


class ControlPlaneError(Exception):
    """A request the control plane refuses: ``status`` (HTTP), ``field`` the input at fault."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
