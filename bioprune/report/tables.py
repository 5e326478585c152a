"""Seed summaries and Markdown rendering.

Spread is the sample standard deviation over seeds (ddof 1); with one seed it is empty, never 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

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


def fmt(v, spread=None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    digits = 4 if abs(v) < 100 else 1
    text = f"{v:.{digits}f}"
    if spread is not None and not (isinstance(spread, float) and math.isnan(spread)):
        text += f" ± {spread:.{digits}f}"
    return text


def headline_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows budget x strategy, one column per task: its headline metric as "mean ± std"."""
    head = summary[summary["headline"]]
    if head.empty:
        return pd.DataFrame(columns=["budget", "strategy"])
    cells = head.assign(cell=[fmt(m, s) for m, s in zip(head["mean"], head["std"], strict=True)])
    arrows = np.where(cells["lower_is_better"], " (lower is better)", "")
    cells = cells.assign(column=cells["task"] + " " + cells["metric"] + arrows)
    cols = list(dict.fromkeys(cells["column"]))
    table = cells.pivot_table(index=["budget", "strategy"], columns="column", values="cell", aggfunc="first")
    table = table.reindex(columns=cols).reset_index()
    table.columns.name = None
    return sort_rows(table.fillna("–"), ["budget", "strategy"])


def to_markdown(df: pd.DataFrame, floatfmt=fmt) -> str:
    """A GitHub Markdown table (numbers through ``floatfmt``; NaN shown as n/a)."""

    def cell(v) -> str:
        if isinstance(v, float | np.floating):
            v = float(v)
            # counts stored as floats (a column with a missing value) print as integers
            return str(int(v)) if v.is_integer() else floatfmt(v)
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
