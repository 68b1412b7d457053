"""What the command line prints and writes: JSON/CSV on stdout, diagnostics on stderr, offline loads from a
settled cache, names, failed writes and periods that are not over. Over real HTTP to the simulator."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from exec_analytics.cli import _write_text, main
from exec_analytics.simulator import SimClock, SimulatorServer, Workload

WINDOW = ["--start", "2026-11-18T00:00Z", "--end", "2026-11-19T00:00Z"]
CREDENTIALS = ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET")
ISO = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$"


@pytest.fixture
def foundry_env(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> SimulatorServer:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FOUNDRY_HOSTNAME", sim.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", sim.token)
    return sim


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)


def _types(obj: dict[str, Any], schema: dict[str, type | tuple[type, ...]]) -> None:
    """``obj`` has exactly the keys of ``schema``, each of its type(s)."""
    assert set(obj) == set(schema), sorted(set(obj) ^ set(schema))
    for key, kind in schema.items():
        assert isinstance(obj[key], kind), (key, obj[key])


def _iso(value: str) -> None:
    import re

    assert re.match(ISO, value), value


def test_fetch_json_is_the_only_thing_on_stdout(
    foundry_env: SimulatorServer,
    workload: Workload,
    sim_now: pd.Timestamp,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rids = workload.resource_rids[:2]
    out = tmp_path / "x.parquet"
    args = ["fetch", *rids, *WINDOW, "--out", str(out), "--format", "json", "--name", f"{rids[0]}=checkout"]
    assert main([*args, "--no-progress"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    _types(doc, {"executions": int, "resources": list, "start": str, "end": str, "out": str, "pages": int,
                 "duplicates_dropped": int, "cache": dict})  # fmt: skip
    _iso(doc["start"]), _iso(doc["end"])
    assert doc["start"].startswith("2026-11-18T00:00:00") and doc["end"].startswith("2026-11-19T00:00:00")
    truth = {r: len(workload.ground_truth(r, WINDOW[1], WINDOW[3], as_of=sim_now)) for r in rids}
    for entry in doc["resources"]:
        _types(entry, {"rid": str, "name": str, "executions": int})
    assert [(e["rid"], e["name"], e["executions"]) for e in doc["resources"]] == [
        (rids[0], "checkout", truth[rids[0]]), (rids[1], rids[1], truth[rids[1]])]  # fmt: skip
    assert doc["executions"] == sum(truth.values()) == len(pd.read_parquet(out))
    _types(doc["cache"], {"path": str, "fetched": list})
    assert {f["rid"] for f in doc["cache"]["fetched"]} == set(rids)
    for f in doc["cache"]["fetched"]:
        _types(f, {"rid": str, "start": str, "end": str})
    assert captured.err == ""


def test_fetch_text_names_each_resource(
    foundry_env: SimulatorServer, workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = workload.resource_rids[0]
    assert main(["fetch", rid, *WINDOW, "--name", f"{rid}=checkout", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote ") and lines[1].startswith("  checkout: ") and lines[1].endswith(" executions")


def test_cache_info_json_and_csv(
    foundry_env: SimulatorServer,
    workload: Workload,
    sim_now: pd.Timestamp,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rid = workload.resource_rids[0]
    cache = ["--cache-dir", str(tmp_path / "h")]
    assert main(["cache", "info", *cache, "--format", "json"]) == 0
    empty = json.loads(capsys.readouterr().out)
    assert empty["resources"] == [] and empty["rows"] == 0
    assert main(["fetch", rid, *WINDOW, *cache, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["cache", "info", *cache, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    _types(doc, {"path": str, "settle_lag_s": float, "rows": int, "files": int, "bytes": int, "resources": list})
    (entry,) = doc["resources"]
    _types(entry, {"resource_rid": str, "filter": type(None), "covered": list, "first": str, "last": str,
                   "settled_until": str, "last_fetched_at": str, "rows": int, "files": int, "bytes": int})  # fmt: skip
    truth = workload.ground_truth(rid, WINDOW[1], WINDOW[3], as_of=sim_now)
    assert entry["resource_rid"] == rid and entry["rows"] == doc["rows"] == len(truth)
    assert [(c["start"][:16], c["end"][:16]) for c in entry["covered"]] == [("2026-11-18T00:00", "2026-11-19T00:00")]
    for key in ("first", "last", "settled_until", "last_fetched_at"):
        _iso(entry[key])
    assert main(["cache", "info", *cache, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["resource_rid"] == rid and int(rows[0]["rows"]) == len(truth)


COMPARE = ["--baseline", "1.3.0", "--candidate", "1.4.0", "--start", "2026-11-16T00:00Z", "--end", "2026-11-20T00:00Z"]
COMPARISON_ROW: dict[str, type | tuple[type, ...]] = {
    "resource_rid": str, "resource_name": str, "baseline": str, "candidate": str, "metric": str,
    "judged_on": str, "threshold": float, "baseline_value": float, "candidate_value": float,
    "baseline_executions": int, "candidate_executions": int, "verdict": str, "note": str,
    "adjusted_for": str, "window_start": str, "window_end": str, "strata": int,
}  # fmt: skip


def test_compare_json_csv_and_the_older_json_flag_agree(
    foundry_env: SimulatorServer, workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = workload.main.rid
    base = ["compare", rid, *COMPARE, "--no-progress", "--name", f"{rid}=score"]
    assert main([*base, "--format", "json"]) == 10
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert captured.err.startswith("regressed: ")  # the gate's diagnostic is on stderr, the result alone on stdout
    assert {r["metric"] for r in rows} >= {"failure_rate", "p50", "p95", "p99", "distribution"}
    for row in rows:
        for key, kind in COMPARISON_ROW.items():
            assert isinstance(row[key], kind), (key, row[key])
        for key in ("ratio", "ratio_low", "ratio_high", "difference", "difference_low", "difference_high",
                    "p_value", "p_adjusted"):  # fmt: skip
            assert row[key] is None or isinstance(row[key], float), (key, row[key])
        assert row["resource_name"] == "score"
        _iso(row["window_start"]), _iso(row["window_end"])
    assert main([*base, "--json"]) == 10
    assert json.loads(capsys.readouterr().out) == rows
    assert main([*base, "--format", "csv"]) == 10
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["metric"] for r in table] == [r["metric"] for r in rows]
    assert [r["verdict"] for r in table] == [r["verdict"] for r in rows]


def test_compare_text_names_the_resource_and_explains_the_distribution(
    foundry_env: SimulatorServer, workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = workload.main.rid
    assert main(["compare", rid, *COMPARE, "--no-progress", "--name", f"{rid}=score-order-risk"]) == 10
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("score-order-risk: 1.4.0 against 1.3.0, ")
    assert any(line.startswith("distribution (P(slower)): the chance that a candidate execution") for line in lines)
    assert max(map(len, lines)) <= 120


REPORT_RESOURCE: dict[str, type | tuple[type, ...]] = {
    "rid": str, "name": str, "status": str, "whole_seconds": bool, "kpis": list, "budget": dict,
    "new_versions": list, "notable": list, "callers": list, "reasons": list, "what_changed": dict,
}  # fmt: skip


def _check_report_json(doc: dict[str, Any]) -> None:
    _types(doc, {"title": str, "start": str, "end": str, "previous_start": str, "previous_end": str,
                 "generated_at": str, "in_progress": bool, "slo": float, "confidence": float,
                 "source": (str, type(None)), "changed": list, "resources": list})  # fmt: skip
    for key in ("start", "end", "previous_start", "previous_end", "generated_at"):
        _iso(doc[key])
    for sec in doc["resources"]:
        _types(sec, REPORT_RESOURCE)
        assert [k["name"] for k in sec["kpis"]] == ["executions", "failure rate", "p50", "p95", "p99"]
        for k in sec["kpis"]:
            _types(k, {"name": str, "unit": str, "value": (float, type(None)), "previous": (float, type(None)),
                       "change": (float, type(None)), "low": (float, type(None)), "high": (float, type(None)),
                       "significant": bool})  # fmt: skip
        _types(sec["budget"], {"slo": float, "executions": int, "bad": int, "sli": float, "sli_low": float,
                               "sli_high": float, "consumed": float, "remaining": float, "alerts": list})  # fmt: skip
        for v in sec["new_versions"]:
            _types(v, {"version": str, "baseline": (str, type(None)), "first_seen": str, "share": float,
                       "verdict": str, "verdicts": dict, "note": str})  # fmt: skip
        assert sec["status"] in {"regressed", "budget exhausted", "at risk", "attention", "ok"}


def test_report_json_goes_to_stdout_or_a_file(
    foundry_env: SimulatorServer, workload: Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = workload.main.rid
    period = ["--start", "2026-11-17T00:00Z", "--end", "2026-11-20T00:00Z"]
    assert main(["report", rid, *period, "--format", "json", "--name", f"{rid}=score", "--no-progress"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    _check_report_json(doc)
    (sec,) = doc["resources"]
    assert sec["rid"] == rid and sec["name"] == "score" and sec["status"] == "regressed"
    assert [v["version"] for v in sec["new_versions"]] == ["1.4.0"]
    assert sec["new_versions"][0]["verdicts"]["p50"] == "regressed"
    assert doc["in_progress"] is False and captured.err == ""
    out = tmp_path / "r.json"
    assert main(["report", rid, *period, "--out", str(out), "--name", f"{rid}=score", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {out}" in captured.err
    again = json.loads(out.read_text())
    # The second load is answered by the cache alone (no client, so no source): the findings are the same.
    assert again["resources"] == doc["resources"] and again["start"] == doc["start"]
    assert main(["report", rid, *period, "--format", "md", "--no-progress"]) == 2
    assert "--out is required for an html or md report" in capsys.readouterr().err


def test_report_and_compare_run_offline_from_a_settled_cache(
    foundry_env: SimulatorServer,
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rid = workload.main.rid
    cache = ["--cache-dir", str(tmp_path / "h")]
    # The report reads one period before its own: fetch both while connected.
    assert main(["fetch", rid, "--start", "2026-11-14T00:00Z", "--end", "2026-11-20T00:00Z", *cache,
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    _offline(monkeypatch)
    before = foundry_env.request_count
    html = tmp_path / "r.html"
    args = ["report", rid, "--start", "2026-11-17T00:00Z", "--end", "2026-11-20T00:00Z", "--out", str(html)]
    assert main([*args, *cache, "--no-progress"]) == 0
    assert "1.4.0: regressed" in capsys.readouterr().out
    assert main(["compare", rid, *COMPARE, *cache, "--no-progress", "--format", "json"]) == 10
    assert {r["verdict"] for r in json.loads(capsys.readouterr().out) if r["metric"] == "p50"} == {"regressed"}
    assert foundry_env.request_count == before  # no request: no hostname, no token
    # A window the cache lacks still needs the server, and says which flag gives it.
    assert main(["report", rid, "--week", "2026-W46", "--out", str(html), *cache, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exec-analytics: error: no Foundry hostname to fetch what the cache lacks: ")
    assert "--hostname" in err and "client=" not in err and err.count("\n") == 1


def test_a_bare_host_that_fails_tls_hints_at_http(
    foundry_env: SimulatorServer, workload: Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = foundry_env.url.removeprefix("http://")
    out = tmp_path / "x.parquet"
    args = ["fetch", workload.resource_rids[0], *WINDOW, "--hostname", bare, "--no-cache", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 6
    err = capsys.readouterr().err
    assert err.startswith(f"exec-analytics: error: cannot reach https://{bare} ") and err.count("\n") == 1
    assert f"--hostname http://{bare}" in err and foundry_env.token not in err


def test_a_network_error_names_the_host(
    foundry_env: SimulatorServer, workload: Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "x.parquet"
    args = ["fetch", workload.resource_rids[0], *WINDOW, "--hostname", f"http://127.0.0.1:{port}", "--no-cache"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 6
    err = capsys.readouterr().err
    assert err.startswith(f"exec-analytics: error: cannot reach http://127.0.0.1:{port}: ")
    assert "use --hostname http" not in err  # a scheme was given: no hint


def test_out_that_is_a_directory_is_a_usage_error_before_any_request(
    foundry_env: SimulatorServer, workload: Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = foundry_env.request_count
    target = tmp_path / "reports.html"
    target.mkdir()
    assert main(["report", workload.main.rid, "--week", "2026-W46", "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--out {target} is a directory" in err and foundry_env.request_count == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports.html"]


@pytest.mark.parametrize("kind", ["a directory", "under a file"])
def test_a_failed_write_says_why_and_leaves_no_temporary_file(kind: str, tmp_path: Path) -> None:
    if kind == "a directory":
        target, reason = tmp_path / "r.html", "is a directory"
        target.mkdir()
        (target / "keep").write_text("x")  # a non-empty directory: the rename itself fails
    else:
        (tmp_path / "f").write_text("x")
        target, reason = tmp_path / "f" / "r.html", f"{tmp_path / 'f'} is a file, not a directory"
    with pytest.raises(OSError) as err:
        _write_text(target, "<html></html>")
    assert str(err.value) == f"cannot write {target}: {reason}"
    assert ".tmp" not in str(err.value)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_period_that_is_not_over_is_flagged(
    make_sim: Callable[..., SimulatorServer],
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = make_sim(clock=SimClock())  # follows the wall clock, like Foundry
    monkeypatch.setenv("FOUNDRY_HOSTNAME", live.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", live.token)
    now = pd.Timestamp.now(tz="UTC").floor("h")
    period = ["--start", (now - pd.Timedelta(hours=2)).isoformat(), "--end", (now + pd.Timedelta(hours=2)).isoformat()]
    md = tmp_path / "r.md"
    assert main(["report", workload.main.rid, *period, "--out", str(md), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: the period is not over (it ends ")
    assert "This period is not over" in captured.out
    assert "This period is not over" in md.read_text()


def test_report_and_compare_take_a_fleet_file_for_resources_names_and_history(
    foundry_env: SimulatorServer,
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    main_rid = workload.main.rid
    other = next(r for r in workload.resource_rids if r != main_rid)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        f'cache = "h"\n[[resources]]\nrid = "{main_rid}"\nname = "pricing"\n'
        f'[[resources]]\nrid = "{other}"\nname = "billing"\n'
    )
    cache = ["--cache-dir", str(tmp_path / "h")]  # the fleet's history, relative to the fleet file
    for rid in (main_rid, other):
        assert main(["fetch", rid, "--start", "2026-11-14T00:00Z", "--end", "2026-11-20T00:00Z", *cache,
                     "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    _offline(monkeypatch)
    before = foundry_env.request_count
    md = tmp_path / "r.md"
    # No RID: every resource of the fleet, named, read from the fleet's history with no request.
    args = ["report", "--fleet", str(fleet), "--start", "2026-11-17T00:00Z", "--end", "2026-11-20T00:00Z"]
    assert main([*args, "--out", str(md), "--no-progress"]) == 0
    text, summary = md.read_text(), capsys.readouterr().out
    assert all(name in text and name in summary for name in ("pricing", "billing"))
    # A resource given by its name; --name still wins over the fleet's.
    assert main(["compare", "pricing", "--fleet", str(fleet), *COMPARE, "--name", f"{main_rid}=pricing-api",
                 "--format", "json", "--no-progress"]) == 10  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert {r["resource_rid"] for r in rows} == {main_rid} and {r["resource_name"] for r in rows} == {"pricing-api"}
    assert foundry_env.request_count == before
    # Without RIDs and without a fleet there is nothing to report on.
    assert main(["report", "--week", "2026-W47", "--out", str(md), "--no-progress"]) == 2
    assert "--fleet" in capsys.readouterr().err


def test_the_progress_bar_on_a_terminal_ends_at_100_percent_without_a_warning(
    sim: SimulatorServer, workload: Workload, tmp_path: Path
) -> None:
    """``fetch`` with its standard error on a pseudo-terminal: the bar shows by default, as a user sees it."""
    master, slave = pty.openpty()
    # A terminal has a size (a bare pseudo-terminal reports 0 columns, and tqdm then draws nothing).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {**os.environ, "FOUNDRY_HOSTNAME": sim.url, "FOUNDRY_TOKEN": sim.token}
    cmd = [sys.executable, "-m", "exec_analytics.cli", "fetch", *workload.resource_rids, *WINDOW,
           "--cache-dir", str(tmp_path / "h"), "--workers", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    shown = [int(p) for p in re.findall(r"executions:\s+(\d+)%", text)]
    assert shown and shown[-1] == 100 and shown == sorted(shown), text
    assert "Warning" not in text and "<-" not in text, text  # no TqdmWarning, no negative time remaining
