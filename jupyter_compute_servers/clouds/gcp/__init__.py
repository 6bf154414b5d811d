"""The ``gcp`` cloud: compute servers as Google Compute Engine VMs (see ``cloud.py``).

- ``cloud``: ``GCPCloud``, its settings, its offerings and checks, and the servers' lifecycle;
- ``api``: access to the Compute Engine API (credentials, clients, calls in a VM's project and
  zone, waiting for operations);
- ``instance``: the VM's description, built from a server's configuration;
- ``errors``: Google's errors, in words;
- ``catalog``: what Compute Engine offers (regions, machine types, GPUs, disk types);
- ``startup.sh``: the startup script each VM runs at boot.
"""

from .cloud import GCPCloud
from .instance import STARTUP_SCRIPT

__all__ = ["STARTUP_SCRIPT", "GCPCloud"]
