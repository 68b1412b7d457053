"""``load_executions``: page one or many resources into the executions table, concurrently and exactly.

Paging itself (time slices, workers, restarts, throttling, dedupe) is :mod:`exec_analytics.paging`. This
module validates the arguments, decides what to page, and assembles the result:

* With a cache (the default), :meth:`ExecutionCache.load <exec_analytics.cache.ExecutionCache.load>` runs the
  whole cached load (locks, plan, source check, commit, read-back) and calls back here to page just the
  stretches it lacks or holds only provisionally (first slices sized by the history's recent density, since
  a refresh is mostly short stretches and every slice costs a request). ``cache=False`` pages the whole
  window.
* Either way the provenance in ``df.attrs`` is built by one function (:class:`Provenance`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from .cache import ExecutionCache, Stretch, origin
from .client import MAX_PAGE_SIZE, FoundryClient
from .config import Settings, normalize_base_url
from .filters import as_where
from .paging import Fetched, fetch, initial_slices, interval_slices
from .rids import validate_rids
from .timeutil import TimeLike, epoch_ms, from_epoch_ms, to_utc, validate_window

__all__ = ["DEFAULT_WORKERS", "CacheProvenance", "Provenance", "load_executions"]

log = logging.getLogger(__name__)

#: Concurrent requests by default: well inside a user token's limit of 30 concurrent requests, and enough to
#: hide ~20 ms of server latency per page (measured: 8 workers are ~7x a sequential loop).
DEFAULT_WORKERS = 8


def _check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ValueError(
            f"workers must be an integer from 1 to 256, got {workers!r}; user tokens allow 30 concurrent "
            f"requests in all, so stay at or below 30 unless the token is a service user's"
        )
    return workers


def _check_page_size(page_size: object) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(
            f"page_size must be an integer from 1 to {MAX_PAGE_SIZE} (the API's maximum), got {page_size!r}"
        )
    return page_size


class CacheProvenance(TypedDict):
    """``df.attrs["cache"]``: how a load used the cache."""

    #: The cache directory.
    path: str
    #: The cache's settle lag, in seconds.
    settle_lag_s: float
    #: ``[rid, start, end]`` (ISO-8601) of every stretch this load fetched; empty when the cache answered all.
    fetched: list[list[str]]
    #: Whether the load was asked to fetch the whole window again.
    refresh: bool


@dataclass(frozen=True)
class Provenance:
    """Where a loaded frame came from: the structure behind ``df.attrs`` (see :func:`load_executions`)."""

    resource_rids: list[str]
    start: str
    end: str
    where: dict[str, Any] | None
    fetched_at: str
    source: str | None
    requests: int
    pages: int
    duplicates_dropped: int
    token_restarts: int
    slice_splits: int
    lowest_concurrency: int | None
    cache: CacheProvenance | None

    @classmethod
    def of(
        cls,
        rids: list[str],
        window: tuple[pd.Timestamp, pd.Timestamp],
        where: dict[str, Any] | None,
        fetched_at: pd.Timestamp,
        client: FoundryClient | None,
        got: Fetched | None,
        cache: CacheProvenance | None = None,
    ) -> Provenance:
        """The one place provenance is built, with or without a cache."""
        stats: dict[str, Any] = (
            got.attrs()
            if got is not None
            else {
                "requests": 0,
                "pages": 0,
                "duplicates_dropped": 0,
                "token_restarts": 0,
                "slice_splits": 0,
                "lowest_concurrency": None,
            }
        )
        return cls(
            resource_rids=rids,
            start=window[0].isoformat(),
            end=window[1].isoformat(),
            where=where,
            fetched_at=fetched_at.isoformat(),
            source=getattr(client, "base_url", None),
            requests=stats["requests"],
            pages=stats["pages"],
            duplicates_dropped=stats["duplicates_dropped"],
            token_restarts=stats["token_restarts"],
            slice_splits=stats["slice_splits"],
            lowest_concurrency=stats["lowest_concurrency"],
            cache=cache,
        )

    def to_attrs(self) -> dict[str, Any]:
        """The ``df.attrs`` dict: every field; ``cache`` only when a cache was used."""
        attrs = asdict(self)
        if attrs["cache"] is None:
            del attrs["cache"]
        return attrs


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
    page_size: int = MAX_PAGE_SIZE,
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
        ``df.attrs`` holds the provenance (:class:`Provenance`), the same keys with or without a cache:
        ``resource_rids`` (list of str), ``start`` and ``end`` (ISO-8601), ``where`` (the filter dict or
        None), ``fetched_at`` (ISO-8601: just before the first request; with a cache that fetched nothing, the
        cache's "now"), ``source`` (the client's base URL; None when no client was involved), ``requests``,
        ``pages``, ``duplicates_dropped`` (repeats of one execution, by the identity of
        :func:`exec_analytics.schema.dedupe`), ``token_restarts``, ``slice_splits`` (int, 0 when nothing was
        fetched), ``lowest_concurrency`` (fewest requests allowed in flight after throttling; None when
        nothing was fetched); and, only when a cache was used, ``cache`` (:class:`CacheProvenance`):
        ``path``, ``settle_lag_s``, ``fetched`` (the ``[rid, start, end]`` stretches this call fetched) and
        ``refresh``.

    Raises
    ------
    ValueError, TypeError
        For bad arguments, before any request.
    exec_analytics.errors.ApiError
        Subclasses for errors the API returned (permission, not found, persistent throttling, ...).
    exec_analytics.errors.TransportError
        When the server could not be reached within the client's retry budget.
    exec_analytics.errors.CacheError
        When the cache is locked past its ``lock_timeout``, of another format version, holds the resource
        from another Foundry (``host:port``, checked on every cached load, even one that fetches nothing), or
        must fetch (a gap, a damaged day file) with no client and no ``FOUNDRY_HOSTNAME`` configured.
    """
    rids = validate_rids(resource_rid)
    end_ts = to_utc(end, "end") if end is not None else pd.Timestamp.now(tz="UTC").floor("ms")
    start_ts = to_utc(start, "start") if start is not None else end_ts - pd.Timedelta(hours=24)
    window = validate_window(start_ts, end_ts)
    where_dict = as_where(where)
    workers = _check_workers(workers)
    page_size = _check_page_size(page_size)
    store = _resolve_cache(cache)
    if cache is None and store is not None and not _usable(store):
        store = None
    if progress is None:
        progress = sys.stderr.isatty()
    if store is not None:
        return _load_cached(
            store, rids, window, where_dict, client, workers, progress, page_size, refresh=bool(refresh)
        )

    own_client = client is None
    client = client if client is not None else FoundryClient()
    fetched_at = pd.Timestamp.now(tz="UTC")
    start_ms, end_ms = epoch_ms(window[0]), epoch_ms(window[1])
    try:
        got = fetch(client, initial_slices(rids, start_ms, end_ms, workers), where_dict, workers, progress, page_size)
    finally:
        if own_client:
            client.close()
    frame = _in_order(_keep_window(got.frame(), *window, set(rids)))
    frame.attrs.update(Provenance.of(rids, window, where_dict, fetched_at, client, got).to_attrs())
    log.debug("loaded %d executions in %d pages (%d duplicates dropped)", len(frame), got.pages, got.dropped)
    return frame


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
    path = Path(store.path)  # the default directory is always local (EXEC_ANALYTICS_CACHE_DIR or platformdirs)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
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


def _load_cached(
    store: ExecutionCache,
    rids: list[str],
    window: tuple[pd.Timestamp, pd.Timestamp],
    where_dict: dict[str, Any] | None,
    client: FoundryClient | None,
    workers: int,
    progress: bool,
    page_size: int,
    *,
    refresh: bool,
) -> pd.DataFrame:
    """``load_executions`` through the cache: the cache plans, locks and commits; this pages what it asks for."""
    got: Fetched | None = None
    own: FoundryClient | None = None
    # Without a client, the one FoundryClient() would build is the source; with no hostname configured there is
    # no server at all, and only what the cache holds settled can be answered.
    base_url = client.base_url if client is not None else None
    if client is None and (configured := Settings.from_env().hostname) is not None:
        base_url = normalize_base_url(configured)

    def page(stretches: list[Stretch]) -> pa.Table | None:
        nonlocal got, own
        active = client
        if active is None:
            active = own = FoundryClient()
        got = fetch(active, interval_slices(list(stretches), workers), where_dict, workers, progress, page_size)
        return got.table

    try:
        result = store.load(
            rids,
            *window,
            where=where_dict,
            refresh=refresh,
            source=origin(base_url) if base_url is not None else None,
            fetch=page if base_url is not None else None,
        )
    finally:
        if own is not None:
            own.close()
    frame = _in_order(result.frame)
    fetched = [
        [s.rid, from_epoch_ms(s.start_ms).isoformat(), from_epoch_ms(s.end_ms).isoformat()] for s in result.fetched
    ]
    usage = CacheProvenance(
        path=str(store.path), settle_lag_s=store.settle_lag.total_seconds(), fetched=fetched, refresh=refresh
    )
    fetched_at = result.fetched_at if result.fetched_at is not None else store.now()
    frame.attrs.update(Provenance.of(rids, window, where_dict, fetched_at, client or own, got, usage).to_attrs())
    log.debug("loaded %d executions (%d stretches fetched)", len(frame), len(fetched))
    return frame


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


def _in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by start time, ties by trace id, so the same executions always give the same frame.

    Concurrent paging returns executions of the same millisecond in any order; a second sort key over every
    row would cost ~6x the start-time sort, so only the (rare) rows that share a start time are re-sorted.
    """
    frame = frame.sort_values("start_time", kind="stable", ignore_index=True)
    # int64 ticks: to_numpy() on a tz-aware column would build one Timestamp object per row.
    starts = frame["start_time"].to_numpy(dtype="datetime64[ms]").view("int64")
    same = starts[1:] == starts[:-1]
    tied = np.zeros(len(frame), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any():
        at = np.flatnonzero(tied)
        # Tie blocks are contiguous and stay in start order, so their rows sorted by both keys fill the same
        # positions.
        ordered = frame.iloc[at].sort_values(["start_time", "foundry_trace_id"], kind="stable").index.to_numpy()
        order = np.arange(len(frame))
        order[at] = ordered
        frame = frame.take(order).reset_index(drop=True)
    return frame
