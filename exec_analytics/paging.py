"""The paging engine behind ``load_executions``: time slices paged by a bounded pool of workers.

* A resource's window is cut into time slices; page tokens are bound to one request body and must be used
  one after another, so time slices are the only way to parallelise one resource.
* Traffic is uneven (diurnal peaks, one hot resource), so a fixed split leaves workers idle. After every page
  a worker checks whether others are idle and, if so, hands them the older part of what it has left: the API
  returns newest first, so the oldest start time seen on a page bounds what is still to read.
* A worker restarts its slice from that bound when the server rejects a page token (they are short-lived),
  and refuses to loop when a token repeats.
* Throttling is shared: the client's gate pauses every worker when one of them gets a 429 or 503, and an
  AIMD limit lowers the requests in flight while the server keeps throttling.
* Restarts and unstable paging can return an execution twice; the rows are deduplicated once at the end.
* Pages are decoded in batches on the calling thread while the workers wait on the network.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from . import decode, schema
from .client import FoundryClient, Page
from .errors import ExecAnalyticsError, InvalidPageTokenError
from .timeutil import epoch_ms, format_api_time, from_epoch_ms

__all__ = ["Fetched", "Slice", "fetch", "initial_slices", "interval_slices"]

#: Pages decoded together: large enough for Arrow's reader to amortise its set-up, small enough to overlap
#: decoding with paging.
_DECODE_BATCH = 100
#: A worker gives up a slice after this many rejected page tokens in a row without progress.
_MAX_TOKEN_RESTARTS = 5
#: Initial slices per worker and resource: small enough that uneven traffic rarely leaves a worker idle (a split
#: costs a restarted request), large enough that the partial last page of each slice is noise.
_SLICES_PER_WORKER = 4
#: Never split a remainder shorter than this: below it, the restart costs more than it saves.
_MIN_SPLIT_MS = 2_000
#: Expected pages per first slice of a cached load's stretch (see ``interval_slices``).
_PAGES_PER_FIRST_SLICE = 4


@dataclass
class Slice:
    """A half-open stretch ``[start_ms, end_ms)`` of one resource still to be read."""

    rid: str
    start_ms: int
    end_ms: int


class _Scheduler:
    """Work queue of slices shared by the workers, with idle accounting for dynamic splitting."""

    def __init__(self, slices: list[Slice], workers: int) -> None:
        self._pending = list(reversed(slices))
        self._cond = threading.Condition()
        self._busy = 0
        self._workers = workers
        self.error: BaseException | None = None
        self.aborted = threading.Event()

    def take(self) -> Slice | None:
        with self._cond:
            while not self._pending:
                if self._busy == 0 or self.aborted.is_set():
                    self._cond.notify_all()
                    return None
                self._cond.wait()
            if self.aborted.is_set():
                return None
            self._busy += 1
            return self._pending.pop()

    def finish(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def idle_workers(self) -> int:
        """Workers that would pick up a slice right now (none while slices are queued)."""
        with self._cond:
            return 0 if self._pending else self._workers - self._busy

    def give(self, slices: list[Slice]) -> None:
        with self._cond:
            self._pending.extend(slices)
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = error
            self.aborted.set()
            self._cond.notify_all()


class _Concurrency:
    """Requests allowed in flight: halved when the server throttles, grown by one after clean rounds (AIMD).

    The client's gate already pauses every worker after a 429/503, but if they all resume at once they collide
    again; a server that allows fewer concurrent requests than there are workers (a user token shared with
    other tools) needs fewer requests in flight, not just a pause.
    """

    def __init__(self, limit: int, client: FoundryClient) -> None:
        self._gate = getattr(client, "gate", None)
        self._max = self.limit = self.lowest = limit
        self._in_flight = 0
        self._since_change = 0
        self._trips = self._trips_now()
        self._cond = threading.Condition()

    def _trips_now(self) -> int:
        return int(getattr(self._gate, "trips", 0))

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1

    def release(self) -> None:
        trips = self._trips_now()
        with self._cond:
            self._in_flight -= 1
            self._since_change += 1
            throttled = trips > self._trips
            self._trips = trips
            # One change per round of requests: the throttles of one burst must not halve the limit repeatedly.
            if self._since_change >= self.limit:
                if throttled and self.limit > 1:
                    self.limit = max(1, self.limit // 2)
                    self.lowest = min(self.lowest, self.limit)
                    self._since_change = 0
                elif not throttled and self.limit < self._max and self._since_change >= 4 * self.limit:
                    self.limit += 1
                    self._since_change = 0
            self._cond.notify_all()


class _Worker:
    """Pages slices until none are left, handing results to the calling thread through ``out``."""

    def __init__(
        self,
        client: FoundryClient,
        sched: _Scheduler,
        out: queue.Queue[tuple[Page | None, int]],
        where: dict[str, Any] | None,
        page_size: int,
        concurrency: _Concurrency,
    ) -> None:
        self.client, self.sched, self.out, self.concurrency = client, sched, out, concurrency
        self.where, self.page_size = where, page_size
        self.requests = 0
        self.restarts = 0
        self.splits = 0

    def run(self) -> None:
        while (sl := self.sched.take()) is not None:
            try:
                self._page_slice(sl)
            except BaseException as exc:  # surfaces in the calling thread, which re-raises it
                self.sched.abort(exc)
            finally:
                self.sched.finish()

    def _request(self, sl: Slice, req_end_ms: int, token: str | None) -> Page:
        self.requests += 1
        self.concurrency.acquire()
        try:
            return self.client.list_executions_page(
                sl.rid,
                start=from_epoch_ms(sl.start_ms),
                end=from_epoch_ms(req_end_ms),
                where=self.where,
                page_size=self.page_size,
                page_token=token,
            )
        finally:
            self.concurrency.release()

    def _page_slice(self, sl: Slice) -> None:
        # `bound` is an exclusive upper bound on what remains: everything in [bound, end) has been returned.
        # A page's oldest start may be shared by executions not yet returned, hence the +1 ms.
        req_end = bound = sl.end_ms
        token: str | None = None
        seen_tokens: set[str] = set()
        failed_restarts = 0
        while not self.sched.aborted.is_set():
            try:
                page = self._request(sl, req_end, token)
            except InvalidPageTokenError:
                if token is None or failed_restarts >= _MAX_TOKEN_RESTARTS:
                    raise
                # Expired or rejected token: read again from what is known to be complete.
                failed_restarts += 1
                self.restarts += 1
                req_end, token = bound, None
                seen_tokens.clear()
                continue
            new_bound = bound
            if page.oldest_start is not None:
                # Clamped at the slice start: a server that strays outside the window must not stall us.
                new_bound = max(sl.start_ms, min(bound, epoch_ms(page.oldest_start) + 1))
                if new_bound < bound:
                    failed_restarts = 0
            self.out.put((page, bound - new_bound))
            bound = new_bound
            token = page.next_page_token
            if token is None:
                self.out.put((None, bound - sl.start_ms))
                return
            if token in seen_tokens:
                raise ExecAnalyticsError(
                    f"page token cycle for resource {sl.rid} in [{format_api_time(from_epoch_ms(sl.start_ms))}, "
                    f"{format_api_time(from_epoch_ms(req_end))}): the server returned a token it had returned before"
                )
            seen_tokens.add(token)
            idle = self.sched.idle_workers()
            if idle and bound - sl.start_ms >= _MIN_SPLIT_MS * (idle + 1):
                # Hand the older part of the remainder to idle workers; keep the newest part, which must be
                # re-requested because a page token is bound to the window it was issued for.
                edges = np.linspace(sl.start_ms, bound, idle + 2).astype(np.int64)
                self.sched.give([Slice(sl.rid, int(a), int(b)) for a, b in pairwise(edges[:-1])])
                self.splits += 1
                sl.start_ms = int(edges[-2])
                req_end, token = bound, None
                seen_tokens.clear()


def initial_slices(rids: list[str], start_ms: int, end_ms: int, workers: int) -> list[Slice]:
    # Newest first, like the API, so the provisional recent edge is read early; a few slices per worker and
    # resource to start, then dynamic splitting takes over.
    edges = np.unique(np.linspace(start_ms, end_ms, _SLICES_PER_WORKER * workers + 1).astype(np.int64))
    return [Slice(rid, int(a), int(b)) for rid in rids for a, b in reversed(list(pairwise(edges))) if b > a]


def interval_slices(intervals: Sequence[tuple[str, int, int, float | None]], workers: int) -> list[Slice]:
    """First slices for a cached load: only the stretches the cache lacks, newest first.

    Each stretch gets a share of the usual slices by its length; when the history tells how dense the
    resource is, no more slices than about one per :data:`_PAGES_PER_FIRST_SLICE` expected pages, because
    every slice costs at least one request and a refresh is mostly short stretches. Dynamic splitting
    still shares out a stretch that turns out denser.
    """
    budget = _SLICES_PER_WORKER * workers
    total: dict[str, int] = {}
    for rid, a, b, _ in intervals:
        total[rid] = total.get(rid, 0) + (b - a)
    out: list[Slice] = []
    for rid, a, b, rows_per_ms in sorted(intervals, key=lambda iv: -iv[2]):
        n = max(1, round(budget * (b - a) / total[rid]))
        if rows_per_ms is not None:
            pages = rows_per_ms * (b - a) / 100
            n = min(n, max(1, int(np.ceil(pages / _PAGES_PER_FIRST_SLICE))))
        edges = np.unique(np.linspace(a, b, n + 1).astype(np.int64))
        out += [Slice(rid, int(x), int(y)) for x, y in reversed(list(pairwise(edges))) if y > x]
    return out


@dataclass
class Fetched:
    """What one concurrent paging run returned: the deduplicated rows and how it went."""

    table: pa.Table | None
    pages: int
    dropped: int
    pool: list[_Worker]
    concurrency: _Concurrency

    def frame(self) -> pd.DataFrame:
        if self.table is None or self.table.num_rows == 0:
            return schema.empty_frame()
        return schema.to_frame(self.table)

    def attrs(self) -> dict[str, Any]:
        return {
            "requests": sum(w.requests for w in self.pool),
            "pages": self.pages,
            "duplicates_dropped": self.dropped,
            "token_restarts": sum(w.restarts for w in self.pool),
            "slice_splits": sum(w.splits for w in self.pool),
            "lowest_concurrency": self.concurrency.lowest,
        }


def fetch(
    client: FoundryClient,
    slices: list[Slice],
    where_dict: dict[str, Any] | None,
    workers: int,
    progress: bool,
    page_size: int,
) -> Fetched:
    """Page ``slices`` with ``workers`` concurrent workers and decode them; rows deduplicated, not filtered."""
    sched = _Scheduler(slices, workers)
    out: queue.Queue[tuple[Page | None, int]] = queue.Queue()
    concurrency = _Concurrency(workers, client)
    pool = [_Worker(client, sched, out, where_dict, page_size, concurrency) for _ in range(workers)]
    total_ms = max(1, sum(sl.end_ms - sl.start_ms for sl in slices))
    bar = tqdm(
        total=100.0,
        disable=not progress,
        unit="%",
        desc="executions",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]",
    )
    tables: list[pa.Table] = []
    bodies: list[bytes] = []
    pages = rows = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="exec-analytics-loader") as executor:
            futures = [executor.submit(w.run) for w in pool]
            try:
                while True:
                    try:
                        page, covered = out.get(timeout=0.05)
                    except queue.Empty:
                        if all(f.done() for f in futures) and out.empty():
                            break
                        continue
                    bar.update(100.0 * covered / total_ms)
                    if page is None:
                        continue
                    pages += 1
                    rows += page.n_executions
                    bar.set_postfix_str(f"{pages:,} pages, {rows:,} rows", refresh=False)
                    if page.n_executions:
                        bodies.append(page.body)
                    if len(bodies) >= _DECODE_BATCH:
                        tables.append(decode.decode_pages(bodies))
                        bodies = []
            except BaseException as exc:  # Ctrl-C or a decoding error: stop the workers before leaving
                sched.abort(exc)
                raise
        if sched.error is not None:
            raise sched.error
        if bodies:
            tables.append(decode.decode_pages(bodies))
    finally:
        bar.close()

    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    dropped = 0
    if table is not None and table.num_rows:
        table, dropped = schema.dedupe(table)
    return Fetched(table, pages, dropped, pool, concurrency)
