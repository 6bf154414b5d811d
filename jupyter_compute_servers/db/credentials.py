"""Team mode: this user's short-lived database login, from the team's control plane.

A user's Jupyter server whose ``db_url`` names no user and no password
(``postgresql://db.example.org/compute_servers``) holds no long-lived database credential: it
asks the control plane (``POST api/database-credentials``, with its Hub token) for a login of
its own, which PostgreSQL accepts for new connections for an hour and which may touch only what
``roles`` lets a user (or an admin) touch. ``Database`` supplies the current login to every new
connection (SQLAlchemy's ``do_connect``); a login past three quarters of its life is replaced
first, and one PostgreSQL refuses (expired, or replaced by another of the user's processes,
since each issue sets a new password) is replaced once more. Connections already open keep
working: PostgreSQL checks a password and its ``VALID UNTIL`` at login only.

Asking blocks the thread opening the connection for one request to the control plane (on the
Hub's host), once per three quarters of an hour with the default life.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..control_plane_client import ControlPlaneClient, ControlPlaneError


class DatabaseCredentialsError(ControlPlaneError):
    """No database login could be had from the control plane: the message says why."""


@dataclass(frozen=True)
class DatabaseLogin:
    user: str
    password: str
    expires_at: float
    dbname: str

    def __repr__(self) -> str:  # (never the password)
        return f"DatabaseLogin({self.user!r}, expires_at={self.expires_at})"


class DatabaseCredentials:
    """Gets and renews this user's database login from the control plane (thread-safe)."""

    def __init__(
        self,
        control_plane: ControlPlaneClient,
        *,
        renew_at: float = 0.75,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control_plane = control_plane
        #: Renew once this part of the login's life is spent.
        self.renew_at = renew_at
        self.clock = clock
        self._current: DatabaseLogin | None = None
        self._issued_at = 0.0
        self._lock = threading.Lock()

    def current(self) -> DatabaseLogin:
        """A login with a quarter of its life or more ahead."""
        with self._lock:
            login = self._current
            if login is None or self.clock() >= self._issued_at + self.renew_at * (
                login.expires_at - self._issued_at
            ):
                self._current = login = self._issue()
            return login

    def drop(self, login: DatabaseLogin) -> None:
        """Forget ``login`` (PostgreSQL refused it): the next ``current`` asks anew."""
        with self._lock:
            if self._current is login:
                self._current = None

    def _issue(self) -> DatabaseLogin:
        issued_at = self.clock()
        what = "a database login"
        answer = self.control_plane.post(
            "api/database-credentials", {}, what=what, error=DatabaseCredentialsError
        )
        try:
            login = DatabaseLogin(
                str(answer["user"]),
                str(answer["password"]),
                float(answer["expires_at"]),
                str(answer["dbname"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DatabaseCredentialsError(
                f"The control plane's answer is not a database login: {e!r} is missing or wrong."
            ) from None
        if login.expires_at <= issued_at:
            raise DatabaseCredentialsError(
                "The control plane issued a database login that has already expired: is its "
                "clock right?"
            )
        self._issued_at = issued_at
        return login
