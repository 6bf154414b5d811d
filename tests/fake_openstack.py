"""A fake OpenStack at the wire: one HTTP server speaking what openstacksdk and keystoneauth ask
of Keystone v3 (password and token auth, project-scoped tokens with a service catalogue, an
expiry and revocation; projects, roles and role assignments), Nova (version discovery, flavors
with extra specs, key pairs, servers and their actions, the console log), Glance v2 (images),
Neutron v2.0 (networks, ports, floating IPs) and Cinder v3 (volumes).

Every service call is authorized by its token (``X-Auth-Token``): an unknown, expired or revoked
token is 401, and what a call sees and acts on is its token's project's: servers, ports, floating
IPs and volumes belong to the project they were made in, and another project's answer 404 (as
Nova, Neutron and Cinder answer a non-admin); a Cinder URL naming another project than the
token's is 403. Networks are the project's own, shared ones and external ones; images and
flavors are public. Key pairs are the Keystone user's, whatever the project (Nova's: a key pair
belongs to a user, not a project). Keystone's admin calls (projects, roles, role assignments)
need a token with the ``admin`` role. A scoped token may be rescoped with the token method only
while ``allow_rescope_scoped_token`` is on (Keystone's ``[token] allow_rescope_scoped_token``,
true by default there); a rescoped token keeps its original expiry, as Keystone's does. A
user's own credentials (EC2 credentials for any project the user has a role on, application
credentials, trusts, generic credentials) may be made by their own token, any project's, as
Keystone's default policy allows, or only by a token with the admin role when ``policy`` says
``role:admin`` for that action (``RESTRICTIVE``: what the control plane asks of an admin). Its
user's projects are listed to any of its tokens (``GET /v3/auth/projects``,
``/v3/users/{id}/projects``) unless ``policy`` hides them (``HIDDEN``).

Its VMs are real SSH machines on this one: an ACTIVE server gets an OpenSSH sshd (the gcp fake's
guest machinery, ``fake_gce._start_sshd``) on its own fixed address (127.0.2.N) and the fake's
SSH port, authorizing the public key of the server's Nova key pair, with a host key kept on its
"disk" (a directory living as long as the server). Like cloud-init's ``keys_to_console`` module,
the guest then prints its host keys to the console log between ``-----BEGIN SSH HOST KEY
KEYS-----`` and ``-----END SSH HOST KEY KEYS-----``. A floating IP (127.0.3.N) is a small TCP
forwarder to the fixed address, as Neutron's NAT would be.

The answers follow the API references (docs.openstack.org/api-ref/compute, /identity/v3,
/image/v2, /network/v2). Where behaviour was assumed rather than documented it says so (ASSUMED).
Nova's scheduling is modelled for GPUs only: a flavor asking ``pci_passthrough:alias`` or
``resources:VGPU`` devices is placed while ``gpu_capacity`` has that many free (a server holds
its devices until it is deleted, shut off or not: Nova keeps a stopped instance's claims); else
the server goes to ERROR with the fault "No valid host was found", as the scheduler answers.
Quotas (instances, cores, ram) are checked at create (and resize) and answered 403 (or
``quota_status``: old Novas said 413 overLimit).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from .fake_gce import _start_sshd
from .fake_http import JSON, Answer, FakeHTTPServer, Incoming

#: The policies of a user's own credentials the fake enforces (see ``FakeOpenStack.policy``).
CREDENTIAL_POLICIES = (
    "identity:ec2_create_credential",
    "identity:create_application_credential",
    "identity:create_trust",
    "identity:create_credential",
)
RESTRICTIVE = dict.fromkeys(CREDENTIAL_POLICIES, "role:admin")
#: The policies of listing the projects a user has a role on (Keystone's defaults: anyone's
#: own, ""; and the owner's or an admin's), and a policy that hides them from member tokens.
LISTING_POLICIES = ("identity:get_auth_projects", "identity:list_user_projects")
HIDDEN = dict.fromkeys(LISTING_POLICIES, "role:admin")

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."

#: The open-gpu-server's flavors (issue 24): name -> (vCPUs, RAM MiB, disk GB, extra specs).
GPU_ALIAS = "pci_passthrough:alias"
DEFAULT_FLAVORS: dict[str, tuple[int, int, int, dict[str, str]]] = {
    "gpu_tiny": (4, 2048, 20, {GPU_ALIAS: "v100:1"}),
    "gpu_medium": (4, 8192, 50, {GPU_ALIAS: "v100:1"}),
    "gpu_large": (4, 12288, 60, {GPU_ALIAS: "v100:1"}),
    "gpu_xlarge": (8, 16384, 60, {GPU_ALIAS: "v100:1"}),
    "gpu_2xlarge": (8, 32768, 60, {GPU_ALIAS: "v100:2"}),
    "gpu_4xlarge": (8, 65536, 60, {GPU_ALIAS: "v100:4"}),
    "vgpu_small": (2, 4096, 20, {"resources:VGPU": "1"}),
    "ci_medium": (4, 8192, 50, {}),
    "ci_large": (8, 16384, 100, {}),
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Token:
    """What Keystone knows of a token it issued."""

    user_id: str
    project_id: str | None
    expires_at: float
    methods: list[str]


@dataclass
class Server:
    id: str
    name: str
    flavor: dict[str, Any]
    image_id: str
    key_name: str
    network_id: str
    address: str
    disk_dir: Path
    metadata: dict[str, str]
    user_data: str = ""
    status: str = "BUILD"
    task_state: str | None = "scheduling"
    fault: dict[str, Any] | None = None
    console: list[str] = field(default_factory=list)
    sshd: subprocess.Popen[bytes] | None = None
    #: The status a confirmed (or reverted) resize returns to.
    before_resize: str = ""
    old_flavor: dict[str, Any] | None = None
    created: str = ""
    port_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: The project it was made in (its token's).
    project_id: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def gpus_of(extra_specs: dict[str, str]) -> int:
    """The devices a flavor asks (``alias:count,...`` or ``resources:VGPU``)."""
    count = 0
    for item in (extra_specs.get(GPU_ALIAS) or "").split(","):
        if ":" in item:
            count += int(item.split(":", 1)[1])
    return count + int(extra_specs.get("resources:VGPU") or 0)


class _Forwarder:
    """A floating IP: TCP to (address, port) is relayed to the server's fixed address."""

    def __init__(self, address: str, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server((address, port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()


class FakeOpenStack:
    def __init__(
        self,
        workdir: Path,
        *,
        username: str = "jupyter",
        password: str = "s3cret-pass",
        project: str = "conda-forge",
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.username, self.password, self.project = username, password, project
        self.project_id = uuid.uuid4().hex
        self.user_id = uuid.uuid4().hex
        self.region = "RegionOne"
        self.requests: list[Request] = []
        #: Keystone: the users (name -> id, password), projects, roles and who has which where.
        self.users: dict[str, dict[str, str]] = {
            self.user_id: {"id": self.user_id, "name": username, "password": password}
        }
        self.projects: dict[str, dict[str, Any]] = {}
        self.add_project(project, project_id=self.project_id)
        self.roles = {name: uuid.uuid4().hex for name in ("admin", "member", "reader")}
        #: (user id, project id, role id)
        self.assignments: set[tuple[str, str, str]] = {
            (self.user_id, self.project_id, self.roles["admin"]),
            (self.user_id, self.project_id, self.roles["member"]),
        }
        #: The tokens issued and still valid (revoked ones are gone), and those revoked.
        self.tokens: dict[str, Token] = {}
        self.revoked_tokens: set[str] = set()
        #: Seconds an issued token lives (Keystone's [token] expiration, an hour by default).
        self.token_ttl = 3600.0
        #: Keystone's [token] allow_rescope_scoped_token (true by default there).
        self.allow_rescope_scoped_token = True
        #: Keystone's policy.yaml for a user's own credentials: a rule per policy name, "owner"
        #: (Keystone's default: the user's own token, any project's, or an admin) or
        #: "role:admin" (a token with the admin role on its project only).
        self.policy: dict[str, str] = {
            **dict.fromkeys(CREDENTIAL_POLICIES, "owner"),
            "identity:get_auth_projects": "",
            "identity:list_user_projects": "owner",
        }
        #: The credentials Keystone keeps: generic ones (EC2 ones among them, type "ec2"),
        #: application credentials and trusts, by id.
        self.credentials: dict[str, dict[str, Any]] = {}
        self.application_credentials: dict[str, dict[str, Any]] = {}
        self.trusts: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        #: Every token ever issued (for tests asking what a token was scoped to).
        self._all_tokens: dict[str, Token] = {}
        self.flavors: dict[str, dict[str, Any]] = {}
        for name, (vcpus, ram, disk, specs) in DEFAULT_FLAVORS.items():
            self.add_flavor(name, vcpus, ram, disk, specs)
        self.images: list[dict[str, Any]] = [
            self._image("ubuntu-2204-nvidia-20230914", min_disk=20),
            self._image("ubuntu-2204-20230914", min_disk=10),
        ]
        self.networks: list[dict[str, Any]] = [
            self._network("private", external=False),
            self._network("public", external=True),
        ]
        self.keypairs: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, Server] = {}
        self.floating_ips: dict[str, dict[str, Any]] = {}
        self._forwarders: dict[str, _Forwarder] = {}
        #: GPUs (PCI or vGPU devices) the hypervisors can expose at once (issue 24: 4).
        self.gpu_capacity = 4
        #: No hypervisor has room for any flavor (the scheduler's NoValidHost for everything).
        self.no_room = False
        #: The project's quota (Nova's os-quota-sets names; RAM in MiB).
        self.quota = {"instances": 10, "cores": 64, "ram": 256 * 1024}
        self.quota_status = 403
        #: Seconds a server spends in BUILD, and its guest until sshd and the console keys.
        self.build_delay = 0.05
        self.boot_delay = 0.0
        #: The guest prints its host keys to the console (cloud-init's keys_to_console).
        #: True: keys and fingerprints; "fingerprints": only those (cloud-init's
        #: ssh_key_console_blacklist covering every type); False: nothing.
        self.print_host_keys: bool | str = True
        #: A fingerprint the console prints instead of the real one (a VM that lies).
        self.console_fingerprint = ""
        self.vm_env: dict[str, str] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._fixed = itertools.count(2)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.ssh_port = s.getsockname()[1]
        self._http = FakeHTTPServer(self._answer)
        self.url = self._http.url
        self.auth_url = f"{self.url}/identity/v3"

    # --- running ------------------------------------------------------------------------------

    def start(self) -> FakeOpenStack:
        self._http.start()
        return self

    def close(self) -> None:
        self._http.close()
        with self._lock:
            self._closed = True
            for server in self.servers.values():
                self._halt(server)
            for forwarder in self._forwarders.values():
                forwarder.close()

    # --- what tests use -----------------------------------------------------------------------

    def clouds_yaml(self, path: Path, *, cloud: str = "opengpu", password: str = "") -> Path:
        """A clouds.yaml naming this fake, as ``openstack`` tools read it."""
        path.write_text(
            json.dumps(  # JSON is YAML
                {
                    "clouds": {
                        cloud: {
                            "auth": {
                                "auth_url": self.auth_url,
                                "username": self.username,
                                "password": password or self.password,
                                "project_name": self.project,
                                "user_domain_name": "Default",
                                "project_domain_name": "Default",
                            },
                            "region_name": self.region,
                            "interface": "public",
                            "identity_api_version": 3,
                        }
                    }
                }
            )
        )
        return path

    def add_flavor(
        self, name: str, vcpus: int, ram: int, disk: int, extra_specs: dict[str, str]
    ) -> dict[str, Any]:
        flavor: dict[str, Any] = {
            "id": f"{len(self.flavors) + 1}0{secrets.token_hex(2)}",
            "name": name,
            "vcpus": vcpus,
            "ram": ram,
            "disk": disk,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "OS-FLV-DISABLED:disabled": False,
            "swap": 0,
            "rxtx_factor": 1.0,
            "os-flavor-access:is_public": True,
            "description": None,
            "extra_specs": dict(extra_specs),
        }
        self.flavors[flavor["id"]] = flavor
        return flavor

    def server(self, name: str | None = None) -> Server:
        with self._lock:
            found = [s for s in self.servers.values() if name is None or s.name == name]
            assert len(found) == 1, f"{len(found)} servers match {name!r}"
            return found[0]

    def calls(self, method: str, path_part: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and path_part in r.path]

    def actions(self, name: str) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.path.endswith("/action") and isinstance(r.body, dict) and name in r.body
        ]

    def gpus_in_use(self) -> int:
        with self._lock:
            return sum(
                gpus_of(s.flavor["extra_specs"])
                for s in self.servers.values()
                if s.status != "ERROR"
            )

    def stop_outside(self, name: str | None = None) -> None:
        """Someone stops the server outside Jupyter (Horizon, the CLI, a shutdown in it)."""
        server = self.server(name)
        with self._lock:
            self._halt(server)
            server.status = "SHUTOFF"

    # --- HTTP -------------------------------------------------------------------------------------

    def _answer(self, request: Incoming) -> Answer:
        status, body, headers = self._route(
            request.method, request.path, request.query, request.json(), request.headers
        )
        return Answer(status, body, headers)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.requests.append(Request(method, path, query, body, headers))
        path = path.rstrip("/") or "/"
        if path.startswith("/identity"):
            with self._lock:
                return self._identity(method, path[len("/identity") :], query, body, headers)
        discovery = path in ("/compute", "/compute/v2.1", "/image", "/network", "/volume")
        if discovery:
            # Version documents are public (as Nova's, Glance's, Neutron's and Cinder's are).
            token = Token("", None, 0.0, [])
        else:
            with self._lock:
                found = self._valid_token(headers.get("x-auth-token"))
            if found is None or found.project_id is None:
                # ASSUMED: the services answer a missing, unknown, expired, revoked or unscoped
                # token as Keystone does (keystonemiddleware's 401).
                return (
                    401,
                    _fault(
                        "unauthorized", 401, "The request you have made requires authentication."
                    ),
                    {},
                )
            token = found
        with self._lock:
            if path.startswith("/compute"):
                return self._compute(method, path[len("/compute") :], query, body, token)
            if path.startswith("/image"):
                return self._image_api(method, path[len("/image") :], query)
            if path.startswith("/network"):
                return self._network_api(method, path[len("/network") :], query, body, token)
            if path.startswith("/volume"):
                return self._volume_api(method, path[len("/volume") :], body, token)
        return 404, _fault("itemNotFound", 404, f"{path} not found"), {}

    # --- Keystone ---------------------------------------------------------------------------------

    def add_project(
        self, name: str, *, project_id: str | None = None, tags: list[str] | None = None
    ) -> dict[str, Any]:
        """A project in the Default domain (as an admin's ``openstack project create``)."""
        project: dict[str, Any] = {
            "id": project_id or uuid.uuid4().hex,
            "name": name,
            "domain_id": "default",
            "description": "",
            "enabled": True,
            "is_domain": False,
            "parent_id": "default",
            "tags": list(tags or []),
        }
        project["links"] = {"self": f"/identity/v3/projects/{project['id']}"}
        self.projects[project["id"]] = project
        return project

    def project_named(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.projects.values() if p["name"] == name), None)

    def token_project(self, token: str) -> str | None:
        """The project id a token (issued, revoked or not) was scoped to; None if unknown."""
        with self._lock:
            known = self.tokens.get(token) or self._all_tokens.get(token)
            return known.project_id if known else None

    def _valid_token(self, token_id: str | None) -> Token | None:
        token = self.tokens.get(token_id or "")
        if token is None:
            return None
        if token.expires_at <= time.time():
            del self.tokens[token_id or ""]
            return None
        return token

    def _issue(
        self, user_id: str, project_id: str | None, methods: list[str], expires: float
    ) -> tuple[int, Any, dict[str, str]]:
        token_id = "gAAAA" + secrets.token_urlsafe(24)
        token = Token(user_id, project_id, expires, methods)
        self.tokens[token_id] = token
        self._all_tokens[token_id] = token
        return 201, {"token": self._token_body(token)}, {"X-Subject-Token": token_id}

    def _identity(
        self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        version = {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.auth_url}/"}],
            "media-types": [{"base": JSON, "type": "application/vnd.openstack.identity-v3+json"}],
        }
        if method == "GET" and path in ("", "/"):
            return 300, {"versions": {"values": [version]}}, {}
        if method == "GET" and path == "/v3":
            return 200, {"version": version}, {}
        if method == "POST" and path == "/v3/auth/tokens":
            return self._authenticate(body)
        caller = self._valid_token(headers.get("x-auth-token"))
        if caller is None:
            return _keystone_error(401, "The request you have made requires authentication.")
        if path == "/v3/auth/tokens" and method == "DELETE":
            subject_id = headers.get("x-subject-token") or ""
            subject = self._valid_token(subject_id)
            if subject is None:
                return _keystone_error(404, f"Could not find token: {subject_id}")
            # Keystone's identity:revoke_token: an admin, or the token's own user.
            if subject.user_id != caller.user_id and not self._is_admin(caller):
                return _keystone_error(403, "You are not authorized to perform the action.")
            del self.tokens[subject_id]
            self.revoked_tokens.add(subject_id)
            return 204, None, {}
        parts = [p for p in path.split("/") if p][1:]  # after v3
        listing = parts == ["auth", "projects"] or (
            len(parts) == 3 and parts[0] == "users" and parts[2] == "projects"
        )
        if listing and method == "GET":
            # The projects the token's user (or the user named) has a role on.
            user_id = caller.user_id if parts[0] == "auth" else parts[1]
            policy = "identity:get_auth_projects" if parts[0] == "auth" else LISTING_POLICIES[1]
            if not self._allows(policy, caller, user_id == caller.user_id):
                return _keystone_error(403, "You are not authorized to perform the action.")
            mine = {p for u, p, _ in self.assignments if u == user_id}
            listed = [self.projects[p] for p in sorted(mine) if p in self.projects]
            return 200, {"projects": listed, "links": {"self": None, "next": None}}, {}
        own = self._own_credentials(method, parts, body, caller)
        if own is not None:
            return own
        if not self._is_admin(caller):
            return _keystone_error(403, "You are not authorized to perform the requested action.")
        if parts == ["projects"] and method == "GET":
            found = [
                p
                for p in self.projects.values()
                if all(str(p.get(k)) == v for k, v in query.items() if k in ("name", "domain_id"))
            ]
            return 200, {"projects": found, "links": {"self": None, "next": None}}, {}
        if parts == ["projects"] and method == "POST":
            spec = (body or {}).get("project") or {}
            domain = spec.get("domain_id") or "default"
            if any(p["name"] == spec.get("name") for p in self.projects.values()):
                return _keystone_error(409, "Conflict occurred attempting to store project.")
            project = self.add_project(str(spec["name"]), tags=spec.get("tags"))
            project.update(domain_id=domain, description=spec.get("description") or "")
            return 201, {"project": project}, {}
        if parts == ["roles"] and method == "GET":
            roles = [
                {"id": i, "name": n, "domain_id": None}
                for n, i in self.roles.items()
                if not query.get("name") or query["name"] == n
            ]
            return 200, {"roles": roles, "links": {"self": None, "next": None}}, {}
        if (
            len(parts) == 6
            and parts[0] == "projects"
            and parts[2] == "users"
            and parts[4] == "roles"
            and method == "PUT"
        ):
            project_id, user_id, role_id = parts[1], parts[3], parts[5]
            if project_id not in self.projects:
                return _keystone_error(404, f"Could not find project: {project_id}.")
            if user_id not in self.users or role_id not in self.roles.values():
                return _keystone_error(404, "Could not find user or role.")
            self.assignments.add((user_id, project_id, role_id))
            return 204, None, {}
        return _keystone_error(404, "The resource could not be found.")

    def _allows(self, policy: str, caller: Token, owner: bool) -> bool:
        rule = self.policy.get(policy, "owner")
        if rule == "role:admin":
            return self._is_admin(caller)
        if rule == "":
            return True
        return owner or self._is_admin(caller)

    def _own_credentials(
        self, method: str, parts: list[str], body: Any, caller: Token
    ) -> tuple[int, Any, dict[str, str]] | None:
        """A user's EC2 credentials, application credentials, trusts and generic credentials
        (docs.openstack.org/api-ref/identity/v3 and v3-ext), as their policies allow; None for
        another path. Deleting is the owner's or an admin's (Keystone's defaults)."""
        denied = _keystone_error(403, "You are not authorized to perform the requested action.")
        body = body if isinstance(body, dict) else {}
        if len(parts) >= 4 and parts[0] == "users" and parts[2:4] == ["credentials", "OS-EC2"]:
            user_id, rest = parts[1], parts[4:]
            owner = user_id == caller.user_id
            if method == "POST" and not rest:
                if not self._allows("identity:ec2_create_credential", caller, owner):
                    return denied
                tenant = str(body.get("tenant_id") or "")
                # Keystone: any project the user has a role on (not only the token's). ASSUMED:
                # another project is answered as Keystone answers a scope without a role.
                if not any(u == user_id and p == tenant for u, p, _ in self.assignments):
                    return _keystone_error(
                        401, "The request you have made requires authentication."
                    )
                access, secret = uuid.uuid4().hex, uuid.uuid4().hex
                blob = json.dumps({"access": access, "secret": secret, "trust_id": None})
                self.credentials[hashlib.sha256(access.encode()).hexdigest()] = {
                    "user_id": user_id,
                    "project_id": tenant,
                    "type": "ec2",
                    "blob": blob,
                }
                made: dict[str, Any] = {
                    "user_id": user_id,
                    "tenant_id": tenant,
                    "access": access,
                    "secret": secret,
                    "trust_id": None,
                    "links": {},
                }
                return 201, {"credential": made}, {}
            if method == "DELETE" and len(rest) == 1:
                if not (owner or self._is_admin(caller)):
                    return denied
                key = hashlib.sha256(rest[0].encode()).hexdigest()
                if self.credentials.pop(key, None) is None:
                    return _keystone_error(404, f"Could not find credential: {rest[0]}.")
                return 204, None, {}
            return None
        if len(parts) >= 3 and parts[0] == "users" and parts[2] == "application_credentials":
            user_id, rest = parts[1], parts[3:]
            owner = user_id == caller.user_id
            if method == "POST" and not rest:
                policy = "identity:create_application_credential"
                if not self._allows(policy, caller, owner):
                    return denied
                spec = dict(body.get("application_credential") or {})
                spec.update(id=uuid.uuid4().hex, user_id=user_id, project_id=caller.project_id)
                self.application_credentials[spec["id"]] = spec
                return 201, {"application_credential": {**spec, "secret": uuid.uuid4().hex}}, {}
            if method == "DELETE" and len(rest) == 1:
                if not (owner or self._is_admin(caller)):
                    return denied
                if self.application_credentials.pop(rest[0], None) is None:
                    return _keystone_error(
                        404, f"Could not find application credential: {rest[0]}."
                    )
                return 204, None, {}
            return None
        if parts[:2] == ["OS-TRUST", "trusts"]:
            rest = parts[2:]
            if method == "POST" and not rest:
                spec = dict(body.get("trust") or {})
                owner = spec.get("trustor_user_id") == caller.user_id
                if not self._allows("identity:create_trust", caller, owner):
                    return denied
                spec["id"] = uuid.uuid4().hex
                self.trusts[spec["id"]] = spec
                return 201, {"trust": spec}, {}
            if method == "DELETE" and len(rest) == 1:
                trust = self.trusts.get(rest[0])
                if trust is None:
                    return _keystone_error(404, f"Could not find trust: {rest[0]}.")
                if trust.get("trustor_user_id") != caller.user_id and not self._is_admin(caller):
                    return denied
                del self.trusts[rest[0]]
                return 204, None, {}
            return None
        if parts[:1] == ["credentials"]:
            rest = parts[1:]
            if method == "POST" and not rest:
                spec = dict(body.get("credential") or {})
                owner = spec.get("user_id") == caller.user_id
                if not self._allows("identity:create_credential", caller, owner):
                    return denied
                spec["id"] = uuid.uuid4().hex
                self.credentials[spec["id"]] = spec
                return 201, {"credential": spec}, {}
            if method == "DELETE" and len(rest) == 1:
                credential = self.credentials.get(rest[0])
                if credential is None:
                    return _keystone_error(404, f"Could not find credential: {rest[0]}.")
                if credential.get("user_id") != caller.user_id and not self._is_admin(caller):
                    return denied
                del self.credentials[rest[0]]
                return 204, None, {}
            return None
        return None

    def _is_admin(self, token: Token) -> bool:
        return token.project_id is not None and (
            (token.user_id, token.project_id, self.roles["admin"]) in self.assignments
        )

    def _authenticate(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        try:
            identity = body["auth"]["identity"]
            methods = list(identity["methods"])
            scope = body["auth"].get("scope") or {}
        except (KeyError, TypeError):
            return _keystone_error(400, "Expecting to find identity in auth.")
        expires = time.time() + self.token_ttl
        if methods == ["password"]:
            try:
                user = identity["password"]["user"]
                password = user["password"]
            except (KeyError, TypeError):
                return _keystone_error(400, "Expecting password auth.")
            found = next(
                (
                    u
                    for u in self.users.values()
                    if u["id"] == user.get("id") or u["name"] == user.get("name")
                ),
                None,
            )
            if found is None or found["password"] != password:
                return _keystone_error(401, "The request you have made requires authentication.")
            user_id = found["id"]
        elif methods == ["token"]:
            try:
                original = self._valid_token(identity["token"]["id"])
            except (KeyError, TypeError):
                return _keystone_error(400, "Expecting token auth.")
            if original is None:
                return _keystone_error(404, "Could not find token.")
            if original.project_id is not None and not self.allow_rescope_scoped_token:
                # keystone/auth/plugins/token.py: a scoped token is not rescoped when
                # [token] allow_rescope_scoped_token is off.
                return _keystone_error(
                    403,
                    "You are not authorized to perform the requested action: rescope a "
                    "scoped token.",
                )
            user_id, expires = original.user_id, original.expires_at
        else:
            return _keystone_error(401, f"Unsupported auth methods {methods}.")
        project_id: str | None = None
        if "project" in scope:
            wanted = scope["project"] or {}
            project = self.projects.get(str(wanted.get("id"))) or (
                self.project_named(str(wanted.get("name"))) if "name" in wanted else None
            )
            if project is None:
                return _keystone_error(401, "The request you have made requires authentication.")
            if not any(u == user_id and p == project["id"] for u, p, _ in self.assignments):
                # Keystone: "User X has no access to project Y", as a 401.
                return _keystone_error(401, "The request you have made requires authentication.")
            project_id = project["id"]
        return self._issue(user_id, project_id, methods, expires)

    def _token_body(self, token: Token) -> dict[str, Any]:
        def endpoints(url: str) -> list[dict[str, Any]]:
            return [
                {
                    "id": uuid.uuid4().hex,
                    "interface": interface,
                    "region": self.region,
                    "region_id": self.region,
                    "url": url,
                }
                for interface in ("public", "internal", "admin")
            ]

        catalog = [
            ("identity", "keystone", f"{self.url}/identity"),
            # Nova's catalogue entry is versioned, Glance's and Neutron's are not (devstack's);
            # Cinder's names the token's project (its templated $(project_id)s).
            ("compute", "nova", f"{self.url}/compute/v2.1"),
            ("image", "glance", f"{self.url}/image"),
            ("network", "neutron", f"{self.url}/network"),
            ("block-storage", "cinder", f"{self.url}/volume/v3/{token.project_id}"),
        ]
        user = self.users[token.user_id]
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(token.expires_at))
        body: dict[str, Any] = {
            "methods": token.methods,
            "expires_at": expires,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            "audit_ids": [secrets.token_urlsafe(16)],
            "user": {
                "id": user["id"],
                "name": user["name"],
                "domain": {"id": "default", "name": "Default"},
                "password_expires_at": None,
            },
        }
        if token.project_id is not None:
            project = self.projects[token.project_id]
            body["project"] = {
                "id": project["id"],
                "name": project["name"],
                "domain": {"id": project["domain_id"], "name": "Default"},
            }
            body["roles"] = [
                {"id": r, "name": n}
                for n, r in self.roles.items()
                if (token.user_id, token.project_id, r) in self.assignments
            ]
            body["catalog"] = [
                {"id": uuid.uuid4().hex, "type": kind, "name": name, "endpoints": endpoints(url)}
                for kind, name, url in catalog
            ]
        return body

    # --- Nova -----------------------------------------------------------------------------------

    def _compute(
        self, method: str, path: str, query: dict[str, str], body: Any, token: Token
    ) -> tuple[int, Any, dict[str, str]]:
        nova = f"{self.url}/compute/v2.1"
        version = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": "2.96",
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{nova}/"}],
        }
        if path in ("", "/"):
            return 200, {"versions": [version]}, {}
        if not path.startswith("/v2.1"):
            return 404, _fault("itemNotFound", 404, "Unknown version"), {}
        parts = [p for p in path[len("/v2.1") :].split("/") if p]
        if not parts:
            return 200, {"version": version}, {}
        if parts[0] == "flavors":
            return self._flavors(parts[1:])
        if parts[0] == "os-keypairs":
            return self._keypairs(method, parts[1:], body, token)
        if parts[0] == "servers":
            return self._servers(method, parts[1:], query, body, token)
        return 404, _fault("itemNotFound", 404, f"{path} not found"), {}

    def _flavors(self, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        if rest in ([], ["detail"]):
            return 200, {"flavors": [self._flavor_json(f) for f in self.flavors.values()]}, {}
        flavor = self.flavors.get(rest[0])
        if flavor is None:
            return 404, _fault("itemNotFound", 404, f"Flavor {rest[0]} could not be found."), {}
        if rest[1:] == ["os-extra_specs"]:
            return 200, {"extra_specs": dict(flavor["extra_specs"])}, {}
        return 200, {"flavor": self._flavor_json(flavor)}, {}

    def _flavor_json(self, flavor: dict[str, Any]) -> dict[str, Any]:
        link = f"{self.url}/compute/v2.1/flavors/{flavor['id']}"
        return {**flavor, "links": [{"rel": "self", "href": link}]}

    def _keypairs(
        self, method: str, rest: list[str], body: Any, token: Token
    ) -> tuple[int, Any, dict[str, str]]:
        # A key pair is its Keystone user's (Nova's), in whichever project the token is.
        # ASSUMED: names are one namespace here (Nova's is per user; the fake's tests have one
        # Keystone user making key pairs).
        mine = {n: k for n, k in self.keypairs.items() if k["user_id"] == token.user_id}
        if method == "GET" and not rest:
            return 200, {"keypairs": [{"keypair": k} for k in mine.values()]}, {}
        if method == "POST" and not rest:
            pair = body["keypair"]
            name = pair["name"]
            if name in self.keypairs:
                return (
                    409,
                    _fault("conflictingRequest", 409, f"Key pair '{name}' already exists."),
                    {},
                )
            public = pair.get("public_key")
            if not public:
                return 400, _fault("badRequest", 400, "The fake only imports key pairs."), {}
            key = asyncssh.import_public_key(public)
            keypair = {
                "name": name,
                "public_key": public,
                "fingerprint": key.get_fingerprint("md5").split(":", 1)[1],
                "user_id": token.user_id,
                "type": pair.get("type", "ssh"),
            }
            self.keypairs[name] = keypair
            return 200, {"keypair": keypair}, {}
        if rest and rest[0] in mine:
            if method == "DELETE":
                del self.keypairs[rest[0]]
                return 202, None, {}
            return 200, {"keypair": self.keypairs[rest[0]]}, {}
        name = rest[0] if rest else ""
        return (
            404,
            _fault("itemNotFound", 404, f"Keypair {name} not found for user {self.user_id}"),
            {},
        )

    def _servers(
        self, method: str, rest: list[str], query: dict[str, str], body: Any, token: Token
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and not rest:
            return self._create(body["server"], token)
        if method == "GET" and rest in ([], ["detail"]):
            # Nova matches ``name`` as a regular expression (api-ref: "filter by server name,
            # in regular expression format").
            found = [
                s
                for s in self.servers.values()
                if s.project_id == token.project_id
                and (not query.get("name") or re.search(query["name"], s.name))
            ]
            return 200, {"servers": [self._server_json(s) for s in found]}, {}
        server = self.servers.get(rest[0]) if rest else None
        if server is None or server.project_id != token.project_id:
            # Another project's server is not found (Nova's answer to a non-admin).
            return 404, _fault("itemNotFound", 404, "Instance could not be found."), {}
        if method == "GET" and len(rest) == 1:
            return 200, {"server": self._server_json(server)}, {}
        if method == "DELETE" and len(rest) == 1:
            self._delete(server)
            return 204, None, {}
        if method == "POST" and rest[1:] == ["action"]:
            return self._action(server, body)
        return 404, _fault("itemNotFound", 404, "not found"), {}

    def _quota_refusal(
        self, flavor: dict[str, Any], project_id: str, replacing: Server | None = None
    ) -> str:
        live = [
            s for s in self.servers.values() if s is not replacing and s.project_id == project_id
        ]
        used = {
            "instances": len(live) + (1 if replacing else 0) - (1 if replacing else 0),
            "cores": sum(s.flavor["vcpus"] for s in live),
            "ram": sum(s.flavor["ram"] for s in live),
        }
        wanted = {
            "instances": 0 if replacing else 1,
            "cores": flavor["vcpus"],
            "ram": flavor["ram"],
        }
        over = [k for k in ("instances", "cores", "ram") if used[k] + wanted[k] > self.quota[k]]
        if not over:
            return ""
        # Nova's wording (nova/exception.py TooManyInstances): "Quota exceeded for %(overs)s:
        # Requested %(req)s, but already used %(used)s of %(allowed)s %(overs)s".
        kind = over[0]
        return (
            f"Quota exceeded for {kind}: Requested {wanted[kind]}, but already used "
            f"{used[kind]} of {self.quota[kind]} {kind}"
        )

    def _quota_answer(self, message: str) -> tuple[int, Any, dict[str, str]]:
        if self.quota_status == 413:
            return 413, _fault("overLimit", 413, message), {"Retry-After": "0"}
        return 403, _fault("forbidden", 403, message), {}

    def _create(self, spec: dict[str, Any], token: Token) -> tuple[int, Any, dict[str, str]]:
        flavor = self.flavors.get(str(spec.get("flavorRef")))
        if flavor is None:
            return (
                400,
                _fault("badRequest", 400, f"Flavor {spec.get('flavorRef')} could not be found."),
                {},
            )
        if not any(i["id"] == spec.get("imageRef") for i in self.images):
            return (
                400,
                _fault("badRequest", 400, f"Image {spec.get('imageRef')} could not be found."),
                {},
            )
        key_name = spec.get("key_name") or ""
        keypair = self.keypairs.get(key_name)
        if key_name and (keypair is None or keypair["user_id"] != token.user_id):
            return 400, _fault("badRequest", 400, "Invalid key_name provided."), {}
        networks = spec.get("networks") or []
        network_id = networks[0].get("uuid") if networks and isinstance(networks, list) else ""
        visible = [n for n in self.networks if self._sees_network(n, token)]
        if network_id and not any(n["id"] == network_id for n in visible):
            return 400, _fault("badRequest", 400, f"Network {network_id} could not be found."), {}
        if not network_id and not visible:
            return 400, _fault("badRequest", 400, "No network is available to the project."), {}
        network_id = network_id or visible[0]["id"]
        refusal = self._quota_refusal(flavor, str(token.project_id))
        if refusal:
            return self._quota_answer(refusal)
        server_id = str(uuid.uuid4())
        disk_dir = self.workdir / server_id
        (disk_dir / "home").mkdir(parents=True)
        user_data = spec.get("user_data") or ""
        server = Server(
            id=server_id,
            name=spec["name"],
            flavor=flavor,
            image_id=spec["imageRef"],
            key_name=key_name,
            network_id=network_id,
            address=f"127.0.2.{next(self._fixed)}",
            disk_dir=disk_dir,
            metadata=dict(spec.get("metadata") or {}),
            user_data=base64.b64decode(user_data).decode() if user_data else "",
            created=_now(),
            project_id=str(token.project_id),
        )
        self.servers[server_id] = server
        threading.Thread(target=self._schedule, args=(server,), daemon=True).start()
        link = f"{self.url}/compute/v2.1/servers/{server_id}"
        return (
            202,
            {
                "server": {
                    "id": server_id,
                    "links": [{"rel": "self", "href": link}],
                    "OS-DCF:diskConfig": "MANUAL",
                    "security_groups": [{"name": "default"}],
                    "adminPass": secrets.token_urlsafe(9),
                }
            },
            {"Location": link},
        )

    def _schedule(self, server: Server) -> None:
        time.sleep(self.build_delay)
        with self._lock:
            if server.id not in self.servers or server.status != "BUILD":
                return
            wanted = gpus_of(server.flavor["extra_specs"])
            in_use = self.gpus_in_use() - wanted  # this one counts itself while in BUILD
            if self.no_room or (wanted and in_use + wanted > self.gpu_capacity):
                # The scheduler's NoValidHost, as a server's fault (Nova's documented shape:
                # code, created, message; details only for admins).
                server.status, server.task_state = "ERROR", None
                server.fault = {"code": 500, "created": _now(), "message": NO_VALID_HOST}
                return
            server.task_state = None
            self._boot(server)

    def _boot(self, server: Server) -> None:
        server.status = "ACTIVE"
        server.console.append(f"[    0.000000] Linux version 5.15.0-84-generic ({server.name})")
        threading.Thread(target=self._guest, args=(server,), daemon=True).start()

    def _guest(self, server: Server) -> None:
        time.sleep(self.boot_delay)
        with self._lock:
            if self._closed or server.status != "ACTIVE" or server.id not in self.servers:
                return
            if server.sshd is not None and server.sshd.poll() is None:
                return
            keypair = self.keypairs.get(server.key_name)
            keys = f"root:{keypair['public_key']}" if keypair else ""
            # cloud-init's cc_ssh: the user data's cloud-config ssh_authorized_keys too.
            keys += "".join(f"\nroot:{key}" for key in authorized_keys(server.user_data))
            server.sshd = _start_sshd(server, self.ssh_port, keys, self.vm_env)
            public = (server.disk_dir / "ssh_host_ed25519_key.pub").read_text().split()
            key = asyncssh.import_public_key(" ".join(public[:2]))
            server.console.append("Cloud-init v. 23.2.2 running 'modules:final'")
            if self.print_host_keys == "fingerprints":
                server.console += [
                    "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                    f"256 {self.console_fingerprint or key.get_fingerprint()} root@{server.name}"
                    " (ED25519)",
                    "-----END SSH HOST KEY FINGERPRINTS-----",
                ]
            elif self.print_host_keys:
                # cloud-init's cc_keys_to_console: fingerprints, then the keys themselves.
                server.console += [
                    "ci-info: no authorized SSH keys fingerprints found for user ubuntu.",
                    "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                    f"256 {key.get_fingerprint()} root@{server.name} (ED25519)",
                    "-----END SSH HOST KEY FINGERPRINTS-----",
                    "-----BEGIN SSH HOST KEY KEYS-----",
                    f"{public[0]} {public[1]} root@{server.name}",
                    "-----END SSH HOST KEY KEYS-----",
                ]
            server.console.append(f"Cloud-init v. 23.2.2 finished at {_now()}. Up 4.2 seconds")

    def _action(self, server: Server, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict) or len(body) != 1:
            return 400, _fault("badRequest", 400, "Malformed request body"), {}
        ((name, args),) = body.items()
        if name == "os-getConsoleOutput":
            length = (args or {}).get("length")
            lines = server.console[-int(length) :] if length else server.console
            return 200, {"output": "\n".join(lines) + "\n"}, {}
        allowed = {
            "os-stop": ("ACTIVE", "ERROR"),
            "os-start": ("SHUTOFF",),
            "suspend": ("ACTIVE", "SHUTOFF"),
            "resume": ("SUSPENDED",),
            "reboot": ("ACTIVE", "SHUTOFF"),
            "resize": ("ACTIVE", "SHUTOFF"),
            "confirmResize": ("VERIFY_RESIZE",),
            "revertResize": ("VERIFY_RESIZE",),
        }
        if name not in allowed:
            return 400, _fault("badRequest", 400, f"Unknown action {name}"), {}
        if server.status not in allowed[name]:
            vm_state = server.status.lower().replace("shutoff", "stopped")
            return (
                409,
                _fault(
                    "conflictingRequest",
                    409,
                    f"Cannot '{name.replace('os-', '')}' instance {server.id} while it is in "
                    f"vm_state {vm_state}",
                ),
                {},
            )
        if name == "os-stop":
            self._halt(server)
            server.status = "SHUTOFF"
        elif name == "os-start":
            self._boot(server)
        elif name == "suspend":
            # ASSUMED: the guest's processes end (a fake cannot keep a process's memory).
            self._halt(server)
            server.status = "SUSPENDED"
        elif name == "resume":
            self._boot(server)
        elif name == "reboot":
            self._halt(server)
            self._boot(server)
        elif name == "resize":
            flavor = self.flavors.get(str((args or {}).get("flavorRef")))
            if flavor is None:
                return 400, _fault("badRequest", 400, "Unable to find flavor"), {}
            if flavor is server.flavor:
                return (
                    400,
                    _fault("badRequest", 400, "When resizing, instances must change flavor!"),
                    {},
                )
            refusal = self._quota_refusal(flavor, server.project_id, replacing=server)
            if refusal:
                return self._quota_answer(refusal)
            # ASSUMED: the resize happens at once (Nova migrates the disk: RESIZE, then
            # VERIFY_RESIZE); a resized instance that was stopped stays stopped once confirmed.
            self._halt(server)
            server.before_resize = "SHUTOFF" if server.status == "SHUTOFF" else "ACTIVE"
            server.old_flavor, server.flavor = server.flavor, flavor
            server.status = "VERIFY_RESIZE"
        elif name in ("confirmResize", "revertResize"):
            if name == "revertResize" and server.old_flavor is not None:
                server.flavor = server.old_flavor
            server.old_flavor = None
            if server.before_resize == "ACTIVE":
                self._boot(server)
            else:
                server.status = "SHUTOFF"
            return 204, None, {}
        return 202, None, {}

    def _server_json(self, server: Server) -> dict[str, Any]:
        network = next(n for n in self.networks if n["id"] == server.network_id)
        addresses = [
            {
                "version": 4,
                "addr": server.address,
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
            }
        ]
        for ip in self.floating_ips.values():
            if ip["port_id"] == server.port_id:
                addresses.append(
                    {
                        "version": 4,
                        "addr": ip["floating_ip_address"],
                        "OS-EXT-IPS:type": "floating",
                        "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
                    }
                )
        flavor = server.flavor
        power = {"ACTIVE": 1, "SHUTOFF": 4, "SUSPENDED": 7}.get(server.status, 0)
        body: dict[str, Any] = {
            "id": server.id,
            "name": server.name,
            "status": server.status,
            "tenant_id": server.project_id,
            "user_id": self.user_id,
            "metadata": server.metadata,
            "hostId": "" if server.status in ("BUILD", "ERROR") else "a1b2c3",
            "image": {"id": server.image_id},
            # Microversion >= 2.47: the flavor is embedded.
            "flavor": {
                "original_name": flavor["name"],
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": dict(flavor["extra_specs"]),
            },
            "created": server.created,
            "updated": _now(),
            "addresses": {network["name"]: addresses} if server.status != "ERROR" else {},
            "accessIPv4": "",
            "accessIPv6": "",
            "key_name": server.key_name or None,
            "OS-EXT-STS:task_state": server.task_state,
            "OS-EXT-STS:vm_state": server.status.lower().replace("shutoff", "stopped"),
            "OS-EXT-STS:power_state": power,
            "OS-EXT-AZ:availability_zone": "nova",
            "config_drive": "",
            "locked": False,
            "tags": [],
            "links": [{"rel": "self", "href": f"{self.url}/compute/v2.1/servers/{server.id}"}],
        }
        if server.fault is not None:
            body["fault"] = server.fault
        return body

    # --- Glance and Neutron ---------------------------------------------------------------------

    def _image(self, name: str, *, min_disk: int) -> dict[str, Any]:
        image_id = str(uuid.uuid4())
        return {
            "id": image_id,
            "name": name,
            "status": "active",
            "visibility": "public",
            "protected": False,
            "os_hidden": False,
            "min_disk": min_disk,
            "min_ram": 0,
            "disk_format": "qcow2",
            "container_format": "bare",
            "size": 2 * 2**30,
            "tags": [],
            "created_at": "2023-09-14T00:00:00Z",
            "updated_at": "2023-09-14T00:00:00Z",
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }

    def _image_api(
        self, method: str, path: str, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        version = {
            "id": "v2.16",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{self.url}/image/v2/"}],
        }
        if path in ("", "/"):
            return 300, {"versions": [version]}, {}
        if method == "GET" and path == "/v2/images":
            images = [i for i in self.images if not query.get("name") or i["name"] == query["name"]]
            return (
                200,
                {"images": images, "first": "/v2/images", "schema": "/v2/schemas/images"},
                {},
            )
        if method == "GET" and path.startswith("/v2/images/"):
            for image in self.images:
                if image["id"] == path.rsplit("/", 1)[-1]:
                    return 200, image, {}
        return 404, _fault("itemNotFound", 404, "not found"), {}

    def add_network(
        self, name: str, *, external: bool = False, shared: bool = False
    ) -> dict[str, Any]:
        """Another network of the project (after ``private`` and ``public``); ``shared``: every
        project's (a provider network an admin shares)."""
        network = self._network(name, external=external, shared=shared)
        self.networks.append(network)
        return network

    def _network(self, name: str, *, external: bool, shared: bool = False) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "name": name,
            "status": "ACTIVE",
            "admin_state_up": True,
            "shared": external or shared,
            "router:external": external,
            "subnets": [str(uuid.uuid4())],
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "mtu": 1450,
        }

    @staticmethod
    def _sees_network(network: dict[str, Any], token: Token) -> bool:
        return bool(network["shared"] or network["project_id"] == token.project_id)

    def _network_api(
        self, method: str, path: str, query: dict[str, str], body: Any, token: Token
    ) -> tuple[int, Any, dict[str, str]]:
        version = {
            "id": "v2.0",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{self.url}/network/v2.0/"}],
        }
        if path in ("", "/"):
            return 200, {"versions": [version]}, {}
        parts = [p for p in path.split("/") if p][1:]  # after v2.0
        if parts == ["networks"]:
            found = [
                n for n in self.networks if self._sees_network(n, token) and _matches(n, query)
            ]
            return 200, {"networks": found}, {}
        if parts == ["ports"]:
            ports = [
                self._port_json(s)
                for s in self.servers.values()
                if s.status != "ERROR" and s.project_id == token.project_id
            ]
            return 200, {"ports": [p for p in ports if _matches(p, query)]}, {}
        if parts[:1] == ["floatingips"]:
            return self._floating(method, parts[1:], query, body, token)
        return (
            404,
            {"NeutronError": {"type": "HTTPNotFound", "message": "not found", "detail": ""}},
            {},
        )

    def _port_json(self, server: Server) -> dict[str, Any]:
        return {
            "id": server.port_id,
            "device_id": server.id,
            "device_owner": "compute:nova",
            "network_id": server.network_id,
            "status": "ACTIVE",
            "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": "s", "ip_address": server.address}],
            "project_id": server.project_id,
        }

    def _floating(
        self, method: str, rest: list[str], query: dict[str, str], body: Any, token: Token
    ) -> tuple[int, Any, dict[str, str]]:
        mine = {
            i: ip for i, ip in self.floating_ips.items() if ip["project_id"] == token.project_id
        }
        if method == "GET" and not rest:
            listed = [ip for ip in mine.values() if _matches(ip, query)]
            return 200, {"floatingips": listed}, {}
        if method == "POST" and not rest:
            spec = body["floatingip"]
            network = spec.get("floating_network_id")
            if not any(n["id"] == network and n["router:external"] for n in self.networks):
                return (
                    404,
                    {
                        "NeutronError": {
                            "type": "ExternalNetworkNotFound",
                            "message": f"External network {network} could not be found.",
                            "detail": "",
                        }
                    },
                    {},
                )
            ip_id = str(uuid.uuid4())
            ip = {
                "id": ip_id,
                "floating_ip_address": f"127.0.3.{len(self.floating_ips) + 2}",
                "floating_network_id": network,
                "port_id": None,
                "fixed_ip_address": None,
                "router_id": None,
                "status": "DOWN",
                "project_id": token.project_id,
                "tenant_id": token.project_id,
                "description": spec.get("description", ""),
            }
            self.floating_ips[ip_id] = ip
            if spec.get("port_id"):
                if not self._owns_port(spec["port_id"], token):
                    return 404, _neutron_error("PortNotFound", "Port could not be found"), {}
                self._associate(ip, spec["port_id"])
            return 201, {"floatingip": ip}, {}
        found = mine.get(rest[0]) if rest else None
        if found is None:
            return (
                404,
                {
                    "NeutronError": {
                        "type": "FloatingIPNotFound",
                        "message": "Floating IP could not be found",
                        "detail": "",
                    }
                },
                {},
            )
        ip = found
        if method == "GET":
            return 200, {"floatingip": ip}, {}
        if method == "PUT":
            port = body["floatingip"].get("port_id")
            if port and not self._owns_port(port, token):
                return 404, _neutron_error("PortNotFound", "Port could not be found"), {}
            self._associate(ip, port)
            return 200, {"floatingip": ip}, {}
        if method == "DELETE":
            self._associate(ip, None)
            del self.floating_ips[ip["id"]]
            return 204, None, {}
        return 405, None, {}

    def _owns_port(self, port_id: str, token: Token) -> bool:
        return any(
            s.port_id == port_id and s.project_id == token.project_id for s in self.servers.values()
        )

    # --- Cinder ---------------------------------------------------------------------------------

    def _volume_api(
        self, method: str, path: str, body: Any, token: Token
    ) -> tuple[int, Any, dict[str, str]]:
        version = {
            "id": "v3.0",
            "status": "CURRENT",
            "version": "3.70",
            "min_version": "3.0",
            "updated": "2023-03-17T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.url}/volume/v3/"}],
        }
        if path in ("", "/"):
            return 300, {"versions": [version]}, {}
        parts = [p for p in path.split("/") if p]
        if parts[:1] != ["v3"] or len(parts) < 2:
            return 404, _fault("itemNotFound", 404, "not found"), {}
        if parts[1] != token.project_id:
            # Cinder's URL names the project; another than the token's is refused.
            return 403, _fault("forbidden", 403, "Policy doesn't allow this project."), {}
        rest = parts[2:]
        if not rest:
            return 200, {"version": version}, {}
        if rest[0] != "volumes":
            return 404, _fault("itemNotFound", 404, "not found"), {}
        mine = {i: v for i, v in self.volumes.items() if v["project_id"] == token.project_id}
        if method == "GET" and rest[1:] in ([], ["detail"]):
            return 200, {"volumes": list(mine.values())}, {}
        if method == "POST" and len(rest) == 1:
            spec = (body or {}).get("volume") or {}
            volume_id = str(uuid.uuid4())
            volume: dict[str, Any] = {
                "id": volume_id,
                "name": spec.get("name"),
                "size": int(spec.get("size") or 1),
                "status": "available",
                "project_id": token.project_id,
                "os-vol-tenant-attr:tenant_id": token.project_id,
                "attachments": [],
                "created_at": _now(),
                "links": [],
            }
            self.volumes[volume_id] = volume
            return 202, {"volume": volume}, {}
        found = mine.get(rest[1]) if len(rest) == 2 else None
        if found is None:
            return 404, _fault("itemNotFound", 404, "Volume could not be found."), {}
        if method == "GET":
            return 200, {"volume": found}, {}
        if method == "DELETE":
            del self.volumes[found["id"]]
            return 202, None, {}
        return 405, None, {}

    def _associate(self, ip: dict[str, Any], port_id: str | None) -> None:
        old = self._forwarders.pop(ip["id"], None)
        if old is not None:
            old.close()
        server = next((s for s in self.servers.values() if s.port_id == port_id), None)
        ip["port_id"] = port_id if server else None
        ip["fixed_ip_address"] = server.address if server else None
        ip["status"] = "ACTIVE" if server else "DOWN"
        if server is not None:
            self._forwarders[ip["id"]] = _Forwarder(
                ip["floating_ip_address"], self.ssh_port, (server.address, self.ssh_port)
            )

    # --- the guests -----------------------------------------------------------------------------

    def _halt(self, server: Server) -> None:
        process = server.sshd
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        server.sshd = None
        _power_cut(server.disk_dir / "home")

    def _delete(self, server: Server) -> None:
        self._halt(server)
        self.servers.pop(server.id, None)
        for ip in self.floating_ips.values():
            if ip["port_id"] == server.port_id:
                self._associate(ip, None)  # Neutron disassociates it; it stays allocated
        shutil.rmtree(server.disk_dir, ignore_errors=True)


def _matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    for key, value in query.items():
        if key in ("limit", "marker", "fields"):
            continue
        have = item.get(key)
        if isinstance(have, bool):
            have = str(have).lower()
        if key in item and str(have) != value:
            return False
    return True


def authorized_keys(user_data: str) -> list[str]:
    """The ``ssh_authorized_keys`` of the cloud-config parts of a VM's user data (a MIME
    multipart, or one cloud-config), as cloud-init reads them."""
    import email

    import yaml

    message = email.message_from_string(user_data)
    parts = list(message.walk()) if message.is_multipart() else []
    texts = [bytes(p.get_payload(decode=True)).decode() for p in parts if not p.is_multipart()]
    if not parts:
        texts = [user_data]
    keys: list[str] = []
    for text in texts:
        if text.startswith("#cloud-config"):
            config = yaml.safe_load(text) or {}
            keys += [str(k) for k in config.get("ssh_authorized_keys") or []]
    return keys


def _neutron_error(kind: str, message: str) -> dict[str, Any]:
    return {"NeutronError": {"type": kind, "message": message, "detail": ""}}


def _keystone_error(code: int, message: str) -> tuple[int, Any, dict[str, str]]:
    """Keystone's error body: ``{"error": {"code", "title", "message"}}``."""
    titles = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    error = {"code": code, "title": titles.get(code, "Conflict"), "message": message}
    return code, {"error": error}, {}


def _fault(kind: str, code: int, message: str) -> dict[str, Any]:
    """Nova's error body: ``{"<kind>": {"code": N, "message": "..."}}``."""
    return {kind: {"code": code, "message": message}}


def _power_cut(home: Path) -> None:
    """End every process of a guest (its sessions have HOME on the VM's disk), as powering a
    VM off does: kernels and agents started detached from the SSH session included."""
    marker = f"HOME={home}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
