"""The extension's settings: one ``Configurable`` read the same way everywhere.

The Jupyter server extension (``ComputeServersApp`` derives from it), the CLI and the standalone
kernel runtime (``jupyter execute`` on a compute-server kernel) all read ``c.ComputeServersApp.*``
from the Jupyter Server configuration files through this class, and hand it to
``services.build_services``. It imports nothing of the web app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_config_path, jupyter_data_dir
from traitlets import Bool, Dict, Float, Int, List, Type, Unicode, default
from traitlets.config import Application, Config, LoggingConfigurable

#: The configuration section users write (``c.ComputeServersApp.data_dir = ...``): the name of
#: the server extension, kept for the standalone settings too.
SECTION = "ComputeServersApp"


class ComputeServersSettings(LoggingConfigurable):
    """Where the store and keys live, which clouds are enabled, SSH timings, kernel specs."""

    @classmethod
    def section_names(cls) -> list[str]:
        # Standalone, read the extension's own section too: users configure one place.
        names = [SECTION, *super().section_names()]
        return [name for i, name in enumerate(names) if name not in names[i + 1 :]]

    data_dir = Unicode(
        help=(
            "Where compute servers keep their files: the database (unless db_url says "
            "otherwise), SSH keys, and the local cloud's sandboxes. Defaults to "
            "<jupyter data dir>/compute_servers."
        ),
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "compute_servers")

    db_url = Unicode(
        help=(
            "Database URL of the server store, e.g. sqlite:////shared/team/servers.db for one "
            "store shared by a team. Defaults to a SQLite file in data_dir."
        ),
    ).tag(config=True)

    @default("db_url")
    def _default_db_url(self) -> str:
        return f"sqlite:///{Path(self.data_dir) / 'servers.db'}"

    team_mode = Bool(
        False,
        help=(
            "Team mode, for JupyterHub: each user's Jupyter server runs the extension on one "
            "shared database (db_url, PostgreSQL), sees and acts on only its user's compute "
            "servers (another user's id is a 404), and is limited by quotas. Admins "
            "(team_admin_users, team_admin_groups) also see everyone's servers and the audit "
            "log, and alone change shared hosts. Off: one person, no owners checked."
        ),
    ).tag(config=True)

    user = Unicode(
        help=(
            "Who owns the servers this process creates: JUPYTERHUB_USER under JupyterHub, "
            "else the local account."
        ),
    ).tag(config=True)

    @default("user")
    def _default_user(self) -> str:
        from .team import local_user

        return local_user()

    control_plane_url = Unicode(
        help=(
            "Team mode: the URL of the team's control plane, the JupyterHub service that is the "
            "SSH certificate authority of the shared hosts (e.g. "
            "http://127.0.0.1:10101/services/compute-control/). Set: this user's Jupyter server "
            "logs in to shared hosts as the user's own Unix account with short-lived "
            "certificates it asks for with its Hub token (JUPYTERHUB_API_TOKEN), and never with "
            "a host's stored key file or ssh-agent; and, where db_url names no user, logs in "
            "to the team's PostgreSQL with a short-lived login of the user's own from it. "
            "Empty: hosts' registered credentials, and db_url's own login."
        ),
    ).tag(config=True)

    team_admin_users = List(
        Unicode(),
        help="Team mode without a control plane: Hub users who are compute servers admins. "
        "With control_plane_url it is ignored (a warning says so): the control plane's "
        "--admin-user/--admin-group are the team's one rule, asked by each user's server.",
    ).tag(config=True)

    team_admin_groups = List(
        Unicode(),
        help="Team mode without a control plane: Hub groups whose members are compute servers "
        "admins. With control_plane_url it is ignored (the control plane's --admin-group).",
    ).tag(config=True)

    quotas = Dict(
        help=(
            'Team mode: the most each user may hold at once, by "user:NAME", "group:NAME" '
            '(a user in several groups gets the most generous) or "*" (everyone else), e.g. '
            '{"*": {"running_servers": 2, "gpus": 1}, "group:staff": {"gpus": 4}}. Fields: '
            "running_servers, gpus (at once), gpus_per_host (the fair queue's per-user cap), "
            "cpu and memory_gb (held on shared hosts at once), monthly_spend (US dollars this "
            'month); a "group:NAME" entry may also give group_monthly_spend, what all its '
            "members together may spend in a month. A missing field or null: no limit. "
            "Checked in the transaction that commits a start."
        ),
    ).tag(config=True)

    team_queue_user_cap = Int(
        None,
        allow_none=True,
        min=0,
        help=(
            "Team mode: the most GPUs of one shared host a user may hold at once (the fair "
            "GPU queue's per-user cap; a quota's gpus_per_host overrides it). A request over it "
            "waits even with GPUs free, and the next user's is served first. None: no cap."
        ),
    ).tag(config=True)

    access = Dict(
        help=(
            'Team mode: access lists, by "cloud:NAME", "host:NAME", "image:ID" or "gpu:TYPE", '
            'each a list of Hub user names and "group:NAME"s, e.g. {"gpu:NVIDIA A100-SXM4-80GB": '
            '["group:gpu-users"]}. A resource listed is kept for them (and admins); one not '
            "listed is open to everyone."
        ),
    ).tag(config=True)

    enabled_clouds = List(
        Unicode(),
        default_value=["local"],
        help=(
            "Names of the clouds users may create compute servers on, in the order the UI "
            "offers them (the first is the default). Each is an entry point in the "
            "'jupyter_compute_servers.clouds' group."
        ),
    ).tag(config=True)

    manager_class = Type(
        # Named by string so that reading the settings imports no service.
        default_value="jupyter_compute_servers.manager.ComputeServerManager",
        klass="jupyter_compute_servers.manager.ComputeServerManager",
        help="The service class that owns the servers' lifecycle; replace to customise it.",
    ).tag(config=True)

    ssh_keepalive_interval = Float(
        15.0,
        help="Seconds between SSH keep-alives on each server's connection.",
    ).tag(config=True)

    ssh_keepalive_count_max = Int(
        3,
        help=(
            "Keep-alives a server may leave unanswered before its connection is dropped (and "
            "replaced on next use): the connection goes after about interval x count seconds "
            "of silence."
        ),
    ).tag(config=True)

    ssh_connect_timeout = Float(
        5.0,
        help=(
            "Seconds to wait for a server to answer over SSH: one attempt to connect, and all "
            "attempts of one request together. With the connection down, kernel actions, "
            "listings and metrics answer within this time, saying why."
        ),
    ).tag(config=True)

    health_check_interval = Float(
        10.0,
        help=(
            "Seconds between health checks of running compute servers, on every cloud: at "
            "Jupyter start all of them, then those in use. One whose SSH daemon, agent or "
            "machine is gone is recorded with a reason (a local server's dead SSH daemon is "
            "restarted); 0 turns the checks off."
        ),
    ).tag(config=True)

    reconcile_on_start = Bool(
        True,
        help=(
            "When Jupyter starts, settle servers that a crash left mid-operation by asking "
            "their clouds what they really are."
        ),
    ).tag(config=True)

    kernel_specs_dir = Unicode(
        help=(
            "Where the kernel specs of compute servers (compute-<id>-<kernel>) are written. "
            "Defaults to the kernels directory of the Jupyter data dir, which every "
            "jupyter_client finds, so `jupyter console --kernel compute-1-python3` works too; "
            "the extension also adds it to the Jupyter server's kernel search path."
        ),
    ).tag(config=True)

    @default("kernel_specs_dir")
    def _default_kernel_specs_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "kernels")

    shutdown_kernels_on_exit = Bool(
        True,
        help=(
            "When Jupyter stops cleanly, shut down the kernels it started on compute servers. "
            "When False they keep running there (and keep their GPUs), and the next Jupyter "
            "started with the same store takes them over (adopt_orphan_kernels)."
        ),
    ).tag(config=True)

    max_servers = Int(
        100,
        help=(
            "The most compute servers the store may hold (each user's, in team mode); a create "
            "beyond it is refused with 409. 0: no limit."
        ),
    ).tag(config=True)

    max_hosts = Int(
        50,
        help="The most on-prem hosts that may be registered; beyond it a register is a 409. "
        "0: no limit.",
    ).tag(config=True)

    max_terminals_per_server = Int(
        20,
        help="The most terminals one compute server may have open; beyond it a new one is a "
        "409. 0: no limit.",
    ).tag(config=True)

    image_catalog = Unicode(
        "",
        help=(
            "The image catalogue: a path or an http(s) URL of a JSON document (see "
            "jupyter_compute_servers/images/catalog.schema.json). Empty: the one shipped with "
            "the package. Reload it with POST compute-servers/api/images/reload."
        ),
    ).tag(config=True)

    image_catalog_timeout = Float(
        30.0, help="Seconds to wait for all of an image catalogue at an http(s) URL."
    ).tag(config=True)

    image_catalog_max_bytes = Int(
        16 * 1024 * 1024, help="The largest image catalogue read from an http(s) URL (bytes)."
    ).tag(config=True)


def load_settings(overrides: dict[str, Any] | None = None) -> ComputeServersSettings:
    """The settings from the Jupyter Server configuration files (as ``jupyter server`` reads
    them), then ``overrides`` (trait name to value) on top; for the CLI and the standalone
    kernel runtime."""
    config = Config()
    # Lowest precedence first, as ``jupyter server`` loads them; each comes with its file name.
    for loaded, _filename in Application._load_config_files(
        "jupyter_server_config", path=jupyter_config_path()
    ):
        config.merge(loaded)
    for name, value in (overrides or {}).items():
        config[SECTION][name] = value
    return ComputeServersSettings(config=config)


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``name=value`` pairs (the CLI's ``--set``), each value JSON where it parses as JSON."""
    parsed: dict[str, Any] = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        try:
            parsed[name] = json.loads(value)
        except json.JSONDecodeError:
            parsed[name] = value
    return parsed
