"""A small Parquet history for the summary tests: loaded from the simulator over HTTP into a real cache.

Shared by tests/test_summary*.py so every engine reads the same files as they lie on disk, and every check
has the loaded rows as its reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from exec_analytics import load_executions
from exec_analytics.client import FoundryClient
from exec_analytics.simulator import SimClock, SimulatorServer, Workload

#: The simulator's frozen "now", as in conftest.py.
NOW = pd.Timestamp("2026-11-20T00:00:00Z")
#: Two settled UTC days: every engine's daily buckets see whole days.
START, END = NOW - pd.Timedelta("3D"), NOW - pd.Timedelta("1D")


def load_history(root: Path, cache: str | None = None) -> tuple[pd.DataFrame, Path]:
    """Load two days of three resources into a cache under ``root`` (or at ``cache``, e.g. an ``s3://`` URL).

    Returns
    -------
    tuple
        ``(rows, history)``: the executions table as loaded, and the location of the Parquet history (a
        directory, or the ``s3://`` URL of ``cache``'s ``executions`` as a ``Path``-less string).
    """
    workload = Workload(seed=0)
    with (
        SimulatorServer(workload, clock=SimClock(now=NOW)) as srv,
        FoundryClient(hostname=srv.url, token=srv.token) as client,
    ):
        rows = load_executions(
            workload.resource_rids, START, END, client=client, cache=cache or root / "cache", progress=False
        )
    return rows, (root / "cache" / "executions") if cache is None else f"{cache}/executions"  # type: ignore[return-value]


def exact_rank_span(values: np.ndarray, x: float) -> tuple[float, float]:
    """Normalized ranks of ``x`` in ``values``: share strictly below and share at or below."""
    s = np.sort(values)
    return np.searchsorted(s, x, "left") / len(s), np.searchsorted(s, x, "right") / len(s)
