"""The database: one owner (``Database``) of the engine, the pool, the transactions and the
migrations, shared by every store; see ``database``."""

from .database import (
    BASELINE_REVISION,
    IN_BATCH,
    Database,
    engine_url,
    inserted_id,
    metadata,
    redacted,
    sqlite_path_from_url,
)

__all__ = [
    "BASELINE_REVISION",
    "IN_BATCH",
    "Database",
    "engine_url",
    "inserted_id",
    "metadata",
    "redacted",
    "sqlite_path_from_url",
]
