"""A/A calibration of compare_versions during rollouts: how often identical versions are called regressed.

Run: ``python benchmarks/calibrate_versions.py [--comparisons N]``

For each rollout scenario of ``tests/test_analysis_calibration.py`` (the candidate's share ramps from 0 to
1 while latency follows a daily cycle or drifts, identically for both versions), runs N comparisons
(default 200) at default settings and with time stratification switched off (``stratify_freq=None``), and
prints the share of comparisons with any "regressed" verdict and the share per metric. Also the power: the
share of comparisons that call a true 30% slowdown regressed on p50. Writes
``benchmarks/results/calibrate_versions.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_analysis_calibration import SCENARIOS, regressed_share

from _common import print_table, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=200, help="comparisons per scenario and setting")
    args = parser.parse_args()
    seeds = range(args.comparisons)
    rows: list[dict[str, Any]] = []
    for name, scenario in SCENARIOS.items():
        for label, options in (("auto (default)", {}), ("None (callers only)", {"stratify_freq": None})):
            started = time.perf_counter()
            share, per_metric = regressed_share(scenario, seeds, **options)
            _, power = regressed_share({**scenario, "slowdown": 1.3}, range(max(args.comparisons // 4, 10)),
                                       **options)  # fmt: skip
            rows.append({"scenario": name, "stratify_freq": label, "comparisons": len(seeds),
                         "any_regressed": f"{share:.3f}",
                         **{m: f"{v:.3f}" for m, v in per_metric.items()},
                         "power_p50_x1.3": f"{power['p50']:.2f}",
                         "seconds": f"{time.perf_counter() - started:.0f}"})  # fmt: skip
            print(f"{name} / {label}: {share:.3f}", flush=True)
    columns = ["scenario", "stratify_freq", "comparisons", "any_regressed", "failure_rate", "p50", "p95", "p99",
               "distribution", "power_p50_x1.3", "seconds"]  # fmt: skip
    print_table(rows, columns)
    write_json("calibrate_versions", {"rows": rows})


if __name__ == "__main__":
    main()
