"""Idle shutdown: when a running server last showed signs of use.

A server is idle when, for its ``idle_timeout_minutes``, none of these happened:

- **kernel activity**: a remote kernel of this Jupyter server on it was busy (a long training
  loop is busy the whole time, so it is never idle), or did anything Jupyter counts as
  activity (its ``last_activity`` moved: executing, output, widgets; not kernel_info pings);
- **terminal input**: someone typed into one of its terminals;
- **GPU use**: its GPUs were at least ``idle_gpu_threshold`` percent utilized when looked at
  (in the Jupyter server ``agent_gpu_probe``: NVML on the server, through its agent; on a GPU
  shared with other servers only its own processes count, see ``gpu_use``; a probe answers
  None when it cannot tell, and then GPUs are not considered);
- a **state change** (it was started, rebooted), or this Jupyter server (re)started: idleness
  before a restart is not known, so the countdown begins again.

Kernels that this Jupyter server does not drive (left by a crash, or started by ``jupyter
execute``) cannot be watched: a server with any is not stopped for idleness while its agent
can be asked.

Times are the costs clock's: activity is recorded when it is seen (kernels are looked at on
every evaluation of the watcher), so a controllable clock drives all of it in tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..store import ServerRecord

if TYPE_CHECKING:
    from .service import ServerControl

#: Execution states in which a kernel is working (or being brought up) for its user.
BUSY_STATES = frozenset({"busy", "starting", "restarting"})


@dataclass(frozen=True)
class KernelView:
    """What the Jupyter server knows of one of its kernels."""

    kernel_id: str
    execution_state: str
    last_activity: Any

    @property
    def busy(self) -> bool:
        return self.execution_state in BUSY_STATES


class KernelSource(Protocol):
    def kernels(self, server_id: int) -> Iterable[KernelView]: ...


#: Utilization (0-100) of a server's GPUs, the busiest one; None when it cannot be told.
GpuProbe = Callable[[ServerRecord], Awaitable[float | None]]
#: How many kernels run on a server that this Jupyter server does not drive.
UnattachedKernels = Callable[[int], Awaitable[int]]


def gpu_use(gpu: dict[str, Any]) -> Any:
    """The utilization that is this server's on one GPU of its ``metrics``: on a shared GPU
    (a share through MPS) its own processes' (a neighbour's job is not its use); on a GPU of
    its own the whole GPU's (a job it started outside this product's reach is still its use);
    on a MIG instance, which has no utilization reading, its own processes': none on it is
    idle, any is unknown use."""
    own = gpu.get("own")
    whole = gpu.get("utilization")
    if gpu.get("shared") or (whole is None and isinstance(own, dict)):
        if not isinstance(own, dict):
            return None
        if own.get("processes") == 0:
            return 0.0
        return own.get("utilization")
    return whole


def agent_gpu_probe(manager: ServerControl) -> GpuProbe:
    """Utilization of a running server's GPUs as its agent reads them from NVML (``metrics``),
    the busiest one (see ``gpu_use``); None when the server can say nothing of any."""

    async def probe(server: ServerRecord) -> float | None:
        agent = await manager.agent_for(server.id)
        answer = await agent.call("metrics", timeout=20)
        readings = [gpu_use(gpu) for gpu in answer.get("gpus") or [] if isinstance(gpu, dict)]
        known = [
            float(u) for u in readings if isinstance(u, (int, float)) and not isinstance(u, bool)
        ]
        return max(known) if known else None

    return probe


class JupyterKernels:
    """The remote kernels of the Jupyter server's kernel manager, per compute server."""

    def __init__(self, kernel_manager: Any, runtime: Any) -> None:
        self.kernel_manager = kernel_manager
        self.runtime = runtime

    def kernels(self, server_id: int) -> list[KernelView]:
        views = []
        for kernel_id, provisioner in list(self.runtime.kernels.items()):
            if provisioner.server_id != server_id or kernel_id not in self.kernel_manager:
                continue
            kernel = self.kernel_manager.get_kernel(kernel_id)
            views.append(
                KernelView(
                    kernel_id,
                    str(getattr(kernel, "execution_state", "") or ""),
                    getattr(kernel, "last_activity", None),
                )
            )
        return views


@dataclass(frozen=True)
class Activity:
    at: float
    what: str


class ActivityTracker:
    """The last sign of use of each server, in the clock's time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        #: When this tracker started watching: idleness before it is not known.
        self.started = clock()
        self._last: dict[int, Activity] = {}
        #: Each server's kernels as last looked at: kernel id -> last_activity.
        self._seen: dict[int, dict[str, Any]] = {}

    def touch(self, server_id: int, what: str, at: float | None = None) -> None:
        at = self.clock() if at is None else at
        last = self._last.get(server_id)
        if last is None or at >= last.at:
            self._last[server_id] = Activity(at, what)

    def terminal_input(self, server_id: int) -> None:
        """Called for every keystroke sent to a terminal of the server."""
        self.touch(server_id, "terminal input")

    def observe_kernels(self, server_id: int, kernels: Iterable[KernelView], now: float) -> None:
        """Record what the server's kernels show now: a busy one, or one that did something
        since it was last looked at (a kernel seen for the first time counts too)."""
        seen = self._seen.get(server_id, {})
        now_seen = {}
        for kernel in kernels:
            if kernel.busy:
                self.touch(server_id, "a kernel is busy", now)
            elif seen.get(kernel.kernel_id, _NEVER) != kernel.last_activity:
                self.touch(server_id, "kernel activity", now)
            now_seen[kernel.kernel_id] = kernel.last_activity
        self._seen[server_id] = now_seen

    def last(self, server_id: int) -> Activity | None:
        return self._last.get(server_id)

    def idle_since(self, server: ServerRecord, last_change: float) -> float:
        """Since when the server has shown no sign of use (``last_change``: its last state
        change)."""
        since = max(self.started, last_change)
        last = self._last.get(server.id)
        return max(since, last.at) if last is not None else since

    def forget(self, server_id: int) -> None:
        self._last.pop(server_id, None)
        self._seen.pop(server_id, None)


_NEVER = object()
