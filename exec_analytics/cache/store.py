"""``ExecutionCache``: the public face of the history: the cached load, reading, coverage, info and pruning."""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from ..filters import as_where
from ..rids import validate_rid, validate_rids
from ..timeutil import TimeLike, epoch_ms, to_utc, validate_window
from .intervals import DAY_MS, day_name, iso, parse_day
from .layout import ALL, Layout
from .load import FetchFn, LoadResult, run
from .locks import hold
from .manifest import load_manifest, save_manifest
from .migrate import ensure_format
from .partitions import read_intervals
from .storage import LocalStorage, open_storage
from .tables import CACHE_SCHEMA, filter_key, to_frame

#: Default provisional stretch: how long after its start an execution may still complete and become visible.
#: Function executions time out within minutes; two hours leaves room for long automations and for a
#: visibility delay nobody has documented. Raise it for resources that run longer.
DEFAULT_SETTLE_LAG = pd.Timedelta(hours=2)

#: Default seconds to wait for another process that holds a resource's lock before raising ``CacheError``.
DEFAULT_LOCK_TIMEOUT = 900.0


class ExecutionCache:
    """A Parquet history of executions partitioned by resource and UTC day, with a coverage manifest.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Root directory, created on first write, or an object-store URL ``s3://bucket/prefix``. Default:
        :func:`~exec_analytics.config.default_cache_dir` (``EXEC_ANALYTICS_CACHE_DIR``, else a per-user cache
        directory).
    settle_lag : timedelta, pandas.Timedelta or str
        The stretch before each fetch that is provisional and fetched again by the next load (default
        :data:`DEFAULT_SETTLE_LAG`, 2 h). It must exceed how long an execution can run plus how long the
        API takes to show a finished one; an execution that takes longer can be missed for good.
    lock_timeout : float
        Seconds to wait for another process writing the same resource before raising ``CacheError``.
    clock : callable, optional
        Returns "now" as a UTC ``Timestamp``, as the *server* sees it; default the local clock (the
        settle lag absorbs ordinary clock skew). The simulator passes its own clock.
    storage_options : dict, optional
        For an ``s3://`` cache: keyword arguments of ``boto3.client("s3", ...)`` (e.g. ``endpoint_url``) and
        ``lease_s``, the seconds a writer's lease lasts (see :mod:`exec_analytics.cache.storage`). By default
        boto3 reads the AWS environment (``AWS_ENDPOINT_URL``, credentials, region).

    Notes
    -----
    :meth:`load` is the one operation that writes executions. Reads need no lock: files are only ever
    replaced whole (by rename, or by one PUT) and checked against their manifest records. Writes lock each
    resource: an OS file lock locally, released by the operating system when a writer dies; on S3 a lease
    object taken with a conditional PUT (see ``docs/history-storage.md``).
    The token is never written: manifests hold times, the filter, the source ``host:port`` and file records.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        settle_lag: pd.Timedelta | str | Any = DEFAULT_SETTLE_LAG,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        clock: Callable[[], Any] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if path is None:
            from ..config import Settings

            path = Settings.from_env().cache_dir
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.storage = open_storage(path, storage_options)
        #: The directory (a ``Path``) or, on an object store, the URL (``str``).
        self.path: Path | str = self.storage.root if isinstance(self.storage, LocalStorage) else self.storage.url()
        try:
            lag = pd.Timedelta(settle_lag)
        except (ValueError, TypeError):
            raise ValueError(f"settle_lag must be a duration (e.g. '2h'), got {settle_lag!r}") from None
        if lag is pd.NaT or lag < pd.Timedelta(0):
            raise ValueError(f"settle_lag must be a duration >= 0, got {settle_lag!r}")
        self.settle_lag: pd.Timedelta = lag
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) or lock_timeout < 0:
            raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")
        self.lock_timeout = float(lock_timeout)
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning the current time")
        self._clock = clock
        self.layout = Layout(self.storage)
        self._format_checked = False
        self._format_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ExecutionCache({str(self.path)!r}, settle_lag={format_duration(self.settle_lag)!r})"

    def now(self) -> pd.Timestamp:
        """The current time by this cache's clock, UTC, to the millisecond.

        Returns
        -------
        pandas.Timestamp
        """
        now = pd.Timestamp.now(tz="UTC") if self._clock is None else self._clock()
        return to_utc(now, "clock()")

    def _lag_ms(self) -> int:
        return int(self.settle_lag // pd.Timedelta(milliseconds=1))

    def _ready(self, *, create: bool) -> bool:
        """Whether the directory is a cache of this format (checked once per instance; see ``migrate``)."""
        if self._format_checked:
            return True
        with self._format_lock:
            if not self._format_checked:
                self._format_checked = ensure_format(self.layout, create=create, lock_timeout=self.lock_timeout)
        return self._format_checked

    # --- the cached load ----------------------------------------------------------------------------

    def load(
        self,
        resource_rid: str | Sequence[str],
        start: TimeLike,
        end: TimeLike,
        *,
        where: Any = None,
        refresh: bool = False,
        source: str | None = None,
        fetch: FetchFn | None = None,
    ) -> LoadResult:
        """Answer ``[start, end)`` from the history, fetching through ``fetch`` only what it lacks.

        The one operation that writes executions into the cache. With every resource's lock held throughout,
        it plans what the history answers and what it must fetch (gaps, provisional stretches, days whose
        file is damaged; everything with ``refresh``), checks ``source`` against what the history holds,
        calls ``fetch`` once for exactly those stretches, writes the rows into their day files, only then
        records the coverage, and reads the whole window back from disk.

        Parameters
        ----------
        resource_rid : str or sequence of str
            One or more resource RIDs.
        start, end : str, datetime or pandas.Timestamp
            Timezone-aware bounds of ``[start, end)`` on start time.
        where : Filter or dict, optional
            The server-side filter of the load (see the package docstring for where it is answered).
        refresh : bool
            Fetch the whole window again even where it is settled, and merge (repairs damaged days too).
        source : str, optional
            Where ``fetch`` reads from, as :func:`~exec_analytics.cache.origin` gives it (``host:port``).
            Checked against every manifest the load reads, whether or not anything is fetched: a history
            fetched from another Foundry raises ``CacheError``. None skips the check (no server is involved).
        fetch : callable, optional
            ``fetch(stretches) -> pyarrow.Table | None``: pages the :class:`~exec_analytics.cache.load.Stretch`
            list (``rid``, ``start_ms``, ``end_ms``, ``rows_per_ms``) and returns the decoded rows. None when
            no server can be reached: then anything that must be fetched raises ``CacheError``.

        Returns
        -------
        LoadResult
            ``frame``: the executions table of the window as stored (unsorted; columns as :meth:`read`);
            ``fetched``: the stretches fetched; ``fetched_at``: the cache's clock before the first request
            (None when nothing was fetched).

        Raises
        ------
        CacheError
            Locked past ``lock_timeout``, another format, another source, or a damaged file with no ``fetch``.
        """
        rids = validate_rids(resource_rid)
        lo, hi = validate_window(start, end)
        where_dict = as_where(where)
        self._ready(create=True)
        return run(
            self.layout,
            rids,
            (epoch_ms(lo), epoch_ms(hi)),
            where=where_dict,
            refresh=bool(refresh),
            source=source,
            fetch=fetch,
            lag_ms=self._lag_ms(),
            now=self.now,
            lock_timeout=self.lock_timeout,
        )

    # --- reading ------------------------------------------------------------------------------------

    def read(
        self,
        resource_rid: str | Sequence[str],
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
        where: Any = None,
    ) -> pd.DataFrame:
        """Read stored executions, opening only the partitions of the days in ``[start, end)``.

        Makes no request. What is returned is what is on disk: see :meth:`coverage` for which stretches are
        complete, or use :func:`~exec_analytics.load_executions`, which fills the gaps first. Every file read
        is checked against its manifest record.

        Parameters
        ----------
        resource_rid : str or sequence of str
            One or more resource RIDs.
        start, end : str, datetime or pandas.Timestamp, optional
            Timezone-aware bounds of ``[start, end)`` on start time; default: everything stored.
        columns : sequence of str, optional
            Columns of the executions table to return (default all); reading fewer is faster.
        where : Filter or dict, optional
            Read what was stored for this server-side filter (``filtered/``), not the history.

        Returns
        -------
        pandas.DataFrame
            The executions table (see :func:`~exec_analytics.load_executions`) sorted by ``start_time``:
            ``start_time``, ``duration_s``, ``status``, ``failure_reason``, ``resource_rid``,
            ``resource_version``, ``caller_rid``, ``trace_owning_rid``, ``foundry_trace_id`` (and
            ``extra`` when a stored row has fields the API added), or only ``columns``.

        Raises
        ------
        CacheError
            If a file is of another cache format, or damaged (missing, unreadable, or not the file its
            manifest records): the message names the file.
        """
        rids = validate_rids(resource_rid)
        if columns is not None:
            columns = list(columns)
            unknown = [c for c in columns if c not in CACHE_SCHEMA.names]
            if unknown:
                raise ValueError(
                    f"columns: unknown {', '.join(map(repr, unknown))}; "
                    f"expected some of {', '.join(CACHE_SCHEMA.names)}"
                )
        where_dict = as_where(where)
        key = filter_key(where_dict)
        lo: int | None
        hi: int | None
        if start is not None and end is not None:
            lo_ts, hi_ts = validate_window(start, end)
            lo, hi = epoch_ms(lo_ts), epoch_ms(hi_ts)
        else:
            lo = epoch_ms(to_utc(start, "start")) if start is not None else None
            hi = epoch_ms(to_utc(end, "end")) if end is not None else None
        read_cols = None if columns is None else sorted({*columns, "start_time"}, key=CACHE_SCHEMA.names.index)
        tables = []
        if self._ready(create=False):
            for rid in rids:
                if lo is not None and hi is not None:
                    # Both bounds: the days are known without listing the resource's other partitions.
                    ivs = [(lo, hi)]
                else:
                    # An open bound: the stored days (on disk or recorded, so a deleted file is noticed) give it.
                    days = self._recorded_days(key, rid, where_dict)
                    if not days:
                        continue
                    ivs = [(days[0] * DAY_MS if lo is None else lo, (days[-1] + 1) * DAY_MS if hi is None else hi)]
                tables.append(read_intervals(self.layout, key, rid, ivs, read_cols, where_dict))
        tables = [t for t in tables if t.num_rows]
        if tables:
            table = pa.concat_tables(tables).sort_by([("start_time", "ascending")])
        else:
            empty = CACHE_SCHEMA.empty_table()
            table = empty if read_cols is None else empty.select(read_cols)
        return to_frame(table) if read_cols is None else to_frame(table, columns)

    def _recorded_days(self, key: str, rid: str, where: dict[str, Any] | None) -> list[int]:
        return sorted(set(self.layout.days(key, rid)) | set(load_manifest(self.layout, key, rid, where).files or {}))

    def resources(self) -> list[str]:
        """RIDs of the resources in the history (unfiltered), sorted.

        Returns
        -------
        list of str
        """
        return self.layout.resources(ALL)

    def coverage(self, resource_rid: str, *, where: Any = None) -> pd.DataFrame:
        """The stretches fetched for one resource (and filter), and when.

        Parameters
        ----------
        resource_rid : str
            The resource.
        where : Filter or dict, optional
            The server-side filter the stretches were fetched with (default: the unfiltered history).

        Returns
        -------
        pandas.DataFrame
            One row per stretch, by start: ``start`` and ``end`` (datetime64[ms, UTC], half-open),
            ``fetched_at`` (datetime64[ms, UTC]) and ``settled_until`` (datetime64[ms, UTC]: the stretch is
            final before it and provisional after it; NaT when all of it is provisional, including a stretch
            fetched after the cache's "now", by a clock that ran ahead).
        """
        validate_rid(resource_rid)
        where_dict = as_where(where)
        self._ready(create=False)
        manifest = load_manifest(self.layout, filter_key(where_dict), resource_rid, where_dict)
        lag, now = self._lag_ms(), epoch_ms(self.now())
        rows = [(e.start, e.end, e.fetched_at, s[1] if (s := e.settled(lag, now)) else None) for e in manifest.entries]
        return _time_frame(rows, ["start", "end", "fetched_at", "settled_until"])

    # --- housekeeping ---------------------------------------------------------------------------

    def info(self) -> pd.DataFrame:
        """What the cache holds: one row per resource and filter.

        Returns
        -------
        pandas.DataFrame
            Columns ``resource_rid`` (str), ``filter`` (JSON text, None for the history), ``covered`` (the
            half-open stretches fetched, as ``start/end`` ISO text joined by ``, ``), ``first`` and ``last``
            (datetime64[ms, UTC]: the outer bounds of what is covered), ``settled_until``
            (datetime64[ms, UTC]: the end of the last settled stretch), ``last_fetched_at``
            (datetime64[ms, UTC]), ``rows`` (int64), ``files`` (int64) and ``bytes`` (int64): what the
            manifest records of the files (a read checks the files against it).
        """
        out = []
        if self._ready(create=False):
            lag, now = self._lag_ms(), epoch_ms(self.now())
            for key, where in self.layout.stores():
                for rid in self.layout.resources(key):
                    manifest = load_manifest(self.layout, key, rid, where)
                    covered = manifest.covered()
                    settled = manifest.settled(lag, now)
                    records = [s[-1] for s in (manifest.files or {}).values() if s and s[-1] is not None]
                    out.append(
                        {
                            "resource_rid": rid,
                            "filter": _filter_text(where),
                            "covered": ", ".join(f"{iso(a)}/{iso(b)}" for a, b in covered),
                            "first": covered[0][0] if covered else None,
                            "last": covered[-1][1] if covered else None,
                            "settled_until": settled[-1][1] if settled else None,
                            "last_fetched_at": max((e.fetched_at for e in manifest.entries), default=None),
                            "rows": sum(r.rows for r in records),
                            "files": len(records),
                            "bytes": sum(r.size for r in records),
                        }
                    )
        cols = ["resource_rid", "filter", "covered", "first", "last", "settled_until", "last_fetched_at"]
        df = pd.DataFrame(out, columns=[*cols, "rows", "files", "bytes"])
        for c in ("first", "last", "settled_until", "last_fetched_at"):
            df[c] = _times(df[c].tolist())
        typed: pd.DataFrame = df.astype({"rows": "int64", "files": "int64", "bytes": "int64"})
        return typed

    def prune(self, before: TimeLike | Any, *, resource_rid: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Delete every stored day before the UTC day of ``before``, and its coverage.

        The coverage and file records are trimmed first and the files deleted after, so a crash in between
        leaves files that no manifest claims (ignored by reads, fetched again if ever needed), never a claim
        without its files.

        Parameters
        ----------
        before : str, date, datetime or pandas.Timestamp
            A UTC day (``'2026-10-01'``) or a timezone-aware time; whole days before its UTC day go.
        resource_rid : str or sequence of str, optional
            Only these resources (default: all, in the history and under ``filtered/``).

        Returns
        -------
        pandas.DataFrame
            One row per deleted partition file: ``resource_rid`` (str), ``filter`` (JSON text or None),
            ``date`` (str, ``YYYY-MM-DD``), ``rows`` (int64, as recorded; 0 for a file no manifest recorded)
            and ``bytes`` (int64).
        """
        cut_day = _utc_day(before)
        only = None if resource_rid is None else set(validate_rids(resource_rid))
        removed: list[dict[str, Any]] = []
        if not self._ready(create=False):
            return _removed_frame(removed)
        for key, where in self.layout.stores():
            for rid in self.layout.resources(key):
                if only is not None and rid not in only:
                    continue
                with hold(self.storage, [(self.layout.lock(rid), f"resource {rid}")], self.lock_timeout):
                    manifest = load_manifest(self.layout, key, rid, where)
                    records = dict(manifest.files or {})
                    manifest.trim_before(cut_day * DAY_MS)
                    save_manifest(self.layout, key, manifest)
                    for day in self.layout.days(key, rid):
                        if day >= cut_day:
                            continue
                        part = self.layout.partition(key, rid, day)
                        states = records.get(day, ())
                        rows = states[-1].rows if states and states[-1] is not None else 0
                        size = (
                            states[-1].size
                            if states and states[-1] is not None
                            else len(self.storage.read(part) or b"")
                        )
                        self.storage.delete(part)
                        removed.append(
                            {
                                "resource_rid": rid,
                                "filter": _filter_text(where),
                                "date": day_name(day),
                                "rows": rows,
                                "bytes": size,
                            }
                        )
        return _removed_frame(removed)


def format_duration(delta: pd.Timedelta) -> str:
    """``'2h'``, ``'90min'``, ``'45s'``: the shortest exact form, as accepted by ``pandas.Timedelta``."""
    ms = int(delta // pd.Timedelta(milliseconds=1))
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _filter_text(where: dict[str, Any] | None) -> str | None:
    return None if where is None else orjson.dumps(where, option=orjson.OPT_SORT_KEYS).decode()


def _utc_day(value: Any) -> int:
    """Epoch day of a UTC date or timezone-aware time."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return parse_day(value.strip())
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return parse_day(value.isoformat())
    return epoch_ms(to_utc(value, "before")) // DAY_MS


def _times(values: list[int | None]) -> Any:
    return pd.to_datetime(pd.array(values, dtype="Int64"), unit="ms", utc=True).astype("datetime64[ms, UTC]")


def _time_frame(rows: Sequence[Sequence[int | None]], cols: list[str]) -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame({c: _times([r[i] for r in rows]) for i, c in enumerate(cols)}, columns=cols)
    return out


def _removed_frame(removed: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(removed, columns=["resource_rid", "filter", "date", "rows", "bytes"])
    typed: pd.DataFrame = df.astype({"rows": "int64", "bytes": "int64"})
    return typed
