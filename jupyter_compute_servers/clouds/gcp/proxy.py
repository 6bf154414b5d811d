"""Team mode's way to Compute Engine: through the control plane (``control_plane/gce.py``),
which holds the project's service account and forwards each call only when it is the user's to
make. This user's Jupyter server holds no Google credential at all: its bearer token is its Hub
token (``JUPYTERHUB_API_TOKEN``), and the client library's endpoint is the control plane's
``gce`` path, under which the Compute Engine REST paths are served as Google's.
"""

from __future__ import annotations

from typing import Any

import google.auth.credentials
import requests

from ...errors import CloudError
from ..base import ControlPlaneAccess


class HubTokenCredentials(google.auth.credentials.Credentials):
    """google.auth credentials whose bearer token is the Hub token: the client library sends
    ``Authorization: Bearer <token>``, which the control plane checks with the Hub. The token
    lives as long as the user's server, so there is nothing to refresh."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def refresh(self, request: Any) -> None:
        # Nothing to renew; a token the Hub no longer accepts is answered 401 by the control
        # plane, and that answer is what the user sees.
        return None


def endpoint(control_plane: ControlPlaneAccess) -> str:
    """The client library's ``api_endpoint``: it appends ``/compute/v1/projects/...``."""
    return control_plane.url.rstrip("/") + "/gce"


def project(control_plane: ControlPlaneAccess, timeout: float = 10) -> str:
    """The project the control plane acts in (its ``api/gce``). Blocking."""
    url = control_plane.url.rstrip("/") + "/api/gce"
    try:
        response = requests.get(
            url, headers={"Authorization": f"token {control_plane.token}"}, timeout=timeout
        )
    except requests.RequestException as e:
        raise CloudError(
            f"The team's control plane ({control_plane.url}) could not be reached for Compute "
            f"Engine: {type(e).__name__}. Ask an admin to check it runs."
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 404:
        raise CloudError(
            f"The team's control plane ({control_plane.url}) has no Compute Engine proxy: an "
            f"admin gives it the project's service account key (--gce-credentials-file)."
        )
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("project"):
        message = body.get("message") if isinstance(body, dict) else None
        raise CloudError(
            f"The team's control plane refused Compute Engine access "
            f"({response.status_code}): {message or response.reason}."
        )
    return str(body["project"])
