"""Half-open ``[start, end)`` intervals of epoch milliseconds, and the UTC days they touch."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..timeutil import epoch_ms, to_utc

#: A half-open stretch of time, ``[start, end)``, in epoch milliseconds (UTC).
Interval = tuple[int, int]

DAY_MS = 86_400_000


def normalise(ivs: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-empty, non-overlapping, with touching intervals joined."""
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in ivs if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract(ivs: Iterable[Interval], cuts: Iterable[Interval]) -> list[Interval]:
    result = normalise(ivs)
    for c0, c1 in normalise(cuts):
        nxt: list[Interval] = []
        for a, b in result:
            if b <= c0 or a >= c1:
                nxt.append((a, b))
                continue
            if a < c0:
                nxt.append((a, c0))
            if b > c1:
                nxt.append((c1, b))
        result = nxt
    return result


def intersect(ivs: Iterable[Interval], other: Iterable[Interval]) -> list[Interval]:
    out = []
    for a, b in normalise(ivs):
        for c, d in normalise(other):
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                out.append((lo, hi))
    return normalise(out)


def iso(ms: int) -> str:
    text: str = pd.Timestamp(ms, unit="ms", tz="UTC").isoformat()
    return text.replace("+00:00", "Z")


def parse_iso(text: str) -> int:
    return epoch_ms(to_utc(text, "manifest time"))


def days_of(a: int, b: int) -> range:
    """Epoch days touched by ``[a, b)``."""
    return range(a // DAY_MS, (b - 1) // DAY_MS + 1)


def day_name(day: int) -> str:
    return str(np.datetime64(day, "D"))


def parse_day(name: str) -> int:
    """Epoch day of ``YYYY-MM-DD``."""
    return int(np.datetime64(name, "D").astype(np.int64))
