"""The Foundry simulator over real HTTP: faithfulness to docs/endpoint.md, determinism, faults and realism.

Talks to the server with ``requests`` directly (not through the client module), so these tests pin the
simulator's behaviour on their own.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from exec_analytics.rids import caller_kind
from exec_analytics.simulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TOKEN,
    GROUND_TRUTH_COLUMNS,
    NO_PERMISSION_TOKEN,
    OAUTH_TOKEN_PATH,
    FaultConfig,
    SimClock,
    SimulatorServer,
    Workload,
)

NOW = pd.Timestamp("2026-11-28T00:00:00Z")
UNIT_MS = {"MILLISECONDS": 1, "SECONDS": 1_000, "MINUTES": 60_000}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def wl() -> Workload:
    return Workload(seed=0)


@pytest.fixture(scope="module")
def srv(wl: Workload):
    with SimulatorServer(wl, clock=SimClock(NOW)) as server:
        yield server


@pytest.fixture
def new_srv(wl: Workload):
    """Start servers of a test's own (any SimulatorServer keyword); stopped after the test."""
    started: list[SimulatorServer] = []

    def make(**kwargs: Any) -> SimulatorServer:
        kwargs.setdefault("clock", SimClock(NOW))
        server = SimulatorServer(wl, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def month(wl: Workload) -> pd.DataFrame:
    """Four weeks of the main resource, with the hidden truth columns."""
    df = wl.executions(wl.main.rid, NOW - pd.Timedelta(days=28), NOW)
    df["kind"] = caller_kind(df["caller_rid"]).astype(object).fillna("none")
    return df


def endpoint(server: SimulatorServer, rid: str, preview: bool = True) -> str:
    url = f"{server.url}/api/v2/observability/resources/{rid}/listExecutions"
    return url + "?preview=true" if preview else url


def post(
    server: SimulatorServer,
    rid: str,
    body: Any,
    *,
    token: str | None = DEFAULT_TOKEN,
    preview: bool = True,
    session: requests.Session | None = None,
) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = body if isinstance(body, (bytes, str)) else None
    sender = session or requests
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    return sender.post(endpoint(server, rid, preview), headers=headers, timeout=10, **kwargs)


def fetch_all(server: SimulatorServer, rid: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every execution of a query, paging until no nextPageToken; returns (rows, pages)."""
    body = dict(body)
    rows: list[dict[str, Any]] = []
    pages = 0
    with requests.Session() as s:
        while True:
            r = post(server, rid, body, session=s)
            assert r.status_code == 200, r.text
            page = r.json()
            pages += 1
            rows.extend(page.get("data", []))
            if "nextPageToken" not in page:
                return rows, pages
            body["pageToken"] = page["nextPageToken"]


def window(start: str, end: str) -> dict[str, str]:
    return {"startTime": start, "endTime": end}


def assert_error(r: requests.Response, status: int, name: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    assert body["errorName"] == name
    assert uuid.UUID(body["errorInstanceId"])
    assert DEFAULT_TOKEN not in r.text
    return body


# --- determinism -------------------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows(wl: Workload) -> None:
    start, end = "2026-11-20T10:00:00Z", "2026-11-20T16:00:00Z"
    again = Workload(seed=0, cache_rows=1_000)  # a tiny cache must not change anything either
    a = wl.executions(wl.main.rid, start, end)
    pd.testing.assert_frame_equal(a, again.executions(again.main.rid, start, end))
    assert len(a) > 500
    other = Workload(seed=1)
    b = other.executions(other.main.rid, start, end)
    assert other.main.rid != wl.main.rid
    assert not set(a["foundry_trace_id"]) & set(b["foundry_trace_id"])


def test_window_splits_agree(wl: Workload) -> None:
    a, b, c = "2026-11-18T22:13:07.250Z", "2026-11-19T05:41:59.999Z", "2026-11-19T13:00:00Z"
    whole = wl.ground_truth(wl.main.rid, a, c)
    parts = pd.concat([wl.ground_truth(wl.main.rid, b, c), wl.ground_truth(wl.main.rid, a, b)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, parts)
    assert whole["start_time"].is_monotonic_decreasing
    assert whole["start_time"].min() >= pd.Timestamp(a) and whole["start_time"].max() < pd.Timestamp(c)


def test_ground_truth_columns_and_types(wl: Workload) -> None:
    gt = wl.ground_truth(wl.main.rid, "2026-11-20T00:00Z", "2026-11-20T06:00Z")
    assert tuple(gt.columns) == GROUND_TRUTH_COLUMNS
    assert str(gt["start_time"].dtype) == "datetime64[ms, UTC]"
    assert gt["duration_s"].dtype == np.float64 and gt["duration_value"].dtype == np.int64
    expected = gt["duration_value"] * gt["duration_unit"].map(UNIT_MS) / 1000
    np.testing.assert_allclose(gt["duration_s"], expected)
    assert gt["failure_reason"].map(lambda v: v is None or isinstance(v, str)).all()
    assert gt["caller_rid"].isna().any() and gt["failure_reason"].isna().any()
    assert gt["foundry_trace_id"].map(lambda v: bool(UUID_RE.match(v))).all()


# --- paging against the ground truth -----------------------------------------------------------------


def test_paging_a_multi_day_window_returns_exactly_the_ground_truth(srv: SimulatorServer, wl: Workload) -> None:
    rid = wl.main.rid
    start, end = "2026-11-24T06:30:00Z", "2026-11-26T18:00:00Z"
    rows, pages = fetch_all(srv, rid, {**window(start, end), "pageSize": 100})
    gt = wl.ground_truth(rid, start, end, as_of=NOW)
    assert len(rows) == len(gt) > 10_000
    assert pages == -(-len(gt) // 100)
    assert [r["foundryTraceId"] for r in rows] == gt["foundry_trace_id"].tolist()
    got = pd.DataFrame(rows)
    assert (pd.to_datetime(got["startTime"], format="ISO8601") == gt["start_time"].to_numpy()).all()
    assert got["status"].tolist() == gt["status"].tolist()
    assert got["resourceVersion"].tolist() == gt["resource_version"].tolist()
    assert got["traceOwningRid"].tolist() == gt["trace_owning_rid"].tolist()
    assert [d["value"] for d in got["duration"]] == gt["duration_value"].tolist()
    assert [d["unit"] for d in got["duration"]] == gt["duration_unit"].tolist()
    assert [r.get("failureReason") for r in rows] == gt["failure_reason"].tolist()
    assert [r.get("callerRid") for r in rows] == gt["caller_rid"].tolist()


def test_rows_look_like_the_published_example(srv: SimulatorServer, wl: Workload) -> None:
    rows, _ = fetch_all(srv, wl.main.rid, {**window("2026-11-27T00:00Z", "2026-11-27T12:00Z"), "pageSize": 100})
    required = {"startTime", "duration", "status", "resourceRid", "resourceVersion", "traceOwningRid", "foundryTraceId"}
    allowed = required | {"failureReason", "callerRid"}
    for row in rows:
        assert required <= set(row) <= allowed  # userId is filterable but never returned
        assert TIME_RE.match(row["startTime"])
        assert isinstance(row["duration"]["value"], int) and row["duration"]["unit"] in UNIT_MS
        assert row["resourceRid"] == wl.main.rid
    assert any("callerRid" not in r for r in rows) and any("failureReason" in r for r in rows)
    assert len({r["foundryTraceId"] for r in rows}) == len(rows)


def test_small_pages_on_the_low_volume_resource(srv: SimulatorServer, wl: Workload) -> None:
    rid = wl.resource_rids[2]
    start, end = "2026-11-10T00:00Z", "2026-11-14T00:00Z"
    rows, pages = fetch_all(srv, rid, {**window(start, end), "pageSize": 37})
    gt = wl.ground_truth(rid, start, end, as_of=NOW)
    assert [r["foundryTraceId"] for r in rows] == gt["foundry_trace_id"].tolist()
    assert pages == -(-len(gt) // 37)


def test_default_window_and_default_page_size(srv: SimulatorServer, wl: Workload) -> None:
    r = post(srv, wl.main.rid, {})
    assert r.status_code == 200
    page = r.json()
    gt = wl.ground_truth(wl.main.rid, NOW - pd.Timedelta(hours=24), NOW, as_of=NOW)
    assert len(page["data"]) == 100 and page["nextPageToken"].startswith("v1.")
    assert [e["foundryTraceId"] for e in page["data"]] == gt["foundry_trace_id"].head(100).tolist()
    last = post(srv, wl.main.rid, window("2026-11-20T00:00Z", "2026-11-20T00:01Z")).json()
    assert "nextPageToken" not in last  # no token on the last page
    empty = post(srv, wl.main.rid, window("2026-11-20T00:00Z", "2026-11-20T00:00Z")).json()
    assert empty == {"data": []}


def test_window_bounds_with_offsets_and_sub_millisecond_fractions(srv: SimulatorServer, wl: Workload) -> None:
    gt = wl.ground_truth(wl.main.rid, "2026-11-20T00:00Z", "2026-11-20T01:00Z", as_of=NOW)
    ids = gt["foundry_trace_id"].tolist()
    in_utc, _ = fetch_all(srv, wl.main.rid, window("2026-11-20T00:00Z", "2026-11-20T01:00Z"))
    in_offsets, _ = fetch_all(srv, wl.main.rid, window("2026-11-20T05:30+05:30", "2026-11-19T20:00:00.000-05:00"))
    assert [r["foundryTraceId"] for r in in_utc] == [r["foundryTraceId"] for r in in_offsets] == ids
    # Executions start on whole milliseconds: "at or after" and "before" a finer time act on its ceiling.
    row = gt.iloc[len(gt) // 2]
    t = row["start_time"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]  # its millisecond, without a zone
    cases = [
        (window(t + "0001Z", "2026-11-20T01:00Z"), False),  # 100 ns after its start
        (window(t + "000Z", "2026-11-20T01:00Z"), True),
        (window("2026-11-20T00:00Z", t + "000Z"), False),  # end is exclusive
        (window("2026-11-20T00:00Z", t + "000001Z"), True),  # a nanosecond later
    ]
    for query, included in cases:
        rows, _ = fetch_all(srv, wl.main.rid, query)
        assert (row["foundry_trace_id"] in {r["foundryTraceId"] for r in rows}) == included, query


def test_only_completed_executions_are_visible(wl: Workload, new_srv) -> None:
    df = wl.executions(wl.main.rid, "2026-11-25T00:00Z", "2026-11-25T06:00Z")
    slow = df[df["true_duration_ms"] > 30_000].iloc[0]
    start, end = slow["start_time"], slow["end_time"]
    clock = SimClock(start + pd.Timedelta(seconds=5))
    server = new_srv(clock=clock)
    query = window((start - pd.Timedelta(minutes=1)).isoformat(), (start + pd.Timedelta(minutes=1)).isoformat())

    def visible() -> set[str]:
        return {r["foundryTraceId"] for r in fetch_all(server, wl.main.rid, query)[0]}

    assert slow["foundry_trace_id"] not in visible()
    clock.set(end - pd.Timedelta(milliseconds=1))
    assert slow["foundry_trace_id"] not in visible()
    clock.advance(pd.Timedelta(milliseconds=1))
    assert slow["foundry_trace_id"] in visible()
    gt = wl.ground_truth(wl.main.rid, query["startTime"], query["endTime"], as_of=clock.now())
    assert visible() == set(gt["foundry_trace_id"])


def test_late_completion_inside_an_already_read_window(wl: Workload, new_srv) -> None:
    """A keyset page sequence never repeats rows; an execution finishing after it was passed is missed."""
    df = wl.executions(wl.main.rid, "2026-11-26T00:00Z", "2026-11-26T12:00Z")
    slow = df[df["true_duration_ms"] > 50_000].iloc[0]
    clock = SimClock(slow["start_time"] + pd.Timedelta(seconds=2))
    server = new_srv(clock=clock)
    start = (slow["start_time"] - pd.Timedelta(hours=2)).isoformat()
    first = post(server, wl.main.rid, {"startTime": start, "pageSize": 50}).json()
    clock.set(slow["end_time"] + pd.Timedelta(seconds=1))
    rows = first["data"]
    body = {"startTime": start, "pageSize": 50, "pageToken": first["nextPageToken"]}
    while True:
        page = post(server, wl.main.rid, body).json()
        rows += page["data"]
        if "nextPageToken" not in page:
            break
        body["pageToken"] = page["nextPageToken"]
    ids = [r["foundryTraceId"] for r in rows]
    assert len(ids) == len(set(ids))
    assert slow["foundry_trace_id"] not in ids
    fresh = {
        r["foundryTraceId"]
        for r in fetch_all(server, wl.main.rid, {"startTime": start, "endTime": clock.now().isoformat()})[0]
    }
    assert slow["foundry_trace_id"] in fresh


def test_retention_hides_old_executions(wl: Workload, new_srv) -> None:
    server = new_srv(retention="30D")
    query = window("2026-10-27T00:00Z", "2026-10-30T00:00Z")
    rows, _ = fetch_all(server, wl.main.rid, query)
    cutoff = NOW - pd.Timedelta(days=30)
    gt = wl.ground_truth(wl.main.rid, cutoff, query["endTime"], as_of=NOW)
    assert [r["foundryTraceId"] for r in rows] == gt["foundry_trace_id"].tolist() and len(gt) > 0


def test_chunked_request_body_and_keep_alive(srv: SimulatorServer, wl: Workload) -> None:
    body = b'{"startTime": "2026-11-20T00:00:00Z", "endTime": "2026-11-20T01:00:00Z", "pageSize": 5}'
    with requests.Session() as s:
        headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "Content-Type": "application/json"}
        chunked = s.post(endpoint(srv, wl.main.rid), data=iter([body[:10], body[10:]]), headers=headers, timeout=5)
        plain = s.post(endpoint(srv, wl.main.rid), data=body, headers=headers, timeout=5)
    assert chunked.status_code == plain.status_code == 200
    assert chunked.json()["data"] == plain.json()["data"] and len(plain.json()["data"]) == 5


# --- errors --------------------------------------------------------------------------------------------


def test_authentication_and_permission_errors(srv: SimulatorServer, wl: Workload) -> None:
    rid = wl.main.rid
    assert_error(post(srv, rid, {}, token=None), 401, "MissingCredentials")
    assert_error(post(srv, rid, {}, token="not-a-token"), 401, "InvalidToken")
    body = assert_error(post(srv, rid, {}, token=NO_PERMISSION_TOKEN), 403, "ListExecutionsPermissionDenied")
    assert body["parameters"] == {"resourceRid": rid} and body["errorCode"] == "PERMISSION_DENIED"
    restricted = wl.restricted_rids[0]
    body = assert_error(post(srv, restricted, {}), 403, "ListExecutionsResourcePermissionDenied")
    assert body["parameters"]["resourceRid"] == restricted
    unknown = "ri.function-registry.main.function.00000000-0000-4000-8000-000000000000"
    body = assert_error(post(srv, unknown, {}), 404, "ResourceNotFound")
    assert body["parameters"]["resourceRid"] == unknown and body["errorCode"] == "NOT_FOUND"


def test_a_path_that_is_not_the_endpoint_is_404_with_an_empty_body(srv: SimulatorServer, wl: Workload) -> None:
    for path in ("/api/v2/observability/resources/x/listRuns", "/api/v1/nothing", "/"):
        r = requests.post(srv.url + path, json={}, headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=5)
        assert r.status_code == 404 and r.content == b""
    r = requests.get(endpoint(srv, wl.main.rid), timeout=5)
    assert r.status_code == 405 and r.content == b""


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ({"pageSize": 0}, "InvalidPageSize"),
        ({"pageSize": 101}, "InvalidPageSize"),
        ({"pageSize": "10"}, "InvalidPageSize"),
        ({"pageSize": 2.5}, "InvalidPageSize"),
        ({"pageSize": True}, "InvalidPageSize"),
        ({"where": {"type": "eq", "field": "status"}}, "InvalidExecutionFilter"),
        ({"where": {"type": "gte", "field": "status", "value": "FAILED"}}, "InvalidExecutionFilter"),
        ({"where": {"type": "isNull", "field": "resourceVersion"}}, "InvalidExecutionFilter"),
        ({"where": {"type": "lte", "field": "duration", "value": {"unit": "DAYS", "value": 1}}},
         "InvalidExecutionFilter"),
        ({"where": {"type": "and", "filters": [{"type": "nope"}]}}, "InvalidExecutionFilter"),
        ({"where": []}, "InvalidExecutionFilter"),
        ({"where": {"type": "in", "field": "status", "value": []}}, "InvalidExecutionFilter"),
        ({"where": {"type": "and", "filters": []}}, "InvalidExecutionFilter"),
        ({"where": {"type": "or", "filters": []}}, "InvalidExecutionFilter"),
        ({"where": {"type": "not", "filter": {"type": "or", "filters": []}}}, "InvalidExecutionFilter"),
        ({"where": {"type": "eq", "field": "userid", "value": "x"}}, "InvalidExecutionFilter"),
        ({"where": {"type": "eq", "field": ["status"], "value": "FAILED"}}, "InvalidExecutionFilter"),
        ({"where": {"type": "like", "field": "status", "value": "FAILED"}}, "InvalidExecutionFilter"),
        ({"where": {"type": ["eq"], "field": "status", "value": "FAILED"}}, "InvalidExecutionFilter"),
        ({"where": {"type": "eq", "field": "status", "value": "FAILED", "extra": 1}}, "InvalidExecutionFilter"),
        ({"where": {"type": "gte", "field": "duration", "value": {"unit": "SECONDS", "value": -1}}},
         "InvalidExecutionFilter"),
        ({"where": {"type": "gte", "field": "duration", "value": {"unit": "SECONDS", "value": 1.5}}},
         "InvalidExecutionFilter"),
        ({"where": {"type": "gte", "field": "duration", "value": {"unit": "SECONDS", "value": 2**63}}},
         "InvalidExecutionFilter"),
        ({"pageSize": -1}, "InvalidPageSize"),
        ({"pageSize": 100.0}, "InvalidPageSize"),
        ({"pageToken": "v1.bm90IGEgdG9rZW4"}, "InvalidPageToken"),
        ({"pageToken": "abc"}, "InvalidPageToken"),
        ({"pageToken": "v1.%%%"}, "InvalidPageToken"),
        ({"startTime": "yesterday"}, "InvalidArgument"),
        ({"startTime": "2026-11-20T00:00:00"}, "InvalidArgument"),  # no zone
        ({"startTime": "Nov 19 2026 00:00 UTC"}, "InvalidArgument"),
        ({"startTime": "2026-11-19 00:00:00Z"}, "InvalidArgument"),  # a space for T
        ({"startTime": "2026-11-19"}, "InvalidArgument"),
        ({"startTime": "20261119T000000Z"}, "InvalidArgument"),  # ISO-8601 basic format: not RFC 3339
        ({"endTime": "2026-11-19T00:00:00+0100"}, "InvalidArgument"),
        ({"endTime": "2026-02-30T00:00:00Z"}, "InvalidArgument"),
        ({"endTime": "2026-11-19T24:00:00Z"}, "InvalidArgument"),
        ({"endTime": "1763510400000"}, "InvalidArgument"),
        ({"endTime": 1700000000}, "InvalidArgument"),
        ({"startTime": "2026-11-21T00:00Z", "endTime": "2026-11-20T00:00Z"}, "InvalidArgument"),
        ({"page_size": 10}, "InvalidArgument"),
        ([], "InvalidArgument"),
        (b"{not json", "InvalidArgument"),
        (b"", "InvalidArgument"),
    ],
)  # fmt: skip
def test_bad_requests_answer_400(srv: SimulatorServer, wl: Workload, body: Any, name: str) -> None:
    body = assert_error(post(srv, wl.main.rid, body), 400, name)
    assert body["errorCode"] == "INVALID_ARGUMENT"


def test_preview_flag_is_required(srv: SimulatorServer, wl: Workload) -> None:
    assert_error(post(srv, wl.main.rid, {}, preview=False), 400, "ApiFeaturePreviewUsageOnly")
    r = requests.post(endpoint(srv, wl.main.rid, False) + "?preview=false", json={},
                      headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"}, timeout=5)  # fmt: skip
    assert_error(r, 400, "ApiFeaturePreviewUsageOnly")


def test_page_tokens_are_signed_bound_and_expire(wl: Workload, new_srv) -> None:
    server = new_srv(page_token_ttl_s=0.3)
    rid = wl.main.rid
    query = window("2026-11-20T00:00Z", "2026-11-21T00:00Z")
    token = post(server, rid, query).json()["nextPageToken"]
    assert post(server, rid, {**query, "pageToken": token}).status_code == 200
    # tampered: flip one byte of the signed payload
    raw = bytearray(base64.urlsafe_b64decode(token[3:] + "=" * (-len(token[3:]) % 4)))
    raw[5] ^= 0x01
    forged = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert_error(post(server, rid, {**query, "pageToken": forged}), 400, "InvalidPageToken")
    # bound to the request body and the resource
    other_filter = {**query, "where": {"type": "eq", "field": "status", "value": "FAILED"}, "pageToken": token}
    assert_error(post(server, rid, other_filter), 400, "InvalidPageToken")
    assert_error(post(server, rid, {"startTime": query["startTime"], "pageToken": token}), 400, "InvalidPageToken")
    assert_error(post(server, wl.resource_rids[1], {**query, "pageToken": token}), 400, "InvalidPageToken")
    # pageSize may change between pages
    assert post(server, rid, {**query, "pageSize": 10, "pageToken": token}).status_code == 200
    # a token from another server (another signing key) is rejected
    assert_error(post(new_srv(), rid, {**query, "pageToken": token}), 400, "InvalidPageToken")
    time.sleep(0.35)
    assert_error(post(server, rid, {**query, "pageToken": token}), 400, "InvalidPageToken")


# --- filters ---------------------------------------------------------------------------------------------


def _filter_cases(wl: Workload, gt: pd.DataFrame, ex: pd.DataFrame) -> list[tuple[dict[str, Any], pd.Series]]:
    """(filter, independent pandas mask over ``gt``) pairs."""
    reported_ms = gt["duration_value"] * gt["duration_unit"].map(UNIT_MS)
    top = gt["caller_rid"].value_counts().index[:2].tolist()
    monitor = next(c.rid for c in wl.main.callers if c.kind == "object-sentinel.monitor")
    some_ids = gt["foundry_trace_id"].iloc[[3, 500, 1000]].tolist()
    user = ex["user_id"].dropna().iloc[0]
    users = ex.set_index("foundry_trace_id")["user_id"].reindex(gt["foundry_trace_id"]).to_numpy()
    failed = {"type": "eq", "field": "status", "value": "FAILED"}
    long = {"type": "gte", "field": "duration", "value": {"unit": "SECONDS", "value": 30}}
    return [
        (failed, gt["status"] == "FAILED"),
        ({"type": "in", "field": "status", "value": ["SUCCEEDED", "RUNNING"]}, gt["status"] == "SUCCEEDED"),
        (long, reported_ms >= 30_000),
        ({"type": "lte", "field": "duration", "value": {"unit": "MILLISECONDS", "value": 100}}, reported_ms <= 100),
        ({"type": "gte", "field": "duration", "value": {"unit": "MINUTES", "value": 1}}, reported_ms >= 60_000),
        ({"type": "and", "filters": [failed, long]}, (gt["status"] == "FAILED") & (reported_ms >= 30_000)),
        (
            {"type": "or", "filters": [
                {"type": "in", "field": "failureReason", "value": ["timeout", "out_of_memory"]},
                {"type": "isNull", "field": "callerRid"},
            ]},
            gt["failure_reason"].isin(["timeout", "out_of_memory"]) | gt["caller_rid"].isna(),
        ),
        ({"type": "not", "filter": {"type": "eq", "field": "resourceVersion", "value": "1.4.0"}},
         gt["resource_version"] != "1.4.0"),
        ({"type": "in", "field": "callerRid", "value": top}, gt["caller_rid"].isin(top)),
        ({"type": "eq", "field": "traceOwningRid", "value": monitor}, gt["trace_owning_rid"] == monitor),
        ({"type": "eq", "field": "traceOwningRid", "value": wl.main.rid}, gt["caller_rid"].isna()),
        ({"type": "in", "field": "foundryTraceId", "value": some_ids}, gt["foundry_trace_id"].isin(some_ids)),
        ({"type": "isNull", "field": "userId"}, pd.Series(pd.isna(users), index=gt.index)),
        ({"type": "eq", "field": "userId", "value": user}, pd.Series(users == user, index=gt.index)),
        ({"type": "and", "filters": [{"type": "eq", "field": "status", "value": "SUCCEEDED"},
                                     {"type": "eq", "field": "failureReason", "value": "timeout"}]},
         (gt["status"] == "SUCCEEDED") & (gt["failure_reason"] == "timeout")),
        ({"type": "eq", "field": "failureReason", "value": "no_such_reason"}, gt["status"] != gt["status"]),
    ]  # fmt: skip


# Filters the API rejects but a client may evaluate on its own history: the ground truth says what they mean.
EMPTY_FILTERS: list[tuple[dict[str, Any], bool]] = [
    ({"type": "and", "filters": []}, True),
    ({"type": "or", "filters": []}, False),
    ({"type": "in", "field": "status", "value": []}, False),
    ({"type": "not", "filter": {"type": "in", "field": "callerRid", "value": []}}, True),
]


def test_filters_match_the_ground_truth_and_independent_pandas(srv: SimulatorServer, wl: Workload) -> None:
    rid = wl.main.rid
    start, end = "2026-11-19T00:00Z", "2026-11-20T00:00Z"
    gt = wl.ground_truth(rid, start, end, as_of=NOW)
    ex = wl.executions(rid, start, end)
    for where, mask in _filter_cases(wl, gt, ex):
        expected = gt.loc[mask, "foundry_trace_id"].tolist()
        assert wl.ground_truth(rid, start, end, as_of=NOW, where=where)["foundry_trace_id"].tolist() == expected
        rows, _ = fetch_all(srv, rid, {**window(start, end), "where": where})
        assert [r["foundryTraceId"] for r in rows] == expected, where
    assert 0 < (gt["status"] == "FAILED").sum() < len(gt)
    for where, everything in EMPTY_FILTERS:
        expected = gt["foundry_trace_id"].tolist() if everything else []
        assert wl.ground_truth(rid, start, end, as_of=NOW, where=where)["foundry_trace_id"].tolist() == expected
        assert_error(post(srv, rid, {**window(start, end), "where": where}), 400, "InvalidExecutionFilter")


# --- faults ----------------------------------------------------------------------------------------------


def test_throttling_and_server_error_faults(wl: Workload, new_srv) -> None:
    server = new_srv()
    rid = wl.main.rid
    server.faults = FaultConfig(p_429_retry_after=1.0, retry_after_s=0.05)
    r = post(server, rid, {})
    assert r.status_code == 429 and r.headers["Retry-After"] == "0.05"
    server.faults = FaultConfig(p_429=1.0)
    r = post(server, rid, {})
    assert r.status_code == 429 and "Retry-After" not in r.headers and "QoS-Retry-Hint" not in r.headers
    server.faults = FaultConfig(p_429_do_not_retry=1.0)
    r = post(server, rid, {})
    assert r.status_code == 429 and r.headers["QoS-Retry-Hint"] == "do-not-retry"
    server.faults = FaultConfig(p_503=1.0)
    assert post(server, rid, {}).status_code == 503
    server.faults = FaultConfig(p_500=1.0)
    body = assert_error(post(server, rid, {}), 500, "Internal")
    assert body["errorCode"] == "INTERNAL"
    server.faults = FaultConfig()
    assert post(server, rid, {}).status_code == 200
    assert server.request_count == 6
    assert {k: server.fault_counts[k] for k in ("429_retry_after", "429", "429_do_not_retry", "503", "500")} == {
        "429_retry_after": 1, "429": 1, "429_do_not_retry": 1, "503": 1, "500": 1,
    }  # fmt: skip
    assert [status for _, status in server.log] == [429, 429, 429, 503, 500, 200]
    server.reset_counts()
    assert server.request_count == 0 and not server.log


def test_dropped_and_truncated_responses(wl: Workload, new_srv) -> None:
    server = new_srv(faults=FaultConfig(p_drop=1.0))
    with pytest.raises(requests.ConnectionError):
        post(server, wl.main.rid, {})
    server.faults = FaultConfig(p_truncate=1.0)
    with pytest.raises(requests.RequestException):
        post(server, wl.main.rid, window("2026-11-20T00:00Z", "2026-11-21T00:00Z"))
    assert server.fault_counts["drop"] == 1 and server.fault_counts["truncate"] == 1
    assert server.request_count == 2


def test_latency_slowness_and_concurrency_limit(wl: Workload, new_srv) -> None:
    server = new_srv(faults=FaultConfig(latency_s=0.05))
    t0 = time.perf_counter()
    assert post(server, wl.main.rid, {}).status_code == 200
    assert time.perf_counter() - t0 >= 0.05
    server.faults = FaultConfig(p_slow=1.0, slow_s=0.2)
    t0 = time.perf_counter()
    assert post(server, wl.main.rid, {}).status_code == 200
    assert time.perf_counter() - t0 >= 0.2
    server.faults = FaultConfig(max_concurrent=2, latency_s=0.3)
    barrier = threading.Barrier(6)

    def one(_: int) -> int:
        barrier.wait()
        return post(server, wl.main.rid, {}).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(one, range(6)))
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1 and set(statuses) <= {200, 429}
    assert server.fault_counts["concurrency"] == statuses.count(429)


def test_fault_draws_are_deterministic(wl: Workload, new_srv) -> None:
    config = FaultConfig(seed=7, p_503=0.3, p_429=0.2)
    runs = []
    for _ in range(2):
        server = new_srv(faults=config)
        with requests.Session() as s:
            runs.append([post(server, wl.main.rid, {}, session=s).status_code for _ in range(30)])
    assert runs[0] == runs[1]
    assert {200, 429, 503} <= set(runs[0])


def test_short_pages_lose_nothing(srv: SimulatorServer, wl: Workload, new_srv) -> None:
    server = new_srv(faults=FaultConfig(short_pages=1.0, seed=3))
    query = {**window("2026-11-20T00:00Z", "2026-11-20T12:00Z"), "pageSize": 100}
    first = post(server, wl.main.rid, query).json()
    assert len(first["data"]) < 100 and "nextPageToken" in first
    rows, pages = fetch_all(server, wl.main.rid, query)
    gt = wl.ground_truth(wl.main.rid, query["startTime"], query["endTime"], as_of=NOW)
    assert [r["foundryTraceId"] for r in rows] == gt["foundry_trace_id"].tolist()
    assert pages > -(-len(gt) // 100) and server.fault_counts["short_page"] > 0


def test_unstable_tokens_repeat_rows_when_executions_complete(wl: Workload, new_srv) -> None:
    df = wl.executions(wl.main.rid, "2026-11-26T00:00Z", "2026-11-26T12:00Z")
    slow = df[df["true_duration_ms"] > 50_000].iloc[0]
    first_now = slow["start_time"] + pd.Timedelta(seconds=2)
    later = slow["end_time"] + pd.Timedelta(seconds=1)
    start = slow["start_time"] - pd.Timedelta(hours=1)
    query = {"startTime": start.isoformat(), "pageSize": 20}
    results = {}
    for unstable in (False, True):
        clock = SimClock(first_now)
        server = new_srv(clock=clock, faults=FaultConfig(unstable_tokens=unstable))
        first = post(server, wl.main.rid, query).json()
        clock.set(later)  # newer executions complete between the two pages
        second = post(server, wl.main.rid, {**query, "pageToken": first["nextPageToken"]}).json()
        ids = [r["foundryTraceId"] for r in first["data"] + second["data"]]
        results[unstable] = len(ids) - len(set(ids))
        if unstable:  # an offset token re-reads positions 20..39 of the grown result
            grown = wl.ground_truth(wl.main.rid, start, first_now, as_of=later)["foundry_trace_id"].tolist()
            assert [r["foundryTraceId"] for r in second["data"]] == grown[20:40]
            expected = len({r["foundryTraceId"] for r in first["data"]} & set(grown[20:40]))
    assert results[False] == 0
    assert results[True] == expected >= 1


# --- OAuth ------------------------------------------------------------------------------------------------


def oauth(server: SimulatorServer, client_id: str, secret: str, **extra: str) -> requests.Response:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, **extra}
    return requests.post(server.url + OAUTH_TOKEN_PATH, data=form, timeout=5)


def test_oauth_client_credentials_flow(wl: Workload, new_srv) -> None:
    server = new_srv()
    r = oauth(server, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, scope="api:observability-read")
    assert r.status_code == 200
    grant = r.json()
    assert grant["token_type"] == "bearer" and grant["scope"] == "api:observability-read"
    assert isinstance(grant["expires_in"], int) and grant["expires_in"] >= 1
    assert post(server, wl.main.rid, {}, token=grant["access_token"]).status_code == 200
    # client_secret_basic works too
    basic = base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
    r = requests.post(server.url + OAUTH_TOKEN_PATH, data={"grant_type": "client_credentials"},
                      headers={"Authorization": f"Basic {basic}"}, timeout=5)  # fmt: skip
    assert r.status_code == 200
    assert oauth(server, DEFAULT_CLIENT_ID, "wrong").status_code == 401
    assert oauth(server, "nobody", DEFAULT_CLIENT_SECRET).status_code == 401
    assert oauth(server, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, grant_type="password").status_code == 400
    # revoked tokens answer 401 until a new one is fetched
    assert server.revoke_oauth_tokens() == 2
    assert_error(post(server, wl.main.rid, {}, token=grant["access_token"]), 401, "InvalidToken")
    fresh = oauth(server, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).json()["access_token"]
    assert post(server, wl.main.rid, {}, token=fresh).status_code == 200


def test_oauth_tokens_expire(wl: Workload, new_srv) -> None:
    server = new_srv(oauth_token_ttl_s=0.3)
    grant = oauth(server, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).json()
    assert grant["expires_in"] == 1  # whole seconds, rounded up
    assert post(server, wl.main.rid, {}, token=grant["access_token"]).status_code == 200
    time.sleep(0.35)
    assert_error(post(server, wl.main.rid, {}, token=grant["access_token"]), 401, "InvalidToken")


def test_oauth_client_without_the_scope_gets_api_usage_denied(wl: Workload, new_srv) -> None:
    server = new_srv()
    server.register_oauth_client("no-scope", "s3cret", scopes=["api:datasets-read"])
    grant = oauth(server, "no-scope", "s3cret", scope="api:observability-read api:datasets-read").json()
    assert grant["scope"] == "api:datasets-read"
    body = assert_error(post(server, wl.main.rid, {}, token=grant["access_token"]), 403, "ApiUsageDenied")
    assert body["parameters"] == {"missingScope": "api:observability-read"}


def test_faults_reach_oauth_only_when_configured(new_srv) -> None:
    server = new_srv(faults=FaultConfig(p_503=1.0))
    assert oauth(server, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).status_code == 200
    server.faults = FaultConfig(p_503=1.0, apply_to_oauth=True)
    assert oauth(server, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET).status_code == 503
    assert server.request_count == 0  # the OAuth endpoint is not a listExecutions request


# --- realism and the known truth --------------------------------------------------------------------------


def test_units_failures_and_reasons_are_realistic(wl: Workload, month: pd.DataFrame) -> None:
    units = month["duration_unit"].value_counts(normalize=True)
    assert units["MILLISECONDS"] > 0.8 and 0.01 < units["SECONDS"] < 0.2 and 0 < units["MINUTES"] < 0.01
    auto = wl.ground_truth(wl.resource_rids[1], "2026-11-20T00:00Z", "2026-11-27T00:00Z")
    assert auto["duration_unit"].eq("SECONDS").mean() > 0.3  # long automation runs report seconds
    failed = month["status"].eq("FAILED")
    assert 0.01 < failed.mean() < 0.1
    assert month.loc[failed, "failure_reason"].nunique() >= 6
    assert month.loc[failed, "failure_reason"].isna().any()  # FAILED without a reason happens
    with_reason = month.loc[~failed, "failure_reason"].notna().mean()
    assert 0 < with_reason < 0.01  # like the published example: a reason on a SUCCEEDED execution
    timeouts = month[month["failure_reason"].eq("timeout") & failed]
    assert (timeouts["true_duration_ms"] >= wl.main.timeout_ms).all()
    ok = month[~failed]
    assert (ok["true_duration_ms"] < wl.main.timeout_ms).all()
    assert ok["true_duration_ms"].quantile(0.99) > 8 * ok["true_duration_ms"].median()  # heavy tail


def test_callers_are_skewed_and_of_every_kind(wl: Workload, month: pd.DataFrame) -> None:
    assert 15 <= len(wl.main.callers) <= 40 and all(15 <= len(p.callers) <= 40 for p in wl.resources)
    shares = month["caller_rid"].value_counts(normalize=True, dropna=True)
    assert shares.iloc[0] > 5 * shares.median()
    assert shares.head(max(1, len(shares) // 5)).sum() > 0.5
    assert set(month["kind"]) == {"workshop.module", "actions.action-type", "object-sentinel.monitor",
                                  "function-registry.function", "none"}  # fmt: skip
    assert 0.01 < month["caller_rid"].isna().mean() < 0.1
    owners = month["caller_rid"].where(month["caller_rid"].notna(), wl.main.rid)
    assert (month["trace_owning_rid"] == owners).all()
    assert month.loc[month["kind"] == "object-sentinel.monitor", "user_id"].isna().all()
    assert month.loc[month["kind"] != "object-sentinel.monitor", "user_id"].notna().all()
    assert month["foundry_trace_id"].is_unique


def test_traffic_is_diurnal_and_weekly(wl: Workload, month: pd.DataFrame) -> None:
    interactive = month[month["kind"].isin(["workshop.module", "actions.action-type"])]
    t = interactive["start_time"]
    weekday = t.dt.day_of_week < 5
    by_hour = t[weekday].dt.hour.value_counts()
    assert by_hour[14] > 3 * by_hour[3]
    per_day = t.dt.floor("D").value_counts()
    weekend_days = per_day[per_day.index.day_of_week >= 5]
    assert weekend_days.mean() < 0.5 * per_day[per_day.index.day_of_week < 5].mean()
    assert wl.expected_rate(wl.main.rid, "2026-11-25T14:30Z") > 2 * wl.expected_rate(wl.main.rid, "2026-11-25T03:30Z")
    rate = len(month) / (28 * 24)
    assert 200 < rate < 300  # about 250 executions/hour on average


def test_version_timeline_truth(wl: Workload) -> None:
    lo, hi = pd.Timestamp("2026-10-31T00:00Z"), pd.Timestamp("2026-11-28T00:00Z")
    for rid in wl.resource_rids:
        versions = set(wl.ground_truth(rid, lo, hi)["resource_version"])
        assert len(versions) >= 3
    main = wl.main
    assert main.regressed_version == "1.4.0" and main.confounded_version == "1.3.0"
    assert main.latency_multipliers["1.4.0"] == pytest.approx(1.4)
    assert main.failure_multipliers["1.4.0"]["timeout"] == pytest.approx(3.0)
    assert main.latency_multipliers["1.3.0"] == 1.0 and set(main.failure_multipliers["1.3.0"].values()) == {1.0}
    spec = {v.version: v for v in main.versions}
    assert spec["1.3.0"].kind_shares["object-sentinel.monitor"] > 0.5
    # before the timeline the earliest version applies, after it the latest
    assert set(wl.ground_truth(main.rid, "2026-01-05T00:00Z", "2026-01-05T06:00Z")["resource_version"]) == {"1.0.0"}
    assert set(wl.ground_truth(main.rid, "2027-03-01T00:00Z", "2027-03-01T06:00Z")["resource_version"]) == {"1.4.0"}
    canary = main.version_shares("2026-11-18T09:00Z")
    assert set(canary) == {"1.3.0", "1.4.0"} and 0 < canary["1.4.0"] < 1
    assert main.version_shares("2026-11-05T00:00Z", "object-sentinel.monitor")["1.3.0"] == pytest.approx(0.9)
    assert wl.ground_truth(main.rid, "2024-06-01T00:00Z", "2024-06-02T00:00Z").empty  # before the resource existed


def _stratified_ratio(df: pd.DataFrame, a: str, b: str) -> float:
    """Median over callers of (median duration on b / on a), successes only, callers seen on both."""
    ok = df[df["status"].eq("SUCCEEDED") & df["resource_version"].isin([a, b])]
    med = ok.groupby(["caller_rid", "resource_version"])["true_duration_ms"].median().unstack()
    counts = ok.groupby(["caller_rid", "resource_version"]).size().unstack()
    med = med[(counts[a] >= 30) & (counts[b] >= 30)]
    return float((med[b] / med[a]).median())


def test_regression_is_real_and_confounding_is_only_caller_mix(month: pd.DataFrame) -> None:
    assert _stratified_ratio(month, "1.3.0", "1.4.0") == pytest.approx(1.4, rel=0.08)
    timeout_rate = month.groupby("resource_version")["failure_reason"].apply(lambda s: s.eq("timeout").mean())
    assert timeout_rate["1.4.0"] > 2 * timeout_rate["1.3.0"]
    assert _stratified_ratio(month, "1.2.0", "1.3.0") == pytest.approx(1.0, abs=0.06)
    overlap = month[(month["start_time"] >= "2026-11-03T09:00Z") & (month["start_time"] < "2026-11-10T09:00Z")]
    naive = overlap[overlap["status"].eq("SUCCEEDED")].groupby("resource_version")["true_duration_ms"].median()
    assert naive["1.3.0"] > 2 * naive["1.2.0"]  # a naive comparison sees a "regression"
    mix = overlap.groupby("resource_version")["kind"].apply(lambda s: s.eq("object-sentinel.monitor").mean())
    assert mix["1.3.0"] > 0.6 > 0.2 > mix["1.2.0"]


# --- entry point and throughput ------------------------------------------------------------------------------


def test_serve_prints_url_token_and_rids(wl: Workload) -> None:
    root = Path(__file__).resolve().parents[1]
    code = "from exec_analytics.simulator import serve; serve(0, seed=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(8)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = "".join(lines)
    url = re.search(r"http://127\.0\.0\.1:\d+", text)
    assert url and DEFAULT_TOKEN in text
    assert all(rid in text for rid in wl.resource_rids) and wl.restricted_rids[0] not in text


def test_paging_throughput_with_concurrent_clients(wl: Workload, new_srv) -> None:
    # limits={} measures without enforcing: the server counts how many requests it serves at once.
    server = new_srv(faults=FaultConfig(latency_s=0.02), limits={})
    rid = wl.main.rid
    edges = pd.date_range("2026-11-23T00:00Z", "2026-11-25T00:00Z", periods=9)

    def slice_rows(i: int) -> list[str]:
        rows, _ = fetch_all(server, rid, {**window(edges[i].isoformat(), edges[i + 1].isoformat()), "pageSize": 100})
        return [r["foundryTraceId"] for r in rows]

    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(slice_rows, reversed(range(8))))  # newest slice first
    ids = [i for part in parts for i in part]
    gt = wl.ground_truth(rid, edges[0], edges[-1], as_of=NOW)
    assert ids == gt["foundry_trace_id"].tolist()
    # Throughput comes from serving clients at once: with 20 ms per page, 8 clients paging ~50 pages each
    # overlap unless the server serialises them (measured by the server, not by a wall-clock bound).
    assert server.limit_stats(server.token).max_in_flight >= 4
    assert not server.internal_errors
