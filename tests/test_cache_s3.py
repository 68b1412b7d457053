"""The history on S3 (a real S3-protocol server on loopback): writer leases, and reads that touch only what
they need. The exactness, crash and race tests of the local history run on S3 too (``location`` fixture)."""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import pyarrow as pa
import pytest
from test_loader import assert_same_rows

from exec_analytics import CacheError, ExecutionCache
from exec_analytics.cache.storage import S3Storage
from exec_analytics.schema import COLUMNS
from exec_analytics.simulator import Workload

if TYPE_CHECKING:
    from objstore import Location

pytest_plugins = ("objstore",)

D = pd.Timedelta(days=1)


def _table(wl: Workload, rid: str, start: pd.Timestamp, end: pd.Timestamp) -> pa.Table:
    return pa.Table.from_pandas(wl.ground_truth(rid, start, end)[list(COLUMNS)], preserve_index=False)


def _lease_key(cache: ExecutionCache, rid: str) -> str:
    storage = cache.storage
    assert isinstance(storage, S3Storage)
    return f"{storage.prefix}/{cache.layout.lock(rid)}"


def _count_requests(cache: ExecutionCache) -> Counter[tuple[str, str]]:
    """Every S3 request the cache's client sends from now on, as (operation, key)."""
    storage = cache.storage
    assert isinstance(storage, S3Storage)
    seen: Counter[tuple[str, str]] = Counter()

    def note(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen[(model.name, params.get("Key", params.get("Prefix", "")))] += 1

    storage.client.meta.events.register("provide-client-params.s3", note)
    return seen


def test_a_one_day_read_of_a_month_touches_only_that_days_objects(
    s3_location: Location, workload: Workload, sim_now: pd.Timestamp
) -> None:
    rid = workload.resource_rids[2]
    start, end = sim_now - 30 * D, sim_now
    url = s3_location.url("month")
    table = _table(workload, rid, start, end)
    ExecutionCache(url, clock=lambda: end + D).load(rid, start, end, source="127.0.0.1:1", fetch=lambda s: table)
    assert sum(k.endswith(".parquet") for k in s3_location.files(url)) == 30

    reader = ExecutionCache(url, clock=lambda: end + D)
    seen = _count_requests(reader)
    day = sim_now - 10 * D
    df = reader.read(rid, day, day + D)
    assert len(df) == int(
        ((table["start_time"].to_pandas() >= day) & (table["start_time"].to_pandas() < day + D)).sum()
    )
    part = f"team/month/executions/resource={rid}/date={day:%Y-%m-%d}/part-0.parquet"
    # The format marker, the resource's manifest and that day's file: one GET each, no listing.
    assert seen == Counter(
        {
            ("GetObject", "team/month/_cache.json"): 1,
            ("GetObject", f"team/month/_meta/executions/resource={rid}.json"): 1,
            ("GetObject", part): 1,
        }
    )


def test_a_writer_waits_for_a_live_lease_and_takes_over_an_expired_one(
    s3_location: Location, workload: Workload, sim_now: pd.Timestamp
) -> None:
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    url = s3_location.url("leases")
    table = _table(workload, rid, start, end)
    cache = ExecutionCache(url, lock_timeout=0.2, clock=lambda: sim_now)
    bucket = url.removeprefix("s3://").split("/")[0]
    key = _lease_key(cache, rid)
    # A writer on another machine holds the resource: it cannot be known dead until its lease expires.
    live = {"host": "elsewhere", "pid": 1, "since": 0, "expires": time.time_ns() // 1_000_000 + 60_000}
    s3_location.client.put_object(Bucket=bucket, Key=key, Body=orjson.dumps(live))
    with pytest.raises(CacheError, match=r"locked for resource .* by another writer \(pid 1 on elsewhere\)"):
        cache.load(rid, start, end, source="127.0.0.1:1", fetch=lambda s: table)
    assert cache.coverage(rid).empty
    # Expired: taken over (by a conditional PUT on its ETag), and released after the load.
    s3_location.client.put_object(Bucket=bucket, Key=key, Body=orjson.dumps({**live, "expires": 0}))
    got = cache.load(rid, start, end, source="127.0.0.1:1", fetch=lambda s: table)
    assert len(got.frame) == table.num_rows
    assert f"_locks/{rid}.lock" not in s3_location.files(url)


def test_a_dead_holder_on_this_machine_is_noticed_at_once(
    s3_location: Location, workload: Workload, sim_now: pd.Timestamp
) -> None:
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    url = s3_location.url("dead")
    cache = ExecutionCache(url, lock_timeout=0.0, clock=lambda: sim_now)
    bucket = url.removeprefix("s3://").split("/")[0]
    # A pid that is not running here (pids are below 2**22 on Linux), lease far from expiry.
    dead = {
        "host": socket.gethostname(),
        "pid": 2**22 + 7,
        "since": 0,
        "expires": time.time_ns() // 1_000_000 + 600_000,
    }
    s3_location.client.put_object(Bucket=bucket, Key=_lease_key(cache, rid), Body=orjson.dumps(dead))
    table = _table(workload, rid, start, end)
    assert len(cache.load(rid, start, end, source="127.0.0.1:1", fetch=lambda s: table).frame) == table.num_rows


def test_a_writer_whose_lease_was_taken_over_writes_nothing(
    s3_location: Location, workload: Workload, sim_now: pd.Timestamp
) -> None:
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    url = s3_location.url("stolen")
    cache = ExecutionCache(url, clock=lambda: sim_now)
    bucket = url.removeprefix("s3://").split("/")[0]
    table = _table(workload, rid, start, end)

    def slow_fetch(stretches: Any) -> pa.Table:
        # Meanwhile the lease expired and another writer took it over (a PUT that changes its ETag).
        other = {"host": "elsewhere", "pid": 1, "since": 0, "expires": time.time_ns() // 1_000_000 + 60_000}
        s3_location.client.put_object(Bucket=bucket, Key=_lease_key(cache, rid), Body=orjson.dumps(other))
        return table

    with pytest.raises(CacheError, match=r"lease .* taken over by another writer; nothing more was written"):
        cache.load(rid, start, end, source="127.0.0.1:1", fetch=slow_fetch)
    assert not [k for k in s3_location.files(url) if k.startswith(("executions/", "_meta/"))]
    # And the other writer's lease is left alone.
    assert orjson.loads(s3_location.client.get_object(Bucket=bucket, Key=_lease_key(cache, rid))["Body"].read())[
        "host"
    ] == ("elsewhere")


def test_an_unsupported_object_store_is_a_clear_error() -> None:
    with pytest.raises(CacheError, match=r"gs:// is not supported"):
        ExecutionCache("gs://bucket/history")
    with pytest.raises(CacheError, match="no bucket"):
        ExecutionCache("s3:///history")


def test_polars_and_pyarrow_read_the_history_on_s3_as_it_lies(
    s3_location: Location, s3_endpoint: str, workload: Workload, sim_now: pd.Timestamp
) -> None:
    import polars as pl
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    url = s3_location.url("engines")
    start, end = sim_now - 2 * D, sim_now
    for rid in workload.resource_rids:
        table = _table(workload, rid, start, end)
        ExecutionCache(url, clock=lambda: end + D).load(
            rid, start, end, source="127.0.0.1:1", fetch=lambda s, t=table: t
        )
    ours = ExecutionCache(url).read(workload.resource_rids)
    options = {
        "aws_endpoint_url": s3_endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    via_polars = pl.scan_parquet(f"{url}/executions/", storage_options=options, hive_partitioning=True).collect()
    fs = pafs.S3FileSystem(
        endpoint_override=s3_endpoint, access_key="testing", secret_key="testing", region="us-east-1", scheme="http"
    )
    via_arrow = ds.dataset(
        url.removeprefix("s3://") + "/executions", filesystem=fs, format="parquet", partitioning="hive"
    ).to_table()
    for other in (via_polars.to_pandas(), via_arrow.to_pandas()):
        assert set(other["resource"].astype(str)) == set(workload.resource_rids)
        assert_same_rows(other[list(COLUMNS)], ours)


def test_a_lease_outlives_its_period_while_its_writer_works(
    s3_location: Location, workload: Workload, sim_now: pd.Timestamp
) -> None:
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    url = s3_location.url("heartbeat")
    # Renewed every third of its period: a fetch that takes longer than the period must not lose it. Half a
    # second leaves each renewal (a conditional PUT to the loopback server) ~170 ms even on a loaded machine;
    # at 60 ms a renewal delayed by load could let the lease lapse and the test fail for the wrong reason.
    lease_s = 0.5
    cache = ExecutionCache(url, clock=lambda: sim_now, storage_options={"lease_s": lease_s})
    other = ExecutionCache(url, lock_timeout=0.0, clock=lambda: sim_now, storage_options={"lease_s": lease_s})
    bucket = url.removeprefix("s3://").split("/")[0]
    table = _table(workload, rid, start, end)

    def lease() -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(
            s3_location.client.get_object(Bucket=bucket, Key=_lease_key(cache, rid))["Body"].read()
        )
        return doc

    def long_fetch(stretches: Any) -> pa.Table:
        first = lease()["expires"]
        # Wait (polling, a few ms at a time) until the first expiry has passed: the lease was renewed meanwhile.
        deadline = time.monotonic() + 30
        while time.time_ns() // 1_000_000 <= first + 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert lease()["expires"] > first
        with pytest.raises(CacheError, match="locked for resource"):  # still held: not taken over
            other.load(rid, start, end, source="127.0.0.1:1", fetch=lambda s: table)
        return table

    got = cache.load(rid, start, end, source="127.0.0.1:1", fetch=long_fetch)
    assert len(got.frame) == table.num_rows
    assert "_locks" not in {k.split("/")[0] for k in s3_location.files(url)}


def test_a_bucket_without_a_prefix_lists_every_object(s3_location: Location) -> None:
    bucket = s3_location.base.removeprefix("s3://").partition("/")[0]
    root = S3Storage(f"s3://{bucket}")
    root.write("executions/resource=ri.a/date=2026-11-01/part-0.parquet", b"x")
    root.write("top.json", b"{}")
    assert root.list("") == ["executions/resource=ri.a/date=2026-11-01/part-0.parquet", "top.json"]
    assert root.list("executions") == ["executions/resource=ri.a/date=2026-11-01/part-0.parquet"]
