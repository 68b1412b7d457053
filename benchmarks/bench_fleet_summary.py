"""Fleet benchmark: the weekly fleet summary with Dask and Spark beside DuckDB, on a Parquet history on disk.

Run: ``python benchmarks/bench_fleet_summary.py [--history DIR] [--rows N] [--resources R] [--days D]
[--no-spark] [--subset K]``

1. A history of ``--rows`` executions over ``--resources`` resources and ``--days`` UTC days is generated
   with ``benchmarks/gen_history.py`` into ``--history`` unless it is there already (a size flag: 100M rows
   is ~2.5 GB and takes a minute or two to write on two cores).
2. The summary at daily buckets, timed with the Dask engine on a ``distributed.LocalCluster`` of 2 worker
   processes with 1 thread each (peak RSS per worker: each worker's ``VmHWM``), and with the
   Spark engine in ``local[2]``.
3. The single-machine anchor: DuckDB (2 threads) over the same files computing the same counts (``GROUP BY``
   the six count keys) and, per sketch key, ``count`` and ``approx_quantile`` at p50/p90/p95/p99.
4. Sizes: the history's Parquet bytes over the summary's (written as Parquet, zstd), with the full keys and
   regrouped without callers.
5. The fleet report from the summary (``build_weekly_report(summary)``): built, then rendered as JSON, Markdown
   and HTML without figures; one resource's HTML with its figures.
6. Accuracy on ``--subset`` resources whose rows fit in memory: counts and rates against the rows (must be
   identical), each percentile's observed rank error against the stated bound, whether every widened
   interval contains the exact one, percentile verdicts against latency objectives away from the percentile,
   and the weekly report's statuses and budgets from the rows against from the summary.

Prints the figures and writes ``benchmarks/results/fleet_summary.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_history import generate

from exec_analytics import schema
from exec_analytics.analysis import (
    duration_percentiles,
    failure_rate,
    failure_reasons,
)
from exec_analytics.report import build_weekly_report, render_html, render_json, render_markdown
from exec_analytics.summary import Summary, history_dataset

from _common import write_json

Q = (0.5, 0.9, 0.95, 0.99)
#: The reports' SLO: the generated resources fail 0.5-8% of the time, so at 95% their budgets spread from
#: untouched to exhausted (at 99% almost all would be exhausted, and their statuses would all agree trivially).
SLO = 0.95


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def run_duckdb(history: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    src = f"read_parquet('{history}/**/*.parquet')"
    day = "epoch_ms(start_time) // 86400000"
    began = time.perf_counter()
    counts = con.execute(
        f"SELECT resource_rid, {day} AS day, resource_version, caller_rid, status, failure_reason, count(*) AS n "
        f"FROM {src} GROUP BY ALL"
    ).to_arrow_table()
    quantiles = con.execute(
        f"SELECT resource_rid, {day} AS day, resource_version, caller_rid, "
        "CASE WHEN status = 'SUCCEEDED' THEN 'succeeded' ELSE 'failed' END AS outcome, count(duration_s) AS n, "
        f"approx_quantile(duration_s, {list(Q)}) AS q FROM {src} WHERE NOT isnan(duration_s) GROUP BY ALL"
    ).to_arrow_table()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "count_rows": counts.num_rows, "quantile_rows": quantiles.num_rows}


def _peak_rss_mb() -> int:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux keeps that across exec, so a worker started
    from a parent that once held 2 GB would report the parent's peak."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("VmHWM:"))


def run_dask(history: Path) -> tuple[Summary, dict[str, Any]]:
    import distributed

    from exec_analytics.summary import on_dask

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="4GB", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # Warm workers, as on a running cluster: the package imports before the clock starts.
        client.run(lambda: __import__("exec_analytics.summary.build"))
        began = time.perf_counter()
        summary = on_dask.build(history, freq="1D")
        seconds = time.perf_counter() - began
        peaks = client.run(_peak_rss_mb)
    peak_mb = list(peaks.values())
    return summary, {"seconds": seconds, "peak_rss_mb_per_worker": peak_mb}


def run_spark(history: Path) -> tuple[Summary, dict[str, Any]]:
    from pyspark.sql import SparkSession

    from exec_analytics.summary import on_spark

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        began = time.perf_counter()
        summary = on_spark.build(spark, history, freq="1D")
        seconds = time.perf_counter() - began
    finally:
        spark.stop()
    return summary, {"seconds": seconds}


def _window(summary: Summary) -> tuple[Any, Any]:
    """The summary's whole days: the report period."""
    start = summary.counts["bucket_start"].min()
    return start, summary.counts["bucket_start"].max() + summary.freq


def fleet_report(summary: Summary) -> dict[str, Any]:
    """The weekly report of the whole fleet from the summary: built, then rendered as JSON, Markdown and HTML
    without figures (what a scheduled fleet report writes), and one resource's HTML with its figures."""
    start, end = _window(summary)
    began = time.perf_counter()
    report = build_weekly_report(summary, start=start, end=end, slo=SLO)
    built = time.perf_counter() - began
    sizes = {"json": len(render_json(report)), "md": len(render_markdown(report)),
             "html_without_figures": len(render_html(report, figures={}))}  # fmt: skip
    rendered = time.perf_counter() - began - built
    one = build_weekly_report(summary, start=start, end=end, slo=SLO, resources=report.resources[0].rid)
    began_one = time.perf_counter()
    render_html(one)
    return {"seconds_build": built, "seconds_render": rendered, "resources": len(report.resources),
            "bytes": sizes, "seconds_one_resource_html_with_figures": time.perf_counter() - began_one,
            "statuses": {k: int(v) for k, v in Counter(sec.status for sec in report.resources).items()}}  # fmt: skip


def report_statuses(rows: Any, summary: Summary) -> dict[str, Any]:
    """Each resource's status and budget from the rows against from the summary, for the same period."""
    start, end = _window(summary)
    from_rows = build_weekly_report(rows, start=start, end=end, slo=SLO)
    from_summary = build_weekly_report(summary, start=start, end=end, slo=SLO)
    pairs = {a.rid: (a.status, b.status) for a, b in zip(from_rows.resources, from_summary.resources, strict=True)}
    budgets = [a.budget.remaining == b.budget.remaining for a, b in zip(from_rows.resources, from_summary.resources,
                                                                        strict=True)]  # fmt: skip
    return {"statuses_equal": f"{sum(a == b for a, b in pairs.values())}/{len(pairs)}",
            "budgets_equal": f"{sum(budgets)}/{len(budgets)}", "statuses": pairs}  # fmt: skip


#: Latency objectives as multiples of each exact percentile: away from it on both sides, where an exact
#: answer is clear and a sketch's must be the same.
OBJECTIVES = (0.5, 0.8, 0.9, 1.1, 1.25, 2.0)


def _verdict(low: np.ndarray, high: np.ndarray, objective: np.ndarray) -> np.ndarray:
    """Per percentile: "above" the objective (interval entirely over it), "below", or "inconclusive"."""
    return np.where(low > objective, "above", np.where(high < objective, "below", "inconclusive"))


def _verdicts_away_from_thresholds(got: Any, want: Any, far: dict[str, np.ndarray]) -> dict[str, str]:
    """How many "is this percentile over its objective?" verdicts agree between the summary and the rows.

    ``away``: over objectives beyond ``far`` (the exact values at the exact interval's ranks moved out by twice
    the rank error), where they must all agree. ``x<m>``: objectives at ``m`` times the exact percentile, counting
    only those the rows decide (inside the exact interval rows are inconclusive, and a sketch may only be more
    cautious near it) -- how far "away" is in practice.
    """
    out = {}
    same, total = 0, 0
    for q in Q:
        name = f"p{q * 100:g}"
        low, high = got[f"{name}_low"].to_numpy(float), got[f"{name}_high"].to_numpy(float)
        for m in OBJECTIVES:
            objective = want[name].to_numpy(dtype=float) * m
            away = (objective < far[name][:, 0]) | (objective > far[name][:, 1])
            exact = _verdict(want[f"{name}_low"].to_numpy(float), want[f"{name}_high"].to_numpy(float), objective)
            same += int((_verdict(low, high, objective)[away] == exact[away]).sum())
            total += int(away.sum())
    out["away"] = f"{same}/{total}"
    for m in OBJECTIVES:
        same, total = 0, 0
        for q in Q:
            name = f"p{q * 100:g}"
            objective = want[name].to_numpy(dtype=float) * m
            exact = _verdict(want[f"{name}_low"].to_numpy(float), want[f"{name}_high"].to_numpy(float), objective)
            sketched = _verdict(got[f"{name}_low"].to_numpy(float), got[f"{name}_high"].to_numpy(float), objective)
            decided = exact != "inconclusive"
            same += int((sketched[decided] == exact[decided]).sum())
            total += int(decided.sum())
        out[f"x{m:g}"] = f"{same}/{total}"
    return out


def accuracy(history: Path, summary: Summary, subset: int) -> dict[str, Any]:
    dataset = history_dataset(history)
    rids = sorted({Path(f).parent.parent.name.split("=", 1)[1] for f in dataset.files})[:subset]
    files = [f for f in dataset.files if Path(f).parent.parent.name.split("=", 1)[1] in rids]
    rows = schema.to_frame(pq.ParquetDataset(files).read())
    sub = replace(
        summary,
        counts=summary.counts[summary.counts["resource_rid"].isin(rids)].reset_index(drop=True),
        sketches=summary.sketches[summary.sketches["resource_rid"].isin(rids)].reset_index(drop=True),
    )
    by = ["resource_rid", "resource_version"]
    exact_rates = failure_rate(sub, by=by, freq="1D").equals(failure_rate(rows, by=by, freq="1D"))
    exact_reasons = failure_reasons(sub, by=by).equals(failure_reasons(rows, by=by))
    got = duration_percentiles(sub, by=by, q=Q, confidence=0.95)
    want = duration_percentiles(rows, by=by, q=Q, confidence=0.95)
    max_err, contained, intervals = 0.0, 0, 0
    eps = summary.rank_error()
    # Per group and percentile, the exact values at the interval's ranks moved out by twice the rank error (the
    # summary widens the ranks by it, and the sketch answers each rank within it): an objective beyond them is
    # "away from the threshold", where a sketch's verdict must equal the rows'.
    far = {f"p{q * 100:g}": np.full((len(want), 2), np.nan) for q in Q}
    for i in range(len(want)):
        mask = np.ones(len(rows), dtype=bool)
        for k in by:
            mask &= (rows[k].astype(object) == want.loc[i, k]).to_numpy(dtype=bool)
        values = np.sort(rows.loc[mask, "duration_s"].to_numpy())
        for q in Q:
            name = f"p{q * 100:g}"
            x = got.loc[i, name]
            below = np.searchsorted(values, x, "left") / len(values)
            at = np.searchsorted(values, x, "right") / len(values)
            max_err = max(max_err, max(below - q, q - at, 0.0))
            if np.isfinite(want.loc[i, f"{name}_low"]):
                n = len(values)
                lo = np.searchsorted(values, want.loc[i, f"{name}_low"], "left") / n
                hi = np.searchsorted(values, want.loc[i, f"{name}_high"], "right") / n
                far[name][i] = (
                    values[max(int(np.floor((lo - 2 * eps) * n)), 0)],
                    values[min(int(np.ceil((hi + 2 * eps) * n)), n - 1)],
                )
                intervals += 1
                contained += bool(got.loc[i, f"{name}_low"] <= want.loc[i, f"{name}_low"]
                                  and got.loc[i, f"{name}_high"] >= want.loc[i, f"{name}_high"])  # fmt: skip
    verdicts = _verdicts_away_from_thresholds(got, want, far)
    report = report_statuses(rows, sub)
    return {
        "resources": len(rids),
        "rows": len(rows),
        "counts_and_rates_identical": bool(exact_rates and exact_reasons),
        "percentile_verdicts_equal": verdicts,
        "report_from_rows_vs_summary": report,
        "max_rank_error_observed": max_err,
        "rank_error_bound": summary.rank_error(),
        "intervals_containing_exact": f"{contained}/{intervals}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=Path, default=Path(tempfile.gettempdir()) / "exec_analytics_fleet")
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--resources", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--subset", type=int, default=10, help="resources checked against their rows")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    if not args.history.exists():
        result["generate"] = generate(args.history, rows=args.rows, resources=args.resources, days=args.days)
        print("generated", result["generate"])
    rows = sum(pq.read_metadata(f).num_rows for f in history_dataset(args.history).files)
    result["history"] = {"rows": rows, "bytes": _size(args.history)}
    print("history", result["history"])

    result["duckdb"] = run_duckdb(args.history)
    print("duckdb", result["duckdb"])
    summary, result["dask"] = run_dask(args.history)
    print("dask", result["dask"])
    assert summary.counts["executions"].sum() == rows
    if not args.no_spark:
        spark_summary, result["spark"] = run_spark(args.history)
        result["spark"]["counts_equal_dask"] = spark_summary.counts.equals(summary.counts)
        print("spark", result["spark"])
    result["dask_over_duckdb"] = result["dask"]["seconds"] / result["duckdb"]["seconds"]
    result["rows_per_second_per_core"] = {
        name: rows / result[name]["seconds"] / 2 for name in ("duckdb", "dask", "spark") if name in result
    }

    with tempfile.TemporaryDirectory() as tmp:
        summary.write(Path(tmp) / "full")
        summary.regroup(drop=["caller_rid"]).write(Path(tmp) / "no_callers")
        full, no_callers = _size(Path(tmp) / "full"), _size(Path(tmp) / "no_callers")
    result["summary"] = {
        "count_rows": len(summary.counts),
        "sketch_rows": len(summary.sketches),
        "bytes": full,
        "history_over_summary": result["history"]["bytes"] / full,
        "bytes_without_callers": no_callers,
        "history_over_summary_without_callers": result["history"]["bytes"] / no_callers,
    }
    print("summary", result["summary"])
    result["report_from_summary"] = fleet_report(summary)
    print("report", result["report_from_summary"])
    result["accuracy"] = accuracy(args.history, summary, args.subset)
    print("accuracy", result["accuracy"])
    write_json("fleet_summary", result)


if __name__ == "__main__":
    main()
