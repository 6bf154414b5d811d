"""No long-lived shared credential in a user's server, and isolation on a shared host.

The team's control plane runs as a JupyterHub service (``c.JupyterHub.services``, with a
command) and is the SSH certificate authority that a shared host's real OpenSSH sshd trusts
(``TrustedUserCAKeys``). Each user's Jupyter server (spawned by the real Hub, team mode) gets a
short-lived certificate for the user's own Unix account with its Hub token, and logs in to the
host as that account: alice's and bob's kernels run under their own accounts, and bob's cannot
signal alice's kernel or read her workspace. What alice's server holds logs in to nothing;
an expired or unsigned key is refused; nobody gets a certificate for another's account.

The Unix accounts are ``jcst-alice``, ``jcst-bob`` and ``jcst-admin`` (the Hub admin, by the
admin's mapping): the control plane's rule is ``jcst-{name}`` here, so that no account of the
machine's own is ever touched by the tests' ``useradd``/``userdel``.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from jupyter_compute_servers.certificates import CertificateClient, Credentials
from jupyter_compute_servers.control_plane.ca import (
    CAError,
    CertificateAuthority,
    PrincipalRule,
    load_or_create_key,
)
from jupyter_compute_servers.db import Database
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.ssh import KeyStore, SSHConnectError, SSHConnections
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint

from . import unix_accounts
from .hub import ADMIN, SERVICE, Hub, user_server_pid, wait_state
from .postgres import free_port
from .sshd import OpenSSHServer, start_sshd

ACCOUNTS = {"alice": "jcst-alice", "bob": "jcst-bob", ADMIN: "jcst-admin"}
#: The host's own Python (Debian's, with ipykernel): every account may run it.
HOST_PYTHON = "/usr/bin/python3"


# --- the certificate authority on its own ---------------------------------------------------


def test_the_ca_key_is_made_private_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "ca_key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (tmp_path / "ca" / "ca_key.pub").read_bytes() == key.export_public_key()
    assert load_or_create_key(path).public_data == key.public_data  # read back, not replaced
    os.chmod(path, 0o640)
    with pytest.raises(CAError) as refused:
        load_or_create_key(path)
    assert "may be read by others (mode 640); chmod 600 it" in refused.value.message


def test_the_control_plane_says_when_it_cannot_reach_the_hub(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jupyterhub.services.auth import HubAuth
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    from jupyter_compute_servers.control_plane.app import make_app

    # A Hub that is not there (nothing listens on its port).
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{free_port()}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "the-service-token")
    HubAuth.clear_instance()

    async def ask() -> tuple[int, dict[str, Any]]:
        ca = CertificateAuthority(asyncssh.generate_private_key("ssh-ed25519"))
        port = free_port()
        server = make_app(ca, "/services/compute-control/").listen(port, "127.0.0.1")
        try:
            await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{port}/services/compute-control/api/ca",
                headers={"Authorization": "token a-user-token"},
            )
        except HTTPClientError as e:
            assert e.response is not None
            return e.code, json.loads(e.response.body)
        finally:
            server.stop()
        raise AssertionError("the control plane answered without checking the token")

    try:
        status, body = asyncio.run(ask())
    finally:
        HubAuth.clear_instance()
    assert status == 502
    assert body["field"] == "token"
    assert "could not reach JupyterHub" in body["message"]
    assert "ask an admin whether the Hub is running" in body["message"]


def test_a_certificate_names_one_account_for_an_hour_without_agent_or_x11_forwarding() -> None:
    now = 1_800_000_000
    ca = CertificateAuthority(
        asyncssh.generate_private_key("ssh-ed25519"),
        PrincipalRule(template="jcst-{name}", mapping=(("Root", "jcst-admin"),)),
        clock=lambda: now,
    )
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    issued = ca.sign("Alice", user_key.export_public_key().decode())
    cert = asyncssh.import_certificate(issued.certificate)
    assert issued.principal == "jcst-alice" and cert.principals == ["jcst-alice"]
    assert cert.key.public_data == user_key.public_data
    assert cert.signing_key.public_data == ca.key.public_data
    assert (issued.valid_after, issued.valid_before) == (now - 60, now + 3600)
    # Port forwarding (kernels' and apps' tunnels) and a pty (terminals); nothing else.
    assert cert.options == {"permit-port-forwarding": True, "permit-pty": True}
    assert ca.sign("Root", user_key.export_public_key().decode()).principal == "jcst-admin"

    # Another's account, an unsafe or denied name, and what is not a usable key: refused.
    public = user_key.export_public_key().decode()
    for hub_user, principal, wanted in (
        ("alice", "jcst-bob", "alice may only get certificates for the Unix account 'jcst-alice'"),
        ("al ice", None, "maps to 'jcst-al ice', which is not a safe Unix account name"),
    ):
        with pytest.raises(CAError) as refused:
            ca.sign(hub_user, public, principal)
        assert refused.value.status == 403 and wanted in refused.value.message
    plain = CertificateAuthority(ca.key, PrincipalRule())
    with pytest.raises(CAError) as refused:
        plain.sign("root", public)
    assert refused.value.status == 403
    assert "which no certificate is issued for" in refused.value.message
    rsa = asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
    for bad, wanted in (("ssh-ed25519 AAAA", "is not an OpenSSH public key"), (rsa, "ssh-rsa")):
        with pytest.raises(CAError) as refused:
            ca.sign("alice", bad)
        assert refused.value.field == "public_key" and wanted in refused.value.message


# --- a shared host, a Hub, and the control plane as its service -----------------------------


@pytest.fixture(scope="module")
def accounts() -> Iterator[dict[str, pwd.struct_passwd]]:
    made = {}
    try:
        for hub_user, account in ACCOUNTS.items():
            made[hub_user] = unix_accounts.create(account)
        yield made
    finally:
        for account in ACCOUNTS.values():
            unix_accounts.remove(account)


@pytest.fixture(scope="module")
def ca_key() -> Iterator[Path]:
    """The CA's key, made as an admin does (the control plane's command prints the public key
    hosts trust), in a directory only root (the Hub's account here) can enter."""
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-ca-"))
    os.chmod(directory, 0o700)
    path = directory / "ca_key"
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.control_plane",
            "--ca-key",
            str(path),
            "--print-ca-public-key",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert printed == (directory / "ca_key.pub").read_text().strip()
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def _sshd(ca_public: Path | None) -> tuple[OpenSSHServer, Path]:
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-shared-host-"))
    # Nobody's key is authorized: logins are by the CA's certificates only.
    nobody = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    # The two lines an admin adds to the host's sshd_config (the second: the certificate's
    # principal must be the account logged in to, which is sshd's default).
    extra = f"TrustedUserCAKeys {ca_public}\nAuthorizedPrincipalsFile none\n" if ca_public else ""
    server = start_sshd(directory, nobody, extra_config=extra)
    return server, directory


@pytest.fixture(scope="module")
def shared_host(accounts, ca_key: Path) -> Iterator[OpenSSHServer]:
    if subprocess.run([HOST_PYTHON, "-c", "import ipykernel"], check=False).returncode:
        raise RuntimeError(f"{HOST_PYTHON} lacks ipykernel: apt-get install python3-ipykernel")
    server, directory = _sshd(ca_key.with_name("ca_key.pub"))
    server.log = directory / "sshd.log"  # type: ignore[attr-defined]
    yield server
    server.process.terminate()
    server.process.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(postgres_server, ca_key: Path, shared_host: OpenSSHServer) -> Iterator[Hub]:
    db_url = postgres_server.create_database()
    # The control plane (a service the Hub starts and authenticates for, tests/hub.py) is the
    # SSH CA too; each user's server token may use it.
    hub = Hub(
        db_url,
        ca_key=ca_key,
        control_plane=(
            "--principal-template",
            "jcst-{name}",
            "--principal-map",
            f"{ADMIN}=jcst-admin",
        ),
        enabled_clouds=["ssh"],
    )
    try:
        for user in ACCOUNTS:
            hub.start_server(user)
        hub.db_url = db_url  # type: ignore[attr-defined]
        yield hub
    finally:
        hub.close()


def _ask(hub: Hub, token: str | None, body: Any) -> requests.Response:
    return requests.post(
        f"{hub.url}/services/{SERVICE}/api/certificates",
        headers={"Authorization": f"token {token}"} if token else {},
        json=body,
        timeout=30,
    )


async def _evaluate(hub: Hub, user: str, kernel_id: str, code: str, expression: str) -> Any:
    """Run ``code`` in the kernel (through the Hub's proxy and the user's Jupyter) and answer
    ``expression``'s value (a Python literal): read from the execute reply itself, so no
    output on IOPub can be missed."""
    url = f"ws://127.0.0.1:{hub.port}/user/{user}/api/kernels/{kernel_id}/channels"
    socket = await websocket_connect(
        HTTPRequest(url, headers={"Authorization": f"token {hub.tokens[user]}"})
    )
    try:
        msg_id = uuid.uuid4().hex
        socket.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "msg_type": "execute_request",
                        "username": user,
                        "session": uuid.uuid4().hex,
                        "date": "",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {"r": expression},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        while True:
            raw = await asyncio.wait_for(socket.read_message(), 60)
            assert raw is not None, "the kernel's websocket closed"
            message = json.loads(raw)
            if (
                message.get("msg_type") == "execute_reply"
                and message["parent_header"].get("msg_id") == msg_id
            ):
                content = message["content"]
                assert content["status"] == "ok", content
                value = content["user_expressions"]["r"]
                assert value["status"] == "ok", value
                return ast.literal_eval(value["data"]["text/plain"])
    finally:
        socket.close()


def _start_kernel(hub: Hub, user: str, server_id: int) -> str:
    response = requests.post(
        f"{hub.url}/user/{user}/api/kernels",
        headers={"Authorization": f"token {hub.tokens[user]}"},
        json={"name": f"compute-{server_id}-python3"},
        timeout=180,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.timeout(900)
def test_each_user_runs_as_their_own_account_and_holds_no_shared_credential(
    hub: Hub, shared_host: OpenSSHServer, accounts: dict[str, pwd.struct_passwd], ca_key: Path
) -> None:
    # The admin registers the shared host (no key file, no username: the certificate's) and
    # confirms its key; the inventory is taken logging in as the admin's own account.
    registered = hub.call(
        ADMIN,
        "POST",
        "/hosts",
        body={
            "name": "shared",
            "hostname": "127.0.0.1",
            "port": shared_host.port,
            "python": HOST_PYTHON,
        },
    )
    assert registered.status_code == 201, registered.text
    host = registered.json()
    trusted = hub.call(
        ADMIN,
        "PATCH",
        f"/hosts/{host['id']}",
        body={"trust_host_key": host["pending_host_key_fingerprint"]},
    ).json()
    assert trusted["trusted"] and trusted["inventory_error"] == "", trusted
    assert trusted["inventory"]["user"] == "jcst-admin"

    # Alice and Bob each start a server on it, and a kernel there.
    servers, kernels, facts = {}, {}, {}
    for user in ("alice", "bob"):
        created = hub.call(
            user,
            "POST",
            "/servers",
            body={
                "name": f"{user}-shared",
                "cloud": "ssh",
                "config": {"cpu": 1, "memory_gb": 0.25, "extra": {"host": host["id"]}},
            },
        )
        assert created.status_code == 201, created.text
        servers[user] = created.json()["id"]
        started = hub.call(user, "POST", f"/servers/{servers[user]}/actions/start")
        assert started.status_code == 202, started.text
    for user in ("alice", "bob"):
        wait_state(hub, user, servers[user], "running")
        kernels[user] = _start_kernel(hub, user, servers[user])
        facts[user] = asyncio.run(
            _evaluate(
                hub,
                user,
                kernels[user],
                "import os, pwd\n"
                "open('secret.txt', 'w').write('only mine')\n"
                "facts = {'pid': os.getpid(), 'user': pwd.getpwuid(os.getuid()).pw_name, "
                "'cwd': os.getcwd()}",
                "facts",
            )
        )
    store = HostStore(Database(hub.db_url, migrate=False), clock=time.time)  # type: ignore[attr-defined]
    for user in ("alice", "bob"):
        account = accounts[user]
        # The slice is the account's (what one GPU's MPS server is kept to), and it runs as it.
        held = store.slice_of(servers[user])
        assert held is not None and held.unix_user == account.pw_name
        assert facts[user]["user"] == account.pw_name
        assert os.stat(f"/proc/{facts[user]['pid']}").st_uid == account.pw_uid
        assert facts[user]["cwd"].startswith(account.pw_dir + "/")

    # Bob's kernel can neither signal Alice's kernel nor read (or list) her workspace.
    alice = facts["alice"]
    outcome = asyncio.run(
        _evaluate(
            hub,
            "bob",
            kernels["bob"],
            "import os, signal\n"
            "def attempt(f):\n"
            "    try:\n"
            "        f()\n"
            "        return 'allowed'\n"
            "    except Exception as e:\n"
            "        return type(e).__name__\n"
            f"outcome = {{'kill': attempt(lambda: os.kill({alice['pid']}, signal.SIGKILL)), "
            f"'read': attempt(lambda: open({alice['cwd'] + '/secret.txt'!r}).read()), "
            f"'list': attempt(lambda: os.listdir({alice['cwd']!r})), "
            f"'ca': attempt(lambda: open({str(ca_key)!r}).read())}}",
            "outcome",
        )
    )
    assert outcome == {
        "kill": "PermissionError",
        "read": "PermissionError",
        "list": "PermissionError",
        "ca": "PermissionError",
    }
    # (and Alice's kernel is alive and well)
    assert asyncio.run(_evaluate(hub, "alice", kernels["alice"], "", "1 + 1")) == 2

    # SSH access from Alice's own tools (OpenSSH's client): her current certificate, as her
    # account, to her slice's workspace.
    access = hub.call("alice", "GET", f"/servers/{servers['alice']}/ssh-access")
    assert access.status_code == 200, access.text
    config = hub.dir / "alice-ssh-config"
    config.write_text(access.json()["config"])
    assert f"User {ACCOUNTS['alice']}" in access.json()["config"]
    done = subprocess.run(
        ["ssh", "-F", str(config), "-o", "BatchMode=yes", access.json()["host_alias"], "id -un"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == ACCOUNTS["alice"], done.stderr

    # And from a terminal of her Jupyter server (its environment: her Hub token, the team's
    # config): `jupyter compute-servers ssh` logs in with a certificate of hers too.
    terminal_env = dict(
        entry.split("=", 1)
        for entry in Path(f"/proc/{user_server_pid('alice')}/environ").read_text().split("\0")
        if "=" in entry
    )
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_compute_servers.cli", "ssh", "alice-shared", "id", "-un"],
        capture_output=True,
        text=True,
        timeout=60,
        env=terminal_env,
        cwd=terminal_env["HOME"],
    )
    assert done.stdout.strip() == ACCOUNTS["alice"], done.stderr

    # Every login was a certificate of the CA, each for its own account.
    log = shared_host.log.read_text()  # type: ignore[attr-defined]
    for user in ("alice", "bob", ADMIN):
        assert f"Accepted publickey for {ACCOUNTS[user]} from 127.0.0.1" in log
        assert f"ID {user} as {ACCOUNTS[user]} (jupyter-compute-servers #" in log
    assert "ED25519-CERT" in log

    # Alice's Jupyter server holds no shared credential: its environment has no key, no
    # private key in any file it wrote (its home, its data) logs in to the host as anyone by
    # itself, and the only certificate there (SSH access's) is hers, for an hour at most.
    pid = user_server_pid("alice")
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"PRIVATE KEY" not in environ and str(ca_key).encode() not in environ
    ca_private = ca_key.read_bytes()
    home = hub.dir / "home" / "alice"
    private_keys, certificates = [], 0
    for root, _dirs, files in os.walk(home):
        for name in files:
            path = Path(root) / name
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            assert ca_private not in data
            if name.endswith("-cert.pub"):
                cert = asyncssh.import_certificate(data)
                assert cert.principals == [ACCOUNTS["alice"]]
                assert cert._valid_before <= time.time() + 3600  # type: ignore[attr-defined]
                certificates += 1
            if b"PRIVATE KEY" in data:
                private_keys.append(asyncssh.import_private_key(data))
    assert certificates == 1  # (the walk reads SSH access's files)
    for key in private_keys:
        for account in (*ACCOUNTS.values(), "root"):
            with pytest.raises(asyncssh.PermissionDenied):
                asyncio.run(_login(shared_host, account, key))

    for user in ("alice", "bob"):
        assert hub.call(user, "POST", f"/servers/{servers[user]}/actions/stop").status_code == 202
        wait_state(hub, user, servers[user], "off")
    store.database.close()


async def _login(
    host: OpenSSHServer, account: str, key: Any, cert: Any = None
) -> asyncssh.SSHCompletedProcess:
    async with asyncssh.connect(
        "127.0.0.1",
        host.port,
        username=account,
        client_keys=[(key, cert) if cert is not None else key],
        known_hosts=([asyncssh.import_public_key(host.host_key)], [], []),
        agent_path=None,
        config=[],
    ) as connection:
        return await connection.run("id -un", check=True)


def test_the_control_plane_answers_only_the_hub_user_and_only_for_their_account(
    hub: Hub,
) -> None:
    token = hub.service_token("alice")
    public = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()

    issued = _ask(hub, token, {"public_key": public})
    assert issued.status_code == 201, issued.text
    assert issued.json()["principal"] == "jcst-alice"
    assert issued.json()["valid_before"] - time.time() == pytest.approx(3600, abs=120)

    refused = _ask(hub, token, {"public_key": public, "principal": "jcst-bob"})
    assert refused.status_code == 403
    assert refused.json() == {
        "message": "alice may only get certificates for the Unix account 'jcst-alice', not "
        "'jcst-bob'.",
        "reason": "CAError",
        "field": "principal",
    }
    # No token, a token without the service's scope, the Hub's own test service: refused.
    assert _ask(hub, None, {"public_key": public}).status_code in (401, 403)
    assert _ask(hub, hub.tokens["alice"], {"public_key": public}).status_code == 403
    service = _ask(hub, hub.token, {"public_key": public})
    assert service.status_code == 403 and service.json()["field"] == "token"
    # What is not a request for a certificate: 400 naming the field.
    for body, field in (
        ({"public_key": "nonsense"}, "public_key"),
        ([public], "body"),
        ({"public_key": public, "valid_before": 2**40}, "valid_before"),
    ):
        bad = _ask(hub, token, body)
        assert bad.status_code == 400 and bad.json()["field"] == field, bad.text


def test_certificates_log_in_as_their_account_only_and_expired_or_unsigned_keys_are_refused(
    hub: Hub, shared_host: OpenSSHServer, ca_key: Path
) -> None:
    token = hub.service_token("alice")
    url = f"{hub.url}/services/{SERVICE}/"

    async def scenario() -> None:
        client = CertificateClient(url, token)
        mine = await client.credentials()
        assert mine.principal == "jcst-alice"
        done = await _login(shared_host, "jcst-alice", mine.key, mine.certificate)
        assert done.stdout.strip() == "jcst-alice"
        # Alice's certificate is not Bob's (nor root's) account.
        for account in ("jcst-bob", "root"):
            with pytest.raises(asyncssh.PermissionDenied):
                await _login(shared_host, account, mine.key, mine.certificate)
        # A key of no certificate, one signed by another CA, one expired: refused.
        plain = asyncssh.generate_private_key("ssh-ed25519")
        with pytest.raises(asyncssh.PermissionDenied):
            await _login(shared_host, "jcst-alice", plain)
        other_ca = CertificateAuthority(
            asyncssh.generate_private_key("ssh-ed25519"), PrincipalRule("jcst-{name}")
        )
        forged = other_ca.sign("alice", plain.export_public_key().decode())
        with pytest.raises(asyncssh.PermissionDenied):
            await _login(
                shared_host, "jcst-alice", plain, asyncssh.import_certificate(forged.certificate)
            )
        ca = CertificateAuthority(
            asyncssh.read_private_key(ca_key),
            PrincipalRule("jcst-{name}"),
            validity=60,
            clock=lambda: time.time() - 3600,
        )
        expired = asyncssh.import_certificate(
            ca.sign("alice", plain.export_public_key().decode()).certificate
        )
        with pytest.raises(asyncssh.PermissionDenied):
            await _login(shared_host, "jcst-alice", plain, expired)

        # Through the SSH layer: a certificate the host refuses (this one expired, though
        # the client took it for fresh) is replaced once, and the login goes on.
        ssh = SSHConnections(KeyStore(tempfile.mkdtemp()), certificates=client)
        client._current = Credentials(plain, expired, "jcst-alice", time.time() + 3600)
        endpoint = SSHEndpoint(
            "127.0.0.1",
            shared_host.port,
            "",
            shared_host.host_key,
            "~",
            certificate=True,
        )
        try:
            connection = await ssh.get("host:shared", endpoint)
            assert (await connection.run("id", "-un")).stdout.strip() == "jcst-alice"
            assert client._current is not None and client._current.certificate is not expired
        finally:
            await ssh.close_all()

        # A host that does not trust the team's CA: refused, saying what its admin must do.
        untrusting, directory = _sshd(None)
        try:
            with pytest.raises(SSHConnectError) as refused:
                await ssh.get(
                    "host:untrusting",
                    SSHEndpoint(
                        "127.0.0.1", untrusting.port, "", untrusting.host_key, "~", certificate=True
                    ),
                )
            assert refused.value.message.startswith(
                f"127.0.0.1:{untrusting.port} refused the team's SSH certificate for the Unix "
                f"account 'jcst-alice'"
            )
            assert "trust the team's CA (TrustedUserCAKeys in sshd_config)" in (
                refused.value.message
            )
        finally:
            untrusting.process.terminate()
            untrusting.process.wait(10)
            shutil.rmtree(directory, ignore_errors=True)

    asyncio.run(scenario())


def test_a_certificate_is_renewed_before_it_expires(hub: Hub) -> None:
    now = [time.time()]
    client = CertificateClient(
        f"{hub.url}/services/{SERVICE}/", hub.service_token("alice"), clock=lambda: now[0]
    )

    async def scenario() -> None:
        first = await client.credentials()
        life = first.valid_before - now[0]
        now[0] += life * 0.5  # half its life ahead: kept
        assert await client.credentials() is first
        now[0] = first.valid_before - life * 0.2  # under a quarter left: a new one
        second = await client.credentials()
        assert second.certificate.public_data != first.certificate.public_data
        assert second.key.public_data != first.key.public_data  # a new key pair too

    asyncio.run(scenario())
