"""Where a first sync's time goes, on ``benchmarks/sync.py``'s tree.

    python benchmarks/sync_profile.py [--small N] [--large N] [--large-mb N] [--top N]

First, as the Sync button syncs (a ``local`` server, the manager's one SSH connection): two
first syncs, each with the CPU seconds of every process it runs on (this one, the Jupyter
side with its SSH client; the server's SSH server, which stands in for OpenSSH and which
rsync's runs pay too; the server's sync process) and the time this process spent in Python's
garbage collector. Then one first sync with cProfile on both sides: the server's side is the
real sync process (``agent/sync_agent.py``, its source sent over stdin as over SSH) run under
cProfile over pipes (as ``SyncSession.in_subprocess``), so with no SSH in between; the Jupyter
side (the engine, the record) in this process (its threads, which read the Jupyter root, are
not in the profile: only the event loop's waits for them). Prints the wall time of
each phase, then both profiles' top functions by own time, and exits 0 (it is a report).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The server's sync process under cProfile: the bootstrap's code run by cProfile, its
# statistics written when stdin closes (the end of the session).
PROFILED_AGENT = """
import cProfile, sys
profile = cProfile.Profile()
profile.enable()
try:
    exec(compile(sys.argv[1], "bootstrap", "exec"), {"__name__": "__main__"})
finally:
    profile.disable()
    profile.dump_stats(sys.argv[2])
"""


def _cpu(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _descendants(root: int) -> set[int]:
    found, more = {root}, True
    while more:
        more = False
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in found:
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent in found:
                found.add(int(name))
                more = True
    return found


async def cpu_split(tmp: Path, root: Path, runs: int = 2) -> None:
    """Our first sync over SSH, with each process's CPU seconds."""
    import gc
    import json

    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services

    collecting = {"seconds": 0.0, "since": 0.0}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            collecting["since"] = time.perf_counter()
        else:
            collecting["seconds"] += time.perf_counter() - collecting["since"]

    gc.callbacks.append(on_gc)
    services = build_services(load_settings({"data_dir": str(tmp / "data")}), sync_root=str(root))
    manager = services.manager
    server = manager.create_server({"name": "profile"})
    try:
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        workspace = Path((await manager.endpoint(server.id)).workspace)
        await manager.connection(server.id)
        sshd = json.loads((workspace.parent / "run" / "sshd.json").read_text())["pid"]
        for _ in range(runs):
            # A first sync again (see benchmarks/sync.py).
            for entry in list(os.scandir(workspace)):
                if (
                    not entry.name.startswith(".")
                    or entry.name == ".jupyter-compute-servers-sync.json"
                ):
                    shutil.rmtree(entry.path) if entry.is_dir() else os.unlink(entry.path)
            os.sync()
            before = {pid: _cpu(pid) for pid in _descendants(sshd)}
            ours, collecting["seconds"] = os.times(), 0.0
            start = time.perf_counter()
            result = await services.sync.run(server.id, "both", "", "cli")
            elapsed = time.perf_counter() - start
            ours_after = os.times()
            assert result["state"] == "completed", result
            print(f"first sync over SSH: {elapsed:.2f}s; CPU seconds:")
            print(
                f"  this process (the engine, its SSH client): user "
                f"{ours_after.user - ours.user:.2f} system {ours_after.system - ours.system:.2f}"
                f" (of which garbage collection {collecting['seconds']:.2f}s)"
            )
            for pid in sorted(_descendants(sshd)):
                user, system = _cpu(pid)
                user0, system0 = before.get(pid, (0.0, 0.0))
                # The sync process is the busy one (the RPC agent runs there too).
                name = "the SSH server" if pid == sshd else "a process it started"
                if user + system - user0 - system0 > 0.01:
                    print(
                        f"  {name} (pid {pid}): "
                        f"user {user - user0:.2f} system {system - system0:.2f}"
                    )
    finally:
        gc.callbacks.remove(on_gc)
        await services.sync.close()
        manager.request_action(server.id, "stop")
        await manager.wait_for_action(server.id)
        await manager.ssh.close_all()
        manager.store.database.close()


async def first_sync(tmp: Path, root: Path, agent_stats: Path) -> tuple[float, dict]:
    from jupyter_compute_servers.agent import SYNC_AGENT_SOURCE, bootstrap
    from jupyter_compute_servers.models import ServerConfig
    from jupyter_compute_servers.store import ServerStore
    from jupyter_compute_servers.sync.engine import SyncEngine
    from jupyter_compute_servers.sync.records import SyncStore
    from jupyter_compute_servers.sync.settings import SyncSettings
    from jupyter_compute_servers.sync.transfer import SyncSession

    servers = ServerStore(f"sqlite:///{tmp / 'servers.db'}", clock=time.time)
    servers.create(
        name="box",
        color="#000000",
        notes="",
        cloud="local",
        config=ServerConfig(),
        idle_timeout_minutes=None,
        spend_limit=None,
    )
    store = SyncStore(servers.database)
    remote = tmp / "remote"
    remote.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-u",
        "-c",
        PROFILED_AGENT,
        bootstrap(SYNC_AGENT_SOURCE),
        str(agent_stats),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(SYNC_AGENT_SOURCE)
    stdin = process.stdin

    async def close() -> None:
        stdin.close()
        await process.wait()

    session = SyncSession(process.stdout, stdin, close, lambda: process.returncode is None)
    await session.open(str(remote))
    engine = SyncEngine(
        local_root=str(root),
        session=session,
        store=store,
        server_id=1,
        server_name="box",
        settings=SyncSettings(),
        direction="both",
    )
    phases: dict[str, float] = {}
    since, current = [time.perf_counter()], [""]
    original = engine._phase

    def phase(name: str) -> None:
        now = time.perf_counter()
        if current[0]:
            phases[current[0]] = phases.get(current[0], 0.0) + now - since[0]
        since[0], current[0] = now, name
        original(name)

    engine._phase = phase  # type: ignore[method-assign,assignment]
    os.sync()
    start = time.perf_counter()
    summary = await engine.run()
    elapsed = time.perf_counter() - start
    phase("")
    await session.close()
    assert not summary.errors, summary.errors
    return elapsed, phases


def main() -> int:
    import sync as bench

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=20)
    parser.add_argument("--large-mb", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="jcs-bench-sync-profile-"))
    try:
        root = tmp / "root"
        root.mkdir()
        bench.make_tree(root, args.small, args.large, args.large_mb)
        asyncio.run(cpu_split(tmp, root))
        agent_stats = tmp / "agent.prof"
        profile = cProfile.Profile()
        profile.enable()
        elapsed, phases = asyncio.run(first_sync(tmp, root, agent_stats))
        profile.disable()
        print(f"\nfirst sync over pipes: {elapsed:.2f}s (both sides under cProfile: slower)")
        for name, seconds in phases.items():
            print(f"  {name:14}{seconds:6.2f}s")
        print("\nthe Jupyter side (event loop), by own time:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
        print("the server's sync process, by own time:")
        pstats.Stats(str(agent_stats)).sort_stats("tottime").print_stats(args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
