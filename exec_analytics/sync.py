"""``sync_fleet``: bring every resource of a fleet's history up to date, concurrently, at the token's limits.

Each resource is one cached load (:func:`~exec_analytics.load_executions` through
:meth:`ExecutionCache.load <exec_analytics.cache.ExecutionCache.load>`) of the fleet's window, ``days``
ending now: the cache fetches only what it lacks and its provisional edge, so a daily sync costs requests in
proportion to the new data. What makes it safe to run unattended comes from the cache:

* **Resumable.** The cache commits each load's data and then its coverage; a sync killed at any point
  (SIGKILL, a reboot) leaves complete files, and the next sync fetches only what was not committed. On
  Ctrl-C no new resource starts and the loads under way finish and commit before ``KeyboardInterrupt``
  propagates (a second Ctrl-C stops at once).
* **Safe from cron.** Each resource's load holds the cache's lock on that resource. A second sync started
  while one runs *waits* for the resources the first holds (up to the cache's ``lock_timeout``, 15 minutes by
  default), then finds them current and fetches only their provisional edge; a resource still locked past
  the timeout is reported as failed (``CacheError``), the others sync.
* **One failure is one resource.** A resource that cannot be read (403, 404, a server that keeps failing)
  is reported with its error; the others sync.
* **Limits respected.** Every resource gets a client of its own (so its requests are counted exactly) and
  every client shares one :class:`~exec_analytics.client.limiter.Limiter`, configured by the fleet's token
  kind and overrides: all workers of all resources together stay within the requests per minute and in
  flight.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from . import formatting as fmt
from .cache import ExecutionCache
from .client import FoundryClient
from .client.limiter import Limiter
from .errors import ExecAnalyticsError
from .fleet import Fleet, FleetResource
from .loader import load_executions
from .timeutil import TimeLike, to_utc

__all__ = ["DEFAULT_SYNC_WORKERS", "SYNC_PARTIAL_EXIT", "SYNC_SCHEMA", "ResourceSync", "SyncResult", "sync_fleet"]

log = logging.getLogger(__name__)

#: Concurrent requests per resource. Small, because many resources run at once: a refresh is mostly one
#: short stretch per resource, and the shared limiter, not this, bounds the total.
DEFAULT_SYNC_WORKERS = 4
#: Most resources synced at once (threads = this x workers).
MAX_RESOURCES_AT_ONCE = 32
#: Exit code of ``exec-analytics sync`` when at least one resource did not sync (0: every one did).
SYNC_PARTIAL_EXIT = 13
#: The ``schema`` value of :meth:`SyncResult.to_dict` (and ``sync --format json``).
SYNC_SCHEMA = "exec-analytics.sync/1"


@dataclass(frozen=True)
class ResourceSync:
    """What the sync did for one resource.

    Attributes
    ----------
    rid, name : str
        The resource and its display name.
    ok : bool
        The history now covers the window.
    new_executions : int
        Executions the history of the resource gained while the sync ran (rows after minus rows before, from
        the cache's manifests; what a concurrent sync added counts too).
    requests : int
        HTTP requests sent for it, retries included.
    seconds : float
        Wall time of its load.
    error_type, error : str or None
        The exception's class name and message when it failed (free of secrets and control characters).
    """

    rid: str
    name: str
    ok: bool
    new_executions: int
    requests: int
    seconds: float
    error_type: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SyncResult:
    """The summary of one sync.

    Attributes
    ----------
    resources : tuple of ResourceSync
        In fleet order.
    start, end : pandas.Timestamp
        The window synced.
    cache : str
        Where the history is.
    seconds : float
        Wall time of the whole sync.
    limiter : dict
        :attr:`Limiter.stats` at the end: ``requests``, ``waited_s``, ``max_in_flight``, ``in_flight``.
    """

    resources: tuple[ResourceSync, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    cache: str
    seconds: float
    limiter: dict[str, float]

    @property
    def ok(self) -> bool:
        """Every resource synced."""
        return all(r.ok for r in self.resources)

    @property
    def failed(self) -> list[ResourceSync]:
        """The resources that did not sync."""
        return [r for r in self.resources if not r.ok]

    @property
    def requests(self) -> int:
        """HTTP requests of the whole sync."""
        return sum(r.requests for r in self.resources)

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary (``sync --format json``).

        Returns
        -------
        dict
            ``schema`` (:data:`SYNC_SCHEMA`), ``ok`` (bool), ``start`` and ``end`` (ISO-8601), ``cache`` (str),
            ``seconds`` (float), ``requests`` and ``new_executions`` (int, totals), ``synced`` and ``failed``
            (int, resources), ``max_in_flight`` (int, the most requests in flight at once), ``limiter_wait_s``
            (float, seconds requests waited for the limiter, summed), and ``resources``: one object per
            resource in fleet order with ``rid``, ``name``, ``ok``, ``new_executions``, ``requests``,
            ``seconds``, ``error_type`` and ``error`` (null when it synced).
        """
        return {
            "schema": SYNC_SCHEMA,
            "ok": self.ok,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "cache": self.cache,
            "seconds": round(self.seconds, 3),
            "requests": self.requests,
            "new_executions": sum(r.new_executions for r in self.resources),
            "synced": sum(r.ok for r in self.resources),
            "failed": len(self.failed),
            "max_in_flight": int(self.limiter["max_in_flight"]),
            "limiter_wait_s": round(self.limiter["waited_s"], 3),
            "resources": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in self.resources],
        }

    def table(self) -> str:
        """The human summary: one line per resource, then the totals.

        Returns
        -------
        str
            Plain text, ending with a newline.
        """
        rows = self.resources
        columns = {
            "resource": [fmt.text(r.name) for r in rows],
            "status": ["ok" if r.ok else "FAILED" for r in rows],
            "new executions": [fmt.count(r.new_executions) for r in rows],
            "requests": [fmt.count(r.requests) for r in rows],
            "seconds": [f"{r.seconds:.1f}" for r in rows],
            "error": [fmt.text(f"{r.error_type}: {r.error}") if not r.ok else "" for r in rows],
        }
        # No requests-per-minute figure: over a run shorter than the limit's window it would overstate the pace
        # (a sliding window lets a whole minute's requests go at once).
        total = (
            f"{len(rows) - len(self.failed)} of {fmt.plural(len(rows), 'resource')} synced, "
            f"{fmt.plural(sum(r.new_executions for r in rows), 'new execution')}, "
            f"{fmt.plural(self.requests, 'request')} in {self.seconds:.1f} s"
        )
        head = f"sync {self.start.isoformat()} .. {self.end.isoformat()} into {fmt.text(self.cache)}"
        return "\n".join([head, fmt.table(columns, left=("resource", "status", "error")), total]) + "\n"


def sync_fleet(
    fleet: Fleet,
    *,
    client_factory: Callable[[Limiter], FoundryClient] | None = None,
    limiter: Limiter | None = None,
    cache: ExecutionCache | None = None,
    end: TimeLike | None = None,
    workers: int = DEFAULT_SYNC_WORKERS,
    resources_at_once: int | None = None,
) -> SyncResult:
    """Bring the history of every resource of ``fleet`` up to date over ``[end - fleet.days, end)``.

    Parameters
    ----------
    fleet : Fleet
        From :func:`~exec_analytics.fleet.load_fleet`.
    client_factory : callable, optional
        ``client_factory(limiter) -> FoundryClient``, called once per resource (and once before anything is
        fetched, to check the configuration); the client must use the limiter it is given. Default:
        ``FoundryClient(limiter=limiter)``, configured from ``FOUNDRY_HOSTNAME`` and the token or OAuth
        client in the environment.
    limiter : Limiter, optional
        Shared by every request of the sync. Default: one for ``fleet.limits``.
    cache : ExecutionCache, optional
        Default: ``ExecutionCache(fleet.cache)`` (the default directory when the fleet names none).
    end : str, datetime or pandas.Timestamp, optional
        The end of the window (default now).
    workers : int
        Concurrent requests per resource (default 4).
    resources_at_once : int, optional
        Resources synced concurrently; default twice what fills the in-flight limit (``2 * in_flight /
        workers``, at most 32).

    Returns
    -------
    SyncResult
        Per resource: ``ok``, ``new_executions``, ``requests``, ``seconds``, ``error_type``, ``error``.
        Each resource's end is logged on the ``exec_analytics.sync`` logger (INFO; WARNING when it failed).

    Raises
    ------
    ValueError, TypeError
        For bad arguments or a client configuration that cannot work (no hostname, no credentials), before
        any request. A failing resource never raises: it is reported in the result.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise ValueError(f"workers must be an integer from 1 to 256, got {workers!r}")
    limiter = limiter if limiter is not None else Limiter(fleet.limits)
    if resources_at_once is None:
        in_flight = limiter.limits.in_flight
        # Twice what fills the in-flight limit: resources near their end run fewer slices than workers, and
        # the others' requests, already waiting at the limiter, take the freed slots at once.
        resources_at_once = MAX_RESOURCES_AT_ONCE if in_flight is None else math.ceil(2 * in_flight / workers)
        resources_at_once = max(1, min(MAX_RESOURCES_AT_ONCE, resources_at_once))
    elif isinstance(resources_at_once, bool) or not isinstance(resources_at_once, int) or resources_at_once < 1:
        raise ValueError(f"resources_at_once must be a positive integer, got {resources_at_once!r}")
    factory = client_factory if client_factory is not None else _default_client
    store = cache if cache is not None else (ExecutionCache(fleet.cache) if fleet.cache else ExecutionCache())
    end_ts = to_utc(end, "end") if end is not None else pd.Timestamp.now(tz="UTC").floor("ms")
    start_ts = end_ts - pd.Timedelta(days=fleet.days)
    factory(limiter).close()  # a configuration error is one error now, not one per resource

    before = _rows(store)
    started = time.monotonic()
    done: dict[str, tuple[float, int, BaseException | None]] = {}

    def one(resource: FleetResource) -> None:
        t0 = time.monotonic()
        client: FoundryClient | None = None
        error: BaseException | None = None
        try:
            client = factory(limiter)
            load_executions(resource.rid, start_ts, end_ts, client=client, cache=store, workers=workers, progress=False)
        except (ExecAnalyticsError, OSError) as exc:
            error = exc
        finally:
            requests = client.stats["requests"] if client is not None else 0
            if client is not None:
                client.close()
        done[resource.rid] = (time.monotonic() - t0, requests, error)
        # Diagnostics as each resource ends (the command line shows them on stderr); the summary comes last.
        if error is None:
            log.info("synced %s: %d requests in %.1f s", fmt.text(resource.name), requests, done[resource.rid][0])
        else:
            log.warning("sync of %s failed: %s", fmt.text(resource.name), fmt.text(" ".join(str(error).split())))

    pool = ThreadPoolExecutor(max_workers=resources_at_once, thread_name_prefix="exec-analytics-sync")
    try:
        for future in as_completed([pool.submit(one, r) for r in fleet.resources]):
            future.result()  # a bug (not an expected failure) surfaces here
    except BaseException:
        # Ctrl-C (or a bug): start no more resources, let the loads under way finish and commit, then stop. A
        # second Ctrl-C stops at once; the next sync resumes either way.
        log.warning("interrupted: finishing the resources under way, starting no more")
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    after = _rows(store)
    results = tuple(_summary(r, done[r.rid], after.get(r.rid, 0) - before.get(r.rid, 0)) for r in fleet.resources)
    return SyncResult(results, start_ts, end_ts, str(store.path), time.monotonic() - started, limiter.stats)


def _default_client(limiter: Limiter) -> FoundryClient:
    return FoundryClient(limiter=limiter)


def _rows(store: ExecutionCache) -> dict[str, int]:
    """Rows of each resource's history (unfiltered), from the manifests."""
    info = store.info()
    history = info[info["filter"].isna()]
    return dict(zip(history["resource_rid"], history["rows"].astype(int), strict=True))


def _summary(resource: FleetResource, done: tuple[float, int, BaseException | None], new: int) -> ResourceSync:
    seconds, requests, error = done
    return ResourceSync(
        rid=resource.rid,
        name=resource.name,
        ok=error is None,
        new_executions=new,
        requests=requests,
        seconds=seconds,
        error_type=None if error is None else type(error).__name__,
        error=None if error is None else fmt.text(" ".join(str(error).split())),
    )
