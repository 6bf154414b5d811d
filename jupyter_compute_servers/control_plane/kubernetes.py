"""The control plane as the issuer of **Kubernetes credentials**: it holds the cluster admin's
kubeconfig (never in a user's server) and gives each Hub user's server a short-lived token of a
ServiceAccount that may act only in that user's own namespace.

Why a namespace per user and TokenRequest tokens, rather than a proxy of the Kubernetes API as
for Compute Engine (``gce.py``): Kubernetes can enforce the boundary itself. RBAC scopes a Role
to one namespace, so a token bound there cannot reach another user's pods, claims or secrets,
whatever the user's server sends; and the TokenRequest API
(``POST /api/v1/namespaces/<ns>/serviceaccounts/<sa>/token`` with ``expirationSeconds``) makes
tokens that expire by themselves and are never stored in a Secret. Proxying instead would mean
re-implementing authorization for REST, watch streams and the port-forward websocket, with the
proxy in the data path of every SSH byte. Quotas and pod security then come per namespace too.

For each user, at ``POST api/kubernetes-credentials``, idempotently:

- the namespace of the rule (``namespace_for``), labelled as ours with the Hub user in an
  annotation (an existing namespace not annotated for that user is refused: the rule never
  hands out someone else's namespace), and Pod Security Admission's ``enforce`` level
  (``baseline`` by default: no privileged or host-path pods, which would reach the node);
- the ServiceAccount ``compute-servers``, the Role ``compute-servers`` with exactly what the
  kubernetes cloud calls (``ROLE_RULES``) and the RoleBinding ``compute-servers`` (both
  re-applied each time, so an upgrade's Role is current; a few calls once per token);
- a token of that account, ``validity`` seconds (the API server may shorten it: the answer's
  ``expires_at`` is what it said).

Revoking a user deletes their RoleBinding (``revoke``): tokens already issued still
authenticate but are authorized for nothing. Restoring needs nothing here: the next request
binds again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ControlPlaneError
from .private_files import check_private

log = logging.getLogger("jupyter_compute_servers.control_plane")

#: The name of the ServiceAccount, Role and RoleBinding in each user's namespace.
ACCOUNT = "compute-servers"
#: The label marking namespaces the control plane manages, and the annotation naming whose.
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGED_VALUE = "jupyter-compute-servers"
HUB_USER_ANNOTATION = "compute-servers.jupyter.org/hub-user"
#: Pod Security Admission's levels (``pod-security.kubernetes.io/enforce``).
POD_SECURITY_LEVELS = ("baseline", "restricted", "privileged")
#: The TokenRequest API's own bounds of expirationSeconds (10 minutes to 2^32 s; a day here).
MIN_VALIDITY = 600
MAX_VALIDITY = 86400

#: Exactly what clouds/kubernetes calls (README's Role): nothing cluster-wide, no RBAC, no
#: tokens, no exec, no reading of Secrets.
ROLE_RULES: tuple[dict[str, Any], ...] = (
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    # The websocket GET: older API servers authorize it as get, newer as create.
    {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]},
    {
        "apiGroups": [""],
        "resources": ["persistentvolumeclaims"],
        "verbs": ["get", "create", "delete", "patch"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
)

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
#: A namespace of the cluster's own, never a user's.
_RESERVED = re.compile(r"default|kube-.*|openshift.*")


class KubernetesError(ControlPlaneError):
    """The cluster refused or could not be reached (502 unless told)."""

    def __init__(self, message: str, *, status: int = 502, field: str | None = None) -> None:
        super().__init__(message, status=status, field=field)


@dataclass(frozen=True)
class NamespaceRule:
    """Hub user -> namespace: ``template`` with ``{user}`` (one occurrence), the user part a
    DNS-1123 label. A Hub name that is already one, without ``--``, is used as it is; any
    other is lower-cased, its other characters made ``-``, and ``--`` and a digest of the
    name added (``Alice@x.org`` -> ``alice-x-org--3f2a...``). Since a plain part never holds
    ``--``, and a digested one always ends in its digest, two users never share a namespace."""

    template: str = "compute-{user}"

    def __post_init__(self) -> None:
        if self.template.count("{user}") != 1 or re.search(
            r"[{}]", self.template.replace("{user}", "")
        ):
            raise ControlPlaneError(
                f"--kube-namespace-template {self.template!r} must hold {{user}} once and no "
                f"other braces (e.g. compute-{{user}}).",
                field="kube_namespace_template",
            )
        fixed = self.template.replace("{user}", "x")
        if not _LABEL.fullmatch(fixed) or len(fixed) > 40:
            raise ControlPlaneError(
                f"--kube-namespace-template {self.template!r}: the namespace must be a DNS-1123 "
                f"label (lower-case letters, digits, '-'), and its fixed part at most 39 "
                f"characters.",
                field="kube_namespace_template",
            )

    def namespace_for(self, hub_user: str) -> str:
        room = 63 - (len(self.template) - len("{user}"))
        part = hub_user
        if not (_LABEL.fullmatch(part) and "--" not in part and len(part) <= room):
            digest = hashlib.sha256(hub_user.encode()).hexdigest()[:12]
            base = re.sub(r"[^a-z0-9]+", "-", hub_user.lower()).strip("-")
            base = base[: max(0, room - len(digest) - 2)].rstrip("-")
            part = f"{base}--{digest}" if base else f"u--{digest}"[:room]
        namespace = self.template.replace("{user}", part)
        if _RESERVED.fullmatch(namespace):
            raise ControlPlaneError(
                f"The namespace rule gives {hub_user} the cluster's own namespace {namespace}; "
                f"an admin should change --kube-namespace-template.",
                status=403,
                field="kube_namespace_template",
            )
        return namespace


def _ca_data(path: str | None) -> str:
    """The CA bundle (a file kubernetes_asyncio wrote from the kubeconfig) as base64."""
    if not path:
        return ""
    return base64.b64encode(Path(path).read_bytes()).decode()


@dataclass
class KubernetesIssuer:
    """Ensures each user's namespace and binding, and issues their tokens, with the admin's
    ``kubeconfig`` (``context``: one of it; empty: its current one)."""

    kubeconfig: str
    context: str = ""
    rule: NamespaceRule = field(default_factory=NamespaceRule)
    validity: int = 3600
    pod_security: str = "baseline"
    _api: Any = None
    _server: str = ""
    _ca: str = ""
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_private(Path(self.kubeconfig), "The kubeconfig", "kubeconfig", ControlPlaneError)
        if not MIN_VALIDITY <= self.validity <= MAX_VALIDITY:
            raise ControlPlaneError(
                f"--kube-token-validity must be {MIN_VALIDITY} to {MAX_VALIDITY} seconds (the "
                f"TokenRequest API's least is 10 minutes).",
                field="kube_token_validity",
            )
        if self.pod_security not in POD_SECURITY_LEVELS:
            raise ControlPlaneError(
                f"--kube-pod-security must be one of {', '.join(POD_SECURITY_LEVELS)}.",
                field="kube_pod_security",
            )

    async def connect(self) -> None:
        """Load the kubeconfig (at start: a bad one stops the control plane with why)."""
        from kubernetes_asyncio import client, config
        from kubernetes_asyncio.config.config_exception import ConfigException

        configuration = client.Configuration()
        try:
            await config.load_kube_config(
                config_file=self.kubeconfig,
                context=self.context or None,
                client_configuration=configuration,
                persist_config=False,
            )
            self._ca = _ca_data(configuration.ssl_ca_cert)
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
            raise ControlPlaneError(
                f"The kubeconfig {self.kubeconfig} is not usable: {e}.", field="kubeconfig"
            ) from None
        self._server = str(configuration.host)
        self._api = client.ApiClient(configuration=configuration)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    def _lock(self, hub_user: str) -> asyncio.Lock:
        return self._locks.setdefault(hub_user, asyncio.Lock())

    async def _call(
        self,
        doing: str,
        method: Callable[..., Any],
        *args: Any,
        passing: tuple[int, ...] = (),
        **kw: Any,
    ) -> Any:
        """``method(*args)``: the cluster's refusal, or its absence, in words (502); an
        ``ApiException`` whose status is in ``passing`` (409 of a create) is raised as it is."""
        import aiohttp
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            return await method(*args, **kw)
        except ApiException as e:
            if e.status in passing:
                raise
            log.error("Kubernetes refused to %s: %s %s", doing, e.status, e.reason)
            raise KubernetesError(
                f"The cluster refused the control plane to {doing} ({e.status} {e.reason}). "
                f"An admin should check the control plane's kubeconfig (it needs to manage "
                f"namespaces, ServiceAccounts, Roles, RoleBindings and service account tokens)."
            ) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise KubernetesError(
                f"The control plane cannot reach the Kubernetes API server at {self._server} to "
                f"{doing}: {e or type(e).__name__}."
            ) from None

    async def issue(
        self, hub_user: str, refuse: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """A new token of ``hub_user``'s account, its namespace and binding ensured first.
        ``refuse(name)`` raises when the user may have none (revoked): asked under the user's
        lock, which ``revoke`` takes too, so a revocation is never undone by an issue."""
        namespace = self.rule.namespace_for(hub_user)
        async with self._lock(hub_user):
            if refuse is not None:
                refuse(hub_user)
            await self._ensure(hub_user, namespace)
            from kubernetes_asyncio import client

            core = client.CoreV1Api(self._api)
            answer = await self._call(
                f"issue a token of {namespace}/{ACCOUNT}",
                core.create_namespaced_service_account_token,
                ACCOUNT,
                namespace,
                {
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"expirationSeconds": self.validity},
                },
            )
        expires = answer.status.expiration_timestamp
        return {
            "server": self._server,
            "certificate_authority_data": self._ca,
            "namespace": namespace,
            "token": str(answer.status.token),
            "expires_at": int(expires.timestamp()),
        }

    async def _ensure(self, hub_user: str, namespace: str) -> None:
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        core = client.CoreV1Api(self._api)
        rbac = client.RbacAuthorizationV1Api(self._api)
        body = {
            "metadata": {
                "name": namespace,
                "labels": {
                    MANAGED_LABEL: MANAGED_VALUE,
                    "pod-security.kubernetes.io/enforce": self.pod_security,
                },
                "annotations": {HUB_USER_ANNOTATION: hub_user},
            }
        }
        try:
            await self._call(
                f"create namespace {namespace}", core.create_namespace, body, passing=(409,)
            )
            log.info("Created namespace %s for Hub user %s", namespace, hub_user)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = await self._call(
                f"read namespace {namespace}", core.read_namespace, namespace
            )
            owner = (existing.metadata.annotations or {}).get(HUB_USER_ANNOTATION)
            if owner != hub_user:
                raise KubernetesError(
                    f"The namespace {namespace} exists and is not {hub_user}'s (its annotation "
                    f"{HUB_USER_ANNOTATION} is {owner!r}). An admin who made it for them "
                    f"annotates it with {HUB_USER_ANNOTATION}={hub_user}; else change "
                    f"--kube-namespace-template.",
                    status=409,
                    field="namespace",
                ) from None
        labels = {MANAGED_LABEL: MANAGED_VALUE}
        account = {"metadata": {"name": ACCOUNT, "labels": labels}}
        role = {"metadata": {"name": ACCOUNT, "labels": labels}, "rules": list(ROLE_RULES)}
        binding = {
            "metadata": {"name": ACCOUNT, "labels": labels},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        }
        for what, create, replace, manifest in (
            ("ServiceAccount", core.create_namespaced_service_account, None, account),
            ("Role", rbac.create_namespaced_role, rbac.replace_namespaced_role, role),
            (
                "RoleBinding",
                rbac.create_namespaced_role_binding,
                rbac.replace_namespaced_role_binding,
                binding,
            ),
        ):
            doing = f"create {what} {namespace}/{ACCOUNT}"
            try:
                await self._call(doing, create, namespace, manifest, passing=(409,))
            except ApiException:
                if replace is not None:
                    # The Role and binding as this version makes them, whatever an older one
                    # (or a hand) left there.
                    await self._call(
                        f"update {what} {namespace}/{ACCOUNT}",
                        replace,
                        ACCOUNT,
                        namespace,
                        manifest,
                    )

    async def revoke(self, hub_user: str) -> bool:
        """Delete ``hub_user``'s RoleBinding, so that their tokens are authorized for nothing;
        whether there was one."""
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        namespace = self.rule.namespace_for(hub_user)
        rbac = client.RbacAuthorizationV1Api(self._api)
        async with self._lock(hub_user):
            try:
                await self._call(
                    f"delete RoleBinding {namespace}/{ACCOUNT}",
                    rbac.delete_namespaced_role_binding,
                    ACCOUNT,
                    namespace,
                )
            except ApiException as e:
                if e.status == 404:
                    return False
                raise KubernetesError(
                    f"The cluster refused to unbind {hub_user}: {e.reason}."
                ) from None
        return True
