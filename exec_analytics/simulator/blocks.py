"""Hour blocks: the executions of one resource in one UTC hour, drawn vectorised from its profile.

The executions of one resource in one UTC hour are drawn from ``np.random.default_rng([seed, resource_index,
hour_index])`` and the resource's profile (see :mod:`.profiles`), so any hour is reproducible from the seed
alone. :class:`~.workload.Workload` caches blocks and turns them into tables; :mod:`.query` selects rows from
them and :mod:`.render` turns rows into the JSON the API returns.

The model: Poisson counts per caller whose rate follows the caller kind's weekly shape (office hours for
Workshop and actions, around-the-clock with a nightly batch for automations); Zipf-like caller shares;
log-normal durations with an occasional Pareto tail, scaled by caller, version and load; failure reasons
drawn per caller, version and incident; versions rolled out with a canary and a ramp (one of them reaching
automations first); durations reported in milliseconds, in rounded seconds for long automation runs and
timeouts, and very rarely in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np
import pyarrow as pa

from ..timeutil import epoch_ms
from .profiles import FAILURE_REASONS, HOUR_MS, KIND_AUTOMATION, ResourceProfile, hour_of_week

__all__ = ["STATUSES", "UNITS", "UNIT_MS", "HourBlock", "Selection", "empty_block", "generate_block"]

#: Reported statuses, by code.
STATUSES: tuple[str, ...] = ("SUCCEEDED", "FAILED")
#: Reported duration units, by code, and their length in milliseconds.
UNITS: tuple[str, ...] = ("MILLISECONDS", "SECONDS", "MINUTES")
UNIT_MS = np.array([1, 1_000, 60_000], dtype=np.int64)
#: Rows picked from one block: a contiguous slice or an index array.
Selection = tuple["HourBlock", Union[slice, np.ndarray]]  # noqa: UP007 - a runtime alias must work on 3.10

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
    #: Each execution as its JSON object plus a comma, once :func:`.render.block_json` has rendered it.
    json_rows: pa.Array | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.neg_start = -self.start_ms  # ascending, for searchsorted
        self.max_end = int(self.end_ms.max()) if len(self.end_ms) else -(2**62)

    def __len__(self) -> int:
        return len(self.start_ms)


def empty_block(profile: ResourceProfile, hour: int) -> HourBlock:
    """A block without executions (an hour before the resource existed, or an empty table's dtypes)."""
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
    created_ms = epoch_ms(profile.created)
    t0 = hour * HOUR_MS
    if hour < 0 or t0 + HOUR_MS <= created_ms:
        return empty_block(profile, hour)
    tab = profile.tables
    how = hour_of_week(hour)
    rng = np.random.default_rng([seed, profile.index, hour])
    n_callers = len(profile.callers)

    counts = rng.poisson(tab["lambda_week"][:, how])
    n = int(counts.sum())
    caller = np.repeat(np.arange(n_callers + 1, dtype=np.int16), counts)
    start = t0 + rng.integers(0, HOUR_MS, n, dtype=np.int64)
    kind = tab["caller_kind"][caller]

    # Versions: before the next version's canary everyone is on the current one.
    cur, nxt, share = profile.rollout(start, kind)
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
        s, e = epoch_ms(inc.start), epoch_ms(inc.end)
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
