"""``python -m jupyter_compute_servers.control_plane``: run the control plane as a JupyterHub
service (``c.JupyterHub.services = [{"name": "compute-control", "url": ..., "command":
[sys.executable, "-m", "jupyter_compute_servers.control_plane", "--ca-key", PATH,
"--gce-credentials-file", KEY]}]``): the SSH CA with ``--ca-key``, the Compute Engine proxy
with ``--gce-credentials-file``, or both.

``--print-ca-public-key`` prints the line hosts trust (``TrustedUserCAKeys``) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .ca import CAError, CertificateAuthority, PrincipalRule, load_or_create_key
from .errors import ControlPlaneError
from .gce import GCEProxy, proxy_from_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_compute_servers.control_plane",
        description="The compute servers control plane: the team's SSH certificate authority "
        "and its Compute Engine proxy.",
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
        help="A Hub user who may act on everyone's VMs (repeatable).",
    )
    parser.add_argument(
        "--admin-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="A Hub group whose members may act on everyone's VMs (repeatable; as "
        "c.ComputeServersApp.team_admin_groups).",
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
    parser.add_argument("--url", help="Where to listen (default: JUPYTERHUB_SERVICE_URL).")
    parser.add_argument("--print-ca-public-key", action="store_true")
    return parser.parse_args(argv)


def build_ca(args: argparse.Namespace) -> CertificateAuthority:
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


async def serve(ca: CertificateAuthority | None, gce: GCEProxy | None, url: str | None) -> None:
    from .app import listen_address, make_app

    host, port = listen_address(url)
    make_app(ca, gce=gce).listen(port, host)
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
        if not (args.ca_key or args.gce_credentials_file):
            raise ControlPlaneError("Give --ca-key, --gce-credentials-file or both.")
        ca = build_ca(args) if args.ca_key else None
        if args.print_ca_public_key:
            if ca is None:
                raise ControlPlaneError("--print-ca-public-key needs --ca-key.")
            print(ca.public_key)
            return 0
        gce = build_gce(args)
        asyncio.run(serve(ca, gce, args.url))
    except ControlPlaneError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
