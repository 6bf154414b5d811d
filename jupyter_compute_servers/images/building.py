"""``jupyter compute-servers images build DIR --image ID --tag TAG``: an admin builds a version.

DIR holds a ``Containerfile`` (or ``Dockerfile``), as in the catalogue's repository (one
directory per image, built with ``make`` in cocalc-compute-docker). The image's own engine
(its runtime kind: podman or docker) builds it as the catalogue names it (``runtime.image``
with ``{tag}``), for ``--arch`` where given, and the version is added to the catalogue (the
local ``images-built.json``) as untested: ``images test ID:TAG --mark-tested`` marks it.
"""

from __future__ import annotations

import asyncio
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ComputeServersError, ValidationError
from .catalog import ImageCatalog, normalize_arch

#: The catalogue's architectures as OCI platforms.
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
CONTAINERFILES = ("Containerfile", "Dockerfile")


def build_command(
    catalog: ImageCatalog, directory: Path, image_id: str, tag: str, arch: str | None
) -> tuple[list[str], str]:
    """The engine's argument vector and the reference it builds; a ValidationError naming
    the argument when something is wrong."""
    image = catalog.get(image_id)
    kind = image["runtime"]["kind"]
    if kind not in ("podman", "docker"):
        raise ValidationError(
            f"{image_id} runs on {kind}, not a container engine that builds images.",
            field="image",
        )
    if "{tag}" not in image["runtime"]["image"]:
        raise ValidationError(
            f"{image_id}'s runtime.image has no {{tag}} to put the built tag in.", field="image"
        )
    if not directory.is_dir():
        raise ValidationError(f"{directory} is not a directory.", field="directory")
    containerfile = next((directory / n for n in CONTAINERFILES if (directory / n).is_file()), None)
    if containerfile is None:
        raise ValidationError(
            f"{directory} has no {' or '.join(CONTAINERFILES)}.", field="directory"
        )
    wanted = normalize_arch(arch) if arch else None
    if wanted is not None:
        if wanted not in PLATFORMS:
            raise ValidationError(
                f"--arch {arch!r} is not one of {', '.join(PLATFORMS)}.", field="arch"
            )
        if wanted not in image.get("arch", list(PLATFORMS)):
            raise ValidationError(f"{image_id} is not offered for {wanted}.", field="arch")
    executable = shutil.which(kind)
    if executable is None:
        raise ValidationError(f"{kind} is not installed here; it builds {image_id}.", field="image")
    reference = image["runtime"]["image"].replace("{tag}", tag)
    argv = [executable, "build", "--tag", reference, "--file", str(containerfile)]
    if wanted is not None:
        # Another architecture needs the engine's emulation (qemu-user-static) for RUN steps.
        argv += ["--platform", PLATFORMS[wanted]]
    return [*argv, str(directory)], reference


async def build_image(
    catalog: ImageCatalog,
    directory: Path,
    image_id: str,
    tag: str,
    *,
    arch: str | None = None,
    report: Callable[[str], None] = print,
) -> str:
    """Build, then record the version as untested; answers the built reference."""
    if catalog.built_file is None:  # said before building, not after
        raise ValidationError("No file to record built versions in.", field="built_file")
    argv, reference = build_command(catalog, directory, image_id, tag, arch)
    report(f"Building {reference} from {directory}")
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    tail: list[str] = []
    async for raw in process.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            tail = [*tail[-20:], line]
            report(f"  {line}")
    if await process.wait() != 0:
        raise ComputeServersError(
            f"Building {reference} failed (exit code {process.returncode}): {' / '.join(tail[-3:])}"
        )
    built_for = normalize_arch(arch) if arch else normalize_arch(platform.machine())
    label = f"{tag} (built here {time.strftime('%Y-%m-%d')}, {built_for})"
    catalog.add_built(image_id, tag, label)
    report(
        f"Built {reference} in {time.monotonic() - started:.0f} s; {image_id}:{tag} is in the "
        f"catalogue as untested: run `jupyter compute-servers images test {image_id}:{tag} "
        "--mark-tested` to test it."
    )
    return reference
