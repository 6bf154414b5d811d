"""Team mode's REST handlers: who the caller is with their quota, and the admin's audit log."""

from __future__ import annotations

import csv
import io

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..errors import ValidationError
from ..models import parse_int
from .base import ComputeServersAPIHandler


class TeamHandler(ComputeServersAPIHandler):
    """``GET /team``: the mode, the caller, whose servers this is, the owner's quota and what
    the owner holds now (shown before a create: "1 of 2 GPUs left")."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        team = self.team
        identity = self.identity
        quota = team.owner_quota()
        used = self.store.usage(team.owner)
        self.write_json(
            {
                "team_mode": team.enabled,
                "user": identity.to_json(),
                "owner": team.owner,
                "quota": quota.to_json(),
                "used": used,
                "left": {
                    name: (None if limit is None else max(limit - used[name], 0))
                    for name, limit in quota.to_json().items()
                },
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
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "csv"):
            raise ValidationError("format must be json or csv.", field="format")
        entries = [entry.to_json() for entry in self.store.audit(limit=limit)]
        if fmt == "json":
            self.write_json({"entries": entries})
            return
        out = io.StringIO()
        columns = ["at", "actor", "owner", "server_id", "server_name", "action", "detail"]
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for entry in entries:
            # A spreadsheet runs a cell that starts with = + - @ as a formula: quote it.
            writer.writerow(
                {
                    k: ("'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v)
                    for k, v in entry.items()
                }
            )
        self.set_header("Content-Disposition", 'attachment; filename="compute-servers-audit.csv"')
        self.finish(out.getvalue(), set_content_type="text/csv; charset=utf-8")
