"""``exec-analytics demo``: the whole path on the built-in simulator, from HTTP to the weekly report."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd

from . import formatting as fmt
from .cache import ExecutionCache
from .client import FoundryClient
from .loader import load_executions
from .report import Report, build_weekly_report, render_figures, render_html, render_markdown, render_summary
from .simulator import SimClock, SimulatorServer, Workload

__all__ = ["DEMO_NOW", "DEMO_SLO", "run_demo"]

#: The simulator's clock is frozen here so that every run of the demo shows the same history, including the
#: version rollouts that the workload schedules in the weeks before it.
DEMO_NOW = pd.Timestamp("2026-11-28T00:00:00Z")
#: The simulated resources fail a few percent of the time by design, so the demo's error budget is set where
#: one of them keeps its budget and another overspends it.
DEMO_SLO = 0.95


def run_demo(
    *,
    weeks: int = 4,
    seed: int = 0,
    out_dir: Path = Path("exec-analytics-demo"),
    progress: bool | None = None,
    slo: float = DEMO_SLO,
) -> Report:
    """Serve the simulator on a free loopback port, load ``weeks`` of three resources and report on them.

    Writes into ``out_dir``: ``report.html`` (self-contained), ``report.md``, ``figures/*.png`` and
    ``executions.parquet``; prints the report's headline table and where the files are.

    Parameters
    ----------
    weeks : int
        Weeks of history before :data:`DEMO_NOW` to load (at least 2: the report compares its week, the last
        complete ISO week, with the one before).
    seed : int
        Workload seed.
    out_dir : pathlib.Path
        Directory for the outputs and the demo's own execution history, ``cache/seed-<seed>/``: a second run
        reads it and fetches only the provisional last hours, and the user's real cache is never touched.
    progress : bool or None
        Progress bar; ``None`` shows it on a terminal.
    slo : float
        Error-budget target of the report.

    Returns
    -------
    Report
        The weekly report that was rendered.
    """
    if weeks < 2:
        raise ValueError("weeks must be at least 2: the report compares a week with the one before")
    workload = Workload(seed=seed)
    end = DEMO_NOW
    start = end - pd.Timedelta(weeks=weeks)
    began = time.perf_counter()
    with (
        SimulatorServer(workload, clock=SimClock(now=DEMO_NOW)) as server,
        FoundryClient(hostname=server.url, token=server.token) as client,
    ):
        print(f"simulator serving on {server.url}; loading {weeks} weeks of {len(workload.resource_rids)} resources")
        # The simulated "now" is frozen, so the cache must use the simulator's clock to tell what has settled;
        # a seed gets a history of its own because another seed's executions are another world.
        cache = ExecutionCache(out_dir / "cache" / f"seed-{seed}", clock=server.clock.now)
        df = load_executions(workload.resource_rids, start, end, client=client, cache=cache, progress=progress)
    loaded = time.perf_counter() - began
    fetched = len(df.attrs["cache"]["fetched"])
    how = f"{fmt.plural(df.attrs['pages'], 'page')} fetched" if fetched else "all from the cache, no request made"
    print(f"{fmt.plural(len(df), 'execution')} ({how}) in {fmt.seconds(loaded)}; building the report for the "
          "last complete week")  # fmt: skip

    names = {r.rid: r.name for r in workload.resources}
    report = build_weekly_report(
        df, week=DEMO_NOW - pd.Timedelta(weeks=1), resources=workload.resource_rids, names=names, slo=slo
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out_dir / "executions.parquet", engine="pyarrow", compression="zstd", index=False)
    html = out_dir / "report.html"
    drawn = render_figures(report)
    html.write_text(render_html(report, figures=drawn), encoding="utf-8")
    (out_dir / "report.md").write_text(render_markdown(report), encoding="utf-8")
    figures = out_dir / "figures"
    figures.mkdir(exist_ok=True)
    for section in report.resources:
        for figure, png in drawn[section.rid].items():
            # Figure keys such as "version:1.4.0" are not portable file names.
            stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{section.name}-{figure}")
            (figures / f"{stem}.png").write_bytes(png)

    print()
    print(render_summary(report), end="")
    print(f"\nreport: {html.resolve()}  ({fmt.seconds(time.perf_counter() - began)} in all; SLO {fmt.level(slo)})")
    print(f"figures, report.md and executions.parquet in {out_dir.resolve()}")
    return report
