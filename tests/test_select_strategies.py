"""Selection strategies on small hand-checked cases: Top-I ties, CCI allocation and binning (the
maximum-score edge case), seeded sampling, cluster-balanced random."""

import numpy as np
import pytest

from bioprune.errors import BiopruneError, ConfigError
from bioprune.select import strategies as st


def sequential_allocate(sizes, k):
    """CCS's bin_allocate, transcribed literally: the reference the closed form must match."""
    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    rest, out = k, [0] * len(sizes)
    for j, i in enumerate(order):
        cur = min(sizes[i], rest // (len(sizes) - j))
        out[i] = cur
        rest -= cur
    return out


@pytest.fixture(params=["per-group draws", "one permutation"])
def sampling_path(request, monkeypatch):
    """Run a test through both ways sample_in_groups samples (few groups / many groups)."""
    if request.param == "one permutation":
        monkeypatch.setattr(st, "FEW_GROUPS", 0)
    return request.param


def test_top_k_breaks_ties_at_the_cut_by_row_and_orders_highest_first():
    values = np.array([1.0, 3.0, 3.0, 3.0, 2.0, 5.0])
    assert st.top_k(values, 3).tolist() == [5, 1, 2]
    assert st.top_k(values, 3, ordered=False).tolist() == [1, 2, 5]
    assert st.top_k(values, 1).tolist() == [5]
    assert st.top_k(values, 6).tolist() == [5, 1, 2, 3, 4, 0]
    assert st.top_k(values, 0).tolist() == []


def test_allocate_hand_checked_with_bins_smaller_than_their_share():
    # ascending sizes 1, 2, 5, 10 with k=12: 1 (share 3), 2 (share 11//3=3), 4 (share 9//2, bin has 5), 5
    assert st.allocate(np.array([1, 2, 10, 5]), 12).tolist() == [1, 2, 5, 4]
    # empty bins come first and take nothing; the remainder goes to the largest bins
    assert st.allocate(np.array([0, 7, 7, 0]), 5).tolist() == [0, 2, 3, 0]
    assert st.allocate(np.array([3, 3, 3]), 9).tolist() == [3, 3, 3]


def test_allocate_matches_the_sequential_definition_and_spends_the_whole_budget():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        sizes = rng.integers(0, rng.integers(1, 40), size=rng.integers(1, 15))
        k = int(rng.integers(0, sizes.sum() + 1))
        got = st.allocate(sizes, k)
        assert got.tolist() == sequential_allocate(sizes.tolist(), k)
        assert got.sum() == k and (got <= sizes).all()


def test_allocate_rejects_a_budget_larger_than_the_groups():
    with pytest.raises(ValueError):
        st.allocate(np.array([2, 3]), 6)


# 20 scores: after dropping the top 10% (two outliers), bins of width 1 over [0, 4] hold 1, 2, 10, 5.
HAND = np.array(
    [0.0, 1.0, 1.5] + [2.0 + i / 10 for i in range(10)] + [3.0, 3.2, 3.4, 3.6, 4.0] + [10.0, 20.0]
)


def test_cci_hand_checked_allocation_and_dropping():
    sel = st.select_cci(HAND, k=12, beta=0.1, bins=4, rng=np.random.default_rng(0))
    d = sel.details
    assert d["n_dropped_top"] == 2 and d["drop_threshold"] == 10.0
    assert d["edges"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert d["bin_sizes"] == [1, 2, 10, 5]
    assert d["bin_budgets"] == [1, 2, 5, 4]  # the two small bins are taken whole
    assert d["selected_per_bin"] == d["bin_budgets"]
    rows = sel.rows
    assert len(rows) == 12 and len(set(rows.tolist())) == 12
    assert {0, 1, 2} <= set(rows.tolist())  # bins 0 and 1, whole
    assert not {18, 19} & set(rows.tolist())  # the dropped outliers
    assert np.count_nonzero((HAND[rows] >= 3) & (HAND[rows] <= 4)) == 4


def test_cci_maximum_remaining_score_is_in_the_last_bin_and_selectable():
    # The official code bins with score < end and no widening, so the top remaining score is in no bin.
    bin_of, edges = st.cci_bins(HAND[:18], 4)
    assert bin_of[17] == 3 and edges[-1] == 4.0
    # a value on an inner edge goes to the upper bin, as in CCS's [start, end)
    assert bin_of[1] == 1 and bin_of[3] == 2
    # Alone in the last bin, the maximum is in the smallest bin: CCI always keeps it.
    values = np.array([0.0] * 10 + [1.0] + [100.0])
    for seed in range(5):
        sel = st.select_cci(values, k=3, beta=0.05, bins=5, rng=np.random.default_rng(seed))
        assert sel.details["n_dropped_top"] == 0  # floor(0.05 * 12) = 0
        # 100.0 is the maximum and alone in bin 4; 1.0 is in bin 0 with the zeros (width 20)
        assert 11 in sel.rows.tolist()
    # Taking every remaining sequence must be possible (17 of them with the official bug).
    everything = st.select_cci(HAND, k=18, beta=0.1, bins=4, rng=np.random.default_rng(0))
    assert everything.rows.tolist() == list(range(18))


def test_cci_equal_scores_all_land_in_the_last_bin():
    bin_of, _ = st.cci_bins(np.full(7, 2.5), 3)
    assert bin_of.tolist() == [2] * 7


@pytest.mark.parametrize("bins", [1, 3, 50, 1000, 40_000])
def test_cci_bins_by_arithmetic_are_the_edge_search(bins):
    """The bin computed from the value, then corrected, is the one searchsorted over the edges gives,
    for values on every edge, next to it on both sides, and anywhere between."""
    rng = np.random.default_rng(bins)
    lo, hi = -3.7, 1234.5
    edges = np.linspace(lo, hi, bins + 1)
    values = np.concatenate(
        [
            edges,
            np.nextafter(edges, -np.inf).clip(lo, hi),
            np.nextafter(edges, np.inf).clip(lo, hi),
            rng.uniform(lo, hi, 20_000),
        ]
    )
    rng.shuffle(values)
    got, got_edges = st.cci_bins(values, bins)
    assert np.array_equal(got_edges, edges)
    assert got.tolist() == np.searchsorted(edges[1:-1], values, side="right").tolist()


def test_cci_bins_over_extreme_ranges_are_still_the_edge_search():
    """Ranges so narrow that bins / (max - min) overflows, or so wide that max - min does: the bins
    fall back to the search."""
    for values in ([0.0, 5e-324, 1e-323, 1.5e-323, 2e-323, 1e-323], [-1e308, 0.0, 3e307, 1e308, -5e307]):
        values = np.array(values)
        with np.errstate(over="ignore", invalid="ignore"):  # (np.linspace overflows on the wide range)
            got, edges = st.cci_bins(values, 4)
        assert got.tolist() == np.searchsorted(edges[1:-1], values, side="right").tolist()


def _old_many_groups_sample(groups, budgets, rng):
    """sample_in_groups' many-groups path as it was (every row ranked), the reference for the new one."""
    counts = np.bincount(groups, minlength=len(budgets))
    whole = np.flatnonzero((budgets == counts)[groups])
    partial_group = (budgets > 0) & (budgets < counts)
    rows = np.flatnonzero(partial_group[groups])
    rows = rows[rng.permutation(len(rows))]
    g = groups[rows]
    order = np.argsort(g, kind="stable")
    rows, g = rows[order], g[order]
    sub_counts = np.where(partial_group, counts, 0)
    rank = np.arange(len(rows)) - (np.cumsum(sub_counts) - sub_counts)[g]
    return np.sort(np.concatenate([whole, rows[rank < budgets[g]]]))


def test_many_groups_sample_is_the_same_as_ranking_every_row(monkeypatch):
    monkeypatch.setattr(st, "FEW_GROUPS", 0)
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 700, 20_000)
    counts = np.bincount(groups, minlength=700)
    budgets = np.minimum(counts, rng.integers(0, 40, 700))  # empty, partial and whole groups
    for seed in range(3):
        got = st.sample_in_groups(groups, budgets, np.random.default_rng(seed))
        assert got.tolist() == _old_many_groups_sample(groups, budgets, np.random.default_rng(seed)).tolist()


def test_cci_budget_above_what_survives_the_drop_is_a_clear_error():
    with pytest.raises(BiopruneError, match=r"19 sequences is larger than the 18 left after dropping"):
        st.select_cci(HAND, k=19, beta=0.1, bins=4, rng=np.random.default_rng(0))


def test_seeded_strategies_are_reproducible_and_seed_dependent(sampling_path):
    values = np.random.default_rng(1).lognormal(size=5000)
    groups = np.random.default_rng(2).integers(0, 300, 5000)
    runs = {
        "cci": lambda seed: st.select_cci(values, 400, 0.1, 50, np.random.default_rng(seed)).rows,
        "random": lambda seed: st.select_random(5000, 400, np.random.default_rng(seed)).rows,
        "cluster": lambda seed: st.select_cluster_balanced(groups, 400, np.random.default_rng(seed)).rows,
    }
    for name, run in runs.items():
        a, b, c = run(7), run(7), run(8)
        assert np.array_equal(a, b), name
        assert not np.array_equal(a, c), name
        assert len(np.unique(a)) == 400 and (np.diff(a) > 0).all(), name


def test_sampling_inside_a_group_is_uniform(sampling_path):
    groups = np.array([0] * 10 + [1] * 5 + [2] * 4)
    budgets = np.array([3, 5, 0])
    hits = np.zeros(19)
    trials = 3000
    for seed in range(trials):
        rows = st.sample_in_groups(groups, budgets, np.random.default_rng(seed))
        hits[rows] += 1
    assert (hits[10:15] == trials).all() and (hits[15:] == 0).all()  # group 1 whole, group 2 none
    # each of group 0's members is picked with probability 0.3: 900 expected, sd ~25
    assert np.abs(hits[:10] - 0.3 * trials).max() < 6 * np.sqrt(trials * 0.3 * 0.7)


def test_cluster_balanced_gives_each_cluster_an_equal_share(sampling_path):
    groups = np.random.default_rng(0).permutation(np.array([0] * 100 + [1] * 3 + [2] * 50 + [3] * 1))
    sel = st.select_cluster_balanced(groups, 40, np.random.default_rng(0))
    per_cluster = np.bincount(groups[sel.rows], minlength=4).tolist()
    # clusters of 1 and 3 taken whole, the remaining 36 split 18 / 18
    assert per_cluster == [18, 3, 18, 1]
    assert sel.details["clusters_taken_whole"] == 2


def test_topk_selection_reports_its_threshold():
    values = np.array([0.5, 4.0, 2.0, 3.0])
    sel = st.select_topk(values, 2, "self_influence")
    assert sel.rows.tolist() == [1, 3] and sel.details["threshold"] == 3.0


@pytest.mark.parametrize(
    ("label", "multiplier", "expected"),
    [("random10x", None, ("random", 10)), ("random", 3, ("random", 3)), ("cci", None, ("cci", 1))],
)
def test_strategy_labels(label, multiplier, expected):
    assert st.parse_strategy(label, multiplier) == expected
    assert st.strategy_label(*expected) == (label if label != "random" else "random3x")


@pytest.mark.parametrize(
    ("label", "multiplier", "message"),
    [("best", None, "unknown strategy 'best'"), ("topi", 10, "only the random strategy"),
     ("random10x", 2, "disagree")],
)  # fmt: skip
def test_bad_strategy_labels(label, multiplier, message):
    with pytest.raises(ConfigError, match=message):
        st.parse_strategy(label, multiplier)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_stable_order_is_the_stable_argsort(dtype):
    """The packed-key sort behind cluster-balanced sampling and allocate returns numpy's stable argsort
    exactly (ties in row order), so selections are the same as before it; huge values fall back."""
    from bioprune.select.strategies import stable_order

    rng = np.random.default_rng(0)
    for n, high in [(0, 1), (1, 1), (7, 2), (50_000, 30), (200_000, 20_000)]:
        values = rng.integers(0, high, n).astype(dtype)
        assert np.array_equal(stable_order(values), np.argsort(values, kind="stable"))
    huge = np.array([1 << 61, 3, 1 << 61, 0], np.int64)
    assert np.array_equal(stable_order(huge), [3, 1, 0, 2])
