"""``ExecutionCache``: a local Parquet history of executions, and what it covers.

Foundry keeps about 30 days of executions; this history keeps them until :meth:`ExecutionCache.prune` is
asked to drop them, and :func:`~exec_analytics.load_executions` reads from it and extends it, fetching only
what is missing.

Layout (hive-style partitions: each data tree holds Parquet files only, readable as-is by DuckDB, Polars,
pyarrow, Dask and Spark; the root is a directory or an ``s3://bucket/prefix`` URL)::

    <root>/
      _cache.json                                  the format version (3)
      executions/                                  the history: every execution, unfiltered
        resource=<rid>/date=2026-11-01/part-0.parquet   executions of <rid> that started that UTC day,
                                                   with ``version_key`` (semantic order of versions)
      filtered/<key>/resource=<rid>/...            loads whose server-side filter cannot be applied to the
                                                   history (``duration``, ``userId``): kept apart, so a
                                                   subset never passes for the history
      _meta/executions/resource=<rid>.json         the manifest: what was fetched, when, from where, and
                                                   what each day file holds (rows, bytes, BLAKE2b)
      _meta/filtered/<key>/_filter.json, resource=<rid>.json
      _locks/<rid>.lock                            one writer per resource at a time (a lease on S3)

Why it is built this way:

* **Provisional edge.** The API lists only *completed* executions, by *start* time: an execution that
  started at 10:00 and ends at 10:20 is missing from a read at 10:10 and appears later inside a window that
  was already read. Coverage is therefore recorded with the time it was fetched, and the last
  ``settle_lag`` before that time counts as *provisional*: the next load fetches it again. Only
  executions that run longer than ``settle_lag`` (or become visible later than that) can be missed, so
  the default, :data:`DEFAULT_SETTLE_LAG`, is generous: two hours, against function timeouts of minutes.
* **Merge, never delete.** Stored rows that a new fetch lacks are kept, because a completed execution only
  disappears from the API when it falls out of retention, and the history must outlive retention.
* **Crash safety.** Each partition file is replaced whole: locally written to a hidden temporary name,
  fsynced and renamed over the old one (:func:`exec_analytics.files.write_atomic`), on S3 by one PUT (atomic
  and strongly consistent); the manifest is written the same way, and its coverage only after the data. A
  crash at any point leaves complete files; data written without its coverage is simply fetched again and
  merged, and the merge drops the repeats.
* **Self-checking.** The manifest records each day file's row count, size and BLAKE2b digest. Every read
  hashes the files it opens (they are small, one resource-day each, and read whole anyway: hashing costs
  about a millisecond per megabyte, less than decoding) and compares: a size or footer check would miss a
  flipped byte in a data page, which Parquet does not checksum by default. A file that is missing, unreadable
  or not the recorded one is *damaged*: a load fetches that day again, ``refresh=True`` too, and a read
  without a server raises :class:`~exec_analytics.errors.CacheError` naming the file. Never fewer rows,
  never repeats.
* **Merge, one identity.** Rows fetched again replace the stored copies of the same executions, by the one
  identity of :func:`exec_analytics.schema.dedupe` (resource, trace id, start time; the newer copy wins).
* **Filters.** A filter on ``status``, ``failureReason``, ``resourceVersion``, ``callerRid``,
  ``traceOwningRid`` or ``foundryTraceId`` is applied here, exactly, to the settled history; what the
  history does not cover is fetched with the filter and kept under ``filtered/``. ``duration`` filters are
  never applied locally (whether the server compares the reported, rounded duration or the true one is
  not documented) and ``userId`` is not a column, so such loads live entirely under ``filtered/``.
* **Sources.** Each manifest records the ``host:port`` its data came from (:func:`origin`); every load with
  a server, even one answered entirely from disk, raises :class:`~exec_analytics.errors.CacheError` when the
  history came from another Foundry, instead of mixing two stacks.
* **Clock skew.** A stretch recorded as fetched after the cache's "now" is provisional (fetched again), with a
  warning.

Modules: ``store`` (:class:`ExecutionCache`: the cached load, reads, coverage, info, prune), ``load`` (the
write protocol of a cached load, in one function), ``partitions`` (verified reads of day files), ``layout``
(keys), ``storage`` (a local directory or S3: whole-object reads and writes, listing, locks and leases),
``manifest`` (coverage and file records), ``migrate`` (the format, and migration from formats 1 and 2),
``tables`` (file schema, merge, pushdown reads, local filters), ``versionkey``, ``locks`` and ``intervals``.
"""

from .intervals import Interval
from .load import FetchFn, LoadResult, Stretch
from .manifest import FORMAT_VERSION, origin
from .store import DEFAULT_LOCK_TIMEOUT, DEFAULT_SETTLE_LAG, ExecutionCache, format_duration
from .tables import CACHE_SCHEMA, LOCAL_FILTER_FIELDS

__all__ = [
    "CACHE_SCHEMA",
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_SETTLE_LAG",
    "FORMAT_VERSION",
    "LOCAL_FILTER_FIELDS",
    "ExecutionCache",
    "FetchFn",
    "Interval",
    "LoadResult",
    "Stretch",
    "format_duration",
    "origin",
]
