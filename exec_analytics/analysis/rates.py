"""Failure rates and failure reasons, with counts beside every rate and exact (Clopper-Pearson)
intervals beside every estimate.

A failure is a status that is not a success (``status != "SUCCEEDED"`` by default, configurable through
``success_statuses``), exactly as :func:`exec_analytics.schema.failed` defines it: unknown statuses count as
failures, and a ``failure_reason`` on its own never makes one (the API reports reasons on succeeded
executions too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..summary import Summary
from ._from_summary import count, weighted_rows
from ._groups import (
    as_list,
    check_confidence,
    failed_mask,
    group_rows,
    require_columns,
)
from ._intervals import rate_interval

__all__ = ["failure_rate", "failure_reasons"]


def failure_rate(
    df: pd.DataFrame | Summary,
    *,
    by: str | Sequence[str] | None = None,
    freq: str | pd.Timedelta | None = None,
    confidence: float = 0.95,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """Executions, failures and the failure rate with a Clopper-Pearson interval, per group.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table (needs ``status``, and ``start_time`` with ``freq``), or a
        :class:`~exec_analytics.summary.Summary` of it (exact counts; ``freq`` a whole number of its buckets).
    by : str or list of str, optional
        Grouping columns, e.g. ``"resource_version"`` or ``["resource_rid", "caller_rid"]``; ``"caller_kind"``
        is derived from ``caller_rid``. Missing values (e.g. executions without a caller) form their own
        group. Only observed combinations appear.
    freq : str or Timedelta, optional
        Also group by fixed-length buckets of ``start_time`` aligned to the Unix epoch (``"1D"``: UTC days,
        ``"1h"``, ``"15min"``). Calendar frequencies such as ``"W"`` or ``"MS"`` are not accepted.
    confidence : float
        Level of the two-sided Clopper-Pearson interval (see :func:`rate_interval`): its coverage never falls
        below this level, even for rare failures (n * p < 1), where Wilson's does; it stays inside [0, 1] and
        keeps a real upper bound at zero failures (0 in 50 gives [0, 7.1%] at 95%).
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per group, ordered by the group keys. Columns: the ``by`` columns (same dtypes as ``df``),
        ``period_start`` (datetime64[ms, UTC], bucket start; with ``freq``), ``executions`` (int64),
        ``failures`` (int64), ``rate`` (float64, failures / executions), ``rate_low``, ``rate_high``
        (float64, the interval). Without ``by`` and ``freq``: a single row, also for an empty frame (then
        with NaN rate and interval).

    Raises
    ------
    ValueError
        Unknown column, bad ``freq`` or ``confidence``.
    """
    # A summary is a frame of distinct executions weighted by their count: the same code below counts both.
    df, weights = weighted_rows(df, by, freq, "failure_rate") if isinstance(df, Summary) else (df, None)
    require_columns(df, ["status", *_time(freq)], "failure_rate")
    confidence = check_confidence(confidence)
    groups = group_rows(df, by, freq, func="failure_rate")
    bad = failed_mask(df, success_statuses)
    n = count(groups.codes, groups.n_groups, weights)
    x = count(groups.codes[bad], groups.n_groups, None if weights is None else weights[bad])
    return _rate_frame(groups.keys, n, x, confidence)


def _rate_frame(keys: pd.DataFrame, n: np.ndarray, x: np.ndarray, confidence: float) -> pd.DataFrame:
    low, high = rate_interval(x, n, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, x / np.maximum(n, 1), np.nan)
    out = keys.copy()
    out["executions"] = n
    out["failures"] = x
    out["rate"] = rate
    out["rate_low"] = low
    out["rate_high"] = high
    return out


def _time(freq: object) -> list[str]:
    return [] if freq is None else ["start_time"]


def failure_reasons(
    df: pd.DataFrame | Summary,
    *,
    by: str | Sequence[str] | None = None,
    confidence: float = 0.95,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """How the failures of each group split between failure reasons, and which reasons are new in a version.

    Only failed executions are counted (see the module docstring); a failed execution without a reason
    counts under a missing ``failure_reason``, so shares add up to 1 within each group.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table (needs ``status`` and ``failure_reason``), or a summary of it (exact counts).
    by : str or list of str, optional
        Grouping columns, as in :func:`failure_rate`. When it includes ``resource_version``, each reason is
        also marked ``new`` in the first version (in version order) where it occurs, unless that is the first
        version seen in its group (there is nothing to be new against).
    confidence : float
        Level of the Clopper-Pearson intervals.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per group and reason that occurred, ordered by group, then by ``failures`` descending.
        Columns: the ``by`` columns, ``failure_reason`` (categorical, NA for failures without a reason),
        ``failures`` (int64, failures with this reason), ``group_failures`` (int64, all failures of the
        group), ``group_executions`` (int64), ``share`` (float64, failures / group_failures) with
        ``share_low``, ``share_high`` (Clopper-Pearson), ``rate`` (float64, failures / group_executions: how often an
        execution fails for this reason) with ``rate_low``, ``rate_high`` (Clopper-Pearson); with ``resource_version``
        in ``by`` also ``first_version`` (the version where the reason first occurred in the group) and
        ``new`` (bool).
    """
    names = as_list(by)
    if "failure_reason" in names:
        raise ValueError("failure_reasons: by must not include failure_reason; it is always a key of the result")
    df, weights = (
        weighted_rows(df, [*names, "failure_reason"], None, "failure_reasons")
        if isinstance(df, Summary)
        else (df, None)
    )
    require_columns(df, ["status", "failure_reason"], "failure_reasons")
    confidence = check_confidence(confidence)
    bad = failed_mask(df, success_statuses)
    outer = group_rows(df, names, None, func="failure_reasons")
    bad_weights = None if weights is None else weights[bad]
    executions = count(outer.codes, outer.n_groups, weights)
    fails = count(outer.codes[bad], outer.n_groups, bad_weights)

    inner = group_rows(df.loc[bad], [*names, "failure_reason"], None, func="failure_reasons")
    counts = count(inner.codes, inner.n_groups, bad_weights)
    out = inner.keys.copy()
    # Each (group, reason) row's outer group: the codes of the failed rows under both groupings.
    parent = np.zeros(inner.n_groups, dtype=np.intp)
    parent[inner.codes] = outer.codes[bad]
    out["failures"] = counts
    out["group_failures"] = fails[parent]
    out["group_executions"] = executions[parent]
    for name, denom in (("share", fails[parent]), ("rate", executions[parent])):
        low, high = rate_interval(counts, denom, confidence)
        out[name] = counts / np.maximum(denom, 1)
        out[f"{name}_low"] = low
        out[f"{name}_high"] = high
    out["_group"] = parent
    if "resource_version" in names and len(out):
        out = _mark_new(out, names)
    out = out.sort_values(["_group", "failures"], ascending=[True, False], kind="stable")
    return out.drop(columns="_group").reset_index(drop=True)


def _mark_new(out: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """First version of each reason within the other ``by`` columns, and whether this row is that version."""
    others = [n for n in names if n != "resource_version"]
    version = out["resource_version"]
    order = version.cat.codes.to_numpy() if isinstance(version.dtype, pd.CategoricalDtype) else None
    if order is None:
        order = pd.factorize(version, sort=True)[0]
    frame = out.assign(_order=order)
    keys = [*others, "failure_reason"]
    # groupby over the (few) result rows, not the executions: one row per (group, reason).
    first = frame.groupby(keys, dropna=False, observed=True, sort=False)["_order"].transform("min")
    first_in_group = (
        frame.groupby(others, dropna=False, observed=True, sort=False)["_order"].transform("min")
        if others
        else pd.Series(order.min(), index=frame.index)
    )
    out["first_version"] = version.array.take(_argmin_positions(frame, keys))
    out["new"] = (frame["_order"] == first).to_numpy() & (first > first_in_group).to_numpy()
    return out


def _argmin_positions(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Row position, per row, of the row with the smallest ``_order`` among rows sharing ``keys``."""
    pos = pd.Series(np.arange(len(frame)), index=frame.index)
    ranked = frame.assign(_pos=pos).sort_values("_order", kind="stable")
    first = ranked.groupby(keys, dropna=False, observed=True, sort=False)["_pos"].transform("first")
    return first.reindex(frame.index).to_numpy()
