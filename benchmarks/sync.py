"""File sync to a local compute server, side by side with ``rsync -a`` over ssh.

    python benchmarks/sync.py [--small N] [--large N] [--large-mb N] [--direction both|push]
                              [--local-daemon auto|asyncssh]

In one run, against one ``local`` compute server started for the run (its own SSH server on
127.0.0.1, OpenSSH's sshd where installed, reached by both tools), with a tree of 10,000 small
files (1-8 KiB, in 100 directories) and 20 files of 20 MiB:

(a) the first sync of the whole tree (to an empty workspace / an empty rsync target; the
    workspace gets a new identity each time, so our record does not apply);
(b) a sync when nothing changed;
(c) a sync after one small file changed;
(e) the first sync the other way, ``direction`` pull: the server's workspace (holding the tree
    after (a)-(c)) into an empty Jupyter root (a new one each run, so our record does not
    apply, and a new sync process on the server, which walks its tree), against ``rsync -a
    host:workspace/ target/``;
(d) (b) and (c) again the way a user waits for them: through the REST API of a real Jupyter
    server (``benchmarks/apps.py``'s, with the same tree as its root, and a ``local`` server of
    its own), as the Sync button does: ``POST servers/{id}/sync``, then ``GET
    servers/{id}/syncs/{sync_id}`` until it is no longer running; and as the Lab waits, told
    of the end by the run's ``sync`` event (Jupyter's event websocket), then reading it once
    (``--no-rest`` leaves (d) out).

rsync runs as ``rsync -a -e 'ssh <pinned host key, the server's key>' root/ host:/target/``,
one-way, to a directory outside the server's workspace. Ours is the Sync button's sync
(``direction`` both: it also scans the server for changes to bring back) through the manager's
one SSH connection, which is opened before (a) and reused, as the Jupyter server does; rsync
pays an SSH login each run, so the report also gives that login's time (``ssh host true``) and
rsync minus it. Before each timed run the page cache's dirty data is written out (``sync``), so
no run pays for the previous one's writes; ours flushes what it wrote before recording it (see
``jupyter_compute_servers/sync/engine.py``), rsync does not.

Each timed run also gives the CPU seconds of each side: here (ours: this process, the
engine and its SSH client; rsync: its ``ssh`` and sender, as reaped children) and on the server
(the local server's SSH daemon, the processes it started: our sync process, rsync's receiver).

Each is run ``--repeat`` times (default 3), rsync and ours interleaved, and the best time of
each counts (the machine is shared: the best is the least disturbed); the first sync is also
timed against ``rsync -a --fsync`` (each file flushed, as durable as ours). Targets (issue
#22): (a) no slower than rsync; (b) and (c) at most 0.3x rsync, and (b) at most 20 ms; (d) is
held to (b)'s and (c)'s, against the same rsync times. Each of ours also says how its two sides
were scanned (walked, or from their change journals) and how many paths it compared. It
prints a table and the ratios, and every run's time, and exits 0 (it is a report). Everything
it starts is stopped and its temporary directory removed at the end, also on errors and
Ctrl-C. The machine is shared and noisy: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVER_NAME = "bench"


def make_tree(root: Path, small: int, large: int, large_mb: int) -> int:
    """The tree to sync; answers its size in bytes."""
    rng = random.Random(42)
    total = 0
    for i in range(small):
        folder = root / f"dir{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(1024, 8192))
        (folder / f"file{i:05d}.txt").write_bytes(data)
        total += len(data)
    big = root / "large"
    big.mkdir(parents=True, exist_ok=True)
    for i in range(large):
        data = rng.randbytes(large_mb << 20)
        (big / f"blob{i:02d}.bin").write_bytes(data)
        total += len(data)
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, children: bool) -> float:
    """A process's CPU seconds (and its reaped children's, if ``children``), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def _server_cpu(sshd: int) -> float:
    """The CPU seconds of the local server's SSH daemon and everything under it, alive or
    reaped (a finished rsync receiver counts in its parent's children's time)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    total = 0.0
    for pid in parents:
        p = pid
        while p > 1 and p != sshd:
            p = parents.get(p, 0)
        if p == sshd:
            total += _proc_cpu(pid, children=True)
    return total


class Cpu:
    """CPU seconds of each side during a timed run: here (this process and reaped children)
    and on the server (its SSH daemon's tree)."""

    sshd = 0

    def __init__(self) -> None:
        self.start = self._now()
        self.here = self.server = 0.0

    def _now(self) -> tuple[float, float]:
        me, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        here = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        return here, _server_cpu(self.sshd) if self.sshd else 0.0

    def stop(self) -> Cpu:
        here, server = self._now()
        self.here, self.server = here - self.start[0], server - self.start[1]
        return self


def find_sshd(under: Path) -> int:
    """The pid of the local server's SSH daemon whose sandbox is under ``under``."""
    from jupyter_compute_servers.clouds.local_openssh import daemon_sandbox

    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                sandbox = daemon_sandbox((entry / "cmdline").read_bytes())
            except OSError:
                continue
            if sandbox is not None and sandbox.startswith(f"{under}/"):
                return int(entry.name)
    return 0


def timed(argv: list[str], cpu: list[Cpu] | None = None) -> float:
    os.sync()
    used = Cpu()
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if cpu is not None:
        cpu.append(used.stop())
    return elapsed


def same_trees(a: Path, b: Path) -> bool:
    """Every file of ``a`` is in ``b`` with the same content (sampled for the large ones)."""
    for path in a.rglob("*"):
        if path.is_file():
            other = b / path.relative_to(a)
            if not other.is_file() or other.stat().st_size != path.stat().st_size:
                return False
            if path.stat().st_size < 65536 and other.read_bytes() != path.read_bytes():
                return False
    return True


def how(summary: dict) -> str:
    """How a sync scanned, from its summary: "walked" or "journal (N re-examined)" a side."""
    scan = summary.get("scan") or {}

    def side(name: str) -> str:
        it = scan.get(name) or {}
        return "walked" if it.get("walked", True) else f"journal ({it.get('examined')} looked at)"

    return f"here {side('local')}, server {side('remote')}, {scan.get('compared')} paths compared"


async def through_rest(args: argparse.Namespace, tmp: Path, root: Path) -> dict[str, tuple]:
    """(d): (b) and (c) through a real Jupyter server's REST API, as the Sync button waits."""
    import aiohttp
    import apps as ab  # benchmarks/ is on the path (main)

    from jupyter_compute_servers.agent.sync_agent import SYNC_RACY_NS

    work = tmp / "jupyter"
    work.mkdir()
    jupyter = ab.Jupyter(work, (f"--LocalCloud.ssh_daemon={args.local_daemon}",), root_dir=root)
    jupyter.start()
    results: dict[str, tuple] = {}
    try:
        async with aiohttp.ClientSession() as session:
            await ab.wait_for(lambda: jupyter.api(session, "GET", "status"), "Jupyter")
            server = await jupyter.api(session, "POST", "servers", {"name": "bench-rest"})
            sid = server["id"]
            await jupyter.api(session, "POST", f"servers/{sid}/actions/start")

            async def running() -> bool:
                state = (await jupyter.api(session, "GET", f"servers/{sid}"))["state"]
                if state == "error":
                    raise SystemExit("the REST benchmark's server did not start")
                return bool(state == "running")

            await ab.wait_for(running, "the server to start", timeout=120)

            async def clicked() -> tuple[float, dict]:
                os.sync()
                start = time.perf_counter()
                run = await jupyter.api(session, "POST", f"servers/{sid}/sync", {})
                while run["state"] == "running":
                    run = await jupyter.api(session, "GET", f"servers/{sid}/syncs/{run['id']}")
                elapsed = time.perf_counter() - start
                if run["state"] != "completed" or run["summary"]["errors"]:
                    raise SystemExit(f"sync failed: {run['error'] or run['summary']['errors']}")
                return elapsed, run["summary"]

            # As the Lab waits: told of the end by the run's `sync` event (Jupyter's event
            # websocket), then reading the run once.
            events = await session.ws_connect(
                f"{jupyter.base.replace('http://', 'ws://')}api/events/subscribe",
                headers=jupyter.headers,
            )

            async def told() -> tuple[float, dict]:
                os.sync()
                start = time.perf_counter()
                run = await jupyter.api(session, "POST", f"servers/{sid}/sync", {})
                while True:
                    event = await asyncio.wait_for(events.receive_json(), 60)
                    sync = event.get("sync") if event.get("kind") == "sync" else None
                    if (
                        isinstance(sync, dict)
                        and sync.get("id") == run["id"]
                        and sync.get("state") != "running"
                    ):
                        break
                run = await jupyter.api(session, "GET", f"servers/{sid}/syncs/{run['id']}")
                elapsed = time.perf_counter() - start
                if run["state"] != "completed" or run["summary"]["errors"]:
                    raise SystemExit(f"sync failed: {run['error'] or run['summary']['errors']}")
                return elapsed, run["summary"]

            print("(d) through the REST API: the first sync...")
            await clicked()
            # What was just written is hashed again until its signature is old enough to be
            # trusted (SYNC_RACY_NS): one more sync after that, untimed, settles it.
            await asyncio.sleep(SYNC_RACY_NS / 1e9)
            await clicked()
            for label in ("(b) nothing changed", "(c) one file changed"):
                for how_told, wait in (("read back", clicked), ("its event", told)):
                    times: list[float] = []
                    summary: dict = {}
                    for rep in range(args.repeat):
                        if label.startswith("(c)"):
                            n = rep + 50 + (10 if wait is told else 0)
                            changed = root / f"dir{n % 100:03d}" / f"file{n:05d}.txt"
                            changed.write_bytes(b"rest " + changed.read_bytes()[5:])
                        elapsed, summary = await wait()
                        times.append(elapsed)
                    results[f"{label[:3]} {how_told}"] = (label, how_told, times, summary)
            await events.close()
    finally:
        jupyter.stop()  # c.LocalCloud.stop_on_shutdown stops its server
    return results


async def run(args: argparse.Namespace, tmp: Path) -> None:
    from jupyter_compute_servers.access import openssh_options
    from jupyter_compute_servers.clouds.local import LocalCloud
    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services

    root = tmp / "root"
    root.mkdir()
    print(f"making the tree ({args.small} small files, {args.large} x {args.large_mb} MiB)...")
    total = make_tree(root, args.small, args.large, args.large_mb)
    files = args.small + args.large
    print(f"  {files} files, {total / 1e6:.0f} MB")
    settings = load_settings({"data_dir": str(tmp / "data")})
    local = LocalCloud(data_dir=str(tmp / "data" / "local"), ssh_daemon=args.local_daemon)
    services = build_services(settings, sync_root=str(root), clouds={"local": local})
    manager = services.manager
    server = manager.create_server({"name": SERVER_NAME})
    try:
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        assert manager.get_server(server.id).state.value == "running"
        endpoint = await manager.endpoint(server.id)
        ssh_dir = tmp / "ssh"
        ssh_dir.mkdir()
        options = openssh_options(manager.keys.private_key_path(server.id), endpoint, str(ssh_dir))
        host = f"{endpoint.username}@{endpoint.host}"
        ssh = ["ssh", *options]
        target = tmp / "rsync-target"
        rsync = ["rsync", "-a", "-e", " ".join(ssh), f"{root}/", f"{host}:{target}/"]
        login = min(timed([*ssh, host, "true"]) for _ in range(3))
        await manager.connection(server.id)  # ours: the connection is open already
        Cpu.sshd = find_sshd(tmp)

        workspace = Path(endpoint.workspace)
        cpu: dict[str, tuple[list[Cpu], list[Cpu]]] = {}

        async def ours(
            direction: str = args.direction, used: list[Cpu] | None = None
        ) -> tuple[float, dict]:
            os.sync()
            cpu_used = Cpu()
            start = time.perf_counter()
            result = await services.sync.run(server.id, direction, "", "cli")
            elapsed = time.perf_counter() - start
            if used is not None:
                used.append(cpu_used.stop())
            if result["state"] != "completed" or result["summary"]["errors"]:
                raise SystemExit(f"sync failed: {result['error'] or result['summary']['errors']}")
            return elapsed, result["summary"]

        def fresh_targets() -> None:
            """An empty rsync target and an empty workspace with a new identity (so our record
            of it does not apply: a first sync again)."""
            shutil.rmtree(target, ignore_errors=True)
            for entry in workspace.iterdir():
                if (
                    not entry.name.startswith(".")
                    or entry.name == ".jupyter-compute-servers-sync.json"
                ):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()

        # rsync made as durable as ours (each file fsynced), for the first sync only.
        rsync_fsync = ["rsync", "-a", "--fsync", *rsync[2:]]
        fsync_times = []
        for _ in range(args.repeat):
            shutil.rmtree(target, ignore_errors=True)
            fsync_times.append(timed(rsync_fsync))

        rows = []
        for label in ("(a) first sync", "(b) nothing changed", "(c) one file changed"):
            rsync_times: list[float] = []
            our_times: list[float] = []
            summary: dict[str, Any] = {}
            rsync_cpu: list[Cpu] = []
            our_cpu: list[Cpu] = []
            cpu[label[:3]] = rsync_cpu, our_cpu
            for rep in range(args.repeat):
                if label.startswith("(a)"):
                    fresh_targets()
                if label.startswith("(c)"):
                    changed = root / f"dir{rep % 100:03d}" / f"file{rep:05d}.txt"
                    changed.write_bytes(b"changed " + changed.read_bytes()[8:])
                rsync_times.append(timed(rsync, rsync_cpu))
                our_time, summary = await ours(used=our_cpu)
                our_times.append(our_time)
            rows.append((label, min(rsync_times), min(our_times), summary, rsync_times, our_times))

        # (e) the first pull: the workspace (the tree, after the rows above) into an empty
        # Jupyter root, a new one each run (the service's root is swapped for the run, and its
        # change journals of the old root dropped), against rsync from the server.
        label = "(e) first pull"
        rsync_times, our_times, summary = [], [], {}
        rsync_cpu, our_cpu = [], []
        cpu[label[:3]] = rsync_cpu, our_cpu
        pulled = tmp / "rsync-pulled"
        rsync_pull = [*rsync[:4], f"{host}:{workspace}/", f"{pulled}/"]
        sync_service, own_root = services.sync, services.sync.root_dir
        for rep in range(args.repeat):
            shutil.rmtree(pulled, ignore_errors=True)
            rsync_times.append(timed(rsync_pull, rsync_cpu))
            shutil.rmtree(pulled, ignore_errors=True)
            fresh_root = tmp / f"pull-root-{rep}"
            fresh_root.mkdir()
            for watch in sync_service._watches.values():
                watch.close()
            sync_service._watches.clear()
            sync_service.root_dir = str(fresh_root)
            # A first sync: the server's sync process starts afresh (and walks its tree), as
            # rsync's does.
            await sync_service._drop_session(server.id)
            try:
                our_time, summary = await ours("pull", our_cpu)
            finally:
                sync_service.root_dir = own_root
            our_times.append(our_time)
            shutil.rmtree(fresh_root)
        rows.append((label, min(rsync_times), min(our_times), summary, rsync_times, our_times))
        checks = {
            "rsync copy complete": same_trees(root, target),
            "sync copy complete": same_trees(root, workspace),
        }
    finally:
        await services.sync.close()
        if manager.get_server(server.id).state.value == "running":
            manager.request_action(server.id, "stop")
            await manager.wait_for_action(server.id)
        await manager.ssh.close_all()
        manager.store.database.close()
    rest = await through_rest(args, tmp, root) if args.rest else {}

    # Issue #22's targets: (a) no slower than rsync; (b) and (c) under a third of rsync's
    # time, and a no-op sync under 20 ms.
    targets = {"(a)": 1.0, "(b)": 0.3, "(c)": 0.3, "(e)": 1.0}
    print()
    header = f"best of {args.repeat}"
    print(f"{header:24}{'rsync -a':>10}{'rsync-login':>13}{'ours':>9}{'ours/rsync':>12}  target")
    for label, rsync_time, our_time, summary, rsync_all, ours_all in rows:
        ratio = our_time / rsync_time
        goal = targets[label[:3]]
        verdict = "met" if ratio <= goal else "MISSED"
        print(
            f"{label:24}{rsync_time:>9.2f}s{rsync_time - login:>12.2f}s{our_time:>8.2f}s"
            f"{ratio:>11.2f}x  <= {goal}x {verdict}"
        )
        moved = summary["received" if label.startswith("(e)") else "sent"]
        print(
            f"{'':24}ours: {'received' if label.startswith('(e)') else 'sent'} "
            f"{moved['files']} files, {moved['bytes'] / 1e6:.0f} MB; "
            f"ours / (rsync minus its login): {our_time / max(rsync_time - login, 1e-9):.2f}x"
        )
        rsync_cpu, our_cpu = cpu[label[:3]]
        print(
            f"{'':24}CPU s here/server, best: rsync {min(c.here for c in rsync_cpu):.2f}/"
            f"{min(c.server for c in rsync_cpu):.2f}; ours {min(c.here for c in our_cpu):.2f}/"
            f"{min(c.server for c in our_cpu):.2f}"
        )
        print(
            f"{'':24}all runs: rsync {' '.join(f'{t:.2f}' for t in rsync_all)}; "
            f"ours {' '.join(f'{t:.2f}' for t in ours_all)}"
        )
        if label.startswith("(a)"):
            best = min(fsync_times)
            print(
                f"{'':24}rsync -a --fsync (durable, as ours): {best:.2f}s; "
                f"ours / it: {our_time / best:.2f}x"
            )
        if label.startswith("(b)"):
            verdict = "met" if our_time <= 0.020 else "MISSED"
            print(f"{'':24}absolute: {our_time * 1000:.0f} ms  <= 20 ms {verdict}")
        print(f"{'':24}ours, last run: {how(summary)}")
    if rest:
        print(
            "\n(d) through the REST API (POST sync, GET it until completed), "
            f"best of {args.repeat}, against the same rsync"
        )
        best_rsync = {label[:3]: rsync_time for label, rsync_time, *_ in rows}
        for name, (label, how_told, times, summary) in rest.items():
            key = name[:3]
            best = min(times)
            ratio = best / best_rsync[key]
            goal = targets[key]
            verdict = "met" if ratio <= goal else "MISSED"
            print(
                f"{label:24}{best_rsync[key]:>9.2f}s{'':13}{best:>8.3f}s"
                f"{ratio:>11.2f}x  <= {goal}x {verdict}"
            )
            print(f"{'':24}the end: {how_told}")
            if key == "(b)":
                verdict = "met" if best <= 0.020 else "MISSED"
                print(f"{'':24}absolute: {best * 1000:.0f} ms  <= 20 ms {verdict}")
            print(f"{'':24}all runs: {' '.join(f'{t:.3f}' for t in times)}")
            print(f"{'':24}last run: {how(summary)}")
    print(f"\nssh login (ssh host true, best of 3): {login:.2f}s; paid by each rsync run, not ours")
    for name, ok in checks.items():
        print(f"{name}: {'yes' if ok else 'NO'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--large-mb", type=int, default=20)
    parser.add_argument("--direction", choices=["both", "push"], default="both")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument(
        "--local-daemon",
        choices=["auto", "asyncssh"],
        default="auto",
        help="the local server's SSH daemon (c.LocalCloud.ssh_daemon): OpenSSH's sshd where"
        " installed (auto, the default), or the built-in one",
    )
    parser.add_argument(
        "--no-rest",
        dest="rest",
        action="store_false",
        help="leave out (d), the syncs through a real Jupyter server's REST API",
    )
    args = parser.parse_args()
    if not shutil.which("rsync"):
        print("rsync is not installed (apt-get install rsync)")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    tmp = Path(tempfile.mkdtemp(prefix="jcs-bench-sync-"))
    os.environ.update(
        JUPYTER_DATA_DIR=str(tmp / "jupyter-data"),
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
    )
    try:
        asyncio.run(run(args, tmp))
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
