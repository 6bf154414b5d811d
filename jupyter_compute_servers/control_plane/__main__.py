"""``python -m jupyter_compute_servers.control_plane``: run the control plane as a JupyterHub
service (``c.JupyterHub.services = [{"name": "compute-control", "url": ..., "command":
[sys.executable, "-m", "jupyter_compute_servers.control_plane", "--ca-key", PATH,
"--gce-credentials-file", KEY]}]``): the SSH CA with ``--ca-key``, the Compute Engine proxy
with ``--gce-credentials-file``, database logins with ``--db-url``, Kubernetes tokens with
``--kubeconfig``: any of them.

``--openstack-clouds-yaml`` (with ``--openstack-cloud``) is the OpenStack service user's
clouds.yaml: users' servers then get short-lived tokens of their own projects (``openstack``).

``--print-ca-public-key`` prints the line hosts trust (``TrustedUserCAKeys``) and exits.

``--db-url`` (or the environment's ``COMPUTE_SERVERS_DB_URL``, which keeps a password off the
command line; or a URL without one, the password in PGPASSWORD or ~/.pgpass) is the team
database's owner login: the control plane migrates the database, sets its roles and policies,
and issues each user a short-lived login of their own (``logins``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from ..errors import ValidationError
from .admins import AdminRule, admin_rule
from .ca import CAError, CertificateAuthority, PrincipalRule, load_or_create_key
from .errors import ControlPlaneError
from .gce import GCEProxy, proxy_from_args
from .kubernetes import KubernetesIssuer, NamespaceRule
from .revocations import Revocations

if TYPE_CHECKING:
    from .logins import DatabaseLogins
    from .openstack import OpenStackTokens

#: Where the database owner's URL may be given instead of --db-url (not on a command line).
DB_URL_ENV = "COMPUTE_SERVERS_DB_URL"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_compute_servers.control_plane",
        description="The compute servers control plane: the team's SSH certificate authority "
        "its Compute Engine proxy and the issuer of short-lived database logins.",
    )
    parser.add_argument(
        "--ca-key",
        help="The SSH CA's private key file (created, 0600, when missing; only the Hub's "
        "account may read it). Without it: no certificates.",
    )
    parser.add_argument(
        "--gce-credentials-file",
        help="A service account key (0600, the Hub's account's) of the project compute servers "
        "run in: users' servers then call Compute Engine through the control plane, each on "
        "its own VMs only. Without it: no Compute Engine proxy.",
    )
    parser.add_argument("--gce-project", default="", help="Default: the key's project.")
    parser.add_argument(
        "--gce-endpoint", default="", help="Compute Engine's endpoint (default Google's)."
    )
    parser.add_argument(
        "--gce-vm-service-account",
        action="append",
        default=[],
        metavar="EMAIL",
        help="A service account users' VMs may run as (repeatable; default none).",
    )
    parser.add_argument(
        "--admin-user",
        action="append",
        default=[],
        metavar="HUBUSER",
        help="A Hub user who is a team admin (Hub admins are too): the team's one rule, which "
        "the user servers ask (GET api/me); acts on everyone's VMs through the proxy and gets "
        "an admin's database login (repeatable).",
    )
    parser.add_argument(
        "--admin-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="A Hub group whose members are team admins (the user servers ask; repeatable).",
    )
    parser.add_argument(
        "--db-url",
        default=os.environ.get(DB_URL_ENV),
        help=f"The team database's owner login (postgresql://...; default: ${DB_URL_ENV}). "
        "Users' servers then get short-lived logins of their own.",
    )
    parser.add_argument(
        "--db-login-validity",
        type=float,
        default=3600,
        help="Seconds an issued database login is accepted for new connections.",
    )
    parser.add_argument(
        "--validity", type=int, default=3600, help="Seconds a certificate is valid (60-86400)."
    )
    parser.add_argument(
        "--principal-template",
        default="{name}",
        help="The Unix account of a Hub user on shared hosts; {name} is the Hub user name, "
        "lower-cased (e.g. 'jh-{name}').",
    )
    parser.add_argument(
        "--principal-map",
        action="append",
        default=[],
        metavar="HUBUSER=ACCOUNT",
        help="An exception to the template (repeatable).",
    )
    parser.add_argument(
        "--deny-principal",
        action="append",
        default=None,
        metavar="ACCOUNT",
        help="An account no certificate is issued for (repeatable; default: root and system "
        "accounts).",
    )
    parser.add_argument(
        "--revocations-file",
        help="Where the revoked users and the certificates issued are kept (a 0600 JSON file; "
        "default: revocations.json beside --ca-key, else beside --gce-credentials-file or "
        "--kubeconfig, else in the working directory, the Hub's).",
    )
    parser.add_argument(
        "--kubeconfig",
        help="A kubeconfig (0600, the Hub's account's) of a cluster admin: users' servers then "
        "get short-lived tokens acting only in a namespace of their own. Without it: none.",
    )
    parser.add_argument("--kube-context", default="", help="Its context (default: current).")
    parser.add_argument(
        "--kube-namespace-template",
        default="compute-{user}",
        help="A Hub user's namespace; {user} is the Hub name (made a DNS label, with a digest "
        "when it had to be changed).",
    )
    parser.add_argument(
        "--kube-token-validity",
        type=int,
        default=3600,
        help="Seconds an issued Kubernetes token is valid (600-86400).",
    )
    parser.add_argument(
        "--kube-pod-security",
        default="baseline",
        help="Pod Security Admission's enforce level of users' namespaces (baseline, "
        "restricted or privileged; privileged lets users' pods reach their nodes).",
    )
    parser.add_argument(
        "--openstack-clouds-yaml",
        help="A clouds.yaml (0600, the Hub's account's) with the OpenStack user the control plane "
        "logs in as (a password user): users' servers then get short-lived tokens of their own "
        "projects. Without it: no OpenStack tokens.",
    )
    parser.add_argument(
        "--openstack-cloud", default="", help="The cloud's name in it (default: its only one)."
    )
    parser.add_argument(
        "--openstack-project-template",
        default="compute-{user}",
        help="A Hub user's OpenStack project; {user} is the Hub user name.",
    )
    parser.add_argument(
        "--openstack-create-projects",
        action="store_true",
        help="Make a user's missing project (and give the OpenStack user a role there); "
        "without it an admin makes each.",
    )
    parser.add_argument(
        "--openstack-role",
        default="member",
        help="The role the OpenStack user gets on the projects it makes.",
    )
    parser.add_argument("--url", help="Where to listen (default: JUPYTERHUB_SERVICE_URL).")
    parser.add_argument("--print-ca-public-key", action="store_true")
    return parser.parse_args(argv)


def build_logins(args: argparse.Namespace) -> DatabaseLogins | None:
    if not args.db_url:
        return None
    from ..db import Database
    from .logins import DatabaseLogins

    return DatabaseLogins(
        Database(args.db_url),
        validity=args.db_login_validity,
        admins=admin_rule(args.admin_user, args.admin_group),
    )


def build_revocations(args: argparse.Namespace) -> Revocations:
    path = args.revocations_file
    if not path:
        beside = (
            args.ca_key
            or args.gce_credentials_file
            or args.kubeconfig
            or args.openstack_clouds_yaml
        )
        path = os.path.join(
            os.path.dirname(os.path.abspath(beside)) if beside else ".", "revocations.json"
        )
    return Revocations(path)


def build_ca(args: argparse.Namespace) -> CertificateAuthority | None:
    if not args.ca_key:
        return None
    mapping = []
    for entry in args.principal_map:
        hub_user, sep, account = entry.partition("=")
        if not sep or not hub_user or not account:
            raise CAError(f"--principal-map {entry!r} must be HUBUSER=ACCOUNT.", field="map")
        mapping.append((hub_user, account))
    rule = PrincipalRule(template=args.principal_template, mapping=tuple(mapping))
    if args.deny_principal is not None:
        rule = PrincipalRule(rule.template, rule.mapping, frozenset(args.deny_principal))
    return CertificateAuthority(load_or_create_key(args.ca_key), rule, validity=args.validity)


def build_gce(args: argparse.Namespace) -> GCEProxy | None:
    if not args.gce_credentials_file:
        return None
    return proxy_from_args(
        args.gce_credentials_file,
        project=args.gce_project,
        endpoint=args.gce_endpoint,
        admin_users=args.admin_user,
        admin_groups=args.admin_group,
        vm_service_accounts=args.gce_vm_service_account,
    )


def build_kubernetes(args: argparse.Namespace) -> KubernetesIssuer | None:
    if not args.kubeconfig:
        return None
    return KubernetesIssuer(
        args.kubeconfig,
        context=args.kube_context,
        rule=NamespaceRule(args.kube_namespace_template),
        validity=args.kube_token_validity,
        pod_security=args.kube_pod_security,
    )


def build_openstack(args: argparse.Namespace) -> OpenStackTokens | None:
    if not args.openstack_clouds_yaml:
        return None
    from .openstack import tokens_from_args

    return tokens_from_args(
        args.openstack_clouds_yaml,
        args.openstack_cloud,
        project_template=args.openstack_project_template,
        create_projects=args.openstack_create_projects,
        role=args.openstack_role,
    )


async def serve(
    ca: CertificateAuthority | None,
    gce: GCEProxy | None,
    logins: DatabaseLogins | None,
    url: str | None,
    revocations: Revocations | None = None,
    admins: AdminRule | None = None,
    openstack: OpenStackTokens | None = None,
    kubernetes: KubernetesIssuer | None = None,
) -> None:
    from .app import listen_address, make_app

    host, port = listen_address(url)
    if kubernetes is not None:
        await kubernetes.connect()
    make_app(
        ca,
        gce=gce,
        logins=logins,
        revocations=revocations,
        admins=admins,
        openstack=openstack,
        kubernetes=kubernetes,
    ).listen(port, host)
    logging.getLogger("jupyter_compute_servers.control_plane").info(
        "Compute servers control plane on %s:%d", host, port
    )
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)s %(asctime)s %(name)s] %(message)s"
    )
    try:
        if not (
            args.ca_key
            or args.gce_credentials_file
            or args.db_url
            or args.openstack_clouds_yaml
            or args.kubeconfig
        ):
            raise ControlPlaneError(
                f"Nothing to serve: give --ca-key (SSH certificates), --gce-credentials-file "
                f"(the Compute Engine proxy), --db-url or ${DB_URL_ENV} (database logins), "
                f"--openstack-clouds-yaml (OpenStack tokens), --kubeconfig (Kubernetes tokens), "
                f"or several.",
                field="ca_key",
            )
        ca = build_ca(args)
        if args.print_ca_public_key:
            if ca is None:
                raise ControlPlaneError("--print-ca-public-key needs --ca-key.", field="ca_key")
            print(ca.public_key)
            return 0
        gce = build_gce(args)
        kubernetes = build_kubernetes(args)
        logins = build_logins(args)
        revocations = build_revocations(args)
        admins = admin_rule(args.admin_user, args.admin_group)
        openstack = build_openstack(args)
        asyncio.run(serve(ca, gce, logins, args.url, revocations, admins, openstack, kubernetes))
    except (ControlPlaneError, ValidationError) as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        # (the database cannot be reached, or refused the owner's login: its own words, which
        # name no password)
        print(f"error: the team database: {getattr(e, 'orig', None) or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
