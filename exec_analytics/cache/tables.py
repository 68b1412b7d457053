"""Arrow tables of the cache: the file schema, merging, writing, reading with pushdown, local filters."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schema
from ..errors import CacheError
from .files import write_atomic
from .intervals import Interval
from .manifest import FORMAT_VERSION, version_message

#: ExecutionFilter fields that are columns of the history and compare exactly, so a filter made only of
#: them can be answered from the history without asking the server.
LOCAL_FILTER_FIELDS: dict[str, str] = {
    "status": "status",
    "failureReason": "failure_reason",
    "resourceVersion": "resource_version",
    "callerRid": "caller_rid",
    "traceOwningRid": "trace_owning_rid",
    "foundryTraceId": "foundry_trace_id",
}

#: Arrow schema of every partition file: the executions table plus ``extra`` (JSON text of fields the API
#: added, null when none), so that every file has the same columns.
CACHE_SCHEMA = schema.ARROW_SCHEMA.append(pa.field(schema.EXTRA_COLUMN, pa.string()))

META_KEY = b"exec_analytics.cache_format"
#: The store key of the unfiltered history.
ALL = "all"
_TS = pa.timestamp("ms", tz="UTC")
#: Rows per Parquet row group: a busy resource's day is split, so a read of a few hours skips the rest by
#: row-group statistics; a quiet one's day is one group.
_ROW_GROUP_ROWS = 65_536
#: zstd level 1: measured on a month of simulated history, levels 3 and 6 are no smaller (the trace ids, most
#: of the bytes, are random) and level 6 writes 40% slower.
_ZSTD_LEVEL = 1


def conform(table: pa.Table) -> pa.Table:
    """The table with exactly :data:`CACHE_SCHEMA`'s columns and types (``extra`` added as nulls)."""
    arrays = []
    for f in CACHE_SCHEMA:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type and pa.types.is_dictionary(f.type):
                col = pc.dictionary_encode(col.cast(pa.string()))
            elif col.type != f.type:
                col = col.cast(f.type)
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=CACHE_SCHEMA)


def _identity(table: pa.Table) -> pa.Array:
    """One string per row naming the execution: trace id and start (null when the trace id is)."""
    start = pc.cast(pc.cast(table.column("start_time"), pa.int64()), pa.string())
    trace = pc.cast(table.column("foundry_trace_id"), pa.string())
    return pc.binary_join_element_wise(trace, start, "\x1f")


def merge_rows(new: pa.Table, old: pa.Table | None) -> pa.Table:
    """``new`` plus the rows of ``old`` it does not replace, without repeats, sorted by start."""
    if old is not None and old.num_rows:
        replaced = pc.fill_null(
            pc.is_in(_identity(old), value_set=_identity(new).combine_chunks(), skip_nulls=True), False
        )
        merged = pa.concat_tables([new, old.filter(pc.invert(replaced))])
        # Rows without a trace id cannot be matched above; the exact-row dedupe catches their repeats.
        merged, _ = schema.dedupe(merged)
    else:
        merged = new
    merged = merged.sort_by([("start_time", "ascending"), ("foundry_trace_id", "ascending")])
    return merged.unify_dictionaries().combine_chunks()


def write_partition(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata({META_KEY: str(FORMAT_VERSION).encode()})

    def write(f: Any) -> None:
        pq.write_table(
            table,
            f,
            compression="zstd",
            compression_level=_ZSTD_LEVEL,
            use_dictionary=True,
            write_statistics=True,
            row_group_size=_ROW_GROUP_ROWS,
        )

    write_atomic(path, write)


def _check_version(meta: Mapping[bytes, bytes] | None, path: Path) -> None:
    version = (meta or {}).get(META_KEY)
    try:
        number: object = int(version) if version is not None else None
    except ValueError:
        number = version
    if number != FORMAT_VERSION:
        raise CacheError(version_message(f"partition file {path}", number))


def _in_windows(start: pa.ChunkedArray | pa.Array, ivs: Sequence[Interval]) -> pa.Array:
    ms = pc.cast(start, pa.int64())
    mask = None
    for a, b in ivs:
        part = pc.and_(pc.greater_equal(ms, a), pc.less(ms, b))
        mask = part if mask is None else pc.or_(mask, part)
    assert mask is not None
    return mask


def _read_one(path: Path, ivs: Sequence[Interval] | None, columns: list[str] | None) -> pa.Table:
    # One open file for footer and data: if a writer renames a new version over the path meanwhile, this
    # still reads the old one whole, never the footer of one and the pages of the other.
    pf = pq.ParquetFile(str(path))
    try:
        _check_version(pf.schema_arrow.metadata, path)
        groups = list(range(pf.metadata.num_row_groups))
        if ivs is not None:
            # Row-group statistics on start_time: skip the groups no window touches.
            col = pf.schema_arrow.get_field_index("start_time")
            kept = []
            for g in groups:
                stats = pf.metadata.row_group(g).column(col).statistics
                if (
                    stats is None
                    or not stats.has_min_max
                    or any(stats.min_raw < b and stats.max_raw >= a for a, b in ivs)
                ):
                    kept.append(g)
            groups = kept
        read_cols = None if columns is None else list(dict.fromkeys([*columns, "start_time"]))
        table = pf.read_row_groups(groups, columns=read_cols) if groups else CACHE_SCHEMA.empty_table()
    finally:
        pf.close()
    if ivs is not None and table.num_rows:
        table = table.filter(_in_windows(table.column("start_time"), ivs))
    if columns is not None:
        table = table.select(list(columns))
    return table


def read_files(paths: Sequence[Path], ivs: Sequence[Interval] | None, columns: Sequence[str] | None) -> pa.Table:
    """Read partition files, checking each one's format version, keeping rows whose start is in ``ivs``.

    Only the given files are opened, and in each only the row groups whose ``start_time`` statistics meet a
    window. ``FileNotFoundError`` passes through (a concurrent prune: the caller lists again); anything else
    unreadable is a :class:`CacheError`.
    """
    cols = None if columns is None else list(columns)
    try:
        tables = [_read_one(p, ivs, cols) for p in paths]
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CacheError(f"cannot read the cache's Parquet files ({type(exc).__name__}: {exc})") from None
    schema_ = CACHE_SCHEMA if cols is None else pa.schema([CACHE_SCHEMA.field(c) for c in cols])
    if not tables:
        return schema_.empty_table()
    return pa.concat_tables([t.select(schema_.names).cast(schema_) if t.schema != schema_ else t for t in tables])


def filter_mask(table: pa.Table, where: Mapping[str, Any]) -> pa.Array:
    """Rows of ``table`` matching a locally evaluable ExecutionFilter, evaluated like the API does."""
    kind = where["type"]
    n = table.num_rows
    if kind in ("and", "or"):
        parts = [filter_mask(table, f) for f in where["filters"]]
        if not parts:
            return pa.array(np.full(n, kind == "and"))
        out = parts[0]
        for p in parts[1:]:
            out = pc.and_(out, p) if kind == "and" else pc.or_(out, p)
        return out
    if kind == "not":
        return pc.invert(filter_mask(table, where["filter"]))
    column = table.column(LOCAL_FILTER_FIELDS[where["field"]])
    if kind == "isNull":
        return pc.is_null(column)
    values = [where["value"]] if kind == "eq" else list(where["value"])
    return pc.fill_null(pc.is_in(column, value_set=pa.array(values, pa.string()), skip_nulls=True), False)


def locally_evaluable(where: Mapping[str, Any]) -> bool:
    kind = where["type"]
    if kind in ("and", "or"):
        return all(locally_evaluable(f) for f in where["filters"])
    if kind == "not":
        return locally_evaluable(where["filter"])
    return where["field"] in LOCAL_FILTER_FIELDS


def filter_key(where: Mapping[str, Any] | None) -> str:
    if where is None:
        return ALL
    canonical = orjson.dumps(where, option=orjson.OPT_SORT_KEYS)
    return "f-" + hashlib.sha256(canonical).hexdigest()[:16]


def to_frame(table: pa.Table, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The executions DataFrame for a cache table: ``extra`` only when some row has it."""
    extra = schema.EXTRA_COLUMN
    asked = columns is not None and extra in columns
    if extra in table.column_names and not asked and table.column(extra).null_count == table.num_rows:
        table = table.drop_columns([extra])
    if columns is None:
        return schema.to_frame(table)
    # Columns not asked for are stood in by nulls so that the one canonical conversion applies.
    for f in CACHE_SCHEMA:
        if f.name not in table.column_names and f.name != extra:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    df = schema.to_frame(table)
    return df[[c for c in columns if c in df.columns]]
