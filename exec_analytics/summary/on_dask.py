"""Build a :class:`~exec_analytics.summary.Summary` with Dask: one summary per Parquet partition, merged in a tree.

Each partition is summarized by the pandas engine (:func:`~exec_analytics.summary.from_frame`) where it is
read, so a worker holds one partition and small summaries, never the history; partial summaries are merged
``fan_in`` at a time, so no task merges more than a few. Runs on whatever scheduler is active: a
``distributed.Client`` (local or a cluster's address) or Dask's default threads.

Needs the ``dask`` extra (``pip install 'exec_analytics[dask]'``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import pandas as pd
from dask.base import compute
from dask.delayed import delayed

from .build import HISTORY_COLUMNS, bucket_length, from_frame, history_dataset, statuses
from .model import DEFAULT_K, Summary

__all__ = ["build"]


def _summarize(part: pd.DataFrame, freq: pd.Timedelta, k: int, ok: tuple[str, ...]) -> Summary:
    return from_frame(part, freq=freq, k=k, success_statuses=ok)


def _merge(*parts: Summary) -> Summary:
    return parts[0].merge(*parts[1:])


def build(
    path: str | Path,
    *,
    freq: str | pd.Timedelta = "1D",
    k: int = DEFAULT_K,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
    filters: Any = None,
    fan_in: int = 8,
) -> Summary:
    """Summarize the Parquet history under ``path`` with Dask.

    Parameters
    ----------
    path : str or Path
        Directory of the history as it lies (hive ``resource=``/``date=`` directories); only ``*.parquet``
        files are read.
    freq, k, success_statuses
        As :func:`~exec_analytics.summary.from_frame`.
    filters : optional
        Passed to ``dask.dataframe.read_parquet`` (e.g. ``[("start_time", ">=", ts)]``) to read one window.
    fan_in : int
        Partial summaries merged per task.

    Returns
    -------
    Summary
        The same summary as :func:`~exec_analytics.summary.from_parquet` (counts identical; sketches within
        their rank-error bound).
    """
    step, ok = bucket_length(freq), statuses(success_statuses)
    files = history_dataset(path).files
    ddf = dd.read_parquet(files, columns=list(HISTORY_COLUMNS), filters=filters)
    parts = [delayed(_summarize)(p, step, int(k), ok) for p in ddf.to_delayed()]
    while len(parts) > 1:
        parts = [delayed(_merge)(*parts[i : i + fan_in]) for i in range(0, len(parts), max(fan_in, 2))]
    (result,) = compute(parts[0])  # type: ignore[no-untyped-call]  # dask.base.compute has no annotations
    summary: Summary = result
    return summary
