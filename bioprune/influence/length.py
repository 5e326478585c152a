"""How much of a score is sequence length: the numbers a user needs to tell influence from length.

Self-influence s = sum_j g_j^2 / (F_j + eps) scales with a power of the number of loss tokens n, set by
how the per-sequence loss is normalised (docs/influence.md, "Influence scores and length"): with per-token
gradients of similar size and little correlation, |g|^2 grows like n under ``token_sum``, stays flat under
``sqrt`` and falls like 1/n under ``mean``. :func:`length_diagnostics` measures that on real scores:
Spearman's rho of the score against length and against the mean per-token loss, and the slope and R^2 of
log s on log length. A |rho(score, length)| above :data:`WARN_RHO` is logged as a warning: a Top-I
selection on such scores is mostly a length filter.
"""

from __future__ import annotations

import logging

import numpy as np

from bioprune.evaluate.metrics import spearman

log = logging.getLogger(__name__)

WARN_RHO = 0.5
# Above this many rows, the statistics use an evenly strided subsample (deterministic; rho's standard
# error at 1M rows is ~0.001, far below anything a user acts on).
MAX_ROWS = 1_000_000


def subsample(n: int, max_rows: int | None = None) -> slice:
    """Every step-th row, the fewest steps that leave at most ``max_rows`` (default :data:`MAX_ROWS`,
    read when called) of ``n``."""
    return slice(None, None, max(1, -(-n // (MAX_ROWS if max_rows is None else max_rows))))


def loglog_fit(scores: np.ndarray, lengths: np.ndarray) -> tuple[float, float, float]:
    """Least squares log s = a + b log L over the rows with s > 0 and L > 0: (a, b, R^2)."""
    ok = (scores > 0) & (lengths > 0) & np.isfinite(scores)
    x, y = np.log(lengths[ok].astype(np.float64)), np.log(scores[ok])
    if len(x) < 3 or np.ptp(x) == 0:
        return float(np.mean(y)) if len(y) else 0.0, 0.0, 0.0
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    r2 = 1.0 - float(resid.var() / y.var()) if y.var() > 0 else 0.0
    return float(a), float(b), r2


def length_diagnostics(
    scores: np.ndarray, lengths: np.ndarray, losses: np.ndarray | None = None, *, what: str = "scores"
) -> dict:
    """rho(score, length), rho(score, loss), and the log-log fit; warns (log) when |rho| > WARN_RHO."""
    n = len(scores)
    if n < 3:
        return {"n": n, "note": "fewer than 3 scores: no statistics"}
    step = subsample(n)
    s, ln = np.asarray(scores[step], np.float64), np.asarray(lengths[step], np.float64)
    rho_len = spearman(s, ln)
    a, b, r2 = loglog_fit(s, ln)
    out = {
        "n": n,
        "n_used": len(s),
        "spearman_length": rho_len,
        "spearman_loss": spearman(s, np.asarray(losses[step], np.float64)) if losses is not None else None,
        "loglog_slope": b,
        "loglog_intercept": a,
        "loglog_r2": r2,
        "warn_threshold": WARN_RHO,
        "length_dominated": bool(abs(rho_len) > WARN_RHO),
    }
    warn_if_length_dominated(out, what)
    return out


def warn_if_length_dominated(diagnostics: dict, what: str) -> None:
    """The warning :func:`length_diagnostics` logs, for its result (also when read back from where it
    was stored: the merged score table's statistics)."""
    if diagnostics.get("length_dominated"):
        log.warning(
            "%s: Spearman(score, length) = %.2f (|rho| > %.1f): the score is mostly a length signal "
            "(log s ~ %.2f log length, R^2 %.2f); consider influence.loss_norm or a length-aware "
            "strategy (topi_strata, topi_resid)",
            what,
            diagnostics["spearman_length"],
            diagnostics["warn_threshold"],
            diagnostics["loglog_slope"],
            diagnostics["loglog_r2"],
        )
