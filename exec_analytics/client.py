"""FoundryClient: the only module that speaks HTTP (and the only one that imports requests).

One call, :meth:`FoundryClient.list_executions_page`, is one logical request to
``POST /api/v2/observability/resources/{rid}/listExecutions?preview=true``. Around it the client:

- checks every argument before anything goes on the wire;
- retries what may succeed on a second try (429, 503, other 5xx, dropped connections, read timeouts, a
  truncated or non-JSON 200 body) with exponential backoff and full jitter, honouring ``Retry-After`` and
  ``QoS-Retry-Hint: do-not-retry``, bounded by a number of attempts and a total time budget;
- slows every thread down when one is throttled, through the shared :class:`ThrottleGate`;
- maps every other error to the typed exceptions of :mod:`exec_analytics.errors` at once;
- authenticates with a bearer token or OAuth2 client credentials (refreshed before expiry, and once more
  on a 401), and never lets a secret reach a log record, a message or a repr.

Defaults (all keyword arguments of :class:`FoundryClient`): connect timeout 10 s, read timeout 60 s, 5 attempts
(1 + 4 retries, as Palantir's SDK), retry budget 60 s, backoff base 0.25 s and cap 10 s, 16 pooled connections,
OAuth refresh margin 60 s.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import orjson
import pandas as pd
import requests
from requests.adapters import HTTPAdapter

from exec_analytics.config import Settings, normalize_base_url
from exec_analytics.errors import (
    ApiError,
    AuthenticationError,
    ExecAnalyticsError,
    PermissionDeniedError,
    RateLimitedError,
    SchemaError,
    ServerError,
    TransportError,
    api_error_from_response,
    redact,
)
from exec_analytics.filters import validate_filter
from exec_analytics.rids import validate_rid
from exec_analytics.timeutil import format_api_time, validate_window

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_CAP",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETRY_BUDGET",
    "MAX_PAGE_SIZE",
    "OAUTH_SCOPE",
    "USER_AGENT",
    "FoundryClient",
    "Page",
    "ThrottleGate",
    "parse_retry_after",
]

logger = logging.getLogger("exec_analytics.client")

#: Seconds to establish a TCP/TLS connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the server between bytes of the response.
DEFAULT_READ_TIMEOUT = 60.0
#: Attempts per logical request, the first included (Palantir's SDK: 1 + 4 retries).
DEFAULT_MAX_ATTEMPTS = 5
#: Seconds from the first attempt within which every retry of one logical request must finish.
DEFAULT_RETRY_BUDGET = 60.0
#: Backoff slot in seconds: the k-th retry sleeps uniform(0, min(cap, base * 2**k)) (Palantir's SDK: 250 ms).
DEFAULT_BACKOFF_BASE = 0.25
#: Longest computed backoff in seconds (a larger ``Retry-After`` still wins).
DEFAULT_BACKOFF_CAP = 10.0
#: Idle keep-alive connections kept for reuse; size it to the number of worker threads.
DEFAULT_POOL_SIZE = 16
#: Refresh an OAuth token this many seconds before it expires (at most half its lifetime).
DEFAULT_REFRESH_MARGIN = 60.0
#: The OAuth2 scope listExecutions needs.
OAUTH_SCOPE = "api:observability-read"
#: The API's largest page.
MAX_PAGE_SIZE = 100

_THROTTLE_STATUSES = frozenset({429, 503})
_OAUTH_PATH = "/multipass/api/oauth2/token"
# An unparseable body is echoed into messages up to this many characters (after redaction).
_SNIPPET = 200


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("exec_analytics")
    except PackageNotFoundError:
        import exec_analytics

        return str(getattr(exec_analytics, "__version__", "0+unknown"))


USER_AGENT = f"exec-analytics/{_version()}"


@dataclass(frozen=True)
class Page:
    """One page of listExecutions, as received.

    Attributes
    ----------
    body : bytes
        The complete JSON body, checked to parse, on one line (JSON allows a raw newline only as
        whitespace, so newlines are replaced by spaces): pages joined by ``b"\\n"`` are valid NDJSON.
    next_page_token : str or None
        ``nextPageToken``; None on the last page.
    n_executions : int
        Number of executions in ``data`` (0 when ``data`` is missing).
    oldest_start : pandas.Timestamp or None
        ``startTime`` (UTC) of the last execution on the page, which is the oldest when results come newest
        first, as documented; None for an empty page.
    newest_start : pandas.Timestamp or None
        ``startTime`` (UTC) of the first execution on the page; None for an empty page.
    ordered : bool
        Whether the page's start times never increase from one execution to the next (the documented
        "newest first"). Paging relies on the order to bound what is still unread, so it checks this.
    """

    body: bytes
    next_page_token: str | None
    n_executions: int
    oldest_start: pd.Timestamp | None
    newest_start: pd.Timestamp | None = None
    ordered: bool = True

    def __repr__(self) -> str:
        # The body can be ~50 kB: show its size, not its content.
        return (
            f"Page(n_executions={self.n_executions}, oldest_start={self.oldest_start!r}, "
            f"next_page_token={'…' if self.next_page_token else None}, body=<{len(self.body)} bytes>)"
        )


class ThrottleGate:
    """A shared pause: when one request is throttled, every thread of the client waits before its next request.

    ``trip(delay)`` closes the gate until ``now + delay`` (a later trip can only extend it); ``wait()``
    blocks until it is open. The client calls ``wait()`` before every attempt and ``trip()`` on every
    429/503, so one throttled worker slows all workers down instead of each discovering the limit on its
    own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_at = 0.0
        self._trips = 0
        self._waited = 0.0

    def trip(self, delay: float) -> None:
        """Keep the gate closed for at least ``delay`` more seconds."""
        with self._lock:
            self._trips += 1
            self._open_at = max(self._open_at, time.monotonic() + max(0.0, delay))

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._open_at - time.monotonic())

    def wait(self) -> float:
        """Block until the gate is open; return the seconds waited."""
        waited = 0.0
        while True:
            delay = self.remaining()
            if delay <= 0:
                break
            time.sleep(delay)
            waited += delay
        if waited:
            with self._lock:
                self._waited += waited
        return waited

    @property
    def trips(self) -> int:
        """How many times the gate was closed."""
        with self._lock:
            return self._trips

    @property
    def total_wait(self) -> float:
        """Seconds all threads spent waiting at the gate, summed."""
        with self._lock:
            return self._waited

    def __repr__(self) -> str:
        return f"ThrottleGate(trips={self.trips}, remaining={self.remaining():.3f}s)"


class _Stats:
    """Thread-safe counters."""

    _NAMES = ("requests", "retries", "throttled", "bytes_received", "token_refreshes", "transport_errors")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c = dict.fromkeys(self._NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._c)
        out["bytes"] = out["bytes_received"]  # the short name of the module contract
        return out


class _BearerAuth(requests.auth.AuthBase):
    """Set the Authorization header at send time.

    Passing auth explicitly (rather than a header) also stops requests from replacing it with ~/.netrc
    credentials, and requests drops it on a redirect to another host.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


@dataclass
class _Outcome:
    """What one attempt produced, kept outside ``except`` blocks so no requests exception is chained."""

    status: int | None = None
    headers: Mapping[str, str] | None = None
    content: bytes = b""
    parsed: Any = None
    parse_ok: bool = False
    failure: str | None = None  # transport failure description (already redacted)
    retryable_transport: bool = True


def _check_secret(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value or any(c.isspace() or ord(c) < 32 for c in value):
        # Never echo the value: it is a secret.
        raise ValueError(f"{name} is empty or contains whitespace/control characters")
    return value


def _positive(value: object, name: str, *, integer: bool = False, allow_zero: bool = False) -> Any:
    ok_type = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            when = when.replace(tzinfo=timezone.utc)
        current = datetime.now(timezone.utc).timestamp() if now is None else now
        seconds = when.timestamp() - current
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class _OAuthTokenSource:
    """Client-credentials tokens, fetched lazily, refreshed before expiry, one refresh at a time."""

    def __init__(self, client: FoundryClient, client_id: str, client_secret: str, scope: str, margin: float) -> None:
        self._client = client
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._margin = margin
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    @property
    def secret(self) -> str:
        return self._secret

    def get(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, used: str) -> None:
        """Forget ``used`` if it is still the current token (other threads may have refreshed already)."""
        with self._lock:
            if self._token == used:
                self._token = None

    @property
    def current(self) -> str | None:
        return self._token

    def _fetch(self) -> None:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
            "scope": self.scope,
        }
        started = time.monotonic()
        body = self._client._token_request(form)
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                "OAuth token endpoint answered without an access_token", status=200, error_name="InvalidTokenResponse"
            )
        expires_in = body.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            expires_in = 3600.0  # the usual Foundry lifetime; a 401 still triggers a refresh if wrong
        # Refresh early, but never earlier than half-way: a short-lived token must still be reused.
        margin = min(self._margin, expires_in / 2)
        self._token = token
        self._refresh_at = started + expires_in - margin
        self._client._stats.add("token_refreshes")
        logger.debug("OAuth token obtained for client %s, expires in %.0f s", self.client_id, expires_in)


class FoundryClient:
    """HTTP client for Foundry's listExecutions endpoint; safe to share between threads.

    Parameters
    ----------
    hostname : str, optional
        Foundry hostname (``acme.palantirfoundry.com``, https implied) or base URL (``http://127.0.0.1:8765``;
        plain http only for loopback). Default: ``FOUNDRY_HOSTNAME``.
    token : str, optional
        Bearer token. Default: ``FOUNDRY_TOKEN``, unless OAuth client credentials are passed explicitly.
    client_id, client_secret : str, optional
        OAuth2 client credentials (scope ``api:observability-read``), used when no token is given.
        Default: ``FOUNDRY_CLIENT_ID`` / ``FOUNDRY_CLIENT_SECRET``. Tokens come from
        ``POST {base}/multipass/api/oauth2/token`` and are refreshed ``refresh_margin`` seconds before they
        expire, and once more if the server answers 401.
    scope : str
        OAuth2 scope to request.
    connect_timeout, read_timeout : float
        Seconds (defaults 10 and 60). The read timeout of an attempt is also cut to the retry budget left.
    max_attempts : int
        Attempts per logical request, the first included (default 5).
    retry_budget : float
        Seconds from the first attempt within which all retries must finish (default 60). A retry whose
        backoff would end past the budget is not made.
    backoff_base, backoff_cap : float
        Retry ``k`` (0-based) sleeps ``uniform(0, min(backoff_cap, backoff_base * 2**k))`` seconds, or
        longer if the server's ``Retry-After`` asks for more (defaults 0.25 and 10).
    pool_size : int
        Keep-alive connections kept for reuse: one per concurrent worker (default 16). More threads still
        work; their extra connections are closed after use.
    refresh_margin : float
        Seconds before expiry at which an OAuth token is refreshed (default 60, at most half its lifetime).
    settings : Settings, optional
        Where missing arguments come from (default :meth:`Settings.from_env`).

    Raises
    ------
    ValueError, TypeError
        On a missing or invalid hostname, missing credentials, or bad numeric settings.

    Attributes
    ----------
    base_url : str
        The normalised base URL.
    gate : ThrottleGate
        Shared by every thread using this client: a 429/503 anywhere pauses them all.
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
        settings: Settings | None = None,
    ) -> None:
        # Secrets are set first so that __repr__ works even if validation below fails.
        self._token: str | None = None
        self._oauth: _OAuthTokenSource | None = None
        self._closed = False
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
        refresh_margin = float(_positive(refresh_margin, "refresh_margin", allow_zero=True))
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError("scope must be a non-empty string")

        # Explicit arguments win over the environment; within each source a token wins over OAuth.
        if token is not None and (client_id is not None or client_secret is not None):
            raise ValueError("pass either token= or client_id=/client_secret=, not both")
        if token is None and client_id is None and client_secret is None:
            token, client_id, client_secret = env.token, None, None
            if token is None:
                client_id, client_secret = env.client_id, env.client_secret
        if token is not None:
            self._token = _check_secret(token, "token")
        elif client_id is not None or client_secret is not None:
            if client_id is None or client_secret is None:
                raise ValueError("OAuth needs both client_id and client_secret (or FOUNDRY_CLIENT_ID/_SECRET)")
            self._oauth = _OAuthTokenSource(
                self,
                _check_secret(client_id, "client_id"),
                _check_secret(client_secret, "client_secret"),
                scope.strip(),
                refresh_margin,
            )
        else:
            raise ValueError(
                "no Foundry credentials: pass token= (or set FOUNDRY_TOKEN), or client_id= and client_secret= "
                "(or set FOUNDRY_CLIENT_ID and FOUNDRY_CLIENT_SECRET)"
            )

        self.gate = ThrottleGate()
        self._stats = _Stats()
        self._rng = random.Random()
        self._pool_lock = threading.Lock()
        self._idle: list[requests.Session] = []
        self._all_sessions: set[requests.Session] = set()

    # ------------------------------------------------------------------ public

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters.

        Keys: ``requests`` (HTTP requests sent, token requests included), ``retries`` (attempts beyond the
        first), ``throttled`` (429/503 answers), ``bytes_received`` (and its alias ``bytes``: response body
        bytes), ``token_refreshes`` (OAuth tokens fetched), ``transport_errors`` (attempts that got no usable
        response).
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

        Raises
        ------
        TypeError, ValueError
            On bad arguments, before any request is made.
        ApiError
            Its subclasses per API.md (InvalidFilterError, AuthenticationError, PermissionDeniedError,
            ResourceNotFoundError, EndpointUnavailableError, RateLimitedError, ServerError, …).
        TransportError
            When no usable response arrived within the attempts and the retry budget.
        SchemaError
            When a 200 body is JSON but not a listExecutions response.
        """
        url, s, e, where_dict = self._prepare(resource_rid, start, end, where, page_size, page_token)
        parsed, content = self._call(url, _request_body(s, e, page_size, where_dict, page_token), resource_rid)
        return _make_page(parsed, content, resource_rid)

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
                body = _request_body(s, e, page_size, where_dict, token)
                parsed, content = self._call(url, body, resource_rid)
                page = _make_page(parsed, content, resource_rid)
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
        with self._pool_lock:
            self._closed = True
            sessions = list(self._all_sessions)
            self._all_sessions.clear()
            self._idle.clear()
        for s in sessions:
            s.close()

    def __enter__(self) -> FoundryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        base = getattr(self, "base_url", None)
        if getattr(self, "_oauth", None) is not None:
            auth = f"oauth client {self._oauth.client_id!r}"  # type: ignore[union-attr]
        else:
            auth = "bearer token ***"
        return f"FoundryClient(base_url={base!r}, auth={auth!r})"

    __str__ = __repr__

    # ------------------------------------------------------------------ request building

    def _prepare(
        self, resource_rid: Any, start: Any, end: Any, where: Any, page_size: Any, page_token: Any
    ) -> tuple[str, pd.Timestamp, pd.Timestamp, dict[str, Any] | None]:
        """Check every argument (before any request) and return ``(url, start, end, where)``."""
        if self._closed:
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

    # ------------------------------------------------------------------ sessions

    def _checkout(self) -> requests.Session:
        with self._pool_lock:
            if self._closed:
                raise ExecAnalyticsError("this FoundryClient is closed")
            if self._idle:
                return self._idle.pop()
            session = requests.Session()
            # One connection per session: a session is used by one thread at a time, and the pool of
            # sessions is what scales with the number of workers.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            self._all_sessions.add(session)
            return session

    def _checkin(self, session: requests.Session, *, broken: bool) -> None:
        with self._pool_lock:
            if not broken and not self._closed and len(self._idle) < self.pool_size:
                self._idle.append(session)
                return
            self._all_sessions.discard(session)
        session.close()

    # ------------------------------------------------------------------ the retry loop

    def _secrets(self) -> tuple[str | None, ...]:
        if self._oauth is not None:
            return (self._oauth.current, self._oauth.secret)
        return (self._token,)

    def _attempt(self, url: str, *, data: Any, headers: dict[str, str], auth: str | None, timeout: float) -> _Outcome:
        """Send one HTTP request; never raises a requests exception (they become ``_Outcome.failure``)."""
        session = self._checkout()
        broken = False
        out = _Outcome()
        try:
            resp = session.post(
                url,
                data=data,
                headers=headers,
                auth=_BearerAuth(auth) if auth is not None else None,
                timeout=(min(self.connect_timeout, timeout), timeout),
                allow_redirects=False,
            )
            out.status = resp.status_code
            out.headers = resp.headers
            out.content = resp.content
        except requests.exceptions.SSLError as exc:
            broken = True
            # A certificate problem does not heal by retrying.
            out.failure = f"TLS error: {type(exc).__name__}"
            out.retryable_transport = False
        except requests.exceptions.Timeout as exc:
            broken = True
            kind = "connect timeout" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read timeout"
            out.failure = f"{kind} after {timeout:.1f} s"
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            broken = True
            out.failure = f"{type(exc).__name__}: {_describe(exc)}"
        except requests.exceptions.ContentDecodingError as exc:
            broken = True
            out.failure = f"undecodable response body: {type(exc).__name__}"
        except requests.exceptions.RequestException as exc:
            broken = True
            out.failure = f"{type(exc).__name__}: {_describe(exc)}"
            out.retryable_transport = False
        finally:
            self._checkin(session, broken=broken)
        self._stats.add("requests")
        if out.failure is not None:
            out.failure = redact(out.failure, *self._secrets())
            self._stats.add("transport_errors")
            return out
        self._stats.add("bytes_received", len(out.content))
        if out.content:
            try:
                out.parsed = orjson.loads(out.content)
                out.parse_ok = True
            except orjson.JSONDecodeError:
                out.parse_ok = False
        return out

    def _backoff(self, retry_index: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2.0**retry_index))
        return self._rng.uniform(0.0, ceiling)

    def _call(self, url: str, body: bytes, resource_rid: str) -> tuple[dict[str, Any], bytes]:
        """One logical listExecutions request; returns the parsed body and the raw bytes."""
        out = self._send(url, body, "application/json", resource_rid=resource_rid)
        if not isinstance(out.parsed, dict):
            raise SchemaError(
                f"listExecutions of resource {resource_rid} returned JSON that is not an object "
                f"({type(out.parsed).__name__})"
            )
        return out.parsed, out.content

    def _token_request(self, form: dict[str, str]) -> Any:
        """POST the client-credentials form to the token endpoint (same retries); returns the parsed body."""
        return self._send(self.base_url + _OAUTH_PATH, form, "application/x-www-form-urlencoded").parsed

    def _send(self, url: str, data: Any, content_type: str, *, resource_rid: str | None = None) -> _Outcome:
        """One logical request with retries, throttle gate and OAuth refresh; returns a 200 with a JSON body.

        ``resource_rid`` is None for the OAuth token endpoint, which is sent without a bearer token.
        """
        authenticated = resource_rid is not None
        headers = {"Content-Type": content_type}
        path = url[len(self.base_url) :].partition("?")[0]
        self.gate.wait()
        started = time.monotonic()
        deadline = started + self.retry_budget
        attempts = 0  # attempts that count against max_attempts
        auth_retried = False
        while True:
            if attempts:
                self.gate.wait()
            remaining = deadline - time.monotonic()
            if attempts and remaining <= 0:
                break
            token = None
            if authenticated:
                token = self._oauth.get() if self._oauth is not None else self._token
            attempts += 1
            t0 = time.monotonic()
            out = self._attempt(
                url, data=data, headers=headers, auth=token, timeout=min(self.read_timeout, max(remaining, 0.001))
            )
            status = out.status
            logger.debug(
                "POST %s -> %s (%d bytes, %.1f ms, attempt %d)",
                path,
                status if status is not None else out.failure,
                len(out.content),
                (time.monotonic() - t0) * 1000,
                attempts,
            )

            if status is None:
                if not out.retryable_transport:
                    raise TransportError(f"POST {path} failed: {out.failure}")
            elif status == 200:
                if out.parse_ok:
                    return out
                # A 200 whose body is cut short or not JSON: the connection broke mid-body.
                self._stats.add("transport_errors")
                out.failure = f"incomplete or non-JSON 200 body ({len(out.content)} bytes)"
                out.status = None
            elif status == 401 and token is not None and self._oauth is not None and not auth_retried:
                # The token may have been revoked or expired early: refresh once and retry at once.
                auth_retried = True
                attempts -= 1
                self._oauth.invalidate(token)
                logger.debug("POST %s -> 401, refreshing the OAuth token and retrying once", path)
                continue
            elif status in _THROTTLE_STATUSES or status >= 500:
                if (out.headers or {}).get("QoS-Retry-Hint", "").strip().lower() == "do-not-retry":
                    raise self._error(out, resource_rid, "server sent QoS-Retry-Hint: do-not-retry; not retried")
            else:
                raise self._error(out, resource_rid, None)

            delay = self._backoff(attempts - 1)
            if status in _THROTTLE_STATUSES:
                self._stats.add("throttled")
                retry_after = parse_retry_after((out.headers or {}).get("Retry-After"))
                delay = max(delay, retry_after or 0.0)
                # Every thread of this client pauses too (this one at the gate on its next loop), even when
                # this request gives up; never longer than one retry budget, whatever Retry-After says.
                self.gate.trip(min(delay, self.retry_budget))
                logger.debug("POST %s throttled (HTTP %s); all workers pause %.2f s", path, status, delay)
            if attempts >= self.max_attempts or time.monotonic() + delay >= deadline:
                break
            self._stats.add("retries")
            if status not in _THROTTLE_STATUSES:
                time.sleep(delay)

        detail = (
            f"POST {path} gave up after {attempts} attempt{'s' if attempts != 1 else ''} in "
            f"{time.monotonic() - started:.1f} s (max_attempts={self.max_attempts}, "
            f"retry_budget={self.retry_budget:g} s)"
        )
        if out.status is None:
            where = f" (resource {resource_rid})" if resource_rid else ""
            raise TransportError(f"POST {path}{where} failed: {out.failure}; {detail}")
        raise self._error(out, resource_rid, detail)

    def _error(self, out: _Outcome, resource_rid: str | None, detail: str | None) -> ApiError:
        """The typed exception for an HTTP error answer."""
        assert out.status is not None
        status = out.status
        body = out.parsed if out.parse_ok and isinstance(out.parsed, dict) else None
        if 300 <= status < 400:
            location = redact((out.headers or {}).get("Location", ""), *self._secrets())
            detail = f"redirected to {location!r}; check the hostname"
        if resource_rid is None and self._oauth is not None and 400 <= status < 500 and status != 429:
            # OAuth errors are {"error": ..., "error_description": ...}, not Foundry error bodies.
            body = body or {}
            error = str(body.get("error") or body.get("errorName") or "HTTP error")
            msg = f"OAuth token request for client {self._oauth.client_id!r} failed: {error} (HTTP {status})"
            if body.get("error_description"):
                msg += f": {str(body['error_description'])[:_SNIPPET]}"
            cls: type[ApiError] = PermissionDeniedError if status == 403 else AuthenticationError
            return cls(
                redact(msg, *self._secrets()),
                status=status,
                error_code=body.get("errorCode"),
                error_name=body.get("errorName") or error,
                error_instance_id=body.get("errorInstanceId"),
            )
        err = api_error_from_response(status, body, resource_rid=resource_rid, detail=detail)
        # A 429 with an unexpected errorName is still a rate limit, and a 5xx still a server error.
        if status in _THROTTLE_STATUSES and not isinstance(err, RateLimitedError):
            err = _retype(err, RateLimitedError)
        elif status >= 500 and status not in _THROTTLE_STATUSES and not isinstance(err, ServerError):
            err = _retype(err, ServerError)
        return err


# ---------------------------------------------------------------------- helpers


def _describe(exc: BaseException) -> str:
    """A short description of a requests exception: its root cause, without the request it carries."""
    inner = exc.args[0] if exc.args else None
    reason = getattr(inner, "reason", None) or inner or exc
    text = str(reason)
    # urllib3 prefixes the connection repr ("HTTPConnection(host=..., port=...): ..."); keep the cause.
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if errno:
        text = errno.group(0)
    return text[:_SNIPPET] + ("…" if len(text) > _SNIPPET else "")


def _retype(err: ApiError, cls: type[ApiError]) -> ApiError:
    return cls(
        str(err),
        status=err.status,
        error_code=err.error_code,
        error_name=err.error_name,
        error_instance_id=err.error_instance_id,
        parameters=err.parameters,
        resource_rid=err.resource_rid,
    )


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


def _make_page(parsed: dict[str, Any], content: bytes, resource_rid: str) -> Page:
    data = parsed.get("data")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise SchemaError(f"listExecutions of resource {resource_rid}: 'data' is {type(data).__name__}, not a list")
    token = parsed.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise SchemaError(f"listExecutions of resource {resource_rid}: 'nextPageToken' is not a string")
    oldest: pd.Timestamp | None = None
    newest: pd.Timestamp | None = None
    ordered = True
    if data:
        # One vectorised parse of the page's start times (at most 100): the order check and the newest start.
        # Unparseable values are left to the decoder, which names them; here they only skip the check.
        starts = pd.to_datetime(
            pd.Series([d.get("startTime") if isinstance(d, dict) else None for d in data], dtype=object),
            format="ISO8601",
            utc=True,
            errors="coerce",
        )
        valid = starts.dropna()
        if len(valid):
            newest = valid.iloc[0]
            ordered = bool(valid.is_monotonic_decreasing)
        last = data[-1]
        raw = last.get("startTime") if isinstance(last, dict) else None
        try:
            if not isinstance(raw, str):
                raise ValueError
            oldest = pd.Timestamp(raw)
            if oldest is pd.NaT or oldest.tzinfo is None:
                raise ValueError
            oldest = oldest.tz_convert("UTC")
        except (TypeError, ValueError):
            raise SchemaError(
                f"listExecutions of resource {resource_rid}: last execution has no valid startTime ({raw!r:.60})"
            ) from None
    if b"\n" in content or b"\r" in content:
        # Only whitespace may hold raw newlines in JSON, so this keeps the document identical.
        content = content.replace(b"\r", b" ").replace(b"\n", b" ")
    return Page(
        body=content,
        next_page_token=token or None,
        n_executions=len(data),
        oldest_start=oldest,
        newest_start=newest,
        ordered=ordered,
    )
