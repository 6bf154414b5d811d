"""The three-way planner, rule by rule (pure: no files, no SSH)."""

from __future__ import annotations

import time

import pytest

from jupyter_compute_servers.sync.plan import (
    Action,
    Base,
    FileState,
    Kind,
    MassDeletion,
    Side,
    conflict_name,
    decide,
    merge_mode,
    needed_hashes,
    plan,
)

H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64


def state(
    size: int = 10, digest: str | None = None, mode: int = 0o644, ino: int = 1, ctime: int = 5
):
    return FileState(size, 100, mode, (size, 100, ino, ctime), digest, digest is not None)


def base(
    digest: str = H1, size: int = 10, mode: int = 0o644, lsig=(10, 100, 1, 5), rsig=(10, 100, 1, 5)
):
    return Base(digest, size, 100, mode, lsig, rsig)


def kinds(actions: list[Action]) -> dict[str, Kind]:
    return {a.path: a.kind for a in actions}


# --- one path ------------------------------------------------------------------------------


def test_new_on_one_side_is_copied_to_the_other():
    assert decide("a", None, state(), None).action.kind is Kind.PUSH
    assert decide("a", None, None, state()).action.kind is Kind.PULL


def test_new_on_both_sides_with_the_same_content_is_only_recorded():
    decision = decide("a", None, state(), state(ino=9))
    assert decision.need == {"local", "remote"}  # same size: only hashes can tell
    action = decide("a", None, state(digest=H1), state(digest=H1, ino=9)).action
    assert action.kind is Kind.RECORD


def test_new_on_both_sides_differently_is_a_conflict():
    # Different sizes need no hash to tell.
    assert decide("a", None, state(size=1), state(size=2)).action.kind is Kind.CONFLICT
    assert decide("a", None, state(digest=H1), state(digest=H2)).action.kind is Kind.CONFLICT


def test_unchanged_signatures_mean_nothing_to_do():
    assert decide("a", base(), state(), state()).action is None


def test_changed_on_one_side_is_copied():
    assert decide("a", base(), state(size=11), state()).action.kind is Kind.PUSH
    assert decide("a", base(), state(), state(size=11)).action.kind is Kind.PULL


def test_a_touched_file_needs_a_hash_and_then_only_its_record_changes():
    touched = state(ctime=6)  # same size, new signature
    assert decide("a", base(), touched, state()).need == {"local"}
    action = decide("a", base(), state(ctime=6, digest=H1), state()).action
    assert action.kind is Kind.RECORD  # same content: nothing is copied


def test_content_changed_with_the_same_size_and_mtime_is_found_by_its_hash():
    changed = state(ctime=6, digest=H2)  # only ctime tells, and the hash decides
    assert decide("a", base(), changed, state()).action.kind is Kind.PUSH


def test_changed_on_both_sides_the_same_way_is_not_a_conflict():
    action = decide("a", base(), state(size=12, digest=H2), state(size=12, digest=H2, ino=7)).action
    assert action.kind is Kind.RECORD


def test_changed_on_both_sides_differently_is_a_conflict():
    assert decide("a", base(), state(size=11), state(size=12)).action.kind is Kind.CONFLICT
    assert (
        decide("a", base(), state(ctime=8, digest=H2), state(ctime=9, digest=H3)).action.kind
        is Kind.CONFLICT
    )


def test_deleted_on_one_side_and_unchanged_on_the_other_is_deleted():
    assert decide("a", base(), state(), None).action.kind is Kind.DELETE_LOCAL
    assert decide("a", base(), None, state()).action.kind is Kind.DELETE_REMOTE


def test_deleted_on_one_side_and_changed_on_the_other_is_copied_back():
    assert decide("a", base(), state(size=3), None).action.kind is Kind.PUSH
    assert decide("a", base(), None, state(size=3)).action.kind is Kind.PULL
    # A chmod is a change too: the file is not deleted.
    assert decide("a", base(), state(mode=0o755, ctime=6, digest=H1), None).action.kind is Kind.PUSH


def test_deleted_on_both_sides_forgets_the_record():
    assert decide("a", base(), None, None).action.kind is Kind.FORGET


def test_a_chmod_alone_is_synced():
    action = decide("a", base(), state(mode=0o755, ctime=6, digest=H1), state()).action
    assert (action.kind, action.mode) == (Kind.CHMOD_REMOTE, 0o755)
    action = decide("a", base(), state(), state(mode=0o700, ctime=6, digest=H1)).action
    assert (action.kind, action.mode) == (Kind.CHMOD_LOCAL, 0o700)


def test_content_from_one_side_and_mode_from_the_other_are_merged():
    action = decide("a", base(), state(size=20), state(mode=0o755, ctime=6, digest=H1)).action
    assert (action.kind, action.mode) == (Kind.PUSH, 0o755)


def test_mode_merge():
    assert merge_mode(0o755, 0o644, 0o644) == 0o755
    assert merge_mode(0o644, 0o755, 0o644) == 0o755
    assert merge_mode(0o700, 0o755, 0o644) == 0o700  # both changed: the Jupyter root wins
    assert merge_mode(0o700, 0o755, None) == 0o700


# --- the whole tree ------------------------------------------------------------------------


def test_a_conflict_keeps_both_under_a_name_that_says_whose_and_when():
    local = Side({"notes/a.ipynb": state(size=1)})
    remote = Side({"notes/a.ipynb": state(size=2)})
    result = plan({}, local, remote, server="gpu-box", now=0)
    (action,) = result.actions
    assert action.kind is Kind.CONFLICT
    assert action.conflict_path.startswith("notes/a (conflict gpu-box ")
    assert action.conflict_path.endswith(").ipynb")


def test_conflict_names_are_unique_and_keep_dotfiles_and_extensions():
    stamp = time.strftime("%Y-%m-%d %H%M%S", time.localtime(0))
    taken = {f"a (conflict s {stamp}).txt"}
    assert conflict_name("a.txt", "s", 0, taken) == f"a (conflict s {stamp} 2).txt"
    assert conflict_name(".env", "s", 0, set()).startswith(".env (conflict s ")
    assert conflict_name("Makefile", "s", 0, set()).startswith("Makefile (conflict s ")
    long = conflict_name("x" * 250 + ".txt", "s", 0, set())
    assert len(long.encode()) <= 255 and long.endswith(").txt")


def test_push_and_pull_only_write_their_side_and_leave_conflicts():
    both = {
        "new-here": (None, state(), None),
        "new-there": (None, None, state()),
        "changed-both": (base(), state(size=11), state(size=12)),
        "gone-there": (base(), state(), None),
    }
    b = {p: v[0] for p, v in both.items() if v[0]}
    local = Side({p: v[1] for p, v in both.items() if v[1]})
    remote = Side({p: v[2] for p, v in both.items() if v[2]})
    push = plan(b, local, remote, direction="push")
    assert kinds(push.actions) == {"new-here": Kind.PUSH}
    assert push.unresolved == ["changed-both"] and push.pending == 2
    pull = plan(b, local, remote, direction="pull")
    assert kinds(pull.actions) == {"new-there": Kind.PULL, "gone-there": Kind.DELETE_LOCAL}
    assert pull.unresolved == ["changed-both"] and pull.pending == 1


def test_skipped_files_and_pruned_directories_are_left_alone_with_their_record():
    # The record knows big.bin and env/lib.py; now big.bin is over the limit here and env/ is
    # a virtual environment there. Nothing may be deleted on either side.
    b = {"big.bin": base(), "env/lib.py": base()}
    local = Side({"env/lib.py": state()}, skipped={"big.bin": "larger than the size limit"})
    remote = Side({"big.bin": state()}, pruned={"env": "virtual environment"})
    result = plan(b, local, remote)
    assert result.actions == []
    assert ("big.bin", "local", "larger than the size limit") in result.skipped
    assert ("env", "remote", "virtual environment") in result.skipped
    assert needed_hashes(b, local, remote) == (set(), set())


def test_a_file_on_one_side_and_a_directory_on_the_other_is_skipped():
    local = Side({"data": state()})
    remote = Side({"data/x.csv": state(), "other": state()})
    result = plan({}, local, remote)
    assert kinds(result.actions) == {"other": Kind.PULL}
    assert ("data", "both", "a file on one side, a directory on the other") in result.skipped


def test_an_empty_side_never_deletes_everything_on_the_other():
    b = {"a": base(), "b": base()}
    remote = Side({"a": state(), "b": state()})
    with pytest.raises(MassDeletion) as refused:
        plan(b, Side(), remote)
    assert (refused.value.side, refused.value.count) == ("local", 2)
    with pytest.raises(MassDeletion):
        plan(b, Side({"a": state(), "b": state()}), Side())
    # One file left is a deliberate deletion of the others.
    assert kinds(plan(b, Side({"a": state()}), remote).actions) == {"b": Kind.DELETE_REMOTE}


def test_deleting_more_than_the_allowed_share_of_the_synced_files_needs_a_confirmation():
    b = {name: base() for name in "abcd"}
    everything = {name: state() for name in "abcd"}
    # The server kept one file: three of four (75%) would go here.
    with pytest.raises(MassDeletion) as refused:
        plan(b, Side(dict(everything)), Side({"a": state()}), max_delete_fraction=0.5)
    assert not refused.value.empty and refused.value.side == "remote"
    assert refused.value.deletions == {"local": 3, "remote": 0} and refused.value.synced == 4
    confirmed = plan(
        b,
        Side(dict(everything)),
        Side({"a": state()}),
        max_delete_fraction=0.5,
        confirm_deletions=True,
    )
    assert confirmed.confirmed is not None and confirmed.confirmed.count == 3
    assert sorted(a.path for a in confirmed.actions if a.kind is Kind.DELETE_LOCAL) == list("bcd")
    # Half is not more than half; a pull never deletes on the server.
    two = plan(
        b, Side(dict(everything)), Side({"a": state(), "b": state()}), max_delete_fraction=0.5
    )
    assert two.confirmed is None and len(two.actions) == 2
    assert plan(b, Side({"a": state()}), Side(dict(everything)), direction="pull").actions == []
    # An empty side is refused whatever the share allowed, unless confirmed.
    with pytest.raises(MassDeletion) as empty:
        plan(b, Side(dict(everything)), Side(), max_delete_fraction=1.0)
    assert empty.value.empty
    assert len(plan(b, Side(dict(everything)), Side(), confirm_deletions=True).actions) == 4


def test_plan_refuses_to_guess_without_a_needed_hash():
    with pytest.raises(ValueError, match="needs a hash"):
        plan({"a": base()}, Side({"a": state(ctime=9)}), Side({"a": state()}))
