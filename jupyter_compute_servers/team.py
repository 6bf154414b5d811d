"""Team mode: who a request comes from, who owns what, and each user's quotas.

Standalone (the default) one person uses the extension: every server is owned by the local
user, who is its admin, and nothing is limited beyond the existing settings.

In team mode (``c.ComputeServersApp.team_mode = True``) each user's Jupyter server, spawned by
JupyterHub, runs the extension on one shared database (``db_url``, PostgreSQL). The process
belongs to one user (``JUPYTERHUB_USER``): its store sees only that user's servers, so every
list, cost, kernel spec, health check and action is that user's alone, and another user's id is
the same 404 as an unknown one. Who is asking, and in which Hub groups, comes from Jupyter's
``current_user``, which ``jupyterhub.singleuser`` fills from the Hub's OAuth token (its
``identify`` scope gives the name and groups). Admins see everyone's servers (owner shown) and
the audit log, and they alone change shared hosts and mark images tested. With a control plane
(``control_plane_url``) who is an admin is the team's one rule, the control plane's: the owner
is one when it says so (``team_admins.OwnerAdmin``); a visitor the Hub lets in, when the Hub
says they are a Hub admin. Without one: the users named in ``team_admin_users``, the members of
a Hub group of ``team_admin_groups``, or a Hub admin where the Hub says so.

Quotas are checked inside the transaction that commits a start (the owner's named lock held),
so two starts cannot both take the last of a quota; the host's GPUs themselves are claimed
under the host's row lock (``hosts.HostStore.allocate``).
"""

from __future__ import annotations

import contextvars
import getpass
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from .errors import ConflictError, ForbiddenError, ValidationError
from .models import State

if TYPE_CHECKING:
    from .store import ServerStore
    from .team_admins import OwnerAdmin

#: Who the current request (or the background work it began) acts for: the audit's actor.
#: Tasks started by a request copy it, so an action's end is recorded as the same person's.
current_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "compute_servers_actor", default=None
)

#: States in which a server holds its resources (counts against ``running_servers``/``gpus``).
HOLDING_STATES = frozenset({State.STARTING, State.RUNNING, State.STOPPING, State.SUSPENDING})

QUOTA_FIELDS = (
    "running_servers",
    "gpus",
    "gpus_per_host",
    "cpu",
    "memory_gb",
    "monthly_spend",
)
#: A group's own budget: what all its members together may spend in a month (a
#: ``"group:NAME"`` entry's only; not a limit each member gets).
GROUP_FIELDS = ("group_monthly_spend",)
#: The quotas that may be fractions (the rest are whole numbers).
_DECIMAL_FIELDS = frozenset({"memory_gb", "monthly_spend", "group_monthly_spend"})
#: The clouds whose servers are slices of shared hosts: what the cpu and memory_gb quotas count.
SHARED_HOST_CLOUDS = frozenset({"ssh"})
#: What an access list may keep for some users: ``"<kind>:<name>"``.
ACCESS_KINDS = ("cloud", "host", "image", "gpu")


def local_user() -> str:
    """The owner of this process's servers: the Hub user, or the local account standalone."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


@dataclass(frozen=True)
class Identity:
    """The person behind a request."""

    name: str
    groups: tuple[str, ...] = ()
    admin: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "groups": list(self.groups), "admin": self.admin}


@dataclass(frozen=True)
class Quota:
    """The most a user may hold at once (and spend in a month); None: no limit.

    ``gpus_per_host``: the most GPUs of one shared host the user may hold at once, the fair
    queue's per-user cap (a request over it waits, even with GPUs free, and the next user's is
    served first). ``cpu``/``memory_gb``: CPUs and GB of RAM held on shared hosts at once.
    ``monthly_spend``: US dollars spent this calendar month (the costs' time zone) past which
    no server that costs money starts."""

    running_servers: int | None = None
    gpus: int | None = None
    gpus_per_host: int | None = None
    cpu: int | None = None
    memory_gb: float | None = None
    monthly_spend: float | None = None

    def to_json(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in QUOTA_FIELDS}


def parse_quotas(value: Any) -> tuple[dict[str, Quota], dict[str, float]]:
    """``c.ComputeServersApp.quotas``: ``{"*": {...}, "user:NAME": {...}, "group:NAME":
    {...}}``, each of ``QUOTA_FIELDS`` (``{"running_servers": n, "gpus": n, "monthly_spend":
    50.0}``; a missing field or null: no limit), and a group's ``group_monthly_spend``: the
    quotas by key, and the groups' own monthly budgets by group name."""
    if not isinstance(value, dict):
        raise ValidationError("quotas must be an object.", field="quotas")
    quotas: dict[str, Quota] = {}
    budgets: dict[str, float] = {}
    for key, entry in value.items():
        if not isinstance(key, str) or not (
            key == "*" or (key.startswith(("user:", "group:")) and len(key.split(":", 1)[1]) > 0)
        ):
            raise ValidationError(
                f'quotas key {key!r} must be "*", "user:NAME" or "group:NAME".', field="quotas"
            )
        if not isinstance(entry, dict):
            raise ValidationError(f"quotas[{key!r}] must be an object.", field="quotas")
        limits: dict[str, Any] = {}
        for name, limit in entry.items():
            if name in GROUP_FIELDS and not key.startswith("group:"):
                raise ValidationError(
                    f"quotas[{key!r}].{name} is a group's budget: give it in a "
                    f'"group:NAME" entry.',
                    field="quotas",
                )
            if name not in QUOTA_FIELDS + GROUP_FIELDS:
                raise ValidationError(
                    f"quotas[{key!r}] has an unknown field {name!r} (known: "
                    f"{', '.join(QUOTA_FIELDS + GROUP_FIELDS)}).",
                    field="quotas",
                )
            kinds: tuple[type, ...] = (int, float) if name in _DECIMAL_FIELDS else (int,)
            if limit is not None and (
                not isinstance(limit, kinds)
                or isinstance(limit, bool)
                or not 0 <= float(limit) < float("inf")  # type: ignore[arg-type]  # NaN too
            ):
                what = "a number" if name in _DECIMAL_FIELDS else "a whole number"
                raise ValidationError(
                    f"quotas[{key!r}].{name} must be {what} >= 0 or null.",
                    field="quotas",
                )
            limits[name] = limit
        budget = limits.pop("group_monthly_spend", None)
        quotas[key] = Quota(**limits)
        if budget is not None:
            budgets[key.split(":", 1)[1]] = float(budget)
    return quotas, budgets


def parse_access(value: Any) -> dict[str, frozenset[str]]:
    """``c.ComputeServersApp.access``: ``{"cloud:gcp": ["alice", "group:staff"], "host:lab":
    [...], "image:ID": [...], "gpu:TYPE": [...]}``. A resource listed is kept for the users
    and Hub groups its list names (and admins); one not listed is open to everyone."""
    if not isinstance(value, dict):
        raise ValidationError("access must be an object.", field="access")
    lists: dict[str, frozenset[str]] = {}
    for key, allowed in value.items():
        kind, _, name = str(key).partition(":")
        if kind not in ACCESS_KINDS or not name:
            raise ValidationError(
                f"access key {key!r} must be KIND:NAME with KIND one of {', '.join(ACCESS_KINDS)}.",
                field="access",
            )
        if not isinstance(allowed, list) or not all(
            isinstance(a, str) and a and a != "group:" for a in allowed
        ):
            raise ValidationError(
                f'access[{key!r}] must be a list of user names and "group:NAME"s.', field="access"
            )
        lists[key] = frozenset(allowed)
    return lists


def _most(values: list[Any]) -> Any:
    return None if any(v is None for v in values) else max(v for v in values if v is not None)


@dataclass
class Team:
    """This process's owner, the team settings, and the quota checks made inside the store's
    transactions. One per process (``services.build_services``)."""

    enabled: bool
    owner: str
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()
    quotas: dict[str, Quota] = field(default_factory=dict)
    access: dict[str, frozenset[str]] = field(default_factory=dict)
    #: Whether the owner is an admin, as their last request said.
    owner_admin: bool = False
    #: The owner's Hub groups, as the last request of the owner carried them (the quotas of a
    #: start that a request began, checked later in the background, use them).
    owner_groups: tuple[str, ...] = ()
    #: ``c.ComputeServersApp.team_queue_user_cap``: the fair queue's per-user cap for those
    #: whose quota sets no ``gpus_per_host`` (None: no cap).
    queue_user_cap: int | None = None
    #: What an owner has spent this month, in dollars (the costs service's ledger); None
    #: where costs are not wired (the ``monthly_spend`` quota is then not checked).
    month_spend: Callable[[str], float] | None = None
    #: Each Hub group's own monthly budget (``group_monthly_spend``), by group name.
    group_budgets: dict[str, float] = field(default_factory=dict)
    #: What a group's members have spent this month, in dollars (``billing.team_spend``).
    group_spend: Callable[[str], float] | None = None
    #: Whether a server of this cloud and configuration costs money while running: the spend
    #: quotas let one that is free start (as the costs' budget does).
    costs_money: Callable[[str, str], bool] | None = None
    #: With a control plane: whether the owner is an admin, as it says (the one rule);
    #: ``admin_users``/``admin_groups`` are then empty.
    admin_source: OwnerAdmin | None = None
    _remembered: tuple[str, ...] | None = None

    def identity(self, user: Any) -> Identity:
        """The Identity of Jupyter's ``current_user``: a ``JupyterHubUser`` under the Hub
        (``hub_user`` is the Hub's user model), a plain ``User`` standalone."""
        if not self.enabled:
            return Identity(self.owner, (), True)
        hub_user = getattr(user, "hub_user", None) or {}
        name = str(hub_user.get("name") or getattr(user, "username", "") or "")
        groups = tuple(sorted(str(g) for g in hub_user.get("groups") or ()))
        if self.admin_source is not None:
            admin = self.admin_source.admin if name == self.owner else bool(hub_user.get("admin"))
        else:
            admin = (
                bool(hub_user.get("admin"))
                or name in self.admin_users
                or bool(self.admin_groups.intersection(groups))
            )
        if name == self.owner:
            self.owner_groups = groups
            self.owner_admin = admin
        return Identity(name, groups, admin)

    async def refresh_admin(self) -> None:
        """Ask the control plane again whether the owner is an admin, if its answer is old
        (with one; off the event loop)."""
        if self.enabled and self.admin_source is not None:
            await self.admin_source.refresh()

    def who_may_administer(self) -> str:
        """Where who is an admin is decided, and why the owner is not one if the control plane
        could not say: for a 403's message."""
        if self.admin_source is None:
            return "ask one (team_admin_users, team_admin_groups)"
        if self.admin_source.error:
            return (
                f"the control plane could not say whether you are one, so you are not for now: "
                f"{self.admin_source.error}"
            )
        return "ask one (the control plane's --admin-user or --admin-group, or Hub admins)"

    def remember(self, identity: Identity) -> bool:
        """Whether the owner's groups are to be written down now (team mode, the owner's
        request, groups not written yet by this process or changed since)."""
        if not self.enabled or identity.name != self.owner:
            return False
        if self._remembered == identity.groups:
            return False
        self._remembered = identity.groups
        return True

    def check_access(self, kind: str, name: str, field: str) -> None:
        """403 when the access list of ``kind:name`` does not name the owner or one of
        their groups (admins, and anything not listed, are open)."""
        if not self.enabled or self.owner_admin:
            return
        allowed = self.access.get(f"{kind}:{name}")
        if allowed is None or self.owner in allowed:
            return
        if any(f"group:{group}" in allowed for group in self.owner_groups):
            return
        raise ForbiddenError(
            f"{self.owner} may not use the {kind} {name!r}: its access list keeps it for "
            f"others. Ask an admin to add you or one of your groups.",
            field=field,
        )

    def quota_for(self, user: str, groups: tuple[str, ...]) -> Quota:
        """A user's own entry, else the most generous of their groups', else ``"*"``'s."""
        if not self.enabled:
            return Quota()
        if f"user:{user}" in self.quotas:
            return self.quotas[f"user:{user}"]
        mine = [self.quotas[f"group:{g}"] for g in groups if f"group:{g}" in self.quotas]
        if mine:
            return Quota(**{name: _most([getattr(q, name) for q in mine]) for name in QUOTA_FIELDS})
        return self.quotas.get("*", Quota())

    def owner_quota(self) -> Quota:
        return self.quota_for(self.owner, self.owner_groups)

    def queue_cap(self, owner: str) -> float | None:
        """The most GPUs of one shared host ``owner`` may hold at once (the fair queue's
        per-user cap): their quota's ``gpus_per_host``, else ``team_queue_user_cap``."""
        if not self.enabled:
            return None
        quota = self.owner_quota() if owner == self.owner else self.quota_for(owner, ())
        cap = quota.gpus_per_host if quota.gpus_per_host is not None else self.queue_user_cap
        return None if cap is None else float(cap)

    def left(self, used: dict[str, float]) -> dict[str, float | None]:
        """What the owner has left of each quota (None: no limit), from ``used``."""
        return {
            name: (None if limit is None else max(round(limit - used.get(name, 0), 6), 0))
            for name, limit in self.owner_quota().to_json().items()
        }

    def check_start(
        self,
        db: Connection,
        store: ServerStore,
        owner: str,
        config_json: str,
        cloud: str = "",
    ) -> None:
        """Refuse (409, saying which quota and how much is left) a start that would go past
        the owner's quota. Run in the transaction that commits the start, under the owner's
        named lock, so two starts at once cannot both take the last of it. ``cloud``: the
        server's (its CPUs and RAM count against ``cpu``/``memory_gb`` on shared hosts)."""
        if not self.enabled:
            return
        quota = self.owner_quota() if owner == self.owner else self.quota_for(owner, ())
        groups = self.owner_groups if owner == self.owner else ()
        budgets = [g for g in groups if g in self.group_budgets]
        if all(value is None for value in quota.to_json().values()) and not budgets:
            return
        store.database.lock(db, f"quota:{owner}")
        used = store.holding(db, owner)

        def refuse(name: str, message: str) -> ConflictError:
            return ConflictError(
                f"Quota reached: {message} Stop a server first, or ask an admin for a larger "
                f"quota.",
                field=f"quota.{name}",
                quota=quota.to_json(),
                used=used,
            )

        if quota.running_servers is not None and used["running_servers"] >= quota.running_servers:
            raise refuse(
                "running_servers",
                f"{owner} may have {quota.running_servers} compute server(s) running at once "
                f"and has {used['running_servers']}.",
            )
        config = json.loads(config_json)
        wanted = gpu_count(config_json)
        if quota.gpus is not None and wanted and used["gpus"] + wanted > quota.gpus:
            left = max(quota.gpus - used["gpus"], 0)
            raise refuse(
                "gpus",
                f"this server needs {wanted} GPU(s); {owner} has {left} of {quota.gpus} GPU(s) "
                f"left.",
            )
        if cloud in SHARED_HOST_CLOUDS:
            for name, unit, need in (
                ("cpu", "CPU(s)", float(config.get("cpu") or 1)),
                ("memory_gb", "GB of RAM", float(config.get("memory_gb") or 1.0)),
            ):
                limit = getattr(quota, name)
                if limit is not None and used[name] + need > limit + 1e-9:
                    left = max(limit - used[name], 0)
                    raise refuse(
                        name,
                        f"this server needs {need:g} {unit} of a shared host; {owner} has "
                        f"{left:g} of {limit:g} left.",
                    )
        if self.costs_money is not None and not self.costs_money(cloud, config_json):
            return
        if quota.monthly_spend is not None and self.month_spend is not None:
            spent = self.month_spend(owner)
            if spent >= quota.monthly_spend:
                used = {**used, "monthly_spend": spent}
                raise refuse(
                    "monthly_spend",
                    f"{owner} has spent ${spent:,.2f} of ${quota.monthly_spend:,.2f} this month; "
                    f"servers that cost money start again next month.",
                )
        for group in budgets:
            budget = self.group_budgets[group]
            if self.group_spend is None:
                continue
            spent = self.group_spend(group)
            if spent >= budget:
                used = {**used, "group_monthly_spend": spent}
                raise refuse(
                    "group_monthly_spend",
                    f"the group {group} has spent ${spent:,.2f} of its ${budget:,.2f} this "
                    f"month; its servers that cost money start again next month.",
                )


def gpu_count(config_json: str) -> int:
    """The GPUs a server's stored configuration asks for."""
    gpu = json.loads(config_json).get("gpu") or {}
    return int(gpu.get("count") or 0) if isinstance(gpu, dict) else 0
