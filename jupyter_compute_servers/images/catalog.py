"""The image catalogue: which software images servers can run, and which versions are tested.

A JSON document (``catalog.schema.json``) shipped with the package, replaceable by a path or
URL in configuration and reloadable without a restart. Versions an admin verified (``jupyter
compute-servers images test --mark-tested``, ``PUT /images/{id}/versions/{tag}/tested``) are
recorded apart from the catalogue (``marks.py``: a local file standalone, the team's database
in team mode), so the tested flag survives catalogue updates, and in team mode an admin's mark
is seen by every user's server at its next read of the catalogue.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema

from ..errors import ValidationError
from ..fetch import read_url
from ..models import ServerConfig
from .marks import FileMarks, TestedMarks

SCHEMA = json.loads(files(__package__).joinpath("catalog.schema.json").read_text())
DEFAULT_SOURCE = "(built in)"
CONTAINER_KINDS = ("docker", "podman", "apptainer")
#: A version's tag, as the schema says.
TAG = re.compile(
    SCHEMA["$defs"]["image"]["properties"]["versions"]["items"]["properties"]["tag"]["pattern"]
)
#: Tags that move unless the catalogue says otherwise: pulled again at each start.
MOVING_TAGS = frozenset({"latest", "stable", "edge", "nightly", "main", "master"})


class CatalogError(ValidationError):
    """The catalogue is not valid; the message names the entry and the field."""


def _where(document: Any, path: list[Any]) -> str:
    """``images[2] (pytorch).versions[0].tag`` for a path into the document."""
    parts: list[str] = []
    node = document
    for step in path:
        if isinstance(step, int):
            parts[-1] += f"[{step}]"
            node = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str) and len(parts) == 1:
                parts[-1] += f" ({node['id']})"
        else:
            parts.append(str(step))
            node = node.get(step) if isinstance(node, dict) else None
    return ".".join(parts) or "(the document)"


def validate(document: Any) -> list[dict[str, Any]]:
    """The catalogue's images, or a CatalogError naming the first problem's entry and field."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        raise CatalogError(
            f"Image catalogue: {_where(document, list(error.absolute_path))}: {error.message}",
            field=_where(document, list(error.absolute_path)),
        )
    seen: set[str] = set()
    for index, image in enumerate(document["images"]):
        where = f"images[{index}] ({image['id']})"
        if image["id"] in seen:
            raise CatalogError(f"Image catalogue: {where}.id: {image['id']!r} is listed twice.")
        seen.add(image["id"])
        tags = [v["tag"] for v in image["versions"]]
        if len(set(tags)) != len(tags):
            raise CatalogError(f"Image catalogue: {where}.versions: a tag is listed twice.")
        kind = image["runtime"]["kind"]
        if kind in CONTAINER_KINDS and "image" not in image["runtime"]:
            raise CatalogError(f"Image catalogue: {where}.runtime.image: required for {kind}.")
        if kind == "conda" and "conda_env" not in image["runtime"]:
            raise CatalogError(f"Image catalogue: {where}.runtime.conda_env: required for conda.")
    return list(document["images"])


class ImageCatalog:
    """The loaded catalogue plus the record of tested versions (``marks``)."""

    def __init__(
        self,
        source: str = "",
        tested_file: str | Path | None = None,
        *,
        marks: TestedMarks | None = None,
        built_file: str | Path | None = None,
        timeout: float = 30.0,
        max_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        #: A path or an http(s) URL; empty for the catalogue shipped with the package.
        self.source = source
        self.tested_file = Path(tested_file) if tested_file else None
        #: Where the tested marks are: ``marks``, else the file ``tested_file``.
        self.marks: TestedMarks | None = marks or (
            FileMarks(self.tested_file) if self.tested_file else None
        )
        #: Versions an admin built here (``images build``), added to the catalogue's untested.
        self.built_file = Path(built_file) if built_file else None
        #: Bounds on reading a catalogue at a URL: seconds for all of it, and its size.
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._images: list[dict[str, Any]] = []
        #: The images as loaded, before the marks: each version's ``tested`` the catalogue's.
        self._loaded: list[dict[str, Any]] = []
        self.loaded_from = ""
        self.load_error = ""

    def _read(self) -> Any:
        if not self.source:
            return json.loads(files(__package__).joinpath("catalog.json").read_text())
        if re.match(r"^https?://", self.source):
            return json.loads(
                read_url(
                    self.source,
                    timeout=self.timeout,
                    max_bytes=self.max_bytes,
                    timeout_setting="image_catalog_timeout",
                    size_setting="image_catalog_max_bytes",
                )
            )
        return json.loads(Path(os.path.expanduser(self.source)).read_text())

    def load(self) -> None:
        """(Re)load; on any error keep what was loaded before and raise a CatalogError."""
        try:
            document = self._read()
        except (OSError, ValueError) as e:
            raise CatalogError(
                f"Cannot read the image catalogue {self.source or DEFAULT_SOURCE}: {e}",
                field="image_catalog",
            ) from None
        images = validate(document)
        built = self._read_json(self.built_file)
        for image in images:
            tags = {v["tag"] for v in image["versions"]}
            for tag, label in (built.get(image["id"]) or {}).items():
                if tag not in tags and isinstance(label, str) and TAG.fullmatch(tag):
                    image["versions"].append({"tag": tag, "label": label, "tested": False})
        for image in images:
            for version in image["versions"]:
                version["tested"] = bool(version.get("tested"))
        images.sort(key=lambda i: (-i.get("priority", 0), i["label"]))
        marks = self._tested()
        with self._lock:
            self._loaded = images
            self._images = _marked(images, marks)
            self.loaded_from = self.source or DEFAULT_SOURCE
            self.load_error = ""

    @property
    def tested_where(self) -> str:
        """Where the tested marks are kept, for messages."""
        return self.marks.where if self.marks is not None else "(nowhere)"

    def refresh_marks(self) -> None:
        """Read the tested marks again (another admin's, in team mode), keeping the loaded
        catalogue: blocking (a database read), so ``await refresh()`` on the event loop."""
        marks = self._tested()
        with self._lock:
            self._images = _marked(self._loaded, marks)

    async def refresh(self) -> None:
        await asyncio.to_thread(self.refresh_marks)

    async def reload(self) -> None:
        """``load`` off the event loop: reading a URL and validating never hold Jupyter up."""
        await asyncio.to_thread(self.load)

    def load_or_default(self) -> None:
        """At start-up: a broken configured catalogue must not stop Jupyter; fall back to the
        built-in one and keep the error for the API to show."""
        try:
            self.load()
        except CatalogError as e:
            source, self.source = self.source, ""
            self.load()
            self.source = source
            self.load_error = e.message

    @staticmethod
    def _read_json(path: Path | None) -> dict[str, Any]:
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _write_json(path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def _tested(self) -> dict[str, dict[str, bool]]:
        return self.marks.read() if self.marks is not None else {}

    def add_built(self, image_id: str, tag: str, label: str) -> None:
        """Record a version built here; it is untested until ``images test`` passes."""
        self.get(image_id)
        if not TAG.fullmatch(tag):
            raise ValidationError(
                f"tag {tag!r} is not a valid image tag (letters, digits, '.', '_', '-').",
                field="tag",
            )
        if self.built_file is None:
            raise CatalogError("No file to record built versions in.", field="built_file")
        data = self._read_json(self.built_file)
        data.setdefault(image_id, {})[tag] = label
        self._write_json(self.built_file, data)
        self.load()

    def mark_tested(self, image_id: str, tag: str, tested: bool = True, by: str = "") -> None:
        """Mark (or unmark) a version of the catalogue tested, by ``by`` (an admin: who may
        is the caller's to check; in team mode the database checks it too). Blocking."""
        self.version(image_id, tag)
        if self.marks is None:
            raise CatalogError("No file to record tested versions in.", field="tested_file")
        self.marks.set(image_id, tag, tested, by)
        self.refresh_marks()

    # --- reading ----------------------------------------------------------------------------

    def images(self, include_untested: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            images = json.loads(json.dumps(self._images))
        if include_untested:
            return images
        shown = []
        for image in images:
            image["versions"] = [v for v in image["versions"] if v["tested"]]
            if image["versions"]:
                shown.append(image)
        return shown

    def get(self, image_id: str) -> dict[str, Any]:
        with self._lock:
            for image in self._images:
                if image["id"] == image_id:
                    return dict(image)
        known = ", ".join(i["id"] for i in self._images)
        raise ValidationError(
            f"config.image {image_id!r} is not in the image catalogue (it has: {known}).",
            field="config.image",
        )

    def version(self, image_id: str, tag: str) -> dict[str, Any]:
        image = self.get(image_id)
        for version in image["versions"]:
            if version["tag"] == tag:
                return dict(version)
        tags = ", ".join(v["tag"] for v in image["versions"])
        raise ValidationError(
            f"config.image_tag {tag!r} is not a version of {image_id} (it has: {tags}).",
            field="config.image_tag",
        )

    def runtime(self, image_id: str | None, tag: str | None) -> dict[str, Any]:
        """How kernels of this image run: the runtime with ``{tag}`` filled in."""
        if not image_id:
            return {"kind": "python"}
        image = self.get(image_id)
        runtime = dict(image["runtime"])
        if "image" in runtime:
            runtime["image"] = runtime["image"].replace("{tag}", tag or "")
        runtime["gpu"] = image.get("gpu", "optional")
        version: dict[str, Any] = next((v for v in image["versions"] if v["tag"] == tag), {})
        runtime["moving"] = bool(version.get("moving", tag in MOVING_TAGS))
        return runtime

    def check(self, config: ServerConfig, *, arch: str | None) -> None:
        """Refuse an image the hardware cannot run (400 naming the field)."""
        if config.image is None:
            return
        image = self.get(config.image)
        if config.image_tag is None:
            raise ValidationError("config.image_tag is required.", field="config.image_tag")
        self.version(config.image, config.image_tag)
        needs = image.get("gpu", "optional")
        if needs == "required" and config.gpu is None:
            raise ValidationError(
                f"{image['label']} needs a GPU: choose a GPU in config.gpu.", field="config.gpu"
            )
        if needs == "none" and config.gpu is not None:
            raise ValidationError(
                f"{image['label']} cannot use a GPU; set config.gpu to null.", field="config.gpu"
            )
        if arch and arch not in image.get("arch", ["x86_64", "arm64"]):
            raise ValidationError(
                f"{image['label']} is not built for {arch} machines.", field="config.image"
            )
        minimum = image.get("min_disk_gb")
        if minimum and config.disk_gb is not None and config.disk_gb < minimum:
            raise ValidationError(
                f"config.disk_gb is {config.disk_gb}, but {image['label']} needs at least "
                f"{minimum} GB.",
                field="config.disk_gb",
            )


def _marked(
    images: list[dict[str, Any]], marks: dict[str, dict[str, bool]]
) -> list[dict[str, Any]]:
    """A copy of ``images`` with the versions ``marks`` marks tested so (a version the
    catalogue says is tested stays so)."""
    marked = json.loads(json.dumps(images))
    for image in marked:
        for version in image["versions"]:
            version["tested"] = bool(
                version["tested"] or marks.get(image["id"], {}).get(version["tag"])
            )
    return marked


def normalize_arch(machine: str | None) -> str | None:
    """``uname -m`` spellings to the catalogue's."""
    if not machine:
        return None
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine.lower(), machine.lower())
