"""A shift the previous period shows too, at the same time, is a cycle: the report marks it and does not call the
resource changed; a shift of this period alone is news."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis_changepoints import MONDAY, synthetic_week

from exec_analytics.report import build_weekly_report, render_html, render_markdown

WEEK_2 = (MONDAY + pd.Timedelta(days=7), MONDAY + pd.Timedelta(days=14))


def _slower(df: pd.DataFrame, starts: list[pd.Timestamp], length: pd.Timedelta, factor: float) -> pd.DataFrame:
    """Every duration ``factor`` times longer within ``[start, start + length)`` for each start."""
    slow = np.zeros(len(df), dtype=bool)
    for start in starts:
        slow |= ((df["start_time"] >= start) & (df["start_time"] < start + length)).to_numpy(dtype=bool)
    out = df.copy()
    out.loc[slow, "duration_s"] = np.round(out.loc[slow, "duration_s"] * factor, 3)
    return out


@pytest.fixture(scope="module")
def two_weeks() -> pd.DataFrame:
    return synthetic_week(7, per_week=20_000, weeks=2, drift=0.0)


@pytest.mark.slow
def test_a_weekend_slowdown_every_week_is_marked_recurring_not_news(two_weeks: pd.DataFrame) -> None:
    friday_evening = [MONDAY + pd.Timedelta(days=4, hours=18) + pd.Timedelta(days=7 * w) for w in (0, 1)]
    df = _slower(two_weeks, friday_evening, pd.Timedelta(days=2, hours=6), 1.6)
    sec = build_weekly_report(df, start=WEEK_2[0], end=WEEK_2[1], slo=0.9).resources[0]
    points = sec.what_changed.change_points
    latency = points[points["metric"].isin(["p50", "p95"]).to_numpy(dtype=bool)]
    assert len(latency), "the weekend slowdown is a real shift within the week"
    assert latency["recurs"].all()
    assert not sec.what_changed.changed and sec.what_changed.headline == "Nothing changed."
    report = build_weekly_report(df, start=WEEK_2[0], end=WEEK_2[1], slo=0.9)
    md, html = render_markdown(report), render_html(report, figures={})
    assert "It recurs: the previous period shifted the same way at the same time" in md
    assert "(recurs)" in html
    for text in (md, html):  # never "no metric shifted": one did, as it does every week
        assert "no metric shifted" not in text and "the only shifts within this period recur" in text


@pytest.mark.slow
def test_a_slowdown_of_this_week_alone_is_news(two_weeks: pd.DataFrame) -> None:
    df = _slower(two_weeks, [MONDAY + pd.Timedelta(days=10, hours=12)], pd.Timedelta(days=4), 1.6)
    sec = build_weekly_report(df, start=WEEK_2[0], end=WEEK_2[1], slo=0.9).resources[0]
    points = sec.what_changed.change_points
    latency = points[points["metric"].isin(["p50", "p95"]).to_numpy(dtype=bool)]
    assert len(latency) and not latency["recurs"].any()
    assert sec.what_changed.changed and "It recurs" not in sec.what_changed.headline
