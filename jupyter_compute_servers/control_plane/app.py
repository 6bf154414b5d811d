"""The control plane's web service: JupyterHub runs it (``c.JupyterHub.services``, with a
``command`` and a ``url``) and vouches for its callers.

Every request is authenticated by JupyterHub (``jupyterhub.services.auth.HubAuth``: the
caller's Hub token, checked with the Hub, which must carry
``access:services!service=<this service>``). Only users are served; services and unknown
tokens are refused.

The SSH certificate authority (``ca.py``), when the control plane has a CA key:

- ``GET  <prefix>api/ca``: the CA's public key (for an admin's ``TrustedUserCAKeys``).
- ``POST <prefix>api/certificates`` ``{"public_key": "...", "principal": optional}``: a
  short-lived user certificate, ``{"certificate", "principal", "key_id", "serial",
  "valid_after", "valid_before"}``; only for the Unix account the admin's rule gives the user.

Short-lived database logins (``logins.py``), when the control plane has the database owner's
URL (``--db-url``):

- ``POST <prefix>api/database-credentials`` ``{}``: a new short-lived login of the caller's to
  the team's PostgreSQL, ``{"user", "password", "expires_at", "hub_user", "admin", "host",
  "port", "dbname"}``.

Who is an admin (``admins.py``), always: the one rule of the team, which the user servers
ask rather than keep a copy of:

- ``GET <prefix>api/me``: ``{"name", "admin", "groups"}`` of the caller (Hub admins, and
  ``--admin-user``/``--admin-group``).

Revocation (``revocations.py``), always:

- ``GET <prefix>api/revocations``: ``{"revocations": [{"user", "revoked_by", "revoked_at"}]}``
  (admins only, by ``AdminRule``; others 403).
- ``POST <prefix>api/revocations`` ``{"user": NAME}``: revoke NAME's access at once (no more
  certificates, database logins, OpenStack tokens or proxied Compute Engine calls: 403 with
  ``revocations.REVOKED_MESSAGE``; their database role NOLOGIN and its sessions ended; their
  unexpired certificates in the KRL; the OpenStack tokens issued to them revoked in Keystone);
  201 with the revocation, ``database_sessions_ended`` and ``openstack_tokens_revoked``.
- ``DELETE <prefix>api/revocations/<NAME>``: restore; 204 (404 when NAME is not revoked).
- ``GET <prefix>api/revoked-keys`` (with the CA): the OpenSSH KRL of the revoked certificates,
  for hosts' ``RevokedKeys``; **unauthenticated**, as a CRL is: hosts have no Hub token, and it
  holds serial numbers only.

Kubernetes credentials (``kubernetes.py``), when the control plane has the cluster admin's
kubeconfig (``--kubeconfig``):

- ``POST <prefix>api/kubernetes-credentials`` ``{}``: a short-lived token of a ServiceAccount
  that may act only in the caller's own namespace (made, with its Role and RoleBinding, on
  first use), ``{"server", "certificate_authority_data", "namespace", "token",
  "expires_at"}``. Revoking a user deletes their RoleBinding, so their tokens stop working.

The Compute Engine proxy (``gce.py``), when the control plane has a service account key:

- ``GET <prefix>api/gce``: ``{"project": ...}``, the project the proxy acts in.
- ``<prefix>gce/compute/v1/projects/<project>/...``: the Compute Engine REST calls of the gcp
  cloud, forwarded with the service account's token when the policy allows (the caller's
  token is the bearer token: ``Authorization: Bearer <Hub token>``).

OpenStack tokens (``openstack.py``), when the control plane has the service user's clouds.yaml
(``--openstack-clouds-yaml``):

- ``POST <prefix>api/openstack-credentials`` ``{}``: a new Keystone token scoped to the caller's
  own project (``--openstack-project-template``), ``{"auth_url", "token", "project_id",
  "project_name", "region", "expires_at", "issued_at", "catalog"}`` (times in seconds since the
  epoch; ``catalog``: the token's service catalogue). 403 when no project of the user's gives
  the control plane's OpenStack user a role and it may not make one; 409 when it may, but a
  project of that name is someone else's, or its role there was taken away; 502 when Keystone
  lets the project's token make credentials (the project's first token of this run is tried
  first: ``openstack_confinement.py``; the message names the policy.yaml lines); revoking the
  user revokes their tokens in Keystone.

Errors are JSON ``{message, reason, field}``, as the extension's own API answers (the proxy's
also carry Google's ``error`` object, which the client library reads).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.exc import SQLAlchemyError
from tornado import web

from .admins import AdminRule
from .ca import CertificateAuthority
from .errors import ControlPlaneError
from .gce import Caller, GCEProxy, _Passed, google_error_body
from .kubernetes import KubernetesIssuer
from .logins import DatabaseLogins
from .openstack import OpenStackTokens
from .revocations import Revocations, valid_user

log = logging.getLogger("jupyter_compute_servers.control_plane")

#: The most a request body may be (a public key and a principal are far less).
MAX_BODY = 16 * 1024
#: The most a proxied Compute Engine call's body may be (an insert is ~20 KB).
MAX_PROXIED_BODY = 1024 * 1024


def _hub_auth_classes() -> tuple[type, type]:
    """JupyterHub's auth mixin and class (imported here: the control plane runs beside the
    Hub, which is installed there; the extension itself does not need JupyterHub)."""
    from jupyterhub.services.auth import HubAuth, HubAuthenticated

    return HubAuth, HubAuthenticated


HubAuth, HubAuthenticated = _hub_auth_classes()


class ControlPlaneHandler(HubAuthenticated, web.RequestHandler):  # type: ignore[misc,valid-type]
    """Authenticated by the Hub in ``prepare``; answers JSON, errors included."""

    async def prepare(self) -> None:
        try:
            model = await self.hub_auth.get_user(self, sync=False)
        except web.HTTPError as e:
            # HubAuth answers 500 when it cannot reach the Hub: that is an upstream failure
            # (502), and the caller should learn what to do about it.
            if e.status_code < 500:
                raise
            raise ControlPlaneError(
                "The control plane could not reach JupyterHub to check your token. Try again "
                "in a moment; if it persists, ask an admin whether the Hub is running.",
                status=502,
                field="token",
            ) from None
        if not model:
            raise ControlPlaneError(
                "Authenticate with a JupyterHub token (Authorization: token ...).",
                status=401,
                field="token",
            )
        try:
            self.check_hub_user(model)
        except Exception:
            raise ControlPlaneError(
                f"{model.get('kind', 'user')} {model.get('name')} may not use this service: "
                f"its token lacks the scope {', '.join(sorted(self.hub_scopes or ()))}.",
                status=403,
                field="token",
            ) from None
        if model.get("kind", "user") != "user":
            raise ControlPlaneError(
                "The control plane serves Hub users only.", status=403, field="token"
            )
        self.hub_user_model = model

    def json_body(self, fields: set[str]) -> dict[str, Any]:
        """The request's JSON object, of ``fields`` only."""
        if len(self.request.body) > MAX_BODY:
            raise ControlPlaneError("The request body is too large.", status=413, field="body")
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise ControlPlaneError("The body must be JSON.", field="body") from None
        if not isinstance(body, dict):
            raise ControlPlaneError("The body must be a JSON object.", field="body")
        unknown = sorted(set(body) - fields)
        if unknown:
            raise ControlPlaneError(
                f"{unknown[0]} is not a field of this request.", field=unknown[0]
            )
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any]
        if isinstance(error, ControlPlaneError):
            body = {"message": error.message, "reason": type(error).__name__, "field": error.field}
        else:
            body = {"message": self._reason, "reason": "HTTPError", "field": None}
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ControlPlaneError):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class CAHandler(ControlPlaneHandler):
    def initialize(self, ca: CertificateAuthority) -> None:
        self.ca = ca

    def get(self) -> None:
        self.finish({"public_key": self.ca.public_key})


class MeHandler(ControlPlaneHandler):
    """Who the caller is to the team: whether an admin, by the one rule (``AdminRule``)."""

    def initialize(self, admins: AdminRule) -> None:
        self.admins = admins

    def get(self) -> None:
        model = self.hub_user_model
        self.set_header("Cache-Control", "no-store")
        self.finish(
            {
                "name": str(model["name"]),
                "admin": self.admins.is_admin(model),
                "groups": sorted(str(g) for g in model.get("groups") or ()),
            }
        )


class CertificatesHandler(ControlPlaneHandler):
    def initialize(self, ca: CertificateAuthority, revocations: Revocations | None) -> None:
        self.ca = ca
        self.revocations = revocations

    async def post(self) -> None:
        if not self.request.body:
            raise ControlPlaneError("The body must be JSON.", field="body")
        body = self.json_body({"public_key", "principal"})
        name = str(self.hub_user_model["name"])
        if self.revocations is not None:
            self.revocations.check(name)
        issued = self.ca.sign(name, body.get("public_key"), body.get("principal"))
        if self.revocations is not None:
            # Remembered before it is handed out, so a revocation lists it (the file's write
            # off the event loop; refused if the user was revoked meanwhile).
            await asyncio.to_thread(
                self.revocations.record_issued, issued.serial, name, issued.valid_before
            )
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


class GCEInfoHandler(ControlPlaneHandler):
    def initialize(self, proxy: GCEProxy) -> None:
        self.proxy = proxy

    def get(self) -> None:
        self.finish({"project": self.proxy.project})


class GCEProxyHandler(ControlPlaneHandler):
    """``gce/compute/v1/projects/<project>/<path>``: checked by the proxy's policy, then
    forwarded; refusals in our JSON and Google's."""

    def initialize(self, proxy: GCEProxy, revocations: Revocations | None) -> None:
        self.proxy = proxy
        self.revocations = revocations

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(error, ControlPlaneError):
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(google_error_body(error)))

    async def _proxy(self, project: str, path: str) -> None:
        if len(self.request.body) > MAX_PROXIED_BODY:
            raise ControlPlaneError("The request body is too large.", status=413, field="body")
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        caller: Caller = self.proxy.caller(self.hub_user_model)
        method = self.request.method or "GET"
        if self.revocations is not None:
            self.revocations.check(caller.name)
        try:
            answer = await self.proxy.handle(
                caller, method, project, path, query, self.request.body
            )
        except _Passed as passed:
            answer = passed.answer
        except ControlPlaneError as e:
            # The audit trail of refusals too: who tried what on whose VM.
            log.warning(
                "Refused %s %r to %s: %s", method, f"{project}/{path}", caller.name, e.message
            )
            raise
        self.set_status(answer.status)
        self.set_header("Content-Type", answer.content_type)
        self.finish(answer.body)

    async def get(self, project: str, path: str) -> None:
        await self._proxy(project, path)

    async def post(self, project: str, path: str) -> None:
        await self._proxy(project, path)

    async def delete(self, project: str, path: str) -> None:
        await self._proxy(project, path)


class _CredentialsHandler(ControlPlaneHandler):
    """``POST {}``: a short-lived credential of the caller's own, from ``issuer`` (a revoked
    caller is refused before, and the issuer asks ``refuse`` again once it has made one, so a
    revocation in between is not undone by this issue). Answered ``no-store``, 201; the log
    says who got what, never the secret."""

    def initialize(self, issuer: Any, revocations: Revocations | None) -> None:
        self.issuer = issuer
        self.revocations = revocations

    async def issue(self, model: dict[str, Any], refuse: Any) -> dict[str, Any]:
        raise NotImplementedError

    def issued(self, answer: dict[str, Any], name: str) -> str:
        """The log line's words for what ``answer`` gave Hub user ``name``."""
        raise NotImplementedError

    async def post(self) -> None:
        self.json_body(set())
        model = self.hub_user_model
        name = str(model["name"])
        refuse = self.revocations.check if self.revocations is not None else None
        if refuse is not None:
            refuse(name)
        answer = await self.issue(model, refuse)
        log.info("Issued %s, valid until %d", self.issued(answer, name), answer["expires_at"])
        self.set_header("Cache-Control", "no-store")
        self.set_status(201)
        self.finish(answer)


class DatabaseCredentialsHandler(_CredentialsHandler):
    async def issue(self, model: dict[str, Any], refuse: Any) -> dict[str, Any]:
        # (a few statements on the database: off the event loop; asked again under the
        # login's lock there)
        logins: DatabaseLogins = self.issuer
        return await asyncio.to_thread(logins.issue, model, refuse)

    def issued(self, answer: dict[str, Any], name: str) -> str:
        role = "admin" if answer["admin"] else "user"
        return f"database login {answer['user']} to Hub user {answer['hub_user']} ({role})"


class OpenStackCredentialsHandler(_CredentialsHandler):
    async def issue(self, model: dict[str, Any], refuse: Any) -> dict[str, Any]:
        # (Keystone calls: off the event loop; asked again once the token is made)
        openstack: OpenStackTokens = self.issuer
        return await asyncio.to_thread(openstack.issue, str(model["name"]), refuse)

    def issued(self, answer: dict[str, Any], name: str) -> str:
        return f"an OpenStack token of project {answer['project_name']} to Hub user {name}"


class KubernetesCredentialsHandler(_CredentialsHandler):
    async def issue(self, model: dict[str, Any], refuse: Any) -> dict[str, Any]:
        kubernetes: KubernetesIssuer = self.issuer
        return await kubernetes.issue(str(model["name"]), refuse)

    def issued(self, answer: dict[str, Any], name: str) -> str:
        return f"a Kubernetes token of namespace {answer['namespace']} to Hub user {name}"


class _RevocationsBase(ControlPlaneHandler):
    """Admins only."""

    def initialize(
        self,
        revocations: Revocations,
        admins: AdminRule,
        logins: DatabaseLogins | None,
        openstack: OpenStackTokens | None = None,
        kubernetes: KubernetesIssuer | None = None,
    ) -> None:
        self.revocations = revocations
        self.admins = admins
        self.logins = logins
        self.openstack = openstack
        self.kubernetes = kubernetes

    def _admin(self) -> str:
        model = self.hub_user_model
        if not self.admins.is_admin(model):
            raise ControlPlaneError(
                f"{model.get('name')} is not a team admin: only admins revoke or restore "
                f"access (Hub admins, --admin-user, --admin-group).",
                status=403,
                field="token",
            )
        return str(model["name"])


class RevocationsHandler(_RevocationsBase):
    """An admin's list and revoke."""

    def get(self) -> None:
        self._admin()
        self.finish({"revocations": [r.to_json() for r in self.revocations.list()]})

    async def post(self) -> None:
        admin = self._admin()
        body = self.json_body({"user"})
        user = valid_user(body.get("user"))
        if user == admin:
            raise ControlPlaneError(
                "An admin may not revoke their own access (ask another admin).", field="user"
            )
        revocation = await asyncio.to_thread(self.revocations.revoke, user, admin)
        log.warning("Hub user %s's access revoked by admin %s", user, admin)
        ended = 0
        if self.logins is not None:
            try:
                ended = await asyncio.to_thread(self.logins.disable, user)
            except SQLAlchemyError as e:
                raise ControlPlaneError(
                    f"{user} is revoked (no new credentials), but their database login could "
                    f"not be disabled: {getattr(e, 'orig', None) or e}. Revoke again once the "
                    f"database answers.",
                    status=502,
                    field="user",
                ) from None
            log.warning("Disabled %s's database login, ending %d sessions", user, ended)
        tokens = 0
        if self.openstack is not None:
            tokens = await asyncio.to_thread(self.openstack.revoke_user, user)
            log.warning("Revoked %d OpenStack tokens of %s in Keystone", tokens, user)
        if self.kubernetes is not None:
            try:
                await self.kubernetes.revoke(user)
            except ControlPlaneError as e:
                raise ControlPlaneError(
                    f"{user} is revoked (no new credentials), but their Kubernetes binding could "
                    f"not be deleted: {e.message} Revoke again once the cluster answers.",
                    status=502,
                    field="user",
                ) from None
            log.warning("Unbound %s's Kubernetes ServiceAccount: their tokens stop working", user)
        self.set_status(201)
        self.finish(
            {
                **revocation.to_json(),
                "database_sessions_ended": ended,
                "openstack_tokens_revoked": tokens,
            }
        )


class RevocationHandler(_RevocationsBase):
    """An admin's restore: ``DELETE .../revocations/<name>`` (tornado has decoded it)."""

    async def delete(self, name: str) -> None:
        admin = self._admin()
        user = valid_user(name)
        if not await asyncio.to_thread(self.revocations.restore, user):
            raise ControlPlaneError(f"{user} is not revoked.", status=404, field="user")
        log.warning("Hub user %s's access restored by admin %s", user, admin)
        self.set_status(204)
        self.finish()


class RevokedKeysHandler(web.RequestHandler):
    """The KRL, unauthenticated (see the module's docstring): sshd's ``RevokedKeys`` on hosts
    fetch it with curl, having no Hub token."""

    def initialize(self, ca: CertificateAuthority, revocations: Revocations) -> None:
        self.ca = ca
        self.revocations = revocations

    async def get(self) -> None:
        try:
            krl = await asyncio.to_thread(self.revocations.krl, self.ca.public_key)
        except ControlPlaneError as e:
            self.set_status(e.status)
            self.finish({"message": e.message, "reason": type(e).__name__, "field": e.field})
            return
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Cache-Control", "no-store")
        self.finish(krl)


def make_app(
    ca: CertificateAuthority | None,
    prefix: str | None = None,
    *,
    gce: GCEProxy | None = None,
    logins: DatabaseLogins | None = None,
    revocations: Revocations | None = None,
    admins: AdminRule | None = None,
    openstack: OpenStackTokens | None = None,
    kubernetes: KubernetesIssuer | None = None,
) -> web.Application:
    """The tornado application, its routes under the service's prefix (JupyterHub's
    ``JUPYTERHUB_SERVICE_PREFIX``, e.g. ``/services/compute-control/``): the CA's, the Compute
    Engine proxy's and the database logins' where it has each, and the revocations' with
    ``revocations`` (who may revoke: ``admins``)."""
    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    routes: list[Any] = [(f"{prefix}api/me", MeHandler, {"admins": admins or AdminRule()})]
    if ca is not None:
        routes += [
            (f"{prefix}api/ca", CAHandler, {"ca": ca}),
            (
                f"{prefix}api/certificates",
                CertificatesHandler,
                {"ca": ca, "revocations": revocations},
            ),
        ]
    if gce is not None:
        routes += [
            (f"{prefix}api/gce", GCEInfoHandler, {"proxy": gce}),
            (
                f"{prefix}gce/compute/v1/projects/([^/]+)/(.+)",
                GCEProxyHandler,
                {"proxy": gce, "revocations": revocations},
            ),
        ]
    if logins is not None:
        routes.append(
            (
                f"{prefix}api/database-credentials",
                DatabaseCredentialsHandler,
                {"issuer": logins, "revocations": revocations},
            )
        )
    if openstack is not None:
        routes.append(
            (
                f"{prefix}api/openstack-credentials",
                OpenStackCredentialsHandler,
                {"issuer": openstack, "revocations": revocations},
            )
        )
    if kubernetes is not None:
        routes.append(
            (
                f"{prefix}api/kubernetes-credentials",
                KubernetesCredentialsHandler,
                {"issuer": kubernetes, "revocations": revocations},
            )
        )
    if revocations is not None:
        options = {
            "revocations": revocations,
            "admins": admins or AdminRule(),
            "logins": logins,
            "openstack": openstack,
            "kubernetes": kubernetes,
        }
        routes += [
            (f"{prefix}api/revocations", RevocationsHandler, options),
            (f"{prefix}api/revocations/([^/]+)", RevocationHandler, options),
        ]
        if ca is not None:
            routes.append(
                (
                    f"{prefix}api/revoked-keys",
                    RevokedKeysHandler,
                    {"ca": ca, "revocations": revocations},
                )
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
        raise ControlPlaneError(
            "No address to listen on: give the service a url in c.JupyterHub.services "
            "(e.g. http://127.0.0.1:10101), or --url.",
            field="url",
        )
    return parsed.hostname, parsed.port


__all__ = ["HubAuth", "listen_address", "make_app"]
