"""Faults a cluster run meets: a scoring job killed mid-shard and rerun gives the same scores; a training
job killed mid-run resumes from its last checkpoint to the weights of an uninterrupted run; a full disk,
a read-only or unwritable output and an output path under a regular file give one clear line, not a
traceback; and two identical workflow runs select byte-identical id lists."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_influence import random_seqs, write_fasta
from test_train import TINY, same_weights, toy_fasta
from test_workflow import example_config, run_snakemake

from bioprune.cli import main
from bioprune.models.registry import build_model, save_model

ROOT = Path(__file__).resolve().parents[1]
INFLUENCE = ["--max-length", "64", "--batch-tokens", "512", "--threads", "1"]


def bioprune_process(*argv: str, cwd: Path) -> subprocess.Popen:
    """`python -m bioprune ...` as its own process (so that it can be killed), logging to a file."""
    # this checkout's package, whether or not it is pip-installed
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    with open(cwd / "stderr.log", "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "bioprune", *argv], cwd=cwd, stderr=log, env=env)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it finished (or timed out) first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before it could be killed mid-run")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the process never reached the point where it is killed")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "finished before the kill landed: make the job longer"


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """A small pool run through the CLI steps whose outputs the fault tests then misdirect."""
    d = tmp_path_factory.mktemp("faults")
    rng = random.Random(0)
    with open(d / "in.fasta", "w") as fh:
        for i in range(120):
            fh.write(f">s{i} fam{i % 6}\n{''.join(rng.choice('ACGU') for _ in range(rng.randint(20, 70)))}\n")
    assert main(["ingest", "--alphabet", "rna", "--out", str(d / "ingest"), str(d / "in.fasta")]) == 0
    pool = d / "dedup"
    assert main(["dedup", "--out", str(pool), str(d / "ingest")]) == 0
    pool_fasta = pool / "sequences.fasta.gz"
    save_model(build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=0), d / "model.pt")
    (d / "dsub.txt").write_text("".join(f"s{i}\n" for i in range(0, 120, 3)))
    fisher = ["fisher", "--model", str(d / "model.pt"), "--ids", str(d / "dsub.txt"), "--no-progress"]
    assert main([*fisher, "--out", str(d / "partial.pt"), *INFLUENCE, str(pool_fasta)]) == 0
    assert main(["fisher-reduce", "--out", str(d / "fisher.pt"), str(d / "partial.pt")]) == 0
    score = ["score", "--model", str(d / "model.pt"), "--fisher", str(d / "fisher.pt"), "--no-progress"]
    assert main([*score, "--out", str(d / "shard.parquet"), *INFLUENCE, str(pool_fasta)]) == 0
    assert main(["merge-scores", "--out", str(d / "scores.parquet"), str(d / "shard.parquet")]) == 0

    train = [*TINY, "--max-steps", "2", "--threads", "1"]

    def argv(step: str, out: Path) -> list[str]:
        """The command line of ``step`` writing below ``out`` (a folder or, for file outputs, inside it)."""
        return {
            "ingest": ["ingest", "--alphabet", "rna", "--out", str(out), str(d / "in.fasta")],
            "dedup": ["dedup", "--out", str(out), str(d / "ingest")],
            "cluster": ["cluster", "--alphabet", "rna", "--threads", "1", "--out", str(out), str(pool)],
            "shard": ["shard", "--n-shards", "2", "--out", str(out), str(pool)],
            "train": ["train", str(d / "in.fasta"), "--out", str(out), *train],
            "reference": ["reference", str(pool), "--out", str(out), "--dsub-fraction", "0.5"] + train,
            "fisher": [*fisher, "--out", str(out / "partial.pt"), *INFLUENCE, str(pool_fasta)],
            "score": [*score, "--out", str(out / "shard.parquet"), *INFLUENCE, str(pool_fasta)],
            "merge-scores": ["merge-scores", "--out", str(out / "scores.parquet"), str(d / "shard.parquet")],
            "select": ["select", "--scores", str(d / "scores.parquet"), "--pool", str(pool)]
            + ["--strategy", "topi", "--rate", "0.5", "--out", str(out)],
        }[step]

    return d, argv


STEPS = ["ingest", "dedup", "cluster", "shard", "train", "reference", "fisher", "score", "merge-scores"]
STEPS += ["select"]


def assert_one_line_error(capsys, step: str, rc: int, *reasons: str) -> str:
    err = capsys.readouterr().err
    assert rc != 0
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"bioprune {step}: error: "), err[-2000:]
    assert any(r.lower() in line.lower() for r in reasons), line
    return line


@pytest.mark.parametrize("step", STEPS)
def test_output_under_a_regular_file_is_a_one_line_error(steps, tmp_path, capsys, step):
    _, argv = steps
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder is needed\n")
    rc = main(argv(step, blocker / "out"))
    line = assert_one_line_error(capsys, step, rc, os.strerror(errno.ENOTDIR))
    assert str(blocker) in line
    assert blocker.read_text() == "a file where a folder is needed\n"


def _mount_tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory):
    """A tiny file system with every byte taken: any file written there fails with ENOSPC."""
    mnt = tmp_path_factory.mktemp("full") / "mnt"
    _mount_tmpfs(mnt, "size=256k")
    try:
        with open(mnt / "filler", "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.mark.parametrize("step", STEPS)
def test_full_disk_is_a_one_line_error_and_leaves_nothing(steps, full_disk, capsys, step):
    _, argv = steps
    out = full_disk / f"out_{step}"
    rc = main(argv(step, out))
    assert_one_line_error(capsys, step, rc, "no space left on device")
    leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert leftovers == []


@pytest.fixture
def unwritable(tmp_path):
    """A folder this process cannot write to: read-only for a normal user, a read-only mount for root."""
    path = tmp_path / "ro"
    if os.geteuid() == 0:
        _mount_tmpfs(path, "ro,size=64k")
        yield path
        subprocess.run(["umount", "-l", str(path)], check=True)
    else:
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)


@pytest.mark.parametrize("step", STEPS)
def test_unwritable_output_is_a_one_line_error(steps, unwritable, capsys, step):
    _, argv = steps
    rc = main(argv(step, unwritable / "out"))
    assert_one_line_error(capsys, step, rc, "permission denied", "read-only file system")


@pytest.mark.slow
def test_scoring_killed_mid_shard_then_rerun_gives_identical_scores(tmp_path):
    save_model(build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, seed=1), tmp_path / "m.pt")
    seqs = random_seqs(1500, 30, 120, seed=5)
    write_fasta(tmp_path / "shard.fasta.gz", seqs)
    (tmp_path / "dsub.txt").write_text("".join(f"{sid}\n" for sid, _ in seqs[::10]))
    common = ["--model", str(tmp_path / "m.pt"), "--no-progress", *INFLUENCE]
    shard = str(tmp_path / "shard.fasta.gz")
    partial = str(tmp_path / "partial.pt")
    assert main(["fisher", *common, "--ids", str(tmp_path / "dsub.txt"), "--out", partial, shard]) == 0
    assert main(["fisher-reduce", "--out", str(tmp_path / "f.pt"), partial]) == 0
    score = ["score", *common, "--fisher", str(tmp_path / "f.pt")]
    whole_out = ["--out", str(tmp_path / "whole.parquet"), "--report", str(tmp_path / "whole.json")]
    assert main([*score, *whole_out, shard]) == 0
    seconds = json.loads((tmp_path / "whole.json").read_text())["seconds"]

    out = tmp_path / "killed" / "scores.parquet"
    out.parent.mkdir()
    proc = bioprune_process(*score, "--out", str(out), shard, cwd=tmp_path)
    staged = []

    def half_way() -> bool:  # the staged table appears when scoring starts; half the scoring time later
        if not staged and any(out.parent.glob(f".{out.name}.*.tmp")):
            staged.append(time.monotonic())
        return bool(staged) and time.monotonic() - staged[0] > seconds / 2

    kill_when(proc, half_way)
    assert not out.exists()  # a killed job leaves no score table for Snakemake to trust
    assert main([*score, "--out", str(out), shard]) == 0
    whole, rerun = pq.read_table(tmp_path / "whole.parquet"), pq.read_table(out)
    assert rerun.num_rows == len(seqs)
    assert rerun.column("id").to_pylist() == whole.column("id").to_pylist()
    for name in whole.column_names:
        assert np.array_equal(whole.column(name).to_numpy(), rerun.column(name).to_numpy()), name


@pytest.mark.slow
def test_training_killed_mid_run_resumes_from_its_last_checkpoint(tmp_path):
    data = toy_fasta(tmp_path / "toy.fa", n=200)
    common = [*TINY, "--threads", "1", "--max-steps", "60", "--checkpoint-every", "5", "--lr", "2e-3"]
    common += ["--max-tokens-per-batch", "512"]
    assert main(["train", str(data), "--out", str(tmp_path / "whole"), *common]) == 0

    out = tmp_path / "killed"
    proc = bioprune_process("train", str(data), "--out", str(out), *common, cwd=tmp_path)
    kill_when(proc, lambda: (out / "work" / "checkpoint.pt").exists())
    assert not (out / "model.pt").exists()
    assert main(["train", str(data), "--out", str(out), *common]) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["resumed_from_step"] and report["resumed_from_step"] % 5 == 0, report["resumed_from_step"]
    assert report["steps"] == 60
    assert same_weights(tmp_path / "whole" / "model.pt", out / "model.pt")
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "train"] == list(range(1, 61))  # each step once


@pytest.mark.workflow
def test_two_identical_runs_select_byte_identical_ids(example_run, tmp_path):
    """A second run of the shared example from scratch, up to the selections: every ids.txt, and the RNA
    clusters, are byte-equal to the first run's (pool, reference training, scoring and sampling are all
    seeded)."""
    first = example_run[0] / "results" / "select"
    proc = run_snakemake(tmp_path, example_config(tmp_path), "--cores", "2", "select_report")
    assert proc.returncode == 0, proc.stderr[-4000:]
    second = tmp_path / "results" / "select"
    ids = sorted(p.relative_to(first) for p in first.rglob("ids.txt"))
    assert len({p.parts[0] for p in ids}) >= 2  # several strategies
    assert ids == sorted(p.relative_to(second) for p in second.rglob("ids.txt"))
    for rel in ids:
        content = (first / rel).read_bytes()
        assert content.strip(), rel
        assert content == (second / rel).read_bytes(), rel
    # RNA clusters too (the default cascaded workflow; linclust's would not repeat)
    clusters = Path("results", "pool", "cluster", "clusters.tsv")
    assert (example_run[0] / clusters).read_bytes() == (tmp_path / clusters).read_bytes()
