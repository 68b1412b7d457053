"""Did the new version make it worse? Version comparisons with effects, intervals and verdicts.

How a comparison is made (defaults in brackets; every one is a parameter):

1. **Same time.** Only executions in the window where both versions ran are compared [``window="overlap"``:
   from the later first execution to the earlier last one], so a weekday-versus-weekend or an incident on one
   side does not pass for a version effect.
2. **Same callers, same hours.** Every effect is estimated within strata and then pooled: callers
   [``stratify="caller_rid"``], so a candidate whose canary reached slow callers first is not called slower,
   crossed with time buckets of ``start_time`` [``stratify_freq="auto"``], so a candidate whose share grew
   while latency rose (the afternoon peak, a slow drift) is not called slower either. ``"auto"`` takes the
   finest of 1h, 3h and 6h (epoch-aligned UTC buckets) whose caller x bucket strata with at least
   ``min_stratum`` executions of both versions hold at least 80% of each version's executions in the
   window, else 6h (1D is never chosen: a daily cycle lives inside a day). The bucket used is named in
   ``adjusted_for``. Versions that never ran in the same bucket (``window="all"`` across a gap) have
   nothing to compare: pass ``stratify_freq=None`` to compare them anyway, knowingly. Calibrated by
   simulation (``benchmarks/calibrate_versions.py``): during a 24-hour rollout under a +-50% daily latency
   cycle, or a 3-day ramp under a +60% drift, stratifying by caller alone calls identical versions
   regressed in 30-100% of comparisons (more with more data), "auto" in under 5%.

   Failure rates: Mantel-Haenszel difference and ratio and the CMH test. Percentiles: the candidate's
   durations reweighted to the baseline's mix of strata, strata with at least ``min_stratum`` [3]
   executions in both arms, intervals from a stratified Poisson bootstrap [1000 resamples, ``seed=0``].
   Whole distribution: the probability that a candidate execution is slower than a baseline execution of
   the same stratum, with the van Elteren (stratified Mann-Whitney) test.

   What is adjusted: differences in the mix of callers and of time buckets between the two versions, and
   anything constant within a caller and bucket (load, the daily cycle, an incident longer than a bucket).
   What is not: change within a bucket (a trend much faster than the bucket), anything else that moves with
   the rollout (inputs, regions, a dependency deployed at the same time), and executions in strata that only
   one version served, which are left out (effects describe the strata both versions served).
3. **Latency of work that completed.** Percentiles and the distribution use succeeded executions
   [``latency_outcome="succeeded"``]: a version that times out more shows up in the failure rate, and does
   not also drag p99 to the time limit (one cause, one metric).
4. **Practical thresholds, not p-values alone.** Each metric is judged on one effect scale against a
   threshold: latency percentiles on the ratio [10%], failure rate on the difference [0.5 percentage
   points], the distribution on P(slower) - 0.5 [0.05]. Verdicts, for a two-sided ``confidence`` interval
   [95%] and p-values adjusted for all tests of the call (Benjamini-Hochberg) [``alpha=0.05``]:

   - ``regressed``: the whole interval lies beyond the threshold in the bad direction and the adjusted
     p-value is below ``alpha``;
   - ``improved``: the same in the good direction (for ratios the mirror image 1 / (1 + threshold));
   - ``equivalent``: the whole interval lies within the thresholds;
   - ``insufficient data``: fewer than ``min_executions`` [200] executions in an arm (more for extreme
     percentiles: at least enough for a distribution-free interval, 368 for p99 at 95%) in the strata both
     versions served, or no such stratum;
   - ``inconclusive``: anything else; more data would decide.

   A pooled verdict can hide a regression of a few small callers (a 5x failure rate in callers with 4% of
   the traffic moves the pooled rate by a fraction of the threshold): ``regressed_callers`` names them.

   Requiring the whole interval beyond the threshold is a one-sided test (at ``(1 - confidence) / 2``) that
   the effect exceeds the threshold, so "regressed" means "worse by at least the threshold", not merely
   "different". Within ``equivalent`` it is the two one-sided tests (TOST) procedure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..timeutil import epoch_ms, from_epoch_ms, validate_window
from ._groups import (
    DERIVED_KEYS,
    as_list,
    check_confidence,
    check_quantiles,
    failed_mask,
    freq_ms,
    group_rows,
    require_columns,
    start_ms,
    value_ordered,
)
from ._intervals import min_executions_for_interval
from ._stratified import (
    Effect,
    bootstrap_effect,
    cmh_test,
    mh_difference_by,
    mh_risk_ratio,
    pool_shifts,
    quantile_bootstrap,
    shift_effect,
    stratum_shifts,
    weighted_quantiles,
)
from ._verdicts import VERDICTS, judge

__all__ = ["VERDICTS", "compare_versions"]


DEFAULT_METRICS: tuple[str, ...] = ("failure_rate", "p50", "p95", "p99", "distribution")
NO_REASON = "<no reason>"

COMPARISON_COLUMNS = (
    "resource_rid", "baseline", "candidate", "metric", "baseline_executions", "candidate_executions",
    "baseline_value", "candidate_value", "difference", "difference_low", "difference_high", "ratio", "ratio_low",
    "ratio_high", "judged_on", "threshold", "test", "statistic", "p_value", "p_adjusted", "verdict", "strata",
    "regressed_callers", "adjusted_for", "window_start", "window_end", "note",
)  # fmt: skip


#: Time buckets ``stratify_freq="auto"`` chooses from, finest first.
AUTO_BUCKETS: tuple[str, ...] = ("1h", "3h", "6h")
_AUTO_KEEP = 0.8  # share of each version's executions the chosen strata must hold


class NoOverlap(ValueError):
    pass


def _auto_bucket(sub: pd.DataFrame, strata_cols: list[str], cand: np.ndarray, min_stratum: int) -> str:
    """The time bucket of ``stratify_freq="auto"`` (see the module docstring).

    Finer buckets remove more of a time trend but leave more executions in strata too thin to compare; the
    rule takes the finest that still compares most of both versions' executions, and never gives up time
    strata altogether (simulation: dropping them when data are thin brings back 40% false alarms).
    """
    for freq in AUTO_BUCKETS[:-1]:
        strata = group_rows(sub, strata_cols, freq, func="compare_versions")
        n1 = np.bincount(strata.codes[cand], minlength=strata.n_groups)
        n0 = np.bincount(strata.codes[~cand], minlength=strata.n_groups)
        ok = (n1 >= min_stratum) & (n0 >= min_stratum)
        if min(n1[ok].sum() / max(n1.sum(), 1), n0[ok].sum() / max(n0.sum(), 1)) >= _AUTO_KEEP:
            return freq
    return AUTO_BUCKETS[-1]


def _parse_metric(metric: str) -> float | str:
    if metric in ("failure_rate", "distribution"):
        return metric
    if isinstance(metric, str) and metric.startswith("p"):
        try:
            q = float(metric[1:]) / 100
        except ValueError:
            q = -1.0
        if 0 < q < 1:
            return q
    raise ValueError(
        f"metrics: unknown metric {metric!r}; use 'failure_rate', 'distribution' or a percentile such as 'p50', "
        "'p95', 'p99.9'"
    )


def versions_present(df: pd.DataFrame) -> list[str]:
    col = df["resource_version"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        counts = np.bincount(col.cat.codes.to_numpy() + 1, minlength=len(col.cat.categories) + 1)[1:]
        return [str(c) for c, k in zip(col.cat.categories, counts, strict=True) if k > 0]
    from ..schema import order_versions

    return order_versions(col.dropna())


def _select_resource(df: pd.DataFrame, resource_rid: str | None, func: str) -> tuple[pd.DataFrame, Any]:
    if "resource_rid" not in df.columns:
        return df, resource_rid
    rids = df["resource_rid"]
    present: Any = pd.unique(rids.dropna()) if len(rids) else []
    if resource_rid is None:
        if len(present) > 1:
            raise ValueError(
                f"{func}: df holds {len(present)} resources; pass resource_rid= (one of {', '.join(map(str, present))})"
            )
        return df, (present[0] if len(present) else None)
    if resource_rid not in set(map(str, present)):
        raise ValueError(f"{func}: resource_rid {resource_rid!r} has no executions in df")
    return df.loc[(rids == resource_rid).to_numpy()], resource_rid


def _version_rows(df: pd.DataFrame, version: str, name: str, present: list[str]) -> np.ndarray:
    if not isinstance(version, str):
        raise TypeError(f"compare_versions: {name} must be a version string, got {type(version).__name__}")
    if version not in present:
        known = ", ".join(present) if present else "none: df has no executions"
        raise ValueError(f"compare_versions: {name} version {version!r} has no executions in df (versions: {known})")
    return (df["resource_version"] == version).to_numpy(dtype=bool)


def _window(
    t_ms: np.ndarray, base: np.ndarray, cand: np.ndarray, window: str | tuple[object, object]
) -> tuple[int, int]:
    """Half-open window ``[lo, hi)`` in epoch milliseconds."""
    if isinstance(window, tuple) and len(window) == 2:
        start, end = validate_window(window[0], window[1])
        return epoch_ms(start), epoch_ms(end)
    if window == "all":
        return int(t_ms.min()), int(t_ms.max()) + 1
    if window != "overlap":
        raise ValueError(f"compare_versions: window must be 'overlap', 'all' or a (start, end) pair, got {window!r}")
    tb, tc = t_ms[base], t_ms[cand]
    lo, hi = max(int(tb.min()), int(tc.min())), min(int(tb.max()), int(tc.max()))
    if lo > hi:
        raise NoOverlap(
            "compare_versions: the two versions never ran at the same time, so their difference cannot be told "
            "apart from a change over time; pass window='all' (or an explicit (start, end)) to compare anyway"
        )
    return lo, hi + 1


def version_sources(stratify: str | Sequence[str] | None) -> list[str]:
    """Columns the stratification reads (a derived key such as ``caller_kind`` reads ``caller_rid``)."""
    return [DERIVED_KEYS.get(c, c) for c in as_list(stratify, "stratify")]


def compare_raw(
    df: pd.DataFrame,
    baseline: str,
    candidate: str,
    *,
    resource_rid: str | None,
    metrics: Sequence[str],
    reasons: bool | Sequence[str],
    window: str | tuple[object, object],
    stratify: str | Sequence[str] | None,
    stratify_freq: str | pd.Timedelta | None,
    latency_outcome: str,
    latency_threshold: float,
    failure_threshold: float,
    shift_threshold: float,
    confidence: float,
    min_executions: int,
    min_stratum: int,
    n_resamples: int,
    rng: np.random.Generator,
    success_statuses: Iterable[str] | str,
    alpha: float,
) -> pd.DataFrame:
    """All metric rows of one comparison, without p_adjusted and verdict."""
    strata_cols = as_list(stratify, "stratify")
    present = versions_present(df)
    base_rows = _version_rows(df, baseline, "baseline", present)
    cand_rows = _version_rows(df, candidate, "candidate", present)
    if baseline == candidate:
        raise ValueError("compare_versions: baseline and candidate are the same version")
    t_ms = start_ms(df)
    lo, hi = _window(t_ms, base_rows, cand_rows, window)
    keep = (base_rows | cand_rows) & (t_ms >= lo) & (t_ms < hi)
    idx = np.flatnonzero(keep)
    wanted = ("start_time", "duration_s", "status", "failure_reason", *strata_cols, *version_sources(strata_cols))
    cols = [c for c in wanted if c in df.columns]
    cols = list(dict.fromkeys(cols))
    sub = df[cols].iloc[idx].reset_index(drop=True)
    cand = cand_rows[idx]
    bad = failed_mask(sub, success_statuses)
    if isinstance(stratify_freq, str) and stratify_freq == "auto":
        stratify_freq = _auto_bucket(sub, strata_cols, cand, min_stratum)
    strata = value_ordered(group_rows(sub, strata_cols, stratify_freq, func="compare_versions"))
    # One canonical row order (stratum by value, arm, duration, outcome): every draw of the bootstrap and
    # every floating-point sum then depends on the data alone, not on row or category order.
    order = np.lexsort((bad, sub["duration_s"].to_numpy(dtype="float64"), cand, strata.codes))
    sub, cand, bad = sub.iloc[order].reset_index(drop=True), cand[order], bad[order]
    s, k = strata.codes[order], strata.n_groups
    callers = _Callers.of(sub, strata_cols, s, k, alpha)

    common: dict[str, Any] = {
        "resource_rid": resource_rid, "baseline": baseline, "candidate": candidate,
        "adjusted_for": ", ".join(strata_cols + ([f"start_time/{stratify_freq}"] if stratify_freq else [])),
        "window_start": from_epoch_ms(lo), "window_end": from_epoch_ms(hi),
    }  # fmt: skip
    rows: list[dict[str, Any]] = []

    # --- failure rates -----------------------------------------------------------------------------
    n1 = np.bincount(s[cand], minlength=k)
    n0 = np.bincount(s[~cand], minlength=k)
    shared = (n1 > 0) & (n0 > 0)
    events: list[tuple[str, np.ndarray]] = []
    if "failure_rate" in metrics:
        events.append(("failure_rate", bad))
    events += [(f"failure_rate[{name}]", hit) for name, hit in _reason_events(sub, bad, reasons)]
    for name, event in events:
        x1 = np.bincount(s[cand & event], minlength=k)
        x0 = np.bincount(s[~cand & event], minlength=k)
        nb, nc = int(n0[shared].sum()), int(n1[shared].sum())
        pooled = mh_difference_by(x1, n1, x0, n0, np.zeros(k, dtype=np.intp), 1, confidence)
        row = {"metric": name, "baseline_executions": nb, "candidate_executions": nc,
               "baseline_value": float(pooled.baseline[0]), "candidate_value": float(pooled.candidate[0]),
               "judged_on": "difference", "threshold": failure_threshold, "strata": int(shared.sum()),
               "test": "CMH"}  # fmt: skip
        note = _too_few(nb, nc, min_executions)
        if not note:
            diff = (float(pooled.difference[0]), float(pooled.low[0]), float(pooled.high[0]))
            ratio = mh_risk_ratio(x1, n1, x0, n0, confidence)
            z, p = cmh_test(x1, n1, x0, n0)
            row.update(_effect_columns(Effect(*diff, *ratio, statistic=z, p_value=p, test="CMH")))
            by = mh_difference_by(x1, n1, x0, n0, callers.of_stratum, callers.n, confidence)
            row["regressed_callers"] = callers.regressed(n1 * shared, n0 * shared, by.low, by.z, failure_threshold)
        rows.append({**row, "note": note})

    # --- latency -------------------------------------------------------------------------------------
    lat = ~np.isnan(sub["duration_s"].to_numpy(dtype="float64"))
    if latency_outcome == "succeeded":
        lat &= ~bad
    elif latency_outcome == "failed":
        lat &= bad
    values = sub["duration_s"].to_numpy(dtype="float64")
    quantile_metrics = [(m, _parse_metric(m)) for m in metrics if m.startswith("p")]
    if quantile_metrics:
        rows += _quantile_rows(values, lat, cand, s, k, quantile_metrics, latency_threshold, confidence,
                               min_executions, min_stratum, n_resamples, rng)  # fmt: skip
    if "distribution" in metrics:
        lc = np.bincount(s[lat & cand], minlength=k)
        lb = np.bincount(s[lat & ~cand], minlength=k)
        two = (lc > 0) & (lb > 0)
        both = lat & two[s]
        nb, nc = int(lb[two].sum()), int(lc[two].sum())
        row = {"metric": "distribution", "baseline_executions": nb, "candidate_executions": nc,
               "baseline_value": 0.5, "candidate_value": np.nan, "judged_on": "difference",
               "threshold": shift_threshold, "strata": int(two.sum()), "test": "van Elteren"}  # fmt: skip
        note = _too_few(nb, nc, min_executions)
        if not note:
            shifts = stratum_shifts(values[both], cand[both], s[both], k)
            effect = shift_effect(shifts, confidence)
            row.update(_effect_columns(effect))
            row["candidate_value"] = 0.5 + effect.difference
            _, caller_low, _, caller_z = pool_shifts(shifts, callers.of_stratum, callers.n, confidence)
            row["regressed_callers"] = callers.regressed(lc * two, lb * two, caller_low - 0.5, caller_z,
                                                         shift_threshold)  # fmt: skip
        rows.append({**row, "note": note})
    out = pd.DataFrame([{**common, **r} for r in rows])
    out = out.reindex(columns=[c for c in COMPARISON_COLUMNS if c not in ("p_adjusted", "verdict")])
    out["regressed_callers"] = out["regressed_callers"].astype(object).where(out["regressed_callers"].notna(), None)
    return out


#: Executions per version a caller needs, in strata both versions served, to be judged on its own.
MIN_CALLER_EXECUTIONS = 30


@dataclass
class _Callers:
    """The ``stratify`` groups (callers) without time buckets: which strata belong to which caller."""

    of_stratum: np.ndarray  # caller code of every stratum
    n: int
    labels: list[str]
    alpha: float
    keyed: bool

    @classmethod
    def of(cls, sub: pd.DataFrame, strata_cols: list[str], s: np.ndarray, k: int, alpha: float) -> _Callers:
        groups = value_ordered(group_rows(sub, strata_cols, None, func="compare_versions"))
        of_stratum = np.zeros(k, dtype=np.intp)
        of_stratum[s] = groups.codes  # rows are in canonical order already; every stratum lies in one caller
        columns = [groups.keys[c].astype(object).where(groups.keys[c].notna(), "<none>").astype(str).tolist()
                   for c in groups.keys.columns]  # fmt: skip
        labels = ["/".join(parts) for parts in zip(*columns, strict=True)] if columns else [""]
        return cls(of_stratum, groups.n_groups, labels, alpha, bool(strata_cols))

    def regressed(self, n1: np.ndarray, n0: np.ndarray, low: np.ndarray, z: np.ndarray, threshold: float) -> str | None:
        """Callers whose own comparison is regressed: interval beyond ``threshold``, BH-adjusted p < alpha.

        ``n1``/``n0`` count each stratum's executions per version in strata both served; ``low`` and ``z``
        are per caller. Callers below :data:`MIN_CALLER_EXECUTIONS` in either version are not judged.
        None without a ``stratify`` column (no callers to tell apart).
        """
        if not self.keyed:
            return None
        c1 = np.bincount(self.of_stratum, weights=n1, minlength=self.n)
        c0 = np.bincount(self.of_stratum, weights=n0, minlength=self.n)
        judged = (c1 >= MIN_CALLER_EXECUTIONS) & (c0 >= MIN_CALLER_EXECUTIONS) & np.isfinite(z) & np.isfinite(low)
        if not judged.any():
            return ""
        adjusted = np.ones(self.n)
        adjusted[judged] = stats.false_discovery_control(2 * stats.norm.sf(np.abs(z[judged])), method="bh")
        hit = judged & (low > threshold) & (adjusted < self.alpha)
        return ", ".join(self.labels[i] for i in np.flatnonzero(hit))


def _reason_events(sub: pd.DataFrame, bad: np.ndarray, reasons: bool | Sequence[str]) -> list[tuple[str, np.ndarray]]:
    if reasons is False or reasons is None:
        return []
    col = sub["failure_reason"]
    if not isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype("category")
    codes = col.cat.codes.to_numpy()
    names = [str(c) for c in col.cat.categories]
    wanted = sorted(names) if reasons is True else [str(r) for r in reasons]  # by value, not category order
    failed_codes = np.unique(codes[bad])
    out = []
    for name in wanted:  # one event mask per reason: a handful of metrics, not a loop over groups
        if name == NO_REASON:
            out.append((name, bad & (codes < 0)))
        elif name in names:
            code = names.index(name)
            if reasons is not True or code in failed_codes:
                out.append((name, bad & (codes == code)))
        else:
            out.append((name, np.zeros(len(bad), dtype=bool)))
    if reasons is True and (codes[bad] < 0).any():
        out.append((NO_REASON, bad & (codes < 0)))
    return out


def _too_few(nb: int, nc: int, need: int) -> str:
    if min(nb, nc) >= need:
        return ""
    return f"needs {need} executions per version (in strata both served); has {nb} baseline, {nc} candidate"


def _effect_columns(e: Effect) -> dict[str, Any]:
    return {
        "difference": e.difference, "difference_low": e.difference_low, "difference_high": e.difference_high,
        "ratio": e.ratio, "ratio_low": e.ratio_low, "ratio_high": e.ratio_high,
        "statistic": e.statistic, "p_value": e.p_value, "test": e.test,
    }  # fmt: skip


def _quantile_rows(
    values: np.ndarray,
    lat: np.ndarray,
    cand: np.ndarray,
    s: np.ndarray,
    k: int,
    quantile_metrics: list[tuple[str, Any]],
    threshold: float,
    confidence: float,
    min_executions: int,
    min_stratum: int,
    n_resamples: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    qs = np.array([q for _, q in quantile_metrics], dtype=float)
    lc = np.bincount(s[lat & cand], minlength=k)
    lb = np.bincount(s[lat & ~cand], minlength=k)
    # Reweighting needs a few executions of every caller in both arms; thinner callers are left out of
    # both arms (they would carry their baseline weight on a handful of candidate executions).
    ok = (lc >= min_stratum) & (lb >= min_stratum)
    nb, nc = int(lb[ok].sum()), int(lc[ok].sum())
    need = np.array([max(min_executions, min_executions_for_interval(q, confidence)) for q in qs])
    notes = [_too_few(nb, nc, int(n)) for n in need]
    # The values shown are the standardised estimates the effect compares (their ratio is the ratio).
    b_est = c_est = np.full(len(qs), np.nan)
    if nb and nc:
        mix = np.where(ok, lb, 0) / nb
        in_b = lat & ~cand & ok[s]
        in_c = lat & cand & ok[s]
        if all(notes):
            b_est = weighted_quantiles(values[in_b], s[in_b], mix, qs)
            c_est = weighted_quantiles(values[in_c], s[in_c], mix, qs)
        else:
            b_est, c_est, b_rep, c_rep = quantile_bootstrap(
                (values[in_b], s[in_b]), (values[in_c], s[in_c]), mix, qs, n_resamples, rng
            )
    rows = []
    alpha = 1 - confidence
    for j, (name, _) in enumerate(quantile_metrics):
        row = {"metric": name, "baseline_executions": nb, "candidate_executions": nc,
               "baseline_value": float(b_est[j]), "candidate_value": float(c_est[j]), "judged_on": "ratio",
               "threshold": threshold, "strata": int(ok.sum()), "test": "bootstrap"}  # fmt: skip
        if not notes[j]:
            row.update(_effect_columns(bootstrap_effect(b_est[j], c_est[j], b_rep[:, j], c_rep[:, j], alpha)))
        rows.append({**row, "note": notes[j]})
    return rows


def check_stratify_freq(stratify_freq: object) -> None:
    if stratify_freq is None or (isinstance(stratify_freq, str) and stratify_freq == "auto"):
        return
    if not isinstance(stratify_freq, (str, pd.Timedelta)):
        raise ValueError(f"stratify_freq must be 'auto', a fixed length such as '6h', or None; got {stratify_freq!r}")
    freq_ms(stratify_freq, "stratify_freq")


def check_common_arguments(
    *,
    latency_threshold: float,
    failure_threshold: float,
    shift_threshold: float,
    alpha: float,
    confidence: float,
    min_executions: int,
    min_stratum: int,
    n_resamples: int,
    metrics: Sequence[str],
    latency_outcome: str,
) -> None:
    check_confidence(confidence)
    if latency_outcome not in ("succeeded", "all", "failed"):
        raise ValueError(f"latency_outcome must be 'succeeded', 'all' or 'failed', got {latency_outcome!r}")
    check_confidence(alpha, "alpha")
    for name, value in (("latency_threshold", latency_threshold), ("failure_threshold", failure_threshold),
                        ("shift_threshold", shift_threshold)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    for name, value in (("min_executions", min_executions), ("min_stratum", min_stratum),
                        ("n_resamples", n_resamples)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(metrics, str) or not metrics:
        raise ValueError(f"metrics must be a non-empty list of metric names, got {metrics!r}")
    for m in metrics:
        _parse_metric(m)
    check_quantiles([0.5])


def compare_versions(
    df: pd.DataFrame,
    baseline: str,
    candidate: str,
    *,
    resource_rid: str | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    reasons: bool | Sequence[str] = False,
    window: str | tuple[object, object] = "overlap",
    stratify: str | Sequence[str] | None = "caller_rid",
    stratify_freq: str | pd.Timedelta | None = "auto",
    latency_outcome: str = "succeeded",
    latency_threshold: float = 0.10,
    failure_threshold: float = 0.005,
    shift_threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    min_executions: int = 200,
    min_stratum: int = 3,
    n_resamples: int = 1000,
    seed: int = 0,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """Compare a candidate version with a baseline: one row per metric, with effect, interval and verdict.

    See the module docstring for the method and the meaning of each verdict.

    Parameters
    ----------
    df : DataFrame
        The executions table (``start_time``, ``duration_s``, ``status``, ``resource_version`` and the
        ``stratify`` columns; ``failure_reason`` with ``reasons``).
    baseline, candidate : str
        ``resource_version`` values; each must have executions in ``df`` (``ValueError`` otherwise).
    resource_rid : str, optional
        Required when ``df`` holds several resources.
    metrics : sequence of str
        ``"failure_rate"``, percentiles such as ``"p50"``/``"p99.9"``, and ``"distribution"``.
    reasons : bool or sequence of str
        Also compare the rate of each failure reason (``True``: every reason seen; or a list of reasons),
        as rows ``failure_rate[<reason>]``. They join the Benjamini-Hochberg family.
    window : "overlap", "all" or (start, end)
        Which executions to compare; ``"overlap"`` raises ``ValueError`` when the versions never overlapped.
    stratify : str or list of str or None
        Columns to stratify by (callers by default; ``"caller_kind"`` also works); None compares the arms as
        a whole (a naive comparison that a caller-mix change can fool).
    stratify_freq : "auto", str, Timedelta or None
        Also stratify by fixed, epoch-aligned time buckets of ``start_time``, so that a rollout ramping
        through hours of different latency is not mistaken for a version effect. ``"auto"`` (default)
        chooses the bucket from the data (see the module docstring); a length such as ``"6h"`` fixes it;
        None stratifies by ``stratify`` only.
    latency_outcome : {"succeeded", "all", "failed"}
        Whose durations the latency metrics use.
    latency_threshold : float
        Practical threshold on latency ratios: 0.10 means a 10% slowdown matters.
    failure_threshold : float
        Practical threshold on the failure-rate difference, as a proportion (0.005 = 0.5 percentage
        points). Set it from the SLO: for 99.9%, 0.0005 (half the budget) is more sensible.
    shift_threshold : float
        Practical threshold on P(candidate slower) - 0.5 for ``distribution``. It is a threshold on how often
        the candidate is slower, not on by how much, so the slowdown it stands for depends on the spread of
        durations: for log-normal durations of log-sd ``s``, a uniform slowdown ``m`` gives P(slower) - 0.5
        = Phi(ln(m) / (s sqrt 2)) - 0.5, so 0.05 is ``m`` = 1.09 for ``s`` = 0.5, 1.13 for 0.7 and 1.20 for
        1.0. For a threshold in seconds or percent, judge the percentiles.
    alpha : float
        False discovery rate for the Benjamini-Hochberg adjustment over the rows of this call.
    confidence : float
        Level of every interval.
    min_executions : int
        Executions per arm below which a metric is ``insufficient data``.
    min_stratum : int
        Executions per arm a stratum (caller, or caller and time bucket) needs to enter the percentile
        comparison. 3 keeps most executions once time buckets split callers; A/A simulations (steady and
        during rollouts) keep the false-alarm rate under 5% with it.
    n_resamples : int
        Bootstrap resamples for the percentiles.
    seed : int
        Seed of the bootstrap: the same inputs and seed give the same output.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per metric. Columns: ``resource_rid``, ``baseline``, ``candidate`` (str); ``metric`` (str);
        ``baseline_executions``, ``candidate_executions`` (int: executions behind the effect: in callers
        both versions served; for latency metrics, those with a duration of ``latency_outcome``);
        ``baseline_value``, ``candidate_value`` (float: the adjusted estimates the effect compares, so that
        their difference is ``difference`` and their ratio is ``ratio``: failure rates standardised to the
        Mantel-Haenszel weights of the shared strata, percentiles of each version reweighted to the
        baseline's mix of strata; for ``distribution`` 0.5 and the adjusted P(slower); NaN without shared
        strata); ``difference``, ``difference_low``, ``difference_high`` (float:
        caller-adjusted candidate - baseline: rate difference, seconds, or P(slower) - 0.5);
        ``ratio``, ``ratio_low``, ``ratio_high`` (float: caller-adjusted candidate / baseline; NaN for
        ``distribution`` and for failure rates with no failures in an arm); ``judged_on`` ("ratio" or
        "difference"); ``threshold`` (float); ``test`` ("CMH", "bootstrap" or "van Elteren");
        ``statistic`` (float, signed z); ``p_value``, ``p_adjusted`` (float, BH); ``verdict``
        (categorical, one of :data:`VERDICTS`); ``strata`` (int, strata compared: callers, or caller
        x time bucket); ``regressed_callers`` (str or None: the ``stratify`` groups whose own comparison
        is regressed, comma-separated, "" for none; each caller is compared over its own time buckets and
        judged like the pooled row (interval beyond the threshold, p-value Benjamini-Hochberg adjusted over
        the callers below ``alpha``) when it has at least :data:`MIN_CALLER_EXECUTIONS` executions per
        version; for failure rates and ``distribution``; None for percentiles and without ``stratify``);
        ``adjusted_for`` (str, the stratification actually used, e.g.
        "caller_rid, start_time/3h"; "" for none); ``window_start``, ``window_end`` (Timestamp, half-open);
        ``note`` (str, why data were insufficient, else "").

    Raises
    ------
    ValueError
        Unknown baseline or candidate version, the same version twice, several resources without
        ``resource_rid``, no overlap with ``window="overlap"``, unknown metric or bad parameter.
    """
    require_columns(df, ["start_time", "duration_s", "status", "resource_version", *version_sources(stratify),
                         *(["failure_reason"] if reasons else [])], "compare_versions")  # fmt: skip
    check_common_arguments(latency_threshold=latency_threshold, failure_threshold=failure_threshold,
                  shift_threshold=shift_threshold, alpha=alpha, confidence=confidence,
                  min_executions=min_executions, min_stratum=min_stratum, n_resamples=n_resamples,
                  metrics=metrics, latency_outcome=latency_outcome)  # fmt: skip
    check_stratify_freq(stratify_freq)
    df, rid = _select_resource(df, resource_rid, "compare_versions")
    raw = compare_raw(
        df, baseline, candidate, resource_rid=rid, metrics=list(metrics), reasons=reasons, window=window,
        stratify=stratify, stratify_freq=stratify_freq, latency_outcome=latency_outcome,
        latency_threshold=latency_threshold, failure_threshold=failure_threshold, shift_threshold=shift_threshold,
        confidence=confidence, min_executions=min_executions, min_stratum=min_stratum, n_resamples=n_resamples,
        rng=np.random.default_rng(seed), success_statuses=success_statuses, alpha=alpha,
    )  # fmt: skip
    return judge(raw, alpha, list(COMPARISON_COLUMNS))
