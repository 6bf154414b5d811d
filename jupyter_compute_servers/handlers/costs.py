"""REST handlers for costs: estimates before creating, and spend so far."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import ComputeServersAPIHandler


class EstimateHandler(ComputeServersAPIHandler):
    """``POST /estimate``: what a configuration costs per hour in each state, and a month."""

    @web.authenticated
    @authorized("read")  # it changes nothing
    async def post(self) -> None:
        self.write_json(self.costs.estimate(self.get_json_object(required=True)))


class CostsHandler(ComputeServersAPIHandler):
    """``GET /costs``: spend of every server and in total, the current rate, the budget."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(self.costs.costs_json())
