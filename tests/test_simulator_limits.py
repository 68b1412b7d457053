"""The simulator's rate limits: exact admission at the boundaries, 429s over real HTTP, exact counts.

The limiter is driven by a fake monotonic clock wherever time matters, so no test sleeps or depends on how
fast the machine is; concurrency is made deterministic by holding admitted requests inside the server until
the test lets them go.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from exec_analytics.client import FoundryClient
from exec_analytics.errors import RateLimitedError
from exec_analytics.simulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    LIMIT_KINDS,
    OAUTH_TOKEN_PATH,
    FaultConfig,
    LimitStats,
    RateLimiter,
    RateLimits,
    ResourceProfile,
    SimClock,
    SimulatorServer,
    Workload,
)
from exec_analytics.simulator.limits import Throttle

NOW = pd.Timestamp("2026-11-28T00:00:00Z")
# One quiet hour: every request is answered in a single small page.
BODY = {"startTime": "2026-11-27T10:00:00Z", "endTime": "2026-11-27T10:05:00Z", "pageSize": 1}
# Times on the fake clock are multiples of 2**-10 s, exact in binary floating point, so "60 s after" is exact.
TICK = 2.0**-10


class FakeMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class HeldWorkload(Workload):
    """A workload whose lookups wait until released: requests stay in flight inside the server on demand."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.release = threading.Event()
        self.arrived = 0
        self._cond = threading.Condition()

    def profile(self, rid: str) -> ResourceProfile:
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
        assert self.release.wait(timeout=60), "the test never released the held requests"
        return super().profile(rid)

    def wait_arrived(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.arrived >= n, timeout=60)


@pytest.fixture(scope="module")
def wl() -> Workload:
    return Workload(seed=0)


@pytest.fixture
def new_srv(wl: Workload) -> Iterator[Any]:
    started: list[SimulatorServer] = []

    def make(workload: Workload | None = None, **kwargs: Any) -> SimulatorServer:
        kwargs.setdefault("clock", SimClock(NOW))
        server = SimulatorServer(workload or wl, **kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def post(srv: SimulatorServer, token: str | None, session: Any = requests) -> requests.Response:
    url = f"{srv.url}/api/v2/observability/resources/{srv.workload.main.rid}/listExecutions?preview=true"
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response: requests.Response = session.post(url, json=BODY, headers=headers, timeout=60)
    return response


def throttled_body(r: requests.Response) -> dict[str, Any]:
    """The 429's error body, checked against the documented shape."""
    assert r.status_code == 429, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"errorCode", "errorName", "errorInstanceId", "parameters"}
    assert (body["errorCode"], body["errorName"]) == ("TOO_MANY_REQUESTS", "TooManyRequests")
    return body


def oauth_token(srv: SimulatorServer) -> str:
    r = requests.post(
        srv.url + OAUTH_TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


# --- the limiter alone, on a fake clock ------------------------------------------------------------------


def test_the_5001st_request_in_a_minute_is_throttled_and_a_slot_frees_60_s_after_the_first() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter("user", monotonic=clock)
    t0 = clock.t
    for i in range(5_000):
        clock.t = t0 + i * 8 * TICK  # 5,000 requests over 39 s
        assert limiter.acquire("u") is None
        limiter.release("u")
    clock.t = t0 + 59.5
    assert limiter.acquire("u") == Throttle("requestsPerMinute", 5_000, 1)
    clock.t = t0 + 60 - TICK
    assert limiter.acquire("u") == Throttle("requestsPerMinute", 5_000, 1)
    clock.t = t0 + 60  # the first admission leaves the window (t - 60 s, t]
    assert limiter.acquire("u") is None
    limiter.release("u")
    # ... and only the first: the second frees 8 ticks later
    assert limiter.acquire("u") == Throttle("requestsPerMinute", 5_000, 1)
    clock.t = t0 + 60 + 8 * TICK
    assert limiter.acquire("u") is None
    limiter.release("u")
    assert limiter.stats("u") == LimitStats(
        admitted=5_002, throttled_per_minute=3, throttled_in_flight=0, max_in_flight=1, max_per_minute=5_000
    )


def test_retry_after_is_the_rounded_up_wait_for_the_oldest_slot_and_can_be_switched_off() -> None:
    clock = FakeMonotonic()
    t0 = clock.t
    limiter = RateLimiter(
        {"a": RateLimits(per_minute=2, in_flight=None), "b": RateLimits(2, None, retry_after=False)}, monotonic=clock
    )
    for who in ("a", "b"):
        assert limiter.acquire(who) is None
    clock.t = t0 + 10
    for who in ("a", "b"):
        assert limiter.acquire(who) is None
    clock.t = t0 + 30.25
    assert limiter.acquire("a") == Throttle("requestsPerMinute", 2, 30)  # ceil(60 - 30.25)
    assert limiter.acquire("b") == Throttle("requestsPerMinute", 2, None)
    clock.t = t0 + 59 + TICK
    assert limiter.acquire("a") == Throttle("requestsPerMinute", 2, 1)


def test_in_flight_limit_is_exact_and_per_principal() -> None:
    limiter = RateLimiter("user", monotonic=FakeMonotonic())
    for _ in range(30):
        assert limiter.acquire("u") is None
    assert limiter.acquire("u") == Throttle("concurrentRequests", 30, None)
    assert limiter.acquire("other") is None  # each principal has limits of its own
    limiter.release("u")
    assert limiter.acquire("u") is None
    assert limiter.acquire("u") == Throttle("concurrentRequests", 30, None)
    stats = limiter.stats("u")
    assert (stats.admitted, stats.throttled_in_flight, stats.throttled, stats.max_in_flight) == (31, 2, 2, 30)
    assert limiter.stats("other").admitted == 1 and limiter.stats("nobody") == LimitStats()
    with pytest.raises(RuntimeError):
        limiter.release("nobody")


def test_when_both_limits_are_exceeded_the_minute_limit_is_reported() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(RateLimits(per_minute=2, in_flight=1), monotonic=clock)
    assert limiter.acquire("u") is None
    assert limiter.acquire("u") == Throttle("concurrentRequests", 1, None)
    limiter.release("u")
    clock.t += 1
    assert limiter.acquire("u") is None
    assert limiter.acquire("u") == Throttle("requestsPerMinute", 2, 59)
    assert limiter.stats("u") == LimitStats(
        admitted=2, throttled_per_minute=1, throttled_in_flight=1, max_in_flight=1, max_per_minute=2
    )


def test_service_users_have_no_request_limit_and_800_in_flight() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter("service", monotonic=clock)
    for _ in range(20_000):
        assert limiter.acquire("svc") is None
        limiter.release("svc")
    for _ in range(800):
        assert limiter.acquire("svc") is None
    assert limiter.acquire("svc") == Throttle("concurrentRequests", 800, None)
    assert limiter.stats("svc").max_per_minute == 20_800
    assert LIMIT_KINDS["user"] == RateLimits(per_minute=5_000, in_flight=30) == RateLimits()
    assert LIMIT_KINDS["service"] == RateLimits(per_minute=None, in_flight=800)


def test_sliding_window_admissions_and_peak_match_an_independent_reference() -> None:
    rng = np.random.default_rng(7)
    # Bursty arrivals over ~5 minutes: quiet stretches and bursts far above the limit.
    gaps = np.where(rng.random(3_000) < 0.2, rng.exponential(0.8, 3_000), rng.exponential(0.02, 3_000))
    t0 = 1000.0
    arrivals = np.round((t0 + np.cumsum(gaps)) / TICK) * TICK
    limit = 120
    clock = FakeMonotonic()
    limiter = RateLimiter({"limited": RateLimits(per_minute=limit, in_flight=None)}, monotonic=clock)
    got = []
    for t in arrivals:
        clock.t = float(t)
        got.append(limiter.acquire("limited") is None)
        if got[-1]:
            limiter.release("limited")
        assert limiter.acquire("measured") is None  # not named in the mapping: measured, never throttled
        limiter.release("measured")

    # Reference: admit when fewer than `limit` admissions lie in (t - 60, t].
    admitted: list[float] = []
    want = []
    for t in arrivals.tolist():
        ok = len(admitted) - bisect.bisect_right(admitted, t - 60.0) < limit
        want.append(ok)
        if ok:
            admitted.append(t)
    assert got == want and 0 < sum(want) < len(want)

    def peak(a: np.ndarray) -> int:
        return int((np.arange(len(a)) - np.searchsorted(a, a - 60.0, side="right") + 1).max())

    stats = limiter.stats("limited")
    assert stats.admitted == sum(want) and stats.throttled_per_minute == len(want) - sum(want)
    assert stats.max_per_minute == peak(np.array(admitted)) == limit
    assert limiter.stats("measured").max_per_minute == peak(arrivals) > limit


def test_limits_are_validated() -> None:
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ValueError, match="positive integer"):
            RateLimits(per_minute=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="positive integer"):
            RateLimits(in_flight=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user, service"):
        RateLimiter("admin")
    with pytest.raises(ValueError, match="user, service"):
        RateLimiter({"t": "admin"})
    limiter = RateLimiter({"t": "service"})
    assert limiter.limits_for("t") == LIMIT_KINDS["service"] and limiter.limits_for("x") is None


def test_reset_keeps_what_is_in_flight_and_in_the_window() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(RateLimits(per_minute=3, in_flight=2), monotonic=clock)
    assert limiter.acquire("u") is None and limiter.acquire("u") is None
    assert limiter.acquire("u") == Throttle("concurrentRequests", 2, None)
    limiter.reset_stats()
    assert limiter.stats("u") == LimitStats(max_in_flight=2)
    limiter.release("u")
    assert limiter.acquire("u") is None  # the third of the minute
    assert limiter.acquire("u") is not None  # the limits did not forget the requests before the reset
    limiter.release("u")
    assert limiter.stats("u") == LimitStats(admitted=1, throttled_per_minute=1, max_in_flight=2, max_per_minute=3)


# --- the server over real HTTP ------------------------------------------------------------------------------


def test_limits_are_off_by_default(new_srv: Any) -> None:
    srv = new_srv()
    assert post(srv, srv.token).status_code == 200
    assert srv.rate_limits(srv.token) is None
    with pytest.raises(RuntimeError, match="limits="):
        srv.limit_stats(srv.token)


def test_past_the_minute_limit_the_server_answers_429_that_the_client_reads_as_rate_limited(new_srv: Any) -> None:
    clock = FakeMonotonic()
    t0 = clock.t
    srv = new_srv(limits=RateLimiter(RateLimits(per_minute=3, in_flight=None), monotonic=clock))
    for i in range(3):
        clock.t = t0 + 10 * i
        assert post(srv, srv.token).status_code == 200
    clock.t = t0 + 45.5
    r = post(srv, srv.token)
    body = throttled_body(r)
    assert body["parameters"] == {"limit": "requestsPerMinute", "maximum": 3}
    assert r.headers["Retry-After"] == "15"  # the first admission leaves the window at t0 + 60

    client = FoundryClient(srv.url, token=srv.token, max_attempts=1, retry_budget=1.0, backoff_base=0.0)
    with client, pytest.raises(RateLimitedError) as info:
        client.list_executions_page(srv.workload.main.rid, start=BODY["startTime"], end=BODY["endTime"])
    err = info.value
    assert (err.status, err.error_code, err.error_name) == (429, "TOO_MANY_REQUESTS", "TooManyRequests")
    assert err.parameters == {"limit": "requestsPerMinute", "maximum": 3}
    assert srv.token not in str(err) and srv.token not in repr(srv.limit_stats(srv.token))

    clock.t = t0 + 60
    assert post(srv, srv.token).status_code == 200
    assert srv.limit_stats(srv.token) == LimitStats(
        admitted=4, throttled_per_minute=2, max_in_flight=1, max_per_minute=3
    )
    assert srv.log.count((srv.log[0][0], 429)) == 2 and srv.request_count == 6
    assert not srv.fault_counts  # the limiter's 429s are not injected faults


def test_31_concurrent_requests_with_limit_30_exactly_the_excess_get_429(new_srv: Any) -> None:
    held = HeldWorkload()
    srv = new_srv(held, limits="user")
    assert srv.rate_limits(srv.token) == LIMIT_KINDS["user"]

    def one(_: int) -> int:
        with requests.Session() as s:  # a connection of its own, like a worker of a pool
            return post(srv, srv.token, s).status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = pool.map(one, range(30))
        try:
            assert held.wait_arrived(30)  # 30 admitted and held inside the server
            assert srv.limit_stats(srv.token).max_in_flight == 30
            for _ in range(2):
                r = post(srv, srv.token)
                assert throttled_body(r)["parameters"] == {"limit": "concurrentRequests", "maximum": 30}
                assert "Retry-After" not in r.headers  # when a request in flight ends is unknown
            client = FoundryClient(srv.url, token=srv.token, max_attempts=1, retry_budget=1.0, backoff_base=0.0)
            with client, pytest.raises(RateLimitedError, match="TooManyRequests"):
                client.list_executions_page(srv.workload.main.rid, start=BODY["startTime"], end=BODY["endTime"])
        finally:
            held.release.set()
        assert list(statuses) == [200] * 30
    assert post(srv, srv.token).status_code == 200  # the slots are free again
    assert held.arrived == 31
    assert srv.limit_stats(srv.token) == LimitStats(
        admitted=31, throttled_per_minute=0, throttled_in_flight=3, max_in_flight=30, max_per_minute=31
    )


def test_a_slot_is_free_as_soon_as_its_answer_arrives(new_srv: Any) -> None:
    # Two connections taking turns with one slot: the next request is sent the moment the previous answer is
    # read, and must never find that request still counted in flight.
    srv = new_srv(limits=RateLimits(per_minute=None, in_flight=1))
    with requests.Session() as a, requests.Session() as b:
        statuses = [post(srv, srv.token, (a, b)[i % 2]).status_code for i in range(300)]
    assert statuses == [200] * 300
    assert srv.limit_stats(srv.token) == LimitStats(admitted=300, max_in_flight=1, max_per_minute=300)


def test_oauth_tokens_of_one_client_share_its_limits_and_unnamed_tokens_are_measured(new_srv: Any) -> None:
    clock = FakeMonotonic()
    limits = {DEFAULT_CLIENT_ID: RateLimits(per_minute=2, in_flight=None)}
    srv = new_srv(limits=RateLimiter(limits, monotonic=clock))
    first, second = oauth_token(srv), oauth_token(srv)
    assert first != second
    assert post(srv, first).status_code == 200 and post(srv, second).status_code == 200
    assert throttled_body(post(srv, first))["parameters"]["maximum"] == 2
    for _ in range(5):
        assert post(srv, srv.token).status_code == 200  # the bearer token is not named: never throttled
    assert post(srv, None).status_code == 401  # no credentials: nobody's request
    assert post(srv, "sim-token-unknown").status_code == 401
    assert srv.limit_stats(DEFAULT_CLIENT_ID) == LimitStats(
        admitted=2, throttled_per_minute=1, max_per_minute=2, max_in_flight=1
    )
    assert srv.limit_stats(srv.token) == LimitStats(admitted=5, max_in_flight=1, max_per_minute=5)
    assert srv.limit_stats(first) == LimitStats()  # access tokens are counted under their client
    assert srv.rate_limits(srv.token) is None and srv.rate_limits(DEFAULT_CLIENT_ID) == limits[DEFAULT_CLIENT_ID]


def test_counts_are_exact_under_concurrent_load_with_latency(new_srv: Any) -> None:
    # A frozen clock puts every request in one window, so the peak per minute must equal the admissions.
    clock = FakeMonotonic()
    limiter = RateLimiter(RateLimits(per_minute=None, in_flight=4), monotonic=clock)
    srv = new_srv(limits=limiter, faults=FaultConfig(latency_s=0.003))

    def worker(_: int) -> list[int]:
        with requests.Session() as s:
            return [post(srv, srv.token, s).status_code for _ in range(15)]

    with ThreadPoolExecutor(8) as pool:
        statuses = [code for codes in pool.map(worker, range(8)) for code in codes]
    assert set(statuses) <= {200, 429}
    stats = srv.limit_stats(srv.token)
    assert stats.admitted == statuses.count(200) == stats.max_per_minute
    assert stats.throttled_in_flight == statuses.count(429) and stats.throttled_per_minute == 0
    assert 1 <= stats.max_in_flight <= 4
    srv.reset_counts()
    assert srv.limit_stats(srv.token) == LimitStats() and srv.request_count == 0
