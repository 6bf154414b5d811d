"""The interface every cloud implements, and what it is given to work with.

A cloud turns the generic lifecycle (create/start/stop/...) into calls on a real provider. It
never writes the store itself: the manager records states; the cloud reports progress and keeps
its private bookkeeping in ``cloud_data`` through the ``Operation`` it is handed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from traitlets import TraitError, Unicode
from traitlets.config import LoggingConfigurable

from ..errors import ValidationError
from ..models import CONFIG_FIELDS, ServerConfig, State, parse_config_fields
from ..ssh_endpoint import SSHEndpoint

if TYPE_CHECKING:
    from ..billing.prices import StateRates
    from ..control_plane_client import ControlPlaneClient
    from ..hosts import HostRegistry
    from ..images.catalog import ImageCatalog
    from ..ssh import SSHConnections
    from ..store import ServerStore


@dataclass(frozen=True)
class CloudServices:
    """What a cloud may use of the extension's own services, handed to ``Cloud.bind`` once by
    the composition root (``services.build_services``): never the manager itself."""

    #: The configured image catalogue (which images a machine can run, their runtimes).
    images: ImageCatalog
    #: The registered on-prem hosts (the ssh cloud's machines).
    hosts: HostRegistry
    #: Read-only use: a server's recorded state (gcp grows a filesystem only while running).
    store: ServerStore
    #: The servers' shared SSH connections.
    ssh: SSHConnections
    #: Team mode's control plane, where one is configured: a cloud whose account credentials
    #: it holds (gcp) calls the provider through it with the user's Hub token, and never reads
    #: credentials of its own.
    control_plane: ControlPlaneClient | None = None


@dataclass(frozen=True)
class CloudStatus:
    """What the cloud says a server really is, for reconciling after a crash and for the
    manager's watch of running servers (``Cloud.watch_interval``)."""

    state: State
    reason: str = ""
    #: The provider stopped the running server on its own (a spot VM was preempted).
    preempted: bool = False
    #: Start it again at once (the cloud is configured to restart preempted servers).
    restart: bool = False
    #: A running server the provider will stop soon (a job's time limit): what to tell the
    #: user, once ("15 minutes left").
    ending_soon: str = ""
    #: What the cloud found that its record lacks (an operation interrupted before it could
    #: record it: the port of a daemon it had spawned); merged into ``cloud_data``.
    found: dict[str, Any] = field(default_factory=dict)
    #: When the server entered ``state``, where the provider recorded it (a Slurm job's
    #: EndTime): the history, and so metering, gets that time rather than when it was found.
    since: float | None = None


@dataclass
class Operation:
    """One lifecycle operation on one server, as the cloud sees it."""

    server_id: int
    server_name: str
    config: ServerConfig
    cloud_data: dict[str, Any]
    client_public_key: str
    report: Callable[[str, float | None], None]
    save: Callable[[dict[str, Any]], None]
    #: When the transition this operation makes really happened, where the provider recorded
    #: it (a Slurm job's StartTime for a start, its EndTime for a stop): the history, and so
    #: metering, gets that time rather than when the operation finished. None: now.
    happened_at: float | None = None

    def progress(self, message: str, fraction: float | None = None) -> None:
        """Tell the user what is happening now (shown in the sidebar and the CLI)."""
        self.report(message, fraction)

    def remember(self, **values: Any) -> None:
        """Record bookkeeping in ``cloud_data`` durably, before doing what it describes the
        effect of, so that a crash never leaves a resource nobody knows about."""
        self.cloud_data.update(values)
        self.save(dict(self.cloud_data))


class Cloud(LoggingConfigurable):
    """A place compute servers run. Subclasses are found through the entry-point group
    ``jupyter_compute_servers.clouds`` and configured as ``c.<ClassName>.<trait>``."""

    #: The entry-point name, stored with each server.
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str] = ""
    supports_suspend: ClassVar[bool] = False
    #: The configuration fields this cloud uses; others are refused with a 400.
    config_fields: ClassVar[frozenset[str]]
    #: Whether a server may ask for a share of a GPU (``config.gpu.fraction``).
    gpu_fractions: ClassVar[bool] = False
    #: The catalogue's container image is the machine itself (a Kubernetes pod runs it):
    #: kernels and terminals run in it directly, not in a container engine on it.
    image_is_machine: ClassVar[bool] = False

    data_dir = Unicode(
        help="Directory for this cloud's files (sandboxes, caches). Set by the extension."
    ).tag(config=True)

    def bind(self, services: CloudServices) -> None:
        """Called once, right after construction, for clouds that use the extension's own
        services (hosts, images, SSH)."""

    def arch(self, config: ServerConfig) -> str | None:
        """The CPU architecture a server with this configuration has (x86_64, arm64), if known
        before it runs; images built for another are refused."""
        return None

    # --- what it offers -------------------------------------------------------------------

    async def availability(self) -> tuple[bool, str]:
        """Whether servers can be created now, and if not, why (shown to the user)."""
        return True, ""

    def defaults(self) -> dict[str, Any]:
        """Values for configuration fields a request leaves out."""
        raise NotImplementedError

    def offerings(self) -> dict[str, Any]:
        """The hardware, images and places this cloud offers, for the create dialog."""
        raise NotImplementedError

    def check_config(self, config: ServerConfig) -> None:
        """Check a complete configuration against what this cloud offers (400 if not)."""

    async def load_offerings(self) -> None:
        """Read what ``check_config`` checks against where this process has not read it yet
        (a Slurm cluster's partitions after Jupyter restarted), before an edit is checked.
        Default: nothing to read (the offerings are configuration or read when asked)."""

    def refuse_action(self, action: str, config: ServerConfig) -> str:
        """Why a server with ``config`` cannot take ``action`` (an ``Action`` value) although
        the cloud supports it (no suspend with GPUs), or "". A refused action is answered 409
        before anything is recorded, and left out of the server's ``allowed_actions``."""
        return ""

    def watch_interval(self) -> float:
        """Seconds between checks that this cloud's running servers still run (0: never), for
        clouds whose machines can stop on their own (spot preemption). The manager asks
        ``status`` and records a server found stopped, with the cloud's reason."""
        return 0.0

    def gpu_warnings(self, server_id: int) -> dict[str, str]:
        """GPU UUID -> what happened to that GPU under the running server (its MPS daemon
        restarted), added to the server's metrics."""
        return {}

    async def revive(self, op: Operation) -> str | None:
        """A running server's SSH daemon died while its machine is intact: bring the daemon
        back (its kernels, still running, are found again through it) and say what was done;
        None when this cloud cannot (the manager then records what ``status`` finds)."""
        return None

    def price(self, config: ServerConfig) -> StateRates | None:
        """What ``config`` costs per hour running, off and suspended, for a cloud that knows
        its own prices (a configured rate, per-host rates): e.g. ``StateRates.flat(...)``
        from ``billing.prices``. None (the default) prices it from the price table named
        after the cloud. A table in ``c.ComputeServerCosts.price_tables`` overrides both."""
        return None

    def make_config(self, data: Any, base: ServerConfig | None = None) -> ServerConfig:
        """Validate a (possibly partial) configuration from a request.

        ``base`` is the current configuration on an edit; a new server starts from
        ``defaults()``. Fields this cloud does not use are refused, naming what it uses.
        """
        parsed = parse_config_fields({} if data is None else data)
        unused = sorted(
            key
            for key, value in parsed.items()
            if key not in self.config_fields and key != "extra" and value is not None
        )
        if unused:
            uses = ", ".join(sorted(self.config_fields))
            raise ValidationError(
                f"config.{unused[0]} does not apply to the {self.name} cloud; it uses: {uses}.",
                field=f"config.{unused[0]}",
            )
        values: dict[str, Any]
        if base is None:
            values = {key: None for key in CONFIG_FIELDS}
            values["extra"] = {}
            values.update(self.defaults())
        else:
            values = {key: getattr(base, key) for key in CONFIG_FIELDS}
        values.update(parsed)
        config = ServerConfig(**values)
        if config.gpu is not None and config.gpu.fraction is not None and not self.gpu_fractions:
            raise ValidationError(
                f"config.gpu.fraction: the {self.name} cloud gives whole GPUs only (shares of a "
                "GPU are offered on on-prem hosts whose admin allows MPS); leave it out.",
                field="config.gpu.fraction",
            )
        self.check_config(config)
        return config

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "supports_suspend": self.supports_suspend,
            "config_fields": sorted(self.config_fields),
            "defaults": self.defaults(),
        }

    # --- lifecycle: each returns when the transition is complete ----------------------------

    async def create(self, op: Operation) -> None:
        """Make a new machine and disk (from deprovisioned) and boot it."""
        raise NotImplementedError

    async def start(self, op: Operation) -> None:
        """Boot a machine that is off."""
        raise NotImplementedError

    async def stop(self, op: Operation) -> None:
        """Shut the machine down, keeping its disk."""
        raise NotImplementedError

    async def suspend(self, op: Operation) -> None:
        raise NotImplementedError(f"The {self.name} cloud cannot suspend servers.")

    async def resume(self, op: Operation) -> None:
        raise NotImplementedError(f"The {self.name} cloud cannot suspend servers.")

    async def reboot(self, op: Operation) -> None:
        """Restart the machine."""
        raise NotImplementedError

    async def deprovision(self, op: Operation) -> None:
        """Delete the machine and its disk. Must succeed when they are already gone."""
        raise NotImplementedError

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        """What the machine really is now, asked of the provider."""
        raise NotImplementedError

    async def resize_disk(self, op: Operation, disk_gb: int) -> None:
        """Grow the disk (the manager has checked that it grows)."""

    async def reconfigure(self, op: Operation, config: ServerConfig) -> None:
        """Apply new hardware to a machine that is off (or to nothing, when deprovisioned)."""

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        """Where a running server's SSH server is, with its pinned host key."""
        raise NotImplementedError

    def installation_id(self) -> str:
        """A random id of this store's data directory, made on first use: clouds put it in
        the names and labels of what they create, so two Jupyters sharing a project,
        namespace or account never take each other's machines."""
        path = Path(self.data_dir) / "installation-id"
        try:
            return path.read_text().strip()
        except OSError:
            path.parent.mkdir(parents=True, exist_ok=True)
            value = secrets.token_hex(4)
            path.write_text(value)
            return value

    async def close(self) -> None:
        """Release what the cloud holds open (API clients, port-forwards): Jupyter is stopping,
        after every server's SSH connection is closed."""


# What clouds that create VMs check in their settings: a user the image has, and a name prefix
# every provider accepts (GCE's and Nova's rules meet at lowercase letters, digits and '-').
LINUX_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
RESOURCE_PREFIX = re.compile(r"[a-z][a-z0-9-]{0,19}")


def check_linux_user_name(owner: object, trait: str, value: str) -> str:
    """``value`` if it is a Linux user name; else a TraitError naming ``owner``'s setting."""
    if not LINUX_USER_NAME.fullmatch(value):
        raise TraitError(f"{type(owner).__name__}.{trait} must be a Linux user name.")
    return value


def check_resource_prefix(owner: object, trait: str, value: str) -> str:
    """``value`` if it can start the names of a cloud's VMs, keys and disks."""
    if not RESOURCE_PREFIX.fullmatch(value):
        raise TraitError(
            f"{type(owner).__name__}.{trait}: 1-20 lowercase letters, digits or '-', "
            "starting with a letter."
        )
    return value
