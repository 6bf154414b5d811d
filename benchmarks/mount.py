"""The live workspace (a mount) side by side with sync and with plain sshfs over OpenSSH.

    python benchmarks/mount.py [--large-mb N | --full] [--small N] [--repeat N]

In one run, with one compute server reached through OpenSSH's own sshd on 127.0.0.1 (the test
cloud of tests/sshd.py: the same machine, a workspace of its own), a Jupyter root holding one
large file (200 MB; 1 GB with ``--full``) and a tree of 10,000 small files (1-4 KiB, in 100
directories):

(a) reading the large file on the server (``cat FILE > /dev/null``, run over the server's
    connection);
(b) listing the tree on the server (``find DIR -type f -printf '%s\\n'``: every entry
    stat'ed).

Each through:

- **mount**: this package's mount (sshfs in passive mode on an exec channel of the server's
  one asyncssh connection, its SFTP served by this process, confined to the root);
- **sshfs**: plain sshfs on the server logging in to OpenSSH's sshd here (``sftp-server``),
  with the same cache options (``cache=no,attr_timeout=0.5,entry_timeout=0.5``), the usual way
  to mount a remote tree;
- **sync**: a push of the file (or the tree) to the workspace with this package's sync, then
  the same command on the server's own disk (what a synced workspace costs to get there).

Each is run ``--repeat`` times (default 2), interleaved, and the best counts (the machine is
shared). It prints the times and the ratios to plain sshfs, and exits 0 (a report). Everything
it starts is stopped and its temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_compute_servers.models import State
from jupyter_compute_servers.mount import service as mount_service
from jupyter_compute_servers.mount.workspace import MountRequest
from jupyter_compute_servers.ssh import KeyStore
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint
from tests.composition import services_for
from tests.sshd import OpenSSHHost, start_sshd


def make_root(root: Path, large_mb: int, small: int) -> None:
    rng = random.Random(7)
    tree = root / "tree"
    for i in range(small):
        folder = tree / f"dir{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    (root / "large").mkdir()
    with open(root / "large" / "big.bin", "wb") as f:
        chunk = rng.randbytes(1 << 20)
        for _ in range(large_mb):
            f.write(chunk)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-mb", type=int, default=200)
    parser.add_argument("--full", action="store_true", help="a 1 GB file")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--sshfs-options",
        default=mount_service.SSHFS_OPTIONS,
        help="sshfs's cache options, for both mounts (default: the mount service's)",
    )
    args = parser.parse_args()
    large_mb = 1024 if args.full else args.large_mb
    mount_service.SSHFS_OPTIONS = args.sshfs_options
    for tool in ("sshfs", "sshd" if shutil.which("sshd") else "/usr/sbin/sshd"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed: apt-get install sshfs openssh-server")

    tmp = Path(tempfile.mkdtemp(prefix="bench-mount-"))
    mounted: list[Path] = []
    services = sshd = None
    try:
        root, workspace = tmp / "root", tmp / "workspace"
        root.mkdir()
        workspace.mkdir()
        print(f"Making the Jupyter root: {args.small} small files and {large_mb} MB ...")
        make_root(root, large_mb, args.small)
        keys = KeyStore(tmp / "data" / "keys")
        sshd = start_sshd(tmp, keys.ensure(1))
        cloud = OpenSSHHost(data_dir=str(tmp / "cloud"))
        cloud.endpoint = SSHEndpoint(
            host="127.0.0.1",
            port=sshd.port,
            username=sshd.username,
            host_key=sshd.host_key,
            workspace=str(workspace),
            python=sys.executable,
            runtime_dir=str(tmp / "remote-runtime"),
        )
        services = services_for(tmp / "data", {"openssh": cloud}, sync_root=root)
        manager = services.manager
        server = manager.create_server({"name": "bench", "cloud": "openssh"})
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        assert manager.get_server(server.id).state is State.RUNNING

        async def on_server(command: str) -> float:
            connection = await manager.connection(server.id)
            start = time.perf_counter()
            out = await connection.connection.run(command, check=False)
            took = time.perf_counter() - start
            if out.exit_status != 0:
                raise RuntimeError(f"{command}: {out.stderr!r}")
            return took

        # mount: ours
        mount = await services.mounts.mount(server.id, MountRequest())
        ours = Path(mount["remote_path"])
        mounted.append(ours)
        # sshfs: the server logs in to OpenSSH's sshd here
        plain = workspace / "plain"
        plain.mkdir()
        key = keys.private_key_path(1)
        known = tmp / "known_hosts"
        known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n")
        await asyncio.to_thread(
            subprocess.run,
            [
                "sshfs",
                f"{sshd.username}@127.0.0.1:{root}",
                str(plain),
                "-p",
                str(sshd.port),
                "-o",
                f"IdentityFile={key},UserKnownHostsFile={known},StrictHostKeyChecking=yes,"
                f"BatchMode=yes,{args.sshfs_options}",
            ],
            check=True,
        )
        mounted.append(plain)

        async def sync_push(path: str) -> float:
            start = time.perf_counter()
            run = services.sync.start(server.id, {"direction": "push", "path": path})
            await services.sync.wait(server.id, run["id"])
            result = services.sync.get(server.id, run["id"])
            if result["state"] != "completed":
                raise RuntimeError(f"sync: {result}")
            return time.perf_counter() - start

        read = "cat {}/large/big.bin > /dev/null"
        listing = "find {}/tree -type f -printf '%s\\n' | wc -l > /dev/null"
        times: dict[tuple[str, str], list[float]] = {}
        for attempt in range(args.repeat):
            print(f"Round {attempt + 1} of {args.repeat} ...")
            for what, command in (("read", read), ("list", listing)):
                times.setdefault((what, "mount"), []).append(await on_server(command.format(ours)))
                times.setdefault((what, "sshfs"), []).append(await on_server(command.format(plain)))
                # sync: a path new to sync each round (hard links of the same files), so
                # every round copies it all
                source = "large" if what == "read" else "tree"
                fresh = f"round{attempt}-{what}"
                await asyncio.to_thread(
                    subprocess.run, ["cp", "-al", str(root / source), str(root / fresh)], check=True
                )
                pushed = await sync_push(fresh)
                local = await on_server(
                    command.replace("{}/" + source, "{}/" + fresh).format(workspace)
                )
                times.setdefault((what, "sync"), []).append(pushed + local)
                times.setdefault((what, "sync (push only)"), []).append(pushed)

        print()
        print(f"sshfs options: {args.sshfs_options}")
        print(f"{'':28}{'best s':>10}{'vs sshfs':>10}   all runs")
        for what, label in (("read", f"read {large_mb} MB"), ("list", f"list {args.small} files")):
            base = min(times[(what, "sshfs")])
            print(label)
            for how in ("mount", "sshfs", "sync", "sync (push only)"):
                runs = times[(what, how)]
                best = min(runs)
                ratio = best / base if base else float("nan")
                print(
                    f"  {how:26}{best:10.3f}{ratio:9.2f}x   " + " ".join(f"{t:.3f}" for t in runs)
                )
        print()
        print(
            "Throughput of the read: "
            + ", ".join(
                f"{how} {large_mb / min(times[('read', how)]):.0f} MB/s"
                for how in ("mount", "sshfs")
            )
        )
    finally:
        if services is not None:
            await services.close()
        for point in mounted:
            await asyncio.to_thread(
                subprocess.run, ["fusermount3", "-u", "-z", str(point)], capture_output=True
            )
        if sshd is not None:
            sshd.process.terminate()
            sshd.process.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    asyncio.run(main())
