"""The mergeable summary of the executions table: exact counts and KLL duration sketches per key.

A :class:`Summary` holds two tables (their columns are the documented schema, the same for every engine):

``counts``
    One row per (``resource_rid``, ``bucket_start``, ``resource_version``, ``caller_rid``, ``status``,
    ``failure_reason``) that occurred, with ``executions`` (int64). Key columns are strings (NA where the
    execution had none); ``bucket_start`` is datetime64[ms, UTC], the start of a fixed, epoch-aligned bucket of
    ``start_time`` of length ``freq``.
``sketches``
    One row per (``resource_rid``, ``bucket_start``, ``resource_version``, ``caller_rid``, ``outcome``) with a
    known duration: ``outcome`` is ``"succeeded"`` or ``"failed"`` (by ``success_statuses``), ``durations``
    (int64, the values in the sketch) and ``sketch`` (bytes: an Apache DataSketches ``kll_doubles_sketch`` of
    ``duration_s``, the binary format Spark 4's ``kll_sketch_agg_double`` writes).

Summaries add (:meth:`Summary.merge`, ``+``): counts add exactly, sketches merge. Counts are associative and
order independent to the last bit. KLL compaction is randomised, so two merge orders can give different
sketch bytes, but both keep ``durations``, the minimum and the maximum exactly and every quantile within the
sketch's rank-error bound (:meth:`Summary.rank_error`).
"""

from __future__ import annotations

import functools
import io
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import datasketches
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..cache.storage import open_storage
from ..files import write_atomic

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_K",
    "OUTCOMES",
    "SKETCH_KEYS",
    "Summary",
    "epoch_ms",
    "group_keys",
    "key_frame",
    "merge_sketches",
]

#: KLL accuracy parameter. k=400 bounds the single-rank error by 0.68% (at 99% confidence, DataSketches'
#: figure); the sketch of a busy bucket stays ~5 kB. Measured: k=1000 kept the max p95 rank error at 0.11% for
#: 13 kB; k=200 (Spark's default) doubles the bound to 1.33%, too wide for a p99 interval.
DEFAULT_K = 400

#: Key columns of ``counts``, in order (``bucket_start`` is the time bucket).
COUNT_KEYS: tuple[str, ...] = (
    "resource_rid",
    "bucket_start",
    "resource_version",
    "caller_rid",
    "status",
    "failure_reason",
)
#: Key columns of ``sketches``, in order.
SKETCH_KEYS: tuple[str, ...] = ("resource_rid", "bucket_start", "resource_version", "caller_rid", "outcome")
#: Values of ``outcome``.
OUTCOMES: tuple[str, ...] = ("succeeded", "failed")

_DROPPABLE = ("resource_version", "caller_rid", "failure_reason")
#: zstd level of written summaries. Measured on a week of 100M executions over 200 resources: level 1 (the
#: default) made the summary 82x smaller than the history, level 9 105x, 12 112x (4 s to write 22 MB), 19 122x
#: at 30 s.
ZSTD_LEVEL: Final = 12
_META_FREQ: Final = b"exec_analytics.summary.freq_ms"
_META_ID: Final = b"exec_analytics.summary.write_id"
_TS: Final = "datetime64[ms, UTC]"


def epoch_ms(col: pd.Series) -> np.ndarray:
    """A timezone-aware datetime column as int64 milliseconds since the epoch (floored: all times are after 1970)."""
    values: pd.DatetimeIndex = pd.DatetimeIndex(col.astype(_TS))
    return np.asarray(values.asi8, dtype=np.int64)


def _sorted_codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes of one key column in sort order (text lexicographic, times ascending), NA last."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        uniq, codes = np.unique(epoch_ms(col), return_inverse=True)
        return np.asarray(codes, dtype=np.int64), len(uniq)
    if isinstance(col.dtype, pd.CategoricalDtype):
        # Category order is the order of appearance (e.g. an Arrow dictionary): rank the categories as text.
        cats = np.asarray(col.cat.categories.astype(str), dtype=object)
        rank = np.empty(len(cats) + 1, dtype=np.int64)
        rank[np.argsort(cats, kind="stable")] = np.arange(len(cats))
        rank[-1] = len(cats)  # code -1 (NA) sorts last
        return rank[col.cat.codes.to_numpy()], len(cats) + 1
    codes, uniques = pd.factorize(col, sort=True, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    codes[codes < 0] = len(uniques)
    return codes, len(uniques) + 1


def group_keys(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Group code per row over ``keys`` and one row of each group; groups in key order, NA last.

    Mixed-radix integer codes: no hashing of strings, and the groups come out in the canonical order of a
    summary's rows, so no sort of the result is needed. While the possible combinations are few (a partition's
    keys), a dense table finds them in O(rows); otherwise one ``np.unique`` sorts.
    """
    combined = np.zeros(len(frame), dtype=np.int64)
    card = 1
    for key in keys:
        codes, n = _sorted_codes(frame[key])
        if card * n >= 1 << 62:  # compact first; np.unique keeps the order, so the result stays sorted
            _, combined = np.unique(combined, return_inverse=True)
            card = int(combined.max()) + 1
        combined = combined * n + codes
        card *= n
    n_rows = len(frame)
    if card <= max(4 * n_rows, 1 << 16):
        present = np.bincount(combined, minlength=card) > 0
        remap = np.cumsum(present) - 1
        inverse = remap[combined].astype(np.intp)
        # Any row of a group carries its keys: the last write per group wins, whichever it is.
        row = np.zeros(int(present.sum()), dtype=np.intp)
        row[inverse] = np.arange(n_rows, dtype=np.intp)
        return inverse, row
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    return inverse.astype(np.intp), first


def key_frame(frame: pd.DataFrame, keys: Sequence[str], rows: np.ndarray) -> pd.DataFrame:
    """The ``keys`` of ``frame`` at ``rows`` with a summary's dtypes: ``string`` (NA) and ms UTC times."""
    columns: dict[str, object] = {}
    for k in keys:
        col = frame[k]
        if k == "bucket_start":
            columns[k] = col.astype(_TS).array.take(rows)
        elif isinstance(col.dtype, pd.CategoricalDtype):
            # Gather category labels by code: no per-row Python objects beyond the few rows kept.
            labels = np.asarray([*col.cat.categories.astype(object), None], dtype=object)
            columns[k] = pd.array(labels[col.cat.codes.to_numpy()[rows]], dtype="string")
        else:
            values = np.asarray(col.astype(object).where(col.notna(), None), dtype=object)
            columns[k] = pd.array(values[rows], dtype="string")
    out: pd.DataFrame = pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
    return out


def merge_sketches(blobs: Iterable[bytes], k: int) -> bytes:
    """One serialized KLL sketch holding every value of ``blobs`` (serialized ``kll_doubles_sketch``)."""
    merged = datasketches.kll_doubles_sketch(k)
    for blob in blobs:
        merged.merge(datasketches.kll_doubles_sketch.deserialize(bytes(blob)))
    return bytes(merged.serialize())


def _sum_counts(counts: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    codes, first = group_keys(counts, keys)
    out = key_frame(counts, keys, first)
    weights = counts["executions"].to_numpy(dtype=np.float64)
    out["executions"] = np.bincount(codes, weights=weights, minlength=len(first)).astype(np.int64)
    return out


def _merge_sketch_rows(sketches: pd.DataFrame, keys: Sequence[str], k: int) -> pd.DataFrame:
    codes, first = group_keys(sketches, keys)
    n_groups = len(first)  # first: one row of each group
    durations = np.bincount(codes, weights=sketches["durations"].to_numpy(dtype=np.float64), minlength=n_groups)
    blobs = sketches["sketch"].to_numpy()
    size = np.bincount(codes, minlength=n_groups)
    merged = blobs[first].copy()
    # Only groups with several sketches need a merge; the loop is over those groups, never over executions.
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(size)])
    for g in np.flatnonzero(size > 1):
        merged[g] = merge_sketches(blobs[order[bounds[g] : bounds[g + 1]]], k)
    out = key_frame(sketches, keys, first)
    out["durations"] = durations.astype(np.int64)
    out["sketch"] = merged
    return out


@dataclass(frozen=True)
class Summary:
    """Exact counts and duration sketches of executions, per key and time bucket; mergeable.

    Build one with :func:`exec_analytics.summary.from_frame`, :func:`~exec_analytics.summary.from_parquet`,
    or the Dask and Spark builders; pass it to ``failure_rate``, ``failure_reasons``, ``error_budget``,
    ``caller_breakdown`` or ``duration_percentiles`` in place of the executions table.

    Attributes
    ----------
    counts : pandas.DataFrame
        Columns: the key columns present (of :data:`COUNT_KEYS`), ``executions`` (int64).
    sketches : pandas.DataFrame
        Columns: the key columns present (of :data:`SKETCH_KEYS`), ``durations`` (int64), ``sketch`` (bytes).
    freq : pandas.Timedelta
        Length of the time buckets (epoch-aligned: ``"1D"`` buckets are UTC days).
    k : int
        KLL accuracy parameter of every sketch.
    success_statuses : tuple of str
        Statuses counted as success when the sketches were split into ``outcome``.
    """

    counts: pd.DataFrame
    sketches: pd.DataFrame
    freq: pd.Timedelta
    k: int = DEFAULT_K
    success_statuses: tuple[str, ...] = ("SUCCEEDED",)
    dropped: tuple[str, ...] = field(default=())

    @property
    def count_keys(self) -> list[str]:
        """Key columns of ``counts`` (those not dropped by :meth:`regroup`)."""
        return [c for c in COUNT_KEYS if c not in self.dropped]

    @property
    def sketch_keys(self) -> list[str]:
        """Key columns of ``sketches``."""
        return [c for c in SKETCH_KEYS if c not in self.dropped]

    @property
    def freq_ms(self) -> int:
        """Bucket length in milliseconds."""
        return int(self.freq // pd.Timedelta(milliseconds=1))

    def rank_error(self) -> float:
        """Bound on the normalized rank error of any single quantile of any sketch (held with 99% probability).

        Returns
        -------
        float
            E.g. 0.0068 for k=400: a reported p95 has a true rank within 95% +- 0.68%.
        """
        return float(datasketches.kll_doubles_sketch.get_normalized_rank_error(self.k, False))

    def _check_compatible(self, other: Summary) -> None:
        if not isinstance(other, Summary):
            raise TypeError(f"can only merge a Summary with a Summary, got {type(other).__name__}")
        for name in ("freq", "k", "success_statuses", "dropped"):
            if getattr(self, name) != getattr(other, name):
                raise ValueError(
                    f"summaries differ in {name} ({getattr(self, name)!r} vs {getattr(other, name)!r}); "
                    "regroup them to the same keys and buckets first"
                )

    def merge(self, *others: Summary) -> Summary:
        """The summary of all executions of ``self`` and ``others`` (counts add, sketches merge).

        Returns
        -------
        Summary
            Same ``freq``, ``k``, keys; rows sorted by key.
        """
        for other in others:
            self._check_compatible(other)
        parts = (self, *others)
        counts = pd.concat([p.counts for p in parts], ignore_index=True)
        sketches = pd.concat([p.sketches for p in parts], ignore_index=True)
        return replace(
            self,
            counts=_sum_counts(counts, self.count_keys),
            sketches=_merge_sketch_rows(sketches, self.sketch_keys, self.k),
        )

    def __add__(self, other: Summary) -> Summary:
        return self.merge(other)

    def regroup(self, *, drop: Iterable[str] = (), freq: str | pd.Timedelta | None = None) -> Summary:
        """A coarser summary: key columns dropped and/or longer time buckets.

        Parameters
        ----------
        drop : iterable of str
            Key columns to remove: ``"caller_rid"``, ``"resource_version"``, ``"failure_reason"``.
        freq : str or Timedelta, optional
            New bucket length, a whole multiple of the current one (``"7D"`` from ``"1D"``).

        Returns
        -------
        Summary
            Without the dropped columns; analysis that asks for them raises ``ValueError``.
        """
        dropped = list(drop)
        bad = [c for c in dropped if c not in _DROPPABLE]
        if bad:
            raise ValueError(f"regroup: can drop only {', '.join(_DROPPABLE)}, not {', '.join(bad)}")
        step = self.freq if freq is None else pd.Timedelta(freq)
        if step <= pd.Timedelta(0) or step % self.freq:
            raise ValueError(f"regroup: freq must be a whole multiple of the summary's {self.freq}, got {freq!r}")
        new_dropped = tuple(c for c in COUNT_KEYS if c in self.dropped or c in dropped)
        out = replace(self, freq=step, dropped=new_dropped)
        step_ms = out.freq_ms

        def rebucket(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
            frame = frame.drop(columns=[c for c in dropped if c in frame.columns])
            start = (epoch_ms(frame["bucket_start"]) // step_ms) * step_ms
            out: pd.DataFrame = frame.assign(bucket_start=pd.to_datetime(start, unit="ms", utc=True).as_unit("ms"))
            return out

        return replace(
            out,
            counts=_sum_counts(rebucket(self.counts, out.count_keys), out.count_keys),
            sketches=_merge_sketch_rows(rebucket(self.sketches, out.sketch_keys), out.sketch_keys, self.k),
        )

    # -----------------------------------------------------------------------------------------------------
    # Arrow and Parquet
    # -----------------------------------------------------------------------------------------------------

    def to_arrow(self) -> tuple[pa.Table, pa.Table]:
        """The two tables as Arrow, the sketch as a ``binary`` column; metadata carries freq, k, statuses.

        Returns
        -------
        tuple of pyarrow.Table
            ``(counts, sketches)`` with the columns of the class docstring.
        """
        meta = {
            _META_FREQ: str(self.freq_ms).encode(),
            b"exec_analytics.summary.k": str(self.k).encode(),
            b"exec_analytics.summary.success_statuses": "\x1f".join(self.success_statuses).encode(),
            b"exec_analytics.summary.dropped": ",".join(self.dropped).encode(),
        }
        counts = pa.Table.from_pandas(self.counts, preserve_index=False)
        sk = self.sketches.drop(columns="sketch")
        sketches = pa.Table.from_pandas(sk, preserve_index=False).append_column(
            "sketch", pa.array(list(self.sketches["sketch"]), pa.binary())
        )
        return counts.replace_schema_metadata(meta), sketches.replace_schema_metadata(meta)

    def write(self, location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> None:
        """Write ``counts.parquet`` and ``sketches.parquet`` into ``location`` (a directory, or ``s3://...``).

        Each file is replaced atomically (a local rename, or one S3 PUT). Both carry the same write id, so
        :meth:`read` refuses a pair of files from two different writes. Compression is zstd level
        :data:`ZSTD_LEVEL`: a summary is written once and read many times, and the sketches' bytes (whole
        milliseconds and seconds as doubles) shrink by about a quarter over zstd's default level.

        Parameters
        ----------
        location : str or os.PathLike
            A directory (created if needed) or ``s3://bucket/prefix``.
        storage_options : mapping, optional
            For S3: keyword arguments of ``boto3.client("s3", ...)``; by default the usual AWS environment.
        """
        counts, sketches = self.to_arrow()
        write_id = {_META_ID: uuid.uuid4().hex.encode()}
        blobs: dict[str, bytes] = {}
        for name, table in (("sketches.parquet", sketches), ("counts.parquet", counts)):
            out = io.BytesIO()
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **write_id})
            pq.write_table(table, out, compression="zstd", compression_level=ZSTD_LEVEL)
            blobs[name] = out.getvalue()
        text = os.fspath(location)
        if "://" in text:
            storage = open_storage(text, dict(storage_options) if storage_options else None)
            for name, data in blobs.items():
                storage.write(name, data)
            return
        for name, data in blobs.items():
            write_atomic(Path(text).expanduser() / name, functools.partial(Path.write_bytes, data=data))

    @classmethod
    def read(cls, location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> Summary:
        """Read a summary written by :meth:`write`.

        Parameters
        ----------
        location : str or os.PathLike
            The directory or ``s3://bucket/prefix`` it was written to.
        storage_options : mapping, optional
            For S3, as :meth:`write`.

        Returns
        -------
        Summary

        Raises
        ------
        ValueError
            A file is missing, is not a summary's, or the two files come from different writes.
        """
        text = os.fspath(location)
        storage = open_storage(text, dict(storage_options) if storage_options else None)
        tables: dict[str, pa.Table] = {}
        for name in ("counts.parquet", "sketches.parquet"):
            data = storage.read(name)
            if data is None:
                raise ValueError(f"no summary at {storage.url()}: {name} is missing")
            try:
                tables[name] = pq.read_table(io.BytesIO(data))
            except pa.ArrowInvalid as exc:
                raise ValueError(f"{storage.url(name)} is not a Parquet file ({exc})") from None
        counts, sketches = tables["counts.parquet"], tables["sketches.parquet"]
        meta = counts.schema.metadata or {}
        ids = {(t.schema.metadata or {}).get(_META_ID) for t in (counts, sketches)}
        if _META_FREQ not in meta:
            raise ValueError(f"{storage.url('counts.parquet')} is not a summary written by Summary.write")
        if len(ids) != 1:
            raise ValueError(
                f"the two files at {storage.url()} come from different writes (one was replaced while the other "
                "was read, or a write was cut short); read again, or write the summary again"
            )
        dropped = tuple(c for c in meta[b"exec_analytics.summary.dropped"].decode().split(",") if c)
        out = cls(
            counts=pd.DataFrame(),
            sketches=pd.DataFrame(),
            freq=pd.Timedelta(int(meta[_META_FREQ]), unit="ms"),
            k=int(meta[b"exec_analytics.summary.k"]),
            success_statuses=tuple(meta[b"exec_analytics.summary.success_statuses"].decode().split("\x1f")),
            dropped=dropped,
        )
        blobs = np.empty(sketches.num_rows, dtype=object)
        blobs[:] = sketches.column("sketch").to_pylist()
        sk = sketches.drop_columns(["sketch"]).to_pandas()
        sk["sketch"] = blobs
        return replace(
            out,
            counts=_sum_counts(counts.to_pandas(), out.count_keys),
            sketches=_merge_sketch_rows(sk, out.sketch_keys, out.k),
        )


def make_summary(
    counts: pd.DataFrame,
    sketches: pd.DataFrame,
    *,
    freq: pd.Timedelta,
    k: int,
    success_statuses: tuple[str, ...],
) -> Summary:
    """A :class:`Summary` from engine output that may hold a key more than once (partial aggregates).

    Returns
    -------
    Summary
        Counts summed and sketches merged per key, dtypes normalised, rows sorted by key.
    """
    out = Summary(pd.DataFrame(), pd.DataFrame(), freq=freq, k=k, success_statuses=success_statuses)
    return replace(
        out,
        counts=_sum_counts(counts, list(COUNT_KEYS)),
        sketches=_merge_sketch_rows(sketches, list(SKETCH_KEYS), k),
    )
