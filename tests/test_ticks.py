"""Tick labels of log axes: neighbouring panels label counts alike (plain numbers, not 10^k)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from bioprune.report.ticks import tidy_ticks  # noqa: E402


def _labels(lo: float, hi: float) -> list[str]:
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    tidy_ticks(ax, x=False)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
    plt.close(fig)
    return labels


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        # a count axis a little over two decades (the CCI panel beside a 1-2-5 one): was 10^0, 10^1
        (0.45, 120, ["1", "3", "10", "30", "100"]),
        (0.8, 60, ["1", "2", "5", "10", "20", "50"]),
        (0.9, 5000, ["1", "10", "100", "1,000"]),
    ],
)
def test_log_axes_within_plain_range_print_plain_numbers(lo, hi, expected):
    assert _labels(lo, hi) == expected


def test_log_axes_beyond_plain_range_keep_powers_of_ten():
    labels = _labels(1e-7, 1e-2)
    assert labels and all("10^" in t for t in labels)


def test_minor_ticks_only_up_to_four_decades():
    def minor_ticks(lo, hi):
        fig, ax = plt.subplots()
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        tidy_ticks(ax, y=False)
        ticks = [t for t in ax.xaxis.get_minorticklocs() if lo <= t <= hi]
        plt.close(fig)
        return ticks

    assert len(minor_ticks(1, 1e4)) >= 20  # 2-9 in each decade
    assert minor_ticks(1e-4, 1e4) == []  # eight decades: a mark every few pixels
