"""What of a ``start_kernel`` call reaches a remote kernel: its command line and environment.

jupyter_client is the reference: a local kernel runs the spec's argv followed by the caller's
``extra_arguments`` (nbclient and papermill pass ``--HistoryManager.hist_file=:memory:``), in
the environment the caller gave (``start_kernel(env=...)``, else this process's) with the
spec's ``env`` on top. A remote kernel gets the same, except what only means something here.

The environment jupyter_client hands a provisioner is already merged: the caller's variables
on top of a copy of this process's ``os.environ`` (the Jupyter server passes
``{**os.environ, "JPY_SESSION_NAME": path}``, nbclient nothing). This machine's PATH, HOME,
virtualenv, Jupyter paths and credentials must not reach the server, and a name list cannot
tell them apart (any variable may hold a secret or a local path). So the rule is by origin:
a variable travels when the caller set it to something other than this process has, i.e.
its value differs from ``os.environ``'s (or it is not there). What the caller merely
inherited is indistinguishable from this process's own and stays here; the kernel gets the
server's own environment for it instead (its PATH, HOME...).

The spec's ``env`` (the server's own kernel spec's) goes as written, templates and all: as
jupyter_client fills ``${PATH}`` from the environment the kernel starts from, the agent fills
it from the server's (with the caller's variables on top), not from this machine's. Like
jupyter_client, the spec's variables win over the caller's.

``JPY_SESSION_NAME`` (the notebook's path, which ipykernel shows as ``__session__``) is a
path on this machine: inside the Jupyter root it is mapped into the server's workspace, as
the working directory is; outside it, it stays here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

#: What ipykernel would also refuse: Popen fails on these, and a container's ``--env K=V``
#: would misread a name holding ``=``.
ENV_NAME = re.compile(r"[^=\x00]+")
#: Set by jupyter_client for a child of this process: meaningless on a server.
LOCAL_ONLY = frozenset({"JPY_PARENT_PID"})
#: Paths on this machine that the server sees at the same place in its workspace.
WORKSPACE_PATHS = frozenset({"JPY_SESSION_NAME"})
#: Bounds that keep a launch request a reasonable size (the kernel's command line travels in
#: one agent call).
MAX_ARGUMENTS = 1000
MAX_ARGUMENT_CHARS = 64 * 1024
MAX_ENV_CHARS = 256 * 1024


class LaunchArgumentError(ValueError):
    """A ``start_kernel`` argument that cannot be passed on; the message names it."""


def extra_arguments(value: Any) -> list[str]:
    """``extra_arguments`` checked: a list of strings, each one argv element on the server
    (the agent runs the command without a shell, so nothing in them is interpreted)."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise LaunchArgumentError(
            f"extra_arguments must be a list of strings, not {type(value).__name__}."
        )
    if len(value) > MAX_ARGUMENTS:
        raise LaunchArgumentError(f"extra_arguments: more than {MAX_ARGUMENTS} arguments.")
    for index, argument in enumerate(value):
        if not isinstance(argument, str):
            raise LaunchArgumentError(
                f"extra_arguments[{index}] must be a string, not {type(argument).__name__}."
            )
        if "\x00" in argument:
            raise LaunchArgumentError(f"extra_arguments[{index}] holds a NUL character.")
    if sum(len(argument) for argument in value) > MAX_ARGUMENT_CHARS:
        raise LaunchArgumentError(f"extra_arguments: more than {MAX_ARGUMENT_CHARS} characters.")
    return list(value)


def remote_env(
    env: Mapping[str, Any] | None,
    spec_env: Mapping[str, Any],
    local: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables of ``env`` (as jupyter_client built it) that the caller set: those whose
    value differs from this process's (``local``, ``os.environ``), but not the spec's (they go
    as templates, see ``spec_templates``). ``WORKSPACE_PATHS`` are left in for
    ``workspace_env``."""
    local = os.environ if local is None else local
    chosen = {
        name: value
        for name, value in (env or {}).items()
        if name not in spec_env and name not in LOCAL_ONLY and local.get(name) != value
    }
    return _checked(chosen, "env")


def spec_templates(spec_env: Mapping[str, Any]) -> dict[str, str]:
    """The spec's variables as written, for the agent to fill in from the server's
    environment (``string.Template``, as jupyter_client does locally)."""
    return _checked(dict(spec_env), "the kernel spec's env")


def _checked(env: dict[Any, Any], field: str) -> dict[str, str]:
    total = 0
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise LaunchArgumentError(f"{field}: invalid variable name {name!r}.")
        if not isinstance(value, str):
            raise LaunchArgumentError(
                f"{field}[{name!r}] must be a string, not {type(value).__name__}."
            )
        if "\x00" in value:
            raise LaunchArgumentError(f"{field}[{name!r}] holds a NUL character.")
        total += len(name) + len(value)
    if total > MAX_ENV_CHARS:
        raise LaunchArgumentError(f"{field}: more than {MAX_ENV_CHARS} characters.")
    return env


def workspace_env(env: dict[str, str], relative_path: Any) -> dict[str, str]:
    """Take ``WORKSPACE_PATHS`` out of ``env``; answer those inside the Jupyter root as paths
    relative to it (``relative_path`` answers None for anything outside), for the agent to
    make absolute in the workspace."""
    mapped = {}
    for name in WORKSPACE_PATHS & env.keys():
        relative = relative_path(env.pop(name))
        if relative is not None:
            mapped[name] = relative
    return mapped
