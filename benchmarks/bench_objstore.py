"""Object-storage benchmark: the history on an S3-protocol server, counted in API and object-store requests.

A simulator (its own process, a fixed latency per request, frozen at ``NOW``) and an S3-protocol server
(``moto`` in server mode on 127.0.0.1) run side by side. A ``--days`` history of the simulator's readable
resources is loaded into ``s3://bench/history``, as a cache would hold it. Then:

* ``settled window`` — ``load_executions`` of a window that ended a day ago, with a client: the history answers
  it, so the API sees 0 requests; the object store sees the format marker, the manifests and the files.
* ``one-day read`` vs ``all`` — ``ExecutionCache.read`` of one day of the history vs all of it: the day's read
  must GET only that day's files (plus the marker and one manifest per resource), never list, never touch
  another day.
* ``refresh`` — a day later, ``load_executions`` of the last ``--days`` days: API requests for the new day and
  the provisional edge only; object-store PUTs for the days it rewrote.

Every object-store request is counted by operation and key at the client (a botocore event hook), and every API
request at the simulator.

Run: ``python benchmarks/bench_objstore.py [--days 30] [--latency-ms 5] [--workers 8]``.
Prints a table and writes ``benchmarks/results/objstore.json``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pandas as pd
from moto.server import ThreadedMotoServer

from exec_analytics.cache import ExecutionCache
from exec_analytics.cache.storage import S3Storage
from exec_analytics.client import FoundryClient
from exec_analytics.demo import DEMO_NOW
from exec_analytics.loader import load_executions
from exec_analytics.simulator import FaultConfig, SimClock, SimulatorServer, Workload

from _common import print_table, write_json

SEED = 11
NOW = DEMO_NOW
DAY = pd.Timedelta(days=1)
BUCKET = "bench"


def _serve(conn: Any, latency_s: float) -> None:
    clock = SimClock(now=NOW)
    server = SimulatorServer(Workload(seed=SEED), clock=clock, faults=FaultConfig(latency_s=latency_s))
    with server:
        conn.send((server.url, server.token))
        while (msg := conn.recv()) != "stop":
            if msg == "count":
                conn.send(server.request_count)
            else:  # a new "now"
                clock.set(msg)


class Counted:
    """An S3 cache whose object-store requests are counted by (operation, key)."""

    def __init__(self, endpoint: str, now: pd.Timestamp) -> None:
        self.cache = ExecutionCache(
            f"s3://{BUCKET}/history", clock=lambda: now, storage_options={"endpoint_url": endpoint}
        )
        storage = self.cache.storage
        assert isinstance(storage, S3Storage)
        self.seen: Counter[tuple[str, str]] = Counter()
        storage.client.meta.events.register("provide-client-params.s3", self._note)

    def _note(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.seen[(model.name, params.get("Key", params.get("Prefix", "")))] += 1

    def during(self, fn: Callable[[], Any]) -> tuple[float, Any, Counter[tuple[str, str]]]:
        self.seen.clear()
        began = time.perf_counter()
        out = fn()
        return time.perf_counter() - began, out, Counter(self.seen)


def _ops(seen: Counter[tuple[str, str]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (op, _), n in seen.items():
        out[op] += n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="API latency per request (default 5)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent API requests (default 8)")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    s3.create_bucket(Bucket=BUCKET)
    # The caches' own clients read credentials and the region from the environment.
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)

    parent, child = mp.Pipe()
    server = mp.Process(target=_serve, args=(child, args.latency_ms / 1000.0), daemon=True)
    server.start()
    url, token = parent.recv()

    def api_count() -> int:
        parent.send("count")
        n: int = parent.recv()
        return n

    rids = Workload(seed=SEED).resource_rids
    window = (NOW - args.days * DAY, NOW)
    settled = (window[0], NOW - DAY)
    day = (NOW - 10 * DAY, NOW - 9 * DAY)
    try:
        with FoundryClient(hostname=url, token=token) as client:
            build = Counted(endpoint, NOW)
            t_build, built, seen_build = build.during(
                lambda: load_executions(
                    rids, *window, client=client, cache=build.cache, workers=args.workers, progress=False
                )
            )
            print(f"built a {args.days}-day history of {len(built):,} executions on S3 in {t_build:.1f} s")

            reader = Counted(endpoint, NOW)
            before = api_count()
            t_settled, df, seen_settled = reader.during(
                lambda: load_executions(
                    rids, *settled, client=client, cache=reader.cache, workers=args.workers, progress=False
                )
            )
            api_settled = api_count() - before
            assert api_settled == 0 and df.attrs["requests"] == 0, (api_settled, df.attrs["requests"])

            t_day, one_day, seen_day = reader.during(lambda: reader.cache.read(rids, *day))
            t_all, everything, seen_all = reader.during(lambda: reader.cache.read(rids))
            day_name = f"date={day[0]:%Y-%m-%d}/"
            touched = {k for _, k in seen_day}
            parts = {k for k in touched if k.endswith(".parquet")}
            others = {k for k in touched if not k.endswith(".parquet")}
            assert parts and all(day_name in k for k in parts), sorted(parts)
            assert all(k.endswith(".json") for k in others) and "ListObjectsV2" not in _ops(seen_day), seen_day

            # A day later: the refresh fetches the new day and the provisional edge only.
            later = NOW + DAY
            parent.send(later)
            refresher = Counted(endpoint, later)
            before = api_count()
            t_refresh, refreshed, seen_refresh = refresher.during(
                lambda: load_executions(
                    rids,
                    later - args.days * DAY,
                    later,
                    client=client,
                    cache=refresher.cache,
                    workers=args.workers,
                    progress=False,
                )
            )
            api_refresh = api_count() - before
    finally:
        parent.send("stop")
        server.join(timeout=10)
        moto.stop()

    def fmt(seen: Counter[tuple[str, str]]) -> str:
        return ", ".join(f"{op} {n}" for op, n in sorted(_ops(seen).items()))

    rows = [
        {"step": f"build {args.days} days", "API requests": f"{built.attrs['requests']:,}", "S3": fmt(seen_build),
         "seconds": f"{t_build:.2f}", "rows": f"{len(built):,}"},
        {"step": "settled window, with a client", "API requests": str(api_settled), "S3": fmt(seen_settled),
         "seconds": f"{t_settled:.2f}", "rows": f"{len(df):,}"},
        {"step": "read one day", "API requests": "0", "S3": fmt(seen_day) + f" ({len(parts)} day files)",
         "seconds": f"{t_day:.3f}", "rows": f"{len(one_day):,}"},
        {"step": f"read all {args.days} days", "API requests": "0", "S3": fmt(seen_all),
         "seconds": f"{t_all:.3f}", "rows": f"{len(everything):,}"},
        {"step": "refresh a day later", "API requests": f"{api_refresh:,}", "S3": fmt(seen_refresh),
         "seconds": f"{t_refresh:.2f}", "rows": f"{len(refreshed):,}"},
    ]  # fmt: skip
    print_table(rows, ["step", "API requests", "S3", "seconds", "rows"])
    write_json(
        "objstore",
        {
            "days": args.days,
            "latency_ms": args.latency_ms,
            "resources": len(rids),
            "rows": rows,
            "one_day_read_keys": sorted(touched),
            "settled_window_api_requests": api_settled,
            "refresh_api_requests": api_refresh,
            "build_api_requests": built.attrs["requests"],
        },
    )


if __name__ == "__main__":
    main()
