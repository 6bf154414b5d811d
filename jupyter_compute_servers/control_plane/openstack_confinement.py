"""Proof that a Keystone token the control plane hands out reaches its own project and nothing
more of its Keystone user's: Keystone must refuse such a token the four ways of making a
credential that outlives it or names another project.

Every token issued in team mode is the one service user's (``openstack.py``), and Keystone's
default policy lets a user's token manage that user's own credentials: an **EC2 credential**
(``POST /v3/users/{id}/credentials/OS-EC2``, with the ``tenant_id`` of *any* project the user
has a role on: every Hub user's), an **application credential**, a **trust**, or a generic
**credential** (``POST /v3/credentials``, whose ``ec2`` type is an EC2 credential again). Each
would be a long-lived login to someone else's project, or one that survives the Hub user's
revocation. Only Keystone's ``policy.yaml`` can deny them (``role:admin``: the tokens carry the
member role), which the control plane cannot set; so it *tries* each with a token of the kind
it issues and serves none unless all four are refused (403). What Keystone accepts is deleted
at once (and made to expire within minutes where Keystone allows an expiry), and the refusal
names the policy lines an OpenStack admin sets.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keystoneauth1.session import Session

log = logging.getLogger("jupyter_compute_servers.control_plane")

_IDENTITY = {"service_type": "identity", "interface": "public", "version": (3, 0)}
#: The policy.yaml rule each probe needs Keystone to enforce, in the order tried.
POLICIES = (
    "identity:ec2_create_credential",
    "identity:create_application_credential",
    "identity:create_trust",
    "identity:create_credential",
)
#: What a probe leaves for the minutes a failed delete would leave it (app credentials, trusts).
PROBE_LIFETIME = 300.0
PROBE_NAME = "jupyter-compute-servers-probe"


@dataclass(frozen=True)
class Probe:
    """One way of making a credential: its policy, the request, and how to undo it."""

    policy: str
    what: str
    path: str
    body: dict[str, Any]
    #: The path that deletes what the answer made.
    delete: Callable[[dict[str, Any]], str]
    #: The ``openstack`` command that deletes it by hand (when our delete failed).
    by_hand: Callable[[dict[str, Any]], str]


def policy_lines(policies: list[str]) -> str:
    return "\n".join(f'  "{p}": "role:admin"' for p in policies)


def probes(user_id: str, project_id: str, other_project_id: str, role: str) -> list[Probe]:
    """The four attempts, as a token of ``project_id`` (``user_id``'s) would make them; the EC2
    and generic credentials name ``other_project_id``, as an attack on another project would."""
    expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + PROBE_LIFETIME))
    name = f"{PROBE_NAME}-{secrets.token_hex(4)}"
    blob = json.dumps({"access": secrets.token_hex(16), "secret": secrets.token_hex(16)})
    return [
        Probe(
            POLICIES[0],
            f"create an EC2 credential for another project ({other_project_id})",
            f"/users/{user_id}/credentials/OS-EC2",
            {"tenant_id": other_project_id},
            lambda made: f"/users/{user_id}/credentials/OS-EC2/{made['credential']['access']}",
            lambda made: f"openstack ec2 credentials delete {made['credential']['access']}",
        ),
        Probe(
            POLICIES[1],
            "create an application credential",
            f"/users/{user_id}/application_credentials",
            {
                "application_credential": {
                    "name": name,
                    "description": "a check of the compute servers control plane",
                    "expires_at": expires,
                    "unrestricted": False,
                }
            },
            lambda made: (
                f"/users/{user_id}/application_credentials/{made['application_credential']['id']}"
            ),
            lambda made: (
                f"openstack application credential delete {made['application_credential']['id']}"
            ),
        ),
        Probe(
            POLICIES[2],
            "create a trust",
            "/OS-TRUST/trusts",
            {
                "trust": {
                    "trustor_user_id": user_id,
                    "trustee_user_id": user_id,
                    "project_id": project_id,
                    "impersonation": False,
                    "roles": [{"name": role}],
                    "expires_at": expires,
                }
            },
            lambda made: f"/OS-TRUST/trusts/{made['trust']['id']}",
            lambda made: f"openstack trust delete {made['trust']['id']}",
        ),
        Probe(
            POLICIES[3],
            f"create an EC2-type credential for another project ({other_project_id})",
            "/credentials",
            {
                "credential": {
                    "type": "ec2",
                    "user_id": user_id,
                    "project_id": other_project_id,
                    "blob": blob,
                }
            },
            lambda made: f"/credentials/{made['credential']['id']}",
            lambda made: f"openstack credential delete {made['credential']['id']}",
        ),
    ]


def unconfined(
    session: Session,
    token: str,
    *,
    user_id: str,
    project_id: str,
    other_project_id: str,
    role: str,
) -> tuple[list[str], list[str]]:
    """Tries each probe as ``token``; ``(policies Keystone did not refuse, what could not be
    deleted again)``, both empty for a confined token. Blocking."""
    accepted: list[str] = []
    left: list[str] = []
    for probe in probes(user_id, project_id, other_project_id, role):
        response = session.post(
            probe.path,
            endpoint_filter=_IDENTITY,
            json=probe.body,
            headers={"X-Auth-Token": token},
            authenticated=False,
            raise_exc=False,
        )
        if response.status_code == 403:
            continue
        accepted.append(probe.policy)
        log.error(
            "Keystone answered %d, not 403, to a project token that tried to %s (%s)",
            response.status_code,
            probe.what,
            probe.policy,
        )
        if response.status_code not in (200, 201):
            continue  # (nothing made; still not the refusal asked for)
        try:
            made = response.json()
            path = probe.delete(made)
        except (ValueError, KeyError, TypeError):
            left.append(f"what Keystone made for {probe.policy} (its answer is unreadable)")
            continue
        if not _delete(session, path, token):
            left.append(probe.by_hand(made))
    return accepted, left


def names_listed(session: Session, token: str) -> bool:
    """Whether ``token`` may list the projects its user has a role on: for the service user's
    tokens, every Hub user's project name (a warning, not a refusal: names only). Blocking."""
    response = session.get(
        "/auth/projects",
        endpoint_filter=_IDENTITY,
        headers={"X-Auth-Token": token},
        authenticated=False,
        raise_exc=False,
    )
    return bool(response.status_code == 200)


#: Logged at start when a token like those issued may list the projects' names.
NAMES_LISTED = (
    "Every user's OpenStack token may list the names of all the projects the control plane's "
    "OpenStack user has a role on (everyone's: names only, nothing in them). To hide them, an "
    'OpenStack admin sets in Keystone\'s policy.yaml "identity:get_auth_projects": "role:admin" '
    'and "identity:list_user_projects": "role:admin" (the control plane needs neither).'
)


def _delete(session: Session, path: str, token: str) -> bool:
    """Deleted with the probe's own token (its owner's), else with the service user's own."""
    for headers, authenticated in (({"X-Auth-Token": token}, False), ({}, True)):
        response = session.delete(
            path,
            endpoint_filter=_IDENTITY,
            headers=headers,
            authenticated=authenticated,
            raise_exc=False,
        )
        if response.status_code in (200, 204, 404):
            return True
    log.error("Could not delete %s in Keystone", path)
    return False


def refusal(accepted: list[str], left: list[str]) -> str:
    message = (
        "Keystone lets a token of one user's project make credentials that outlive it or reach "
        "other projects (every token the control plane issues is its one OpenStack user's, "
        "which has a role on every user's project). An OpenStack admin sets in Keystone's "
        f"policy.yaml:\n{policy_lines(accepted)}\n(the tokens it issues carry no admin role)."
    )
    if left:
        message += " Not deleted again, delete by hand: " + "; ".join(left) + "."
    return message
