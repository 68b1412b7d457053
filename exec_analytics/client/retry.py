"""When to try a request again: a pure decision on what the last attempt gave, plus ``Retry-After`` parsing.

Nothing here reads a clock, sleeps or draws a random number: the caller passes the attempt count, the time
elapsed and a jitter draw, so every rule is table-tested without a server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = ["Decision", "Outcome", "RetryPolicy", "decide", "parse_retry_after"]


class Outcome(enum.Enum):
    """What one failed attempt produced, as far as retrying is concerned."""

    #: No usable response that a second try may fix: dropped connection, timeout, truncated or non-JSON 200.
    TRANSIENT = "transient"
    #: 429 or 503: the server asks to slow down.
    THROTTLED = "throttled"
    #: Another 5xx.
    SERVER_ERROR = "server_error"
    #: Anything a retry cannot fix: a TLS failure, an unsupported Content-Encoding, an unusable request.
    FATAL = "fatal"


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of one logical request.

    Attributes
    ----------
    max_attempts : int
        Attempts, the first included.
    budget : float
        Seconds from the start of the logical request within which every attempt, and every wait between
        attempts, must end.
    backoff_base, backoff_cap : float
        Retry ``k`` (0-based) waits ``jitter * min(backoff_cap, backoff_base * 2**k)`` (full jitter).
    min_attempt : float
        Seconds an attempt must have left in the budget after its wait to be worth making: a retry squeezed
        into the last instant of the budget could only time out, and would report that instead of the
        server's last answer.
    """

    max_attempts: int
    budget: float
    backoff_base: float
    backoff_cap: float
    min_attempt: float = 0.0

    def backoff(self, retry_index: int, jitter: float) -> float:
        """Seconds to wait before retry ``retry_index`` (0-based), for a draw ``jitter`` in [0, 1)."""
        return jitter * min(self.backoff_cap, self.backoff_base * (2.0**retry_index))


@dataclass(frozen=True)
class Decision:
    """Retry after ``delay`` seconds, or give up for ``reason``.

    Attributes
    ----------
    retry : bool
        Whether to make another attempt.
    delay : float
        Seconds to wait first (for a throttled answer, also how long every thread should pause).
    reason : str
        Why not, when ``retry`` is False: ``"not retryable"``, ``"do-not-retry"``, ``"max_attempts"`` or
        ``"retry_budget"``; ``""`` otherwise.
    """

    retry: bool
    delay: float = 0.0
    reason: str = ""


def decide(
    outcome: Outcome,
    *,
    attempt: int,
    elapsed: float,
    policy: RetryPolicy,
    jitter: float,
    retry_after: float | None = None,
    do_not_retry: bool = False,
) -> Decision:
    """Decide whether a failed attempt is retried, and after how long.

    Parameters
    ----------
    outcome : Outcome
        What the attempt produced.
    attempt : int
        Attempts made so far (1 after the first).
    elapsed : float
        Seconds since the logical request started.
    policy : RetryPolicy
        The bounds.
    jitter : float
        A uniform draw in [0, 1) scaling the backoff.
    retry_after : float, optional
        The server's ``Retry-After`` in seconds; a floor for the wait after a throttled answer.
    do_not_retry : bool
        Whether the server sent ``QoS-Retry-Hint: do-not-retry`` (honoured on 429 and 5xx).

    Returns
    -------
    Decision
        A retry is made only if it is within ``max_attempts`` and its wait leaves at least ``min_attempt``
        seconds of the budget for the attempt.
    """
    if outcome is Outcome.FATAL:
        return Decision(False, reason="not retryable")
    if do_not_retry and outcome in (Outcome.THROTTLED, Outcome.SERVER_ERROR):
        return Decision(False, reason="do-not-retry")
    delay = policy.backoff(attempt - 1, jitter)
    if outcome is Outcome.THROTTLED:
        delay = max(delay, retry_after or 0.0)
    if attempt >= policy.max_attempts:
        return Decision(False, delay, "max_attempts")
    if elapsed + delay + policy.min_attempt >= policy.budget:
        return Decision(False, delay, "retry_budget")
    return Decision(True, delay)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None when absent or invalid.

    Parameters
    ----------
    value : str or None
        The header value.
    now : float, optional
        The current POSIX time, for an HTTP-date (default: the system's).

    Returns
    -------
    float or None
        Non-negative seconds.
    """
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
