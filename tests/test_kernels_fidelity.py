"""A remote kernel is launched as jupyter_client launches a local one: the caller's
``extra_arguments`` on its command line, the environment the caller gave (but not this
machine's own), the working directory mapped into the workspace; and nbclient's own test
notebooks give the same outputs on a remote kernel as on a local one.

One local server for the whole module (started with the CLI, as a user would), driven from
this process as nbclient and papermill drive it: outside any Jupyter server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

from jupyter_compute_servers.kernels import launch
from jupyter_compute_servers.kernels.provisioner import KernelStartError
from jupyter_compute_servers.kernels.runtime import close_standalone_runtimes

from .kernel_helpers import execute
from .test_cli import cli

NOTEBOOKS = Path(__file__).parent / "notebooks" / "nbclient"
REMOTE = "compute-1-python3"
LOCAL = "python3"
HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:"


class Box:
    """The module's server: its data dir, the Jupyter root (this process's working
    directory, so the root of the standalone runtime) and the server's workspace."""

    def __init__(self, base: Path) -> None:
        self.data_dir = base / "compute-servers"
        self.root = base / "root"
        self.workspace = self.data_dir / "local" / "1" / "disk"


@pytest.fixture(scope="module")
def private_jupyter_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Jupyter's paths for the whole module (the server's kernel specs land there), in place
    of conftest's per-test ones."""
    base = tmp_path_factory.mktemp("jupyter-paths")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("data", "config", "runtime"):
            (base / name).mkdir()
            patch.setenv(f"JUPYTER_{name.upper()}_DIR", str(base / name))
        patch.setenv("JUPYTER_PLATFORM_DIRS", "1")
        yield


@pytest.fixture(scope="module")
def box(private_jupyter_paths: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    box = Box(tmp_path_factory.mktemp("fidelity"))
    box.root.mkdir()
    cli(box.data_dir, "create", "box")
    cli(box.data_dir, "start", "box")
    with pytest.MonkeyPatch.context() as patch:
        # The standalone runtime maps working directories relative to where it started.
        patch.chdir(box.root)
        yield box
        close_standalone_runtimes()
    cli(box.data_dir, "stop", "box", check=False)


async def run_in_kernel(code: str, kernel: str = REMOTE, **start: Any) -> str:
    """Start a kernel with ``start_kernel(**start)``, run ``code``, answer what it printed."""
    manager = AsyncKernelManager(kernel_name=kernel)
    await manager.start_kernel(**start)
    try:
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            reply, printed = await execute(client, code)
            assert reply["content"]["status"] == "ok", reply["content"]
            return printed
        finally:
            client.stop_channels()
    finally:
        await manager.shutdown_kernel(now=True)


def test_extra_arguments_reach_the_remote_kernel_and_survive_a_restart(box: Box) -> None:
    code = (
        "import sys; ip = get_ipython()\n"
        "print(ip.history_manager.hist_file, fidelity, sys.argv[-2:])\n"
    )
    # As argv elements, never through a shell: the quotes and spaces arrive as they are.
    extra = [HISTORY_IN_MEMORY, "--IPKernelApp.exec_lines=['fidelity = 6 * 7']"]

    async def main() -> tuple[str, str]:
        manager = AsyncKernelManager(kernel_name=REMOTE)
        await manager.start_kernel(extra_arguments=extra)
        try:
            outputs = []
            for restart in (False, True):
                if restart:
                    await manager.restart_kernel(now=True)
                client = manager.client()
                client.start_channels()
                await client.wait_for_ready(timeout=60)
                _, printed = await execute(client, code)
                client.stop_channels()
                outputs.append(printed.strip())
            return outputs[0], outputs[1]
        finally:
            await manager.shutdown_kernel(now=True)

    first, restarted = asyncio.run(main())
    expected = f":memory: 42 {extra!r}"
    assert first == expected
    assert restarted == expected


def test_extra_arguments_must_be_a_list_of_strings(box: Box) -> None:
    async def start(extra: Any) -> None:
        manager = AsyncKernelManager(kernel_name=REMOTE)
        try:
            await manager.start_kernel(extra_arguments=extra)
        finally:
            if manager.has_kernel:
                await manager.shutdown_kernel(now=True)

    for extra, problem in (
        (["--ok", 3], "extra_arguments[1] must be a string, not int"),
        (HISTORY_IN_MEMORY, "extra_arguments must be a list of strings"),
        (["--a\x00b"], "extra_arguments[0] holds a NUL character"),
    ):
        with pytest.raises(KernelStartError, match=re.escape(problem)):
            asyncio.run(start(extra))


def test_the_callers_env_reaches_the_remote_kernel_and_this_machines_does_not(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Changed here after the server started: only a kernel given this machine's environment
    # can see them.
    monkeypatch.setenv("PATH", f"/fidelity-local-bin:{os.environ['PATH']}")
    monkeypatch.setenv("FIDELITY_LOCAL_ONLY", "here")
    code = (
        "import os\n"
        "print(os.environ.get('FIDELITY_GIVEN'), os.environ.get('FIDELITY_LOCAL_ONLY'),\n"
        "      '/fidelity-local-bin' in os.environ['PATH'], os.environ.get('JPY_SESSION_NAME'))\n"
    )
    given = {"FIDELITY_GIVEN": "a b;$(echo c)", "JPY_SESSION_NAME": str(box.root / "d" / "n.ipynb")}

    # As the Jupyter server passes it: this process's environment with the caller's on top.
    printed = asyncio.run(run_in_kernel(code, env={**os.environ, **given}))
    session = box.workspace / "d" / "n.ipynb"  # a path in the root: the same in the workspace
    assert printed.split() == ["a", "b;$(echo", "c)", "None", "False", str(session)]

    # Locally, the same call gives the kernel everything (the reference).
    printed = asyncio.run(run_in_kernel(code, LOCAL, env={**os.environ, **given}))
    assert printed.split() == ["a", "b;$(echo", "c)", "here", "True", given["JPY_SESSION_NAME"]]

    # Nothing given (nbclient, papermill): nothing of this machine's travels. A session name
    # outside the Jupyter root means nothing there.
    outside = {**os.environ, "JPY_SESSION_NAME": "/elsewhere/n.ipynb"}
    printed = asyncio.run(run_in_kernel(code, env=outside))
    assert printed.split() == ["None", "None", "False", "None"]
    assert asyncio.run(run_in_kernel(code)).split() == ["None", "None", "False", "None"]


def test_an_env_that_cannot_be_passed_on_is_refused(box: Box) -> None:
    with pytest.raises(KernelStartError, match=re.escape("env['BAD'] holds a NUL character")):
        asyncio.run(run_in_kernel("pass", env={**os.environ, "BAD": "a\x00b"}))


def test_the_working_directory_maps_into_the_workspace(box: Box) -> None:
    (box.root / "project" / "data").mkdir(parents=True, exist_ok=True)
    code = "import os; print(os.getcwd())"
    printed = asyncio.run(run_in_kernel(code, cwd=str(box.root / "project" / "data")))
    assert printed.strip() == str(box.workspace / "project" / "data")
    # Relative, as nbclient passes resources['metadata']['path']: from this process's cwd.
    printed = asyncio.run(run_in_kernel(code, cwd="project"))
    assert printed.strip() == str(box.workspace / "project")
    # Outside the Jupyter root: the workspace itself.
    printed = asyncio.run(run_in_kernel(code, cwd=str(box.root.parent)))
    assert printed.strip() == str(box.workspace)

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    NotebookClient(
        nb, kernel_name=REMOTE, timeout=60, resources={"metadata": {"path": "project/data"}}
    ).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == str(box.workspace / "project" / "data")


# --- nbclient's own test notebooks -----------------------------------------------------------

#: What legitimately differs between two runs or two machines: where a cell's code was
#: compiled (``/tmp/ipykernel_<pid>/<hash>.py``), object addresses.
VARYING = (
    (re.compile(r"ipykernel_\d+[/\\]+\d+\.py"), "ipykernel_PID/CELL.py"),
    (re.compile(r"0x[0-9a-fA-F]{6,}"), "0xADDRESS"),
)


def normalised(value: Any) -> Any:
    if isinstance(value, str):
        for pattern, replacement in VARYING:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, dict):
        return {key: normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def outputs(nb: nbformat.NotebookNode) -> list[Any]:
    """Each code cell's execution count and outputs (cell metadata holds timings only)."""
    return [
        normalised({"count": cell.execution_count, "outputs": cell.outputs})
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


def run_notebook(path: Path, kernel: str) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    relative = os.path.relpath(path.parent, os.getcwd())
    # As nbclient's tests run them (allow_errors for the ones that raise on purpose), the
    # same arguments for both kernels. nbclient adds its history argument by itself only to a
    # kernel *named* python3 (KernelManager.ipykernel), so it is given here as a caller of a
    # remote kernel gives it: for the local kernel this changes nothing.
    NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=60,
        allow_errors=True,
        extra_arguments=[HISTORY_IN_MEMORY],
        resources={"metadata": {"path": relative}},
    ).execute()
    return nb


@pytest.fixture(scope="module")
def notebooks(box: Box) -> Path:
    """The notebooks in the Jupyter root, and in the server's workspace as a sync puts them
    (the image one of them reads must be there)."""
    here = box.root / "nbclient"
    shutil.copytree(NOTEBOOKS, here)
    shutil.copytree(NOTEBOOKS, box.workspace / "nbclient")
    return here


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_nbclients_notebooks_give_the_same_outputs_on_a_remote_kernel(
    notebooks: Path, name: str
) -> None:
    local = outputs(run_notebook(notebooks / name, LOCAL))
    remote = outputs(run_notebook(notebooks / name, REMOTE))
    assert remote == local
    assert any(cell["outputs"] for cell in local) or name == "Check History in Memory.ipynb"


def test_the_specs_env_is_filled_in_from_the_servers_environment(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's kernel spec may say ``"PATH": "/opt/x/bin:${PATH}"``: jupyter_client fills
    that in from the environment the kernel starts from, which on a server is the server's."""
    specs = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels"
    spec = json.loads((specs / REMOTE / "kernel.json").read_text())
    spec["env"] = {"PATH": "/opt/x/bin:${PATH}", "FIDELITY_SPEC": "${FIDELITY_GIVEN}!"}
    (specs / "fidelity-templated").mkdir(exist_ok=True)
    (specs / "fidelity-templated" / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("PATH", f"/fidelity-local-bin:{os.environ['PATH']}")
    code = (
        "import os\n"
        "path = os.environ['PATH']\n"
        "print(path.startswith('/opt/x/bin:'), '/fidelity-local-bin' in path,"
        " os.environ['FIDELITY_SPEC'])\n"
    )
    env = {**os.environ, "FIDELITY_GIVEN": "given"}
    printed = asyncio.run(run_in_kernel(code, "fidelity-templated", env=env))
    assert printed.split() == ["True", "False", "given!"]


def test_the_rule_for_the_environment() -> None:
    """The rule on its own: the caller's variables that differ from this process's, not the
    spec's (they go as templates), nothing inherited; names and values Popen takes."""
    here = {"PATH": "/here/bin", "HOME": "/root", "SAME": "1"}
    given = {
        "PATH": "/here/bin",
        "HOME": "/other",
        "SAME": "1",
        "NEW": "x",
        "JPY_PARENT_PID": "9",
        "SPEC": "filled in here",
    }
    assert launch.remote_env(given, {"SPEC": "${HOME}"}, here) == {"HOME": "/other", "NEW": "x"}
    assert launch.remote_env(None, {}, here) == {}
    for bad in ({"A=B": "1"}, {"": "1"}, {"A": 1}):
        with pytest.raises(launch.LaunchArgumentError, match="env"):
            launch.remote_env(bad, {}, here)
    assert launch.spec_templates({"P": "/x:${PATH}"}) == {"P": "/x:${PATH}"}
    assert launch.extra_arguments(None) == []
    assert launch.extra_arguments(("--a", "b c")) == ["--a", "b c"]
    with pytest.raises(launch.LaunchArgumentError, match="more than"):
        launch.extra_arguments(["x"] * (launch.MAX_ARGUMENTS + 1))
