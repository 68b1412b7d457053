"""The steps of a cached load, used by :func:`~exec_analytics.load_executions` while it holds the locks.

1. :meth:`LoadSteps._plan`: per resource, what the history answers (settled coverage), what to fetch (the
   gaps and the provisional stretches), and for a column filter what the unfiltered history answers.
2. :meth:`LoadSteps._commit`: merge the fetched rows into their day partitions, then record the coverage.
3. :meth:`LoadSteps._read_plan`: read the whole window back from disk, so what a load returns is exactly
   what the history holds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import CacheError
from ..timeutil import epoch_ms
from .files import fsync_dir, remove_stale_tmp, write_atomic
from .intervals import DAY_MS, Interval, days_of, intersect, iso, normalise, subtract
from .layout import FILTER_FILE, Layout
from .manifest import FORMAT_VERSION
from .tables import (
    ALL,
    CACHE_SCHEMA,
    conform,
    filter_key,
    filter_mask,
    locally_evaluable,
    merge_rows,
    read_files,
    to_frame,
    write_partition,
)

log = logging.getLogger("exec_analytics.cache")


@dataclass
class ResourcePlan:
    """What one resource's load answers from disk and what it fetches (epoch-millisecond intervals)."""

    rid: str
    local: list[Interval]  # answered from the history with the filter applied here (filtered loads only)
    stored: list[Interval]  # answered from the plan's store
    fetch: list[Interval]  # the part of `stored` to fetch from the server now
    rows_per_ms: float | None  # recent density of the history, to size the first fetch slices


@dataclass
class LoadPlan:
    """The plan of one cached load: the store it reads and extends, and each resource's part."""

    where: dict[str, Any] | None
    key: str
    resources: list[ResourcePlan]


class LoadSteps(Layout):
    """Planning, committing and reading back a cached load (see the module docstring)."""

    def _plan(
        self, rids: Sequence[str], start_ms: int, end_ms: int, where: dict[str, Any] | None, *, refresh: bool = False
    ) -> LoadPlan:
        """What to answer from disk and what to fetch, per resource. Call while holding :meth:`_lock`."""
        self._check_root(create=False)
        key = filter_key(where)
        lag = self._lag_ms
        local_ok = where is not None and locally_evaluable(where) and not refresh
        window = [(start_ms, end_ms)]
        plans = []
        for rid in rids:
            local: list[Interval] = []
            if local_ok:
                local = intersect(window, self._manifest(ALL, rid, None).settled(lag))
            stored = subtract(window, local)
            # A refresh fetches everything again; otherwise only what is not settled yet.
            fetch = stored if refresh else subtract(stored, self._manifest(key, rid, where).settled(lag))
            plans.append(ResourcePlan(rid, local, stored, fetch, self._density(key, rid) if fetch else None))
        return LoadPlan(where, key, plans)

    def _density(self, key: str, rid: str) -> float | None:
        """Executions per millisecond over the last settled week of a resource's history, if known."""
        manifest = self._manifest(key, rid, None)
        settled = manifest.settled(self._lag_ms)
        if not settled:
            return None
        end = settled[-1][1]
        recent = intersect(settled, [(end - 7 * DAY_MS, end)])
        rows = 0
        span = 0
        for a, b in recent:
            for day in days_of(a, b):
                path = self._partition(key, rid, day)
                lo, hi = max(a, day * DAY_MS), min(b, (day + 1) * DAY_MS)
                try:
                    n = pq.read_metadata(path).num_rows
                except (OSError, pa.ArrowInvalid):
                    n = 0
                # Whole-day files: count the part of the day that the interval covers.
                rows += n * (hi - lo) / DAY_MS
                span += hi - lo
        return rows / span if span else None

    def _check_source(self, plan: LoadPlan, source: str | None) -> None:
        """Refuse to mix data from two Foundry hosts in one resource's history."""
        if source is None:
            return
        for p in plan.resources:
            keys = [plan.key] + ([ALL] if p.local else [])
            for key in keys:
                recorded = self._manifest(key, p.rid, None).source
                if recorded is not None and recorded != source:
                    raise CacheError(
                        f"the cache at {self.path} holds resource {p.rid} fetched from {recorded}, and this load "
                        f"is from {source}; use another cache directory (cache=... or --cache-dir) for it"
                    )

    def _commit(self, plan: LoadPlan, table: pa.Table | None, fetched_at: pd.Timestamp, source: str | None) -> None:
        """Merge fetched rows into the partitions, then record the coverage. Call while holding :meth:`_lock`.

        ``table`` holds the rows fetched for ``plan``'s fetch intervals (any resources); ``fetched_at`` must
        be a time at or before the first request of the fetch.
        """
        self._check_root(create=True)
        at = epoch_ms(fetched_at)
        by_partition: dict[tuple[str, int], pa.Table] = {}
        if table is not None and table.num_rows:
            table = conform(table)
            rid_codes = pc.cast(table.column("resource_rid"), pa.string())
            days = pc.divide(pc.cast(table.column("start_time"), pa.int64()), DAY_MS).to_numpy()
            rid_arr = np.asarray(rid_codes.to_numpy(zero_copy_only=False), dtype=object)
            # One sort, then contiguous runs of (resource, day): no per-row Python loop.
            order = np.lexsort((days, rid_arr.astype(str)))
            rids_sorted, days_sorted = rid_arr[order].astype(str), days[order]
            change = np.flatnonzero((rids_sorted[1:] != rids_sorted[:-1]) | (days_sorted[1:] != days_sorted[:-1]))
            bounds = [0, *(change + 1).tolist(), len(order)]
            taken = table.take(pa.array(order))
            for lo, hi in pairwise(bounds):
                by_partition[(str(rids_sorted[lo]), int(days_sorted[lo]))] = taken.slice(lo, hi - lo)
        if plan.key != ALL:
            # Before any data: a filtered store must never be found without the filter that defines it.
            self._write_filter_file(plan.key, plan.where)
        log.debug(
            "merging %d fetched rows into %d partitions",
            sum(t.num_rows for t in by_partition.values()),
            len(by_partition),
        )
        touched_dirs: set[Path] = set()
        for (rid, day), rows in sorted(by_partition.items()):
            path = self._partition(plan.key, rid, day)
            remove_stale_tmp(path.parent)
            new_dir = not path.parent.exists()
            old = read_files([path], None, None) if path.exists() else None
            write_partition(path, merge_rows(rows, old))
            touched_dirs.add(path.parent)
            if new_dir:
                touched_dirs.update([path.parent.parent, path.parent.parent.parent])
        for d in sorted(touched_dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)
        # Only now, with every row on disk, may the manifest claim the intervals.
        for p in plan.resources:
            if not p.fetch:
                continue
            manifest = self._manifest(plan.key, p.rid, plan.where)
            manifest.filter = plan.where
            if source is not None:
                manifest.source = source
            manifest.record(p.fetch, at, self._lag_ms)
            self._save_manifest(plan.key, manifest)
            log.debug("recorded coverage of %s: %d stretch(es) fetched at %s", p.rid, len(p.fetch), iso(at))

    def _write_filter_file(self, key: str, where: dict[str, Any] | None) -> None:
        path = self._store_dir(key) / FILTER_FILE
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps({"format_version": FORMAT_VERSION, "where": where}, option=orjson.OPT_INDENT_2)
        write_atomic(path, lambda f: f.write(data))

    def _read_plan(self, plan: LoadPlan) -> pd.DataFrame:
        """Every row the plan answers, from disk, as the executions DataFrame (unsorted)."""
        parts = []
        for p in plan.resources:
            if p.local:
                t = self._read_intervals(ALL, p.rid, p.local, None)
                if t is not None and plan.where is not None:
                    t = t.filter(filter_mask(t, plan.where))
                parts.append(t)
            if p.stored:
                parts.append(self._read_intervals(plan.key, p.rid, p.stored, None))
        parts = [t for t in parts if t is not None and t.num_rows]
        return to_frame(pa.concat_tables(parts) if parts else CACHE_SCHEMA.empty_table())

    def _read_intervals(
        self, key: str, rid: str, ivs: Sequence[Interval], columns: Sequence[str] | None
    ) -> pa.Table | None:
        ivs = normalise(ivs)
        if not ivs:
            return None
        for attempt in range(3):
            # Only the partitions of the asked-for days are opened: the rest of the history is never touched.
            days = sorted({d for a, b in ivs for d in days_of(a, b)})
            paths = [p for d in days if (p := self._partition(key, rid, d)).exists()]
            if not paths:
                return None
            try:
                return read_files(paths, ivs, columns)
            except FileNotFoundError:
                # A concurrent prune removed a file between listing and reading: list again.
                if attempt == 2:
                    raise
        return None  # pragma: no cover
