"""The image catalogue (validation naming entry and field, tested versions, reload), the
checks on server configurations, docker's command lines and GPU flags through a stand-in
container engine (no docker daemon and no GPU here; podman runs for real in
test_containers.py), and `jupyter compute-servers images test` on the machine's own Python."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.agent import rpc_agent
from jupyter_compute_servers.errors import ConflictError
from jupyter_compute_servers.images.catalog import CatalogError, ImageCatalog, validate
from jupyter_compute_servers.images.runtime import container_for

from .kernel_helpers import execute, wait_until

FAKE_ENGINE = Path(__file__).parent / "fake_engine"
BUILT_IN = json.loads(
    (Path(rpc_agent.__file__).parent.parent / "images" / "catalog.json").read_text()
)


def catalogue(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(BUILT_IN)
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["images"][2]["versions"][0].update(tag="bad tag"), "images[2] (pytorch)"),
        (lambda d: d["images"][1].pop("label"), "images[1] (scipy)"),
        (lambda d: d["images"][0]["runtime"].update(kind="vm"), "images[0] (python).runtime.kind"),
        (lambda d: d["images"][3].update(arch=["sparc"]), "images[3] (tensorflow).arch[0]"),
        (lambda d: d["images"][1]["runtime"].pop("image"), "images[1] (scipy).runtime.image"),
        (lambda d: d["images"].append(copy.deepcopy(d["images"][0])), "is listed twice"),
    ],
)
def test_an_invalid_catalogue_names_the_entry_and_field(change, where):
    document = catalogue()
    change(document)
    with pytest.raises(CatalogError) as error:
        validate(document)
    assert where in error.value.message


def test_tested_versions_are_recorded_locally(tmp_path):
    catalog = ImageCatalog(tested_file=tmp_path / "tested.json")
    catalog.load()
    assert [i["id"] for i in catalog.images()] == ["python"]  # the only one tested here
    everything = catalog.images(include_untested=True)
    assert {"python", "scipy", "pytorch", "tensorflow", "r", "julia"} <= {
        i["id"] for i in everything
    }
    catalog.mark_tested("scipy", "2025-03-14")
    assert [i["id"] for i in catalog.images()] == ["python", "scipy"]
    reloaded = ImageCatalog(tested_file=tmp_path / "tested.json")
    reloaded.load()
    assert [i["id"] for i in reloaded.images()] == ["python", "scipy"]


def test_container_commands_pass_exactly_the_servers_gpus(monkeypatch, engine_log):
    def command(engine: str, gpu: str = "optional", **extra: Any) -> list[str]:
        container = rpc_agent._container(
            {"container": {"engine": engine, "image": "img:1", "gpu": gpu}}
        )
        return rpc_agent.container_command(
            container, ["python", "-m", "k"], name="n", cwd="/w", mounts=["/w"], env={}, **extra
        )

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a,GPU-b")
    docker = command("docker")
    assert docker[docker.index("--gpus") + 1] == '"device=GPU-a,GPU-b"'
    assert docker[docker.index("--network") + 1] == "host"
    assert docker[-4:] == ["img:1", "python", "-m", "k"]
    podman = command("podman")
    assert [podman[i + 1] for i, a in enumerate(podman) if a == "--device"] == [
        "nvidia.com/gpu=GPU-a",
        "nvidia.com/gpu=GPU-b",
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a server without GPUs: none at all
    assert "--gpus" not in command("docker", gpu="required")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # nothing said: the image's need decides
    assert "all" in command("docker", gpu="required")
    assert "--gpus" not in command("docker", gpu="none")
    assert "--interactive" in command("docker", interactive=True)
    with pytest.raises(ValueError, match="invalid image"):
        rpc_agent._container({"container": {"engine": "docker", "image": "--privileged"}})


@pytest.fixture
def engine_log(tmp_path, monkeypatch) -> Path:
    """`docker` and `podman` on PATH: the stand-in engine, logging to the answered file. (The
    local cloud passes servers only a few variables, so the settings go in the wrapper.)"""
    log = tmp_path / "engine.log"
    bin_dir = tmp_path / "engine-bin"
    bin_dir.mkdir()
    for engine in ("docker", "podman"):
        wrapper = bin_dir / engine
        wrapper.write_text(
            "#!/bin/sh\n"
            f"FAKE_ENGINE_LOG={log} FAKE_ENGINE_PYTHON={sys.executable} "
            f'exec {sys.executable} {FAKE_ENGINE / "docker"} --as {engine} "$@"\n'
        )
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def test_the_images_api_and_reload(api, jp_fetch, tmp_path, jp_serverapp):
    async def images(include_untested: str) -> tuple[int, Any]:
        response = await jp_fetch(
            "compute-servers",
            "api",
            "images",
            params={"include_untested": include_untested},
            raise_error=False,
        )
        return response.code, json.loads(response.body)

    code, listed = await api("GET", "images")
    assert code == 200 and [i["id"] for i in listed["images"]] == ["python"]
    code, listed = await images("true")
    assert "pytorch" in [i["id"] for i in listed["images"]]
    code, error = await images("maybe")
    assert code == 400 and error["field"] == "include_untested"

    path = tmp_path / "catalog.json"
    document = catalogue()
    document["images"][1]["versions"][0]["tested"] = True
    path.write_text(json.dumps(document))
    catalog = jp_serverapp.web_app.settings["compute_servers_manager"].images
    catalog.source = str(path)
    code, reloaded = await api("POST", "images/reload")
    assert code == 200 and reloaded["source"] == str(path)
    code, listed = await api("GET", "images")
    assert [i["id"] for i in listed["images"]] == ["python", "scipy"]

    path.write_text("{not json")
    code, error = await api("POST", "images/reload")
    assert code == 400 and "Cannot read the image catalogue" in error["message"]
    code, listed = await api("GET", "images")
    assert [i["id"] for i in listed["images"]] == ["python", "scipy"]  # the previous one stays


async def test_configurations_the_image_cannot_run_are_refused(api, engine_log):
    for config, field in (
        ({"image": "pytorch", "image_tag": "cuda12-2025-03-14"}, "config.gpu"),
        ({"image": "scipy", "image_tag": "2025-03-14", "disk_gb": 5}, "config.disk_gb"),
        ({"image": "scipy", "image_tag": "nope"}, "config.image_tag"),
        ({"image": "nope", "image_tag": "x"}, "config.image"),
    ):
        code, error = await api("POST", "servers", {"name": "x", "config": config})
        assert code == 400 and error["field"] == field, (config, error)
    code, server = await api(
        "POST", "servers", {"name": "ok", "config": {"image": "scipy", "image_tag": "2025-03-14"}}
    )
    assert code == 201, server


async def test_without_an_engine_container_images_are_not_offered_locally(api, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    code, clouds = await api("GET", "clouds")
    local = next(c for c in clouds["clouds"] if c["name"] == "local")
    assert [i["id"] for i in local["offerings"]["images"]] == ["python"]
    code, error = await api(
        "POST", "servers", {"name": "x", "config": {"image": "scipy", "image_tag": "2025-03-14"}}
    )
    assert code == 400 and "needs docker" in error["message"]


async def test_kernels_and_terminals_run_in_the_container(
    api, wait_for_state, engine_log, jp_serverapp, compute_data_dir
):
    code, server = await api(
        "POST",
        "servers",
        {"name": "scipy", "config": {"image": "scipy", "image_tag": "2025-03-14"}},
    )
    assert code == 201, server
    await api("POST", f"servers/{server['id']}/actions/start")
    started = await wait_for_state(server["id"], "running", "error")
    assert started["state"] == "running", started["state_reason"]
    image = "quay.io/jupyter/scipy-notebook:2025-03-14"
    assert ["docker", "pull", image] in calls(engine_log)
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    await wait_until(lambda: manager.get_server(server["id"]).kernel_specs)  # asked in the image

    kernel_manager = jp_serverapp.kernel_manager
    # What the caller of start_kernel gives reaches the kernel inside the container too.
    kernel_id = await kernel_manager.start_kernel(
        kernel_name=f"compute-{server['id']}-python3",
        env={**os.environ, "SEED": "7 8"},
        extra_arguments=["--HistoryManager.hist_file=:memory:"],
    )
    client = kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=30)
        _, out = await execute(client, "print(6 * 7)")
        assert out.strip() == "42"
    finally:
        client.stop_channels()
    run = next(c for c in calls(engine_log) if c[1] == "run" and f"jcs-kernel-{kernel_id}" in c)
    assert run[run.index("--network") + 1] == "host"
    assert run[run.index(image) + 1 :][:3] == ["python", "-m", "ipykernel_launcher"]
    assert run[-1] == "--HistoryManager.hist_file=:memory:"
    passed = [run[i + 1] for i, arg in enumerate(run[: run.index(image)]) if arg == "--env"]
    assert "SEED=7 8" in passed
    assert not [v for v in passed if v.startswith(("PATH=", "HOME=", "JUPYTER_"))], passed
    workspace = os.path.realpath(compute_data_dir / "local" / str(server["id"]) / "disk")
    assert f"{workspace}:{workspace}" in run  # the workspace, at the same path inside
    await kernel_manager.shutdown_kernel(kernel_id, now=True)
    assert ["docker", "kill", f"jcs-kernel-{kernel_id}"] in calls(engine_log)

    code, terminal = await api("POST", f"servers/{server['id']}/terminals")
    assert code == 201, terminal
    shell = await wait_until(lambda: [c for c in calls(engine_log) if "--tty" in c])
    assert shell[-1][1] == "run" and shell[-1][-2:] == ["bash", "-l"]


def test_images_test_smoke_tests_and_marks_a_version(tmp_path):
    data_dir = tmp_path / "cs"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={data_dir}",
            "images",
            "test",
            "python:system",
            "--mark-tested",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "import json, ipykernel" in result.stderr and "PASSED python:system" in result.stderr
    assert json.loads((data_dir / "images-tested.json").read_text()) == {"python": {"system": True}}
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={data_dir}",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "image-test" not in listed.stdout  # the throw-away server is gone


def test_images_test_reports_a_failing_import(tmp_path):
    document = catalogue()
    document["images"][0]["imports"] = ["json", "no_such_module_anywhere"]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={tmp_path / 'cs'}",
            "--set",
            f"image_catalog={path}",
            "images",
            "test",
            "python",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1
    assert (
        "FAILED python:system at the step 'import json, no_such_module_anywhere'" in result.stderr
    )
    assert "No module named 'no_such_module_anywhere'" in result.stderr


async def test_offerings_say_the_machines_architecture(api):
    import platform

    from jupyter_compute_servers.images.catalog import normalize_arch

    code, clouds = await api("GET", "clouds")
    assert code == 200
    local = next(c for c in clouds["clouds"] if c["name"] == "local")
    assert local["offerings"]["arch"] == normalize_arch(platform.machine())


async def test_a_server_whose_image_left_the_catalogue_never_runs_on_its_own_python(
    api, engine_log, jp_serverapp, tmp_path
):
    """Its kernels would run elsewhere than the user chose (other packages, other results):
    a kernel or terminal asked for on it is refused, saying why and what to do."""
    code, server = await api(
        "POST",
        "servers",
        {"name": "scipy", "config": {"image": "scipy", "image_tag": "2025-03-14"}},
    )
    assert code == 201, server
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    assert container_for(manager, manager.get_server(server["id"])) is not None
    path = tmp_path / "catalog.json"
    document = catalogue()
    document["images"] = [i for i in document["images"] if i["id"] != "scipy"]
    path.write_text(json.dumps(document))
    manager.images.source = str(path)
    assert (await api("POST", "images/reload"))[0] == 200
    with pytest.raises(ConflictError) as refused:
        container_for(manager, manager.get_server(server["id"]))
    message = refused.value.message
    assert "scipy:2025-03-14 of compute server 'scipy' is no longer in the image catalogue" in (
        message
    )
    assert "edit the server to pick another image" in message
