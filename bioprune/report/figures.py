"""Report figures: each task's metrics against the budget, and the influence histogram.

Metric figures: one panel per metric. Selection strategies are lines over the budget (sequences a 1x
selection keeps, log axis), error bars one standard deviation over seeds. The references — random 1x,
random 10x and, when present, the untrained initialisation and the task's floor (no language model,
``bioprune floor``) — are dashed lines; with a single budget
the strategies become points by name and every reference a horizontal line with its ±1 sd band.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bioprune.report.order import budget_key, strategy_rank  # noqa: E402
from bioprune.report.ticks import tidy_ticks  # noqa: E402

REFERENCES = ("random1x", "random10x", "untrained", "floor")
# References over budgets carry a marker: a reference run at one budget only (random 10x where ten times
# the budget is still inside the pool) is a single point, which a line style alone does not draw.
REF_STYLE = {
    "random1x": {"color": "0.35", "ls": "--", "marker": "s"},
    "random10x": {"color": "0.1", "ls": "-.", "marker": "D"},
    "untrained": {"color": "tab:red", "ls": ":"},
    "floor": {"color": "tab:olive", "ls": (0, (1, 3))},  # not brown: it read as the untrained red
}
UNIFORM_STYLE = {"color": "tab:purple", "ls": (0, (6, 2, 1, 2)), "lw": 1.2}


def budget_positions(summary: pd.DataFrame, compute: pd.DataFrame) -> dict[str, float]:
    """Budget token -> sequences kept by a 1x selection (median over models), or its rank if unknown."""
    budgets = sorted((b for b in summary["budget"].unique() if b != "none"), key=budget_key)
    pos = {}
    for i, b in enumerate(budgets):
        v = compute.loc[compute["budget"] == b, "kept_1x"].dropna() if not compute.empty else pd.Series([])
        pos[b] = float(v.median()) if len(v) else float(i + 1)
    return pos


def _spread(rows: pd.DataFrame) -> list[float]:
    """The y values a row set spans: mean - sd and mean + sd of each value."""
    mean, sd = rows["mean"].astype(float), rows["std"].astype(float).fillna(0)
    return [v for v in (*(mean - sd), *(mean + sd)) if np.isfinite(v)]


def _off_scale(ax, focus: list[float], far: dict[str, float]) -> None:
    """Keep the y axis on the models when a reference lies far outside their range (the untrained
    model's perplexity of 25 against 3.7-3.8 made every model one line): that reference is named at the
    panel's edge with its value instead."""
    if not focus or not far:
        return
    lo, hi = min(focus), max(focus)
    span = max(hi - lo, 1e-9 * max(abs(hi), 1.0))
    outside = {k: v for k, v in far.items() if v > hi + 3 * span or v < lo - 3 * span}
    if not outside:
        return
    ax.set_ylim(lo - 0.25 * span, hi + 0.25 * span)
    for k, (ref, value) in enumerate(outside.items()):
        up = value > hi
        ax.annotate(
            f"{ref} {value:.4g} {'above' if up else 'below'}, off scale",
            xy=(0.98, 0.97 - 0.07 * k if up else 0.03 + 0.07 * k),
            xycoords="axes fraction",
            ha="right",
            va="top" if up else "bottom",
            fontsize=8,
            color=REF_STYLE[ref]["color"],
        )


def metric_figure(
    summary: pd.DataFrame,
    compute: pd.DataFrame,
    path: os.PathLike | str,
    *,
    title: str,
    dpi: int = 150,
    uniform: float | None = None,
) -> plt.Figure:
    """``summary``: the seed summary rows of one task (tables.seed_summary). ``uniform``: the perplexity
    of a uniform guess over the alphabet, drawn on the perplexity panel."""
    metrics = list(dict.fromkeys(summary["metric"]))
    # a budget where no model has a value (an empty test set) would leave half of every panel blank:
    # left out, and named in the title
    valued = set(summary.loc[summary["mean"].notna(), "budget"])
    empty = sorted(set(summary["budget"]) - valued - {"none"}, key=budget_key)
    summary = summary[~summary["budget"].isin(empty)]
    if empty:
        title += f" (no values at {', '.join(empty)}: see the report's Tasks)"
    fig, axes = plt.subplots(
        1,
        max(1, len(metrics)),
        figsize=(4.6 * max(1, len(metrics)), 3.8),
        layout="constrained",
        squeeze=False,
    )
    pos = budget_positions(summary, compute)
    single = len(pos) <= 1
    strategies = sorted((s for s in summary["strategy"].unique() if s not in REFERENCES), key=strategy_rank)
    for ax, metric in zip(axes[0], metrics, strict=False):
        rows = summary[summary["metric"] == metric]
        lower = bool(rows["lower_is_better"].iloc[0]) if len(rows) else False
        for k, strat in enumerate(strategies):
            r = rows[rows["strategy"] == strat].sort_values("budget", key=lambda s: s.map(budget_key))
            if r.empty:
                continue
            x = [k] * len(r) if single else [pos[b] for b in r["budget"]]
            ax.errorbar(x, r["mean"], yerr=r["std"].fillna(0), marker="o", capsize=3, label=strat, lw=1.5)
        focus = [v for strat in strategies for v in _spread(rows[rows["strategy"] == strat])]
        far = {}  # reference -> its level, when it would squeeze every model into one line
        for ref in REFERENCES:
            r = rows[rows["strategy"] == ref].sort_values("budget", key=lambda s: s.map(budget_key))
            if r.empty or r["mean"].isna().all():
                continue
            style = REF_STYLE[ref]
            if ref != "untrained":
                focus += _spread(r)
            if single or ref in ("untrained", "floor"):
                m, s = float(r["mean"].mean()), float(r["std"].fillna(0).mean())
                if ref == "untrained":
                    far[ref] = m
                style = {k: v for k, v in style.items() if k != "marker"}
                ax.axhline(m, label=ref, lw=1.2, **style)
                if s > 0:
                    ax.axhspan(m - s, m + s, color=style["color"], alpha=0.12, lw=0)
            else:
                ax.errorbar(
                    [pos[b] for b in r["budget"]],
                    r["mean"],
                    yerr=r["std"].fillna(0),
                    capsize=2,
                    label=ref,
                    lw=1.2,
                    **style,
                )
        if single:
            ax.set_xticks(range(len(strategies)), strategies, rotation=20)
            ax.set_xlim(-0.6, max(len(strategies) - 0.4, 0.6))
            ax.set_xlabel(f"strategy ({next(iter(pos), 'no budget')})")
        else:
            xs = list(pos.values())
            if min(xs) > 0 and max(xs) / min(xs) > 5:
                ax.set_xscale("log")
            ax.set_xlabel("sequences kept (1x budget)")
        if metric == "perplexity" and uniform:
            ax.axhline(uniform, label=f"uniform guess ({uniform:g})", **UNIFORM_STYLE)
            focus.append(uniform)
        _off_scale(ax, focus, far)
        ax.set_ylabel(metric + (" (lower is better)" if lower else ""))
        ax.grid(alpha=0.3)
        tidy_ticks(ax, x=not single)  # a single budget's x axis names the strategies
    # one legend for every panel: each mark once, strategies, then references, then the uniform guess
    legend = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    order = [*strategies, *REFERENCES]
    labels = sorted(legend, key=lambda lab: order.index(lab) if lab in order else len(order))
    if labels:
        fig.legend([legend[lab] for lab in labels], labels, loc="outside right center", fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)  # the figure object stays readable: tests check its axes
    return fig


def influence_histogram(
    values: np.ndarray,
    path: os.PathLike | str,
    *,
    thresholds: dict[str, float] | None = None,
    dpi: int = 150,
    column: str = "self_influence",
) -> None:
    """Histogram of the pool's scores (log axis when they span > 2 decades) with the Top-I cut of each
    budget (the lowest score Top-I keeps)."""
    fig, ax = plt.subplots(figsize=(7.5, 4), layout="constrained")
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v):
        lo, hi = float(v.min()), float(v.max())
        log_x = lo > 0 and hi / lo > 100
        edges = np.geomspace(lo, hi, 81) if log_x else np.linspace(lo, hi if hi > lo else lo + 1, 81)
        ax.hist(v, bins=edges, color="tab:blue", alpha=0.8)
        if log_x:
            ax.set_xscale("log")
        for i, (budget, t) in enumerate(sorted((thresholds or {}).items(), key=lambda kv: budget_key(kv[0]))):
            ax.axvline(t, color=f"C{i + 1}", ls="--", lw=1.2, label=f"Top-I cut, {budget}")
        if thresholds:
            ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel(f"{column} (s = Σ g² / (F + ε))")
    ax.set_ylabel("sequences")
    ax.set_title(f"{column} over the scored pool ({len(v):,} sequences)")
    tidy_ticks(ax)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
