"""Port tunnels to a server's loopback, carried by its one shared SSH connection.

A ``Tunnel`` listens on 127.0.0.1 here, one port per name (a kernel's five channels), and
carries each connection accepted there as a ``direct-tcpip`` channel of the server's SSH
connection to a port on the server's loopback. No process per port, and no new login.

The local ports stay the same for the tunnel's life, whatever happens to the SSH connection:
each accepted connection asks for the connection afresh, so after a drop the next one (ZeroMQ
reconnects by itself) rides the replacement. ``retarget()`` points the same local ports at new
remote ports, which is how a restarted kernel keeps its clients. A listener may also be a Unix
socket (``open_unix``), for what has no authentication of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncssh

from .ssh_endpoint import SSHEndpoint

#: Returns the server's live SSH connection, opening it again if it dropped.
ConnectionGetter = Callable[[], Awaitable[asyncssh.SSHClientConnection]]
#: Returns how channels reach the server's loopback now: () for ``direct-tcpip`` channels of
#: the connection; else the argument vector of a Python behind a launcher (Slurm's ``srun
#: --jobid=<job> --overlap ... python3``) that runs ``PORT_RELAY`` in a session of the
#: connection, so that a port on a compute node's loopback is reached through the login node
#: with no port opened on the cluster's network (nor TCP forwarding allowed there).
RouteGetter = Callable[[], tuple[str, ...]]

#: Joins its standard input and output to 127.0.0.1:<argv[1]> (standard library only).
PORT_RELAY = """
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    while data:
        data = data[os.write(1, data):]
"""


async def open_stream(
    connection: asyncssh.SSHClientConnection,
    route: tuple[str, ...],
    port: int,
    remote_host: str = "127.0.0.1",
) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
    """A byte stream to ``port`` on the server's loopback: a ``direct-tcpip`` channel, or a
    session running ``PORT_RELAY`` behind ``route`` (see ``RouteGetter``)."""
    if route:
        writer, reader, _ = await connection.open_session(relay_command(route, port), encoding=None)
        return reader, writer
    return await connection.open_connection(remote_host, port)


#: A channel to a port on the server's loopback (see ``PortSession``).
PortChannel = asyncssh.SSHTCPChannel[bytes] | asyncssh.SSHClientChannel[bytes]


class PortSession(asyncssh.SSHTCPSession[bytes], asyncssh.SSHClientSession[bytes]):  # type: ignore[misc]
    """The callbacks of a channel to a port on the server's loopback, whichever way it goes
    (``open_port_channel``): a ``direct-tcpip`` channel's, or those of a session running
    ``PORT_RELAY`` behind a route, which are the same (its standard error comes as data of
    another type)."""


async def open_port_channel(
    connection: asyncssh.SSHClientConnection,
    route: tuple[str, ...],
    port: int,
    session: PortSession,
    remote_host: str = "127.0.0.1",
    *,
    window: int | None = None,
    max_pktsize: int | None = None,
) -> None:
    """Open a channel to ``port`` on the server's loopback for ``session``, which gets its
    bytes in its callbacks: a ``direct-tcpip`` channel, or a session running ``PORT_RELAY``
    behind ``route`` (see ``RouteGetter``). ``window`` and ``max_pktsize`` (asyncssh's
    defaults if not given): how many bytes the server may send ahead of what this side read,
    and the most per packet."""
    sizes: dict[str, Any] = {}
    if window is not None:
        sizes["window"] = window
    if max_pktsize is not None:
        sizes["max_pktsize"] = max_pktsize
    if route:
        await connection.create_session(
            lambda: session, relay_command(route, port), encoding=None, **sizes
        )
    else:
        await connection.create_connection(lambda: session, remote_host, port, **sizes)


def route_of(endpoint: SSHEndpoint | None) -> tuple[str, ...]:
    """How channels reach a server's loopback (see ``RouteGetter``): through its launcher and
    Python when it has a launcher, else ``direct-tcpip`` (an empty route)."""
    if endpoint is None or not endpoint.launcher:
        return ()
    return (*endpoint.launcher, endpoint.python)


def relay_command(route: tuple[str, ...], port: int) -> str:
    """The remote command that joins a session to ``port`` on the loopback where ``route``
    runs (every argument quoted)."""
    return " ".join(shlex.quote(arg) for arg in (*route, "-u", "-c", PORT_RELAY, str(port)))


log = logging.getLogger(__name__)

#: A ZeroMQ peer's greeting (ZMTP 3.1, NULL security, not as server): what libzmq sends first
#: on every connection, whatever its socket type (RFC 23; the signature's padding is ignored).
ZMTP_GREETING = (
    b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
)


#: The far end's READY (RFC 23: a command frame) as a ROUTER that has no routing id (a kernel's
#: shell, control and stdin) sends it, given to a client here at once for a greeted spare.
ROUTER_READY = (
    b"\x04\x29\x05READY"
    + b"\x0bSocket-Type"
    + (6).to_bytes(4, "big")
    + b"ROUTER"
    + b"\x08Identity"
    + (0).to_bytes(4, "big")
)


class _HandshakeFilter:
    """Drops the far end's greeting and first command (its READY) from what a greeted spare
    receives: the client here was given both at once (``ZMTP_GREETING``, ``ROUTER_READY``)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        self.buffer += data
        buffer = self.buffer
        at = len(ZMTP_GREETING)
        if len(buffer) < at + 2:
            return b""
        if buffer[at] & 0x02:  # a long frame (not a READY seen in practice, but allowed)
            if len(buffer) < at + 9:
                return b""
            end = at + 9 + int.from_bytes(buffer[at + 1 : at + 9], "big")
        else:
            end = at + 2 + buffer[at + 1]
        if len(buffer) < end:
            return b""
        self.done = True
        self.buffer = b""
        return buffer[end:]


def _is_zmtp3_null_greeting(data: bytes) -> bool:
    """Whether 64 bytes are a ZMTP 3.x greeting with NULL security, not as server."""
    return (
        len(data) == len(ZMTP_GREETING)
        and data[0] == 0xFF
        and data[9] & 1 == 1
        and data[10] == 3
        and data[12:33] == ZMTP_GREETING[12:33]
    )


class _GreetedChannel:
    """A spare's channel whose ZeroMQ greeting went ahead (``Tunnel.prepare``): it swallows
    the local client's own greeting (the same, byte for byte where it matters), then gives the
    channel back to its side, so that the rest of the connection writes to it directly."""

    def __init__(self, side: _ChannelSide, channel: asyncssh.SSHTCPChannel[bytes]) -> None:
        self.side = side
        self.channel = channel
        self.seen = b""

    def write(self, data: bytes) -> None:
        need = len(ZMTP_GREETING) - len(self.seen)
        self.seen += data[:need]
        if len(self.seen) < len(ZMTP_GREETING):
            return
        if not _is_zmtp3_null_greeting(self.seen):
            # Not what went ahead: the connection cannot go on (ZeroMQ connects again).
            log.debug("Tunnel: a client's greeting was not ZMTP 3 NULL: %r", self.seen[:16])
            self.channel.close()
            return
        self.side.channel = self.channel
        if data[need:]:
            self.channel.write(data[need:])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.channel, name)


class _ChannelSide(PortSession):
    """The SSH channel's end of one forwarded connection."""

    def __init__(self, local: _LocalSide | None) -> None:
        #: None while a spare (``Tunnel.prepare``): what arrives waits in ``early``.
        self.local = local
        self.channel: PortChannel | None = None
        self.early: list[bytes] = []
        self.ended = False
        #: A greeted spare's: the far end's handshake, which its client got from here.
        self.handshake: _HandshakeFilter | None = None

    def connection_made(self, chan: PortChannel) -> None:
        self.channel = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype is not None:  # a relay's stderr (srun's messages): never the stream's
            log.debug("Tunnel: %s", data[:500])
            return
        if self.handshake is not None:
            data = self.handshake.feed(data)
            if not data:
                return
        if self.local is None:
            self.early.append(data)  # a spare: the kernel's ZeroMQ greeting, kept for its client
        elif self.local.transport is not None and not self.local.transport.is_closing():
            self.local.transport.write(data)

    def eof_received(self) -> bool:
        if self.local is None:  # a spare the server closed: never handed out
            self.ended = True
            return False
        # These callbacks run inside asyncssh's packet loop: an exception here would take the
        # whole shared connection down, so a local socket that is already gone just closes.
        transport = self.local.transport
        try:
            if transport is not None and not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()
        except OSError:
            self.local.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if self.local is not None:
            self.local.close()

    # The channel's window is full: stop reading from the local socket until it opens.
    def pause_writing(self) -> None:
        if self.local is not None and self.local.transport is not None:
            self.local.transport.pause_reading()

    def resume_writing(self) -> None:
        local = self.local
        if local is not None and local.transport is not None and not local.transport.is_closing():
            local.transport.resume_reading()


class _LocalSide(asyncio.Protocol):
    """A connection accepted on the local listener, joined to a new SSH channel."""

    def __init__(self, tunnel: Tunnel, name: str) -> None:
        self.tunnel = tunnel
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.peer: _ChannelSide | None = None
        self.pending: list[bytes] = []
        self.eof = False
        self.closed = False
        self.opener: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: other loops' stream transports (uvloop's) are
        # asyncio.Transport in behaviour but not by inheritance.
        self.transport = cast(asyncio.Transport, transport)
        self.tunnel._connections.add(self)
        self.opener = asyncio.get_running_loop().create_task(self._open_channel())

    async def _open_channel(self) -> None:
        port = self.tunnel.remote_ports.get(self.name)
        try:
            if port is None:
                raise ConnectionError(f"no remote port for {self.name}")
            spare = await self.tunnel._take_spare(self.name, port)
            peer: _ChannelSide
            if spare is not None:
                # Opened ahead (``Tunnel.prepare``): no round trip now. What the kernel sent
                # meanwhile goes first.
                peer, spare.local = spare, self
                assert self.transport is not None
                if spare.handshake is not None:
                    # The far end's greeting and READY, as they will be: the client's first
                    # request then goes at once, instead of a crossing of the link later.
                    self.transport.write(ZMTP_GREETING + ROUTER_READY)
                for data in spare.early:
                    self.transport.write(data)
                spare.early.clear()
                if spare.ended:
                    raise ConnectionError("the spare channel ended")  # ZeroMQ connects again
                self._joined(peer)
                return
            connection = await self.tunnel.get_connection()
            peer = _ChannelSide(self)
            await open_port_channel(
                connection, self.tunnel.route(), port, peer, self.tunnel.remote_host
            )
        except Exception as e:  # unreachable, refused, not running: all end the same way
            # ZeroMQ will connect again; by then the server may be back.
            log.debug("Tunnel %s to port %s: no channel (%s)", self.name, port, e)
            self.close()
            return
        self._joined(peer)

    def _joined(self, peer: _ChannelSide) -> None:
        if self.closed:
            if peer.channel is not None:
                peer.channel.close()
            return
        self.peer = peer
        assert peer.channel is not None
        for data in self.pending:
            peer.channel.write(data)
        self.pending.clear()
        if self.eof:
            peer.channel.write_eof()

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.channel is not None:
            try:
                self.peer.channel.write(data)
            except (OSError, asyncssh.Error):
                self.close()  # the channel is gone; ZeroMQ will connect again
        else:
            self.pending.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is not None and self.peer.channel is not None:
            try:
                self.peer.channel.write_eof()
            except (OSError, asyncssh.Error):
                self.close()
        return True

    # The local socket's buffer is full: stop reading from the channel until it drains.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.channel is not None:
            self.peer.channel.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.channel is not None:
            self.peer.channel.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.tunnel._connections.discard(self)
        if self.transport is not None:
            self.transport.close()
        if self.peer is not None and self.peer.channel is not None:
            self.peer.channel.close()
        if self.opener is not None and not self.opener.done():
            self.opener.cancel()


class Tunnel:
    """Local listeners on 127.0.0.1 forwarding to ports on a server's loopback."""

    def __init__(
        self,
        get_connection: ConnectionGetter,
        remote_host: str = "127.0.0.1",
        route: RouteGetter = tuple,
    ) -> None:
        self.get_connection = get_connection
        self.remote_host = remote_host
        self.route = route
        self.remote_ports: dict[str, int] = {}
        self.local_ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._paths: list[str] = []
        self._connections: set[_LocalSide] = set()
        #: Channels opened ahead, per name, each with the remote port it leads to.
        self._spares: dict[str, list[tuple[int, asyncio.Task[_ChannelSide | None]]]] = {}

    def prepare(self, counts: dict[str, int], greet: frozenset[str] = frozenset()) -> None:
        """Open ``counts[name]`` channels for each name ahead, in the background, all at once:
        the next local connections for that name get them without waiting a round trip (a
        kernel's readiness check and its client connect right after the launch). Only for
        ``direct-tcpip`` routes; a channel that fails, or that the server closes meanwhile
        (ZeroMQ drops a peer that stays silent past its handshake interval), is not used.

        For the names in ``greet`` (ZeroMQ ROUTER sockets whose peers here are ZeroMQ's
        DEALERs: a kernel's shell, control, stdin) the spare also sends a client's ZeroMQ
        greeting at once, and the client that takes the spare is given the far end's greeting
        and READY at once (``ROUTER_READY``; the far end's own are dropped as they come): its
        first request then crosses the link once, whether or not the far end's answer to the
        greeting came back yet (the client's own greeting, the same as the one sent ahead, is
        swallowed; see ``_GreetedChannel``; its READY goes on to the far end)."""
        if self.route():
            return
        self._drop_spares()
        loop = asyncio.get_running_loop()
        for name, port in self.remote_ports.items():
            self._spares[name] = [
                (port, loop.create_task(self._open_spare(port, name in greet)))
                for _ in range(counts.get(name, 0))
            ]

    async def _open_spare(self, port: int, greet: bool = False) -> _ChannelSide | None:
        try:
            connection = await self.get_connection()
            peer = _ChannelSide(None)
            channel, _ = await connection.create_connection(lambda: peer, self.remote_host, port)
            if greet:
                channel.write(ZMTP_GREETING)
                peer.channel = _GreetedChannel(peer, channel)  # type: ignore[assignment]
                peer.handshake = _HandshakeFilter()
            return peer
        except Exception as e:
            log.debug("Tunnel: no spare channel to port %s (%s)", port, e)
            return None

    async def _take_spare(self, name: str, port: int) -> _ChannelSide | None:
        spares = self._spares.get(name)
        if not spares:
            return None
        spare_port, task = spares.pop(0)
        if spare_port != port:
            task.cancel()
            return None
        peer = await task
        if peer is None or peer.ended or peer.channel is None:
            return None
        return peer

    def _drop_spares(self) -> None:
        spares, self._spares = self._spares, {}
        for _, task in (spare for per_name in spares.values() for spare in per_name):
            if not task.done():
                task.cancel()
            elif not task.cancelled() and task.exception() is None:
                peer = task.result()
                if peer is not None and peer.channel is not None:
                    peer.channel.close()

    async def open(
        self, remote_ports: dict[str, int], local_ports: dict[str, int] | None = None
    ) -> dict[str, int]:
        """Listen for each name (on the given local ports, else on free ones); answer the
        local port of each."""
        loop = asyncio.get_running_loop()
        self.remote_ports = dict(remote_ports)
        try:
            for name in remote_ports:
                wanted = (local_ports or {}).get(name, 0)
                server = await loop.create_server(
                    lambda name=name: _LocalSide(self, name),  # type: ignore[misc]
                    "127.0.0.1",
                    wanted,
                )
                self._servers.append(server)
                self.local_ports[name] = server.sockets[0].getsockname()[1]
        except BaseException:
            await self.close()
            raise
        return dict(self.local_ports)

    async def open_unix(self, name: str, path: str, remote_port: int) -> str:
        """Listen on a Unix socket at ``path`` (made 0600; its directory should be private)
        instead of a TCP port: only this user reaches it, which matters for what carries no
        authentication of its own (a web app). Answers the path."""
        loop = asyncio.get_running_loop()
        self.remote_ports[name] = remote_port
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        try:
            server = await loop.create_unix_server(lambda: _LocalSide(self, name), path)
            os.chmod(path, 0o600)
        except BaseException:
            await self.close()
            raise
        self._servers.append(server)
        self._paths.append(path)
        return path

    def retarget(self, remote_ports: dict[str, int]) -> None:
        """Send new connections to other remote ports; drop the ones to the old ports."""
        self.remote_ports = dict(remote_ports)
        self._drop_spares()
        for connection in list(self._connections):
            connection.close()

    @property
    def is_open(self) -> bool:
        return bool(self._servers)

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    def stats(self) -> dict[str, Any]:
        return {
            "listening": dict(self.local_ports) if self._servers else {},
            "connections": len(self._connections),
        }

    async def close(self) -> None:
        servers, self._servers = self._servers, []
        self._drop_spares()
        for server in servers:
            server.close()
        for connection in list(self._connections):
            connection.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        paths, self._paths = self._paths, []
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
