# Everything the rules ask of the config: paths, the plan (bioprune.plan, torch-free) and the functions
# the rule files call. Planning errors stop the workflow here, before any job.
import os
import sys

from bioprune.config import expand_data_dir, validate_config
from bioprune.errors import ConfigError
from bioprune.plan import MODEL_WILDCARDS, WILDCARDS, workflow_plan
from bioprune.plan.evaluate import probe_seed, task_inputs, task_json
from bioprune.plan.models import model_seed
from bioprune.plan.select import length_args, matched_ids
from bioprune.workflow import expose_package, slurm_account_problem

expose_package(workflow.basedir)

try:
    validate_config(config)
    # Paths written '{data_dir}/<set>/<file>' point into the data folder; rules/download.smk fetches them.
    DATA_FILES = expand_data_dir(config)
    PLAN = workflow_plan(config, config["results"])
except ConfigError as exc:
    raise WorkflowError(str(exc))
DATA_DIR = os.path.normpath(config["data_dir"])

RESULTS = config["results"]
POOL = f"{RESULTS}/pool"
# the stage folders the plan laid out
SELECT = PLAN.selection.root
PRETRAIN = PLAN.evaluation.pretrain_root
EVALUATE = PLAN.evaluation.evaluate_root

for stage, reasons in (
    ("select", PLAN.selection.skipped),
    ("pretrain", PLAN.evaluation.skipped),
):
    for reason in reasons:
        print(f"bioprune: {stage}: not run: {reason}", file=sys.stderr)


wildcard_constraints:
    **WILDCARDS,


LOGS = config["logs"]
# GPUs a model job asks for without the workflow profile (profiles/default sets them per step and wins):
# training runs train.processes processes (torchrun), evaluation one.
TRAIN_GPUS = config["train"]["processes"] if config["train"]["gpu"] else 0
EVAL_GPUS = 1 if config["train"]["gpu"] else 0
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
        else f"{POOL}/ingest"
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


def select_targets(name="ids.txt"):
    """File ``name`` (ids.txt, coreset.fasta.gz, summary.json...) of every configured selection."""
    return PLAN.selection.targets(name)


def pretrain_targets(name="model.pt"):
    """File ``name`` of every pretrained (and untrained) model."""
    return PLAN.evaluation.pretrain_targets(name)


def evaluate_targets():
    """Every model x task metrics.json."""
    return PLAN.evaluation.evaluate_targets()


def floor_targets():
    """One floor per task (no language model)."""
    return PLAN.evaluation.floor_targets()


def task_of(wildcards):
    return PLAN.evaluation.task(wildcards.task)
