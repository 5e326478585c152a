"""What the workflow runs, from a validated config: the one place the Snakefile's rules ask.

Torch-free (it imports no model code), so ``snakemake -n`` plans in about a second and the Snakemake
driver does not need torch. ``rules/common.smk`` builds one :class:`WorkflowPlan` and exposes it to the
rule files through plain functions.

- :mod:`bioprune.plan.select`: the selections ``{results}/select/{strategy}/{budget}/seed{seed}``;
- :mod:`bioprune.plan.evaluate`: the pretrained models, evaluations and floors;
- :mod:`bioprune.plan.models`: the command-line pieces of the reference and pretrain rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from bioprune.plan.evaluate import NO_BUDGET, UNTRAINED, EvaluationPlan, evaluation_plan
from bioprune.plan.models import pretrain_args, reference_args
from bioprune.plan.select import SelectionPlan, selection_plan
from bioprune.select.budget import BUDGET_PATTERN
from bioprune.select.strategies import STRATEGY_PATTERN

# The wildcard grammar, set once for every rule (the Snakefile's global wildcard_constraints).
TASK_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
WILDCARDS = {
    "strategy": STRATEGY_PATTERN,
    "budget": BUDGET_PATTERN,
    "seed": r"\d+",
    "shard": r"\d+",
    "task": TASK_PATTERN,
}
# Model folders also hold the untrained baseline (untrained/none/seedN): only the rules that read
# models (evaluate) widen the grammar to it, so a selection rule never matches it.
MODEL_WILDCARDS = {
    "strategy": f"{STRATEGY_PATTERN}|{UNTRAINED}",
    "budget": f"{BUDGET_PATTERN}|{NO_BUDGET}",
}


@dataclass
class WorkflowPlan:
    selection: SelectionPlan
    evaluation: EvaluationPlan
    reference: dict[str, str]  # command-line pieces of the reference rule
    pretrain: dict[str, str]  # of the pretrain rule (and the architecture the floor rule drops by)


def workflow_plan(config: dict, results: str) -> WorkflowPlan:
    """The whole plan from a validated config (schema defaults filled in). Raises ConfigError at
    start-up for settings that cannot run, before any job."""
    selection = selection_plan(config, f"{results}/select")
    return WorkflowPlan(
        selection=selection,
        evaluation=evaluation_plan(config, selection.dirs, results),
        reference=reference_args(config),
        pretrain=pretrain_args(config),
    )
