"""Fleet sync benchmark: a fleet of 50 resources against the simulator enforcing the documented rate limits.

The simulator runs in its own process (as a real server would), frozen at ``NOW``, with 50 readable resources
(the workload's readable profiles copied under new RIDs, each with executions of its own). Three phases:

* ``rate-bound`` — the first sync of ``--days`` days of the whole fleet, low latency, the simulator enforcing
  a user token's limits (5,000 requests a minute, 30 in flight). The sync's limiter must keep the requests per
  minute near the limit without a single 429, and every resource's history must equal the simulator's ground
  truth. Reported: the sustained rate (the median count of the sliding 60-s windows that lie inside the run,
  sampled every 0.5 s at the client), the peak 60-s window and 429s as the server counted them, and rows a
  minute at the sustained rate beside the physical limit, 100 rows x 5,000 requests. (The mean over a run
  of about one minute says little: a sliding window lets the first 5,000 requests go at once.)
* ``flight-bound`` — a fresh history with ``--latency-ms`` (default 150 ms) per request and only the in-flight
  limit (30) enforced: the ceiling is ``30 / latency``; reported against what the sync achieved.
* ``refresh`` — the simulator's clock one day later, the same fleet synced again into the history of the first
  phase with the same limiter: requests should follow the new data (one day and the provisional edge), not
  the window.

Run: ``python benchmarks/bench_sync.py [--resources 50] [--days 7] [--scale 0.85] [--latency-ms 150]
[--flight-days 2]``. Prints a table and writes ``benchmarks/results/sync.json``. About 2.5 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from exec_analytics.cache import ExecutionCache
from exec_analytics.client import FoundryClient
from exec_analytics.client.limiter import Limiter, Limits
from exec_analytics.fleet import Fleet, FleetResource
from exec_analytics.simulator import FaultConfig, RateLimits, ResourceProfile, SimClock, SimulatorServer, Workload
from exec_analytics.sync import SyncResult, sync_fleet

from _common import print_table, write_json

SEED = 5
NOW = pd.Timestamp("2026-11-20T00:00:00Z")
USER = RateLimits(per_minute=5_000, in_flight=30)


class FleetWorkload(Workload):
    """The workload with ``n`` readable resources: its readable profiles copied under new RIDs and indices."""

    def __init__(self, n: int, seed: int, scale: float) -> None:
        super().__init__(seed, scale)
        base = [p for p in self.resources if p.readable]
        extra = [
            dataclasses.replace(
                base[i % len(base)],
                index=len(self.resources) + i,
                rid=f"ri.function-registry.main.function.fleet-{i:04d}",
                name=f"fleet-{i:04d}",
            )
            for i in range(max(0, n - len(base)))
        ]
        self.resources = [*self.resources, *extra]
        self._fleet = {p.rid: p for p in self.resources}

    def profile(self, rid: str) -> ResourceProfile:
        return self._fleet[rid]


def _serve(conn: Any, n: int, scale: float, latency_s: float, limits: RateLimits) -> None:
    """The simulator process: answers ``stats``, ``reset``, an ISO time (its new "now") and ``stop``."""
    clock = SimClock(now=NOW)
    faults = FaultConfig(latency_s=latency_s) if latency_s else None
    with SimulatorServer(FleetWorkload(n, SEED, scale), clock=clock, faults=faults, limits=limits) as server:
        conn.send((server.url, server.token, server.workload.resource_rids))
        while True:
            command = conn.recv()
            if command == "stop":
                return
            if command == "stats":
                conn.send(dataclasses.asdict(server.limit_stats(server.token)))
            elif command == "reset":
                server.reset_counts()
                conn.send(None)
            else:
                clock.set(command)
                conn.send(None)


class _Server:
    def __init__(self, n: int, scale: float, latency_s: float, limits: RateLimits) -> None:
        self._conn, child = mp.Pipe()
        self._proc = mp.Process(target=_serve, args=(child, n, scale, latency_s, limits), daemon=True)
        self._proc.start()
        self.url, self.token, self.rids = self._conn.recv()

    def stats(self) -> dict[str, int]:
        self._conn.send("stats")
        stats: dict[str, int] = self._conn.recv()
        return stats

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def set_now(self, now: pd.Timestamp) -> None:
        self._conn.send(now.isoformat())
        self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self._proc.join()


class _Sampler:
    """Samples the limiter's request count and requests in flight every ``every`` seconds."""

    def __init__(self, limiter: Limiter, every: float = 0.5) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self._limiter, self._every, self._stop = limiter, every, threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._every)

    def _sample(self) -> None:
        stats = self._limiter.stats
        self.samples.append((time.monotonic() - self._t0, stats["requests"], stats["in_flight"]))

    def stop(self) -> list[tuple[float, float, float]]:
        self._stop.set()
        self._thread.join()
        self._sample()
        return self.samples


def _window_rates(samples: list[tuple[float, float, float]], window: float = 60.0) -> list[float]:
    """Requests in each sampled window ``(t - 60 s, t]`` that lies inside the run (ends 60 s or more in)."""
    t = np.array([s[0] for s in samples])
    n = np.array([s[1] for s in samples])
    rates = []
    for i in np.flatnonzero(t >= window):
        # The first sample inside the window: the span counted is at most 60 s (short by one sampling step at
        # most), so the rate is never overstated.
        j = int(np.searchsorted(t, t[i] - window, side="left"))
        rates.append(float(n[i] - n[j]))
    return rates


def _fleet(rids: list[str], days: int, cache: Path, limits: Limits) -> Fleet:
    resources = tuple(FleetResource(rid, f"r{i:02d}") for i, rid in enumerate(rids))
    return Fleet(resources, cache=str(cache), limits=limits, days=days)


def _factory(server: _Server) -> Any:
    return lambda limiter: FoundryClient(server.url, token=server.token, limiter=limiter, pool_size=8)


def _exact(cache: ExecutionCache, wl: Workload, rids: list[str], start: pd.Timestamp, end: pd.Timestamp) -> int:
    """How many resources' histories differ from the ground truth (trace id, start, duration, status)."""
    cols = ["foundry_trace_id", "start_time", "duration_s", "status"]
    wrong = 0
    for rid in rids:
        got = cache.read(rid, start, end)[cols].astype(str).sort_values(cols[:2], ignore_index=True)
        truth = wl.ground_truth(rid, start, end, as_of=end)[cols].astype(str)
        truth = truth.sort_values(cols[:2], ignore_index=True)
        wrong += not (len(got) == len(truth) and got.equals(truth))
    return wrong


def _summary(result: SyncResult, stats: dict[str, int], cpu_s: float) -> dict[str, Any]:
    return {
        "resources": len(result.resources),
        "ok": sum(r.ok for r in result.resources),
        "requests": result.requests,
        "new_rows": sum(r.new_executions for r in result.resources),
        "seconds": round(result.seconds, 1),
        "429s": stats["throttled_per_minute"] + stats["throttled_in_flight"],
        "peak_in_flight": stats["max_in_flight"],
        "peak_60s_window": stats["max_per_minute"],
        # Client CPU (all threads) per wall second: near the cores available, the client, not a limit, binds.
        "client_cpu": round(cpu_s / result.seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=50)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--scale", type=float, default=0.85)
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--flight-days", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    wl = FleetWorkload(args.resources, SEED, args.scale)  # the same truth as the server's, for the checks
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"resources": args.resources, "days": args.days, "scale": args.scale}
    try:
        # --- rate-bound: the first sync, the user token's limits -------------------------------------------
        server = _Server(args.resources, args.scale, 0.0, USER)
        rids = server.rids[: args.resources]
        limiter = Limiter("user")
        fleet = _fleet(rids, args.days, work / "history", limiter.limits)
        clock = SimClock(now=NOW)  # the cache's "now", moved with the server's
        cache = ExecutionCache(fleet.cache, clock=clock.now)
        sampler = _Sampler(limiter)
        cpu = time.process_time()
        first = sync_fleet(fleet, client_factory=_factory(server), limiter=limiter, cache=cache, end=NOW)
        samples = sampler.stop()
        stats = server.stats()
        first_rows = sum(r.new_executions for r in first.resources)
        rates = _window_rates(samples)
        server.reset()
        rate_row = {
            "phase": "rate-bound",
            **_summary(first, stats, time.process_time() - cpu),
            "sustained_per_min": round(statistics.median(rates)) if rates else None,
            "ceiling_per_min": USER.per_minute,
            "rows_per_request": round(first_rows / first.requests, 1),
            "sustained_rows_per_min": round(first_rows / first.requests * statistics.median(rates)) if rates else None,
            "physical_rows_per_min": 100 * (USER.per_minute or 0),
            "inexact_resources": _exact(cache, wl, rids, NOW - pd.Timedelta(days=args.days), NOW),
        }
        rows.append(rate_row)
        result["rate_bound"] = {**rate_row, "window_rates": rates}

        # --- flight-bound: latency, only the in-flight limit ----------------------------------------------
        latency_s = args.latency_ms / 1000.0
        flight_limits = RateLimits(per_minute=None, in_flight=30)
        slow = _Server(args.resources, args.scale, latency_s, flight_limits)
        flight_limiter = Limiter(Limits(per_minute=None, in_flight=30))
        slow_fleet = _fleet(rids, args.flight_days, work / "slow", flight_limiter.limits)
        slow_cache = ExecutionCache(slow_fleet.cache, clock=lambda: NOW)
        cpu = time.process_time()
        sampler = _Sampler(flight_limiter)
        flight = sync_fleet(
            slow_fleet, client_factory=_factory(slow), limiter=flight_limiter, cache=slow_cache, end=NOW
        )
        in_flight = statistics.mean(s[2] for s in sampler.stop())
        flight_stats = slow.stats()
        slow.stop()
        ceiling = 30 / latency_s * 60
        flight_row = {
            "phase": f"flight-bound {args.latency_ms:g} ms",
            **_summary(flight, flight_stats, time.process_time() - cpu),
            "mean_per_min": round(flight.requests / flight.seconds * 60),
            "ceiling_per_min": round(ceiling),
            # Little's law: mean in flight / rate = the mean time a request held its slot, latency included.
            "mean_in_flight": round(in_flight, 1),
            "mean_slot_ms": round(in_flight / (flight.requests / flight.seconds) * 1000),
            "rows_per_request": round(sum(r.new_executions for r in flight.resources) / flight.requests, 1),
            "inexact_resources": _exact(slow_cache, wl, rids, NOW - pd.Timedelta(days=args.flight_days), NOW),
        }
        rows.append(flight_row)
        result["flight_bound"] = {**flight_row, "ceiling_per_min": ceiling}

        # --- refresh: one day later, the same history and limiter ----------------------------------------
        later = NOW + pd.Timedelta(days=1)
        server.set_now(later)
        clock.set(later)
        cpu = time.process_time()
        refresh = sync_fleet(fleet, client_factory=_factory(server), limiter=limiter, cache=cache, end=later)
        refresh_stats = server.stats()
        server.stop()
        new_rows = sum(r.new_executions for r in refresh.resources)
        refresh_row = {
            "phase": "refresh +1 day",
            **_summary(refresh, refresh_stats, time.process_time() - cpu),
            "mean_per_min": round(refresh.requests / refresh.seconds * 60),
            "rows_per_request": round(new_rows / max(1, refresh.requests), 1),
            "first_sync_requests": first.requests,
            "first_sync_rows": first_rows,
            "inexact_resources": _exact(cache, wl, rids, NOW - pd.Timedelta(days=args.days), later),
        }
        rows.append(refresh_row)
        result["refresh"] = refresh_row
    finally:
        shutil.rmtree(work, ignore_errors=True)
    columns = ["phase", "ok", "requests", "new_rows", "seconds", "client_cpu", "429s", "peak_in_flight",
               "peak_60s_window", "sustained_per_min", "mean_per_min", "ceiling_per_min", "rows_per_request",
               "sustained_rows_per_min", "physical_rows_per_min", "mean_in_flight", "mean_slot_ms",
               "inexact_resources"]  # fmt: skip
    print_table(rows, columns)
    write_json("sync", result)


if __name__ == "__main__":
    main()
