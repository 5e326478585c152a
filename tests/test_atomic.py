"""Staged outputs: all files appear only on success; a failure leaves the folder as it was."""

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bioprune.atomic import atomic_path, os_error_message, staged_dir
from bioprune.errors import BiopruneError


def test_staged_dir_moves_files_on_success(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as stage:
        (stage / "b.txt").write_text("b")
        (stage / "a_report.json").write_text("{}")
        assert not (out / "b.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a_report.json", "b.txt"]


def test_staged_dir_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with staged_dir(out) as stage:
            (stage / "new.txt").write_text("half")
            raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["old.txt"]


def test_staged_dir_replaces_previous_outputs(tmp_path):
    out = tmp_path / "out"
    for text in ("first", "second"):
        with staged_dir(out) as stage:
            (stage / "x.txt").write_text(text)
    assert (out / "x.txt").read_text() == "second"


def test_atomic_path(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("broken")
            raise ValueError
    assert target.read_text() == "done"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_output_under_a_file_gives_clear_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(BiopruneError, match=r"blocker/out: cannot write output"):
        with staged_dir(blocker / "out"):
            pass


def test_disk_full_message():
    exc = OSError(errno.ENOSPC, "No space left on device")
    assert os_error_message(exc, "/data/out") == "/data/out: cannot write output: no space left on device"


KILLED_WRITER = """
import sys, time
from bioprune.atomic import atomic_path, staged_dir
out = sys.argv[1]
with staged_dir(out + "/folder") as stage, atomic_path(out + "/file.txt") as tmp:
    (stage / "part.txt").write_text("half")
    tmp.write_text("half")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_killed_runs_temporaries_are_removed_by_the_next_run(tmp_path):
    """SIGKILL skips every cleanup; the next run on this host removes what the dead process left, but not
    a live process's temporaries nor another host's (they may still be in use on a shared disk)."""
    root = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": root},
        text=True,
    )
    assert proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (dead_file,) = tmp_path.glob(".file.txt.*.tmp")
    (dead_stage,) = (tmp_path / "folder").glob(".staging-*")
    assert f".{proc.pid}@" in dead_file.name and f"-{proc.pid}@" in dead_stage.name
    other_host = tmp_path / f".file.txt.{proc.pid}@elsewhere.example.abc123.tmp"
    other_host.write_text("another node's")
    live = tmp_path / f".file.txt.{os.getppid()}@{socket.gethostname()}.abc123.tmp"
    live.write_text("a running process's")

    with atomic_path(tmp_path / "file.txt") as tmp:
        tmp.write_text("whole")
    with staged_dir(tmp_path / "folder") as stage:
        (stage / "part.txt").write_text("whole")

    assert not dead_file.exists() and not dead_stage.exists()
    assert other_host.exists() and live.exists()
    assert (tmp_path / "file.txt").read_text() == "whole"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["part.txt"]


def test_staged_subfolder_merges_into_an_existing_one_keeping_user_files(tmp_path):
    """`report --out DIR` stages DIR/figures/; a user's DIR/figures/notes.txt must survive (issue 12.1:
    the move used to delete the whole same-named folder)."""
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "notes.txt").write_text("the user's own notes")
    (out / "figures" / "task.png").write_text("old figure")
    with staged_dir(out) as stage:
        (stage / "figures").mkdir()
        (stage / "figures" / "task.png").write_text("new figure")
    assert (out / "figures" / "notes.txt").read_text() == "the user's own notes"
    assert (out / "figures" / "task.png").read_text() == "new figure"


def test_a_staged_file_never_replaces_a_folder(tmp_path):
    out = tmp_path / "out"
    (out / "x").mkdir(parents=True)
    (out / "x" / "keep.txt").write_text("kept")
    with pytest.raises(BiopruneError, match="cannot write output"):
        with staged_dir(out) as stage:
            (stage / "x").write_text("a file named like the folder")
    assert (out / "x" / "keep.txt").read_text() == "kept"


def test_atomic_path_reports_the_real_error_when_its_folder_turns_read_only(tmp_path, monkeypatch):
    """The folder becomes read-only mid-run: the rename fails and so does removing the temporary. The
    user gets the rename's one-line error, not the cleanup's PermissionError (issue 12.3)."""
    target = tmp_path / "scores.parquet"

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(BiopruneError, match=r"scores.parquet: cannot write output: permission denied"):
        with atomic_path(target) as tmp:
            tmp.write_text("done")
            monkeypatch.setattr(os, "replace", denied)
            monkeypatch.setattr(Path, "unlink", denied)
    monkeypatch.undo()
    assert not target.exists()
    # the next run removes what this one could not (its process is gone: simulate with a dead pid)
    (left,) = tmp_path.glob(".scores.parquet.*.tmp")
    dead = left.with_name(left.name.replace(f".{os.getpid()}@", ".999999999@"))
    left.rename(dead)
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_outputs_respect_the_umask(tmp_path, umask):
    """mkstemp makes 0600 files: other lab members could not read scores or models (issue 12.10)."""
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "model.pt") as tmp:
            tmp.write_text("weights")
    finally:
        os.umask(old)
    assert (tmp_path / "model.pt").stat().st_mode & 0o777 == 0o666 & ~umask
