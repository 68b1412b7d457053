"""The client-side limiter: limits respected before sending, measured at the simulator that enforces them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from exec_analytics.client import FoundryClient
from exec_analytics.client.limiter import TOKEN_KINDS, Limiter, Limits
from exec_analytics.errors import RateLimitedError
from exec_analytics.simulator import LIMIT_KINDS, RateLimits, SimulatorServer

START, END = "2026-11-18T00:00:00Z", "2026-11-18T01:00:00Z"


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def test_token_kinds_match_the_documented_limits_the_simulator_enforces() -> None:
    for kind, sim in LIMIT_KINDS.items():
        ours = TOKEN_KINDS[kind]
        assert (ours.per_minute, ours.in_flight, ours.window_s) == (sim.per_minute, sim.in_flight, sim.window_s)
    assert Limits.of_kind("user") == Limits(5_000, 30)
    assert Limiter("service").limits == Limits(None, 800)
    with pytest.raises(ValueError, match="token kind"):
        Limits.of_kind("admin")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="per_minute"):
            Limits(per_minute=bad, in_flight=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_s"):
        Limits(per_minute=1, in_flight=None, window_s=0)


def test_a_slot_frees_one_window_after_its_answer_not_after_its_send() -> None:
    clock = FakeClock()
    limiter = Limiter(Limits(per_minute=3, in_flight=None, window_s=10.0), clock=clock)
    t0 = clock.t
    for _ in range(3):
        assert limiter.acquire() == 0.0
        clock.t += 2.0  # the answer takes 2 s
        limiter.release()
    # Answers arrived at t0+2, t0+4, t0+6: the first slot frees at t0+12, not t0+10 (10 s after its send).
    waited = limiter.acquire()
    assert clock.t == t0 + 12.0
    assert waited == pytest.approx(6.0)
    limiter.release()
    assert limiter.stats["requests"] == 4 and limiter.stats["in_flight"] == 0
    with pytest.raises(RuntimeError, match="without a matching"):
        limiter.release()


def test_when_every_slot_is_in_flight_only_an_answer_frees_one() -> None:
    limiter = Limiter(Limits(per_minute=None, in_flight=2))
    limiter.acquire()
    limiter.acquire()
    entered = threading.Event()

    def third() -> None:
        limiter.acquire()
        entered.set()

    t = threading.Thread(target=third)
    t.start()
    assert not entered.wait(0.05)  # blocked while two are in flight
    limiter.release()
    assert entered.wait(5.0)
    t.join()
    assert limiter.stats["max_in_flight"] == 2


def _hammer(srv: SimulatorServer, client: FoundryClient, workers: int, total: int) -> list[str]:
    rid = srv.workload.main.rid
    counter = iter(range(total))
    lock = threading.Lock()
    errors: list[str] = []

    def worker(_: int) -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            try:
                client.list_executions_page(rid, start=START, end=END, page_size=5)
            except RateLimitedError as exc:
                errors.append(type(exc).__name__)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    return errors


@pytest.mark.parametrize("workers", [8, 24, 64])
def test_the_limiter_never_exceeds_either_limit_measured_at_the_simulator(
    make_sim: Callable[..., SimulatorServer], workers: int
) -> None:
    # The documented limits scaled down 60-fold in time: 40 requests per 1 s window (as 2,400/min), 6 in flight.
    per_window, in_flight, window = 40, 6, 1.0
    srv = make_sim(limits=RateLimits(per_minute=per_window, in_flight=in_flight, window_s=window))
    limiter = Limiter(Limits(per_minute=per_window, in_flight=in_flight, window_s=window))
    total = 100  # two and a half windows
    with FoundryClient(srv.url, token=srv.token, max_attempts=1, limiter=limiter, pool_size=workers) as client:
        errors = _hammer(srv, client, workers, total)
    stats = srv.limit_stats(srv.token)
    assert errors == [] and stats.throttled == 0
    assert stats.admitted == total
    assert stats.max_in_flight <= in_flight
    assert stats.max_per_minute <= per_window
    # Respected, not under-used: the window fills to the limit, and every worker beyond 6 waited its turn.
    assert stats.max_per_minute == per_window
    assert limiter.stats["max_in_flight"] == in_flight


def test_without_the_limiter_the_same_load_is_throttled(make_sim: Callable[..., SimulatorServer]) -> None:
    # The control: the simulator does enforce what the test above measures.
    srv = make_sim(limits=RateLimits(per_minute=40, in_flight=6, window_s=1.0))
    with FoundryClient(srv.url, token=srv.token, max_attempts=1, pool_size=24) as client:
        errors = _hammer(srv, client, 24, 100)
    assert errors and srv.limit_stats(srv.token).throttled == len(errors)


def test_waiting_for_the_limiter_does_not_eat_the_retry_budget(make_sim: Callable[..., SimulatorServer]) -> None:
    srv = make_sim(limits=RateLimits(per_minute=2, in_flight=None, window_s=0.3))
    limiter = Limiter(Limits(per_minute=2, in_flight=None, window_s=0.3))
    seen: list[Any] = []
    with FoundryClient(srv.url, token=srv.token, retry_budget=0.05, max_attempts=1, limiter=limiter) as client:
        for _ in range(5):  # the 3rd and 5th wait ~0.3 s, six times the budget, and still succeed
            seen.append(client.list_executions_page(srv.workload.main.rid, start=START, end=END, page_size=1))
    assert len(seen) == 5 and srv.limit_stats(srv.token).throttled == 0
    assert limiter.stats["waited_s"] > 0.05


def test_the_client_rejects_a_limiter_of_another_type() -> None:
    with pytest.raises(TypeError, match="limiter"):
        FoundryClient("http://127.0.0.1:1", token="t", limiter="user")  # type: ignore[arg-type]


def test_the_simulate_command_enforces_a_token_kinds_limits() -> None:
    # The banner reads the limits back from the running server's limiter: the flag reached the server.
    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "exec_analytics.cli", "simulate", "--port", "0", "--enforce-limits", "service"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                break
    finally:
        proc.kill()
        proc.wait()
    text = "".join(lines)
    assert "rate limits (bearer token): unlimited requests/minute, 800 in flight; excess gets 429" in text
