"""``exec-analytics``: a thin command line over the library.

Every command parses its arguments, calls the library, and maps expected failures to a one-line message and a
distinct exit code (below), so scripts and CI pipelines can tell an expired token from a typo.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from . import __version__
from . import formatting as fmt
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
    from .report import Report
    from .summary import Summary

__all__ = ["EXIT_CODES", "EXIT_REGRESSED", "FAIL_ON_CODES", "REPORT_FAIL_ON_CODES", "comparison_summary", "main"]

#: ``exec-analytics compare`` exits with this code when a metric regressed, so a release gate can block on it.
EXIT_REGRESSED = 10
#: ``compare --fail-on``: the verdicts a release gate can fail on, each with its own exit code; when several are
#: present the first in this order decides (regressed is the most alarming).
FAIL_ON_CODES: dict[str, int] = {"regressed": EXIT_REGRESSED, "inconclusive": 11, "insufficient": 12}
#: ``report --fail-on``: the resource statuses a scheduled report can fail on, each with its own exit code; when
#: several are present the first in this order decides (the report's own order of statuses). 11-13 belong to
#: ``compare`` and ``sync``, so a script reading a code never has to know which command gave it.
REPORT_FAIL_ON_CODES: dict[str, int] = {"regressed": EXIT_REGRESSED, "budget-exhausted": 14, "at-risk": 15,
                                        "attention": 16}  # fmt: skip
# --fail-on names -> compare_versions verdicts
_FAIL_ON_VERDICTS = {"regressed": "regressed", "inconclusive": "inconclusive", "insufficient": "insufficient data"}

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


def _int_in(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {value}")
    return value


def _workers(text: str) -> int:
    """``--workers``: the loader's own bounds, checked before any request (0 is not "the default")."""
    return _int_in(text, 1, 256)


def _port(text: str) -> int:
    """``--port``: a TCP port, so that 80000 is a usage error rather than a traceback from the socket."""
    return _int_in(text, 0, 65535)


#: Library keywords in error messages, as the command line spells them.
_FLAGS = {"hostname=": "--hostname", "token=": "FOUNDRY_TOKEN", "client_id=/client_secret=":
          "FOUNDRY_CLIENT_ID/FOUNDRY_CLIENT_SECRET", "cache_dir=": "--cache-dir", "client=": "--hostname"}  # fmt: skip


def _in_cli_words(message: str) -> str:
    for keyword, flag in _FLAGS.items():
        message = re.sub(rf"(?<![\w-]){re.escape(keyword)}(?!\w)", flag, message)
    return message


def _name(text: str) -> tuple[str, str]:
    """``--name RID=NAME``: a display name for a resource."""
    rid, sep, name = text.partition("=")
    if not sep or not rid.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected RID=NAME, got {text!r}")
    return rid.strip(), name.strip()


def _add_names(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        type=_name,
        action="append",
        default=[],
        metavar="RID=NAME",
        help="show the resource RID as NAME in headings, tables and figures (repeatable)",
    )


def _names(args: argparse.Namespace) -> dict[str, str]:
    return dict(args.name)


def _add_fleet(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fleet",
        type=Path,
        metavar="FLEET",
        help="a fleet file (TOML, see `sync`): its resources, their names and the history's location "
        "(--name and --cache-dir still win)",
    )


def _resources(args: argparse.Namespace, given: Sequence[str]) -> list[str]:
    """The RIDs a command works on: as given, or from ``--fleet``, whose names and history location apply too.

    With a fleet, a resource may be named instead of its RID, and no resource at all means the whole fleet.
    """
    if args.fleet is None:
        if not given:
            raise ValueError("give at least one RID, or --fleet FLEET")
        return list(given)
    from .fleet import load_fleet

    fleet = load_fleet(args.fleet)
    by_name = {name: rid for rid, name in fleet.names.items()}
    rids = [by_name.get(r, r) for r in given] or list(fleet.rids)
    args.name = [*fleet.names.items(), *args.name]  # an explicit --name wins
    if args.cache_dir is None and not args.no_cache and fleet.cache is not None:
        args.cache_dir = fleet.cache
    return rids


def _print_json(value: object) -> None:
    """A command's result on stdout as indented JSON (NaN as null); diagnostics go to stderr."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready records: times as ISO-8601 UTC text with milliseconds, missing values as null."""
    if not len(frame):
        return []
    out: list[dict[str, Any]] = orjson.loads(frame.to_json(orient="records", date_format="iso", date_unit="ms"))
    return out


def _iso(t: object) -> str | None:
    """A provenance time (text or Timestamp) as ISO-8601 UTC text with a ``Z``; None when absent."""
    if t is None:
        return None
    return str(to_utc(t, "time").isoformat()).replace("+00:00", "Z")


def _check_out_path(out: Path | None) -> None:
    """An --out that names a directory is a usage error found before any request, not a failed rename."""
    if out is not None and out.is_dir():
        raise ValueError(f"--out {out} is a directory; name the file to write, e.g. {out / 'out'}")


def _add_fetch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--out", type=Path, help="Parquet file (.parquet) to write the window to (required with --no-cache)")
    p.add_argument("--hostname", help="Foundry hostname or base URL (default: $FOUNDRY_HOSTNAME)")
    p.add_argument(
        "--workers", type=_workers, default=None, help="concurrent requests, 1 to 256 (default 8; user tokens allow 30)"
    )
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
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help=(
            "what to print on stdout: a sentence (text) or one JSON object with executions, resources "
            "[{rid, name, executions}], start, end, out, pages, duplicates_dropped, cache {path, fetched} "
            "(see docs/cli-json.md); progress and warnings go to stderr"
        ),
    )
    _add_names(p)
    p.set_defaults(func=_cmd_fetch)


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        type=str,
        default=None,
        metavar="PATH_OR_URL",
        help="cache directory or s3:// URL (default: $EXEC_ANALYTICS_CACHE_DIR, else the per-user cache directory)",
    )


def _cache_from(args: argparse.Namespace, **kwargs: object) -> ExecutionCache:
    from .cache import ExecutionCache

    return ExecutionCache(args.cache_dir, **kwargs)  # type: ignore[arg-type]


def _cmd_fetch(args: argparse.Namespace) -> int:
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
    if args.out is not None and args.out.suffix.lower() not in ("", ".parquet", ".pq"):
        raise ValueError(f"--out {args.out.name}: executions are written as Parquet (.parquet), not {args.out.suffix}")
    _check_out_path(args.out)
    cache: ExecutionCache | bool = False
    if not args.no_cache:
        cache = _cache_from(args, **({} if args.settle_lag is None else {"settle_lag": args.settle_lag}))
    with _hostname(args), _needs_hostname(args):
        df = load_executions(
            args.rids,
            args.start,
            args.end,
            where=where,
            cache=cache,
            refresh=args.refresh,
            workers=args.workers or DEFAULT_WORKERS,
            progress=False if args.no_progress else None,
        )
    if args.out is not None:
        _write_parquet(df, args.out)
    names = _names(args)
    counts = df["resource_rid"].astype("string").value_counts()
    per_resource = [
        {"rid": rid, "name": names.get(rid, rid), "executions": int(counts.get(rid, 0))} for rid in args.rids
    ]
    cached = df.attrs.get("cache")
    if args.format == "json":
        _print_json({
            "executions": len(df), "resources": per_resource, "start": _iso(df.attrs.get("start")),
            "end": _iso(df.attrs.get("end")), "out": None if args.out is None else str(args.out),
            "pages": df.attrs["pages"], "duplicates_dropped": df.attrs["duplicates_dropped"],
            "cache": None if cached is None else {"path": cached["path"], "fetched": [
                {"rid": rid, "start": start, "end": end} for rid, start, end in cached["fetched"]]},
        })  # fmt: skip
        return 0
    where_to = f"to {args.out}" if args.out is not None else "in the cache"
    note = f"{df.attrs['pages']:,} pages, {df.attrs['duplicates_dropped']:,} duplicates dropped"
    if cached is not None:
        stretches = len(cached["fetched"])
        note += f"; {stretches} stretch(es) fetched, the rest from the cache at {cached['path']}"
    print(f"wrote {len(df):,} executions {where_to} ({note})")
    if len(per_resource) > 1 or names:
        for r in per_resource:
            print(f"  {fmt.text(r['name'])}: {fmt.plural(r['executions'], 'execution')}")
    return 0


@contextlib.contextmanager
def _needs_hostname(args: argparse.Namespace) -> Iterator[None]:
    """A cache that lacks part of the window, with no host configured, is a missing --hostname (exit 2).

    The same as without the cache, where the client cannot be built: the fix is the flag, not the cache.
    """
    try:
        yield
    except CacheError as exc:
        if args.hostname is None and not os.environ.get("FOUNDRY_HOSTNAME") and "no client to fetch" in str(exc):
            raise ValueError(f"no Foundry hostname to fetch what the cache lacks: {exc}") from None
        raise


@contextlib.contextmanager
def _hostname(args: argparse.Namespace) -> Iterator[None]:
    """--hostname for the client the loader builds only when it must fetch (as ``load_executions(client=None)``).

    A window the cache holds settled then needs neither a hostname nor a token. The loader reads the host from
    FOUNDRY_HOSTNAME, so --hostname stands in for it while the command loads.
    """
    if args.hostname is None:
        yield
        return
    saved = os.environ.get("FOUNDRY_HOSTNAME")
    os.environ["FOUNDRY_HOSTNAME"] = args.hostname
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("FOUNDRY_HOSTNAME", None)
        else:
            os.environ["FOUNDRY_HOSTNAME"] = saved


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file and rename it, so an interrupted run never leaves half a file.

    A failure says which file and why in words (the temporary file is already gone), not the rename's
    ``[Errno 21] ... '.x.tmp' -> 'x'``.
    """
    from .files import write_atomic

    try:
        write_atomic(path, write)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        reason = f"{reason[:1].lower()}{reason[1:]}"
        # mkdir under a file says "file exists", which names neither the file nor the problem.
        blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            reason = f"{blocked} is a file, not a directory"
        raise OSError(f"cannot write {path}: {reason}") from None


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    # Provenance travels in the file (pandas stores attrs in the schema metadata); zstd + dictionaries keep
    # a million executions near 30 MB.
    _write_atomically(path, lambda tmp: df.to_parquet(tmp, engine="pyarrow", compression="zstd", index=False))


def _add_cache(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    info.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help=(
            "table for people; json: one object with path, settle_lag_s, rows, files, bytes and resources "
            "[{resource_rid, filter, covered [{start, end}], first, last, settled_until, last_fetched_at, rows, "
            "files, bytes}] (see docs/cli-json.md); csv: one row per resource and filter, covered as "
            "'start/end, ...'"
        ),
    )
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
    if args.format == "csv":
        sys.stdout.write(info.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ"))
        return 0
    if args.format == "json":
        rows = _records(info)
        for row in rows:
            row["covered"] = [dict(zip(("start", "end"), c.split("/"), strict=True))
                              for c in (row["covered"] or "").split(", ") if c]  # fmt: skip
        _print_json({"path": str(cache.path), "settle_lag_s": cache.settle_lag.total_seconds(),
                     "rows": int(info["rows"].sum()), "files": int(info["files"].sum()),
                     "bytes": int(info["bytes"].sum()), "resources": rows})  # fmt: skip
        return 0
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
    p.add_argument(
        "--workers", type=_workers, default=None, help="concurrent requests, 1 to 256 (default 8; user tokens allow 30)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _load(
    args: argparse.Namespace, rids: Sequence[str], start: pd.Timestamp, end: pd.Timestamp, where: object = None
) -> pd.DataFrame:
    """Load through the cache (unless --no-cache) with the options of :func:`_add_source_options`.

    No client is built here: the loader builds one only when the cache lacks part of the window, so a window
    held settled loads with no hostname or token at all.
    """
    from .loader import DEFAULT_WORKERS, load_executions

    if args.no_cache and args.cache_dir is not None:
        raise ValueError("--no-cache cannot be combined with --cache-dir")
    cache: ExecutionCache | bool = False if args.no_cache else _cache_from(args)
    with _hostname(args), _needs_hostname(args):
        return load_executions(
            list(rids),
            start,
            end,
            where=where,
            cache=cache,
            workers=args.workers or DEFAULT_WORKERS,
            progress=False if args.no_progress else None,
        )


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="write the weekly reliability report (HTML, Markdown or JSON), from executions or a fleet's summary",
        formatter_class=_Formatter,
        description=(
            "Load the period and the one before it (for week-over-week changes and version verdicts),\n"
            "then write one self-contained report. With --summary, read a saved summary instead (a whole\n"
            "fleet's): counts and rates exact, percentiles from its sketches; version comparisons and what\n"
            "changed need rows, and the report says how to drill down into one resource.\n"
            f"With --fail-on, exit {REPORT_FAIL_ON_CODES['regressed']} (regressed), "
            f"{REPORT_FAIL_ON_CODES['budget-exhausted']} (budget exhausted), "
            f"{REPORT_FAIL_ON_CODES['at-risk']} (at risk) or {REPORT_FAIL_ON_CODES['attention']} (attention)\n"
            "when a resource has one of the statuses named, after writing the report."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              exec-analytics report ri.function-registry.main.function.1234 --week 2026-W47 --out report.html
              exec-analytics report RID1 RID2 --start 2026-11-01T00:00Z --end 2026-11-15T00:00Z \\
                  --out report.md --format md
              exec-analytics report --summary fleet-summary/ --week 2026-W47 --out fleet.html \\
                  --fail-on regressed,budget-exhausted
            """
        ),
    )
    p.add_argument(
        "rids",
        nargs="*",
        metavar="RID",
        help="resource RID(s) of functions or automations; with --fleet, every resource of the fleet by default, "
        "and a resource may be given by its name",
    )
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--week", help="ISO week, e.g. 2026-W47 (Monday to Monday, UTC)")
    when.add_argument("--start", help="period start, ISO-8601 with a zone (needs --end)")
    p.add_argument("--end", help="period end (exclusive), ISO-8601 with a zone")
    p.add_argument(
        "--out",
        type=Path,
        help="file to write: .html, .md or .json (another suffix is an error); without it, json goes to stdout",
    )
    p.add_argument(
        "--format",
        choices=("html", "md", "json"),
        default=None,
        help=(
            "html, md or json (default: from the --out suffix, else html); must agree with the suffix. json is "
            "the report's data: one object with title, start, end, previous_start, previous_end, generated_at, "
            "in_progress, slo, confidence, source and resources [{rid, name, status, whole_seconds, kpis, budget, "
            "new_versions, notable, callers, reasons}]; from --summary also basis, needs_rows, rank_error and per "
            "resource left_out, drill_down (see docs/cli-json.md)"
        ),
    )
    p.add_argument(
        "--slo",
        type=_slo,
        default=0.99,
        help="target share of succeeded executions (default 0.99, a common production target; the demo uses 0.95)",
    )
    p.add_argument(
        "--summary",
        type=Path,
        metavar="DIR",
        help="build the report from a summary saved with Summary.write (counts.parquet, sketches.parquet) instead "
        "of loading executions; RIDs (default: every resource in it) select resources; its buckets must divide "
        "the period",
    )
    p.add_argument(
        "--no-figures",
        action="store_true",
        help="html without figures: small and quick for a fleet (each resource draws four, ~0.1 s each)",
    )
    p.add_argument(
        "--fail-on",
        type=_report_fail_on,
        default=(),
        metavar="STATUSES",
        help="comma-separated resource statuses that fail the command once the report is written: regressed, "
        "budget-exhausted, at-risk, attention (exit codes above)",
    )
    _add_names(p)
    _add_fleet(p)
    _add_source_options(p)
    p.set_defaults(func=_cmd_report)


def _report_fail_on(text: str) -> tuple[str, ...]:
    """``report --fail-on``: known status names, in the order of :data:`REPORT_FAIL_ON_CODES`."""
    names = {n.strip().lower().replace(" ", "-") for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(REPORT_FAIL_ON_CODES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(REPORT_FAIL_ON_CODES)}; got {text!r}"
        )
    return tuple(n for n in REPORT_FAIL_ON_CODES if n in names)


def _slo(text: str) -> float:
    """``--slo``: a fraction strictly between 0 and 1, checked where every SLO target is."""
    from .analysis.budget import check_slo

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_slo(value, "--slo")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--slo ")) from None


#: Report formats by --out suffix.
_REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def _report_format(out: Path | None, given: str | None) -> str:
    """The report's format: --format, else the --out suffix; a suffix that says otherwise is an error."""
    if out is None:
        if given != "json":
            raise ValueError("--out is required for an html or md report (only --format json may go to stdout)")
        return given
    suffix = out.suffix.lower()
    implied = _REPORT_SUFFIXES.get(suffix)
    if suffix and implied is None:
        raise ValueError(
            f"--out {out.name}: a report is written as HTML (.html), Markdown (.md) or JSON (.json), not {suffix}"
        )
    if given is not None and implied is not None and given != implied:
        raise ValueError(f"--out {out.name} says {implied} but --format says {given}; make them agree")
    return given or implied or "html"


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import build_weekly_report, render_html, render_json, render_markdown, render_summary, week_bounds

    if (args.start is None) != (args.end is None):
        raise ValueError("--start and --end go together")
    start, end = week_bounds(args.week) if args.week else (to_utc(args.start, "--start"), to_utc(args.end, "--end"))
    if end <= start:
        raise ValueError("--end must be after --start")
    kind = _report_format(args.out, args.format)
    _check_out_path(args.out)
    period = {"week": args.week} if args.week else {"start": start, "end": end}
    data: pd.DataFrame | Summary
    if args.summary is not None:
        if args.no_cache or args.cache_dir is not None or args.hostname is not None:
            raise ValueError("--summary reads a saved summary; it cannot be combined with --cache-dir, --no-cache "
                             "or --hostname")  # fmt: skip
        rids: list[str] | None = _resources(args, args.rids) if args.rids or args.fleet is not None else None
        data = _read_summary(args.summary)
    else:
        # One period before the report's own: week-over-week changes and the baselines of new versions.
        rids = _resources(args, args.rids)
        data = _load(args, rids, start - (end - start), end)
    report = build_weekly_report(data, **period, resources=rids, names=_names(args), slo=args.slo)
    if report.in_progress:
        print(f"warning: the period is not over (it ends {fmt.timestamp(report.end)}); its figures will still "
              "change", file=sys.stderr)  # fmt: skip
    if args.no_figures and kind != "html":
        raise ValueError("--no-figures applies to an html report only")
    render = {"html": render_html, "md": render_markdown, "json": render_json}[kind]
    text = render_html(report, figures={}) if args.no_figures else render(report)
    if args.out is None:
        sys.stdout.write(text)
        return _report_exit(report, args.fail_on)
    _write_text(args.out, text)
    # With json the file is the result; the headline would mix prose into a script's stdout.
    if kind != "json":
        print(render_summary(report), end="")
    print(f"{'' if kind == 'json' else chr(10)}wrote {args.out}", file=sys.stderr if kind == "json" else sys.stdout)
    return _report_exit(report, args.fail_on)


def _read_summary(path: Path) -> Summary:
    from .summary import Summary

    if not (path / "counts.parquet").is_file() or not (path / "sketches.parquet").is_file():
        raise ValueError(f"--summary {path}: not a saved summary (expected counts.parquet and sketches.parquet)")
    return Summary.read(path)


def _report_exit(report: Report, fail_on: Sequence[str]) -> int:
    """``report --fail-on``: the code of the most alarming status named that a resource has (on stderr), else 0."""
    statuses = report.summary["status"].astype(str) if len(report.summary) else pd.Series(dtype=str)
    for name in fail_on:
        hit = statuses.eq(name.replace("-", " "))
        if hit.any():
            print(f"{name.replace('-', ' ')}: {', '.join(report.summary.loc[hit, 'name'].astype(str))}",
                  file=sys.stderr)  # fmt: skip
            return REPORT_FAIL_ON_CODES[name]
    return 0


def _write_text(path: Path, text: str) -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _add_compare(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two versions of a resource; exit 10 on a regression (release gates, see --fail-on)",
        formatter_class=_Formatter,
        description=(
            "Compare a candidate version with a baseline over the time both ran, adjusted for caller mix:\n"
            "failure rate, p50, p95, p99 and the whole distribution, each with an interval and a verdict.\n"
            f"Exits {EXIT_REGRESSED} when any metric regressed, 0 otherwise; with --fail-on, also "
            f"{FAIL_ON_CODES['inconclusive']} when one is\ninconclusive and {FAIL_ON_CODES['insufficient']} when "
            "one has insufficient data (the most alarming verdict present decides)."
        ),
        epilog=textwrap.dedent(
            """\
            example:
              exec-analytics compare ri.function-registry.main.function.1234 \\
                  --baseline 1.3.0 --candidate 1.4.0 --start 2026-11-01T00:00Z --end 2026-11-28T00:00Z
            """
        ),
    )
    p.add_argument("rid", metavar="RID", help="resource RID of the function or automation (or its name, with --fleet)")
    p.add_argument("--baseline", required=True, help="version to compare against")
    p.add_argument("--candidate", required=True, help="version under test")
    p.add_argument("--start", help="window start (default: 28 days before --end)")
    p.add_argument("--end", help="window end, exclusive (default: now)")
    p.add_argument(
        "--stratify-freq",
        type=_stratify_freq,
        default=None,
        metavar="FREQ",
        help=(
            "also compare within time buckets of this length, not only within callers: 'auto' (the default: "
            "a bucket chosen from the data), 'none' (callers only), or a pandas frequency such as 6h. It "
            "adjusts for the candidate's share growing during the rollout while latency and failures drift "
            "over the day; it does not adjust for anything else that changes with the version"
        ),
    )
    p.add_argument(
        "--fail-on",
        type=_fail_on,
        default=("regressed",),
        metavar="VERDICTS",
        help=(
            "comma-separated verdicts that fail the command, each with its exit code: regressed "
            f"({FAIL_ON_CODES['regressed']}), inconclusive ({FAIL_ON_CODES['inconclusive']}), insufficient "
            f"({FAIL_ON_CODES['insufficient']}: insufficient data); default regressed. A release gate that must not "
            "pass on no evidence uses regressed,inconclusive,insufficient"
        ),
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help=(
            "text for people; json: a list with one object per metric, compare_versions' columns (metric, "
            "verdict, baseline_value, candidate_value, ratio, difference, their _low/_high, p_adjusted, "
            "threshold, judged_on, note, ...) plus resource_name (see docs/cli-json.md); csv: the same rows. "
            "The exit code is the same in every format"
        ),
    )
    # The older spelling of --format json, kept for existing scripts.
    p.add_argument("--json", action="store_const", const="json", dest="format", help=argparse.SUPPRESS)
    _add_names(p)
    _add_fleet(p)
    _add_source_options(p)
    p.set_defaults(func=_cmd_compare)


def _fail_on(text: str) -> tuple[str, ...]:
    """``--fail-on``: known verdict names, in the order of :data:`FAIL_ON_CODES`."""
    names = {n.strip().lower() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(FAIL_ON_CODES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(FAIL_ON_CODES)}; got {text!r}")
    return tuple(n for n in FAIL_ON_CODES if n in names)


def _stratify_freq(text: str) -> str:
    """``--stratify-freq``: ``auto``, ``none`` or a positive pandas frequency, checked before any request."""
    word = text.strip().lower()
    if word in ("auto", "none"):
        return word
    try:
        step: pd.Timedelta | None = pd.Timedelta(text)  # the fixed lengths compare_versions accepts
    except (TypeError, ValueError):
        step = None
    if step is None or step <= pd.Timedelta(0) or step.value % 1_000_000:
        raise argparse.ArgumentTypeError(
            f"expected auto, none or a fixed time bucket such as 6h, 30min or 1D; got {text!r}"
        )
    return text


def _cmd_compare(args: argparse.Namespace) -> int:
    from . import filters
    from .analysis import compare_versions

    end = to_utc(args.end, "--end") if args.end else pd.Timestamp.now(tz="UTC").floor("ms")
    start = to_utc(args.start, "--start") if args.start else end - pd.Timedelta(days=28)
    (args.rid,) = _resources(args, [args.rid])
    # Only the two versions are needed: the server filters, so the transfer is theirs alone.
    df = _load(args, [args.rid], start, end, where=filters.version_in([args.baseline, args.candidate]))
    # The flag is passed only when given, so the library's default applies otherwise.
    given = args.stratify_freq
    extra: dict[str, Any] = {} if given is None else {"stratify_freq": None if given == "none" else given}
    result = compare_versions(df, args.baseline, args.candidate, **extra)
    name = _names(args).get(args.rid)
    if args.format == "json":
        _print_json(_records(result.assign(resource_name=name or args.rid)))
    elif args.format == "csv":
        sys.stdout.write(result.assign(resource_name=name or args.rid).to_csv(index=False))
    else:
        print(comparison_summary(result, name=name), end="")
    verdicts = result["verdict"].astype(str)
    for name in args.fail_on:  # the most alarming verdict first
        hit = verdicts.eq(_FAIL_ON_VERDICTS[name])
        if hit.any():
            metrics = ", ".join(fmt.metric_name(m) for m in result.loc[hit, "metric"])
            print(f"{_FAIL_ON_VERDICTS[name]}: {metrics}", file=sys.stderr)
            return FAIL_ON_CODES[name]
    return 0


def _threshold(row: pd.Series) -> str:
    """A verdict's practical threshold in the units of its effect."""
    t = float(row["threshold"])
    if row["judged_on"] == "ratio":
        return f"×{1 + t:.2f} (±{fmt.level(t)})"
    if str(row["metric"]).startswith("failure_rate"):
        return f"±{100 * t:g} pp"
    return f"±{t:g}"


def _why(row: pd.Series, tests: int) -> str:
    """Why a metric is inconclusive or has insufficient data; "" for the other verdicts."""
    verdict = str(row["verdict"])
    if verdict == "insufficient data":
        return fmt.text(row["note"]) or "no interval could be computed"
    if verdict != "inconclusive":
        return ""
    on = "ratio" if row["judged_on"] == "ratio" else "difference"
    low, high, t = float(row[f"{on}_low"]), float(row[f"{on}_high"]), float(row["threshold"])
    up, down = (1 + t, 1 / (1 + t)) if on == "ratio" else (t, -t)
    if low > up or high < down:
        return (f"beyond the threshold {_threshold(row)} but not significant once adjusted for "
                f"{fmt.plural(tests, 'test')} (adjusted p = {float(row['p_adjusted']):.2g})")  # fmt: skip
    return f"the interval reaches across the threshold {_threshold(row)}: more executions would decide it"


def comparison_summary(result: pd.DataFrame, confidence: float = 0.95, *, name: str | None = None) -> str:
    """:func:`~exec_analytics.analysis.compare_versions` output for a terminal: what was compared, then a table.

    Parameters
    ----------
    result : DataFrame
        ``compare_versions`` output for one pair of versions.
    confidence : float
        The level its intervals were computed at (for the column label).
    name : str, optional
        The resource's display name, put before the versions.

    Returns
    -------
    str
        A line naming the versions, the window and what was adjusted for; a table with columns ``metric``
        (in words), ``baseline``, ``candidate`` (crude values with units), ``executions`` (baseline /
        candidate), ``effect [CI]`` (adjusted, in the units of the verdict) and ``verdict``; then one line
        per inconclusive or insufficient-data metric saying why, and what the distribution metric means when
        it is shown. No line is longer than 120 characters.
    """
    if not len(result):
        return "nothing to compare\n"
    first = result.iloc[0]

    def value(row: pd.Series, which: str) -> str:
        v, metric = row[f"{which}_value"], str(row["metric"])
        if metric.startswith("failure_rate"):
            return fmt.percent(v)
        return f"{float(v):.3f}" if metric == "distribution" else fmt.seconds(v)

    rows = [row for _, row in result.iterrows()]
    columns = {
        "metric": [_cut(fmt.metric_name(r["metric"]), 36) for r in rows],
        "baseline": [value(r, "baseline") for r in rows],
        "candidate": [value(r, "candidate") for r in rows],
        "executions": [f"{fmt.count(r['baseline_executions'])} / {fmt.count(r['candidate_executions'])}" for r in rows],
        f"effect [{fmt.level(confidence)} CI]": [fmt.effect(r) for r in rows],
        "verdict": [str(r["verdict"]) for r in rows],
    }
    adjusted = fmt.text(first["adjusted_for"]).replace(", start_time/", " and time buckets of ")
    whose = f"{fmt.text(name)}: " if name else ""
    head = (f"{whose}{fmt.text(first['candidate'])} against {fmt.text(first['baseline'])}, "
            f"{fmt.timestamp(first['window_start'])} – {fmt.timestamp(first['window_end'])} (both ran)\n"
            f"adjusted for {adjusted or 'nothing (a naive comparison)'}; executions: baseline / candidate")  # fmt: skip
    tested = int(result["p_adjusted"].notna().sum())
    notes = [f"{fmt.metric_name(r['metric'])} is {r['verdict']}: {_why(r, tested)}" for r in rows if _why(r, tested)]
    if (result["metric"] == "distribution").any():
        notes.append(fmt.DISTRIBUTION_NOTE)
    wrapped = [textwrap.fill(line, 120, subsequent_indent="  ", break_on_hyphens=False)
               for line in [*head.splitlines(), *notes]]  # fmt: skip
    return "\n".join([*wrapped[:2], fmt.table(columns, left=("metric", "verdict")), *wrapped[2:]]) + "\n"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--port", type=_port, default=8765, help="TCP port on 127.0.0.1, 0 to 65535 (0 picks a free one)")
    p.add_argument("--seed", type=int, default=0, help="workload seed (same seed, same executions)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every resource's traffic")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every request")
    p.add_argument(
        "--enforce-limits",
        choices=("user", "service"),
        default=None,
        help="answer 429 past a token kind's documented limits (user: 5,000/min and 30 in flight; service: 800 "
        "in flight), as Foundry does",
    )
    p.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import FaultConfig, serve

    faults = FaultConfig(latency_s=args.latency_ms / 1000.0) if args.latency_ms else None
    serve(args.port, args.seed, faults=faults, scale=args.scale, limits=args.enforce_limits)
    return 0


def _add_sync(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .sync import DEFAULT_SYNC_WORKERS, SYNC_PARTIAL_EXIT, SYNC_SCHEMA

    p = sub.add_parser(
        "sync",
        help="bring the history of every resource of a fleet file up to date, within the token's rate limits",
        formatter_class=_Formatter,
        description=(
            "Bring the history of every resource in FLEET (a TOML fleet file) up to date over its last `days`,\n"
            "fetching only what the history lacks and its provisional edge. Resources sync concurrently under\n"
            "one limiter on the token's requests per minute and in flight. Safe to kill and re-run (it resumes),\n"
            "and to run from cron (a second sync waits for the resources the first holds, then finds them\n"
            "current). The summary goes to stdout, progress and errors to stderr."
        ),
        epilog=textwrap.dedent(
            f"""\
            exit status: 0 when every resource synced, {SYNC_PARTIAL_EXIT} when at least one did not (the others
            are synced), 2 for an invalid fleet file or arguments.

            --format json prints one object (schema "{SYNC_SCHEMA}"): ok, start, end, cache, seconds,
            requests, new_executions, synced, failed, max_in_flight, limiter_wait_s, and resources: a list of
            {{rid, name, ok, new_executions, requests, seconds, error_type, error}}.

            example:
              # crontab: every hour at :15
              15 * * * *  FOUNDRY_HOSTNAME=acme.palantirfoundry.com FOUNDRY_TOKEN=... \\
                          exec-analytics sync /etc/exec-analytics/fleet.toml --format json >> sync.log
            """
        ),
    )
    p.add_argument("fleet", type=Path, metavar="FLEET", help="the fleet file (TOML)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="summary format (default table)")
    p.add_argument("--hostname", help="Foundry hostname or base URL (default: $FOUNDRY_HOSTNAME)")
    p.add_argument("--end", default=None, help="end of the window, ISO-8601 with a zone (default: now)")
    p.add_argument(
        "--workers",
        type=_workers,
        default=DEFAULT_SYNC_WORKERS,
        help=f"concurrent requests per resource (default {DEFAULT_SYNC_WORKERS}; the limiter bounds the total)",
    )
    p.set_defaults(func=_cmd_sync)


def _cmd_sync(args: argparse.Namespace) -> int:
    import logging

    from .client import FoundryClient
    from .client.limiter import Limiter
    from .fleet import load_fleet
    from .sync import SYNC_PARTIAL_EXIT, sync_fleet

    fleet = load_fleet(args.fleet)
    hostname = args.hostname

    def connect(limiter: Limiter) -> FoundryClient:
        return FoundryClient(hostname=hostname, limiter=limiter)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("exec-analytics: %(message)s"))
    logger = logging.getLogger("exec_analytics.sync")
    logger.addHandler(handler)
    saved = logger.level
    logger.setLevel(logging.INFO)
    try:
        result = sync_fleet(fleet, client_factory=connect, end=args.end, workers=args.workers)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(result.table())
    return 0 if result.ok else SYNC_PARTIAL_EXIT


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    _add_sync(sub)
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
        # Messages can quote data (a version, a path): shown inert, like every other value on the terminal.
        message = _in_cli_words(fmt.text(" ".join(str(exc).split()))) or type(exc).__name__
        if isinstance(exc, TransportError):
            message = _unreachable(getattr(args, "hostname", None), message)
        print(f"exec-analytics: error: {message}", file=sys.stderr)
        return _exit_code(exc)


def _unreachable(flag: str | None, message: str) -> str:
    """A network failure that names the host; a bare host:port failing TLS is most likely the simulator."""
    from .config import normalize_base_url

    given = flag if flag is not None else os.environ.get("FOUNDRY_HOSTNAME")
    if not given:
        return message
    try:
        url = normalize_base_url(given)
    except ValueError:
        return message
    hint = ""
    if "://" not in given and re.search(r"\b(TLS|SSL)", message):
        hint = (f" (no scheme means https; for a local simulator, which speaks plain HTTP, use "
                f"--hostname http://{given.strip()})")  # fmt: skip
    return f"cannot reach {fmt.text(url)}{hint}: {message}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
