"""``ServerEvents``: where the extension's events go (the Jupyter event bus, in-process
observers such as kernel specs and costs).

One object, built first by ``services.build_services``, so that every service that tells about
a change (the manager, the host registry, costs, sync, terminals) publishes the same way
without knowing who listens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import ServerRecord

EventCallback = Callable[[dict[str, Any]], None]

log = logging.getLogger(__name__)


class ServerEvents:
    def __init__(self, sink: EventCallback | None = None) -> None:
        #: Where events leave the process (the Jupyter server's event logger), if anywhere.
        self.sink = sink
        #: In-process observers of the same events, called before the sink.
        self.listeners: list[EventCallback] = []

    def publish(
        self, kind: str, server: ServerRecord | None, server_id: int | None, **extra: Any
    ) -> None:
        """Tell every observer that ``kind`` happened to a server (``server`` as recorded
        now; None once deleted) or, with ``server_id`` None, to no server in particular."""
        event = {
            "kind": kind,
            "server_id": server_id,
            "state": server.state.value if server else None,
            "state_reason": server.state_reason if server else "",
            "progress": (server.progress or {}).get("message", "") if server else "",
            **extra,
        }
        for observer in [*self.listeners, self.sink]:
            if observer is None:
                continue
            try:
                observer(event)
            except Exception:  # an observer must never break an operation
                log.exception("Failed to publish a compute server event")
