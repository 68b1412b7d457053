"""Plotting helpers: each draws analysis output on one matplotlib Axes and returns it.

Every helper follows seaborn's contract: ``plot_<thing>(data, *, ax=None, **kwargs) -> Axes``; with no
``ax`` it draws on the current Axes (``plt.gca()``). Nothing here calls ``plt.show()`` or touches
``matplotlib.rcParams``: styling is passed per artist, so a notebook's own style is left alone.

The statistics come from :mod:`exec_analytics.analysis` (rates, intervals, percentiles, effects, verdicts);
the helpers only draw them. The one exception is :func:`plot_duration_distribution`, which draws the
empirical distribution of the executions table itself, as ``seaborn.ecdfplot`` does.

Text drawn from the data (versions, callers, failure reasons, group names) is shown literally: a ``$`` is a
dollar sign, never the start of mathtext, and control characters are neutralised, so no value can break a
figure (with the default ``text.usetex=False``).

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies); verdicts
keep the same colour in every figure and in the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from . import formatting as fmt

__all__ = [
    "CHANGE_INTERVAL_GID",
    "CHANGE_POINT_GID",
    "LOW_VOLUME_LABEL",
    "OKABE_ITO",
    "PALETTE",
    "VERDICT_COLORS",
    "effect_position",
    "plot_caller_breakdown",
    "plot_duration_distribution",
    "plot_duration_percentiles",
    "plot_error_budget",
    "plot_failure_rate",
    "plot_version_comparison",
    "short_rid",
]

#: The Okabe-Ito colour-blind-safe palette, by name.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Order in which series take colours (yellow last: it is hard to read on white).
PALETTE: tuple[str, ...] = tuple(
    OKABE_ITO[c] for c in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "black")
)

#: Colour of each verdict of :func:`exec_analytics.analysis.compare_versions`.
VERDICT_COLORS: dict[str, str] = {
    "regressed": OKABE_ITO["vermillion"],
    "improved": OKABE_ITO["bluish_green"],
    "equivalent": OKABE_ITO["blue"],
    "inconclusive": OKABE_ITO["orange"],
    "insufficient data": "#888888",
}

_GRID: dict[str, Any] = {"color": "#dddddd", "linewidth": 0.6}
_PERCENTILE_COLORS = {"p50": PALETTE[0], "p90": PALETTE[5], "p95": PALETTE[1], "p99": PALETTE[3]}
# Line style and marker per percentile, so that they are told apart without colour (in print, or by anyone).
_PERCENTILE_STYLES = {"p50": ("-", "o"), "p90": ("-.", "D"), "p95": ("--", "s"), "p99": (":", "^")}
#: Legend entry of the hatched bars of :func:`plot_caller_breakdown` (``low_volume`` callers).
LOW_VOLUME_LABEL = "few executions: rate uncertain"
# Behind a label drawn over data: lines pass under it instead of through it.
_LABEL_BOX: dict[str, Any] = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85}


_LEGEND_TITLES = {"resource_version": "version", "resource_rid": "resource", "caller_rid": "caller",
                  "caller_kind": "kind of caller", "failure_reason": "failure reason"}  # fmt: skip


def _legend_title(column: str | None) -> str | None:
    """A legend title in words for a column name (``resource_rid`` -> ``resource``)."""
    if column is None:
        return None
    return _literal(_LEGEND_TITLES.get(column, column.replace("_", " ")))


def _shown(value: Any, names: Mapping[str, str] | None) -> str:
    """A data value as drawn: its display name when ``names`` has one, else the value itself."""
    key = fmt.text(value)
    return _literal(names[key] if names and key in names else value)


def _literal(value: Any, missing: str = fmt.MISSING) -> str:
    """A data value as matplotlib text shown as is: inert characters, and every ``$`` escaped from mathtext."""
    # matplotlib shows "\$" as "$" and treats a text as mathtext only when it holds unescaped "$" signs.
    return fmt.text(value, missing).replace("$", r"\$")


def _axes(ax: Axes | None) -> Axes:
    return plt.gca() if ax is None else ax


def _style(ax: Axes, *, ygrid: bool = True, xgrid: bool = False) -> None:
    """Light grid and no top/right spines, set on this Axes only."""
    ax.grid(False)
    if ygrid:
        ax.yaxis.grid(True, which="major", **_GRID)
    if xgrid:
        ax.xaxis.grid(True, which="major", **_GRID)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _require(data: pd.DataFrame, columns: Sequence[str], func: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{func}: data must be a pandas DataFrame, got {type(data).__name__}")
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ValueError(f"{func}: data lacks column(s) {', '.join(missing)}")


def _times(values: Any) -> np.ndarray:
    """UTC timestamps as naive datetime64 (matplotlib's date axis shows them as UTC)."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    out: np.ndarray = idx.tz_convert("UTC").tz_localize(None).to_numpy()
    return out


def _date_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=9)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.set_xlabel("time (UTC)")


def short_rid(rid: Any, length: int = 8) -> str:
    """A short, still recognisable label for a RID: ``workshop.module …a1b2c3d4``.

    Parameters
    ----------
    rid : object
        A RID, or anything else (returned as text; NA becomes ``"(no caller)"``).
    length : int
        Characters kept from the end of the locator.

    Returns
    -------
    str
    """
    if rid is None or (not isinstance(rid, str) and pd.isna(rid)):
        return fmt.NO_CALLER
    text = str(rid)
    parts = text.split(".")
    if len(parts) >= 5 and parts[0] == "ri":
        locator = ".".join(parts[4:])
        tail = locator if len(locator) <= length else "…" + locator[-length:]
        return f"{parts[1]}.{parts[3]} {tail}"
    return text


def _rollout_times(rollouts: Any, data_start: Any | None) -> list[tuple[str, pd.Timestamp]]:
    """(version, first-seen time) pairs from a mapping or from :func:`~exec_analytics.analysis.version_adoption`.

    From an adoption table, a version's rollout is the first period it ran in; versions already running in
    the table's first period were rolled out before it and are not marked.
    """
    if rollouts is None:
        return []
    if isinstance(rollouts, Mapping):
        pairs = [(str(v), pd.Timestamp(t)) for v, t in rollouts.items()]
    else:
        _require(rollouts, ["resource_version", "period_start"], "rollouts")
        ran = rollouts[rollouts["executions"] > 0] if "executions" in rollouts.columns else rollouts
        first = ran.groupby(ran["resource_version"].astype(str))["period_start"].min()
        start = ran["period_start"].min()
        pairs = [(v, pd.Timestamp(t)) for v, t in first.items() if t > start]
    pairs = [(v, t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")) for v, t in pairs]
    if data_start is not None:
        pairs = [(v, t) for v, t in pairs if t >= data_start]
    return sorted(pairs, key=lambda p: p[1])


def _mark_rollouts(ax: Axes, pairs: list[tuple[str, pd.Timestamp]]) -> None:
    lo, hi = ax.get_xlim()
    near = 0.08 * (hi - lo)  # about the width of a version label on a report figure
    previous, level = -math.inf, 0
    for version, when in pairs:
        x = _times([when])[0]
        ax.axvline(x, color=OKABE_ITO["reddish_purple"], linestyle="--", linewidth=1.2, zorder=1)
        # Rollouts close together get their labels one under the other instead of on top of each other.
        at = float(mdates.date2num(x))  # type: ignore[no-untyped-call]
        level = level + 1 if at - previous < near else 0
        previous = at
        ax.annotate(
            _literal(version), xy=(x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3 - 13 * level),
            textcoords="offset points", ha="left", va="top", fontsize=9, color=OKABE_ITO["reddish_purple"],
            bbox=_LABEL_BOX, zorder=5,
        )  # fmt: skip


#: Columns of :func:`~exec_analytics.analysis.change_points` output that the plots draw.
_CHANGE_COLUMNS = ("metric", "period_start", "moment_low", "moment_high")
#: ``gid`` of the artists a change point draws, so that a figure's change points can be found again.
CHANGE_POINT_GID, CHANGE_INTERVAL_GID = "change-point", "change-point-interval"


def _mark_change_points(ax: Axes, change_points: pd.DataFrame | None, colors: Mapping[str, str]) -> bool:
    """Draw each change point of the metrics in ``colors``: a band over its moment's interval, a line at it.

    Returns whether anything was drawn (the caller then shows a legend that explains the marks).
    """
    if change_points is None:
        return False
    _require(change_points, _CHANGE_COLUMNS, "change_points")
    rows = change_points[change_points["metric"].astype(str).isin(list(colors))]
    if not len(rows):
        return False
    lo, hi = ax.get_xlim()
    # Date numbers, not datetime64: mixing the two in axvspan makes matplotlib rescale the axis.
    at = mdates.date2num(_times(rows["period_start"]))  # type: ignore[no-untyped-call]
    low = mdates.date2num(_times(rows["moment_low"]))  # type: ignore[no-untyped-call]
    high = mdates.date2num(_times(rows["moment_high"]))  # type: ignore[no-untyped-call]
    labelled: set[str] = set()
    for metric, x, x0, x1 in zip(rows["metric"].astype(str), at, low, high, strict=True):
        c = colors[metric]
        first = metric not in labelled
        labelled.add(metric)
        name = _literal(fmt.metric_name(metric))
        ax.axvspan(float(x0), float(x1), color=c, alpha=0.15, linewidth=0, zorder=0, gid=CHANGE_INTERVAL_GID,
                   label=f"{name} change: interval for its moment" if first else "_nolegend_")  # fmt: skip
        ax.axvline(float(x), color=c, linestyle=(0, (1, 1.5)), linewidth=1.6, zorder=2, gid=CHANGE_POINT_GID,
                   label=f"{name} change point" if first else "_nolegend_")  # fmt: skip
    ax.set_xlim(lo, hi)
    return True


def _series(data: pd.DataFrame, hue: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    if hue is None:
        return [(None, data)]
    _require(data, [hue], "hue")
    return [(str(k), g) for k, g in data.groupby(hue, observed=True, sort=True)]


def plot_failure_rate(
    data: pd.DataFrame,
    *,
    ax: Axes | None = None,
    hue: str | None = None,
    rollouts: pd.DataFrame | Mapping[str, Any] | None = None,
    band: bool = True,
    label: str | None = None,
    color: str | None = None,
    names: Mapping[str, str] | None = None,
    change_points: pd.DataFrame | None = None,
) -> Axes:
    """Failure rate over time with its confidence band, version rollouts and change points marked.

    Parameters
    ----------
    data : DataFrame
        :func:`~exec_analytics.analysis.failure_rate` output with ``freq`` (``period_start``, ``rate``,
        ``rate_low``, ``rate_high``).
    ax : Axes, optional
        Where to draw; the current Axes by default.
    hue : str, optional
        A ``by`` column of ``data``: one line per value (e.g. ``"resource_rid"``).
    rollouts : DataFrame or mapping, optional
        Version rollouts to mark with vertical lines: :func:`~exec_analytics.analysis.version_adoption`
        output (each version's first period, except those already running in the first period) or a mapping
        ``version -> time``.
    band : bool
        Draw the interval ``[rate_low, rate_high]`` as a shaded band.
    label, color : str, optional
        Legend label and colour of a single series.
    names : mapping, optional
        Display names of the ``hue`` values (e.g. resource RID -> name); others are shown as they are.
    change_points : DataFrame, optional
        :func:`~exec_analytics.analysis.change_points` output; its ``failure_rate`` rows are drawn as a
        dotted line at ``period_start`` over a band from ``moment_low`` to ``moment_high`` (the interval for
        the moment), explained in the legend.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes: one line per series (x = period start, y = ``rate`` as a fraction shown in percent) and,
        with ``band``, one ``PolyCollection`` per series; per change point, a band and a line whose ``gid``
        is :data:`CHANGE_INTERVAL_GID` and :data:`CHANGE_POINT_GID`.
    """
    _require(data, ["period_start", "rate", "rate_low", "rate_high"], "plot_failure_rate")
    ax = _axes(ax)
    for i, (key, part) in enumerate(_series(data.sort_values("period_start"), hue)):
        c = color if (color and hue is None) else PALETTE[i % len(PALETTE)]
        x = _times(part["period_start"])
        name = label if key is None else _shown(key, names)
        ax.plot(x, part["rate"].to_numpy(dtype=float), color=c, linewidth=1.8, label=name or "failure rate",
                marker="o" if len(part) <= 14 else None, markersize=3.5)  # fmt: skip
        if band:
            ax.fill_between(x, part["rate_low"].to_numpy(dtype=float), part["rate_high"].to_numpy(dtype=float),
                            color=c, alpha=0.2, linewidth=0, step=None)  # fmt: skip
    start = pd.Timestamp(data["period_start"].min()) if len(data) else None
    _mark_rollouts(ax, _rollout_times(rollouts, start))
    changes = _mark_change_points(ax, change_points, {"failure_rate": OKABE_ITO["vermillion"]})
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("failure rate (% of executions)")
    _date_axis(ax)
    _style(ax)
    if hue is not None or label or changes:
        # Beside the plot, as for the percentiles: inside, it hides lines and bands.
        ax.legend(frameon=False, fontsize=9, title=_legend_title(hue), title_fontsize=9, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # fmt: skip
    return ax


def plot_duration_percentiles(
    data: pd.DataFrame,
    *,
    ax: Axes | None = None,
    percentiles: Sequence[str] = ("p50", "p95", "p99"),
    log: bool = True,
    rollouts: pd.DataFrame | Mapping[str, Any] | None = None,
    change_points: pd.DataFrame | None = None,
) -> Axes:
    """Duration percentiles over time, one line per percentile, change points marked.

    Parameters
    ----------
    data : DataFrame
        :func:`~exec_analytics.analysis.duration_percentiles` (or ``summarize``) output with ``freq``: a
        ``period_start`` column and the percentile columns.
    ax : Axes, optional
        Where to draw; the current Axes by default.
    percentiles : sequence of str
        Columns to draw, e.g. ``("p50", "p95", "p99")``; those missing from ``data`` are skipped.
    log : bool
        Logarithmic duration axis (percentiles often differ by an order of magnitude).
    rollouts : DataFrame or mapping, optional
        Version rollouts to mark, as in :func:`plot_failure_rate`.
    change_points : DataFrame, optional
        :func:`~exec_analytics.analysis.change_points` output; its rows of the drawn percentiles are marked
        as in :func:`plot_failure_rate`, in the colour of their percentile.

    Returns
    -------
    matplotlib.axes.Axes
        One line per percentile, labelled with its name (x = period start, y = seconds); change points as
        in :func:`plot_failure_rate`.
    """
    _require(data, ["period_start"], "plot_duration_percentiles")
    cols = [p for p in percentiles if p in data.columns]
    if not cols:
        raise ValueError(f"plot_duration_percentiles: data has none of the columns {', '.join(percentiles)}")
    ax = _axes(ax)
    part = data.sort_values("period_start")
    x = _times(part["period_start"])
    for i, col in enumerate(cols):
        style, marker = _PERCENTILE_STYLES.get(col, ("-", "o"))
        ax.plot(x, part[col].to_numpy(dtype=float), label=col, linewidth=1.8, linestyle=style,
                color=_PERCENTILE_COLORS.get(col, PALETTE[i % len(PALETTE)]), marker=marker,
                markevery=max(1, len(part) // 12), markersize=4)  # fmt: skip
    start = pd.Timestamp(data["period_start"].min()) if len(data) else None
    _mark_rollouts(ax, _rollout_times(rollouts, start))
    _mark_change_points(ax, change_points, {c: _PERCENTILE_COLORS.get(c, PALETTE[i % len(PALETTE)])
                                            for i, c in enumerate(cols)})  # fmt: skip
    if log:
        ax.set_yscale("log")
        _duration_ticks(ax.yaxis)
    ax.set_ylabel("duration" + (" (log scale)" if log else " (s)"))
    _date_axis(ax)
    _style(ax)
    # Beside the plot: inside it would cover the highest line (the one that matters), and above it would sit
    # where a title goes.
    ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
              handlelength=3.0, title="percentile", title_fontsize=9)  # fmt: skip
    return ax


def _log_percent(value: float, _pos: Any = None) -> str:
    # PercentFormatter picks one number of decimals for the whole axis, which prints 0.01% as "0%".
    return f"{100 * value:g}%" if value > 0 else ""


def _seconds(value: float, _pos: Any = None) -> str:
    """A duration tick with its unit: ``100 ms``, ``1 s``, ``10 s``, ``2 min``, ``1 h``."""
    if value <= 0 or not math.isfinite(value):
        return ""
    for unit, size in (("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        # Minutes and hours only for whole ones: a decade tick at 100 s reads "100 s", not "1.67 min".
        whole = size < 60 or abs(value / size - round(value / size)) < 1e-9
        if value >= size * 0.9995 and whole:
            return f"{value / size:.3g} {unit}"
    return f"{value * 1e6:.2g} µs"


def _duration_ticks(axis: Axis) -> None:
    """Readable ticks on a log duration axis: 1, 2 and 5 of each decade when up to three decades are shown,
    else the decades alone, each with its unit; minor ticks unlabelled (matplotlib labels them in scientific
    notation when the axis spans less than a decade)."""
    ax = axis.axes
    # get_xlim/get_ylim apply pending autoscaling; the axis' own view interval can be stale before a draw.
    lo, hi = ax.get_xlim() if axis is ax.xaxis else ax.get_ylim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    subs = (1.0, 2.0, 5.0) if decades <= 3.0 else (1.0,)
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(_seconds))
    axis.set_minor_formatter(NullFormatter())


def plot_duration_distribution(
    data: pd.DataFrame,
    *,
    ax: Axes | None = None,
    by: str | None = "resource_version",
    complementary: bool = False,
    log: bool = True,
    order: Sequence[str] | None = None,
    min_executions: int = 1,
    names: Mapping[str, str] | None = None,
) -> Axes:
    """The empirical distribution of durations per group (ECDF, or its complement to show the tail).

    Parameters
    ----------
    data : DataFrame
        The executions table (``duration_s`` and the ``by`` column); NaN durations are left out.
    ax : Axes, optional
        Where to draw; the current Axes by default.
    by : str or None
        One curve per value of this column (``resource_version`` by default); None draws one curve.
    complementary : bool
        Draw the share of executions *slower* than each duration (1 - ECDF) on a log axis, so the slowest
        1%, 0.1% ... stay visible instead of being squeezed against 100%.
    log : bool
        Logarithmic duration axis.
    order : sequence of str, optional
        Groups to draw, in this order (default: the column's category order, groups with data only).
    min_executions : int
        Skip groups with fewer known durations.
    names : mapping, optional
        Display names of the groups (e.g. resource RID -> name with ``by="resource_rid"``).

    Returns
    -------
    matplotlib.axes.Axes
        One step line per group, labelled ``"<group> (n=<count>)"``: x are the sorted durations in seconds,
        y is ``i / n`` for the i-th (1-based) duration, or ``1 - (i - 1) / n`` with ``complementary``.
    """
    _require(data, ["duration_s", *([by] if by else [])], "plot_duration_distribution")
    ax = _axes(ax)
    values = data["duration_s"].to_numpy(dtype="float64")
    if by is None:
        groups: list[tuple[str, np.ndarray]] = [("all", values)]
    else:
        col = data[by]
        if order is not None:
            keys = [str(c) for c in order]
        elif isinstance(col.dtype, pd.CategoricalDtype):
            keys = [str(c) for c in col.cat.categories]
        else:
            keys = [str(c) for c in pd.unique(col.dropna())]
        as_text = np.asarray(col.astype("string").fillna("\x00<NA>"), dtype=object)
        groups = [(key, values[as_text == key]) for key in keys]
    drawn = 0
    for name, vals in groups:
        vals = np.sort(vals[~np.isnan(vals)])
        n = len(vals)
        if n < max(min_executions, 1):
            continue
        # With complementary: the share at least this slow, so the slowest execution keeps 1/n rather than 0.
        y = 1.0 - np.arange(n) / n if complementary else np.arange(1, n + 1) / n
        ax.plot(vals, y, drawstyle="steps-post", linewidth=1.6, color=PALETTE[drawn % len(PALETTE)],
                label=f"{_shown(name, names)} (n={n:,})")  # fmt: skip
        drawn += 1
    if log:
        ax.set_xscale("log")
        _duration_ticks(ax.xaxis)
    ax.set_xlabel("duration" + (" (log scale)" if log else " (s)"))
    if complementary:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_log_percent))
        ax.set_ylabel("executions slower than x (%, log scale)")
    else:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_ylim(0, 1.01)
        ax.set_ylabel("executions at most x (%)")
    _style(ax, xgrid=True)
    if drawn:
        ax.legend(frameon=False, fontsize=9, title=_legend_title(by), title_fontsize=9)
    return ax


def effect_position(data: pd.DataFrame) -> pd.DataFrame:
    """Where :func:`plot_version_comparison` places each effect: on the scale of its practical threshold.

    Each metric is judged on its own scale (latency ratios, failure-rate differences, P(slower) - 0.5), so
    the forest plot puts them on one axis by dividing by the threshold the verdict used: ``log(ratio) /
    log(1 + threshold)`` for ratios (the improvement bound ``1 / (1 + threshold)`` lands on -1) and
    ``difference / threshold`` for differences. +1 and -1 are then the regression and improvement
    thresholds of every row, and a verdict can be read off the axis.

    Parameters
    ----------
    data : DataFrame
        :func:`~exec_analytics.analysis.compare_versions` or ``version_regressions`` output.

    Returns
    -------
    pandas.DataFrame
        ``x``, ``x_low``, ``x_high`` (float64, NaN where there is no estimate), same index as ``data``.
    """
    _require(data, ["judged_on", "threshold", "ratio", "ratio_low", "ratio_high", "difference", "difference_low",
                    "difference_high"], "effect_position")  # fmt: skip
    thr = data["threshold"].to_numpy(dtype=float)
    on_ratio = (data["judged_on"] == "ratio").to_numpy()
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for suffix in ("", "_low", "_high"):
            r = data[f"ratio{suffix}"].to_numpy(dtype=float)
            d = data[f"difference{suffix}"].to_numpy(dtype=float)
            out["x" + suffix] = np.where(on_ratio, np.log(r) / np.log1p(thr), d / thr)
    positions: pd.DataFrame = pd.DataFrame(out, index=data.index)
    return positions


def plot_version_comparison(
    data: pd.DataFrame,
    *,
    ax: Axes | None = None,
    annotate: bool = True,
    legend: bool | None = None,
) -> Axes:
    """Forest plot of version-comparison effects with intervals, threshold lines and verdict colours.

    Parameters
    ----------
    data : DataFrame
        :func:`~exec_analytics.analysis.compare_versions` output (or ``version_regressions`` rows, which
        may hold several candidate/baseline pairs).
    ax : Axes, optional
        Where to draw; the current Axes by default.
    annotate : bool
        Write each effect in its own units beside the row (``×1.40 [1.37, 1.43]`` for ratios, percentage
        points for failure rates).
    legend : bool, optional
        Add a legend of the verdict colours present, beside the plot. By default only without ``annotate``:
        the annotations already name each verdict in its colour, where the legend would go.

    Returns
    -------
    matplotlib.axes.Axes
        One errorbar container per row, top row first: the marker at ``effect_position(data)["x"]`` with
        whiskers to ``x_low``/``x_high``, coloured by ``verdict``; dashed lines at -1 and +1 (the practical
        thresholds) and a solid line at 0 (no change). Rows without an estimate get a grey cross at 0.
    """
    _require(data, ["metric", "verdict", "baseline", "candidate"], "plot_version_comparison")
    ax = _axes(ax)
    pos = effect_position(data)
    rows = data.reset_index(drop=True)
    pos = pos.reset_index(drop=True)
    pairs = rows[["baseline", "candidate"]].astype(str).drop_duplicates()
    several = len(pairs) > 1
    n = len(rows)
    y = np.arange(n)[::-1].astype(float)  # first row at the top
    labels = []
    seen: set[str] = set()
    for i in range(n):
        r = rows.iloc[i]
        verdict = str(r["verdict"])
        c = VERDICT_COLORS.get(verdict, "#888888")
        x, lo, hi = pos.loc[i, "x"], pos.loc[i, "x_low"], pos.loc[i, "x_high"]
        pair = f"{r['candidate']} vs {r['baseline']} · " if several else ""
        labels.append(_literal(pair + fmt.metric_name(r["metric"])))
        if np.isfinite(x) and np.isfinite(lo) and np.isfinite(hi):
            ax.errorbar([x], [y[i]], xerr=[[x - lo], [hi - x]], fmt="o", color=c, ecolor=c, elinewidth=2.2,
                        capsize=3, markersize=6,
                        label=_literal(verdict) if verdict not in seen else "_nolegend_")  # fmt: skip
        else:
            ax.plot([0.0], [y[i]], marker="x", color="#888888", linestyle="none",
                    label=_literal(verdict) if verdict not in seen else "_nolegend_")  # fmt: skip
        seen.add(verdict)
        if annotate:
            ax.annotate(_literal(f"{fmt.effect(r)}  {verdict}"), xy=(1.0, y[i]), xycoords=("axes fraction", "data"),
                        xytext=(6, 0), textcoords="offset points", va="center", ha="left", fontsize=9,
                        color=c)  # fmt: skip
    ax.axvline(0, color="#333333", linewidth=1)
    for t in (-1, 1):
        ax.axvline(t, color="#555555", linewidth=1, linestyle="--")
    finite = pos[["x_low", "x_high"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    span = max(2.0, float(np.abs(finite).max()) * 1.1) if finite.size else 2.0
    ax.set_xlim(-span, span)
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("effect in units of its practical threshold (±1 = threshold; >0 worse)")
    _style(ax, ygrid=False, xgrid=True)
    if (not annotate if legend is None else legend) and seen:
        ax.legend(frameon=False, fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="verdict",
                  title_fontsize=9, handletextpad=0.3, borderaxespad=0.0)  # fmt: skip
    return ax


def plot_caller_breakdown(
    data: pd.DataFrame,
    *,
    ax: Axes | None = None,
    reference: float | None = None,
    labels: Mapping[str, str] | None = None,
    include_other: bool = False,
) -> Axes:
    """Failure rate per caller as horizontal bars with Clopper-Pearson intervals, annotated with volume.

    Parameters
    ----------
    data : DataFrame
        :func:`~exec_analytics.analysis.caller_breakdown` output (ranked; ``rank`` 1 is drawn at the top).
    ax : Axes, optional
        Where to draw; the current Axes by default.
    reference : float, optional
        A rate to mark with a vertical line, e.g. the overall failure rate from
        :func:`~exec_analytics.analysis.failure_rate`.
    labels : mapping, optional
        Display names for caller RIDs; others are shortened with :func:`short_rid`.
    include_other : bool
        Also draw the ``(other)`` row that collects the callers outside the top.

    Returns
    -------
    matplotlib.axes.Axes
        One bar per caller (bar width = ``rate``), top-ranked at the top, with error bars to
        ``rate_low``/``rate_high``; low-volume callers are hatched, with a legend entry
        (:data:`LOW_VOLUME_LABEL`) saying so.
    """
    _require(data, ["rank", "caller_rid", "executions", "failures", "rate", "rate_low", "rate_high"],
             "plot_caller_breakdown")  # fmt: skip
    ax = _axes(ax)
    rows = data if include_other else data[data["rank"] > 0]
    rows = rows.reset_index(drop=True)
    n = len(rows)
    y = np.arange(n)[::-1].astype(float)
    rate = rows["rate"].to_numpy(dtype=float)
    low = rows["rate_low"].to_numpy(dtype=float)
    high = rows["rate_high"].to_numpy(dtype=float)
    low_volume = rows["low_volume"].to_numpy(dtype=bool) if "low_volume" in rows.columns else np.zeros(n, bool)
    bars = ax.barh(y, rate, height=0.65, color=[PALETTE[2] if lv else PALETTE[0] for lv in low_volume],
                   hatch=None, edgecolor="white")  # fmt: skip
    for bar, lv in zip(bars, low_volume, strict=True):
        if lv:
            bar.set_hatch("//")
    ax.errorbar(rate, y, xerr=[rate - low, high - rate], fmt="none", ecolor="#333333", elinewidth=1, capsize=2)
    names = []
    for rid in rows["caller_rid"].astype(object):
        key = None if rid is None or (not isinstance(rid, str) and pd.isna(rid)) else str(rid)
        names.append(_literal(labels[key] if (labels and key is not None and key in labels) else short_rid(key)))
    ax.set_yticks(y, names)
    for yi, hi_, ex, fa in zip(y, high, rows["executions"], rows["failures"], strict=True):
        ax.annotate(f"{int(fa):,} of {int(ex):,}", xy=(hi_ if np.isfinite(hi_) else 0, yi), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8, color="#444444", bbox=_LABEL_BOX,
                    zorder=5)  # fmt: skip
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, color=OKABE_ITO["vermillion"], linestyle="--", linewidth=1.2,
                   label=f"overall {fmt.percent(reference)}")  # fmt: skip
    handles, _ = ax.get_legend_handles_labels()
    if low_volume.any():
        # The hatching means something: the legend says what.
        handles.append(Patch(facecolor=PALETTE[2], edgecolor="white", hatch="//", label=LOW_VOLUME_LABEL))
    if handles:
        ax.legend(handles=handles, frameon=False, fontsize=9, loc="lower right")
    top = float(np.nanmax(high)) if n and np.isfinite(high).any() else 0.01
    ax.set_xlim(0, top * 1.3 if top > 0 else 0.01)
    ax.set_ylim(-0.6, n - 0.4)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.set_xlabel("failure rate (% of the caller's executions; label: failures of executions)")
    _style(ax, ygrid=False, xgrid=True)
    return ax


def plot_error_budget(
    data: pd.DataFrame,
    *,
    ax: Axes | None = None,
    ideal: bool = True,
    label: str | None = None,
) -> Axes:
    """Burn-down of the error budget: the share of the period's budget still left over time.

    Parameters
    ----------
    data : DataFrame
        A burn-down table such as :func:`exec_analytics.analysis.budget_burndown` returns: ``period_end``
        (Timestamp) and ``remaining`` (float, 1 = untouched, 0 = spent, negative = overspent), in time
        order; optionally ``period_start`` of the first row as the start of the period.
    ax : Axes, optional
        Where to draw; the current Axes by default.
    ideal : bool
        Also draw the straight line from 100% to 0% that a service failing at exactly the SLO would follow.
    label : str, optional
        Legend label of the burn-down line.

    Returns
    -------
    matplotlib.axes.Axes
        The burn-down as a line (x = ``period_end``, y = ``remaining``), starting at 100% at the start of the
        first period when ``period_start`` is given; a line at 0 and, with ``ideal``, the dashed reference.
    """
    _require(data, ["period_end", "remaining"], "plot_error_budget")
    ax = _axes(ax)
    part = data.sort_values("period_end")
    x = list(_times(part["period_end"]))
    y = list(part["remaining"].to_numpy(dtype=float))
    if "period_start" in part.columns and len(part):
        x = [_times(part["period_start"].iloc[:1])[0], *x]
        y = [1.0, *y]
    c = PALETTE[0]
    ax.plot(x, y, color=c, linewidth=2, label=label or "budget remaining")
    if len(y):
        final = y[-1]
        # Left of the last point and boxed: the reference lines end at the same place and would cross it.
        ax.annotate(f"{fmt.percent(final, 0)} left", xy=(x[-1], final), xytext=(-8, 10), textcoords="offset points",
                    ha="right", fontsize=9, color=OKABE_ITO["vermillion"] if final < 0 else c, bbox=_LABEL_BOX,
                    zorder=5)  # fmt: skip
    if ideal and len(x) >= 2:
        ax.plot([x[0], x[-1]], [1.0, 0.0], color="#777777", linestyle="--", linewidth=1,
                label="failing at exactly the SLO")  # fmt: skip
    ax.axhline(0, color=OKABE_ITO["vermillion"], linewidth=1)
    lowest = min([0.0, *[v for v in y if np.isfinite(v)]])
    ax.set_ylim(min(lowest * 1.1 - 0.05, -0.05), 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel("error budget left (% of the period's)")
    _date_axis(ax)
    _style(ax)
    ax.legend(frameon=False, fontsize=9, loc="lower left")
    return ax
