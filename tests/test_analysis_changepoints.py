"""analysis.change_points on synthetic weeks with a known truth, and on the simulator.

``synthetic_week`` draws a week (or several) of one resource: office-hours diurnal traffic with quiet nights
and weekends, a dozen callers of different failure rates and latencies whose shares drift slowly (a random
walk), and optionally a step at a known hour: the failure rate times ``failure_step`` and every duration
times ``latency_step``, from ``step_hour`` on, when version 1.1.0 takes over. Quiet weeks have no step:
nothing changes in any segment, so any change point is a false alarm. ``benchmarks/calibrate_changes.py``
runs the same scenarios with many more trials and prints the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.analysis import change_points, failure_rate

MONDAY = pd.Timestamp("2026-11-09T00:00Z")
HOUR_MS = 3_600_000
REASONS = np.array(["timeout", "invalid_parameter", "upstream_unavailable", "internal_error"], dtype=object)


def office_hours(hours: int) -> np.ndarray:
    """Relative traffic per hour from Monday 00:00 UTC: a midday peak on weekdays, quiet nights and weekends."""
    h = np.arange(hours)
    shape = 0.12 + np.exp(-0.5 * ((h % 24 - 14.0) / 3.5) ** 2)
    return shape * np.where((h // 24) % 7 >= 5, 0.3, 1.0)


def synthetic_week(
    seed: int,
    *,
    per_week: float = 20_000,
    weeks: int = 1,
    failure: float = 0.03,
    step_hour: int | None = None,
    failure_step: float = 1.0,
    latency_step: float = 1.0,
    drift: float = 0.15,
    mix_shift: float = 0.0,
    profile_seed: int | None = None,
) -> pd.DataFrame:
    """Executions of one resource over ``weeks`` weeks from Monday 2026-11-09, in the executions-table dtypes.

    Parameters
    ----------
    seed : int
        Seed of the draws.
    per_week : float
        Expected executions per week.
    weeks : int
        Number of weeks.
    failure : float
        Average failure rate before any step (callers differ around it).
    step_hour : int, optional
        Hour (from the start) at which the step happens and version 1.1.0 replaces 1.0.0.
    failure_step, latency_step : float
        Multipliers of every caller's failure rate and every duration from ``step_hour`` on.
    drift : float
        Standard deviation of each caller's log-share random walk over a week (the mix drift).
    mix_shift : float
        From ``step_hour`` on, each caller's share is multiplied by ``exp(mix_shift * z)`` with ``z`` its
        standardised log latency: traffic moves to slow callers, no caller changes.
    profile_seed : int, optional
        Seed of the callers (shares, failure rates, latencies); default ``seed``. Two windows drawn with the
        same profile seed are the same resource.

    Returns
    -------
    pandas.DataFrame
        The executions table (``schema.COLUMNS``).
    """
    prof = np.random.default_rng([profile_seed if profile_seed is not None else seed, 1])
    rng = np.random.default_rng([seed, 2])
    n_callers = 12
    hours = 168 * weeks
    share = 1.0 / np.arange(1, n_callers + 1) ** 1.1
    fail_mult = prof.lognormal(0.0, 0.5, n_callers)
    fail_mult /= share @ fail_mult / share.sum()  # average caller at `failure`
    latency = 0.3 * prof.lognormal(0.0, 0.3, n_callers)
    walk = np.cumsum(rng.normal(0.0, drift / np.sqrt(168), (hours, n_callers)), axis=0)
    z = (np.log(latency) - np.log(latency).mean()) / np.log(latency).std()
    shifted = np.arange(hours)[:, None] >= (step_hour if step_hour is not None else hours)
    weight = share[None, :] * np.exp(walk + np.where(shifted, mix_shift * z[None, :], 0.0))
    weight /= weight.sum(axis=1, keepdims=True)
    lam = per_week * weeks * office_hours(hours) / office_hours(hours).sum()
    counts = rng.poisson(lam[:, None] * weight)
    hour = np.repeat(np.repeat(np.arange(hours), n_callers), counts.ravel())
    caller = np.repeat(np.tile(np.arange(n_callers), hours), counts.ravel())
    n = len(hour)
    after = np.zeros(n, dtype=bool) if step_hour is None else hour >= step_hour
    p = np.minimum(failure * fail_mult[caller] * np.where(after, failure_step, 1.0), 0.9)
    failed = rng.random(n) < p
    reason = np.where(failed, REASONS[rng.integers(0, len(REASONS), n)], None)
    median = latency[caller] * np.where(after, latency_step, 1.0)
    duration = np.maximum(np.rint(rng.lognormal(np.log(median), 0.6) * 1000), 1) / 1000
    start_ms = MONDAY.value // 1_000_000 + hour * HOUR_MS + rng.integers(0, HOUR_MS, n)
    frame = pd.DataFrame({
        "start_time": pd.DatetimeIndex(start_ms.astype("datetime64[ms]")).tz_localize("UTC"),
        "duration_s": duration,
        "status": np.where(failed, "FAILED", "SUCCEEDED").astype(object),
        "failure_reason": pd.Series(reason, dtype=object),
        "resource_rid": "ri.function-registry.main.function.synthetic",
        "resource_version": np.where(after, "1.1.0", "1.0.0").astype(object),
        "caller_rid": pd.Series([f"ri.workshop.main.module.caller-{c:02d}" for c in caller], dtype=object),
        "trace_owning_rid": "ri.function-registry.main.function.synthetic",
        "foundry_trace_id": pd.Series([f"t{i}" for i in range(n)], dtype=object),
    })  # fmt: skip
    return schema.to_frame(pa.Table.from_pandas(frame, preserve_index=False))


WEEK = {"start": "2026-11-09T00:00Z", "end": "2026-11-16T00:00Z"}
METRIC_NAMES = ("failure_rate", "p50", "p95")


def step_hours(trials: int, seed: int = 0) -> np.ndarray:
    """Step hours between Tuesday 00:00 and Saturday 00:00, so each side has over a day of traffic."""
    return np.random.default_rng(seed).integers(24, 120, trials)


def found_near(cp: pd.DataFrame, hour: int, tolerance: int = 2) -> bool:
    """Whether a change point's bucket is within ``tolerance`` hours of ``hour``."""
    hours = (cp["period_start"] - MONDAY).dt.total_seconds().to_numpy() / 3600
    return bool(np.any(np.abs(hours - hour) <= tolerance))


def buckets_off(cp: pd.DataFrame, hour: int) -> float:
    """Distance in its own buckets from the nearest change point to the bucket holding ``hour``."""
    size = np.array([pd.Timedelta(f) / pd.Timedelta(hours=1) for f in cp["freq"]])
    at = (cp["period_start"] - MONDAY).dt.total_seconds().to_numpy() / 3600 / size
    return float(np.min(np.abs(at - np.floor(hour / size))))


@pytest.mark.slow
@pytest.mark.parametrize(("per_week", "drift"), [(20_000, 0.15), (5_000, 0.3)])
def test_quiet_weeks_rarely_report_a_change_point(per_week, drift):
    # A resource-week with a change point on any of the three metrics counts once, as a report would show it.
    trials = 40
    alarms = dict.fromkeys(METRIC_NAMES, 0)
    weeks_with_any = 0
    for seed in range(trials):
        df = synthetic_week(seed, per_week=per_week, drift=drift)
        found = {metric: len(change_points(df, metric=metric, seed=seed, **WEEK)) > 0 for metric in METRIC_NAMES}
        for metric, hit in found.items():
            alarms[metric] += hit
        weeks_with_any += any(found.values())
    assert weeks_with_any <= 0.05 * trials, alarms


@pytest.mark.parametrize(("metric", "step"), [("failure_rate", {"failure_step": 2.0}), ("p95", {"latency_step": 1.3})])
def test_a_step_is_found_at_its_moment(metric, step):
    detected, on_time, trials = 0, 0, 20
    for seed, hour in enumerate(step_hours(trials)):
        df = synthetic_week(100 + seed, per_week=20_000, step_hour=int(hour), **step)
        before = (df["start_time"] < MONDAY + pd.Timedelta(hours=int(hour))).sum()
        assert min(before, len(df) - before) >= 500
        cp = change_points(df, metric=metric, seed=seed, **WEEK)
        if len(cp):
            detected += 1
            on_time += found_near(cp, int(hour))
            best = cp.loc[cp["cost_reduction"].idxmax()]
            assert best["change"] > 0  # worse after the step, not better
    assert detected >= 0.8 * trials
    assert on_time >= 0.8 * detected


@pytest.mark.parametrize(
    ("metric", "step", "trials"), [("failure_rate", {"failure_step": 2.0}, 50), ("p95", {"latency_step": 1.3}, 30)]
)
def test_a_step_at_the_least_traffic_is_placed_within_two_buckets(metric, step, trials):
    # About 500 executions on the smaller side: hourly buckets hold one failure each and nights are empty, so
    # at 1h only about half the found steps were within two buckets; the default bucket follows the traffic.
    detected, on_time = 0, 0
    for seed, hour in enumerate(step_hours(trials, seed=1)):
        df = synthetic_week(400 + seed, per_week=5_000, step_hour=int(hour), **step)
        before = (df["start_time"] < MONDAY + pd.Timedelta(hours=int(hour))).sum()
        assert min(before, len(df) - before) >= 500
        cp = change_points(df, metric=metric, seed=seed, **WEEK)
        if len(cp):
            detected += 1
            on_time += buckets_off(cp, int(hour)) <= 2
    assert detected >= 0.8 * trials
    assert on_time >= 0.8 * detected


def test_auto_buckets_follow_the_traffic_and_an_explicit_freq_wins():
    step = {"step_hour": 60, "failure_step": 3.0}
    thin = change_points(synthetic_week(5, per_week=2_500, **step), metric="failure_rate", **WEEK)
    busy = change_points(synthetic_week(5, per_week=40_000, **step), metric="failure_rate", **WEEK)
    assert len(thin) and len(busy)
    thin_h, busy_h = (pd.Timedelta(cp["freq"].iloc[0]) / pd.Timedelta(hours=1) for cp in (thin, busy))
    assert busy_h <= 1 < 6 <= thin_h <= 12  # a week keeps at least 12 buckets
    # The bucket holds enough failures: at 40,000 a week (3% then 9% failing) an hour's busy bucket has over 20.
    assert set(busy["freq"]) <= {"15min", "30min", "1h"}
    # The moments are starts of the buckets used.
    size = pd.Timedelta(thin["freq"].iloc[0])
    assert ((thin["period_start"] - MONDAY) % size == pd.Timedelta(0)).all()
    fixed = change_points(synthetic_week(5, per_week=2_500, **step), metric="failure_rate", freq="90min", **WEEK)
    assert set(fixed["freq"]) <= {"90min"}
    # Latency buckets count executions above the percentile: an hour of 5,000 a week holds about 3 above the p95.
    thin, busy = (change_points(synthetic_week(6, per_week=n, step_hour=60, latency_step=1.3), metric="p95", **WEEK)
                  for n in (5_000, 40_000))  # fmt: skip
    assert pd.Timedelta(busy["freq"].iloc[0]) <= pd.Timedelta("30min") < pd.Timedelta(thin["freq"].iloc[0])


def test_the_step_reports_its_size_interval_and_what_coincided():
    df = synthetic_week(7, per_week=40_000, step_hour=60, failure_step=2.0)
    cp = change_points(df, metric="failure_rate", **WEEK)
    assert len(cp) == 1
    row = cp.iloc[0]
    step_at = MONDAY + pd.Timedelta(hours=60)
    assert row["moment_low"] <= step_at <= row["moment_high"]
    before = df[df["start_time"] < step_at]
    after = df[df["start_time"] >= step_at]
    truth = failure_rate(before)["rate"].iloc[0], failure_rate(after)["rate"].iloc[0]
    assert row["before_low"] <= truth[0] <= row["before_high"]
    assert row["after_low"] <= truth[1] <= row["after_high"]
    assert 1.6 < row["value_after"] / row["value_before"] < 2.5
    assert 1.6 < row["adjusted_ratio"] < 2.5  # the callers' mix did not move: adjusted and raw agree
    assert row["version"] == "1.1.0" and row["version_share_before"] == 0 and row["version_share_after"] == 1
    assert "version 1.1.0 went from 0% to 100%" in row["coincided"]
    assert row["cost_reduction"] > row["penalty"]


def test_a_pure_mix_shift_is_no_change_point_unless_asked_for_the_raw_metric():
    df = synthetic_week(3, per_week=40_000, step_hour=80, mix_shift=1.5)
    assert change_points(df, metric="p50", **WEEK).empty
    raw = change_points(df, metric="p50", adjust_for=None, **WEEK)
    assert found_near(raw, 80)
    assert raw.loc[raw["cost_reduction"].idxmax(), "change"] > 0  # traffic moved to the slow callers


def test_the_simulator_incident_is_found_with_its_reason(workload):
    p = workload.main
    incident = p.incidents[0]
    start = incident.start.normalize() - pd.Timedelta(days=2)
    gt = workload.ground_truth(p.rid, start, start + pd.Timedelta(days=7))
    df = schema.to_frame(pa.Table.from_pandas(gt[list(schema.COLUMNS)], preserve_index=False))
    cp = change_points(df, metric="failure_rate", start=start, end=start + pd.Timedelta(days=7))
    onset = cp[cp["change"] > 0].iloc[0]
    assert onset["moment_low"] <= incident.start <= onset["moment_high"] + pd.Timedelta(hours=1)
    assert onset["top_reason"] == incident.failure_reason
    recovery = cp[(cp["change"] < 0) & (cp["period_start"] > onset["period_start"])].iloc[0]
    assert recovery["period_start"] - incident.end <= pd.Timedelta(hours=1)


def test_output_is_deterministic_and_typed():
    df = synthetic_week(11, per_week=20_000, step_hour=50, latency_step=1.3)
    a = change_points(df, metric="p50", seed=4, **WEEK)
    b = change_points(df.sample(frac=1.0, random_state=1), metric="p50", seed=4, **WEEK)
    pd.testing.assert_frame_equal(a, b)
    assert str(a["period_start"].dtype) == "datetime64[ms, UTC]"
    assert a["executions_before"].dtype == np.int64
    assert list(a.columns)[:3] == ["resource_rid", "metric", "period_start"]


def test_bad_arguments_raise():
    df = synthetic_week(0, per_week=2_000)
    for kwargs in ({"metric": "p99"}, {"alpha": 0}, {"min_size": 0}, {"n_sim": 5}, {"freq": "W"}, {"freq": "1s"}):
        with pytest.raises(ValueError):
            change_points(df, **kwargs)


def test_each_resource_is_answered_on_its_own():
    one = synthetic_week(12, per_week=20_000, step_hour=60, failure_step=2.0)
    other = synthetic_week(13, per_week=20_000).assign(resource_rid="ri.function-registry.main.function.other")
    other["resource_rid"] = other["resource_rid"].astype("category")
    both = pd.concat([one, other], ignore_index=True)
    both["resource_rid"] = both["resource_rid"].astype("category")
    alone = change_points(one, metric="failure_rate", **WEEK)
    together = change_points(both, metric="failure_rate", **WEEK)
    mine = together[together["resource_rid"] == "ri.function-registry.main.function.synthetic"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, mine)
    assert found_near(alone, 60)


def test_without_bounds_the_window_is_the_datas_own() -> None:
    """No ``start``/``end``: the window runs from the first to the last execution, not from the epoch."""
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-11-16T00:00Z")
    t = start + pd.to_timedelta(np.sort(rng.uniform(0, 7 * 86_400, 5_000)), unit="s")
    df = pd.DataFrame(
        {
            "start_time": t.astype("datetime64[ms, UTC]"),
            "status": pd.Categorical(np.where(rng.random(5_000) < 0.05, "FAILED", "SUCCEEDED")),
            "duration_s": rng.lognormal(0, 0.5, 5_000),
            "resource_rid": pd.Categorical(["ri.function-registry.main.function.x"] * 5_000),
        }
    )
    bounded = change_points(
        df,
        metric="failure_rate",
        start=t.min().floor("h"),
        end=t.max().floor("h") + pd.Timedelta("1h"),
        adjust_for=None,
    )
    unbounded = change_points(df, metric="failure_rate", adjust_for=None)
    pd.testing.assert_frame_equal(unbounded, bounded)
