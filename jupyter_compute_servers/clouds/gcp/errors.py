"""Google's errors, in words: what the client library raised or a zone operation reported, as a
``GoogleError``, and what a user should read for a failed create or start (``explain``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ...errors import CloudError
from ...models import ServerConfig
from . import catalog

if TYPE_CHECKING:
    from google.cloud import compute_v1


class GoogleError(CloudError):
    """The Compute Engine API refused or failed a call. ``codes`` are Google's reasons
    (``QUOTA_EXCEEDED``, ``quotaExceeded``, ``ZONE_RESOURCE_POOL_EXHAUSTED``...)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        codes: tuple[str, ...] = (),
        google_message: str = "",
        quota: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.codes = codes
        self.google_message = google_message or message
        self.quota = quota or {}

    @property
    def not_found(self) -> bool:
        return self.http_status == 404 or "notFound" in self.codes

    @property
    def exhausted(self) -> bool:
        return any("RESOURCE_POOL_EXHAUSTED" in code or "STOCKOUT" in code for code in self.codes)

    @property
    def quota_exceeded(self) -> bool:
        return any(c in ("QUOTA_EXCEEDED", "quotaExceeded") for c in self.codes) or bool(
            _QUOTA_MESSAGE.search(self.google_message)
        )


_QUOTA_MESSAGE = re.compile(
    r"Quota '(?P<metric>[A-Z0-9_]+)' exceeded\.\s+Limit: (?P<limit>[\d.]+)"
    r"(?:\s+in region (?P<region>[a-z0-9-]+)|\s+globally)?"
)


def _from_api_exception(e: Exception, doing: str) -> GoogleError:
    """A GoogleError from what the client library raised."""
    from google.api_core import exceptions as api_exceptions

    if isinstance(e, api_exceptions.GoogleAPICallError):
        codes: list[str] = []
        for error in e.errors or []:
            if isinstance(error, dict) and error.get("reason"):
                codes.append(str(error["reason"]))
        if e.reason:
            codes.append(str(e.reason))
        status = int(e.code) if isinstance(e.code, int) else None
        text = e.message or str(e)
        # Team mode: the refusal is the control plane's (its policy), not Google's.
        who = (
            "the team's control plane refused"
            if "controlPlaneRefused" in codes
            else "Compute Engine answered"
        )
        return GoogleError(
            f"Could not {doing}: {who} {status}: {text}",
            status=status,
            codes=tuple(codes),
            google_message=text,
        )
    if isinstance(e, api_exceptions.RetryError):
        return GoogleError(f"Could not {doing}: the Compute Engine API did not answer ({e}).")
    # requests' connection errors, google.auth's refresh errors: no secret is in their text.
    return GoogleError(
        f"Could not {doing}: cannot reach the Compute Engine API ({type(e).__name__}: {e})."
    )


def _operation_error(operation: compute_v1.Operation, doing: str) -> GoogleError:
    codes = tuple(error.code for error in operation.error.errors)
    text = "; ".join(error.message for error in operation.error.errors if error.message)
    quota: dict[str, Any] = {}
    for error in operation.error.errors:
        for detail in error.error_details:
            info = detail.quota_info
            if info.metric_name or info.limit_name:
                quota = {
                    "metric": info.metric_name,
                    "limit": info.limit,
                    "region": dict(info.dimensions).get("region", ""),
                }
    status = operation.http_error_status_code or None
    return GoogleError(
        f"Could not {doing}: {text or ', '.join(codes) or 'the operation failed'}",
        status=status,
        codes=codes,
        google_message=text,
        quota=quota,
    )


def _gpu_words(config: ServerConfig) -> str:
    if config.gpu is None:
        return ""
    model = catalog.GPUS.get(config.gpu.type)
    return f"{config.gpu.count} x {model.label if model else config.gpu.type}"


def explain(
    error: GoogleError, config: ServerConfig, zone: str, project: str, *, exists: bool
) -> str:
    """What a user should read for a failed create/start: the resource, the zone, what to try.
    ``exists`` says whether the VM (and its zonal disk) exists, so moving means deprovisioning."""
    region = catalog.ZONE_PATTERN.fullmatch(zone)
    region_name = region["region"] if region else zone
    spot = bool(config.spot)
    what = " ".join(
        part
        for part in (
            "spot" if spot else "",
            _gpu_words(config) + " on" if config.gpu else "",
            config.machine_type or "",
        )
        if part
    )
    if error.exhausted:
        move = (
            "deprovision the server (its disk is deleted), set config.zone and start it"
            if exists
            else "set config.zone and start it again"
        )
        zones = ""
        if config.gpu is not None:
            zones = f" (zones with {config.gpu.type} in {region_name}: see the zones offered)"
        tries = [f"another zone{zones}: {move}"]
        if spot:
            tries.append("on-demand instead of spot (config.spot false), which has more capacity")
        tries.append("or try again later")
        return (
            f"Zone {zone} has no capacity for {what} right now "
            f"(Compute Engine: {' '.join(dict.fromkeys(error.codes))}). Try "
            + "; ".join(tries)
            + "."
        )
    if error.quota_exceeded:
        quota = dict(error.quota)
        match = _QUOTA_MESSAGE.search(error.google_message)
        if match:
            quota.setdefault("metric", match["metric"])
            quota.setdefault("limit", float(match["limit"]))
            if match["region"]:
                quota.setdefault("region", match["region"])
        metric = quota.get("metric") or "a resource quota"
        where = f"region {quota['region']}" if quota.get("region") else "this project"
        limit = quota.get("limit")
        limit_words = f" (limit {float(limit):g})" if limit is not None else ""
        spot_words = (
            " Spot VMs count against the PREEMPTIBLE_* quotas; on-demand (config.spot false) uses "
            "the regular ones."
            if spot
            else ""
        )
        return (
            f"Quota {metric} is used up in {where}{limit_words} for project {project}, needed for "
            f"{what} in zone {zone}. Ask Google for more "
            f"(https://console.cloud.google.com/iam-admin/quotas?project={project}), or use "
            f"another region, fewer GPUs or a smaller machine type.{spot_words}"
        )
    if "controlPlaneRefused" in error.codes:
        # The team's control plane refused (not Google): its message says why.
        return error.message
    if error.http_status == 401:
        return (
            f"Google refused the credentials ({error.google_message}). Renew them "
            f"(gcloud auth application-default login) or check c.GCPCloud.credentials_file."
        )
    if error.http_status == 403:
        return (
            f"{error.message} The credentials need the Compute Instance Admin role "
            f"(roles/compute.instanceAdmin.v1) in project {project}."
        )
    return error.message
