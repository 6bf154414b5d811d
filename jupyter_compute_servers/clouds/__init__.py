"""Clouds: where compute servers run. Each is a plugin in the entry-point group
``jupyter_compute_servers.clouds``; ``local`` ships with the package."""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import Cloud, CloudStatus, Operation, SSHEndpoint

ENTRY_POINT_GROUP = "jupyter_compute_servers.clouds"


def installed_cloud_names() -> list[str]:
    """Every installed cloud's entry-point name (nothing is imported)."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_cloud_class(name: str) -> type[Cloud]:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        installed = ", ".join(installed_cloud_names())
        raise ValueError(f"No cloud named {name!r} is installed (installed: {installed}).")
    cls = matches[0].load()
    if not (isinstance(cls, type) and issubclass(cls, Cloud)):
        raise TypeError(f"The cloud entry point {name!r} is not a Cloud subclass: {cls!r}")
    return cls


__all__ = [
    "ENTRY_POINT_GROUP",
    "Cloud",
    "CloudStatus",
    "Operation",
    "SSHEndpoint",
    "installed_cloud_names",
    "load_cloud_class",
]
