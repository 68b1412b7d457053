"""When did a metric shift within a window: change points in the failure rate or a latency percentile.

Executions are counted per fixed time bucket (``freq``; by default chosen per resource, see below) into a few
categories, and the window is cut where
the categories' proportions change, by binary segmentation (Scott and Knott; Killick and Eckley's
``changepoint`` calls it BinSeg) with a likelihood cost:

- ``failure_rate``: two categories, failed and not (the binomial log-likelihood of (failures, executions)
  per bucket).
- ``p50`` / ``p95``: durations binned by their rank at levels near the percentile of interest (p50: the
  quartiles; p95: the 75th, 90th, 95th and 98th percentiles), so the cost depends on durations only through
  their ranks (a nonparametric cost in the spirit of Haynes, Fearnhead and Eckley's ED-PELT) and a single
  slow execution cannot make a change.

By default the mix of callers is held fixed: durations are ranked within their caller, and each bucket's
expected counts follow its own callers' proportions over the window (a Poisson log-linear model whose
per-category multipliers change at the change points). Traffic drifting between callers of different
failure rates or latencies, day and night, is then no change; a change that hits every caller is.

The cost of a stretch is ``-2`` times its maximised log-likelihood, computed from cumulative counts, so every
candidate split of every stretch is evaluated at once. A split is kept when it lowers the cost by more than
the penalty. The penalty is calibrated by simulation on every call: the same buckets (their executions) are
drawn many times with no change at all, and the penalty is the order statistic of the largest cost reduction
any split achieves on them that a further draw exceeds with probability at most ``alpha`` (a Monte Carlo
test), so a window without a change reports one with probability about ``alpha`` whatever its length, traffic
pattern or number of categories. With strata, the simulation's largest reductions have the law of those of a
permutation of the categories within each stratum, which is exact when a stratum's executions behave alike
over the window (ties and thin strata included; the quantiles agree within 1%), so drifting mix leaves the
rate at ``alpha`` (``benchmarks/calibrate_changes.py`` measures it on weeks with diurnal traffic and drifting
caller mix). The interval for each moment comes from
a parametric bootstrap of the fitted two-stretch model around it.

The bucket length matters for the moment: a bucket that holds about one failure cannot say in which hour a
failure rate doubled, and office-hours traffic leaves nights nearly empty. With ``freq="auto"`` (the default)
each resource gets the finest bucket of :data:`AUTO_FREQS` whose *busy bucket* holds enough of the executions
that carry the metric's signal: its failures for ``failure_rate``, its executions above the median for ``p50``
and above the 95th percentile for ``p95`` (expected counts: the busy bucket's executions times the window's
failure rate, or times 0.5 or 0.05). The busy bucket is the one a typical execution falls in, ``sum(n_b ** 2) /
sum(n_b)`` over the window's buckets, so empty nights do not drag it down. The thresholds
(:data:`AUTO_MIN_SIGNAL`) were chosen by simulation: ``python benchmarks/calibrate_changes.py --ladder`` runs
the acceptance steps (failure rate x2, every duration x1.3) on synthetic office-hours weeks of 2,500 to 40,000
executions at every fixed bucket length, and a threshold is the smallest count per busy bucket from which the
moment lands within two buckets of the truth in at least 85% of the detected steps at every traffic level.
The window keeps at least :data:`AUTO_MIN_BUCKETS` buckets, so a week is cut at most into half-days.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from .. import formatting as fmt
from ..timeutil import epoch_ms, to_utc
from ._groups import check_confidence, failed_mask, freq_ms, group_rows, require_columns, start_ms
from ._intervals import order_statistic_ranks, rate_interval

__all__ = ["AUTO_FREQS", "AUTO_MIN_BUCKETS", "AUTO_MIN_SIGNAL", "METRICS", "change_points"]

Metric = Literal["failure_rate", "p50", "p95"]

#: Metrics :func:`change_points` accepts, with the quantile levels their durations are binned at.
METRICS: dict[str, tuple[float, ...]] = {
    "failure_rate": (),
    "p50": (0.25, 0.5, 0.75),
    "p95": (0.75, 0.9, 0.95, 0.98),
}
_QUANTILE = {"p50": 0.5, "p95": 0.95}
#: Bucket lengths ``freq="auto"`` chooses from, finest first (all divide a day, so buckets align to UTC days).
AUTO_FREQS = ("15min", "30min", "1h", "2h", "3h", "4h", "6h", "12h", "1D")
#: Expected executions carrying the metric's signal per busy bucket that ``freq="auto"`` requires: failures for
#: ``failure_rate``, executions above the median for ``p50``, above the 95th percentile for ``p95`` (chosen by
#: simulation, see the module docstring).
AUTO_MIN_SIGNAL: dict[str, float] = {"failure_rate": 12.0, "p50": 30.0, "p95": 3.0}
#: Fewest buckets ``freq="auto"`` leaves in the window (a week: at most 12-hour buckets).
AUTO_MIN_BUCKETS = 12
_SIGNAL_SHARE = {"p50": 0.5, "p95": 0.05}  # share of executions above the percentile
_MAX_BUCKETS = 20_000  # the simulations hold (n_sim x buckets x categories) arrays
_SHARE_STEP = 0.1  # a version's share must move by this much across a change to be named as coinciding

_COLUMNS = [
    "resource_rid", "metric", "period_start", "moment_low", "moment_high", "value_before", "value_after",
    "before_low", "before_high", "after_low", "after_high", "change", "executions_before", "executions_after",
    "adjusted_ratio", "cost_reduction", "penalty", "version", "version_share_before", "version_share_after",
    "new_callers", "new_reasons", "top_reason", "top_reason_rate_before", "top_reason_rate_after", "coincided",
    "share_above_before", "share_above_after", "freq",
]  # fmt: skip


def change_points(
    df: pd.DataFrame,
    *,
    metric: Metric = "failure_rate",
    freq: str | pd.Timedelta = "auto",
    start: object = None,
    end: object = None,
    adjust_for: str | Sequence[str] | None = "caller_rid",
    alpha: float = 0.01,
    max_changes: int = 5,
    min_size: int = 2,
    confidence: float = 0.95,
    n_sim: int = 500,
    seed: int = 0,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> pd.DataFrame:
    """Moments within the data's window where ``metric`` shifted, per resource.

    Parameters
    ----------
    df : DataFrame
        The executions table (``start_time``, ``status``, ``duration_s``; ``resource_rid``,
        ``resource_version``, ``caller_rid``, ``failure_reason`` when present are used to say what
        coincided).
    metric : {"failure_rate", "p50", "p95"}
        What to watch.
    freq : str or Timedelta
        Bucket length (epoch-aligned, as everywhere in :mod:`exec_analytics.analysis`), or ``"auto"`` (the
        default): per resource, the finest of :data:`AUTO_FREQS` whose busy bucket holds enough signal for
        ``metric`` while the window keeps at least :data:`AUTO_MIN_BUCKETS` buckets (the module docstring says
        how, and how the thresholds were chosen); the coarsest such length when none holds enough.
    start, end : str or Timestamp, optional
        The window; default: the buckets from the first to the last execution.
    adjust_for : str or list of str, optional
        Strata whose mix is held fixed (default ``caller_rid``): each stratum keeps its own failure rate or
        duration quantiles, and a change point is a change of all of them together, so traffic moving
        between callers is not a change (:func:`explain_change` reports such mix changes). ``None`` watches
        the raw metric, mix included.
    alpha : float
        Chance of reporting any change in a window without one (the penalty's calibration level, per
        resource and metric).
    max_changes : int
        At most this many change points per resource.
    min_size : int
        Fewest buckets between two change points (and at either end).
    confidence : float
        Level of the intervals (the moment's, and the metric's before and after).
    n_sim : int
        Simulations for the penalty and for each moment's interval.
    seed : int
        Seed of those simulations: the same data and seed give the same answer.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.DataFrame
        One row per change point, by resource and time. Columns: ``resource_rid`` (str), ``metric`` (str),
        ``period_start`` (datetime64[ms, UTC], the first bucket after the shift), ``moment_low``,
        ``moment_high`` (the interval for that bucket's start), ``value_before``, ``value_after`` (the
        metric over the stretches on either side, up to the neighbouring change points: a rate, or seconds),
        ``before_low``, ``before_high``, ``after_low``, ``after_high`` (their intervals: Clopper-Pearson,
        or order statistics), ``change`` (after minus before), ``executions_before``, ``executions_after``
        (int64), ``adjusted_ratio`` (float64: the shift at a fixed mix, which is what is detected; for the
        failure rate, failures over those expected from each stratum's rate, after over before; for a
        percentile, the share of executions above their stratum's percentile, after over before; 1 is no
        shift, and it can disagree in direction with the raw values when the mix moved too),
        ``cost_reduction`` and ``penalty`` (float64: how much better two stretches fit than one,
        and the threshold it beat), ``version`` (the version whose share grew most, when by at least 10
        points, else NA) with ``version_share_before``, ``version_share_after``, ``new_callers`` and
        ``new_reasons`` (str: callers, failure reasons seen after the shift and not before, comma-separated;
        empty when none), ``top_reason`` (the failure reason whose rate moved most) with
        ``top_reason_rate_before``, ``top_reason_rate_after``, ``coincided`` (str, all that in words),
        ``share_above_before``, ``share_above_after`` (float64, percentiles only, else NaN: the share of each
        stretch's executions slower than ``value_before``; it moves when the percentile itself cannot, as with
        durations in whole seconds), and ``freq`` (str: the bucket length used for the resource, e.g.
        ``"4h"``; the moments are bucket starts, so their resolution is this).

    Raises
    ------
    ValueError
        Unknown metric, bad ``freq``, ``alpha``, ``confidence``, ``max_changes``, ``min_size`` or ``n_sim``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    require_columns(df, ["start_time", "status", "duration_s"], "change_points")
    auto = isinstance(freq, str) and freq == "auto"
    fixed = 0 if auto else freq_ms(freq)
    alpha = check_confidence(alpha, "alpha")
    confidence = check_confidence(confidence)
    for name, value, low in (("max_changes", max_changes, 1), ("min_size", min_size, 1), ("n_sim", n_sim, 20)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
    t = start_ms(df)
    # Without bounds, the window is the data's own (numpy's min with initial=0 would start it at the epoch).
    first, last = (int(t.min()), int(t.max())) if len(t) else (0, 0)
    w_start = epoch_ms(to_utc(start, "start")) if start is not None else first
    w_end = epoch_ms(to_utc(end, "end")) if end is not None else last + 1
    ladder = [freq_ms(f) for f in AUTO_FREQS]
    for step in ladder if auto else [fixed]:
        if 0 < _n_buckets(w_start, w_end, step) <= _MAX_BUCKETS:
            break
    else:
        what = "any of " + ", ".join(AUTO_FREQS) if auto else repr(freq)
        raise ValueError(
            f"change_points: the window holds {_n_buckets(w_start, w_end, step)} buckets of {what}; choose a "
            f"freq that gives 1 to {_MAX_BUCKETS:,} (e.g. '1h' for a week)"
        )
    rids = df["resource_rid"] if "resource_rid" in df.columns else pd.Series("", index=df.index)
    rid_codes, rid_values = pd.factorize(rids.astype(object), sort=True)
    rows: list[dict[str, object]] = []
    for r, rid in enumerate(rid_values):
        # One stream per resource, keyed by its RID: a resource's answer does not depend on the others loaded.
        rng = np.random.default_rng([seed, zlib.crc32(str(rid).encode())])
        mine = rid_codes == r
        if auto:
            inside = mine & (t >= w_start) & (t < w_end)
            step = _auto_step(df.loc[inside], t[inside], metric, w_start, w_end, ladder, success_statuses)
        lo, hi = w_start // step, -(-w_end // step)
        mask = mine & (t >= lo * step) & (t < hi * step)
        part = df.loc[mask]
        bucket = (t[mask] // step - lo).astype(np.intp)
        strata = (
            group_rows(part, adjust_for, func="change_points").codes
            if adjust_for is not None
            else np.zeros(len(part), dtype=np.intp)
        )
        k, category, keep = _categories(part, metric, strata, success_statuses)
        size = hi - lo
        y = np.bincount(bucket[keep] * k + category[keep], minlength=size * k).reshape(size, k).astype(np.float64)
        if y.sum() == 0:
            continue
        # Expected counts: each bucket's executions of each stratum times the stratum's window proportions.
        n_s = int(strata.max(initial=0)) + 1
        by_stratum = np.bincount(strata[keep] * k + category[keep], minlength=n_s * k).reshape(n_s, k)
        props = by_stratum / np.maximum(by_stratum.sum(axis=1, keepdims=True), 1)
        mix = np.bincount(bucket[keep] * n_s + strata[keep], minlength=size * n_s).reshape(size, n_s)
        e = mix @ props
        penalty = _null_penalty(y, e, min_size, alpha, n_sim, rng)
        cuts = _segment(y, e, penalty, min_size, max_changes)
        bounds = [0, *cuts, len(y)]
        for i, tau in enumerate(cuts):
            a, b = bounds[i], bounds[i + 2]
            gain = float(_gains(y[a:b], e[a:b], min_size)[tau - a])
            at_mix = _adjusted(y[a:tau], e[a:tau], metric), _adjusted(y[tau:b], e[tau:b], metric)
            ratio = at_mix[1] / at_mix[0] if at_mix[0] > 0 else np.nan
            low_b, high_b = _moment_interval(y[a:b], e[a:b], tau - a, min_size, confidence, n_sim, rng)
            before = (bucket >= a) & (bucket < tau)
            after = (bucket >= tau) & (bucket < b)
            row: dict[str, object] = {
                "resource_rid": str(rid), "metric": metric,
                "period_start": _ts((lo + tau) * step), "moment_low": _ts((lo + a + low_b) * step),
                "moment_high": _ts((lo + a + high_b) * step), "adjusted_ratio": ratio, "cost_reduction": gain,
                "penalty": penalty,
            }  # fmt: skip
            row.update(_values(part, before, after, metric, success_statuses, confidence))
            row.update(_coincided(part, before, after, success_statuses))
            row["freq"] = _freq_label(step)
            rows.append(row)
    out = pd.DataFrame(rows, columns=_COLUMNS)
    for c in ("period_start", "moment_low", "moment_high"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ms, UTC]")
    for c in ("resource_rid", "metric", "version", "new_callers", "new_reasons", "top_reason", "coincided", "freq"):
        out[c] = out[c].astype("string")
    for c in ("executions_before", "executions_after"):
        out[c] = out[c].astype(np.int64)
    result: pd.DataFrame = out
    return result


def _n_buckets(start: int, end: int, step: int) -> int:
    """Epoch-aligned buckets of ``step`` ms that the window [start, end) touches."""
    return -(-end // step) - start // step


def _auto_step(
    part: pd.DataFrame,
    t: np.ndarray,
    metric: str,
    start: int,
    end: int,
    ladder: list[int],
    success_statuses: Iterable[str] | str,
) -> int:
    """The finest bucket of ``ladder`` (ms) whose busy bucket holds :data:`AUTO_MIN_SIGNAL` of ``metric``.

    The busy bucket holds ``sum(n_b ** 2) / sum(n_b)`` executions (the bucket a typical execution is in); its
    signal is that times the window's failure rate, or times the share above the percentile. Only lengths that
    leave at least :data:`AUTO_MIN_BUCKETS` buckets (and at most ``_MAX_BUCKETS``) are candidates; the coarsest
    of them wins when none holds enough, the finest length when the window is too short for any.
    """
    usable = [s for s in ladder if AUTO_MIN_BUCKETS <= _n_buckets(start, end, s) <= _MAX_BUCKETS]
    if not usable:
        return next(s for s in ladder if _n_buckets(start, end, s) <= _MAX_BUCKETS)
    if metric == "failure_rate":
        share = float(failed_mask(part, success_statuses).mean()) if len(part) else 0.0
        counted = t
    else:
        known = ~np.isnan(part["duration_s"].to_numpy(dtype=np.float64))
        share, counted = _SIGNAL_SHARE[metric], t[known]
    for s in usable:
        n = np.bincount(counted // s - start // s).astype(np.float64)
        busy = float((n**2).sum() / n.sum()) if n.sum() else 0.0
        if busy * share >= AUTO_MIN_SIGNAL[metric]:
            return s
    return usable[-1]


def _freq_label(ms: int) -> str:
    """A bucket length in pandas' words: ``"15min"``, ``"4h"``, ``"1D"``."""
    for unit, size in (("D", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _ts(ms: int) -> pd.Timestamp:
    ts: pd.Timestamp = pd.Timestamp(ms, unit="ms", tz="UTC")
    return ts


def _adjusted(y: np.ndarray, e: np.ndarray, metric: str) -> float:
    """The metric of a stretch at a fixed mix: failures over those expected, or the share of executions
    above their stratum's percentile."""
    if metric == "failure_rate":
        return float(y[:, 1].sum() / max(e[:, 1].sum(), 1e-300))
    above = METRICS[metric].index(_QUANTILE[metric]) + 1
    return float(y[:, above:].sum() / max(y.sum(), 1.0))


def _categories(
    part: pd.DataFrame, metric: str, strata: np.ndarray, success_statuses: Iterable[str] | str
) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of categories, each execution's category, and which executions count.

    Durations are binned by their mid-rank within their stratum (a caller, or the whole window), so the bins
    are the stratum's own quantiles at the metric's levels and ties never split arbitrarily.
    """
    if metric == "failure_rate":
        return 2, failed_mask(part, success_statuses).astype(np.intp), np.ones(len(part), dtype=bool)
    dur = part["duration_s"].to_numpy(dtype=np.float64)
    keep = ~np.isnan(dur)
    d, g = dur[keep], strata[keep]
    order = np.lexsort((d, g))
    ds, gs = d[order], g[order]
    n = len(ds)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (ds[1:] != ds[:-1]) | (gs[1:] != gs[:-1])
    run = np.cumsum(new_run) - 1
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], n) - 1
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = gs[1:] != gs[:-1]
    g_first = np.flatnonzero(new_group)
    g_size = np.diff(np.append(g_first, n))
    g_index = np.cumsum(new_group) - 1
    # Mid-rank within the stratum, as a fraction in (0, 1).
    mid = (first[run] + last[run]) / 2.0 - g_first[g_index] + 0.5
    u = np.empty(n)
    u[order] = mid / g_size[g_index]
    category = np.zeros(len(part), dtype=np.intp)
    category[keep] = np.searchsorted(np.array(METRICS[metric]), u, side="right")
    return len(METRICS[metric]) + 1, category, keep


def _cost(cy: np.ndarray, ce: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """-2 x the maximised log-likelihood of buckets [a, b), up to terms that cancel in any split's gain.

    Counts per bucket and category are Poisson with means ``theta_k x expected``, ``theta_k`` fitted per
    stretch; without strata the expected counts are the bucket's executions times the window's pooled
    proportions, and this is the multinomial (binomial, for two categories) likelihood.
    """
    s = cy[..., b, :] - cy[..., a, :]
    e = ce[..., b, :] - ce[..., a, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        ll = np.where(s > 0, s * np.log(s / np.where(e > 0, e, 1.0)), 0.0).sum(axis=-1)
    out: np.ndarray = -2.0 * ll
    return out


def _cumulative(y: np.ndarray) -> np.ndarray:
    """Cumulative counts along the bucket axis with a leading zero row."""
    pad = np.zeros((*y.shape[:-2], 1, y.shape[-1]))
    return np.concatenate([pad, np.cumsum(y, axis=-2)], axis=-2)


def _gains(y: np.ndarray, e: np.ndarray, min_size: int) -> np.ndarray:
    """Cost reduction of splitting ``y`` (buckets, or a batch of them) before each bucket; -inf where barred."""
    n = y.shape[-2]
    cy, ce = _cumulative(y), _cumulative(e)
    tau = np.arange(n + 1)
    whole = _cost(cy, ce, np.array([0]), np.array([n]))
    gain = whole - _cost(cy, ce, np.zeros_like(tau), tau) - _cost(cy, ce, tau, np.full_like(tau, n))
    allowed = (tau >= min_size) & (tau <= n - min_size)
    # A split needs executions on both sides, else it "explains" nothing but costs nothing either.
    both = (cy[..., tau, :].sum(axis=-1) > 0) & ((cy[..., -1:, :] - cy[..., tau, :]).sum(axis=-1) > 0)
    out: np.ndarray = np.where(allowed & both, gain, -np.inf)
    return out


def _segment(y: np.ndarray, e: np.ndarray, penalty: float, min_size: int, max_changes: int) -> list[int]:
    """Binary segmentation: split the stretch whose best split reduces the cost most, while above penalty."""
    cuts: list[int] = []
    pending = [(0, len(y))]
    candidates: list[tuple[float, int, int, int]] = []
    while len(cuts) < max_changes:
        for a, b in pending:
            if b - a >= 2 * min_size:
                g = _gains(y[a:b], e[a:b], min_size)
                best = int(np.argmax(g))
                if np.isfinite(g[best]) and g[best] > penalty:
                    candidates.append((float(g[best]), a, b, a + best))
        if not candidates:
            break
        candidates.sort()
        _, a, b, tau = candidates.pop()
        cuts.append(tau)
        pending = [(a, tau), (tau, b)]
    return sorted(cuts)


def _draw(n_t: np.ndarray, probs: np.ndarray, n_sim: int, rng: np.random.Generator) -> np.ndarray:
    """``n_sim`` tables of counts: each bucket's executions spread over categories with its probabilities."""
    # One binomial per category, conditional on what the earlier ones took: K vectorised draws instead of a
    # multinomial per bucket and simulation.
    out = np.empty((n_sim, *probs.shape))
    left = np.broadcast_to(n_t, (n_sim, len(n_t))).astype(np.int64)
    mass = np.ones(len(n_t))
    for k in range(probs.shape[1] - 1):
        share = np.clip(probs[:, k] / np.maximum(mass, 1e-300), 0.0, 1.0)
        out[..., k] = rng.binomial(left, share)
        left = left - out[..., k].astype(np.int64)
        mass = mass - probs[:, k]
    out[..., -1] = left
    return out


def _bucket_probs(y: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_t = y.sum(axis=1)
    probs = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-300)
    probs[n_t == 0] = 1.0 / y.shape[1]
    return n_t.astype(np.int64), probs


def _null_penalty(
    y: np.ndarray, e: np.ndarray, min_size: int, alpha: float, n_sim: int, rng: np.random.Generator
) -> float:
    """The 1 - alpha quantile of the best split's cost reduction when nothing changes (simulated).

    Each simulation keeps every bucket's executions (and, with strata, its mix) and draws their categories
    from the expected proportions, so traffic patterns (diurnal cycles, empty nights) are those of the data.
    """
    n_t, probs = _bucket_probs(y, e)
    sims = _draw(n_t, probs, n_sim, rng)
    best = _gains(sims, n_t[:, None] * probs, min_size).max(axis=-1)
    best = np.sort(np.where(np.isfinite(best), best, 0.0))
    # A window without a change is one more draw of the same law: it beats the r-th smallest of n draws with
    # probability (n + 1 - r) / (n + 1), so r = ceil((n + 1)(1 - alpha)) keeps that at most alpha (an
    # interpolated quantile would exceed the r - 1-th draw's share: 1.2% rather than 1.0% at n = 500).
    r = min(int(np.ceil((len(best) + 1) * (1 - alpha) - 1e-9)), len(best))
    return float(best[r - 1])


def _moment_interval(
    y: np.ndarray, e: np.ndarray, tau: int, min_size: int, confidence: float, n_sim: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Bucket offsets bounding the moment: quantiles of the split found on data simulated from the fit.

    The fit is the two stretches around the change, each with its own category multipliers, on the same
    buckets' traffic (and mix).
    """
    n_t, probs = _bucket_probs(y, e)
    after = np.arange(len(y)) >= tau
    for side in (~after, after):
        theta = y[side].sum(axis=0) / np.maximum(e[side].sum(axis=0), 1e-300)
        tilted = probs[side] * theta[None, :]
        probs[side] = tilted / np.maximum(tilted.sum(axis=1, keepdims=True), 1e-300)
    sims = _draw(n_t, probs, n_sim, rng)
    found = np.argmax(_gains(sims, e, min_size), axis=-1)
    err = found - tau
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(err, [tail, 1 - tail], method="inverted_cdf")
    return int(min(tau + lo, tau)), int(max(tau + hi, tau))


def _values(
    part: pd.DataFrame,
    before: np.ndarray,
    after: np.ndarray,
    metric: str,
    success_statuses: Iterable[str] | str,
    confidence: float,
) -> dict[str, object]:
    """The metric with its interval over the stretches either side of a change."""
    out: dict[str, object] = {"share_above_before": np.nan, "share_above_after": np.nan}
    if metric == "failure_rate":
        failed = failed_mask(part, success_statuses)
        n = np.array([before.sum(), after.sum()])
        x = np.array([failed[before].sum(), failed[after].sum()])
        low, high = rate_interval(x, n, confidence)
        value = x / np.maximum(n, 1)
    else:
        dur = part["duration_s"].to_numpy(dtype=np.float64)
        q = _QUANTILE[metric]
        sides = [np.sort(dur[m & ~np.isnan(dur)]) for m in (before, after)]
        n = np.array([len(s) for s in sides])
        value = np.array([np.quantile(s, q) if len(s) else np.nan for s in sides])
        r_lo, r_hi = order_statistic_ranks(n, np.array([q]), confidence)
        low = np.array([s[int(r) - 1] if np.isfinite(r) else np.nan for s, r in zip(sides, r_lo[:, 0], strict=True)])
        high = np.array([s[int(r) - 1] if np.isfinite(r) else np.nan for s, r in zip(sides, r_hi[:, 0], strict=True)])
        # Durations in whole seconds can leave the percentile where it was while the shift is real: the share
        # above the earlier value says what moved.
        above = [float((s > value[0]).mean()) if len(s) else np.nan for s in sides]
        out.update(share_above_before=above[0], share_above_after=above[1])
    out.update({
        "value_before": float(value[0]), "value_after": float(value[1]), "before_low": float(low[0]),
        "before_high": float(high[0]), "after_low": float(low[1]), "after_high": float(high[1]),
        "change": float(value[1] - value[0]), "executions_before": int(n[0]), "executions_after": int(n[1]),
    })  # fmt: skip
    return out


def _coincided(
    part: pd.DataFrame, before: np.ndarray, after: np.ndarray, success_statuses: Iterable[str] | str
) -> dict[str, object]:
    """Versions reaching a share, callers and failure reasons appearing, the reason that moved most."""
    out: dict[str, object] = {"version": None, "version_share_before": np.nan, "version_share_after": np.nan,
                              "new_callers": "", "new_reasons": "", "top_reason": None,
                              "top_reason_rate_before": np.nan, "top_reason_rate_after": np.nan}  # fmt: skip
    words: list[str] = []
    n_b, n_a = max(int(before.sum()), 1), max(int(after.sum()), 1)
    if "resource_version" in part.columns:
        vb = part.loc[before, "resource_version"].astype(object).value_counts() / n_b
        va = part.loc[after, "resource_version"].astype(object).value_counts() / n_a
        moved = va.sub(vb, fill_value=0.0)
        if len(moved) and moved.max() >= _SHARE_STEP:
            v = moved.idxmax()  # the version that gained most: a rollout reads from the new version's side
            out.update(version=fmt.text(v), version_share_before=float(vb.get(v, 0.0)),
                       version_share_after=float(va.get(v, 0.0)))  # fmt: skip
            words.append(
                f"version {fmt.text(v)} went from {fmt.percent(vb.get(v, 0.0), 0)} to "
                f"{fmt.percent(va.get(v, 0.0), 0)} of executions"
            )
    for column, key, label, rows in (
        ("caller_rid", "new_callers", "caller", np.ones(len(part), dtype=bool)),
        ("failure_reason", "new_reasons", "failure reason", failed_mask(part, success_statuses)),
    ):
        if column not in part.columns:
            continue
        values = part[column].astype(object)
        seen = set(values[before & rows].dropna())
        new = values[after & rows].dropna()
        new = new[~new.isin(seen)].value_counts()
        new = new[new >= 5]  # one or two executions of a caller are not a caller "appearing"
        if len(new):
            names = [fmt.text(v) for v in new.index[:3]]
            out[key] = ", ".join(names)
            words.append(f"new {label}{'s' if len(names) > 1 else ''} {', '.join(names)}")
    if "failure_reason" in part.columns:
        failed = failed_mask(part, success_statuses)
        reasons = part["failure_reason"].astype(object)
        rb = reasons[before & failed].value_counts() / n_b
        ra = reasons[after & failed].value_counts() / n_a
        diff = ra.sub(rb, fill_value=0.0)
        if len(diff):
            k = diff.abs().idxmax()
            out.update(top_reason=fmt.text(k), top_reason_rate_before=float(rb.get(k, 0.0)),
                       top_reason_rate_after=float(ra.get(k, 0.0)))  # fmt: skip
            if _significant(rb.get(k, 0.0) * n_b, n_b, ra.get(k, 0.0) * n_a, n_a):
                words.append(f"{fmt.text(k)} failures {fmt.percent(rb.get(k, 0.0))} -> {fmt.percent(ra.get(k, 0.0))}")
    out["coincided"] = "; ".join(words)
    return out


def _significant(x0: float, n0: int, x1: float, n1: int) -> bool:
    """Whether two rates differ at the 1% level (Fisher's exact test): a reason named must have moved."""
    table = np.array([[round(x0), n0 - round(x0)], [round(x1), n1 - round(x1)]])
    return bool(stats.fisher_exact(table).pvalue < 0.01)
