"""Fleet sync: every resource exact, one failure stays one resource, resume after SIGKILL, cron-safe, the CLI."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from test_loader import assert_same_rows

from exec_analytics import ExecutionCache, sync_fleet
from exec_analytics.cli import main
from exec_analytics.client import FoundryClient
from exec_analytics.client.limiter import Limiter
from exec_analytics.fleet import Fleet, load_fleet
from exec_analytics.simulator import FaultConfig, ResourceProfile, SimClock, SimulatorServer, Workload
from exec_analytics.sync import SYNC_PARTIAL_EXIT, SYNC_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SIM_NOW = pd.Timestamp("2026-11-20T00:00:00Z")
WINDOW3 = (SIM_NOW - pd.Timedelta(days=3), SIM_NOW)
MISSING_RID = "ri.function-registry.main.function.00000000-0000-4000-8000-000000000404"


class FleetWorkload(Workload):
    """The simulator's workload with ``n`` readable resources: copies of the readable profiles under new RIDs
    and indices, so each has executions of its own."""

    def __init__(self, n: int, seed: int = 0, scale: float = 1.0) -> None:
        super().__init__(seed, scale)
        base = [p for p in self.resources if p.readable]
        extra = [
            dataclasses.replace(
                base[i % len(base)],
                index=len(self.resources) + i,
                rid=f"ri.function-registry.main.function.fleet-{i:04d}",
                name=f"fleet-{i:04d}",
            )
            for i in range(max(0, n - len(base)))
        ]
        self.resources = [*self.resources, *extra]
        self._fleet = {p.rid: p for p in self.resources}

    def profile(self, rid: str) -> ResourceProfile:
        return self._fleet[rid]


@pytest.fixture(scope="module")
def fleet_workload() -> FleetWorkload:
    return FleetWorkload(10, scale=0.5)


def write_fleet(path: Path, rids: list[str], *, days: int, cache: Path, extra: str = "") -> Fleet:
    lines = [f'cache = "{cache}"', f"days = {days}", extra]
    for i, rid in enumerate(rids):
        lines += ["[[resources]]", f'rid = "{rid}"', f'name = "svc-{i}"', "slo = 0.99"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_fleet(path)


def connect(srv: SimulatorServer) -> Callable[[Limiter], FoundryClient]:
    def factory(limiter: Limiter) -> FoundryClient:
        return FoundryClient(srv.url, token=srv.token, limiter=limiter, backoff_base=0.0, max_attempts=3)

    return factory


def assert_history_exact(cache: ExecutionCache, wl: Workload, rids: list[str], start: Any, end: Any) -> None:
    for rid in rids:
        assert_same_rows(cache.read(rid, start, end), wl.ground_truth(rid, start, end, as_of=SIM_NOW))


def test_sync_makes_every_resource_exact_and_one_failure_does_not_stop_the_others(
    tmp_path: Path, fleet_workload: FleetWorkload
) -> None:
    wl = fleet_workload
    clock = SimClock(now=SIM_NOW)
    good = wl.resource_rids
    forbidden = wl.restricted_rids[0]
    rids = [good[0], forbidden, *good[1:5], MISSING_RID, *good[5:]]
    fleet = write_fleet(tmp_path / "fleet.toml", rids, days=2, cache=tmp_path / "history")
    with SimulatorServer(wl, clock=clock, limits="user") as srv:
        cache = ExecutionCache(fleet.cache, clock=clock.now)
        result = sync_fleet(fleet, client_factory=connect(srv), cache=cache, end=SIM_NOW)
        stats = srv.limit_stats(srv.token)
    start = SIM_NOW - pd.Timedelta(days=2)
    assert not result.ok
    assert [(r.rid, r.error_type) for r in result.failed] == [
        (forbidden, "PermissionDeniedError"),
        (MISSING_RID, "ResourceNotFoundError"),
    ]
    assert [r.rid for r in result.resources] == rids  # fleet order
    assert all(r.requests >= 1 for r in result.resources)  # the failures were tried, and counted
    assert_history_exact(cache, wl, good, start, SIM_NOW)
    for r in result.resources:
        if r.ok:
            assert r.new_executions == len(wl.ground_truth(r.rid, start, SIM_NOW, as_of=SIM_NOW)) > 0
            assert r.error is None
    # Every request is one the server saw, none throttled, within both limits.
    assert result.requests == stats.admitted and stats.throttled == 0
    assert stats.max_in_flight <= 30 and result.to_dict()["max_in_flight"] <= 30

    summary = result.to_dict()
    assert summary["schema"] == SYNC_SCHEMA and summary["ok"] is False
    assert (summary["synced"], summary["failed"]) == (len(good), 2)
    assert summary["new_executions"] == sum(r.new_executions for r in result.resources)
    assert set(summary["resources"][0]) == {
        "rid", "name", "ok", "new_executions", "requests", "seconds", "error_type", "error",
    }  # fmt: skip
    orjson.dumps(summary)  # JSON as it stands
    table = result.table()
    assert "svc-1" in table and "FAILED" in table and "PermissionDeniedError" in table
    assert srv.token not in table and srv.token not in str(summary)


@pytest.mark.slow
def test_a_sync_after_one_more_day_fetches_that_day(tmp_path: Path, fleet_workload: FleetWorkload) -> None:
    wl = fleet_workload
    rids = wl.resource_rids
    clock = SimClock(now=SIM_NOW)
    fleet = write_fleet(tmp_path / "fleet.toml", rids, days=3, cache=tmp_path / "history")
    with SimulatorServer(wl, clock=clock) as srv:
        cache = ExecutionCache(fleet.cache, clock=clock.now)
        first = sync_fleet(fleet, client_factory=connect(srv), cache=cache, end=SIM_NOW)
        later = SIM_NOW + pd.Timedelta(days=1)
        clock.set(later)
        second = sync_fleet(fleet, client_factory=connect(srv), cache=cache, end=later)
    assert first.ok and second.ok
    start = SIM_NOW - pd.Timedelta(days=3)
    for before, after in zip(first.resources, second.resources, strict=True):
        # The history keeps the day that left the window and gains exactly what became visible.
        truth_after = wl.ground_truth(after.rid, start, later, as_of=later)
        truth_before = wl.ground_truth(after.rid, start, SIM_NOW, as_of=SIM_NOW)
        assert after.new_executions == len(truth_after) - len(truth_before)
        assert_same_rows(cache.read(after.rid, start, later), truth_after)
        assert before.new_executions == len(truth_before)
    # One new day (and the 2 h provisional edge) against three days: a fraction of the requests.
    assert 0 < second.requests * 2 < first.requests


SYNC_ENV_KEYS = ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET")


def _cli_env(srv: SimulatorServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SYNC_ENV_KEYS}
    env.update(FOUNDRY_HOSTNAME=srv.url, FOUNDRY_TOKEN=srv.token, PYTHONPATH=str(ROOT))
    return env


def _sync_process(srv: SimulatorServer, fleet: Path, *extra: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "exec_analytics.cli", "sync", str(fleet), "--end", SIM_NOW.isoformat(), *extra]
    return subprocess.Popen(
        args, env=_cli_env(srv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_sync_killed_midway_resumes_and_ends_exact(tmp_path: Path, fleet_workload: FleetWorkload) -> None:
    wl = fleet_workload
    rids = wl.resource_rids
    fleet_path = tmp_path / "fleet.toml"
    fleet = write_fleet(fleet_path, rids, days=3, cache=tmp_path / "history")
    # Latency spreads the sync over a second or two, so the kill lands with some resources done and some not.
    with SimulatorServer(wl, clock=SimClock(now=SIM_NOW), faults=FaultConfig(latency_s=0.02)) as srv:
        proc = _sync_process(srv, fleet_path, "--workers", "2")
        assert proc.stderr is not None
        done_before_kill: list[str] = []
        for line in proc.stderr:
            if line.startswith("exec-analytics: synced "):
                done_before_kill.append(line.split()[2].rstrip(":"))
                if len(done_before_kill) == 2:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        assert len(done_before_kill) == 2
        # The re-run, in this process: the same clock as the killed run (the real one), the same window.
        resumed = sync_fleet(fleet, client_factory=connect(srv), end=SIM_NOW)
    assert resumed.ok
    start = SIM_NOW - pd.Timedelta(days=3)
    assert_history_exact(ExecutionCache(fleet.cache), wl, rids, start, SIM_NOW)
    by_name = {r.name: r for r in resumed.resources}
    for name in done_before_kill:  # committed before the kill: nothing left to fetch, nothing new
        assert by_name[name].new_executions == 0 and by_name[name].requests == 0
    assert sum(r.new_executions for r in resumed.resources) > 0  # the kill did leave work undone


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery to a child is POSIX")
def test_ctrl_c_lets_the_loads_under_way_commit_and_exits_130(tmp_path: Path, fleet_workload: FleetWorkload) -> None:
    wl = fleet_workload
    rids = wl.resource_rids
    fleet_path = tmp_path / "fleet.toml"
    fleet = write_fleet(fleet_path, rids, days=3, cache=tmp_path / "history")
    with SimulatorServer(wl, clock=SimClock(now=SIM_NOW), faults=FaultConfig(latency_s=0.02)) as srv:
        proc = _sync_process(srv, fleet_path, "--workers", "2")
        assert proc.stderr is not None
        first = proc.stderr.readline()
        while not first.startswith("exec-analytics: synced "):
            first = proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
        assert proc.returncode == 130
        assert "exec-analytics: interrupted" in err and out == ""  # no summary of a sync that did not end
        synced = [first.split()[2].rstrip(":")]
        synced += [
            line.split()[2].rstrip(":") for line in err.splitlines() if line.startswith("exec-analytics: synced")
        ]
        resumed = sync_fleet(fleet, client_factory=connect(srv), end=SIM_NOW)
    assert resumed.ok
    assert_history_exact(ExecutionCache(fleet.cache), wl, rids, SIM_NOW - pd.Timedelta(days=3), SIM_NOW)
    by_name = {r.name: r for r in resumed.resources}
    # Every load under way finished and committed before the exit (a resource not yet picked up by a thread is
    # not started: which ones depends on scheduling), and the re-run has nothing left to fetch for them.
    assert "interrupted: finishing the resources under way" in err
    assert len(synced) == len(set(synced)) >= 1
    for name in synced:
        assert by_name[name].requests == 0 and by_name[name].new_executions == 0
    for name in set(by_name) - set(synced):  # never started, or started and finished silently: never half done
        assert by_name[name].new_executions in (0, len(wl.ground_truth(by_name[name].rid, *WINDOW3, as_of=SIM_NOW)))


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks are POSIX")
def test_two_syncs_at_once_fetch_each_resource_once(tmp_path: Path, fleet_workload: FleetWorkload) -> None:
    wl = fleet_workload
    rids = wl.resource_rids[:6]
    shared = tmp_path / "fleet.toml"
    write_fleet(shared, rids, days=2, cache=tmp_path / "history")
    with SimulatorServer(wl, clock=SimClock(now=SIM_NOW), faults=FaultConfig(latency_s=0.005)) as srv:
        procs = [_sync_process(srv, shared, "--format", "json") for _ in range(2)]
        outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    summaries = [orjson.loads(out) for out, _ in outs]
    # Whoever took a resource's lock first fetched it; the other waited, found it current, fetched nothing.
    for i, rid in enumerate(rids):
        counts = sorted(s["resources"][i]["requests"] for s in summaries)
        assert counts[0] == 0 and counts[1] > 0, rid
    assert_history_exact(ExecutionCache(tmp_path / "history"), wl, rids, SIM_NOW - pd.Timedelta(days=2), SIM_NOW)


def test_the_sync_command_prints_the_summary_and_exits_13_on_partial_failure(
    tmp_path: Path, fleet_workload: FleetWorkload, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wl = fleet_workload
    fleet = tmp_path / "fleet.toml"
    write_fleet(fleet, [wl.resource_rids[0], wl.restricted_rids[0]], days=1, cache=tmp_path / "history")
    with SimulatorServer(wl, clock=SimClock(now=SIM_NOW)) as srv:
        for key in SYNC_ENV_KEYS:
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("FOUNDRY_HOSTNAME", srv.url)
        monkeypatch.setenv("FOUNDRY_TOKEN", srv.token)
        code = main(["sync", str(fleet), "--end", SIM_NOW.isoformat(), "--format", "json"])
        out, err = capsys.readouterr()
        assert code == SYNC_PARTIAL_EXIT == 13
        summary = orjson.loads(out)  # stdout is the summary alone
        assert [r["ok"] for r in summary["resources"]] == [True, False]
        assert "synced svc-0" in err and "sync of svc-1 failed" in err  # diagnostics on stderr
        assert srv.token not in out + err

        write_fleet(fleet, [wl.resource_rids[0]], days=1, cache=tmp_path / "history")
        assert main(["sync", str(fleet), "--end", SIM_NOW.isoformat()]) == 0
        out, _ = capsys.readouterr()
        assert "1 of 1 resource synced" in out and "svc-0" in out

    fleet.write_text('days = 0\n[[resources]]\nrid = "x"\n', encoding="utf-8")
    assert main(["sync", str(fleet)]) == 2
    assert f"{fleet}:1: days: must be a positive integer" in capsys.readouterr().err
