"""analysis.explain_change: the change between two periods split into mix and within parts, with causes.

Checked on the simulator (its truth read from the profile: the 1.3.0 rollout moves traffic without changing
any caller's behaviour, 1.4.0 multiplies timeouts) and on synthetic weeks (``synthetic_week`` of
``test_analysis_changepoints``) where the truth is set by hand: quiet pairs of weeks, a pure caller-mix shift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from test_analysis_changepoints import MONDAY, synthetic_week

from exec_analytics import schema
from exec_analytics.analysis import explain_change
from exec_analytics.simulator import Workload

WEEK = pd.Timedelta(days=7)
FIRST = (MONDAY, MONDAY + WEEK)
SECOND = (MONDAY + WEEK, MONDAY + 2 * WEEK)


def simulator_weeks(workload: Workload, version: str) -> tuple[pd.DataFrame, tuple, tuple]:
    """The week from the Monday before ``version``'s canary, and the week before it, as executions tables."""
    spec = next(v for v in workload.main.versions if v.version == version)
    monday = spec.canary_start.normalize() - pd.Timedelta(days=spec.canary_start.day_of_week)
    gt = workload.ground_truth(workload.main.rid, monday - WEEK, monday + WEEK)
    df = schema.to_frame(pa.Table.from_pandas(gt[list(schema.COLUMNS)], preserve_index=False))
    return df, (monday, monday + WEEK), (monday - WEEK, monday)


@pytest.fixture(scope="module")
def regression(workload):
    df, period, previous = simulator_weeks(workload, workload.main.regressed_version)
    return df, period, previous, explain_change(df, period, previous)


def _rows(table: pd.DataFrame, metric: str = "failure_rate", **match: object) -> pd.DataFrame:
    mask = table["metric"] == metric
    for column, value in match.items():
        mask &= table[column].isna() if value is None else table[column] == value
    return table[mask]


def test_the_parts_add_up_exactly(regression):
    df, period, previous, result = regression
    t = result.table
    total = _rows(t, component="total")["contribution"].iloc[0]
    observed = [
        (df[(df["start_time"] >= a) & (df["start_time"] < b)]["status"] != "SUCCEEDED").mean()
        for a, b in (previous, period)
    ]
    assert total == pytest.approx(observed[1] - observed[0], abs=1e-12)
    by_caller = _rows(t, by="caller_rid", failure_reason=None)
    assert abs(by_caller["contribution"].sum() - total) < 1e-12
    within = _rows(t, component="within", by="caller_rid")["contribution"].sum()
    for view in (
        _rows(t, component="within", by="resource_version", failure_reason=None),
        _rows(t, component="within", by="failure_reason"),
        _rows(t, component="within", by="resource_version")[lambda x: x["failure_reason"].notna()],
    ):
        assert abs(view["contribution"].sum() - within) < 1e-12
    for metric in ("p50", "p95"):
        lat = _rows(t, metric).set_index("component")["contribution"]
        assert abs(lat["mix"] + lat["within"] - lat["total"]) < 1e-12


def test_the_regression_is_within_the_new_version_and_its_timeouts(regression, workload):
    _, _, _, result = regression
    p = workload.main
    bad = p.regressed_version
    worse = [r for r, m in p.failure_multipliers[bad].items() if m > 1]
    t = result.table
    version = _rows(t, component="within", by="resource_version", segment=bad, failure_reason=None).iloc[0]
    assert version["cause"] and version["contribution"] > 0
    assert version["value_period"] > version["value_previous"]  # worse than the same callers did before
    reasons = _rows(t, component="within", by="resource_version", segment=bad)
    named = set(
        reasons[reasons["failure_reason"].notna() & reasons["cause"] & (reasons["contribution"] > 0)]["failure_reason"]
    )
    assert named == set(worse)
    assert not _rows(t, component="mix")["cause"].any()  # the callers' shares did not move
    assert f"within version {bad} ({', '.join(worse)})" in result.sentences[0]
    for metric in ("p50", "p95"):
        lat = _rows(t, metric).set_index("component")
        assert lat.loc["within", "cause"] and lat.loc["within", "contribution"] > 0
        assert not lat.loc["mix", "cause"]


def test_the_confounded_rollout_is_not_a_change_within_its_version(workload):
    p = workload.main
    df, period, previous = simulator_weeks(workload, p.confounded_version)
    result = explain_change(df, period, previous)
    row = _rows(result.table, component="within", by="resource_version", segment=p.confounded_version)
    assert not row["cause"].any()
    assert row[row["failure_reason"].isna()]["share_period"].iloc[0] > 0.1  # it did roll out that week
    assert not result.changed
    assert any(s.startswith(f"Version {p.confounded_version} reached") for s in result.sentences)
    # Its raw latency is higher, only because it served the slow callers first: at the same mix, nothing.
    for metric in ("p50", "p95"):
        assert not _rows(result.table, metric)["cause"].any()


def test_a_caller_mix_shift_is_mix_not_within():
    # Traffic moves to the slow (and, here, more failing) callers from the second week on; no caller changes.
    df = synthetic_week(5, weeks=2, per_week=30_000, step_hour=168, mix_shift=1.5, failure=0.03)
    result = explain_change(df, SECOND, FIRST)
    t = result.table
    assert _rows(t, component="mix")["cause"].any() or _rows(t, "p50", component="mix")["cause"].any()
    assert not _rows(t, component="within")["cause"].any()
    for metric in ("p50", "p95"):
        lat = _rows(t, metric).set_index("component")
        assert lat.loc["mix", "cause"] and lat.loc["mix", "contribution"] > 0
        assert not lat.loc["within", "cause"]
    # The check has teeth: ignoring callers, the same change reads as latency "within" the resource.
    naive = explain_change(df, SECOND, FIRST, by=("resource_version",))
    assert _rows(naive.table, "p50", component="within")["cause"].iloc[0]


def test_a_failure_step_in_one_caller_is_within_that_caller():
    df = synthetic_week(6, weeks=2, per_week=30_000)
    second = (df["start_time"] >= SECOND[0]).to_numpy()
    caller = (df["caller_rid"] == "ri.workshop.main.module.caller-00").to_numpy()
    rng = np.random.default_rng(0)
    extra = second & caller & (rng.random(len(df)) < 0.05)  # five more failures per hundred of that caller
    df.loc[extra, "status"] = "FAILED"
    result = explain_change(df, SECOND, FIRST, percentiles=None)
    causes = result.table[result.table["cause"] & (result.table["component"] != "total")]
    assert set(causes["segment"]) >= {"ri.workshop.main.module.caller-00"}
    assert (causes["component"] == "within").all()
    row = causes[(causes["segment"] == "ri.workshop.main.module.caller-00") & (causes["by"] == "caller_rid")].iloc[0]
    # The truth: the caller's average share times the five points its successes lost.
    share = (row["share_previous"] + row["share_period"]) / 2
    assert row["low"] <= share * 0.05 * (1 - row["value_previous"]) <= row["high"]
    assert "(no reason)" in set(causes["segment"])  # the added failures carry no reason


@pytest.mark.slow
def test_quiet_pairs_of_weeks_say_nothing_changed():
    # Nothing changes in any caller; shares drift by about 10% (relative) a week, which moves the percentiles
    # by less than their noise. Larger drifts are real mix changes and are reported as such (see the
    # calibration script).
    trials = 40
    changed = 0
    for seed in range(trials):
        df = synthetic_week(200 + seed, weeks=2, per_week=10_000, drift=0.1)
        changed += explain_change(df, SECOND, FIRST, n_boot=100, seed=seed).changed
    assert changed <= 0.05 * trials


def test_deterministic_given_seed_and_independent_of_row_order(regression):
    df, period, previous, result = regression
    again = explain_change(df.iloc[::-1].reset_index(drop=True), period, previous)
    pd.testing.assert_frame_equal(result.table, again.table)
    assert result.sentences == again.sentences
    other = explain_change(df, period, previous, seed=1)
    assert not np.allclose(other.table["low"], result.table["low"])
    np.testing.assert_allclose(other.table["contribution"], result.table["contribution"], rtol=0, atol=0)


def test_bad_arguments_raise(regression):
    df, period, previous, _ = regression
    with pytest.raises(ValueError, match="overlap"):
        explain_change(df, period, (period[0] - pd.Timedelta(days=1), period[1]))
    with pytest.raises(ValueError, match="n_boot"):
        explain_change(df, period, previous, n_boot=10)
    with pytest.raises(ValueError, match="both windows"):
        explain_change(df, period, (previous[0] - WEEK * 10, previous[0] - WEEK * 9))


def test_parts_match_a_direct_computation_of_das_guptas_formula():
    df = synthetic_week(9, weeks=2, per_week=8_000, step_hour=200, failure_step=1.5, mix_shift=0.8)
    result = explain_change(df, SECOND, FIRST, by=("caller_rid",), percentiles=None, n_boot=50)
    # Reference: shares and rates per caller with pandas, then the symmetric decomposition term by term.
    week = np.where(df["start_time"] >= SECOND[0], "period", "previous")
    g = (
        df.assign(week=week, failed=df["status"] != "SUCCEEDED")
        .groupby(["caller_rid", "week"], observed=True)["failed"]
        .agg(["size", "mean"])
        .unstack("week")
    )
    w = g["size"] / g["size"].sum()
    r = g["mean"]
    rate = (w * r).sum()
    centre = rate.mean()
    mix = (w["period"] - w["previous"]) * ((r["period"] + r["previous"]) / 2 - centre)
    within = (w["period"] + w["previous"]) / 2 * (r["period"] - r["previous"])
    t = result.table
    for component, expected in (("mix", mix), ("within", within)):
        got = t[t["component"] == component].set_index("segment")["contribution"]
        np.testing.assert_allclose(got.loc[expected.index.astype(str)].to_numpy(), expected.to_numpy(), atol=1e-15)
    assert t.loc[t["component"] == "total", "contribution"].iloc[0] == pytest.approx(rate["period"] - rate["previous"])


def test_shares_that_round_alike_get_the_digits_that_tell_them_apart() -> None:
    from exec_analytics.analysis.explain import _shares

    assert _shares(0.04, 0.09) == "4% to 9%"
    assert _shares(0.021, 0.024) == "2.1% to 2.4%"  # never "growing from 2% to 2%"
    assert _shares(0.0201, 0.0202) == "2.01% to 2.02%"


def test_a_reason_within_a_version_has_its_rates_before_and_after(regression, workload):
    """A version's row split by reason carries that reason's rate in the version and among the same callers
    before, so a causes table shows real numbers (it showed "– → –"), and they add up to the version's rates."""
    df, period, _, result = regression
    bad = workload.main.regressed_version
    t = result.table
    version = _rows(t, component="within", by="resource_version", segment=bad, failure_reason=None).iloc[0]
    reasons = _rows(t, component="within", by="resource_version", segment=bad)
    reasons = reasons[reasons["failure_reason"].notna()].set_index("failure_reason")
    assert reasons["value_previous"].notna().all() and reasons["value_period"].notna().all()
    assert reasons["value_previous"].sum() == pytest.approx(version["value_previous"], rel=1e-9)
    assert reasons["value_period"].sum() == pytest.approx(version["value_period"], rel=1e-9)
    # The period's rate of a reason in the version is counted directly from the rows.
    now = df[(df["start_time"] >= period[0]) & (df["start_time"] < period[1]) & (df["resource_version"] == bad)]
    timeouts = ((now["status"] != "SUCCEEDED") & (now["failure_reason"] == "timeout")).mean()
    assert reasons.loc["timeout", "value_period"] == pytest.approx(timeouts, rel=1e-9)
    assert reasons.loc["timeout", "value_period"] > reasons.loc["timeout", "value_previous"]  # the regression
    assert (reasons["executions_period"] == version["executions_period"]).all()
