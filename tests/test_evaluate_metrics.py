"""Downstream metrics against hand-computed values: base pairs (nested, pseudoknots), classes, ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bioprune.dbn import pairs
from bioprune.evaluate import metrics as M
from bioprune.evaluate.probes import decode_pairs


def test_pair_scores_hand_checked():
    # length 10 -> 45 candidate pairs; 3 true, 3 predicted, 2 shared
    true = [(0, 9), (1, 8), (2, 7)]
    pred = [(0, 9), (1, 8), (3, 6)]
    assert M.pair_confusion(pred, true, 10) == (2, 1, 1, 41)
    s = M.pair_scores(pred, true, 10)
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    # (2*41 - 1*1) / sqrt(3 * 3 * 42 * 42) = 81 / 126
    assert s["mcc"] == pytest.approx(81 / 126)


def test_pair_order_inside_a_pair_does_not_matter():
    assert M.pair_scores([(9, 0), (8, 1)], [(0, 9), (1, 8)], 10)["f1"] == 1.0


def test_pseudoknot_pairs_count_like_any_other():
    true = pairs("((..[[..))..]]")
    assert true == [(0, 9), (1, 8), (4, 13), (5, 12)]
    nested_only = pairs("((......))....")
    s = M.pair_scores(nested_only, true, 14)
    assert (s["precision"], s["recall"]) == (1.0, 0.5)
    assert s["f1"] == pytest.approx(2 / 3)
    # a letter-bracket pseudoknot (Aa) parsed by bioprune.dbn
    assert pairs("(.A..).a") == [(0, 5), (2, 7)]
    assert M.pair_scores(pairs("(.A..).a"), pairs("(.[..).]"), 8)["f1"] == 1.0


def test_empty_structures_conventions():
    assert M.pair_scores([], [], 5) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "mcc": 1.0}
    s = M.pair_scores([], [(0, 4)], 5)
    assert s == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "mcc": 0.0}
    s = M.pair_scores([(0, 4)], [], 5)
    assert s["f1"] == 0.0 and s["precision"] == 0.0


def test_pair_errors():
    with pytest.raises(ValueError, match="itself"):
        M.pair_scores([(3, 3)], [], 5)
    with pytest.raises(ValueError, match="outside"):
        M.pair_scores([(0, 5)], [], 5)


def test_mean_is_per_sequence_not_pooled():
    a = M.pair_scores([(0, 9)], [(0, 9)], 10)  # f1 1
    b = M.pair_scores([(0, 9)], [(1, 8), (2, 7), (3, 6)], 10)  # f1 0
    assert M.mean_pair_scores([a, b])["f1"] == 0.5


def test_decode_pairs_greedy_one_partner_min_loop():
    p = np.zeros((8, 8))
    p[0, 7] = p[7, 0] = 0.9
    p[0, 6] = p[6, 0] = 0.8  # conflicts with (0, 7): dropped
    p[1, 6] = p[6, 1] = 0.7
    p[2, 4] = p[4, 2] = 0.99  # j - i = 2 <= min_loop 3: never a candidate
    assert decode_pairs(p, 0.5, 3) == [(0, 7), (1, 6)]
    assert decode_pairs(p, 0.75, 3) == [(0, 7)]


def test_classification_hand_checked():
    y, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert M.accuracy(y, p) == 0.75
    # class 0: tp 1 fp 0 fn 1 -> 2/3; class 1: tp 2 fp 1 fn 0 -> 4/5
    assert M.macro_f1(y, p) == pytest.approx((2 / 3 + 4 / 5) / 2)
    # a predicted class absent from the truth enters the mean with F1 0
    assert M.macro_f1(np.array([0, 0]), np.array([0, 2])) == pytest.approx((2 / 3 + 0) / 2)


def test_spearman_ties_and_constant():
    assert M.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6*2/60
    assert M.average_ranks(np.array([10, 20, 20, 30])).tolist() == [1, 2.5, 2.5, 4]
    assert M.spearman([1, 1, 1], [1, 2, 3]) == 0.0
    x = np.random.default_rng(0).normal(size=50)
    assert M.spearman(x, np.exp(x)) == pytest.approx(1.0)


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 40), rng.integers(0, 7, 40)
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_regression_scores():
    s = M.regression_scores([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert s["mse"] == pytest.approx(4 / 3)
    assert s["spearman"] == pytest.approx(1.0)
    assert math.isclose(s["pearson"], np.corrcoef([1, 2, 3], [1, 2, 5])[0, 1])


def test_one_greedy_pass_serves_every_threshold():
    from bioprune.evaluate.probes import THRESHOLDS, greedy_pairs

    rng = np.random.default_rng(3)
    p = rng.random((40, 40))
    p = (p + p.T) / 2
    got, probs = greedy_pairs(p, THRESHOLDS[0], 3)
    assert probs == sorted(probs, reverse=True)
    for t in THRESHOLDS:
        assert decode_pairs(p, t, 3) == sorted(pr for pr, q in zip(got, probs, strict=True) if q >= t)
