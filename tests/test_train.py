"""``bioprune train``: learning, exact resume after a kill, the distributed path, schedule and errors."""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from bioprune.cli import main
from bioprune.models.train import TrainSettings, lr_at

TINY = ["--backend", "rnafm", "--layers", "2", "--hidden", "32", "--heads", "4", "--ffn", "64"]


def toy_fasta(path, n=120, seed=0):
    """Periodic RNAs: a masked residue is predictable from its neighbours, so a model can beat ln(4)."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n):
            motif = "".join(rng.choice("ACGU") for _ in range(rng.randint(3, 5)))
            fh.write(f">s{i} toy\n{(motif * 40)[: rng.randint(20, 60)]}\n")
    return path


def state(path):
    return torch.load(path, weights_only=True)["state_dict"]


def same_weights(a, b, atol=0.0):
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys()
    return all(torch.allclose(sa[k], sb[k], atol=atol, rtol=0) for k in sa)


def run_train(data, out, *extra):
    return main(["train", str(data), "--out", str(out), *TINY, "--threads", "1", *extra])


def test_training_learns_below_uniform_loss(tmp_path):
    data = toy_fasta(tmp_path / "toy.fa", n=300)
    args = ["--hidden", "64", "--ffn", "128", "--max-steps", "200", "--lr", "3e-3", "--warmup", "20"]
    assert run_train(data, tmp_path / "o", *args, "--max-tokens-per-batch", "1024", "--eval-every", "50") == 0
    report = json.loads((tmp_path / "o" / "train_report.json").read_text())
    assert report["uniform_loss"] == pytest.approx(3.2189, abs=1e-3)  # ln(25)
    assert report["val_loss"] < 1.2 < 1.386  # below even a perfect residue-frequency guess (ln 4)
    assert report["val_perplexity"] == pytest.approx(2.718281828 ** report["val_loss"])
    lines = [json.loads(x) for x in (tmp_path / "o" / "train_log.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["kind"] == "train"]
    assert [x["step"] for x in train_lines] == list(range(1, 201))
    assert [x["step"] for x in lines if x["kind"] == "val"] == [50, 100, 150, 200]
    assert train_lines[-1]["loss"] < train_lines[0]["loss"] - 1.0
    assert not (tmp_path / "o" / "work").exists()  # work files are removed after success


def test_killed_run_resumes_to_identical_weights(tmp_path):
    data = toy_fasta(tmp_path / "toy.fa")
    common = ["--max-steps", "14", "--checkpoint-every", "4", "--max-tokens-per-batch", "512", "--lr", "2e-3"]
    assert run_train(data, tmp_path / "full", *common) == 0
    # "killed" after step 10: no checkpoint there, so the rerun resumes from step 8
    assert run_train(data, tmp_path / "cut", *common, "--stop-after-steps", "10") == 0
    assert not (tmp_path / "cut" / "model.pt").exists()
    assert (tmp_path / "cut" / "work" / "checkpoint.pt").exists()
    assert run_train(data, tmp_path / "cut", *common) == 0
    report = json.loads((tmp_path / "cut" / "train_report.json").read_text())
    assert report["resumed_from_step"] == 8
    assert same_weights(tmp_path / "full" / "model.pt", tmp_path / "cut" / "model.pt")
    strip = lambda p: [  # noqa: E731
        {k: v for k, v in json.loads(x).items() if k != "elapsed_s"} for x in p.read_text().splitlines()
    ]  # noqa: E731
    assert strip(tmp_path / "full" / "train_log.jsonl") == strip(tmp_path / "cut" / "train_log.jsonl")


def test_bf16_on_cpu_only_when_asked_and_close_to_fp32(tmp_path):
    """precision auto trains in fp32 on CPU (the same weights on every node); bf16 autocasts on CPU too
    (AMX / AVX-512 BF16), and its losses stay close to fp32's from the same start."""
    data = toy_fasta(tmp_path / "toy.fa")
    common = ["--max-steps", "6", "--max-tokens-per-batch", "512", "--lr", "2e-3"]
    reports = {}
    for precision in ("auto", "fp32", "bf16"):
        assert run_train(data, tmp_path / precision, *common, "--precision", precision) == 0
        reports[precision] = json.loads((tmp_path / precision / "train_report.json").read_text())
    assert [reports[p]["bf16_autocast"] for p in ("auto", "fp32", "bf16")] == [False, False, True]
    assert same_weights(tmp_path / "auto" / "model.pt", tmp_path / "fp32" / "model.pt")
    assert not same_weights(tmp_path / "bf16" / "model.pt", tmp_path / "fp32" / "model.pt")
    assert reports["bf16"]["val_loss"] == pytest.approx(reports["fp32"]["val_loss"], rel=0.02)


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    data = toy_fasta(tmp_path / "toy.fa")
    common = ["--max-steps", "8", "--checkpoint-every", "2", "--max-tokens-per-batch", "512"]
    assert run_train(data, tmp_path / "a", *common, "--lr", "1e-3", "--stop-after-steps", "5") == 0
    assert run_train(data, tmp_path / "a", *common, "--lr", "3e-3") == 0
    assert json.loads((tmp_path / "a" / "train_report.json").read_text())["resumed_from_step"] is None
    assert run_train(data, tmp_path / "b", *common, "--lr", "3e-3") == 0
    assert same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")


@pytest.mark.slow
def test_two_gloo_processes_take_the_steps_of_one_process_accumulating_two(tmp_path):
    """torchrun with 2 CPU processes (gloo, DDP): each step's two batches are split across processes;
    the result must equal one process accumulating the same two batches per step."""
    data = toy_fasta(tmp_path / "toy.fa")
    common = ["--max-steps", "6", "--max-tokens-per-batch", "512", "--lr", "2e-3", "--threads", "1", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*cmd, "-m", "bioprune", "train", str(data), "--out", str(tmp_path / "ddp"), *common],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "ddp" / "train_report.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 6
    assert main(["train", str(data), "--out", str(tmp_path / "one"), *common, "--accumulate", "2"]) == 0
    assert same_weights(tmp_path / "ddp" / "model.pt", tmp_path / "one" / "model.pt", atol=1e-6)


def test_fine_tune_from_init_checkpoint(tmp_path):
    data = toy_fasta(tmp_path / "toy.fa")
    assert run_train(data, tmp_path / "base", "--max-steps", "3") == 0
    base = tmp_path / "base" / "model.pt"
    args = ["train", str(data), "--out", str(tmp_path / "ft"), "--init", str(base), "--max-steps", "3"]
    assert main(args) == 0
    report = json.loads((tmp_path / "ft" / "train_report.json").read_text())
    assert report["init"]["checkpoint"] == str(base.resolve())
    assert not same_weights(base, tmp_path / "ft" / "model.pt")


def test_schedule_warms_up_then_decays_to_floor():
    s = TrainSettings(max_steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1, schedule="cosine")
    lrs = [lr_at(i, 100, s) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    lin = TrainSettings(max_steps=100, lr=1e-3, warmup=0.1, schedule="linear", min_lr_ratio=0.0)
    assert lr_at(55, 100, lin) == pytest.approx(1e-3 * 0.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs a budget"),
        (["--max-steps", "2", "--init", "x.pt", "--layers", "2"], "--init takes the architecture"),
        (["--max-steps", "2", "--mask-prob", "1.5"], "mask_prob"),
        (["--max-steps", "2", "--max-tokens-per-batch", "10"], "max_tokens_per_batch (10)"),
    ],
)
def test_bad_settings_are_one_line_errors(tmp_path, capsys, extra, message):
    data = toy_fasta(tmp_path / "toy.fa", n=10)
    args = ["train", str(data), "--out", str(tmp_path / "o"), "--threads", "1"]
    args += extra if "--init" in extra else [*TINY, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bioprune train: error:") and message in err[-1]


def test_bad_character_in_training_data_names_record(tmp_path, capsys):
    data = tmp_path / "bad.fa"
    data.write_text(">ok\nACGU\n>weird\nACGUE\n")
    assert run_train(data, tmp_path / "o", "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert "'weird'" in err and "'E' at position 5" in err


def test_esmc_trains_and_resumes_from_a_pool_folder(tmp_path):
    """The transformers backend through the same loop; data given as a pool folder."""
    rng = random.Random(0)
    pool = tmp_path / "pool"
    pool.mkdir()
    seqs = [
        "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(20, 70))) for _ in range(60)
    ]
    with gzip.open(pool / "sequences.fasta.gz", "wt") as fh:
        fh.writelines(f">p{i}\n{s}\n" for i, s in enumerate(seqs))
    esmc = [
        "--backend",
        "esmc",
        "--layers",
        "2",
        "--hidden",
        "32",
        "--heads",
        "4",
        "--ffn",
        "64",
        "--threads",
        "1",
    ]
    common = [*esmc, "--max-steps", "6", "--checkpoint-every", "2", "--max-tokens-per-batch", "512"]
    assert main(["train", str(pool), "--out", str(tmp_path / "full"), *common]) == 0
    assert main(["train", str(pool), "--out", str(tmp_path / "cut"), *common, "--stop-after-steps", "5"]) == 0
    assert main(["train", str(pool), "--out", str(tmp_path / "cut"), *common]) == 0
    assert json.loads((tmp_path / "cut" / "train_report.json").read_text())["resumed_from_step"] == 4
    assert same_weights(tmp_path / "full" / "model.pt", tmp_path / "cut" / "model.pt")
    report = json.loads((tmp_path / "full" / "train_report.json").read_text())
    assert report["model"]["backend"] == "esmc" and report["data"]["sequences"] == 60
