"""The weekly report from a mergeable summary equals the report from the rows it summarises.

Counts, rates, their intervals, the budget, statuses and tables must be identical; percentiles within the
sketches' rank error, their widened intervals containing the exact ones. What needs rows says so.
"""

from __future__ import annotations

import json
import math
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.cli import REPORT_FAIL_ON_CODES, main
from exec_analytics.report import Report, build_weekly_report, render_html, render_json, render_markdown, render_summary
from exec_analytics.summary import Summary, from_frame

START, END = pd.Timestamp("2026-11-11T00:00Z"), pd.Timestamp("2026-11-13T00:00Z")
HISTORY = START - (END - START)
RIDS = [f"ri.function-registry.main.function.r{i}" for i in range(4)]
CALLERS = [f"ri.workshop.main.module.c{i}" for i in range(4)]
REASONS = np.array(["timeout", "internal_error", "upstream_unavailable"], dtype=object)
#: Failure rate per resource in the previous period and this one: steady, up, budget exhausted, ok and faster.
RATES = [(0.004, 0.004), (0.01, 0.03), (0.02, 0.02), (0.002, 0.002)]
#: Median duration per resource, previous and this period (resource 3 got twice as slow).
MEDIANS = [(0.5, 0.5), (2.0, 2.0), (1.0, 1.0), (0.3, 0.6)]


def fleet_rows(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    """Four resources over two 2-day periods: two versions, four callers, three reasons, millisecond durations."""
    rng = np.random.default_rng(seed)
    frames = []
    for rid, rates, medians in zip(RIDS, RATES, MEDIANS, strict=True):
        for period, (rate, median) in enumerate(zip(rates, medians, strict=True)):
            t0 = HISTORY + period * (END - START)
            start = t0 + pd.to_timedelta(np.sort(rng.uniform(0, (END - START).total_seconds(), n)), unit="s")
            failed = rng.random(n) < rate * np.where(rng.integers(0, 4, n) == 0, 3.0, 0.33)  # caller c0 fails most
            caller = np.where(failed, CALLERS[0], np.array(CALLERS, dtype=object)[rng.integers(0, 4, n)])
            frames.append(pd.DataFrame({
                "start_time": start.floor("ms"),
                "duration_s": np.round(rng.lognormal(np.log(median), 0.6, n), 3),
                "status": np.where(failed, "FAILED", "SUCCEEDED"),
                "failure_reason": np.where(failed, REASONS[rng.integers(0, 3, n)], None),
                "resource_rid": rid,
                "resource_version": np.where(rng.random(n) < 0.5, "1.0.0", "1.1.0"),
                "caller_rid": caller, "trace_owning_rid": rid,
                "foundry_trace_id": [f"{rid}-{period}-{i}" for i in range(n)],
            }))  # fmt: skip
    frame = pd.concat(frames, ignore_index=True)
    return schema.to_frame(pa.Table.from_pandas(frame, preserve_index=False))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return fleet_rows()


@pytest.fixture(scope="module")
def fine(rows: pd.DataFrame) -> Summary:
    # Five-minute buckets resolve every burn-rate window: the budget's alerts are exact too.
    return from_frame(rows, freq="5min")


@pytest.fixture(scope="module")
def from_rows(rows: pd.DataFrame) -> Report:
    return build_weekly_report(rows, start=START, end=END, resources=RIDS, slo=0.99, now=END)


@pytest.fixture(scope="module")
def from_summary(fine: Summary) -> Report:
    return build_weekly_report(fine, start=START, end=END, slo=0.99, now=END)


def _durations(rows: pd.DataFrame, rid: str, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    t = rows["start_time"]
    mine = rows[(rows["resource_rid"] == rid) & (t >= start) & (t < end)]
    return np.sort(mine["duration_s"].to_numpy(dtype="float64"))


def _within_rank(values: np.ndarray, x: float, q: float, eps: float) -> bool:
    """Whether ``x`` sits at a rank of ``values`` within ``q +- eps`` (ties give a span of ranks)."""
    below = np.searchsorted(values, x, "left") / len(values)
    at_or_below = np.searchsorted(values, x, "right") / len(values)
    return below <= q + eps and at_or_below >= q - eps


COUNT_COLUMNS = ["name", "rid", "status", "executions", "executions_change", "failure_rate", "failure_rate_change",
                 "budget_remaining", "new_versions"]  # fmt: skip


def test_counts_rates_budget_and_statuses_equal_the_rows(from_rows: Report, from_summary: Report) -> None:
    assert from_summary.basis == "summary" and from_rows.basis == "rows"
    pd.testing.assert_frame_equal(from_summary.summary[COUNT_COLUMNS], from_rows.summary[COUNT_COLUMNS])
    # The data holds every status: a change of failure rate, an exhausted budget, a slowdown, and quiet ones.
    assert set(from_rows.summary["status"]) >= {"attention", "budget exhausted"}
    for a, b in zip(from_rows.resources, from_summary.resources, strict=True):
        assert (a.rid, a.status) == (b.rid, b.status)
        # Notes on counts are word for word the same; a percentile's note quotes sketch values, and the wider
        # intervals of the summary can only leave one out.
        pct = ("p50 ", "p95 ", "p99 ")
        assert [n for n in a.notable if not n.startswith(pct)] == [n for n in b.notable if not n.startswith(pct)]
        assert {n.split()[0] for n in b.notable if n.startswith(pct)} <= {n.split()[0] for n in a.notable}
        for name in ("executions", "failure rate"):
            assert a.kpi(name) == b.kpi(name)
            assert a.kpi(name).significant == b.kpi(name).significant
            assert a.kpi(name).change == b.kpi(name).change or math.isnan(a.kpi(name).change)
        ab, bb = a.budget, b.budget
        assert (ab.executions, ab.bad, ab.sli, ab.sli_low, ab.sli_high, ab.consumed, ab.remaining, ab.alerts) == (
            bb.executions, bb.bad, bb.sli, bb.sli_low, bb.sli_high, bb.consumed, bb.remaining, bb.alerts)  # fmt: skip
        pd.testing.assert_frame_equal(ab.burndown, bb.burndown)
        pd.testing.assert_frame_equal(a.reasons, b.reasons, check_categorical=False, check_dtype=False)
        counts = ["rank", "caller_rid", "caller_kind", "callers", "executions", "share", "failures", "failure_share",
                  "rate", "rate_low", "rate_high", "excess_failures_low", "durations", "low_volume"]  # fmt: skip
        pd.testing.assert_frame_equal(a.callers[counts], b.callers[counts], check_categorical=False,
                                      check_dtype=False)  # fmt: skip
        rates = ["period_start", "executions", "failures", "rate", "rate_low", "rate_high", "durations"]
        pd.testing.assert_frame_equal(a.timeline[rates], b.timeline[rates])
        pd.testing.assert_frame_equal(a.adoption, b.adoption, check_categorical=False)
        assert a.new_versions == b.new_versions == []


def test_percentiles_within_the_rank_error_and_intervals_contain_the_exact_ones(
    rows: pd.DataFrame, from_rows: Report, from_summary: Report
) -> None:
    eps = from_summary.rank_error
    assert 0 < eps < 0.01 and math.isnan(from_rows.rank_error)
    for a, b in zip(from_rows.resources, from_summary.resources, strict=True):
        periods = {"value": (START, END), "previous": (HISTORY, START)}
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            ka, kb = a.kpi(name), b.kpi(name)
            for which, (s, e) in periods.items():
                values = _durations(rows, a.rid, s, e)
                assert _within_rank(values, getattr(kb, which), q, eps), (a.rid, name, which)
            # The widened interval of each period holds the exact one.
            assert kb.low <= ka.low and kb.high >= ka.high
            assert kb.previous_low <= ka.previous_low and kb.previous_high >= ka.previous_high
            # Wider intervals never call a change significant that the exact ones do not.
            assert not kb.significant or ka.significant
    # The doubled median of r3 is a change both see.
    assert from_rows.resources[3].kpi("p50").significant and from_summary.resources[3].kpi("p50").significant


def test_what_needs_rows_says_so_and_how_to_drill_down(from_summary: Report) -> None:
    sec = from_summary.resources[1]
    assert sec.drill_down == f"exec-analytics report {sec.rid} --start 2026-11-11T00:00Z --end 2026-11-13T00:00Z " \
                             "--out report.html"  # fmt: skip
    assert {"version comparisons", "what changed", "duration distribution"} <= set(sec.left_out)
    assert "burn-rate alerts" not in sec.left_out  # 5-minute buckets resolve them
    assert "need the executions rows" in sec.what_changed.note and sec.drill_down in sec.what_changed.note
    assert not sec.what_changed.changed and from_summary.changed.empty
    md = render_markdown(from_summary)
    assert "Built from a summary (5 min buckets)" in md and f"`{sec.drill_down}`" in md
    assert "No duration distribution:" in md
    terminal = render_summary(from_summary)
    assert "Built from a summary" in terminal and max(map(len, terminal.splitlines())) <= 120
    # Nothing was computed about changes: no output may claim that nothing changed.
    html = unescape(render_html(from_summary, figures={}))
    for text in (md, html, terminal):
        assert "Nothing changed" not in text
    assert md.count("Not known from a summary") == 1 + len(from_summary.resources)
    assert html.count("Not known from a summary") == 1 + len(from_summary.resources)


def test_json_from_a_summary_is_valid_and_documented(from_summary: Report, from_rows: Report) -> None:
    from test_cli_output import _check_report_json

    data = json.loads(render_json(from_summary))
    assert data.pop("basis") == "summary" and data.pop("needs_rows").startswith("Built from a summary")
    assert data.pop("rank_error") == pytest.approx(from_summary.rank_error)
    res = data["resources"][1]
    assert res.pop("drill_down").startswith("exec-analytics report ") and "what changed" in res.pop("left_out")
    assert res["what_changed"]["note"] and res["callers"] and res["reasons"]
    for other in data["resources"]:
        other.pop("drill_down", None), other.pop("left_out", None)
    _check_report_json(data)  # the rest is the schema of a report from rows
    assert "basis" not in json.loads(render_json(from_rows))
    docs = (Path(__file__).parents[1] / "docs" / "cli-json.md").read_text(encoding="utf-8")
    for key in ("basis", "needs_rows", "rank_error", "left_out", "drill_down"):
        assert f"`{key}`" in docs


def test_html_from_a_summary_renders_in_chromium_with_the_needs_rows_note(from_summary: Report, tmp_path) -> None:
    from test_report import CHROMIUM, chromium_check

    html = render_html(from_summary)
    text = unescape(html)
    assert "Built from a summary (5 min buckets)" in text
    assert "Drill down (this resource's window alone)" in text and "No duration distribution:" in text
    assert "duration_distribution" not in html
    if CHROMIUM is None:
        pytest.skip("headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)")
    result = chromium_check(html, tmp_path)
    assert result["errors"] == [] and result["undecoded"] == []
    assert result["images"] == 4 * 4  # failure rate, percentiles, budget and callers per resource


def test_coarse_buckets_keep_the_budget_but_say_alerts_are_unknown(rows: pd.DataFrame, from_rows: Report) -> None:
    rep = build_weekly_report(from_frame(rows, freq="1h"), start=START, end=END, slo=0.99, now=END)
    for a, b in zip(from_rows.resources, rep.resources, strict=True):
        assert (a.budget.executions, a.budget.bad, a.budget.remaining, a.budget.sli_low) == (
            b.budget.executions, b.budget.bad, b.budget.remaining, b.budget.sli_low)  # fmt: skip
        assert b.budget.alerts == [] and "5 minutes" in b.left_out["burn-rate alerts"]
    assert "alerts not known" in render_markdown(rep)
    assert "Alerts not known" in unescape(render_html(rep, figures={}))


def test_buckets_must_divide_the_period_and_the_timeline(rows: pd.DataFrame) -> None:
    daily = from_frame(rows, freq="1D")
    with pytest.raises(ValueError, match="bucket boundaries"):
        build_weekly_report(daily, start="2026-11-11T12:00Z", end="2026-11-13T00:00Z")
    with pytest.raises(ValueError, match="not a whole number of the summary's"):
        build_weekly_report(daily, start=START, end=END, freq="6h")
    # By default a 2-day period draws 6-hour buckets; a daily summary draws its own days.
    rep = build_weekly_report(daily, start=START, end=END, now=END)
    assert [s.kpi("executions").value for s in rep.resources] == [3000.0] * 4
    assert list(rep.resources[0].timeline["period_start"]) == list(pd.date_range(HISTORY, periods=4, freq="1D"))
    with pytest.raises(ValueError, match="no executions in the summary"):
        build_weekly_report(daily, start=START, end=END, freq="1D", resources="ri.function-registry.main.function.x")


def test_a_summary_without_callers_says_so_instead_of_ranking_them(fine: Summary) -> None:
    rep = build_weekly_report(fine.regroup(drop=["caller_rid"]), start=START, end=END, slo=0.99, now=END)
    sec = rep.resources[1]
    assert sec.callers.empty and "without callers" in sec.left_out["callers"]
    assert len(sec.reasons) and sec.kpi("failure rate").value > 0
    assert "No caller table: this summary was regrouped without callers" in unescape(render_html(rep, figures={}))
    assert "**No callers:**" in render_markdown(rep)


def test_an_empty_summary(rows: pd.DataFrame) -> None:
    empty = from_frame(rows.iloc[:0], freq="1h")
    with pytest.raises(ValueError, match="summary is empty"):
        build_weekly_report(empty)
    rep = build_weekly_report(empty, start=START, end=END, now=END)
    assert rep.resources == [] and rep.basis == "summary"
    assert json.loads(render_json(rep))["resources"] == []
    assert "Built from a summary" in render_markdown(rep) and "<html" in render_html(rep)


def test_cli_reports_from_a_saved_summary_in_every_format(
    fine: Summary, from_summary: Report, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "summary"
    fine.write(saved)
    period = ["--start", "2026-11-11T00:00Z", "--end", "2026-11-13T00:00Z"]
    assert main(["report", "--summary", str(saved), *period, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in data["resources"]] == list(from_summary.summary["status"])
    assert data["basis"] == "summary"
    out = tmp_path / "fleet.md"
    fail = ["--fail-on", "at-risk,budget-exhausted"]
    code = main(["report", "--summary", str(saved), *period, "--out", str(out), *fail])
    assert code == REPORT_FAIL_ON_CODES["budget-exhausted"] == 14
    assert "Built from a summary" in out.read_text(encoding="utf-8")
    captured = capsys.readouterr()
    assert captured.err == f"budget exhausted: {RIDS[1]}, {RIDS[2]}\n"
    html = tmp_path / "one.html"
    one = ["report", RIDS[0], "--summary", str(saved), *period, "--out", str(html), "--fail-on", "regressed"]
    assert main([*one, "--no-figures"]) == 0
    page = html.read_text(encoding="utf-8")
    assert RIDS[0] in page and RIDS[1] not in page and "<img" not in page
    assert main([*one[:-2], "--fail-on", "attention"]) == REPORT_FAIL_ON_CODES["attention"] == 16
    assert "<img" in html.read_text(encoding="utf-8")
    assert main(["report", "--summary", str(saved), *period, "--format", "json", "--no-figures"]) == 2
    assert main(["report", "--summary", str(tmp_path), *period, "--format", "json"]) == 2
    assert "not a saved summary" in capsys.readouterr().err
    assert main(["report", "--summary", str(saved), "--no-cache", *period, "--format", "json"]) == 2


def test_new_versions_are_listed_from_counts_and_their_comparison_needs_rows() -> None:
    from test_report import END as SIM_END
    from test_report import HISTORY as SIM_HISTORY
    from test_report import START as SIM_START
    from test_report import executions_table

    from exec_analytics.simulator import Workload

    wl = Workload(seed=0)
    df = executions_table(wl, [wl.main.rid], SIM_HISTORY, SIM_END)
    rep = build_weekly_report(from_frame(df, freq="1h"), start=SIM_START, end=SIM_END, now=SIM_END)
    (found,) = rep.resources[0].new_versions
    new = df["resource_version"].astype(str) == "1.4.0"
    week = (df["start_time"] >= pd.Timestamp(SIM_START)) & (df["start_time"] < pd.Timestamp(SIM_END))
    assert (found.version, found.baseline, found.verdict) == ("1.4.0", "1.3.0", "needs rows")
    assert found.share == (new & week).sum() / week.sum()  # exact
    assert found.first_seen == df.loc[new, "start_time"].min().floor("1h")  # at bucket resolution
    assert found.comparison.empty and found.verdicts == {} and "drill down: exec-analytics report" in found.note
    assert rep.summary.loc[0, "new_versions"] == "1.4.0: needs rows"
    assert "1.4.0 vs 1.3.0: **needs rows**" in render_markdown(rep)
    assert json.loads(render_json(rep))["resources"][0]["new_versions"][0]["verdict"] == "needs rows"


def test_the_analysis_the_report_uses_takes_a_summary(rows: pd.DataFrame, fine: Summary) -> None:
    from exec_analytics.analysis import budget_burndown, summarize, version_adoption

    mine = rows[rows["resource_rid"] == RIDS[1]]
    exact = budget_burndown(mine, slo=0.99, start=START, end=END, freq="6h")
    sketches = fine.sketches[fine.sketches["resource_rid"] == RIDS[1]]
    one = Summary(fine.counts[fine.counts["resource_rid"] == RIDS[1]], sketches, freq=fine.freq, k=fine.k)
    pd.testing.assert_frame_equal(budget_burndown(one, slo=0.99, start=START, end=END, freq="6h"), exact)
    with pytest.raises(ValueError, match="bucket boundaries"):
        budget_burndown(one, start=START + pd.Timedelta("1min"), end=END, freq="1h")
    counts = ["resource_rid", "period_start", "executions", "failures", "rate", "rate_low", "rate_high", "durations"]
    a = summarize(rows, by="resource_rid", freq="6h", q=(0.5, 0.95), percentile_confidence=0.95)
    b = summarize(fine, by="resource_rid", freq="6h", q=(0.5, 0.95), percentile_confidence=0.95)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a[counts], b[counts], check_categorical=False, check_dtype=False)
    assert ((b["p95_low"] <= a["p95_low"]) & (b["p95_high"] >= a["p95_high"]) | a["p95_high"].isna()).all()
    pd.testing.assert_frame_equal(version_adoption(rows, freq="1D"), version_adoption(fine, freq="1D"),
                                  check_categorical=False, check_dtype=False)  # fmt: skip
