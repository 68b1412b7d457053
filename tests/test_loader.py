"""load_executions against the simulator over real HTTP: exact rows under every fault, and its guarantees."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pandas as pd
import pytest

from exec_analytics import filters as F
from exec_analytics import paging
from exec_analytics.client import FoundryClient
from exec_analytics.errors import ExecAnalyticsError, PermissionDeniedError, ResourceNotFoundError
from exec_analytics.loader import load_executions
from exec_analytics.schema import COLUMNS, DTYPES
from exec_analytics.simulator import FaultConfig, SimClock, SimulatorServer, Workload

DAYS = pd.Timedelta(days=1)
TRUTH_COLUMNS = [c for c in COLUMNS if c != "extra"]


def _client(srv: SimulatorServer, **kwargs: Any) -> FoundryClient:
    # Short back-off so that fault tests spend their time on requests, not on sleeping.
    kwargs = {"backoff_base": 0.005, "backoff_cap": 0.05, "max_attempts": 12, **kwargs}
    return FoundryClient(hostname=srv.url, token=srv.token, **kwargs)


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows as plain values, in one order, for exact comparison of a load with the ground truth."""
    out = pd.DataFrame({c: df[c].astype(object).where(df[c].notna(), None) for c in TRUTH_COLUMNS})
    out["start_time"] = pd.to_datetime(df["start_time"]).dt.as_unit("ms").astype("int64").to_numpy()
    out["duration_s"] = df["duration_s"].astype("float64").to_numpy()
    return out.sort_values(["start_time", "foundry_trace_id"], ignore_index=True)


def _truth(wl: Workload, rids: list[str], start: pd.Timestamp, end: pd.Timestamp, **kw: Any) -> pd.DataFrame:
    return pd.concat([wl.ground_truth(r, start, end, **kw) for r in rids], ignore_index=True)


def assert_same_rows(got: pd.DataFrame, truth: pd.DataFrame) -> None:
    assert got["foundry_trace_id"].is_unique, "duplicates in the result"
    # check_exact: durations in seconds must be exact, not merely close.
    pd.testing.assert_frame_equal(_canonical(got), _canonical(truth), check_dtype=False, check_exact=True)


FAULTS: dict[str, FaultConfig] = {
    "none": FaultConfig(),
    "429_retry_after": FaultConfig(seed=1, p_429_retry_after=0.2, retry_after_s=0.01),
    "429_without_retry_after": FaultConfig(seed=2, p_429=0.2),
    "503": FaultConfig(seed=3, p_503=0.2),
    "500": FaultConfig(seed=4, p_500=0.2),
    "dropped_connection": FaultConfig(seed=5, p_drop=0.15),
    "truncated_body": FaultConfig(seed=6, p_truncate=0.15),
    "slow_response": FaultConfig(seed=7, p_slow=0.1, slow_s=0.2),
    "fixed_latency": FaultConfig(latency_s=0.01),
    # Latency keeps requests in flight long enough to overlap, so the limit is exceeded on every run.
    "concurrency_limit": FaultConfig(max_concurrent=2, latency_s=0.01),
    "short_pages": FaultConfig(seed=8, short_pages=0.4),
    "unstable_tokens": FaultConfig(unstable_tokens=True),
    "everything": FaultConfig(
        seed=9,
        p_429_retry_after=0.03,
        retry_after_s=0.01,
        p_429=0.03,
        p_503=0.03,
        p_500=0.03,
        p_drop=0.03,
        p_truncate=0.03,
        short_pages=0.2,
        max_concurrent=4,
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_rows_equal_ground_truth_under_each_fault(
    fault: str, make_sim: Callable[..., SimulatorServer], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv = make_sim(faults=FAULTS[fault])
    rid = workload.resource_rids[1]  # mixes MILLISECONDS and SECONDS durations
    start, end = sim_now - 4 * DAYS, sim_now
    with _client(srv, read_timeout=0.15 if fault == "slow_response" else 60.0) as client:
        df = load_executions(rid, start, end, client=client, workers=8, progress=False)
        stats = client.stats
    truth = workload.ground_truth(rid, start, end, as_of=sim_now)
    assert len(truth) > 5_000 and set(truth["duration_unit"]) >= {"MILLISECONDS", "SECONDS"}
    assert_same_rows(df, truth)
    if fault not in ("none", "fixed_latency", "short_pages", "unstable_tokens"):
        assert stats["retries"] > 0, f"the {fault} fault never fired: the test would prove nothing"


def test_dtypes_and_provenance(sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp) -> None:
    rids = workload.resource_rids
    start, end = sim_now - DAYS, sim_now
    where = F.status("FAILED")
    with _client(sim) as client:
        df = load_executions(rids, start, end, where=where, client=client, progress=False)
    assert {c: str(t) for c, t in df.dtypes.items()} == {c: DTYPES[c] for c in df.columns}
    assert df["resource_version"].cat.ordered
    assert df["start_time"].is_monotonic_increasing
    assert df.attrs["resource_rids"] == rids
    assert pd.Timestamp(df.attrs["start"]) == start and pd.Timestamp(df.attrs["end"]) == end
    assert df.attrs["where"] == where.to_dict()
    assert df.attrs["source"] == sim.url
    assert df.attrs["pages"] >= 1 and df.attrs["requests"] >= df.attrs["pages"]
    assert_same_rows(df, _truth(workload, rids, start, end, as_of=sim_now, where=where.to_dict()))


def test_raw_dict_filter_equals_builder(sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp) -> None:
    rid = workload.resource_rids[0]
    start, end = sim_now - DAYS, sim_now
    raw = {
        "type": "and",
        "filters": [
            {"type": "gte", "field": "duration", "value": {"unit": "SECONDS", "value": 2}},
            {"type": "not", "filter": {"type": "isNull", "field": "callerRid"}},
        ],
    }
    with _client(sim) as client:
        df = load_executions(rid, start, end, where=raw, client=client, progress=False)
    truth = workload.ground_truth(rid, start, end, as_of=sim_now, where=raw)
    assert 0 < len(truth) < len(workload.ground_truth(rid, start, end, as_of=sim_now))
    assert_same_rows(df, truth)


def test_idle_workers_split_dense_slices(
    sim: SimulatorServer, workload: Workload, sim_now: pd.Timestamp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One initial slice per worker and resource: the quiet resource's slices finish at once, and the busy
    # one's must then be shared out with the idle workers.
    monkeypatch.setattr(paging, "_SLICES_PER_WORKER", 1)
    busy, quiet = workload.resource_rids[0], workload.resource_rids[2]
    start, end = sim_now - 2 * DAYS, sim_now
    with _client(sim) as client:
        # Small pages make the busy slices dense in pages, so what remains when workers fall idle is worth
        # sharing (a remainder is split only when it holds at least two pages per part).
        df = load_executions([busy, quiet], start, end, client=client, workers=4, progress=False, page_size=25)
    assert df.attrs["slice_splits"] > 0
    assert_same_rows(df, _truth(workload, [busy, quiet], start, end, as_of=sim_now))


def test_expired_page_tokens_restart_the_slice(
    make_sim: Callable[..., SimulatorServer], workload: Workload, sim_now: pd.Timestamp
) -> None:
    # Tokens live 15 ms and every request waits 20 ms before the server reads it: every token has expired by
    # then, so each slice advances one page per restart and must still end exact.
    srv = make_sim(page_token_ttl_s=0.015, faults=FaultConfig(latency_s=0.02))
    rid = workload.resource_rids[1]
    start, end = sim_now - 2 * DAYS, sim_now
    with _client(srv) as client:
        df = load_executions(rid, start, end, client=client, workers=4, progress=False)
    assert df.attrs["token_restarts"] > 0
    assert_same_rows(df, workload.ground_truth(rid, start, end, as_of=sim_now))


def test_throttling_pauses_every_worker(
    make_sim: Callable[..., SimulatorServer], workload: Workload, sim_now: pd.Timestamp
) -> None:
    srv = make_sim(faults=FaultConfig(max_concurrent=2, latency_s=0.005))
    rid = workload.resource_rids[0]
    start, end = sim_now - DAYS, sim_now
    with _client(srv) as client:
        df = load_executions(rid, start, end, client=client, workers=8, progress=False)
        assert client.gate.trips > 0 and client.gate.total_wait > 0
    assert_same_rows(df, workload.ground_truth(rid, start, end, as_of=sim_now))


def test_completions_during_paging_with_unstable_tokens(
    make_sim: Callable[..., SimulatorServer], workload: Workload, sim_now: pd.Timestamp
) -> None:
    """Executions complete while the window is read: nothing duplicated, nothing completed before lost."""
    srv = make_sim(faults=FaultConfig(unstable_tokens=True, latency_s=0.003))
    rid = workload.resource_rids[0]
    # The window reaches past "now", so executions start and complete at its newest end while it is paged,
    # shifting offset-based tokens: the case where the real API may return an execution twice.
    start, end = sim_now - pd.Timedelta(hours=6), sim_now + pd.Timedelta(hours=2)
    t0 = srv.clock.now()
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            srv.clock.advance(pd.Timedelta(seconds=20))
            time.sleep(0.005)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        with _client(srv) as client:
            df = load_executions(rid, start, end, client=client, workers=4, progress=False)
    finally:
        stop.set()
        ticker.join()
    t1 = srv.clock.now()
    before = set(workload.ground_truth(rid, start, end, as_of=t0)["foundry_trace_id"])
    after = set(workload.ground_truth(rid, start, end, as_of=t1)["foundry_trace_id"])
    got = df["foundry_trace_id"]
    assert t1 > t0 and len(after) > len(before), "no execution completed during the load"
    assert got.is_unique
    assert before <= set(got) <= after


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": "2026-11-18T00:00:00", "end": "2026-11-19T00:00Z"}, "no timezone"),
        ({"start": "2026-11-19T00:00Z", "end": "2026-11-18T00:00Z"}, "after start"),
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"workers": 0}, "workers"),
        ({"rid": "function-123"}, "not a Foundry RID"),
        ({"rid": []}, "non-empty"),
        ({"where": {"type": "gte", "field": "status", "value": "FAILED"}}, "does not allow 'gte'"),
        ({"where": {"type": "eq", "field": "colour", "value": "red"}}, "not filterable"),
    ],
)
def test_bad_arguments_are_rejected_before_any_request(
    kwargs: dict[str, Any], match: str, sim: SimulatorServer, workload: Workload
) -> None:
    args: dict[str, Any] = {"start": "2026-11-18T00:00Z", "end": "2026-11-19T00:00Z", **kwargs}
    rid = args.pop("rid", workload.resource_rids[0])
    before = sim.request_count
    with _client(sim) as client, pytest.raises((ValueError, TypeError), match=match):
        load_executions(rid, client=client, progress=False, **args)
    assert sim.request_count == before


def test_api_errors_reach_the_caller_typed(sim: SimulatorServer, workload: Workload) -> None:
    window = {"start": "2026-11-18T00:00Z", "end": "2026-11-19T00:00Z"}
    restricted = workload.restricted_rids[0]
    missing = "ri.function-registry.main.function.00000000-0000-0000-0000-000000000000"
    with _client(sim) as client:
        with pytest.raises(PermissionDeniedError) as denied:
            load_executions([workload.resource_rids[0], restricted], client=client, progress=False, **window)
        with pytest.raises(ResourceNotFoundError) as not_found:
            load_executions(missing, client=client, progress=False, **window)
    assert restricted in str(denied.value) and denied.value.error_instance_id in str(denied.value)
    assert missing in str(not_found.value) and not_found.value.error_instance_id in str(not_found.value)


def test_empty_window_gives_a_typed_empty_frame(sim: SimulatorServer, workload: Workload) -> None:
    with _client(sim) as client:
        df = load_executions(
            workload.resource_rids[0], "2020-01-01T00:00Z", "2020-01-01T00:00:00.001Z", client=client, progress=False
        )
    assert df.empty and list(df.columns) == [c for c in COLUMNS if c != "extra"]
    assert str(df["start_time"].dtype) == "datetime64[ms, UTC]"


def test_progress_bar_and_secrets_in_output(
    make_sim: Callable[..., SimulatorServer],
    workload: Workload,
    sim_now: pd.Timestamp,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    srv = make_sim(faults=FaultConfig(seed=3, p_503=0.2, p_500=0.1))
    caplog.set_level(logging.DEBUG)
    with _client(srv) as client:
        df = load_executions(workload.resource_rids[2], sim_now - 2 * DAYS, sim_now, client=client, progress=True)
        text = repr(client) + str(df.attrs)
    err = capsys.readouterr().err
    assert "100%" in err and f"{df.attrs['pages']:,} pages" in err
    assert caplog.records, "nothing was logged: the secrecy check would prove nothing"
    for blob in (err, caplog.text, text):
        assert srv.token not in blob


class _CyclingHandler(http.server.BaseHTTPRequestHandler):
    """A broken server that always answers the same page and the same next token."""

    protocol_version = "HTTP/1.1"
    body = orjson.dumps(
        {
            "data": [
                {
                    "startTime": "2026-11-18T12:00:00.000Z",
                    "duration": {"value": 5, "unit": "MILLISECONDS"},
                    "status": "SUCCEEDED",
                    "resourceRid": "ri.function-registry.main.function.abc",
                    "resourceVersion": "1.0.0",
                    "traceOwningRid": "ri.function-registry.main.function.abc",
                    "foundryTraceId": "t-1",
                }
            ],
            "nextPageToken": "v1.same",
        }
    )

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cycling_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CyclingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_repeating_page_token_is_an_error_not_a_loop(cycling_server: str) -> None:
    with (
        FoundryClient(hostname=cycling_server, token="t") as client,
        pytest.raises(ExecAnalyticsError, match="page token cycle"),
    ):
        load_executions(
            "ri.function-registry.main.function.abc",
            "2026-11-18T00:00Z",
            "2026-11-19T00:00Z",
            client=client,
            workers=1,
            progress=False,
        )


def test_same_executions_give_the_same_frame(sim_now: pd.Timestamp) -> None:
    """Whatever order concurrent paging returns rows in, the frame is ordered by start time, then trace id."""
    busy = Workload(seed=0, scale=5.0)  # dense enough that executions share a start millisecond
    start, end = sim_now - DAYS, sim_now
    with SimulatorServer(busy, clock=SimClock(now=sim_now)) as srv, _client(srv) as client:
        one = load_executions(busy.resource_rids, start, end, client=client, workers=1, progress=False, cache=False)
        many = load_executions(busy.resource_rids, start, end, client=client, workers=8, progress=False, cache=False)
    assert one["start_time"].duplicated().any(), "no tied start times: the test would prove nothing"
    pd.testing.assert_frame_equal(one, many)
    ref = one.sort_values(["start_time", "foundry_trace_id"], ignore_index=True)
    pd.testing.assert_frame_equal(one, ref)
