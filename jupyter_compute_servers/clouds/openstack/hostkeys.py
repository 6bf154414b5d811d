"""A VM's SSH host keys, read from its console log.

cloud-init's ``keys_to_console`` module prints the host's public keys to the serial console at
the end of the first boot (and of every boot after), between ``-----BEGIN SSH HOST KEY
KEYS-----`` and ``-----END SSH HOST KEY KEYS-----``. The console log is read over Nova's
authenticated API, not over the network the VM is reached by, so a key taken from there is not
trusted on first use: a machine in the middle of the SSH connection cannot have printed it.
"""

from __future__ import annotations

import asyncssh

FINGERPRINTS_BEGIN = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
FINGERPRINTS_END = "-----END SSH HOST KEY FINGERPRINTS-----"
BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
#: Host key types, most preferred first.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")


def host_key_from_console(output: str) -> str:
    """The preferred host key of the last complete block in ``output`` (an OpenSSH public key
    line, without comment), or "" when the console has printed none (yet)."""
    # A block still being printed (a BEGIN without its END) is not read.
    end = output.rfind(END)
    start = output.rfind(BEGIN, 0, end) if end >= 0 else -1
    if start < 0:
        return ""
    found: dict[str, str] = {}
    for line in output[start + len(BEGIN) : end].splitlines():
        words = line.strip().split()
        if len(words) < 2 or words[0] not in KEY_TYPES:
            continue
        try:
            key = asyncssh.import_public_key(f"{words[0]} {words[1]}")
        except (asyncssh.KeyImportError, ValueError):
            continue
        found.setdefault(words[0], key.export_public_key().decode().strip())
    for kind in KEY_TYPES:
        if kind in found:
            return found[kind]
    return ""


def _last_block(output: str, begin: str, end: str) -> str:
    stop = output.rfind(end)
    start = output.rfind(begin, 0, stop) if stop >= 0 else -1
    return output[start + len(begin) : stop] if start >= 0 else ""


def fingerprints_from_console(output: str) -> set[str]:
    """The SHA256 fingerprints of the last complete fingerprints block (lines such as ``256
    SHA256:abc... root@host (ED25519)``)."""
    found = set()
    for line in _last_block(output, FINGERPRINTS_BEGIN, FINGERPRINTS_END).splitlines():
        for word in line.split():
            if word.startswith("SHA256:") and len(word) > len("SHA256:"):
                found.add(word)
    return found
