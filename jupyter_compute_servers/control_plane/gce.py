"""The control plane as an authorizing proxy of the Compute Engine API: the service account key
of the team's project lives only here, and each user's Jupyter server calls Compute Engine
through this proxy with its Hub token (``clouds/gcp/api.py``: the proxy's URL is its
``api_endpoint``, the Hub token its bearer token).

Why a proxy and not short-lived Google tokens: Compute Engine has no per-user downscoping of an
access token (IAM conditions on instances are by name or tag, not by who created them, and a
downscoped token is for Cloud Storage only), so any token the user's server could hold would
reach every VM of the project. Here each call is checked against an allow-list of method and
path (``ROUTES``) and forwarded with the service account's token only when:

- it reads the catalogue (zones, machine and accelerator types, regions): anyone;
- it inserts an instance: the proxy stamps the owner label (``OWNER_LABEL`` = the Hub user,
  overwriting what the caller sent) on the VM and its boot disk, and refuses what would reach
  beyond a new VM of one's own (an existing disk, a copy of another disk or snapshot, an
  instance template, a service account the admin did not allow);
- it acts on an instance or disk (get, start, stop, delete, resize...): the resource's owner
  label, read with a GET first, must be the caller's;
- it reads or waits for a zone operation: one this proxy started for the caller (remembered),
  or, after a restart, one whose target the caller owns.

Admins (Hub admins, ``admin_users``, members of ``admin_groups``: ``admins.AdminRule``) may act
on every resource. Anything else is a 403 with the reason, as JSON in both our shape
(``message, reason, field``) and Google's (``error.message``), so the client library shows
the reason.

Why a label: it travels with the resource in Compute Engine itself (no database of the proxy to
lose or keep in step), the proxy alone can write it (``setLabels`` is not on the allow-list),
and a label value is shown in the console and billing export. A Hub name that is not a valid
label value (upper case, '@', '.', longer than 63) is stored as ``h-`` and a hash of it; so is
any name starting with ``h-``, so two users never share a value.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .admins import AdminRule
from .errors import ControlPlaneError
from .private_files import check_private

log = logging.getLogger("jupyter_compute_servers.control_plane")

#: The label naming the Hub user a VM or disk belongs to.
OWNER_LABEL = "compute-servers-hub-user"
#: Google's public endpoint.
GOOGLE_ENDPOINT = "https://compute.googleapis.com"
#: Operations remembered per proxy (the oldest are forgotten first).
MAX_OPERATIONS = 100_000

_LABEL_VALUE = re.compile(r"[a-z0-9_-]{1,63}")
_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
_ZONE = r"[a-z]+-[a-z]+[0-9]+-[a-z]"
_OPERATION = r"[-a-z0-9_]{1,80}"

#: Query parameters the client library sends; any other (``sourceInstanceTemplate``...) is
#: refused.
QUERY_PARAMETERS = frozenset(
    {
        "$alt",
        "requestId",
        "pageToken",
        "maxResults",
        "filter",
        "orderBy",
        "returnPartialSuccess",
        "includeAllScopes",
        "queryPath",
        "variableKey",
        "discardLocalSsd",
    }
)


@dataclass(frozen=True)
class Route:
    """One allowed call: its method, its path under ``projects/<project>/`` and what is
    checked (``catalogue``, ``insert``, ``instance``, ``disk``, ``operation``)."""

    method: str
    pattern: re.Pattern[str]
    check: str


def _route(method: str, path: str, check: str) -> Route:
    return Route(method, re.compile(path), check)


_INSTANCE = rf"zones/(?P<zone>{_ZONE})/instances/(?P<name>{_NAME})"
_DISK = rf"zones/(?P<zone>{_ZONE})/disks/(?P<name>{_NAME})"
_INSTANCE_VERBS = "start|stop|suspend|resume|reset|setMachineType|setMachineResources|setScheduling"

#: Every call the gcp cloud makes; nothing else is forwarded.
ROUTES: tuple[Route, ...] = (
    _route("GET", r"zones", "catalogue"),
    _route("GET", rf"zones/{_ZONE}", "catalogue"),
    _route("GET", rf"zones/{_ZONE}/machineTypes(/{_NAME})?", "catalogue"),
    _route("GET", rf"zones/{_ZONE}/acceleratorTypes(/{_NAME})?", "catalogue"),
    _route("GET", r"aggregated/(acceleratorTypes|machineTypes)", "catalogue"),
    _route("GET", r"regions(/[a-z]+-[a-z]+[0-9]+)?", "catalogue"),
    _route("POST", rf"zones/(?P<zone>{_ZONE})/instances", "insert"),
    _route("GET", _INSTANCE, "instance"),
    _route("DELETE", _INSTANCE, "instance"),
    _route("GET", rf"{_INSTANCE}/getGuestAttributes", "instance"),
    _route("POST", rf"{_INSTANCE}/({_INSTANCE_VERBS})", "instance"),
    _route("GET", _DISK, "disk"),
    _route("DELETE", _DISK, "disk"),
    _route("POST", rf"{_DISK}/resize", "disk"),
    _route("GET", rf"zones/(?P<zone>{_ZONE})/operations/(?P<name>{_OPERATION})", "operation"),
    _route("POST", rf"zones/(?P<zone>{_ZONE})/operations/(?P<name>{_OPERATION})/wait", "operation"),
)


def owner_value(hub_user: str) -> str:
    """The owner label's value of a Hub user: the name itself when it is a valid label value,
    else ``h-`` and a hash (one value per name: a name starting ``h-`` is hashed too)."""
    if _LABEL_VALUE.fullmatch(hub_user) and not hub_user.startswith("h-"):
        return hub_user
    return "h-" + hashlib.sha256(hub_user.encode()).hexdigest()[:61]


class Refused(ControlPlaneError):
    """A call the proxy does not forward (403 unless told)."""

    def __init__(self, message: str, *, status: int = 403, field: str | None = "path") -> None:
        super().__init__(message, status=status, field=field)


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool

    @property
    def owner(self) -> str:
        return owner_value(self.name)


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


def load_service_account(path: str | Path) -> tuple[Any, str]:
    """The service account credentials and project of a key file only this account may read
    (it can create and delete every VM of the project)."""
    from ..clouds.gcp.api import _load_credentials_file

    path = Path(path)
    check_private(
        path, "The Compute Engine credentials file", "gce_credentials_file", ControlPlaneError
    )
    try:
        return _load_credentials_file(str(path))
    except (OSError, ValueError, KeyError) as e:
        raise ControlPlaneError(
            f"The Compute Engine credentials file {path} is not usable: {e}.",
            field="gce_credentials_file",
        ) from None


@dataclass
class GCEProxy:
    """The policy and the forwarding. ``credentials``: google.auth credentials of the
    service account; ``endpoint``: Compute Engine's (a fake's in tests)."""

    credentials: Any
    project: str
    endpoint: str = GOOGLE_ENDPOINT
    admin_users: frozenset[str] = frozenset()
    admin_groups: frozenset[str] = frozenset()
    #: Service accounts (emails) a user's VM may run as; none by default, since code on the VM
    #: would get that account's tokens.
    vm_service_accounts: frozenset[str] = frozenset()
    timeout: float = 180.0
    _operations: OrderedDict[tuple[str, str], str] = field(default_factory=OrderedDict)
    _token_lock: asyncio.Lock | None = None

    def caller(self, model: dict[str, Any]) -> Caller:
        admins = AdminRule(self.admin_users, self.admin_groups)
        return Caller(str(model["name"]), admins.is_admin(model))

    # --- the policy -------------------------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[Route, re.Match[str]]:
        for route in ROUTES:
            if route.method != method:
                continue
            match = route.pattern.fullmatch(path)
            if match:
                return route, match
        raise Refused(
            f"{method} projects/{self.project}/{path} is not a call the control plane "
            f"forwards (it forwards only the Compute Engine calls compute servers make)."
        )

    async def handle(
        self,
        caller: Caller,
        method: str,
        project: str,
        path: str,
        query: dict[str, str],
        body: bytes,
    ) -> Answer:
        """Check a call and forward it, or raise ``Refused``."""
        if project != self.project:
            raise Refused(
                f"The control plane acts in project {self.project}, not {project}.",
                field="project",
            )
        unknown = sorted(set(query) - QUERY_PARAMETERS)
        if unknown:
            raise Refused(f"The query parameter {unknown[0]} is not forwarded.", field=unknown[0])
        route, match = self.route(method, path)
        if route.check == "insert":
            body = self._stamp(caller, body)
        elif route.check in ("instance", "disk"):
            kind = "instances" if route.check == "instance" else "disks"
            target = f"zones/{match['zone']}/{kind}/{match['name']}"
            owned = await self._owner_check(caller, target, kind[:-1])
            # The check's own GET is the answer of a GET, and a 404 is everyone's answer (not
            # forwarding the call then: the name may be someone's new VM by now).
            if owned.status == 404 or (method == "GET" and path == target):
                return owned
        elif route.check == "operation":
            await self._operation_check(caller, match["zone"], match["name"])
        answer = await self.forward(method, path, query, body)
        if method != "GET" and answer.status == 200:
            self._remember(caller, answer)
        log.info(
            "%s %s projects/%s/%s for %s%s: %d",
            method,
            route.check,
            project,
            path,
            caller.name,
            " (admin)" if caller.admin else "",
            answer.status,
        )
        return answer

    def _stamp(self, caller: Caller, raw: bytes) -> bytes:
        """The insert's body with the caller's owner label on the VM and its new disks."""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise Refused("The body must be JSON.", status=400, field="body") from None
        if not isinstance(body, dict):
            raise Refused("The body must be a JSON object.", status=400, field="body")
        for name in ("sourceMachineImage", "sourceInstanceTemplate"):
            if name in body:
                raise Refused(f"An instance from {name} is not forwarded.", field=name)
        labels = body.get("labels") or {}
        if not isinstance(labels, dict):
            raise Refused("labels must be an object.", status=400, field="labels")
        body["labels"] = {**labels, OWNER_LABEL: caller.owner}
        disks = body.get("disks") or []
        if not isinstance(disks, list):
            raise Refused("disks must be a list.", status=400, field="disks")
        for disk in disks:
            params = disk.get("initializeParams") if isinstance(disk, dict) else None
            if not isinstance(params, dict) or "source" in disk:
                # An existing disk may be anyone's: only new disks are attached.
                raise Refused(
                    "Every disk of a new instance must be a new one (initializeParams), not an "
                    "existing disk (source).",
                    field="disks",
                )
            copies = sorted(k for k in params if k.startswith("source") and k != "sourceImage")
            copies = [k for k in copies if not k.startswith("sourceImageEncryption")]
            if copies:
                raise Refused(
                    f"A new disk from {copies[0]} (a copy of another disk) is not forwarded.",
                    field="disks",
                )
            disk_labels = params.get("labels") or {}
            if not isinstance(disk_labels, dict):
                raise Refused("a disk's labels must be an object.", status=400, field="disks")
            params["labels"] = {**disk_labels, OWNER_LABEL: caller.owner}
        for account in body.get("serviceAccounts") or []:
            email = account.get("email") if isinstance(account, dict) else None
            if email not in self.vm_service_accounts:
                raise Refused(
                    f"A VM may not run as the service account {email!r}: code on the VM would "
                    f"get its tokens. An admin allows one with --gce-vm-service-account.",
                    field="serviceAccounts",
                )
        return json.dumps(body).encode()

    async def _owner_check(self, caller: Caller, target: str, what: str) -> Answer:
        """Raise unless ``target`` is the caller's (or the caller is an admin). Answers the
        resource's GET: a 404 when it is not there."""
        answer = await self.forward("GET", target, {}, b"")
        if answer.status == 404:
            return answer
        if answer.status != 200:
            # Google's own error (quota, auth of the service account): passed on as it is.
            raise _Passed(answer)
        labels = (answer.json() or {}).get("labels") or {}
        if caller.admin or labels.get(OWNER_LABEL) == caller.owner:
            return answer
        raise Refused(
            f"The {what} {target.rsplit('/', 1)[-1]} is not {caller.name}'s: only its owner "
            f"(and admins) may use it.",
            field=what,
        )

    async def _operation_check(self, caller: Caller, zone: str, name: str) -> None:
        owner = self._operations.get((zone, name))
        if caller.admin or owner == caller.owner:
            return
        if owner is None:
            # Not started here since this proxy started (it restarted meanwhile): the
            # operation's target must be the caller's.
            answer = await self.forward("GET", f"zones/{zone}/operations/{name}", {}, b"")
            if answer.status != 200:
                raise _Passed(answer)
            target = str((answer.json() or {}).get("targetLink") or "")
            found = re.search(
                rf"/projects/{re.escape(self.project)}/(zones/{_ZONE}/(instances|disks)/{_NAME})$",
                target,
            )
            if found:
                try:
                    checked = await self._owner_check(caller, found[1], found[2][:-1])
                except Refused:
                    checked = None
                if checked is not None and checked.status == 200:
                    self._operations[(zone, name)] = caller.owner
                    return
        raise Refused(f"The operation {name} is not one of {caller.name}'s.", field="operation")

    def _remember(self, caller: Caller, answer: Answer) -> None:
        """Remember an operation the caller started, so that they alone may wait for it."""
        body = answer.json()
        if not isinstance(body, dict) or body.get("kind") != "compute#operation":
            return
        zone = str(body.get("zone") or "").rsplit("/", 1)[-1]
        name = str(body.get("name") or "")
        if zone and name:
            self._operations[(zone, name)] = caller.owner
            while len(self._operations) > MAX_OPERATIONS:
                self._operations.popitem(last=False)

    # --- forwarding -------------------------------------------------------------------------

    async def _token(self) -> str:
        """The service account's access token, refreshed (in a thread: google.auth blocks)
        when it is missing or about to expire."""
        import google.auth.transport.requests

        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if not self.credentials.valid:
                import google.auth.exceptions

                request = google.auth.transport.requests.Request()
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        None, self.credentials.refresh, request
                    )
                except google.auth.exceptions.GoogleAuthError as e:
                    log.error("The service account got no access token: %s", e)
                    raise Refused(
                        f"The control plane's service account got no access token from Google "
                        f"({type(e).__name__}); an admin should check its key and the logs.",
                        status=502,
                        field=None,
                    ) from None
            return str(self.credentials.token)

    async def forward(self, method: str, path: str, query: dict[str, str], body: bytes) -> Answer:
        url = f"{self.endpoint.rstrip('/')}/compute/v1/projects/{self.project}/{path}"
        if query:
            url += "?" + urlencode(query)
        headers = {"Authorization": f"Bearer {await self._token()}"}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body if method == "POST" else None,
            request_timeout=self.timeout,
            follow_redirects=False,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:
            raise Refused(
                f"Compute Engine could not be reached from the control plane: {response.error}.",
                status=502,
                field=None,
            )
        return Answer(
            response.code,
            response.body or b"",
            response.headers.get("Content-Type", "application/json"),
        )


class _Passed(Exception):
    """Google's answer to a check's GET, passed to the caller as it is."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def google_error_body(error: ControlPlaneError) -> dict[str, Any]:
    """A refusal in our shape and in Google's (``error``), which the client library reads."""
    return {
        "message": error.message,
        "reason": type(error).__name__,
        "field": error.field,
        "error": {
            "code": error.status,
            "message": error.message,
            "errors": [{"reason": "controlPlaneRefused", "message": error.message}],
        },
    }


def proxy_from_args(
    credentials_file: str,
    *,
    project: str = "",
    endpoint: str = "",
    admin_users: Iterable[str] = (),
    admin_groups: Iterable[str] = (),
    vm_service_accounts: Iterable[str] = (),
) -> GCEProxy:
    credentials, key_project = load_service_account(credentials_file)
    project = project or key_project
    if not project:
        raise ControlPlaneError("No Google Cloud project: give --gce-project.", field="gce_project")
    return GCEProxy(
        credentials,
        project,
        endpoint or GOOGLE_ENDPOINT,
        frozenset(admin_users),
        frozenset(admin_groups),
        frozenset(vm_service_accounts),
    )
