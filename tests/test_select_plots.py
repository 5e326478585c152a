"""The selection figures read right: labelled axes, tick labels that do not run together, CCI drawn as a
histogram of its own bins shaded by the share kept, and a coverage legend that covers no bar."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from bioprune.select import plots
from bioprune.select import strategies as st


def _scores(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    # six-digit scores on a linear axis (under two decades): their tick labels ran together
    return rng.lognormal(11.5, 0.3, n), rng.integers(40, 400, n)


def _assert_ticks_apart(fig) -> None:
    """No two tick labels of an axis overlap (their drawn extents, from the saved figure's layout)."""
    renderer = FigureCanvasAgg(fig).get_renderer()  # the closed figure's canvas no longer draws
    for ax in fig.axes:
        for axis, lo, hi in ((ax.xaxis, "x0", "x1"), (ax.yaxis, "y0", "y1")):
            boxes = [t.get_window_extent(renderer) for t in axis.get_ticklabels(which="both") if t.get_text()]
            boxes = [b for b in boxes if b.width > 0]
            boxes.sort(key=lambda b: getattr(b, lo))
            for a, b in zip(boxes, boxes[1:], strict=False):
                assert getattr(a, hi) <= getattr(b, lo), f"{ax.get_title()}: tick labels overlap"
            # the power of ten printed beside the axis ("x10^5") must not run into the axis label
            offset, label = axis.get_offset_text(), axis.get_label()
            if offset.get_text() and label.get_text():
                a, b = offset.get_window_extent(renderer), label.get_window_extent(renderer)
                assert not a.overlaps(b), f"{ax.get_title()}: the axis label runs into {offset.get_text()!r}"


def test_cci_diagnostics_is_a_histogram_of_its_bins_shaded_by_the_share_kept(tmp_path):
    values, lengths = _scores()
    sel = st.select_cci(values, 300, 0.1, 50, np.random.default_rng(0))
    mask = np.zeros(len(values), bool)
    mask[sel.rows] = True
    fig = plots.diagnostics(
        tmp_path / "d.png", title="cci", values=values, column="self_influence", selected_mask=mask,
        topi_threshold=None, cci=sel.details, lengths=lengths,
    )  # fmt: skip
    ax_hist, ax_bins, ax_len, ax_vs, colorbar = fig.axes
    (bars,) = ax_hist.collections  # one rectangle per non-empty CCI bin, no bin-edge lines
    sizes = np.asarray(sel.details["bin_sizes"])
    assert len(bars.get_paths()) == (sizes > 0).sum()
    # bins kept whole are the darkest, the most thinned ones the lightest
    share = np.asarray(sel.details["selected_per_bin"])[sizes > 0] / sizes[sizes > 0]
    darkness = 1 - bars.get_facecolors()[:, :3].mean(axis=1)
    assert darkness[np.argmax(share)] > darkness[np.argmin(share)]
    assert colorbar.get_ylim()[1] == max(share)  # the scale ends at the largest share
    assert colorbar.get_ylabel() == "share of the bin kept"
    assert any("dropped: top 0.1" in t.get_text() for t in ax_hist.get_legend().get_texts())
    for ax in (ax_hist, ax_bins, ax_len, ax_vs):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    _assert_ticks_apart(fig)  # six-digit scores printed as one string: "100000120000140000"


def test_score_diagnostics_labels_and_short_tick_labels(tmp_path):
    values, lengths = _scores()
    mask = values >= np.sort(values)[-300]
    fig = plots.diagnostics(
        tmp_path / "d.png", title="topi", values=values, column="self_influence", selected_mask=mask,
        topi_threshold=float(values[mask].min()), cci=None, lengths=lengths,
    )  # fmt: skip
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
    _assert_ticks_apart(fig)


def test_coverage_figure_has_axis_labels_and_a_legend_beside_the_panels(tmp_path):
    rows = [
        {"strategy": s, "budget": b, "seed": 0, "families": 3, "families_pool": 4, "clusters": 30,
         "clusters_pool": 90, "median_length": 90.0, "median_length_pool": 96.0}
        for b in ("rate0.9", "rate0.99") for s in ("topi", "cci", "random1x")
    ]  # fmt: skip
    fig = plots.coverage_comparison(tmp_path / "c.png", rows)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xlabel() == "budget" and ax.get_ylabel()
        assert ax.get_legend() is None  # inside a panel it covered a bar
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["topi", "cci", "random1x"]
    assert fig.axes[0].get_ylabel() == "fraction of the pool's families"


def test_histograms_without_edges_or_per_sequence_logs_count_the_same():
    """summary.histogram (numpy's bins+range path), plots._counts (a million values at a time) and the
    length panel's counted lengths give the counts that np.histogram over the edges / per-sequence logs
    gives, values on the edges included."""
    from bioprune.select.summary import histogram

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(0, 2, 100_000), np.linspace(0.5, 40, 51)])  # some on edges
    mask = rng.random(len(values)) < 0.1
    got = histogram(values, mask)
    edges = np.linspace(values.min(), values.max(), 51)
    assert got["edges"] == edges.tolist()
    assert got["pool"] == np.histogram(values, bins=edges)[0].tolist()
    assert got["selected"] == np.histogram(values[mask], bins=edges)[0].tolist()
    flat = histogram(np.full(10, 3.0), np.ones(10, bool))  # one value: numpy widens the range itself
    assert sum(flat["pool"]) == sum(flat["selected"]) == 10

    log_edges = np.geomspace(values.min(), values.max(), 101)
    expected = np.histogram(np.log(values), bins=100, range=(np.log(log_edges[0]), np.log(log_edges[-1])))[0]
    assert np.array_equal(plots._counts(values, log_edges, True, chunk=7_777), expected)

    lengths = rng.integers(0, 3_000, 50_000).astype(np.int32)
    (pool_logs, pool_w), (sel_logs, sel_w) = plots._log_lengths(lengths, mask[: len(lengths)])
    logs = np.log10(np.maximum(lengths, 1))
    span = (logs.min(), logs.max() + 1e-9)
    for (x, w), ref in (((pool_logs, pool_w), logs), ((sel_logs, sel_w), logs[mask[: len(lengths)]])):
        weighted = np.histogram(x, bins=60, range=span, weights=w, density=True)[0]
        assert np.allclose(weighted, np.histogram(ref, bins=60, range=span, density=True)[0], rtol=1e-12)
