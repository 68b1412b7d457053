"""The history as it lies is a Parquet dataset that every engine reads, with its partition columns, and
orders versions semantically through ``version_key`` without this package."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from test_loader import assert_same_rows

from exec_analytics import ExecutionCache
from exec_analytics.cache.versionkey import version_key
from exec_analytics.schema import COLUMNS, order_versions
from exec_analytics.simulator import Workload

D = pd.Timedelta(days=1)

#: Versions whose text order is not their order: numeric parts, pre-releases (semver rule 11), build
#: metadata, a leading "v", and non-semantic strings (after every semantic version).
VERSIONS = [
    "2.9.0",
    "2.10.0",
    "2.11.0",
    "10.0.0-alpha",
    "10.0.0-alpha.1",
    "10.0.0-alpha.beta",
    "10.0.0-beta.2",
    "10.0.0-beta.11",
    "10.0.0-rc.1",
    "v10.0.0",
    "10.0.1+build.5",
    "100.0.0",
    "main-2026-11-01",
    "nightly",
]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, workload: Workload, sim_now: pd.Timestamp) -> Path:
    """Two days of every resource, with versions from :data:`VERSIONS` (no HTTP: straight from the truth)."""
    root = tmp_path_factory.mktemp("engines") / "h"
    start, end = sim_now - 2 * D, sim_now
    cache = ExecutionCache(root, clock=lambda: end + D)
    for rid in workload.resource_rids:
        truth = workload.ground_truth(rid, start, end)[list(COLUMNS)]
        versions = [VERSIONS[i % len(VERSIONS)] for i in range(len(truth))]
        truth = truth.assign(resource_version=pd.Categorical(versions))
        table = pa.Table.from_pandas(truth, preserve_index=False)
        cache.load(rid, start, end, source="127.0.0.1:1", fetch=lambda stretches, t=table: t)
    # What a killed writer leaves is outside the data tree, which holds Parquet files only.
    leftover = root / "_tmp" / "executions" / f"resource={workload.resource_rids[0]}" / ".part-0.parquet.1-ab.tmp"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"a killed writer's leftover")
    assert {p.suffix for p in (root / "executions").rglob("*") if p.is_file()} == {".parquet"}
    return root


def _ours(history: Path, workload: Workload) -> pd.DataFrame:
    return ExecutionCache(history).read(workload.resource_rids)


def _check(other: pd.DataFrame, ours: pd.DataFrame, workload: Workload) -> None:
    assert {"resource", "date", "version_key"} <= set(other.columns)
    assert set(other["resource"].astype(str)) == set(workload.resource_rids)
    assert set(other["date"].astype(str).str[:10]) == {f"{d:%Y-%m-%d}" for d in ours["start_time"].dt.floor("D")}
    assert_same_rows(other[list(COLUMNS)], ours)


def test_duckdb_reads_the_history_and_orders_versions_by_version_key(history: Path, workload: Workload) -> None:
    glob = str(history / "executions" / "**" / "*.parquet")
    via_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true)").df()
    ours = _ours(history, workload)
    _check(via_duckdb, ours, workload)
    ordered = duckdb.sql(
        f"SELECT resource_version FROM read_parquet('{glob}') GROUP BY resource_version, version_key "
        "ORDER BY version_key"
    ).df()["resource_version"]
    assert list(ordered) == order_versions(VERSIONS)
    # What a plain ORDER BY on the version text gives instead: the reason the key exists.
    naive = duckdb.sql(f"SELECT DISTINCT resource_version FROM read_parquet('{glob}') ORDER BY resource_version").df()[
        "resource_version"
    ]
    assert list(naive) != order_versions(VERSIONS)


def test_polars_scans_the_directory(history: Path, workload: Workload) -> None:
    via_polars = pl.scan_parquet(history / "executions", hive_partitioning=True).collect()
    _check(via_polars.to_pandas(), _ours(history, workload), workload)
    ordered = via_polars.select("resource_version", "version_key").unique().sort("version_key")["resource_version"]
    assert ordered.to_list() == order_versions(VERSIONS)


def test_pyarrow_reads_the_dataset(history: Path, workload: Workload) -> None:
    table = ds.dataset(history / "executions", format="parquet", partitioning="hive").to_table()
    _check(table.to_pandas(), _ours(history, workload), workload)


@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="dask is not installed (test extra)")
def test_dask_reads_the_dataset(history: Path, workload: Workload) -> None:
    import dask.dataframe as dd

    via_dask = dd.read_parquet(str(history / "executions"), dataset={"partitioning": "hive"}).compute()
    _check(via_dask, _ours(history, workload), workload)


@pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None or shutil.which("java") is None,
    reason="pyspark (test extra) or a Java runtime is not installed",
)
@pytest.mark.slow
def test_spark_reads_the_dataset_with_its_partition_columns(history: Path, workload: Workload) -> None:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("exec_analytics-engines")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    try:
        frame = spark.read.parquet(str(history / "executions"))
        assert {"resource", "date"} <= set(frame.columns)
        rows = frame.select("resource", "date", "foundry_trace_id", "resource_rid").collect()
        ours = _ours(history, workload)
        assert sorted(r["foundry_trace_id"] for r in rows) == sorted(ours["foundry_trace_id"])
        assert all(r["resource"] == r["resource_rid"] for r in rows)
        days = {f"{d:%Y-%m-%d}" for d in ours["start_time"].dt.floor("D")}
        assert {str(r["date"]) for r in rows} == days
        ordered = [
            r["resource_version"]
            for r in frame.select("resource_version", "version_key").distinct().orderBy("version_key").collect()
        ]
        assert ordered == order_versions(VERSIONS)
    finally:
        spark.stop()


def test_version_key_orders_like_the_package() -> None:
    assert sorted(VERSIONS, key=version_key) == order_versions(VERSIONS)
    # Derived from the string alone: a key never changes when another version appears.
    assert version_key("2.10.0") == version_key("2.10.0") and version_key("2.10.0") < version_key("2.11.0")
