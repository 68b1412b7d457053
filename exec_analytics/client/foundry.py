"""FoundryClient: the facade that checks arguments, authenticates, retries and returns pages.

One call, :meth:`FoundryClient.list_executions_page`, is one logical request to
``POST /api/v2/observability/resources/{rid}/listExecutions?preview=true``. Around it the client:

- checks every argument before anything goes on the wire;
- retries what may succeed on a second try (429, 503, other 5xx, dropped connections, timeouts, a
  truncated or non-JSON 200 body) with exponential backoff and full jitter, honouring ``Retry-After`` and
  ``QoS-Retry-Hint: do-not-retry``, bounded by a number of attempts and a total time budget that every
  attempt's deadline (headers and body) lies within (:mod:`.retry`, :mod:`.transport`);
- caps the decoded size of every answer (``max_response_bytes``);
- slows every thread down when one is throttled, through the shared :class:`ThrottleGate`;
- maps every other error, including an error body sent with a 200, to the typed exceptions of
  :mod:`exec_analytics.errors` at once (:mod:`.responses`);
- authenticates with a bearer token or OAuth2 client credentials (:mod:`.auth`), and never lets a secret,
  or a control character the server chose, reach a log record, a message or a repr.

Time is read from an injectable clock, and sessions come from an injectable factory, so tests can drive
retries and throttling without waiting and observe or alter what goes on the wire.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pandas as pd
import requests

from exec_analytics.client.auth import OAuthTokenSource, check_secret
from exec_analytics.client.clock import SYSTEM_CLOCK, Clock
from exec_analytics.client.limiter import Limiter
from exec_analytics.client.responses import (
    THROTTLE_STATUSES,
    Page,
    carries_error,
    error_for,
    make_page,
    parse_json,
)
from exec_analytics.client.retry import Outcome, RetryPolicy, decide, parse_retry_after
from exec_analytics.client.throttle import ThrottleGate
from exec_analytics.client.transport import Attempt, SessionPool, Stats, new_session, send
from exec_analytics.config import Settings, is_loopback_host, normalize_base_url
from exec_analytics.errors import (
    ExecAnalyticsError,
    ResponseTooLargeError,
    SchemaError,
    TransportError,
    safe_text,
)
from exec_analytics.filters import validate_filter
from exec_analytics.rids import validate_rid
from exec_analytics.timeutil import format_api_time, validate_window

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETRY_BUDGET",
    "MAX_PAGE_SIZE",
    "OAUTH_SCOPE",
    "USER_AGENT",
    "FoundryClient",
]

logger = logging.getLogger("exec_analytics.client")

#: Seconds to establish a TCP/TLS connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the server between bytes of the response, and for one attempt as a whole.
DEFAULT_READ_TIMEOUT = 60.0
#: Attempts per logical request, the first included (Palantir's SDK: 1 + 4 retries).
DEFAULT_MAX_ATTEMPTS = 5
#: Seconds from the first attempt of a logical request within which every attempt and every wait must end.
DEFAULT_RETRY_BUDGET = 60.0
#: Backoff slot in seconds: the k-th retry sleeps uniform(0, min(cap, base * 2**k)) (Palantir's SDK: 250 ms).
DEFAULT_BACKOFF_BASE = 0.25
#: Longest computed backoff in seconds (a larger ``Retry-After`` still wins).
DEFAULT_BACKOFF_CAP = 10.0
#: Idle keep-alive connections kept for reuse; size it to the number of worker threads.
DEFAULT_POOL_SIZE = 16
#: Refresh an OAuth token this many seconds before it expires (at most half its lifetime).
DEFAULT_REFRESH_MARGIN = 60.0
#: Largest decoded answer accepted: pages are about 50 kB, so 8 MiB leaves room without trusting the server.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: The OAuth2 scope listExecutions needs.
OAUTH_SCOPE = "api:observability-read"
#: The API's largest page.
MAX_PAGE_SIZE = 100

_OAUTH_PATH = "/multipass/api/oauth2/token"


def _version() -> str:
    # From the installed metadata, not the package: importing ``exec_analytics`` here would be a cycle.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("exec_analytics")
    except PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"exec-analytics/{_version()}"


def _positive(value: object, name: str, *, integer: bool = False, allow_zero: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


class FoundryClient:
    """HTTP client for Foundry's listExecutions endpoint; safe to share between threads.

    Parameters
    ----------
    hostname : str, optional
        Foundry hostname (``acme.palantirfoundry.com``, https implied) or base URL (``http://127.0.0.1:8765``;
        plain http only for loopback, and never through a proxy). Default: ``FOUNDRY_HOSTNAME``.
    token : str, optional
        Bearer token. Default: ``FOUNDRY_TOKEN``, unless OAuth client credentials are passed explicitly.
        It must be sendable as a header (printable latin-1, no whitespace).
    client_id, client_secret : str, optional
        OAuth2 client credentials (scope ``api:observability-read``), used when no token is given.
        Default: ``FOUNDRY_CLIENT_ID`` / ``FOUNDRY_CLIENT_SECRET``. Tokens come from
        ``POST {base}/multipass/api/oauth2/token`` and are refreshed ``refresh_margin`` seconds before they
        expire, and once more if the server answers 401.
    scope : str
        OAuth2 scope to request.
    connect_timeout, read_timeout : float
        Seconds (defaults 10 and 60). ``read_timeout`` bounds each socket read and also each attempt as a
        whole, headers and body; both are cut to what is left of the retry budget.
    max_attempts : int
        Attempts per logical request, the first included (default 5).
    retry_budget : float
        Seconds from the first attempt of a logical request within which every attempt and every wait must
        end (default 60): a server trickling its answer ends in :class:`~exec_analytics.errors.TransportError`
        within it. A retry whose backoff would end past the budget is not made. A pause of the throttle gate
        before the first attempt comes on top, and is itself never longer than one budget.
    backoff_base, backoff_cap : float
        Retry ``k`` (0-based) sleeps ``uniform(0, min(backoff_cap, backoff_base * 2**k))`` seconds, or
        longer if the server's ``Retry-After`` asks for more (defaults 0.25 and 10).
    pool_size : int
        Keep-alive connections kept for reuse: one per concurrent worker (default 16). More threads still
        work; their extra connections are closed after use.
    refresh_margin : float
        Seconds before expiry at which an OAuth token is refreshed (default 60, at most half its lifetime).
    max_response_bytes : int
        Largest answer accepted, measured after decompression (default 8 MiB); a larger one raises
        :class:`~exec_analytics.errors.ResponseTooLargeError` without being held in memory.
    settings : Settings, optional
        Where missing arguments come from (default :meth:`Settings.from_env`).
    clock : Clock, optional
        An object with ``monotonic()`` and ``sleep(seconds)`` used for every deadline, backoff, throttle
        pause and token expiry (default: the system clock).
    session_factory : callable, optional
        Returns a new :class:`requests.Session` for the pool (default
        :func:`exec_analytics.client.new_session`; a factory of your own should start from it to keep the
        attempt deadline on the response headers).
    limiter : Limiter, optional
        Paces every listExecutions attempt to a token's requests per minute and in flight (see
        :mod:`exec_analytics.client.limiter`); share one between clients of the same token. Its waits come
        on top of the retry budget. Default: none (only the throttle gate reacts to 429s).

    Raises
    ------
    ValueError, TypeError
        On a missing or invalid hostname, missing credentials, a token that cannot be sent as a header, or
        bad numeric settings.

    Attributes
    ----------
    base_url : str
        The normalised base URL.
    gate : ThrottleGate
        Shared by every thread using this client: a 429/503 anywhere pauses them all.
    limiter : Limiter or None
        The limiter given, if any.
    """

    def __init__(
        self,
        hostname: str | None = None,
        token: str | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str = OAUTH_SCOPE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_budget: float = DEFAULT_RETRY_BUDGET,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_cap: float = DEFAULT_BACKOFF_CAP,
        pool_size: int = DEFAULT_POOL_SIZE,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        settings: Settings | None = None,
        clock: Clock | None = None,
        session_factory: Callable[[], requests.Session] | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        # Secrets are set first so that __repr__ works even if validation below fails.
        self._token: str | None = None
        self._oauth: OAuthTokenSource | None = None
        env = settings if settings is not None else Settings.from_env()

        host = hostname if hostname is not None else env.hostname
        if host is None:
            raise ValueError("no Foundry hostname: pass hostname= or set FOUNDRY_HOSTNAME")
        self.base_url = normalize_base_url(host)

        self.connect_timeout = float(_positive(connect_timeout, "connect_timeout"))
        self.read_timeout = float(_positive(read_timeout, "read_timeout"))
        self.max_attempts = int(_positive(max_attempts, "max_attempts", integer=True))
        self.retry_budget = float(_positive(retry_budget, "retry_budget"))
        self.backoff_base = float(_positive(backoff_base, "backoff_base", allow_zero=True))
        self.backoff_cap = float(_positive(backoff_cap, "backoff_cap", allow_zero=True))
        self.pool_size = int(_positive(pool_size, "pool_size", integer=True))
        self.max_response_bytes = int(_positive(max_response_bytes, "max_response_bytes", integer=True))
        refresh_margin = float(_positive(refresh_margin, "refresh_margin", allow_zero=True))
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError("scope must be a non-empty string")
        self._clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self._stats = Stats()

        # Explicit arguments win over the environment; within each source a token wins over OAuth.
        if token is not None and (client_id is not None or client_secret is not None):
            raise ValueError("pass either token= or client_id=/client_secret=, not both")
        if token is None and client_id is None and client_secret is None:
            token, client_id, client_secret = env.token, None, None
            if token is None:
                client_id, client_secret = env.client_id, env.client_secret
        if token is not None:
            self._token = check_secret(token, "token")
        elif client_id is not None or client_secret is not None:
            if client_id is None or client_secret is None:
                raise ValueError("OAuth needs both client_id and client_secret (or FOUNDRY_CLIENT_ID/_SECRET)")
            self._oauth = OAuthTokenSource(
                self._token_request,
                check_secret(client_id, "client_id"),
                check_secret(client_secret, "client_secret"),
                scope.strip(),
                refresh_margin,
                clock=self._clock,
                on_refresh=lambda: self._stats.add("token_refreshes"),
            )
        else:
            raise ValueError(
                "no Foundry credentials: pass token= (or set FOUNDRY_TOKEN), or client_id= and client_secret= "
                "(or set FOUNDRY_CLIENT_ID and FOUNDRY_CLIENT_SECRET)"
            )

        self.gate = ThrottleGate(self._clock)
        if limiter is not None and not isinstance(limiter, Limiter):
            raise TypeError(f"limiter must be a Limiter or None, got {type(limiter).__name__}")
        self.limiter = limiter
        # A tenth of the budget, at most 1 s, is the least time worth giving a retry.
        min_attempt = min(1.0, self.retry_budget / 10)
        self._policy = RetryPolicy(
            self.max_attempts, self.retry_budget, self.backoff_base, self.backoff_cap, min_attempt
        )
        self._rng = random.Random()
        self._pool = SessionPool(
            session_factory if session_factory is not None else new_session,
            self.pool_size,
            {"User-Agent": USER_AGENT, "Accept": "application/json"},
            # A proxy would see a plain-http request, bearer token included, in clear.
            ignore_environment=is_loopback_host(urlsplit(self.base_url).hostname or ""),
        )

    # ------------------------------------------------------------------ public

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters.

        Keys: ``requests`` (HTTP requests sent, token requests included), ``retries`` (attempts beyond the
        first), ``throttled`` (429/503 answers), ``bytes_received`` (and its alias ``bytes``: decoded response
        body bytes), ``token_refreshes`` (OAuth tokens fetched), ``transport_errors`` (attempts that got no
        usable response).
        """
        return self._stats.snapshot()

    @property
    def auth_kind(self) -> str:
        """``"token"`` or ``"oauth"``."""
        return "oauth" if self._oauth is not None else "token"

    def list_executions_page(
        self,
        resource_rid: str,
        *,
        start: Any,
        end: Any,
        where: Any = None,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
    ) -> Page:
        """Fetch one page of executions that started in ``[start, end)``, newest first.

        Parameters
        ----------
        resource_rid : str
            Function or automation RID.
        start, end : str, datetime or pandas.Timestamp
            Timezone-aware bounds of the half-open window; naive times are rejected.
        where : mapping or object with ``to_dict()``, optional
            An ExecutionFilter (see :mod:`exec_analytics.filters`), validated locally.
        page_size : int
            1..100; a suggestion the server may undercut.
        page_token : str, optional
            ``next_page_token`` of the previous page of the *same* request.

        Returns
        -------
        Page
            ``{}`` is an empty last page. An empty ``nextPageToken`` ends the paging, with a
            ``RuntimeWarning`` when the page is full (more may remain).

        Raises
        ------
        TypeError, ValueError
            On bad arguments, before any request is made.
        ApiError
            Its subclasses per docs/endpoint.md (InvalidFilterError, AuthenticationError, PermissionDeniedError,
            ResourceNotFoundError, EndpointUnavailableError, RateLimitedError, ServerError, …), also for an
            error body (``errorCode``/``errorName``) sent with a 200.
        TransportError
            When no usable response arrived within the attempts and the retry budget;
            ResponseTooLargeError (a subclass) when the answer exceeds ``max_response_bytes``.
        SchemaError
            When a 200 body is JSON but not a listExecutions response.
        """
        url, s, e, where_dict = self._prepare(resource_rid, start, end, where, page_size, page_token)
        parsed, content = self._list(url, _request_body(s, e, page_size, where_dict, page_token), resource_rid)
        return make_page(parsed, content, resource_rid, page_size)

    def iter_pages(
        self,
        resource_rid: str,
        *,
        start: Any,
        end: Any,
        where: Any = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[Page]:
        """Yield every page of one window, sequentially, following ``nextPageToken``.

        Arguments are checked now, not at the first ``next()``. A page token that comes back a second time
        would loop forever: it raises :class:`~exec_analytics.errors.ExecAnalyticsError` instead.

        Parameters
        ----------
        resource_rid, start, end, where, page_size
            As for :meth:`list_executions_page`.

        Returns
        -------
        Iterator[Page]
        """
        url, s, e, where_dict = self._prepare(resource_rid, start, end, where, page_size, None)

        def pages() -> Iterator[Page]:
            seen: set[str] = set()
            token: str | None = None
            n = 0
            while True:
                parsed, content = self._list(url, _request_body(s, e, page_size, where_dict, token), resource_rid)
                page = make_page(parsed, content, resource_rid, page_size)
                n += 1
                yield page
                token = page.next_page_token
                if token is None:
                    return
                if token in seen:
                    raise ExecAnalyticsError(
                        f"listExecutions of resource {resource_rid} returned a page token already seen after "
                        f"{n} pages: the server's paging is cycling; stopping instead of looping forever"
                    )
                seen.add(token)

        return pages()

    def close(self) -> None:
        """Close every pooled connection. The client cannot be used afterwards."""
        self._pool.close()

    def __enter__(self) -> FoundryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        base = getattr(self, "base_url", None)
        oauth = getattr(self, "_oauth", None)
        auth = f"oauth client {oauth.client_id!r}" if oauth is not None else "bearer token ***"
        return f"FoundryClient(base_url={base!r}, auth={auth!r})"

    __str__ = __repr__

    # ------------------------------------------------------------------ request building

    def _prepare(
        self, resource_rid: Any, start: Any, end: Any, where: Any, page_size: Any, page_token: Any
    ) -> tuple[str, pd.Timestamp, pd.Timestamp, dict[str, Any] | None]:
        """Check every argument (before any request) and return ``(url, start, end, where)``."""
        if self._pool.closed:
            raise ExecAnalyticsError("this FoundryClient is closed")
        validate_rid(resource_rid)
        s, e = validate_window(start, end)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an int in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        if page_token is not None and (not isinstance(page_token, str) or not page_token):
            raise ValueError("page_token must be None or the non-empty next_page_token of the previous page")
        where_dict = _coerce_where(where)
        url = f"{self.base_url}/api/v2/observability/resources/{quote(resource_rid, safe='')}/listExecutions"
        return url + "?preview=true", s, e, where_dict

    # ------------------------------------------------------------------ the retry loop

    def _secrets(self) -> tuple[str | None, ...]:
        if self._oauth is not None:
            return self._oauth.secrets()
        return (self._token,)

    def _list(self, url: str, body: bytes, resource_rid: str) -> tuple[dict[str, Any], bytes]:
        """One logical listExecutions request; returns the parsed body and the raw bytes."""
        out, parsed = self._send(url, body, "application/json", resource_rid=resource_rid)
        if not isinstance(parsed, dict):
            raise SchemaError(
                f"listExecutions of resource {resource_rid} returned JSON that is not an object "
                f"({type(parsed).__name__})"
            )
        return parsed, out.content

    def _token_request(self, form: dict[str, str]) -> Any:
        """POST the client-credentials form to the token endpoint (same retries); returns the parsed body."""
        return self._send(self.base_url + _OAUTH_PATH, form, "application/x-www-form-urlencoded")[1]

    def _send(self, url: str, data: Any, content_type: str, *, resource_rid: str | None = None) -> tuple[Attempt, Any]:
        """One logical request with retries, throttle gate and OAuth refresh; returns a 200 and its JSON.

        ``resource_rid`` is None for the OAuth token endpoint, which is sent without a bearer token.
        """
        clock = self._clock
        path = url[len(self.base_url) :].partition("?")[0]
        self.gate.wait()
        started = clock.monotonic()
        deadline = started + self.retry_budget
        attempts = 0  # attempts that count against max_attempts
        auth_retried = False
        while True:
            if attempts:
                self.gate.wait()
                if clock.monotonic() >= deadline:
                    give_up = "retry_budget"
                    break
            token = None
            if resource_rid is not None:
                token = self._oauth.get() if self._oauth is not None else self._token
            attempts += 1
            # Only listExecutions counts toward the rate limits, not the OAuth token endpoint.
            limiter = self.limiter if resource_rid is not None else None
            if limiter is not None:
                # Pacing ourselves is not the server failing: the wait does not eat into the retry budget.
                waited = limiter.acquire()
                started += waited
                deadline += waited
            try:
                out = self._attempt(url, data, content_type, token, deadline, path, attempts)
            finally:
                if limiter is not None:
                    limiter.release()
            kind, parsed = self._classify(out, path, resource_rid)
            if kind is None:
                return out, parsed
            if out.status == 401 and token is not None and self._oauth is not None and not auth_retried:
                # The token may have been revoked or expired early: refresh once and retry at once.
                auth_retried = True
                attempts -= 1
                self._oauth.invalidate(token)
                logger.debug("POST %s -> 401, refreshing the OAuth token and retrying once", path)
                continue
            if kind is Outcome.FATAL and out.status is not None:
                raise self._error(out.status, out.headers, parsed, resource_rid, None)
            decision = decide(
                kind,
                attempt=attempts,
                elapsed=clock.monotonic() - started,
                policy=self._policy,
                jitter=self._rng.random(),
                retry_after=parse_retry_after(out.headers.get("Retry-After")) if kind is Outcome.THROTTLED else None,
                do_not_retry=out.headers.get("QoS-Retry-Hint", "").strip().lower() == "do-not-retry",
            )
            if decision.reason == "do-not-retry":
                hint = "server sent QoS-Retry-Hint: do-not-retry; not retried"
                raise self._error(out.status or 0, out.headers, parsed, resource_rid, hint)
            if kind is Outcome.THROTTLED:
                # Every thread of this client pauses too (this one at the gate on its next loop), even when
                # this request gives up; never longer than one retry budget, whatever Retry-After says.
                self.gate.trip(min(decision.delay, self.retry_budget))
                logger.debug("POST %s throttled (HTTP %s); all workers pause %.2f s", path, out.status, decision.delay)
            if not decision.retry:
                give_up = decision.reason
                break
            self._stats.add("retries")
            if kind is not Outcome.THROTTLED:
                clock.sleep(decision.delay)

        detail = (
            f"POST {path} gave up ({give_up}) after {attempts} attempt{'s' if attempts != 1 else ''} in "
            f"{clock.monotonic() - started:.1f} s (max_attempts={self.max_attempts}, "
            f"retry_budget={self.retry_budget:g} s)"
        )
        if out.status is None:
            raise TransportError(self._transport_message(path, resource_rid, out.failure, detail))
        raise self._error(out.status, out.headers, parse_json(out.content)[1], resource_rid, detail)

    def _attempt(
        self, url: str, data: Any, content_type: str, token: str | None, deadline: float, path: str, n: int
    ) -> Attempt:
        """One attempt on a pooled session, within the request's deadline and this attempt's own."""
        t0 = self._clock.monotonic()
        session = self._pool.checkout()
        out = send(
            session,
            url,
            data=data,
            headers={"Content-Type": content_type},
            token=token,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            deadline=min(deadline, t0 + self.read_timeout),
            clock=self._clock,
            max_bytes=self.max_response_bytes,
        )
        self._pool.checkin(session, broken=out.failure is not None)
        self._stats.add("requests")
        self._stats.add("bytes_received", len(out.content))
        logger.debug(
            "POST %s -> %s (%d bytes, %.1f ms, attempt %d)",
            path,
            out.status if out.status is not None else "no response",
            len(out.content),
            (self._clock.monotonic() - t0) * 1000,
            n,
        )
        return out

    def _classify(self, out: Attempt, path: str, resource_rid: str | None) -> tuple[Outcome | None, Any]:
        """``(None, json)`` for a usable 200, else what kind of failure it is (and the JSON, if any).

        Raises at once what no retry can change: a body over the size limit, an error body sent with a 200.
        """
        if out.status is None:
            self._stats.add("transport_errors")
            if out.too_large:
                raise ResponseTooLargeError(self._transport_message(path, resource_rid, out.failure, None))
            return (Outcome.TRANSIENT if out.retryable else Outcome.FATAL), None
        parse_ok, parsed = parse_json(out.content)
        if out.status == 200:
            if parse_ok and carries_error(parsed):
                raise self._error(200, out.headers, parsed, resource_rid, None)
            if parse_ok:
                return None, parsed
            # A 200 whose body is cut short or not JSON: the connection broke mid-body.
            self._stats.add("transport_errors")
            out.failure = f"incomplete or non-JSON 200 body ({len(out.content)} bytes)"
            out.status = None
            return Outcome.TRANSIENT, None
        if out.status in THROTTLE_STATUSES:
            self._stats.add("throttled")
            return Outcome.THROTTLED, parsed
        if out.status >= 500:
            return Outcome.SERVER_ERROR, parsed
        return Outcome.FATAL, parsed

    def _transport_message(self, path: str, resource_rid: str | None, failure: str | None, detail: str | None) -> str:
        where = f" (resource {resource_rid})" if resource_rid else ""
        text = f"POST {path}{where} failed: {failure}" + (f"; {detail}" if detail else "")
        return safe_text(text, *self._secrets())

    def _error(
        self, status: int, headers: Any, parsed: Any, resource_rid: str | None, detail: str | None
    ) -> ExecAnalyticsError:
        return error_for(
            status,
            headers,
            parsed,
            resource_rid=resource_rid,
            detail=detail,
            secrets=self._secrets(),
            oauth_client_id=self._oauth.client_id if self._oauth is not None else None,
        )


# ---------------------------------------------------------------------- helpers


def _coerce_where(where: Any) -> dict[str, Any] | None:
    if where is None:
        return None
    if not isinstance(where, Mapping):
        to_dict = getattr(where, "to_dict", None)
        if not callable(to_dict):
            raise TypeError(
                f"where must be an ExecutionFilter dict or an object with to_dict(), got {type(where).__name__}"
            )
        where = to_dict()
    return validate_filter(where)


def _request_body(
    start: pd.Timestamp, end: pd.Timestamp, page_size: int, where: dict[str, Any] | None, page_token: str | None
) -> bytes:
    body: dict[str, Any] = {
        "startTime": format_api_time(start),
        "endTime": format_api_time(end),
        "pageSize": page_size,
    }
    if where is not None:
        body["where"] = where
    if page_token is not None:
        body["pageToken"] = page_token
    return orjson.dumps(body)
