"""Rate and concurrency limits of the simulated Foundry: enforced per principal, and measured exactly.

Documented (docs/endpoint.md; Foundry's "Limits" page): a user token may make 5,000 requests a minute and 30 at once;
service users have no request limit and 800 at once; excess requests are throttled with 429 or 503. The
limits are per user.

Simulator's choices, where the documentation is silent:

- **Who is limited.** A principal is a bearer token, or an OAuth client: every access token issued to one
  client is the same service user and shares its limits. A request without valid credentials belongs to no
  one and is not counted (it gets its 401 as before). Only listExecutions requests are limited, not the OAuth
  token endpoint.
- **Requests per minute is a sliding log.** A request is admitted when fewer than ``per_minute`` requests of
  its principal were admitted in the 60 seconds before it, the window ``(t - 60 s, t]``: a slot frees exactly
  60 s after the admission that took it. A token bucket of the same rate admits up to twice the limit in some
  60-second window (a full bucket, then a minute of refill); the sliding log is the strictest reading of
  "N requests a minute", so a client that never meets a 429 here stays within the limit however the real
  server counts.
- **A throttled request does not count** toward the window: the documented limit is on the requests Foundry
  *processes*, and a throttled one is not processed. (Counting them would also lock out, for as long as it
  keeps retrying, a client that overshot once.)
- **In flight** is from admission until the response starts to be written: the documentation counts
  "active processing time on the server", and a client that sends its next request as soon as it holds an
  answer must not find the previous one still counted.
- **The answer.** 429 with the error body :data:`.spec.THROTTLED` (``TooManyRequests``) whose parameters
  name the limit (``requestsPerMinute`` or ``concurrentRequests``) and its ``maximum``. Past the per-minute
  limit it carries ``Retry-After``: whole seconds, rounded up, until the oldest admission leaves the window
  (the first moment a retry can succeed). Past the in-flight limit it carries none: the server cannot know
  when a request in flight will end. When both limits are exceeded, the per-minute one is reported.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

__all__ = ["LIMIT_KINDS", "WINDOW_S", "LimitStats", "LimitsConfig", "RateLimiter", "RateLimits", "Throttle"]

#: The length of the per-minute window, in seconds.
WINDOW_S = 60.0


@dataclass(frozen=True)
class RateLimits:
    """The limits one principal is held to; the defaults are a user token's documented limits.

    Attributes
    ----------
    per_minute : int or None
        Requests admitted in any 60-second window; None: no limit (service users).
    in_flight : int or None
        Requests admitted and not yet answered; None: no limit.
    retry_after : bool
        Send ``Retry-After`` on a 429 past the per-minute limit.
    window_s : float
        The length of the per-minute window in seconds (default :data:`WINDOW_S`); tests and benchmarks
        scale it down, e.g. 120 requests per 2 s, to measure the same behaviour in seconds.
    """

    per_minute: int | None = 5_000
    in_flight: int | None = 30
    retry_after: bool = True
    window_s: float = WINDOW_S

    def __post_init__(self) -> None:
        for name in ("per_minute", "in_flight"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"RateLimits.{name} must be a positive integer or None, got {value!r}")
        if not isinstance(self.retry_after, bool):
            raise TypeError(f"RateLimits.retry_after must be a bool, got {self.retry_after!r}")
        window = self.window_s
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < math.inf:
            raise ValueError(f"RateLimits.window_s must be a positive number of seconds, got {window!r}")


#: The documented limits by token kind.
LIMIT_KINDS: Mapping[str, RateLimits] = MappingProxyType(
    {"user": RateLimits(per_minute=5_000, in_flight=30), "service": RateLimits(per_minute=None, in_flight=800)}
)

#: What :class:`RateLimiter` is configured with: one :class:`RateLimits` (or a kind of :data:`LIMIT_KINDS`)
#: for every principal, or a mapping principal -> limits (or kind), principals not named being measured only.
LimitsConfig = RateLimits | str | Mapping[str, RateLimits | str]


@dataclass(frozen=True)
class LimitStats:
    """What one principal's requests did, as the server counted them.

    Attributes
    ----------
    admitted : int
        Requests admitted (answered by the endpoint, whatever the answer).
    throttled_per_minute, throttled_in_flight : int
        Requests answered 429 by the limiter, by the limit they hit. Injected faults are not counted here
        (see ``SimulatorServer.fault_counts``).
    max_in_flight : int
        The most requests in flight at once.
    max_per_minute : int
        The most requests admitted in any window ``(t - window_s, t]`` (60 s unless the limits scale it).
    """

    admitted: int = 0
    throttled_per_minute: int = 0
    throttled_in_flight: int = 0
    max_in_flight: int = 0
    max_per_minute: int = 0

    @property
    def throttled(self) -> int:
        """Every 429 the limiter answered."""
        return self.throttled_per_minute + self.throttled_in_flight


class Throttle(NamedTuple):
    """Why a request was refused: the limit (``requestsPerMinute`` / ``concurrentRequests``), its value, and
    the ``Retry-After`` seconds to send (None: no header)."""

    limit: str
    maximum: int
    retry_after_s: int | None


class _Account:
    """One principal's state: the admissions of the last minute, and the counters of :class:`LimitStats`."""

    __slots__ = ("admitted", "in_flight", "max_in_flight", "max_per_minute", "throttled", "window")

    def __init__(self) -> None:
        self.window: deque[float] = deque()
        self.in_flight = 0
        self.admitted = 0
        self.throttled = {"requestsPerMinute": 0, "concurrentRequests": 0}
        self.max_in_flight = 0
        self.max_per_minute = 0


class RateLimiter:
    """Admits or throttles each request of a principal, and counts what happened (thread-safe).

    Parameters
    ----------
    limits : RateLimits, str or mapping
        One :class:`RateLimits` or token kind (``"user"``, ``"service"``) for every principal, each held to it
        separately; or a mapping principal -> limits or kind, where principals not named are admitted
        without limit but still measured (``{}`` measures everyone and enforces nothing).
    monotonic : callable
        Seconds of a monotonic clock (default :func:`time.monotonic`); a test passes a fake one.

    Notes
    -----
    The window holds the admission times of the last minute, so memory grows with the request rate (a few
    bytes per request of the last 60 s).
    """

    def __init__(self, limits: LimitsConfig, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if isinstance(limits, Mapping):
            self._default: RateLimits | None = None
            self._limits = {str(k): _resolve(v) for k, v in limits.items()}
        else:
            self._default = _resolve(limits)
            self._limits = {}
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}

    def limits_for(self, principal: str) -> RateLimits | None:
        """The limits ``principal`` is held to; None when it is only measured."""
        return self._limits.get(principal, self._default)

    def acquire(self, principal: str) -> Throttle | None:
        """Admit a request of ``principal`` now, or say why not.

        Returns
        -------
        Throttle or None
            None when admitted: the caller must :meth:`release` it once its answer is ready. A throttled
            request is not counted in flight nor in the window.
        """
        limits = self.limits_for(principal)
        with self._lock:
            now = self._monotonic()  # under the lock, so that the window stays in time order
            account = self._accounts.get(principal)
            if account is None:
                account = self._accounts[principal] = _Account()
            window = account.window
            span = limits.window_s if limits is not None else WINDOW_S
            while window and window[0] + span <= now:
                window.popleft()
            throttle = None
            if limits is not None:
                if limits.per_minute is not None and len(window) >= limits.per_minute:
                    wait = math.ceil(window[0] + span - now) if limits.retry_after else None
                    throttle = Throttle("requestsPerMinute", limits.per_minute, wait)
                elif limits.in_flight is not None and account.in_flight >= limits.in_flight:
                    throttle = Throttle("concurrentRequests", limits.in_flight, None)
            if throttle is not None:
                account.throttled[throttle.limit] += 1
                return throttle
            window.append(now)
            account.in_flight += 1
            account.admitted += 1
            account.max_in_flight = max(account.max_in_flight, account.in_flight)
            # The largest count of any sliding window is reached by a window that ends at an admission.
            account.max_per_minute = max(account.max_per_minute, len(window))
            return None

    def release(self, principal: str) -> None:
        """End an admitted request of ``principal`` (its answer is ready)."""
        with self._lock:
            account = self._accounts.get(principal)
            if account is None or account.in_flight == 0:
                raise RuntimeError("release() without a matching admitted acquire()")
            account.in_flight -= 1

    def stats(self, principal: str) -> LimitStats:
        """What ``principal``'s requests did since the start (or :meth:`reset_stats`); zeros if none came."""
        with self._lock:
            account = self._accounts.get(principal)
            if account is None:
                return LimitStats()
            return LimitStats(
                admitted=account.admitted,
                throttled_per_minute=account.throttled["requestsPerMinute"],
                throttled_in_flight=account.throttled["concurrentRequests"],
                max_in_flight=account.max_in_flight,
                max_per_minute=account.max_per_minute,
            )

    def reset_stats(self) -> None:
        """Zero the counters; the limits keep counting what is in flight and in the window.

        After a reset, ``max_in_flight`` starts from the requests still in flight and ``max_per_minute`` counts
        windows that end after the reset, including admissions made before it: what the limits see.
        """
        with self._lock:
            for account in self._accounts.values():
                account.admitted = 0
                account.throttled = dict.fromkeys(account.throttled, 0)
                account.max_in_flight = account.in_flight
                account.max_per_minute = 0


def _resolve(limits: RateLimits | str) -> RateLimits:
    if isinstance(limits, RateLimits):
        return limits
    if isinstance(limits, str) and limits in LIMIT_KINDS:
        return LIMIT_KINDS[limits]
    raise ValueError(f"limits must be a RateLimits or one of {', '.join(LIMIT_KINDS)}, got {limits!r:.40}")
