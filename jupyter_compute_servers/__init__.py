"""Compute servers for Jupyter: kernels, terminals and file sync on remote and GPU machines."""

from __future__ import annotations

from typing import Any

from ._quiet import install_warning_filters

install_warning_filters()

try:
    from ._version import __version__
except ImportError:  # pragma: no cover - only in a source tree that was never built
    import warnings

    warnings.warn(
        "Importing 'jupyter_compute_servers' outside a proper installation.", stacklevel=2
    )
    __version__ = "dev"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-compute-servers"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    # Imported here so that importing the package (the kernel provisioner and the CLI do)
    # does not pull in the whole server stack.
    from .app import ComputeServersApp

    return [{"module": "jupyter_compute_servers", "app": ComputeServersApp}]
