"""``bioprune report``: the comparison report of a finished run.

Example::

    bioprune report --out results/report --tasks trna_ss trna_isotype \\
        --metrics results/evaluate/*/*/seed*/*/metrics.json \\
        --pretrain results/pretrain/*/*/seed*/pretrain_report.json --scores results/influence/scores.parquet

Outputs (``--out``): ``verdict.tsv`` and ``verdict.md`` (each strategy against random 1x and 10x, paired by
seed, with 95% intervals and Holm-corrected flags: :mod:`bioprune.report.verdict`), ``metrics_long.tsv``
(one row per model, task and metric), ``metrics.tsv`` and
``metrics.md`` (per task, metric, budget and strategy: every seed, mean, std, n), ``compute.tsv`` and
``compute.md`` (per model: sequences, steps, tokens seen, wall time), ``figures/<task>.png`` (metrics
against the budget), ``influence_histogram.png`` (with ``--scores``) and ``report.md`` (all of it on
one page, verdict table and warnings first). ``--floors`` adds floor results (a task scored without a
pretrained model) beside the models: a table of them, and a warning for every model that does not beat one.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bioprune.alphabet import BACKEND_ALPHABET, STANDARD_RESIDUES
from bioprune.atomic import staged_dir
from bioprune.errors import ConfigError
from bioprune.influence.length import length_diagnostics
from bioprune.influence.score_table import read_scores
from bioprune.report import figures, numbers
from bioprune.report.collect import (
    read_compute,
    read_floors,
    read_json,
    read_metrics,
    sort_rows,
)
from bioprune.report.order import budget_key
from bioprune.report.tables import headline_table, metrics_markdown, seed_summary, to_markdown
from bioprune.report.verdict import verdict_table, warnings

log = logging.getLogger("bioprune.report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files of bioprune evaluate")
    p.add_argument(
        "--pretrain", nargs="*", default=[], help="pretrain_report.json files of bioprune pretrain"
    )
    p.add_argument(
        "--floors",
        nargs="*",
        default=[],
        help="floor results (JSON: task, kind, head, metrics) to compare with",
    )
    p.add_argument("--holdout", help="holdout_report.json of the holdout step (held-out families)")
    p.add_argument("--tasks", nargs="*", help="tasks to draw, in this order (default: every task found)")
    p.add_argument("--scores", help="merged influence score table (Parquet) for the histogram")
    p.add_argument("--score-column", default="self_influence", help="score column of the histogram")
    p.add_argument("--dpi", type=int, default=150, help="figure resolution")


def topi_thresholds(values: np.ndarray, compute: pd.DataFrame) -> dict[str, float]:
    """Lowest score Top-I keeps at each budget: the k-th largest score, k = the 1x selection size."""
    out = {}
    v = np.sort(values[np.isfinite(values)])
    if compute.empty or not len(v):
        return out
    for budget, k in compute.dropna(subset=["kept_1x"]).groupby("budget")["kept_1x"].median().items():
        k = int(round(k))
        if 1 <= k <= len(v):
            out[str(budget)] = float(v[len(v) - k])
    return out


# what a perplexity test set measures, by the task's source (metrics.json test_source)
TEST_SETS = {
    "unselected_pool": "test set: pool sequences no selection kept, from families the pretraining saw "
    "(measures family coverage, where random sampling is strong)",
    "heldout_families": "test set: whole families set aside before scoring and selection, never seen in "
    "pretraining (measures generalisation to new families)",
}


def uniform_guess(docs: list[dict]) -> dict[str, tuple[str, int]]:
    """Perplexity task -> (standard residues, perplexity of a uniform guess over them): the value a
    model that learnt nothing scores, read from the alphabet of the models that were evaluated.
    ``docs``: the metrics files' contents."""
    out = {}
    for d in docs:
        if d.get("kind") != "mlm_perplexity" or d["task"] in out:
            continue
        backend = ((d.get("model") or {}).get("spec") or {}).get("backend")
        residues = STANDARD_RESIDUES.get(BACKEND_ALPHABET.get(backend))
        if residues:
            out[d["task"]] = (residues, len(residues))
    return out


def _task_notes(docs: list[dict], order: list[str], uniform: dict[str, tuple[str, int]]) -> list[str]:
    """One line per task: kind, headline metric and the records used / dropped per split. When they differ
    between budgets (the unselected-pool set is one per budget), one entry per budget."""
    tasks: dict[str, dict] = {}
    for d in docs:
        parts = []
        for split, c in (d.get("counts") or {}).items():
            extra = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("read", "used"))
            parts.append(f"{split} {c.get('used', c.get('read', 0))} used" + (f" ({extra})" if extra else ""))
        text = "; ".join(parts) + (f" — note: {d['note']}" if d.get("note") else "")
        t = tasks.setdefault(d["task"], {"kind": d["kind"], "headline": d["headline"], "texts": {}})
        t.setdefault("measures", TEST_SETS.get(d.get("test_source")))
        t["texts"].setdefault(text, []).append(str(d.get("budget")))
    lines = []
    for name, t in sorted(tasks.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
        measures = f"; {t['measures']}" if t["measures"] else ""
        if name in uniform:
            residues, n = uniform[name]
            measures += f"; a uniform guess over {residues} has perplexity {n}"
        head = f"- **{name}** ({t['kind']}, headline {t['headline']}{measures}): "
        if len(t["texts"]) == 1:
            lines.append(head + next(iter(t["texts"])))
            continue
        lines.append(head.rstrip())
        for text, budgets in t["texts"].items():
            lines.append(f"  - {', '.join(sorted(set(budgets), key=budget_key))}: {text}")
    return lines


def read_score_column(path, column: str) -> np.ndarray:
    """The numeric ``column`` of a score table as float64, checked by the score table's one reader
    (:func:`bioprune.influence.score_table.read_scores`): a one-line InputError naming what is wrong."""
    return read_scores(path, [column], ids=False).columns[column]


def _verdict_section(verdict: pd.DataFrame, alerts: list[str], floors: pd.DataFrame) -> list[str]:
    lines = ["## Verdict: does a strategy beat random selection of the same size?", ""]
    if verdict.empty:
        lines += ["No random 1x models in this run: nothing to compare with.", ""]
    else:
        lines += [
            "Each row compares one strategy with random 1x (a random subset of the same size) and random",
            "10x (ten times as many sequences) at the same budget, on the task's headline metric. The",
            "difference is strategy minus random, averaged over the pretraining seeds (each seed's strategy",
            "model against the same seed's random model), with its 95% Student t interval.",
            "*Beats random 1x*: the difference is on the better side and significant after Holm's",
            "correction over the tasks of that strategy and budget (p_Holm < 0.05). *Reaches random 10x*:",
            "at least as good as random 10x on average (*no: worse* when significantly worse). One seed",
            "gives no interval and no test (n < 2).",
            "",
            to_markdown(verdict),
        ]
    if alerts:
        lines += ["**Warnings**", "", *[f"- ⚠ {a}" for a in alerts], ""]
    if not floors.empty:
        shown = floors.drop(columns=["lower_is_better"])
        lines += ["Floors (scores reached without a pretrained model):", "", to_markdown(shown)]
    return lines


def _holdout_note(path: str | None) -> list[str]:
    """One line on the families the holdout step set aside (the heldout_families test set)."""
    if not path:
        return []
    d = read_json(path)
    plural = {"family": "families", "cluster": "clusters", "sequence": "sequences without family or cluster"}
    kinds = ", ".join(
        f"{k['groups_held_out']} of {k['groups']} {plural.get(kind, kind)}"
        for kind, k in d.get("by_kind", {}).items()
    )
    return [
        f"Held-out families: {d['groups_held_out']} of {d['groups']} groups ({kinds}; fraction "
        f"{d['fraction']}, seed {d['seed']}), {d['held_out']:,} of {d['input_records']:,} sequences, set "
        "aside before scoring and selection: no model saw them.",
        "",
    ]


def _length_note(path, column: str, values: np.ndarray) -> tuple[str | None, str | None]:
    """How much of the score is sequence length (docs/influence.md, "Influence scores and length"): a line for
    the report, and a warning when |rho(score, length)| is above the threshold."""
    names = pq.read_schema(path).names
    if "length" not in names:
        return None, None
    lengths = read_score_column(path, "length")
    losses = read_score_column(path, "loss") if "loss" in names else None
    d = length_diagnostics(values, lengths, losses, what=str(path))
    if "spearman_length" not in d:
        return None, None
    line = (
        f"Score and length: Spearman's rho(score, length) = {d['spearman_length']:+.2f}, "
        f"rho(score, per-token loss) = {numbers.value(d['spearman_loss'])}; log {column} ~ "
        f"{d['loglog_slope']:+.2f} log length (R^2 {d['loglog_r2']:.2f})."
    )
    warning = None
    if d["length_dominated"]:
        warning = (
            f"influence scores: |rho(score, length)| = {abs(d['spearman_length']):.2f} > "
            f"{d['warn_threshold']}: the score is mostly a length signal and Top-I largely a length filter; "
            "compare Top-I with lenmatch-topi, or use topi_strata / topi_resid or another influence.loss_norm"
        )
    return line, warning


# compute.md: counts as integers, the kept part of the pool as a percentage
COMPUTE_FORMATS = {
    **dict.fromkeys(("sequences", "kept_1x", "steps", "epochs", "tokens_seen", "parameters"), numbers.count),
    "fraction_kept": numbers.percent,
    "wall_s": numbers.seconds,
}


def _headline_intro(summary: pd.DataFrame) -> str:
    """What a headline cell holds; with one seed per model, that there is no spread to show."""
    if len(summary) and summary["n"].max() <= 1:
        return (
            "Headline metric per task. One seed per model: no spread over seeds (more seeds, "
            "`select.seeds`, give mean ± sd). n/a: not computable, see Tasks."
        )
    return (
        "Headline metric per task: mean ± sample sd over seeds (a value alone: one seed, no spread; "
        "n/a: not computable, see Tasks)."
    )


def run(args: argparse.Namespace) -> int:
    if args.dpi < 10:
        raise ConfigError(f"--dpi must be >= 10, got {args.dpi}")
    long = read_metrics(args.metrics)
    compute = read_compute(args.pretrain)
    tasks = args.tasks if args.tasks is not None else list(dict.fromkeys(long["task"]))
    unknown = sorted(set(long["task"]) - set(tasks)) if args.tasks is not None else []
    if unknown:
        log.warning("metrics of tasks not listed in --tasks are tabulated but not drawn: %s", unknown)
    summary = seed_summary(long)
    floors = read_floors(args.floors)
    verdict = verdict_table(long)
    alerts = warnings(long, floors)
    compute = sort_rows(compute, ["budget", "strategy", "seed"]) if not compute.empty else compute
    docs = [read_json(p) for p in args.metrics]  # once, for the task notes and the uniform guess
    uniform = uniform_guess(docs)
    headline = headline_table(summary, {t: n for t, (_, n) in uniform.items()})
    values, length_line = None, None
    if args.scores:
        values = read_score_column(args.scores, args.score_column)
        length_line, length_warning = _length_note(args.scores, args.score_column, values)
        if length_warning:  # among the warnings under the verdict
            alerts.append(length_warning)
    with staged_dir(args.out) as stage:
        long.to_csv(stage / "metrics_long.tsv", sep="\t", index=False)
        verdict.to_csv(stage / "verdict.tsv", sep="\t", index=False)
        (stage / "verdict.md").write_text(to_markdown(verdict))
        summary.to_csv(stage / "metrics.tsv", sep="\t", index=False, float_format="%.6g")
        metrics_md = metrics_markdown(summary)
        (stage / "metrics.md").write_text(metrics_md)
        compute.to_csv(stage / "compute.tsv", sep="\t", index=False)
        compute_md = to_markdown(compute, COMPUTE_FORMATS)
        (stage / "compute.md").write_text(compute_md)
        (stage / "figures").mkdir()
        for task in tasks:
            rows = summary[summary["task"] == task]
            figures.metric_figure(
                rows,
                compute,
                stage / "figures" / f"{task}.png",
                title=task,
                dpi=args.dpi,
                uniform=uniform.get(task, (None, None))[1],
            )
        thresholds = {}
        if values is not None:
            thresholds = topi_thresholds(values, compute)
            figures.influence_histogram(
                values,
                stage / "influence_histogram.png",
                thresholds=thresholds,
                dpi=args.dpi,
                column=args.score_column,
            )
        page = [
            "# bioprune comparison report",
            "",
            *_verdict_section(verdict, alerts, floors),
            "## Headline metrics",
            "",
            _headline_intro(summary),
            "",
            to_markdown(headline),
            "## Tasks",
            "",
            *_task_notes(docs, tasks, uniform),
            "",
            *_holdout_note(args.holdout),
            "## Every metric",
            "",
            metrics_md,
            "## Compute per model",
            "",
            compute_md,
            "## Figures",
            "",
            *[f"![{t}](figures/{t}.png)" for t in tasks],
        ]
        if values is not None:
            cuts = ", ".join(f"{b}: {numbers.value(t)}" for b, t in thresholds.items()) or "none"
            page += [
                "",
                "![influence](influence_histogram.png)",
                "",
                f"Top-I cuts: {cuts}.",
                *(["", length_line] if length_line else []),
            ]
        (stage / "report.md").write_text("\n".join(page) + "\n")
    log.info(
        "report of %d models x %d tasks in %s",
        long.groupby(["strategy", "budget", "seed"]).ngroups,
        len(tasks),
        args.out,
    )
    return 0
