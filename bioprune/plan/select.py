"""The workflow's selection targets: ``{results}/select/{strategy}/{budget}/seed{seed}``.

Random baselines are strategy names with their size multiplier (``random1x``, ``random10x``) so every
selection is one (strategy, budget, seed) wildcard triple. A random multiplier that would need more
than the whole pool at some pruning rate ((1 - rate) * multiplier > 1) cannot exist at any pool size;
it is left out of the targets and named in :attr:`SelectionPlan.skipped`, which the workflow prints.
Absolute counts are checked when the job runs (the pool size is not known before).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from bioprune.errors import ConfigError
from bioprune.select.budget import Budget, exact
from bioprune.select.inputs import parse_family_regex
from bioprune.select.strategies import LENMATCH_PREFIX, strategy_label


@dataclass
class SelectionPlan:
    root: str  # the select folder, {results}/select
    dirs: list[str]  # "strategy/budget/seedN", relative to root
    skipped: list[str]  # human-readable reasons for combinations left out

    def targets(self, name: str = "ids.txt") -> list[str]:
        """File ``name`` (ids.txt, coreset.fasta.gz, summary.json...) of every selection."""
        return [f"{self.root}/{d}/{name}" for d in self.dirs]


def matched_ids(root: str, wildcards) -> list[str]:
    """``lenmatch-<strategy>``: the ids.txt of the selection whose lengths it matches (same budget and
    seed); no file for every other strategy."""
    if not wildcards.strategy.startswith(LENMATCH_PREFIX):
        return []
    ref = wildcards.strategy[len(LENMATCH_PREFIX) :]
    return [f"{root}/{ref}/{wildcards.budget}/seed{wildcards.seed}/ids.txt"]


def length_args(config: dict, root: str, wildcards) -> str:
    """``bioprune select`` options of the length-aware strategies (empty for the others, so a changed
    ``select.length_strata`` reruns only the selections that use it)."""
    if wildcards.strategy != "topi_strata" and not wildcards.strategy.startswith(LENMATCH_PREFIX):
        return ""
    match = "".join(f" --match-ids {shlex.quote(p)}" for p in matched_ids(root, wildcards))
    return f"--strata {config['select']['length_strata']}{match}"


def configured_labels(select: dict) -> list[tuple[str, int, str]]:
    """(strategy, multiplier, label) of every selection the ``select:`` settings ask for: random once
    per multiplier (random1x, random10x), every other strategy once."""
    return [
        (strategy, m, strategy_label(strategy, m))
        for strategy in select["strategies"]
        for m in (select["random_multipliers"] if strategy == "random" else [1])
    ]


def selection_plan(config: dict, root: str) -> SelectionPlan:
    """Every configured selection below ``root``, from a validated config (schema defaults filled in)."""
    sel = config["select"]
    if "cluster" in sel["strategies"] and not config["cluster"]["enabled"]:
        raise ConfigError(
            "select.strategies has 'cluster' (cluster-balanced random) but cluster.enabled is false; "
            "enable clustering or remove the strategy"
        )
    parse_family_regex(sel["family_regex"], "select.family_regex")  # fails at start-up, not after scoring
    budgets = [Budget(rate=float(r)) for r in sel["rates"]] + [Budget(count=int(c)) for c in sel["counts"]]
    if not budgets:
        raise ConfigError("select: no budget; set select.rates and/or select.counts")
    dirs, skipped = [], []
    for _, multiplier, label in configured_labels(sel):
        for budget in budgets:
            if budget.rate is not None and (1 - exact(budget.rate)) * multiplier > 1:
                skipped.append(
                    f"{label} at pruning rate {budget.rate}: {multiplier}x the kept fraction is more "
                    "than the whole pool"
                )
                continue
            dirs.extend(f"{label}/{budget.token}/seed{seed}" for seed in sel["seeds"])
    return SelectionPlan(root, dirs, skipped)
