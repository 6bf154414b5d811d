"""Whether this user's server's owner is a team admin, as the team's control plane says.

One rule for the whole team: the control plane's ``--admin-user``/``--admin-group`` (and Hub
admins) decide who is an admin, for what it issues (admins' database logins, revocations) and,
through ``GET api/me``, for each user's server, which keeps no copy that could differ
(``team_admin_users``/``team_admin_groups`` there are ignored, with a warning, when
``control_plane_url`` is set).

The answer is asked off the event loop, kept ``ttl`` seconds, and asked by one request at a
time. When the control plane cannot be asked the owner is not an admin (fail closed) until it
answers again, and ``error`` says why (the admin-only endpoints' 403 carries it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .control_plane_client import ControlPlaneClient, ControlPlaneError

log = logging.getLogger(__name__)

#: Seconds an answer is kept: a change of the admin rule reaches every server within it.
TTL = 30.0
#: Seconds until a failed ask is tried again (not every request: the control plane is down).
RETRY = 5.0


class OwnerAdmin:
    def __init__(
        self,
        client: ControlPlaneClient,
        *,
        ttl: float = TTL,
        retry: float = RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.retry = retry
        self.clock = clock
        #: The last answer (False until one came, and while the control plane fails).
        self.admin = False
        #: Why the last ask failed ("" when it did not).
        self.error = ""
        self._until: float | None = None
        self._asking: asyncio.Future[None] | None = None

    async def refresh(self) -> None:
        """Ask again if the answer is older than ``ttl`` (a failure's, than ``retry``)."""
        if self._until is not None and self.clock() < self._until:
            return
        if self._asking is None or self._asking.done():
            # (one thread asks; the requests arriving meanwhile wait for its answer)
            self._asking = asyncio.ensure_future(asyncio.to_thread(self.ask))
        await asyncio.shield(self._asking)

    def ask(self) -> None:
        """Ask the control plane now (blocking: ``refresh`` runs it in a thread)."""
        try:
            answer = self.client.get("api/me", what="whether you are a team admin")
            admin = answer.get("admin")
            if not isinstance(admin, bool):
                raise ControlPlaneError(
                    "The control plane's answer to api/me has no admin flag: is it of an older "
                    "jupyter_compute_servers than this server? Ask an admin to upgrade it."
                )
        except ControlPlaneError as e:
            if not self.error:
                log.warning("Not a team admin until the control plane answers: %s", e.message)
            self.admin, self.error = False, e.message
            self._until = self.clock() + self.retry
            return
        self.admin, self.error = admin, ""
        self._until = self.clock() + self.ttl
