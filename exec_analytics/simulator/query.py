"""Evaluating listExecutions queries over hour blocks: filters and keyset scans.

The server and :meth:`Workload.ground_truth` share this code, so "what the server returns" and "what a
correct client must end up with" are computed the same way; the tests also check the filters against
independent pandas expressions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np

from ..timeutil import epoch_ms
from .blocks import STATUSES, HourBlock, Selection
from .profiles import FAILURE_REASONS, HOUR_MS, ResourceProfile
from .spec import DURATION_UNITS

__all__ = ["BlockSource", "Cursor", "MaskFn", "compile_filter", "last_cursor", "scan", "truncate"]

#: A filter compiled for one resource: ``mask(block, lo, hi)`` -> bool array over rows ``lo:hi``.
MaskFn = Callable[[HourBlock, int, int], np.ndarray]
#: Keyset position of the last row returned: (start ms, trace id high 64 bits, low 64 bits).
Cursor = tuple[int, int, int]
#: Where a scan gets the executions of a resource in one UTC hour (``Workload.block``).
BlockSource = Callable[[ResourceProfile, int], HourBlock]


def compile_filter(profile: ResourceProfile, where: Mapping[str, Any], users: Sequence[str]) -> MaskFn:
    """Compile a *checked* ExecutionFilter (:func:`.spec.check_filter`) into a vectorised row mask.

    Parameters
    ----------
    profile : ResourceProfile
        The resource whose blocks the mask applies to.
    where : mapping
        The filter.
    users : sequence of str
        The workload's user ids; a block stores a user as its position here.

    Returns
    -------
    MaskFn
        ``mask(block, lo, hi)``: a bool array over the block's rows ``lo:hi``. String values are resolved
        to the codes stored in the blocks once, here; a value the resource never emits matches nothing.
    """
    kind = where["type"]
    if kind in ("and", "or"):
        parts = [compile_filter(profile, f, users) for f in where["filters"]]
        if not parts:
            empty = kind == "and"
            return lambda b, lo, hi: np.full(hi - lo, empty)
        op = np.logical_and if kind == "and" else np.logical_or
        return lambda b, lo, hi: reduce(op, (f(b, lo, hi) for f in parts))
    if kind == "not":
        inner = compile_filter(profile, where["filter"], users)
        return lambda b, lo, hi: ~inner(b, lo, hi)

    fld = where["field"]
    if fld == "duration":
        bound = int(where["value"]["value"]) * DURATION_UNITS[where["value"]["unit"]]
        if kind == "gte":
            return lambda b, lo, hi: b.dur_ms[lo:hi] >= bound
        return lambda b, lo, hi: b.dur_ms[lo:hi] <= bound
    n_callers = len(profile.callers)
    if kind == "isNull":
        if fld == "userId":
            return lambda b, lo, hi: b.user[lo:hi] < 0
        if fld == "callerRid":
            return lambda b, lo, hi: b.caller[lo:hi] == n_callers
        raise ValueError(f"isNull is not allowed on {fld!r}")  # check_filter already rejects this

    values = [where["value"]] if kind == "eq" else list(where["value"])
    if fld == "foundryTraceId":
        wanted = np.array([v.encode() for v in values if v.isascii() and len(v) == 36], dtype="S36")
        return lambda b, lo, hi: np.isin(b.trace[lo:hi], wanted)

    tab = profile.tables
    if fld == "status":
        column, codes = "status", [STATUSES.index(v) for v in values if v in STATUSES]
    elif fld == "userId":
        index = {u: i for i, u in enumerate(users)}
        column, codes = "user", [index[v] for v in values if v in index]
    elif fld == "callerRid":
        rids = [c.rid for c in profile.callers]
        column, codes = "caller", [rids.index(v) for v in values if v in rids]
    elif fld == "resourceVersion":
        names = profile.version_names
        column, codes = "version", [names.index(v) for v in values if v in names]
    elif fld == "failureReason":
        column, codes = "reason", [FAILURE_REASONS.index(v) for v in values if v in FAILURE_REASONS]
    elif fld == "traceOwningRid":
        owners = set(values)
        column = "caller"
        codes = [i for i in range(n_callers + 1) if tab["owners"][tab["owner_code"][i]] in owners]
    else:  # pragma: no cover - check_filter rejects unknown fields
        raise ValueError(f"unknown field {fld!r}")
    wanted = np.array(sorted(set(codes)), dtype=np.int64)
    if len(wanted) == 0:
        return lambda b, lo, hi: np.zeros(hi - lo, dtype=bool)
    if len(wanted) == 1:
        one = int(wanted[0])
        return lambda b, lo, hi: getattr(b, column)[lo:hi] == one
    return lambda b, lo, hi: np.isin(getattr(b, column)[lo:hi], wanted)


def _cursor_index(block: HourBlock, cursor: Cursor) -> int:
    """Index of the first row strictly after ``cursor`` in the block's (newest-first) order."""
    c_start, c_hi, c_lo = cursor
    i0 = int(np.searchsorted(block.neg_start, -c_start, side="left"))
    i1 = int(np.searchsorted(block.neg_start, -c_start, side="right"))
    if i0 == i1:
        return i0
    hi, lo = block.trace_hi[i0:i1], block.trace_lo[i0:i1]
    after = (hi < np.uint64(c_hi)) | ((hi == np.uint64(c_hi)) & (lo < np.uint64(c_lo)))
    return i0 + int(np.argmax(after)) if after.any() else i1


def scan(
    blocks: BlockSource,
    profile: ResourceProfile,
    lower_ms: int,
    upper_ms: int,
    *,
    visible_ms: int | None = None,
    mask_fn: MaskFn | None = None,
    cursor: Cursor | None = None,
    limit: int | None = None,
    skip: int = 0,
) -> tuple[list[Selection], int]:
    """Walk hour blocks newest to oldest and pick matching rows.

    Parameters
    ----------
    blocks : BlockSource
        The hour blocks to read (a workload's cache).
    profile : ResourceProfile
        The resource.
    lower_ms, upper_ms : int
        Start-time window ``[lower, upper)`` in epoch milliseconds.
    visible_ms : int, optional
        Only executions whose true end is at or before this time (completed). None: all.
    mask_fn : MaskFn, optional
        A compiled filter.
    cursor : Cursor, optional
        Keyset position: only rows after it (older, or equal start and smaller trace id).
    limit : int, optional
        Stop once this many rows are picked (after ``skip``).
    skip : int
        Matching rows to pass over first (offset paging).

    Returns
    -------
    (list of Selection, int)
        The picked rows in order and how many there are.
    """
    created = epoch_ms(profile.created)
    lower = max(lower_ms, created)
    upper = upper_ms if visible_ms is None else min(upper_ms, visible_ms + 1)
    if cursor is not None:
        upper = min(upper, cursor[0] + 1)
    if upper <= lower:
        return [], 0
    out: list[Selection] = []
    taken = 0
    for hour in range((upper - 1) // HOUR_MS, lower // HOUR_MS - 1, -1):
        block = blocks(profile, hour)
        if not len(block):
            continue
        lo = int(np.searchsorted(block.neg_start, -upper, side="right"))
        hi = int(np.searchsorted(block.neg_start, -lower, side="right"))
        if cursor is not None and cursor[0] // HOUR_MS == hour:
            lo = max(lo, _cursor_index(block, cursor))
        if lo >= hi:
            continue
        mask = None
        if visible_ms is not None and block.max_end > visible_ms:
            mask = block.end_ms[lo:hi] <= visible_ms
        if mask_fn is not None:
            m = mask_fn(block, lo, hi)
            mask = m if mask is None else mask & m
        if mask is None:
            n = hi - lo
            if skip >= n:
                skip -= n
                continue
            lo += skip
            skip = 0
            if limit is not None:
                hi = min(hi, lo + limit - taken)
            out.append((block, slice(lo, hi)))
            taken += hi - lo
        else:
            idx = np.flatnonzero(mask)
            if skip >= len(idx):
                skip -= len(idx)
                continue
            idx = idx[skip:] + lo
            skip = 0
            if limit is not None:
                idx = idx[: limit - taken]
            if len(idx):
                out.append((block, idx))
                taken += len(idx)
        if limit is not None and taken >= limit:
            break
    return out, taken


def truncate(sels: list[Selection], n: int) -> list[Selection]:
    """The first ``n`` rows of a selection list."""
    out: list[Selection] = []
    for block, sel in sels:
        if n <= 0:
            break
        if isinstance(sel, slice):
            stop = min(sel.stop, sel.start + n)
            out.append((block, slice(sel.start, stop)))
            n -= stop - sel.start
        else:
            out.append((block, sel[:n]))
            n -= len(sel[:n])
    return out


def last_cursor(sels: list[Selection]) -> Cursor:
    """Keyset position of the last row of a non-empty selection list."""
    block, sel = sels[-1]
    i = sel.stop - 1 if isinstance(sel, slice) else int(sel[-1])
    return int(block.start_ms[i]), int(block.trace_hi[i]), int(block.trace_lo[i])
