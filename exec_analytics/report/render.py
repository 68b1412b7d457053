"""Render a :class:`~exec_analytics.report.Report` as one self-contained HTML file or as Markdown.

The HTML comes from a Jinja2 template shipped with the package, with autoescaping on: every value from the
data (versions, RIDs, failure reasons, caller RIDs) is text, never markup. Figures are embedded as base64 PNG
``data:`` URLs and the CSS is inline, so the file can be mailed or archived and still shows everything.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import jinja2
import pandas as pd

from ..plots import VERDICT_COLORS
from .build import Kpi, Report

__all__ = ["render_html", "render_markdown"]

_STATUS_COLORS = {"regressed": VERDICT_COLORS["regressed"], "over budget": VERDICT_COLORS["regressed"],
                  "attention": VERDICT_COLORS["inconclusive"], "ok": VERDICT_COLORS["improved"]}  # fmt: skip


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _count(x: Any) -> str:
    return f"{float(x):,.0f}" if _finite(x) else "–"


def _pct(x: Any, digits: int = 2) -> str:
    return f"{100 * float(x):.{digits}f}%" if _finite(x) else "–"


def _secs(x: Any) -> str:
    if not _finite(x):
        return "–"
    x = float(x)
    if x < 1:
        return f"{1000 * x:.0f} ms"
    return f"{x:.2f} s" if x < 10 else f"{x:,.1f} s"


def _value(k: Kpi, which: str = "value") -> str:
    v = getattr(k, which)
    return {"count": _count, "fraction": _pct, "s": _secs}[k.unit](v)


def _interval(k: Kpi) -> str:
    if not (_finite(k.low) and _finite(k.high)):
        return ""
    fmt = _pct if k.unit == "fraction" else _secs
    return f"95% CI {fmt(k.low)} – {fmt(k.high)}"


def _change(k: Kpi) -> str:
    c = k.change
    if not _finite(c):
        return "no comparison"
    if k.unit == "fraction":
        return f"{100 * c:+.2f} pp"
    return f"{100 * c:+.0f}%"


def _change_class(k: Kpi) -> str:
    """``worse``/``better`` only for changes backed by non-overlapping intervals; volume is neutral."""
    if k.unit == "count" or not k.significant:
        return "neutral"
    return "worse" if k.change > 0 else "better"


def _signed_pct(x: Any) -> str:
    return f"{100 * float(x):+.0f}%" if _finite(x) else "–"


def _signed_pp(x: Any) -> str:
    return f"{100 * float(x):+.2f} pp" if _finite(x) else "–"


def _ts(t: Any) -> str:
    if t is None or (not isinstance(t, str) and pd.isna(t)):
        return "–"
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M UTC")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(x: Any, missing: str = "(none)") -> str:
    if x is None or (not isinstance(x, (str, list, dict)) and pd.isna(x)):
        return missing
    return str(x)


def _effect(row: Any) -> str:
    if row["judged_on"] == "ratio":
        if not _finite(row["ratio"]):
            return "–"
        return f"×{row['ratio']:.2f} [{row['ratio_low']:.2f}, {row['ratio_high']:.2f}]"
    if not _finite(row["difference"]):
        return "–"
    if str(row["metric"]).startswith("failure_rate"):
        d, lo, hi = (100 * row[c] for c in ("difference", "difference_low", "difference_high"))
        return f"{d:+.2f} pp [{lo:+.2f}, {hi:+.2f}]"
    return f"{row['difference']:+.3f} [{row['difference_low']:+.3f}, {row['difference_high']:+.3f}]"


def _metric_value(row: Any, which: str) -> str:
    v = row[f"{which}_value"]
    metric = str(row["metric"])
    if metric.startswith("failure_rate"):
        return _pct(v)
    if metric == "distribution":
        return f"{float(v):.3f}" if _finite(v) else "–"
    return _secs(v)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("exec_analytics.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(count=_count, pct=_pct, secs=_secs, kpi_value=_value, kpi_interval=_interval,
                       kpi_change=_change, change_class=_change_class, signed_pct=_signed_pct,
                       signed_pp=_signed_pp, ts=_ts, b64=_b64, text=_text, effect=_effect,
                       metric_value=_metric_value, finite=_finite)  # fmt: skip
    env.globals.update(verdict_colors=VERDICT_COLORS, status_colors=_STATUS_COLORS)
    return env


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document.

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.

    Returns
    -------
    str
        HTML5 with inline CSS and figures embedded as base64 PNG; no scripts and no external requests. All
        data values are escaped.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_html: report must be a Report, got {type(report).__name__}")
    template = _environment().get_template("report.html.j2")
    return template.render(report=report)


def _md_escape(value: Any) -> str:
    """Text for a Markdown table cell or line: no markup, links or HTML survive."""
    # Entities rather than backslashes for HTML's characters: a Markdown renderer that passes raw HTML through
    # still shows them as text.
    text = _text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|":
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


def render_markdown(report: Report) -> str:
    """The report's findings as Markdown, for chat and email (no figures).

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.

    Returns
    -------
    str
        Markdown: title, period, a summary table when there are several resources, then per resource its
        KPIs with week-over-week change, error budget, new versions with verdicts, notable changes, top
        failing callers and failure reasons. Data values are escaped.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_markdown: report must be a Report, got {type(report).__name__}")
    e = _md_escape
    out = [f"# {e(report.title)}", "",
           f"Period {_ts(report.start)} – {_ts(report.end)}, compared with {_ts(report.previous_start)} – "
           f"{_ts(report.previous_end)}. SLO {100 * report.slo:g}% succeeded.", ""]  # fmt: skip
    if len(report.resources) > 1:
        out += ["| resource | status | executions | failure rate | p95 | budget left | new versions |",
                "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in report.summary.itertuples():
            out.append(f"| {e(r.name)} | {e(r.status)} | {_count(r.executions)} ({_signed_pct(r.executions_change)}) "
                       f"| {_pct(r.failure_rate)} ({_signed_pp(r.failure_rate_change)}) | {_secs(r.p95)} "
                       f"({_signed_pct(r.p95_change)}) | {_pct(r.budget_remaining, 0)} "
                       f"| {e(r.new_versions or '–')} |")  # fmt: skip
        out.append("")
    for sec in report.resources:
        out += [f"## {e(sec.name)}", "", f"{e(sec.rid)} · status: **{e(sec.status)}**", ""]
        out += ["| metric | this period | previous | change |", "|---|---:|---:|---:|"]
        for k in sec.kpis:
            ci = f" ({_interval(k)})" if _interval(k) else ""
            out.append(f"| {k.name} | {_value(k)}{ci} | {_value(k, 'previous')} | {_change(k)} |")
        b = sec.budget
        out += ["", f"**Error budget:** {_pct(b.remaining, 0)} left ({b.bad:,} bad of {b.executions:,}; SLI "
                f"{_pct(b.sli)}, SLO {100 * b.slo:g}%)" + (f"; alerts: {', '.join(b.alerts)}" if b.alerts else ""),
                ""]  # fmt: skip
        if sec.notable:
            out += ["**Notable changes**", ""] + [f"- {e(n)}" for n in sec.notable] + [""]
        if sec.new_versions:
            out += ["**New versions**", ""]
            for v in sec.new_versions:
                detail = ", ".join(
                    f"{e(m)}: {e(x)}" for m, x in v.verdicts.items() if not m.startswith("failure_rate[")
                )
                out.append(f"- {e(v.version)} vs {e(v.baseline or '–')}: **{e(v.verdict)}**"
                           + (f" ({detail})" if detail else "") + (f" — {e(v.note)}" if v.note else ""))  # fmt: skip
            out.append("")
        if len(sec.callers):
            out += ["**Top failing callers**", "", "| caller | executions | failures | failure rate |",
                    "|---|---:|---:|---:|"]  # fmt: skip
            for c in sec.callers.itertuples():
                out.append(f"| {e(_text(c.caller_rid, '(no caller)'))} | {c.executions:,} | {c.failures:,} | "
                           f"{_pct(c.rate)} |")  # fmt: skip
            out.append("")
        if len(sec.reasons):
            out += ["**Failure reasons**", "", "| reason | failures | share |", "|---|---:|---:|"]
            for r in sec.reasons.itertuples():
                flag = " (new)" if getattr(r, "new", False) else ""
                out.append(
                    f"| {e(_text(r.failure_reason, '(no reason)'))}{flag} | {r.failures:,} | {_pct(r.share, 1)} |"
                )
            out.append("")
    return "\n".join(out).rstrip() + "\n"
