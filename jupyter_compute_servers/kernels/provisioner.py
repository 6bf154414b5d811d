"""The ``compute-server`` kernel provisioner: kernels that run on compute servers.

The kernel spec (see ``specs.py``) names the server and the kernel there. Launching:

1. the server is started if it is off (or the launch is refused, by configuration);
2. the server's agent starts the kernel detached, with ports it chose on the server's loopback
   and a connection file (0600) holding a fresh key sent over the SSH channel;
3. a ``Tunnel`` listens on 127.0.0.1 here, one port per channel, over the server's shared SSH
   connection;
4. the kernel is ready once an IOPub status for our kernel_info request came back through the
   tunnel, so a client's first execute never loses output.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncssh
import zmq
import zmq.asyncio
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from jupyter_client.session import Session
from traitlets import Bool, Float, Int, Unicode

from ..errors import ComputeServersError, ConflictError, NotFoundError
from ..images.runtime import container_for
from ..manager import is_unreachable
from ..models import Action, State
from ..ssh_endpoint import SSHEndpoint
from ..tunnel import Tunnel, route_of
from . import launch
from .iopub import IOPubResume
from .runtime import KernelRuntime, runtime_for

if TYPE_CHECKING:
    from .warm import WarmKernelPool

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
#: Channels opened ahead for a kernel's first connections (see ``Tunnel.prepare``).
SPARE_CHANNELS = {"shell": 2, "control": 2, "stdin": 1, "iopub": 1}
#: Those whose ZeroMQ greeting goes ahead (the kernel's ROUTER sockets; not IOPub, whose
#: subscription depends on the client's protocol version).
GREETED_CHANNELS = frozenset({"shell", "control", "stdin"})
#: The longest a launch waits on the server for the kernel to listen before it answers.
LISTEN_WAIT = 20.0
STARTABLE = {State.OFF: Action.START, State.DEPROVISIONED: Action.START}
RESUMABLE = {State.SUSPENDED: Action.RESUME}


class RemoteEnv(NamedTuple):
    """A kernel's environment as the agent gets it (see ``launch.py``)."""

    #: The variables the caller of start_kernel set.
    given: dict[str, str]
    #: Paths relative to the Jupyter root, made absolute in the workspace.
    paths: dict[str, str]
    #: The spec's variables, filled in from the server's environment.
    templates: dict[str, str]


class KernelStartError(RuntimeError):
    """A remote kernel could not be started; the message says why and what to do."""


class PortTakenError(KernelStartError):
    """A port chosen for the kernel was taken by another process before the kernel bound it."""


#: Launches tried with fresh ports when one was taken meanwhile.
PORT_ATTEMPTS = 3
#: Seconds a warm kernel has to answer as it is taken before a launch replaces it.
WARM_ANSWER_TIMEOUT = 10.0


class ComputeServerProvisioner(KernelProvisionerBase):
    """Runs a kernel on a compute server and tunnels its channels here over SSH."""

    server_id = Int(0, help="The compute server's id (from the kernel spec).").tag(config=True)
    kernel = Unicode("python3", help="The kernel's name on the server.").tag(config=True)
    data_dir = Unicode(
        "", help="The compute servers data directory whose store names the server."
    ).tag(config=True)
    db_url = Unicode("", help="The store's database URL (default: the one in data_dir).").tag(
        config=True
    )

    start_stopped_server = Bool(
        True,
        help=(
            "When a kernel is launched on a server that is off or suspended, start it first "
            "(the launch waits; the sidebar shows the progress). When False, such a launch is "
            "refused with a message saying to start the server."
        ),
    ).tag(config=True)

    server_start_timeout = Float(
        1800.0, help="Seconds a launch waits for its server to be running."
    ).tag(config=True)

    ready_timeout = Float(
        120.0, help="Seconds a launch waits for the kernel to answer through the tunnel."
    ).tag(config=True)

    poll_timeout = Float(
        10.0,
        help=(
            "Seconds poll() waits for the server's answer. Without one (a network blip) the "
            "kernel counts as alive as long as the server is running."
        ),
    ).tag(config=True)

    iopub_buffer_bytes = Int(
        64 * 1024 * 1024,
        help=(
            "Bytes of output (IOPub messages) the server keeps per kernel for a connection "
            "that drops, so that nothing published meanwhile is lost. When more is published "
            "while the link is down, the oldest goes first and the notebook is told how much."
        ),
    ).tag(config=True)

    iopub_buffer_messages = Int(
        100_000,
        help="IOPub messages the server keeps per kernel (see iopub_buffer_bytes).",
    ).tag(config=True)

    warm_kernels = Int(
        None,
        allow_none=True,
        help=(
            "Kernels of its default kernel spec (python3, else its first Python kernel) kept "
            "started and waiting on each running compute server, so that choosing the kernel "
            "is instant. Each costs its memory on the server (shown in the Compute Servers "
            "panel) but is not activity for idle shutdown. None: 1 on servers with a GPU, 0 "
            "elsewhere. Read by the Jupyter server's warm kernel pool (kernels/warm.py)."
        ),
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._runtime: KernelRuntime | None = None
        self._remote: dict[str, Any] | None = None
        self._tunnel: Tunnel | None = None
        #: IOPub here, fed from the kernel's relay on the server (None: tunnelled directly,
        #: for a kernel whose agent had no relay).
        self._iopub: IOPubResume | None = None
        #: The server's endpoint as last connected (its launcher routes the channels).
        self._endpoint: SSHEndpoint | None = None
        self._key = secrets.token_hex(32)
        self._launched = False
        #: Why the interrupt that began a shutdown or restart could not reach the server.
        self._unreachable: str | None = None
        #: Set when the kernel is to be left running on the server (the Jupyter server stops
        #: and was told to keep remote kernels): then nothing is sent to the server any more.
        self.detached = False

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def runtime(self) -> KernelRuntime:
        if self._runtime is None:
            self._runtime = runtime_for(self.data_dir, self.db_url)
        return self._runtime

    def use_runtime(self, runtime: KernelRuntime) -> None:
        """Run on ``runtime`` (the warm kernel pool's kernels, which have no kernel spec
        config naming a store to find it by)."""
        self._runtime = runtime

    @property
    def has_process(self) -> bool:
        return self._remote is not None

    @property
    def remote_kernel(self) -> dict[str, Any] | None:
        """The agent's record of the kernel on the server (pid, ports, files), if launched."""
        return self._remote

    @property
    def tunnel(self) -> Tunnel | None:
        return self._tunnel

    @property
    def iopub(self) -> IOPubResume | None:
        return self._iopub

    async def _agent_call(self, method: str, timeout: float = 60, **params: Any) -> Any:
        agent = await self.runtime.manager.agent_for(self.server_id)
        return await agent.call(
            method, timeout=timeout, runtime_dir=agent.endpoint.runtime_dir, **params
        )

    async def _connection(self) -> asyncssh.SSHClientConnection:
        connection = await self.runtime.manager.connection(self.server_id)
        self._endpoint = connection.endpoint
        return connection.connection

    def _route(self) -> tuple[str, ...]:
        """How channels reach the kernel's ports: through the endpoint's launcher (a Slurm
        job's node, via ``srun``) when it has one, else ``direct-tcpip`` (see Tunnel)."""
        return route_of(self._endpoint)

    def _server_name(self) -> str:
        try:
            return self.runtime.manager.get_server(self.server_id).name
        except ComputeServersError:
            return f"#{self.server_id}"

    # --- launch -----------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        # As jupyter_client's format_kernel_cmd: the spec's argv, then the caller's
        # extra_arguments (nbclient's --HistoryManager.hist_file=:memory:). The command runs on
        # the server, which fills in its connection file's path there. Kept in the kernel
        # manager's launch arguments, they come again on a restart.
        try:
            extra = launch.extra_arguments(kwargs.pop("extra_arguments", None))
        except launch.LaunchArgumentError as e:
            raise self._explained(self._refused(str(e))) from None
        kwargs["cmd"] = [*self.kernel_spec.argv, *extra]
        return kwargs

    def _refused(self, why: str) -> KernelStartError:
        """A launch refused for its arguments, before anything is asked of the server (named
        by the spec: the store may be another thread's here)."""
        name = self.kernel_spec.display_name or self.kernel
        return KernelStartError(f"Could not start the kernel {name!r}: {why}")

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        runtime = self.runtime
        # The spec's variables and those the caller set (see launch.py for the rule); this
        # machine's own environment stays here.
        try:
            env = launch.remote_env(kwargs.get("env"), self.kernel_spec.env)
            templates = launch.spec_templates(self.kernel_spec.env)
        except launch.LaunchArgumentError as e:
            raise self._explained(self._refused(str(e))) from None
        remote = RemoteEnv(env, launch.workspace_env(env, runtime.relative_path), templates)
        cwd = runtime.relative_cwd(kwargs.get("cwd"))
        adoption = runtime.adoptions.pop(self.kernel_id, None) if not self._launched else None
        # A warm kernel runs the spec's command as it is: not for a launch that adds arguments.
        plain = list(cmd) == list(self.kernel_spec.argv)
        warm = runtime.warm if adoption is None and not self._launched and plain else None
        try:
            if adoption is not None:
                info = await runtime.run(self._adopt(adoption))
            else:
                info = await runtime.run(self._start(warm, cmd, cwd, remote))
        except KernelStartError as e:
            raise self._explained(e) from None
        except ComputeServersError as e:
            raise self._explained(
                KernelStartError(
                    f"Could not start the kernel {self.kernel!r} on {self._server_name()!r}: "
                    f"{e.message}"
                )
            ) from None
        self.connection_info = info
        return info

    def _explained(self, error: KernelStartError) -> Exception:
        """The error as the runtime passes it on (an HTTP error in the Jupyter server)."""
        if self.runtime.error_factory is None:
            return error
        return self.runtime.error(str(error))

    def _failed(self, doing: str, message: str) -> KernelStartError:
        """``Could not <doing> on compute server 'box': <why>``, from an error's message
        (``doing``: "restart the kernel 'python3'")."""
        head, found, rest = message.partition(" on compute server ")
        if found and head.startswith("Could not "):
            return KernelStartError(f"Could not {doing} on compute server {rest}")
        return KernelStartError(f"Could not {doing} on {self._server_name()!r}: {message}")

    async def _check_reachable(self, doing: str) -> None:
        """Fail within the connect timeout, saying why, when the server does not answer."""
        timeout = self.runtime.manager.ssh.connect_timeout
        try:
            await self._agent_call("ping", timeout=timeout)
        except ComputeServersError as e:
            raise self._failed(doing, e.message) from None

    async def _start(
        self, warm: WarmKernelPool | None, argv: list[str], cwd: str, env: RemoteEnv
    ) -> KernelConnectionInfo:
        """A kernel for the notebook in ``cwd``: the pool's warm one moved there, else one
        launched there.

        The notebook's directory is pushed (file sync's hook) beside the launch or the claim,
        not before it: the push takes round trips of the link that the kernel's start need
        not wait for. The kernel's directory exists at once (the agent makes it), and the
        files are there before any code of the notebook runs in it, as this returns (and
        Jupyter hands the kernel to clients) only once the push ended too. What a kernel runs
        by itself as it starts (IPython's startup files) may run before the files arrive."""
        try:
            return await self._start_or_launch(warm, argv, cwd, env)
        except BaseException:
            if self._remote is None:
                # No kernel: jupyter_client never cleans up after a failed start or restart
                # (its MultiKernelManager drops such a kernel without ``cleanup``), so what a
                # restart kept for the relaunch (``cleanup(restart=True)``: the tunnel's
                # listeners, IOPub's socket and tasks) is released here, or it stays open for
                # the life of the process. A later relaunch makes them again.
                await self._release_local()
            raise

    async def _release_local(self) -> None:
        if self._tunnel is not None:
            await self._tunnel.close()
            self._tunnel = None
        await self._close_iopub()

    async def _start_or_launch(
        self, warm: WarmKernelPool | None, argv: list[str], cwd: str, env: RemoteEnv
    ) -> KernelConnectionInfo:
        server = await self._ensure_running()
        mapped = await self.runtime.manager.working_directory(self.server_id, cwd)
        # A mount: start in the mounted tree, nothing to push.
        pushed = asyncio.ensure_future(self._push(cwd)) if mapped is None else None
        place = cwd if mapped is None else mapped
        try:
            info = None
            if warm is not None:
                info = await self._take_warm(warm, place, env)
            if info is None:
                info = await self._launch(server, argv, place, env)
            if pushed is not None:
                await pushed
        finally:
            await _cancelled(pushed)
        return info

    async def _push(self, cwd: str) -> None:
        """Push the notebook's directory (file sync's hook). Its failures are the sync's to
        report (its run's record): the kernel starts anyway, as the sync's own hook does."""
        for hook in self.runtime.manager.before_kernel_launch:
            try:
                await hook(self.server_id, cwd)
            except Exception:
                self.log.warning("The push before kernel %s failed", self.kernel_id, exc_info=True)

    async def _launch(
        self, server: Any, argv: list[str], cwd: str, env: RemoteEnv
    ) -> KernelConnectionInfo:
        # A server that does not answer is said so within the connect timeout, not after the
        # launch's own timeout. The check is sent just before the launch and answered before
        # it (the agent answers in order): no round trip of its own.
        reachable = asyncio.ensure_future(
            self._check_reachable(f"start the kernel {self.kernel!r}")
        )
        try:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    return await self._launch_once(server, argv, cwd, env, reachable=reachable)
                except PortTakenError:
                    # Ports are chosen free on the server, then bound by the kernel a moment
                    # later; another process can take one in between. Other ports, then.
                    if attempt == PORT_ATTEMPTS:
                        await self._discard_failed_launch()
                        raise
                    self.log.info(
                        "A port of kernel %s was taken meanwhile; trying others", self.kernel_id
                    )
        finally:
            await _cancelled(reachable)
        raise AssertionError("unreachable")

    # --- warm kernels (kernels/warm.py) ---------------------------------------------------

    async def launch_warm(self) -> None:
        """Start this (a warm kernel of the pool) on its running server in its workspace,
        with the spec's environment only, and wait until it is ready; it stays unlisted."""
        server = self.runtime.manager.get_server(self.server_id)
        if server.state is not State.RUNNING:
            raise KernelStartError(f"Compute server {server.name!r} is {server.state.value}.")
        env = RemoteEnv({}, {}, launch.spec_templates(self.kernel_spec.env))
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                await self._launch_once(server, list(self.kernel_spec.argv), "", env, warm=True)
                return
            except PortTakenError:
                if attempt == PORT_ATTEMPTS:
                    await self._discard_failed_launch()
                    raise

    async def _take_warm(
        self, pool: WarmKernelPool, cwd: str, env: RemoteEnv
    ) -> KernelConnectionInfo | None:
        """Take a warm kernel of this spec from the pool, if it holds one that still runs and
        answers: the agent gives it this kernel's id, and it moves to the notebook's directory
        and environment. None: launch one as usual (the pool refills either way)."""
        warm = pool.take(self.server_id, self.kernel)
        if warm is None:
            return None
        held = warm.provisioner
        if held._tunnel is not None and held._tunnel.is_open:
            # The spares of its launch are gone (the kernel drops a connection whose handshake
            # does not end within 30 s): fresh ones open beside the claim, for the notebook's
            # first connections.
            held._tunnel.prepare(SPARE_CHANNELS, greet=GREETED_CHANNELS)
        try:
            endpoint = await self.runtime.manager.endpoint(self.server_id)
            # Refused by the agent when the kernel is no longer running, or did not move into
            # the notebook's directory and environment (the agent does that on the server,
            # and ends a kernel that did not answer): never handed out.
            claimed = await self._agent_call(
                "kernel_claim",
                timeout=60 + WARM_ANSWER_TIMEOUT,
                warm_id=held.kernel_id,
                kernel_id=self.kernel_id,
                workspace=endpoint.workspace,
                cwd=cwd,
                env=env.given,
                workspace_env=env.paths,
                env_templates=env.templates,
                owner=self.runtime.manager.owner,
                move_timeout=WARM_ANSWER_TIMEOUT,
            )
        except (ComputeServersError, KernelStartError) as e:
            message = getattr(e, "message", None) or str(e)
            self.log.info("Warm kernel %s not used (%s); launching one", held.kernel_id, message)
            await held.shutdown_remote()
            pool.refill(self.server_id)
            return None
        # Its tunnel and IOPub are this kernel's now (they reach the server through the warm
        # provisioner's connection getter, which names the same server).
        self._key = held._key
        self._remote = claimed["record"]
        self._tunnel, held._tunnel = held._tunnel, None
        self._iopub, held._iopub = held._iopub, None
        self._endpoint = held._endpoint
        held._remote = None
        self._launched = True
        pool.refill(self.server_id)
        self.runtime.kernels[self.kernel_id] = self
        self.runtime.manager.notify("kernels", self.server_id)
        self.log.info(
            "Kernel %s (%s) is warm kernel %s of compute server %s, pid %s there",
            self.kernel_id,
            self.kernel,
            held.kernel_id,
            self._server_name(),
            self._remote["pid"],
        )
        return self._connection_info()

    async def _launch_once(
        self,
        server: Any,
        argv: list[str],
        cwd: str,
        env: RemoteEnv,
        *,
        warm: bool = False,
        reachable: asyncio.Future[None] | None = None,
    ) -> KernelConnectionInfo:
        """Launch the kernel, tunnel to it and wait until it is ready. ``reachable``: the
        server's check (``_check_reachable``), sent just before: its failure is this one's."""
        manager = self.runtime.manager
        ready: asyncio.Future[Any] | None = None
        launched: asyncio.Future[Any] | None = None
        unreachable = False
        try:
            endpoint = await manager.endpoint(self.server_id)
            agent = await manager.agent_for(self.server_id)
            # When the kernel's ports are on the agent's own loopback (not behind a launcher),
            # the agent answers the launch once the kernel listens, so that the tunnel's
            # channels open while the kernel finishes starting, and checks its readiness there
            # (``kernel_ready``, sent in the same write: no round trip of its own), so that no
            # readiness check crosses the link (a ZeroMQ handshake and kernel_info each way).
            on_loopback = not route_of(endpoint)
            wait = min(self.ready_timeout, LISTEN_WAIT) if on_loopback else 0.0
            runtime_dir = agent.endpoint.runtime_dir
            launched = asyncio.ensure_future(
                agent.call(
                    "kernel_launch",
                    timeout=60 + wait,
                    runtime_dir=runtime_dir,
                    wait_listening=wait,
                    kernel_id=self.kernel_id,
                    argv=argv,
                    key=self._key,
                    workspace=endpoint.workspace,
                    cwd=cwd,
                    env=env.given,
                    workspace_env=env.paths,
                    env_templates=env.templates,
                    kernel=self.kernel,
                    display_name=self.kernel_spec.display_name,
                    owner=manager.owner,
                    container=container_for(manager, server),
                    iopub_buffer_bytes=self.iopub_buffer_bytes,
                    iopub_buffer_messages=self.iopub_buffer_messages,
                    warm=warm,
                )
            )
            if on_loopback:
                # Tasks start in the order they were made: this request follows the launch.
                ready = asyncio.ensure_future(
                    agent.call(
                        "kernel_ready",
                        timeout=self.ready_timeout + 30,
                        runtime_dir=runtime_dir,
                        kernel_id=self.kernel_id,
                        ready_timeout=self.ready_timeout,
                    )
                )
            if reachable is not None:
                try:
                    await reachable
                except KernelStartError:
                    unreachable = True
                    raise
            record = await launched
        except ComputeServersError as e:
            await _cancelled(ready)
            if reachable is not None:
                # When the server does not answer (no connection, or no answer to the
                # launch), the check's error, which says what to do, is the one to give.
                await reachable
            raise KernelStartError(
                f"Could not start the kernel {self.kernel!r} on {server.name!r}: {e.message}"
            ) from None
        except BaseException:
            await _cancelled(ready)
            if unreachable:
                # The launch went out: the kernel it starts is ended once the server answers
                # again, in the background, so that the answer says now that it does not.
                await _cancelled(launched)
                _in_background(self._end_unanswered_launch())
            elif launched is not None:
                # Cancelled (the server stopping, Jupyter shutting down) with the launch asked
                # for: the agent starts the kernel all the same, and nobody here would own it.
                # The agent reads calls in order and records the kernel before it answers, so
                # it is ended by its id now.
                await self._discard_failed_launch()
            raise
        self._remote = record
        self._launched = True
        remote_ports = self._tunnelled_ports(record)
        try:
            if self._tunnel is None or not self._tunnel.is_open:
                self._tunnel = Tunnel(self._connection, route=self._route)
                await self._tunnel.open(remote_ports)
            else:  # a restart: the same local ports, now leading to the new kernel
                self._tunnel.retarget(remote_ports)
            # The kernel listens now: its channels open at once, while it finishes starting:
            # the kernel manager's own control, and its client's shell, control, stdin (and
            # IOPub when not relayed); the readiness check's shell where it runs here. None
            # for heartbeat, which Jupyter's clients do not use.
            self._tunnel.prepare(SPARE_CHANNELS, greet=GREETED_CHANNELS)
            if record.get("relay"):
                if self._iopub is None:
                    self._iopub = self._new_iopub()
                    self._iopub.bind()
                    self._iopub.start(record["relay"], 0)
                else:
                    self._iopub.retarget(record["relay"])
            info = self._connection_info()
            if ready is not None:
                self._raise_unless_ready(await ready, server.name)
            else:
                await self._wait_until_ready(info, server.name)
        except PortTakenError:
            with contextlib.suppress(ComputeServersError):
                await self._agent_call("kernel_cleanup", kernel_id=self.kernel_id)
            self._remote = None
            raise
        except ComputeServersError as e:
            await self._discard_failed_launch()
            raise KernelStartError(
                f"Could not start the kernel {self.kernel!r} on {server.name!r}: {e.message}"
            ) from None
        except BaseException:
            await _cancelled(ready)
            await self._discard_failed_launch()
            raise
        if warm:
            return info  # the pool's, not the user's: neither listed nor announced
        self.runtime.kernels[self.kernel_id] = self
        manager.notify("kernels", self.server_id)
        self.log.info(
            "Kernel %s (%s) started on compute server %s, pid %s there",
            self.kernel_id,
            self.kernel,
            server.name,
            record["pid"],
        )
        return info

    def _raise_unless_ready(self, answer: Any, server_name: str) -> None:
        """The agent's ``kernel_ready`` answer: nothing when the kernel is ready, else the
        error that says why not (its output when it exited)."""
        if isinstance(answer, dict) and answer.get("ready") is True:
            return
        answer = answer if isinstance(answer, dict) else {}
        code = answer.get("exit_code")
        if code is None:
            raise KernelStartError(
                f"The kernel {self.kernel!r} on {server_name!r} did not answer within "
                f"{self.ready_timeout:.0f} s."
            )
        log = str(answer.get("log") or "")
        if "Address already in use" in log:
            raise PortTakenError(log.strip()[-300:])
        raise KernelStartError(
            f"The kernel {self.kernel!r} exited on {server_name!r} before it was ready (exit "
            f"code {code}). Its output:\n{log.strip()[-2000:] or '(none)'}"
        )

    def _connection_info(self) -> KernelConnectionInfo:
        """How clients here reach the kernel: the tunnel's and IOPub's local ports."""
        info: KernelConnectionInfo = {
            "transport": "tcp",
            "ip": "127.0.0.1",
            # bytes, as KernelManager.get_connection_info() gives it, or they never match
            "key": self._key.encode(),  # type: ignore[typeddict-item]
            "signature_scheme": "hmac-sha256",
        }
        for name, port in self._local_ports().items():
            info[f"{name}_port"] = port  # type: ignore[literal-required]
        return info

    async def _adopt(self, record: dict[str, Any]) -> KernelConnectionInfo:
        """Take over a kernel a Jupyter that is gone had launched (``adoption.py``): tunnel
        to it, and hold its output for the first client, resuming after the last message the
        dead Jupyter acknowledged."""
        self._key = record["key"]
        self._remote = {k: v for k, v in record.items() if k != "key"}
        self._launched = True
        self._tunnel = Tunnel(self._connection, route=self._route)
        try:
            await self._tunnel.open(self._tunnelled_ports(self._remote))
            if self._remote.get("relay"):
                self._iopub = self._new_iopub()
                self._iopub.bind()
                self._iopub.start(self._remote["relay"], -2, hold=True)
        except BaseException:
            await self._tunnel.close()
            self._tunnel = None
            self._remote = None
            await self._close_iopub()
            raise
        self.runtime.kernels[self.kernel_id] = self
        self.runtime.manager.notify("kernels", self.server_id)
        self.log.info(
            "Kernel %s (%s) on compute server %s adopted: its Jupyter had gone",
            self.kernel_id,
            self.kernel,
            self._server_name(),
        )
        return self._connection_info()

    def _tunnelled_ports(self, record: dict[str, Any]) -> dict[str, int]:
        """The kernel's ports that the tunnel carries: all but IOPub when it has a relay."""
        relayed = {"iopub"} if record.get("relay") else set()
        return {
            name: int(record["ports"][f"{name}_port"]) for name in CHANNELS if name not in relayed
        }

    def _local_ports(self) -> dict[str, int]:
        ports = dict(self._tunnel.local_ports) if self._tunnel is not None else {}
        if self._iopub is not None:
            ports["iopub"] = self._iopub.port
        return ports

    def _new_iopub(self) -> IOPubResume:
        return IOPubResume(
            self._connection,
            self._key.encode(),
            server_name=self._server_name(),
            route=self._route,
        )

    async def _close_iopub(self) -> None:
        if self._iopub is not None:
            await self._iopub.close()
            self._iopub = None

    async def _end_unanswered_launch(self) -> None:
        """End the kernel a launch the server did not answer may have started. Only a signal,
        asked for at once: the agent answers in order, so it comes before any later launch
        under this id (a restart), and nothing here is touched (that restart's tunnel may be
        in use by then). The dead kernel's record goes with the next listing or launch; its
        relay ends with it."""
        try:
            await self._agent_call(
                "kernel_signal", kernel_id=self.kernel_id, signum=signal.SIGKILL, timeout=60
            )
        except ComputeServersError as e:
            self.log.warning("Could not end kernel %s on its server: %s", self.kernel_id, e)

    async def _discard_failed_launch(self) -> None:
        try:
            await self._agent_call(
                "kernel_signal", kernel_id=self.kernel_id, signum=signal.SIGKILL, timeout=10
            )
            # Until it has ended: the clean-up (which also ends its IOPub relay) refuses a
            # kernel that still runs.
            for _ in range(50):
                if not (await self._agent_call("kernel_status", kernel_id=self.kernel_id))["alive"]:
                    break
                await asyncio.sleep(0.05)
            await self._agent_call("kernel_cleanup", kernel_id=self.kernel_id)
        except Exception as e:
            self.log.warning("Could not clean up a kernel that failed to start: %s", e)
        self._remote = None
        await self._release_local()

    async def _ensure_running(self) -> Any:
        """The server, running: started or resumed first when it is off (if allowed)."""
        manager = self.runtime.manager
        try:
            server = manager.get_server(self.server_id)
        except NotFoundError:
            raise KernelStartError(
                f"Compute server #{self.server_id} no longer exists; this kernel spec is stale "
                f"and will disappear from the list."
            ) from None
        if server.state is State.RUNNING:
            return server
        action = STARTABLE.get(server.state) or RESUMABLE.get(server.state)
        if action is not None:
            if not self.start_stopped_server or self._launched:
                # A relaunch (the restarter after the server went down) must not bring back a
                # server the user stopped.
                raise KernelStartError(
                    f"Compute server {server.name!r} is {server.state.value}. Start it from the "
                    f"Compute Servers panel (or: jupyter compute-servers start {server.name}), "
                    f"then start the kernel again."
                )
            self.log.info("Starting compute server %s for a kernel", server.name)
            # A conflict means someone else started it a moment ago: wait for them.
            with contextlib.suppress(ConflictError):
                manager.request_action(self.server_id, action.value)
        elif server.state is not State.STARTING:
            reason = f" ({server.state_reason})" if server.state_reason else ""
            raise KernelStartError(
                f"Compute server {server.name!r} is {server.state.value}{reason}, so it cannot "
                f"run kernels now."
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.server_start_timeout
        while True:
            server = manager.get_server(self.server_id)
            if server.state is State.RUNNING and server.operation is None:
                return server
            if server.state is not State.STARTING and server.operation is None:
                raise KernelStartError(
                    f"Compute server {server.name!r} did not start: {server.state.value}"
                    + (f" ({server.state_reason})" if server.state_reason else "")
                )
            if loop.time() > deadline:
                raise KernelStartError(
                    f"Compute server {server.name!r} was not running after "
                    f"{self.server_start_timeout:.0f} s."
                )
            await asyncio.sleep(0.2)

    async def _wait_until_ready(self, info: KernelConnectionInfo, server_name: str) -> None:
        """Ask kernel_info until an IOPub status for one of our requests arrives: then the
        tunnel carries IOPub, and no client output can be lost to a late subscription."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        session = Session(key=info["key"], signature_scheme="hmac-sha256", username="ready")
        context = zmq.asyncio.Context()
        shell = context.socket(zmq.DEALER)
        iopub = context.socket(zmq.SUB)
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        for sock in (shell, iopub):
            sock.linger = 0
        shell.connect(f"tcp://127.0.0.1:{info['shell_port']}")
        iopub.connect(f"tcp://127.0.0.1:{info['iopub_port']}")
        poller = zmq.asyncio.Poller()
        poller.register(iopub, zmq.POLLIN)
        asked: set[str] = set()
        started = loop.time()
        next_check = started + 1.0
        try:
            while True:
                request = session.msg("kernel_info_request")
                asked.add(request["header"]["msg_id"])
                session.send(shell, request)
                # Ask again often (a kernel coming up just after a long wait would idle), but
                # less so for a slow starter, which answers every queued request at once.
                if await poller.poll(50 if loop.time() < started + 2 else 250):
                    frames = await iopub.recv_multipart()
                    _, parts = session.feed_identities(frames)
                    message = session.deserialize(parts, content=False)
                    if (
                        message["msg_type"] == "status"
                        and message["parent_header"].get("msg_id") in asked
                    ):
                        return
                if loop.time() < next_check:
                    continue
                next_check = loop.time() + 1.0
                status = await self._agent_call("kernel_status", kernel_id=self.kernel_id)
                if not status["alive"]:
                    log = (await self._agent_call("kernel_log", kernel_id=self.kernel_id))["log"]
                    if "Address already in use" in log:
                        raise PortTakenError(log.strip()[-300:])
                    raise KernelStartError(
                        f"The kernel {self.kernel!r} exited on {server_name!r} before it was "
                        f"ready (exit code {status['exit_code']}). Its output:\n"
                        f"{log.strip()[-2000:] or '(none)'}"
                    )
                if loop.time() > deadline:
                    raise KernelStartError(
                        f"The kernel {self.kernel!r} on {server_name!r} did not answer within "
                        f"{self.ready_timeout:.0f} s."
                    )
        finally:
            context.destroy(linger=0)

    # --- the process ----------------------------------------------------------------------

    async def poll(self) -> int | None:
        if self._remote is None or self.detached:
            return 0  # detached: left running on its server, no longer ours to watch
        return await self.runtime.run(self._poll())

    async def _poll(self) -> int | None:
        try:
            status = await asyncio.wait_for(
                self._agent_call("kernel_status", kernel_id=self.kernel_id), self.poll_timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # No answer. Dead only if the server itself is gone or no longer running: a
            # network blip must not get a healthy kernel restarted.
            try:
                server = self.runtime.manager.get_server(self.server_id)
            except NotFoundError:
                return -1
            if server.state is State.RUNNING or is_unreachable(server):
                # A server that stopped answering may come back with its kernels: they are
                # not dead, but the kernel's model says why it does not answer.
                self.log.debug("No answer about kernel %s (%s); assuming alive", self.kernel_id, e)
                self._set_reason(server.state_reason if is_unreachable(server) else "")
                return None
            self._set_reason(
                f"Compute server {server.name!r} is {server.state.value}: {server.state_reason}"
            )
            return -1
        self._set_reason("")
        if status["alive"]:
            return None
        code = status.get("exit_code")
        return code if isinstance(code, int) else -1

    def _set_reason(self, reason: str) -> None:
        """Shown as the kernel's ``reason`` by Jupyter's kernels API."""
        parent: Any = self.parent
        if parent is not None and getattr(parent, "reason", None) != reason:
            with contextlib.suppress(Exception):
                parent.reason = reason

    async def wait(self) -> int | None:
        while True:
            code = await self.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.1)

    async def send_signal(self, signum: int) -> None:
        if self._remote is None or self.detached:
            return
        if signum == 0:
            await self.poll()
            return
        try:
            await self.runtime.run(self._signal(int(signum)))
        except (ComputeServersError, OSError, asyncssh.Error) as e:
            message = getattr(e, "message", None) or str(e)
            if signum == signal.SIGINT:
                if getattr(self.parent, "shutting_down", False):
                    # The interrupt that begins a shutdown or restart: a restart says why it
                    # cannot happen (shutdown_requested), a shutdown goes on here.
                    self._unreachable = message
                    return
                # An interrupt the user asked for: say that it did not happen, and why.
                raise self._explained(self._failed("interrupt the kernel", message)) from None
            # Unreachable right now: poll() tells whether the kernel is still there.
            self.log.warning(
                "Could not signal kernel %s on its server: %s", self.kernel_id, message
            )

    async def shutdown_requested(self, restart: bool = False) -> None:
        """A restart on a server that does not answer fails now, saying why (the kernel there
        is untouched and keeps running), instead of after every shutdown timeout."""
        await super().shutdown_requested(restart=restart)
        unreachable, self._unreachable = self._unreachable, None
        if restart and self._remote is not None and not self.detached:
            doing = f"restart the kernel {self.kernel!r}"
            try:
                if unreachable is not None:
                    raise self._failed(doing, unreachable)
                await self.runtime.run(self._check_reachable(doing))
            except KernelStartError as e:
                self._restart_abandoned()
                raise self._explained(e) from None

    def _restart_abandoned(self) -> None:
        """The kernel manager queued a shutdown request on the control channel before asking
        us: drop it unsent (else the kernel would get it when the server answers again and
        end, state and all), and let the manager watch the kernel again as before."""
        parent: Any = self.parent
        if parent is None:
            return
        control = getattr(parent, "_control_socket", None)
        if control is not None:
            control.close(linger=0)
            parent._control_socket = None
        if getattr(parent, "shutting_down", False):
            parent.shutting_down = False
            start_restarter = getattr(parent, "start_restarter", None)
            if start_restarter is not None:
                start_restarter()
        # The manager records the error this raises as the kernel's state (its ``ready``
        # future), and its MultiKernelManager drops a kernel in that state at shutdown without
        # shutting it down: it would run on, on its server, and its tunnel and IOPub here,
        # for good. The kernel runs on untouched, so it is ready again once that is recorded
        # (the error propagates without a pause: the callback comes after).
        asyncio.get_running_loop().call_soon(_ready_again, parent)

    async def _signal(self, signum: int) -> None:
        try:
            server = self.runtime.manager.get_server(self.server_id)
        except NotFoundError:
            return
        if server.state is not State.RUNNING:
            return  # its kernels ended with it
        await self._agent_call("kernel_signal", kernel_id=self.kernel_id, signum=signum)

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)

    async def cleanup(self, restart: bool = False) -> None:
        await self.runtime.run(self._cleanup(restart))

    async def _cleanup(self, restart: bool) -> None:
        if self._remote is not None and not self.detached:
            try:
                await self._agent_call("kernel_cleanup", kernel_id=self.kernel_id)
            except ComputeServersError as e:
                self.log.debug("Kernel %s: remote clean-up skipped: %s", self.kernel_id, e)
        self._remote = None
        if not restart:
            await self._release_local()
            if self.runtime.kernels.get(self.kernel_id) is self:
                del self.runtime.kernels[self.kernel_id]
            if not self.detached:  # detached happens as Jupyter stops: nobody is listening
                self.runtime.manager.notify("kernels", self.server_id)

    async def shutdown_remote(self) -> None:
        """End the kernel on its server now and release everything here (no message to the
        kernel first: used at exit, when nobody waits)."""
        if self._remote is not None and not self.detached:
            try:
                await self._agent_call(
                    "kernel_signal", kernel_id=self.kernel_id, signum=signal.SIGKILL, timeout=10
                )
                for _ in range(50):
                    status = await self._agent_call("kernel_status", kernel_id=self.kernel_id)
                    if not status["alive"]:
                        break
                    await asyncio.sleep(0.05)
            except ComputeServersError as e:
                self.log.warning("Could not end kernel %s on its server: %s", self.kernel_id, e)
        await self._cleanup(restart=False)

    # --- across restarts of this process ----------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(
            server_id=self.server_id,
            kernel=self.kernel,
            data_dir=self.data_dir,
            db_url=self.db_url,
            remote=self._remote,
            local_ports=self._local_ports(),
            # Where IOPub resumes when another process takes the kernel over.
            iopub_seq=self._iopub.next_seq if self._iopub is not None else -1,
        )
        if isinstance(info.get("connection_info", {}).get("key"), bytes):
            info["connection_info"] = {
                **info["connection_info"],
                "key": info["connection_info"]["key"].decode(),
            }
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """Take over a kernel another process launched: tunnel to it again, on the same local
        ports when they are free (so its connection file stays right)."""
        await super().load_provisioner_info(provisioner_info)
        self.server_id = int(provisioner_info["server_id"])
        self.kernel = provisioner_info.get("kernel", self.kernel)
        self.data_dir = provisioner_info.get("data_dir", "")
        self.db_url = provisioner_info.get("db_url", "")
        key = self.connection_info.get("key", b"")
        self._key = key.decode() if isinstance(key, bytes) else str(key)
        self._remote = provisioner_info.get("remote")
        self._launched = True
        if self._remote is not None:
            await self.runtime.run(
                self._reattach(
                    provisioner_info.get("local_ports") or {},
                    int(provisioner_info.get("iopub_seq", -1)),
                )
            )

    async def _reattach(self, local_ports: dict[str, int], iopub_seq: int = -1) -> None:
        assert self._remote is not None
        remote_ports = self._tunnelled_ports(self._remote)
        self._tunnel = Tunnel(self._connection, route=self._route)
        try:
            await self._tunnel.open(remote_ports, local_ports)
        except OSError:
            self._tunnel = Tunnel(self._connection, route=self._route)
            await self._tunnel.open(remote_ports)
        if self._remote.get("relay"):
            self._iopub = self._new_iopub()
            self._iopub.bind(local_ports.get("iopub", 0))
            self._iopub.start(self._remote["relay"], iopub_seq)
        for name, port in self._local_ports().items():
            self.connection_info[f"{name}_port"] = port  # type: ignore[literal-required]
        self.runtime.kernels[self.kernel_id] = self


#: Tasks nobody awaits (a discard after the server stopped answering), held until they end.
_BACKGROUND: set[asyncio.Future[None]] = set()


def _in_background(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _ready_again(kernel_manager: Any) -> None:
    """Mark a kernel manager's kernel ready again after an error it recorded (see
    ``_restart_abandoned``)."""
    ready = getattr(kernel_manager, "_ready", None)
    if ready is None or not ready.done() or ready.cancelled() or ready.exception() is None:
        return
    fresh: Any
    if isinstance(ready, concurrent.futures.Future):
        fresh = concurrent.futures.Future()
    else:
        fresh = asyncio.get_running_loop().create_future()
    fresh.set_result(None)
    kernel_manager._ready = fresh


async def _cancelled(task: asyncio.Future[Any] | None) -> None:
    """Cancel an agent call still in flight and wait until it is (its answer is not wanted)."""
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        with contextlib.suppress(BaseException):
            await task
