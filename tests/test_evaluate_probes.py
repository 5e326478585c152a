"""Embeddings, probes, perplexity and the unselected set, on tiny random models and toy data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bioprune.cli import main
from bioprune.evaluate.embed import embed
from bioprune.evaluate.perplexity import mlm_perplexity, write_unselected_set
from bioprune.evaluate.probes import fit_dense, fit_pairs
from bioprune.evaluate.runner import evaluate_task
from bioprune.evaluate.tasks import spec_from_config
from bioprune.fasta import read_fasta
from bioprune.models.registry import build_model, save_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TASK = {
    "train": "example/tasks/trna/train.dbn.gz",
    "valid": "example/tasks/trna/valid.dbn.gz",
    "test": "example/tasks/trna/test.dbn.gz",
}


def tiny(backend="rnafm", seed=0):
    return build_model(backend, "tiny", layers=1, hidden=32, heads=2, ffn=64, max_tokens=130, seed=seed)


def test_embed_batching_does_not_change_embeddings():
    model = tiny()
    seqs = ["ACGUACGU", "GGGAAACCC", "AU", "ACGUACGUACGUAAAA"]
    small = embed(model, seqs, pooled=False, batch_tokens=20)
    large = embed(model, seqs, pooled=False, batch_tokens=10_000)
    for a, b, s in zip(small, large, seqs, strict=True):
        assert a.shape == (len(s), 32)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    pooled = embed(model, seqs, pooled=True, batch_tokens=20)
    torch.testing.assert_close(pooled[1], large[1].mean(0), atol=1e-5, rtol=1e-5)


def test_embed_crops_to_the_model_window():
    model = tiny()
    out = embed(model, ["A" * 300], pooled=False)
    assert out[0].shape[0] == 128


def test_dense_probe_learns_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = torch.from_numpy(rng.normal(size=(300, 8)) + 3.0 * np.eye(8)[y]).float()
    kw = dict(task="class", n_classes=3, epochs=15, seed=4)
    a = fit_dense(x[:200], y[:200], x[200:250], y[200:250], **kw)
    b = fit_dense(x[:200], y[:200], x[200:250], y[200:250], **kw)
    pa, pb = a.predict(x[250:]), b.predict(x[250:])
    assert (pa == y[250:]).mean() > 0.9
    assert np.array_equal(pa, pb) and a.history == b.history
    assert a.valid_score == max(a.history)


def test_dense_regression_probe():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0]) + 10
    r = fit_dense(
        torch.from_numpy(x[:200]).float(),
        y[:200],
        torch.from_numpy(x[200:250]).float(),
        y[200:250],
        task="regression",
        head="linear",
        epochs=40,
        lr=1e-2,
        seed=0,
    )
    pred = r.predict(torch.from_numpy(x[250:]).float())
    assert np.corrcoef(pred, y[250:])[0, 1] > 0.95
    assert abs(pred.mean() - y[250:].mean()) < 1.0  # targets are de-standardised


@pytest.mark.slow
def test_pair_probe_learns_planted_pairs():
    # partners share a random vector; unpaired residues get their own: the outer product finds them
    rng = np.random.default_rng(2)

    def example(n=24):
        x = rng.normal(size=(n, 16))
        order = rng.permutation(n)
        pairs = []
        for k in range(0, 8, 2):
            i, j = sorted(order[k : k + 2])
            if j - i > 3:
                x[j] = x[i]
                pairs.append((int(i), int(j)))
        return torch.from_numpy(x).float(), sorted(pairs)

    train = [example() for _ in range(60)]
    valid = [example() for _ in range(15)]
    res = fit_pairs(
        [a for a, _ in train],
        [b for _, b in train],
        [a for a, _ in valid],
        [b for _, b in valid],
        epochs=12,
        lr=3e-3,
        seed=0,
    )
    assert res.valid_score > 0.6
    assert 0 < res.extra["threshold"] < 1
    pred = res.predict([valid[0][0]])[0]
    assert all(j - i > 3 for i, j in pred)
    assert len({i for p in pred for i in p}) == 2 * len(pred)  # one partner per base


def test_perplexity_is_deterministic_and_batch_independent():
    model = tiny()
    recs = [(f"s{i}", "ACGU" * (3 + i)) for i in range(6)]
    a = mlm_perplexity(model, recs, batch_tokens=40)
    b = mlm_perplexity(model, list(reversed(recs)), batch_tokens=10_000)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert a["masked_residues"] == b["masked_residues"] > 0
    # a random model is near the uniform guess over the vocabulary
    assert 5 < a["perplexity"] < 60
    c = mlm_perplexity(model, recs, mask_seed=1)
    assert c["masked_residues"] != a["masked_residues"] or c["loss"] != a["loss"]


def test_unselected_set(tmp_path, write_fasta):
    pool = write_fasta("pool.fa.gz", "".join(f">p{i} fam\n{'ACGU' * 3}\n" for i in range(50)))
    (tmp_path / "a.txt").write_text("".join(f"p{i}\n" for i in range(0, 50, 2)))
    (tmp_path / "b.txt").write_text("p1\np3\np1\n")
    out = tmp_path / "set"
    out.mkdir()
    rep = write_unselected_set(pool, [tmp_path / "a.txt", tmp_path / "b.txt"], out, max_sequences=10, seed=0)
    assert rep["pool_records"] == 50 and rep["selected_ids"] == 27 and rep["never_selected"] == 23
    ids = [r.id for r in read_fasta(out / "sequences.fasta.gz")]
    assert len(ids) == 10 == rep["sampled"]
    nums = [int(i[1:]) for i in ids]
    assert nums == sorted(nums) and all(n % 2 == 1 and n not in (1, 3) for n in nums)
    rep_all = write_unselected_set(pool, [tmp_path / "a.txt"], out, max_sequences=100, seed=0)
    assert rep_all["sampled"] == 25


def test_evaluate_cli_on_carried_example(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    model = tmp_path / "m.pt"
    save_model(tiny(), model)
    task = {
        "name": "iso",
        "kind": "seq_class",
        "label_regex": "^D([A-Z])",
        "epochs": 5,
        "max_records": {"train": 120, "test": 60},
        **EXAMPLE_TASK,
    }
    args = [
        "evaluate",
        "--model",
        str(model),
        "--task-json",
        json.dumps(task),
        "--out",
        str(tmp_path / "o"),
        "--strategy",
        "topi",
        "--budget",
        "rate0.99",
        "--model-seed",
        "1",
    ]
    assert main(args) == 0
    d = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert (d["strategy"], d["budget"], d["seed"], d["headline"]) == ("topi", "rate0.99", 1, "accuracy")
    assert set(d["metrics"]) == {"accuracy", "macro_f1"}
    assert d["counts"]["train"]["used"] == 120 and d["counts"]["train"]["sampled_out"] == 300
    assert d["counts"]["test"]["used"] == 60 and len(d["classes"]) == 21
    first = d["metrics"]
    assert main(args) == 0  # same seeds, same numbers
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["metrics"] == first


@pytest.mark.slow
def test_evaluate_rna_ss_on_carried_example(monkeypatch):
    monkeypatch.chdir(ROOT)
    caps = {"train": 40, "valid": 20, "test": 20}
    spec = spec_from_config("ss", {"kind": "rna_ss", "epochs": 2, "max_records": caps, **EXAMPLE_TASK})
    out = evaluate_task(spec, tiny(), seed=0)
    assert set(out["metrics"]) == {"f1", "precision", "recall", "mcc"}
    assert all(0 <= v <= 1 for k, v in out["metrics"].items() if k != "mcc")
    assert out["counts"]["test"]["used"] == 20
    assert len(out["probe"]["valid_curve"]) == 2


def test_evaluate_perplexity_with_empty_set(tmp_path):
    empty = tmp_path / "e.fasta.gz"
    with gzip.open(empty, "wb"):
        pass
    spec = spec_from_config("ppl", {"kind": "mlm_perplexity", "test": str(empty)})
    out = evaluate_task(spec, tiny())
    assert out["metrics"] == {"perplexity": None, "loss": None} and "no sequences" in out["note"]


def test_perplexity_set_with_a_binary_id_list_is_one_line(tmp_path, write_fasta, capsys):
    """A non-UTF-8 id list gave UnicodeDecodeError (issue 12.9)."""
    write_fasta("pool.fa.gz", "".join(f">p{i} fam\n{'ACGU' * 3}\n" for i in range(5)))
    pool = tmp_path / "pool"
    pool.mkdir()
    (tmp_path / "pool.fa.gz").rename(pool / "sequences.fasta.gz")
    (tmp_path / "ids.txt").write_bytes(b"p1\n\xff\xfe\x00p2\n")
    argv = ["perplexity-set", "--pool", str(pool), "--out", str(tmp_path / "o"), str(tmp_path / "ids.txt")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bioprune perplexity-set: error: {tmp_path / 'ids.txt'}: is not UTF-8 text (byte 3): "
                   "expected one id per line"]  # fmt: skip
    assert not (tmp_path / "o" / "sequences.fasta.gz").exists()


def test_evaluate_refuses_unselected_task_without_test(tmp_path):
    model = tmp_path / "m.pt"
    save_model(tiny(), model)
    task = json.dumps({"name": "p", "kind": "mlm_perplexity", "source": "unselected_pool"})
    assert main(["evaluate", "--model", str(model), "--task-json", task, "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o" / "metrics.json").exists()
