"""What changed, as a report shows it: shifts and causes read as real before -> after values.

Durations reported in whole seconds tie, so a real shift of the slow tail can leave the 95th percentile at the
same whole second on both sides of a change point; the report must then say what moved (the share above the
earlier value) rather than "2.00 s -> 2.00 s".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exec_analytics import formatting as fmt
from exec_analytics.analysis import change_points
from exec_analytics.report.build import _what_changed
from exec_analytics.report.render import _md_what_changed, _shift_levels, _shift_size

START = pd.Timestamp("2026-11-16T00:00Z")
END = START + pd.Timedelta(days=7)
STEP = START + pd.Timedelta(hours=84)


def whole_second_weeks(seed: int = 0, n: int = 20_000) -> pd.DataFrame:
    """Two weeks of whole-second durations whose slow tail grows at ``STEP``: 1, 2 or 3 s with probabilities
    (0.90, 0.08, 0.02) before and (0.85, 0.11, 0.04) after, so the p95 is 2 s on both sides while the share
    above 2 s doubles."""
    rng = np.random.default_rng(seed)
    t = START - pd.Timedelta(days=7) + pd.to_timedelta(np.sort(rng.uniform(0, 14 * 86_400, 2 * n)), unit="s")
    after = np.asarray(t >= STEP)
    u = rng.random(2 * n)
    slow = np.where(after, 0.85, 0.90)
    slower = np.where(after, 0.96, 0.98)
    duration = np.where(u < slow, 1.0, np.where(u < slower, 2.0, 3.0))
    return pd.DataFrame({
        "start_time": t.astype("datetime64[ms, UTC]"),
        "status": pd.Categorical(np.where(rng.random(2 * n) < 0.02, "FAILED", "SUCCEEDED")),
        "duration_s": duration,
        "resource_rid": pd.Categorical(["ri.function-registry.main.function.whole"] * (2 * n)),
        "caller_rid": pd.Categorical(rng.choice(["ri.a", "ri.b"], 2 * n)),
    })  # fmt: skip


def test_a_p95_shift_at_whole_seconds_reads_as_the_share_above_not_two_equal_values() -> None:
    df = whole_second_weeks()
    week = df[(df["start_time"] >= START) & (df["start_time"] < END)]
    cp = change_points(week, metric="p95", start=START, end=END)
    assert len(cp) >= 1
    row = cp.iloc[0]
    assert row["value_before"] == row["value_after"] == 2.0  # the raw percentile held still...
    assert row["share_above_before"] == pytest.approx(0.02, abs=0.005)  # ...while the tail above it doubled
    assert row["share_above_after"] == pytest.approx(0.04, abs=0.006)
    what = _what_changed(df, week, START, END, 0.95)
    moments = [m for m in what.moments if m.startswith("p95")]
    assert moments
    equal = f"{fmt.seconds(2.0)} -> {fmt.seconds(2.0)}"
    for sentence in moments:
        assert equal not in sentence
        assert f"share above {fmt.seconds(2.0)} " in sentence and "pp)" in sentence
    md = "\n".join(_md_what_changed(what, "rows"))
    assert equal not in md and "share above 2.00 s" in md
    # The HTML table's cells: the share above before -> after, and the shift in points, not "+0.00 s".
    record = what.change_points[what.change_points["metric"] == "p95"].iloc[0].to_dict()
    assert _shift_levels(record) == (
        f"above 2.00 s: {fmt.percent(record['share_above_before'])} → {fmt.percent(record['share_above_after'])}"
    )
    assert _shift_size(record) == fmt.pp_change(record["share_above_after"] - record["share_above_before"])


def test_a_shift_that_moves_the_value_still_reads_before_and_after() -> None:
    record = {"metric": "p95", "value_before": 1.2, "value_after": 1.6, "change": 0.4, "share_above_before": 0.05,
              "share_above_after": 0.12, "adjusted_ratio": 2.4}  # fmt: skip
    assert _shift_levels(record) == f"{fmt.seconds(1.2)} → {fmt.seconds(1.6)}"
    assert _shift_size(record) == fmt.signed_seconds(0.4)
    rate = {"metric": "failure_rate", "value_before": 0.02, "value_after": 0.02, "change": 0.0,
            "share_above_before": np.nan, "share_above_after": np.nan, "adjusted_ratio": 1.0}  # fmt: skip
    assert _shift_levels(rate) == f"{fmt.percent(0.02)} → {fmt.percent(0.02)}"
