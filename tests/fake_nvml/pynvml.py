"""A stand-in for nvidia-ml-py's ``pynvml``, for machines without an NVIDIA GPU.

Placed first on a host's PYTHONPATH, it answers as NVML would for the GPUs described in the
JSON file named by ``FAKE_NVML_GPUS``: a list of objects with name, uuid, memory_total,
memory_used, utilization, temperature, power_mw, and optionally:

- ``mig``: true, and ``mig_devices``: the MIG instances an admin made (objects with name, e.g.
  ``NVIDIA A100-SXM4-80GB MIG 1g.10gb``, uuid ``MIG-...``, memory_total, memory_used,
  processes). As on real MIG instances, utilization rates and per-process samples are not
  supported there;
- ``processes``: the running compute processes, objects with pid, memory_used and
  utilization (a per-process SM sample; leave it out, or set ``process_samples`` false on the
  device, for a driver that gives none).

The file is read on every call, so a test changes the readings by rewriting it. Without the
variable it behaves like a machine with no driver. Only what the agent calls is here.
"""

import json
import os
from types import SimpleNamespace

NVML_DEVICE_MIG_ENABLE = 1
NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


def _gpus():
    path = os.environ.get("FAKE_NVML_GPUS")
    if not path:
        raise NVMLError("NVML Shared Library Not Found")
    with open(path) as f:
        return json.load(f)


def nvmlInit():
    _gpus()


def nvmlShutdown():
    pass


def nvmlSystemGetDriverVersion():
    return "550.54.15"


def nvmlSystemGetCudaDriverVersion_v2():
    return 12040


def nvmlDeviceGetCount():
    return len(_gpus())


def nvmlDeviceGetHandleByIndex(index):
    return _gpus()[index]


def nvmlDeviceGetName(handle):
    return handle["name"]


def nvmlDeviceGetUUID(handle):
    return handle["uuid"]


def nvmlDeviceGetMemoryInfo(handle):
    used = handle.get("memory_used", 0)
    return SimpleNamespace(
        total=handle["memory_total"], used=used, free=handle["memory_total"] - used
    )


def nvmlDeviceIsMigDeviceHandle(handle):
    return bool(handle.get("_mig_child"))


def nvmlDeviceGetMaxMigDeviceCount(handle):
    if not handle.get("mig"):
        raise NVMLError("Not Supported")
    return 7


def nvmlDeviceGetMigDeviceHandleByIndex(handle, index):
    devices = handle.get("mig_devices") or []
    if index >= len(devices):
        raise NVMLError("Not Found")
    return {**devices[index], "_mig_child": True}


def nvmlDeviceGetComputeRunningProcesses(handle):
    return [
        SimpleNamespace(pid=p["pid"], usedGpuMemory=p.get("memory_used"))
        for p in handle.get("processes") or []
    ]


def nvmlDeviceGetProcessUtilization(handle, last_seen_timestamp):
    samples = [p for p in handle.get("processes") or [] if "utilization" in p]
    if handle.get("_mig_child") or handle.get("process_samples") is False:
        raise NVMLError("Not Supported")
    if not samples:
        raise NVMLError("Not Found")  # what NVML answers when no process has a sample
    return [
        SimpleNamespace(
            pid=p["pid"], timeStamp=0, smUtil=p["utilization"], memUtil=0, encUtil=0, decUtil=0
        )
        for p in samples
    ]


def nvmlDeviceGetMigMode(handle):
    if handle.get("_mig_child"):
        raise NVMLError("Not Supported")
    mode = NVML_DEVICE_MIG_ENABLE if handle.get("mig") else 0
    return [mode, mode]


def nvmlDeviceGetUtilizationRates(handle):
    if handle.get("_mig_child"):
        raise NVMLError("Not Supported")
    return SimpleNamespace(gpu=handle.get("utilization", 0), memory=0)


def nvmlDeviceGetTemperature(handle, sensor):
    return handle.get("temperature", 40)


def nvmlDeviceGetPowerUsage(handle):
    if "power_mw" not in handle:
        raise NVMLError("Not Supported")
    return handle["power_mw"]


def nvmlDeviceGetEnforcedPowerLimit(handle):
    return handle.get("power_limit_mw", 300000)
