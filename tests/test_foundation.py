"""The extension loads, answers its status, and refuses unauthenticated or unauthorized calls."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_compute_servers import __version__
from jupyter_compute_servers.handlers.base import AUTH_RESOURCE
from jupyter_compute_servers.handlers.routes import api_handlers


async def test_extension_is_loaded(jp_serverapp):
    manager = jp_serverapp.extension_manager
    assert "jupyter_compute_servers" in manager.extensions
    assert manager.extensions["jupyter_compute_servers"].enabled


async def test_status_answers_version(jp_fetch, authorizer):
    response = await jp_fetch("compute-servers", "api", "status")
    assert response.code == 200
    body = json.loads(response.body)
    assert body["version"] == __version__
    assert isinstance(body["clouds"], list)
    assert ("read", AUTH_RESOURCE) in authorizer.asked


async def test_unauthenticated_request_is_refused(jp_fetch):
    with pytest.raises(HTTPClientError) as error:
        await jp_fetch("compute-servers", "api", "status", headers={"Authorization": ""})
    assert error.value.code == 403


async def test_unauthorized_request_is_refused(jp_fetch, authorizer):
    authorizer.denied.add(("read", AUTH_RESOURCE))
    with pytest.raises(HTTPClientError) as error:
        await jp_fetch("compute-servers", "api", "status")
    assert error.value.code == 403


async def test_openapi_document_is_served(jp_fetch):
    response = await jp_fetch("compute-servers", "api", "openapi.json")
    document = json.loads(response.body)
    assert document["openapi"].startswith("3.")
    assert "/status" in document["paths"]


def test_every_handler_method_is_authenticated(jp_serverapp):
    """The same check Jupyter runs at start-up (JupyterServerAuthWarning), made explicit."""
    for route in api_handlers():
        assert jp_serverapp.web_app._check_handler_auth(route[0], route[1]) == [], route
