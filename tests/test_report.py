"""report: build_weekly_report on simulated data with a known truth, HTML/Markdown rendering, headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.report import (
    Report,
    build_weekly_report,
    render_figures,
    render_html,
    render_markdown,
    safe_source,
)
from exec_analytics.simulator import Workload

START, END = "2026-11-17T00:00Z", "2026-11-21T00:00Z"  # four days: 1.4.0's rollout (2026-11-17..20)
HISTORY = "2026-11-13T00:00Z"  # one comparison period of the same length before
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = '<script>alert("x")</script>'


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
    """A report whose versions, RIDs, failure reasons and callers carry markup."""
    p = wl.resources[2]
    start, end = "2026-11-10T00:00Z", "2026-11-12T00:00Z"
    df = executions_table(wl, [p.rid], "2026-11-08T00:00Z", end)
    evil_rid = f"ri.function-registry.main.function.{HOSTILE}"
    df["resource_rid"] = pd.Categorical([evil_rid] * len(df))
    late = (df["start_time"] >= pd.Timestamp("2026-11-11T00:00Z")).to_numpy()
    version = df["resource_version"].astype(str).where(~late, f"9.9.9{HOSTILE}")
    df["resource_version"] = pd.Categorical(version)
    reason = df["failure_reason"].astype(object).where(df["failure_reason"].isna(), '<img src=x onerror="alert(1)">')
    df["failure_reason"] = pd.Categorical(reason)
    caller = df["caller_rid"].astype(object).where(df["caller_rid"].isna(), f"ri.workshop.main.module.{HOSTILE}")
    df["caller_rid"] = pd.Categorical(caller)
    return build_weekly_report(df, start=start, end=end, names={evil_rid: f"<b>{HOSTILE}</b>"},
                               compare={"n_resamples": 50})  # fmt: skip


def test_hostile_values_are_escaped_in_html_and_markdown(hostile):
    assert hostile.resources[0].new_versions[0].version == f"9.9.9{HOSTILE}"
    html = render_html(hostile)
    assert "<script" not in html and "<img src=x" not in html and "<b><script" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    md = render_markdown(hostile)
    assert "<script" not in md and "<img" not in md


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
