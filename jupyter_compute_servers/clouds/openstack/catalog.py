"""What an OpenStack project offers, as read from its APIs: flavors (with the GPUs their extra
specs ask), images and networks. Built by ``OpenStackCloud.refresh_catalog`` and cached."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: Extra specs that ask devices of a flavor: PCI passthrough by alias ("v100:1", or
#: "a100:2,t4:1"), and a vGPU of Placement's VGPU resource class.
PCI_ALIAS = "pci_passthrough:alias"
VGPU = "resources:VGPU"
_ALIAS_ITEM = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*:\s*([0-9]+)\s*$")


@dataclass(frozen=True)
class Flavor:
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    #: The GPU type (a PCI alias, or "vgpu") and how many, or None.
    gpu_type: str | None = None
    gpu_count: int = 0

    @property
    def memory_gb(self) -> float:
        return round(self.ram_mb / 1024, 2)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": "gpu" if self.gpu_type else "cpu",
            "cpu": self.vcpus,
            "memory_gb": self.memory_gb,
            "disk_gb": self.disk_gb,
            "gpu": {"type": self.gpu_type, "count": self.gpu_count} if self.gpu_type else None,
            "gpus_attachable": False,
            "arch": "x86_64",
        }


def gpus_of(extra_specs: dict[str, Any]) -> tuple[str | None, int]:
    """The GPU type and count a flavor's extra specs ask: the first PCI alias (the count summed
    over its entries), else a vGPU. (None, 0) without."""
    kinds: dict[str, int] = {}
    for item in str(extra_specs.get(PCI_ALIAS) or "").split(","):
        match = _ALIAS_ITEM.match(item)
        if match:
            kinds[match[1]] = kinds.get(match[1], 0) + int(match[2])
    if kinds:
        alias = next(iter(kinds))
        return alias, kinds[alias]
    try:
        vgpus = int(str(extra_specs.get(VGPU) or "0"))
    except ValueError:
        vgpus = 0
    return ("vgpu", vgpus) if vgpus > 0 else (None, 0)


def flavor_from(resource: Any) -> Flavor:
    """A flavor of openstacksdk (``compute.flavors(details=True)``, extra specs included from
    microversion 2.61)."""
    gpu_type, count = gpus_of(dict(resource.extra_specs or {}))
    return Flavor(
        id=str(resource.id),
        name=str(resource.name),
        vcpus=int(resource.vcpus or 0),
        ram_mb=int(resource.ram or 0),
        disk_gb=int(resource.disk or 0),
        gpu_type=gpu_type,
        gpu_count=count,
    )


@dataclass
class Catalog:
    """The project's flavors, images and networks, by name."""

    flavors: dict[str, Flavor] = field(default_factory=dict)
    #: Glance images: name -> {"id", "name", "min_disk"}.
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Networks: name -> {"id", "name", "external"}.
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    key_pairs: list[str] = field(default_factory=list)

    def gpus(self) -> list[dict[str, Any]]:
        """The GPU types the flavors bring, in the gcp cloud's offerings shape (bundled with
        their flavors, never attached on their own)."""
        types: dict[str, list[Flavor]] = {}
        for flavor in self.flavors.values():
            if flavor.gpu_type:
                types.setdefault(flavor.gpu_type, []).append(flavor)
        return [
            {
                "type": gpu_type,
                "label": gpu_type.upper() if gpu_type != "vgpu" else "vGPU",
                "memory_gb": 0,
                "machine_family": "gpu",
                "attachable": False,
                "counts": sorted({f.gpu_count for f in flavors}),
                "machine_types": [f.name for f in flavors],
                "zones": None,
            }
            for gpu_type, flavors in types.items()
        ]

    def image(self, name_or_id: str) -> dict[str, Any] | None:
        found = self.images.get(name_or_id)
        if found is not None:
            return found
        return next((i for i in self.images.values() if i["id"] == name_or_id), None)

    def network(self, name_or_id: str) -> dict[str, Any] | None:
        found = self.networks.get(name_or_id)
        if found is not None:
            return found
        return next((n for n in self.networks.values() if n["id"] == name_or_id), None)
