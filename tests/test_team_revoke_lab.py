"""An admin revokes and restores a user's access from the Lab: through their own Jupyter
server's REST API (``/team/revocations``), which asks the team's control plane with its Hub
token (the admin's, since it is the admin's server).

One real JupyterHub (tests/hub.py) whose control plane is the SSH CA and the database logins'
issuer (PostgreSQL); root (a Hub admin) and bob each have their server, spawned by the Hub.
Revoked through root's server, bob's next certificate and database login are refused, the list
says who revoked him, and his running server says why; restored, he gets both again and his
server logs in again. Bob (no admin) is refused with 403 by his
own server. Requests are checked before the control plane is asked, and its refusals keep
their meaning (404, 400). Without a control plane the answer says one is needed (409); one
that cannot be reached is a 502 saying what to do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
import requests

from jupyter_compute_servers.control_plane.revocations import REVOKED_MESSAGE
from jupyter_compute_servers.control_plane_client import ControlPlaneClient
from jupyter_compute_servers.errors import CloudError
from jupyter_compute_servers.team_revocations import TeamRevocations

from .hub import ADMIN, SERVICE, Hub


@pytest.fixture(scope="module")
def hub(postgres_server) -> Iterator[Hub]:
    hub = Hub(postgres_server.create_database(), enabled_clouds=["local"])
    try:
        for user in ("bob", ADMIN):
            hub.start_server(user)
        yield hub
    finally:
        hub.close()


def _control_plane(hub: Hub, token: str, method: str, path: str, body: Any) -> requests.Response:
    """Bob asking the control plane directly, as his server does for a credential."""
    return requests.request(
        method,
        f"{hub.url}/services/{SERVICE}/{path}",
        headers={"Authorization": f"token {token}"},
        json=body,
        timeout=60,
    )


def _certificate(hub: Hub, token: str) -> requests.Response:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    return _control_plane(hub, token, "POST", "api/certificates", {"public_key": key})


def _login(hub: Hub, token: str) -> requests.Response:
    return _control_plane(hub, token, "POST", "api/database-credentials", {})


@pytest.mark.timeout(600)
def test_an_admin_revokes_and_restores_bob_through_their_own_server(hub: Hub) -> None:
    bob = hub.service_token("bob")
    assert _certificate(hub, bob).status_code == 201
    assert _login(hub, bob).status_code == 201

    # Bob is no admin: his own server refuses him every part of it, saying so.
    for method, path, body in (
        ("GET", "/team/revocations", None),
        ("POST", "/team/revocations", {"user": "alice"}),
        ("DELETE", "/team/revocations/alice", None),
    ):
        refused = hub.call("bob", method, path, body=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == "user", refused.text
        assert "Only a compute servers admin" in refused.json()["message"]

    listed = hub.call(ADMIN, "GET", "/team/revocations")
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"revocations": []}

    # Checked before the control plane is asked; its own refusals keep their meaning.
    for bad, field in (
        ({}, "user"),
        ({"user": ""}, "user"),
        ({"user": "bob\n"}, "user"),
        ({"user": 3}, "user"),
        ({"user": "bob", "until": 1}, "until"),
        ({"user": ADMIN}, "user"),  # (the control plane's: an admin may not revoke themselves)
    ):
        answer = hub.call(ADMIN, "POST", "/team/revocations", body=bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["field"] == field, (bad, answer.text)
    missing = hub.call(ADMIN, "DELETE", "/team/revocations/bob")
    assert missing.status_code == 404, missing.text
    assert missing.json()["field"] == "user" and "not revoked" in missing.json()["message"]

    # The admin revokes bob from the Lab (his own server's API).
    revoked = hub.call(ADMIN, "POST", "/team/revocations", body={"user": "bob"})
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["user"] == "bob" and revoked.json()["revoked_by"] == ADMIN
    assert revoked.json()["database_sessions_ended"] >= 0
    listed = hub.call(ADMIN, "GET", "/team/revocations").json()["revocations"]
    assert [(r["user"], r["revoked_by"]) for r in listed] == [("bob", ADMIN)]
    assert listed[0]["revoked_at"] == revoked.json()["revoked_at"]

    # Bob's next certificate and login: refused, saying why.
    for answer in (_certificate(hub, bob), _login(hub, bob)):
        assert answer.status_code == 403, answer.text
        assert REVOKED_MESSAGE in answer.text
    # His running server (its database session ended, its login NOLOGIN) says why too.
    cut_off = hub.call("bob", "GET", "/servers")
    assert cut_off.status_code == 403, cut_off.text
    assert cut_off.json()["reason"] == "DatabaseCredentialsError", cut_off.text
    assert REVOKED_MESSAGE in cut_off.json()["message"]

    # Restored: bob gets both again.
    restored = hub.call(ADMIN, "DELETE", "/team/revocations/bob")
    assert restored.status_code == 204, restored.text
    assert hub.call(ADMIN, "GET", "/team/revocations").json() == {"revocations": []}
    assert _certificate(hub, bob).status_code == 201
    assert _login(hub, bob).status_code == 201
    # His running server logs in again (a new login: the NOLOGIN one is replaced).
    again = hub.call("bob", "GET", "/servers")
    assert again.status_code == 200, again.text


async def test_without_a_control_plane_revocation_says_one_is_needed(api) -> None:
    for method, path, body in (
        ("GET", "team/revocations", None),
        ("POST", "team/revocations", {"user": "bob"}),
        ("DELETE", "team/revocations/bob", None),
    ):
        code, error = await api(method, path, body)
        assert code == 409, error
        assert error["field"] == "control_plane_url"
        assert "needs team mode's control plane" in error["message"]
    # The request is still checked first.
    code, error = await api("POST", "team/revocations", {"user": ""})
    assert code == 400 and error["field"] == "user"


async def test_an_unreachable_control_plane_is_a_502_saying_what_to_do() -> None:
    with socket.socket() as s:  # a port nothing listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    revocations = TeamRevocations(
        ControlPlaneClient(f"http://127.0.0.1:{port}/services/{SERVICE}/", "token")
    )
    for call in (revocations.list(), revocations.revoke("bob"), revocations.restore("bob")):
        with pytest.raises(CloudError) as failed:
            await call
        assert failed.value.status == 502 and failed.value.field == "control_plane_url"
        assert "Cannot reach the control plane" in failed.value.message
        assert "compute-control service is running" in failed.value.message
