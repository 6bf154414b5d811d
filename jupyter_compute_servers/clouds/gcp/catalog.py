"""What Google Compute Engine offers, as far as the ``gcp`` cloud checks it before any API call.

Machine types, GPUs and which machine families they attach to, disk types, and regions. This is
a built-in table (from Google's public documentation, not fetched): the live API is asked for
what each zone offers (``GCPCloud.refresh_catalog``), and Google has the last word at insert
time. Nothing here is secret or per-project.

GPU rules (https://cloud.google.com/compute/docs/gpus):

- T4, V100, P100 and P4 attach to N1 machine types (``guest_accelerators``), 1, 2 or 4 per VM
  (V100 also 8), with at most so many vCPUs per GPU count.
- L4 (G2), A100 40GB (A2 standard), A100 80GB (A2 ultra) and H100 (A3) come with their
  accelerator-optimized machine type: the type fixes the GPU and its count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GpuModel:
    """A GPU Compute Engine offers, by its accelerator type name (``nvidia-tesla-t4``)."""

    type: str
    label: str
    memory_gb: int
    #: Machine families it runs on ("n1" for attachable GPUs).
    family: str
    #: For GPUs attached to N1 VMs: allowed counts, each with the most vCPUs it allows.
    max_vcpus: dict[int, int] = field(default_factory=dict)

    @property
    def attachable(self) -> bool:
        """Attached to an N1 VM (True), or bundled with its machine type (False)."""
        return bool(self.max_vcpus)

    def counts(self) -> list[int]:
        if self.attachable:
            return sorted(self.max_vcpus)
        return sorted({count for gpu, count in BUNDLED_GPUS.values() if gpu == self.type})

    def machine_types(self) -> list[str]:
        return [name for name, (gpu, _) in BUNDLED_GPUS.items() if gpu == self.type]


GPUS: dict[str, GpuModel] = {
    gpu.type: gpu
    for gpu in (
        GpuModel("nvidia-tesla-t4", "NVIDIA T4", 16, "n1", {1: 48, 2: 48, 4: 96}),
        GpuModel("nvidia-tesla-v100", "NVIDIA V100", 16, "n1", {1: 12, 2: 24, 4: 48, 8: 96}),
        GpuModel("nvidia-tesla-p100", "NVIDIA P100", 16, "n1", {1: 16, 2: 32, 4: 64}),
        GpuModel("nvidia-tesla-p4", "NVIDIA P4", 8, "n1", {1: 24, 2: 48, 4: 96}),
        GpuModel("nvidia-l4", "NVIDIA L4", 24, "g2"),
        GpuModel("nvidia-tesla-a100", "NVIDIA A100 40GB", 40, "a2 standard"),
        GpuModel("nvidia-a100-80gb", "NVIDIA A100 80GB", 80, "a2 ultra"),
        GpuModel("nvidia-h100-80gb", "NVIDIA H100 80GB", 80, "a3"),
    )
}

#: Accelerator-optimized machine types and the GPUs that come with them.
BUNDLED_GPUS: dict[str, tuple[str, int]] = {
    **{
        f"g2-standard-{cpus}": ("nvidia-l4", count)
        for cpus, count in ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8))
    },
    **{f"a2-highgpu-{n}g": ("nvidia-tesla-a100", n) for n in (1, 2, 4, 8)},
    "a2-megagpu-16g": ("nvidia-tesla-a100", 16),
    **{f"a2-ultragpu-{n}g": ("nvidia-a100-80gb", n) for n in (1, 2, 4, 8)},
    **{f"a3-highgpu-{n}g": ("nvidia-h100-80gb", n) for n in (1, 2, 4, 8)},
}

#: vCPUs and memory (GB) of accelerator-optimized machine types.
_BUNDLED_SHAPES: dict[str, tuple[int, float]] = {
    "g2-standard-4": (4, 16),
    "g2-standard-8": (8, 32),
    "g2-standard-12": (12, 48),
    "g2-standard-16": (16, 64),
    "g2-standard-24": (24, 96),
    "g2-standard-32": (32, 128),
    "g2-standard-48": (48, 192),
    "g2-standard-96": (96, 384),
    "a2-highgpu-1g": (12, 85),
    "a2-highgpu-2g": (24, 170),
    "a2-highgpu-4g": (48, 340),
    "a2-highgpu-8g": (96, 680),
    "a2-megagpu-16g": (96, 1360),
    "a2-ultragpu-1g": (12, 170),
    "a2-ultragpu-2g": (24, 340),
    "a2-ultragpu-4g": (48, 680),
    "a2-ultragpu-8g": (96, 1360),
    "a3-highgpu-1g": (26, 234),
    "a3-highgpu-2g": (52, 468),
    "a3-highgpu-4g": (104, 936),
    "a3-highgpu-8g": (208, 1872),
}

#: Memory per vCPU of general-purpose shapes, by family and shape.
_SHAPE_MEMORY: dict[str, dict[str, float]] = {
    "e2": {"standard": 4, "highmem": 8, "highcpu": 1},
    "n1": {"standard": 3.75, "highmem": 6.5, "highcpu": 0.9},
    "n2": {"standard": 4, "highmem": 8, "highcpu": 1},
    "n2d": {"standard": 4, "highmem": 8, "highcpu": 1},
}

#: General-purpose machine types offered in the create dialog (others may still be named).
_GENERAL_TYPES: list[tuple[str, str, tuple[int, ...]]] = [
    ("e2", "standard", (2, 4, 8, 16, 32)),
    ("e2", "highmem", (2, 4, 8, 16)),
    ("n1", "standard", (1, 2, 4, 8, 16, 32, 64, 96)),
    ("n1", "highmem", (2, 4, 8, 16, 32, 64, 96)),
    ("n2", "standard", (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)),
    ("n2", "highmem", (2, 4, 8, 16, 32, 48, 64, 80, 96, 128)),
    ("n2d", "standard", (2, 4, 8, 16, 32, 48, 64, 80, 96)),
]

MACHINE_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_GENERAL = re.compile(r"^(?P<family>[a-z][a-z0-9]*)-(?P<shape>[a-z]+)-(?P<cpus>\d+)$")
_CUSTOM = re.compile(r"^(?:(?P<family>[a-z][a-z0-9]*)-)?custom-(?P<cpus>\d+)-(?P<mb>\d+)(-ext)?$")


def machine_family(machine_type: str) -> str:
    """``n1`` for ``n1-standard-4`` and for N1 custom types (``custom-4-16384``)."""
    if machine_type.startswith("custom-"):
        return "n1"
    return machine_type.split("-", 1)[0]


#: Machine families with Arm CPUs (Ampere Altra, Google Axion); all others are x86_64.
ARM_FAMILIES = frozenset({"t2a", "c4a"})


def machine_arch(machine_type: str) -> str:
    return "arm64" if machine_family(machine_type) in ARM_FAMILIES else "x86_64"


def machine_vcpus(machine_type: str) -> int | None:
    if machine_type in _BUNDLED_SHAPES:
        return _BUNDLED_SHAPES[machine_type][0]
    for pattern in (_GENERAL, _CUSTOM):
        match = pattern.fullmatch(machine_type)
        if match:
            return int(match["cpus"])
    return None


def machine_types() -> list[dict[str, Any]]:
    """The machine types the create dialog offers, general purpose first."""
    types: list[dict[str, Any]] = []
    for family, shape, sizes in _GENERAL_TYPES:
        for cpus in sizes:
            types.append(
                {
                    "name": f"{family}-{shape}-{cpus}",
                    "family": family,
                    "cpu": cpus,
                    "memory_gb": round(cpus * _SHAPE_MEMORY[family][shape], 2),
                    "gpu": None,
                    "gpus_attachable": family == "n1",
                }
            )
    for name, (gpu, count) in BUNDLED_GPUS.items():
        cpus, memory = _BUNDLED_SHAPES[name]
        types.append(
            {
                "name": name,
                "family": machine_family(name),
                "cpu": cpus,
                "memory_gb": memory,
                "gpu": {"type": gpu, "count": count},
                "gpus_attachable": False,
            }
        )
    return types


@dataclass(frozen=True)
class DiskType:
    name: str
    label: str
    #: Machine families that cannot use it.
    not_on: frozenset[str] = frozenset()


DISK_TYPES: dict[str, DiskType] = {
    disk.name: disk
    for disk in (
        DiskType("pd-balanced", "Balanced persistent disk (SSD-backed, the usual choice)"),
        DiskType("pd-ssd", "SSD persistent disk (fastest)"),
        DiskType(
            "pd-standard",
            "Standard persistent disk (HDD, cheapest)",
            frozenset({"g2", "a3", "c3", "c3d", "n4", "c4"}),
        ),
    )
}
DISK_MIN_GB = 10
DISK_MAX_GB = 65536

#: Regions and zones offered when the live list is not known (a common subset).
REGIONS: dict[str, list[str]] = {
    "us-central1": ["us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"],
    "us-east1": ["us-east1-b", "us-east1-c", "us-east1-d"],
    "us-east4": ["us-east4-a", "us-east4-b", "us-east4-c"],
    "us-west1": ["us-west1-a", "us-west1-b", "us-west1-c"],
    "us-west4": ["us-west4-a", "us-west4-b", "us-west4-c"],
    "europe-west1": ["europe-west1-b", "europe-west1-c", "europe-west1-d"],
    "europe-west4": ["europe-west4-a", "europe-west4-b", "europe-west4-c"],
    "asia-east1": ["asia-east1-a", "asia-east1-b", "asia-east1-c"],
    "asia-northeast1": ["asia-northeast1-a", "asia-northeast1-b", "asia-northeast1-c"],
    "asia-southeast1": ["asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"],
}
#: Zones of ``REGIONS`` that have each GPU attached to N1, for when the live list is not known,
#: so that the create dialog does not offer one where Google does not: the zones of the rows for
#: one GPU in SkyPilot's catalog (skypilot-org/skypilot-catalog catalogs/v7/gcp/vms.csv at
#: 017e2502, generated from Google's Cloud Billing Catalog and accelerator types), the source of
#: these GPUs' prices in the gcp price table. The regions match Cyclenerd's
#: tools/acceleratortyperegion.csv, the table's other source. The accelerator-optimized types'
#: GPUs are not listed: without the API their zones are not known.
BUILTIN_GPU_ZONES: dict[str, tuple[str, ...]] = {
    "nvidia-tesla-t4": (
        *("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
        *("us-east1-c", "us-east1-d", "us-east4-a", "us-east4-b", "us-east4-c"),
        *("us-west1-a", "us-west1-b", "us-west4-a", "us-west4-b"),
        *("europe-west1-b", "europe-west1-c", "europe-west1-d"),
        *("europe-west4-a", "europe-west4-b", "europe-west4-c"),
        *("asia-east1-a", "asia-east1-c", "asia-northeast1-a", "asia-northeast1-c"),
        *("asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c"),
    ),
    "nvidia-tesla-v100": (
        *("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
        *("us-east1-c", "us-west1-a", "us-west1-b"),
        *("europe-west4-a", "europe-west4-b", "europe-west4-c", "asia-east1-c"),
    ),
    "nvidia-tesla-p100": (
        *("us-central1-c", "us-central1-f", "us-east1-b", "us-east1-c", "us-west1-a", "us-west1-b"),
        *("europe-west1-b", "europe-west1-d", "europe-west4-a", "asia-east1-a", "asia-east1-c"),
    ),
    "nvidia-tesla-p4": (
        *("us-central1-a", "us-central1-c", "us-east4-a", "us-east4-b", "us-east4-c"),
        *("europe-west4-b", "europe-west4-c", "asia-southeast1-b", "asia-southeast1-c"),
    ),
}
ZONE_PATTERN = re.compile(r"^(?P<region>[a-z]+-[a-z]+\d+)-[a-z]$")
REGION_PATTERN = re.compile(r"^[a-z]+-[a-z]+\d+$")


def _counts_text(counts: list[int]) -> str:
    words = [str(c) for c in counts]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_gpu(machine_type: str, gpu_type: str | None, gpu_count: int | None) -> tuple[str, str]:
    """(field, message) when the machine type and GPUs do not go together; else ("", "")."""
    bundled = BUNDLED_GPUS.get(machine_type)
    family = machine_family(machine_type)
    if bundled is not None:
        kind, count = bundled
        label = GPUS[kind].label
        wanted = f'config.gpu {{"type": "{kind}", "count": {count}}}'
        if gpu_type is None:
            return (
                "config.gpu",
                f"Machine type {machine_type} comes with {count} x {label} ({kind}): set "
                f"{wanted}, or choose a machine type without GPUs.",
            )
        if gpu_type != kind:
            return (
                "config.gpu.type",
                f"Machine type {machine_type} comes with {label} ({kind}), not {gpu_type}: set "
                f"{wanted}, or a machine type for {gpu_type}.",
            )
        if gpu_count != count:
            others = [name for name, (g, c) in BUNDLED_GPUS.items() if g == kind and c == gpu_count]
            hint = f"; for {gpu_count} use {' or '.join(others)}" if others else ""
            return (
                "config.gpu.count",
                f"Machine type {machine_type} comes with exactly {count} x {label}{hint}.",
            )
        return "", ""
    if family in ("g2", "a2", "a3"):
        known = [name for name in BUNDLED_GPUS if machine_family(name) == family]
        return (
            "config.machine_type",
            f"Unknown {family.upper()} machine type {machine_type}; the {family.upper()} types "
            f"are {', '.join(known)}.",
        )
    if gpu_type is None:
        return "", ""
    model = GPUS.get(gpu_type)
    if model is None:
        return (
            "config.gpu.type",
            f"config.gpu.type {gpu_type!r} is not a Compute Engine GPU this cloud offers; use "
            f"one of {', '.join(GPUS)}.",
        )
    if not model.attachable:
        return (
            "config.machine_type",
            f"{model.label} ({gpu_type}) comes only with {model.family.upper()} machine types: "
            + ", ".join(
                f"{name} ({count})" for name, (g, count) in BUNDLED_GPUS.items() if g == gpu_type
            )
            + f". {machine_type} cannot have it.",
        )
    if family != "n1":
        return (
            "config.machine_type",
            f"{model.label} ({gpu_type}) GPUs attach only to N1 machine types (such as "
            f"n1-standard-4); {machine_type} is {family.upper()}.",
        )
    if gpu_count not in model.max_vcpus:
        return (
            "config.gpu.count",
            f"An N1 VM takes {_counts_text(model.counts())} x {model.label}, not {gpu_count}.",
        )
    vcpus = machine_vcpus(machine_type)
    limit = model.max_vcpus[gpu_count]
    if vcpus is not None and vcpus > limit:
        return (
            "config.machine_type",
            f"With {gpu_count} x {model.label} an N1 VM may have at most {limit} vCPUs; "
            f"{machine_type} has {vcpus}. Choose a smaller machine type or more GPUs.",
        )
    return "", ""


def check_disk_type(machine_type: str, disk_type: str) -> str:
    """Why the disk type does not suit the machine type ("" when it does)."""
    disk = DISK_TYPES.get(disk_type)
    if disk is None:
        return f"config.disk_type must be one of {', '.join(DISK_TYPES)}; got {disk_type!r}."
    family = machine_family(machine_type)
    if family in disk.not_on:
        usable = [name for name, d in DISK_TYPES.items() if family not in d.not_on]
        return (
            f"{family.upper()} machine types ({machine_type}) cannot use {disk_type} disks; use "
            f"{' or '.join(usable)}."
        )
    return ""
