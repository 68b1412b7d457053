"""Aggregation benchmark: the weekly-report aggregate set on the executions table.

Run: ``python benchmarks/bench_analysis.py [--rows N] [--repeats R] [--no-memory]``

The aggregate set: executions, failures, failure rate and p50/p90/p99 of ``duration_s`` by
``resource_version`` x UTC day, and the same by ``caller_rid``. Timed in one run, interleaved and repeated
(medians), on the same pandas frame:

1. ``analysis.summarize`` twice (this toolkit; also adds Wilson intervals, which the others do not);
2. ``analysis.failure_rate`` + ``analysis.duration_percentiles`` for each grouping (four calls);
3. DuckDB with a well-written query straight on the pandas frame: integer day key
   ``epoch_us(start_time) // 86400000000``, ``count(*) FILTER (...)`` and one ``quantile_cont`` with a list of
   probabilities, ``GROUP BY ALL``; the query result is fetched as a pandas frame;
4. plain pandas: an integer day key, ``groupby(...).agg`` for the counts and
   ``groupby(...)["duration_s"].quantile([.5, .9, .99])`` for the percentiles (``observed=True``).

All four are checked to produce the same numbers before anything is timed.

The frame has the dtypes of docs/design.md (built through ``schema.to_frame``): 28 days, 6 versions, 40 callers
(2% of executions without one), ~5% failures, durations 60% whole milliseconds / 40% whole seconds, and a
``foundry_trace_id`` string column (it is part of the table's size; nobody reads it).

Peak memory is measured in a fresh subprocess per approach: after building the frame the process resets
its kernel high-water mark (``/proc/self/clear_refs``), runs the approach once keeping its result, and reads
``VmHWM``. Peak over frame = VmHWM - RSS before the run: everything the approach needed on top of the frame
(for DuckDB this includes its buffer manager and thread arenas). Where clear_refs is not available,
``ru_maxrss`` is used and the figure is a lower bound.

Prints a table and writes ``benchmarks/results/analysis.json``.
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
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from exec_analytics import analysis, schema  # noqa: E402

from _common import memory_in_subprocess, peak_memory, print_table, write_json  # noqa: E402

TARGET_VS_DUCKDB = 2.0  # at most this many times DuckDB's time
TARGET_MEMORY = 2.0  # peak over the frame at most this many times the frame's size
Q = (0.5, 0.9, 0.99)
VERSIONS = ["1.2.0", "1.3.0", "1.9.0", "1.10.0", "2.0.0-rc.1", "2.0.0"]
REASONS = ["timeout", "invalid_parameter", "internal_error", "out_of_memory"]
DAY_MS = 86_400_000


# --------------------------------------------------------------------------------------------------------
# Synthetic executions table
# --------------------------------------------------------------------------------------------------------


def _dictionary(codes: np.ndarray, values: list[str]) -> pa.DictionaryArray:
    mask = codes < 0
    return pa.DictionaryArray.from_arrays(
        pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask), pa.array(values, pa.string())
    )


def _uuids(rng: np.random.Generator, n: int) -> pa.Array:
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    hexd = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    digits = np.empty((n, 32), dtype=np.uint8)
    digits[:, 0::2] = hexd[raw >> 4]
    digits[:, 1::2] = hexd[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, [i for i in range(36) if i not in (8, 13, 18, 23)]] = digits
    offsets = np.arange(0, 36 * n + 1, 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out.tobytes()))


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` executions over 28 days, in the executions-table dtypes, oldest first."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-11-01T00:00Z").value // 1_000_000
    start = np.sort(t0 + rng.integers(0, 28 * DAY_MS, n))
    callers = [f"ri.workshop.main.module.{i:08x}-0000-4000-8000-000000000000" for i in range(25)]
    callers += [f"ri.actions.main.action-type.{i:08x}-0000-4000-8000-000000000000" for i in range(10)]
    callers += [f"ri.function-registry.main.function.{i:08x}-0000-4000-8000-000000000000" for i in range(5)]
    caller = rng.integers(0, len(callers), n)
    caller[rng.random(n) < 0.02] = -1  # executions without a caller
    failed = rng.random(n) < 0.05
    in_ms = rng.random(n) < 0.6
    duration = np.where(in_ms, np.rint(rng.lognormal(5.5, 1.0, n)) / 1000, np.rint(rng.lognormal(1.0, 1.0, n)))
    version = np.minimum((start - t0) // (5 * DAY_MS) + rng.integers(-1, 1, n), len(VERSIONS) - 1).clip(0)
    table = pa.table({
        "start_time": pa.array(start, pa.timestamp("ms", tz="UTC")),
        "duration_s": pa.array(duration, pa.float64()),
        "status": _dictionary(failed.astype(np.int32), ["SUCCEEDED", "FAILED"]),
        "failure_reason": _dictionary(np.where(failed, rng.integers(0, len(REASONS), n), -1), REASONS),
        "resource_rid": _dictionary(np.zeros(n, np.int32), ["ri.function-registry.main.function.bench"]),
        "resource_version": _dictionary(version.astype(np.int32), VERSIONS),
        "caller_rid": _dictionary(caller, callers),
        "trace_owning_rid": _dictionary(np.where(caller < 0, 0, caller), callers),
        "foundry_trace_id": _uuids(rng, n),
    })  # fmt: skip
    return schema.to_frame(table)


# --------------------------------------------------------------------------------------------------------
# The approaches: each returns (by version x day, by caller)
# --------------------------------------------------------------------------------------------------------


def run_summarize(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (analysis.summarize(df, by="resource_version", freq="1D", q=Q), analysis.summarize(df, by="caller_rid", q=Q))


def run_four_calls(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = []
    for by, freq in (("resource_version", "1D"), ("caller_rid", None)):
        rates = analysis.failure_rate(df, by=by, freq=freq)
        pct = analysis.duration_percentiles(df, by=by, freq=freq, q=Q)
        out.append(pd.concat([rates, pct.drop(columns=rates.columns.intersection(pct.columns))], axis=1))
    return out[0], out[1]


_DUCKDB_SQL = """
SELECT {keys},
       count(*) AS executions,
       count(*) FILTER (WHERE status <> 'SUCCEEDED') AS failures,
       failures / executions AS rate,
       quantile_cont(duration_s, [0.5, 0.9, 0.99]) AS q
FROM df
GROUP BY ALL
ORDER BY ALL
"""


def run_duckdb(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    import duckdb

    con = duckdb.connect()
    try:
        con.register("df", df)
        by_day = con.execute(
            _DUCKDB_SQL.format(keys="resource_version, epoch_us(start_time) // 86400000000 AS day")
        ).df()
        by_caller = con.execute(_DUCKDB_SQL.format(keys="caller_rid")).df()
    finally:
        con.close()
    return by_day, by_caller


def run_pandas(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = df[["resource_version", "caller_rid", "duration_s"]].assign(
        day=df["start_time"].array.asi8 // DAY_MS, failed=(df["status"] != "SUCCEEDED").to_numpy()
    )
    out = []
    for keys in (["resource_version", "day"], ["caller_rid"]):
        g = frame.groupby(keys, observed=True, dropna=False)
        counts = g["failed"].agg(executions="size", failures="sum")
        counts["rate"] = counts["failures"] / counts["executions"]
        pct = g["duration_s"].quantile(list(Q)).unstack()
        out.append(counts.join(pct).reset_index())
    return out[0], out[1]


APPROACHES = {
    "analysis.summarize x2": run_summarize,
    "analysis 4 calls": run_four_calls,
    "duckdb quantile_cont": run_duckdb,
    "pandas groupby.quantile": run_pandas,
}


def _numbers(result: tuple[pd.DataFrame, pd.DataFrame], name: str) -> list[np.ndarray]:
    """Executions, failures and the three percentiles of both groupings, as arrays in key order."""
    arrays = []
    for frame in result:
        if name.startswith("duckdb"):
            q = np.array(frame["q"].tolist(), dtype=float)
            cols = [frame["executions"], frame["failures"], q[:, 0], q[:, 1], q[:, 2]]
        elif name.startswith("pandas"):
            cols = [frame["executions"], frame["failures"], frame[0.5], frame[0.9], frame[0.99]]
        else:
            cols = [frame["executions"], frame["failures"], frame["p50"], frame["p90"], frame["p99"]]
        arrays += [np.asarray(c, dtype=float) for c in cols]
    return arrays


def check_same(results: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> None:
    """A comparison is only fair if every approach computes the same numbers (same group order too)."""
    reference = _numbers(results["analysis.summarize x2"], "analysis")
    for name, result in results.items():
        for got, want in zip(_numbers(result, name), reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=name)


# --------------------------------------------------------------------------------------------------------
# Memory, measured in a subprocess per approach
# --------------------------------------------------------------------------------------------------------


def measure_memory_here(name: str, rows: int) -> dict:
    df = make_frame(rows)
    APPROACHES[name](df.head(1000))  # imports and first-call setup are not part of the peak
    got = peak_memory(lambda: APPROACHES[name](df))
    return {
        "approach": name,
        "peak_over_frame_mb": got["peak_mb"],
        "frame_mb": round(df.memory_usage(deep=True).sum() / 2**20, 1),
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
    parser.add_argument("--rows", type=int, default=10_000_000, help="executions (default 10,000,000)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per approach (median)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--memory-of", choices=list(APPROACHES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_of:
        print(json.dumps(measure_memory_here(args.memory_of, args.rows)))
        return 0

    t = time.perf_counter()
    df = make_frame(args.rows)
    frame_mb = df.memory_usage(deep=True).sum() / 2**20
    print(f"{args.rows:,} executions, frame {frame_mb:.0f} MiB, built in {time.perf_counter() - t:.1f} s; "
          f"{os.cpu_count()} CPUs")  # fmt: skip

    check_same({name: fn(df) for name, fn in APPROACHES.items()})
    print("all approaches produce the same counts and percentiles")

    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in APPROACHES}
    cpu: dict[str, list[float]] = {name: [] for name in APPROACHES}
    names = list(APPROACHES)
    for r in range(max(args.repeats, 1)):
        # Interleaved, with the starting approach rotated, so drift and cache warmth hit every approach alike.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            c, t = time.process_time(), time.perf_counter()
            result = APPROACHES[name](df)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            del result
        print(f"  repeat {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items()), flush=True)
    load_after = os.getloadavg()

    memory = {}
    if not args.no_memory:
        for name in APPROACHES:
            memory[name] = measure_memory(name, args.rows)

    median = {name: statistics.median(v) for name, v in times.items()}
    duck = median["duckdb quantile_cont"]
    rows = []
    for name in APPROACHES:
        mem = memory.get(name, {})
        rows.append({
            "approach": name,
            "median_s": round(median[name], 3),
            "min_s": round(min(times[name]), 3),
            "cpu_s": round(statistics.median(cpu[name]), 3),
            "vs_duckdb": round(median[name] / duck, 2),
            "peak_over_frame_mib": mem.get("peak_over_frame_mb", ""),
            "peak_vs_frame": round(mem["peak_over_frame_mb"] / frame_mb, 2) if mem else "",
        })  # fmt: skip
    print()
    print_table(rows, ["approach", "median_s", "min_s", "cpu_s", "vs_duckdb", "peak_over_frame_mib", "peak_vs_frame"])

    ours = median["analysis.summarize x2"]
    ok_time = ours <= TARGET_VS_DUCKDB * duck
    ours_mem = memory.get("analysis.summarize x2")
    ok_mem = ours_mem is not None and ours_mem["peak_over_frame_mb"] <= TARGET_MEMORY * frame_mb
    print()
    print(f"analysis.summarize x2: {ours / duck:.2f}x DuckDB's time (target <= {TARGET_VS_DUCKDB}x): {_ok(ok_time)}; "
          f"{median['pandas groupby.quantile'] / ours:.1f}x faster than plain pandas")  # fmt: skip
    if ours_mem:
        print(
            f"peak memory over the frame: {ours_mem['peak_over_frame_mb']:.0f} MiB = "
            f"{ours_mem['peak_over_frame_mb'] / frame_mb:.2f}x the frame's {frame_mb:.0f} MiB "
            f"(target <= {TARGET_MEMORY}x): {_ok(ok_mem)}; {ours_mem['method']}, one fresh process per approach"
        )
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after the timed runs "
          "(DuckDB uses every core; the numpy path uses one)")  # fmt: skip

    import duckdb

    write_json("analysis", {
        "rows": args.rows,
        "frame_mib": round(frame_mb, 1),
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "times_s": times,
        "cpu_s": cpu,
        "load_average_before_after": [load_before[0], load_after[0]],
        "results": rows,
        "memory": memory,
        "ratio_vs_duckdb": round(ours / duck, 2),
        "targets": {"vs_duckdb_max": TARGET_VS_DUCKDB, "peak_vs_frame_max": TARGET_MEMORY},
        "targets_met": {"vs_duckdb": ok_time, "memory": ok_mem},
        "versions": {"pandas": pd.__version__, "numpy": np.__version__, "pyarrow": pa.__version__,
                     "duckdb": duckdb.__version__},
    })  # fmt: skip
    return 0


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


if __name__ == "__main__":
    raise SystemExit(main())
