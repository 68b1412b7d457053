"""``exec-analytics``: a thin command line over the library.

Every command parses its arguments, calls the library, and maps expected failures to a one-line message and a
distinct exit code (below), so scripts and CI pipelines can tell an expired token from a typo.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pandas as pd

from . import __version__
from .errors import (
    ApiError,
    AuthenticationError,
    CacheError,
    ExecAnalyticsError,
    PermissionDeniedError,
    RateLimitedError,
    ResourceNotFoundError,
    ServerError,
    TransportError,
)
from .timeutil import to_utc

if TYPE_CHECKING:
    from .cache import ExecutionCache

__all__ = ["EXIT_CODES", "EXIT_REGRESSED", "main"]

#: ``exec-analytics compare`` exits with this code when a metric regressed, so a release gate can block on it.
EXIT_REGRESSED = 10

#: Exit codes by failure, most specific first. 2 is argparse's own code for bad usage.
EXIT_CODES: dict[type[BaseException], int] = {
    AuthenticationError: 3,
    PermissionDeniedError: 4,
    ResourceNotFoundError: 5,
    RateLimitedError: 6,
    ServerError: 6,
    TransportError: 6,
    ApiError: 7,
    CacheError: 9,
    ExecAnalyticsError: 1,
    ValueError: 2,
    TypeError: 2,
    OSError: 8,
}


def _exit_code(exc: BaseException) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch",
        help="load executions of one or more resources into the cache and, optionally, a Parquet file",
        formatter_class=_Formatter,
        description=(
            "Load every completed execution that started in [--start, --end). The local history (the cache) is\n"
            "used by default: only what it lacks, and its provisional recent stretches, are fetched."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              export FOUNDRY_HOSTNAME=acme.palantirfoundry.com FOUNDRY_TOKEN=...
              exec-analytics fetch ri.function-registry.main.function.1234 \\
                  --start 2026-11-01T00:00Z --end 2026-11-08T00:00Z \\
                  --where '{"type": "eq", "field": "status", "value": "FAILED"}' --out failed.parquet
            """
        ),
    )
    p.add_argument("rids", nargs="+", metavar="RID", help="resource RID(s) of functions or automations")
    p.add_argument("--start", required=True, help="window start, ISO-8601 with a zone (e.g. 2026-11-01T00:00Z)")
    p.add_argument("--end", required=True, help="window end (exclusive), ISO-8601 with a zone")
    p.add_argument("--where", help="ExecutionFilter as JSON (see API docs)")
    p.add_argument("--out", type=Path, help="Parquet file to write the window to (required with --no-cache)")
    p.add_argument("--hostname", help="Foundry hostname or base URL (default: $FOUNDRY_HOSTNAME)")
    p.add_argument("--workers", type=int, default=None, help="concurrent requests (default 8; user tokens allow 30)")
    _add_cache_dir(p)
    p.add_argument("--no-cache", action="store_true", help="fetch everything and leave the cache alone")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="fetch the whole window again even where the cache holds it settled, and merge",
    )
    p.add_argument(
        "--settle-lag",
        default=None,
        metavar="DURATION",
        help="provisional stretch before each fetch, re-read next time (default 2h)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_fetch)


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache directory (default: $EXEC_ANALYTICS_CACHE_DIR, else the per-user cache directory)",
    )


def _cache_from(args: argparse.Namespace, **kwargs: object) -> ExecutionCache:
    from .cache import ExecutionCache

    return ExecutionCache(args.cache_dir, **kwargs)  # type: ignore[arg-type]


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .client import FoundryClient
    from .loader import DEFAULT_WORKERS, load_executions

    where = None
    if args.where:
        try:
            where = orjson.loads(args.where)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"--where is not valid JSON: {exc}") from None
    if args.no_cache and (args.refresh or args.cache_dir is not None or args.settle_lag is not None):
        raise ValueError("--no-cache cannot be combined with --cache-dir, --refresh or --settle-lag")
    if args.no_cache and args.out is None:
        raise ValueError("--no-cache needs --out: without the cache the executions must go somewhere")
    cache: ExecutionCache | bool = False
    if not args.no_cache:
        cache = _cache_from(args, **({} if args.settle_lag is None else {"settle_lag": args.settle_lag}))
    with FoundryClient(hostname=args.hostname) as client:
        df = load_executions(
            args.rids,
            args.start,
            args.end,
            where=where,
            client=client,
            cache=cache,
            refresh=args.refresh,
            workers=args.workers or DEFAULT_WORKERS,
            progress=False if args.no_progress else None,
        )
    if args.out is not None:
        _write_parquet(df, args.out)
    where_to = f"to {args.out}" if args.out is not None else "in the cache"
    note = f"{df.attrs['pages']:,} pages, {df.attrs['duplicates_dropped']:,} duplicates dropped"
    if "cache" in df.attrs:
        stretches = len(df.attrs["cache"]["fetched"])
        note += f"; {stretches} stretch(es) fetched, the rest from the cache at {df.attrs['cache']['path']}"
    print(f"wrote {len(df):,} executions {where_to} ({note})")
    return 0


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename it, so an interrupted run never leaves half a file."""
    from .files import write_atomic

    write_atomic(path, write)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    # Provenance travels in the file (pandas stores attrs in the schema metadata); zstd + dictionaries keep
    # a million executions near 30 MB.
    _write_atomically(path, lambda tmp: df.to_parquet(tmp, engine="pyarrow", compression="zstd", index=False))


def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="show or prune the local execution history",
        formatter_class=_Formatter,
        description=(
            "The local Parquet history that fetch and load_executions read and extend. It keeps every day\n"
            "until pruned: Foundry itself keeps about 30 days."
        ),
        epilog="example:\n  exec-analytics cache info\n  exec-analytics cache prune --before 2026-06-01\n",
    )
    actions = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    info = actions.add_parser(
        "info",
        help="resources, covered stretches, rows and bytes",
        formatter_class=_Formatter,
        description="One line per resource (and server-side filter): what is covered, settled, and stored.",
        epilog="example:\n  exec-analytics cache info --cache-dir ./history\n",
    )
    _add_cache_dir(info)
    info.set_defaults(func=_cmd_cache_info)
    prune = actions.add_parser(
        "prune",
        help="delete the days before a date",
        formatter_class=_Formatter,
        description="Delete every stored day before the UTC day DATE, with its coverage.",
        epilog="example:\n  exec-analytics cache prune --before 2026-06-01\n",
    )
    prune.add_argument("--before", required=True, metavar="DATE", help="UTC day (YYYY-MM-DD); earlier days go")
    prune.add_argument("--resource", action="append", metavar="RID", help="only this resource (repeatable)")
    _add_cache_dir(prune)
    prune.set_defaults(func=_cmd_cache_prune)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _cmd_cache_info(args: argparse.Namespace) -> int:
    from .cache.store import format_duration

    cache = _cache_from(args)
    info = cache.info()
    print(f"cache {cache.path} (settle lag {format_duration(cache.settle_lag)})")
    if info.empty:
        print("empty")
        return 0
    shown = pd.DataFrame(
        {
            "resource": info["resource_rid"],
            "filter": info["filter"].fillna("-"),
            "rows": info["rows"].map("{:,}".format),
            "files": info["files"],
            "size": info["bytes"].map(_size),
            "settled until": info["settled_until"].map(_short_time),
            "covered": info["covered"].str.replace(":00Z", "Z").str.replace("/", " → "),
        }
    )
    print(shown.to_string(index=False))
    print(
        f"{int(info['rows'].sum()):,} executions in {int(info['files'].sum()):,} files, "
        f"{_size(int(info['bytes'].sum()))}"
    )
    return 0


def _short_time(ts: pd.Timestamp) -> str:
    return "-" if pd.isna(ts) else ts.strftime("%Y-%m-%dT%H:%MZ")


def _cmd_cache_prune(args: argparse.Namespace) -> int:
    cache = _cache_from(args)
    removed = cache.prune(args.before, resource_rid=args.resource)
    print(
        f"removed {len(removed):,} day partition(s) before {args.before}: {int(removed['rows'].sum()):,} "
        f"executions, {_size(int(removed['bytes'].sum()))}"
    )
    return 0


def _add_source_options(p: argparse.ArgumentParser) -> None:
    """Where executions come from: the Foundry connection and the local history."""
    p.add_argument("--hostname", help="Foundry hostname or base URL (default: $FOUNDRY_HOSTNAME)")
    _add_cache_dir(p)
    p.add_argument("--no-cache", action="store_true", help="fetch everything and leave the cache alone")
    p.add_argument("--workers", type=int, default=None, help="concurrent requests (default 8; user tokens allow 30)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _load(
    args: argparse.Namespace, rids: Sequence[str], start: pd.Timestamp, end: pd.Timestamp, where: object = None
) -> pd.DataFrame:
    """Load through the cache (unless --no-cache) with the options of :func:`_add_source_options`."""
    from .client import FoundryClient
    from .loader import DEFAULT_WORKERS, load_executions

    if args.no_cache and args.cache_dir is not None:
        raise ValueError("--no-cache cannot be combined with --cache-dir")
    cache: ExecutionCache | bool = False if args.no_cache else _cache_from(args)
    with FoundryClient(hostname=args.hostname) as client:
        return load_executions(
            list(rids),
            start,
            end,
            where=where,
            client=client,
            cache=cache,
            workers=args.workers or DEFAULT_WORKERS,
            progress=False if args.no_progress else None,
        )


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write the weekly reliability report (HTML or Markdown)",
        formatter_class=_Formatter,
        description=(
            "Load the period and the one before it (for week-over-week changes and version verdicts),\n"
            "then write one self-contained report."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              exec-analytics report ri.function-registry.main.function.1234 --week 2026-W47 --out report.html
              exec-analytics report RID1 RID2 --start 2026-11-01T00:00Z --end 2026-11-15T00:00Z \\
                  --out report.md --format md
            """
        ),
    )
    p.add_argument("rids", nargs="+", metavar="RID", help="resource RID(s) of functions or automations")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--week", help="ISO week, e.g. 2026-W47 (Monday to Monday, UTC)")
    when.add_argument("--start", help="period start, ISO-8601 with a zone (needs --end)")
    p.add_argument("--end", help="period end (exclusive), ISO-8601 with a zone")
    p.add_argument("--out", required=True, type=Path, help="file to write")
    p.add_argument(
        "--format", choices=("html", "md"), default=None, help="html (default, or from the --out suffix) or md"
    )
    p.add_argument("--slo", type=float, default=0.99, help="target share of succeeded executions (default 0.99)")
    _add_source_options(p)
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import build_weekly_report, render_html, render_markdown, week_bounds

    if (args.start is None) != (args.end is None):
        raise ValueError("--start and --end go together")
    start, end = week_bounds(args.week) if args.week else (to_utc(args.start, "--start"), to_utc(args.end, "--end"))
    if end <= start:
        raise ValueError("--end must be after --start")
    fmt = args.format or ("md" if args.out.suffix.lower() in (".md", ".markdown") else "html")
    # One period before the report's own: week-over-week changes and the baselines of new versions.
    df = _load(args, args.rids, start - (end - start), end)
    period = {"week": args.week} if args.week else {"start": start, "end": end}
    report = build_weekly_report(df, **period, resources=args.rids, slo=args.slo)
    text = render_html(report) if fmt == "html" else render_markdown(report)
    _write_text(args.out, text)
    print(report.summary.to_string(index=False))
    print(f"\nwrote {args.out}")
    return 0


def _write_text(path: Path, text: str) -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two versions of a resource; exit 10 on a regression (release gates)",
        formatter_class=_Formatter,
        description=(
            "Compare a candidate version with a baseline over the time both ran, adjusted for caller mix:\n"
            "failure rate, p50, p95, p99 and the whole distribution, each with an interval and a verdict.\n"
            f"Exits {EXIT_REGRESSED} when any metric regressed, 0 otherwise."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              exec-analytics compare ri.function-registry.main.function.1234 \\
                  --baseline 1.3.0 --candidate 1.4.0 --start 2026-11-01T00:00Z --end 2026-11-28T00:00Z
            """
        ),
    )
    p.add_argument("rid", metavar="RID", help="resource RID of the function or automation")
    p.add_argument("--baseline", required=True, help="version to compare against")
    p.add_argument("--candidate", required=True, help="version under test")
    p.add_argument("--start", help="window start (default: 28 days before --end)")
    p.add_argument("--end", help="window end, exclusive (default: now)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON records")
    _add_source_options(p)
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import filters
    from .analysis import compare_versions

    end = to_utc(args.end, "--end") if args.end else pd.Timestamp.now(tz="UTC").floor("ms")
    start = to_utc(args.start, "--start") if args.start else end - pd.Timedelta(days=28)
    # Only the two versions are needed: the server filters, so the transfer is theirs alone.
    df = _load(args, [args.rid], start, end, where=filters.version_in([args.baseline, args.candidate]))
    result = compare_versions(df, args.baseline, args.candidate)
    if args.json:
        print(result.to_json(orient="records", date_format="iso", indent=2))
    else:
        shown = [
            "metric",
            "baseline_value",
            "candidate_value",
            "ratio",
            "ratio_low",
            "ratio_high",
            "difference",
            "difference_low",
            "difference_high",
            "p_adjusted",
            "verdict",
        ]
        options = ("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format)
        with pd.option_context(*options):
            print(result[[c for c in shown if c in result.columns]].to_string(index=False))
    regressed = result["verdict"].eq("regressed")
    if regressed.any():
        print(f"regressed: {', '.join(result.loc[regressed, 'metric'].astype(str))}", file=sys.stderr)
        return EXIT_REGRESSED
    return 0


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve the built-in Foundry simulator on loopback",
        formatter_class=_Formatter,
        description="Serve a Foundry-compatible listExecutions endpoint with a synthetic, seeded workload.",
        epilog=textwrap.dedent(
            """\
            example:
              exec-analytics simulate --port 8765 --seed 7 &
              FOUNDRY_HOSTNAME=http://127.0.0.1:8765 FOUNDRY_TOKEN=<printed token> \\
                  exec-analytics fetch <printed RID> --start 2026-11-20T00:00Z --end 2026-11-21T00:00Z --out x.parquet
            """
        ),
    )
    p.add_argument("--port", type=int, default=8765, help="TCP port on 127.0.0.1 (0 picks a free one)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (same seed, same executions)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every resource's traffic")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every request")
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import FaultConfig, serve

    faults = FaultConfig(latency_s=args.latency_ms / 1000.0) if args.latency_ms else None
    serve(args.port, args.seed, faults=faults, scale=args.scale)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole path on the built-in simulator: load four weeks, write the weekly report",
        formatter_class=_Formatter,
        description=(
            "Start the Foundry simulator on a free loopback port, load the last weeks of three resources\n"
            "through the real client, loader and cache, and write the weekly reliability report, its\n"
            "figures and the executions into --out-dir."
        ),
        epilog="example:\n  exec-analytics demo --weeks 4 --out-dir exec-analytics-demo\n",
    )
    p.add_argument("--weeks", type=int, default=4, help="weeks of history to load (default 4, at least 2)")
    p.add_argument("--seed", type=int, default=0, help="workload seed")
    p.add_argument("--out-dir", type=Path, default=Path("exec-analytics-demo"), help="where to write files")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(weeks=args.weeks, seed=args.seed, out_dir=args.out_dir, progress=False if args.no_progress else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``exec-analytics`` argument parser (exposed so the docs can be checked against it)."""
    parser = argparse.ArgumentParser(
        prog="exec-analytics",
        description="Foundry function and automation executions: load, keep and analyse them.",
        formatter_class=_Formatter,
        epilog="example:\n  exec-analytics demo\n",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_cache(sub)
    _add_demo(sub)
    _add_fetch(sub)
    _add_report(sub)
    _add_compare(sub)
    _add_simulate(sub)
    return parser


def _help_blocks(parser: argparse.ArgumentParser, title: str) -> Iterator[tuple[str, str]]:
    """Every (sub)command's help, depth first: ``exec-analytics``, ``exec-analytics cache``, ``... cache info``."""
    yield title, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                yield from _help_blocks(p, f"{title} {name}")


def cli_reference() -> str:
    """The README's command-line reference: every command's ``--help``, at a fixed width of 100 columns.

    Returns
    -------
    str
        Markdown, one heading and code block per command.
    """
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the docs must not depend on it
    try:
        parser = build_parser()
        blocks = list(_help_blocks(parser, "exec-analytics"))
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(f"### `{title}`\n\n```text\n{text.rstrip()}\n```\n" for title, text in blocks)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``EXIT_CODES``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("exec-analytics: interrupted", file=sys.stderr)
        return 130
    except (ExecAnalyticsError, ValueError, TypeError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"exec-analytics: error: {message}", file=sys.stderr)
        return _exit_code(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
