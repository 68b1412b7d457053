"""Shared output helpers for the benchmarks: a plain-text table and a JSON file per benchmark."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
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
