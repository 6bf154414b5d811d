"""The server's sync process alone, fed a recorded first sync of small files: one ``put`` per
file (a header, the data and a trailer in; one answer out) against ``puts`` of a batch of files
(one request and one answer per batch, as the engine sends them), interleaved.

    python benchmarks/sync_batch.py [--files N] [--batch N] [--repeat N]

The requests are written to a file first and the sync process (``agent/sync_agent.py``, its
source sent on stdin as over SSH) reads them from that file, so neither the channel nor this
process is in the measurement: only the sync process's own CPU (``wait4``'s user and system
seconds) and wall time, into a fresh tree in a temporary directory each run. The system time is
mostly the kernel creating files (the same in both: it moves with the disk's load), so the user
time is the figure this compares. Prints each run and the ratios of the best, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jupyter_compute_servers.agent import SYNC_AGENT_SOURCE, bootstrap

MTIME_NS = 10**18


def requests(files: list[tuple[str, bytes]], root: str, batch: int) -> bytes:
    """The sync process's whole input: its source, an open, the files, a flush."""
    out = [SYNC_AGENT_SOURCE, json.dumps({"op": "open", "root": root}).encode() + b"\n"]
    if batch > 1:
        for k in range(0, len(files), batch):
            part = files[k : k + batch]
            entries = [[path, len(data), 0o644, MTIME_NS, None] for path, data in part]
            payload = b"".join(data for _, data in part)
            head = {"op": "puts", "files": entries, "size": len(payload)}
            out.append(json.dumps(head).encode() + b"\n" + payload)
    else:
        for path, data in files:
            head = {"op": "put", "path": path, "size": len(data), "mode": 0o644,
                    "mtime_ns": MTIME_NS, "expect": None}  # fmt: skip
            out.append(json.dumps(head).encode() + b"\n" + data + b'{"ok":true}\n')
    out.append(b'{"op":"flush"}\n')
    return b"".join(out)


def run(tmp: Path, files: list[tuple[str, bytes]], batch: int) -> tuple[float, float, float]:
    """One first sync into an empty tree: (wall, user, system) seconds of the sync process."""
    root = tmp / "workspace"
    shutil.rmtree(root, ignore_errors=True)
    source = tmp / "requests"
    source.write_bytes(requests(files, str(root), batch))
    subprocess.run(["sync"], check=False)  # the last run's writeback is not paid by this one
    with source.open("rb") as stdin, (tmp / "answers").open("wb") as stdout:
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-u", "-c", bootstrap(SYNC_AGENT_SOURCE)], stdin=stdin, stdout=stdout
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    answers = (tmp / "answers").read_bytes()
    written = sum(1 for _ in root.rglob("*.txt"))
    if status != 0 or written != len(files) or b'"ok":false' in answers:
        raise SystemExit(f"the sync process failed (status {status}, {written} files written)")
    return wall, usage.ru_utime, usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128, help="files per puts (the engine's)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(1)
    files = [
        (f"d{i // 100}/f{i}.txt", rng.randbytes(rng.randint(100, 9000))) for i in range(args.files)
    ]
    tmp = Path(tempfile.mkdtemp(prefix="jcs-bench-sync-batch-"))
    ways = {"put per file": 1, f"puts of {args.batch}": args.batch}
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in ways}
    try:
        for _ in range(args.repeat):
            for name, batch in ways.items():
                times[name].append(run(tmp, files, batch))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.files} small files ({sum(len(d) for _, d in files) >> 20} MiB), "
          f"the server's sync process alone, best of {args.repeat} (interleaved)")  # fmt: skip
    print(f"{'':16}{'wall':>8}{'user':>8}{'system':>8}   all runs (wall/user/system)")
    best = {}
    for name, runs in times.items():
        best[name] = [min(r[i] for r in runs) for i in range(3)]
        each = " ".join(f"{w:.2f}/{u:.2f}/{s:.2f}" for w, u, s in runs)
        print(f"{name:16}" + "".join(f"{v:>7.2f}s" for v in best[name]) + f"   {each}")
    old, new = best["put per file"], best[f"puts of {args.batch}"]
    print(
        f"puts / put: wall {new[0] / old[0]:.2f}x, user {new[1] / old[1]:.2f}x, "
        f"system {new[2] / old[2]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
