"""Limiter: paces requests so that a token's rate limits are respected, not discovered by 429s.

Foundry limits each principal (API.md; the "Limits" page): a user token to 5,000 requests a minute and 30 at
once, a service user to 800 at once. One :class:`Limiter` is shared by every worker and resource that uses a
token in the process (every thread of one :class:`~exec_analytics.client.FoundryClient`, or several clients
given the same limiter), and holds them to both limits *before* anything is sent.

Why a request keeps its slot in the window until ``window_s`` after its answer arrives, not after it was sent:
the server counts a request at the moment it admits it, somewhere between our send and the answer's arrival,
and it frees the slot ``window_s`` after that admission. Freeing ours ``window_s`` after the answer arrived
is therefore never earlier than the server's, whatever the network delay or its jitter, so a sliding window
that the server enforces strictly (the simulator's sliding log, the strictest reading of "N a minute") never
counts more than ``per_minute``. The price is one latency per window: 0.25% of the rate at 150 ms a page.
The same holds in flight: a request counts from before it is sent until its answer is read, which covers the
server's "active processing" interval.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exec_analytics.client.clock import SYSTEM_CLOCK, Clock

__all__ = ["TOKEN_KINDS", "Limiter", "Limits"]


@dataclass(frozen=True)
class Limits:
    """The limits one principal is held to.

    Attributes
    ----------
    per_minute : int or None
        Requests per window (None: no request limit). The name keeps the API's unit; ``window_s`` is 60 s
        unless a test or a benchmark scales it down.
    in_flight : int or None
        Requests sent and not yet answered (None: no limit).
    window_s : float
        Length of the sliding window ``per_minute`` applies to, in seconds (default 60).
    """

    per_minute: int | None
    in_flight: int | None
    window_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("per_minute", "in_flight"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Limits.{name} must be a positive integer or None, got {value!r}")
        window = self.window_s
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < float("inf"):
            raise ValueError(f"Limits.window_s must be a positive number of seconds, got {window!r}")

    @classmethod
    def of_kind(cls, kind: str) -> Limits:
        """The documented limits of a token kind, ``"user"`` or ``"service"``.

        Returns
        -------
        Limits
        """
        try:
            return TOKEN_KINDS[kind]
        except (KeyError, TypeError):
            raise ValueError(f"token kind must be one of {', '.join(TOKEN_KINDS)}, got {kind!r:.40}") from None


#: The documented limits by token kind: a user token 5,000 requests a minute and 30 in flight; a service user
#: no request limit and 800 in flight.
TOKEN_KINDS: Mapping[str, Limits] = MappingProxyType(
    {"user": Limits(per_minute=5_000, in_flight=30), "service": Limits(per_minute=None, in_flight=800)}
)


class Limiter:
    """Blocks each request until both limits allow it; thread-safe, meant to be shared.

    Parameters
    ----------
    limits : Limits or str
        The limits, or a token kind of :data:`TOKEN_KINDS`.
    clock : Clock, optional
        Where time is read, and slept on while the window is full (default: the system clock).

    Notes
    -----
    Usage: ``waited = limiter.acquire()`` before a request, ``limiter.release()`` once its answer is read (or
    it failed), in a ``finally``. The window holds one float per request of the last ``window_s``.
    """

    def __init__(self, limits: Limits | str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limits = limits if isinstance(limits, Limits) else Limits.of_kind(limits)
        self._clock = clock
        self._cond = threading.Condition()
        self._in_flight = 0
        # When each answered request of the window frees its slot, in non-decreasing order (release() reads
        # the clock under the lock).
        self._frees_at: deque[float] = deque()
        self._requests = 0
        self._waited = 0.0
        self._max_in_flight = 0

    def acquire(self) -> float:
        """Wait until one more request fits both limits, and count it.

        Returns
        -------
        float
            Seconds waited (0.0 when it fitted at once).
        """
        per_minute, in_flight = self.limits.per_minute, self.limits.in_flight
        started = self._clock.monotonic()
        with self._cond:
            while True:
                now = self._clock.monotonic()
                frees = self._frees_at
                while frees and frees[0] <= now:
                    frees.popleft()
                full_rate = per_minute is not None and self._in_flight + len(frees) >= per_minute
                full_flight = in_flight is not None and self._in_flight >= in_flight
                if not full_rate and not full_flight:
                    break
                if full_rate and not full_flight and frees:
                    # The window frees a slot at a known time; sleep on the clock (a fake one in tests), not
                    # holding the lock, then look again.
                    delay = frees[0] - now
                    self._cond.release()
                    try:
                        self._clock.sleep(delay)
                    finally:
                        self._cond.acquire()
                else:
                    # Only an answer can free a slot: release() notifies.
                    self._cond.wait()
            self._in_flight += 1
            self._requests += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            waited = max(0.0, now - started)
            self._waited += waited
        return waited

    def release(self) -> None:
        """End a request counted by :meth:`acquire`: its answer was read, or it failed."""
        with self._cond:
            if self._in_flight == 0:
                raise RuntimeError("release() without a matching acquire()")
            self._in_flight -= 1
            if self.limits.per_minute is not None:
                self._frees_at.append(self._clock.monotonic() + self.limits.window_s)
            self._cond.notify_all()

    @property
    def stats(self) -> dict[str, float]:
        """A snapshot: ``requests`` (acquired), ``waited_s`` (seconds all requests waited, summed),
        ``max_in_flight`` (the most at once) and ``in_flight`` (now)."""
        with self._cond:
            return {
                "requests": self._requests,
                "waited_s": self._waited,
                "max_in_flight": self._max_in_flight,
                "in_flight": self._in_flight,
            }

    def __repr__(self) -> str:
        lim = self.limits
        return f"Limiter(per_minute={lim.per_minute}, in_flight={lim.in_flight}, window_s={lim.window_s:g})"
