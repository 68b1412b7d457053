"""Duration percentiles per group, with distribution-free confidence intervals, and the weekly summary.

Point estimates use numpy's default ('linear') quantile definition, the same as ``numpy.quantile``,
``pandas.Series.quantile`` and DuckDB's ``quantile_cont``, so figures agree across tools. Intervals are
order statistics chosen with the binomial distribution (no assumption about the shape of the durations);
where there are too few executions for one, the interval is NA rather than a made-up number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..summary import Summary
from ._from_summary import summary_percentiles
from ._groups import (
    check_confidence,
    check_quantiles,
    duration_mask,
    failed_mask,
    group_rows,
    percentile_names,
    require_columns,
    sort_within_groups,
)
from ._intervals import order_statistic_ranks, rate_interval
from .rates import failure_rate

__all__ = ["duration_percentiles", "summarize"]

DEFAULT_Q = (0.5, 0.9, 0.95, 0.99)


def duration_percentiles(
    df: pd.DataFrame | Summary,
    *,
    by: str | Sequence[str] | None = None,
    freq: str | pd.Timedelta | None = None,
    q: float | Sequence[float] = DEFAULT_Q,
    confidence: float | None = None,
    outcome: str = "all",
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """Counts and duration percentiles per group, optionally with distribution-free intervals.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table (needs ``duration_s``; ``status`` unless ``outcome="all"``; ``start_time`` with
        ``freq``), or a :class:`~exec_analytics.summary.Summary` of it: counts exact, percentiles from merged
        KLL sketches (exact while a group's sketch holds every value; otherwise within the sketch's rank error,
        and each interval widened by that error so it stays conservative).
    by : str or list of str, optional
        Grouping columns, as in :func:`failure_rate` (``caller_kind`` is derived; NA is its own group).
    freq : str or Timedelta, optional
        Also group by fixed-length, epoch-aligned buckets of ``start_time`` (``"1D"``: UTC days).
    q : float or sequence of float
        Probabilities in [0, 1]. Column names follow them: 0.5 -> ``p50``, 0.999 -> ``p99.9``.
    confidence : float, optional
        With a level such as 0.95, add an equal-tailed order-statistic interval for every percentile
        (``scipy.stats.quantile_test``'s interval). It exists only with enough executions: at 95%, 6 for
        the median, 36 for p90, 72 for p95 and 368 for p99; below that the bounds are NA.
    outcome : {"all", "succeeded", "failed"}
        Which executions' durations to use. ``"all"`` matches what the Foundry UI shows; failures have
        their own shape (quick rejections, time-limit kills), so ``"succeeded"`` isolates the latency of
        work that completed.
    success_statuses : str or iterable of str
        Statuses that count as success (for ``outcome``).

    Returns
    -------
    pandas.DataFrame
        One row per group. Columns: the ``by`` columns, ``period_start`` (with ``freq``), ``executions``
        (int64, all executions of the group), ``durations`` (int64, those whose duration is known and matches
        ``outcome``: the n behind the percentiles), one float64 column per probability (``p50``, ``p90``,
        ...; NaN when ``durations`` is 0) and, with ``confidence``, ``p50_low``, ``p50_high``, ... (float64,
        NaN where too few executions).

    Notes
    -----
    NaN durations (an unknown unit) are left out of the percentiles but still counted in ``executions``.
    Computed without a Python loop over groups: one sort of packed (group, duration) keys, then gathers.
    """
    qs = check_quantiles(q)
    if confidence is not None:
        confidence = check_confidence(confidence)
    if isinstance(df, Summary):
        return summary_percentiles(df, by=by, freq=freq, qs=qs, confidence=confidence, outcome=outcome,
                                   success_statuses=success_statuses, names=percentile_names(qs))  # fmt: skip
    require_columns(df, ["duration_s", *(["status"] if outcome != "all" else []), *_time(freq)],
                    "duration_percentiles")  # fmt: skip
    groups = group_rows(df, by, freq, func="duration_percentiles")
    bad = failed_mask(df, success_statuses) if outcome != "all" else None
    out = groups.keys.copy()
    out["executions"] = np.bincount(groups.codes, minlength=groups.n_groups).astype(np.int64)
    _add_percentiles(out, df, groups.codes, groups.n_groups, duration_mask(df, bad, outcome), qs, confidence)
    return out


def _add_percentiles(
    out: pd.DataFrame,
    df: pd.DataFrame,
    codes: np.ndarray,
    n_groups: int,
    mask: np.ndarray,
    qs: np.ndarray,
    confidence: float | None,
    counts: np.ndarray | None = None,
) -> None:
    values = df["duration_s"].to_numpy(dtype="float64")
    if not mask.all():
        values, codes, counts = values[mask], codes[mask], None
    sorted_groups = sort_within_groups(values, codes, n_groups, counts)
    out["durations"] = sorted_groups.counts
    names = percentile_names(qs)
    est = sorted_groups.quantiles(qs)
    for j, name in enumerate(names):
        out[name] = est[:, j]
    if confidence is not None:
        low_rank, high_rank = order_statistic_ranks(sorted_groups.counts, qs, confidence)
        low = sorted_groups.order_statistic(low_rank)
        high = sorted_groups.order_statistic(high_rank)
        for j, name in enumerate(names):
            out[f"{name}_low"] = low[:, j]
            out[f"{name}_high"] = high[:, j]


def _time(freq: object) -> list[str]:
    return [] if freq is None else ["start_time"]


def summarize(
    df: pd.DataFrame | Summary,
    *,
    by: str | Sequence[str] | None = None,
    freq: str | pd.Timedelta | None = None,
    q: float | Sequence[float] = (0.5, 0.9, 0.99),
    confidence: float = 0.95,
    percentile_confidence: float | None = None,
    outcome: str = "all",
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """The weekly-report aggregate set in one pass: failure rate and duration percentiles per group.

    Equivalent to :func:`failure_rate` and :func:`duration_percentiles` with the same ``by`` and ``freq``
    merged on the group keys, but the group codes and the failure mask are built once.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table, or a :class:`~exec_analytics.summary.Summary` of it: counts and rates exact,
        percentiles as :func:`duration_percentiles` gives them from a summary (``freq`` a whole number of its
        buckets).
    by, freq
        Grouping, as in :func:`failure_rate`.
    q : float or sequence of float
        Percentile probabilities.
    confidence : float
        Level of the Clopper-Pearson interval of the failure rate.
    percentile_confidence : float, optional
        Level of the order-statistic intervals of the percentiles (none by default: they cost a second
        gather and the report does not always show them).
    outcome : {"all", "succeeded", "failed"}
        Which executions' durations enter the percentiles.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, ``period_start`` (with ``freq``), ``executions``,
        ``failures`` (int64), ``rate``, ``rate_low``, ``rate_high`` (float64), ``durations`` (int64) and one
        column per percentile (``p50``, ``p90``, ``p99`` by default), plus ``<p>_low``/``<p>_high`` with
        ``percentile_confidence``.
    """
    if isinstance(df, Summary):
        return _summarize_summary(df, by=by, freq=freq, q=q, confidence=confidence,
                                  percentile_confidence=percentile_confidence, outcome=outcome,
                                  success_statuses=success_statuses)  # fmt: skip
    require_columns(df, ["status", "duration_s", *_time(freq)], "summarize")
    qs = check_quantiles(q)
    confidence = check_confidence(confidence)
    if percentile_confidence is not None:
        percentile_confidence = check_confidence(percentile_confidence, "percentile_confidence")
    groups = group_rows(df, by, freq, func="summarize")
    bad = failed_mask(df, success_statuses)
    n = np.bincount(groups.codes, minlength=groups.n_groups).astype(np.int64)
    x = np.bincount(groups.codes[bad], minlength=groups.n_groups).astype(np.int64)
    low, high = rate_interval(x, n, confidence)
    out = groups.keys.copy()
    out["executions"] = n
    out["failures"] = x
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rate"] = np.where(n > 0, x / np.maximum(n, 1), np.nan)
    out["rate_low"] = low
    out["rate_high"] = high
    mask = duration_mask(df, bad, outcome)
    _add_percentiles(out, df, groups.codes, groups.n_groups, mask, qs, percentile_confidence, n)
    return out


def _summarize_summary(
    summary: Summary,
    *,
    by: str | Sequence[str] | None,
    freq: str | pd.Timedelta | None,
    q: float | Sequence[float],
    confidence: float,
    percentile_confidence: float | None,
    outcome: str,
    success_statuses: Iterable[str] | str,
) -> pd.DataFrame:
    """:func:`summarize` of a summary: the failure rate's counts beside the sketches' percentiles, per group."""
    rates = failure_rate(summary, by=by, freq=freq, confidence=confidence, success_statuses=success_statuses)
    pct = duration_percentiles(summary, by=by, freq=freq, q=q, confidence=percentile_confidence, outcome=outcome,
                               success_statuses=success_statuses)  # fmt: skip
    keys = [c for c in rates.columns if c not in ("executions", "failures", "rate", "rate_low", "rate_high")]
    # Both group the same rows by the same keys, in key order: the groups line up (checked, not assumed).
    if len(rates) != len(pct) or not rates[keys].reset_index(drop=True).equals(pct[keys].reset_index(drop=True)):
        pct = rates[keys].merge(pct, on=keys, how="left", sort=False)
    out: pd.DataFrame = rates.reset_index(drop=True)
    for c in pct.columns:
        if c not in keys and c != "executions":
            out[c] = pct[c].to_numpy()
    return out
