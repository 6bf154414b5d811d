"""Short-lived SSH certificates from the team's control plane (team mode's login to shared
hosts): the user's Jupyter server makes a key pair in memory, has the control plane (a
JupyterHub service, ``control_plane/``) sign it with the user's Hub token
(``JUPYTERHUB_API_TOKEN``), and logs in with the certificate as the Unix account it names.

Nothing here is written to disk and nothing is shared: the key pair is this process's, new
for each certificate; the certificate ends within the hour (the control plane's setting).
The HTTP part (the Hub token, errors) is ``control_plane_client``'s, shared with the database's
logins. ``SSHConnections`` asks for credentials at each connect: a certificate with less than
``renew_margin`` of its life left is replaced first, and one a host refused is dropped so that
the retry gets a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncssh

from .control_plane_client import ControlPlaneClient, ControlPlaneError


class CertificateError(ControlPlaneError):
    """No certificate could be had from the control plane: the message says why."""


@dataclass(frozen=True)
class Credentials:
    """A key pair of this process and its certificate: what asyncssh's ``client_keys`` takes,
    and the Unix account (the certificate's one principal) to log in as."""

    key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate
    principal: str
    valid_before: float


class CertificateClient:
    """Gets and renews this user's certificate from the control plane."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10,
        renew_margin: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control_plane = ControlPlaneClient(url, token, timeout=timeout)
        #: Renew when less than this part of the certificate's life is left.
        self.renew_margin = renew_margin
        self.clock = clock
        self._current: Credentials | None = None
        self._issued_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def of(cls, control_plane: ControlPlaneClient, **kwargs: Any) -> CertificateClient:
        """The client over ``control_plane``'s (shared with the database's logins)."""
        client = cls(control_plane.url, "", timeout=control_plane.timeout, **kwargs)
        client.control_plane = control_plane
        return client

    def _fresh(self, credentials: Credentials | None) -> bool:
        if credentials is None:
            return False
        life = credentials.valid_before - self._issued_at
        return credentials.valid_before - self.clock() > life * self.renew_margin

    async def credentials(self) -> Credentials:
        """A certificate with most of its life ahead, asked for when the current one is
        nearly spent (or was dropped)."""
        async with self._lock:
            if not self._fresh(self._current):
                self._current = await self._issue()
            assert self._current is not None
            return self._current

    def drop(self) -> None:
        """Forget the current certificate (a host refused it): the next connect asks anew."""
        self._current = None

    async def _issue(self) -> Credentials:
        key = asyncssh.generate_private_key("ssh-ed25519")
        issued_at = self.clock()
        # (in a worker thread: the client is synchronous, for the database's connects)
        answer = await asyncio.to_thread(
            self.control_plane.post,
            "api/certificates",
            {"public_key": key.export_public_key().decode().strip()},
            what="an SSH certificate",
            error=CertificateError,
        )
        try:
            certificate = asyncssh.import_certificate(answer["certificate"])
            principal = str(answer["principal"])
            valid_before = float(answer["valid_before"])
        except (ValueError, KeyError, TypeError, asyncssh.KeyImportError) as e:
            raise CertificateError(
                f"The control plane's answer is not a certificate: {e}"
            ) from None
        if certificate.key.public_data != key.public_data or principal not in (
            getattr(certificate, "principals", None) or []
        ):
            raise CertificateError("The control plane's certificate is not for this key.")
        self._issued_at = issued_at
        return Credentials(key, certificate, principal, valid_before)
