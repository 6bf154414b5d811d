"""The composition root: ``build_services`` builds every service of the extension, each
constructed with what it depends on, in one place.

The Jupyter server extension (``app.py``), the CLI (``cli.py``) and the standalone kernel
runtime (``kernels/runtime.py``, used by ``jupyter execute`` and nbclient) all call it with the
same settings, so the three see the same store, clouds and rules. Nothing here imports web code.

The order is the dependency order: events, the database (the one owner of it) and the stores
over it, keys and SSH, images, hosts and sync records, the clouds (given the services they may
use), the manager, then the services over it (costs, kernel specs, sync, terminals, web apps)
and the presenter that assembles a server's JSON.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .apps import ServerApps
from .billing.records import CostRecords
from .billing.service import ComputeServerCosts
from .billing.team_spend import costs_money, group_month_spend, month_spend_of
from .certificates import CertificateClient
from .clouds import Cloud, load_cloud_class
from .clouds.base import CloudServices
from .control_plane_client import ControlPlaneClient
from .db import Database, engine_url
from .db.credentials import DatabaseCredentials
from .errors import ValidationError
from .events import EventCallback, ServerEvents
from .hosts import HostRegistry, HostStore
from .images.catalog import ImageCatalog
from .images.marks import DatabaseMarks
from .kernels.specs import KernelSpecPublisher
from .kernels.warm import WarmKernelPool
from .mount.service import MountService
from .presenter import ServerPresenter
from .ssh import KeyStore, SSHConnections
from .store import ServerStore
from .sync.records import SyncStore
from .sync.service import SyncService
from .team import Team, parse_access, parse_quotas
from .team_admins import OwnerAdmin
from .team_queue import TeamQueue
from .team_revocations import TeamRevocations
from .terminals import RemoteTerminals

if TYPE_CHECKING:
    from .config import ComputeServersSettings
    from .manager import ComputeServerManager

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything ``build_services`` built; ``close`` ends them in the reverse order."""

    settings: ComputeServersSettings
    events: ServerEvents
    database: Database
    team: Team
    store: ServerStore
    keys: KeyStore
    ssh: SSHConnections
    images: ImageCatalog
    hosts: HostRegistry
    clouds: dict[str, Cloud]
    manager: ComputeServerManager
    costs: ComputeServerCosts
    kernel_specs: KernelSpecPublisher
    warm_kernels: WarmKernelPool
    sync: SyncService
    terminals: RemoteTerminals
    mounts: MountService
    apps: ServerApps
    presenter: ServerPresenter
    queue: TeamQueue
    revocations: TeamRevocations

    async def close(self, *, stop_servers: Callable[[Cloud], bool] | None = None) -> None:
        """End background work, stop servers whose cloud asks for it (``stop_servers``), and
        close every connection and the store."""
        await self.kernel_specs.close()
        await self.warm_kernels.close()
        await self.apps.close()
        await self.sync.close()
        await self.mounts.close()
        await self.costs.close()
        await self.manager.shutdown(stop_servers=stop_servers)
        self.database.close()


def build_clouds(settings: ComputeServersSettings, services: CloudServices) -> dict[str, Cloud]:
    """The enabled clouds, in the configured order, each bound to the services it may use."""
    clouds: dict[str, Cloud] = {}
    for name in settings.enabled_clouds:
        cls = load_cloud_class(name)
        cloud = cls(parent=settings, data_dir=str(Path(settings.data_dir) / name))
        cloud.bind(services)
        clouds[name] = cloud
    return clouds


def team_control_plane(settings: ComputeServersSettings) -> ControlPlaneClient | None:
    """Team mode with a control plane: its client, with this server's Hub token (the only
    credential it sends)."""
    if not (settings.team_mode and settings.control_plane_url):
        return None
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        raise ValidationError(
            "control_plane_url is set but this server has no JUPYTERHUB_API_TOKEN: team mode "
            "with a control plane runs in a Jupyter server spawned by JupyterHub.",
            field="control_plane_url",
        )
    return ControlPlaneClient(settings.control_plane_url, token)


def team_admin_source(
    settings: ComputeServersSettings,
    control_plane: ControlPlaneClient | None,
    logger: logging.Logger,
) -> OwnerAdmin | None:
    """With a control plane, who is an admin is its rule (``--admin-user``/``--admin-group``),
    asked for this server's user: the one rule, not a copy here that could differ."""
    if control_plane is None:
        return None
    if settings.team_admin_users or settings.team_admin_groups:
        logger.warning(
            "team_admin_users and team_admin_groups are ignored: with control_plane_url set, "
            "the control plane's --admin-user and --admin-group (and Hub admins) decide who is "
            "an admin. Give them there, and remove these settings."
        )
    return OwnerAdmin(control_plane)


def team_certificates(control_plane: ControlPlaneClient | None) -> CertificateClient | None:
    """The client of the control plane's certificate authority, which this user's server logs
    in to shared hosts with."""
    if control_plane is None:
        return None
    return CertificateClient.of(control_plane)


def team_database_credentials(
    settings: ComputeServersSettings, control_plane: ControlPlaneClient | None
) -> DatabaseCredentials | None:
    """This user's short-lived database logins from the control plane: where db_url (the
    team's PostgreSQL) names no user and no password, the server holds none at all. A URL
    with a user logs in as that user, as before (its password in the URL, PGPASSWORD or
    ~/.pgpass): a control plane that is the SSH CA only needs no database of its own."""
    if control_plane is None or settings.db_url.partition(":")[0].lower() == "sqlite":
        return None
    url = engine_url(settings.db_url)[0]
    if url.username is not None or url.password is not None:
        return None
    return DatabaseCredentials(control_plane)


def build_services(
    settings: ComputeServersSettings,
    *,
    on_event: EventCallback | None = None,
    sync_root: str | None = None,
    clouds: dict[str, Cloud] | None = None,
    logger: logging.Logger | None = None,
) -> Services:
    """Build the extension's services from its settings.

    ``on_event`` receives every event (the Jupyter server's event logger). ``sync_root`` is
    the tree servers sync with (the Jupyter root); kernels are synced before they start only
    where it is given, since elsewhere (jupyter execute, nbclient) the root would be a guess
    (the current directory is used for explicit syncs). ``clouds`` replaces the configured
    clouds with ready ones (tests, embedding applications); they are bound here too.
    """
    logger = logger or log
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)

    events = ServerEvents(on_event)
    quotas, group_budgets = parse_quotas(settings.quotas)
    control_plane = team_control_plane(settings)
    admin_source = team_admin_source(settings, control_plane, logger)
    team = Team(
        enabled=settings.team_mode,
        owner=settings.user,
        admin_users=frozenset(settings.team_admin_users if admin_source is None else ()),
        admin_groups=frozenset(settings.team_admin_groups if admin_source is None else ()),
        quotas=quotas,
        group_budgets=group_budgets,
        access=parse_access(settings.access),
        queue_user_cap=settings.team_queue_user_cap,
        admin_source=admin_source,
    )
    # The one owner of the database: every store below shares its engine and pool.
    database = Database(
        settings.db_url, credentials=team_database_credentials(settings, control_plane)
    )
    # In team mode the store sees its user's servers only: so does every service over it.
    store = ServerStore(database, clock=time.time, owner=team.owner, scoped=team.enabled)
    keys = KeyStore(data_dir / "keys")
    certificates = team_certificates(control_plane)
    ssh = SSHConnections(
        keys,
        keepalive_interval=settings.ssh_keepalive_interval,
        keepalive_count_max=settings.ssh_keepalive_count_max,
        connect_timeout=settings.ssh_connect_timeout,
        certificates=certificates,
    )
    images = ImageCatalog(
        settings.image_catalog,
        data_dir / "images-tested.json",
        # In team mode the tested marks are the team's: an admin's is every user's.
        marks=DatabaseMarks(database) if team.enabled else None,
        built_file=data_dir / "images-built.json",
        timeout=settings.image_catalog_timeout,
        max_bytes=settings.image_catalog_max_bytes,
    )
    images.load_or_default()
    if images.load_error:
        logger.error("%s; using the built-in catalogue.", images.load_error)
    host_store = HostStore(database, clock=time.time)
    # The fair queue's per-user cap of each entry's owner.
    host_store.user_cap = team.queue_cap
    hosts = HostRegistry(
        host_store,
        ssh,
        on_change=lambda host_id: events.publish("hosts", None, None, host_id=host_id),
        max_hosts=settings.max_hosts,
        certificates=certificates is not None,
    )
    sync_records = SyncStore(database)

    cloud_services = CloudServices(
        images=images,
        hosts=hosts,
        store=store,
        ssh=ssh,
        control_plane=control_plane,
    )
    if clouds is None:
        clouds = build_clouds(settings, cloud_services)
    else:
        for cloud in clouds.values():
            cloud.bind(cloud_services)

    manager = settings.manager_class(
        store,
        clouds,
        keys,
        ssh,
        images=images,
        hosts=hosts,
        events=events,
        sync_settings=sync_records,
        team=team,
        max_servers=settings.max_servers,
        health_interval=settings.health_check_interval,
        log=logger,
    )
    costs = ComputeServerCosts(
        manager, records=CostRecords(database, clock=time.time), parent=settings
    )
    events.listeners.append(costs.on_event)
    manager.admission_checks.append(costs.check_start)
    # The monthly_spend quota counts the owner's spend by the costs' ledger.
    team.month_spend = lambda owner: month_spend_of(costs, owner)
    team.group_spend = lambda group: group_month_spend(costs, group)
    team.costs_money = lambda cloud, config: costs_money(costs, cloud, config)
    queue = TeamQueue(host_store, store, team, costs)
    # A waiting start's progress says when it may start, as far as is known.
    host_store.wait_note = queue.note
    kernel_specs = KernelSpecPublisher(manager, settings.kernel_specs_dir, str(data_dir))
    events.listeners.append(kernel_specs.on_event)
    # Kept only where a Jupyter server starts it (app.py); c.ComputeServerProvisioner.*
    # configures it, as it does the kernels it hands out.
    warm_kernels = WarmKernelPool(manager, settings.config, str(data_dir))
    manager.before_disconnect.append(warm_kernels.before_disconnect)
    sync = SyncService(
        manager,
        sync_records,
        sync_root or os.getcwd(),
        data_dir / "sync",
        before_kernels=sync_root is not None,
        parent=settings,
    )
    terminals = RemoteTerminals(
        manager,
        on_input=costs.activity.terminal_input,
        max_terminals=settings.max_terminals_per_server,
    )
    mounts = MountService(manager, sync_root or os.getcwd())
    manager.before_disconnect.append(mounts.before_disconnect)
    manager.kernel_directory.append(mounts.kernel_directory)
    manager.before_directory_choice.append(mounts.ready)
    events.listeners.append(mounts.on_event)
    sync.server_only_extra.append(mounts.server_only)
    apps = ServerApps(
        manager, on_activity=lambda server_id: costs.activity.touch(server_id, "web app use")
    )
    presenter = ServerPresenter(
        clouds, costs, sync_records, mounts.state, queue.by_server, warm_kernels.state
    )
    return Services(
        settings=settings,
        events=events,
        database=database,
        team=team,
        store=store,
        keys=keys,
        ssh=ssh,
        images=images,
        hosts=hosts,
        clouds=clouds,
        manager=manager,
        costs=costs,
        kernel_specs=kernel_specs,
        warm_kernels=warm_kernels,
        sync=sync,
        terminals=terminals,
        mounts=mounts,
        apps=apps,
        presenter=presenter,
        queue=queue,
        # An admin's revocations, asked of the control plane with this server's token.
        revocations=TeamRevocations(control_plane),
    )
