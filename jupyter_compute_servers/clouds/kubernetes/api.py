"""Reaching the Kubernetes API: configuration from a kubeconfig file or, inside a cluster, the
pod's service account, or in team mode the control plane's short-lived token (``team.py``);
one client (``kubernetes_asyncio``) per cloud, made on first use.

Every call goes through ``KubeAccess.call``, which turns the client's exceptions into a
``KubeError`` that says in words what was refused and why (``errors.explain``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.stream import WsApiClient

from ...errors import CloudError
from .errors import KubeError, explain

if TYPE_CHECKING:
    from .team import IssuedCredentials

#: Where a pod finds its service account's namespace (in-cluster configuration).
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class KubeAPI:
    """The clients of one cluster: ``core`` for REST calls, ``ws`` for the port-forward
    websocket (``kubernetes_asyncio.stream.WsApiClient``), and what they were made from."""

    def __init__(
        self,
        configuration: client.Configuration,
        namespace: str,
        where: str,
        issued: IssuedCredentials | None = None,
    ) -> None:
        self.configuration = configuration
        #: Team mode: the control plane's credentials, renewed once on a 401.
        self.issued = issued
        self.namespace = namespace
        #: The cluster in words, for messages ("context kind-gpu (https://10.0.0.1:6443)").
        self.where = where
        self._rest = client.ApiClient(configuration=configuration)
        self._ws = WsApiClient(configuration=configuration)
        self.core = client.CoreV1Api(self._rest)
        self.ws = client.CoreV1Api(self._ws)

    def plain(self, obj: Any) -> Any:
        """A client model as the API's JSON (camelCase dicts)."""
        return self._rest.sanitize_for_serialization(obj)

    async def close(self) -> None:
        await self._rest.close()
        await self._ws.close()
        if self.issued is not None:
            self.issued.close()

    async def call(
        self, doing: str, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """``method(*args, **kwargs)``; a refusal raises ``KubeError`` saying what ``doing``
        ("create pod jcs-box-1") met, in words. With issued credentials, a 401 (the token
        expired before its time, or was revoked at the API server) asks for a new token once
        and tries again."""
        if self.issued is not None:
            used = self.issued.token
            try:
                return await self._call(doing, method, *args, **kwargs)
            except KubeError as e:
                if e.http_status != 401:
                    raise
            await self.issued.renew(stale=used)
        return await self._call(doing, method, *args, **kwargs)

    def refusal(self, e: ApiException, doing: str, namespace: str) -> KubeError:
        """The API server's refusal in words; in team mode a 401 is about the control plane's
        token, not a kubeconfig."""
        error = KubeError.from_api(e, doing, namespace)
        if self.issued is not None and e.status == 401:
            return KubeError(
                401,
                f"Could not {doing}: the Kubernetes API did not accept the token the team's "
                f"control plane issued, even a new one. Ask an admin whether your access was "
                f"revoked or the control plane's cluster changed.",
                reason=error.k8s_reason,
            )
        return error

    async def _call(
        self, doing: str, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return await method(*args, **kwargs)
        except ApiException as e:
            raise self.refusal(e, doing, self.namespace) from None
        except aiohttp.WSServerHandshakeError as e:
            # A websocket upgrade the API server answered with an error (RBAC, no such pod):
            # aiohttp keeps the status, not the Status body.
            message = f"HTTP {e.status} to the websocket upgrade"
            raise KubeError(
                e.status, explain(e.status, "", message, doing, self.namespace)
            ) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            raise KubeError(
                0,
                f"Cannot reach the Kubernetes API server of {self.where} to {doing}: "
                f"{e or type(e).__name__}. Check that the cluster is up and reachable from "
                f"Jupyter.",
            ) from None


def _pod_namespace() -> str:
    """The namespace of the pod Jupyter runs in ("" when unknown)."""
    try:
        return Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip()
    except OSError:
        return ""


async def connect(
    *, kubeconfig: str, context: str, in_cluster: bool | None, namespace: str
) -> KubeAPI:
    """The clients for the configured cluster. ``in_cluster`` None: in-cluster when Jupyter
    runs in a pod (KUBERNETES_SERVICE_HOST is set) and no kubeconfig is named."""
    configuration = client.Configuration()
    use_cluster = (
        in_cluster
        if in_cluster is not None
        else bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not kubeconfig
    )
    try:
        if use_cluster:
            config.load_incluster_config(client_configuration=configuration)
            where = "this cluster (in-cluster service account)"
            namespace = namespace or _pod_namespace()
        else:
            path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
            await config.load_kube_config(
                config_file=path,
                context=context or None,
                client_configuration=configuration,
                persist_config=False,
            )
            contexts, active = config.list_kube_config_contexts(path)
            chosen = next((c for c in contexts if c.get("name") == context), None) or active
            name = (chosen or {}).get("name", "")
            where = f"kubeconfig context {name or '(current)'}"
            if not namespace:
                namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "")
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as e:
        source = "the in-cluster service account" if use_cluster else (kubeconfig or "kubeconfig")
        raise CloudError(
            f"Cannot load the Kubernetes configuration from {source}: {e}. Set "
            f"c.KubernetesCloud.kubeconfig (and context) to a kubeconfig file, or run Jupyter "
            f"in a pod with a service account."
        ) from None
    return KubeAPI(configuration, namespace or "default", f"{where} ({configuration.host})")


async def connect_team(issued: IssuedCredentials) -> KubeAPI:
    """The clients of the control plane's cluster with its token: no kubeconfig is read, and
    the namespace is the one the token may act in."""
    configuration = await issued.configure()
    where = f"the team's cluster (namespace {issued.namespace}, by the control plane)"
    return KubeAPI(configuration, issued.namespace, f"{where} ({configuration.host})", issued)


__all__ = ["KubeAPI", "KubeError", "connect", "connect_team", "explain"]
