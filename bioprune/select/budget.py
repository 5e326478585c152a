"""Budgets: a pruning rate (fraction of the pool removed) or an absolute count, turned into k.

Rates are handled as exact decimals (``Fraction(repr(rate))``) so that ``(1 - 0.9) * 1000`` is 100, not
99.99999999999997 floored to 99. The workflow writes a budget as a token, ``rate0.9`` or ``n5000``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from bioprune.errors import BiopruneError, ConfigError

# The workflow's {budget} wildcard; parse_budget reads the same grammar.
BUDGET_PATTERN = r"rate[0-9.eE+-]+|n[0-9]+"
_TOKEN = re.compile(r"^(?:rate(?P<rate>[0-9.eE+-]+)|n(?P<count>[0-9]+))$")


def exact(x: float | str | Fraction) -> Fraction:
    """The decimal a user wrote (0.1 is 1/10, not the nearest binary float)."""
    return x if isinstance(x, Fraction) else Fraction(repr(x) if isinstance(x, float) else str(x))


def round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


@dataclass(frozen=True)
class Budget:
    """Exactly one of ``rate`` (fraction removed, in (0, 1)) or ``count`` (sequences kept) is set."""

    rate: float | None = None
    count: int | None = None

    def __post_init__(self):
        if (self.rate is None) == (self.count is None):
            raise ConfigError("a budget is either a pruning rate or a count, not both or neither")
        if self.rate is not None and not 0 < self.rate < 1:
            raise ConfigError(
                f"pruning rate {self.rate} is outside (0, 1): it is the fraction of the pool removed "
                "(0.99 keeps 1%)"
            )
        if self.count is not None and self.count < 1:
            raise ConfigError(f"budget count {self.count} must be at least 1")

    @property
    def token(self) -> str:
        """The workflow's wildcard value: ``rate0.9`` or ``n5000``."""
        return f"rate{self.rate!r}" if self.rate is not None else f"n{self.count}"

    def describe(self, multiplier: int = 1) -> str:
        base = f"pruning rate {self.rate}" if self.rate is not None else f"count {self.count}"
        return base if multiplier == 1 else f"{multiplier}x {base}"

    def k(self, n: int, multiplier: int = 1) -> int:
        """Sequences kept from a pool of ``n``: ``round(n * (1 - rate) * multiplier)`` (halves up), or
        ``count * multiplier``. Raises BiopruneError when that is 0 or more than the pool."""
        if multiplier < 1:
            raise ConfigError(f"size multiplier {multiplier} must be at least 1")
        if self.rate is not None:
            k = round_half_up(n * (1 - exact(self.rate)) * multiplier)
        else:
            k = self.count * multiplier
        if k > n:
            raise BiopruneError(
                f"budget of {k} sequences ({self.describe(multiplier)}) is larger than the pool of {n} "
                "scored sequences; lower the budget or the multiplier"
            )
        if k == 0:
            raise BiopruneError(
                f"{self.describe(multiplier)} keeps 0 of the {n} scored sequences; lower the rate"
            )
        return k

    def as_dict(self) -> dict:
        return {"rate": self.rate, "count": self.count, "token": self.token}


def parse_budget(token: str) -> Budget:
    """``rate0.9`` -> Budget(rate=0.9); ``n5000`` -> Budget(count=5000)."""
    m = _TOKEN.match(token.strip())
    if not m:
        raise ConfigError(f"budget {token!r}: expected 'rate<R>' (e.g. rate0.9) or 'n<K>' (e.g. n5000)")
    if m["count"] is not None:
        return Budget(count=int(m["count"]))
    try:
        rate = float(m["rate"])
    except ValueError:
        raise ConfigError(f"budget {token!r}: {m['rate']!r} is not a number") from None
    return Budget(rate=rate)


def drop_count(n: int, beta: float) -> int:
    """Sequences CCI drops from the top: ``floor(beta * n)`` with beta as an exact decimal (as CCS's
    ``int(len(scores) * ratio)``, minus binary rounding)."""
    if not 0 <= beta < 1:
        raise ConfigError(f"cci beta {beta} is outside [0, 1): it is the fraction of top scores dropped")
    return math.floor(n * exact(beta))
