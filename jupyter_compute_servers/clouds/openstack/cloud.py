"""The ``openstack`` cloud: compute servers as Nova servers (VMs) of an OpenStack project.

A compute server is one Nova server booted from a Glance image with a flavor (its vCPUs, RAM,
root disk, and the GPUs its extra specs ask), on the network the server chose
(``config.extra.network``, fixed at create) or else the configured one, with a key pair of the
server's own client key (``jcs-<installation>-<server id>``; the project's other key pairs are
never used, so no server shares a key with another; in team mode no key pair but the VM's user
data, ``userdata``). Its life:

- **start** from deprovisioned creates the key pair and the server, waits for ACTIVE, gives it a
  floating IP when ``floating_ip_network`` is set (else it is reached at its fixed IP), and pins
  its SSH host key from the console log (cloud-init prints the keys there; ``hostkeys``), never
  from the network. A GPU flavor Nova cannot place ("No valid host") is deleted and the start
  waits in our queue with its position (``queue``) until a retry succeeds or
  ``gpu_wait_minutes`` run out. Other faults and quota errors are explained (``errors``).
- **start** from off is ``os-start``; **stop** ``os-stop``; **suspend** / **resume** Nova's
  actions; **reboot** a soft reboot; **deprovision** deletes the server, its floating IP and its
  key pair (already gone is fine).
- **a new flavor while off** is Nova's resize, then its confirmation.
- **status** follows the server's Nova status; running servers are checked every
  ``status_check_interval`` seconds, so one stopped outside Jupyter shows as off.

A stopped server keeps its GPUs on Nova (a stopped instance keeps its host's resources):
deprovision a GPU server to give its GPU back. The names a server will have are remembered
before they are created, so a crash never leaves a VM nobody knows about.
"""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

import asyncssh
from traitlets import Dict, Float, Int, TraitError, Unicode, validate

from ...billing.prices import Part, Rate, StateRates
from ...errors import CloudError, ConflictError, OperationFailed, ValidationError
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
from .api import ApiAccess
from .catalog import Catalog, Flavor, flavor_from
from .errors import NO_VALID_HOST, OpenStackError, no_valid_host
from .hostkeys import fingerprints_from_console, host_key_from_console
from .queue import GPUQueue, ordinal
from .userdata import with_authorized_key

if TYPE_CHECKING:
    from openstack.connection import Connection

#: Nova statuses, as our states. Transitional ones count as what they lead to.
_RUNNING = ("ACTIVE", "BUILD", "REBOOT", "HARD_REBOOT", "PASSWORD", "REBUILD", "MIGRATING")
_OFF = ("SHUTOFF", "SHELVED", "SHELVED_OFFLOADED", "STOPPED")
_SUSPENDED = ("SUSPENDED", "PAUSED")


class OpenStackCloud(ApiAccess, Cloud):
    """Nova servers of an OpenStack project: its flavors (GPUs included), images and networks."""

    name: ClassVar[str] = "openstack"
    label: ClassVar[str] = "OpenStack"
    description: ClassVar[str] = (
        "A VM of an OpenStack project (a university's or lab's private cloud, the "
        "open-gpu-server): one of its flavors, GPUs included; its disk is kept while it is off."
    )
    supports_suspend: ClassVar[bool] = True
    config_fields: ClassVar[frozenset[str]] = frozenset(
        {"image", "image_tag", "machine_type", "gpu"}
    )

    # --- configuration ---------------------------------------------------------------------

    cloud = Unicode(
        "",
        help=(
            "The cloud's name in clouds.yaml. Empty: OS_CLOUD, or the only cloud the file names."
        ),
    ).tag(config=True)
    clouds_yaml = Unicode(
        "",
        help=(
            "A clouds.yaml to read. Empty: OpenStack's own search (OS_CLIENT_CONFIG_FILE, "
            "./clouds.yaml, ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)."
        ),
    ).tag(config=True)
    auth = Dict(
        help=(
            "Credentials instead of clouds.yaml, as its 'auth' section (auth_url, username, "
            "password, project_name, user_domain_name, project_domain_name; or "
            "application_credential_id and application_credential_secret). Never shown or "
            "logged."
        ),
    ).tag(config=True)
    region_name = Unicode("", help="The region. Empty: the one of clouds.yaml.").tag(config=True)

    flavor = Unicode(
        "", help="The flavor of new servers. Empty: the smallest flavor without GPUs."
    ).tag(config=True)
    boot_images = Dict(
        help=(
            "The Glance image (name or id) a server boots, by its image: keys are image ids of "
            "the image catalogue or 'id:tag', '*' for any other image without GPUs and '*gpu' "
            "for any with GPUs. The image needs Python 3 with ipykernel (or install it with "
            "user_data)."
        ),
    ).tag(config=True)
    network = Unicode(
        "",
        help=(
            "The network (name or id) servers join unless they choose another of the project's "
            "(config.extra.network, offered in the create dialog). Empty: the project's first "
            "internal one."
        ),
    ).tag(config=True)
    floating_ip_network = Unicode(
        "",
        help=(
            "The external network (name or id) to give servers a floating IP from. Empty: "
            "servers are reached at their fixed IP (Jupyter runs inside the cloud's network)."
        ),
    ).tag(config=True)
    user_data = Unicode(
        "",
        help="cloud-init user data for new servers (installing ipykernel, mounting storage).",
    ).tag(config=True)
    flavor_rates = Dict(
        help=(
            "What a flavor costs per hour, for internal charge-back: {'gpu_medium': 1.2} or "
            "{'gpu_medium': {'running': 1.2, 'off': 0.1}}. A flavor without a rate costs "
            "nothing (and says so)."
        ),
    ).tag(config=True)
    instance_prefix = Unicode("jcs", help="The start of server and key pair names.").tag(
        config=True
    )
    ssh_username = Unicode("ubuntu", help="The user on the VMs (the image's default user).").tag(
        config=True
    )
    ssh_port = Int(22, help="The SSH port of the VMs (tests point it elsewhere).").tag(config=True)
    python = Unicode("python3", help="The Python on the VMs that runs the agent and kernels.").tag(
        config=True
    )
    gpu_wait_minutes = Float(
        60.0,
        help=(
            "Minutes a start of a GPU flavor waits in the queue for a GPU to free (Nova's 'No "
            "valid host') before it fails."
        ),
    ).tag(config=True)
    gpu_retry_interval = Float(30.0, help="Seconds between the head of the GPU queue's tries.").tag(
        config=True
    )
    boot_timeout = Float(
        900.0, help="Seconds a start may take until SSH answers with the VM's host key."
    ).tag(config=True)
    api_timeout = Float(60.0, help="Seconds one API call may take.").tag(config=True)
    poll_interval = Float(2.0, help="Seconds between looks at a server in transition.").tag(
        config=True
    )
    status_check_interval = Float(
        60.0,
        help="Seconds between checks that running servers still run (0: never).",
    ).tag(config=True)
    catalog_ttl = Float(300.0, help="Seconds flavors, images and networks are reused.").tag(
        config=True
    )

    @validate("ssh_username")
    def _check_username(self, proposal: Any) -> str:
        return check_linux_user_name(self, "ssh_username", proposal["value"])

    @validate("instance_prefix")
    def _check_prefix(self, proposal: Any) -> str:
        return check_resource_prefix(self, "instance_prefix", proposal["value"])

    @validate("flavor_rates")
    def _check_rates(self, proposal: Any) -> dict[str, Any]:
        for name, rate in proposal["value"].items():
            values = rate if isinstance(rate, dict) else {"running": rate}
            unknown = set(values) - {"running", "off", "suspended"}
            if unknown:
                raise TraitError(f"OpenStackCloud.flavor_rates[{name!r}]: unknown {unknown}")
            for what, value in values.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise TraitError(
                        f"OpenStackCloud.flavor_rates[{name!r}].{what} must be a number >= 0."
                    )
        return dict(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._api_init()
        self._services: CloudServices | None = None
        self._catalog = Catalog()
        self._catalog_at: float | None = None
        self._catalog_error: tuple[float, str] | None = None
        self._project = ""
        self.queue = GPUQueue()

    def bind(self, services: CloudServices) -> None:
        self._services = services

    def _team_mode(self) -> bool:
        """Team mode: OpenStack is reached with the control plane's tokens (``issued``)."""
        return self._services is not None and self._services.control_plane is not None

    # --- the catalogue ----------------------------------------------------------------------

    async def availability(self) -> tuple[bool, str]:
        error = await self.refresh_catalog()
        return (False, error) if error else (True, "")

    async def refresh_catalog(self, *, force: bool = False) -> str:
        """Read flavors, images, networks and key pairs (cached for ``catalog_ttl``). Answers ""
        or why OpenStack could not be used."""
        now = time.monotonic()
        if not force:
            if self._catalog_at is not None and now - self._catalog_at < self.catalog_ttl:
                return ""
            if self._catalog_error is not None and now - self._catalog_error[0] < 30:
                return self._catalog_error[1]

        def read(connection: Connection) -> tuple[Catalog, str]:
            catalog = Catalog()
            for resource in connection.compute.flavors(details=True):
                if getattr(resource, "is_disabled", False):
                    continue
                flavor = flavor_from(resource)
                catalog.flavors[flavor.name] = flavor
            for image in connection.image.images():
                if image.status == "active" and image.name:
                    catalog.images[image.name] = {
                        "id": image.id,
                        "name": image.name,
                        "min_disk": int(image.min_disk or 0),
                    }
            for network in connection.network.networks():
                catalog.networks[network.name or network.id] = {
                    "id": network.id,
                    "name": network.name or network.id,
                    "external": bool(network.is_router_external),
                }
            # (team mode's key pairs are the control plane's OpenStack user's, everyone's: not
            # this user's to see, and not used)
            if not self._team_mode():
                catalog.key_pairs = sorted(k.name for k in connection.compute.keypairs())
            # (team mode's connection has no auth settings to name the project: its token does)
            return catalog, str(connection.current_project.name or self._issued_project())

        try:
            self._catalog, self._project = await self._call(
                "list flavors, images and networks", read
            )
        except OpenStackError as e:
            self._catalog_error = (now, e.message)
            self.log.warning("OpenStack is not usable now: %s", e.message)
            return e.message
        self._catalog_at = now
        self._catalog_error = None
        return ""

    def _default_flavor(self) -> str:
        if self.flavor:
            return self.flavor
        plain = [f for f in self._catalog.flavors.values() if not f.gpu_type]
        if not plain:
            return ""
        return min(plain, key=lambda f: (f.vcpus, f.ram_mb, f.name)).name

    def defaults(self) -> dict[str, Any]:
        return {
            "image": "python",
            "image_tag": "system",
            "machine_type": self._default_flavor() or None,
            "gpu": None,
        }

    def boot_image_name(self, config: ServerConfig) -> str:
        table = self.boot_images
        fallback = "*gpu" if config.gpu else "*"
        for key in (f"{config.image}:{config.image_tag}", config.image or "", fallback, "*"):
            if key in table:
                return str(table[key])
        return ""

    def offerings(self) -> dict[str, Any]:
        catalog = self._catalog
        flavors = sorted(
            catalog.flavors.values(), key=lambda f: (bool(f.gpu_type), f.vcpus, f.ram_mb, f.name)
        )
        boot_images = {
            key: {
                "source": name,
                "min_disk_gb": (catalog.image(str(name)) or {}).get("min_disk", 0),
            }
            for key, name in self.boot_images.items()
        }
        return {
            # The gcp cloud's shape, so the create dialog's machine type picker offers flavors.
            "project": self._project,
            "live": self._catalog_at is not None,
            "default_region": self.region_name,
            "default_zone": "",
            "regions": [],
            "machine_types": [f.to_json() for f in flavors],
            "gpus": catalog.gpus(),
            "disk_types": [],
            "disk_gb": {"min": 1, "max": max((f.disk_gb for f in flavors), default=1) or 1},
            "boot_images": boot_images,
            "spot": False,
            "suspend": {"supported": True, "with_gpus": False},
            # OpenStack's own.
            "glance_images": sorted(catalog.images.values(), key=lambda i: i["name"]),
            "networks": sorted(catalog.networks.values(), key=lambda n: n["name"]),
            "network": self.network or (self._default_network() or {}).get("name", ""),
            "floating_ip_network": self.floating_ip_network,
            "key_pairs": catalog.key_pairs,
            "gpu_queue": len(self.queue),
        }

    def make_config(self, data: Any, base: ServerConfig | None = None) -> ServerConfig:
        """A flavor brings its GPUs: a request naming a flavor but no GPU gets the flavor's.
        The network is chosen at create: Nova plugs the server's port in then, and moving it
        (detach, attach, a new address, a new floating IP) is not something we do."""
        if isinstance(data, dict) and isinstance(data.get("machine_type"), str):
            flavor = self._catalog.flavors.get(data["machine_type"])
            if flavor is not None and "gpu" not in data:
                data = {**data, "gpu": self._gpu_json(flavor)}
        config = super().make_config(data, base)
        if base is not None and config.extra.get("network") != base.extra.get("network"):
            raise ValidationError(
                "config.extra.network is chosen when the server is created; to use another "
                "network, create a new server on it.",
                field="config.extra.network",
            )
        return config

    @staticmethod
    def _gpu_json(flavor: Flavor) -> dict[str, Any] | None:
        if not flavor.gpu_type:
            return None
        return {"type": flavor.gpu_type, "count": flavor.gpu_count}

    def check_config(self, config: ServerConfig) -> None:
        unknown = sorted(set(config.extra) - {"network"})
        if unknown:
            raise ValidationError(
                f"config.extra.{unknown[0]} is not an option of the openstack cloud; it takes "
                "config.extra.network.",
                field=f"config.extra.{unknown[0]}",
            )
        chosen = config.extra.get("network")
        if chosen is not None and (not isinstance(chosen, str) or not chosen.strip()):
            raise ValidationError(
                "config.extra.network must be the name or id of a network of the project (or "
                "left out for the admin's c.OpenStackCloud.network).",
                field="config.extra.network",
            )
        if not config.machine_type:
            raise ValidationError(
                "config.machine_type (the flavor) is required.", field="config.machine_type"
            )
        if self._catalog_at is None:
            return  # not read yet: checked again at the start
        if chosen is not None and self._catalog.network(chosen) is None:
            offered = ", ".join(sorted(self._catalog.networks)) or "none"
            raise ValidationError(
                f"config.extra.network {chosen!r} is not a network of project "
                f"{self._project}; its networks: {offered}.",
                field="config.extra.network",
            )
        flavor = self._catalog.flavors.get(config.machine_type)
        if flavor is None:
            offered = ", ".join(sorted(self._catalog.flavors)) or "none"
            raise ValidationError(
                f"config.machine_type {config.machine_type!r} is not a flavor of project "
                f"{self._project}; its flavors: {offered}.",
                field="config.machine_type",
            )
        wanted = self._gpu_json(flavor)
        have = {"type": config.gpu.type, "count": config.gpu.count} if config.gpu else None
        if have != wanted:
            brings = f"{flavor.gpu_count} x {flavor.gpu_type}" if wanted else "no GPU"
            raise ValidationError(
                f"Flavor {flavor.name} brings {brings}: set config.gpu to "
                + (f"{wanted}" if wanted else "null")
                + " (or leave it out).",
                field="config.gpu",
            )
        name = self.boot_image_name(config)
        if not name:
            raise ValidationError(
                f"No Glance image is configured for image {config.image}: set "
                f"c.OpenStackCloud.boot_images['*'] (and '*gpu').",
                field="config.image",
            )
        image = self._catalog.image(name)
        if image is None:
            raise ValidationError(
                f"Glance image {name!r} (c.OpenStackCloud.boot_images) is not visible to "
                f"project {self._project}.",
                field="config.image",
            )
        if image["min_disk"] > flavor.disk_gb > 0:
            raise ValidationError(
                f"Image {name} needs a {image['min_disk']} GB disk; flavor {flavor.name} has "
                f"{flavor.disk_gb} GB.",
                field="config.machine_type",
            )

    def arch(self, config: ServerConfig) -> str | None:
        return "x86_64" if config.machine_type else None

    def refuse_action(self, action: str, config: ServerConfig) -> str:
        if action == "suspend" and config.gpu is not None:
            # Nova's suspend is libvirt's managed save, which neither PCI passthrough GPUs nor
            # vGPUs support (NVIDIA: "Suspend, hibernate and managed-save operations are not
            # supported with GPU passthrough"; Nova's vGPU docs say the same of vGPUs).
            return (
                "OpenStack cannot suspend a VM with GPUs; stop it instead (its disk is kept, "
                "its memory is not)"
            )
        return ""

    def watch_interval(self) -> float:
        return max(0.0, self.status_check_interval)

    def price(self, config: ServerConfig) -> StateRates | None:
        """The configured rate of the flavor (internal charge-back); none set costs nothing."""
        source = "c.OpenStackCloud.flavor_rates"
        name = config.machine_type or ""
        rate = self.flavor_rates.get(name)
        values = rate if isinstance(rate, dict) else {"running": rate or 0}
        note = "" if rate is not None else f"no rate is set for flavor {name}"

        def state(what: str, key: str) -> Rate:
            amount = Decimal(str(values.get(key) or 0))
            return Rate((Part(what, name, amount, source, note=note),))

        return StateRates(
            running=state("flavor", "running"),
            off=state("flavor off", "off"),
            suspended=state("flavor suspended", "suspended" if "suspended" in values else "off"),
        )

    # --- looking at the VM --------------------------------------------------------------------

    def _default_network(self) -> dict[str, Any] | None:
        internal = [n for n in self._catalog.networks.values() if not n["external"]]
        return internal[0] if internal else None

    async def _get(self, nova_id: str) -> Any | None:
        def get(connection: Connection) -> Any | None:
            from openstack import exceptions as sdk

            try:
                return connection.compute.get_server(nova_id)
            except sdk.NotFoundException:
                return None

        return await self._call(f"look at server {nova_id}", get)

    async def _find_ours(self, server_id: int, cloud_data: dict[str, Any]) -> Any | None:
        """This server's VM: by its recorded id, else by the name remembered before the create
        call (and our metadata, so a namesake of someone else's is never taken)."""
        nova_id = cloud_data.get("nova_id")
        if nova_id:
            return await self._get(str(nova_id))
        name = cloud_data.get("instance")
        if not name:
            return None
        owner = self.installation_id()

        def find(connection: Connection) -> Any | None:
            for server in connection.compute.servers(details=True, name=f"^{re.escape(name)}$"):
                metadata = server.metadata or {}
                if (
                    server.name == name
                    and metadata.get("compute-server-id") == str(server_id)
                    and metadata.get("compute-server-owner") == owner
                ):
                    return server
            return None

        return await self._call(f"look for server {name}", find)

    async def _existing(self, op: Operation) -> Any:
        nova_id = op.cloud_data.get("nova_id")
        server = await self._get(str(nova_id)) if nova_id else None
        if server is None:
            op.remember(nova_id=None, address=None, host_key=None, floating_ip_id=None)
            raise OperationFailed(
                "The server's VM no longer exists (deleted outside Jupyter, or never created); "
                "start the server again for a new one.",
                state=State.DEPROVISIONED.value,
            )
        return server

    async def _wait_for(
        self, op: Operation, nova_id: str, wanted: tuple[str, ...], doing: str
    ) -> Any:
        """Poll until the server's status is one of ``wanted`` (or ERROR: its fault raised)."""
        deadline = time.monotonic() + self.boot_timeout
        shown = ""
        while True:
            server = await self._get(nova_id)
            if server is None:
                raise OperationFailed(
                    f"Server {nova_id} disappeared while trying to {doing} (deleted outside "
                    f"Jupyter).",
                    state=State.DEPROVISIONED.value,
                )
            if server.status in wanted:
                return server
            if server.status == "ERROR":
                fault = (server.fault or {}).get("message") or "no fault recorded"
                raise OpenStackError(
                    f"{doing}: Nova put the server in ERROR ({fault}).", detail=fault
                )
            message = f"OpenStack reports the server {server.status.lower()}"
            if server.task_state:
                message += f" ({server.task_state.replace('_', ' ')})"
            if message != shown:
                op.progress(message, None)
                shown = message
            if time.monotonic() > deadline:
                raise CloudError(
                    f"Server {nova_id} did not {doing} within {self.boot_timeout:g} s (it is "
                    f"{server.status})."
                )
            await asyncio.sleep(self.poll_interval)

    def _address_of(self, server: Any) -> str:
        """The floating IP when we use them, else the first fixed IPv4 address."""
        kind = "floating" if self.floating_ip_network else "fixed"
        for addresses in (server.addresses or {}).values():
            for entry in addresses:
                if entry.get("OS-EXT-IPS:type") == kind and entry.get("version") == 4:
                    return str(entry["addr"])
        return ""

    # --- lifecycle -----------------------------------------------------------------------------

    async def create(self, op: Operation) -> None:
        error = await self.refresh_catalog(force=True)
        if error:
            raise OperationFailed(error, state=State.DEPROVISIONED.value)
        try:
            self.check_config(op.config)
        except ValidationError as e:
            raise OperationFailed(
                e.message, state=State.DEPROVISIONED.value, field=e.field
            ) from None
        flavor = self._catalog.flavors[str(op.config.machine_type)]
        image = self._catalog.image(self.boot_image_name(op.config))
        assert image is not None
        # The server's own choice (checked above), else the admin's, else the first internal.
        wanted = str(op.config.extra.get("network") or self.network)
        network = self._catalog.network(wanted) if wanted else self._default_network()
        if network is None:
            raise OperationFailed(
                f"Network {wanted or '(an internal one)'} is not visible to project "
                f"{self._project}: set c.OpenStackCloud.network to one of "
                f"{', '.join(self._catalog.networks) or 'none'}.",
                state=State.DEPROVISIONED.value,
            )
        # Team mode: no key pair. Nova's key pairs are its Keystone user's, and the control
        # plane's tokens are all one user's (each user's project, one user): another user's
        # token could replace the key pair before this VM boots with it. The key goes in the
        # VM's own user data instead (``userdata``), which only this project's tokens reach.
        keypair = (
            ""
            if self._team_mode()
            else f"{self.instance_prefix}-{self.installation_id()}-{op.server_id}"
        )
        name = str(op.cloud_data.get("instance") or "")
        if not name:
            slug = re.sub(r"[^a-z0-9-]+", "-", op.server_name.lower())
            name = f"{self.instance_prefix}-{slug}"[:40].strip("-") + f"-{op.server_id}"
        # A server left by an interrupted create (its id maybe never recorded) is carried on.
        found = await self._find_ours(op.server_id, op.cloud_data)
        if found is not None and found.status != "ERROR":
            op.remember(nova_id=found.id)
            op.progress(f"Found server {found.name} from an interrupted start", 0.2)
            await self.start(op)
            return
        if found is not None:
            op.remember(nova_id=found.id)
            await self._delete_quietly(op)
        # Remembered before anything is created: a crash leaves names to look for.
        op.remember(
            keypair=keypair or None, instance=name, nova_id=None, address=None, host_key=None
        )
        if keypair:
            await self._ensure_keypair(op, keypair)
        try:
            if flavor.gpu_type:
                server = await self._place_in_queue(op, flavor, image, network, name, keypair)
            else:
                server = await self._place(op, flavor, image, network, name, keypair)
                if isinstance(server, str):
                    await self._delete_quietly(op)
                    raise OperationFailed(server, state=State.DEPROVISIONED.value)
        except OperationFailed as e:
            if e.state == State.DEPROVISIONED.value:
                # Nothing was made: the key pair goes too (a deprovisioned server owns none).
                await self._delete_keypair_quietly(op)
            raise
        await self._ready(op, server)

    async def _delete_keypair_quietly(self, op: Operation) -> None:
        keypair = op.cloud_data.get("keypair")
        if not keypair:
            return
        try:
            await self._call(
                f"delete key pair {keypair}",
                lambda c: c.compute.delete_keypair(keypair, ignore_missing=True),
            )
        except OpenStackError as e:
            self.log.warning("Could not delete key pair %s: %s", keypair, e.message)
            return
        op.remember(keypair=None)

    async def _ensure_keypair(self, op: Operation, name: str) -> None:
        """The server's own client key as a Nova key pair (replaced if it differs)."""
        public = " ".join(op.client_public_key.split()[:2])

        def ensure(connection: Connection) -> None:
            from openstack import exceptions as sdk

            try:
                existing = connection.compute.get_keypair(name)
            except sdk.NotFoundException:
                existing = None
            if existing is not None:
                if " ".join(str(existing.public_key).split()[:2]) == public:
                    return
                connection.compute.delete_keypair(name)
            connection.compute.create_keypair(name=name, public_key=public)

        op.progress("Importing the server's SSH key as a key pair", 0.05)
        try:
            await self._call(f"import key pair {name}", ensure)
        except OpenStackError as e:
            raise OperationFailed(e.message, state=State.DEPROVISIONED.value) from None

    async def _place(
        self,
        op: Operation,
        flavor: Flavor,
        image: dict[str, Any],
        network: dict[str, Any],
        name: str,
        keypair: str,
    ) -> Any:
        """Create the server and wait for ACTIVE. Answers the server, or Nova's "No valid
        host" explained (the errored server is left for the caller to delete)."""
        import base64

        op.progress(f"Creating server {name} ({flavor.name})", 0.1)

        def create(connection: Connection) -> Any:
            attrs: dict[str, Any] = {
                "name": name,
                "flavor_id": flavor.id,
                "image_id": image["id"],
                "networks": [{"uuid": network["id"]}],
                "metadata": {
                    "managed-by": "jupyter-compute-servers",
                    "compute-server-id": str(op.server_id),
                    "compute-server-owner": self.installation_id(),
                },
            }
            user_data = self.user_data
            if keypair:
                attrs["key_name"] = keypair
            else:
                user_data = with_authorized_key(user_data, op.client_public_key)
            if user_data:
                attrs["user_data"] = base64.b64encode(user_data.encode()).decode()
            return connection.compute.create_server(**attrs)

        try:
            created = await self._call(f"create server {name}", create)
        except OpenStackError as e:
            raise OperationFailed(e.message, state=State.DEPROVISIONED.value) from None
        op.remember(nova_id=created.id)
        op.progress("OpenStack is building the server", 0.3)
        try:
            return await self._wait_for(op, created.id, ("ACTIVE",), "build")
        except OpenStackError as e:
            gpus = f"{flavor.gpu_count} x {flavor.gpu_type}" if flavor.gpu_type else ""
            if NO_VALID_HOST in e.detail.lower():
                return no_valid_host(e.detail, flavor.name, gpus)
            await self._delete_quietly(op)
            raise OperationFailed(
                f"OpenStack could not build server {name}: {e.detail}. Try again, or another "
                f"flavor or image.",
                state=State.DEPROVISIONED.value,
            ) from None

    async def _place_in_queue(
        self,
        op: Operation,
        flavor: Flavor,
        image: dict[str, Any],
        network: dict[str, Any],
        name: str,
        keypair: str,
    ) -> Any:
        """A GPU flavor: wait in line; the head of the line asks Nova, and on "No valid host"
        its errored server is deleted and it tries again after ``gpu_retry_interval``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gpu_wait_minutes * 60
        gpus = f"{flavor.gpu_count} x {flavor.gpu_type}"
        reason = "waiting for the servers ahead"
        self.queue.join(op.server_id)
        try:
            while True:
                position = self.queue.position(op.server_id)
                if position == 1:
                    placed = await self._place(op, flavor, image, network, name, keypair)
                    if not isinstance(placed, str):
                        return placed
                    reason = "all GPUs in use"
                    await self._delete_quietly(op)
                    if loop.time() > deadline:
                        raise OperationFailed(
                            f"No GPU freed within {self.gpu_wait_minutes:g} minutes. {placed}",
                            state=State.DEPROVISIONED.value,
                        )
                elif loop.time() > deadline:
                    raise OperationFailed(
                        f"Still {ordinal(position)} in line for {gpus} after "
                        f"{self.gpu_wait_minutes:g} minutes; try again later.",
                        state=State.DEPROVISIONED.value,
                    )
                position = self.queue.position(op.server_id)
                op.progress(f"Waiting for {gpus}: {ordinal(position)} in line ({reason})", None)
                # The head waits between tries; the others look again soon (the head may go).
                pause = (
                    self.gpu_retry_interval if position == 1 else min(1.0, self.gpu_retry_interval)
                )
                await asyncio.sleep(pause)
        finally:
            self.queue.leave(op.server_id)

    async def _ready(self, op: Operation, server: Any) -> None:
        """An ACTIVE server: its address (a floating IP if configured), its host key from the
        console log, and SSH's port answering."""
        address = await self._ensure_address(op, server)
        pinned = str(op.cloud_data.get("host_key") or "")
        deadline = time.monotonic() + self.boot_timeout
        op.progress("Waiting for the VM to print its SSH host key to the console", 0.6)
        host_key = pinned
        while not host_key:

            def console(connection: Connection) -> str:
                answer = connection.compute.get_server_console_output(server.id, length=200)
                return str(answer.get("output") or "")

            output = await self._call(f"read the console log of {server.id}", console)
            fingerprints = fingerprints_from_console(output)
            host_key = host_key_from_console(output) or await self._key_matching(
                address, fingerprints
            )
            if host_key:
                break
            if time.monotonic() > deadline:
                await self._stop_quietly(server.id)
                if fingerprints:
                    raise OperationFailed(
                        f"The SSH host key at {address} is not one server {server.name} printed "
                        f"to its console ({', '.join(sorted(fingerprints))}), so it is not "
                        f"trusted and the server was stopped: something else may answer at "
                        f"that address. Ask the cloud's administrators.",
                        state=State.OFF.value,
                    )
                raise OperationFailed(
                    f"Server {server.name} printed no SSH host key to its console within "
                    f"{self.boot_timeout:g} s, so it was stopped (its image needs cloud-init "
                    f"with keys_to_console). Read it with: openstack console log show "
                    f"{server.id}",
                    state=State.OFF.value,
                )
            await asyncio.sleep(self.poll_interval)
        op.remember(address=address, host_key=host_key)
        op.progress("Waiting for SSH to answer", 0.8)
        while not await self._port_open(address):
            if time.monotonic() > deadline:
                raise CloudError(f"SSH on {address}:{self.ssh_port} does not answer.")
            await asyncio.sleep(self.poll_interval)

    async def _key_matching(self, address: str, fingerprints: set[str]) -> str:
        """The host key sshd offers, if its fingerprint is one the console printed ("" if
        none was printed, sshd does not answer yet, or it offers another key)."""
        if not fingerprints:
            return ""
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(address, self.ssh_port), timeout=10
            )
        except (OSError, asyncssh.Error, asyncio.TimeoutError):
            return ""
        if key is None or key.get_fingerprint("sha256") not in fingerprints:
            if key is not None:
                self.log.warning(
                    "The SSH host key at %s:%s (%s) is not one its console printed; not trusted.",
                    address,
                    self.ssh_port,
                    key.get_fingerprint("sha256"),
                )
            return ""
        return key.export_public_key().decode().strip()

    async def _port_open(self, address: str) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(address, self.ssh_port), timeout=5
            )
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        return True

    async def _ensure_address(self, op: Operation, server: Any) -> str:
        address = self._address_of(server)
        if address or not self.floating_ip_network:
            if not address:
                raise CloudError(f"Server {server.name} has no IPv4 address.")
            return address
        external = self._catalog.network(self.floating_ip_network)
        if external is None or not external["external"]:
            raise CloudError(
                f"c.OpenStackCloud.floating_ip_network {self.floating_ip_network!r} is not an "
                f"external network of project {self._project}."
            )
        op.progress(f"Giving the server a floating IP from {external['name']}", 0.5)

        def allocate(connection: Connection) -> tuple[str, str]:
            ports = list(connection.network.ports(device_id=server.id))
            if not ports:
                raise OpenStackError(f"Server {server.name} has no network port yet.")
            ip = connection.network.create_ip(
                floating_network_id=external["id"],
                description=f"jupyter-compute-servers {op.server_id}",
            )
            connection.network.update_ip(ip, port_id=ports[0].id)
            return str(ip.id), str(ip.floating_ip_address)

        ip_id, address = await self._call("allocate a floating IP", allocate)
        op.remember(floating_ip_id=ip_id)
        return address

    async def _delete_quietly(self, op: Operation) -> None:
        """Delete the server (an errored one) and wait until it is gone."""
        nova_id = op.cloud_data.get("nova_id")
        if not nova_id:
            return
        try:
            await self._call(
                f"delete server {nova_id}",
                lambda c: c.compute.delete_server(nova_id, ignore_missing=True),
            )
            deadline = time.monotonic() + self.api_timeout
            while time.monotonic() < deadline:
                if await self._get(str(nova_id)) is None:
                    break
                await asyncio.sleep(self.poll_interval)
        except OpenStackError as e:
            self.log.warning("Could not delete server %s: %s", nova_id, e.message)
        op.remember(nova_id=None)

    async def _stop_quietly(self, nova_id: str) -> None:
        try:
            await self._call(f"stop server {nova_id}", lambda c: c.compute.stop_server(nova_id))
        except OpenStackError as e:
            self.log.warning("Could not stop server %s: %s", nova_id, e.message)

    async def _act(self, op: Operation, doing: str, call: Any) -> None:
        try:
            await self._call(doing, call)
        except OpenStackError as e:
            raise CloudError(e.message) from None

    async def start(self, op: Operation) -> None:
        server = await self._existing(op)
        if server.status in ("SHUTOFF", "SUSPENDED"):
            verb = "resume" if server.status == "SUSPENDED" else "start"
            op.progress(f"{verb.capitalize()}ing server {server.name}", 0.2)
            await self._act(
                op,
                f"{verb} server {server.name}",
                (lambda c: c.compute.resume_server(server.id))
                if verb == "resume"
                else (lambda c: c.compute.start_server(server.id)),
            )
        try:
            server = await self._wait_for(op, server.id, ("ACTIVE",), "start")
        except OpenStackError as e:
            raise OperationFailed(e.message, state=State.OFF.value) from None
        await self._ready(op, server)

    async def resume(self, op: Operation) -> None:
        await self.start(op)

    async def stop(self, op: Operation) -> None:
        server = await self._existing(op)
        if server.status != "SHUTOFF":
            op.progress(f"Stopping server {server.name}", 0.3)
            await self._act(
                op, f"stop server {server.name}", lambda c: c.compute.stop_server(server.id)
            )
            await self._wait_for(op, server.id, ("SHUTOFF",), "stop")

    async def suspend(self, op: Operation) -> None:
        refusal = self.refuse_action("suspend", op.config)
        if refusal:
            raise ConflictError(refusal + ".", field="action")
        server = await self._existing(op)
        op.progress(f"Suspending server {server.name}", 0.3)
        await self._act(
            op, f"suspend server {server.name}", lambda c: c.compute.suspend_server(server.id)
        )
        await self._wait_for(op, server.id, ("SUSPENDED",), "suspend")

    async def reboot(self, op: Operation) -> None:
        server = await self._existing(op)
        op.progress(f"Rebooting server {server.name}", 0.3)
        await self._act(
            op, f"reboot server {server.name}", lambda c: c.compute.reboot_server(server.id, "SOFT")
        )
        server = await self._wait_for(op, server.id, ("ACTIVE",), "reboot")
        await self._ready(op, server)

    async def deprovision(self, op: Operation) -> None:
        ip_id = op.cloud_data.get("floating_ip_id")
        if ip_id:
            op.progress("Releasing the floating IP", 0.2)
            await self._act(
                op,
                "release the floating IP",
                lambda c: c.network.delete_ip(ip_id, ignore_missing=True),
            )
            op.remember(floating_ip_id=None)
        if op.cloud_data.get("nova_id"):
            op.progress("Deleting the server", 0.4)
            await self._delete_quietly(op)
            if op.cloud_data.get("nova_id"):
                raise CloudError("The server could not be deleted; try again.")
        keypair = op.cloud_data.get("keypair")
        if keypair:
            await self._act(
                op,
                f"delete key pair {keypair}",
                lambda c: c.compute.delete_keypair(keypair, ignore_missing=True),
            )
        op.remember(nova_id=None, instance=None, keypair=None, address=None, host_key=None)

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        if not cloud_data.get("nova_id") and not cloud_data.get("instance"):
            return CloudStatus(State.DEPROVISIONED, "it has no VM")
        try:
            server = await self._find_ours(server_id, cloud_data)
        except OpenStackError as e:
            raise CloudError(e.message) from None
        if server is None:
            name = cloud_data.get("nova_id") or cloud_data.get("instance")
            return CloudStatus(State.DEPROVISIONED, f"there is no server {name}")
        found = {} if cloud_data.get("nova_id") else {"nova_id": server.id}
        status = str(server.status)
        if status in _RUNNING:
            return CloudStatus(State.RUNNING, f"OpenStack reports it {status}", found=found)
        if status in _SUSPENDED:
            return CloudStatus(State.SUSPENDED, f"OpenStack reports it {status}", found=found)
        if status == "ERROR":
            fault = (server.fault or {}).get("message") or "no fault recorded"
            return CloudStatus(
                State.OFF, f"OpenStack put the server in ERROR: {fault}", found=found
            )
        return CloudStatus(
            State.OFF,
            f"OpenStack reports it {status}: stopped outside Jupyter (Horizon, the openstack "
            f"CLI, or a shutdown inside it)",
            found=found,
        )

    # --- edits ----------------------------------------------------------------------------------

    async def reconfigure(self, op: Operation, config: ServerConfig) -> None:
        """Another flavor while off: Nova's resize, then its confirmation."""
        nova_id = op.cloud_data.get("nova_id")
        if not nova_id or config.machine_type == op.config.machine_type:
            return
        await self.refresh_catalog(force=True)
        self.check_config(config)
        flavor = self._catalog.flavors[str(config.machine_type)]
        op.progress(f"Resizing the server to {flavor.name}", 0.3)
        try:
            await self._call(
                f"resize the server to {flavor.name}",
                lambda c: c.compute.resize_server(nova_id, flavor.id),
            )
            server = await self._wait_for(op, str(nova_id), ("VERIFY_RESIZE",), "resize")
            op.progress("Confirming the resize", 0.7)
            await self._call(
                "confirm the resize", lambda c: c.compute.confirm_server_resize(server.id)
            )
            await self._wait_for(op, str(nova_id), ("SHUTOFF",), "confirm the resize")
        except OpenStackError as e:
            if NO_VALID_HOST in e.detail.lower():
                gpus = f"{flavor.gpu_count} x {flavor.gpu_type}" if flavor.gpu_type else ""
                raise CloudError(no_valid_host(e.detail, flavor.name, gpus)) from None
            raise CloudError(e.message) from None

    # --- SSH -------------------------------------------------------------------------------------

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        address, host_key = cloud_data.get("address"), cloud_data.get("host_key")
        if not address or not host_key:
            raise CloudError("The server has no address or pinned host key yet; start it.")
        return SSHEndpoint(
            host=str(address),
            port=self.ssh_port,
            username=self.ssh_username,
            host_key=str(host_key),
            workspace="~/work",
            python=self.python,
        )
