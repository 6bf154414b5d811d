"""The control plane as the issuer of **short-lived, project-scoped Keystone tokens**: the
OpenStack service user's credentials (a clouds.yaml entry, a 0600 file of the Hub's account)
live only here, and each Hub user's Jupyter server gets, at ``POST api/openstack-credentials``,
a token of that user's own project and nothing else.

Why a project per Hub user and Keystone's own tokens (not a proxy as for Compute Engine): in
OpenStack the project is the unit every service isolates by (Nova, Neutron, Cinder and Glance
answer a project-scoped token with that project's resources only), so a token scoped to a
project of the user's own reaches only their VMs, with no policy of ours to keep in step with
each service's API; and a Keystone token expires by itself (Keystone's ``[token] expiration``)
and can be revoked (``DELETE /v3/auth/tokens``).

The Hub user's project is named by a rule (``project_template``, ``compute-{user}`` by
default). With ``create_projects`` the control plane makes a missing project (tagged
``TAG``) and gives the service user the member role there (a project of that name it did not
make is left alone: 409); without, an admin makes it and the role assignment, and a user
without one is told so (403). Only project creation needs the service user to be an admin: a
project it has a role on is found by a login scoped to it by name.

The tokens are the service user's, scoped to the user's project: Keystone would let a *scoped*
token be exchanged for one of another project of the same Keystone user (the token auth method)
when ``[token] allow_rescope_scoped_token`` is on, its default; the service user has a role on
every user's project, so that would reach everyone's. The control plane therefore checks at
start that Keystone refuses to rescope a scoped token, and refuses to run otherwise
(``check_no_rescope``). For the same reason a token must not make credentials of that Keystone
user that outlive it or name another project (EC2 and application credentials, trusts, generic
credentials): Keystone's policy must deny them to the issued tokens, and the control plane
tries each with a token of the kind it issues, at start where it can and before the first token
of each project is served (``check_confined``, ``openstack_confinement.py``), serving none
otherwise. What an admin may also deny in Keystone's policy, unchecked: listing the projects the
service user has a role on (``identity:get_auth_projects``, ``identity:list_user_projects``),
which shows every token the names of everyone's projects; the control plane needs neither.

The tokens issued are remembered per user until they expire, **in memory** (a restarted control
plane forgets them: revoking a user then cannot revoke their tokens from before the restart,
which still expire within Keystone's token lifetime), so that revoking a user revokes them in
Keystone at once (``revoke_user``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ControlPlaneError
from .openstack_confinement import NAMES_LISTED, names_listed, refusal, unconfined
from .private_files import check_private

if TYPE_CHECKING:
    from keystoneauth1.session import Session

log = logging.getLogger("jupyter_compute_servers.control_plane")

#: The tag on projects the control plane made (so it may give itself a role there again).
TAG = "jupyter-compute-servers"
#: Keystone's limit on a project's name.
MAX_PROJECT_NAME = 64
_IDENTITY = {"service_type": "identity", "interface": "public", "version": (3, 0)}


class OpenStackRefused(ControlPlaneError):
    """OpenStack credentials the control plane cannot issue (the message says what to do)."""


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: float


@dataclass
class OpenStackTokens:
    """Issues project-scoped tokens of the service user (``service``: its keystoneauth session,
    scoped to its own project; ``password_auth``: the settings of its password plugin)."""

    service: Session
    password_auth: dict[str, Any]
    region: str
    project_template: str = "compute-{user}"
    create_projects: bool = False
    role: str = "member"
    _projects: dict[str, tuple[str, str]] = field(default_factory=dict)
    _issued: dict[str, list[Issued]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _project_lock: threading.Lock = field(default_factory=threading.Lock)
    #: The projects whose tokens Keystone was seen to confine (``check_confined``).
    _confined: set[str] = field(default_factory=set)
    _confine_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def auth_url(self) -> str:
        return str(self.password_auth["auth_url"])

    def project_name(self, user: str) -> str:
        name = self.project_template.format(user=user)
        if not name or len(name) > MAX_PROJECT_NAME:
            raise OpenStackRefused(
                f"{user}'s OpenStack project name {name!r} is not 1 to {MAX_PROJECT_NAME} "
                f"characters: an admin changes --openstack-project-template.",
                status=403,
                field="user",
            )
        return name

    # --- Keystone calls (blocking: the handler runs them in a thread) --------------------------

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        response = self.service.get(path, endpoint_filter=_IDENTITY, params=params)
        return dict(response.json())

    def _service_ids(self) -> tuple[str, str]:
        """The service user's id and its own project's domain id."""
        access = self.service.auth.get_access(self.service)  # type: ignore[union-attr]
        return str(access.user_id), str(access.project_domain_id or "default")

    def _project(self, user: str) -> tuple[str, str]:
        """(id, name) of ``user``'s project, made when missing and allowed."""
        if user in self._projects:
            return self._projects[user]
        name = self.project_name(user)
        user_id, domain = self._service_ids()
        # A project the service user has a role on: a login scoped to it by name works (not a
        # listing, GET /v3/auth/projects: an admin may deny that to hide the projects' names
        # from the users' tokens; an admin's list of every project needs the admin role, which
        # only project creation needs).
        found = self._scoped_id(name, domain)
        if found is not None:
            project: dict[str, Any] = {"id": found}
        elif not self.create_projects:
            raise OpenStackRefused(
                f"There is no OpenStack project {name} for {user} that the control plane's "
                f"OpenStack user has a role on: an admin makes it ({self._commands(name)}), or "
                f"starts the control plane with --openstack-create-projects.",
                status=403,
                field="user",
            )
        else:
            listed = self._get("/projects", name=name, domain_id=domain).get("projects") or []
            if listed and TAG not in (listed[0].get("tags") or []):
                # Someone else's project of that name: not taken over without an admin.
                raise OpenStackRefused(
                    f"The OpenStack project {name} exists but was not made by the control plane, "
                    f"and its OpenStack user has no role there: an admin gives it one "
                    f"({self._commands(name, create=False)}) if it is {user}'s, or changes "
                    f"--openstack-project-template.",
                    status=409,
                    field="user",
                )
            if listed:
                # Ours: the role went missing (a start cut between the two calls).
                project = listed[0]
            else:
                body = {
                    "project": {
                        "name": name,
                        "domain_id": domain,
                        "description": f"Compute servers of the Hub user {user}",
                        "tags": [TAG],
                    }
                }
                response = self.service.post("/projects", endpoint_filter=_IDENTITY, json=body)
                project = response.json()["project"]
                log.warning("Created OpenStack project %s for Hub user %s", name, user)
            self._grant(str(project["id"]), user_id)
        self._projects[user] = (str(project["id"]), name)
        return self._projects[user]

    def _scoped_id(self, name: str, domain: str) -> str | None:
        """The id of the project ``name`` if the service user may log in to it (has a role
        there), else None; the token of that login is revoked. Blocking."""
        from keystoneauth1 import exceptions as ks
        from keystoneauth1.identity import v3
        from keystoneauth1.session import Session

        auth = v3.Password(**self.password_auth, project_name=name, project_domain_id=domain)
        try:
            access = auth.get_access(Session(auth=auth, verify=self.service.verify))
        except ks.Unauthorized:
            return None
        with contextlib.suppress(OpenStackRefused):
            self._revoke(str(access.auth_token))
        return str(access.project_id)

    def _commands(self, name: str, *, create: bool = True) -> str:
        username = self.password_auth.get("username") or self.password_auth.get("user_id")
        role = f"openstack role add --user {username} --project {name} {self.role}"
        return f"openstack project create {name}; {role}" if create else role

    def _grant(self, project_id: str, user_id: str) -> None:
        roles = self._get("/roles", name=self.role).get("roles") or []
        if not roles:
            raise OpenStackRefused(
                f"Keystone has no role {self.role!r} (--openstack-role).",
                status=502,
                field=None,
            )
        self.service.put(
            f"/projects/{project_id}/users/{user_id}/roles/{roles[0]['id']}",
            endpoint_filter=_IDENTITY,
        )

    def issue(self, user: str, refuse: Any = None) -> dict[str, Any]:
        """A new token of ``user``'s project: ``{auth_url, token, project_id, project_name,
        region, expires_at, issued_at, catalog}``. ``refuse(user)`` raises when the user may
        have none (revoked): asked again once the token is made, under the lock ``revoke_user``
        takes, so a revocation meanwhile revokes it. Blocking."""
        from keystoneauth1 import exceptions as ks
        from keystoneauth1.identity import v3
        from keystoneauth1.session import Session

        try:
            with self._project_lock:  # (one creation of a project, not two racing)
                project_id, name = self._project(user)
            auth = v3.Password(**self.password_auth, project_id=project_id)
            session = Session(auth=auth, verify=self.service.verify)
            access = auth.get_access(session)
        except ks.Unauthorized:
            # (the role was taken away since the project was found: found again next time)
            self._projects.pop(user, None)
            name = self.project_name(user)
            raise OpenStackRefused(
                f"The control plane's OpenStack user has no role on {user}'s project {name}: "
                f"an admin gives it one ({self._commands(name, create=False)}).",
                status=409,
                field="user",
            ) from None
        except ks.ClientException as e:
            raise OpenStackRefused(
                f"Keystone refused the control plane ({type(e).__name__}: {e}); an admin should "
                f"check its OpenStack user (--openstack-clouds-yaml) and the logs.",
                status=502,
                field=None,
            ) from None
        token = str(access.auth_token)
        try:
            self._confine(token, project_id)
        except ks.ClientException as e:
            self._revoke(token)
            raise OpenStackRefused(
                f"Keystone refused the control plane ({type(e).__name__}: {e}); an admin should "
                f"check its OpenStack user (--openstack-clouds-yaml) and the logs.",
                status=502,
                field=None,
            ) from None
        expires = access.expires.timestamp() if access.expires else time.time()
        issued = access.issued.timestamp() if access.issued else time.time()
        with self._lock:
            now = time.time()
            kept = [i for i in self._issued.get(user, []) if i.expires_at > now]
            kept.append(Issued(token, expires))
            self._issued[user] = kept
            if refuse is not None:
                try:
                    refuse(user)
                except ControlPlaneError:
                    self._revoke(token)
                    raise
        data = access._data["token"]
        return {
            "auth_url": self.auth_url,
            "token": token,
            "project_id": project_id,
            "project_name": name,
            "region": self.region,
            "expires_at": expires,
            "issued_at": issued,
            "catalog": data.get("catalog") or [],
        }

    def revoke_user(self, user: str) -> int:
        """Revoke in Keystone every unexpired token issued to ``user``; how many. Blocking."""
        with self._lock:
            issued = self._issued.pop(user, [])
            now = time.time()
            revoked = 0
            for item in issued:
                if item.expires_at > now and self._revoke(item.token):
                    revoked += 1
        return revoked

    def _revoke(self, token: str) -> bool:
        response = self.service.delete(
            "/auth/tokens",
            endpoint_filter=_IDENTITY,
            headers={"X-Subject-Token": token},
            raise_exc=False,
        )
        if response.status_code not in (200, 204, 404):
            log.error(
                "Keystone did not revoke a token (%d): %s", response.status_code, response.text
            )
            raise OpenStackRefused(
                f"Keystone did not revoke a token ({response.status_code}); revoke again.",
                status=502,
                field="user",
            )
        return response.status_code != 404

    def _confine(self, token: str, project_id: str, *, field: str | None = None) -> None:
        """Before a project's first token (this run) is served: Keystone must refuse it every
        credential of ``openstack_confinement`` (else it is revoked and none served, and the
        next ask tries again). Blocking."""
        if project_id in self._confined:
            return
        with self._confine_lock:
            if project_id in self._confined:
                return
            user_id, _domain = self._service_ids()
            accepted, left = unconfined(
                self.service,
                token,
                user_id=user_id,
                project_id=project_id,
                # (an EC2 credential for another project: the service user's own)
                other_project_id=str(self.service.get_project_id()),
                role=self.role,
            )
            if accepted:
                # (a failed revocation is logged; the refusal is what the admin must act on)
                with contextlib.suppress(OpenStackRefused):
                    self._revoke(token)
                raise OpenStackRefused(refusal(accepted, left), status=502, field=field)
            self._confined.add(project_id)

    def check_confined(self) -> None:
        """At start, refuse to run when Keystone lets a token like those issued make a
        credential (``openstack_confinement``): tried with a token of a user's project the
        service user has a role on, else with its own project's token unless that one has the
        admin role (which the policy lines allow: it would prove nothing). Then each project's
        first token is tried before it is served anyway (``issue``). Blocking."""
        from keystoneauth1 import exceptions as ks
        from keystoneauth1.identity import v3
        from keystoneauth1.session import Session

        own = str(self.service.get_project_id())
        user_id, domain = self._service_ids()
        before, _, after = self.project_template.partition("{user}")
        pattern = re.compile(re.escape(before) + ".+" + re.escape(after))
        # (an admin may deny the listing to every token, to hide the projects' names: then
        # as if there were none)
        listing = self.service.get("/auth/projects", endpoint_filter=_IDENTITY, raise_exc=False)
        mine = (listing.json().get("projects") or []) if listing.status_code == 200 else []
        users = [
            p
            for p in mine
            if p.get("id") != own
            and p.get("domain_id") == domain
            and pattern.fullmatch(str(p.get("name")))
        ]
        for project in users[:1]:
            project_id = str(project["id"])
            auth = v3.Password(**self.password_auth, project_id=project_id)
            try:
                access = auth.get_access(Session(auth=auth, verify=self.service.verify))
            except ks.Unauthorized:
                break  # (its role went since it was listed: as if there were none)
            token = str(access.auth_token)
            try:
                self._confine(token, project_id, field="openstack_clouds_yaml")
                if names_listed(self.service, token):
                    log.warning(NAMES_LISTED)
            finally:
                self._revoke(token)
            return
        access = self.service.auth.get_access(self.service)  # type: ignore[union-attr]
        if "admin" in {r.lower() for r in access.role_names or []}:
            log.warning(
                "No user's OpenStack project yet, and the control plane's own project token has "
                "the admin role: Keystone's policy on credentials is tried with each project's "
                "first token, before it is served."
            )
            return
        token = str(self.service.get_token())
        accepted, left = unconfined(
            self.service,
            token,
            user_id=user_id,
            project_id=own,
            other_project_id=own,
            role=self.role,
        )
        if accepted:
            raise OpenStackRefused(refusal(accepted, left), field="openstack_clouds_yaml")
        if names_listed(self.service, token):
            log.warning(NAMES_LISTED)

    def check_no_rescope(self) -> None:
        """Refuse to run when Keystone rescopes a scoped token (see the module's docstring):
        the service user's own token is exchanged for one of the same project; Keystone with
        ``allow_rescope_scoped_token = false`` answers 403. Blocking."""
        token = self.service.get_token()
        project_id = self.service.get_project_id()
        body = {
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": token}},
                "scope": {"project": {"id": project_id}},
            }
        }
        response = self.service.post(
            "/auth/tokens",
            endpoint_filter=_IDENTITY,
            json=body,
            authenticated=False,
            raise_exc=False,
        )
        if response.status_code == 201:
            self._revoke(response.headers.get("X-Subject-Token", ""))
            raise OpenStackRefused(
                "Keystone rescopes scoped tokens ([token] allow_rescope_scoped_token is on): "
                "a token of one user's project could be exchanged for any project the control "
                "plane's OpenStack user has a role on, everyone's. An OpenStack admin sets "
                "allow_rescope_scoped_token = false in keystone.conf's [token] section.",
                field="openstack_clouds_yaml",
            )


def tokens_from_args(
    clouds_yaml: str,
    cloud: str,
    *,
    project_template: str = "compute-{user}",
    create_projects: bool = False,
    role: str = "member",
) -> OpenStackTokens:
    """The issuer of the service user of ``cloud`` in ``clouds_yaml`` (checked private, its
    password auth, reaching Keystone: fails at start rather than at a user's first ask)."""
    import openstack.config
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    path = Path(clouds_yaml)
    field_name = "openstack_clouds_yaml"
    check_private(path, "The OpenStack clouds.yaml", field_name, ControlPlaneError)
    if "{user}" not in project_template:
        raise ControlPlaneError(
            "--openstack-project-template must contain {user} (one project per Hub user).",
            field="openstack_project_template",
        )
    try:
        region = openstack.config.OpenStackConfig(
            config_files=[str(path)], load_envvars=False
        ).get_one(cloud=cloud or None)
    except sdk.ConfigException as e:
        raise ControlPlaneError(
            f"The OpenStack clouds.yaml {path} has no usable cloud {cloud!r}: {e}.",
            field=field_name,
        ) from None
    auth = dict(region.config.get("auth") or {})
    auth_type = str(region.config.get("auth_type") or "password")
    if auth_type not in ("password", "v3password") or not auth.get("password"):
        raise ControlPlaneError(
            f"The control plane's OpenStack user must log in with a password (auth_type "
            f"password; it was {auth_type}): an application credential is bound to one project, "
            f"and each Hub user has their own.",
            field=field_name,
        )
    keys = (
        "auth_url",
        "username",
        "user_id",
        "password",
        "user_domain_name",
        "user_domain_id",
    )
    password_auth = {k: auth[k] for k in keys if auth.get(k)}
    tokens = OpenStackTokens(
        service=region.get_session(),
        password_auth=password_auth,
        region=str(region.region_name or ""),
        project_template=project_template,
        create_projects=create_projects,
        role=role,
    )
    try:
        tokens.service.get_token()
        tokens.check_no_rescope()
        tokens.check_confined()
    except ks.ClientException as e:
        raise ControlPlaneError(
            f"The control plane's OpenStack user could not log in to Keystone at "
            f"{password_auth.get('auth_url')}: {type(e).__name__}: {e}.",
            field=field_name,
        ) from None
    return tokens
