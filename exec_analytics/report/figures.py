"""The report's figures, drawn from a :class:`~exec_analytics.report.Report`'s data when it is rendered.

Each figure is a bare matplotlib ``Figure`` (no pyplot): nothing global is created or changed, and it works
under any backend. Every text drawn from the data goes through :mod:`exec_analytics.plots`, which shows it
literally (a ``$`` in a version or failure reason is a dollar sign, never mathtext).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .. import formatting as fmt
from .. import plots
from .build import Report, ResourceSection, VersionFinding

__all__ = ["render_figures"]


def _png(draw: Callable[[Axes], object], size: tuple[float, float]) -> bytes:
    fig = Figure(figsize=size, layout="constrained")
    draw(fig.subplots())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _title(ax: Axes, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=11)


def _shade(ax: Axes, start: pd.Timestamp) -> None:
    """Shade the report period (from ``start`` to the right edge) without moving the axis limits."""
    lo, hi = ax.get_xlim()
    # Both ends as date numbers: mixing a datetime64 and a float here makes matplotlib rescale the axis.
    x = float(mdates.date2num(pd.Timestamp(start).tz_convert("UTC").tz_localize(None)))  # type: ignore[no-untyped-call]
    ax.axvspan(x, hi, color="#000000", alpha=0.05, zorder=0)
    ax.set_xlim(lo, hi)


def _section_figures(report: Report, section: ResourceSection) -> dict[str, bytes]:
    if not section.kpi("executions").value > 0:
        return {}  # no executions in the period: nothing to draw
    level = fmt.level(report.confidence)
    rollouts = {v.version: v.first_seen for v in section.new_versions} or section.adoption
    moments = section.what_changed.change_points if len(section.what_changed.change_points) else None
    marks = "; dotted: change points" if moments is not None else ""

    def rate(ax: Axes) -> None:
        plots.plot_failure_rate(section.timeline, ax=ax, rollouts=rollouts, change_points=moments)
        _shade(ax, report.start)
        _title(ax, f"Failure rate with {level} interval (shaded: this period{marks})")

    def pct(ax: Axes) -> None:
        plots.plot_duration_percentiles(section.timeline, ax=ax, rollouts=rollouts, change_points=moments)
        _shade(ax, report.start)
        _title(ax, f"Duration percentiles (shaded: this period{marks})")

    def dist(ax: Axes) -> None:
        plots.plot_duration_distribution(section.durations, ax=ax, complementary=True, min_executions=20)
        _title(ax, "Duration tail by version, this period")

    def budget(ax: Axes) -> None:
        plots.plot_error_budget(section.budget.burndown, ax=ax)
        _title(ax, f"Error budget burn-down (SLO {fmt.level(section.budget.slo)})")

    def callers(ax: Axes) -> None:
        plots.plot_caller_breakdown(section.callers, ax=ax, reference=section.kpi("failure rate").value,
                                    labels=report.names)  # fmt: skip
        _title(ax, f"Top failing callers, this period ({level} intervals)")

    figs = {"failure_rate": _png(rate, (9.5, 3.4)), "duration_percentiles": _png(pct, (9.5, 3.4))}
    if len(section.durations):  # a report from a summary has no durations to draw (left_out says so)
        figs["duration_distribution"] = _png(dist, (9.5, 3.4))
    figs["error_budget"] = _png(budget, (9.5, 3.0))
    if len(section.callers):
        figs["callers"] = _png(callers, (9.5, 0.9 + 0.42 * len(section.callers)))
    for v in section.new_versions:
        if len(v.comparison):

            def forest(ax: Axes, v: VersionFinding = v) -> None:
                plots.plot_version_comparison(v.comparison, ax=ax)

            figs[f"version:{v.version}"] = _png(forest, (9.5, 1.0 + 0.36 * len(v.comparison)))
    return figs


def render_figures(report: Report) -> dict[str, dict[str, bytes]]:
    """Draw every figure of the report as PNG.

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.

    Returns
    -------
    dict
        Resource RID -> {figure name -> PNG bytes}. Names: ``failure_rate``, ``duration_percentiles``,
        ``duration_distribution`` (from rows only), ``error_budget``, ``callers`` (when a caller failed) and
        ``version:<version>`` per compared new version; a resource without executions in the period has none.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_figures: report must be a Report, got {type(report).__name__}")
    return {section.rid: _section_figures(report, section) for section in report.resources}
