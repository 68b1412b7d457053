"""compare_versions: the values shown agree with the effect, a regression of a few callers is named, and the
distribution threshold means the slowdown its documentation says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from exec_analytics.analysis import compare_versions

START = pd.Timestamp("2026-11-02T00:00Z")


def two_versions(callers: dict[str, tuple[int, int, float, float, float, float]], seed: int = 0) -> pd.DataFrame:
    """Executions of versions "a" and "b" over one day, interleaved in time.

    ``callers`` maps a caller to (executions of a, executions of b, median seconds, failure rate of a,
    latency multiplier of b, failure multiplier of b); durations are log-normal with log-sd 0.5.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for name, (n_a, n_b, median, fail, slower, more_failures) in callers.items():
        for version, n, mult, fmult in (("a", n_a, 1.0, 1.0), ("b", n_b, slower, more_failures)):
            parts.append(pd.DataFrame({
                "t": rng.uniform(0, 86_400_000, n).astype(np.int64),
                "duration_s": np.rint(rng.lognormal(np.log(median * mult), 0.5, n) * 1000) / 1000,
                "status": np.where(rng.random(n) < fail * fmult, "FAILED", "SUCCEEDED"),
                "resource_version": version,
                "caller_rid": f"ri.workshop.main.module.{name}",
            }))  # fmt: skip
    df = pd.concat(parts, ignore_index=True)
    return pd.DataFrame({
        "start_time": pd.DatetimeIndex(START + pd.to_timedelta(df["t"], unit="ms")).as_unit("ms"),
        "duration_s": df["duration_s"],
        "status": pd.Categorical(df["status"]),
        "resource_version": pd.Categorical(df["resource_version"], categories=["a", "b"], ordered=True),
        "caller_rid": pd.Categorical(df["caller_rid"]),
    })  # fmt: skip


def test_values_shown_agree_with_the_adjusted_effect():
    # Simpson's paradox: b is 20% slower and fails more for every caller, but serves mostly the fast,
    # reliable caller, so its crude median and failure rate are lower than a's.
    df = two_versions({"fast": (1000, 9000, 0.2, 0.01, 1.2, 2.0), "slow": (9000, 1000, 2.0, 0.10, 1.2, 2.0)})
    crude = df.groupby("resource_version", observed=True)["duration_s"].median()
    assert crude["b"] < crude["a"]
    out = compare_versions(df, "a", "b", stratify_freq=None, n_resamples=300).set_index("metric")
    for metric in ("p50", "p95"):
        row = out.loc[metric]
        assert row["ratio"] > 1.1 and row["candidate_value"] > row["baseline_value"]
        assert row["candidate_value"] / row["baseline_value"] == pytest.approx(row["ratio"])
        assert row["candidate_value"] - row["baseline_value"] == pytest.approx(row["difference"])
    rate = out.loc["failure_rate"]
    assert rate["difference"] > 0 and rate["candidate_value"] > rate["baseline_value"]
    assert rate["candidate_value"] - rate["baseline_value"] == pytest.approx(rate["difference"])
    assert out.loc["distribution", "candidate_value"] - 0.5 == pytest.approx(out.loc["distribution", "difference"])


def test_a_regression_confined_to_minor_callers_is_named():
    # Two minor callers get 2x slower and fail 5x more; pooled with two large healthy callers the overall
    # verdict does not show it, the per-caller column must.
    healthy = {name: (10_000, 10_000, 0.5, 0.01, 1.0, 1.0) for name in ("big1", "big2")}
    hurt = {name: (400, 400, 0.5, 0.01, 2.0, 5.0) for name in ("minor1", "minor2")}
    out = compare_versions(two_versions({**healthy, **hurt}), "a", "b", n_resamples=300).set_index("metric")
    assert out.loc["failure_rate", "verdict"] != "regressed"
    assert out.loc["p50", "verdict"] != "regressed"
    named = "ri.workshop.main.module.minor1, ri.workshop.main.module.minor2"
    assert out.loc["failure_rate", "regressed_callers"] == named
    assert out.loc["distribution", "regressed_callers"] == named
    assert out.loc["p50", "regressed_callers"] is None  # percentiles are not judged per caller


def test_healthy_callers_are_not_named():
    # A/A: no caller regressed, in any of 20 comparisons of 12 callers each (the per-caller rule controls
    # false discoveries across callers).
    named = []
    for seed in range(20):
        callers = {f"c{i}": (800, 800, 0.3 + 0.1 * i, 0.02, 1.0, 1.0) for i in range(12)}
        out = compare_versions(two_versions(callers, seed=seed), "a", "b", metrics=["failure_rate", "distribution"])
        named += [c for c in out["regressed_callers"] if c]
    assert named == []
    no_strata = compare_versions(two_versions({"c": (800, 800, 0.3, 0.02, 1.0, 1.0)}), "a", "b", stratify=None,
                                 metrics=["failure_rate"])  # fmt: skip
    assert no_strata["regressed_callers"].tolist() == [None]


@pytest.mark.parametrize("log_sd", [0.5, 1.0])
def test_distribution_threshold_is_the_documented_slowdown(log_sd):
    # Documented: for log-normal durations of log-sd s, P(slower) - 0.5 = t for a uniform slowdown
    # m = exp(s * sqrt(2) * Phi^-1(0.5 + t)); the same threshold is a bigger slowdown for wider tails.
    m = float(np.exp(log_sd * np.sqrt(2) * stats.norm.ppf(0.55)))
    assert m == pytest.approx({0.5: 1.093, 1.0: 1.195}[log_sd], abs=0.001)
    rng = np.random.default_rng(7)
    n = 20_000
    df = pd.DataFrame({
        "start_time": pd.DatetimeIndex(START + pd.to_timedelta(rng.uniform(0, 3_600_000, 2 * n), unit="ms")),
        "duration_s": np.concatenate([rng.lognormal(0, log_sd, n), m * rng.lognormal(0, log_sd, n)]),
        "status": pd.Categorical(["SUCCEEDED"] * (2 * n)),
        "resource_version": pd.Categorical(["a"] * n + ["b"] * n, categories=["a", "b"], ordered=True),
        "caller_rid": pd.Categorical(["ri.workshop.main.module.x"] * (2 * n)),
    })  # fmt: skip
    row = compare_versions(df, "a", "b", metrics=["distribution"]).iloc[0]
    assert row["difference"] == pytest.approx(0.05, abs=0.01)
