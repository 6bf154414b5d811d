"""Small web apps run on compute servers by the tests, and ways to start them there."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

#: A websocket echo app (tornado, from the environment the server's Python runs in) that also
#: answers, at ``/headers``, the request headers it received, so a test sees what the proxy
#: passed on.
ECHO_APP = """
import json, sys
from tornado import ioloop, web, websocket

class Echo(websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))

class Headers(web.RequestHandler):
    def get(self):
        self.write({"headers": dict(self.request.headers.get_all()), "uri": self.request.uri})

    def post(self):
        self.write({"body": self.request.body.decode(), "method": "POST"})

class SetCookies(web.RequestHandler):
    def get(self):
        self.set_cookie("_xsrf", "chosen-by-the-app")
        self.set_cookie("app_session", "fine")
        self.write("ok")

class Redirect(web.RequestHandler):
    def get(self):
        self.redirect("/headers")

class Big(web.RequestHandler):
    async def get(self):
        size = int(self.get_argument("mb", "1")) * 1024 * 1024
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(size))
        chunk = b"x" * (1024 * 1024)
        for _ in range(size // len(chunk)):
            self.write(chunk)
            await self.flush()

app = web.Application([("/ws", Echo), ("/headers", Headers), ("/redirect", Redirect),
                       ("/cookies", SetCookies),
                       ("/big", Big)])
app.listen(int(sys.argv[1]), address="127.0.0.1")
print("listening", sys.argv[1], flush=True)
ioloop.IOLoop.current().start()
"""


async def run_on_server(manager: Any, server_id: int, name: str, argv: list[str]) -> int:
    """Start a process on the server as a user would from its terminal (a detached child of
    its agent, so with the server's environment); answers its port (``{port}`` in argv)."""
    agent = await manager.agent_for(server_id)
    started = await agent.call(
        "app_start",
        runtime_dir=agent.endpoint.runtime_dir,
        workspace=agent.endpoint.workspace,
        name=name,
        argv=argv,
        base_url="/",
    )
    return int(started["port"])


async def until_listening(apps: Any, server_id: int, port: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ports = {p["port"] for p in await apps.ports(server_id)}
        if port in ports:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"port {port} never listened (listening: {sorted(ports)})")
        await asyncio.sleep(0.2)


def echo_argv(workspace_file: str) -> list[str]:
    return [sys.executable, workspace_file, "{port}"]
