"""The agent that runs on a compute server (standard library only; nvidia-ml-py if present).

It is not installed there: the client sends this file's source over SSH to ``python3`` on the
server each time it opens the agent channel (see ``agent.client``), so the agent always matches
the client's version and nothing is left behind on the server.

Protocol (version 1), newline-delimited JSON over the channel's stdin and stdout:
- the agent first writes ``{"agent": "jupyter-compute-servers", "protocol": 1}``;
- a request is ``{"id": N, "method": "...", "params": {...}}``;
- an answer is ``{"id": N, "result": ...}`` or ``{"id": N, "error": {"type", "message"}}``.
Requests are handled one after another, in order.
"""

import json
import os
import platform
import shutil
import socket
import sys

PROTOCOL = 1


def _meminfo_bytes(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def detect_gpus():
    """GPUs via NVML: ``(gpus, reason)``, reason saying why there are none when it can."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed on this machine"
    try:
        pynvml.nvmlInit()
    except Exception as e:
        return [], f"no NVIDIA driver or GPU found ({e})"
    try:
        gpus = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                mig = pynvml.nvmlDeviceGetMigMode(handle)[0] == pynvml.NVML_DEVICE_MIG_ENABLE
            except pynvml.NVMLError:
                mig = False
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                    "memory_total": int(memory.total),
                    "driver_version": driver.decode() if isinstance(driver, bytes) else driver,
                    "cuda_version": f"{cuda // 1000}.{(cuda % 1000) // 10}",
                    "mig": mig,
                }
            )
        return gpus, ""
    finally:
        pynvml.nvmlShutdown()


def info(params):
    workspace = os.path.expanduser(params.get("workspace") or "~")
    gpus, gpu_reason = detect_gpus()
    try:
        disk_free = shutil.disk_usage(workspace).free
    except OSError:
        disk_free = None
    return {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "os_release": platform.release(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "memory_total": _meminfo_bytes("MemTotal"),
        "disk_free": disk_free,
        "gpus": gpus,
        "gpu_reason": gpu_reason,
    }


def ping(params):
    return {"pong": True, "pid": os.getpid()}


METHODS = {"info": info, "ping": ping}


def serve(stdin, stdout):
    def send(message):
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    send({"agent": "jupyter-compute-servers", "protocol": PROTOCOL, "pid": os.getpid()})
    for line in stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            method = METHODS.get(request.get("method"))
            if method is None:
                raise LookupError(f"unknown method {request.get('method')!r}")
            send({"id": request_id, "result": method(request.get("params") or {})})
        except Exception as e:
            send({"id": request_id, "error": {"type": type(e).__name__, "message": str(e)}})


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
