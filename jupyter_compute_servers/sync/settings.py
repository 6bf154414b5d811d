"""Per-server sync settings (the ``sync`` object of a server) and the sync request body.

Everything here is validated with errors that name the field at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..agent.sync_agent import SyncExcludes, sync_parts, sync_pattern
from ..errors import ValidationError
from ..models import check_no_unknown, parse_bool, parse_int, parse_object, parse_str

#: Left out of every sync (gitignore syntax; a server's own ``excludes`` come after these, so a
#: ``!pattern`` there brings one back). Caches and environments are machine-specific; version
#: control metadata must not be edited from two machines at once; and a server must never
#: write credentials, shell start-up files or Jupyter/IPython configuration (which run code)
#: into the Jupyter root.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".ipynb_checkpoints/",
    "__pycache__/",
    "*.py[cod]",
    "node_modules/",
    ".virtual_documents/",
    ".git/",
    ".hg/",
    ".svn/",
    ".DS_Store",
    ".Trash-*/",
    ".cache/",
    ".local/",
    ".config/",
    ".jupyter/",
    ".ipython/",
    ".jupyter-compute-servers/",
    "/jupyter-compute-servers/",
    ".ssh/",
    ".gnupg/",
    ".aws/",
    ".azure/",
    ".kube/",
    ".docker/",
    ".conda/",
    ".npm/",
    ".netrc",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".bash_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".wget-hsts",
    ".sudo_as_admin_successful",
)

DIRECTIONS = ("both", "push", "pull")
DEFAULT_MAX_FILE_SIZE_MB = 1024
#: A sync that would delete more than this share of the synced files on a side asks first.
DEFAULT_MAX_DELETE_PERCENT = 50
MAX_PATTERNS = 200
MAX_SERVER_ONLY = 100
SETTINGS_FIELDS = (
    "excludes",
    "server_only",
    "max_file_size_mb",
    "auto_sync_minutes",
    "before_kernel",
    "pull_executable_config",
    "max_delete_percent",
)
REQUEST_FIELDS = ("direction", "path", "confirm_deletions")


@dataclass(frozen=True)
class SyncSettings:
    """How one server syncs. ``excludes`` are gitignore lines added after DEFAULT_EXCLUDES;
    ``server_only`` are directories (relative to the workspace) that never sync either way;
    files over ``max_file_size_mb`` are skipped and reported (None: no limit);
    ``auto_sync_minutes`` syncs both ways on that schedule while the server runs (None: off);
    ``before_kernel`` pushes the notebook's directory before a kernel starts there;
    ``pull_executable_config`` are gitignore lines naming files that may come from the server
    although they could run code here (dotfiles and the like, see ``holdback.py``); a sync
    that would delete more than ``max_delete_percent`` of the synced files on a side is
    refused unless the request confirms the deletions."""

    excludes: tuple[str, ...] = ()
    server_only: tuple[str, ...] = ()
    max_file_size_mb: int | None = DEFAULT_MAX_FILE_SIZE_MB
    auto_sync_minutes: int | None = None
    before_kernel: bool = True
    pull_executable_config: tuple[str, ...] = ()
    max_delete_percent: int = DEFAULT_MAX_DELETE_PERCENT

    @property
    def patterns(self) -> list[str]:
        """Every exclude line, defaults first."""
        return [*DEFAULT_EXCLUDES, *self.excludes]

    @property
    def max_size(self) -> int | None:
        return None if self.max_file_size_mb is None else self.max_file_size_mb * 1024 * 1024

    def excludes_matcher(self) -> SyncExcludes:
        return SyncExcludes(self.patterns, self.server_only)

    def to_json(self) -> dict[str, Any]:
        return {
            "excludes": list(self.excludes),
            "server_only": list(self.server_only),
            "max_file_size_mb": self.max_file_size_mb,
            "auto_sync_minutes": self.auto_sync_minutes,
            "before_kernel": self.before_kernel,
            "pull_executable_config": list(self.pull_executable_config),
            "max_delete_percent": self.max_delete_percent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SyncSettings:
        """Settings the store wrote (already validated); defaults for what is missing."""
        if not data:
            return cls()
        return cls(
            excludes=tuple(data.get("excludes") or ()),
            server_only=tuple(data.get("server_only") or ()),
            max_file_size_mb=data.get("max_file_size_mb", DEFAULT_MAX_FILE_SIZE_MB),
            auto_sync_minutes=data.get("auto_sync_minutes"),
            before_kernel=bool(data.get("before_kernel", True)),
            pull_executable_config=tuple(data.get("pull_executable_config") or ()),
            max_delete_percent=data.get("max_delete_percent", DEFAULT_MAX_DELETE_PERCENT),
        )


def parse_tree_path(value: Any, where: str, *, allow_empty: bool = True) -> str:
    """A path inside a synced tree: relative, "/"-separated, no "." or ".." parts. Leading and
    trailing slashes are dropped ("/data/" is "data"); "" is the whole tree."""
    text = parse_str(value, where, max_length=4096).strip("/")
    if not text:
        if allow_empty:
            return ""
        raise ValidationError(f"{where} must not be empty.", field=where)
    try:
        sync_parts(text)
    except ValueError:
        raise ValidationError(
            f"{where} must be a relative path inside the tree, without '.' or '..' parts, "
            f"empty parts or NUL characters: {value!r}.",
            field=where,
        ) from None
    return text


def _parse_pattern(value: Any, where: str) -> str:
    text = parse_str(value, where, max_length=500)
    if "\n" in text or "\r" in text or "\x00" in text:
        raise ValidationError(f"{where} must be one line.", field=where)
    try:
        sync_pattern(text)
    except (ValueError, re.error) as e:
        raise ValidationError(f"{where} is not a valid pattern: {e}", field=where) from None
    return text


def _parse_list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(f"{where} must be a list.", field=where)
    if len(value) > limit:
        raise ValidationError(f"{where} may have at most {limit} entries.", field=where)
    return value


def parse_settings(value: Any, base: SyncSettings | None = None) -> SyncSettings:
    """The ``sync`` object of a create or PATCH body: fields given replace those of ``base``."""
    data = parse_object(value, "sync")
    check_no_unknown(data, SETTINGS_FIELDS, "sync")
    current = base or SyncSettings()
    changes: dict[str, Any] = {}
    if "excludes" in data:
        items = _parse_list(data["excludes"], "sync.excludes", MAX_PATTERNS)
        changes["excludes"] = tuple(
            _parse_pattern(item, f"sync.excludes[{i}]") for i, item in enumerate(items)
        )
    if "server_only" in data:
        items = _parse_list(data["server_only"], "sync.server_only", MAX_SERVER_ONLY)
        changes["server_only"] = tuple(
            parse_tree_path(item, f"sync.server_only[{i}]", allow_empty=False)
            for i, item in enumerate(items)
        )
    if "max_file_size_mb" in data:
        limit = data["max_file_size_mb"]
        changes["max_file_size_mb"] = (
            None
            if limit is None
            else parse_int(limit, "sync.max_file_size_mb", minimum=1, maximum=10_000_000)
        )
    if "auto_sync_minutes" in data:
        minutes = data["auto_sync_minutes"]
        changes["auto_sync_minutes"] = (
            None
            if minutes is None
            else parse_int(minutes, "sync.auto_sync_minutes", minimum=1, maximum=7 * 24 * 60)
        )
    if "before_kernel" in data:
        changes["before_kernel"] = parse_bool(data["before_kernel"], "sync.before_kernel")
    if "pull_executable_config" in data:
        where = "sync.pull_executable_config"
        items = _parse_list(data["pull_executable_config"], where, MAX_PATTERNS)
        changes["pull_executable_config"] = tuple(
            _parse_pattern(item, f"{where}[{i}]") for i, item in enumerate(items)
        )
    if "max_delete_percent" in data:
        changes["max_delete_percent"] = parse_int(
            data["max_delete_percent"], "sync.max_delete_percent", minimum=1, maximum=100
        )
    return SyncSettings(
        excludes=changes.get("excludes", current.excludes),
        server_only=changes.get("server_only", current.server_only),
        max_file_size_mb=changes.get("max_file_size_mb", current.max_file_size_mb),
        auto_sync_minutes=changes.get("auto_sync_minutes", current.auto_sync_minutes),
        before_kernel=changes.get("before_kernel", current.before_kernel),
        pull_executable_config=changes.get(
            "pull_executable_config", current.pull_executable_config
        ),
        max_delete_percent=changes.get("max_delete_percent", current.max_delete_percent),
    )


def parse_request(body: Any) -> tuple[str, str, bool]:
    """``(direction, path, confirm_deletions)`` from the body of ``POST servers/{id}/sync``."""
    data = parse_object(body if body is not None else {}, "body")
    check_no_unknown(data, REQUEST_FIELDS, "")
    direction = data.get("direction", "both")
    if direction not in DIRECTIONS:
        raise ValidationError(
            f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}.",
            field="direction",
        )
    confirm = parse_bool(data.get("confirm_deletions", False), "confirm_deletions")
    return direction, parse_tree_path(data.get("path", ""), "path"), confirm
