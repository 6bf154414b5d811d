"""OpenStack's errors in words: what was refused, why, and what to try.

Nova answers a quota it would exceed with 403 (413 "overLimit" before microversion 2.1's
cleanup) and "Quota exceeded for cores: Requested 8, but already used 60 of 64 cores"; a
server it cannot place goes to ERROR with the fault "No valid host was found. There are not
enough hosts available." Keystone answers refused credentials with 401.
"""

from __future__ import annotations

from typing import Any

NO_VALID_HOST = "no valid host"


class OpenStackError(Exception):
    """A call to OpenStack failed: ``message`` says what was being done and why it failed."""

    def __init__(
        self, message: str, *, status: int | None = None, detail: str = "", not_found: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail
        self.not_found = not_found


def _detail(error: Any) -> str:
    details = getattr(error, "details", None)
    if details:
        return str(details).strip()
    message = str(getattr(error, "message", "") or error)
    return message.strip()


def is_quota(status: int | None, detail: str) -> bool:
    return status in (403, 413) and "quota" in detail.lower()


def explain(error: BaseException, doing: str, *, where: str = "OpenStack") -> OpenStackError:
    """An exception of openstacksdk or keystoneauth, worded for the user."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    if isinstance(error, OpenStackError):
        return error
    if isinstance(error, ks.Unauthorized | ks.auth_plugins.MissingRequiredOptions):
        return OpenStackError(
            f"{where} refused the credentials while trying to {doing}: check the "
            f"username/password or application credential in clouds.yaml (or "
            f"c.OpenStackCloud.auth), and that the project and its domain are right.",
            status=401,
        )
    if isinstance(error, ks.ConnectFailure | ks.ConnectTimeout | ks.DiscoveryFailure):
        return OpenStackError(
            f"Could not reach {where} to {doing}: {error}. Check auth_url in clouds.yaml and "
            f"that this machine can reach it."
        )
    if isinstance(error, sdk.HttpException):
        status = error.status_code
        detail = _detail(error)
        if is_quota(status, detail):
            return OpenStackError(
                f"{where} refused to {doing}: the project's quota is used up ({detail}). Stop "
                f"and deprovision servers you no longer need, choose a smaller flavor, or ask "
                f"the cloud's administrators for more quota.",
                status=status,
                detail=detail,
            )
        if status == 404:
            return OpenStackError(
                f"{where} has no such thing to {doing}: {detail}",
                status=404,
                detail=detail,
                not_found=True,
            )
        if status == 409:
            return OpenStackError(
                f"{where} cannot {doing} now: {detail}. Wait for the server's current task to "
                f"finish and try again.",
                status=409,
                detail=detail,
            )
        if status in (401, 403):
            return OpenStackError(
                f"{where} does not allow this project to {doing}: {detail}. Ask the cloud's "
                f"administrators for the role it needs.",
                status=status,
                detail=detail,
            )
        return OpenStackError(
            f"{where} could not {doing}: {detail} (HTTP {status}).", status=status, detail=detail
        )
    if isinstance(error, sdk.SDKException | ks.ClientException):
        return OpenStackError(f"Could not {doing} on {where}: {error}")
    return OpenStackError(f"Could not {doing} on {where}: {type(error).__name__}: {error}")


def no_valid_host(fault_message: str, flavor: str, gpus: str) -> str:
    """Why Nova could not place a server, and what to try."""
    what = f"flavor {flavor}" + (f" with {gpus}" if gpus else "")
    hint = (
        "all its GPUs are in use: try again later, or a flavor with fewer GPUs"
        if gpus
        else "try a smaller flavor, try again later, or ask the cloud's administrators"
    )
    return (
        f"OpenStack has no hypervisor with room for {what} now (Nova: {fault_message.strip()}); "
        f"{hint}."
    )
