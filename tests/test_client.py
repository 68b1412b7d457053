"""FoundryClient against the simulator over real HTTP on loopback (no mocks of requests).

Retries, throttling and token expiry run on a :class:`FakeClock`: backoffs and pauses cost no real time and
are asserted in simulated seconds. Faults are scripted per request (``_fault_script``: a session that sets
the simulator's faults before each request it sends), so every recovery test is deterministic.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import requests
from adversarial import FakeClock

from exec_analytics import filters
from exec_analytics.client import FoundryClient, Page, ThrottleGate, new_session, parse_retry_after
from exec_analytics.client.retry import Decision, Outcome, RetryPolicy, decide
from exec_analytics.config import Settings, default_cache_dir, normalize_base_url
from exec_analytics.errors import (
    ApiError,
    AuthenticationError,
    EndpointUnavailableError,
    ExecAnalyticsError,
    InvalidFilterError,
    InvalidPageTokenError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceNotFoundError,
    ServerError,
    TransportError,
)
from exec_analytics.simulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TOKEN,
    NO_PERMISSION_TOKEN,
    FaultConfig,
)

START, END = "2026-11-19T22:00:00Z", "2026-11-19T23:00:00Z"
MISSING_RID = "ri.function-registry.main.function.00000000-0000-4000-8000-000000000000"
# Distinctive secrets: if any of them shows up in a log line, message or repr, the test names it.
SECRET_TOKEN = "tok-SECRET-7f3a9c1e5b"
SECRET_CLIENT = "csecret-SECRET-91d2e4"
FAST = {"backoff_base": 0.01, "backoff_cap": 0.05, "max_attempts": 4, "retry_budget": 10.0}


@pytest.fixture(scope="module")
def rid(workload: Any) -> str:
    return workload.resource_rids[0]


def _client(srv: Any, **kwargs: Any) -> FoundryClient:
    kwargs.setdefault("token", DEFAULT_TOKEN)
    kwargs.setdefault("clock", FakeClock())
    return FoundryClient(srv.url, **{**FAST, **kwargs})


def _fault_script(
    srv: Any, *configs: FaultConfig, clock: FakeClock | None = None, sent: list[Any] | None = None
) -> Callable[[], requests.Session]:
    """A session factory whose sessions set ``srv.faults`` from ``configs`` (the last repeats) before each
    request, and record ``(clock time, request)`` in ``sent``."""
    script = list(configs)
    lock = threading.Lock()

    class FaultScript(requests.Session):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            with lock:
                if script:
                    srv.faults = script.pop(0) if len(script) > 1 else script[0]
                if sent is not None:
                    sent.append((clock.monotonic() if clock is not None else None, request))
            return super().send(request, **kwargs)

    return lambda: new_session(FaultScript)


def _names_resource_and_instance(err: ApiError, rid: str) -> None:
    assert rid in str(err)
    assert err.resource_rid == rid
    assert err.error_instance_id, "the simulator sends an errorInstanceId"
    assert err.error_instance_id in str(err)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("acme.palantirfoundry.com", "https://acme.palantirfoundry.com"),
        ("https://acme.palantirfoundry.com/", "https://acme.palantirfoundry.com"),
        ("https://acme.palantirfoundry.com/workspace/module/view?x=1#y", "https://acme.palantirfoundry.com"),
        ("https://acme.palantirfoundry.com/api/v2/", "https://acme.palantirfoundry.com"),
        ("https://gw.example.com/foundry//", "https://gw.example.com/foundry"),
        ("  http://127.0.0.1:8765  ", "http://127.0.0.1:8765"),
        ("http://127.8.9.1:1", "http://127.8.9.1:1"),
        ("http://localhost:99/", "http://localhost:99"),
        ("http://[::1]:8765", "http://[::1]:8765"),
    ],
)
def test_hostname_normalisation(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    "bad", ["http://acme.palantirfoundry.com", "http://10.0.0.1:80", "ftp://x.com", "", "https://", "https://h:99999"]
)
def test_hostname_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        normalize_base_url(bad)


def test_hostname_with_credentials_is_rejected_without_echoing_them() -> None:
    with pytest.raises(ValueError) as info:
        normalize_base_url("https://user:hunter2@acme.palantirfoundry.com")
    assert "hunter2" not in str(info.value)


def test_settings_from_env_masks_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "FOUNDRY_HOSTNAME": "acme.palantirfoundry.com",
        "FOUNDRY_TOKEN": SECRET_TOKEN,
        "FOUNDRY_CLIENT_ID": "cid",
        "FOUNDRY_CLIENT_SECRET": SECRET_CLIENT,
        "EXEC_ANALYTICS_CACHE_DIR": str(tmp_path / "c"),
    }
    s = Settings.from_env(env)
    assert (s.hostname, s.token, s.client_id, s.client_secret) == (
        "acme.palantirfoundry.com",
        SECRET_TOKEN,
        "cid",
        SECRET_CLIENT,
    )
    assert s.cache_dir == tmp_path / "c"
    for text in (repr(s), str(s)):
        assert SECRET_TOKEN not in text and SECRET_CLIENT not in text
        assert "acme.palantirfoundry.com" in text and "***" in text
    assert Settings.from_env({"FOUNDRY_TOKEN": "  "}).token is None


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_cache_dir({"EXEC_ANALYTICS_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "exec_analytics"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir({"XDG_CACHE_HOME": "relative/ignored"}) == tmp_path / ".cache" / "exec_analytics"


def test_credentials_and_hostname_from_env(monkeypatch: pytest.MonkeyPatch, sim: Any, rid: str) -> None:
    for name in ("FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FOUNDRY_HOSTNAME", sim.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", DEFAULT_TOKEN)
    with FoundryClient() as client:
        assert client.auth_kind == "token"
        assert client.list_executions_page(rid, start=START, end=END).n_executions > 0
    monkeypatch.delenv("FOUNDRY_TOKEN")
    monkeypatch.setenv("FOUNDRY_CLIENT_ID", DEFAULT_CLIENT_ID)
    monkeypatch.setenv("FOUNDRY_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    with FoundryClient() as client:
        assert client.auth_kind == "oauth"
        assert client.list_executions_page(rid, start=START, end=END).n_executions > 0


def test_missing_or_conflicting_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="hostname"):
        FoundryClient(token="t")
    with pytest.raises(ValueError, match="credentials"):
        FoundryClient("acme.palantirfoundry.com")
    with pytest.raises(ValueError, match="not both"):
        FoundryClient("acme.palantirfoundry.com", token="t", client_id="c", client_secret="s")
    with pytest.raises(ValueError, match="client_secret"):
        FoundryClient("acme.palantirfoundry.com", client_id="c")
    with pytest.raises(ValueError) as info:
        FoundryClient("acme.palantirfoundry.com", token=SECRET_TOKEN + "\n")
    assert SECRET_TOKEN not in str(info.value)
    with pytest.raises(ValueError):
        FoundryClient("acme.palantirfoundry.com", token="t", max_attempts=0)


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = pd.Timestamp("2026-11-20T00:00:00Z").timestamp()
    assert parse_retry_after("Fri, 20 Nov 2026 00:00:30 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Thu, 19 Nov 2026 23:00:00 GMT", now=now) == 0.0


# --------------------------------------------------------------------------- pages


def test_page_fields(sim: Any, rid: str) -> None:
    with _client(sim) as client:
        page = client.list_executions_page(rid, start=START, end=END, page_size=50)
    assert isinstance(page, Page)
    doc = orjson.loads(page.body)
    assert page.n_executions == len(doc["data"]) == 50
    assert page.next_page_token == doc["nextPageToken"]
    assert page.oldest_start == pd.Timestamp(doc["data"][-1]["startTime"])
    assert str(page.oldest_start.tz) == "UTC"
    assert b"\n" not in page.body
    assert "body=<" in repr(page) and page.next_page_token not in repr(page)


def test_iter_pages_returns_exactly_the_ground_truth(sim: Any, workload: Any, rid: str, sim_now: Any) -> None:
    truth = workload.ground_truth(rid, START, END, as_of=sim_now)
    with _client(sim) as client:
        pages = list(client.iter_pages(rid, start=START, end=END, page_size=50))
        stats = client.stats
    assert len(pages) > 2
    assert pages[-1].next_page_token is None
    ids = [e["foundryTraceId"] for p in pages for e in orjson.loads(p.body)["data"]]
    assert ids == list(truth["foundry_trace_id"])
    assert sum(p.n_executions for p in pages) == len(truth)
    assert stats["requests"] == len(pages) and stats["retries"] == 0
    assert stats["bytes_received"] == stats["bytes"] == sum(len(p.body) for p in pages)


class _Failed:
    """A filter builder object: anything with ``to_dict()`` is accepted as ``where``."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "eq", "field": "status", "value": "FAILED"}


@pytest.mark.parametrize(
    "where", [{"type": "eq", "field": "status", "value": "FAILED"}, _Failed(), filters.status("FAILED")]
)
def test_where_filter(sim: Any, workload: Any, rid: str, sim_now: Any, where: Any) -> None:
    start = "2026-11-19T12:00:00Z"
    truth = workload.ground_truth(rid, start, END, as_of=sim_now, where=_Failed().to_dict())
    with _client(sim) as client:
        rows = [
            e for p in client.iter_pages(rid, start=start, end=END, where=where) for e in orjson.loads(p.body)["data"]
        ]
    assert len(rows) == len(truth) > 0
    assert {e["status"] for e in rows} == {"FAILED"}


def test_empty_window_and_missing_data(sim: Any, rid: str) -> None:
    with _client(sim) as client:
        page = client.list_executions_page(rid, start="2020-01-01T00:00Z", end="2020-01-01T01:00Z")
    assert (page.n_executions, page.next_page_token, page.oldest_start) == (0, None, None)


# --------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"resource_rid": "not-a-rid"}, ValueError),
        ({"resource_rid": 42}, TypeError),
        ({"start": "2026-11-19T22:00:00"}, ValueError),  # naive
        ({"start": pd.Timestamp("2026-11-19T22:00")}, ValueError),  # naive Timestamp
        ({"start": END, "end": START}, ValueError),  # reversed
        ({"start": START, "end": START}, ValueError),  # empty
        ({"start": "yesterday"}, ValueError),
        ({"start": 17}, TypeError),
        ({"page_size": 0}, ValueError),
        ({"page_size": 101}, ValueError),
        ({"page_size": "10"}, ValueError),
        ({"page_size": True}, ValueError),
        ({"page_size": 10.0}, ValueError),
        ({"where": {"type": "eq", "field": "status"}}, ValueError),
        ({"where": {"type": "gte", "field": "status", "value": "FAILED"}}, ValueError),
        ({"where": {"type": "eq", "field": "colour", "value": "red"}}, ValueError),
        ({"where": "status = FAILED"}, TypeError),
        ({"page_token": ""}, ValueError),
        ({"page_token": 5}, ValueError),
    ],
)
def test_bad_arguments_rejected_before_any_request(sim: Any, rid: str, kwargs: dict[str, Any], exc: type) -> None:
    args = {"resource_rid": rid, "start": START, "end": END, **kwargs}
    before = sim.request_count
    with _client(sim) as client:
        with pytest.raises(exc):
            client.list_executions_page(args.pop("resource_rid"), **args)
        if "page_token" not in kwargs:
            args = {"resource_rid": rid, "start": START, "end": END, **kwargs}
            with pytest.raises(exc):
                client.iter_pages(args.pop("resource_rid"), **args)  # eager: raises before the first next()
        assert client.stats["requests"] == 0
    assert sim.request_count == before


# --------------------------------------------------------------------------- API errors


def test_401_invalid_token(sim: Any, rid: str) -> None:
    with _client(sim, token="sim-token-unknown") as client, pytest.raises(AuthenticationError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert info.value.status == 401 and info.value.error_name == "InvalidToken"
    _names_resource_and_instance(info.value, rid)


def test_403_token_lacks_permission(sim: Any, rid: str) -> None:
    with _client(sim, token=NO_PERMISSION_TOKEN) as client, pytest.raises(PermissionDeniedError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert info.value.error_name == "ListExecutionsPermissionDenied"
    assert info.value.parameters == {"resourceRid": rid}
    _names_resource_and_instance(info.value, rid)


def test_403_resource_not_listable(sim: Any, workload: Any) -> None:
    restricted = workload.restricted_rids[0]
    with _client(sim) as client, pytest.raises(PermissionDeniedError) as info:
        client.list_executions_page(restricted, start=START, end=END)
    assert info.value.error_name == "ListExecutionsResourcePermissionDenied"
    _names_resource_and_instance(info.value, restricted)


def test_403_api_usage_denied_for_oauth_client_without_scope(fresh_sim: Any, rid: str) -> None:
    fresh_sim.register_oauth_client("no-scope-client", "no-scope-secret", scopes=())
    client = FoundryClient(fresh_sim.url, client_id="no-scope-client", client_secret="no-scope-secret", **FAST)
    with client, pytest.raises(PermissionDeniedError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert info.value.error_name == "ApiUsageDenied"
    assert info.value.parameters == {"missingScope": "api:observability-read"}
    _names_resource_and_instance(info.value, rid)


def test_404_resource_not_found(sim: Any) -> None:
    with _client(sim) as client, pytest.raises(ResourceNotFoundError) as info:
        client.list_executions_page(MISSING_RID, start=START, end=END)
    assert info.value.error_name == "ResourceNotFound"
    _names_resource_and_instance(info.value, MISSING_RID)


def test_404_empty_body_means_endpoint_unavailable(sim: Any, rid: str) -> None:
    # The simulator answers 404 with an empty body for every path it does not serve, like a stack without
    # the endpoint; a base URL with a path prefix sends the request to such a path.
    before = sim.request_count
    with FoundryClient(sim.url + "/no-such-stack", token=DEFAULT_TOKEN, **FAST) as client:
        with pytest.raises(EndpointUnavailableError) as info:
            client.list_executions_page(rid, start=START, end=END)
        assert client.stats["requests"] == 1  # not retried
    assert info.value.status == 404 and rid in str(info.value)
    assert "does not exist" in str(info.value)
    assert sim.request_count == before


def test_400_invalid_page_token(sim: Any, rid: str) -> None:
    with _client(sim) as client, pytest.raises(InvalidPageTokenError) as info:
        client.list_executions_page(rid, start=START, end=END, page_token="v1.bm90LWEtdG9rZW4")
    assert isinstance(info.value, InvalidRequestError) and isinstance(info.value, ValueError)
    _names_resource_and_instance(info.value, rid)


def test_400_expired_page_token(make_sim: Any, rid: str) -> None:
    srv = make_sim(page_token_ttl_s=0.2)
    with _client(srv) as client:
        first = client.list_executions_page(rid, start=START, end=END)
        time.sleep(0.3)
        with pytest.raises(InvalidPageTokenError):
            client.list_executions_page(rid, start=START, end=END, page_token=first.next_page_token)


@pytest.mark.parametrize(
    ("body", "query", "cls", "name"),
    [
        # Requests the client itself refuses to build; sent raw to check the server's answer maps right.
        (
            {"where": {"type": "eq", "field": "colour", "value": "x"}},
            "?preview=true",
            InvalidFilterError,
            "InvalidExecutionFilter",
        ),
        ({"pageSize": 500}, "?preview=true", InvalidRequestError, "InvalidPageSize"),
        ({}, "", InvalidRequestError, "ApiFeaturePreviewUsageOnly"),
    ],
)
def test_400_errors_map_to_invalid_request(
    sim: Any, rid: str, body: dict[str, Any], query: str, cls: type, name: str
) -> None:
    url = f"{sim.url}/api/v2/observability/resources/{rid}/listExecutions{query}"
    raw = orjson.dumps(body)

    class Rewrite(requests.Session):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            request.url, request.body = url, raw
            request.headers["Content-Length"] = str(len(raw))
            return super().send(request, **kwargs)

    with _client(sim, session_factory=lambda: new_session(Rewrite)) as client, pytest.raises(cls) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert info.value.status == 400 and info.value.error_name == name
    _names_resource_and_instance(info.value, rid)


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "throttled"),
    [
        ("p_429_retry_after", 1),
        ("p_429", 1),
        ("p_503", 1),
        ("p_500", 0),
        ("p_drop", 0),
        ("p_truncate", 0),
    ],
)
def test_transient_fault_is_retried(make_sim: Any, rid: str, kind: str, throttled: int) -> None:
    srv = make_sim()
    script = _fault_script(srv, FaultConfig(**{kind: 1.0}, retry_after_s=0.05), FaultConfig())
    with _client(srv, session_factory=script) as client:
        page = client.list_executions_page(rid, start=START, end=END)
        stats = client.stats
    assert page.n_executions == 100
    assert srv.request_count == 2 and sum(srv.fault_counts.values()) == 1
    assert stats["retries"] == 1 and stats["throttled"] == throttled
    assert stats["transport_errors"] == (1 if kind in ("p_drop", "p_truncate") else 0)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("p_429", RateLimitedError),
        ("p_429_retry_after", RateLimitedError),
        ("p_503", RateLimitedError),
        ("p_500", ServerError),
        ("p_drop", TransportError),
        ("p_truncate", TransportError),
    ],
)
def test_persistent_fault_raises_typed_error_after_max_attempts(make_sim: Any, rid: str, kind: str, cls: type) -> None:
    srv = make_sim(faults=FaultConfig(**{kind: 1.0}, retry_after_s=0.01))
    with _client(srv, max_attempts=3) as client, pytest.raises(cls) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert srv.request_count == 3
    assert "after 3 attempts" in str(info.value) and rid in str(info.value)
    if kind == "p_500":
        assert info.value.error_instance_id and info.value.error_instance_id in str(info.value)
        assert info.value.error_name == "Internal"


def test_do_not_retry_hint_raises_at_once(make_sim: Any, rid: str) -> None:
    srv = make_sim(faults=FaultConfig(p_429_do_not_retry=1.0))
    with _client(srv) as client, pytest.raises(RateLimitedError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert srv.request_count == 1
    assert "do-not-retry" in str(info.value)


def test_retry_after_is_a_floor(make_sim: Any, rid: str) -> None:
    srv, clock, sent = make_sim(), FakeClock(), []
    script = _fault_script(
        srv, FaultConfig(p_429_retry_after=1.0, retry_after_s=0.4), FaultConfig(), clock=clock, sent=sent
    )
    with _client(srv, backoff_cap=0.01, clock=clock, session_factory=script) as client:
        client.list_executions_page(rid, start=START, end=END)
        assert client.gate.trips == 1
    (first, _), (second, _) = sent
    assert second - first >= 0.4  # the backoff alone would be at most 0.01


def test_slow_response_read_timeout(make_sim: Any, rid: str) -> None:
    srv = make_sim()
    script = _fault_script(srv, FaultConfig(p_slow=1.0, slow_s=0.3), FaultConfig())
    with _client(srv, read_timeout=0.05, session_factory=script) as client:
        assert client.list_executions_page(rid, start=START, end=END).n_executions == 100
        assert client.stats["retries"] == 1
    srv.faults = FaultConfig(p_slow=1.0, slow_s=0.3)
    srv.reset_counts()
    with _client(srv, read_timeout=0.05, max_attempts=2) as client, pytest.raises(TransportError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert "read timeout" in str(info.value) and "after 2 attempts" in str(info.value)
    assert srv.request_count == 2


def test_retry_budget_bounds_the_total_time(make_sim: Any, rid: str) -> None:
    # A slow server cannot stretch the budget either: see test_faults_client.py (trickling answers).
    srv, clock = make_sim(faults=FaultConfig(p_500=1.0)), FakeClock()
    kwargs = {"max_attempts": 1000, "retry_budget": 0.5, "backoff_base": 0.05, "backoff_cap": 0.1}
    with _client(srv, clock=clock, **kwargs) as client:
        t0 = clock.monotonic()
        with pytest.raises(ServerError) as info:
            client.list_executions_page(rid, start=START, end=END)
        elapsed = clock.monotonic() - t0
    assert elapsed <= 0.5 and sum(clock.sleeps) == pytest.approx(elapsed)
    assert srv.request_count == len(clock.sleeps) + 1 > 5  # 0.5 s of backoffs of at most 0.1 s: several
    assert "gave up (retry_budget)" in str(info.value) and "retry_budget=0.5" in str(info.value)


def test_throttle_pauses_every_thread(make_sim: Any, rid: str) -> None:
    srv, clock, sent = make_sim(faults=FaultConfig(p_429_retry_after=1.0, retry_after_s=0.5)), FakeClock(), []
    script = _fault_script(srv, clock=clock, sent=sent)  # no faults scripted: only records each request
    with _client(srv, max_attempts=1, clock=clock, session_factory=script) as client:
        tripped = clock.monotonic()
        with pytest.raises(RateLimitedError):
            client.list_executions_page(rid, start=START, end=END)
        assert client.gate.remaining() == pytest.approx(0.5)
        srv.faults = FaultConfig()
        srv.reset_counts()
        threads = [
            threading.Thread(target=client.list_executions_page, args=(rid,), kwargs={"start": START, "end": END})
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    after = [when for when, _ in sent[1:]]
    assert len(after) == 4 and min(after) >= tripped + 0.5  # every thread waited for the one 429
    assert srv.request_count == 4 and client.gate.trips == 1 and client.gate.total_wait >= 0.5


def test_gate_alone() -> None:
    clock = FakeClock()
    gate = ThrottleGate(clock)
    assert gate.wait() == 0.0 and clock.sleeps == []
    t0 = clock.monotonic()
    gate.trip(0.2)
    gate.trip(0.05)  # a shorter trip never shortens the pause
    assert gate.wait() == pytest.approx(0.2)
    assert clock.monotonic() - t0 == pytest.approx(0.2) and gate.trips == 2 and gate.remaining() == 0.0
    gate.trip(0.3)
    clock.advance(0.1)  # time passing elsewhere shortens what is left to wait
    assert gate.remaining() == pytest.approx(0.2)


_POLICY = RetryPolicy(max_attempts=4, budget=10.0, backoff_base=0.25, backoff_cap=1.0)


@pytest.mark.parametrize(
    ("outcome", "attempt", "elapsed", "kwargs", "expected"),
    [
        # Backoff: full jitter over min(cap, base * 2**retry); jitter 0.5 here.
        (Outcome.TRANSIENT, 1, 0.0, {}, Decision(True, 0.125)),
        (Outcome.SERVER_ERROR, 2, 0.0, {}, Decision(True, 0.25)),
        (Outcome.SERVER_ERROR, 3, 0.0, {}, Decision(True, 0.5)),
        (Outcome.TRANSIENT, 3, 0.0, {"jitter": 0.0}, Decision(True, 0.0)),
        # Retry-After is a floor for throttled answers only.
        (Outcome.THROTTLED, 1, 0.0, {"retry_after": 3.0}, Decision(True, 3.0)),
        (Outcome.THROTTLED, 1, 0.0, {"retry_after": 0.01}, Decision(True, 0.125)),
        (Outcome.SERVER_ERROR, 1, 0.0, {"retry_after": 3.0}, Decision(True, 0.125)),
        # Bounds: attempts, then the budget (the wait must end inside it).
        (Outcome.TRANSIENT, 4, 0.0, {}, Decision(False, 0.5, "max_attempts")),
        (Outcome.TRANSIENT, 1, 9.875, {}, Decision(False, 0.125, "retry_budget")),
        (Outcome.TRANSIENT, 1, 9.8, {}, Decision(True, 0.125)),
        (Outcome.THROTTLED, 1, 0.0, {"retry_after": 10.0}, Decision(False, 10.0, "retry_budget")),
        # What is never retried.
        (Outcome.FATAL, 1, 0.0, {}, Decision(False, 0.0, "not retryable")),
        (Outcome.THROTTLED, 1, 0.0, {"do_not_retry": True}, Decision(False, 0.0, "do-not-retry")),
        (Outcome.SERVER_ERROR, 1, 0.0, {"do_not_retry": True}, Decision(False, 0.0, "do-not-retry")),
        (Outcome.TRANSIENT, 1, 0.0, {"do_not_retry": True}, Decision(True, 0.125)),
    ],
)
def test_retry_decision(
    outcome: Outcome, attempt: int, elapsed: float, kwargs: dict[str, Any], expected: Decision
) -> None:
    kwargs = {"jitter": 0.5, **kwargs}
    assert decide(outcome, attempt=attempt, elapsed=elapsed, policy=_POLICY, **kwargs) == expected


def test_a_retry_needs_time_left_for_its_attempt() -> None:
    """A retry whose wait leaves less than ``min_attempt`` of the budget is not made: it could only time out."""
    policy = RetryPolicy(max_attempts=4, budget=10.0, backoff_base=0.25, backoff_cap=1.0, min_attempt=1.0)
    assert decide(Outcome.SERVER_ERROR, attempt=1, elapsed=8.8, policy=policy, jitter=0.5) == Decision(True, 0.125)
    assert decide(Outcome.SERVER_ERROR, attempt=1, elapsed=8.9, policy=policy, jitter=0.5) == Decision(
        False, 0.125, "retry_budget"
    )


def test_concurrent_use_under_faults(make_sim: Any, rid: str) -> None:
    srv = make_sim(faults=FaultConfig(seed=3, p_429=0.15, p_500=0.1, p_drop=0.05))
    windows = [(f"2026-11-19T{h:02d}:00:00Z", f"2026-11-19T{h:02d}:30:00Z") for h in range(8)]
    results: dict[int, int] = {}
    with _client(srv, max_attempts=10, pool_size=4, clock=FakeClock()) as client:

        def work(i: int) -> None:
            s, e = windows[i]
            results[i] = sum(p.n_executions for p in client.iter_pages(rid, start=s, end=e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(windows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = client.stats
    assert len(results) == len(windows)
    assert stats["requests"] == srv.request_count
    assert stats["throttled"] == srv.fault_counts["429"]
    assert stats["retries"] == sum(srv.fault_counts.values())


# --------------------------------------------------------------------------- OAuth


def _list_statuses(srv: Any, n: int) -> list[int]:
    """The statuses of the listExecutions answers; the server logs each just after sending it, so wait for n."""
    deadline = time.monotonic() + 2.0
    while True:
        statuses = [status for path, status in list(srv.log) if "listExecutions" in path]
        if len(statuses) >= n or time.monotonic() > deadline:
            return statuses
        time.sleep(0.01)


def test_oauth_client_credentials(fresh_sim: Any, rid: str) -> None:
    client = FoundryClient(fresh_sim.url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, **FAST)
    with client:
        for _ in range(3):
            client.list_executions_page(rid, start=START, end=END, page_size=5)
        assert client.stats["token_refreshes"] == 1
    assert DEFAULT_CLIENT_ID in repr(client) and DEFAULT_CLIENT_SECRET not in repr(client)


def test_oauth_token_refreshed_before_expiry(make_sim: Any, rid: str) -> None:
    srv, clock = make_sim(oauth_token_ttl_s=1.0), FakeClock()  # expires_in=1: refreshed after half of it
    client = FoundryClient(
        srv.url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, clock=clock, **FAST
    )
    with client:
        client.list_executions_page(rid, start=START, end=END, page_size=5)
        clock.advance(0.4)
        client.list_executions_page(rid, start=START, end=END, page_size=5)
        assert client.stats["token_refreshes"] == 1  # not yet due
        clock.advance(0.2)
        client.list_executions_page(rid, start=START, end=END, page_size=5)
        assert client.stats["token_refreshes"] == 2
    assert _list_statuses(srv, 3) == [200, 200, 200]  # refreshed in time: no 401


def test_oauth_refresh_and_retry_once_after_revocation(fresh_sim: Any, rid: str) -> None:
    client = FoundryClient(fresh_sim.url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, **FAST)
    with client:
        client.list_executions_page(rid, start=START, end=END, page_size=5)
        assert fresh_sim.revoke_oauth_tokens() == 1
        assert client.list_executions_page(rid, start=START, end=END, page_size=5).n_executions == 5
        assert client.stats["token_refreshes"] == 2
    assert _list_statuses(fresh_sim, 3) == [200, 401, 200]


def test_oauth_refresh_is_shared_between_threads(fresh_sim: Any, rid: str) -> None:
    client = FoundryClient(fresh_sim.url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, **FAST)
    with client:
        threads = [
            threading.Thread(target=client.list_executions_page, args=(rid,), kwargs={"start": START, "end": END})
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.stats["token_refreshes"] == 1
    assert fresh_sim.request_count == 6


def test_oauth_bad_secret(fresh_sim: Any, rid: str) -> None:
    client = FoundryClient(fresh_sim.url, client_id=DEFAULT_CLIENT_ID, client_secret=SECRET_CLIENT, **FAST)
    with client, pytest.raises(AuthenticationError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert "invalid_client" in str(info.value)
    assert SECRET_CLIENT not in str(info.value) and fresh_sim.request_count == 0


# --------------------------------------------------------------------------- secrets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_clean(exc: BaseException, *secrets: str) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    chained = exc.__cause__ or exc.__context__
    assert chained is None, f"{type(exc).__name__} chains {type(chained).__name__}, which may carry headers"
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_token_never_leaks(make_sim: Any, rid: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included
    srv = make_sim()
    errors: list[BaseException] = []
    client = FoundryClient(srv.url, token=SECRET_TOKEN, **FAST)
    for text in (repr(client), str(client), repr(client.stats), repr(client.gate)):
        assert SECRET_TOKEN not in text
    with client:
        with pytest.raises(AuthenticationError) as info:  # 401: the server does not know the token
            client.list_executions_page(rid, start=START, end=END)
        errors.append(info.value)
        srv.faults = FaultConfig(p_500=1.0)
        with pytest.raises(ServerError) as info:
            client.list_executions_page(rid, start=START, end=END)
        errors.append(info.value)
        srv.faults = FaultConfig(p_drop=1.0)
        with pytest.raises(TransportError) as info:
            client.list_executions_page(rid, start=START, end=END)
        errors.append(info.value)
        srv.faults = FaultConfig(p_slow=1.0, slow_s=0.3)
        slow = FoundryClient(srv.url, token=SECRET_TOKEN, **{**FAST, "max_attempts": 1}, read_timeout=0.05)
        with slow, pytest.raises(TransportError) as info:
            slow.list_executions_page(rid, start=START, end=END)
        errors.append(info.value)
    refused = FoundryClient(f"http://127.0.0.1:{_free_port()}", token=SECRET_TOKEN, **FAST)
    with refused, pytest.raises(TransportError) as info:
        refused.list_executions_page(rid, start=START, end=END)
    errors.append(info.value)
    assert "Connection refused" in str(info.value) or "Errno" in str(info.value)
    for exc in errors:
        _assert_clean(exc, SECRET_TOKEN)
    assert any(r.name == "exec_analytics.client" for r in caplog.records)
    assert SECRET_TOKEN not in caplog.text
    for record in caplog.records:
        assert SECRET_TOKEN not in record.getMessage()


def test_oauth_secrets_never_leak(fresh_sim: Any, rid: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fresh_sim.register_oauth_client("leak-check", SECRET_CLIENT)
    sent: list[Any] = []
    script = _fault_script(fresh_sim, sent=sent)  # records what is sent, to learn the access token
    client = FoundryClient(
        fresh_sim.url, client_id="leak-check", client_secret=SECRET_CLIENT, session_factory=script, **FAST
    )
    with client:
        client.list_executions_page(rid, start=START, end=END)
        access_token = sent[-1][1].headers["Authorization"].removeprefix("Bearer ")
        assert access_token and access_token != sent[-1][1].headers["Authorization"]
        fresh_sim.faults = FaultConfig(p_500=1.0)
        with pytest.raises(ServerError) as info:
            client.list_executions_page(rid, start=START, end=END)
        for text in (repr(client), str(client)):
            assert SECRET_CLIENT not in text and access_token not in text
    _assert_clean(info.value, SECRET_CLIENT, access_token)
    assert SECRET_CLIENT not in caplog.text and access_token not in caplog.text


# --------------------------------------------------------------------------- what the simulator cannot do


class _CannedServer(ThreadingHTTPServer):
    """A loopback server answering POSTs from a script of (status, headers, body); the last one repeats."""

    daemon_threads = True

    def __init__(self, script: list[tuple[int, dict[str, str], bytes]]) -> None:
        self.script = list(script)
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        super().__init__(("127.0.0.1", 0), _CannedHandler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CannedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _CannedServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.path, dict(self.headers), body))
        script = self.server.script
        status, headers, payload = script.pop(0) if len(script) > 1 else script[0]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if headers.get("Connection") == "close":
            self.close_connection = True  # body delimited by closing: no Content-Length
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def canned() -> Any:
    servers: list[_CannedServer] = []

    def make(*script: tuple[int, dict[str, str], bytes]) -> _CannedServer:
        servers.append(_CannedServer(list(script)))
        return servers[-1]

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _page(token: str | None, start: str = "2026-11-19T22:30:00.000Z") -> tuple[int, dict[str, str], bytes]:
    doc: dict[str, Any] = {"data": [{"startTime": start}]}
    if token:
        doc["nextPageToken"] = token
    return 200, {"Content-Type": "application/json"}, orjson.dumps(doc)


def test_request_shape(canned: Any, rid: str) -> None:
    srv = canned(_page(None))
    where = {"type": "in", "field": "status", "value": ["FAILED"]}
    start = pd.Timestamp("2026-11-19T23:00:00.123456+01:00")
    with FoundryClient(srv.url, token=DEFAULT_TOKEN, **FAST) as client:
        client.list_executions_page(rid, start=start, end=END, where=where, page_size=7, page_token="v1.abc")
    path, headers, body = srv.received[0]
    assert path == f"/api/v2/observability/resources/{rid}/listExecutions?preview=true"
    assert headers["Authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("exec-analytics/")
    assert orjson.loads(body) == {
        "startTime": "2026-11-19T22:00:00.123Z",
        "endTime": "2026-11-19T23:00:00.000Z",
        "pageSize": 7,
        "where": where,
        "pageToken": "v1.abc",
    }


def test_page_token_cycle_is_detected(canned: Any, rid: str) -> None:
    srv = canned(_page("v1.A"), _page("v1.B"), _page("v1.A"))
    with FoundryClient(srv.url, token=DEFAULT_TOKEN, **FAST) as client:
        pages = client.iter_pages(rid, start=START, end=END)
        with pytest.raises(ExecAnalyticsError, match="already seen") as info:
            list(pages)
    assert not isinstance(info.value, ApiError) and rid in str(info.value)
    assert len(srv.received) == 3


def test_non_json_200_is_retried_then_missing_data_is_empty(canned: Any, rid: str) -> None:
    srv = canned(
        (200, {"Connection": "close"}, b'{"data": [{"startTi'),  # cut short, no Content-Length to notice it
        (200, {}, b"<html>proxy error</html>"),
        (200, {}, b'{\n  "nextPageToken": null\n}\n'),
    )
    with FoundryClient(srv.url, token=DEFAULT_TOKEN, **FAST) as client:
        page = client.list_executions_page(rid, start=START, end=END)
        assert client.stats["retries"] == 2 and client.stats["transport_errors"] == 2
    assert (page.n_executions, page.next_page_token, page.oldest_start) == (0, None, None)
    assert b"\n" not in page.body and orjson.loads(page.body) == {"nextPageToken": None}


def test_redirect_is_not_followed(canned: Any, rid: str) -> None:
    srv = canned((302, {"Location": "https://login.example.com/?access_token=abc"}, b""))
    with FoundryClient(srv.url, token=DEFAULT_TOKEN, **FAST) as client, pytest.raises(ApiError) as info:
        client.list_executions_page(rid, start=START, end=END)
    assert info.value.status == 302 and "login.example.com" in str(info.value)
    assert "access_token=abc" not in str(info.value) and len(srv.received) == 1


def test_closed_client_refuses_requests(sim: Any, rid: str) -> None:
    client = _client(sim)
    client.list_executions_page(rid, start=START, end=END, page_size=1)
    client.close()
    with pytest.raises(ExecAnalyticsError, match="closed"):
        client.list_executions_page(rid, start=START, end=END)
