"""Paired comparisons over pretraining seeds: Student t intervals and Holm's correction.

Every arm of a study is pretrained once per seed, and the seed also fixes the random baselines of that
seed, so an arm and random 1x (or random 10x, or the untrained model) are compared seed by seed: the
per-seed differences ``d_s = arm_s - reference_s`` are the data, their mean the effect, and
``mean ± t_{0.975, n-1} · sd / sqrt(n)`` its 95% interval (the paired t interval). With fewer than two
paired seeds there is no interval and no test.

The Student t distribution is computed here from the regularised incomplete beta function (a continued
fraction, as in Numerical Recipes §6.4) because none of the project's dependencies provides its quantile
(SciPy is not one; ``torch.distributions.StudentT`` has no ``icdf``). The quantile is found by bisection on
the CDF, to 1e-12.

Holm's step-down correction (:func:`holm`) controls the family-wise error over the tasks of one
comparison: sort the m p-values, multiply the k-th smallest by m - k + 1, carry the running maximum, cap
at 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got {a}, {b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got {x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # the continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) of Student's t with ``df`` degrees of freedom."""
    half = 0.5 * t_sf2(t, df)
    return 1.0 - half if t >= 0 else half


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (e.g. ``t_quantile(0.975, 4)`` = 2.776...)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile needs 0 < p < 1, got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # bracket: doubles until the CDF passes p
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Paired:
    """A paired difference over seeds. ``lo``/``hi``/``p`` are NaN when ``n < 2`` (no interval)."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float
    p: float  # two-sided, for mean difference 0

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.lo)


def paired(differences, level: float = LEVEL) -> Paired:
    """Mean of per-seed differences with its two-sided ``level`` Student t interval and p-value.

    NaN differences (a metric that could not be computed for one seed) are left out before counting.
    A zero spread with n >= 2 gives a zero-width interval and p = 0 (or 1 when the mean is 0)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if n < 2:
        return Paired(1, mean, math.nan, math.nan, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    half = t_quantile(0.5 + level / 2.0, n - 1) * se
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = t_sf2(mean / se, n - 1)
    return Paired(n, mean, sd, mean - half, mean + half, p)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values, in the input order; NaN entries stay NaN and do not count towards m."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out
