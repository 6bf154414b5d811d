"""The REST API against its OpenAPI document: the document is valid OpenAPI 3.0, and a bounded
schemathesis run over every operation (all checks, positive and negative data, a fixed seed)
finds no server error and no answer the document does not describe."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from .jupyter_process import TOKEN, JupyterProcess, kill_sandboxes_under

DOCUMENT = files("jupyter_compute_servers").joinpath("openapi.json")
#: Examples per operation and the time budget: the whole run stays within about 3 minutes.
MAX_EXAMPLES = 25
MAX_SECONDS = 150


def test_the_document_is_valid_openapi():
    validate(json.loads(DOCUMENT.read_text()))


@pytest.fixture
def jupyter(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    server = JupyterProcess(
        data_dir,
        root,
        # Servers the fuzzer starts are stopped with Jupyter.
        "--LocalCloud.stop_on_shutdown=True",
        "--ComputeServersApp.max_servers=20",
    )
    yield server, tmp_path
    server.stop()
    kill_sandboxes_under(tmp_path)
    # Mounts the fuzzer made on its servers and that outlived a Jupyter that had to be killed
    # (dead, as a mount is after its Jupyter dies): unmounted, so the temp dir can go.
    for point in mount_points_under(tmp_path):
        subprocess.run(["fusermount3", "-u", "-z", point], check=False, capture_output=True)


def mount_points_under(path: Path) -> list[str]:
    with open("/proc/mounts", "rb") as f:
        points = [line.split()[1] for line in f]
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    decoded = [
        re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), p).decode(
            "utf-8", "surrogateescape"
        )
        for p in points
    ]
    return [p for p in decoded if p.startswith(str(path) + "/")]


@pytest.mark.timeout(MAX_SECONDS + 120)
def test_schemathesis_finds_no_server_error_nor_undocumented_answer(jupyter):
    server, tmp_path = jupyter
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            str(DOCUMENT),
            "--url",
            f"http://127.0.0.1:{server.port}/compute-servers/api",
            "--header",
            f"Authorization: token {TOKEN}",
            "--checks",
            "all",
            # Whether a schema-valid request is accepted depends on state the document cannot
            # express (the enabled clouds and what each offers, files on this machine, a
            # server's workspace): such requests get a 400 naming the field, which the other
            # checks still hold to the document.
            "--exclude-checks",
            "positive_data_acceptance",
            "--mode",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261205",
            "--generation-deterministic",
            "--max-time",
            str(MAX_SECONDS),
            "--request-timeout",
            "30",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS + 90,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    # The failures section names each operation, the check and how to reproduce it.
    report = result.stdout
    failures = report[report.find("FAILURES") :] if "FAILURES" in report else report
    assert result.returncode == 0, failures[:20000] + result.stderr[-3000:]
