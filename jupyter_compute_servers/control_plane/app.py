"""The control plane's web service: JupyterHub runs it (``c.JupyterHub.services``, with a
``command`` and a ``url``) and vouches for its callers.

Every request is authenticated by JupyterHub (``jupyterhub.services.auth.HubAuth``: the
caller's Hub token, checked with the Hub, which must carry
``access:services!service=<this service>``). Only users get certificates, each for the Unix
account the admin's rule gives them; services and unknown tokens are refused.

- ``GET  <prefix>api/ca``: the CA's public key (for an admin's ``TrustedUserCAKeys``).
- ``POST <prefix>api/certificates`` ``{"public_key": "...", "principal": optional}``: a
  short-lived user certificate, ``{"certificate", "principal", "key_id", "serial",
  "valid_after", "valid_before"}``.
- ``POST <prefix>api/database-credentials`` ``{}``: a new short-lived login of the caller's to
  the team's PostgreSQL (``logins``), ``{"user", "password", "expires_at", "hub_user",
  "admin", "host", "port", "dbname"}``.

Each is routed only where the control plane was given what it needs (``--ca-key``,
``--db-url``).

Errors are JSON ``{message, reason, field}``, as the extension's own API answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import urlparse

from tornado import web

from .ca import CAError, CertificateAuthority
from .logins import DatabaseLogins

log = logging.getLogger("jupyter_compute_servers.control_plane")

#: The most a request body may be (a public key and a principal are far less).
MAX_BODY = 16 * 1024


def _hub_auth_classes() -> tuple[type, type]:
    """JupyterHub's auth mixin and class (imported here: the control plane runs beside the
    Hub, which is installed there; the extension itself does not need JupyterHub)."""
    from jupyterhub.services.auth import HubAuth, HubAuthenticated

    return HubAuth, HubAuthenticated


HubAuth, HubAuthenticated = _hub_auth_classes()


class ControlPlaneHandler(HubAuthenticated, web.RequestHandler):  # type: ignore[misc,valid-type]
    """Authenticated by the Hub in ``prepare``; answers JSON, errors included."""

    def initialize(
        self, ca: CertificateAuthority | None = None, logins: DatabaseLogins | None = None
    ) -> None:
        self.ca = ca
        self.logins = logins

    async def prepare(self) -> None:
        try:
            model = await self.hub_auth.get_user(self, sync=False)
        except web.HTTPError as e:
            # HubAuth answers 500 when it cannot reach the Hub: that is an upstream failure
            # (502), and the caller should learn what to do about it.
            if e.status_code < 500:
                raise
            raise CAError(
                "The control plane could not reach JupyterHub to check your token. Try again "
                "in a moment; if it persists, ask an admin whether the Hub is running.",
                status=502,
                field="token",
            ) from None
        if not model:
            raise CAError(
                "Authenticate with a JupyterHub token (Authorization: token ...).",
                status=401,
                field="token",
            )
        try:
            self.check_hub_user(model)
        except Exception:
            raise CAError(
                f"{model.get('kind', 'user')} {model.get('name')} may not use this service: "
                f"its token lacks the scope {', '.join(sorted(self.hub_scopes or ()))}.",
                status=403,
                field="token",
            ) from None
        if model.get("kind", "user") != "user":
            raise CAError(
                "Certificates and database logins are issued to Hub users only.",
                status=403,
                field="token",
            )
        self.hub_user_model = model

    def json_body(self, fields: set[str]) -> dict[str, Any]:
        """The request's JSON object, of ``fields`` only."""
        if len(self.request.body) > MAX_BODY:
            raise CAError("The request body is too large.", status=413, field="body")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise CAError("The body must be JSON.", field="body") from None
        if not isinstance(body, dict):
            raise CAError("The body must be a JSON object.", field="body")
        unknown = sorted(set(body) - fields)
        if unknown:
            raise CAError(f"{unknown[0]} is not a field of this request.", field=unknown[0])
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, CAError):
            body = {"message": error.message, "reason": "CAError", "field": error.field}
        else:
            body = {"message": self._reason, "reason": "HTTPError", "field": None}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, CAError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class CAHandler(ControlPlaneHandler):
    def get(self) -> None:
        assert self.ca is not None
        self.finish({"public_key": self.ca.public_key})


class CertificatesHandler(ControlPlaneHandler):
    def post(self) -> None:
        assert self.ca is not None
        if not self.request.body:
            raise CAError("The body must be JSON.", field="body")
        body = self.json_body({"public_key", "principal"})
        name = str(self.hub_user_model["name"])
        issued = self.ca.sign(name, body.get("public_key"), body.get("principal"))
        # The audit trail of who got which account: the key id and serial are also in each
        # host's sshd log line for a login with it.
        log.info(
            "Issued certificate %d to Hub user %s for Unix account %s, valid until %d",
            issued.serial,
            name,
            issued.principal,
            issued.valid_before,
        )
        self.set_status(201)
        self.finish(issued.to_json())


class DatabaseCredentialsHandler(ControlPlaneHandler):
    async def post(self) -> None:
        assert self.logins is not None
        self.json_body(set())
        model = self.hub_user_model
        # (a few statements on the database: off the event loop)
        answer = await asyncio.to_thread(self.logins.issue, model)
        # Who got which login, never its password.
        log.info(
            "Issued database login %s to Hub user %s (%s), valid until %d",
            answer["user"],
            answer["hub_user"],
            "admin" if answer["admin"] else "user",
            answer["expires_at"],
        )
        self.set_header("Cache-Control", "no-store")
        self.set_status(201)
        self.finish(answer)


def make_app(
    ca: CertificateAuthority | None,
    prefix: str | None = None,
    *,
    logins: DatabaseLogins | None = None,
) -> web.Application:
    """The tornado application, its routes under the service's prefix (JupyterHub's
    ``JUPYTERHUB_SERVICE_PREFIX``, e.g. ``/services/compute-control/``)."""
    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    routes: list[Any] = []
    if ca is not None:
        routes += [
            (f"{prefix}api/ca", CAHandler, {"ca": ca}),
            (f"{prefix}api/certificates", CertificatesHandler, {"ca": ca}),
        ]
    if logins is not None:
        routes.append(
            (f"{prefix}api/database-credentials", DatabaseCredentialsHandler, {"logins": logins})
        )
    return web.Application(
        routes,
        # The Hub's token in a header is the only credential: no cookies, so no XSRF.
        xsrf_cookies=False,
    )


def listen_address(url: str | None = None) -> tuple[str, int]:
    """Where to listen: the service's ``url`` from the Hub (``JUPYTERHUB_SERVICE_URL``)."""
    parsed = urlparse(url or os.environ.get("JUPYTERHUB_SERVICE_URL") or "")
    if not parsed.hostname or not parsed.port:
        raise CAError(
            "No address to listen on: give the service a url in c.JupyterHub.services "
            "(e.g. http://127.0.0.1:10101), or --url.",
            field="url",
        )
    return parsed.hostname, parsed.port


__all__ = ["HubAuth", "listen_address", "make_app"]
