"""The ``gcp`` cloud: compute servers as Google Compute Engine VMs (see ``cloud.py``).

- ``cloud``: ``GCPCloud``, its settings and the servers' lifecycle;
- ``catalog``: what Compute Engine offers (regions, machine types, GPUs, disk types);
- ``startup.sh``: the startup script each VM runs at boot.
"""

from .cloud import STARTUP_SCRIPT, GCPCloud

__all__ = ["STARTUP_SCRIPT", "GCPCloud"]
