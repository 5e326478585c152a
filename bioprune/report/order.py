"""The order strategies and budgets are shown in, in tables and figures. Kept apart from the pandas
readers of :mod:`bioprune.report.collect` so that select's figure (a child process) need not import pandas."""

from __future__ import annotations

# Display order; anything else comes after, alphabetically.
STRATEGY_ORDER = ("topi", "cci", "cluster", "loss", "random1x", "random10x", "untrained", "floor")


def strategy_rank(name: str) -> tuple[int, str]:
    if name in STRATEGY_ORDER:
        return (STRATEGY_ORDER.index(name), name)
    return (len(STRATEGY_ORDER), name)


def budget_key(token) -> tuple:
    """rate0.9 < rate0.99 (more pruning later); n-budgets by count; none last."""
    t = str(token)
    if t.startswith("rate"):
        try:
            return (0, float(t[4:]))
        except ValueError:
            return (2, t)
    if t.startswith("n") and t[1:].isdigit():
        return (1, -int(t[1:]))
    return (3, t)
