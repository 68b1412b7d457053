"""Paging benchmark: ``load_executions`` with 8 workers vs a plain sequential paging loop.

The simulator runs in its own process (as a real server would), with a fixed latency per request, and serves
a window of one resource that holds about ``--pages`` pages of 100 executions. Three loaders are timed in the
same run, interleaved, each producing a DataFrame of the same executions:

* ``sequential_requests`` — the loop a competent user writes: one ``requests.Session`` (keep-alive), ``r.json()``
  per page, records collected, ``pd.json_normalize`` at the end.
* ``sequential_client`` — this package's client and decoder with one worker: isolates what concurrency buys.
* ``load_executions`` — this package, ``workers`` concurrent requests over time slices.

Run: ``python benchmarks/bench_paging.py [--pages 2000] [--latency-ms 20] [--workers 8] [--repeat 3]``.
Prints a table and writes ``benchmarks/results/paging.json``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import requests

from exec_analytics.client import FoundryClient
from exec_analytics.demo import DEMO_NOW
from exec_analytics.loader import load_executions
from exec_analytics.simulator import FaultConfig, SimClock, SimulatorServer, Workload

from _common import print_table, write_json

SEED = 11


def _serve(conn: Any, scale: float, latency_s: float) -> None:
    server = SimulatorServer(
        Workload(seed=SEED, scale=scale), clock=SimClock(now=DEMO_NOW), faults=FaultConfig(latency_s=latency_s)
    )
    with server:
        conn.send((server.url, server.token))
        conn.recv()  # block until the parent says stop


def _window_for(pages: int, scale: float) -> tuple[str, pd.Timestamp, pd.Timestamp, int]:
    """The newest window of the busiest resource, in whole hours, that holds at least ``pages`` full pages."""
    wl = Workload(seed=SEED, scale=scale)
    rid = wl.resource_rids[0]
    end = DEMO_NOW
    hours = pd.date_range(end=end - pd.Timedelta(hours=1), periods=24 * 60, freq="h")[::-1]
    # Expected counts give a first guess; exact counts then extend it hour by hour.
    expected = np.cumsum([wl.expected_rate(rid, h) for h in hours])
    start = hours[min(int(np.searchsorted(expected, pages * 100)), len(hours) - 1)]
    n = len(wl.ground_truth(rid, start, end, as_of=end))
    while n < pages * 100:
        start -= pd.Timedelta(hours=1)
        n = len(wl.ground_truth(rid, start, end, as_of=end))
    return rid, start, end, n


def sequential_requests(url: str, token: str, rid: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The plain loop: one Session, one page after another, then json_normalize."""
    records: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "startTime": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "endTime": end.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "pageSize": 100,
    }
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {token}"
        endpoint = f"{url}/api/v2/observability/resources/{rid}/listExecutions"
        while True:
            r = s.post(endpoint, params={"preview": "true"}, json=body, timeout=30)
            r.raise_for_status()
            page = r.json()
            records.extend(page.get("data", []))
            if not page.get("nextPageToken"):
                break
            body["pageToken"] = page["nextPageToken"]
    df = pd.json_normalize(records)
    df["startTime"] = pd.to_datetime(df["startTime"], format="ISO8601", utc=True)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=2000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=10.0, help="workload traffic multiplier (denser windows)")
    args = ap.parse_args()

    rid, start, end, n_truth = _window_for(args.pages, args.scale)
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(child, args.scale, args.latency_ms / 1000), daemon=True)
    proc.start()
    url, token = parent.recv()
    try:

        def ours(workers: int) -> Callable[[], pd.DataFrame]:
            def run() -> pd.DataFrame:
                with FoundryClient(hostname=url, token=token) as client:
                    return load_executions(
                        rid, start, end, client=client, workers=workers, progress=False, cache=False
                    )  # paging is measured, not the local history

            return run

        contenders: dict[str, Callable[[], pd.DataFrame]] = {
            "sequential_requests": lambda: sequential_requests(url, token, rid, start, end),
            "sequential_client": ours(1),
            f"load_executions_{args.workers}w": ours(args.workers),
        }
        times: dict[str, list[float]] = {k: [] for k in contenders}
        attrs: dict[str, Any] = {}
        rows: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, fn in contenders.items():  # interleaved, so drift in machine load hits all alike
                t0 = time.perf_counter()
                df = fn()
                times[name].append(time.perf_counter() - t0)
                rows[name] = len(df)
                if name.startswith("load_executions"):
                    attrs = {k: df.attrs[k] for k in ("requests", "pages", "slice_splits", "duplicates_dropped")}
    finally:
        parent.send("stop")
        proc.join(timeout=10)

    base = statistics.median(times["sequential_requests"])
    table = []
    for name, ts in times.items():
        med = statistics.median(ts)
        table.append(
            {
                "approach": name,
                "median_s": round(med, 3),
                "runs_s": [round(t, 3) for t in ts],
                "rows": rows[name],
                "pages_per_s": round(n_truth / 100 / med, 1),
                "speedup_vs_sequential_requests": round(base / med, 2),
            }
        )
    ok = all(r == n_truth for r in rows.values())
    result = {
        "benchmark": "paging",
        "pages": args.pages,
        "executions_in_window": n_truth,
        "latency_ms": args.latency_ms,
        "workers": args.workers,
        "all_rows_match_ground_truth": ok,
        "loader_attrs": attrs,
        "target": f">= 6x sequential with {args.workers} workers",
        "results": table,
    }
    print_table(table, ["approach", "median_s", "rows", "pages_per_s", "speedup_vs_sequential_requests"])
    print(f"window {start} .. {end}: {n_truth:,} executions; every approach returned all of them: {ok}")
    print(f"loader: {attrs}")
    write_json("paging", result)


if __name__ == "__main__":
    main()
