"""Remote kernels that outlive their Jupyter, taken over by the next one with the same store.

A remote kernel runs detached on its server. When the Jupyter server that launched it dies
(kill -9, a crash, a restart that leaves remote kernels running), the kernel, its state and its
IOPub relay live on there. As the next Jupyter starts, every running server is asked for its
kernels; each whose owner (the ``host:pid`` that launched it) is gone is started again in
Jupyter's own kernel manager *with its own kernel id*: the ``compute-server`` provisioner finds
the id among the runtime's adoptions and tunnels to the kernel instead of launching one. So the
kernel is in ``/api/kernels`` as before, notebooks reconnect to the same id, and the session
database (kept in a file, see ``app.py``) still names it.

The output the kernel published while no Jupyter was there is held until a client subscribes,
then delivered from after the last message the dead Jupyter had acknowledged to the relay.
Until then the kernel is shown ``busy`` (it may be running a cell); a ``kernel_info`` request
sent once output flows brings its real state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ComputeServersError
from ..models import State
from .specs import spec_name

if TYPE_CHECKING:
    from .runtime import KernelRuntime

log = logging.getLogger(__name__)

#: Seconds the kernel_info request that refreshes an adopted kernel's state waits for its reply.
STATE_REFRESH_TIMEOUT = 30.0


async def adopt_orphan_kernels(kernel_manager: Any, runtime: KernelRuntime) -> list[str]:
    """Adopt, into ``kernel_manager`` (Jupyter's), the remote kernels of running servers
    whose Jupyter is gone; answer their ids. A server that does not answer is skipped (its
    kernels are adopted by the next Jupyter that starts, or listed as orphans)."""
    adopted: list[str] = []
    for server in runtime.manager.list_servers():
        if server.state is not State.RUNNING:
            continue
        try:
            orphans = await runtime.orphans(server.id)
        except ComputeServersError as e:
            log.warning("Kernels on %s not adopted: %s", server.name, e.message)
            continue
        for record in orphans:
            kernel_id = record["kernel_id"]
            if kernel_id in kernel_manager:
                continue
            runtime.adoptions[kernel_id] = record
            try:
                await kernel_manager.start_kernel(
                    kernel_id=kernel_id, kernel_name=spec_name(server.id, record["kernel"])
                )
            except Exception as e:
                log.warning("Could not adopt kernel %s on %s: %s", kernel_id, server.name, e)
                continue
            finally:
                runtime.adoptions.pop(kernel_id, None)
            await _hold_output_for_a_client(kernel_manager, runtime, kernel_id)
            adopted.append(kernel_id)
            log.info("Adopted kernel %s on compute server %s", kernel_id, server.name)
    return adopted


async def _hold_output_for_a_client(
    kernel_manager: Any, runtime: KernelRuntime, kernel_id: str
) -> None:
    provisioner = runtime.kernels.get(kernel_id)
    iopub = provisioner.iopub if provisioner is not None else None
    kernel = kernel_manager.get_kernel(kernel_id)
    if iopub is None:
        return
    # Jupyter's activity watcher has subscribed by now: the next subscriber is a client.
    await iopub.arm()
    # "busy": the kernel may be running a cell. It also keeps Jupyter from "nudging" the
    # kernel as a client connects, which would eat the first message held for it.
    kernel.execution_state = "busy"
    asyncio.get_running_loop().create_task(_refresh_state(kernel, iopub))


async def _refresh_state(kernel: Any, iopub: Any) -> None:
    """Once output flows, ask the kernel for its info: the status messages around the reply
    (after everything held, in order) give everyone its real execution state."""
    await iopub.wait_released()
    client = kernel.client()
    client.start_channels(iopub=False, stdin=False, hb=False, control=False)
    try:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.kernel_info(reply=True), STATE_REFRESH_TIMEOUT)
    finally:
        client.stop_channels()
