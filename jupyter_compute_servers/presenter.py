"""``ServerPresenter``: a compute server as the API answers it.

The record, the actions its state and cloud allow, its sync settings, its costs and its
workspace mount, assembled here so that the manager knows nothing of costs or sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .models import State, allowed_actions
from .sync.settings import SyncSettings

if TYPE_CHECKING:
    from .billing.service import ComputeServerCosts
    from .clouds.base import Cloud
    from .manager import SyncSettingsStore
    from .store import ServerRecord


class ServerPresenter:
    def __init__(
        self,
        clouds: dict[str, Cloud],
        costs: ComputeServerCosts,
        sync_settings: SyncSettingsStore,
        mount_state: Callable[[int], dict[str, Any] | None] = lambda server_id: None,
        queue_of: Callable[[set[int]], dict[int, dict[str, Any]]] = lambda server_ids: {},
        warm_kernels: Callable[[int], dict[str, Any] | None] = lambda server_id: None,
    ) -> None:
        self.clouds = clouds
        self.costs = costs
        self.sync_settings = sync_settings
        #: The server's live workspace mount in this process (mount/service.py), or None.
        self.mount_state = mount_state
        #: The GPU queue entries of waiting servers (``TeamQueue.by_server``), by id.
        self.queue_of = queue_of
        #: The server's warm kernels in this process (kernels/warm.py), or None.
        self.warm_kernels = warm_kernels

    def list_json(self, servers: list[ServerRecord]) -> Iterator[dict[str, Any]]:
        """Many servers (``GET servers``), one after another: what each needs from the
        database is read once for all, not per server, and each server's answer is built only
        when asked for, so that the caller can encode it and let it go (the answers of 500
        servers held together made Python's full garbage collections, 70 ms each here, start
        every few requests)."""
        cost_of = self.costs.server_json_batch()
        settings = self.sync_settings.all_settings()
        queue = self.queue_of({s.id for s in servers if s.state is State.STARTING})
        for server in servers:
            yield self.to_json(
                server,
                costs=cost_of(server),
                sync=settings.get(server.id, SyncSettings()),
                queue=queue.get(server.id),
            )

    def to_json(
        self,
        server: ServerRecord,
        *,
        costs: dict[str, Any] | None = None,
        sync: SyncSettings | None = None,
        queue: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        cloud = self.clouds.get(server.cloud)
        if sync is None:
            sync = self.sync_settings.settings(server.id)
        if queue is None and server.state is State.STARTING:
            queue = self.queue_of({server.id}).get(server.id)
        supports_suspend = cloud.supports_suspend if cloud else False
        return {
            "id": server.id,
            "name": server.name,
            "owner": server.owner,
            "color": server.color,
            "notes": server.notes,
            "cloud": server.cloud,
            "state": server.state.value,
            "state_reason": server.state_reason,
            "config": server.config.to_json(),
            "idle_timeout_minutes": server.idle_timeout_minutes,
            "spend_limit": (
                {"amount": server.spend_limit.amount, "period_days": server.spend_limit.period_days}
                if server.spend_limit
                else None
            ),
            "daily_stop": server.daily_stop.to_json() if server.daily_stop else None,
            "created": server.created,
            "updated": server.updated,
            "operation": server.operation,
            "sync": sync.to_json(),
            "workspace": server.workspace.to_json(),
            "mount": self.mount_state(server.id),
            # Kernels started ahead for it (count, their memory there); None if none.
            "warm_kernels": self.warm_kernels(server.id),
            "progress": server.progress,
            # Where it waits in a shared host's GPU queue (position, estimate); None if not.
            "queue": queue,
            "allowed_actions": (
                [
                    action
                    for action in allowed_actions(server.state, supports_suspend=supports_suspend)
                    if not cloud.refuse_action(action, server.config)
                ]
                if cloud
                else (["delete"] if server.state is State.DEPROVISIONED else [])
            ),
            **(costs if costs is not None else self.costs.server_json(server)),
        }
