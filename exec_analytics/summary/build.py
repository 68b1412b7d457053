"""Build a :class:`~exec_analytics.summary.Summary` with pandas: from rows in memory, or from a Parquet history.

This is the reference engine: the Dask builder runs :func:`from_frame` on every partition and merges, and
the Spark builder is checked against it. Grouping uses integer codes and one stable sort; the only Python
loop is over sketch groups (a few per resource, version, caller and bucket), each updated with a whole array.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasketches
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..cache.storage import Storage, open_storage
from ..schema import COLUMNS
from .model import COUNT_KEYS, DEFAULT_K, OUTCOMES, SKETCH_KEYS, Summary, epoch_ms, group_keys, key_frame

__all__ = [
    "HISTORY_COLUMNS",
    "from_frame",
    "from_parquet",
    "history_dataset",
    "history_files",
    "read_file",
    "statuses",
    "summarize_files",
]

#: Columns of the executions table a summary reads: all but the trace columns, in the table's order.
HISTORY_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in ("trace_owning_rid", "foundry_trace_id"))
_ROW_KEYS = ("resource_rid", "resource_version", "caller_rid")


def statuses(success_statuses: Iterable[str] | str) -> tuple[str, ...]:
    """``success_statuses`` as a sorted tuple of distinct strings (the form a summary records)."""
    ok = [success_statuses] if isinstance(success_statuses, str) else list(success_statuses)
    if not ok or not all(isinstance(s, str) for s in ok):
        raise ValueError(f"success_statuses must be one or more status strings, got {success_statuses!r}")
    return tuple(sorted(set(ok)))


def bucket_length(freq: str | pd.Timedelta) -> pd.Timedelta:
    """``freq`` as a positive whole number of milliseconds (fixed length; buckets align to the epoch)."""
    try:
        td: pd.Timedelta = pd.Timedelta(freq)
    except (TypeError, ValueError):
        raise ValueError(f"freq must be a fixed length such as '1D' or '1h', got {freq!r}") from None
    if td <= pd.Timedelta(0) or td % pd.Timedelta(milliseconds=1):
        raise ValueError(f"freq must be a positive whole number of milliseconds, got {freq!r}")
    return td


def _start_ms(col: pd.Series) -> np.ndarray:
    if not isinstance(col.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"start_time must be a timezone-aware (UTC) datetime column, got {col.dtype}")
    return epoch_ms(col)


def from_frame(
    df: pd.DataFrame | pa.Table,
    *,
    freq: str | pd.Timedelta = "1D",
    k: int = DEFAULT_K,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> Summary:
    """Summarize executions held in memory.

    Parameters
    ----------
    df : DataFrame or pyarrow.Table
        The executions table (at least :data:`HISTORY_COLUMNS`).
    freq : str or Timedelta
        Bucket length, epoch-aligned (``"1D"``: UTC days; ``"5min"`` to compute burn-rate alerts).
    k : int
        KLL accuracy parameter (see :data:`~exec_analytics.summary.DEFAULT_K`).
    success_statuses : str or iterable of str
        Statuses whose durations go to the ``"succeeded"`` sketches; every other status (NA too) is a failure.

    Returns
    -------
    Summary
        Counts per (resource, bucket, version, caller, status, reason); sketches of known durations per
        (resource, bucket, version, caller, outcome).
    """
    step = bucket_length(freq)
    ok = statuses(success_statuses)
    frame = df.select(list(HISTORY_COLUMNS)).to_pandas() if isinstance(df, pa.Table) else df
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"from_frame: missing column(s) {', '.join(missing)}; expected the executions table")
    step_ms = int(step // pd.Timedelta(milliseconds=1))
    bucket = (_start_ms(frame["start_time"]) // step_ms) * step_ms
    # Category columns stay categorical: grouping works on their codes, never on the strings.
    keyed = pd.DataFrame({c: frame[c].array for c in (*_ROW_KEYS, "status", "failure_reason")})
    keyed["bucket_start"] = pd.Series(bucket.view("datetime64[ms]")).dt.tz_localize("UTC").array
    codes, first = group_keys(keyed, COUNT_KEYS)
    counts = key_frame(keyed, COUNT_KEYS, first)
    counts["executions"] = np.bincount(codes, minlength=len(first)).astype(np.int64)

    durations = frame["duration_s"].to_numpy(dtype=np.float64)
    known = ~np.isnan(durations)
    good = frame["status"].isin(ok).to_numpy(dtype=bool)
    keyed["outcome"] = pd.Categorical.from_codes(np.where(good, 0, 1), dtype=pd.CategoricalDtype(list(OUTCOMES)))
    # Durations are almost always all known: skip the copy of every key column then.
    sk_rows = keyed if known.all() else keyed.loc[known].reset_index(drop=True)
    sketches = _sketch_groups(sk_rows, durations if known.all() else durations[known], int(k))
    return Summary(counts, sketches, freq=step, k=int(k), success_statuses=ok)


def _sketch_groups(rows: pd.DataFrame, values: np.ndarray, k: int) -> pd.DataFrame:
    """One KLL sketch per distinct :data:`SKETCH_KEYS` of ``rows`` over the matching ``values``."""
    codes, first = group_keys(rows, SKETCH_KEYS)
    # Small unsigned codes make numpy's stable argsort a radix sort: O(rows).
    small = codes.astype(np.uint16) if len(first) <= np.iinfo(np.uint16).max else codes
    order = np.argsort(small, kind="stable")
    sizes = np.bincount(codes, minlength=len(first))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    # datasketches rejects read-only arrays; the gather makes a fresh, writable one.
    ordered = np.ascontiguousarray(values[order])
    blobs = np.empty(len(sizes), dtype=object)
    for g in range(len(sizes)):
        sketch = datasketches.kll_doubles_sketch(k)
        sketch.update(ordered[bounds[g] : bounds[g + 1]])
        blobs[g] = bytes(sketch.serialize())
    out = key_frame(rows, SKETCH_KEYS, first)
    out["durations"] = sizes.astype(np.int64)
    out["sketch"] = blobs
    return out


def history_dataset(path: str | Path) -> pads.Dataset:
    """The local Parquet history under ``path`` as it lies (hive ``resource=``/``date=`` directories or flat files).

    The files are those of :func:`history_files` (manifests, coverage files and hidden files are skipped).

    Returns
    -------
    pyarrow.dataset.Dataset
    """
    root = Path(path).expanduser().absolute()
    files = [str(root / key) for key in history_files(root)]  # the one rule for which files are the history
    return pads.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(root))


def history_files(location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Keys of the history's Parquet files under ``location`` (a directory or ``s3://bucket/prefix``), sorted.

    Only ``*.parquet`` files are kept; anything under a folder or file whose name starts with ``_`` or ``.``
    (the cache's ``_meta/`` and ``_tmp/``, hidden files) is left out, as engines skip them.

    Parameters
    ----------
    location : str or os.PathLike
        The history as it lies, e.g. ``<cache>/executions`` or ``s3://bucket/team/executions``.
    storage_options : mapping, optional
        For S3: keyword arguments of ``boto3.client("s3", ...)`` (e.g. ``endpoint_url``); by default the usual
        AWS environment (``AWS_ENDPOINT_URL``, credentials) is used, as by the cache.

    Returns
    -------
    list of str
        Keys relative to ``location``, ``/``-separated.

    Raises
    ------
    ValueError
        No Parquet file under ``location``.
    """
    return _keys(_storage(location, storage_options))


def _keys(storage: Storage) -> list[str]:
    keys = [
        k
        for k in storage.list("")
        if k.endswith(".parquet") and not any(p.startswith(("_", ".")) for p in k.split("/"))
    ]
    if not keys:
        raise ValueError(f"no Parquet files under {storage.url()}")
    return keys


def _storage(location: str | os.PathLike[str], storage_options: Mapping[str, Any] | None) -> Storage:
    return open_storage(location, dict(storage_options) if storage_options else None)


def read_file(storage: Storage, key: str, *, filters: Any = None) -> pa.Table:
    """One Parquet file of a history: the :data:`HISTORY_COLUMNS`, optionally filtered (pyarrow ``filters``).

    Returns
    -------
    pyarrow.Table
        The file's rows (those matching ``filters``), columns :data:`HISTORY_COLUMNS`.
    """
    data = storage.read(key)
    if data is None:  # listed, then gone: a writer replaced or removed it meanwhile
        raise ValueError(f"{storage.url(key)} disappeared while the history was read; build the summary again")
    try:
        return pq.read_table(io.BytesIO(data), columns=list(HISTORY_COLUMNS), filters=filters)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # Arrow's text names no file and lists its internals
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"{storage.url(key)} is not a Parquet file of an executions history with the columns "
            f"{', '.join(HISTORY_COLUMNS)} ({first})"
        ) from None


def summarize_files(
    location: str | os.PathLike[str],
    keys: Sequence[str],
    *,
    freq: str | pd.Timedelta,
    k: int,
    success_statuses: Iterable[str] | str,
    storage_options: Mapping[str, Any] | None = None,
    filters: Any = None,
) -> Summary:
    """The summary of a few files of a history, read where this runs (one storage client for all of them).

    Returns
    -------
    Summary
        Of the rows of ``keys`` (matching ``filters``).
    """
    return _summarize(_storage(location, storage_options), keys, freq, k, success_statuses, filters)


def _summarize(
    storage: Storage,
    keys: Sequence[str],
    freq: str | pd.Timedelta,
    k: int,
    success_statuses: Iterable[str] | str,
    filters: Any,
) -> Summary:
    tables = [read_file(storage, key, filters=filters) for key in keys]
    # One frame for the files: Arrow unifies their dictionaries when converting, and the keys are grouped once.
    rows = pa.concat_tables(tables, promote_options="permissive")
    return from_frame(rows, freq=freq, k=k, success_statuses=success_statuses)


def from_parquet(
    path: str | os.PathLike[str],
    *,
    freq: str | pd.Timedelta = "1D",
    k: int = DEFAULT_K,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
    storage_options: Mapping[str, Any] | None = None,
    filters: Any = None,
) -> Summary:
    """Summarize a Parquet history file by file, in one process (the pandas engine).

    Parameters
    ----------
    path : str or os.PathLike
        The history as it lies: a directory (e.g. ``<cache>/executions``) or ``s3://bucket/prefix/executions``.
    freq, k, success_statuses
        As :func:`from_frame`.
    storage_options : mapping, optional
        For S3, as :func:`history_files`.
    filters : optional
        pyarrow ``filters`` applied to every file (e.g. ``[("start_time", ">=", ts)]``) to read one window.

    Returns
    -------
    Summary
        The merge of every file's summary.
    """
    step, ok = bucket_length(freq), statuses(success_statuses)
    storage = _storage(path, storage_options)
    parts = [_summarize(storage, [key], step, k, ok, filters) for key in _keys(storage)]
    return parts[0].merge(*parts[1:])
