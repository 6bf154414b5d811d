"""What the Kubernetes API and a pod's status say, in words a user can act on.

Two kinds of trouble: a call the API server refuses (a ``Status`` object with ``code``,
``reason``, ``message``: quota exceeded, RBAC forbidden, not found, invalid), and a pod that
stays ``Pending`` (the scheduler's ``Unschedulable`` condition, an image that cannot be pulled)
or ends (``Failed``: the container exited, was OOM-killed, or the pod was evicted)."""

from __future__ import annotations

import json
import re
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from ...errors import CloudError

#: "exceeded quota: compute-resources, requested: limits.nvidia.com/gpu=1, used: ...=4,
#: limited: ...=4": the admission plugin ResourceQuota's message.
_QUOTA = re.compile(
    r"exceeded quota: (?P<quota>[^,]+), requested: (?P<requested>.+?), used: (?P<used>.+?), "
    r"limited: (?P<limited>.+)$"
)
#: Parts of the scheduler's "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s)
#: had untolerated taint {...}. preemption: ..." message.
_INSUFFICIENT = re.compile(r"(\d+) Insufficient ([\w./-]*\w)")
_NOT_MATCHING = re.compile(r"(\d+) node\(s\) didn't match Pod's node affinity/selector")
_TAINTED = re.compile(r"(\d+) node\(s\) had untolerated taint \{([^}]*)\}")
_UNBOUND = re.compile(r"unbound immediate PersistentVolumeClaims|pod has unbound")
_IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
#: Container states that will not get better by waiting.
_FATAL_WAITING = (
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
)


class KubeError(CloudError):
    """A refused API call: ``http_status`` (0 when the server was not reached), in words."""

    def __init__(self, http_status: int, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.http_status = http_status
        self.k8s_reason = reason

    @property
    def not_found(self) -> bool:
        return self.http_status == 404

    @property
    def conflict(self) -> bool:
        return self.http_status == 409

    @classmethod
    def from_api(cls, e: ApiException, doing: str, namespace: str) -> KubeError:
        status = _status_of(e)
        code = int(status.get("code") or e.status or 0)
        reason = str(status.get("reason") or e.reason or "")
        message = str(status.get("message") or e.reason or "")
        return cls(code, explain(code, reason, message, doing, namespace), reason=reason)


def _status_of(e: ApiException) -> dict[str, Any]:
    """The ``Status`` object of an error answer ({} when the body is not one)."""
    try:
        body = json.loads(e.body) if e.body else {}
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def explain(code: int, reason: str, message: str, doing: str, namespace: str) -> str:
    """A refused call in words: what failed, why, what to do."""
    quota = _QUOTA.search(message)
    if code == 403 and quota:
        return (
            f"Could not {doing}: namespace {namespace} has no room left in its ResourceQuota "
            f"{quota['quota']} (requested {quota['requested']}, in use {quota['used']}, "
            f"limit {quota['limited']}). Stop or deprovision another server there, ask for "
            f"less, or ask the cluster's administrators to raise the quota."
        )
    if code == 403:
        return (
            f"Could not {doing}: the Kubernetes API forbids it ({message}). Give Jupyter's "
            f"account the Role in the README (pods, pods/portforward, persistentvolumeclaims, "
            f"secrets, events in namespace {namespace})."
        )
    if code == 401:
        return (
            f"Could not {doing}: the Kubernetes API did not accept the credentials "
            f"({message or reason}). Log in again (refresh the kubeconfig's token) or fix "
            f"c.KubernetesCloud.kubeconfig."
        )
    if code == 404 and "namespaces" in message and namespace in message:
        return (
            f"Could not {doing}: namespace {namespace} does not exist. Create it, or set "
            f"c.KubernetesCloud.namespace to one that does."
        )
    if code == 422:
        return f"Could not {doing}: Kubernetes finds it invalid: {message}"
    return f"Could not {doing}: {message or reason} (HTTP {code})."


def unschedulable(message: str, gpu_resource: str) -> str:
    """The scheduler's ``Unschedulable`` message in words (shown while the pod waits)."""
    parts: list[str] = []
    for count, resource in _INSUFFICIENT.findall(message):
        what = "GPU" if resource == gpu_resource else resource
        parts.append(f"{count} node(s) lack the free {what} it asks for ({resource})")
    for (count,) in [(m,) for m in _NOT_MATCHING.findall(message)]:
        parts.append(f"{count} node(s) are not of its GPU type (node selector)")
    for count, taint in _TAINTED.findall(message):
        parts.append(f"{count} node(s) have a taint it does not tolerate ({taint})")
    if _UNBOUND.search(message):
        parts.append("its disk (PersistentVolumeClaim) is not bound to a volume yet")
    if not parts:
        return f"No node can take the pod now: {message}"
    return "No node can take the pod now: " + "; ".join(parts) + "."


def pending_advice(message: str, gpu_resource: str) -> str:
    """What to try when a pod stayed unschedulable until the timeout."""
    if gpu_resource in message:
        return (
            "The cluster's GPUs of this type are all in use: try later, fewer GPUs or another "
            "GPU type."
        )
    if "Insufficient" in message:
        return "Ask for less CPU or memory, or try later."
    return "Ask the cluster's administrators, or try another configuration."


def container_trouble(pod: dict[str, Any]) -> tuple[str, str, bool]:
    """(reason, message, fatal) of the pod's container that is stuck, or ("", "", False).
    ``fatal``: waiting will not help (an image that cannot be pulled: ErrImagePull turns into
    ImagePullBackOff and back, so either is taken as fatal once seen twice: see cloud.py)."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in _IMAGE_REASONS or reason in _FATAL_WAITING:
            return reason, str(waiting.get("message") or ""), reason in _FATAL_WAITING
        terminated = state.get("terminated") or {}
        if terminated:
            detail = str(terminated.get("message") or terminated.get("reason") or "")
            return (
                str(terminated.get("reason") or "Terminated"),
                f"exit code {terminated.get('exitCode')}: {detail}".strip(),
                True,
            )
    return "", "", False


def image_pull(image: str, reason: str, message: str, event: str) -> str:
    """An image the cluster cannot pull, in words."""
    detail = event or message or reason
    return (
        f"The cluster cannot pull image {image} ({reason}: {detail}). Check the image and tag "
        f"in the catalogue, and that the cluster can reach its registry (an imagePullSecret "
        f"for a private one)."
    )


def ended(pod: dict[str, Any]) -> str:
    """Why a pod that was running is no longer (evicted, OOM-killed, its process exited)."""
    status = pod.get("status") or {}
    reason, message, _ = container_trouble(pod)
    pod_reason = str(status.get("reason") or "")
    if pod_reason:
        return f"Kubernetes ended the pod: {pod_reason}: {status.get('message') or ''}".strip()
    if reason == "OOMKilled":
        return "The pod ran out of memory (OOMKilled): give the server more memory."
    if reason:
        return f"The pod's container ended ({reason}, {message})."
    return f"The pod is {status.get('phase') or 'gone'}."
