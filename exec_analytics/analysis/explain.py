"""Why did the failure rate (or a latency percentile) change between two periods: mix or within?

The failure rate of a period is a weighted mean over segments (callers, say): ``R = sum_c w_c r_c`` with
``w_c`` a segment's share of executions and ``r_c`` its failure rate. Between a previous period (0) and a
period (1) the change splits exactly, segment by segment (Das Gupta's symmetric form of Kitagawa's
decomposition, which needs no interaction term)::

    R1 - R0 = sum_c (w1_c - w0_c) * (rbar_c - Rbar)      mix: traffic moved between segments
            + sum_c wbar_c * (r1_c - r0_c)                within: a segment itself got worse

with ``rbar_c``, ``wbar_c`` the means of both periods and ``Rbar = (R0 + R1) / 2`` (centring changes no sum,
since the share changes add up to zero, but makes each segment's mix part read "a segment with a higher
rate than average grew"). A segment present in one period only has no rate in the other; it is given the
rate it has, so all of its contribution is mix (it appeared or left), none within.

Versions are not mix segments: a version is *where* a within change happened. A caller's within change is
split exactly between the versions that served it in the period, ``wbar_c * u1_cv * (r1_cv - r0_c)`` with
``u1_cv`` the caller's share on version ``v``, so a new version is compared with how the same callers did
before it. A rollout that only moves traffic (the candidate serves the slow callers first) therefore has no
within part, and a regression of the new version is within that version. The failure rate is the sum of
per-reason rates, so every part above also splits exactly by failure reason (a reason's within part is its
own rate change).

Latency percentiles do not add up over segments; there the counterfactual is the period's percentile with
its executions reweighted to the previous period's segment shares: ``Q1 - Q0 = (Q1 - Qcf) + (Qcf - Q0)``,
mix then within.

Intervals come from a seeded Poisson bootstrap of the counts (and of the executions, for percentiles), so they
are deterministic given the data and the seed. A row is a cause when it differs from zero after Holm's
correction over every row of the table (so a quiet week reads "nothing changed", and a change lists no false
cause, each with probability at least ``1 - alpha``) and it is material: at least ``min_rate_change`` of the
failure rate, or ``min_latency_change`` of the percentile. A regression offset by an improvement elsewhere (an
incident ending) is listed with it, even when the total did not move.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .. import formatting as fmt
from ..timeutil import epoch_ms, validate_window
from ._groups import (
    as_list,
    check_confidence,
    check_quantiles,
    failed_mask,
    group_rows,
    percentile_names,
    require_columns,
    start_ms,
    value_ordered,
)

__all__ = ["ChangeExplanation", "explain_change"]

_VERSION = "resource_version"
_REASON = "failure_reason"
_MAX_CAUSES = 4  # causes named in a sentence; the table lists them all
_LATENCY_BOOT_CHUNK = 25  # bootstrap replicates of the percentiles per block: bounds the (block x rows) arrays


@dataclass(frozen=True)
class ChangeExplanation:
    """The change between two periods, decomposed.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per part (see :func:`explain_change` for the columns).
    sentences : list of str
        Plain sentences for a report: the headline change, then its causes, largest first.
    changed : bool
        Whether anything is a cause (the total of a metric included).
    """

    table: pd.DataFrame
    sentences: list[str] = field(default_factory=list)
    changed: bool = False


def explain_change(
    df: pd.DataFrame,
    period: tuple[object, object],
    previous: tuple[object, object],
    *,
    by: str | Sequence[str] = (_VERSION, "caller_rid", _REASON),
    percentiles: float | Sequence[float] | None = (0.5, 0.95),
    confidence: float = 0.95,
    alpha: float = 0.05,
    min_rate_change: float = 0.001,
    min_latency_change: float = 0.05,
    n_boot: int = 400,
    seed: int = 0,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> ChangeExplanation:
    """Decompose the change of the failure rate (and latency percentiles) from ``previous`` to ``period``.

    Parameters
    ----------
    df : DataFrame
        The executions table; it must hold both windows (other rows are ignored).
    period, previous : (start, end)
        Half-open UTC windows on ``start_time``, e.g. this week and last week.
    by : str or list of str
        Which segments to consider. ``resource_version`` (where within changes happened) and
        ``failure_reason`` (split of every part by reason) play the roles described in the module
        docstring; every other column (``caller_rid``, ``caller_kind`` ...) defines the mix segments
        (their combinations when several). Without any, there is one segment and no mix part.
    percentiles : float or list of float, optional
        Latency percentiles to explain (``None``: none).
    confidence : float
        Level of the intervals.
    alpha : float
        Family-wise error rate for calling a change and listing causes (see the module docstring).
    min_rate_change : float
        Smallest change of the failure rate (a fraction: 0.001 is 0.1 percentage point) that counts as a
        change; smaller ones, however certain, read "nothing changed".
    min_latency_change : float
        Same for percentiles, relative to the previous period's value (0.05: 5%).
    n_boot : int
        Bootstrap replicates (at least 50).
    seed : int
        Seed of the bootstrap: the same data and seed give the same table.
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    ChangeExplanation
        ``table`` columns: ``metric`` (``failure_rate`` or ``p50``, ``p95`` ...), ``component`` (``total``,
        ``mix`` or ``within``), ``by`` (the column the segment belongs to: the mix key, names joined with
        ``" x "``; ``resource_version``, ``failure_reason``; NA for totals), ``segment`` (str, the segment's
        value; NA for totals), ``failure_reason`` (str; for rows of one version split by reason, NA otherwise),
        ``contribution`` (float64: fraction of executions for rates, seconds for percentiles), ``low``, ``high``
        (the interval), ``p_value`` (two-sided, bootstrap normal), ``p_adjusted`` (Holm over all rows), ``cause``
        (bool: significant and material), ``share_previous``, ``share_period`` (the
        segment's share of executions: of all for mix segments and versions, NA otherwise), ``value_previous``,
        ``value_period`` (the segment's failure rate, or the percentile: for a version, ``value_previous`` is
        how the same callers did in the previous period; for a version and a reason, the rate of failures with
        that reason, likewise; for a percentile, the counterfactual is the
        ``value_period`` of its ``within`` row and the ``value_previous`` of its ``mix`` row),
        ``executions_previous``, ``executions_period`` (int64). Rows of one metric add up exactly: the ``mix``
        and ``within`` rows of the mix key sum to the ``total``, and the ``within`` rows by version, by reason
        or by version and reason each sum to the within part.

    Raises
    ------
    ValueError
        Missing columns, overlapping or empty windows, bad ``confidence``, ``alpha`` or ``n_boot``.
    """
    names = as_list(by)
    needed = ["start_time", "status", *(["duration_s"] if percentiles is not None else []), *names]
    require_columns(df, [n for n in needed if n != "caller_kind"], "explain_change")
    confidence = check_confidence(confidence)
    alpha = check_confidence(alpha, "alpha")
    q = None if percentiles is None else check_quantiles(percentiles)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 50:
        raise ValueError(f"n_boot must be an integer of at least 50, got {n_boot!r}")
    p_start, p_end = validate_window(*period)
    q_start, q_end = validate_window(*previous)
    if p_start < q_end and q_start < p_end:
        raise ValueError("explain_change: period and previous overlap; compare two disjoint windows")
    t = start_ms(df)
    in_prev = (t >= epoch_ms(q_start)) & (t < epoch_ms(q_end))
    in_cur = (t >= epoch_ms(p_start)) & (t < epoch_ms(p_end))
    sub = df.loc[in_prev | in_cur]
    cur = in_cur[in_prev | in_cur]
    if not cur.any() or cur.all():
        raise ValueError("explain_change: both windows need executions")
    rng = np.random.default_rng(seed)

    mix_names = [n for n in names if n not in (_VERSION, _REASON)]
    # Value-ordered codes: the bootstrap draws per cell, so cells must not depend on category order.
    mix = value_ordered(group_rows(sub, mix_names, func="explain_change"))
    mix_label = " x ".join(mix_names) if mix_names else None
    mix_values = _labels(mix.keys, mix_names)
    ver = value_ordered(group_rows(sub, [_VERSION] if _VERSION in names else [], func="explain_change"))
    ver_values = _labels(ver.keys, [_VERSION] if _VERSION in names else [])
    failed = failed_mask(sub, success_statuses)
    if _REASON in names:
        reasons = value_ordered(group_rows(sub.loc[failed], [_REASON], func="explain_change"))
        reason_values = [fmt.text(v, fmt.NO_REASON) for v in reasons.keys[_REASON]]
        outcome = np.full(len(sub), len(reason_values), dtype=np.intp)
        outcome[failed] = reasons.codes
    else:
        reason_values = []
        outcome = np.where(failed, 0, 1).astype(np.intp)
    k = max(len(reason_values), 1)
    shape = (2, mix.n_groups, ver.n_groups, k + 1)
    flat = np.ravel_multi_index((cur.astype(np.intp), mix.codes, ver.codes, outcome), shape)
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.float64)

    point = _decompose(counts[None])
    # Half a failure of every reason in every cell with executions: a rate of 0 in 100 executions is not
    # known exactly, and a bootstrap that never draws a failure there would call its change certain.
    means = counts.copy()
    means[..., :-1] += np.where(counts.sum(axis=-1, keepdims=True) > 0, 0.5, 0.0)
    boot = _decompose(rng.poisson(np.broadcast_to(means, (n_boot, *shape))).astype(np.float64))
    rows = _rate_rows(point, boot, counts, mix_label, mix_values, ver_values, reason_values, _VERSION in names)
    if q is not None:
        rows += _latency_rows(sub, cur, mix.codes, mix.n_groups, mix_label, q, n_boot, rng)
    table = pd.DataFrame(rows)
    table = _finish(table, confidence, alpha, min_rate_change, min_latency_change)
    changed = bool(table["cause"].any())
    return ChangeExplanation(table, _sentences(table, mix_label), changed)


def _labels(keys: pd.DataFrame, names: list[str]) -> list[str]:
    if not names:
        return ["all"]
    parts = [[fmt.text(v, fmt.NO_CALLER if n == "caller_rid" else fmt.MISSING) for v in keys[n]] for n in names]
    return [" x ".join(p) for p in zip(*parts, strict=True)]


def _decompose(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Mix and within parts for a batch of count tables ``(B, period, segment, version, reasons + 1)``.

    The last outcome slot counts successes. Returns arrays with the batch axis first.
    """
    k = counts.shape[-1] - 1
    n_pc = counts.sum(axis=(3, 4))  # (B, 2, C)
    total = n_pc.sum(axis=2)  # (B, 2)
    w = n_pc / total[:, :, None]
    fails = counts[..., :k].sum(axis=3)  # (B, 2, C, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = fails / n_pc[..., None]
    # A segment seen in one period only keeps its one rate in both: its contribution is all mix.
    r0 = np.where(n_pc[:, 0, :, None] > 0, r[:, 0], r[:, 1])
    r1 = np.where(n_pc[:, 1, :, None] > 0, r[:, 1], r[:, 0])
    r0 = np.nan_to_num(r0)
    r1 = np.nan_to_num(r1)
    rate0 = fails[:, 0].sum(axis=1) / total[:, 0, None]  # (B, K)
    rate1 = fails[:, 1].sum(axis=1) / total[:, 1, None]
    centre = (rate0 + rate1) / 2
    w0, w1 = w[:, 0, :, None], w[:, 1, :, None]
    mix = (w1 - w0) * ((r0 + r1) / 2 - centre[:, None, :])  # (B, C, K)
    wbar = (w0 + w1) / 2
    within = wbar * (r1 - r0)
    n_cv = counts[:, 1].sum(axis=3)  # (B, C, V): the period's executions per segment and version
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.nan_to_num(n_cv / n_pc[:, 1, :, None])
        r_cv = np.nan_to_num(counts[:, 1, ..., :k] / n_cv[..., None])  # (B, C, V, K)
    within_v = wbar[:, :, None, :] * u[..., None] * (r_cv - r0[:, :, None, :])
    # A segment absent from the period has no versions; its within part is zero by construction above.
    return {
        "rate0": rate0,
        "rate1": rate1,
        "mix": mix,
        "within": within,
        "within_v": within_v,
        "w0": w[:, 0],
        "w1": w[:, 1],
        "r0": r0.sum(axis=2),
        "r1": r1.sum(axis=2),
        "n_cv": n_cv,
        "r0_c": r0,
    }


def _rate_rows(
    point: dict[str, np.ndarray],
    boot: dict[str, np.ndarray],
    counts: np.ndarray,
    mix_label: str | None,
    mix_values: list[str],
    ver_values: list[str],
    reason_values: list[str],
    has_version: bool,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    n_pc = counts.sum(axis=(2, 3))  # (2, C)
    n_v = counts.sum(axis=(1, 3))  # (2, V)

    def add(component: str, by: str | None, segment: str | None, reason: str | None, est: float,
            draws: np.ndarray, **extra: object) -> None:  # fmt: skip
        rows.append({"metric": "failure_rate", "component": component, "by": by, "segment": segment,
                     "failure_reason": reason, "contribution": float(est), "_draws": draws, **extra})  # fmt: skip

    p, b = point, boot
    total_p = float((p["rate1"] - p["rate0"]).sum())
    add("total", None, None, None, total_p, (b["rate1"] - b["rate0"]).sum(axis=1),
        value_previous=float(p["rate0"].sum()), value_period=float(p["rate1"].sum()),
        executions_previous=int(n_pc[0].sum()), executions_period=int(n_pc[1].sum()))  # fmt: skip
    seg_info = {
        "share_previous": p["w0"][0], "share_period": p["w1"][0], "value_previous": p["r0"][0],
        "value_period": p["r1"][0], "executions_previous": n_pc[0], "executions_period": n_pc[1],
    }  # fmt: skip
    if mix_label is not None:
        for part in ("mix", "within"):
            est, draws = p[part][0].sum(axis=1), b[part].sum(axis=2)
            for c, name in enumerate(mix_values):
                add(part, mix_label, name, None, est[c], draws[:, c], **{k: v[c] for k, v in seg_info.items()})
    if has_version:
        est, draws = p["within_v"][0].sum(axis=(0, 2)), b["within_v"].sum(axis=(1, 3))
        n_cv = p["n_cv"][0]  # (C, V)
        with np.errstate(invalid="ignore", divide="ignore"):
            # How the version's callers did in the previous period, weighted like the version's traffic now.
            before = (n_cv[:, :, None] * p["r0_c"][0][:, None, :]).sum(axis=(0, 2)) / n_cv.sum(axis=0)
            now = counts[1, :, :, :-1].sum(axis=(0, 2)) / n_v[1]
            # The same per reason: how the version's callers failed with it before, and the version now.
            before_k = (n_cv[:, :, None] * p["r0_c"][0][:, None, :]).sum(axis=0) / n_cv.sum(axis=0)[:, None]
            now_k = counts[1, :, :, :-1].sum(axis=0) / n_v[1][:, None]  # (V, K)
        shares = n_v / n_v.sum(axis=1, keepdims=True)
        for v, name in enumerate(ver_values):
            if n_v[1, v] == 0:
                continue  # a version gone by the period: nothing happened within it
            add("within", _VERSION, name, None, est[v], draws[:, v], share_previous=shares[0, v],
                share_period=shares[1, v], value_previous=before[v], value_period=now[v],
                executions_previous=int(n_v[0, v]), executions_period=int(n_v[1, v]))  # fmt: skip
            if reason_values:
                est_k, draws_k = p["within_v"][0][:, v].sum(axis=0), b["within_v"][:, :, v].sum(axis=1)
                for k, reason in enumerate(reason_values):
                    add("within", _VERSION, name, reason, est_k[k], draws_k[:, k], value_previous=before_k[v, k],
                        value_period=now_k[v, k], executions_previous=int(n_v[0, v]),
                        executions_period=int(n_v[1, v]))  # fmt: skip
    if reason_values:
        est, draws = p["within"][0].sum(axis=0), b["within"].sum(axis=1)
        rate0, rate1 = p["rate0"][0], p["rate1"][0]
        for k, reason in enumerate(reason_values):
            add("within", _REASON, reason, None, est[k], draws[:, k], value_previous=rate0[k],
                value_period=rate1[k])  # fmt: skip
    return rows


def _latency_rows(
    sub: pd.DataFrame,
    cur: np.ndarray,
    seg: np.ndarray,
    n_seg: int,
    mix_label: str | None,
    q: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """Observed, counterfactual (previous mix) and previous percentiles, with bootstrap draws."""
    dur = sub["duration_s"].to_numpy(dtype=np.float64)
    known = ~np.isnan(dur)
    parts = []
    for side in (False, True):
        m = known & (cur == side)
        order = np.lexsort((seg[m], dur[m]))  # ties by segment: the bootstrap must not see the row order
        parts.append((dur[m][order], seg[m][order]))
    (d0, s0), (d1, s1) = parts
    if len(d0) == 0 or len(d1) == 0:
        return []
    n0 = np.bincount(s0, minlength=n_seg).astype(np.float64)
    n1 = np.bincount(s1, minlength=n_seg).astype(np.float64)
    # Reweight the period's executions to the previous shares; segments absent from either side drop out.
    both = (n0 > 0) & (n1 > 0)
    share0 = np.where(both, n0, 0.0) / np.where(both, n0, 0.0).sum()
    cf_weight = np.where(both, share0 / np.maximum(n1, 1.0), 0.0)[s1]

    def quant(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Inverted-CDF weighted quantiles of sorted ``values``, per row of ``weights``: shape (B, len(q))."""
        cum = np.cumsum(weights, axis=1)
        target = cum[:, -1:] * q[None, :]
        # First position whose cumulative weight reaches q * total (one binary search per replicate).
        idx = np.stack([np.searchsorted(c, t, side="left") for c, t in zip(cum, target, strict=True)])
        out: np.ndarray = values[np.minimum(idx, len(values) - 1)]
        return out

    ones0, ones1 = np.ones((1, len(d0))), np.ones((1, len(d1)))
    est0, est1, est_cf = quant(d0, ones0)[0], quant(d1, ones1)[0], quant(d1, cf_weight[None])[0]
    draws0, draws1, draws_cf = [], [], []
    for lo in range(0, n_boot, _LATENCY_BOOT_CHUNK):
        b = min(_LATENCY_BOOT_CHUNK, n_boot - lo)
        w0 = rng.poisson(1.0, (b, len(d0))).astype(np.float64)
        w1 = rng.poisson(1.0, (b, len(d1))).astype(np.float64)
        draws0.append(quant(d0, w0))
        draws1.append(quant(d1, w1))
        # The counterfactual's weights follow the resampled segment counts, as the estimate's do.
        bn0 = np.stack([np.bincount(s0, weights=row, minlength=n_seg) for row in w0])
        bn1 = np.stack([np.bincount(s1, weights=row, minlength=n_seg) for row in w1])
        ok = (bn0 > 0) & (bn1 > 0)
        sh = np.where(ok, bn0, 0.0) / np.where(ok, bn0, 0.0).sum(axis=1, keepdims=True)
        draws_cf.append(quant(d1, w1 * np.where(ok, sh / np.maximum(bn1, 1.0), 0.0)[:, s1]))
    b0, b1, bcf = np.concatenate(draws0), np.concatenate(draws1), np.concatenate(draws_cf)
    rows: list[dict[str, object]] = []
    for j, name in enumerate(percentile_names(q)):
        common = {"metric": name, "failure_reason": None, "executions_previous": len(d0),
                  "executions_period": len(d1)}  # fmt: skip
        rows.append({**common, "component": "total", "by": None, "segment": None,
                     "contribution": est1[j] - est0[j], "_draws": b1[:, j] - b0[:, j],
                     "value_previous": est0[j], "value_period": est1[j]})  # fmt: skip
        rows.append({**common, "component": "mix", "by": mix_label, "segment": None,
                     "contribution": est1[j] - est_cf[j], "_draws": b1[:, j] - bcf[:, j],
                     "value_previous": est_cf[j], "value_period": est1[j]})  # fmt: skip
        rows.append({**common, "component": "within", "by": mix_label, "segment": None,
                     "contribution": est_cf[j] - est0[j], "_draws": bcf[:, j] - b0[:, j],
                     "value_previous": est0[j], "value_period": est_cf[j]})  # fmt: skip
    return rows


def _finish(
    table: pd.DataFrame, confidence: float, alpha: float, min_rate_change: float, min_latency_change: float
) -> pd.DataFrame:
    """Intervals, p-values and Holm's adjustment from the bootstrap draws; final column order and dtypes."""
    est = table["contribution"].to_numpy(dtype=np.float64)
    se = np.array([float(np.std(d, ddof=1)) for d in table["_draws"]])
    z = stats.norm.isf((1 - confidence) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(se > 0, 2 * stats.norm.sf(np.abs(est) / se), np.where(est == 0, 1.0, 0.0))
    table["low"], table["high"] = est - z * se, est + z * se
    table["p_value"] = p
    # Holm over every row (totals and parts), so the chance of naming any false cause stays at most alpha;
    # and a cause must also matter: statistically real but tiny parts (a busy resource measures a 1% move of
    # its median, or a caller's share drifting by a point) are not what "what changed" is for.
    is_rate = (table["metric"] == "failure_rate").to_numpy()
    size = np.abs(est) / np.where(is_rate, 1.0, table["value_previous"].abs().to_numpy())
    material = size >= np.where(is_rate, min_rate_change, min_latency_change)
    adjusted = _holm(p)
    table["p_adjusted"] = adjusted
    table["cause"] = (adjusted < alpha) & material
    columns = ["metric", "component", "by", "segment", "failure_reason", "contribution", "low", "high", "p_value",
               "p_adjusted", "cause", "share_previous", "share_period", "value_previous", "value_period",
               "executions_previous", "executions_period"]  # fmt: skip
    for c in columns:
        if c not in table.columns:
            table[c] = np.nan
    out: pd.DataFrame = table[columns].copy()
    for c in ("metric", "component", "by", "segment", "failure_reason"):
        out[c] = out[c].astype("string")
    for c in ("share_previous", "share_period", "value_previous", "value_period", "contribution"):
        out[c] = out[c].astype(np.float64)
    for c in ("executions_previous", "executions_period"):
        out[c] = out[c].astype("Int64")
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    out = np.empty(m)
    out[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return out


def _sentences(table: pd.DataFrame, mix_label: str | None) -> list[str]:
    """The headline change and its causes in words, largest contribution first."""
    out: list[str] = []
    rates = table[table["metric"] == "failure_rate"]
    total = rates[rates["component"] == "total"].iloc[0]
    head = (
        f"Failure rate {fmt.percent(total['value_previous'])} -> {fmt.percent(total['value_period'])} "
        f"({fmt.pp_change(total['contribution'])}, interval {fmt.pp_change(total['low'])} to "
        f"{fmt.pp_change(total['high'])})"
    )
    causes = rates[rates["cause"] & (rates["component"] != "total") & rates["failure_reason"].isna()]
    by_version = causes[(causes["component"] == "within") & (causes["by"] == _VERSION)]
    within = by_version if len(by_version) else causes[(causes["component"] == "within") & (causes["by"] == mix_label)]
    if not len(within):
        within = causes[(causes["component"] == "within") & (causes["by"] == _REASON)]
    mix = causes[causes["component"] == "mix"]
    parts = []
    listed = pd.concat([within, mix]).sort_values("contribution", key=np.abs, ascending=False)
    for _, row in listed.head(_MAX_CAUSES).iterrows():
        if row["component"] == "mix":
            parts.append(
                f"{fmt.pp_change(row['contribution'])} from {row['by']} {row['segment']}'s share "
                f"{'growing' if row['share_period'] > row['share_previous'] else 'falling'} from "
                f"{_shares(row['share_previous'], row['share_period'])}"
            )
        else:
            label = "version" if row["by"] == _VERSION else str(row["by"])
            text = f"{fmt.pp_change(row['contribution'])} within {label} {row['segment']}"
            if row["by"] == _VERSION:
                reasons = rates[
                    rates["cause"] & (rates["by"] == _VERSION) & (rates["segment"] == row["segment"])
                    & rates["failure_reason"].notna()
                    & (np.sign(rates["contribution"]) == np.sign(row["contribution"]))
                ]  # fmt: skip
                if len(reasons):
                    ranked = reasons.sort_values("contribution", key=np.abs, ascending=False)
                    text += f" ({', '.join(ranked['failure_reason'])})"
            parts.append(text)
    if len(listed) > _MAX_CAUSES:
        rest = listed["contribution"].iloc[_MAX_CAUSES:]
        parts.append(f"{fmt.pp_change(rest.sum())} from {len(rest)} smaller parts")
    if parts:
        out.append(f"{head}: " + ", ".join(parts) + ".")
    elif total["cause"]:
        out.append(f"{head}: a change no single segment accounts for.")
    else:
        out.append(f"{head}: nothing changed beyond noise.")
    versions = rates[(rates["by"] == _VERSION) & rates["failure_reason"].isna() & (rates["share_previous"] == 0)]
    for _, row in versions[~versions["cause"]].iterrows():
        # A rollout that only moved traffic: say so, since its raw rate can differ for who it served first.
        out.append(
            f"Version {row['segment']} reached {fmt.percent(row['share_period'], 0)} of executions; they fail "
            f"as often as the same callers did before ({fmt.percent(row['value_period'])} against "
            f"{fmt.percent(row['value_previous'])} at the same mix; within {fmt.pp_change(row['contribution'])}, "
            "not distinguishable from zero)."
        )
    for metric in table["metric"].unique():
        if metric == "failure_rate":
            continue
        lat = table[table["metric"] == metric].set_index("component")
        tot, mx, wi = lat.loc["total"], lat.loc["mix"], lat.loc["within"]
        if not (tot["cause"] or mx["cause"] or wi["cause"]):
            out.append(f"{metric} {fmt.seconds(tot['value_previous'])} -> {fmt.seconds(tot['value_period'])}: "
                       "nothing changed beyond noise.")  # fmt: skip
            continue
        out.append(
            f"{metric} {fmt.seconds(tot['value_previous'])} -> {fmt.seconds(tot['value_period'])}: "
            f"{_signed_seconds(wi['contribution'])} within (at the previous mix: {fmt.seconds(wi['value_period'])})"
            f"{'' if wi['cause'] else ' (not distinguishable from zero)'}, {_signed_seconds(mx['contribution'])} "
            f"from the mix{'' if mx['cause'] else ' (not distinguishable from zero)'}."
        )
    return out


def _signed_seconds(x: float) -> str:
    return ("+" if x >= 0 else "-") + fmt.seconds(abs(x))


def _shares(before: float, after: float) -> str:
    """ "4% to 9%": with as many decimals as it takes (up to two) for two different shares to read differently."""
    digits = 0
    while digits < 2 and fmt.percent(before, digits) == fmt.percent(after, digits):
        digits += 1
    return f"{fmt.percent(before, digits)} to {fmt.percent(after, digits)}"
