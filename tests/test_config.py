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
        node = node.setdefault(key, {})
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
    config["influence"] = {"eps": "1e-6"}
    config["select"]["family_regex"] = "^(\\S+)"  # a string setting stays a string
    validate_config(config)
    assert config["select"]["rates"] == [0.9, 0.95] and config["select"]["counts"] == [50]
    assert config["select"]["seeds"] == [0, 1]
    assert config["reference"]["dsub_size"] is None and config["reference"]["finetune"] is False
    assert config["influence"]["eps"] == 1e-6
    config["select"]["rates"] = ["zero point nine"]
    with pytest.raises(ConfigError, match="select.rates.0: 'zero point nine' is not of type 'number'"):
        validate_config(config)


def _leaves(schema: dict, config: dict, path=()):
    """(key path, schema entry, value) of every setting ``config`` gives that the schema describes."""
    props = schema.get("properties", {})
    for key, value in config.items():
        if key not in props:
            continue
        if isinstance(value, dict) and "properties" in props[key] and value:
            yield from _leaves(props[key], value, (*path, key))
        else:
            yield ".".join((*path, key)), props[key], value


def test_the_schema_is_the_only_place_a_default_is_written():
    """config/config.yaml holds only what the example sets: no key there restates its schema default
    (which would be a second place to change it, and a disagreement waiting to happen)."""
    from bioprune.config import load_schema

    schema = load_schema()
    for name in ("config.yaml", "template.yaml"):
        config = yaml.safe_load((ROOT / "config" / name).read_text())
        restated = [
            p for p, entry, v in _leaves(schema, config) if "default" in entry and entry["default"] == v
        ]
        assert not restated or name == "template.yaml", f"{name} restates schema defaults: {restated}"


def test_training_settings_and_flags_take_the_schema_defaults():
    """TrainSettings and `bioprune train`'s flags are derived from the schema's train: section."""
    import argparse
    import dataclasses

    from bioprune.config import load_schema
    from bioprune.models.train_settings import TRAIN_FLAGS, TrainSettings, add_training_flags

    train = load_schema()["properties"]["train"]["properties"]
    settings = TrainSettings()
    parser = argparse.ArgumentParser()
    add_training_flags(parser)
    parsed = parser.parse_args([])
    for name in TRAIN_FLAGS:
        assert getattr(settings, name) == train[name]["default"], name
        assert getattr(parsed, name) == train[name]["default"], name
    # every train: key is a flag or a workflow-only setting (processes and gpu shape the job, not weights)
    assert set(train) - set(TRAIN_FLAGS) == {"processes", "gpu"}
    assert set(TRAIN_FLAGS) <= {f.name for f in dataclasses.fields(TrainSettings)}
    choices = {a.dest: a.choices for a in parser._actions if a.choices}
    assert choices["schedule"] == train["schedule"]["enum"]


def test_influence_settings_take_the_schema_defaults():
    """`bioprune fisher` / `score` run alone score as the workflow does by default."""
    import dataclasses

    from bioprune.config import load_schema
    from bioprune.influence.settings import InfluenceSettings

    influence = load_schema()["properties"]["influence"]["properties"]
    settings = InfluenceSettings()
    shared = [f.name for f in dataclasses.fields(InfluenceSettings) if f.name in influence]
    assert len(shared) == 10
    for name in shared:
        assert getattr(settings, name) == influence[name]["default"], name


def test_the_package_reads_the_schema_through_its_link_to_config():
    """bioprune/schema.yaml links to config/schema.yaml (one file; a wheel gets a copy), so every step's
    defaults are the workflow's, whether the package runs from a checkout or is installed."""
    from bioprune.config import SCHEMA_PATH

    assert SCHEMA_PATH.parent.name == "bioprune"
    assert SCHEMA_PATH.resolve() == (ROOT / "config" / "schema.yaml").resolve()
