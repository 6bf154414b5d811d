"""Shared fixtures: a real Jupyter server (pytest-jupyter) with the extension enabled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer

from .jupyter_process import kill_left_on_host

pytest_plugins = ("pytest_jupyter.jupyter_server",)


class RecordingAuthorizer(Authorizer):
    """Lets everything through except the (action, resource) pairs a test denies, and
    remembers every question it was asked, so tests can see that @authorized ran."""

    asked: list[tuple[str, str]] = []
    denied: set[tuple[str, str]] = set()

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        type(self).asked.append((action, resource))
        return (action, resource) not in type(self).denied


@pytest.fixture(autouse=True)
def private_jupyter_paths(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """No test writes into the real Jupyter dirs (kernel specs!), not even from a subprocess
    (the CLI, a Jupyter server): each test gets its own data, config and runtime dirs."""
    base = tmp_path_factory.mktemp("jupyter-paths")
    for name in ("data", "config", "runtime"):
        path = base / name
        path.mkdir()
        monkeypatch.setenv(f"JUPYTER_{name.upper()}_DIR", str(path))


@pytest.fixture
def authorizer() -> type[RecordingAuthorizer]:
    RecordingAuthorizer.asked = []
    RecordingAuthorizer.denied = set()
    return RecordingAuthorizer


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    """This machine's user home for the test: its ~/.ssh/known_hosts and ~/.ssh/config."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def host_home(tmp_path: Path) -> Path:
    """A host's user home (an SSH or GPU host's). What still runs under it once the test's
    Jupyter server has stopped (a kernel, its IOPub relay) is killed then, with a warning naming
    it (``pytest_runtest_teardown`` below: the host outlives its sshd here)."""
    path = tmp_path / "host-home"
    path.mkdir()
    return path


@pytest.fixture
def compute_data_dir(tmp_path: Path) -> Path:
    """Where the extension keeps its store, keys and local sandboxes during one test."""
    path = tmp_path / "compute_servers"
    path.mkdir()
    return path


@pytest.fixture
def jp_server_config(
    authorizer: type[RecordingAuthorizer], compute_data_dir: Path
) -> dict[str, Any]:
    return {
        "ComputeServersApp": {"data_dir": str(compute_data_dir)},
        # A test that fails half-way must not leave a sandbox running behind it.
        "LocalCloud": {"stop_on_shutdown": True},
        "ServerApp": {
            "jpserver_extensions": {"jupyter_compute_servers": True},
            # Refuse unauthenticated access, as a hardened deployment does: an endpoint without
            # @web.authenticated then raises JupyterServerAuthWarning (an error in pytest).
            "allow_unauthenticated_access": False,
            "authorizer_class": authorizer,
        },
    }


@pytest.fixture
def api(jp_fetch):
    """Call the compute servers API; answers (status, decoded JSON) and never raises on 4xx."""

    async def call(
        method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"method": method, "raise_error": False}
        if raw is not None:
            kwargs["body"] = raw
        elif body is not None or method in ("POST", "PATCH", "PUT"):
            kwargs["body"] = json.dumps(body if body is not None else {})
        response = await jp_fetch("compute-servers", "api", *path.strip("/").split("/"), **kwargs)
        data = json.loads(response.body) if response.body else None
        return response.code, data

    return call


@pytest.fixture
def wait_for_state(api):
    async def wait(server_id: int, *states: str, timeout: float = 30) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            code, server = await api("GET", f"servers/{server_id}")
            assert code == 200, server
            if server["state"] in states and server["operation"] is None:
                return server
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"server stayed {server['state']}: {server}")
            await asyncio.sleep(0.05)

    return wait


# --- the database: every store's tests run on SQLite and on PostgreSQL ----------------------


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL 15, started once for the session (see tests/postgres.py). A test
    that needs it fails, and never skips, when it cannot be started."""
    from .postgres import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each kind: a SQLite file, or a database of its own on the
    session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'servers.db'}"
    return str(request.getfixturevalue("postgres_server").create_database())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After every fixture of a test that had a stand-in GPU host (``host_home``): its Jupyter
    server (stopped by pytest-jupyter's own last fixture) is gone, the host is not, and nothing
    of the test may run on there."""
    yield
    home = getattr(item, "funcargs", {}).get("host_home")
    if home is not None:
        kill_left_on_host(home)
