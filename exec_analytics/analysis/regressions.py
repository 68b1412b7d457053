"""Every version against its predecessor, and each version's adoption over time.

The comparisons are :func:`~exec_analytics.analysis.compare_versions`'s; what this module adds is the
choice of pairs (semantic-version or rollout order, per resource), one Benjamini-Hochberg family over all
tests of all pairs, and the adoption of each version.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..summary import Summary
from ._from_summary import count, weighted_rows
from ._groups import as_list, group_rows, require_columns, start_ms
from ._verdicts import VERDICTS, judge
from .versions import (
    COMPARISON_COLUMNS,
    NoOverlap,
    check_common_arguments,
    check_stratify_freq,
    compare_raw,
    compare_versions,
    version_sources,
    versions_present,
)

__all__ = ["version_adoption", "version_regressions"]


def version_adoption(
    df: pd.DataFrame | Summary, *, freq: str | pd.Timedelta = "1D", by: str | Sequence[str] | None = "resource_rid"
) -> pd.DataFrame:
    """Each version's share of executions over time.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table (``start_time``, ``resource_version``, and the ``by`` columns), or a
        :class:`~exec_analytics.summary.Summary` of it (exact counts; ``freq`` a whole number of its buckets).
    freq : str or Timedelta
        Fixed-length, epoch-aligned periods (``"1D"``: UTC days).
    by : str or list of str or None
        Shares are computed within these groups (one resource's versions compete with each other, not with
        another resource's).

    Returns
    -------
    pandas.DataFrame
        One row per group, period and version that ran in it. Columns: the ``by`` columns,
        ``resource_version`` (categorical), ``period_start`` (datetime64[ms, UTC]), ``executions`` (int64),
        ``period_executions`` (int64, all versions of the group in that period), ``share`` (float64).
    """
    weights = None
    if isinstance(df, Summary):
        df, weights = weighted_rows(df, [*as_list(by), "resource_version"], freq, "version_adoption")
    names = [n for n in as_list(by) if n in df.columns]
    require_columns(df, ["start_time", "resource_version", *names], "version_adoption")
    inner = group_rows(df, [*names, "resource_version"], freq, func="version_adoption")
    outer = group_rows(df, names, freq, func="version_adoption")
    n = count(inner.codes, inner.n_groups, weights)
    totals = count(outer.codes, outer.n_groups, weights)
    parent = np.zeros(inner.n_groups, dtype=np.intp)
    parent[inner.codes] = outer.codes
    out = inner.keys.copy()
    out["executions"] = n
    out["period_executions"] = totals[parent]
    out["share"] = n / np.maximum(totals[parent], 1)
    return out


def version_regressions(
    df: pd.DataFrame,
    *,
    order: str = "version",
    flag: Sequence[str] = ("regressed",),
    seed: int = 0,
    alpha: float = 0.05,
    adoption_freq: str | pd.Timedelta = "1D",
    **compare: Any,
) -> pd.DataFrame:
    """Every version against its predecessor; one row per flagged metric, with each version's adoption.

    Parameters
    ----------
    df : DataFrame
        The executions table; several resources are compared separately, each version with the previous
        version of the same resource.
    order : {"version", "rollout"}
        Predecessor by semantic version (the category order of ``resource_version``) or by rollout (the time
        of each version's first execution).
    flag : sequence of str
        Verdicts to report (``VERDICTS``); pass all of them to get every row.
    seed : int
        Bootstrap seed; comparison ``i`` uses ``[seed, i]``, so the result is deterministic.
    alpha : float
        False discovery rate; Benjamini-Hochberg runs over every test of every comparison of the call.
    adoption_freq : str or Timedelta
        Periods for the adoption columns.
    **compare
        Passed to :func:`compare_versions` (``metrics``, ``reasons``, ``window``, thresholds, ...). A
        comparison whose versions never overlapped gives ``insufficient data`` rows (note "no overlap").

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`compare_versions` for the flagged rows, plus ``candidate_first_seen`` (first
        execution of the candidate), ``candidate_majority_at`` (start of the first period in which it ran
        at least half of the executions; NaT if never) and ``candidate_share_last`` (its share in the last
        period of the data). Empty (same columns) when nothing is flagged or a resource has one version.

    See Also
    --------
    version_adoption : each version's share of executions over time.
    """
    if order not in ("version", "rollout"):
        raise ValueError(f"order must be 'version' or 'rollout', got {order!r}")
    bad_flags = [f for f in flag if f not in VERDICTS]
    if isinstance(flag, str) or bad_flags:
        raise ValueError(f"flag must be a list of verdicts from {VERDICTS}, got {flag!r}")
    require_columns(df, ["start_time", "duration_s", "status", "resource_version"], "version_regressions")
    # The same defaults as compare_versions, read from its signature so the two cannot drift apart.
    defaults = {name: p.default for name, p in inspect.signature(compare_versions).parameters.items()
                if p.kind is p.KEYWORD_ONLY and name not in ("resource_rid", "alpha", "seed")}  # fmt: skip
    unknown = sorted(set(compare) - set(defaults))
    if unknown:
        raise TypeError(f"version_regressions: unexpected argument(s) {', '.join(unknown)}")
    opts = {**defaults, **compare}
    checked = ("latency_threshold", "failure_threshold", "shift_threshold", "confidence", "min_executions",
               "min_stratum", "n_resamples", "metrics", "latency_outcome")  # fmt: skip
    check_common_arguments(alpha=alpha, **{k: opts[k] for k in checked})
    check_stratify_freq(opts["stratify_freq"])
    require_columns(df, [*version_sources(opts["stratify"]), *(["failure_reason"] if opts["reasons"] else [])],
                    "version_regressions")  # fmt: skip
    parts = []
    pair = 0
    resources = pd.unique(df["resource_rid"].dropna()) if "resource_rid" in df.columns else [None]
    for rid in resources:  # one resource at a time: a handful of comparisons, not a loop over groups
        sub = df if rid is None else df.loc[(df["resource_rid"] == rid).to_numpy()]
        versions = _ordered_versions(sub, order)
        for base, cand in itertools.pairwise(versions):
            try:
                part = compare_raw(sub, base, cand, resource_rid=rid, rng=np.random.default_rng([seed, pair]),
                                    alpha=alpha, **opts)  # fmt: skip
            except NoOverlap:
                part = pd.DataFrame([{"resource_rid": rid, "baseline": base, "candidate": cand, "metric": m,
                                      "note": "no overlap: the versions never ran at the same time"}
                                     for m in opts["metrics"]])  # fmt: skip
            parts.append(part)
            pair += 1
    columns = [*COMPARISON_COLUMNS, "candidate_first_seen", "candidate_majority_at", "candidate_share_last"]
    if not parts:
        return pd.DataFrame(columns=columns)
    # Every part carries every column, so a call where no pair overlapped still has (empty) p-values.
    raw = [c for c in COMPARISON_COLUMNS if c not in ("p_adjusted", "verdict")]
    judged = judge(
        pd.concat([p.reindex(columns=raw) for p in parts], ignore_index=True), alpha, list(COMPARISON_COLUMNS)
    )
    judged = judged[judged["verdict"].isin(list(flag)).to_numpy()].reset_index(drop=True)
    return _add_adoption(judged, df, adoption_freq).reindex(columns=columns)


def _ordered_versions(df: pd.DataFrame, order: str) -> list[str]:
    present = versions_present(df)
    if order == "version" or len(present) < 2:
        return present
    groups = group_rows(df, "resource_version", func="version_regressions")
    first = pd.Series(start_ms(df)).groupby(groups.codes).min().to_numpy()
    first_of = dict(zip(groups.keys["resource_version"].astype(str), first, strict=True))
    return sorted(present, key=lambda v: (first_of[v], present.index(v)))


def _add_adoption(rows: pd.DataFrame, df: pd.DataFrame, adoption_freq: str | pd.Timedelta) -> pd.DataFrame:
    """Join, per candidate, when it first ran, when it first ran most executions, and its latest share."""
    out = rows.copy()
    names = ["resource_rid"] if "resource_rid" in df.columns else []
    groups = group_rows(df, [*names, "resource_version"], func="version_regressions")
    keys = groups.keys.astype(str)
    first = pd.Series(start_ms(df)).groupby(groups.codes).min().reindex(range(groups.n_groups)).to_numpy()
    summary = keys.assign(first_seen=pd.to_datetime(first, unit="ms", utc=True))
    adoption = version_adoption(df, freq=adoption_freq, by=names or None)
    a = adoption.assign(**{c: adoption[c].astype(str) for c in [*names, "resource_version"]})
    last = a.groupby(names, observed=True)["period_start"].transform("max") if names else a["period_start"].max()
    majority = a[a["share"] >= 0.5].groupby([*names, "resource_version"])["period_start"].min().rename("majority_at")
    latest = a[a["period_start"] == last].groupby([*names, "resource_version"])["share"].sum().rename("share_last")
    summary = summary.join(majority, on=[*names, "resource_version"]).join(latest, on=[*names, "resource_version"])
    left = rows.assign(resource_version=rows["candidate"].astype(str))
    if names:
        left["resource_rid"] = left["resource_rid"].astype(str)
    merged = left[[*names, "resource_version"]].merge(summary, on=[*names, "resource_version"], how="left")
    out["candidate_first_seen"] = merged["first_seen"].to_numpy()
    out["candidate_majority_at"] = merged["majority_at"].to_numpy()
    out["candidate_share_last"] = merged["share_last"].fillna(0.0).to_numpy()
    return out
