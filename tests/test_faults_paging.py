"""Paging against a misbehaving server of our own: every fault ends in exact rows or a typed error, in bounded time.

The simulator pages the way the client expects, so it cannot show what happens when a server does not. The
server here serves a known set of executions (one day of one simulated resource, taken from the simulator,
whose ground truth is known) over real HTTP on loopback, with scripted misbehaviour: pages oldest first,
two pages swapped, the order broken only across pages, rejected page tokens on such chains, and endless page
tokens that bring nothing new. After each fault, the same cache loaded from the server behaving again holds
exactly the truth: nothing false was recorded as covered.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from exec_analytics import ExecutionCache, FoundryClient, load_executions, paging
from exec_analytics.errors import PagingError, PagingOrderError
from exec_analytics.schema import COLUMNS
from exec_analytics.simulator import SimulatorServer, Workload

TOKEN = "t"
PAGE_SIZE = 20
WORKERS = 4
#: A hard cap on the requests one server answers: a regression that loops ends the test, not the suite.
MAX_REQUESTS = 5_000
TRUTH_COLUMNS = [c for c in COLUMNS if c != "extra"]
PATH = re.compile(r"^/api/v2/observability/resources/([^/?]+)/listExecutions\?preview=true$")


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class KnownSet:
    """Executions of one resource as the API sends them, newest first, with their start times."""

    def __init__(self, rid: str, executions: list[dict[str, Any]]) -> None:
        self.rid = rid
        order = sorted(range(len(executions)), key=lambda i: _ms(executions[i]["startTime"]), reverse=True)
        self.raw = [orjson.dumps(executions[i]) for i in order]
        self.starts = np.array([_ms(executions[i]["startTime"]) for i in order], dtype=np.int64)

    def window(self, start_ms: int, end_ms: int) -> list[bytes]:
        """Executions that started in ``[start_ms, end_ms)``, newest first."""
        keep = np.flatnonzero((self.starts >= start_ms) & (self.starts < end_ms))
        return [self.raw[i] for i in keep]


class AdversarialServer:
    """A listExecutions server with one scripted misbehaviour at a time (``mode``).

    Modes: ``healthy``; ``oldest_first`` (pages and their executions oldest first); ``pages_reversed`` (each
    page newest first, the pages oldest first: the order is broken only across pages); ``swap_pages`` (the
    second and third pages of every chain swapped); ``expire_unordered`` (oldest first, and every token of a
    chain's fourth page onwards rejected, always); ``expire_unordered_once`` (oldest first, the token of each
    chain's fourth page rejected the first time only); ``swap_expire`` (as ``swap_pages``, and the token of each
    chain's third page rejected the first time only, before the swap can be seen); ``empty_forever`` (empty
    pages, each with a fresh token); ``repeat_forever`` (the same executions on every page, each with a fresh
    token).
    """

    def __init__(self, known: KnownSet, mode: str) -> None:
        self.known, self.mode = known, mode
        self.requests = 0
        self._tokens: dict[str, tuple[bytes, int]] = {}
        self._rejected: set[tuple[bytes, int]] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, reply = server.answer(self.path, self.headers.get("Authorization"), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @staticmethod
    def _error(status: int, code: str, name: str) -> tuple[int, bytes]:
        return status, orjson.dumps(
            {"errorCode": code, "errorName": name, "errorInstanceId": str(uuid.uuid4()), "parameters": {}}
        )

    def _new_token(self, binding: bytes, position: int) -> str:
        token = f"v1.{uuid.uuid4().hex}"
        self._tokens[token] = (binding, position)
        return token

    def answer(self, path: str, authorization: str | None, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
            if self.requests > MAX_REQUESTS:
                return self._error(400, "INVALID_ARGUMENT", "TestServerRequestCapReached")
            if authorization != f"Bearer {TOKEN}":
                return self._error(401, "UNAUTHORIZED", "MissingCredentials")
            match = PATH.match(path)
            if match is None or match.group(1) != self.known.rid:
                return self._error(404, "NOT_FOUND", "ResourceNotFound")
            req = orjson.loads(body)
            page_size = int(req.get("pageSize", 100))
            # A token is bound to the request body: the same window and page size.
            binding = orjson.dumps([req["startTime"], req["endTime"], page_size, req.get("where")])
            position = 0
            if (token := req.get("pageToken")) is not None:
                bound, position = self._tokens.get(token, (b"", -1))
                if bound != binding or self._expired(binding, position):
                    return self._error(400, "INVALID_ARGUMENT", "InvalidPageToken")
            return 200, self._page(req, binding, page_size, position)

    def _expired(self, binding: bytes, position: int) -> bool:
        if self.mode == "expire_unordered":
            return position >= 3
        once = {"expire_unordered_once": 3, "swap_expire": 2}.get(self.mode)
        if position == once and (binding, position) not in self._rejected:
            self._rejected.add((binding, position))
            return True
        return False

    def _page(self, req: dict[str, Any], binding: bytes, page_size: int, position: int) -> bytes:
        rows = self.known.window(_ms(req["startTime"]), _ms(req["endTime"]))
        if self.mode == "empty_forever":
            return b'{"data":[],"nextPageToken":"' + self._new_token(binding, position + 1).encode() + b'"}'
        if self.mode == "repeat_forever":
            chunk = rows[:page_size]
            token = self._new_token(binding, position + 1)
            return b'{"data":[' + b",".join(chunk) + b'],"nextPageToken":"' + token.encode() + b'"}'
        if self.mode in ("oldest_first", "expire_unordered", "expire_unordered_once"):
            rows = rows[::-1]
        pages = [rows[i : i + page_size] for i in range(0, len(rows), page_size)] or [[]]
        if self.mode == "pages_reversed":
            pages = pages[::-1]
        elif self.mode in ("swap_pages", "swap_expire") and len(pages) > 2:
            pages[1], pages[2] = pages[2], pages[1]
        out = b'{"data":[' + b",".join(pages[position]) + b"]"
        if position + 1 < len(pages):
            out += b',"nextPageToken":"' + self._new_token(binding, position + 1).encode() + b'"'
        return out + b"}"


@pytest.fixture(scope="module")
def day(sim_now: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    return sim_now - pd.Timedelta(days=1), sim_now


@pytest.fixture(scope="module")
def known(sim: SimulatorServer, workload: Workload, day: tuple[pd.Timestamp, pd.Timestamp]) -> KnownSet:
    """One day of one simulated resource, exactly as the simulator serves it (paged the plain way)."""
    rid = workload.resource_rids[1]
    with FoundryClient(sim.url, token=sim.token) as client:
        pages = list(client.iter_pages(rid, start=day[0], end=day[1]))
    return KnownSet(rid, [e for p in pages for e in orjson.loads(p.body).get("data", [])])


@pytest.fixture(scope="module")
def truth(workload: Workload, known: KnownSet, day: tuple[pd.Timestamp, pd.Timestamp], sim_now: pd.Timestamp) -> Any:
    frame = workload.ground_truth(known.rid, day[0], day[1], as_of=sim_now)
    assert len(frame) == len(known.raw) > 40 * PAGE_SIZE, "too few executions for chains of many pages"
    return _canonical(frame)


@pytest.fixture
def serve(known: KnownSet) -> Iterator[Any]:
    started: list[AdversarialServer] = []

    def start(mode: str) -> AdversarialServer:
        srv = AdversarialServer(known, mode)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows as plain values, in one order, for an exact comparison with the ground truth."""
    out = pd.DataFrame({c: df[c].astype(object).where(df[c].notna(), None) for c in TRUTH_COLUMNS})
    out["start_time"] = pd.to_datetime(df["start_time"]).dt.as_unit("ms").astype("int64").to_numpy()
    out["duration_s"] = df["duration_s"].astype("float64").to_numpy()
    return out.sort_values(["start_time", "foundry_trace_id"], ignore_index=True)


def _assert_exact(df: pd.DataFrame, truth: pd.DataFrame) -> None:
    assert df["foundry_trace_id"].is_unique, "duplicates in the result"
    pd.testing.assert_frame_equal(_canonical(df), truth, check_dtype=False, check_exact=True)


def _load(srv: AdversarialServer, known: KnownSet, day: Any, cache: Any = False) -> pd.DataFrame:
    with FoundryClient(srv.url, token=TOKEN) as client:
        return load_executions(
            known.rid, day[0], day[1], client=client, cache=cache, workers=WORKERS, page_size=PAGE_SIZE, progress=False
        )


def _order_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "newest-first order" in str(w.message)]


def test_a_healthy_server_gives_exact_rows_and_no_warning(
    serve: Any, known: KnownSet, day: Any, truth: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the server of this module, behaving, serves the simulator's truth; idle workers split."""
    monkeypatch.setattr(paging, "_SLICES_PER_WORKER", 1)
    srv = serve("healthy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = _load(srv, known, day)
    _assert_exact(df, truth)
    assert not _order_warnings(caught)
    assert df.attrs["slice_splits"] > 0, "no slice was split: the split path went untested"


@pytest.mark.parametrize("mode", ["oldest_first", "pages_reversed", "swap_pages", "expire_unordered_once"])
@pytest.mark.parametrize("slices_per_worker", [1, 4])
def test_pages_out_of_order_still_give_exact_rows_with_a_warning(
    mode: str,
    slices_per_worker: int,
    serve: Any,
    known: KnownSet,
    day: Any,
    truth: pd.DataFrame,
    tmp_path: Path,
    sim_now: pd.Timestamp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One slice per worker makes workers idle early, so slices are split while their chains are read.
    monkeypatch.setattr(paging, "_SLICES_PER_WORKER", slices_per_worker)
    srv = serve(mode)
    cache = ExecutionCache(tmp_path, clock=lambda: sim_now + pd.Timedelta(days=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = _load(srv, known, day, cache=cache)
    _assert_exact(df, truth)
    found = _order_warnings(caught)
    assert len(found) == 1, found  # once per fetch, however many slices
    # It names the resource and the span of the slices that came out of order, inside the window loaded.
    named = re.search(rf"resource {re.escape(known.rid)} in \[([^,\s]+), ([^)\s]+)\)", found[0])
    assert named is not None, found[0]
    assert day[0] <= pd.Timestamp(named.group(1)) < pd.Timestamp(named.group(2)) <= day[1]
    if mode == "expire_unordered_once":
        assert df.attrs["token_restarts"] > 0, "no token was rejected: the test would prove nothing"
    # What the cache recorded is the truth: from a healthy server, the window is served from disk, exact.
    srv.mode = "healthy"
    before = srv.requests
    again = _load(srv, known, day, cache=cache)
    _assert_exact(again, truth)
    assert again.attrs["cache"]["fetched"] == [] and srv.requests == before


def test_a_token_restart_never_skips_what_the_next_page_did_not_confirm(
    serve: Any, known: KnownSet, day: Any, truth: pd.DataFrame
) -> None:
    """Two pages swapped, and the token expires before the swap shows: the restart must not trust the page
    that came out of turn (restarting below it would skip the page held back)."""
    srv = serve("swap_expire")
    df = _load(srv, known, day)
    assert df.attrs["token_restarts"] > 0, "no token was rejected: the test would prove nothing"
    _assert_exact(df, truth)


@pytest.mark.parametrize(
    ("mode", "error", "match"),
    [
        ("expire_unordered", PagingOrderError, "out of the documented newest-first order"),
        ("empty_forever", PagingError, "brought no execution not seen before"),
        ("repeat_forever", PagingError, "brought no execution not seen before"),
    ],
)
def test_unbounded_faults_end_in_a_typed_error_and_record_nothing(
    mode: str,
    error: type[Exception],
    match: str,
    serve: Any,
    known: KnownSet,
    day: Any,
    truth: pd.DataFrame,
    tmp_path: Path,
    sim_now: pd.Timestamp,
) -> None:
    srv = serve(mode)
    cache = ExecutionCache(tmp_path, clock=lambda: sim_now + pd.Timedelta(days=1))
    with pytest.raises(error, match=match) as raised:
        _load(srv, known, day, cache=cache)
    assert known.rid in str(raised.value)
    # Bounded: each worker gives up within its budget of pages or restarts, and the first error stops all.
    assert srv.requests <= WORKERS * (paging.MAX_PAGES_WITHOUT_PROGRESS + 2)
    # Nothing was recorded as covered: a healthy server then fills the whole window, exactly.
    srv.mode = "healthy"
    df = _load(srv, known, day, cache=cache)
    _assert_exact(df, truth)
    assert df.attrs["cache"]["fetched"] == [[known.rid, day[0].isoformat(), day[1].isoformat()]]
