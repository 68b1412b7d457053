"""Crash safety and concurrency of the history: refreshes killed with SIGKILL, and two processes racing.

Each refresh runs in a subprocess against the simulator served from this process. Its clock is passed in, so
the subprocess and the simulator agree on "now". Every test runs on a local directory and on S3 (a real
S3-protocol server on loopback, see ``objstore.py``).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pandas as pd
import pytest
from test_loader import assert_same_rows

from exec_analytics import ExecutionCache, load_executions
from exec_analytics.client import FoundryClient
from exec_analytics.simulator import SimulatorServer, Workload

if TYPE_CHECKING:
    from objstore import Location

#: The ``location`` fixture: each test runs on a local directory and on S3.
pytest_plugins = ("objstore",)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fcntl are POSIX")

ROOT = Path(__file__).resolve().parents[1]

#: The refresh a subprocess runs. Once imported it prints "ready" and waits for a line on stdin, so that the
#: parent decides when it starts (two racers start together); then it prints monotonic timestamps ("go", the
#: cache's log lines, "done") so the parent can place its kills over the phases that matter.
REFRESH = r"""
import logging, sys, time
import orjson, pandas as pd
from exec_analytics import ExecutionCache, FoundryClient, load_executions

url, token, path, now, start, end, rids = sys.argv[1:8]

class Stamp(logging.Handler):
    def emit(self, record):
        print(f"{time.monotonic():.6f} {record.getMessage()}", flush=True)

log = logging.getLogger("exec_analytics.cache")
log.addHandler(Stamp())
log.setLevel(logging.DEBUG)
cache = ExecutionCache(path, clock=lambda: pd.Timestamp(now))
print(f"{time.monotonic():.6f} ready", flush=True)
sys.stdin.readline()
print(f"{time.monotonic():.6f} go", flush=True)
with FoundryClient(url, token) as client:
    df = load_executions(orjson.loads(rids), start, end, client=client, cache=cache, workers=4, progress=False)
print(f"{time.monotonic():.6f} done rows={len(df)} requests={df.attrs['requests']}", flush=True)
"""


def _start(
    srv: SimulatorServer, path: str, now: pd.Timestamp, start: pd.Timestamp, end: pd.Timestamp, rids: list[str]
) -> subprocess.Popen[str]:
    args = [
        srv.url,
        srv.token,
        path,
        now.isoformat(),
        start.isoformat(),
        end.isoformat(),
        orjson.dumps(rids).decode(),
    ]
    return subprocess.Popen(
        [sys.executable, "-c", REFRESH, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.endswith(" ready\n"), (line, proc.stderr.read() if proc.stderr else "")


def _go(proc: subprocess.Popen[str]) -> float:
    """Let a ready refresh start; returns the monotonic time it was told to."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.monotonic()


def _finish(proc: subprocess.Popen[str]) -> list[str]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.splitlines()


def _truth(wl: Workload, rids: list[str], start: pd.Timestamp, end: pd.Timestamp, as_of: pd.Timestamp) -> pd.DataFrame:
    return pd.concat([wl.ground_truth(r, start, end, as_of=as_of) for r in rids], ignore_index=True)


def _assert_readable_and_sound(
    location: Location, path: str, rids: list[str], start: pd.Timestamp, end: pd.Timestamp, truth: pd.DataFrame
) -> int:
    """After a crash: every file reads, no execution twice, nothing that is not a real execution."""
    cache = ExecutionCache(path)
    got = cache.read(rids, start, end)
    assert got["foundry_trace_id"].is_unique
    known = truth.set_index("foundry_trace_id")
    assert set(got["foundry_trace_id"]) <= set(known.index)
    sample = got.set_index("foundry_trace_id")
    assert (sample["duration_s"].to_numpy() == known.loc[list(sample.index), "duration_s"].to_numpy()).all()
    for rid in rids:
        cache.coverage(rid)  # every manifest parses
    cache.info()  # every file footer reads
    visible = location.files(path)
    assert all(p.endswith((".parquet", ".json", ".lock")) for p in visible), visible
    # The data tree holds Parquet files only, so that any engine reads it as a dataset.
    assert all(p.endswith(".parquet") for p in visible if p.startswith("executions/")), visible
    return len(got)


@pytest.mark.slow
def test_refreshes_killed_at_random_moments_leave_a_cache_that_one_refresh_completes(
    make_sim: Callable[..., SimulatorServer], workload: Workload, sim_now: pd.Timestamp, location: Location
) -> None:
    srv = make_sim()
    rids = workload.resource_rids
    path = location.url("history")
    base = sim_now - pd.Timedelta(hours=36)
    start = base - pd.Timedelta(hours=12)
    step = pd.Timedelta(hours=3)
    rng = random.Random(20261120)

    # The history before the first crash, loaded here (this also warms the simulator's workload).
    srv.clock.set(base)
    with FoundryClient(hostname=srv.url, token=srv.token) as client:
        load_executions(
            rids, start, base, client=client, cache=ExecutionCache(path, clock=srv.clock.now), progress=False
        )
    # One undisturbed incremental refresh tells how long one takes and when it starts writing.
    srv.clock.set(base + step)
    proc = _start(srv, path, base + step, start, base + step, rids)
    _wait_ready(proc)
    _go(proc)
    stamps = {line.split(maxsplit=1)[1].split()[0]: float(line.split()[0]) for line in _finish(proc)}
    write_at, done_at = stamps["merging"] - stamps["go"], stamps["done"] - stamps["go"]
    assert 0 < write_at < done_at

    # Fewer on S3: each kill costs a subprocess and a refresh, and the protocol (data, then manifest) is the same.
    kills = 22 if location.kind == "local" else 6
    outcomes = {"before writing": 0, "while writing": 0, "after it finished": 0}
    for i in range(2, kills + 2):
        now = base + i * step
        srv.clock.set(now)
        proc = _start(srv, path, now, start, now, rids)
        _wait_ready(proc)
        # Half the kills anywhere in the run, half in the stretch where files and manifests are written.
        delay = rng.uniform(0, done_at * 1.1) if i % 2 else rng.uniform(write_at, done_at)
        t_go = _go(proc)
        time.sleep(max(0.0, t_go + delay - time.monotonic()))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        phase = "after it finished" if " done " in out else "while writing" if " merging " in out else "before writing"
        outcomes[phase] += 1

        truth = _truth(workload, rids, start, now, as_of=now)
        _assert_readable_and_sound(location, path, rids, start, now, truth)
        with FoundryClient(hostname=srv.url, token=srv.token) as client:
            df = load_executions(
                rids,
                start,
                now,
                client=client,
                cache=ExecutionCache(path, clock=srv.clock.now),
                workers=4,
                progress=False,
            )
        assert_same_rows(df, truth)
        assert_same_rows(ExecutionCache(path).read(rids, start, now), truth)
    # The kills must have hit both the fetch and the writes, or the test proved less than it claims.
    assert outcomes["while writing"] >= 2 and outcomes["before writing"] >= 2, outcomes


@pytest.mark.parametrize("overlap", ["same window", "overlapping windows"])
def test_two_processes_racing_on_one_cache_end_with_exactly_the_truth(
    overlap: str,
    make_sim: Callable[..., SimulatorServer],
    workload: Workload,
    sim_now: pd.Timestamp,
    location: Location,
) -> None:
    srv = make_sim()
    rids = workload.resource_rids
    path = location.url("history")
    now = sim_now
    first = (now - pd.Timedelta(hours=30), now)
    second = first if overlap == "same window" else (now - pd.Timedelta(hours=42), now - pd.Timedelta(hours=6))
    procs = [_start(srv, path, now, *first, rids), _start(srv, path, now, *second, rids[::-1])]
    for p in procs:
        _wait_ready(p)
    for p in procs:
        _go(p)
    lines = [_finish(p) for p in procs]
    rows = [int(line[-1].split("rows=")[1].split()[0]) for line in lines]
    requests = [int(line[-1].split("requests=")[1]) for line in lines]
    assert rows == [len(_truth(workload, rids, *w, as_of=now)) for w in (first, second)]
    lo, hi = min(first[0], second[0]), max(first[1], second[1])
    truth = _truth(workload, rids, lo, hi, as_of=now)
    assert_same_rows(ExecutionCache(path).read(rids, lo, hi), truth)
    # Started together: one of them found the other holding the lock and waited for it.
    assert any("waiting for the cache lock" in "\n".join(out) for out in lines), lines
    if overlap == "same window":
        # The one that waited found the window settled but for the provisional edge.
        assert min(requests) * 5 < max(requests), requests


def test_reads_take_no_lock_and_never_see_a_half_written_file(
    make_sim: Callable[..., SimulatorServer], workload: Workload, sim_now: pd.Timestamp, location: Location
) -> None:
    import threading

    srv = make_sim()
    rids = workload.resource_rids
    start, end = sim_now - pd.Timedelta(hours=30), sim_now
    path = location.url("history")
    cache = ExecutionCache(path, clock=srv.clock.now)
    truth = _truth(workload, rids, start, end, as_of=sim_now)
    with FoundryClient(hostname=srv.url, token=srv.token) as client:
        load_executions(rids, start, end, client=client, cache=cache, progress=False)
        stop = threading.Event()
        reads: list[int] = []
        errors: list[BaseException] = []

        def reader() -> None:
            while not stop.is_set():
                try:
                    reads.append(_assert_readable_and_sound(location, path, rids, start, end, truth))
                except BaseException as exc:  # surfaced below
                    errors.append(exc)
                    return

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for _ in range(4):  # every partition of the window is rewritten each time, while being read
                load_executions(rids, start, end, client=client, cache=cache, refresh=True, progress=False)
        finally:
            stop.set()
            thread.join()
    assert not errors, errors[0]
    assert len(reads) >= 3 and set(reads) == {len(truth)}
