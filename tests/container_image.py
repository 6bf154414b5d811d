"""Real container images for the tests, built here from Debian's packages (no registry is
reachable from CI): ``mmdebstrap`` makes a root file system with the packages, ``podman
import`` turns it into an image.

An image is named by a hash of what goes into it (packages, suite, mirror, hooks), so a
second run finds it in podman's storage, or imports the tar kept under the cache dir
(``$JCS_TEST_CACHE``, else ``~/.cache/jupyter-compute-servers-tests``), and builds nothing.

The engine runs with the settings in ``tests/containers.conf`` (through ``CONTAINERS_CONF``):
this machine's kernel needs runc, cgroupfs and lowered ulimits (see TOOLCHAIN.md). The
product itself is never given them; it runs whatever engine the machine has, as configured.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONTAINERS_CONF = Path(__file__).parent / "containers.conf"
SUITE = "bookworm"
#: The test image: python3 with ipykernel (and its kernel spec), ps for the terminal tests.
KERNEL_PACKAGES = ("python3-ipykernel", "procps")
#: A file only the test images have: proof that a process runs in one.
MARKER = "/etc/jcs-test-image"
BUILD_TIMEOUT = 600


def cache_dir() -> Path:
    path = Path(
        os.environ.get("JCS_TEST_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        / "jupyter-compute-servers-tests"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env=engine_env(),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    return result


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def mirror() -> str:
    """The Debian mirror apt uses here (CI machines have their own)."""
    for source in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    for line in Path("/etc/apt/sources.list").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["deb"]:
            return next(p for p in parts[1:] if "://" in p)
    raise RuntimeError("no Debian mirror found in /etc/apt")


def debian_image(name: str, packages: tuple[str, ...]) -> str:
    """``localhost/NAME:HASH`` with these Debian packages, built once per machine and kept."""
    url = mirror()
    recipe = f"{SUITE} {url} {' '.join(sorted(packages))} marker-v1"
    tag = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    reference = f"localhost/{name}:{tag}"
    if image_exists(reference):
        return reference
    tar = cache_dir() / f"{name}-{tag}.tar"
    # Two test processes (or engineers) may ask at once: one builds, the other waits.
    with open(cache_dir() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(reference):
            return reference
        if not tar.exists():
            if shutil.which("mmdebstrap") is None:
                raise RuntimeError("mmdebstrap is not installed (apt-get install mmdebstrap)")
            partial = tar.with_suffix(".partial.tar")
            started = time.monotonic()
            subprocess.run(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=apt",
                    f"--include={','.join(packages)}",
                    # Documentation, manuals and translations: a third of the size, unused.
                    "--dpkgopt=path-exclude=/usr/share/doc/*",
                    "--dpkgopt=path-exclude=/usr/share/man/*",
                    "--dpkgopt=path-exclude=/usr/share/locale/*",
                    f'--customize-hook=echo {reference} > "$1{MARKER}"',
                    SUITE,
                    str(partial),
                    f"deb {url} {SUITE} main",
                ],
                check=True,
                capture_output=True,
                timeout=BUILD_TIMEOUT,
            )
            partial.rename(tar)
            print(f"built {reference} in {time.monotonic() - started:.0f} s")
        podman("import", "--quiet", str(tar), reference)
    return reference


def without_module(base: str, name: str, paths: tuple[str, ...]) -> str:
    """``base`` with these paths deleted, committed as ``localhost/NAME:<base's tag>``: a
    broken image in seconds, without a second bootstrap."""
    reference = f"localhost/{name}:{base.rsplit(':', 1)[1]}"
    if image_exists(reference):
        return reference
    container = f"jcs-derive-{os.getpid()}"
    podman("run", "--name", container, base, "rm", "-rf", *paths)
    try:
        podman("commit", "--quiet", container, reference)
    finally:
        podman("rm", "--force", container, check=False)
    return reference


class Registry:
    """Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1: something
    real to pull from, as no registry outside is reachable. The engine is told it speaks
    plain HTTP through a registries.conf of the test's (``CONTAINERS_REGISTRIES_CONF``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.registries_conf = directory / "registries.conf"
        self.registries_conf.write_text(
            f'[[registry]]\nlocation = "{self.address}"\ninsecure = true\n'
        )
        self.config = directory / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            f"http:\n  addr: {self.address}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if shutil.which("docker-registry") is None:
            raise RuntimeError("docker-registry is not installed (apt-get install docker-registry)")
        with open(self.directory / "registry.log", "ab") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while not _listening(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "registry.log").read_text()[-800:]
                raise RuntimeError(f"docker-registry did not start: {log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def push_other_architecture(self, name: str, arch: str = "arm64") -> str:
        """A manifest list with one tiny image for ``arch`` alone (FROM scratch, nothing to
        run, so no emulation needed): what a registry answers for an image not built for
        this machine."""
        directory = self.directory / f"only-{arch}"
        directory.mkdir()
        (directory / "hello").write_text("hello\n")
        (directory / "Containerfile").write_text("FROM scratch\nCOPY hello /hello\n")
        local = f"localhost/jcs-test-only-{arch}:{os.getpid()}"
        listed = f"localhost/jcs-test-only-{arch}-list:{os.getpid()}"
        remote = f"{self.address}/{name}"
        env = {**engine_env(), "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}
        try:
            for argv in (
                ["build", "--quiet", "--platform", f"linux/{arch}", "--tag", local, str(directory)],
                ["manifest", "create", listed],
                ["manifest", "add", listed, f"containers-storage:{local}"],
                ["manifest", "push", "--all", listed, f"docker://{remote}"],
            ):
                subprocess.run(
                    ["podman", *argv], check=True, capture_output=True, env=env, timeout=120
                )
        finally:
            podman("manifest", "rm", listed, check=False)
            podman("rmi", local, check=False)
        return remote

    def push(self, local: str, name: str) -> str:
        """``local`` into the registry as ``ADDRESS/NAME``, not tagged so here."""
        remote = f"{self.address}/{name}"
        env = {**engine_env(), "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}
        subprocess.run(
            ["podman", "push", "--quiet", local, remote],
            check=True,
            capture_output=True,
            env=env,
            timeout=300,
        )
        return remote


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
