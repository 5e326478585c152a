"""``bioprune reference``: the D_sub draw, the three ways to get θ̃, and the workflow's arguments."""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import random
import shlex
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from bioprune import reference as R
from bioprune.cli import main
from bioprune.config import validate_config
from bioprune.errors import ConfigError
from bioprune.fasta import read_fasta
from bioprune.models.registry import build_model, load_model, save_model
from bioprune.plan.models import pretrain_args, reference_args

TINY = ["--backend", "rnafm", "--layers", "2", "--hidden", "32", "--heads", "4", "--ffn", "64"]
FAST = ["--max-tokens-per-batch", "1024", "--threads", "1", "--val-fraction", "0.1"]


def make_pool(folder, n=80, seed=0):
    """A minimal pool folder: sequences.fasta.gz and sequences.parquet (id column) in the same order."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    recs = [(f"r{i:03d}", "".join(rng.choice("ACGU") for _ in range(rng.randint(20, 80)))) for i in range(n)]
    with gzip.open(folder / "sequences.fasta.gz", "wt") as fh:
        fh.writelines(f">{rid} fam{i % 5}\n{seq}\n" for i, (rid, seq) in enumerate(recs))
    pq.write_table(
        pa.table({"id": [r for r, _ in recs], "length": [len(s) for _, s in recs]}),
        folder / "sequences.parquet",
    )
    return dict(recs)


def read_ids(path):
    return path.read_text().split()


def test_reference_from_scratch(tmp_path):
    pool = make_pool(tmp_path / "pool")
    out = tmp_path / "ref"
    args = ["reference", str(tmp_path / "pool"), "--out", str(out), "--dsub-size", "30", "--dsub-seed", "3"]
    assert main([*args, *TINY, *FAST, "--max-steps", "4"]) == 0
    ids = read_ids(out / "dsub_ids.txt")
    assert len(ids) == 30 == len(set(ids))
    assert ids == sorted(ids)  # pool order (the ids are zero-padded in pool order)
    recs = {r.id: r.seq.decode() for r in read_fasta(out / "dsub.fasta.gz")}
    assert list(recs) == ids and all(recs[i] == pool[i] for i in ids)
    report = json.loads((out / "reference_report.json").read_text())
    assert report["mode"] == "scratch" and report["dsub_records"] == 30 and report["pool_records"] == 80
    assert report["train"]["steps"] == 4
    train_report = json.loads((out / "train_report.json").read_text())
    assert train_report["data"]["sequences"] == 30  # trained on D_sub, not the pool
    assert load_model(out / "model.pt").spec.layers == 2
    # the draw is seeded: same seed, same D_sub; another seed, another one
    assert main([*args[:-1], "3", *TINY, *FAST, "--max-steps", "1", "--out", str(tmp_path / "again")]) == 0
    assert read_ids(tmp_path / "again" / "dsub_ids.txt") == ids
    other = [*args[:-1], "4", *TINY, *FAST, "--max-steps", "1", "--out", str(tmp_path / "other")]
    assert main(other) == 0
    assert read_ids(tmp_path / "other" / "dsub_ids.txt") != ids


def test_reference_fraction_and_checkpoint_modes(tmp_path):
    make_pool(tmp_path / "pool", n=50)
    init = save_model(
        build_model("rnafm", "tiny", seed=1, layers=2, hidden=32, heads=4, ffn=64), tmp_path / "init.pt"
    )
    base = ["reference", str(tmp_path / "pool"), "--dsub-fraction", "0.2", *FAST]
    assert main([*base, "--out", str(tmp_path / "as_is"), "--init", str(init), "--no-finetune"]) == 0
    kept = torch.load(tmp_path / "as_is" / "model.pt", weights_only=True)["state_dict"]
    orig = torch.load(init, weights_only=True)["state_dict"]
    assert all(torch.equal(kept[k], orig[k]) for k in orig)
    assert len(read_ids(tmp_path / "as_is" / "dsub_ids.txt")) == 10
    assert json.loads((tmp_path / "as_is" / "reference_report.json").read_text())["mode"] == "checkpoint"

    assert main([*base, "--out", str(tmp_path / "ft"), "--init", str(init), "--lr", "1e-3"]) == 0
    report = json.loads((tmp_path / "ft" / "reference_report.json").read_text())
    assert report["mode"] == "finetune" and report["train"]["epochs_completed"] == 1.0  # one epoch by default
    tuned = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)["state_dict"]
    assert not torch.equal(tuned["net.lm_head.dense.weight"], orig["net.lm_head.dense.weight"])


def test_reference_rejects_pool_whose_table_and_fasta_disagree(tmp_path, capsys):
    make_pool(tmp_path / "pool", n=20)
    table = pq.read_table(tmp_path / "pool" / "sequences.parquet").to_pydict()
    table["id"][5] = "someone_else"
    pq.write_table(pa.table(table), tmp_path / "pool" / "sequences.parquet")
    args = ["reference", str(tmp_path / "pool"), "--out", str(tmp_path / "o"), "--dsub-fraction", "1.0"]
    assert main([*args, *TINY, *FAST, "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "'someone_else'" in err and "sequences.fasta.gz" in err
    assert not (tmp_path / "o" / "dsub_ids.txt").exists()


OUTPUTS = ["dsub.fasta.gz", "dsub_ids.txt", "model.pt", "reference_report.json"]


def test_a_failed_reference_run_leaves_none_of_its_outputs(tmp_path, capsys):
    """The D_sub files used to be written before the checkpoint was loaded or the model trained: any
    failure left 2 of the 4 outputs, and Snakemake then reported IncompleteFilesException (issue 12.4)."""
    make_pool(tmp_path / "pool", n=30)
    (tmp_path / "bad.pt").write_text("not a checkpoint\n")
    out = tmp_path / "ref"
    base = ["reference", str(tmp_path / "pool"), "--out", str(out), "--dsub-size", "10", *FAST]
    assert main([*base, "--init", str(tmp_path / "bad.pt")]) == 2
    assert "bad.pt: is a text file" in capsys.readouterr().err
    assert not any((out / name).exists() for name in OUTPUTS)
    # a training run stopped half-way (as a kill would): nothing published, its checkpoint waits
    assert main([*base, *TINY, "--max-steps", "4", "--stop-after-steps", "2", "--checkpoint-every", "1"]) == 0
    assert not any((out / name).exists() for name in OUTPUTS)
    assert (out / R.IN_PROGRESS / "work" / "checkpoint.pt").exists()
    assert main([*base, *TINY, "--max-steps", "4", "--checkpoint-every", "1"]) == 0  # resumes, publishes
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUTS, "train_log.jsonl", "train_report.json"])
    assert json.loads((out / "train_report.json").read_text())["resumed_from_step"] >= 1
    # an earlier failed run's finished files in in_progress/ are never published by a later run
    published = (out / "train_report.json").read_text()
    (out / R.IN_PROGRESS).mkdir()
    (out / R.IN_PROGRESS / "train_report.json").write_text('{"stale": true}')
    init = save_model(build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64), tmp_path / "i.pt")
    assert main([*base, "--init", str(init), "--no-finetune"]) == 0  # no training: no train report
    assert (out / "train_report.json").read_text() == published
    assert not (out / R.IN_PROGRESS).exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dsub-size", "3", "--dsub-fraction", "0.5"], "exactly one of"),
        ([], "exactly one of"),
        (["--dsub-fraction", "0"], "--dsub-fraction must be in"),
        (["--dsub-size", "3", "--no-finetune"], "--no-finetune needs --init"),
    ],
)
def test_reference_argument_errors(tmp_path, capsys, extra, message):
    make_pool(tmp_path / "pool", n=10)
    assert main(["reference", str(tmp_path / "pool"), "--out", str(tmp_path / "o"), *TINY, *extra]) == 2
    assert message in capsys.readouterr().err


def default_config():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    return validate_config(config)


def parse_reference_cli(args: dict) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    R.add_arguments(parser)
    return parser.parse_args(
        ["pool", "--out", "o", *shlex.split(" ".join(args[k] for k in ("dsub", "model", "train")))]
    )


def test_workflow_args_from_default_config_are_valid_cli():
    config = default_config()
    args = reference_args(config)
    assert args["launcher"] == "python"
    ns = parse_reference_cli(args)
    assert ns.backend == "rnafm" and ns.size == config["model"]["size"] and ns.init is None
    assert ns.epochs == config["reference"]["scratch_epochs"]
    assert ns.dsub_fraction == config["reference"]["dsub_fraction"] and ns.dsub_size is None
    assert (
        ns.lr == config["train"]["lr"] and ns.max_tokens_per_batch == config["train"]["max_tokens_per_batch"]
    )


def test_workflow_args_follow_settings():
    config = default_config()
    c = copy.deepcopy(config)
    c["model"].update(checkpoint="weights/RNA-FM_pretrained.pth", overrides={"layers": 3})
    c["reference"].update(dsub_size=500, lr=1e-5, finetune=False)
    c["train"]["processes"] = 4
    args = reference_args(c)
    ns = parse_reference_cli(args)
    assert ns.init == "weights/RNA-FM_pretrained.pth" and ns.no_finetune and ns.layers is None
    assert ns.dsub_size == 500 and ns.lr == 1e-5 and ns.epochs == c["reference"]["finetune_epochs"]
    assert args["launcher"].startswith("torchrun") and "--nproc-per-node 4" in args["launcher"]
    c = copy.deepcopy(config)
    c["model"]["overrides"] = {"layers": 3, "max_tokens": 512}
    ns = parse_reference_cli(reference_args(c))
    assert ns.layers == 3 and ns.max_tokens == 512
    c = copy.deepcopy(config)
    c["model"]["backend"] = "esmc"
    with pytest.raises(ConfigError, match="esmc is for protein"):
        reference_args(c)
    c["alphabet"] = "protein"
    assert parse_reference_cli(reference_args(c)).backend == "esmc"


def test_residue_entropy_counts_tokens_as_the_model_reads_them(tmp_path):
    path = tmp_path / "d.fasta"
    path.write_text(">a\nACGU\n>b\nacgt\n>c\nAAAA\n")  # t -> U, lower case -> upper: A 6, C 2, G 2, U 2
    model = build_model("rnafm", "tiny", layers=1, hidden=16, heads=2, ffn=16, seed=0)
    p = torch.tensor([6, 2, 2, 2], dtype=torch.float64) / 12
    assert R.residue_entropy(path, model) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-12)


def test_learning_check_warns_or_fails_near_the_entropy(caplog):
    ok = R.learning_check(1.385, 1.30, 0.02, "fail")
    assert ok["learned"] and ok["entropy_gain"] == pytest.approx((1.385 - 1.30) / 1.385)
    with caplog.at_level("WARNING"):
        weak = R.learning_check(1.385, 1.37, 0.02, "warn")
    assert weak["learned"] is False and "has learned little beyond residue frequencies" in caplog.text
    with pytest.raises(ConfigError, match="is 1.1% below the residue entropy"):
        R.learning_check(1.385, 1.37, 0.02, "fail")
    assert R.learning_check(1.385, None, 0.02, "fail")["learned"] is None


def test_reference_report_records_the_learning_check(tmp_path, caplog):
    make_pool(tmp_path / "pool")
    out = tmp_path / "ref"
    args = ["reference", str(tmp_path / "pool"), "--out", str(out), "--dsub-size", "40", *TINY, *FAST]
    assert main([*args, "--max-steps", "2"]) == 0  # two steps: at the entropy, a warning
    learned = json.loads((out / "reference_report.json").read_text())["learned"]
    assert learned["learned"] is False and learned["residue_entropy"] == pytest.approx(1.386, abs=0.01)
    assert "above the residue entropy" in caplog.text and "has learned little" in caplog.text
    assert main([*args, "--max-steps", "2", "--unlearned", "fail", "--out", str(tmp_path / "f")]) != 0
    assert "reference_report.json" not in {p.name for p in (tmp_path / "f").glob("*")}


@pytest.mark.parametrize("step_args", [reference_args, pretrain_args])
def test_a_shape_that_cannot_be_built_stops_the_workflow_at_start_up(step_args):
    """hidden % heads != 0 passed start-up and failed when the first model was built (issue 12.12)."""
    c = default_config()
    c["model"]["overrides"] = {"hidden": 30, "heads": 4}
    with pytest.raises(
        ConfigError, match="model.overrides .*hidden size 30 is not divisible by 4 attention heads"
    ):
        step_args(c)
    c["model"]["checkpoint"] = "weights/model.pt"  # the checkpoint fixes the shape: overrides ignored
    step_args(c)
