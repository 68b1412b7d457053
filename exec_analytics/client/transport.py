"""One HTTP attempt, bounded in time and memory, over a pool of reusable sessions.

An attempt never raises a requests or urllib3 exception: what went wrong becomes :attr:`Attempt.failure`
(already free of secrets and control characters), so no exception carrying a request, and its
Authorization header, is ever chained to the error a user sees.

Bounds of an attempt:

- time: a deadline covers the headers and the body. A watchdog shuts the socket down when it passes (so a
  server trickling one byte a second cannot hold the attempt), and the body is read in chunks with the
  deadline checked between them;
- memory: the body is decompressed here, chunk by chunk, and reading stops as soon as the decoded size
  passes the limit, so a small gzip body inflating to a gigabyte is refused after a few megabytes.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from exec_analytics.client.auth import BearerAuth
from exec_analytics.client.clock import Clock
from exec_analytics.errors import ExecAnalyticsError

__all__ = ["Attempt", "SessionPool", "Stats", "new_session", "send"]

# Bytes asked of the socket per read: small enough that the deadline is checked often on a slow link.
_CHUNK = 64 * 1024
# Codings this client asks for, and therefore decodes itself (both zlib-based).
_ACCEPT_ENCODING = "gzip, deflate"
_ZLIB_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})


class Stats:
    """Thread-safe counters of a client."""

    _NAMES = ("requests", "retries", "throttled", "bytes_received", "token_refreshes", "transport_errors")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c = dict.fromkeys(self._NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        """A copy of the counters, with ``bytes`` as an alias of ``bytes_received``."""
        with self._lock:
            out = dict(self._c)
        out["bytes"] = out["bytes_received"]  # the short name of the module contract
        return out


# ---------------------------------------------------------------------- the attempt deadline watchdog

_current = threading.local()


class _Watchdog:
    """Shuts an attempt's socket down at its deadline; ``expired`` tells the reader why its read ended."""

    def __init__(self, seconds: float) -> None:
        self.due = time.monotonic() + max(0.0, seconds)
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._done = False

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            if sock is None or self._sock is not None or self._done:
                return
            self._sock = sock
        _REAPER.arm(self)

    def fire(self) -> None:
        with self._lock:
            if self._done or self._sock is None:
                return
            self._done = self.expired = True
            # shutdown, not close: it wakes a thread blocked in recv on this socket.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        with self._lock:
            self._done = True

    @property
    def done(self) -> bool:
        return self._done


class _Reaper:
    """One daemon thread for every attempt of the process: fires each watchdog when it is due.

    A thread per attempt (``threading.Timer``) would cost more than a page request on loopback.
    Cancelled watchdogs are dropped when they reach the top of the heap.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, dog: _Watchdog) -> None:
        with self._cond:
            heapq.heappush(self._heap, (dog.due, next(self._seq), dog))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exec-analytics-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is dog:  # an earlier deadline than the one the thread sleeps towards
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    _, _, dog = heapq.heappop(self._heap)
                    dog.fire()
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_REAPER = _Reaper()


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:
        dog: _Watchdog | None = getattr(_current, "watchdog", None)
        if dog is not None:
            dog.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:
        dog: _Watchdog | None = getattr(_current, "watchdog", None)
        if dog is not None:
            dog.watch(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections arm the attempt's watchdog when they start waiting for the response."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def new_session(session_cls: type[requests.Session] = requests.Session) -> requests.Session:
    """A session as the client uses it: one connection, no automatic retries, the attempt watchdog mounted.

    Parameters
    ----------
    session_cls : type
        The class to instantiate (a subclass can observe or alter what is sent).

    Returns
    -------
    requests.Session
    """
    session = session_cls()
    # One connection per session: a session is used by one thread at a time, and the pool of sessions is
    # what scales with the number of workers.
    adapter = _DeadlineAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class SessionPool:
    """Sessions reused across attempts, one per concurrent thread.

    Parameters
    ----------
    factory : callable
        Makes a new :class:`requests.Session` (default :func:`new_session`).
    size : int
        Idle sessions kept for reuse.
    headers : mapping
        Set on every new session.
    ignore_environment : bool
        Set ``trust_env = False`` on every session: no ``HTTP(S)_PROXY``, ``.netrc`` or CA bundle from the
        environment (the client sets it for loopback base URLs, which must never go through a proxy).
    """

    def __init__(
        self,
        factory: Callable[[], requests.Session],
        size: int,
        headers: Mapping[str, str],
        *,
        ignore_environment: bool,
    ) -> None:
        self._factory = factory
        self._size = size
        self._headers = dict(headers)
        self._ignore_env = ignore_environment
        self._lock = threading.Lock()
        self._idle: list[requests.Session] = []
        self._all: set[requests.Session] = set()
        self.closed = False

    def checkout(self) -> requests.Session:
        """An idle session, or a new one."""
        with self._lock:
            if self.closed:
                raise ExecAnalyticsError("this FoundryClient is closed")
            if self._idle:
                return self._idle.pop()
        session = self._factory()
        session.headers.update(self._headers)
        if self._ignore_env:
            session.trust_env = False
            session.proxies.clear()
        with self._lock:
            self._all.add(session)
        return session

    def checkin(self, session: requests.Session, *, broken: bool) -> None:
        """Give ``session`` back; a broken one (its connection in an unknown state) is closed instead."""
        with self._lock:
            if not broken and not self.closed and len(self._idle) < self._size:
                self._idle.append(session)
                return
            self._all.discard(session)
        session.close()

    def close(self) -> None:
        """Close every session; later checkouts fail."""
        with self._lock:
            self.closed = True
            sessions = list(self._all)
            self._all.clear()
            self._idle.clear()
        for s in sessions:
            s.close()


@dataclass
class Attempt:
    """What one attempt produced.

    Attributes
    ----------
    status : int or None
        HTTP status; None when no complete response arrived.
    headers : mapping
        Response headers (empty without a response).
    content : bytes
        The decoded body.
    failure : str or None
        Why no usable response arrived; never holds a secret or server-chosen control characters
        once the client has cleaned it.
    retryable : bool
        Whether a second attempt may succeed (False for TLS errors, an unsupported encoding, a body too
        large).
    too_large : bool
        The body passed ``max_bytes``.
    wire_bytes : int
        Body bytes as received (compressed).
    """

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""
    failure: str | None = None
    retryable: bool = True
    too_large: bool = False
    wire_bytes: int = 0


def _fail(out: Attempt, failure: str, *, retryable: bool = True) -> Attempt:
    out.status = None
    out.failure = failure
    out.retryable = retryable
    return out


def send(
    session: requests.Session,
    url: str,
    *,
    data: Any,
    headers: Mapping[str, str],
    token: str | None,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
    clock: Clock,
    max_bytes: int,
) -> Attempt:
    """POST once and read the whole body, within ``deadline`` (on ``clock``) and ``max_bytes`` decoded.

    Parameters
    ----------
    session : requests.Session
        A session from the pool, used by this thread only.
    url : str
        Full URL.
    data : bytes or mapping
        The request body (a mapping is form-encoded).
    headers : mapping
        Extra request headers.
    token : str or None
        Bearer token, or None for an unauthenticated request.
    connect_timeout, read_timeout : float
        Seconds for the TCP/TLS connection and for each socket read, both cut to the deadline.
    deadline : float
        ``clock.monotonic()`` value by which the attempt, headers and body, must be over.
    clock : Clock
        The client's clock.
    max_bytes : int
        Largest decoded body accepted.

    Returns
    -------
    Attempt
        Never raises a requests/urllib3 exception; ``failure`` describes transport problems.
    """
    out = Attempt()
    left = deadline - clock.monotonic()
    if left <= 0:
        return _fail(out, "attempt deadline passed before sending")
    dog = _Watchdog(left)
    _current.watchdog = dog
    resp: requests.Response | None = None
    try:
        resp = session.post(
            url,
            data=data,
            headers={**headers, "Accept-Encoding": _ACCEPT_ENCODING},
            auth=BearerAuth(token) if token is not None else None,
            timeout=(min(connect_timeout, left), min(read_timeout, left)),
            allow_redirects=False,
            stream=True,
        )
        if dog.expired:
            # The shutdown can look like the end of the headers to http.client: what arrived is not trusted.
            return _fail(
                out, f"read timeout: the attempt deadline ({left:.1f} s) passed before the response headers ended"
            )
        out.status = resp.status_code
        out.headers = resp.headers
        return _read_body(resp, out, deadline=deadline, clock=clock, max_bytes=max_bytes)
    except requests.exceptions.SSLError as exc:
        # A certificate problem does not heal by retrying.
        return _fail(out, f"TLS error: {type(exc).__name__}", retryable=False)
    except requests.exceptions.Timeout as exc:
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _fail(out, f"connect timeout after {min(connect_timeout, left):.1f} s")
        return _fail(out, f"read timeout after {min(read_timeout, left):.1f} s")
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        if dog.expired:
            return _fail(
                out, f"read timeout: the attempt deadline ({left:.1f} s) passed before the response headers ended"
            )
        return _fail(out, f"{type(exc).__name__}: {_describe(exc)}")
    except requests.exceptions.RequestException as exc:
        return _fail(out, f"{type(exc).__name__}: {_describe(exc)}", retryable=False)
    finally:
        dog.cancel()
        _current.watchdog = None
        if resp is not None:
            resp.close()


class _Inflater:
    """Incremental gzip/zlib decoding that never produces more than it is allowed to.

    Members of a multi-member gzip body are decoded one after the other, as HTTP clients must.
    """

    def __init__(self) -> None:
        # wbits 47 = 32 + 15: accept a gzip or zlib header, as servers disagree on what "deflate" means.
        self._d = zlib.decompressobj(wbits=47)

    def feed(self, data: bytes, limit: int) -> tuple[list[bytes], int]:
        """Decode ``data``; stop once more than ``limit`` bytes came out. Returns the pieces and their size."""
        pieces: list[bytes] = []
        size = 0
        while data and size <= limit:
            if self._d.eof:  # the previous member ended and ``data`` is what followed it: the next member
                self._d = zlib.decompressobj(wbits=47)
            # At most one byte past the limit per call: never much more than the limit in memory.
            piece = self._d.decompress(data, limit - size + 1)
            pieces.append(piece)
            size += len(piece)
            data = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
        return pieces, size

    @property
    def complete(self) -> bool:
        """Whether the last member ended (a body cut short mid-stream is not)."""
        return bool(self._d.eof)


def _read_body(resp: requests.Response, out: Attempt, *, deadline: float, clock: Clock, max_bytes: int) -> Attempt:
    """Stream the body into ``out.content``, decoding it, within the deadline and the size limit."""
    coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    inflater: _Inflater | None = None
    if coding in _ZLIB_CODINGS:
        inflater = _Inflater()
    elif coding not in ("", "identity"):
        return _fail(out, f"unsupported Content-Encoding {coding[:40]!r}", retryable=False)
    declared = resp.headers.get("Content-Length", "")
    if inflater is None and declared.isdigit() and int(declared) > max_bytes:
        out.too_large = True
        return _fail(out, f"Content-Length {declared} exceeds max_response_bytes={max_bytes}", retryable=False)
    raw = resp.raw
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            if clock.monotonic() >= deadline or getattr(_current.watchdog, "expired", False):
                return _fail(
                    out, f"read timeout: the attempt deadline passed while reading the body ({size} bytes read)"
                )
            chunk = raw.read1(_CHUNK, decode_content=False)
            if not chunk:
                break
            out.wire_bytes += len(chunk)
            if inflater is None:
                parts.append(chunk)
                size += len(chunk)
            else:
                pieces, n = inflater.feed(chunk, max_bytes - size)
                parts.extend(pieces)
                size += n
            if size > max_bytes:
                out.too_large = True
                return _fail(out, f"decoded body exceeds max_response_bytes={max_bytes}", retryable=False)
        if inflater is not None and out.wire_bytes and not inflater.complete:
            return _fail(out, f"{coding} body ends before its compressed stream does")
    except zlib.error:
        return _fail(out, f"undecodable {coding} body")
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        if getattr(_current.watchdog, "expired", False):
            return _fail(out, f"read timeout: the attempt deadline passed while reading the body ({size} bytes read)")
        if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
            return _fail(out, "read timeout while reading the body")
        return _fail(out, f"connection broken while reading the body: {type(exc).__name__}")
    out.content = b"".join(parts)
    return out


def _describe(exc: BaseException) -> str:
    """A short description of a requests exception: its root cause, without the request it carries."""
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", None) or inner or exc
    text = str(reason)
    # urllib3 prefixes the connection repr ("HTTPConnection(host=..., port=...): ..."); keep the cause.
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if errno:
        text = errno.group(0)
    return text[:200] + ("…" if len(text) > 200 else "")
