"""analysis: caller_breakdown, caller_concentration and error_budget against plain pandas references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from exec_analytics import schema
from exec_analytics.analysis import OTHER, caller_breakdown, caller_concentration, error_budget

NOW = pd.Timestamp("2026-11-20T00:00Z")


def frame(rows: list[tuple[str | None, int, int]], *, seed: int = 0, spread: str = "7D") -> pd.DataFrame:
    """Executions from (caller, executions, failures) triples, spread evenly over ``spread`` before NOW."""
    rng = np.random.default_rng(seed)
    callers, status = [], []
    for caller, n, x in rows:
        callers += [caller] * n
        status += ["FAILED"] * x + ["SUCCEEDED"] * (n - x)
    n = len(status)
    order = rng.permutation(n)  # failures spread over the period, not bunched at its start
    callers, status = [callers[i] for i in order], [status[i] for i in order]
    span = pd.Timedelta(spread).value // 1_000_000
    start = NOW.value // 1_000_000 - 1 - np.sort(rng.integers(0, span, n))[::-1]
    return pd.DataFrame({
        "start_time": pd.DatetimeIndex(start.astype("datetime64[ms]")).tz_localize("UTC"),
        "duration_s": np.rint(rng.lognormal(np.log(0.2), 0.8, n) * 1000) / 1000,
        "status": pd.Categorical(status),
        "failure_reason": pd.Categorical([None] * n, categories=["timeout"]),
        "resource_rid": pd.Categorical(["ri.function-registry.main.function.x"] * n),
        "resource_version": pd.Categorical(["1.0.0"] * n, ordered=True),
        "caller_rid": pd.Categorical(callers),
        "trace_owning_rid": pd.Categorical(["ri.x"] * n),
        "foundry_trace_id": pd.array([str(i) for i in range(n)], dtype="string"),
    })  # fmt: skip


W = "ri.workshop.main.module."
A = "ri.actions.main.action-type."


@pytest.fixture(scope="module")
def callers_df() -> pd.DataFrame:
    rows = [(W + "big", 3000, 300), (W + "tiny", 2, 1), (A + "busy", 20000, 700), (A + "ok", 5000, 150),
            (None, 400, 20), (W + "none-failed", 500, 0)]  # fmt: skip
    rows += [(W + f"small{i}", 60, 2) for i in range(8)]
    return frame(rows)


# --- caller_breakdown ------------------------------------------------------------------------------------


def test_one_failure_in_two_runs_does_not_outrank_300_in_3000(callers_df):
    out = caller_breakdown(callers_df, top=None)
    rank = dict(zip(out["caller_rid"].fillna("<none>"), out["rank"], strict=True))
    assert rank[W + "big"] == 1
    assert rank[W + "tiny"] > rank[W + "big"]
    tiny = out[out["caller_rid"] == W + "tiny"].iloc[0]
    assert tiny["low_volume"] and tiny["rate"] == 0.5


def test_breakdown_counts_rates_and_percentiles_match_plain_pandas(callers_df):
    out = caller_breakdown(callers_df, top=None, q=(0.5, 0.95))
    df = callers_df.assign(failed=schema.failed(callers_df))
    ref = df.groupby("caller_rid", observed=True, dropna=False).agg(
        executions=("failed", "size"), failures=("failed", "sum"),
        p50=("duration_s", lambda d: np.quantile(d, 0.5)), p95=("duration_s", lambda d: np.quantile(d, 0.95)),
    )  # fmt: skip
    got = out.set_index(out["caller_rid"].astype(object).where(out["caller_rid"].notna(), None))
    ref.index = ref.index.astype(object).where(ref.index.notna(), None)
    for caller, row in ref.iterrows():
        mine = got.loc[caller] if caller is not None else got[got.index.isna()].iloc[0]
        assert (mine["executions"], mine["failures"]) == (row["executions"], row["failures"])
        assert mine["p50"] == row["p50"] and mine["p95"] == row["p95"]
        ci = stats.binomtest(int(row["failures"]), int(row["executions"])).proportion_ci(method="exact")
        assert (mine["rate_low"], mine["rate_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert out["share"].sum() == pytest.approx(1.0)
    assert out["failure_share"].sum() == pytest.approx(1.0)
    kinds = dict(zip(out["caller_rid"].fillna("<none>"), out["caller_kind"].fillna("<none>"), strict=True))
    assert kinds[W + "big"] == "workshop.module" and kinds[A + "busy"] == "actions.action-type"
    assert kinds["<none>"] == "<none>"  # executions without a caller: their own row, no kind


def test_other_row_collects_the_rest(callers_df):
    out = caller_breakdown(callers_df, top=3)
    assert out["rank"].tolist() == [1, 2, 3, 0]
    other = out.iloc[-1]
    assert other["caller_rid"] == OTHER and other["callers"] == 14 - 3
    assert out["executions"].sum() == len(callers_df)
    assert out["failures"].sum() == int(schema.failed(callers_df).sum())
    top3 = set(out["caller_rid"].iloc[:3])
    rest = callers_df[~callers_df["caller_rid"].astype(object).isin(top3)]
    assert other["p50"] == np.quantile(rest["duration_s"], 0.5)
    assert np.isnan(other["excess_failures_low"])


def test_breakdown_bad_arguments(callers_df):
    with pytest.raises(ValueError, match="rank_by"):
        caller_breakdown(callers_df, rank_by="loudest")
    with pytest.raises(ValueError, match="top"):
        caller_breakdown(callers_df, top=0)


def test_concentration_matches_a_manual_computation(callers_df):
    out = caller_concentration(callers_df, k=(1, 3)).set_index("measure")
    for measure, counts in (("executions", callers_df["caller_rid"].value_counts(dropna=False)),
                            ("failures", callers_df.loc[schema.failed(callers_df), "caller_rid"]
                             .value_counts(dropna=False))):  # fmt: skip
        counts = counts[counts > 0].sort_values(ascending=False)
        share = counts / counts.sum()
        row = out.loc[measure]
        assert row["total"] == counts.sum() and row["callers"] == len(counts)
        assert row["top1_share"] == pytest.approx(share.iloc[0])
        assert row["top3_share"] == pytest.approx(share.iloc[:3].sum())
        assert row["hhi"] == pytest.approx((share**2).sum())
        assert row["effective_callers"] == pytest.approx(1 / (share**2).sum())


# --- error_budget ----------------------------------------------------------------------------------------


def test_budget_against_hand_computation():
    df = frame([(W + "a", 9000, 150), (A + "b", 1000, 50)], spread="20D")
    out = error_budget(df, slo=0.99, window="28D", now=NOW).iloc[0]
    assert (out["executions"], out["bad"]) == (10_000, 200)
    assert out["sli"] == pytest.approx(0.98)
    assert out["allowed_bad"] == pytest.approx(100.0)
    assert out["consumed"] == pytest.approx(2.0) and out["remaining"] == pytest.approx(-1.0)
    ci = stats.binomtest(9800, 10_000).proportion_ci(method="exact")
    assert (out["sli_low"], out["sli_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    t = df["start_time"]
    for w, length in (("5m", "5min"), ("30m", "30min"), ("1h", "1h"), ("6h", "6h"), ("3d", "3D")):
        inside = (t >= NOW - pd.Timedelta(length)) & (t < NOW)
        n, x = int(inside.sum()), int((inside & schema.failed(df)).sum())
        assert (out[f"executions_{w}"], out[f"bad_{w}"]) == (n, x)
        expected = x / n / 0.01 if n >= 20 else np.nan
        assert out[f"burn_{w}"] == pytest.approx(expected, nan_ok=True)
    assert out["window_end"] == NOW and out["window_start"] == NOW - pd.Timedelta("28D")


def test_burn_alerts_fire_on_a_recent_outage_and_respect_the_volume_guard():
    calm = frame([(W + "a", 20_000, 100)], spread="10D")
    outage = frame([(W + "a", 600, 300)], spread="30min", seed=1)
    df = schema.concat_frames([calm, outage])
    out = error_budget(df, slo=0.999, now=NOW).iloc[0]
    assert out["alert_page_1h_5m"] and out["alert_page_6h_30m"]
    assert error_budget(calm, slo=0.999, now=NOW)[["alert_page_1h_5m", "alert_page_6h_30m"]].sum().sum() == 0
    # Two failures in three executions are not a 666x burn: below min_executions nothing fires.
    sparse = frame([(W + "a", 3, 2)], spread="4min")
    guarded = error_budget(sparse, slo=0.999, now=NOW).iloc[0]
    assert np.isnan(guarded["burn_5m"]) and not guarded["alert_page_1h_5m"]
    loose = error_budget(sparse, slo=0.999, now=NOW, min_executions=1).iloc[0]
    assert loose["alert_page_1h_5m"]


def test_latency_threshold_makes_slow_successes_bad_and_by_groups():
    df = frame([(W + "a", 2000, 10), (A + "b", 1000, 10)])
    df.loc[df.index[:5], "duration_s"] = np.nan
    out = error_budget(df, slo=0.99, latency_threshold=0.5, now=NOW, by="caller_rid")
    slow = ~(df["duration_s"] <= 0.5) | schema.failed(df)
    ref = slow.groupby(df["caller_rid"], observed=True).sum()
    assert dict(zip(out["caller_rid"].astype(str), out["bad"], strict=True)) == ref.to_dict()


def test_budget_defaults_now_from_attrs_and_rejects_bad_slo():
    df = frame([(W + "a", 100, 1)])
    df.attrs["end"] = "2026-11-25T00:00:00+00:00"
    assert error_budget(df)["window_end"].iloc[0] == pd.Timestamp("2026-11-25T00:00Z")
    del df.attrs["end"]
    assert error_budget(df)["window_end"].iloc[0] == df["start_time"].max() + pd.Timedelta("1ms")
    with pytest.raises(ValueError, match="slo"):
        error_budget(df, slo=99)
    with pytest.raises(ValueError, match="window"):
        error_budget(df, window="1M")


def test_check_slo_is_the_one_slo_rule():
    from exec_analytics.analysis.budget import check_slo

    assert check_slo(0.999) == 0.999 and check_slo(np.float64(0.99)) == 0.99
    for bad in (99, 1, 0, True, float("nan"), "0.99", None):
        with pytest.raises(ValueError, match="slo must be a fraction strictly between 0 and 1"):
            check_slo(bad)
        with pytest.raises(ValueError, match="slo must be a fraction"):
            error_budget(frame([(W + "a", 10, 1)]), slo=bad, now=NOW)  # type: ignore[arg-type]
