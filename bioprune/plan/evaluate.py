"""What the pretraining, evaluation and report rules run, from a validated config.

Kept here (not in the .smk files) so it is tested and lint-free. Model folders are
``{results}/pretrain/{strategy}/{budget}/seed{seed}`` for every selection that is pretrained, plus
``{results}/pretrain/untrained/none/seed{seed}`` (the random initialisation) per seed when
``pretrain.untrained_baseline`` is on. Evaluations are ``{results}/evaluate/<model folder>/{task}``;
each task's floor (no language model, once per task) is ``{results}/evaluate/floors/{task}.json``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from bioprune.errors import ConfigError
from bioprune.evaluate.tasks import FLOOR_KINDS, TaskSpec, task_files, tasks_from_config
from bioprune.plan.select import configured_labels

UNTRAINED = "untrained"
NO_BUDGET = "none"


@dataclass
class EvaluationPlan:
    pretrain_root: str
    evaluate_root: str
    models: list[str]  # "strategy/budget/seedN" of every trained model
    untrained: list[str]  # "untrained/none/seedN"
    tasks: list[TaskSpec]
    budgets_with_unselected: list[str]  # budgets whose unselected pool set some task reads
    select_dirs: list[str]  # every selection of the select stage (relative to its root)
    skipped: list[str] = field(default_factory=list)  # pretrain.strategies with no selection to train on
    floors: bool = True  # evaluate.floors: one no-language-model floor per task

    def pretrain_targets(self, name: str = "model.pt") -> list[str]:
        return [f"{self.pretrain_root}/{d}/{name}" for d in self.models + self.untrained]

    def pairs(self) -> list[tuple[str, TaskSpec]]:
        """(model folder, task) of every evaluation; the untrained model skips unselected-pool tasks
        (it has no budget, and its perplexity is that of a random guess anyway)."""
        out = []
        for d in self.models + self.untrained:
            for t in self.tasks:
                if t.source == "unselected_pool" and d.startswith(UNTRAINED + "/"):
                    continue
                out.append((d, t))
        return out

    def evaluate_targets(self) -> list[str]:
        return [f"{self.evaluate_root}/{d}/{t.name}/metrics.json" for d, t in self.pairs()]

    def floor_tasks(self) -> list[TaskSpec]:
        """Tasks with a floor (computed once per task, not per model), when ``evaluate.floors`` is on."""
        return [t for t in self.tasks if t.kind in FLOOR_KINDS] if self.floors else []

    def floor_targets(self) -> list[str]:
        return [f"{self.evaluate_root}/floors/{t.name}.json" for t in self.floor_tasks()]

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)

    def selection_ids(self, select_root: str, budget: str) -> list[str]:
        """ids.txt of every selection (all strategies and seeds) at ``budget``."""
        return [f"{select_root}/{d}/ids.txt" for d in self.select_dirs if d.split("/")[1] == budget]


def evaluation_plan(config: dict, select_dirs: list[str], results: str) -> EvaluationPlan:
    """The plan from a validated config and the selection stage's folders ("strategy/budget/seedN")."""
    pre = config["pretrain"]
    wanted = pre["strategies"]
    known = sorted({d.split("/")[0] for d in select_dirs})
    skipped = []
    if wanted is not None:
        sel = config["select"]
        configured = {label for _, _, label in configured_labels(sel)}
        missing = sorted(set(wanted) - set(known))
        unknown = [w for w in missing if w not in configured]
        if unknown:
            raise ConfigError(
                f"pretrain.strategies {unknown} are not selections of this run (selections: {known})"
            )
        # configured but planned at no budget (a random multiple larger than the pool): a note, not an error
        skipped = [f"{w}: no selection at any budget (see the select notes above)" for w in missing]
    models = [d for d in select_dirs if wanted is None or d.split("/")[0] in wanted]
    if pre["compute"] == "same_steps":
        ref = pre["steps_like"]
        need = {f"{ref}/{d.split('/', 1)[1]}" for d in models}
        missing = sorted(need - set(select_dirs))
        if missing:
            raise ConfigError(
                f"pretrain.compute same_steps takes its step count from the {ref} selections, but "
                f"{missing[0]} is not in the selection stage (add it, or set pretrain.steps_like)"
            )
    seeds = sorted({int(d.rsplit("seed", 1)[1]) for d in models})
    untrained = [f"{UNTRAINED}/{NO_BUDGET}/seed{s}" for s in seeds] if pre["untrained_baseline"] else []
    tasks = tasks_from_config(config)
    needs_holdout = [t.name for t in tasks if t.source == "heldout_families"]
    if needs_holdout and not (config.get("holdout") or {}).get("enabled"):
        raise ConfigError(
            f"evaluate.tasks {needs_holdout} read the held-out families (source heldout_families): "
            "set holdout.enabled true, or disable the task(s)"
        )
    budgets = (
        sorted({d.split("/")[1] for d in models}) if any(t.source == "unselected_pool" for t in tasks) else []
    )
    floors = bool((config.get("evaluate") or {}).get("floors", True))
    return EvaluationPlan(
        f"{results}/pretrain",
        f"{results}/evaluate",
        models,
        untrained,
        tasks,
        budgets,
        list(select_dirs),
        skipped,
        floors,
    )


def probe_seed(config: dict, seed: str | int) -> int:
    """Probe seed of the evaluations of the models of seed ``seed``: ``evaluate.seed`` + the seed, so the
    spread over seeds includes the probe's (initialisation, batch order, record sampling), while the
    models a paired comparison sets side by side (same seed) share it."""
    return int(config["evaluate"]["seed"]) + int(seed)


def task_json(spec: TaskSpec) -> str:
    """The task's settings as one shell-quoted JSON word (a params value: editing a task reruns it)."""
    return shlex.quote(json.dumps(spec.to_dict(), sort_keys=True))


def task_inputs(spec: TaskSpec) -> list[str]:
    return task_files(spec)
