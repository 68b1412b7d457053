"""compare_versions during rollouts: identical versions stay quiet at default settings, real slowdowns do not.

The data are synthetic with a known truth: the candidate's share of executions ramps from 0 to 1 over the
rollout while latency (and the failure rate) follow a daily cycle or drift upwards, identically for both
versions. Any "regressed" verdict is a false alarm. ``benchmarks/calibrate_versions.py`` runs the same
scenarios with 200 comparisons each and prints the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exec_analytics.analysis import compare_versions

START = pd.Timestamp("2026-11-02T00:00Z")

#: Rollouts where time confounds a version comparison, from the defect reports.
SCENARIOS: dict[str, dict[str, float]] = {
    "24h rollout, +-50% daily latency": {"ramp_h": 24.0, "daily": 0.5},
    "3-day ramp, +60% drift": {"ramp_h": 72.0, "drift": 0.6},
    "3-day ramp, +-50% daily latency": {"ramp_h": 72.0, "daily": 0.5},
}
BASE_LATENCY = np.array([0.2, 0.5, 1.0, 3.0])  # seconds, per caller


def rollout(
    seed: int, *, n: int = 3000, ramp_h: float = 24.0, daily: float = 0.0, drift: float = 0.0, slowdown: float = 1.0
) -> pd.DataFrame:
    """Executions of versions "a" (baseline) and "b" (candidate) during a linear rollout.

    Parameters
    ----------
    seed : int
    n : int
        Executions over the rollout, uniform in time.
    ramp_h : float
        Hours over which the candidate's share grows from 0 to 1.
    daily : float
        Amplitude of the daily latency and failure cycle (0.5: +-50%), at a random phase.
    drift : float
        Relative increase of latency and failures from the start to the end of the rollout.
    slowdown : float
        The candidate's true latency multiplier (1: an A/A comparison).

    Returns
    -------
    pandas.DataFrame
        Columns ``start_time`` (datetime64[ms, UTC]), ``duration_s`` (whole milliseconds, log-normal with
        log-sd 0.5), ``status`` (2% failed on average), ``resource_version``, ``caller_rid`` (four callers of
        different latency, the same mix in both versions).
    """
    rng = np.random.default_rng(seed)
    hours = np.sort(rng.uniform(0.0, ramp_h, n))
    candidate = rng.random(n) < hours / ramp_h
    caller = rng.integers(0, len(BASE_LATENCY), n)
    phase = rng.uniform(0.0, 24.0)
    load = (1 + daily * np.sin(2 * np.pi * (hours + phase) / 24)) * (1 + drift * hours / ramp_h)
    latency = BASE_LATENCY[caller] * load * np.where(candidate, slowdown, 1.0)
    duration = np.maximum(np.rint(rng.lognormal(np.log(latency), 0.5) * 1000) / 1000, 0.001)
    failed = rng.random(n) < 0.02 * load / (1 + drift)
    start = START + pd.to_timedelta(np.rint(hours * 3_600_000).astype(np.int64), unit="ms")
    return pd.DataFrame({
        "start_time": pd.DatetimeIndex(start).as_unit("ms"),
        "duration_s": duration,
        "status": pd.Categorical(np.where(failed, "FAILED", "SUCCEEDED")),
        "resource_version": pd.Categorical(np.where(candidate, "b", "a"), categories=["a", "b"], ordered=True),
        "caller_rid": pd.Categorical([f"ri.workshop.main.module.c{c}" for c in caller]),
    })  # fmt: skip


def regressed_share(scenario: dict[str, float], seeds: range, **options: object) -> tuple[float, pd.Series]:
    """Share of comparisons with any "regressed" verdict, and the share per metric."""
    verdicts = pd.DataFrame([
        dict(zip(r["metric"], r["verdict"].astype(str) == "regressed", strict=True))
        for r in (compare_versions(rollout(seed, **scenario), "a", "b", seed=seed, **options) for seed in seeds)  # type: ignore[arg-type]
    ])  # fmt: skip
    return float(verdicts.any(axis=1).mean()), verdicts.mean()


@pytest.mark.slow
def test_identical_versions_during_rollouts_rarely_regress_at_default_settings():
    total, alarms = 0, 0.0
    for name, scenario in SCENARIOS.items():
        seeds = range(34)  # about 100 comparisons; the benchmark runs 200 per scenario
        share, per_metric = regressed_share(scenario, seeds)
        assert share <= 0.10, (name, per_metric.to_dict())
        total += len(seeds)
        alarms += share * len(seeds)
    assert alarms / total <= 0.05


def test_the_same_rollouts_fool_a_comparison_adjusted_for_callers_only():
    # The check above has teeth: without time strata the daily cycle passes for a regression.
    share, per_metric = regressed_share(SCENARIOS["24h rollout, +-50% daily latency"], range(20), stratify_freq=None)
    assert share >= 0.25, per_metric.to_dict()


def test_a_real_slowdown_during_a_rollout_is_still_regressed():
    scenario = {**SCENARIOS["24h rollout, +-50% daily latency"], "slowdown": 1.3}
    _, per_metric = regressed_share(scenario, range(10))
    assert per_metric["p50"] >= 0.8 and per_metric["distribution"] >= 0.8, per_metric.to_dict()
