"""The SSH layer against real servers: OpenSSH's sshd and the local cloud's asyncssh server."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import time
from typing import Any

import asyncssh
import pytest

from jupyter_compute_servers.manager import ServerAgent
from jupyter_compute_servers.models import State
from jupyter_compute_servers.ssh import (
    HostKeyMismatchError,
    KeyStore,
    ServerStoppedError,
    ServerUnreachableError,
    SSHConnections,
)
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint

from .sshd import stalled_sessions, start_sshd


@pytest.fixture
def keys(tmp_path):
    return KeyStore(tmp_path / "keys")


@pytest.fixture
def sshd(tmp_path, keys):
    server = start_sshd(tmp_path, keys.ensure(1))
    yield server
    server.process.terminate()
    server.process.wait()


def endpoint_for(server, host_key=None) -> SSHEndpoint:
    return SSHEndpoint(
        host="127.0.0.1",
        port=server.port,
        username=server.username,
        host_key=host_key or server.host_key,
        workspace="/tmp",
        python="python3",
    )


def test_client_keys_are_private_files(keys):
    public = keys.ensure(7)
    assert public.startswith("ssh-ed25519 ")
    path = keys.private_key_path(7)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert keys.ensure(7) == public  # stable: not regenerated
    keys.remove(7)
    assert not path.exists()


async def test_openssh_connection_agent_and_commands(sshd, keys):
    connections = SSHConnections(keys)
    try:
        connection = await connections.get(1, endpoint_for(sshd))
        result = await connection.run("printf", "%s|", "a b", "$HOME", "'quoted'")
        assert result.stdout == "a b|$HOME|'quoted'|"
        again = await connections.get(1, endpoint_for(sshd))
        assert again is connection  # one connection per server, shared
        agent = await connections.agent(1, endpoint_for(sshd))
        info = await agent.call("info", workspace="/tmp")
        assert info["cpu_count"] == os.cpu_count()
        assert "gpus" in info and isinstance(info["gpu_reason"], str)
    finally:
        await connections.close_all()


async def server_agent(connections: SSHConnections, sshd: Any, check_after: float) -> ServerAgent:
    """The agent as services reach it (``ComputeServerManager.agent_for``)."""
    endpoint = endpoint_for(sshd)
    connection = await connections.get(1, endpoint)
    client = await connections.agent(1, endpoint)
    return ServerAgent(client, endpoint, "box", connection, check_after=check_after)


async def test_an_agent_call_is_sent_before_the_loop_runs_anything_else(sshd, keys, monkeypatch):
    """A call's request is written in its caller's step: the work the event loop runs beside
    it (a kernel start's push beside its claim of a warm kernel) does not hold it back."""
    connections = SSHConnections(keys)
    try:
        agent = await server_agent(connections, sshd, check_after=2.5)
        sent: list[str] = []
        write = asyncssh.SSHWriter.write

        def recorded(self: asyncssh.SSHWriter[Any], data: Any) -> None:
            sent.append(str(data))
            write(self, data)

        monkeypatch.setattr(asyncssh.SSHWriter, "write", recorded)
        seen_by_next: list[list[str]] = []
        asyncio.get_running_loop().call_soon(lambda: seen_by_next.append(list(sent)))
        assert await agent.call("ping", timeout=30) is not None
        assert len(seen_by_next) == 1
        assert [line for line in seen_by_next[0] if '"method": "ping"' in line]
    finally:
        await connections.close_all()


async def test_an_agent_call_over_a_stalled_link_fails_fast_saying_why(sshd, keys):
    """The link's check: no answer within ``check_after`` seconds, then no answer to an SSH
    round trip either, fails the call (and drops the connection) within twice that."""
    connections = SSHConnections(keys)
    try:
        agent = await server_agent(connections, sshd, check_after=0.5)
        assert await agent.call("ping", timeout=30) is not None
        with stalled_sessions(sshd.process.pid):
            began = time.monotonic()
            with pytest.raises(ServerUnreachableError, match="no answer within 1 s") as raised:
                await agent.call("ping", timeout=30)
            took = time.monotonic() - began
            print(f"failed after {took:.2f} s")
            assert took < 10  # not the call's own 30 s
            assert "'box'" in raised.value.message
            assert agent.connection is not None and agent.connection.connection.is_closed()
    finally:
        await connections.close_all()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.STOPPING, "Could not reach its agent on compute server 'box': it is stopping now."),
        (State.RUNNING, "Could not reach its agent on compute server 'box': it is not answering"),
    ],
)
async def test_an_agent_call_broken_by_the_servers_stop_says_so(sshd, keys, state, expected):
    """A stop closes the server's connection under the calls in flight (a terminal being
    closed, say): they fail as a 409 saying the server is stopping, not as a server that
    stopped answering, whose advice (stop it and start it again) would be wrong. Broken while
    the server is still running, a call fails as unreachable, as before."""
    connections = SSHConnections(keys)
    try:
        now = State.RUNNING
        agent = dataclasses.replace(
            await server_agent(connections, sshd, check_after=10), state_now=lambda: now
        )
        with stalled_sessions(sshd.process.pid):  # the call stays in flight
            call = asyncio.ensure_future(agent.call("ping", timeout=30))
            await asyncio.sleep(0.2)
            assert not call.done()
            now = state  # a stop records its state first, then ends the connection
            assert agent.connection is not None
            agent.connection.connection.abort()
            with pytest.raises(ServerUnreachableError) as raised:
                await asyncio.wait_for(call, 10)
            assert raised.value.message.startswith(expected), raised.value.message
            stopped = isinstance(raised.value, ServerStoppedError)
            assert stopped == (state is State.STOPPING)
            assert raised.value.status == (409 if stopped else 502)
    finally:
        await connections.close_all()


async def test_a_changed_host_key_is_refused(sshd, keys):
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    connections = SSHConnections(keys, retries=0)
    with pytest.raises(HostKeyMismatchError, match="not the pinned one"):
        await connections.get(1, endpoint_for(sshd, host_key=impostor))
    assert not connections.is_connected(1)


async def test_a_dropped_connection_is_reopened(sshd, keys):
    connections = SSHConnections(keys)
    try:
        first = await connections.get(1, endpoint_for(sshd))
        first.connection.abort()
        await first.connection.wait_closed()
        second = await connections.get(1, endpoint_for(sshd))
        assert second is not first
        assert (await second.run("echo", "back")).stdout == "back\n"
    finally:
        await connections.close_all()


async def test_an_unknown_client_key_is_refused(sshd, tmp_path):
    other_keys = KeyStore(tmp_path / "other")
    other_keys.ensure(1)
    connections = SSHConnections(other_keys, retries=0)
    with pytest.raises(Exception, match="Cannot connect"):
        await connections.get(1, endpoint_for(sshd))


@pytest.mark.parametrize("use_agent", [True, False])
async def test_the_users_agent_is_never_forwarded(sshd, keys, tmp_path, monkeypatch, use_agent):
    """A registered host honours ~/.ssh/config, whose ``ForwardAgent yes`` would hand the
    user's ssh-agent (all their keys) to whoever controls the compute server."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  ForwardAgent yes\n")
    monkeypatch.setenv("HOME", str(home))
    socket_path = tmp_path / "agent.sock"
    agent = await asyncio.create_subprocess_exec(
        "ssh-agent", "-D", "-a", str(socket_path), stdout=asyncio.subprocess.DEVNULL
    )
    try:
        while not socket_path.exists():
            assert agent.returncode is None
            await asyncio.sleep(0.02)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        key = str(keys.private_key_path(1))
        add = await asyncio.create_subprocess_exec("ssh-add", "-q", key)
        assert await add.wait() == 0
        endpoint = dataclasses.replace(
            endpoint_for(sshd),
            use_ssh_config=True,
            use_agent=use_agent,
            identity_file="" if use_agent else key,
        )
        connections = SSHConnections(keys)
        try:
            connection = await connections.get(1, endpoint)
            result = await connection.run("sh", "-c", "echo agent=${SSH_AUTH_SOCK:-none}")
            assert result.stdout == "agent=none\n"
        finally:
            await connections.close_all()
    finally:
        agent.terminate()
        await agent.wait()
