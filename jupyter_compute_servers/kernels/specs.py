"""Kernel specs for compute servers: ``compute-<server id>-<kernel>`` for each kernel found on
each server, written as ordinary kernel spec directories so every kernel spec manager (Jupyter
Server's, ``jupyter console``'s, nbclient's) finds them.

The kernels of a server are asked for on the server once it runs (``jupyter kernelspec list``
there) and cached in the store, so the specs exist while it is off. Before the first answer a
server offers the ipykernel of its Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..db.database import without_password
from ..errors import NotFoundError
from ..images.runtime import container_for
from ..store import ServerRecord

if TYPE_CHECKING:
    from ..manager import ComputeServerManager

PROVISIONER_NAME = "compute-server"
SPEC_PREFIX = "compute-"
KERNEL_NAME = re.compile(r"^[a-z0-9._-]{1,64}$", re.IGNORECASE)
MAX_SPECS_PER_SERVER = 50

#: What a server offers before its kernels were discovered: the ipykernel of its Python.
DEFAULT_SPECS: dict[str, dict[str, Any]] = {
    "python3": {
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": True},
    }
}

log = logging.getLogger(__name__)


def spec_name(server_id: int, kernel: str) -> str:
    return f"{SPEC_PREFIX}{server_id}-{kernel}".lower()


def clean_remote_spec(spec: Any) -> dict[str, Any] | None:
    """The parts of a kernel spec found on a server that we carry over, or None if unusable."""
    if not isinstance(spec, dict):
        return None
    argv = spec.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return None
    metadata: dict[str, Any] = spec["metadata"] if isinstance(spec.get("metadata"), dict) else {}
    provisioner = metadata.get("kernel_provisioner")
    if isinstance(provisioner, dict) and provisioner.get("provisioner_name") == PROVISIONER_NAME:
        return None  # one of ours, seen on a server that shares this machine's Jupyter paths
    env: dict[str, Any] = spec["env"] if isinstance(spec.get("env"), dict) else {}
    interrupt_mode = spec.get("interrupt_mode")
    cleaned: dict[str, Any] = {
        "argv": argv[:100],
        "display_name": str(spec.get("display_name") or "")[:200],
        "language": str(spec.get("language") or "")[:50],
        "env": {str(k): str(v) for k, v in list(env.items())[:100]},
        "metadata": {"debugger": bool(metadata.get("debugger", False))},
    }
    if interrupt_mode in ("signal", "message"):
        cleaned["interrupt_mode"] = interrupt_mode
    return cleaned


def server_logo(server: ServerRecord) -> str:
    """A launcher icon: the server's colour with its initials, so its kernels stand out."""
    words = re.findall(r"[A-Za-z0-9]+", server.name) or ["?"]
    initials = "".join(w[0] for w in words[:2]).upper() if len(words) > 1 else words[0][:2]
    color = server.color if re.fullmatch(r"#[0-9a-fA-F]{6}", server.color) else "#616161"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<rect x="2" y="2" width="60" height="60" rx="12" fill="{color}"/>'
        '<rect x="12" y="42" width="40" height="8" rx="2" fill="#ffffff" opacity="0.85"/>'
        '<circle cx="18" cy="46" r="2" fill="' + color + '"/>'
        '<text x="32" y="34" font-family="sans-serif" font-size="22" font-weight="bold" '
        f'fill="#ffffff" text-anchor="middle">{escape(initials)}</text>'
        "</svg>"
    )


def build_spec(
    server: ServerRecord, kernel: str, remote: dict[str, Any], data_dir: str, db_url: str
) -> dict[str, Any]:
    display = remote.get("display_name") or kernel
    spec: dict[str, Any] = {
        "argv": remote["argv"],
        "display_name": f"{display} on {server.name}",
        "language": remote.get("language", ""),
        "env": remote.get("env", {}),
        "metadata": {
            **remote.get("metadata", {}),
            "kernel_provisioner": {
                "provisioner_name": PROVISIONER_NAME,
                "config": {
                    "server_id": server.id,
                    "kernel": kernel,
                    "data_dir": data_dir,
                    "db_url": db_url,
                },
            },
            "compute_server": {
                "id": server.id,
                "name": server.name,
                "color": server.color,
                "cloud": server.cloud,
                "kernel": kernel,
                "kernel_display_name": display,
            },
        },
    }
    if "interrupt_mode" in remote:
        spec["interrupt_mode"] = remote["interrupt_mode"]
    return spec


def _write_if_changed(path: Path, text: str) -> bool:
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


class KernelSpecPublisher:
    """Keeps ``kernels_dir`` holding exactly one spec per kernel of each server in the store."""

    def __init__(self, manager: ComputeServerManager, kernels_dir: str, data_dir: str) -> None:
        self.manager = manager
        self.kernels_dir = Path(kernels_dir)
        self.data_dir = data_dir
        self._tasks: set[asyncio.Task[Any]] = set()

    def _owned(self, spec_dir: Path) -> bool:
        """Whether a ``compute-*`` spec directory belongs to this store (another Jupyter with
        another store may share the kernels directory)."""
        try:
            spec = json.loads((spec_dir / "kernel.json").read_text())
            config = spec["metadata"]["kernel_provisioner"]["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return os.path.realpath(str(config.get("data_dir", ""))) == os.path.realpath(self.data_dir)

    def wanted(
        self, server_id: int | None = None
    ) -> dict[str, tuple[ServerRecord, str, dict[str, Any]]]:
        """The specs the store calls for: every server's, or one server's (none if it is
        gone)."""
        store = self.manager.store
        if server_id is None:
            servers = store.servers()
        else:
            try:
                servers = [store.get(server_id)]
            except NotFoundError:
                servers = []
        specs = {}
        for server in servers:
            for kernel, remote in (server.kernel_specs or DEFAULT_SPECS).items():
                specs[spec_name(server.id, kernel)] = (server, kernel, remote)
        return specs

    def sync(self, server_id: int | None = None) -> bool:
        """Write the specs the store calls for and remove ours it no longer does, of every
        server or of one (an event names one: the others' files are not read again, so a
        create costs the same with 500 servers as with one); answers whether anything
        changed."""
        self.kernels_dir.mkdir(parents=True, exist_ok=True)
        wanted = self.wanted(server_id)
        # ``compute-12-`` never matches server 1's ``compute-1-`` prefix.
        prefix = SPEC_PREFIX if server_id is None else spec_name(server_id, "")
        changed = False
        for spec_dir in self.kernels_dir.glob(f"{prefix}*"):
            if spec_dir.name not in wanted and self._owned(spec_dir):
                shutil.rmtree(spec_dir, ignore_errors=True)
                changed = True
        # Kernel specs are readable files: the database's password stays in the configuration.
        db_url = without_password(self.manager.store.url)
        for name, (server, kernel, remote) in wanted.items():
            spec_dir = self.kernels_dir / name
            spec_dir.mkdir(exist_ok=True)
            spec = build_spec(server, kernel, remote, self.data_dir, db_url)
            changed |= _write_if_changed(spec_dir / "kernel.json", json.dumps(spec, indent=1))
            changed |= _write_if_changed(spec_dir / "logo-svg.svg", server_logo(server))
        return changed

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        server_id = event.get("server_id")
        if kind in ("created", "updated", "deleted"):
            self.sync(server_id if isinstance(server_id, int) else None)
        elif kind == "state" and event.get("state") == "running":
            task = asyncio.get_running_loop().create_task(self.discover(event["server_id"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def discover(self, server_id: int) -> dict[str, Any]:
        """Ask a running server for its kernels, cache them, and republish the specs."""
        manager = self.manager
        try:
            agent = await manager.agent_for(server_id)
            container = container_for(manager, manager.get_server(server_id))
            answer = await agent.call("kernelspecs", timeout=900, container=container)
        except Exception as e:
            log.warning("Could not list the kernels on compute server %s: %s", server_id, e)
            return {}
        found: dict[str, Any] = {}
        for kernel, spec in dict(answer.get("kernelspecs") or {}).items():
            cleaned = clean_remote_spec(spec)
            if cleaned is not None and KERNEL_NAME.fullmatch(kernel):
                found[kernel.lower()] = cleaned
            if len(found) >= MAX_SPECS_PER_SERVER:
                break
        if not found:
            log.warning(
                "Compute server %s offers no kernels (%s); is ipykernel installed there?",
                server_id,
                answer.get("reason") or "none found",
            )
            return {}
        manager.store.update_fields(server_id, kernel_specs=found)
        if self.sync(server_id):
            manager.notify("kernelspecs", server_id)
        return found

    async def settle(self) -> None:
        """Wait for kernel discoveries under way (the CLI, before it exits)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
