"""Web apps on compute servers: the REST endpoints (open ports, the image's apps) and the proxy
that carries a browser to them, ``<base_url>/compute-servers/servers/<id>/proxy/<port>/...``
and ``.../servers/<id>/apps/<name>/...``.

The proxy is jupyter-server-proxy's ``ProxyHandler``: its authentication, websocket proxying,
request headers (``X-Forwarded-Prefix``...), redirect rewriting and origin checks are used as
they are, pointed at the local end of our tunnel to the server. Its HTTP transfer is not: it
reads a whole response into memory before sending any of it (only ``text/event-stream`` is
streamed, without flow control), which a 50 MB download or a long-polling app cannot take, so
``proxy()`` here streams each chunk to the browser and waits for it to drain before reading
the next (aiohttp, which jupyter-server-proxy depends on, as the client).
"""

from __future__ import annotations

import html
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server_proxy.handlers import ProxyHandler
from tornado import httputil, iostream, web

from ..apps import ServerApps, check_app_name, check_port
from ..errors import ComputeServersError
from ..models import parse_path_id
from .base import AUTH_RESOURCE, ComputeServersAPIHandler

#: Headers that belong to one hop, never passed on (RFC 9110 7.6.1), and Jupyter's own
#: credentials, which an app must never see.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Transfer-Encoding",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Authenticate",
    )
)
CREDENTIAL_HEADERS = frozenset(("authorization", "x-xsrftoken", "x-csrftoken"))
#: Seconds a starting app's page keeps retrying before it says the app does not answer.
WAIT_SECONDS = 60
#: The proxy's client sessions, one per tunnel, in the web app's settings.
_SESSION_KEY = "compute_servers_proxy_session"


def _apps(handler: web.RequestHandler) -> ServerApps:
    apps: ServerApps = handler.settings["compute_servers_apps"]
    return apps


class ServerPortsHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/ports``: what the server's processes listen on (its loopback)."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json({"ports": await _apps(self).ports(self.path_id(server_id))})


class ServerAppsHandler(ComputeServersAPIHandler):
    """``GET /servers/{id}/apps``: the apps its image declares, each with its state."""

    @web.authenticated
    @authorized
    async def get(self, server_id: str) -> None:
        self.write_json({"apps": await _apps(self).listing(self.path_id(server_id))})


class ServerAppHandler(ComputeServersAPIHandler):
    """``POST /servers/{id}/apps/{name}``: start it (runs code there: ``execute``);
    ``DELETE``: stop it."""

    @web.authenticated
    @authorized("execute")
    async def post(self, server_id: str, app_name: str) -> None:
        app, started = await _apps(self).start(self.path_id(server_id), check_app_name(app_name))
        self.write_json(app, status=201 if started else 200)

    @web.authenticated
    @authorized("execute")
    async def delete(self, server_id: str, app_name: str) -> None:
        await _apps(self).stop(self.path_id(server_id), check_app_name(app_name))
        self.set_status(204)
        self.finish()


def _is_jupyter_cookie(name: str, jupyter_cookies: set[str]) -> bool:
    # Jupyter's login cookies are "username-<host>-<port>"; the current one is in the set.
    return name in jupyter_cookies or name.startswith("username-")


def _without_jupyter_cookies(header: str, jupyter_cookies: set[str]) -> str:
    """The Cookie header less Jupyter's own cookies (its login and XSRF cookies)."""
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and not _is_jupyter_cookie(name, jupyter_cookies):
            kept.append(part.strip())
    return "; ".join(kept)


def _cookie_name(set_cookie: str) -> str:
    return set_cookie.split("=", 1)[0].strip()


class ServerProxyHandler(ProxyHandler):
    """Proxies HTTP and websockets to a port on a server's loopback, through its tunnel.

    Needs ``execute``: an app on the server acts with the server's user's rights. The target
    is always the local end of a tunnel (a private Unix socket) whose far end is ``127.0.0.1``
    on the server; the port must be one of the server's (``ServerApps.target``)."""

    auth_resource = AUTH_RESOURCE
    #: Set by ``_resolve``: the tunnel's local end, the URL prefix, the app's name if any.
    socket_path = ""
    prefix = ""
    app_name: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Only our tunnels' local ends (Unix sockets, which jupyter-server-proxy names
        # "localhost"), never another host.
        kwargs.setdefault("host_allowlist", ["localhost"])
        super().__init__(*args, **kwargs)

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        # Jupyter's authentication (jupyter-server-proxy's prepare() would redirect a second
        # time): a login redirect for a page, 403 for a websocket.
        websocket = self.request.headers.get("Upgrade", "").lower() == "websocket"
        await JupyterHandler.prepare(self, _redirect_to_login=not websocket)
        if self._finished:  # redirected to the login page
            return
        if self.current_user is None:
            raise web.HTTPError(403)
        allowed = await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE)
        )
        if not allowed:
            raise web.HTTPError(
                403, f"User is not authorized to execute on resource: {AUTH_RESOURCE}."
            )

    # --- where to -------------------------------------------------------------------------

    async def _resolve(self, server_id: str, target: str) -> None:
        """Find the tunnel's local port for the URL's server and port (or app)."""
        apps = _apps(self)
        sid = parse_path_id(server_id, "server_id", "compute server")
        if self.app_name is None:
            port = check_port(target)
            self.prefix = apps.port_url(sid, port)
            self.socket_path = await apps.target(sid, port)
            return
        app, socket_path = await apps.app_target(sid, check_app_name(target))
        self.prefix = apps.app_url(sid, app["name"])
        self.app = app
        if socket_path is None:
            raise AppNotAnswering(app, str(app.get("log_tail", "")), exited=True)
        self.socket_path = socket_path

    def _get_context_path(self, host: str, port: int) -> str:
        # Where the app is seen from (X-Forwarded-Prefix; redirects): our URL, not the tunnel.
        return self.prefix.rstrip("/")

    # --- what is sent on ------------------------------------------------------------------

    def proxy_request_headers(self) -> httputil.HTTPHeaders:
        headers = super().proxy_request_headers()
        for name in list(headers):
            if name.lower() in CREDENTIAL_HEADERS:
                del headers[name]
        if "Cookie" in headers:
            cookies = self._jupyter_cookie_names()
            kept = _without_jupyter_cookies("; ".join(headers.get_list("Cookie")), cookies)
            del headers["Cookie"]
            if kept:
                headers["Cookie"] = kept
        return headers

    def _jupyter_cookie_names(self) -> set[str]:
        names = {"_xsrf"}
        identity = self.settings.get("identity_provider")
        with_name = getattr(identity, "get_cookie_name", None)
        if with_name is not None:
            names.add(with_name(self))
        return names

    def get_client_uri(self, protocol: str, host: str, port: int, proxied_path: str) -> str:
        # Jupyter's token in the query string is not the app's either.
        query = self.request.query
        if query and "token" in query:
            kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"]
            self.request.query = urlencode(kept)
        try:
            return str(super().get_client_uri(protocol, host, port, proxied_path))
        finally:
            self.request.query = query

    # --- HTTP -----------------------------------------------------------------------------

    async def http_get(self, server_id: str, target: str, proxied_path: str = "") -> None:
        await self._proxy(server_id, target, proxied_path)

    # Authenticated in prepare() already (jupyter-server-proxy's way, which also answers 403
    # to a websocket); the decorators say so to Jupyter's check of extension handlers.
    @web.authenticated
    async def post(self, server_id: str, target: str, proxied_path: str = "") -> None:
        await self._proxy(server_id, target, proxied_path)

    put = delete = head = patch = options = post

    async def _proxy(self, server_id: str, target: str, proxied_path: str) -> None:
        try:
            await self._resolve(server_id, target)
        except AppNotAnswering as e:
            self._not_answering(e)
            return
        except ComputeServersError as e:
            self._error(e.status, e.to_json())
            return
        path = proxied_path or "/"
        if self.app_name is not None:
            # Apps are told their prefix ({base_url}) and serve under it.
            path = self.prefix.rstrip("/") + path
        await self.proxy("localhost", 80, path)

    async def proxy(self, host: str, port: int, proxied_path: str) -> None:
        """Stream the request's answer from the app, chunk by chunk, with flow control."""
        if not self._check_host_allowlist(host):
            raise web.HTTPError(403, f"Host {host!r} is not allowed.")
        self._record_activity()
        request = self._build_proxy_request(host, port, proxied_path, None)
        headers = [
            (name, value)
            for name, value in request.headers.get_all()
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length"
        ]
        body = self.request.body if self.request.method not in ("GET", "HEAD") else None
        session = self._session(self.socket_path)
        try:
            response = await session.request(
                self.request.method or "GET",
                request.url,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        except (aiohttp.ClientError, OSError) as e:
            _apps(self).forget(*self._server_and_port())
            if self.app_name is not None:
                _apps(self).forget_app(self._server_and_port()[0], self.app_name)
                self._not_answering(AppNotAnswering(self.app, "", exited=False, cause=str(e)))
            else:
                port = self._server_and_port()[1]
                self._error(
                    502,
                    {
                        "message": f"Port {port} on the server did not answer: "
                        f"{e or type(e).__name__}.",
                        "reason": "Bad Gateway",
                        "field": "port",
                    },
                )
            return
        async with response:
            self.set_status(response.status, response.reason)
            self._headers = httputil.HTTPHeaders()
            jupyter_cookies = self._jupyter_cookie_names()
            for name, value in response.headers.items():
                lowered = name.lower()
                if lowered in HOP_BY_HOP:
                    continue
                if lowered == "set-cookie" and _is_jupyter_cookie(
                    _cookie_name(value), jupyter_cookies
                ):
                    continue  # an app may not replace Jupyter's login or XSRF cookie
                # A raw port's app does not know its prefix: its redirects get it added.
                redirect = lowered == "location" and response.status in (301, 302, 303, 307, 308)
                if redirect and self.app_name is None:
                    value = self._rewrite_location_header(value, host, port, proxied_path)
                self.add_header(name, value)
            if "Content-Security-Policy" not in self._headers:
                # As Jupyter's own pages: framed only by the Lab (no clickjacking).
                self.set_header("Content-Security-Policy", "frame-ancestors 'self'")
            try:
                async for chunk in response.content.iter_any():
                    self.write(chunk)
                    # Wait until the browser took it: the app is read only as fast as that.
                    await web.RequestHandler.flush(self)
                    self._record_activity()
            except (iostream.StreamClosedError, aiohttp.ClientError):
                return  # the browser went away, or the app broke off the answer
            self.finish()

    def _server_and_port(self) -> tuple[int, int]:
        server_id = int(self.path_kwargs.get("server_id") or self.path_args[0])
        if self.app_name is not None:
            return server_id, int(self.app.get("port") or 0)
        return server_id, int(self.path_kwargs.get("target") or self.path_args[1])

    def _session(self, socket_path: str) -> aiohttp.ClientSession:
        """A client session per tunnel (its pool keeps connections, each a channel)."""
        sessions: dict[str, aiohttp.ClientSession] = self.settings.setdefault(_SESSION_KEY, {})
        session = sessions.get(socket_path)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None),
                connector=aiohttp.UnixConnector(path=socket_path, limit=0),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            sessions[socket_path] = session
        return session

    # --- websockets -----------------------------------------------------------------------

    @web.authenticated
    async def get(self, server_id: str, target: str, proxied_path: str = "") -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            await self.http_get(server_id, target, proxied_path)
            return
        try:
            await self._resolve(server_id, target)
        except AppNotAnswering as e:
            raise web.HTTPError(503, e.message) from None
        except ComputeServersError as e:
            raise web.HTTPError(e.status, e.message) from None
        await super().get(server_id, target, proxied_path)

    async def open(self, server_id: str, target: str, proxied_path: str = "") -> None:
        path = proxied_path or "/"
        if self.app_name is not None:
            path = self.prefix.rstrip("/") + path
        # jupyter-server-proxy's websocket client connects to ``unix_socket``.
        self.unix_socket = self.socket_path
        await self.proxy_open("localhost", 80, path)

    # --- errors ---------------------------------------------------------------------------

    def _wants_html(self) -> bool:
        return "text/html" in self.request.headers.get("Accept", "")

    def _error(self, status: int, body: dict[str, Any]) -> None:
        """An error as the API answers it (JSON), or as a page for a browser's page load."""
        self.clear()
        self.set_status(status)
        if self._wants_html():
            self.set_header("Content-Type", "text/html; charset=utf-8")
            message = html.escape(str(body.get("message")))
            self.finish(_page("Cannot open the app", f"<p>{message}</p>"))
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _not_answering(self, e: AppNotAnswering) -> None:
        """A page that waits for a starting app (reloading itself), or says why it ended."""
        label = html.escape(str(e.app.get("label") or e.app.get("name")))
        started = e.app.get("started")
        waited = time.time() - started if isinstance(started, (int, float)) else 0
        if e.exited:
            status, title = 502, f"{label} has exited"
            body = f"<p>{label} exited with code {html.escape(str(e.app.get('exit_code')))}.</p>"
            if e.log_tail:
                body += f"<p>The end of its log:</p><pre>{html.escape(e.log_tail)}</pre>"
            body += "<p>Start it again from the server's row in the Compute Servers panel.</p>"
            refresh = False
        elif waited < WAIT_SECONDS:
            status, title = 503, f"Waiting for {label}"
            body = (
                f"<p>{label} was started {waited:.0f} s ago and does not answer on its port "
                "yet; this page tries again every 2 seconds.</p>"
            )
            refresh = True
        else:
            status, title = 502, f"{label} does not answer"
            body = (
                f"<p>{label} has been running for {waited:.0f} s but does not answer on its "
                f"port ({html.escape(e.cause)}). Stop and start it again, or read its log "
                "on the server.</p>"
            )
            refresh = False
        self.clear()
        self.set_status(status)
        if not self._wants_html():
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": e.message, "reason": title, "field": "app_name"}))
            return
        if refresh:
            self.set_header("Retry-After", "2")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_page(title, body, refresh=refresh))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        message = self._reason
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        self._error(status_code, {"message": message, "reason": self._reason})


class ServerAppProxyHandler(ServerProxyHandler):
    """``servers/<id>/apps/<name>/...``: an app of the server's image, by name."""

    async def prepare(self, *args: Any, **kwargs: Any) -> None:
        self.app_name = str(self.path_kwargs.get("target", ""))
        await super().prepare(*args, **kwargs)


class AppNotAnswering(Exception):
    def __init__(
        self, app: dict[str, Any], log_tail: str, *, exited: bool, cause: str = ""
    ) -> None:
        self.app, self.log_tail, self.exited, self.cause = app, log_tail, exited, cause
        label = app.get("label") or app.get("name")
        self.message = (
            f"{label} has exited (code {app.get('exit_code')})."
            if exited
            else f"{label} does not answer on its port yet ({cause or 'starting'})."
        )
        super().__init__(self.message)


async def close_proxy_session(settings: dict[str, Any]) -> None:
    """Close the proxy's client sessions (the Jupyter server is stopping)."""
    for session in settings.pop(_SESSION_KEY, {}).values():
        await session.close()


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>{meta}<title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;margin:2em;max-width:50em}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto;white-space:pre-wrap}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


__all__ = [
    "ServerAppHandler",
    "ServerAppProxyHandler",
    "ServerAppsHandler",
    "ServerPortsHandler",
    "ServerProxyHandler",
]
