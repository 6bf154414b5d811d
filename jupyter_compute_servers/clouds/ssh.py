"""The ``ssh`` cloud: compute servers as slices of on-prem hosts the user registered.

A server on a host is a slice of it: CPUs and RAM (bookkeeping, never oversubscribed) and GPUs
by UUID: whole GPUs and MIG instances (exclusive; the admin makes the MIG layout, never this
product), or a share of one GPU through MPS where the host's ``gpu_fractions`` allow it.
Starting allocates the slice, or waits in the host's FIFO queue (its position shown) until
``gpu_wait_minutes`` runs out. Everything started for the server on the host carries its token
and sees only its GPUs (``CUDA_VISIBLE_DEVICES`` by UUID, ``MIG-...`` for an instance); a share
also gets the GPU's MPS control daemon (started by the host's agent) and its limits
(``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``, ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT``). Stopping ends
those processes and releases the slice (and the GPU's MPS daemon once no share is left);
deprovisioning also removes its workspace (``~/jupyter-compute-servers/<server id>``).
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from traitlets import Float

from ..billing.prices import Part, Rate, StateRates
from ..errors import CloudError, NotFoundError, ValidationError
from ..hosts import HostRecord, HostRegistry
from ..images.catalog import normalize_arch
from ..models import ServerConfig, State
from .base import Cloud, CloudServices, CloudStatus, Operation, SSHEndpoint


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class SSHCloud(Cloud):
    """On-prem hosts reached over SSH, shared fairly."""

    name = "ssh"
    label = "On-prem hosts (SSH)"
    description = "Machines you already have (a lab server, a workstation), shared by slices."
    config_fields = frozenset({"image", "image_tag", "cpu", "memory_gb", "gpu", "disk_gb"})
    gpu_fractions = True

    registry: HostRegistry | None = None

    mps_watch_seconds = Float(
        30.0,
        help="Seconds between checks that the MPS control daemon of each GPU with shares "
        "running is alive (restarted when it is not); 0: never.",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # One lock per shared GPU, held from a stop's release to its ``quit`` and around each
        # ``mps_ensure``: a share starting meanwhile waits for the quit, then starts the
        # daemon again, rather than finding a daemon that is about to quit.
        self._mps_locks: dict[str, asyncio.Lock] = {}
        #: server id -> what happened to its GPU's MPS daemon while it ran (told in metrics).
        self.mps_warnings: dict[int, dict[str, str]] = {}

    def bind(self, services: CloudServices) -> None:
        self.registry = services.hosts

    def _mps_lock(self, uuid: str) -> asyncio.Lock:
        return self._mps_locks.setdefault(uuid, asyncio.Lock())

    def watch_interval(self) -> float:
        return self.mps_watch_seconds

    def arch(self, config: ServerConfig) -> str | None:
        try:
            host = self._host_of(config)
        except (ValidationError, NotFoundError):
            return None
        return normalize_arch((host.inventory or {}).get("arch"))

    @property
    def hosts(self) -> HostRegistry:
        if self.registry is None:
            raise CloudError("The ssh cloud is not bound to a host registry.")
        return self.registry

    def price(self, config: ServerConfig) -> StateRates | None:
        """Internal charge-back: the host's rate per running slice plus its rate per GPU of
        the slice's type (none set: no charge); nothing while off (the workspace is on the
        host's own disk)."""
        try:
            host = self._host_of(config)
        except (ValidationError, NotFoundError):
            return None
        source = f"host {host.name}'s charge-back rates"
        unset = "no charge-back rate is set for this host"
        parts = [
            Part(
                "slice",
                host.name,
                Decimal(str(host.hourly_rate or 0)),
                source,
                note="" if host.hourly_rate is not None else unset,
            )
        ]
        if config.gpu is not None:
            rate = host.gpu_rates.get(config.gpu.type)
            # A share is priced as that share of the GPU's rate.
            amount = (
                Decimal(str(config.gpu.fraction))
                if config.gpu.fraction is not None
                else Decimal(config.gpu.count)
            )
            parts.append(
                Part(
                    "GPU",
                    (
                        f"{config.gpu.fraction:g} of a {config.gpu.type}"
                        if config.gpu.fraction is not None
                        else f"{config.gpu.count} x {config.gpu.type}"
                    ),
                    Decimal(str(rate or 0)) * amount,
                    source,
                    note="" if rate is not None else f"no gpu_rates entry for {config.gpu.type}",
                )
            )
        off = Part("workspace", host.name, Decimal(0), source)
        return StateRates(running=Rate(tuple(parts)), off=Rate((off,)))

    # --- offerings --------------------------------------------------------------------------

    async def availability(self) -> tuple[bool, str]:
        if not any(h.trusted and h.inventory for h in self.hosts.hosts.hosts()):
            return False, "Register a host (and confirm its key) to create servers on it."
        return True, ""

    def defaults(self) -> dict[str, Any]:
        return {
            "image": "python",
            "image_tag": "system",
            "cpu": 1,
            "memory_gb": 1.0,
            "gpu": None,
            "disk_gb": 10,
        }

    def offerings(self) -> dict[str, Any]:
        hosts = []
        for host in self.hosts.hosts.hosts():
            if not (host.trusted and host.inventory):
                continue
            taken = {u for s in self.hosts.hosts.slices_on(host.id) for u in s.gpu_uuids}
            types: dict[str, dict[str, Any]] = {}
            for gpu in host.gpus():
                entry = types.setdefault(
                    gpu["name"],
                    {
                        "count": 0,
                        "free": 0,
                        "mig_profile": gpu.get("mig_profile"),
                        "fractions": [],
                    },
                )
                entry["count"] += 1
                entry["free"] += gpu["uuid"] not in taken
                entry["fractions"] = sorted({*entry["fractions"], *host.fractions_of(gpu)})
            inventory = host.inventory or {}
            hosts.append(
                {
                    "id": host.id,
                    "name": host.name,
                    "cpu": inventory.get("cpu_count"),
                    "memory_gb": round((inventory.get("memory_total") or 0) / 2**30, 1),
                    "arch": normalize_arch(inventory.get("arch")),
                    "gpus": [{"type": t, **counts} for t, counts in types.items()],
                }
            )
        return {"hosts": hosts}

    def _host_of(self, config: ServerConfig) -> HostRecord:
        host_id = config.extra.get("host")
        if not isinstance(host_id, int) or isinstance(host_id, bool):
            raise ValidationError(
                "config.extra.host must be the id of a registered host.", field="config.extra.host"
            )
        return self.hosts.hosts.get(host_id)

    def check_config(self, config: ServerConfig) -> None:
        unknown = sorted(set(config.extra) - {"host"})
        if unknown:
            raise ValidationError(
                f"config.extra.{unknown[0]} is not an option of the ssh cloud; it takes "
                f"config.extra.host.",
                field=f"config.extra.{unknown[0]}",
            )
        try:
            host = self._host_of(config)
        except NotFoundError as e:
            raise ValidationError(e.message, field="config.extra.host") from None
        if not host.trusted or not host.inventory:
            raise ValidationError(
                f"Host {host.name!r} is not ready: {host.inventory_error or 'no inventory yet'}",
                field="config.extra.host",
            )
        inventory = host.inventory
        if config.cpu is not None and config.cpu > (inventory.get("cpu_count") or 0):
            raise ValidationError(
                f"config.cpu is {config.cpu}, but {host.name} has {inventory.get('cpu_count')}.",
                field="config.cpu",
            )
        memory = (inventory.get("memory_total") or 0) / 2**30
        if config.memory_gb is not None and config.memory_gb > memory:
            raise ValidationError(
                f"config.memory_gb is {config.memory_gb}, but {host.name} has {memory:.1f} GB.",
                field="config.memory_gb",
            )
        if config.gpu is not None:
            counts: dict[str, int] = {}
            for gpu in host.gpus():
                counts[gpu["name"]] = counts.get(gpu["name"], 0) + 1
            if config.gpu.type not in counts:
                # A MIG profile the admin has not made is such a type too: the message lists
                # the instances (and whole GPUs) there are.
                have = ", ".join(counts) or "none"
                reason = inventory.get("gpu_reason") or ""
                raise ValidationError(
                    f"config.gpu.type {config.gpu.type!r} is not on {host.name} (it has {have}"
                    + (f"; {reason}" if reason and not counts else "")
                    + ").",
                    field="config.gpu.type",
                )
            if config.gpu.fraction is not None:
                self._check_fraction(host, config.gpu.type, config.gpu.fraction)
            if config.gpu.count > counts[config.gpu.type]:
                raise ValidationError(
                    f"config.gpu.count is {config.gpu.count}, but {host.name} has "
                    f"{counts[config.gpu.type]} {config.gpu.type}.",
                    field="config.gpu.count",
                )

    def _check_fraction(self, host: HostRecord, gpu_type: str, fraction: float) -> None:
        offered = sorted(
            {step for g in host.gpus() if g["name"] == gpu_type for step in host.fractions_of(g)}
        )
        if not offered:
            shared = sorted({g["name"] for g in host.gpus() if host.fractions_of(g)})
            raise ValidationError(
                f"config.gpu.fraction: {host.name}'s admin does not allow shares (MPS) of its "
                f"{gpu_type} GPUs; ask for a whole GPU (leave fraction out)"
                + (f", or a share of {', '.join(shared)}." if shared else "."),
                field="config.gpu.fraction",
            )
        if not any(abs(step - fraction) < 1e-9 for step in offered):
            raise ValidationError(
                f"config.gpu.fraction is {fraction:g}; {host.name} offers shares of its "
                f"{gpu_type} of {', '.join(f'{s:g}' for s in offered)}.",
                field="config.gpu.fraction",
            )

    # --- lifecycle --------------------------------------------------------------------------

    async def create(self, op: Operation) -> None:
        host = self._host_of(op.config)
        op.progress(f"Preparing a workspace on {host.name}", 0.1)
        agent = await self.hosts.host_agent(host.id)
        answer = await agent.call("workspace_prepare", name=str(op.server_id))
        op.remember(host_id=host.id, workspace=answer["path"])
        await self.start(op)

    async def start(self, op: Operation) -> None:
        host = self._host_of(op.config)
        if op.cloud_data.get("host_id") not in (None, host.id):
            raise CloudError("The server's workspace is on another host; deprovision it first.")
        config = op.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + host.gpu_wait_minutes * 60
        store = self.hosts.hosts
        # Team mode: the slice is the user's account's (one MPS server serves one account).
        unix_user = await self.hosts.login_user()
        try:
            while True:
                granted = store.allocate(
                    op.server_id,
                    host,
                    config.cpu or 1,
                    config.memory_gb or 1.0,
                    config.gpu,
                    unix_user=unix_user,
                )
                if not isinstance(granted, str):
                    break
                if loop.time() > deadline:
                    raise CloudError(
                        f"Nothing freed on {host.name} within {host.gpu_wait_minutes:g} minutes "
                        f"({granted}). Try again later, ask fewer GPUs, or another host."
                    )
                position = store.queue_position(op.server_id) or 1
                note = store.wait_note(op.server_id)
                op.progress(
                    f"Waiting on {host.name}: {_ordinal(position)} in line ({granted})"
                    + (f"; {note}" if note else ""),
                    None,
                )
                await asyncio.sleep(1.0)
        except BaseException:
            store.leave_queue(op.server_id)
            raise
        assert not isinstance(granted, str)
        gpus = f", GPUs {', '.join(granted.gpu_uuids)}" if granted.gpu_uuids else ""
        if granted.gpu_fraction is not None:
            gpus = f", {granted.gpu_fraction:g} of GPU {granted.gpu_uuids[0]}"
        op.progress(f"Allocated {granted.cpu} CPUs, {granted.memory_gb:g} GB{gpus}", 0.6)
        if granted.gpu_fraction is not None:
            op.progress(f"Starting the MPS control daemon of {granted.gpu_uuids[0]}", 0.7)
            try:
                agent = await self.hosts.host_agent(host.id)
                async with self._mps_lock(granted.gpu_uuids[0]):
                    mps = await agent.call("mps_ensure", uuid=granted.gpu_uuids[0])
            except BaseException:
                store.release(op.server_id)
                raise
            op.remember(mps=mps)

    async def _end_processes(self, op: Operation) -> None:
        current = self.hosts.hosts.slice_of(op.server_id)
        if current is None:
            return
        op.progress("Ending the server's processes", 0.3)
        agent = await self.hosts.host_agent(current.host_id)
        await agent.call("end_processes", token=current.token)

    async def stop(self, op: Operation) -> None:
        await self._end_processes(op)
        store = self.hosts.hosts
        current = store.slice_of(op.server_id)
        self.mps_warnings.pop(op.server_id, None)
        if current is None or current.gpu_fraction is None:
            store.release(op.server_id)
            op.remember(mps=None)
            return
        uuid = current.gpu_uuids[0]
        async with self._mps_lock(uuid):
            # The last share of the GPU gone (decided with the release, under the lock that
            # allocation takes): its MPS daemon goes too, so that the GPU serves whole
            # requests (and another user's MPS server) as a plain GPU again.
            if store.release_share(op.server_id) is not None:
                op.progress(f"Stopping the MPS control daemon of {uuid}", 0.8)
                try:
                    agent = await self.hosts.host_agent(current.host_id)
                    await agent.call("mps_stop", uuid=uuid)
                    # A share allocated by another Jupyter process while this one quit (its
                    # lock is not ours) gets its daemon back now, not at the next watch.
                    if store.shares_locked(uuid):
                        await agent.call("mps_ensure", uuid=uuid)
                except (CloudError, OSError) as e:
                    # The slice is released: a daemon left running serves nobody, and the
                    # next share of this GPU finds it (mps_ensure) rather than starting another.
                    op.progress(f"The MPS control daemon of {uuid} was not stopped: {e}", 0.9)
        op.remember(mps=None)

    async def watch_mps(self, server_id: int) -> None:
        """The watch of a running share: its GPU's MPS control daemon is alive, or is started
        again (``mps_ensure``), and every server holding a share of that GPU is told so."""
        store = self.hosts.hosts
        current = store.slice_of(server_id)
        if current is None or current.gpu_fraction is None:
            return
        uuid = current.gpu_uuids[0]
        async with self._mps_lock(uuid):
            holders = store.shares_locked(uuid)
            if not holders:
                return  # stopped meanwhile: no daemon is wanted
            agent = await self.hosts.host_agent(current.host_id)
            answer = await agent.call("mps_ensure", uuid=uuid)
        if not answer.get("started"):
            return
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        warning = (
            f"The MPS daemon of GPU {uuid} stopped and was restarted at {at}; processes "
            "started before may have lost their GPU context."
        )
        self.log.warning(
            "%s (found not running by the watch of server %d; shares held by servers %s)",
            warning,
            server_id,
            ", ".join(str(s.server_id) for s in holders),
        )
        for holder in holders:
            self.mps_warnings.setdefault(holder.server_id, {})[uuid] = warning

    def gpu_warnings(self, server_id: int) -> dict[str, str]:
        return dict(self.mps_warnings.get(server_id, {}))

    async def reboot(self, op: Operation) -> None:
        await self._end_processes(op)

    async def deprovision(self, op: Operation) -> None:
        await self.stop(op)
        host_id = op.cloud_data.get("host_id")
        if host_id is not None:
            op.progress("Removing the workspace", 0.6)
            agent = await self.hosts.host_agent(int(host_id))
            await agent.call("workspace_remove", name=str(op.server_id))
        op.remember(host_id=None, workspace=None)

    async def reconfigure(self, op: Operation, config: ServerConfig) -> None:
        if op.cloud_data.get("host_id") not in (None, config.extra.get("host")):
            raise ValidationError(
                "The server's workspace is on another host; deprovision it to move it.",
                field="config.extra.host",
            )

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        current = self.hosts.hosts.slice_of(server_id)
        if current is not None:
            if current.gpu_fraction is not None:
                # The manager's watch asks this every ``watch_interval``: the share's daemon
                # is checked with it. Failing to reach the host is not the slice's end.
                try:
                    await self.watch_mps(server_id)
                except Exception as e:
                    self.log.warning("Could not check the MPS daemon of %s: %s", server_id, e)
            return CloudStatus(State.RUNNING)
        self.hosts.hosts.leave_queue(server_id)
        if cloud_data.get("workspace"):
            return CloudStatus(State.OFF, "no slice of its host is allocated")
        return CloudStatus(State.DEPROVISIONED)

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        current = self.hosts.hosts.slice_of(server_id)
        if current is None or not cloud_data.get("workspace"):
            raise CloudError("The server is not running on its host.")
        host = self.hosts.hosts.get(current.host_id)
        environment = {
            "CUDA_VISIBLE_DEVICES": ",".join(current.gpu_uuids),
            "JUPYTER_COMPUTE_SERVER_TOKEN": current.token,
        }
        mps = cloud_data.get("mps") or {}
        if current.gpu_fraction is not None and mps:
            environment.update(mps_environment(host, current.gpu_uuids[0], current.gpu_fraction))
            environment["CUDA_MPS_PIPE_DIRECTORY"] = str(mps["pipe_directory"])
            environment["CUDA_MPS_LOG_DIRECTORY"] = str(mps["log_directory"])
        return self.hosts.endpoint(
            host,
            workspace=cloud_data["workspace"],
            runtime_dir=f"~/.jupyter-compute-servers/servers/{server_id}",
            environment=environment,
        )


def mps_environment(host: HostRecord, uuid: str, fraction: float) -> dict[str, str]:
    """The MPS client limits of a share: that share of the GPU's SMs and of its memory (the
    GPU is device 0 to the client, the only one it sees)."""
    total = next((g.get("memory_total") or 0 for g in host.gpus() if g["uuid"] == uuid), 0)
    limits = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(max(1, round(fraction * 100)))}
    if total:
        limits["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={int(total * fraction) // 2**20}M"
    return limits
