"""Build a :class:`~exec_analytics.summary.Summary` with Spark: one aggregation written by Spark SQL itself.

One ``GROUP BY`` over one scan gives the counts (``count(*)``) and duration sketches (Spark 4's built-in
``kll_sketch_agg_double``), whose binary output is the Apache DataSketches KLL format that
``datasketches.kll_doubles_sketch`` reads and merges, so a Spark summary adds to a pandas or Dask one. Only
the small result leaves the JVM (as Arrow). Time buckets are integer arithmetic on epoch milliseconds
(``unix_millis(start_time) div step``), independent of the session time zone.

Needs the ``spark`` extra (``pip install 'exec_analytics[spark]'``, Spark 4.1 or later) and Java 17+.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .build import HISTORY_COLUMNS, bucket_length, statuses
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
        Directory of the history as it lies, in a form the session can read: a local path, or for object
        storage the URL its Hadoop filesystem is configured for (``s3a://bucket/prefix/executions`` with the
        ``hadoop-aws`` package on the classpath; ``s3://`` is not a Hadoop scheme). Only ``*.parquet`` files
        are read.
    freq, k, success_statuses
        As :func:`~exec_analytics.summary.from_frame`.

    Returns
    -------
    Summary
        Counts identical to the pandas engine's; sketches from ``kll_sketch_agg_double(duration_s, k)``.
    """
    step, ok = bucket_length(freq), statuses(success_statuses)
    step_ms = int(step // pd.Timedelta(milliseconds=1))
    # The directory as it lies: every *.parquet below it (Spark skips files starting with "_" or ".").
    reader = spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", "*.parquet")
    df = reader.parquet(str(path)).select(*HISTORY_COLUMNS)
    keys = ", ".join(_ROW_KEYS)
    success = ", ".join(_sql_string(s) for s in ok)
    # A missing status is not a success: `status IN (...)` is NULL there, and CASE sends it to "failed".
    outcome = f"CASE WHEN status IN ({success}) THEN 'succeeded' ELSE 'failed' END AS outcome"
    known = "CASE WHEN isnan(duration_s) THEN NULL ELSE duration_s END AS duration_s"
    bucket = f"unix_millis(start_time) div {step_ms} * {step_ms} AS bucket_start"
    view = f"summary_rows_{uuid.uuid4().hex}"  # one per call: concurrent builds never share a view
    df.selectExpr(*_ROW_KEYS, "status", "failure_reason", known, bucket, outcome).createOrReplaceTempView(view)
    # One scan: counts and sketches at the finest key (the count keys; outcome follows from status). The few
    # sketches of one outcome split by status and reason are merged in Python by make_summary.
    table = spark.sql(
        f"SELECT {keys}, bucket_start, status, failure_reason, outcome, count(*) AS executions, "
        f"count(duration_s) AS durations, kll_sketch_agg_double(duration_s, {int(k)}) AS sketch "
        f"FROM {view} GROUP BY {keys}, bucket_start, status, failure_reason, outcome"
    ).toArrow()
    spark.catalog.dropTempView(view)
    frame = table.drop_columns(["sketch"]).to_pandas()
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"].to_numpy(), unit="ms", utc=True)
    frame["sketch"] = pd.Series(table.column("sketch").to_pylist(), dtype=object)
    with_durations = frame[frame["durations"] > 0].reset_index(drop=True)
    return make_summary(frame, with_durations, freq=step, k=int(k), success_statuses=ok)
