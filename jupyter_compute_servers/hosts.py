"""On-prem hosts: machines the user already has, registered once and shared out as compute
servers of the ``ssh`` cloud.

- A host's SSH host key is pinned from ``~/.ssh/known_hosts`` or, on first contact, shown as a
  fingerprint for the user to confirm. Until then nothing logs in to it.
- Its inventory (CPUs, RAM, disk, OS, Python, GPUs by NVML) comes from the agent over SSH.
- ``HostSlices`` hands out slices of a host (CPUs, RAM and whole GPUs by UUID) to servers in
  one SQLite transaction, so two processes never give the same GPU twice, and keeps the FIFO
  queue of servers waiting for GPUs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from .errors import CloudError, ConflictError, NotFoundError, ValidationError
from .models import check_no_unknown, parse_number, parse_object, parse_str
from .ssh import SSHConnections, fingerprint, user_ssh_config
from .ssh_endpoint import SSHEndpoint
from .store import ServerStore

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
)
PATCH_FIELDS = (*HOST_FIELDS, "trust_host_key")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


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
    inventory: dict[str, Any] | None
    inventory_error: str
    inventoried: float | None
    created: float
    updated: float

    @property
    def trusted(self) -> bool:
        return self.host_key is not None

    def gpus(self) -> list[dict[str, Any]]:
        return list((self.inventory or {}).get("gpus") or [])

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
            "inventory": self.inventory,
            "inventory_error": self.inventory_error,
            "inventoried": self.inventoried,
            "created": self.created,
            "updated": self.updated,
        }


def _host(row: sqlite3.Row) -> HostRecord:
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


class HostStore:
    """Hosts, slices and the GPU queue, in the servers' database."""

    def __init__(self, store: ServerStore) -> None:
        self.store = store

    def hosts(self) -> list[HostRecord]:
        with self.store._transaction() as db:
            return [_host(r) for r in db.execute("SELECT * FROM hosts ORDER BY id").fetchall()]

    def get(self, host_id: int) -> HostRecord:
        with self.store._transaction() as db:
            row = db.execute("SELECT * FROM hosts WHERE id = ?", (host_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"No host with id {host_id}.", field="id")
        return _host(row)

    def find(self, id_or_name: Any) -> HostRecord:
        with self.store._transaction() as db:
            row = db.execute(
                "SELECT * FROM hosts WHERE name = ? OR CAST(id AS TEXT) = ?",
                (str(id_or_name), str(id_or_name)),
            ).fetchone()
        if row is None:
            raise NotFoundError(f"No host named {id_or_name!r}.", field="host")
        return _host(row)

    def create(self, **values: Any) -> HostRecord:
        now = self.store.clock()
        values = {**values, "created": now, "updated": now}
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.store._transaction() as db:
            self._check_name_free(db, values["name"], None)
            cursor = db.execute(
                f"INSERT INTO hosts ({columns}) VALUES ({marks})",  # noqa: S608 - our column names
                [_column(v) for v in values.values()],
            )
            host_id = cursor.lastrowid
        assert host_id is not None
        return self.get(host_id)

    def update(self, host_id: int, **values: Any) -> HostRecord:
        if not values:
            return self.get(host_id)
        values["updated"] = self.store.clock()
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self.store._transaction() as db:
            if db.execute("SELECT 1 FROM hosts WHERE id = ?", (host_id,)).fetchone() is None:
                raise NotFoundError(f"No host with id {host_id}.", field="id")
            if "name" in values:
                self._check_name_free(db, values["name"], host_id)
            db.execute(
                f"UPDATE hosts SET {assignments} WHERE id = ?",  # noqa: S608 - our column names
                [*(_column(v) for v in values.values()), host_id],
            )
        return self.get(host_id)

    def delete(self, host_id: int) -> None:
        with self.store._transaction() as db:
            if db.execute("SELECT 1 FROM host_slices WHERE host_id = ?", (host_id,)).fetchone():
                raise ConflictError(
                    "Servers are running on this host; stop them first.", field="id"
                )
            servers = [
                row["name"]
                for row in db.execute("SELECT name, config FROM servers WHERE cloud = 'ssh'")
                if json.loads(row["config"]).get("extra", {}).get("host") == host_id
            ]
            if servers:
                raise ConflictError(
                    f"Servers use this host ({', '.join(servers)}); delete them first.",
                    field="id",
                )
            if db.execute("DELETE FROM hosts WHERE id = ?", (host_id,)).rowcount == 0:
                raise NotFoundError(f"No host with id {host_id}.", field="id")

    @staticmethod
    def _check_name_free(db: sqlite3.Connection, name: str, host_id: int | None) -> None:
        row = db.execute("SELECT id FROM hosts WHERE name = ?", (name,)).fetchone()
        if row is not None and row["id"] != host_id:
            raise ConflictError(f"A host named {name!r} exists.", field="name")

    # --- slices and the queue ---------------------------------------------------------------

    def slice_of(self, server_id: int) -> Slice | None:
        with self.store._transaction() as db:
            row = db.execute(
                "SELECT * FROM host_slices WHERE server_id = ?", (server_id,)
            ).fetchone()
        return None if row is None else _slice(row)

    def allocate(
        self, server_id: int, host: HostRecord, cpu: int, memory_gb: float, gpu: Any
    ) -> Slice | str:
        """Give the server its slice now, or answer why not (it then waits in the queue).

        One transaction: the check and the claim cannot interleave with another process's.
        """
        with self.store._transaction() as db:
            row = db.execute(
                "SELECT * FROM host_slices WHERE server_id = ?", (server_id,)
            ).fetchone()
            if row is not None:
                db.execute("DELETE FROM gpu_queue WHERE server_id = ?", (server_id,))
                return _slice(row)
            if (
                db.execute("SELECT 1 FROM gpu_queue WHERE server_id = ?", (server_id,)).fetchone()
                is None
            ):
                db.execute(
                    "INSERT INTO gpu_queue (server_id, host_id, requested) VALUES (?, ?, ?)",
                    (server_id, host.id, self.store.clock()),
                )
            first = db.execute(
                "SELECT server_id FROM gpu_queue WHERE host_id = ? ORDER BY requested, server_id "
                "LIMIT 1",
                (host.id,),
            ).fetchone()
            if first["server_id"] != server_id:
                return "waiting for the servers ahead of it"
            slices = db.execute(
                "SELECT cpu, memory_gb, gpu_uuids FROM host_slices WHERE host_id = ?", (host.id,)
            ).fetchall()
            inventory = host.inventory or {}
            cpus_free = int(inventory.get("cpu_count") or 0) - sum(r["cpu"] for r in slices)
            memory_free = (inventory.get("memory_total") or 0) / 2**30 - sum(
                r["memory_gb"] for r in slices
            )
            taken = {uuid for r in slices for uuid in json.loads(r["gpu_uuids"])}
            gpus: list[str] = []
            if gpu is not None:
                free = [
                    g["uuid"]
                    for g in host.gpus()
                    if g["name"] == gpu.type and g["uuid"] not in taken
                ]
                if len(free) < gpu.count:
                    return f"{gpu.count} free {gpu.type} needed, {len(free)} free"
                gpus = free[: gpu.count]
            if cpu > cpus_free:
                return f"{cpu} CPUs needed, {cpus_free} free"
            if memory_gb > memory_free + 1e-9:
                return f"{memory_gb:g} GB of memory needed, {memory_free:.1f} GB free"
            token = secrets.token_urlsafe(24)
            db.execute(
                "INSERT INTO host_slices (server_id, host_id, cpu, memory_gb, gpu_uuids, token, "
                "allocated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (server_id, host.id, cpu, memory_gb, json.dumps(gpus), token, self.store.clock()),
            )
            db.execute("DELETE FROM gpu_queue WHERE server_id = ?", (server_id,))
            return Slice(server_id, host.id, cpu, memory_gb, gpus, token)

    def queue_position(self, server_id: int) -> int | None:
        """1 for the next in line on its host; None when not waiting."""
        with self.store._transaction() as db:
            row = db.execute(
                "SELECT host_id, requested FROM gpu_queue WHERE server_id = ?", (server_id,)
            ).fetchone()
            if row is None:
                return None
            ahead = db.execute(
                "SELECT COUNT(*) FROM gpu_queue WHERE host_id = ? AND "
                "(requested < ? OR (requested = ? AND server_id < ?))",
                (row["host_id"], row["requested"], row["requested"], server_id),
            ).fetchone()[0]
        return int(ahead) + 1

    def leave_queue(self, server_id: int) -> None:
        with self.store._transaction() as db:
            db.execute("DELETE FROM gpu_queue WHERE server_id = ?", (server_id,))

    def release(self, server_id: int) -> None:
        with self.store._transaction() as db:
            db.execute("DELETE FROM host_slices WHERE server_id = ?", (server_id,))
            db.execute("DELETE FROM gpu_queue WHERE server_id = ?", (server_id,))

    def slices_on(self, host_id: int) -> list[Slice]:
        with self.store._transaction() as db:
            rows = db.execute("SELECT * FROM host_slices WHERE host_id = ?", (host_id,)).fetchall()
        return [_slice(row) for row in rows]


def _slice(row: sqlite3.Row) -> Slice:
    return Slice(
        row["server_id"],
        row["host_id"],
        row["cpu"],
        row["memory_gb"],
        json.loads(row["gpu_uuids"]),
        row["token"],
    )


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
            values[key] = parse_str(value, key, pattern=_USERNAME, max_length=64) if value else ""
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
    return values


class HostRegistry:
    """The service over hosts: registration, trust, inventory (used by the API and the cloud)."""

    def __init__(
        self,
        store: ServerStore,
        ssh: SSHConnections,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.hosts = HostStore(store)
        self.ssh = ssh
        #: Told the id of a host that was registered, edited, trusted, inventoried or deleted.
        self.on_change = on_change

    def _changed(self, host: HostRecord) -> HostRecord:
        if self.on_change is not None:
            self.on_change(host.id)
        return host

    def _key(self, host_id: int) -> str:
        return f"host:{host_id}"

    async def create(self, body: Any) -> HostRecord:
        data = parse_object(body, "body")
        check_no_unknown(data, HOST_FIELDS, "")
        values = _parse_fields(data, creating=True)
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
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
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
            agent = await self.ssh.agent(self._key(host_id), host.endpoint())
            info = await agent.call("info", workspace="~")
        except (CloudError, OSError, asyncssh.Error) as e:
            message = getattr(e, "message", None) or str(e)
            return self.hosts.update(host_id, inventory_error=message)
        return self.hosts.update(
            host_id, inventory=info, inventory_error="", inventoried=self.hosts.store.clock()
        )

    async def refresh(self, host_id: int) -> HostRecord:
        """Take the inventory again (the user asked), and tell observers."""
        return self._changed(await self.inventory(host_id))

    async def host_agent(self, host_id: int) -> Any:
        host = self.hosts.get(host_id)
        return await self.ssh.agent(self._key(host_id), host.endpoint())

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
