"""Build a :class:`~exec_analytics.summary.Summary` with Dask: one summary per few Parquet files, merged in a tree.

Each task reads a few files of the history where it runs (a local directory, or S3 with one client per task)
and summarizes them with the pandas engine (:func:`~exec_analytics.summary.build.summarize_files`), so a worker
holds a few files and small summaries, never the history; partial summaries are merged ``fan_in`` at a time,
so no task merges more than a few. Runs on whatever scheduler is active: a ``distributed.Client`` (local or a
cluster's address) or Dask's default threads.

Needs the ``dask`` extra (``pip install 'exec_analytics[dask]'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from dask.base import compute
from dask.delayed import delayed

from .build import bucket_length, history_files, statuses, summarize_files
from .model import DEFAULT_K, Summary

__all__ = ["build"]


def _merge(*parts: Summary) -> Summary:
    return parts[0].merge(*parts[1:])


def build(
    path: str | os.PathLike[str],
    *,
    freq: str | pd.Timedelta = "1D",
    k: int = DEFAULT_K,
    success_statuses: Iterable[str] | str = ("SUCCEEDED",),
    filters: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    files_per_task: int = 8,
    fan_in: int = 8,
) -> Summary:
    """Summarize the Parquet history under ``path`` with Dask.

    Parameters
    ----------
    path : str or os.PathLike
        The history as it lies (hive ``resource=``/``date=`` directories): a directory every worker can read,
        or ``s3://bucket/prefix/executions``. Only ``*.parquet`` files are read.
    freq, k, success_statuses
        As :func:`~exec_analytics.summary.from_frame`.
    filters : optional
        pyarrow ``filters`` applied to every file (e.g. ``[("start_time", ">=", ts)]``) to read one window.
    storage_options : mapping, optional
        For S3: keyword arguments of ``boto3.client("s3", ...)``; by default each worker's AWS environment.
        They travel in the task graph, so prefer the environment for credentials.
    files_per_task : int
        Files read and summarized by one task.
    fan_in : int
        Partial summaries merged per task.

    Returns
    -------
    Summary
        The same summary as :func:`~exec_analytics.summary.from_parquet` (counts identical; sketches within
        their rank-error bound).
    """
    for name, value, low in (("files_per_task", files_per_task, 1), ("fan_in", fan_in, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
    step, ok = bucket_length(freq), statuses(success_statuses)
    location = os.fspath(path)
    keys = history_files(location, storage_options)
    options = dict(storage_options) if storage_options else None
    parts = [
        delayed(summarize_files)(
            location,
            keys[i : i + files_per_task],
            freq=step,
            k=int(k),
            success_statuses=ok,
            storage_options=options,
            filters=filters,
        )
        for i in range(0, len(keys), files_per_task)
    ]
    while len(parts) > 1:
        parts = [delayed(_merge)(*parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
    (result,) = compute(parts[0])  # type: ignore[no-untyped-call]  # dask.base.compute has no annotations
    summary: Summary = result
    return summary
