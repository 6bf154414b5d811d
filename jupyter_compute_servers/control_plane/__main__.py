"""``python -m jupyter_compute_servers.control_plane``: run the control plane as a JupyterHub
service (``c.JupyterHub.services = [{"name": "compute-control", "url": ..., "command":
[sys.executable, "-m", "jupyter_compute_servers.control_plane", "--ca-key", PATH]}]``).

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
from .ca import CAError, CertificateAuthority, PrincipalRule, load_or_create_key

if TYPE_CHECKING:
    from .logins import DatabaseLogins

#: Where the database owner's URL may be given instead of --db-url (not on a command line).
DB_URL_ENV = "COMPUTE_SERVERS_DB_URL"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_compute_servers.control_plane",
        description="The compute servers control plane: the team's SSH certificate authority "
        "and the issuer of short-lived database logins.",
    )
    parser.add_argument(
        "--ca-key",
        help="The CA's private key file (created, 0600, when missing; only the Hub's "
        "account may read it).",
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
        "--admin-user",
        action="append",
        default=[],
        help="A Hub user who gets an admin's database login (as team_admin_users; repeatable; "
        "Hub admins always do).",
    )
    parser.add_argument(
        "--admin-group",
        action="append",
        default=[],
        help="A Hub group whose members get an admin's database login (as team_admin_groups; "
        "repeatable).",
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


def build_logins(args: argparse.Namespace) -> DatabaseLogins | None:
    if not args.db_url:
        return None
    from ..db import Database
    from .logins import DatabaseLogins, admin_rule

    return DatabaseLogins(
        Database(args.db_url),
        validity=args.db_login_validity,
        admins=admin_rule(args.admin_user, args.admin_group),
    )


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


async def serve(
    ca: CertificateAuthority | None, logins: DatabaseLogins | None, url: str | None
) -> None:
    from .app import listen_address, make_app

    host, port = listen_address(url)
    make_app(ca, logins=logins).listen(port, host)
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
            if ca is None:
                raise CAError("--print-ca-public-key needs --ca-key.", field="ca_key")
            print(ca.public_key)
            return 0
        logins = build_logins(args)
        if ca is None and logins is None:
            raise CAError(
                f"Nothing to serve: give --ca-key (SSH certificates), --db-url or ${DB_URL_ENV} "
                f"(database logins), or both.",
                field="ca_key",
            )
        asyncio.run(serve(ca, logins, args.url))
    except (CAError, ValidationError) as e:
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
