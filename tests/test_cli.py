"""``jupyter compute-servers`` works on the same store and clouds, from a terminal."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(data_dir, *args, check=True, input=None):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_compute_servers.cli",
            "--set",
            f"data_dir={data_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_cli_lifecycle_and_ssh(tmp_path):
    data_dir = tmp_path / "cs"
    assert (
        "Created gpu-box (id 1)"
        in cli(data_dir, "create", "gpu-box", "--config", '{"cpu": 1}').stdout
    )
    listing = cli(data_dir, "list").stdout.splitlines()
    assert listing[0].split() == ["ID", "NAME", "CLOUD", "STATE", "HARDWARE"]
    assert listing[1].split()[:4] == ["1", "gpu-box", "local", "deprovisioned"]

    started = cli(data_dir, "start", "gpu-box")
    assert "Starting the sandbox's SSH server" in started.stderr
    assert "gpu-box is running" in started.stderr

    # A real OpenSSH client, with the pinned host key and the server's own key.
    ssh = cli(data_dir, "ssh", "gpu-box", "echo", "hello;", "pwd")
    assert ssh.stdout.splitlines() == ["hello", str(data_dir / "local" / "1" / "disk")]

    refused = cli(data_dir, "start", "1", check=False)
    assert refused.returncode == 1 and "the server is running" in refused.stderr

    assert "gpu-box is off" in cli(data_dir, "stop", "1").stderr
    not_confirmed = cli(data_dir, "deprovision", "gpu-box", check=False, input="no\n")
    assert not_confirmed.returncode == 1 and "synced back" in not_confirmed.stderr
    assert (
        "gpu-box is deprovisioned"
        in cli(data_dir, "deprovision", "gpu-box", input="gpu-box\n").stderr
    )
    cli(data_dir, "delete", "gpu-box")
    assert json.loads(cli(data_dir, "list", "--json").stdout) == []


def test_cli_reports_bad_input_plainly(tmp_path):
    result = cli(tmp_path, "create", "bad name", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: name is not valid")
    result = cli(tmp_path, "stop", "nothing", check=False)
    assert "No compute server named 'nothing'" in result.stderr
