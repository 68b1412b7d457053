"""The executions table: the contract every module shares.

Column names and dtypes (:data:`COLUMNS`, :data:`DTYPES`, :data:`ARROW_SCHEMA`), the one map from the API's
field names to ours (:data:`API_FIELDS`), what identifies an execution (:func:`dedupe`), the conversion of
Arrow tables to the DataFrame (:func:`to_frame`), version order, and the columns derived on demand
(:func:`failed`, :func:`end_time`). Decoding response bodies is :mod:`exec_analytics.decode`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "API_FIELDS",
    "ARROW_SCHEMA",
    "COLUMNS",
    "DTYPES",
    "EXTRA_COLUMN",
    "IDENTITY_COLUMNS",
    "UNIT_SECONDS",
    "concat_frames",
    "dedupe",
    "empty_frame",
    "end_time",
    "failed",
    "order_versions",
    "to_frame",
]

#: Columns of the executions table, in order. An ``extra`` column may follow (see :data:`EXTRA_COLUMN`).
COLUMNS: tuple[str, ...] = (
    "start_time",
    "duration_s",
    "status",
    "failure_reason",
    "resource_rid",
    "resource_version",
    "caller_rid",
    "trace_owning_rid",
    "foundry_trace_id",
)

#: Optional column: JSON text of the execution fields this version does not know (null when none).
#: Present only when at least one decoded execution had such fields.
EXTRA_COLUMN = "extra"

#: The one map from the API's field names to ours. ``duration`` becomes ``duration_s``.
API_FIELDS: dict[str, str] = {
    "startTime": "start_time",
    "duration": "duration_s",
    "status": "status",
    "failureReason": "failure_reason",
    "resourceRid": "resource_rid",
    "resourceVersion": "resource_version",
    "callerRid": "caller_rid",
    "traceOwningRid": "trace_owning_rid",
    "foundryTraceId": "foundry_trace_id",
}

#: Seconds per API ``TimeUnit``. MONTHS and YEARS have no fixed length; they use the Gregorian calendar
#: averages (a year is 365.2425 days, a month a twelfth of that, 30.436875 days), the same convention as
#: ISO 8601 durations in most libraries. Every factor is a whole number of milliseconds, so
#: ``value * factor`` is exact and ``duration_s`` is the correctly rounded number of seconds.
UNIT_SECONDS: dict[str, float] = {
    "MILLISECONDS": 0.001,
    "SECONDS": 1.0,
    "MINUTES": 60.0,
    "HOURS": 3_600.0,
    "DAYS": 86_400.0,
    "WEEKS": 604_800.0,
    "MONTHS": 30.436875 * 86_400.0,
    "YEARS": 365.2425 * 86_400.0,
}

_CATEGORY_COLUMNS = ("status", "failure_reason", "resource_rid", "resource_version", "caller_rid", "trace_owning_rid")

#: pandas dtypes of the executions table (docs/design.md), as dtype names: ``df[c].dtype == DTYPES[c]`` holds for
#: every column and ``astype(DTYPES)`` works. Categories depend on the data; ``resource_version`` is
#: additionally ``ordered`` by :func:`order_versions`.
DTYPES: dict[str, str] = {
    "start_time": "datetime64[ms, UTC]",
    "duration_s": "float64",
    "status": "category",
    "failure_reason": "category",
    "resource_rid": "category",
    "resource_version": "category",
    "caller_rid": "category",
    "trace_owning_rid": "category",
    "foundry_trace_id": "string",
}

_DICT = pa.dictionary(pa.int32(), pa.string())

#: Arrow schema of :func:`decode_pages` output (without the optional ``extra`` string column).
ARROW_SCHEMA = pa.schema(
    [
        pa.field("start_time", pa.timestamp("ms", tz="UTC")),
        pa.field("duration_s", pa.float64()),
        *[pa.field(c, _DICT) for c in ("status", "failure_reason", "resource_rid", "resource_version")],
        pa.field("caller_rid", _DICT),
        pa.field("trace_owning_rid", _DICT),
        pa.field("foundry_trace_id", pa.string()),
    ]
)


# ---------------------------------------------------------------------------------------------------------
# Arrow table operations
# ---------------------------------------------------------------------------------------------------------

#: What identifies one execution: the resource, the trace and the start time. The duration and status are not
#: part of it: the API may report the same execution again with a corrected duration or a final status, and
#: that is still one execution.
IDENTITY_COLUMNS: tuple[str, ...] = ("resource_rid", "foundry_trace_id", "start_time")


def dedupe(table: pa.Table) -> tuple[pa.Table, int]:
    """Drop repeated executions, keeping the last copy of each, in the original order.

    The one rule for "the same execution", used when paging returns an execution twice and when the cache
    merges a new fetch into its history:

    * two rows are the same execution when ``resource_rid``, ``foundry_trace_id`` and ``start_time`` are
      equal (:data:`IDENTITY_COLUMNS`), whatever their other columns say;
    * a row whose ``foundry_trace_id`` is null cannot be identified that way: it is the same execution as
      another row only when every column is equal (NaN durations compare equal here);
    * of the copies, the **last** in the table is kept: tables are in the order they were fetched, so the
      newer answer of the API wins (a refreshed duration or status replaces the stored one).

    Parameters
    ----------
    table : pyarrow.Table
        Output of :func:`exec_analytics.decode.decode_pages` (or any table with the identity columns).

    Returns
    -------
    (pyarrow.Table, int)
        The table without repeats, same columns, kept rows in their original order; and the number of
        rows dropped.
    """
    n = table.num_rows
    if n < 2:
        return table, 0
    keys = {c: table.column(c) for c in IDENTITY_COLUMNS}
    trace = table.column("foundry_trace_id")
    if trace.null_count:
        # Without a trace id every column is part of the identity; with one, the other columns are masked
        # out (null) so they cannot tell two copies apart.
        no_trace = pc.is_null(trace)
        for c in table.column_names:
            if c not in keys:
                col = table.column(c)
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                keys[f"__{c}"] = pc.if_else(no_trace, col, pa.scalar(None, col.type))
    names = list(keys)
    key_table = pa.table(keys).unify_dictionaries()
    # Arrow's hash group-by puts every NaN in one group, so NaN durations compare equal here.
    key_table = key_table.append_column("__row", pa.array(np.arange(n, dtype=np.int64)))
    last = key_table.group_by(names, use_threads=False).aggregate([("__row", "max")])
    if last.num_rows == n:
        return table, 0
    rows = np.sort(last.column("__row_max").to_numpy())
    return table.take(pa.array(rows)), n - len(rows)


# ---------------------------------------------------------------------------------------------------------
# pandas side
# ---------------------------------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


def _version_key(value: str, first_seen: int) -> tuple[Any, ...]:
    match = _SEMVER.match(value)
    if match is None:
        return (1, first_seen)
    pre = match["pre"]
    if pre is None:
        pre_key: tuple[Any, ...] = (1,)  # a release sorts after all of its pre-releases
    else:
        # Numeric identifiers compare numerically and before alphanumeric ones (semver.org, rule 11).
        pre_key = (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")))
    return (0, int(match["major"]), int(match["minor"]), int(match["patch"]), pre_key, first_seen)


def order_versions(values: Iterable[Any]) -> list[str]:
    """Distinct version strings in version order.

    Semantic versions (``MAJOR.MINOR.PATCH[-pre][+build]``, an optional leading ``v``) compare by
    precedence: numerically, so ``1.10.0`` follows ``1.9.0``, and a pre-release before its release. Build
    metadata does not affect order (ties keep first appearance). Other strings follow all semantic versions,
    in order of first appearance. Missing values (None, NaN, NA) are skipped.

    Parameters
    ----------
    values : iterable
        Version strings, repeats allowed (e.g. a column or its categories).

    Returns
    -------
    list of str
        Each distinct version once, oldest first.
    """
    seen: dict[str, int] = {}
    for v in pd.unique(pd.Series(list(values) if not isinstance(values, (pd.Series, pd.Index)) else values)):
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            continue
        seen.setdefault(str(v), len(seen))
    return sorted(seen, key=lambda v: _version_key(v, seen[v]))


_CATEGORY_INDEX_DTYPE = pd.Index(["x"]).dtype  # what Arrow dictionaries become: str on pandas 3, object on 2


def _categorical(values: Any, *, ordered_versions: bool = False) -> pd.Categorical:
    cat = values if isinstance(values, pd.Categorical) else pd.Categorical(values)
    # remove_unused_categories sorts the codes; a presence mask is O(n) and usually shows nothing to drop.
    present = np.zeros(len(cat.categories) + 1, dtype=bool)
    present[cat.codes.astype(np.intp) + 1] = True
    if not present[1:].all():
        cat = cat.remove_unused_categories()
    if cat.categories.dtype != _CATEGORY_INDEX_DTYPE:
        categories = pd.Index(cat.categories.astype(object), dtype=_CATEGORY_INDEX_DTYPE)
        cat = pd.Categorical.from_codes(cat.codes, categories=categories, ordered=cat.ordered)
    if ordered_versions:
        order = order_versions(cat.categories)
        cat = cat.set_categories(pd.Index(order, dtype=_CATEGORY_INDEX_DTYPE), ordered=True)
    elif not cat.categories.is_monotonic_increasing:
        # Sorted, not in order of first appearance: concurrent paging decodes pages in any order, and the
        # same executions must give the same frame.
        cat = cat.reorder_categories(cat.categories.sort_values())
    return cat


def _string_mapper(arrow_type: pa.DataType) -> Any:
    return pd.StringDtype() if arrow_type in (pa.string(), pa.large_string()) else None


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Convert a decoded Arrow table to the executions DataFrame with exactly the dtypes of docs/design.md.

    Parameters
    ----------
    table : pyarrow.Table
        Output of :func:`decode_pages` or :func:`dedupe`.

    Returns
    -------
    pandas.DataFrame
        Columns ``start_time`` (datetime64[ms, UTC]), ``duration_s`` (float64), ``status``,
        ``failure_reason``, ``resource_rid``, ``caller_rid``, ``trace_owning_rid`` (category, NA when
        absent), ``resource_version`` (category ordered by :func:`order_versions`), ``foundry_trace_id``
        (string); and ``extra`` (string) when the table has it. Unused categories are removed. RangeIndex.
    """
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"table: missing column(s) {', '.join(missing)}")
    names = [*COLUMNS, *([EXTRA_COLUMN] if EXTRA_COLUMN in table.column_names else [])]
    # self_destruct is not used: the caller may keep the table; the string columns are zero-copy anyway.
    df: pd.DataFrame = table.select(names).to_pandas(types_mapper=_string_mapper)
    for c in _CATEGORY_COLUMNS:
        df[c] = _categorical(df[c].array, ordered_versions=c == "resource_version")
    if df["start_time"].dtype != DTYPES["start_time"]:
        df["start_time"] = df["start_time"].astype(pd.DatetimeTZDtype(unit="ms", tz="UTC"))
    return df


def empty_frame() -> pd.DataFrame:
    """An executions DataFrame with no rows and the table's dtypes.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`COLUMNS`, zero rows.
    """
    return to_frame(ARROW_SCHEMA.empty_table())


def concat_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate executions frames, keeping every category column categorical.

    ``pandas.concat`` turns categoricals with different categories into ``object``; here the categories
    are unioned instead, and ``resource_version`` is re-ordered over the union.

    Parameters
    ----------
    frames : iterable of DataFrame
        Executions frames (e.g. one per resource or per window).

    Returns
    -------
    pandas.DataFrame
        All rows in the order given, RangeIndex, the executions dtypes; ``extra`` is present (NA where a
        frame had none) when any input frame had it. ``attrs`` are kept when every frame has the same.
    """
    frames = [f for f in frames]
    if not frames:
        return empty_frame()
    with_extra = any(EXTRA_COLUMN in f.columns for f in frames)
    cats: dict[str, list[Any]] = {c: [] for c in _CATEGORY_COLUMNS if all(c in f.columns for f in frames)}
    plain = []
    for f in frames:
        for c, parts in cats.items():
            parts.append(_categorical(f[c].array))
        rest = f.drop(columns=list(cats))
        if with_extra and EXTRA_COLUMN not in rest.columns:
            rest = rest.assign(**{EXTRA_COLUMN: pd.array([pd.NA] * len(rest), dtype=pd.StringDtype())})
        plain.append(rest)
    out: pd.DataFrame = pd.concat(plain, ignore_index=True)
    for c, parts in cats.items():
        union = pd.api.types.union_categoricals(parts, ignore_order=True)
        out[c] = _categorical(union, ordered_versions=c == "resource_version")
    order = [c for c in (*COLUMNS, EXTRA_COLUMN) if c in out.columns]
    out = out[order + [c for c in out.columns if c not in order]]
    attrs = frames[0].attrs
    out.attrs = dict(attrs) if all(f.attrs == attrs for f in frames) else {}
    return out


# ---------------------------------------------------------------------------------------------------------
# Derived on demand
# ---------------------------------------------------------------------------------------------------------


def failed(df: pd.DataFrame, success_statuses: Iterable[str] | str = ("SUCCEEDED",)) -> pd.Series:
    """Which executions failed: any status not in ``success_statuses``.

    ``failureReason`` is never used: the API shows it on succeeded executions too. A status the API adds
    later counts as a failure unless listed as a success.

    Parameters
    ----------
    df : DataFrame
        An executions frame (needs ``status``).
    success_statuses : str or iterable of str
        Statuses that count as success.

    Returns
    -------
    pandas.Series
        Boolean, named ``failed``, aligned with ``df``.
    """
    ok = [success_statuses] if isinstance(success_statuses, str) else list(success_statuses)
    out: pd.Series = (~df["status"].isin(ok)).astype(bool).rename("failed")
    return out


def end_time(df: pd.DataFrame) -> pd.Series:
    """When each execution ended: ``start_time + duration_s``, to the millisecond.

    Parameters
    ----------
    df : DataFrame
        An executions frame (needs ``start_time`` and ``duration_s``).

    Returns
    -------
    pandas.Series
        datetime64[ms, UTC], named ``end_time``, aligned with ``df``; NaT where the duration is NaN.
    """
    millis = np.rint(df["duration_s"].to_numpy(dtype="float64") * 1000.0)
    delta = pd.to_timedelta(millis, unit="ms").as_unit("ms")
    start = df["start_time"].astype(pd.DatetimeTZDtype(unit="ms", tz="UTC"))
    out: pd.Series = (start + pd.Series(delta, index=df.index)).rename("end_time")
    return out
