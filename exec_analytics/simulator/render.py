"""Rendering hour blocks to the JSON the API returns, vectorised.

A block is rendered once (when a page first needs it): every row becomes its JSON object followed by a
comma, so a page body is a slice (or a ``take``) of pre-rendered bytes. Key order differs from the
published example; JSON objects are unordered.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .blocks import STATUSES, UNITS, HourBlock, Selection
from .profiles import FAILURE_REASONS, HOUR_MS, ResourceProfile

__all__ = ["block_json", "render_block", "render_rows"]

# The JSON fragments of each profile, built once per profile and dropped with it.
_CATEGORIES: weakref.WeakKeyDictionary[ResourceProfile, pa.Array] = weakref.WeakKeyDictionary()
_CATEGORIES_LOCK = threading.Lock()


def _json(s: str) -> str:
    return orjson.dumps(s).decode()


def _categories(profile: ResourceProfile) -> pa.Array:
    """Every possible middle part of an execution's JSON, indexed by :func:`_category_index`.

    One entry per (status, failure reason, version, caller, unit): a few thousand short strings per
    resource, built once, so rendering a block is a single ``take``.
    """
    with _CATEGORIES_LOCK:
        cached = _CATEGORIES.get(profile)
    if cached is not None:
        return cached
    tab = profile.tables
    heads = []
    for s in STATUSES:
        for r in (None, *FAILURE_REASONS):
            fr = "" if r is None else f',"failureReason":{_json(r)}'
            heads.append(f'"status":"{s}"{fr},"resourceRid":{_json(profile.rid)},"resourceVersion":')
    callers = [*(c.rid for c in profile.callers), None]
    tails = []
    for v in profile.versions:
        for ci, c in enumerate(callers):
            owner = tab["owners"][tab["owner_code"][ci]]
            cr = "" if c is None else f',"callerRid":{_json(c)}'
            for u in UNITS:
                tails.append(
                    f'{_json(v.version)}{cr},"traceOwningRid":{_json(owner)},"duration":{{"unit":"{u}","value":'
                )
    cached = pa.array([h + t for h in heads for t in tails], pa.string())
    with _CATEGORIES_LOCK:
        return _CATEGORIES.setdefault(profile, cached)


def _category_index(block: HourBlock) -> np.ndarray:
    p = block.profile
    n_tails = len(p.versions) * (len(p.callers) + 1) * len(UNITS)
    head = block.status.astype(np.int64) * (len(FAILURE_REASONS) + 1) + block.reason + 1
    tail = (block.version.astype(np.int64) * (len(p.callers) + 1) + block.caller) * len(UNITS) + block.unit
    index: np.ndarray = head * n_tails + tail
    return index


# Fixed-width part of every row: minutes, seconds and milliseconds of startTime (the block's hour is a
# constant prefix) and the trace id.
_FIXED = b'00:00.000Z","foundryTraceId":"' + b"0" * 36 + b'",'
_TRACE_AT = _FIXED.index(b"0" * 36)


def render_block(block: HourBlock) -> pa.Array:
    """Each execution of the block as its JSON object plus a trailing comma (Arrow string array)."""
    n = len(block)
    off = block.start_ms - block.hour * HOUR_MS
    digits = np.stack([off // 600_000, off // 60_000 % 10, off // 10_000 % 6, off // 1_000 % 10,
                       off // 100 % 10, off // 10 % 10, off % 10], axis=1).astype(np.uint8) + ord("0")  # fmt: skip
    fixed = np.tile(np.frombuffer(_FIXED, dtype=np.uint8), (n, 1))
    fixed[:, [0, 1, 3, 4, 6, 7, 8]] = digits
    fixed[:, _TRACE_AT : _TRACE_AT + 36] = block.trace.view(np.uint8).reshape(n, 36)
    hour = pd.Timestamp(block.hour * HOUR_MS, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:")
    return pc.binary_join_element_wise(
        pa.scalar('{"startTime":"' + hour),
        pa.array(fixed.view(f"S{len(_FIXED)}").ravel()).cast(pa.string()),
        _categories(block.profile).take(pa.array(_category_index(block))),
        pa.array(block.dur_value).cast(pa.string()),
        pa.scalar("}},"),
        "",
    )


def block_json(block: HourBlock) -> pa.Array:
    """The block's rendered rows (:func:`render_block`), rendered on first use and kept on the block."""
    rows = block.json_rows
    if rows is None:
        rows = block.json_rows = render_block(block)
    return rows


def render_rows(sels: list[Selection]) -> list[memoryview]:
    """Pre-rendered JSON of the selected rows, each piece ending with a comma, in order."""
    pieces: list[memoryview] = []
    for block, sel in sels:
        rows = block_json(block)
        if isinstance(sel, slice):
            a, b = sel.start, sel.stop
        else:
            rows = rows.take(pa.array(sel))
            a, b = 0, len(sel)
        if b <= a:
            continue
        _, offsets, data = rows.buffers()
        off = np.frombuffer(offsets, dtype=np.int32, count=len(rows) + 1 + rows.offset)
        pieces.append(memoryview(data)[int(off[rows.offset + a]) : int(off[rows.offset + b])])
    return pieces
