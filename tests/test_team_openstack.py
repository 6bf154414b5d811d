"""No OpenStack credential in a user's server: the control plane issues each Hub user short-lived
Keystone tokens of their own project.

A real JupyterHub runs the control plane as its service with the OpenStack service user's
clouds.yaml (``--openstack-clouds-yaml``, a 0600 file of the Hub's account) naming the fake
OpenStack (tests/fake_openstack.py, driven by the real openstacksdk and keystoneauth), with
``--openstack-create-projects``. Each user's Jupyter server (team mode, spawned by the Hub) has no
clouds.yaml: its openstack cloud asks the control plane for a token of ``compute-<user>``. Alice
creates and starts a VM through her server, and the fake sees only tokens of her project; Bob
cannot see or delete it; a token near its end is renewed, a revoked one replaced; a revoked user
gets 403 and the tokens issued to him are refused by Keystone at once. A control plane whose
Keystone would rescope a scoped token (everyone's projects), or let a token make credentials of
the one OpenStack user (an EC2 credential for bob's project, an application credential, a trust,
a generic credential), refuses to start, or to serve a project's first token. With Keystone's
policy hiding the projects' names from the tokens, the control plane still finds each user's.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jupyter_compute_servers.clouds.base import CloudServices
from jupyter_compute_servers.clouds.openstack import OpenStackCloud
from jupyter_compute_servers.control_plane_client import ControlPlaneClient

from .fake_openstack import (
    CREDENTIAL_POLICIES,
    HIDDEN,
    RESTRICTIVE,
    FakeOpenStack,
    authorized_keys,
)
from .hub import ADMIN, Hub, admin_secret, user_server_pid, wait_state, wire_fake
from .postgres import free_port

SERVICE = "compute-control"
BOOT_IMAGES = {"*": "ubuntu-2204-20230914", "*gpu": "ubuntu-2204-nvidia-20230914"}
#: The admin's cloud-init user data of every VM.
USER_DATA = "#!/bin/sh\necho the admin's script\n"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenStack]:
    with wire_fake(
        "compute-servers-openstack-",
        lambda directory: FakeOpenStack(directory / "cloud").start(),
    ) as openstack:
        # As the control plane requires of Keystone (else a token would reach every project, or
        # make credentials of them).
        openstack.allow_rescope_scoped_token = False
        # And, as the README suggests, no listing of everyone's projects' names to their tokens
        # (which the control plane does without).
        openstack.policy.update(RESTRICTIVE, **HIDDEN)
        # A network every project may use (a campus provider network an admin shares).
        openstack.add_network("campus", shared=True)
        # A key pair of the control plane's OpenStack user from before (an admin's).
        openstack.keypairs["admins-key"] = {
            "name": "admins-key",
            "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdmin",
            "fingerprint": "00",
            "user_id": openstack.user_id,
            "type": "ssh",
        }
        yield openstack


@pytest.fixture(scope="module")
def clouds_yaml(fake: FakeOpenStack) -> Iterator[Path]:
    """The service user's clouds.yaml, as an admin keeps it."""
    with admin_secret("clouds.yaml", fake.clouds_yaml) as path:
        yield path


@pytest.fixture(scope="module")
def hub(postgres_server, fake: FakeOpenStack, clouds_yaml: Path) -> Iterator[Hub]:
    hub = Hub(
        postgres_server.create_database(),
        control_plane=(
            "--openstack-clouds-yaml",
            str(clouds_yaml),
            "--openstack-cloud",
            "opengpu",
            "--openstack-create-projects",
        ),
        # The users' servers know images, flavors and how to reach VMs; no credentials.
        user_settings={
            "OpenStackCloud.boot_images": BOOT_IMAGES,
            "OpenStackCloud.ssh_port": fake.ssh_port,
            "OpenStackCloud.ssh_username": getpass.getuser(),
            "OpenStackCloud.python": sys.executable,
            "OpenStackCloud.poll_interval": 0.05,
            "OpenStackCloud.status_check_interval": 0.0,
            "OpenStackCloud.user_data": USER_DATA,
        },
        enabled_clouds=["openstack"],
    )
    try:
        hub.wait_for_control_plane("api/openstack-credentials", "POST")
        hub.start_server("alice")
        yield hub
    finally:
        hub.close()
        shutil.rmtree(hub.dir, ignore_errors=True)


def openstack_keys_listed(hub: Hub) -> list[str]:
    """The key pairs alice's create dialog is offered (none in team mode: not hers)."""
    listed = hub.call("alice", "GET", "/clouds").json()
    (openstack,) = [c for c in listed["clouds"] if c["name"] == "openstack"]
    return list(openstack["offerings"]["key_pairs"])


def _credentials(hub: Hub, token: str) -> requests.Response:
    return requests.post(
        f"{hub.url}/services/{SERVICE}/api/openstack-credentials",
        headers={"Authorization": f"token {token}"},
        json={},
        timeout=60,
    )


def _project(fake: FakeOpenStack, user: str) -> str:
    project = fake.project_named(f"compute-{user}")
    assert project is not None, f"no project of {user}"
    return str(project["id"])


def _service_calls(fake: FakeOpenStack, since: int) -> list[Any]:
    return [r for r in fake.requests[since:] if not r.path.startswith("/identity")]


@pytest.mark.timeout(600)
def test_alices_vm_runs_on_tokens_of_her_project_only(
    hub: Hub, fake: FakeOpenStack, clouds_yaml: Path
) -> None:
    # Her server's configuration names no clouds.yaml and no password.
    user_config = (hub.config.server_config_dir / "jupyter_server_config.py").read_text()
    assert "clouds_yaml" not in user_config and str(clouds_yaml) not in user_config
    assert fake.password not in user_config
    first = len(fake.requests)

    created = hub.call(
        "alice",
        "POST",
        "/servers",
        body={"name": "alice-vm", "cloud": "openstack", "config": {"machine_type": "ci_medium"}},
    )
    assert created.status_code == 201, created.text
    server_id = created.json()["id"]
    assert hub.call("alice", "POST", f"/servers/{server_id}/actions/start").status_code == 202
    wait_state(hub, "alice", server_id, "running")

    # The control plane made her project (tagged as its own) and her VM is in it, on the
    # shared network (her project sees no other project's).
    alice_project = _project(fake, "alice")
    assert "jupyter-compute-servers" in fake.projects[alice_project]["tags"]
    vm = fake.server()
    assert vm.project_id == alice_project
    # No Nova key pair (they are the one OpenStack user's, everyone's): her server's key is in
    # the VM's own user data, beside the admin's script, and SSH came in with it.
    assert vm.key_name == "" and set(fake.keypairs) == {"admins-key"}
    assert len(authorized_keys(vm.user_data)) == 1 and "the admin's script" in vm.user_data
    assert openstack_keys_listed(hub) == []
    assert vm.network_id == next(n["id"] for n in fake.networks if n["name"] == "campus")
    listed = hub.call("alice", "GET", "/clouds").json()
    (openstack,) = [c for c in listed["clouds"] if c["name"] == "openstack"]
    assert openstack["offerings"]["project"] == "compute-alice"
    assert "private" not in {n["name"] for n in openstack["offerings"]["networks"]}

    # Every Nova, Glance and Neutron call came with a token scoped to her project; the only
    # password logins are the control plane's, at Keystone.
    calls = [r for r in _service_calls(fake, first) if "x-auth-token" in r.headers]
    assert calls and {fake.token_project(r.headers["x-auth-token"]) for r in calls} == {
        alice_project
    }
    for request in fake.requests[first:]:
        if fake.password in str(request.body):
            assert request.path == "/identity/v3/auth/tokens"

    # Nothing of the service user's credentials is in her server: not its environment, not
    # any file under her home.
    environ = Path(f"/proc/{user_server_pid('alice')}/environ").read_bytes()
    assert fake.password.encode() not in environ and str(clouds_yaml).encode() not in environ
    for root, _dirs, files in os.walk(hub.dir / "home" / "alice"):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                assert fake.password.encode() not in path.read_bytes(), path

    # Bob, with a token of his own project, neither sees nor deletes her VM.
    bob = _credentials(hub, hub.service_token("bob"))
    assert bob.status_code == 201, bob.text
    issued = bob.json()
    assert issued["project_name"] == "compute-bob" and issued["project_id"] != alice_project
    assert issued["region"] == fake.region and issued["expires_at"] > issued["issued_at"]
    assert issued["auth_url"] == fake.auth_url
    assert bob.headers["Cache-Control"] == "no-store"
    nova = f"{fake.url}/compute/v2.1/servers"
    headers = {"X-Auth-Token": issued["token"]}
    assert requests.get(f"{nova}/detail", headers=headers, timeout=30).json()["servers"] == []
    assert requests.get(f"{nova}/{vm.id}", headers=headers, timeout=30).status_code == 404
    assert requests.delete(f"{nova}/{vm.id}", headers=headers, timeout=30).status_code == 404
    stop = requests.post(
        f"{nova}/{vm.id}/action", headers=headers, json={"os-stop": None}, timeout=30
    )
    assert stop.status_code == 404
    # ... nor her volumes (Cinder's URL names the project: hers is refused to his token).
    volumes = f"{fake.url}/volume/v3/{alice_project}/volumes"
    assert requests.get(volumes, headers=headers, timeout=30).status_code == 403
    # ... nor rescope his token to her project (or any other).
    rescope = requests.post(
        f"{fake.auth_url}/auth/tokens",
        json={
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": issued["token"]}},
                "scope": {"project": {"id": alice_project}},
            }
        },
        timeout=30,
    )
    assert rescope.status_code == 403
    assert fake.server().status == "ACTIVE"

    deprovision = hub.call(
        "alice", "POST", f"/servers/{server_id}/actions/deprovision", body={"confirm": True}
    )
    assert deprovision.status_code == 202, deprovision.text
    wait_state(hub, "alice", server_id, "deprovisioned")
    assert fake.servers == {}
    assert hub.call("alice", "DELETE", f"/servers/{server_id}").status_code == 204


def _team_cloud(hub: Hub, user: str, tmp_path: Path, **traits: Any) -> OpenStackCloud:
    """The openstack cloud as a user's server has it in team mode (here, in the tests'
    process, to watch its tokens)."""
    cloud = OpenStackCloud(data_dir=str(tmp_path / "openstack"), **traits)
    cloud.bind(
        CloudServices(
            images=None,  # type: ignore[arg-type]
            hosts=None,  # type: ignore[arg-type]
            store=None,  # type: ignore[arg-type]
            ssh=None,  # type: ignore[arg-type]
            control_plane=ControlPlaneClient(
                f"{hub.url}/services/{SERVICE}/", hub.service_token(user)
            ),
        )
    )
    return cloud


def _tokens_used(fake: FakeOpenStack, since: int) -> list[str]:
    return [
        r.headers["x-auth-token"]
        for r in _service_calls(fake, since)
        if r.headers.get("x-auth-token") and "flavors" in r.path
    ]


def test_a_token_near_its_end_is_renewed_and_a_revoked_one_replaced(
    hub: Hub, fake: FakeOpenStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Renewed at three quarters of its life, before Keystone refuses it; and a token Keystone
    refuses (401: revoked) is replaced at once, the call going through."""
    mistaken = tmp_path / "mistaken-clouds.yaml"  # not there: reading it would fail the cloud
    cloud = _team_cloud(hub, "alice", tmp_path, clouds_yaml=str(mistaken), cloud="opengpu")
    fake.token_ttl = 4.0
    try:
        first = len(fake.requests)
        assert asyncio.run(cloud.refresh_catalog(force=True)) == ""
        (one,) = set(_tokens_used(fake, first))
        assert fake.token_project(one) == _project(fake, "alice")
        assert "are ignored in team mode" in caplog.text
        # Within its first three quarters, the same token.
        second = len(fake.requests)
        assert asyncio.run(cloud.refresh_catalog(force=True)) == ""
        assert set(_tokens_used(fake, second)) == {one}
        # Past them (3 of its 4 seconds), a new one, though Keystone still takes the old.
        time.sleep(3.2)
        assert one in fake.tokens
        third = len(fake.requests)
        assert asyncio.run(cloud.refresh_catalog(force=True)) == ""
        (two,) = set(_tokens_used(fake, third))
        assert two != one and fake.token_project(two) == _project(fake, "alice")

        # Keystone revokes it (an operator, or the control plane): the next call is a 401,
        # and the cloud asks for a new token and goes on.
        fake.token_ttl = 3600.0
        with fake._lock:
            del fake.tokens[two]
        fourth = len(fake.requests)
        assert asyncio.run(cloud.refresh_catalog(force=True)) == ""
        used = _tokens_used(fake, fourth)
        assert used[0] == two and used[-1] not in (one, two)
        refused = [r for r in _service_calls(fake, fourth) if r.headers.get("x-auth-token") == two]
        assert refused
    finally:
        fake.token_ttl = 3600.0
        cloud._api_close()


def test_a_revoked_user_gets_no_token_and_his_tokens_die_at_once(
    hub: Hub, fake: FakeOpenStack, tmp_path: Path
) -> None:
    bob = hub.service_token("bob")
    issued = _credentials(hub, bob).json()
    token = issued["token"]
    nova = f"{fake.url}/compute/v2.1/servers/detail"
    assert requests.get(nova, headers={"X-Auth-Token": token}, timeout=30).status_code == 200
    # His server's cloud, connected with a token of its own.
    cloud = _team_cloud(hub, "bob", tmp_path)
    assert asyncio.run(cloud.refresh_catalog(force=True)) == ""

    root = hub.service_token(ADMIN)
    revoked = requests.post(
        f"{hub.url}/services/{SERVICE}/api/revocations",
        headers={"Authorization": f"token {root}"},
        json={"user": "bob"},
        timeout=60,
    )
    assert revoked.status_code == 201, revoked.text
    assert revoked.json()["openstack_tokens_revoked"] >= 1
    try:
        # Keystone refuses the token issued before, at once (not when it expires).
        assert requests.get(nova, headers={"X-Auth-Token": token}, timeout=30).status_code == 401
        assert token in fake.revoked_tokens
        refused = _credentials(hub, bob)
        assert refused.status_code == 403, refused.text
        assert refused.json()["field"] == "user" and "revoked" in refused.json()["message"]
        # His server's token is refused too (401), and the new one it asks for is not given:
        # the cloud says why.
        reason = asyncio.run(cloud.refresh_catalog(force=True))
        assert "was revoked by an admin" in reason, reason
    finally:
        cloud._api_close()
        restored = requests.delete(
            f"{hub.url}/services/{SERVICE}/api/revocations/bob",
            headers={"Authorization": f"token {root}"},
            timeout=60,
        )
        assert restored.status_code == 204
    assert _credentials(hub, bob).status_code == 201


def test_a_project_is_made_only_when_allowed_and_never_taken_over(
    fake: FakeOpenStack, clouds_yaml: Path
) -> None:
    """Without --openstack-create-projects the control plane makes nothing: a user without a
    project its OpenStack user has a role on is told what an admin does (403). With it, a
    project of that name someone else made is not taken over (409)."""
    from jupyter_compute_servers.control_plane.errors import ControlPlaneError
    from jupyter_compute_servers.control_plane.openstack import tokens_from_args

    tokens = tokens_from_args(str(clouds_yaml), "opengpu", project_template="lab-{user}")
    with pytest.raises(ControlPlaneError) as missing:
        tokens.issue("carol")
    assert missing.value.status == 403
    assert "openstack project create lab-carol" in missing.value.message
    assert "openstack role add --user jupyter --project lab-carol member" in missing.value.message
    assert fake.project_named("lab-carol") is None

    project = fake.add_project("lab-carol")  # made by an admin, no role yet
    with pytest.raises(ControlPlaneError) as no_role:
        tokens.issue("carol")
    assert no_role.value.status == 403
    fake.assignments.add((fake.user_id, project["id"], fake.roles["member"]))
    issued = tokens.issue("carol")
    assert fake.token_project(issued["token"]) == project["id"]

    # Allowed to make projects, the control plane still leaves alone one it did not make.
    theirs = fake.add_project("made-dave")
    creating = tokens_from_args(
        str(clouds_yaml), "opengpu", project_template="made-{user}", create_projects=True
    )
    with pytest.raises(ControlPlaneError) as taken:
        creating.issue("dave")
    assert taken.value.status == 409 and "was not made by the control plane" in taken.value.message
    assert not any(u == fake.user_id and p == theirs["id"] for u, p, _ in fake.assignments)
    made = creating.issue("erin")
    assert fake.token_project(made["token"]) == fake.project_named("made-erin")["id"]  # type: ignore[index]


def test_the_control_plane_refuses_a_keystone_that_rescopes_and_a_readable_clouds_yaml(
    fake: FakeOpenStack, tmp_path: Path
) -> None:
    def start(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "jupyter_compute_servers.control_plane",
                "--openstack-clouds-yaml",
                str(path),
                "--url",
                f"http://127.0.0.1:{free_port()}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    readable = fake.clouds_yaml(tmp_path / "clouds.yaml")
    os.chmod(readable, 0o644)
    done = start(readable)
    assert done.returncode == 2
    assert "may be read by others (mode 644); chmod 600 it" in done.stderr

    os.chmod(readable, 0o600)
    fake.allow_rescope_scoped_token = True
    try:
        done = start(readable)
    finally:
        fake.allow_rescope_scoped_token = False
    assert done.returncode == 2
    assert "allow_rescope_scoped_token = false" in done.stderr
    assert fake.password not in done.stderr


def test_the_fake_keeps_each_projects_resources_to_its_tokens(tmp_path: Path) -> None:
    """What the tests above rely on, driven by the real openstacksdk: two projects' tokens
    (Keystone's password login scoped to each) see and act on their own project's volumes,
    servers and floating IPs only; an expired token is refused."""
    import openstack.connection
    from openstack import exceptions as sdk

    fake = FakeOpenStack(tmp_path / "cloud").start()
    try:
        fake.add_network("campus", shared=True)
        other = fake.add_project("other")
        fake.assignments.add((fake.user_id, other["id"], fake.roles["member"]))

        def connect(project_id: str) -> Any:
            return openstack.connection.Connection(
                auth_url=fake.auth_url,
                username=fake.username,
                password=fake.password,
                user_domain_name="Default",
                project_id=project_id,
                region_name=fake.region,
            )

        home, away = connect(fake.project_id), connect(other["id"])
        volume = home.block_storage.create_volume(size=1, name="home-volume")
        assert [v.name for v in home.block_storage.volumes()] == ["home-volume"]
        assert list(away.block_storage.volumes()) == []
        with pytest.raises(sdk.NotFoundException):
            away.block_storage.get_volume(volume.id)
        with pytest.raises(sdk.NotFoundException):
            away.block_storage.delete_volume(volume.id, ignore_missing=False)
        assert volume.id in fake.volumes

        public = next(n for n in fake.networks if n["name"] == "public")
        ip = home.network.create_ip(floating_network_id=public["id"])
        assert [i.id for i in home.network.ips()] == [ip.id]
        assert list(away.network.ips()) == []
        with pytest.raises(sdk.NotFoundException):
            away.network.delete_ip(ip.id, ignore_missing=False)
        assert {n.name for n in away.network.networks()} == {"public", "campus"}
        assert "private" in {n.name for n in home.network.networks()}

        # An expired token: 401 (keystoneauth then logs in again, and the call goes through).
        fake.token_ttl = 0.5
        fresh = connect(other["id"])
        assert list(fresh.compute.servers()) == []
        (token,) = [t for t, v in fake.tokens.items() if v.project_id == other["id"]][-1:]
        time.sleep(0.6)
        answer = requests.get(
            f"{fake.url}/compute/v2.1/servers", headers={"X-Auth-Token": token}, timeout=30
        )
        assert answer.status_code == 401
        for connection in (home, away, fresh):
            connection.close()
    finally:
        fake.close()


def test_the_key_joins_the_admins_user_data() -> None:
    from jupyter_compute_servers.clouds.openstack.userdata import MERGE, with_authorized_key

    mine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMine"
    theirs = "#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdmin]\n"
    combined = with_authorized_key(theirs, f"{mine} comment")
    assert authorized_keys(combined) == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdmin", mine]
    assert f"Merge-Type: {MERGE}" in combined
    assert authorized_keys(with_authorized_key("", mine)) == [mine]


def _confined_probes(fake: FakeOpenStack, project_id: str) -> list[str]:
    """The paths of the credential-making calls made with a token of ``project_id``."""
    made = ("/credentials/OS-EC2", "/application_credentials", "/OS-TRUST/trusts", "/credentials")
    return [
        r.path
        for r in fake.requests
        if r.method == "POST"
        and r.path.endswith(made)
        and fake.token_project(r.headers.get("x-auth-token", "")) == project_id
    ]


def _nothing_made(fake: FakeOpenStack) -> None:
    assert fake.credentials == {} and fake.application_credentials == {} and fake.trusts == {}


def test_alices_token_makes_no_credential_for_bobs_project(hub: Hub, fake: FakeOpenStack) -> None:
    """Keystone's policy as the README asks: alice's token (the one OpenStack user's, scoped to
    her project) is refused an EC2 credential for bob's project, and the other three; and the
    control plane had tried her project's first token that way before serving it."""
    bob = _credentials(hub, hub.service_token("bob"))
    alice = _credentials(hub, hub.service_token("alice"))
    assert bob.status_code == 201 and alice.status_code == 201, alice.text
    alice_project, bob_project = _project(fake, "alice"), _project(fake, "bob")
    token = alice.json()["token"]
    assert fake.token_project(token) == alice_project
    headers = {"X-Auth-Token": token}
    keystone = fake.auth_url

    ec2 = requests.post(
        f"{keystone}/users/{fake.user_id}/credentials/OS-EC2",
        headers=headers,
        json={"tenant_id": bob_project},
        timeout=30,
    )
    assert ec2.status_code == 403, ec2.text
    application = requests.post(
        f"{keystone}/users/{fake.user_id}/application_credentials",
        headers=headers,
        json={"application_credential": {"name": "mine", "unrestricted": True}},
        timeout=30,
    )
    assert application.status_code == 403
    trust = requests.post(
        f"{keystone}/OS-TRUST/trusts",
        headers=headers,
        json={
            "trust": {
                "trustor_user_id": fake.user_id,
                "trustee_user_id": fake.user_id,
                "project_id": bob_project,
                "impersonation": True,
                "roles": [{"name": "member"}],
            }
        },
        timeout=30,
    )
    assert trust.status_code == 403
    generic = requests.post(
        f"{keystone}/credentials",
        headers=headers,
        json={
            "credential": {
                "type": "ec2",
                "user_id": fake.user_id,
                "project_id": bob_project,
                "blob": '{"access": "a", "secret": "s"}',
            }
        },
        timeout=30,
    )
    assert generic.status_code == 403
    _nothing_made(fake)
    # Nor does it list the projects (names of everyone's) with the policy the README suggests.
    for listing in ("auth/projects", f"users/{fake.user_id}/projects"):
        answer = requests.get(f"{keystone}/{listing}", headers=headers, timeout=30)
        assert answer.status_code == 403, listing
    # The control plane tried all four with a token of each project before serving one.
    for project in (alice_project, bob_project):
        assert len(_confined_probes(fake, project)) >= 4


def _keystone(tmp_path: Path) -> tuple[FakeOpenStack, Path]:
    """A fresh fake whose service user is only a member of its own project (it makes no
    projects), and its clouds.yaml (0600)."""
    fake = FakeOpenStack(tmp_path / "cloud").start()
    fake.allow_rescope_scoped_token = False
    fake.assignments.discard((fake.user_id, fake.project_id, fake.roles["admin"]))
    path = fake.clouds_yaml(tmp_path / "clouds.yaml")
    os.chmod(path, 0o600)
    return fake, path


def _line(policy: str) -> str:
    return f'"{policy}": "role:admin"'


def test_a_keystone_that_lets_tokens_make_credentials_never_serves(tmp_path: Path) -> None:
    """Keystone's default policy (a user's token may make its user's credentials): the control
    plane, trying a token of an existing user's project, refuses to start and names the four
    policy lines; what Keystone made for the check is deleted and its token revoked. With the
    policy set, it starts."""
    fake, clouds_yaml = _keystone(tmp_path)
    zed = fake.add_project("compute-zed")
    fake.assignments.add((fake.user_id, zed["id"], fake.roles["member"]))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyter_compute_servers.control_plane",
        "--openstack-clouds-yaml",
        str(clouds_yaml),
        "--url",
        f"http://127.0.0.1:{port}",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        for policy in CREDENTIAL_POLICIES:
            assert _line(policy) in done.stderr
        assert "policy.yaml" in done.stderr and fake.password not in done.stderr
        # Tried with a token of zed's project (as the tokens issued are), left nothing behind.
        assert len(_confined_probes(fake, zed["id"])) == 4
        _nothing_made(fake)
        assert not [t for t in fake.tokens.values() if t.project_id == zed["id"]]

        fake.policy = dict(RESTRICTIVE)
        started = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while started.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            assert started.poll() is None, started.communicate()[1]
        finally:
            started.terminate()
            _out, log = started.communicate(timeout=30)
        _nothing_made(fake)
        # Keystone's default lets the tokens list everyone's project names: said, not refused.
        assert '"identity:get_auth_projects": "role:admin"' in log
    finally:
        fake.close()


@pytest.mark.parametrize("permitted", CREDENTIAL_POLICIES)
def test_each_credential_the_policy_lets_a_token_make_is_named(
    tmp_path: Path, permitted: str
) -> None:
    """One policy left at Keystone's default, the rest restricted; no user's project yet: the
    check at start, with the service user's own project's token (no admin role there), names
    that one line only, and deletes what it made."""
    from jupyter_compute_servers.control_plane.errors import ControlPlaneError
    from jupyter_compute_servers.control_plane.openstack import tokens_from_args

    fake, clouds_yaml = _keystone(tmp_path)
    try:
        fake.policy = {**RESTRICTIVE, permitted: "owner"}
        with pytest.raises(ControlPlaneError) as refused:
            tokens_from_args(str(clouds_yaml), "opengpu")
        assert _line(permitted) in refused.value.message
        others = [p for p in CREDENTIAL_POLICIES if p != permitted]
        assert not any(_line(p) in refused.value.message for p in others)
        assert "by hand" not in refused.value.message
        assert len(_confined_probes(fake, fake.project_id)) == 4
        _nothing_made(fake)
    finally:
        fake.close()


def test_a_projects_first_token_is_tried_before_it_is_served(tmp_path: Path) -> None:
    """A new deployment (no user's project yet) whose service user is an admin of its own
    project (to make the users'): its own token proves nothing against ``role:admin`` lines,
    so the control plane starts, makes nothing with it, and tries each project's first token
    before serving it: refused (and revoked) under the default policy, served once it is set."""
    from jupyter_compute_servers.control_plane.errors import ControlPlaneError
    from jupyter_compute_servers.control_plane.openstack import tokens_from_args

    fake, clouds_yaml = _keystone(tmp_path)
    fake.assignments.add((fake.user_id, fake.project_id, fake.roles["admin"]))
    try:
        tokens = tokens_from_args(str(clouds_yaml), "opengpu", create_projects=True)
        assert _confined_probes(fake, fake.project_id) == []
        with pytest.raises(ControlPlaneError) as refused:
            tokens.issue("dave")
        assert refused.value.status == 502
        for policy in CREDENTIAL_POLICIES:
            assert _line(policy) in refused.value.message
        dave = _project(fake, "dave")
        assert len(_confined_probes(fake, dave)) == 4
        _nothing_made(fake)
        assert not [t for t in fake.tokens.values() if t.project_id == dave]

        fake.policy = dict(RESTRICTIVE)
        issued = tokens.issue("dave")
        assert fake.token_project(issued["token"]) == dave
        assert issued["token"] in fake.tokens
        # Tried once a run: the next token of that project is served without.
        tokens.issue("dave")
        assert len(_confined_probes(fake, dave)) == 8
        _nothing_made(fake)
    finally:
        fake.close()


def test_a_users_project_is_found_with_the_project_listing_denied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keystone's policy hiding everyone's project names from member tokens (the README's
    optional lines): the control plane, a member only (no --openstack-create-projects), still
    finds an admin-made project of the user's, by logging in to it, and issues its token."""
    from jupyter_compute_servers.control_plane.openstack import tokens_from_args

    fake, clouds_yaml = _keystone(tmp_path)
    try:
        fake.policy.update(RESTRICTIVE, **HIDDEN)
        project = fake.add_project("compute-frank")
        fake.assignments.add((fake.user_id, project["id"], fake.roles["member"]))
        tokens = tokens_from_args(str(clouds_yaml), "opengpu")
        issued = tokens.issue("frank")
        assert issued["project_id"] == project["id"] and issued["project_name"] == "compute-frank"
        assert fake.token_project(issued["token"]) == project["id"]
        assert "identity:get_auth_projects" not in caplog.text
        listed = requests.get(
            f"{fake.auth_url}/auth/projects",
            headers={"X-Auth-Token": issued["token"]},
            timeout=30,
        )
        assert listed.status_code == 403
    finally:
        fake.close()
