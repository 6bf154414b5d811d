"""A user's Jupyter server asking the team's control plane (a JupyterHub service,
``control_plane/``) for what it may not hold for long: SSH certificates (``certificates``),
database logins (``db.credentials``) and Kubernetes tokens
(``clouds/kubernetes/team.py``); and, on an admin's server, the revocations
(``team_revocations``). The one credential it sends is its own Hub token
(``JUPYTERHUB_API_TOKEN``), in a header; the answer is JSON, an error ``{message, ...}``.

Synchronous (urllib), so that a database connection being opened on any thread can ask; the
certificates' async caller runs it in a worker thread. Redirects are not followed: the token
goes to the configured URL only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from .errors import CloudError, ValidationError


class ControlPlaneError(CloudError):
    """The control plane could not be reached, refused, or answered nonsense: the message
    says which and what to do. ``refused`` is the HTTP status of a refusal (None otherwise),
    ``refused_field`` the field its error named: a caller that passes the control plane's
    answer on (``team_revocations``) keeps its 4xx a 4xx."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        refused: int | None = None,
        refused_field: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, field=field, **details)
        self.refused = refused
        self.refused_field = refused_field
        if refused == 403:
            # The control plane refused this user (revoked, or not permitted): so does their
            # server's API, rather than a 502 that reads as an outage.
            self.status = 403


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class ControlPlaneClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10) -> None:
        if urlparse(url).scheme not in ("http", "https"):
            raise ValidationError(
                f"control_plane_url must be an http:// or https:// URL, not {url!r}.",
                field="control_plane_url",
            )
        #: The service's base URL, e.g. ``http://127.0.0.1:10101/services/compute-control/``.
        self.url = url.rstrip("/") + "/"
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:  # (never the token)
        return f"ControlPlaneClient({self.url!r})"

    @property
    def token(self) -> str:
        """The Hub token, for what sends it itself (the Compute Engine proxy's bearer
        credentials, ``clouds/gcp/proxy.py``)."""
        return self._token

    def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        what: str,
        error: type[CloudError] = ControlPlaneError,
    ) -> dict[str, Any]:
        """POST ``body`` to ``path`` (e.g. ``api/certificates``), answering the JSON object.
        ``what`` names what was asked for in the errors ("an SSH certificate"), ``error`` is
        the exception raised."""
        return self._request("POST", path, json.dumps(body).encode(), what, error)

    def get(
        self, path: str, *, what: str, error: type[CloudError] = ControlPlaneError
    ) -> dict[str, Any]:
        """GET ``path`` (e.g. ``api/gce``), answering the JSON object (as ``post``)."""
        return self._request("GET", path, None, what, error)

    def delete(
        self, path: str, *, what: str, error: type[CloudError] = ControlPlaneError
    ) -> dict[str, Any]:
        """DELETE ``path`` (e.g. ``api/revocations/bob``); a 204's empty answer is ``{}``."""
        return self._request("DELETE", path, None, what, error)

    def _request(
        self,
        method: str,
        path: str,
        data: bytes | None,
        what: str,
        error: type[CloudError],
    ) -> dict[str, Any]:
        headers = {"Authorization": f"token {self._token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in __init__
            self.url + path, data=data, method=method, headers=headers
        )
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                raw = response.read(1024 * 1024)
                if response.status == 204:
                    return {}
        except urllib.error.HTTPError as e:
            message, field = _message(e)
            text = f"The control plane refused {what} ({e.code}): {message}"
            if issubclass(error, ControlPlaneError):
                raise error(text, refused=e.code, refused_field=field) from None
            raise error(text) from None
        except (OSError, ValueError) as e:
            # (URLError and timeouts are OSErrors)
            raise error(
                f"Cannot reach the control plane at {self.url} for {what}: "
                f"{getattr(e, 'reason', None) or e or type(e).__name__}. Ask an admin whether the "
                f"Hub's compute-control service is running."
            ) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise error(f"The control plane's answer for {what} is not a JSON object.")
        return answer


def _message(error: urllib.error.HTTPError) -> tuple[str, str | None]:
    """A refusal's message and the field it names (None when it names none)."""
    try:
        body = json.loads(error.read(64 * 1024))
        field = body.get("field")
        return str(body["message"]), field if isinstance(field, str) else None
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return str(error.reason or error), None
