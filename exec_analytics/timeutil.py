"""UTC timestamps in and out of the API: one place that decides what a valid time is."""

from __future__ import annotations

from datetime import datetime
from typing import Union

import pandas as pd

__all__ = ["TimeLike", "epoch_ms", "format_api_time", "from_epoch_ms", "to_utc", "validate_window"]

#: Anything accepted as a time: ISO-8601 text with a zone, an aware datetime or Timestamp.
TimeLike = Union[str, datetime, pd.Timestamp]  # noqa: UP007 - a runtime alias must work on 3.10


def to_utc(value: object, name: str) -> pd.Timestamp:
    """Parse a timezone-aware time into a UTC ``Timestamp`` with millisecond resolution.

    Parameters
    ----------
    value : str, datetime or pandas.Timestamp
        Must carry a timezone (``Z`` or an offset). Naive times are rejected rather than guessed,
        because a silent local-time interpretation shifts every window by hours.
    name : str
        Parameter name for error messages.

    Returns
    -------
    pandas.Timestamp
        Timezone-aware (UTC), floored to the millisecond (the API's precision).

    Raises
    ------
    TypeError, ValueError
        On other types, unparseable strings or naive times.
    """
    if isinstance(value, bool) or not isinstance(value, (str, datetime, pd.Timestamp)):
        raise TypeError(f"{name} must be an ISO-8601 string, datetime or Timestamp, got {type(value).__name__}")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} {value!r} is not an ISO-8601 time: {exc}") from None
    if ts is pd.NaT:
        raise ValueError(f"{name} must be a time, got NaT")
    if ts.tzinfo is None:
        raise ValueError(
            f"{name} {value!r} has no timezone; pass UTC explicitly (e.g. '2026-11-01T00:00Z' or "
            "datetime(..., tzinfo=timezone.utc))"
        )
    # pandas-stubs type tz_convert/floor as Any; the annotation states what pandas returns.
    utc: pd.Timestamp = ts.tz_convert("UTC").floor("ms")
    return utc


def validate_window(start: object, end: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Parse and check a half-open window ``[start, end)``.

    Returns
    -------
    tuple of pandas.Timestamp
        ``(start, end)`` in UTC.

    Raises
    ------
    ValueError
        If ``end`` is not after ``start``.
    """
    s, e = to_utc(start, "start"), to_utc(end, "end")
    if e <= s:
        raise ValueError(f"end ({e.isoformat()}) must be after start ({s.isoformat()}); windows are [start, end)")
    return s, e


def format_api_time(ts: pd.Timestamp) -> str:
    """Format a UTC timestamp the way Foundry does: ``2024-09-25T17:29:35.974Z``."""
    ts = ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def epoch_ms(ts: pd.Timestamp) -> int:
    """Milliseconds since the Unix epoch of a UTC timestamp (exact: integer arithmetic)."""
    return int(ts.value // 1_000_000)


def from_epoch_ms(ms: int) -> pd.Timestamp:
    """The UTC timestamp ``ms`` milliseconds after the Unix epoch."""
    ts: pd.Timestamp = pd.Timestamp(ms, unit="ms", tz="UTC")
    return ts
