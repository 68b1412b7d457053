"""``ExecutionCache``: the public face of the history: reading, coverage, info and pruning."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import CacheError
from ..filters import as_where
from ..rids import validate_rid, validate_rids
from ..timeutil import TimeLike, epoch_ms, to_utc
from .files import fsync_dir
from .intervals import DAY_MS, day_name, days_of, iso
from .load import LoadSteps
from .tables import (
    ALL,
    CACHE_SCHEMA,
    filter_key,
    read_files,
    to_frame,
)

#: Default provisional stretch: how long after its start an execution may still complete and become visible.
#: Function executions time out within minutes; two hours leaves room for long automations and for a
#: visibility delay nobody has documented. Raise it for resources that run longer.
DEFAULT_SETTLE_LAG = pd.Timedelta(hours=2)

#: Default seconds to wait for another process that holds a resource's lock before raising ``CacheError``.
DEFAULT_LOCK_TIMEOUT = 900.0


class ExecutionCache(LoadSteps):
    """A Parquet history of executions partitioned by resource and UTC day, with a coverage manifest.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Root directory; created on first write. Default: :func:`~exec_analytics.config.default_cache_dir`
        (``EXEC_ANALYTICS_CACHE_DIR``, else a per-user cache directory).
    settle_lag : timedelta, pandas.Timedelta or str
        The stretch before each fetch that is provisional and fetched again by the next load (default
        :data:`DEFAULT_SETTLE_LAG`, 2 h). It must exceed how long an execution can run plus how long the
        API takes to show a finished one; an execution that takes longer can be missed for good.
    lock_timeout : float
        Seconds to wait for another process writing the same resource before raising ``CacheError``.
    clock : callable, optional
        Returns "now" as a UTC ``Timestamp``, as the *server* sees it; default the local clock (the
        settle lag absorbs ordinary clock skew). The simulator passes its own clock.

    Notes
    -----
    Reads need no lock: files are only ever replaced whole, by rename. Writes lock each resource (``fcntl``
    on POSIX, ``msvcrt`` on Windows); a crashed writer's lock is released by the operating system.
    The token is never written: manifests hold times, the filter and the source host only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        settle_lag: pd.Timedelta | str | Any = DEFAULT_SETTLE_LAG,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        if path is None:
            from ..config import Settings

            path = Settings.from_env().cache_dir
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = Path(path).expanduser().absolute()
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
        self._checked_root = False
        self._root_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ExecutionCache({str(self.path)!r}, settle_lag={format_duration(self.settle_lag)!r})"

    # --- basics -----------------------------------------------------------------------------------

    def now(self) -> pd.Timestamp:
        """The current time by this cache's clock, UTC, to the millisecond.

        Returns
        -------
        pandas.Timestamp
        """
        now = pd.Timestamp.now(tz="UTC") if self._clock is None else self._clock()
        return to_utc(now, "clock()")

    # --- planning, committing and reading a load ------------------------------------------------

    # --- public reading ---------------------------------------------------------------------------

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
        complete, or use :func:`~exec_analytics.load_executions`, which fills the gaps first.

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
            If a file is of another cache format or unreadable.
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
        self._check_root(create=False)
        lo = epoch_ms(to_utc(start, "start")) if start is not None else None
        hi = epoch_ms(to_utc(end, "end")) if end is not None else None
        if lo is not None and hi is not None and hi <= lo:
            raise ValueError("end must be after start; windows are [start, end)")
        read_cols = None if columns is None else sorted({*columns, "start_time"}, key=CACHE_SCHEMA.names.index)
        table = self._read_window(key, rids, lo, hi, read_cols)
        if table.num_rows:
            table = table.sort_by([("start_time", "ascending")])
        return to_frame(table) if read_cols is None else to_frame(table, columns)

    def _read_window(
        self, key: str, rids: Sequence[str], lo: int | None, hi: int | None, columns: Sequence[str] | None
    ) -> pa.Table:
        """Rows of ``rids`` with start in ``[lo, hi)`` (open where None), in one scan of just those days' files."""
        for attempt in range(3):
            paths = []
            for rid in rids:
                if lo is not None and hi is not None:
                    # Both bounds: the days are known without listing the resource's other partitions.
                    days: Sequence[int] = days_of(lo, hi)
                else:
                    days = [
                        d
                        for d in self._day_dirs(key, rid)
                        if (lo is None or d >= lo // DAY_MS) and (hi is None or d * DAY_MS < hi)
                    ]
                paths += [p for d in days if (p := self._partition(key, rid, d)).exists()]
            if not paths:
                break
            bounds = [(lo if lo is not None else -(2**62), hi if hi is not None else 2**62)]
            # A partition holds exactly one UTC day, so bounds on midnights (or none) need no row filter.
            whole_days = (lo is None or lo % DAY_MS == 0) and (hi is None or hi % DAY_MS == 0)
            try:
                return read_files(paths, None if whole_days else bounds, columns)
            except FileNotFoundError:
                if attempt == 2:  # pruned between listing and reading, three times over
                    raise
        empty = CACHE_SCHEMA.empty_table()
        return empty if columns is None else empty.select(list(columns))

    def resources(self) -> list[str]:
        """RIDs of the resources in the history (unfiltered), sorted.

        Returns
        -------
        list of str
        """
        base = self._store_dir(ALL)
        if not base.is_dir():
            return []
        return sorted(unquote(d.name[9:]) for d in base.iterdir() if d.name.startswith("resource="))

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
            final before it and provisional after it; NaT when all of it is provisional).
        """
        validate_rid(resource_rid)
        where_dict = as_where(where)
        self._check_root(create=False)
        manifest = self._manifest(filter_key(where_dict), resource_rid, where_dict)
        lag = self._lag_ms
        rows = [(e.start, e.end, e.fetched_at, s[1] if (s := e.settled(lag)) else None) for e in manifest.entries]
        cols = ["start", "end", "fetched_at", "settled_until"]
        data = {
            c: pd.to_datetime(pd.array([r[i] for r in rows], dtype="Int64"), unit="ms", utc=True).astype(
                "datetime64[ms, UTC]"
            )
            for i, c in enumerate(cols)
        }
        return pd.DataFrame(data, columns=cols)

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
            (datetime64[ms, UTC]), ``rows`` (int64, from the file footers), ``files`` (int64) and
            ``bytes`` (int64, on disk).
        """
        self._check_root(create=False)
        out = []
        for key, where in self._stores():
            for rid in self._store_resources(key):
                manifest = self._manifest(key, rid, where)
                covered = manifest.covered()
                settled = manifest.settled(self._lag_ms)
                rows = files = size = 0
                for day in self._day_dirs(key, rid):
                    path = self._partition(key, rid, day)
                    try:
                        rows += pq.read_metadata(path).num_rows
                        size += path.stat().st_size
                        files += 1
                    except (OSError, pa.ArrowInvalid) as exc:
                        raise CacheError(f"cannot read {path}: {exc}") from None
                out.append(
                    {
                        "resource_rid": rid,
                        "filter": _filter_text(where),
                        "covered": ", ".join(f"{iso(a)}/{iso(b)}" for a, b in covered),
                        "first": covered[0][0] if covered else None,
                        "last": covered[-1][1] if covered else None,
                        "settled_until": settled[-1][1] if settled else None,
                        "last_fetched_at": max((e.fetched_at for e in manifest.entries), default=None),
                        "rows": rows,
                        "files": files,
                        "bytes": size,
                    }
                )
        cols = [
            "resource_rid",
            "filter",
            "covered",
            "first",
            "last",
            "settled_until",
            "last_fetched_at",
            "rows",
            "files",
            "bytes",
        ]
        df = pd.DataFrame(out, columns=cols)
        for c in ("first", "last", "settled_until", "last_fetched_at"):
            df[c] = pd.to_datetime(pd.array(df[c].tolist(), dtype="Int64"), unit="ms", utc=True).astype(
                "datetime64[ms, UTC]"
            )
        for c in ("rows", "files", "bytes"):
            df[c] = df[c].astype("int64")
        return df

    def prune(self, before: TimeLike | Any, *, resource_rid: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Delete every stored day before the UTC day of ``before``, and its coverage.

        The coverage is trimmed first and the files deleted after, so a crash in between leaves files that
        no manifest claims (fetched again if ever needed), never a claim without its files.

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
            ``date`` (str, ``YYYY-MM-DD``), ``rows`` (int64) and ``bytes`` (int64).
        """
        cut_day = _utc_day(before)
        cut = cut_day * DAY_MS
        only = None if resource_rid is None else set(validate_rids(resource_rid))
        self._check_root(create=False)
        removed = []
        for key, where in self._stores():
            for rid in self._store_resources(key):
                if only is not None and rid not in only:
                    continue
                with self._lock([rid]):
                    manifest = self._manifest(key, rid, where)
                    if any(e.start < cut for e in manifest.entries):
                        manifest.trim_before(cut)
                        self._save_manifest(key, manifest)
                    for day in self._day_dirs(key, rid):
                        if day >= cut_day:
                            continue
                        path = self._partition(key, rid, day)
                        try:
                            rows, size = pq.read_metadata(path).num_rows, path.stat().st_size
                        except (OSError, pa.ArrowInvalid):
                            rows = size = 0
                        shutil.rmtree(path.parent)
                        removed.append(
                            {
                                "resource_rid": rid,
                                "filter": _filter_text(where),
                                "date": day_name(day),
                                "rows": rows,
                                "bytes": size,
                            }
                        )
                    fsync_dir(self._resource_dir(key, rid))
        df = pd.DataFrame(removed, columns=["resource_rid", "filter", "date", "rows", "bytes"])
        return df.astype({"rows": "int64", "bytes": "int64"})


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
        return int(np.datetime64(value.strip(), "D").astype(np.int64))
    import datetime as _dt

    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return int(np.datetime64(value.isoformat(), "D").astype(np.int64))
    return epoch_ms(to_utc(value, "before")) // DAY_MS
