"""Arrow tables of the cache: the file schema, merging, writing, reading with pushdown, local filters."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schema
from ..errors import CacheError
from ..filters import FIELD_OPERATORS
from .intervals import Interval
from .layout import ALL
from .manifest import version_message
from .versionkey import version_keys

#: ExecutionFilter fields that are columns of the history and compare exactly, so a filter made only of
#: them can be answered from the history without asking the server: every filterable field of
#: :data:`~exec_analytics.schema.API_FIELDS` but ``duration`` (whether the server compares the reported,
#: rounded duration or the true one is not documented). ``userId`` is not a column.
LOCAL_FILTER_FIELDS: dict[str, str] = {
    api: column for api, column in schema.API_FIELDS.items() if api in FIELD_OPERATORS and api != "duration"
}

#: The column of every file that orders versions without this package (see :mod:`.versionkey`).
VERSION_KEY = "version_key"
#: Arrow schema of every partition file: the executions table, ``extra`` (JSON text of fields the API added,
#: null when none) so that every file has the same columns, and ``version_key``.
CACHE_SCHEMA = schema.ARROW_SCHEMA.append(pa.field(schema.EXTRA_COLUMN, pa.string())).append(
    pa.field(VERSION_KEY, pa.string())
)

META_KEY = b"exec_analytics.cache_format"
#: Version of the partition files' own layout, in each file's metadata: 2 added ``version_key`` (cache format 3).
PARTITION_FORMAT = 2
#: Rows per Parquet row group: a busy resource's day is split, so a read of a few hours skips the rest by
#: row-group statistics; a quiet one's day is one group.
_ROW_GROUP_ROWS = 65_536
#: zstd level 1: measured on a month of simulated history, levels 3 and 6 are no smaller (the trace ids, most
#: of the bytes, are random) and level 6 writes 40% slower.
_ZSTD_LEVEL = 1


def conform(table: pa.Table) -> pa.Table:
    """The table with exactly :data:`CACHE_SCHEMA`'s columns and types (``extra`` added as nulls, and
    ``version_key`` computed from ``resource_version``)."""
    arrays = []
    for f in CACHE_SCHEMA:
        if f.name == VERSION_KEY:
            arrays.append(version_keys(table.column("resource_version")))
        elif f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type and pa.types.is_dictionary(f.type):
                col = pc.dictionary_encode(col.cast(pa.string()))
            elif col.type != f.type:
                col = col.cast(f.type)
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=CACHE_SCHEMA)


def merge_rows(new: pa.Table, old: pa.Table | None) -> pa.Table:
    """``old`` merged with ``new`` (fetched later) by :func:`~exec_analytics.schema.dedupe`, sorted by start.

    A stored execution fetched again is replaced by its new copy; stored rows the new fetch lacks are kept.
    """
    merged = new if old is None or not old.num_rows else schema.dedupe(pa.concat_tables([old, new]))[0]
    merged = merged.sort_by([("start_time", "ascending"), ("foundry_trace_id", "ascending")])
    return merged.unify_dictionaries().combine_chunks()


def encode_partition(table: pa.Table) -> bytes:
    """The bytes of a partition file holding ``table`` (with the format marker in its metadata)."""
    table = table.replace_schema_metadata({META_KEY: str(PARTITION_FORMAT).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=_ZSTD_LEVEL,
        use_dictionary=True,
        write_statistics=True,
        row_group_size=_ROW_GROUP_ROWS,
    )
    return bytes(sink.getvalue())


class Unreadable(Exception):
    """Bytes that are not a partition file: truncated, corrupt, or not Parquet at all."""


def _open(data: bytes, path: str, version: int = PARTITION_FORMAT) -> pq.ParquetFile:
    """Open a partition file's bytes, checking its format marker.

    A file of another format version is a :class:`CacheError` (never overwritten: another version of the
    package wrote it); bytes that do not parse are :class:`Unreadable`.
    """
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        meta = pf.schema_arrow.metadata
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise Unreadable(f"not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    found = (meta or {}).get(META_KEY)
    try:
        number: object = int(found) if found is not None else None
    except ValueError:
        number = found
    if number != version:
        raise CacheError(version_message(f"partition file {path}", number, version))
    return pf


def partition_rows(data: bytes, path: str) -> int:
    """Rows in a partition file's bytes, from its footer (raises :class:`Unreadable`, :class:`CacheError`)."""
    return int(_open(data, path).metadata.num_rows)


def upgrade_partition(data: bytes, path: str) -> tuple[bytes, int]:
    """A partition file of format 1 (before ``version_key``) re-encoded in this format, and its row count.

    Raises :class:`Unreadable` for bytes that do not parse, :class:`CacheError` for another format.
    """
    try:
        table = _open(data, path, 1).read()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise Unreadable(f"not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    table = conform(table.replace_schema_metadata(None))
    return encode_partition(table), table.num_rows


def _in_windows(start: pa.ChunkedArray | pa.Array, ivs: Sequence[Interval]) -> pa.Array:
    ms = pc.cast(start, pa.int64())
    mask = None
    for a, b in ivs:
        part = pc.and_(pc.greater_equal(ms, a), pc.less(ms, b))
        mask = part if mask is None else pc.or_(mask, part)
    assert mask is not None
    return mask


def read_partition(data: bytes, path: str, ivs: Sequence[Interval] | None, columns: Sequence[str] | None) -> pa.Table:
    """Rows of a partition file's bytes whose start is in ``ivs`` (all when None), with ``columns``.

    Only the row groups whose ``start_time`` statistics meet a window are decoded. Returns the columns of
    :data:`CACHE_SCHEMA` (or ``columns``) with exactly its types.
    """
    try:
        pf = _open(data, path)
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
    except Unreadable as exc:
        raise CacheError(f"cannot read partition file {path}: {exc}") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise CacheError(f"cannot read partition file {path} ({type(exc).__name__}: {exc})") from None
    if ivs is not None and table.num_rows:
        table = table.filter(_in_windows(table.column("start_time"), ivs))
    schema_ = CACHE_SCHEMA if columns is None else pa.schema([CACHE_SCHEMA.field(c) for c in columns])
    table = table.select(schema_.names)
    return table if table.schema == schema_ else table.cast(schema_)


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
    """The executions DataFrame for a cache table: ``extra`` only when some row has it; ``version_key`` (for
    engines that read the files directly) only when asked for in ``columns``."""
    extra = schema.EXTRA_COLUMN
    asked = columns is not None and extra in columns
    keys = table.column(VERSION_KEY) if VERSION_KEY in table.column_names else None
    if keys is not None:
        table = table.drop_columns([VERSION_KEY])
    if extra in table.column_names and not asked and table.column(extra).null_count == table.num_rows:
        table = table.drop_columns([extra])
    if columns is None:
        return schema.to_frame(table)
    # Columns not asked for are stood in by nulls so that the one canonical conversion applies.
    for f in CACHE_SCHEMA:
        if f.name not in table.column_names and f.name not in (extra, VERSION_KEY):
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    df = schema.to_frame(table)
    if keys is not None and VERSION_KEY in columns:
        df[VERSION_KEY] = pd.array(keys.to_pylist(), dtype=pd.StringDtype())
    out: pd.DataFrame = df[[c for c in columns if c in df.columns]]
    return out
