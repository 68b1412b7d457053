"""Confidence intervals computed for many groups at once: Wilson for proportions, order statistics for quantiles."""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["min_executions_for_interval", "order_statistic_ranks", "wilson_interval"]

# ---------------------------------------------------------------------------------------------------------


def wilson_interval(successes: np.ndarray, n: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions, vectorised; NaN where ``n`` is 0.

    The same interval as ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")``:
    it never collapses to a point at 0 or n successes (0 failures in 50 still has an upper bound).
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = stats.norm.isf((1 - confidence) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1 + z * z / n
        center = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        low = np.clip(center - half, 0, 1)
        high = np.clip(center + half, 0, 1)
    low = np.where(x == 0, 0.0, low)
    high = np.where(x == n, 1.0, high)
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def order_statistic_ranks(n: np.ndarray, q: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free, equal-tailed confidence interval for quantiles as 1-based order-statistic ranks.

    With ``K ~ Binomial(n, q)`` the number of values below the true quantile, ``[X_(l), X_(u)]`` covers it
    with probability ``F(u-1) - F(l-1)``; ``l = ppf(alpha/2)`` and ``u = ppf(1-alpha/2) + 1`` put at most
    ``alpha/2`` in each tail (Conover; the same interval as ``scipy.stats.quantile_test``). NaN where the
    rank falls outside ``1..n``: too few executions for an interval (e.g. below 368 for p99 at 95%).

    Returns arrays of shape (len(n), len(q)).
    """
    n = np.asarray(n, dtype=np.float64)[:, None]
    q = np.asarray(q, dtype=np.float64)[None, :]
    alpha = 1 - confidence
    with np.errstate(invalid="ignore"):
        low = stats.binom.ppf(alpha / 2, n, q)
        high = stats.binom.ppf(1 - alpha / 2, n, q) + 1
    low = np.where((low >= 1) & (n > 0), low, np.nan)
    high = np.where((high <= n) & (n > 0), high, np.nan)
    return low, high


def min_executions_for_interval(q: float, confidence: float) -> int:
    """Smallest sample size with a distribution-free interval for quantile ``q`` at ``confidence``."""
    alpha = 1 - confidence
    # Both tails must be reachable: q^n <= alpha/2 and (1-q)^n <= alpha/2.
    worst = max(q, 1 - q)
    if worst >= 1:
        return np.iinfo(np.int64).max
    n = int(np.ceil(np.log(alpha / 2) / np.log(worst)))
    while True:  # guard against rounding in the closed form
        lo, hi = order_statistic_ranks(np.array([n]), np.array([q]), confidence)
        if np.isfinite(lo[0, 0]) and np.isfinite(hi[0, 0]):
            return n
        n += 1
