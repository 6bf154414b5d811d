"""Services for tests that drive a cloud of their own (an OpenSSH host, a stand-in of Google's
API): built by the same composition root as the extension, the CLI and the kernel runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_compute_servers.clouds.base import Cloud
from jupyter_compute_servers.config import ComputeServersSettings
from jupyter_compute_servers.services import Services, build_services


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
