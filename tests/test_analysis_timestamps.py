"""analysis: start times in every datetime64 unit mean the same instants; naive or missing times are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exec_analytics.analysis import compare_versions, error_budget, failure_rate, version_adoption

UNITS = ("s", "ms", "us", "ns")
NOW = pd.Timestamp("2026-11-20T00:00Z")


def outage_frame(unit: str) -> pd.DataFrame:
    """Two days of one execution a minute, all succeeded except the last hour, which all failed."""
    n = 2 * 24 * 60
    start = NOW - pd.to_timedelta(np.arange(n, 0, -1), unit="min")
    status = np.where(np.arange(n) >= n - 60, "FAILED", "SUCCEEDED")
    return pd.DataFrame({
        "start_time": pd.DatetimeIndex(start).as_unit(unit),
        "duration_s": np.full(n, 0.5),
        "status": pd.Categorical(status),
        "resource_version": pd.Categorical(np.where(np.arange(n) % 2 == 0, "1.0.0", "1.1.0")),
        "caller_rid": pd.Categorical(["ri.workshop.main.module.a"] * n),
    })  # fmt: skip


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_gives_the_same_days_and_burn(unit):
    df = outage_frame(unit)
    assert df["start_time"].dt.unit == unit
    daily = failure_rate(df, freq="1D")
    assert daily["period_start"].tolist() == [NOW - pd.Timedelta("2D"), NOW - pd.Timedelta("1D")]
    assert daily["executions"].tolist() == [1440, 1440]
    budget = error_budget(df, slo=0.999, now=NOW, min_executions=5)
    # The last hour failed entirely: 100% bad over a 0.1% budget burns 1000 times too fast.
    assert budget["burn_1h"].item() == pytest.approx(1000.0)
    assert budget["alert_page_1h_5m"].item()


@pytest.mark.parametrize("unit", UNITS)
def test_naive_start_times_are_refused_in_every_unit(unit):
    df = outage_frame(unit)
    df["start_time"] = df["start_time"].dt.tz_localize(None)
    assert df["start_time"].dt.unit == unit
    for call in (lambda: failure_rate(df, freq="1D"), lambda: error_budget(df, slo=0.999, now=NOW),
                 lambda: version_adoption(df, by=None), lambda: compare_versions(df, "1.0.0", "1.1.0")):  # fmt: skip
        with pytest.raises(ValueError, match=r"start_time is timezone-naive.*tz_localize"):
            call()


def test_plain_strings_parsed_by_pandas_are_refused_until_localized():
    # pandas 3 parses zone-less text to naive microseconds: the case users actually hit.
    df = outage_frame("ns").head(3)
    df["start_time"] = pd.to_datetime(["2026-11-19 10:00", "2026-11-19 11:00", "2026-11-19 12:00"])
    with pytest.raises(ValueError, match="timezone-naive"):
        failure_rate(df, freq="1h")
    df["start_time"] = df["start_time"].dt.tz_localize("UTC")
    out = failure_rate(df, freq="1h")
    assert out["period_start"].dt.year.tolist() == [2026, 2026, 2026]


def test_missing_start_times_raise_a_clear_error():
    df = outage_frame("ms").head(10)
    df.loc[3, "start_time"] = pd.NaT
    with pytest.raises(ValueError, match=r"start_time has 1 missing value\(s\) \(NaT\)"):
        failure_rate(df, freq="1D")
    with pytest.raises(ValueError, match="NaT"):
        error_budget(df, now=NOW)


def test_a_non_datetime_start_time_is_a_type_error():
    df = outage_frame("ms").head(10)
    df["start_time"] = np.arange(10)
    with pytest.raises(TypeError, match="timezone-aware datetime64"):
        failure_rate(df, freq="1D")
