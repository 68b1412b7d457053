"""``exec-analytics demo``: the whole path on the built-in simulator, from HTTP to a summary table."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .cache import ExecutionCache
from .client import FoundryClient
from .loader import load_executions
from .simulator import SimClock, SimulatorServer, Workload

__all__ = ["DEMO_NOW", "run_demo", "summarise"]

#: The simulator's clock is frozen here so that every run of the demo shows the same history, including the
#: version rollouts that the workload schedules in the weeks before it.
DEMO_NOW = pd.Timestamp("2026-11-28T00:00:00Z")


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per-resource headline numbers.

    Parameters
    ----------
    df : pandas.DataFrame
        The executions table.

    Returns
    -------
    pandas.DataFrame
        One row per resource, indexed by ``resource_rid``: ``executions``, ``failures``,
        ``failure_rate`` (share of executions whose status is not ``SUCCEEDED``), ``p50_s``, ``p95_s``,
        ``p99_s`` (duration percentiles in seconds) and ``versions`` (how many versions ran).
    """
    failed = df["status"] != "SUCCEEDED"
    grouped = df.assign(failed=failed).groupby("resource_rid", observed=True)
    out = grouped.agg(
        executions=("failed", "size"),
        failures=("failed", "sum"),
        versions=("resource_version", "nunique"),
    )
    out["failure_rate"] = out["failures"] / out["executions"]
    q = grouped["duration_s"].quantile([0.5, 0.95, 0.99]).unstack()
    out[["p50_s", "p95_s", "p99_s"]] = q.to_numpy()
    return out[["executions", "failures", "failure_rate", "p50_s", "p95_s", "p99_s", "versions"]]


def run_demo(*, weeks: int = 4, seed: int = 0, out_dir: Path = Path("exec-analytics-demo"),
             progress: bool | None = None) -> pd.DataFrame:
    """Serve the simulator on a free loopback port, load ``weeks`` of three resources, save and summarise.

    Parameters
    ----------
    weeks : int
        Weeks of history before :data:`DEMO_NOW` to load.
    seed : int
        Workload seed.
    out_dir : pathlib.Path
        Directory for ``executions.parquet`` and the demo's own execution history, ``cache/seed-<seed>/``:
        a second run reads it and fetches only the provisional last two hours, and the user's real cache
        is never touched.
    progress : bool or None
        Progress bar; ``None`` shows it on a terminal.

    Returns
    -------
    pandas.DataFrame
        The summary printed, as returned by :func:`summarise` but indexed by the simulated resource's name.
    """
    workload = Workload(seed=seed)
    end = DEMO_NOW
    start = end - pd.Timedelta(weeks=weeks)
    began = time.perf_counter()
    with SimulatorServer(workload, clock=SimClock(now=DEMO_NOW)) as server, FoundryClient(
        hostname=server.url, token=server.token
    ) as client:
        print(f"simulator serving on {server.url}; loading {weeks} weeks of {len(workload.resource_rids)} resources")
        # The simulated "now" is frozen, so the cache must use the simulator's clock to tell what has settled;
        # a seed gets a history of its own because another seed's executions are another world.
        cache = ExecutionCache(out_dir / "cache" / f"seed-{seed}", clock=server.clock.now)
        df = load_executions(workload.resource_rids, start, end, client=client, cache=cache, progress=progress)
    elapsed = time.perf_counter() - began
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "executions.parquet"
    df.to_parquet(path, engine="pyarrow", compression="zstd", index=False)
    summary = summarise(df)
    names = {r.rid: r.name for r in workload.resources}
    summary.index = pd.Index([names.get(str(rid), str(rid)) for rid in summary.index], name="resource")
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(summary.to_string())
    fetched = len(df.attrs["cache"]["fetched"])
    how = f"{df.attrs['pages']:,} pages fetched" if fetched else "all from the cache, no request made"
    print(f"\n{len(df):,} executions ({how}), {elapsed:.1f} s; saved to {path}, history in {cache.path}")
    return summary
