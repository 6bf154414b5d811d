"""Warm kernels: a started kernel kept waiting on each running server, so choosing it is instant.

The pool (one per Jupyter server: built by ``services.build_services``, started by the
extension once its kernels were adopted) launches kernels of each running server's default
kernel spec through the agent, as a notebook's launch does (``ComputeServerProvisioner``, with
a ``warm-<hex>`` id), and holds them with their tunnel open and their readiness checked. The
provisioner's ``launch_kernel`` takes one whose spec matches (``take``), has the agent give it
the notebook kernel's id (``kernel_claim``), sets its working directory and environment, and
the pool refills in the background, a second later (``REFILL_DELAY``). A warm kernel is not
the user's: it is not in Jupyter's kernel manager, not listed among the server's kernels, and
not activity for idle shutdown.

How many: ``c.ComputeServerProvisioner.warm_kernels`` (None: 1 on a server with a GPU, 0
elsewhere). The pool reads it from the Jupyter server's configuration, as it reads the
provisioner's other options (timeouts, IOPub buffer). Only kernel specs of the Python language
are kept warm: the notebook's directory and environment are applied in the kernel in Python.

Stopping, suspending, rebooting or deleting a server discards its warm kernels (before the
connection closes), as Jupyter's shutdown does, including one whose launch is under way (the
provisioner ends a kernel whose launch was cancelled); a warm kernel that died is dropped and
replaced, never handed out. Warm kernels are never adopted by another Jupyter: one whose
Jupyter is gone is shut down by the next pool that looks at its server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_client.kernelspec import KernelSpec
from traitlets.config import Config

from ..db.database import without_password
from ..errors import ComputeServersError
from ..manager import owner_alive
from ..models import State
from .specs import DEFAULT_SPECS, build_spec

if TYPE_CHECKING:
    from ..manager import ComputeServerManager
    from ..store import ServerRecord
    from .provisioner import ComputeServerProvisioner
    from .runtime import KernelRuntime

log = logging.getLogger(__name__)

#: Warm kernels' ids on the server (a Jupyter kernel id is a UUID: never one of these).
WARM_PREFIX = "warm-"
#: Seconds between looks at the running servers' warm kernels (alive, memory, how many).
CHECK_INTERVAL = 30.0
#: States in which a server's kernels are gone.
SETTLED_OFF = frozenset(
    state.value for state in (State.OFF, State.SUSPENDED, State.DEPROVISIONED, State.ERROR)
)
#: Seconds a fill waits for a server's operation (a start settling) to end.
SETTLE_WAIT = 60.0
MIB = 1024 * 1024
#: Seconds before a server whose warm kernel failed to start is tried again.
RETRY_AFTER = 300.0
#: Seconds a refill waits after a kernel was taken: the notebook's first requests (its
#: websocket, ``kernel_info``, the first cell) go ahead of a launch's work on both machines.
REFILL_DELAY = 1.0


@dataclass
class WarmKernel:
    """A kernel started ahead on a server, ready, its tunnel open here."""

    server_id: int
    #: The kernel's name on the server (the spec's, e.g. ``python3``).
    kernel: str
    provisioner: ComputeServerProvisioner
    #: Resident memory on the server in bytes, as its agent last said (None: not known).
    rss: int | None = None

    @property
    def kernel_id(self) -> str:
        return str(self.provisioner.kernel_id)


def default_kernel(server: ServerRecord) -> tuple[str, dict[str, Any]] | None:
    """The kernel a server's notebooks start by default: ``python3`` where it has one, else
    its first Python kernel; None when it offers no Python kernel."""
    specs = server.kernel_specs or DEFAULT_SPECS
    if str((specs.get("python3") or {}).get("language", "")).lower() == "python":
        return "python3", specs["python3"]
    for name, spec in specs.items():
        if str(spec.get("language", "")).lower() == "python":
            return name, spec
    return None


class WarmKernelPool:
    """The one owner of warm kernels in this process (see the module's docstring)."""

    def __init__(self, manager: ComputeServerManager, config: Config, data_dir: str) -> None:
        self.manager = manager
        self.config = config
        self.data_dir = data_dir
        #: Set by ``start`` (the Jupyter server's runtime); None: no warm kernels here.
        self.runtime: KernelRuntime | None = None
        self._held: dict[int, list[WarmKernel]] = {}
        self._filling: dict[int, asyncio.Task[None]] = {}
        self._failed_at: dict[int, float] = {}
        self._swept: set[int] = set()
        self._watch: asyncio.Task[None] | None = None
        #: Background work of the event listener, kept referenced until done.
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- configuration ----------------------------------------------------------------------

    def _provisioner(self) -> ComputeServerProvisioner:
        from .provisioner import ComputeServerProvisioner

        # The provisioner's options as the Jupyter server's configuration sets them.
        return ComputeServerProvisioner(config=self.config)

    @functools.cached_property
    def _configured(self) -> int | None:
        # The provisioner's option as configured (fixed for the process's life): read once.
        return self._provisioner().warm_kernels

    def target(self, server: ServerRecord) -> int:
        """How many warm kernels the server keeps: ``warm_kernels``, or by the default rule."""
        configured = self._configured
        if configured is None:
            return 1 if server.config.gpu is not None else 0
        return max(0, int(configured))

    # --- what the server's JSON shows -------------------------------------------------------

    def state(self, server_id: int) -> dict[str, Any] | None:
        """``{count, memory_bytes}`` of the server's warm kernels; None when it has none."""
        held = self._held.get(server_id) or []
        if not held:
            return None
        known = [warm.rss for warm in held if warm.rss is not None]
        return {"count": len(held), "memory_bytes": sum(known) if known else None}

    def held(self, server_id: int) -> list[WarmKernel]:
        return list(self._held.get(server_id) or [])

    # --- life -------------------------------------------------------------------------------

    def start(self, runtime: KernelRuntime) -> None:
        """In the Jupyter server: keep warm kernels on running servers from now on."""
        self.runtime = runtime
        runtime.warm = self
        self.manager.events.listeners.append(self.on_event)
        self._watch = asyncio.get_running_loop().create_task(self._watch_servers())

    async def close(self) -> None:
        """Shut every warm kernel down (they are of no use to anyone else)."""
        if self.runtime is not None:
            # Nothing new from now on: the Jupyter server is stopping.
            self.runtime.warm = None
            self.runtime = None
            with contextlib.suppress(ValueError):
                self.manager.events.listeners.remove(self.on_event)
        for task in list(self._tasks):
            task.cancel()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for server_id in list({*self._held, *self._filling}):
            await self.discard(server_id)

    def on_event(self, event: dict[str, Any]) -> None:
        if self.runtime is None:
            return
        server_id = event.get("server_id")
        if not isinstance(server_id, int):
            return
        kind = event.get("kind")
        state = event.get("state")
        if kind == "deleted" or (kind == "state" and state in SETTLED_OFF):
            # Its kernels ended with it (preempted, stopped elsewhere): forget them here. (A
            # stop from here discarded them before its connection closed: before_disconnect.)
            self._spawn(self._forget(server_id))
        elif kind in ("state", "kernelspecs") and event.get("state") == "running":
            self.fill(server_id)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _watch_servers(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("Checking the warm kernels failed")
            await asyncio.sleep(CHECK_INTERVAL)

    async def check(self) -> None:
        """Fill running servers, forget the others, and drop warm kernels that died. One
        query for all servers: a server that keeps none (``target`` 0, the default without a
        GPU), holds none and was swept costs nothing more, neither a query nor a task; the
        target is worked out from the record just read, so a change of its hardware counts
        at the next check, and a start fills (and sweeps) it again (``on_event``)."""
        for server in self.manager.list_servers():
            if server.state is not State.RUNNING:
                if server.id in self._held:
                    await self._forget(server.id)
                continue
            if self._held.get(server.id):
                await self._refresh(server.id)
            elif server.id in self._swept and self.target(server) == 0:
                continue
            self.fill(server.id)

    async def _refresh(self, server_id: int) -> None:
        """Ask the server which warm kernels still run, and their memory."""
        try:
            listed = await self._kernel_list(server_id)
        except ComputeServersError as e:
            log.debug("Warm kernels of %s not checked: %s", server_id, e.message)
            return
        running = {record.get("kernel_id"): record for record in listed}
        changed = False
        for warm in self.held(server_id):
            record = running.get(warm.kernel_id)
            if record is None:
                log.info(
                    "Warm kernel %s on server %s ended; replacing it", warm.kernel_id, server_id
                )
                self._remove(warm)
                await warm.provisioner.shutdown_remote()
                changed = True
            else:
                rss = record.get("rss")
                rss = rss if isinstance(rss, int) and not isinstance(rss, bool) else None
                # Shown rounded to MB: a smaller change is not worth an event.
                if (rss is None) != (warm.rss is None) or abs((rss or 0) - (warm.rss or 0)) >= MIB:
                    changed = True
                warm.rss = rss
        if changed:
            self.manager.notify("kernels", server_id)

    async def _kernel_list(self, server_id: int) -> list[dict[str, Any]]:
        agent = await self.manager.agent_for(server_id)
        answer = await agent.call("kernel_list", runtime_dir=agent.endpoint.runtime_dir)
        return list(answer["kernels"])

    # --- filling ----------------------------------------------------------------------------

    def fill(self, server_id: int) -> None:
        """Start what the server lacks, in the background (once at a time per server)."""
        if self.runtime is None:
            return
        task = self._filling.get(server_id)
        if task is not None and not task.done():
            return
        failed = self._failed_at.get(server_id)
        loop = asyncio.get_running_loop()
        if failed is not None and loop.time() - failed < RETRY_AFTER:
            return
        task = loop.create_task(self._fill(server_id))
        self._filling[server_id] = task
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _fill(self, server_id: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETTLE_WAIT
        while True:
            try:
                server = self.manager.get_server(server_id)
            except ComputeServersError:
                return
            if server.state is not State.RUNNING:
                return
            if server.operation is None:
                break
            if loop.time() > deadline:
                return  # the watcher tries again
            await asyncio.sleep(0.5)
        chosen = default_kernel(server)
        want = self.target(server)
        if server_id not in self._swept:
            await self._sweep(server_id)
        while chosen is not None and len(self._held.get(server_id) or []) < want:
            kernel, remote = chosen
            try:
                warm = await self._launch(server, kernel, remote)
            except Exception as e:
                self._failed_at[server_id] = asyncio.get_running_loop().time()
                message = getattr(e, "message", None) or str(e)
                log.warning("No warm kernel on compute server %s: %s", server.name, message)
                return
            # Held from here on, so that a discard cancelling this fill still ends it.
            self._held.setdefault(server_id, []).append(warm)
            current = self.manager.get_server(server_id)
            if current.state is not State.RUNNING or current.operation is not None:
                await warm.provisioner.shutdown_remote()  # it is going away meanwhile
                self._remove(warm)
                return
            self._failed_at.pop(server_id, None)
            with contextlib.suppress(ComputeServersError):
                await self._refresh(server_id)  # its memory
            self.manager.notify("kernels", server_id)
            log.info(
                "Warm kernel %s (%s) ready on compute server %s",
                warm.kernel_id,
                kernel,
                server.name,
            )

    async def _launch(
        self, server: ServerRecord, kernel: str, remote: dict[str, Any]
    ) -> WarmKernel:
        assert self.runtime is not None
        provisioner = self._provisioner()
        provisioner.kernel_id = f"{WARM_PREFIX}{secrets.token_hex(12)}"
        provisioner.server_id = server.id
        provisioner.kernel = kernel
        provisioner.kernel_spec = KernelSpec(
            **build_spec(
                server, kernel, remote, self.data_dir, without_password(self.manager.store.url)
            )
        )
        provisioner.use_runtime(self.runtime)
        await provisioner.launch_warm()
        return WarmKernel(server.id, kernel, provisioner)

    async def _sweep(self, server_id: int) -> None:
        """Shut down warm kernels left on the server by a Jupyter that is gone (never adopted:
        nobody's notebook uses them)."""
        try:
            listed = await self._kernel_list(server_id)
        except ComputeServersError as e:
            log.debug("Warm kernels of %s not swept: %s", server_id, e.message)
            return
        self._swept.add(server_id)
        ours = {warm.kernel_id for warm in self._held.get(server_id) or []}
        agent = await self.manager.agent_for(server_id)
        for record in listed:
            kernel_id = record.get("kernel_id")
            if not record.get("warm") or kernel_id in ours or owner_alive(record.get("owner")):
                continue
            log.info("Shutting down warm kernel %s left on server %s", kernel_id, server_id)
            with contextlib.suppress(ComputeServersError):
                params: dict[str, Any] = {
                    "runtime_dir": agent.endpoint.runtime_dir,
                    "kernel_id": kernel_id,
                }
                await agent.call("kernel_signal", signum=int(signal.SIGKILL), **params)
                for _ in range(50):
                    if not (await agent.call("kernel_status", **params))["alive"]:
                        break
                    await asyncio.sleep(0.05)
                await agent.call("kernel_cleanup", **params)

    # --- taking and discarding --------------------------------------------------------------

    def take(self, server_id: int, kernel: str) -> WarmKernel | None:
        """A warm kernel of ``kernel`` on the server, now no longer the pool's (the caller
        claims it or shuts it down); the pool refills. None when there is none."""
        held = self._held.get(server_id) or []
        for warm in held:
            if warm.kernel == kernel:
                self._remove(warm)
                return warm
        return None

    def refill(self, server_id: int) -> None:
        """A kernel was taken: fill again in a moment (``REFILL_DELAY``)."""
        self._spawn(self._fill_after(REFILL_DELAY, server_id))
        self.manager.notify("kernels", server_id)

    async def _fill_after(self, delay: float, server_id: int) -> None:
        await asyncio.sleep(delay)
        self.fill(server_id)

    def _remove(self, warm: WarmKernel) -> None:
        held = self._held.get(warm.server_id) or []
        if warm in held:
            held.remove(warm)
        if not held:
            self._held.pop(warm.server_id, None)

    async def discard(self, server_id: int) -> None:
        """End the server's warm kernels there (it is about to stop) and here."""
        task = self._filling.pop(server_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for warm in self._held.pop(server_id, []):
            await warm.provisioner.shutdown_remote()
        self._swept.discard(server_id)

    async def _forget(self, server_id: int) -> None:
        """The server no longer runs: close what is here; nothing to ask there."""
        task = self._filling.pop(server_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        held = self._held.pop(server_id, [])
        for warm in held:
            warm.provisioner.detached = True
            await warm.provisioner.shutdown_remote()
        self._swept.discard(server_id)
        self._failed_at.pop(server_id, None)
        if held:
            self.manager.notify("kernels", server_id)

    async def before_disconnect(self, server_id: int) -> None:
        """The manager's hook before a stop, suspend, reboot or deprovision."""
        had = bool(self._held.get(server_id))
        await self.discard(server_id)
        if had:
            self.manager.notify("kernels", server_id)
