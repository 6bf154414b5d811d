"""``jupyter compute-servers team-try``: a team deployment on this machine, to try team mode.

It starts PostgreSQL (Debian's, a cluster of its own in a temp dir; without it, one shared
SQLite file, said so), then JupyterHub on 127.0.0.1 with the DummyAuthenticator (users alice
and bob, and admin, the compute servers' admin), the simple local spawner (each user's Jupyter
server in team mode on that database) and the control plane as a Hub service. It prints the
URL and the logins, and on Ctrl-C (or SIGTERM) stops the Hub (which stops the user servers,
their kernels and local sandboxes, the proxy and the control plane), then PostgreSQL, and
removes the temp dir. For trying only: any password logs in.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import sys
import tempfile
import types
from pathlib import Path

import requests

from .hub_config import HubConfig, HubProcess
from .postgres import PostgresNotInstalled, PostgresServer, free_port

USERS = ("alice", "bob")
ADMIN = "admin"
DATABASE = "compute_servers"


class TryError(Exception):
    """A reason team-try cannot start, with what to do."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "team-try",
        help="start a team deployment on this machine (JupyterHub, PostgreSQL), for trying",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8000, help="the Hub's port on 127.0.0.1")
    p.add_argument(
        "--proxy",
        help="configurable-http-proxy's command (default: the one on PATH; "
        "npm install -g configurable-http-proxy)",
    )
    p.add_argument(
        "--sqlite", action="store_true", help="one shared SQLite file even with PostgreSQL"
    )


def _check(args: argparse.Namespace) -> str:
    """What is missing, said before anything starts; the proxy's command."""
    if importlib.util.find_spec("jupyterhub") is None:
        raise TryError(
            "JupyterHub is not installed: pip install 'jupyter-compute-servers[team]' "
            "(or pip install jupyterhub)."
        )
    proxy = args.proxy or "configurable-http-proxy"
    found = shutil.which(proxy)
    if not found:
        raise TryError(
            f"{proxy} is not found: npm install -g configurable-http-proxy, or give its path "
            "with --proxy."
        )
    if not 0 < args.port < 65536:
        raise TryError(f"--port {args.port} is not a TCP port (1-65535).")
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", args.port))
        except OSError as e:
            raise TryError(
                f"Port {args.port} of 127.0.0.1 is in use ({e.strerror}): choose another "
                "with --port."
            ) from e
    # The Hub runs it from its own directory.
    return os.path.abspath(found)


def hub_config(
    directory: Path, port: int, db_url: str, proxy: str, ports: tuple[int, int, int]
) -> HubConfig:
    """What team-try runs: ``ports`` are the Hub's own, the proxy API's and the control
    plane's (README's "Try it on one machine" shows it, with 8081, 8001 and 10101)."""
    hub_port, proxy_api_port, control_plane_port = ports
    return HubConfig(
        dir=directory,
        port=port,
        hub_port=hub_port,
        proxy_api_port=proxy_api_port,
        db_url=db_url,
        users=USERS,
        admin=ADMIN,
        proxy=proxy,
        control_plane_port=control_plane_port,
        # On PostgreSQL, the recommended set-up: users' servers hold no database password, each
        # gets a short-lived login of its own from the control plane.
        database_logins=db_url.startswith("postgresql"),
        server_settings={
            "ComputeServersApp.enabled_clouds": ["local", "ssh"],
            # Ctrl-C leaves no sandbox of the local cloud running.
            "LocalCloud.stop_on_shutdown": True,
        },
    )


def _interrupted(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        proxy = _check(args)
    except TryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # SIGTERM as Ctrl-C: both stop everything this started (SIGINT too when the shell that
    # started this in the background ignores it).
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-team-try-"))
    postgres: PostgresServer | None = None
    hub: HubProcess | None = None
    try:
        sqlite = directory / "servers.db"
        if args.sqlite:
            database = f"one shared SQLite file, {sqlite} (--sqlite)"
        else:
            try:
                postgres = PostgresServer()
            except PostgresNotInstalled as e:
                database = (
                    f"one shared SQLite file, {sqlite}: PostgreSQL is not installed ({e}) "
                    "A team's deployment uses PostgreSQL."
                )
        if postgres is not None:
            db_url = postgres.create_database(DATABASE)
            database = f"PostgreSQL, {db_url} (a cluster of its own, in {postgres.dir})"
        else:
            db_url = f"sqlite:///{sqlite}"
        config = hub_config(
            directory, args.port, db_url, proxy, (free_port(), free_port(), free_port())
        )
        config.write()
        hub = HubProcess(config)
        hub.wait(lambda: _answers(f"{config.url}/hub/api/"), "the Hub to answer")
        print(
            f"""\
WARNING: for trying team mode only. Any password logs in, as any of the users below, to
anyone who can reach 127.0.0.1:{args.port} on this machine. A team deploys JupyterHub with its
own authenticator and spawner (README, "Teams on JupyterHub").

Team mode is running at {config.url}
  Log in as alice or bob (users), or {ADMIN} (the compute servers' admin): any password.
  Compute servers' database: {database}
  Hub configuration: {config.config_file}
  Users' Jupyter configuration: {config.server_config_dir / "jupyter_server_config.py"}
  Hub log: {hub.log_path}
  Everything is under {directory}, removed when this stops.
Press Ctrl-C to stop everything.""",
            flush=True,
        )
        hub.process.wait()
        print(
            f"error: JupyterHub exited ({hub.process.returncode}):\n{hub.tail()}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print(
            "Stopping: JupyterHub (the users' servers, the proxy, the control plane)...", flush=True
        )
        return 0
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not leave half of it running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hub is not None:
            hub.stop()
        if postgres is not None:
            print("Stopping: PostgreSQL...", flush=True)
            postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)
        print("Stopped; removed", directory, flush=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jupyter compute-servers")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["team-try", *(argv or [])]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
