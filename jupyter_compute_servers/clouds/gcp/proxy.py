"""Team mode's way to Compute Engine: through the control plane (``control_plane/gce.py``),
which holds the project's service account and forwards each call only when it is the user's to
make. This user's Jupyter server holds no Google credential at all: its bearer token is its Hub
token (``JUPYTERHUB_API_TOKEN``), and the client library's endpoint is the control plane's
``gce`` path, under which the Compute Engine REST paths are served as Google's.
"""

from __future__ import annotations

from typing import Any

import google.auth.credentials

from ...control_plane_client import ControlPlaneClient
from ...errors import CloudError


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


def endpoint(control_plane: ControlPlaneClient) -> str:
    """The client library's ``api_endpoint``: it appends ``/compute/v1/projects/...``."""
    return control_plane.url.rstrip("/") + "/gce"


def project(control_plane: ControlPlaneClient) -> str:
    """The project the control plane acts in (its ``api/gce``; a 404 there: the admin gave it
    no service account key, ``--gce-credentials-file``). Blocking."""
    answer = control_plane.get("api/gce", what="Compute Engine access", error=CloudError)
    if not answer.get("project"):
        raise CloudError("The team's control plane named no Compute Engine project.")
    return str(answer["project"])
