"""Error budget and multiwindow burn-rate alerts (Google SRE workbook, "Alerting on SLOs").

An execution is *good* when it succeeded and, with a ``latency_threshold``, finished within it. The SLI is the
share of good executions over the SLO window; the budget is ``1 - slo`` of them. Burn rate over a window is
the window's bad share divided by the budget: 1 spends the budget exactly over the SLO window. The workbook's
recommended alerts fire when a long *and* a short window both burn faster than a factor: 14.4 over 1h and 5m,
6 over 6h and 30m (pages), 1 over 3d and 6h (ticket).

Executions are listed only once completed, so the last minutes hold fewer of the slow ones; ``now`` should
lag the data's end by the settle time of the data (the cache's settle lag) for the short windows to be fair.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..summary import Summary
from ..timeutil import epoch_ms, from_epoch_ms, to_utc
from ._from_summary import check_windows, count, weighted_rows
from ._groups import check_confidence, failed_mask, freq_ms, group_rows, require_columns, start_ms
from ._intervals import rate_interval

__all__ = ["BURN_ALERTS", "check_slo", "error_budget"]

#: (name, long window, short window, burn-rate factor), from the SRE workbook for a 30-day SLO.
BURN_ALERTS: tuple[tuple[str, str, str, float], ...] = (
    ("page_1h_5m", "1h", "5m", 14.4),
    ("page_6h_30m", "6h", "30m", 6.0),
    ("ticket_3d_6h", "3d", "6h", 1.0),
)
# Column label -> window length (labels as the workbook writes them).
_BURN_WINDOWS = {"5m": "5min", "30m": "30min", "1h": "1h", "6h": "6h", "3d": "3D"}


def check_slo(slo: object, name: str = "slo") -> float:
    """The one check of an SLO target: a number strictly between 0 and 1 (0.99: 1% of executions may be bad).

    Parameters
    ----------
    slo : object
        The target share of good executions.
    name : str
        How the caller names it in the message (``"slo"``, or ``"--slo"`` on the command line).

    Returns
    -------
    float
        ``slo`` as a float.

    Raises
    ------
    ValueError
        For anything else (booleans, percentages such as 99, 0 or 1, NaN, non-numbers).
    """
    if isinstance(slo, bool) or not isinstance(slo, (int, float, np.integer, np.floating)) or not 0 < slo < 1:
        raise ValueError(f"{name} must be a fraction strictly between 0 and 1, e.g. 0.99; got {slo!r}")
    return float(slo)


def _now(df: pd.DataFrame, now: object, t_ms: np.ndarray) -> int | None:
    if now is not None:
        return epoch_ms(to_utc(now, "now"))
    end = df.attrs.get("end") if isinstance(df.attrs, dict) else None
    if end is not None:
        return epoch_ms(to_utc(end, "df.attrs['end']"))
    return int(t_ms.max()) + 1 if len(t_ms) else None


def error_budget(
    df: pd.DataFrame | Summary,
    *,
    slo: float = 0.99,
    window: str | pd.Timedelta = "28D",
    latency_threshold: float | None = None,
    now: object = None,
    by: str | Sequence[str] | None = None,
    min_executions: int = 20,
    confidence: float = 0.95,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """SLI, error budget consumed and remaining, and multiwindow burn rates with their alerts.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table (``start_time``, ``status``; ``duration_s`` with ``latency_threshold``), or a
        summary of it: exact counts, when ``now`` and every window fall on its bucket boundaries (burn-rate
        alerts need buckets of 5 minutes or a divisor); ``now`` defaults to the end of its last bucket. A
        latency SLI needs rows (a sketch only estimates how many executions were slower).
    slo : float
        Target share of good executions, strictly between 0 and 1 (0.99: 1% may be bad).
    window : str or Timedelta
        The SLO window ending at ``now`` (``"28D"``, ``"30D"``).
    latency_threshold : float, optional
        Seconds; a succeeded execution that took longer (or whose duration is unknown) is bad too.
    now : str, datetime or Timestamp, optional
        End of every window (exclusive). Default: ``df.attrs["end"]`` when the loader set it, else just
        after the latest ``start_time``.
    by : str or list of str, optional
        One budget per group, e.g. ``"resource_rid"``.
    min_executions : int
        Minimum-volume guard: a burn-rate window with fewer executions has NaN burn and cannot fire an
        alert (2 failures in 3 executions at 3 a.m. are not a 60x burn).
    confidence : float
        Level of the Clopper-Pearson interval of the SLI.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per group. Columns: the ``by`` columns; ``window_start``, ``window_end`` (Timestamp, UTC);
        ``executions``, ``bad`` (int64, in the SLO window); ``sli``, ``sli_low``, ``sli_high`` (float64, good
        share with Clopper-Pearson interval); ``slo``, ``budget`` (float64, ``1 - slo``); ``allowed_bad`` (float64,
        ``budget * executions``); ``consumed`` (float64, ``bad / allowed_bad``: 1 = budget spent);
        ``remaining`` (float64, ``1 - consumed``, negative when overspent); for each burn window ``w`` in 5m,
        30m, 1h, 6h, 3d: ``executions_<w>``, ``bad_<w>`` (int64) and ``burn_<w>`` (float64, NaN below
        ``min_executions``); and ``alert_page_1h_5m``, ``alert_page_6h_30m``, ``alert_ticket_3d_6h`` (bool).
        Ratios are NaN where there are no executions.
    """
    summary = df if isinstance(df, Summary) else None
    if summary is not None and latency_threshold is not None:
        raise ValueError("error_budget: latency_threshold needs the executions table; a summary's counts cannot")
    df, weights = weighted_rows(df, by, None, "error_budget") if isinstance(df, Summary) else (df, None)
    require_columns(df, ["start_time", "status", *(["duration_s"] if latency_threshold is not None else [])],
                    "error_budget")  # fmt: skip
    slo = check_slo(slo)
    if latency_threshold is not None and (isinstance(latency_threshold, bool) or not latency_threshold > 0):
        raise ValueError(f"latency_threshold must be a positive number of seconds, got {latency_threshold!r}")
    if isinstance(min_executions, bool) or not isinstance(min_executions, (int, np.integer)) or min_executions < 0:
        raise ValueError(f"min_executions must be a non-negative integer, got {min_executions!r}")
    confidence = check_confidence(confidence)
    span = freq_ms(window, "window")
    t_ms = start_ms(df)
    end = _now(df, now, t_ms)
    if summary is not None:
        if now is None and len(t_ms):
            end = int(t_ms.max()) + summary.freq_ms  # the end of the last bucket
        check_windows(summary, end, {"SLO": span, **{w: freq_ms(v) for w, v in _BURN_WINDOWS.items()}}, "error_budget")
    groups = group_rows(df, by, None, func="error_budget")
    bad = failed_mask(df, success_statuses)
    if latency_threshold is not None:
        duration = df["duration_s"].to_numpy(dtype="float64")
        bad |= ~(duration <= latency_threshold)  # NaN durations are not known to be fast enough
    budget = 1.0 - float(slo)

    def counts(length: int) -> tuple[np.ndarray, np.ndarray]:
        if end is None:
            zero = np.zeros(groups.n_groups, dtype=np.int64)
            return zero, zero
        inside = (t_ms >= end - length) & (t_ms < end)
        codes = groups.codes[inside]
        w = None if weights is None else weights[inside]
        return (count(codes, groups.n_groups, w),
                count(codes[bad[inside]], groups.n_groups, None if w is None else w[bad[inside]]))  # fmt: skip

    out = groups.keys.copy()
    out["window_start"] = from_epoch_ms(end - span) if end is not None else pd.NaT
    out["window_end"] = from_epoch_ms(end) if end is not None else pd.NaT
    n, x = counts(span)
    good_low, good_high = rate_interval(n - x, n, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["executions"] = n
        out["bad"] = x
        out["sli"] = np.where(n > 0, (n - x) / np.maximum(n, 1), np.nan)
        out["sli_low"] = good_low
        out["sli_high"] = good_high
        out["slo"] = float(slo)
        out["budget"] = budget
        out["allowed_bad"] = budget * n
        out["consumed"] = np.where(n > 0, x / (budget * n), np.nan)
        out["remaining"] = 1.0 - out["consumed"]
        burn = {}
        for w, length in _BURN_WINDOWS.items():  # five fixed windows, each a vectorised count over all groups
            nw, xw = counts(freq_ms(length))
            burn[w] = np.where(nw >= max(min_executions, 1), xw / np.maximum(nw, 1) / budget, np.nan)
            out[f"executions_{w}"] = nw
            out[f"bad_{w}"] = xw
            out[f"burn_{w}"] = burn[w]
    for name, long, short, factor in BURN_ALERTS:
        out[f"alert_{name}"] = (burn[long] > factor) & (burn[short] > factor)
    return out
