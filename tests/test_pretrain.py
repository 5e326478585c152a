"""Coreset pretraining: compute rules (same epochs / same steps), bookkeeping, untrained baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bioprune.cli import main
from bioprune.models.registry import build_model, load_model
from bioprune.models.train import TrainSettings, train
from bioprune.pretrain import steps_per_epoch, tokens_seen

ARCH = [
    "--backend",
    "rnafm",
    "--size",
    "tiny",
    "--layers",
    "1",
    "--hidden",
    "16",
    "--heads",
    "2",
    "--ffn",
    "32",
    "--max-tokens",
    "64",
]
SMALL = dict(layers=1, hidden=16, heads=2, ffn=32, max_tokens=64)


def fasta(write_fasta, name: str, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    recs = "".join(
        f">{name}{i}\n{''.join(rng.choice(list('ACGU'), rng.integers(8, 90)))}\n" for i in range(n)
    )
    return str(write_fasta(f"{name}.fa.gz", recs))


def test_steps_per_epoch_matches_the_trainer(tmp_path, write_fasta):
    data = fasta(write_fasta, "s", 40, 0)
    settings = TrainSettings(epochs=1, max_tokens_per_batch=300, val_fraction=0.1, seed=3)
    report = train(build_model("rnafm", "tiny", seed=0, **SMALL), data, tmp_path / "run", settings)
    model = build_model("rnafm", "tiny", seed=0, **SMALL)
    assert steps_per_epoch(data, model, settings, tmp_path / "tok") == report["steps_per_epoch"] > 1
    acc = TrainSettings(epochs=1, max_tokens_per_batch=300, val_fraction=0.1, seed=3, accumulate=3)
    assert steps_per_epoch(data, model, acc, tmp_path / "tok") == -(-report["batches_per_epoch"] // 3)


def _run(tmp_path, out, *extra):
    args = [
        "pretrain",
        "--out",
        str(tmp_path / out),
        *ARCH,
        "--max-tokens-per-batch",
        "300",
        "--epochs",
        "2",
        *extra,
    ]
    assert main(args) == 0
    return json.loads((tmp_path / out / "pretrain_report.json").read_text())


def test_same_epochs_and_same_steps(tmp_path, write_fasta):
    small = fasta(write_fasta, "small", 12, 1)
    big = fasta(write_fasta, "big", 60, 2)
    summary = tmp_path / "summary.json"
    summary.write_text(
        json.dumps({"strategy": "topi", "multiplier": 1, "budget": {"k": 12}, "n_selected": 12})
    )
    epochs = _run(
        tmp_path,
        "e",
        small,
        "--selection-summary",
        str(summary),
        "--strategy",
        "topi",
        "--budget",
        "n12",
        "--selection-seed",
        "0",
    )
    assert epochs["compute"] == "same_epochs" and epochs["steps"] == 2 * epochs["steps_per_epoch"]
    assert epochs["selection"]["n_selected"] == 12 and epochs["strategy"] == "topi"
    steps = _run(tmp_path, "s", small, "--compute", "same_steps", "--steps-like", big)
    ref = steps["steps_like_steps_per_epoch"]
    assert steps["steps"] == 2 * ref > epochs["steps"]
    assert steps["steps_per_epoch"] == epochs["steps_per_epoch"]  # its own epochs are unchanged
    assert steps["epochs_completed"] > 2
    # tokens seen: every batch's non-pad tokens, as the log says
    log = [json.loads(x) for x in (tmp_path / "s" / "train_log.jsonl").read_text().splitlines()]
    assert steps["tokens_seen"] == sum(e["tokens"] for e in log if e["kind"] == "train") > 0
    assert tokens_seen(tmp_path / "s" / "train_log.jsonl") == steps["tokens_seen"]
    assert steps["wall_s"] > 0 and steps["val_loss"] is not None


def test_untrained_is_the_initialisation_of_the_seed(tmp_path):
    rep = _run(tmp_path, "u", "--untrained", "--seed", "5", "--strategy", "untrained", "--budget", "none")
    assert rep["steps"] == 0 and rep["tokens_seen"] == 0 and rep["compute"] == "untrained"
    got = load_model(tmp_path / "u" / "model.pt").state_dict()
    want = build_model("rnafm", "tiny", seed=5, **SMALL).state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--compute", "same_steps", "x.fa"], "same_steps needs --steps-like"),
        (["--init", "m.pt", "x.fa"], "from scratch"),
        ([], "coreset FASTA"),
    ],
)
def test_refusals(tmp_path, capsys, extra, message):
    assert main(["pretrain", "--out", str(tmp_path / "o"), *ARCH, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "pretrain_report.json").exists()
