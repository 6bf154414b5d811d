"""A local HTTP server on 127.0.0.1 that answers slowly or too much (for URL fetches)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HostileHTTP:
    """``/slow`` sends its headers, then nothing until ``release`` (or 60 s); ``/drip`` sends a
    byte every 0.2 s for a minute; ``/huge`` sends ``huge_bytes`` with no Content-Length;
    ``/big`` declares them in Content-Length."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.release = threading.Event()
        self.asked = threading.Event()
        self.huge_bytes = 2 * 1024 * 1024


@contextmanager
def hostile_http() -> Iterator[HostileHTTP]:
    state: HostileHTTP

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.asked.set()
            if self.path == "/big":
                self.send_response(200)
                self.send_header("Content-Length", str(state.huge_bytes))
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            if self.path == "/slow":
                state.release.wait(60)
            elif self.path == "/drip":
                for _ in range(300):
                    if state.release.wait(0.2):
                        break
                    self.wfile.write(b" ")
                    self.wfile.flush()
            elif self.path == "/huge":
                chunk = b" " * 65536
                for _ in range(state.huge_bytes // len(chunk)):
                    self.wfile.write(chunk)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state = HostileHTTP(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
