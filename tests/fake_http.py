"""The HTTP side shared by the fakes of cloud APIs at the wire (``fake_gce.py``,
``fake_openstack.py``): a threaded server on 127.0.0.1 that hands every request to one route
function and writes what it answers, JSON unless it is bytes already."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JSON = "application/json"


class Drop(Exception):
    """Raised by a route: the connection is cut without an answer (a reply lost on the way)."""


@dataclass
class Incoming:
    """One request as a route sees it: headers with lowercase names, the body as sent."""

    method: str
    path: str
    query: dict[str, str]
    raw: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; None when empty or not JSON (the route answers what the API
        would)."""
        try:
            return json.loads(self.raw) if self.raw else None
        except ValueError:
            return None


@dataclass
class Answer:
    status: int
    body: Any = None  # bytes as they are, None for no body, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Incoming], Answer]


class FakeHTTPServer:
    """Serves ``route`` on an ephemeral loopback port (``url``) from ``start()`` to
    ``close()``."""

    def __init__(self, route: Route) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(route))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(route: Route) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are two writes: with Nagle's algorithm the body would wait for the
        # client's delayed ACK (40 ms a kept-alive call), as no real API server makes it wait.
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            parsed = urllib.parse.urlsplit(self.path)
            incoming = Incoming(
                self.command,
                parsed.path,
                dict(urllib.parse.parse_qsl(parsed.query)),
                raw,
                {k.lower(): v for k, v in self.headers.items()},
            )
            try:
                answer = route(incoming)
            except Drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if answer.body is None:
                data = b""
            elif isinstance(answer.body, bytes):
                data = answer.body
            else:
                data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            headers = dict(answer.headers)
            if answer.body is not None:
                headers.setdefault("Content-Type", JSON)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    return Handler
