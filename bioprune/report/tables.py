"""Seed summaries and Markdown rendering.

Spread is the sample standard deviation over seeds (ddof 1); with one seed it is empty, never 0, and the
tables say so in words. Numbers are written by :mod:`bioprune.report.numbers`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bioprune.report import numbers
from bioprune.report.collect import sort_rows

KEYS = ["task", "metric", "budget", "strategy"]


def seed_summary(long: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, metric, budget, strategy): a column per seed, then mean, std and n."""
    if long.empty:
        return pd.DataFrame(columns=[*KEYS, "mean", "std", "n"])
    df = long.copy()
    df["seed_col"] = "seed" + df["seed"].astype(str)
    # unstack keeps only the (task, metric, budget, strategy) combinations that exist, NaN values too
    wide = df.set_index([*KEYS, "seed_col"])["value"].unstack("seed_col")
    seed_cols = sorted(wide.columns, key=lambda c: int(c[4:]) if c[4:].isdigit() else 0)
    wide = wide[seed_cols]
    stats = df.groupby(KEYS)["value"].agg(
        mean="mean", std=lambda v: v.std(ddof=1) if v.count() > 1 else np.nan, n="count"
    )
    out = wide.join(stats).reset_index()
    out.columns.name = None
    lower = df.groupby(["task", "metric"])["lower_is_better"].first()
    headline = df.groupby(["task", "metric"])["headline"].first()
    out["lower_is_better"] = [bool(lower[(t, m)]) for t, m in zip(out.task, out.metric, strict=True)]
    out["headline"] = [bool(headline[(t, m)]) for t, m in zip(out.task, out.metric, strict=True)]
    task_order = list(dict.fromkeys(long["task"]))
    out["_t"] = out["task"].map(task_order.index)
    metric_order = list(dict.fromkeys(long["metric"]))
    out["_m"] = out["metric"].map(metric_order.index)
    out = sort_rows(out, ["_t", "_m", "budget", "strategy"]).drop(columns=["_t", "_m"])
    return out


ONE_SEED = "one seed: no spread"


def spread(std, n) -> str:
    """The sd cell of a seed summary: the value, or why there is none."""
    if n == 1:
        return ONE_SEED
    return numbers.value(std)


def metrics_markdown(summary: pd.DataFrame) -> str:
    """The every-metric table of a seed summary: each seed, mean, sd (in words with one seed), n."""
    table = summary.drop(columns=["lower_is_better", "headline"])
    table = table.assign(std=[spread(s, n) for s, n in zip(table["std"], table["n"], strict=True)])
    return to_markdown(table)


def headline_table(summary: pd.DataFrame, uniform: dict[str, int] | None = None) -> pd.DataFrame:
    """Rows budget x strategy, one column per task: its headline metric as "mean ± std". ``uniform``:
    task -> the perplexity of a uniform guess, named in the header of that task's perplexity column."""
    head = summary[summary["headline"]]
    if head.empty:
        return pd.DataFrame(columns=["budget", "strategy"])
    cells = head.assign(cell=[numbers.mean_sd(m, s) for m, s in zip(head["mean"], head["std"], strict=True)])
    uniform = uniform or {}

    def column(task: str, metric: str, lower: bool) -> str:
        notes = ["lower is better"] if lower else []
        if metric == "perplexity" and task in uniform:
            notes.append(f"uniform guess {uniform[task]}")
        return f"{task} {metric}" + (f" ({'; '.join(notes)})" if notes else "")

    keys = zip(cells["task"], cells["metric"], cells["lower_is_better"], strict=True)
    cells = cells.assign(column=[column(*k) for k in keys])
    cols = list(dict.fromkeys(cells["column"]))
    table = cells.pivot_table(index=["budget", "strategy"], columns="column", values="cell", aggfunc="first")
    table = table.reindex(columns=cols).reset_index()
    table.columns.name = None
    return sort_rows(table.fillna("–"), ["budget", "strategy"])


def to_markdown(df: pd.DataFrame, formats: dict[str, Callable] | None = None) -> str:
    """A GitHub Markdown table. A column named in ``formats`` is written by its function; other float
    columns as metric values (:func:`bioprune.report.numbers.value`, NaN as n/a), the rest as they are."""
    formats = formats or {}

    def cell(column, v) -> str:
        if column in formats:
            return formats[column](v)
        if isinstance(v, float | np.floating):
            return numbers.value(v)
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = [
        "| " + " | ".join(cell(c, v) for c, v in zip(df.columns, row, strict=True)) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"
