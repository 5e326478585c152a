"""After a finished run on the embedded example, changing one setting makes Snakemake plan only the jobs
that setting touches: a pruning rate or a CCI setting reruns selection and what follows it, never the
pool, reference or scoring steps. Read from the jobs `snakemake -n` plans, as its logger plugin interface
reports them (tests/snakemake_plan.py), not from its text output."""

from __future__ import annotations

from pathlib import Path

import pytest
from snakemake_plan import Plan, plan
from test_workflow import example_config, light_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = light_config()  # the settings the shared example run used
# Steps before selection: a change of a selection setting must not rerun any of them.
UPSTREAM = {
    "ingest",
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

# every test here plans against the shared example run (conftest.example_run)
pytestmark = pytest.mark.workflow


@pytest.fixture
def finished_run(example_run):
    return example_run[0]


def dry_run(tmp_path: Path, overrides: dict, name: str, *args: str) -> Plan:
    """The jobs `snakemake -n` plans with ``overrides`` merged into the default config."""
    path = example_config(tmp_path, name=f"dry_{name}", **overrides)
    return plan(tmp_path, "--configfile", str(path), *args, snakefile=ROOT / "Snakefile")


def test_unchanged_config_plans_nothing(finished_run):
    assert dry_run(finished_run, {}, "same").jobs == []


def test_changed_cci_setting_reruns_only_cci_selections_and_downstream(finished_run):
    select = DEFAULTS["select"]
    planned = dry_run(finished_run, {"select": {"cci": {"beta": select["cci"]["beta"] / 2}}}, "cci")
    table = planned.counts
    assert not UPSTREAM & set(table), table
    # exactly the CCI selections, one per budget and seed; no other strategy's selection
    assert {w["strategy"] for w in planned.wildcards("select")} == {"cci"}
    assert table["select"] == (len(select["rates"]) + len(select["counts"])) * len(select["seeds"])
    # models trained on other strategies' (unchanged) coresets are not retrained
    assert {w["strategy"] for w in planned.wildcards("pretrain")} <= {"cci"}
    if "cci" in (DEFAULTS["pretrain"]["strategies"] or ["cci"]):
        assert table["pretrain"] == table["select"]
        assert table["evaluate"] > 0 and table["report"] == 1
    # and Snakemake reruns the selections because of the changed parameter
    assert all("params" in job.reason.lower() for job in planned.jobs if job.rule == "select"), planned


def assert_only_the_new_rate(planned: Plan, budget: str) -> None:
    """A new rate: its selections and what follows them, nothing before selection, no other budget."""
    table = planned.counts
    assert not UPSTREAM & set(table), table
    assert table["select"] > 0 and table["pretrain"] > 0 and table["report"] == 1, table
    # only jobs of the new budget; the kept rates' selections and models stand
    for rule in ("select", "pretrain"):
        assert {w["budget"] for w in planned.wildcards(rule)} == {budget}, rule


def test_changed_pruning_rate_reruns_only_that_rates_selections_and_downstream(finished_run):
    rates = DEFAULTS["select"]["rates"]
    new_rate = 0.95
    assert new_rate not in rates
    planned = dry_run(finished_run, {"select": {"rates": [*rates[:-1], new_rate]}}, "rate")
    assert_only_the_new_rate(planned, f"rate{new_rate}")


def test_changed_pool_setting_reruns_from_the_pool(finished_run):
    """The control: the same plan reader sees upstream jobs when an upstream setting changes."""
    min_length = DEFAULTS["ingest"]["min_length"] + 5
    table = dry_run(finished_run, {"ingest": {"min_length": min_length}}, "pool").counts
    assert {"ingest", "decontaminate", "reference", "score", "select"} <= set(table), table


def test_pruning_rate_changed_from_the_command_line(finished_run):
    """`--config 'select={rates: [...]}'` hands the workflow strings; they are read as numbers, and the
    plan is the same as from a config file: only the new rate's selections and what follows them."""
    rates = DEFAULTS["select"]["rates"]
    flag = "select={rates: [" + ", ".join(map(str, [*rates[:-1], 0.95])) + "]}"
    assert_only_the_new_rate(dry_run(finished_run, {}, "cli", "--config", flag), "rate0.95")


def test_changed_holdout_seed_reruns_from_the_holdout_step(finished_run):
    """Another draw of held-out families changes the pool that is scored and selected, not what is before."""
    table = dry_run(finished_run, {"holdout": {"seed": DEFAULTS["holdout"]["seed"] + 1}}, "holdout").counts
    assert table["holdout"] == 1 and not {"ingest", "decontaminate", "cluster"} & set(table), table
    assert {"shard", "reference", "score", "select", "pretrain", "evaluate", "report"} <= set(table), table
