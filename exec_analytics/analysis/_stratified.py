"""Two-arm comparisons stratified by caller: the statistics behind :func:`compare_versions`.

Every estimator here compares a candidate arm with a baseline arm *within* strata (callers, optionally time
buckets) and pools the within-stratum comparisons, so a candidate that serves a different mix of callers is
not blamed for the mix. All of them are vectorised over strata (``bincount`` over stratum codes); the only
loop is over chunks of bootstrap resamples, to bound memory.

- Failure rates: Mantel-Haenszel risk difference with Sato's variance, Mantel-Haenszel risk ratio with the
  Greenland-Robins variance, and the Cochran-Mantel-Haenszel test.
- Whole distribution: the van Elteren test (stratified Wilcoxon-Mann-Whitney) and the stratified probability
  that a candidate execution is slower than a baseline execution of the same caller, with DeLong's
  variance.
- Percentiles: direct standardisation (the candidate reweighted to the baseline's caller mix) with a
  stratified Poisson bootstrap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "Differences",
    "Effect",
    "Shifts",
    "bootstrap_effect",
    "cmh_test",
    "mh_difference_by",
    "mh_risk_difference",
    "mh_risk_ratio",
    "pool_shifts",
    "quantile_bootstrap",
    "rank_comparison",
    "shift_effect",
    "stratum_shifts",
    "weighted_quantiles",
]


@dataclass
class Effect:
    """One metric's comparison: effect on both scales with intervals, the test statistic and p-value."""

    difference: float = np.nan
    difference_low: float = np.nan
    difference_high: float = np.nan
    ratio: float = np.nan
    ratio_low: float = np.nan
    ratio_high: float = np.nan
    statistic: float = np.nan
    p_value: float = np.nan
    test: str = ""


def _z(confidence: float) -> float:
    return float(stats.norm.isf((1 - confidence) / 2))


# ---------------------------------------------------------------------------------------------------------
# Binary outcomes (failure rates)
# ---------------------------------------------------------------------------------------------------------


def _common(x1: np.ndarray, n1: np.ndarray, x0: np.ndarray, n0: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = (n1 > 0) & (n0 > 0)
    return tuple(np.asarray(a, dtype=np.float64)[keep] for a in (x1, n1, x0, n0))


def mh_risk_difference(
    x1: np.ndarray, n1: np.ndarray, x0: np.ndarray, n0: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """Mantel-Haenszel risk difference (candidate - baseline) and its interval.

    Parameters
    ----------
    x1, n1 : numpy.ndarray
        Candidate events and executions per stratum.
    x0, n0 : numpy.ndarray
        Baseline events and executions per stratum.
    confidence : float

    Returns
    -------
    tuple of float
        ``(estimate, low, high)``; NaN when no stratum has both arms.

    Notes
    -----
    Weights ``n1 n0 / N`` per stratum; strata with one arm only get weight 0 (they say nothing about the
    difference). Variance: Sato (1989), consistent both for many small strata and for a few large ones.
    Sato's variance is 0 when neither arm has a single event, which would claim certainty from, say, 0 of
    200 against 0 of 200; the variance is therefore never taken below the Agresti-Caffo variance of the
    pooled comparison (one pseudo-failure and one pseudo-success added to each arm).
    """
    one = np.zeros(len(np.asarray(n1)), dtype=np.intp)
    d = mh_difference_by(x1, n1, x0, n0, one, 1, confidence)
    return float(d.difference[0]), float(d.low[0]), float(d.high[0])


@dataclass
class Differences:
    """Mantel-Haenszel risk differences of several groups of strata (arrays, one value per group).

    ``baseline`` and ``candidate`` are each arm's rate standardised to the Mantel-Haenszel weights, so
    ``candidate - baseline == difference`` exactly; ``z`` is the difference over its standard error.
    Groups without a stratum holding both arms are NaN.
    """

    difference: np.ndarray
    low: np.ndarray
    high: np.ndarray
    z: np.ndarray
    baseline: np.ndarray
    candidate: np.ndarray


def mh_difference_by(
    x1: np.ndarray,
    n1: np.ndarray,
    x0: np.ndarray,
    n0: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    confidence: float,
) -> Differences:
    """:func:`mh_risk_difference` for every group of strata at once (e.g. each caller over its time buckets).

    Parameters
    ----------
    x1, n1, x0, n0 : numpy.ndarray
        Events and executions per stratum, candidate (1) and baseline (0).
    group : numpy.ndarray
        Group code of every stratum, in ``[0, n_groups)``.
    n_groups : int
    confidence : float

    Returns
    -------
    Differences
    """
    keep = (np.asarray(n1) > 0) & (np.asarray(n0) > 0)
    x1, n1, x0, n0 = (np.asarray(a, dtype=np.float64)[keep] for a in (x1, n1, x0, n0))
    g = np.asarray(group)[keep]

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(g, weights=values, minlength=n_groups)

    big_n = n1 + n0
    w = n1 * n0 / big_n
    weight = total(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        base = total(w * x0 / n0) / weight
        cand = total(w * x1 / n1) / weight
        rd = cand - base
        p_term = total((n1 * n1 * x0 - n0 * n0 * x1 + n1 * n0 * (n0 - n1) / 2) / (big_n * big_n))
        q_term = total((x1 * (n0 - x0) + x0 * (n1 - x1)) / (2 * big_n))
        var = (rd * p_term + q_term) / (weight * weight)
        t1, t0 = total(n1), total(n0)
        p1 = (total(x1) + 1) / (t1 + 2)
        p0 = (total(x0) + 1) / (t0 + 2)
        floor = p1 * (1 - p1) / (t1 + 2) + p0 * (1 - p0) / (t0 + 2)
        se = np.sqrt(np.maximum(var, floor))
        z = rd / se
    half = _z(confidence) * se
    empty = weight <= 0
    nan = np.where(empty, np.nan, 0.0)
    return Differences(
        difference=rd + nan, low=np.maximum(rd - half, -1.0) + nan, high=np.minimum(rd + half, 1.0) + nan,
        z=z + nan, baseline=base + nan, candidate=cand + nan,
    )  # fmt: skip


def mh_risk_ratio(
    x1: np.ndarray, n1: np.ndarray, x0: np.ndarray, n0: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """Mantel-Haenszel risk ratio (candidate / baseline) with the Greenland-Robins (1985) log-scale interval.

    Returns ``(estimate, low, high)``; NaN when either arm has no events in the shared strata (the ratio
    is then 0, infinite or undefined, and the difference is the better summary).
    """
    x1, n1, x0, n0 = _common(x1, n1, x0, n0)
    big_n = n1 + n0
    r = (x1 * n0 / big_n).sum()
    s = (x0 * n1 / big_n).sum()
    if n1.size == 0 or r <= 0 or s <= 0:
        return np.nan, np.nan, np.nan
    var_log = ((n1 * n0 * (x1 + x0) / (big_n * big_n) - x1 * x0 / big_n).sum()) / (r * s)
    log_rr = np.log(r / s)
    half = _z(confidence) * np.sqrt(max(var_log, 0.0))
    return float(np.exp(log_rr)), float(np.exp(log_rr - half)), float(np.exp(log_rr + half))


def cmh_test(x1: np.ndarray, n1: np.ndarray, x0: np.ndarray, n0: np.ndarray) -> tuple[float, float]:
    """Cochran-Mantel-Haenszel test of no association, without continuity correction.

    Returns ``(z, p)``: ``z`` is the signed square root of the CMH chi-square (positive when the candidate
    has more events than expected), ``p`` the two-sided p-value. With no events (or no non-events) at all
    there is nothing to test: ``(0, 1)``.
    """
    x1, n1, x0, n0 = _common(x1, n1, x0, n0)
    big_n = n1 + n0
    m1 = x1 + x0
    keep = big_n > 1
    x1, n1, n0, big_n, m1 = x1[keep], n1[keep], n0[keep], big_n[keep], m1[keep]
    expected = n1 * m1 / big_n
    var = n1 * n0 * m1 * (big_n - m1) / (big_n * big_n * (big_n - 1))
    total_var = var.sum()
    if total_var <= 0:
        return 0.0, 1.0
    z = (x1 - expected).sum() / np.sqrt(total_var)
    return float(z), float(2 * stats.norm.sf(abs(z)))


# ---------------------------------------------------------------------------------------------------------
# Whole distribution (ranks)
# ---------------------------------------------------------------------------------------------------------


def _midranks(values: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mid-ranks of ``values`` within each group (1-based) and, per group, the tie term sum(t^3 - t)."""
    n = len(values)
    order = np.lexsort((values, group))
    v = values[order]
    g = group[order]
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    run_start = np.flatnonzero(new_run)
    run_len = np.diff(np.append(run_start, n))
    run_of = np.cumsum(new_run) - 1
    group_start = np.searchsorted(g, np.arange(n_groups), side="left")
    rank_sorted = run_start[run_of] - group_start[g] + (run_len[run_of] + 1) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = rank_sorted
    t = run_len.astype(np.float64)
    ties = np.bincount(g[run_start], weights=t**3 - t, minlength=n_groups)
    return ranks, ties


@dataclass
class Shifts:
    """Per-stratum pieces of the stratified P(slower): see :func:`stratum_shifts`."""

    theta: np.ndarray  # P(candidate slower) within each stratum (0 where one arm is missing)
    variance: np.ndarray  # DeLong variance of theta
    weight: np.ndarray  # van Elteren weight n1 n0 / (N + 1); 0 for strata with one arm
    statistic: float  # van Elteren z over all strata
    p_value: float


def stratum_shifts(values: np.ndarray, candidate: np.ndarray, strata: np.ndarray, n_strata: int) -> Shifts:
    """Per stratum, the probability that a candidate execution is slower, its variance and weight.

    See :func:`rank_comparison` for the method; this is its per-stratum part, so that strata can be pooled
    overall and within groups (each caller over its time buckets) from one ranking.
    """
    cand = candidate.astype(bool)
    n1 = np.bincount(strata[cand], minlength=n_strata).astype(np.float64)
    n0 = np.bincount(strata[~cand], minlength=n_strata).astype(np.float64)
    big_n = n1 + n0
    both = (n1 > 0) & (n0 > 0)
    if not both.any():
        zero = np.zeros(n_strata)
        return Shifts(zero, zero, zero, np.nan, np.nan)
    r_all, ties = _midranks(values, strata, n_strata)
    r_arm, _ = _midranks(values, strata * 2 + cand, 2 * n_strata)
    u = np.bincount(strata[cand], weights=r_all[cand], minlength=n_strata) - n1 * (n1 + 1) / 2
    weight = np.where(both, n1 * n0 / (big_n + 1), 0.0)

    # van Elteren: sum over strata of (U - E[U]) / (N + 1), tie-corrected null variance.
    with np.errstate(invalid="ignore", divide="ignore"):
        var_u = n1 * n0 / 12.0 * ((big_n + 1) - ties / (big_n * (big_n - 1)))
    var_u = np.where(both & (big_n > 1), var_u, 0.0)
    numer = np.where(both, (u - n1 * n0 / 2) / (big_n + 1), 0.0).sum()
    denom = np.sqrt((var_u / (big_n + 1) ** 2).sum())
    z = numer / denom if denom > 0 else 0.0
    p = 2 * stats.norm.sf(abs(z)) if denom > 0 else 1.0

    # DeLong: placements of each candidate among the baseline of its stratum and vice versa.
    safe0 = np.maximum(n0, 1)
    safe1 = np.maximum(n1, 1)
    place = np.where(cand, (r_all - r_arm) / safe0[strata], 1 - (r_all - r_arm) / safe1[strata])
    theta_k = np.where(both, u / np.maximum(n1 * n0, 1), 0.0)
    dev2 = (place - theta_k[strata]) ** 2
    ss1 = np.bincount(strata[cand], weights=dev2[cand], minlength=n_strata)
    ss0 = np.bincount(strata[~cand], weights=dev2[~cand], minlength=n_strata)
    var_k = ss1 / np.maximum(n1 - 1, 1) / safe1 + ss0 / np.maximum(n0 - 1, 1) / safe0
    return Shifts(theta_k, var_k, weight, float(z), float(p))


def pool_shifts(
    shifts: Shifts, group: np.ndarray, n_groups: int, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pool per-stratum P(slower) within groups of strata (van Elteren weights, DeLong variance).

    Returns
    -------
    tuple of numpy.ndarray
        ``(theta, low, high, z)`` per group: the pooled probability, its interval (clipped to [0, 1]) and
        ``(theta - 0.5) / se``; NaN for groups without a stratum holding both arms.
    """
    total = np.bincount(group, weights=shifts.weight, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.bincount(group, weights=shifts.weight * shifts.theta, minlength=n_groups) / total
        se = np.sqrt(np.bincount(group, weights=shifts.weight**2 * shifts.variance, minlength=n_groups)) / total
        z = (theta - 0.5) / se
    half = _z(confidence) * se
    nan = np.where(total > 0, 0.0, np.nan)
    return theta + nan, np.maximum(theta - half, 0.0) + nan, np.minimum(theta + half, 1.0) + nan, z + nan


def rank_comparison(
    values: np.ndarray, candidate: np.ndarray, strata: np.ndarray, n_strata: int, confidence: float
) -> tuple[Effect, np.ndarray]:
    """Stratified probability that a candidate execution is slower, with the van Elteren test.

    Parameters
    ----------
    values : numpy.ndarray
        Durations of both arms (no NaN).
    candidate : numpy.ndarray
        bool, True for candidate rows.
    strata : numpy.ndarray
        Stratum code per row in ``[0, n_strata)``.
    n_strata : int
    confidence : float

    Returns
    -------
    tuple
        An :class:`Effect` whose ``difference`` is ``theta - 0.5`` (``theta``: the probability that a
        candidate execution takes longer than a baseline execution of the same stratum, ties counting half)
        with its interval, ``statistic`` the van Elteren z and ``p_value`` its two-sided p-value; and the
        per-stratum weights (0 for strata with one arm).

    Notes
    -----
    Per stratum, ``theta_k = U_k / (n1 n0)`` (the Mann-Whitney U of the candidate). Strata are pooled with
    van Elteren's weights ``n1 n0 / (N + 1)``, which makes the pooled estimate and the van Elteren test
    statistic agree in sign and emphasis. The interval uses DeLong's variance of each ``theta_k``
    (placement values), which is valid away from the null, unlike the null variance of the test. With one
    stratum the test is ``scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=False)``.
    """
    shifts = stratum_shifts(values, candidate, strata, n_strata)
    return shift_effect(shifts, confidence), shifts.weight


def shift_effect(shifts: Shifts, confidence: float) -> Effect:
    """All strata pooled: the :class:`Effect` of :func:`rank_comparison` (P(slower) - 0.5, van Elteren test)."""
    if not (shifts.weight > 0).any():
        return Effect(test="van Elteren")
    theta, low, high, _ = pool_shifts(shifts, np.zeros(len(shifts.weight), dtype=np.intp), 1, confidence)
    return Effect(
        difference=float(theta[0]) - 0.5, difference_low=float(low[0]) - 0.5, difference_high=float(high[0]) - 0.5,
        statistic=shifts.statistic, p_value=shifts.p_value, test="van Elteren",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Percentiles (direct standardisation + stratified Poisson bootstrap)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Cells:
    """One arm collapsed to distinct (stratum, duration) cells, sorted by duration."""

    values: np.ndarray  # ascending
    strata: np.ndarray
    counts: np.ndarray  # executions per cell


def _cells(values: np.ndarray, strata: np.ndarray) -> _Cells:
    order = np.lexsort((strata, values))
    v, s = values[order], strata[order]
    new = np.ones(len(v), dtype=bool)
    new[1:] = (v[1:] != v[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(v))).astype(np.float64)
    return _Cells(v[starts], s[starts], counts)


def _quantiles_from_draws(cells: _Cells, draws: np.ndarray, mix: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Weighted inverted-CDF quantiles, one row of ``draws`` (resampled cell counts) at a time, vectorised.

    Each resample's counts are rescaled within every stratum so the stratum carries ``mix[k]`` of the
    weight: the arm is standardised to the target caller mix in every resample.
    """
    m, c = draws.shape
    n_strata = len(mix)
    flat_strata = (np.arange(m)[:, None] * n_strata + cells.strata[None, :]).ravel()
    totals = np.bincount(flat_strata, weights=draws.ravel(), minlength=m * n_strata).reshape(m, n_strata)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(totals > 0, mix[None, :] / totals, 0.0)
    weights = draws * scale[np.arange(m)[:, None], cells.strata[None, :]]
    cum = np.cumsum(weights, axis=1)
    row_total = cum[:, -1]
    # Rows live in [0, 1]; offsetting row r by 2r makes the whole array ascending, so one searchsorted
    # finds the first cell whose cumulative weight reaches q * total in every row at once.
    offset = 2.0 * np.arange(m)
    target = offset[:, None] + qs[None, :] * row_total[:, None] - 1e-12
    idx = np.searchsorted((cum + offset[:, None]).ravel(), target.ravel(), side="left").reshape(m, len(qs))
    idx = np.clip(idx - (np.arange(m) * c)[:, None], 0, c - 1)
    return cells.values[idx]


# Poisson(1) CDF up to 20: P(X > 20) is about 1e-19, far below anything a few million draws can reach.
_POISSON1_CDF = stats.poisson.cdf(np.arange(21), 1.0)


def _poisson_draws(counts: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` rows of Poisson(counts) draws; cells of one execution (most of them) by inverting the CDF,
    which is about twice as fast as ``Generator.poisson`` with an array of rates."""
    single = counts == 1
    if single.all():
        return np.searchsorted(_POISSON1_CDF, rng.random((m, len(counts)))).astype(np.float64)
    draws = np.empty((m, len(counts)))
    draws[:, single] = np.searchsorted(_POISSON1_CDF, rng.random((m, int(single.sum()))))
    draws[:, ~single] = rng.poisson(counts[~single], size=(m, int((~single).sum())))
    return draws


def weighted_quantiles(values: np.ndarray, strata: np.ndarray, mix: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Quantiles of one arm standardised to stratum weights ``mix`` (inverted CDF, like numpy's weighted one).

    Equals ``numpy.quantile(values, qs, method="inverted_cdf", weights=mix[strata] / n[strata])`` where
    ``n`` counts the arm's executions per stratum.
    """
    cells = _cells(values, strata)
    return _quantiles_from_draws(cells, cells.counts[None, :], mix, qs)[0]


def quantile_bootstrap(
    base: tuple[np.ndarray, np.ndarray],
    cand: tuple[np.ndarray, np.ndarray],
    mix: np.ndarray,
    qs: np.ndarray,
    n_resamples: int,
    rng: np.random.Generator,
    *,
    max_cells: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised quantiles of both arms and their stratified Poisson-bootstrap replicates.

    Parameters
    ----------
    base, cand : tuple of numpy.ndarray
        ``(durations, stratum codes)`` of each arm, no NaN.
    mix : numpy.ndarray
        Target weight of every stratum (sums to 1; 0 for strata left out).
    qs : numpy.ndarray
        Probabilities.
    n_resamples : int
    rng : numpy.random.Generator
    max_cells : int
        Upper bound on resamples x cells held in memory at once.

    Returns
    -------
    tuple of numpy.ndarray
        ``(base_estimate, cand_estimate, base_replicates, cand_replicates)``: shapes (len(qs),) and
        (n_resamples, len(qs)).

    Notes
    -----
    Poisson bootstrap: every execution is drawn Poisson(1) times, so a cell of ``c`` identical executions
    is drawn Poisson(c) times and the work scales with distinct durations, not executions. Rescaling each
    resample's strata to ``mix`` makes it a stratified bootstrap (stratum weights fixed, as in the
    estimate). The two arms are resampled independently.
    """
    out = []
    for values, strata in (base, cand):
        cells = _cells(values, strata)
        estimate = _quantiles_from_draws(cells, cells.counts[None, :], mix, qs)[0]
        reps = np.empty((n_resamples, len(qs)))
        chunk = max(1, max_cells // max(len(cells.counts), 1))
        for lo in range(0, n_resamples, chunk):  # chunks of resamples bound memory; not a loop over groups
            m = min(chunk, n_resamples - lo)
            draws = _poisson_draws(cells.counts, m, rng)
            reps[lo : lo + m] = _quantiles_from_draws(cells, draws, mix, qs)
        out.append((estimate, reps))
    (b_est, b_reps), (c_est, c_reps) = out
    return b_est, c_est, b_reps, c_reps


def bootstrap_effect(b: float, c: float, b_rep: np.ndarray, c_rep: np.ndarray, alpha: float) -> Effect:
    """Ratio and difference of standardised quantiles with percentile-bootstrap intervals.

    The p-value inverts the same percentile interval: twice the smaller share of replicates on either
    side of "no change" (replicates exactly at no change count on both sides), with the usual +1
    Monte Carlo correction, so it can never contradict the interval. Durations are often rounded to whole
    seconds, which makes extreme percentiles jump between a few values; a normal (Wald) p-value from the
    bootstrap standard error then rejects far too often, this one does not. ``statistic`` is still the
    log ratio over its bootstrap standard error, for reference.
    """
    tails = [alpha / 2, 1 - alpha / 2]
    diff_rep = c_rep - b_rep
    d_low, d_high = np.quantile(diff_rep, tails)
    if not (b > 0 and c > 0):
        return Effect(c - b, d_low, d_high, test="bootstrap")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_rep = np.log(c_rep) - np.log(b_rep)
    log_rep = log_rep[np.isfinite(log_rep)]
    r_low, r_high = np.exp(np.quantile(log_rep, tails))
    log_ratio = np.log(c / b)
    below, above = int((log_rep <= 0).sum()), int((log_rep >= 0).sum())
    p = min(1.0, 2 * (1 + min(below, above)) / (len(log_rep) + 1))
    se = float(np.std(log_rep, ddof=1)) if len(log_rep) > 1 else 0.0
    z = log_ratio / se if se > 0 else (0.0 if log_ratio == 0 else np.sign(log_ratio) * np.inf)
    return Effect(c - b, d_low, d_high, float(np.exp(log_ratio)), r_low, r_high, float(z), p, "bootstrap")
