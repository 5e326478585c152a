"""Read the evaluation and pretraining outputs into pandas tables.

Long metric table columns: strategy, budget, seed, task, kind, metric, value, headline (the task's
first metric), lower_is_better. A task's floor (``bioprune floor`` output, strategy ``floor``, budget
``none``) reads like a model's metrics.json, so it becomes rows beside the models. Compute table: one
row per model with steps, tokens seen and wall time.
Each model's budget is also given as ``kept_1x``: the sequences a 1x selection keeps at that budget
(selection size / multiplier), the x axis of the figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bioprune.errors import InputError
from bioprune.evaluate.tasks import LOWER_IS_BETTER
from bioprune.report.order import budget_key, strategy_rank


def read_json(path: os.PathLike | str) -> dict:
    """A result file's JSON, or a one-line InputError naming the file."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except OSError as exc:
        raise InputError(p, f"cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(p, f"not valid JSON ({exc})") from None


def _need(p, data: dict, keys) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise InputError(p, f"missing key(s) {missing}; not a bioprune evaluate/pretrain output?")


LINEAR_PREFIX = "linear_probe_"


def read_metrics(paths: list[os.PathLike | str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        d = read_json(p)
        _need(p, d, ("task", "kind", "metrics", "headline", "strategy", "budget", "seed"))
        # The sequence tasks' linear probe, fitted beside the MLP, as metrics of its own (linear_probe_*):
        # what a linear read-out of the pooled embedding holds.
        linear = (d.get("linear_probe") or {}).get("metrics") or {}
        named = [(m, m, v) for m, v in d["metrics"].items()]
        named += [(f"{LINEAR_PREFIX}{m}", m, v) for m, v in linear.items()]
        for metric, base, value in named:
            rows.append(
                {
                    "strategy": d["strategy"],
                    "budget": d["budget"],
                    "seed": d["seed"],
                    "task": d["task"],
                    "kind": d["kind"],
                    "metric": metric,
                    "value": np.nan if value is None else float(value),
                    "headline": metric == d["headline"],
                    "lower_is_better": base in LOWER_IS_BETTER,
                }
            )
    cols = ["strategy", "budget", "seed", "task", "kind", "metric", "value", "headline", "lower_is_better"]
    df = pd.DataFrame(rows, columns=cols)
    dup = df.duplicated(["strategy", "budget", "seed", "task", "metric"])
    if dup.any():
        r = df[dup].iloc[0]
        raise InputError(
            paths[0], f"two metrics files for {r.strategy} {r.budget} seed {r.seed} task {r.task}"
        )
    return df


def read_compute(paths: list[os.PathLike | str]) -> pd.DataFrame:
    rows = []
    for p in paths:
        d = read_json(p)
        _need(p, d, ("strategy", "budget", "seed", "steps", "tokens_seen", "wall_s"))
        sel = d.get("selection") or {}
        budget = sel.get("budget") or {}
        k, mult = budget.get("k"), sel.get("multiplier") or 1
        rows.append(
            {
                "strategy": d["strategy"],
                "budget": d["budget"],
                "seed": d["seed"],
                "sequences": sel.get("n_selected"),
                "kept_1x": (k / mult) if k is not None else np.nan,
                "fraction_kept": sel.get("fraction_kept"),
                "compute": d.get("compute"),
                "steps": d["steps"],
                "epochs": d.get("epochs_completed", 0),
                "tokens_seen": d["tokens_seen"],
                "wall_s": d["wall_s"],
                "val_loss": d.get("val_loss"),
                "parameters": d.get("parameters"),
            }
        )
    return pd.DataFrame(rows)


def sort_rows(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Sort with strategies in display order and budgets in their numeric order."""
    keys = {}
    if "strategy" in by:
        keys["strategy"] = lambda s: s.map(strategy_rank)
    if "budget" in by:
        keys["budget"] = lambda s: s.map(budget_key)

    def key(col: pd.Series):
        return keys[col.name](col) if col.name in keys else col

    return df.sort_values(by, key=key, kind="stable").reset_index(drop=True)


def read_floors(paths: list[os.PathLike | str]) -> pd.DataFrame:
    """Floor results (a task scored without a pretrained model: one-hot or k-mer features, say), one JSON
    file each with ``task``, ``kind``, ``metrics`` and the floor's name in ``head`` (or ``name``).
    Columns: task, kind, name, metric, value, lower_is_better."""
    rows = []
    for p in paths:
        d = read_json(p)
        _need(p, d, ("task", "kind", "metrics"))
        name = d.get("name") or d.get("head")
        if not name:
            raise InputError(p, "a floor result needs its 'head' (or 'name'): what it was computed with")
        for metric, value in d["metrics"].items():
            rows.append(
                {
                    "task": d["task"],
                    "kind": d["kind"],
                    "name": str(name),
                    "metric": metric,
                    "value": np.nan if value is None else float(value),
                    "lower_is_better": metric in LOWER_IS_BETTER,
                }
            )
    return pd.DataFrame(rows, columns=["task", "kind", "name", "metric", "value", "lower_is_better"])
