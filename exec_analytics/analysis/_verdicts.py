"""Verdicts: practical thresholds plus Benjamini-Hochberg, never a p-value alone (see :mod:`.versions`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["VERDICTS", "judge"]

#: Every verdict :func:`~exec_analytics.analysis.compare_versions` can give.
VERDICTS: tuple[str, ...] = ("regressed", "improved", "equivalent", "inconclusive", "insufficient data")


def judge(table: pd.DataFrame, alpha: float, columns: list[str]) -> pd.DataFrame:
    """Add ``p_adjusted`` and ``verdict`` to comparison rows.

    Parameters
    ----------
    table : DataFrame
        Rows with ``p_value``, ``note`` ("" when the data sufficed), ``judged_on`` ("ratio" or
        "difference"), ``threshold`` and the interval columns of both effect scales.
    alpha : float
        False discovery rate; Benjamini-Hochberg runs over every row with a p-value and no note, which is
        the whole family of tests of one call.
    columns : list of str
        Output column order.

    Returns
    -------
    pandas.DataFrame
        ``table`` with ``p_adjusted`` (float64, NaN where not tested) and ``verdict`` (categorical over
        :data:`VERDICTS`): ``regressed`` when the whole interval lies beyond ``1 + threshold`` (ratios) or
        ``threshold`` (differences) and ``p_adjusted < alpha``; ``improved`` symmetrically below
        ``1 / (1 + threshold)`` or ``-threshold``; ``equivalent`` when the interval lies within both bounds;
        ``insufficient data`` without an interval; otherwise ``inconclusive``.
    """
    out = table.copy()
    p = out["p_value"].to_numpy(dtype=float)
    usable = np.isfinite(p) & (out["note"].to_numpy(dtype=object) == "")
    adjusted = np.full(len(p), np.nan)
    if usable.any():
        adjusted[usable] = stats.false_discovery_control(p[usable], method="bh")
    out["p_adjusted"] = adjusted
    on_ratio = (out["judged_on"] == "ratio").to_numpy()
    thr = out["threshold"].to_numpy(dtype=float)
    low = np.where(on_ratio, out["ratio_low"], out["difference_low"]).astype(float)
    high = np.where(on_ratio, out["ratio_high"], out["difference_high"]).astype(float)
    up = np.where(on_ratio, 1 + thr, thr)
    down = np.where(on_ratio, 1 / (1 + thr), -thr)
    significant = adjusted < alpha
    known = usable & np.isfinite(low) & np.isfinite(high)
    verdict = np.select(
        [~known, (low > up) & significant, (high < down) & significant, (low >= down) & (high <= up)],
        ["insufficient data", "regressed", "improved", "equivalent"],
        default="inconclusive",
    )
    out["verdict"] = pd.Categorical(verdict, categories=list(VERDICTS))
    return out.reindex(columns=columns)
