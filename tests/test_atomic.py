"""Staged outputs: all files appear only on success; a failure leaves the folder as it was."""

import errno

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
