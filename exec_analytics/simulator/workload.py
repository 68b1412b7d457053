"""A realistic, deterministic synthetic workload: executions per (resource, UTC hour), on demand.

Nothing is materialised up front. The executions of one resource in one UTC hour are drawn, vectorised,
from the seed and the resource's profile (see :mod:`.blocks` and :mod:`.profiles`), so any window of any
length is reproducible from the seed alone and two different splits of a window always agree. Recently used
hour blocks are kept in an LRU cache.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..timeutil import epoch_ms, to_utc
from .blocks import STATUSES, UNIT_MS, UNITS, HourBlock, Selection, empty_block, generate_block
from .profiles import FAILURE_REASONS, HOUR_MS, ResourceProfile, build_profiles, build_users, hour_of_week
from .query import compile_filter, scan
from .spec import check_filter

__all__ = ["EXECUTION_COLUMNS", "GROUND_TRUTH_COLUMNS", "UNITS", "Workload"]

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
        if hour * HOUR_MS + HOUR_MS <= epoch_ms(profile.created):
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
        hour = epoch_ms(to_utc(when, "when")) // HOUR_MS
        return float(p.tables["lambda_week"][:, hour_of_week(hour)].sum())

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
        p, s, e = self._window(rid, start, end)
        sels, _ = scan(self.block, p, s, e)
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
        p, s, e = self._window(rid, start, end)
        mask_fn = None if where is None else compile_filter(p, check_filter(where, allow_empty=True), self.users)
        visible = None if as_of is None else epoch_ms(to_utc(as_of, "as_of"))
        sels, _ = scan(self.block, p, s, e, visible_ms=visible, mask_fn=mask_fn)
        return _frame(self, p, sels, extra=False)

    def _window(self, rid: str, start: object, end: object) -> tuple[ResourceProfile, int, int]:
        p = self.profile(rid)
        s = epoch_ms(to_utc(start, "start"))
        e = epoch_ms(to_utc(end, "end"))
        if e < s:
            raise ValueError("end must not be before start; windows are [start, end)")
        return p, s, e


def _frame(wl: Workload, p: ResourceProfile, sels: list[Selection], *, extra: bool) -> pd.DataFrame:
    def col(name: str) -> np.ndarray:
        parts = [getattr(b, name)[sel] for b, sel in sels]
        if parts:
            return np.concatenate(parts)
        empty: np.ndarray = getattr(empty_block(p, 0), name)
        return empty

    tab = p.tables
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
    frame: pd.DataFrame = pd.DataFrame(out)
    return frame


def _utc(ms: np.ndarray) -> pd.DatetimeIndex:
    index: pd.DatetimeIndex = pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")
    return index
