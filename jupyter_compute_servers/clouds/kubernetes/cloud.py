"""The ``kubernetes`` cloud: compute servers as pods in one namespace of a cluster
(``kubernetes_asyncio``, the async client KubeSpawner uses).

A server is a pod, a PersistentVolumeClaim (its disk, mounted at the user's home) and a Secret
(its SSH host key and authorized client key), all named ``<prefix>-<name>-<id>-<installation>``
(``pod.py``). Its life:

- **start** (from deprovisioned: the claim is created too) makes a new host key (pinned at
  once: Jupyter made it), writes the Secret, creates the pod, and watches it until it runs;
  while it is ``Pending`` the scheduler's reason (no node with a free GPU...) is the progress,
  and a pod still unschedulable after ``schedule_timeout`` is deleted with the reason and what
  to try. An image that cannot be pulled (``ImagePullBackOff``), or a container that ends (an
  image without sshd), fails the start at once with the cause. The pod is ready once its sshd
  answers through the port-forward.
- **stop** deletes the pod and its Secret and keeps the claim; **reboot** is a stop and a start
  (a pod is never restarted in place); **deprovision** deletes the claim too.
- **status** is the pod's phase (no pod but a claim: off). Running servers are looked at every
  ``check_interval`` seconds, so a pod evicted or deleted outside Jupyter shows as off with why.
- **reach**: the pod's sshd listens on its own loopback only; ``portforward.PortForward`` puts
  it on Jupyter's loopback through the API server's ``pods/portforward`` websocket. No Service
  or Ingress exists. See docs/design.md for why port-forward and sshd rather than exec.

In team mode (a control plane) the cluster and namespace are the control plane's: it issues
this user's server a short-lived token of a namespace of the user's own (``team.py``), and the
cloud reads no kubeconfig.

The names are remembered before anything is created, so a crash never leaves objects nobody
knows about. Quota (403 "exceeded quota"), RBAC and unreachable-API errors are said in words
(``errors.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import TYPE_CHECKING, Any, ClassVar

import asyncssh
from kubernetes_asyncio import watch
from traitlets import Bool, Dict, Float, Int, List, TraitError, Unicode, validate

from ...errors import CloudError, ComputeServersError, OperationFailed, ValidationError
from ...images.catalog import CONTAINER_KINDS
from ...models import ServerConfig, State
from ..base import Cloud, CloudServices, CloudStatus, Operation, SSHEndpoint
from . import errors, pod
from .api import KubeAPI, connect, connect_team
from .errors import KubeError
from .portforward import PortForward

if TYPE_CHECKING:
    from ...billing.prices import StateRates

WAITING_FOR_A_NODE = "Waiting for a node: "
_GPU_TYPE_KEYS = {"label", "max_count", "node_selector", "tolerations", "hourly_rate"}


class KubernetesCloud(Cloud):
    """Pods in a Kubernetes namespace, with NVIDIA GPUs and a persistent disk."""

    name: ClassVar[str] = "kubernetes"
    label: ClassVar[str] = "Kubernetes"
    description: ClassVar[str] = (
        "A pod in your Kubernetes cluster: CPUs, memory and NVIDIA GPUs from its nodes, and a "
        "persistent volume as its disk, kept while it is off."
    )
    config_fields: ClassVar[frozenset[str]] = frozenset(
        {"image", "image_tag", "cpu", "memory_gb", "gpu", "disk_gb"}
    )
    image_is_machine: ClassVar[bool] = True

    # --- where -----------------------------------------------------------------------------------

    kubeconfig = Unicode(
        "",
        help="A kubeconfig file. Empty: $KUBECONFIG, else ~/.kube/config (or in-cluster).",
    ).tag(config=True)
    context = Unicode("", help="The kubeconfig context. Empty: its current context.").tag(
        config=True
    )
    in_cluster = Bool(
        None,
        allow_none=True,
        help=(
            "Use the service account of the pod Jupyter runs in. None: when Jupyter runs in a "
            "pod and no kubeconfig is named."
        ),
    ).tag(config=True)
    namespace = Unicode(
        "",
        help="The namespace servers are created in. Empty: the context's (or the pod's), else "
        "'default'.",
    ).tag(config=True)

    # --- what a server is ------------------------------------------------------------------------

    name_prefix = Unicode("jcs", help="The start of pod, claim and secret names.").tag(config=True)
    default_image = Unicode(
        "quay.io/jupyter/base-notebook:latest",
        help=(
            "The pod image for catalogue images that are not containers (the 'python' image: "
            "the machine's own Python). It needs python3 with ipykernel and OpenSSH's sshd."
        ),
    ).tag(config=True)
    images = Dict(
        help=(
            "Pod images by catalogue image: keys 'id' or 'id:tag', values an image reference. "
            "Container images of the catalogue are their own pod image unless named here."
        ),
    ).tag(config=True)
    image_pull_secrets = List(
        Unicode(), help="Names of Secrets in the namespace for pulling from private registries."
    ).tag(config=True)
    service_account = Unicode(
        "", help="The pod's service account (its token is not mounted). Empty: the default."
    ).tag(config=True)
    ssh_username = Unicode(
        "jovyan", help="The image's user, which the pod runs as and SSH logs in as."
    ).tag(config=True)
    home = Unicode(
        "/home/jovyan", help="Where the disk (the claim) is mounted: the user's home."
    ).tag(config=True)
    ssh_port = Int(
        2222, help="The port sshd listens on inside the pod (on its loopback only)."
    ).tag(config=True)
    storage_class = Unicode(
        "", help="The StorageClass of the disks. Empty: the cluster's default."
    ).tag(config=True)
    access_mode = Unicode("ReadWriteOnce", help="The access mode of the disks.").tag(config=True)
    gpu_resource = Unicode(
        "nvidia.com/gpu", help="The extended resource of GPUs (NVIDIA's device plugin)."
    ).tag(config=True)
    gpu_types = Dict(
        help=(
            "The GPU types offered, by name: {'label': 'NVIDIA T4', 'max_count': 4, "
            "'node_selector': {'nvidia.com/gpu.product': 'Tesla-T4'}, 'tolerations': "
            "[{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}], "
            "'hourly_rate': 0.35}. Empty: no GPUs are offered."
        ),
    ).tag(config=True)
    max_cpu = Int(64, help="The most CPUs a server may ask for.").tag(config=True)
    max_memory_gb = Float(512.0, help="The most memory (GB) a server may ask for.").tag(config=True)
    max_disk_gb = Int(2048, help="The largest disk (GB) a server may ask for.").tag(config=True)

    # --- prices (a private cluster charges internally, or not at all) ----------------------------

    cpu_hourly_rate = Float(0.0, help="Charged per CPU and hour while running.").tag(config=True)
    memory_gb_hourly_rate = Float(0.0, help="Charged per GB of memory and hour while running.").tag(
        config=True
    )
    disk_gb_hourly_rate = Float(0.0, help="Charged per GB of disk and hour, running or off.").tag(
        config=True
    )

    # --- time ------------------------------------------------------------------------------------

    schedule_timeout = Float(
        600.0,
        help=(
            "Seconds a pod may wait for a node (a free GPU, a node the autoscaler adds) before "
            "the start gives up with the scheduler's reason."
        ),
    ).tag(config=True)
    start_timeout = Float(
        1200.0, help="Seconds a start may take in all (pulling a large image included)."
    ).tag(config=True)
    stop_grace_seconds = Int(30, help="The pod's termination grace period on stop.").tag(
        config=True
    )
    check_interval = Float(
        30.0,
        help="Seconds between checks that running pods still run (evicted, deleted). 0: never.",
    ).tag(config=True)
    poll_interval = Float(1.0, help="Seconds between tries of a starting pod's sshd.").tag(
        config=True
    )

    @validate("gpu_types")
    def _check_gpu_types(self, proposal: Any) -> dict[str, dict[str, Any]]:
        types = proposal["value"]
        for name, entry in types.items():
            if not isinstance(entry, dict):
                raise TraitError(f"KubernetesCloud.gpu_types[{name!r}] must be a dict.")
            unknown = set(entry) - _GPU_TYPE_KEYS
            if unknown:
                raise TraitError(
                    f"KubernetesCloud.gpu_types[{name!r}]: unknown key {sorted(unknown)[0]}"
                )
            if not isinstance(entry.get("max_count", 1), int) or entry.get("max_count", 1) < 1:
                raise TraitError(f"KubernetesCloud.gpu_types[{name!r}].max_count: an int >= 1.")
            if not isinstance(entry.get("node_selector", {}), dict):
                raise TraitError(f"KubernetesCloud.gpu_types[{name!r}].node_selector: a dict.")
            if not isinstance(entry.get("tolerations", []), list):
                raise TraitError(f"KubernetesCloud.gpu_types[{name!r}].tolerations: a list.")
        return dict(types)

    @validate("name_prefix")
    def _check_prefix(self, proposal: Any) -> str:
        import re

        if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", proposal["value"]):
            raise TraitError("KubernetesCloud.name_prefix: 1-20 lowercase letters, digits, '-'.")
        return str(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._services: CloudServices | None = None
        self._api: KubeAPI | None = None
        self._api_lock = asyncio.Lock()
        self._forwards: dict[int, PortForward] = {}
        self._available: tuple[float, bool, str] | None = None

    def bind(self, services: CloudServices) -> None:
        self._services = services

    async def close(self) -> None:
        """Close the port-forwards and the API clients (Jupyter is stopping; tests)."""
        for forward in list(self._forwards.values()):
            await forward.close()
        self._forwards.clear()
        if self._api is not None:
            await self._api.close()
            self._api = None

    @property
    def _team(self) -> bool:
        """Team mode with a control plane: its credentials and namespace, nothing local."""
        return self._services is not None and self._services.control_plane is not None

    async def api(self) -> KubeAPI:
        async with self._api_lock:
            if self._api is None and self._team:
                from .team import IssuedCredentials

                assert self._services is not None and self._services.control_plane is not None
                ignored = [
                    name
                    for name in ("kubeconfig", "context", "in_cluster", "namespace")
                    if getattr(self, name) not in ("", None)
                ]
                if ignored:
                    self.log.warning(
                        "c.KubernetesCloud.%s is ignored in team mode with a control plane: "
                        "the control plane issues the cluster's credentials and namespace.",
                        ", ".join(ignored),
                    )
                self._api = await connect_team(IssuedCredentials(self._services.control_plane))
            if self._api is None:
                self._api = await connect(
                    kubeconfig=self.kubeconfig,
                    context=self.context,
                    in_cluster=self.in_cluster,
                    namespace=self.namespace,
                )
            return self._api

    # --- offerings -------------------------------------------------------------------------------

    async def availability(self) -> tuple[bool, str]:
        now = time.monotonic()
        if self._available is not None and now - self._available[0] < 30:
            return self._available[1], self._available[2]
        try:
            api = await self.api()
            await api.call(
                f"list pods in namespace {api.namespace}",
                api.core.list_namespaced_pod,
                api.namespace,
                limit=1,
            )
            result = (True, "")
        except CloudError as e:
            result = (False, e.message)
        self._available = (now, *result)
        return result

    def defaults(self) -> dict[str, Any]:
        return {
            "image": "python",
            "image_tag": "system",
            "cpu": 1,
            "memory_gb": 2.0,
            "gpu": None,
            "disk_gb": 10,
        }

    def _pod_image(self, image_id: str | None, tag: str | None) -> str | None:
        """The pod image for a catalogue image, or None when it has none here."""
        if not image_id:
            return None
        for key in (f"{image_id}:{tag}", image_id):
            if key in self.images:
                return str(self.images[key])
        if self._services is None:
            return self.default_image
        runtime = self._services.images.runtime(image_id, tag)
        if runtime["kind"] in CONTAINER_KINDS:
            return str(runtime["image"])
        if runtime["kind"] == "python":
            return self.default_image
        return None  # a conda environment names nothing a pod can run

    def offerings(self) -> dict[str, Any]:
        images = []
        if self._services is not None:
            for image in self._services.images.images(include_untested=True):
                tags = [
                    v["tag"] for v in image["versions"] if self._pod_image(image["id"], v["tag"])
                ]
                if tags:
                    images.append({"id": image["id"], "label": image["label"], "tags": tags})
        return {
            "namespace": self._api.namespace
            if self._api
            else (None if self._team else self.namespace or None),
            "images": images,
            "cpu": {"min": 1, "max": self.max_cpu},
            "memory_gb": {"min": 0.25, "max": self.max_memory_gb},
            "gpus": [
                {
                    "type": name,
                    "label": entry.get("label", name),
                    "max_count": int(entry.get("max_count", 1)),
                }
                for name, entry in sorted(self.gpu_types.items())
            ],
            "disk_gb": {"min": 1, "max": self.max_disk_gb},
        }

    def check_config(self, config: ServerConfig) -> None:
        if config.extra:
            key = sorted(config.extra)[0]
            raise ValidationError(
                f"config.extra.{key} is not an option of the kubernetes cloud; it has none.",
                field=f"config.extra.{key}",
            )
        for name in ("image", "cpu", "memory_gb", "disk_gb"):
            if getattr(config, name) is None:
                raise ValidationError(f"config.{name} is required.", field=f"config.{name}")
        assert config.cpu is not None and config.memory_gb is not None and config.disk_gb
        if self._services is not None:
            self._services.images.check(config, arch=None)
            if self._pod_image(config.image, config.image_tag) is None:
                raise ValidationError(
                    f"config.image {config.image!r} has no container image to run as a pod; "
                    f"choose a container image, or map it in c.KubernetesCloud.images.",
                    field="config.image",
                )
        if config.cpu > self.max_cpu:
            raise ValidationError(
                f"config.cpu is {config.cpu}; at most {self.max_cpu} here.", field="config.cpu"
            )
        if not 0.25 <= config.memory_gb <= self.max_memory_gb:
            raise ValidationError(
                f"config.memory_gb must be between 0.25 and {self.max_memory_gb:g}; got "
                f"{config.memory_gb:g}.",
                field="config.memory_gb",
            )
        if config.disk_gb > self.max_disk_gb:
            raise ValidationError(
                f"config.disk_gb is {config.disk_gb}; at most {self.max_disk_gb} here.",
                field="config.disk_gb",
            )
        if config.gpu is not None:
            entry = self.gpu_types.get(config.gpu.type)
            if entry is None:
                offered = ", ".join(sorted(self.gpu_types)) or "none"
                raise ValidationError(
                    f"config.gpu.type {config.gpu.type!r} is not offered here (offered: "
                    f"{offered}).",
                    field="config.gpu.type",
                )
            most = int(entry.get("max_count", 1))
            if config.gpu.count > most:
                raise ValidationError(
                    f"config.gpu.count is {config.gpu.count}; a {config.gpu.type} server has at "
                    f"most {most}.",
                    field="config.gpu.count",
                )

    def price(self, config: ServerConfig) -> StateRates:
        from ...billing.prices import StateRates

        disk = (config.disk_gb or 0) * self.disk_gb_hourly_rate
        running = (
            (config.cpu or 0) * self.cpu_hourly_rate
            + (config.memory_gb or 0) * self.memory_gb_hourly_rate
            + disk
        )
        if config.gpu is not None:
            rate = float(self.gpu_types.get(config.gpu.type, {}).get("hourly_rate", 0))
            running += config.gpu.count * rate
        return StateRates.flat(running, disk, source="c.KubernetesCloud rates")

    def watch_interval(self) -> float:
        return max(0.0, self.check_interval)

    # --- names -----------------------------------------------------------------------------------

    def _names(self, op: Operation) -> str:
        """The name of the server's pod, claim and secret: remembered, else a new one."""
        existing = op.cloud_data.get("name")
        if existing:
            return str(existing)
        base = pod.object_name(self.name_prefix, op.server_name, op.server_id)
        return f"{base[:54]}-{self.installation_id()}"

    def _labels(self, server_id: int) -> dict[str, str]:
        return pod.labels(server_id, self.installation_id())

    # --- lifecycle -------------------------------------------------------------------------------

    async def create(self, op: Operation) -> None:
        await self._start(op, new=True)

    async def start(self, op: Operation) -> None:
        await self._start(op, new=False)

    async def reboot(self, op: Operation) -> None:
        op.progress("Deleting the pod (a pod restarts as a new one)", 0.1)
        await self._remove_pod(op)
        await self._start(op, new=False)

    async def stop(self, op: Operation) -> None:
        await self._remove_pod(op)

    async def deprovision(self, op: Operation) -> None:
        name = op.cloud_data.get("name")
        if name:
            await self._remove_pod(op)
            api = await self.api()
            op.progress(f"Deleting disk (PersistentVolumeClaim {name})", 0.8)
            with contextlib.suppress(_NotFound):
                await self._call_or_missing(
                    api,
                    f"delete PersistentVolumeClaim {name}",
                    api.core.delete_namespaced_persistent_volume_claim,
                    name,
                    self._namespace(op, api),
                )
        op.remember(name=None, namespace=None, host_key=None, image=None)

    async def _start(self, op: Operation, *, new: bool) -> None:
        self.check_config(op.config)
        api = await self.api()
        name = self._names(op)
        namespace = self._namespace(op, api)
        # Named before anything exists: a crash from here on leaves objects we know about.
        op.remember(name=name, namespace=namespace)
        config = op.config
        assert config.disk_gb and config.image
        label = self._labels(op.server_id)
        if new or not await self._exists(
            api, api.core.read_namespaced_persistent_volume_claim, name, namespace
        ):
            op.progress(f"Creating disk (PersistentVolumeClaim {name}, {config.disk_gb} GB)", 0.05)
            try:
                await api.call(
                    f"create PersistentVolumeClaim {name}",
                    api.core.create_namespaced_persistent_volume_claim,
                    namespace,
                    pod.claim(name, config.disk_gb, self.storage_class, self.access_mode, label),
                )
            except KubeError as e:
                if not e.conflict:  # already there (a retried create): keep it
                    raise OperationFailed(
                        e.message, state=State.DEPROVISIONED.value if new else State.OFF.value
                    ) from None
        try:
            await self._make_pod(op, api, name, namespace, label)
        except KubeError as e:
            # The claim exists (kept or just made): the server is off, and can be retried.
            raise OperationFailed(e.message, state=State.OFF.value) from None
        image = str(op.cloud_data.get("image") or self.default_image)
        try:
            await self._wait_running(op, api, name, namespace, image)
            await self._wait_ssh(op, api, name, namespace)
        except OperationFailed:
            await self._remove_pod(op)
            raise
        op.progress("The pod is ready", 1.0)

    async def _make_pod(
        self, op: Operation, api: KubeAPI, name: str, namespace: str, label: dict[str, str]
    ) -> None:
        """A new pinned host key in the server's Secret, then its pod."""
        config = op.config
        image = self._pod_image(config.image, config.image_tag) or self.default_image
        # A new host key at each start, made here: the pinned key is never learned from the pod.
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        host_public = host_key.export_public_key().decode().strip()
        await self._delete(api, f"delete Secret {name}", api.core.delete_namespaced_secret, op)
        await api.call(
            f"create Secret {name}",
            api.core.create_namespaced_secret,
            namespace,
            pod.secret(
                name,
                host_key.export_private_key().decode(),
                op.client_public_key,
                label,
            ),
        )
        op.remember(host_key=host_public, image=image)
        gpu_type = self.gpu_types.get(config.gpu.type) if config.gpu else None
        manifest = pod.pod(
            name,
            config,
            image=image,
            pull_policy="Always"
            if image.endswith(":latest") or ":" not in image
            else "IfNotPresent",
            home=self.home,
            ssh_port=self.ssh_port,
            gpu_resource=self.gpu_resource,
            gpu_type=gpu_type,
            label=label,
            service_account=self.service_account,
            image_pull_secrets=list(self.image_pull_secrets),
        )
        op.progress(f"Creating pod {name} in namespace {namespace}", 0.15)
        try:
            await api.call(
                f"create pod {name}", api.core.create_namespaced_pod, namespace, manifest
            )
        except KubeError as e:
            if not e.conflict:  # already there (a retried start): watch that one
                raise

    async def _wait_running(
        self, op: Operation, api: KubeAPI, name: str, namespace: str, image: str
    ) -> None:
        """Watch the pod until it runs; say why it waits; fail when waiting will not help."""
        started = time.monotonic()
        deadline = started + self.start_timeout
        shown = ""
        renewed = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperationFailed(
                    f"Pod {name} did not start within {self.start_timeout:g} s"
                    + (f" ({shown})" if shown else "")
                    + ".",
                    state=State.OFF.value,
                )
            # A watch with no resourceVersion begins with the pod as it is (a synthetic
            # ADDED event), then each change; it ends after timeoutSeconds and is renewed.
            window = min(remaining, 60.0)
            if shown.startswith(WAITING_FOR_A_NODE):
                # No event may come while nothing frees up: look again at the deadline.
                window = min(window, started + self.schedule_timeout - time.monotonic() + 0.5)
            stream = watch.Watch()
            token = api.issued.token if api.issued is not None else ""
            try:
                async with stream.stream(
                    api.core.list_namespaced_pod,
                    namespace,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, math.ceil(window)),
                ) as events:
                    async for event in events:
                        body = event["raw_object"]
                        if event["type"] == "DELETED":
                            raise OperationFailed(
                                f"Pod {name} was deleted while it started.", state=State.OFF.value
                            )
                        message, running = await self._assess(
                            op, api, body, name, namespace, image, started
                        )
                        if message and message != shown:
                            shown = message
                            op.progress(message, None)
                        if running:
                            return
                        until = started + self.schedule_timeout - time.monotonic()
                        if shown.startswith(WAITING_FOR_A_NODE) and window > until + 1.5:
                            break  # watch again, ending at the schedule deadline
            except KubeError:
                raise
            except ComputeServersError:
                raise
            except Exception as e:  # the client's own: a watch error event, a dropped stream
                from kubernetes_asyncio.client.exceptions import ApiException

                if isinstance(e, ApiException):
                    if e.status == 401 and api.issued is not None and not renewed:
                        # The issued token was refused before its time: a new one, once (as
                        # KubeAPI.call does for the other calls).
                        renewed = True
                        await api.issued.renew(stale=token)
                        continue
                    raise api.refusal(e, f"watch pod {name}", namespace) from None
                raise CloudError(f"Watching pod {name} failed: {e}") from None

    async def _assess(
        self,
        op: Operation,
        api: KubeAPI,
        body: dict[str, Any],
        name: str,
        namespace: str,
        image: str,
        started: float,
    ) -> tuple[str, bool]:
        """(what to show, whether it runs) for the pod as it is now; raises when it cannot
        start."""
        status = body.get("status") or {}
        phase = status.get("phase") or "Pending"
        if phase in ("Failed", "Succeeded"):
            raise OperationFailed(
                f"Pod {name} ended before it was ready: {errors.ended(body)}",
                state=State.OFF.value,
            )
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                message = str(condition.get("message") or "")
                words = errors.unschedulable(message, self.gpu_resource)
                if time.monotonic() - started > self.schedule_timeout:
                    raise OperationFailed(
                        f"{words} Waited {self.schedule_timeout:g} s. "
                        f"{errors.pending_advice(message, self.gpu_resource)}",
                        state=State.OFF.value,
                    )
                return f"{WAITING_FOR_A_NODE}{words}", False
        reason, message, fatal = errors.container_trouble(body)
        if reason in ("ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"):
            # ErrImagePull alone may be a registry's hiccup that the next pull survives; the
            # back-off means the kubelet already failed and is waiting to try again.
            event = await self._last_event(api, name, namespace, "Failed")
            raise OperationFailed(
                errors.image_pull(image, reason, message, event), state=State.OFF.value
            )
        if fatal:
            raise OperationFailed(
                f"Pod {name} cannot run: {reason}: {message}", state=State.OFF.value
            )
        if reason == "ErrImagePull":
            return f"Pulling image {image} failed once; the cluster tries again ({message})", False
        if phase == "Running":
            return "", True
        if status.get("conditions") and any(
            c.get("type") == "PodScheduled" and c.get("status") == "True"
            for c in status["conditions"]
        ):
            return (
                f"Pod {name} is on node {body.get('spec', {}).get('nodeName') or '?'}: "
                f"pulling image {image} and starting it",
                False,
            )
        return f"Waiting for the cluster to schedule pod {name}", False

    async def _last_event(self, api: KubeAPI, name: str, namespace: str, reason: str) -> str:
        """The message of the pod's newest event with ``reason`` (the kubelet's "Failed to
        pull image ...: not found"), or ""."""
        try:
            found = await api.call(
                f"list events of pod {name}",
                api.core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.kind=Pod,involvedObject.name={name}",
            )
        except CloudError:
            return ""  # events are only for the words; a Role without them still starts pods
        items = [api.plain(e) for e in found.items]
        items = [e for e in items if e.get("reason") == reason]
        items.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return str(items[-1].get("message") or "") if items else ""

    async def _wait_ssh(self, op: Operation, api: KubeAPI, name: str, namespace: str) -> None:
        """Until the pod's sshd answers through the port-forward (it starts a moment after the
        container does)."""
        op.progress("Waiting for the pod's SSH server", 0.8)
        forward = await self._forward(op.server_id, name, namespace)
        # Long enough for an image's first start that installs OpenSSH into the disk (sshd.sh).
        deadline = time.monotonic() + max(30.0, self.start_timeout / 2)
        last = ""
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
                try:
                    banner = await asyncio.wait_for(reader.read(4), 10)
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
                if banner == b"SSH-":
                    return
                last = str(forward.last_error or "the port-forward closed without an SSH greeting")
            except (OSError, asyncio.TimeoutError) as e:
                last = str(e) or type(e).__name__
            refused = forward.last_error
            if isinstance(refused, KubeError) and refused.http_status in (401, 403):
                # Permissions do not come by waiting.
                raise OperationFailed(refused.message, state=State.OFF.value)
            body = await self._read_pod(api, name, namespace)
            if body is None or (body.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                raise OperationFailed(
                    f"Pod {name} ended before its SSH server answered: {errors.ended(body or {})}",
                    state=State.OFF.value,
                )
            await asyncio.sleep(self.poll_interval)
        raise OperationFailed(
            f"The SSH server of pod {name} did not answer through the port-forward ({last}). "
            f"Does the image have OpenSSH's sshd?",
            state=State.OFF.value,
        )

    async def _remove_pod(self, op: Operation) -> None:
        """Delete the pod and its Secret, wait until the pod is gone; keep the claim."""
        forward = self._forwards.pop(op.server_id, None)
        if forward is not None:
            await forward.close()
        name = op.cloud_data.get("name")
        if not name:
            return
        api = await self.api()
        namespace = self._namespace(op, api)
        op.progress(f"Deleting pod {name}", 0.3)
        await self._delete(
            api,
            f"delete pod {name}",
            api.core.delete_namespaced_pod,
            op,
            grace_period_seconds=self.stop_grace_seconds,
        )
        deadline = time.monotonic() + self.stop_grace_seconds + 60
        while await self._read_pod(api, str(name), namespace) is not None:
            if time.monotonic() > deadline:
                raise CloudError(
                    f"Pod {name} is still terminating after {self.stop_grace_seconds + 60} s."
                )
            await asyncio.sleep(self.poll_interval)
        await self._delete(api, f"delete Secret {name}", api.core.delete_namespaced_secret, op)
        op.remember(host_key=None)

    # --- the disk grows --------------------------------------------------------------------------

    async def reconfigure(self, op: Operation, config: ServerConfig) -> None:
        """CPUs, memory, GPUs and image apply at the next start (a new pod is made from the
        configuration); a bigger disk grows the claim now."""
        self.check_config(config)
        if op.cloud_data.get("name") and (config.disk_gb or 0) > (op.config.disk_gb or 0):
            await self._grow_claim(op, int(config.disk_gb or 0))

    async def resize_disk(self, op: Operation, disk_gb: int) -> None:
        """Grow the claim of a running server. Volume expansion is the storage driver's: most
        CSI drivers grow the filesystem online; others at the next start of the pod."""
        if op.cloud_data.get("name"):
            await self._grow_claim(op, disk_gb)

    async def _grow_claim(self, op: Operation, disk_gb: int) -> None:
        api = await self.api()
        name = str(op.cloud_data["name"])
        op.progress(f"Growing disk (PersistentVolumeClaim {name}) to {disk_gb} GB", 0.3)
        try:
            await api.call(
                f"grow PersistentVolumeClaim {name} to {disk_gb} GB",
                api.core.patch_namespaced_persistent_volume_claim,
                name,
                self._namespace(op, api),
                {"spec": {"resources": {"requests": {"storage": f"{disk_gb}Gi"}}}},
            )
        except KubeError as e:
            if e.http_status in (403, 422) and "resize" in e.message:
                raise CloudError(
                    f"{e.message} The disk's StorageClass must allow volume expansion "
                    f"(allowVolumeExpansion: true); ask the cluster's administrators, or keep "
                    f"the size."
                ) from None
            raise

    # --- status and SSH --------------------------------------------------------------------------

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        name = cloud_data.get("name")
        if not name:
            return CloudStatus(State.DEPROVISIONED, "it has no pod or disk")
        api = await self.api()
        namespace = self._namespace_of(cloud_data, api)
        body = await self._read_pod(api, str(name), namespace)
        if body is not None:
            phase = (body.get("status") or {}).get("phase") or "Pending"
            if phase == "Running":
                return CloudStatus(State.RUNNING, "the pod is Running")
            if phase == "Pending":
                # No start is waiting for it (this process restarted while it waited): the
                # pod still holds its claim on a node or GPU, so say how to end it.
                return CloudStatus(
                    State.ERROR,
                    f"pod {name} is still Pending; stop the server to delete the pod, then "
                    "start it again",
                )
            return CloudStatus(State.OFF, errors.ended(body))
        if await self._exists(
            api, api.core.read_namespaced_persistent_volume_claim, str(name), namespace
        ):
            return CloudStatus(State.OFF, f"pod {name} is gone; its disk is kept")
        return CloudStatus(State.DEPROVISIONED, f"neither pod nor disk {name} exists")

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        name, host_key = cloud_data.get("name"), cloud_data.get("host_key")
        if not name or not host_key:
            raise CloudError("The server has no running pod.")
        api = await self.api()
        namespace = self._namespace_of(cloud_data, api)
        forward = await self._forward(server_id, str(name), namespace)
        return SSHEndpoint(
            host="127.0.0.1",
            port=forward.local_port,
            username=self.ssh_username,
            host_key=str(host_key),
            workspace="~/work",
        )

    async def _forward(self, server_id: int, name: str, namespace: str) -> PortForward:
        forward = self._forwards.get(server_id)
        if forward is None:
            api = await self.api()

            async def upgrade() -> Any:
                # The client answers aiohttp's ws_connect context, not yet connected: awaiting
                # it makes the upgrade, whose refusal api.call then words.
                context: Any = await api.ws.connect_get_namespaced_pod_portforward(
                    name, namespace, ports=self.ssh_port, _preload_content=False
                )
                return await context

            async def open_websocket() -> Any:
                return await api.call(f"port-forward to pod {name}", upgrade)

            forward = await PortForward(
                open_websocket, self.ssh_port, f"pod {name} port {self.ssh_port}"
            ).start()
            self._forwards[server_id] = forward
        return forward

    # --- small calls -----------------------------------------------------------------------------

    def _namespace(self, op: Operation, api: KubeAPI) -> str:
        return self._namespace_of(op.cloud_data, api)

    def _namespace_of(self, cloud_data: dict[str, Any], api: KubeAPI) -> str:
        """The server's namespace: the one it was made in; in team mode always the issued one
        (the only one the token reaches; a recorded other is not this user's to use)."""
        if self._team:
            return api.namespace
        return str(cloud_data.get("namespace") or api.namespace)

    async def _read_pod(self, api: KubeAPI, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            found = await api.call(
                f"read pod {name}", api.core.read_namespaced_pod, name, namespace
            )
        except KubeError as e:
            if e.not_found:
                return None
            raise
        return dict(api.plain(found))

    async def _exists(self, api: KubeAPI, method: Any, name: str, namespace: str) -> bool:
        try:
            await api.call(f"read {name}", method, name, namespace)
        except KubeError as e:
            if e.not_found:
                return False
            raise
        return True

    async def _delete(
        self, api: KubeAPI, doing: str, method: Any, op: Operation, **kwargs: Any
    ) -> None:
        """Delete an object; one already gone is fine."""
        with contextlib.suppress(_NotFound):
            await self._call_or_missing(
                api, doing, method, op.cloud_data["name"], self._namespace(op, api), **kwargs
            )

    @staticmethod
    async def _call_or_missing(api: KubeAPI, doing: str, method: Any, *args: Any, **kw: Any) -> Any:
        try:
            return await api.call(doing, method, *args, **kw)
        except KubeError as e:
            if e.not_found:
                raise _NotFound from None
            raise


class _NotFound(Exception):
    pass
