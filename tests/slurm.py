"""A real one-node Slurm cluster in a temp dir: munged, slurmctld and slurmd (Debian's
slurm-wlm and munge), for the slurm cloud's tests.

The node has a ``gpu`` GRES of type ``a100`` backed by placeholder device files, so that
``--gres=gpu:a100:N`` is allocated by Slurm for real and Slurm sets ``CUDA_VISIBLE_DEVICES``.
No accounting storage (slurmdbd needs MySQL): the cluster has ``accounting_storage/none``.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MUNGED = shutil.which("munged") or "/usr/sbin/munged"
MUNGEKEY = shutil.which("mungekey") or "/usr/sbin/mungekey"
SLURMCTLD = shutil.which("slurmctld") or "/usr/sbin/slurmctld"
SLURMD = shutil.which("slurmd") or "/usr/sbin/slurmd"

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

    def cancel_all(self) -> None:
        self.run("scancel", "--user", os.environ.get("USER", "root"), check=False)
        deadline = time.monotonic() + 30
        while self.run("squeue", "-h", "-o", "%i", check=False).strip():
            if time.monotonic() > deadline:
                raise RuntimeError("jobs would not end")
            time.sleep(0.2)

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_cluster(directory: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under ``directory``; the caller stops them."""
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
    devices = []
    for i in range(GPU_COUNT):
        device = directory / "dev" / f"nvidia{i}"
        # A character device (/dev/null's numbers) that stands for a GPU: Slurm checks the
        # type and derives the index it puts in CUDA_VISIBLE_DEVICES; nothing opens it.
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        devices.append(str(device))
    memory_mb = 4000
    conf = directory / "slurm.conf"
    conf.write_text(
        f"ClusterName=jcs-test\n"
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
        "JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n"
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
        "SchedulerType=sched/backfill\nGresTypes=gpu\nMpiDefault=none\nMailProg=/bin/true\n"
        # Quick scheduling and a short kill wait keep the tests' waits short.
        "SchedulerParameters=sched_interval=2\nKillWait=2\nMinJobAge=600\n"
        "ReturnToService=2\nSlurmctldTimeout=120\nSlurmdTimeout=300\n"
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
        f"Gres=gpu:{GPU_TYPE}:{GPU_COUNT} State=UNKNOWN\n"
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=120 State=UP\n"
        f"PartitionName=long Nodes={node} MaxTime=1440 State=UP\n"
    )
    (directory / "gres.conf").write_text(
        f"AutoDetect=off\nNodeName={node} Name=gpu Type={GPU_TYPE} File={','.join(devices)}\n"
    )
    cluster = SlurmCluster(directory, conf, node, cpus, memory_mb)
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
