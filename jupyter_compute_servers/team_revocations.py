"""An admin's revocations from the Lab: the team's control plane's (``control_plane/
revocations.py``: ``GET/POST api/revocations``, ``DELETE api/revocations/NAME``), asked by this
server with its Hub token, which is its owner's: the control plane decides whether that owner
is an admin, as it does for every credential, and records them as who revoked.

Without a control plane there is nothing to revoke (a 409 says what is needed). The control
plane's refusals keep their meaning (403, 404, 400 naming the field); when it cannot be reached
or fails, a 502 says so and what to do. Each call runs in a worker thread (the client is
synchronous): the event loop never waits on the control plane.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from .control_plane_client import ControlPlaneClient, ControlPlaneError
from .errors import (
    CloudError,
    ComputeServersError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from .hub_user_names import user_name_problem

_REFUSALS: dict[int, type[ComputeServersError]] = {
    400: ValidationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
}


def valid_user(value: Any) -> str:
    """A Hub user's name as a request gives it, or a 400 naming the field."""
    problem = user_name_problem(value)
    if problem is not None:
        raise ValidationError(problem, field="user")
    return value


class TeamRevocations:
    """The control plane's revocations, for this server's owner (an admin, or refused)."""

    def __init__(self, control_plane: ControlPlaneClient | None) -> None:
        self.control_plane = control_plane

    async def list(self) -> list[dict[str, Any]]:
        """The revoked users: ``{"user", "revoked_by", "revoked_at"}``, oldest first."""
        answer = await self._ask("get", "api/revocations", what="the list of revoked users")
        revocations = answer.get("revocations")
        if not isinstance(revocations, list) or not all(_is_revocation(r) for r in revocations):
            raise CloudError(
                "The control plane's list of revocations is not one this server reads: is it of "
                "another jupyter_compute_servers version? Ask an admin to upgrade it."
            )
        return [_revocation(r) for r in revocations]

    async def revoke(self, user: str) -> dict[str, Any]:
        """Revoke ``user``'s access at once: the revocation, and how many database sessions
        and OpenStack tokens it ended."""
        user = valid_user(user)
        answer = await self._ask(
            "post", "api/revocations", {"user": user}, what=f"revoking {user}'s access"
        )
        if not _is_revocation(answer):
            raise CloudError(
                f"{user} may be revoked, but the control plane's answer is not one this server "
                f"reads; list the revocations to see."
            )
        return {
            **_revocation(answer),
            "database_sessions_ended": _count(answer.get("database_sessions_ended")),
            "openstack_tokens_revoked": _count(answer.get("openstack_tokens_revoked")),
        }

    async def restore(self, user: str) -> None:
        """Let ``user`` get credentials again (404 when they are not revoked)."""
        user = valid_user(user)
        await self._ask(
            "delete",
            f"api/revocations/{quote(user, safe='')}",
            what=f"restoring {user}'s access",
        )

    async def _ask(self, method: str, path: str, *args: Any, what: str) -> dict[str, Any]:
        client = self.control_plane
        if client is None:
            raise ConflictError(
                "Revoking access needs team mode's control plane (the Hub's compute-control "
                "service, c.ComputeServersApp.control_plane_url): it is what issues the "
                "credentials a revocation ends. This server has none configured.",
                field="control_plane_url",
            )
        try:
            return await asyncio.to_thread(getattr(client, method), path, *args, what=what)
        except ControlPlaneError as e:
            refusal = _REFUSALS.get(e.refused or 0)
            if refusal is None:
                # Unreachable, a 5xx, or nonsense: the message says which and what to do.
                raise CloudError(e.message, field="control_plane_url") from None
            raise refusal(e.message, field=e.refused_field or "user") from None


def _is_revocation(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("user"), str)
        and isinstance(value.get("revoked_by"), str)
        and isinstance(value.get("revoked_at"), (int, float))
        and not isinstance(value.get("revoked_at"), bool)
    )


def _revocation(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "user": value["user"],
        "revoked_by": value["revoked_by"],
        "revoked_at": float(value["revoked_at"]),
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
