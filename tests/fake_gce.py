"""A fake of Google Compute Engine at the wire: an HTTP server speaking the REST API v1 paths
and JSON that ``google.cloud.compute_v1`` uses, plus the OAuth token endpoint of a service
account key and the metadata server a VM's startup script talks to.

Its VMs are real SSH machines on this one: a started instance gets an OpenSSH sshd on its own
loopback address (127.0.0.N, the instance's natIP) and the fake's SSH port, authorizing the key
from the instance's ``ssh-keys`` metadata, with a host key kept on its "disk" (a directory that
lives as long as the instance). Like Google's guest environment, the fake publishes that host
key as the guest attribute ``hostkeys/ssh-ed25519`` and runs the instance's ``startup-script``
(the real one, with its metadata server pointed here), which reports readiness.

Tests steer it: ``operation_delay`` (slow operations), ``boot_delay`` (slow guest), ``fail``
(an HTTP error or an operation error for the next call of a kind), ``preempt`` (a spot VM taken
back), and read ``requests`` (every call, with its JSON body).
"""

from __future__ import annotations

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
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from .fake_http import Answer, Drop, FakeHTTPServer, Incoming

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
API = "https://www.googleapis.com/compute/v1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorized: bool

    @property
    def action(self) -> str:
        """``insert``, ``get``, ``start``, ``setMachineType``, ``wait``... from the path."""
        parts = self.path.split("/")
        if self.method == "POST" and parts[-1] == "instances":
            return "insert"
        if self.method == "DELETE":
            return "delete"
        if self.method == "GET" and parts[-2] in ("instances", "disks", "operations"):
            return "get"
        return parts[-1]


@dataclass
class Failure:
    """An error to answer the next ``times`` calls of ``action`` with."""

    action: str
    http_status: int = 0
    reason: str = ""
    message: str = ""
    operation_code: str = ""
    quota: dict[str, Any] | None = None
    times: int = 1
    #: For an insert: record the instance first, then fail (as if the answer got lost).
    after_creating: bool = False


@dataclass
class VM:
    zone: str
    name: str
    body: dict[str, Any]
    address: str
    disk_dir: Path
    status: str = "PROVISIONING"
    attributes: dict[str, str] = field(default_factory=dict)
    sshd: subprocess.Popen[bytes] | None = None
    script: subprocess.Popen[bytes] | None = None
    boot_id: str = ""
    last_start: str = ""
    last_stop: str = ""
    status_message: str = ""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


class FakeGCE:
    def __init__(self, workdir: Path, project: str = "test-project") -> None:
        self.workdir = workdir
        self.project = project
        self.requests: list[Request] = []
        self.vms: dict[tuple[str, str], VM] = {}
        self.disks: dict[tuple[str, str], dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.failures: list[Failure] = []
        self.operation_delay = 0.0
        self.boot_delay = 0.0
        #: Run the instance's startup script at boot (else the fake reports ready itself).
        self.run_startup_script = True
        #: Extra environment of the VMs' SSH sessions (PATH with stand-in tools...).
        self.vm_env: dict[str, str] = {}
        #: Extra environment of the startup script (PATH with a stand-in apt-get...).
        self.script_env: dict[str, str] = {"JCS_PYTHON_CANDIDATES": sys.executable}
        self.zones = {
            "us-central1-a": "us-central1",
            "us-central1-b": "us-central1",
            "us-central1-c": "us-central1",
            "us-central1-f": "us-central1",
            "europe-west4-a": "europe-west4",
        }
        self.accelerators: dict[str, dict[str, int]] = {
            "nvidia-tesla-t4": {"us-central1-a": 4, "us-central1-b": 4, "europe-west4-a": 4},
            "nvidia-tesla-v100": {"us-central1-a": 8},
            "nvidia-l4": {"us-central1-a": 8, "us-central1-b": 8},
            "nvidia-tesla-a100": {"us-central1-a": 16},
            "nvidia-h100-80gb": {"us-central1-a": 8},
        }
        #: Service account keys whose signatures the token endpoint accepts (PEM public keys).
        self.trusted_keys: dict[str, bytes] = {}
        self.tokens: set[str] = set()
        self.require_auth = True
        #: Hold calls of this action (before anything happens) until ``release`` is set; then
        #: answer them, or with ``discard_held`` drop them unanswered and undone (as if they
        #: never left a process that died meanwhile).
        self.hold_action = ""
        self.held = threading.Event()
        self.release = threading.Event()
        self.discard_held = False
        self._lock = threading.RLock()
        self._closed = False
        self._addresses = itertools.count(2)
        self._ops = itertools.count(1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.ssh_port = s.getsockname()[1]
        self._http = FakeHTTPServer(self._answer)
        self.url = self._http.url

    # --- running ------------------------------------------------------------------------------

    def start(self) -> FakeGCE:
        self._http.start()
        return self

    def close(self) -> None:
        self._http.close()
        with self._lock:
            # A guest still booting must not start an sshd after this (nobody would end it).
            self._closed = True
            for vm in self.vms.values():
                self._halt(vm)

    # --- what tests use -----------------------------------------------------------------------

    def service_account_file(self, path: Path, *, trusted: bool = True) -> Path:
        """A service account key file whose token endpoint is this fake."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        key_id = secrets.token_hex(8)
        email = f"jupyter@{self.project}.iam.gserviceaccount.com"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": self.project,
                    "private_key_id": key_id,
                    "private_key": pem,
                    "client_email": email,
                    "client_id": "1234567890",
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        if trusted:
            self.trusted_keys[key_id] = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return path

    def fail(self, action: str, **kwargs: Any) -> None:
        """Answer the next call of ``action`` (insert, start, ...) with an error."""
        self.failures.append(Failure(action, **kwargs))

    def calls(self, action: str) -> list[Request]:
        return [r for r in self.requests if r.action == action and "/compute/v1/" in r.path]

    def vm(self, name: str | None = None) -> VM:
        with self._lock:
            vms = [v for v in self.vms.values() if name is None or v.name == name]
            assert len(vms) == 1, f"{len(vms)} VMs match {name!r}"
            return vms[0]

    def preempt(self, name: str | None = None) -> None:
        """Google takes a spot VM back: it stops at once (its disk is kept)."""
        vm = self.vm(name)
        with self._lock:
            self._halt(vm)
            vm.status = "TERMINATED"
            vm.last_stop = _now()

    # --- the HTTP side --------------------------------------------------------------------------

    def _answer(self, request: Incoming) -> Answer:
        status, body, content_type = self._route(
            request.method, request.path, request.query, request.raw, request.headers
        )
        return Answer(status, body, {"Content-Type": content_type})

    def _route(
        self, method: str, path: str, query: dict[str, str], raw: bytes, headers: dict[str, str]
    ) -> tuple[int, Any, str]:
        if path == "/token":
            return self._token(raw)
        if path.startswith("/vm/"):
            return self._metadata_server(method, path, raw)
        body = json.loads(raw) if raw else None
        authorized = self._authorized(headers.get("authorization", ""))
        with self._lock:
            self.requests.append(Request(method, path, query, body, authorized))
        if self.require_auth and not authorized:
            return _error(401, "Request had invalid authentication credentials.", "authError")
        if self.hold_action and self.requests[-1].action == self.hold_action:
            self.held.set()
            self.release.wait(60)
            if self.discard_held:
                raise Drop()
        prefix = f"/compute/v1/projects/{self.project}/"
        if not path.startswith(prefix):
            return _error(404, f"The resource '{path}' was not found", "notFound")
        rest = path[len(prefix) :].split("/")
        with self._lock:
            failure = self._failure_for(Request(method, path, query, body, True).action)
            if failure is not None and failure.http_status and not failure.after_creating:
                return _error(failure.http_status, failure.message, failure.reason)
            return self._api(method, rest, query, body, failure)

    def _failure_for(self, action: str) -> Failure | None:
        for failure in self.failures:
            if failure.action == action:
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.remove(failure)
                return failure
        return None

    def _authorized(self, header: str) -> bool:
        import google.auth.jwt

        if not header.startswith("Bearer "):
            return False
        token = header[len("Bearer ") :]
        if token in self.tokens:
            return True
        # A self-signed JWT (service account credentials may skip the token endpoint).
        try:
            key_id = google.auth.jwt.decode_header(token).get("kid")
            return key_id in self.trusted_keys and bool(
                google.auth.jwt.decode(token, certs=self.trusted_keys[key_id], verify=True)
            )
        except Exception:
            return False

    def _token(self, raw: bytes) -> tuple[int, Any, str]:
        import google.auth.jwt

        form = dict(urllib.parse.parse_qsl(raw.decode()))
        assertion = form.get("assertion", "")
        try:
            key_id = google.auth.jwt.decode_header(assertion).get("kid")
            google.auth.jwt.decode(assertion, certs=self.trusted_keys[key_id], verify=True)
        except Exception:
            return (
                400,
                {"error": "invalid_grant", "error_description": "Invalid JWT."},
                "application/json",
            )
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return (
            200,
            {"access_token": token, "expires_in": 3600, "token_type": "Bearer"},
            "application/json",
        )

    # --- Compute Engine -----------------------------------------------------------------------

    def _api(
        self,
        method: str,
        rest: list[str],
        query: dict[str, str],
        body: Any,
        failure: Failure | None,
    ) -> tuple[int, Any, str]:
        json_type = "application/json"
        if rest == ["zones"]:
            # Two zones a page, as Google pages long lists (the client follows nextPageToken).
            start = int(query.get("pageToken") or 0)
            page: dict[str, Any] = {
                "items": [self._zone_json(z) for z in list(self.zones)[start : start + 2]]
            }
            if start + 2 < len(self.zones):
                page["nextPageToken"] = str(start + 2)
            return 200, page, json_type
        if rest == ["aggregated", "acceleratorTypes"]:
            items: dict[str, Any] = {}
            for gpu, zones in self.accelerators.items():
                for zone, count in zones.items():
                    items.setdefault(f"zones/{zone}", {"acceleratorTypes": []})[
                        "acceleratorTypes"
                    ].append(
                        {
                            "name": gpu,
                            "zone": f"{API}/projects/{self.project}/zones/{zone}",
                            "maximumCardsPerInstance": count,
                        }
                    )
            return 200, {"items": items}, json_type
        if len(rest) < 3 or rest[0] != "zones":
            return _error(404, "not found", "notFound")
        zone, collection = rest[1], rest[2]
        if zone not in self.zones:
            return _error(
                400, f"Invalid value for field 'zone': '{zone}'. Unknown zone.", "invalid"
            )
        if collection == "operations":
            operation = self.operations.get(rest[3])
            if operation is None:
                return _error(404, f"The resource 'operations/{rest[3]}' was not found", "notFound")
            if rest[-1] == "wait":
                deadline = time.monotonic() + 1.0
                while not self._settle(operation) and time.monotonic() < deadline:
                    self._lock.release()
                    try:
                        time.sleep(0.01)
                    finally:
                        self._lock.acquire()
            self._settle(operation)
            return 200, self._operation_json(operation), json_type
        if collection == "disks":
            disk = self.disks.get((zone, rest[3]))
            if disk is None:
                return _error(404, f"The resource 'disks/{rest[3]}' was not found", "notFound")
            if method == "GET":
                return 200, disk, json_type
            if method == "DELETE":
                del self.disks[(zone, rest[3])]
                return 200, self._operation(zone, "delete", rest[3], lambda: None), json_type
            if rest[-1] == "resize":
                size = int(body["sizeGb"])
                if size <= int(disk["sizeGb"]):
                    return _error(400, "The disk cannot shrink.", "invalid")

                def grow() -> None:
                    disk["sizeGb"] = str(size)

                return 200, self._operation(zone, "resize", rest[3], grow), json_type
        if collection != "instances":
            return _error(404, "not found", "notFound")
        if len(rest) == 3 and method == "POST":
            return self._insert(zone, body, failure)
        name = rest[3]
        vm = self.vms.get((zone, name))
        if vm is None:
            return _error(
                404,
                f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' was "
                f"not found",
                "notFound",
            )
        if len(rest) == 4:
            if method == "GET":
                return 200, self._instance_json(vm), json_type
            if method == "DELETE":
                return (
                    200,
                    self._operation(zone, "delete", name, lambda: self._delete(vm)),
                    json_type,
                )
        verb = rest[4]
        if verb == "getGuestAttributes":
            path = query.get("queryPath", "")
            items = [
                {"namespace": key.split("/")[0], "key": key.split("/", 1)[1], "value": value}
                for key, value in sorted(vm.attributes.items())
                if key.startswith(path)
            ]
            if not items:
                return _error(404, "The resource guest attributes was not found", "notFound")
            return 200, {"queryPath": path, "queryValue": {"items": items}}, json_type
        return self._verb(vm, verb, body, failure)

    def _insert(
        self, zone: str, body: dict[str, Any], failure: Failure | None
    ) -> tuple[int, Any, str]:
        name = body["name"]
        if (zone, name) in self.vms:
            return _error(409, f"The resource '{name}' already exists", "alreadyExists")
        disk_dir = self.workdir / "vms" / f"{zone}-{name}"
        (disk_dir / "home").mkdir(parents=True)
        vm = VM(zone, name, body, f"127.0.0.{next(self._addresses)}", disk_dir)
        self.vms[(zone, name)] = vm
        boot = body["disks"][0]
        disk_name = boot["initializeParams"].get("diskName", name)
        self.disks[(zone, disk_name)] = {
            "name": disk_name,
            "sizeGb": str(boot["initializeParams"]["diskSizeGb"]),
            "type": boot["initializeParams"]["diskType"],
            "users": [self._instance_url(vm)],
            "labels": boot["initializeParams"].get("labels", {}),
        }
        vm.body["disks"][0]["source"] = (
            f"{API}/projects/{self.project}/zones/{zone}/disks/{disk_name}"
        )
        if failure is not None and failure.after_creating:
            self._operation(zone, "insert", name, lambda: self._boot(vm))
            raise Drop()
        if failure is not None and failure.operation_code:
            # Compute Engine gives up on the insert: nothing is left of it.
            self.vms.pop((zone, name))
            self.disks.pop((zone, disk_name))
            shutil.rmtree(disk_dir, ignore_errors=True)
            return 200, self._failed_operation(zone, "insert", name, failure), "application/json"
        return (
            200,
            self._operation(zone, "insert", name, lambda: self._boot(vm)),
            "application/json",
        )

    def _verb(self, vm: VM, verb: str, body: Any, failure: Failure | None) -> tuple[int, Any, str]:
        zone, name = vm.zone, vm.name
        if failure is not None and failure.operation_code:
            return 200, self._failed_operation(zone, verb, name, failure), "application/json"
        gpus = bool(vm.body.get("guestAccelerators")) or vm.body["machineType"].split("/")[
            -1
        ].startswith(("g2-", "a2-", "a3-"))
        if verb == "start":
            if vm.status not in ("TERMINATED", "RUNNING"):
                return _error(400, f"The instance is {vm.status}.", "resourceNotReady")
            return (
                200,
                self._operation(zone, "start", name, lambda: self._boot(vm)),
                "application/json",
            )
        if verb == "stop":
            return (
                200,
                self._operation(zone, "stop", name, lambda: self._power_off(vm, "TERMINATED")),
                "application/json",
            )
        if verb == "suspend":
            if gpus:
                return _error(
                    400, "Instances with guest accelerators do not support suspend.", "badRequest"
                )
            if vm.status != "RUNNING":
                return _error(400, f"The instance is {vm.status}.", "resourceNotReady")
            return (
                200,
                self._operation(zone, "suspend", name, lambda: self._power_off(vm, "SUSPENDED")),
                "application/json",
            )
        if verb == "resume":
            if vm.status != "SUSPENDED":
                return _error(400, f"The instance is {vm.status}.", "resourceNotReady")
            return (
                200,
                self._operation(zone, "resume", name, lambda: self._boot(vm, resume=True)),
                "application/json",
            )
        if verb == "reset":
            if vm.status != "RUNNING":
                return _error(400, f"The instance is {vm.status}.", "resourceNotReady")

            def reset() -> None:
                self._halt(vm)
                vm.status = "STAGING"
                self._boot(vm)

            return 200, self._operation(zone, "reset", name, reset), "application/json"
        if verb in ("setMachineType", "setMachineResources", "setScheduling"):
            if vm.status != "TERMINATED":
                return _error(
                    400,
                    f"The resource 'projects/{self.project}/zones/{zone}/instances/{name}' is not "
                    f"ready: it must be stopped ({verb}).",
                    "resourceNotReady",
                )

            def change() -> None:
                if verb == "setMachineType":
                    vm.body["machineType"] = body["machineType"]
                elif verb == "setMachineResources":
                    vm.body["guestAccelerators"] = body.get("guestAccelerators", [])
                else:
                    vm.body["scheduling"] = body

            return 200, self._operation(zone, verb, name, change), "application/json"
        return _error(400, f"Unknown method {verb}", "invalid")

    # --- operations ---------------------------------------------------------------------------

    def _operation(self, zone: str, kind: str, target: str, effect: Any) -> dict[str, Any]:
        name = f"operation-{next(self._ops)}-{kind}"
        operation = {
            "name": name,
            "zone": zone,
            "operationType": kind,
            "targetLink": f"{API}/projects/{self.project}/zones/{zone}/instances/{target}",
            "done_at": time.monotonic() + self.operation_delay,
            "effect": effect,
            "status": "RUNNING",
        }
        self.operations[name] = operation
        self._settle(operation)
        return self._operation_json(operation)

    def _failed_operation(
        self, zone: str, kind: str, target: str, failure: Failure
    ) -> dict[str, Any]:
        operation = self._operation(zone, kind, target, lambda: None)
        stored = self.operations[operation["name"]]
        error: dict[str, Any] = {"code": failure.operation_code, "message": failure.message}
        if failure.quota:
            error["errorDetails"] = [{"quotaInfo": failure.quota}]
        stored["error"] = {"errors": [error]}
        stored["httpErrorStatusCode"] = failure.http_status or 403
        return self._operation_json(stored)

    def _settle(self, operation: dict[str, Any]) -> bool:
        if operation["status"] == "DONE":
            return True
        if time.monotonic() < operation["done_at"]:
            return False
        operation["status"] = "DONE"
        if "error" not in operation:
            operation["effect"]()
        return True

    def _operation_json(self, operation: dict[str, Any]) -> dict[str, Any]:
        answer = {
            "kind": "compute#operation",
            "name": operation["name"],
            "zone": f"{API}/projects/{self.project}/zones/{operation['zone']}",
            "operationType": operation["operationType"],
            "targetLink": operation["targetLink"],
            "status": operation["status"],
            "progress": 100 if operation["status"] == "DONE" else 0,
        }
        for key in ("error", "httpErrorStatusCode"):
            if key in operation:
                answer[key] = operation[key]
        return answer

    # --- the VMs ------------------------------------------------------------------------------

    def _instance_url(self, vm: VM) -> str:
        return f"{API}/projects/{self.project}/zones/{vm.zone}/instances/{vm.name}"

    def _zone_json(self, zone: str) -> dict[str, Any]:
        return {
            "name": zone,
            "region": f"{API}/projects/{self.project}/regions/{self.zones[zone]}",
            "status": "UP",
        }

    def _instance_json(self, vm: VM) -> dict[str, Any]:
        body = json.loads(json.dumps(vm.body))
        body.pop("metadata", None)
        for interface in body.get("networkInterfaces", []):
            interface["networkIP"] = vm.address
            for access in interface.get("accessConfigs", []):
                access["natIP"] = vm.address
        body.update(
            kind="compute#instance",
            id="123456789",
            zone=f"{API}/projects/{self.project}/zones/{vm.zone}",
            status=vm.status,
            selfLink=self._instance_url(vm),
            machineType=f"{API}/projects/{self.project}/zones/{vm.zone}/machineTypes/"
            + vm.body["machineType"].split("/")[-1],
        )
        if vm.last_start:
            body["lastStartTimestamp"] = vm.last_start
        if vm.last_stop:
            body["lastStopTimestamp"] = vm.last_stop
        if vm.status_message:
            body["statusMessage"] = vm.status_message
        return body

    def metadata(self, vm: VM) -> dict[str, str]:
        return {item["key"]: item["value"] for item in vm.body["metadata"]["items"]}

    def _boot(self, vm: VM, *, resume: bool = False) -> None:
        """The VM powers on: RUNNING now; sshd, host key and startup script in the background."""
        if vm.status == "RUNNING":
            return
        vm.status = "RUNNING"
        vm.last_start = _now()
        if not resume:
            vm.boot_id = secrets.token_hex(8)
        threading.Thread(target=self._guest, args=(vm, resume), daemon=True).start()

    def _guest(self, vm: VM, resume: bool) -> None:
        """What the guest does as it boots: sshd up, host key published, startup script."""
        time.sleep(self.boot_delay)
        with self._lock:
            if self._closed or vm.status != "RUNNING" or (vm.zone, vm.name) not in self.vms:
                return
            if vm.sshd is not None and vm.sshd.poll() is None:
                return  # an earlier boot of this run got here first
            metadata = self.metadata(vm)
            vm.sshd = _start_sshd(vm, self.ssh_port, metadata.get("ssh-keys", ""), self.vm_env)
            host_key = (vm.disk_dir / "ssh_host_ed25519_key.pub").read_text().split()
            vm.attributes["hostkeys/ssh-ed25519"] = host_key[1]
            if resume:
                return
        script = metadata.get("startup-script", "")
        if self.run_startup_script and script:
            path = vm.disk_dir / "startup-script"
            path.write_text(script)
            process = subprocess.Popen(
                ["bash", str(path)],
                env={
                    **os.environ,
                    "JCS_METADATA_URL": f"{self.url}/vm/{vm.zone}/{vm.name}"
                    "/computeMetadata/v1/instance",
                    "JCS_BOOT_ID": vm.boot_id,
                    **self.script_env,
                },
                stdout=subprocess.DEVNULL,
                stderr=open(vm.disk_dir / "startup-script.log", "ab"),  # noqa: SIM115
            )
            vm.script = process
            process.wait()
        else:
            with self._lock:
                vm.attributes["jupyter-compute-servers/python"] = sys.executable
                vm.attributes["jupyter-compute-servers/ready"] = vm.boot_id

    def _metadata_server(self, method: str, path: str, raw: bytes) -> tuple[int, Any, str]:
        """The VM's view: /vm/<zone>/<name>/computeMetadata/v1/instance/..."""
        match = re.match(r"^/vm/([^/]+)/([^/]+)/computeMetadata/v1/instance/(.*)$", path)
        if not match:
            return 404, b"not found", "text/plain"
        zone, name, rest = match.groups()
        with self._lock:
            vm = self.vms.get((zone, name))
            if vm is None:
                return 404, b"no such VM", "text/plain"
            if rest.startswith("attributes/") and method == "GET":
                value = self.metadata(vm).get(rest[len("attributes/") :])
                if value is None:
                    return 404, b"not found", "text/plain"
                return 200, value.encode(), "application/text"
            if rest.startswith("guest-attributes/") and method == "PUT":
                key = rest[len("guest-attributes/") :]
                vm.attributes[key] = raw.decode()
                return 200, b"", "text/plain"
        return 404, b"not found", "text/plain"

    def vanish(self) -> None:
        """Every VM is gone, as if deleted outside the API (its guest ends with it)."""
        with self._lock:
            for vm in self.vms.values():
                self._halt(vm)
            self.vms.clear()

    def _halt(self, vm: VM) -> None:
        with self._lock:  # not while a booting guest is starting its sshd
            self._halt_guest(vm)

    def _halt_guest(self, vm: VM) -> None:
        for process in (vm.sshd, vm.script):
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()  # a power cut: nothing of the guest outlives its VM
                    process.wait(5)
        vm.sshd = vm.script = None

    def _power_off(self, vm: VM, status: str) -> None:
        self._halt(vm)
        vm.status = status
        vm.last_stop = _now()

    def _delete(self, vm: VM) -> None:
        self._halt(vm)
        self.vms.pop((vm.zone, vm.name), None)
        for key, disk in list(self.disks.items()):
            if self._instance_url(vm) in disk["users"]:
                disk["users"].remove(self._instance_url(vm))
                if vm.body["disks"][0].get("autoDelete"):
                    del self.disks[key]
        shutil.rmtree(vm.disk_dir, ignore_errors=True)


def _error(status: int, message: str, reason: str) -> tuple[int, Any, str]:
    domain = "usageLimits" if reason in ("quotaExceeded", "rateLimitExceeded") else "global"
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
        }
    }
    return status, body, "application/json"


class Guest(Protocol):
    """What a guest's sshd needs of its machine (a GCE VM here, a Nova server in the OpenStack
    fake): its address and its disk."""

    address: str
    disk_dir: Path


def _start_sshd(
    vm: Guest, port: int, ssh_keys: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """OpenSSH's sshd on the VM's address, with the VM's (persistent) host key and the keys of
    its ssh-keys metadata ("user:key" lines)."""
    os.makedirs("/run/sshd", exist_ok=True)
    directory = vm.disk_dir
    host_key_path = directory / "ssh_host_ed25519_key"
    if not host_key_path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        host_key_path.write_bytes(key.export_private_key())
        host_key_path.chmod(0o600)
        (directory / "ssh_host_ed25519_key.pub").write_bytes(key.export_public_key())
    authorized = directory / "authorized_keys"
    authorized.write_text(
        "".join(line.split(":", 1)[1] + "\n" for line in ssh_keys.splitlines() if ":" in line)
    )
    session_env = {"SHLVL": "1", "HOME": str(directory / "home"), **env}
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress {vm.address}\nHostKey {host_key_path}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile {directory / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nAllowTcpForwarding yes\nPermitRootLogin yes\n"
        f"SetEnv {' '.join(f'{k}={v}' for k, v in session_env.items())}\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stderr=open(directory / "sshd.log", "ab"),  # noqa: SIM115 - sshd keeps writing to it
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((vm.address, port), timeout=0.5).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((directory / "sshd.log").read_text()) from None
            time.sleep(0.02)
