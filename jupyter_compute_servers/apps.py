"""Web apps on compute servers: what listens on a server's loopback, the apps its image
declares (started detached by the agent, like kernels), and the tunnels the proxy uses.

A proxied request reaches the app through a ``Tunnel`` (``tunnel.py``): a listener on a Unix
socket of this machine, in a private directory, whose connections ride the server's one SSH
connection as ``direct-tcpip`` channels to ``127.0.0.1:<port>`` on the server, never to another
host; on a server with a launcher (a Slurm job), as relay sessions behind the launcher, the
route its kernels' channels take to the compute node's loopback. One tunnel per server and
port, opened on first use and closed when the server leaves ``running``.

A port is proxied only if a process of this server listens on it (the agent's
``listening_ports``, which on a shared machine counts only the server's own processes), or an
app of this server was given it: a server's URL never reaches another server's port, nor a
port of the machine Jupyter runs on (the local cloud's servers share its loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import CloudError, NotFoundError, ValidationError
from .images.runtime import container_for
from .models import State
from .tunnel import Tunnel, route_of

if TYPE_CHECKING:
    from .manager import ComputeServerManager

log = logging.getLogger(__name__)

APP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: How long a port found listening stays trusted before the server is asked again (seconds).
VERIFIED_SECONDS = 10.0
#: What the log tail of an app that exited holds (bytes).
LOG_TAIL_BYTES = 4000


def check_port(value: Any, field: str = "port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise ValidationError("A port is a number from 1 to 65535.", field=field)
    return port


def check_app_name(value: Any, field: str = "app_name") -> str:
    if not isinstance(value, str) or not APP_NAME.fullmatch(value):
        raise ValidationError(
            "An app's name is 1-64 lowercase letters, digits, '-' or '_'.", field=field
        )
    return value


def _checked(answer: Any, key: str, method: str) -> list[dict[str, Any]]:
    """A list of objects from an agent's answer: a server's answer is not trusted."""
    items = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise CloudError(f"The server answered {method} with something malformed.")
    for item in items:
        port = item.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise CloudError(f"The server answered {method} with something malformed.")
    return items


class ServerApps:
    """Lists, starts and stops a server's web apps, and opens tunnels to its ports."""

    def __init__(
        self,
        manager: ComputeServerManager,
        *,
        base_url: str = "/",
        on_activity: Callable[[int], None] | None = None,
    ) -> None:
        self.manager = manager
        #: Called with the server's id on every proxied request (idle shutdown).
        self.on_activity = on_activity
        #: The Jupyter server's base URL (apps' URLs and ``{base_url}`` start with it).
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._tunnels: dict[tuple[int, int], Tunnel] = {}
        #: How each tunnel's channels reach the server's loopback (``tunnel.route_of``).
        self._routes: dict[tuple[int, int], tuple[str, ...]] = {}
        self._opening: dict[tuple[int, int], asyncio.Lock] = {}
        self._verified: dict[tuple[int, int], float] = {}
        self._socket_dir: str | None = None
        #: Apps found running, for the proxy: (server, name) -> (the app, when asked).
        self._running: dict[tuple[int, str], tuple[dict[str, Any], float]] = {}
        manager.events.listeners.append(self._on_event)

    # --- URLs -----------------------------------------------------------------------------

    def port_url(self, server_id: int, port: int) -> str:
        return f"{self.base_url}compute-servers/servers/{server_id}/proxy/{port}/"

    def app_url(self, server_id: int, name: str) -> str:
        return f"{self.base_url}compute-servers/servers/{server_id}/apps/{name}/"

    # --- the apps an image declares ------------------------------------------------------

    def declared(self, server_id: int) -> list[dict[str, Any]]:
        """The apps of the server's image (a server without one runs the machine's own
        Python: the apps of the catalogue's ``python`` runtime image)."""
        server = self.manager.get_server(server_id)
        images = self.manager.images
        image: dict[str, Any] | None = None
        if server.config.image:
            with contextlib.suppress(ValidationError):
                image = images.get(server.config.image)
        else:
            image = next(
                (i for i in images.images(True) if i["runtime"].get("kind") == "python"), None
            )
        return [dict(app) for app in (image or {}).get("apps", [])]

    def _declared_app(self, server_id: int, name: str) -> dict[str, Any]:
        check_app_name(name)
        for app in self.declared(server_id):
            if app["name"] == name:
                return app
        server = self.manager.get_server(server_id)
        offered = ", ".join(a["name"] for a in self.declared(server_id)) or "none"
        raise NotFoundError(
            f"Server {server.name!r}'s image offers no app {name!r} (it offers: {offered}).",
            field="app_name",
        )

    async def _call(self, server_id: int, method: str, **params: Any) -> Any:
        agent = await self.manager.agent_for(server_id, "start it to use its web apps.")
        return await agent.call(method, runtime_dir=agent.endpoint.runtime_dir, **params)

    async def _running_apps(self, server_id: int) -> dict[str, dict[str, Any]]:
        answer = await self._call(server_id, "app_list")
        return {str(a.get("name")): a for a in _checked(answer, "apps", "app_list")}

    def _present(
        self, server_id: int, app: dict[str, Any], run: dict[str, Any] | None
    ) -> dict[str, Any]:
        state = "stopped"
        if run is not None:
            state = "running" if run.get("running") else "exited"
        return {
            "name": app["name"],
            "label": app.get("label") or app["name"],
            "icon": app.get("icon"),
            "gpu": bool(app.get("gpu", False)),
            "state": state,
            "port": run.get("port") if run else None,
            "exit_code": run.get("exit_code") if run and not run.get("running") else None,
            "url": self.app_url(server_id, app["name"]) + str(app.get("path", "")).lstrip("/"),
        }

    async def listing(self, server_id: int) -> list[dict[str, Any]]:
        """The image's apps, each with its state on the server (none run while it is off)."""
        declared = self.declared(server_id)
        running: dict[str, dict[str, Any]] = {}
        if self.manager.get_server(server_id).state is State.RUNNING:
            running = await self._running_apps(server_id)
        return [self._present(server_id, app, running.get(app["name"])) for app in declared]

    async def start(self, server_id: int, name: str) -> tuple[dict[str, Any], bool]:
        """Start the app unless it runs; answers it and whether it was started now."""
        app = self._declared_app(server_id, name)
        server = self.manager.running(server_id, "start it to use its web apps.")
        if app.get("gpu") and server.config.gpu is None:
            raise ValidationError(
                f"{app.get('label') or name} needs a GPU, and server {server.name!r} has none.",
                field="app_name",
            )
        agent = await self.manager.agent_for(server_id, "start it to use its web apps.")
        started = await agent.call(
            "app_start",
            runtime_dir=agent.endpoint.runtime_dir,
            workspace=agent.endpoint.workspace,
            name=name,
            argv=list(app["command"]),
            # The app serves under its proxied path, so its own links are right as they are.
            base_url=self.app_url(server_id, name).rstrip("/"),
            container=container_for(self.manager, server),
        )
        run = _checked({"apps": [started]}, "apps", "app_start")[0]
        self.manager.notify("apps", server_id)
        return self._present(server_id, app, run), not started.get("already", False)

    async def stop(self, server_id: int, name: str) -> None:
        self._declared_app(server_id, name)
        self.forget_app(server_id, name)
        self.manager.running(server_id, "its apps stopped with it.")
        answer = await self._call(server_id, "app_stop", name=name)
        if not isinstance(answer, dict) or not isinstance(answer.get("stopped"), bool):
            raise CloudError("The server answered app_stop with something malformed.")
        self.manager.notify("apps", server_id)

    async def app_status(self, server_id: int, name: str) -> tuple[dict[str, Any], str]:
        """For the proxy: the app as it runs (or a 404 if it was not started), and the end of
        its log."""
        app = self._declared_app(server_id, name)
        self.manager.running(server_id, "start it to use its web apps.")
        run = (await self._running_apps(server_id)).get(name)
        if run is None:
            raise NotFoundError(
                f"{app.get('label') or name} is not running on server "
                f"{self.manager.get_server(server_id).name!r}: start it first.",
                field="app_name",
            )
        log_tail = ""
        if not run.get("running"):
            answer = await self._call(server_id, "app_log", name=name, max_bytes=LOG_TAIL_BYTES)
            log_tail = str(answer.get("log", "")) if isinstance(answer, dict) else ""
        return dict(self._present(server_id, app, run), started=run.get("started")), log_tail

    async def app_target(self, server_id: int, name: str) -> tuple[dict[str, Any], str | None]:
        """For the proxy: the app and its tunnel's local end (None when it is not running;
        the app then carries ``log_tail``). A running app is asked about again only after
        ``VERIFIED_SECONDS``, or after ``forget_app``: not one agent call per request."""
        key = (server_id, name)
        cached = self._running.get(key)
        if cached is None or time.monotonic() - cached[1] >= VERIFIED_SECONDS:
            app, log_tail = await self.app_status(server_id, name)
            if app["state"] != "running":
                self._running.pop(key, None)
                return dict(app, log_tail=log_tail), None
            cached = (app, time.monotonic())
            self._running[key] = cached
        app = cached[0]
        return app, await self.target(server_id, int(app["port"]), verified=True)

    def forget_app(self, server_id: int, name: str) -> None:
        self._running.pop((server_id, name), None)

    # --- ports ----------------------------------------------------------------------------

    async def ports(self, server_id: int) -> list[dict[str, Any]]:
        """What the server's processes listen on where its loopback reaches them."""
        if self.manager.get_server(server_id).state is not State.RUNNING:
            return []
        answer = await self._call(server_id, "listening_ports")
        found = []
        for item in _checked(answer, "ports", "listening_ports"):
            pid = item.get("pid")
            found.append(
                {
                    "port": item["port"],
                    "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                    "command": str(item.get("command", ""))[:300],
                    "url": self.port_url(server_id, item["port"]),
                }
            )
        return found

    async def target(self, server_id: int, port: int, *, verified: bool = False) -> str:
        """The local end of a tunnel to ``port`` on the server's loopback, a Unix socket in a
        private directory (a TCP port here would let any local user reach the app without
        Jupyter's authentication): only a port that one of the server's processes listens
        on (``verified``: the caller knows it is the server's, an app it started)."""
        if self.on_activity is not None:
            self.on_activity(server_id)  # someone uses the server through its app
        key = (server_id, port)
        now = time.monotonic()
        tunnel = self._tunnels.get(key)
        fresh = verified or now - self._verified.get(key, -VERIFIED_SECONDS) < VERIFIED_SECONDS
        if tunnel is not None and tunnel.is_open and fresh:
            # The fast path of every proxied request: no store read, no agent call. A server
            # leaving ``running`` closes its tunnels (``_on_event``).
            return self._socket_path(key)
        server = self.manager.running(server_id, "start it to open its web apps.")
        if not verified and now - self._verified.get(key, -VERIFIED_SECONDS) >= VERIFIED_SECONDS:
            listening = {item["port"] for item in await self.ports(server_id)}
            if port not in listening:
                raise NotFoundError(
                    f"Nothing of server {server.name!r} listens on port {port} of its loopback "
                    "(its open ports are listed in the server's row).",
                    field="port",
                )
            self._verified[key] = now
        async with self._opening.setdefault(key, asyncio.Lock()):
            tunnel = self._tunnels.get(key)
            if tunnel is None or not tunnel.is_open:

                async def connection(key: tuple[int, int] = key) -> Any:
                    opened = await self.manager.connection(server_id, "open a web app")
                    # The route of the connection just got: a Slurm job's node is reached
                    # through srun, as its kernels' channels are.
                    self._routes[key] = route_of(opened.endpoint)
                    return opened.connection

                tunnel = Tunnel(
                    connection,
                    "127.0.0.1",
                    route=lambda key=key: self._routes.get(key, ()),  # type: ignore[misc]
                )
                await tunnel.open_unix("app", self._socket_path(key), port)
                self._tunnels[key] = tunnel
            return self._socket_path(key)

    def _socket_path(self, key: tuple[int, int]) -> str:
        if self._socket_dir is None:
            # Short (a socket's path is at most 107 bytes) and private (0700).
            self._socket_dir = tempfile.mkdtemp(prefix="jcs-apps-")
        return os.path.join(self._socket_dir, f"{key[0]}-{key[1]}.sock")

    def forget(self, server_id: int, port: int) -> None:
        """The port did not answer: ask the server again next time."""
        self._verified.pop((server_id, port), None)

    async def close_server(self, server_id: int) -> None:
        for app in [k for k in self._running if k[0] == server_id]:
            self._running.pop(app, None)
        for key in [k for k in self._tunnels if k[0] == server_id]:
            self._verified.pop(key, None)
            self._routes.pop(key, None)
            tunnel = self._tunnels.pop(key)
            await tunnel.close()

    def _on_event(self, event: dict[str, Any]) -> None:
        server_id = event.get("server_id")
        if server_id is None or event.get("state") == State.RUNNING.value:
            return
        for app in [k for k in self._running if k[0] == server_id]:
            self._running.pop(app, None)
        for port in [k for k in self._verified if k[0] == server_id]:
            self._verified.pop(port, None)
        if any(key[0] == server_id for key in self._tunnels):
            with contextlib.suppress(RuntimeError):  # no loop: nothing was opened
                asyncio.get_running_loop().create_task(self.close_server(server_id))

    def stats(self) -> dict[str, Any]:
        return {f"{s}:{p}": t.stats() for (s, p), t in self._tunnels.items()}

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.manager.events.listeners.remove(self._on_event)
        for server_id in {key[0] for key in self._tunnels}:
            await self.close_server(server_id)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
