"""Statistics of a whole score table, computed once by ``bioprune merge-scores`` and stored in the merged
table, so that each selection on it reads them instead of computing them again (torch-free).

A selection's ``summary.json`` reports, for the pool, the distribution of every score column
(:func:`bioprune.select.summary.distribution`: exact quantiles and mean) and the length diagnostics of
self-influence (:func:`bioprune.influence.length.length_diagnostics`). Neither depends on the selection,
only on the table: at 20M scores they take ~2.7 s of every selection, and a run makes ~18 selections of
one table. merge-scores streams every row of the table anyway; it computes them there and stores them, as
JSON, in the Parquet file's key-value metadata under :data:`STATS_KEY` (the provenance under
``bioprune`` is left as it was). Only the file's footer holds them, not its Arrow schema, so a table read
and written again (pyarrow, pandas) does not carry them over.

Select uses them only when they are of exactly its candidates (:func:`stored_pool_stats`): the same
number of rows; each score column's n, mean, min and max as the column select read (exact float
comparisons: the same numbers computed on the same values are bit for bit the same); and the lengths
the diagnostics ran on (every step-th row of the score table's ``length`` column) the same as the pool
table's lengths select uses at those rows. Otherwise it computes them as before and says why.
"""

from __future__ import annotations

import logging

import numpy as np

from bioprune.influence.length import length_diagnostics, subsample, warn_if_length_dominated
from bioprune.select.summary import distribution

log = logging.getLogger(__name__)

STATS_KEY = b"bioprune.score_stats"
FORMAT = 1  # of the JSON below; stats of another format are not used (computed again)
COLUMNS = ("self_influence", "loss")
ABOUT = (
    "statistics of every row of this table, computed by bioprune merge-scores as it wrote it: "
    "'distribution' of each score column (bioprune.select.summary.distribution: mean and linear "
    "quantiles), 'length_diagnostics' of self_influence against length and loss "
    "(bioprune.influence.length.length_diagnostics), and 'sampled_lengths', the count, sum and "
    "row-weighted sum of the lengths those diagnostics used (rows 0, step, 2 step, ...), by which a "
    "selection checks that its pool's lengths are the same"
)


def sampled_lengths(lengths: np.ndarray, step: int) -> dict:
    """Count, sum and row-weighted sum (weights 1, 2, ...; int64, wrapping, so exact) of ``lengths``,
    which are every ``step``-th length of a table: a cheap check that two such samples are the same."""
    lengths = np.asarray(lengths, np.int64)
    weights = np.arange(1, len(lengths) + 1, dtype=np.int64)
    return {
        "step": step,
        "count": len(lengths),
        "sum": int(lengths.sum()),
        "weighted_sum": int(lengths @ weights),
    }


def table_stats(columns: dict[str, np.ndarray], lengths: np.ndarray, *, what: str) -> dict:
    """The statistics of a score table whose whole ``self_influence`` and ``loss`` columns are
    ``columns`` and whose ``length`` column's rows 0, step, 2 step, ... (``subsample``) are ``lengths``.
    The length diagnostics run on those rows, as select's run on the whole columns (it takes the same
    rows): the numbers are the same, ``n`` the whole table's."""
    n = len(columns["self_influence"])
    step = subsample(n).step
    if len(lengths) != len(range(0, n, step)):  # a bug, not a user error
        raise RuntimeError(f"{len(lengths)} sampled lengths for {n} rows at step {step}")
    diagnostics = length_diagnostics(
        columns["self_influence"][::step], lengths, columns["loss"][::step], what=what
    )
    diagnostics["n"] = n  # the statistics ran on every step-th row; n is the whole table
    return {
        "format": FORMAT,
        "about": ABOUT,
        "n": n,
        "distribution": {c: distribution(columns[c]) for c in COLUMNS},
        "length_diagnostics": diagnostics,
        "sampled_lengths": sampled_lengths(lengths, step),
    }


def stored_pool_stats(
    stats: dict | None, scores: dict[str, np.ndarray], lengths: np.ndarray, *, what: str
) -> tuple[dict[str, dict], dict | None] | None:
    """``({column: distribution(scores[column])}, length_diagnostics(...))`` as select's summary computes
    them for its candidates (``scores``: the score columns in table order, ``lengths``: the pool's
    lengths of the same rows), read from a table's stored ``stats``; the diagnostics are None when there
    is no self_influence column. None when there are no stats, or they are not of these candidates
    (logged): the caller computes them. Logs the length-dominated warning as
    :func:`length_diagnostics` would."""
    if stats is None:
        return None
    why = _mismatch(stats, scores, lengths)
    if why:
        log.warning("%s: stored score statistics not used (%s); computing them", what, why)
        return None
    diagnostics = stats["length_diagnostics"] if "self_influence" in scores else None
    if diagnostics is not None:
        warn_if_length_dominated(diagnostics, what)
    return {c: stats["distribution"][c] for c in scores}, diagnostics


def _mismatch(stats: dict, scores: dict[str, np.ndarray], lengths: np.ndarray) -> str | None:
    """Why ``stats`` are not of these candidates; None when they are."""
    n = len(lengths)
    try:
        if stats.get("format") != FORMAT:
            return f"format {stats.get('format')!r}, this version reads {FORMAT}"
        if stats["n"] != n:
            return f"they are of {stats['n']} rows, the table has {n} candidates"
        if set(scores) - set(COLUMNS) or ("self_influence" in scores and "loss" not in scores):
            return f"they are of the columns {', '.join(COLUMNS)}, select read {', '.join(scores)}"
        for column, values in scores.items():
            stored = stats["distribution"][column]
            if n == 0:
                if stored != {"n": 0}:
                    return f"{column}: not of an empty column"
                continue
            here = {
                "n": n,
                "mean": float(np.mean(values)),
                "min": float(values.min()),
                "max": float(values.max()),
            }
            differ = [k for k, v in here.items() if stored[k] != v]
            if differ:
                return f"{column}: {', '.join(differ)} differ from the column's"
        step = subsample(n).step
        if stats["sampled_lengths"] != sampled_lengths(lengths[::step], step):
            return "the table's lengths differ from the pool's (scored from another pool with the same ids?)"
    except (AttributeError, KeyError, TypeError) as exc:
        return f"not in the format of this version ({type(exc).__name__}: {exc})"
    return None
