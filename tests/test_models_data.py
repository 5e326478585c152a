"""Training data: tokenised store, id-hash split, length-bucketed batches, cropping and BERT masking."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest

from bioprune.alphabet import RNA_FM_TOKENS
from bioprune.errors import InputError
from bioprune.models import data as D
from bioprune.models.base import TokenSpec
from bioprune.models.tokenizer import CharTokenizer

IDX = {t: i for i, t in enumerate(RNA_FM_TOKENS)}
SPEC = TokenSpec(
    vocab_size=25,
    pad_idx=IDX["<pad>"],
    mask_idx=IDX["<mask>"],
    cls_idx=IDX["<cls>"],
    eos_idx=IDX["<eos>"],
    unk_idx=IDX["<unk>"],
    residue_ids=tuple(IDX[c] for c in "ACGU"),
)
TOK = CharTokenizer("RNA-FM", RNA_FM_TOKENS, translate={"T": "U"})


def write_fasta(path, records, gz=False):
    text = "".join(f">{rid}\n{seq}\n" for rid, seq in records)
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def random_records(n, seed=0, lo=5, hi=120):
    rng = random.Random(seed)
    return [(f"seq{i}", "".join(rng.choice("ACGU") for _ in range(rng.randint(lo, hi)))) for i in range(n)]


def test_store_round_trip_and_reuse(tmp_path):
    recs = random_records(50) + [("empty", "")]
    fa = write_fasta(tmp_path / "a.fa.gz", recs, gz=True)
    store = D.build_store(fa, TOK, tmp_path / "store")
    assert store.n == 50 and store.meta["empty"] == 1
    for i in (0, 17, 49):
        assert TOK.decode(store.residues(i)) == recs[i][1]
    mtime = (tmp_path / "store" / "tokens.u8").stat().st_mtime_ns
    D.build_store(fa, TOK, tmp_path / "store")  # same file, same vocabulary: reused
    assert (tmp_path / "store" / "tokens.u8").stat().st_mtime_ns == mtime
    write_fasta(fa, recs[:10], gz=True)  # changed content: rebuilt
    assert D.build_store(fa, TOK, tmp_path / "store").n == 10


def test_store_bad_character_names_record_and_line(tmp_path):
    fa = write_fasta(tmp_path / "a.fa", [("ok", "ACGU"), ("bad", "ACGJ")])
    with pytest.raises(InputError) as err:
        D.build_store(fa, TOK, tmp_path / "store")
    msg = str(err.value)
    assert "a.fa:3" in msg and "'bad'" in msg and "'J' at position 4" in msg
    assert not (tmp_path / "store").exists()


def test_split_is_seeded_and_order_independent(tmp_path):
    recs = random_records(400)
    s1 = D.build_store(write_fasta(tmp_path / "a.fa", recs), TOK, tmp_path / "s1")
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    s2 = D.build_store(write_fasta(tmp_path / "b.fa", shuffled), TOK, tmp_path / "s2")
    ids1 = [recs[i][0] for i in D.split(s1, 0.1, seed=7)[1]]
    ids2 = [shuffled[i][0] for i in D.split(s2, 0.1, seed=7)[1]]
    assert sorted(ids1) == sorted(ids2)
    assert 20 <= len(ids1) <= 60  # ~40 expected
    assert sorted(ids1) != sorted(recs[i][0] for i in D.split(s1, 0.1, seed=8)[1])
    train, val = D.split(s1, 0.1, seed=7)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(400))
    tiny = D.build_store(write_fasta(tmp_path / "c.fa", recs[:2]), TOK, tmp_path / "s3")
    assert [len(x) for x in D.split(tiny, 0.001, seed=0)] == [1, 1]  # at least one held out
    assert len(D.split(s1, 0.0, seed=0)[1]) == 0


def test_batches_cover_everything_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(7, 300, size=1000)
    idx = np.arange(1000)
    batches = D.make_batches(lengths, idx, 4096, 64, D.rng_for(3, 0, 1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == idx.tolist()
    for b in batches:
        assert len(b) * lengths[b].max() <= 4096 and len(b) <= 64
    # length bucketing: a batch spans a narrow band of lengths, so padding is small
    waste = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches) / lengths.sum()
    assert waste < 0.05
    again = D.make_batches(lengths, idx, 4096, 64, D.rng_for(3, 0, 1))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    other = D.make_batches(lengths, idx, 4096, 64, D.rng_for(3, 1, 1))
    assert [b.tolist() for b in other] != [b.tolist() for b in batches]
    with pytest.raises(ValueError, match="does not fit"):
        D.make_batches(lengths, idx, 100, None, D.rng_for(0, 0, 0))


def test_collate_crops_long_sequences_to_a_window(tmp_path):
    pick = random.Random(0)
    long_seq = "".join(pick.choice("ACGU") for _ in range(500))
    store = D.build_store(
        write_fasta(tmp_path / "a.fa", [("long", long_seq), ("short", "ACG")]), TOK, tmp_path / "s"
    )
    out = D.collate(store, np.array([0, 1]), SPEC, 64, np.random.default_rng(0))
    assert out.shape == (2, 64)
    assert out[0, 0] == SPEC.cls_idx and out[0, 63] == SPEC.eos_idx
    window = TOK.decode(out[0, 1:63])
    assert len(window) == 62 and window in long_seq
    assert out[1, :5].tolist() == [SPEC.cls_idx, IDX["A"], IDX["C"], IDX["G"], SPEC.eos_idx]
    assert (out[1, 5:] == SPEC.pad_idx).all()
    starts = {
        long_seq.index(TOK.decode(D.collate(store, np.array([0]), SPEC, 64, D.rng_for(0, e))[0, 1:63]))
        for e in range(10)
    }
    assert len(starts) > 1  # the window moves between epochs


def test_masking_statistics():
    rng = np.random.default_rng(0)
    n, width = 400, 200
    lens = rng.integers(20, width - 1, size=n)
    tokens = np.full((n, width), SPEC.pad_idx)
    for i, L in enumerate(lens):
        tokens[i, 0] = SPEC.cls_idx
        tokens[i, 1 : L + 1] = rng.choice(SPEC.residue_ids, size=L)
        tokens[i, L + 1] = SPEC.eos_idx
    inputs, labels = D.mask_tokens(tokens, SPEC, np.random.default_rng(1), mask_prob=0.15)
    chosen = labels != -100
    special = np.isin(tokens, [SPEC.pad_idx, SPEC.cls_idx, SPEC.eos_idx])
    assert not (chosen & special).any()  # pads, <cls>, <eos> are never masked
    assert (inputs[special] == tokens[special]).all()
    assert (labels[chosen] == tokens[chosen]).all()
    assert (inputs[~chosen] == tokens[~chosen]).all()
    assert abs(chosen.sum() / lens.sum() - 0.15) < 0.005
    per_seq = chosen.sum(axis=1) / lens
    assert (per_seq > 0.08).all() and (per_seq < 0.23).all()  # every sequence near 15%, not just the mean
    to_mask = (inputs == SPEC.mask_idx) & chosen
    kept = (inputs == tokens) & chosen
    randomised = chosen & ~to_mask & ~kept
    total = chosen.sum()
    assert abs(to_mask.sum() / total - 0.8) < 0.02
    # a random replacement can draw the original residue (1 in 4 here): 10% * 3/4 differ, 10% * 1/4 keep
    assert abs(randomised.sum() / total - 0.075) < 0.015
    assert abs(kept.sum() / total - 0.125) < 0.02
    assert set(np.unique(inputs[randomised]).tolist()) <= set(SPEC.residue_ids)
    again = D.mask_tokens(tokens, SPEC, np.random.default_rng(1))
    assert np.array_equal(again[0], inputs) and np.array_equal(again[1], labels)


def test_masking_short_sequences_get_one_mask():
    tokens = np.array([[SPEC.cls_idx, IDX["A"], SPEC.eos_idx, SPEC.pad_idx]] * 50)
    _, labels = D.mask_tokens(tokens, SPEC, np.random.default_rng(0))
    assert ((labels != -100).sum(axis=1) == 1).all()
    assert (labels[:, 1] == IDX["A"]).all()
