"""The verdict table: does each selection strategy beat random selection of the same size?

For every strategy, budget and task (headline metric only), the per-seed differences to random 1x (the
same budget and seed) give the mean difference and its 95% paired t interval (:mod:`bioprune.report.stats`).
Then, Holm-corrected over the tasks of one strategy and budget:

- **beats random 1x**: ``yes`` when the Holm-adjusted two-sided p < 0.05 and the difference is in the
  better direction (higher, or lower for perplexity, loss and mse); ``no: worse`` when significant the
  other way; ``no`` otherwise.
- **reaches random 10x**: the same paired comparison with random 10x. ``yes`` when the mean difference is
  at least 0 in the better direction (``yes, better`` when also significant); ``no: worse`` when
  significantly worse; ``no`` when worse on average but within the noise.

With fewer than two paired seeds there is no interval and no test: the cells say ``n < 2``.

Warnings (:func:`warnings`): a model that does not beat the untrained model (paired by seed) or a floor
(a result computed without a pretrained model, e.g. one-hot or k-mer features) on a task's headline
metric. With two or more seeds "beats" means the 95% interval of the difference lies entirely on the
better side; with one seed, that the difference is on the better side (no test possible).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bioprune.report import numbers
from bioprune.report.collect import sort_rows
from bioprune.report.stats import Paired, holm, paired

ALPHA = 0.05
RANDOM_1X, RANDOM_10X, UNTRAINED, FLOOR = "random1x", "random10x", "untrained", "floor"
NOT_ARMS = (RANDOM_1X, UNTRAINED)  # rows of the verdict table: every other strategy (random 10x included)


def fmt_num(v: float, *, sign: bool = False) -> str:
    """A metric value or difference as every report table writes it (:mod:`bioprune.report.numbers`)."""
    return numbers.value(v, sign=sign)


def fmt_difference(r: Paired) -> str:
    if r.n == 0:
        return "n/a: no value to pair (see Tasks)"
    if not r.has_interval:
        return f"{fmt_num(r.mean, sign=True)} (n < 2: no interval)"
    return f"{fmt_num(r.mean, sign=True)} [{fmt_num(r.lo, sign=True)}, {fmt_num(r.hi, sign=True)}]"


def _fmt_p(p: float) -> str:
    return "p_Holm < 0.001" if p < 0.001 else f"p_Holm = {p:.3f}"


def headline_values(long: pd.DataFrame) -> pd.DataFrame:
    """strategy, budget, seed, task, metric, value, lower_is_better of each task's headline metric, for
    the models (a task's floor rows, strategy ``floor``, are compared through ``--floors`` instead)."""
    models = long[long["headline"] & (long["strategy"] != FLOOR)]
    return models.drop(columns=["headline", "kind"], errors="ignore")


def compare(values: pd.DataFrame, reference: str, *, by_budget: bool = True) -> pd.DataFrame:
    """Paired difference of every other strategy to ``reference`` on each task: one row per (task,
    metric, budget, strategy) with n, mean, lo, hi, p and the per-seed differences, pairing seeds at the
    same budget (``by_budget``) or by seed alone (the untrained model has no budget)."""
    ref = values[values["strategy"] == reference]
    arms = values[values["strategy"] != reference]
    keys = ["task", "metric", "seed"] + (["budget"] if by_budget else [])
    merged = arms.merge(ref[[*keys, "value"]], on=keys, suffixes=("", "_ref"))
    rows = []
    for (task, metric, budget, strategy), g in merged.groupby(
        ["task", "metric", "budget", "strategy"], sort=False
    ):
        r = paired((g["value"] - g["value_ref"]).to_numpy())
        rows.append(
            {
                "task": task,
                "metric": metric,
                "budget": budget,
                "strategy": strategy,
                "lower_is_better": bool(g["lower_is_better"].iloc[0]),
                "result": r,
            }
        )
    return pd.DataFrame(rows, columns=["task", "metric", "budget", "strategy", "lower_is_better", "result"])


def _with_holm(cmp: pd.DataFrame) -> pd.DataFrame:
    """Adds p_holm: Holm over the tasks of each (strategy, budget)."""
    cmp = cmp.copy()
    cmp["p_holm"] = np.nan
    for _, idx in cmp.groupby(["strategy", "budget"], sort=False).groups.items():
        cmp.loc[idx, "p_holm"] = holm([r.p for r in cmp.loc[idx, "result"]])
    return cmp


def _better(r: Paired, lower: bool) -> float:
    """The mean difference signed so that positive is better."""
    return -r.mean if lower else r.mean


def _beats_cell(r: Paired, p: float, lower: bool) -> str:
    if r.n == 0:
        return "n/a"
    if not r.has_interval:
        return "n < 2: no test"
    if p < ALPHA:
        return f"{'yes' if _better(r, lower) > 0 else 'no: worse'} ({_fmt_p(p)})"
    return f"no ({_fmt_p(p)})"


def _reaches_cell(r: Paired, p: float, lower: bool) -> str:
    if r.n == 0:
        return "n/a"
    if not r.has_interval:
        return "n < 2: no test"
    gain = _better(r, lower)
    if gain >= 0:
        return f"yes, better ({_fmt_p(p)})" if p < ALPHA else f"yes ({_fmt_p(p)})"
    return f"no: worse ({_fmt_p(p)})" if p < ALPHA else f"no ({_fmt_p(p)})"


def verdict_table(long: pd.DataFrame) -> pd.DataFrame:
    """Rows budget x strategy x task: the difference to random 1x with its interval, beats random 1x,
    the difference to random 10x, reaches random 10x. Empty when there is no random 1x arm."""
    cols = [
        "budget",
        "strategy",
        "task",
        "seeds",
        "difference to random 1x [95% CI]",
        "beats random 1x",
        "difference to random 10x [95% CI]",
        "reaches random 10x",
    ]
    values = headline_values(long)
    values = values[values["strategy"] != UNTRAINED]
    if not (values["strategy"] == RANDOM_1X).any():
        return pd.DataFrame(columns=cols)
    vs1 = _with_holm(compare(values, RANDOM_1X))
    has10 = (values["strategy"] == RANDOM_10X).any()
    vs10 = _with_holm(compare(values, RANDOM_10X)) if has10 else None
    rows = []
    for row in vs1.itertuples(index=False):
        lower = row.lower_is_better
        task = f"{row.task} {row.metric}" + (" (lower is better)" if lower else "")
        out = {
            "budget": row.budget,
            "strategy": row.strategy,
            "task": task,
            "seeds": row.result.n,
            "difference to random 1x [95% CI]": fmt_difference(row.result),
            "beats random 1x": _beats_cell(row.result, row.p_holm, lower),
            "difference to random 10x [95% CI]": "–",
            "reaches random 10x": "–",
        }
        if vs10 is not None and row.strategy != RANDOM_10X:
            m = vs10[
                (vs10["task"] == row.task)
                & (vs10["budget"] == row.budget)
                & (vs10["strategy"] == row.strategy)
            ]
            if len(m):
                r10 = m.iloc[0]
                out["difference to random 10x [95% CI]"] = fmt_difference(r10["result"])
                out["reaches random 10x"] = _reaches_cell(r10["result"], r10["p_holm"], lower)
        rows.append(out)
    table = pd.DataFrame(rows, columns=cols)
    task_order = list(dict.fromkeys(long["task"]))
    table["_t"] = [task_order.index(t.split(" ", 1)[0]) for t in table["task"]]
    return sort_rows(table, ["budget", "strategy", "_t"]).drop(columns="_t")


def _beaten(r: Paired, lower: bool) -> bool:
    if r.has_interval:
        return (r.hi < 0) if lower else (r.lo > 0)
    return r.n == 1 and _better(r, lower) > 0


def _model(strategy: str, budget: str) -> str:
    return strategy if budget in (None, "none") else f"{strategy} {budget}"


def _warning(r: Paired, lower: bool, what: str, reference: str) -> str:
    if r.has_interval:
        detail = f"difference {fmt_difference(r)}, {r.n} seeds"
    else:
        detail = f"difference {fmt_num(r.mean, sign=True)}, one seed, no test"
    return f"{what} does not beat {reference} ({detail})"


def warnings(long: pd.DataFrame, floors: pd.DataFrame | None = None) -> list[str]:
    """One line per (model, task) that does not beat the untrained model, or a floor, on the task's
    headline metric. ``floors``: task, name, metric, value (one row per floor and metric)."""
    values = headline_values(long)
    out = []
    if (values["strategy"] == UNTRAINED).any():
        cmp = compare(values, UNTRAINED, by_budget=False)
        for row in sort_rows(cmp, ["budget", "strategy"]).itertuples(index=False):
            if row.result.n and not _beaten(row.result, row.lower_is_better):
                what = f"{_model(row.strategy, row.budget)} on {row.task} {row.metric}"
                out.append(_warning(row.result, row.lower_is_better, what, "the untrained model"))
    if floors is not None and not floors.empty:
        for f in floors.itertuples(index=False):
            arms = values[(values["task"] == f.task) & (values["metric"] == f.metric)]
            for (budget, strategy), g in sort_rows(arms, ["budget", "strategy"]).groupby(
                ["budget", "strategy"], sort=False
            ):
                lower = bool(g["lower_is_better"].iloc[0])
                r = paired((g["value"] - f.value).to_numpy())
                if r.n and not _beaten(r, lower):
                    what = f"{_model(strategy, budget)} on {f.task} {f.metric}"
                    ref = f"the {f.name} floor, {fmt_num(f.value)},"
                    out.append(_warning(r, lower, what, ref))
    return out
