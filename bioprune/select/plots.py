"""Figures: one diagnostics figure per selection, and a coverage comparison across selections."""

from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402

from bioprune.report.order import budget_key, strategy_rank  # noqa: E402
from bioprune.report.ticks import tidy_ticks  # noqa: E402
from bioprune.select.summary import countable, quantiles, value_counts  # noqa: E402

SELECTED = "tab:blue"
POOL = "0.6"
KEPT_CMAP = "Blues"
MAX_TOP_BINS = 200  # bins of the dropped top drawn at CCI's bin width


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
    rho: float | None = None,
    dpi: int = 110,
) -> plt.Figure:
    """Four panels: the score histogram (pool vs selected and the Top-I region; for cci its bins shaded
    by the share kept), the selected share (cci: the count kept) per score bin, the length distributions
    and score against length. ``rho``: Spearman(score, length) when the caller has it already (summary.json's
    length_bias), else computed here."""
    # fixed margins, not constrained layout: its extra pass over every tick label cost ~0.7 s a figure
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    fig.subplots_adjust(left=0.045, right=0.99, bottom=0.13, top=0.86, wspace=0.25)
    ax_hist, ax_bins, ax_len, ax_vs = axes
    if values is None or not len(values):
        for ax in (ax_hist, ax_bins):
            ax.text(0.5, 0.5, "no score column", ha="center", va="center", transform=ax.transAxes)
    elif cci is not None:
        _cci_panels(fig, ax_hist, ax_bins, values, column, cci)
    else:
        _score_panels(ax_hist, ax_bins, values, column, selected_mask, topi_threshold)
    _length_panel(ax_len, lengths, selected_mask)
    _score_vs_length(ax_vs, values, column, lengths, selected_mask, rho)
    for ax in axes:
        tidy_ticks(ax)
    fig.suptitle(title)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)  # the figure object stays readable: tests check its axes
    return fig


def _log_x(values: np.ndarray) -> bool:
    """Influence scores are heavy-tailed: a log axis when they span more than two decades, so the bulk
    is visible."""
    lo, hi = float(values.min()), float(values.max())
    return lo > 0 and hi / lo > 100


def _score_panels(ax_hist, ax_bins, values, column, selected_mask, topi_threshold) -> None:
    """Pool and selected score histograms with the Top-I region; the share of each score bin selected."""
    lo, hi = float(values.min()), float(values.max())
    log_x = _log_x(values)
    edges = np.geomspace(lo, hi, 101) if log_x else np.linspace(lo, hi if hi > lo else lo + 1, 101)
    pool_counts, sel_counts = _counts(values, edges, log_x), _counts(values[selected_mask], edges, log_x)
    # filled stairs: one polygon per histogram instead of a patch per bar (drawing time)
    ax_hist.stairs(pool_counts, edges, fill=True, color=POOL, label="pool")
    ax_hist.stairs(sel_counts, edges, fill=True, color=SELECTED, label="selected")
    if topi_threshold is not None:
        ax_hist.axvspan(topi_threshold, hi, color="tab:orange", alpha=0.15, label="Top-I region (same k)")
    ax_hist.set_yscale("log")
    ax_hist.set_ylabel("sequences")
    ax_hist.legend(fontsize=8)
    share = np.divide(sel_counts, pool_counts, out=np.zeros(len(sel_counts)), where=pool_counts > 0)
    ax_bins.stairs(share, edges, fill=True, color=SELECTED)
    ax_bins.set_ylabel("share of the bin selected")
    ax_bins.set_ylim(0, 1.05)
    for ax in (ax_hist, ax_bins):
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(column)
    ax_hist.set_title("score distribution")
    ax_bins.set_title("share selected per score bin")


def _counts(values: np.ndarray, edges: np.ndarray, log_x: bool, chunk: int = 1 << 20) -> np.ndarray:
    """Histogram counts over ``edges`` (equal steps in value, or in log value when ``log_x``). Given a
    bin count and range, numpy computes each bin directly (given the edges it sorts the values in
    blocks, ~1 s per histogram at 20M); a million values at a time, so the logs of 20M scores are never
    held (160 MB at the command's peak). Each value's bin depends on it alone: the same counts."""
    lo, hi = (np.log(edges[0]), np.log(edges[-1])) if log_x else (edges[0], edges[-1])
    counts = np.zeros(len(edges) - 1, np.int64)
    for start in range(0, len(values), chunk):
        part = values[start : start + chunk]
        x = np.log(part) if log_x else part  # log_x only when every value is > 0
        counts += np.histogram(x, bins=len(edges) - 1, range=(lo, hi))[0]
    return counts


def _cci_panels(fig, ax_hist, ax_bins, values, column, cci) -> None:
    """CCI's own bins as the histogram, each bar shaded by the share of it kept, and the dropped top as
    a hatched bar; then the count kept per bin against the bin's size (small bins are taken whole, the
    others get equal shares)."""
    edges = np.asarray(cci["edges"], dtype=np.float64)
    sizes = np.asarray(cci["bin_sizes"], dtype=np.float64)
    kept = np.asarray(cci["selected_per_bin"], dtype=np.float64)
    share = np.divide(kept, sizes, out=np.zeros(len(sizes)), where=sizes > 0)
    # the scale ends at the largest share, so a 1% coreset's bins (shares 0 to 0.1) are told apart too
    cmap, norm = plt.get_cmap(KEPT_CMAP), Normalize(0, max(float(share.max()), 1e-9))
    # bars start at 0.15 of the colour map so a bin with nothing kept still shows against the background
    colors = cmap(0.15 + 0.85 * norm(share))
    # one collection of rectangles, not a bar artist per bin: 10,000 bins draw in a second
    x0, x1 = edges[:-1], edges[1:]
    bottom = np.full(len(sizes), 0.5)  # below one sequence on the log count axis
    boxes = np.stack([np.c_[x0, bottom], np.c_[x0, sizes], np.c_[x1, sizes], np.c_[x1, bottom]], axis=1)
    ax_hist.add_collection(
        PolyCollection(
            boxes[sizes > 0],
            facecolors=colors[sizes > 0],
            edgecolors="0.4",
            linewidths=0.3 if len(sizes) <= 100 else 0,
        )
    )
    ax_hist.update_datalim([(edges[0], 0.5), (edges[-1], max(sizes.max(), 1))])
    ax_hist.autoscale_view()
    dropped = values[values >= cci["drop_threshold"]] if cci["drop_threshold"] is not None else values[:0]
    if len(dropped):  # the top CCI drops before binning: its own histogram, hatched, after the bins
        # bins as wide as CCI's, so bar heights compare; 20 bins when that would be hundreds
        lo, hi, width = float(dropped.min()), float(dropped.max()), float(edges[1] - edges[0])
        n_top = int(np.ceil((hi - lo) / width)) + 1 if width > 0 else 1
        if n_top <= MAX_TOP_BINS:
            top_edges = lo + width * np.arange(n_top + 1)
        else:
            top_edges = np.geomspace(lo, hi, 21) if _log_x(values) else np.linspace(lo, hi, 21)
        ax_hist.hist(
            dropped, bins=top_edges, histtype="stepfilled", facecolor="white", edgecolor="tab:red",
            hatch="///", lw=0.8, label=f"dropped: top {cci['beta']:g} ({cci['n_dropped_top']:,})",
        )  # fmt: skip
        ax_hist.legend(fontsize=8, loc="upper right")
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=ListedColormap(cmap(np.linspace(0.15, 1, 256)))),
        ax=ax_hist,
        label="share of the bin kept",
        pad=0.01,
    )
    ax_hist.set_title(f"score distribution in the {cci['bins']} CCI bins (equal width)")
    ax_bins.stairs(sizes, edges, fill=True, color=POOL, label="bin size")
    ax_bins.stairs(kept, edges, fill=True, color=SELECTED, label="kept")
    ax_bins.set_title("kept per CCI bin")
    ax_bins.legend(fontsize=8)
    for ax in (ax_hist, ax_bins):
        if _log_x(values):
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(column)  # (a longer label ran into the power of ten printed beside the axis)
        ax.set_ylabel("sequences")


def _length_panel(ax, lengths, selected_mask) -> None:
    pool, selected = _log_lengths(lengths, selected_mask)
    span = (float(pool[0].min()), float(pool[0].max()) + 1e-9) if len(pool[0]) else (0.0, 1.0)
    for (logs, weights), color, alpha, label in (
        (pool, POOL, 1.0, "pool"),
        (selected, SELECTED, 0.7, "selected"),
    ):
        if len(logs):
            density, edges = np.histogram(logs, bins=60, range=span, weights=weights, density=True)
            ax.stairs(density, edges, fill=True, color=color, alpha=alpha, label=label)
    for arr, color in ((lengths, "0.3"), (lengths[selected_mask], SELECTED)):
        if len(arr):
            ax.axvline(np.log10(max(float(quantiles(arr, 0.5)), 1)), color=color, ls="--", lw=1)
    ax.set_xlabel("log10 length (dashed: medians)")
    ax.set_ylabel("density")
    ax.set_title("lengths")
    ax.legend(fontsize=8)


def _log_lengths(lengths: np.ndarray, selected_mask: np.ndarray):
    """(log10 lengths, weights) of the pool and of the selection, for histograms. Lengths of a small
    range are counted: each distinct length's log once, weighted by its count (the same histogram as a
    log per sequence, without 160 MB of logs at 20M: 0.05 s instead of 0.5 s). Otherwise the logs, no
    weights."""
    if not countable(lengths):
        logs = np.log10(np.maximum(lengths, 1))
        return [(logs, None), (logs[selected_mask], None)]
    counts = value_counts(lengths)
    present = np.flatnonzero(counts)  # the logs' min and max are of lengths that occur
    logs = np.log10(np.maximum(present, 1))
    selected = np.bincount(lengths[selected_mask], minlength=len(counts))[present]
    return [(logs, counts[present]), (logs[selected > 0], selected[selected > 0])]


def coverage_comparison(path: os.PathLike | str, rows: list[dict], dpi: int = 110) -> plt.Figure:
    """Grouped bars per budget: families covered, clusters covered, median length; mean over seeds with
    min-max whiskers. One legend beside the panels, so it covers no bar."""
    panels = [
        ("families", "families_pool", "families covered", "fraction of the pool's families"),
        ("clusters", "clusters_pool", "clusters covered", "fraction of the pool's clusters"),
        ("median_length", "median_length_pool", "median length (black line: pool)", "residues"),
    ]
    panels = [p for p in panels if any(r[p[0]] is not None for r in rows)]
    budgets = sorted({r["budget"] for r in rows}, key=budget_key)
    strategies = sorted({r["strategy"] for r in rows}, key=strategy_rank)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels) + 1.6, 4), layout="constrained", squeeze=False
    )
    width = 0.8 / max(len(strategies), 1)
    for ax, (key, pool_key, title, ylabel) in zip(axes[0], panels, strict=True):
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
            ax.bar(xs, means, width=width, yerr=[lo, hi], capsize=2, label=strategy, color=f"C{j % 10}")
        if key == "median_length":
            for i, budget in enumerate(budgets):
                if budget in pool_ref:
                    ax.hlines(pool_ref[budget], i - 0.45, i + 0.45, color="k", lw=1)
        else:
            ax.set_ylim(0, 1.05)
        ax.set_xticks(range(len(budgets)), budgets)
        ax.set_xlabel("budget")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, title="strategy")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)  # the figure object stays readable: tests check its axes
    return fig


def _score_vs_length(ax, values, column, lengths, selected_mask, rho, max_points: int = 20000) -> None:
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
    if rho is None:
        every = subsample(len(values))  # at most 1M rows, as summary.json's length_bias
        v, ln = values[every].astype(np.float64), lengths[every].astype(np.float64)
        rho = spearman(v, ln) if len(v) > 2 else float("nan")
    ax.text(0.02, 0.97, f"Spearman rho = {rho:.2f}", transform=ax.transAxes, va="top", fontsize=9)
    ax.set_xlabel("length (residues)")
    ax.set_ylabel(column)
    ax.legend(fontsize=8, loc="lower right", markerscale=3)
