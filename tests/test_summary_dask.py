"""The Dask engine on a real ``distributed`` LocalCluster (2 worker processes, 1 thread each): the summary it
builds from the history as it lies on disk equals the pandas engine's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import datasketches
import distributed
import numpy as np
import pandas as pd
import pytest
from _summary_data import exact_rank_span, load_history

from exec_analytics.analysis import duration_percentiles, failure_rate
from exec_analytics.summary import from_frame, on_dask

if TYPE_CHECKING:
    from objstore import Location

pytest_plugins = ("objstore",)


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dask_builds_the_pandas_summary(client: distributed.Client, tmp_path: Path) -> None:
    rows, history = load_history(tmp_path)
    want = from_frame(rows, freq="1D")
    got = on_dask.build(history, freq="1D", fan_in=2)
    assert len(client.scheduler_info()["workers"]) == 2
    pd.testing.assert_frame_equal(got.counts, want.counts)
    pd.testing.assert_frame_equal(got.sketches.drop(columns="sketch"), want.sketches.drop(columns="sketch"))
    pd.testing.assert_frame_equal(failure_rate(got, by="resource_version", freq="1D"),
                                  failure_rate(rows, by="resource_version", freq="1D"))  # fmt: skip
    eps = got.rank_error()
    pct = duration_percentiles(got, by="resource_rid", q=(0.5, 0.95))
    for _, row in pct.iterrows():
        values = rows.loc[rows["resource_rid"].eq(row["resource_rid"]).to_numpy(dtype=bool), "duration_s"].to_numpy()
        for q, name in ((0.5, "p50"), (0.95, "p95")):
            below, at = exact_rank_span(values, row[name])
            assert below - eps <= q <= at + eps
    # Every partial summary crossed a process boundary as bytes and still merges with a local one.
    merged = got + from_frame(rows.iloc[:10], freq="1D")
    assert merged.counts["executions"].sum() == len(rows) + 10
    one = datasketches.kll_doubles_sketch.deserialize(merged.sketches["sketch"].iloc[0])
    assert one.n == merged.sketches["durations"].iloc[0] and np.isfinite(one.get_quantile(0.5))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_dask_reads_a_history_on_s3(client: distributed.Client, s3_location: Location, s3_endpoint: str,
                                    tmp_path: Path) -> None:  # fmt: skip
    rows, remote = load_history(tmp_path, cache=s3_location.url("cache"))
    # The workers started before this test set the AWS variables: they reach the bucket through the options.
    options = {"endpoint_url": s3_endpoint, "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
               "region_name": "us-east-1"}  # fmt: skip
    got = on_dask.build(remote, freq="1D", storage_options=options, files_per_task=2, fan_in=2)
    want = from_frame(rows, freq="1D")
    pd.testing.assert_frame_equal(got.counts, want.counts)
    pd.testing.assert_frame_equal(got.sketches.drop(columns="sketch"), want.sketches.drop(columns="sketch"))
    with pytest.raises(ValueError, match="files_per_task"):
        on_dask.build(remote, storage_options=options, files_per_task=0)
