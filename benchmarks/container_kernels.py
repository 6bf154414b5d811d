"""Kernel start in a container against the same kernel outside it, side by side in one run.

    python benchmarks/container_kernels.py [--repeat N]

The image is the tests' (tests/container_image.py: Debian's python3-ipykernel, built with
mmdebstrap the first time, about 40 s, then cached). Interleaved, medians of start to ready
(``AsyncKernelManager.start_kernel()`` then the client's ``wait_for_ready()``):

(a) the container's own cost: Debian's ipykernel in ``podman run --rm --init --network host``
    against the very same files run outside any container (``chroot`` into the image's root
    file system, unpacked for the run): the ratio is what a container adds; the target is
    1.5x or less;
(b) what a user sees: a kernel of a ``local`` compute server whose image is that container,
    against one of a server on the machine's own Python (both through the provisioner, SSH
    and the agent; their ipykernels differ: 6.17 in the image, the venv's outside).

The first start of each kind is reported as "cold" and not counted. It prints a table and
the ratios, and exits 0 when it could measure. The engine runs with tests/containers.conf
(this machine's cgroups need it, see ../shared/TOOLCHAIN.md). Everything it starts (kernels,
servers, containers) is stopped and its temporary directory removed at the end. The machine
is shared and noisy: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.container_image import (  # noqa: E402
    CONTAINERS_CONF,
    KERNEL_PACKAGES,
    cache_dir,
    debian_image,
)

TARGET = 1.5


def write_spec(data_dir: Path, name: str, argv: list[str]) -> None:
    spec = data_dir / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": name, "language": "python"})
    )


async def start_to_ready(kernel_name: str, connection_dir: Path | None) -> tuple[float, Any]:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=kernel_name)
    if connection_dir is not None:
        # Where the kernel can read it: inside the chroot, or a directory podman mounts.
        km.connection_file = str(connection_dir / f"kernel-{time.monotonic_ns()}.json")
    started = time.perf_counter()
    await km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels(hb=False)
    try:
        await kc.wait_for_ready(timeout=120)
        return time.perf_counter() - started, km
    finally:
        kc.stop_channels()


async def measure(kinds: dict[str, tuple[str, Path | None]], repeat: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {label: [] for label in kinds}
    cold: dict[str, float] = {}
    for round_ in range(repeat + 1):
        for label, (name, connection_dir) in kinds.items():
            seconds, km = await start_to_ready(name, connection_dir)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(km.shutdown_kernel(now=False), 60)
            if round_ == 0:
                cold[label] = seconds
            else:
                times[label].append(seconds)
        print(f"  round {round_}/{repeat}", file=sys.stderr)
    return {"times": times, "cold": cold}


def cli(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={data_dir}",
            *list(args),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"compute-servers {' '.join(args)}: {result.stderr.strip()[-600:]}")
    return result.stdout


def report(title: str, results: dict[str, Any], baseline: str, subject: str) -> float:
    print(f"\n{title}")
    print(f"  {'':58} {'cold':>7} {'median':>8} {'min':>7} {'max':>7}")
    for label, values in results["times"].items():
        print(
            f"  {label:58} {results['cold'][label]:7.3f} {statistics.median(values):8.3f}"
            f" {min(values):7.3f} {max(values):7.3f}"
        )
    ratio = statistics.median(results["times"][subject]) / statistics.median(
        results["times"][baseline]
    )
    print(f"  ratio {subject} / {baseline}: {ratio:.2f}x")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    os.environ["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    root = Path(tempfile.mkdtemp(prefix="jcs-bench-containers-"))
    for name in ("data", "runtime", "config"):
        (root / name).mkdir()
        os.environ[f"JUPYTER_{name.upper()}_DIR"] = str(root / name)
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    data_dir = root / "compute_servers"
    servers: list[str] = []
    try:
        print("The image (built the first time)...", file=sys.stderr)
        image = debian_image("jcs-test-ipykernel", KERNEL_PACKAGES)
        repository, tag = image.rsplit(":", 1)

        # (a) the same files in a container and in a chroot.
        rootfs = root / "rootfs"
        rootfs.mkdir()
        with tarfile.open(cache_dir() / f"jcs-test-ipykernel-{tag}.tar") as tar:
            tar.extractall(rootfs, filter="fully_trusted")  # our own build
        inside = rootfs / "run" / "jcs"
        inside.mkdir(parents=True)
        mounted = root / "connections"
        mounted.mkdir()
        python = ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f"]
        write_spec(
            root / "data",
            "chroot",
            [
                "sh",
                "-c",
                f'exec chroot {rootfs} {" ".join(python)} "${{0#{rootfs}}}"',
                "{connection_file}",
            ],
        )
        podman = [shutil.which("podman") or "podman", "run", "--rm", "--init", "--pull", "never"]
        podman += ["--network", "host", "--user", f"{os.getuid()}:{os.getgid()}"]
        podman += ["--volume", f"{mounted}:{mounted}", image, *python, "{connection_file}"]
        write_spec(root / "data", "podman", podman)
        print("(a) Debian's ipykernel in podman and in a chroot...", file=sys.stderr)
        raw = asyncio.run(
            measure(
                {
                    "same files, chroot (no container)": ("chroot", inside),
                    "podman run --rm --init --network host": ("podman", mounted),
                },
                opts.repeat,
            )
        )

        # (b) through compute servers: the container image and the machine's own Python.
        catalogue = {
            "version": 1,
            "images": [
                {
                    "id": "python",
                    "label": "The machine's own Python",
                    "runtime": {"kind": "python", "python": "python3"},
                    "versions": [{"tag": "system", "tested": True}],
                },
                {
                    "id": "debian",
                    "label": "Debian's ipykernel in podman",
                    "gpu": "none",
                    "runtime": {"kind": "podman", "image": f"{repository}:{{tag}}"},
                    "versions": [{"tag": tag, "tested": True}],
                },
            ],
        }
        (root / "catalog.json").write_text(json.dumps(catalogue))
        # The kernels' provisioner reads the configuration files, as a Jupyter server would.
        (root / "config" / "jupyter_server_config.json").write_text(
            json.dumps({"ComputeServersApp": {"image_catalog": str(root / "catalog.json")}})
        )
        ids = {}
        for name, config in (
            ("own", {"image": "python", "image_tag": "system"}),
            ("ctr", {"image": "debian", "image_tag": tag}),
        ):
            created = json.loads(
                cli(data_dir, "create", name, "--config", json.dumps(config), "--json")
            )
            servers.append(name)
            cli(data_dir, "start", name)
            ids[name] = created["id"]
        print("(b) kernels of compute servers...", file=sys.stderr)
        served = asyncio.run(
            measure(
                {
                    "server on the machine's own Python (venv ipykernel)": (
                        f"compute-{ids['own']}-python3",
                        None,
                    ),
                    "server on the container image (Debian's ipykernel)": (
                        f"compute-{ids['ctr']}-python3",
                        None,
                    ),
                },
                opts.repeat,
            )
        )
        print(f"\nKernel start to ready, seconds ({opts.repeat} interleaved rounds, medians)")
        ratio = report(
            "(a) the container's own cost",
            raw,
            "same files, chroot (no container)",
            "podman run --rm --init --network host",
        )
        print(f"  target {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}")
        report(
            "(b) through compute servers",
            served,
            "server on the machine's own Python (venv ipykernel)",
            "server on the container image (Debian's ipykernel)",
        )
        return 0
    finally:
        for name in servers:
            with contextlib.suppress(Exception):
                cli(data_dir, "stop", name)
            with contextlib.suppress(Exception):
                cli(data_dir, "deprovision", name, "--yes")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
