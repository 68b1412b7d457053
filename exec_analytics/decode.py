"""Decoding of listExecutions response bodies into the executions table (see :mod:`exec_analytics.schema`).

Decoding is the hot path of every load, so it never walks executions in Python. Page bodies are joined
into newline-delimited JSON in batches and parsed by Arrow's JSON reader against an explicit schema; the
``data`` lists are flattened, durations scaled per unit with vectorised compute, and repeated strings
dictionary-encoded (the reader cannot emit dictionaries itself). Batches are parsed in a small thread pool:
the reader, ``bytes.join`` and the compute kernels all release the GIL.

Anything unusual takes a slower, exact path for the batch that needs it, never for the others:

- a body that is not on one line (pretty-printed, CRLF) is compacted with orjson first;
- a ``startTime`` that Arrow cannot parse (microseconds, odd offsets) is re-read as text and parsed by pandas;
- execution fields this module does not know are kept, as JSON text, in an ``extra`` column and reported
  with one :class:`SchemaWarning`;
- an unknown duration unit gives a NaN duration, the row is kept, and one :class:`SchemaWarning` names the
  units and their counts.

A body that is not JSON, is not one JSON object, or carries a wrong type or a null in a field the analysis
cannot do without (``startTime``, ``duration``, ``status``) raises :class:`~exec_analytics.errors.SchemaError`
naming the page, the execution and the field.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .errors import SchemaError
from .schema import API_FIELDS, ARROW_SCHEMA, COLUMNS, EXTRA_COLUMN, UNIT_SECONDS, to_frame

__all__ = ["SchemaWarning", "decode", "decode_pages"]


class SchemaWarning(UserWarning):
    """A page decoded, but with something the executions table cannot represent exactly.

    Unknown duration units (NaN duration), unknown execution fields (kept in ``extra``) and required
    identity fields that were absent (NA). Filter it with ``warnings.filterwarnings(..., SchemaWarning)``.
    """


_TS = pa.timestamp("ms", tz="UTC")
# Durations are read as float64: integers parse into it exactly, and a fractional value from a future API
# version still means something. A string or boolean is a type error.
_DURATION_TYPE = pa.struct([pa.field("value", pa.float64()), pa.field("unit", pa.string())])
# Every field of the map but the two with types of their own is a JSON string.
_STRING_FIELDS = tuple(f for f in API_FIELDS if f not in ("startTime", "duration"))


def _execution_type(ts_type: pa.DataType) -> pa.StructType:
    return pa.struct(
        [pa.field("startTime", ts_type), pa.field("duration", _DURATION_TYPE)]
        + [pa.field(name, pa.string()) for name in _STRING_FIELDS]
    )


_EXEC_TYPES = {ts: _execution_type(ts) for ts in (_TS, pa.string())}
_PAGE_SCHEMAS = {
    ts: pa.schema([pa.field("data", pa.list_(et)), pa.field("nextPageToken", pa.string())])
    for ts, et in _EXEC_TYPES.items()
}
_KNOWN_ITEM_FIELDS = frozenset(_EXEC_TYPES[_TS].names)
_KNOWN_DURATION_FIELDS = frozenset(_DURATION_TYPE.names)

# startTime, duration and status are essential: without them a row means nothing, so a null is a SchemaError.
# Required by the API but not needed to count or time executions: a null is kept as NA and reported.
_IDENTITY = ("resourceRid", "resourceVersion", "traceOwningRid", "foundryTraceId")

_UNIT_NAMES = pa.array(list(UNIT_SECONDS), pa.string())
# Factors in whole milliseconds, so value * factor is exact and one division by 1000 rounds correctly.
_UNIT_MS = pa.array([round(s * 1000) for s in UNIT_SECONDS.values()], pa.float64())

_BATCH_PAGES = 100
_MAX_WORKERS = 8
_TYPE_CHANGE = re.compile(r"Column\((?P<path>[^)]*)\) changed from (?P<want>\w+) to (?P<got>\w+)")


def _is_timestamp_error(exc: Exception) -> bool:
    return "timestamp" in str(exc) and "couldn't parse" in str(exc)


def _json_path(arrow_path: str) -> str:
    # Arrow names nested columns "/data/[]/duration/value"; show it as "data[].duration.value".
    return arrow_path.strip("/").replace("/[]", "[]").replace("/", ".")


def _as_bytes(body: Any) -> bytes:
    body = getattr(body, "body", body)  # accept client Page objects as well as raw bodies
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"bodies: expected bytes (or str, or a Page), got {type(body).__name__}")


def _compact(body: bytes, page: int) -> bytes:
    """One JSON value per line, whatever the whitespace: re-serialise a pretty-printed body."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"page {page}: body is not valid JSON ({exc})") from None
    return orjson.dumps(value)


def _compact_multiline(batch: list[bytes], offset: int) -> list[bytes] | None:
    """Compact the bodies that span several lines; None when no body does."""
    if not any(b"\n" in b or b"\r" in b for b in batch):
        return None
    return [_compact(b, offset + i) if (b"\n" in b or b"\r" in b) else b for i, b in enumerate(batch)]


def _read(buf: bytes, ts_type: pa.DataType, behavior: str) -> pa.Table:
    return pj.read_json(
        pa.py_buffer(buf),
        # One block per batch: parallelism comes from the batch pool, and a page never straddles blocks.
        read_options=pj.ReadOptions(use_threads=False, block_size=max(len(buf) + 1, 1 << 16)),
        parse_options=pj.ParseOptions(explicit_schema=_PAGE_SCHEMAS[ts_type], unexpected_field_behavior=behavior),
    )


def _read_either_ts(buf: bytes, behavior: str) -> tuple[pa.Table, pa.DataType]:
    try:
        return _read(buf, _TS, behavior), _TS
    except pa.ArrowInvalid as exc:
        if not _is_timestamp_error(exc):
            raise
    return _read(buf, pa.string(), behavior), pa.string()


def _diagnose(batch: list[bytes], offset: int, exc: Exception | None) -> SchemaError:
    """Find the body that broke a batch and say what is wrong with it, in JSON terms."""
    for i, body in enumerate(batch):
        page = offset + i
        if not body.strip():
            return SchemaError(f"page {page}: body is empty or only whitespace")
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            return SchemaError(f"page {page}: body is not valid JSON ({err})")
        if not isinstance(value, dict):
            return SchemaError(f"page {page}: body must be one JSON object, got {type(value).__name__}")
        try:
            table, _ = _read_either_ts(orjson.dumps(value), "ignore")
        except pa.ArrowInvalid as err:
            match = _TYPE_CHANGE.search(str(err))
            if match:
                return SchemaError(
                    f"page {page}: field {_json_path(match['path']) or '(body)'} must be a JSON {match['want']}, "
                    f"got a {match['got']}"
                )
            return SchemaError(f"page {page}: cannot decode ({err})")
        if table.num_rows != 1:
            return SchemaError(f"page {page}: body must be exactly one JSON object")
    # Every body decodes alone, so the batch failed on a combination: report Arrow's words.
    return SchemaError(f"pages {offset}-{offset + len(batch) - 1}: cannot decode ({exc})")


def _parse_timestamps(strings: pa.Array, rows_to_page: Any) -> pa.Array:
    """Fallback for timestamp forms Arrow rejects: pandas ISO 8601, truncated to milliseconds."""
    values = pd.Series(strings.to_pandas(), dtype=object)
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    bad = parsed.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        page, item = rows_to_page(row)
        raise SchemaError(f"page {page}, execution {item}: startTime {values.iloc[row]!r} is not an ISO 8601 time")
    return pa.array(parsed.dt.floor("ms").astype("datetime64[ms, UTC]"), _TS)


# Inferred types whose Python values serialise back to exactly the JSON that was sent.
_EXACT_TYPES = (pa.string(), pa.bool_(), pa.int64(), pa.null())


def _extras_from_struct(items: pa.StructArray, exec_type: pa.StructType) -> tuple[pa.Array, Counter[str]] | None:
    """JSON text of the unknown fields Arrow inferred, or None when that would not be exact.

    Only flat strings, booleans and integers round-trip exactly; nested objects (absent keys become nulls)
    and floats (integers beyond int64 are read as floats) go through :func:`_extras_from_json` instead.
    """
    unknown = [f for f in exec_type if f.name not in _KNOWN_ITEM_FIELDS]
    dur_type = exec_type.field("duration").type
    dur_unknown = [f for f in dur_type if f.name not in _KNOWN_DURATION_FIELDS]
    if not all(f.type in _EXACT_TYPES for f in (*unknown, *dur_unknown)):
        return None
    arrays = [items.field(f.name) for f in unknown]
    keys = [f.name for f in unknown]
    if dur_unknown:
        duration = items.field("duration")
        arrays += [duration.field(f.name) for f in dur_unknown]
        keys += [f"duration.{f.name}" for f in dur_unknown]
    counts: Counter[str] = Counter()
    texts: list[str | None] = []
    dumps, sort = orjson.dumps, orjson.OPT_SORT_KEYS
    for row in pa.StructArray.from_arrays(arrays, names=keys).to_pylist():
        kept = {k: v for k, v in row.items() if v is not None}
        counts.update(kept.keys())
        texts.append(dumps(kept, option=sort).decode() if kept else None)
    return pa.array(texts, pa.string()), counts


def _extras_from_json(batch: list[bytes]) -> tuple[pa.Array, Counter[str]]:
    """Exact extras straight from the JSON, for batches where Arrow cannot infer one type per field."""
    counts: Counter[str] = Counter()
    texts: list[str | None] = []
    for body in batch:
        data = orjson.loads(body).get("data") or []
        for item in data:
            kept = {k: v for k, v in item.items() if k not in _KNOWN_ITEM_FIELDS}
            duration = item.get("duration")
            if isinstance(duration, dict):
                kept.update({f"duration.{k}": v for k, v in duration.items() if k not in _KNOWN_DURATION_FIELDS})
            kept = {k: v for k, v in kept.items() if v is not None}
            counts.update(kept.keys())
            texts.append(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS).decode() if kept else None)
    return pa.array(texts, pa.string()), counts


class _BatchResult:
    __slots__ = ("columns", "extra", "extra_counts", "identity_nulls", "n_rows", "unknown_units")

    def __init__(self) -> None:
        self.columns: dict[str, pa.Array] = {}
        self.extra: pa.Array | None = None
        self.extra_counts: Counter[str] = Counter()
        self.unknown_units: Counter[str] = Counter()
        self.identity_nulls: Counter[str] = Counter()
        self.n_rows = 0


def _decode_batch(batch: list[bytes], offset: int) -> _BatchResult:
    if not all(batch):
        i = next(i for i, b in enumerate(batch) if not b)
        raise SchemaError(f"page {offset + i}: body is empty")
    # No scan for newlines up front: a body spread over several lines cannot parse as NDJSON (its first
    # line leaves a brace open), so it surfaces as a read error and only then is the batch compacted.
    buf = b"\n".join(batch)
    extra_from_json = False
    try:
        table, ts_type = _read_either_ts(buf, "infer")
    except pa.ArrowInvalid:
        compacted = _compact_multiline(batch, offset)
        if compacted is not None:
            batch, buf = compacted, b"\n".join(compacted)
        try:
            table, ts_type = _read_either_ts(buf, "infer")
        except pa.ArrowInvalid:
            # Either a body is broken, or an unknown field changes type between pages (Arrow cannot infer
            # one type for it). Ignore unknown fields in Arrow and take them from the JSON instead.
            try:
                table, ts_type = _read_either_ts(buf, "ignore")
            except pa.ArrowInvalid as exc:
                raise _diagnose(batch, offset, exc) from None
            extra_from_json = True
    if table.num_rows != len(batch):
        raise _diagnose(batch, offset, None)

    data = table.column("data")
    lists = data.chunks[0] if data.num_chunks == 1 else pa.concat_arrays(data.chunks)
    items = lists.flatten()  # honours null lists (a missing `data` is no rows)
    exec_type = data.type.value_type

    def rows_to_page(row: int) -> tuple[int, int]:
        # Only on error paths: which page (and which execution on it) a flattened row came from.
        parent = pc.list_parent_indices(lists)[row].as_py()
        offsets = lists.offsets
        return offset + parent, row - (offsets[parent].as_py() - offsets[0].as_py())

    res = _BatchResult()
    res.n_rows = n = len(items)

    # StructArray.field() ignores the struct's own validity: a `null` execution must read as all-null.
    if items.null_count:
        items = pa.StructArray.from_arrays(items.flatten(), fields=list(exec_type))
    duration = items.field("duration")
    # flatten() folds a null `duration` object into its children; field() alone would not.
    values, units = (duration.flatten()[duration.type.get_field_index(f)] for f in ("value", "unit"))
    start = items.field("startTime")
    essential = {"startTime": start, "duration.value": values, "duration.unit": units, "status": items.field("status")}
    for name, arr in essential.items():
        if arr.null_count:
            row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            page, item = rows_to_page(row)
            raise SchemaError(f"page {page}, execution {item}: required field {name!r} is missing or null")
    if ts_type != _TS:
        start = _parse_timestamps(start, rows_to_page)

    unit_index = pc.index_in(units, value_set=_UNIT_NAMES)
    if unit_index.null_count:
        unknown = pc.value_counts(units.filter(unit_index.is_null()))
        res.unknown_units.update(dict(zip(unknown.field(0).to_pylist(), unknown.field(1).to_pylist(), strict=True)))
    millis = pc.multiply(values, _UNIT_MS.take(unit_index))
    seconds = pc.divide(millis, 1000.0)
    if unit_index.null_count:
        seconds = pc.fill_null(seconds, float("nan"))

    cols = res.columns
    cols["start_time"] = start
    cols["duration_s"] = seconds
    for api_name in _STRING_FIELDS:
        arr = items.field(api_name)
        if api_name in _IDENTITY and arr.null_count:
            res.identity_nulls[api_name] += arr.null_count
        name = API_FIELDS[api_name]
        cols[name] = arr if name == "foundry_trace_id" else arr.dictionary_encode()

    if extra_from_json or exec_type != _EXEC_TYPES[ts_type]:
        # Arrow saw unknown fields: flat scalars come straight from its inferred struct; anything that would
        # not round-trip exactly is taken from the JSON itself.
        found = None if extra_from_json else _extras_from_struct(items, exec_type)
        res.extra, res.extra_counts = found if found is not None else _extras_from_json(batch)
        if len(res.extra) != n:  # cannot happen unless Arrow and orjson disagree about the body
            raise SchemaError(f"pages {offset}-{offset + len(batch) - 1}: cannot align unknown fields with rows")
    return res


def _batches(bodies: list[bytes], size: int) -> list[tuple[list[bytes], int]]:
    return [(bodies[i : i + size], i) for i in range(0, len(bodies), size)]


def decode_pages(
    bodies: Sequence[bytes] | Iterable[bytes], *, batch_pages: int = _BATCH_PAGES, workers: int | None = None
) -> pa.Table:
    """Decode listExecutions response bodies into one typed Arrow table.

    Parameters
    ----------
    bodies : sequence of bytes
        Raw JSON bodies, one ``ListExecutionsResponse`` each, in page order. ``str`` and objects with a
        ``.body`` attribute (the client's ``Page``) are accepted too.
    batch_pages : int
        Pages parsed per Arrow call. About 100 pages (~4.5 MB) amortises the reader's setup cost while
        keeping batches small enough to spread over the threads.
    workers : int, optional
        Threads that parse batches; default ``min(os.cpu_count(), 8)``. ``1`` parses in the calling thread.

    Returns
    -------
    pyarrow.Table
        One row per execution, in page order then position on the page, with the columns of
        :data:`ARROW_SCHEMA`: ``start_time`` timestamp[ms, UTC], ``duration_s`` float64 (NaN for unknown
        units), ``status``, ``failure_reason``, ``resource_rid``, ``resource_version``, ``caller_rid``,
        ``trace_owning_rid`` as dictionary<int32, string> (null when absent), ``foundry_trace_id`` string;
        plus ``extra`` (string, JSON of unknown execution fields, null when none) when any execution had
        unknown fields. Unknown top-level response fields are ignored.

    Raises
    ------
    SchemaError
        When a body is empty, not JSON, not exactly one JSON object, has a wrong type for a known field, or
        lacks ``startTime``, ``duration`` (value and unit) or ``status`` on an execution.

    Warns
    -----
    SchemaWarning
        Once per call for each of: unknown duration units (with counts), unknown execution fields (with
        counts), required identity fields that were absent (with counts).
    """
    if batch_pages < 1:
        raise ValueError(f"batch_pages must be >= 1, got {batch_pages}")
    raw = [_as_bytes(b) for b in bodies]
    jobs = _batches(raw, batch_pages)
    n_workers = min(workers or min(os.cpu_count() or 1, _MAX_WORKERS), len(jobs))
    if n_workers <= 1:
        results = [_decode_batch(b, o) for b, o in jobs]
    else:
        with ThreadPoolExecutor(n_workers, thread_name_prefix="exec-decode") as pool:
            results = list(pool.map(lambda job: _decode_batch(*job), jobs))
    results = [r for r in results if r.n_rows]
    _warn(results)
    if not results:
        return ARROW_SCHEMA.empty_table()
    arrays = [pa.chunked_array([r.columns[c] for r in results], type=ARROW_SCHEMA.field(c).type) for c in COLUMNS]
    schema = ARROW_SCHEMA
    if any(r.extra is not None for r in results):
        extra = [r.extra if r.extra is not None else pa.nulls(r.n_rows, pa.string()) for r in results]
        arrays.append(pa.chunked_array(extra, type=pa.string()))
        schema = schema.append(pa.field(EXTRA_COLUMN, pa.string()))
    return pa.Table.from_arrays(arrays, schema=schema)


def _warn(results: list[_BatchResult]) -> None:
    units: Counter[str] = Counter()
    extras: Counter[str] = Counter()
    nulls: Counter[str] = Counter()
    for r in results:
        units.update(r.unknown_units)
        extras.update(r.extra_counts)
        nulls.update(r.identity_nulls)
    if units:
        shown = ", ".join(f"{u!r} x{n}" for u, n in units.most_common())
        warnings.warn(
            f"unknown duration unit(s) {shown}: duration_s is NaN for those rows (rows kept); "
            f"known units are {', '.join(UNIT_SECONDS)}",
            SchemaWarning,
            stacklevel=3,
        )
    if extras:
        shown = ", ".join(f"{k!r} x{n}" for k, n in extras.most_common())
        warnings.warn(
            f"unknown execution field(s) {shown}: kept as JSON in the {EXTRA_COLUMN!r} column",
            SchemaWarning,
            stacklevel=3,
        )
    if nulls:
        shown = ", ".join(f"{k!r} x{n}" for k, n in nulls.most_common())
        warnings.warn(f"required field(s) absent on some executions: {shown}; kept as NA", SchemaWarning, stacklevel=3)


def decode(bodies: Sequence[bytes] | Iterable[bytes], **kwargs: Any) -> pd.DataFrame:
    """Decode page bodies straight to the executions DataFrame (:func:`decode_pages` + :func:`to_frame`).

    Parameters
    ----------
    bodies : sequence of bytes
        Raw listExecutions response bodies, in page order.
    **kwargs
        Passed to :func:`decode_pages` (``batch_pages``, ``workers``).

    Returns
    -------
    pandas.DataFrame
        See :func:`to_frame`. Repeated executions are not removed (see :func:`dedupe`).
    """
    return to_frame(decode_pages(bodies, **kwargs))
