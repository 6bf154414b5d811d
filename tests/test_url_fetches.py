"""Documents at http(s) URLs (the image catalogue, price tables) are read off the event loop,
within a time limit and a size limit, with errors that name the URL and the limit: a real
Jupyter server keeps answering while a slow server holds a fetch up."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_compute_servers.fetch import FetchError, read_url

from .hostile_http import HostileHTTP, hostile_http


@pytest.fixture
def http() -> Iterator[HostileHTTP]:
    with hostile_http() as state:
        yield state


@pytest.fixture
def price_path() -> str | None:
    """Where the local cloud's price table is configured (a path on the hostile server)."""
    return None


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], http: HostileHTTP, price_path):
    config = copy.deepcopy(jp_server_config)
    if price_path is not None:
        config["ComputeServerCosts"] = {
            "price_tables": {"local": f"{http.url}{price_path}"},
            "price_table_timeout": 2,
            "price_table_max_bytes": 100_000,
        }
    return config


async def wait_asked(http: HostileHTTP) -> None:
    assert await asyncio.to_thread(http.asked.wait, 30)
    http.asked.clear()


async def test_reloading_the_image_catalogue_is_bounded_and_holds_nothing_up(
    api, http, jp_serverapp
):
    catalog = jp_serverapp.web_app.settings["compute_servers_images"]
    before = catalog.images()
    catalog.timeout = 2
    catalog.max_bytes = 100_000
    for path, expected in (
        ("/slow", "no complete answer within 2 s (the limit image_catalog_timeout)"),
        ("/drip", "no complete answer within 2 s"),  # each byte in time, all of it not
        ("/huge", "larger than the limit of 100000 bytes (image_catalog_max_bytes)"),
        ("/big", "it is 2097152 bytes, larger than the limit of 100000 bytes"),
    ):
        catalog.source = f"{http.url}{path}"
        reload = asyncio.ensure_future(api("POST", "images/reload"))
        await wait_asked(http)
        if path in ("/slow", "/drip"):
            code, status = await api("GET", "status")
            assert code == 200, status
            assert not reload.done()  # the fetch is still held up, Jupyter is not
        code, error = await reload
        assert code == 400, error
        assert f"{http.url}{path}" in error["message"], error
        assert expected in error["message"], error
        assert catalog.images() == before  # the previous catalogue stays


@pytest.mark.parametrize(
    ("price_path", "expected"),
    [
        ("/slow", "no complete answer within 2 s (the limit price_table_timeout)"),
        ("/huge", "larger than the limit of 100000 bytes (price_table_max_bytes)"),
    ],
)
async def test_a_price_table_at_a_url_is_fetched_in_the_background(
    api, http, jp_serverapp, price_path, expected
):
    costs = jp_serverapp.web_app.settings["compute_servers_costs"]
    await wait_asked(http)
    code, status = await api("GET", "status")
    assert code == 200, status
    if price_path == "/slow":
        assert costs._loading is not None and not costs._loading.done()
        code, estimate = await api("POST", "estimate", {"cloud": "local", "config": {}})
        assert code == 200, estimate
        running = estimate["rates"]["running"]
        assert running["hourly"] is None or running["unknown"], running
        assert "being fetched" in str(estimate), estimate
    await asyncio.wait_for(asyncio.shield(costs._loading), 60)
    error = costs.book.errors["local"]
    assert f"{http.url}{price_path}" in error and expected in error, error


def test_read_url_bounds_time_and_size(http):
    with pytest.raises(FetchError, match=r"within 1 s"):
        read_url(f"{http.url}/drip", timeout=1, max_bytes=10**6)
    with pytest.raises(FetchError, match=r"larger than the limit of 1000 bytes"):
        read_url(f"{http.url}/huge", timeout=30, max_bytes=1000)
    with pytest.raises(FetchError, match=r"refused|Errno"):
        read_url("http://127.0.0.1:9/", timeout=5, max_bytes=1000)
