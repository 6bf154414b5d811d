"""The ``kubernetes`` cloud: a compute server is a pod with a PersistentVolumeClaim as its
disk, in one namespace of a cluster, reached over the API server's port-forward.
See ``cloud.py``."""

from .cloud import KubernetesCloud
from .pod import SSHD_SCRIPT

__all__ = ["SSHD_SCRIPT", "KubernetesCloud"]
