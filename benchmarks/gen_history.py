"""Write a synthetic fleet history as Parquet, fast: vectorised numpy -> Arrow -> one file per resource and day.

Run: ``python benchmarks/gen_history.py OUT [--rows N] [--resources R] [--days D] [--seed S]``

The layout is the cache's (``OUT/resource=<rid>/date=YYYY-MM-DD/part-0.parquet``, zstd level 1, dictionary
columns, the executions table's Arrow schema plus ``extra``), so every engine reads it as it would read a
real history. Shape, per resource: a traffic weight (log-normal, so a few resources are busy and most are
not), 3-12 callers drawn from a fleet-wide pool with Zipf-like shares (2% of executions without a caller), a
release in the middle of the window (two versions overlap), a base failure rate of 0.5-8% with six reasons,
log-normal durations around a per-resource median reported 60% in whole milliseconds and 40% in whole
seconds, and a random 32-hex-digit ``foundry_trace_id`` (incompressible, like the real ones: most of the
bytes). No Python loop runs over executions; the loop is over (resource, day) partitions.
"""

from __future__ import annotations

import argparse
import binascii
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from exec_analytics import schema

DAY_MS = 86_400_000
START_MS = 1_763_251_200_000  # 2025-11-16T00:00Z, a Sunday: day 0 of the window
REASONS = [
    "timeout",
    "internal_error",
    "out_of_memory",
    "invalid_parameter",
    "upstream_unavailable",
    "permission_denied",
]
SCHEMA = schema.ARROW_SCHEMA.append(pa.field(schema.EXTRA_COLUMN, pa.string()))


def _rid(kind: str, rng: np.random.Generator, n: int) -> list[str]:
    raw = binascii.hexlify(rng.bytes(16 * n)).decode()
    return [f"ri.{kind}.{raw[32 * i : 32 * i + 8]}-{raw[32 * i + 8 : 32 * i + 12]}-{raw[32 * i + 12 : 32 * i + 32]}"
            for i in range(n)]  # fmt: skip


def _dict(codes: np.ndarray, values: list[str], null: np.ndarray | None = None) -> pa.DictionaryArray:
    indices = pa.array(codes.astype(np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))


def partition(rng: np.random.Generator, n: int, day: int, res: dict[str, object], rid: str) -> pa.Table:
    """One resource-day of ``n`` executions as an Arrow table with :data:`SCHEMA`."""
    start = START_MS + day * DAY_MS + np.sort(rng.integers(0, DAY_MS, n))
    callers: list[str] = res["callers"]  # type: ignore[assignment]
    shares: np.ndarray = res["shares"]  # type: ignore[assignment]
    caller = rng.choice(len(callers), size=n, p=shares)
    no_caller = rng.random(n) < 0.02
    # The release rolls out over the window: the new version's share grows from 0 to 1.
    frac = (start - START_MS) / (res["days"] * DAY_MS)  # type: ignore[operator]
    version = (rng.random(n) < frac).astype(np.int64)
    p_fail = float(res["fail"]) * np.where(version == 1, float(res["regress"]), 1.0)  # type: ignore[arg-type]
    failed = rng.random(n) < p_fail
    reason = rng.integers(0, len(REASONS), n)
    seconds = rng.lognormal(np.log(float(res["median"])), 0.9, n)  # type: ignore[arg-type]
    seconds *= np.where(version == 1, float(res["slower"]), 1.0)  # type: ignore[arg-type]
    in_seconds = rng.random(n) < 0.4
    duration = np.where(in_seconds, np.maximum(np.rint(seconds), 1.0), np.rint(seconds * 1000) / 1000)
    trace = np.frombuffer(binascii.hexlify(rng.bytes(16 * n)), dtype="S32")
    return pa.Table.from_arrays(
        [
            pa.array(start.astype("datetime64[ms]"), pa.timestamp("ms")).cast(pa.timestamp("ms", tz="UTC")),
            pa.array(duration, pa.float64()),
            _dict(failed.astype(np.int64), ["SUCCEEDED", "FAILED"]),
            _dict(reason, REASONS, null=~failed),
            _dict(np.zeros(n, dtype=np.int64), [rid]),
            _dict(version, res["versions"]),  # type: ignore[arg-type]
            _dict(caller, callers, null=no_caller),
            _dict(caller, callers, null=no_caller),
            pa.array(trace, pa.binary()).cast(pa.string()),
            pa.nulls(n, pa.string()),
        ],
        schema=SCHEMA,
    )


def generate(out: Path, *, rows: int, resources: int, days: int, seed: int = 0) -> dict[str, float]:
    """Write the history; returns ``rows``, ``files``, ``bytes`` and ``seconds``."""
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    rids = _rid("function-registry.main.function", rng, resources)
    pool = _rid("workshop.main.module", rng, max(50, resources * 2))
    weights = rng.lognormal(0.0, 1.0, resources)
    per_day = rng.multinomial(rows, np.repeat(weights / weights.sum() / days, days))
    total_bytes, files = 0, 0
    for r, rid in enumerate(rids):
        n_callers = int(rng.integers(3, 13))
        shares = 1.0 / np.arange(1, n_callers + 1) ** 1.1
        major = int(rng.integers(1, 4))
        minor = int(rng.integers(0, 12))
        res = {
            "callers": list(rng.choice(pool, n_callers, replace=False)),
            "shares": shares / shares.sum(),
            "versions": [f"{major}.{minor}.0", f"{major}.{minor + 1}.0"],
            "fail": rng.uniform(0.005, 0.08),
            "regress": rng.choice([1.0, 1.0, 1.0, 2.0]),
            "median": rng.lognormal(np.log(0.5), 1.0),
            "slower": rng.choice([1.0, 1.0, 1.3]),
            "days": days,
        }
        for day in range(days):
            n = int(per_day[r * days + day])
            if n == 0:
                continue
            date = np.datetime64(START_MS + day * DAY_MS, "ms").astype("datetime64[D]")
            path = out / f"resource={rid}" / f"date={date}" / "part-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(partition(rng, n, day, res, rid), path, compression="zstd", compression_level=1,
                           row_group_size=65_536)  # fmt: skip
            total_bytes += path.stat().st_size
            files += 1
    return {"rows": rows, "files": files, "bytes": total_bytes, "seconds": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    facts = generate(args.out, rows=args.rows, resources=args.resources, days=args.days, seed=args.seed)
    print(f"{facts['rows']:,} executions in {facts['files']:,} files, {facts['bytes'] / 1e9:.2f} GB, "
          f"{facts['seconds']:.1f} s ({facts['rows'] / facts['seconds'] / 1e6:.2f}M rows/s)")  # fmt: skip


if __name__ == "__main__":
    main()
