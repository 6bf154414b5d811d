"""Container images for real: podman (with runc) runs an image built here from Debian's
packages (tests/container_image.py), and a local compute server runs its kernels and
terminals in it.

The stand-in engine of test_images.py stays only for what cannot run here: docker (no daemon)
and GPUs (``--gpus`` / CDI devices). Not shown here for real: rootless podman (``--userns
keep-id``; these machines run the tests as root) and a full disk during a pull.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.agent.rpc_agent import CONTAINER_LABEL
from jupyter_compute_servers.clouds.local import processes_with_token

from . import container_image
from .container_image import KERNEL_PACKAGES, MARKER, debian_image, podman, without_module
from .kernel_helpers import execute, wait_until
from .test_sync import sync
from .test_terminals import open_screen

IMAGE_REPOSITORY = "localhost/jcs-test-ipykernel"


@pytest.fixture(scope="session")
def kernel_image() -> str:
    """python3-ipykernel from Debian, as a podman image (built once, then cached)."""
    return debian_image("jcs-test-ipykernel", KERNEL_PACKAGES)


@pytest.fixture(scope="session")
def image_without_ipykernel(kernel_image: str) -> str:
    """The same image with ipykernel deleted (its kernel spec stays, so a kernel is listed
    but cannot start)."""
    return without_module(
        kernel_image,
        "jcs-test-no-ipykernel",
        (
            "/usr/lib/python3/dist-packages/ipykernel",
            "/usr/lib/python3/dist-packages/ipykernel_launcher.py",
        ),
    )


@pytest.fixture(autouse=True)
def engine_settings(monkeypatch) -> None:
    """This machine's engine needs runc, cgroupfs and lower ulimits: through CONTAINERS_CONF,
    which the local cloud passes on to its servers as it would an admin's."""
    monkeypatch.setenv("CONTAINERS_CONF", str(container_image.CONTAINERS_CONF))


def catalogue(kernel_image: str, broken_image: str | None = None) -> dict[str, Any]:
    tag = kernel_image.rsplit(":", 1)[1]
    images: list[dict[str, Any]] = [
        {
            "id": "debian",
            "label": "Debian's Python (test image)",
            "gpu": "none",
            "runtime": {"kind": "podman", "image": f"{IMAGE_REPOSITORY}:{{tag}}"},
            "imports": ["json", "ipykernel"],
            "versions": [
                {"tag": tag, "label": "bookworm"},
                {"tag": "no-such-tag", "label": "never built"},
            ],
        },
        {
            "id": "python",
            "label": "Python (the machine's own)",
            "runtime": {"kind": "python", "python": "python3"},
            "versions": [{"tag": "system", "tested": True}],
        },
    ]
    if broken_image:
        images.append(
            {
                "id": "broken",
                "label": "Debian's Python without ipykernel (test image)",
                "gpu": "none",
                "runtime": {"kind": "podman", "image": broken_image.rsplit(":", 1)[0] + ":{tag}"},
                "versions": [{"tag": broken_image.rsplit(":", 1)[1]}],
            }
        )
    return {"version": 1, "images": images}


@pytest.fixture
def catalogue_file(tmp_path: Path, kernel_image: str) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalogue(kernel_image)))
    return path


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], catalogue_file: Path) -> dict[str, Any]:
    app = {**jp_server_config["ComputeServersApp"], "image_catalog": str(catalogue_file)}
    return {**jp_server_config, "ComputeServersApp": app}


def containers() -> list[dict[str, Any]]:
    """Our containers podman has, running or not."""
    listed = podman("ps", "--all", "--format", "json", "--filter", f"label={CONTAINER_LABEL}")
    return json.loads(listed.stdout or "[]")


async def start(api, wait_for_state, name: str, tag: str) -> dict[str, Any]:
    code, server = await api(
        "POST", "servers", {"name": name, "config": {"image": "debian", "image_tag": tag}}
    )
    assert code == 201, server
    code, answer = await api("POST", f"servers/{server['id']}/actions/start")
    assert code == 202, answer
    return await wait_for_state(server["id"], "running", "error", "off", timeout=120)


PROBE = f"""
import json, os, sys
print(json.dumps({{
    "os_release": open("/etc/os-release").read(),
    "marker": open({MARKER!r}).read().strip(),
    "containerenv": os.path.exists("/run/.containerenv"),
    "prefix": sys.prefix,
    "cwd": os.getcwd(),
    "uid": os.getuid(),
    "synced": open("from-jupyter.txt").read(),
}}))
with open("from-the-kernel.txt", "w") as f:
    f.write("written in the container")
"""


async def test_a_local_server_runs_its_kernels_and_terminals_in_the_container(
    api, wait_for_state, jp_serverapp, jp_ws_fetch, jp_root_dir, compute_data_dir, kernel_image
):
    tag = kernel_image.rsplit(":", 1)[1]
    # The image is only here, not in any registry: a start that asked one would fail.
    server = await start(api, wait_for_state, "debian", tag)
    assert server["state"] == "running", server["state_reason"]
    server_id = server["id"]
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    specs = await wait_until(lambda: manager.get_server(server_id).kernel_specs)
    # Listed inside the image: Debian's kernel spec, with Debian's Python.
    assert specs["python3"]["argv"][0] == "/usr/bin/python3"

    # Sync into the workspace the container mounts.
    (jp_root_dir / "from-jupyter.txt").write_text("synced from the Jupyter root")
    await sync(api, server_id)

    kernel_manager = jp_serverapp.kernel_manager
    kernel_id = await kernel_manager.start_kernel(kernel_name=f"compute-{server_id}-python3")
    client = kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply, out = await execute(client, PROBE, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
    seen = json.loads(out)
    assert "ID=debian" in seen["os_release"] and seen["marker"] == kernel_image
    assert seen["containerenv"]  # podman's mark on its containers
    assert seen["prefix"] == "/usr" != sys.prefix  # Debian's Python, not Jupyter's
    workspace = Path(os.path.realpath(compute_data_dir / "local" / str(server_id) / "disk"))
    assert seen["cwd"] == str(workspace)  # mounted at the same path
    assert seen["synced"] == "synced from the Jupyter root"
    written = workspace / "from-the-kernel.txt"
    assert written.read_text() == "written in the container"
    assert seen["uid"] == os.getuid() and written.stat().st_uid == os.getuid()
    running = {c["Names"][0]: c for c in containers()}
    assert f"jcs-kernel-{kernel_id}" in running
    assert running[f"jcs-kernel-{kernel_id}"]["Image"] == kernel_image

    # A terminal: a shell in the container (the marker file is the image's alone).
    code, terminal = await api("POST", f"servers/{server_id}/terminals")
    assert code == 201, terminal
    screen = await open_screen(jp_ws_fetch, server_id, terminal["name"])
    screen.type(f"cat {MARKER}; ps -o args= 1; pwd\r")
    await screen.until(kernel_image)
    await screen.until("/run/podman-init")  # the container's init is its pid 1
    await screen.until(str(workspace))
    screen.ws.close()
    assert any(name.startswith("jcs-terminal-") for name in (c["Names"][0] for c in containers()))

    # Stopping the server, kernel and terminal still running, removes their containers.
    await api("POST", f"servers/{server_id}/actions/stop")
    stopped = await wait_for_state(server_id, "off", "error", timeout=60)
    assert stopped["state"] == "off", stopped["state_reason"]
    left = [c["Names"][0] for c in containers()]
    assert f"jcs-kernel-{kernel_id}" not in left
    assert not [name for name in left if name.startswith(f"jcs-terminal-{terminal['name']}-")]


async def test_a_missing_image_is_an_error_naming_it_and_what_to_do(
    api, wait_for_state, kernel_image, jp_serverapp
):
    server = await start(api, wait_for_state, "missing", "no-such-tag")
    reason = server["state_reason"]
    # A failed start leaves nothing running: the sandbox's SSH server is stopped again.
    assert server["state"] == "off", reason
    assert reason.startswith(f"start failed: podman cannot pull {IMAGE_REPOSITORY}:no-such-tag")
    assert "the registry cannot be reached" in reason and "podman load/import" in reason, reason
    assert reason.endswith("It was stopped again; fix the cause and start it again.")
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    token = manager.get_server(server["id"]).cloud_data["token"]
    assert processes_with_token(token) == []
    await api("POST", f"servers/{server['id']}/actions/deprovision", {"confirm": True})
    gone = await wait_for_state(server["id"], "deprovisioned", "error", timeout=60)
    assert gone["state"] == "deprovisioned", gone["state_reason"]


def run_cli(tmp_path: Path, catalogue_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={tmp_path / 'cs'}",
            "--set",
            f"image_catalog={catalogue_path}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_images_test_marks_the_built_image_and_refuses_one_without_ipykernel(
    tmp_path, kernel_image, image_without_ipykernel
):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalogue(kernel_image, image_without_ipykernel)))
    tag = kernel_image.rsplit(":", 1)[1]
    tested_file = tmp_path / "cs" / "images-tested.json"
    before = {c["Id"] for c in containers()}

    passed = run_cli(tmp_path, path, "images", "test", f"debian:{tag}", "--mark-tested")
    assert passed.returncode == 0, passed.stderr
    assert f"PASSED debian:{tag}" in passed.stderr
    assert json.loads(tested_file.read_text()) == {"debian": {tag: True}}

    broken_tag = image_without_ipykernel.rsplit(":", 1)[1]
    failed = run_cli(tmp_path, path, "images", "test", f"broken:{broken_tag}", "--mark-tested")
    assert failed.returncode == 1
    assert f"FAILED broken:{broken_tag} at the step 'start the kernel python3'" in failed.stderr
    assert "Not marked as tested" in failed.stderr
    assert "broken" not in json.loads(tested_file.read_text())
    listed = run_cli(tmp_path, path, "list")
    assert "image-test" not in listed.stdout  # the throw-away servers are gone
    assert {c["Id"] for c in containers()} <= before  # none of theirs left


@pytest.fixture
def registry(tmp_path: Path, monkeypatch, kernel_image: str):
    """A registry of our own on loopback holding the test image as v1, latest and nothing
    else; the engine (and so the local servers) told to speak plain HTTP to it."""
    from .container_image import Registry

    directory = tmp_path / "registry"
    directory.mkdir()
    running = Registry(directory)
    running.start()
    try:
        for tag in ("v1", "latest"):
            remote = running.push(kernel_image, f"jcs/ipykernel:{tag}")
            podman("rmi", remote, check=False)  # not here: it must be pulled
        running.push_other_architecture("jcs/ipykernel:arm64-only")
        monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(running.registries_conf))
        yield running
    finally:
        running.stop()
        for tag in ("v1", "latest"):
            podman("rmi", f"{running.address}/jcs/ipykernel:{tag}", check=False)


@pytest.fixture
def progress_events(jp_serverapp) -> list[str]:
    seen: list[str] = []

    class Listener:
        async def __call__(self, logger, schema_id, data):
            if data.get("kind") == "progress" and data.get("progress"):
                seen.append(data["progress"])

    jp_serverapp.event_logger.add_listener(
        schema_id="https://events.jupyter.org/jupyter_compute_servers/server/v1",
        listener=Listener(),
    )
    return seen


async def test_pulls_only_what_is_missing_with_the_engines_progress(
    api, wait_for_state, jp_serverapp, registry, progress_events, tmp_path
):
    pulled = f"{registry.address}/jcs/ipykernel"
    document = {
        "version": 1,
        "images": [
            {
                "id": "pulled",
                "label": "From a registry",
                "gpu": "none",
                "runtime": {"kind": "podman", "image": f"{pulled}:{{tag}}"},
                # latest moves (by default); v1 does not, nor does "gone" (never pushed).
                "versions": [
                    {"tag": "v1"},
                    {"tag": "latest"},
                    {"tag": "gone"},
                    {"tag": "arm64-only"},
                ],
            }
        ],
    }
    manager = jp_serverapp.web_app.settings["compute_servers_manager"]
    catalogue_path = Path(manager.images.source)
    catalogue_path.write_text(json.dumps(document))
    await manager.images.reload()

    async def start_on(tag: str) -> tuple[dict[str, Any], list[str]]:
        progress_events.clear()
        code, server = await api(
            "POST",
            "servers",
            {"name": f"on-{tag}", "config": {"image": "pulled", "image_tag": tag}},
        )
        assert code == 201, server
        await api("POST", f"servers/{server['id']}/actions/start")
        server = await wait_for_state(server["id"], "running", "error", "off", timeout=180)
        return server, list(progress_events)

    async def stop_and_delete(server: dict[str, Any]) -> None:
        if server["state"] == "running":
            await api("POST", f"servers/{server['id']}/actions/stop")
            await wait_for_state(server["id"], "off", "error", timeout=60)
        await api("POST", f"servers/{server['id']}/actions/deprovision", {"confirm": True})
        await wait_for_state(server["id"], "deprovisioned", "error", timeout=60)
        code, _ = await api("DELETE", f"servers/{server['id']}")
        assert code == 204

    # A tag the registry does not have: the error names the image, the cause, what to do.
    server, _ = await start_on("gone")
    assert server["state"] == "off"
    assert (
        f"podman cannot pull {pulled}:gone: the registry has no such image or tag"
        in (server["state_reason"])
    )
    assert "check the image and tag in the catalogue" in server["state_reason"]
    await stop_and_delete(server)

    # Built only for another architecture: said so, with what to do.
    server, _ = await start_on("arm64-only")
    assert server["state"] == "off"
    assert (
        f"podman cannot pull {pulled}:arm64-only: the image is not built for this server's "
        f"architecture; pick a version built for {platform.machine()}"
    ) in server["state_reason"], server["state_reason"]
    await stop_and_delete(server)

    # Missing here: pulled, the engine's own lines in the server's progress.
    assert podman("image", "exists", f"{pulled}:v1", check=False).returncode == 1
    server, progress = await start_on("v1")
    assert server["state"] == "running", server["state_reason"]
    said = [p for p in progress if p.startswith(f"Pulling {pulled}:v1: ")]
    assert any(": 0 of 1 layers (Copying blob " in p for p in said), progress
    assert any(": 1 of 1 layers (Copying config " in p for p in said), progress
    assert podman("image", "exists", f"{pulled}:v1", check=False).returncode == 0
    await stop_and_delete(server)
    server, _ = await start_on("latest")
    assert server["state"] == "running", server["state_reason"]
    await stop_and_delete(server)

    # The registry away: what is here runs. A fixed tag asks nobody; a moving one tries,
    # and says it runs the copy it has.
    registry.stop()
    server, progress = await start_on("v1")
    assert server["state"] == "running", server["state_reason"]
    assert not [p for p in progress if p.startswith("Pulling")], progress
    await stop_and_delete(server)
    server, progress = await start_on("latest")
    assert server["state"] == "running", server["state_reason"]
    assert any(
        "using the copy already here" in p and "the registry cannot be reached" in p
        for p in progress
    ), progress
    await stop_and_delete(server)


def test_images_build_adds_an_untested_version_that_images_test_then_marks(tmp_path, kernel_image):
    """A Containerfile directory on top of the test image (no registry: FROM the local
    image), built by podman, offered as untested, then tested and marked."""
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalogue(kernel_image)))
    directory = tmp_path / "debian"
    directory.mkdir()
    (directory / "Containerfile").write_text(
        f"FROM {kernel_image}\nRUN echo built-by-images-build > /etc/jcs-built\n"
    )
    tag = f"built-{os.getpid()}"
    built = f"{IMAGE_REPOSITORY}:{tag}"
    try:
        result = run_cli(
            tmp_path, path, "images", "build", str(directory), "--image", "debian", "--tag", tag
        )
        assert result.returncode == 0, result.stderr
        assert f"debian:{tag} is in the catalogue as untested" in result.stderr
        ran = podman("run", "--rm", built, "cat", "/etc/jcs-built")
        assert ran.stdout.strip() == "built-by-images-build"
        listed = run_cli(tmp_path, path, "images", "list")
        assert f"debian:{tag}  Debian's Python (test image)  (untested)" in listed.stdout

        tested = run_cli(tmp_path, path, "images", "test", f"debian:{tag}", "--mark-tested")
        assert tested.returncode == 0, tested.stderr
        listed = run_cli(tmp_path, path, "images", "list")
        assert f"debian:{tag}  Debian's Python (test image)  (tested)" in listed.stdout

        # What cannot be built is refused before the engine runs, naming the argument.
        refused = run_cli(
            tmp_path, path, "images", "build", str(tmp_path), "--image", "debian", "--tag", "x"
        )
        assert refused.returncode == 1 and "has no Containerfile or Dockerfile" in refused.stderr
        refused = run_cli(
            tmp_path, path, "images", "build", str(directory), "--image", "python", "--tag", "x"
        )
        assert refused.returncode == 1 and "not a container engine" in refused.stderr
    finally:
        podman("rmi", built, check=False)
