"""An admin revokes a user's access to the team's compute servers, at once, and restores it.

One real JupyterHub (tests/hub.py) whose control plane is the SSH CA, the database logins'
issuer (PostgreSQL) and the Compute Engine proxy (over the fake Compute Engine, tests/fake_gce);
one real OpenSSH sshd that trusts the CA and reads the control plane's KRL as ``RevokedKeys``,
fetched as a host's cron does. No user server is started: the calls are the ones a user's
server makes, with the same Hub tokens (``access:services``).

After root (a Hub admin) revokes bob: bob gets no certificate, no database login and no
Compute Engine call (403, saying so); his open PostgreSQL session is ended and his password no
longer logs in; the certificate he holds is refused by sshd once the host has the KRL. Alice
is unaffected throughout. Restored, bob gets credentials again (his old certificate stays
revoked). Only admins list, revoke or restore.

Without the Hub: an owner login that is no superuser (CREATEROLE, as recommended) ends a
revoked user's sessions on PostgreSQL 15, and the revocations outlive a restart (the file).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from jupyter_compute_servers.control_plane.ca import (
    CertificateAuthority,
    PrincipalRule,
    load_or_create_key,
)
from jupyter_compute_servers.control_plane.errors import ControlPlaneError
from jupyter_compute_servers.control_plane.logins import DatabaseLogins
from jupyter_compute_servers.control_plane.revocations import (
    REVOKED_MESSAGE,
    Revocations,
    Revoked,
)
from jupyter_compute_servers.db import Database

from . import unix_accounts
from .fake_gce import FakeGCE
from .hub import ADMIN, SERVICE, Hub
from .sshd import OpenSSHServer, start_sshd

ACCOUNTS = {"alice": "jcst-rv-alice", "bob": "jcst-rv-bob"}


@pytest.fixture(scope="module")
def accounts() -> Iterator[None]:
    try:
        for account in ACCOUNTS.values():
            unix_accounts.create(account)
        yield
    finally:
        for account in ACCOUNTS.values():
            unix_accounts.remove(account)


@pytest.fixture(scope="module")
def secrets_dir() -> Iterator[Path]:
    """The CA key's and the service account key's directory, only root's (the Hub's)."""
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-revoke-"))
    os.chmod(directory, 0o700)
    load_or_create_key(directory / "ca_key")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGCE]:
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-gce-"))
    gce = FakeGCE(directory).start()
    yield gce
    gce.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def host(accounts: None, secrets_dir: Path) -> Iterator[tuple[OpenSSHServer, Path]]:
    """A shared host: trusts the CA, and refuses what the KRL file (from the control plane,
    fetched by the test as the host's cron would) lists. Its KRL: empty until fetched."""
    directory = Path(tempfile.mkdtemp(prefix="compute-servers-revoke-host-"))
    krl = directory / "revoked.krl"
    krl.write_bytes(b"")  # (sshd refuses every key when the file is missing: fail closed)
    nobody = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    server = start_sshd(
        directory,
        nobody,
        extra_config=f"TrustedUserCAKeys {secrets_dir / 'ca_key.pub'}\n"
        f"AuthorizedPrincipalsFile none\nRevokedKeys {krl}\n",
    )
    yield server, krl
    server.process.terminate()
    server.process.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(postgres_server, secrets_dir: Path, fake: FakeGCE) -> Iterator[Hub]:
    key_file = fake.service_account_file(secrets_dir / "service-account.json")
    os.chmod(key_file, 0o600)
    hub = Hub(
        postgres_server.create_database(),
        ca_key=secrets_dir / "ca_key",
        control_plane=(
            "--principal-template",
            "jcst-rv-{name}",
            "--gce-credentials-file",
            str(key_file),
            "--gce-endpoint",
            fake.url,
        ),
        enabled_clouds=["local"],
    )
    try:
        yield hub
    finally:
        hub.close()
        shutil.rmtree(hub.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tokens(hub: Hub) -> dict[str, str]:
    return {user: hub.service_token(user) for user in ("alice", "bob", ADMIN)}


def _call(hub: Hub, token: str, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/services/{SERVICE}/{path}",
        headers={"Authorization": f"token {token}"},
        json=body,
        timeout=60,
    )


def _certificate(hub: Hub, token: str) -> tuple[requests.Response, asyncssh.SSHKey]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = key.export_public_key().decode()
    return _call(hub, token, "POST", "api/certificates", {"public_key": public}), key


def _login(hub: Hub, token: str) -> requests.Response:
    return _call(hub, token, "POST", "api/database-credentials", {})


def _gce(hub: Hub, token: str) -> requests.Response:
    return requests.get(
        f"{hub.url}/services/{SERVICE}/gce/compute/v1/projects/test-project/zones",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def _connect(login: dict[str, Any]) -> psycopg.Connection:
    return psycopg.connect(
        host=login["host"],
        port=login["port"],
        dbname=login["dbname"],
        user=login["user"],
        password=login["password"],
        autocommit=True,
        connect_timeout=10,
    )


def _ssh(server: OpenSSHServer, account: str, key: Any, certificate: str) -> str:
    async def run() -> str:
        async with asyncssh.connect(
            "127.0.0.1",
            server.port,
            username=account,
            client_keys=[(key, asyncssh.import_certificate(certificate))],
            known_hosts=([asyncssh.import_public_key(server.host_key)], [], []),
            agent_path=None,
            config=[],
        ) as connection:
            return str((await connection.run("id -un", check=True)).stdout).strip()

    return asyncio.run(run())


def _fetch_krl(hub: Hub, krl: Path) -> None:
    """What a host's cron does: the KRL (no token), written whole then renamed."""
    response = requests.get(f"{hub.url}/services/{SERVICE}/api/revoked-keys", timeout=30)
    assert response.status_code == 200, response.text
    part = krl.with_name(krl.name + ".part")
    part.write_bytes(response.content)
    os.replace(part, krl)


def _refused(response: requests.Response) -> None:
    assert response.status_code == 403, response.text
    assert REVOKED_MESSAGE in response.text, response.text


def test_revoking_bob_cuts_his_certificates_logins_and_compute_engine_at_once(
    hub: Hub, tokens: dict[str, str], host: tuple[OpenSSHServer, Path]
) -> None:
    server, krl = host
    alice, bob, root = tokens["alice"], tokens["bob"], tokens[ADMIN]
    # Before: both get a certificate that logs in, a database login and Compute Engine.
    held: dict[str, tuple[dict[str, Any], Any]] = {}
    for user, token in (("alice", alice), ("bob", bob)):
        issued, key = _certificate(hub, token)
        assert issued.status_code == 201, issued.text
        held[user] = (issued.json(), key)
        assert _ssh(server, ACCOUNTS[user], key, issued.json()["certificate"]) == ACCOUNTS[user]
        assert _gce(hub, token).status_code == 200
    bob_login = _login(hub, bob).json()
    alice_login = _login(hub, alice).json()
    bob_session, alice_session = _connect(bob_login), _connect(alice_login)
    assert bob_session.execute("SELECT 1").fetchone() == (1,)
    _fetch_krl(hub, krl)
    assert _ssh(server, ACCOUNTS["bob"], held["bob"][1], held["bob"][0]["certificate"])

    # The admin revokes bob.
    revoked = _call(hub, root, "POST", "api/revocations", {"user": "bob"})
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["user"] == "bob" and revoked.json()["revoked_by"] == ADMIN
    assert revoked.json()["database_sessions_ended"] == 1
    listed = _call(hub, root, "GET", "api/revocations").json()["revocations"]
    assert [(r["user"], r["revoked_by"]) for r in listed] == [("bob", ADMIN)]

    # Bob: nothing new from the control plane, told why.
    _refused(_certificate(hub, bob)[0])
    _refused(_login(hub, bob))
    assert _gce(hub, bob).status_code == 403
    assert REVOKED_MESSAGE in _gce(hub, bob).text
    # His open session is ended; his password, still within its hour, logs in no more.
    with pytest.raises(psycopg.OperationalError):
        bob_session.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError) as refused:
        _connect(bob_login)
    assert "not permitted to log in" in str(refused.value)
    # The certificate he holds: refused by a host that has the KRL.
    _fetch_krl(hub, krl)
    with pytest.raises(asyncssh.PermissionDenied):
        _ssh(server, ACCOUNTS["bob"], held["bob"][1], held["bob"][0]["certificate"])

    # Alice: unaffected.
    assert alice_session.execute("SELECT 1").fetchone() == (1,)
    assert _ssh(server, ACCOUNTS["alice"], held["alice"][1], held["alice"][0]["certificate"])
    assert _certificate(hub, alice)[0].status_code == 201
    assert _login(hub, alice).status_code == 201
    assert _gce(hub, alice).status_code == 200
    alice_session.close()

    # Restored: bob gets credentials again, and they work; the certificate revoked stays so.
    assert _call(hub, root, "DELETE", "api/revocations/bob").status_code == 204
    assert _call(hub, root, "GET", "api/revocations").json() == {"revocations": []}
    issued, key = _certificate(hub, bob)
    assert issued.status_code == 201, issued.text
    fresh = _login(hub, bob)
    assert fresh.status_code == 201, fresh.text
    with _connect(fresh.json()) as session:
        assert session.execute("SELECT 1").fetchone() == (1,)
    assert _gce(hub, bob).status_code == 200
    _fetch_krl(hub, krl)
    assert _ssh(server, ACCOUNTS["bob"], key, issued.json()["certificate"]) == ACCOUNTS["bob"]
    with pytest.raises(asyncssh.PermissionDenied):
        _ssh(server, ACCOUNTS["bob"], held["bob"][1], held["bob"][0]["certificate"])
    # Restoring one who is not revoked: 404.
    assert _call(hub, root, "DELETE", "api/revocations/bob").status_code == 404


def test_only_admins_revoke_and_requests_are_checked(
    hub: Hub, tokens: dict[str, str], secrets_dir: Path
) -> None:
    alice, root = tokens["alice"], tokens[ADMIN]
    for method, path, body in (
        ("GET", "api/revocations", None),
        ("POST", "api/revocations", {"user": "bob"}),
        ("DELETE", "api/revocations/bob", None),
    ):
        refused = _call(hub, alice, method, path, body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == "token"
        assert "not a team admin" in refused.json()["message"]
    assert _call(hub, root, "GET", "api/revocations").json() == {"revocations": []}
    bad_bodies: tuple[tuple[Any, str], ...] = (
        ({}, "user"),
        ({"user": ""}, "user"),
        ({"user": "bob\n"}, "user"),
        ({"user": 3}, "user"),
        ({"user": "bob", "until": 1}, "until"),
        ({"user": ADMIN}, "user"),
    )
    for body, field in bad_bodies:
        bad = _call(hub, root, "POST", "api/revocations", body)
        assert bad.status_code == 400 and bad.json()["field"] == field, bad.text
    # The revocations file: 0600, beside the CA key.
    kept = secrets_dir / "revocations.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_an_owner_that_is_no_superuser_ends_a_revoked_users_sessions(postgres_server) -> None:
    """The recommended owner: a role with CREATEROLE that owns the database, no superuser.
    PostgreSQL lets it end only sessions of roles whose privileges it has: ``roles.disable``
    grants it the user's role first (PostgreSQL 15 here)."""
    url = make_url(postgres_server.create_database())
    owner_name = f"cs_owner_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    with postgres_server.admin() as admin:
        admin.execute(f"CREATE ROLE {owner_name} LOGIN CREATEROLE PASSWORD '{password}'")
        admin.execute(f'ALTER DATABASE "{url.database}" OWNER TO {owner_name}')
        admin.execute(f"ALTER SCHEMA public OWNER TO {owner_name}")
    owner_url = url.set(username=owner_name, password=password)
    logins = DatabaseLogins(Database(owner_url.render_as_string(hide_password=False)))
    try:
        bob = logins.issue({"name": "bob"})
        alice = logins.issue({"name": "alice"})
        with _connect(bob) as bob_session, _connect(alice) as alice_session:
            assert logins.disable("bob") == 1
            with pytest.raises(psycopg.OperationalError):
                bob_session.execute("SELECT 1")
            assert alice_session.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError) as refused:
            _connect(bob)
        assert "not permitted to log in" in str(refused.value)
        # Issued again (restored): LOGIN again.
        with _connect(logins.issue({"name": "bob"})) as again:
            assert again.execute("SELECT 1").fetchone() == (1,)
        # One never issued a login: nothing to do.
        assert logins.disable("carol") == 0
    finally:
        logins.database.close()


def test_revocations_outlive_a_restart_of_the_control_plane(tmp_path: Path) -> None:
    """Kept in the 0600 file: a new control plane (a new ``Revocations`` on the same file)
    still refuses bob and still lists his certificate in the KRL, as OpenSSH reads it
    (``ssh-keygen -Q``); a file others may read is refused."""
    ca = CertificateAuthority(asyncssh.generate_private_key("ssh-ed25519"), PrincipalRule())
    path = tmp_path / "revocations.json"
    first = Revocations(path)
    certificates = {}
    for user in ("alice", "bob"):
        key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        issued = ca.sign(user, key)
        first.record_issued(issued.serial, user, issued.valid_before)
        certificates[user] = tmp_path / f"{user}-cert.pub"
        certificates[user].write_text(issued.certificate + "\n")
    first.revoke("bob", ADMIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = Revocations(path)
    with pytest.raises(Revoked):
        again.check("bob")
    again.check("alice")
    assert [(r.user, r.by) for r in again.list()] == [("bob", ADMIN)]
    krl = tmp_path / "krl"
    krl.write_bytes(again.krl(ca.public_key))

    def revoked(user: str) -> bool:
        query = ["ssh-keygen", "-Q", "-f", str(krl), str(certificates[user])]
        return subprocess.run(query, capture_output=True, check=False).returncode != 0

    assert revoked("bob") and not revoked("alice")
    # Restored: bob may get certificates again; the one revoked stays in the KRL.
    assert again.restore("bob") and not again.restore("bob")
    again.check("bob")
    krl.write_bytes(Revocations(path).krl(ca.public_key))
    assert revoked("bob")

    path.chmod(0o644)
    with pytest.raises(ControlPlaneError) as refused:
        Revocations(path)
    assert refused.value.field == "revocations_file"
