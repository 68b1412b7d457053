"""analysis: edge cases give sensible output or a clear ValueError, for every public function."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exec_analytics import schema
from exec_analytics.analysis import (
    VERDICTS,
    caller_breakdown,
    caller_concentration,
    compare_versions,
    duration_percentiles,
    error_budget,
    failure_rate,
    failure_reasons,
    summarize,
    version_adoption,
    version_regressions,
)


def frame(n: int, *, status: str | list[str] = "SUCCEEDED", durations: object = None, versions=("1.0.0",),
          seed: int = 0) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(seed)
    statuses = [status] * n if isinstance(status, str) else list(status)
    d = np.rint(rng.lognormal(np.log(0.2), 0.5, n) * 1000) / 1000 if durations is None else durations
    v = [versions[i % len(versions)] for i in range(n)]
    start = pd.Timestamp("2026-11-10T00:00Z").value // 1_000_000 + np.arange(n) * 60_000
    return pd.DataFrame({
        "start_time": pd.DatetimeIndex(start.astype("datetime64[ms]")).tz_localize("UTC"),
        "duration_s": np.asarray(d, dtype=float),
        "status": pd.Categorical(statuses),
        "failure_reason": pd.Categorical([None if s == "SUCCEEDED" else "timeout" for s in statuses]),
        "resource_rid": pd.Categorical(["ri.function-registry.main.function.x"] * n),
        "resource_version": pd.Categorical(v, categories=schema.order_versions(v), ordered=True),
        "caller_rid": pd.Categorical([f"ri.workshop.main.module.{i % 3}" for i in range(n)]),
        "trace_owning_rid": pd.Categorical(["ri.x"] * n),
        "foundry_trace_id": pd.array([str(i) for i in range(n)], dtype="string"),
    })  # fmt: skip


def test_empty_frame():
    empty = schema.empty_frame()
    one = failure_rate(empty)
    assert one["executions"].tolist() == [0] and np.isnan(one["rate"].item()) and np.isnan(one["rate_high"].item())
    assert failure_rate(empty, by="resource_version", freq="1D").empty
    pct = duration_percentiles(empty, confidence=0.95)
    assert pct["durations"].tolist() == [0] and np.isnan(pct["p50"].item())
    assert duration_percentiles(empty, by="caller_rid").empty
    assert summarize(empty)["executions"].tolist() == [0]
    assert failure_reasons(empty).empty and failure_reasons(empty, by="resource_version").empty
    assert caller_breakdown(empty).empty
    assert caller_concentration(empty)["total"].tolist() == [0, 0]
    budget = error_budget(empty)
    assert budget["executions"].tolist() == [0] and budget["window_end"].isna().all()
    assert version_adoption(empty).empty
    assert version_regressions(empty).empty
    with pytest.raises(ValueError, match=r"baseline version '1\.0\.0' has no executions"):
        compare_versions(empty, "1.0.0", "1.1.0")


def test_one_execution():
    df = frame(1)
    rate = failure_rate(df)
    assert rate[["executions", "failures", "rate"]].iloc[0].tolist() == [1, 0, 0.0]
    assert 0 < rate["rate_high"].item() < 1
    pct = duration_percentiles(df, confidence=0.95)
    assert pct["p50"].item() == df["duration_s"].item() and pct["p99"].item() == df["duration_s"].item()
    assert np.isnan(pct["p50_low"].item())  # one execution cannot bound a median at 95%
    breakdown = caller_breakdown(df)
    assert breakdown["executions"].tolist() == [1] and bool(breakdown["low_volume"].item())
    assert error_budget(df)["executions"].item() == 1


def test_all_failed_and_none_failed():
    bad = frame(60, status="FAILED")
    rate = failure_rate(bad).iloc[0]
    assert rate["rate"] == 1.0 and rate["rate_high"] == 1.0 and rate["rate_low"] < 1
    assert failure_reasons(bad)["share"].tolist() == [1.0]
    assert np.isnan(duration_percentiles(bad, outcome="succeeded")["p50"].item())
    assert error_budget(bad)["sli"].item() == 0.0
    good = frame(60)
    rate = failure_rate(good).iloc[0]
    assert rate["failures"] == 0 and rate["rate_low"] == 0.0 and rate["rate_high"] > 0
    assert failure_reasons(good).empty
    assert caller_breakdown(good)["failure_share"].isna().all()
    assert np.isnan(caller_concentration(good).set_index("measure").loc["failures", "hhi"])


def test_nan_durations_are_counted_but_not_timed():
    d = np.r_[np.full(5, np.nan), np.arange(1, 11) / 10]
    df = frame(15, durations=d)
    pct = duration_percentiles(df, q=(0.5, 1.0))
    assert pct[["executions", "durations"]].iloc[0].tolist() == [15, 10]
    assert pct["p50"].item() == np.quantile(np.arange(1, 11) / 10, 0.5) and pct["p100"].item() == 1.0
    all_nan = duration_percentiles(frame(4, durations=np.full(4, np.nan)))
    assert all_nan["durations"].item() == 0 and np.isnan(all_nan["p50"].item())
    assert caller_breakdown(df, top=None)["durations"].sum() == 10


def test_unknown_statuses_count_as_failures():
    df = frame(4, status=["SUCCEEDED", "FAILED", "TIMED_OUT", "SOMETHING_NEW"])
    assert failure_rate(df)["failures"].item() == 3
    assert failure_rate(df, success_statuses="SUCCEEDED")["failures"].item() == 3
    assert failure_rate(df, success_statuses={"SUCCEEDED", "SOMETHING_NEW"})["failures"].item() == 2
    missing = df.assign(status=pd.Categorical([None, "FAILED", "SUCCEEDED", "SUCCEEDED"]))
    assert failure_rate(missing)["failures"].item() == 2  # a missing status is not a success
    assert (failure_rate(missing)["failures"] == schema.failed(missing).sum()).all()


def test_a_single_version():
    df = frame(500)
    assert version_regressions(df).empty
    adoption = version_adoption(df)
    assert (adoption["share"] == 1.0).all()
    with pytest.raises(ValueError, match=r"candidate version '1.1.0' has no executions in df \(versions: 1.0.0\)"):
        compare_versions(df, "1.0.0", "1.1.0")


def test_unknown_baseline_version_and_wrong_types():
    df = frame(500, versions=("1.0.0", "1.1.0"))
    with pytest.raises(ValueError, match=r"baseline version '0.9.0'.*versions: 1.0.0, 1.1.0"):
        compare_versions(df, "0.9.0", "1.1.0")
    with pytest.raises(TypeError, match="baseline must be a version string"):
        compare_versions(df, 1.0, "1.1.0")
    with pytest.raises(ValueError, match="flag"):
        version_regressions(df, flag=["bad"])
    with pytest.raises(TypeError, match="unexpected"):
        version_regressions(df, treshold=0.1)


def test_two_interleaved_versions_compare_cleanly():
    df = frame(2000, versions=("1.0.0", "1.1.0"), status=["SUCCEEDED"] * 1900 + ["FAILED"] * 100)
    out = compare_versions(df, "1.0.0", "1.1.0", n_resamples=200)
    assert not out["verdict"].isin(["regressed", "improved"]).any()
    assert (out["baseline_executions"] >= 200).all()


def test_version_regressions_without_any_overlap_gives_insufficient_data_rows():
    # Two versions that never ran at the same time: promised "insufficient data" rows, not a KeyError.
    old, new = frame(600, versions=("1.0.0",)), frame(600, versions=("1.1.0",), seed=1)
    new["start_time"] += pd.Timedelta("30D")
    df = pd.concat([old, new], ignore_index=True)
    df["resource_version"] = pd.Categorical(df["resource_version"].astype(str), categories=["1.0.0", "1.1.0"],
                                            ordered=True)  # fmt: skip
    out = version_regressions(df, flag=VERDICTS)
    assert out["metric"].tolist() == ["failure_rate", "p50", "p95", "p99", "distribution"]
    assert set(out["verdict"].astype(str)) == {"insufficient data"}
    assert out["note"].str.startswith("no overlap").all()
    assert out["p_value"].isna().all() and out["p_adjusted"].isna().all()
    assert (out["baseline"] == "1.0.0").all() and (out["candidate"] == "1.1.0").all()
    assert version_regressions(df).empty  # nothing regressed


def test_an_explicit_window_must_end_after_it_starts():
    df = frame(600, versions=("1.0.0", "1.1.0"))
    with pytest.raises(ValueError, match=r"end \(.*\) must be after start"):
        compare_versions(df, "1.0.0", "1.1.0", window=("2026-11-10T05:00Z", "2026-11-10T01:00Z"))
    with pytest.raises(ValueError, match="has no timezone"):
        compare_versions(df, "1.0.0", "1.1.0", window=("2026-11-10T01:00", "2026-11-10T05:00Z"))
    out = compare_versions(df, "1.0.0", "1.1.0", window=("2026-11-10T01:00Z", "2026-11-10T09:00Z"), n_resamples=50)
    assert out["window_start"].iloc[0] == pd.Timestamp("2026-11-10T01:00Z")
    assert out["window_end"].iloc[0] == pd.Timestamp("2026-11-10T09:00Z")
