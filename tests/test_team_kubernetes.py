"""No Kubernetes credential of the cluster in a user's server: the control plane holds the
admin's kubeconfig and issues each Hub user's server a short-lived ServiceAccount token that
acts only in a namespace of the user's own.

A real JupyterHub runs the control plane as its service with the admin kubeconfig
(``--kubeconfig``, a 0600 file of the Hub's account) of the fake cluster
(tests/fake_kubernetes.py, driven by the real kubernetes_asyncio both in the control plane and
in the users' servers, and authorizing each request by its bearer token as RBAC does). Alice's
Hub-spawned server, with no kubeconfig, creates and starts a pod server, and the fake sees her
namespace's token only; Bob's token cannot read or delete her pod, nor grant himself more; a
token at its expiry is renewed, and one the API server no longer accepts (401) is replaced
once; a revoked user gets 403 and the token he holds stops working.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from jupyter_compute_servers.control_plane.errors import ControlPlaneError
from jupyter_compute_servers.control_plane.kubernetes import (
    ACCOUNT,
    HUB_USER_ANNOTATION,
    ROLE_RULES,
    NamespaceRule,
)

from .fake_kubernetes import FakeKubernetes
from .hub import ADMIN, SERVICE, Hub, admin_secret, user_server_pid, wait_state, wire_fake
from .postgres import free_port

ALICE_NS, BOB_NS = "compute-alice", "compute-bob"
ALICE_SA = f"system:serviceaccount:{ALICE_NS}:{ACCOUNT}"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeKubernetes]:
    with wire_fake(
        "compute-servers-k8s-", lambda directory: FakeKubernetes(directory / "cluster").start()
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def kubeconfig(fake: FakeKubernetes) -> Iterator[Path]:
    """The cluster admin's kubeconfig, as an admin keeps it."""
    with admin_secret("admin.kubeconfig", fake.kubeconfig) as path:
        yield path


@pytest.fixture(scope="module")
def hub(postgres_server, fake: FakeKubernetes, kubeconfig: Path) -> Iterator[Hub]:
    hub = Hub(
        postgres_server.create_database(),
        control_plane=("--kubeconfig", str(kubeconfig)),
        # The users' servers know how pods are made; nothing of where the cluster is.
        user_settings={
            "KubernetesCloud.ssh_username": getpass.getuser(),
            "KubernetesCloud.poll_interval": 0.05,
            "KubernetesCloud.check_interval": 0.0,
        },
        enabled_clouds=["kubernetes"],
    )
    try:
        hub.start_server("alice")
        yield hub
    finally:
        hub.close()
        shutil.rmtree(hub.dir, ignore_errors=True)


def _control(hub: Hub, token: str, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/services/{SERVICE}/{path}",
        headers={"Authorization": f"token {token}"},
        json=body,
        timeout=60,
    )


def _kube(
    fake: FakeKubernetes, token: str, method: str, path: str, body: Any = None
) -> requests.Response:
    """A call to the cluster's API with a bearer token, as kubectl makes it."""
    return requests.request(
        method,
        f"{fake.url}{path}",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        timeout=30,
    )


def _credentials(hub: Hub, user: str) -> dict[str, Any]:
    answer = _control(hub, hub.service_token(user), "POST", "api/kubernetes-credentials", {})
    assert answer.status_code == 201, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return dict(answer.json())


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"]}],
            **spec,
        },
    }


def _server(hub: Hub, user: str, name: str) -> int:
    created = hub.call(
        user,
        "POST",
        "/servers",
        body={
            "name": name,
            "cloud": "kubernetes",
            "config": {"image": "python", "cpu": 1, "memory_gb": 1, "disk_gb": 1},
        },
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _act(hub: Hub, user: str, server_id: int, action: str, state: str) -> None:
    body = {"confirm": True} if action == "deprovision" else None
    done = hub.call(user, "POST", f"/servers/{server_id}/actions/{action}", body=body)
    assert done.status_code == 202, done.text
    wait_state(hub, user, server_id, state)


@pytest.mark.timeout(600)
def test_alices_server_runs_a_pod_with_her_namespaces_token_only(
    hub: Hub, fake: FakeKubernetes, kubeconfig: Path
) -> None:
    # Her server's configuration names no kubeconfig, and the cloud is usable all the same.
    user_config = (hub.config.server_config_dir / "jupyter_server_config.py").read_text()
    assert "kubeconfig" not in user_config and str(kubeconfig) not in user_config
    first = len(fake.requests)

    server_id = _server(hub, "alice", "alice-pod")
    _act(hub, "alice", server_id, "start", "running")
    pod = fake.pod()
    assert pod.namespace == ALICE_NS and pod.body["spec"]["automountServiceAccountToken"] is False
    # Her namespace, made by the control plane: whose it is, and no privileged pods in it.
    labels = fake.namespace_objects[ALICE_NS]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert fake.namespace_objects[ALICE_NS]["metadata"]["annotations"] == {
        HUB_USER_ANNOTATION: "alice"
    }
    assert fake.roles[(ALICE_NS, ACCOUNT)]["rules"] == list(ROLE_RULES)
    assert fake.role_bindings[(ALICE_NS, ACCOUNT)]["subjects"] == [
        {"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ALICE_NS}
    ]

    _act(hub, "alice", server_id, "stop", "off")
    assert not fake.pods and (ALICE_NS, pod.name) in fake.claims
    _act(hub, "alice", server_id, "deprovision", "deprovisioned")
    assert not fake.claims
    assert hub.call("alice", "DELETE", f"/servers/{server_id}").status_code == 204

    # Every call of her server carried a token of her namespace's account, authorized there;
    # the admin's token did only the control plane's setting up.
    calls = fake.requests[first:]
    hers = [r for r in calls if r.user == ALICE_SA]
    paths = {r.path.split("/")[5] for r in hers}
    assert {"pods", "persistentvolumeclaims", "secrets"} <= paths
    assert any(r.path.endswith("/portforward") for r in hers)
    assert all(r.refused == 0 and f"/namespaces/{ALICE_NS}/" in r.path for r in hers)
    admin = [r for r in calls if r.user == "admin"]
    assert admin and all(
        r.path == "/api/v1/namespaces"
        or r.path.startswith(f"/api/v1/namespaces/{ALICE_NS}/serviceaccounts")
        or r.path.startswith("/apis/rbac.authorization.k8s.io/")
        for r in admin
    ), [r.path for r in admin]
    assert {r.user for r in calls} <= {"admin", ALICE_SA}

    # Nothing of the admin's token is in her server: not its environment, not its files.
    environ = Path(f"/proc/{user_server_pid('alice')}/environ").read_bytes()
    assert fake.token.encode() not in environ and str(kubeconfig).encode() not in environ
    for root, _dirs, files in os.walk(hub.dir / "home" / "alice"):
        for name in files:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                assert fake.token.encode() not in path.read_bytes(), path


def test_bobs_token_cannot_reach_alices_pod_nor_grant_him_more(
    hub: Hub, fake: FakeKubernetes
) -> None:
    alice, bob = _credentials(hub, "alice"), _credentials(hub, "bob")
    assert (alice["namespace"], bob["namespace"]) == (ALICE_NS, BOB_NS)
    assert alice["server"] == fake.url and alice["expires_at"] > time.time() + 3000
    assert alice["token"] != fake.token and bob["token"] != fake.token
    a, b = alice["token"], bob["token"]
    pods = f"/api/v1/namespaces/{ALICE_NS}/pods"
    made = _kube(fake, a, "POST", pods, _pod("alice-own"))
    assert made.status_code == 201, made.text

    for method, path, body in (
        ("GET", f"{pods}/alice-own", None),
        ("DELETE", f"{pods}/alice-own", None),
        ("GET", pods, None),
        ("POST", pods, _pod("bob-in-alices")),
        ("GET", f"{pods}/alice-own/portforward?ports=2222", None),
        ("POST", f"/api/v1/namespaces/{ALICE_NS}/serviceaccounts/{ACCOUNT}/token", {"spec": {}}),
    ):
        refused = _kube(fake, b, method, path, body)
        assert refused.status_code == 403, (method, path, refused.text)
        status = refused.json()
        assert status["kind"] == "Status" and status["reason"] == "Forbidden"
        assert f'User "system:serviceaccount:{BOB_NS}:{ACCOUNT}"' in status["message"]
    assert fake.pod("alice-own").process is not None

    # Bob in his own namespace: his servers' calls only; no more rights, no secrets read, no
    # other namespaces, no privileged pods.
    mine = f"/api/v1/namespaces/{BOB_NS}"
    assert _kube(fake, b, "GET", f"{mine}/pods").status_code == 200
    binding = {
        "metadata": {"name": "more"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": BOB_NS}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "admin"},
    }
    for method, path, body in (
        ("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{BOB_NS}/rolebindings", binding),
        ("PUT", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{BOB_NS}/roles/{ACCOUNT}", {}),
        ("GET", f"{mine}/secrets", None),
        ("POST", f"{mine}/serviceaccounts/{ACCOUNT}/token", {"spec": {}}),
        ("GET", "/api/v1/namespaces", None),
        ("POST", "/api/v1/namespaces", {"metadata": {"name": "bobs-other"}}),
    ):
        refused = _kube(fake, b, method, path, body)
        assert refused.status_code == 403, (method, path, refused.text)
    privileged = _pod(
        "root-on-the-node", hostPID=True, volumes=[{"name": "h", "hostPath": {"path": "/"}}]
    )
    refused = _kube(fake, b, "POST", f"{mine}/pods", privileged)
    assert refused.status_code == 403 and "violates PodSecurity" in refused.json()["message"]

    # Alice's own token does what her server needs there; a token the fake never issued, none.
    assert _kube(fake, a, "DELETE", f"{pods}/alice-own").status_code == 200
    assert _kube(fake, "not-a-token", "GET", pods).status_code == 401
    # The endpoint itself: only with a Hub token for the service, a body of no fields.
    url = f"{hub.url}/services/{SERVICE}/api/kubernetes-credentials"
    assert requests.post(url, json={}, timeout=30).status_code in (401, 403)
    assert (
        _control(hub, hub.tokens["alice"], "POST", "api/kubernetes-credentials", {}).status_code
        == 403
    )
    extra = _control(
        hub,
        hub.service_token("alice"),
        "POST",
        "api/kubernetes-credentials",
        {"namespace": "kube-system"},
    )
    assert extra.status_code == 400 and extra.json()["field"] == "namespace"
    # And the admin of the team gets a namespace of his own too, not everyone's.
    assert _credentials(hub, ADMIN)["namespace"] == f"compute-{ADMIN}"


@pytest.mark.timeout(600)
def test_a_token_is_renewed_at_its_expiry_and_once_after_a_401(
    hub: Hub, fake: FakeKubernetes
) -> None:
    """Her server's token is refused from now on (401: asked anew once), and the new ones live
    4 s (the API server's cap): her start and stop, spread over longer than that, go through
    with tokens renewed before they expire."""
    # Her server holds a token (the first test's, or its look at the cloud's availability
    # now), which the cluster now forgets.
    assert hub.call("alice", "GET", "/clouds").status_code == 200
    held = {r.token for r in fake.requests if r.user == ALICE_SA}
    assert held
    fake.forget_tokens(ALICE_NS)
    fake.max_token_seconds = 4
    first = len(fake.requests)
    try:
        server_id = _server(hub, "alice", "alice-renewed")
        _act(hub, "alice", server_id, "start", "running")
        time.sleep(5)  # past the life of every token issued so far
        _act(hub, "alice", server_id, "stop", "off")
        _act(hub, "alice", server_id, "deprovision", "deprovisioned")
    finally:
        fake.max_token_seconds = None
    calls = [r for r in fake.requests[first:] if f"/namespaces/{ALICE_NS}/" in r.path]
    calls = [r for r in calls if r.token != fake.token]
    refused = [r for r in calls if r.refused]
    # Refused: only the forgotten token (asked anew at its 401); never a new one, though
    # each lived 4 s only, so none was used expired.
    assert refused and all(r.token in held and r.refused == 401 for r in refused)
    used = {r.token for r in calls if not r.refused}
    assert used and not used & held
    assert len(used) >= 2, "no token was renewed"
    assert all(r.user == ALICE_SA for r in calls if not r.refused)

    # A token refused as the start's watch of the pod begins: renewed once there too.
    def forget_at_the_watch(request: Any) -> None:
        if request.query.get("watch") and f"/namespaces/{ALICE_NS}/" in request.path:
            fake.before_request = None
            fake.forget_tokens(ALICE_NS)

    first = len(fake.requests)
    fake.before_request = forget_at_the_watch
    server_id = _server(hub, "alice", "alice-watched")
    _act(hub, "alice", server_id, "start", "running")
    watches = [r for r in fake.requests[first:] if r.query.get("watch")]
    assert watches[0].refused == 401 and not any(r.refused for r in watches[1:]), watches
    _act(hub, "alice", server_id, "deprovision", "deprovisioned")


def test_a_revoked_user_gets_403_and_his_token_stops_working(
    hub: Hub, fake: FakeKubernetes
) -> None:
    root = hub.service_token(ADMIN)
    bob = hub.service_token("bob")
    token = _credentials(hub, "bob")["token"]
    pods = f"/api/v1/namespaces/{BOB_NS}/pods"
    assert _kube(fake, token, "GET", pods).status_code == 200

    revoked = _control(hub, root, "POST", "api/revocations", {"user": "bob"})
    assert revoked.status_code == 201, revoked.text
    try:
        refused = _control(hub, bob, "POST", "api/kubernetes-credentials", {})
        assert refused.status_code == 403 and refused.json()["field"] == "user", refused.text
        # The token he holds: authenticated still, authorized for nothing.
        assert (BOB_NS, ACCOUNT) not in fake.role_bindings
        cut = _kube(fake, token, "GET", pods)
        assert cut.status_code == 403 and cut.json()["reason"] == "Forbidden"
    finally:
        assert _control(hub, root, "DELETE", "api/revocations/bob").status_code == 204
    # Restored: the next request binds him again.
    again = _credentials(hub, "bob")["token"]
    assert _kube(fake, again, "GET", pods).status_code == 200


def test_in_team_mode_the_kubernetes_cloud_never_reads_a_kubeconfig(
    hub: Hub, fake: FakeKubernetes, tmp_path: Path
) -> None:
    """A kubeconfig (and namespace) configured for users' servers by mistake is not read: the
    cluster, token and namespace are the control plane's."""
    from jupyter_compute_servers.clouds.base import CloudServices
    from jupyter_compute_servers.clouds.kubernetes import KubernetesCloud
    from jupyter_compute_servers.control_plane_client import ControlPlaneClient

    mistaken = tmp_path / "mistaken-kubeconfig"  # not there: reading it would fail the cloud
    cloud = KubernetesCloud(
        data_dir=str(tmp_path / "k8s"), kubeconfig=str(mistaken), namespace="compute"
    )
    url = f"{hub.url}/services/{SERVICE}/"
    cloud.bind(
        CloudServices(
            images=None,  # type: ignore[arg-type]
            hosts=None,  # type: ignore[arg-type]
            store=None,  # type: ignore[arg-type]
            ssh=None,  # type: ignore[arg-type]
            control_plane=ControlPlaneClient(url, hub.service_token("alice")),
        )
    )

    async def scenario() -> tuple[tuple[bool, str], str]:
        try:
            return await cloud.availability(), (await cloud.api()).namespace
        finally:
            await cloud.close()

    first = len(fake.requests)
    available, namespace = asyncio.run(scenario())
    assert available == (True, "") and namespace == ALICE_NS
    listed = [r for r in fake.requests[first:] if r.path.endswith("/pods")]
    assert listed and all(r.user == ALICE_SA and ALICE_NS in r.path for r in listed)


def test_the_control_plane_refuses_a_kubeconfig_others_may_read(
    fake: FakeKubernetes, tmp_path: Path
) -> None:
    path = fake.kubeconfig(tmp_path / "kubeconfig")
    os.chmod(path, 0o644)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.control_plane",
            "--kubeconfig",
            str(path),
            "--url",
            f"http://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "may be read by others (mode 644); chmod 600 it" in done.stderr


def test_the_namespace_rule_gives_each_hub_user_a_label_of_their_own() -> None:
    rule = NamespaceRule()
    assert rule.namespace_for("alice") == "compute-alice"
    changed = rule.namespace_for("Alice@Example.org")
    assert changed.startswith("compute-alice-example-org--") and len(changed) <= 63
    # A name shaped like another's digested one is digested itself: no two users share one.
    assert rule.namespace_for(changed.removeprefix("compute-")) != changed
    assert rule.namespace_for("alice") != rule.namespace_for("Alice")
    long = rule.namespace_for("x" * 100)
    assert len(long) <= 63 and long != rule.namespace_for("x" * 101)
    assert NamespaceRule("jh-{user}-compute").namespace_for("bob") == "jh-bob-compute"
    for template in ("compute", "{user}-{user}", "Compute-{user}", "c_{user}", "{name}-{user}"):
        with pytest.raises(ControlPlaneError) as bad:
            NamespaceRule(template)
        assert bad.value.field == "kube_namespace_template"
    # The cluster's own namespaces are no user's.
    with pytest.raises(ControlPlaneError) as reserved:
        NamespaceRule("{user}").namespace_for("kube-system")
    assert reserved.value.status == 403


def test_the_issuer_says_why_the_cluster_refuses_it_and_keeps_off_others_namespaces(
    fake: FakeKubernetes, tmp_path: Path
) -> None:
    """The control plane's own refusals: a kubeconfig the cluster does not accept (502 with the
    cluster's reason, naming what to check), and a namespace the rule gives a user that exists
    and is not theirs (409: never handed out)."""
    from jupyter_compute_servers.control_plane.kubernetes import KubernetesError, KubernetesIssuer

    def issuer(token: str | None) -> KubernetesIssuer:
        path = fake.kubeconfig(tmp_path / f"kubeconfig-{token}", token=token)
        os.chmod(path, 0o600)
        return KubernetesIssuer(str(path), rule=NamespaceRule("{user}"))

    async def issue(made: KubernetesIssuer, user: str) -> dict[str, Any]:
        await made.connect()
        try:
            return await made.issue(user)
        finally:
            await made.close()

    with pytest.raises(KubernetesError) as refused:
        asyncio.run(issue(issuer("not-the-admins"), "carol"))
    assert refused.value.status == 502
    assert "refused the control plane to create namespace carol (401" in refused.value.message
    assert "carol" not in fake.namespaces

    # "compute" is the fake's namespace of old (a standalone Jupyter's): no user's, even one
    # named so.
    with pytest.raises(KubernetesError) as taken:
        asyncio.run(issue(issuer(None), "compute"))
    assert taken.value.status == 409 and taken.value.field == "namespace"
    assert HUB_USER_ANNOTATION in taken.value.message
    assert ("compute", ACCOUNT) not in fake.role_bindings
    # Bounds of the TokenRequest API and a readable file, checked at start.
    with pytest.raises(ControlPlaneError) as short:
        KubernetesIssuer(str(tmp_path / "kubeconfig-None"), validity=60)
    assert short.value.field == "kube_token_validity"
