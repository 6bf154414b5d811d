"""The team's SSH certificate authority: its key file, the rule from a Hub user to a Unix
account (the certificate's principal), and the signing of short-lived user certificates.

Why certificates: hosts trust one CA public key (sshd's ``TrustedUserCAKeys``), so a user's
Jupyter server logs in with a key pair it made itself (in memory) and a certificate that names
the one Unix account it may be and ends within the hour. Nothing long-lived and shared (a host
key, a team key) is ever in a user's server, a stolen certificate expires, and which account a
user becomes is decided here, by the admin's rule, never by what the user asks.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from .errors import ControlPlaneError
from .private_files import check_private

#: A safe Unix account name (POSIX portable, as useradd's default NAME_REGEX): lower case,
#: starts with a letter or '_', at most 32 characters.
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: Key types a certificate is signed for (no DSA, no short RSA).
ACCEPTED_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384")
MAX_VALIDITY = 24 * 3600


class CAError(ControlPlaneError):
    """A request the CA refuses: ``status`` (HTTP), ``field`` the input at fault."""


def load_or_create_key(path: str | Path) -> asyncssh.SSHKey:
    """The CA's private key from ``path``; created (ed25519, 0600, its directory 0700) when
    missing. A key file that others than its owner may read, or that is not the running
    account's, is refused: the whole team's access to the hosts rests on it."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="jupyter-compute-servers CA")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
        return key
    check_private(path, "The CA key", "ca_key", CAError)
    return asyncssh.read_private_key(path)


@dataclass(frozen=True)
class PrincipalRule:
    """Which Unix account a Hub user is on the shared hosts: ``mapping`` names exceptions,
    everyone else gets ``template`` (``{name}``: the Hub user name, lower-cased). The result
    must be a safe Unix name and not one of ``denied`` (root and system accounts by default),
    else the user gets no certificate and is told to ask the admin for a mapping."""

    template: str = "{name}"
    mapping: tuple[tuple[str, str], ...] = ()
    denied: frozenset[str] = frozenset({"root", "daemon", "bin", "sys", "sshd", "nobody"})

    def principal(self, hub_user: str) -> str:
        mapped = dict(self.mapping).get(hub_user)
        name = mapped if mapped is not None else self.template.format(name=hub_user.lower())
        if not UNIX_NAME.fullmatch(name):
            raise CAError(
                f"Hub user {hub_user!r} maps to {name!r}, which is not a safe Unix account "
                f"name (lower-case letters, digits, '_', '-'; at most 32). Ask an admin to map "
                f"it (--principal-map {hub_user}=ACCOUNT).",
                status=403,
                field="principal",
            )
        if name in self.denied:
            raise CAError(
                f"Hub user {hub_user!r} maps to the Unix account {name!r}, which no certificate "
                f"is issued for. Ask an admin to map it to an account of its own.",
                status=403,
                field="principal",
            )
        return name


@dataclass(frozen=True)
class Issued:
    certificate: str
    principal: str
    key_id: str
    serial: int
    valid_after: int
    valid_before: int

    def to_json(self) -> dict[str, Any]:
        return {
            "certificate": self.certificate,
            "principal": self.principal,
            "key_id": self.key_id,
            "serial": self.serial,
            "valid_after": self.valid_after,
            "valid_before": self.valid_before,
        }


class CertificateAuthority:
    """Signs user certificates: one principal, ``validity`` seconds, no agent or X11
    forwarding, no ~/.ssh/rc; a pty and port forwarding allowed (terminals, and the
    ``direct-tcpip`` tunnels of kernels and web apps)."""

    def __init__(
        self,
        key: asyncssh.SSHKey,
        rule: PrincipalRule | None = None,
        *,
        validity: int = 3600,
        clock: Any = time.time,
    ) -> None:
        if not 60 <= validity <= MAX_VALIDITY:
            raise CAError(f"validity must be 60 to {MAX_VALIDITY} seconds.", field="validity")
        self.key = key
        self.rule = rule or PrincipalRule()
        self.validity = validity
        self.clock = clock

    @property
    def public_key(self) -> str:
        return self.key.export_public_key().decode().strip()

    def sign(self, hub_user: str, public_key: Any, principal: Any = None) -> Issued:
        """A certificate for ``hub_user``'s key. ``principal``, if given, must be the one the
        rule gives this user: nobody gets a certificate for another's account."""
        mine = self.rule.principal(hub_user)
        if principal is not None and principal != mine:
            raise CAError(
                f"{hub_user} may only get certificates for the Unix account {mine!r}, "
                f"not {principal!r}.",
                status=403,
                field="principal",
            )
        if not isinstance(public_key, str) or len(public_key) > 4096:
            raise CAError("public_key must be an OpenSSH public key line.", field="public_key")
        try:
            user_key = asyncssh.import_public_key(public_key)
        except (asyncssh.KeyImportError, ValueError) as e:
            raise CAError(
                f"public_key is not an OpenSSH public key: {e}", field="public_key"
            ) from None
        algorithm = user_key.get_algorithm()
        if algorithm not in ACCEPTED_KEY_TYPES:
            raise CAError(
                f"public_key is a {algorithm} key; certificates are issued for "
                f"{', '.join(ACCEPTED_KEY_TYPES)} keys.",
                field="public_key",
            )
        now = int(self.clock())
        serial = secrets.randbits(63)
        key_id = f"{hub_user} as {mine} (jupyter-compute-servers #{serial})"
        # Valid from a minute ago: a host whose clock is a little behind still accepts it.
        valid_after, valid_before = now - 60, now + self.validity
        cert = self.key.generate_user_certificate(
            user_key,
            key_id,
            serial=serial,
            principals=[mine],
            valid_after=valid_after,
            valid_before=valid_before,
            permit_x11_forwarding=False,
            permit_agent_forwarding=False,
            permit_port_forwarding=True,
            permit_pty=True,
            permit_user_rc=False,
        )
        return Issued(
            cert.export_certificate().decode().strip(),
            mine,
            key_id,
            serial,
            valid_after,
            valid_before,
        )
