"""On-prem hosts: machines the user already has, registered once and shared out as compute
servers of the ``ssh`` cloud.

- A host's SSH host key is pinned from ``~/.ssh/known_hosts`` or, on first contact, shown as a
  fingerprint for the user to confirm. Until then nothing logs in to it.
- Its inventory (CPUs, RAM, disk, OS, Python, GPUs by NVML) comes from the agent over SSH.
- ``HostStore.allocate`` hands out slices of a host (CPUs, RAM, and GPUs by UUID: whole GPUs,
  MIG instances an admin made, or shares of a GPU through MPS where the host's
  ``gpu_fractions`` allow them) to servers in one transaction that holds the host's row locked,
  so two processes never give the same GPU (or more than all of it) twice, and keeps the FIFO
  queue of servers waiting for GPUs.

Shares of one GPU run under one MPS server, which serves one Unix user at a time: a GPU's
shares go to one user's slices at a time (checked across every host record, GPU UUIDs being
unique), and a share for another user waits in the queue until they end.

The tables ``hosts``, ``host_slices`` and ``gpu_queue`` are this module's, in the database every
store shares (``db.Database``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh
from sqlalchemy import (
    Column,
    Connection,
    Double,
    ForeignKey,
    Index,
    Integer,
    RowMapping,
    Table,
    Text,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from .db import Database, inserted_id, metadata
from .db.usage import server_usage, slice_usage
from .errors import CloudError, ConflictError, NotFoundError, ValidationError
from .models import check_no_unknown, parse_number, parse_object, parse_str
from .ssh import SSHConnections, fingerprint, user_ssh_config
from .ssh_endpoint import SSHEndpoint
from .store import servers

HOST_FIELDS = (
    "name",
    "hostname",
    "port",
    "username",
    "identity_file",
    "use_agent",
    "python",
    "hourly_rate",
    "gpu_rates",
    "gpu_wait_minutes",
    "gpu_fractions",
)
PATCH_FIELDS = (*HOST_FIELDS, "trust_host_key")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# No empty label (a leading dot, two dots): the resolver refuses those with a UnicodeError.
_HOSTNAME = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,252}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")

hosts = Table(
    "hosts",
    metadata,
    Column("id", Integer, primary_key=True),
    # Unique regardless of case (SQLite: COLLATE NOCASE; PostgreSQL: an index on lower(name)).
    Column("name", Text, nullable=False),
    Column("hostname", Text, nullable=False),
    Column("port", Integer, nullable=False),
    Column("username", Text, nullable=False),
    Column("identity_file", Text),
    Column("use_agent", Integer, nullable=False, server_default="0"),
    Column("host_key", Text),
    Column("host_key_source", Text),
    Column("pending_host_key", Text),
    Column("python", Text, nullable=False, server_default="python3"),
    Column("hourly_rate", Double),
    Column("gpu_rates", Text, nullable=False, server_default="{}"),
    Column("gpu_wait_minutes", Double, nullable=False, server_default="30"),
    Column("inventory", Text),
    Column("inventory_error", Text, nullable=False, server_default=""),
    Column("inventoried", Double),
    Column("created", Double, nullable=False),
    Column("updated", Double, nullable=False),
    # GPU UUID or type -> the shares (MPS) its admin allows, e.g. {"NVIDIA A100": [0.25, 0.5]}.
    Column("gpu_fractions", Text, nullable=False, server_default="{}"),
    sqlite_autoincrement=True,
)
Index("hosts_name_nocase", func.lower(hosts.c.name), unique=True)

#: The part of a host given to each running server (CPUs, memory, whole GPUs by UUID).
host_slices = Table(
    "host_slices",
    metadata,
    Column("server_id", Integer, primary_key=True, autoincrement=False),
    Column("host_id", Integer, ForeignKey("hosts.id"), nullable=False),
    Column("cpu", Integer, nullable=False),
    Column("memory_gb", Double, nullable=False),
    Column("gpu_uuids", Text, nullable=False, server_default="[]"),
    Column("token", Text, nullable=False),
    Column("allocated", Double, nullable=False),
    # A share of its one GPU (MPS); None: its GPUs are whole (or MIG instances).
    Column("gpu_fraction", Double),
    # The Unix user its processes run as: the one user a GPU's MPS server serves.
    Column("unix_user", Text, nullable=False, server_default=""),
)

#: The servers waiting for a slice of a host, first come first served, with a per-user cap
#: (``allocate``) that an admin's reorder (``place``) or cancel (``cancelled_by``) can change.
gpu_queue = Table(
    "gpu_queue",
    metadata,
    Column("server_id", Integer, primary_key=True, autoincrement=False),
    Column("host_id", Integer, ForeignKey("hosts.id"), nullable=False),
    Column("requested", Double, nullable=False),
    # Revision 0005. Its place in line (None: ``requested``); an admin's move changes it.
    Column("place", Double),
    # The most GPUs its owner may hold on the host at once (None: no cap), as the owner's
    # process worked it out (it alone knows the owner's Hub groups): the others' processes
    # read it here to pass over an entry that is over its cap.
    Column("user_cap", Double),
    # Who cancelled it (an admin, or its owner elsewhere): its start ends saying so.
    Column("cancelled_by", Text),
)


@dataclass
class HostRecord:
    id: int
    name: str
    hostname: str
    port: int
    username: str
    identity_file: str | None
    use_agent: bool
    host_key: str | None
    host_key_source: str | None
    pending_host_key: str | None
    python: str
    hourly_rate: float | None
    gpu_rates: dict[str, float]
    gpu_wait_minutes: float
    gpu_fractions: dict[str, list[float]]
    inventory: dict[str, Any] | None
    inventory_error: str
    inventoried: float | None
    created: float
    updated: float

    @property
    def trusted(self) -> bool:
        return self.host_key is not None

    def gpus(self) -> list[dict[str, Any]]:
        """The GPUs a slice can be given: whole GPUs, and the MIG instances of GPUs an admin
        split (a GPU in MIG mode is not usable whole). Each has name (its type), uuid and
        memory_total; a MIG instance also parent (its GPU's UUID) and mig_profile."""
        units: list[dict[str, Any]] = []
        for gpu in _entries((self.inventory or {}).get("gpus")):
            if gpu.get("mig"):
                units.extend(_entries(gpu.get("mig_devices")))
            else:
                units.append(gpu)
        return units

    def fractions_of(self, gpu: dict[str, Any]) -> list[float]:
        """The shares this GPU's admin allows (by its UUID, else its type); none on a MIG
        instance (the product does not run MPS inside MIG)."""
        if gpu.get("parent"):
            return []
        return list(self.gpu_fractions.get(gpu["uuid"], self.gpu_fractions.get(gpu["name"], [])))

    @property
    def unix_user(self) -> str:
        """Who the host's processes run as: the agent's answer, else the login name."""
        return str((self.inventory or {}).get("user") or self.username or "")

    def endpoint(self, **overrides: Any) -> SSHEndpoint:
        """How to log in to the host itself (its key pinned; the user's credentials)."""
        if self.host_key is None:
            raise ConflictError(
                f"The host key of {self.name!r} is not confirmed yet: check its fingerprint "
                f"and confirm it (hosts/{self.id}, trust_host_key).",
                field="trust_host_key",
            )
        values: dict[str, Any] = {
            "host": self.hostname,
            "port": self.port,
            "username": self.username,
            "host_key": self.host_key,
            "workspace": "~",
            "python": self.python,
            "identity_file": os.path.expanduser(self.identity_file or ""),
            "use_agent": self.use_agent or not self.identity_file,
            "use_ssh_config": True,
        }
        values.update(overrides)
        return SSHEndpoint(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "hostname": self.hostname,
            "port": self.port,
            "username": self.username,
            "identity_file": self.identity_file,
            "use_agent": self.use_agent,
            "python": self.python,
            "trusted": self.trusted,
            "host_key_fingerprint": fingerprint(self.host_key) if self.host_key else None,
            "host_key_source": self.host_key_source,
            "pending_host_key_fingerprint": (
                fingerprint(self.pending_host_key) if self.pending_host_key else None
            ),
            "hourly_rate": self.hourly_rate,
            "gpu_rates": self.gpu_rates,
            "gpu_wait_minutes": self.gpu_wait_minutes,
            "gpu_fractions": self.gpu_fractions,
            "inventory": self.inventory,
            "inventory_error": self.inventory_error,
            "inventoried": self.inventoried,
            "created": self.created,
            "updated": self.updated,
        }


def _host(row: RowMapping) -> HostRecord:
    return HostRecord(
        id=row["id"],
        name=row["name"],
        hostname=row["hostname"],
        port=row["port"],
        username=row["username"],
        identity_file=row["identity_file"],
        use_agent=bool(row["use_agent"]),
        host_key=row["host_key"],
        host_key_source=row["host_key_source"],
        pending_host_key=row["pending_host_key"],
        python=row["python"],
        hourly_rate=row["hourly_rate"],
        gpu_rates=json.loads(row["gpu_rates"] or "{}"),
        gpu_wait_minutes=row["gpu_wait_minutes"],
        gpu_fractions=json.loads(row["gpu_fractions"] or "{}"),
        inventory=json.loads(row["inventory"]) if row["inventory"] else None,
        inventory_error=row["inventory_error"],
        inventoried=row["inventoried"],
        created=row["created"],
        updated=row["updated"],
    )


@dataclass
class Slice:
    server_id: int
    host_id: int
    cpu: int
    memory_gb: float
    gpu_uuids: list[str] = field(default_factory=list)
    token: str = ""
    gpu_fraction: float | None = None
    unix_user: str = ""


class HostStore:
    """Hosts, slices and the GPU queue, in the shared database."""

    def __init__(self, database: Database, *, clock: Callable[[], float]) -> None:
        self.database = database
        self.clock = clock
        #: The most GPUs of one host a user may hold at once (None: no cap), by owner: team
        #: mode's per-user cap of the fair queue (``team.Team.queue_cap``).
        self.user_cap: Callable[[str], float | None] = lambda owner: None
        #: When a waiting server may start, in words ("" when unknown): ``TeamQueue.note``.
        self.wait_note: Callable[[int], str] = lambda server_id: ""

    def hosts(self) -> list[HostRecord]:
        with self.database.read() as db:
            rows = db.execute(select(hosts).order_by(hosts.c.id)).mappings().all()
        return [_host(r) for r in rows]

    def get(self, host_id: int) -> HostRecord:
        with self.database.read() as db:
            row = db.execute(select(hosts).where(hosts.c.id == host_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"No host with id {host_id}.", field="id")
        return _host(row)

    def find(self, id_or_name: Any) -> HostRecord:
        key = str(id_or_name)
        with self.database.read() as db:
            row = (
                db.execute(
                    select(hosts)
                    .where(or_(_named(key), cast(hosts.c.id, Text) == key))
                    .order_by(hosts.c.id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError(f"No host named {id_or_name!r}.", field="host")
        return _host(row)

    def create(self, **values: Any) -> HostRecord:
        now = self.clock()
        values = {**values, "created": now, "updated": now}
        with self.database.transaction() as db:
            self._check_name_free(db, values["name"], None)
            result = db.execute(
                insert(hosts).values({key: _column(value) for key, value in values.items()})
            )
            host_id = inserted_id(result)
        return self.get(host_id)

    def update(self, host_id: int, **values: Any) -> HostRecord:
        if not values:
            return self.get(host_id)
        values["updated"] = self.clock()
        with self.database.transaction() as db:
            _lock_host(db, host_id)
            if "name" in values:
                self._check_name_free(db, values["name"], host_id)
            db.execute(
                update(hosts)
                .where(hosts.c.id == host_id)
                .values({key: _column(value) for key, value in values.items()})
            )
        return self.get(host_id)

    def delete(self, host_id: int) -> None:
        with self.database.transaction() as db:
            _lock_host(db, host_id)
            if db.execute(
                select(host_slices.c.server_id).where(host_slices.c.host_id == host_id)
            ).first():
                raise ConflictError(
                    "Servers are running on this host; stop them first.", field="id"
                )
            # The servers' table is the store's: read here, in the same transaction, so that
            # a host is never deleted from under a server that names it.
            using = [
                (row.name, row.owner)
                for row in db.execute(
                    select(servers.c.name, servers.c.owner, servers.c.config)
                    .where(servers.c.cloud == "ssh")
                    .order_by(servers.c.id)
                )
                if json.loads(row.config).get("extra", {}).get("host") == host_id
            ]
            if using:
                # Names are unique per owner: where several own them (team mode, an admin
                # asking), each is named with its owner.
                owners = {owner for _, owner in using}
                named = [f"{n} ({o or 'no owner'})" if len(owners) > 1 else n for n, o in using]
                raise ConflictError(
                    f"Servers use this host ({', '.join(named)}); delete them first.",
                    field="id",
                )
            db.execute(delete(hosts).where(hosts.c.id == host_id))

    def _check_name_free(self, db: Connection, name: str, host_id: int | None) -> None:
        self.database.lock(db, "hosts.name")
        row = db.execute(select(hosts.c.id).where(_named(name))).first()
        if row is not None and row.id != host_id:
            raise ConflictError(f"A host named {name!r} exists.", field="name")

    # --- slices and the queue ---------------------------------------------------------------

    def slice_of(self, server_id: int) -> Slice | None:
        with self.database.read() as db:
            row = (
                db.execute(select(host_slices).where(host_slices.c.server_id == server_id))
                .mappings()
                .first()
            )
        return None if row is None else _slice(row)

    def allocate(
        self,
        server_id: int,
        host: HostRecord,
        cpu: int,
        memory_gb: float,
        gpu: Any,
        *,
        unix_user: str | None = None,
    ) -> Slice | str:
        """Give the server its slice now, or answer why not (it then waits in the queue).

        One transaction, with the host's row locked: the check and the claim cannot
        interleave with another process's, on the same host.

        The queue is served first come first served (an admin may move an entry), passing
        over an entry whose owner holds their cap of this host's GPUs already (each entry's
        cap is its owner's, as ``user_cap`` of the owner's process gave it): such a request
        waits even with GPUs free, and the next user's is served first. An entry cancelled
        by someone else (``cancel_queued``) raises a ``CloudError`` saying who cancelled it.
        ``unix_user``: the account the slice's processes run as, when it is not the host's
        (team mode: the certificate's).
        """
        user = unix_user or host.unix_user
        granted = self._claim(server_id, host, cpu, memory_gb, gpu, user)
        if isinstance(granted, CloudError):
            raise granted  # after its transaction removed the cancelled entry
        return granted

    def _claim(
        self, server_id: int, host: HostRecord, cpu: int, memory_gb: float, gpu: Any, user: str
    ) -> Slice | str | CloudError:
        with self.database.transaction() as db:
            _lock_host(db, host.id)
            row = (
                db.execute(select(host_slices).where(host_slices.c.server_id == server_id))
                .mappings()
                .first()
            )
            if row is not None:
                db.execute(delete(gpu_queue).where(gpu_queue.c.server_id == server_id))
                return _slice(row)
            queued = db.execute(
                select(gpu_queue.c.cancelled_by).where(gpu_queue.c.server_id == server_id)
            ).first()
            if queued is not None and queued.cancelled_by is not None:
                db.execute(delete(gpu_queue).where(gpu_queue.c.server_id == server_id))
                return CloudError(
                    f"{queued.cancelled_by} cancelled this server's place in {host.name}'s "
                    f"queue. Start it again to queue anew."
                )
            owner = db.execute(select(servers.c.owner).where(servers.c.id == server_id)).scalar()
            user_cap = self.user_cap(owner or "")
            if queued is None:
                now = self.clock()
                db.execute(
                    insert(gpu_queue).values(
                        server_id=server_id,
                        host_id=host.id,
                        requested=now,
                        place=now,
                        user_cap=user_cap,
                    )
                )
            else:
                db.execute(
                    update(gpu_queue)
                    .where(gpu_queue.c.server_id == server_id)
                    .values(user_cap=user_cap)
                )
            line = _line(db, host.id)
            first = next((entry for entry in line if not entry.over_cap), None)
            mine = next(entry for entry in line if entry.server_id == server_id)
            if mine.over_cap:
                return (
                    f"{mine.owner or 'its owner'} holds {mine.held:g} of this host's GPUs, the "
                    f"most one user may hold at once ({mine.cap:g}): the next user's request "
                    f"is served first"
                )
            if first is None or first.server_id != server_id:
                return "waiting for the servers ahead of it"
            slices = db.execute(
                select(slice_usage.c.cpu, slice_usage.c.memory_gb).where(
                    slice_usage.c.host_id == host.id
                )
            ).all()
            inventory = host.inventory or {}
            cpus_free = int(inventory.get("cpu_count") or 0) - sum(r.cpu for r in slices)
            memory_free = (inventory.get("memory_total") or 0) / 2**30 - sum(
                r.memory_gb for r in slices
            )
            fraction = None if gpu is None else gpu.fraction
            gpus: list[str] = []
            if gpu is not None:
                # Every slice of these GPUs, whichever host record gave it (UUIDs are unique;
                # two records may name one machine): shares are decided under one lock.
                self.database.lock(db, "gpu_shares")
                uses = _gpu_uses(db)
                if fraction is None:
                    free = [
                        g["uuid"]
                        for g in host.gpus()
                        if g["name"] == gpu.type and g["uuid"] not in uses
                    ]
                    if len(free) < gpu.count:
                        return f"{gpu.count} free {gpu.type} needed, {len(free)} free"
                    gpus = free[: gpu.count]
                else:
                    chosen, why = _place_share(host, gpu.type, fraction, uses, user)
                    if chosen is None:
                        return why
                    gpus = [chosen]
            if cpu > cpus_free:
                return f"{cpu} CPUs needed, {cpus_free} free"
            if memory_gb > memory_free + 1e-9:
                return f"{memory_gb:g} GB of memory needed, {memory_free:.1f} GB free"
            token = secrets.token_urlsafe(24)
            db.execute(
                insert(host_slices).values(
                    server_id=server_id,
                    host_id=host.id,
                    cpu=cpu,
                    memory_gb=memory_gb,
                    gpu_uuids=json.dumps(gpus),
                    token=token,
                    allocated=self.clock(),
                    gpu_fraction=fraction,
                    unix_user=user,
                )
            )
            db.execute(delete(gpu_queue).where(gpu_queue.c.server_id == server_id))
            return Slice(server_id, host.id, cpu, memory_gb, gpus, token, fraction, user)

    def shares_on(self, gpu_uuid: str) -> list[Slice]:
        """The slices holding a share of this GPU, on any host record."""
        with self.database.read() as db:
            return _shares_in(db, gpu_uuid)

    def queue_position(self, server_id: int) -> int | None:
        """1 for the next in line on its host; None when not waiting."""
        entry = self.queue_entry(server_id)
        return None if entry is None else entry.position

    def queue_entry(self, server_id: int) -> QueueEntry | None:
        """The server's entry in its host's queue, with its place; None when not waiting."""
        with self.database.read() as db:
            host_id = db.execute(
                select(gpu_queue.c.host_id).where(gpu_queue.c.server_id == server_id)
            ).scalar()
            if host_id is None:
                return None
            return next((e for e in _line(db, host_id) if e.server_id == server_id), None)

    def queue(self, host_id: int | None = None) -> list[QueueEntry]:
        """Every host's queue (or one host's), each in the order it is served."""
        with self.database.read() as db:
            query = select(gpu_queue.c.host_id).distinct().order_by(gpu_queue.c.host_id)
            if host_id is not None:
                query = query.where(gpu_queue.c.host_id == host_id)
            return [entry for h in db.execute(query).scalars() for entry in _line(db, h)]

    def move_in_queue(self, server_id: int, position: int) -> QueueEntry:
        """Put a waiting server at ``position`` (1: first) of its host's queue (an admin's
        reorder); 404 when it is not waiting."""
        with self.database.transaction() as db:
            host_id = _lock_queue_of(db, server_id)
            others = [e for e in _line(db, host_id) if e.server_id != server_id]
            index = min(position, len(others) + 1) - 1
            if not others:
                place = self.clock()
            elif index == 0:
                place = others[0].place - 1.0
            elif index >= len(others):
                place = others[-1].place + 1.0
            else:
                place = (others[index - 1].place + others[index].place) / 2
            db.execute(
                update(gpu_queue).where(gpu_queue.c.server_id == server_id).values(place=place)
            )
            return next(e for e in _line(db, host_id) if e.server_id == server_id)

    def cancel_queued(self, server_id: int, by: str) -> QueueEntry:
        """Mark a waiting server's entry cancelled: the process running its start ends the
        start at its next try, saying who cancelled it (``allocate``)."""
        with self.database.transaction() as db:
            host_id = _lock_queue_of(db, server_id)
            db.execute(
                update(gpu_queue)
                .where(gpu_queue.c.server_id == server_id)
                .values(cancelled_by=by[:200] or "an admin")
            )
            return next(e for e in _line(db, host_id) if e.server_id == server_id)

    def leave_queue(self, server_id: int) -> None:
        with self.database.transaction() as db:
            db.execute(delete(gpu_queue).where(gpu_queue.c.server_id == server_id))

    def release(self, server_id: int) -> None:
        with self.database.transaction() as db:
            db.execute(delete(host_slices).where(host_slices.c.server_id == server_id))
            db.execute(delete(gpu_queue).where(gpu_queue.c.server_id == server_id))

    def release_share(self, server_id: int) -> str | None:
        """Release the server's slice; when it held a share of a GPU that no other slice holds
        a share of now, that GPU's UUID (its MPS daemon may go). The release and that check
        are one transaction under the ``gpu_shares`` lock that ``allocate`` takes: a share
        allocated (starting) concurrently is either seen here or allocated after the release,
        never lost between them."""
        with self.database.transaction() as db:
            self.database.lock(db, "gpu_shares")
            row = (
                db.execute(select(host_slices).where(host_slices.c.server_id == server_id))
                .mappings()
                .first()
            )
            db.execute(delete(host_slices).where(host_slices.c.server_id == server_id))
            db.execute(delete(gpu_queue).where(gpu_queue.c.server_id == server_id))
            if row is None or row["gpu_fraction"] is None:
                return None
            uuid = _slice(row).gpu_uuids[0]
            return None if _shares_in(db, uuid) else uuid

    def shares_locked(self, gpu_uuid: str) -> list[Slice]:
        """``shares_on``, read under the ``gpu_shares`` lock (after any allocation in flight)."""
        with self.database.transaction() as db:
            self.database.lock(db, "gpu_shares")
            return _shares_in(db, gpu_uuid)

    def holders(self) -> dict[int, list[dict[str, Any]]]:
        """Who holds which slice of each host now, by host id: each slice's server, its
        owner and Unix account, CPUs, RAM and GPUs (an admin's view: ``GET /hosts``)."""
        with self.database.read() as db:
            rows = (
                db.execute(
                    select(host_slices, servers.c.name, servers.c.owner)
                    .select_from(
                        host_slices.outerjoin(servers, servers.c.id == host_slices.c.server_id)
                    )
                    .order_by(host_slices.c.host_id, host_slices.c.allocated)
                )
                .mappings()
                .all()
            )
        held: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            piece = _slice(row)
            held.setdefault(piece.host_id, []).append(
                {
                    "server_id": piece.server_id,
                    "server_name": row["name"] or "",
                    "owner": row["owner"] or "",
                    "unix_user": piece.unix_user,
                    "cpu": piece.cpu,
                    "memory_gb": piece.memory_gb,
                    "gpu_uuids": piece.gpu_uuids,
                    "gpu_fraction": piece.gpu_fraction,
                    "allocated": row["allocated"],
                }
            )
        return held

    def slices_on(self, host_id: int) -> list[Slice]:
        """Every slice of the host, whoever's (``slice_usage``: without their tokens)."""
        with self.database.read() as db:
            rows = (
                db.execute(select(slice_usage).where(slice_usage.c.host_id == host_id))
                .mappings()
                .all()
            )
        return [_slice(row) for row in rows]


@dataclass
class QueueEntry:
    """A server waiting for a slice of a host, where it stands in line."""

    server_id: int
    host_id: int
    owner: str
    server_name: str
    requested: float
    place: float
    #: 1 for the next in line (the order an admin's move changed, if one did).
    position: int
    #: GPUs it asks for (a share counts as its fraction).
    gpus: float
    #: GPUs of the host its owner holds now, and the most they may hold at once.
    held: float
    cap: float | None
    cancelled_by: str | None

    @property
    def over_cap(self) -> bool:
        """Whether serving it now would put its owner over their cap: it is passed over."""
        return self.cap is not None and self.gpus > 0 and self.held + self.gpus > self.cap + 1e-9

    def to_json(self) -> dict[str, Any]:
        return {
            "server_id": self.server_id,
            "host_id": self.host_id,
            "owner": self.owner,
            "server_name": self.server_name,
            "requested": self.requested,
            "position": self.position,
            "gpus": self.gpus,
            "held": self.held,
            "cap": self.cap,
            "over_cap": self.over_cap,
            "cancelled_by": self.cancelled_by,
        }


def _wanted_gpus(config_json: str | None) -> float:
    gpu = (json.loads(config_json) if config_json else {}).get("gpu") or {}
    if not isinstance(gpu, dict):
        return 0.0
    fraction = gpu.get("fraction")
    count = float(gpu.get("count") or 0)
    return float(fraction) * count if isinstance(fraction, int | float) else count


def _line(db: Connection, host_id: int) -> list[QueueEntry]:
    """A host's queue in the order it is served (``place``, then id), each entry with what
    its owner holds on the host now."""
    held: dict[str, float] = {}
    # Everyone's slices and queued servers, through db/usage's views (team mode: a user's
    # login reads owners and GPUs there, not others' servers); the name through ``servers``
    # itself, so it is there for the login's own servers (an admin's: all) and '' otherwise.
    for row in db.execute(
        select(slice_usage.c.gpu_uuids, slice_usage.c.gpu_fraction, slice_usage.c.owner).where(
            slice_usage.c.host_id == host_id
        )
    ):
        count = len(json.loads(row.gpu_uuids)) * (row.gpu_fraction or 1.0)
        held[row.owner or ""] = held.get(row.owner or "", 0.0) + count
    rows = db.execute(
        select(gpu_queue, server_usage.c.owner, server_usage.c.resources, servers.c.name)
        .select_from(
            gpu_queue.outerjoin(server_usage, server_usage.c.id == gpu_queue.c.server_id).outerjoin(
                servers, servers.c.id == gpu_queue.c.server_id
            )
        )
        .where(gpu_queue.c.host_id == host_id)
        .order_by(func.coalesce(gpu_queue.c.place, gpu_queue.c.requested), gpu_queue.c.server_id)
    ).all()
    return [
        QueueEntry(
            server_id=row.server_id,
            host_id=host_id,
            owner=row.owner or "",
            server_name=row.name or "",
            requested=row.requested,
            place=row.place if row.place is not None else row.requested,
            position=index + 1,
            gpus=_wanted_gpus(row.resources),
            held=held.get(row.owner or "", 0.0),
            cap=row.user_cap,
            cancelled_by=row.cancelled_by,
        )
        for index, row in enumerate(rows)
    ]


def _shares_in(db: Connection, gpu_uuid: str) -> list[Slice]:
    rows = (
        db.execute(select(slice_usage).where(slice_usage.c.gpu_fraction.is_not(None)))
        .mappings()
        .all()
    )
    return [s for s in map(_slice, rows) if gpu_uuid in s.gpu_uuids]


def _entries(value: Any) -> list[dict[str, Any]]:
    """The well-formed GPU entries of an inventory (the host's answer: not trusted)."""
    if not isinstance(value, list):
        return []
    return [
        entry
        for entry in value
        if isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("uuid"), str)
    ]


def _named(name: str) -> Any:
    """Hosts of this name, in any case (as the unique index compares them)."""
    return func.lower(hosts.c.name) == func.lower(name)


def _lock_queue_of(db: Connection, server_id: int) -> int:
    """Lock the host whose queue the server waits in, in this transaction; its id (404 when
    the server waits in no queue)."""
    host_id = db.execute(
        select(gpu_queue.c.host_id).where(gpu_queue.c.server_id == server_id)
    ).scalar()
    if host_id is None:
        raise NotFoundError(f"Compute server {server_id} is not in a queue.", field="id")
    _lock_host(db, host_id)
    return int(host_id)


def _lock_host(db: Connection, host_id: int) -> None:
    """Lock the host's row until the transaction ends; 404 if there is no such host."""
    found = db.execute(select(hosts.c.id).where(hosts.c.id == host_id).with_for_update()).first()
    if found is None:
        raise NotFoundError(f"No host with id {host_id}.", field="id")


def _slice(row: RowMapping) -> Slice:
    """A slice from ``host_slices``, or from ``slice_usage`` (another's: no token, '')."""
    return Slice(
        row["server_id"],
        row["host_id"],
        row["cpu"],
        row["memory_gb"],
        json.loads(row["gpu_uuids"]),
        row.get("token", ""),
        row["gpu_fraction"],
        row["unix_user"],
    )


@dataclass
class GpuUse:
    """How a GPU is given out now: whole (or a MIG instance) to one slice, or in shares."""

    whole: bool = False
    shares: float = 0.0
    users: set[str] = field(default_factory=set)


def _gpu_uses(db: Connection) -> dict[str, GpuUse]:
    uses: dict[str, GpuUse] = {}
    rows = db.execute(
        select(slice_usage.c.gpu_uuids, slice_usage.c.gpu_fraction, slice_usage.c.unix_user)
    ).all()
    for row in rows:
        for uuid in json.loads(row.gpu_uuids):
            use = uses.setdefault(uuid, GpuUse())
            if row.gpu_fraction is None:
                use.whole = True
            else:
                use.shares += row.gpu_fraction
                use.users.add(row.unix_user)
    return uses


def _place_share(
    host: HostRecord, gpu_type: str, fraction: float, uses: dict[str, GpuUse], user: str
) -> tuple[str | None, str]:
    """The UUID of the GPU to take a share from for ``user``'s slice, packed onto the fullest
    that fits (so whole GPUs stay free for whole requests), or why none fits now."""
    fits: list[tuple[float, str]] = []
    other_user = ""
    room = 0.0
    for gpu in host.gpus():
        if gpu["name"] != gpu_type or not any(
            abs(step - fraction) < 1e-9 for step in host.fractions_of(gpu)
        ):
            continue
        use = uses.get(gpu["uuid"], GpuUse())
        if use.whole:
            continue
        if use.users - {user}:
            other_user = ", ".join(sorted(use.users - {user}))
            continue
        room = max(room, 1 - use.shares)
        if use.shares + fraction <= 1 + 1e-9:
            fits.append((use.shares, gpu["uuid"]))
    if fits:
        return max(fits)[1], ""
    if other_user:
        return None, (
            f"a {fraction:g} share of a {gpu_type} needed; the shared ones serve {other_user}'s "
            f"servers now (one MPS server serves one Unix user at a time), {room:g} free for {user}"
        )
    return None, f"a {fraction:g} share of a {gpu_type} needed, {room:g} of one free"


def _column(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _parse_fields(data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if creating:
        for required in ("name", "hostname"):
            if required not in data:
                raise ValidationError(f"{required} is required.", field=required)
    for key, value in data.items():
        if key == "name":
            values[key] = parse_str(
                value, key, pattern=_NAME, max_length=63, hint="letters, digits, '.', '_', '-'"
            )
        elif key == "hostname":
            values[key] = parse_str(value, key, pattern=_HOSTNAME, max_length=253)
        elif key == "port":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise ValidationError(
                    "port must be an integer 1-65535 (0: ~/.ssh/config).", field=key
                )
            values[key] = value
        elif key == "username":
            # None or "": ~/.ssh/config's user; anything else must be a name (not false, 0).
            values[key] = (
                ""
                if value is None or value == ""
                else parse_str(value, key, pattern=_USERNAME, max_length=64)
            )
        elif key == "identity_file":
            if value in (None, ""):
                values[key] = None
            else:
                path = parse_str(value, key, max_length=4096)
                if not os.path.isfile(os.path.expanduser(path)):
                    raise ValidationError(f"identity_file {path!r} is not a file here.", field=key)
                values[key] = path
        elif key == "use_agent":
            if not isinstance(value, bool):
                raise ValidationError("use_agent must be true or false.", field=key)
            values[key] = value
        elif key == "python":
            values[key] = parse_str(
                value, key, pattern=re.compile(r"^[A-Za-z0-9_./+-]{1,255}$"), max_length=255
            )
        elif key == "hourly_rate":
            values[key] = (
                None if value is None else parse_number(value, key, minimum=0, maximum=10000)
            )
        elif key == "gpu_rates":
            rates = parse_object(value, key)
            values[key] = {
                parse_str(gpu, f"{key}.{gpu}", max_length=128): parse_number(
                    rate, f"{key}.{gpu}", minimum=0, maximum=10000
                )
                for gpu, rate in rates.items()
            }
        elif key == "gpu_wait_minutes":
            values[key] = parse_number(value, key, minimum=0, maximum=7 * 24 * 60)
        elif key == "gpu_fractions":
            values[key] = _parse_fractions(value, key)
    return values


def _parse_fractions(value: Any, key: str) -> dict[str, list[float]]:
    """``{GPU UUID or type: [shares]}``: the shares of each GPU an admin allows through MPS."""
    allowed = parse_object(value, key)
    if len(allowed) > 64:
        raise ValidationError(f"{key} may name at most 64 GPUs or types.", field=key)
    parsed: dict[str, list[float]] = {}
    for gpu, steps in allowed.items():
        where = f"{key}.{gpu}"
        parse_str(gpu, where, max_length=128)
        if not isinstance(steps, list) or not 1 <= len(steps) <= 16:
            raise ValidationError(
                f"{where} must be a list of 1 to 16 shares, e.g. [0.25, 0.5].", field=where
            )
        parsed[gpu] = sorted(
            {
                parse_number(step, where, minimum=0, exclusive_minimum=True, maximum=0.99)
                for step in steps
            }
        )
    return parsed


class HostRegistry:
    """The service over hosts: registration, trust, inventory (used by the API and the cloud)."""

    def __init__(
        self,
        hosts: HostStore,
        ssh: SSHConnections,
        on_change: Callable[[int], None] | None = None,
        *,
        max_hosts: int = 0,
        certificates: bool = False,
    ) -> None:
        self.hosts = hosts
        self.ssh = ssh
        #: Team mode with a control plane: hosts are logged in to with the user's short-lived
        #: certificate, as the user's own Unix account, never with a host's stored credentials.
        self.certificates = certificates
        #: The most hosts that may be registered (0: no limit).
        self.max_hosts = max_hosts
        #: Told the id of a host that was registered, edited, trusted, inventoried or deleted.
        self.on_change = on_change

    def _changed(self, host: HostRecord) -> HostRecord:
        if self.on_change is not None:
            self.on_change(host.id)
        return host

    def _key(self, host_id: int) -> str:
        return f"host:{host_id}"

    def endpoint(self, host: HostRecord, **overrides: Any) -> SSHEndpoint:
        """How this process logs in to ``host`` (for itself or a slice of it): with the
        host's registered credentials, or in team mode with the user's certificate (no key
        file, no ssh-agent, no ~/.ssh/config: the account is the certificate's)."""
        if self.certificates:
            overrides = {
                **overrides,
                "identity_file": "",
                "use_agent": False,
                "use_ssh_config": False,
                "certificate": True,
            }
        return host.endpoint(**overrides)

    async def create(self, body: Any) -> HostRecord:
        data = parse_object(body, "body")
        check_no_unknown(data, HOST_FIELDS, "")
        values = _parse_fields(data, creating=True)
        if self.max_hosts and len(self.hosts.hosts()) >= self.max_hosts:
            raise ConflictError(
                f"There are {self.max_hosts} hosts, the most allowed here "
                "(c.ComputeServersApp.max_hosts); delete one first."
            )
        values.setdefault("port", 22)
        values.setdefault("username", "")
        host = self.hosts.create(**values)
        return self._changed(await self._first_contact(host))

    async def update(self, host_id: int, body: Any) -> HostRecord:
        data = parse_object(body, "body")
        check_no_unknown(data, PATCH_FIELDS, "")
        host = self.hosts.get(host_id)
        values = _parse_fields(
            {k: v for k, v in data.items() if k != "trust_host_key"}, creating=False
        )
        where = {"hostname", "port", "username", "identity_file", "use_agent"} & set(values)
        if where and self.hosts.slices_on(host_id):
            raise ConflictError(
                "Servers are running on this host; stop them before changing how to reach it.",
                field=sorted(where)[0],
            )
        if {"hostname", "port"} & set(values):
            values.update(host_key=None, host_key_source=None, pending_host_key=None)
        host = self.hosts.update(host_id, **values)
        await self.ssh.close(self._key(host_id))
        if "trust_host_key" in data:
            return await self.trust(host_id, data["trust_host_key"])
        if where:
            host = await self._first_contact(host)
        return self._changed(host)

    async def trust(self, host_id: int, confirmed: Any) -> HostRecord:
        """The user confirms the fingerprint shown: pin that key, then take the inventory."""
        host = self.hosts.get(host_id)
        if host.pending_host_key is None:
            raise ConflictError(
                "There is no host key waiting for confirmation.", field="trust_host_key"
            )
        if confirmed != fingerprint(host.pending_host_key):
            raise ValidationError(
                f"trust_host_key must be the fingerprint shown, "
                f"{fingerprint(host.pending_host_key)}.",
                field="trust_host_key",
            )
        host = self.hosts.update(
            host_id,
            host_key=host.pending_host_key,
            host_key_source="confirmed by the user",
            pending_host_key=None,
        )
        return self._changed(await self.inventory(host_id))

    async def _first_contact(self, host: HostRecord) -> HostRecord:
        """Pin the key from known_hosts, or fetch it to be confirmed; never trust it silently."""
        known = _known_host_key(host)
        if known is not None:
            host = self.hosts.update(
                host.id,
                host_key=known,
                host_key_source="~/.ssh/known_hosts",
                pending_host_key=None,
            )
            return await self.inventory(host.id)
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(
                    host.hostname, host.port or (), config=user_ssh_config()
                ),
                self.ssh.connect_timeout,
            )
        except (OSError, ValueError, asyncssh.Error, asyncio.TimeoutError) as e:
            # ValueError: the resolver's UnicodeError for a name it cannot encode.
            return self.hosts.update(
                host.id, inventory_error=f"Cannot reach {host.hostname}: {e or type(e).__name__}"
            )
        if key is None:
            return self.hosts.update(host.id, inventory_error="The host offered no host key.")
        return self.hosts.update(
            host.id,
            pending_host_key=key.export_public_key().decode().strip(),
            inventory_error="Confirm the host key fingerprint to connect.",
        )

    async def inventory(self, host_id: int) -> HostRecord:
        """Log in (pinned key) and ask the agent what the host has."""
        host = self.hosts.get(host_id)
        try:
            agent = await self.ssh.agent(self._key(host_id), self.endpoint(host))
            info = await agent.call("info", workspace="~")
        except (CloudError, OSError, ValueError, asyncssh.Error) as e:
            message = getattr(e, "message", None) or str(e)
            return self.hosts.update(host_id, inventory_error=message)
        return self.hosts.update(
            host_id, inventory=info, inventory_error="", inventoried=self.hosts.clock()
        )

    async def refresh(self, host_id: int) -> HostRecord:
        """Take the inventory again (the user asked), and tell observers."""
        return self._changed(await self.inventory(host_id))

    async def login_user(self) -> str | None:
        """The Unix account this process's slices run as on every host, when that is not each
        host's own (team mode: the one the user's certificate names)."""
        if not self.certificates or self.ssh.certificates is None:
            return None
        return (await self.ssh.certificates.credentials()).principal

    async def host_agent(self, host_id: int) -> Any:
        host = self.hosts.get(host_id)
        return await self.ssh.agent(self._key(host_id), self.endpoint(host))

    async def delete(self, host_id: int) -> None:
        self.hosts.delete(host_id)
        await self.ssh.close(self._key(host_id))
        if self.on_change is not None:
            self.on_change(host_id)


def _known_host_key(host: HostRecord) -> str | None:
    """The host's key from the user's known_hosts, if it is there (hashed entries included)."""
    path = os.path.expanduser("~/.ssh/known_hosts")
    if not os.path.exists(path):
        return None
    try:
        known = asyncssh.read_known_hosts(path)
        keys, *_ = known.match(host.hostname, "", host.port or 22)
    except (OSError, ValueError, asyncssh.Error):
        return None
    return keys[0].export_public_key().decode().strip() if keys else None
