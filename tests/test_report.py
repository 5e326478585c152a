"""The comparison report: seed statistics against hand-computed values, every output file, and the report
of a tiny finished run made by the real pretrain / evaluate steps."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune.cli import main
from bioprune.report import numbers
from bioprune.report.collect import read_compute, read_metrics, sort_rows
from bioprune.report.tables import headline_table, metrics_markdown, seed_summary

PNG = b"\x89PNG\r\n\x1a\n"


def metrics_file(root, strategy, budget, seed, task, kind, values, headline):
    p = root / "evaluate" / strategy / budget / f"seed{seed}" / task / "metrics.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    d = {
        "task": task,
        "kind": kind,
        "headline": headline,
        "strategy": strategy,
        "budget": budget,
        "seed": seed,
        "metrics": values,
        "counts": {"test": {"read": 10, "used": 9, "too_long": 1}},
        "model": {"spec": {"backend": "rnafm"}},
    }
    p.write_text(json.dumps(d))
    return str(p)


def pretrain_file(root, strategy, budget, seed, k, mult, tokens):
    p = root / "pretrain" / strategy / budget / f"seed{seed}" / "pretrain_report.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    sel = (
        None
        if strategy == "untrained"
        else {"budget": {"k": k * mult}, "multiplier": mult, "n_selected": k * mult}
    )
    d = {
        "strategy": strategy,
        "budget": budget,
        "seed": seed,
        "steps": tokens // 100,
        "tokens_seen": tokens,
        "wall_s": 1.5,
        "selection": sel,
        "compute": "same_epochs",
    }
    p.write_text(json.dumps(d))
    return str(p)


@pytest.fixture
def synthetic_run(tmp_path):
    """Two budgets, topi / random1x / random10x / untrained, two seeds, two tasks (F1 from a formula)."""
    metrics, pretrain = [], []
    for budget, k in (("rate0.9", 100), ("rate0.99", 10)):
        for strategy, mult in (("topi", 1), ("random1x", 1), ("random10x", 10)):
            for seed in (0, 1):
                f1 = (
                    0.5
                    + 0.2 * seed
                    + (0.1 if strategy == "topi" else 0)
                    + (0.05 if budget == "rate0.9" else 0)
                )
                vals = {"f1": f1, "precision": 0.5, "recall": 0.5, "mcc": 0.4}
                metrics.append(metrics_file(tmp_path, strategy, budget, seed, "ss", "rna_ss", vals, "f1"))
                ppl = {"perplexity": 10.0 - seed, "loss": math.log(10.0 - seed)}
                if not (strategy == "random10x" and budget == "rate0.9"):  # an empty unselected set
                    metrics.append(
                        metrics_file(
                            tmp_path, strategy, budget, seed, "ppl", "mlm_perplexity", ppl, "perplexity"
                        )
                    )
                else:
                    metrics.append(
                        metrics_file(
                            tmp_path,
                            strategy,
                            budget,
                            seed,
                            "ppl",
                            "mlm_perplexity",
                            {"perplexity": None, "loss": None},
                            "perplexity",
                        )
                    )
                pretrain.append(pretrain_file(tmp_path, strategy, budget, seed, k, mult, 1000 * k * mult))
    for seed in (0, 1):
        vals = {"f1": 0.1, "precision": 0.1, "recall": 0.1, "mcc": 0.0}
        metrics.append(metrics_file(tmp_path, "untrained", "none", seed, "ss", "rna_ss", vals, "f1"))
        pretrain.append(pretrain_file(tmp_path, "untrained", "none", seed, 0, 1, 0))
    scores = tmp_path / "scores.parquet"
    s = np.random.default_rng(0).lognormal(0, 2, 1000)
    pq.write_table(pa.table({"id": [f"x{i}" for i in range(1000)], "self_influence": s, "loss": s}), scores)
    return tmp_path, metrics, pretrain, scores


def test_seed_summary_mean_and_spread(synthetic_run):
    _, metrics, _, _ = synthetic_run
    summary = seed_summary(read_metrics(metrics))
    row = summary[
        (summary.task == "ss")
        & (summary.metric == "f1")
        & (summary.budget == "rate0.99")
        & (summary.strategy == "topi")
    ].iloc[0]
    assert (row["seed0"], row["seed1"]) == pytest.approx((0.6, 0.8))
    assert (
        row["mean"] == pytest.approx(0.7) and row["std"] == pytest.approx(math.sqrt(0.02)) and row["n"] == 2
    )
    # a metric that could not be computed stays n/a and does not count as a seed
    empty = summary[
        (summary.task == "ppl") & (summary.budget == "rate0.9") & (summary.strategy == "random10x")
    ]
    assert empty["mean"].isna().all() and (empty["n"] == 0).all()
    # strategies in display order, budgets in order, tasks in input order
    ss_f1 = summary[(summary.task == "ss") & (summary.metric == "f1")]
    assert list(ss_f1.strategy[:3]) == ["topi", "random1x", "random10x"]
    assert list(dict.fromkeys(ss_f1.budget)) == ["rate0.9", "rate0.99", "none"]
    head = headline_table(summary)
    cell = head[(head.budget == "rate0.99") & (head.strategy == "topi")]["ss f1"].iloc[0]
    assert cell == "0.7000 ± 0.1414"
    assert "ppl perplexity (lower is better)" in head.columns


def test_single_seed_has_no_spread():
    long = pd.DataFrame(
        [
            {
                "strategy": "topi",
                "budget": "n5",
                "seed": 0,
                "task": "t",
                "kind": "seq_class",
                "metric": "accuracy",
                "value": 0.25,
                "headline": True,
                "lower_is_better": False,
            }
        ]
    )
    s = seed_summary(long)
    assert s["std"].isna().all() and s["mean"].iloc[0] == 0.25
    # the sd cell says why it is empty, under a header that promises one
    assert "| t | accuracy | n5 | topi | 0.2500 | 0.2500 | one seed: no spread | 1 |" in metrics_markdown(s)
    assert headline_table(s)["t accuracy"].iloc[0] == "0.2500"


def test_numbers_are_written_one_way_per_kind():
    """Counts as integers with separators (a 1x size of 11.3 is 11 sequences), metric values with four
    decimals, fractions of the pool as percentages, missing values as n/a."""
    assert (
        numbers.count(113) == "113"
        and numbers.count(11.3) == "11"
        and numbers.count(1234567.0) == "1,234,567"
    )
    assert numbers.value(0.25) == "0.2500" and numbers.value(1234.56) == "1,234.6"
    assert numbers.value(-0.01, sign=True) == "-0.0100" and numbers.value(0.5, sign=True) == "+0.5000"
    assert (
        numbers.mean_sd(0.7, math.sqrt(0.02)) == "0.7000 ± 0.1414"
        and numbers.mean_sd(0.7, np.nan) == "0.7000"
    )
    assert numbers.percent(0.1) == "10.0%" and numbers.percent(0.0101) == "1.0%"
    assert numbers.seconds(1234.56) == "1,234.6"
    for f in (numbers.count, numbers.value, numbers.percent, numbers.seconds):
        assert f(None) == f(float("nan")) == "n/a"


def test_compute_table_and_sorting(synthetic_run):
    _, _, pretrain, _ = synthetic_run
    c = sort_rows(read_compute(pretrain), ["budget", "strategy", "seed"])
    r10 = c[(c.strategy == "random10x") & (c.budget == "rate0.99")].iloc[0]
    assert r10["kept_1x"] == 10 and r10["sequences"] == 100 and r10["tokens_seen"] == 100_000
    assert c.iloc[-1]["strategy"] == "untrained" and math.isnan(c.iloc[-1]["kept_1x"])


def test_report_cli_writes_everything(synthetic_run, tmp_path):
    root, metrics, pretrain, scores = synthetic_run
    out = tmp_path / "report"
    args = [
        "report",
        "--out",
        str(out),
        "--tasks",
        "ss",
        "ppl",
        "--scores",
        str(scores),
        "--dpi",
        "40",
        "--metrics",
        *metrics,
        "--pretrain",
        *pretrain,
    ]
    assert main(args) == 0
    for name in ("metrics.tsv", "metrics.md", "metrics_long.tsv", "compute.tsv", "compute.md", "report.md"):
        assert (out / name).stat().st_size > 0
    for png in ("figures/ss.png", "figures/ppl.png", "influence_histogram.png"):
        assert (out / png).read_bytes()[:8] == PNG
    tsv = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert len(tsv) == 4 * 2 * 3 + 4 + 2 * 2 * 3  # ss: 4 metrics x (2 budgets x 3 + untrained); ppl: 2 x 6
    page = (out / "report.md").read_text()
    assert "| rate0.99 | topi | 0.7000 ± 0.1414 |" in page
    assert "**ss** (rna_ss, headline f1): test 9 used (too_long 1)" in page
    assert "Top-I cuts: rate0.9:" in page and "rate0.99:" in page
    assert "100,000" in (out / "compute.md").read_text()
    # a perplexity is read against a uniform guess over the alphabet's standard residues
    assert "a uniform guess over ACGU has perplexity 4" in page
    assert "| ppl perplexity (lower is better; uniform guess 4) |" in page
    # a single budget draws strategies as points with horizontal references (another code path)
    one = [m for m in metrics if "rate0.99" in m or "untrained" in m]
    assert main(["report", "--out", str(tmp_path / "r1"), "--dpi", "40", "--metrics", *one]) == 0
    assert (tmp_path / "r1" / "figures" / "ss.png").read_bytes()[:8] == PNG


def test_report_refuses_a_foreign_json(tmp_path, capsys):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"task": "x"}))
    assert main(["report", "--out", str(tmp_path / "r"), "--metrics", str(bad)]) == 2
    assert "missing key(s)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.md").exists()


@pytest.mark.parametrize(
    ("table", "column", "fragment"),
    [
        # a string score column gave np.isfinite's TypeError (issue 12.9)
        ({"id": ["a", "b"], "self_influence": ["1.0", "x"]}, "self_influence", "holds string, not numbers"),
        # a missing column printed the whole pyarrow schema (issue 12.12)
        (
            {"id": ["a"], "loss": [1.0]},
            "self_influence",
            "missing column(s) self_influence; its columns: id, loss",
        ),
    ],
)
def test_report_bad_score_table_is_one_line(synthetic_run, tmp_path, capsys, table, column, fragment):
    _, metrics, _, _ = synthetic_run
    scores = tmp_path / "bad_scores.parquet"
    pq.write_table(pa.table(table), scores)
    argv = ["report", "--out", str(tmp_path / "r"), "--scores", str(scores), "--metrics", *metrics]
    assert main([*argv, "--score-column", column]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and len(err[0]) < 300
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "report.md").exists()


def test_report_keeps_a_users_files_in_its_figures_folder(synthetic_run, tmp_path):
    """report --out DIR used to delete an existing DIR/figures/ with everything in it (issue 12.1)."""
    _, metrics, _, _ = synthetic_run
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "poster.svg").write_text("<svg/>")
    assert main(["report", "--out", str(out), "--dpi", "40", "--metrics", *metrics]) == 0
    assert (out / "figures" / "poster.svg").read_text() == "<svg/>"
    assert (out / "figures" / "ss.png").read_bytes()[:8] == PNG


def test_report_of_a_tiny_finished_run(tmp_path, write_fasta):
    """pretrain -> perplexity-set -> evaluate -> report with the real steps, two strategies, two seeds."""
    rng = np.random.default_rng(0)
    pool = write_fasta(
        "pool.fa.gz", "".join(f">p{i}\n{''.join(rng.choice(list('ACGU'), 40))}\n" for i in range(60))
    )
    arch = [
        "--backend",
        "rnafm",
        "--layers",
        "1",
        "--hidden",
        "16",
        "--heads",
        "2",
        "--ffn",
        "32",
        "--max-tokens",
        "64",
    ]
    selections = {"topi": [0, 1, 2, 3, 4, 5], "random1x": [10, 11, 12, 13, 14, 15]}
    pretrain, metrics, id_files = [], [], []
    for strategy, rows in selections.items():
        for seed in (0, 1):
            chosen = [r + seed for r in rows]
            ids = tmp_path / "select" / strategy / f"seed{seed}" / "ids.txt"
            ids.parent.mkdir(parents=True)
            ids.write_text("".join(f"p{r}\n" for r in chosen))
            id_files.append(str(ids))
            core = write_fasta(
                f"core_{strategy}{seed}.fa", "".join(f">p{r}\n{'ACGU' * 10}\n" for r in chosen)
            )
            out = tmp_path / "pretrain" / strategy / f"seed{seed}"
            assert (
                main(
                    [
                        "pretrain",
                        str(core),
                        "--out",
                        str(out),
                        *arch,
                        "--epochs",
                        "1",
                        "--seed",
                        str(seed),
                        "--strategy",
                        strategy,
                        "--budget",
                        "n6",
                        "--selection-seed",
                        str(seed),
                    ]
                )
                == 0
            )
            pretrain.append(str(out / "pretrain_report.json"))
    heldout = tmp_path / "unselected"
    assert (
        main(
            ["perplexity-set", "--pool", str(pool), "--out", str(heldout), "--max-sequences", "20", *id_files]
        )
        == 0
    )
    task = json.dumps({"name": "ppl", "kind": "mlm_perplexity", "source": "unselected_pool"})
    for p in pretrain:
        d = json.loads(open(p).read())
        model = p.replace("pretrain_report.json", "model.pt")
        out = tmp_path / "evaluate" / d["strategy"] / f"seed{d['seed']}" / "ppl"
        assert (
            main(
                [
                    "evaluate",
                    "--model",
                    model,
                    "--task-json",
                    task,
                    "--test",
                    str(heldout / "sequences.fasta.gz"),
                    "--out",
                    str(out),
                    "--strategy",
                    d["strategy"],
                    "--budget",
                    "n6",
                    "--model-seed",
                    str(d["seed"]),
                ]
            )
            == 0
        )
        metrics.append(str(out / "metrics.json"))
    assert (
        main(
            [
                "report",
                "--out",
                str(tmp_path / "report"),
                "--dpi",
                "40",
                "--metrics",
                *metrics,
                "--pretrain",
                *pretrain,
            ]
        )
        == 0
    )
    tsv = pd.read_csv(tmp_path / "report" / "metrics.tsv", sep="\t")
    row = tsv[(tsv.metric == "perplexity") & (tsv.strategy == "topi")].iloc[0]
    values = [json.loads(open(m).read())["metrics"]["perplexity"] for m in metrics if "/topi/" in m]
    assert row["mean"] == pytest.approx(np.mean(values), rel=1e-5) and row["n"] == 2
    assert row["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-4)
    used = json.loads(open(metrics[0]).read())["counts"]["test"]["used"]
    assert used == 20  # 60 pool records, 14 ever selected, 20 sampled of the other 46
    compute = pd.read_csv(tmp_path / "report" / "compute.tsv", sep="\t")
    assert len(compute) == 4 and (compute.tokens_seen > 0).all()


@pytest.mark.parametrize("slope", [-1.0, 0.0])
def test_report_says_how_much_of_the_score_is_length(synthetic_run, tmp_path, slope):
    """A score that falls like 1/length is named a length signal, at the top among the warnings; a
    length-free score gets the numbers without the warning."""
    _, metrics, _, _ = synthetic_run
    rng = np.random.default_rng(0)
    length = rng.integers(20, 2000, 1000)
    s = length.astype(float) ** slope * rng.lognormal(0, 0.3, 1000)
    scores = tmp_path / "scores.parquet"
    pq.write_table(
        pa.table({"self_influence": s, "loss": rng.normal(2, 0.1, 1000), "length": length}), scores
    )
    out = tmp_path / f"r{slope}"
    assert (
        main(["report", "--out", str(out), "--dpi", "40", "--scores", str(scores), "--metrics", *metrics])
        == 0
    )
    page = (out / "report.md").read_text()
    assert "Score and length: Spearman's rho(score, length) = " in page
    warned = "the score is mostly a length signal" in page
    assert warned == (slope != 0.0)
    if warned:  # in the warnings under the verdict, before the tables
        assert page.index("mostly a length signal") < page.index("## Headline metrics")


def test_compute_table_writes_counts_as_integers(tmp_path):
    """random 10x of 113 sequences has a 1x size of 11.3: the table said "11.3000" beside "113"."""
    p = pretrain_file(tmp_path, "random10x", "rate0.99", 0, 113, 1, 5000)
    d = json.loads(open(p).read())
    d["selection"] = {"budget": {"k": 113}, "multiplier": 10, "n_selected": 113, "fraction_kept": 0.1}
    open(p, "w").write(json.dumps(d))
    m = metrics_file(tmp_path, "random10x", "rate0.99", 0, "t", "seq_class", {"accuracy": 0.5}, "accuracy")
    out = tmp_path / "report"
    assert main(["report", "--out", str(out), "--dpi", "20", "--metrics", m, "--pretrain", p]) == 0
    header, _, row = (out / "compute.md").read_text().splitlines()[:3]
    cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | "), strict=True))
    assert (cells["sequences"], cells["kept_1x"], cells["fraction_kept"]) == ("113", "11", "10.0%")
    assert (cells["tokens_seen"], cells["steps"], cells["wall_s"]) == ("5,000", "50", "1.5")
    # one seed: the page says there is no spread instead of promising mean ± sd
    page = (out / "report.md").read_text()
    assert "One seed per model: no spread over seeds" in page and "one seed: no spread" in page


def test_metric_figure_legend_matches_its_marks(synthetic_run):
    """Every panel is labelled; references run at a single budget (random 10x) are drawn as markers,
    which the legend shows; the perplexity panel carries the uniform-guess line; one legend beside the
    panels covers none of them."""
    from bioprune.report import figures

    root, metrics, pretrain, _ = synthetic_run
    summary = seed_summary(read_metrics(metrics))
    ppl = summary[summary.task == "ppl"]
    fig = figures.metric_figure(ppl, read_compute(pretrain), root / "ppl.png", title="ppl", dpi=20, uniform=4)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_legend() is None
    ax_ppl = fig.axes[0]
    assert ax_ppl.get_ylabel() == "perplexity (lower is better)"
    uniform = [line for line in ax_ppl.get_lines() if line.get_label() == "uniform guess (4)"]
    assert len(uniform) == 1 and list(uniform[0].get_ydata()) == [4, 4]
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["topi", "random1x", "random10x", "uniform guess (4)"]
    # random 10x has perplexity at rate0.99 only: one point, which only a marker draws
    r10 = [c for c in ax_ppl.containers if c.get_label() == "random10x"]
    assert r10 and r10[0].lines[0].get_marker() not in ("", "None", None)
    assert np.isfinite(np.asarray(r10[0].lines[0].get_ydata(), dtype=float)).sum() == 1


def test_metric_figure_leaves_out_a_budget_without_values(synthetic_run):
    """An empty test set at one budget (every pool sequence selected at rate0.9) left half of every panel
    blank: that budget is left out, named in the title, and the remaining one is drawn by strategy."""
    from bioprune.report import figures

    root, metrics, pretrain, _ = synthetic_run
    summary = seed_summary(read_metrics(metrics))
    ppl = summary[summary.task == "ppl"].copy()
    ppl.loc[ppl.budget == "rate0.9", ["seed0", "seed1", "mean", "std"]] = np.nan
    fig = figures.metric_figure(ppl, read_compute(pretrain), root / "ppl.png", title="ppl", dpi=20)
    assert fig.get_suptitle() == "ppl (no values at rate0.9: see the report's Tasks)"
    ax = fig.axes[0]
    assert ax.get_xlabel() == "strategy (rate0.99)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["topi"]


def test_a_far_untrained_reference_is_named_off_scale_not_drawn_over_the_models(synthetic_run):
    """An untrained perplexity of 25 against models at 3.7-3.8 squeezed every model into one line: the
    axis stays on the models and the untrained value is written at the panel's edge. A near one is drawn
    as before."""
    import pandas as pd

    from bioprune.report import figures

    root, metrics, pretrain, _ = synthetic_run
    summary = seed_summary(read_metrics(metrics))
    ppl = summary[summary.task == "ppl"]
    compute = read_compute(pretrain)

    def with_untrained(level: float) -> pd.DataFrame:
        rows = ppl.groupby("metric", as_index=False).first()
        rows = rows.assign(strategy="untrained", budget="none", mean=level, std=0.0)
        return pd.concat([ppl, rows], ignore_index=True)

    top = float(ppl.loc[ppl.metric == "perplexity", "mean"].max())
    fig = figures.metric_figure(with_untrained(50 * top), compute, root / "far.png", title="far", dpi=20)
    ax = fig.axes[0]
    assert ax.get_ylim()[1] < 50 * top
    notes = [t.get_text() for t in ax.texts]
    assert len(notes) == 1 and notes[0].startswith("untrained") and "off scale" in notes[0]
    near = figures.metric_figure(with_untrained(top), compute, root / "near.png", title="near", dpi=20)
    assert len(near.axes[0].texts) == 0 and near.axes[0].get_ylim()[1] >= top


def test_the_linear_probe_beside_the_mlp_is_reported_as_its_own_metrics(tmp_path):
    """A sequence task's metrics.json carries the linear probe fitted beside the MLP; the report reads it
    as linear_probe_* metrics (never the headline), with the lower-is-better sense of the base metric."""
    path = metrics_file(tmp_path, "topi", "rate0.9", 0, "cls", "seq_class", {"accuracy": 0.7}, "accuracy")
    d = json.loads(open(path).read())
    d["linear_probe"] = {"metrics": {"accuracy": 0.55, "mse": 1.5}, "best_epoch": 3, "valid_score": 0.5}
    with open(path, "w") as handle:
        json.dump(d, handle)
    df = read_metrics([path]).set_index("metric")
    assert df.loc["accuracy", "value"] == 0.7 and bool(df.loc["accuracy", "headline"])
    assert df.loc["linear_probe_accuracy", "value"] == 0.55
    assert not df.loc["linear_probe_accuracy", "headline"]
    assert bool(df.loc["linear_probe_mse", "lower_is_better"])
