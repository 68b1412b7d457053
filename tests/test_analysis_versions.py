"""analysis.compare_versions / version_regressions on simulated data with a known truth.

The simulator's main resource has a regressed version (every caller slower by the profile's latency
multiplier, timeouts multiplied) and a confounded one (no per-caller change, but its canary reached the slow
automation callers first). The truth is read from the profile, not hard-coded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.analysis import VERDICTS, compare_versions, version_adoption, version_regressions
from exec_analytics.simulator import Workload

WINDOW = ("2026-10-30T00:00Z", "2026-11-28T00:00Z")


def to_executions_table(ground_truth: pd.DataFrame) -> pd.DataFrame:
    """The simulator's ground truth in the executions-table dtypes (what load_executions returns)."""
    table = pa.Table.from_pandas(ground_truth[list(schema.COLUMNS)], preserve_index=False)
    return schema.to_frame(table)


@pytest.fixture(scope="module")
def sim() -> tuple[Workload, pd.DataFrame]:
    wl = Workload(seed=0)
    return wl, to_executions_table(wl.ground_truth(wl.main.rid, *WINDOW))


def _verdicts(result: pd.DataFrame) -> dict[str, str]:
    return dict(zip(result["metric"], result["verdict"].astype(str), strict=True))


# --- the regressed version -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_regressed_version_is_flagged_on_what_regressed_and_nothing_else(seed, sim):
    wl, df = sim if seed == 0 else (w := Workload(seed=seed), to_executions_table(w.ground_truth(w.main.rid, *WINDOW)))
    p = wl.main
    bad = p.regressed_version
    before = p.version_names[p.version_names.index(bad) - 1]
    result = compare_versions(df, before, bad, reasons=True)
    verdicts = _verdicts(result)
    assert verdicts["p50"] == "regressed"
    assert verdicts["p95"] == "regressed"
    assert verdicts["failure_rate"] == "regressed"
    assert verdicts["distribution"] == "regressed"
    assert verdicts["p99"] in ("regressed", "inconclusive")  # truly slower; the tail is coarse (whole seconds)
    for reason, multiplier in p.failure_multipliers[bad].items():
        expected = "regressed" if multiplier > 1 else None
        got = verdicts.get(f"failure_rate[{reason}]")
        if expected:
            assert got == "regressed", reason
        else:
            assert got != "regressed", reason
    # The estimates recover the truth: the latency multiplier and the timeout multiplier.
    row = result.set_index("metric")
    assert row.loc["p50", "ratio_low"] <= p.latency_multipliers[bad] <= row.loc["p50", "ratio_high"]
    timeout = p.failure_multipliers[bad]["timeout"]
    assert row.loc["failure_rate[timeout]", "ratio_low"] <= timeout <= row.loc["failure_rate[timeout]", "ratio_high"]
    # Only the overlap of the two versions is compared.
    starts = df["start_time"][df["resource_version"] == bad]
    assert row["window_start"].iloc[0] == starts.min()


def test_a_real_speed_up_is_reported_improved(sim):
    wl, _ = sim
    p = next(r for r in wl.resources if any(v.latency_multiplier < 1 for v in r.versions))
    faster = next(v for v in p.versions if v.latency_multiplier < 1)
    before = p.version_names[p.version_names.index(faster.version) - 1]
    window = (faster.canary_start - pd.Timedelta("1D"), faster.full_start + pd.Timedelta("1D"))
    df = to_executions_table(wl.ground_truth(p.rid, *window))
    # Adjusted for callers only, the two-day rollout is enough to call the speed-up.
    verdicts = _verdicts(compare_versions(df, before, faster.version, stratify_freq=None))
    assert verdicts["p50"] == "improved"
    assert "regressed" not in verdicts.values()
    # Adjusted for time as well (the default), fewer executions share a caller and bucket: the median is
    # still significantly faster and its interval holds the true multiplier, but no longer proves >= 10%.
    result = compare_versions(df, before, faster.version)
    assert "regressed" not in set(result["verdict"].astype(str))
    row = result.set_index("metric").loc["p50"]
    assert row["verdict"] in ("improved", "inconclusive")
    assert row["ratio_low"] <= faster.latency_multiplier <= row["ratio_high"] < 1


def test_confounded_version_is_not_called_regressed(sim):
    wl, df = sim
    p = wl.main
    conf = p.confounded_version
    before = p.version_names[p.version_names.index(conf) - 1]
    adjusted = compare_versions(df, before, conf)
    assert "regressed" not in set(adjusted["verdict"].astype(str))
    assert _verdicts(adjusted)["p50"] == "equivalent"
    row = adjusted.set_index("metric").loc["p50"]
    # Crude medians over the window differ a lot (the caller mix); the values shown are the adjusted ones.
    inside = (df["start_time"] >= row["window_start"]) & (df["start_time"] < row["window_end"])
    ok = inside & (df["status"] == "SUCCEEDED")
    crude = df[ok].groupby("resource_version", observed=True)["duration_s"].median()
    assert crude[conf] > 2 * crude[before]
    assert row["candidate_value"] / row["baseline_value"] == pytest.approx(row["ratio"])
    by_kind = compare_versions(df, before, conf, stratify="caller_kind", n_resamples=300)
    assert "regressed" not in set(by_kind["verdict"].astype(str))
    assert by_kind["adjusted_for"].iloc[0].startswith("caller_kind, start_time/")
    # The test has teeth: without stratifying by caller the same data looks like a large regression.
    naive = compare_versions(df, before, conf, stratify=None)
    assert _verdicts(naive)["p50"] == "regressed"


def test_output_columns_and_types(sim):
    _, df = sim
    result = compare_versions(df, "1.3.0", "1.4.0", n_resamples=200)
    assert result["metric"].tolist() == ["failure_rate", "p50", "p95", "p99", "distribution"]
    assert list(result.columns[:4]) == ["resource_rid", "baseline", "candidate", "metric"]
    assert set(result["verdict"].cat.categories) == set(VERDICTS)
    assert result["judged_on"].tolist() == ["difference", "ratio", "ratio", "ratio", "difference"]
    assert result["test"].tolist() == ["CMH", "bootstrap", "bootstrap", "bootstrap", "van Elteren"]
    assert (result["p_adjusted"] >= result["p_value"]).all()
    assert (result["difference_low"] <= result["difference"]).all()
    assert (result["difference"] <= result["difference_high"]).all()
    assert (result["note"] == "").all()


def test_deterministic_for_a_seed(sim):
    _, df = sim
    one = compare_versions(df, "1.3.0", "1.4.0", n_resamples=200, seed=5)
    two = compare_versions(df, "1.3.0", "1.4.0", n_resamples=200, seed=5)
    pd.testing.assert_frame_equal(one, two)
    other = compare_versions(df, "1.3.0", "1.4.0", n_resamples=200, seed=6)
    assert not one["ratio_low"].equals(other["ratio_low"])
    # Far from their thresholds, verdicts do not depend on the seed (p99 here is close to its threshold).
    assert one["verdict"][one["metric"] != "p99"].tolist() == other["verdict"][other["metric"] != "p99"].tolist()


# --- A/A: identical behaviour must stay quiet ----------------------------------------------------------


@pytest.mark.slow
def test_aa_comparisons_rarely_regress_and_p_values_are_calibrated(sim):
    _, df = sim
    steady = df[(df["start_time"] >= "2026-11-11") & (df["start_time"] < "2026-11-17")].reset_index(drop=True)
    assert steady["resource_version"].nunique() == 1  # one version: any split is an A/A comparison
    rng = np.random.default_rng(2026)
    n, reps = 1000, 200
    results = []
    for i in range(reps):
        rows = np.sort(rng.choice(len(steady), 2 * n, replace=False))
        sub = steady.iloc[rows].reset_index(drop=True)
        labels = rng.permutation(np.repeat([0, 1], n))
        sub["resource_version"] = pd.Categorical.from_codes(labels, categories=["a", "b"], ordered=True)
        results.append(compare_versions(sub, "a", "b", window="all", n_resamples=300, seed=i).assign(rep=i))
    res = pd.concat(results, ignore_index=True)
    assert (res["verdict"] == "regressed").mean() <= 0.05
    assert res.groupby("rep")["verdict"].apply(lambda v: (v == "regressed").any()).mean() <= 0.05
    assert (res["verdict"] == "insufficient data").sum() == 0
    # The tests themselves hold their level (the verdict alone would pass even with broken p-values).
    raw = res.groupby("metric")["p_value"].apply(lambda p: (p < 0.05).mean())
    assert (raw <= 0.1).all(), raw.to_dict()
    # And the intervals cover "no change" about as often as they claim.
    on_ratio = res["judged_on"] == "ratio"
    low = np.where(on_ratio, res["ratio_low"], res["difference_low"])
    high = np.where(on_ratio, res["ratio_high"], res["difference_high"])
    null = np.where(on_ratio, 1.0, 0.0)
    cover = pd.Series((low <= null) & (null <= high)).groupby(res["metric"]).mean()
    assert (cover >= 0.9).all(), cover.to_dict()


# --- small samples and edge cases ------------------------------------------------------------------------


def test_small_samples_give_insufficient_data(sim):
    _, df = sim
    small = df.groupby("resource_version", observed=True).head(80).reset_index(drop=True)
    result = compare_versions(small, "1.3.0", "1.4.0", window="all")
    assert set(result["verdict"].astype(str)) == {"insufficient data"}
    assert result["p_adjusted"].isna().all()
    assert result["note"].str.contains(r"needs (?:200|368) executions per version").all()


def test_p99_needs_more_executions_than_the_median(sim):
    _, df = sim
    part = df.groupby("resource_version", observed=True).head(330).reset_index(drop=True)
    # The first 330 executions of each version ran days apart: compare them without time strata.
    verdicts = _verdicts(compare_versions(part, "1.3.0", "1.4.0", window="all", min_executions=100,
                                          min_stratum=1, n_resamples=200, stratify_freq=None))  # fmt: skip
    assert verdicts["p99"] == "insufficient data"
    assert verdicts["p50"] != "insufficient data"


def test_unknown_versions_and_bad_arguments_raise(sim):
    _, df = sim
    with pytest.raises(ValueError, match=r"baseline version '9\.9\.9' has no executions.*1\.2\.0, 1\.3\.0, 1\.4\.0"):
        compare_versions(df, "9.9.9", "1.4.0")
    with pytest.raises(ValueError, match="candidate version"):
        compare_versions(df, "1.3.0", "2.0.0")
    with pytest.raises(ValueError, match="same version"):
        compare_versions(df, "1.3.0", "1.3.0")
    with pytest.raises(ValueError, match=r"never ran at the same time.*window='all'"):
        compare_versions(df, "1.2.0", "1.4.0")
    with pytest.raises(ValueError, match="unknown metric 'p200'"):
        compare_versions(df, "1.3.0", "1.4.0", metrics=["p200"])
    with pytest.raises(ValueError, match="latency_threshold"):
        compare_versions(df, "1.3.0", "1.4.0", latency_threshold=-1)
    with pytest.raises(ValueError, match="has no executions"):
        compare_versions(schema.empty_frame(), "1.0.0", "1.1.0")
    two = schema.concat_frames([df.head(100), df.head(100).assign(resource_rid="ri.function-registry.main.function.y")])
    with pytest.raises(ValueError, match="resource_rid="):
        compare_versions(two, "1.2.0", "1.3.0")


def test_explicit_window_and_all_failed_candidate(sim):
    _, df = sim
    sub = df[df["resource_version"].isin(["1.3.0", "1.4.0"])].reset_index(drop=True)
    status = sub["status"].astype(object).where(sub["resource_version"] != "1.4.0", "FAILED")
    sub["status"] = pd.Categorical(status)
    sub.loc[sub.index[:50], "duration_s"] = np.nan
    result = compare_versions(sub, "1.3.0", "1.4.0", window=("2026-11-17T09:00Z", "2026-11-20T09:00Z"),
                              n_resamples=100)  # fmt: skip
    verdicts = _verdicts(result)
    assert verdicts["failure_rate"] == "regressed"
    assert result.set_index("metric").loc["failure_rate", "candidate_value"] == 1.0
    for m in ("p50", "p95", "p99", "distribution"):  # no succeeded candidate execution to time
        assert verdicts[m] == "insufficient data"
    assert result["window_start"].iloc[0] == pd.Timestamp("2026-11-17T09:00Z")


# --- every version against its predecessor -------------------------------------------------------------


def test_version_regressions_flags_only_the_regressed_version(sim):
    wl, df = sim
    p = wl.main
    flagged = version_regressions(df, n_resamples=300)
    assert set(flagged["candidate"]) == {p.regressed_version}
    assert {"p50", "p95", "failure_rate"} <= set(flagged["metric"])
    assert (flagged["verdict"] == "regressed").all()
    first = df.loc[df["resource_version"] == p.regressed_version, "start_time"].min()
    assert (flagged["candidate_first_seen"] == first).all()
    spec = next(v for v in p.versions if v.version == p.regressed_version)
    majority = flagged["candidate_majority_at"].iloc[0]
    assert spec.canary_start.floor("D") <= majority <= spec.full_start
    assert flagged["candidate_share_last"].iloc[0] == 1.0
    every = version_regressions(df, flag=VERDICTS, n_resamples=300, order="rollout")
    pairs = every[["baseline", "candidate"]].drop_duplicates().apply(tuple, axis=1).tolist()
    assert pairs == [("1.2.0", "1.3.0"), ("1.3.0", "1.4.0")]
    assert every["p_adjusted"].notna().all()  # one BH family over both comparisons


def test_version_regressions_with_one_version_is_empty(sim):
    _, df = sim
    one = df[df["resource_version"] == "1.3.0"].reset_index(drop=True)
    out = version_regressions(one)
    assert out.empty and "verdict" in out.columns and "candidate_first_seen" in out.columns


def test_version_adoption_matches_a_crosstab(sim):
    _, df = sim
    out = version_adoption(df, freq="1D")
    day = df["start_time"].dt.floor("1D")
    ref = pd.crosstab(day, df["resource_version"]).stack()
    ref = ref[ref > 0]
    got = out.set_index(["period_start", "resource_version"])["executions"]
    assert got.to_dict() == {(d, str(v)): n for (d, v), n in ref.items()}
    np.testing.assert_allclose(out.groupby("period_start")["share"].sum(), 1.0)
