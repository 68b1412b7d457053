"""Decoding benchmark: listExecutions page bodies -> the typed executions DataFrame.

Run: ``python benchmarks/bench_decode.py [--rows N] [--repeats R]``

Times, in one run, interleaved and repeated (medians):

1. ``decode.decode(bodies)`` -- this toolkit (Arrow's JSON reader over NDJSON batches, in threads);
2. the naive baseline a competent user would write: ``json.loads`` per body, ``pd.json_normalize`` of
   all records, then conversion to the same dtypes (``pd.to_datetime(format="ISO8601")``, unit scaling,
   categories, ordered versions, string trace ids); the garbage collector is left on, as in a notebook;
3. bare ``orjson.loads`` of every body, result discarded: the floor for anything that parses JSON in Python.

The bodies are synthetic but shaped like docs/endpoint.md: 100 executions per page, ~447 bytes per execution,
6 versions, 40 callers, ~5% failures, 60% MILLISECONDS / 40% SECONDS durations.

Peak memory is measured in a fresh subprocess per approach (tracemalloc does not see Arrow's allocator and
slows everything down): after generating the bodies, the process resets its kernel high-water mark
(``/proc/self/clear_refs``), runs the approach once keeping its result, and reads ``VmHWM``. Peak over input
= VmHWM - RSS before the run, i.e. everything the approach needed on top of the raw bodies. Where
clear_refs is not available, ``ru_maxrss`` is used and the figure is a lower bound.

Prints a table and writes ``benchmarks/results/decode.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from exec_analytics import decode, schema  # noqa: E402

from _common import memory_in_subprocess, peak_memory, print_table, write_json  # noqa: E402

TARGET_VS_NAIVE = 8.0  # at least this many times faster than the naive baseline
TARGET_VS_FLOOR = 2.5  # at most this many times slower than bare orjson.loads

VERSIONS = ["1.2.0", "1.3.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]
REASONS = ["timeout", "invalid_parameter", "internal_error", "out_of_memory"]


# --------------------------------------------------------------------------------------------------------
# Synthetic pages
# --------------------------------------------------------------------------------------------------------


def make_bodies(n_rows: int, page_size: int = 100, seed: int = 0) -> list[bytes]:
    """Page bodies shaped like docs/endpoint.md, built column-wise with numpy and serialised by orjson."""
    rng = np.random.default_rng(seed)

    def rid(kind: str) -> str:
        h = rng.bytes(16).hex()
        return f"ri.{kind}.{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    callers = [rid(k) for k in ["workshop.main.module"] * 25 + ["actions.main.action-type"] * 10]
    callers += [rid("function-registry.main.function") for _ in range(5)]
    resource_rid = rid("function-registry.main.function")
    owners = [rid("object-sentinel.main.monitor") for _ in range(3)]

    t0 = np.datetime64("2026-11-19T00:00:00.000", "ms")
    starts = t0 - np.cumsum(rng.integers(1, 200, n_rows)).astype("timedelta64[ms]")  # newest first
    start_text = (np.datetime_as_string(starts, unit="ms").astype(object) + "Z").tolist()
    in_ms = rng.random(n_rows) < 0.6
    values = np.where(in_ms, rng.lognormal(6.0, 1.2, n_rows), rng.lognormal(2.0, 1.0, n_rows)).astype(np.int64)
    units = np.where(in_ms, "MILLISECONDS", "SECONDS").astype(object).tolist()
    failed = (rng.random(n_rows) < 0.05).tolist()
    versions = np.array(VERSIONS, dtype=object)[rng.integers(0, len(VERSIONS), n_rows)].tolist()
    caller = np.array(callers, dtype=object)[rng.integers(0, len(callers), n_rows)].tolist()
    owner = np.array(owners, dtype=object)[rng.integers(0, len(owners), n_rows)].tolist()
    reason = np.array(REASONS, dtype=object)[rng.integers(0, len(REASONS), n_rows)].tolist()
    trace_hex = rng.bytes(16 * n_rows).hex()
    values = values.tolist()

    bodies = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a million short-lived dicts: the collector would only slow generation down
    try:
        for p in range(0, n_rows, page_size):
            data = []
            for i in range(p, min(p + page_size, n_rows)):
                h = trace_hex[32 * i : 32 * i + 32]
                item = {
                    "duration": {"unit": units[i], "value": values[i]},
                    "foundryTraceId": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
                    "resourceVersion": versions[i],
                    "traceOwningRid": owner[i],
                    "resourceRid": resource_rid,
                    "startTime": start_text[i],
                    "callerRid": caller[i],
                    "status": "FAILED" if failed[i] else "SUCCEEDED",
                }
                if failed[i]:
                    item["failureReason"] = reason[i]
                data.append(item)
            body = {"data": data}
            if p + page_size < n_rows:
                body["nextPageToken"] = f"v1.{p:012d}"
            bodies.append(orjson.dumps(body))
    finally:
        if gc_was_enabled:
            gc.enable()
    return bodies


# --------------------------------------------------------------------------------------------------------
# The three approaches
# --------------------------------------------------------------------------------------------------------


def run_schema(bodies: list[bytes]) -> pd.DataFrame:
    return decode.decode(bodies)


def run_naive(bodies: list[bytes]) -> pd.DataFrame:
    """What a competent pandas user writes first: parse, normalise, convert."""
    records = []
    for body in bodies:
        records.extend(json.loads(body).get("data") or [])
    raw = pd.json_normalize(records)
    if raw.empty:
        return schema.empty_frame()
    seconds = raw["duration.unit"].map(schema.UNIT_SECONDS).astype("float64")
    df = pd.DataFrame(
        {
            "start_time": pd.to_datetime(raw["startTime"], format="ISO8601", utc=True).astype("datetime64[ms, UTC]"),
            "duration_s": raw["duration.value"].astype("float64") * seconds,
        }
    )
    for api, col in [
        ("status", "status"),
        ("failureReason", "failure_reason"),
        ("resourceRid", "resource_rid"),
        ("resourceVersion", "resource_version"),
        ("callerRid", "caller_rid"),
        ("traceOwningRid", "trace_owning_rid"),
    ]:
        values = raw[api] if api in raw.columns else pd.Series(None, index=raw.index, dtype=object)
        df[col] = values.astype("category")
    df["resource_version"] = df["resource_version"].cat.set_categories(
        schema.order_versions(df["resource_version"].cat.categories), ordered=True
    )
    df["foundry_trace_id"] = raw["foundryTraceId"].astype("string")
    return df


def run_floor(bodies: list[bytes]) -> None:
    loads = orjson.loads
    for body in bodies:
        loads(body)


APPROACHES = {
    "decode.decode": run_schema,
    "naive json + json_normalize": run_naive,
    "orjson.loads floor": run_floor,
}


def check_same(fast: pd.DataFrame, naive: pd.DataFrame) -> None:
    """The comparison is only fair if both produce the same table."""
    assert list(fast.columns) == list(naive.columns), (fast.columns, naive.columns)
    for col in fast.columns:
        assert fast[col].dtype == naive[col].dtype or fast[col].dtype == "category", col
        a, b = fast[col], naive[col]
        if a.dtype == "category":
            a, b = a.astype(object), b.astype(object)
        if col == "duration_s":
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-15)
        else:
            pd.testing.assert_series_equal(a, b, check_names=False, check_dtype=False)
    assert list(fast.resource_version.cat.categories) == list(naive.resource_version.cat.categories)


# --------------------------------------------------------------------------------------------------------
# Memory, measured in a subprocess per approach
# --------------------------------------------------------------------------------------------------------


def measure_memory_here(name: str, rows: int) -> dict:
    bodies = make_bodies(rows)
    got = peak_memory(lambda: APPROACHES[name](bodies))
    return {
        "approach": name,
        "peak_over_input_mb": got["peak_mb"],
        "retained_mb": got["retained_mb"],
        "input_mb": round(sum(map(len, bodies)) / 1e6, 1),
        "seconds_single_run": got["seconds_single_run"],
        "method": got["method"],
    }


def measure_memory(name: str, rows: int) -> dict:
    return memory_in_subprocess(__file__, name, rows)


# --------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="executions to decode (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per approach (median; >= 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-of", choices=list(APPROACHES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_of:
        print(json.dumps(measure_memory_here(args.memory_of, args.rows)))
        return 0

    t = time.perf_counter()
    bodies = make_bodies(args.rows)
    n_bytes = sum(map(len, bodies))
    print(
        f"{args.rows:,} executions in {len(bodies):,} pages, {n_bytes / 1e6:.0f} MB "
        f"({n_bytes / max(args.rows, 1):.0f} bytes/execution), generated in {time.perf_counter() - t:.1f} s; "
        f"{os.cpu_count()} CPUs"
    )

    fast = run_schema(bodies)
    check_same(fast, run_naive(bodies))
    del fast
    print("decode.decode and the naive baseline produce the same table")

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in APPROACHES}
    cpu: dict[str, list[float]] = {name: [] for name in APPROACHES}
    for r in range(max(args.repeats, 1)):
        for name, fn in APPROACHES.items():  # interleaved, so drift hits every approach alike
            gc.collect()
            c, t = time.process_time(), time.perf_counter()
            result = fn(bodies)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            del result
        print(f"  repeat {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items()), flush=True)

    memory = {}
    if not args.no_memory:
        for name in APPROACHES:
            memory[name] = measure_memory(name, args.rows)

    median = {name: statistics.median(v) for name, v in times.items()}
    rows = []
    for name in APPROACHES:
        sec = median[name]
        rows.append(
            {
                "approach": name,
                "median_s": round(sec, 3),
                "min_s": round(min(times[name]), 3),
                "rows_per_s": round(args.rows / sec),
                "mb_per_s": round(n_bytes / 1e6 / sec, 1),
                "peak_over_input_mb": memory.get(name, {}).get("peak_over_input_mb", ""),
                "cpu_s": round(statistics.median(cpu[name]), 3),
                "vs_schema": round(sec / median["decode.decode"], 2),
            }
        )
    print()
    print_table(
        rows, ["approach", "median_s", "min_s", "cpu_s", "rows_per_s", "mb_per_s", "peak_over_input_mb", "vs_schema"]
    )

    speedup = median["naive json + json_normalize"] / median["decode.decode"]
    vs_floor = median["decode.decode"] / median["orjson.loads floor"]
    ok_naive, ok_floor = speedup >= TARGET_VS_NAIVE, vs_floor <= TARGET_VS_FLOOR
    print()
    print(f"decode.decode is {speedup:.1f}x faster than naive (target >= {TARGET_VS_NAIVE}x): {_ok(ok_naive)}")
    print(f"decode.decode is {vs_floor:.2f}x the orjson floor (target <= {TARGET_VS_FLOOR}x): {_ok(ok_floor)}")
    load_after = os.getloadavg()
    print(
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after the timed runs "
        f"(other work on the machine inflates wall times, most for the multi-threaded decode)"
    )
    if memory:
        print(f"memory: {next(iter(memory.values()))['method']}, measured in one fresh process per approach")

    write_json(
        "decode",
        {
            "rows": args.rows,
            "pages": len(bodies),
            "input_bytes": n_bytes,
            "repeats": args.repeats,
            "cpus": os.cpu_count(),
            "times_s": times,
            "cpu_s": cpu,
            "load_average_before_after": [load_before[0], load_after[0]],
            "results": rows,
            "memory": memory,
            "speedup_vs_naive": round(speedup, 2),
            "ratio_vs_floor": round(vs_floor, 2),
            "targets": {"vs_naive_min": TARGET_VS_NAIVE, "vs_floor_max": TARGET_VS_FLOOR},
            "targets_met": {"vs_naive": ok_naive, "vs_floor": ok_floor},
            "versions": {
                "pandas": pd.__version__,
                "pyarrow": __import__("pyarrow").__version__,
                "orjson": orjson.__version__,
                "numpy": np.__version__,
            },
        },
    )
    return 0


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


if __name__ == "__main__":
    raise SystemExit(main())
