"""Budgets (rate or count -> k), the select config section, and the workflow's selection targets."""

import copy
from pathlib import Path

import pytest
import yaml

from bioprune.config import validate_config
from bioprune.errors import BiopruneError, ConfigError
from bioprune.plan.select import selection_plan
from bioprune.select.budget import Budget, drop_count, parse_budget

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    return validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def test_rate_budget_is_exact_decimal_and_rounds_halves_up():
    assert Budget(rate=0.9).k(1000) == 100  # (1 - 0.9) * 1000 is 99.99999999999997 in floats
    assert Budget(rate=0.99).k(72262) == 723  # 722.62
    assert Budget(rate=0.9).k(1005) == 101  # 100.5
    assert Budget(rate=0.9).k(1005, multiplier=10) == 1005  # 10x of the kept fraction, not 10 * 101
    assert Budget(count=5000).k(20000, multiplier=2) == 10000


def test_budget_larger_than_the_pool_names_both_numbers():
    with pytest.raises(BiopruneError, match=r"budget of 5000 sequences \(count 5000\).*pool of 1000"):
        Budget(count=5000).k(1000)
    with pytest.raises(
        BiopruneError, match=r"budget of 2000 sequences \(10x pruning rate 0.8\).*pool of 1000"
    ):
        Budget(rate=0.8).k(1000, multiplier=10)
    with pytest.raises(BiopruneError, match="keeps 0 of the 10"):
        Budget(rate=0.99).k(10)


def test_budget_tokens_round_trip():
    for budget in (Budget(rate=0.9), Budget(rate=0.999), Budget(count=5000)):
        assert parse_budget(budget.token) == budget
    assert Budget(rate=0.99).token == "rate0.99"
    with pytest.raises(ConfigError, match="expected 'rate<R>'"):
        parse_budget("ten")
    with pytest.raises(ConfigError, match=r"outside \(0, 1\)"):
        parse_budget("rate1.5")


def test_cci_drop_count_is_a_floor_of_the_exact_fraction():
    assert drop_count(100, 0.29) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert drop_count(19, 0.1) == 1
    assert drop_count(5, 0.0) == 0


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        ([1.0], "select.rates.0: 1.0 is greater than or equal to the maximum of 1"),
        ([0.9, 0], "select.rates.1: 0 is less than or equal to the minimum of 0"),
        ([-0.5], "select.rates.0: -0.5 is less than or equal to the minimum of 0"),
    ],
)
def test_rate_outside_0_1_is_rejected_by_the_schema_readably(config, rates, expected):
    config = copy.deepcopy(config)
    config["select"]["rates"] = rates
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert expected in str(err.value)
    assert "fraction of the scored pool removed" in str(err.value)  # the schema's explanation


def test_select_defaults_are_filled_in():
    config = validate_config({"alphabet": "rna", "inputs": ["x.fa"]})
    assert config["select"]["cci"] == {"beta": 0.1, "bins": 50}
    assert config["select"]["random_multipliers"] == [1, 10]


def test_default_plan_has_every_strategy_budget_and_seed(config):
    plan = selection_plan(config, "results/select")
    labels = {d.split("/")[0] for d in plan.dirs}
    assert labels == {
        *("topi", "cci", "random1x", "random10x", "cluster", "loss"),
        *("topi_strata", "topi_resid", "lenmatch-topi"),  # length-aware Top-I, length-matched random
    }
    assert len(plan.dirs) == 9 * 2 * 1 and not plan.skipped
    assert "results/select/random10x/rate0.99/seed0/coreset.fasta.gz" in plan.targets("coreset.fasta.gz")


def test_impossible_random_multiples_are_skipped_and_named(config):
    config = copy.deepcopy(config)
    config["select"].update(rates=[0.5, 0.95], seeds=[0, 1])
    plan = selection_plan(config, "s")
    assert "random10x/rate0.5/seed1" not in plan.dirs and "random10x/rate0.95/seed1" in plan.dirs
    assert "random1x/rate0.5/seed0" in plan.dirs
    assert plan.skipped == [
        "random10x at pruning rate 0.5: 10x the kept fraction is more than the whole pool"
    ]


def test_cluster_strategy_needs_clustering(config):
    config = copy.deepcopy(config)
    config["cluster"]["enabled"] = False
    with pytest.raises(ConfigError, match="cluster.enabled is false"):
        selection_plan(config, "s")
    config["select"]["strategies"] = ["topi"]
    assert selection_plan(config, "s").dirs == ["topi/rate0.95/seed0", "topi/rate0.99/seed0"]


def test_plan_needs_a_budget(config):
    config = copy.deepcopy(config)
    config["select"].update(rates=[], counts=[])
    with pytest.raises(ConfigError, match="no budget"):
        selection_plan(config, "s")


def test_a_bad_family_regex_stops_the_plan(config):
    """A bad select.family_regex passed start-up and failed at select, after scoring (issue 12.12)."""
    config = copy.deepcopy(config)
    config["select"]["family_regex"] = "^(RF"
    with pytest.raises(ConfigError, match=r"select.family_regex '\^\(RF' is not a valid regular expression"):
        selection_plan(config, "s")
    config["select"]["family_regex"] = None  # no families
    assert selection_plan(config, "s").dirs
