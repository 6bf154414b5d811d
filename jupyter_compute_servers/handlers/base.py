"""The handler base every compute servers endpoint derives from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin

from ..errors import ComputeServersError, ValidationError

if TYPE_CHECKING:
    from ..billing.service import ComputeServerCosts
    from ..clouds.base import Cloud
    from ..hosts import HostRegistry
    from ..images.catalog import ImageCatalog
    from ..manager import ComputeServerManager
    from ..presenter import ServerPresenter
    from ..sync.service import SyncService

#: The resource name that authorizers see for every compute servers endpoint.
AUTH_RESOURCE = "compute_servers"


class ComputeServersAPIHandler(ExtensionHandlerMixin, APIHandler):
    """JSON in, JSON out; a ComputeServersError becomes its status with a JSON body."""

    auth_resource = AUTH_RESOURCE

    # The services, as the extension put them in the web app's settings (app.handler_settings).

    @property
    def manager(self) -> ComputeServerManager:
        return self.settings["compute_servers_manager"]

    @property
    def presenter(self) -> ServerPresenter:
        return self.settings["compute_servers_presenter"]

    @property
    def costs(self) -> ComputeServerCosts:
        return self.settings["compute_servers_costs"]

    @property
    def sync(self) -> SyncService:
        return self.settings["compute_servers_sync"]

    @property
    def hosts(self) -> HostRegistry:
        return self.settings["compute_servers_hosts"]

    @property
    def images(self) -> ImageCatalog:
        return self.settings["compute_servers_images"]

    @property
    def clouds(self) -> dict[str, Cloud]:
        return self.settings["compute_servers_clouds"]

    def get_json_object(self) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 that says what is wrong with it."""
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValidationError(f"The request body is not valid JSON: {e}", field="body") from e
        if not isinstance(body, dict):
            raise ValidationError("The request body must be a JSON object.", field="body")
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, ComputeServersError):
            self.set_status(error.status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(error.to_json()))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Expected errors (a 409 for a wrong state, a 400 for bad input) are answers, not bugs:
        # log them briefly instead of with a traceback.
        if isinstance(value, ComputeServersError):
            self.log.info(
                "%s %s: %s %s", self.request.method, self.request.path, value.status, value.message
            )
            return
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ComputeServersError) and not self._finished:
            self.log_exception(type(e), e, e.__traceback__)
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)
