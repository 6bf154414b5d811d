"""Team mode's way to OpenStack: tokens the control plane issues (``control_plane/openstack.py``),
each scoped to this Hub user's own project and short-lived. This user's Jupyter server holds no
OpenStack password or application credential: it asks the control plane with its Hub token
(``POST api/openstack-credentials``) and hands openstacksdk a keystoneauth plugin of the token
issued (``IssuedToken``), which asks again at three quarters of the token's life, or at once when
a service answers 401 (a revoked token: keystoneauth invalidates the plugin and retries once).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from keystoneauth1 import access
from keystoneauth1.identity.base import BaseIdentityPlugin

from ...control_plane_client import ControlPlaneClient
from ...errors import CloudError
from .errors import OpenStackError

#: The share of a token's life after which a new one is asked for.
RENEW_AT = 0.75
#: A token as Keystone makes them (Fernet: URL-safe base64); nothing that could break a header.
_TOKEN = re.compile(r"[A-Za-z0-9_\-=.]{16,1024}")
_FIELDS = ("auth_url", "token", "project_id", "project_name", "expires_at", "issued_at", "catalog")


def ask(control_plane: ControlPlaneClient) -> dict[str, Any]:
    """A token of this user's project from the control plane, checked. Blocking."""
    try:
        answer = control_plane.post("api/openstack-credentials", {}, what="an OpenStack token")
    except CloudError as e:
        # (the control plane's own words: revoked, no project, no role, unreachable)
        message = e.message
        if " (404): " in message:
            message += (
                " The team's control plane issues no OpenStack tokens: an admin starts it with "
                "--openstack-clouds-yaml."
            )
        raise OpenStackError(message) from None
    missing = [name for name in _FIELDS if name not in answer]
    if missing:
        raise OpenStackError(f"The control plane's OpenStack token lacks {missing[0]}.")
    if not isinstance(answer["token"], str) or not _TOKEN.fullmatch(answer["token"]):
        raise OpenStackError("The control plane's OpenStack token is not a Keystone token.")
    if not isinstance(answer["catalog"], list) or not all(
        isinstance(times, int | float) and not isinstance(times, bool)
        for times in (answer["expires_at"], answer["issued_at"])
    ):
        raise OpenStackError("The control plane's OpenStack token is malformed.")
    return answer


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class IssuedToken(BaseIdentityPlugin):
    """A keystoneauth plugin whose token is the control plane's: ``fetch()`` asks for one
    (``ask``; blocking, and only ever called on openstacksdk's worker threads)."""

    def __init__(
        self,
        fetch: Callable[[], dict[str, Any]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(auth_url=None, reauthenticate=True)
        self._fetch = fetch
        self._clock = clock
        self._renew_at = 0.0
        #: The latest answer's project (openstacksdk's config has no auth section to name it).
        self.project_name = ""
        self.project_id = ""
        self.region = ""
        #: How many tokens were asked for (the cloud's log says when one is renewed).
        self.issued = 0

    def get_auth_ref(self, session: Any, **kwargs: Any) -> access.AccessInfoV3:
        answer = self._fetch()
        self.issued += 1
        self.auth_url = str(answer["auth_url"])
        self.project_id = str(answer["project_id"])
        self.project_name = str(answer["project_name"])
        self.region = str(answer.get("region") or "")
        life = max(0.0, float(answer["expires_at"]) - float(answer["issued_at"]))
        # The token's life by this host's clock (the control plane's and Keystone's may differ).
        self._renew_at = self._clock() + RENEW_AT * life
        body = {
            "token": {
                "methods": ["token"],
                "expires_at": _iso(float(answer["expires_at"])),
                "issued_at": _iso(float(answer["issued_at"])),
                "project": {"id": self.project_id, "name": self.project_name},
                "catalog": answer["catalog"],
            }
        }
        return access.AccessInfoV3(body, auth_token=str(answer["token"]))

    def _needs_reauthenticate(self) -> bool:
        # (not keystoneauth's "expires within 2 minutes": a token living less than that would
        # be asked for again at every call; three quarters of its life come before its end)
        return self.auth_ref is None or self._clock() >= self._renew_at

    def get_project_id(self, session: Any) -> str | None:
        return self.get_access(session).project_id
