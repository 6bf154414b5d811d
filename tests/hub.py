"""A real JupyterHub for the team-mode tests: JupyterHub from PyPI, its proxy
``configurable-http-proxy`` from npm (node_modules, see package.json), the DummyAuthenticator
with two users (alice, bob) and an admin (root, in the Hub group ``compute-admins``), and
the SimpleLocalProcessSpawner running each user's ``jupyterhub-singleuser`` with this
extension in team mode on one PostgreSQL database.

The team's control plane runs as the Hub's service ``compute-control`` (the Hub starts it): it
holds the database owner's login (the tests' superuser) and issues each user's server a
short-lived login of its own, so the user servers' ``db_url`` has no user and no password and
every test through the Hub runs with PostgreSQL's row-level security as a user (or an admin)
has it. It is the SSH CA too (``ca_key``, or a key of its own in the Hub's directory);
``control_plane`` adds its arguments; None runs none, the user servers then logging in as the
owner.

Users reach their servers through the proxy with Hub tokens, as the Lab does with its cookie:
the singleuser server checks each token with the Hub, which answers who it is and in which
groups. Everything runs on 127.0.0.1, in a temp dir; ``close`` ends the Hub, which ends the
proxy and the user servers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from jupyter_compute_servers.team_try.hub_config import (
    ADMIN_GROUP,
    CONTROL_PLANE,
    HubConfig,
    HubProcess,
)

from .postgres import free_port

ROOT = Path(__file__).parent.parent
PROXY = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
USERS = ("alice", "bob")
ADMIN = "root"
SERVICE = CONTROL_PLANE
__all__ = ["ADMIN", "ADMIN_GROUP", "SERVICE", "USERS", "Hub"]


class Hub:
    def __init__(
        self,
        db_url: str,
        hub_config: tuple[str, ...] = (),
        control_plane: tuple[str, ...] | None = (),
        ca_key: Path | None = None,
        user_settings: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        """``settings``: more ``c.ComputeServersApp`` settings of every user's server;
        ``user_settings``: its settings of other classes, ``{"Class.trait": value}``;
        ``hub_config``: more lines of jupyterhub_config.py (after the others);
        ``control_plane``: more arguments of the control plane (None: no control plane). The
        files are the package's (jupyter_compute_servers/team_try/hub_config.py), as
        ``team-try``'s."""
        if not PROXY.exists():
            raise RuntimeError(f"{PROXY} is missing: run npm install (make setup).")
        self.db_url = db_url
        self.dir = Path(tempfile.mkdtemp(prefix="compute-servers-hub-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(32)
        self.tokens: dict[str, str] = {}
        self.control_plane_port = free_port() if control_plane is not None else None
        self.config = HubConfig(
            dir=self.dir,
            port=self.port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            db_url=db_url,
            users=USERS,
            admin=ADMIN,
            proxy=str(PROXY),
            control_plane_port=self.control_plane_port,
            ca_key=str(ca_key) if ca_key else None,
            control_plane_args=control_plane or (),
            database_logins=control_plane is not None,
            server_settings={
                "ComputeServersApp.health_check_interval": 0,
                **{f"ComputeServersApp.{name}": value for name, value in settings.items()},
                **(user_settings or {}),
            },
            extra_lines=(
                # The tests' own service, whose token manages the users and their servers.
                f"c.JupyterHub.services.append({{'name': 'tests', 'api_token': {self.token!r}}})",
                "c.JupyterHub.load_roles.append({'name': 'tests', 'services': ['tests'], "
                "'scopes': ['admin:users', 'admin:servers', 'tokens', 'access:servers', "
                "'admin:groups', 'read:users', 'read:hub']})",
                *hub_config,
            ),
        )
        self.config.write()
        self.hub = HubProcess(self.config)
        self.process = self.hub.process
        try:
            self._wait(lambda: self.api("GET", "/info").ok, "the Hub to answer")
            if self.control_plane_port is not None:
                self._wait(self._control_plane_answers, "the control plane to answer")
        except BaseException:
            self.close()
            raise

    def _control_plane_answers(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.control_plane_port}/services/{SERVICE}/api/ca"
            return requests.get(url, timeout=5).status_code in (401, 403)
        except requests.ConnectionError:
            return False

    def service_token(self, user: str) -> str:
        """A token of ``user``'s for the control plane only (as their server's token has)."""
        response = self.api(
            "POST",
            f"/users/{user}/tokens",
            json={"note": "tests", "scopes": [f"access:services!service={SERVICE}"]},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    # --- the Hub's REST API, as the tests' service ------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(
                method,
                f"{self.url}/hub/api{path}",
                headers={"Authorization": f"token {self.token}"},
                timeout=60,
                **kwargs,
            )
        except requests.ConnectionError:
            response = requests.Response()
            response.status_code = 599
            return response

    def _wait(self, ready: Any, what: str, timeout: float = 150) -> None:
        self.hub.wait(ready, what, timeout)

    def wait_for_control_plane(self, path: str, method: str = "GET") -> None:
        """Wait until the control plane serves ``path`` (e.g. ``api/gce``): it answers an
        unauthenticated call 401 or 403 (the Hub starts it, and the part it serves may first
        reach its cloud)."""

        def answers() -> bool:
            try:
                url = f"{self.config.control_plane_url}{path}"
                response = requests.request(method, url, json={}, timeout=5)
            except requests.ConnectionError:
                return False
            return response.status_code in (401, 403)

        self._wait(answers, "the control plane to answer")

    def tail(self) -> str:
        return self.hub.tail()

    def start_server(self, user: str) -> str:
        """Start ``user``'s server through the Hub; a token of theirs that reaches it."""
        if user not in USERS:
            # (admins are made at start, but harmless; another user is made here)
            self.api("POST", f"/users/{user}")
        response = self.api("POST", f"/users/{user}/server")
        assert response.status_code in (201, 202), (response.status_code, response.text)

        def ready() -> bool:
            model = self.api("GET", f"/users/{user}").json()
            return bool((model.get("servers") or {}).get("", {}).get("ready"))

        self._wait(ready, f"{user}'s server to start")
        response = self.api(
            "POST",
            f"/users/{user}/tokens",
            json={
                "note": "tests",
                "scopes": [
                    f"access:servers!user={user}",
                    f"read:users:name!user={user}",
                    f"read:users:groups!user={user}",
                ],
            },
        )
        assert response.status_code == 201, (response.status_code, response.text)
        self.tokens[user] = response.json()["token"]
        return self.tokens[user]

    def call(
        self, user: str, method: str, path: str, *, body: Any = None, server: str | None = None
    ) -> requests.Response:
        """``user`` calling the compute servers API of ``server``'s (their own) Jupyter."""
        return requests.request(
            method,
            f"{self.url}/user/{server or user}/compute-servers/api{path}",
            headers={"Authorization": f"token {self.tokens[user]}"},
            json=body,
            timeout=60,
            allow_redirects=False,
        )

    def close(self) -> None:
        if self.process.poll() is None:
            for user in (*USERS, ADMIN):
                self.api("DELETE", f"/users/{user}/server")
        self.hub.stop()


@contextmanager
def admin_secret(name: str, write: Callable[[Path], Path]) -> Iterator[Path]:
    """A secret file of the control plane's (a key, a kubeconfig, a clouds.yaml) kept as an
    admin keeps it: 0600, in a directory only the Hub's account (root here) may enter.
    ``write(path)`` writes it at ``path`` and answers where it wrote."""
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-secret-"))
    os.chmod(directory, 0o700)
    try:
        path = write(directory / name)
        os.chmod(path, 0o600)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def wire_fake(prefix: str, start: Callable[[Path], Any]) -> Iterator[Any]:
    """A cloud's API faked at the wire (Compute Engine, Kubernetes, OpenStack), serving from a
    fresh directory: ``start(directory)`` makes and starts it; closed and removed after."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    fake = start(directory)
    try:
        yield fake
    finally:
        fake.close()
        shutil.rmtree(directory, ignore_errors=True)


def wait_state(hub: Hub, user: str, server_id: int, state: str, timeout: float = 240) -> None:
    """Until ``user``'s server is ``state`` (through their Jupyter server's API); an error state
    fails at once with its reason."""
    deadline = time.monotonic() + timeout
    while True:
        server = hub.call(user, "GET", f"/servers/{server_id}").json()
        if server["state"] == state:
            return
        assert server["state"] != "error", server.get("state_reason")
        assert time.monotonic() < deadline, server
        time.sleep(0.25)


def user_server_pid(user: str) -> int:
    """The pid of ``user``'s Jupyter server (the Hub's singleuser process)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"JUPYTERHUB_USER={user}".encode() in environ and b"jupyterhub.singleuser" in cmdline:
            return int(entry)
    raise AssertionError(f"no Jupyter server of {user} runs")
