"""REST handlers for costs: estimates before creating, and spend so far."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ..billing.service import ComputeServerCosts
from ..errors import ConflictError
from .base import ComputeServersAPIHandler


class _CostsHandler(ComputeServersAPIHandler):
    @property
    def costs(self) -> ComputeServerCosts:
        costs = self.app.manager.billing
        if costs is None:
            raise ConflictError("Costs are not set up in this process.")
        return costs


class EstimateHandler(_CostsHandler):
    """``POST /estimate``: what a configuration costs per hour in each state, and a month."""

    @web.authenticated
    @authorized("read")  # it changes nothing
    async def post(self) -> None:
        self.write_json(self.costs.estimate(self.get_json_object()))


class CostsHandler(_CostsHandler):
    """``GET /costs``: spend of every server and in total, the current rate, the budget."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(self.costs.costs_json())
