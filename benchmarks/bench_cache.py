"""Cache benchmark: refreshing a 30-day history after one new day vs a full reload; one-day reads; bytes on disk.

The simulator runs in its own process (as a real server would) with a fixed latency per request, frozen at
``NOW``. A 30-day history of its three readable resources is built once, as a cache would hold it a day ago.
Then, in the same run and interleaved:

* ``refresh`` — ``load_executions`` of the last 30 days through a copy of that cache: it fetches only the new
  day and the provisional edge, merges, and reads the window back from Parquet.
* ``full reload`` — the same window with ``cache=False``: every page again (the baseline).
* ``read one day`` vs ``read all`` — ``ExecutionCache.read`` of one day of the 30-day history vs all of it,
  and DuckDB reading the same day from the same files as a reference.

The read comparison is repeated on a busier history (``--read-scale``, default 4x the traffic), filled
straight from the simulator's ground truth without HTTP: per-file costs (~1.5 ms to open a Parquet file, ~5 ms
to build a DataFrame) are fixed, so the ratio grows with the rows per day.

Bytes per execution compare the partitioned history with a single zstd Parquet file of the same rows and with
the JSON the API sent.

Run: ``python benchmarks/bench_cache.py [--days 30] [--latency-ms 10] [--scale 1] [--read-scale 4] [--repeat 3]``.
Prints a table and writes ``benchmarks/results/cache.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from exec_analytics.cache import ExecutionCache
from exec_analytics.client import FoundryClient
from exec_analytics.demo import DEMO_NOW
from exec_analytics.loader import load_executions
from exec_analytics.schema import COLUMNS
from exec_analytics.simulator import FaultConfig, SimClock, SimulatorServer, Workload

from _common import print_table, write_json

SEED = 11
NOW = DEMO_NOW
DAY = pd.Timedelta(days=1)


def _serve(conn: Any, scale: float, latency_s: float) -> None:
    server = SimulatorServer(
        Workload(seed=SEED, scale=scale), clock=SimClock(now=NOW), faults=FaultConfig(latency_s=latency_s)
    )
    with server:
        conn.send((server.url, server.token))
        conn.recv()  # block until the parent says stop


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    out = fn()
    return time.perf_counter() - began, out


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    return statistics.median(_timed(fn)[0] for _ in range(repeat))


def _reads(
    cache: ExecutionCache, rids: list[str], day: tuple[pd.Timestamp, pd.Timestamp], repeat: int
) -> dict[str, Any]:
    """Median seconds to read one day and all of a history, through the cache and through DuckDB."""
    steps: dict[str, Callable[[], Any]] = {
        "day": lambda: cache.read(rids, *day),
        "all": lambda: cache.read(rids),
        "day_3_columns": lambda: cache.read(rids, *day, columns=["start_time", "duration_s", "status"]),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(max(7, repeat)):
        # Interleaved, so that a burst of other work on the machine hits every step alike.
        for name, fn in steps.items():
            times[name].append(_timed(fn)[0])
    out: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    out["rows_day"] = len(cache.read(rids, *day))
    out["rows_all"] = len(cache.read(rids))
    n = max(7, repeat)
    try:
        import duckdb

        glob = str(cache.path / "executions" / "**" / "*.parquet")
        query = f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) WHERE date = DATE '{day[0]:%Y-%m-%d}'"
        out["duckdb_day"] = _median_time(lambda: duckdb.sql(query).df(), n)
    except ImportError:  # pragma: no cover - duckdb is in the test extra
        out["duckdb_day"] = None
    return out


def _busy_history(path: Path, scale: float, window: tuple[pd.Timestamp, pd.Timestamp]) -> ExecutionCache:
    """A history of ``scale`` times the traffic, committed straight from the ground truth (no HTTP, to keep the
    benchmark short), through the same merge and write path as a load."""
    wl = Workload(seed=SEED, scale=scale)
    for rid in wl.resource_rids:
        truth = wl.ground_truth(rid, *window)
        table = pa.Table.from_pandas(truth[list(COLUMNS)], preserve_index=False)
        ExecutionCache(path, clock=lambda: window[1] + DAY).load(
            rid, *window, fetch=lambda _stretches, table=table: table
        )
    return ExecutionCache(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="server latency per request (default 10)")
    parser.add_argument("--scale", type=float, default=1.0, help="simulator traffic multiplier (default 1)")
    parser.add_argument(
        "--read-scale",
        type=float,
        default=4.0,
        help="traffic multiplier of the busier history for the read comparison (default 4)",
    )
    parser.add_argument("--workers", type=int, default=8, help="concurrent requests (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each timed step (default 3)")
    args = parser.parse_args()

    rids = Workload(seed=SEED, scale=args.scale).resource_rids
    window = (NOW - args.days * DAY, NOW)
    parent, child = mp.Pipe()
    server = mp.Process(target=_serve, args=(child, args.scale, args.latency_ms / 1000.0), daemon=True)
    server.start()
    url, token = parent.recv()
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        with FoundryClient(hostname=url, token=token) as client:
            # The history as it stood a day ago: the 30 days before then, fetched then.
            base = work / "base"
            yesterday = ExecutionCache(base, clock=lambda: NOW - DAY)
            t_build, built = _timed(
                lambda: load_executions(
                    rids,
                    window[0] - DAY,
                    window[1] - DAY,
                    client=client,
                    cache=yesterday,
                    workers=args.workers,
                    progress=False,
                )
            )
            print(f"built a {args.days}-day history of {len(built):,} executions in {t_build:.1f} s")

            refresh_times, reload_times, refresh_req, reload_req = [], [], [], []
            for i in range(args.repeat):
                copy = work / f"refresh-{i}"
                shutil.copytree(base, copy)
                today = ExecutionCache(copy, clock=lambda: NOW)
                t, df = _timed(
                    lambda c=today: load_executions(
                        rids, *window, client=client, cache=c, workers=args.workers, progress=False
                    )
                )
                refresh_times.append(t)
                refresh_req.append(df.attrs["requests"])
                t, full = _timed(
                    lambda: load_executions(
                        rids, *window, client=client, cache=False, workers=args.workers, progress=False
                    )
                )
                reload_times.append(t)
                reload_req.append(full.attrs["requests"])
                assert len(df) == len(full) and set(df["foundry_trace_id"]) == set(full["foundry_trace_id"])
            fetched = df.attrs["cache"]["fetched"]
    finally:
        parent.send("stop")
        server.join(timeout=10)

    history = ExecutionCache(work / "refresh-0")
    day = (NOW - 10 * DAY, NOW - 9 * DAY)
    reads = {"simulator": _reads(history, rids, day, args.repeat)}
    busy = _busy_history(work / "busy", args.read_scale, window)
    reads[f"{args.read_scale:g}x traffic"] = _reads(busy, rids, day, args.repeat)

    files = list(history.path.glob("executions/*/date=*/*.parquet"))
    cache_bytes = sum(f.stat().st_size for f in files)
    single = work / "single.parquet"
    full.to_parquet(single, engine="pyarrow", compression="zstd", index=False)
    json_bytes = 447  # measured mean of an execution's JSON in a page (PERFORMANCE.md)

    rr, rl = statistics.median(refresh_req), statistics.median(reload_req)
    tr, tl = statistics.median(refresh_times), statistics.median(reload_times)
    rows = [
        {
            "step": f"full reload of {args.days} days (cache=False)",
            "requests": f"{rl:,.0f}",
            "seconds": f"{tl:.2f}",
            "ratio": "1.0x (baseline)",
        },
        {
            "step": "refresh after one new day (cache)",
            "requests": f"{rr:,.0f}",
            "seconds": f"{tr:.2f}",
            "ratio": f"{rl / rr:.0f}x fewer requests, {tl / tr:.1f}x faster",
        },
    ]
    for name, r in reads.items():
        rows += [
            {
                "step": f"{name}: read all {args.days} days ({r['rows_all']:,} rows)",
                "requests": "0",
                "seconds": f"{r['all']:.4f}",
                "ratio": "1.0x (baseline)",
            },
            {
                "step": f"{name}: read one day ({r['rows_day']:,} rows)",
                "requests": "0",
                "seconds": f"{r['day']:.4f}",
                "ratio": f"{r['all'] / r['day']:.1f}x faster",
            },
            {
                "step": f"{name}: read one day, 3 columns",
                "requests": "0",
                "seconds": f"{r['day_3_columns']:.4f}",
                "ratio": f"{r['all'] / r['day_3_columns']:.1f}x faster",
            },
        ]
        if r.get("duckdb_day") is not None:
            rows.append(
                {
                    "step": f"{name}: DuckDB, one day from the same files",
                    "requests": "0",
                    "seconds": f"{r['duckdb_day']:.4f}",
                    "ratio": f"{r['all'] / r['duckdb_day']:.1f}x faster",
                }
            )
    n_all = reads["simulator"]["rows_all"]
    print_table(rows, ["step", "requests", "seconds", "ratio"])
    per_exec = cache_bytes / n_all
    print(
        f"\nbytes per execution: {per_exec:.1f} in the history ({len(files)} files), "
        f"{single.stat().st_size / len(full):.1f} as one zstd Parquet file, ~{json_bytes} as API JSON"
    )
    write_json(
        "cache",
        {
            "days": args.days,
            "latency_ms": args.latency_ms,
            "scale": args.scale,
            "workers": args.workers,
            "repeat": args.repeat,
            "executions": n_all,
            "refresh": {"requests": rr, "seconds": tr, "fetched": fetched},
            "full_reload": {"requests": rl, "seconds": tl},
            "refresh_requests_ratio": rl / rr,
            "refresh_time_ratio": tl / tr,
            "reads": {name: {**r, "ratio": r["all"] / r["day"]} for name, r in reads.items()},
            "bytes_per_execution": per_exec,
            "bytes_per_execution_single_file": single.stat().st_size / len(full),
            "bytes_per_execution_json": json_bytes,
            "files": len(files),
            # Other work on the machine skews wall times: keep the load beside them.
            "load_average_1m_at_end": os.getloadavg()[0],
        },
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
