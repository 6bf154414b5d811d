"""The RPC agent that runs on a compute server (standard library only; nvidia-ml-py if present).

It is not installed there: the client sends this file's source over SSH to ``python3`` on the
server each time it opens the agent channel (see ``agent/__init__.py``), so the agent always
matches the client's version and nothing is left behind on the server. File sync has an agent
of its own (``sync_agent.py``), started as a separate process and sharing nothing with this one.

Protocol (version 1), newline-delimited JSON over the channel's stdin and stdout:
- the agent first writes ``{"agent": "jupyter-compute-servers", "protocol": 1}``;
- a request is ``{"id": N, "method": "...", "params": {...}}``;
- an answer is ``{"id": N, "result": ...}`` or ``{"id": N, "error": {"type", "message"}}``.
Requests are handled one after another, in order.
"""

import collections
import contextlib
import getpass
import hashlib
import hmac
import itertools
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from typing import Any

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
            name = _text(pynvml.nvmlDeviceGetName(handle))
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            gpu = {
                "index": index,
                "name": name,
                "uuid": uuid,
                "memory_total": int(memory.total),
                "driver_version": _text(driver),
                "cuda_version": f"{cuda // 1000}.{(cuda % 1000) // 10}",
                "mig": mig,
            }
            if mig:
                # Read only: the instances an admin made (never created or changed here).
                gpu["mig_devices"] = [
                    _mig_device(pynvml, child, uuid) for child in _mig_handles(pynvml, handle)
                ]
            gpus.append(gpu)
        return gpus, ""
    finally:
        pynvml.nvmlShutdown()


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _mig_handles(pynvml, handle):
    """The MIG instances of a GPU in MIG mode (the slots the admin filled)."""
    try:
        slots = pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except pynvml.NVMLError:
        return []
    handles = []
    for slot in range(slots):
        try:
            handles.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))
        except pynvml.NVMLError:
            continue  # an empty slot
    return handles


def _mig_device(pynvml, child, parent_uuid):
    """A MIG instance as an allocatable GPU: its type is the name NVML gives it, which names
    the parent and the profile (e.g. ``NVIDIA A100-SXM4-80GB MIG 1g.10gb``)."""
    name = _text(pynvml.nvmlDeviceGetName(child))
    return {
        "name": name,
        "uuid": _text(pynvml.nvmlDeviceGetUUID(child)),
        "memory_total": int(pynvml.nvmlDeviceGetMemoryInfo(child).total),
        "parent": parent_uuid,
        "mig_profile": name.rsplit(" MIG ", 1)[1] if " MIG " in name else name,
    }


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
        "user": _user(),
    }


def _user():
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment nor in the password file
        return str(os.getuid())


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


def _private_dir(params, name):
    """``<runtime dir>/<name>``, created private (0700): records there hold keys and tokens."""
    root = os.path.expanduser(params.get("runtime_dir") or "~/.jupyter-compute-servers")
    path = os.path.join(root, name)
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _kernels_dir(params):
    return _private_dir(params, "kernels")


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


class WorkingDirectoryError(ValueError):
    """A working directory that cannot be used (the client answers it as bad input)."""


def _workspace_dir(workspace, relative):
    """``relative`` under ``workspace``, created if missing; never outside it."""
    root = os.path.realpath(os.path.expanduser(workspace))
    if not isinstance(relative, str) or relative.startswith("/") or "\x00" in relative:
        raise WorkingDirectoryError(f"invalid working directory {relative!r}")
    path = os.path.normpath(os.path.join(root, relative))
    if path != root and not path.startswith(root + os.sep):
        raise WorkingDirectoryError(f"working directory {relative!r} is outside the workspace")
    try:
        # The workspace itself is the server's own (a new VM's may not exist yet): made first,
        # so that the walk below stops at it and only what lies under it is checked for links.
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise WorkingDirectoryError(
            f"cannot create the workspace {root!r}: {e.strerror or e}"
        ) from None
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    real = os.path.realpath(existing)
    if real != root and not real.startswith(root + os.sep):
        # Checked before creating anything: a link must not lead makedirs out either.
        raise WorkingDirectoryError(
            f"working directory {relative!r} leads out of the workspace by a link"
        )
    try:
        os.makedirs(path, exist_ok=True)
    except (OSError, UnicodeError) as e:
        raise WorkingDirectoryError(
            f"cannot create working directory {relative!r}: {e.strerror or e}"
            if isinstance(e, OSError)
            else f"invalid working directory {relative!r}: {e}"
        ) from None
    if os.path.realpath(path) != path:
        raise WorkingDirectoryError(
            f"working directory {relative!r} leads out of the workspace by a link"
        )
    return path


def _record_path(kernels, kernel_id, kind="kernel"):
    """Where the agent keeps what it started (a kernel's record; ``kind="app"``: a web app's),
    so that a later agent finds it after a restart."""
    return os.path.join(kernels, f"{kind}-{kernel_id}.record.json")


def _read_record(kernels, kernel_id, kind="kernel"):
    try:
        with open(_record_path(kernels, kernel_id, kind)) as f:
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


def _env_param(value, field):
    """Environment variables from a request: names and values strings that Popen (and a
    container's ``--env NAME=VALUE``) take as they are."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object")
    for name, item in value.items():
        if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
            raise ValueError(f"{field}: invalid variable name {name!r}")
        if not isinstance(item, str) or "\x00" in item:
            raise ValueError(f"{field}[{name!r}] must be a string without NUL characters")
    return dict(value)


def _in_workspace(workspace, relative):
    """A path relative to the Jupyter root, at the same place in the workspace (not made)."""
    path = os.path.normpath(os.path.join(workspace, relative))
    if relative.startswith("/") or (path != workspace and not path.startswith(workspace + os.sep)):
        raise ValueError(f"path {relative!r} is outside the workspace")
    return path


def _public(record):
    return {key: value for key, value in record.items() if key != "env"}


def _kernel_place(params):
    """A kernel's working directory, its workspace, and the variables it gets on top of this
    server's own environment (the caller's of start_kernel, as a local kernel gets them on top
    of its Jupyter's; then the spec's, filled in from that environment as jupyter_client
    fills them locally)."""
    cwd = _workspace_dir(params.get("workspace") or "~", params.get("cwd") or "")
    workspace = os.path.realpath(os.path.expanduser(params.get("workspace") or "~"))
    given = _env_param(params.get("env"), "env")
    for name, relative in _env_param(params.get("workspace_env"), "workspace_env").items():
        given[name] = _in_workspace(workspace, relative)
    base = {**os.environ, **given}
    for name, template in _env_param(params.get("env_templates"), "env_templates").items():
        given[name] = string.Template(template).safe_substitute(base)
    return cwd, workspace, given


def kernel_launch(params):
    kernels = _kernels_dir(params)
    kernel_id = _kernel_id(params)
    argv = params.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty list of strings")
    if any("\x00" in a for a in argv):
        raise ValueError("argv must not hold NUL characters")
    key = params.get("key")
    if not isinstance(key, str) or len(key) < 32:
        raise ValueError("key must be a string of at least 32 characters")
    cwd, workspace, given = _kernel_place(params)
    previous = _read_record(kernels, kernel_id)
    if previous is not None and _exit_code(previous) is None:
        raise RuntimeError(f"kernel {kernel_id} is already running (pid {previous['pid']})")
    if previous is not None:
        _stop_relay(previous)
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
    env.update(given)
    env["PWD"] = cwd
    command = [arg.replace("{connection_file}", connection_file) for arg in argv]
    container = _container(params)
    if container is not None:
        command = container_command(
            container,
            command,
            name=f"jcs-kernel-{kernel_id}",
            cwd=cwd,
            mounts=[workspace, os.path.realpath(kernels)],
            env=given,
        )
    elif BARE_PYTHON.fullmatch(command[0]):
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
    try:
        relay = _start_relay(
            kernels, kernel_id, ports["iopub_port"], child.pid, _start_time(child.pid), params
        )
    except Exception:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        raise
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
        "container_engine": container["engine"] if container else None,
        "container_name": f"jcs-kernel-{kernel_id}" if container else None,
        # The IOPub relay (see below): its pid, start time, port and token.
        "relay": relay,
    }
    if params.get("warm"):
        # Started ahead, for no notebook yet (a warm kernel, see kernel_claim): not listed
        # as a user's kernel, never adopted by another Jupyter.
        record["warm"] = True
    _write_private(_record_path(kernels, kernel_id), json.dumps(record))
    wait = params.get("wait_listening")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 0:
        # Answered once the kernel listens on its ports (or exits, or after ``wait`` s), from
        # a thread: the readiness check that follows then does not cross the link to find
        # nothing there yet, and the agent serves other calls meanwhile.
        return Later(
            lambda: (_wait_listening(child, set(ports.values()), min(wait, 60)), _public(record))[1]
        )
    return _public(record)


class Later:
    """An answer that takes a while: ``serve`` sends what ``compute()`` returns from a thread
    of its own, so that the agent answers other calls meanwhile."""

    def __init__(self, compute):
        self.compute = compute


def _wait_listening(child, ports, timeout):
    """Wait until every one of ``ports`` listens on the loopback, the child exited, or
    ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if ports <= set(_listening_inodes().values()):
            return True
        time.sleep(0.01)
    return False


def kernel_ready(params):
    """Answer once the kernel is ready, checked here on its own loopback rather than across
    the link: it listens, answered a ``kernel_info`` request, and the IOPub status for that
    request came out of its IOPub relay (so the relay, which every client of the kernel reads,
    is subscribed: nothing the kernel publishes from now on is lost); a warm kernel has also
    run its first execution (silent, leaving no trace). Sent right after ``kernel_launch``
    (which answers once the kernel listens), it answers from a thread, so the caller opens its
    tunnel meanwhile. Answers ``{"ready": true}``; or, when the kernel exited
    first, ``{"ready": false, "exit_code", "log"}`` (the end of its output); or, after
    ``ready_timeout`` seconds, ``{"ready": false, "exit_code": null}``."""
    kernel_id = _kernel_id(params)
    timeout = params.get("ready_timeout", 60)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError("ready_timeout must be a positive number of seconds")
    record = _read_record(_kernels_dir(params), kernel_id)
    if record is None:
        raise RuntimeError(f"no kernel {kernel_id} on this server")
    with open(record["connection_file"]) as f:
        connection = json.load(f)
    timeout = min(float(timeout), 600.0)
    return Later(lambda: _check_ready(params, record, connection, timeout))


def _check_ready(params, record, connection, timeout):
    deadline = time.monotonic() + timeout
    ports = record["ports"]

    def ended():
        code = _exit_code(record)
        if code is None:
            return None
        return {"ready": False, "exit_code": code, "log": kernel_log(params)["log"]}

    relay = record.get("relay")
    shell = iopub = None
    # Connecting is the cheapest look at whether the kernel listens yet (no /proc to parse).
    # Anything else that fails (another process on the port, which the kernel then exits
    # over) is tried again too, until the kernel exits or the time is up.
    while shell is None:
        try:
            shell = _ZmtpDealer(ports["shell_port"])
        except OSError:
            if (gone := ended()) is not None:
                return gone
            if time.monotonic() > deadline:
                return {"ready": False, "exit_code": None}
            time.sleep(0.01)
    try:
        iopub = _RelayReader(relay) if relay else _ZmtpSubscriber(ports["iopub_port"])
        key = str(connection.get("key") or "").encode()
        session = os.urandom(16).hex()
        asked = set()
        started = time.monotonic()
        next_check = started + 0.25
        while True:
            msg_id = os.urandom(16).hex()
            asked.add(msg_id)
            shell.send(_signed(key, session, msg_id, "kernel_info_request"))
            # Ask again often (a kernel coming up just after a long wait would idle), but less
            # so for a slow starter, which answers every queued request at once.
            wait = 0.05 if time.monotonic() < started + 2 else 0.25
            until = time.monotonic() + wait
            while (left := until - time.monotonic()) > 0:
                shell.drain()
                for frames in iopub.messages(left):
                    if _status_for(frames, asked):
                        if record.get("warm"):
                            # Its first execution now, not as the claim's move: IPython's
                            # first costs more than the next ones (imports, caches).
                            remaining = max(1.0, deadline - time.monotonic())
                            _execute_silently(ports["shell_port"], key, "pass", remaining)
                        return {"ready": True}
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.25
                if (gone := ended()) is not None:
                    return gone
            if now > deadline:
                return {"ready": False, "exit_code": None}
    except OSError:
        # The kernel closed a socket on us: it is ending (or its ports were taken).
        for _ in range(100):
            if (gone := ended()) is not None:
                return gone
            time.sleep(0.02)
        raise
    finally:
        for peer in (shell, iopub):
            if peer is not None:
                peer.sock.close()


def _signed(key, session, msg_id, msg_type, content=b"{}"):
    """A Jupyter message's frames as a DEALER sends them, signed with the connection's key."""
    header = json.dumps(
        {
            "msg_id": msg_id,
            "session": session,
            "username": "ready",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            "msg_type": msg_type,
            "version": "5.3",
        }
    ).encode()
    parts = [header, b"{}", b"{}", content]
    signature = b""
    if key:
        digest = hmac.new(key, digestmod=hashlib.sha256)
        for part in parts:
            digest.update(part)
        signature = digest.hexdigest().encode()
    return [b"<IDS|MSG>", signature, *parts]


def _status_for(frames, asked):
    """Whether a kernel's IOPub message is a status for one of the requests ``asked``."""
    try:
        at = frames.index(b"<IDS|MSG>")
        header = json.loads(frames[at + 2])
        parent = json.loads(frames[at + 3])
    except (ValueError, IndexError):
        return False
    return header.get("msg_type") == "status" and parent.get("msg_id") in asked


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
    if signum == signal.SIGKILL:
        container_stop(record)
    return {"sent": True}


def kernel_cleanup(params):
    """Forget a kernel that has ended: its record, connection file and log."""
    kernels = _kernels_dir(params)
    kernel_id = _kernel_id(params)
    record = _read_record(kernels, kernel_id)
    if record is not None and _exit_code(record) is None:
        raise RuntimeError(f"kernel {kernel_id} is still running")
    if record is not None:
        _stop_relay(record)
    for name in (
        f"kernel-{kernel_id}.json",
        f"kernel-{kernel_id}.log",
        f"kernel-{kernel_id}.relay.log",
    ):
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


def kernel_key(params):
    """The key of a running kernel's connection file, for a Jupyter that takes the kernel
    over after the one that launched it died (it made the key and sent it here)."""
    kernels = _kernels_dir(params)
    kernel_id = _kernel_id(params)
    record = _read_record(kernels, kernel_id)
    if record is None or _exit_code(record) is not None:
        raise RuntimeError(f"kernel {kernel_id} is not running")
    with open(record["connection_file"]) as f:
        connection = json.load(f)
    return {
        "key": connection["key"],
        "signature_scheme": connection.get("signature_scheme") or "hmac-sha256",
    }


def _rss(pid):
    """A process's resident memory in bytes (None where /proc does not say)."""
    try:
        with open(f"/proc/{int(pid)}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def kernel_claim(params):
    """Give a warm kernel (started ahead with ``warm``) to a notebook's kernel: its record and
    files take the new id, so every later call names it as any kernel. Refused when it is not
    warm or no longer runs (the caller then launches one). Answers the record, the working
    directory and the variables the notebook's kernel would have been started with, once the
    kernel moved into them (``_move_kernel``; within ``move_timeout`` seconds, else the kernel
    is ended and the claim refused)."""
    kernels = _kernels_dir(params)
    warm_id = params.get("warm_id")
    if not isinstance(warm_id, str) or not KERNEL_ID.match(warm_id):
        raise ValueError(f"invalid warm_id {warm_id!r}")
    kernel_id = _kernel_id(params)
    timeout = params.get("move_timeout", 10)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
        raise ValueError("move_timeout must be a positive number of seconds")
    cwd, _workspace, given = _kernel_place(params)
    record = _read_record(kernels, warm_id)
    if record is None or not record.get("warm") or _exit_code(record) is not None:
        raise RuntimeError(f"kernel {warm_id} is not a running warm kernel")
    if _read_record(kernels, kernel_id) is not None:
        raise RuntimeError(f"kernel {kernel_id} exists already")
    # The files move under the new id (open descriptors in the kernel and its relay stay
    # valid): kernel_cleanup and kernel_log find them by it.
    for suffix in (".json", ".log", ".relay.log"):
        source = os.path.join(kernels, f"kernel-{warm_id}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(source, os.path.join(kernels, f"kernel-{kernel_id}{suffix}"))
    record.pop("warm", None)
    record["kernel_id"] = kernel_id
    record["connection_file"] = os.path.join(kernels, f"kernel-{kernel_id}.json")
    record["log_file"] = os.path.join(kernels, f"kernel-{kernel_id}.log")
    record["cwd"] = os.path.relpath(cwd, os.path.realpath(os.path.expanduser(params["workspace"])))
    record["owner"] = str(params.get("owner") or record.get("owner") or "")
    record["started"] = time.time()
    _write_private(_record_path(kernels, kernel_id), json.dumps(record))
    os.unlink(_record_path(kernels, warm_id))
    answer = {"record": _public(record), "cwd": cwd, "env": given}
    with open(record["connection_file"]) as f:
        key = str(json.load(f).get("key") or "").encode()
    # The move into the notebook's directory and environment is done here, on the kernel's
    # own loopback, before the claim answers: through the tunnel it cost the notebook's start
    # a round trip of the link more.
    shell_port = record["ports"]["shell_port"]

    def moved():
        try:
            _move_kernel(shell_port, key, cwd, given, min(float(timeout), 60.0))
        except BaseException:
            # Not handed out: ended here, as the caller's new id now names it (the caller
            # launches another under that id, which replaces this record).
            kernel_signal({**params, "signum": signal.SIGKILL})
            for _ in range(250):  # ended before the refusal: a launch under the id may follow
                if _exit_code(record) is not None:
                    break
                time.sleep(0.02)
            raise
        return answer

    return Later(moved)


def _move_kernel(shell_port, key, cwd, env, timeout):
    """Run the move into ``cwd`` and ``env`` in a kernel, as a silent execute on its shell,
    and wait for its reply: a launch for the notebook would have started it there. The reply
    is also the proof that the kernel answers; raises when it does not, or the code failed."""
    code = (
        "import os as _jcs_os\n"
        f"_jcs_os.chdir({cwd!r})\n"
        f"_jcs_os.environ.update({env!r})\n"
        "del _jcs_os\n"
    )
    try:
        _execute_silently(shell_port, key, code, timeout)
    except _ExecuteFailed as e:
        raise RuntimeError(f"the kernel could not move into {cwd!r}: {e}") from None


class _ExecuteFailed(RuntimeError):
    """The code ran and raised (``ename: evalue``)."""


def _execute_silently(shell_port, key, code, timeout):
    """Run ``code`` in a kernel as a silent execute (no history, no execution count) on its
    shell, and wait for its reply; raises when the kernel does not answer within ``timeout``
    seconds, or ``_ExecuteFailed`` when the code failed."""
    content = json.dumps(
        {
            "code": code,
            "silent": True,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
    ).encode()
    msg_id = os.urandom(16).hex()
    deadline = time.monotonic() + timeout
    shell = _ZmtpDealer(shell_port)
    try:
        shell.send(_signed(key, os.urandom(16).hex(), msg_id, "execute_request", content))
        while True:
            frames = shell.message(deadline - time.monotonic())
            if frames is None:
                raise RuntimeError(f"the kernel did not answer within {timeout:.0f} s")
            try:
                at = frames.index(b"<IDS|MSG>")
                parent = json.loads(frames[at + 3])
                reply = json.loads(frames[at + 5])
            except (ValueError, IndexError):
                continue
            if parent.get("msg_id") != msg_id:
                continue
            if reply.get("status") != "ok":
                raise _ExecuteFailed(f"{reply.get('ename')}: {reply.get('evalue')}")
            return
    finally:
        shell.sock.close()


def kernel_list(params):
    """Kernels running on this server (dead ones are forgotten on the way); a warm one's
    resident memory is given too (``rss``)."""
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
            public = _public(record)
            if record.get("warm"):
                public["rss"] = _rss(record["pid"])
            running.append(public)
        else:
            kernel_cleanup({"runtime_dir": params.get("runtime_dir"), "kernel_id": kernel_id})
    return {"kernels": running}


# --- the IOPub relay ----------------------------------------------------------------------
#
# A kernel publishes its output on IOPub, a ZeroMQ PUB socket that drops what no subscriber
# takes. Through a tunnel, a link that is down for a while (a network partition, a stalled SSH
# daemon) would lose everything published meanwhile. So next to each kernel runs a relay (a
# detached process, this file with --iopub-relay): it subscribes to the kernel's IOPub on the
# server's loopback, speaking ZeroMQ's wire protocol (ZMTP 3.0, NULL mechanism) with the
# standard library, numbers every message and keeps the latest in a bounded buffer. Our side
# connects to it (a channel of the SSH connection), says the number of the next message it
# wants, and gets everything from there; after a drop it connects again and resumes. When the
# buffer had to let go of messages it was asked for, the answer says how many and how many
# bytes, which our side tells the notebook.
#
# Protocol on the relay's socket: the client sends one JSON line {"token", "from"} ("from": the
# next message number it wants, -1 for "from now on", -2 for "after the last one a client
# acknowledged"); the relay answers one JSON line {"first", "first_offset", "limits"} (the
# number of the first message it will send and the bytes published before it), then records:
# seq (8 bytes), frame count (4), and each frame as its length (4) and bytes, big-endian.
# The client then sends JSON lines {"ack": N} as it publishes: N is the next message it wants.
# A Jupyter that takes the kernel over after the one reading it died resumes from there.

RELAY_BUFFER_BYTES = 64 * 1024 * 1024
RELAY_BUFFER_MESSAGES = 100_000

# A frame this large (or larger) is received straight into a buffer of its own size, and
# records are sent from their parts (writev), never joined: ipykernel publishes what a cell
# printed in 0.2 s as one message, tens of MB, and copying it from the read buffer into a
# frame, into a record and into each client's queue was most of the relay's time.
RELAY_LARGE_FRAME = 64 * 1024
# Above this, a frame's announced size is not allocated ahead (it grows as it arrives).
RELAY_MAX_PREALLOCATED = 1 << 30
# Parts per sendmsg (IOV_MAX is 1024 on Linux).
RELAY_SEND_PARTS = 256


def _agent_source():
    source = globals().get("__agent_source__")
    if source is None:
        with open(__file__, "rb") as f:
            source = f.read()
    return source


def _zmtp_frame(body, command=False, more=False):
    flags = (0x04 if command else 0) | (0x01 if more else 0)
    if len(body) > 255:
        return bytes([flags | 0x02]) + len(body).to_bytes(8, "big") + body
    return bytes([flags, len(body)]) + body


class _ZmtpSubscriber:
    """A ZeroMQ SUB peer (ZMTP 3.0, NULL security) on a plain socket: subscribes to all."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00")
        self.sock.sendall(greeting + b"\x00" + b"\x00" * 31)
        # A bytearray, appended to and consumed from its front in place: a frame of tens of
        # MB (a cell's whole printed output) arrives in many reads, and joining bytes on each
        # read copied it all again every time (quadratic: most of the relay's time).
        self.buffer = bytearray()
        #: Bytes the buffer must hold before the next frame can be complete: no parse before.
        self.wanted = 2
        self._read_exactly(64)
        body = b"\x05READY" + b"\x0bSocket-Type" + (3).to_bytes(4, "big") + b"SUB"
        self.sock.sendall(_zmtp_frame(body, command=True))
        self.sock.sendall(_zmtp_frame(b"\x01"))  # subscribe to everything (ZMTP 3.0)
        self.sock.settimeout(None)
        self.sock.setblocking(False)
        self.parts = []
        #: A large frame under way, received into its own buffer (see RELAY_LARGE_FRAME):
        #: the buffer, how much of it is filled, and whether more frames follow it.
        self.body = None
        self.filled = 0
        self.body_more = False
        #: The message whose last frame is ``body`` (its frames, ``body`` last), while it
        #: arrives: the relay sends it on as it comes (the list is answered by ``feed`` once
        #: whole).
        self.growing = None

    def _read_exactly(self, count):
        while len(self.buffer) < count:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the kernel closed its IOPub socket")
            self.buffer += data
        chunk = bytes(self.buffer[:count])
        del self.buffer[:count]
        return chunk

    def feed(self, read=True):
        """Read what is there; answer the complete messages (lists of frames)."""
        messages: Any = []
        if self.body is not None:
            if read:
                with memoryview(self.body) as view:
                    got = self.sock.recv_into(view[self.filled :])
                if not got:
                    raise ConnectionError("the kernel closed its IOPub socket")
                self.filled += got
            if self.filled < len(self.body):
                return messages
            if not self.body_more:
                messages.append(self.parts)
                self.parts = []
            self.body = self.growing = None
            read = False  # the buffer holds nothing beyond the frame (it was read into it)
        buffer = self.buffer
        if read:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the kernel closed its IOPub socket")
            buffer += data
        if len(buffer) < self.wanted:
            return messages  # the frame under way is not whole yet
        pos = 0
        end = len(buffer)
        with memoryview(buffer) as view:
            while True:
                if end - pos < 2:
                    wanted = pos + 2
                    break
                flags = buffer[pos]
                if flags & 0x02:
                    if end - pos < 9:
                        wanted = pos + 9
                        break
                    size = int.from_bytes(view[pos + 1 : pos + 9], "big")
                    start = pos + 9
                else:
                    size = buffer[pos + 1]
                    start = pos + 2
                if end - start < size:
                    wanted = start + size
                    if RELAY_LARGE_FRAME <= size <= RELAY_MAX_PREALLOCATED:
                        # The rest of this frame goes straight into its own buffer.
                        self.body = bytearray(size)
                        self.body[: end - start] = view[start:end]
                        self.filled = end - start
                        self.body_more = bool(flags & 0x01)
                        self.parts.append(self.body)
                        if not self.body_more:
                            # The message's last frame: all its frames and sizes are known.
                            self.growing = self.parts
                        pos = wanted = end
                    break
                pos = start + size
                if flags & 0x04:
                    continue  # a command (READY, PING): nothing to relay
                self.parts.append(bytes(view[start:pos]))
                if not flags & 0x01:
                    messages.append(self.parts)
                    self.parts = []
        del buffer[:pos]
        self.wanted = wanted - pos
        if self.body is not None:
            self.wanted = 2  # the next frame's header, once the body is complete
        return messages

    def messages(self, timeout):
        """The complete messages that arrive within ``timeout`` seconds (maybe none)."""
        if self.buffer:
            found = self.feed(read=False)
            if found:
                return found
        if not select.select([self.sock], [], [], max(timeout, 0))[0]:
            return []
        with contextlib.suppress(BlockingIOError):
            return self.feed()
        return []


class _ZmtpDealer:
    """A ZeroMQ DEALER peer (ZMTP 3.0, NULL security) on a plain socket, that only sends:
    the kernel readiness check's (``kernel_ready``), whose answers it reads on IOPub."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00")
        self.sock.sendall(greeting + b"\x00" + b"\x00" * 31)
        received = b""
        while len(received) < 64:
            data = self.sock.recv(64 - len(received))
            if not data:
                raise ConnectionError("the kernel closed its shell socket")
            received += data
        body = b"\x05READY" + b"\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
        self.sock.sendall(_zmtp_frame(body, command=True))
        self.sock.setblocking(False)
        #: What was read and not yet consumed (``message``).
        self.pending = bytearray()

    def send(self, frames):
        last = len(frames) - 1
        data = b"".join(_zmtp_frame(frame, more=i < last) for i, frame in enumerate(frames))
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def message(self, timeout):
        """The next message the kernel sends back (its frames), or None after ``timeout``
        seconds; commands (the handshake's READY) are skipped."""
        frames = []
        while True:
            frame, command, more = self._frame(timeout)
            if frame is None:
                return None
            if command:
                continue
            frames.append(frame)
            if not more:
                return frames

    def _frame(self, timeout):
        deadline = time.monotonic() + timeout
        head = self._read(2, deadline)
        if head is None:
            return None, False, False
        flags = head[0]
        if flags & 0x02:
            rest = self._read(7, deadline)
            if rest is None:
                return None, False, False
            size = int.from_bytes(head[1:] + rest, "big")
        else:
            size = head[1]
        body = self._read(size, deadline)
        return body, bool(flags & 0x04), bool(flags & 0x01)

    def _read(self, count, deadline):
        """``count`` bytes from the socket (kept in ``pending`` across calls), or None when
        ``deadline`` passes first."""
        while len(self.pending) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                raise ConnectionError("the kernel closed its shell socket")
            self.pending += data
        chunk = bytes(self.pending[:count])
        del self.pending[:count]
        return chunk

    def drain(self):
        """Read and drop what the kernel answered (the replies are not needed)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                raise ConnectionError("the kernel closed its shell socket")


class _RelayReader:
    """A client of a kernel's IOPub relay (see its protocol above) reading from the first
    message it holds: the kernel readiness check's view of IOPub as our side will see it."""

    def __init__(self, relay):
        self.sock = socket.create_connection(("127.0.0.1", int(relay["port"])), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall((json.dumps({"token": relay["token"], "from": 0}) + "\n").encode())
        self.buffer = b""
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the IOPub relay closed the connection")
            self.buffer += data
        _, self.buffer = self.buffer.split(b"\n", 1)
        self.sock.setblocking(False)

    def messages(self, timeout):
        if select.select([self.sock], [], [], max(timeout, 0))[0]:
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                data = None
            if data == b"":
                raise ConnectionError("the IOPub relay closed the connection")
            self.buffer += data or b""
        found = []
        buffer, pos = self.buffer, 0
        while len(buffer) - pos >= 12:
            count = int.from_bytes(buffer[pos + 8 : pos + 12], "big")
            at, frames = pos + 12, []
            for _ in range(count):
                if len(buffer) - at < 4:
                    break
                size = int.from_bytes(buffer[at : at + 4], "big")
                if len(buffer) - at - 4 < size:
                    break
                frames.append(buffer[at + 4 : at + 4 + size])
                at += 4 + size
            if len(frames) < count:
                break
            found.append(frames)
            pos = at
        self.buffer = buffer[pos:]
        return found


class _RelayClient:
    def __init__(self, sock):
        self.sock = sock
        self.inbox = b""
        #: What is queued for the client: memoryviews of records' parts, sent with writev.
        self.outbox: Any = collections.deque()
        self.queued = 0  # bytes in outbox
        self.cursor = None  # the next seq to send, once the client said where to start
        #: (the last frame of the message arriving from the kernel, how much of it is queued)
        #: while the client is sent that message as it arrives.
        self.partial = None
        #: What the selector waits for on its socket (read; and write while outbox holds more).
        self.events = 1  # selectors.EVENT_READ

    def queue(self, data):
        self.outbox.append(memoryview(data))
        self.queued += len(data)


def _record(seq, frames):
    """A message's record (see the protocol above) as parts to send one after the other:
    small frames joined with their headers, large ones as they are (not copied)."""
    parts = []
    small = [seq.to_bytes(8, "big"), len(frames).to_bytes(4, "big")]
    for frame in frames:
        small.append(len(frame).to_bytes(4, "big"))
        if len(frame) < RELAY_LARGE_FRAME:
            small.append(frame)
        else:
            parts.append(b"".join(small))
            parts.append(frame)
            small = []
    if small:
        parts.append(b"".join(small))
    return parts


def iopub_relay(listener, iopub_port, token, kernel_pid, kernel_start, max_bytes, max_messages):
    """Relay a kernel's IOPub until the kernel ends (see above)."""
    import selectors

    buffer: Any = collections.deque()  # (seq, record, size)
    first_seq = 0  # the seq of buffer[0] (or of the next message when empty)
    first_offset = 0  # bytes published before first_seq
    total = 0
    next_seq = 0
    acked = 0  # the next message after the last one a client acknowledged
    selector = selectors.DefaultSelector()
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ, "listener")
    subscriber: Any = None
    clients: dict = {}
    # The message arriving from the kernel (its frames), whose record is in the buffer already
    # and is sent on as its last frame (a large one) arrives. A cell's output comes as
    # messages of tens of MB, and waiting for each whole before sending its first byte added
    # the time of its way from the kernel to the relay to every one of them.
    growing: Any = None
    next_check = 0.0
    limits = {"bytes": max_bytes, "messages": max_messages}

    def drop(client):
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(client.sock)
        client.sock.close()
        clients.pop(client.sock, None)

    def arrived(frame):
        """How much of a record's part is there (all but of the growing message's frame)."""
        if growing is not None and frame is growing[-1]:
            return subscriber.filled
        return len(frame)

    def fill(client):
        # Queue records until the socket's buffer would be the limit: a slow client reads
        # at its pace, and one that fell behind the buffer is dropped (it comes back with a
        # "from" the buffer answers with a gap).
        if client.cursor is None:
            return
        if client.partial is not None:
            frame, queued = client.partial
            end = arrived(frame)
            if end > queued:
                client.queue(memoryview(frame)[queued:end])
            if end < len(frame):
                client.partial = (frame, end)
                return
            client.partial = None
        if client.cursor < first_seq:
            drop(client)
            return
        index = client.cursor - first_seq
        while index < len(buffer) and client.queued < (1 << 20) and client.partial is None:
            for part in buffer[index][1]:
                end = arrived(part)
                if end < len(part):  # the growing message's last frame: what is there
                    client.queue(memoryview(part)[:end])
                    client.partial = (part, end)
                else:
                    client.queue(part)
            index += 1
        client.cursor = first_seq + index

    def evict():
        # Never the growing message's record (the last): it is being sent.
        nonlocal total, first_seq, first_offset
        while len(buffer) > (1 if growing else 0) and (
            total > max_bytes or len(buffer) > max_messages
        ):
            _, _, evicted = buffer.popleft()
            total -= evicted
            first_seq += 1
            first_offset += evicted

    def keep(frames):
        nonlocal next_seq, total
        size = sum(len(frame) for frame in frames)
        buffer.append((next_seq, _record(next_seq, frames), size))
        next_seq += 1
        total += size

    def flush(client):
        outbox = client.outbox
        if outbox:
            try:
                sent = client.sock.sendmsg(itertools.islice(outbox, RELAY_SEND_PARTS))
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                drop(client)
                return
            client.queued -= sent
            while sent:
                head = outbox[0]
                if len(head) > sent:
                    outbox[0] = head[sent:]
                    break
                sent -= len(head)
                outbox.popleft()
            if not outbox:
                # The next records, if the buffer holds more: else the client would wait
                # for the kernel's next message (or its own next acknowledgement).
                fill(client)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        if client.sock in clients and events != client.events:
            # A system call each: only when it changes (most flushes send everything).
            selector.modify(client.sock, events, client)
            client.events = events

    while True:
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 0.5
            if _start_time(kernel_pid) != kernel_start:
                return  # the kernel is gone; so is its output
            if subscriber is None:
                try:
                    subscriber = _ZmtpSubscriber(iopub_port)
                    selector.register(subscriber.sock, selectors.EVENT_READ, "iopub")
                except OSError:
                    subscriber = None  # not listening yet: the kernel is starting
                    next_check = now + 0.05
        ready = selector.select(timeout=0.5 if subscriber else 0.05)
        if subscriber is not None and subscriber.buffer and not ready:
            # What came with the handshake is relayed at once, not with the next data.
            ready = [(selector.get_key(subscriber.sock), 0)]
        for key, events in ready:
            if key.data == "listener":
                try:
                    sock, _ = listener.accept()
                except OSError:
                    continue
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client = _RelayClient(sock)
                clients[sock] = client
                selector.register(sock, selectors.EVENT_READ, client)
            elif key.data == "iopub":
                try:
                    messages = subscriber.feed(read=bool(events))
                except BlockingIOError:
                    continue
                except OSError:
                    selector.unregister(subscriber.sock)
                    subscriber.sock.close()
                    subscriber = None
                    if growing is not None:
                        # Its record will never be whole: forget it, and the clients that
                        # were sent part of it (they come back and resume before it).
                        for client in list(clients.values()):
                            if client.partial is not None and client.partial[0] is growing[-1]:
                                drop(client)
                        _, _, size = buffer.pop()
                        total -= size
                        next_seq -= 1
                        growing = None
                    continue
                for frames in messages:
                    if frames is growing:
                        growing = None  # now whole; its record was kept when it began
                        continue
                    keep(frames)
                if subscriber.growing is not None and growing is None:
                    growing = subscriber.growing
                    keep(growing)
                evict()
                for client in list(clients.values()):
                    fill(client)
                    if client.sock in clients:
                        flush(client)
            else:
                client = key.data
                if events & selectors.EVENT_READ:
                    try:
                        data = client.sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except OSError:
                        data = b""
                    if data == b"":
                        drop(client)
                        continue
                    if data:
                        client.inbox += data
                    while client.sock in clients and b"\n" in client.inbox:
                        line, client.inbox = client.inbox.split(b"\n", 1)
                        if client.cursor is not None:
                            # An acknowledgement: {"ack": N}; anything else ends the client.
                            try:
                                ack = int(json.loads(line)["ack"])
                            except (ValueError, TypeError, KeyError):
                                drop(client)
                                break
                            acked = max(acked, min(ack, next_seq))
                            continue
                        try:
                            hello = json.loads(line)
                            wanted = int(hello.get("from", -1))
                            good = hello.get("token") == token
                        except (ValueError, TypeError, AttributeError):
                            good = False
                        if not good:
                            drop(client)
                            break
                        if wanted == -2:
                            wanted = acked
                        start = next_seq if wanted < 0 else max(wanted, first_seq)
                        start = min(start, next_seq)
                        offset = first_offset + sum(
                            entry[2] for entry in itertools.islice(buffer, start - first_seq)
                        )
                        answer = {
                            "first": start,
                            "first_offset": offset,
                            "limits": limits,
                            "asked": wanted,
                        }
                        client.queue((json.dumps(answer) + "\n").encode())
                        client.cursor = start
                        fill(client)
                    if client.sock in clients and len(client.inbox) > 4096:
                        drop(client)  # no line is that long: not our client
                        continue
                if client.sock in clients:
                    fill(client)
                    if client.sock in clients:
                        flush(client)


def _start_relay(kernels, kernel_id, iopub_port, pid, start_time, params):
    """Start the kernel's IOPub relay, detached; answer its part of the kernel's record."""
    source_path = os.path.join(kernels, "relay-agent.py")
    source = _agent_source()
    try:
        with open(source_path, "rb") as f:
            current = f.read() == source
    except OSError:
        current = False
    if not current:
        tmp = f"{source_path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(source)
        os.replace(tmp, source_path)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    token = os.urandom(16).hex()
    env = dict(os.environ)
    env["JCS_RELAY_TOKEN"] = token
    max_bytes = int(params.get("iopub_buffer_bytes") or RELAY_BUFFER_BYTES)
    max_messages = int(params.get("iopub_buffer_messages") or RELAY_BUFFER_MESSAGES)
    log_fd = os.open(
        os.path.join(kernels, f"kernel-{kernel_id}.relay.log"),
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
        0o600,
    )
    try:
        child = subprocess.Popen(
            [
                sys.executable,
                source_path,
                "--iopub-relay",
                str(listener.fileno()),
                str(iopub_port),
                str(pid),
                str(start_time),
                str(max_bytes),
                str(max_messages),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(listener.fileno(),),
        )
    finally:
        os.close(log_fd)
        port = listener.getsockname()[1]
        listener.close()
    _CHILDREN[child.pid] = child
    return {
        "pid": child.pid,
        "start_time": _start_time(child.pid),
        "port": port,
        "token": token,
        "buffer_bytes": max_bytes,
        "buffer_messages": max_messages,
    }


def _stop_relay(record):
    relay = record.get("relay") or {}
    pid = relay.get("pid")
    if pid and _start_time(pid) == relay.get("start_time"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    child = _CHILDREN.pop(pid, None) if pid else None
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(2)


def relay_main(argv):
    listener = socket.socket(fileno=int(argv[0]))
    iopub_relay(
        listener,
        int(argv[1]),
        os.environ.pop("JCS_RELAY_TOKEN", ""),
        int(argv[2]),
        None if argv[3] == "None" else int(argv[3]),
        int(argv[4]),
        int(argv[5]),
    )


def kernelspecs(params):
    """The kernels installed on this server, as ``jupyter kernelspec list --json`` says, or
    the ipykernel of ``python`` when Jupyter's tools are not installed here."""
    python = params.get("python") or sys.executable
    container = _container(params)
    specs = {}
    reason = ""
    listing = [python, "-m", "jupyter_client.kernelspecapp", "list", "--json"]
    if container is not None:
        # Asked inside the image: its kernels, its Python ("python" there stays "python").
        listing = container_command(
            container,
            ["python3", "-m", "jupyter_client.kernelspecapp", "list", "--json"],
            name=f"jcs-kernelspecs-{os.getpid()}",
            cwd="/",
            mounts=[],
            env={},
        )
    try:
        listed = subprocess.run(listing, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
        if listed.returncode == 0:
            for name, entry in json.loads(listed.stdout)["kernelspecs"].items():
                spec = entry.get("spec") or {}
                argv = spec.get("argv") or []
                # As jupyter_client does locally: a bare "python" means the listing Python.
                if container is None and argv and BARE_PYTHON.fullmatch(argv[0]):
                    spec["argv"] = [python, *argv[1:]]
                specs[name] = spec
        else:
            reason = listed.stderr.decode("utf-8", "replace").strip()[-300:]
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
        reason = str(e)
    if not specs and container is None:
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


# --- terminals ----------------------------------------------------------------------------
#
# A terminal is a shell on a PTY held by a small host process, detached like a kernel, so it
# outlives the SSH connection that started it and any browser watching it. Clients reach the
# host on the server's loopback (through the SSH connection), prove themselves with the token
# kept in its 0600 record, and are sent what they missed from its scrollback.

TERMINAL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SCROLLBACK_BYTES = 256 * 1024
CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024
# Anyone on the server's loopback may connect to a host: before a client proves itself with the
# token it may send this much and take this long, and only so many clients are kept at once.
HELLO_BYTES = 4096
HELLO_SECONDS = 10.0
MAX_CLIENTS = 32
# The longest line an attached client may send (our end sends at most 16 Ki characters of
# input per line: at most about 100 KiB as JSON).
CLIENT_LINE_BYTES = 1024 * 1024


def _terminals_dir(params):
    return _private_dir(params, "terminals")


def _terminal_name(params):
    name = params.get("name")
    if not isinstance(name, str) or not TERMINAL_NAME.fullmatch(name):
        raise ValueError(f"invalid terminal name {name!r}")
    return name


def _terminal_record(terminals, name):
    try:
        with open(os.path.join(terminals, f"{name}.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if _start_time(record["pid"]) != record.get("start_time"):
        return None  # its host is gone (or the pid is someone else's now)
    return record


def _terminal_public(record):
    return {key: record[key] for key in ("name", "pid", "cwd", "started") if key in record}


def _window_size(fd, rows, cols):
    import fcntl
    import struct
    import termios

    rows = max(1, min(int(rows), 1000))
    cols = max(1, min(int(cols), 1000))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _TerminalClient:
    def __init__(self, sock):
        self.sock = sock
        self.inbox = b""
        self.outbox = bytearray()
        self.attached = False
        self.decoder: Any = None
        self.since = time.monotonic()


def _terminal_host(name, record_path, cwd, rows, cols, env, ready_fd, command=None):
    """The host process: owns the PTY, serves clients, ends when the shell ends."""
    import codecs
    import hmac
    import pty
    import secrets
    import selectors

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    token = secrets.token_hex(32)
    shell = os.environ.get("SHELL") or ("/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh")
    shell_env = dict(os.environ)
    shell_env.pop("JPY_PARENT_PID", None)
    shell_env.update(env)
    shell_env.update(TERM="xterm-256color", PWD=cwd)
    shell_pid, master = pty.fork()
    if shell_pid == 0:
        try:
            os.chdir(cwd)
            argv = command or [shell, "-l"]
            os.execvpe(argv[0], argv, shell_env)  # noqa: S606 - the user's own shell
        finally:
            os._exit(127)
    _window_size(master, rows, cols)
    record = {
        "name": name,
        "pid": os.getpid(),
        "start_time": _start_time(os.getpid()),
        "shell_pid": shell_pid,
        "port": listener.getsockname()[1],
        "token": token,
        "cwd": cwd,
        "started": time.time(),
    }
    _write_private(record_path, json.dumps(record))
    os.write(ready_fd, b"ok")
    os.close(ready_fd)

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listen")
    selector.register(master, selectors.EVENT_READ, "pty")
    clients: dict = {}
    scrollback = bytearray()
    produced = 0  # bytes the shell ever wrote: offsets let a client resume where it left off

    def send(client, message):
        client.outbox += (json.dumps(message) + "\n").encode()
        if len(client.outbox) > CLIENT_BACKLOG_BYTES:
            drop(client)  # too slow: it reattaches and resumes from its offset
            return
        selector.modify(client.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def drop(client):
        clients.pop(client.sock, None)
        with contextlib.suppress(Exception):
            selector.unregister(client.sock)
        client.sock.close()

    def attach(client, hello):
        if not isinstance(hello, dict) or not hmac.compare_digest(
            str(hello.get("token", "")).encode(), token.encode()
        ):
            drop(client)
            return
        start = produced - len(scrollback)
        offset = min(max(int(hello.get("offset") or 0), start), produced)
        client.attached = True
        client.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        missed = bytes(scrollback[offset - start :])
        send(client, ["stdout", client.decoder.decode(missed), produced])

    def handle(client, line):
        if not client.attached:
            attach(client, json.loads(line))
            return
        message = json.loads(line)
        if not isinstance(message, list) or not message:
            raise ValueError("not a message")
        if message[0] == "stdin":
            data = str(message[1]).encode()
            while data:
                data = data[os.write(master, data) :]
        elif message[0] == "set_size":
            _window_size(master, message[1], message[2])

    exit_code = None
    while exit_code is None:
        waiting = [c for c in clients.values() if not c.attached]
        for client in waiting:
            if time.monotonic() - client.since > HELLO_SECONDS:
                drop(client)  # never said who it is
        timeout = 1.0 if waiting else None
        for key, events in selector.select(timeout):
            if key.data == "listen":
                with contextlib.suppress(OSError):
                    sock, _ = listener.accept()
                    if len(clients) >= MAX_CLIENTS:
                        sock.close()
                        continue
                    sock.setblocking(False)
                    client = _TerminalClient(sock)
                    clients[sock] = client
                    selector.register(sock, selectors.EVENT_READ, client)
            elif key.data == "pty":
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    _, status = os.waitpid(shell_pid, 0)
                    exit_code = os.waitstatus_to_exitcode(status)
                    break
                produced += len(chunk)
                scrollback += chunk
                del scrollback[: max(0, len(scrollback) - SCROLLBACK_BYTES)]
                for client in list(clients.values()):
                    if client.attached:
                        send(client, ["stdout", client.decoder.decode(chunk), produced])
            else:
                client = key.data
                if events & selectors.EVENT_WRITE and client.outbox:
                    try:
                        sent = client.sock.send(client.outbox)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        drop(client)
                        continue
                    del client.outbox[:sent]
                    if not client.outbox:
                        selector.modify(client.sock, selectors.EVENT_READ, client)
                if events & selectors.EVENT_READ:
                    try:
                        data = client.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        drop(client)
                        continue
                    client.inbox += data
                    while b"\n" in client.inbox and client.sock in clients:
                        line, client.inbox = client.inbox.split(b"\n", 1)
                        try:
                            handle(client, line)
                        except Exception:  # not our protocol: not our client
                            drop(client)
                    limit = CLIENT_LINE_BYTES if client.attached else HELLO_BYTES
                    if client.sock in clients and len(client.inbox) > limit:
                        drop(client)  # a line longer than any of ours
    for client in list(clients.values()):
        if client.attached:
            client.outbox += (json.dumps(["exit", exit_code]) + "\n").encode()
            with contextlib.suppress(OSError):
                client.sock.setblocking(True)
                client.sock.settimeout(2)
                client.sock.sendall(client.outbox)
        client.sock.close()
    with contextlib.suppress(OSError):
        os.unlink(record_path)


def terminal_start(params):
    terminals = _terminals_dir(params)
    name = _terminal_name(params)
    if _terminal_record(terminals, name) is not None:
        raise RuntimeError(f"terminal {name} exists")
    cwd = _workspace_dir(params.get("workspace") or "~", params.get("cwd") or "")
    env = {str(k): str(v) for k, v in (params.get("env") or {}).items()}
    record_path = os.path.join(terminals, f"{name}.json")
    container = _container(params)
    command = None
    if container is not None:
        workspace = os.path.realpath(os.path.expanduser(params.get("workspace") or "~"))
        command = container_command(
            container,
            ["bash", "-l"],
            name=f"jcs-terminal-{name}-{os.getpid()}",
            cwd=cwd,
            mounts=[workspace],
            env={},
            interactive=True,
        )
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked host
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork():
                os._exit(0)
            _terminal_host(
                name,
                record_path,
                cwd,
                params.get("rows") or 24,
                params.get("cols") or 80,
                env,
                write_fd,
                command,
            )
        except BaseException as e:
            with contextlib.suppress(OSError):
                os.write(write_fd, f"error {type(e).__name__}: {e}".encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    answer = b""
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        answer += chunk
    os.close(read_fd)
    if answer != b"ok":
        raise RuntimeError(f"the terminal did not start: {answer.decode('utf-8', 'replace')}")
    record = _terminal_record(terminals, name)
    if record is None:
        raise RuntimeError("the terminal ended at once")
    return _terminal_public(record)


def terminal_list(params):
    terminals = _terminals_dir(params)
    found = []
    for entry in sorted(os.listdir(terminals)):
        if entry.endswith(".json") and TERMINAL_NAME.fullmatch(entry[:-5]):
            record = _terminal_record(terminals, entry[:-5])
            if record is not None:
                found.append(_terminal_public(record))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(terminals, entry))
    return {"terminals": found}


def terminal_connect(params):
    """Where a terminal's host listens and the token it wants (for our end of SSH only)."""
    record = _terminal_record(_terminals_dir(params), _terminal_name(params))
    if record is None:
        return {"exists": False}
    return {"exists": True, "port": record["port"], "token": record["token"]}


def terminal_kill(params):
    """End a terminal: hang its shell up, then make sure its host and children are gone."""
    terminals = _terminals_dir(params)
    record = _terminal_record(terminals, _terminal_name(params))
    if record is None:
        return {"killed": False}
    for signum, grace in ((signal.SIGHUP, 2.0), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record["shell_pid"], signum)
        deadline = time.time() + grace
        while time.time() < deadline and _start_time(record["pid"]) == record["start_time"]:
            time.sleep(0.02)
        if _start_time(record["pid"]) != record["start_time"]:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(record["pid"], signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(terminals, f"{record['name']}.json"))
    return {"killed": True}


# --- environment, processes, workspaces, metrics ----------------------------------------------


def set_environment(params):
    """Environment for everything this agent starts from now on (a slice's GPUs, its token)."""
    env = params.get("env") or {}
    if not isinstance(env, dict):
        raise ValueError("env must be an object")
    os.environ.update({str(k): str(v) for k, v in env.items()})
    return {"set": sorted(env)}


def _environ_has(pid, entry):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:
        return False


def _processes_with(name, value):
    entry = f"{name}={value}".encode()
    me = os.getpid()
    return [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and int(pid) != me and _environ_has(pid, entry)
    ]


def end_processes(params):
    """End every process carrying a compute server's token (SIGTERM, then SIGKILL), and
    remove its containers."""
    token = params.get("token")
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token):
        raise ValueError("invalid token")
    name = "JUPYTER_COMPUTE_SERVER_TOKEN"
    # Containers first: killing an engine's client leaves its container running.
    containers = remove_containers(container_owner(token))
    found = _processes_with(name, token)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in _processes_with(name, token):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.time() + 3
        while _processes_with(name, token) and time.time() < deadline:
            time.sleep(0.05)
    return {
        "ended": len(found),
        "left": len(_processes_with(name, token)),
        "containers": containers,
    }


WORKSPACES_ROOT = "~/jupyter-compute-servers"


def _workspace_path(params):
    """A server's workspace: a child of the workspaces root, by a simple name, nothing else."""
    root = os.path.realpath(os.path.expanduser(WORKSPACES_ROOT))
    name = params.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
        raise ValueError(f"invalid workspace name {name!r}")
    return root, os.path.join(root, name)


def workspace_prepare(params):
    root, path = _workspace_path(params)
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.path.realpath(path) != path:
        raise ValueError("the workspace is a link; refusing to use it")
    return {"path": path}


def workspace_remove(params):
    _, path = _workspace_path(params)
    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        # Never delete through a live workspace mount: that would be the Jupyter root.
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            points = [line.split(" ")[1] for line in f if " " in line]
        for point in points:
            if point.startswith(path + "/"):
                _unmount(point)
        shutil.rmtree(path)
    return {"removed": path}


_CPU_SAMPLE: dict = {}


def _cpu_times():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def _cpu_percent():
    try:
        total, idle = _cpu_times()
        if "last" not in _CPU_SAMPLE:
            time.sleep(0.1)
            _CPU_SAMPLE["last"] = (total, idle)
            total, idle = _cpu_times()
        last_total, last_idle = _CPU_SAMPLE["last"]
        _CPU_SAMPLE["last"] = (total, idle)
        spent = total - last_total
        return round(100.0 * (1 - (idle - last_idle) / spent), 1) if spent > 0 else 0.0
    except (OSError, ValueError, IndexError):
        return None


def _visible(uuid, index, visible):
    if visible is None:
        return True
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    return uuid in wanted or str(index) in wanted


def _gpu_readings(pynvml, handle):
    """Utilization, temperature and power; None for what this GPU (or MIG mode) cannot say."""

    def read(call, *args):
        try:
            return call(handle, *args)
        except pynvml.NVMLError:
            return None

    rates = read(pynvml.nvmlDeviceGetUtilizationRates)
    power = read(pynvml.nvmlDeviceGetPowerUsage)
    limit = read(pynvml.nvmlDeviceGetEnforcedPowerLimit)
    return {
        "utilization": rates.gpu if rates is not None else None,
        "temperature": read(pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU),
        "power_watts": power / 1000 if power is not None else None,
        "power_limit_watts": limit / 1000 if limit is not None else None,
    }


def _devices(pynvml):
    """Every GPU and MIG instance NVML shows: ``(index, handle, uuid)``."""
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        yield index, handle, _text(pynvml.nvmlDeviceGetUUID(handle))
        try:
            mig = pynvml.nvmlDeviceGetMigMode(handle)[0] == pynvml.NVML_DEVICE_MIG_ENABLE
        except pynvml.NVMLError:
            mig = False
        if mig:
            for child in _mig_handles(pynvml, handle):
                yield index, child, _text(pynvml.nvmlDeviceGetUUID(child))


def _own_use(pynvml, handle, own_pids):
    """The GPU memory and utilization of this server's own processes on a device (NVML's
    running compute processes; utilization from per-process samples, None where the driver
    gives none, as on MIG instances)."""
    try:
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except pynvml.NVMLError:
        return None
    mine = [p for p in processes if p.pid in own_pids]
    used = [p.usedGpuMemory for p in mine if isinstance(p.usedGpuMemory, int)]
    utilization = None
    if not mine:
        utilization = 0
    else:
        try:
            # Samples of the last 10 seconds (NVML's timestamps are in microseconds).
            samples = pynvml.nvmlDeviceGetProcessUtilization(handle, int((time.time() - 10) * 1e6))
        except pynvml.NVMLError:
            samples = None
        if samples is not None:
            busiest: dict = {}
            for sample in samples:
                if sample.pid in own_pids:
                    busiest[sample.pid] = max(busiest.get(sample.pid, 0), sample.smUtil)
            utilization = min(100, sum(busiest.values()))
    return {
        "memory_used": sum(used),
        "utilization": utilization,
        "processes": len(mine),
    }


def metrics(params):
    """GPU, CPU and memory use now, for the GPUs (or MIG instances) this server may use: the
    whole device's readings, and under ``own`` those of this server's own processes (found by
    the token they carry)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    token = os.environ.get("JUPYTER_COMPUTE_SERVER_TOKEN")
    # A share of a GPU (MPS): its neighbours' work is on the same device.
    shared = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" in os.environ
    gpus = []
    reason = ""
    try:
        import pynvml
    except ImportError:
        pynvml = None
        reason = "nvidia-ml-py is not installed on this machine"
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
        except Exception as e:
            reason = f"no NVIDIA driver or GPU found ({e})"
        else:
            try:
                own_pids = (
                    set(_processes_with("JUPYTER_COMPUTE_SERVER_TOKEN", token)) if token else None
                )
                for index, handle, uuid in _devices(pynvml):
                    if not _visible(uuid, index, visible):
                        continue
                    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                    gpu = {
                        "index": index,
                        "uuid": uuid,
                        "name": _text(pynvml.nvmlDeviceGetName(handle)),
                        "memory_used": int(memory.used),
                        "memory_total": int(memory.total),
                        "shared": shared,
                        "own": None if own_pids is None else _own_use(pynvml, handle, own_pids),
                    }
                    gpu.update(_gpu_readings(pynvml, handle))
                    gpus.append(gpu)
            finally:
                pynvml.nvmlShutdown()
    memory_total = _meminfo_bytes("MemTotal")
    available = _meminfo_bytes("MemAvailable")
    return {
        "time": time.time(),
        "gpus": gpus,
        "gpu_reason": reason,
        "cpu_percent": _cpu_percent(),
        "cpu_count": os.cpu_count(),
        "memory_total": memory_total,
        "memory_used": memory_total - available if memory_total and available else None,
    }


# --- MPS ----------------------------------------------------------------------------------
#
# A GPU whose shares are given out runs one MPS control daemon, started here as the host's
# user with only that GPU visible, its pipe and log directories private under
# ``~/.jupyter-compute-servers/mps/<GPU UUID>``. The clients (a slice's processes) find it by
# ``CUDA_MPS_PIPE_DIRECTORY`` and bring their own limits in their environment. The GPU's
# compute mode and MIG layout are never touched.

GPU_UUID = re.compile(r"GPU-[A-Za-z0-9-]{1,80}")
MPS_CONTROL = "nvidia-cuda-mps-control"


def _mps_dirs(uuid):
    if not isinstance(uuid, str) or not GPU_UUID.fullmatch(uuid):
        raise ValueError("uuid must be a GPU UUID (GPU-...)")
    root = os.path.expanduser(os.path.join("~/.jupyter-compute-servers/mps", uuid))
    dirs = {
        "pipe_directory": os.path.join(root, "pipe"),
        "log_directory": os.path.join(root, "log"),
    }
    for path in dirs.values():
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    return dirs


def _mps_daemons(pipe_directory, control_only=False):
    """The live MPS processes (control daemon, server) serving this pipe directory; only the
    control daemon with ``control_only`` (a server left by a dead control daemon serves no new
    client). A zombie (dead, not yet reaped) is not alive."""
    found = []
    for pid in _processes_with("CUDA_MPS_PIPE_DIRECTORY", pipe_directory):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("nvidia-cuda-mps"):
                    continue
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[:1] == ["Z"]:
                    continue
            if control_only:
                # comm is cut to 15 characters: both daemons read "nvidia-cuda-mps".
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"nvidia-cuda-mps-control" not in f.read():
                        continue
            found.append(pid)
        except OSError:
            continue
    return found


def _mps_env(uuid, dirs):
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_COMPUTE_SERVER_TOKEN"}
    env.update(
        CUDA_VISIBLE_DEVICES=uuid,
        CUDA_MPS_PIPE_DIRECTORY=dirs["pipe_directory"],
        CUDA_MPS_LOG_DIRECTORY=dirs["log_directory"],
    )
    return env


def mps_ensure(params):
    """Start the GPU's MPS control daemon unless it runs (its process alive); say where its
    clients find it, and whether it had to be started (``started``)."""
    uuid = params.get("uuid")
    dirs = _mps_dirs(uuid)
    running = _mps_daemons(dirs["pipe_directory"], control_only=True)
    if running:
        return {**dirs, "started": False, "pids": running}
    control = shutil.which(MPS_CONTROL)
    if control is None:
        raise RuntimeError(
            f"{MPS_CONTROL} is not on this host's PATH: shares of a GPU need the NVIDIA "
            "driver's MPS tools; install them, or remove the GPU from the host's gpu_fractions."
        )
    done = subprocess.run(
        [control, "-d"],
        env=_mps_env(uuid, dirs),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=20,
        start_new_session=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{MPS_CONTROL} -d failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).decode(errors='replace').strip()[-500:]}"
        )
    deadline = time.time() + 5
    while not _mps_daemons(dirs["pipe_directory"]) and time.time() < deadline:
        time.sleep(0.05)
    return {**dirs, "started": True, "pids": _mps_daemons(dirs["pipe_directory"])}


def mps_stop(params):
    """Ask the GPU's MPS control daemon to quit (its way of ending), if it runs."""
    uuid = params.get("uuid")
    dirs = _mps_dirs(uuid)
    if not _mps_daemons(dirs["pipe_directory"]):
        return {"stopped": False}
    control = shutil.which(MPS_CONTROL) or MPS_CONTROL
    subprocess.run(
        [control],
        env=_mps_env(uuid, dirs),
        input=b"quit\n",
        capture_output=True,
        timeout=20,
        start_new_session=True,
    )
    deadline = time.time() + 10
    while _mps_daemons(dirs["pipe_directory"]) and time.time() < deadline:
        time.sleep(0.05)
    return {"stopped": not _mps_daemons(dirs["pipe_directory"])}


# --- containers ---------------------------------------------------------------------------
#
# An image whose kernels run in a container: docker or podman with the host's network (the
# kernel's ports stay on loopback), the workspace and the kernels' runtime dir mounted at the
# same paths, this server's GPUs passed in; or Apptainer on HPC-style hosts; or a conda env.

CONTAINER_ENGINES = ("docker", "podman", "apptainer", "conda")
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,255}$")


def _container(params):
    container = params.get("container")
    if not container:
        return None
    engine = container.get("engine")
    if engine not in CONTAINER_ENGINES:
        raise ValueError(f"unknown container engine {engine!r}")
    ref = container.get("env") if engine == "conda" else container.get("image")
    if not isinstance(ref, str) or not _IMAGE_REF.match(ref.replace("docker://", "", 1)):
        raise ValueError(f"invalid image {ref!r}")
    executable = shutil.which(engine)
    if executable is None:
        raise RuntimeError(f"{engine} is not installed on this server (needed by the image)")
    return dict(container, executable=executable)


def _gpu_options(engine, wants_gpu):
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in (visible or "").split(",") if d]
    if engine == "docker":
        if devices:
            return ["--gpus", f'"device={",".join(devices)}"']
        return ["--gpus", "all"] if visible is None and wants_gpu else []
    if engine == "podman":  # CDI names
        if devices:
            return [arg for d in devices for arg in ("--device", f"nvidia.com/gpu={d}")]
        return ["--device", "nvidia.com/gpu=all"] if visible is None and wants_gpu else []
    if engine == "apptainer":
        return ["--nv"] if devices or (visible is None and wants_gpu) else []
    return []


#: Every container we start carries this label, valued with a digest of its server's token
#: (the token itself must not show in ``podman ps``), so that stopping the server finds and
#: removes its containers even when their engine clients were killed.
CONTAINER_LABEL = "io.jupyter.compute-server"
_TOKEN_VARIABLES = ("JUPYTER_COMPUTE_SERVER_TOKEN", "JUPYTER_COMPUTE_SERVER_SANDBOX")


def container_owner(token=None):
    """The label value for this server's containers (from the token in our environment)."""
    token = token or next((os.environ[v] for v in _TOKEN_VARIABLES if os.environ.get(v)), None)
    return hashlib.sha256(token.encode()).hexdigest()[:32] if token else None


def _user_options(engine):
    """Run as the user who owns the workspace, so what a kernel writes there is theirs.
    Rootless podman maps the user's own id into the container with keep-id (a plain --user
    would land on a subordinate id, owned by nobody on the host); everywhere else --user."""
    if engine == "podman" and os.getuid() != 0:
        return ["--userns", "keep-id"]
    return ["--user", f"{os.getuid()}:{os.getgid()}"]


def container_command(container, command, *, name, cwd, mounts, env, interactive=False):
    """``command`` wrapped to run inside the image (argument vectors, no shell)."""
    engine = container["engine"]
    executable = container["executable"]
    wants_gpu = container.get("gpu", "optional") != "none"
    if engine == "conda":
        return [executable, "run", "--no-capture-output", "-n", container["env"], *command]
    if engine == "apptainer":
        argv = [executable, "exec", "--pwd", cwd, "--bind", ",".join(mounts)]
        argv += _gpu_options(engine, wants_gpu)
        return [*argv, container["image"], *command]
    # --pull never: the image was made present when the server started (container_pull); a
    # registry is never asked again behind the user's back on each kernel start.
    argv = [executable, "run", "--rm", "--init", "--pull", "never", "--network", "host"]
    argv += ["--name", name]
    owner = container_owner()
    if owner:
        argv += ["--label", f"{CONTAINER_LABEL}={owner}"]
    if interactive:
        argv += ["--interactive", "--tty"]
    argv += _user_options(engine)
    argv += ["--workdir", cwd]
    for mount in mounts:
        argv += ["--volume", f"{mount}:{mount}"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    argv += _gpu_options(engine, wants_gpu)
    return [*argv, container["image"], *command]


def container_stop(record):
    """SIGKILL reaches only the engine's client: stop the container itself too."""
    engine, name = record.get("container_engine"), record.get("container_name")
    if engine in ("docker", "podman") and name and shutil.which(engine):
        subprocess.run(
            [shutil.which(engine), "kill", name],
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )


def remove_containers(owner):
    """Remove (killing) every container labelled as this server's, with each engine here.
    Answers how many were removed. An engine that cannot answer (docker without its daemon)
    has none of ours."""
    removed = 0
    for engine in ("podman", "docker"):
        executable = shutil.which(engine)
        if executable is None:
            continue
        try:
            listed = subprocess.run(
                [
                    executable,
                    "ps",
                    "--all",
                    "--quiet",
                    "--filter",
                    f"label={CONTAINER_LABEL}={owner}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        ids = listed.stdout.split() if listed.returncode == 0 else []
        if ids:
            subprocess.run(
                [executable, "rm", "--force", *ids],
                capture_output=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
            removed += len(ids)
    return removed


def image_present(container):
    """Whether the engine has the image locally (asks no registry)."""
    if container["engine"] == "podman":
        probe = [container["executable"], "image", "exists", container["image"]]
    else:
        probe = [
            container["executable"],
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            container["image"],
        ]
    try:
        found = subprocess.run(probe, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False
    return found.returncode == 0


#: What an engine's failed pull says, and what the user can do about it (first match wins).
PULL_FAILURES = (
    (
        re.compile(
            r"manifest unknown|not found|name unknown|does not exist|repository .* not found", re.I
        ),
        "the registry has no such image or tag",
        "check the image and tag in the catalogue, or build the image on the server",
    ),
    (
        re.compile(r"unauthorized|denied|authentication required|forbidden", re.I),
        "the registry refused access",
        "log in to the registry on the server ({engine} login REGISTRY) or use a public image",
    ),
    (
        re.compile(
            r"no image found in .*architecture|does not match the specified platform|"
            r"no matching manifest",
            re.I,
        ),
        "the image is not built for this server's architecture",
        "pick a version built for {arch}",
    ),
    (
        re.compile(r"no space left on device", re.I),
        "the server's disk is full",
        "give the server a larger disk or remove unused images ({engine} image prune)",
    ),
    (
        re.compile(
            r"connection refused|no such host|i/o timeout|network is unreachable|"
            r"pinging container registry|dial tcp|TLS handshake|connection reset|"
            r"temporary failure in name resolution|could not resolve",
            re.I,
        ),
        "the registry cannot be reached",
        "check the server's network, or put the image on the server ({engine} load/import)",
    ),
)


def pull_failure(engine, image, output):
    """A failed pull, said as the cause and what to do, the engine's last words after."""
    lines = [line for line in output if line.strip()]
    said = " / ".join(lines[-3:])[-600:] or "no output"
    for pattern, cause, todo in PULL_FAILURES:
        if any(pattern.search(line) for line in lines):
            todo = todo.format(engine=engine, arch=platform.machine())
            return f"{engine} cannot pull {image}: {cause}; {todo}. ({engine} said: {said})"
    return f"{engine} pull {image} failed. ({engine} said: {said})"


class PullProgress:
    """Layers seen and done from an engine's pull output. Without a terminal podman prints
    "Copying blob sha256:ID" per layer (then "done" or "skipped: already exists" on the same or
    a later line), docker "ID: Pulling fs layer" ... "ID: Pull complete"."""

    _PODMAN = re.compile(r"^Copying blob (?:sha256:)?([0-9a-f]{6,})\s*(.*)$")
    _DOCKER = re.compile(r"^([0-9a-f]{12}): (.+)$")

    def __init__(self):
        self.layers: dict[str, bool] = {}

    def counts(self):
        return len(self.layers), sum(self.layers.values())

    def feed(self, line):
        """The line as progress text: the layers so far, and what the engine said."""
        match = self._PODMAN.match(line)
        if match:
            layer, rest = match.group(1)[:12], match.group(2)
            done = "done" in rest or "skipped" in rest or "already exists" in rest
            self.layers[layer] = self.layers.get(layer, False) or done
        elif line.startswith(("Copying config", "Writing manifest")):
            # podman without a terminal says no "done" per blob: the config comes after all.
            self.layers = dict.fromkeys(self.layers, True)
        else:
            match = self._DOCKER.match(line)
            if match:
                layer, status = match.groups()
                self.layers[layer] = self.layers.get(layer, False) or status in (
                    "Pull complete",
                    "Already exists",
                )
        if not self.layers:
            return line[:200]
        seen, done = self.counts()
        return f"{done} of {seen} layers ({line[:120]})"


def container_pull(params):
    """Make the image present before first use. An image already here is used as it is (no
    registry asked) unless its tag moves ("pull": "always"); then a failed pull only warns.
    A missing image is pulled, reporting the engine's progress; failing, the error says why
    and what to do."""
    container = _container(params)
    if container is None or container["engine"] == "conda":
        return {"pulled": False}
    engine, image = container["engine"], container["image"]
    if engine == "apptainer":
        return {"pulled": False}  # apptainer fetches docker:// images itself on first exec
    policy = container.get("pull") or "missing"
    present = image_present(container)
    if present and policy != "always":
        return {"pulled": False, "present": True}
    report_progress("asking the registry for a newer version" if present else "starting")
    try:
        process = subprocess.Popen(
            [container["executable"], "pull", image],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as e:
        raise RuntimeError(f"cannot run {engine}: {e.strerror or e}") from None
    progress = PullProgress()
    last, counts = 0.0, (0, 0)
    tail: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.strip()
        if not line:
            continue
        tail = [*tail[-20:], line]
        text = progress.feed(line)
        # Each layer started or done is shown; other lines at most twice a second.
        if progress.counts() != counts or time.time() - last > 0.5:
            report_progress(text)
            last, counts = time.time(), progress.counts()
    if process.wait() != 0:
        message = pull_failure(engine, image, tail)
        if present:
            # A moving tag whose registry is away: the copy here still runs.
            report_progress(f"using the copy already here; {message}")
            return {"pulled": False, "present": True, "warning": message}
        raise RuntimeError(message)
    return {"pulled": True, "present": True, "layers": len(progress.layers)}


# --- web apps -----------------------------------------------------------------------------
#
# Web apps (TensorBoard, an MLflow UI...) run detached like kernels: their own session, a log
# beside a record in ``<runtime dir>/apps/app-<name>.record.json``, a port on this machine's
# loopback chosen here and put into the command as ``{port}``. The Jupyter side reaches them
# through a tunnel of the SSH connection. ``listening_ports`` says what this server's processes
# listen on, so that a port can be opened by number, and only a port of this server's.

APP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: How long a stopped app has after SIGTERM before SIGKILL.
APP_STOP_SECONDS = 3.0


def _apps_dir(params):
    return _private_dir(params, "apps")


def _app_name(params):
    name = params.get("name")
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise ValueError(f"invalid app name {name!r}")
    return name


def _app_public(record):
    code = _exit_code(record)
    public = {
        key: record.get(key) for key in ("name", "pid", "port", "started", "base_url", "log_file")
    }
    public.update(running=code is None, exit_code=code)
    return public


def _log_tail(path, limit):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def app_start(params):
    """Start an app (unless it runs already): ``argv`` with ``{port}`` and ``{base_url}``."""
    apps = _apps_dir(params)
    name = _app_name(params)
    argv = params.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a non-empty list of strings")
    base_url = params.get("base_url") or "/"
    if not isinstance(base_url, str):
        raise ValueError("base_url must be a string")
    previous = _read_record(apps, name, "app")
    if previous is not None and _exit_code(previous) is None:
        return dict(_app_public(previous), already=True)
    cwd = _workspace_dir(params.get("workspace") or "~", params.get("cwd") or "")
    port = _loopback_ports(1)[0]
    command = [arg.replace("{port}", str(port)).replace("{base_url}", base_url) for arg in argv]
    env = dict(os.environ)
    env.pop("JPY_PARENT_PID", None)
    env["PWD"] = cwd
    container = _container(params)
    if container is not None:
        workspace = os.path.realpath(os.path.expanduser(params.get("workspace") or "~"))
        command = container_command(
            container, command, name=f"jcs-app-{name}", cwd=cwd, mounts=[workspace], env={}
        )
    elif BARE_PYTHON.fullmatch(command[0]):
        command[0] = sys.executable
    log_path = os.path.join(apps, f"app-{name}.log")
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
        raise RuntimeError(f"cannot run {command[0]!r}: {e.strerror or e}") from None
    finally:
        os.close(log_fd)
    _CHILDREN[child.pid] = child
    record = {
        "name": name,
        "pid": child.pid,
        "pgid": child.pid,
        "start_time": _start_time(child.pid),
        "port": port,
        "base_url": base_url,
        "log_file": log_path,
        "started": time.time(),
        "container_engine": container["engine"] if container else None,
        "container_name": f"jcs-app-{name}" if container else None,
    }
    _write_private(_record_path(apps, name, "app"), json.dumps(record))
    return dict(_app_public(record), already=False)


def app_list(params):
    """Every app started here and not stopped since: running, or ended (with its exit code)."""
    apps = _apps_dir(params)
    found = []
    for entry in sorted(os.listdir(apps)):
        if entry.startswith("app-") and entry.endswith(".record.json"):
            record = _read_record(apps, entry[len("app-") : -len(".record.json")], "app")
            if record is not None:
                found.append(_app_public(record))
    return {"apps": found}


def app_log(params):
    """The end of an app's output (why it exited, or what it is doing)."""
    apps = _apps_dir(params)
    limit = min(int(params.get("max_bytes") or 4000), 64000)
    return {"log": _log_tail(os.path.join(apps, f"app-{_app_name(params)}.log"), limit)}


def app_stop(params):
    """End an app's process group (SIGTERM, then SIGKILL) and forget it."""
    apps = _apps_dir(params)
    name = _app_name(params)
    record = _read_record(apps, name, "app")
    if record is None:
        return {"stopped": False}
    was_running = _exit_code(record) is None
    if was_running:
        deadline = time.time() + APP_STOP_SECONDS
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record["pgid"], signal.SIGTERM)
        while _exit_code(record) is None and time.time() < deadline:
            time.sleep(0.05)
        if _exit_code(record) is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(record["pgid"], signal.SIGKILL)
            container_stop(record)
    for path in (_record_path(apps, name, "app"), os.path.join(apps, f"app-{name}.log")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return {"stopped": was_running}


_LOOPBACK6 = "00000000000000000000000001000000"
_MAPPED4 = "0000000000000000FFFF0000"


def _on_loopback(address):
    """Whether a /proc/net/tcp(6) local address (hex) is reachable on the loopback: 127/8,
    ::1, ::ffff:127.x, or every address (0.0.0.0, ::)."""
    if len(address) == 8:  # IPv4, the bytes of a little-endian word
        return address == "00000000" or address[6:8] == "7F"
    return (
        address in ("0" * 32, _LOOPBACK6)
        or (address.startswith(_MAPPED4) and address[30:32] == "7F")
        or address == _MAPPED4 + "00000000"
    )


def _listening_inodes():
    """inode -> port of the TCP sockets listening where the loopback reaches them."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            address, _, port = fields[1].partition(":")
            if _on_loopback(address):
                found[int(fields[9])] = int(port, 16)
    return found


def _machinery_ports(params):
    """Ports of our own processes (kernels' channels, IOPub relays, terminal hosts): not apps."""
    ports: set = set()
    for name in ("kernels", "terminals"):
        directory = _private_dir(params, name)
        for entry in os.listdir(directory):
            if not entry.endswith(".record.json"):
                continue
            try:
                with open(os.path.join(directory, entry)) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict):
                continue
            values = list((record.get("ports") or {}).values())
            values += [record.get("port"), (record.get("relay") or {}).get("port")]
            ports.update(v for v in values if isinstance(v, int))
    return ports


TOKEN_VARIABLES = ("JUPYTER_COMPUTE_SERVER_TOKEN", "JUPYTER_COMPUTE_SERVER_SANDBOX")


def _ancestors():
    """This process and its parents (up to, not including, init)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def listening_ports(params):
    """TCP ports that this server's processes listen on, reachable on the loopback: those of
    processes carrying the server's token where it has one (a host shares its machine with
    other servers), else of this user's processes; our own machinery left out."""
    inodes = _listening_inodes()
    # A host's slice has a token; a local sandbox has its own variable.
    marker = next(
        (f"{name}={os.environ[name]}".encode() for name in TOKEN_VARIABLES if os.environ.get(name)),
        None,
    )
    uid = os.getuid()
    skipped = _ancestors()  # this agent and the SSH daemon serving it
    ours = _machinery_ports(params)
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in skipped:
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            if marker and not _environ_has(pid, marker):
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:["):
                continue
            port = inodes.get(int(target[8:-1]))
            if port is None or port in ours or port in found:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
            except OSError:
                argv = []
            found[port] = {"port": port, "pid": int(pid), "command": " ".join(argv)[:300]}
    return {"ports": [found[port] for port in sorted(found)]}


def ping(params):
    return {"pong": True, "pid": os.getpid()}


METHODS = {
    "info": info,
    "ping": ping,
    "kernelspecs": kernelspecs,
    "kernel_launch": kernel_launch,
    "kernel_ready": kernel_ready,
    "kernel_status": kernel_status,
    "kernel_signal": kernel_signal,
    "kernel_cleanup": kernel_cleanup,
    "kernel_log": kernel_log,
    "kernel_list": kernel_list,
    "kernel_key": kernel_key,
    "kernel_claim": kernel_claim,
    "terminal_start": terminal_start,
    "terminal_list": terminal_list,
    "terminal_connect": terminal_connect,
    "terminal_kill": terminal_kill,
    "set_environment": set_environment,
    "end_processes": end_processes,
    "workspace_prepare": workspace_prepare,
    "workspace_remove": workspace_remove,
    "metrics": metrics,
    "mps_ensure": mps_ensure,
    "mps_stop": mps_stop,
    "container_pull": container_pull,
    "app_start": app_start,
    "app_list": app_list,
    "app_log": app_log,
    "app_stop": app_stop,
    "listening_ports": listening_ports,
}


# --- the live workspace: sshfs in passive mode, its SFTP served by the Jupyter server ------


def _mount_point(params):
    """The mount point: a path inside the workspace, no link on the way, never the workspace."""
    workspace = os.path.realpath(os.path.expanduser(params["workspace"]))
    relative = params.get("path")
    if not isinstance(relative, str) or not relative or relative.startswith("/"):
        raise ValueError(f"invalid mount path {relative!r}")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid mount path {relative!r}")
    return workspace, os.path.join(workspace, *parts)


def _mounted(path):
    """Whether a file system is mounted at ``path`` (from /proc/mounts: never touches the
    mount itself, which may be dead or served by a busy peer)."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 1 and fields[1].replace("\\040", " ") == path:
            return True
    return False


def _fusermount():
    return shutil.which("fusermount3") or shutil.which("fusermount")


def mount_check(params):
    """What mounting needs here: sshfs, /dev/fuse and fusermount. ``missing`` names what is
    not there and ``install`` the package that brings it."""
    sshfs = shutil.which("sshfs")
    missing = []
    if sshfs is None:
        missing.append("sshfs")
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    if _fusermount() is None:
        missing.append("fusermount")
    version = ""
    if sshfs is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([sshfs, "--version"], capture_output=True, text=True, timeout=10)
            match = re.search(r"SSHFS version (\d+)\.(\d+)", out.stdout + out.stderr)
            if match:
                version = f"{match.group(1)}.{match.group(2)}"
    # sshfs 3 calls SFTP over stdin/stdout "passive"; 2.x called it "slave".
    passive = "slave" if version.startswith("2.") else "passive"
    return {"missing": missing, "sshfs": sshfs, "version": version, "passive": passive}


def mount_prepare(params):
    """Make the mount point (inside the workspace), lazily unmounting a mount left there
    (a dead one after a dropped connection: its processes got errors meanwhile)."""
    workspace, path = _mount_point(params)
    if _mounted(path):
        _unmount(path)
    os.makedirs(path, mode=0o755, exist_ok=True)
    if os.path.realpath(path) != path or not path.startswith(workspace + "/"):
        raise ValueError("the mount point is a link or outside the workspace; refusing it")
    if os.listdir(path):
        raise ValueError(f"the mount point {path} is not empty; choose another path")
    return {"path": path}


def _unmount(path):
    fusermount = _fusermount()
    argv = [fusermount, "-u", "-z", path] if fusermount else ["umount", "-l", path]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if out.returncode != 0 and _mounted(path):
        raise OSError(f"could not unmount {path}: {out.stderr.strip()}")


def unmount(params):
    """Unmount the mount point (lazily: a process inside keeps working on what it has
    open, and nothing new goes through)."""
    _, path = _mount_point(params)
    was = _mounted(path)
    if was:
        _unmount(path)
    return {"path": path, "unmounted": was, "mounted": _mounted(path)}


def mount_state(params):
    _, path = _mount_point(params)
    return {"path": path, "mounted": _mounted(path)}


def mount_relay_main(argv):
    """Run sshfs (``argv``) with its SFTP stream relayed to this process's stdin/stdout (the
    exec channel). When the channel ends (the connection dropped, or our side closed it),
    sshfs is killed before it can see the end: a clean exit would unmount and leave an
    empty directory where the files were, which a program would take for "no files". Killed,
    the mount stays and every access fails ("Transport endpoint is not connected") until the
    Jupyter server mounts it again or unmounts it."""
    import select

    child = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, start_new_session=True
    )

    def end(*_):
        child.kill()
        os._exit(0)

    signal.signal(signal.SIGHUP, end)
    signal.signal(signal.SIGTERM, end)
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()
    child_in, child_out = child.stdin.fileno(), child.stdout.fileno()  # type: ignore[union-attr]
    # Nothing follows the agent's source in stdin's buffer: our side sends nothing until
    # sshfs has spoken (SFTP's init comes from the client).
    while True:
        ready, _, _ = select.select([stdin, child_out], [], [])
        if stdin in ready:
            data = os.read(stdin, 1 << 18)
            if not data:
                child.kill()
                child.wait()
                return
            os.write(child_in, data)
        if child_out in ready:
            data = os.read(child_out, 1 << 18)
            if not data:  # sshfs ended (unmounted, or failed to mount)
                sys.exit(child.wait())
            os.write(stdout, data)


METHODS.update(
    mount_check=mount_check, mount_prepare=mount_prepare, mount_state=mount_state, unmount=unmount
)


#: Where a long method reports progress (the client shows it); set for each request.
_PROGRESS: dict = {"report": lambda text: None}


def report_progress(text):
    _PROGRESS["report"](text)


def serve(stdin, stdout):
    lock = threading.Lock()

    def send(message):
        line = json.dumps(message) + "\n"
        with lock:  # answers may come from threads (``Later``): one line at a time
            stdout.write(line)
            stdout.flush()

    def later(request_id, result):
        try:
            send({"id": request_id, "result": result.compute()})
        except Exception as e:
            send({"id": request_id, "error": {"type": type(e).__name__, "message": str(e)}})

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
            _PROGRESS["report"] = lambda text, rid=request_id: send({"id": rid, "progress": text})
            result = method(request.get("params") or {})
            if isinstance(result, Later):
                threading.Thread(target=later, args=(request_id, result), daemon=True).start()
                continue
            send({"id": request_id, "result": result})
        except Exception as e:
            send({"id": request_id, "error": {"type": type(e).__name__, "message": str(e)}})


if __name__ == "__main__":
    if sys.argv[1:2] == ["--iopub-relay"]:
        relay_main(sys.argv[2:])
    elif sys.argv[1:2] == ["--mount-relay"]:
        mount_relay_main(sys.argv[2:])
    else:
        serve(sys.stdin, sys.stdout)
