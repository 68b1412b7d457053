"""The paging engine behind ``load_executions``: time slices paged by a bounded pool of workers.

* A resource's window is cut into time slices; page tokens are bound to one request body and must be used
  one after another, so time slices are the only way to parallelise one resource.
* Traffic is uneven (diurnal peaks, one hot resource), so a fixed split leaves workers idle. After every page
  a worker checks whether others are idle and, if so, hands them the older part of what it has left: the API
  returns newest first, so the oldest start time seen on a page bounds what is still to read.
* That order is checked, not assumed: on every page, and across the pages of each chain (a page must not be
  newer than the one before). A slice is cut only at a bound the next page confirmed. A slice whose pages
  come out of order is read again from its own end as one chain followed to its end, which is complete
  whatever the order; one ``RuntimeWarning`` per fetch names it. When that cannot be done (its page tokens
  keep being rejected), :class:`PagingOrderError`: a fetch returns only complete data.
* A worker restarts its slice from the last bound when the server rejects a page token (they are
  short-lived), and refuses to loop: a repeating token, or a run of pages bringing nothing new, is a
  :class:`PagingError`.
* Throttling is shared: the client's gate pauses every worker when one of them gets a 429 or 503, and an
  AIMD limit lowers the requests in flight while the server keeps throttling.
* Restarts and unstable paging can return an execution twice; the rows are deduplicated once at the end.
* Pages are decoded in batches on the calling thread while the workers wait on the network.
* The progress bar counts milliseconds of the window, each at most once, and ends at exactly 100%.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from . import decode, schema
from .client import FoundryClient, Page
from .errors import InvalidPageTokenError, PagingError, PagingOrderError
from .timeutil import epoch_ms, format_api_time, from_epoch_ms

__all__ = ["MAX_PAGES_WITHOUT_PROGRESS", "Fetched", "Slice", "fetch", "initial_slices", "interval_slices"]

#: Pages decoded together: large enough for Arrow's reader to amortise its set-up, small enough to overlap
#: decoding with paging.
_DECODE_BATCH = 100
#: A worker gives up a slice after this many rejected page tokens in a row without progress (or, once its pages
#: came out of order, after this many rejected tokens in all: each then costs a re-read of the whole slice).
_MAX_TOKEN_RESTARTS = 5
#: A page chain that brings this many pages in a row without a new execution or a lower bound is abandoned
#: with an error: in order, every real page either lowers the bound or brings more executions of the bound's
#: millisecond. A server scanning for a selective filter may send a few empty pages, so not one; fifty pages of
#: nothing cost seconds.
MAX_PAGES_WITHOUT_PROGRESS = 50
#: Initial slices per worker and resource: small enough that uneven traffic rarely leaves a worker idle (a split
#: costs a restarted request), large enough that the partial last page of each slice is noise.
_SLICES_PER_WORKER = 4
#: Never split a remainder shorter than this: below it, the restart costs more than it saves.
_MIN_SPLIT_MS = 2_000
#: Never split a remainder expected to hold fewer than this many pages per worker sharing it: every split costs a
#: page read twice (the kept part restarts at the proven bound) plus a partial last page per part.
_MIN_PAGES_PER_SPLIT_PART = 2
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


@dataclass(frozen=True)
class _Violation:
    """A slice whose pages came out of the documented order."""

    rid: str
    start_ms: int
    end_ms: int


def _window(rid: str, start_ms: int, end_ms: int) -> str:
    return f"resource {rid} in [{format_api_time(from_epoch_ms(start_ms))}, {format_api_time(from_epoch_ms(end_ms))})"


def _identities(page: Page) -> set[tuple[Any, Any, Any]]:
    """Identities (resource, trace id, start time) of a page's executions, to tell new ones from repeats."""
    data = orjson.loads(page.body).get("data") or []
    return {
        (d.get("resourceRid"), d.get("foundryTraceId"), d.get("startTime"))
        for d in data
        if isinstance(d, dict)  # anything else is the decoder's to report
    }


class _Chain:
    """One page chain: a first request over ``[start, end_ms)`` and the pages its tokens led to.

    Attributes
    ----------
    end_ms : int
        The end of the window every request of the chain carries (a token is bound to its request body).
    bound : int
        Exclusive upper bound on what the chain still has to return, per the latest page, if pages come
        newest first: everything in ``[bound, end_ms)`` has been returned.
    proven : int
        The bound of the page before the latest, once the latest page confirmed the order across the two (its
        newest start is not newer than that page's oldest). Splits and token restarts cut the slice at this
        bound: a single page cannot show that the server did not hold back newer executions for a later page
        (two pages swapped). Only a chain whose token expired after its first page restarts at ``bound``, as
        that page's own order is then all the evidence there is, and anything else would make no progress.
    """

    def __init__(self, end_ms: int) -> None:
        self.end_ms = self.bound = self.proven = end_ms
        self.prev_oldest: int | None = None
        self.tokens: set[str] = set()
        #: Executions the chain returned, to estimate how dense what remains is.
        self.rows = 0
        #: Consecutive pages that brought neither a lower bound nor an execution not seen before in the chain.
        self.stalled = 0
        #: Identities seen since the bound last dropped (ordered) or in the whole chain (out of order); filled
        #: lazily from ``unparsed``, as only a page that does not lower the bound needs them.
        self.seen: set[tuple[Any, Any, Any]] = set()
        self.unparsed: list[Page] = []

    def in_order(self, page: Page) -> bool:
        """Whether ``page`` is newest first, and not newer than the previous page of the chain."""
        if not page.ordered:
            return False
        newest = page.newest_start
        return self.prev_oldest is None or newest is None or epoch_ms(newest) <= self.prev_oldest

    def advance(self, page: Page, start_ms: int, ordered: bool) -> None:
        """Take in the next page of the chain, counting it in ``stalled`` unless it made progress.

        Progress is a lower bound (ordered chains only) or an execution the chain had not returned before.
        """
        lowered = False
        self.rows += page.n_executions
        if ordered and page.oldest_start is not None:
            oldest = epoch_ms(page.oldest_start)
            # A page's oldest start may be shared by executions not yet returned, hence the +1 ms. Clamped at
            # the slice start: a server that strays outside the window must not stall the slice.
            new_bound = max(start_ms, min(self.bound, oldest + 1))
            self.prev_oldest = oldest
            self.proven, lowered = self.bound, new_bound < self.bound
            self.bound = new_bound
        if lowered:
            # Earlier pages' executions started after this page's oldest: in order, they cannot come again.
            self.seen.clear()
            self.unparsed = [page]
        elif page.n_executions:
            for earlier in self.unparsed:
                self.seen |= _identities(earlier)
            self.unparsed = []
            ids = _identities(page)
            lowered = not ids <= self.seen
            self.seen |= ids
        self.stalled = 0 if lowered else self.stalled + 1


class _Worker:
    """Pages slices until none are left, handing results to the calling thread through ``out``.

    Each page goes out with the milliseconds of the slice it newly covers, for the progress bar: the covered
    part of a slice only grows (restarts and splits re-read, but never count twice), so the counts of a
    slice add up to its length.
    """

    def __init__(
        self,
        client: FoundryClient,
        sched: _Scheduler,
        out: queue.Queue[tuple[Page | None, int]],
        where: dict[str, Any] | None,
        page_size: int,
        concurrency: _Concurrency,
        violations: list[_Violation],
    ) -> None:
        self.client, self.sched, self.out, self.concurrency = client, sched, out, concurrency
        self.where, self.page_size = where, page_size
        self.violations = violations
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

    def _worth_splitting(self, chain: _Chain, remaining_ms: int, idle: int) -> bool:
        """Whether ``remaining_ms`` is worth sharing with ``idle`` workers, judged by the chain's density so far."""
        if remaining_ms < _MIN_SPLIT_MS * (idle + 1):
            return False
        seen_ms = chain.end_ms - chain.bound
        if seen_ms <= 0 or chain.rows == 0:
            return True  # nothing to judge the density by yet
        expected_pages = chain.rows / seen_ms * remaining_ms / self.page_size
        return expected_pages >= _MIN_PAGES_PER_SPLIT_PART * (idle + 1)

    def _page_slice(self, sl: Slice) -> None:
        # The API returns newest first, so a page's oldest start bounds what its chain still has to return:
        # that is what lets a slice be split, and restarted when a token expires. Pages out of that order
        # make every bound unproven: the slice is then read again from its own end as one chain, followed to
        # the end whatever the order (the chain of one request body returns everything in its window).
        chain = _Chain(sl.end_ms)
        reported = sl.end_ms  # [reported, end) is counted in the progress bar; it only ever grows
        ordered = True
        token: str | None = None
        restarts = 0  # in order: restarts in a row without a lower bound; out of order: all restarts
        while not self.sched.aborted.is_set():
            try:
                page = self._request(sl, chain.end_ms, token)
            except InvalidPageTokenError:
                if token is None:
                    raise
                restarts += 1
                self.restarts += 1
                if not ordered:
                    if restarts > _MAX_TOKEN_RESTARTS:
                        raise PagingOrderError(
                            f"{_window(sl.rid, sl.start_ms, sl.end_ms)}: the server returned pages out of the "
                            f"documented newest-first order and rejected the page tokens of {restarts} complete "
                            f"re-reads, so what it left unread cannot be known; nothing of this window was kept"
                        ) from None
                    chain = _Chain(sl.end_ms)
                elif restarts > _MAX_TOKEN_RESTARTS:
                    raise
                else:
                    # Expired or rejected token: read again from what is known to be complete. A chain cut
                    # short after one page proves no bound; that page's own order is then the only evidence.
                    chain = _Chain(chain.proven if chain.proven < chain.end_ms else chain.bound)
                token = None
                continue
            if ordered and not chain.in_order(page):
                ordered = False
                self.violations.append(_Violation(sl.rid, sl.start_ms, sl.end_ms))
                restarts = 0
                if chain.end_ms != sl.end_ms:
                    # Bounds of earlier chains of this slice are no longer evidence: re-read all of it.
                    self.out.put((page, 0))
                    chain, token = _Chain(sl.end_ms), None
                    continue
            chain.advance(page, sl.start_ms, ordered)
            covered = 0
            if ordered:
                if chain.bound < reported:
                    restarts = 0
                covered = reported - max(sl.start_ms, min(reported, chain.bound))
                reported -= covered
            self.out.put((page, covered))
            token = page.next_page_token
            if token is None:
                self.out.put((None, reported - sl.start_ms))
                return
            if chain.stalled >= MAX_PAGES_WITHOUT_PROGRESS:
                raise PagingError(
                    f"{_window(sl.rid, sl.start_ms, chain.end_ms)}: {chain.stalled} pages in a row brought no "
                    f"execution not seen before, yet the server keeps returning page tokens; stopped rather than "
                    f"loop"
                )
            if token in chain.tokens:
                raise PagingError(
                    f"page token cycle for {_window(sl.rid, sl.start_ms, chain.end_ms)}: the server returned a "
                    f"token it had returned before"
                )
            chain.tokens.add(token)
            idle = self.sched.idle_workers() if ordered else 0
            if idle and self._worth_splitting(chain, reported - sl.start_ms, idle):
                # Hand the older part of what is not yet counted as covered to idle workers, and keep the rest
                # up to the proven bound, re-requested because a page token is bound to the window it was
                # issued for.
                edges = np.linspace(sl.start_ms, reported, idle + 2).astype(np.int64)
                self.sched.give([Slice(sl.rid, int(a), int(b)) for a, b in pairwise(edges[:-1])])
                self.splits += 1
                sl.start_ms = int(edges[-2])
                chain, token = _Chain(chain.proven), None


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
    """Page ``slices`` with ``workers`` concurrent workers and decode them; rows deduplicated, not filtered.

    Returns only when every slice was read completely. Pages out of the documented newest-first order are
    still read completely (each affected slice as one page chain followed to its end) and reported by one
    ``RuntimeWarning`` naming the resources and windows.

    Raises
    ------
    PagingOrderError
        When pages out of order meet rejected page tokens, so that completeness cannot be guaranteed.
    PagingError
        When page tokens repeat, or pages keep coming without new executions.
    """
    sched = _Scheduler(slices, workers)
    out: queue.Queue[tuple[Page | None, int]] = queue.Queue()
    concurrency = _Concurrency(workers, client)
    violations: list[_Violation] = []
    pool = [_Worker(client, sched, out, where_dict, page_size, concurrency, violations) for _ in range(workers)]
    # Whole milliseconds, never more than the total: a float percentage summed page by page can pass 100%,
    # which makes tqdm warn and show a negative time remaining.
    total_ms = max(1, sum(sl.end_ms - sl.start_ms for sl in slices))
    bar = tqdm(
        total=total_ms,
        disable=not progress,
        desc="executions",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]",
    )
    tables: list[pa.Table] = []
    bodies: list[bytes] = []
    pages = rows = covered_ms = 0
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
                    step = min(covered, total_ms - covered_ms)
                    if step > 0:
                        covered_ms += step
                        bar.update(step)
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
        bar.update(total_ms - covered_ms)  # every slice is read: the bar ends at exactly 100%
    finally:
        bar.close()
    if violations:
        _warn_out_of_order(violations)

    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    dropped = 0
    if table is not None and table.num_rows:
        table, dropped = schema.dedupe(table)
    return Fetched(table, pages, dropped, pool, concurrency)


def _warn_out_of_order(violations: list[_Violation]) -> None:
    """One warning for the whole fetch, naming each resource and the span of its slices read out of order."""
    spans: dict[str, tuple[int, int]] = {}
    for v in violations:
        a, b = spans.get(v.rid, (v.start_ms, v.end_ms))
        spans[v.rid] = (min(a, v.start_ms), max(b, v.end_ms))
    where = "; ".join(_window(rid, a, b) for rid, (a, b) in spans.items())
    warnings.warn(
        f"the server returned pages out of the documented newest-first order ({where}); the affected time "
        f"slices were read whole, each as one page chain followed to its end, so the rows are complete, but "
        f"they could not be read in parallel",
        RuntimeWarning,
        stacklevel=3,
    )
