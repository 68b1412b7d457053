"""Who is hurting: per-caller volume, failures and latency, ranked by evidence rather than by raw rates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..rids import caller_kind
from ..summary import Summary
from ._from_summary import caller_sketches, count, sketch_quantiles, weighted_rows
from ._groups import (
    check_confidence,
    check_quantiles,
    duration_mask,
    failed_mask,
    percentile_names,
    require_columns,
    sort_within_groups,
)
from ._intervals import rate_interval

__all__ = ["OTHER", "caller_breakdown", "caller_concentration"]

#: ``caller_rid`` of the row that collects every caller outside the top ones.
OTHER = "(other)"

_RANK_KEYS = {
    "excess_low": ("excess_low", "failures", "executions"),
    "rate_low": ("rate_low", "failures", "executions"),
    "failures": ("failures", "rate_low", "executions"),
    "executions": ("executions", "failures", "rate_low"),
}


def _caller_codes(df: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Codes per caller (NA last, as its own caller) and the caller categories."""
    col = df["caller_rid"]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    cats = col.cat.categories
    codes = col.cat.codes.to_numpy().astype(np.intp)
    codes[codes < 0] = len(cats)
    return codes, cats


def caller_breakdown(
    df: pd.DataFrame | Summary,
    *,
    top: int | None = 10,
    rank_by: str = "excess_low",
    min_executions: int = 100,
    q: Sequence[float] = (0.5, 0.95),
    confidence: float = 0.95,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """Per caller: volume, failures, failure rate with interval, latency and kind, ranked by evidence.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table (``caller_rid``, ``status``, ``duration_s``), or a summary of it (counts exact,
        percentiles from merged sketches, as in :func:`duration_percentiles`).
    top : int or None
        Keep the ``top`` best-ranked callers and collect the rest into one ``(other)`` row; None keeps all.
    rank_by : {"excess_low", "rate_low", "failures", "executions"}
        Ranking, descending; ties break by failures, then executions. The default ranks by
        ``excess_failures_low``: how many failures, at least, the caller has beyond what the overall failure
        rate predicts for its volume (``executions * (rate_low - overall rate)``). It needs both evidence
        and impact: with a 4% overall rate, 2 failures in 3 runs score 0.16 and 300 in 3,000 score 148.
        Ranking by the interval's lower bound alone (``"rate_low"``) is not enough at 95%: 2 in 3 have a
        lower bound of 9.4%, above the 8.9% of 300 in 3,000.
    min_executions : int
        Callers with fewer executions are marked ``low_volume`` (their rates say little).
    q : sequence of float
        Duration percentiles to report (over all executions of the caller with a known duration).
    confidence : float
        Level of the Clopper-Pearson intervals.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per caller (ranked, ``rank`` 1 first) and, when callers were collected, a last ``(other)``
        row. Columns: ``rank`` (int64; 0 for the other row), ``caller_rid`` (str; NA for executions without
        a caller, ``"(other)"`` for the collected row), ``caller_kind`` (str, from the RID, e.g.
        ``workshop.module``; NA when unknown or for the other row), ``callers`` (int64, callers in the row:
        1, or how many were collected), ``executions`` (int64), ``share`` (float64, of all executions),
        ``failures`` (int64), ``failure_share`` (float64, of all failures; NaN with no failures), ``rate``,
        ``rate_low``, ``rate_high`` (float64, Clopper-Pearson), ``excess_failures_low`` (float64, see ``rank_by``;
        negative when the caller fails less than average; NaN for the other row), ``durations`` (int64,
        executions with a known duration), ``p50``, ``p95`` (float64, seconds; one column per ``q``),
        ``low_volume`` (bool).

    See Also
    --------
    caller_concentration : how concentrated executions and failures are among callers (top-k shares, HHI).
    """
    summary = df if isinstance(df, Summary) else None
    df, weights = weighted_rows(df, "caller_rid", None, "caller_breakdown") if isinstance(df, Summary) else (df, None)
    require_columns(df, ["caller_rid", "status", *([] if summary is not None else ["duration_s"])], "caller_breakdown")
    if rank_by not in _RANK_KEYS:
        raise ValueError(f"rank_by must be one of {', '.join(_RANK_KEYS)}, got {rank_by!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}")
    confidence = check_confidence(confidence)
    qs = check_quantiles(q)
    codes, cats = _caller_codes(df)
    n_callers = len(cats) + 1
    bad = failed_mask(df, success_statuses)
    bad_weights = None if weights is None else weights[bad]
    n = count(codes, n_callers, weights)
    x = count(codes[bad], n_callers, bad_weights)
    low, _ = rate_interval(x, n, confidence)
    overall = x.sum() / max(n.sum(), 1)
    excess = n * (low - overall)

    # Rank the callers that ran at all, then fold those past `top` into one extra code.
    seen = np.flatnonzero(n > 0)
    ranking = pd.DataFrame({"excess_low": excess[seen], "rate_low": low[seen], "failures": x[seen],
                            "executions": n[seen]})  # fmt: skip
    order = seen[np.lexsort([-ranking[k].to_numpy() for k in reversed(_RANK_KEYS[rank_by])])]
    keep = order if top is None else order[:top]
    folded = order[len(keep) :]
    final = np.full(n_callers, len(keep), dtype=np.intp)  # default: the other row
    final[keep] = np.arange(len(keep))
    n_rows = len(keep) + (1 if len(folded) else 0)
    row_codes = final[codes]

    rn = count(row_codes, n_rows, weights)
    rx = count(row_codes[bad], n_rows, bad_weights)
    r_low, r_high = rate_interval(rx, rn, confidence)
    if summary is not None:
        blobs = caller_sketches(summary, cats, final, n_rows)
        durations, pct, _, _ = sketch_quantiles(blobs, qs, None, summary.rank_error())
    else:
        mask = duration_mask(df, None, "all")
        values = df["duration_s"].to_numpy(dtype="float64")[mask]
        sorted_groups = sort_within_groups(values, row_codes[mask], n_rows)
        durations, pct = sorted_groups.counts, sorted_groups.quantiles(qs)

    total, total_failures = int(n.sum()), int(x.sum())
    labels = np.append(np.asarray(cats.astype(object)), np.array([pd.NA], dtype=object))
    rid = list(labels[keep]) + ([OTHER] if len(folded) else [])
    kinds = caller_kind(pd.Series(labels[keep], dtype=object))
    out = pd.DataFrame({
        "rank": np.append(np.arange(1, len(keep) + 1), [0] * (n_rows - len(keep))).astype(np.int64),
        "caller_rid": pd.array(rid, dtype="string"),
        "caller_kind": pd.array(list(kinds.astype(object)) + [pd.NA] * (n_rows - len(keep)), dtype="string"),
        "callers": np.append(np.ones(len(keep), dtype=np.int64), [len(folded)] * (n_rows - len(keep))),
        "executions": rn,
        "share": rn / total if total else np.full(n_rows, np.nan),
        "failures": rx,
        "failure_share": rx / total_failures if total_failures else np.full(n_rows, np.nan),
        "rate": rx / np.maximum(rn, 1),
        "rate_low": r_low,
        "rate_high": r_high,
        # Meaningless for a bundle of callers: the bundle's interval is not any caller's.
        "excess_failures_low": np.append((rn * (r_low - overall))[: len(keep)], [np.nan] * (n_rows - len(keep))),
        "durations": durations,
    })  # fmt: skip
    for j, name in enumerate(percentile_names(qs)):
        out[name] = pct[:, j]
    out["low_volume"] = (rn < min_executions) & (out["rank"] > 0).to_numpy()
    return out


def caller_concentration(
    df: pd.DataFrame,
    *,
    k: Sequence[int] = (1, 5, 10),
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """How concentrated executions and failures are among callers.

    Parameters
    ----------
    df : DataFrame
        The executions table (``caller_rid``, ``status``).
    k : sequence of int
        Sizes of the top groups whose share is reported.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        Two rows, ``measure`` "executions" and "failures". Columns: ``measure`` (str), ``total`` (int64),
        ``callers`` (int64, callers with at least one; executions without a caller count as one caller),
        ``top<k>_share`` (float64, share of the ``k`` largest callers, one column per ``k``), ``hhi``
        (float64, Herfindahl-Hirschman index: the sum of squared shares, 1 = a single caller) and
        ``effective_callers`` (float64, 1 / hhi: the number of equal callers with the same concentration).
        Shares are NaN when the total is 0.
    """
    require_columns(df, ["caller_rid", "status"], "caller_concentration")
    ks = [int(v) for v in k]
    if not ks or any(v < 1 for v in ks):
        raise ValueError(f"k must be positive integers, got {k!r}")
    codes, cats = _caller_codes(df)
    bad = failed_mask(df, success_statuses)
    rows = []
    for measure, rows_of in (("executions", codes), ("failures", codes[bad])):
        counts = np.sort(np.bincount(rows_of, minlength=len(cats) + 1))[::-1].astype(np.int64)
        total = int(counts.sum())
        share = counts / total if total else np.full(len(counts), np.nan)
        cum = np.cumsum(share)
        row = {"measure": measure, "total": total, "callers": int((counts > 0).sum())}
        for v in ks:
            row[f"top{v}_share"] = float(cum[min(v, len(cum)) - 1]) if total else np.nan
        hhi = float((share * share).sum()) if total else np.nan
        row["hhi"] = hhi
        row["effective_callers"] = 1 / hhi if total else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
