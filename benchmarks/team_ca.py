"""What certificate logins (team mode's shared hosts) cost against a plain key login, through
the SSH layer (``SSHConnections``) to a real OpenSSH sshd on 127.0.0.1 that trusts the CA.

    python benchmarks/team_ca.py [--repeat R]

Times, as medians of R runs, side by side in one run: (a) a connection with an authorized key
file (standalone's registered host) opened, one command run, closed; (b) the same with a
certificate already held (the usual case: one is issued per hour); (c) signing a certificate
(the control plane's CPU work per request); (d) a connection that first gets a new key pair
and certificate (the worst case: every renewal). The Hub's token check and the HTTP round
trip to the control plane are not in (d): they happen once per certificate. Prints the
figures and the ratios to (a); exits 0 (it is a report). The machine is shared and noisy:
compare the figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jupyter_compute_servers.certificates import CertificateClient, Credentials  # noqa: E402
from jupyter_compute_servers.control_plane.ca import (  # noqa: E402
    CertificateAuthority,
    PrincipalRule,
)
from jupyter_compute_servers.ssh import KeyStore, SSHConnections  # noqa: E402
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint  # noqa: E402
from tests.sshd import start_sshd  # noqa: E402


class InProcessCA(CertificateClient):
    """The client, with the control plane's signing done here (no Hub in this benchmark)."""

    def __init__(self, ca: CertificateAuthority) -> None:
        super().__init__("http://unused/", "unused")
        self.ca = ca

    async def _issue(self) -> Credentials:
        key = asyncssh.generate_private_key("ssh-ed25519")
        issued = self.ca.sign("bench", key.export_public_key().decode())
        self._issued_at = time.time()
        cert = asyncssh.import_certificate(issued.certificate)
        return Credentials(key, cert, issued.principal, issued.valid_before)


async def median_ms(action: Callable[[], Awaitable[object]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def run(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca_key = asyncssh.generate_private_key("ssh-ed25519")
        (directory / "ca.pub").write_bytes(ca_key.export_public_key())
        user_key = asyncssh.generate_private_key("ssh-ed25519")
        identity = directory / "id_ed25519"
        identity.write_bytes(user_key.export_private_key())
        identity.chmod(0o600)
        sshd = start_sshd(
            directory,
            user_key.export_public_key().decode().strip(),
            extra_config=f"TrustedUserCAKeys {directory / 'ca.pub'}\n",
        )
        try:
            # (here the account is the one running the benchmark: the rule maps to it)
            rule = PrincipalRule(mapping=(("bench", sshd.username),), denied=frozenset())
            client = InProcessCA(CertificateAuthority(ca_key, rule))
            ssh = SSHConnections(KeyStore(directory / "keys"), certificates=client)
            common: dict[str, Any] = {
                "host": "127.0.0.1",
                "port": sshd.port,
                "host_key": sshd.host_key,
            }
            plain = SSHEndpoint(
                **common, username=sshd.username, workspace="~", identity_file=str(identity)
            )
            certified = SSHEndpoint(**common, username="", workspace="~", certificate=True)

            async def login(endpoint: SSHEndpoint) -> None:
                connection = await ssh.get("bench", endpoint)
                await connection.run("true")
                await ssh.close("bench")

            async def fresh_login() -> None:
                client.drop()
                await login(certified)

            async def sign() -> None:
                client.ca.sign("bench", user_key.export_public_key().decode())

            await login(plain)  # warm up
            await login(certified)
            rows = [
                ("(a) key file login + command", await median_ms(lambda: login(plain), repeat)),
                (
                    "(b) certificate held, login + command",
                    await median_ms(lambda: login(certified), repeat),
                ),
                ("(c) sign a certificate", await median_ms(sign, repeat)),
                ("(d) new key + certificate, login", await median_ms(fresh_login, repeat)),
            ]
        finally:
            sshd.process.terminate()
            sshd.process.wait()
    print(f"OpenSSH sshd on 127.0.0.1, median of {repeat}")
    for label, ms in rows:
        print(f"  {label:40} {ms:8.2f} ms   ratio to (a) {ms / rows[0][1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    asyncio.run(run(parser.parse_args().repeat))


if __name__ == "__main__":
    main()
