"""Profiles as Snakemake users expect them: per-step resources in the workflow profile (profiles/default,
applied by Snakemake itself), the cluster half installable as a global profile so a bare
`--profile slurm` works, and a clear stop instead of an `sacct` guess when no SLURM account is set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from test_workflow import ROOT, SNAKEMAKE, example_config, run_snakemake

from bioprune.cli import main
from bioprune.profile_install import install_profile
from bioprune.workflow import slurm_account_problem

WORKFLOW_PROFILE = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
# Rules that run inside Snakemake itself or on the submitting machine: no cluster resources needed.
LOCAL_ONLY = {"all", "download"}


def test_every_rule_has_its_resources_in_the_workflow_profile():
    listed = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--list-rules"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    rules = set(listed) - LOCAL_ONLY
    assert rules, listed
    resources = WORKFLOW_PROFILE["set-resources"]
    assert rules - set(resources) == set(), "rules falling back to a cluster's default resources"
    assert set(resources) - rules == set(), "resources for rules the workflow no longer has"
    assert all({"runtime", "mem_mb"} <= set(r) for r in resources.values())
    # The global profile's default-resources (a lab's account and partition) must stay in force.
    assert "default-resources" not in WORKFLOW_PROFILE


def test_the_slurm_profile_leaves_per_step_resources_to_the_workflow_profile():
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    assert "set-resources" not in slurm


def test_install_profile_copies_and_never_overwrites_silently(tmp_path):
    target = install_profile("slurm", tmp_path)
    assert target == tmp_path / "slurm"
    shipped = (ROOT / "profiles" / "slurm" / "config.yaml").read_text()
    assert (target / "config.yaml").read_text() == shipped
    (target / "config.yaml").write_text("executor: slurm\n# the lab's own\n")
    assert main(["install-profile", "slurm", "--dest", str(tmp_path)]) == 2
    assert "the lab's own" in (target / "config.yaml").read_text()
    assert main(["install-profile", "slurm", "--dest", str(tmp_path), "--force"]) == 0
    assert (target / "config.yaml").read_text() == shipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurm"]  # no staging folder left


@pytest.mark.slow
def test_a_bare_profile_name_finds_the_installed_profile_and_the_workflow_profile(tmp_path):
    """`snakemake --profile slurm` with a fresh HOME: nothing found before the install, the SLURM plan
    with the workflow profile's GPU requests after it."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"} | {"HOME": str(home)}
    run = tmp_path / "run"
    run.mkdir()
    config = example_config(run)
    before = run_snakemake(run, config, "--profile", "slurm", "-n", env=env)
    assert before.returncode != 0 and "slurm" in before.stderr
    installed = subprocess.run(
        [sys.executable, "-m", "bioprune", "install-profile", "slurm"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    assert (home / ".config" / "snakemake" / "slurm" / "config.yaml").is_file()
    after = run_snakemake(run, config, "--profile", "slurm", "-n", env=env)
    assert after.returncode == 0, after.stderr[-2000:]
    out = after.stdout + after.stderr
    assert "Using profiles slurm and workflow specific profile profiles/default" in out
    pretrain = out.split("rule pretrain:", 1)[1].split("\n\n", 1)[0]
    assert "gpu=1" in pretrain and "runtime=2880" in pretrain


@pytest.mark.parametrize(
    ("defaults", "per_rule", "no_account", "ok"),
    [
        ({"runtime": 60}, {}, False, False),
        (None, None, False, False),
        ({"slurm_account": "lab"}, {}, False, True),
        ({}, {"pretrain": {"slurm_account": "gpu_lab"}}, False, True),
        ({}, {}, True, True),
    ],
)
def test_no_slurm_account_is_a_clear_stop_unless_said_on_purpose(defaults, per_rule, no_account, ok):
    problem = slurm_account_problem(defaults, per_rule, no_account)
    assert (problem is None) == ok
    if not ok:
        assert "slurm_account" in problem and "--slurm-no-account" in problem


@pytest.mark.slow
def test_the_template_for_your_own_data_plans_a_run_on_it(tmp_path):
    """config/template.yaml with its placeholder files filled by real sequences (the example pool, whose
    headers carry the family): it validates, plans its own task and none of the example's."""
    import gzip

    data = tmp_path / "my_data"
    data.mkdir()
    (data / "pool.fasta.gz").symlink_to(ROOT / "example" / "rna" / "pool.fasta.gz")
    with gzip.open(ROOT / "example" / "rna" / "pool.fasta.gz", "rt") as handle:
        lines = handle.read().splitlines()
    # id + family header, one sequence line; every 6th record so that several families are in each split
    records = [lines[i : i + 2] for i in range(0, len(lines), 2)][::6]
    for k, split in enumerate(("train", "valid", "test")):
        (data / f"{split}.fasta").write_text("".join(f"{h}\n{s}\n" for h, s in records[k::3]))
    template = ROOT / "config" / "template.yaml"
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "--configfile", str(template)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "results_my_run/evaluate/topi/rate0.95/seed2/my_class/metrics.json" in out
    assert "/trna_ss/" not in out and "/trna_isotype/" not in out
    assert "my_data/test.fasta" in out  # decontaminated against
