"""The shape of the code: one composition root, no web code outside the web app, and no import
cycle among our modules at run time."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import jupyter_compute_servers

PACKAGE_DIR = Path(jupyter_compute_servers.__file__).parent
PACKAGE = "jupyter_compute_servers"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def run_time_imports(path: Path, modules: set[str]) -> set[str]:
    """Our modules that ``path`` imports when it is imported: module-level imports, not those
    under ``if TYPE_CHECKING`` nor inside functions (those run later, once all is loaded)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If):
                if not is_type_checking(node):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)

    visit(ast.parse(path.read_text()).body)
    # A module's own packages are always initialised before it (``from . import catalog``
    # inside a package is no cycle), so edges to them are left out.
    ancestors = {name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)}
    return {m for m in found if m in modules and m != name and m not in ancestors}


def import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE_DIR.rglob("*.py") if "labextension" not in p.parts]
    modules = {module_name(p) for p in paths}
    return {module_name(p): run_time_imports(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_among_our_modules_at_run_time():
    graph = import_graph()
    assert f"{PACKAGE}.services" in graph[f"{PACKAGE}.app"]  # the graph is really read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_web_app_imports_web_code():
    """Handlers are imported by the extension app alone: the CLI, the services and the
    kernel runtime never reach them."""
    graph = import_graph()
    web = {m for m in graph if m.startswith(f"{PACKAGE}.handlers")} | {f"{PACKAGE}.app"}
    importers = {m for m, imported in graph.items() if imported & web and m not in web}
    assert importers == set()


STANDALONE = """
import json, sys
from jupyter_compute_servers.kernels.runtime import runtime_for, close_standalone_runtimes
import jupyter_compute_servers.cli  # the CLI too

runtime = runtime_for(sys.argv[1], "")
assert runtime.manager.list_servers() == []
close_standalone_runtimes()
print(json.dumps(sorted(sys.modules)))
"""


def test_the_standalone_kernel_runtime_and_the_cli_load_no_web_code(tmp_path):
    """What `jupyter execute` on a compute-server kernel runs in its process: the standalone
    runtime, built by the composition root, with no handler, no extension app, no Jupyter
    server."""
    result = subprocess.run(
        [sys.executable, "-c", STANDALONE, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = set(json.loads(result.stdout))
    assert f"{PACKAGE}.services" in loaded and f"{PACKAGE}.manager" in loaded
    web = sorted(
        m
        for m in loaded
        if m.startswith((f"{PACKAGE}.handlers", "jupyter_server", "tornado.web"))
        or m == f"{PACKAGE}.app"
    )
    assert web == []
