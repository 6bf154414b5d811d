"""Jupyter's kernel websocket, with Nagle's algorithm off on its socket.

Jupyter writes each kernel message to a notebook's websocket as a frame of its own, and leaves
the socket as tornado made it: with Nagle's algorithm on. After a cell, the kernel's
``execute_reply`` and its ``idle`` status follow the ``busy`` status and ``execute_input``
within a millisecond. Nagle then holds each small frame back until the browser acknowledged
the one before, and the browser delays that acknowledgement (40 ms on Linux) since it has
nothing to send: every cell, of any kernel, local ones too, came back 40 ms late.
``benchmarks/jupyter_kernels.py`` measured 44 ms for ``execute('pass')`` through Jupyter on
127.0.0.1, and 4.4 ms with this connection (a remote kernel: 48 and 4.8 ms).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayKernelWebsocketConnection(ZMQChannelsWebsocketConnection):
    """Jupyter's own kernel websocket connection, with TCP_NODELAY on its socket."""

    def connect(self) -> Any:
        # Before Jupyter's first message (the kernel's status) goes out. (A websocket that
        # closed meanwhile has no connection left to set it on.)
        if self.websocket_handler.ws_connection is not None:
            self.websocket_handler.set_nodelay(True)
        return super().connect()


def without_nagle(current: type | None) -> type | None:
    """The kernel websocket connection class to use instead of ``current``: ours where it is
    Jupyter's default (a gateway's, or one the admin configured, is left as it is)."""
    if current is ZMQChannelsWebsocketConnection:
        return NoDelayKernelWebsocketConnection
    return current
