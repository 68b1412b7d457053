"""analysis: failure rates, reasons, percentiles and the weekly summary against plain pandas, numpy and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from exec_analytics import schema
from exec_analytics.analysis import (
    duration_percentiles,
    failure_rate,
    failure_reasons,
    summarize,
)
from exec_analytics.analysis._groups import group_rows, sort_within_groups
from exec_analytics.analysis._intervals import min_executions_for_interval, order_statistic_ranks, wilson_interval

REASONS = ["timeout", "invalid_parameter", "internal_error"]
VERSIONS = ["1.9.0", "1.10.0", "2.0.0"]


def make_frame(n: int = 3000, *, seed: int = 0, fail: float = 0.08, whole_ms: bool = True) -> pd.DataFrame:
    """An executions table with the dtypes of docs/design.md: NA callers, NA reasons, reasons on successes, ties."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-11-01T00:00Z").value // 1_000_000 + rng.integers(0, 5 * 86_400_000, n)
    status = np.where(rng.random(n) < fail, "FAILED", "SUCCEEDED").astype(object)
    status[rng.random(n) < 0.01] = "CANCELLED"  # a status the toolkit does not know: a failure
    reason = np.where(status != "SUCCEEDED", rng.choice(REASONS, n), None).astype(object)
    reason[(status != "SUCCEEDED") & (rng.random(n) < 0.1)] = None
    reason[(status == "SUCCEEDED") & (rng.random(n) < 0.02)] = "timeout"  # never makes a failure
    seconds = rng.lognormal(np.log(0.3), 1.0, n)
    duration = np.where(rng.random(n) < 0.3, np.rint(seconds), np.rint(seconds * 1000) / 1000)  # ties
    if not whole_ms:
        duration = seconds
    duration[rng.random(n) < 0.01] = np.nan  # unknown unit
    callers = [f"ri.workshop.main.module.{i:04d}" for i in range(6)] + ["ri.actions.main.action-type.0001"]
    caller = rng.choice(np.array([*callers, None], dtype=object), n, p=[0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05])
    version = rng.choice(VERSIONS, n, p=[0.5, 0.3, 0.2])
    return pd.DataFrame({
        "start_time": pd.DatetimeIndex(start.astype("datetime64[ms]")).tz_localize("UTC"),
        "duration_s": duration,
        "status": pd.Categorical(status),
        "failure_reason": pd.Categorical(reason),
        "resource_rid": pd.Categorical(["ri.function-registry.main.function.x"] * n),
        "resource_version": pd.Categorical(version, categories=schema.order_versions(version), ordered=True),
        "caller_rid": pd.Categorical(caller),
        "trace_owning_rid": pd.Categorical(["ri.x"] * n),
        "foundry_trace_id": pd.array([f"t{i}" for i in range(n)], dtype="string"),
    })  # fmt: skip


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return make_frame()


def _ref_groups(df: pd.DataFrame, by: list[str], freq: str | None) -> pd.core.groupby.DataFrameGroupBy:
    keys = [df[b] for b in by]
    if freq:
        keys.append(df["start_time"].dt.floor(freq).rename("period_start"))
    return df.assign(failed=schema.failed(df)).groupby(keys, observed=True, dropna=False, sort=True)


# --- failure_rate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("by", "freq"), [([], None), (["resource_version"], None), (["caller_rid"], "1D"),
                                          (["resource_version", "caller_rid"], "6h")])  # fmt: skip
def test_failure_rate_counts_match_a_plain_groupby(df, by, freq):
    out = failure_rate(df, by=by or None, freq=freq)
    if not by and not freq:
        ref = pd.DataFrame({"executions": [len(df)], "failures": [int(schema.failed(df).sum())]})
    else:
        ref = _ref_groups(df, by, freq)["failed"].agg(executions="size", failures="sum").reset_index()
    assert len(out) == len(ref)
    np.testing.assert_array_equal(out["executions"], ref["executions"])
    np.testing.assert_array_equal(out["failures"], ref["failures"])
    for col in by:  # same keys, same order, same dtype (NA callers kept as their own group)
        assert out[col].dtype == df[col].dtype
        assert out[col].astype(object).tolist() == ref[col].astype(object).tolist()
    if freq:
        assert out["period_start"].dtype == "datetime64[ms, UTC]"
        np.testing.assert_array_equal(out["period_start"].to_numpy(), ref["period_start"].to_numpy())


def test_failure_rate_intervals_match_scipy_clopper_pearson(df):
    out = failure_rate(df, by=["caller_rid", "resource_version"], confidence=0.9)
    for row in out.itertuples():
        ci = stats.binomtest(row.failures, row.executions).proportion_ci(confidence_level=0.9, method="exact")
        assert row.rate == pytest.approx(row.failures / row.executions)
        assert row.rate_low == pytest.approx(ci.low, abs=1e-12)
        assert row.rate_high == pytest.approx(ci.high, abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(0, 50), (50, 50), (0, 1), (1, 1), (3, 7), (1, 2), (300, 3000)])
def test_wilson_interval_edges_match_scipy(k, n):
    low, high = wilson_interval(np.array([k]), np.array([n]), 0.95)
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert low[0] == pytest.approx(ci.low, abs=1e-12)
    assert high[0] == pytest.approx(ci.high, abs=1e-12)
    if k == 0:
        assert low[0] == 0 and high[0] > 0  # 0 failures in 50 still has an upper bound


def test_failure_means_status_only_and_is_configurable(df):
    out = failure_rate(df)
    assert out["failures"].item() == int((df["status"] != "SUCCEEDED").sum())  # CANCELLED counts
    lenient = failure_rate(df, success_statuses=["SUCCEEDED", "CANCELLED"])
    assert lenient["failures"].item() == int((df["status"] == "FAILED").sum())
    # A failure reason on a succeeded execution does not make it a failure.
    assert ((df["status"] == "SUCCEEDED") & df["failure_reason"].notna()).any()


def test_group_codes_cover_derived_caller_kind(df):
    out = failure_rate(df, by="caller_kind")
    kinds = df["caller_rid"].astype(object).str.extract(r"^ri\.([^.]+)\.[^.]*\.([^.]+)\.")
    ref = (kinds[0] + "." + kinds[1]).value_counts(dropna=False)
    got = dict(zip(out["caller_kind"].astype(object).where(out["caller_kind"].notna(), None), out["executions"],
                   strict=True))  # fmt: skip
    assert got == {(None if pd.isna(k) else k): v for k, v in ref.items()}


def test_bad_arguments_name_the_parameter(df):
    with pytest.raises(ValueError, match="by='nope'"):
        failure_rate(df, by="nope")
    with pytest.raises(ValueError, match="freq"):
        failure_rate(df, freq="W")
    with pytest.raises(ValueError, match="confidence"):
        failure_rate(df, confidence=1.5)
    with pytest.raises(ValueError, match="status"):
        failure_rate(df.drop(columns="status"))
    with pytest.raises(TypeError, match="DataFrame"):
        failure_rate(df.to_dict())
    with pytest.raises(ValueError, match="q must"):
        duration_percentiles(df, q=1.5)
    with pytest.raises(ValueError, match="outcome"):
        duration_percentiles(df, outcome="slow")


# --- failure_reasons -------------------------------------------------------------------------------------


def test_failure_reasons_counts_shares_and_intervals(df):
    out = failure_reasons(df, by="resource_version")
    failed = df[schema.failed(df)]
    ref = failed.groupby(["resource_version", "failure_reason"], observed=True, dropna=False).size()
    got = out.set_index(["resource_version", "failure_reason"])["failures"]
    assert got.sort_index().to_dict() == ref[ref > 0].sort_index().to_dict()
    shares = out.groupby("resource_version", observed=True)["share"].sum()
    np.testing.assert_allclose(shares, 1.0)
    row = out.iloc[0]
    ci = stats.binomtest(int(row.failures), int(row.group_failures)).proportion_ci(method="exact")
    assert (row.share_low, row.share_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    ci = stats.binomtest(int(row.failures), int(row.group_executions)).proportion_ci(method="exact")
    assert (row.rate_low, row.rate_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    # Within each version, most frequent reason first.
    for _, g in out.groupby("resource_version", observed=True):
        assert g["failures"].is_monotonic_decreasing


def test_failure_reasons_marks_reasons_new_in_a_version():
    df = make_frame(2000, seed=3)
    reason = df["failure_reason"].astype(object).copy()
    newest = df["resource_version"] == "2.0.0"
    mask = newest & (df["status"] == "FAILED")
    reason[mask.to_numpy() & (np.arange(len(df)) % 3 == 0)] = "out_of_memory"
    df["failure_reason"] = pd.Categorical(reason)
    out = failure_reasons(df, by="resource_version")
    oom = out[out["failure_reason"] == "out_of_memory"]
    assert oom["resource_version"].astype(str).tolist() == ["2.0.0"]
    assert oom["new"].tolist() == [True] and oom["first_version"].astype(str).tolist() == ["2.0.0"]
    old = out[(out["failure_reason"] == "timeout")]
    assert old["new"].sum() == 0  # present since the first version
    assert old["first_version"].astype(str).unique().tolist() == ["1.9.0"]


# --- percentiles -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("whole_ms", [True, False])
@pytest.mark.parametrize(("by", "freq"), [([], None), (["resource_version"], "1D"), (["caller_rid"], None)])
def test_percentiles_match_numpy_per_group(by, freq, whole_ms):
    df = make_frame(4000, seed=5, whole_ms=whole_ms)
    q = (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
    out = duration_percentiles(df, by=by or None, freq=freq, q=q)
    grouped = [("all", df)] if not by and not freq else list(_ref_groups(df, by, freq))
    assert len(out) == len(grouped)
    for (_, g), (_, row) in zip(grouped, out.iterrows(), strict=True):
        d = g["duration_s"].to_numpy()
        d = d[~np.isnan(d)]
        assert row["executions"] == len(g) and row["durations"] == len(d)
        expected = np.quantile(d, q)
        got = row[["p0", "p25", "p50", "p90", "p95", "p99", "p99.9", "p100"]].to_numpy(dtype=float)
        np.testing.assert_array_equal(got, expected)  # numpy's own interpolation: bit for bit


def test_percentiles_agree_with_pandas_groupby_quantile(df):
    out = duration_percentiles(df, by="resource_version", q=(0.5, 0.9, 0.99))
    ref = df.groupby("resource_version", observed=True)["duration_s"].quantile([0.5, 0.9, 0.99]).unstack()
    np.testing.assert_allclose(out[["p50", "p90", "p99"]].to_numpy(), ref.to_numpy(), rtol=1e-12)


def test_percentile_intervals_are_scipy_quantile_test_intervals(df):
    out = duration_percentiles(df, by="caller_rid", q=(0.5, 0.9, 0.95, 0.99), confidence=0.95)
    for (_, g), (_, row) in zip(_ref_groups(df, ["caller_rid"], None), out.iterrows(), strict=True):
        d = g["duration_s"].dropna().to_numpy()
        for q, name in ((0.5, "p50"), (0.9, "p90"), (0.95, "p95"), (0.99, "p99")):
            ci = stats.quantile_test(d, q=np.median(d), p=q).confidence_interval(0.95)
            for got, want in ((row[f"{name}_low"], ci.low), (row[f"{name}_high"], ci.high)):
                assert (np.isnan(got) and np.isnan(want)) or got == want


def test_no_made_up_interval_for_p99_below_368_executions():
    assert [min_executions_for_interval(q, 0.95) for q in (0.5, 0.9, 0.95, 0.99)] == [6, 36, 72, 368]
    df = make_frame(800, seed=2)
    df["duration_s"] = df["duration_s"].fillna(1.0)
    small = duration_percentiles(df.iloc[:367], q=0.99, confidence=0.95)
    assert np.isnan(small["p99_high"].item()) and np.isfinite(small["p99"].item())
    enough = duration_percentiles(df.iloc[:368], q=0.99, confidence=0.95)
    assert np.isfinite(enough["p99_low"].item()) and np.isfinite(enough["p99_high"].item())


def test_order_statistic_ranks_cover_at_the_stated_level():
    n = np.array([10, 50, 400, 5000])
    q = np.array([0.5, 0.9, 0.99])
    low, high = order_statistic_ranks(n, q, 0.95)
    for i, ni in enumerate(n):
        for j, qj in enumerate(q):
            if np.isfinite(low[i, j]) and np.isfinite(high[i, j]):
                cover = stats.binom.cdf(high[i, j] - 1, ni, qj) - stats.binom.cdf(low[i, j] - 1, ni, qj)
                assert cover >= 0.95


def test_percentiles_by_outcome_and_nan_durations(df):
    ok = duration_percentiles(df, q=0.5, outcome="succeeded")
    bad = duration_percentiles(df, q=0.5, outcome="failed")
    failed = schema.failed(df)
    assert ok["p50"].item() == np.nanquantile(df.loc[~failed, "duration_s"], 0.5)
    assert bad["p50"].item() == np.nanquantile(df.loc[failed, "duration_s"], 0.5)
    assert ok["durations"].item() + bad["durations"].item() == df["duration_s"].notna().sum()


def test_sorting_paths_agree():
    rng = np.random.default_rng(9)
    values = np.rint(rng.lognormal(5, 2, 10_000)) / 1000
    codes = rng.integers(0, 37, 10_000)
    fast = sort_within_groups(values, codes, 40)
    slow = sort_within_groups(values + 1e-7, codes, 40)  # not whole milliseconds: the rank path
    np.testing.assert_array_equal(fast.counts, np.bincount(codes, minlength=40))
    for g in range(40):
        sl = slice(fast.starts[g], fast.starts[g] + fast.counts[g])
        np.testing.assert_array_equal(fast.values[sl], np.sort(values[codes == g]))
        np.testing.assert_allclose(slow.values[sl], np.sort(values[codes == g]) + 1e-7)


def test_group_codes_handle_many_sparse_combinations():
    rng = np.random.default_rng(4)
    n = 5000
    df = pd.DataFrame({"a": rng.integers(0, 3000, n).astype(str), "b": rng.integers(0, 3000, n).astype(str),
                       "c": rng.integers(0, 3000, n).astype(str)})  # fmt: skip
    g = group_rows(df, ["a", "b", "c"])
    ref = df.groupby(["a", "b", "c"], sort=True).ngroup().to_numpy()
    np.testing.assert_array_equal(g.codes, ref)


# --- summarize -------------------------------------------------------------------------------------------


def test_summarize_is_failure_rate_and_percentiles_merged(df):
    out = summarize(df, by="resource_version", freq="1D", percentile_confidence=0.95)
    rates = failure_rate(df, by="resource_version", freq="1D")
    pct = duration_percentiles(df, by="resource_version", freq="1D", q=(0.5, 0.9, 0.99), confidence=0.95)
    pd.testing.assert_frame_equal(out[rates.columns], rates)
    pd.testing.assert_frame_equal(out[pct.columns.drop("executions")], pct.drop(columns="executions"))
