"""Shared output helpers for the benchmarks: a plain-text table and a JSON file per benchmark."""

from __future__ import annotations

import gc
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as an aligned text table with the given columns."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def write_json(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` (plus machine facts) to ``benchmarks/results/<name>.json`` and return the path."""
    RESULTS.mkdir(exist_ok=True)
    facts = {"python": sys.version.split()[0], "machine": platform.machine(), "platform": platform.platform()}
    result = {**result, **facts}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_memory(run: Callable[[], object]) -> dict[str, Any]:
    """Run ``run`` once and measure the memory it needed on top of what the process already held.

    The kernel's peak-RSS counter is reset first (``/proc/self/clear_refs``, Linux >= 4.0), so the peak is the
    approach's own; tracemalloc would miss Arrow's and DuckDB's allocators and slow everything down. Where the
    reset is unavailable, ``ru_maxrss`` gives a lower bound.

    Returns
    -------
    dict
        ``peak_mb`` (peak RSS over RSS before), ``retained_mb`` (RSS after, result still alive, over
        before), ``seconds_single_run`` and ``method``.
    """
    gc.collect()
    method = "VmHWM after clear_refs"
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before_kb = _status_kb("VmRSS")
    except OSError:
        method = "ru_maxrss delta (lower bound)"
        before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - t
    if method.startswith("VmHWM"):
        peak_kb, after_kb = _status_kb("VmHWM"), _status_kb("VmRSS")
    else:
        peak_kb = after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    return {
        "peak_mb": round((peak_kb - before_kb) / 1024, 1),
        "retained_mb": round((after_kb - before_kb) / 1024, 1),
        "seconds_single_run": round(seconds, 3),
        "method": method,
    }


def memory_in_subprocess(script: str, name: str, rows: int) -> dict[str, Any]:
    """Run ``script --rows ROWS --memory-of NAME`` in a fresh process and return the JSON it prints last."""
    out = subprocess.run([sys.executable, script, "--rows", str(rows), "--memory-of", name],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])
