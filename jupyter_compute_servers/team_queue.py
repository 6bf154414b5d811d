"""The fair GPU queue as people see it: each user their own entries (position, an estimate),
admins every host's queue, which they may reorder or cancel (audited).

The queue itself (its order, the per-user cap, the claim) is ``hosts.HostStore``'s, in the
shared database; this module adds who may see and change what, the host and server names,
the estimate and the audit lines.

An estimate is given only from what is known: a running server's next daily stop (its
``daily_stop``) is the one end this product can foresee for everyone's servers (idle stops
depend on activity only the owner's process watches). A waiting entry at position N gets the
N-th earliest known end of the servers holding GPUs on its host, as "by about then, N servers
will have ended" (those whose end is unknown may end sooner); with fewer than N known ends,
or for an entry over its owner's cap (it waits for its owner's own servers), it is "unknown".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .billing.limits import next_daily_stop
from .errors import ForbiddenError, NotFoundError
from .hosts import HostStore, QueueEntry

if TYPE_CHECKING:
    from .billing.service import ComputeServerCosts
    from .store import ServerStore
    from .team import Identity, Team


class TeamQueue:
    def __init__(
        self, hosts: HostStore, store: ServerStore, team: Team, costs: ComputeServerCosts
    ) -> None:
        self.hosts = hosts
        self.store = store
        self.team = team
        self.costs = costs

    # --- reads ----------------------------------------------------------------------------

    def _visible(self, entry: QueueEntry, identity: Identity) -> bool:
        return identity.admin or not self.team.enabled or entry.owner == self.team.owner

    def entries_json(self, identity: Identity) -> list[dict[str, Any]]:
        """Every queue entry the caller may see (admins: all; users: their own), in order."""
        entries = [e for e in self.hosts.queue() if self._visible(e, identity)]
        return self._json(entries)

    def by_server(self, server_ids: set[int]) -> dict[int, dict[str, Any]]:
        """The queue entries of these servers (the caller's own), by server id."""
        if not server_ids:
            return {}
        entries = [e for e in self.hosts.queue() if e.server_id in server_ids]
        return {item["server_id"]: item for item in self._json(entries)}

    def _json(self, entries: list[QueueEntry]) -> list[dict[str, Any]]:
        names = {host.id: host.name for host in self.hosts.hosts()}
        ends: dict[int, list[float | None]] = {}
        for host_id in {e.host_id for e in entries}:
            ends[host_id] = self._ends(host_id)
        lengths: dict[int, int] = {}
        for entry in self.hosts.queue():
            lengths[entry.host_id] = lengths.get(entry.host_id, 0) + 1
        return [
            {
                **entry.to_json(),
                "host_name": names.get(entry.host_id, ""),
                "queue_length": lengths.get(entry.host_id, 0),
                "estimated_start": self._estimate(entry, ends[entry.host_id]),
            }
            for entry in entries
        ]

    def _ends(self, host_id: int) -> list[float | None]:
        """When each server holding GPUs on the host will end, as far as is known."""
        now = self.costs.now()
        ends: list[float | None] = []
        for held in self.hosts.slices_on(host_id):
            if not held.gpu_uuids:
                continue
            try:
                # (server_usage: a user's login reads others' daily stops, not their servers)
                daily_stop = self.store.daily_stop_of(held.server_id)
            except NotFoundError:
                ends.append(None)
                continue
            ends.append(
                None if daily_stop is None else next_daily_stop(daily_stop, now, self.costs.zone)
            )
        return ends

    def _estimate(self, entry: QueueEntry, ends: list[float | None]) -> dict[str, Any]:
        known = sorted(end for end in ends if end is not None)
        if entry.over_cap:
            return {
                "at": None,
                "basis": f"unknown: {entry.owner} holds their most GPUs of this host; it waits "
                f"for one of their own servers to stop",
            }
        if entry.position > len(known):
            return {
                "at": None,
                "basis": "unknown: the servers holding this host's GPUs have no known end "
                "(no daily stop)",
            }
        return {
            "at": known[entry.position - 1],
            "basis": f"the daily stops of the servers holding this host's GPUs "
            f"({len(known)} of {len(ends)} known)",
        }

    def note(self, server_id: int) -> str:
        """The estimate in words, for a waiting server's progress ("" when unknown)."""
        entry = self.hosts.queue_entry(server_id)
        if entry is None:
            return ""
        estimate = self._estimate(entry, self._ends(entry.host_id))
        if estimate["at"] is None:
            return "estimated start unknown"
        minutes = max((estimate["at"] - self.costs.now()) / 60, 0)
        return f"estimated start in about {minutes:.0f} min"

    # --- changes (admins; a user may cancel their own) --------------------------------------

    def _entry(self, server_id: int, identity: Identity) -> QueueEntry:
        entry = self.hosts.queue_entry(server_id)
        if entry is None or not self._visible(entry, identity):
            # Another user's entry is the 404 of one that is not there.
            raise NotFoundError(f"Compute server {server_id} is not in a queue.", field="id")
        return entry

    def get_json(self, server_id: int, identity: Identity) -> dict[str, Any]:
        return self._json([self._entry(server_id, identity)])[0]

    def move(self, server_id: int, position: int, identity: Identity) -> dict[str, Any]:
        entry = self._entry(server_id, identity)
        if not identity.admin:
            raise ForbiddenError(
                f"Only a compute servers admin may reorder the queue; "
                f"{self.team.who_may_administer()}.",
                field="position",
            )
        moved = self.hosts.move_in_queue(server_id, position)
        self.store.record(
            entry.owner,
            server_id,
            entry.server_name,
            "queue_move",
            f"from {entry.position} to {moved.position}",
        )
        return self._json([moved])[0]

    def cancel(self, server_id: int, identity: Identity) -> dict[str, Any]:
        entry = self._entry(server_id, identity)
        cancelled = self.hosts.cancel_queued(server_id, identity.name)
        self.store.record(
            entry.owner, server_id, entry.server_name, "queue_cancel", f"at {entry.position}"
        )
        return self._json([cancelled])[0]
