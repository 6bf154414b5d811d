"""The database: one owner (``Database``) of the engine, the pool, the transactions and the
migrations, shared by every store; see ``database``."""

from .database import (
    BASELINE_REVISION,
    Database,
    by_server,
    engine_url,
    inserted_id,
    metadata,
    redacted,
    sqlite_path_from_url,
)

__all__ = [
    "BASELINE_REVISION",
    "Database",
    "by_server",
    "engine_url",
    "inserted_id",
    "metadata",
    "redacted",
    "sqlite_path_from_url",
]
