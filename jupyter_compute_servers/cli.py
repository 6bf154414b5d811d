"""``jupyter compute-servers``: the same store and clouds as the Lab, from a terminal.

    jupyter compute-servers list
    jupyter compute-servers create NAME [--cloud local] [--config '{"cpu": 2}']
    jupyter compute-servers start|stop|deprovision|delete NAME_OR_ID
    jupyter compute-servers ssh NAME_OR_ID [COMMAND...]
    jupyter compute-servers sync NAME_OR_ID [--push|--pull] [PATH] [--root DIR]
    jupyter compute-servers images list|test IMAGE[:TAG] [--cloud C] [--mark-tested]
    jupyter compute-servers images build DIR --image ID --tag TAG [--arch x86_64|arm64]
    jupyter compute-servers team-try [--port 8000]   (a team deployment here, for trying)

It reads the Jupyter Server configuration (``c.ComputeServersApp.*``), so it works on the store
the Jupyter server uses. Actions run in this process and wait until they finish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from .access import ssh_access
from .config import load_settings, parse_assignments
from .errors import ComputeServersError
from .images.building import build_image
from .images.testing import smoke_test_image
from .kernels.specs import spec_name
from .models import DEPROVISION_WARNING, State
from .services import Services, build_services
from .store import ServerRecord
from .sync.settings import parse_tree_path
from .team_try import command as team_try


def hardware_summary(server: ServerRecord) -> str:
    config = server.config
    parts = []
    if config.machine_type:
        parts.append(config.machine_type)
    if config.cpu:
        parts.append(f"{config.cpu} CPU")
    if config.memory_gb:
        parts.append(f"{config.memory_gb:g} GB")
    if config.gpu:
        parts.append(f"{config.gpu.count}x {config.gpu.type}")
    if config.disk_gb:
        parts.append(f"{config.disk_gb} GB disk")
    return ", ".join(parts)


def print_table(servers: list[ServerRecord]) -> None:
    rows = [("ID", "NAME", "CLOUD", "STATE", "HARDWARE")]
    rows += [(str(s.id), s.name, s.cloud, s.state.value, hardware_summary(s)) for s in servers]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


async def run_action(
    services: Services,
    server: ServerRecord,
    action: str,
    body: dict[str, Any] | None = None,
) -> ServerRecord:
    seen = ""

    def show(event: dict[str, Any]) -> None:
        nonlocal seen
        message = event.get("progress") or ""
        if message and message != seen:
            seen = message
            print(f"  {message}", file=sys.stderr)

    manager = services.manager
    services.events.sink = show
    manager.request_action(server.id, action, body)
    print(f"{action}: {server.name}...", file=sys.stderr)
    await manager.wait_for_action(server.id)
    result = manager.get_server(server.id)
    if result.state is State.ERROR:
        raise ComputeServersError(result.state_reason)
    print(f"{server.name} is {result.state.value}", file=sys.stderr)
    if result.state is State.RUNNING:
        await services.kernel_specs.settle()
        for kernel in sorted((manager.get_server(server.id).kernel_specs or {}).keys()):
            print(f"  kernel: {spec_name(server.id, kernel)}", file=sys.stderr)
    return result


async def run_sync(services: Services, args: argparse.Namespace) -> int:
    """``sync``: sync this directory (or --root) with a server, showing progress; 1 when the
    sync failed or some file did not sync."""
    sync = services.sync
    server = services.store.find(args.server)
    direction = "push" if args.push else "pull" if args.pull else "both"
    path = parse_tree_path(args.path or "", "path")
    tty = sys.stderr.isatty()
    seen = ""

    def show(event: dict[str, Any]) -> None:
        nonlocal seen
        line = event.get("progress") or ""
        if event.get("kind") == "sync" and line and line != seen and not args.json:
            seen = line
            print(f"\r{line:<79}" if tty else f"  {line}", end="" if tty else "\n", file=sys.stderr)

    services.events.sink = show
    where = f" {path}" if path else ""
    print(f"sync ({direction}){where}: {sync.root_dir} <-> {server.name}", file=sys.stderr)
    run = await sync.run(
        server.id, direction, path, "cli", confirm_deletions=args.confirm_deletions
    )
    if tty and seen:
        print(file=sys.stderr)
    summary = run["summary"] or {}
    if args.json:
        print(json.dumps(run, indent=2))
    else:
        sent, received = summary.get("sent", {}), summary.get("received", {})
        deleted = summary.get("deleted", {})
        print(
            f"{run['state']}: sent {sent.get('files', 0)} files ({sent.get('bytes', 0) / 1e6:.1f}"
            f" MB), received {received.get('files', 0)} ({received.get('bytes', 0) / 1e6:.1f} MB),"
            f" deleted {deleted.get('local', 0)} here and {deleted.get('remote', 0)} there"
            f" in {(run['progress'] or {}).get('elapsed', 0):.1f} s",
            file=sys.stderr,
        )
        for conflict in summary.get("conflicts", []):
            kept = conflict["conflict_path"]
            print(
                f"  conflict: {conflict['path']}: "
                + (
                    f"the server's version is kept as {kept!r}"
                    if kept
                    else "not synced (sync both ways to keep both)"
                ),
                file=sys.stderr,
            )
        for skipped in summary.get("skipped", []):
            print(
                f"  skipped: {skipped['path']} ({skipped['side']}): {skipped['reason']}",
                file=sys.stderr,
            )
        for error in summary.get("errors", []):
            print(f"  not synced: {error['path']}: {error['message']}", file=sys.stderr)
        held = summary.get("held_back") or {}
        if held.get("files"):
            print(f"  {held['message']}:", file=sys.stderr)
            for item in held.get("paths", []):
                print(f"    {item['path']}", file=sys.stderr)
        if summary.get("pending"):
            print(
                f"  {summary['pending']} change(s) left for a sync the other way", file=sys.stderr
            )
        if run["error"]:
            error = run["error"]
            if (summary.get("deletion_guard") or {}).get("confirmed") is False:
                error = error.replace(
                    "confirm_deletions in the request",
                    "jupyter compute-servers sync --confirm-deletions",
                )
            print(f"error: {error}", file=sys.stderr)
    return 0 if run["state"] == "completed" and not summary.get("errors") else 1


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings(parse_assignments(args.set or []))
    root = (args.root or os.getcwd()) if args.command == "sync" else None
    services = build_services(settings, sync_root=root)
    manager, present = services.manager, services.presenter.to_json
    try:
        if args.command == "list":
            servers = manager.list_servers()
            if args.json:
                print(json.dumps([present(s) for s in servers], indent=2))
            else:
                print_table(servers)
        elif args.command == "create":
            body: dict[str, Any] = {"name": args.name}
            if args.cloud:
                body["cloud"] = args.cloud
            if args.config:
                body["config"] = json.loads(args.config)
            server = await manager.create_server_on_available_cloud(body)
            print(
                json.dumps(present(server), indent=2)
                if args.json
                else f"Created {server.name} (id {server.id}) on {server.cloud}."
            )
        elif args.command in ("start", "stop", "suspend", "resume", "reboot"):
            await run_action(services, manager.store.find(args.server), args.command)
        elif args.command == "deprovision":
            server = manager.store.find(args.server)
            if not args.yes:
                print(DEPROVISION_WARNING, file=sys.stderr)
                answer = await asyncio.to_thread(
                    input, f"Deprovision {server.name}? Type its name to confirm: "
                )
                if answer.strip() != server.name:
                    print("Not deprovisioned.", file=sys.stderr)
                    return 1
            await run_action(services, server, "deprovision", {"confirm": True})
        elif args.command == "delete":
            server = manager.store.find(args.server)
            await manager.delete_server(server.id)
            print(f"Deleted {server.name}.", file=sys.stderr)
        elif args.command == "images":
            if args.images_command == "list":
                for image in manager.images.images(include_untested=True):
                    for version in image["versions"]:
                        mark = "tested" if version["tested"] else "untested"
                        print(f"{image['id']}:{version['tag']}  {image['label']}  ({mark})")
            elif args.images_command == "build":
                await build_image(
                    manager.images,
                    Path(args.directory),
                    args.image,
                    args.tag,
                    arch=args.arch,
                    report=lambda line: print(line, file=sys.stderr),
                )
            else:
                passed = await smoke_test_image(
                    manager,
                    services.kernel_specs,
                    settings.kernel_specs_dir,
                    args.image,
                    args.cloud,
                    mark_tested=args.mark_tested,
                    report=lambda line: print(line, file=sys.stderr),
                )
                return 0 if passed else 1
        elif args.command == "sync":
            return await run_sync(services, args)
        elif args.command == "ssh":
            server = manager.store.find(args.server)
            if server.state is not State.RUNNING:
                raise ComputeServersError(f"{server.name} is {server.state.value}; start it first.")
            # The same access as the panel's "SSH access": the pinned host key only, and the
            # key the product logs in with (in team mode, the user's current certificate).
            access = await ssh_access(manager, server.id)
            config = Path(access["known_hosts_file"]).with_name("config")
            config.write_text(access["config"])
            argv = ["ssh", "-F", str(config), access["host_alias"]]
            if args.remote_command:
                argv += ["--", *args.remote_command]
            else:
                argv.insert(1, "-t")
            await manager.ssh.close_all()
            services.database.close()
            os.execvp("ssh", argv)  # noqa: S606 - replaces this process by design
    except ComputeServersError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    finally:
        await services.sync.close()
        await services.ssh.close_all()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jupyter compute-servers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="TRAIT=VALUE",
        help="set a ComputeServersApp option, e.g. --set data_dir=/tmp/cs",
    )
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list compute servers")
    listing.add_argument("--json", action="store_true")
    create = sub.add_parser("create", help="create a compute server (deprovisioned)")
    create.add_argument("name")
    create.add_argument("--cloud")
    create.add_argument("--config", help="configuration as JSON, e.g. '{\"cpu\": 2}'")
    create.add_argument("--json", action="store_true")
    for action in ("start", "stop", "suspend", "resume", "reboot", "delete"):
        sub.add_parser(action, help=f"{action} a server").add_argument("server", help="name or id")
    deprovision = sub.add_parser("deprovision", help="delete a server's machine and disk")
    deprovision.add_argument("server", help="name or id")
    deprovision.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    images = sub.add_parser("images", help="the image catalogue")
    images_sub = images.add_subparsers(dest="images_command", required=True)
    images_sub.add_parser("list", help="every image version, tested or not")
    image_test = images_sub.add_parser(
        "test", help="start a server with an image version, smoke-test it, and clean up"
    )
    image_test.add_argument("image", help="IMAGE[:TAG] (default tag: its first tested version)")
    image_test.add_argument("--cloud", default="local")
    image_test.add_argument(
        "--mark-tested", action="store_true", help="record a pass in the local override file"
    )
    image_build = images_sub.add_parser(
        "build",
        help="build an image version from a Containerfile directory; added as untested",
    )
    image_build.add_argument("directory", help="holds a Containerfile or Dockerfile")
    image_build.add_argument("--image", required=True, help="the catalogue's image id")
    image_build.add_argument("--tag", required=True, help="the version's tag")
    image_build.add_argument(
        "--arch", help="x86_64 or arm64 (another than this machine's needs qemu-user-static)"
    )
    ssh = sub.add_parser("ssh", help="open a shell (or run a command) on a running server")
    ssh.add_argument("server", help="name or id")
    ssh.add_argument("remote_command", nargs=argparse.REMAINDER)
    sync = sub.add_parser(
        "sync", help="sync this directory (the Jupyter root) with a running server's workspace"
    )
    sync.add_argument("server", help="name or id")
    sync.add_argument("path", nargs="?", default="", help="only this file or directory")
    way = sync.add_mutually_exclusive_group()
    way.add_argument("--push", action="store_true", help="only send changes made here")
    way.add_argument("--pull", action="store_true", help="only fetch changes made there")
    sync.add_argument("--root", help="the local tree (default: the current directory)")
    sync.add_argument("--json", action="store_true", help="print the finished sync as JSON")
    sync.add_argument(
        "--confirm-deletions",
        action="store_true",
        help="go ahead when the sync would delete more files than the server's limit allows",
    )
    team_try.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "team-try":
        # Its own processes (PostgreSQL, JupyterHub), none of this store's services.
        return team_try.run(args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
