"""report: build_weekly_report on simulated data with a known truth, HTML/Markdown rendering, headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import formatting, schema
from exec_analytics.report import (
    Report,
    build_weekly_report,
    render_figures,
    render_html,
    render_markdown,
    render_summary,
    safe_source,
)
from exec_analytics.simulator import Workload

START, END = "2026-11-17T00:00Z", "2026-11-21T00:00Z"  # four days: 1.4.0's rollout (2026-11-17..20)
HISTORY = "2026-11-13T00:00Z"  # one comparison period of the same length before
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>alert("x")</script>'
# What breaks matplotlib's mathtext (an unbalanced "$\frac{$"), a NUL, and bidirectional overrides/isolates that
# would reorder the text around them.
MATHTEXT = "$\\frac{$"
INVISIBLE = "\x00\u202e\u2066\u200f"


def executions_table(wl: Workload, rids: list[str], start: str, end: str) -> pd.DataFrame:
    """The simulator's ground truth in the executions-table dtypes (what load_executions returns)."""
    frames = [
        schema.to_frame(
            pa.Table.from_pandas(wl.ground_truth(r, start, end)[list(schema.COLUMNS)], preserve_index=False)
        )
        for r in rids
    ]
    return schema.concat_frames(frames)


@pytest.fixture(scope="module")
def wl() -> Workload:
    return Workload(seed=0)


@pytest.fixture(scope="module")
def df(wl: Workload) -> pd.DataFrame:
    out = executions_table(wl, [wl.main.rid, wl.resources[2].rid], HISTORY, END)
    out.attrs = {"source": "https://alice:s3cret-token@foundry.example.com:8443/api?token=s3cret-token#frag"}
    return out


@pytest.fixture(scope="module")
def report(wl: Workload, df: pd.DataFrame) -> Report:
    names = {p.rid: p.name for p in wl.resources}
    return build_weekly_report(df, start=START, end=END, names=names, slo=0.95, compare={"n_resamples": 200})


@pytest.fixture(scope="module")
def figures(report: Report) -> dict[str, dict[str, bytes]]:
    return render_figures(report)


@pytest.fixture(scope="module")
def html(report: Report, figures: dict[str, dict[str, bytes]]) -> str:
    return render_html(report, figures=figures)


def test_report_finds_the_regressed_version_and_summarises_every_resource(wl, report, figures):
    assert [s.rid for s in report.resources] == [wl.main.rid, wl.resources[2].rid]
    assert list(report.summary["name"]) == [wl.main.name, wl.resources[2].name]
    main = report.resources[0]
    found = {v.version: v for v in main.new_versions}
    assert set(found) == {wl.main.regressed_version}  # 1.3.0 rolled out before the period: not new
    v = found[wl.main.regressed_version]
    assert v.baseline == "1.3.0" and v.verdict == "regressed"
    assert v.verdicts["p50"] == "regressed"
    assert main.status == "regressed"
    assert any("regressed" in n for n in main.notable)
    assert report.summary.loc[0, "new_versions"] == "1.4.0: regressed"
    assert {"failure_rate", "duration_percentiles", "duration_distribution", "error_budget", "callers",
            "version:1.4.0"} <= set(figures[main.rid])  # fmt: skip


def test_kpis_match_the_analysis_of_each_period(df, report, wl):
    main = report.resources[0]
    rows = df[df["resource_rid"] == wl.main.rid]
    week = rows[(rows["start_time"] >= pd.Timestamp(START)) & (rows["start_time"] < pd.Timestamp(END))]
    prev = rows[rows["start_time"] < pd.Timestamp(START)]
    assert main.kpi("executions").value == len(week)
    assert main.kpi("executions").previous == len(prev)
    failed = week["status"] != "SUCCEEDED"
    assert main.kpi("failure rate").value == pytest.approx(failed.mean())
    assert main.kpi("p95").value == pytest.approx(week["duration_s"].quantile(0.95))
    assert main.kpi("p50").change == pytest.approx(week["duration_s"].median() / prev["duration_s"].median() - 1)
    b = main.budget
    assert b.bad == failed.sum() and b.executions == len(week)
    assert b.burndown["remaining"].iloc[-1] == pytest.approx(b.remaining)
    assert b.remaining == pytest.approx(1 - failed.sum() / (0.05 * len(week)))


def test_week_argument_selects_the_iso_week(df):
    rep = build_weekly_report(df, week="2026-W47", compare={"n_resamples": 50})
    assert rep.start == pd.Timestamp("2026-11-16T00:00Z") and rep.end == pd.Timestamp("2026-11-23T00:00Z")
    assert rep.previous_start == pd.Timestamp("2026-11-09T00:00Z")
    with pytest.raises(ValueError, match="either week or start/end"):
        build_weekly_report(df, week="2026-W47", start=START, end=END)
    with pytest.raises(ValueError, match="ISO week"):
        build_weekly_report(df, week="2026-W60")


def test_source_credentials_never_reach_the_output(report, html):
    assert report.source == "https://foundry.example.com:8443/api"
    for text in (html, render_markdown(report)):
        assert "s3cret" not in text and "alice" not in text
    assert safe_source("not a url token=abc") is None


def test_html_is_self_contained(figures, html):
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)  # no external assets, only data: URLs and anchors
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert html.count('src="data:image/png;base64,') == sum(len(f) for f in figures.values())


@pytest.fixture(scope="module")
def hostile(wl: Workload) -> Report:
    """A report whose versions, RIDs, failure reasons, callers and names carry markup, mathtext and controls."""
    p = wl.resources[2]
    start, end = "2026-11-10T00:00Z", "2026-11-12T00:00Z"
    df = executions_table(wl, [p.rid], "2026-11-08T00:00Z", end)
    evil_rid = f"ri.function-registry.main.function.{HOSTILE}"
    df["resource_rid"] = pd.Categorical([evil_rid] * len(df))
    # Half of the last day runs the new version, beside the old one: a rollout with an overlap to compare.
    late = (df["start_time"] >= pd.Timestamp("2026-11-11T00:00Z")).to_numpy() & (np.arange(len(df)) % 2 == 0)
    version = df["resource_version"].astype(str).where(~late, f"9.9.9{HOSTILE}{MATHTEXT}{INVISIBLE}")
    df["resource_version"] = pd.Categorical(version)
    bad = f'<img src=x onerror="alert(1)">{MATHTEXT}{INVISIBLE}'
    reason = df["failure_reason"].astype(object).where(df["failure_reason"].isna(), bad)
    df["failure_reason"] = pd.Categorical(reason)
    caller = (
        df["caller_rid"]
        .astype(object)
        .where(df["caller_rid"].isna(), f"ri.workshop.main.module.{HOSTILE}{MATHTEXT}{INVISIBLE}")
    )
    df["caller_rid"] = pd.Categorical(caller)
    return build_weekly_report(df, start=start, end=end, names={evil_rid: f"<b>{HOSTILE}{MATHTEXT}{INVISIBLE}</b>"},
                               compare={"n_resamples": 50})  # fmt: skip


def test_hostile_values_are_escaped_in_html_and_markdown(hostile):
    section = hostile.resources[0]
    assert section.new_versions[0].version == f"9.9.9{HOSTILE}{MATHTEXT}{INVISIBLE}"
    assert section.new_versions[0].comparison.shape[0] > 0 and len(section.callers) and len(section.reasons)
    # Every figure with data-driven text is drawn (the forest plot's ticks, the caller bars, the version legend).
    figures = render_figures(hostile)[section.rid]
    assert {"duration_distribution", "callers", f"version:{section.new_versions[0].version}"} <= set(figures)
    html = render_html(hostile, figures=figures)
    assert "<script" not in html and "<img src=x" not in html and "<b><script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    md = render_markdown(hostile)
    assert "<script" not in md and "<img" not in md
    for text in (html, md):
        assert "frac{$" in text  # a dollar sign is text, shown as it is
        assert not set(INVISIBLE) & set(text)  # NUL and bidirectional controls are neutralised...
        assert "\ufffd" in text  # ...visibly


def test_interval_labels_follow_the_confidence(df):
    rep = build_weekly_report(df, start=START, end=END, confidence=0.9, compare={"n_resamples": 50})
    html, md = render_html(rep, figures={}), render_markdown(rep)
    assert rep.confidence == 0.9
    for text in (html, md):
        assert "90% CI" in text and not re.search(r"95% (CI|interval)|[Ii]ntervals are 95%", text)
    assert "Intervals are 90%" in html and "intervals are 90%" in md
    assert "effect [90% CI]" in html and "failure rate (90% CI)" in html
    # The interval shown is the one computed at that level, not a relabelled 95% interval.
    at95 = build_weekly_report(df, start=START, end=END, compare={"n_resamples": 50})
    k90, k95 = rep.resources[0].kpi("failure rate"), at95.resources[0].kpi("failure rate")
    assert k95.low < k90.low < k90.value < k90.high < k95.high
    with pytest.raises(ValueError, match="confidence="):
        build_weekly_report(df, start=START, end=END, compare={"confidence": 0.9})


# --- headless Chromium ------------------------------------------------------------------------------------

# Injected into a test copy of the HTML only: records script errors and whether every image decoded, then
# writes the verdict into the DOM, which `chromium --dump-dom` prints once the page has loaded.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message || e.type)); }, true);
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.alt; });
  var out = document.createElement("pre");
  out.id = "probe-result";
  out.textContent = JSON.stringify({images: imgs.length, undecoded: bad, errors: window.__errors,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000"]  # fmt: skip


def chromium_check(html: str, workdir: Path, screenshot: Path | None = None) -> dict:
    """Load ``html`` in headless Chromium; return the probe's findings, optionally saving a full-page screenshot."""
    assert CHROMIUM
    page = workdir / "report_probe.html"
    page.write_text(html.replace("</head>", PROBE + "\n</head>", 1), encoding="utf-8")
    profile = workdir / "chromium-profile"
    base = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90)
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', dom.stdout, re.S)
    assert match, f"the probe did not run; chromium said: {dom.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                        .replace("&amp;", "&"))  # fmt: skip
    if screenshot is not None:
        height = max(800, min(int(result["height"]) + 40, 16000))  # the whole page, not the first screen
        clean = workdir / "report.html"
        clean.write_text(html, encoding="utf-8")
        subprocess.run([*base, f"--screenshot={screenshot}", f"--window-size=1280,{height}", clean.as_uri()],
                       capture_output=True, text=True, timeout=90, check=True)  # fmt: skip
    return result


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)"
)
def test_report_renders_in_headless_chromium(figures, html, tmp_path):
    shot = tmp_path / "report.png"
    result = chromium_check(html, tmp_path, shot)
    assert result["errors"] == []
    assert result["undecoded"] == []
    assert result["images"] == sum(len(f) for f in figures.values()) > 0
    assert shot.exists() and shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)"
)
def test_hostile_report_runs_no_script_in_chromium(hostile, tmp_path):
    result = chromium_check(render_html(hostile), tmp_path)
    assert result["errors"] == [] and result["undecoded"] == []


def test_terminal_summary_is_formatted_and_inert():
    t = pd.Timestamp("2026-11-16T00:00Z")
    week = pd.Timedelta("7D")
    summary = pd.DataFrame({
        "name": ["checkout", "x" * 50 + "\u202e\x1b[2J"], "rid": ["ri.a", "ri.b"], "status": ["ok", "regressed"],
        "executions": [12345.0, 7.0], "executions_change": [-0.003, float("nan")],
        "failure_rate": [0.0123, 0.5], "failure_rate_change": [0.0025, float("nan")],
        "p95": [300.0, 0.85], "p95_change": [0.123, float("nan")], "budget_remaining": [0.42, -1.5],
        "new_versions": ["", "2.0.0: regressed"],
    })  # fmt: skip
    report = Report(title="t", start=t, end=t + week, previous_start=t - week, previous_end=t, slo=0.999,
                    confidence=0.95, generated_at=t, source=None, summary=summary, resources=[])  # fmt: skip
    assert render_summary(report).splitlines() == [
        "2026-11-16 00:00 UTC – 2026-11-23 00:00 UTC, compared with 2026-11-09 00:00 UTC – 2026-11-16 00:00 UTC; "
        "SLO 99.9%",
        "resource                          status         executions      failure rate             p95  budget left",
        "checkout                          ok         12,345 (-0.3%)  1.23% (+0.25 pp)  5.0 min (+12%)          42%",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…  regressed           7 (–)        50.00% (–)      850 ms (–)        -150%",
        "x" * 50 + "\ufffd\ufffd[2J · new versions 2.0.0: regressed",
    ]
    assert max(len(line) for line in render_summary(report).splitlines()) <= 120


def test_markdown_draws_no_figure_and_html_draws_them_from_the_data(report, monkeypatch):
    from exec_analytics.report import figures as drawing

    drawn: list[tuple[float, float]] = []
    real = drawing._png
    monkeypatch.setattr(drawing, "_png", lambda draw, size: drawn.append(size) or real(draw, size))
    render_markdown(report)
    assert drawn == []
    html = render_html(report)
    assert len(drawn) == html.count('src="data:image/png;base64,') >= 5
    assert not any(isinstance(v, bytes) for sec in report.resources for v in vars(sec).values())


# --- status, periods not over, whole seconds, the distribution metric ---------------------------------------

RID = "ri.function-registry.main.function.5a1e"


def synthetic(failures: int, previous_failures: int, n: int = 2000, whole: bool = True) -> pd.DataFrame:
    """Two days of ``n`` executions each (one version, one caller), the first ``failures`` of the second day and
    the first ``previous_failures`` of the first day failed; durations 1-3 s (80% at 2 s), whole seconds when
    ``whole``."""
    rng = np.random.default_rng(7)
    t0 = pd.Timestamp("2026-11-10T00:00Z")
    rows = []
    for day, failed in ((0, previous_failures), (1, failures)):
        start = t0 + pd.Timedelta(days=day) + pd.to_timedelta(np.sort(rng.uniform(0, 86_000, n)), unit="s")
        dur = rng.choice([1.0, 2.0, 3.0], n, p=[0.1, 0.8, 0.1]) if whole else rng.uniform(1, 3, n)
        status = np.where(np.arange(n) < failed, "FAILED", "SUCCEEDED")
        rows.append(pd.DataFrame({
            "start_time": start.floor("ms"), "duration_s": dur, "status": status,
            "failure_reason": np.where(status == "FAILED", "timeout", None), "resource_rid": RID,
            "resource_version": "1.0.0", "caller_rid": "ri.workshop.main.module.c1", "trace_owning_rid": RID,
            "foundry_trace_id": [f"t{day}-{i}" for i in range(n)],
        }))  # fmt: skip
    frame = pd.concat(rows, ignore_index=True)
    return schema.to_frame(pa.Table.from_pandas(frame, preserve_index=False))


@pytest.mark.parametrize(
    ("failures", "status"),
    [(0, "ok"), (14, "ok"), (16, "at risk"), (20, "budget exhausted"), (31, "budget exhausted")],  # 20 allowed
)
def test_status_reflects_the_budget_left(failures: int, status: str) -> None:
    df = synthetic(failures, failures)
    rep = build_weekly_report(df, start="2026-11-11T00:00Z", end="2026-11-12T00:00Z", slo=0.99)
    sec = rep.resources[0]
    remaining = 1 - failures / (0.01 * 2000)
    assert sec.budget.remaining == pytest.approx(remaining)
    assert sec.status == status
    html, md = render_html(rep, figures={}), render_markdown(rep)
    assert f">{status}</span>" in html and f"status: **{status}**" in md
    # One resource, no summary table: the statuses are explained under its heading.
    note = "at risk (less than 25% of the period's budget left)"
    assert note in unescape(html) and note in md


def test_status_thresholds_are_documented_where_statuses_are_shown(report, html) -> None:
    from exec_analytics.report import AT_RISK_BELOW

    assert AT_RISK_BELOW == 0.25
    note = "at risk (less than 25% of the period's budget left)"
    assert note in unescape(html) and note in render_markdown(report)


def test_a_period_that_is_not_over_is_flagged_everywhere() -> None:
    df = synthetic(0, 0)
    period = {"start": "2026-11-11T00:00Z", "end": "2026-11-12T00:00Z"}
    live = build_weekly_report(df, **period, now="2026-11-11T18:30Z")
    assert live.in_progress and live.generated_at == pd.Timestamp("2026-11-11T18:30Z")
    words = "This period is not over: it ends 2026-11-12 00:00 UTC"
    for text in (render_html(live, figures={}), render_markdown(live), render_summary(live)):
        assert words in text
    assert all(len(line) <= 120 for line in render_summary(live).splitlines())
    over = build_weekly_report(df, **period, now="2026-11-12T00:00Z")
    assert not over.in_progress
    for text in (render_html(over, figures={}), render_markdown(over), render_summary(over)):
        assert "not over" not in text


def test_whole_second_durations_are_named_next_to_collapsed_intervals() -> None:
    rep = build_weekly_report(synthetic(0, 0), start="2026-11-11T00:00Z", end="2026-11-12T00:00Z")
    sec = rep.resources[0]
    assert sec.whole_seconds
    p50 = sec.kpi("p50")
    assert p50.low == p50.high == p50.value == 2.0  # 80% of the executions at 2 s: the interval collapses
    md = render_markdown(rep)
    line = next(line for line in md.splitlines() if line.startswith("| p50 "))
    assert "(95% CI 2.00 s – 2.00 s; durations reported in whole seconds)" in line
    assert "durations reported in whole seconds" in render_html(rep, figures={})
    fine = build_weekly_report(synthetic(0, 0, whole=False), start="2026-11-11T00:00Z", end="2026-11-12T00:00Z")
    assert not fine.resources[0].whole_seconds and "whole seconds" not in render_markdown(fine)


def test_whole_seconds_from_a_second_up(df, wl) -> None:
    # As the API reports some resources: milliseconds below a second, whole seconds from a second up.
    d = df["duration_s"]
    api = df.assign(duration_s=d.where(d < 1, d.round()))
    rep = build_weekly_report(api, start=START, end=END, resources=[wl.main.rid], compare={"n_resamples": 50})
    main = rep.resources[0]
    assert main.whole_seconds
    p95 = main.kpi("p95")
    assert p95.low == p95.high == p95.value and p95.value >= 1
    lines = render_markdown(rep).splitlines()
    assert "durations reported in whole seconds" in next(line for line in lines if line.startswith("| p95 "))
    # An interval that did not collapse needs no excuse.
    assert "whole seconds" not in next(line for line in lines if line.startswith("| p50 "))
    # Every duration in milliseconds (a uniform millisecond part added): whole about once in a thousand.
    ms = np.random.default_rng(3).integers(1, 1000, len(d)) / 1000
    fine = df.assign(duration_s=d.where(d < 1, d.round() + ms))
    exact = build_weekly_report(fine, start=START, end=END, resources=[wl.main.rid], compare={"n_resamples": 50})
    assert not exact.resources[0].whole_seconds
    # The simulated API, like Foundry's, sends some durations in seconds and others in milliseconds.
    mixed = df.assign(duration_s=d.where((d < 1) | (np.arange(len(d)) % 3 > 0), d.round()))
    part = build_weekly_report(mixed, start=START, end=END, resources=[wl.main.rid], compare={"n_resamples": 50})
    assert part.resources[0].whole_seconds


def test_the_distribution_metric_is_explained_where_shown(report, html) -> None:
    assert "distribution" in report.resources[0].new_versions[0].verdicts
    assert "Distribution (P(slower)): the chance that a candidate execution is slower" in html
    assert "distribution (P(slower)): the chance that a candidate execution is slower" in render_markdown(report)


def test_report_json_has_the_documented_schema(report) -> None:
    from exec_analytics.report import render_json

    doc = json.loads(render_json(report))
    assert set(doc) == {"title", "start", "end", "previous_start", "previous_end", "generated_at", "in_progress",
                        "slo", "confidence", "source", "changed", "resources"}  # fmt: skip
    assert doc["start"] == "2026-11-17T00:00:00Z" and doc["end"] == "2026-11-21T00:00:00Z"
    assert doc["source"] == "https://foundry.example.com:8443/api" and doc["slo"] == 0.95
    main = doc["resources"][0]
    sec = report.resources[0]
    assert main["name"] == sec.name and main["status"] == sec.status == "regressed"
    assert main["budget"]["remaining"] == pytest.approx(sec.budget.remaining)
    assert {k["name"]: k["value"] for k in main["kpis"]} == pytest.approx({k.name: k.value for k in sec.kpis})
    assert len(main["callers"]) == len(sec.callers) and len(main["reasons"]) == len(sec.reasons)
    assert main["new_versions"][0]["verdicts"] == sec.new_versions[0].verdicts
    what = main["what_changed"]
    assert set(what) == {"changed", "sentences", "causes", "change_points", "moments", "note"}
    assert all(isinstance(t, str) for t in what["sentences"] + what["moments"])
    assert set(doc["changed"][0]) == {"name", "rid", "failure_rate_change", "p50_change", "headline"}
    assert {"metric", "component", "by", "segment", "contribution", "low", "high", "cause"} <= set(what["causes"][0])
    assert {"metric", "period_start", "moment_low", "moment_high", "change", "coincided"} <= set(
        what["change_points"][0])  # fmt: skip
    assert what["changed"] is True and what["sentences"] == sec.what_changed.sentences
    assert what["moments"] == sec.what_changed.moments and what["note"] == ""
    assert [c["contribution"] for c in what["causes"]] == pytest.approx(list(sec.what_changed.causes["contribution"]))
    cps = sec.what_changed.change_points
    assert [c["period_start"] for c in what["change_points"]] == [
        t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in cps["period_start"]]  # fmt: skip
    assert [c["rid"] for c in doc["changed"]] == list(report.changed["rid"])
    assert doc["changed"][0]["headline"] == sec.what_changed.headline
    assert doc["resources"][1]["what_changed"]["changed"] is False


def test_names_replace_rids_in_headings_and_caller_tables(df, report, wl) -> None:
    main = report.resources[0]
    top = str(main.callers["caller_rid"].iloc[0])
    names = {wl.main.rid: "scoring", top: "nightly sentinel"}
    rep = build_weekly_report(df, start=START, end=END, resources=[wl.main.rid], names=names,
                              compare={"n_resamples": 50})  # fmt: skip
    md = render_markdown(rep)
    assert "## scoring" in md and "| nightly sentinel |" in md and f"| {top} |" not in md
    html = render_html(rep, figures={})
    assert ">nightly sentinel</td>" in html and f">{top}</td>" not in html
    assert rep.names == names


# --- what changed --------------------------------------------------------------------------------------------


def _what_changed_html(html: str, position: int) -> str:
    """The What-changed part of the ``position``-th resource's section, as text."""
    part = html.split(f'<h3 id="changes-{position}">What changed</h3>', 1)[1].split("<h3>Error budget</h3>", 1)[0]
    return unescape(re.sub(r"<[^>]+>", " ", part))


def test_what_changed_names_the_regression_within_1_4_0(wl, df, report, html) -> None:
    from exec_analytics.analysis import explain_change

    sec = report.resources[0]
    what = sec.what_changed
    assert what.changed and what.note == ""
    # The simulator's 1.4.0 regression (timeouts) is attributed within that version, to timeouts.
    assert "within version 1.4.0 (timeout)" in what.sentences[0]
    assert "within version 1.4.0 (timeout)" in _what_changed_html(html, 1)
    assert "within version 1.4.0 (timeout)" in render_markdown(report)
    # The causes are exactly explain_change's causes over the period and the previous one of the same length.
    rows = df[(df["resource_rid"] == wl.main.rid).to_numpy()]
    truth = explain_change(rows, (START, END), (HISTORY, START), confidence=report.confidence).table
    truth = truth[truth["cause"]]
    assert len(what.causes) == len(truth) > 0 and bool(what.causes["cause"].all())
    assert sorted(what.causes["contribution"]) == pytest.approx(sorted(truth["contribution"]))
    assert what.causes.query("metric == 'failure_rate' and by == 'resource_version' and segment == '1.4.0'")[
        "contribution"].gt(0).any()  # fmt: skip
    # The failure rate shifted while 1.4.0 rolled out (2026-11-17..20), and the shift is up, with 1.4.0 named.
    rate = what.change_points[what.change_points["metric"] == "failure_rate"]
    assert len(rate) >= 1
    first = rate.iloc[0]
    assert pd.Timestamp("2026-11-17T09:00Z") <= first["period_start"] <= pd.Timestamp("2026-11-20T12:00Z")
    assert first["moment_low"] <= first["period_start"] <= first["moment_high"] and first["change"] > 0
    assert "1.4.0" in first["coincided"] and "1.4.0" in what.moments[0]
    assert set(what.change_points["metric"]) <= {"failure_rate", "p50", "p95"}
    shown = _what_changed_html(html, 1)  # the table of shifts: moment, its interval, size, what coincided
    assert f"{formatting.timestamp(first['moment_low'])} – {formatting.timestamp(first['moment_high'])}" in shown
    assert formatting.pp_change(first["change"]) in shown and first["coincided"] in shown
    # A percentile's within part is the change at the previous mix, not a segment's.
    assert "p95 within (at the previous mix)" in " ".join(shown.split()) and "caller_rid –" not in shown
    # Ranked near the top of a multi-resource report, with its first sentence.
    assert list(report.changed["rid"]) == [wl.main.rid]
    assert report.changed["headline"].iloc[0] == what.sentences[0]
    top = unescape(re.sub(r"<[^>]+>", " ", html.split('<h2 id="changed">', 1)[1].split('<h2 id="r1">', 1)[0]))
    assert what.sentences[0] in top
    summary = render_summary(report).splitlines()
    changed_lines = [line for line in summary if " · changed: " in line]
    headline = what.sentences[0]
    short = re.sub(r" \((\+[0-9.]+ pp), interval [^()]* to [^()]*\)", r" (\1)", headline)
    assert short != headline and short.startswith("Failure rate ") and "within version 1.4.0 (timeout)" in short
    assert changed_lines == [(f"{sec.name} · changed: {short}")[:119] + "…"]


def test_a_quiet_resource_says_nothing_changed(wl, report, html) -> None:
    sec = report.resources[1]
    assert sec.rid == wl.resources[2].rid
    what = sec.what_changed
    # No part of its change on the previous period is a cause, and no metric shifted within the period.
    assert not what.changed and not len(what.causes) and not len(what.change_points) and what.moments == []
    assert what.headline == "Nothing changed."
    assert "nothing changed beyond noise" in what.sentences[0]
    assert "Nothing changed: no part of the change" in _what_changed_html(html, 2)
    md = render_markdown(report).split(f"## {sec.name}", 1)[1]
    assert "**What changed**\n\nNothing changed: no part of the change" in md
    assert sec.rid not in set(report.changed["rid"])
    assert not any(line.startswith(f"{sec.name} · changed") for line in render_summary(report).splitlines())


def test_changed_resources_are_ranked_by_failure_rate_then_p50(report) -> None:
    from dataclasses import replace

    from exec_analytics.report.build import Kpi, WhatChanged, _ranked_changes

    base = report.resources[0]

    def section(name: str, rate: float, p50: float, changed: bool = True):
        kpis = [replace(k, value=k.previous + rate if k.name == "failure rate" else k.previous * (1 + p50))
                if k.name in ("failure rate", "p50") else k for k in base.kpis]  # fmt: skip
        assert isinstance(kpis[1], Kpi)
        return replace(base, name=name, rid=f"ri.{name}", kpis=kpis,
                       what_changed=WhatChanged(changed=changed, moments=[f"{name} moved."]))  # fmt: skip

    ranked = _ranked_changes([section("a", 0.001, 0.5), section("b", -0.02, 0.0), section("c", 0.001, -0.9),
                              section("d", 0.5, 0.5, changed=False)])  # fmt: skip
    assert list(ranked["name"]) == ["b", "c", "a"]  # |rate change| first, then |p50 change|; d did not change
    assert list(ranked["headline"]) == ["b moved.", "c moved.", "a moved."]
    assert list(ranked.columns) == ["name", "rid", "failure_rate_change", "p50_change", "headline"]


def test_what_changed_text_is_escaped_and_inert(hostile) -> None:
    from dataclasses import replace

    from exec_analytics.report import WhatChanged

    evil = f"{HOSTILE}{MATHTEXT}{INVISIBLE}"
    sec = hostile.resources[0]
    causes = pd.DataFrame({"metric": ["failure_rate"], "component": ["within"], "by": ["resource_version"],
                           "segment": [evil], "failure_reason": [evil], "contribution": [0.01], "low": [0.005],
                           "high": [0.015], "cause": [True], "share_previous": [float("nan")],
                           "share_period": [float("nan")], "value_previous": [0.01],
                           "value_period": [0.02]})  # fmt: skip
    t = pd.Timestamp("2026-11-11T06:00Z")
    points = pd.DataFrame({"metric": ["failure_rate"], "period_start": [t], "moment_low": [t - pd.Timedelta("1h")],
                           "moment_high": [t + pd.Timedelta("1h")], "value_before": [0.01], "value_after": [0.02],
                           "change": [0.01],
                           "coincided": [f"version {evil} went from 0% to 50% of executions"]})  # fmt: skip
    what = WhatChanged(changed=True, sentences=[f"Failure rate up: +1.00 pp within version {evil} ({evil})."],
                       causes=causes, change_points=points,
                       moments=[f"Failure rate shifted; coincided with {evil}."])  # fmt: skip
    changed = pd.DataFrame({"name": [sec.name], "rid": [sec.rid], "failure_rate_change": [0.01],
                            "p50_change": [0.0], "headline": [what.headline]})  # fmt: skip
    rep = replace(hostile, resources=[replace(sec, what_changed=what)], changed=changed)
    html = render_html(rep)  # draws the figures too, with the hostile change point's band and line
    assert "<script" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    section = _what_changed_html(html, 1)
    assert f"within version {HOSTILE}$\\frac{{$" in section and "0% to 50%" in section
    md = render_markdown(rep)
    summary = render_summary(rep)
    assert "<script" not in md and "&lt;script&gt;" in md and "\\frac{$" in md
    assert "<script>" in summary  # the terminal shows the data as it is, made inert
    for text in (html, md, summary):
        assert not set(INVISIBLE) & set(text)


def test_report_figures_mark_the_change_points(report, monkeypatch) -> None:
    import matplotlib.dates as mdates

    from exec_analytics import plots
    from exec_analytics.report import figures as drawing

    drawn: dict[str, list] = {}
    for name in ("plot_failure_rate", "plot_duration_percentiles"):
        real = getattr(plots, name)

        def record(*args, _real=real, _name=name, **kwargs):
            ax = _real(*args, **kwargs)
            drawn.setdefault(_name, []).append(ax)
            return ax

        monkeypatch.setattr(plots, name, record)
    sec = report.resources[0]
    drawing.render_figures(report)
    cps = sec.what_changed.change_points

    def marks(ax) -> tuple[list[float], list[float], list[float]]:
        bands = [p for p in ax.patches if p.get_gid() == plots.CHANGE_INTERVAL_GID]
        lines = [ln for ln in ax.get_lines() if ln.get_gid() == plots.CHANGE_POINT_GID]
        return ([b.get_x() for b in bands], [b.get_x() + b.get_width() for b in bands],
                [float(ln.get_xdata()[0]) for ln in lines])  # fmt: skip

    def dates(values) -> list[float]:
        return list(mdates.date2num(pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None).to_numpy()))

    for name, metrics in (("plot_failure_rate", ["failure_rate"]), ("plot_duration_percentiles", ["p50", "p95"])):
        rows = cps[cps["metric"].isin(metrics)]
        assert len(rows) > 0
        low, high, at = marks(drawn[name][0])
        assert low == pytest.approx(dates(rows["moment_low"])) and high == pytest.approx(dates(rows["moment_high"]))
        assert at == pytest.approx(dates(rows["period_start"]))
        assert marks(drawn[name][1]) == ([], [], [])  # the quiet resource: nothing to mark
    assert "change point" in " ".join(t.get_text() for t in drawn["plot_failure_rate"][0].get_legend().get_texts())
