"""The workflow end to end on the embedded example, in a scratch folder, as a user runs it."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from snakemake.utils import update_config
from snakemake_plan import plan

from bioprune.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# The example trimmed so that one run of the whole workflow takes a few minutes (.test/light.yaml, shared
# with CI and other tests): every stage runs, with fewer strategies, one budget and 1-epoch models.
LIGHT = yaml.safe_load((ROOT / ".test" / "light.yaml").read_text())


def light_config(**overrides) -> dict:
    """The config as a test run sees it: config.yaml, then LIGHT, then ``overrides`` (deep merges), with
    the schema's defaults filled in (as the workflow does)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, copy.deepcopy(LIGHT))
    update_config(config, copy.deepcopy(overrides))
    return validate_config(config)


def example_config(tmp_path: Path, name: str = "config", **overrides) -> Path:
    """Prepare tmp_path as a run folder for the example: its relative paths resolve through a link to
    the checkout's example/. Returns a config file holding LIGHT merged with ``overrides``."""
    link = tmp_path / "example"
    if not link.exists():
        link.symlink_to(ROOT / "example", target_is_directory=True)
    merged = copy.deepcopy(LIGHT)
    update_config(merged, copy.deepcopy(overrides))
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(merged))
    return path


def run_snakemake(
    tmp_path: Path, config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile", str(config)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env)


@pytest.mark.workflow
def test_pool_stage_counts_add_up(example_run):
    tmp_path, _ = example_run
    pool = tmp_path / "results" / "pool"
    ingest = json.loads((pool / "ingest" / "ingest_report.json").read_text())
    dedup = json.loads((pool / "ingest" / "dedup_report.json").read_text())  # (ingest --dedup: one pass)
    decont = json.loads((pool / "decontaminate" / "decontaminate_report.json").read_text())
    shards = json.loads((pool / "shards" / "shard_report.json").read_text())
    held = json.loads((pool / "holdout" / "holdout_report.json").read_text())
    assert ingest["input_records"] == 1944
    assert ingest["kept"] + sum(ingest["dropped"].values()) == ingest["input_records"]
    # The example carries real exact duplicates (3.4.12.rf.stk repeats other files' sequences).
    assert dedup["duplicates"] > 0
    assert dedup["kept"] + dedup["duplicates"] == ingest["kept"]
    # The held-out tRNAs and the downstream task's splits overlap the pool's tRNAs.
    assert all(decont["removed_per_eval_set"][name] > 0 for name in ("heldout", "trna_valid", "trna_test"))
    assert decont["kept"] + decont["removed"] == dedup["kept"]
    # whole families leave the pool before scoring (never the example's tRNA, which its tasks are about)
    assert held["input_records"] == decont["kept"] == held["kept"] + held["held_out"]
    assert held["groups_held_out"] == round(0.2 * held["groups"]) and held["held_out"] > 0
    assert "tRNA" not in (pool / "holdout" / "heldout_groups.tsv").read_text()
    assert sum(s["sequences"] for s in shards["shards"]) == held["kept"]
    assert (tmp_path / "logs" / "ingest.log").exists()


@pytest.mark.workflow
def test_every_stage_reaches_the_report(example_run):
    tmp_path, _ = example_run
    results = tmp_path / "results"
    scores = pq.read_table(results / "influence" / "scores.parquet")
    pool = pq.read_table(results / "pool" / "shards" / "shards.parquet")
    assert scores.num_rows == pool.num_rows
    assert pc.min(scores["self_influence"]).as_py() > 0
    metrics = (results / "report" / "metrics.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in metrics[1:]]
    # the task's floor (no language model, once per task) is a row beside the models
    assert {row[3] for row in rows} == {"topi", "cci", "random1x", "floor"}
    assert {row[0] for row in rows} == {"trna_isotype", "seen_family_perplexity", "heldout_family_perplexity"}
    verdict = (results / "report" / "verdict.md").read_text()
    assert "| rate0.9 | topi | trna_isotype accuracy | 1 |" in verdict and "n < 2: no test" in verdict


@pytest.mark.workflow
def test_rerun_is_a_no_op(example_run):
    tmp_path, config = example_run
    assert plan(tmp_path, "--configfile", str(config), snakefile=ROOT / "Snakefile").jobs == []


def test_bad_config_stops_at_start_with_the_key(tmp_path):
    config = example_config(tmp_path, shard={"n_shards": 0})
    proc = run_snakemake(tmp_path, config, "-n")
    assert proc.returncode != 0
    # Snakemake prints a WorkflowError raised while parsing on stdout or stderr depending on its version.
    assert "shard.n_shards: 0 is less than the minimum of 1" in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_html_report_holds_the_selection_figures(example_run):
    """snakemake --report: every selection's diagnostics and the coverage figure are in it, with their
    captions, beside the comparison report's figures."""
    tmp_path, config = example_run
    html = tmp_path / "report.html"
    proc = run_snakemake(tmp_path, config, "--report", str(html))
    assert proc.returncode == 0, proc.stderr[-4000:]
    page = html.read_text()
    for strategy in ("topi", "cci", "random1x"):
        assert f"results/select/{strategy}/rate0.9/seed0/diagnostics.png" in page
    assert "results/select/report/coverage.png" in page
    assert "each bin shaded by the share" in page  # report/diagnostics.rst
    assert "Random sampling covers the most families at a given size" in page  # report/coverage.rst
