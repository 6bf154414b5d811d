"""A pod's SSH port on Jupyter's loopback, through the API server's port-forward.

``PortForward`` listens on 127.0.0.1 (a port the kernel picks) and, for each connection
accepted there, opens one ``pods/portforward`` websocket (``GET .../pods/NAME/portforward?
ports=P``, subprotocol ``v4.channel.k8s.io``, through ``kubernetes_asyncio``'s ``WsApiClient``,
so the kubeconfig's TLS and credentials apply) and copies bytes both ways. ``ssh.py`` connects
to that port as to any host, so the server's one SSH connection is one websocket.

The protocol (documented in the kubelet's portforward package, ``websocket.go``): for the
``i``-th requested port, channel ``2i`` carries data and ``2i+1`` errors; each binary frame
starts with its channel's byte; the first frame the server sends on each channel is the port
number (2 bytes, little-endian); text on the error channel says why the forward failed
("connection refused": nothing listens on that port in the pod yet)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ...errors import CloudError

log = logging.getLogger(__name__)

DATA, ERROR = 0, 1
#: How much of a websocket frame to send at once (the kubelet reads 32 KiB frames).
CHUNK = 32 * 1024


class PortForwardError(OSError):
    """The API server or the kubelet refused the forward (the text of its error channel)."""


class PortForward:
    """A loopback listener whose connections are forwarded to ``port`` of one pod."""

    def __init__(
        self, open_websocket: Callable[[], Awaitable[Any]], port: int, describe: str
    ) -> None:
        #: Opens one port-forward websocket (an aiohttp ``ClientWebSocketResponse``).
        self._open = open_websocket
        self.port = port
        self.describe = describe
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Why the last forwarded connection ended early, if it did (shown by a start).
        self.last_error: Exception | None = None

    @property
    def local_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> PortForward:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        except (PortForwardError, aiohttp.ClientError, OSError, CloudError) as e:
            # CloudError: the API server refused the upgrade (RBAC, no such pod), in words.
            self.last_error = e
            log.info("Port-forward to %s ended: %s", self.describe, e)
        except asyncio.CancelledError:
            pass  # closed (the server stopped): this connection's task ends quietly
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = await self._open()
        try:
            await self._relay(ws, reader, writer)
        finally:
            await ws.close()

    async def _relay(
        self, ws: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        seen_port = {DATA: False, ERROR: False}

        async def from_pod() -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY or not message.data:
                    if message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                channel, payload = message.data[0], message.data[1:]
                if channel in seen_port and not seen_port[channel]:
                    # The first frame on a channel is its port number.
                    seen_port[channel] = True
                    payload = payload[2:]
                if not payload:
                    continue
                if channel == ERROR:
                    raise PortForwardError(f"{self.describe}: {payload.decode('utf-8', 'replace')}")
                if channel == DATA:
                    writer.write(payload)
                    await writer.drain()

        async def to_pod() -> None:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await ws.send_bytes(bytes([DATA]) + data)

        pump_in = asyncio.ensure_future(from_pod())
        pump_out = asyncio.ensure_future(to_pod())
        try:
            await asyncio.wait({pump_in, pump_out}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump_in, pump_out):
                task.cancel()
            results = await asyncio.gather(pump_in, pump_out, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                raise result
