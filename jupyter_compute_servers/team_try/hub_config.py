"""The one place that writes a team's JupyterHub configuration for one machine: the Hub's
``jupyterhub_config.py`` (DummyAuthenticator, the simple local spawner, and the control plane
as a Hub service) and the ``jupyter_server_config.py`` every user's Jupyter server reads (team
mode on the shared database), and the Hub's process. ``jupyter compute-servers team-try`` and
the tests' Hub (tests/hub.py) both run what this writes; README's "Try it on one machine"
shows it, and tests/test_team_try.py checks that the README's copy is what this writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The Hub group whose members are the compute servers' admins.
ADMIN_GROUP = "compute-admins"
#: The control plane's name as a Hub service (its URL prefix is /services/<name>/).
CONTROL_PLANE = "compute-control"


def _py(value: Any) -> str:
    """``value`` (JSON's kinds) as Python source, strings in double quotes."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@dataclass
class HubConfig:
    #: Where the Hub's own files go (its database, cookie secret, the users' homes, the CA key).
    dir: Path
    #: The public port (the proxy's), the Hub's own, and the proxy's API: all on 127.0.0.1.
    port: int
    hub_port: int
    proxy_api_port: int
    #: The compute servers' database, shared by every user's Jupyter server.
    db_url: str
    users: tuple[str, ...]
    admin: str
    #: configurable-http-proxy (npm install -g configurable-http-proxy).
    proxy: str = "configurable-http-proxy"
    #: The control plane's port, run by the Hub as a service; None: no control plane.
    control_plane_port: int | None = None
    #: The control plane's CA key (default: ``compute-ca`` in ``dir``) and more arguments.
    ca_key: str | None = None
    control_plane_args: tuple[str, ...] = ()
    #: The control plane holds ``db_url`` (in its environment) and issues each user's server a
    #: short-lived login of its own; the users' servers' ``db_url`` has no user or password.
    database_logins: bool = False
    #: More settings of every user's Jupyter server, "Class.trait": value.
    server_settings: dict[str, Any] = field(default_factory=dict)
    #: More lines of jupyterhub_config.py, after the others (the tests' own service).
    extra_lines: tuple[str, ...] = ()

    @property
    def config_file(self) -> Path:
        return self.dir / "jupyterhub_config.py"

    @property
    def server_config_dir(self) -> Path:
        return self.dir / "team-config"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_plane_url(self) -> str | None:
        if self.control_plane_port is None:
            return None
        return f"http://127.0.0.1:{self.control_plane_port}/services/{CONTROL_PLANE}/"

    @property
    def server_db_url(self) -> str:
        """The users' servers' ``db_url``: with database logins, where the database is only."""
        if not self.database_logins:
            return self.db_url
        from sqlalchemy.engine import make_url

        # (``URL.set(x=None)`` leaves x as it was: ``_replace`` clears it)
        url = make_url(self.db_url)._replace(username=None, password=None)
        return url.render_as_string(hide_password=False)

    def hub_config(self) -> str:
        d = self.dir
        users = ", ".join(json.dumps(u) for u in self.users)
        lines = [
            "# jupyterhub_config.py: a team on one machine, for trying team mode only",
            "import sys",
            "",
            "# Everything on 127.0.0.1: the proxy (where users go), the Hub, the proxy's API.",
            'c.JupyterHub.ip = "127.0.0.1"',
            f"c.JupyterHub.port = {self.port}",
            'c.JupyterHub.hub_ip = "127.0.0.1"',
            f"c.JupyterHub.hub_port = {self.hub_port}",
            f'c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"',
            f"c.ConfigurableHTTPProxy.command = [{json.dumps(self.proxy)}]",
            f"c.JupyterHub.db_url = {json.dumps('sqlite:///' + str(d / 'hub.sqlite'))}",
            f"c.JupyterHub.cookie_secret_file = {json.dumps(str(d / 'cookie_secret'))}",
            f"c.JupyterHub.pid_file = {json.dumps(str(d / 'hub.pid'))}",
            "",
            "# Any password logs in: for trying only. Yours: OAuthenticator, LDAP, PAM...",
            'c.JupyterHub.authenticator_class = "dummy"',
            f"c.Authenticator.allowed_users = {{{users}}}",
            f"c.Authenticator.admin_users = {{{json.dumps(self.admin)}}}",
            f'c.JupyterHub.load_groups = {{"{ADMIN_GROUP}": {{"users": '
            f"[{json.dumps(self.admin)}]}}}}",
            "",
            "# Each user's Jupyter server a process of this account, its home under the Hub's",
            "# directory; a deployment: SystemdSpawner, DockerSpawner, KubeSpawner...",
            'c.JupyterHub.spawner_class = "simple"',
            "c.SimpleLocalProcessSpawner.home_dir_template = "
            f"{json.dumps(str(d / 'home') + '/{username}')}",
            'c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]',
            'c.Spawner.default_url = "/lab"',
            "# Every user's server reads the team's settings (team mode, the shared database).",
            "c.Spawner.environment = "
            f'{{"JUPYTER_CONFIG_DIR": {json.dumps(str(self.server_config_dir))}}}',
            "c.Spawner.start_timeout = 120",
            "c.Spawner.http_timeout = 120",
            "",
        ]
        if self.control_plane_port is None:
            lines += ["c.JupyterHub.services = []", "c.JupyterHub.load_roles = []"]
        else:
            ca_key = json.dumps(self.ca_key or str(d / "compute-ca"))
            # Who is an admin: the control plane's rule, the one the users' servers ask.
            more = f', "--admin-group", "{ADMIN_GROUP}"'
            more += "".join(f", {json.dumps(arg)}" for arg in self.control_plane_args)
            environment = (
                [
                    "    # The database owner's login: the control plane's alone.",
                    f'    "environment": {{"COMPUTE_SERVERS_DB_URL": {json.dumps(self.db_url)}}},',
                ]
                if self.database_logins
                else []
            )
            lines += [
                "# The control plane as a Hub service: the team's SSH certificate authority and,",
                "# holding the database's owner login, the issuer of users' own database logins;",
                "# every user, and each user's server with its token, may use it.",
                "c.JupyterHub.services = [{",
                f'    "name": "{CONTROL_PLANE}",',
                f'    "url": "http://127.0.0.1:{self.control_plane_port}",',
                '    "command": [sys.executable, "-m", "jupyter_compute_servers.control_plane",',
                f'                "--ca-key", {ca_key}{more}],',
                *environment,
                "}]",
                "c.JupyterHub.load_roles = [",
                '    {"name": "user",',
                f'     "scopes": ["self", "access:services!service={CONTROL_PLANE}"]}},',
                "]",
                "c.Spawner.server_token_scopes = [",
                '    "users:activity!user", "access:servers!server",',
                f'    "access:services!service={CONTROL_PLANE}",',
                "]",
            ]
        return "\n".join([*lines, *self.extra_lines, ""])

    def server_config(self) -> str:
        settings: dict[str, Any] = {
            # The simple spawner runs the servers as the Hub's account, root's when it is root.
            "ServerApp.allow_root": True,
            "ComputeServersApp.team_mode": True,
            "ComputeServersApp.db_url": self.server_db_url,
        }
        if self.control_plane_url:
            # (who is an admin: the control plane's --admin-group, asked by each server)
            settings["ComputeServersApp.control_plane_url"] = self.control_plane_url
        else:
            settings["ComputeServersApp.team_admin_groups"] = [ADMIN_GROUP]
        settings.update(self.server_settings)
        lines = [
            f"# {self.server_config_dir / 'jupyter_server_config.py'}: "
            "read by every user's Jupyter server",
            *(f"c.{name} = {_py(value)}" for name, value in settings.items()),
        ]
        return "\n".join([*lines, ""])

    def write(self) -> None:
        self.server_config_dir.mkdir(parents=True, exist_ok=True)
        (self.server_config_dir / "jupyter_server_config.py").write_text(self.server_config())
        self.config_file.write_text(self.hub_config())


class HubProcess:
    """JupyterHub running ``config``, in a session of its own (a Ctrl-C in the terminal reaches
    whoever started it, who stops the Hub, which stops the proxy, services and user servers)."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.log_path = config.dir / "hub.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (open while the Hub runs)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config.config_file)],
            cwd=config.dir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait(self, ready: Callable[[], bool], what: str, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited waiting for {what}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Timed out waiting for {what}:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM: the Hub stops the user servers, its services and the proxy, then exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
