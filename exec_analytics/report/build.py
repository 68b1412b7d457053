"""Build the weekly reliability report as plain data: KPIs, budget, new versions, callers, reasons, changes.

Everything statistical comes from :mod:`exec_analytics.analysis`; this module picks the periods, calls the
analysis on them, and turns the results into the few findings an owner reads first.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .. import formatting as fmt
from ..analysis import (
    budget_burndown,
    caller_breakdown,
    change_points,
    compare_versions,
    error_budget,
    explain_change,
    failure_rate,
    failure_reasons,
    rate_interval,
    summarize,
    version_adoption,
)
from ..analysis.budget import check_slo
from ..analysis.burndown import burndown_from_rates
from ..summary import Summary
from ..timeutil import epoch_ms, to_utc, validate_window

__all__ = [
    "AT_RISK_BELOW",
    "BudgetStatus",
    "Kpi",
    "Report",
    "ResourceSection",
    "VersionFinding",
    "WhatChanged",
    "build_weekly_report",
    "safe_source",
    "week_bounds",
]

_WEEK = re.compile(r"^(\d{4})-?W(\d{2})$")
#: Verdicts from the most to the least alarming; a version's headline verdict is the first one present.
_VERDICT_PRIORITY = ("regressed", "inconclusive", "improved", "equivalent", "insufficient data")
#: A resource whose period budget has less than this share left is "at risk" (it can still end within the SLO,
#: but one bad day spends the rest); at 0 or below it is "budget exhausted".
AT_RISK_BELOW = 0.25
#: Metrics whose change points the report looks for, in the order it lists them.
CHANGE_METRICS = ("failure_rate", "p50", "p95")
#: Simulations of :func:`~exec_analytics.analysis.change_points` per metric: its penalty is the 99th percentile of
#: the largest no-change cost reduction over them, which 500 draws estimate from its 5 largest (the analysis
#: default); the moment's interval uses as many. About 0.1 s per metric and resource on a week of hourly buckets.
CHANGE_SIMULATIONS = 500


@dataclass
class Kpi:
    """One headline figure of the report period beside the same figure for the comparison period.

    Attributes
    ----------
    name : str
        ``"executions"``, ``"failure rate"``, ``"p50"``, ``"p95"`` or ``"p99"``.
    unit : str
        ``"count"`` (executions per period), ``"fraction"`` (a rate) or ``"s"`` (seconds).
    value, previous : float
        This period and the comparison period (per-period average over ``baseline_weeks``); NaN when absent.
    low, high : float
        Confidence interval of ``value`` at the report's ``confidence`` (Clopper-Pearson for the rate, order statistics
        for percentiles); NaN if none.
    previous_low, previous_high : float
        The same for ``previous``.
    """

    name: str
    unit: str
    value: float
    previous: float = math.nan
    low: float = math.nan
    high: float = math.nan
    previous_low: float = math.nan
    previous_high: float = math.nan

    @property
    def change(self) -> float:
        """Week-over-week change: a difference for fractions (0.01 = one percentage point), else relative."""
        if not (math.isfinite(self.value) and math.isfinite(self.previous)):
            return math.nan
        if self.unit == "fraction":
            return self.value - self.previous
        return self.value / self.previous - 1 if self.previous else math.nan

    @property
    def significant(self) -> bool:
        """Whether the two periods' intervals do not overlap (a conservative sign of a real change)."""
        vals = (self.low, self.high, self.previous_low, self.previous_high)
        if not all(math.isfinite(v) for v in vals):
            return False
        return self.low > self.previous_high or self.high < self.previous_low


@dataclass
class BudgetStatus:
    """Error-budget status over the report period (see :func:`exec_analytics.analysis.error_budget`).

    Attributes
    ----------
    slo : float
        Target share of good executions.
    executions, bad : int
        Executions and bad ones in the period.
    sli, sli_low, sli_high : float
        Good share with its Clopper-Pearson interval.
    consumed, remaining : float
        Share of the period's budget spent and left (negative when overspent).
    alerts : list of str
        Burn-rate alerts firing at the end of the period (e.g. ``"ticket_3d_6h"``).
    burndown : DataFrame
        :func:`~exec_analytics.analysis.budget_burndown` over the period.
    """

    slo: float
    executions: int
    bad: int
    sli: float
    sli_low: float
    sli_high: float
    consumed: float
    remaining: float
    alerts: list[str]
    burndown: pd.DataFrame


@dataclass
class VersionFinding:
    """A version first seen in the report period, compared with the version it replaces.

    Attributes
    ----------
    version, baseline : str
        The new version and its predecessor (the version most executions ran on in the week before the new
        one appeared); ``baseline`` is None when there was none.
    first_seen : Timestamp
        First execution of ``version``.
    share : float
        Its share of the period's executions.
    verdict : str
        Headline verdict: the most alarming verdict over its metrics (``regressed`` first); ``needs rows`` in a
        report from a summary, which cannot compare versions (``first_seen`` is then the start of the
        summary's bucket of its first execution, and ``baseline`` is judged from the week before that).
    verdicts : dict
        Verdict per metric (``failure_rate``, ``p50``, ``p95``, ``p99``, ``distribution``, and
        ``failure_rate[<reason>]``).
    comparison : DataFrame
        :func:`exec_analytics.analysis.compare_versions` output (empty when no comparison was possible).
    note : str
        Why there is no comparison, else "".
    """

    version: str
    baseline: str | None
    first_seen: pd.Timestamp
    share: float
    verdict: str
    verdicts: dict[str, str]
    comparison: pd.DataFrame
    note: str = ""


@dataclass
class WhatChanged:
    """What changed for one resource: the period against the previous one, and the moments within the period.

    Attributes
    ----------
    changed : bool
        Something is a cause of a change on the previous period, or a metric shifted within the period in a way
        the previous period did not (a recurring shift alone is no change).
    sentences : list of str
        :func:`~exec_analytics.analysis.explain_change` sentences (report period against the previous period of
        the same length); empty when either has no executions, with ``note`` saying so.
    causes : DataFrame
        The rows of :func:`~exec_analytics.analysis.explain_change`'s table that are causes (same columns),
        largest contribution first within each metric.
    change_points : DataFrame
        :func:`~exec_analytics.analysis.change_points` of ``failure_rate``, ``p50`` and ``p95`` over the report
        period in each resource's own buckets (``freq="auto"``, named in the ``freq`` column; same columns), by
        metric then time, plus ``recurs`` (bool): the previous period shifted the same way at the same time (its
        moment interval, a period later, meets this one's give or take a bucket), so this is a cycle such as
        weekend latency rather than a new change.
    moments : list of str
        One sentence per change point: the metric, its shift, the interval for the moment and what coincided;
        recurring ones last, saying so.
    note : str
        Why there is no attribution, else "".
    """

    changed: bool = False
    sentences: list[str] = field(default_factory=list)
    causes: pd.DataFrame = field(default_factory=pd.DataFrame)
    change_points: pd.DataFrame = field(default_factory=pd.DataFrame)
    moments: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def headline(self) -> str:
        """One line for a list of resources: the attribution's sentence of the first metric with a cause
        (failure rate, then percentiles), else the first moment that does not recur, else "Nothing changed."."""
        for metric in pd.unique(self.causes["metric"]) if len(self.causes) else ():
            # explain_change's sentences start with the failure rate, then each percentile's name.
            lead = "Failure rate " if metric == "failure_rate" else f"{metric} "
            said = next((t for t in self.sentences if t.startswith(lead)), None)
            if said is not None:
                return said
        cps = self.change_points
        recurring = int(cps["recurs"].sum()) if "recurs" in cps.columns else 0
        if len(self.moments) > recurring:  # news first; a recurring shift alone is no change
            return self.moments[0]
        return "Nothing changed."


@dataclass
class ResourceSection:
    """Everything the report says about one resource.

    Attributes
    ----------
    rid, name : str
        Resource RID and display name.
    status : str
        The first that applies: ``"regressed"`` (a new version regressed), ``"budget exhausted"`` (no error
        budget left), ``"at risk"`` (less than :data:`AT_RISK_BELOW`, 25%, of the budget left), ``"attention"``
        (notable changes) or ``"ok"``.
    kpis : list of Kpi
        Executions, failure rate, p50, p95, p99.
    budget : BudgetStatus
    new_versions : list of VersionFinding
    callers : DataFrame
        Top failing callers: :func:`exec_analytics.analysis.caller_breakdown` rows (rank > 0).
    reasons : DataFrame
        :func:`exec_analytics.analysis.failure_reasons` of the period, plus ``new`` (bool: not seen in the
        comparison period).
    notable : list of str
        Plain-language notable changes, most important first.
    timeline : DataFrame
        :func:`exec_analytics.analysis.summarize` by time bucket over both periods, with ``p50``, ``p95``,
        ``p99`` and intervals at the report's ``confidence`` (the failure-rate and percentile figures).
    adoption : DataFrame
        :func:`exec_analytics.analysis.version_adoption` by the same buckets (rollouts marked in figures).
    durations : DataFrame
        ``resource_version`` and ``duration_s`` of the period's executions (the distribution figure).
    whole_seconds : bool
        Durations of a second or more come (at least partly) in whole seconds: at least 5% of them are whole
        numbers, which millisecond durations almost never are. Ties at whole seconds can then make the
        interval of a percentile above a second collapse to one value.
    what_changed : WhatChanged
        The attribution of the change on the previous period, and the change points within the period.
    left_out : dict
        Parts of the section the report could not compute, part -> why (empty for a report from rows). From a
        summary: ``"version comparisons"``, ``"what changed"``, ``"duration distribution"``; ``"burn-rate
        alerts"`` when its buckets are longer than 5 minutes; ``"callers"``, ``"failure reasons"`` or ``"new
        versions"`` when it was regrouped without them.
    drill_down : str
        From a summary, the command that builds this resource's report from its rows (its window loaded
        through the cache), else "".
    """

    rid: str
    name: str
    status: str
    kpis: list[Kpi]
    budget: BudgetStatus
    new_versions: list[VersionFinding]
    callers: pd.DataFrame
    reasons: pd.DataFrame
    notable: list[str]
    timeline: pd.DataFrame
    adoption: pd.DataFrame
    durations: pd.DataFrame
    whole_seconds: bool = False
    what_changed: WhatChanged = field(default_factory=WhatChanged)
    left_out: dict[str, str] = field(default_factory=dict)
    drill_down: str = ""

    def kpi(self, name: str) -> Kpi:
        """The KPI called ``name``."""
        return next(k for k in self.kpis if k.name == name)


@dataclass
class Report:
    """The weekly reliability report as data; render it with ``render_html`` (which draws the figures) or
    ``render_markdown``.

    Attributes
    ----------
    title : str
    start, end : Timestamp
        The report period, half-open, UTC.
    previous_start, previous_end : Timestamp
        The comparison period (``baseline_weeks`` periods of the same length just before ``start``).
    slo : float
    confidence : float
        Level of every interval in the report (KPIs, SLI, callers, version effects).
    generated_at : Timestamp
    source : str or None
        Where the data came from, with any credentials, query string and fragment removed.
    summary : DataFrame
        One row per resource: ``name``, ``rid``, ``status``, ``executions``, ``executions_change``,
        ``failure_rate``, ``failure_rate_change``, ``p95``, ``p95_change``, ``budget_remaining``,
        ``new_versions`` (text such as ``"1.4.0: regressed"``).
    resources : list of ResourceSection
    in_progress : bool
        The period is not over when the report is built (its end is after ``generated_at``): its figures
        will still change, and the renderers say so.
    names : dict
        The display names given (RID -> name): resources' headings, and callers' labels in tables and figures.
    changed : DataFrame
        The resources whose change is real (``what_changed.changed``), largest absolute failure-rate change first,
        then largest absolute relative p50 change: ``name``, ``rid``, ``failure_rate_change`` (a difference of
        fractions), ``p50_change`` (relative), ``headline`` (:attr:`WhatChanged.headline`).
    basis : str
        ``"rows"`` (built from the executions table) or ``"summary"`` (from a
        :class:`~exec_analytics.summary.Summary`).
    needs_rows : str
        From a summary: what it cannot tell and how to drill down, in one paragraph; else "".
    rank_error : float
        From a summary: the sketches' rank-error bound (a p95 is a value whose true rank is within 95% +- it);
        NaN from rows.
    """

    title: str
    start: pd.Timestamp
    end: pd.Timestamp
    previous_start: pd.Timestamp
    previous_end: pd.Timestamp
    slo: float
    confidence: float
    generated_at: pd.Timestamp
    source: str | None
    summary: pd.DataFrame
    resources: list[ResourceSection]
    in_progress: bool = False
    names: dict[str, str] = field(default_factory=dict)
    changed: pd.DataFrame = field(default_factory=pd.DataFrame)
    basis: str = "rows"
    needs_rows: str = ""
    rank_error: float = math.nan


# ---------------------------------------------------------------------------------------------------------
# Periods and small helpers
# ---------------------------------------------------------------------------------------------------------


def _iso_week(week: object) -> tuple[pd.Timestamp, str]:
    """Monday 00:00 UTC of an ISO week given as ``"2026-W47"`` or any time inside it."""
    if isinstance(week, str):
        m = _WEEK.match(week.strip())
        if m:
            year, num = int(m.group(1)), int(m.group(2))
            try:
                monday = pd.Timestamp.fromisocalendar(year, num, 1).tz_localize("UTC")
            except ValueError:
                raise ValueError(f"week {week!r} does not exist; use an ISO week such as '2026-W47'") from None
            return monday, f"{year}-W{num:02d}"
    try:
        t = to_utc(week, "week")
    except (TypeError, ValueError):
        raise ValueError(f"week must be an ISO week such as '2026-W47' or a UTC time inside it, got {week!r}") from None
    iso = t.isocalendar()
    monday = pd.Timestamp.fromisocalendar(iso[0], iso[1], 1).tz_localize("UTC")
    return monday, f"{iso[0]}-W{iso[1]:02d}"


def week_bounds(week: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[Monday 00:00 UTC, the next Monday)`` of an ISO week (``"2026-W47"``) or of the week holding a time.

    Returns
    -------
    tuple of pandas.Timestamp
        The half-open week, in UTC.
    """
    monday, _ = _iso_week(week)
    return monday, monday + pd.Timedelta("7D")


def _period(
    df: pd.DataFrame | Summary, week: object, start: object, end: object
) -> tuple[pd.Timestamp, pd.Timestamp, str]:
    if week is not None and (start is not None or end is not None):
        raise ValueError("pass either week or start/end, not both")
    if week is not None:
        monday, label = _iso_week(week)
        return monday, monday + pd.Timedelta("7D"), f"Weekly reliability report · {label}"
    if start is not None or end is not None:
        if start is None or end is None:
            raise ValueError("start and end go together; pass both (or week=)")
        s, e = validate_window(start, end)
        return s, e, f"Reliability report · {s:%Y-%m-%d %H:%M} – {e:%Y-%m-%d %H:%M} UTC"
    # Default: the last complete ISO week before the data end.
    if isinstance(df, Summary):
        if not len(df.counts):
            raise ValueError("the summary is empty; pass week= or start=/end=")
        last_bucket = pd.Timestamp(df.counts["bucket_start"].max())
        return _period(pd.DataFrame(), _iso_week(last_bucket + df.freq)[0] - pd.Timedelta("7D"), None, None)
    data_end = df.attrs.get("end") if isinstance(df.attrs, dict) else None
    last = to_utc(data_end, "df.attrs['end']") if data_end is not None else None
    if last is None:
        if not len(df):
            raise ValueError("df is empty; pass week= or start=/end=")
        last = pd.Timestamp(df["start_time"].max()) + pd.Timedelta(milliseconds=1)
    monday, _ = _iso_week(last)
    return _period(df, monday - pd.Timedelta("7D"), None, None)


def safe_source(source: object) -> str | None:
    """A data source fit for a report: scheme, host, port and path only (no credentials, query or fragment).

    Parameters
    ----------
    source : object
        Typically ``df.attrs["source"]``: a base URL, perhaps with user info or a token in its query.

    Returns
    -------
    str or None
        None when ``source`` is not a URL with a host (then nothing about it is shown).
    """
    if not isinstance(source, str):
        return None
    parts = urllib.parse.urlsplit(source.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    path = parts.path if re.fullmatch(r"[A-Za-z0-9/._~-]*", parts.path or "") else ""
    return f"{parts.scheme}://{host}{port}{path}"


def _rows_in(df: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    t = df["start_time"]
    rows: pd.DataFrame = df.loc[((t >= start) & (t < end)).to_numpy()]
    return rows


def _f(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _auto_freq(span: pd.Timedelta) -> str:
    # Keep about 20-60 buckets: enough shape without drowning the rate in noise.
    if span >= pd.Timedelta("10D"):
        return "1D"
    if span >= pd.Timedelta("2D"):
        return "6h"
    return "1h"


# ---------------------------------------------------------------------------------------------------------
# Per-resource pieces
# ---------------------------------------------------------------------------------------------------------


def _size(data: pd.DataFrame | Summary) -> int:
    """Executions in a frame or a summary."""
    return _executions(data) if isinstance(data, Summary) else len(data)


#: Percentiles of the KPIs and the timeline.
_Q = (0.5, 0.95, 0.99)


def _kpis(week: pd.DataFrame | Summary, prev: pd.DataFrame | Summary, baseline_weeks: int,
          confidence: float) -> list[Kpi]:  # fmt: skip
    now = summarize(week, q=_Q, confidence=confidence, percentile_confidence=confidence).iloc[0]
    before = summarize(prev, q=_Q, confidence=confidence, percentile_confidence=confidence).iloc[0]
    return _kpis_from(now, before, baseline_weeks)


def _kpis_from(now: pd.Series, before: pd.Series, baseline_weeks: int) -> list[Kpi]:
    """The KPIs from a :func:`summarize` row of each period (no executions: a row with 0 ``executions``)."""
    has_prev = _f(before["executions"]) > 0
    kpis = [Kpi("executions", "count", _f(now["executions"]),
                _f(before["executions"]) / baseline_weeks if has_prev else math.nan)]  # fmt: skip
    kpis.append(Kpi("failure rate", "fraction", _f(now["rate"]), _f(before["rate"]) if has_prev else math.nan,
                    _f(now["rate_low"]), _f(now["rate_high"]), _f(before["rate_low"]),
                    _f(before["rate_high"])))  # fmt: skip
    for p in ("p50", "p95", "p99"):
        kpis.append(Kpi(p, "s", _f(now[p]), _f(before[p]) if has_prev else math.nan, _f(now[f"{p}_low"]),
                        _f(now[f"{p}_high"]), _f(before[f"{p}_low"]), _f(before[f"{p}_high"])))  # fmt: skip
    return kpis


def _budget(
    week: pd.DataFrame | Summary, slo: float, start: pd.Timestamp, end: pd.Timestamp, freq: str
) -> BudgetStatus:
    row = error_budget(week, slo=slo, window=end - start, now=end).iloc[0]
    return _budget_from(row, slo, budget_burndown(week, slo=slo, start=start, end=end, freq=freq))


def _budget_from(row: pd.Series, slo: float, burndown: pd.DataFrame) -> BudgetStatus:
    """The budget from an :func:`~exec_analytics.analysis.error_budget` row of the period."""
    alerts = [c.removeprefix("alert_") for c in row.index if c.startswith("alert_") and bool(row[c])]
    return BudgetStatus(slo=slo, executions=int(row["executions"]), bad=int(row["bad"]), sli=_f(row["sli"]),
                        sli_low=_f(row["sli_low"]), sli_high=_f(row["sli_high"]), consumed=_f(row["consumed"]),
                        remaining=_f(row["remaining"]), alerts=alerts, burndown=burndown)  # fmt: skip


def _headline_verdict(comparison: pd.DataFrame) -> str:
    if not len(comparison):
        return "insufficient data"
    verdicts = set(comparison["verdict"].astype(str))
    main = set(comparison.loc[~comparison["metric"].str.startswith("failure_rate["), "verdict"].astype(str))
    if "regressed" in verdicts:
        return "regressed"
    return next((v for v in _VERDICT_PRIORITY if v in main), "insufficient data")


def _new_versions(
    rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, compare: Mapping[str, Any]
) -> list[VersionFinding]:
    """Versions whose first execution in the data falls in the period (and the data reach back before it)."""
    if not len(rows) or rows["start_time"].min() >= start:
        return []  # no history before the period: every version would look new
    versions = rows["resource_version"].astype("string")
    first = rows["start_time"].groupby(versions.to_numpy(), sort=False).min()
    week_rows = _rows_in(rows, start, end)
    week_counts = week_rows["resource_version"].astype("string").value_counts()
    out = []
    for version, seen in sorted(first.items(), key=lambda kv: kv[1]):
        if not (start <= seen < end):
            continue
        before = _rows_in(rows, seen - pd.Timedelta("7D"), seen)["resource_version"].astype("string")
        counts = before[before != version].value_counts()
        baseline = str(counts.index[0]) if len(counts) else None
        share = float(week_counts.get(version, 0)) / max(len(week_rows), 1)
        comparison = pd.DataFrame()
        note = ""
        if baseline is None:
            note = "no earlier version ran in the week before it"
        else:
            try:
                comparison = compare_versions(rows, baseline, str(version), **{"reasons": True, **compare})
            except ValueError as exc:  # e.g. the versions never overlapped: say so instead of failing the report
                note = str(exc).removeprefix("compare_versions: ")
        verdicts = dict(zip(comparison["metric"], comparison["verdict"].astype(str), strict=True)) if len(
            comparison) else {}  # fmt: skip
        out.append(VersionFinding(str(version), baseline, pd.Timestamp(seen), share,
                                  _headline_verdict(comparison), verdicts, comparison, note))  # fmt: skip
    return out


def _status(versions: list[VersionFinding], budget: BudgetStatus, notable: list[str]) -> str:
    if any(v.verdict == "regressed" for v in versions):
        return "regressed"
    # Rounded: exactly the allowed number of bad executions leaves 1e-16 of budget in floating point, not some.
    if round(budget.remaining, 9) <= 0:
        return "budget exhausted"
    if budget.remaining < AT_RISK_BELOW:
        return "at risk"
    return "attention" if notable else "ok"


#: Share of whole numbers among the durations of a second or more above which they are taken to be reported in
#: whole seconds: durations with millisecond resolution are whole about once in a thousand.
WHOLE_SHARE = 0.05


def _whole_seconds(durations: pd.Series) -> bool:
    # The API reports some durations in whole seconds and others in milliseconds, even for one resource: the
    # ties at whole seconds are what make a percentile's interval collapse.
    known = durations.dropna().to_numpy(dtype="float64")
    long = known[known >= 1.0]
    return bool(len(long)) and float((long == np.round(long)).mean()) >= WHOLE_SHARE


def _reasons(week: pd.DataFrame | Summary, prev: pd.DataFrame | Summary, top: int) -> pd.DataFrame:
    now = failure_reasons(week)
    before = failure_reasons(prev) if _size(prev) else now.iloc[:0]
    return _reasons_from(now, before, _size(prev) > 0, top)


def _reasons_from(now: pd.DataFrame, before: pd.DataFrame, has_prev: bool, top: int) -> pd.DataFrame:
    """The reasons table from :func:`~exec_analytics.analysis.failure_reasons` of each period."""
    seen = set(before["failure_reason"].dropna().astype(str))
    reason = now["failure_reason"].astype("string")
    now = now.assign(new=(reason.notna() & ~reason.isin(seen)).to_numpy(dtype=bool) if has_prev else False)
    top_rows: pd.DataFrame = now.head(top).reset_index(drop=True)
    return top_rows


def _notable(kpis: list[Kpi], budget: BudgetStatus, versions: list[VersionFinding], reasons: pd.DataFrame,
             callers: pd.DataFrame, confidence: float) -> list[str]:  # fmt: skip
    notes = []
    for v in versions:
        if v.verdict == "regressed":
            bad = [fmt.metric_name(m) for m, verdict in v.verdicts.items() if verdict == "regressed"]
            notes.append(f"Version {v.version} regressed against {v.baseline} on {', '.join(bad)}.")
    if budget.remaining < 0:
        notes.append(f"Error budget overspent: {fmt.percent(budget.consumed, 0)} of the period's budget used.")
    if budget.alerts:
        notes.append(f"Burn-rate alerts firing at the end of the period: {', '.join(budget.alerts)}.")
    rate = next(k for k in kpis if k.name == "failure rate")
    if rate.significant:
        word = "up" if rate.change > 0 else "down"
        notes.append(f"Failure rate {word} from {fmt.percent(rate.previous)} to {fmt.percent(rate.value)} "
                     f"({fmt.level(confidence)} intervals do not overlap).")  # fmt: skip
    for k in kpis:
        if k.unit == "s" and k.significant and abs(k.change) >= 0.10:
            word = "slower" if k.change > 0 else "faster"
            notes.append(f"{k.name} {fmt.percent(abs(k.change), 0)} {word}: {fmt.seconds(k.previous)} → "
                         f"{fmt.seconds(k.value)}.")  # fmt: skip
    volume = kpis[0]
    if math.isfinite(volume.change) and abs(volume.change) >= 0.25:
        word = "up" if volume.change > 0 else "down"
        notes.append(f"Executions {word} {fmt.percent(abs(volume.change), 0)} on the previous period.")
    if "new" in reasons.columns:
        for r in reasons[reasons["new"]].itertuples():
            notes.append(f"New failure reason {fmt.text(r.failure_reason, fmt.NO_REASON)}: "
                         f"{fmt.plural(r.failures, 'failure')} this period.")  # fmt: skip
    if len(callers):
        first = callers.iloc[0]
        if _f(first["excess_failures_low"]) > 0 and _f(first["failure_share"]) >= 0.2:
            notes.append(f"One caller ({fmt.text(first['caller_rid'], fmt.NO_CALLER)}) accounts for "
                         f"{fmt.percent(_f(first['failure_share']), 1)} of failures, failing "
                         f"{fmt.percent(_f(first['rate']))} of its executions.")  # fmt: skip
    return notes


def _moment(row: Mapping[Any, Any]) -> str:
    """A change point in words: metric, shift, moment with its interval, what coincided."""
    metric = str(row["metric"])
    show: Callable[..., str]
    if metric == "failure_rate":
        name, show, shift = "Failure rate", fmt.percent, fmt.pp_change(row["change"])
    else:
        name, show, shift = metric, fmt.seconds, fmt.signed_seconds(row["change"])
    low, high = fmt.timestamp(row["moment_low"]), fmt.timestamp(row["moment_high"])
    when = f"at {fmt.timestamp(row['period_start'])}" + ("" if low == high else f" (between {low} and {high})")
    coincided = str(row["coincided"]) if isinstance(row["coincided"], str) and row["coincided"] else ""
    before, after = show(row["value_before"]), show(row["value_after"])
    if before == after and metric != "failure_rate":
        # Ties (durations in whole seconds) can hold the percentile still while the shift is real: say what moved.
        what = f"{before} before and after; {_percentile_shift(row)}"
    else:
        what = f"{before} -> {after} ({shift})"
    return f"{name} shifted {when}: {what}" + (f"; coincided with: {coincided}." if coincided else ".")


def _percentile_shift(row: Mapping[Any, Any]) -> str:
    """A percentile's shift as the share of executions above the earlier value: ``share above 2 s 3.1% ->
    8.0% (+4.9 pp)``, for when the percentile itself reads the same on both sides."""
    before, after = _f(row.get("share_above_before")), _f(row.get("share_above_after"))
    level = fmt.seconds(row["value_before"])
    if not (math.isfinite(before) and math.isfinite(after)):
        return f"the shift shows at a fixed caller mix (x{_f(row.get('adjusted_ratio')):.2f} above the percentile)"
    return f"share above {level} {fmt.percent(before)} -> {fmt.percent(after)} ({fmt.pp_change(after - before)})"


def _what_changed(rows: pd.DataFrame, week: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                  confidence: float) -> WhatChanged:  # fmt: skip
    """Attribution of the change on the previous period of the same length, and change points in the period."""
    by = [c for c in ("resource_version", "caller_rid", "failure_reason") if c in rows.columns]
    previous = (start - (end - start), start)
    sentences: list[str] = []
    causes = pd.DataFrame()
    note = ""
    explained = False
    if not len(week) or not len(_rows_in(rows, *previous)):
        note = "no executions in " + ("this period" if not len(week) else "the previous period") + " to compare"
    else:
        explanation = explain_change(rows, (start, end), previous, by=by, confidence=confidence)
        table = explanation.table
        causes = table[table["cause"].to_numpy(dtype=bool)]
        causes = causes.assign(_size=causes["contribution"].abs()).sort_values(
            ["metric", "_size"], ascending=[True, False], kind="stable").drop(columns="_size")  # fmt: skip
        causes = causes.reset_index(drop=True)
        sentences, explained = list(explanation.sentences), explanation.changed
    cps = _period_change_points(week, start, end, confidence)
    before = _rows_in(rows, *previous)
    if len(cps) and len(before):
        # A shift that the previous period shows too, the same way at the same time, is a cycle (weekend
        # latency, a nightly batch), not news: it is shown, marked, and does not make the resource "changed".
        cps["recurs"] = _recurs(cps, _period_change_points(before, *previous, confidence), end - start)
    elif len(cps):
        cps["recurs"] = False
    news = cps[~cps["recurs"].to_numpy(dtype=bool)] if len(cps) else cps
    moments = [_moment(r) for r in news.to_dict("records")]
    moments += [_moment(r) + f" {_RECURS}" for r in cps.drop(news.index).to_dict("records")]
    return WhatChanged(changed=explained or bool(len(news)), sentences=sentences, causes=causes,
                       change_points=cps, moments=moments, note=note)  # fmt: skip


#: Said of a change point that the previous period shows too (see :func:`_recurs`).
_RECURS = "It recurs: the previous period shifted the same way at the same time (a cycle, not a new change)."


def _period_change_points(
    rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, confidence: float
) -> pd.DataFrame:
    """:func:`change_points` of every metric of :data:`CHANGE_METRICS` over ``[start, end)``, by metric then time."""
    found = []
    for metric in CHANGE_METRICS if len(rows) else ():
        points = change_points(rows, metric=metric, freq=_change_freq(end - start), start=start, end=end,  # type: ignore[arg-type]
                               confidence=confidence, n_sim=CHANGE_SIMULATIONS)  # fmt: skip
        if len(points):
            found.append(points)
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


def _recurs(now: pd.DataFrame, before: pd.DataFrame, span: pd.Timedelta) -> np.ndarray:
    """Per change point of ``now``: whether ``before`` (the period ``span`` earlier) has one of the same metric and
    direction whose moment interval, moved on by ``span``, meets this one's widened by a bucket either side."""
    out = np.zeros(len(now), dtype=bool)
    if not len(before):
        return out
    for i, row in enumerate(now.to_dict("records")):
        bucket = pd.Timedelta(str(row["freq"]))
        same = before[(before["metric"] == row["metric"]).to_numpy(dtype=bool)
                      & (np.sign(before["change"].to_numpy(dtype=float)) == np.sign(row["change"]))]  # fmt: skip
        low = same["moment_low"] + span - bucket
        high = same["moment_high"] + span + bucket
        out[i] = bool(((low <= row["moment_high"]) & (high >= row["moment_low"])).any())
    return out


def _change_freq(span: pd.Timedelta) -> str:
    # Each resource's own bucket (change_points' freq="auto": as fine as its traffic allows a moment to be
    # placed); past a month its finest buckets would be too many to simulate cheaply.
    return "auto" if span <= pd.Timedelta("31D") else "1D"


def _ranked_changes(sections: list[ResourceSection]) -> pd.DataFrame:
    rows = [{"name": sec.name, "rid": sec.rid, "failure_rate_change": sec.kpi("failure rate").change,
             "p50_change": sec.kpi("p50").change, "headline": sec.what_changed.headline}
            for sec in sections if sec.what_changed.changed]  # fmt: skip
    columns = ["name", "rid", "failure_rate_change", "p50_change", "headline"]
    out = pd.DataFrame(rows, columns=columns).astype({"failure_rate_change": "float64", "p50_change": "float64"})
    # Missing changes (no previous period) rank last rather than first.
    key = pd.DataFrame({"rate": out["failure_rate_change"].abs().fillna(-1.0),
                        "p50": out["p50_change"].abs().fillna(-1.0)})  # fmt: skip
    order = key.sort_values(["rate", "p50"], ascending=False, kind="stable").index
    ranked: pd.DataFrame = out.loc[order].reset_index(drop=True)
    return ranked


# ---------------------------------------------------------------------------------------------------------
# From a summary
# ---------------------------------------------------------------------------------------------------------

#: Buckets a summary needs for burn-rate alerts: every alert window is a whole number of 5 minutes.
_ALERT_STEP = pd.Timedelta("5min")
#: Why each part of a resource's section is left out of a report from a summary.
_NEEDS_ROWS = {
    "version comparisons": "comparing a new version with its predecessor (compare_versions) adjusts for callers "
    "and time, and resamples executions: it needs the executions rows",
    "what changed": "the attribution of a change (explain_change) and the shifts within the period "
    "(change_points) need the executions rows",
    "duration distribution": "the distribution of every duration by version needs the executions rows",
}


def _span(td: pd.Timedelta) -> str:
    """A bucket length in words: ``1 day``, ``6 h``, ``5 min``."""
    for unit, word in ((pd.Timedelta("1D"), "day"), (pd.Timedelta("1h"), "h"), (pd.Timedelta("1min"), "min"),
                       (pd.Timedelta("1s"), "s")):  # fmt: skip
        if not td % unit:
            n = int(td // unit)
            return f"{n} {word}{'s' if word == 'day' and n != 1 else ''}"
    return str(td)


def _freq_ms(freq: str) -> int:
    """A fixed bucket length in milliseconds."""
    return int(pd.Timedelta(freq) // pd.Timedelta(milliseconds=1))


def _span_freq(td: pd.Timedelta) -> str:
    """A bucket length as a pandas frequency string (``"1D"``, ``"6h"``, ``"300000ms"``)."""
    for unit, code in ((pd.Timedelta("1D"), "D"), (pd.Timedelta("1h"), "h"), (pd.Timedelta("1min"), "min")):
        if not td % unit:
            return f"{int(td // unit)}{code}"
    return f"{int(td // pd.Timedelta(milliseconds=1))}ms"


def _select(
    summary: Summary, *, resource: str | None = None, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
) -> Summary:
    """The part of ``summary`` of one resource and/or of the buckets starting in ``[start, end)``: exactly the
    summary of the executions in the window when its bounds are bucket boundaries (:func:`_check_summary`)."""

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        mask = np.ones(len(frame), dtype=bool)
        if resource is not None:
            mask &= (frame["resource_rid"] == resource).fillna(False).to_numpy(dtype=bool)
        t = pd.DatetimeIndex(frame["bucket_start"])
        if start is not None:
            mask &= np.asarray(t >= start, dtype=bool)
        if end is not None:
            mask &= np.asarray(t < end, dtype=bool)
        out: pd.DataFrame = frame.loc[mask].reset_index(drop=True)
        return out

    return replace(summary, counts=keep(summary.counts), sketches=keep(summary.sketches))


def _by_resource(summary: Summary) -> dict[str, Summary]:
    """Each resource's part of ``summary``, split in one pass over both tables (not one scan per resource)."""

    def split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        if not len(frame):
            return {}
        groups = frame.groupby(frame["resource_rid"].astype(object), sort=False, dropna=True).indices
        return {str(rid): frame.iloc[rows].reset_index(drop=True) for rid, rows in groups.items()}

    counts, sketches = split(summary.counts), split(summary.sketches)
    return {rid: replace(summary, counts=frame, sketches=sketches.get(rid, summary.sketches.iloc[:0]))
            for rid, frame in counts.items()}  # fmt: skip


def _executions(summary: Summary) -> int:
    """Executions a summary counts."""
    return int(summary.counts["executions"].sum()) if len(summary.counts) else 0


def _check_summary(summary: Summary, times: Mapping[str, pd.Timestamp], freq: str) -> None:
    """``ValueError`` unless every time is a bucket boundary of the summary and ``freq`` a whole number of buckets."""
    off = [name for name, t in times.items() if epoch_ms(t) % summary.freq_ms or t.value % 1_000_000]
    if off:
        raise ValueError(f"build_weekly_report: {', '.join(off)} must fall on the summary's {_span(summary.freq)} "
                         "bucket boundaries (epoch-aligned); build the summary with shorter buckets, or choose a "
                         "period they divide")  # fmt: skip
    if _freq_ms(freq) % summary.freq_ms:
        raise ValueError(f"build_weekly_report: freq {freq!r} is not a whole number of the summary's "
                         f"{_span(summary.freq)} buckets; pass a multiple of them, or leave freq unset")  # fmt: skip


def _summary_resources(summary: Summary, resources: str | Sequence[str] | None) -> list[str]:
    if resources is None:
        return sorted(str(r) for r in pd.unique(summary.counts["resource_rid"].dropna().astype(str)))
    wanted = [resources] if isinstance(resources, str) else [str(r) for r in resources]
    if not wanted:
        raise ValueError("resources must name at least one resource RID")
    return wanted


def _needs_rows(summary: Summary) -> str:
    return (f"Built from a summary ({_span(summary.freq)} buckets): every count, rate and interval is "
            f"exact; percentiles come from its sketches, each within {fmt.percent(summary.rank_error())} of its "
            "rank, their intervals widened by as much. Version comparisons, what changed and the duration "
            "distribution need the executions rows: drill down into one resource with the command under its "
            "heading, which loads its window alone.")  # fmt: skip


def _drill_down(rid: str, start: pd.Timestamp, end: pd.Timestamp) -> str:
    return (f"exec-analytics report {rid} --start {start:%Y-%m-%dT%H:%MZ} --end {end:%Y-%m-%dT%H:%MZ} "
            "--out report.html")  # fmt: skip


def _counts_budget(row: pd.Series, slo: float, burndown: pd.DataFrame) -> BudgetStatus:
    """The budget from a :func:`~exec_analytics.analysis.failure_rate` row of the period, without alerts (as
    :func:`~exec_analytics.analysis.error_budget` computes it for the period's window)."""
    n, x = np.array([int(row["executions"])]), np.array([int(row["failures"])])
    good_low, good_high = rate_interval(n - x, n, 0.95)  # error_budget's default level, as _budget uses
    budget = 1.0 - float(slo)
    with np.errstate(invalid="ignore", divide="ignore"):
        sli = float(np.where(n > 0, (n - x) / np.maximum(n, 1), np.nan)[0])
        consumed = float(np.where(n > 0, x / (budget * n), np.nan)[0])
    return BudgetStatus(slo=slo, executions=int(n[0]), bad=int(x[0]), sli=sli, sli_low=_f(good_low[0]),
                        sli_high=_f(good_high[0]), consumed=consumed, remaining=1.0 - consumed, alerts=[],
                        burndown=burndown)  # fmt: skip


def _summary_versions(part: Summary, start: pd.Timestamp, end: pd.Timestamp, note: str) -> list[VersionFinding]:
    """Versions first seen in the period, from the counts (first seen: the start of their first bucket)."""
    counts = part.counts
    if "resource_version" in part.dropped or not len(counts) or counts["bucket_start"].min() >= start:
        return []
    version = counts["resource_version"].astype("string")
    first = counts["bucket_start"].groupby(version.to_numpy(), sort=False).min()
    in_week = ((counts["bucket_start"] >= start) & (counts["bucket_start"] < end)).to_numpy(dtype=bool)
    week_counts = counts.loc[in_week, "executions"].groupby(version[in_week].to_numpy()).sum()
    total = max(int(counts.loc[in_week, "executions"].sum()), 1)
    out = []
    for v, seen in sorted(first.items(), key=lambda kv: kv[1]):
        if not (start <= seen < end):
            continue
        t = counts["bucket_start"]
        before = ((t >= seen - pd.Timedelta("7D")) & (t < seen) & (version != v)).fillna(False).to_numpy(dtype=bool)
        volume = counts.loc[before, "executions"].groupby(version[before].to_numpy()).sum()
        volume = volume.sort_values(ascending=False, kind="stable")
        baseline = str(volume.index[0]) if len(volume) else None
        out.append(VersionFinding(str(v), baseline, pd.Timestamp(seen), float(week_counts.get(v, 0)) / total,
                                  "needs rows", {}, pd.DataFrame(), note))  # fmt: skip
    return out


def _split(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A fleet-wide result by ``resource_rid`` as each resource's own result (without the resource column)."""
    if not len(frame):
        return {}
    codes, rids = pd.factorize(frame["resource_rid"].astype(object), use_na_sentinel=True)
    rest = frame.drop(columns="resource_rid")
    # Grouped results come in key order, so each resource's rows are one run already: slices, no gather.
    order = np.argsort(codes, kind="stable")
    ordered = rest if (np.diff(codes) >= 0).all() else rest.iloc[order]
    runs = codes[order]
    starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
    ends = np.r_[starts[1:], len(runs)]
    return {str(rids[runs[a]]): ordered.iloc[a:b].reset_index(drop=True)
            for a, b in zip(starts, ends, strict=True) if runs[a] >= 0}  # fmt: skip


@dataclass
class _Fleet:
    """Every analysis of a report from a summary, computed once for the whole fleet and split by resource.

    A call per resource would cost the same fixed overhead 200 times over; one call per table does not, and
    grouping by resource gives each resource exactly what a call on its part alone gives (counts) or the same
    sketches merged (percentiles).
    """

    parts: dict[str, Summary]
    now: dict[str, pd.DataFrame]
    before: dict[str, pd.DataFrame]
    timeline: dict[str, pd.DataFrame]
    buckets: dict[str, pd.DataFrame]
    budget: dict[str, pd.DataFrame]
    reasons_now: dict[str, pd.DataFrame]
    reasons_before: dict[str, pd.DataFrame]
    adoption: dict[str, pd.DataFrame]
    #: The same tables for a resource without executions (from an empty part).
    empty: dict[str, pd.DataFrame]
    alerts: bool
    freq: pd.Timedelta
    dropped: tuple[str, ...]


def _fleet(window: Summary, prev_s: pd.Timestamp, s: pd.Timestamp, e: pd.Timestamp, step: str, slo: float,
           confidence: float) -> _Fleet:  # fmt: skip
    week, prev = _select(window, start=s, end=e), _select(window, start=prev_s, end=s)
    alerts = not _ALERT_STEP % window.freq
    keep = {"versions": "resource_version" not in window.dropped, "reasons": "failure_reason" not in window.dropped}

    def tables(by: str | None, w: Summary, p: Summary, all_: Summary) -> dict[str, pd.DataFrame]:
        def pct(data: Summary, freq: str | None = None) -> pd.DataFrame:
            return summarize(data, by=by, freq=freq, q=_Q, confidence=confidence, percentile_confidence=confidence)

        budget = error_budget(w, by=by, slo=slo, window=e - s, now=e) if alerts else failure_rate(w, by=by)
        reasons = keep["reasons"]
        adoption = version_adoption(all_, freq=step, by=by) if keep["versions"] else pd.DataFrame()
        return {"now": pct(w), "before": pct(p), "timeline": pct(all_, step),
                "buckets": failure_rate(w, by=by, freq=step), "budget": budget,
                "reasons_now": failure_reasons(w, by=by) if reasons else pd.DataFrame(),
                "reasons_before": failure_reasons(p, by=by) if reasons else pd.DataFrame(),
                "adoption": adoption}  # fmt: skip

    fleet = {k: _split(v) if len(v) else {} for k, v in tables("resource_rid", week, prev, window).items()}
    none = _select(window, resource="")
    return _Fleet(parts=_by_resource(window), empty=tables(None, none, none, none), alerts=alerts, freq=window.freq,
                  dropped=window.dropped, **fleet)  # fmt: skip


def _summary_section(fleet: _Fleet, rid: str, name: str, s: pd.Timestamp, e: pd.Timestamp, step: str, *,
                     slo: float, baseline_weeks: int, top_callers: int, top_reasons: int,
                     confidence: float) -> ResourceSection:  # fmt: skip
    """One resource's section from a summary: what counts is computed as from rows, the rest says why not."""

    def table(name: str) -> pd.DataFrame:
        found: pd.DataFrame = getattr(fleet, name).get(rid, fleet.empty[name])
        return found

    part = fleet.parts.get(rid)
    drill = _drill_down(rid, s, e)
    left_out = {k: f"{why}; drill down: {drill}" for k, why in _NEEDS_ROWS.items()}
    kpis = _kpis_from(table("now").iloc[0], table("before").iloc[0], baseline_weeks)
    burndown = burndown_from_rates(table("buckets"), slo=slo, start=s, end=e, freq=step)
    if fleet.alerts:
        budget = _budget_from(table("budget").iloc[0], slo, burndown)
    else:
        budget = _counts_budget(table("budget").iloc[0], slo, burndown)
        left_out["burn-rate alerts"] = ("burn-rate alerts need buckets of 5 minutes or less (their shortest "
                                        f"window); this summary's are {_span(fleet.freq)}")  # fmt: skip
    dropped = fleet.dropped
    versions = _summary_versions(part, s, e, left_out["version comparisons"]) if part is not None else []
    if "resource_version" in dropped:
        left_out["new versions"] = "this summary was regrouped without versions: it cannot tell which are new"
    callers = pd.DataFrame()
    week = _select(part, start=s, end=e) if part is not None else None
    if "caller_rid" in dropped:
        left_out["callers"] = "this summary was regrouped without callers (caller_rid): it cannot rank them"
    elif week is not None and _executions(week):
        ranked = caller_breakdown(week, top=top_callers, confidence=confidence)
        callers = ranked[ranked["rank"] > 0].reset_index(drop=True)
    if "failure_reason" in dropped:
        reasons = pd.DataFrame()
        left_out["failure reasons"] = "this summary was regrouped without failure reasons: it cannot tell them apart"
    else:
        has_prev = kpis[0].previous > 0
        now = table("reasons_now")
        reasons = _reasons_from(now, table("reasons_before") if has_prev else now.iloc[:0], has_prev, top_reasons)
    notable = _notable(kpis, budget, versions, reasons, callers, confidence)
    has_rows = part is not None and _executions(part) > 0
    timeline = table("timeline") if has_rows else pd.DataFrame()
    adoption = table("adoption") if has_rows and "resource_version" not in dropped else pd.DataFrame()
    if len(adoption):
        adoption["resource_version"] = adoption["resource_version"].cat.remove_unused_categories()
    return ResourceSection(rid=rid, name=name, status=_status(versions, budget, notable), kpis=kpis, budget=budget,
                           new_versions=versions, callers=callers, reasons=reasons, notable=notable,
                           timeline=timeline, adoption=adoption,
                           durations=pd.DataFrame({"resource_version": pd.Series(dtype="string"),
                                                   "duration_s": pd.Series(dtype="float64")}),
                           what_changed=WhatChanged(note=left_out["what changed"]), left_out=left_out,
                           drill_down=drill)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


def _resources(df: pd.DataFrame, resources: str | Sequence[str] | None) -> list[str]:
    present = [str(r) for r in pd.unique(df["resource_rid"].dropna().astype(str))] if len(df) else []
    if resources is None:
        # The order they were loaded in when the frame says so, else the order they first appear in.
        loaded = df.attrs.get("resource_rids") if isinstance(df.attrs, dict) else None
        if isinstance(loaded, (list, tuple)):
            seen = set(present)
            ordered = [str(r) for r in loaded if str(r) in seen]
            return ordered + [r for r in present if r not in set(ordered)]
        return present
    wanted = [resources] if isinstance(resources, str) else [str(r) for r in resources]
    if not wanted:
        raise ValueError("resources must name at least one resource RID")
    return wanted


def build_weekly_report(
    df: pd.DataFrame | Summary,
    *,
    week: object = None,
    start: object = None,
    end: object = None,
    resources: str | Sequence[str] | None = None,
    names: Mapping[str, str] | None = None,
    slo: float = 0.99,
    baseline_weeks: int = 1,
    top_callers: int = 5,
    top_reasons: int = 8,
    confidence: float = 0.95,
    compare: Mapping[str, Any] | None = None,
    freq: str | None = None,
    now: object = None,
) -> Report:
    """Build the reliability report of one period (by default the last complete ISO week) from the table.

    Parameters
    ----------
    df : DataFrame or Summary
        The executions table. For week-over-week changes and new-version verdicts it should reach back
        ``baseline_weeks`` periods before the report period. Or a :class:`~exec_analytics.summary.Summary` of
        it (a whole fleet's, say): every count, rate, interval, budget, status and table is then the same as
        from the rows, percentiles come from its sketches (within their rank error, intervals widened by it),
        and the parts that need rows (version comparisons, what changed, the duration distribution) say so
        and how to drill down (:attr:`ResourceSection.left_out`). Its buckets must divide the period, the
        comparison period and ``freq``.
    week : str or time, optional
        ISO week such as ``"2026-W47"``, or a UTC time inside the week.
    start, end : str, datetime or Timestamp, optional
        An explicit period ``[start, end)`` instead of ``week``.
    resources : str or sequence of str, optional
        Resource RIDs to report on (default: every resource in ``df``; a summary's in RID order), in this
        order.
    names : mapping, optional
        Display names, RID -> name (a plain dict, or a fleet file's ``names``): resources and callers without
        one show their RID.
    slo : float
        Target share of succeeded executions for the error budget.
    baseline_weeks : int
        Length of the comparison period in report periods, just before it; its KPIs are per-period averages
        (executions) or pooled (rates, percentiles).
    top_callers, top_reasons : int
        Rows of the caller and failure-reason tables.
    confidence : float
        Level of every interval, the version comparisons' included.
    compare : mapping, optional
        Options for :func:`exec_analytics.analysis.compare_versions` (e.g. ``n_resamples``, thresholds,
        ``stratify_freq``), except ``confidence``.
    freq : str, optional
        Time bucket of the timeline figures and the burn-down (default: from the period's length; from a
        summary, its own buckets when they are longer).
    now : str, datetime or Timestamp, optional
        When the report is built (default: the current time): a period ending after it is flagged as not over.

    Returns
    -------
    Report
        See :class:`Report`; sections in the order of ``resources``. It holds data only: the figures are
        drawn when it is rendered.

    Raises
    ------
    ValueError
        Bad period, empty ``df`` without a period, a resource with no executions at all, bad ``slo``,
        ``confidence`` inside ``compare``; a summary whose buckets do not divide the periods or ``freq``.
    """
    if not isinstance(df, (pd.DataFrame, Summary)):
        raise TypeError(f"df must be a pandas DataFrame (the executions table) or a Summary, got {type(df).__name__}")
    slo = check_slo(slo)
    if isinstance(baseline_weeks, bool) or not isinstance(baseline_weeks, int) or baseline_weeks < 1:
        raise ValueError(f"baseline_weeks must be a positive integer, got {baseline_weeks!r}")
    s, e, title = _period(df, week, start, end)
    span = e - s
    prev_s = s - baseline_weeks * span
    step = freq or _auto_freq(span)
    if isinstance(df, Summary) and freq is None and _freq_ms(step) % df.freq_ms:
        step = _span_freq(df.freq)  # the default is no finer than the summary's buckets
    if "confidence" in (compare or {}):
        # One level for the whole report, so that its one label ("95% CI") is true of every interval.
        raise ValueError("set the level of every interval with confidence=, not in compare=")
    options = {**(compare or {}), "confidence": confidence}
    sections = []
    if isinstance(df, Summary):
        _check_summary(df, {"start": s, "end": e, "the comparison period's start": prev_s}, step)
        present = set(pd.unique(df.counts["resource_rid"].dropna().astype(str)))
        wanted = _summary_resources(df, resources)
        for rid in wanted:
            if rid not in present:
                raise ValueError(f"resource {rid!r} has no executions in the summary")
        fleet = _fleet(_select(df, start=prev_s, end=e), prev_s, s, e, step, slo, confidence)
        for rid in wanted:
            sections.append(_summary_section(fleet, rid, (names or {}).get(rid, rid), s, e, step, slo=slo,
                                             baseline_weeks=baseline_weeks, top_callers=top_callers,
                                             top_reasons=top_reasons, confidence=confidence))  # fmt: skip
    for rid in _resources(df, resources) if isinstance(df, pd.DataFrame) else ():
        assert isinstance(df, pd.DataFrame)  # for the type checker: the loop runs on rows only
        rows = df.loc[(df["resource_rid"].astype("string") == rid).fillna(False).to_numpy(dtype=bool)]
        if not len(rows):
            raise ValueError(f"resource {rid!r} has no executions in df")
        rows = _rows_in(rows, prev_s, e)
        week_rows = _rows_in(rows, s, e)
        prev_rows = _rows_in(rows, prev_s, s)
        kpis = _kpis(week_rows, prev_rows, baseline_weeks, confidence)
        budget = _budget(week_rows, slo, s, e, step)
        versions = _new_versions(rows, s, e, options)
        callers = caller_breakdown(week_rows, top=top_callers, confidence=confidence) if len(week_rows) else None
        callers = callers[callers["rank"] > 0].reset_index(drop=True) if callers is not None else pd.DataFrame()
        reasons = _reasons(week_rows, prev_rows, top_reasons)
        notable = _notable(kpis, budget, versions, reasons, callers, confidence)
        status = _status(versions, budget, notable)
        timeline = (summarize(rows, freq=step, q=(0.5, 0.95, 0.99), confidence=confidence,
                              percentile_confidence=confidence) if len(rows) else pd.DataFrame())  # fmt: skip
        adoption = version_adoption(rows, freq=step, by=None) if len(rows) else pd.DataFrame()
        durations = week_rows[["resource_version", "duration_s"]].reset_index(drop=True)
        what = _what_changed(rows, week_rows, s, e, confidence)
        sections.append(ResourceSection(rid=rid, name=(names or {}).get(rid, rid), status=status, kpis=kpis,
                                        budget=budget, new_versions=versions, callers=callers, reasons=reasons,
                                        notable=notable, timeline=timeline, adoption=adoption,
                                        durations=durations,
                                        whole_seconds=_whole_seconds(durations["duration_s"]),
                                        what_changed=what))  # fmt: skip
    summary = pd.DataFrame([{
        "name": sec.name, "rid": sec.rid, "status": sec.status,
        "executions": sec.kpi("executions").value, "executions_change": sec.kpi("executions").change,
        "failure_rate": sec.kpi("failure rate").value, "failure_rate_change": sec.kpi("failure rate").change,
        "p95": sec.kpi("p95").value, "p95_change": sec.kpi("p95").change,
        "budget_remaining": sec.budget.remaining,
        "new_versions": ", ".join(f"{v.version}: {v.verdict}" for v in sec.new_versions),
    } for sec in sections])  # fmt: skip
    built = (to_utc(now, "now") if now is not None else pd.Timestamp.now(tz="UTC")).floor("s")
    rows = isinstance(df, pd.DataFrame)
    return Report(title=title, start=s, end=e, previous_start=prev_s, previous_end=s, slo=slo,
                  confidence=float(confidence), generated_at=built,
                  source=safe_source(df.attrs.get("source")) if isinstance(df, pd.DataFrame) else None,
                  summary=summary, resources=sections, in_progress=bool(e > built),
                  names={str(k): str(v) for k, v in (names or {}).items()},
                  changed=_ranked_changes(sections), basis="rows" if rows else "summary",
                  needs_rows="" if isinstance(df, pd.DataFrame) else _needs_rows(df),
                  rank_error=math.nan if isinstance(df, pd.DataFrame) else df.rank_error())  # fmt: skip
