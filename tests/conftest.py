"""Shared fixtures: a real Jupyter server (pytest-jupyter) with the extension enabled."""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer

pytest_plugins = ("pytest_jupyter.jupyter_server",)


class RecordingAuthorizer(Authorizer):
    """Lets everything through except the (action, resource) pairs a test denies, and
    remembers every question it was asked, so tests can see that @authorized ran."""

    asked: list[tuple[str, str]] = []
    denied: set[tuple[str, str]] = set()

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        type(self).asked.append((action, resource))
        return (action, resource) not in type(self).denied


@pytest.fixture
def authorizer() -> type[RecordingAuthorizer]:
    RecordingAuthorizer.asked = []
    RecordingAuthorizer.denied = set()
    return RecordingAuthorizer


@pytest.fixture
def jp_server_config(authorizer: type[RecordingAuthorizer]) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_compute_servers": True},
            # Refuse unauthenticated access, as a hardened deployment does: an endpoint without
            # @web.authenticated then raises JupyterServerAuthWarning (an error in pytest).
            "allow_unauthenticated_access": False,
            "authorizer_class": authorizer,
        }
    }
