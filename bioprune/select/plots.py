"""Figures: one diagnostics figure per selection, and a coverage comparison across selections."""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SELECTED = "tab:blue"
POOL = "0.6"
MAX_EDGES_DRAWN = 200  # more CCI bin edges than this would hide the histogram behind them


def diagnostics(
    path: os.PathLike | str,
    *,
    title: str,
    values: np.ndarray | None,
    column: str | None,
    selected_mask: np.ndarray,
    topi_threshold: float | None,
    cci: dict | None,
    lengths: np.ndarray,
) -> None:
    """Score histogram (pool vs selected, Top-I region, CCI bins and dropped top), selected share per
    score bin (per CCI bin for cci), and the length distributions."""
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.5), layout="constrained")
    ax_hist, ax_bins, ax_len, ax_vs = axes
    if values is not None and len(values):
        lo, hi = float(values.min()), float(values.max())
        # Influence scores are heavy-tailed: a log axis when they span more than two decades, so the
        # bulk is visible. CCI's bins stay equal-width in score (they look unequal there).
        log_x = lo > 0 and hi / lo > 100
        if log_x:
            edges = np.geomspace(lo, hi, 101)
            ax_hist.set_xscale("log")
        else:
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 101)
        if cci is not None and cci["bins"] <= MAX_EDGES_DRAWN:
            ax_hist.vlines(cci["edges"], 0, 1, transform=ax_hist.get_xaxis_transform(), color="tab:green",
                           lw=0.5, alpha=0.5, zorder=0, label=f"CCI bin edges ({cci['bins']})")  # fmt: skip
        ax_hist.hist(values, bins=edges, histtype="stepfilled", color=POOL, label="pool")
        ax_hist.hist(
            values[selected_mask], bins=edges, histtype="stepfilled", color=SELECTED, label="selected"
        )
        if topi_threshold is not None:
            ax_hist.axvspan(topi_threshold, hi, color="tab:orange", alpha=0.15, label="Top-I region (same k)")
        if cci is not None and cci["drop_threshold"] is not None:
            ax_hist.axvspan(
                cci["drop_threshold"], hi, fill=False, hatch="//", edgecolor="tab:red", alpha=0.4, lw=0,
                label=f"CCI dropped top {cci['beta']:g}",
            )  # fmt: skip
        ax_hist.set_yscale("log")
        ax_hist.set_xlabel(column)
        ax_hist.set_ylabel("sequences")
        ax_hist.legend(fontsize=8)

        if cci is not None:
            # one step outline per series, not a bar per bin: thousands of bins draw as fast as ten
            x = np.arange(cci["bins"] + 1)
            ax_bins.stairs(cci["bin_sizes"], x, fill=True, color=POOL, label="bin size")
            ax_bins.stairs(cci["selected_per_bin"], x, fill=True, color=SELECTED, label="selected")
            ax_bins.set_yscale("log")
            ax_bins.set_xlabel("CCI bin (ascending score)")
            ax_bins.set_ylabel("sequences")
            ax_bins.legend(fontsize=8)
        else:
            pool_counts, _ = np.histogram(values, bins=edges)
            sel_counts, _ = np.histogram(values[selected_mask], bins=edges)
            share = np.divide(sel_counts, pool_counts, out=np.zeros(len(sel_counts)), where=pool_counts > 0)
            ax_bins.stairs(share, edges, fill=True, color=SELECTED)
            if log_x:
                ax_bins.set_xscale("log")
            ax_bins.set_xlabel(column)
            ax_bins.set_ylabel("share of the bin selected")
            ax_bins.set_ylim(0, 1.05)
    else:
        for ax in (ax_hist, ax_bins):
            ax.text(0.5, 0.5, "no score column", ha="center", va="center", transform=ax.transAxes)
    ax_hist.set_title("score distribution")
    ax_bins.set_title("selected per score bin")

    log_len = np.log10(np.maximum(lengths, 1))
    len_edges = np.linspace(log_len.min(), log_len.max() + 1e-9, 61) if len(log_len) else 10
    # stepfilled: one polygon per histogram instead of a patch per bar (drawing time)
    ax_len.hist(log_len, bins=len_edges, density=True, histtype="stepfilled", color=POOL, label="pool")
    ax_len.hist(
        log_len[selected_mask], bins=len_edges, density=True, histtype="stepfilled", color=SELECTED,
        alpha=0.7, label="selected",
    )  # fmt: skip
    for arr, color in ((lengths, "0.3"), (lengths[selected_mask], SELECTED)):
        if len(arr):
            ax_len.axvline(np.log10(max(np.median(arr), 1)), color=color, ls="--", lw=1)
    _score_vs_length(ax_vs, values, column, lengths, selected_mask)
    ax_len.set_xlabel("log10 length (dashed: medians)")
    ax_len.set_ylabel("density")
    ax_len.set_title("lengths")
    ax_len.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coverage_comparison(path: os.PathLike | str, rows: list[dict]) -> None:
    """Grouped bars per budget: families covered, clusters covered, median length; mean over seeds with
    min-max whiskers."""
    panels = [
        ("families", "families_pool", "families covered (fraction of pool)"),
        ("clusters", "clusters_pool", "clusters covered (fraction of pool)"),
        ("median_length", "median_length_pool", "median length (line: pool)"),
    ]
    panels = [p for p in panels if any(r[p[0]] is not None for r in rows)]
    budgets = sorted({r["budget"] for r in rows})
    strategies = sorted({r["strategy"] for r in rows})
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.5), layout="constrained", squeeze=False
    )
    width = 0.8 / max(len(strategies), 1)
    for ax, (key, pool_key, label) in zip(axes[0], panels, strict=True):
        groups = defaultdict(list)
        pool_ref = {}
        for r in rows:
            if r[key] is None:
                continue
            value = r[key] if key == "median_length" else r[key] / r[pool_key]
            groups[(r["budget"], r["strategy"])].append(value)
            pool_ref[r["budget"]] = r[pool_key]
        for j, strategy in enumerate(strategies):
            xs, means, lo, hi = [], [], [], []
            for i, budget in enumerate(budgets):
                vals = groups.get((budget, strategy))
                if vals:
                    xs.append(i + (j - (len(strategies) - 1) / 2) * width)
                    mean = float(np.mean(vals))
                    means.append(mean)
                    # equal values over seeds (Top-I) can put the mean a rounding error outside them
                    lo.append(max(0.0, mean - min(vals)))
                    hi.append(max(0.0, max(vals) - mean))
            ax.bar(xs, means, width=width, yerr=[lo, hi], capsize=2, label=strategy)
        if key == "median_length":
            for i, budget in enumerate(budgets):
                if budget in pool_ref:
                    ax.hlines(pool_ref[budget], i - 0.45, i + 0.45, color="k", lw=1)
        ax.set_xticks(range(len(budgets)), budgets)
        ax.set_title(label)
    axes[0][0].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _score_vs_length(ax, values, column, lengths, selected_mask, max_points: int = 20000) -> None:
    """Score against length (log-log), pool in grey and selection in colour, with Spearman's rho: a
    selection that is a length filter shows as a band at one end of the length axis."""
    from bioprune.evaluate.metrics import spearman
    from bioprune.influence.length import subsample

    ax.set_title("score against length")
    if values is None or not len(values):
        ax.text(0.5, 0.5, "no score column", ha="center", va="center", transform=ax.transAxes)
        return
    step = subsample(len(values), max_points)
    x, y, sel = np.maximum(lengths[step], 1), values[step], selected_mask[step]
    positive = y > 0
    ax.scatter(x[~sel & positive], y[~sel & positive], s=3, color=POOL, alpha=0.4, lw=0, label="pool")
    ax.scatter(x[sel & positive], y[sel & positive], s=4, color=SELECTED, alpha=0.8, lw=0, label="selected")
    ax.set_xscale("log")
    if positive.any() and y[positive].max() / y[positive].min() > 100:
        ax.set_yscale("log")
    every = subsample(len(values))  # at most 1M rows, as summary.json's length_bias
    v, ln = values[every].astype(np.float64), lengths[every].astype(np.float64)
    rho = spearman(v, ln) if len(v) > 2 else float("nan")
    ax.text(0.02, 0.97, f"Spearman rho = {rho:.2f}", transform=ax.transAxes, va="top", fontsize=9)
    ax.set_xlabel("length (residues)")
    ax.set_ylabel(column)
    ax.legend(fontsize=8, loc="lower right", markerscale=3)
