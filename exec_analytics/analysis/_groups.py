"""Integer group codes and per-group sorted durations: the machinery every analysis function shares.

Grouping never hashes timestamps or strings row by row. Each grouping column becomes small integer codes
(category codes, epoch-aligned time buckets, factorized codes for anything else), the codes are combined by
mixed radix into one dense code per row, and every count is then a ``bincount`` over that code.

Percentiles come from one sort of a packed 64-bit key: the group code in the high bits and an
order-preserving integer image of the duration in the low bits. After that sort every group's durations
are one contiguous, ascending slice, and any order statistic of any group is a gather. Durations from the
API are whole milliseconds (every unit is a whole number of them), so the integer image is usually the
duration in milliseconds, checked exactly per call; otherwise it is the duration's rank from one argsort.

Merging: counts and failures add across partitions and per-group sorted runs merge, so every aggregate here
can be computed per partition and combined (a distributed engine would merge a quantile sketch instead of
sorted runs); nothing depends on seeing all rows at once except the final gather.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..rids import caller_kind
from ..schema import failed as _schema_failed

__all__ = [
    "DERIVED_KEYS",
    "Groups",
    "SortedGroups",
    "check_confidence",
    "check_quantiles",
    "duration_mask",
    "failed_mask",
    "group_rows",
    "percentile_names",
    "require_columns",
    "sort_within_groups",
    "value_ordered",
]

#: Grouping keys computed from the table rather than read from a column.
DERIVED_KEYS: dict[str, str] = {"caller_kind": "caller_rid"}

#: Label of the time-bucket column added by ``freq``.
PERIOD = "period_start"

Outcome = Literal["all", "succeeded", "failed"]

_UNITS_PER_MS = {"ms": 1, "us": 1_000, "ns": 1_000_000}
_DENSE_LIMIT = 1 << 22  # above this many possible groups, compact codes by sorting instead of a dense table


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------


def require_columns(df: pd.DataFrame, columns: Iterable[str], func: str) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``df`` is a DataFrame with ``columns``."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{func}: df must be a pandas DataFrame (the executions table), got {type(df).__name__}")
    missing = [c for c in dict.fromkeys(columns) if c not in df.columns]
    if missing:
        raise ValueError(f"{func}: df lacks column(s) {', '.join(missing)}; expected the executions table")


def check_confidence(confidence: float, name: str = "confidence") -> float:
    """Return ``confidence`` as a float strictly between 0 and 1, else raise ``ValueError``."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, e.g. 0.95; got {confidence!r}")
    return float(confidence)


def check_quantiles(q: float | Sequence[float]) -> np.ndarray:
    """Quantile probabilities as a 1-d float array in [0, 1], else ``ValueError``."""
    arr = np.atleast_1d(np.asarray(q, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError(f"q must be one or more probabilities in [0, 1], e.g. (0.5, 0.95); got {q!r}")
    return arr


def percentile_names(q: np.ndarray) -> list[str]:
    """Column names ``p50``, ``p99.9`` ... for quantile probabilities."""
    return [f"p{round(100 * float(x), 6):g}" for x in q]


# ---------------------------------------------------------------------------------------------------------
# Row masks
# ---------------------------------------------------------------------------------------------------------


def failed_mask(df: pd.DataFrame, success_statuses: Iterable[str] | str = ("SUCCEEDED",)) -> np.ndarray:
    """Boolean array: which executions failed (see :func:`exec_analytics.schema.failed`).

    Same rule as the schema helper (any status not listed as a success, NA included, never the failure
    reason), computed once per category and gathered by code.
    """
    status = df["status"]
    if isinstance(status.dtype, pd.CategoricalDtype):
        ok = [success_statuses] if isinstance(success_statuses, str) else list(success_statuses)
        bad = ~status.cat.categories.isin(ok)
        lut = np.append(bad, True)  # code -1 (a missing status) is not a success
        return lut[status.cat.codes.to_numpy()]
    return _schema_failed(df, success_statuses).to_numpy(dtype=bool)


def duration_mask(df: pd.DataFrame, failed: np.ndarray | None, outcome: str) -> np.ndarray:
    """Rows whose duration enters percentiles: a known duration and the requested ``outcome``."""
    if outcome not in ("all", "succeeded", "failed"):
        raise ValueError(f"outcome must be 'all', 'succeeded' or 'failed', got {outcome!r}")
    mask = ~np.isnan(df["duration_s"].to_numpy(dtype="float64"))
    if outcome == "all":
        return mask
    if failed is None:
        raise ValueError(f"outcome={outcome!r} needs the failed mask")
    return mask & (~failed if outcome == "succeeded" else failed)


# ---------------------------------------------------------------------------------------------------------
# Group codes
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Key:
    name: str
    codes: np.ndarray  # int64 in [0, card)
    card: int
    labels: Callable[[np.ndarray], object]


@dataclass
class Groups:
    """Rows mapped to dense group codes.

    Attributes
    ----------
    codes : numpy.ndarray
        intp, one code in ``[0, n_groups)`` per row, groups ordered by their keys (categories in category
        order with NA last, periods ascending).
    n_groups : int
    keys : pandas.DataFrame
        One row per group: the ``by`` columns (same dtypes as in the input; categorical stays categorical)
        and ``period_start`` when a ``freq`` was given.
    """

    codes: np.ndarray
    n_groups: int
    keys: pd.DataFrame


def as_list(by: str | Sequence[str] | None, name: str = "by") -> list[str]:
    """Normalise a ``by`` argument to a list of names."""
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    if isinstance(by, Sequence) and all(isinstance(b, str) for b in by):
        if len(set(by)) != len(by):
            raise ValueError(f"{name} names a column twice: {list(by)!r}")
        return list(by)
    raise TypeError(f"{name} must be a column name or a list of column names, got {by!r}")


def _category_key(name: str, col: pd.Series) -> _Key:
    cat = col.array
    n_cat = len(cat.categories)
    # One gather maps the small category codes to intp, with code -1 (NA) landing on the last slot.
    lut = np.arange(n_cat + 1, dtype=np.intp)
    codes = lut[cat.codes]

    def labels(k: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(np.where(k == n_cat, -1, k), dtype=col.dtype)  # type: ignore[call-overload]

    return _Key(name, codes, n_cat + 1, labels)


def _factorized_key(name: str, col: pd.Series) -> _Key:
    codes, uniques = pd.factorize(col, sort=True, use_na_sentinel=True)
    n_u = len(uniques)
    codes = codes.astype(np.int64)
    codes[codes < 0] = n_u

    def labels(k: np.ndarray) -> object:
        return uniques.take(np.where(k == n_u, -1, k), allow_fill=True)

    return _Key(name, codes, n_u + 1, labels)


def _caller_kind_key(df: pd.DataFrame) -> _Key:
    callers = df["caller_rid"]
    if not isinstance(callers.dtype, pd.CategoricalDtype):
        callers = callers.astype("category")
    cats = callers.cat.categories
    # The kind is a function of the RID: derive it once per distinct caller, then gather by code.
    kinds = caller_kind(pd.Series(cats.astype(object), dtype="category"))
    kind_codes, kind_names = pd.factorize(kinds.astype(object), sort=True, use_na_sentinel=True)
    n_k = len(kind_names)
    lut = np.append(np.where(kind_codes < 0, n_k, kind_codes), n_k).astype(np.int64)
    codes = lut[callers.cat.codes.to_numpy()]
    dtype = pd.CategoricalDtype(pd.Index(list(kind_names), dtype=object).astype(str))

    def labels(k: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(np.where(k == n_k, -1, k), dtype=dtype)

    return _Key("caller_kind", codes, n_k + 1, labels)


def start_ms(df: pd.DataFrame) -> np.ndarray:
    """``start_time`` as int64 milliseconds since the epoch (UTC), without per-row objects.

    The one place analysis turns start times into integers. Every datetime64 unit (s, ms, us, ns) is read
    in its own unit: pandas 3 parses text to microseconds and Parquet may hold seconds, so assuming
    nanoseconds would put November 2026 in January 1970.

    Raises
    ------
    TypeError
        If ``start_time`` is not a datetime64 column.
    ValueError
        If ``start_time`` is timezone-naive (its instant is unknown; the executions table is UTC) or holds
        missing values (NaT has no time bucket and no place in a window).
    """
    col = df["start_time"]
    dtype = col.dtype
    if not isinstance(dtype, pd.DatetimeTZDtype):
        if pd.api.types.is_datetime64_dtype(dtype):
            raise ValueError(
                "start_time is timezone-naive; the executions table is UTC, so state it: "
                "df['start_time'] = df['start_time'].dt.tz_localize('UTC') (or tz_convert from your zone)"
            )
        raise TypeError(f"start_time must be a timezone-aware datetime64 column, got {dtype}")
    values = np.asarray(col.array.asi8, dtype=np.int64)  # integers in the column's own unit
    missing = values == np.iinfo(np.int64).min  # NaT
    if missing.any():
        raise ValueError(
            f"start_time has {int(missing.sum())} missing value(s) (NaT); drop or fill them before analysis"
        )
    unit = dtype.unit
    if unit == "s":
        return values * 1_000
    return np.floor_divide(values, _UNITS_PER_MS[unit]) if _UNITS_PER_MS[unit] != 1 else values


def freq_ms(freq: str | pd.Timedelta, name: str = "freq") -> int:
    """A fixed bucket length in whole milliseconds; calendar frequencies are rejected."""
    try:
        td = pd.Timedelta(freq)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name} must be a fixed length such as '1D', '6h', '15min' or a Timedelta (buckets are aligned to "
            f"1970-01-01T00:00Z, so '1D' means UTC days); got {freq!r}"
        ) from None
    one_ms = pd.Timedelta(1, unit="ms")
    ms = td // one_ms
    if ms <= 0 or td % one_ms:
        raise ValueError(f"{name} must be a positive whole number of milliseconds, got {freq!r}")
    return int(ms)


def _period_key(df: pd.DataFrame, freq: str | pd.Timedelta) -> _Key:
    step = freq_ms(freq)
    bucket = np.floor_divide(start_ms(df), step)
    lo = int(bucket.min()) if len(bucket) else 0
    hi = int(bucket.max()) if len(bucket) else -1

    def labels(k: np.ndarray) -> pd.DatetimeIndex:
        ms = (k.astype(np.int64) + lo) * step
        return pd.DatetimeIndex(ms.astype("datetime64[ms]")).tz_localize("UTC")

    return _Key(PERIOD, bucket - lo, hi - lo + 1, labels)


def make_key(df: pd.DataFrame, name: str) -> _Key:
    """Integer codes for one grouping column of ``df`` (or a derived key such as ``caller_kind``)."""
    if name in DERIVED_KEYS and name not in df.columns:
        return _caller_kind_key(df)
    col = df[name]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return _category_key(name, col)
    return _factorized_key(name, col)


def _combine(keys: list[_Key], n: int) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """Dense codes over the observed combinations, in lexicographic key order, and each group's key codes."""
    # A dense table (bincount) is O(rows + combinations); beyond a few times the rows, sorting is cheaper.
    limit = min(_DENSE_LIMIT, max(2 * n, 1 << 16))
    combined = keys[0].codes
    card = keys[0].card
    parts: list[np.ndarray] = [np.arange(card, dtype=np.intp)]  # key codes of each combined value
    for key in keys[1:]:
        if card * key.card > limit:
            # Too many possible combinations for a dense table: compact what has been seen so far.
            uniq, combined = np.unique(combined, return_inverse=True)
            parts = [p[uniq] for p in parts]
            card = len(uniq)
        combined = combined * key.card
        combined += key.codes
        parts = [np.repeat(p, key.card) for p in parts] + [np.tile(np.arange(key.card, dtype=np.intp), card)]
        card *= key.card
    if card <= limit:
        present = np.bincount(combined, minlength=card) > 0
        ids = np.flatnonzero(present)
        if len(ids) and ids[-1] == len(ids) - 1:
            codes = combined  # the observed combinations are already 0..k-1 (e.g. only NA unobserved)
        else:
            remap = np.cumsum(present) - 1
            codes = remap[combined]
    else:
        ids, codes = np.unique(combined, return_inverse=True)
    return np.asarray(codes, dtype=np.intp), len(ids), [p[ids] for p in parts]


def group_rows(
    df: pd.DataFrame,
    by: str | Sequence[str] | None = None,
    freq: str | pd.Timedelta | None = None,
    *,
    func: str = "analysis",
) -> Groups:
    """Map every row of ``df`` to a dense group code for ``by`` (and ``freq`` buckets of ``start_time``).

    Parameters
    ----------
    df : DataFrame
        Executions table.
    by : str or list of str, optional
        Columns of ``df`` (or ``caller_kind``, derived from ``caller_rid``). Missing values form their own
        group, never dropped.
    freq : str or Timedelta, optional
        Fixed-length buckets of ``start_time`` aligned to the Unix epoch (``"1D"`` gives UTC days).
    func : str
        Name of the calling function, for error messages.

    Returns
    -------
    Groups
        With ``keys`` columns: the ``by`` names, then ``period_start`` (datetime64[ms, UTC]) with ``freq``.
        Without ``by`` and ``freq`` there is one group, even for an empty frame.
    """
    names = as_list(by)
    for name in names:
        if name not in df.columns and name not in DERIVED_KEYS:
            raise ValueError(f"{func}: by={name!r} is not a column of df (columns: {', '.join(map(str, df.columns))})")
        if name == PERIOD:
            raise ValueError(f"{func}: use freq= to group by time, not by={PERIOD!r}")
    keys = [make_key(df, name) for name in names]
    if freq is not None:
        keys.append(_period_key(df, freq))
    n = len(df)
    if not keys:
        return Groups(np.zeros(n, dtype=np.intp), 1, pd.DataFrame(index=pd.RangeIndex(1)))
    codes, n_groups, key_codes = _combine(keys, n)
    frame = pd.DataFrame({k.name: k.labels(c) for k, c in zip(keys, key_codes, strict=True)})
    return Groups(codes, n_groups, frame)


def value_ordered(groups: Groups) -> Groups:
    """The same groups renumbered in the order of their key values, whatever the input's category order.

    Group codes normally follow category codes, which depend on how a frame was built (row order at
    creation, categories added or reordered). Anything that draws random numbers per group must not depend
    on that: this order uses only the key values (as text, missing values last), so the same data give the
    same codes.

    Returns
    -------
    Groups
        ``codes`` renumbered and ``keys`` reordered to match.
    """
    if groups.n_groups <= 1 or groups.keys.shape[1] == 0:
        return groups
    sort_keys: list[np.ndarray] = []
    for name in reversed(list(groups.keys.columns)):  # lexsort: the last key is the primary one
        col = groups.keys[name]
        na = col.isna().to_numpy()
        text = col.astype(object).where(~na, "").astype(str).to_numpy()
        sort_keys += [pd.factorize(text, sort=True)[0], na]
    perm = np.lexsort(sort_keys)
    rank = np.empty(groups.n_groups, dtype=np.intp)
    rank[perm] = np.arange(groups.n_groups, dtype=np.intp)
    return Groups(rank[groups.codes], groups.n_groups, groups.keys.iloc[perm].reset_index(drop=True))


# ---------------------------------------------------------------------------------------------------------
# Sorted durations per group
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SortedGroups:
    """Durations grouped by code, ascending within each group.

    Attributes
    ----------
    values : numpy.ndarray
        float64, group 0's durations ascending, then group 1's, ...
    starts, counts : numpy.ndarray
        int64 per group: offset of its slice in ``values`` and its length.
    """

    values: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    def order_statistic(self, rank: np.ndarray) -> np.ndarray:
        """Per group, its ``rank``-th smallest value (1-based); NaN where the rank is outside 1..count.

        ``rank`` may be 2-d (groups x quantiles).
        """
        rank = np.asarray(rank, dtype=np.float64)
        counts = self.counts.reshape((-1,) + (1,) * (rank.ndim - 1))
        starts = self.starts.reshape(counts.shape)
        valid = np.isfinite(rank) & (rank >= 1) & (rank <= counts)
        idx = np.where(valid, starts + np.where(valid, rank, 1).astype(np.int64) - 1, 0)
        if self.values.size == 0:
            return np.full(np.broadcast(rank, counts).shape, np.nan)
        return np.where(valid, self.values[idx], np.nan)

    def quantiles(self, q: np.ndarray) -> np.ndarray:
        """Per group and probability, numpy's default ('linear') quantile; NaN for empty groups.

        Returns an array of shape (groups, len(q)). Uses numpy's own interpolation formula so results agree
        with ``numpy.quantile`` to the last bit on the same data.
        """
        n = self.counts[:, None].astype(np.float64)
        h = (n - 1.0) * q[None, :]
        lo = np.floor(h)
        t = h - lo
        a = self.order_statistic(lo + 1)
        b = self.order_statistic(np.minimum(lo + 2, n))
        diff = b - a
        with np.errstate(invalid="ignore"):
            out = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
            # numpy returns the lower value when both neighbours are equal (avoids inf - inf = nan)
            out = np.where(a == b, a, out)
        return np.where(self.counts[:, None] > 0, out, np.nan)


_CHUNK = 1 << 16  # rows per block in the packing loop: its temporaries stay in the CPU cache


def _pack_whole_ms(values: np.ndarray, codes: np.ndarray, code_bits: int) -> tuple[np.ndarray, int] | None:
    """Packed keys ``code << bits | milliseconds`` and ``bits``, or None unless every duration is exact ms.

    Exact means dividing the integer by 1000 gives back the duration bit for bit, so percentiles of the
    integers are percentiles of the durations. Works block by block (a loop over fixed-size chunks of rows,
    not over groups), which is about three times faster than whole-array temporaries at 10M rows.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.uint64), 1
    low, high = float(values.min()), float(values.max())
    if low < 0 or high * 1000.0 >= 2.0**52:
        return None
    bits = max(int(np.rint(high * 1000.0)).bit_length(), 1)
    if bits + code_bits > 64:
        return None
    shift = np.uint64(bits)
    key = np.empty(n, dtype=np.uint64)
    ms = np.empty(min(n, _CHUNK))
    back = np.empty(min(n, _CHUNK))
    for lo in range(0, n, _CHUNK):
        v = values[lo : lo + _CHUNK]
        m, b = ms[: len(v)], back[: len(v)]
        np.multiply(v, 1000.0, out=m)
        np.rint(m, out=m)
        np.divide(m, 1000.0, out=b)
        if not np.array_equal(b, v):
            return None
        k = key[lo : lo + _CHUNK]
        k[:] = codes[lo : lo + _CHUNK]
        k <<= shift
        k |= m.astype(np.uint64)
    return key, bits


def sort_within_groups(
    values: np.ndarray, codes: np.ndarray, n_groups: int, counts: np.ndarray | None = None
) -> SortedGroups:
    """Sort ``values`` (no NaN) within groups ``codes`` with one sort of packed 64-bit keys.

    Parameters
    ----------
    values : numpy.ndarray
        float64 durations, none NaN.
    codes : numpy.ndarray
        Group code per value, in ``[0, n_groups)``.
    n_groups : int
    counts : numpy.ndarray, optional
        ``bincount(codes)`` when the caller has it already.

    Returns
    -------
    SortedGroups
    """
    values = np.asarray(values, dtype=np.float64)
    if counts is None:
        counts = np.bincount(codes, minlength=n_groups)
    counts = counts.astype(np.int64)
    starts = np.zeros(n_groups, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    code_bits = max(int(n_groups - 1).bit_length(), 1)
    fast = _pack_whole_ms(values, codes, code_bits)
    if fast is not None:
        key, bits = fast
        key.sort()
        key &= np.uint64((1 << bits) - 1)
        out = key.astype(np.float64)
        out /= 1000.0
        return SortedGroups(out, starts, counts)
    # General path: the rank of each value in one stable argsort is an exact order-preserving integer.
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(values), dtype=np.uint64)
    rank[order] = np.arange(len(values), dtype=np.uint64)
    bits = max(int(len(values) - 1).bit_length(), 1)
    key = codes.astype(np.uint64)
    key <<= np.uint64(bits)
    key |= rank
    del rank
    key.sort()
    key &= np.uint64((1 << bits) - 1)
    return SortedGroups(values[order[key.astype(np.intp)]], starts, counts)
