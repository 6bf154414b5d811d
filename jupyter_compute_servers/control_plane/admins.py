"""Who is an admin of the team, for the control plane: the same rule as ``team.Team``'s in the
user servers (Hub admins, ``team_admin_users``, members of ``team_admin_groups``), given to the
control plane as ``--admin-user`` and ``--admin-group``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AdminRule:
    """Who is an admin: as ``team.Team`` decides in the user servers (the same settings)."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def is_admin(self, model: dict[str, Any]) -> bool:
        groups = model.get("groups") or ()
        return (
            bool(model.get("admin"))
            or str(model.get("name")) in self.users
            or bool(self.groups.intersection(str(g) for g in groups))
        )


def admin_rule(users: Iterable[str], groups: Iterable[str]) -> AdminRule:
    return AdminRule(frozenset(users), frozenset(groups))
