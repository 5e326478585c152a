"""The trimmed example configs in .test/, shared by the tests and CI, stay valid on top of the defaults
and keep saying what their comments say."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from bioprune.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def merged(name: str) -> dict:
    """config/config.yaml with .test/<name> merged in, as `--configfile .test/<name>` gives it."""
    config = copy.deepcopy(DEFAULTS)
    update_config(config, yaml.safe_load((ROOT / ".test" / name).read_text()))
    return config


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / ".test").glob("*.yaml")))
def test_every_test_config_is_valid_on_the_defaults(name):
    validate_config(merged(name))


def test_the_ci_config_switches_every_task_but_its_two_off():
    """Snakemake merges a config file into the defaults: a task the file does not name stays on, so
    the file names every task of the defaults."""
    tasks = merged("ci_slurm.yaml")["evaluate"]["tasks"]
    named = yaml.safe_load((ROOT / ".test" / "ci_slurm.yaml").read_text())["evaluate"]["tasks"]
    assert set(named) == set(DEFAULTS["evaluate"]["tasks"])
    assert {t for t, spec in tasks.items() if spec["enabled"]} == {"trna_isotype", "seen_family_perplexity"}


def test_both_trimmed_runs_share_their_selections():
    """CI and the tests' example run differ in threads, pretrained strategies and tasks only."""
    light, ci = merged("light.yaml"), merged("ci_slurm.yaml")
    assert light["select"] == ci["select"] and light["reference"] == ci["reference"]
    assert ci["threads"] == 1 and set(ci["pretrain"]["strategies"]) < set(light["pretrain"]["strategies"])
