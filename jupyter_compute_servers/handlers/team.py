"""Team mode's REST handlers: who the caller is with their quota, the fair GPU queue, the
admin's audit log and spend report, and the admin's revocations of users' access."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..billing.team_spend import month_spend_of, month_window, spend_rows
from ..errors import ForbiddenError, ValidationError
from ..models import parse_int
from .base import ComputeServersAPIHandler

if TYPE_CHECKING:
    from ..team_queue import TeamQueue
    from ..team_revocations import TeamRevocations


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: one that starts with = + - @ (or a tab or
    carriage return, which some strip first) is quoted with a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _format(handler: ComputeServersAPIHandler) -> str:
    fmt = handler.get_query_argument("format", "json")
    if fmt not in ("json", "csv"):
        raise ValidationError("format must be json or csv.", field="format")
    return fmt


class TeamHandler(ComputeServersAPIHandler):
    """``GET /team``: the mode, the caller, whose servers this is, the owner's quota and what
    the owner holds now (shown before a create: "1 of 2 GPUs left")."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        team = self.team
        identity = self.identity
        quota = team.owner_quota()
        used: dict[str, Any] = dict(self.store.usage(team.owner))
        month, _, _ = month_window(self.costs, None)
        used["monthly_spend"] = (
            round(month_spend_of(self.costs, team.owner), 2) if team.enabled else 0.0
        )
        # The queue's per-user cap holds per host: each queue entry says what its owner holds.
        cap = team.queue_cap(team.owner)
        limits = {**quota.to_json(), "gpus_per_host": None if cap is None else int(cap)}
        left = {**team.left(used), "gpus_per_host": limits["gpus_per_host"]}
        self.write_json(
            {
                "team_mode": team.enabled,
                "user": identity.to_json(),
                "owner": team.owner,
                "month": month,
                "quota": limits,
                "used": used,
                "left": left,
            }
        )


class AuditHandler(ComputeServersAPIHandler):
    """``GET /audit``: who did what to which server, newest ``limit`` lines, kept after the
    servers are deleted (admins only; ``?format=csv`` for a spreadsheet)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.require_admin("read the audit log")
        limit_text = self.get_query_argument("limit", "1000")
        if not limit_text.isdigit():
            raise ValidationError("limit must be a whole number.", field="limit")
        limit = parse_int(int(limit_text), "limit", minimum=1, maximum=100000)
        fmt = _format(self)
        entries = [entry.to_json() for entry in self.store.audit(limit=limit)]
        if fmt == "json":
            self.write_json({"entries": entries})
            return
        columns = ["at", "actor", "owner", "server_id", "server_name", "action", "detail"]
        self.set_header("Content-Disposition", 'attachment; filename="compute-servers-audit.csv"')
        self.finish(_csv(columns, entries), set_content_type="text/csv; charset=utf-8")


class SpendHandler(ComputeServersAPIHandler):
    """``GET /audit/spend``: spend per user and per Hub group in a month (``?month=YYYY-MM``,
    default this month), deleted servers' included (admins only; ``?format=csv``)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.require_admin("read the spend of every user")
        fmt = _format(self)
        month = self.get_query_argument("month", None)
        name, rows = spend_rows(self.costs, month)
        if fmt == "json":
            self.write_json({"month": name, "currency": "USD", "rows": rows})
            return
        columns = [
            "month",
            "kind",
            "name",
            "currency",
            "spent",
            "servers",
            "deleted_servers",
            "unknown",
        ]
        self.set_header(
            "Content-Disposition", f'attachment; filename="compute-servers-spend-{name}.csv"'
        )
        self.finish(_csv(columns, rows), set_content_type="text/csv; charset=utf-8")


class QueueHandler(ComputeServersAPIHandler):
    """``GET /queue``: the GPU queues of shared hosts in the order they are served: every
    entry for an admin, the caller's own for a user."""

    @property
    def queue(self) -> TeamQueue:
        return self.settings["compute_servers_queue"]

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"entries": self.queue.entries_json(self.identity)})


class QueueEntryHandler(QueueHandler):
    """``/queue/{server_id}``: one waiting server's entry. ``PATCH {"position": n}`` moves it
    (admins); ``DELETE`` cancels it (admins, or its owner): its start ends saying who did.
    Another user's entry is the 404 of one that is not there."""

    def _id(self, server_id: str) -> int:
        return self.path_id(server_id, owned=False)

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json(self.queue.get_json(self._id(server_id), self.identity))

    @web.authenticated
    @authorized
    async def patch(self, server_id: str) -> None:
        number = self._id(server_id)
        body = self.get_json_object(required=True)
        unknown = sorted(set(body) - {"position"})
        if unknown:
            raise ValidationError(f"Unknown field {unknown[0]!r}.", field=unknown[0])
        if "position" not in body:
            raise ValidationError("position is required.", field="position")
        position = parse_int(body["position"], "position", minimum=1, maximum=100000)
        self.write_json(self.queue.move(number, position, self.identity))

    @web.authenticated
    @authorized
    async def delete(self, server_id: str) -> None:
        self.write_json(self.queue.cancel(self._id(server_id), self.identity))


class _RevocationsBase(ComputeServersAPIHandler):
    """Admins only, and the owner only: the control plane is asked with this server's Hub
    token, which is its owner's, so another admin visiting this server would act as them."""

    @property
    def revocations(self) -> TeamRevocations:
        return self.settings["compute_servers_revocations"]

    def _require_owner_admin(self, what: str) -> None:
        identity = self.require_admin(what)
        if identity.name != self.team.owner:
            raise ForbiddenError(
                f"Only {self.team.owner} may {what} from this server (it asks the control plane "
                f"as them); do it from your own server.",
                field="user",
            )


class RevocationsHandler(_RevocationsBase):
    """``/team/revocations``: ``GET`` the users whose access is revoked (who revoked them,
    when); ``POST {"user": NAME}`` revokes NAME's access at once (admins)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self._require_owner_admin("list revoked users")
        self.write_json({"revocations": await self.revocations.list()})

    @web.authenticated
    @authorized
    async def post(self) -> None:
        self._require_owner_admin("revoke a user's access")
        body = self.get_json_object(required=True)
        unknown = sorted(set(body) - {"user"})
        if unknown:
            raise ValidationError(f"Unknown field {unknown[0]!r}.", field=unknown[0])
        if "user" not in body:
            raise ValidationError("user is required.", field="user")
        revocation = await self.revocations.revoke(body["user"])
        self.write_json(revocation, status=201)


class RevocationHandler(_RevocationsBase):
    """``/team/revocations/{user}``: ``DELETE`` restores the user's access (admins)."""

    @web.authenticated
    @authorized
    async def delete(self, user: str) -> None:
        self._require_owner_admin("restore a user's access")
        await self.revocations.restore(user)
        self.set_status(204)
        self.finish()
