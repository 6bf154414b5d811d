"""A stand-in for nvidia-ml-py's ``pynvml``, for machines without an NVIDIA GPU.

Placed first on a host's PYTHONPATH, it answers as NVML would for the GPUs described in the
JSON file named by ``FAKE_NVML_GPUS``: a list of objects with name, uuid, memory_total,
memory_used, utilization, temperature, power_mw (and optionally mig). Without that variable it
behaves like a machine with no driver. Only what the agent calls is here.
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


def nvmlDeviceGetMigMode(handle):
    mode = NVML_DEVICE_MIG_ENABLE if handle.get("mig") else 0
    return [mode, mode]


def nvmlDeviceGetUtilizationRates(handle):
    return SimpleNamespace(gpu=handle.get("utilization", 0), memory=0)


def nvmlDeviceGetTemperature(handle, sensor):
    return handle.get("temperature", 40)


def nvmlDeviceGetPowerUsage(handle):
    if "power_mw" not in handle:
        raise NVMLError("Not Supported")
    return handle["power_mw"]


def nvmlDeviceGetEnforcedPowerLimit(handle):
    return handle.get("power_limit_mw", 300000)
