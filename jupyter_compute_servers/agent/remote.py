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

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

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


# --- kernels ------------------------------------------------------------------------------
#
# A kernel runs detached (its own session and process group), so neither a dropped SSH
# connection nor the end of this agent stops it. What is needed to find it again lives in
# ``<runtime dir>/kernels/kernel-<id>.record.json``; its connection file (with the HMAC key)
# sits beside it, mode 0600, and the key arrives on this channel, never on a command line.

KERNEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
SIGNALS = {
    int(s): s
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGHUP, signal.SIGQUIT)
}
BARE_PYTHON = re.compile(r"python(\d(\.\d+)?)?")
# Kernels this agent started, so their exit codes can be collected (and zombies reaped).
_CHILDREN: dict = {}


def _kernels_dir(params):
    root = os.path.expanduser(params.get("runtime_dir") or "~/.jupyter-compute-servers")
    path = os.path.join(root, "kernels")
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _kernel_id(params):
    kernel_id = params.get("kernel_id")
    if not isinstance(kernel_id, str) or not KERNEL_ID.match(kernel_id):
        raise ValueError(f"invalid kernel_id {kernel_id!r}")
    return kernel_id


def _write_private(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _loopback_ports(count):
    """Free ports on this machine's loopback, chosen here (held together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _start_time(pid):
    """The process's start time in clock ticks (tells a live kernel from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def _workspace_dir(workspace, relative):
    """``relative`` under ``workspace``, created if missing; never outside it."""
    root = os.path.realpath(os.path.expanduser(workspace))
    if not isinstance(relative, str) or relative.startswith("/") or "\x00" in relative:
        raise ValueError(f"invalid working directory {relative!r}")
    path = os.path.normpath(os.path.join(root, relative))
    if path != root and not path.startswith(root + os.sep):
        raise ValueError(f"working directory {relative!r} is outside the workspace")
    os.makedirs(path, exist_ok=True)
    if os.path.realpath(path) != path:
        raise ValueError(f"working directory {relative!r} leads out of the workspace by a link")
    return path


def _record_path(kernels, kernel_id):
    return os.path.join(kernels, f"kernel-{kernel_id}.record.json")


def _read_record(kernels, kernel_id):
    try:
        with open(_record_path(kernels, kernel_id)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _exit_code(record):
    """None while the kernel runs; its exit code (or -1 when unknown) once it is gone."""
    pid = record["pid"]
    child = _CHILDREN.get(pid)
    if child is not None:
        code = child.poll()
        if code is not None:
            _CHILDREN.pop(pid, None)
            record["exit_code"] = code
        return code
    if "exit_code" in record:
        return record["exit_code"]
    started = _start_time(pid)
    if started is not None:
        return None if started == record.get("start_time") else -1
    if os.path.exists("/proc/self/stat"):
        return -1
    try:  # no /proc (macOS): the pid alone has to do
        os.kill(pid, 0)
    except ProcessLookupError:
        return -1
    except PermissionError:
        pass
    return None


def _public(record):
    return {key: value for key, value in record.items() if key != "env"}


def kernel_launch(params):
    kernels = _kernels_dir(params)
    kernel_id = _kernel_id(params)
    argv = params.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty list of strings")
    key = params.get("key")
    if not isinstance(key, str) or len(key) < 32:
        raise ValueError("key must be a string of at least 32 characters")
    cwd = _workspace_dir(params.get("workspace") or "~", params.get("cwd") or "")
    previous = _read_record(kernels, kernel_id)
    if previous is not None and _exit_code(previous) is None:
        raise RuntimeError(f"kernel {kernel_id} is already running (pid {previous['pid']})")
    ports = dict(zip(CHANNELS, _loopback_ports(len(CHANNELS)), strict=True))
    connection_file = os.path.join(kernels, f"kernel-{kernel_id}.json")
    connection = dict(
        ports,
        ip="127.0.0.1",
        transport="tcp",
        key=key,
        signature_scheme=params.get("signature_scheme") or "hmac-sha256",
        kernel_name=params.get("kernel") or "",
    )
    _write_private(connection_file, json.dumps(connection, indent=1))
    env = dict(os.environ)
    # A parent pid would make ipykernel exit with this agent; the kernel must outlive it.
    env.pop("JPY_PARENT_PID", None)
    env.update({str(k): str(v) for k, v in (params.get("env") or {}).items()})
    env["PWD"] = cwd
    command = [arg.replace("{connection_file}", connection_file) for arg in argv]
    if BARE_PYTHON.fullmatch(command[0]):
        command[0] = sys.executable  # as jupyter_client does locally: the Python we run on
    log_path = os.path.join(kernels, f"kernel-{kernel_id}.log")
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        child = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        os.unlink(connection_file)
        raise RuntimeError(f"cannot run {command[0]!r}: {e.strerror or e}") from None
    finally:
        os.close(log_fd)
    _CHILDREN[child.pid] = child
    record = {
        "kernel_id": kernel_id,
        "kernel": params.get("kernel") or "",
        "display_name": params.get("display_name") or "",
        "pid": child.pid,
        "pgid": child.pid,
        "start_time": _start_time(child.pid),
        "ports": ports,
        "connection_file": connection_file,
        "log_file": log_path,
        "cwd": os.path.relpath(cwd, os.path.realpath(os.path.expanduser(params["workspace"]))),
        "owner": str(params.get("owner") or ""),
        "started": time.time(),
    }
    _write_private(_record_path(kernels, kernel_id), json.dumps(record))
    return _public(record)


def kernel_status(params):
    record = _read_record(_kernels_dir(params), _kernel_id(params))
    if record is None:
        return {"alive": False, "exit_code": -1, "known": False}
    code = _exit_code(record)
    return {"alive": code is None, "exit_code": code, "known": True, "pid": record["pid"]}


def kernel_signal(params):
    kernels = _kernels_dir(params)
    record = _read_record(kernels, _kernel_id(params))
    signum = params.get("signum")
    if signum not in SIGNALS:
        raise ValueError(f"signal {signum!r} is not one the agent sends")
    if record is None or _exit_code(record) is not None:
        return {"sent": False}
    target = record["pgid"] if params.get("group", True) else record["pid"]
    try:
        if params.get("group", True):
            os.killpg(target, signum)
        else:
            os.kill(target, signum)
    except ProcessLookupError:
        return {"sent": False}
    return {"sent": True}


def kernel_cleanup(params):
    """Forget a kernel that has ended: its record, connection file and log."""
    kernels = _kernels_dir(params)
    kernel_id = _kernel_id(params)
    record = _read_record(kernels, kernel_id)
    if record is not None and _exit_code(record) is None:
        raise RuntimeError(f"kernel {kernel_id} is still running")
    for name in (f"kernel-{kernel_id}.json", f"kernel-{kernel_id}.log"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(kernels, name))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_record_path(kernels, kernel_id))
    return {"removed": record is not None}


def kernel_log(params):
    """The end of a kernel's output, to explain why it did not start."""
    kernels = _kernels_dir(params)
    path = os.path.join(kernels, f"kernel-{_kernel_id(params)}.log")
    limit = min(int(params.get("max_bytes") or 4000), 64000)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return {"log": f.read().decode("utf-8", "replace")}
    except OSError:
        return {"log": ""}


def kernel_list(params):
    """Kernels running on this server (dead ones are forgotten on the way)."""
    kernels = _kernels_dir(params)
    running = []
    for name in sorted(os.listdir(kernels)):
        if not name.endswith(".record.json"):
            continue
        kernel_id = name[len("kernel-") : -len(".record.json")]
        record = _read_record(kernels, kernel_id)
        if record is None:
            continue
        if _exit_code(record) is None:
            running.append(_public(record))
        else:
            kernel_cleanup({"runtime_dir": params.get("runtime_dir"), "kernel_id": kernel_id})
    return {"kernels": running}


def kernelspecs(params):
    """The kernels installed on this server, as ``jupyter kernelspec list --json`` says, or
    the ipykernel of ``python`` when Jupyter's tools are not installed here."""
    python = params.get("python") or sys.executable
    specs = {}
    reason = ""
    try:
        listed = subprocess.run(
            [python, "-m", "jupyter_client.kernelspecapp", "list", "--json"],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if listed.returncode == 0:
            for name, entry in json.loads(listed.stdout)["kernelspecs"].items():
                spec = entry.get("spec") or {}
                argv = spec.get("argv") or []
                # As jupyter_client does locally: a bare "python" means the listing Python.
                if argv and BARE_PYTHON.fullmatch(argv[0]):
                    spec["argv"] = [python, *argv[1:]]
                specs[name] = spec
        else:
            reason = listed.stderr.decode("utf-8", "replace").strip()[-300:]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        reason = str(e)
    if not specs:
        probe = subprocess.run(
            [python, "-c", "import ipykernel"], capture_output=True, stdin=subprocess.DEVNULL
        )
        if probe.returncode == 0:
            specs["python3"] = {
                "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "metadata": {"debugger": True},
            }
    return {"kernelspecs": specs, "reason": reason}


def ping(params):
    return {"pong": True, "pid": os.getpid()}


METHODS = {
    "info": info,
    "ping": ping,
    "kernelspecs": kernelspecs,
    "kernel_launch": kernel_launch,
    "kernel_status": kernel_status,
    "kernel_signal": kernel_signal,
    "kernel_cleanup": kernel_cleanup,
    "kernel_log": kernel_log,
    "kernel_list": kernel_list,
}


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
