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
import errno
import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import stat
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
    container = _container(params)
    if container is not None:
        workspace = os.path.realpath(os.path.expanduser(params.get("workspace") or "~"))
        spec_env = {str(k): str(v) for k, v in (params.get("env") or {}).items()}
        command = container_command(
            container,
            command,
            name=f"jcs-kernel-{kernel_id}",
            cwd=cwd,
            mounts=[workspace, os.path.realpath(kernels)],
            env=spec_env,
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

TERMINAL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCROLLBACK_BYTES = 256 * 1024
CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024


def _terminals_dir(params):
    return _private_dir(params, "terminals")


def _terminal_name(params):
    name = params.get("name")
    if not isinstance(name, str) or not TERMINAL_NAME.match(name):
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
        if not hmac.compare_digest(str(hello.get("token", "")), token):
            drop(client)
            return
        client.attached = True
        client.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        start = produced - len(scrollback)
        offset = min(max(int(hello.get("offset") or 0), start), produced)
        missed = bytes(scrollback[offset - start :])
        send(client, ["stdout", client.decoder.decode(missed), produced])

    def handle(client, line):
        if not client.attached:
            attach(client, json.loads(line))
            return
        message = json.loads(line)
        if message[0] == "stdin":
            data = str(message[1]).encode()
            while data:
                data = data[os.write(master, data) :]
        elif message[0] == "set_size":
            _window_size(master, message[1], message[2])

    exit_code = None
    while exit_code is None:
        for key, events in selector.select():
            if key.data == "listen":
                with contextlib.suppress(OSError):
                    sock, _ = listener.accept()
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
                        except (ValueError, TypeError, IndexError, KeyError):
                            drop(client)  # not our protocol: not our client
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
        if entry.endswith(".json") and TERMINAL_NAME.match(entry[:-5]):
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
    """End every process carrying a compute server's token (SIGTERM, then SIGKILL)."""
    token = params.get("token")
    if not isinstance(token, str) or not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token):
        raise ValueError("invalid token")
    name = "JUPYTER_COMPUTE_SERVER_TOKEN"
    found = _processes_with(name, token)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in _processes_with(name, token):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.time() + 3
        while _processes_with(name, token) and time.time() < deadline:
            time.sleep(0.05)
    return {"ended": len(found), "left": len(_processes_with(name, token))}


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


def metrics(params):
    """GPU, CPU and memory use now, for the GPUs this server may use."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
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
                for index in range(pynvml.nvmlDeviceGetCount()):
                    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                    uuid = pynvml.nvmlDeviceGetUUID(handle)
                    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
                    if not _visible(uuid, index, visible):
                        continue
                    name = pynvml.nvmlDeviceGetName(handle)
                    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                    gpu = {
                        "index": index,
                        "uuid": uuid,
                        "name": name.decode() if isinstance(name, bytes) else name,
                        "memory_used": int(memory.used),
                        "memory_total": int(memory.total),
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
    argv = [executable, "run", "--rm", "--init", "--network", "host", "--name", name]
    if interactive:
        argv += ["--interactive", "--tty"]
    argv += ["--user", f"{os.getuid()}:{os.getgid()}", "--workdir", cwd]
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


def container_pull(params):
    """Fetch an image before first use, reporting the engine's progress lines."""
    container = _container(params)
    if container is None or container["engine"] == "conda":
        return {"pulled": False}
    engine, image = container["engine"], container["image"]
    if engine == "apptainer":
        return {"pulled": False}  # apptainer fetches docker:// images itself on first exec
    process = subprocess.Popen(
        [container["executable"], "pull", image],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    )
    last = 0.0
    tail: list = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.strip()
        if not line:
            continue
        tail = [*tail[-20:], line]
        if time.time() - last > 0.5:
            report_progress(line[:200])
            last = time.time()
    if process.wait() != 0:
        raise RuntimeError(f"{engine} pull {image} failed: {' / '.join(tail[-3:])}")
    return {"pulled": True}


# --- sync ---------------------------------------------------------------------------------
#
# File sync between the Jupyter root and this server's workspace (``jupyter_compute_servers.sync``
# plans it). The Jupyter server imports these same functions for its own tree, so both sides
# scan, hash, read and write by one set of rules:
#
# - A path is relative, "/"-separated, valid UTF-8, with no empty, "." or ".." component.
# - Directories are opened one component at a time with O_NOFOLLOW (``SyncTree.dir_fd``), so a
#   symbolic link never leads a read or a write out of the tree. Links are never synced.
# - A file is written to a temporary file in its directory and then put in place, and only if
#   the target is still what the caller saw (``expect``: its signature, or None for "absent"):
#   the old file is first renamed aside and checked, so a change made meanwhile is kept.
# - A signature is (size, mtime_ns, inode, ctime_ns). Any write or chmod sets ctime, which
#   cannot be set back, so an unchanged signature means unchanged content. A signature taken
#   within SYNC_RACY_NS of a change is not "trusted" (a change in the same clock tick could
#   hide behind it); the caller hashes such a file again next time.
#
# On the server this runs as its own process (argument ``sync-session``) so that a long scan or
# transfer never holds up the agent's kernel calls. Its protocol, on stdin and stdout: every
# message is one JSON line, followed by exactly ``size`` raw bytes when the line has a "size";
# answers come in the order of the requests. See ``jupyter_compute_servers.sync.transfer``.

SYNC_MARKER = ".jupyter-compute-servers-sync.json"
SYNC_TEMP = re.compile(r"^\..*\.jcs-sync-[0-9a-f]{12}\.(tmp|old)$", re.DOTALL)
SYNC_RACY_NS = 2_000_000_000
SYNC_STALE_NS = 600_000_000_000
SYNC_CHUNK = 1 << 20
SYNC_FSYNC_MAX = 64
SYNC_SMALL = 1 << 16
_SYNC_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SYNC_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SYNC_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
# What a scan leaves out of a tree, by reason: the side keeps these and sync never touches them.
SYNC_PRUNED_VENV = "virtual environment"
SYNC_PRUNED_CONDA = "conda environment"
SYNC_PRUNED_SERVER_ONLY = "server-only directory"
SYNC_PRUNED_EXCLUDED = "excluded"


def _sync_umask():
    """This process's umask, read without setting it (a set, even undone at once, would race
    with other threads creating files); all bits when it cannot be read (then fchmod)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777


_SYNC_UMASK = _sync_umask()


class SyncChanged(Exception):
    """The file is no longer what the caller saw: it changed on this side during the sync."""


def sync_parts(path):
    """The components of a relative tree path; ValueError when it is not one."""
    if not isinstance(path, str) or not path or len(path) > 4096:
        raise ValueError(f"invalid path {path!r}")
    parts = path.split("/")
    for part in parts:
        # encode() refuses names that are not valid UTF-8 (surrogate escapes).
        if part in ("", ".", "..") or "\x00" in part or len(part.encode("utf-8")) > 255:
            raise ValueError(f"invalid path {path!r}")
    return parts


def _sync_sig(st):
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _sync_mode(st):
    return stat.S_IMODE(st.st_mode) & 0o777


# --- sync: excludes in gitignore syntax ----------------------------------------------------


def _sync_glob(text):
    """A regular expression for one gitignore glob (no "**" handling: see below)."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < len(text) and text[j] in "!^":
                j += 1
            if j < len(text) and text[j] == "]":
                j += 1
            while j < len(text) and text[j] != "]":
                j += 1
            if j >= len(text):  # no closing bracket: a literal "["
                out.append(re.escape(c))
            else:
                body = text[i + 1 : j]
                if "[:" in body:
                    raise ValueError("character classes such as [:alpha:] are not supported")
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("[", "\\[")
                out.append(f"[^/{body}]" if negate else f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def sync_pattern(line):
    """One gitignore line as (regex over the relative path, negated, directories only), or None
    for a blank line or a comment."""
    if line.startswith("#"):
        return None
    # Trailing spaces go, unless escaped with a backslash.
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        stripped += " "
    line = stripped
    negate = line.startswith("!")
    if negate or line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    segments = line.split("/")
    parts = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            if last:
                parts.append(".*")
            elif index == 0:
                parts.append("(?:.*/)?")
            else:
                parts.append("(?:[^/]+/)*")
            continue
        parts.append(_sync_glob(segment) + ("" if last else "/"))
    body = "".join(parts)
    if segments[-1] == "**" and len(segments) > 1:
        # "a/**" matches everything inside a, not a itself (what precedes ends with a "/").
        body = "".join(parts[:-1]) + ".+"
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{body}$", re.DOTALL), negate, dir_only


class SyncExcludes:
    """Decides what a scan leaves out: gitignore-syntax patterns (later lines win; "!" brings
    back), server-only directories, and the tree's own bookkeeping files."""

    def __init__(self, patterns=(), server_only=()):
        self.rules = [rule for rule in (sync_pattern(p) for p in patterns) if rule is not None]
        self.server_only = {p.strip("/") for p in server_only}
        self._fast = None
        if not any(negate for _, negate, _ in self.rules):
            # Without negations, one combined expression per kind answers at once.
            files = [r.pattern for r, _, dir_only in self.rules if not dir_only]
            dirs = [r.pattern for r, _, _ in self.rules]
            self._fast = (
                re.compile("|".join(files), re.DOTALL) if files else None,
                re.compile("|".join(dirs), re.DOTALL) if dirs else None,
            )

    def excluded(self, path, is_dir):
        """Why ``path`` is left out, or None when it syncs."""
        if path == SYNC_MARKER or (
            ".jcs-sync-" in path and SYNC_TEMP.match(path.rpartition("/")[2])
        ):
            return SYNC_PRUNED_EXCLUDED
        if is_dir and path in self.server_only:
            return SYNC_PRUNED_SERVER_ONLY
        if self._fast is not None:
            regex = self._fast[1] if is_dir else self._fast[0]
            return SYNC_PRUNED_EXCLUDED if regex is not None and regex.match(path) else None
        for regex, negate, dir_only in reversed(self.rules):
            if (is_dir or not dir_only) and regex.match(path):
                return None if negate else SYNC_PRUNED_EXCLUDED
        return None


# --- sync: one tree ------------------------------------------------------------------------


class SyncTree:
    """One side's tree: the Jupyter root, or the server's workspace."""

    def __init__(self, root, create=False):
        root = os.path.expanduser(root)
        if create:
            os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)
        self._root_fd = os.open(self.root, _SYNC_DIR_FLAGS)
        self._fds = {"": self._root_fd}
        self._lock = threading.Lock()
        #: What changed since the last flush: files written (directory, name) and directories
        #: whose entries changed; None once there are too many to fsync one by one.
        self._dirty: set | None = set()

    def close(self):
        with self._lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = {}

    def tree_id(self):
        """This tree's identity, kept in a marker file at its root (created on first use). A
        new identity means a new disk: nothing recorded about the old one applies."""
        try:
            fd = os.open(SYNC_MARKER, _SYNC_READ_FLAGS, dir_fd=self._root_fd)
            with os.fdopen(fd, "rb") as f:
                value = json.loads(f.read(4096))["id"]
            if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
                return value
        except (OSError, ValueError, KeyError, TypeError):
            pass
        value = os.urandom(16).hex()
        tmp = f".{SYNC_MARKER}.jcs-sync-{os.urandom(6).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=self._root_fd)
        with os.fdopen(fd, "w") as f:
            json.dump({"id": value, "about": "jupyter-compute-servers file sync"}, f)
        os.replace(tmp, SYNC_MARKER, src_dir_fd=self._root_fd, dst_dir_fd=self._root_fd)
        return value

    def dir_fd(self, parts, create=False):
        """The directory ``parts`` (a list of components) opened without following links."""
        key = "/".join(parts)
        with self._lock:
            fd = self._fds.get(key)
        if fd is not None:
            return fd
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, _SYNC_DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=parent)
                self._changed(parts[:-1])
            fd = os.open(name, _SYNC_DIR_FLAGS, dir_fd=parent)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise ValueError(
                    f"{key} is not a directory (a link or a file is in the way)"
                ) from None
            raise
        with self._lock:
            if key in self._fds:
                os.close(fd)
                return self._fds[key]
            self._fds[key] = fd
        return fd

    def _forget_dir(self, key):
        with self._lock:
            for cached in [k for k in self._fds if k == key or k.startswith(key + "/")]:
                if cached:
                    with contextlib.suppress(OSError):
                        os.close(self._fds.pop(cached))

    def _parent(self, path, create=False):
        parts = sync_parts(path)
        return self.dir_fd(parts[:-1], create), parts[-1], parts

    # --- scanning ----------------------------------------------------------------------

    def scan(self, path="", patterns=(), server_only=(), max_size=None):
        """The files under ``path`` ("" for all): ``{"files": [[path, size, mtime_ns, mode,
        ino, ctime_ns]...], "skipped": [[path, reason, size]...], "pruned": [[dir, reason]...]}``.

        Skipped files exist but do not sync (links, special files, too large, unreadable
        names); pruned directories are left out whole. Stale temporary files of an
        interrupted sync are removed on the way.
        """
        excludes = SyncExcludes(patterns, server_only)
        result: dict = {"files": [], "skipped": [], "pruned": []}
        now = time.time_ns()
        parts = sync_parts(path) if path else []
        # The way down to ``path`` must itself be a synced directory.
        for depth in range(len(parts)):
            below = "/".join(parts[: depth + 1])
            try:
                fd = self.dir_fd(parts[:depth])
                st = os.stat(parts[depth], dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return result
            except ValueError:
                result["skipped"].append([below, "a link or file is in the way", 0])
                return result
            is_last = depth == len(parts) - 1
            if stat.S_ISLNK(st.st_mode):
                result["skipped"].append([below, "symbolic link", 0])
                return result
            if is_last and stat.S_ISREG(st.st_mode):
                if not excludes.excluded(below, False):
                    self._scan_file(below, st, max_size, result)
                return result
            if not stat.S_ISDIR(st.st_mode):
                result["skipped"].append([below, "not a regular file", 0])
                return result
            reason = excludes.excluded(below, True) or self._environment(parts[: depth + 1])
            if reason:
                result["pruned"].append([below, reason])
                return result
        self._walk(self.dir_fd(parts), path, excludes, max_size, now, result, 0)
        return result

    def _environment(self, parts):
        try:
            names = set(os.listdir(self.dir_fd(parts)))
        except OSError:
            return None
        return _sync_environment(names)

    def _scan_file(self, path, st, max_size, result):
        if max_size is not None and st.st_size > max_size:
            result["skipped"].append([path, "too large", st.st_size])
        else:
            result["files"].append(
                [path, st.st_size, st.st_mtime_ns, st.st_mode & 0o777, st.st_ino, st.st_ctime_ns]
            )

    def _walk(self, fd, prefix, excludes, max_size, now, result, depth):
        with os.scandir(fd) as listing:
            entries = list(listing)
        if depth:
            reason = _sync_environment({entry.name for entry in entries})
            if reason:
                result["pruned"].append([prefix, reason])
                return
        for entry in entries:
            name = entry.name
            path = f"{prefix}/{name}" if prefix else name
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                result["skipped"].append([shown, "name is not valid UTF-8", 0])
                continue
            if ".jcs-sync-" in name and SYNC_TEMP.match(name):
                self._clean_temp(fd, name, now)
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    reason = excludes.excluded(path, True)
                    if reason == SYNC_PRUNED_EXCLUDED:
                        continue
                    if reason:
                        result["pruned"].append([path, reason])
                    elif depth >= 200:
                        result["skipped"].append([path, "too deep", 0])
                    else:
                        sub = os.open(name, _SYNC_DIR_FLAGS, dir_fd=fd)
                        try:
                            self._walk(sub, path, excludes, max_size, now, result, depth + 1)
                        finally:
                            os.close(sub)
                    continue
                if excludes.excluded(path, False):
                    continue
                if entry.is_symlink():
                    result["skipped"].append([path, "symbolic link", 0])
                elif entry.is_file(follow_symlinks=False):
                    self._scan_file(path, entry.stat(follow_symlinks=False), max_size, result)
                else:
                    result["skipped"].append([path, "not a regular file", 0])
            except FileNotFoundError:
                continue  # gone since the listing
            except OSError as e:
                result["skipped"].append([path, f"unreadable: {e.strerror or e}", 0])

    def _clean_temp(self, fd, name, now):
        """A temporary file left by an interrupted sync, once stale: a new file that was never
        put in place is removed; an old one set aside goes back to its name if that is free,
        and otherwise stays (hidden, never synced, never deleted)."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if st.st_ctime_ns > now - SYNC_STALE_NS or not stat.S_ISREG(st.st_mode):
                return
            if name.endswith(".tmp"):
                os.unlink(name, dir_fd=fd)
                return
            original = name[1:].rsplit(".jcs-sync-", 1)[0]
            if len(original.encode("utf-8")) < 200:  # else it may have been shortened
                _sync_move_noreplace(fd, name, original)
        except (OSError, SyncChanged):
            pass

    # --- hashing -----------------------------------------------------------------------

    def hash(self, paths, threads=4):
        """``{path: {"hash", "sig", "mode", "trusted"} or {"error"}}``, hashed in parallel."""

        def one(path):
            try:
                reader = self.open_read(path)
            except (OSError, ValueError, SyncChanged) as e:
                return path, {"error": _sync_error(e)}
            try:
                while reader.read(SYNC_CHUNK):
                    pass
                return path, reader.finish()
            except (OSError, SyncChanged) as e:
                return path, {"error": _sync_error(e)}
            finally:
                reader.close()

        if len(paths) < 2 or threads < 2:
            return dict(one(p) for p in paths)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            return dict(pool.map(one, paths))

    # --- reading and writing -----------------------------------------------------------

    def open_read(self, path, digest=True):
        return _SyncRead(self, path, digest)

    def open_write(self, path, expect, size, mode, mtime_ns):
        return _SyncWrite(self, path, expect, size, mode, mtime_ns)

    def delete(self, path, expect):
        """Remove a file that is still ``expect``; then its directories that became empty."""
        try:
            fd, name, parts = self._parent(path)
            os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return {}  # gone already
        aside = _sync_set_aside(fd, name, expect)
        if aside is not None:
            os.unlink(aside, dir_fd=fd)
        self._changed(parts[:-1])
        self._remove_empty(parts[:-1])
        return {}

    def chmod(self, path, mode, expect):
        """Set the permissions of a file that is still ``expect``."""
        fd, name, parts = self._parent(path)
        _sync_expect(fd, name, expect)
        file_fd = os.open(name, _SYNC_READ_FLAGS, dir_fd=fd)
        try:
            os.fchmod(file_fd, mode & 0o777)
            st = os.fstat(file_fd)
        finally:
            os.close(file_fd)
        self._changed(parts[:-1], name)
        _sync_check_same(st, expect)
        return _sync_written(st)

    def rename(self, path, to, expect):
        """Move a file that is still ``expect`` to ``to``, which must not exist."""
        fd, name, parts = self._parent(path)
        to_fd, to_name, to_parts = self._parent(to, create=True)
        _sync_expect(fd, name, expect)
        _sync_move_noreplace(fd, name, to_name, to_fd)
        self._changed(parts[:-1])
        self._changed(to_parts[:-1])
        st = os.stat(to_name, dir_fd=to_fd, follow_symlinks=False)
        _sync_check_same(st, expect)
        return _sync_written(st)

    def _changed(self, parts, name=None):
        """Note a change to flush: a file written (``name`` in directory ``parts``), or an
        entry added or removed in that directory."""
        if self._dirty is not None:
            self._dirty.add((tuple(parts), name))
            if len(self._dirty) > SYNC_FSYNC_MAX:
                self._dirty = None

    def flush(self):
        """Make every change so far durable: a few files and their directories one fsync at a
        time; many, with one syncfs of the file system (cheaper than an fsync per file, but
        it also waits for everyone else's writes there)."""
        dirty, self._dirty = self._dirty, set()
        if dirty is not None:
            try:
                for parts, name in sorted(dirty, key=lambda d: d[1] is None):
                    fd = self.dir_fd(list(parts))
                    if name is None:
                        os.fsync(fd)
                        continue
                    try:
                        file_fd = os.open(name, _SYNC_READ_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        continue  # replaced or removed since: nothing of ours to keep
                    try:
                        os.fsync(file_fd)
                    finally:
                        os.close(file_fd)
                return {}
            except (OSError, ValueError):
                pass  # fall back on the whole file system
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(self._root_fd) == 0:
                return {}
        except (OSError, AttributeError):
            pass
        os.sync()
        return {}

    def _remove_empty(self, parts):
        while parts:
            fd = self.dir_fd(parts[:-1])
            try:
                os.rmdir(parts[-1], dir_fd=fd)
            except OSError:
                return
            self._forget_dir("/".join(parts))
            if self._dirty is not None:
                self._dirty.discard((tuple(parts), None))
            parts = parts[:-1]
            self._changed(parts)


def _sync_environment(names):
    if "pyvenv.cfg" in names:
        return SYNC_PRUNED_VENV
    if "conda-meta" in names:
        return SYNC_PRUNED_CONDA
    return None


def _sync_error(e):
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def _sync_temp(name, suffix="tmp"):
    stem = name.encode("utf-8")[:200].decode("utf-8", "ignore")
    return f".{stem}.jcs-sync-{os.urandom(6).hex()}.{suffix}"


def _sync_check_same(st, expect):
    """After an operation that sets ctime: the rest must still be what the caller saw."""
    if [st.st_size, st.st_mtime_ns, st.st_ino] != list(expect)[:3]:
        raise SyncChanged("it changed on this side during the sync")


def _sync_written(st):
    """What the caller records about a file this side just wrote, renamed or chmodded. Its
    ctime is "now"; a later change of the same size would set a new mtime, so the signature
    can be trusted unless that mtime is itself recent."""
    return {
        "sig": _sync_sig(st),
        "mode": _sync_mode(st),
        "trusted": st.st_mtime_ns < time.time_ns() - SYNC_RACY_NS,
    }


def _sync_expect(fd, name, expect):
    """Raise SyncChanged unless ``name`` is what the caller saw (``expect``)."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        if expect is None:
            return None
        raise SyncChanged("it was deleted on this side during the sync") from None
    if expect is None:
        raise SyncChanged("it was created on this side during the sync")
    if not stat.S_ISREG(st.st_mode) or _sync_sig(st) != list(expect):
        raise SyncChanged("it changed on this side during the sync")
    return st


def _sync_renameat2():
    """Linux's renameat2, for RENAME_NOREPLACE in one system call (None elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        function.argtypes += [ctypes.c_uint]
        return function, ctypes.get_errno
    except (OSError, AttributeError):
        return None


_SYNC_RENAMEAT2 = _sync_renameat2()


def _sync_start_writeback():
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing a file out without
    waiting, so that the flush at the end of a sync has little left to do (None elsewhere)."""
    try:
        import ctypes

        function = ctypes.CDLL(None, use_errno=True).sync_file_range
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return lambda fd: function(fd, 0, 0, 2)
    except (OSError, AttributeError):
        return None


_SYNC_WRITEBACK = _sync_start_writeback()


def _sync_move_noreplace(fd, name, to, to_fd=None):
    """Rename ``name`` to ``to``, failing with SyncChanged if ``to`` exists: renameat2 with
    RENAME_NOREPLACE where the system and file system have it, else a hard link then an
    unlink (also atomic), else (no hard links either) a check then a rename."""
    to_fd = fd if to_fd is None else to_fd
    if _SYNC_RENAMEAT2 is not None:
        renameat2, get_errno = _SYNC_RENAMEAT2
        if renameat2(fd, os.fsencode(name), to_fd, os.fsencode(to), 1) == 0:
            return
        code = get_errno()
        if code == errno.EEXIST:
            raise SyncChanged("it was created on this side during the sync")
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), name)
    try:
        os.link(name, to, src_dir_fd=fd, dst_dir_fd=to_fd, follow_symlinks=False)
    except FileExistsError:
        raise SyncChanged("it was created on this side during the sync") from None
    except OSError as e:
        if e.errno not in _SYNC_NO_HARD_LINKS:
            raise
        try:
            os.stat(to, dir_fd=to_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(name, to, src_dir_fd=fd, dst_dir_fd=to_fd)
            return
        raise SyncChanged("it was created on this side during the sync") from None
    os.unlink(name, dir_fd=fd)


def _sync_set_aside(fd, name, expect):
    """Rename ``name`` to a temporary name if it is still ``expect`` (None: it must not exist)
    and answer that name; put it back and raise SyncChanged if it changed meanwhile."""
    st = _sync_expect(fd, name, expect)
    if st is None:
        return None
    aside = _sync_temp(name, "old")
    os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
    moved = os.stat(aside, dir_fd=fd, follow_symlinks=False)
    # A rename sets ctime; anything else about it must be as expected.
    if (moved.st_size, moved.st_mtime_ns, moved.st_ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
        _sync_restore(fd, aside, name)
        raise SyncChanged("it changed on this side during the sync")
    return aside


def _sync_restore(fd, aside, name):
    """Put a file set aside back under its name, or, if that name was taken meanwhile, next to
    it as a visible copy: a user's file is never dropped."""
    try:
        _sync_move_noreplace(fd, aside, name)
    except SyncChanged:
        stem, _, ext = name.rpartition(".")
        kept = f"{stem} (kept {os.urandom(3).hex()}).{ext}" if stem else f"{name} (kept)"
        _sync_move_noreplace(fd, aside, kept)


class _SyncRead:
    """Reads one file of the tree; ``finish`` tells whether it stayed the same while read, and
    its hash (unless ``digest`` is False: a copy is hashed by its writer, once)."""

    def __init__(self, tree, path, digest=True):
        fd, name, _ = tree._parent(path)
        self.since = time.time_ns()
        self.fd = os.open(name, _SYNC_READ_FLAGS, dir_fd=fd)
        try:
            self.before = os.fstat(self.fd)
            if not stat.S_ISREG(self.before.st_mode):
                raise SyncChanged("it is no longer a regular file")
        except BaseException:
            os.close(self.fd)
            raise
        self.size = self.before.st_size
        self.mode = _sync_mode(self.before)
        self.mtime_ns = self.before.st_mtime_ns
        self.done = 0
        self.digest = hashlib.sha256() if digest else None

    def read(self, n):
        """Up to ``n`` bytes; b"" at the end (reading stops at the size it had when opened)."""
        n = min(n, self.size - self.done)
        if n <= 0:
            return b""
        data = os.read(self.fd, n)
        self.done += len(data)
        if self.digest is not None:
            self.digest.update(data)
        return data

    def finish(self):
        """``{"hash", "sig", "mode", "trusted"}``; SyncChanged if it changed while read."""
        after = os.fstat(self.fd)
        if self.done != self.size or _sync_sig(after) != _sync_sig(self.before):
            raise SyncChanged("it changed while it was being read")
        answer = {
            "sig": _sync_sig(after),
            "mode": _sync_mode(after),
            "trusted": after.st_ctime_ns < self.since - SYNC_RACY_NS,
        }
        if self.digest is not None:
            answer["hash"] = self.digest.hexdigest()
        return answer

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _SyncWrite:
    """Writes one file: a temporary file in the target's directory, put in place by finish()."""

    def __init__(self, tree, path, expect, size, mode, mtime_ns):
        if not isinstance(size, int) or size < 0 or not isinstance(mtime_ns, int):
            raise ValueError("invalid size or mtime")
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ValueError("invalid mode")
        self.tree = tree
        self.dir_fd, self.name, self.parts = tree._parent(path, create=True)
        self.expect = expect
        self.size, self.mode, self.mtime_ns = size, mode, mtime_ns
        self.tmp = _sync_temp(self.name)
        # Created with its final mode when the umask leaves that alone (else fchmod'ed).
        self.chmod = bool(mode & _SYNC_UMASK)
        self.fd = os.open(
            self.tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600 if self.chmod else mode,
            dir_fd=self.dir_fd,
        )
        self.done = 0
        self.digest = hashlib.sha256()

    def write(self, data):
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.done += len(data)
        self.digest.update(data)

    def abort(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            self.tmp = ""

    def finish(self, source_hash=None):
        """Put the file in place if it is complete (and its hash is ``source_hash``, when
        given): ``{"hash", "sig", "mode", "trusted"}``."""
        try:
            digest = self.digest.hexdigest()
            if self.done != self.size:
                raise SyncChanged(f"only {self.done} of {self.size} bytes arrived")
            if source_hash is not None and source_hash != digest:
                raise SyncChanged("what arrived is not what was sent")
            if self.chmod:
                os.fchmod(self.fd, self.mode)
            os.utime(self.fd, ns=(self.mtime_ns, self.mtime_ns))
            if self.size >= SYNC_CHUNK and _SYNC_WRITEBACK is not None:
                _SYNC_WRITEBACK(self.fd)
            written = os.fstat(self.fd)
            os.close(self.fd)
            self.fd = -1
            # A new file needs no check first: putting it in place fails if one appeared.
            aside = None
            if self.expect is not None:
                aside = _sync_set_aside(self.dir_fd, self.name, self.expect)
            try:
                _sync_move_noreplace(self.dir_fd, self.tmp, self.name)
            except BaseException:
                if aside is not None:
                    _sync_restore(self.dir_fd, aside, self.name)
                raise
            self.tmp = ""
            if aside is not None:
                os.unlink(aside, dir_fd=self.dir_fd)
            self.tree._changed(self.parts[:-1], self.name)
            self.tree._changed(self.parts[:-1])
        except BaseException:
            self.abort()
            raise
        st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        _sync_check_same(st, [written.st_size, written.st_mtime_ns, written.st_ino])
        return dict(_sync_written(st), hash=digest)


# --- sync: the session process -------------------------------------------------------------


class _SyncChannel:
    """Framed messages in from a buffered binary reader, out to a file descriptor (see the
    protocol above). Answers are buffered and written out whenever no request is waiting to be
    read. (The reader is stdin's own buffer: the bootstrap read the agent's source through it,
    and it may hold the first requests already.)"""

    def __init__(self, reader, wfd):
        self.reader, self.wfd = reader, wfd
        self.buf = bytearray()
        self.pos = 0
        self.out = bytearray()

    def _fill(self):
        if self.out and not select.select([self.reader], [], [], 0)[0]:
            self.flush()
        data = self.reader.read1(SYNC_CHUNK)
        if not data:
            raise EOFError
        if self.pos:
            del self.buf[: self.pos]
            self.pos = 0
        self.buf += data

    def read_message(self):
        """The next message's JSON line as a dict; None at the end of input."""
        while True:
            end = self.buf.find(b"\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos : end])
                self.pos = end + 1
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("a message must be a JSON object")
                return message
            try:
                self._fill()
            except EOFError:
                return None

    def read_some(self, n):
        """Up to ``n`` payload bytes (at least one)."""
        if self.pos >= len(self.buf):
            self._fill()
        chunk = bytes(self.buf[self.pos : self.pos + n])
        self.pos += len(chunk)
        return chunk

    def send(self, message, payload=b""):
        self.out += json.dumps(message, separators=(",", ":")).encode() + b"\n"
        self.send_raw(payload)

    def send_raw(self, data):
        self.out += data
        if len(self.out) >= SYNC_CHUNK:
            self.flush()

    def flush(self):
        view = memoryview(self.out)
        while view:
            view = view[os.write(self.wfd, view) :]
        self.out = bytearray()


def _sync_failure(e):
    return {"ok": False, "error": _sync_error(e), "changed": isinstance(e, SyncChanged)}


def _sync_serve_put(tree, request, channel):
    size = request.get("size")
    if not isinstance(size, int) or size < 0:
        raise EOFError  # the framing is lost: end the session
    writer = None
    error: Exception | None = None
    try:
        writer = tree.open_write(
            request.get("path"),
            request.get("expect"),
            size,
            request.get("mode"),
            request.get("mtime_ns"),
        )
    except Exception as e:
        error = e
    remaining = size
    try:
        while remaining:
            chunk = channel.read_some(min(remaining, SYNC_CHUNK))
            remaining -= len(chunk)
            if writer is not None:
                try:
                    writer.write(chunk)
                except Exception as e:
                    writer.abort()
                    writer, error = None, e
        trailer = channel.read_message()
        if trailer is None:
            raise EOFError
    except BaseException:
        # The client went away mid-file: no temporary file stays behind.
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        if trailer.get("ok"):
            try:
                channel.send(dict(writer.finish(trailer.get("hash")), ok=True))
                return
            except Exception as e:
                error = e
        else:
            writer.abort()
            error = SyncChanged(str(trailer.get("error") or "the source changed"))
    channel.send(_sync_failure(error))


def _sync_serve_get(tree, request, channel):
    try:
        reader = tree.open_read(request.get("path"), digest=False)
    except Exception as e:
        channel.send(_sync_failure(e))
        return
    try:
        size = reader.size
        channel.send({"ok": True, "size": size, "mode": reader.mode, "mtime_ns": reader.mtime_ns})
        sent = 0
        error: Exception | None = None
        while sent < size:
            try:
                chunk = reader.read(min(SYNC_CHUNK, size - sent))
            except OSError as e:
                chunk, error = b"", e
            if not chunk:
                # The promised size must still arrive: pad, and say it is not good.
                error = error or SyncChanged("it shrank while it was being read")
                while sent < size:
                    pad = min(SYNC_CHUNK, size - sent)
                    channel.send_raw(bytes(pad))
                    sent += pad
                break
            channel.send_raw(chunk)
            sent += len(chunk)
        if error is None:
            try:
                channel.send(dict(reader.finish(), ok=True))
                return
            except (OSError, SyncChanged) as e:
                error = e
        channel.send(_sync_failure(error))
    finally:
        reader.close()


def _sync_scan_answer(tree, request, last):
    """A scan, whole, or as the changes since the scan answered last (when the client says it
    has that one, by its token, and asks with the same parameters)."""
    key = json.dumps(
        [request.get(k) for k in ("path", "excludes", "server_only", "max_size")], sort_keys=True
    )
    result = tree.scan(
        request.get("path") or "",
        request.get("excludes") or (),
        request.get("server_only") or (),
        request.get("max_size"),
    )
    files = {entry[0]: entry for entry in result["files"]}
    token = os.urandom(8).hex()
    since = request.get("since")
    if since and last.get("token") == since and last.get("key") == key:
        previous = last["files"]
        result["since"] = since
        result["changed"] = [e for p, e in files.items() if previous.get(p) != e]
        result["removed"] = [p for p in previous if p not in files]
        del result["files"]
    last.update(token=token, key=key, files=files)
    result["token"] = token
    return result


def sync_session(reader, wfd):
    """Serve one sync client (requests from ``reader``, answers to ``wfd``) until it closes
    its end."""
    channel = _SyncChannel(reader, wfd)
    tree = None
    last_scan: dict = {}  # what the last scan answered, for the next one to send only changes
    try:
        while True:
            request = channel.read_message()
            if request is None:
                break
            op = request.get("op")
            try:
                if op == "put":
                    _sync_serve_put(tree, request, channel)
                    continue
                if op == "get":
                    _sync_serve_get(tree, request, channel)
                    continue
                if op == "open":
                    if tree is not None:
                        tree.close()
                    tree = SyncTree(request.get("root") or "~", create=True)
                    last_scan.clear()
                    answer = {"root": tree.root, "pid": os.getpid()}
                    if request.get("marker"):
                        answer["tree_id"] = tree.tree_id()
                elif tree is None:
                    raise ValueError("no tree is open")
                elif op in ("scan", "hash"):
                    if op == "scan":
                        result = _sync_scan_answer(tree, request, last_scan)
                    else:
                        result = tree.hash(list(request.get("paths") or ()))
                    payload = json.dumps(result, separators=(",", ":")).encode()
                    channel.send({"ok": True, "size": len(payload)}, payload)
                    continue
                elif op == "delete":
                    answer = tree.delete(request.get("path"), request.get("expect"))
                elif op == "chmod":
                    answer = tree.chmod(
                        request.get("path"), request.get("mode"), request.get("expect")
                    )
                elif op == "rename":
                    answer = tree.rename(
                        request.get("path"), request.get("to"), request.get("expect")
                    )
                elif op == "flush":
                    answer = tree.flush()
                else:
                    raise ValueError(f"unknown operation {op!r}")
                channel.send(dict(answer, ok=True))
            except EOFError:
                raise
            except Exception as e:
                channel.send(_sync_failure(e))
    except EOFError:
        pass
    finally:
        with contextlib.suppress(OSError):
            channel.flush()
        if tree is not None:
            tree.close()


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
    "terminal_start": terminal_start,
    "terminal_list": terminal_list,
    "terminal_connect": terminal_connect,
    "terminal_kill": terminal_kill,
    "set_environment": set_environment,
    "end_processes": end_processes,
    "workspace_prepare": workspace_prepare,
    "workspace_remove": workspace_remove,
    "metrics": metrics,
    "container_pull": container_pull,
}


#: Where a long method reports progress (the client shows it); set for each request.
_PROGRESS: dict = {"report": lambda text: None}


def report_progress(text):
    _PROGRESS["report"](text)


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
            _PROGRESS["report"] = lambda text, rid=request_id: send({"id": rid, "progress": text})
            send({"id": request_id, "result": method(request.get("params") or {})})
        except Exception as e:
            send({"id": request_id, "error": {"type": type(e).__name__, "message": str(e)}})


if __name__ == "__main__":
    if sys.argv[1:] == ["sync-session"]:  # file sync's own process (see "sync" above)
        sync_session(sys.stdin.buffer, sys.stdout.fileno())
    else:
        serve(sys.stdin, sys.stdout)
