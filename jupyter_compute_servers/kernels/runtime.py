"""Where remote kernels' SSH work runs, inside the Jupyter server or outside it.

Inside the Jupyter server, the extension installs its own manager (and so its one SSH
connection per server) as the *server runtime*: kernels, terminals and sync share it, on the
server's event loop.

Anywhere else jupyter_client is used (``jupyter console``, ``jupyter execute``, nbclient,
papermill), nobody runs an event loop between calls, yet tunnels must carry traffic all the
time. So a *standalone runtime* starts a private thread running an event loop and a manager
built from the same configuration (the same store and keys). Provisioner methods hop onto the
runtime's loop with ``run()``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import re
import signal
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..db.database import without_password
from ..errors import ComputeServersError, NotFoundError, ValidationError
from ..manager import is_unreachable, owner_alive
from ..models import State

if TYPE_CHECKING:
    from ..manager import ComputeServerManager
    from .provisioner import ComputeServerProvisioner
    from .warm import WarmKernelPool

T = TypeVar("T")

KERNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: What the API shows of the agent's record of a kernel (not its files or ports).
KERNEL_FIELDS = ("kernel_id", "kernel", "display_name", "pid", "cwd", "owner", "started")


class KernelRuntime:
    """A manager, the loop it lives on, and the remote kernels launched through it."""

    def __init__(
        self,
        manager: ComputeServerManager,
        loop: asyncio.AbstractEventLoop,
        root_dir: str,
        *,
        thread: threading.Thread | None = None,
    ) -> None:
        self.manager = manager
        self.loop = loop
        #: Notebook directories are mapped into the server's workspace relative to this.
        self.root_dir = os.path.realpath(root_dir)
        self.thread = thread
        #: Live kernels by kernel id (only touched on ``loop``).
        self.kernels: dict[str, ComputeServerProvisioner] = {}
        #: Kernels being taken over (see ``adoption.py``): the agent's record of each, with
        #: its key, by kernel id. The provisioner launching that id tunnels to it instead.
        self.adoptions: dict[str, dict[str, Any]] = {}
        #: Makes the exception a kernel action raises to jupyter_client from a message that
        #: says why (the server, what failed, what to do). The Jupyter server installs one
        #: whose errors its REST API passes on as they are (an HTTP error with the message),
        #: rather than "Unhandled error"; elsewhere it is a ``KernelStartError``.
        self.error_factory: Callable[[str], Exception] | None = None
        #: The Jupyter server's warm kernel pool (``warm.py``), set as it starts; None
        #: elsewhere (a standalone runtime keeps no kernels waiting).
        self.warm: WarmKernelPool | None = None

    def error(self, message: str) -> Exception:
        if self.error_factory is not None:
            return self.error_factory(message)
        from .provisioner import KernelStartError

        return KernelStartError(message)

    @property
    def data_dir(self) -> str:
        return str(self.manager.keys.keys_dir.parent)

    def matches(self, data_dir: str, db_url: str) -> bool:
        same_dir = not data_dir or os.path.realpath(data_dir) == os.path.realpath(self.data_dir)
        url = self.manager.store.url
        return same_dir and (not db_url or without_password(db_url) == without_password(url))

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the runtime's loop, from whichever loop the caller is on."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is self.loop:
            return await coroutine
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return await asyncio.wrap_future(future)

    def run_blocking(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the runtime's loop and wait for it (never from that loop)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def relative_cwd(self, cwd: str | None) -> str:
        """The working directory, relative to the Jupyter root ('' for the root itself or for
        anything outside it). A relative one is taken from this process's working directory,
        as a local kernel's would be (nbclient passes ``resources['metadata']['path']``)."""
        if not cwd:
            return ""
        return self.relative_path(cwd) or ""

    def relative_path(self, path: str) -> str | None:
        """A path on this machine relative to the Jupyter root ('' for the root itself), or
        None when it lies outside (links resolved first: a link out of the root is out)."""
        real = os.path.realpath(path)
        if real == self.root_dir:
            return ""
        if not real.startswith(self.root_dir + os.sep):
            return None
        return Path(os.path.relpath(real, self.root_dir)).as_posix()

    # --- the kernels running on a server, whoever started them ------------------------------

    async def list_kernels(self, server_id: int) -> list[dict[str, Any]]:
        """Kernels running on a server, each marked ``attached`` when a kernel manager of this
        process drives it (else it is an orphan: its Jupyter server is gone)."""
        server = self.manager.get_server(server_id)
        if is_unreachable(server):
            self.manager.running(server_id, "its kernels are listed once it answers again.")
        if server.state is not State.RUNNING:
            return []
        agent = await self.manager.agent_for(server_id)
        answer = await agent.call("kernel_list", runtime_dir=agent.endpoint.runtime_dir)
        kernels = []
        for record in answer["kernels"]:
            if record.get("warm"):
                continue  # the warm kernel pool's, nobody's yet (warm.py)
            kernel = {field: record.get(field) for field in KERNEL_FIELDS}
            kernel["attached"] = record.get("kernel_id") in self.kernels
            kernels.append(kernel)
        return kernels

    async def orphans(self, server_id: int) -> list[dict[str, Any]]:
        """The agent's records of kernels running on a server whose owner (the process that
        launched them) is gone, each with its connection key: what a new Jupyter adopts."""
        agent = await self.manager.agent_for(server_id)
        answer = await agent.call("kernel_list", runtime_dir=agent.endpoint.runtime_dir)
        found = []
        for record in answer["kernels"]:
            kernel_id = record.get("kernel_id")
            if (
                not isinstance(kernel_id, str)
                or not KERNEL_ID.fullmatch(kernel_id)
                or kernel_id in self.kernels
                or record.get("warm")  # never adopted: the pool shuts these down (warm.py)
                or owner_alive(record.get("owner"))
            ):
                continue
            key = await agent.call(
                "kernel_key", runtime_dir=agent.endpoint.runtime_dir, kernel_id=kernel_id
            )
            found.append({**record, "key": str(key["key"])})
        return found

    async def shutdown_kernel(self, server_id: int, kernel_id: str, kernel_manager: Any) -> None:
        """Shut a kernel down: through its kernel manager when this Jupyter drives it (so its
        sessions end too), else on the server directly (an orphan)."""
        if not isinstance(kernel_id, str) or not KERNEL_ID.fullmatch(kernel_id):
            raise ValidationError(f"Invalid kernel id {kernel_id!r}.", field="kernel_id")
        provisioner = self.kernels.get(kernel_id)
        if provisioner is not None and provisioner.server_id == server_id:
            if kernel_manager is not None and kernel_id in kernel_manager:
                await kernel_manager.shutdown_kernel(kernel_id)
            else:
                await provisioner.shutdown_remote()
            return
        server = self.manager.get_server(server_id)
        if server.state is not State.RUNNING:
            raise NotFoundError(
                f"No kernel {kernel_id} runs on {server.name!r}.", field="kernel_id"
            )
        agent = await self.manager.agent_for(server_id)

        async def call(method: str, **params: Any) -> Any:
            return await agent.call(
                method, runtime_dir=agent.endpoint.runtime_dir, kernel_id=kernel_id, **params
            )

        status = await call("kernel_status")
        if not status["known"]:
            raise NotFoundError(
                f"No kernel {kernel_id} runs on {server.name!r}.", field="kernel_id"
            )
        for signum, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if not (await call("kernel_status"))["alive"]:
                break
            await call("kernel_signal", signum=int(signum))
            deadline = asyncio.get_running_loop().time() + grace
            while (await call("kernel_status"))["alive"]:
                if asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.1)
        with contextlib.suppress(ComputeServersError):
            await call("kernel_cleanup")
        self.manager.notify("kernels", server_id)


_server_runtime: KernelRuntime | None = None
_standalone: dict[tuple[str, str], KernelRuntime] = {}
_standalone_lock = threading.Lock()


def set_server_runtime(runtime: KernelRuntime | None) -> None:
    """Called by the extension as the Jupyter server starts (and with None as it stops)."""
    global _server_runtime
    _server_runtime = runtime


def server_runtime() -> KernelRuntime | None:
    return _server_runtime


def runtime_for(data_dir: str, db_url: str) -> KernelRuntime:
    """The runtime for a kernel spec's store: the Jupyter server's own if it is that store,
    else a standalone one (started on first use, one per store, for the process's life)."""
    if _server_runtime is not None and _server_runtime.matches(data_dir, db_url):
        return _server_runtime
    key = (os.path.realpath(data_dir) if data_dir else "", db_url)
    with _standalone_lock:
        runtime = _standalone.get(key)
        if runtime is None or not runtime.loop.is_running():
            runtime = _start_standalone(data_dir, db_url)
            _standalone[key] = runtime
        return runtime


def _start_standalone(data_dir: str, db_url: str) -> KernelRuntime:
    # Imported here: the services import the provisioner's package (kernel specs), and a
    # process that only lists kernel specs never needs them.
    from ..config import load_settings
    from ..services import build_services

    overrides = {}
    if data_dir:
        overrides["data_dir"] = data_dir
    settings = load_settings(overrides)
    # The spec's URL has no password (see specs.py): the configured one, if it is the same
    # database, has it.
    if db_url and without_password(settings.db_url) != without_password(db_url):
        settings.db_url = db_url
    loop = asyncio.new_event_loop()
    ready: concurrent.futures.Future[KernelRuntime] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            # Built on its own thread: the store's SQLite connection belongs to this thread.
            services = build_services(settings)
            runtime = KernelRuntime(
                services.manager, loop, os.getcwd(), thread=threading.current_thread()
            )
        except BaseException as e:
            ready.set_exception(e)
            return
        ready.set_result(runtime)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="compute-servers-kernels", daemon=True)
    thread.start()
    runtime = ready.result(60)
    atexit.register(_close_standalone, runtime)
    return runtime


def close_standalone_runtimes() -> None:
    """Shut down every standalone runtime of this process now (tests; embedding apps)."""
    with _standalone_lock:
        runtimes = list(_standalone.values())
        _standalone.clear()
    for runtime in runtimes:
        atexit.unregister(_close_standalone)
        _close_standalone(runtime)
        if runtime.thread is not None:
            runtime.thread.join(10)


def _close_standalone(runtime: KernelRuntime) -> None:
    """At interpreter exit: shut down kernels nobody shut down, then close connections."""

    async def close() -> None:
        for provisioner in list(runtime.kernels.values()):
            with contextlib.suppress(Exception):
                await provisioner.shutdown_remote()
        await runtime.manager.ssh.close_all()
        runtime.manager.store.database.close()

    if runtime.loop.is_running():
        with contextlib.suppress(Exception):
            runtime.run_blocking(close(), timeout=20)
        runtime.loop.call_soon_threadsafe(runtime.loop.stop)
