"""A Foundry-compatible listExecutions server on loopback, backed by a :class:`Workload`.

Implements ``POST /api/v2/observability/resources/{rid}/listExecutions?preview=true`` as described in
docs/endpoint.md (bearer auth, permissions, the ExecutionFilter union, newest-first keyset paging with short-lived
signed page tokens, completion visibility against a controllable clock) and the OAuth2 client-credentials
endpoint ``POST /multipass/api/oauth2/token``.

What a request may say, and the errors it gets otherwise, is :mod:`.spec`'s (the documented rules and the
simulator's choices where the documentation is silent). Other choices where docs/endpoint.md says "not known":

- Executions with equal ``startTime`` are ordered by ``foundryTraceId`` descending.
- Page tokens are HMAC-signed, expire after ``page_token_ttl_s`` seconds of real (monotonic) time and are
  bound to the resource and to ``startTime``/``endTime``/``where`` of the first request (``pageSize`` may
  change between pages). The window resolved on the first page (defaults: the last 24 h) is kept in the
  token.
- 401 ``MissingCredentials`` without a bearer token, ``InvalidToken`` for an unknown, revoked or expired
  one. Injected 429 and 503 faults have an empty body.
- Rate limits are off unless ``limits`` is given; then each principal (bearer token or OAuth client) is held
  to its requests per minute and in flight as :mod:`.limits` describes, and every request is counted
  (:meth:`SimulatorServer.limit_stats`).
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
import traceback
from collections import Counter, deque
from collections.abc import Iterable
from datetime import timedelta
from urllib.parse import parse_qs, unquote

import orjson
import pandas as pd

from .auth import InvalidPageToken, OAuthRegistry, PageTokenCodec
from .clock import SimClock
from .faults import FaultConfig, FaultDecision, FaultInjector
from .limits import LimitsConfig, LimitStats, RateLimiter, RateLimits
from .query import MaskFn, compile_filter, last_cursor, scan, truncate
from .render import render_rows
from .spec import ERRORS, THROTTLED, Refusal, check_filter, check_page_size, check_rid, read_request, resolve_window
from .transport import Handler, HTTPServer, read_body
from .workload import Workload

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TOKEN",
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

_ENDPOINT = re.compile(r"^/api/v2/observability/resources/([^/]+)/listExecutions$")
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


class _Principal:
    __slots__ = ("can_list", "key", "scopes")

    def __init__(self, key: str, can_list: bool, scopes: frozenset[str] | None) -> None:
        self.key = key  # whose limits apply: the bearer token, or the OAuth client id
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
    limits : RateLimits, str, mapping or RateLimiter, optional
        Enforce and measure rate limits (off by default): a :class:`~.limits.RateLimits` or token kind
        (``"user"``: 5,000/min and 30 in flight; ``"service"``: 800 in flight) for every principal, a mapping
        principal (bearer token or OAuth client id) -> limits or kind, or a :class:`~.limits.RateLimiter`
        (e.g. on a fake clock). Past a limit the answer is 429 ``TooManyRequests``.

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
        limits: LimitsConfig | RateLimiter | None = None,
    ) -> None:
        self.workload = workload if workload is not None else Workload()
        self.clock = clock if clock is not None else SimClock()
        self.host = host
        self.port = int(port)
        self.retention_ms = None if retention is None else int(pd.Timedelta(retention) // pd.Timedelta("1ms"))
        self.token = DEFAULT_TOKEN
        self._injector = FaultInjector(faults)
        self._limiter = limits if isinstance(limits, RateLimiter) or limits is None else RateLimiter(limits)
        self._admitted = threading.local()  # the principal of the request this thread has admitted, if any
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
        httpd = HTTPServer((self.host, self.port), self._handle)
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
        """Zero ``request_count``, ``fault_counts``, the log and the rate-limit counters (:meth:`limit_stats`)."""
        with self._lock:
            self.request_count = 0
            self.fault_counts.clear()
            self.log.clear()
        if self._limiter is not None:
            self._limiter.reset_stats()

    def rate_limits(self, principal: str) -> RateLimits | None:
        """The limits ``principal`` (bearer token or OAuth client id) is held to; None when not enforced."""
        return None if self._limiter is None else self._limiter.limits_for(principal)

    def limit_stats(self, principal: str) -> LimitStats:
        """What the rate limiter counted for one principal: admitted, throttled, the peaks in flight and per minute.

        Parameters
        ----------
        principal : str
            A bearer token (e.g. ``server.token``), or an OAuth client id for all the tokens issued to it.

        Returns
        -------
        LimitStats
            Zeros for a principal that made no request.

        Raises
        ------
        RuntimeError
            When the server was started without ``limits``.
        """
        if self._limiter is None:
            raise RuntimeError("rate limits are off: start the simulator with limits= to count them")
        return self._limiter.stats(principal)

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
                if self._admit(h, path):
                    self._handle_list(h, path, m.group(1), query, body)
            finally:
                self._release()  # when nothing was sent (a dropped connection, an error while writing)
                with self._lock:
                    self._in_flight -= 1
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception as exc:  # a simulator bug must not hang the client: answer 500 and remember it
            self.internal_errors.append(traceback.format_exc())
            print(f"simulator: internal error: {exc!r}", file=sys.stderr)
            try:
                self._send(h, path, 500, ERRORS["Internal"].body())
            except OSError:
                h.close_connection = True

    def _admit(self, h: Handler, path: str) -> bool:
        """Pass the rate limits, or answer 429 and return False. Without valid credentials nobody is counted."""
        if self._limiter is None:
            return True
        try:
            principal = self._principal(h).key
        except Refusal:
            return True  # answered 401 further on, as without limits
        throttle = self._limiter.acquire(principal)
        if throttle is None:
            self._admitted.principal = principal
            return True
        headers = [] if throttle.retry_after_s is None else [("Retry-After", str(throttle.retry_after_s))]
        self._send(h, path, 429, THROTTLED.body(limit=throttle.limit, maximum=throttle.maximum), headers)
        return False

    def _release(self) -> None:
        """End this thread's admitted request, if any (idempotent)."""
        principal: str | None = getattr(self._admitted, "principal", None)
        if principal is not None and self._limiter is not None:
            self._admitted.principal = None
            self._limiter.release(principal)

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
            self._send(h, path, 500, ERRORS["Internal"].body())
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
        except Refusal as refusal:
            status, payload = refusal.error.status, refusal.body()
        if decision.kind == "truncate":
            self._count("truncate")
            self._send(h, path, status, payload, truncate=True)
        else:
            self._send(h, path, status, payload)

    def _principal(self, h: Handler) -> _Principal:
        auth = h.headers.get("Authorization")
        if not auth:
            raise Refusal("MissingCredentials")
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refusal("MissingCredentials")
        raw = token.encode("utf-8", "surrogateescape")
        if hmac.compare_digest(raw, _DEFAULT_TOKEN_BYTES):
            return _Principal(DEFAULT_TOKEN, True, None)
        if hmac.compare_digest(raw, _NO_PERMISSION_TOKEN_BYTES):
            return _Principal(NO_PERMISSION_TOKEN, False, None)
        grant = self._oauth.lookup(token)
        if grant is None:
            raise Refusal("InvalidToken")  # unknown, revoked or expired
        return _Principal(grant.client_id, True, grant.scopes)

    def _list_executions(self, h: Handler, raw_rid: str, query: str, body: bytes, decision: FaultDecision) -> bytes:
        principal = self._principal(h)
        if principal.scopes is not None and OBSERVABILITY_SCOPE not in principal.scopes:
            raise Refusal("ApiUsageDenied", missingScope=OBSERVABILITY_SCOPE)
        preview = parse_qs(query).get("preview", [])
        if not preview or preview[-1].lower() != "true":
            raise Refusal("ApiFeaturePreviewUsageOnly")
        rid = check_rid(unquote(raw_rid))
        if not principal.can_list:
            raise Refusal("ListExecutionsPermissionDenied", resourceRid=rid)
        try:
            profile = self.workload.profile(rid)
        except KeyError:
            raise Refusal("ResourceNotFound", resourceRid=rid) from None
        if not profile.readable:
            raise Refusal("ListExecutionsResourcePermissionDenied", resourceRid=rid)

        req = read_request(body)
        page_size = check_page_size(req.get("pageSize"))
        where = req.get("where")
        mask_fn: MaskFn | None = None
        if where is not None:
            mask_fn = compile_filter(profile, check_filter(where), self.workload.users)
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
                raise Refusal("InvalidPageToken") from None
            if mode == "k":
                cursor = position
            else:
                offset = position
        else:
            start_ms, end_ms = resolve_window(req, now_ms)
            if self._injector.config.unstable_tokens:
                offset = 0

        lower = start_ms if self.retention_ms is None else max(start_ms, now_ms - self.retention_ms)
        sels, n = scan(
            self.workload.block,
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
        # The request leaves the in-flight count before its answer does: a client that sends the next request
        # as soon as it holds this answer must find the slot free.
        self._release()
        self.log.append((path, status))  # before the write, so a client that got its answer sees it logged
        h.wfile.write(head + (body[: len(body) // 2] if truncate else body))


def serve(
    port: int,
    seed: int = 0,
    *,
    host: str = "127.0.0.1",
    faults: FaultConfig | None = None,
    scale: float = 1.0,
    limits: LimitsConfig | None = None,
) -> None:
    """Run a simulator in the foreground until interrupted (``exec-analytics simulate``).

    Prints the base URL, the bearer token, the OAuth client, the rate limits (when ``limits`` is given, see
    :class:`SimulatorServer`) and the readable resource RIDs, then blocks.
    """
    srv = SimulatorServer(Workload(seed=seed, scale=scale), faults=faults, host=host, port=port, limits=limits)
    srv.start()
    print(f"Foundry simulator listening on {srv.url}  (seed {seed}, scale {scale:g})")
    print(f"  FOUNDRY_HOSTNAME={srv.url}")
    print(f"  FOUNDRY_TOKEN={srv.token}")
    print(f"  OAuth client: FOUNDRY_CLIENT_ID={DEFAULT_CLIENT_ID} FOUNDRY_CLIENT_SECRET={DEFAULT_CLIENT_SECRET}")
    if limits is not None:
        for who, principal in (("bearer token", srv.token), ("OAuth client", DEFAULT_CLIENT_ID)):
            held = srv.rate_limits(principal)
            if held is None:
                print(f"  rate limits ({who}): none (measured only)")
            else:
                per_minute = "unlimited" if held.per_minute is None else f"{held.per_minute:,}"
                in_flight = "unlimited" if held.in_flight is None else f"{held.in_flight:,}"
                print(f"  rate limits ({who}): {per_minute} requests/minute, {in_flight} in flight; excess gets 429")
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
