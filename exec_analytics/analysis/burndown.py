"""Error-budget burn-down: how a period's budget was spent over time.

The budget of ``[start, end)`` is ``(1 - slo)`` of the period's executions, as :func:`~exec_analytics.
analysis.error_budget` allows for the same window; the burn-down accumulates the failures bucket by bucket
against it, so its last row's ``remaining`` equals ``error_budget``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..summary import Summary
from ..timeutil import to_utc
from ._from_summary import check_boundaries, check_buckets
from .budget import check_slo
from .rates import failure_rate

__all__ = ["budget_burndown", "burndown_from_rates"]


def budget_burndown(
    df: pd.DataFrame | Summary,
    *,
    slo: float = 0.99,
    start: object,
    end: object,
    freq: str | pd.Timedelta = "1h",
    success_statuses: Sequence[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """The error budget of ``[start, end)`` spent over time: cumulative failures against the period's budget.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table of one resource (or of the whole budget), or a
        :class:`~exec_analytics.summary.Summary` of it (exact: ``start``, ``end`` and ``freq`` must fall on its
        bucket boundaries).
    slo : float
        Target share of succeeded executions.
    start, end : str, datetime or Timestamp
        The period, half-open, timezone-aware.
    freq : str or Timedelta
        Step of the burn-down (fixed buckets from :func:`~exec_analytics.analysis.failure_rate`).
    success_statuses : str or sequence of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per bucket with executions, in time order. Columns: ``period_start``, ``period_end``
        (Timestamp, UTC; the first row starts at ``start``), ``executions``, ``bad`` (int64, in the bucket),
        ``cumulative_bad`` (int64), ``allowed_bad`` (float64, ``(1 - slo)`` x the period's executions),
        ``consumed`` (float64, ``cumulative_bad / allowed_bad``) and ``remaining`` (float64, ``1 - consumed``).
    """
    target = check_slo(slo)
    s, e = to_utc(start, "start"), to_utc(end, "end")
    if isinstance(df, Summary):
        check_buckets(df, freq, "budget_burndown")
        check_boundaries(df, {"start": s, "end": e}, "budget_burndown")
        # Buckets of freq within [start, end) hold exactly the period's executions when its bounds are boundaries.
        rates = failure_rate(df, freq=freq, success_statuses=success_statuses)
        inside = ((rates["period_start"] >= s) & (rates["period_start"] < e)).to_numpy(dtype=bool)
        rates = rates.loc[inside]
    else:
        t = df["start_time"]
        rows = df.loc[((t >= s) & (t < e)).to_numpy()]
        rates = failure_rate(rows, freq=freq, success_statuses=success_statuses)
    return burndown_from_rates(rates, slo=target, start=s, end=e, freq=freq)


def burndown_from_rates(
    rates: pd.DataFrame, *, slo: float, start: object, end: object, freq: str | pd.Timedelta
) -> pd.DataFrame:
    """:func:`budget_burndown` from :func:`~exec_analytics.analysis.failure_rate` by ``freq`` over ``[start, end)``
    (e.g. one resource's rows of a fleet-wide ``failure_rate(..., by="resource_rid", freq=freq)``).

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`budget_burndown`.
    """
    target, s, e = check_slo(slo), to_utc(start, "start"), to_utc(end, "end")
    rates = rates.sort_values("period_start").reset_index(drop=True)
    step = pd.Timedelta(freq)
    allowed = (1 - target) * float(rates["executions"].sum())
    begins, ends = rates["period_start"], rates["period_start"] + step
    out: pd.DataFrame = pd.DataFrame({
        "period_start": begins.where(begins >= s, s),  # the period's bounds cut its first and last buckets
        "period_end": ends.where(ends <= e, e),
        "executions": rates["executions"].astype("int64"),
        "bad": rates["failures"].astype("int64"),
    })  # fmt: skip
    out["cumulative_bad"] = out["bad"].cumsum().astype("int64")
    out["allowed_bad"] = allowed
    with np.errstate(invalid="ignore", divide="ignore"):
        out["consumed"] = out["cumulative_bad"] / allowed if allowed > 0 else np.nan
    out["remaining"] = 1.0 - out["consumed"]
    return out
