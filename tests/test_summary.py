"""The mergeable summary (pandas engine): merge laws, regrouping, Parquet round trip, and analysis from a
summary against analysis from the rows it summarizes (counts exact, percentiles within the rank bound)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import datasketches
import numpy as np
import pandas as pd
import pytest
from _summary_data import exact_rank_span, load_history

from exec_analytics.analysis import (
    caller_breakdown,
    duration_percentiles,
    error_budget,
    failure_rate,
    failure_reasons,
)
from exec_analytics.summary import COUNT_KEYS, Summary, from_frame, from_parquet, kll

if TYPE_CHECKING:
    from objstore import Location

pytest_plugins = ("objstore",)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    return load_history(tmp_path_factory.mktemp("summary"))


@pytest.fixture(scope="module")
def rows(history: tuple[pd.DataFrame, Path]) -> pd.DataFrame:
    return history[0]


@pytest.fixture(scope="module")
def summary(rows: pd.DataFrame) -> Summary:
    return from_frame(rows, freq="1D")


def _sketch_facts(s: Summary) -> pd.DataFrame:
    """Per sketch row: keys, n, min and max (what every merge order must keep exactly)."""
    facts = s.sketches.drop(columns="sketch").copy()
    sketches = [datasketches.kll_doubles_sketch.deserialize(b) for b in s.sketches["sketch"]]
    facts["n"] = [int(k.n) for k in sketches]
    facts["min"] = [k.get_min_value() for k in sketches]
    facts["max"] = [k.get_max_value() for k in sketches]
    return facts


def _reference_counts(rows: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Counts per summary key straight from the rows with pandas, independently of the builder."""
    keyed = rows.assign(bucket_start=rows["start_time"].dt.floor(freq).astype("datetime64[ms, UTC]"))
    keys = list(COUNT_KEYS)
    out = keyed.groupby(keys, dropna=False, observed=True).size().rename("executions").reset_index()
    for k in keys:
        if k != "bucket_start":
            out[k] = out[k].astype(object).where(out[k].notna(), None).astype("string")
    return out.sort_values(keys, na_position="last", kind="stable").reset_index(drop=True)


def test_counts_equal_a_plain_pandas_groupby(rows: pd.DataFrame, summary: Summary) -> None:
    assert summary.counts["executions"].sum() == len(rows)
    pd.testing.assert_frame_equal(summary.counts, _reference_counts(rows, "1D"))
    assert summary.sketches["durations"].sum() == rows["duration_s"].notna().sum()
    assert set(summary.sketches["outcome"]) == {"succeeded", "failed"}


def test_merge_is_associative_and_order_independent(rows: pd.DataFrame, summary: Summary) -> None:
    rng = np.random.default_rng(7)
    part = rng.integers(0, 3, len(rows))  # three interleaved partitions, not contiguous slices
    a, b, c = (from_frame(rows[part == i].reset_index(drop=True)) for i in range(3))
    orders = [(a + b) + c, a + (b + c), c.merge(a, b), (b + c) + a]
    for merged in orders:
        pd.testing.assert_frame_equal(merged.counts, summary.counts)
        pd.testing.assert_frame_equal(_sketch_facts(merged), _sketch_facts(summary))
    # Sketch bytes may differ between orders (KLL compaction is randomised); quantiles stay within the bound.
    eps = summary.rank_error()
    big = summary.sketches["durations"].to_numpy().argmax()
    keys = summary.sketches.iloc[big]
    mask = np.ones(len(rows), dtype=bool)
    for k in ("resource_rid", "resource_version", "caller_rid"):
        mask &= (rows[k].astype(object) == keys[k]).to_numpy(dtype=bool)
    day = rows["start_time"].dt.floor("1D") == keys["bucket_start"]
    ok = rows["status"].astype(object).eq("SUCCEEDED") == (keys["outcome"] == "succeeded")
    values = rows.loc[mask & day.to_numpy() & ok.to_numpy(), "duration_s"].to_numpy()
    assert len(values) == keys["durations"] > 1000  # large enough that the sketch compacts
    for merged in orders:
        sketch = datasketches.kll_doubles_sketch.deserialize(merged.sketches["sketch"].iloc[big])
        assert sketch.is_estimation_mode()
        for q in (0.5, 0.9, 0.99):
            below, at = exact_rank_span(values, sketch.get_quantile(q))
            assert below - eps <= q <= at + eps


def test_regroup_equals_counting_coarser_keys(rows: pd.DataFrame, summary: Summary) -> None:
    weekly = summary.regroup(drop=["caller_rid"], freq="2D")
    assert "caller_rid" not in weekly.counts.columns and weekly.freq == pd.Timedelta("2D")
    ref = _reference_counts(rows, "2D")
    keys = [k for k in COUNT_KEYS if k != "caller_rid"]
    ref = ref.groupby(keys, dropna=False).executions.sum().reset_index()
    ref = ref.sort_values(keys, na_position="last", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(weekly.counts, ref, check_dtype=False)
    assert weekly.sketches["durations"].sum() == summary.sketches["durations"].sum()
    with pytest.raises(ValueError, match="whole multiple"):
        summary.regroup(freq="36h")
    with pytest.raises(ValueError, match="regrouped without caller_rid"):
        caller_breakdown(weekly)


def test_merge_refuses_summaries_of_different_shape(rows: pd.DataFrame, summary: Summary) -> None:
    with pytest.raises(ValueError, match="freq"):
        summary + from_frame(rows, freq="1h")
    with pytest.raises(ValueError, match="k"):
        summary + from_frame(rows, k=200)


def test_parquet_round_trip_and_the_history_as_it_lies(history: tuple[pd.DataFrame, Path], summary: Summary,
                                                      tmp_path: Path) -> None:  # fmt: skip
    summary.write(tmp_path / "s")
    back = Summary.read(tmp_path / "s")
    pd.testing.assert_frame_equal(back.counts, summary.counts)
    pd.testing.assert_frame_equal(back.sketches, summary.sketches)
    assert (back.freq, back.k, back.success_statuses) == (summary.freq, summary.k, summary.success_statuses)
    on_disk = from_parquet(history[1])  # file by file from the cache's hive directories, then merged
    pd.testing.assert_frame_equal(on_disk.counts, summary.counts)
    pd.testing.assert_frame_equal(_sketch_facts(on_disk), _sketch_facts(summary))


def test_unknown_durations_are_counted_but_not_sketched(rows: pd.DataFrame) -> None:
    some = rows.iloc[:2000].copy()
    some.loc[some.index[::10], "duration_s"] = np.nan
    s = from_frame(some)
    assert s.counts["executions"].sum() == 2000
    assert s.sketches["durations"].sum() == 1800
    got = duration_percentiles(s, by="resource_rid", q=(0.5,))
    want = duration_percentiles(some, by="resource_rid", q=(0.5,))
    pd.testing.assert_frame_equal(got[["resource_rid", "executions", "durations"]],
                                  want[["resource_rid", "executions", "durations"]])  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Analysis from a summary == analysis from rows
# ---------------------------------------------------------------------------------------------------------


def test_failure_rate_and_reasons_are_exact(rows: pd.DataFrame, summary: Summary) -> None:
    for kwargs in ({}, {"by": "resource_version", "freq": "1D"}, {"by": ["resource_rid", "caller_kind"]}):
        pd.testing.assert_frame_equal(failure_rate(summary, **kwargs), failure_rate(rows, **kwargs))
    for by in (None, "resource_version", ["resource_rid", "resource_version"]):
        pd.testing.assert_frame_equal(failure_reasons(summary, by=by), failure_reasons(rows, by=by))
    with pytest.raises(ValueError, match="whole number"):
        failure_rate(summary, freq="6h")


def test_caller_breakdown_counts_exact_percentiles_within_bound(rows: pd.DataFrame, summary: Summary) -> None:
    got = caller_breakdown(summary, top=5, q=(0.5, 0.95))
    want = caller_breakdown(rows, top=5, q=(0.5, 0.95))
    exact = [c for c in want.columns if c not in ("p50", "p95")]
    pd.testing.assert_frame_equal(got[exact], want[exact])
    eps = summary.rank_error()
    codes = rows["caller_rid"].astype(object)
    for _, row in got.iterrows():
        if row["rank"] == 0:
            continue
        mine = codes.isna() if pd.isna(row["caller_rid"]) else codes.eq(row["caller_rid"])
        values = rows.loc[mine.to_numpy(dtype=bool), "duration_s"].to_numpy()
        for q, name in ((0.5, "p50"), (0.95, "p95")):
            below, at = exact_rank_span(values, row[name])
            assert below - eps <= q <= at + eps, (row["caller_rid"], name)


def test_percentiles_exact_while_sketches_hold_every_value(rows: pd.DataFrame, summary: Summary) -> None:
    # Per (version, caller) and day most groups are small: their sketches never compacted.
    kw = {"by": ["resource_version", "caller_rid"], "freq": "1D", "q": (0.5, 0.9), "confidence": 0.95}
    got, want = duration_percentiles(summary, **kw), duration_percentiles(rows, **kw)
    small = (want["durations"] <= summary.k).to_numpy()
    assert small.sum() > 20
    pd.testing.assert_frame_equal(got[small].reset_index(drop=True), want[small].reset_index(drop=True))


def test_percentile_intervals_are_widened_conservatively(rows: pd.DataFrame, summary: Summary) -> None:
    kw = {"by": "resource_rid", "q": (0.5, 0.95, 0.99), "confidence": 0.95}
    got, want = duration_percentiles(summary, **kw), duration_percentiles(rows, **kw)
    pd.testing.assert_frame_equal(got[["resource_rid", "executions", "durations"]],
                                  want[["resource_rid", "executions", "durations"]])  # fmt: skip
    big = (want["durations"] > 3 * summary.k).to_numpy()  # these groups' merged sketches compacted
    assert big.sum() >= 2
    eps = summary.rank_error()
    for i in np.flatnonzero(big):
        rid = want.loc[i, "resource_rid"]
        values = rows.loc[rows["resource_rid"].eq(rid).to_numpy(dtype=bool), "duration_s"].to_numpy()
        for q in (0.5, 0.95, 0.99):
            name = f"p{q * 100:g}"
            below, at = exact_rank_span(values, got.loc[i, name])
            assert below - eps <= q <= at + eps
            # Conservative: the widened interval contains the exact one.
            assert got.loc[i, f"{name}_low"] <= want.loc[i, f"{name}_low"]
            assert got.loc[i, f"{name}_high"] >= want.loc[i, f"{name}_high"]
    with pytest.raises(ValueError, match="not split by status"):
        duration_percentiles(summary, by="status")


def test_outcome_percentiles_follow_the_build_statuses(rows: pd.DataFrame, summary: Summary) -> None:
    got = duration_percentiles(summary, by="resource_version", outcome="failed", q=(0.5,))
    want = duration_percentiles(rows, by="resource_version", outcome="failed", q=(0.5,))
    pd.testing.assert_frame_equal(got[["resource_version", "executions", "durations"]],
                                  want[["resource_version", "executions", "durations"]])  # fmt: skip
    with pytest.raises(ValueError, match="success_statuses"):
        duration_percentiles(summary, outcome="failed", success_statuses=("SUCCEEDED", "FAILED"))


def test_error_budget_is_exact_on_aligned_windows(rows: pd.DataFrame) -> None:
    fine = from_frame(rows, freq="5min")
    now = pd.Timestamp("2026-11-18T12:00Z")
    for by in (None, "resource_rid"):
        got = error_budget(fine, slo=0.99, window="1D", now=now, by=by)
        want = error_budget(rows, slo=0.99, window="1D", now=now, by=by)
        pd.testing.assert_frame_equal(got, want)
    # Default "now": the end of the last bucket, which is also after the last execution.
    last = rows["start_time"].max().floor("5min") + pd.Timedelta("5min")
    pd.testing.assert_frame_equal(error_budget(fine, window="1D"), error_budget(rows, window="1D", now=last))
    with pytest.raises(ValueError, match="cannot resolve"):
        error_budget(from_frame(rows, freq="1h"), window="1D", now=now)
    with pytest.raises(ValueError, match="bucket boundary"):
        error_budget(fine, window="1D", now=now + pd.Timedelta("1min"))
    with pytest.raises(ValueError, match="latency_threshold"):
        error_budget(fine, window="1D", now=now, latency_threshold=1.0)


def test_plain_string_columns_and_an_empty_frame(rows: pd.DataFrame, summary: Summary) -> None:
    # The same executions with object columns instead of categoricals give the same summary.
    plain = rows.astype({c: object for c in ("status", "failure_reason", "resource_rid", "resource_version",
                                             "caller_rid")})  # fmt: skip
    again = from_frame(plain)
    pd.testing.assert_frame_equal(again.counts, summary.counts)
    pd.testing.assert_frame_equal(_sketch_facts(again), _sketch_facts(summary))
    empty = from_frame(rows.iloc[:0])
    assert empty.counts.empty and empty.sketches.empty
    pd.testing.assert_frame_equal((empty + summary).counts, summary.counts)
    one = failure_rate(empty)
    assert one["executions"].tolist() == [0] and np.isnan(one["rate"].iloc[0])


def test_a_history_on_s3_gives_the_summary_of_the_same_history_on_disk(
    history: tuple[pd.DataFrame, Path], summary: Summary, s3_location: Location, tmp_path: Path
) -> None:
    rows, remote = load_history(tmp_path, cache=s3_location.url("cache"))
    assert remote.startswith("s3://")
    pd.testing.assert_frame_equal(rows, history[0])  # the same executions, loaded into a bucket this time
    assert any(k.startswith("executions/") for k in s3_location.files(s3_location.url("cache")))
    on_s3 = from_parquet(remote)
    pd.testing.assert_frame_equal(on_s3.counts, summary.counts)
    pd.testing.assert_frame_equal(_sketch_facts(on_s3), _sketch_facts(summary))
    # A window read from the files with a filter is the summary of that window's rows.
    cut = pd.Timestamp("2026-11-18T00:00:00Z")
    later = from_parquet(remote, filters=[("start_time", ">=", cut)])
    pd.testing.assert_frame_equal(
        later.counts, from_frame(rows[rows["start_time"] >= cut].reset_index(drop=True)).counts
    )


def test_a_summary_round_trips_through_s3_and_refuses_a_mixed_pair(
    summary: Summary, rows: pd.DataFrame, s3_location: Location
) -> None:
    url = s3_location.url("summaries/week")
    summary.write(url)
    assert s3_location.files(url) == ["counts.parquet", "sketches.parquet"]
    back = Summary.read(url)
    pd.testing.assert_frame_equal(back.counts, summary.counts)
    pd.testing.assert_frame_equal(back.sketches, summary.sketches)
    # Another write's counts beside this write's sketches: a torn pair is refused, never merged.
    other = s3_location.url("summaries/other")
    from_frame(rows.iloc[:100]).write(other)
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    source = {"Bucket": bucket, "Key": f"{prefix.removesuffix('week')}other/counts.parquet"}
    s3_location.client.copy_object(Bucket=bucket, Key=f"{prefix}/counts.parquet", CopySource=source)
    with pytest.raises(ValueError, match="different writes"):
        Summary.read(url)
    with pytest.raises(ValueError, match=r"counts\.parquet is missing"):
        Summary.read(s3_location.url("summaries/none"))


def test_a_local_summary_is_written_atomically_and_checked_on_read(summary: Summary, tmp_path: Path) -> None:
    summary.write(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["counts.parquet", "sketches.parquet"]
    first = (tmp_path / "s" / "sketches.parquet").read_bytes()
    summary.write(tmp_path / "s")  # replaced in place, nothing left beside
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["counts.parquet", "sketches.parquet"]
    (tmp_path / "s" / "sketches.parquet").write_bytes(first)  # the first write's sketches, the second's counts
    with pytest.raises(ValueError, match="different writes"):
        Summary.read(tmp_path / "s")
    with pytest.raises(ValueError, match="no summary"):
        Summary.read(tmp_path / "nothing")


def _cumulative_weights(values: np.ndarray, weights: np.ndarray, at: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return cum[np.searchsorted(values[order], at, side="right") - 1]


@pytest.mark.parametrize("n", [0, 1, 2, 400, 401, 5_000, 200_000])
def test_a_sketchs_bytes_unpack_to_its_items_and_weights(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(n)
    sketch = datasketches.kll_doubles_sketch(400)
    if n:
        sketch.update(np.round(rng.lognormal(0.0, 1.0, n), 3))
    other = datasketches.kll_doubles_sketch(400)
    other.update(rng.lognormal(1.0, 0.5, 3_000))
    merged = datasketches.kll_doubles_sketch.deserialize(sketch.serialize())
    merged.merge(other)  # a merged sketch's levels (level 0 may be empty), as the Dask tree and Spark leave them
    for s in (sketch, merged):
        blob = bytes(s.serialize())
        fast = kll.unpack(blob)
        # The library's own reading, used for layouts the fast path does not know.
        monkeypatch.setattr(kll, "_FAMILY_KLL", -1)
        slow = kll.unpack(blob)
        monkeypatch.undo()
        for values, weights, count, low, high in (fast, slow):
            assert count == s.n == weights.sum()
            np.testing.assert_array_equal(np.unique(values), np.unique([v for v, _ in s]))
            if not count:
                continue
            assert (low, high) == (s.get_min_value(), s.get_max_value())
            # The items and weights say what the sketch says: n x its rank at every retained value.
            at = np.unique(values)
            want = np.rint(np.asarray(s.get_cdf(at, True))[:-1] * s.n).astype(np.int64)
            np.testing.assert_array_equal(_cumulative_weights(values, weights, at), want)


def test_percentiles_from_a_summary_are_the_same_on_every_call(rows: pd.DataFrame) -> None:
    # Many compacted sketches per group: merging them would flip coins on every call.
    part = np.random.default_rng(3).integers(0, 6, len(rows))
    pieces = [from_frame(rows[part == i].reset_index(drop=True), freq="1h") for i in range(6)]
    stacked = replace(
        pieces[0],
        counts=pd.concat([p.counts for p in pieces], ignore_index=True),
        sketches=pd.concat([p.sketches for p in pieces], ignore_index=True),
    )
    first = duration_percentiles(stacked, by="resource_rid", q=(0.5, 0.9, 0.99), confidence=0.95)
    assert (stacked.sketches.groupby("resource_rid")["sketch"].size() > 20).all()
    for _ in range(5):
        pd.testing.assert_frame_equal(duration_percentiles(stacked, by="resource_rid", q=(0.5, 0.9, 0.99),
                                                           confidence=0.95), first)  # fmt: skip
    eps = stacked.rank_error()
    for _, row in first.iterrows():
        values = rows.loc[rows["resource_rid"].eq(row["resource_rid"]).to_numpy(dtype=bool), "duration_s"].to_numpy()
        for q, name in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            below, at = exact_rank_span(values, row[name])
            assert below - eps <= q <= at + eps


def test_damaged_sketch_bytes_are_a_clear_error_never_a_wrong_answer() -> None:
    sketch = datasketches.kll_doubles_sketch(400)
    sketch.update(np.arange(5_000, dtype=np.float64))
    blob = bytes(sketch.serialize())
    many_levels = blob[:18] + bytes([250]) + blob[19:]  # more levels than the bytes hold
    for bad in (blob[:30], blob[:-8], many_levels, b"garbage!"):
        with pytest.raises(ValueError, match="not a KLL doubles sketch"):
            kll.unpack(bad)


def test_files_that_are_not_a_history_or_a_summary_are_named_in_a_clear_error(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "part-0.parquet")
    with pytest.raises(ValueError, match=r"part-0\.parquet is not a Parquet file of an executions history"):
        from_parquet(tmp_path)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "counts.parquet").write_bytes(b"not parquet")
    (tmp_path / "s" / "sketches.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"counts\.parquet is not a Parquet file"):
        Summary.read(tmp_path / "s")
