"""A fake Kubernetes API server at the wire: HTTP (aiohttp, on its own thread and loop) speaking
the core/v1 paths and JSON that ``kubernetes_asyncio`` uses for pods, PersistentVolumeClaims,
Secrets and Events, watch streams (``?watch=true``: one JSON event per line), and the
``pods/portforward`` websocket upgrade (subprotocol ``v4.channel.k8s.io``). Callers
authenticate with a bearer token from a kubeconfig file the fake writes
(``kubeconfig(path)``), so the real client's configuration loading is used too.

The fake is also the cluster the team's control plane administers (``control_plane/
kubernetes.py``): namespaces, ServiceAccounts, Roles and RoleBindings, and the TokenRequest API
(``POST .../serviceaccounts/<name>/token``), with **authorization by bearer token**: the
admin's token (``token``, the kubeconfig's) may do everything; a token the fake issued
authenticates as ``system:serviceaccount:<ns>:<name>`` only while it is unexpired and its
ServiceAccount (the same uid) exists (else 401 Unauthorized), and is authorized (else 403
Forbidden, in the API server's words) only for what a Role bound to it in the request's
namespace allows: verb, resource (``pods/portforward`` for subresources) and API group, as
RBAC's rules match. ``max_token_seconds`` stands for the API server's
``--service-account-max-token-expiration`` (a shorter expiry than asked for). Pod Security
Admission's ``enforce`` label of a namespace (baseline) refuses privileged and host pods.

Its pods run for real: the fake's "kubelet" runs the container's own ``command`` (the
package's ``sshd.sh``, which starts OpenSSH's sshd) as a local process. What the fake cannot
do, and how it stands in (assumed, not documented behaviour, is marked "Assumed" below):

- no mount namespaces: each volume is a directory (a claim's lives as long as the claim, a
  secret's holds its keys as files); an environment value equal to a volume's mountPath is
  replaced by that directory (so HOME and JCS_SSH_DIR point at them);
- no network namespaces: each pod gets a free loopback port for ``$JCS_SSH_PORT``, and a
  port-forward to the pod's port (the variable's value in the manifest) reaches that one;
- one node (``node_labels``, ``gpus`` free ``nvidia.com/gpu``), a scheduler that places a pod
  when it fits and retries pending pods whenever a pod goes away;
- a registry that has every image except ``unpullable`` ones.

Documented shapes modelled: Status objects for errors (kind Status, code, reason, message:
AlreadyExists 409, NotFound 404, Forbidden 403 for RBAC and for ResourceQuota's "exceeded
quota: NAME, requested: R, used: U, limited: L"), the PodScheduled condition with reason
Unschedulable and the scheduler's "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
message, container states ``waiting`` ErrImagePull then ImagePullBackOff ('Back-off pulling
image "X"') with kubelet events Failed/BackOff, and the watch's synthetic ADDED events when no
resourceVersion is given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

GPU = "nvidia.com/gpu"
#: The variable our pod command listens on (see the module docstring: no network namespaces).
PORT_VARIABLE = "JCS_SSH_PORT"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    #: The bearer token it carried ("" for none).
    token: str = ""
    #: Who it authenticated as ("admin", "system:serviceaccount:NS:NAME", "" when refused
    #: with 401) and the status of an authorization refusal (401, 403; 0 when allowed).
    user: str = ""
    refused: int = 0


@dataclass
class IssuedToken:
    namespace: str
    account: str
    account_uid: str
    expires: float


@dataclass
class FakePod:
    namespace: str
    body: dict[str, Any]
    directory: Path
    #: The pod's port -> the loopback port standing for it.
    ports: dict[int, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    gpus: int = 0

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def status(self) -> dict[str, Any]:
        return self.body.setdefault("status", {})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status_error(code: int, reason: str, message: str, **details: Any) -> web.Response:
    """A ``Status`` object, as the API server answers errors."""
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "details": details,
            "code": code,
        },
        status=code,
    )


class FakeKubernetes:
    def __init__(self, workdir: Path, namespace: str = "compute") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.namespaces = {namespace}
        self.namespace_objects: dict[str, dict[str, Any]] = {}
        self.namespace = namespace
        self.token = uuid.uuid4().hex
        self.service_accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.roles: dict[tuple[str, str], dict[str, Any]] = {}
        self.role_bindings: dict[tuple[str, str], dict[str, Any]] = {}
        self.issued: dict[str, IssuedToken] = {}
        #: The API server's cap on a requested token's life (None: as asked).
        self.max_token_seconds: float | None = None
        #: Called with each request before it is authenticated (tests change the cluster
        #: at a given moment: tokens forgotten as a watch begins).
        self.before_request: Any = None
        self.requests: list[Request] = []
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        #: The node: its labels and free GPUs.
        self.node_labels: dict[str, str] = {"kubernetes.io/hostname": "node-1"}
        self.gpus = 0
        self.unpullable: set[str] = set()
        #: The StorageClass allows volume expansion.
        self.expandable = True
        #: A ResourceQuota: {"name": ..., "hard": {"limits.nvidia.com/gpu": 2}}.
        self.quota: dict[str, Any] | None = None
        #: (verb, resource) pairs RBAC refuses: ("create", "pods").
        self.forbidden: set[tuple[str, str]] = set()
        #: Seconds a scheduled pod takes before its process runs (pulling the image).
        self.pull_delay = 0.0
        #: PATH of the pods' containers: Docker's default, with the test's Python first (the
        #: image's Python with ipykernel).
        self.container_path = (
            f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
            "/sbin:/bin"
        )
        self._rv = 0
        self._watchers: list[tuple[str, str, asyncio.Queue[dict[str, Any] | None]]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- running it ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeKubernetes:
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-kubernetes")
        self._thread.start()
        ready.wait(10)
        return self

    def close(self) -> None:
        for pod in list(self.pods.values()):
            self._halt(pod)
        if self._runner is not None:

            async def shut() -> None:
                for _, _, queue in self._watchers:
                    queue.put_nowait(None)
                for ws in list(self._sockets):
                    await ws.close()
                assert self._runner is not None
                await self._runner.cleanup()
                current = asyncio.current_task()
                others = [t for t in asyncio.all_tasks() if t is not current]
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def run(self, function: Any, *args: Any) -> Any:
        """Call ``function`` on the fake's loop (tests changing the cluster's state)."""

        async def call() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig file for the fake (JSON is YAML), its context's namespace the fake's."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "jupyter", "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "jupyter", "namespace": self.namespace},
                }
            ],
            "current-context": "fake",
        }
        path.write_text(json.dumps(config))
        return path

    def calls(self, method: str, suffix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def pod(self, name: str | None = None) -> FakePod:
        pods = [p for p in self.pods.values() if name is None or p.name == name]
        assert len(pods) == 1, [p.name for p in self.pods.values()]
        return pods[0]

    def evict(self, name: str) -> None:
        """The kubelet evicts the pod (node pressure): Failed, reason Evicted, process ended."""

        def evict() -> None:
            pod = self.pod(name)
            self._halt(pod)
            self._free(pod)
            pod.status.update(
                phase="Failed",
                reason="Evicted",
                message="The node was low on resource: memory.",
            )
            self._changed("MODIFIED", pod)
            self._schedule_pending()

        self.run(evict)

    # --- HTTP ------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return status_error(400, "BadRequest", "the body is not JSON")
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        record = Request(request.method, request.path, dict(request.query), body, token)
        self.requests.append(record)
        if self.before_request is not None:
            self.before_request(record)
        user = self._authenticate(token)
        if user is None:
            record.refused = 401
            return status_error(401, "Unauthorized", "Unauthorized")
        record.user = user
        verb = {
            "GET": "watch" if request.query.get("watch") in ("true", "True", "1") else "get",
            "POST": "create",
            "DELETE": "delete",
            "PATCH": "patch",
            "PUT": "update",
        }.get(request.method, "")
        rbac = re.fullmatch(
            r"/apis/rbac\.authorization\.k8s\.io/v1/namespaces/([^/]+)/(roles|rolebindings)"
            r"(?:/([^/]+))?",
            request.path,
        )
        cluster = re.fullmatch(r"/api/v1/namespaces(?:/([^/]+))?", request.path)
        match = re.fullmatch(
            r"/api/v1/namespaces/([^/]+)/(pods|persistentvolumeclaims|secrets|events|"
            r"serviceaccounts)(?:/([^/]+))?(?:/(portforward|token))?",
            request.path,
        )
        if cluster:
            name = cluster.group(1)
            verb = "list" if verb == "get" and not name else verb
            if user != "admin":
                return self._forbidden(user, verb, "namespaces", None, "", name)
            return await self._namespaces_call(verb, name, body)
        if rbac:
            namespace, resource, name = rbac.groups()
            verb = "list" if verb == "get" and not name else verb
            refusal = self._authorize(
                user, verb, resource, namespace, "rbac.authorization.k8s.io", name
            )
            if refusal is not None:
                record.refused = 403
                return refusal
            if namespace not in self.namespaces:
                return _no_namespace(namespace)
            return self._rbac(resource, verb, namespace, name, body)
        if not match:
            return status_error(404, "NotFound", "the server could not find the requested resource")
        namespace, resource, name, sub = match.groups()
        if verb == "get" and not name:
            verb = "list"
        # The websocket upgrade (a GET) is authorized as create, as newer API servers do.
        rbac_verb = "create" if sub == "portforward" else verb
        refusal = self._authorize(
            user, rbac_verb, f"{resource}/{sub}" if sub else resource, namespace, "", name
        )
        if refusal is not None:
            record.refused = 403
            return refusal
        if (verb, resource) in self.forbidden or (
            sub and ("create", f"pods/{sub}") in self.forbidden
        ):
            return status_error(
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:{namespace}:jupyter" '
                f'cannot {verb} resource "{resource}" in API group "" in the namespace '
                f'"{namespace}"',
                kind=resource,
            )
        if namespace not in self.namespaces:
            return _no_namespace(namespace)
        if resource == "serviceaccounts":
            return self._serviceaccounts(verb, namespace, name, sub, body)
        if sub == "portforward":
            return await self._portforward(request, namespace, name)
        handler = getattr(self, f"_{resource}")
        return await handler(request, verb, namespace, name, body)  # type: ignore[no-any-return]

    # --- authentication and RBAC ----------------------------------------------------------------

    def _authenticate(self, token: str) -> str | None:
        """Who ``token`` is: "admin", a ServiceAccount's user name, or None (401)."""
        if token == self.token:
            return "admin"
        issued = self.issued.get(token)
        if issued is None or time.time() >= issued.expires:
            return None
        account = self.service_accounts.get((issued.namespace, issued.account))
        if account is None or account["metadata"]["uid"] != issued.account_uid:
            return None  # a bound token dies with its ServiceAccount
        return f"system:serviceaccount:{issued.namespace}:{issued.account}"

    def allows(self, user: str, verb: str, resource: str, namespace: str, group: str = "") -> bool:
        """RBAC: a Role bound to ``user`` in ``namespace`` has a rule for it."""
        if user == "admin":
            return True
        _, _, account_ns, account = user.split(":")
        for binding in self.role_bindings.values():
            if binding["metadata"]["namespace"] != namespace:
                continue
            subjects = binding.get("subjects") or []
            if not any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == account
                and s.get("namespace") == account_ns
                for s in subjects
            ):
                continue
            ref = binding.get("roleRef") or {}
            role = (
                self.roles.get((namespace, ref.get("name", "")))
                if ref.get("kind") == "Role"
                else None
            )
            for rule in (role or {}).get("rules") or []:
                if (
                    any(g in ("*", group) for g in rule.get("apiGroups") or [])
                    and any(r in ("*", resource) for r in rule.get("resources") or [])
                    and any(v in ("*", verb) for v in rule.get("verbs") or [])
                ):
                    return True
        return False

    def _authorize(
        self, user: str, verb: str, resource: str, namespace: str, group: str, name: str | None
    ) -> web.Response | None:
        if self.allows(user, verb, resource, namespace, group):
            return None
        return self._forbidden(user, verb, resource, namespace, group, name)

    @staticmethod
    def _forbidden(
        user: str, verb: str, resource: str, namespace: str | None, group: str, name: str | None
    ) -> web.Response:
        """The API server's words for an RBAC refusal."""
        base = resource.split("/")[0]
        what = f'{base} "{name}"' if name else base
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        return status_error(
            403,
            "Forbidden",
            f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API '
            f'group "{group}"{where}',
            name=name or "",
            kind=base,
        )

    def issue_token(self, namespace: str, account: str, seconds: float) -> tuple[str, float]:
        """A bound token of the ServiceAccount (the TokenRequest API's), and its expiry."""
        if self.max_token_seconds is not None:
            seconds = min(seconds, self.max_token_seconds)
        token = "fake-sa-" + uuid.uuid4().hex
        # Whole seconds, as expirationTimestamp says.
        expires = float(int(time.time() + seconds))
        uid = self.service_accounts[(namespace, account)]["metadata"]["uid"]
        self.issued[token] = IssuedToken(namespace, account, uid, expires)
        return token, expires

    def forget_tokens(self, namespace: str) -> None:
        """The API server no longer accepts the tokens of ``namespace``'s accounts (as after
        its signing key rotated): they answer 401 from now on."""
        for token, issued in list(self.issued.items()):
            if issued.namespace == namespace:
                del self.issued[token]

    # --- namespaces, ServiceAccounts, Roles, RoleBindings ---------------------------------------

    async def _namespaces_call(self, verb: str, name: str | None, body: Any) -> web.Response:
        if verb == "create":
            name = str(body["metadata"]["name"])
            if name in self.namespaces:
                return status_error(
                    409,
                    "AlreadyExists",
                    f'namespaces "{name}" already exists',
                    name=name,
                    kind="namespaces",
                )
            self._metadata(body, "")
            body["metadata"].pop("namespace", None)
            body["status"] = {"phase": "Active"}
            self.namespaces.add(name)
            self.namespace_objects[name] = body
            return web.json_response(body, status=201)
        if verb == "list":
            return web.json_response(
                {
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": [self._namespace_object(n) for n in sorted(self.namespaces)],
                }
            )
        if name not in self.namespaces:
            return _no_namespace(str(name))
        if verb == "get":
            return web.json_response(self._namespace_object(str(name)))
        return status_error(405, "MethodNotAllowed", f"{verb} namespaces is not faked")

    def _namespace_object(self, name: str) -> dict[str, Any]:
        return self.namespace_objects.get(name) or {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": name, "uid": name},
            "status": {"phase": "Active"},
        }

    def _serviceaccounts(
        self, verb: str, namespace: str, name: str | None, sub: str | None, body: Any
    ) -> web.Response:
        key = (namespace, str(name))
        if sub == "token":
            if key not in self.service_accounts:
                return status_error(
                    404,
                    "NotFound",
                    f'serviceaccounts "{name}" not found',
                    name=name,
                    kind="serviceaccounts",
                )
            seconds = int(((body or {}).get("spec") or {}).get("expirationSeconds") or 3600)
            if seconds < 600:
                return status_error(
                    422,
                    "Invalid",
                    f'TokenRequest.authentication.k8s.io "{name}" is invalid: '
                    f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a "
                    f"duration less than 10 minutes",
                )
            token, expires = self.issue_token(namespace, str(name), seconds)
            answer = dict(body or {})
            answer["status"] = {
                "token": token,
                "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            }
            return web.json_response(answer, status=201)
        return self._store(self.service_accounts, "serviceaccounts", verb, namespace, name, body)

    def _rbac(
        self, resource: str, verb: str, namespace: str, name: str | None, body: Any
    ) -> web.Response:
        objects = self.roles if resource == "roles" else self.role_bindings
        return self._store(objects, resource, verb, namespace, name, body)

    def _store(
        self,
        objects: dict[tuple[str, str], dict[str, Any]],
        kind: str,
        verb: str,
        namespace: str,
        name: str | None,
        body: Any,
    ) -> web.Response:
        """Create, get, list, replace (PUT) and delete of plain namespaced objects."""
        if verb == "create":
            name = str(body["metadata"]["name"])
            if (namespace, name) in objects:
                return status_error(
                    409, "AlreadyExists", f'{kind} "{name}" already exists', name=name, kind=kind
                )
            self._metadata(body, namespace)
            objects[(namespace, name)] = body
            return web.json_response(body, status=201)
        if verb == "list":
            items = [o for (ns, _), o in objects.items() if ns == namespace]
            return web.json_response(
                {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
            )
        found = objects.get((namespace, str(name)))
        if found is None:
            return status_error(404, "NotFound", f'{kind} "{name}" not found', name=name, kind=kind)
        if verb == "update":
            metadata = found["metadata"]
            body.setdefault("metadata", {}).update(
                namespace=namespace,
                uid=metadata["uid"],
                creationTimestamp=metadata["creationTimestamp"],
                resourceVersion=self._next_rv(),
            )
            objects[(namespace, str(name))] = body
            return web.json_response(body)
        if verb == "delete":
            del objects[(namespace, str(name))]
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return web.json_response(found)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _metadata(self, body: dict[str, Any], namespace: str) -> dict[str, Any]:
        metadata = body.setdefault("metadata", {})
        metadata.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=self._next_rv(),
        )
        return metadata

    # --- claims and secrets ----------------------------------------------------------------------

    async def _persistentvolumeclaims(
        self, request: web.Request, verb: str, namespace: str, name: str | None, body: Any
    ) -> web.StreamResponse:
        if verb == "create":
            name = body["metadata"]["name"]
            if (namespace, name) in self.claims:
                return status_error(
                    409,
                    "AlreadyExists",
                    f'persistentvolumeclaims "{name}" already exists',
                    name=name,
                    kind="persistentvolumeclaims",
                )
            self._metadata(body, namespace)
            # Assumed: a StorageClass that binds at once (volumeBindingMode Immediate).
            body["status"] = {
                "phase": "Bound",
                "capacity": body["spec"]["resources"]["requests"],
                "accessModes": body["spec"]["accessModes"],
            }
            (self.workdir / "claims" / name).mkdir(parents=True, exist_ok=True)
            self.claims[(namespace, name)] = body
            return web.json_response(body, status=201)
        claim = self.claims.get((namespace, str(name)))
        if claim is None:
            return status_error(
                404,
                "NotFound",
                f'persistentvolumeclaims "{name}" not found',
                name=name,
                kind="persistentvolumeclaims",
            )
        if verb == "patch":
            size = (((body or {}).get("spec") or {}).get("resources") or {}).get("requests", {})
            if "storage" in size:
                if not self.expandable:
                    return status_error(
                        403,
                        "Forbidden",
                        f'persistentvolumeclaims "{name}" is forbidden: only dynamically '
                        f"provisioned pvc can be resized and the storageclass that provisions "
                        f"the pvc must support resize",
                        name=name,
                        kind="persistentvolumeclaims",
                    )
                claim["spec"]["resources"]["requests"]["storage"] = size["storage"]
                # Assumed: the driver expands at once (real ones pass through Resizing).
                claim["status"]["capacity"] = {"storage": size["storage"]}
            return web.json_response(claim)
        if verb == "delete":
            # The pvc-protection finalizer: a claim a pod uses is deleted when the pod is.
            claim["metadata"]["deletionTimestamp"] = _now()
            self._collect_claims()
            return web.json_response(claim)
        return web.json_response(claim)

    def _collect_claims(self) -> None:
        used = {
            (pod.namespace, v["persistentVolumeClaim"]["claimName"])
            for pod in self.pods.values()
            for v in pod.body["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        for key, claim in list(self.claims.items()):
            if claim["metadata"].get("deletionTimestamp") and key not in used:
                del self.claims[key]
                import shutil

                shutil.rmtree(self.claim_dir(key[1]), ignore_errors=True)

    def claim_dir(self, name: str) -> Path:
        return self.workdir / "claims" / name

    async def _secrets(
        self, request: web.Request, verb: str, namespace: str, name: str | None, body: Any
    ) -> web.StreamResponse:
        if verb == "create":
            name = body["metadata"]["name"]
            if (namespace, name) in self.secrets:
                return status_error(
                    409,
                    "AlreadyExists",
                    f'secrets "{name}" already exists',
                    name=name,
                    kind="secrets",
                )
            self._metadata(body, namespace)
            data = dict(body.get("data") or {})
            for key, value in (body.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(value.encode()).decode()
            body["data"] = data
            self.secrets[(namespace, name)] = body
            return web.json_response(body, status=201)
        secret = self.secrets.get((namespace, str(name)))
        if secret is None:
            return status_error(
                404, "NotFound", f'secrets "{name}" not found', name=name, kind="secrets"
            )
        if verb == "delete":
            del self.secrets[(namespace, str(name))]
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return web.json_response(secret)

    # --- events ----------------------------------------------------------------------------------

    def _event(self, pod: FakePod, kind: str, reason: str, message: str, source: str) -> None:
        self.events.append(
            {
                "metadata": {
                    "name": f"{pod.name}.{uuid.uuid4().hex[:16]}",
                    "namespace": pod.namespace,
                    "resourceVersion": self._next_rv(),
                },
                "involvedObject": {
                    "kind": "Pod",
                    "name": pod.name,
                    "namespace": pod.namespace,
                    "uid": pod.body["metadata"]["uid"],
                },
                "reason": reason,
                "message": message,
                "type": kind,
                "source": {"component": source},
                "firstTimestamp": _now(),
                "lastTimestamp": _now(),
                "count": 1,
            }
        )

    async def _events(
        self, request: web.Request, verb: str, namespace: str, name: str | None, body: Any
    ) -> web.StreamResponse:
        selector = _field_selector(request.query.get("fieldSelector", ""))
        items = [
            e
            for e in self.events
            if e["metadata"]["namespace"] == namespace
            and all(_field(e, k) == v for k, v in selector.items())
        ]
        return web.json_response(
            {
                "kind": "EventList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }
        )

    # --- pods ------------------------------------------------------------------------------------

    async def _pods(
        self, request: web.Request, verb: str, namespace: str, name: str | None, body: Any
    ) -> web.StreamResponse:
        if verb == "create":
            return self._create_pod(namespace, body)
        if verb == "list":
            return web.json_response(
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": self._selected(namespace, request.query.get("fieldSelector", "")),
                }
            )
        if verb == "watch":
            return await self._watch(request, namespace)
        pod = self.pods.get((namespace, str(name)))
        if pod is None:
            return status_error(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        if verb == "delete":
            pod.body["metadata"]["deletionTimestamp"] = _now()
            self._changed("MODIFIED", pod)
            asyncio.get_running_loop().create_task(self._terminate(pod))
            return web.json_response(pod.body)
        return web.json_response(pod.body)

    def _selected(self, namespace: str, selector_text: str) -> list[dict[str, Any]]:
        selector = _field_selector(selector_text)
        return [
            p.body
            for (ns, _), p in self.pods.items()
            if ns == namespace and all(_field(p.body, k) == v for k, v in selector.items())
        ]

    def _create_pod(self, namespace: str, body: dict[str, Any]) -> web.StreamResponse:
        name = body["metadata"]["name"]
        if (namespace, name) in self.pods:
            return status_error(
                409, "AlreadyExists", f'pods "{name}" already exists', name=name, kind="pods"
            )
        level = (
            ((self.namespace_objects.get(namespace) or {}).get("metadata") or {})
            .get("labels", {})
            .get("pod-security.kubernetes.io/enforce")
        )
        violations = (
            _pod_security_violations(body["spec"]) if level in ("baseline", "restricted") else []
        )
        if violations:
            return status_error(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": '
                + ", ".join(violations),
                name=name,
                kind="pods",
            )
        container = body["spec"]["containers"][0]
        gpus = int(container.get("resources", {}).get("limits", {}).get(GPU, 0))
        if self.quota is not None:
            key = f"limits.{GPU}"
            hard = self.quota["hard"].get(key)
            used = sum(p.gpus for p in self.pods.values() if p.namespace == namespace)
            if hard is not None and used + gpus > hard:
                return status_error(
                    403,
                    "Forbidden",
                    f'pods "{name}" is forbidden: exceeded quota: {self.quota["name"]}, '
                    f"requested: {key}={gpus}, used: {key}={used}, limited: {key}={hard}",
                    name=name,
                    kind="pods",
                )
        self._metadata(body, namespace)
        body["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
        directory = self.workdir / "pods" / name
        directory.mkdir(parents=True, exist_ok=True)
        pod = FakePod(namespace, body, directory, gpus=gpus)
        self.pods[(namespace, name)] = pod
        self._changed("ADDED", pod)
        self._try_schedule(pod)
        return web.json_response(body, status=201)

    def _try_schedule(self, pod: FakePod) -> None:
        """The scheduler: the one node takes the pod if it has the GPUs and the labels."""
        if pod.body["spec"].get("nodeName"):
            return
        selector = pod.body["spec"].get("nodeSelector") or {}
        problems = []
        if any(self.node_labels.get(k) != v for k, v in selector.items()):
            problems.append("1 node(s) didn't match Pod's node affinity/selector")
        elif pod.gpus > self.gpus:
            problems.append(f"1 Insufficient {GPU}")
        if problems:
            message = (
                f"0/1 nodes are available: {', '.join(problems)}. preemption: 0/1 nodes are "
                f"available: 1 No preemption victims found for incoming pod."
            )
            pod.status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": _now(),
                }
            ]
            self._event(pod, "Warning", "FailedScheduling", message, "default-scheduler")
            self._changed("MODIFIED", pod)
            return
        self.gpus -= pod.gpus
        pod.body["spec"]["nodeName"] = "node-1"
        pod.status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}
        ]
        container = pod.body["spec"]["containers"][0]
        pod.status["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
        ]
        self._event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {pod.namespace}/{pod.name} to node-1",
            "default-scheduler",
        )
        self._changed("MODIFIED", pod)
        asyncio.get_running_loop().create_task(self._kubelet(pod))

    def _schedule_pending(self) -> None:
        for pod in list(self.pods.values()):
            if not pod.body["spec"].get("nodeName") and not pod.body["metadata"].get(
                "deletionTimestamp"
            ):
                self._try_schedule(pod)

    async def _kubelet(self, pod: FakePod) -> None:
        """Pull the image, mount the volumes, run the container's command."""
        container = pod.body["spec"]["containers"][0]
        image = container["image"]
        await asyncio.sleep(self.pull_delay)
        if self._gone(pod):
            return
        state = pod.status["containerStatuses"][0]
        if image in self.unpullable:
            detail = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
                f'failed to resolve reference "{image}": {image}: not found'
            )
            self._event(
                pod, "Warning", "Failed", f'Failed to pull image "{image}": {detail}', "kubelet"
            )
            state["state"] = {"waiting": {"reason": "ErrImagePull", "message": detail}}
            self._changed("MODIFIED", pod)
            await asyncio.sleep(0.2)
            if self._gone(pod):
                return
            message = f'Back-off pulling image "{image}"'
            self._event(pod, "Normal", "BackOff", message, "kubelet")
            state["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
            self._changed("MODIFIED", pod)
            return
        env = {"PATH": self.container_path, "TMPDIR": str(pod.directory)}
        mounts = self._mount(pod, container)
        if isinstance(mounts, str):
            state["state"] = {
                "waiting": {"reason": "CreateContainerConfigError", "message": mounts}
            }
            self._changed("MODIFIED", pod)
            return
        for variable in container.get("env", []):
            value = str(variable.get("value", ""))
            env[variable["name"]] = mounts.get(value, value)
        if PORT_VARIABLE in env:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                pod.ports[int(env[PORT_VARIABLE])] = s.getsockname()[1]
            env[PORT_VARIABLE] = str(pod.ports[int(env[PORT_VARIABLE])])
        log = open(pod.directory / "container.log", "ab")  # noqa: SIM115 - the process keeps it
        pod.process = subprocess.Popen(  # noqa: ASYNC220 - the fake kubelet starts it at once
            container["command"],
            env=env,
            cwd=mounts.get(container.get("workingDir", ""), str(pod.directory)),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        state.update(ready=True, started=True, state={"running": {"startedAt": _now()}})
        pod.status.update(phase="Running", podIP="10.0.0.2", startTime=_now())
        pod.status["conditions"].append({"type": "Ready", "status": "True"})
        self._changed("MODIFIED", pod)
        asyncio.get_running_loop().create_task(self._reap(pod, pod.process))

    def _mount(self, pod: FakePod, container: dict[str, Any]) -> dict[str, str] | str:
        """mountPath -> the directory standing for the volume; or why it cannot be mounted."""
        volumes = {v["name"]: v for v in pod.body["spec"].get("volumes", [])}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if (pod.namespace, claim) not in self.claims:
                    return f'persistentvolumeclaim "{claim}" not found'
                mounts[mount["mountPath"]] = str(self.claim_dir(claim))
            elif "secret" in volume:
                secret = self.secrets.get((pod.namespace, volume["secret"]["secretName"]))
                if secret is None:
                    return f'secret "{volume["secret"]["secretName"]}" not found'
                directory = pod.directory / f"volume-{mount['name']}"
                directory.mkdir(exist_ok=True)
                for key, value in secret["data"].items():
                    path = directory / key
                    path.write_bytes(base64.b64decode(value))
                    path.chmod(volume["secret"].get("defaultMode", 0o644))
                mounts[mount["mountPath"]] = str(directory)
        return mounts

    async def _reap(self, pod: FakePod, process: subprocess.Popen[bytes]) -> None:
        """The container's process ended by itself: the pod fails (restartPolicy Never)."""
        await asyncio.get_running_loop().run_in_executor(None, process.wait)
        if pod.process is not process or self._gone(pod):
            return
        pod.process = None
        log = (pod.directory / "container.log").read_text(errors="replace")[-1000:]
        state = pod.status["containerStatuses"][0]
        state.update(
            ready=False,
            started=False,
            state={
                "terminated": {
                    "exitCode": process.returncode,
                    "reason": "Error" if process.returncode else "Completed",
                    # terminationMessagePolicy FallbackToLogsOnError: the log's tail.
                    "message": log,
                }
            },
        )
        pod.status["phase"] = "Failed" if process.returncode else "Succeeded"
        self._free(pod)
        self._changed("MODIFIED", pod)
        self._schedule_pending()

    def _gone(self, pod: FakePod) -> bool:
        return self.pods.get((pod.namespace, pod.name)) is not pod or bool(
            pod.body["metadata"].get("deletionTimestamp")
        )

    def _free(self, pod: FakePod) -> None:
        if pod.body["spec"].get("nodeName") and pod.gpus:
            self.gpus += pod.gpus
            pod.gpus = 0

    async def _terminate(self, pod: FakePod) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._halt, pod)
        self._free(pod)
        self.pods.pop((pod.namespace, pod.name), None)
        self._changed("DELETED", pod)
        self._collect_claims()
        self._schedule_pending()

    def _halt(self, pod: FakePod) -> None:
        process = pod.process
        pod.process = None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    # --- watch -----------------------------------------------------------------------------------

    def _changed(self, kind: str, pod: FakePod) -> None:
        pod.body["metadata"]["resourceVersion"] = self._next_rv()
        event = {"type": kind, "object": json.loads(json.dumps(pod.body))}
        for namespace, selector, queue in list(self._watchers):
            selected = _field_selector(selector)
            if namespace == pod.namespace and all(
                _field(pod.body, k) == v for k, v in selected.items()
            ):
                queue.put_nowait(event)

    async def _watch(self, request: web.Request, namespace: str) -> web.StreamResponse:
        selector = request.query.get("fieldSelector", "")
        timeout = float(request.query.get("timeoutSeconds", "1800"))
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        if not request.query.get("resourceVersion"):
            # No resourceVersion: synthetic ADDED events for what exists now.
            for body in self._selected(namespace, selector):
                queue.put_nowait({"type": "ADDED", "object": json.loads(json.dumps(body))})
        watcher = (namespace, selector, queue)
        self._watchers.append(watcher)
        deadline = time.monotonic() + timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if event is None:
                    break
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.remove(watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    # --- port-forward ----------------------------------------------------------------------------

    async def _portforward(
        self, request: web.Request, namespace: str, name: str
    ) -> web.StreamResponse:
        pod = self.pods.get((namespace, name))
        if pod is None:
            return status_error(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        if pod.status.get("phase") != "Running":
            return status_error(
                400,
                "BadRequest",
                f"unable to upgrade connection: pod {name} is not running",
            )
        port = int(request.query.get("ports", "0"))
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",))
        await ws.prepare(request)
        self._sockets.add(ws)
        prefix = port.to_bytes(2, "little")
        await ws.send_bytes(b"\x00" + prefix)
        await ws.send_bytes(b"\x01" + prefix)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", pod.ports.get(port, 9))
        except OSError:
            # The kubelet's words for a port nobody listens on (the pod's sshd not up yet).
            await ws.send_bytes(
                b"\x01"
                + (
                    f"error forwarding port {port} to pod {pod.body['metadata']['uid']}, uid : "
                    f"failed to execute portforward in network namespace: failed to connect to "
                    f"localhost:{port} inside namespace, IPv4: dial tcp4 127.0.0.1:{port}: "
                    f"connect: connection refused"
                ).encode()
            )
            await ws.close()
            return ws

        async def to_pod() -> None:
            async for message in ws:
                if message.type == WSMsgType.BINARY and message.data[:1] == b"\x00":
                    writer.write(message.data[1:])
                    await writer.drain()
                elif message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break

        async def from_pod() -> None:
            while True:
                data = await reader.read(32 * 1024)
                if not data:
                    break
                await ws.send_bytes(b"\x00" + data)

        tasks = [asyncio.ensure_future(to_pod()), asyncio.ensure_future(from_pod())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            await ws.close()
            self._sockets.discard(ws)
        return ws


def _no_namespace(namespace: str) -> web.Response:
    return status_error(
        404, "NotFound", f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
    )


def _pod_security_violations(spec: dict[str, Any]) -> list[str]:
    """What Pod Security Admission's baseline level refuses in a pod (the checks that keep a
    pod off its node: host namespaces, host paths, privileged containers)."""
    found = []
    host = [k for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if host:
        found.append(f"host namespaces ({', '.join(f'{k}=true' for k in host)})")
    paths = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if paths:
        found.append(f"hostPath volumes ({', '.join(repr(p) for p in paths)})")
    for container in spec.get("containers") or []:
        if (container.get("securityContext") or {}).get("privileged"):
            found.append(
                f'privileged (container "{container["name"]}" must not set '
                f"securityContext.privileged=true)"
            )
    return found


def _field_selector(text: str) -> dict[str, str]:
    """``metadata.name=x,involvedObject.kind=Pod`` (only = is used by the cloud)."""
    pairs = [part.split("=", 1) for part in text.split(",") if "=" in part]
    return {key: value for key, value in pairs}


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)
