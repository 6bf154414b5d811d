"""A real one-node Slurm cluster in a temp dir: munged, slurmctld and slurmd (Debian's
slurm-wlm and munge), for the slurm cloud's tests.

The node has a ``gpu`` GRES of type ``a100`` backed by placeholder device files, so that
``--gres=gpu:a100:N`` is allocated by Slurm for real and Slurm sets ``CUDA_VISIBLE_DEVICES``.
By default the cluster keeps no accounting (``accounting_storage/none``: sacct answers that
accounting storage is disabled). With ``accounting=True`` it keeps it for real: a MariaDB
server (its own datadir, on a free 127.0.0.1 port) and a slurmdbd (Debian's slurmdbd and
mariadb-server) are started first, the cluster is registered with ``sacctmgr``, and slurmctld
sends its jobs' records there (``accounting_storage/slurmdbd``), so ``sacct`` lists them.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MUNGED = shutil.which("munged") or "/usr/sbin/munged"
MUNGEKEY = shutil.which("mungekey") or "/usr/sbin/mungekey"
SLURMCTLD = shutil.which("slurmctld") or "/usr/sbin/slurmctld"
SLURMD = shutil.which("slurmd") or "/usr/sbin/slurmd"
SLURMDBD = shutil.which("slurmdbd") or "/usr/sbin/slurmdbd"
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
CLUSTER_NAME = "jcs-test"

GPU_TYPE = "a100"
GPU_COUNT = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SlurmCluster:
    directory: Path
    conf: Path
    node: str
    cpus: int
    memory_mb: int
    #: slurmdbd's port; 0 where the cluster keeps no accounting.
    dbd_port: int = 0
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> str:
        done = subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=30, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv}: {done.stderr or done.stdout}")
        return done.stdout

    def start_ctld(self) -> None:
        self.processes["slurmctld"] = subprocess.Popen(
            [SLURMCTLD, "-D", "-f", str(self.conf)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "slurmctld.out", "ab"),  # noqa: SIM115
        )
        self.wait_ready()

    def stop_ctld(self) -> None:
        process = self.processes.pop("slurmctld")
        process.terminate()
        process.wait(30)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            )
            states = done.stdout.split()
            if (
                done.returncode == 0
                and states
                and all(s.rstrip("*~#") in ("idle", "mixed", "allocated") for s in states)
            ):
                return
            if time.monotonic() > deadline:
                log = (self.directory / "slurmctld.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"Slurm is not ready: {done.stdout}{done.stderr}\n{log}")
            time.sleep(0.3)

    def sacct(self, job_id: str) -> dict[str, str]:
        """The job's accounting record (sacct's JobID, State, Start, End; times in seconds
        since the epoch); empty while slurmdbd has no record of it."""
        fields = ("JobID", "State", "Start", "End")
        out = self.run(
            "env",
            "SLURM_TIME_FORMAT=%s",
            "sacct",
            "-n",
            "-X",
            "-P",
            "-j",
            job_id,
            "-o",
            ",".join(fields),
        )
        lines = [line.split("|") for line in out.splitlines() if line.startswith(f"{job_id}|")]
        return dict(zip(fields, lines[-1], strict=True)) if lines else {}

    def occupy_node(self) -> str:
        """Submit a job holding every CPU of the node (others wait behind it); its id."""
        return self.run(
            "sbatch",
            "--parsable",
            f"--cpus-per-task={self.cpus}",
            "--mem=500M",
            "--output=/dev/null",
            "--wrap",
            "sleep 600",
        ).strip()

    def cancel_all(self) -> None:
        self.run("scancel", "--user", os.environ.get("USER", "root"), check=False)
        deadline = time.monotonic() + 30
        while self.run("squeue", "-h", "-o", "%i", check=False).strip():
            if time.monotonic() > deadline:
                raise RuntimeError("jobs would not end")
            time.sleep(0.2)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait(
    problem: Callable[[], str], process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    """Until ``problem()`` is empty; fails with the daemon's log and the last problem when the
    daemon exits or does not get ready in time."""
    deadline = time.monotonic() + timeout
    while last := problem():
        if process.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            why = f"exited ({process.returncode})" if process.poll() is not None else "timed out"
            raise RuntimeError(f"{process.args!r} {why}: {last}\n{text}")
        time.sleep(0.1)


def _fails(*argv: str, env: dict[str, str] | None = None) -> str:
    """Why the command failed; empty when it succeeded."""
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30)
    return "" if done.returncode == 0 else (done.stderr or done.stdout or "failed").strip()


def _start_accounting(cluster: SlurmCluster, munge_socket: Path) -> None:
    """MariaDB, then slurmdbd on it, then the cluster registered in it (no associations
    enforced, so any user's jobs are recorded)."""
    for tool in (SLURMDBD, MARIADBD, MARIADB_INSTALL_DB):
        if not os.path.exists(tool):
            raise RuntimeError("No Slurm accounting: apt-get install slurmdbd mariadb-server")
    directory = cluster.directory
    data = directory / "mariadb"
    subprocess.run(
        [
            MARIADB_INSTALL_DB,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",  # root, no password: a test's own
            "--skip-test-db",
        ],
        capture_output=True,
        check=True,
    )
    db_port = _free_port()
    cluster.processes["mariadbd"] = subprocess.Popen(
        [
            MARIADBD,
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--bind-address=127.0.0.1",
            f"--port={db_port}",
            f"--socket={directory / 'mariadb.sock'}",
            f"--pid-file={directory / 'mariadb.pid'}",
            f"--log-error={directory / 'mariadb.log'}",
            "--innodb-buffer-pool-size=32M",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait(
        lambda: _fails(
            "mariadb-admin", "--no-defaults", "-h127.0.0.1", f"-P{db_port}", "-uroot", "ping"
        ),
        cluster.processes["mariadbd"],
        directory / "mariadb.log",
    )
    dbd_conf = directory / "slurmdbd.conf"
    # slurmdbd reads slurmdbd.conf beside slurm.conf (SLURM_CONF) and refuses one that
    # others may read or that is not its SlurmUser's (root here).
    dbd_conf.touch(0o600)
    dbd_conf.write_text(
        "AuthType=auth/munge\n"
        f"AuthInfo=socket={munge_socket}\n"
        "DbdHost=localhost\nDbdAddr=127.0.0.1\n"
        f"DbdPort={cluster.dbd_port}\n"
        "SlurmUser=root\n"
        f"PidFile={directory / 'slurmdbd.pid'}\n"
        f"LogFile={directory / 'slurmdbd.log'}\n"
        "StorageType=accounting_storage/mysql\n"
        f"StorageHost=127.0.0.1\nStoragePort={db_port}\nStorageUser=root\n"
        "StorageLoc=slurm_acct_db\n"
    )
    cluster.processes["slurmdbd"] = subprocess.Popen(
        [SLURMDBD, "-D"],
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "slurmdbd.out", "ab"),  # noqa: SIM115
    )
    _wait(
        lambda: _fails("sacctmgr", "-n", "-P", "show", "cluster", env=cluster.env),
        cluster.processes["slurmdbd"],
        directory / "slurmdbd.log",
    )
    cluster.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME)


def start_cluster(
    directory: Path,
    *,
    accounting: bool = False,
    min_job_age: int = 600,
    gpu_devices: list[str] | None = None,
    gpu_type: str = GPU_TYPE,
) -> SlurmCluster:
    """Start munged, (with ``accounting``: MariaDB and slurmdbd,) slurmctld and slurmd under
    ``directory``; the caller stops them. slurmctld forgets an ended job ``min_job_age``
    seconds after it ended (at its next purge of old jobs). The node's ``gpu`` GRES of type
    ``gpu_type`` is placeholder device files, or ``gpu_devices`` (real ``/dev/nvidiaN``, for
    benchmarks/gpu_check.py on a machine with GPUs)."""
    for tool in (MUNGED, SLURMCTLD, SLURMD):
        if not os.path.exists(tool):
            raise RuntimeError("Slurm is not installed: apt-get install slurm-wlm munge")
    directory.mkdir(parents=True, exist_ok=True)
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    munge_key = directory / "munge.key"
    subprocess.run([MUNGEKEY, "-c", "-k", str(munge_key)], check=True)
    munge_key.chmod(0o400)
    munge_socket = directory / "munge.socket"
    for sub in ("state", "spool", "dev"):
        (directory / sub).mkdir(exist_ok=True)
    devices = list(gpu_devices or [])
    for i in range(0 if gpu_devices else GPU_COUNT):
        device = directory / "dev" / f"nvidia{i}"
        # A character device (/dev/null's numbers) that stands for a GPU: Slurm checks the
        # type and derives the index it puts in CUDA_VISIBLE_DEVICES; nothing opens it.
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        devices.append(str(device))
    memory_mb = 4000
    conf = directory / "slurm.conf"
    dbd_port = _free_port() if accounting else 0
    accounting_conf = (
        "AccountingStorageType=accounting_storage/slurmdbd\n"
        f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={dbd_port}\n"
        # Slurm's commands authenticate to slurmdbd with the munged named here (by default
        # /run/munge's, which the test has none of).
        f"AccountingStoragePass={munge_socket}\n"
        if accounting
        else "AccountingStorageType=accounting_storage/none\n"
    )
    conf.write_text(
        f"ClusterName={CLUSTER_NAME}\n"
        f"SlurmctldHost={node}(127.0.0.1)\n"
        f"SlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
        "SlurmUser=root\nSlurmdUser=root\n"
        "AuthType=auth/munge\nCredType=cred/munge\n"
        f"AuthInfo=socket={munge_socket}\n"
        f"StateSaveLocation={directory / 'state'}\nSlurmdSpoolDir={directory / 'spool'}\n"
        f"SlurmctldPidFile={directory / 'slurmctld.pid'}\n"
        f"SlurmdPidFile={directory / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={directory / 'slurmctld.log'}\n"
        f"SlurmdLogFile={directory / 'slurmd.log'}\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        "JobAcctGatherType=jobacct_gather/none\n"
        f"{accounting_conf}"
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
        "SchedulerType=sched/backfill\nGresTypes=gpu\nMpiDefault=none\nMailProg=/bin/true\n"
        # Quick scheduling and a short kill wait keep the tests' waits short.
        "SchedulerParameters=sched_interval=2\nKillWait=2\n"
        f"MinJobAge={min_job_age}\n"
        "ReturnToService=2\nSlurmctldTimeout=120\nSlurmdTimeout=300\n"
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
        f"Gres=gpu:{gpu_type}:{len(devices)} State=UNKNOWN\n"
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=120 State=UP\n"
        f"PartitionName=long Nodes={node} MaxTime=1440 State=UP\n"
    )
    (directory / "gres.conf").write_text(
        f"AutoDetect=off\nNodeName={node} Name=gpu Type={gpu_type} File={','.join(devices)}\n"
    )
    cluster = SlurmCluster(directory, conf, node, cpus, memory_mb, dbd_port)
    cluster.processes["munged"] = subprocess.Popen(
        [
            MUNGED,
            "-F",
            "-f",
            f"--socket={munge_socket}",
            f"--key-file={munge_key}",
            f"--pid-file={directory / 'munged.pid'}",
            f"--log-file={directory / 'munged.log'}",
            f"--seed-file={directory / 'munged.seed'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(directory / "munged.out", "ab"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 10
    while not munge_socket.exists():
        if time.monotonic() > deadline or cluster.processes["munged"].poll() is not None:
            cluster.stop()
            raise RuntimeError((directory / "munged.out").read_text())
        time.sleep(0.05)
    try:
        if accounting:
            _start_accounting(cluster, munge_socket)
        cluster.processes["slurmd"] = subprocess.Popen(
            [SLURMD, "-D", "-f", str(conf), "-N", node],
            env=cluster.env,
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "slurmd.out", "ab"),  # noqa: SIM115
        )
        cluster.start_ctld()
    except BaseException:
        cluster.stop()
        raise
    return cluster
