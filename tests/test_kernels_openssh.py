"""Remote kernels on a machine reached through OpenSSH's own sshd (on 127.0.0.1, with its own
config, host key and authorized keys), as on-prem hosts and cloud VMs are."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from jupyter_compute_servers.kernels.runtime import KernelRuntime, set_server_runtime
from jupyter_compute_servers.models import State
from jupyter_compute_servers.ssh import KeyStore
from jupyter_compute_servers.ssh_endpoint import SSHEndpoint

from .composition import services_for
from .kernel_helpers import execute, process_alive, run_counter, until_iopub_live, wait_until
from .sshd import OpenSSHHost, session_daemons, signal_all, stalled_sessions, start_sshd


@pytest.fixture
def sshd_host(tmp_path: Path):
    """OpenSSH's sshd accepting the key of compute server 1, and that server's endpoint."""
    keys = KeyStore(tmp_path / "keys")
    sshd = start_sshd(tmp_path, keys.ensure(1))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    endpoint = SSHEndpoint(
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.username,
        host_key=sshd.host_key,
        workspace=str(workspace),
        python=sys.executable,
        runtime_dir=str(tmp_path / "remote-runtime"),
    )
    yield tmp_path, keys, endpoint
    sshd.process.terminate()
    sshd.process.wait()


@contextlib.asynccontextmanager
async def openssh_host(tmp_path: Path, keys: KeyStore, endpoint: SSHEndpoint, **settings: Any):
    """A running compute server on that host, and this process set up as a Jupyter server
    would be: (manager, kernel spec manager). ``settings``: the extension's, for the test."""
    cloud = OpenSSHHost(data_dir=str(tmp_path / "cloud"))
    cloud.endpoint = endpoint
    services = services_for(tmp_path, {"openssh": cloud}, **settings)
    manager = services.manager
    root = tmp_path / "root"
    root.mkdir()
    set_server_runtime(KernelRuntime(manager, asyncio.get_running_loop(), str(root)))
    try:
        server = manager.create_server({"name": "lab-host", "cloud": "openssh"})
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        assert manager.get_server(server.id).state is State.RUNNING
        await wait_until(lambda: manager.get_server(server.id).kernel_specs)
        yield manager, KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    finally:
        set_server_runtime(None)
        await services.close()


async def test_a_kernel_over_openssh_runs_interrupts_restarts_and_leaves_nothing(sshd_host):
    async with openssh_host(*sshd_host) as (manager, specs):
        await run_kernel_through_its_paces(manager, specs, Path(sshd_host[2].workspace))


async def run_kernel_through_its_paces(manager, specs, workspace):
    kernel_manager = AsyncKernelManager(kernel_name="compute-1-python3", kernel_spec_manager=specs)
    await kernel_manager.start_kernel()
    client = kernel_manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        _, out = await execute(client, "import os; print(os.getcwd())")
        assert out.strip() == str(workspace)

        running = asyncio.ensure_future(execute(client, "import time; time.sleep(60)"))
        await asyncio.sleep(1.5)
        await kernel_manager.interrupt_kernel()
        reply, _ = await asyncio.wait_for(running, 20)
        assert reply["content"]["ename"] == "KeyboardInterrupt"

        # Dropping the SSH connection (sshd hangs the session up) leaves the kernel running.
        pid = kernel_manager.provisioner.remote_kernel["pid"]
        await execute(client, "kept = 'yes'")
        (await manager.connection(1)).connection.abort()
        await asyncio.sleep(1)
        assert process_alive(pid)
        assert await kernel_manager.provisioner.poll() is None
        await until_iopub_live(client)
        _, out = await execute(client, "print(kept)")
        assert out.strip() == "yes"

        await kernel_manager.restart_kernel()
        assert not process_alive(pid)
        pid = kernel_manager.provisioner.remote_kernel["pid"]
        await until_iopub_live(client)
        _, out = await execute(client, "print('again')")
        assert out.strip() == "again"
    finally:
        client.stop_channels()
        await kernel_manager.shutdown_kernel()
    assert not process_alive(pid)
    assert kernel_manager.provisioner is None or kernel_manager.provisioner.tunnel is None
    agent = await manager.ssh.agent(1, await manager.endpoint(1))
    endpoint = await manager.endpoint(1)
    listed = await agent.call("kernel_list", runtime_dir=endpoint.runtime_dir)
    assert listed["kernels"] == []


@pytest.mark.parametrize("fault", ["cut", "stall past the keep-alive", "kill -9 of its sshd"])
async def test_no_output_is_lost_over_openssh(sshd_host, fault):
    """The faults of test_kernels_faults.py, with OpenSSH's sshd as the server: every line of
    a cell's output arrives once, in order, and the kernel's state is intact."""
    tmp_path, keys, endpoint = sshd_host
    listener = int((tmp_path / "sshd.pid").read_text())
    settings = {"ssh_keepalive_interval": 1.0, "ssh_keepalive_count_max": 2}
    async with openssh_host(tmp_path, keys, endpoint, **settings) as (manager, specs):
        kernel_manager = AsyncKernelManager(
            kernel_name="compute-1-python3", kernel_spec_manager=specs
        )
        await kernel_manager.start_kernel()
        client = kernel_manager.client()
        client.start_channels()

        async def inject() -> None:
            before = (await manager.connection(1)).connection
            daemons = session_daemons(listener)
            assert daemons
            if fault == "cut":
                for _ in range(2):
                    cut = await asyncio.create_subprocess_exec(
                        "ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{endpoint.port}"
                    )
                    assert await cut.wait() == 0
                    await asyncio.sleep(1.0)
            elif fault == "stall past the keep-alive":
                with stalled_sessions(listener):
                    await wait_until(lambda: before.is_closed(), timeout=30)
                    await asyncio.sleep(2)
            else:
                signal_all(daemons, signal.SIGKILL)
                await asyncio.sleep(1.0)

        try:
            await client.wait_for_ready(timeout=30)
            lines = await run_counter(client, 400, 0.01, inject)
            assert lines == [str(i) for i in range(400)]  # each once, in order
            iopub = kernel_manager.provisioner.iopub
            assert iopub.stats["connects"] >= 2
            assert iopub.stats["lost_messages"] == 0
            _, out = await execute(client, "print(i)", timeout=60)
            assert out.strip() == "399"
        finally:
            client.stop_channels()
            await kernel_manager.shutdown_kernel(now=True)
