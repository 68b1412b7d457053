"""The ``exec-analytics`` command line, end to end over real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.analysis import compare_versions
from exec_analytics.cli import FAIL_ON_CODES, build_parser, comparison_summary, main
from exec_analytics.simulator import SimulatorServer, Workload

WINDOW = ["--start", "2026-11-18T00:00Z", "--end", "2026-11-19T00:00Z"]


@pytest.fixture
def foundry_env(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> SimulatorServer:
    monkeypatch.setenv("FOUNDRY_HOSTNAME", sim.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", sim.token)
    for name in ("FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return sim


def test_fetch_writes_the_ground_truth_to_parquet(
    foundry_env: SimulatorServer,
    workload: Workload,
    sim_now: pd.Timestamp,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rids = workload.resource_rids[1:3]
    out = tmp_path / "sub" / "x.parquet"
    where = '{"type": "eq", "field": "status", "value": "FAILED"}'
    assert main(["fetch", *rids, *WINDOW, "--where", where, "--out", str(out), "--no-progress"]) == 0
    df = pd.read_parquet(out)
    truth = pd.concat(
        [
            workload.ground_truth(
                r, WINDOW[1], WINDOW[3], as_of=sim_now, where={"type": "eq", "field": "status", "value": "FAILED"}
            )
            for r in rids
        ]
    )
    assert len(truth) > 0
    assert sorted(df["foundry_trace_id"]) == sorted(truth["foundry_trace_id"])
    assert str(df["start_time"].dtype) == "datetime64[ms, UTC]" and df["resource_version"].cat.ordered
    assert f"wrote {len(df):,} executions" in capsys.readouterr().out
    assert not list(out.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["RESTRICTED", *WINDOW], 4, "ListExecutionsResourcePermissionDenied"),
        (["ri.function-registry.main.function.00000000-0000-0000-0000-000000000000", *WINDOW], 5, "ResourceNotFound"),
        (["READABLE", *WINDOW, "--where", "{not json"], 2, "--where is not valid JSON"),
        (["READABLE", *WINDOW, "--where", '{"type": "eq", "field": "colour", "value": "x"}'], 2, "not filterable"),
        (["READABLE", "--start", "2026-11-18T00:00", "--end", "2026-11-19T00:00Z"], 2, "no timezone"),
        (["not-a-rid", *WINDOW], 2, "not a Foundry RID"),
    ],
)
def test_fetch_failures_end_in_one_line_and_a_distinct_code(
    args: list[str],
    code: int,
    words: str,
    foundry_env: SimulatorServer,
    workload: Workload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [{"RESTRICTED": workload.restricted_rids[0], "READABLE": workload.resource_rids[0]}.get(a, a) for a in args]
    out = tmp_path / "x.parquet"
    assert main(["fetch", *args, "--out", str(out), "--no-progress"]) == code
    err = capsys.readouterr().err
    assert err.startswith("exec-analytics: error: ") and err.count("\n") == 1 and words in err
    assert "Traceback" not in err and foundry_env.token not in err
    assert not out.exists()


def test_bad_token_exits_3_without_showing_it(
    sim: SimulatorServer,
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = "not-the-token-s3cr3t-4711"
    monkeypatch.setenv("FOUNDRY_HOSTNAME", sim.url)
    monkeypatch.setenv("FOUNDRY_TOKEN", secret)
    code = main(["fetch", workload.resource_rids[0], *WINDOW, "--out", str(tmp_path / "x.parquet"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 3
    assert secret not in captured.err + captured.out


def test_every_command_has_help_with_an_example() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == {"cache", "compare", "demo", "fetch", "report", "simulate", "sync"}
    for name, p in sub.choices.items():
        assert "example:" in p.format_help(), name


@pytest.mark.slow
def test_demo_writes_the_report_through_the_real_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--weeks", "2", "--out-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    df = pd.read_parquet(tmp_path / "executions.parquet")
    assert len(df) > 10_000 and df["resource_rid"].nunique() == 3
    html = (tmp_path / "report.html").read_text()
    assert "score-order-risk" in html and "1.4.0" in html
    assert (tmp_path / "report.md").read_text().strip()
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert any(name.startswith("score-order-risk-") for name in figures)
    # The headline names the regressed version of the simulated main resource, found by the statistics.
    line = next(line for line in out.splitlines() if "score-order-risk" in line and "1.4.0" in line)
    assert "regressed" in line
    assert str((tmp_path / "report.html").resolve()) in out


@pytest.mark.parametrize(
    ("baseline", "candidate", "window", "code"),
    [
        ("1.3.0", "1.4.0", ("2026-11-16T00:00Z", "2026-11-20T00:00Z"), 10),  # the simulator's real regression
        ("1.1.0", "1.2.0", ("2026-10-12T00:00Z", "2026-10-18T00:00Z"), 0),  # same behaviour
    ],
)
def test_compare_exit_code_gates_a_release(
    baseline: str,
    candidate: str,
    window: tuple[str, str],
    code: int,
    foundry_env: SimulatorServer,
    workload: Workload,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rid = workload.main.rid
    args = [
        "compare",
        rid,
        "--baseline",
        baseline,
        "--candidate",
        candidate,
        "--start",
        window[0],
        "--end",
        window[1],
        "--json",
        "--no-progress",
    ]
    assert main(args) == code
    rows = json.loads(capsys.readouterr().out)
    verdicts = {r["metric"]: r["verdict"] for r in rows}
    assert {"failure_rate", "p50", "p95", "p99", "distribution"} <= set(verdicts)
    if code:
        assert verdicts["p50"] == "regressed" and verdicts["failure_rate"] == "regressed"
    else:
        assert "regressed" not in verdicts.values()


def test_report_command_writes_html_and_markdown(
    foundry_env: SimulatorServer, workload: Workload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = workload.resource_rids[2]
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    assert main(["report", rid, "--week", "2026-W46", "--out", str(html), "--no-progress"]) == 0
    assert (
        main(
            [
                "report",
                rid,
                "--start",
                "2026-11-12T00:00Z",
                "--end",
                "2026-11-19T00:00Z",
                "--out",
                str(md),
                "--no-progress",
            ]
        )
        == 0
    )
    page = html.read_text()
    assert page.lstrip().lower().startswith("<!doctype html") and "2026-W46" in page and rid in page
    assert foundry_env.token not in page and foundry_env.token not in md.read_text()
    assert md.read_text().lstrip().startswith("#")
    assert main(["report", rid, "--start", "2026-11-12T00:00Z", "--out", str(md)]) == 2
    assert "--start and --end go together" in capsys.readouterr().err


def test_simulate_serves_until_interrupted(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "exec_analytics.cli", "simulate", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        url = re.search(r"FOUNDRY_HOSTNAME=(\S+)", "".join(lines))
        token = re.search(r"FOUNDRY_TOKEN=(\S+)", "".join(lines))
        assert url and token, lines
        rid = next(line.split()[0] for line in iter(proc.stdout.readline, "") if line.strip().startswith("ri."))
        out = tmp_path / "x.parquet"
        fetch = subprocess.run(
            [
                sys.executable,
                "-m",
                "exec_analytics.cli",
                "fetch",
                rid,
                "--start",
                "2026-11-18T00:00Z",
                "--end",
                "2026-11-18T06:00Z",
                "--out",
                str(out),
                "--no-progress",
            ],
            env={**env, "FOUNDRY_HOSTNAME": url.group(1), "FOUNDRY_TOKEN": token.group(1)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert fetch.returncode == 0, fetch.stderr
        assert len(pd.read_parquet(out)) > 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode in (0, 130)


@pytest.mark.parametrize(
    ("flag", "adjusted_for"),
    [([], None), (["--stratify-freq", "6h"], "caller_rid, start_time/6h"),
     (["--stratify-freq", "none"], "caller_rid")],
)  # fmt: skip
def test_compare_stratify_freq_reaches_the_comparison(
    flag: list[str],
    adjusted_for: str | None,
    foundry_env: SimulatorServer,
    workload: Workload,
    sim_now: pd.Timestamp,
    capsys: pytest.CaptureFixture[str],
) -> None:
    window = ["--start", "2026-11-16T00:00Z", "--end", "2026-11-20T00:00Z"]
    args = ["compare", workload.main.rid, "--baseline", "1.3.0", "--candidate", "1.4.0", *window, *flag]
    assert main([*args, "--json", "--no-progress"]) == 10
    rows = json.loads(capsys.readouterr().out)
    if adjusted_for is None:  # no flag: whatever compare_versions does by default on the same executions
        truth = workload.ground_truth(workload.main.rid, window[1], window[3], as_of=sim_now)
        truth = truth[truth["resource_version"].isin(["1.3.0", "1.4.0"])][list(schema.COLUMNS)]
        df = schema.to_frame(pa.Table.from_pandas(truth, preserve_index=False))
        adjusted_for = str(compare_versions(df, "1.3.0", "1.4.0", n_resamples=10)["adjusted_for"].iloc[0])
    assert {r["adjusted_for"] for r in rows} == {adjusted_for}


@pytest.mark.parametrize("value", ["bogus", "0h", "-6h", "1ns", ""])
def test_compare_rejects_a_bad_stratify_freq_before_any_request(
    value: str, sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sim.request_count
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "ri.function-registry.main.function.1", "--baseline", "a", "--candidate", "b",
              f"--stratify-freq={value}"])  # fmt: skip
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--stratify-freq" in err and "auto, none" in err
    assert sim.request_count == before


def test_compare_help_says_what_stratify_freq_adjusts_for() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = " ".join(sub.choices["compare"].format_help().split())
    assert "--stratify-freq FREQ" in text and "'auto' (the default" in text and "'none' (callers only)" in text
    assert "does not adjust for" in text


@pytest.mark.parametrize("value", ["1", "0", "1.5", "x", "-0.1"])
def test_report_slo_is_checked_where_every_slo_is(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", "ri.function-registry.main.function.1", "--week", "2026-W46", "--out", "r.html",
              f"--slo={value}"])  # fmt: skip
    assert exit_.value.code == 2
    assert "--slo" in capsys.readouterr().err


def test_comparison_summary_is_human_and_says_why() -> None:
    nan = float("nan")
    base = {"resource_rid": "ri.x", "baseline": "1.3.0", "candidate": "1.4.0\u202e$", "strata": 3,
            "adjusted_for": "caller_rid, start_time/6h", "window_start": pd.Timestamp("2026-11-17T09:00Z"),
            "window_end": pd.Timestamp("2026-11-20T00:00Z"), "note": "", "baseline_executions": 12000,
            "candidate_executions": 900}  # fmt: skip

    def row(metric, judged_on, threshold, values, effect, p_adjusted, verdict, note=""):
        other = "difference" if judged_on == "ratio" else "ratio"
        out = {**base, "metric": metric, "judged_on": judged_on, "threshold": threshold, "baseline_value": values[0],
               "candidate_value": values[1], "p_adjusted": p_adjusted, "verdict": verdict, "note": note}  # fmt: skip
        for suffix, v in zip(("", "_low", "_high"), effect, strict=True):
            out[judged_on + suffix], out[other + suffix] = v, nan
        return out

    result = pd.DataFrame([
        row("failure_rate", "difference", 0.005, (0.0347, 0.0514), (0.0166, 0.0109, 0.0222), 1e-8, "regressed"),
        row("failure_rate[<no reason>]", "difference", 0.005, (0.0015, 0.0027), (0.0011, -0.002, 0.007), 0.3,
            "inconclusive"),
        row("p50", "ratio", 0.10, (0.196, 0.277), (1.30, 1.15, 1.45), 0.08, "inconclusive"),
        row("p99", "ratio", 0.10, (2.11, 300.0), (nan, nan, nan), nan, "insufficient data",
            "needs 3,000 executions per version; has 900 candidate"),
        row("distribution", "difference", 0.05, (0.5, 0.51), (0.01, -0.01, 0.03), 0.4, "equivalent"),
    ])  # fmt: skip
    assert comparison_summary(result).splitlines() == [
        "1.4.0\ufffd$ against 1.3.0, 2026-11-17 09:00 UTC – 2026-11-20 00:00 UTC (both ran)",
        "adjusted for caller_rid and time buckets of 6h; executions: baseline / candidate",
        "metric                    baseline  candidate    executions          effect [95% CI]  verdict",
        "failure rate                 3.47%      5.14%  12,000 / 900  +1.66 pp [+1.09, +2.22]  regressed",
        "failure rate (no reason)     0.15%      0.27%  12,000 / 900  +0.11 pp [-0.20, +0.70]  inconclusive",
        "p50                         196 ms     277 ms  12,000 / 900       ×1.30 [1.15, 1.45]  inconclusive",
        "p99                         2.11 s    5.0 min  12,000 / 900              no estimate  insufficient data",
        "distribution (P(slower))     0.500      0.510  12,000 / 900  +0.010 [-0.010, +0.030]  equivalent",
        "failure rate (no reason) is inconclusive: the interval reaches across the threshold ±0.5 pp: more executions "
        "would",
        "  decide it",
        "p50 is inconclusive: beyond the threshold ×1.10 (±10%) but not significant once adjusted for 4 tests "
        "(adjusted p = 0.08)",
        "p99 is insufficient data: needs 3,000 executions per version; has 900 candidate",
        "distribution (P(slower)): the chance that a candidate execution is slower than a baseline one from the same "
        "callers;",
        "  0.500 is no change, and its effect is that chance minus 0.5 (above 0 = slower)",
    ]


def test_compare_prints_the_human_summary(
    foundry_env: SimulatorServer, workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["compare", workload.main.rid, "--baseline", "1.3.0", "--candidate", "1.4.0", "--start",
            "2026-11-16T00:00Z", "--end", "2026-11-20T00:00Z", "--no-progress"]  # fmt: skip
    assert main(args) == 10
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("1.4.0 against 1.3.0, 2026-11-1") and lines[1].startswith("adjusted for caller_rid")
    p50 = next(line for line in lines if line.startswith("p50 "))
    assert " ms " in p50 and "×1.4" in p50 and p50.endswith("regressed")
    assert max(map(len, lines)) <= 120
    assert captured.err.startswith("regressed: failure rate, ") and "p50" in captured.err


@pytest.mark.parametrize(
    ("versions", "window", "fail_on", "code"),
    [
        # A 4-hour canary: too few executions for any verdict. Passing by default, failing when asked to.
        (("1.3.0", "1.4.0"), ("2026-11-17T08:00Z", "2026-11-17T12:00Z"), None, 0),
        (("1.3.0", "1.4.0"), ("2026-11-17T08:00Z", "2026-11-17T12:00Z"), "regressed,insufficient", 12),
        # A real regression decides over the other verdicts present.
        (("1.3.0", "1.4.0"), ("2026-11-16T00:00Z", "2026-11-20T00:00Z"), "insufficient,inconclusive,regressed", 10),
    ],
)
def test_compare_fail_on_gives_each_verdict_its_exit_code(
    versions: tuple[str, str],
    window: tuple[str, str],
    fail_on: str | None,
    code: int,
    foundry_env: SimulatorServer,
    workload: Workload,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gate = ["--fail-on", fail_on] if fail_on else []
    args = ["compare", workload.main.rid, "--baseline", versions[0], "--candidate", versions[1], "--start",
            window[0], "--end", window[1], "--json", "--no-progress", *gate]  # fmt: skip
    assert main(args) == code
    captured = capsys.readouterr()
    verdicts = {r["verdict"] for r in json.loads(captured.out)}
    if code == 12:
        assert verdicts == {"insufficient data"}
        assert captured.err.startswith("insufficient data: failure rate, p50")
    if fail_on is None:
        assert "regressed" not in verdicts and captured.err == ""


def test_compare_inconclusive_exit_code_follows_the_verdicts(
    foundry_env: SimulatorServer, workload: Workload, capsys: pytest.CaptureFixture[str]
) -> None:
    # Same behaviour, two days of overlap: no regression, and whatever is not yet decided fails the gate.
    args = ["compare", workload.main.rid, "--baseline", "1.1.0", "--candidate", "1.2.0", "--start",
            "2026-10-12T00:00Z", "--end", "2026-10-14T00:00Z", "--json", "--no-progress"]  # fmt: skip
    strict = main([*args, "--fail-on", "regressed,inconclusive,insufficient"])
    verdicts = {r["verdict"] for r in json.loads(capsys.readouterr().out)}
    assert "regressed" not in verdicts and "inconclusive" in verdicts
    assert strict == FAIL_ON_CODES["inconclusive"] == 11
    assert main([*args, "--fail-on", "regressed"]) == 0


def test_fail_on_rejects_unknown_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "ri.function-registry.main.function.1", "--baseline", "a", "--candidate", "b",
              "--fail-on", "regressed,flaky"])  # fmt: skip
    assert exit_.value.code == 2
    assert "--fail-on" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["simulate", "--port", "80000"], "argument --port: expected a whole number from 0 to 65535, got 80000"),
        (["fetch", "RID", "--start", "a", "--end", "b", "--workers", "0"], "argument --workers: expected a whole"),
        (["fetch", "RID", "--start", "a", "--end", "b", "--workers=-3"], "argument --workers: expected a whole"),
        (["report", "RID", "--week", "2026-W46", "--out", "r.html", "--workers", "x"], "argument --workers"),
    ],
)
def test_bad_numbers_are_usage_errors_naming_the_flag(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_errors_name_flags_not_python_keywords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("FOUNDRY_HOSTNAME", "FOUNDRY_TOKEN", "FOUNDRY_CLIENT_ID", "FOUNDRY_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    rid = "ri.function-registry.main.function.00000000-0000-0000-0000-000000000000"
    assert main(["fetch", rid, *WINDOW, "--out", str(tmp_path / "x.parquet"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--hostname" in err and "hostname=" not in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["report", "READABLE", "--week", "2026-W46", "--out", "r.pdf"], "--out r.pdf: a report is written as HTML"),
        (["report", "READABLE", "--week", "2026-W46", "--out", "r.md", "--format", "html"], "says md but --format"),
        (["fetch", "READABLE", *WINDOW, "--out", "a.csv"], "--out a.csv: executions are written as Parquet"),
    ],
)
def test_out_suffix_that_contradicts_the_format_is_an_error_before_any_request(
    args: list[str],
    words: str,
    foundry_env: SimulatorServer,
    workload: Workload,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    before = foundry_env.request_count
    args = [workload.resource_rids[0] if a == "READABLE" else a for a in args]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exec-analytics: error: ") and words in err
    assert foundry_env.request_count == before and not list(tmp_path.iterdir())


def test_error_messages_quoting_data_are_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r\x1b[2J\u202e.pdf"
    assert main(["report", "ri.function-registry.main.function.1", "--week", "2026-W46", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exec-analytics: error: --out r\ufffd[2J\ufffd.pdf: ") and err.count("\n") == 1
    assert "\x1b" not in err and "\u202e" not in err
