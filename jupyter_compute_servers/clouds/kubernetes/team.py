"""Team mode's way to Kubernetes: the control plane (``control_plane/kubernetes.py``) holds the
cluster admin's kubeconfig and issues this user's server a short-lived ServiceAccount token
that acts only in the user's own namespace. This server reads no kubeconfig and no in-cluster
account: its API client is built from the control plane's answer (server, CA, token), its
namespace forced to the issued one, and the token renewed at three quarters of its life (and
once when the API server answers 401, an expiry the clock did not foresee).

The control plane's client blocks (urllib): it is asked in a worker thread, so that the event
loop never waits on it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import re
import tempfile
import time
from typing import Any
from urllib.parse import urlparse

from kubernetes_asyncio import client

from ...control_plane_client import ControlPlaneClient
from ...errors import CloudError

#: The share of a token's life after which a new one is asked for.
RENEW_AT = 0.75
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class IssuedCredentials:
    """The control plane's tokens for one user's server, kept fresh on a kubernetes_asyncio
    ``Configuration`` (its ``refresh_api_key_hook`` runs before each request, REST, watch and
    websocket alike)."""

    def __init__(self, control_plane: ControlPlaneClient) -> None:
        self.control_plane = control_plane
        self.configuration: client.Configuration | None = None
        self.namespace = ""
        self.server = ""
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self._ca_file: str | None = None

    async def _ask(self) -> dict[str, Any]:
        answer = await asyncio.to_thread(
            self.control_plane.post,
            "api/kubernetes-credentials",
            {},
            what="Kubernetes credentials",
            error=CloudError,
        )
        return _checked(answer)

    async def configure(self) -> client.Configuration:
        """The first credentials, as a Configuration whose token renews itself."""
        answer = await self._ask()
        configuration = client.Configuration()
        configuration.host = answer["server"]
        if answer["certificate_authority_data"]:
            # kubernetes_asyncio reads the CA from a file (as its kubeconfig loader writes one).
            handle, path = tempfile.mkstemp(prefix="compute-servers-kube-ca-")
            with os.fdopen(handle, "wb") as f:
                f.write(answer["certificate_authority_data"])
            self._ca_file = configuration.ssl_ca_cert = path
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.refresh_api_key_hook = self._refresh_hook
        self.configuration = configuration
        self.server = answer["server"]
        self.namespace = answer["namespace"]
        self._take(answer)
        return configuration

    def _take(self, answer: dict[str, Any]) -> None:
        assert self.configuration is not None
        now = time.time()
        life = max(0.0, answer["expires_at"] - now)
        self.configuration.api_key = {"BearerToken": answer["token"]}
        self._expires_at = answer["expires_at"]
        self._renew_at = now + life * RENEW_AT

    async def _refresh_hook(self, configuration: client.Configuration) -> None:
        if time.time() < self._renew_at:
            return
        try:
            await self.renew()
        except CloudError:
            if time.time() >= self._expires_at:
                raise
            # The control plane is away for a moment: the token still works, so use it and
            # ask again in a while rather than fail a call that would succeed.
            self._renew_at = time.time() + min(30.0, (self._expires_at - time.time()) / 2)

    async def renew(self, *, stale: str | None = None) -> None:
        """A new token now (``stale``: the one the API server refused, so that concurrent
        callers that met the same 401 ask once)."""
        async with self._lock:
            assert self.configuration is not None
            current = self.configuration.api_key.get("BearerToken")
            if stale is not None and current != stale:
                return  # someone renewed it meanwhile
            if stale is None and time.time() < self._renew_at:
                return
            answer = await self._ask()
            if answer["namespace"] != self.namespace or answer["server"] != self.server:
                # The admin changed the namespace rule or the cluster: what this server made
                # is elsewhere; a restart of this server starts over with the new place.
                raise CloudError(
                    f"The control plane now issues Kubernetes credentials for namespace "
                    f"{answer['namespace']} at {answer['server']}, not {self.namespace} at "
                    f"{self.server}: restart your Jupyter server to use them."
                )
            self._take(answer)

    @property
    def token(self) -> str:
        return str(self.configuration.api_key.get("BearerToken", "")) if self.configuration else ""

    def close(self) -> None:
        if self._ca_file:
            with contextlib.suppress(OSError):
                os.unlink(self._ca_file)
            self._ca_file = None


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    """The control plane's answer, each field of the expected kind."""
    server = answer.get("server")
    if not isinstance(server, str) or urlparse(server).scheme not in ("http", "https"):
        raise CloudError("The control plane's Kubernetes credentials name no http(s) server.")
    namespace = answer.get("namespace")
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise CloudError("The control plane's Kubernetes credentials name no valid namespace.")
    token = answer.get("token")
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
        raise CloudError("The control plane's Kubernetes credentials hold no token.")
    expires_at = answer.get("expires_at")
    if not isinstance(expires_at, int | float) or isinstance(expires_at, bool):
        raise CloudError("The control plane's Kubernetes credentials have no expires_at.")
    ca = answer.get("certificate_authority_data") or ""
    try:
        ca_bytes = base64.b64decode(ca, validate=True) if ca else b""
    except (binascii.Error, ValueError, TypeError):
        raise CloudError(
            "The control plane's Kubernetes certificate_authority_data is not base64."
        ) from None
    return {
        "server": server,
        "namespace": namespace,
        "token": token,
        "expires_at": float(expires_at),
        "certificate_authority_data": ca_bytes,
    }
