"""Mergeable summaries of the executions table: the same statistics over histories no frame can hold.

A :class:`Summary` holds exact counts per (resource, time bucket, version, caller, status, failure reason)
and a KLL quantile sketch of durations per (resource, time bucket, version, caller, outcome). Summaries add:
build one per partition, per day or per engine, and merge them. The analysis functions ``failure_rate``,
``failure_reasons``, ``error_budget``, ``caller_breakdown`` and ``duration_percentiles`` accept a summary in
place of the executions table and return the same columns: counts and rates exactly, percentiles within the
sketch's rank-error bound.

Engines: :func:`from_frame` and :func:`from_parquet` (pandas, the reference), ``exec_analytics.summary.on_dask``
(Dask, a ``distributed`` cluster) and ``exec_analytics.summary.on_spark`` (Spark 4's ``kll_sketch_agg_double``);
the last two import their engine only when used.
"""

from .build import HISTORY_COLUMNS, from_frame, from_parquet, history_dataset
from .model import COUNT_KEYS, DEFAULT_K, OUTCOMES, SKETCH_KEYS, Summary, merge_sketches

__all__ = [
    "COUNT_KEYS",
    "DEFAULT_K",
    "HISTORY_COLUMNS",
    "OUTCOMES",
    "SKETCH_KEYS",
    "Summary",
    "from_frame",
    "from_parquet",
    "history_dataset",
    "merge_sketches",
]
