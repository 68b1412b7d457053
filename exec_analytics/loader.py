"""``load_executions``: page one or many resources into the executions table, concurrently and exactly.

How it works, and why:

* The window of each resource is cut into time slices, and a bounded pool of workers pages the slices
  concurrently. Page tokens are bound to the request body and must be used sequentially, so time slices are
  the only way to parallelise one resource.
* Traffic is uneven (diurnal peaks, one hot resource), so a fixed split leaves workers idle. After every page
  a worker checks whether others are idle and, if so, hands them the older part of what it has left: the
  API returns newest first, so the oldest start time seen on a page bounds what is still to read.
* A worker restarts its slice from that bound when the server rejects a page token (they are short-lived),
  and refuses to loop when a token repeats.
* Throttling is shared: the client's gate pauses every worker when one of them gets a 429 or 503.
* Restarts and unstable paging can return an execution twice; the result is deduplicated once at the end.
* Pages are decoded in batches on the calling thread while the workers wait on the network.
* With a cache (the default), the resources' locks are taken, the cache plans what it lacks or holds only
  provisionally, just those stretches are paged (first slices sized by the history's recent density, since a
  refresh is mostly short stretches and every slice costs a request), merged, and the whole window is read
  back from disk. ``cache=False`` pages the whole window exactly as without a cache.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from . import schema
from .cache import ExecutionCache
from .client import FoundryClient, Page
from .errors import ExecAnalyticsError, InvalidPageTokenError
from .filters import as_where
from .rids import validate_rid
from .timeutil import TimeLike, format_api_time, to_utc

__all__ = ["DEFAULT_WORKERS", "load_executions"]

log = logging.getLogger(__name__)

#: Concurrent requests by default: well inside a user token's limit of 30 concurrent requests, and enough to
#: hide ~20 ms of server latency per page (measured: 8 workers are ~7x a sequential loop).
DEFAULT_WORKERS = 8
#: Pages decoded together: large enough for Arrow's reader to amortise its set-up, small enough to overlap
#: decoding with paging.
_DECODE_BATCH = 100
#: A worker gives up a slice after this many rejected page tokens in a row without progress.
_MAX_TOKEN_RESTARTS = 5
#: Initial slices per worker and resource: small enough that uneven traffic rarely leaves a worker idle (a split
#: costs a restarted request), large enough that the partial last page of each slice is noise.
_SLICES_PER_WORKER = 4
#: Never split a remainder shorter than this: below it, the restart costs more than it saves.
_MIN_SPLIT_MS = 2_000
#: Expected pages per first slice of a cached load's stretch (see ``_interval_slices``).
_PAGES_PER_FIRST_SLICE = 4


@dataclass
class _Slice:
    """A half-open stretch ``[start_ms, end_ms)`` of one resource still to be read."""

    rid: str
    start_ms: int
    end_ms: int


class _Scheduler:
    """Work queue of slices shared by the workers, with idle accounting for dynamic splitting."""

    def __init__(self, slices: list[_Slice], workers: int) -> None:
        self._pending = list(reversed(slices))
        self._cond = threading.Condition()
        self._busy = 0
        self._workers = workers
        self.error: BaseException | None = None
        self.aborted = threading.Event()

    def take(self) -> _Slice | None:
        with self._cond:
            while not self._pending:
                if self._busy == 0 or self.aborted.is_set():
                    self._cond.notify_all()
                    return None
                self._cond.wait()
            if self.aborted.is_set():
                return None
            self._busy += 1
            return self._pending.pop()

    def finish(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def idle_workers(self) -> int:
        """Workers that would pick up a slice right now (none while slices are queued)."""
        with self._cond:
            return 0 if self._pending else self._workers - self._busy

    def give(self, slices: list[_Slice]) -> None:
        with self._cond:
            self._pending.extend(slices)
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self.aborted.set()
            self._cond.notify_all()


class _Concurrency:
    """Requests allowed in flight: halved when the server throttles, grown by one after clean rounds (AIMD).

    The client's gate already pauses every worker after a 429/503, but if they all resume at once they collide
    again; a server that allows fewer concurrent requests than there are workers (a user token shared with
    other tools) needs fewer requests in flight, not just a pause.
    """

    def __init__(self, limit: int, client: FoundryClient) -> None:
        self._gate = getattr(client, "gate", None)
        self._max = self.limit = self.lowest = limit
        self._in_flight = 0
        self._since_change = 0
        self._trips = self._trips_now()
        self._cond = threading.Condition()

    def _trips_now(self) -> int:
        return int(getattr(self._gate, "trips", 0))

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1

    def release(self) -> None:
        trips = self._trips_now()
        with self._cond:
            self._in_flight -= 1
            self._since_change += 1
            throttled = trips > self._trips
            self._trips = trips
            # One change per round of requests: the throttles of one burst must not halve the limit repeatedly.
            if self._since_change >= self.limit:
                if throttled and self.limit > 1:
                    self.limit = max(1, self.limit // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self._since_change = 0
                elif not throttled and self.limit < self._max and self._since_change >= 4 * self.limit:
                    self.limit += 1
                    self._since_change = 0
            self._cond.notify_all()


class _Worker:
    """Pages slices until none are left, handing results to the calling thread through ``out``."""

    def __init__(
        self,
        client: FoundryClient,
        sched: _Scheduler,
        out: queue.Queue[tuple[Page | None, int]],
        where: dict[str, Any] | None,
        page_size: int,
        concurrency: _Concurrency,
    ) -> None:
        self.client, self.sched, self.out, self.concurrency = client, sched, out, concurrency
        self.where, self.page_size = where, page_size
        self.requests = 0
        self.restarts = 0
        self.splits = 0

    def run(self) -> None:
        while (sl := self.sched.take()) is not None:
            try:
                self._page_slice(sl)
            except BaseException as exc:  # surfaces in the calling thread, which re-raises it
                self.sched.abort(exc)
            finally:
                self.sched.finish()

    def _request(self, sl: _Slice, req_end_ms: int, token: str | None) -> Page:
        self.requests += 1
        self.concurrency.acquire()
        try:
            return self.client.list_executions_page(
                sl.rid,
                start=_ts(sl.start_ms),
                end=_ts(req_end_ms),
                where=self.where,
                page_size=self.page_size,
                page_token=token,
            )
        finally:
            self.concurrency.release()

    def _page_slice(self, sl: _Slice) -> None:
        # `bound` is an exclusive upper bound on what remains: everything in [bound, end) has been returned.
        # A page's oldest start may be shared by executions not yet returned, hence the +1 ms.
        req_end = bound = sl.end_ms
        token: str | None = None
        seen_tokens: set[str] = set()
        failed_restarts = 0
        while not self.sched.aborted.is_set():
            try:
                page = self._request(sl, req_end, token)
            except InvalidPageTokenError:
                if token is None or failed_restarts >= _MAX_TOKEN_RESTARTS:
                    raise
                # Expired or rejected token: read again from what is known to be complete.
                failed_restarts += 1
                self.restarts += 1
                req_end, token = bound, None
                seen_tokens.clear()
                continue
            new_bound = bound
            if page.oldest_start is not None:
                # Clamped at the slice start: a server that strays outside the window must not stall us.
                new_bound = max(sl.start_ms, min(bound, _ms(page.oldest_start) + 1))
                if new_bound < bound:
                    failed_restarts = 0
            self.out.put((page, bound - new_bound))
            bound = new_bound
            token = page.next_page_token
            if token is None:
                self.out.put((None, bound - sl.start_ms))
                return
            if token in seen_tokens:
                raise ExecAnalyticsError(
                    f"page token cycle for resource {sl.rid} in [{format_api_time(_ts(sl.start_ms))}, "
                    f"{format_api_time(_ts(req_end))}): the server returned a token it had returned before"
                )
            seen_tokens.add(token)
            idle = self.sched.idle_workers()
            if idle and bound - sl.start_ms >= _MIN_SPLIT_MS * (idle + 1):
                # Hand the older part of the remainder to idle workers; keep the newest part, which must be
                # re-requested because a page token is bound to the window it was issued for.
                edges = np.linspace(sl.start_ms, bound, idle + 2).astype(np.int64)
                self.sched.give([_Slice(sl.rid, int(a), int(b)) for a, b in pairwise(edges[:-1])])
                self.splits += 1
                sl.start_ms = int(edges[-2])
                req_end, token = bound, None
                seen_tokens.clear()


def _ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def _ts(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _initial_slices(rids: list[str], start_ms: int, end_ms: int, workers: int) -> list[_Slice]:
    # Newest first, like the API, so the provisional recent edge is read early; a few slices per worker and
    # resource to start, then dynamic splitting takes over.
    edges = np.unique(np.linspace(start_ms, end_ms, _SLICES_PER_WORKER * workers + 1).astype(np.int64))
    return [
        _Slice(rid, int(a), int(b))
        for rid in rids
        for a, b in reversed(list(pairwise(edges)))
        if b > a
    ]


def _interval_slices(intervals: Sequence[tuple[str, int, int, float | None]], workers: int) -> list[_Slice]:
    """First slices for a cached load: only the stretches the cache lacks, newest first.

    Each stretch gets a share of the usual slices by its length; when the history tells how dense the
    resource is, no more slices than about one per :data:`_PAGES_PER_FIRST_SLICE` expected pages, because
    every slice costs at least one request and a refresh is mostly short stretches. Dynamic splitting
    still shares out a stretch that turns out denser.
    """
    budget = _SLICES_PER_WORKER * workers
    total: dict[str, int] = {}
    for rid, a, b, _ in intervals:
        total[rid] = total.get(rid, 0) + (b - a)
    out: list[_Slice] = []
    for rid, a, b, rows_per_ms in sorted(intervals, key=lambda iv: -iv[2]):
        n = max(1, round(budget * (b - a) / total[rid]))
        if rows_per_ms is not None:
            pages = rows_per_ms * (b - a) / 100
            n = min(n, max(1, int(np.ceil(pages / _PAGES_PER_FIRST_SLICE))))
        edges = np.unique(np.linspace(a, b, n + 1).astype(np.int64))
        out += [_Slice(rid, int(x), int(y)) for x, y in reversed(list(pairwise(edges))) if y > x]
    return out


def _resource_list(resource_rid: str | Sequence[str]) -> list[str]:
    if isinstance(resource_rid, str):
        rids = [resource_rid]
    elif isinstance(resource_rid, Sequence) and resource_rid:
        rids = list(resource_rid)
    else:
        raise TypeError("resource_rid must be a RID string or a non-empty list of them")
    for rid in rids:
        validate_rid(rid)
    return list(dict.fromkeys(rids))


def _check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ValueError(
            f"workers must be an integer from 1 to 256, got {workers!r}; user tokens allow 30 concurrent "
            f"requests in all, so stay at or below 30 unless the token is a service user's"
        )
    return workers


def _check_page_size(page_size: object) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 100:
        raise ValueError(f"page_size must be an integer from 1 to 100 (the API's maximum), got {page_size!r}")
    return page_size


def load_executions(
    resource_rid: str | Sequence[str],
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    where: Any = None,
    client: FoundryClient | None = None,
    cache: ExecutionCache | str | os.PathLike[str] | bool | None = None,
    refresh: bool = False,
    workers: int = DEFAULT_WORKERS,
    progress: bool | None = None,
    page_size: int = 100,
) -> pd.DataFrame:
    """Load every completed execution of one or more resources that started in ``[start, end)``.

    Parameters
    ----------
    resource_rid : str or sequence of str
        The function or automation RID(s).
    start, end : str, datetime or pandas.Timestamp, optional
        Timezone-aware bounds of the half-open window ``[start, end)`` on *start* time. Naive times are
        rejected. Defaults mirror the API: ``end`` = now, ``start`` = ``end`` − 24 h.
    where : Filter, dict or None
        A server-side filter: a builder from :mod:`exec_analytics.filters` or a raw ExecutionFilter dict.
    client : FoundryClient, optional
        Defaults to one configured from ``FOUNDRY_HOSTNAME`` / ``FOUNDRY_TOKEN`` (closed afterwards). Not
        needed, and not created, when the cache already holds the whole window settled.
    cache : ExecutionCache, path, None or False
        The local Parquet history (see :class:`~exec_analytics.cache.ExecutionCache`). ``None`` (default)
        uses the directory from the settings (``EXEC_ANALYTICS_CACHE_DIR``, else a per-user cache
        directory; if it cannot be written, a warning and no cache); a path uses that directory; ``False``
        bypasses the cache entirely. With a cache, only the stretches it lacks and its provisional stretches
        (the last ``settle_lag`` before each earlier fetch, 2 h by default) are fetched; a window it holds
        settled costs no request at all. Nothing stale is served: a stretch is only ever answered from disk
        once it is older than the settle lag was when it was fetched.
    refresh : bool
        Fetch the whole window again even where the cache holds it settled, and merge (default False).
    workers : int
        Concurrent requests (default 8). A user token allows 30 concurrent requests across everything
        using it; service users allow 800.
    progress : bool or None
        Show a progress bar; ``None`` shows it only when standard error is a terminal.
    page_size : int
        Executions per request, 1–100.

    Returns
    -------
    pandas.DataFrame
        The executions table, one row per execution, sorted by ``start_time`` ascending:
        ``start_time`` (datetime64[ms, UTC]), ``duration_s`` (float64 seconds), ``status`` (category),
        ``failure_reason`` (category, NA when absent), ``resource_rid`` (category), ``resource_version``
        (ordered category), ``caller_rid`` (category, NA when absent), ``trace_owning_rid`` (category),
        ``foundry_trace_id`` (string), and ``extra`` (JSON text) only when the API sent unknown fields.
        ``df.attrs`` holds the provenance: ``resource_rids``, ``start``, ``end``, ``where``, ``fetched_at``,
        ``source``, ``requests``, ``pages``, ``duplicates_dropped``, ``token_restarts``, ``slice_splits``,
        ``lowest_concurrency`` (fewest requests allowed in flight after throttling; None when nothing was
        fetched) and, with a cache, ``cache``: ``path``, ``settle_lag_s``, ``fetched`` (the ``[rid, start,
        end]`` stretches this call fetched) and ``refresh``.

    Raises
    ------
    ValueError, TypeError
        For bad arguments, before any request.
    exec_analytics.errors.ApiError
        Subclasses for errors the API returned (permission, not found, persistent throttling, ...).
    exec_analytics.errors.TransportError
        When the server could not be reached within the client's retry budget.
    exec_analytics.errors.CacheError
        When the cache is locked past its ``lock_timeout``, of another format version, or holds the
        resource from another Foundry host.
    """
    rids = _resource_list(resource_rid)
    end_ts = to_utc(end, "end") if end is not None else pd.Timestamp.now(tz="UTC").floor("ms")
    start_ts = to_utc(start, "start") if start is not None else end_ts - pd.Timedelta(hours=24)
    if end_ts <= start_ts:
        raise ValueError(f"end ({end_ts.isoformat()}) must be after start ({start_ts.isoformat()}); "
                         "windows are [start, end)")
    where_dict = as_where(where)
    workers = _check_workers(workers)
    page_size = _check_page_size(page_size)
    store = _resolve_cache(cache)
    if cache is None and store is not None and not _usable(store):
        store = None
    if progress is None:
        progress = sys.stderr.isatty()
    if store is not None:
        return _load_cached(store, rids, start_ts, end_ts, where_dict, client, workers, progress, page_size,
                            refresh=bool(refresh))

    own_client = client is None
    client = client if client is not None else FoundryClient()
    fetched_at = pd.Timestamp.now(tz="UTC")
    start_ms, end_ms = _ms(start_ts), _ms(end_ts)
    try:
        got = _fetch(client, _initial_slices(rids, start_ms, end_ms, workers), where_dict, workers, progress,
                     page_size)
    finally:
        if own_client:
            client.close()
    frame = got.frame()
    frame = _keep_window(frame, start_ts, end_ts, set(rids))
    frame = frame.sort_values("start_time", kind="stable", ignore_index=True)
    frame.attrs.update(
        resource_rids=rids,
        start=start_ts.isoformat(),
        end=end_ts.isoformat(),
        where=where_dict,
        fetched_at=fetched_at.isoformat(),
        source=getattr(client, "base_url", None),
        **got.attrs(),
    )
    log.debug("loaded %d executions in %d pages (%d duplicates dropped)", len(frame), got.pages, got.dropped)
    return frame


@dataclass
class _Fetched:
    """What one concurrent paging run returned: the deduplicated rows and how it went."""

    table: pa.Table | None
    pages: int
    dropped: int
    pool: list[_Worker]
    concurrency: _Concurrency

    def frame(self) -> pd.DataFrame:
        if self.table is None or self.table.num_rows == 0:
            return schema.empty_frame()
        return schema.to_frame(self.table)

    def attrs(self) -> dict[str, Any]:
        return {
            "requests": sum(w.requests for w in self.pool),
            "pages": self.pages,
            "duplicates_dropped": self.dropped,
            "token_restarts": sum(w.restarts for w in self.pool),
            "slice_splits": sum(w.splits for w in self.pool),
            "lowest_concurrency": self.concurrency.lowest,
        }


def _fetch(client: FoundryClient, slices: list[_Slice], where_dict: dict[str, Any] | None, workers: int,
           progress: bool, page_size: int) -> _Fetched:
    """Page ``slices`` with ``workers`` concurrent workers and decode them; rows deduplicated, not filtered."""
    sched = _Scheduler(slices, workers)
    out: queue.Queue[tuple[Page | None, int]] = queue.Queue()
    concurrency = _Concurrency(workers, client)
    pool = [_Worker(client, sched, out, where_dict, page_size, concurrency) for _ in range(workers)]
    total_ms = max(1, sum(sl.end_ms - sl.start_ms for sl in slices))
    bar = tqdm(total=100.0, disable=not progress, unit="%", desc="executions",
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
    tables: list[pa.Table] = []
    bodies: list[bytes] = []
    pages = rows = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exec-analytics-loader") as executor:
            futures = [executor.submit(w.run) for w in pool]
            try:
                while True:
                    try:
                        page, covered = out.get(timeout=0.05)
                    except queue.Empty:
                        if all(f.done() for f in futures) and out.empty():
                            break
                        continue
                    bar.update(100.0 * covered / total_ms)
                    if page is None:
                        continue
                    pages += 1
                    rows += page.n_executions
                    bar.set_postfix_str(f"{pages:,} pages, {rows:,} rows", refresh=False)
                    if page.n_executions:
                        bodies.append(page.body)
                    if len(bodies) >= _DECODE_BATCH:
                        tables.append(schema.decode_pages(bodies))
                        bodies = []
            except BaseException as exc:  # Ctrl-C or a decoding error: stop the workers before leaving
                sched.abort(exc)
                raise
        if sched.error is not None:
            raise sched.error
        if bodies:
            tables.append(schema.decode_pages(bodies))
    finally:
        bar.close()

    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    dropped = 0
    if table is not None and table.num_rows:
        table, dropped = schema.dedupe(table)
    return _Fetched(table, pages, dropped, pool, concurrency)


def _resolve_cache(cache: Any) -> ExecutionCache | None:
    if cache is False:
        return None
    if cache is None:
        return ExecutionCache()
    if isinstance(cache, ExecutionCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return ExecutionCache(cache)
    raise TypeError(
        f"cache must be an ExecutionCache, a directory path, None (the default directory) or False (no cache), "
        f"got {type(cache).__name__}"
    )


def _usable(store: ExecutionCache) -> bool:
    """Whether the default cache directory can be written; if not, say so and load without it.

    Only for the default: a notebook on a read-only home directory should still load. A cache passed
    explicitly that cannot be written is an error the caller must see.
    """
    try:
        store.path.mkdir(parents=True, exist_ok=True)
        if os.access(store.path, os.W_OK):
            return True
        problem = "it is not writable"
    except OSError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"the default cache directory {store.path} cannot be used ({problem}); loading without the cache. "
        "Set EXEC_ANALYTICS_CACHE_DIR to a writable directory, or pass cache=False to silence this.",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def _source_host(client: Any) -> str | None:
    base = getattr(client, "base_url", None)
    return urlsplit(base).hostname if isinstance(base, str) else None


def _load_cached(store: ExecutionCache, rids: list[str], start_ts: pd.Timestamp, end_ts: pd.Timestamp,
                 where_dict: dict[str, Any] | None, client: FoundryClient | None, workers: int, progress: bool,
                 page_size: int, *, refresh: bool) -> pd.DataFrame:
    """``load_executions`` through the cache: fetch what it lacks or holds provisionally, merge, read back.

    The resources' locks are held from planning to reading back, so a second process loading the same
    resources waits and then finds the stretches this one fetched already settled.
    """
    start_ms, end_ms = _ms(start_ts), _ms(end_ts)
    got: _Fetched | None = None
    own_client = False
    fetched_at = None
    with store._lock(rids):
        plan = store._plan(rids, start_ms, end_ms, where_dict, refresh=refresh)
        todo = [(p.rid, a, b, p.rows_per_ms) for p in plan.resources for a, b in p.fetch]
        try:
            if todo:
                own_client = client is None
                client = client if client is not None else FoundryClient()
                store._check_source(plan, _source_host(client))
                # Taken before the first request: everything that completed by then is in what is fetched.
                fetched_at = store.now()
                got = _fetch(client, _interval_slices(todo, workers), where_dict, workers, progress, page_size)
                table = _keep_intervals(got.table, todo)
                store._commit(plan, table, fetched_at, _source_host(client))
        finally:
            if own_client and client is not None:
                client.close()
        table = store._read_plan(plan)  # a DataFrame
    frame = table
    frame = frame.sort_values("start_time", kind="stable", ignore_index=True)
    fetched = [[rid, _ts(a).isoformat(), _ts(b).isoformat()] for rid, a, b, _ in todo]
    frame.attrs.update(
        resource_rids=rids,
        start=start_ts.isoformat(),
        end=end_ts.isoformat(),
        where=where_dict,
        fetched_at=(fetched_at or store.now()).isoformat(),
        source=getattr(client, "base_url", None),
        **(got.attrs() if got is not None else dict.fromkeys(_FETCH_STATS, 0) | {"lowest_concurrency": None}),
        cache={
            "path": str(store.path),
            "settle_lag_s": store.settle_lag.total_seconds(),
            "fetched": fetched,
            "refresh": refresh,
        },
    )
    log.debug("loaded %d executions (%d stretches fetched)", len(frame), len(fetched))
    return frame


_FETCH_STATS = ("requests", "pages", "duplicates_dropped", "token_restarts", "slice_splits")


def _keep_intervals(table: pa.Table | None, todo: list[tuple[str, int, int, float | None]]) -> pa.Table | None:
    """Rows inside the stretches asked for; others (a server straying) are dropped with a warning."""
    if table is None or table.num_rows == 0:
        return table
    start = table.column("start_time").cast(pa.int64()).to_numpy()
    rid = np.asarray(table.column("resource_rid").cast(pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    keep = np.zeros(len(start), dtype=bool)
    for r, a, b, _ in todo:
        keep |= (rid == r) & (start >= a) & (start < b)
    n = int((~keep).sum())
    if n:
        warnings.warn(
            f"the server returned {n} execution(s) outside the requested resources or windows; they were left out",
            RuntimeWarning,
            stacklevel=4,
        )
        table = table.filter(pa.array(keep))
    return table


def _keep_window(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, rids: set[str]) -> pd.DataFrame:
    """Drop rows the server returned outside what was asked for, and say so: never a silent drop."""
    outside = (frame["start_time"] < start) | (frame["start_time"] >= end)
    outside |= ~frame["resource_rid"].isin(rids)
    n = int(outside.sum())
    if n:
        warnings.warn(
            f"the server returned {n} execution(s) outside the requested resources or window "
            f"[{start.isoformat()}, {end.isoformat()}); they were left out",
            RuntimeWarning,
            stacklevel=3,
        )
        frame = frame.loc[~outside]
    return frame


def _describe(attrs: Mapping[str, Any]) -> str:
    """One line of provenance for logs and the CLI."""
    return (
        f"{attrs.get('pages', 0):,} pages in {attrs.get('requests', 0):,} requests, "
        f"{attrs.get('duplicates_dropped', 0):,} duplicates dropped"
    )
