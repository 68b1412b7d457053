"""A cached load, start to finish: :func:`run` is the whole write protocol of the cache, in one place.

1. Take the write lock of every resource (held until the rows are read back, so a second process loading the
   same resources waits, then finds what this one fetched already settled).
2. Plan, per resource: what the history answers (settled coverage), what to fetch (gaps, provisional
   stretches, days whose file is damaged), and for a column filter what the unfiltered history answers.
3. Check the source against every manifest the load reads, before the first request.
4. Call the fetch callback for exactly the planned stretches; keep only rows inside them.
5. Commit per resource: record the files' new states, write the files, then record the coverage.
6. Read the whole window back from disk, so what a load returns is exactly what the history holds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CacheError
from ..timeutil import epoch_ms
from .intervals import DAY_MS, Interval, days_of, intersect, iso, subtract
from .layout import ALL, Layout
from .locks import hold
from .manifest import FORMAT_VERSION, FileRecord, Manifest, load_manifest, same_source, save_manifest
from .partitions import Scan, damage_error, rows_of, scan
from .tables import (
    CACHE_SCHEMA,
    conform,
    encode_partition,
    filter_key,
    filter_mask,
    locally_evaluable,
    merge_rows,
    read_partition,
    to_frame,
)

log = logging.getLogger("exec_analytics.cache")


class Stretch(NamedTuple):
    """One stretch a cached load fetches: ``[start_ms, end_ms)`` of resource ``rid``.

    ``rows_per_ms`` is the recent density of the resource's history (None when unknown), to size the first
    fetch slices: a refresh is mostly short stretches, and every slice costs a request.
    """

    rid: str
    start_ms: int
    end_ms: int
    rows_per_ms: float | None


#: The fetch callback: pages the stretches and returns their rows (any order, repeats allowed), or None.
FetchFn = Callable[[list[Stretch]], "pa.Table | None"]


@dataclass
class LoadResult:
    """What :meth:`ExecutionCache.load <exec_analytics.cache.ExecutionCache.load>` returns."""

    #: The executions of the window, read back from disk (the executions table, unsorted).
    frame: pd.DataFrame
    #: The stretches fetched from the server (empty when the cache answered everything).
    fetched: list[Stretch]
    #: The cache's clock just before the first request; None when nothing was fetched.
    fetched_at: pd.Timestamp | None


@dataclass
class _ResourcePlan:
    rid: str
    manifest: Manifest  # of the plan's store, with damaged days already forgotten
    local: list[Interval]  # answered from the history with the filter applied here (filtered loads only)
    stored: list[Interval]  # answered from the plan's store
    fetch: list[Interval]  # the part of `stored` to fetch now
    rewrite: set[int] = field(default_factory=set)  # damaged days: their files are replaced, not merged into
    # Verified bytes of the day files the plan answers from (its store; the history for `local`), kept up to
    # date by the commit: under the lock nothing else writes them, so the read-back needs no second GET.
    blobs: dict[int, bytes] = field(default_factory=dict)
    local_blobs: dict[int, bytes] = field(default_factory=dict)


@dataclass
class _Plan:
    where: dict[str, Any] | None
    key: str
    resources: list[_ResourcePlan]


def run(
    layout: Layout,
    rids: Sequence[str],
    window: Interval,
    *,
    where: dict[str, Any] | None,
    refresh: bool,
    source: str | None,
    fetch: FetchFn | None,
    lag_ms: int,
    now: Callable[[], pd.Timestamp],
    lock_timeout: float,
) -> LoadResult:
    """The cached load of ``rids`` over ``window`` (see the module docstring); arguments already checked."""
    with hold(layout.storage, [(layout.lock(rid), f"resource {rid}") for rid in rids], lock_timeout):
        now_ms = epoch_ms(now())
        plan = _plan(layout, rids, window, where, refresh, lag_ms, now_ms, can_fetch=fetch is not None)
        _check_source(layout, plan, source)
        todo = [Stretch(p.rid, a, b, _density(p.manifest, lag_ms, now_ms)) for p in plan.resources for a, b in p.fetch]
        fetched_at = None
        if todo:
            if fetch is None:
                shown = ", ".join(f"{s.rid} {iso(s.start_ms)}/{iso(s.end_ms)}" for s in todo[:3])
                raise CacheError(
                    f"the cache at {layout.url('')} does not hold {shown}{' ...' if len(todo) > 3 else ''} settled, "
                    "and there is no client to fetch it: pass client= or set FOUNDRY_HOSTNAME"
                )
            # Taken before the first request: everything that completed by then is in what is fetched.
            fetched_at = now()
            table = _keep_stretches(fetch(todo), todo)
            _commit(layout, plan, table, epoch_ms(fetched_at), source, lag_ms)
        frame = _read_back(layout, plan)
    return LoadResult(frame, todo, fetched_at)


def _plan(
    layout: Layout,
    rids: Sequence[str],
    window: Interval,
    where: dict[str, Any] | None,
    refresh: bool,
    lag_ms: int,
    now_ms: int,
    *,
    can_fetch: bool,
) -> _Plan:
    key = filter_key(where)
    local_ok = where is not None and locally_evaluable(where) and not refresh
    plans = []
    for rid in rids:
        local: list[Interval] = []
        local_blobs: dict[int, bytes] = {}
        if local_ok:
            history = load_manifest(layout, ALL, rid, None)
            _warn_future(history, now_ms)
            local = intersect([window], history.settled(lag_ms, now_ms))
            checked = _checked(layout, ALL, rid, local, None, can_fetch)
            # A damaged day of the history is fetched with the filter instead (a load without the filter
            # repairs the history itself).
            local = subtract(local, [(d * DAY_MS, (d + 1) * DAY_MS) for d in checked.damaged])
            local_blobs = checked.blobs
        stored = subtract([window], local)
        found = _checked(layout, key, rid, stored, where, can_fetch)
        manifest = found.manifest
        _warn_future(manifest, now_ms)
        for day, why in found.damaged.items():
            log.warning(
                "partition %s is damaged (%s): fetching the day again", layout.url(layout.partition(key, rid, day)), why
            )
            manifest.forget_day(day)
        # A refresh fetches everything again; otherwise only what is not settled yet.
        fetch = stored if refresh else subtract(stored, manifest.settled(lag_ms, now_ms))
        if _settle_states(manifest, found) and not fetch:
            save_manifest(layout, key, manifest)  # with a fetch, the commit saves it
        plans.append(
            _ResourcePlan(rid, manifest, local, stored, fetch, set(found.damaged), dict(found.blobs), local_blobs)
        )
    return _Plan(where, key, plans)


def _checked(
    layout: Layout, key: str, rid: str, ivs: list[Interval], where: dict[str, Any] | None, can_fetch: bool
) -> Scan:
    """The files of the days ``ivs`` touch, checked; damage with nothing to fetch it again is a CacheError."""
    found = scan(layout, key, rid, {d for a, b in ivs for d in days_of(a, b)}, where)
    if found.damaged and not can_fetch:
        raise damage_error(layout, key, rid, found)
    return found


def _settle_states(manifest: Manifest, found: Scan) -> bool:
    """Keep only the verified state of days a killed writer left with two; True when something changed.

    Two states accept either of two files; once one is known to be on disk, the other must not be accepted
    any more (a later copy of the older file over it would pass unnoticed).
    """
    assert manifest.files is not None
    changed = False
    for day, states in list(manifest.files.items()):
        if len(states) < 2:
            continue
        if day in found.records:
            manifest.files[day] = (found.records[day],)
            changed = True
        elif day in found.absent:
            del manifest.files[day]
            changed = True
    return changed


def _warn_future(manifest: Manifest, now_ms: int) -> None:
    for e in manifest.future(now_ms):
        warnings.warn(
            f"the cache's coverage of {manifest.resource_rid} [{iso(e.start)}, {iso(e.end)}) was fetched at "
            f"{iso(e.fetched_at)}, after the cache's clock says it is now ({iso(now_ms)}): a clock ran ahead. "
            "The stretch is treated as provisional and fetched again",
            RuntimeWarning,
            stacklevel=5,
        )


def _density(manifest: Manifest, lag_ms: int, now_ms: int) -> float | None:
    """Executions per millisecond over the last settled week of a resource's history, if known."""
    settled = manifest.settled(lag_ms, now_ms)
    if not settled:
        return None
    end = settled[-1][1]
    rows = 0.0
    span = 0
    for a, b in intersect(settled, [(end - 7 * DAY_MS, end)]):
        for day in days_of(a, b):
            states = manifest.file_states(day)
            n = states[-1].rows if states and states[-1] is not None else 0
            lo, hi = max(a, day * DAY_MS), min(b, (day + 1) * DAY_MS)
            # Whole-day files: count the part of the day that the interval covers.
            rows += n * (hi - lo) / DAY_MS
            span += hi - lo
    return rows / span if span else None


def _check_source(layout: Layout, plan: _Plan, source: str | None) -> None:
    """Refuse to mix data from two Foundry stacks in one resource's history, on every load."""
    if source is None:
        return
    for p in plan.resources:
        recorded = [p.manifest.source] + ([load_manifest(layout, ALL, p.rid, None).source] if p.local else [])
        for r in recorded:
            if r is not None and not same_source(r, source):
                raise CacheError(
                    f"the cache at {layout.url('')} holds resource {p.rid} fetched from {r}, and this load is from "
                    f"{source}; use another cache directory (cache=... or --cache-dir) for it"
                )


def _keep_stretches(table: pa.Table | None, todo: list[Stretch]) -> pa.Table | None:
    """Rows inside the stretches asked for; others (a server straying) are dropped with a warning.

    Coverage is recorded for exactly the stretches fetched, so a row outside them has no claim to be there.
    """
    if table is None or table.num_rows == 0:
        return table
    start = table.column("start_time").cast(pa.int64()).to_numpy()
    rid = np.asarray(table.column("resource_rid").cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    keep = np.zeros(len(start), dtype=bool)
    for s in todo:
        keep |= (rid == s.rid) & (start >= s.start_ms) & (start < s.end_ms)
    n = int((~keep).sum())
    if n:
        warnings.warn(
            f"the server returned {n} execution(s) outside the requested resources or windows; they were left out",
            RuntimeWarning,
            stacklevel=5,
        )
        table = table.filter(pa.array(keep))
    return table


def _by_partition(table: pa.Table | None) -> dict[tuple[str, int], pa.Table]:
    """The rows of ``table`` by (resource, UTC day), conformed to the file schema."""
    out: dict[tuple[str, int], pa.Table] = {}
    if table is None or not table.num_rows:
        return out
    table = conform(table)
    days = pc.divide(pc.cast(table.column("start_time"), pa.int64()), DAY_MS).to_numpy()
    rids = np.asarray(pc.cast(table.column("resource_rid"), pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    # One sort, then contiguous runs of (resource, day): no per-row Python loop.
    order = np.lexsort((days, rids.astype(str)))
    rids_sorted, days_sorted = rids[order].astype(str), days[order]
    change = np.flatnonzero((rids_sorted[1:] != rids_sorted[:-1]) | (days_sorted[1:] != days_sorted[:-1]))
    bounds = [0, *(change + 1).tolist(), len(order)]
    taken = table.take(pa.array(order))
    for lo, hi in pairwise(bounds):
        out[(str(rids_sorted[lo]), int(days_sorted[lo]))] = taken.slice(lo, hi - lo)
    return out


def _commit(layout: Layout, plan: _Plan, table: pa.Table | None, at: int, source: str | None, lag_ms: int) -> None:
    """Merge fetched rows into their partitions, then record the coverage, one resource at a time."""
    parts = _by_partition(table)
    log.debug("merging %d fetched rows into %d partitions", sum(t.num_rows for t in parts.values()), len(parts))
    if plan.key != ALL:
        # Before any data: a filtered store must never be found without the filter that defines it.
        _write_filter_file(layout, plan.key, plan.where)
    for p in plan.resources:
        if not p.fetch:
            continue
        manifest = p.manifest
        days = sorted(d for r, d in parts if r == p.rid)
        current = scan(layout, plan.key, p.rid, [d for d in days if d not in p.rewrite], plan.where)
        if current.damaged:  # checked in the plan, under the same lock: something else wrote here
            raise damage_error(layout, plan.key, p.rid, current)
        new: dict[int, tuple[bytes, FileRecord]] = {}
        for day in days:
            path = layout.url(layout.partition(plan.key, p.rid, day))
            old = read_partition(current.blobs[day], path, None, None) if day in current.blobs else None
            merged = merge_rows(parts[(p.rid, day)], old)
            data = encode_partition(merged)
            new[day] = (data, FileRecord.of(data, merged.num_rows))
        assert manifest.files is not None
        # An object store's lease can expire under a slow fetch: renew it, or stop before writing anything.
        layout.storage.check_lock(layout.lock(p.rid))
        if new:
            # First the manifest accepts both the file on disk and the one about to replace it, so neither a
            # reader nor a crash between the renames ever sees a legitimate file as damaged. A damaged day has
            # no record until its new file is in place: a leftover, ignored, and its coverage is forgotten.
            for day, (_, record) in new.items():
                if day not in p.rewrite:
                    manifest.files[day] = (current.records.get(day), record)
            save_manifest(layout, plan.key, manifest)
            for day, (data, _) in new.items():
                key = layout.partition(plan.key, p.rid, day)
                layout.storage.tidy(key.rpartition("/")[0])
                layout.storage.write(key, data)
            for day, (data, record) in new.items():
                manifest.files[day] = (record,)
                p.blobs[day] = data
        # Only now, with every row on disk, may the manifest claim the stretches.
        manifest.filter = plan.where
        if source is not None:
            manifest.source = source
        manifest.record(p.fetch, at, lag_ms)
        save_manifest(layout, plan.key, manifest)
        for day in p.rewrite - set(new):
            # A damaged day that turned out empty: no manifest records its file now; remove it for other readers.
            layout.storage.delete(layout.partition(plan.key, p.rid, day))
            p.blobs.pop(day, None)
        log.debug("recorded coverage of %s: %d stretch(es) fetched at %s", p.rid, len(p.fetch), iso(at))


def _write_filter_file(layout: Layout, key: str, where: dict[str, Any] | None) -> None:
    path = layout.filter_file(key)
    if layout.storage.read(path) is not None:
        return
    layout.storage.write(
        path, orjson.dumps({"format_version": FORMAT_VERSION, "where": where}, option=orjson.OPT_INDENT_2)
    )


def _read_back(layout: Layout, plan: _Plan) -> pd.DataFrame:
    """Every row the plan answers, as stored (the verified bytes of its files), as the executions DataFrame
    (unsorted)."""
    parts = []
    for p in plan.resources:
        if p.local:
            t = rows_of(layout, ALL, p.rid, p.local_blobs, p.local, None)
            if plan.where is not None:
                t = t.filter(filter_mask(t, plan.where))
            parts.append(t)
        if p.stored:
            parts.append(rows_of(layout, plan.key, p.rid, p.blobs, p.stored, None))
    parts = [t for t in parts if t.num_rows]
    return to_frame(pa.concat_tables(parts) if parts else CACHE_SCHEMA.empty_table())
