"""Terminals on compute servers: the REST API, the terminado websocket with real PTY output,
resizing, reattaching after a reload and after an SSH drop, ending shells, and SSH access
from the user's own OpenSSH client."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import subprocess
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from jupyter_compute_servers.handlers.base import AUTH_RESOURCE

from .kernel_helpers import process_alive


async def running_server(api, wait_for_state, name: str = "box") -> dict[str, Any]:
    code, server = await api("POST", "servers", {"name": name})
    assert code == 201
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running", "error")
    assert server["state"] == "running", server["state_reason"]
    return server


class Screen:
    """A websocket client that keeps everything the terminal printed."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.text = ""
        self.messages: list[list[Any]] = []

    def send(self, *message: Any) -> None:
        self.ws.write_message(json.dumps(list(message)))

    def type(self, keys: str) -> None:
        self.send("stdin", keys)

    async def until(self, expected: str, timeout: float = 20) -> str:
        deadline = asyncio.get_running_loop().time() + timeout
        while expected not in self.text:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{expected!r} never appeared in {self.text[-2000:]!r}")
            raw = await asyncio.wait_for(self.ws.read_message(), left)
            if raw is None:
                raise AssertionError(f"closed before {expected!r}: {self.text[-2000:]!r}")
            message = json.loads(raw)
            self.messages.append(message)
            if message[0] == "stdout":
                self.text += message[1]
        return self.text

    async def closed(self, timeout: float = 20) -> None:
        while True:
            raw = await asyncio.wait_for(self.ws.read_message(), timeout)
            if raw is None:
                return
            self.messages.append(json.loads(raw))


async def open_screen(jp_ws_fetch, server_id: int, name: str, **kwargs: Any) -> Screen:
    ws = await jp_ws_fetch(
        "compute-servers",
        "api",
        "servers",
        str(server_id),
        "terminals",
        "websocket",
        name,
        **kwargs,
    )
    screen = Screen(ws)
    assert json.loads(await ws.read_message()) == ["setup", {}]
    return screen


async def test_terminals_rest_api_validates_and_needs_a_running_server(api, wait_for_state):
    code, idle = await api("POST", "servers", {"name": "idle"})
    code, listed = await api("GET", f"servers/{idle['id']}/terminals")
    assert code == 200 and listed == {"terminals": []}
    code, error = await api("POST", f"servers/{idle['id']}/terminals")
    assert code == 409 and "start it" in error["message"]

    server = await running_server(api, wait_for_state)
    base = f"servers/{server['id']}/terminals"
    for body, field in (
        ({"rows": 0}, "rows"),
        ({"cols": "80"}, "cols"),
        ({"cwd": "../outside"}, "cwd"),
        ({"name": "no spaces"}, "name"),
        ({"shell": "/bin/sh"}, "shell"),
    ):
        code, error = await api("POST", base, body)
        assert code == 400 and error["field"] == field, (body, error)

    code, first = await api("POST", base)
    assert code == 201 and first["name"] == "1"
    code, second = await api("POST", base, {"name": "build", "rows": 40, "cols": 120})
    assert code == 201 and second["name"] == "build"
    code, error = await api("POST", base, {"name": "build"})
    assert code == 409 and error["field"] == "name"
    code, listed = await api("GET", base)
    assert [t["name"] for t in listed["terminals"]] == ["1", "build"]

    code, _ = await api("DELETE", f"{base}/build")
    assert code == 204
    assert not process_alive(second["pid"])
    code, error = await api("DELETE", f"{base}/build")
    assert code == 404 and error["field"] == "terminal_name"


async def test_a_remote_terminal_runs_a_real_shell_in_the_workspace(
    api, wait_for_state, jp_ws_fetch, compute_data_dir
):
    server = await running_server(api, wait_for_state)
    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    screen.type("echo hello-$((6 * 7)); pwd\r")
    await screen.until("hello-42")
    workspace = compute_data_dir / "local" / str(server["id"]) / "disk"
    await screen.until(str(workspace))
    screen.send("set_size", 33, 111, 600, 900)
    screen.type("stty size\r")
    await screen.until("33 111")
    screen.ws.close()

    # A reload: a new websocket to the same name finds the same shell and what it printed.
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    await screen.until("hello-42")
    screen.type("echo still-$((1 + 1))\r")
    await screen.until("still-2")

    # Ending it: the shell goes, and the browser is told.
    code, _ = await api("DELETE", f"servers/{server['id']}/terminals/{terminal['name']}")
    assert code == 204
    await screen.closed()
    assert screen.messages[-1] == ["disconnect", 1]
    assert not process_alive(terminal["pid"])


async def test_a_terminal_survives_an_ssh_drop(api, wait_for_state, jp_ws_fetch, jp_serverapp):
    server = await running_server(api, wait_for_state)
    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    screen.type("export MARK=kept-$((20 + 1))\r")
    await screen.until("$")
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    (await manager.connection(server["id"])).connection.abort()
    await asyncio.sleep(0.5)
    screen.type("echo $MARK\r")
    await screen.until("kept-21")
    assert process_alive(terminal["pid"])


async def test_exiting_the_shell_or_stopping_the_server_ends_the_terminal(
    api, wait_for_state, jp_ws_fetch
):
    server = await running_server(api, wait_for_state)
    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    screen.type("exit\r")
    await screen.closed()
    assert screen.messages[-1] == ["disconnect", 1]
    _, listed = await api("GET", f"servers/{server['id']}/terminals")
    assert listed["terminals"] == []

    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off")
    assert not process_alive(terminal["pid"])
    await screen.closed()
    assert screen.messages[-1] == ["disconnect", 1]


async def login_cookie(jp_http_port: int, jp_base_url: str, token: str) -> str:
    """Log in with the token as a browser does; answer the session cookie header."""
    client = AsyncHTTPClient()
    url = f"http://localhost:{jp_http_port}{jp_base_url}login"
    page = await client.fetch(url)
    xsrf = page.headers["Set-Cookie"].split("_xsrf=", 1)[1].split(";", 1)[0]
    response = await client.fetch(
        url,
        method="POST",
        body=urlencode({"password": token, "_xsrf": xsrf}),
        headers={"Cookie": f"_xsrf={xsrf}"},
        follow_redirects=False,
        raise_error=False,
    )
    cookies = [c.split(";", 1)[0] for c in response.headers.get_list("Set-Cookie")]
    return "; ".join([*cookies, f"_xsrf={xsrf}"])


async def test_the_websocket_checks_origin_and_permission(
    api, wait_for_state, jp_ws_fetch, authorizer, jp_http_port, jp_base_url, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    # With a browser's cookie (no token: Jupyter skips origin checks for token requests).
    cookie = await login_cookie(jp_http_port, jp_base_url, jp_serverapp.identity_provider.token)
    browser = {"Cookie": cookie, "Authorization": ""}
    host = f"localhost:{jp_http_port}"
    screen = await open_screen(
        jp_ws_fetch, server["id"], terminal["name"], headers={**browser, "Origin": f"http://{host}"}
    )
    screen.ws.close()
    with pytest.raises(HTTPClientError) as refused:
        await open_screen(
            jp_ws_fetch,
            server["id"],
            terminal["name"],
            headers={**browser, "Origin": "http://evil.example"},
        )
    assert refused.value.code == 403
    authorizer.denied = {("execute", AUTH_RESOURCE)}
    with pytest.raises(HTTPClientError) as refused:
        await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    assert refused.value.code == 403
    authorizer.denied = set()
    with pytest.raises(HTTPClientError) as refused:
        await open_screen(jp_ws_fetch, server["id"], "no-such-terminal")
    assert refused.value.code == 404


async def test_ssh_access_works_with_openssh(api, wait_for_state, tmp_path, compute_data_dir):
    server = await running_server(api, wait_for_state, name="GPU-Box")
    code, access = await api("GET", f"servers/{server['id']}/ssh-access")
    assert code == 200
    assert access["host_alias"] == "compute-gpu-box"
    assert "StrictHostKeyChecking yes" in access["config"]
    config = tmp_path / "ssh_config"
    config.write_text(access["config"])
    result = await asyncio.to_thread(
        subprocess.run,
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", access["host_alias"], "pwd"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(compute_data_dir / "local" / str(server["id"]) / "disk")
    code, idle = await api("POST", "servers", {"name": "idle"})
    code, _ = await api("GET", f"servers/{idle['id']}/ssh-access")
    assert code == 409


async def test_terminal_changes_are_published_as_events(api, wait_for_state, jp_serverapp):
    from jupyter_compute_servers.app import EVENT_SCHEMA_ID

    kinds: list[str] = []

    async def listener(logger, schema_id, data):
        kinds.append(data["kind"])

    jp_serverapp.event_logger.add_listener(schema_id=EVENT_SCHEMA_ID, listener=listener)
    server = await running_server(api, wait_for_state)
    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    await api("DELETE", f"servers/{server['id']}/terminals/{terminal['name']}")
    await asyncio.sleep(0.2)  # listeners run as tasks
    assert kinds.count("terminals") == 2, kinds


async def test_terminal_input_is_checked_before_anything_starts(
    api, wait_for_state, compute_data_dir, tmp_path
):
    server = await running_server(api, wait_for_state)
    base = f"servers/{server['id']}/terminals"
    workspace = compute_data_dir / "local" / str(server["id"]) / "disk"
    (workspace / "a-file").write_text("not a directory")
    (tmp_path / "elsewhere").mkdir()
    (workspace / "away").symlink_to(tmp_path / "elsewhere")
    for body, field in (
        ({"cwd": "a\u0000b"}, "cwd"),
        ({"cwd": "x" * 5000}, "cwd"),
        ({"cwd": "x" * 300}, "cwd"),  # one part longer than a file name may be
        ({"cwd": "a\nb"}, "cwd"),
        ({"cwd": "a\u007fb"}, "cwd"),
        ({"cwd": "\ud800"}, "cwd"),
        ({"cwd": ["a"]}, "cwd"),
        ({"cwd": "/etc"}, "cwd"),
        ({"cwd": "a/../../b"}, "cwd"),
        ({"cwd": "a-file"}, "cwd"),  # exists on the server, as a file
        ({"cwd": "away/in"}, "cwd"),  # leads out of the workspace by a link
        ({"name": "a\n"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": 7}, "name"),
        ({"rows": 100000}, "rows"),
        ({"cols": True}, "cols"),
        ({"rows": 24.5}, "rows"),
    ):
        code, error = await api("POST", base, body)
        assert code == 400, (body, code, error)
        assert error["field"] == field, (body, error)
    _, listed = await api("GET", base)
    assert listed == {"terminals": []}
    assert not (tmp_path / "elsewhere" / "in").exists()
    code, error = await api("DELETE", f"{base}/a%0A")
    assert code == 400 and error["field"] == "terminal_name"
    # A good cwd below the workspace is made and used.
    code, terminal = await api("POST", base, {"cwd": "deep/er"})
    assert code == 201 and terminal["cwd"] == str(workspace / "deep" / "er")


class HostileHost:
    """A terminal host that answers each attaching client with the next of ``lines``."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.hellos: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader, writer) -> None:
        self.hellos.append(await reader.readline())
        writer.write(self.lines.pop(0))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()  # until our end closes
        writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{}\n", "malformed message"),
        (b"not json\n", "not JSON"),
        (b'["stdout", 5, 1]\n', "malformed message"),
        (b'["stdout", "x", -1]\n', "malformed message"),
        (b"[]\n", "malformed message"),
        (b"\xff\xfe\n", "not JSON"),
        (b"x" * 300_000, "longer than the limit of 100000 bytes"),
    ],
)
async def test_a_malformed_line_from_the_server_closes_the_terminal_with_a_message(
    api, wait_for_state, jp_ws_fetch, jp_serverapp, monkeypatch, line, expected
):
    server = await running_server(api, wait_for_state)
    ok = b'["stdout", "before-", 7]\n'
    host = HostileHost([ok + line])
    port = await host.start()
    terminals = jp_serverapp.web_app.settings["compute_servers_terminals"]

    async def connect_info(server_id: int, name: str) -> dict[str, Any]:
        return {"exists": True, "port": port, "token": "t0ken"}

    monkeypatch.setattr(terminals, "connect_info", connect_info)
    monkeypatch.setattr(terminals, "max_message_bytes", 100_000)
    try:
        screen = await open_screen(jp_ws_fetch, server["id"], "hostile")
        await screen.until("Terminal closed")
        await screen.closed()
    finally:
        host.close()
    assert screen.text.startswith("before-")
    assert expected in screen.text, screen.text
    assert screen.messages[-1] == ["disconnect", 1]
    assert screen.ws.close_code == 1011 and expected.split()[0] in (screen.ws.close_reason or "")
    assert json.loads(host.hellos[0]) == {"token": "t0ken", "offset": 0}
    assert len(host.hellos) == 1  # not retried: it would only do it again


async def test_the_terminal_host_bounds_what_unauthenticated_clients_send(
    api, wait_for_state, jp_ws_fetch, jp_serverapp
):
    server = await running_server(api, wait_for_state)
    _, terminal = await api("POST", f"servers/{server['id']}/terminals")
    terminals = jp_serverapp.web_app.settings["compute_servers_terminals"]
    info = await terminals.connect_info(server["id"], terminal["name"])

    async def refused(*chunks: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", info["port"])
        try:
            for chunk in chunks:
                writer.write(chunk)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            # The host hangs up (it would otherwise keep buffering, or answer).
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 30) == b""
        finally:
            writer.close()

    await refused(b"x" * 200_000)  # no newline, no token: not buffered without end
    await refused(b"[]\n")  # a hello that is not an object
    await refused(b'{"token": 5}\n')
    await refused(json.dumps({"token": info["token"]}).encode() + b"\n{}\n")
    await refused(json.dumps({"token": info["token"], "offset": "x"}).encode() + b"\n")
    assert process_alive(terminal["pid"])
    # The terminal still works for a client that speaks the protocol.
    screen = await open_screen(jp_ws_fetch, server["id"], terminal["name"])
    screen.type("echo fine-$((40 + 2))\r")
    await screen.until("fine-42")


@pytest.fixture
def jp_server_config(request, jp_server_config: dict[str, Any]) -> dict[str, Any]:
    if request.node.name.startswith("test_the_count_of_terminals"):
        jp_server_config = copy.deepcopy(jp_server_config)
        jp_server_config["ComputeServersApp"]["max_terminals_per_server"] = 2
    return jp_server_config


async def test_the_count_of_terminals_on_a_server_is_bounded(api, wait_for_state):
    server = await running_server(api, wait_for_state)
    base = f"servers/{server['id']}/terminals"
    for _ in range(2):
        code, _terminal = await api("POST", base)
        assert code == 201
    code, error = await api("POST", base)
    assert code == 409 and "max_terminals_per_server" in error["message"], error
    code, listed = await api("GET", base)
    assert [t["name"] for t in listed["terminals"]] == ["1", "2"]
    await api("DELETE", f"{base}/2")
    code, _terminal = await api("POST", base)
    assert code == 201
