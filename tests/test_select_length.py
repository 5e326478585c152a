"""Length-aware selection (topi_strata, topi_resid, lenmatch-<strategy>) and the length diagnostics of
scores and selections, on synthetic pools whose score is planted as a power of length times noise."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from test_select_cli import select, write_pool

from bioprune.errors import ConfigError
from bioprune.influence.length import WARN_RHO, length_diagnostics, loglog_fit
from bioprune.select import strategies as st
from bioprune.select import summary


def length_biased(n: int = 20000, slope: float = -0.9, seed: int = 0):
    """Lengths log-uniform over 20..2000 and s = L^slope * lognormal noise (the shape mlm/mean gives)."""
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.uniform(np.log(20), np.log(2000), n)).astype(np.int64)
    noise = rng.lognormal(0, 0.5, n)
    return lengths, lengths.astype(float) ** slope * noise, noise


def shares(strata: np.ndarray, rows: np.ndarray, n_strata: int) -> np.ndarray:
    return np.bincount(strata[rows], minlength=n_strata) / len(rows)


@pytest.mark.parametrize("k", [200, 1000, 5000])
def test_topi_strata_keeps_the_pool_length_proportions_within_one_point(k):
    lengths, s, _ = length_biased()
    sel = st.select_topi_strata(s, lengths, k, 10)
    strata, edges = st.length_strata(lengths, 10)
    pool = np.bincount(strata, minlength=len(edges) - 1) / len(lengths)
    assert len(sel.rows) == k and len(np.unique(sel.rows)) == k
    assert np.abs(shares(strata, sel.rows, len(edges) - 1) - pool).max() < 0.01
    # while plain Top-I on the same scores is a length filter: the shortest stratum over-represented
    topi = st.select_topk(s, k, "self_influence").rows
    assert shares(strata, topi, len(edges) - 1)[0] > 3 * pool[0]
    # inside each stratum it is Top-I: nothing unselected in a stratum outranks a selected one there
    chosen = np.zeros(len(s), bool)
    chosen[sel.rows] = True
    for g in range(len(edges) - 1):
        inside = strata == g
        if chosen[inside].any() and (~chosen[inside]).any():
            assert s[inside & chosen].min() >= s[inside & ~chosen].max()


def test_proportional_is_largest_remainder_and_exact():
    assert st.proportional(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1.0
    rng = np.random.default_rng(1)
    for _ in range(50):
        sizes = rng.integers(0, 100, rng.integers(1, 20))
        k = int(rng.integers(0, sizes.sum() + 1))
        got = st.proportional(sizes, k)
        assert got.sum() == k and (got <= sizes).all()
        assert np.abs(got - sizes * k / max(sizes.sum(), 1)).max() < 1


def test_topi_resid_recovers_the_planted_noise_not_the_length():
    lengths, s, noise = length_biased(slope=-0.9)
    sel = st.select_topi_resid(s, lengths, 1000)
    assert sel.details["loglog_slope"] == pytest.approx(-0.9, abs=0.05)
    # the residual is the planted noise: its top 1000 is (nearly) the selection
    best_noise = set(np.argsort(-noise)[:1000].tolist())
    assert len(best_noise & set(sel.rows.tolist())) > 900
    assert abs(np.corrcoef(np.log(lengths[sel.rows]), np.log(s[sel.rows]))[0, 1]) < 0.999


def test_length_matched_random_copies_the_reference_length_histogram():
    lengths, s, _ = length_biased()
    topi = st.select_topk(s, 2000, "self_influence").rows
    rng = np.random.default_rng(0)
    sel = st.select_length_matched(lengths, topi, 10, rng)
    strata, edges = st.length_strata(lengths, 10)
    assert len(sel.rows) == 2000
    assert shares(strata, sel.rows, len(edges) - 1).tolist() == shares(strata, topi, len(edges) - 1).tolist()
    assert sel.details["overlap_with_reference"] < 2000  # a random draw, not the reference itself
    assert sel.details["overlap_with_reference"] == len(set(sel.rows.tolist()) & set(topi.tolist()))
    again = st.select_length_matched(lengths, topi, 10, np.random.default_rng(0))
    assert again.rows.tolist() == sel.rows.tolist()


def test_length_strata_are_pool_quantiles_and_tolerate_ties():
    lengths = np.repeat([10, 20, 30, 40], 25)
    strata, edges = st.length_strata(lengths, 4)
    assert edges.tolist() == [10, 20, 30, 40]  # four lengths: 3 strata of equal width plus the top
    assert np.bincount(strata).tolist() == [25, 25, 50]
    strata, edges = st.length_strata(np.full(10, 7), 5)
    assert set(strata.tolist()) == {0}


def test_counted_quantiles_and_strata_equal_numpys():
    """Lengths are read off their counts (no partition at 20M): the same numbers and dtype as np.quantile,
    and the same strata as a search per sequence, on random integer columns with ties and extremes."""
    rng = np.random.default_rng(1)
    for trial in range(500):
        n, high = int(rng.integers(1, 300)), int(rng.integers(1, 5000))
        x = rng.integers(0, high, n).astype([np.int32, np.int64, np.uint16][trial % 3])
        qs = np.sort(np.r_[rng.random(int(rng.integers(1, 10))), [0.0, 1.0][: trial % 3]])
        for method in ("linear", "lower"):
            want, got = np.quantile(x, qs, method=method), summary.quantiles(x, qs, method)
            assert np.array_equal(want, got) and want.dtype == got.dtype, (x, qs, method)
        strata, edges = st.length_strata(x, 7)
        assert np.array_equal(strata, np.searchsorted(edges[1:-1], x, side="right"))
    floats = rng.lognormal(0, 1, 1000)  # anything not a small non-negative integer goes to numpy
    assert np.array_equal(summary.quantiles(floats, [0.1, 0.5]), np.quantile(floats, [0.1, 0.5]))


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("lenmatch-random1x", "non-random"),
        ("lenmatch-lenmatch-topi", "non-random"),
        ("lenmatch-xyz", "unknown"),
    ],
)
def test_bad_lenmatch_labels(label, message):
    with pytest.raises(ConfigError, match=message):
        st.parse_strategy(label)


def test_length_diagnostics_measure_the_bias_and_warn(caplog):
    lengths, s, _ = length_biased(slope=-0.9)
    with caplog.at_level(logging.WARNING):
        d = length_diagnostics(s, lengths, np.zeros(len(s)) + s, what="planted")
    assert d["spearman_length"] < -WARN_RHO and d["length_dominated"]
    assert d["loglog_slope"] == pytest.approx(-0.9, abs=0.05)
    assert "mostly a length signal" in caplog.text and "planted" in caplog.text
    caplog.clear()
    flat, s0, _ = length_biased(slope=0.0)
    with caplog.at_level(logging.WARNING):
        d0 = length_diagnostics(s0, flat)
    assert abs(d0["spearman_length"]) < 0.05 and not d0["length_dominated"]
    assert "length signal" not in caplog.text


def test_loglog_fit_ignores_non_positive_scores():
    a, b, r2 = loglog_fit(np.array([0.0, 1.0, 2.0, 4.0, -1.0]), np.array([1, 1, 2, 4, 8]))
    assert b == pytest.approx(1.0) and r2 == pytest.approx(1.0)


def test_select_cli_length_aware_strategies_and_summary(tmp_path):
    pool, scores = write_pool(tmp_path, n=400)
    out = {}
    for label in ("topi", "topi_strata", "topi_resid"):
        out[label] = tmp_path / label
        assert select(pool, scores, out[label], "--strategy", label, "--rate", "0.75", "--strata", "4") == 0
    lm = tmp_path / "lenmatch"
    match = out["topi"] / "ids.txt"
    args = ["--rate", "0.75", "--match-ids", str(match), "--strata", "4", "--seed", "2"]
    assert select(pool, scores, lm, "--strategy", "lenmatch-topi", *args) == 0
    summaries = {p.name: json.loads((p / "summary.json").read_text()) for p in [*out.values(), lm]}
    for name, summ in summaries.items():
        assert summ["n_selected"] == 100, name
        bias = summ["length_bias"]
        assert set(bias) >= {"spearman_length", "spearman_loss", "loglog_slope", "length_dominated"}
        strata = summ["length"]["strata"]
        assert len(strata["pool_share"]) == len(strata["selected_share"]) == len(strata["edges"]) - 1
    assert summaries["lenmatch"]["strategy"] == "lenmatch-topi"
    assert summaries["lenmatch"]["settings"]["match_ids"] == str(match)
    topi_lengths = summaries["topi"]["length"]
    # lenmatch matched Top-I's histogram over the 4 strata it was given, exactly
    budgets = summaries["lenmatch"]["selection"]["stratum_budgets"]
    topi_ids = set((out["topi"] / "ids.txt").read_text().split())
    lm_ids = set((lm / "ids.txt").read_text().split())
    assert sum(budgets) == 100 and lm_ids != topi_ids
    assert summaries["topi_strata"]["length"]["strata"]["max_gap_pp"] <= topi_lengths["strata"]["max_gap_pp"]


def test_lenmatch_needs_a_matching_ids_file(tmp_path, capsys):
    pool, scores = write_pool(tmp_path, n=100)
    assert select(pool, scores, tmp_path / "a", "--strategy", "lenmatch-topi", "--rate", "0.9") != 0
    assert "--match-ids" in capsys.readouterr().err
    ids = tmp_path / "ids.txt"
    ids.write_text("seq1\nseq2\n")
    assert select(pool, scores, tmp_path / "b", "--strategy", "lenmatch-topi", "--rate", "0.9",
                  "--match-ids", str(ids)) != 0  # fmt: skip
    err = capsys.readouterr().err
    assert "holds 2 ids but this budget keeps 10" in err and str(ids) in err
    ids.write_text("nope\n" * 10)
    assert select(pool, scores, tmp_path / "c", "--strategy", "lenmatch-topi", "--rate", "0.9",
                  "--match-ids", str(ids)) != 0  # fmt: skip
    assert "'nope' is not in the score table" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
