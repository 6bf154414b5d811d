"""``python -m jupyter_compute_servers.control_plane``: run the control plane as a JupyterHub
service (``c.JupyterHub.services = [{"name": "compute-control", "url": ..., "command":
[sys.executable, "-m", "jupyter_compute_servers.control_plane", "--ca-key", PATH]}]``).

``--print-ca-public-key`` prints the line hosts trust (``TrustedUserCAKeys``) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .ca import CAError, CertificateAuthority, PrincipalRule, load_or_create_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_compute_servers.control_plane",
        description="The compute servers control plane: the team's SSH certificate authority.",
    )
    parser.add_argument(
        "--ca-key",
        required=True,
        help="The CA's private key file (created, 0600, when missing; only the Hub's "
        "account may read it).",
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


async def serve(ca: CertificateAuthority, url: str | None) -> None:
    from .app import listen_address, make_app

    host, port = listen_address(url)
    make_app(ca).listen(port, host)
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
        ca = build_ca(args)
        if args.print_ca_public_key:
            print(ca.public_key)
            return 0
        asyncio.run(serve(ca, args.url))
    except CAError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
