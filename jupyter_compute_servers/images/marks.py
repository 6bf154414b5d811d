"""Where the image catalogue's "tested" marks are kept: which versions an admin verified.

Standalone, one person's data directory (``images-tested.json``, as before: a file that needs
no schema and survives a new database). In team mode, the team's shared database (the table
``image_marks``, revision 0008), so an admin's mark is every user's: PostgreSQL lets only the
admins' group role insert, update or delete a mark (``db/roles``), every user's login read
them. A mark is a row (``marked_by`` the admin, ``marked_at`` when); taking it back deletes
the row. A version the catalogue itself says is tested stays tested (as with the file).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy import Column, Double, Table, Text, delete, select

from ..db import Database, metadata

#: The tested marks of the team (team mode): one row per (image, version) marked tested.
image_marks = Table(
    "image_marks",
    metadata,
    Column("image_id", Text, primary_key=True),
    Column("tag", Text, primary_key=True),
    Column("marked_by", Text, nullable=False),
    Column("marked_at", Double, nullable=False),
)


class TestedMarks(Protocol):
    """The marks: ``{image_id: {tag: True}}``; ``set`` marks or unmarks one version."""

    #: Where they are, for messages ("the team database", a path).
    where: str

    def read(self) -> dict[str, dict[str, bool]]: ...

    def set(self, image_id: str, tag: str, tested: bool, by: str) -> None: ...


class FileMarks:
    """Standalone: a JSON file in the user's data directory, ``{image: {tag: bool}}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def read(self) -> dict[str, dict[str, bool]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(image): {str(tag): bool(v) for tag, v in tags.items()}
            for image, tags in data.items()
            if isinstance(tags, dict)
        }

    def set(self, image_id: str, tag: str, tested: bool, by: str) -> None:
        data = self.read()
        data.setdefault(image_id, {})[tag] = tested
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


class DatabaseMarks:
    """Team mode: the shared database's ``image_marks``, through the one database owner."""

    where = "the team database"

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    def read(self) -> dict[str, dict[str, bool]]:
        marks: dict[str, dict[str, bool]] = {}
        with self.database.read() as db:
            for image_id, tag in db.execute(select(image_marks.c.image_id, image_marks.c.tag)):
                marks.setdefault(image_id, {})[tag] = True
        return marks

    def set(self, image_id: str, tag: str, tested: bool, by: str) -> None:
        # (A login PostgreSQL keeps from the marks, a user's, is refused there: the handlers
        # answer that 403, naming who may.)
        with self.database.transaction() as db:
            if not tested:
                db.execute(
                    delete(image_marks).where(
                        image_marks.c.image_id == image_id, image_marks.c.tag == tag
                    )
                )
                return
            at = float(self.clock())
            db.execute(
                self.database.insert(image_marks)
                .values(image_id=image_id, tag=tag, marked_by=by, marked_at=at)
                .on_conflict_do_update(
                    index_elements=["image_id", "tag"], set_={"marked_by": by, "marked_at": at}
                )
            )
