"""``jupyter compute-servers images test IMAGE[:TAG]``: prove an image version works.

It creates a throw-away server with the image, starts it, starts a kernel there, imports what
the catalogue says the image offers, checks a GPU is visible when the image needs one, then
stops, deprovisions and deletes the server, whatever happened. With ``--mark-tested`` a pass is
recorded in the local override file, so the version shows in the picker without "Advanced".
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from ..errors import ComputeServersError, ValidationError
from ..kernels.runtime import KernelRuntime, server_runtime, set_server_runtime
from ..kernels.specs import KernelSpecPublisher, spec_name
from ..manager import ComputeServerManager
from ..models import State

GPU_CHECK = (
    "import subprocess\n"
    "listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True)\n"
    "assert listed.returncode == 0 and 'GPU' in listed.stdout, 'no GPU visible: ' + "
    "(listed.stderr or listed.stdout)\n"
    "print(listed.stdout.strip())\n"
)


def parse_reference(reference: str, manager: ComputeServerManager) -> tuple[str, str]:
    image_id, _, tag = reference.partition(":")
    image = manager.images.get(image_id)
    if not tag:
        tested = [v["tag"] for v in image["versions"] if v.get("tested")]
        tag = (tested or [image["versions"][0]["tag"]])[0]
    manager.images.version(image_id, tag)
    return image_id, tag


def _config_for(manager: ComputeServerManager, cloud_name: str, image: dict[str, Any]) -> Any:
    cloud = manager.clouds.get(cloud_name)
    if cloud is None:
        raise ValidationError(f"Cloud {cloud_name!r} is not enabled.", field="cloud")
    config: dict[str, Any] = {"image": image["id"]}
    if image.get("min_disk_gb") and "disk_gb" in cloud.config_fields:
        config["disk_gb"] = max(image["min_disk_gb"], cloud.defaults().get("disk_gb") or 0)
    if image.get("gpu") == "required":
        gpus = cloud.offerings().get("gpus") or []
        if not gpus:
            raise ValidationError(
                f"{image['label']} needs a GPU and the {cloud_name} cloud offers none here.",
                field="cloud",
            )
        config["gpu"] = {"type": gpus[0]["type"], "count": 1}
    if image.get("gpu") == "none":
        config["gpu"] = None
    return config


async def _run(
    kernel_manager: AsyncKernelManager, code: str, report: Callable[[str], None]
) -> None:
    client = kernel_manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        printed: list[str] = []

        def on_output(message: dict[str, Any]) -> None:
            content = message["content"]
            if message["msg_type"] == "stream":
                printed.append(content["text"])
            elif message["msg_type"] == "error":
                printed.append(f"{content['ename']}: {content['evalue']}")

        reply = await client.execute_interactive(code, output_hook=on_output, timeout=600)
        for line in "".join(printed).splitlines():
            report(f"    {line}")
        if reply["content"]["status"] != "ok":
            content = reply["content"]
            raise ComputeServersError(f"{content.get('ename')}: {content.get('evalue')}")
    finally:
        client.stop_channels()


async def smoke_test_image(
    manager: ComputeServerManager,
    kernel_specs: KernelSpecPublisher,
    kernel_specs_dir: str,
    reference: str,
    cloud_name: str,
    *,
    mark_tested: bool = False,
    report: Callable[[str], None] = print,
) -> bool:
    image_id, tag = parse_reference(reference, manager)
    image = manager.images.get(image_id)
    config = _config_for(manager, cloud_name, image)
    config["image_tag"] = tag
    name = f"image-test-{image_id}-{secrets.token_hex(3)}"[:63]
    server = manager.create_server({"name": name, "cloud": cloud_name, "config": config})
    report(f"Testing {image_id}:{tag} on a new {cloud_name} server {name}")
    passed = False
    # The kernel's provisioner must use this manager (its catalogue, its settings), not a
    # standalone one built from the configuration files: as the Jupyter server does.
    previous_runtime = server_runtime()
    set_server_runtime(KernelRuntime(manager, asyncio.get_running_loop(), os.getcwd()))
    # The step under way, so that a failure says which one failed.
    step = "start the server (and pull the image)"
    try:
        report(f"  {step}")
        manager.request_action(server.id, "start")
        await manager.wait_for_action(server.id)
        started = manager.get_server(server.id)
        if started.state is not State.RUNNING:
            raise ComputeServersError(f"the server did not start: {started.state_reason}")
        step = "list the image's kernels"
        report(f"  {step}")
        await kernel_specs.settle()
        kernels = manager.get_server(server.id).kernel_specs or {}
        if not kernels:
            raise ComputeServersError(
                "the image offers no Jupyter kernel (`jupyter kernelspec list` there lists none)"
            )
        kernel = "python3" if "python3" in kernels else sorted(kernels)[0]
        step = f"start the kernel {kernel}"
        report(f"  {step}")
        kernel_manager = AsyncKernelManager(
            kernel_name=spec_name(server.id, kernel),
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_specs_dir]),
        )
        await kernel_manager.start_kernel()
        try:
            client = kernel_manager.client()
            client.start_channels()
            try:
                await client.wait_for_ready(timeout=120)
            finally:
                client.stop_channels()
            modules = image.get("imports") or []
            if modules:
                step = f"import {', '.join(modules)}"
                report(f"  {step}")
                await _run(kernel_manager, "".join(f"import {m}\n" for m in modules), report)
            if image.get("gpu") == "required":
                step = "see a GPU (nvidia-smi -L)"
                report(f"  {step}")
                await _run(kernel_manager, GPU_CHECK, report)
        finally:
            await kernel_manager.shutdown_kernel(now=True)
        passed = True
        report(f"PASSED {image_id}:{tag}")
    except ComputeServersError as e:
        report(f"FAILED {image_id}:{tag} at the step '{step}': {e.message}")
    except Exception as e:
        report(f"FAILED {image_id}:{tag} at the step '{step}': {type(e).__name__}: {e}")
    finally:
        for action, body, wanted in (
            ("stop", None, lambda state: state is State.RUNNING),
            ("deprovision", {"confirm": True}, lambda state: state is not State.DEPROVISIONED),
        ):
            if wanted(manager.get_server(server.id).state):
                try:
                    manager.request_action(server.id, action, body)
                    await manager.wait_for_action(server.id)
                except ComputeServersError as e:
                    report(f"  clean-up: {action} failed: {e.message}")
        try:
            await manager.delete_server(server.id)
        except ComputeServersError as e:
            report(f"  clean-up: the server {name} is left: {e.message}")
    set_server_runtime(previous_runtime)
    if passed and mark_tested:
        manager.images.mark_tested(image_id, tag)
        report(f"Marked {image_id}:{tag} as tested in {manager.images.tested_where}")
    elif mark_tested:
        report(f"Not marked as tested: {image_id}:{tag} failed a step.")
    return passed
