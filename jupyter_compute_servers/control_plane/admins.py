"""Who is an admin of the team: Hub admins, ``--admin-user`` and the members of
``--admin-group``, given to the control plane only. It is the team's one rule: the control
plane applies it to what it issues (admins' database logins, revocations, the Compute Engine
proxy), and each user's server asks it (``GET api/me``, ``team_admins.OwnerAdmin``) whether
its user is an admin, rather than keep a copy that could differ."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AdminRule:
    """Who is an admin (the user servers ask, ``GET api/me``)."""

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
