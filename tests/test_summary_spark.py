"""The Spark engine in local mode: Spark SQL writes the same summary as the pandas engine, and the sketches
Spark's ``kll_sketch_agg_double`` writes deserialize and merge in Python. One session for the module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasketches
import numpy as np
import pandas as pd
import pytest
from _summary_data import exact_rank_span, load_history

from exec_analytics.analysis import caller_breakdown, duration_percentiles, failure_reasons
from exec_analytics.summary import from_frame, kll, on_spark

# pyspark comes with the test extra; the one thing a machine may lack is Java, and only then does this skip.
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime and none is on PATH (.ci/run installs openjdk-17-jre-headless)",
                allow_module_level=True)  # fmt: skip


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("exec_analytics-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
def test_spark_builds_the_pandas_summary(spark: Any, tmp_path: Path) -> None:
    rows, history = load_history(tmp_path)
    want = from_frame(rows, freq="1D")
    got = on_spark.build(spark, history, freq="1D")
    pd.testing.assert_frame_equal(got.counts, want.counts)
    pd.testing.assert_frame_equal(got.sketches.drop(columns="sketch"), want.sketches.drop(columns="sketch"))
    compacted = 0
    for blob, n in zip(got.sketches["sketch"], got.sketches["durations"], strict=True):
        sketch = datasketches.kll_doubles_sketch.deserialize(blob)  # Spark's bytes, read by DataSketches
        assert sketch.n == n and sketch.k == got.k
        # ... and unpacked into weighted items that say what the sketch says (n x rank at every value).
        values, weights, count, _, _ = kll.unpack(blob)
        at = np.unique(values)
        cum = np.cumsum(weights[np.argsort(values, kind="stable")])[np.searchsorted(np.sort(values), at, "right") - 1]
        assert count == n and (cum == np.rint(np.asarray(sketch.get_cdf(at, True))[:-1] * n)).all()
        compacted += bool(sketch.is_estimation_mode())
    assert compacted > 0
    pd.testing.assert_frame_equal(failure_reasons(got, by="resource_version"),
                                  failure_reasons(rows, by="resource_version"))  # fmt: skip
    exact_cols = ["rank", "caller_rid", "executions", "failures", "rate_low", "durations"]
    pd.testing.assert_frame_equal(caller_breakdown(got)[exact_cols], caller_breakdown(rows)[exact_cols])

    # Spark's sketches merge with Python's: half the days from Spark, half from pandas, same percentiles.
    day = rows["start_time"].dt.floor("1D")
    first = day == day.min()
    spark_first = type(got)(
        counts=got.counts[got.counts["bucket_start"] == day.min()].reset_index(drop=True),
        sketches=got.sketches[got.sketches["bucket_start"] == day.min()].reset_index(drop=True),
        freq=got.freq,
        k=got.k,
        success_statuses=got.success_statuses,
    )
    mixed = spark_first + from_frame(rows[~first.to_numpy()].reset_index(drop=True), freq="1D")
    pd.testing.assert_frame_equal(mixed.counts, want.counts)
    eps = mixed.rank_error()
    pct = duration_percentiles(mixed, by="resource_rid", q=(0.5, 0.95))
    assert (pct["durations"] == duration_percentiles(rows, by="resource_rid")["durations"]).all()
    for _, row in pct.iterrows():
        values = rows.loc[rows["resource_rid"].eq(row["resource_rid"]).to_numpy(dtype=bool), "duration_s"].to_numpy()
        for q, name in ((0.5, "p50"), (0.95, "p95")):
            below, at = exact_rank_span(values, row[name])
            assert below - eps <= q <= at + eps
    assert np.isfinite(pct[["p50", "p95"]].to_numpy()).all()
