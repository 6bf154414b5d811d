"""Unix accounts for the tests of per-user isolation on a shared host: made with ``useradd``
(the tests run as root, here and in CI), each with a home of its own (0700), and removed with
everything they ran.

Their names carry a prefix (``jcst-``) so that no account of the machine's own is touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time

PREFIX = "jcst-"


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _end_processes(uid: int) -> None:
    """End every process running as ``uid`` (they are the tests': the account is)."""
    for _ in range(50):
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        pids.append(int(entry))
                except OSError:
                    pass
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove(name: str) -> None:
    if not name.startswith(PREFIX) or not _exists(name):
        return
    _end_processes(pwd.getpwnam(name).pw_uid)
    subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


def create(name: str) -> pwd.struct_passwd:
    """A fresh account ``name`` (a leftover of an earlier run is removed first)."""
    assert name.startswith(PREFIX), name
    remove(name)
    if os.geteuid() != 0:
        raise RuntimeError("These tests make Unix accounts: run them as root (CI does).")
    subprocess.run(
        # Password "*": none can be used, yet the account is not locked ("!"), which sshd
        # without PAM would refuse every login to.
        ["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", name],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    # A private home, as an admin makes them on a shared host: the workspaces are under it.
    os.chmod(entry.pw_dir, 0o700)
    return entry
