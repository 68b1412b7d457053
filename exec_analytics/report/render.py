"""Render a :class:`~exec_analytics.report.Report` as one self-contained HTML file or as Markdown.

The HTML comes from a Jinja2 template shipped with the package, with autoescaping on: every value from the
data (versions, RIDs, failure reasons, caller RIDs) is text, never markup, and its control and bidirectional
formatting characters are neutralised (:func:`exec_analytics.formatting.text`). Figures are drawn here, from
the report's data, and embedded as base64 PNG ``data:`` URLs with the CSS inline, so the file can be mailed
or archived and still shows everything. Markdown draws no figures. Numbers are written by
:mod:`exec_analytics.formatting`, so a value reads the same in both and in the terminal.
"""

from __future__ import annotations

import base64
import re
import textwrap
from collections.abc import Mapping
from typing import Any

import jinja2
import orjson
import pandas as pd

from .. import formatting as fmt
from ..plots import OKABE_ITO, VERDICT_COLORS
from .build import AT_RISK_BELOW, Kpi, Report, WhatChanged
from .figures import render_figures

__all__ = ["render_html", "render_json", "render_markdown", "render_summary"]

#: Width of the terminal summary, and of its longest resource name (longer ones are cut with "…").
_WIDTH, _NAME = 120, 32

_STATUS_COLORS = {"regressed": VERDICT_COLORS["regressed"], "budget exhausted": VERDICT_COLORS["regressed"],
                  "at risk": OKABE_ITO["orange"], "attention": OKABE_ITO["blue"],
                  "ok": VERDICT_COLORS["improved"]}  # fmt: skip
#: What each status means, under the summary and in the Markdown (the thresholds are the build's).
STATUS_NOTE = (f"Status: regressed (a new version regressed), budget exhausted (no error budget left), at risk "
               f"(less than {fmt.percent(AT_RISK_BELOW, 0)} of the period's budget left), attention (notable "
               "changes), ok.")  # fmt: skip
#: The interval of a total in explain_change's headline, "(+0.32 pp, interval +0.03 pp to +0.61 pp)".
_INTERVAL = re.compile(r" \(([^()]*), interval [^()]* to [^()]*\)")
#: Next to a percentile interval that collapsed because the API reports the resource's durations to the second.
WHOLE_SECONDS = "durations reported in whole seconds"


def _value(k: Kpi, which: str = "value") -> str:
    v = getattr(k, which)
    return {"count": fmt.count, "fraction": fmt.percent, "s": fmt.seconds}[k.unit](v)


def _interval(k: Kpi, confidence: float, whole_seconds: bool = False) -> str:
    if fmt.count(k.low) == fmt.MISSING or fmt.count(k.high) == fmt.MISSING:
        return ""
    show = fmt.percent if k.unit == "fraction" else fmt.seconds
    # Whole-second durations make order-statistic intervals collapse to one value: say why it is not precision.
    collapsed = k.unit == "s" and k.low == k.high and k.value >= 1 and float(k.value).is_integer()
    why = f"; {WHOLE_SECONDS}" if whole_seconds and collapsed else ""
    return f"{fmt.level(confidence)} CI {show(k.low)} – {show(k.high)}{why}"


def _not_over(report: Report) -> str:
    """The warning of a period that is not over when the report was built, or ""."""
    if not report.in_progress:
        return ""
    return (f"This period is not over: it ends {fmt.timestamp(report.end)}, after this report was built "
            f"({fmt.timestamp(report.generated_at)}); its figures will still change.")  # fmt: skip


def _change(k: Kpi) -> str:
    if fmt.count(k.change) == fmt.MISSING:
        return "no comparison"
    return fmt.pp_change(k.change) if k.unit == "fraction" else fmt.signed_percent(k.change)


def _change_class(k: Kpi) -> str:
    """``worse``/``better`` only for changes backed by non-overlapping intervals; volume is neutral."""
    if k.unit == "count" or not k.significant:
        return "neutral"
    return "worse" if k.change > 0 else "better"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _metric_value(row: Any, which: str) -> str:
    v = row[f"{which}_value"]
    metric = str(row["metric"])
    if metric.startswith("failure_rate"):
        return fmt.percent(v)
    if metric == "distribution":
        return f"{float(v):.3f}" if fmt.count(v) != fmt.MISSING else fmt.MISSING
    return fmt.seconds(v)


def _metric_change(row: Mapping[str, Any], column: str = "contribution") -> str:
    """A change of a metric (a cause's contribution, a change point's shift): pp for rates, else seconds."""
    show = fmt.pp_change if str(row["metric"]) == "failure_rate" else fmt.signed_seconds
    return show(row[column])


def _metric_level(row: Mapping[str, Any], column: str) -> str:
    """A metric's value (a rate or seconds) from a cause or change-point row."""
    return (fmt.percent if str(row["metric"]) == "failure_rate" else fmt.seconds)(row[column])


def _cause_part(row: Mapping[str, Any]) -> str:
    """Which part of the change a cause row is: ``mix caller_rid X``, ``within version 1.4.0 (timeout)``."""
    if row["component"] == "total":
        return "total"
    if not isinstance(row["segment"], str):
        # A percentile's within and mix parts are not per segment: within is the change at the previous mix.
        return "within (at the previous mix)" if row["component"] == "within" else "mix"
    by = "version" if row["by"] == "resource_version" else fmt.text(row["by"])
    reason = row["failure_reason"]
    detail = f" ({fmt.text(reason)})" if isinstance(reason, str) else ""
    return f"{row['component']} {by} {fmt.text(row['segment'])}{detail}"


def _share_move(row: Mapping[str, Any]) -> str:
    """A segment's share of executions, previous period -> this one (only mix segments and versions have one)."""
    before, now = fmt.percent(row["share_previous"], 0), fmt.percent(row["share_period"], 0)
    return fmt.MISSING if fmt.MISSING in (before, now) else f"{before} → {now}"


def _position(report: Report, rid: str) -> int:
    """1-based position of a resource's section (its anchors are numbered, not named after data)."""
    return next(i for i, sec in enumerate(report.resources, 1) if sec.rid == rid)


def _held_still(row: Mapping[str, Any]) -> bool:
    """A percentile's change point whose values read the same on both sides (durations in whole seconds)."""
    return str(row["metric"]) != "failure_rate" and fmt.seconds(row["value_before"]) == fmt.seconds(row["value_after"])


def _shift_levels(row: Mapping[str, Any]) -> str:
    """A change point's before → after: the metric's values, or what moved when those read the same."""
    if _held_still(row):
        before, after = fmt.percent(row["share_above_before"]), fmt.percent(row["share_above_after"])
        if fmt.MISSING in (before, after):
            return f"{fmt.seconds(row['value_before'])} before and after"
        return f"above {fmt.seconds(row['value_before'])}: {before} → {after}"
    return f"{_metric_level(row, 'value_before')} → {_metric_level(row, 'value_after')}"


def _shift_size(row: Mapping[str, Any]) -> str:
    """A change point's shift: in pp of the share above the earlier value when the percentile held still."""
    if not _held_still(row):
        return _metric_change(row, "change")
    before, after = float(row["share_above_before"]), float(row["share_above_after"])
    if before == before and after == after:  # both known (not NaN)
        return fmt.pp_change(after - before)
    return f"x{float(row['adjusted_ratio']):.2f} at a fixed mix"


def _moment_interval(row: Mapping[str, Any]) -> str:
    low, high = fmt.timestamp(row["moment_low"]), fmt.timestamp(row["moment_high"])
    return low if low == high else f"{low} – {high}"


def _inert(value: Any) -> Any:
    """Every ``{{ value }}`` of the template: text made inert before autoescaping; numbers untouched."""
    return fmt.text(value) if isinstance(value, str) else value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("exec_analytics.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_inert,
    )
    env.filters.update(count=fmt.count, pct=fmt.percent, secs=fmt.seconds, kpi_value=_value, kpi_interval=_interval,
                       kpi_change=_change, change_class=_change_class, signed_pct=fmt.signed_percent,
                       signed_pp=fmt.pp_change, ts=fmt.timestamp, b64=_b64, text=fmt.text, effect=fmt.effect,
                       metric_name=fmt.metric_name, metric_value=_metric_value, level=fmt.level,
                       metric_change=_metric_change, metric_level=_metric_level, cause_part=_cause_part,
                       moment_interval=_moment_interval, share_move=_share_move, shift_levels=_shift_levels,
                       shift_size=_shift_size)  # fmt: skip
    env.globals.update(verdict_colors=VERDICT_COLORS, status_colors=_STATUS_COLORS, no_reason=fmt.NO_REASON,
                       no_caller=fmt.NO_CALLER, status_note=STATUS_NOTE, distribution_note=fmt.DISTRIBUTION_NOTE,
                       not_over=_not_over, position=_position)  # fmt: skip
    return env


def render_html(report: Report, *, figures: Mapping[str, Mapping[str, bytes]] | None = None) -> str:
    """The report as one self-contained HTML document, its figures drawn from the report's data.

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.
    figures : mapping, optional
        The figures if already drawn by :func:`~exec_analytics.report.render_figures` for this report
        (they are drawn here otherwise).

    Returns
    -------
    str
        HTML5 with inline CSS and the figures of :func:`~exec_analytics.report.render_figures` embedded as
        base64 PNG; no scripts and no external requests. All data values are escaped and made inert.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_html: report must be a Report, got {type(report).__name__}")
    template = _environment().get_template("report.html.j2")
    drawn = render_figures(report) if figures is None else figures
    return template.render(report=report, figures={sec.rid: drawn.get(sec.rid, {}) for sec in report.resources})


def _md_escape(value: Any, missing: str = fmt.MISSING) -> str:
    """Text for a Markdown table cell or line: no markup, links, HTML or control characters survive."""
    # Entities rather than backslashes for HTML's characters: a Markdown renderer that passes raw HTML through
    # still shows them as text.
    text = fmt.text(value, missing).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|":
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


#: The fleet's What-changed list of a report from a summary: nothing was computed, so nothing is claimed.
_SUMMARY_NO_CHANGES = (
    "Not known from a summary: what changed is attributed and located on each execution's time, caller, version "
    "and reason. Drill down into a resource with the command under its heading."
)


def _md_what_changed(w: WhatChanged, basis: str) -> list[str]:
    """The What-changed lines of one resource in Markdown: the attribution's sentences, then each shift."""
    e = _md_escape
    out = ["**What changed**", ""]
    if basis == "summary":  # nothing was computed: say so, never "nothing changed"
        return [*out, f"Not known from a summary: {e(w.note)}.", ""]
    if not w.changed:
        shifts = ("the only shifts within this period recur" if len(w.change_points)
                  else "no metric shifted within this period")  # fmt: skip
        out += ["Nothing changed: no part of the change on the previous period is distinguishable from noise, "
                f"and {shifts}.", ""]  # fmt: skip
    if w.note:
        out += [f"No attribution: {e(w.note)}.", ""]
    out += [f"- {e(t)}" for t in w.sentences] + [f"- {e(t)}" for t in w.moments]
    return [*out, ""] if w.sentences or w.moments else out


def render_markdown(report: Report) -> str:
    """The report's findings as Markdown, for chat and email (no figures are drawn).

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.

    Returns
    -------
    str
        Markdown: title, period, a summary table when there are several resources, then per resource its
        KPIs with change on the previous period, error budget, notable changes, what changed (the attribution's
        sentences and the shifts within the period; with several resources, those that changed, ranked, under
        the summary table), new versions with verdicts, top failing callers and failure reasons. Data values are
        escaped and made inert.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_markdown: report must be a Report, got {type(report).__name__}")
    e = _md_escape
    ts = fmt.timestamp
    out = [f"# {e(report.title)}", "",
           f"Period {ts(report.start)} – {ts(report.end)}, compared with {ts(report.previous_start)} – "
           f"{ts(report.previous_end)}. SLO {fmt.level(report.slo)} succeeded; intervals are "
           f"{fmt.level(report.confidence)}.", ""]  # fmt: skip
    if report.in_progress:
        out += [f"> **{_not_over(report)}**", ""]
    if report.needs_rows:
        out += [f"> {e(report.needs_rows)}", ""]
    if len(report.resources) > 1:
        out += ["| resource | status | executions | failure rate | p95 | budget left | new versions |",
                "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in report.summary.itertuples():
            out.append(f"| {e(r.name)} | {e(r.status)} | {fmt.count(r.executions)} "
                       f"({fmt.signed_percent(r.executions_change)}) | {fmt.percent(r.failure_rate)} "
                       f"({fmt.pp_change(r.failure_rate_change)}) | {fmt.seconds(r.p95)} "
                       f"({fmt.signed_percent(r.p95_change)}) | {fmt.percent(r.budget_remaining, 0)} "
                       f"| {e(r.new_versions or fmt.MISSING)} |")  # fmt: skip
        out += ["", STATUS_NOTE, "", "## What changed", ""]
        if report.basis == "summary":
            out.append(_SUMMARY_NO_CHANGES)
        elif len(report.changed):
            out += [f"{i}. **{e(c.name)}**: {e(c.headline)}" for i, c in enumerate(report.changed.itertuples(), 1)]
        else:
            out.append("Nothing changed in any resource.")
        out.append("")
    for sec in report.resources:
        rid = f"{e(sec.rid)} · " if sec.name != sec.rid else ""
        out += [f"## {e(sec.name)}", "", f"{rid}status: **{e(sec.status)}**", ""]
        if sec.drill_down:
            # A code span shows the command as typed; backticks cannot occur in it (RIDs and ISO times).
            out += [f"Drill down (this resource's window alone): `{fmt.text(sec.drill_down).replace('`', '')}`", ""]
        if len(report.resources) == 1:  # with several, the note is under the summary table
            out += [STATUS_NOTE, ""]
        out += ["| metric | this period | previous | change |", "|---|---:|---:|---:|"]
        for k in sec.kpis:
            interval = _interval(k, report.confidence, sec.whole_seconds)
            ci = f" ({interval})" if interval else ""
            out.append(f"| {k.name} | {_value(k)}{ci} | {_value(k, 'previous')} | {_change(k)} |")
        b = sec.budget
        alerts = f"; alerts: {', '.join(b.alerts)}" if b.alerts else ""
        if "burn-rate alerts" in sec.left_out:
            alerts = f"; alerts not known: {e(sec.left_out['burn-rate alerts'])}"
        out += ["", f"**Error budget:** {fmt.percent(b.remaining, 0)} left ({fmt.count(b.bad)} bad of "
                f"{fmt.count(b.executions)}; SLI {fmt.percent(b.sli)}, SLO {fmt.level(b.slo)}){alerts}",
                ""]  # fmt: skip
        if sec.notable:
            out += ["**Notable changes**", ""] + [f"- {e(n)}" for n in sec.notable] + [""]
        out += _md_what_changed(sec.what_changed, report.basis)
        if sec.new_versions:
            out += ["**New versions**", ""]
            for v in sec.new_versions:
                main = {m: x for m, x in v.verdicts.items() if not m.startswith("failure_rate[")}
                detail = ", ".join(f"{e(fmt.metric_name(m))}: {e(x)}" for m, x in main.items())
                out.append(f"- {e(v.version)} vs {e(v.baseline)}: **{e(v.verdict)}**"
                           + (f" ({detail})" if detail else "") + (f" — {e(v.note)}" if v.note else ""))  # fmt: skip
            if any("distribution" in v.verdicts for v in sec.new_versions):
                out.append(f"- {e(fmt.DISTRIBUTION_NOTE)}")
            out.append("")
        for part in ("new versions", "duration distribution", "callers", "failure reasons"):
            if part in sec.left_out:
                out += [f"**No {part}:** {e(sec.left_out[part])}.", ""]
        if len(sec.callers):
            out += ["**Top failing callers**", "", "| caller | executions | failures | failure rate |",
                    "|---|---:|---:|---:|"]  # fmt: skip
            for c in sec.callers.itertuples():
                caller = report.names.get(str(c.caller_rid), c.caller_rid)
                out.append(f"| {e(caller, fmt.NO_CALLER)} | {fmt.count(c.executions)} | "
                           f"{fmt.count(c.failures)} | {fmt.percent(c.rate)} |")  # fmt: skip
            out.append("")
        if len(sec.reasons):
            out += ["**Failure reasons**", "", "| reason | failures | share |", "|---|---:|---:|"]
            for r in sec.reasons.itertuples():
                flag = " (new)" if getattr(r, "new", False) else ""
                out.append(f"| {e(r.failure_reason, fmt.NO_REASON)}{flag} | {fmt.count(r.failures)} | "
                           f"{fmt.percent(r.share, 1)} |")  # fmt: skip
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _cut(value: Any, width: int) -> str:
    text = fmt.text(value, "")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_summary(report: Report) -> str:
    """The report's headline for a terminal: the period, then one line per resource.

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.

    Returns
    -------
    str
        Plain text: a line with the period, the comparison period and the SLO, then a table with columns
        ``resource``, ``status``, ``executions`` (with change on the previous period), ``failure rate`` (with
        change in percentage points), ``p95`` (with relative change) and ``budget left``; then a line per
        resource with new versions and their verdicts; then a line per resource that changed, ranked as in
        :attr:`Report.changed`, with its headline (without the total's interval). A period that is not over
        is said so under the first line, and a report from a summary what it leaves out. Data values are made
        inert; no line is longer than 120 characters.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_summary: report must be a Report, got {type(report).__name__}")
    s = report.summary

    def with_change(value: str, show: Any, change: Any) -> list[str]:
        return [f"{show(v)} ({change(c)})" for v, c in zip(s[value], s[f"{value}_change"], strict=True)]

    columns = {
        "resource": [_cut(v, _NAME) for v in s["name"]],
        "status": [str(v) for v in s["status"]],
        "executions": with_change("executions", fmt.count, fmt.signed_percent),
        "failure rate": with_change("failure_rate", fmt.percent, fmt.pp_change),
        "p95": with_change("p95", fmt.seconds, fmt.signed_percent),
        "budget left": [fmt.percent(b, 0) for b in s["budget_remaining"]],
    }
    table = fmt.table(columns, left=("resource", "status"))
    head = (f"{fmt.timestamp(report.start)} – {fmt.timestamp(report.end)}, compared with "
            f"{fmt.timestamp(report.previous_start)} – {fmt.timestamp(report.previous_end)}; "
            f"SLO {fmt.level(report.slo)}")  # fmt: skip
    versions = [_cut(f"{name} · new versions {v}", _WIDTH) for name, v in zip(s["name"], s["new_versions"],
                strict=True) if v]  # fmt: skip
    # A terminal line is short: the headline keeps the total's change but not its interval (the report has it).
    changed = [_cut(f"{_cut(c.name, _NAME)} · changed: " + _INTERVAL.sub(r" (\1)", str(c.headline)), _WIDTH)
               for c in report.changed.itertuples()]  # fmt: skip
    not_over = textwrap.wrap(_not_over(report), _WIDTH)
    basis = textwrap.wrap(fmt.text(report.needs_rows, ""), _WIDTH)
    return "\n".join([_cut(head, _WIDTH), *not_over, *basis, table, *versions, *changed]) + "\n"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-ready records: times as ISO-8601 UTC text, missing values as None."""
    if not len(frame):
        return []
    out: list[dict[str, Any]] = orjson.loads(frame.to_json(orient="records", date_format="iso", date_unit="ms"))
    return out


def _json_number(x: Any) -> float | None:
    value = fmt.count(x)
    return None if value == fmt.MISSING else float(x)


def _json_time(t: Any) -> str | None:
    return None if t is None or pd.isna(t) else pd.Timestamp(t).tz_convert("UTC").isoformat().replace("+00:00", "Z")


def render_json(report: Report) -> str:
    """The report's data as JSON, for scripts (no figures are drawn).

    Parameters
    ----------
    report : Report
        From :func:`~exec_analytics.report.build_weekly_report`.

    Returns
    -------
    str
        One JSON object: ``title``, ``start``, ``end``, ``previous_start``, ``previous_end``,
        ``generated_at`` (ISO-8601 UTC), ``in_progress`` (bool), ``slo``, ``confidence`` (fractions),
        ``source`` (URL or null) and ``resources``: one object per resource with ``rid``, ``name``,
        ``status``, ``whole_seconds``, ``kpis`` (``name``, ``unit``, ``value``, ``previous``, ``change``,
        ``low``, ``high``, ``significant``), ``budget`` (``slo``, ``executions``, ``bad``, ``sli``,
        ``sli_low``, ``sli_high``, ``consumed``, ``remaining``, ``alerts``), ``new_versions`` (``version``,
        ``baseline``, ``first_seen``, ``share``, ``verdict``, ``verdicts``, ``note``), ``notable`` (text),
        ``callers`` and ``reasons`` (the rows of those tables), ``what_changed`` (``changed``, ``sentences``,
        ``causes`` and ``change_points`` (rows), ``moments``, ``note``); ``changed`` lists the resources that
        changed, ranked (:attr:`Report.changed`). A report from a summary adds ``basis`` (``"summary"``),
        ``needs_rows`` (text) and ``rank_error``, and per resource ``left_out`` (part -> why it is missing) and
        ``drill_down`` (the command). Rates and shares are fractions, durations
        seconds, missing numbers null. The schema is documented in ``docs/cli-json.md``.
    """
    if not isinstance(report, Report):
        raise TypeError(f"render_json: report must be a Report, got {type(report).__name__}")
    resources = []
    for sec in report.resources:
        b = sec.budget
        resources.append({
            "rid": sec.rid, "name": sec.name, "status": sec.status, "whole_seconds": sec.whole_seconds,
            "kpis": [{"name": k.name, "unit": k.unit, "value": _json_number(k.value),
                      "previous": _json_number(k.previous), "change": _json_number(k.change),
                      "low": _json_number(k.low), "high": _json_number(k.high), "significant": k.significant}
                     for k in sec.kpis],
            "budget": {"slo": b.slo, "executions": b.executions, "bad": b.bad, "sli": _json_number(b.sli),
                       "sli_low": _json_number(b.sli_low), "sli_high": _json_number(b.sli_high),
                       "consumed": _json_number(b.consumed), "remaining": _json_number(b.remaining),
                       "alerts": list(b.alerts)},
            "new_versions": [{"version": v.version, "baseline": v.baseline, "first_seen": _json_time(v.first_seen),
                              "share": _json_number(v.share), "verdict": v.verdict, "verdicts": dict(v.verdicts),
                              "note": v.note} for v in sec.new_versions],
            "notable": list(sec.notable),
            "callers": _records(sec.callers),
            "reasons": _records(sec.reasons),
            "what_changed": {"changed": sec.what_changed.changed, "sentences": list(sec.what_changed.sentences),
                             "causes": _records(sec.what_changed.causes),
                             "change_points": _records(sec.what_changed.change_points),
                             "moments": list(sec.what_changed.moments), "note": sec.what_changed.note},
        })  # fmt: skip
        if report.basis == "summary":
            resources[-1].update({"left_out": dict(sec.left_out), "drill_down": sec.drill_down})
    out = {"title": report.title, "start": _json_time(report.start), "end": _json_time(report.end),
           "previous_start": _json_time(report.previous_start), "previous_end": _json_time(report.previous_end),
           "generated_at": _json_time(report.generated_at), "in_progress": report.in_progress, "slo": report.slo,
           "confidence": report.confidence, "source": report.source, "changed": _records(report.changed),
           "resources": resources}  # fmt: skip
    if report.basis == "summary":  # a report from rows keeps exactly its documented keys
        out.update({"basis": report.basis, "needs_rows": report.needs_rows,
                    "rank_error": _json_number(report.rank_error)})  # fmt: skip
    return orjson.dumps(out, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"
