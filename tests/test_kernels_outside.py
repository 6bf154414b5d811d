"""The same remote kernels outside the Jupyter server: ``jupyter execute``, nbclient from a
script, the jupyter_kernel_test conformance suite, a kernel taken over by another process, and
what a Jupyter server leaves running when it stops (cleanly, or not)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import unittest
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from jupyter_compute_servers.clouds.local import processes_with_token
from jupyter_compute_servers.kernels.runtime import close_standalone_runtimes

from .conformance import IPythonKernelConformance
from .jupyter_process import JupyterProcess
from .kernel_helpers import process_alive
from .test_cli import cli
from .test_recovery import db_cloud_data


def kernel_pids(data_dir: Path, server_id: int) -> list[int]:
    """Kernel processes running in a local server's sandbox."""
    token = db_cloud_data(data_dir, server_id)["token"]
    pids = []
    for pid in processes_with_token(token):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel_launcher" in cmdline and process_alive(pid):
            pids.append(pid)
    return pids


@pytest.fixture
def jupyter_env(tmp_path, monkeypatch):
    """Jupyter's paths for this test only (kernel specs land in its data dir)."""
    for name in ("data", "config", "runtime"):
        path = tmp_path / f"jupyter-{name}"
        path.mkdir()
        monkeypatch.setenv(f"JUPYTER_{name.upper()}_DIR", str(path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return tmp_path


@pytest.fixture
def started_server(jupyter_env):
    """A running local compute server, made with the CLI: (data_dir, kernel spec name)."""
    data_dir = jupyter_env / "compute-servers"
    cli(data_dir, "create", "box")
    cli(data_dir, "start", "box")
    spec = jupyter_env / "jupyter-data" / "kernels" / "compute-1-python3" / "kernel.json"
    assert spec.is_file(), "the CLI publishes kernel specs too"
    yield data_dir, "compute-1-python3"
    close_standalone_runtimes()
    cli(data_dir, "stop", "box", check=False)


JUPYTER_EXECUTE = "from nbclient.cli import main; main()"


def notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return nb


def stdout_of(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_jupyter_execute_runs_a_notebook_on_the_server(started_server, tmp_path):
    data_dir, kernel = started_server
    root = tmp_path / "root"
    (root / "analysis").mkdir(parents=True)
    path = root / "analysis" / "report.ipynb"
    nbformat.write(notebook("import os; print(os.getcwd())", "print(sum(range(10)))"), path)
    result = subprocess.run(
        # `jupyter execute`, in this interpreter
        [sys.executable, "-c", JUPYTER_EXECUTE, f"--kernel_name={kernel}", "--inplace", str(path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    cells = nbformat.read(path, as_version=4).cells
    assert stdout_of(cells[0]).strip() == str(data_dir / "local" / "1" / "disk" / "analysis")
    assert stdout_of(cells[1]).strip() == "45"
    assert kernel_pids(data_dir, 1) == []  # it shut its kernel down on the server


def test_nbclient_runs_a_notebook_from_a_script(started_server, tmp_path, monkeypatch):
    data_dir, kernel = started_server
    monkeypatch.chdir(tmp_path)
    nb = notebook("import socket, os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))")
    NotebookClient(nb, kernel_name=kernel, timeout=60).execute()
    assert stdout_of(nb.cells[0]).strip() == ""  # a local server without GPUs hides them all
    assert kernel_pids(data_dir, 1) == []


def test_the_remote_kernel_passes_the_conformance_suite(started_server):
    _, kernel = started_server
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(
        IPythonKernelConformance.for_kernel(kernel)
    )
    report = io.StringIO()
    result = unittest.TextTestRunner(stream=report, verbosity=2).run(suite)
    assert result.wasSuccessful(), report.getvalue()
    # Only the history "range" sub-test is skipped: see supported_history_operations.
    assert len(result.skipped) <= 1, report.getvalue()
    assert result.testsRun == 15, report.getvalue()


TAKE_OVER = """
import asyncio, json, sys
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_compute_servers.kernels.provisioner import ComputeServerProvisioner

async def main():
    info = json.load(open(sys.argv[1]))
    provisioner = ComputeServerProvisioner(kernel_id=info["kernel_id"])
    await provisioner.load_provisioner_info(info)
    assert await provisioner.poll() is None
    client = AsyncKernelClient()
    client.load_connection_info(provisioner.connection_info)
    client.start_channels()
    await client.wait_for_ready(timeout=30)
    printed = []
    await client.execute_interactive(
        "print(secret * 2)",
        output_hook=lambda m: printed.append(m["content"].get("text", "")),
        timeout=30,
    )
    client.stop_channels()
    await provisioner.kill()
    code = await provisioner.wait()
    await provisioner.cleanup()
    print(json.dumps({"printed": "".join(printed), "exit": code}))

asyncio.run(main())
"""


def test_another_process_can_take_a_kernel_over(started_server, tmp_path):
    _, kernel = started_server

    async def launch() -> AsyncKernelManager:
        manager = AsyncKernelManager(kernel_name=kernel)
        await manager.start_kernel()
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=30)
        await client.execute_interactive("secret = 21", timeout=30)
        client.stop_channels()
        return manager

    manager = asyncio.run(launch())
    pid = manager.provisioner.remote_kernel["pid"]
    info = asyncio.run(manager.provisioner.get_provisioner_info())
    (tmp_path / "info.json").write_text(json.dumps(info))
    assert "key" not in json.dumps(info["remote"])  # the record carries no secret

    result = subprocess.run(
        [sys.executable, "-c", TAKE_OVER, str(tmp_path / "info.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["printed"].strip() == "42"  # the same kernel, its state intact
    assert answer["exit"] is not None
    assert not process_alive(pid)
    assert asyncio.run(manager.is_alive()) is False
    asyncio.run(manager.shutdown_kernel(now=True))


def jupyter_kernel(jupyter: JupyterProcess, server_id: int) -> tuple[str, int]:
    code, kernel = jupyter.request("POST", "api/kernels", {"name": f"compute-{server_id}-python3"})
    assert code == 201, kernel
    code, listed = jupyter.call("GET", f"servers/{server_id}/kernels")
    assert code == 200
    (remote,) = listed["kernels"]
    assert remote["kernel_id"] == kernel["id"] and remote["attached"] is True
    return kernel["id"], remote["pid"]


def start_server(jupyter: JupyterProcess) -> int:
    code, server = jupyter.call("POST", "servers", {"name": "box"})
    assert code == 201
    jupyter.call("POST", f"servers/{server['id']}/actions/start")
    assert jupyter.wait_settled(server["id"])["state"] == "running"
    return int(server["id"])


class JupyterWithServer:
    """A Jupyter server process with a running local compute server "box" and one remote
    kernel on it; the compute server is stopped at the end whatever happened."""

    def __init__(self, jupyter_env: Path, *args: str) -> None:
        self.data_dir, self.root = jupyter_env / "data", jupyter_env / "root"
        self.data_dir.mkdir()
        self.root.mkdir()
        self.args = args

    def __enter__(self) -> JupyterWithServer:
        self.jupyter = JupyterProcess(self.data_dir, self.root, *self.args)
        self.server_id = start_server(self.jupyter)
        self.kernel_id, self.pid = jupyter_kernel(self.jupyter, self.server_id)
        return self

    def restart(self) -> JupyterProcess:
        self.jupyter = JupyterProcess(self.data_dir, self.root, *self.args)
        return self.jupyter

    def __exit__(self, *exc: object) -> None:
        self.jupyter.stop()
        cli(self.data_dir, "stop", "box", check=False)


def test_a_clean_jupyter_shutdown_shuts_its_remote_kernels_down(jupyter_env):
    with JupyterWithServer(jupyter_env) as setup:
        setup.jupyter.stop()  # SIGTERM: a clean shutdown
        assert setup.jupyter.process.returncode == 0
        assert not process_alive(setup.pid)
        assert kernel_pids(setup.data_dir, setup.server_id) == []


def test_kernels_left_running_are_listed_as_orphans_and_can_be_shut_down(jupyter_env):
    # With adoption off: else the next Jupyter takes them over (test_kernels_adoption.py).
    with JupyterWithServer(jupyter_env, "--ComputeServersApp.adopt_orphan_kernels=False") as setup:
        setup.jupyter.kill()  # kill -9: nobody shuts anything down
        assert process_alive(setup.pid)  # detached: it outlives its Jupyter and its channel

        jupyter = setup.restart()
        code, listed = jupyter.call("GET", f"servers/{setup.server_id}/kernels")
        assert code == 200
        (orphan,) = listed["kernels"]
        assert orphan["kernel_id"] == setup.kernel_id and orphan["attached"] is False
        code, _ = jupyter.call("DELETE", f"servers/{setup.server_id}/kernels/{setup.kernel_id}")
        assert code == 204
        deadline = time.monotonic() + 10
        while process_alive(setup.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(setup.pid)
        code, listed = jupyter.call("GET", f"servers/{setup.server_id}/kernels")
        assert listed["kernels"] == []


def test_kernels_can_be_kept_running_across_a_clean_shutdown(jupyter_env):
    with JupyterWithServer(
        jupyter_env, "--ComputeServersApp.shutdown_kernels_on_exit=False"
    ) as setup:
        setup.jupyter.stop()
        assert setup.jupyter.process.returncode == 0  # a clean, prompt exit
        assert process_alive(setup.pid)
    assert not process_alive(setup.pid)  # stopping the server ends it
