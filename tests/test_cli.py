"""``jupyter compute-servers`` works on the same store and clouds, from a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def user_env() -> dict[str, str]:
    """This process's environment as a user's shell gives it: no PYTHONWARNINGS that would
    hide warnings the user would see. Read at each call: tests set JUPYTER_* paths."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}


def cli(data_dir, *args, check=True, input=None, command=None):
    command = command or [sys.executable, "-m", "jupyter_compute_servers.cli"]
    result = subprocess.run(
        [*command, "--set", f"data_dir={data_dir}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=input,
        env=user_env(),
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
    # Exactly our one line: no third-party warning before it.
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: name is not valid")
    result = cli(tmp_path, "stop", "nothing", check=False)
    assert "No compute server named 'nothing'" in result.stderr


def test_installed_commands_print_nothing_on_stderr(tmp_path):
    """Both installed entry points, as a user types them, are quiet on stderr."""
    for command in (
        [str(VENV_BIN / "jupyter"), "compute-servers"],
        [str(VENV_BIN / "jupyter-compute-servers")],
    ):
        listed = cli(tmp_path, "list", command=command)
        assert listed.stderr == ""
        assert listed.stdout.split() == ["ID", "NAME", "CLOUD", "STATE", "HARDWARE"]
        refused = cli(tmp_path, "create", "bad name", command=command, check=False)
        assert refused.returncode == 1
        assert refused.stderr.splitlines() == [refused.stderr.splitlines()[0]]
        assert refused.stderr.startswith("error: name is not valid")


WARN_FROM = """
import warnings
import jupyter_compute_servers
import asyncssh  # warns on import under cryptography 47+ unless filtered
from cryptography.utils import CryptographyDeprecationWarning

for module in ("asyncssh.crypto.misc", "jupyter_compute_servers.sample", "othertool"):
    warnings.warn_explicit(
        f"raised in {module}", CryptographyDeprecationWarning, module + ".py", 1, module=module
    )
warnings.warn("our own deprecation", DeprecationWarning)
"""


def test_only_known_third_party_warnings_are_hidden():
    """The filter names the category and the module: the same category from our code, or
    from any other library, still shows, and so do other categories."""
    result = subprocess.run(
        [sys.executable, "-W", "default::DeprecationWarning", "-c", WARN_FROM],
        capture_output=True,
        text=True,
        timeout=60,
        env=user_env(),
        check=True,
    )
    assert "DSA" not in result.stderr
    assert "raised in asyncssh" not in result.stderr
    assert "raised in jupyter_compute_servers.sample" in result.stderr
    assert "raised in othertool" in result.stderr
    assert "our own deprecation" in result.stderr


def test_settings_come_from_the_jupyter_server_config_files(tmp_path):
    """The CLI (and the standalone kernel runtime) read ``c.ComputeServersApp.*`` from the
    same files as ``jupyter server``; the command line's ``--set`` wins over them."""
    config_dir = Path(os.environ["JUPYTER_CONFIG_DIR"])
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ComputeServersApp": {"data_dir": str(tmp_path / "from-json")}})
    )
    (config_dir / "jupyter_server_config.py").write_text("c.ComputeServersApp.max_servers = 1\n")
    command = [sys.executable, "-m", "jupyter_compute_servers.cli"]
    created = subprocess.run(
        [*command, "create", "one"], capture_output=True, text=True, env=user_env(), timeout=120
    )
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "from-json" / "servers.db").exists()
    refused = subprocess.run(
        [*command, "create", "two"], capture_output=True, text=True, env=user_env(), timeout=120
    )
    assert refused.returncode == 1, refused.stderr
    assert "There are 1 compute servers, the most allowed here" in refused.stderr
    elsewhere = cli(tmp_path / "from-set", "create", "three")
    assert (tmp_path / "from-set" / "servers.db").exists(), elsewhere.stderr


def test_cli_in_team_mode_resolves_names_among_the_users_own(tmp_path):
    """Two users of a team's database each have a "gpu-box": each one's CLI finds their own;
    standalone on that database the name is refused, naming its owners."""
    shared = f"db_url=sqlite:///{tmp_path / 'team.db'}"

    def as_user(user, *args, check=True):
        return cli(
            tmp_path / user,
            "--set",
            shared,
            "--set",
            "team_mode=true",
            "--set",
            f"user={user}",
            *args,
            check=check,
        )

    for user in ("alice", "bob"):
        assert "Created gpu-box" in as_user(user, "create", "gpu-box").stdout
    refused = as_user("alice", "create", "GPU-box", check=False)
    assert refused.returncode == 1
    assert "A compute server named 'GPU-box' already exists." in refused.stderr
    ids = {}
    for user in ("alice", "bob"):
        [mine] = json.loads(as_user(user, "list", "--json").stdout)
        assert (mine["name"], mine["owner"]) == ("gpu-box", user)
        ids[user] = mine["id"]
    assert "Deleted gpu-box." in as_user("bob", "delete", "gpu-box").stderr
    assert [s["id"] for s in json.loads(as_user("alice", "list", "--json").stdout)] == [
        ids["alice"]
    ]
    assert json.loads(as_user("bob", "list", "--json").stdout) == []

    as_user("bob", "create", "gpu-box")
    standalone = cli(tmp_path / "admin", "--set", shared, "delete", "gpu-box", check=False)
    assert standalone.returncode == 1
    assert "2 compute servers are named 'gpu-box', of different owners" in standalone.stderr
    assert f"{ids['alice']} (alice)" in standalone.stderr and "(bob)" in standalone.stderr
