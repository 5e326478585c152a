import os

from bioprune.config import expand_data_dir, validate_config
from bioprune.errors import ConfigError
from bioprune.workflow import expose_package, slurm_account_problem

expose_package(workflow.basedir)

try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc))
# Paths written '{data_dir}/<set>/<file>' point into the data folder; rules/download.smk fetches them.
DATA_DIR = os.path.normpath(config["data_dir"])
DATA_FILES = expand_data_dir(config)

RESULTS = config["results"]
POOL = f"{RESULTS}/pool"
LOGS = config["logs"]
ENV_POOL = "../envs/pool.yaml"
ENV_TORCH = "../envs/torch.yaml"


def folder_of(name):
    """A params function giving the folder of a named input or output file (a step's --out / INPUT)."""
    kind, key = name.split(".")
    return lambda wildcards, input, output: os.path.dirname(
        getattr(input if kind == "input" else output, key)
    )


def decontaminated_dir():
    return (
        f"{POOL}/decontaminate"
        if config["decontaminate"]["enabled"]
        else f"{POOL}/dedup"
    )


def eval_sets():
    """Evaluation sets to decontaminate against (a null path switches off one the defaults name)."""
    return {k: v for k, v in config["decontaminate"]["eval_sets"].items() if v}


def clustered_dir():
    """The pool after decontamination, clustered or not."""
    return f"{POOL}/cluster" if config["cluster"]["enabled"] else decontaminated_dir()


def filtered_pool_dir():
    """The pool folder that shards (and everything after) read: without the held-out families."""
    return f"{POOL}/holdout" if config["holdout"]["enabled"] else clustered_dir()


# The held-out families (holdout step): the test set of source heldout_families tasks.
HELDOUT_FAMILIES = f"{POOL}/holdout/heldout/sequences.fasta.gz"


def shard_ids():
    return [f"{i:03d}" for i in range(config["shard"]["n_shards"])]
