"""Calibration of change_points and explain_change on weeks with a known truth.

Run: ``python benchmarks/calibrate_changes.py [--trials N]``; ``--ladder`` instead runs every fixed bucket
length on the step scenarios, the simulation the thresholds of ``freq="auto"`` were chosen from.

Weeks come from ``synthetic_week`` in ``tests/test_analysis_changepoints.py``: office-hours diurnal traffic,
a dozen callers of different failure rates and latencies whose shares follow a random walk (``drift``: its
log-sd per week), and optionally a step at a known hour. For each scenario, N trials (default 200):

- ``change_points`` on quiet weeks: share of resource-weeks with a change point, per metric and on any of
  the three (with the 97.5% upper Clopper-Pearson bound of the latter: 200 weeks measure a 3% rate to
  about +-2.5 points), with the callers' mix held fixed (the default) at the default bucket (``freq="auto"``) and at
  fixed hours, and on the raw metric (``adjust_for=None``).
- ``change_points`` on a step (2x failure rate, +30% latency) at a random hour between Tuesday and Saturday,
  at three traffic levels (5,000 a week puts about 500 executions on the smaller side), at the default
  bucket and, for comparison, at fixed hours: share of trials where a change is found, share of those within
  2 buckets of the truth, median timing error in buckets and in hours, the buckets used, and how often the
  moment's interval covers the truth (a boundary of the bucket holding the step: a step inside a bucket
  makes it a mix, so either of its boundaries is right).
- ``explain_change`` on quiet pairs of weeks: share of pairs that read "nothing changed".
- ``explain_change`` on the simulator's rollouts for several workload seeds: the 1.3.0 rollout (traffic
  moved, no caller changed) must not be within 1.3.0; the 1.4.0 regression must be within 1.4.0, on the
  reasons the profile multiplies.

The penalty of change_points is the 1 - alpha quantile (alpha = 0.01 by default) of the best split's cost
reduction on ``n_sim`` simulations of the window without a change (same buckets, same traffic, same mix): it
is calibrated by simulation on every call, and this script checks the false-alarm rate it gives on data the
simulation did not generate (mix drift, diurnal traffic). Prints the tables and writes
``benchmarks/results/calibrate_changes.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_analysis_changepoints import METRIC_NAMES, MONDAY, WEEK, step_hours, synthetic_week

from exec_analytics import schema
from exec_analytics.analysis import change_points, explain_change
from exec_analytics.analysis.changepoints import AUTO_FREQS, AUTO_MIN_SIGNAL
from exec_analytics.simulator import Workload

from _common import print_table, write_json

#: Share of executions above the percentile: a busy bucket's signal for p50 and p95 (as in freq="auto").
SIGNAL_SHARE = {"p50": 0.5, "p95": 0.05}

STEPS: dict[str, tuple[str, dict[str, float], str]] = {
    "failure rate x2": ("failure_rate", {"failure_step": 2.0}, "auto"),
    "failure rate x2, 1h buckets": ("failure_rate", {"failure_step": 2.0}, "1h"),
    "p95 +30%": ("p95", {"latency_step": 1.3}, "auto"),
    "p95 +30%, 1h buckets": ("p95", {"latency_step": 1.3}, "1h"),
    "p50 +30%": ("p50", {"latency_step": 1.3}, "auto"),
}
#: Weekly traffic of the step scenarios: 5,000 a week puts about 500 executions on the smaller side.
TRAFFIC = (2_500, 5_000, 20_000)
#: Quiet weeks: bucket choices and strata compared.
QUIET = (("auto", "caller_rid"), ("1h", "caller_rid"), ("auto", None))


def quiet_change_points(
    trials: int, drifts: tuple[float, ...] = (0.0, 0.15, 0.3), first_seed: int = 10_000
) -> list[dict[str, Any]]:
    rows = []
    for drift in drifts:
        started = time.perf_counter()
        hits = {(f, a): dict.fromkeys(METRIC_NAMES, 0) for f, a in QUIET}
        any_hit = dict.fromkeys(QUIET, 0)
        for seed in range(trials):
            df = synthetic_week(first_seed + seed, per_week=20_000, drift=drift)
            for freq, adjust in QUIET:
                found = {m: len(change_points(df, metric=m, freq=freq, adjust_for=adjust, seed=seed, **WEEK)) > 0
                         for m in METRIC_NAMES}  # type: ignore[arg-type]  # fmt: skip
                for m, hit in found.items():
                    hits[freq, adjust][m] += hit
                any_hit[freq, adjust] += any(found.values())
        for freq, adjust in QUIET:
            x = any_hit[freq, adjust]
            high = stats.beta.ppf(0.975, x + 1, trials - x) if x < trials else 1.0
            rows.append({"drift": drift, "freq": freq, "adjust_for": str(adjust), "weeks": trials, "seeds": first_seed,
                         **{f"false_{m}": f"{hits[freq, adjust][m] / trials:.3f}" for m in METRIC_NAMES},
                         "false_any": f"{any_hit[freq, adjust] / trials:.3f}", "any_95_high": f"{high:.3f}",
                         "seconds": f"{(time.perf_counter() - started) / len(QUIET):.0f}"})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def _step_trial(cp: pd.DataFrame, hour: int) -> tuple[float, float, float, bool]:
    """Error of the nearest change point in its buckets and in hours, its bucket length, interval coverage."""
    bucket_h = np.array([pd.Timedelta(f) / pd.Timedelta(hours=1) for f in cp["freq"]])
    at = (cp["period_start"] - MONDAY).dt.total_seconds().to_numpy() / 3600
    # The true step lies in the bucket that starts at floor(hour / bucket) buckets.
    truth = np.floor(hour / bucket_h) * bucket_h
    nearest = int(np.argmin(np.abs(at - truth)))
    low = (cp["moment_low"].iloc[nearest] - MONDAY).total_seconds() / 3600
    high = (cp["moment_high"].iloc[nearest] - MONDAY).total_seconds() / 3600
    # The moment is a bucket boundary. A step inside a bucket makes that bucket a mix, and both of its
    # boundaries are right (the bucket counted after the change, or before it): the interval covers the truth
    # when it holds either. A step on a boundary has only that one.
    first = truth[nearest]
    last = first + bucket_h[nearest] if hour > first else first
    covered = bool(low <= last and high >= first)
    error_h = abs(at[nearest] - truth[nearest])
    return error_h / bucket_h[nearest], abs(at[nearest] - hour), float(bucket_h[nearest]), covered


def step_change_points(trials: int, only: str | None = None) -> list[dict[str, Any]]:
    rows = []
    for name, (metric, step, freq) in STEPS.items():
        if only is not None and name != only:
            continue
        for per_week in TRAFFIC:
            started = time.perf_counter()
            found, on_time, covered = 0, 0, 0
            errors, hours, buckets, smaller_side = [], [], [], []
            for seed, hour in enumerate(step_hours(trials, seed=per_week)):
                df = synthetic_week(20_000 + seed, per_week=per_week, step_hour=int(hour), **step)
                before = int((df["start_time"] < MONDAY + pd.Timedelta(hours=int(hour))).sum())
                smaller_side.append(min(before, len(df) - before))
                cp = change_points(df, metric=metric, freq=freq, seed=seed, **WEEK)  # type: ignore[arg-type]
                if cp.empty:
                    continue
                found += 1
                err_b, err_h, bucket_h, cover = _step_trial(cp, int(hour))
                errors.append(err_b)
                hours.append(err_h)
                buckets.append(bucket_h)
                on_time += err_b <= 2
                covered += cover
            used = pd.Series([f"{b:g}h" for b in buckets]).value_counts()
            rows.append({"step": name, "freq": freq, "per_week": per_week, "min_side": int(np.min(smaller_side)),
                         "median_side": int(np.median(smaller_side)), "trials": trials,
                         "buckets_used": ", ".join(f"{k} {v / max(found, 1):.0%}" for k, v in used.items()),
                         "found": f"{found / trials:.3f}", "within_2": f"{on_time / max(found, 1):.3f}",
                         "median_error_buckets": f"{np.median(errors) if errors else float('nan'):.1f}",
                         "median_error_hours": f"{np.median(hours) if hours else float('nan'):.1f}",
                         "interval_covers": f"{covered / max(found, 1):.3f}",
                         "seconds": f"{time.perf_counter() - started:.0f}"})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def ladder(trials: int) -> list[dict[str, Any]]:
    """Each fixed bucket of the auto ladder on the acceptance steps: where the thresholds of freq="auto" come from.

    For every metric, traffic and bucket length: the median signal per busy bucket (the quantity
    ``freq="auto"`` compares with ``AUTO_MIN_SIGNAL``), the share of steps found and the share of those
    within 2 buckets. A threshold is the smallest signal from which within_2 >= 0.85 at every traffic.
    """
    scenarios = {"failure_rate": {"failure_step": 2.0}, "p50": {"latency_step": 1.3}, "p95": {"latency_step": 1.3}}
    rows = []
    for metric, step in scenarios.items():
        for per_week in (2_500, 5_000, 10_000, 20_000, 40_000):
            stats = {f: [0, 0, []] for f in AUTO_FREQS[:7]}
            for seed, hour in enumerate(step_hours(trials, seed=per_week)):
                df = synthetic_week(20_000 + seed, per_week=per_week, step_hour=int(hour), **step)
                t = (df["start_time"] - MONDAY).dt.total_seconds().to_numpy() * 1000
                share = (df["status"] != "SUCCEEDED").mean() if metric == "failure_rate" else SIGNAL_SHARE[metric]
                for f, st in stats.items():
                    n = np.bincount((t // (pd.Timedelta(f) / pd.Timedelta(milliseconds=1))).astype(np.intp))
                    st[2].append(float((n.astype(float) ** 2).sum() / n.sum()) * share)
                    cp = change_points(df, metric=metric, freq=f, seed=seed, **WEEK)  # type: ignore[arg-type]
                    if len(cp):
                        st[0] += 1
                        st[1] += _step_trial(cp, int(hour))[0] <= 2
            for f, (found, on_time, signal) in stats.items():
                rows.append({"metric": metric, "per_week": per_week, "freq": f, "trials": trials,
                             "signal_per_busy_bucket": f"{np.median(signal):.1f}",
                             "threshold": AUTO_MIN_SIGNAL[metric], "found": f"{found / trials:.3f}",
                             "within_2": f"{on_time / max(found, 1):.3f}"})  # fmt: skip
                print(rows[-1], flush=True)
    return rows


def quiet_explain(trials: int) -> list[dict[str, Any]]:
    rows = []
    first = (MONDAY, MONDAY + pd.Timedelta(days=7))
    second = (MONDAY + pd.Timedelta(days=7), MONDAY + pd.Timedelta(days=14))
    for drift in (0.0, 0.1, 0.2):
        started = time.perf_counter()
        changed = 0
        for seed in range(trials):
            df = synthetic_week(30_000 + seed, weeks=2, per_week=10_000, drift=drift)
            changed += explain_change(df, second, first, n_boot=200, seed=seed).changed
        rows.append({"drift": drift, "pairs": trials, "nothing_changed": f"{1 - changed / trials:.3f}",
                     "seconds": f"{time.perf_counter() - started:.0f}"})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def simulator_rollouts(seeds: range) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        wl = Workload(seed=seed)
        p = wl.main
        for version in (p.confounded_version, p.regressed_version):
            spec = next(v for v in p.versions if v.version == version)
            assert spec.canary_start is not None
            monday = spec.canary_start.normalize() - pd.Timedelta(days=spec.canary_start.day_of_week)
            gt = wl.ground_truth(p.rid, monday - pd.Timedelta(days=7), monday + pd.Timedelta(days=7))
            df = schema.to_frame(pa.Table.from_pandas(gt[list(schema.COLUMNS)], preserve_index=False))
            result = explain_change(
                df, (monday, monday + pd.Timedelta(days=7)), (monday - pd.Timedelta(days=7), monday)
            )
            t = result.table
            rows_v = t[(t["metric"] == "failure_rate") & (t["by"] == "resource_version") & (t["segment"] == version)]
            whole = rows_v[rows_v["failure_reason"].isna()].iloc[0]
            reasons = rows_v[rows_v["failure_reason"].notna() & rows_v["cause"] & (rows_v["contribution"] > 0)]
            worse = sorted(r for r, m in p.failure_multipliers[version].items() if m > 1)
            lat = t[(t["metric"] == "p50") & (t["component"] != "total")].set_index("component")["cause"]
            rows.append({"seed": seed, "version": version, "truth": "regressed" if worse else "mix only",
                         "within_cause": bool(whole["cause"]), "within_pp": f"{100 * whole['contribution']:+.2f}",
                         "reasons_named": ",".join(sorted(reasons["failure_reason"])) or "-",
                         "expected_reasons": ",".join(worse) or "-",
                         "p50_within": bool(lat["within"]), "p50_mix": bool(lat["mix"]),
                         "correct": bool(whole["cause"]) == bool(worse)
                         and sorted(reasons["failure_reason"]) == worse})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="weeks (or pairs of weeks) per scenario")
    parser.add_argument("--seeds", type=int, default=5, help="simulator workload seeds")
    parser.add_argument(
        "--quiet-trials",
        type=int,
        default=None,
        help="quiet weeks per drift (default: --trials); more narrow the false-alarm rates",
    )
    parser.add_argument(
        "--only",
        choices=["quiet", "steps"],
        default=None,
        help="run one part only (its table, and JSON under calibrate_changes_<part>)",
    )
    parser.add_argument("--drifts", type=float, nargs="+", default=[0.0, 0.15, 0.3], help="with --only quiet")
    parser.add_argument("--first-seed", type=int, default=10_000,
                        help="with --only quiet: the first quiet week's seed (another set of weeks)")  # fmt: skip
    parser.add_argument("--ladder", action="store_true",
                        help="only the fixed-bucket ladder that the thresholds of freq='auto' come from")  # fmt: skip
    args = parser.parse_args()
    if args.ladder:
        rows = ladder(args.trials)
        print("\nchange_points at each fixed bucket length, one step at a random hour:")
        print_table(rows, list(rows[0]))
        write_json("calibrate_changes_ladder", {"ladder": rows})
        return
    quiet_trials = args.quiet_trials or args.trials
    if args.only is not None:
        drifts = tuple(args.drifts)
        rows = (
            quiet_change_points(quiet_trials, drifts, args.first_seed)
            if args.only == "quiet"
            else step_change_points(args.trials)
        )
        print(f"\nchange_points, {args.only}:")
        print_table(rows, list(rows[0]))
        write_json(f"calibrate_changes_{args.only}", {args.only: rows})
        return
    quiet = quiet_change_points(quiet_trials)
    steps = step_change_points(args.trials)
    pairs = quiet_explain(args.trials)
    sim = simulator_rollouts(range(args.seeds))
    print("\nchange_points, quiet weeks (share of weeks with a change point):")
    print_table(quiet, list(quiet[0]))
    print("\nchange_points, one step at a random hour:")
    print_table(steps, list(steps[0]))
    print("\nexplain_change, quiet pairs of weeks:")
    print_table(pairs, list(pairs[0]))
    print("\nexplain_change, the simulator's rollouts:")
    print_table(sim, list(sim[0]))
    write_json("calibrate_changes", {"quiet_change_points": quiet, "steps": steps, "quiet_explain": pairs,
                                     "simulator": sim})  # fmt: skip


if __name__ == "__main__":
    main()
