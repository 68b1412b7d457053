"""How numbers, times and data values read in every output: the HTML report, Markdown and the terminal.

One function per kind of value, so the same value prints the same everywhere. Every function accepts a
missing value (None, NaN, NaT) and returns :data:`MISSING` for it rather than ``"nan"``.

- :func:`count`: ``12,345``; :func:`plural`: ``"1 failure"``, ``"2,001 failures"``.
- :func:`percent` (a fraction: ``0.0123`` -> ``1.23%``), :func:`signed_percent` (a relative change:
  ``-0.003`` -> ``-0.3%``), :func:`pp_change` (a difference of fractions: ``0.0025`` -> ``+0.25 pp``).
- :func:`seconds`: a duration with a unit that fits it (``850 ms``, ``2.00 s``, ``5.0 min``, ``1.5 h``).
- :func:`timestamp`: ``2026-11-17 09:00 UTC``; :func:`level`: a confidence level or SLO (``95%``, ``99.9%``).
- :func:`effect`: a version-comparison effect with its interval (``×1.40 [1.37, 1.43]``, ``+0.25 pp [...]``).
- :func:`metric_name`: a comparison metric in words (``failure_rate[timeout]`` -> ``failure rate (timeout)``).
- :func:`table`: columns of formatted cells as a plain-text table for a terminal; :func:`frame`: a DataFrame
  with chosen columns written with their units, for notebooks.
- :func:`text`: a data value (version, RID, failure reason) as inert text: control, NUL and bidirectional
  formatting characters cannot reorder, hide or corrupt what is around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = [
    "DISTRIBUTION_NOTE",
    "MISSING",
    "NO_CALLER",
    "NO_REASON",
    "count",
    "effect",
    "frame",
    "level",
    "metric_name",
    "percent",
    "plural",
    "pp_change",
    "seconds",
    "signed_percent",
    "signed_seconds",
    "table",
    "text",
    "timestamp",
]

#: Shown for a missing number or time.
MISSING = "–"
#: Shown for a failure without a reason and for executions without a caller.
NO_REASON = "(no reason)"
NO_CALLER = "(no caller)"
#: What the ``distribution`` metric of a version comparison means, for every place that shows it.
DISTRIBUTION_NOTE = (
    "distribution (P(slower)): the chance that a candidate execution is slower than a baseline one from the "
    "same callers; 0.500 is no change, and its effect is that chance minus 0.5 (above 0 = slower)"
)

# C0/C1 controls (NUL, ESC, backspace ...) and the Unicode bidirectional formatting characters (embeddings,
# overrides, isolates and marks). Each becomes U+FFFD, so its presence stays visible but it acts on nothing.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE_CONTROLS = re.compile("[\t\n\r\u2028\u2029]+")
# The analysis names a failure without a reason "<no reason>" inside metric names; the report says it in words.
_ANALYSIS_NO_REASON = "<no reason>"


def _number(x: Any) -> float | None:
    """``x`` as a finite float, or None when it is missing or not a number."""
    if x is None or isinstance(x, bool):
        return None
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def count(x: Any) -> str:
    """A count with thousands separators: ``12345`` -> ``"12,345"``.

    Returns
    -------
    str
        The rounded count, or :data:`MISSING`.
    """
    v = _number(x)
    return MISSING if v is None else f"{v:,.0f}"


def plural(n: Any, word: str, many: str | None = None) -> str:
    """A count and a noun that agrees with it: ``plural(1, "failure")`` -> ``"1 failure"``.

    Parameters
    ----------
    n : int
        The count.
    word : str
        The singular noun.
    many : str, optional
        The plural when it is not ``word + "s"`` (``plural(2, "stretch", "stretches")``).

    Returns
    -------
    str
        ``"<count> <noun>"`` with the count as :func:`count` writes it.
    """
    v = _number(n)
    noun = word if v is not None and abs(v) == 1 else (many or word + "s")
    return f"{count(n)} {noun}"


def percent(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.0123`` -> ``"1.23%"``.

    Parameters
    ----------
    x : float
        A fraction (1 = 100%).
    digits : int
        Decimals.

    Returns
    -------
    str
        The percentage, or :data:`MISSING`.
    """
    v = _number(x)
    if v is None:
        return MISSING
    out = f"{100 * v:.{digits}f}%"
    return out[1:] if _is_zero(out) and out.startswith("-") else out  # never "-0.00%"


def _is_zero(formatted: str) -> bool:
    return not any(c in "123456789" for c in formatted)


def signed_percent(x: Any) -> str:
    """A relative change with its sign: ``0.123`` -> ``"+12%"``, ``-0.003`` -> ``"-0.3%"``.

    Changes under 10% keep one decimal, so a small change never reads as ``"-0%"``; a change that rounds
    to zero reads ``"0.0%"``.

    Returns
    -------
    str
        The signed percentage, or :data:`MISSING`.
    """
    v = _number(x)
    if v is None:
        return MISSING
    digits = 1 if abs(100 * v) < 9.95 else 0
    out = f"{100 * v:+.{digits}f}%"
    return out[1:] if _is_zero(out) else out


def pp_change(x: Any) -> str:
    """A difference of two fractions in percentage points: ``0.0025`` -> ``"+0.25 pp"``.

    Returns
    -------
    str
        The signed difference with two decimals (``"0.00 pp"`` when it rounds to zero), or :data:`MISSING`.
    """
    v = _number(x)
    if v is None:
        return MISSING
    out = f"{100 * v:+.2f} pp"
    return out[1:] if _is_zero(out) else out


# Duration units from the smallest: (name, seconds per unit, upper bound in seconds).
_UNITS = (("ms", 1e-3, 1.0), ("s", 1.0, 60.0), ("min", 60.0, 3600.0), ("h", 3600.0, math.inf))


def seconds(x: Any) -> str:
    """A duration in the unit that fits it, to three significant figures below a minute.

    ``0.0042`` -> ``"4.20 ms"``, ``0.85`` -> ``"850 ms"``, ``2`` -> ``"2.00 s"``, ``45.25`` -> ``"45.2 s"``,
    ``300`` -> ``"5.0 min"``, ``5400`` -> ``"1.5 h"``.

    Returns
    -------
    str
        The duration with its unit, or :data:`MISSING` (also for a negative duration).
    """
    v = _number(x)
    if v is None or v < 0:
        return MISSING
    if v == 0:
        return "0 s"
    for name, size, upper in _UNITS:
        scaled = v / size
        if name in ("ms", "s"):
            # Three significant figures; decide the unit on the rounded value so 0.9996 s reads "1.00 s".
            digits = max(0, 2 - math.floor(math.log10(float(f"{scaled:.3g}"))))
            if float(f"{scaled:.{digits}f}") * size < upper:
                return f"{scaled:.{digits}f} {name}"
        elif round(scaled, 1) * size < upper:
            return f"{scaled:.1f} {name}"
    return f"{v / 3600:.1f} h"  # pragma: no cover - the last unit has no upper bound


def signed_seconds(x: Any) -> str:
    """A change of duration with its sign, in the unit that fits it: ``0.041`` -> ``"+41.0 ms"``.

    Returns
    -------
    str
        ``"+"`` or ``"-"`` then :func:`seconds` of its size (``"0 s"`` for zero), or :data:`MISSING`.
    """
    v = _number(x)
    if v is None:
        return MISSING
    size = seconds(abs(v))
    return size if _is_zero(size) else ("-" if v < 0 else "+") + size


_seconds = seconds  # for frame(), whose keyword of the same name hides it


def level(fraction: float) -> str:
    """A confidence level or an SLO target as a percentage, all its digits and no more: ``0.95`` -> ``"95%"``,
    ``0.9995`` -> ``"99.95%"``.

    Returns
    -------
    str
        The level, for labels such as ``"95% CI"`` and ``"SLO 99.9%"``.
    """
    return f"{100 * float(fraction):.10g}%"


def timestamp(t: Any) -> str:
    """A time as ``"2026-11-17 09:00 UTC"`` (minutes, UTC).

    Returns
    -------
    str
        The time, or :data:`MISSING`.
    """
    if t is None or (not isinstance(t, str) and pd.isna(t)):
        return MISSING
    ts = pd.Timestamp(t)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return str(ts.strftime("%Y-%m-%d %H:%M UTC"))


def text(x: Any, missing: str = MISSING) -> str:
    """A data value as inert text: controls and bidirectional formatting characters neutralised.

    Parameters
    ----------
    x : object
        A version, RID, failure reason, caller or display name.
    missing : str
        Returned for a missing value (None, NA), e.g. :data:`NO_REASON`.

    Returns
    -------
    str
        ``str(x)`` with tabs and line breaks as single spaces and every other control character (NUL, ESC
        ...) and bidirectional formatting character (U+200E/F, U+202A-U+202E, U+2066-U+2069) as U+FFFD.
    """
    if x is None or (not isinstance(x, (str, list, tuple, dict)) and pd.isna(x)):
        return missing
    return _UNSAFE.sub("\ufffd", _WHITESPACE_CONTROLS.sub(" ", str(x)))


def metric_name(metric: Any) -> str:
    """A comparison metric in words: ``failure_rate`` -> ``"failure rate"``, ``failure_rate[timeout]`` ->
    ``"failure rate (timeout)"``, ``distribution`` -> ``"distribution (P(slower))"``; ``p95`` stays.

    Returns
    -------
    str
        The metric's name in words, its failure reason made inert with :func:`text`.
    """
    name = text(metric)
    if name.startswith("failure_rate[") and name.endswith("]"):
        reason = name[len("failure_rate[") : -1]
        return f"failure rate ({NO_REASON[1:-1] if reason == _ANALYSIS_NO_REASON else reason})"
    return {"failure_rate": "failure rate", "distribution": "distribution (P(slower))"}.get(name, name)


def effect(row: Mapping[str, Any] | pd.Series[Any]) -> str:
    """A version-comparison effect with its interval, in the units the verdict was judged on.

    Parameters
    ----------
    row : mapping
        One row of :func:`~exec_analytics.analysis.compare_versions` output (``metric``, ``judged_on``,
        ``ratio``/``ratio_low``/``ratio_high``, ``difference``/``difference_low``/``difference_high``).

    Returns
    -------
    str
        ``"×1.40 [1.37, 1.43]"`` for a ratio, ``"+0.25 pp [+0.10, +0.40]"`` for a failure-rate difference,
        ``"+0.120 [+0.080, +0.160]"`` for the distribution's P(slower) - 0.5, or ``"no estimate"``.
    """
    on = "ratio" if row["judged_on"] == "ratio" else "difference"
    vals = [_number(row[on + suffix]) for suffix in ("", "_low", "_high")]
    if any(v is None for v in vals):
        return "no estimate"
    v, lo, hi = (float(x) for x in vals if x is not None)
    if on == "ratio":
        return f"×{v:.2f} [{lo:.2f}, {hi:.2f}]"
    if str(row["metric"]).startswith("failure_rate"):
        return f"{_signed(100 * v, 2)} pp [{_signed(100 * lo, 2)}, {_signed(100 * hi, 2)}]"
    return f"{_signed(v, 3)} [{_signed(lo, 3)}, {_signed(hi, 3)}]"


def _signed(x: float, digits: int) -> str:
    """``x`` with its sign, except a value that rounds to zero: ``0.00``, never ``-0.00`` or ``+0.00``."""
    out = f"{x:+.{digits}f}"
    return out[1:] if _is_zero(out) else out


def table(columns: Mapping[str, Sequence[str]], *, left: Collection[str] = ()) -> str:
    """Columns of already formatted cells as a plain-text table: a header line, then one line per row.

    Parameters
    ----------
    columns : mapping
        Header -> cells, every column as long as the others.
    left : collection of str
        Headers of the columns aligned left (text); the others are aligned right (numbers line up).

    Returns
    -------
    str
        Lines joined by newlines, columns two spaces apart, no trailing spaces or final newline.
    """
    heights = {len(cells) for cells in columns.values()}
    if len(heights) > 1:
        raise ValueError(f"table: columns differ in length ({sorted(heights)})")
    widths = {name: max([len(name), *(len(c) for c in cells)]) for name, cells in columns.items()}

    def line(cells: Sequence[tuple[str, str]]) -> str:
        return "  ".join(c.ljust(widths[n]) if n in left else c.rjust(widths[n]) for n, c in cells).rstrip()

    rows = zip(*columns.values(), strict=True)
    return "\n".join([line([(n, n) for n in columns]), *(line(list(zip(columns, r, strict=True))) for r in rows)])


def _percent_digits(v: Any, digits: int) -> str:
    return percent(v, digits)


def frame(
    data: pd.DataFrame,
    *,
    percent: Collection[str] = (),
    seconds: Collection[str] = (),
    counts: Collection[str] = (),
    digits: int = 2,
) -> pd.DataFrame:
    """A table for reading (in a notebook): the named columns written with their units, the others as they are.

    Parameters
    ----------
    data : DataFrame
        Any table, e.g. analysis output.
    percent : collection of str
        Columns of fractions, written as :func:`percent` does (``0.0123`` -> ``1.23%``).
    seconds : collection of str
        Columns of durations in seconds, written as :func:`seconds` does (``0.85`` -> ``850 ms``).
    counts : collection of str
        Columns of counts, written as :func:`count` does (``12345`` -> ``12,345``).
    digits : int
        Decimals of the percentages.

    Returns
    -------
    pandas.DataFrame
        A copy of ``data`` with the same index and columns; the named columns hold text (missing values as
        :data:`MISSING`).
    """
    named = [*percent, *seconds, *counts]
    missing = [c for c in named if c not in data.columns]
    if missing:
        raise ValueError(f"frame: no column(s) {', '.join(map(str, missing))}")
    out: pd.DataFrame = data.copy()
    writers: list[tuple[Collection[str], Callable[[Any], str]]] = [
        (percent, lambda v: _percent_digits(v, digits)), (seconds, _seconds), (counts, count)]  # fmt: skip
    for columns, write in writers:
        for c in columns:
            out[c] = [write(v) for v in data[c].to_numpy(dtype=object)]
    return out
