"""A realistic, deterministic synthetic workload: executions per (resource, UTC hour), on demand.

Nothing is materialised up front. The executions of one resource in one UTC hour are drawn, vectorised,
from ``np.random.default_rng([seed, resource_index, hour_index])`` and the resource's profile (see
:mod:`.profiles`), so any window of any length is reproducible from the seed alone and two different
splits of a window always agree. Recently used hour blocks are kept in an LRU cache.

The model: Poisson counts per caller whose rate follows the caller kind's weekly shape (office hours for
Workshop and actions, around-the-clock with a nightly batch for automations); Zipf-like caller shares;
log-normal durations with an occasional Pareto tail, scaled by caller, version and load; failure reasons
drawn per caller, version and incident; versions rolled out with a canary and a ramp (one of them reaching
automations first); durations reported in milliseconds, in rounded seconds for long automation runs and
timeouts, and very rarely in minutes.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..timeutil import to_utc
from .profiles import (
    CALLER_KINDS,
    FAILURE_REASONS,
    HOUR_MS,
    KIND_AUTOMATION,
    ResourceProfile,
    build_profiles,
    build_users,
    hour_of_week,
)

__all__ = [
    "EXECUTION_COLUMNS",
    "GROUND_TRUTH_COLUMNS",
    "STATUSES",
    "UNITS",
    "HourBlock",
    "Workload",
]

#: Reported statuses, by code.
STATUSES: tuple[str, ...] = ("SUCCEEDED", "FAILED")
#: Reported duration units, by code, and their length in milliseconds.
UNITS: tuple[str, ...] = ("MILLISECONDS", "SECONDS", "MINUTES")
UNIT_MS = np.array([1, 1_000, 60_000], dtype=np.int64)

#: Columns of :meth:`Workload.ground_truth` (the executions table plus the duration exactly as reported).
GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "start_time",
    "duration_s",
    "status",
    "failure_reason",
    "resource_rid",
    "resource_version",
    "caller_rid",
    "trace_owning_rid",
    "foundry_trace_id",
    "duration_value",
    "duration_unit",
)
#: Columns of :meth:`Workload.executions`: the ground-truth columns plus hidden truth.
EXECUTION_COLUMNS: tuple[str, ...] = (*GROUND_TRUTH_COLUMNS, "end_time", "true_duration_ms", "user_id")

_REASON_SHARE = np.array([0.22, 0.30, 0.20, 0.06, 0.12, 0.10])
_REASON_CDF = np.cumsum(_REASON_SHARE) / _REASON_SHARE.sum()
_HIDDEN_REASON = 0.05  # FAILED executions that carry no failureReason
_SUCCEEDED_WITH_REASON = 0.002  # like the published example: a failureReason on a SUCCEEDED execution
_MAX_FAILURE = 0.8
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


@dataclass(eq=False)
class HourBlock:
    """The executions of one resource that started in one UTC hour, sorted newest first.

    Ties on ``start_ms`` are broken by trace id, descending, which is also the order the server pages in.
    Codes index ``STATUSES``, ``UNITS``, ``FAILURE_REASONS`` (-1: none), the profile's versions, its callers
    (``len(callers)``: no caller) and the workload's users (-1: none).
    """

    profile: ResourceProfile
    hour: int
    start_ms: np.ndarray
    end_ms: np.ndarray
    true_ms: np.ndarray
    dur_value: np.ndarray
    unit: np.ndarray
    dur_ms: np.ndarray  # the reported duration converted to milliseconds (what duration filters compare)
    status: np.ndarray
    reason: np.ndarray
    version: np.ndarray
    caller: np.ndarray
    user: np.ndarray
    trace_hi: np.ndarray
    trace_lo: np.ndarray
    trace: np.ndarray  # S36 UUID text
    neg_start: np.ndarray = field(init=False)
    max_end: int = field(init=False)
    _rows: pa.Array | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.neg_start = -self.start_ms  # ascending, for searchsorted
        self.max_end = int(self.end_ms.max()) if len(self.end_ms) else -(2**62)

    def __len__(self) -> int:
        return len(self.start_ms)

    @property
    def rows(self) -> pa.Array:
        """Each execution rendered as its JSON object followed by a comma (Arrow string array).

        Rendered once per block (vectorised) so a page is a slice or a ``take`` of pre-rendered bytes.
        """
        rows = self._rows
        if rows is None:
            from .render import render_block

            rows = render_block(self)
            self._rows = rows
        return rows


def _empty_block(profile: ResourceProfile, hour: int) -> HourBlock:
    i64 = np.empty(0, dtype=np.int64)
    return HourBlock(
        profile, hour, i64, i64, i64, i64, np.empty(0, np.int8), i64, np.empty(0, np.int8), np.empty(0, np.int8),
        np.empty(0, np.int16), np.empty(0, np.int16), np.empty(0, np.int32), np.empty(0, np.uint64),
        np.empty(0, np.uint64), np.empty(0, dtype="S36"),
    )  # fmt: skip


def _uuid_text(raw: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 -> S36 array of UUID text, vectorised."""
    n = len(raw)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _UUID_POS] = digits
    return out.view("S36").ravel()


def generate_block(profile: ResourceProfile, seed: int, hour: int, n_users: int) -> HourBlock:
    """Draw the executions of ``profile`` that start in UTC hour ``hour`` (hours since the epoch)."""
    created_ms = int(profile.created.value // 1_000_000)
    t0 = hour * HOUR_MS
    if hour < 0 or t0 + HOUR_MS <= created_ms:
        return _empty_block(profile, hour)
    tab = profile._tables
    how = hour_of_week(hour)
    rng = np.random.default_rng([seed, profile.index, hour])
    n_callers = len(profile.callers)

    counts = rng.poisson(tab["lambda_week"][:, how])
    n = int(counts.sum())
    caller = np.repeat(np.arange(n_callers + 1, dtype=np.int16), counts)
    start = t0 + rng.integers(0, HOUR_MS, n, dtype=np.int64)
    kind = tab["caller_kind"][caller]

    # Versions: before the next version's canary everyone is on the current one.
    cur, nxt, share = profile._rollout(start, kind)
    version = np.where(rng.random(n) < share, nxt, cur).astype(np.int16)

    # Users: a Zipf-ish population shared across resources; automations run without a user.
    user = np.searchsorted(_user_cdf(n_users), rng.random(n)).astype(np.int32)
    user = (user + 37 * profile.index) % n_users
    user[kind == KIND_AUTOMATION] = -1

    # Failure reasons: the probability of each reason per execution, then one categorical draw.
    # (reason, execution) layout: the cumulative sum runs over contiguous rows, which is much faster.
    p = (
        (profile.base_failure_rate * tab["caller_failure"][caller])[None, :]
        * _REASON_SHARE[:, None]
        * tab["caller_reason_t"][:, caller]
        * tab["version_reason_t"][:, version]
    )
    for inc in profile.incidents:
        s, e = int(inc.start.value // 1_000_000), int(inc.end.value // 1_000_000)
        if s < t0 + HOUR_MS and e > t0:
            hit = (start >= s) & (start < e)
            p[FAILURE_REASONS.index(inc.failure_reason), hit] *= inc.multiplier
    total = p.sum(axis=0)
    p *= np.minimum(1.0, _MAX_FAILURE / np.maximum(total, 1e-12))[None, :]
    drawn = (rng.random(n)[None, :] >= np.cumsum(p, axis=0)).sum(axis=0)
    failed = drawn < len(FAILURE_REASONS)
    hidden = rng.random(n) < _HIDDEN_REASON
    extra_reason = np.searchsorted(_REASON_CDF, rng.random(n))
    succeeded_with_reason = rng.random(n) < _SUCCEEDED_WITH_REASON
    reason = np.where(failed, np.where(hidden, -1, drawn), np.where(succeeded_with_reason, extra_reason, -1))
    reason = reason.astype(np.int8)
    status = failed.astype(np.int8)

    # Durations: log-normal around the caller/version/load-scaled median, with a rare heavy tail.
    z = rng.standard_normal(n)
    tail = np.where(rng.random(n) < profile.tail_probability, 1.0 + np.minimum(rng.pareto(1.5, n), 40.0), 1.0)
    base = (
        profile.median_ms
        * tab["caller_latency"][caller]
        * tab["version_latency"][version]
        * tab["load_week"][how]
        * np.exp(profile.sigma * z)
        * tail
    )
    quick = 12.0 * np.exp(0.6 * rng.standard_normal(n))  # rejected before doing any work
    overrun = rng.integers(0, 800, n)
    by_reason = np.stack([
        profile.timeout_ms + overrun,  # timeout: killed just after the limit
        quick,  # invalid_parameter
        base * 0.6,  # upstream_unavailable: gave up early
        base * 1.8,  # out_of_memory
        quick,  # permission_denied
        base,  # internal_error
    ])  # fmt: skip
    true_ms = np.where(drawn < len(FAILURE_REASONS), by_reason[np.minimum(drawn, 5), np.arange(n)], base)
    true_ms = np.where(drawn == 0, true_ms, np.minimum(true_ms, profile.timeout_ms - 1))
    true_ms = np.maximum(np.rint(true_ms), 1).astype(np.int64)

    # Reported unit: long automation runs and timeouts mostly in (rounded) seconds, rarely minutes.
    sec_p = np.where((kind == KIND_AUTOMATION) & (true_ms >= 1_000), 0.85, np.where(true_ms >= 10_000, 0.35, 0.0))
    sec_p = np.where(drawn == 0, 0.7, sec_p)
    min_p = np.where(true_ms >= 60_000, 0.08, 0.0)
    u = rng.random(n)
    unit = np.where(u < min_p, 2, np.where(u < min_p + sec_p, 1, 0)).astype(np.int8)
    unit_ms = UNIT_MS[unit]
    dur_value = (true_ms + unit_ms // 2) // unit_ms

    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # UUID version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hi = raw[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    lo = raw[:, 8:].copy().view(">u8").ravel().astype(np.uint64)

    keep = start >= created_ms
    order = np.lexsort((lo, hi, start))[::-1]
    order = order[keep[order]]
    return HourBlock(
        profile=profile,
        hour=hour,
        start_ms=start[order],
        end_ms=(start + true_ms)[order],
        true_ms=true_ms[order],
        dur_value=dur_value[order],
        unit=unit[order],
        dur_ms=(dur_value * unit_ms)[order],
        status=status[order],
        reason=reason[order],
        version=version[order],
        caller=caller[order],
        user=user[order],
        trace_hi=hi[order],
        trace_lo=lo[order],
        trace=_uuid_text(raw[order]),
    )


_USER_CDFS: dict[int, np.ndarray] = {}


def _user_cdf(n_users: int) -> np.ndarray:
    cdf = _USER_CDFS.get(n_users)
    if cdf is None:
        w = 1.0 / np.arange(1, n_users + 1) ** 0.9
        cdf = np.cumsum(w) / w.sum()
        cdf[-1] = 1.0
        _USER_CDFS[n_users] = cdf
    return cdf


# --- the workload ------------------------------------------------------------------------------------


class Workload:
    """The synthetic executions of a few Foundry resources, deterministic from ``seed``.

    Parameters
    ----------
    seed : int
        Non-negative; the same seed always gives the same executions for any window.
    scale : float
        Multiplies every resource's traffic rate.
    cache_rows : int
        Upper bound on the executions kept in the LRU cache of hour blocks.

    Attributes
    ----------
    resources : list of ResourceProfile
        Every resource, readable or not, with its truth (callers, versions, regressions).
    users : list of str
        The user ids executions may carry (filterable as ``userId``, never returned).
    """

    def __init__(self, seed: int = 0, scale: float = 1.0, *, cache_rows: int = 600_000) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.seed = int(seed)
        self.scale = float(scale)
        self.resources: list[ResourceProfile] = build_profiles(self.seed, self.scale)
        self.users: list[str] = build_users(self.seed)
        self._user_index = {u: i for i, u in enumerate(self.users)}
        self._by_rid = {p.rid: p for p in self.resources}
        self._cache: OrderedDict[tuple[int, int], HourBlock] = OrderedDict()
        self._cache_rows = 0
        self._cache_limit = int(cache_rows)
        self._lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0

    def __repr__(self) -> str:
        return f"Workload(seed={self.seed}, scale={self.scale}, resources={len(self.resources)})"

    @property
    def resource_rids(self) -> list[str]:
        """RIDs of the resources the default token may read."""
        return [p.rid for p in self.resources if p.readable]

    @property
    def restricted_rids(self) -> list[str]:
        """RIDs of resources that exist but the default token may not read."""
        return [p.rid for p in self.resources if not p.readable]

    @property
    def main(self) -> ResourceProfile:
        """The high-volume resource that carries the regressed and the confounded version."""
        return self.resources[0]

    def profile(self, rid: str) -> ResourceProfile:
        """The profile of a resource RID; ``KeyError`` if the workload has no such resource."""
        try:
            return self._by_rid[rid]
        except KeyError:
            raise KeyError(f"no simulated resource {rid!r}; known: {', '.join(self._by_rid)}") from None

    def block(self, profile: ResourceProfile, hour: int) -> HourBlock:
        """The (cached) executions of ``profile`` starting in UTC hour ``hour``."""
        key = (profile.index, hour)
        with self._lock:
            blk = self._cache.get(key)
            if blk is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return blk
            self.cache_misses += 1
        blk = generate_block(profile, self.seed, hour, len(self.users))
        if hour * HOUR_MS + HOUR_MS <= profile.created.value // 1_000_000:
            return blk  # before the resource existed: free to make, not worth a cache slot
        with self._lock:
            if key not in self._cache:
                self._cache[key] = blk
                self._cache_rows += max(1, len(blk))  # quiet hours are cached too, and count
                while self._cache_rows > self._cache_limit and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cache_rows -= max(1, len(old))
        return blk

    def cache_info(self) -> dict[str, int]:
        """Blocks and rows cached, hits and misses."""
        with self._lock:
            return {
                "blocks": len(self._cache),
                "rows": self._cache_rows,
                "hits": self.cache_hits,
                "misses": self.cache_misses,
            }

    def expected_rate(self, rid: str, when: object) -> float:
        """Expected executions per hour of a resource in the hour containing ``when`` (the traffic truth)."""
        p = self.profile(rid)
        hour = int(to_utc(when, "when").value // 1_000_000) // HOUR_MS
        return float(p._tables["lambda_week"][:, hour_of_week(hour)].sum())

    # --- tables -----------------------------------------------------------------------------------

    def executions(self, rid: str, start: object, end: object) -> pd.DataFrame:
        """Every execution that started in ``[start, end)``, completed or not, newest first.

        Returns
        -------
        pandas.DataFrame
            The columns of :meth:`ground_truth` plus the hidden truth: ``end_time`` (datetime64[ms, UTC],
            start + true duration), ``true_duration_ms`` (int64, before rounding to the reported unit) and
            ``user_id`` (object, None for automations).
        """
        from .query import scan

        p, s, e = self._window(rid, start, end)
        sels, _ = scan(self, p, s, e)
        return _frame(self, p, sels, extra=True)

    def ground_truth(
        self,
        rid: str,
        start: object,
        end: object,
        *,
        as_of: object = None,
        where: Mapping[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Exactly what a correct client must return for ``[start, end)`` when queried at ``as_of``.

        Parameters
        ----------
        rid : str
            A resource of this workload (readable or not).
        start, end : str, datetime or pandas.Timestamp
            Timezone-aware window bounds, half-open.
        as_of : str, datetime or pandas.Timestamp, optional
            Only executions with ``start + true duration <= as_of`` (completed by then) are included.
            Default: all of them.
        where : mapping, optional
            An ExecutionFilter, applied like the server does.

        Returns
        -------
        pandas.DataFrame
            Newest first (ties by trace id, descending). Columns: ``start_time`` (datetime64[ms, UTC]),
            ``duration_s`` (float64, reported value x unit), ``status``, ``failure_reason`` (None when
            absent), ``resource_rid``, ``resource_version``, ``caller_rid`` (None when absent),
            ``trace_owning_rid``, ``foundry_trace_id`` (all object), ``duration_value`` (int64) and
            ``duration_unit`` (object) exactly as reported.
        """
        from ..filters import validate_filter
        from .query import compile_filter, scan

        p, s, e = self._window(rid, start, end)
        mask_fn = None if where is None else compile_filter(p, validate_filter(where), self._user_index)
        visible = None if as_of is None else int(to_utc(as_of, "as_of").value // 1_000_000)
        sels, _ = scan(self, p, s, e, visible_ms=visible, mask_fn=mask_fn)
        return _frame(self, p, sels, extra=False)

    def _window(self, rid: str, start: object, end: object) -> tuple[ResourceProfile, int, int]:
        p = self.profile(rid)
        s = int(to_utc(start, "start").value // 1_000_000)
        e = int(to_utc(end, "end").value // 1_000_000)
        if e < s:
            raise ValueError("end must not be before start; windows are [start, end)")
        return p, s, e


def _frame(wl: Workload, p: ResourceProfile, sels: list, *, extra: bool) -> pd.DataFrame:
    def col(name: str) -> np.ndarray:
        parts = [getattr(b, name)[sel] for b, sel in sels]
        if parts:
            return np.concatenate(parts)
        return getattr(_empty_block(p, 0), name)

    tab = p._tables
    start = col("start_ms")
    unit = col("unit")
    value = col("dur_value")
    reason = col("reason")
    caller = col("caller")
    n = len(start)
    reasons = np.array([None, *FAILURE_REASONS], dtype=object)
    callers = np.array([*(c.rid for c in p.callers), None], dtype=object)
    data: dict[str, Any] = {
        "start_time": _utc(start),
        # Integer milliseconds first, then one division: the correctly rounded number of seconds, which is
        # what an exact decoder must produce too (value * 0.001 can be one ulp off).
        "duration_s": (value.astype(np.int64) * UNIT_MS[unit]) / 1000.0,
        "status": np.array(STATUSES, dtype=object)[col("status")],
        "failure_reason": reasons[reason + 1],
        "resource_rid": np.full(n, p.rid, dtype=object),
        "resource_version": np.array(p.version_names, dtype=object)[col("version")],
        "caller_rid": callers[caller],
        "trace_owning_rid": tab["owners"][tab["owner_code"][caller]],
        "foundry_trace_id": col("trace").astype("U36").astype(object),
        "duration_value": value.astype(np.int64),
        "duration_unit": np.array(UNITS, dtype=object)[unit],
    }
    if extra:
        users = np.array([*wl.users, None], dtype=object)
        data["end_time"] = _utc(col("end_ms"))
        data["true_duration_ms"] = col("true_ms").astype(np.int64)
        data["user_id"] = users[col("user")]
    out = {k: (pd.Series(v, dtype=object) if isinstance(v, np.ndarray) and v.dtype == object else v)
           for k, v in data.items()}  # fmt: skip
    return pd.DataFrame(out)


def _utc(ms: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")


__all__ += ["CALLER_KINDS", "FAILURE_REASONS", "generate_block"]
