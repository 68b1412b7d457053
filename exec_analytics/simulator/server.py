"""A Foundry-compatible listExecutions server on loopback, backed by a :class:`Workload`.

Implements ``POST /api/v2/observability/resources/{rid}/listExecutions?preview=true`` as described in
API.md (bearer auth, permissions, the ExecutionFilter union, newest-first keyset paging with short-lived
signed page tokens, completion visibility against a controllable clock) and the OAuth2 client-credentials
endpoint ``POST /multipass/api/oauth2/token``.

Choices where API.md says "not known":

- ``pageSize`` defaults to ``DEFAULT_PAGE_SIZE`` (100); anything but an integer in 1..100 is rejected
  with ``InvalidPageSize`` (not clamped).
- Executions with equal ``startTime`` are ordered by ``foundryTraceId`` descending.
- Page tokens are HMAC-signed, expire after ``page_token_ttl_s`` seconds of real (monotonic) time and are
  bound to the resource and to ``startTime``/``endTime``/``where`` of the first request (``pageSize`` may
  change between pages). The window resolved on the first page (defaults: the last 24 h) is kept in the
  token.
- Other bad arguments (a body that is not a JSON object, unknown body fields, bad times, ``endTime``
  before ``startTime``, a malformed RID) answer 400 ``INVALID_ARGUMENT`` / ``InvalidArgument`` with
  ``parameters.field``.
- 401 ``MissingCredentials`` without a bearer token, ``InvalidToken`` for an unknown, revoked or expired
  one. 429 and 503 answers have an empty body.
- An execution is visible once ``start + true duration <= clock.now()``; history is unlimited unless
  ``retention`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
import pandas as pd

from ..filters import validate_filter
from ..rids import RID_PATTERN
from ..timeutil import to_utc
from .auth import InvalidPageToken, OAuthRegistry, PageTokenCodec
from .clock import SimClock
from .faults import FaultConfig, FaultDecision, FaultInjector
from .query import compile_filter, last_cursor, render_rows, scan, truncate
from .transport import Handler, HTTPServer, read_body
from .workload import Workload

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TOKEN",
    "MAX_PAGE_SIZE",
    "NO_PERMISSION_TOKEN",
    "OAUTH_TOKEN_PATH",
    "OBSERVABILITY_SCOPE",
    "SimulatorServer",
    "serve",
]

#: Bearer token that may list the executions of ``Workload.resource_rids``.
DEFAULT_TOKEN = "sim-token-exec-analytics"
#: Bearer token that is valid but may not list executions at all (403 ``ListExecutionsPermissionDenied``).
NO_PERMISSION_TOKEN = "sim-token-no-permission"
#: OAuth2 client registered on every server, with scope ``api:observability-read``.
DEFAULT_CLIENT_ID = "sim-client"
DEFAULT_CLIENT_SECRET = "sim-client-secret"
OBSERVABILITY_SCOPE = "api:observability-read"
_DEFAULT_TOKEN_BYTES = DEFAULT_TOKEN.encode()
_NO_PERMISSION_TOKEN_BYTES = NO_PERMISSION_TOKEN.encode()
OAUTH_TOKEN_PATH = "/multipass/api/oauth2/token"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100

_ENDPOINT = re.compile(r"^/api/v2/observability/resources/([^/]+)/listExecutions$")
_BODY_FIELDS = frozenset({"startTime", "endTime", "where", "pageSize", "pageToken"})
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_ERROR_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHORIZED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    500: "INTERNAL",
}


class _Reply(Exception):
    """Raised inside request handling to answer with an error right away."""

    def __init__(self, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = tuple(headers)


def _error_body(status: int, name: str, parameters: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps(
        {
            "errorCode": _ERROR_CODES[status],
            "errorName": name,
            "errorInstanceId": str(uuid.uuid4()),
            "parameters": parameters or {},
        }
    )


def _fail(status: int, name: str, **parameters: Any) -> _Reply:
    return _Reply(status, _error_body(status, name, parameters))


class _Principal:
    __slots__ = ("can_list", "scopes")

    def __init__(self, can_list: bool, scopes: frozenset[str] | None) -> None:
        self.can_list = can_list
        self.scopes = scopes  # None: not an OAuth token (no scope restriction)


class SimulatorServer:
    """The simulated Foundry endpoint, served from a background thread.

    Parameters
    ----------
    workload : Workload, optional
        The executions to serve; default ``Workload(seed=0)``.
    clock : SimClock, optional
        "Now" for completion visibility and default windows; default follows wall time.
    faults : FaultConfig, optional
        Faults to inject; may be replaced later through the ``faults`` attribute.
    host : str
        Interface to bind; loopback by default.
    port : int
        0 picks a free port.
    page_token_ttl_s : float
        Lifetime of page tokens in real (monotonic) seconds.
    oauth_token_ttl_s : float
        Lifetime of OAuth access tokens in real seconds.
    retention : timedelta or str, optional
        When set, executions that started before ``now - retention`` are no longer returned.

    Attributes
    ----------
    url : str
        ``http://host:port`` once started.
    token : str
        ``DEFAULT_TOKEN``.
    request_count : int
        listExecutions requests received (every outcome, faults included).
    fault_counts : collections.Counter
        Injected faults by kind (``FAULT_KINDS``, ``"slow"``, ``"short_page"``, ``"concurrency"``).
    log : collections.deque
        The latest ``(path, status)`` pairs; status 0 for a dropped connection.
    """

    def __init__(
        self,
        workload: Workload | None = None,
        *,
        clock: SimClock | None = None,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        page_token_ttl_s: float = 60.0,
        oauth_token_ttl_s: float = 3600.0,
        retention: timedelta | str | None = None,
    ) -> None:
        self.workload = workload if workload is not None else Workload()
        self.clock = clock if clock is not None else SimClock()
        self.host = host
        self.port = int(port)
        self.retention_ms = None if retention is None else int(pd.Timedelta(retention) // pd.Timedelta("1ms"))
        self.token = DEFAULT_TOKEN
        self._injector = FaultInjector(faults)
        self._page_tokens = PageTokenCodec(page_token_ttl_s)
        self._lock = threading.Lock()
        self._in_flight = 0
        self.request_count = 0
        self.fault_counts: Counter[str] = Counter()
        self.log: deque[tuple[str, int]] = deque(maxlen=10_000)
        self.internal_errors: list[str] = []
        self._oauth = OAuthRegistry(oauth_token_ttl_s)
        self.register_oauth_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        if self._httpd is None:
            raise RuntimeError("the simulator is not running; call start() or use it as a context manager")
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> SimulatorServer:
        """Bind and serve from a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        httpd = HTTPServer((self.host, self.port), Handler)
        httpd.sim = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="foundry-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self._httpd is not None else "stopped"
        return f"SimulatorServer({state}, {self.workload!r})"

    # --- configuration ---------------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        """The active fault configuration; assigning a new one restarts its random sequence."""
        return self._injector.config

    @faults.setter
    def faults(self, config: FaultConfig | None) -> None:
        self._injector = FaultInjector(config)

    def reset_counts(self) -> None:
        """Zero ``request_count``, ``fault_counts`` and the log."""
        with self._lock:
            self.request_count = 0
            self.fault_counts.clear()
            self.log.clear()

    def register_oauth_client(
        self, client_id: str, client_secret: str, scopes: Iterable[str] = (OBSERVABILITY_SCOPE,)
    ) -> None:
        """Allow an OAuth2 client; its tokens carry at most ``scopes``."""
        self._oauth.register(client_id, client_secret, scopes)

    def revoke_oauth_tokens(self) -> int:
        """Invalidate every OAuth access token issued so far; returns how many were live."""
        return self._oauth.revoke_all()

    # --- request handling -------------------------------------------------------------------------

    def _handle(self, h: Handler, method: str) -> None:
        try:
            body = read_body(h)
        except (ValueError, OSError):
            h.close_connection = True  # a garbled body: the connection cannot be trusted any more
            return
        path, _, query = h.path.partition("?")
        try:
            if path == OAUTH_TOKEN_PATH:
                self._handle_oauth(h, method, body)
                return
            m = _ENDPOINT.match(path)
            if m is None or method != "POST":
                self._send(h, path, 404 if m is None else 405, b"")
                return
            with self._lock:
                self.request_count += 1
                self._in_flight += 1
            try:
                self._handle_list(h, path, m.group(1), query, body)
            finally:
                with self._lock:
                    self._in_flight -= 1
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception as exc:  # a simulator bug must not hang the client: answer 500 and remember it
            import traceback

            self.internal_errors.append(traceback.format_exc())
            print(f"simulator: internal error: {exc!r}", file=sys.stderr)
            try:
                self._send(h, path, 500, _error_body(500, "Internal"))
            except OSError:
                h.close_connection = True

    def _apply_faults(self, h: Handler, path: str, concurrency: bool) -> FaultDecision | None:
        """Sleep and/or answer as the fault configuration says; None when the request was answered."""
        config = self._injector.config
        decision = self._injector.draw()
        if concurrency and config.max_concurrent is not None and self._in_flight > config.max_concurrent:
            self._count("concurrency")
            self._send(h, path, 429, b"")
            return None
        if config.latency_s:
            time.sleep(config.latency_s)
        if decision.slow:
            self._count("slow")
            time.sleep(config.slow_s)
        kind = decision.kind
        if kind is None or kind == "truncate":
            return decision
        self._count(kind)
        if kind == "429_retry_after":
            self._send(h, path, 429, b"", [("Retry-After", f"{config.retry_after_s:g}")])
        elif kind == "429":
            self._send(h, path, 429, b"")
        elif kind == "429_do_not_retry":
            self._send(h, path, 429, b"", [("QoS-Retry-Hint", "do-not-retry")])
        elif kind == "503":
            self._send(h, path, 503, b"")
        elif kind == "500":
            self._send(h, path, 500, _error_body(500, "Internal"))
        elif kind == "drop":
            h.close_connection = True
            self.log.append((path, 0))
        return None

    def _count(self, kind: str) -> None:
        with self._lock:
            self.fault_counts[kind] += 1

    def _handle_list(self, h: Handler, path: str, raw_rid: str, query: str, body: bytes) -> None:
        decision = self._apply_faults(h, path, concurrency=True)
        if decision is None:
            return
        try:
            status, payload = 200, self._list_executions(h, raw_rid, query, body, decision)
            headers: tuple[tuple[str, str], ...] = ()
        except _Reply as reply:
            status, payload, headers = reply.status, reply.body, reply.headers
        if decision.kind == "truncate":
            self._count("truncate")
            self._send(h, path, status, payload, headers, truncate=True)
        else:
            self._send(h, path, status, payload, headers)

    def _principal(self, h: Handler) -> _Principal:
        auth = h.headers.get("Authorization")
        if not auth:
            raise _fail(401, "MissingCredentials")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _fail(401, "MissingCredentials")
        raw = token.encode("utf-8", "surrogateescape")
        if hmac.compare_digest(raw, _DEFAULT_TOKEN_BYTES):
            return _Principal(True, None)
        if hmac.compare_digest(raw, _NO_PERMISSION_TOKEN_BYTES):
            return _Principal(False, None)
        scopes = self._oauth.scopes(token)
        if scopes is None:
            raise _fail(401, "InvalidToken")  # unknown, revoked or expired
        return _Principal(True, scopes)

    def _list_executions(self, h: Handler, raw_rid: str, query: str, body: bytes, decision: FaultDecision) -> bytes:
        principal = self._principal(h)
        if principal.scopes is not None and OBSERVABILITY_SCOPE not in principal.scopes:
            raise _fail(403, "ApiUsageDenied", missingScope=OBSERVABILITY_SCOPE)
        preview = parse_qs(query).get("preview", [])
        if not preview or preview[-1].lower() != "true":
            raise _fail(400, "ApiFeaturePreviewUsageOnly")
        rid = unquote(raw_rid)
        if not RID_PATTERN.match(rid):
            raise _fail(400, "InvalidArgument", field="resourceRid", resourceRid=rid)
        if not principal.can_list:
            raise _fail(403, "ListExecutionsPermissionDenied", resourceRid=rid)
        profile = self.workload._by_rid.get(rid)
        if profile is None:
            raise _fail(404, "ResourceNotFound", resourceRid=rid)
        if not profile.readable:
            raise _fail(403, "ListExecutionsResourcePermissionDenied", resourceRid=rid)

        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _fail(400, "InvalidArgument", field="body", reason="not valid JSON") from None
        if not isinstance(req, dict):
            raise _fail(400, "InvalidArgument", field="body", reason="must be a JSON object")
        unknown = sorted(set(req) - _BODY_FIELDS)
        if unknown:
            raise _fail(400, "InvalidArgument", field=unknown[0], reason="unknown field")
        page_size = req.get("pageSize")
        if page_size is None:
            page_size = DEFAULT_PAGE_SIZE
        elif isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _fail(400, "InvalidPageSize", pageSize=page_size)
        where = req.get("where")
        mask_fn = None
        if where is not None:
            try:
                mask_fn = compile_filter(profile, validate_filter(where), self.workload._user_index)
            except (ValueError, TypeError):
                raise _fail(400, "InvalidExecutionFilter") from None
        binding = hashlib.blake2b(
            orjson.dumps([rid, req.get("startTime"), req.get("endTime"), where], option=orjson.OPT_SORT_KEYS),
            digest_size=12,
        ).digest()
        now_ms = self.clock.now_ms()
        cursor = None
        offset = None
        token = req.get("pageToken")
        if token is not None:
            # The window was validated and resolved on the first page; the token carries it.
            try:
                mode, start_ms, end_ms, position = self._page_tokens.decode(token, binding)
            except InvalidPageToken:
                raise _fail(400, "InvalidPageToken") from None
            if mode == "k":
                cursor = position
            else:
                offset = position
        else:
            start_ms = self._time(req, "startTime", now_ms - _DAY_MS)
            end_ms = self._time(req, "endTime", now_ms)
            if end_ms < start_ms:
                raise _fail(400, "InvalidArgument", field="endTime", reason="endTime is before startTime")
            if self._injector.config.unstable_tokens:
                offset = 0

        lower = start_ms if self.retention_ms is None else max(start_ms, now_ms - self.retention_ms)
        sels, n = scan(
            self.workload,
            profile,
            lower,
            end_ms,
            visible_ms=now_ms,
            mask_fn=mask_fn,
            cursor=cursor,
            limit=page_size + 1,
            skip=offset or 0,
        )
        more = n > page_size
        keep = min(n, page_size)
        if more and decision.short_fraction is not None and page_size > 1:
            self._count("short_page")
            keep = 1 + int(decision.short_fraction * (page_size - 1))
        sels = truncate(sels, keep)
        pieces = render_rows(sels)
        if pieces:
            pieces[-1] = pieces[-1][:-1]  # every rendered row ends with a comma
        tail = b"]}"
        if more:
            if offset is not None:
                next_token = self._page_tokens.encode("o", binding, start_ms, end_ms, offset + keep)
            else:
                next_token = self._page_tokens.encode("k", binding, start_ms, end_ms, last_cursor(sels))
            tail = b'],"nextPageToken":"' + next_token.encode() + b'"}'
        return b"".join([b'{"data":[', *pieces, tail])

    @staticmethod
    def _time(req: dict[str, Any], name: str, default: int) -> int:
        value = req.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise _fail(400, "InvalidArgument", field=name, reason="must be an ISO-8601 timestamp string")
        try:
            # fast path (Python >= 3.11 reads "...Z"); anything else goes through the shared parser
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return (parsed - _EPOCH) // _ONE_MS
        except (ValueError, OverflowError):
            pass
        try:
            return int(to_utc(value, name).value // 1_000_000)
        except (ValueError, TypeError, OverflowError):
            raise _fail(400, "InvalidArgument", field=name, reason="not an ISO-8601 timestamp with a zone") from None

    # --- OAuth ------------------------------------------------------------------------------------

    def _handle_oauth(self, h: Handler, method: str, body: bytes) -> None:
        path = OAUTH_TOKEN_PATH
        if method != "POST":
            self._send(h, path, 405, b"")
            return
        if self._injector.config.apply_to_oauth:
            decision = self._apply_faults(h, path, concurrency=False)
            if decision is None:
                return
        else:
            decision = None
        status, payload = self._oauth.grant(body, h.headers.get("Authorization"))
        if decision is not None and decision.kind == "truncate":
            self._count("truncate")
            self._send(h, path, status, payload, truncate=True)
        else:
            self._send(h, path, status, payload, [("Cache-Control", "no-store")])

    # --- writing ----------------------------------------------------------------------------------

    def _send(
        self,
        h: Handler,
        path: str,
        status: int,
        body: bytes,
        headers: Iterable[tuple[str, str]] = (),
        *,
        truncate: bool = False,
    ) -> None:
        # One write per response: headers and body leave in a single send (no delayed-ACK stalls).
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        if body:
            lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{k}: {v}" for k, v in headers)
        if truncate or h.close_connection:
            lines.append("Connection: close")
            h.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.log.append((path, status))  # before the write, so a client that got its answer sees it logged
        h.wfile.write(head + (body[: len(body) // 2] if truncate else body))


def serve(
    port: int,
    seed: int = 0,
    *,
    host: str = "127.0.0.1",
    faults: FaultConfig | None = None,
    scale: float = 1.0,
) -> None:
    """Run a simulator in the foreground until interrupted (``exec-analytics simulate``).

    Prints the base URL, the bearer token, the OAuth client and the readable resource RIDs, then blocks.
    """
    srv = SimulatorServer(Workload(seed=seed, scale=scale), faults=faults, host=host, port=port)
    srv.start()
    print(f"Foundry simulator listening on {srv.url}  (seed {seed}, scale {scale:g})")
    print(f"  FOUNDRY_HOSTNAME={srv.url}")
    print(f"  FOUNDRY_TOKEN={srv.token}")
    print(f"  OAuth client: FOUNDRY_CLIENT_ID={DEFAULT_CLIENT_ID} FOUNDRY_CLIENT_SECRET={DEFAULT_CLIENT_SECRET}")
    print("  readable resources:")
    for p in srv.workload.resources:
        if p.readable:
            print(f"    {p.rid}  ({p.name}, ~{p.rate_per_hour:g}/h)")
    print("Press Ctrl+C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
