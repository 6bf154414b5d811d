"""``jupyter compute-servers team-try``: the one command that starts a team deployment on one
machine (PostgreSQL, JupyterHub with the control plane as a service, each user's Jupyter in
team mode), run as a user runs it. Alice logs in through the Hub's login form, reaches her
server's compute servers API and starts a local server there; Ctrl-C (SIGINT) then stops
everything: no process it started is left, none of their ports is open, its files are gone.

And the README's complete example of the configuration is what the command writes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from jupyter_compute_servers.team_try.command import hub_config

from .hub import PROXY
from .postgres import free_port

ROOT = Path(__file__).parent.parent


def hub_login(url: str, user: str) -> requests.Session:
    """``user`` logged in through the Hub's login form (any password: the DummyAuthenticator),
    their server spawned and its OAuth done, as a browser does: a session whose cookies reach
    their Jupyter server."""
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=30).raise_for_status()
    response = session.post(
        f"{url}/hub/login",
        data={"username": user, "password": "anything", "_xsrf": session.cookies["_xsrf"]},
        timeout=60,
    )
    assert response.ok and "/hub/login" not in response.url, (response.status_code, response.url)
    lab = f"{url}/user/{user}/lab"
    deadline = time.monotonic() + 150
    # While the server spawns the Hub answers with its "pending" page; then the server's OAuth
    # redirects end at the Lab.
    while (response := session.get(lab, timeout=60)).url != lab:
        assert time.monotonic() < deadline, f"{user}'s server did not start: {response.url}"
        time.sleep(0.5)
    assert response.status_code == 200
    return session


def _listening(process: psutil.Process) -> set[int]:
    try:
        return {
            c.laddr.port
            for c in process.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
    except psutil.Error:
        return set()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def team_try(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jupyter_compute_servers.cli", "team-try", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.timeout(400)
@pytest.mark.parametrize("database", ["postgresql", "sqlite-fallback"])
def test_team_try_starts_a_team_alice_logs_in_and_ctrl_c_leaves_nothing_running(
    database: str,
) -> None:
    port = free_port()
    # Without PostgreSQL (none where POSTGRES_BIN says) it says so and shares a SQLite file.
    env = {"POSTGRES_BIN": "/nonexistent"} if database == "sqlite-fallback" else {}
    command = team_try("--port", str(port), "--proxy", str(PROXY), env=env)
    output: list[str] = []
    try:
        assert command.stdout is not None
        for line in command.stdout:
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        printed = "".join(output)
        assert "Press Ctrl-C to stop everything." in printed, printed
        assert "WARNING: for trying team mode only. Any password logs in" in printed
        url = re.search(r"Team mode is running at (\S+)", printed)[1]  # type: ignore[index]
        assert url == f"http://127.0.0.1:{port}"
        assert "Log in as alice or bob (users), or admin" in printed
        directory = Path(re.search(r"Everything is under (\S+), removed", printed)[1])  # type: ignore[index]
        postgres_dir: Path | None = None
        if database == "postgresql":
            # Debian's PostgreSQL is installed here (as in CI): the shared database is on it.
            postgres_dir = Path(re.search(r"a cluster of its own, in (\S+)\)", printed)[1])  # type: ignore[index]
        else:
            assert (
                f"Compute servers' database: one shared SQLite file, {directory}/servers.db: "
                "PostgreSQL is not installed (/nonexistent/initdb is missing: install Debian's "
                "PostgreSQL 15"
            ) in printed, printed

        alice = hub_login(url, "alice")
        api = f"{url}/user/alice/compute-servers/api"
        xsrf = {"X-XSRFToken": alice.cookies.get("_xsrf", path="/user/alice/") or ""}
        assert alice.get(f"{api}/team", timeout=30).json()["user"] == {
            "name": "alice",
            "groups": [],
            "admin": False,
        }
        created = alice.post(f"{api}/servers", json={"name": "box"}, headers=xsrf, timeout=60)
        assert created.status_code == 201, created.text
        assert created.json()["owner"] == "alice"
        server = created.json()["id"]
        started = alice.post(f"{api}/servers/{server}/actions/start", headers=xsrf, timeout=60)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 120
        while (state := alice.get(f"{api}/servers/{server}", timeout=30).json()["state"]) != (
            "running"
        ):
            assert state in ("deprovisioned", "provisioning", "starting"), state
            assert time.monotonic() < deadline, state
            time.sleep(0.25)
        # Everything it started, and the ports they listen on: the Hub, the proxy, the control
        # plane, alice's Jupyter, her local sandbox, and PostgreSQL (a daemon, not a child).
        started_processes = psutil.Process(command.pid).children(recursive=True)
        if postgres_dir is not None:
            postmaster = int((postgres_dir / "data" / "postmaster.pid").read_text().split()[0])
            started_processes.append(psutil.Process(postmaster))
        names = " ".join(" ".join(p.cmdline()[:4]) for p in started_processes)
        for expected in (
            "jupyterhub -f",
            "configurable-http-proxy",
            "jupyter_compute_servers.control_plane",
            "jupyterhub.singleuser",
            *(["postgres"] if postgres_dir else []),
        ):
            assert expected in names, names
        ports = set().union(*(_listening(p) for p in started_processes))
        assert port in ports and len(ports) >= (5 if postgres_dir else 4), ports
    except BaseException:
        # Stopped as a user would, so that a failure here leaves nothing running either.
        command.send_signal(signal.SIGINT)
        command.communicate(timeout=120)
        raise

    command.send_signal(signal.SIGINT)
    rest, _ = command.communicate(timeout=120)
    assert command.returncode == 0, "".join(output) + rest
    assert "Stopped; removed" in rest, rest
    assert [p.pid for p in started_processes if not _gone(p.pid)] == []
    assert [p for p in sorted(ports) if not _refused(p)] == []
    assert not directory.exists()
    assert postgres_dir is None or not postgres_dir.exists()


def test_team_try_says_what_is_missing_before_starting_anything() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out, _ = team_try("--port", str(port), "--proxy", str(PROXY)).communicate(timeout=60)
        assert out.strip() == (
            f"error: Port {port} of 127.0.0.1 is in use (Address already in use): choose "
            "another with --port."
        )
    out, _ = team_try("--proxy", "/nonexistent/chp").communicate(timeout=60)
    assert out.strip() == (
        "error: /nonexistent/chp is not found: npm install -g configurable-http-proxy, or "
        "give its path with --proxy."
    )


def _readme_block(heading: str) -> list[str]:
    """The Python code blocks of README's section ``heading`` (up to the next heading)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    section = re.split(r"\n#{2,4} ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_readme_shows_the_configuration_team_try_writes() -> None:
    # The README's example is team-try's, with its temp dir /tmp/team-try and ports shown.
    config = hub_config(
        Path("/tmp/team-try"),
        8000,
        "postgresql://postgres@127.0.0.1:5432/compute_servers",
        "configurable-http-proxy",
        (8081, 8001, 10101),
    )
    hub, server = _readme_block("### Try it on one machine")
    assert hub == config.hub_config()
    assert server == config.server_config()
