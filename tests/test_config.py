"""The config schema: defaults are filled in, and wrong values get messages naming the key."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from bioprune.config import validate_config
from bioprune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid(default_config):
    validate_config(default_config)


def test_protein_example_overrides_are_valid(default_config):
    overrides = yaml.safe_load((ROOT / "config" / "example_protein.yaml").read_text())
    update_config(default_config, overrides)  # the deep merge Snakemake applies to --configfile
    config = validate_config(default_config)
    assert config["alphabet"] == "protein"
    assert config["decontaminate"]["eval_sets"]["trna_test"] is None


def test_missing_sections_get_schema_defaults():
    config = validate_config({"alphabet": "rna", "inputs": ["x.fa"]})
    assert config["shard"]["n_shards"] == 4
    assert config["cluster"]["method"] is None  # by alphabet (bioprune.pool.cluster.DEFAULT_METHOD)
    assert config["ingest"]["strict"] is False
    assert config["results"] == "results"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("shard", "n_shards"), 0, "shard.n_shards: 0 is less than the minimum of 1"),
        (("alphabet",), "dna", "alphabet: 'dna' is not one of ['rna', 'protein']"),
        (("cluster", "keep"), "some", "cluster.keep: 'some' is not one of"),
        (("decontaminate", "min_identity"), 1.5, "decontaminate.min_identity: 1.5 is greater than"),
        (("ingest", "typo_key"), 1, "ingest: Additional properties are not allowed ('typo_key'"),
    ],
)
def test_bad_values_name_the_key(default_config, path, value, expected):
    config = copy.deepcopy(default_config)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert expected in str(err.value)


def test_all_problems_are_listed_at_once(default_config):
    config = copy.deepcopy(default_config)
    config["shard"]["n_shards"] = -1
    config["threads"] = 0
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    text = str(err.value)
    assert "shard.n_shards" in text and "threads" in text


def test_command_line_strings_become_the_types_the_schema_asks_for(default_config):
    """snakemake --config gives nested values as strings ('select={rates: [0.9, 0.95]}')."""
    config = copy.deepcopy(default_config)
    config["select"].update(rates=["0.9", "0.95"], counts=["50"], seeds=["0", "1"])
    config["reference"].update(dsub_size="null", finetune="false")
    config["influence"]["eps"] = "1e-6"
    config["select"]["family_regex"] = "^(\\S+)"  # a string setting stays a string
    validate_config(config)
    assert config["select"]["rates"] == [0.9, 0.95] and config["select"]["counts"] == [50]
    assert config["select"]["seeds"] == [0, 1]
    assert config["reference"]["dsub_size"] is None and config["reference"]["finetune"] is False
    assert config["influence"]["eps"] == 1e-6
    config["select"]["rates"] = ["zero point nine"]
    with pytest.raises(ConfigError, match="select.rates.0: 'zero point nine' is not of type 'number'"):
        validate_config(config)
