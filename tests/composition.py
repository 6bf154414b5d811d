"""Services for tests that drive a cloud of their own (an OpenSSH host, a stand-in of Google's
API): built by the same composition root as the extension, the CLI and the kernel runtime, and
the few steps every cloud's tests take through the manager."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jupyter_compute_servers.clouds.base import Cloud
from jupyter_compute_servers.config import ComputeServersSettings
from jupyter_compute_servers.manager import ComputeServerManager
from jupyter_compute_servers.services import Services, build_services
from jupyter_compute_servers.store import ServerRecord


def services_for(
    data_dir: Path, clouds: dict[str, Cloud], *, sync_root: Path | None = None, **settings: Any
) -> Services:
    """Everything over ``clouds``, keeping the store, keys and kernel specs in ``data_dir``."""
    config = ComputeServersSettings(
        data_dir=str(data_dir), kernel_specs_dir=str(data_dir / "kernels"), **settings
    )
    return build_services(
        config, clouds=clouds, sync_root=str(sync_root) if sync_root is not None else None
    )


@contextlib.asynccontextmanager
async def services_over(data_dir: Path, name: str, cloud: Cloud) -> AsyncIterator[Services]:
    """The services of one cloud registered as ``name``, closed on the way out."""
    services = services_for(data_dir, {name: cloud})
    try:
        yield services
    finally:
        await services.close()


def recorded_events(manager: ComputeServerManager) -> list[dict[str, Any]]:
    """Every event the manager emits from now on, in order."""
    events: list[dict[str, Any]] = []
    manager.events.listeners.append(events.append)
    return events


async def act(
    manager: ComputeServerManager, server_id: int, action: str, **body: Any
) -> ServerRecord:
    """Request ``action`` as the API does, wait for it to finish and answer the server after."""
    manager.request_action(server_id, action, body or None)
    await manager.wait_for_action(server_id)
    return manager.get_server(server_id)


def create_server(
    manager: ComputeServerManager, name: str = "box", *, cloud: str, **config: Any
) -> ServerRecord:
    """Create a server named ``name`` on ``cloud`` with ``config`` as its hardware and image."""
    return manager.create_server({"name": name, "cloud": cloud, "config": config})
