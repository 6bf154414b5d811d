"""SSH access from the user's own tools: an ssh config snippet for a running server, with a
known_hosts file holding its pinned host key (so ``ssh`` never asks to trust it)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import ConflictError
from .manager import ComputeServerManager
from .models import State
from .ssh_endpoint import SSHEndpoint


def host_alias(name: str) -> str:
    return "compute-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-").lower() or "server")


def _quoted(path: Path) -> str:
    return f'"{path}"' if " " in str(path) else str(path)


def openssh_options(key_path: Path, endpoint: SSHEndpoint, directory: str) -> list[str]:
    """OpenSSH client options (``ssh``'s, or rsync's ``-e``) that trust only the server's
    pinned host key and offer only ``key_path``: writes a one-line known_hosts file into
    ``directory``. (The benchmarks' OpenSSH and rsync baselines use it.)"""
    known_hosts = os.path.join(directory, "known_hosts")
    with open(known_hosts, "w") as f:
        f.write(f"[{endpoint.host}]:{endpoint.port} {endpoint.host_key}\n")
    options = {
        "UserKnownHostsFile": known_hosts,
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "IdentitiesOnly": "yes",
    }
    argv = ["-i", str(key_path), "-p", str(endpoint.port)]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    return argv


async def ssh_access(manager: ComputeServerManager, server_id: int) -> dict[str, Any]:
    server = manager.get_server(server_id)
    if server.state is not State.RUNNING:
        raise ConflictError(
            f"Server {server.name!r} is {server.state.value}; SSH access needs it running.",
            state=server.state.value,
        )
    endpoint = await manager.endpoint(server_id)
    directory = manager.keys.keys_dir.parent / "ssh-access" / str(server_id)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    host = endpoint.host if endpoint.port == 22 else f"[{endpoint.host}]:{endpoint.port}"
    known_hosts_line = f"{host} {endpoint.host_key}"
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(known_hosts_line + "\n")
    # The key the product logs in with: the server's own key, or for a host the user
    # registered, their identity file or (None) their ssh-agent's keys.
    identity: Path | None = manager.keys.private_key_path(server_id)
    if endpoint.identity_file:
        identity = Path(endpoint.identity_file)
    elif endpoint.use_agent:
        identity = None
    user = endpoint.username
    if endpoint.certificate and manager.ssh.certificates is not None:
        # A shared host (team mode): the user's current certificate (an hour at most) and its
        # key, 0600 in this private directory; ssh reads <IdentityFile>-cert.pub by itself.
        # Asking for SSH access again writes a fresh one.
        credentials = await manager.ssh.certificates.credentials()
        identity = directory / "id_ed25519"
        fd = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(credentials.key.export_private_key())
        (directory / "id_ed25519-cert.pub").write_bytes(
            credentials.certificate.export_certificate()
        )
        user = credentials.principal
    alias = host_alias(server.name)
    config = (
        f"Host {alias}\n"
        f"    HostName {endpoint.host}\n"
        f"    Port {endpoint.port}\n"
        f"    User {user}\n"
        + (f"    IdentityFile {_quoted(identity)}\n    IdentitiesOnly yes\n" if identity else "")
        + f"    UserKnownHostsFile {_quoted(known_hosts)}\n"
        "    StrictHostKeyChecking yes\n"
    )
    return {
        "host_alias": alias,
        "config": config,
        "known_hosts": known_hosts_line,
        "known_hosts_file": str(known_hosts),
        "identity_file": str(identity) if identity else None,
        "workspace": endpoint.workspace,
        "examples": [
            f"ssh {alias}",
            f"scp data.csv {alias}:",
            f"rsync -a project/ {alias}:project/",
        ],
    }
