"""What a compute server is made of in the cluster, as API objects:

- a **Pod** ``<prefix>-<name>-<id>``: the catalogue image, CPU/memory requests and limits (equal:
  the Guaranteed QoS class, so it is not the first evicted), ``nvidia.com/gpu`` limits and the
  GPU type's node selector and tolerations, running ``sshd.sh``; no service-account token, no
  service links (a compute server is untrusted);
- a **PersistentVolumeClaim** of the same name: its disk, mounted at the user's home, kept
  while the server is off;
- a **Secret** of the same name: the SSH host key Jupyter generated (and pins) and the
  server's authorized client key, mounted read-only.

All three carry labels naming the compute server and this installation."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from ...models import ServerConfig

#: The pod's command (``/bin/sh -c``).
SSHD_SCRIPT = files(__package__).joinpath("sshd.sh").read_text()
#: Where the Secret is mounted in the pod.
SSH_DIR = "/etc/jupyter-compute-servers/ssh"
CONTAINER = "server"
MANAGED_BY = "jupyter-compute-servers"


def object_name(prefix: str, server_name: str, server_id: int) -> str:
    """A DNS-1123 label (pods, claims and secrets all accept it): ``jcs-my-box-7``."""
    slug = re.sub(r"[^a-z0-9-]+", "-", server_name.lower()).strip("-")[:30].strip("-")
    parts = [prefix, slug, str(server_id)]
    return "-".join(part for part in parts if part)[:63].strip("-")


def labels(server_id: int, installation: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "jupyter-compute-servers/server-id": str(server_id),
        "jupyter-compute-servers/installation": installation,
    }


def memory_quantity(memory_gb: float) -> str:
    """GB (GiB, as the other clouds mean it) as a Kubernetes quantity in Mi."""
    return f"{max(1, round(memory_gb * 1024))}Mi"


def claim(
    name: str, disk_gb: int, storage_class: str, access_mode: str, label: dict[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": f"{disk_gb}Gi"}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": label},
        "spec": spec,
    }


def secret(
    name: str, host_private_key: str, client_public_key: str, label: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": label},
        "stringData": {
            "ssh_host_ed25519_key": host_private_key,
            "authorized_keys": client_public_key.strip() + "\n",
        },
    }


def pod(
    name: str,
    config: ServerConfig,
    *,
    image: str,
    pull_policy: str,
    home: str,
    ssh_port: int,
    gpu_resource: str,
    gpu_type: dict[str, Any] | None,
    label: dict[str, str],
    service_account: str,
    image_pull_secrets: list[str],
) -> dict[str, Any]:
    """The pod of a compute server with configuration ``config``."""
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    if config.cpu:
        resources["requests"]["cpu"] = resources["limits"]["cpu"] = str(config.cpu)
    if config.memory_gb:
        memory = memory_quantity(config.memory_gb)
        resources["requests"]["memory"] = resources["limits"]["memory"] = memory
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Code on the server is untrusted: no token for the cluster's API, no environment
        # variables naming the namespace's services.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [
            {
                "name": CONTAINER,
                "image": image,
                "imagePullPolicy": pull_policy,
                "command": ["/bin/sh", "-c", SSHD_SCRIPT],
                "env": [
                    {"name": "JCS_SSH_PORT", "value": str(ssh_port)},
                    {"name": "JCS_SSH_DIR", "value": SSH_DIR},
                    {"name": "HOME", "value": home},
                ],
                "workingDir": home,
                "resources": resources,
                "volumeMounts": [
                    {"name": "disk", "mountPath": home},
                    {"name": "ssh", "mountPath": SSH_DIR, "readOnly": True},
                ],
                # The last lines of output become the termination message on failure, so a
                # pod that ends says why (an image without sshd).
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [
            {"name": "disk", "persistentVolumeClaim": {"claimName": name}},
            {"name": "ssh", "secret": {"secretName": name, "defaultMode": 0o400}},
        ],
    }
    if config.gpu is not None:
        resources["limits"][gpu_resource] = str(config.gpu.count)
        if gpu_type:
            if gpu_type.get("node_selector"):
                spec["nodeSelector"] = dict(gpu_type["node_selector"])
            if gpu_type.get("tolerations"):
                spec["tolerations"] = [dict(t) for t in gpu_type["tolerations"]]
    if service_account:
        spec["serviceAccountName"] = service_account
    if image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": label},
        "spec": spec,
    }
