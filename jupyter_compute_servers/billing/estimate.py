"""``POST estimate``: what a configuration costs before it exists (or before an edit).

The body is validated as creating (``{"cloud", "config"}``) or editing (``{"server_id",
"config"}``: a partial configuration over the server's) would validate it. The answer gives
the hourly rate in each state with its parts, sources and the parts whose price is unknown,
and a 30-day projection for ``hours_per_day`` hours running a day (24 by default), the
rest of the time off.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, ValidationError
from ..models import (
    ServerConfig,
    check_no_unknown,
    parse_id,
    parse_number,
    parse_object,
    parse_str,
)
from .prices import CURRENCY, HOURS_PER_MONTH, StateRates, money

if TYPE_CHECKING:
    from ..clouds.base import Cloud
    from .service import ServerControl

ESTIMATE_FIELDS = ("cloud", "config", "server_id", "hours_per_day")
PROJECTION_DAYS = 30


def parse_estimate(manager: ServerControl, body: Any) -> tuple[str, Cloud, ServerConfig, float]:
    """(cloud name, cloud, complete configuration, hours running per day) of a request."""
    data = parse_object(body, "body")
    check_no_unknown(data, ESTIMATE_FIELDS, "")
    if "server_id" in data:
        server_id = parse_id(data["server_id"], "server_id", "compute server")
        try:
            server = manager.get_server(server_id)
        except NotFoundError:
            raise NotFoundError(
                f"No compute server with id {server_id}.", field="server_id"
            ) from None
        if "cloud" in data and data["cloud"] != server.cloud:
            raise ValidationError(
                f"cloud cannot change: server {server.name!r} is on {server.cloud!r}.",
                field="cloud",
            )
        cloud = manager.cloud_for(server)
        cloud_name = server.cloud
        config = cloud.make_config(
            parse_object(data["config"], "config") if "config" in data else None,
            base=server.config,
        )
    else:
        requested = data.get("cloud", next(iter(manager.clouds), None))
        cloud_name = parse_str(requested, "cloud", max_length=64) if requested else ""
        if cloud_name not in manager.clouds:
            enabled = ", ".join(manager.clouds) or "none"
            raise ValidationError(
                f"cloud {cloud_name!r} is not enabled here (enabled: {enabled}).", field="cloud"
            )
        cloud = manager.clouds[cloud_name]
        config = cloud.make_config(
            parse_object(data["config"], "config") if "config" in data else None
        )
    hours = parse_number(data.get("hours_per_day", 24), "hours_per_day", minimum=0, maximum=24)
    return cloud_name, cloud, config, hours


def estimate_json(
    cloud_name: str, config: ServerConfig, rates: StateRates, hours_per_day: float
) -> dict[str, Any]:
    running_hours = Decimal(str(hours_per_day)) * PROJECTION_DAYS
    off_hours = (24 - Decimal(str(hours_per_day))) * PROJECTION_DAYS
    amount = rates.running.hourly * running_hours + rates.off.hourly * off_hours
    unknown = (rates.running.unknown if running_hours else []) + (
        rates.off.unknown if off_hours else []
    )
    all_unknown = [
        *rates.running.unknown,
        *rates.off.unknown,
        *(rates.suspended.unknown if rates.suspended else []),
    ]
    return {
        "cloud": cloud_name,
        "config": config.to_json(),
        "currency": CURRENCY,
        "hours_per_month": int(HOURS_PER_MONTH),
        "rates": rates.to_json(parts=True),
        "projection": {
            "days": PROJECTION_DAYS,
            "hours_per_day": hours_per_day,
            "amount": money(amount),
            "unknown": list(dict.fromkeys(unknown)),
        },
        "complete": not all_unknown,
    }
