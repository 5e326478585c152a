"""Deterministic MLM masks: a function of (sequence id, seed, position) only, with BERT's rates."""

from __future__ import annotations

import numpy as np
import pytest

from bioprune.models.masking import draw_mask, sequence_key, uniforms

MASK, RESIDUES = 24, (4, 5, 6, 7)


def draw(seq_id: str, tokens: np.ndarray, seed: int = 0, prob: float = 0.15):
    return draw_mask(seq_id, tokens, seed=seed, prob=prob, mask_idx=MASK, residue_ids=RESIDUES)


def test_same_id_and_seed_same_mask_other_id_or_seed_other_mask():
    tokens = np.random.default_rng(0).choice(RESIDUES, 500)
    a, b = draw("x", tokens), draw("x", tokens.copy())
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.replacement, b.replacement)
    assert not np.array_equal(draw("y", tokens).positions, a.positions)
    assert not np.array_equal(draw("x", tokens, seed=1).positions, a.positions)


def test_bert_rates_on_a_long_sequence():
    tokens = np.random.default_rng(1).choice(RESIDUES, 200_000)
    d = draw("long", tokens)
    assert d.positions.size / tokens.size == pytest.approx(0.15, abs=0.005)
    masked = d.replacement == MASK
    kept = d.replacement == tokens[d.positions]
    assert masked.mean() == pytest.approx(0.8, abs=0.01)
    # 10% kept on purpose, plus 10% random draws that hit the original residue (1 in 4)
    assert kept.mean() == pytest.approx(0.1 + 0.1 / 4, abs=0.01)
    assert set(np.unique(d.replacement[~masked])) <= set(RESIDUES)


def test_mask_of_a_prefix_is_the_prefix_of_the_mask():
    """Truncating a sequence keeps the mask of the residues it keeps (scores are prefix-consistent)."""
    tokens = np.random.default_rng(2).choice(RESIDUES, 300)
    full = draw("p", tokens)
    part = draw("p", tokens[:120])
    keep = full.positions < 120
    assert np.array_equal(part.positions, full.positions[keep])
    assert np.array_equal(part.replacement, full.replacement[keep])


def test_every_sequence_has_a_loss_token():
    for n in (1, 2, 5):
        for i in range(50):
            d = draw(f"s{i}", np.full(n, 4), prob=0.01)
            assert 1 <= d.positions.size <= n and np.all(d.positions < n)
    empty = draw("e", np.zeros(0, dtype=np.int64))
    assert empty.positions.size == 0


def test_uniforms_are_uniform_and_stream_keys_differ():
    u = uniforms(sequence_key("z", 3), 100_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert u.mean() == pytest.approx(0.5, abs=0.01)
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 9_500
    assert len({sequence_key("z", 3, s) for s in range(3)}) == 3
    assert np.array_equal(uniforms(sequence_key("z", 3), 10), u[:10])  # position p does not depend on n
