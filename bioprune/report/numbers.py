"""How the report writes numbers: one formatter per kind of number, so a column reads the same way
everywhere (a count printed as "11.3000" beside "113" reads as a measurement).

- counts (sequences, steps, tokens, parameters): rounded to an integer, thousands separators;
- metric values and their differences: 4 decimals below 100, 1 decimal with separators above;
- fractions of a whole (the part of the pool kept): a percentage with the % sign;
- missing values: ``n/a``.
"""

from __future__ import annotations

import math

MISSING = "n/a"


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def count(v) -> str:
    """1234.0 -> "1,234"; 11.3 -> "11" (a count of sequences is whole)."""
    return MISSING if _missing(v) else f"{round(float(v)):,}"


def value(v, *, sign: bool = False) -> str:
    """A metric value: 0.25 -> "0.2500", 1234.5 -> "1,234.5"; ``sign`` adds + to positive values."""
    if _missing(v):
        return MISSING
    v = float(v)
    digits = 4 if abs(v) < 100 else 1
    return f"{v:+,.{digits}f}" if sign else f"{v:,.{digits}f}"


def mean_sd(mean, sd) -> str:
    """ "0.7000 ± 0.1414"; the mean alone when there is no spread (one seed)."""
    text = value(mean)
    return text if _missing(sd) or _missing(mean) else f"{text} ± {value(sd)}"


def percent(v) -> str:
    """A fraction as a percentage: 0.1 -> "10.0%", 0.0123 -> "1.2%"."""
    return MISSING if _missing(v) else f"{100 * float(v):.1f}%"


def seconds(v) -> str:
    """Wall time: 1.5 -> "1.5", 1234.56 -> "1,234.6"."""
    return MISSING if _missing(v) else f"{float(v):,.1f}"
