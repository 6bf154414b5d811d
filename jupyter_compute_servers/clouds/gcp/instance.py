"""The VM's description: the ``instances.insert`` body built from a server's configuration
(machine type, GPUs, spot, the boot disk and its image, network, labels, and the metadata that
carries the startup script and the server's client key), and the VM's name.

``InstanceDescription`` is a part of ``GCPCloud`` (``cloud.py``): it uses the cloud's settings.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from ...errors import ComputeServersError
from ...models import ServerConfig
from ..base import Operation
from . import catalog
from .api import SCOPES, _Where

if TYPE_CHECKING:
    from google.cloud import compute_v1

    from ..base import CloudServices

STARTUP_SCRIPT = files(__package__).joinpath("startup.sh").read_text()

#: Boot disk images by the server's image (the image catalogue's id, or "id:tag"), with "*"
#: for servers without GPUs, "*gpu" for servers with GPUs and "*arm64" for Arm machine types.
#: ``min_disk_gb`` is the image's own size. Deep Learning VM images carry the NVIDIA driver
#: (installed at first boot with the metadata install-nvidia-driver=True) and a conda Python
#: with ipykernel.
DEFAULT_BOOT_IMAGES: dict[str, dict[str, Any]] = {
    "*": {"source": "projects/debian-cloud/global/images/family/debian-12", "min_disk_gb": 10},
    "*arm64": {
        "source": "projects/debian-cloud/global/images/family/debian-12-arm64",
        "min_disk_gb": 10,
    },
    "*gpu": {
        "source": (
            "projects/deeplearning-platform-release/global/images/family/"
            "common-cu124-debian-11-py310"
        ),
        "min_disk_gb": 50,
    },
}


class InstanceDescription:
    """The VM description of ``GCPCloud``."""

    # What GCPCloud provides: its settings ...
    data_dir: str
    labels: dict[str, str]
    boot_images: dict[str, dict[str, Any]]
    instance_prefix: str
    ssh_username: str
    network: str
    subnetwork: str
    external_ip: bool
    network_tags: list[str]
    vm_service_account: str
    arch: Callable[[ServerConfig], str | None]
    installation_id: Callable[[], str]
    # ... and its state (see GCPCloud.__init__).
    _services: CloudServices | None

    def _boot_image_table(self) -> dict[str, dict[str, Any]]:
        return {**DEFAULT_BOOT_IMAGES, **self.boot_images}

    def boot_image(self, config: ServerConfig) -> dict[str, Any]:
        """The boot disk image for ``config``: {"source", "min_disk_gb"}."""
        image = config.image or ""
        if image.startswith("projects/"):
            return {"source": image, "min_disk_gb": catalog.DISK_MIN_GB}
        table = self._boot_image_table()
        fallback = "*gpu" if config.gpu else "*arm64" if self.arch(config) == "arm64" else "*"
        for key in (f"{image}:{config.image_tag}", image, fallback):
            if key in table:
                return {"min_disk_gb": catalog.DISK_MIN_GB, **table[key]}
        return {"min_disk_gb": catalog.DISK_MIN_GB, **DEFAULT_BOOT_IMAGES["*"]}

    # --- the VM's description --------------------------------------------------------------------

    def _labels(self, op: Operation) -> dict[str, str]:
        slug = re.sub(r"[^a-z0-9_-]", "-", op.server_name.lower())[:63]
        return {
            **self.labels,
            "managed-by": "jupyter-compute-servers",
            "compute-server-id": str(op.server_id),
            "compute-server-name": slug,
            "compute-server-owner": self.installation_id(),
        }

    def _new_instance_name(self, op: Operation) -> str:
        slug = re.sub(r"[^a-z0-9-]+", "-", op.server_name.lower()).strip("-")[:30].strip("-")
        parts = [self.instance_prefix, slug, str(op.server_id), secrets.token_hex(3)]
        return "-".join(part for part in parts if part)[:63]

    def _container_engine(self, config: ServerConfig) -> str:
        """The engine the server's image runs kernels in (docker, podman...), or ''."""
        images = self._services.images if self._services is not None else None
        if images is None or not config.image or config.image.startswith("projects/"):
            return ""
        try:
            runtime = images.runtime(config.image, config.image_tag)
        except ComputeServersError:
            return ""
        kind = runtime.get("kind") if isinstance(runtime, dict) else None
        return str(kind) if kind in ("docker", "podman", "apptainer") else ""

    def _ssh_keys_value(self, public_key: str) -> str:
        """``user:ssh-ed25519 AAAA... user``: the server's client key, for Google's guest
        environment to authorize for ``ssh_username``."""
        kind, blob = public_key.split()[:2]
        return f"{self.ssh_username}:{kind} {blob} {self.ssh_username}"

    def instance_resource(self, op: Operation, where: _Where) -> compute_v1.Instance:
        """The instances.insert body for ``op.config``."""
        from google.cloud import compute_v1

        config = op.config
        assert config.machine_type and config.region and config.disk_type
        zone = where.zone
        labels = self._labels(op)
        gpu = config.gpu
        model = catalog.GPUS.get(gpu.type) if gpu else None
        scheduling = compute_v1.Scheduling(
            # GPUs (and spot VMs) cannot live-migrate during host maintenance.
            on_host_maintenance="TERMINATE" if gpu or config.spot else "MIGRATE",
            automatic_restart=not config.spot,
        )
        if config.spot:
            scheduling.provisioning_model = "SPOT"
            scheduling.instance_termination_action = "STOP"
        metadata = {
            "ssh-keys": self._ssh_keys_value(op.client_public_key),
            "enable-guest-attributes": "TRUE",
            # Our key is in instance metadata: OS Login would ignore it.
            "enable-oslogin": "FALSE",
            "startup-script": STARTUP_SCRIPT,
            "jupyter-compute-servers-user": self.ssh_username,
        }
        engine = self._container_engine(config)
        if engine:
            metadata["jupyter-compute-servers-container-engine"] = engine
        if gpu:
            metadata["install-nvidia-driver"] = "True"
        interface = compute_v1.NetworkInterface()
        if self.subnetwork:
            interface.subnetwork = (
                self.subnetwork
                if "/" in self.subnetwork
                else f"projects/{where.project}/regions/{config.region}/subnetworks/"
                f"{self.subnetwork}"
            )
        else:
            interface.network = (
                self.network
                if "/" in self.network
                else f"projects/{where.project}/global/networks/{self.network}"
            )
        if self.external_ip:
            interface.access_configs = [
                compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")
            ]
        instance = compute_v1.Instance(
            name=where.instance,
            description=f"Jupyter compute server {op.server_name!r} (id {op.server_id})",
            machine_type=f"zones/{zone}/machineTypes/{config.machine_type}",
            labels=labels,
            disks=[
                compute_v1.AttachedDisk(
                    boot=True,
                    auto_delete=True,
                    initialize_params=compute_v1.AttachedDiskInitializeParams(
                        disk_name=where.disk,
                        disk_size_gb=config.disk_gb,
                        disk_type=f"zones/{zone}/diskTypes/{config.disk_type}",
                        source_image=self.boot_image(config)["source"],
                        labels=labels,
                    ),
                )
            ],
            metadata=compute_v1.Metadata(
                items=[compute_v1.Items(key=k, value=v) for k, v in metadata.items()]
            ),
            network_interfaces=[interface],
            scheduling=scheduling,
        )
        if gpu and model is not None and model.attachable:
            instance.guest_accelerators = [
                compute_v1.AcceleratorConfig(
                    accelerator_type=f"zones/{zone}/acceleratorTypes/{gpu.type}",
                    accelerator_count=gpu.count,
                )
            ]
        if self.network_tags:
            instance.tags = compute_v1.Tags(items=list(self.network_tags))
        if self.vm_service_account:
            instance.service_accounts = [
                compute_v1.ServiceAccount(email=self.vm_service_account, scopes=SCOPES)
            ]
        return instance
