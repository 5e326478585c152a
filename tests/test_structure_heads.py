"""2-D structure heads (attention regression, CNN), constrained decoding and the floors, on toy data."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from bioprune.cli import main
from bioprune.dbn import pairs as dbn_pairs
from bioprune.errors import ConfigError
from bioprune.evaluate.embed import embed, iter_attention
from bioprune.evaluate.floors import compute_floor, kmer_floor
from bioprune.evaluate.pairfeatures import (
    CANONICAL,
    allowed_pairs,
    apc,
    attention_features,
    distance_bins,
    pair_onehot,
)
from bioprune.evaluate.probes import decode_pairs
from bioprune.evaluate.runner import evaluate_task, prepare_data
from bioprune.evaluate.structure_heads import Source, fit_structure
from bioprune.evaluate.tasks import spec_from_config
from bioprune.models.registry import build_model

COMP = {"A": "U", "U": "A", "G": "C", "C": "G"}


def tiny(backend="rnafm", seed=0):
    return build_model(backend, "tiny", layers=2, hidden=32, heads=2, ffn=64, max_tokens=130, seed=seed)


def hairpin_record(rng: np.random.Generator) -> tuple[str, str]:
    """A random A/C/G/U sequence of 30-40 nt holding one planted 6-bp G/C-rich stem with a 4-nt loop at a
    random place; the rest of the sequence is unpaired."""
    n = int(rng.integers(30, 41))
    seq = list(rng.choice(list("ACGU"), n))
    start = int(rng.integers(0, n - 16))
    stem = list(rng.choice(list("GC"), 6))
    seq[start : start + 6] = stem
    seq[start + 6 : start + 10] = list("GAAA")
    seq[start + 10 : start + 16] = [COMP[c] for c in reversed(stem)]
    struct = ["."] * n
    struct[start : start + 6] = "(((((("
    struct[start + 10 : start + 16] = "))))))"
    return "".join(seq), "".join(struct)


def write_dbn(path, records):
    path.write_text("".join(f">r{i}\n{s}\n{t}\n" for i, (s, t) in enumerate(records)))
    return str(path)


@pytest.fixture
def toy_task(tmp_path):
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 60), ("valid", 20), ("test", 30)):
        files[split] = write_dbn(tmp_path / f"{split}.dbn", [hairpin_record(rng) for i in range(n)])
    return files


def toy_splits(files):
    seqs, pairs = {}, {}
    for split, path in files.items():
        lines = open(path).read().split("\n")
        seqs[split] = lines[1::3][: len(lines) // 3]
        pairs[split] = [dbn_pairs(t) for t in lines[2::3][: len(lines) // 3]]
    return seqs, pairs


def spec(files, **kw):
    settings = {"kind": "rna_ss", **files, "epochs": 6, "batch_size": 4, "lr": 3e-3, **kw}
    return spec_from_config("toy", settings)


def chance_f1(seqs, pairs):
    """F1 of predicting every allowed pair (what a head that learned nothing approaches at best)."""
    from bioprune.evaluate import metrics as M

    scores = []
    for s, p in zip(seqs, pairs, strict=True):
        i, j = np.nonzero(allowed_pairs(s, 3))
        scores.append(M.pair_scores(list(zip(i.tolist(), j.tolist(), strict=True)), p, len(s))["f1"])
    return float(np.mean(scores))


# -- pair features -----------------------------------------------------------------------------------------
def test_pair_features():
    x = pair_onehot("AUGT")
    assert x.shape == (16, 4, 4)
    assert x[0 * 4 + 3, 0, 1] == 1 and x[:, 0, 1].sum() == 1  # A-U
    assert x[2 * 4 + 3, 2, 3] == 1  # G-T (T counts as U)
    assert pair_onehot("ANU")[:, 1].sum() == 0  # N: no channel
    d = distance_bins(50)
    assert torch.equal(d.sum(0), torch.ones(50, 50))
    assert torch.equal(d[:, 3, 10], d[:, 10, 3]) and not torch.equal(d[:, 0, 1], d[:, 0, 40])


def test_allowed_pairs_are_canonical_and_leave_a_hairpin_loop():
    seq = "GGGAAAUCCCUGNA"
    m = allowed_pairs(seq, 3)
    for i, j in zip(*np.nonzero(m), strict=True):
        assert j - i > 3 and seq[i] + seq[j] in CANONICAL
    assert m[0, 7] and not m[0, 3] and not m[3, 4]  # G-C ok; too close; A-A never
    assert not m[:, 12].any() and not m[12].any()  # N pairs with nothing


def test_apc_and_symmetrised_attention():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.random((3, 7, 7)))
    f = attention_features(a)
    assert torch.allclose(f, f.transpose(-1, -2), atol=1e-6)
    outer = torch.outer(torch.arange(1.0, 6.0), torch.arange(2.0, 7.0))[None]  # rank one: APC removes it
    assert torch.allclose(apc(outer), torch.zeros_like(outer), atol=1e-9)


def test_constrained_decoder_never_breaks_the_rules():
    rng = np.random.default_rng(3)
    for trial in range(30):
        n = int(rng.integers(5, 60))
        seq = "".join(rng.choice(list("ACGUN"), n))
        prob = rng.random((n, n))
        prob = (prob + prob.T) / 2
        got = decode_pairs(prob, 0.05, 3, allowed_pairs(seq, 3))
        used = [b for p in got for b in p]
        assert len(used) == len(set(used))  # one partner per base
        for i, j in got:
            assert j - i > 3  # hairpin loop of at least 3
            assert seq[i] + seq[j] in CANONICAL
        # without the restriction, the same probabilities do pair non-canonical bases
        free = decode_pairs(prob, 0.05, 3)
        if trial == 0:
            assert any(seq[i] + seq[j] not in CANONICAL for i, j in free)


# -- models expose attention --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["rnafm", "esmc"])
def test_attention_maps_match_the_embedding(backend, monkeypatch):
    model = tiny(backend)
    seqs = ["ACGUACGUAC", "GGGAAACCCUUA"] if backend == "rnafm" else ["MKTAYIAK", "MLKNVQVQLVAA"]
    got = {i: (h, a) for i, h, a in iter_attention(model, seqs)}
    ref = embed(model, seqs, pooled=False)
    monkeypatch.setattr("bioprune.evaluate.embed.ATTENTION_FLOATS", 1)  # one sequence per batch
    alone = {i: a for i, _, a in iter_attention(model, seqs)}
    for i, s in enumerate(seqs):
        h, a = got[i]
        assert a.shape == (2, 2, len(s), len(s))
        torch.testing.assert_close(h, ref[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a, alone[i], atol=1e-5, rtol=1e-5)  # padding changes nothing
        assert float(a.min()) >= 0


# -- heads learn a planted hairpin ------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_thread():
    """Toy maps are tiny: with two threads on a shared 2-core machine, thread hand-offs dominate."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_onehot_cnn_learns_a_planted_hairpin(toy_task):
    seqs, pairs = toy_splits(toy_task)
    res = fit_structure(spec(toy_task, structure_head="cnn"), seqs, pairs, None, seed=0)
    chance = chance_f1(seqs["test"], pairs["test"])
    assert res.metrics["f1"] > max(0.5, 3 * chance), (res.metrics, chance)
    assert 0 < res.probe["threshold"] < 1


class PlantedAttention(type(tiny())):
    """A tiny RNA-FM whose first attention head attends from each base to its partner (plus noise) in
    the planted structures, as a model that learned base pairing would; the other heads are noise."""

    structures: dict[str, list[tuple[int, int]]] = {}

    def embed_with_attention(self, tokens):
        hidden, maps = super().embed_with_attention(tokens)
        rng = torch.Generator().manual_seed(0)
        planted = torch.rand(maps.shape, generator=rng) * 0.5
        letters = {self.tokenizer.index[c]: c for c in "ACGU"}
        for row in range(tokens.shape[0]):
            seq = "".join(letters.get(int(t), "") for t in tokens[row])
            for i, j in self.structures.get(seq, []):
                planted[row, 0, 0, i + 1, j + 1] += 1.0  # +1: the <cls> token comes first
        return hidden, planted


def test_attention_head_learns_pairs_planted_in_attention(toy_task):
    seqs, pairs = toy_splits(toy_task)
    model = PlantedAttention(layers=2, hidden=32, heads=2, ffn=64, max_tokens=130)
    model.structures = {q: p for split in seqs for q, p in zip(seqs[split], pairs[split], strict=True)}
    res = fit_structure(spec(toy_task, structure_head="attention"), seqs, pairs, Source(model), seed=0)
    assert res.probe["features"] == 4
    chance = chance_f1(seqs["test"], pairs["test"])
    assert res.metrics["f1"] > 0.9, (res.metrics, chance)
    # the same head on one-hot input (its floor) cannot see the stem: pair type + distance only
    floor = fit_structure(spec(toy_task, structure_head="attention"), seqs, pairs, None, seed=0)
    assert floor.metrics["f1"] < res.metrics["f1"] - 0.3


@pytest.mark.slow
def test_cnn_head_with_a_model_learns_and_is_seeded(toy_task):
    seqs, pairs = toy_splits(toy_task)
    s = spec(toy_task, structure_head="cnn")
    model = tiny()
    a = fit_structure(s, seqs, pairs, Source(model), seed=1)
    b = fit_structure(s, seqs, pairs, Source(model), seed=1)
    assert a.metrics == b.metrics and a.probe["valid_curve"] == b.probe["valid_curve"]
    assert a.probe["attention_channels"] == 2  # one per layer
    assert a.metrics["f1"] > max(0.5, 3 * chance_f1(seqs["test"], pairs["test"]))


def test_attention_head_on_a_model_runs_through_evaluate(toy_task):
    s = spec(toy_task, structure_head="attention")
    out = evaluate_task(s, tiny(), seed=0)
    assert out["probe"]["head"] == "attention"
    assert out["probe"]["features"] == 4  # 2 layers x 2 heads
    assert 0 <= out["metrics"]["f1"] <= 1
    assert out["counts"]["test"]["used"] == 30


def test_pair_head_keeps_its_unconstrained_default(toy_task):
    assert spec(toy_task).canonical is False
    assert spec(toy_task, structure_head="cnn").canonical is True
    assert spec(toy_task, structure_head="cnn", canonical_only=False).canonical is False


def test_structure_settings_are_validated(toy_task):
    with pytest.raises(ConfigError, match="structure_head"):
        spec(toy_task, structure_head="transformer")
    with pytest.raises(ConfigError, match="cnn_blocks"):
        spec(toy_task, cnn_blocks=0)
    with pytest.raises(ConfigError, match="only rna_ss"):
        spec_from_config("x", {"kind": "seq_class", "train": "a", "test": "b", "structure_head": "cnn"})


# -- floors -------------------------------------------------------------------------------------------------
def test_floor_uses_the_models_splits(tmp_path, toy_task):
    """The floor sees exactly the records evaluate scores: same model filters (window) and seeded caps."""
    rng = np.random.default_rng(5)
    long = [hairpin_record(rng) for _ in range(5)]
    long = [(s * 5, t * 5) for s, t in long]  # 150-200 nt: over the model's 128-residue window
    train = write_dbn(tmp_path / "train_mixed.dbn", long + [hairpin_record(rng) for i in range(40)])
    s = spec(
        {**toy_task, "train": train}, structure_head="cnn", epochs=1, max_records={"train": 30, "test": 12}
    )
    model = build_model("rnafm", "tiny", layers=1, hidden=16, heads=2, ffn=32, max_tokens=130, seed=0)
    ref = prepare_data(s, model, 3)
    out = compute_floor(s, prepare_data(s, model, 3), 3)
    evaluated = evaluate_task(s, model, seed=3)
    assert out["counts"] == evaluated["counts"]
    assert out["counts"]["train"]["longer_than_model"] == 5
    assert out["counts"]["train"]["used"] == 30 and out["counts"]["test"]["used"] == 12
    assert [e.id for e in ref.splits["train"]] == [e.id for e in prepare_data(s, model, 3).splits["train"]]
    assert out["strategy"] == "floor" and out["floor"] == "onehot_cnn"


def test_floor_cli_writes_a_report_row(tmp_path, toy_task):
    s = spec(toy_task, structure_head="cnn", epochs=1)
    out = tmp_path / "floors" / "toy.json"
    rc = main(
        ["floor", "--task-json", json.dumps(s.to_dict()), "--out", str(out), "--seed", "0",
         "--backend", "rnafm", "--size", "tiny", "--layers", "1", "--hidden", "16", "--heads", "2",
         "--ffn", "32"]
    )  # fmt: skip
    assert rc == 0
    d = json.loads(out.read_text())
    assert set(d["metrics"]) == {"f1", "precision", "recall", "mcc"}
    assert d["counts"]["test"]["used"] == 30
    from bioprune.report.collect import read_metrics

    rows = read_metrics([out])
    assert set(rows["strategy"]) == {"floor"} and rows["headline"].sum() == 1


def test_floor_cli_rejects_perplexity_tasks(tmp_path):
    task = {"name": "ppl", "kind": "mlm_perplexity", "test": str(tmp_path / "x.fasta")}
    rc = main(
        ["floor", "--task-json", json.dumps(task), "--out", str(tmp_path / "f.json"), "--backend", "rnafm"]
    )
    assert rc != 0 and not (tmp_path / "f.json").exists()


def _kmer_task(tmp_path, n=240):
    """Class 1 sequences carry the 3-mer GAC planted twice, class 0 never: only k >= 3 sees it."""
    rng = np.random.default_rng(2)
    recs = []
    for i in range(n):
        label = i % 2
        while True:
            s = "".join(rng.choice(list("ACGU"), int(rng.integers(40, 60))))
            if "GAC" not in s:
                break
        if label:
            p = int(rng.integers(0, len(s) - 8))
            s = s[:p] + "GAC" + s[p : p + 2] + "GAC" + s[p + 2 :]
        recs.append(f">s{i} c{label}\n{s}\n")
    files = {}
    for split, part in (("train", recs[:160]), ("valid", recs[160:200]), ("test", recs[200:])):
        files[split] = str(tmp_path / f"{split}.fasta")
        open(files[split], "w").write("".join(part))
    return spec_from_config("kmer", {"kind": "seq_class", **files, "kmer_max": 3})


def test_kmer_floor_learns_a_planted_kmer(tmp_path):
    s = _kmer_task(tmp_path)
    from bioprune.evaluate.tasks import load_task

    out = kmer_floor(load_task(s))
    assert out["metrics"]["accuracy"] > 0.9
    assert out["details"]["k"] == 3
    by_k = {k: max(g["valid"] for g in out["details"]["grid"] if g["k"] == k) for k in (1, 2, 3)}
    assert by_k[3] > by_k[1] + 0.2


def test_sequence_probe_reports_a_linear_probe_beside_the_mlp(tmp_path):
    s = replace(_kmer_task(tmp_path), epochs=2)
    model = tiny()
    out = evaluate_task(s, model, seed=0)
    assert set(out["linear_probe"]["metrics"]) == {"accuracy", "macro_f1"}
    assert out["linear_probe"]["best_epoch"] in (1, 2)
