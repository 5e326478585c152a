"""Selection strategies over score columns. Everything is vectorised numpy: no Python loop runs per
sequence, bin or cluster, so 20M scores take seconds (see benchmarks/results/select.md).

Each function returns row indices into the score table, sorted ascending, plus what it decided
(thresholds, bins, budgets) for the summary and the diagnostics figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from bioprune.errors import BiopruneError, ConfigError
from bioprune.select.budget import drop_count
from bioprune.select.summary import countable, quantiles

# Strategy name -> the score column it needs (None: only the ids).
STRATEGIES: dict[str, str | None] = {
    "topi": "self_influence",
    "cci": "self_influence",
    "random": None,
    "cluster": None,
    "loss": "loss",
    "topi_strata": "self_influence",  # Top-I inside length strata, in the pool's proportions
    "topi_resid": "self_influence",  # Top-I on log s minus its log-length trend
    "lenmatch": None,  # random, matched to another selection's length histogram (lenmatch-<strategy>)
}
DETERMINISTIC = frozenset({"topi", "loss", "topi_strata", "topi_resid"})
LENMATCH_PREFIX = "lenmatch-"
# The workflow's {strategy} wildcard, built from STRATEGIES: every selection label (a scoring or
# clustering strategy, lenmatch-<it>, random<M>x).
_NAMED = "|".join(s for s in STRATEGIES if s not in ("random", "lenmatch"))
STRATEGY_PATTERN = rf"({re.escape(LENMATCH_PREFIX)})?({_NAMED})|random\d+x"
# CCI bins beyond this only cost time and memory (per-bin lists in summary.json): the method uses tens.
MAX_CCI_BINS = 10_000
CHUNK = 1 << 20  # rows a temporary array of a whole-pool step covers at a time


@dataclass
class Selection:
    rows: np.ndarray  # selected row indices into the score table, ascending
    details: dict = field(default_factory=dict)


def top_k(values: np.ndarray, k: int, ordered: bool = True) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first (``ordered=False``: ascending row order).
    Ties at the cut go to the lower row, so the result does not depend on how ``np.partition`` happens
    to order equal values."""
    n = len(values)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k >= n:
        idx = np.arange(n, dtype=np.int64)
    else:
        cut = np.partition(values, n - k)[n - k]  # the k-th largest value
        above = values > cut
        tied = np.flatnonzero(values == cut)[: k - int(np.count_nonzero(above))]
        above[tied] = True
        idx = np.flatnonzero(above)
    return idx[np.lexsort((idx, -values[idx]))] if ordered else idx


def allocate(sizes: np.ndarray, k: int) -> np.ndarray:
    """Budget per group: groups in ascending size order (stable), each gets min(size, remaining // left).

    This is CCS's ``bin_allocate`` in closed form. While groups are small enough to be taken whole
    (``size * left <= remaining``) they are; from the first group that is not, every later group is at
    least as large, so each gets ``q = remaining // left`` and the last ``remaining % left`` of them one
    more, exactly as the sequential floor division does. The total is always ``k`` (if ``k <= sum``).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= k <= total:
        raise ValueError(f"cannot allocate {k} over groups holding {total}")
    order = stable_order(sizes)
    s = sizes[order]
    g = len(s)
    left = g - np.arange(g, dtype=np.int64)
    remaining = k - (np.cumsum(s) - s)  # budget left when each group's turn comes, if all before were whole
    whole = s * left <= remaining
    got = s.copy()
    if not whole.all():
        first = int(np.argmin(whole))
        q, r = divmod(int(remaining[first]), g - first)
        got[first:] = q
        if r:
            got[g - r :] += 1
    out = np.empty_like(got)
    out[order] = got
    return out


def stable_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of non-negative integers, ~3x faster at millions: one
    sort of the unique keys value * n + position (no merge sort), positions read back off the keys.
    Falls back to the stable argsort where the keys could overflow int64."""
    n = len(values)
    if n == 0 or values.min() < 0 or int(values.max()) >= (1 << 62) // n:
        return np.argsort(values, kind="stable")
    keys = values.astype(np.int64) * n + np.arange(n, dtype=np.int64)
    keys.sort()
    np.remainder(keys, n, out=keys)
    return keys


# Up to this many groups, sample each group on its own (one stable radix sort of the group index and a
# tiny draw per group); beyond it, one permutation for all groups (no Python loop over groups).
FEW_GROUPS = 4096


def sample_in_groups(groups: np.ndarray, budgets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniformly sample ``budgets[g]`` members of each group ``g`` (``groups``: group index per row).

    Returns row indices, ascending. Groups whose budget is their size are taken whole and draw nothing.
    Few groups (CCI's bins): members of each group via one stable sort, then ``rng.choice`` per group.
    Many groups (clusters): one random permutation of the rows still to sample, a stable sort by group,
    and the first ``budgets[g]`` rows of each group, which are a uniform sample since the order inside
    a group is random.
    """
    counts = np.bincount(groups, minlength=len(budgets))
    if len(budgets) <= FEW_GROUPS:
        order = np.argsort(groups, kind="stable")
        starts = np.cumsum(counts) - counts
        parts = [
            order[start : start + size]
            if take == size
            else order[start + rng.choice(size, take, replace=False)]
            for start, size, take in zip(starts.tolist(), counts.tolist(), budgets.tolist(), strict=True)
            if take
        ]
        chosen = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        chosen.sort()
        return chosen
    whole = np.flatnonzero((budgets == counts)[groups])
    partial_group = (budgets > 0) & (budgets < counts)
    rows = np.flatnonzero(partial_group[groups])
    rows = rows[rng.permutation(len(rows))]
    order = stable_order(groups[rows])
    # In ``rows[order]`` each partial group's rows are consecutive, in random order: take the first
    # budget of each (positions computed per group, so only the chosen rows are gathered).
    sub_counts = np.where(partial_group, counts, 0)
    partial = np.flatnonzero(partial_group)
    take = budgets[partial]
    firsts = (np.cumsum(sub_counts) - sub_counts)[partial]
    at = np.repeat(firsts - (np.cumsum(take) - take), take) + np.arange(int(take.sum()), dtype=np.int64)
    chosen = np.concatenate([whole, rows[order[at]]])
    chosen.sort()
    return chosen


def select_topk(values: np.ndarray, k: int, column: str) -> Selection:
    rows = top_k(values, k)
    threshold = float(values[rows[-1]])
    rows.sort()
    return Selection(rows, {"column": column, "threshold": threshold})


def select_random(n: int, k: int, rng: np.random.Generator) -> Selection:
    rows = rng.choice(n, size=k, replace=False, shuffle=False).astype(np.int64)
    rows.sort()
    return Selection(rows, {})


def cci_bins(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-width bin of each value over [min, max] and the ``bins + 1`` edges.

    A value on an inner edge goes to the upper bin ([start, end) as in CCS) and the maximum is in the
    last bin: searching only the inner edges makes that structural. (CCS gets it by widening the range
    by max * 1.0001; the official pruning code dropped that, so its top remaining sequence is in no bin
    and can never be selected.) When all values are equal every value is in the last bin.
    """
    lo, hi = float(values.min()), float(values.max())
    edges = np.linspace(lo, hi, bins + 1)
    idx_type = np.int16 if bins <= np.iinfo(np.int16).max else np.int32  # int16 sorts by radix
    out = np.empty(len(values), idx_type)
    if hi == lo:
        out[:] = bins - 1
        return out, edges
    with np.errstate(over="ignore", divide="ignore"):
        scale = bins / (hi - lo)
    # By arithmetic, a value's bin is off by at most one where rounding put it on the wrong side of an
    # edge (errors of ~1e-16 of a bin): one step down or up makes it searchsorted(side="right")'s, 2x
    # faster. A range too wide or too narrow for floats (scale or max - min not finite) is searched.
    arithmetic = bool(np.isfinite(scale) and np.isfinite(hi - lo))
    for start in range(0, len(values), CHUNK):  # int64 temporaries: 8 bytes a row, a chunk at a time
        x = values[start : start + CHUNK]
        if not arithmetic:
            out[start : start + CHUNK] = np.searchsorted(edges[1:-1], x, side="right")
            continue
        i = ((x - lo) * scale).astype(np.int64)
        np.clip(i, 0, bins - 1, out=i)
        i -= (i > 0) & (x < edges[i])
        i += (i < bins - 1) & (x >= edges[i + 1])
        out[start : start + CHUNK] = i
    return out, edges


def select_cci(values: np.ndarray, k: int, beta: float, bins: int, rng: np.random.Generator) -> Selection:
    """Coverage-centric influence: drop the top ``beta`` fraction, ``bins`` equal-width score bins over
    the rest, budget to bins by :func:`allocate`, uniform sampling inside each bin."""
    if not 1 <= bins <= MAX_CCI_BINS:
        raise BiopruneError(f"cci needs 1 to {MAX_CCI_BINS:,} bins, got {bins}")
    n = len(values)
    n_drop = drop_count(n, beta)
    kept = np.ones(n, dtype=bool)
    dropped = top_k(values, n_drop, ordered=False)
    kept[dropped] = False
    kept_rows = np.flatnonzero(kept)
    del kept
    if k > len(kept_rows):
        raise BiopruneError(
            f"cci budget of {k} sequences is larger than the {len(kept_rows)} left after dropping the top "
            f"beta={beta} ({n_drop} of {n}); lower beta or the budget"
        )
    bin_of, edges = cci_bins(values[kept_rows], bins)  # the kept values are not held past this
    sizes = np.bincount(bin_of, minlength=bins)
    budgets = allocate(sizes, k)
    chosen = sample_in_groups(bin_of, budgets, rng)
    selected_per_bin = np.bincount(bin_of[chosen], minlength=bins)
    details = {
        "column": "self_influence",
        "beta": beta,
        "bins": bins,
        "n_dropped_top": int(n_drop),
        # the lowest dropped score: everything at or above it (bar ties kept by row order) is dropped
        "drop_threshold": float(values[dropped].min()) if n_drop else None,
        "edges": edges.tolist(),
        "bin_sizes": sizes.tolist(),
        "bin_budgets": budgets.tolist(),
        "selected_per_bin": selected_per_bin.tolist(),
    }
    return Selection(kept_rows[chosen], details)


def select_cluster_balanced(groups: np.ndarray, k: int, rng: np.random.Generator) -> Selection:
    """Equal share per cluster (smallest clusters taken whole first, as CCI does for bins), uniform
    sampling inside each cluster. ``groups``: dense cluster index per row."""
    sizes = np.bincount(groups)
    budgets = allocate(sizes, k)
    rows = sample_in_groups(groups, budgets, rng)
    return Selection(
        rows,
        {
            "clusters": int(len(sizes)),
            "clusters_taken_whole": int(np.count_nonzero(budgets == sizes)),
            "max_per_cluster": int(budgets.max()) if len(budgets) else 0,
        },
    )


# --- length-aware selection ---------------------------------------------------------------------------
def length_strata(lengths: np.ndarray, n_strata: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratum of each sequence: ``n_strata`` quantile bins of the pool's lengths (fewer when lengths
    tie across a quantile), and the length edges. Stratum s holds lengths in [edges[s], edges[s + 1])."""
    if n_strata < 1:
        raise ConfigError(f"length strata must be at least 1, got {n_strata}")
    edges = np.unique(quantiles(lengths, np.linspace(0, 1, n_strata + 1), method="lower"))
    if countable(lengths):
        # a stratum per length value, then one gather: 3x faster than a search per sequence at 20M
        of_length = np.searchsorted(edges[1:-1], np.arange(int(lengths.max()) + 1), side="right")
        return of_length[lengths].astype(np.int64, copy=False), edges
    strata = np.searchsorted(edges[1:-1], lengths, side="right").astype(np.int64, copy=False)
    return strata, edges


def proportional(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over groups in proportion to their sizes (largest remainder, ties to the lower group).
    Each share is within one of k * size / total, so the selection keeps the groups' proportions."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if not 0 <= k <= total:
        raise ValueError(f"cannot allocate {k} over groups holding {total}")
    exact_share = sizes * k  # in units of 1/total
    base = exact_share // total
    short = k - int(base.sum())
    if short:
        order = np.lexsort((np.arange(len(sizes)), -(exact_share - base * total)))
        base[order[:short]] += 1
    return base


def top_in_groups(values: np.ndarray, groups: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Rows of the ``budgets[g]`` largest values of each group ``g`` (ties to the lower row), ascending."""
    order = np.lexsort((np.arange(len(values)), -values, groups))
    counts = np.bincount(groups, minlength=len(budgets))
    g = groups[order]
    rank = np.arange(len(order), dtype=np.int64) - (np.cumsum(counts) - counts)[g]
    return np.sort(order[rank < budgets[g]])


def select_topi_strata(values: np.ndarray, lengths: np.ndarray, k: int, n_strata: int) -> Selection:
    """Top-I inside length strata: each stratum keeps its pool share of the budget, filled by score."""
    strata, edges = length_strata(lengths, n_strata)
    sizes = np.bincount(strata, minlength=len(edges) - 1)
    budgets = proportional(sizes, k)
    rows = top_in_groups(values, strata, budgets)
    return Selection(
        rows,
        {"column": "self_influence", "strata_edges": edges.tolist(), "stratum_sizes": sizes.tolist(),
         "stratum_budgets": budgets.tolist()},
    )  # fmt: skip


def select_topi_resid(values: np.ndarray, lengths: np.ndarray, k: int) -> Selection:
    """Top-I on the residual of log s after a least-squares fit of log s on log length over the pool:
    the sequences most influential for their length. Scores <= 0 rank last."""
    from bioprune.influence.length import loglog_fit

    a, b, r2 = loglog_fit(values, lengths)
    with np.errstate(divide="ignore"):
        resid = np.log(np.where(values > 0, values, 0.0)) - (a + b * np.log(np.maximum(lengths, 1)))
    rows = top_k(resid, k)
    threshold = float(resid[rows[-1]])
    rows.sort()
    return Selection(
        rows, {"column": "self_influence", "loglog_intercept": a, "loglog_slope": b, "loglog_r2": r2,
               "residual_threshold": threshold},
    )  # fmt: skip


def select_length_matched(
    lengths: np.ndarray, reference_rows: np.ndarray, n_strata: int, rng: np.random.Generator
) -> Selection:
    """A uniform random sample with the reference selection's count in every length stratum: a random
    arm with the same lengths (so a coreset's gain over it is not a length effect)."""
    strata, edges = length_strata(lengths, n_strata)
    budgets = np.bincount(strata[reference_rows], minlength=len(edges) - 1)
    rows = sample_in_groups(strata, budgets, rng)
    # (a mask, not np.intersect1d: its np.unique calls took 4.8 s for 2M rows under numpy 2.4)
    in_reference = np.zeros(len(lengths), bool)
    in_reference[reference_rows] = True
    return Selection(
        rows, {"strata_edges": edges.tolist(), "stratum_budgets": budgets.tolist(),
               "overlap_with_reference": int(np.count_nonzero(in_reference[rows]))},
    )  # fmt: skip


def parse_strategy(label: str, multiplier: int | None = None) -> tuple[str, int]:
    """``random10x`` -> ("random", 10); ``cci`` -> ("cci", 1). The workflow names random baselines by
    their size multiplier so that each is its own wildcard value."""
    m = re.fullmatch(r"random(\d+)x", label)
    if m:
        label_mult = int(m[1])
        if multiplier not in (None, label_mult):
            raise ConfigError(f"strategy {label!r} and --multiplier {multiplier} disagree")
        if label_mult < 1:
            raise ConfigError(f"strategy {label!r}: the multiplier must be at least 1")
        return "random", label_mult
    if label.startswith(LENMATCH_PREFIX):
        ref = label[len(LENMATCH_PREFIX) :]
        if ref.startswith(LENMATCH_PREFIX) or parse_strategy(ref)[0] == "random":
            raise ConfigError(
                f"strategy {label!r}: match the lengths of a non-random selection, e.g. lenmatch-topi"
            )
        return "lenmatch", 1
    if label not in STRATEGIES or label == "lenmatch":
        choices = ", ".join(
            [*(x for x in STRATEGIES if x != "lenmatch"), "random<M>x", "lenmatch-<strategy>"]
        )
        raise ConfigError(f"unknown strategy {label!r}; choose one of {choices}")
    if multiplier not in (None, 1) and label != "random":
        raise ConfigError(f"only the random strategy takes a size multiplier, not {label!r}")
    return label, multiplier or 1


def strategy_label(strategy: str, multiplier: int) -> str:
    return f"random{multiplier}x" if strategy == "random" else strategy
