"""SSH: the one module that opens connections to compute servers.

- One asyncssh connection per running server, shared by everything that needs the server
  (the agent, kernels, terminals, sync), opened on first use and kept alive.
- Host keys are pinned: the cloud says which key the server has, and any other key is refused.
  Nothing is ever trusted on first use.
- Client keys are generated per server and kept as 0600 files under ``keys_dir``; in team
  mode a shared host is logged in to with a short-lived certificate from the team's control
  plane instead (``certificates.py``), for the user's own Unix account there.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from .agent import AgentClient
from .certificates import CertificateClient
from .errors import CloudError
from .ssh_endpoint import SSHEndpoint

__all__ = [
    "HostKeyMismatchError",
    "KeyStore",
    "SSHConnectError",
    "SSHConnections",
    "SSHEndpoint",
    "ServerStoppedError",
    "ServerUnreachableError",
]

#: AES-GCM first: asyncssh's chacha20-poly1305 builds cipher contexts per packet and costs
#: several times more per message (benchmarks/kernels.py), which kernels' round trips feel.
PREFERRED_CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]


class SSHConnectError(CloudError):
    """A server's SSH endpoint could not be reached or refused us."""


class HostKeyMismatchError(SSHConnectError):
    """The server presented a host key other than the pinned one."""


class ServerUnreachableError(SSHConnectError):
    """A running server does not answer over SSH now: the message names the server, what
    failed, and what to do."""


class ServerStoppedError(ServerUnreachableError):
    """A call that the server's own stop (or suspend, or deprovision) broke: a 409 saying so,
    not a server that stopped answering (whose advice, stop it and start it again, would be
    wrong). A kind of ``ServerUnreachableError``, so that what handles a broken call still
    does."""

    status = 409


#: A compute server's id, or ``"host:<id>"`` for a registered host's own connection.
ConnectionKey = int | str


def fingerprint(public_key: str) -> str:
    return asyncssh.import_public_key(public_key).get_fingerprint("sha256")


def user_ssh_config() -> list[str]:
    """The user's ``~/.ssh/config``, as asyncssh's ``config=`` wants it (none if missing)."""
    path = os.path.expanduser("~/.ssh/config")
    return [path] if os.path.exists(path) else []


def quote_command(*argv: str) -> str:
    """A remote shell command from an argument vector, each argument quoted."""
    return " ".join(shlex.quote(arg) for arg in argv)


class KeyStore:
    """Per-server client keys: ``<keys_dir>/<server id>/id_ed25519`` (0600, directory 0700)."""

    def __init__(self, keys_dir: str | Path) -> None:
        self.keys_dir = Path(keys_dir)

    def private_key_path(self, server_id: int) -> Path:
        return self.keys_dir / str(server_id) / "id_ed25519"

    def ensure(self, server_id: int) -> str:
        """Create the server's key pair if needed; return its public key (OpenSSH format)."""
        path = self.private_key_path(server_id)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.keys_dir, 0o700)
            os.chmod(path.parent, 0o700)
            key = asyncssh.generate_private_key(
                "ssh-ed25519", comment=f"jupyter-compute-server-{server_id}"
            )
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.export_private_key())
            os.replace(tmp, path)
            path.with_suffix(".pub").write_bytes(key.export_public_key())
        return path.with_suffix(".pub").read_text().strip()

    def remove(self, server_id: int) -> None:
        shutil.rmtree(self.keys_dir / str(server_id), ignore_errors=True)


@dataclass
class ServerConnection:
    """The live connection to one server and the agent riding on it."""

    server_id: ConnectionKey
    endpoint: SSHEndpoint
    connection: asyncssh.SSHClientConnection
    agent: AgentClient | None = None

    @property
    def is_open(self) -> bool:
        return not self.connection.is_closed()

    async def ping(self, timeout: float) -> None:
        """One SSH round trip (a ``keepalive@openssh.com`` global request, which every server
        answers, if only with a failure): raises ``asyncio.TimeoutError`` when none comes back
        in time, ``ConnectionError`` when the connection is closed."""
        if not self.is_open:
            raise ConnectionError("the SSH connection is closed")
        request = getattr(self.connection, "_make_global_request", None)
        if request is None:  # an asyncssh without it: a session is a round trip too
            await asyncio.wait_for(self.connection.run("true", check=False), timeout)
            return
        await asyncio.wait_for(request(b"keepalive@openssh.com"), timeout)

    async def run(
        self, *argv: str, check: bool = True, timeout: float = 60
    ) -> asyncssh.SSHCompletedProcess:
        """Run one command (an argument vector, quoted for the remote shell)."""
        return await self.connection.run(quote_command(*argv), check=check, timeout=timeout)


class SSHConnections:
    """Owns every SSH connection to every server."""

    def __init__(
        self,
        keys: KeyStore,
        *,
        keepalive_interval: float = 15,
        keepalive_count_max: int = 3,
        connect_timeout: float = 5,
        retries: int = 4,
        certificates: CertificateClient | None = None,
    ) -> None:
        self.keys = keys
        #: Team mode: where endpoints with ``certificate`` get their login from.
        self.certificates = certificates
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = keepalive_count_max
        #: Seconds one attempt to reach a server may take, and (unless a caller allows more
        #: ``patience``) all attempts of one ``get`` together.
        self.connect_timeout = connect_timeout
        #: Attempts of a patient ``get`` (a server that is starting).
        self.retries = retries
        self._connections: dict[ConnectionKey, ServerConnection] = {}
        self._locks: dict[ConnectionKey, asyncio.Lock] = {}
        #: The last failed attempt per server: (when it ended, loop time; the error). Callers
        #: that waited for that attempt get its answer instead of trying again at once.
        self._failures: dict[ConnectionKey, tuple[float, SSHConnectError]] = {}

    def _lock(self, server_id: ConnectionKey) -> asyncio.Lock:
        return self._locks.setdefault(server_id, asyncio.Lock())

    async def get(
        self,
        server_id: ConnectionKey,
        endpoint: SSHEndpoint | Callable[[], Awaitable[SSHEndpoint]],
        *,
        patient: bool = False,
    ) -> ServerConnection:
        """The server's connection, opened if it is not open. Attempts (with backoff) go on
        for ``connect_timeout`` seconds in all, so a server that is down is said to be down at
        once; ``patient`` (a server that is starting) allows ``retries`` full attempts."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        async with self._lock(server_id):
            current = self._connections.get(server_id)
            if current is not None and current.is_open:
                return current
            if current is not None:
                await self._close(current)
            failure = self._failures.get(server_id)
            if failure is not None and failure[0] >= asked and not patient:
                raise failure[1]  # the attempt we waited for has just failed
            delay = 0.2
            attempts = self.retries + 1 if patient else 1_000_000
            renewed = False
            deadline = asked + self.connect_timeout
            for attempt in range(attempts):
                where = endpoint if isinstance(endpoint, SSHEndpoint) else await endpoint()
                timeout = self.connect_timeout
                if not patient:
                    timeout = max(0.2, min(timeout, deadline - loop.time()))
                try:
                    connection = await self._connect(server_id, where, timeout)
                    break
                except HostKeyMismatchError:
                    raise
                except SSHConnectError as e:
                    out_of_time = not patient and loop.time() + delay >= deadline
                    refused = isinstance(e.__cause__, asyncssh.PermissionDenied)
                    if refused and where.certificate and self.certificates is not None:
                        # A host that refused the certificate (a CA rotated, one that ran out
                        # between asking and logging in) is tried once with a new one.
                        self.certificates.drop()
                        if not renewed and attempt < attempts - 1:
                            renewed = True
                            continue
                    if attempt == attempts - 1 or out_of_time or refused:
                        self._failures[server_id] = (loop.time(), e)
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5 if patient else 1)
            self._failures.pop(server_id, None)
            self._connections[server_id] = connection
            return connection

    def known(self, server_id: ConnectionKey) -> bool:
        """Whether this process has used the server (a connection was opened, live or not)."""
        return server_id in self._connections or server_id in self._failures

    def current(self, server_id: ConnectionKey) -> ServerConnection | None:
        """The server's connection if one is open now (nothing is opened)."""
        connection = self._connections.get(server_id)
        return connection if connection is not None and connection.is_open else None

    async def agent(
        self,
        server_id: ConnectionKey,
        endpoint: SSHEndpoint | Callable[[], Awaitable[SSHEndpoint]],
        *,
        patient: bool = False,
    ) -> AgentClient:
        """The agent on the server, started on its connection when first needed (within
        ``connect_timeout``: an agent that does not say hello means the server is not
        answering)."""
        connection = await self.get(server_id, endpoint, patient=patient)
        async with self._lock(server_id):
            if connection.agent is None or not connection.agent.is_open:
                try:
                    agent = await asyncio.wait_for(
                        AgentClient.start(
                            connection.connection,
                            connection.endpoint.python,
                            connection.endpoint.launcher,
                        ),
                        self.connect_timeout * (3 if patient else 1),
                    )
                except (asyncio.TimeoutError, asyncssh.Error, OSError) as e:
                    connection.connection.abort()
                    raise SSHConnectError(
                        f"The agent on server {server_id} did not start over SSH: "
                        f"{e or f'no answer within {self.connect_timeout:g} s'}"
                    ) from None
                if connection.endpoint.environment:
                    await agent.call("set_environment", env=dict(connection.endpoint.environment))
                connection.agent = agent
            return connection.agent

    async def _connect(
        self, server_id: ConnectionKey, endpoint: SSHEndpoint, timeout: float | None = None
    ) -> ServerConnection:
        try:
            host_key = asyncssh.import_public_key(endpoint.host_key)
        except (asyncssh.KeyImportError, ValueError) as e:
            raise HostKeyMismatchError(
                f"The pinned host key of server {server_id} is unreadable: {e}"
            ) from e
        options: dict[str, Any] = {}
        if endpoint.certificate:
            if self.certificates is None:
                raise SSHConnectError(
                    f"{server_id} is a shared host, logged in to with certificates from the "
                    f"team's control plane, and none is configured "
                    f"(c.ComputeServersApp.control_plane_url)."
                )
            credentials = await self.certificates.credentials()
            # The ephemeral key and its certificate only: never the user's agent or files.
            options["client_keys"] = [(credentials.key, credentials.certificate)]
            options["agent_path"] = None
        elif endpoint.identity_file or endpoint.use_agent:
            # A host the user registered: their own key file or ssh-agent (whose keys asyncssh
            # offers when client_keys is left out; None would turn key authentication off).
            if endpoint.identity_file:
                options["client_keys"] = [endpoint.identity_file]
            if not endpoint.use_agent:
                options["agent_path"] = None
        elif isinstance(server_id, int):
            options["client_keys"] = [str(self.keys.private_key_path(server_id))]
            options["agent_path"] = None
        else:
            raise SSHConnectError(f"No credentials to log in to {server_id}.")
        options["config"] = (
            user_ssh_config() if endpoint.use_ssh_config and not endpoint.certificate else []
        )
        if endpoint.port:
            options["port"] = endpoint.port
        if endpoint.certificate:
            options["username"] = credentials.principal
        elif endpoint.username:
            options["username"] = endpoint.username
        try:
            # A connection that dies is replaced by the next get(), which checks is_open.
            connection = await asyncio.wait_for(
                asyncssh.connect(
                    endpoint.host,
                    known_hosts=([host_key], [], []),
                    keepalive_interval=self.keepalive_interval,
                    keepalive_count_max=self.keepalive_count_max,
                    encryption_algs=PREFERRED_CIPHERS,
                    # Never hand the user's ssh-agent (all their keys) to a compute server,
                    # whatever ForwardAgent in ~/.ssh/config says for a registered host.
                    agent_forwarding=False,
                    **options,
                ),
                timeout or self.connect_timeout,
            )
        except asyncssh.HostKeyNotVerifiable as e:
            raise HostKeyMismatchError(
                f"Refusing to connect to server {server_id} at {endpoint.host}:{endpoint.port}: "
                f"its host key is not the pinned one ({fingerprint(endpoint.host_key)}). "
                f"Someone may be intercepting the connection, or the machine was replaced; "
                f"deprovision and start the server to pin a new key."
            ) from e
        except asyncio.TimeoutError as e:
            raise SSHConnectError(
                f"Cannot connect to server {server_id} at {endpoint.host}:{endpoint.port} over "
                f"SSH: no answer within {self.connect_timeout:g} s"
            ) from e
        except asyncssh.PermissionDenied as e:
            if not endpoint.certificate:
                raise SSHConnectError(
                    f"Cannot connect to server {server_id} at {endpoint.host}:{endpoint.port} "
                    f"over SSH: {e or type(e).__name__}"
                ) from e
            raise SSHConnectError(
                f"{endpoint.host}:{endpoint.port} refused the team's SSH certificate for the "
                f"Unix account {options['username']!r} ({e.reason}). The host's admin must "
                f"trust the team's CA (TrustedUserCAKeys in sshd_config) and create that "
                f"account there."
            ) from e
        except (OSError, asyncssh.Error) as e:
            raise SSHConnectError(
                f"Cannot connect to server {server_id} at {endpoint.host}:{endpoint.port} over "
                f"SSH: {e or type(e).__name__}"
            ) from e
        return ServerConnection(server_id, endpoint, connection)

    async def _close(self, connection: ServerConnection) -> None:
        if connection.agent is not None:
            await connection.agent.close()
        connection.connection.close()
        try:
            # A server that stopped answering never acknowledges the close: drop it then.
            await asyncio.wait_for(connection.connection.wait_closed(), self.connect_timeout)
        except asyncio.TimeoutError:
            connection.connection.abort()

    async def close(self, server_id: ConnectionKey) -> None:
        async with self._lock(server_id):
            connection = self._connections.pop(server_id, None)
            self._failures.pop(server_id, None)
            if connection is not None:
                await self._close(connection)

    async def close_all(self) -> None:
        for server_id in list(self._connections):
            await self.close(server_id)

    def is_connected(self, server_id: ConnectionKey) -> bool:
        connection = self._connections.get(server_id)
        return connection is not None and connection.is_open
