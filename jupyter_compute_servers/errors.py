"""Errors that the REST API turns into JSON answers, each with a status and a plain message."""

from __future__ import annotations

from typing import Any


class ComputeServersError(Exception):
    """Base of every error this package raises on purpose.

    ``status`` is the HTTP status the API answers with; ``field`` names the input at fault when
    there is one (``config.gpu.count``); ``details`` is extra JSON for the client.
    """

    status = 500

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "reason": type(self).__name__}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


class ValidationError(ComputeServersError):
    """The request's input is malformed: 400."""

    status = 400


class NotFoundError(ComputeServersError):
    """No such server (or other resource): 404."""

    status = 404


class ForbiddenError(ComputeServersError):
    """The caller is known but may not do this (team mode: an admin's action): 403."""

    status = 403


class PayloadTooLargeError(ComputeServersError):
    """The request body is larger than any request of this API needs: 413."""

    status = 413


class ConflictError(ComputeServersError):
    """The request is well formed but not allowed in the current state: 409."""

    status = 409


class CloudError(ComputeServersError):
    """A cloud could not do what was asked (quota, unreachable API, missing binary): 502."""

    status = 502


class OperationFailed(CloudError):
    """A lifecycle operation failed, and the cloud knows what the server is after it: a VM that
    could not be created leaves it ``deprovisioned``, one that could not boot leaves it
    ``off``. The manager records that state (``state``, a ``State`` value) with the message as
    its reason, instead of ``error``, so the user can change the configuration and try again."""

    def __init__(
        self, message: str, *, state: str, field: str | None = None, **details: Any
    ) -> None:
        super().__init__(message, field=field, **details)
        self.state = state
