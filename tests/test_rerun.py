"""After a finished run on the embedded example, changing one setting makes Snakemake plan only the jobs
that setting touches: a pruning rate or a CCI setting reruns selection and what follows it, never the
pool, reference or scoring steps. Read from the job table and job list of `snakemake -n`."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from test_workflow import example_config, light_config, run_snakemake

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = light_config()  # the settings the shared example run used
# Steps before selection: a change of a selection setting must not rerun any of them.
UPSTREAM = {
    "ingest",
    "dedup",
    "decontaminate",
    "cluster",
    "holdout",
    "shard",
    "reference",
    "fisher",
    "fisher_reduce",
    "score",
    "merge_scores",
}


def job_table(output: str) -> Counter:
    """Rule -> job count, from the "Job stats" table of a dry run (the first one: it is printed twice)."""
    lines = output.splitlines()
    try:
        start = lines.index("Job stats:")
    except ValueError:
        return Counter()
    counts: Counter = Counter()
    for line in lines[start + 3 :]:  # after the "job count" header and its dashes
        fields = line.split()
        if len(fields) != 2 or fields[0] == "total":
            break
        counts[fields[0]] = int(fields[1])
    return counts


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job block (`rule X:` / `localrule X:`) of a dry run."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if not head:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        pairs = wildcards.group(1).split(", ") if wildcards else []
        jobs.append((head.group(1), dict(p.split("=", 1) for p in pairs)))
    return jobs


@pytest.fixture
def finished_run(example_run):
    return example_run[0]


def dry_run(tmp_path: Path, overrides: dict, name: str) -> tuple[Counter, list[tuple[str, dict[str, str]]]]:
    """The job table and job list of `snakemake -n` with ``overrides`` merged into the default config."""
    path = example_config(tmp_path, name=f"dry_{name}", **overrides)
    proc = run_snakemake(tmp_path, path, "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    output = proc.stdout + "\n" + proc.stderr
    table, jobs = job_table(output), planned_jobs(output)
    assert sum(table.values()) == len(jobs), "the job table and the job list disagree"
    return table, jobs


def test_unchanged_config_plans_nothing(finished_run):
    table, jobs = dry_run(finished_run, {}, "same")
    assert table == Counter() and jobs == []


def test_changed_cci_setting_reruns_only_cci_selections_and_downstream(finished_run):
    select = DEFAULTS["select"]
    table, jobs = dry_run(finished_run, {"select": {"cci": {"beta": select["cci"]["beta"] / 2}}}, "cci")
    assert not UPSTREAM & set(table), table
    selections = [w for rule, w in jobs if rule == "select"]
    # exactly the CCI selections, one per budget and seed; no other strategy's selection
    assert {w["strategy"] for w in selections} == {"cci"}
    assert table["select"] == (len(select["rates"]) + len(select["counts"])) * len(select["seeds"])
    # models trained on other strategies' (unchanged) coresets are not retrained
    assert {w["strategy"] for rule, w in jobs if rule == "pretrain"} <= {"cci"}
    if "cci" in (DEFAULTS["pretrain"]["strategies"] or ["cci"]):
        assert table["pretrain"] == table["select"]
        assert table["evaluate"] > 0 and table["report"] == 1


def test_changed_pruning_rate_reruns_only_that_rates_selections_and_downstream(finished_run):
    rates = DEFAULTS["select"]["rates"]
    new_rate = 0.95
    assert new_rate not in rates
    table, jobs = dry_run(finished_run, {"select": {"rates": [*rates[:-1], new_rate]}}, "rate")
    assert not UPSTREAM & set(table), table
    assert table["select"] > 0
    # only jobs of the new budget; the kept rates' selections and models stand
    for rule in ("select", "pretrain"):
        assert {w["budget"] for r, w in jobs if r == rule} <= {f"rate{new_rate}"}, rule
    assert table["pretrain"] > 0 and table["report"] == 1


def test_changed_pool_setting_reruns_from_the_pool(finished_run):
    """The control: the same parsing sees upstream jobs when an upstream setting changes."""
    min_length = DEFAULTS["ingest"]["min_length"] + 5
    table, _ = dry_run(finished_run, {"ingest": {"min_length": min_length}}, "pool")
    assert {"ingest", "dedup", "reference", "score", "select"} <= set(table), table


def test_pruning_rate_changed_from_the_command_line(finished_run):
    """`--config 'select={rates: [...]}'` hands the workflow strings; they are read as numbers, and the
    plan is the same as from a config file: only the new rate's selections and what follows them."""
    rates = DEFAULTS["select"]["rates"]
    new = [*rates[:-1], 0.95]
    path = example_config(finished_run, name="dry_cli")
    flag = "select={rates: [" + ", ".join(map(str, new)) + "]}"
    proc = run_snakemake(finished_run, path, "-n", "--cores", "1", "--config", flag)
    assert proc.returncode == 0, proc.stderr[-4000:]
    output = proc.stdout + "\n" + proc.stderr
    table, jobs = job_table(output), planned_jobs(output)
    assert not UPSTREAM & set(table), table
    assert table["select"] > 0 and table["report"] == 1
    for rule in ("select", "pretrain"):
        assert {w["budget"] for r, w in jobs if r == rule} <= {"rate0.95"}, rule


def test_changed_holdout_seed_reruns_from_the_holdout_step(finished_run):
    """Another draw of held-out families changes the pool that is scored and selected, not what is before."""
    table, _ = dry_run(finished_run, {"holdout": {"seed": DEFAULTS["holdout"]["seed"] + 1}}, "holdout")
    assert table["holdout"] == 1 and not {"ingest", "dedup", "decontaminate", "cluster"} & set(table), table
    assert {"shard", "reference", "score", "select", "pretrain", "evaluate", "report"} <= set(table), table
