"""Kernel websockets in Jupyter send without Nagle's delay (``handlers/kernel_websocket.py``):
the server's end of a notebook's kernel websocket has TCP_NODELAY set, for local kernels too;
a connection class that is not Jupyter's default is left as it is."""

from __future__ import annotations

import gc
import json
import socket
from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.iostream import IOStream

from jupyter_compute_servers.handlers.kernel_websocket import (
    NoDelayKernelWebsocketConnection,
    without_nagle,
)


def server_end(client: Any) -> socket.socket:
    """The socket of this process's Jupyter at the other end of a websocket client's."""
    address = client.protocol.stream.socket.getsockname()
    for stream in (obj for obj in gc.get_objects() if isinstance(obj, IOStream)):
        sock = stream.socket
        if sock is not None and sock.fileno() >= 0 and sock.getpeername() == address:
            return sock
    raise AssertionError("no server end found for the websocket")


async def test_a_kernel_websocket_sends_without_nagles_delay(jp_fetch, jp_ws_fetch):
    response = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(response.body)["id"]
    try:
        client = await jp_ws_fetch("api", "kernels", kernel_id, "channels")
        try:
            await client.read_message()  # Jupyter's first message: the connection is made
            sock = server_end(client)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            client.close()
    finally:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")


def test_only_jupyters_default_connection_is_replaced():
    assert without_nagle(ZMQChannelsWebsocketConnection) is NoDelayKernelWebsocketConnection

    class Configured(ZMQChannelsWebsocketConnection):
        pass

    assert without_nagle(Configured) is Configured
    assert without_nagle(None) is None
