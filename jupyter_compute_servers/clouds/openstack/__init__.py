"""The ``openstack`` cloud: compute servers as Nova servers (VMs) of an OpenStack project, through
openstacksdk (see ``cloud.py``).

- ``cloud``: ``OpenStackCloud``, its settings, offerings, checks and the servers' lifecycle;
- ``api``: the connection (clouds.yaml or settings), blocking calls run in threads;
- ``errors``: OpenStack's errors in words (quota, no valid host, credentials);
- ``catalog``: flavors (vCPUs, RAM, disk, GPUs from extra specs), images and networks;
- ``hostkeys``: the SSH host keys a VM prints to its console log;
- ``queue``: the first-come queue of starts waiting for GPUs.
"""

from .cloud import OpenStackCloud

__all__ = ["OpenStackCloud"]
