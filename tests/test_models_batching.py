"""The one tokenise/batch/mask path (bioprune.models.batching): batch converter, length bucketer, Batch,
the id-keyed MLM batch; and training's validation loss equals the evaluation's held-out perplexity."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bioprune.evaluate.perplexity import mlm_perplexity
from bioprune.models import data as D
from bioprune.models.batching import Batch, bucket, mlm_batch, pad_rows
from bioprune.models.masking import draw_mask
from bioprune.models.registry import build_model
from bioprune.models.train import TrainSettings, train


@pytest.fixture(scope="module")
def model():
    return build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, max_tokens=40, seed=0)


def test_converter_frames_and_pads_like_encode(model):
    t = model.tokens
    conv = model.converter
    res = [model.tokenizer.encode_residues(s) for s in ("ACGU", "G", "UUAAC")]
    out = conv(res)
    assert out.dtype == np.int64 and out.shape == (3, 7)
    assert out[1].tolist() == [t.cls_idx, res[1][0], t.eos_idx] + [t.pad_idx] * 4
    assert conv.frame(res[0]).tolist() == model.encode("ACGU")
    assert np.array_equal(out, model.batch(["ACGU", "G", "UUAAC"]).numpy())
    assert np.array_equal(conv.pad([conv.frame(r) for r in res]), out)
    assert pad_rows([[1, 2]], 9, width=4).tolist() == [[1, 2, 9, 9]]


def _greedy(widths, budget, rows):
    """Reference bucketer: stable sort by width, add items while rows x widest fits."""
    order = sorted(range(len(widths)), key=lambda i: widths[i])
    out, cur, r = [], [], 0
    for i in order:
        if cur and (r + rows[i]) * widths[i] > budget:
            out.append(cur)
            cur, r = [], 0
        cur.append(i)
        r += rows[i]
    return out + [cur] if cur else out


def test_bucket_without_rng_is_the_deterministic_greedy_fill():
    rng = np.random.default_rng(1)
    widths = rng.integers(3, 60, size=300)
    rows = rng.integers(1, 4, size=300)
    for r in (None, rows):
        got = [b.tolist() for b in bucket(widths, 200, rows=r)]
        assert got == _greedy(widths, 200, np.ones(300, int) if r is None else rows)
    # an item over the budget forms a batch alone; ties keep input order
    assert [b.tolist() for b in bucket(np.array([5, 500, 5, 5]), 10)] == [[0, 2], [3], [1]]
    assert bucket(np.array([3, 4]), 10, indices=np.array([], dtype=np.int64)) == []


def _best_cut(w, rows, budget, overhead):
    """Brute force: the least padded tokens + overhead per batch over every cut of sorted widths."""
    n, best = len(w), None
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        runs = list(zip(cuts, cuts[1:], strict=False))
        costs = [sum(rows[a:b]) * w[b - 1] for a, b in runs]
        if any(c > budget and b - a > 1 for c, (a, b) in zip(costs, runs, strict=True)):
            continue
        total = sum(costs) + overhead * len(runs)
        best = total if best is None else min(best, total)
    return best


def test_bucket_overhead_cuts_for_least_padding():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(1, 10))
        widths = rng.integers(5, 60, n)
        rows = rng.integers(1, 3, n)
        budget, overhead = int(rng.integers(40, 200)), int(rng.integers(0, 80))
        batches = bucket(widths, budget, rows=rows, overhead=overhead)
        order = np.argsort(widths, kind="stable")
        assert np.array_equal(np.concatenate(batches), order)  # sorted by width, ties in input order
        cost = [rows[b].sum() * widths[b].max() for b in batches]
        assert all(c <= budget or len(b) == 1 for c, b in zip(cost, batches, strict=True))
        got = sum(cost) + overhead * len(batches)
        assert got == _best_cut(widths[order], rows[order], budget, overhead)
    # a sparse stretch of lengths is split instead of padded; the greedy fill packs it into one batch
    widths = np.array([100] * 10 + [300, 900])
    assert len(bucket(widths, 20_000)) == 1
    assert [len(b) for b in bucket(widths, 20_000, overhead=512)] == [10, 1, 1]


def test_bucket_with_rng_caps_and_shuffles():
    lengths = np.random.default_rng(0).integers(7, 300, size=500)
    idx = np.arange(100, 500)
    a = bucket(lengths, 4096, indices=idx, max_batch_size=16, rng=np.random.default_rng(5))
    assert sorted(np.concatenate(a).tolist()) == idx.tolist()
    assert all(len(b) <= 16 and len(b) * lengths[b].max() <= 4096 for b in a)
    widest = [int(lengths[b].max()) for b in a]
    assert widest != sorted(widest)  # batch order shuffled
    b = D.make_batches(lengths, idx, 4096, 16, np.random.default_rng(5))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]


def test_batch_from_labels_round_trip():
    inputs = np.array([[0, 24, 5, 2, 1], [0, 6, 24, 7, 2]])
    labels = np.full_like(inputs, -100)
    labels[0, 1], labels[1, 2] = 4, 6
    b = Batch.from_labels(inputs, labels)
    assert b.n_masked == 2 and b.n_seqs == 2 and b.seg.tolist() == [0, 1]
    assert b.flat_idx.tolist() == [1, 7] and b.targets.tolist() == [4, 6]
    assert torch.equal(b.labels, torch.from_numpy(labels))
    assert b.n_tokens(pad_idx=1) == 9


def test_mlm_batch_masks_by_id_whatever_the_batch(model):
    t = model.tokens
    pick = random.Random(0)
    seqs = {f"s{i}": "".join(pick.choice("ACGU") for _ in range(pick.randint(5, 30))) for i in range(6)}
    res = {k: model.tokenizer.encode_residues(v).astype(np.int64) for k, v in seqs.items()}

    def batch(ids):
        return mlm_batch(
            model.converter,
            ids,
            [res[i] for i in ids],
            seed=3,
            prob=0.15,
            residue_ids=t.residue_ids,
            mask_idx=t.mask_idx,
        )

    full = batch(list(seqs))
    alone = batch(["s4"])
    row = list(seqs).index("s4")
    m = draw_mask("s4", res["s4"], seed=3, prob=0.15, mask_idx=t.mask_idx, residue_ids=t.residue_ids)
    n = len(res["s4"]) + 2
    assert torch.equal(full.tokens[row, :n], alone.tokens[0, :n])
    assert alone.flat_idx.tolist() == (m.positions + 1).tolist()
    assert alone.tokens[0, m.positions + 1].tolist() == m.replacement.tolist()
    assert alone.targets.tolist() == res["s4"][m.positions].tolist()


def test_validation_loss_is_the_evaluation_perplexity(tmp_path):
    model = build_model("rnafm", "tiny", layers=1, hidden=32, heads=2, ffn=64, max_tokens=40, seed=1)
    pick = random.Random(2)
    recs = [(f"r{i}", "".join(pick.choice("ACGU") for _ in range(pick.randint(8, 70)))) for i in range(40)]
    fasta = tmp_path / "t.fa"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in recs))
    settings = TrainSettings(max_steps=2, val_fraction=0.3, seed=7, max_tokens_per_batch=200, mask_prob=0.2)
    report = train(model, fasta, tmp_path / "out", settings)
    store = D.build_store(fasta, model.tokenizer, tmp_path / "store")
    _, val_idx = D.split(store, settings.val_fraction, settings.seed)
    held_out = [recs[i] for i in val_idx]
    assert any(len(s) > model.window for _, s in held_out)  # the crop is part of what is compared
    ppl = mlm_perplexity(
        model, held_out, mask_seed=settings.seed, mask_prob=settings.mask_prob, batch_tokens=90
    )
    assert report["val_loss"] == pytest.approx(ppl["loss"], rel=1e-5)
    assert report["val_perplexity"] == pytest.approx(ppl["perplexity"], rel=1e-5)
