"""The verdict table and warnings: hand-computed paired intervals, Holm over tasks, lower-is-better metrics,
the untrained model and floors, one seed; and the report page that opens with them."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bioprune.cli import main
from bioprune.report.collect import read_floors, read_metrics
from bioprune.report.verdict import verdict_table, warnings

R1_F1 = np.array([0.50, 0.52, 0.54])  # random 1x, seeds 0..2
R1_PPL = np.array([10.0, 11.0, 12.0])
UNTRAINED_F1 = np.array([0.55, 0.50, 0.60])
ARMS = {
    # strategy: (f1, perplexity) per seed
    "random1x": (R1_F1, R1_PPL),
    "random10x": (R1_F1 + 0.05, R1_PPL - 5.0),
    "topi": (R1_F1 + [0.02, 0.03, 0.04], R1_PPL - [2.0, 3.0, 4.0]),
    "cci": (R1_F1 + [0.10, 0.11, 0.12], R1_PPL + [1.0, 1.5, 2.0]),
}


def write_metrics(root, strategy, budget, seed, task, kind, values, headline):
    p = root / strategy / budget / f"seed{seed}" / task / "metrics.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    d = {"task": task, "kind": kind, "headline": headline, "strategy": strategy, "budget": budget}
    if kind == "mlm_perplexity":
        d["test_source"] = "heldout_families"
    p.write_text(json.dumps({**d, "seed": seed, "metrics": values}))
    return str(p)


@pytest.fixture
def study(tmp_path):
    paths = []
    for strategy, (f1, ppl) in ARMS.items():
        for seed in range(3):
            paths.append(
                write_metrics(
                    tmp_path, strategy, "rate0.99", seed, "ss", "rna_ss", {"f1": f1[seed], "mcc": 0.1}, "f1"
                )
            )
            paths.append(
                write_metrics(
                    tmp_path,
                    strategy,
                    "rate0.99",
                    seed,
                    "ppl",
                    "mlm_perplexity",
                    {"perplexity": ppl[seed], "loss": math.log(ppl[seed])},
                    "perplexity",
                )
            )
    for seed in range(3):
        vals = {"f1": UNTRAINED_F1[seed], "mcc": 0.0}
        paths.append(write_metrics(tmp_path, "untrained", "none", seed, "ss", "rna_ss", vals, "f1"))
    return paths


def cell(table, strategy, task, column):
    row = table[(table["strategy"] == strategy) & table["task"].str.startswith(task + " ")]
    assert len(row) == 1
    return row.iloc[0][column]


def test_verdict_intervals_and_holm_over_tasks(study):
    table = verdict_table(read_metrics(study))
    assert list(table["strategy"]) == ["topi", "topi", "cci", "cci", "random10x", "random10x"]
    assert set(table["seeds"]) == {3}
    # topi - random1x on f1: 0.02, 0.03, 0.04 -> mean 0.03, sd 0.01; t_{0.975,2} = 4.3027 -> +- 0.0248
    assert cell(table, "topi", "ss", "difference to random 1x [95% CI]") == "+0.0300 [+0.0052, +0.0548]"
    assert cell(table, "topi", "ppl", "difference to random 1x [95% CI]") == "-3.0000 [-5.4841, -0.5159]"
    # each interval excludes 0 (p = 0.0351 each), but Holm over the two tasks doubles the smaller: 0.070
    assert cell(table, "topi", "ss", "beats random 1x") == "no (p_Holm = 0.070)"
    assert cell(table, "topi", "ppl", "beats random 1x") == "no (p_Holm = 0.070)"
    # cci: f1 clearly better (p 0.0027 -> 0.0055); perplexity higher = worse (p 0.0351, Holm keeps it)
    assert cell(table, "cci", "ss", "beats random 1x") == "yes (p_Holm = 0.005)"
    assert cell(table, "cci", "ppl", "beats random 1x") == "no: worse (p_Holm = 0.035)"
    assert "(lower is better)" in table[table["task"].str.startswith("ppl ")]["task"].iloc[0]
    # against random 10x: cci f1 +0.06 (significant), perplexity 6.5 higher (significant): worse
    assert cell(table, "cci", "ss", "reaches random 10x").startswith("yes, better")
    assert cell(table, "cci", "ppl", "reaches random 10x").startswith("no: worse")
    # topi is below random 10x on both, not significantly after Holm
    assert cell(table, "topi", "ss", "reaches random 10x").startswith("no (p_Holm")
    # random 10x is a row of its own (does more data help at all?), with nothing to reach
    assert cell(table, "random10x", "ss", "beats random 1x") == "yes (p_Holm < 0.001)"
    assert cell(table, "random10x", "ss", "reaches random 10x") == "–"


def test_one_seed_has_no_interval_and_no_test(tmp_path):
    paths = [
        write_metrics(tmp_path, s, "rate0.9", 0, "ss", "rna_ss", {"f1": v}, "f1")
        for s, v in (("random1x", 0.5), ("topi", 0.6), ("random10x", 0.55))
    ]
    table = verdict_table(read_metrics(paths))
    topi = table[table["strategy"] == "topi"].iloc[0]
    assert topi["difference to random 1x [95% CI]"] == "+0.1000 (n < 2: no interval)"
    assert topi["beats random 1x"] == "n < 2: no test"
    assert topi["reaches random 10x"] == "n < 2: no test"
    # a metric that could not be computed (an empty unselected set) has nothing to pair
    nan = write_metrics(tmp_path, "cci", "rate0.9", 0, "ss", "rna_ss", {"f1": None}, "f1")
    row = verdict_table(read_metrics([*paths, nan])).query("strategy == 'cci'").iloc[0]
    assert row["difference to random 1x [95% CI]"] == "n/a: no value to pair (see Tasks)"
    assert row["beats random 1x"] == row["reaches random 10x"] == "n/a"
    # without random 1x there is nothing to compare with
    assert verdict_table(read_metrics(paths[1:])).empty


def test_warnings_for_the_untrained_model_and_floors(study, tmp_path):
    long = read_metrics(study)
    lines = warnings(long)
    untrained = [w for w in lines if "untrained" in w]
    # on f1 random 1x (-0.05, +0.02, -0.06) and topi (-0.03, +0.05, -0.02) do not beat the untrained
    # model; cci (+0.05, +0.13, +0.06) is better on average but its interval reaches below 0
    assert any(w.startswith("random1x rate0.99 on ss f1 does not beat the untrained") for w in untrained)
    assert any(w.startswith("topi rate0.99 on ss f1") for w in untrained)
    assert any(w.startswith("cci rate0.99 on ss f1") for w in untrained)
    assert not any(" ppl " in w for w in untrained)  # the untrained model has no perplexity result here
    floor = tmp_path / "floor.json"
    floor.write_text(
        json.dumps({"task": "ss", "kind": "rna_ss", "head": "one-hot CNN", "metrics": {"f1": 0.5}})
    )
    floors = read_floors([floor])
    assert list(floors.columns) == ["task", "kind", "name", "metric", "value", "lower_is_better"]
    by_floor = [w for w in warnings(long, floors) if "floor" in w]
    # cci - 0.5 = 0.10, 0.13, 0.16: interval [+0.0555, +0.2045] beats it; topi, random 1x and the
    # untrained model (+0.05, 0.00, +0.10) do not
    assert sorted(w.split(" on ")[0] for w in by_floor) == ["random1x rate0.99", "topi rate0.99", "untrained"]
    assert "the one-hot CNN floor, 0.5000, (difference" in by_floor[0] and "3 seeds" in by_floor[0]


def test_a_floor_without_its_name_is_refused(tmp_path, capsys):
    bad = tmp_path / "floor.json"
    bad.write_text(json.dumps({"task": "ss", "kind": "rna_ss", "metrics": {"f1": 0.5}}))
    with pytest.raises(Exception, match="head"):
        read_floors([bad])


def test_report_page_opens_with_the_verdict(study, tmp_path):
    floor = tmp_path / "floor.json"
    floor.write_text(json.dumps({"task": "ss", "kind": "rna_ss", "head": "k-mer", "metrics": {"f1": 0.5}}))
    held = tmp_path / "holdout_report.json"
    held.write_text(
        json.dumps(
            {
                "groups": 33, "groups_held_out": 7, "held_out": 25, "input_records": 120, "fraction": 0.2,
                "seed": 0, "by_kind": {
                    "family": {"groups": 30, "groups_held_out": 6},
                    "cluster": {"groups": 3, "groups_held_out": 1},
                },
            }
        )
    )  # fmt: skip
    out = tmp_path / "report"
    args = ["--floors", str(floor), "--holdout", str(held)]
    assert main(["report", "--out", str(out), "--metrics", *study, *args]) == 0
    page = (out / "report.md").read_text()
    sections = [line for line in page.splitlines() if line.startswith("## ")]
    assert sections[0].startswith("## Verdict") and sections[1] == "## Headline metrics"
    verdict_part = page.split("## Headline metrics")[0]
    assert (
        "| rate0.99 | topi | ss f1 | 3 | +0.0300 [+0.0052, +0.0548] | no (p_Holm = 0.070) |" in verdict_part
    )
    assert "⚠ topi rate0.99 on ss f1 does not beat the k-mer floor" in verdict_part
    assert "| ss | rna_ss | k-mer | f1 | 0.5000 |" in verdict_part
    # the task notes say what a perplexity test set measures
    assert "**ppl** (mlm_perplexity, headline perplexity; test set: whole families set aside" in page
    assert (
        "Held-out families: 7 of 33 groups (6 of 30 families, 1 of 3 clusters; fraction 0.2, seed 0)" in page
    )
    assert "25 of 120 sequences, set aside before scoring and selection" in page
    tsv = pd.read_csv(out / "verdict.tsv", sep="\t")
    assert len(tsv) == 6 and (out / "verdict.md").read_text().startswith("| budget | strategy | task |")
