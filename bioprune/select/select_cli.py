"""``bioprune select``: pick a coreset from a merged score table; ``bioprune select-report``: compare
the coverage of several selections.

Outputs of ``select`` (in ``--out``): ``ids.txt`` (one id per line, in pool order, the order of
``coreset.fasta.gz``), ``coreset.fasta.gz`` (streamed from the pool FASTA), ``summary.json`` and
``diagnostics.png``. Deterministic strategies (topi, loss) ignore the seed (``seed_used: false``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioprune import __version__
from bioprune.atomic import staged_dir
from bioprune.cli import seed
from bioprune.errors import ConfigError, InputError
from bioprune.influence.length import length_diagnostics
from bioprune.influence.score_stats import stored_pool_stats
from bioprune.pool import io as pool
from bioprune.select import strategies as st
from bioprune.select.budget import Budget, parse_budget
from bioprune.select.inputs import (
    SCORE_COLUMNS,
    Candidates,
    candidate_rows,
    kept_ids,
    load_candidates,
    parse_family_regex,
)
from bioprune.select.summary import (
    COMPARISON_COLUMNS,
    comparison_rows,
    coverage,
    distribution,
    histogram,
    length_shares,
)

log = logging.getLogger("bioprune.select")

DEFAULT_FAMILY_REGEX = r"^(\S+)"
REPORT_STRATA = 10  # summary.json compares every selection's lengths with the pool's over its deciles


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scores", type=Path, required=True, help="merged score table (Parquet: id, scores)")
    parser.add_argument("--pool", type=Path, required=True, help="pool folder the scores were computed on")
    parser.add_argument(
        "--strategy",
        required=True,
        help="topi | cci | random | random<M>x (e.g. random10x) | cluster (cluster-balanced random) | loss | "
        "topi_strata (Top-I inside length strata, pool proportions) | topi_resid (Top-I on log score minus "
        "its log-length trend) | lenmatch-<strategy> (random with that selection's lengths; --match-ids)",
    )
    parser.add_argument("--multiplier", type=int, help="random only: keep M times the budget (default 1)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--rate", type=float, help="pruning rate: fraction of the scored pool removed")
    budget.add_argument("--count", type=int, help="number of sequences kept")
    budget.add_argument("--budget", help="workflow token: rate0.9 or n5000")
    parser.add_argument("--seed", type=seed, default=0, help="sampling seed (cci, random, cluster)")
    parser.add_argument("--beta", type=float, default=0.1, help="cci: fraction of top scores dropped")
    parser.add_argument("--bins", type=int, default=50, help="cci: equal-width score bins")
    parser.add_argument(
        "--strata", type=int, default=10, help="topi_strata, lenmatch: length strata (pool quantiles)"
    )
    parser.add_argument(
        "--match-ids", type=Path, help="lenmatch: ids.txt of the selection whose length histogram to match"
    )
    parser.add_argument(
        "--family-regex",
        default=DEFAULT_FAMILY_REGEX,
        help="family of a sequence: first group of this regex in its description ('none': no families)",
    )
    parser.add_argument(
        "--families",
        type=Path,
        help="families table of this pool (bioprune families, computed once per run with the same "
        "--family-regex): read instead of taking each sequence's family from its description",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")


def _budget(args) -> Budget:
    if args.rate is not None:
        return Budget(rate=args.rate)
    if args.count is not None:
        return Budget(count=args.count)
    return parse_budget(args.budget)


def _score_columns(scores_path: Path, needed: str | None) -> tuple[list[str], str | None]:
    """Columns to read: the strategy's own (required) and every other score column present, so the
    summary compares pool and selection on all of them (e.g. the loss of a Top-I coreset); and the
    column the figure shows (the strategy's, else self_influence, else loss)."""
    try:
        names = pq.read_schema(scores_path).names if scores_path.exists() else []
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(scores_path, f"not a readable Parquet table ({exc})") from exc
    present = [c for c in SCORE_COLUMNS if c in names]
    plot = needed or next(iter(present), None)
    return [c for c in dict.fromkeys([needed, *present]) if c], plot


@dataclass
class Figure:
    """What the diagnostics figure shows (all known once the selection is made)."""

    title: str
    values: np.ndarray | None  # the plotted score column over the candidates
    column: str | None
    mask: np.ndarray
    topi_threshold: float | None
    cci: dict | None
    lengths: np.ndarray
    rho: float | None  # summary.json's Spearman(score, length), when the figure shows self-influence


@dataclass
class Outcome:
    """A selection and everything reported about it, before any file is written."""

    cand: Candidates
    selection: st.Selection
    mask: np.ndarray  # over candidates
    summary: dict
    figure: Figure


def compute(
    args: argparse.Namespace,
    assume_pool_order: bool = True,
    on_figure: Callable[[Figure], object] | None = None,
) -> Outcome:
    """Load, select and summarise (``run`` minus the files; the benchmark times this at 20M). A score
    table that looks in pool order is taken to be: ``run`` compares every id before it writes anything
    (:func:`bioprune.select.inputs.kept_ids`), and computes again, joining by id, if it is not.
    ``on_figure`` is handed what the figure shows as soon as it is known, before the summary."""
    strategy, multiplier = st.parse_strategy(args.strategy, args.multiplier)
    label = args.strategy if strategy == "lenmatch" else st.strategy_label(strategy, multiplier)
    budget = _budget(args)
    if strategy in ("topi_strata", "lenmatch") and args.strata < 1:
        raise ConfigError(f"--strata {args.strata} must be at least 1")
    if strategy == "lenmatch" and args.match_ids is None:
        raise ConfigError(f"strategy {label!r} needs --match-ids (the ids.txt of the selection to match)")
    family_regex = parse_family_regex(args.family_regex)
    families = None
    if args.families is not None:
        from bioprune.select.families import read_families

        families = read_families(args.families)
        if families.regex != family_regex:
            raise ConfigError(
                f"--families {args.families} was computed with family regex {families.regex!r}, "
                f"not --family-regex {family_regex!r}"
            )
    if strategy == "cci":
        if not 0 <= args.beta < 1:
            raise ConfigError(
                f"--beta {args.beta} is outside [0, 1): it is the fraction of top scores dropped"
            )
        if not 1 <= args.bins <= st.MAX_CCI_BINS:
            raise ConfigError(f"--bins {args.bins} must be between 1 and {st.MAX_CCI_BINS:,}")

    t0 = time.perf_counter()
    needed = st.STRATEGIES[strategy]
    columns, plot_column = _score_columns(args.scores, needed)
    cand = load_candidates(
        args.scores,
        args.pool,
        columns,
        family_regex=family_regex,
        need_clusters=strategy == "cluster",
        families=families,
        assume_pool_order=assume_pool_order,
    )
    n = len(cand)
    if n < cand.n_pool:
        log.warning(
            "%d of %d pool sequences have no score and cannot be selected", cand.n_pool - n, cand.n_pool
        )
    k = budget.k(n, multiplier)
    t1 = time.perf_counter()

    rng = np.random.default_rng(args.seed)
    if strategy in ("topi", "loss"):
        sel = st.select_topk(cand.scores[needed], k, needed)
    elif strategy == "cci":
        sel = st.select_cci(cand.scores[needed], k, args.beta, args.bins, rng)
    elif strategy == "random":
        sel = st.select_random(n, k, rng)
    elif strategy == "topi_strata":
        sel = st.select_topi_strata(cand.scores[needed], cand.lengths, k, args.strata)
    elif strategy == "topi_resid":
        sel = st.select_topi_resid(cand.scores[needed], cand.lengths, k)
    elif strategy == "lenmatch":
        reference = _match_rows(args.match_ids, args.pool, cand, k)
        sel = st.select_length_matched(cand.lengths, reference, args.strata, rng)
    else:
        sel = st.select_cluster_balanced(cand.clusters, k, rng)
    if len(sel.rows) != k:  # a bug, not a user error
        raise RuntimeError(f"{label} selected {len(sel.rows)} sequences instead of {k}")
    t2 = time.perf_counter()
    log.info(
        "%s: selected %d of %d sequences (%s) in %.2f s", label, k, n, budget.describe(multiplier), t2 - t1
    )

    mask = np.zeros(n, dtype=bool)
    mask[sel.rows] = True
    values = cand.scores.get(plot_column) if plot_column else None
    topi_threshold = None
    if plot_column == "self_influence":  # the figure draws the Top-I region on its score axis only
        si = cand.scores["self_influence"]
        if strategy == "topi" and k:  # its selection is the k largest: no partition of all the scores
            topi_threshold = float(si[sel.rows].min())
        else:
            topi_threshold = float(np.partition(si, n - k)[n - k])
    pool_scores, length_bias = _pool_statistics(cand, str(args.scores))
    title = f"{label}, {budget.describe(multiplier)}: {k:,} of {n:,} (seed {args.seed})"
    figure = Figure(
        title,
        values,
        plot_column,
        mask,
        topi_threshold,
        sel.details if strategy == "cci" else None,
        cand.lengths,
        # the figure's rho(score, length) is summary.json's when both are of self_influence
        (length_bias or {}).get("spearman_length") if plot_column == "self_influence" else None,
    )
    if on_figure is not None:
        on_figure(figure)
    families = cand.families
    strata, strata_edges = st.length_strata(cand.lengths, REPORT_STRATA)
    summary = {
        "strategy": label,
        "method": strategy,
        "multiplier": multiplier,
        "seed": args.seed,
        "seed_used": strategy not in st.DETERMINISTIC,
        "settings": {
            **({"beta": args.beta, "bins": args.bins} if strategy == "cci" else {}),
            **({"strata": args.strata} if strategy in ("topi_strata", "lenmatch") else {}),
            **({"match_ids": str(args.match_ids)} if strategy == "lenmatch" else {}),
            "family_regex": family_regex,
        },
        "budget": {**budget.as_dict(), "multiplier": multiplier, "k": k},
        "inputs": {
            "scores": str(args.scores),
            "pool": str(args.pool),
            "families": str(args.families) if args.families else None,
        },
        "n_pool": cand.n_pool,
        "n_scored": n,
        "n_unscored": cand.n_pool - n,
        "n_selected": int(k),
        "fraction_kept": k / n,
        "selection": sel.details,
        "scores": {
            col: {"pool": pool_scores[col], "selected": distribution(v[mask])}
            for col, v in cand.scores.items()
        },
        "score_histogram": (
            {"column": plot_column, **histogram(values, mask)} if values is not None else None
        ),
        "coverage": {
            "families": (
                coverage(families, families[mask], cand.family_names) if families is not None else None
            ),
            "clusters": coverage(cand.clusters, cand.clusters[mask]) if cand.clusters is not None else None,
        },
        "length": {
            "pool": distribution(cand.lengths),
            "selected": distribution(cand.lengths[mask]),
            "strata": length_shares(strata, strata_edges, mask),
        },
        "length_bias": length_bias,
        "seconds": {"load": round(t1 - t0, 3), "select": round(t2 - t1, 3)},
        "bioprune_version": __version__,
    }
    return Outcome(cand, sel, mask, summary, figure)


def _pool_statistics(cand: Candidates, what: str) -> tuple[dict[str, dict], dict | None]:
    """The distribution of every score column over the candidates and the length diagnostics of
    self-influence (None without it): they depend on the score table only, so merge-scores stores them
    in the table; read there when they are of exactly these candidates, else computed."""
    stored = stored_pool_stats(cand.score_stats, cand.scores, cand.lengths, what=what)
    if stored is not None:
        return stored
    pool_scores = {col: distribution(v) for col, v in cand.scores.items()}
    if "self_influence" not in cand.scores:
        return pool_scores, None
    return pool_scores, length_diagnostics(
        cand.scores["self_influence"], cand.lengths, cand.scores.get("loss"), what=what
    )


def _match_rows(path: Path, pool_dir: Path, cand: Candidates, k: int) -> np.ndarray:
    """Candidate rows of the ids in a selection's ids.txt; it must hold exactly the budget's k."""
    try:
        ids = [line for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        raise InputError(path, "no such ids file (the selection to match has not run)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read ids ({exc})") from None
    rows = candidate_rows(pool_dir, cand, ids)
    if (rows < 0).any():
        missing = ids[int(np.argmax(rows < 0))]
        raise InputError(path, f"id {missing!r} is not in the score table")
    if len(ids) != k:
        raise InputError(
            path, f"holds {len(ids)} ids but this budget keeps {k}: match a selection of the same budget"
        )
    return rows


def run(args: argparse.Namespace) -> int:
    # A forked child draws the figure from the moment the selection is made: beside the summary, the id
    # pass and the coreset copy.
    figure = _FigureChild()
    try:
        out = compute(args, on_figure=figure.start)
        t0 = time.perf_counter()
        in_pool, ids = _kept(out, args)
        if ids is None:
            log.info(
                "%s is not in the order of the pool after all: joining its ids to the pool's", args.scores
            )
            figure.cancel()
            out = compute(args, assume_pool_order=False, on_figure=figure.start)
            t0 = time.perf_counter()
            in_pool, ids = _kept(out, args)
        out.summary["seconds"]["ids"] = round(time.perf_counter() - t0, 3)
        with staged_dir(args.out) as stage:
            _write_ids(stage / "ids.txt", ids)
            # the pool's own records, each copied one checked against the pool table (so against the ids)
            t0 = time.perf_counter()
            pool.copy_rows(args.pool, in_pool, ids, stage / "coreset.fasta.gz")
            out.summary["seconds"]["write"] = round(time.perf_counter() - t0, 3)
            figure.finish(out.figure, stage / "diagnostics.png")
            out.summary["seconds"]["write_and_figure"] = round(time.perf_counter() - t0, 3)
            (stage / "summary.json").write_text(json.dumps(out.summary, indent=2) + "\n")
    finally:
        figure.cancel()  # (after an error: the child stopped, its file removed)
    log.info("wrote %s", args.out)
    return 0


def _figure(path: Path, fig: Figure) -> None:
    from bioprune.select import plots  # matplotlib only when writing the figure

    plots.diagnostics(
        path,
        title=fig.title,
        values=fig.values,
        column=fig.column,
        selected_mask=fig.mask,
        topi_threshold=fig.topi_threshold,
        cci=fig.cci,
        lengths=fig.lengths,
        rho=fig.rho,
    )


FIGURE_TIMEOUT = 600  # seconds a figure may take in its child process before it is drawn here instead


def _fork():
    """multiprocessing's fork context on Linux, else None (fork is unsafe on macOS, absent on Windows)."""
    if sys.platform != "linux":
        return None
    import multiprocessing

    return multiprocessing.get_context("fork")


class _FigureChild:
    """The figure, drawn by a forked child process while select goes on (summary, id pass, coreset
    copy: mostly Python, so threads would take turns on the GIL; two processes overlap). The child
    shares the arrays copy-on-write and only reads them; it runs numpy and matplotlib, never Arrow, and
    ends with os._exit. It draws into a temporary file, moved into the output folder by :meth:`finish`.
    Without fork, or if the child fails or hangs, :meth:`finish` draws the figure here."""

    def __init__(self) -> None:
        self.child = None
        self.path: Path | None = None

    def start(self, fig: Figure) -> None:
        ctx = _fork()
        if ctx is None:
            return
        # (in a folder of its own, so that the file gets the mode any output gets)
        self.path = Path(tempfile.mkdtemp(prefix="bioprune-figure-")) / "diagnostics.png"
        self.child = ctx.Process(target=_figure, args=(self.path, fig), name="bioprune-figure", daemon=True)
        sys.stdout.flush(), sys.stderr.flush()  # else the child would write what they hold a second time
        with warnings.catch_warnings():  # Python >= 3.12 warns of fork beside threads: see the docstring
            warnings.simplefilter("ignore", DeprecationWarning)
            self.child.start()

    def cancel(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child.join()
            self.child = None
        if self.path is not None:
            shutil.rmtree(self.path.parent, ignore_errors=True)
            self.path = None

    def finish(self, fig: Figure, dest: Path) -> None:
        """The figure at ``dest``: the child's, or drawn here."""
        child, self.child = self.child, None
        if child is not None:
            child.join(FIGURE_TIMEOUT)
            if child.exitcode == 0:
                shutil.move(self.path, dest)
                return
            if child.exitcode is None:
                child.kill()
                child.join()
            log.warning("the figure's child process failed (exit code %s): drawing it here", child.exitcode)
        _figure(dest, fig)


def _kept(out: Outcome, args: argparse.Namespace) -> tuple[np.ndarray, list[str] | None]:
    """The selection's pool rows, in pool order (the order of the pool FASTA, so ids.txt and
    coreset.fasta.gz agree line by line), and their ids from the pool table: every score id compared
    with the pool's on the way when the order was assumed (None: it was wrong)."""
    in_pool = np.sort(out.cand.in_pool(out.selection.rows))
    return in_pool, kept_ids(args.scores, args.pool, out.cand, in_pool)


def _write_ids(path: Path, ids: list[str], chunk: int = 1 << 20) -> None:
    with open(path, "w") as fh:
        for start in range(0, len(ids), chunk):
            fh.write("\n".join(ids[start : start + chunk]) + "\n")


# --- select-report -------------------------------------------------------------------------------


def add_select_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("selections", nargs="+", type=Path, help="selection folders (with summary.json)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")


def run_select_report(args: argparse.Namespace) -> int:
    summaries = []
    for folder in args.selections:
        path = folder / "summary.json"
        if not path.exists():
            raise InputError(path, "no such file: not a finished selection folder")
        try:
            summaries.append(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON ({exc})") from exc
    rows = comparison_rows(summaries)
    with staged_dir(args.out) as stage:
        with open(stage / "coverage.tsv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, COMPARISON_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        (stage / "coverage.md").write_text(_markdown(rows))
        from bioprune.select import plots

        plots.coverage_comparison(stage / "coverage.png", rows)
    log.info("compared %d selections into %s", len(rows), args.out)
    return 0


def _markdown(rows: list[dict]) -> str:
    def fmt(v):
        if v is None:
            return "-"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(COMPARISON_COLUMNS) + " |", "|" + "---|" * len(COMPARISON_COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COMPARISON_COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"
