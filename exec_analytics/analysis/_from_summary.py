"""Analysis from a :class:`~exec_analytics.summary.Summary` instead of rows, with the same output columns.

Counts: the summary's ``counts`` table is a frame of distinct rows (one per resource, bucket, version, caller,
status and reason) weighted by ``executions``, with ``start_time`` standing for the bucket start. Every count
of the row path becomes the same ``bincount`` with those weights, so counts, rates and their intervals are
exact, provided every time grouping is a whole number of buckets (checked).

Percentiles: each result group is the weighted union of its KLL sketches' retained items (not a merge, which
compacts at random: the same summary would answer differently from call to call). A group whose sketches
never compacted holds every value, so its percentiles and order-statistic intervals are exactly those of the
rows. Otherwise the point estimate is the union's quantile (its true rank within ``q +- eps``, ``eps`` the
sketches' normalized rank error: a union's rank error is at most the sum of its sketches'), and the
distribution-free interval ``[X_(l), X_(u)]`` is widened by ``eps`` on each side: the low bound is the quantile
at rank ``l/n - eps`` and the high bound at ``u/n + eps``, so (with the sketches' 99% bound) the low bound lies
at or below ``X_(l)`` and the high bound at or above ``X_(u)``. The interval keeps its coverage up to the 1%
chance that the bound fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..schema import order_versions
from ..summary import Summary
from ..summary.build import statuses
from ..summary.kll import unpack_many
from ._groups import PERIOD, Groups, as_list, freq_ms, group_rows
from ._intervals import order_statistic_ranks

__all__ = [
    "caller_sketches",
    "check_boundaries",
    "check_buckets",
    "check_windows",
    "count",
    "group_sketches",
    "sketch_quantiles",
    "summary_percentiles",
    "weighted_rows",
]

_STRING_KEYS = ("resource_rid", "resource_version", "caller_rid", "status", "failure_reason", "outcome")


def _categorical(values: pd.Series, name: str) -> pd.Categorical:
    cats = sorted(str(v) for v in values.dropna().unique())
    if name == "resource_version":
        return pd.Categorical(values, categories=order_versions(cats), ordered=True)
    return pd.Categorical(values, categories=cats)


def _view(frame: pd.DataFrame, summary: Summary, names: Iterable[str], func: str) -> pd.DataFrame:
    for name in names:
        if name in summary.dropped or (name == "caller_kind" and "caller_rid" in summary.dropped):
            raise ValueError(f"{func}: this summary was regrouped without {name}; it cannot group by it")
    out: pd.DataFrame = pd.DataFrame({c: _categorical(frame[c], c) for c in _STRING_KEYS if c in frame.columns})
    # The array itself: to_numpy() of a timezone-aware column would build one Timestamp object per row.
    out["start_time"] = frame["bucket_start"].astype("datetime64[ms, UTC]").array
    return out


def check_boundaries(summary: Summary, times: dict[str, pd.Timestamp], func: str) -> None:
    """``ValueError`` unless every time of ``times`` (name -> time) is a boundary of the summary's buckets."""
    step = summary.freq_ms
    off = [name for name, t in times.items() if pd.Timestamp(t).value % (step * 1_000_000)]
    if off:
        raise ValueError(
            f"{func}: {', '.join(off)} must fall on the summary's {summary.freq} bucket boundaries "
            "(epoch-aligned); build the summary with shorter buckets, or choose a period they divide"
        )


def check_buckets(summary: Summary, freq: str | pd.Timedelta | None, func: str) -> None:
    """``ValueError`` unless ``freq`` is a whole number of the summary's buckets."""
    if freq is not None and freq_ms(freq) % summary.freq_ms:
        raise ValueError(f"{func}: freq {freq!r} is not a whole number of the summary's {summary.freq} buckets")


def weighted_rows(
    summary: Summary, by: str | Sequence[str] | None, freq: str | pd.Timedelta | None, func: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """The summary's counts as distinct execution rows (categorical keys, ``start_time``) and their weights."""
    check_buckets(summary, freq, func)
    view = _view(summary.counts, summary, as_list(by), func)
    return view, summary.counts["executions"].to_numpy(dtype=np.int64)


def count(codes: np.ndarray, n_groups: int, weights: np.ndarray | None) -> np.ndarray:
    """Executions per group code: rows counted once, or weighted by a summary's ``executions``."""
    if weights is None:
        return np.bincount(codes, minlength=n_groups).astype(np.int64)
    # float64 weights are exact below 2**53 executions per group.
    return np.bincount(codes, weights=weights.astype(np.float64), minlength=n_groups).astype(np.int64)


def sketch_quantiles(
    blobs: list[list[bytes]], qs: np.ndarray, confidence: float | None, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Durations, percentiles and (with ``confidence``) conservative intervals per group of sketches.

    Each group is the weighted union of its sketches' retained items (:mod:`exec_analytics.summary.kll`): no
    merge, so the same summary gives the same percentiles every time, and no error beyond the sketches' own.
    All groups are answered at once from one sort.

    Parameters
    ----------
    blobs : list of list of bytes
        Serialized sketches of each group.
    qs : numpy.ndarray
        Quantile levels.
    confidence : float, optional
        Level of the intervals; None for none.
    eps : float
        Normalized rank error of the sketches (``Summary.rank_error()``).

    Returns
    -------
    tuple
        ``(durations, estimates, low, high)``: int64 (groups,), float64 (groups, len(qs)) each; ``low`` and
        ``high`` are None without ``confidence``.
    """
    n_groups = len(blobs)
    sizes = np.array([len(g) for g in blobs], dtype=np.intp)
    items = unpack_many([b for g in blobs for b in g])
    group_of_sketch = np.repeat(np.arange(n_groups, dtype=np.intp), sizes)
    group = group_of_sketch[items.owner]
    n = np.bincount(group_of_sketch, weights=items.n, minlength=n_groups).astype(np.int64)
    # A group whose items all weigh 1 holds every value: its percentiles are exactly the rows'.
    exact = np.bincount(group, weights=items.weights > 1, minlength=n_groups) == 0
    smallest, largest = np.full(n_groups, np.inf), np.full(n_groups, -np.inf)
    np.fmin.at(smallest, group_of_sketch, items.low)
    np.fmax.at(largest, group_of_sketch, items.high)
    if not len(items.values):  # no known duration in any group
        none = np.full((n_groups, len(qs)), np.nan)
        bounds = (none.copy(), none.copy()) if confidence is not None else (None, None)
        return n, none, *bounds
    order = np.lexsort((items.values, group))
    values = items.values[order]
    cum = np.cumsum(items.weights[order])
    first = np.searchsorted(group[order], np.arange(n_groups), side="left")
    base = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0)
    has = n > 0

    def at_rank(r: np.ndarray) -> np.ndarray:
        """Per group (rows) and level (columns): the smallest item whose cumulative weight reaches ``r * n``."""
        target = np.clip(np.ceil(r * n[:, None]), 1, np.maximum(n[:, None], 1))
        idx = np.searchsorted(cum, base[:, None] + target, side="left")
        got: np.ndarray = values[np.minimum(idx, len(values) - 1)]
        return got

    def at_order(k: np.ndarray) -> np.ndarray:
        """Per group: the ``k``-th smallest value (1-based; NaN where ``k`` is) of a group holding every value."""
        ok = np.isfinite(k)
        idx = first[:, None] + np.where(ok, k, 1).astype(np.int64) - 1
        got: np.ndarray = np.where(ok, values[np.clip(idx, 0, len(values) - 1)], np.nan)
        return got

    q = np.broadcast_to(np.asarray(qs, dtype=np.float64)[None, :], (n_groups, len(qs)))
    # Exact groups: numpy's linear interpolation between order statistics, as on rows.
    h = (np.maximum(n, 1)[:, None] - 1) * q
    below = np.floor(h)
    linear = at_order(below + 1) + (h - below) * (at_order(np.minimum(below + 2, n[:, None])) - at_order(below + 1))
    est = np.where(exact[:, None], linear, at_rank(q))
    est[~has] = np.nan
    if confidence is None:
        return n, est, None, None
    lo_rank, hi_rank = order_statistic_ranks(n, np.asarray(qs, dtype=np.float64), confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        r_lo = lo_rank / n[:, None] - eps
        r_hi = hi_rank / n[:, None] + eps
    widened_lo = np.where(r_lo <= 0, smallest[:, None], at_rank(np.where(np.isfinite(r_lo), r_lo, 0.5)))
    widened_hi = np.where(r_hi >= 1, largest[:, None], at_rank(np.where(np.isfinite(r_hi), r_hi, 0.5)))
    low = np.where(exact[:, None], at_order(lo_rank), np.where(np.isfinite(lo_rank), widened_lo, np.nan))
    high = np.where(exact[:, None], at_order(hi_rank), np.where(np.isfinite(hi_rank), widened_hi, np.nan))
    low[~has], high[~has] = np.nan, np.nan
    return n, est, low, high


def group_sketches(codes: np.ndarray, n_groups: int, sketches: pd.Series) -> list[list[bytes]]:
    """The sketch bytes of each group code (codes of -1 are left out)."""
    out: list[list[bytes]] = [[] for _ in range(n_groups)]
    for code, blob in zip(codes.tolist(), sketches.tolist(), strict=True):
        if code >= 0:
            out[code].append(blob)
    return out


def summary_percentiles(
    summary: Summary,
    *,
    by: str | Sequence[str] | None,
    freq: str | pd.Timedelta | None,
    qs: np.ndarray,
    confidence: float | None,
    outcome: str,
    success_statuses: Iterable[str] | str,
    names: list[str],
) -> pd.DataFrame:
    """``duration_percentiles`` from a summary (see the module docstring for the percentiles' bounds).

    Returns
    -------
    pandas.DataFrame
        The columns of ``duration_percentiles``.
    """
    func = "duration_percentiles"
    keys = as_list(by)
    unsplit = [k for k in keys if k in ("status", "failure_reason")]
    if unsplit:
        raise ValueError(f"{func}: a summary's sketches are not split by {', '.join(unsplit)}; group by other keys")
    if outcome not in ("all", "succeeded", "failed"):
        raise ValueError(f"outcome must be 'all', 'succeeded' or 'failed', got {outcome!r}")
    if outcome != "all" and statuses(success_statuses) != summary.success_statuses:
        raise ValueError(
            f"{func}: the summary split outcomes by success_statuses={list(summary.success_statuses)!r}; "
            "build it with the statuses you need"
        )
    check_buckets(summary, freq, func)
    counts = _view(summary.counts, summary, keys, func)
    sk = _view(summary.sketches, summary, keys, func)
    # One grouping over both tables, so a group with executions but no known duration still gets its row.
    both = pd.concat([counts.drop(columns=["status", "failure_reason"], errors="ignore"), sk.drop(columns="outcome")])
    for c in both.columns:
        if c != "start_time":
            both[c] = _categorical(both[c].astype(object), c)
    both = both.reset_index(drop=True)
    groups: Groups = group_rows(both, keys, freq, func=func)
    n_counts = len(counts)
    out: pd.DataFrame = groups.keys.copy()
    out["executions"] = count(groups.codes[:n_counts], groups.n_groups, summary.counts["executions"].to_numpy())
    sk_codes = groups.codes[n_counts:].copy()
    if outcome != "all":
        sk_codes[summary.sketches["outcome"].to_numpy() != outcome] = -1
    blobs = group_sketches(sk_codes, groups.n_groups, summary.sketches["sketch"])
    durations, est, low, high = sketch_quantiles(blobs, qs, confidence, summary.rank_error())
    out["durations"] = durations
    for j, name in enumerate(names):
        out[name] = est[:, j]
    if low is not None and high is not None:
        for j, name in enumerate(names):
            out[f"{name}_low"] = low[:, j]
            out[f"{name}_high"] = high[:, j]
    if PERIOD in out.columns:
        out[PERIOD] = out[PERIOD].astype("datetime64[ms, UTC]")
    return out


def caller_sketches(summary: Summary, cats: pd.Index, final: np.ndarray, n_rows: int) -> list[list[bytes]]:
    """Sketch bytes per ``caller_breakdown`` row: each caller's code (NA last) mapped through ``final``."""
    callers = pd.Categorical(summary.sketches["caller_rid"].astype(object), categories=cats)
    codes = np.asarray(callers.codes, dtype=np.intp).copy()
    codes[codes < 0] = len(cats)
    return group_sketches(final[codes], n_rows, summary.sketches["sketch"])


def check_windows(summary: Summary, end: int | None, lengths: dict[str, int], func: str) -> None:
    """``ValueError`` unless ``end`` and every window length fall on the summary's bucket boundaries.

    A bucket is either wholly inside a window or wholly outside only then; otherwise its executions could
    not be split and the counts would silently include time outside the window.
    """
    step = summary.freq_ms
    if end is not None and end % step:
        raise ValueError(f"{func}: now must be a bucket boundary of the summary ({summary.freq} buckets)")
    coarse = [name for name, length in lengths.items() if length % step]
    if coarse:
        raise ValueError(
            f"{func}: the summary's {summary.freq} buckets cannot resolve the {', '.join(coarse)} window(s); "
            "build the summary with freq='5min' (or a divisor of it) for burn-rate alerts"
        )
