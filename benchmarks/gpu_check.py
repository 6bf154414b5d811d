"""The real-GPU checks of GPU sharing, on a machine with an NVIDIA GPU; prints what it found.

    python benchmarks/gpu_check.py [--allocate-mb N]

CI has no GPU, so its tests run a stand-in NVML (tests/fake_nvml). This script runs what only
a real GPU can show, with the real nvidia-ml-py:

1. the agent's inventory (``info``) and metrics (``metrics``) read through NVML, as the agent
   reads them on a host;
2. only if a GPU already has MIG instances (an admin made them): their listing, as allocatable
   GPUs (UUID ``MIG-...``, type, memory);
3. a kernel on a ``local`` compute server given the first GPU's UUID in
   ``CUDA_VISIBLE_DEVICES`` sees exactly that GPU (the CUDA driver, through ctypes, counts one
   device, whose UUID is that one);
4. the kernel allocates ``--allocate-mb`` MiB on the GPU (the CUDA driver API through ctypes
   on ``libcuda.so.1``, which the driver installs: nothing to install from PyPI) and NVML's
   running compute processes show its pid with that memory, read by the agent's own
   per-process function (``own``: memory, utilization samples if the driver gives them);
5. a kernel on a ``slurm`` compute server: the tests' one-node Slurm cluster (tests/slurm.py;
   needs slurm-wlm and munge) is started with the first whole GPU's ``/dev/nvidiaN`` as its
   ``gpu`` GRES, a server asking for that GPU is started as a job, and its kernel (a step of
   the job, ``srun --overlap``) sees exactly that GPU through ``CUDA_VISIBLE_DEVICES`` as Slurm
   set it, and reads it through NVML inside the job. Without Slurm installed it says so.

It only reads the GPU: it never changes its settings, compute mode, MIG mode or layout, and
never resets it. Without a GPU (no nvidia-ml-py, no driver, no device) it says so, lists the
checks as not done, and exits 0. Exit status: 0 when every check that could run passed or none
could run, 1 when one failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: The GRES type the Slurm check gives the real GPU (any name Slurm accepts).
SLURM_GPU_TYPE = "real"

CHECKS = (
    "inventory: the agent's info through real NVML",
    "metrics: the agent's metrics through real NVML",
    "MIG: the listing of existing MIG instances",
    "kernel: a local server's kernel sees exactly the GPU of its CUDA_VISIBLE_DEVICES",
    "per-process memory: NVML shows the kernel's own allocation",
    "slurm: a job's kernel sees the GPU Slurm allocated, by CUDA and NVML",
)

#: Run in a Slurm job's kernel after CUDA_DEVICES: the allocated GPU as NVML reads it there.
NVML_OF_CUDA_DEVICE = r"""
import json, os, pynvml
pynvml.nvmlInit()
_handle = pynvml.nvmlDeviceGetHandleByUUID("GPU-" + uuids[0])
_name = pynvml.nvmlDeviceGetName(_handle)
print(json.dumps({
    "job": os.environ.get("SLURM_JOB_ID"), "step": os.environ.get("SLURM_STEP_ID"),
    "nvml_name": _name.decode() if isinstance(_name, bytes) else _name,
    "memory_total": pynvml.nvmlDeviceGetMemoryInfo(_handle).total,
}))
pynvml.nvmlShutdown()
"""

#: Run in the kernel: the CUDA devices it sees and their UUIDs, by the driver API (ctypes).
CUDA_DEVICES = r"""
import ctypes, json, os
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0, "cuInit failed"
count = ctypes.c_int()
assert cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
uuids = []
for i in range(count.value):
    device = ctypes.c_int()
    cuda.cuDeviceGet(ctypes.byref(device), i)
    raw = (ctypes.c_ubyte * 16)()
    get = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
    get(raw, device)
    h = bytes(raw).hex()
    uuids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
print(json.dumps({"pid": os.getpid(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                  "count": count.value, "uuids": uuids}))
"""

#: Run in the kernel: allocate N MiB on device 0 and keep it (the context stays alive).
CUDA_ALLOCATE = r"""
import ctypes
_cuda = ctypes.CDLL("libcuda.so.1")
_cuda.cuInit(0)
_ctx = ctypes.c_void_p()
_device = ctypes.c_int()
_cuda.cuDeviceGet(ctypes.byref(_device), 0)
# The device's primary context (what CUDA runtimes use), kept for the kernel's life.
assert _cuda.cuDevicePrimaryCtxRetain(ctypes.byref(_ctx), _device) == 0, "no context"
assert _cuda.cuCtxSetCurrent(_ctx) == 0, "cuCtxSetCurrent failed"
_ptr = ctypes.c_uint64()
_err = _cuda.cuMemAlloc_v2(ctypes.byref(_ptr), {size})
assert _err == 0, f"cuMemAlloc failed: {{_err}}"
print("allocated", {size})
"""


def heading(text: str) -> None:
    print(f"\n== {text}")


def no_gpu_reason() -> str:
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except Exception as e:
        return f"NVML cannot start: no NVIDIA driver or GPU here ({e})"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML sees no GPU"
    finally:
        pynvml.nvmlShutdown()
    return ""


def check_agent(results: dict[str, str]) -> dict[str, Any]:
    from jupyter_compute_servers.agent import rpc_agent

    heading(CHECKS[0])
    inventory = rpc_agent.info({})
    for gpu in inventory["gpus"]:
        print(
            f"GPU {gpu['index']}: {gpu['name']} {gpu['uuid']} "
            f"{gpu['memory_total'] / 2**30:.1f} GiB, driver {gpu['driver_version']}, "
            f"CUDA {gpu['cuda_version']}, MIG {'on' if gpu['mig'] else 'off'}"
        )
    results[CHECKS[0]] = "passed" if inventory["gpus"] else f"FAILED: {inventory['gpu_reason']}"

    heading(CHECKS[1])
    metrics = rpc_agent.metrics({})
    for gpu in metrics["gpus"]:
        print(json.dumps(gpu))
    ok = metrics["gpus"] and all(g["memory_total"] > 0 for g in metrics["gpus"])
    results[CHECKS[1]] = "passed" if ok else f"FAILED: {metrics['gpu_reason'] or 'no GPU'}"

    heading(CHECKS[2])
    mig = [d for g in inventory["gpus"] if g["mig"] for d in g.get("mig_devices") or []]
    if not any(g["mig"] for g in inventory["gpus"]):
        print("No GPU is in MIG mode (left as it is): nothing to list.")
        results[CHECKS[2]] = "not done: no GPU here has MIG instances"
    else:
        for device in mig:
            print(
                f"{device['uuid']}: type {device['name']!r}, profile {device['mig_profile']}, "
                f"{device['memory_total'] / 2**30:.1f} GiB, on {device['parent']}"
            )
        results[CHECKS[2]] = (
            "passed" if mig else "FAILED: MIG mode on, but no instance listed (none made?)"
        )
    return inventory


async def check_kernel(
    inventory: dict[str, Any], results: dict[str, str], allocate_mb: int
) -> None:
    from kernels import Resources, Workdir, cli, execute, start_kernel

    from jupyter_compute_servers.agent import rpc_agent

    whole = [g for g in inventory["gpus"] if not g["mig"]]
    if not whole:
        results[CHECKS[3]] = results[CHECKS[4]] = "not done: every GPU is in MIG mode"
        return
    gpu = whole[0]
    heading(f"{CHECKS[3]} ({gpu['uuid']})")
    work = Workdir(Path(tempfile.mkdtemp(prefix="jcs-gpu-check-")))
    os.environ["PATH"] = os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]
    )
    res = Resources()
    created = False
    try:
        config = json.dumps({"gpu": {"type": gpu["name"], "count": 1}})
        server = json.loads(
            cli(work, "create", "gpu-check", "--cloud", "local", "--config", config, "--json")
        )
        created = True
        server_id = int(server["id"])
        cli(work, "start", "gpu-check")
        _, kc, *_ = await start_kernel(res, f"compute-{server_id}-python3", work.workspace)
        text: list[str] = []
        await execute(kc, CUDA_DEVICES, timeout=120, text=text)
        seen = json.loads("".join(text).strip().splitlines()[-1])
        print(json.dumps(seen))
        wanted = gpu["uuid"].removeprefix("GPU-")
        ok = seen["visible"] == gpu["uuid"] and seen["count"] == 1 and seen["uuids"] == [wanted]
        results[CHECKS[3]] = (
            "passed"
            if ok
            else f"FAILED: CUDA_VISIBLE_DEVICES={seen['visible']}, saw {seen['uuids']}"
        )

        heading(f"{CHECKS[4]} ({allocate_mb} MiB)")
        await execute(kc, CUDA_ALLOCATE.format(size=allocate_mb * 2**20), timeout=120)
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByUUID(gpu["uuid"])
            own = None
            for _ in range(20):  # NVML lists a new context within a moment
                own = rpc_agent._own_use(pynvml, handle, {seen["pid"]})
                if own and own["processes"]:
                    break
                await asyncio.sleep(0.25)
            listed = [
                (p.pid, p.usedGpuMemory)
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
            ]
        finally:
            pynvml.nvmlShutdown()
        print(f"running compute processes (pid, bytes): {listed}")
        print(f"the kernel (pid {seen['pid']}), as the agent reads its own use: {own}")
        if own is None or not own["processes"]:
            results[CHECKS[4]] = "FAILED: the kernel's process is not among NVML's"
        elif own["memory_used"] == 0 and all(m is None for _, m in listed):
            results[CHECKS[4]] = "passed, but the driver gives no per-process memory here"
        elif own["memory_used"] < allocate_mb * 2**20:
            results[CHECKS[4]] = f"FAILED: {own['memory_used']} bytes, under the allocation"
        else:
            results[CHECKS[4]] = (
                f"passed: {own['memory_used'] / 2**20:.0f} MiB, utilization {own['utilization']}"
            )
    finally:
        await res.close_async()
        if created:
            try:
                cli(work, "stop", "gpu-check")
            except Exception as e:
                print(f"Could not stop the server: {e}", file=sys.stderr)
        shutil.rmtree(work.root, ignore_errors=True)


async def check_slurm_kernel(
    inventory: dict[str, Any], results: dict[str, str], work: Any, login: dict[str, Any]
) -> None:
    """A slurm server's kernel on the cluster whose GRES is the first whole GPU."""
    from kernels import Resources, execute, start_kernel
    from slurm import register_login, wait_state

    from jupyter_compute_servers.config import load_settings
    from jupyter_compute_servers.services import build_services

    gpu = next(g for g in inventory["gpus"] if not g["mig"])
    heading(f"{CHECKS[5]} ({gpu['uuid']})")
    services = build_services(load_settings())
    res = Resources()
    server_id = None
    try:
        await register_login(services, login)
        body = {
            "name": "gpu-check-job",
            "cloud": "slurm",
            "config": {
                "cpu": 1,
                "memory_gb": 0.5,
                "gpu": {"type": SLURM_GPU_TYPE, "count": 1},
                "extra": {"cluster": "hpc", "partition": "debug", "time_minutes": 30},
            },
        }
        server_id = (await services.manager.create_server_on_available_cloud(body)).id
        services.manager.request_action(server_id, "start")
        state = await wait_state(services.manager, server_id)
        if state != "running":
            reason = services.manager.store.get(server_id).state_reason
            results[CHECKS[5]] = f"FAILED: the job's server is {state}: {reason}"
            return
        _, kc, *_ = await start_kernel(res, f"compute-{server_id}-python3", work.workspace)
        text: list[str] = []
        await execute(kc, CUDA_DEVICES + NVML_OF_CUDA_DEVICE, timeout=120, text=text)
        lines = "".join(text).strip().splitlines()
        seen, nvml = json.loads(lines[-2]), json.loads(lines[-1])
        print(json.dumps(seen))
        print(json.dumps(nvml))
        wanted = gpu["uuid"].removeprefix("GPU-")
        if seen["count"] == 1 and seen["uuids"] == [wanted] and nvml["job"]:
            results[CHECKS[5]] = (
                f"passed: job {nvml['job']} step {nvml['step']}, "
                f"CUDA_VISIBLE_DEVICES={seen['visible']}, {nvml['nvml_name']}"
            )
        else:
            results[CHECKS[5]] = (
                f"FAILED: CUDA_VISIBLE_DEVICES={seen['visible']}, CUDA saw {seen['uuids']} "
                f"(wanted {wanted}), job {nvml['job']}"
            )
    finally:
        await res.close_async()
        if server_id is not None:
            services.manager.request_action(server_id, "stop")
            await services.manager.wait_for_action(server_id)
        await services.close()


def run_slurm_check(inventory: dict[str, Any], results: dict[str, str]) -> None:
    """Start the cluster on the first whole GPU's device file, then check its kernel."""
    from kernels import Workdir
    from slurm import start_cluster_and_login

    whole = [g for g in inventory["gpus"] if not g["mig"]]
    if not whole:
        results[CHECKS[5]] = "not done: every GPU is in MIG mode"
        return
    if not shutil.which("slurmctld") and not os.path.exists("/usr/sbin/slurmctld"):
        results[CHECKS[5]] = "not done: Slurm is not installed (apt-get install slurm-wlm munge)"
        return
    import pynvml

    pynvml.nvmlInit()
    try:
        minor = pynvml.nvmlDeviceGetMinorNumber(pynvml.nvmlDeviceGetHandleByUUID(whole[0]["uuid"]))
    finally:
        pynvml.nvmlShutdown()
    device = f"/dev/nvidia{minor}"
    work = Workdir(Path(tempfile.mkdtemp(prefix="jcs-gpu-check-slurm-")))
    cluster = sshd = None
    try:
        cluster, sshd, login = start_cluster_and_login(
            work, gpu_devices=[device], gpu_type=SLURM_GPU_TYPE
        )
        asyncio.run(check_slurm_kernel(inventory, results, work, login))
    finally:
        if cluster is not None:
            cluster.cancel_all()
            cluster.stop()
        if sshd is not None:
            sshd.process.terminate()
            sshd.process.wait()
        shutil.rmtree(work.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--allocate-mb", type=int, default=256)
    opts = parser.parse_args(argv)
    results: dict[str, str] = {}
    reason = no_gpu_reason()
    if reason:
        print(f"No NVIDIA GPU to check here: {reason}.")
        results = {check: "not done (no GPU)" for check in CHECKS}
    else:
        try:
            inventory = check_agent(results)
            asyncio.run(check_kernel(inventory, results, opts.allocate_mb))
            run_slurm_check(inventory, results)
        except Exception as e:
            print(f"\nThe checks stopped: {type(e).__name__}: {e}", file=sys.stderr)
    heading("Summary")
    for check in CHECKS:
        print(f"- {check}: {results.get(check, 'not done (stopped before it)')}")
    failed = any(r.startswith("FAILED") or "stopped" in r for r in results.values())
    return 1 if failed or len(results) < len(CHECKS) else 0


if __name__ == "__main__":
    sys.exit(main())
