"""The ``gcp`` cloud: compute servers as Google Compute Engine VMs (``google.cloud.compute_v1``).

A server is one VM and its boot disk (a persistent disk named after the VM, deleted with it),
in the zone of its configuration, labelled as a compute server. Its life:

- **start** from deprovisioned inserts the VM; from off, starts it. Either way the VM is ready
  only once Google publishes its SSH host key (guest attributes ``hostkeys/``, the instance has
  ``enable-guest-attributes=TRUE``) and our startup script (``startup.sh``) reports
  ``jupyter-compute-servers/ready`` for this boot; the host key is pinned from there, so SSH
  never trusts a key on first use. The server's own client key goes into the ``ssh-keys``
  metadata.
- **stop**, **suspend** / **resume** (not with GPUs: Compute Engine cannot), **reboot** (a
  reset), **deprovision** (delete the VM, its disk with it; an already-deleted VM is fine).
- **edits while off**: ``setMachineType``, ``setMachineResources`` (GPUs on N1), ``setScheduling``
  (spot), disk growth; a disk grown while running is resized and then its filesystem grown over
  SSH (``GROW_ROOT_FILESYSTEM``).
- **status** comes from ``instance.status``. Running servers are checked every
  ``preemption_check_interval`` seconds (the manager's watch); a spot VM found stopped was
  preempted: the server becomes off with the reason and a ``preempted`` event, and is started
  again when ``restart_preempted`` is set.

Every name the VM will have is remembered before the insert, so a crash never leaves a VM
nobody knows about; a failed insert leaves nothing recorded. Quota and zone-capacity errors are
explained with the resource, the zone and what to try. The client library's calls are
blocking, so they run in threads; its own operation polling would go to Google's default
endpoint, so operations are waited for with ``zoneOperations.wait`` on the configured one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

import asyncssh
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, default, validate

from ...errors import (
    CloudError,
    ConflictError,
    OperationFailed,
    ValidationError,
)
from ...models import ServerConfig, State
from ..base import (
    Cloud,
    CloudServices,
    CloudStatus,
    Operation,
    SSHEndpoint,
    check_linux_user_name,
    check_resource_prefix,
)
from . import catalog
from .api import ApiAccess, _Clients, _Where
from .errors import GoogleError, explain
from .instance import InstanceDescription

if TYPE_CHECKING:
    from google.cloud import compute_v1


#: The guest-attribute namespace our startup script writes.
NAMESPACE = "jupyter-compute-servers"
#: Host key types taken from guest attributes, most preferred first.
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")
LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
SOURCE_IMAGE = re.compile(
    r"^projects/[a-z][a-z0-9-]*[a-z0-9]/global/images/(family/)?[a-z][a-z0-9-]*$"
)


#: Grows the root partition and filesystem to fill a disk that was resized while the VM runs.
#: Run as root over SSH (``sudo -n``; the guest environment gives the ``ssh-keys`` user
#: passwordless sudo). growpart exits 1 when there is nothing to grow.
GROW_ROOT_FILESYSTEM = r"""set -eu
source=$(findmnt -n -o SOURCE /)
disk=/dev/$(lsblk -n -o PKNAME "$source" | head -n 1)
partition=$(printf '%s\n' "$source" | sed -E 's/^.*[^0-9]([0-9]+)$/\1/')
growpart "$disk" "$partition" || [ $? -eq 1 ]
case "$(findmnt -n -o FSTYPE /)" in
  ext2|ext3|ext4) resize2fs "$source" ;;
  xfs) xfs_growfs / ;;
  *) echo "cannot grow a $(findmnt -n -o FSTYPE /) filesystem" >&2; exit 1 ;;
esac
df -h /"""

_RUNNING_STATUSES = ("PROVISIONING", "STAGING", "RUNNING", "REPAIRING")
_OFF_STATUSES = ("STOPPING", "TERMINATED")
_SUSPENDED_STATUSES = ("SUSPENDING", "SUSPENDED")


# --- the cloud -------------------------------------------------------------------------------


class GCPCloud(ApiAccess, InstanceDescription, Cloud):
    """Google Compute Engine VMs, with GPUs, spot and persistent disks."""

    name: ClassVar[str] = "gcp"
    label: ClassVar[str] = "Google Cloud"
    description: ClassVar[str] = (
        "A Compute Engine VM in your Google Cloud project: any machine type, NVIDIA GPUs, spot "
        "pricing, and a persistent disk that is kept while it is off."
    )
    supports_suspend: ClassVar[bool] = True
    config_fields: ClassVar[frozenset[str]] = frozenset(
        {
            "image",
            "image_tag",
            "machine_type",
            "gpu",
            "disk_gb",
            "disk_type",
            "spot",
            "region",
            "zone",
        }
    )

    # --- configuration ---------------------------------------------------------------------

    project = Unicode(
        "",
        help=(
            "The Google Cloud project VMs are created in. Empty: the project of the "
            "credentials (Application Default Credentials, GOOGLE_CLOUD_PROJECT)."
        ),
    ).tag(config=True)

    credentials_file = Unicode(
        "",
        help=(
            "A credentials file (a service account key, or any file google.auth can load). "
            "Empty: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, "
            "`gcloud auth application-default login`, or the metadata server on Google Cloud)."
        ),
    ).tag(config=True)

    region = Unicode("us-central1", help="The region new servers are in by default.").tag(
        config=True
    )

    zone = Unicode(
        "",
        help="The zone new servers are in by default. Empty: the first zone of the region.",
    ).tag(config=True)

    api_endpoint = Unicode(
        "",
        help=(
            "The Compute Engine API endpoint (e.g. a Private Service Connect address). Empty: "
            "Google's default, https://compute.googleapis.com."
        ),
    ).tag(config=True)

    machine_type = Unicode("e2-standard-2", help="The machine type of new servers.").tag(
        config=True
    )
    disk_gb = Int(50, help="The boot disk size (GB) of new servers.").tag(config=True)
    disk_type = Unicode("pd-balanced", help="The boot disk type of new servers.").tag(config=True)

    boot_images = Dict(
        help=(
            "The boot disk image of a server, by its image: keys are image ids of the image "
            "catalogue or 'id:tag', with '*' for any image without GPUs and '*gpu' for any "
            "image with GPUs; values are {'source': 'projects/P/global/images/family/F' (or "
            ".../images/NAME), 'min_disk_gb': N}. A server's image may also be a source image "
            "path itself. Entries given here are added to the defaults."
        ),
    ).tag(config=True)

    labels = Dict(
        help="Extra labels for every VM and disk (cost centre, team): lowercase keys and values.",
    ).tag(config=True)

    network = Unicode("default", help="The VPC network VMs join.").tag(config=True)
    subnetwork = Unicode(
        "", help="The subnetwork (name in the server's region, or a full path); empty: automatic."
    ).tag(config=True)
    external_ip = Bool(
        True, help="Give VMs an ephemeral external IP (needed to reach them over the Internet)."
    ).tag(config=True)
    use_internal_ip = Bool(
        False,
        help="Connect to VMs by their internal IP (Jupyter runs in the same VPC network).",
    ).tag(config=True)
    network_tags = List(
        Unicode(), help="Network tags for VMs (for firewall rules that allow SSH, port 22)."
    ).tag(config=True)
    vm_service_account = Unicode(
        "",
        help=(
            "A service account (email) the VMs run as, with the cloud-platform scope, so code "
            "on them can use Google Cloud. Empty: none."
        ),
    ).tag(config=True)

    instance_prefix = Unicode("jcs", help="The start of VM names (letters, digits, '-').").tag(
        config=True
    )
    ssh_username = Unicode(
        "jupyter", help="The user on the VMs (created by Google's guest environment)."
    ).tag(config=True)
    ssh_port = Int(22, help="The SSH port of the VMs (tests point it elsewhere).").tag(config=True)

    preemption_check_interval = Float(
        60.0,
        help=(
            "Seconds between checks that running servers still run, so a preempted spot VM "
            "(or a VM stopped outside Jupyter) is shown as off with the reason. 0: never."
        ),
    ).tag(config=True)
    restart_preempted = Bool(
        False,
        help="Start a preempted spot server again at once (it may fail while capacity is short).",
    ).tag(config=True)

    boot_timeout = Float(
        1200.0,
        help=(
            "Seconds a start may take until the VM is ready for kernels (a GPU image's first "
            "boot installs the driver). A VM not ready by then is stopped."
        ),
    ).tag(config=True)
    operation_timeout = Float(600.0, help="Seconds to wait for one Compute Engine operation.").tag(
        config=True
    )
    poll_interval = Float(2.0, help="Seconds between looks at a booting VM.").tag(config=True)
    catalog_ttl = Float(
        3600.0, help="Seconds the zones and GPUs read from the API are reused."
    ).tag(config=True)

    @validate("labels")
    def _check_labels(self, proposal: Any) -> dict[str, str]:
        labels = proposal["value"]
        for key, value in labels.items():
            if not isinstance(key, str) or not LABEL.fullmatch(key):
                raise TraitError(f"GCPCloud.labels: key {key!r} is not a valid label key.")
            if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value):
                raise TraitError(f"GCPCloud.labels[{key!r}]: {value!r} is not a valid value.")
        return dict(labels)

    @validate("boot_images")
    def _check_boot_images(self, proposal: Any) -> dict[str, dict[str, Any]]:
        images = proposal["value"]
        for key, entry in images.items():
            if not isinstance(entry, dict) or not SOURCE_IMAGE.fullmatch(str(entry.get("source"))):
                raise TraitError(
                    f"GCPCloud.boot_images[{key!r}] needs 'source': "
                    f"'projects/P/global/images/family/F' or 'projects/P/global/images/NAME'."
                )
            unknown = set(entry) - {"source", "min_disk_gb"}
            if unknown:
                raise TraitError(f"GCPCloud.boot_images[{key!r}]: unknown key {sorted(unknown)[0]}")
        return dict(images)

    @validate("ssh_username")
    def _check_username(self, proposal: Any) -> str:
        return check_linux_user_name(self, "ssh_username", proposal["value"])

    @validate("instance_prefix")
    def _check_prefix(self, proposal: Any) -> str:
        return check_resource_prefix(self, "instance_prefix", proposal["value"])

    @default("zone")
    def _default_zone(self) -> str:
        zones = catalog.REGIONS.get(self.region)
        return zones[0] if zones else f"{self.region}-a"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._services: CloudServices | None = None
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gcp")
        self._lock = threading.Lock()
        self._auth: tuple[Any, str] | None = None
        self._auth_error: tuple[float, str] | None = None
        self._clients: _Clients | None = None
        #: Live catalogue: zone -> region, and GPU type -> {zone: max count}; with its time.
        self._zones: dict[str, str] = {}
        self._gpu_zones: dict[str, dict[str, int]] = {}
        self._catalog_at: float | None = None
        self._catalog_error: tuple[float, str] | None = None
        #: Endpoints of servers found running by a reconcile (address and key asked of Google).
        self._endpoints: dict[int, SSHEndpoint] = {}

    def bind(self, services: CloudServices) -> None:
        self._services = services

    # --- offerings ----------------------------------------------------------------------------

    async def availability(self) -> tuple[bool, str]:
        try:
            await self._thread(self._credentials)
        except CloudError as e:
            return False, e.message
        error = await self.refresh_catalog()
        if error:
            return False, error
        return True, ""

    async def refresh_catalog(self, *, force: bool = False) -> str:
        """Read the zones and each zone's GPUs from the API (cached for ``catalog_ttl``).
        Answers "" or why the API could not be used."""
        now = time.monotonic()
        if not force:
            if self._catalog_at is not None and now - self._catalog_at < self.catalog_ttl:
                return ""
            if self._catalog_error is not None and now - self._catalog_error[0] < 30:
                return self._catalog_error[1]
        try:
            clients, project = await self._api()

            # Pages are fetched while iterating: all of it runs in _call, so errors are worded.
            def list_zones(timeout: float) -> dict[str, str]:
                pages = clients.zones.list(project=project, timeout=timeout)
                return {z.name: z.region.rsplit("/", 1)[-1] for z in pages if z.status == "UP"}

            def list_gpus(timeout: float) -> dict[str, dict[str, int]]:
                found: dict[str, dict[str, int]] = {}
                pages = clients.accelerators.aggregated_list(project=project, timeout=timeout)
                for _, scoped in pages:
                    for accelerator in scoped.accelerator_types:
                        zone = accelerator.zone.rsplit("/", 1)[-1]
                        found.setdefault(accelerator.name, {})[zone] = (
                            accelerator.maximum_cards_per_instance
                        )
                return found

            zones = await self._call("list zones", list_zones)
            self._gpu_zones = await self._call("list GPU types", list_gpus)
            self._zones = zones
        except GoogleError as e:
            message = e.message
            if e.http_status in (401, 403):
                message = explain(
                    e, ServerConfig(), self.zone, self._project_or_blank(), exists=False
                )
            self._catalog_error = (now, message)
            self.log.warning("Google Cloud is not usable now: %s", message)
            return message
        except CloudError as e:
            self._catalog_error = (now, e.message)
            return e.message
        self._catalog_at = now
        self._catalog_error = None
        return ""

    def _project_or_blank(self) -> str:
        return self._auth[1] if self._auth else self.project

    def defaults(self) -> dict[str, Any]:
        return {
            "image": "python",
            "image_tag": "system",
            "machine_type": self.machine_type,
            "gpu": None,
            "disk_gb": self.disk_gb,
            "disk_type": self.disk_type,
            "spot": False,
            "region": self.region,
            "zone": self.zone,
        }

    def _regions(self) -> dict[str, list[str]]:
        if not self._zones:
            return {region: list(zones) for region, zones in catalog.REGIONS.items()}
        regions: dict[str, list[str]] = {}
        for zone, region in sorted(self._zones.items()):
            regions.setdefault(region, []).append(zone)
        return regions

    def offerings(self) -> dict[str, Any]:
        live = self._catalog_at is not None
        gpus = []
        for model in catalog.GPUS.values():
            # Not live: the built-in zones of the GPUs attached to N1 (unknown for the rest).
            zones: Iterable[str] | None = (
                self._gpu_zones.get(model.type, {})
                if live
                else catalog.BUILTIN_GPU_ZONES.get(model.type)
            )
            gpus.append(
                {
                    "type": model.type,
                    "label": model.label,
                    "memory_gb": model.memory_gb,
                    "machine_family": model.family,
                    "attachable": model.attachable,
                    "counts": model.counts(),
                    "machine_types": model.machine_types() or None,
                    "zones": sorted(zones) if zones is not None else None,
                }
            )
        return {
            "project": self._project_or_blank(),
            "live": live,
            "default_region": self.region,
            "default_zone": self.zone,
            "regions": [{"name": r, "zones": z} for r, z in sorted(self._regions().items())],
            "machine_types": catalog.machine_types(),
            "gpus": gpus,
            "disk_types": [
                {"name": d.name, "label": d.label, "not_on_families": sorted(d.not_on)}
                for d in catalog.DISK_TYPES.values()
            ],
            "disk_gb": {"min": catalog.DISK_MIN_GB, "max": catalog.DISK_MAX_GB},
            "boot_images": self._boot_image_table(),
            "spot": True,
            "suspend": {"supported": True, "with_gpus": False},
        }

    def check_config(self, config: ServerConfig) -> None:
        """Everything Google would refuse that can be known without asking it."""
        if config.extra:
            key = sorted(config.extra)[0]
            raise ValidationError(
                f"config.extra.{key} is not an option of the gcp cloud; it has no extra options.",
                field=f"config.extra.{key}",
            )
        for name in ("image", "machine_type", "disk_gb", "disk_type", "region", "zone"):
            if getattr(config, name) is None:
                raise ValidationError(f"config.{name} is required.", field=f"config.{name}")
        assert config.image and config.machine_type and config.disk_type
        assert config.region and config.zone and config.disk_gb
        if config.image.startswith("projects/") and not SOURCE_IMAGE.fullmatch(config.image):
            raise ValidationError(
                f"config.image {config.image!r} is not a source image: use "
                f"projects/P/global/images/family/F or projects/P/global/images/NAME, or an "
                f"image of the catalogue.",
                field="config.image",
            )
        if not catalog.MACHINE_TYPE_PATTERN.fullmatch(config.machine_type):
            raise ValidationError(
                f"config.machine_type {config.machine_type!r} is not a machine type name "
                f"(such as n1-standard-4).",
                field="config.machine_type",
            )
        if not catalog.REGION_PATTERN.fullmatch(config.region):
            raise ValidationError(
                f"config.region {config.region!r} is not a region (such as us-central1).",
                field="config.region",
            )
        zone = catalog.ZONE_PATTERN.fullmatch(config.zone)
        if not zone:
            raise ValidationError(
                f"config.zone {config.zone!r} is not a zone (such as us-central1-a).",
                field="config.zone",
            )
        if zone["region"] != config.region:
            raise ValidationError(
                f"config.zone {config.zone} is not in config.region {config.region}.",
                field="config.zone",
            )
        if self._zones and config.zone not in self._zones:
            zones = self._regions().get(config.region, [])
            raise ValidationError(
                f"Zone {config.zone} is not offered to project {self._project_or_blank()}; "
                + (
                    f"zones of {config.region}: {', '.join(zones)}."
                    if zones
                    else f"region {config.region} has none."
                ),
                field="config.zone",
            )
        field, message = catalog.check_gpu(
            config.machine_type,
            config.gpu.type if config.gpu else None,
            config.gpu.count if config.gpu else None,
        )
        if field:
            raise ValidationError(message, field=field)
        if config.gpu is not None and self._catalog_at is not None:
            zones_with = self._gpu_zones.get(config.gpu.type, {})
            if config.zone not in zones_with:
                nearby = sorted(z for z in zones_with if z.startswith(config.region + "-"))
                elsewhere = sorted(zones_with)[:8]
                hint = (
                    f"zones of {config.region} with it: {', '.join(nearby)}"
                    if nearby
                    else "other zones with it: " + (", ".join(elsewhere) or "none")
                )
                raise ValidationError(
                    f"Zone {config.zone} has no {config.gpu.type} GPUs; {hint}.",
                    field="config.zone",
                )
        problem = catalog.check_disk_type(config.machine_type, config.disk_type)
        if problem:
            raise ValidationError(problem, field="config.disk_type")
        minimum = max(catalog.DISK_MIN_GB, int(self.boot_image(config)["min_disk_gb"]))
        if not minimum <= config.disk_gb <= catalog.DISK_MAX_GB:
            raise ValidationError(
                f"config.disk_gb must be between {minimum} and {catalog.DISK_MAX_GB} for this "
                f"image; got {config.disk_gb}.",
                field="config.disk_gb",
            )

    def arch(self, config: ServerConfig) -> str | None:
        if not config.machine_type:
            return None
        return catalog.machine_arch(config.machine_type)

    def refuse_action(self, action: str, config: ServerConfig) -> str:
        if action == "suspend" and config.gpu is not None:
            return (
                "Compute Engine cannot suspend a VM with GPUs; stop it instead (its disk is "
                "kept, its memory is not)"
            )
        return ""

    def watch_interval(self) -> float:
        return max(0.0, self.preemption_check_interval)

    # --- looking at the VM -----------------------------------------------------------------------

    def _where(self, op_or_data: Operation | dict[str, Any]) -> _Where | None:
        data = op_or_data.cloud_data if isinstance(op_or_data, Operation) else op_or_data
        if not data.get("instance") or not data.get("zone") or not data.get("project"):
            return None
        return _Where(str(data["project"]), str(data["zone"]), str(data["instance"]))

    def _address(self, instance: compute_v1.Instance) -> str:
        for interface in instance.network_interfaces:
            if self.use_internal_ip and interface.network_i_p:
                return str(interface.network_i_p)
            for access in interface.access_configs:
                if access.nat_i_p:
                    return str(access.nat_i_p)
        return ""

    @staticmethod
    def host_key(attributes: dict[str, str]) -> str:
        """The preferred host key among guest attributes ``hostkeys/<type>``, as an OpenSSH
        public key line; "" when none is published (or none can be read)."""
        for kind in HOST_KEY_TYPES:
            value = (attributes.get(kind) or "").strip()
            if not value:
                continue
            line = value if value.split()[0] == kind else f"{kind} {value}"
            try:
                key = asyncssh.import_public_key(line)
            except (asyncssh.KeyImportError, ValueError):
                continue
            return key.export_public_key().decode().strip()
        return ""

    @staticmethod
    def _boot_of(value: str | None) -> str:
        return (value or "").strip().split(" ", 1)[0]

    async def _boot_before(self, clients: _Clients, where: _Where) -> str:
        """The boot id of the last boot that reported (so its answers are not taken for the
        next boot's)."""
        ours = await self._attributes(clients, where, f"{NAMESPACE}/")
        return self._boot_of(ours.get("status") or ours.get("ready"))

    async def _wait_ready(
        self, op: Operation, clients: _Clients, where: _Where, previous_boot: str
    ) -> None:
        """Wait until the VM runs, its host key is published and the startup script reports
        ready for a boot other than ``previous_boot``; remember address, key and Python."""
        deadline = time.monotonic() + self.boot_timeout
        shown = ""
        while True:
            instance = await self._get(clients, where)
            if instance is None:
                op.remember(instance=None, address=None, host_key=None)
                raise OperationFailed(
                    f"VM {where.instance} disappeared while starting (deleted outside Jupyter).",
                    state=State.DEPROVISIONED.value,
                )
            status = instance.status
            message, fraction = f"Compute Engine reports the VM {status.lower()}", 0.5
            if status in _OFF_STATUSES or status in _SUSPENDED_STATUSES:
                stopped = self._stopped_reason(instance)
                raise OperationFailed(
                    f"The VM stopped while starting: {stopped}",
                    state=State.SUSPENDED.value
                    if status in _SUSPENDED_STATUSES
                    else State.OFF.value,
                )
            if status == "RUNNING":
                address = self._address(instance)
                host_key = self.host_key(await self._attributes(clients, where, "hostkeys/"))
                ours = await self._attributes(clients, where, f"{NAMESPACE}/")
                # The boot the startup script last ran in (it says "status" first thing).
                current = self._boot_of(ours.get("status"))
                fresh = bool(current) and current != previous_boot
                error = ours.get("error", "")
                if error and fresh and self._boot_of(error) == current:
                    await self._stop_quietly(clients, where)
                    raise OperationFailed(
                        f"The VM's startup script failed: {error.split(' ', 1)[-1]}. The VM was "
                        f"stopped.",
                        state=State.OFF.value,
                    )
                ready = self._boot_of(ours.get("ready"))
                if current and ready != current:
                    ready = ""  # an earlier boot's
                if not address:
                    raise CloudError(
                        f"VM {where.instance} has no "
                        + ("internal" if self.use_internal_ip else "external")
                        + " IP address to connect to (c.GCPCloud.external_ip / use_internal_ip)."
                    )
                if host_key and ready and ready != previous_boot:
                    op.remember(
                        address=address,
                        host_key=host_key,
                        python=ours.get("python") or "python3",
                        boot=ready,
                    )
                    self._endpoints.pop(op.server_id, None)
                    return
                if not host_key:
                    message, fraction = "Waiting for the VM to publish its SSH host key", 0.6
                else:
                    if fresh:
                        message = f"On the VM: {ours['status'].split(' ', 1)[-1]}"
                    else:
                        message = "Waiting for the VM's startup script"
                    fraction = 0.7
            if message != shown:
                op.progress(message, fraction)
                shown = message
            if time.monotonic() > deadline:
                await self._stop_quietly(clients, where)
                raise OperationFailed(
                    f"VM {where.instance} was not ready for kernels within "
                    f"{self.boot_timeout / 60:g} minutes (last: {shown}), so it was stopped. Start "
                    f"it again, or read its boot log: gcloud compute instances "
                    f"get-serial-port-output {where.instance} --zone {where.zone} --project "
                    f"{where.project}",
                    state=State.OFF.value,
                )
            await asyncio.sleep(self.poll_interval)

    async def _stop_quietly(self, clients: _Clients, where: _Where) -> None:
        """Stop a VM that cannot serve, so it costs nothing; failures are only logged."""
        try:
            operation = await self._call(
                f"stop VM {where.instance}",
                clients.instances.stop_unary,
                project=where.project,
                zone=where.zone,
                instance=where.instance,
            )
            await self._wait(clients, where, operation, f"stop VM {where.instance}")
        except CloudError as e:
            self.log.warning("Could not stop VM %s: %s", where.instance, e.message)

    def _stopped_reason(self, instance: compute_v1.Instance) -> str:
        spot = instance.scheduling.provisioning_model == "SPOT" or instance.scheduling.preemptible
        when = f" at {instance.last_stop_timestamp}" if instance.last_stop_timestamp else ""
        if spot:
            return (
                f"Google Cloud preempted this spot VM{when} (it took the capacity back). The disk "
                f"is kept: start the server again, or use on-demand (config.spot false) for a VM "
                f"that is not preempted."
            )
        message = f" ({instance.status_message})" if instance.status_message else ""
        return (
            f"The VM was stopped outside Jupyter{when}{message}: from the console or gcloud, by "
            f"a shutdown inside it, or by Google for host maintenance."
        )

    async def _settle_failure(
        self, op: Operation, clients: _Clients, where: _Where, error: GoogleError, doing: str
    ) -> OperationFailed | CloudError:
        """After a failed create or start: what the server is now, with the explanation."""
        instance = await self._get(clients, where)
        message = explain(error, op.config, where.zone, where.project, exists=instance is not None)
        if instance is None:
            # Nothing was created: record nothing.
            op.remember(instance=None, zone=None, project=None, address=None, host_key=None)
            return OperationFailed(message, state=State.DEPROVISIONED.value)
        if instance.status in _OFF_STATUSES:
            return OperationFailed(message, state=State.OFF.value)
        return CloudError(message)

    # --- lifecycle -----------------------------------------------------------------------------

    async def create(self, op: Operation) -> None:
        from google.cloud import compute_v1

        try:
            # Checked again before any API call: zones and GPUs may have changed since.
            self.check_config(op.config)
        except ValidationError as e:
            raise OperationFailed(
                e.message, state=State.DEPROVISIONED.value, field=e.field
            ) from None
        clients, project = await self._api()
        assert op.config.zone
        where = self._where(op)
        existing = await self._get(clients, where) if where is not None else None
        if where is None or existing is None:
            # A name left by a create that was interrupted before its insert is reused.
            name = where.instance if where is not None else self._new_instance_name(op)
            where = _Where(project, op.config.zone, name)
        # Remembered before the insert: a crash from here on leaves a name to look for.
        op.remember(
            project=where.project,
            zone=where.zone,
            instance=where.instance,
            address=None,
            host_key=None,
            boot=None,
        )
        previous_boot = ""
        if existing is None:
            op.progress(f"Creating VM {where.instance} in {where.zone}", 0.1)
            doing = f"create VM {where.instance} in {where.zone}"
            try:
                operation = await self._call(
                    doing,
                    clients.instances.insert_unary,
                    request=compute_v1.InsertInstanceRequest(
                        project=where.project,
                        zone=where.zone,
                        instance_resource=self.instance_resource(op, where),
                        request_id=str(uuid.uuid4()),
                    ),
                )
                op.progress("Compute Engine is creating the VM", 0.3)
                await self._wait(clients, where, operation, doing, op)
            except GoogleError as e:
                lost_answer = e.http_status is None and not e.codes
                if not (lost_answer and await self._get(clients, where) is not None):
                    raise await self._settle_failure(op, clients, where, e, doing) from None
                # The insert happened; only its answer was lost. Carry on with the VM.
                op.progress("Compute Engine created the VM (its answer was lost)", 0.3)
        else:
            # The VM of an interrupted create exists: carry on with it.
            op.progress(f"Found VM {where.instance} from an interrupted start", 0.2)
            previous_boot = await self._boot_before(clients, where)
            await self._power_on(op, clients, where, existing)
            if existing.status == "RUNNING":
                previous_boot = ""
        await self._wait_ready(op, clients, where, previous_boot)

    async def _power_on(
        self, op: Operation, clients: _Clients, where: _Where, instance: compute_v1.Instance
    ) -> None:
        """Start (or resume) a VM that exists, waiting out a stop in progress."""
        deadline = time.monotonic() + self.operation_timeout
        while instance.status in ("STOPPING", "SUSPENDING"):
            if time.monotonic() > deadline:
                raise CloudError(f"VM {where.instance} is still {instance.status.lower()}.")
            op.progress(f"Waiting for the VM to finish {instance.status.lower()}", 0.1)
            await asyncio.sleep(self.poll_interval)
            found = await self._get(clients, where)
            if found is None:
                op.remember(instance=None, zone=None, project=None)
                raise OperationFailed(
                    f"VM {where.instance} no longer exists (deleted outside Jupyter); start "
                    f"the server again for a new one.",
                    state=State.DEPROVISIONED.value,
                )
            instance = found
        if instance.status not in ("TERMINATED", "SUSPENDED"):
            return
        resume = instance.status == "SUSPENDED"
        method = clients.instances.resume_unary if resume else clients.instances.start_unary
        doing = f"{'resume' if resume else 'start'} VM {where.instance}"
        op.progress(f"{'Resuming' if resume else 'Starting'} VM {where.instance}", 0.2)
        try:
            await self._operate(clients, where, doing, method, op, instance=where.instance)
        except GoogleError as e:
            raise await self._settle_failure(op, clients, where, e, doing) from None

    async def _existing(
        self, op: Operation, clients: _Clients
    ) -> tuple[_Where, compute_v1.Instance]:
        where = self._where(op)
        instance = await self._get(clients, where) if where is not None else None
        if where is None or instance is None:
            op.remember(instance=None, zone=None, project=None, address=None, host_key=None)
            raise OperationFailed(
                "The server's VM no longer exists (deleted outside Jupyter, or never created); "
                "start the server again for a new one.",
                state=State.DEPROVISIONED.value,
            )
        return where, instance

    async def start(self, op: Operation) -> None:
        clients, _ = await self._api()
        where, instance = await self._existing(op, clients)
        previous_boot = (
            "" if instance.status == "RUNNING" else await self._boot_before(clients, where)
        )
        await self._power_on(op, clients, where, instance)
        await self._wait_ready(op, clients, where, previous_boot)
        await self._grow_pending(op)

    async def stop(self, op: Operation) -> None:
        clients, _ = await self._api()
        where, instance = await self._existing(op, clients)
        if instance.status != "TERMINATED":
            await self._power_off(
                op, clients, where, clients.instances.stop_unary, "stop", "Stopping"
            )
        self._forget_address(op)

    async def suspend(self, op: Operation) -> None:
        refusal = self.refuse_action("suspend", op.config)
        if refusal:
            raise ConflictError(refusal + ".", field="action")
        clients, _ = await self._api()
        where, _ = await self._existing(op, clients)
        await self._power_off(
            op, clients, where, clients.instances.suspend_unary, "suspend", "Suspending"
        )
        self._forget_address(op)

    async def _power_off(
        self,
        op: Operation,
        clients: _Clients,
        where: _Where,
        call: Callable[..., compute_v1.Operation],
        verb: str,
        progress: str,
    ) -> None:
        """Stop or suspend the VM with the instances API's ``call`` ("stop", "Stopping")."""
        op.progress(f"{progress} VM {where.instance}", 0.3)
        await self._operate(
            clients, where, f"{verb} VM {where.instance}", call, op, instance=where.instance
        )

    def _forget_address(self, op: Operation) -> None:
        """A VM that is not running keeps no address (an ephemeral one is released)."""
        op.remember(address=None)
        self._endpoints.pop(op.server_id, None)

    async def resume(self, op: Operation) -> None:
        clients, _ = await self._api()
        where, instance = await self._existing(op, clients)
        await self._power_on(op, clients, where, instance)
        # No new boot: the startup script's answer from this boot stands.
        await self._wait_ready(op, clients, where, previous_boot="")
        await self._grow_pending(op)

    async def reboot(self, op: Operation) -> None:
        clients, _ = await self._api()
        where, _ = await self._existing(op, clients)
        previous_boot = await self._boot_before(clients, where)
        op.progress(f"Resetting VM {where.instance}", 0.3)
        doing = f"reset VM {where.instance}"
        await self._operate(
            clients,
            where,
            doing,
            clients.instances.reset_unary,
            op,
            instance=where.instance,
        )
        await self._wait_ready(op, clients, where, previous_boot)

    async def deprovision(self, op: Operation) -> None:
        where = self._where(op)
        if where is not None:
            clients, _ = await self._api()
            op.progress(f"Deleting VM {where.instance} and its disk", 0.3)
            doing = f"delete VM {where.instance}"
            try:
                await self._operate(
                    clients,
                    where,
                    doing,
                    clients.instances.delete_unary,
                    op,
                    instance=where.instance,
                )
            except GoogleError as e:
                if not e.not_found:
                    raise
            await self._delete_disk(op, clients, where)
        op.remember(
            instance=None,
            zone=None,
            project=None,
            address=None,
            host_key=None,
            boot=None,
            python=None,
            grow_filesystem=None,
        )
        self._endpoints.pop(op.server_id, None)

    async def _delete_disk(self, op: Operation, clients: _Clients, where: _Where) -> None:
        """The boot disk goes with its VM (auto-delete); one left behind is deleted too."""
        doing = f"delete disk {where.disk}"
        try:
            disk = await self._call(
                f"look at disk {where.disk}",
                clients.disks.get,
                project=where.project,
                zone=where.zone,
                disk=where.disk,
            )
        except GoogleError as e:
            if e.not_found:
                return
            raise
        if disk.users:
            raise CloudError(f"Disk {where.disk} is still attached to {', '.join(disk.users)}.")
        op.progress(f"Deleting disk {where.disk}", 0.8)
        try:
            await self._operate(
                clients,
                where,
                doing,
                clients.disks.delete_unary,
                op,
                disk=where.disk,
            )
        except GoogleError as e:
            if not e.not_found:
                raise

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        where = self._where(cloud_data)
        if where is None:
            return CloudStatus(State.DEPROVISIONED, "it has no VM")
        clients, _ = await self._api()
        instance = await self._get(clients, where)
        if instance is None:
            return CloudStatus(
                State.DEPROVISIONED, f"there is no VM {where.instance} in {where.zone}"
            )
        status = instance.status
        if status in _RUNNING_STATUSES:
            return CloudStatus(State.RUNNING, f"Compute Engine reports it {status}")
        if status in _SUSPENDED_STATUSES:
            return CloudStatus(State.SUSPENDED, f"Compute Engine reports it {status}")
        spot = instance.scheduling.provisioning_model == "SPOT" or instance.scheduling.preemptible
        return CloudStatus(
            State.OFF,
            self._stopped_reason(instance),
            preempted=bool(spot),
            restart=bool(spot) and self.restart_preempted,
        )

    # --- edits --------------------------------------------------------------------------------

    async def reconfigure(self, op: Operation, config: ServerConfig) -> None:
        """Apply a new machine type, GPUs, spot or a bigger disk to a VM that is off."""
        from google.cloud import compute_v1

        where = self._where(op)
        if where is None:
            return  # deprovisioned: the next start creates the VM from the new configuration
        old = op.config
        self.check_config(config)
        assert old.machine_type and config.machine_type
        if (old.gpu is not None or config.gpu is not None) and catalog.machine_family(
            old.machine_type
        ) != catalog.machine_family(config.machine_type):
            raise ConflictError(
                f"Moving a GPU server from {old.machine_type} to {config.machine_type} (another "
                f"machine family) needs a new VM: deprovision it first.",
                field="config.machine_type",
            )
        clients, _ = await self._api()
        undo: list[Callable[[], Any]] = []
        try:
            if config.machine_type != old.machine_type:
                await self._set_machine_type(clients, where, config.machine_type, op)
                undo.append(lambda: self._set_machine_type(clients, where, old.machine_type, op))
            model = catalog.GPUS.get(config.gpu.type) if config.gpu else None
            if config.gpu != old.gpu and config.gpu is not None and model and model.attachable:
                doing = f"give VM {where.instance} {config.gpu.count} x {config.gpu.type}"
                body = compute_v1.InstancesSetMachineResourcesRequest(
                    guest_accelerators=[
                        compute_v1.AcceleratorConfig(
                            accelerator_type=f"zones/{where.zone}/acceleratorTypes/"
                            f"{config.gpu.type}",
                            accelerator_count=config.gpu.count,
                        )
                    ]
                )
                await self._operate(
                    clients,
                    where,
                    doing,
                    clients.instances.set_machine_resources_unary,
                    op,
                    instance=where.instance,
                    instances_set_machine_resources_request_resource=body,
                )
            if bool(config.spot) != bool(old.spot):
                await self._set_scheduling(clients, where, config, op)
            if (config.disk_gb or 0) > (old.disk_gb or 0):
                # The image grows its root filesystem at the next boot.
                await self._resize(clients, where, int(config.disk_gb or 0), op)
        except GoogleError as e:
            for step in reversed(undo):
                with contextlib.suppress(CloudError):
                    await step()
            raise CloudError(explain(e, config, where.zone, where.project, exists=True)) from None

    async def _set_machine_type(
        self, clients: _Clients, where: _Where, machine_type: str | None, op: Operation
    ) -> None:
        from google.cloud import compute_v1

        doing = f"change VM {where.instance} to {machine_type}"
        await self._operate(
            clients,
            where,
            doing,
            clients.instances.set_machine_type_unary,
            op,
            instance=where.instance,
            instances_set_machine_type_request_resource=compute_v1.InstancesSetMachineTypeRequest(
                machine_type=f"zones/{where.zone}/machineTypes/{machine_type}"
            ),
        )

    async def _set_scheduling(
        self, clients: _Clients, where: _Where, config: ServerConfig, op: Operation
    ) -> None:
        from google.cloud import compute_v1

        scheduling = compute_v1.Scheduling(
            on_host_maintenance="TERMINATE" if config.gpu or config.spot else "MIGRATE",
            automatic_restart=not config.spot,
            provisioning_model="SPOT" if config.spot else "STANDARD",
        )
        if config.spot:
            scheduling.instance_termination_action = "STOP"
        doing = f"make VM {where.instance} {'spot' if config.spot else 'on-demand'}"
        await self._operate(
            clients,
            where,
            doing,
            clients.instances.set_scheduling_unary,
            op,
            instance=where.instance,
            scheduling_resource=scheduling,
        )

    async def _resize(self, clients: _Clients, where: _Where, disk_gb: int, op: Operation) -> None:
        from google.cloud import compute_v1

        doing = f"grow disk {where.disk} to {disk_gb} GB"
        op.progress(f"Growing the disk to {disk_gb} GB", 0.3)
        await self._operate(
            clients,
            where,
            doing,
            clients.disks.resize_unary,
            op,
            disk=where.disk,
            disks_resize_request_resource=compute_v1.DisksResizeRequest(size_gb=disk_gb),
        )

    async def resize_disk(self, op: Operation, disk_gb: int) -> None:
        """Grow the disk of a running (or suspended) VM, then its filesystem over SSH. The
        disk's new size is real once this returns; a filesystem that could not grow is said
        in the progress and grown at the next start."""
        where = self._where(op)
        if where is None:
            return
        clients, _ = await self._api()
        try:
            await self._resize(clients, where, disk_gb, op)
        except GoogleError as e:
            raise CloudError(
                explain(e, op.config, where.zone, where.project, exists=True)
            ) from None
        op.remember(grow_filesystem=True)
        await self._grow_pending(op)

    async def _grow_pending(self, op: Operation) -> None:
        """Grow the root filesystem over SSH if a disk resize asked for it."""
        if not op.cloud_data.get("grow_filesystem") or self._services is None:
            return
        services = self._services
        server = services.store.get(op.server_id)
        if server.state is not State.RUNNING and server.operation is None:
            return  # suspended: at the resume
        op.progress("Growing the filesystem to fill the disk", 0.9)
        try:
            connection = await services.ssh.get(
                op.server_id,
                lambda: self.ssh_endpoint(op.server_id, dict(op.cloud_data)),
            )
            result = await connection.run(
                "sudo", "-n", "sh", "-c", GROW_ROOT_FILESYSTEM, check=False, timeout=300
            )
        except (CloudError, OSError, asyncssh.Error, asyncio.TimeoutError) as e:
            op.progress(
                f"The disk grew, but not yet its filesystem ({e}); it grows at the next start", None
            )
            return
        if result.exit_status != 0:
            detail = str(result.stderr or result.stdout or "").strip()[-300:]
            op.progress(f"The disk grew, but growing its filesystem failed: {detail}", None)
            self.log.warning(
                "Growing the filesystem of %s failed: %s", op.cloud_data.get("instance"), detail
            )
            return
        op.remember(grow_filesystem=None)
        op.progress("The filesystem fills the disk", 1.0)

    # --- SSH -------------------------------------------------------------------------------------

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        address, host_key = cloud_data.get("address"), cloud_data.get("host_key")
        python = cloud_data.get("python") or "python3"
        if not address or not host_key:
            cached = self._endpoints.get(server_id)
            if cached is not None:
                return cached
            # Found running by a reconcile: ask Google for its address and key.
            where = self._where(cloud_data)
            if where is None:
                raise CloudError("The server has no VM.")
            clients, _ = await self._api()
            instance = await self._get(clients, where)
            if instance is None or instance.status != "RUNNING":
                raise CloudError(f"VM {where.instance} is not running.")
            address = self._address(instance)
            host_key = self.host_key(await self._attributes(clients, where, "hostkeys/"))
            ours = await self._attributes(clients, where, f"{NAMESPACE}/")
            python = ours.get("python") or python
            if not address or not host_key:
                raise CloudError(f"VM {where.instance} has not published its SSH host key yet.")
        endpoint = SSHEndpoint(
            host=str(address),
            port=self.ssh_port,
            username=self.ssh_username,
            host_key=str(host_key),
            workspace="~/work",
            python=str(python),
        )
        if not cloud_data.get("address"):
            self._endpoints[server_id] = endpoint
        return endpoint
