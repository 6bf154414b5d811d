"""A fake OpenStack at the wire: one HTTP server speaking what openstacksdk asks of Keystone v3
(password token issue with a service catalogue), Nova (version discovery, flavors with extra
specs, key pairs, servers and their actions, the console log), Glance v2 (images) and Neutron
v2.0 (networks, ports, floating IPs).

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
        self.tokens: set[str] = set()
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
            return self._identity(method, path[len("/identity") :], body)
        discovery = path in ("/compute", "/compute/v2.1", "/image", "/network")
        if not discovery and headers.get("x-auth-token") not in self.tokens:
            # Version documents are public (as Nova's, Glance's and Neutron's are); the rest
            # needs a token Keystone issued.
            # ASSUMED: the services answer a missing or unknown token as Keystone does.
            return (
                401,
                _fault("unauthorized", 401, "The request you have made requires authentication."),
                {},
            )
        with self._lock:
            if path.startswith("/compute"):
                return self._compute(method, path[len("/compute") :], query, body)
            if path.startswith("/image"):
                return self._image_api(method, path[len("/image") :], query)
            if path.startswith("/network"):
                return self._network_api(method, path[len("/network") :], query, body)
        return 404, _fault("itemNotFound", 404, f"{path} not found"), {}

    # --- Keystone ---------------------------------------------------------------------------------

    def _identity(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
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
            try:
                user = body["auth"]["identity"]["password"]["user"]
                name, password = user["name"], user["password"]
            except (KeyError, TypeError):
                return (
                    400,
                    {
                        "error": {
                            "code": 400,
                            "message": "Expecting password auth.",
                            "title": "Bad Request",
                        }
                    },
                    {},
                )
            if name != self.username or password != self.password:
                return (
                    401,
                    {
                        "error": {
                            "code": 401,
                            "title": "Unauthorized",
                            "message": "The request you have made requires authentication.",
                        }
                    },
                    {},
                )
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return 201, {"token": self._token_body()}, {"X-Subject-Token": token}
        return 404, {"error": {"code": 404, "message": "not found", "title": "Not Found"}}, {}

    def _token_body(self) -> dict[str, Any]:
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
            # Nova's catalogue entry is versioned, Glance's and Neutron's are not (devstack's).
            ("compute", "nova", f"{self.url}/compute/v2.1"),
            ("image", "glance", f"{self.url}/image"),
            ("network", "neutron", f"{self.url}/network"),
        ]
        expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 3600))
        return {
            "methods": ["password"],
            "expires_at": expires,
            "issued_at": _now(),
            "user": {
                "id": self.user_id,
                "name": self.username,
                "domain": {"id": "default", "name": "Default"},
                "password_expires_at": None,
            },
            "project": {
                "id": self.project_id,
                "name": self.project,
                "domain": {"id": "default", "name": "Default"},
            },
            "roles": [{"id": uuid.uuid4().hex, "name": "member"}],
            "catalog": [
                {"id": uuid.uuid4().hex, "type": kind, "name": name, "endpoints": endpoints(url)}
                for kind, name, url in catalog
            ],
        }

    # --- Nova -----------------------------------------------------------------------------------

    def _compute(
        self, method: str, path: str, query: dict[str, str], body: Any
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
            return self._keypairs(method, parts[1:], body)
        if parts[0] == "servers":
            return self._servers(method, parts[1:], query, body)
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

    def _keypairs(self, method: str, rest: list[str], body: Any) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and not rest:
            return 200, {"keypairs": [{"keypair": k} for k in self.keypairs.values()]}, {}
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
                "user_id": self.user_id,
                "type": pair.get("type", "ssh"),
            }
            self.keypairs[name] = keypair
            return 200, {"keypair": keypair}, {}
        if rest and rest[0] in self.keypairs:
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
        self, method: str, rest: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and not rest:
            return self._create(body["server"])
        if method == "GET" and rest in ([], ["detail"]):
            # Nova matches ``name`` as a regular expression (api-ref: "filter by server name,
            # in regular expression format").
            found = [
                s
                for s in self.servers.values()
                if not query.get("name") or re.search(query["name"], s.name)
            ]
            return 200, {"servers": [self._server_json(s) for s in found]}, {}
        server = self.servers.get(rest[0]) if rest else None
        if server is None:
            return 404, _fault("itemNotFound", 404, "Instance could not be found."), {}
        if method == "GET" and len(rest) == 1:
            return 200, {"server": self._server_json(server)}, {}
        if method == "DELETE" and len(rest) == 1:
            self._delete(server)
            return 204, None, {}
        if method == "POST" and rest[1:] == ["action"]:
            return self._action(server, body)
        return 404, _fault("itemNotFound", 404, "not found"), {}

    def _quota_refusal(self, flavor: dict[str, Any], replacing: Server | None = None) -> str:
        live = [s for s in self.servers.values() if s is not replacing]
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

    def _create(self, spec: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
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
        if key_name and key_name not in self.keypairs:
            return 400, _fault("badRequest", 400, "Invalid key_name provided."), {}
        networks = spec.get("networks") or []
        network_id = networks[0].get("uuid") if networks and isinstance(networks, list) else ""
        if network_id and not any(n["id"] == network_id for n in self.networks):
            return 400, _fault("badRequest", 400, f"Network {network_id} could not be found."), {}
        network_id = network_id or self.networks[0]["id"]
        refusal = self._quota_refusal(flavor)
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
            refusal = self._quota_refusal(flavor, replacing=server)
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
            "tenant_id": self.project_id,
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

    def add_network(self, name: str, *, external: bool = False) -> dict[str, Any]:
        """Another network of the project (after ``private`` and ``public``)."""
        network = self._network(name, external=external)
        self.networks.append(network)
        return network

    def _network(self, name: str, *, external: bool) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "name": name,
            "status": "ACTIVE",
            "admin_state_up": True,
            "shared": external,
            "router:external": external,
            "subnets": [str(uuid.uuid4())],
            "project_id": self.project_id,
            "tenant_id": self.project_id,
            "mtu": 1450,
        }

    def _network_api(
        self, method: str, path: str, query: dict[str, str], body: Any
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
            found = [n for n in self.networks if _matches(n, query)]
            return 200, {"networks": found}, {}
        if parts == ["ports"]:
            ports = [self._port_json(s) for s in self.servers.values() if s.status != "ERROR"]
            return 200, {"ports": [p for p in ports if _matches(p, query)]}, {}
        if parts[:1] == ["floatingips"]:
            return self._floating(method, parts[1:], query, body)
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
            "project_id": self.project_id,
        }

    def _floating(
        self, method: str, rest: list[str], query: dict[str, str], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "GET" and not rest:
            listed = [ip for ip in self.floating_ips.values() if _matches(ip, query)]
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
                "project_id": self.project_id,
                "tenant_id": self.project_id,
                "description": spec.get("description", ""),
            }
            self.floating_ips[ip_id] = ip
            if spec.get("port_id"):
                self._associate(ip, spec["port_id"])
            return 201, {"floatingip": ip}, {}
        found = self.floating_ips.get(rest[0]) if rest else None
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
            self._associate(ip, body["floatingip"].get("port_id"))
            return 200, {"floatingip": ip}, {}
        if method == "DELETE":
            self._associate(ip, None)
            del self.floating_ips[ip["id"]]
            return 204, None, {}
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
