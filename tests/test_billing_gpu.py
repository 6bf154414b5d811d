"""Idle shutdown and GPU use, end to end: a local server with a GPU (this machine has none, so
both the Jupyter process and the server's agent see the stand-in NVML of tests/fake_nvml,
whose readings the test sets), its agent's NVML utilization read by the default GPU probe."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_billing_api import RATE_CARD, START, Clock, create, start

FAKE_NVML = Path(__file__).parent / "fake_nvml"
GPU = {
    "name": "NVIDIA H200",
    "uuid": "GPU-00000000-0000-0000-0000-000000000001",
    "memory_total": 141 * 2**30,
    "memory_used": 0,
    "utilization": 0,
}


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One stand-in H200, for this process (the local cloud's offerings) and the servers'
    agents (through the environment their SSH servers inherit)."""
    path = tmp_path / "gpus.json"
    path.write_text(json.dumps([GPU]))
    monkeypatch.setenv("FAKE_NVML_GPUS", str(path))
    # A local server's SSH server passes on PYTHONPATH but not FAKE_NVML_GPUS: its pynvml is
    # the stand-in, told where its GPUs are described.
    module_dir = tmp_path / "nvml"
    module_dir.mkdir()
    (module_dir / "pynvml.py").write_text(
        f"import os\nos.environ.setdefault('FAKE_NVML_GPUS', {str(path)!r})\n"
        + (FAKE_NVML / "pynvml.py").read_text()
    )
    spec = importlib.util.spec_from_file_location("pynvml", FAKE_NVML / "pynvml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return path


@pytest.fixture
def jp_server_config(gpus: Path, jp_server_config: dict[str, Any], tmp_path: Path):
    config = copy.deepcopy(jp_server_config)
    card = tmp_path / "local-prices.json"
    card.write_text(json.dumps(RATE_CARD))
    config["ComputeServerCosts"] = {
        "check_interval": 0,
        "price_tables": {"local": str(card)},
        "idle_gpu_threshold": 10,
    }
    return config


@pytest.fixture
def manager(jp_serverapp, gpus: Path, monkeypatch: pytest.MonkeyPatch):
    """The manager, once the Jupyter server (whose fixtures set PYTHONPATH) is up: servers
    started from here on find the stand-in pynvml first."""
    module_dir = gpus.parent / "nvml"
    monkeypatch.setenv("PYTHONPATH", f"{module_dir}:{os.environ.get('PYTHONPATH', '')}")
    return jp_serverapp.web_app.settings["compute_servers_manager"]


@pytest.fixture
def costs(jp_serverapp):
    return jp_serverapp.web_app.settings["compute_servers_costs"]


def set_utilization(path: Path, percent: int) -> None:
    path.write_text(json.dumps([{**GPU, "utilization": percent}]))


async def test_a_busy_gpu_holds_idle_shutdown_off(api, wait_for_state, manager, costs, gpus):
    clock = Clock(START)
    manager.store.clock = clock
    server = await create(
        api, "gpu-box", idle_timeout_minutes=1, config={"gpu": {"type": "NVIDIA H200"}}
    )
    await start(api, wait_for_state, server["id"])
    assert await costs.gpu_probe(manager.get_server(server["id"])) == 0.0
    # Training on the GPU, with no kernel of this Jupyter server (a job in a detached shell).
    set_utilization(gpus, 97)
    for _ in range(5):
        clock.advance(600)
        assert not (await costs.evaluate()).stopped
    assert costs.activity.last(server["id"]).what == "GPU 97% busy"
    # The job ends: under the threshold for a minute, the server is idle.
    set_utilization(gpus, 4)
    busy_until = clock.now
    clock.advance(59)
    assert not (await costs.evaluate()).stopped
    clock.advance(1)
    result = await costs.evaluate()
    assert [s.trigger for s in result.stopped] == ["idle"]
    assert result.stopped[0].idle_since == busy_until
    await wait_for_state(server["id"], "off")


async def test_a_gpu_that_cannot_say_is_not_counted(api, wait_for_state, manager, costs, gpus):
    clock = Clock(START)
    manager.store.clock = clock
    server = await create(
        api, "gpu-box", idle_timeout_minutes=1, config={"gpu": {"type": "NVIDIA H200"}}
    )
    await start(api, wait_for_state, server["id"])
    gpus.write_text("[]")  # NVML answers nothing (the driver went away): unknown
    assert await costs.gpu_probe(manager.get_server(server["id"])) is None
    clock.advance(60)
    assert [s.trigger for s in (await costs.evaluate()).stopped] == ["idle"]
    await wait_for_state(server["id"], "off")
