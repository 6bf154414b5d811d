"""A real JupyterHub for the team-mode tests: JupyterHub from PyPI, its proxy
``configurable-http-proxy`` from npm (node_modules, see package.json), the DummyAuthenticator
with two users (alice, bob) and an admin (root, in the Hub group ``compute-admins``), and
the SimpleLocalProcessSpawner running each user's ``jupyterhub-singleuser`` with this
extension in team mode on one PostgreSQL database.

The team's control plane runs as the Hub's service ``compute-control`` (the Hub starts it): it
holds the database owner's login (the tests' superuser) and issues each user's server a
short-lived login of its own, so the user servers' ``db_url`` has no user and no password and
every test through the Hub runs with PostgreSQL's row-level security as a user (or an admin)
has it. ``control_plane`` adds its arguments (the SSH CA's); None runs none, the user servers
then logging in as the owner as before.

Users reach their servers through the proxy with Hub tokens, as the Lab does with its cookie:
the singleuser server checks each token with the Hub, which answers who it is and in which
groups. Everything runs on 127.0.0.1, in a temp dir; ``close`` ends the Hub, which ends the
proxy and the user servers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from .postgres import free_port

SERVICE = "compute-control"
ROOT = Path(__file__).parent.parent
PROXY = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
USERS = ("alice", "bob")
ADMIN = "root"
ADMIN_GROUP = "compute-admins"


class Hub:
    def __init__(
        self,
        db_url: str,
        hub_config: tuple[str, ...] = (),
        control_plane: tuple[str, ...] | None = (),
        **settings: Any,
    ) -> None:
        """``settings``: more ``c.ComputeServersApp`` settings of every user's server;
        ``hub_config``: more lines of jupyterhub_config.py (after the others);
        ``control_plane``: more arguments of the control plane (None: no control plane)."""
        if not PROXY.exists():
            raise RuntimeError(f"{PROXY} is missing: run npm install (make setup).")
        self.db_url = db_url
        self.dir = Path(tempfile.mkdtemp(prefix="compute-servers-hub-"))
        self.port = free_port()
        self.control_plane_port = free_port()
        services: list[dict[str, Any]] = [{"name": "tests", "api_token": secrets.token_hex(32)}]
        roles: list[dict[str, Any]] = []
        user_db_url = db_url
        if control_plane is not None:
            services.append(
                {
                    "name": SERVICE,
                    "url": f"http://127.0.0.1:{self.control_plane_port}",
                    "command": [
                        sys.executable,
                        "-m",
                        "jupyter_compute_servers.control_plane",
                        "--admin-group",
                        ADMIN_GROUP,
                        *control_plane,
                    ],
                    # The owner's login: in the service's environment, not its command line.
                    "environment": {"COMPUTE_SERVERS_DB_URL": db_url},
                }
            )
            # Every user may use it, and each user's server token may (it asks for its
            # database logins and certificates): the one scope added to the server role's.
            roles.append({"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]})
            settings["control_plane_url"] = (
                f"http://127.0.0.1:{self.control_plane_port}/services/{SERVICE}/"
            )
            # No user, no password: the control plane's logins.
            user_db_url = "postgresql://" + db_url.split("@", 1)[1]
        self.token = str(services[0]["api_token"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}
        user_config = self.dir / "user-config"
        user_config.mkdir()
        (user_config / "jupyter_server_config.py").write_text(
            "\n".join(
                [
                    "c.ServerApp.allow_root = True",
                    "c.ComputeServersApp.team_mode = True",
                    f"c.ComputeServersApp.db_url = {user_db_url!r}",
                    f"c.ComputeServersApp.team_admin_groups = [{ADMIN_GROUP!r}]",
                    "c.ComputeServersApp.health_check_interval = 0",
                    *(
                        f"c.ComputeServersApp.{name} = {json.dumps(value)}"
                        for name, value in settings.items()
                    ),
                    "",
                ]
            )
        )
        config = self.dir / "jupyterhub_config.py"
        config.write_text(
            "\n".join(
                [
                    "import sys",
                    "c.JupyterHub.ip = '127.0.0.1'",
                    f"c.JupyterHub.port = {self.port}",
                    "c.JupyterHub.hub_ip = '127.0.0.1'",
                    f"c.JupyterHub.hub_port = {free_port()}",
                    f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{free_port()}'",
                    f"c.ConfigurableHTTPProxy.command = [{str(PROXY)!r}]",
                    f"c.JupyterHub.db_url = 'sqlite:///{self.dir / 'hub.sqlite'}'",
                    f"c.JupyterHub.cookie_secret_file = {str(self.dir / 'cookie_secret')!r}",
                    f"c.JupyterHub.pid_file = {str(self.dir / 'hub.pid')!r}",
                    "c.JupyterHub.authenticator_class = 'dummy'",
                    f"c.Authenticator.allowed_users = {set(USERS)!r}",
                    f"c.Authenticator.admin_users = {{{ADMIN!r}}}",
                    f"c.JupyterHub.load_groups = {{{ADMIN_GROUP!r}: {{'users': [{ADMIN!r}]}}}}",
                    "c.JupyterHub.spawner_class = 'simple'",
                    f"c.SimpleLocalProcessSpawner.home_dir_template = "
                    f"{str(self.dir / 'home' / '{username}')!r}",
                    "c.Spawner.cmd = [sys.executable, '-m', 'jupyterhub.singleuser']",
                    f"c.Spawner.environment = {{'JUPYTER_CONFIG_DIR': {str(user_config)!r}}}",
                    "c.Spawner.start_timeout = 120",
                    "c.Spawner.http_timeout = 120",
                    f"c.JupyterHub.services = {services!r}",
                    "c.JupyterHub.load_roles = [{'name': 'tests', 'services': ['tests'], "
                    "'scopes': ['admin:users', 'admin:servers', 'tokens', 'access:servers', "
                    "'admin:groups', 'read:users', 'read:hub']}]",
                    f"c.JupyterHub.load_roles.extend({roles!r})",
                    *(
                        [
                            "c.Spawner.server_token_scopes = ['users:activity!user', "
                            f"'access:servers!server', 'access:services!service={SERVICE}']"
                        ]
                        if control_plane is not None
                        else []
                    ),
                    *hub_config,
                    "",
                ]
            )
        )
        self.log = open(self.dir / "hub.log", "wb")  # noqa: SIM115 (open while the Hub runs)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=self.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait(lambda: self.api("GET", "/info").ok, "the Hub to answer")
            if control_plane is not None:
                self._wait(self._control_plane_answers, "the control plane to answer")
        except BaseException:
            self.close()
            raise

    def _control_plane_answers(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.control_plane_port}/services/{SERVICE}/api/x"
            return requests.get(url, timeout=5).status_code in (401, 403, 404)
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
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Timed out waiting for {what}:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self) -> str:
        return (self.dir / "hub.log").read_text(errors="replace")[-4000:]

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
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
