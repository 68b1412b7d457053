"""The Parquet history: request counts against the simulator, late completions, filters, reads, housekeeping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_loader import assert_same_rows

from exec_analytics import CacheError, ExecutionCache, load_executions
from exec_analytics import filters as F
from exec_analytics.cache import FORMAT_VERSION
from exec_analytics.cache.intervals import intersect, normalise, subtract
from exec_analytics.cache.manifest import Manifest
from exec_analytics.cache.tables import filter_mask
from exec_analytics.cli import main
from exec_analytics.client import FoundryClient
from exec_analytics.schema import COLUMNS
from exec_analytics.simulator import SimulatorServer, Workload

if TYPE_CHECKING:
    from objstore import Location

#: The ``location`` fixture: the exactness tests run on a local directory and on S3.
pytest_plugins = ("objstore",)

H = pd.Timedelta(hours=1)
D = pd.Timedelta(days=1)


class RecordingClient(FoundryClient):
    """A real HTTP client that also notes the window of every first-page request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.windows: list[tuple[str, pd.Timestamp, pd.Timestamp]] = []
        self._lock = threading.Lock()

    def list_executions_page(self, resource_rid: str, **kw: Any) -> Any:
        with self._lock:
            self.windows.append((resource_rid, pd.Timestamp(kw["start"]), pd.Timestamp(kw["end"])))
        return super().list_executions_page(resource_rid, **kw)


def _client(srv: SimulatorServer) -> RecordingClient:
    return RecordingClient(hostname=srv.url, token=srv.token, backoff_base=0.005, backoff_cap=0.05)


def _truth(wl: Workload, rids: list[str], start: pd.Timestamp, end: pd.Timestamp, **kw: Any) -> pd.DataFrame:
    return pd.concat([wl.ground_truth(r, start, end, **kw) for r in rids], ignore_index=True)


@pytest.fixture
def anywhere(make_sim: Callable[..., SimulatorServer], location: Location) -> tuple[SimulatorServer, ExecutionCache]:
    """As ``clocked``, with the history in a local directory and on S3 (the exactness tests run on both)."""
    srv = make_sim()
    return srv, ExecutionCache(location.url("history"), clock=srv.clock.now)


@pytest.fixture
def clocked(make_sim: Callable[..., SimulatorServer], tmp_path: Path) -> tuple[SimulatorServer, ExecutionCache]:
    """A server of the test's own and a cache that tells time by the server's (frozen, movable) clock."""
    srv = make_sim()
    return srv, ExecutionCache(tmp_path / "history", clock=srv.clock.now)


# --------------------------------------------------------------------------------------------------------
# The acceptance scenarios: request counting and late completions
# --------------------------------------------------------------------------------------------------------


def test_a_settled_week_is_served_with_zero_requests(
    anywhere: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = anywhere
    rids = workload.resource_rids
    start, end = sim_now - 8 * D, sim_now - D  # ends a day before "now": settled from the first read
    with _client(srv) as client:
        first = load_executions(rids, start, end, client=client, cache=cache, progress=False)
        assert first.attrs["requests"] > 100
        before = srv.request_count
        second = load_executions(rids, start, end, client=client, cache=cache, progress=False)
    assert srv.request_count == before and second.attrs["requests"] == 0
    assert second.attrs["cache"]["fetched"] == []
    truth = _truth(workload, rids, start, end, as_of=srv.clock.now())
    assert_same_rows(first, truth)
    assert_same_rows(second, truth)
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))


def test_a_settled_window_needs_no_client_at_all(
    anywhere: tuple[SimulatorServer, ExecutionCache],
    workload: Workload,
    sim_now: pd.Timestamp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv, cache = anywhere
    rid = workload.resource_rids[2]
    start, end = sim_now - 3 * D, sim_now - D
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
    # Offline: no hostname, no token. A fully settled window must not even try to build a client.
    for name in ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    df = load_executions(rid, start, end, cache=cache, progress=False)
    assert_same_rows(df, workload.ground_truth(rid, start, end, as_of=srv.clock.now()))


def test_extending_by_a_day_fetches_that_day_and_the_provisional_edge_only(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rids = workload.resource_rids
    lag = cache.settle_lag
    with _client(srv) as client:
        first = load_executions(rids, sim_now - 7 * D, sim_now, client=client, cache=cache, progress=False)
        srv.clock.advance(D)
        client.windows.clear()
        second = load_executions(rids, sim_now - 7 * D, sim_now + D, client=client, cache=cache, progress=False)
    edge = sim_now - lag
    assert sorted(second.attrs["cache"]["fetched"]) == sorted(
        [rid, edge.isoformat(), (sim_now + D).isoformat()] for rid in rids
    )
    assert client.windows, "nothing was requested"
    assert all(edge <= s and e <= sim_now + D for _, s, e in client.windows)
    # One day and two hours out of eight days: far fewer requests than the first load.
    assert second.attrs["requests"] * 4 < first.attrs["requests"]
    assert_same_rows(second, _truth(workload, rids, sim_now - 7 * D, sim_now + D, as_of=srv.clock.now()))


def test_executions_completing_after_a_load_appear_after_the_next_refresh(
    anywhere: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = anywhere
    rids = workload.resource_rids
    # A moment when two slow executions are running (found from the workload's hidden end times).
    now = sim_now - pd.Timedelta(hours=11.5)
    srv.clock.set(now)
    start, end = now - D, now
    with _client(srv) as client:
        first = load_executions(rids, start, end, client=client, cache=cache, progress=False)
        srv.clock.advance(15 * 60)  # 15 minutes later: the slow executions that were running have finished
        later = srv.clock.now()
        client.windows.clear()
        second = load_executions(rids, start, end, client=client, cache=cache, progress=False)
    before = _truth(workload, rids, start, end, as_of=now)
    after = _truth(workload, rids, start, end, as_of=later)
    late = set(after["foundry_trace_id"]) - set(before["foundry_trace_id"])
    assert late, "no execution completed late inside the window: the test would prove nothing"
    assert late.isdisjoint(first["foundry_trace_id"])
    assert late <= set(second["foundry_trace_id"])
    assert_same_rows(first, before)
    assert_same_rows(second, after)  # replaced, not duplicated
    assert client.windows and all(s >= now - cache.settle_lag for _, s, _ in client.windows)
    assert_same_rows(cache.read(rids, start, end), after)


def test_refresh_fetches_the_whole_window_again(
    anywhere: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = anywhere
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
        again = load_executions(rid, start, end, client=client, cache=cache, refresh=True, progress=False)
    assert again.attrs["cache"]["fetched"] == [[rid, start.isoformat(), end.isoformat()]]
    assert again.attrs["requests"] > 0
    assert_same_rows(again, workload.ground_truth(rid, start, end, as_of=sim_now))


def test_cache_false_leaves_no_trace(
    fresh_sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp, tmp_path: Path, _own_cache_dir: Path
) -> None:
    with _client(fresh_sim) as client:
        df = load_executions(
            workload.resource_rids[2], sim_now - D, sim_now, client=client, cache=False, progress=False
        )
    assert "cache" not in df.attrs
    assert not any(_own_cache_dir.iterdir())


def test_the_default_cache_is_the_settings_directory(
    fresh_sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp, _own_cache_dir: Path
) -> None:
    with _client(fresh_sim) as client:
        df = load_executions(workload.resource_rids[2], sim_now - 2 * D, sim_now - D, client=client, progress=False)
    assert Path(df.attrs["cache"]["path"]) == _own_cache_dir
    assert ExecutionCache().resources() == [workload.resource_rids[2]]


def test_the_default_directory_follows_each_platforms_convention(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from exec_analytics.config import default_cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("sys.platform", "darwin")
    # macOS keeps caches in ~/Library/Caches, not in the XDG directory (which it does not use).
    assert (
        default_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        == tmp_path / "Library" / "Caches" / "exec_analytics"
    )
    monkeypatch.setattr("sys.platform", "linux")
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "xdg")}) == tmp_path / "xdg" / "exec_analytics"
    assert default_cache_dir({}) == tmp_path / ".cache" / "exec_analytics"


@pytest.mark.parametrize("bad", [1, object(), True])
def test_bad_cache_arguments_are_rejected_before_any_request(
    bad: object, sim: SimulatorServer, workload: Workload
) -> None:
    before = sim.request_count
    with _client(sim) as client, pytest.raises(TypeError, match="cache must be"):
        load_executions(
            workload.resource_rids[0],
            "2026-11-18T00:00Z",
            "2026-11-19T00:00Z",
            client=client,
            cache=bad,
            progress=False,
        )
    assert sim.request_count == before


# --------------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------------

LOCAL_FILTERS = {
    "status": F.status("FAILED"),
    "compound": (F.status("FAILED") | F.failure_reason("timeout")) & ~F.is_null("callerRid"),
    "version_in": {"type": "in", "field": "resourceVersion", "value": ["1.0.0", "2.3.1", "no-such"]},
    "empty_or": {"type": "or", "filters": []},
}


@pytest.mark.parametrize("name", list(LOCAL_FILTERS))
def test_a_column_filter_is_answered_from_the_history_without_requests(
    name: str, clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rids = workload.resource_rids
    start, end = sim_now - 3 * D, sim_now - D
    where = LOCAL_FILTERS[name]
    raw = where if isinstance(where, dict) else where.to_dict()
    with _client(srv) as client:
        load_executions(rids, start, end, client=client, cache=cache, progress=False)
        before = srv.request_count
        df = load_executions(rids, start, end, where=where, client=client, cache=cache, progress=False)
    assert srv.request_count == before
    assert df.attrs["where"] == raw
    assert_same_rows(df, _truth(workload, rids, start, end, as_of=sim_now, where=raw))
    assert not (cache.path / "filtered").exists()


def test_a_column_filter_beyond_the_history_fetches_only_the_rest_with_the_filter(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[0]
    where = F.status("FAILED")
    with _client(srv) as client:
        load_executions(rid, sim_now - 3 * D, sim_now - 2 * D, client=client, cache=cache, progress=False)
        client.windows.clear()
        df = load_executions(rid, sim_now - 3 * D, sim_now - D, where=where, client=client, cache=cache, progress=False)
        assert all(s >= sim_now - 2 * D for _, s, _ in client.windows)
        before = srv.request_count
        again = load_executions(
            rid, sim_now - 3 * D, sim_now - D, where=where, client=client, cache=cache, progress=False
        )
    assert srv.request_count == before
    truth = workload.ground_truth(rid, sim_now - 3 * D, sim_now - D, as_of=sim_now, where=where.to_dict())
    assert_same_rows(df, truth)
    assert_same_rows(again, truth)
    # The filtered day lives apart: the history still holds only the unfiltered first day.
    assert_same_rows(cache.read(rid), workload.ground_truth(rid, sim_now - 3 * D, sim_now - 2 * D))


def test_a_duration_filter_is_kept_apart_from_the_history(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[1]
    start, end = sim_now - 2 * D, sim_now - D
    slow = F.duration_at_least(30, "SECONDS")
    with _client(srv) as client:
        history = load_executions(rid, start, end, client=client, cache=cache, progress=False)
        first = load_executions(rid, start, end, where=slow, client=client, cache=cache, progress=False)
        before = srv.request_count
        second = load_executions(rid, start, end, where=slow, client=client, cache=cache, progress=False)
    # Never answered from the history: the server's rounding of durations is not known.
    assert first.attrs["requests"] > 0 and srv.request_count == before
    truth = workload.ground_truth(rid, start, end, as_of=sim_now, where=slow.to_dict())
    assert 0 < len(truth) < len(history)
    assert_same_rows(first, truth)
    assert_same_rows(second, truth)
    assert_same_rows(cache.read(rid, start, end, where=slow), truth)
    assert_same_rows(cache.read(rid, start, end), history)
    filtered = list((cache.path / "filtered").iterdir())
    assert len(filtered) == 1
    # The filter lives beside the data tree, which holds Parquet files only.
    meta = cache.path / "_meta" / "filtered" / filtered[0].name / "_filter.json"
    assert orjson.loads(meta.read_bytes())["where"] == slow.to_dict()
    assert {p.suffix for p in filtered[0].rglob("*") if p.is_file()} == {".parquet"}
    info = cache.info()
    assert sorted(info["filter"].fillna("")) == ["", orjson.dumps(slow.to_dict(), option=orjson.OPT_SORT_KEYS).decode()]


def test_local_filter_mask_matches_the_simulator(workload: Workload, sim_now: pd.Timestamp) -> None:
    rid = workload.resource_rids[0]
    truth = workload.ground_truth(rid, sim_now - D, sim_now)
    table = pa.Table.from_pandas(truth[[c for c in COLUMNS]], preserve_index=False)
    for where in [
        *[w if isinstance(w, dict) else w.to_dict() for w in LOCAL_FILTERS.values()],
        {"type": "isNull", "field": "callerRid"},
        {"type": "and", "filters": []},
        {"type": "eq", "field": "foundryTraceId", "value": truth["foundry_trace_id"].iloc[3]},
        {"type": "in", "field": "traceOwningRid", "value": [truth["trace_owning_rid"].iloc[0]]},
    ]:
        mask = filter_mask(table, where).to_numpy(zero_copy_only=False)
        expected = workload.ground_truth(rid, sim_now - D, sim_now, where=where)
        assert sorted(truth["foundry_trace_id"][mask]) == sorted(expected["foundry_trace_id"]), where


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


def _synthetic_history(
    cache: ExecutionCache, wl: Workload, rid: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Fill the cache straight from the ground truth (no HTTP): a long history in a fraction of a second."""
    truth = wl.ground_truth(rid, start, end)
    table = pa.Table.from_pandas(truth[list(COLUMNS)], preserve_index=False)
    ExecutionCache(cache.path, clock=lambda: end + D).load(
        rid, start, end, source="127.0.0.1:1", fetch=lambda stretches: table
    )
    return truth


def test_reading_one_day_of_ninety_never_opens_the_other_eighty_nine(
    tmp_path: Path, workload: Workload, sim_now: pd.Timestamp
) -> None:
    cache = ExecutionCache(tmp_path / "h")
    rid = workload.resource_rids[2]
    truth = _synthetic_history(cache, workload, rid, sim_now - 90 * D, sim_now)
    files = sorted(cache.path.glob("executions/*/date=*/*.parquet"))
    assert len(files) == 90
    day = sim_now - 40 * D
    keep = cache.path / "executions" / f"resource={rid}" / f"date={day:%Y-%m-%d}" / "part-0.parquet"
    for f in files:
        if f != keep:
            f.write_bytes(b"not parquet")  # any read of these would fail
    got = cache.read(rid, day + 3 * H, day + 9 * H)
    want = truth[(truth["start_time"] >= day + 3 * H) & (truth["start_time"] < day + 9 * H)]
    assert len(want) > 0
    assert_same_rows(got, want)
    with pytest.raises(CacheError, match="cannot read"):
        cache.read(rid)


def test_read_columns_dtypes_and_order(tmp_path: Path, workload: Workload, sim_now: pd.Timestamp) -> None:
    cache = ExecutionCache(tmp_path / "h")
    rids = workload.resource_rids[1:]
    truths = [_synthetic_history(cache, workload, rid, sim_now - 3 * D, sim_now) for rid in rids]
    df = cache.read(rids)
    assert list(df.columns) == list(COLUMNS)
    assert df["start_time"].is_monotonic_increasing and df["resource_version"].cat.ordered
    assert {c: str(t) for c, t in df.dtypes.items()}["start_time"] == "datetime64[ms, UTC]"
    assert_same_rows(df, pd.concat(truths))
    some = cache.read(rids, sim_now - D, sim_now, columns=["duration_s", "status"])
    assert list(some.columns) == ["duration_s", "status"] and str(some["status"].dtype) == "category"
    assert len(some) == sum(int((t["start_time"] >= sim_now - D).sum()) for t in truths)
    with pytest.raises(ValueError, match="unknown 'colour'"):
        cache.read(rids, columns=["colour"])
    empty = ExecutionCache(tmp_path / "nothing").read(rids[0], sim_now - D, sim_now)
    assert empty.empty and list(empty.columns) == list(COLUMNS)


# --------------------------------------------------------------------------------------------------------
# Housekeeping, formats, sources, locks, secrets
# --------------------------------------------------------------------------------------------------------


def test_info_and_prune(location: Location, workload: Workload, sim_now: pd.Timestamp) -> None:
    cache = ExecutionCache(location.url("h"))
    rids = workload.resource_rids[1:]
    for rid in rids:
        _synthetic_history(cache, workload, rid, sim_now - 5 * D, sim_now)
    info = cache.info().set_index("resource_rid")
    assert sorted(info.index) == sorted(rids)
    for rid in rids:
        assert info.loc[rid, "rows"] == len(cache.read(rid)) and info.loc[rid, "files"] == 5
        assert info.loc[rid, "first"] == sim_now - 5 * D and info.loc[rid, "last"] == sim_now
        files = [k for k in location.files(location.url("h")) if k.startswith(f"executions/resource={rid}/")]
        assert len(files) == 5
        assert info.loc[rid, "bytes"] == sum(len(cache.storage.read(k) or b"") for k in files)
    removed = cache.prune(f"{sim_now - 2 * D:%Y-%m-%d}", resource_rid=rids[0])
    assert list(removed["date"]) == [f"{sim_now - k * D:%Y-%m-%d}" for k in (5, 4, 3)]
    left = [k for k in location.files(location.url("h")) if k.startswith(f"executions/resource={rids[0]}/")]
    assert sorted(k.split("/")[2] for k in left) == [f"date={sim_now - k * D:%Y-%m-%d}" for k in (2, 1)]
    assert cache.read(rids[0])["start_time"].min() >= sim_now - 2 * D
    assert cache.coverage(rids[0])["start"].min() == sim_now - 2 * D
    assert cache.info().set_index("resource_rid").loc[rids[1], "files"] == 5  # the other resource is untouched


def test_prune_trims_coverage_before_deleting_files(
    tmp_path: Path, workload: Workload, sim_now: pd.Timestamp, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ExecutionCache(tmp_path / "h")
    rid = workload.resource_rids[2]
    _synthetic_history(cache, workload, rid, sim_now - 3 * D, sim_now)
    from exec_analytics.cache.storage import LocalStorage

    def crash(self: Any, key: str) -> None:
        raise KeyboardInterrupt("simulated crash while deleting")

    monkeypatch.setattr(LocalStorage, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        cache.prune(sim_now - D)
    # The manifest no longer claims the days, though their files are still there: they would be fetched again.
    assert cache.coverage(rid)["start"].min() == sim_now - D
    assert len(cache.read(rid)) > 0


def test_manifest_merges_coverage_and_keeps_it_compact() -> None:
    m = Manifest("ri.x.main.function.1", None)
    lag = 10
    now = 10_000  # after every fetch: nothing is in the future
    m.record([(0, 100)], fetched_at=100, lag_ms=lag)
    assert m.settled(lag, now) == [(0, 90)]
    m.record([(90, 200)], fetched_at=200, lag_ms=lag)
    assert m.settled(lag, now) == [(0, 190)]
    m.record([(190, 300)], fetched_at=400, lag_ms=lag)  # all settled: joined into one stretch
    assert [(e.start, e.end) for e in m.entries] == [(0, 300)] and m.settled(lag, now) == [(0, 300)]
    m.record([(500, 600)], fetched_at=605, lag_ms=lag)
    assert m.covered() == [(0, 300), (500, 600)] and m.settled(lag, now) == [(0, 300), (500, 595)]
    m.trim_before(250)
    assert m.covered() == [(250, 300), (500, 600)]
    assert Manifest.from_json(m.to_json(), Path("x")).entries == m.entries


def test_interval_arithmetic() -> None:
    assert normalise([(5, 7), (0, 2), (2, 3), (9, 9)]) == [(0, 3), (5, 7)]
    assert subtract([(0, 10)], [(2, 3), (5, 20)]) == [(0, 2), (3, 5)]
    assert intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]


def test_another_format_version_is_reported_not_mixed(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    start, end = sim_now - 2 * D, sim_now - D
    with _client(srv) as client:
        load_executions(rid, start, end, client=client, cache=cache, progress=False)
        part = next(cache.path.glob("executions/*/date=*/*.parquet"))
        table = pq.read_table(part)
        pq.write_table(table.replace_schema_metadata({b"exec_analytics.cache_format": b"0"}), part)
        with pytest.raises(CacheError, match=r"cache format 0.*reads format 2"):
            cache.read(rid)
        with pytest.raises(CacheError, match=str(part)):
            load_executions(rid, start, end, client=client, cache=cache, progress=False)
        (cache.path / "_cache.json").write_bytes(orjson.dumps({"format_version": FORMAT_VERSION + 1}))
        with pytest.raises(CacheError, match="newer exec_analytics"):
            load_executions(rid, start, end, client=client, cache=ExecutionCache(cache.path), progress=False)


def test_one_resource_never_mixes_two_foundry_hosts(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    with _client(srv) as client:
        load_executions(rid, sim_now - 2 * D, sim_now - D, client=client, cache=cache, progress=False)
    before = srv.request_count
    with (
        FoundryClient(hostname=f"http://localhost:{srv.port}", token=srv.token) as other,
        pytest.raises(CacheError, match=r"fetched from 127\.0\.0\.1.*from localhost"),
    ):
        load_executions(rid, sim_now - 3 * D, sim_now - D, client=other, cache=cache, progress=False)
    assert srv.request_count == before


def test_a_second_writer_waits_then_fails_clearly(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[2]
    impatient = ExecutionCache(cache.path, lock_timeout=0.3, clock=srv.clock.now)

    class Abort(Exception):
        pass

    def meanwhile(stretches: Any) -> None:
        # Runs while `cache` holds the resource's lock: a second writer must wait, then fail clearly.
        with _client(srv) as client, pytest.raises(CacheError, match=r"locked .* by another.*pid"):
            load_executions(rid, sim_now - 2 * D, sim_now - D, client=client, cache=impatient, progress=False)
        raise Abort  # and this load fails too, so it records nothing

    with pytest.raises(Abort):
        cache.load(rid, sim_now - 2 * D, sim_now - D, fetch=meanwhile)
    assert cache.coverage(rid).empty
    # Released: the same load now goes through.
    with _client(srv) as client:
        df = load_executions(rid, sim_now - 2 * D, sim_now - D, client=client, cache=impatient, progress=False)
    assert len(df) > 0


def test_the_token_is_never_written_to_the_cache(
    clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = clocked
    rids = workload.resource_rids
    with _client(srv) as client:
        load_executions(rids, sim_now - D, sim_now, client=client, cache=cache, progress=False)
        load_executions(
            rids,
            sim_now - D,
            sim_now,
            where=F.duration_at_least(1, "SECONDS"),
            client=client,
            cache=cache,
            progress=False,
        )
    files = [p for p in cache.path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and "_meta" in p.parts for p in files) and any(p.suffix == ".parquet" for p in files)
    for p in files:
        assert srv.token.encode() not in p.read_bytes(), p


def test_an_empty_window_is_remembered(clocked: tuple[SimulatorServer, ExecutionCache], workload: Workload) -> None:
    srv, cache = clocked
    rid = workload.resource_rids[0]
    with _client(srv) as client:
        first = load_executions(
            rid, "2020-01-01T00:00Z", "2020-01-02T00:00Z", client=client, cache=cache, progress=False
        )
        before = srv.request_count
        second = load_executions(
            rid, "2020-01-01T00:00Z", "2020-01-02T00:00Z", client=client, cache=cache, progress=False
        )
    assert first.empty and second.empty and srv.request_count == before
    assert list(second.columns) == list(COLUMNS)


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


def test_cli_fetch_uses_the_cache_and_cache_commands_show_and_prune_it(
    sim: SimulatorServer,
    workload: Workload,
    sim_now: pd.Timestamp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FOUNDRY_HOSTNAME", sim.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", sim.token)
    rid = workload.resource_rids[2]
    window = ["--start", "2026-11-17T00:00Z", "--end", "2026-11-19T00:00Z"]
    cache_dir = tmp_path / "history"
    args = ["fetch", rid, *window, "--cache-dir", str(cache_dir), "--no-progress"]
    assert main(args) == 0
    assert "1 stretch(es) fetched" in capsys.readouterr().out
    out = tmp_path / "x.parquet"
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    truth = workload.ground_truth(rid, "2026-11-17T00:00Z", "2026-11-19T00:00Z", as_of=sim_now)
    assert f"wrote {len(truth):,} executions to {out}" in text
    assert_same_rows(pd.read_parquet(out), truth)

    assert main([*args, "--refresh"]) == 0
    assert "1 stretch(es) fetched" in capsys.readouterr().out

    assert main(["cache", "info", "--cache-dir", str(cache_dir)]) == 0
    text = capsys.readouterr().out
    assert rid in text and f"{len(truth):,}" in text and "2026-11-17T00:00Z → 2026-11-19T00:00Z" in text

    assert main(["cache", "prune", "--before", "2026-11-18", "--cache-dir", str(cache_dir)]) == 0
    assert "removed 1 day partition(s)" in capsys.readouterr().out
    assert ExecutionCache(cache_dir).read(rid)["start_time"].min() >= pd.Timestamp("2026-11-18T00:00Z")

    nocache = tmp_path / "untouched"
    monkeypatch.setenv("EXEC_ANALYTICS_CACHE_DIR", str(nocache))
    assert main(["fetch", rid, *window, "--no-cache", "--out", str(out), "--no-progress"]) == 0
    assert not nocache.exists()
    assert main(["fetch", rid, *window, "--no-cache", "--no-progress"]) == 2
    assert "--no-cache needs --out" in capsys.readouterr().err
    assert main(["cache", "info"]) == 0
    assert "empty" in capsys.readouterr().out


def test_cli_reports_a_cache_error_with_its_own_exit_code(
    sim: SimulatorServer,
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FOUNDRY_HOSTNAME", sim.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", sim.token)
    cache_dir = tmp_path / "h"
    cache_dir.mkdir()
    (cache_dir / "_cache.json").write_bytes(orjson.dumps({"format_version": 99}))
    code = main(
        [
            "fetch",
            workload.resource_rids[0],
            "--start",
            "2026-11-18T00:00Z",
            "--end",
            "2026-11-18T01:00Z",
            "--cache-dir",
            str(cache_dir),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 9 and "newer exec_analytics" in err and err.count("\n") == 1


def test_only_the_gaps_between_stored_stretches_are_fetched(
    anywhere: tuple[SimulatorServer, ExecutionCache], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv, cache = anywhere
    rid = workload.resource_rids[1]
    day = [sim_now - k * D for k in range(7, 0, -1)]  # day[0] = now - 7 d ... day[6] = now - 1 d
    with _client(srv) as client:
        load_executions(rid, day[1], day[2], client=client, cache=cache, progress=False)
        load_executions(rid, day[4], day[5], client=client, cache=cache, progress=False)
        client.windows.clear()
        df = load_executions(rid, day[0], day[6], client=client, cache=cache, progress=False)
    gaps = [(day[0], day[1]), (day[2], day[4]), (day[5], day[6])]
    assert df.attrs["cache"]["fetched"] == [[rid, a.isoformat(), b.isoformat()] for a, b in gaps]
    assert all(any(a <= s and e <= b for a, b in gaps) for _, s, e in client.windows)
    assert_same_rows(df, workload.ground_truth(rid, day[0], day[6], as_of=sim_now))
    assert list(cache.coverage(rid)["start"]) == [day[0]] and list(cache.coverage(rid)["end"]) == [day[6]]


def test_a_plain_path_works_as_the_cache(
    fresh_sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp, tmp_path: Path
) -> None:
    rid = workload.resource_rids[2]
    with _client(fresh_sim) as client:
        df = load_executions(
            rid, sim_now - 2 * D, sim_now - D, client=client, cache=str(tmp_path / "p"), progress=False
        )
    assert df.attrs["cache"]["path"] == str(tmp_path / "p")
    assert_same_rows(ExecutionCache(tmp_path / "p").read(rid), df)


def test_fields_the_api_added_survive_the_round_trip(tmp_path: Path) -> None:
    from exec_analytics.decode import decode_pages

    rid = "ri.function-registry.main.function.abc"
    body = orjson.dumps(
        {
            "data": [
                {
                    "startTime": "2026-11-18T12:00:00.000Z",
                    "duration": {"value": 5, "unit": "SECONDS"},
                    "status": "FAILED",
                    "resourceRid": rid,
                    "resourceVersion": "1.0.0",
                    "traceOwningRid": rid,
                    "foundryTraceId": "t-1",
                    "retries": 2,
                },
                {
                    "startTime": "2026-11-18T13:00:00.000Z",
                    "duration": {"value": 7, "unit": "SECONDS"},
                    "status": "SUCCEEDED",
                    "resourceRid": rid,
                    "resourceVersion": "1.0.0",
                    "traceOwningRid": rid,
                    "foundryTraceId": "t-2",
                },
            ]
        }
    )
    with pytest.warns(UserWarning, match="retries"):
        table = decode_pages([body])
    cache = ExecutionCache(tmp_path / "h")
    start, end = pd.Timestamp("2026-11-18T00:00Z"), pd.Timestamp("2026-11-19T00:00Z")
    ExecutionCache(cache.path, clock=lambda: end + D).load(rid, start, end, source=None, fetch=lambda s: table)
    df = cache.read(rid)
    assert list(df["extra"]) == ['{"retries":2}', pd.NA]
    assert "extra" not in cache.read(rid, start + 13 * H, end).columns  # no row there has any


def test_an_unusable_default_directory_loads_without_the_cache(
    fresh_sim: SimulatorServer,
    workload: Workload,
    sim_now: pd.Timestamp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EXEC_ANALYTICS_CACHE_DIR", str(blocker / "cache"))
    rid = workload.resource_rids[2]
    with _client(fresh_sim) as client:
        with pytest.warns(RuntimeWarning, match="cannot be used.*loading without the cache"):
            df = load_executions(rid, sim_now - 2 * D, sim_now - D, client=client, progress=False)
        assert "cache" not in df.attrs
        assert_same_rows(df, workload.ground_truth(rid, sim_now - 2 * D, sim_now - D))
        # Passed explicitly, the same directory is an error, not a silent bypass.
        with pytest.raises(OSError):
            load_executions(rid, sim_now - 2 * D, sim_now - D, client=client, cache=blocker / "cache", progress=False)
