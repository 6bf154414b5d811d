"""The ``slurm`` cloud: compute servers as job allocations on an HPC cluster run by Slurm.

- **A cluster** is configured by the admin (``c.SlurmCloud.clusters``): its login node, a host
  registered like any on-prem host (``hosts``: its SSH host key pinned, never trusted
  silently), and what users may ask of it (partitions, accounts, QOS, a time limit), its
  workspace root on the shared filesystem and its rates per CPU-hour and GPU-hour.
- **What it offers** is read from the cluster over the login connection (``sinfo``):
  partitions, their time limits, CPUs and memory per node and GPU GRES.
- **A server is a job** that holds an allocation: start writes a fixed job script over SFTP
  (no user value in it) and submits it with ``sbatch``, whose options come from validated
  values, each quoted. While the job pends the server is ``starting`` with Slurm's reason, the
  jobs ahead of it and the estimated start (``squeue --start``); once it runs, ``running`` on
  its node. Stop ends the server's processes in the job, then ``scancel``. A job that ends by
  itself (time limit, preemption, node failure, someone's scancel) is found by the manager's
  watch (``watch_interval``) and the server turns ``off`` with that reason.
- **Inside the allocation**: the RPC agent (so kernels and terminals) runs in the job with
  ``srun --jobid=<job> --overlap`` over the server's connection to the login node; Slurm sets
  ``CUDA_VISIBLE_DEVICES`` for the job's GPUs. File sync runs on the login node: the workspace
  is on the shared filesystem, the same whichever node the job lands on.
- **Metering from Slurm's own times**: a server is charged from its job's StartTime to its
  EndTime, as the cluster accounts them (``sacct`` where the cluster keeps accounting, else
  ``scontrol show job``, which keeps an ended job for ``MinJobAge``), not from when we noticed:
  the state history gets those times (``Operation.happened_at``, ``CloudStatus.since``).
  Every Slurm command runs with ``SLURM_TIME_FORMAT=%s``, so times come as seconds since the
  epoch, whatever the cluster's time zone.
- **The scheduler may blip**: Slurm commands that cannot reach slurmctld are retried with
  backoff; a job is declared gone only when Slurm answers that it ended or does not know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncssh
from traitlets import Dict, Float

from ..billing.prices import Part, Rate, StateRates
from ..errors import CloudError, NotFoundError, ValidationError
from ..hosts import HostRecord, HostRegistry
from ..models import ServerConfig, State, parse_int, parse_str
from ..ssh import HostKeyMismatchError, ServerConnection, SSHConnectError, SSHConnections
from .base import Cloud, CloudServices, CloudStatus, Operation, SSHEndpoint

#: Partition, account and QOS names, GRES types: what Slurm itself accepts, and nothing a
#: shell or an option parser could take for something else.
_SLURM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
#: A workspace root on the cluster: ``$HOME`` or ``~`` may start it; no other expansion.
_ROOT = re.compile(r"(\$HOME|~)?(/[A-Za-z0-9_.+-]+)+/?|\$HOME|~")
_JOB_ID = re.compile(r"[0-9]{1,12}")
#: What Slurm's client commands say when slurmctld does not answer: worth trying again.
_UNREACHABLE = re.compile(
    r"Unable to contact slurm controller|Socket timed out|Connection refused|"
    r"Communication connection failure|Zero Bytes were transmitted|slurm_load_",
    re.IGNORECASE,
)
_GONE = re.compile(r"Invalid job id", re.IGNORECASE)
#: What sacct says on a cluster without accounting storage (``accounting_storage/none``).
_NO_ACCOUNTING = re.compile(r"accounting storage is disabled", re.IGNORECASE)
_EPOCH = re.compile(r"[0-9]{1,12}")
#: Slurm prints times as seconds since the epoch (strftime's %s): no time zone to guess.
TIME_FORMAT = "SLURM_TIME_FORMAT=%s"

CLUSTER_KEYS = frozenset(
    {
        "host",
        "partitions",
        "accounts",
        "qos",
        "max_time_minutes",
        "workspace_root",
        "cpu_hour_rate",
        "gpu_hour_rates",
    }
)

#: The job script: the same for every server, nothing of the user's in it. It holds the
#: allocation until it is cancelled or reaches its time limit.
JOB_SCRIPT = """#!/bin/sh
# A jupyter-compute-servers compute server: this job holds the allocation its kernels and
# terminals run in (started with srun --overlap); scancel ends it.
exec sleep infinity
"""

#: Why a job ended, in words, by the state Slurm gives it.
_ENDED = {
    "TIMEOUT": "reached its time limit",
    "CANCELLED": "was cancelled",
    "PREEMPTED": "was preempted",
    "NODE_FAIL": "ended: its node failed",
    "BOOT_FAIL": "ended: its node failed to boot",
    "FAILED": "failed",
    "OUT_OF_MEMORY": "ran out of memory",
    "DEADLINE": "reached its deadline",
    "COMPLETED": "ended",
}
_ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


class SlurmUnavailableError(CloudError):
    """slurmctld did not answer (after the retries): nothing is known about the job."""


@dataclass(frozen=True)
class Cluster:
    """One cluster as the admin configured it."""

    name: str
    host: str
    partitions: tuple[str, ...]
    accounts: tuple[str, ...]
    qos: tuple[str, ...]
    max_time_minutes: int
    workspace_root: str
    cpu_hour_rate: float | None
    gpu_hour_rates: dict[str, float]


@dataclass(frozen=True)
class Job:
    """What Slurm says of one job (``scontrol show job -o``)."""

    id: str
    state: str
    reason: str
    node: str
    start_time: str
    end_time: str
    time_limit: str
    partition: str

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE


@dataclass(frozen=True)
class Accounted:
    """A job's accounting record (``sacct``): its state and real start and end."""

    state: str
    start: float | None
    end: float | None
    time_limit: str


def _duration_minutes(text: str) -> int | None:
    """Slurm's ``[days-]hours:minutes:seconds`` (or ``minutes``, ``UNLIMITED``) in minutes."""
    text = text.strip()
    if not text or text.lower() in ("infinite", "unlimited", "n/a"):
        return None
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    parts = [int(p) for p in text.split(":")]
    # hours:minutes:seconds, minutes:seconds or minutes
    minutes = parts[0] * 60 + parts[1] if len(parts) == 3 else parts[0]
    return days * 1440 + minutes


def parse_gres(text: str) -> list[dict[str, Any]]:
    """GPUs of a ``sinfo %G`` field (``gpu:a100:2(S:0-1),gpu:v100:4``) by type."""
    gpus: dict[str, int] = {}
    for item in re.split(r",(?![^(]*\))", text):
        item = re.sub(r"\(.*\)", "", item.strip())
        fields = item.split(":")
        if len(fields) < 2 or fields[0] != "gpu":
            continue
        kind, count = (fields[1], fields[2]) if len(fields) >= 3 else ("gpu", fields[1])
        if count.isdigit() and _SLURM_NAME.fullmatch(kind):
            gpus[kind] = max(gpus.get(kind, 0), int(count))
    return [{"type": kind, "count": count} for kind, count in gpus.items()]


def parse_sinfo(text: str) -> dict[str, dict[str, Any]]:
    """Partitions from ``sinfo -h -o '%R|%l|%c|%m|%G|%a'``: for each, its time limit and the
    largest node it has (CPUs, memory, GPUs by type)."""
    partitions: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 6 or not _SLURM_NAME.fullmatch(fields[0]):
            continue
        name, limit, cpus, memory, gres, available = fields
        entry = partitions.setdefault(
            name,
            {
                "name": name,
                "max_time_minutes": _duration_minutes(limit),
                "cpu": 0,
                "memory_gb": 0.0,
                "gpus": [],
                "up": available.strip() == "up",
            },
        )
        entry["cpu"] = max(entry["cpu"], int(cpus.rstrip("+")) if cpus.rstrip("+").isdigit() else 0)
        memory_mb = memory.rstrip("+")
        if memory_mb.isdigit():
            entry["memory_gb"] = max(entry["memory_gb"], round(int(memory_mb) / 1024, 1))
        for gpu in parse_gres(gres):
            known = {g["type"]: g for g in entry["gpus"]}
            if gpu["type"] in known:
                known[gpu["type"]]["count"] = max(known[gpu["type"]]["count"], gpu["count"])
            else:
                entry["gpus"].append(gpu)
    return partitions


def parse_job(text: str) -> Job | None:
    """``scontrol show job -o <id>``'s one line (``Key=Value`` pairs)."""
    values = dict(re.findall(r"(\w[\w/:]*)=(\S*)", text))
    if "JobId" not in values:
        return None
    return Job(
        id=values["JobId"],
        state=values.get("JobState", ""),
        reason=values.get("Reason", "None"),
        node=values.get("NodeList", "") if values.get("NodeList") != "(null)" else "",
        start_time=values.get("StartTime", ""),
        end_time=values.get("EndTime", ""),
        time_limit=values.get("TimeLimit", ""),
        partition=values.get("Partition", ""),
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _slurm_time(text: str) -> float | None:
    """A Slurm timestamp as a Unix time. Slurm's commands run here with ``TIME_FORMAT``, so
    they print seconds since the epoch; "Unknown", "None", "N/A" (no time yet) are None."""
    text = text.strip()
    return float(text) if _EPOCH.fullmatch(text) and text != "0" else None


def parse_sacct(text: str, job_id: str) -> Accounted | None:
    """The job's record from ``sacct -n -X -P -o JobID,State,Start,End,Timelimit`` (with
    ``TIME_FORMAT``): ``12|CANCELLED by 0|1796541319|1796541320|00:30:00``. A requeued job
    has a line per run: the last is the latest. None when sacct does not list the job."""
    found = None
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5 or fields[0] != job_id:
            continue
        found = Accounted(
            state=fields[1].strip(),
            start=_slurm_time(fields[2]),
            end=_slurm_time(fields[3]),
            time_limit=fields[4].strip(),
        )
    return found


class SlurmCloud(Cloud):
    """HPC clusters run by Slurm, reached through their login nodes."""

    name = "slurm"
    label = "Slurm cluster"
    description = "Jobs on an HPC cluster (a university's GPUs), queued by Slurm."
    config_fields = frozenset({"cpu", "memory_gb", "gpu"})

    clusters = Dict(
        help=(
            "The clusters users may run compute servers on, by name: each a dict with 'host' "
            "(the name of the registered host that is its login node; register it and confirm "
            "its host key first), 'partitions', 'accounts' and 'qos' (the names users may "
            "choose; empty: any the cluster has, or none for accounts and QOS), "
            "'max_time_minutes' (the longest job), 'workspace_root' (on the shared "
            "filesystem; default $HOME/jupyter-compute-servers) and the rates "
            "'cpu_hour_rate' and 'gpu_hour_rates' ({gpu type: rate per GPU-hour})."
        )
    ).tag(config=True)
    watch_seconds = Float(
        10.0, help="Seconds between checks that running servers' jobs still run."
    ).tag(config=True)
    controller_patience = Float(
        120.0,
        help=(
            "Seconds to keep retrying (with backoff) a Slurm command that cannot reach "
            "slurmctld, before an action fails."
        ),
    ).tag(config=True)
    pending_minutes = Float(
        0.0,
        help="Minutes a start waits for its job to run before cancelling it (0: no limit).",
    ).tag(config=True)
    discovery_seconds = Float(
        60.0, help="Seconds what a cluster offers (sinfo) is kept before it is read again."
    ).tag(config=True)
    poll_seconds = Float(2.0, help="Seconds between looks at a pending job.").tag(config=True)
    warn_minutes = Float(
        15.0,
        help="Minutes before a job's time limit when the user is told that it ends soon.",
    ).tag(config=True)

    registry: HostRegistry | None = None
    connections: SSHConnections | None = None

    def bind(self, services: CloudServices) -> None:
        self.registry = services.hosts
        self.connections = services.ssh
        self._offered: dict[str, tuple[float, dict[str, dict[str, Any]], str]] = {}
        #: Clusters whose sacct said they keep no accounting: scontrol's times are used.
        self._unaccounted: set[str] = set()

    # --- clusters ---------------------------------------------------------------------------

    def _clusters(self) -> dict[str, Cluster]:
        """The configured clusters, checked (a mistake names the setting to fix)."""
        clusters = {}
        for name, raw in self.clusters.items():
            where = f"c.SlurmCloud.clusters[{name!r}]"
            if not isinstance(name, str) or not _SLURM_NAME.fullmatch(name):
                raise CloudError(f"{where}: a cluster's name must be a plain name.")
            if not isinstance(raw, dict) or not isinstance(raw.get("host"), str):
                raise CloudError(f"{where} must be a dict naming its login node's 'host'.")
            unknown = sorted(set(raw) - CLUSTER_KEYS)
            if unknown:
                raise CloudError(f"{where} has an unknown key {unknown[0]!r}.")
            names = {}
            for key in ("partitions", "accounts", "qos"):
                values = raw.get(key) or []
                if not isinstance(values, list) or not all(
                    isinstance(v, str) and _SLURM_NAME.fullmatch(v) for v in values
                ):
                    raise CloudError(f"{where}[{key!r}] must be a list of Slurm names.")
                names[key] = tuple(values)
            root = raw.get("workspace_root") or "$HOME/jupyter-compute-servers"
            if not isinstance(root, str) or not _ROOT.fullmatch(root) or ".." in root:
                raise CloudError(f"{where}['workspace_root'] must be an absolute or $HOME path.")
            rates = raw.get("gpu_hour_rates") or {}
            clusters[name] = Cluster(
                name=name,
                host=raw["host"],
                partitions=names["partitions"],
                accounts=names["accounts"],
                qos=names["qos"],
                max_time_minutes=int(raw.get("max_time_minutes") or 24 * 60),
                workspace_root=root.rstrip("/"),
                cpu_hour_rate=raw.get("cpu_hour_rate"),
                gpu_hour_rates={str(k): float(v) for k, v in rates.items()},
            )
        return clusters

    def _cluster_of(self, config: ServerConfig) -> Cluster:
        clusters = self._clusters()
        name = config.extra.get("cluster")
        if name not in clusters:
            have = ", ".join(clusters) or "none is configured"
            raise ValidationError(
                f"config.extra.cluster must be one of the clusters ({have}).",
                field="config.extra.cluster",
            )
        return clusters[name]

    @property
    def hosts(self) -> HostRegistry:
        if self.registry is None:
            raise CloudError("The slurm cloud is not bound to the host registry.")
        return self.registry

    def _login(self, cluster: Cluster) -> HostRecord:
        try:
            host = self.hosts.hosts.find(cluster.host)
        except NotFoundError:
            raise CloudError(
                f"Cluster {cluster.name}'s login node {cluster.host!r} is not a registered "
                f"host: register it (Hosts, or POST /hosts) and confirm its host key."
            ) from None
        if not host.trusted:
            raise CloudError(
                f"The host key of {cluster.name}'s login node {host.name!r} is not confirmed "
                f"yet: check its fingerprint and confirm it."
            )
        return host

    async def _connection(self, cluster: Cluster) -> ServerConnection:
        assert self.connections is not None
        host = self._login(cluster)
        # (team mode: the user's certificate, so jobs are the user's own account's)
        return await self.connections.get(f"host:{host.id}", self.hosts.endpoint(host))

    async def _slurm(
        self, cluster: Cluster, *argv: str, patience: float | None = None, check: bool = True
    ) -> str:
        """Run a Slurm command on the login node; retry with backoff while slurmctld (or the
        login node) does not answer, for ``patience`` seconds. Answers its output; raises
        ``SlurmUnavailableError`` when it never got through, ``CloudError`` when Slurm
        refused (with Slurm's words)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.controller_patience if patience is None else patience)
        delay = 0.5
        while True:
            try:
                connection = await self._connection(cluster)
                done = await connection.run("env", TIME_FORMAT, *argv, check=False, timeout=60)
            except HostKeyMismatchError:
                raise  # never retried: someone may be in the way
            except (SSHConnectError, asyncssh.Error, OSError, asyncio.TimeoutError) as e:
                # The login node is unreachable for now; a cluster that is not set up (its
                # login node unregistered or untrusted) fails at once with what to do.
                problem = getattr(e, "message", None) or str(e) or type(e).__name__
            else:
                out, err = str(done.stdout or ""), str(done.stderr or "")
                if done.exit_status == 0 or not check:
                    return out
                if not _UNREACHABLE.search(err) or _GONE.search(err):
                    raise CloudError(f"{argv[0]} on {cluster.name}: {err.strip() or out.strip()}")
                problem = err.strip()
            if loop.time() + delay > deadline:
                raise SlurmUnavailableError(
                    f"Slurm on {cluster.name} does not answer ({problem}); tried for "
                    f"{self.controller_patience if patience is None else patience:g} s."
                )
            self.log.info("Slurm on %s: %s; trying again in %.1f s", cluster.name, problem, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    async def _job(
        self, cluster: Cluster, job_id: str, patience: float | None = None
    ) -> Job | None:
        """The job as Slurm knows it, None when Slurm says there is no such job."""
        try:
            out = await self._slurm(
                cluster, "scontrol", "show", "job", "-o", job_id, patience=patience
            )
        except CloudError as e:
            if isinstance(e, SlurmUnavailableError) or not _GONE.search(e.message):
                raise
            return None
        return parse_job(out)

    async def _accounted(self, cluster: Cluster, job_id: str) -> Accounted | None:
        """The job's accounting record (``sacct``), None where the cluster keeps none
        (``accounting_storage/none``: then asked no more), where sacct does not list the job
        (yet), or where the accounting daemon does not answer: scontrol's times stand then."""
        if cluster.name in self._unaccounted:
            return None
        try:
            out = await self._slurm(
                cluster,
                "sacct",
                "-n",
                "-X",
                "-P",
                "-j",
                job_id,
                "-o",
                "JobID,State,Start,End,Timelimit",
                patience=5,
            )
        except SlurmUnavailableError:
            return None
        except CloudError as e:
            if _NO_ACCOUNTING.search(e.message):
                self._unaccounted.add(cluster.name)
            else:
                self.log.info("sacct on %s: %s", cluster.name, e.message)
            return None
        return parse_sacct(out, job_id)

    async def _end_of(
        self, cluster: Cluster, job_id: str, job: Job | None
    ) -> tuple[str, float | None]:
        """Why an ended job ended, in words, and when, as the cluster accounts it: sacct's
        End where it keeps accounting, else scontrol's EndTime. sacct also knows a job that
        scontrol has forgotten (after ``MinJobAge``, while Jupyter was down)."""
        accounted = await self._accounted(cluster, job_id)
        if job is None and accounted is not None and accounted.state.strip():
            # A record still active in accounting while slurmctld forgot the job is stale.
            if accounted.state.split()[0] in _ACTIVE:
                return self._ended(job_id, None), None
            job = Job(job_id, accounted.state, "None", "", "", "", accounted.time_limit, "")
        end = accounted.end if accounted is not None else None
        if end is None and job is not None:
            end = _slurm_time(job.end_time)
        return self._ended(job_id, job), end

    # --- what it offers ---------------------------------------------------------------------

    async def _discover(self, cluster: Cluster) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        cached = self._offered.get(cluster.name)
        if cached is not None and now - cached[0] < self.discovery_seconds and cached[1]:
            return cached[1]
        try:
            out = await self._slurm(cluster, "sinfo", "-h", "-o", "%R|%l|%c|%m|%G|%a", patience=10)
            partitions = parse_sinfo(out)
            error = "" if partitions else "sinfo showed no partitions"
        except CloudError as e:
            partitions, error = (cached[1] if cached else {}), e.message
        if cluster.partitions:
            partitions = {k: v for k, v in partitions.items() if k in cluster.partitions}
        for entry in partitions.values():
            limit = entry["max_time_minutes"]
            entry["max_time_minutes"] = min(
                limit or cluster.max_time_minutes, cluster.max_time_minutes
            )
        self._offered[cluster.name] = (now, partitions, error)
        return partitions

    async def load_offerings(self) -> None:
        """After a restart nothing has asked for the clouds yet: read the partitions an edit
        is checked against (a cluster that cannot be read says why in the 400)."""
        try:
            clusters = self._clusters()
        except CloudError:
            return  # the edit's check says what is wrong with the setting
        for cluster in clusters.values():
            if not self._offered.get(cluster.name, (0, {}, ""))[1]:
                try:
                    await self._discover(cluster)
                except CloudError as e:
                    self._offered[cluster.name] = (time.monotonic(), {}, e.message)

    async def availability(self) -> tuple[bool, str]:
        try:
            clusters = self._clusters()
        except CloudError as e:
            return False, e.message
        if not clusters:
            return False, "No cluster is configured (c.SlurmCloud.clusters)."
        problems = []
        for cluster in clusters.values():
            try:
                await self._discover(cluster)
            except CloudError as e:
                self._offered[cluster.name] = (time.monotonic(), {}, e.message)
            error = self._offered[cluster.name][2]
            if error:
                problems.append(f"{cluster.name}: {error}")
        if len(problems) == len(clusters):
            return False, "; ".join(problems)
        return True, ""

    def defaults(self) -> dict[str, Any]:
        try:
            clusters = self._clusters()
        except CloudError:
            clusters = {}  # availability() says what is wrong with the setting
        first = next(iter(clusters.values()), None)
        extra: dict[str, Any] = {"time_minutes": 60}
        if first is not None:
            extra["cluster"] = first.name
            offered = self._offered.get(first.name, (0, {}, ""))[1]
            partitions = list(offered) or list(first.partitions)
            if partitions:
                extra["partition"] = partitions[0]
            if first.accounts:
                extra["account"] = first.accounts[0]
        return {"cpu": 1, "memory_gb": 1.0, "gpu": None, "extra": extra}

    def offerings(self) -> dict[str, Any]:
        clusters = []
        for cluster in self._clusters().values():
            offered = self._offered.get(cluster.name, (0, {}, ""))
            clusters.append(
                {
                    "name": cluster.name,
                    "login_host": cluster.host,
                    "partitions": list(offered[1].values()),
                    "accounts": list(cluster.accounts),
                    "qos": list(cluster.qos),
                    "max_time_minutes": cluster.max_time_minutes,
                    "error": offered[2],
                }
            )
        return {"clusters": clusters}

    def check_config(self, config: ServerConfig) -> None:
        extra = dict(config.extra)
        unknown = sorted(set(extra) - {"cluster", "partition", "account", "qos", "time_minutes"})
        if unknown:
            raise ValidationError(
                f"config.extra.{unknown[0]} is not an option of the slurm cloud; it takes "
                "cluster, partition, account, qos and time_minutes.",
                field=f"config.extra.{unknown[0]}",
            )
        cluster = self._cluster_of(config)
        offered = self._offered.get(cluster.name, (0, {}, ""))
        partitions = offered[1]
        partition = parse_str(
            extra.get("partition"),
            "config.extra.partition",
            pattern=_SLURM_NAME,
            max_length=64,
        )
        if partition not in partitions:
            have = ", ".join(partitions) or f"none known ({offered[2] or 'not read yet'})"
            raise ValidationError(
                f"config.extra.partition {partition!r} is not offered on {cluster.name} "
                f"(it offers: {have}).",
                field="config.extra.partition",
            )
        offer = partitions[partition]
        for key, allowed in (("account", cluster.accounts), ("qos", cluster.qos)):
            value = extra.get(key)
            if value is None:
                if key == "account" and allowed:
                    raise ValidationError(
                        f"config.extra.account is required on {cluster.name}: one of "
                        f"{', '.join(allowed)}.",
                        field="config.extra.account",
                    )
                continue
            parse_str(value, f"config.extra.{key}", pattern=_SLURM_NAME, max_length=64)
            if value not in allowed:
                raise ValidationError(
                    f"config.extra.{key} {value!r} is not allowed on {cluster.name} "
                    f"(allowed: {', '.join(allowed) or 'none'}).",
                    field=f"config.extra.{key}",
                )
        parse_int(
            extra.get("time_minutes"),
            "config.extra.time_minutes",
            minimum=1,
            maximum=offer["max_time_minutes"],
        )
        if config.cpu is not None and config.cpu > offer["cpu"]:
            raise ValidationError(
                f"config.cpu is {config.cpu}, but nodes of {partition} have {offer['cpu']}.",
                field="config.cpu",
            )
        if config.memory_gb is not None and config.memory_gb > offer["memory_gb"]:
            raise ValidationError(
                f"config.memory_gb is {config.memory_gb}, but nodes of {partition} have "
                f"{offer['memory_gb']:g} GB.",
                field="config.memory_gb",
            )
        if config.gpu is not None:
            counts = {g["type"]: g["count"] for g in offer["gpus"]}
            if config.gpu.type not in counts or not _SLURM_NAME.fullmatch(config.gpu.type):
                raise ValidationError(
                    f"config.gpu.type {config.gpu.type!r} is not in {partition} (it has "
                    f"{', '.join(counts) or 'no GPUs'}).",
                    field="config.gpu.type",
                )
            if config.gpu.count > counts[config.gpu.type]:
                raise ValidationError(
                    f"config.gpu.count is {config.gpu.count}, but nodes of {partition} have "
                    f"{counts[config.gpu.type]} {config.gpu.type}.",
                    field="config.gpu.count",
                )

    def price(self, config: ServerConfig) -> StateRates | None:
        """The cluster's service-unit rates: per CPU-hour times the CPUs, per GPU-hour of the
        type times the GPUs; nothing while off (no job) nor while starting (the job waits in
        the queue: HPC centres charge a job from its start)."""
        try:
            cluster = self._cluster_of(config)
        except (ValidationError, CloudError):
            return None
        source = f"cluster {cluster.name}'s rates"
        cpu = config.cpu or 1
        parts = [
            Part(
                "CPU",
                f"{cpu} CPU",
                Decimal(str(cluster.cpu_hour_rate or 0)) * cpu,
                source,
                note="" if cluster.cpu_hour_rate is not None else "no cpu_hour_rate is set",
            )
        ]
        if config.gpu is not None:
            rate = cluster.gpu_hour_rates.get(config.gpu.type)
            parts.append(
                Part(
                    "GPU",
                    f"{config.gpu.count} x {config.gpu.type}",
                    Decimal(str(rate or 0)) * config.gpu.count,
                    source,
                    note=""
                    if rate is not None
                    else f"no gpu_hour_rates entry for {config.gpu.type}",
                )
            )
        off = Part("workspace", cluster.name, Decimal(0), source)
        queued = Part("queued job", cluster.name, Decimal(0), source)
        running = Rate(tuple(parts))
        # Stopping, the job still holds its allocation until scancel ends it.
        return StateRates(
            running=running, off=Rate((off,)), starting=Rate((queued,)), stopping=running
        )

    def watch_interval(self) -> float:
        return self.watch_seconds

    # --- lifecycle --------------------------------------------------------------------------

    def _workspace(self, cluster: Cluster, server_id: int) -> str:
        return f"{cluster.workspace_root}/{server_id}"

    @staticmethod
    def _remote_path(path: str) -> str:
        """A shell word for a validated path, ``$HOME``/``~`` left to the remote shell."""
        for head in ("$HOME", "~"):
            if path == head:
                return '"$HOME"'
            if path.startswith(head + "/"):
                return '"$HOME"/' + shlex.quote(path[len(head) + 1 :])
        return shlex.quote(path)

    async def create(self, op: Operation) -> None:
        cluster = self._cluster_of(op.config)
        workspace = self._workspace(cluster, op.server_id)
        op.progress(f"Preparing a workspace on {cluster.name}'s shared filesystem", 0.05)
        connection = await self._connection(cluster)
        done = await connection.connection.run(
            f"mkdir -p {self._remote_path(workspace)} && cd {self._remote_path(workspace)} "
            "&& pwd -P",
            check=False,
            timeout=60,
        )
        if done.exit_status != 0:
            raise CloudError(f"Could not make the workspace {workspace}: {done.stderr!s}")
        op.remember(cluster=cluster.name, workspace=str(done.stdout).strip())
        await self.start(op)

    def _sbatch_options(self, op: Operation, cluster: Cluster) -> list[str]:
        config, extra = op.config, op.config.extra
        options = [
            f"--job-name=jupyter-compute-server-{op.server_id}",
            f"--partition={extra['partition']}",
            f"--time={int(extra['time_minutes'])}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={int(config.cpu or 1)}",
            f"--mem={max(1, int((config.memory_gb or 1.0) * 1024))}M",
            f"--chdir={op.cloud_data['workspace']}",
            "--output=/dev/null",
            "--parsable",
        ]
        if extra.get("account"):
            options.append(f"--account={extra['account']}")
        if extra.get("qos"):
            options.append(f"--qos={extra['qos']}")
        if config.gpu is not None:
            # A node's GPUs without a type in its GRES are offered as type "gpu".
            kind = "" if config.gpu.type == "gpu" else f"{config.gpu.type}:"
            options.append(f"--gres=gpu:{kind}{int(config.gpu.count)}")
        return options

    async def start(self, op: Operation) -> None:
        cluster = self._cluster_of(op.config)
        if op.cloud_data.get("cluster") not in (None, cluster.name):
            raise CloudError("The server's workspace is on another cluster; deprovision it first.")
        if not op.cloud_data.get("workspace"):
            await self.create(op)
            return
        connection = await self._connection(cluster)
        # The script goes over SFTP: nothing of it is ever a shell line.
        script = f".jupyter-compute-servers/slurm/{op.server_id}.sbatch"
        op.progress(f"Submitting a job to {cluster.name}", 0.1)
        try:
            async with connection.connection.start_sftp_client() as sftp:
                await sftp.makedirs(".jupyter-compute-servers/slurm", exist_ok=True)
                async with sftp.open(script, "w") as f:
                    await f.write(JOB_SCRIPT)
                await sftp.chmod(script, 0o700)
        except (asyncssh.Error, OSError) as e:
            raise CloudError(f"Could not write the job script on {cluster.name}: {e}") from e
        # Everything started for the server in the job carries this token: stop ends those.
        op.remember(token=secrets.token_hex(16))
        out = await self._submit(op, cluster, script)
        job_id = out.strip().split(";")[0]
        if not _JOB_ID.fullmatch(job_id):
            raise CloudError(f"sbatch on {cluster.name} answered no job id: {out.strip()!r}")
        op.remember(job_id=job_id, node=None, job_started=None, job_ended=None, job_end="")
        await self._wait_running(op, cluster, job_id)

    async def _submit(self, op: Operation, cluster: Cluster, script: str) -> str:
        """``sbatch``, retried while slurmctld does not answer; before each retry, the job is
        looked for by its name, since a submission whose answer was lost may have been
        accepted: a server never gets two jobs."""
        name = f"jupyter-compute-server-{op.server_id}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.controller_patience
        delay = 0.5
        while True:
            try:
                return await self._slurm(
                    cluster, "sbatch", *self._sbatch_options(op, cluster), script, patience=0
                )
            except SlurmUnavailableError as e:
                problem = e
            with contextlib.suppress(SlurmUnavailableError):
                found = await self._slurm(
                    cluster, "squeue", "-h", f"--name={name}", "-o", "%i", patience=0
                )
                if found.split():
                    return found.split()[-1]
            if loop.time() + delay > deadline:
                raise problem
            op.progress(f"Waiting for Slurm on {cluster.name} to answer", None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    async def _wait_running(self, op: Operation, cluster: Cluster, job_id: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pending_minutes * 60 if self.pending_minutes else None
        try:
            while True:
                job = await self._job(cluster, job_id)
                if job is None or not job.active:
                    why = self._ended(job_id, job)
                    op.remember(job_id=None, job_end=why)
                    raise CloudError(f"The server's {why} before it ran.")
                if job.state == "RUNNING":
                    started = _slurm_time(job.start_time)
                    op.remember(node=job.node, job_started=started)
                    # Charged from when Slurm started it, not from when it was seen running.
                    op.happened_at = started
                    op.progress(f"Job {job_id} is running on {job.node}", 0.8)
                    return
                op.progress(await self._pending_words(cluster, job), None)
                if deadline is not None and loop.time() > deadline:
                    await self._slurm(cluster, "scancel", job_id)
                    op.remember(job_id=None, job_end="cancelled: it waited too long")
                    raise CloudError(
                        f"Job {job_id} waited more than {self.pending_minutes:g} minutes in "
                        f"{cluster.name}'s queue ({job.reason}) and was cancelled. Ask for less "
                        "(fewer GPUs, a shorter time) or another partition."
                    )
                await asyncio.sleep(self.poll_seconds)
        except asyncio.CancelledError:
            raise

    async def _pending_words(self, cluster: Cluster, job: Job) -> str:
        """The pending job in words: "Job 12 waiting: Resources, 1 job ahead, estimated
        start 14:20"."""
        words = f"Job {job.id} waiting: {job.reason}"
        try:
            queue = await self._slurm(
                cluster,
                "squeue",
                "-h",
                "-t",
                "PENDING",
                f"--partition={job.partition}",
                "--sort=-p,i",
                "-o",
                "%i",
                patience=5,
            )
            ids = queue.split()
            if job.id in ids:
                words += f", {_plural(ids.index(job.id), 'job')} ahead"
            start = await self._slurm(
                cluster, "squeue", "-h", "--start", "-j", job.id, "-o", "%S", patience=5
            )
            when = _slurm_time(start.strip())
            if when is not None:
                words += f", estimated start {time.strftime('%H:%M', time.localtime(when))}"
        except CloudError:
            pass  # the reason alone is still worth showing
        return words

    def _ending_soon(self, job: Job) -> str:
        """Within ``warn_minutes`` of the job's end, what to tell the user ("Job 12 reaches
        its time limit at 14:20 (15 minutes left)..."); else ""."""
        end = _slurm_time(job.end_time)
        if end is None:
            return ""
        left = end - time.time()
        if left > self.warn_minutes * 60:
            return ""
        minutes = max(0, round(left / 60))
        at = time.strftime("%H:%M", time.localtime(end))
        return (
            f"Job {job.id} reaches its time limit at {at} ({_plural(minutes, 'minute')} "
            "left): save your work; the server stops then."
        )

    @staticmethod
    def _ended(job_id: str, job: Job | None) -> str:
        if job is None:
            return f"job {job_id} is no longer known to Slurm"
        state = job.state.split()[0] if job.state else "ENDED"
        what = _ENDED.get(state, f"ended ({state.lower()})")
        if state == "TIMEOUT" and job.time_limit:
            what += f" ({job.time_limit})"
        if job.reason not in ("", "None") and state not in ("TIMEOUT",):
            what += f" ({job.reason})"
        return f"job {job_id} {what}"

    async def _end_processes(self, op: Operation, cluster: Cluster, job_id: str) -> None:
        """End what the server started in the job (kernels detach from the agent, and
        proctrack/linuxproc loses track of them), then the job."""
        assert self.connections is not None
        op.progress("Ending the server's processes", 0.2)
        try:
            agent = await self.connections.agent(
                op.server_id, await self.ssh_endpoint(op.server_id, op.cloud_data)
            )
            await agent.call("end_processes", token=op.cloud_data.get("token") or "", timeout=30)
        except Exception as e:  # a job that already ended has nothing left to end
            self.log.info("Could not end server %s's processes: %s", op.server_id, e)
        await self.connections.close(op.server_id)

    async def stop(self, op: Operation) -> None:
        job_id = op.cloud_data.get("job_id")
        if not job_id:
            return
        cluster = self._cluster_of(op.config)
        await self._end_processes(op, cluster, job_id)
        op.progress(f"Cancelling job {job_id}", 0.5)
        await self._slurm(cluster, "scancel", str(job_id))
        job = await self._job(cluster, str(job_id))
        while job is not None and job.state in ("RUNNING", "COMPLETING", "PENDING"):
            await asyncio.sleep(0.5)
            job = await self._job(cluster, str(job_id))
        _, ended = await self._end_of(cluster, str(job_id), job)
        op.remember(
            job_id=None,
            job_end=f"job {job_id} was cancelled (stopped)",
            job_ended=ended if ended is not None else time.time(),
        )
        # The allocation was held (and is charged) until Slurm ended the job.
        op.happened_at = ended

    async def reboot(self, op: Operation) -> None:
        job_id = op.cloud_data.get("job_id")
        if job_id:
            await self._end_processes(op, self._cluster_of(op.config), str(job_id))

    async def deprovision(self, op: Operation) -> None:
        await self.stop(op)
        op.happened_at = None  # deprovisioned when the workspace is gone too
        workspace = op.cloud_data.get("workspace")
        if workspace:
            cluster = self._cluster_of(op.config)
            op.progress("Removing the workspace", 0.6)
            connection = await self._connection(cluster)
            await connection.run("rm", "-rf", "--", workspace, check=False)
        op.remember(cluster=None, workspace=None)

    async def reconfigure(self, op: Operation, config: ServerConfig) -> None:
        if op.cloud_data.get("cluster") not in (None, config.extra.get("cluster")):
            raise ValidationError(
                "The server's workspace is on another cluster; deprovision it to move it.",
                field="config.extra.cluster",
            )

    async def status(self, server_id: int, cloud_data: dict[str, Any]) -> CloudStatus:
        """What Slurm says; raises (nothing is recorded) while Slurm does not answer."""
        job_id = cloud_data.get("job_id")
        clusters = self._clusters()
        cluster = clusters.get(cloud_data.get("cluster") or "")
        if not job_id or cluster is None:
            if cloud_data.get("workspace"):
                return CloudStatus(State.OFF, cloud_data.get("job_end") or "no job")
            return CloudStatus(State.DEPROVISIONED)
        # One quick try: the watch asks again at its next round.
        job = await self._job(cluster, str(job_id), patience=0)
        if job is not None and job.state == "RUNNING":
            return CloudStatus(
                State.RUNNING,
                ending_soon=self._ending_soon(job),
                since=_slurm_time(job.start_time),
            )
        if job is not None and job.state == "COMPLETING":
            # Ending (time limit, scancel): slurmd is ending its processes, up to KillWait.
            # The allocation is still held; a later round finds the job ended and its end.
            return CloudStatus(State.RUNNING, since=_slurm_time(job.start_time))
        if job is not None and job.active:
            # Pending with no start waiting for it (this process restarted), suspended or
            # requeued: the job still holds its place, so say how to end it.
            return CloudStatus(
                State.ERROR,
                f"job {job_id} is {job.state.lower()} ({job.reason}); stop the server to "
                "cancel it, then start it again",
            )
        why, ended = await self._end_of(cluster, str(job_id), job)
        return CloudStatus(State.OFF, f"the server's {why}", since=ended)

    async def ssh_endpoint(self, server_id: int, cloud_data: dict[str, Any]) -> SSHEndpoint:
        job_id = cloud_data.get("job_id")
        cluster = self._clusters().get(cloud_data.get("cluster") or "")
        if not job_id or cluster is None or not cloud_data.get("workspace"):
            raise CloudError("The server has no running job.")
        host = self._login(cluster)
        return self.hosts.endpoint(
            host,
            workspace=cloud_data["workspace"],
            # In the home directory, shared by the cluster's nodes; never synced.
            runtime_dir=f"~/.jupyter-compute-servers/servers/{server_id}",
            environment={"JUPYTER_COMPUTE_SERVER_TOKEN": str(cloud_data.get("token") or "")},
            launcher=(
                "srun",
                f"--jobid={job_id}",
                "--overlap",
                "--nodes=1",
                "--ntasks=1",
                "--unbuffered",
                "--quiet",
            ),
        )
