"""Downstream metrics, written out so that every convention is visible and tested.

Base pairs (RNA secondary structure), per sequence of length ``n``, pairs as ``(i, j)`` with ``i < j``:

- TP = predicted pairs that are true pairs; FP = predicted, not true; FN = true, not predicted;
  TN = every other position pair ``i < j`` (``n (n - 1) / 2`` candidates in all).
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN),
  MCC = (TP TN - FP FN) / sqrt((TP + FP)(TP + FN)(TN + FP)(TN + FN)) (the exact MCC over all candidate
  pairs, not the sqrt(precision x recall) approximation).
- A sequence with no true and no predicted pair is a perfect prediction: all four are 1. Otherwise an
  undefined ratio (0 / 0) is 0, so predicting nothing for a structured RNA scores 0, not "undefined".
- Pseudoknotted pairs count like any other pair; exact positions only (no slippage allowance).
- Task scores are means over sequences ("F1 averaged per sequence"), the bpRNA/SPOT-RNA convention.

Classes: accuracy, and macro-F1 over the classes present in the truth or the predictions (sklearn's
``f1_score(average="macro")``); a class with no true and no predicted member does not enter the mean.
Regression: Spearman's rho with average ranks for ties (0 when either side is constant), Pearson's r, MSE.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def _pair_set(pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    out = set()
    for i, j in pairs:
        i, j = int(i), int(j)
        if i == j:
            raise ValueError(f"a base cannot pair with itself (position {i})")
        out.add((i, j) if i < j else (j, i))
    return out


def pair_confusion(
    predicted: Iterable[tuple[int, int]], true: Iterable[tuple[int, int]], length: int
) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) of predicted against true base pairs over all ``i < j`` position pairs."""
    p, t = _pair_set(predicted), _pair_set(true)
    for i, j in p | t:
        if j >= length:
            raise ValueError(f"pair ({i}, {j}) is outside a sequence of length {length}")
    tp = len(p & t)
    fp = len(p) - tp
    fn = len(t) - tp
    tn = length * (length - 1) // 2 - tp - fp - fn
    return tp, fp, fn, tn


def pair_scores(
    predicted: Iterable[tuple[int, int]], true: Iterable[tuple[int, int]], length: int
) -> dict[str, float]:
    """precision, recall, f1 and mcc of one sequence (conventions in the module doc)."""
    tp, fp, fn, tn = pair_confusion(predicted, true, length)
    if tp + fp + fn == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "mcc": 1.0}
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    denom = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "mcc": mcc}


def mean_pair_scores(per_sequence: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-sequence scores averaged over sequences."""
    if not per_sequence:
        raise ValueError("no sequences to score")
    keys = ("f1", "precision", "recall", "mcc")
    return {k: float(np.mean([s[k] for s in per_sequence])) for k in keys}


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("accuracy needs two non-empty arrays of the same shape")
    return float((y_true == y_pred).mean())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError("macro_f1 needs two non-empty arrays of the same shape")
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = int(((y_true == c) & (y_pred == c)).sum())
        fp = int(((y_true != c) & (y_pred == c)).sum())
        fn = int(((y_true == c) & (y_pred != c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their ranks."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    # boundaries of runs of equal values
    new_run = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], len(x)]
    # one vectorised scatter, not a Python loop per run (a million distinct scores took 5 s)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(new_run) - 1]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError("correlation needs two arrays of the same length >= 2")
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / denom) if denom else 0.0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(average_ranks(x), average_ranks(y))


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    return {
        "spearman": spearman(y_true, y_pred),
        "pearson": pearson(y_true, y_pred),
        "mse": float(((y_true - y_pred) ** 2).mean()),
    }


def classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}
