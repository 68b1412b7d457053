"""``ExecutionCache``: a local Parquet history of executions, and what it covers.

Foundry keeps about 30 days of executions; this history keeps them until :meth:`ExecutionCache.prune` is
asked to drop them, and :func:`~exec_analytics.load_executions` reads from it and extends it, fetching only
what is missing.

Layout (hive-style partitions, readable as-is by DuckDB, Polars, Spark and pyarrow)::

    <root>/
      _cache.json                                  the on-disk format version
      executions/                                  the history: every execution, unfiltered
        resource=<rid>/
          _coverage.json                           the manifest: what was fetched, and when
          date=2026-11-01/part-0.parquet           executions of <rid> that started that UTC day
      filtered/<key>/                              loads whose server-side filter cannot be applied to
        _filter.json                                 the history (``duration``, ``userId``): kept apart,
        resource=<rid>/...                           so a subset never passes for the history
      _locks/<rid>.lock                            one writer per resource at a time

Why it is built this way:

* **Provisional edge.** The API lists only *completed* executions, by *start* time: an execution that
  started at 10:00 and ends at 10:20 is missing from a read at 10:10 and appears later inside a window that
  was already read. Coverage is therefore recorded with the time it was fetched, and the last
  ``settle_lag`` before that time counts as *provisional*: the next load fetches it again. Only
  executions that run longer than ``settle_lag`` (or become visible later than that) can be missed, so
  the default, :data:`DEFAULT_SETTLE_LAG`, is generous: two hours, against function timeouts of minutes.
* **Merge, never delete.** Rows fetched again replace the stored copies of the same executions
  (``foundry_trace_id`` and ``start_time``); stored rows that a new fetch lacks are kept, because a
  completed execution only disappears from the API when it falls out of retention, and the history must
  outlive retention.
* **Crash safety.** Each partition file is written to a hidden temporary name, flushed, fsynced and
  renamed over the old one; the manifest is written the same way, and only after the data. A crash at any
  point leaves complete files; data written without its coverage is simply fetched again and merged, and
  the merge drops the repeats.
* **Filters.** A filter on ``status``, ``failureReason``, ``resourceVersion``, ``callerRid``,
  ``traceOwningRid`` or ``foundryTraceId`` is applied here, exactly, to the settled history; what the
  history does not cover is fetched with the filter and kept under ``filtered/``. ``duration`` filters are
  never applied locally (whether the server compares the reported, rounded duration or the true one is
  not documented) and ``userId`` is not a column, so such loads live entirely under ``filtered/``.
* **Sources.** Each manifest records the host its data came from; a load from another host raises
  :class:`~exec_analytics.errors.CacheError` instead of mixing two Foundry stacks.

Modules: ``store`` (:class:`ExecutionCache`: reads, coverage, info, prune), ``load`` (plan, commit and read
back a cached load), ``layout`` (paths, manifests, locks), ``tables`` (file schema, merge, pushdown reads,
local filters), ``manifest``, ``files`` (atomic writes, locks) and ``intervals``.
"""

from .intervals import Interval
from .manifest import FORMAT_VERSION
from .store import DEFAULT_LOCK_TIMEOUT, DEFAULT_SETTLE_LAG, ExecutionCache
from .tables import CACHE_SCHEMA, LOCAL_FILTER_FIELDS

__all__ = [
    "CACHE_SCHEMA",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_SETTLE_LAG",
    "FORMAT_VERSION",
    "LOCAL_FILTER_FIELDS",
    "ExecutionCache",
    "Interval",
]
