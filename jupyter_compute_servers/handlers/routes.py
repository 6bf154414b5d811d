"""The URL table: one place that says which handler serves which path."""

from __future__ import annotations

from .apps import (
    ServerAppHandler,
    ServerAppProxyHandler,
    ServerAppsHandler,
    ServerPortsHandler,
    ServerProxyHandler,
)
from .base import NotFoundHandler
from .costs import CostsHandler, EstimateHandler
from .hosts import HostHandler, HostInventoryHandler, HostsHandler, ServerMetricsHandler
from .images import ImagesHandler, ImagesReloadHandler, ImageTestedHandler
from .kernels import ServerKernelHandler, ServerKernelsHandler
from .mount import ServerMountHandler
from .openapi import OpenAPIHandler
from .servers import (
    CloudsHandler,
    ServerActionHandler,
    ServerHandler,
    ServerHistoryHandler,
    ServersHandler,
)
from .status import StatusHandler
from .sync import (
    ServerSyncCancelHandler,
    ServerSyncHandler,
    ServerSyncRunHandler,
    ServerSyncsHandler,
)
from .team import (
    AuditHandler,
    QueueEntryHandler,
    QueueHandler,
    RevocationHandler,
    RevocationsHandler,
    SpendHandler,
    TeamHandler,
)
from .terminals import (
    ServerSSHAccessHandler,
    ServerTerminalHandler,
    ServerTerminalsHandler,
    TerminalWebSocketHandler,
)

#: Every route is under ``<base_url>/compute-servers/api/``.
API_PREFIX = "/compute-servers/api"
# Ids match any segment: the handler answers a JSON 404 for one that is not an id.
_ID = r"(?P<server_id>[^/]+)"
_TERMINAL = r"(?P<terminal_name>[^/]+)"
_HOST = r"(?P<host_id>[^/]+)"
_APP = r"(?P<app_name>[^/]+)"
# Any segment: the handler answers 404 for a bad one, after authorization.
_SYNC = r"(?P<sync_id>[^/]+)"


def api_handlers() -> list[tuple[str, type]]:
    return [
        (rf"{API_PREFIX}/status", StatusHandler),
        (rf"{API_PREFIX}/team", TeamHandler),
        (rf"{API_PREFIX}/team/revocations", RevocationsHandler),
        (rf"{API_PREFIX}/team/revocations/(?P<user>[^/]+)", RevocationHandler),
        (rf"{API_PREFIX}/audit", AuditHandler),
        (rf"{API_PREFIX}/audit/spend", SpendHandler),
        (rf"{API_PREFIX}/queue", QueueHandler),
        (rf"{API_PREFIX}/queue/{_ID}", QueueEntryHandler),
        (rf"{API_PREFIX}/openapi.json", OpenAPIHandler),
        (rf"{API_PREFIX}/clouds", CloudsHandler),
        (rf"{API_PREFIX}/estimate", EstimateHandler),
        (rf"{API_PREFIX}/costs", CostsHandler),
        (rf"{API_PREFIX}/servers", ServersHandler),
        (rf"{API_PREFIX}/servers/{_ID}", ServerHandler),
        (rf"{API_PREFIX}/servers/{_ID}/history", ServerHistoryHandler),
        (rf"{API_PREFIX}/servers/{_ID}/actions/(?P<action>[a-z_]+)", ServerActionHandler),
        (rf"{API_PREFIX}/servers/{_ID}/mount", ServerMountHandler),
        (rf"{API_PREFIX}/servers/{_ID}/kernels", ServerKernelsHandler),
        (rf"{API_PREFIX}/servers/{_ID}/kernels/(?P<kernel_id>[^/]+)", ServerKernelHandler),
        (rf"{API_PREFIX}/servers/{_ID}/terminals", ServerTerminalsHandler),
        (
            rf"{API_PREFIX}/servers/{_ID}/terminals/websocket/{_TERMINAL}",
            TerminalWebSocketHandler,
        ),
        (rf"{API_PREFIX}/servers/{_ID}/terminals/{_TERMINAL}", ServerTerminalHandler),
        (rf"{API_PREFIX}/servers/{_ID}/ssh-access", ServerSSHAccessHandler),
        (rf"{API_PREFIX}/servers/{_ID}/metrics", ServerMetricsHandler),
        (rf"{API_PREFIX}/servers/{_ID}/ports", ServerPortsHandler),
        (rf"{API_PREFIX}/servers/{_ID}/apps", ServerAppsHandler),
        (rf"{API_PREFIX}/servers/{_ID}/apps/{_APP}", ServerAppHandler),
        (rf"{API_PREFIX}/servers/{_ID}/sync", ServerSyncHandler),
        (rf"{API_PREFIX}/servers/{_ID}/syncs", ServerSyncsHandler),
        (rf"{API_PREFIX}/servers/{_ID}/syncs/{_SYNC}", ServerSyncRunHandler),
        (rf"{API_PREFIX}/servers/{_ID}/syncs/{_SYNC}/cancel", ServerSyncCancelHandler),
        (rf"{API_PREFIX}/images", ImagesHandler),
        (rf"{API_PREFIX}/images/reload", ImagesReloadHandler),
        (rf"{API_PREFIX}/images/tested", ImageTestedHandler),
        (rf"{API_PREFIX}/hosts", HostsHandler),
        (rf"{API_PREFIX}/hosts/{_HOST}", HostHandler),
        (rf"{API_PREFIX}/hosts/{_HOST}/inventory", HostInventoryHandler),
        # Last: any other path under the API is a JSON 404.
        (rf"{API_PREFIX}/(?P<path>.*)", NotFoundHandler),
    ]


#: The proxy to servers' web apps: not part of the API (it answers what the app answers).
PROXY_PREFIX = "/compute-servers/servers"


def proxy_handlers() -> list[tuple[str, type]]:
    # The path after the port (or app) is optional: ".../proxy/8000" serves the app's root.
    rest = r"(?P<proxied_path>/.*)?"
    return [
        (rf"{PROXY_PREFIX}/{_ID}/proxy/(?P<target>[^/]+){rest}", ServerProxyHandler),
        (rf"{PROXY_PREFIX}/{_ID}/apps/(?P<target>[^/]+){rest}", ServerAppProxyHandler),
    ]
