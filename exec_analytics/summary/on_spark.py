"""Build a :class:`~exec_analytics.summary.Summary` with Spark: two aggregations written by Spark SQL itself.

Counts are a ``GROUP BY`` with ``count(*)``; duration sketches are Spark 4's built-in
``kll_sketch_agg_double``, whose binary output is the Apache DataSketches KLL format that
``datasketches.kll_doubles_sketch`` reads and merges, so a Spark summary adds to a pandas or Dask one. Only
the two small results leave the JVM (as Arrow). Time buckets are integer arithmetic on epoch milliseconds
(``unix_millis(start_time) div step``), independent of the session time zone.

Needs the ``spark`` extra (``pip install 'exec_analytics[spark]'``, Spark 4.1 or later) and Java 17+.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .build import HISTORY_COLUMNS, bucket_length, history_dataset, statuses
from .model import DEFAULT_K, Summary, make_summary

__all__ = ["build"]

_ROW_KEYS = ("resource_rid", "resource_version", "caller_rid")


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build(
    spark: Any,
    path: str | Path,
    *,
    freq: str | pd.Timedelta = "1D",
    k: int = DEFAULT_K,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
) -> Summary:
    """Summarize the Parquet history under ``path`` with a Spark session.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession
        Any session (``local[*]`` or a cluster's).
    path : str or Path
        Directory of the history as it lies; only ``*.parquet`` files are read.
    freq, k, success_statuses
        As :func:`~exec_analytics.summary.from_frame`.

    Returns
    -------
    Summary
        Counts identical to the pandas engine's; sketches from ``kll_sketch_agg_double(duration_s, k)``.
    """
    step, ok = bucket_length(freq), statuses(success_statuses)
    step_ms = int(step // pd.Timedelta(milliseconds=1))
    files = history_dataset(path).files
    df = spark.read.parquet(*files).select(*HISTORY_COLUMNS)
    keys = ", ".join(_ROW_KEYS)
    bucket = f"unix_millis(start_time) div {step_ms} * {step_ms} AS bucket_start"
    success = ", ".join(_sql_string(s) for s in ok)
    # A missing status is not a success: `status IN (...)` is NULL there, and CASE sends it to "failed".
    outcome = f"CASE WHEN status IN ({success}) THEN 'succeeded' ELSE 'failed' END AS outcome"
    view = f"summary_rows_{uuid.uuid4().hex}"  # one per call: concurrent builds never share a view
    df.selectExpr(*_ROW_KEYS, "status", "failure_reason", "duration_s", bucket, outcome).createOrReplaceTempView(view)
    counts = spark.sql(
        f"SELECT {keys}, bucket_start, status, failure_reason, count(*) AS executions "
        f"FROM {view} GROUP BY {keys}, bucket_start, status, failure_reason"
    ).toArrow()
    sketches = spark.sql(
        f"SELECT {keys}, bucket_start, outcome, count(duration_s) AS durations, "
        f"kll_sketch_agg_double(duration_s, {int(k)}) AS sketch "
        f"FROM {view} WHERE duration_s IS NOT NULL AND NOT isnan(duration_s) "
        f"GROUP BY {keys}, bucket_start, outcome"
    ).toArrow()
    spark.catalog.dropTempView(view)
    counts_df = counts.to_pandas()
    sketch_df = sketches.drop_columns(["sketch"]).to_pandas()
    sketch_df["sketch"] = pd.Series(sketches.column("sketch").to_pylist(), dtype=object)
    for frame in (counts_df, sketch_df):
        frame["bucket_start"] = pd.to_datetime(frame["bucket_start"].to_numpy(), unit="ms", utc=True)
    return make_summary(counts_df, sketch_df, freq=step, k=int(k), success_statuses=ok)
