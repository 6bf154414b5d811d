"""The handler base every compute servers endpoint derives from."""

from __future__ import annotations

import json
from http.client import responses
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from sqlalchemy.exc import DBAPIError
from tornado import web

from ..errors import (
    ComputeServersError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from ..models import parse_path_id
from ..team import Identity, current_actor

if TYPE_CHECKING:
    from ..billing.service import ComputeServerCosts
    from ..clouds.base import Cloud
    from ..hosts import HostRegistry
    from ..images.catalog import ImageCatalog
    from ..manager import ComputeServerManager
    from ..mount.service import MountService
    from ..presenter import ServerPresenter
    from ..store import ServerStore
    from ..sync.service import SyncService
    from ..team import Team

#: The resource name that authorizers see for every compute servers endpoint.
AUTH_RESOURCE = "compute_servers"
#: No request of this API needs more (a create with every option is about 1 KB).
MAX_BODY_BYTES = 1024 * 1024


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
    def mounts(self) -> MountService:
        return self.settings["compute_servers_mounts"]

    @property
    def hosts(self) -> HostRegistry:
        return self.settings["compute_servers_hosts"]

    @property
    def images(self) -> ImageCatalog:
        return self.settings["compute_servers_images"]

    @property
    def clouds(self) -> dict[str, Cloud]:
        return self.settings["compute_servers_clouds"]

    @property
    def team(self) -> Team:
        return self.settings["compute_servers_team"]

    @property
    def store(self) -> ServerStore:
        return self.settings["compute_servers_store"]

    @property
    def identity(self) -> Identity:
        """Who is asking: the Hub user (team mode) or the local user (standalone)."""
        return self.team.identity(self.current_user)

    def require_admin(self, what: str) -> Identity:
        """The caller, if a compute servers admin (always so standalone); else a 403."""
        identity = self.identity
        if not identity.admin:
            raise ForbiddenError(
                f"Only a compute servers admin may {what}; {self.team.who_may_administer()}.",
                field="user",
            )
        return identity

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self.current_user is not None:
            # (with a control plane: whether the owner is an admin, asked again when old)
            await self.team.refresh_admin()
            identity = self.identity
            # The audit's actor for what this request changes, and the work it begins.
            current_actor.set(identity.name)
            if self.team.remember(identity):
                # The owner's Hub groups as their requests carry them, for spend per group.
                self.store.remember_member(identity.name, identity.groups)
        # No request of this API needs a large body: refuse one before anything parses it.
        if len(self.request.body or b"") > MAX_BODY_BYTES:
            raise PayloadTooLargeError(
                f"The request body is {len(self.request.body)} bytes; this API takes at most "
                f"{MAX_BODY_BYTES}.",
                field="body",
            )

    def path_id(
        self,
        segment: str,
        field: str = "server_id",
        what: str = "compute server",
        *,
        owned: bool = True,
    ) -> int:
        """An id from the URL, or a JSON 404 naming it (``servers/abc``).

        In team mode a server's id must also be the caller's own (``owned``): another user's
        is the 404 of an unknown one here, before any service reads the tables keyed by it
        (syncs, kernels, terminals), though the scoped store refuses it there too."""
        number = parse_path_id(segment, field, what)
        if owned and field == "server_id" and self.team.enabled:
            self.manager.get_server(number)
        return number

    def get_json_object(self, *, required: bool = False) -> dict[str, Any]:
        """The request body as a JSON object, or a 400 that says what is wrong with it.
        Without a body: ``{}``, or a 400 when the operation needs one (``required``)."""
        if not self.request.body:
            if required:
                raise ValidationError("This request needs a JSON object as its body.", field="body")
            return {}
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValidationError(f"The request body is not valid JSON: {e}", field="body") from e
        except RecursionError:
            raise ValidationError(
                "The request body is nested too deeply to be a request of this API.", field="body"
            ) from None
        if not isinstance(body, dict):
            raise ValidationError("The request body must be a JSON object.", field="body")
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        self.write_json_text(json.dumps(data), status)

    def write_json_text(self, text: str, status: int = 200) -> None:
        """Answer ``text``, JSON already encoded."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        self.set_header("Content-Type", "application/json")
        if isinstance(error, ComputeServersError):
            self.set_status(error.status)
            self.finish(json.dumps(error.to_json()))
            return
        # Jupyter's own answers (401, 403, 405, an unexpected 500) in the same shape, with the
        # status's name as the reason; never a traceback.
        reason = responses.get(status_code, "Error")
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        message = reason
        if isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        elif status_code >= 500:
            message = "Internal error; the Jupyter server's log has the details."
        self.finish(json.dumps({"message": message, "reason": reason}))

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this handler serves (for a 405's ``Allow`` header)."""
        return [
            method
            for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
            if getattr(cls, method.lower()) is not getattr(web.RequestHandler, method.lower())
        ]

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
        refused = _database_refusal(e)
        if refused is not None:
            e = refused
        if isinstance(e, ComputeServersError) and not self._finished:
            self.log_exception(type(e), e, e.__traceback__)
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


def _database_refusal(error: BaseException) -> ForbiddenError | None:
    """A statement the team's database refused to this user's login (team mode with
    database logins, ``db/roles``: PostgreSQL's insufficient_privilege, 42501): a 403 saying
    so, not a 500. The extension does not attempt what a user may not do; this is the answer
    when the user servers and the control plane disagree on who is an admin."""
    if not isinstance(error, DBAPIError):
        return None
    if getattr(error.orig, "sqlstate", None) != "42501":
        return None
    return ForbiddenError(
        f"The team database refused this to your login: {str(error.orig).strip()}. If you "
        f"are an admin, ask whoever runs the control plane to list you (--admin-user or "
        f"--admin-group).",
        field="user",
    )


class NotFoundHandler(ComputeServersAPIHandler):
    """Any other path under the API: a JSON 404 rather than Jupyter's HTML page."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        raise NotFoundError(f"No such endpoint: {path[:100]!r}.", field="path")

    post = patch = put = delete = get
