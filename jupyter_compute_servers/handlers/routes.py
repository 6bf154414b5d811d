"""The URL table: one place that says which handler serves which path."""

from __future__ import annotations

from typing import Any

from .openapi import OpenAPIHandler
from .status import StatusHandler

#: Every route is under ``<base_url>/compute-servers/api/``.
API_PREFIX = "/compute-servers/api"


def api_handlers() -> list[tuple[str, type, dict[str, Any]] | tuple[str, type]]:
    return [
        (rf"{API_PREFIX}/status", StatusHandler),
        (rf"{API_PREFIX}/openapi.json", OpenAPIHandler),
    ]
