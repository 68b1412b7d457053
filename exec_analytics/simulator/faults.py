"""Fault injection for the simulated listExecutions endpoint.

Real Foundry throttles (429 with or without ``Retry-After``, sometimes ``QoS-Retry-Hint: do-not-retry``),
answers 503 under load, fails with 500, drops connections, returns short pages and, while data changes,
pages that repeat items. A client is only as robust as the faults it was tested against, so each of them
can be switched on here, deterministically from the fault seed (for requests that arrive in a fixed
order, e.g. a sequential client).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, fields
from typing import NamedTuple

__all__ = ["FAULT_KINDS", "FaultConfig", "FaultDecision", "FaultInjector"]

#: Mutually exclusive per-request faults, in the order their probabilities are stacked.
FAULT_KINDS: tuple[str, ...] = (
    "429_retry_after",
    "429",
    "429_do_not_retry",
    "503",
    "500",
    "drop",
    "truncate",
)


@dataclass(frozen=True)
class FaultConfig:
    """Which faults the simulator injects, and how often.

    Every ``p_*`` is a per-request probability; the exclusive ones (``p_429_retry_after`` … ``p_truncate``)
    must sum to at most 1. Faults apply to listExecutions requests only, and also to the OAuth token
    endpoint when ``apply_to_oauth`` is set.

    Attributes
    ----------
    seed : int
        Seed of the fault draws (independent of the workload seed).
    p_429_retry_after : float
        429 with a ``Retry-After: <retry_after_s>`` header.
    retry_after_s : float
        Value of ``Retry-After`` in seconds; fractional values are sent as such (e.g. ``0.05``) so tests
        stay fast.
    p_429 : float
        429 without ``Retry-After``.
    p_429_do_not_retry : float
        429 with ``QoS-Retry-Hint: do-not-retry``.
    p_503 : float
        503 (unavailable), empty body.
    p_500 : float
        500 with a Foundry error body (``INTERNAL`` / ``Internal``).
    p_drop : float
        Close the connection without any response.
    p_truncate : float
        Send the headers with the full ``Content-Length`` but only half of the body, then close.
    p_slow : float
        Sleep ``slow_s`` before answering (independent of the faults above).
    slow_s : float
    latency_s : float
        Fixed delay added to every request (e.g. 0.02 to mimic a network round trip).
    max_concurrent : int or None
        Requests beyond this many in flight get 429 at once (real user tokens allow 30).
    short_pages : float
        Probability that a page holds fewer rows than ``pageSize`` although more remain.
    unstable_tokens : bool
        Page tokens carry an offset instead of a keyset position, so executions completing between two
        pages shift the rows and cause duplicates (the real API warns about this).
    apply_to_oauth : bool
        Also inject the exclusive faults, latency and slowness into the OAuth token endpoint.
    """

    seed: int = 0
    p_429_retry_after: float = 0.0
    retry_after_s: float = 0.05
    p_429: float = 0.0
    p_429_do_not_retry: float = 0.0
    p_503: float = 0.0
    p_500: float = 0.0
    p_drop: float = 0.0
    p_truncate: float = 0.0
    p_slow: float = 0.0
    slow_s: float = 0.5
    latency_s: float = 0.0
    max_concurrent: int | None = None
    short_pages: float = 0.0
    unstable_tokens: bool = False
    apply_to_oauth: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") or f.name == "short_pages":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                    raise ValueError(f"FaultConfig.{f.name} must be a probability in [0, 1], got {value!r}")
            elif f.name.endswith("_s") and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
            ):
                raise ValueError(f"FaultConfig.{f.name} must be a number of seconds >= 0, got {value!r}")
        if self.max_concurrent is not None and (
            isinstance(self.max_concurrent, bool) or not isinstance(self.max_concurrent, int) or self.max_concurrent < 1
        ):
            raise ValueError(
                f"FaultConfig.max_concurrent must be a positive integer or None, got {self.max_concurrent!r}"
            )
        if sum(self.exclusive_probabilities) > 1.0 + 1e-9:
            raise ValueError("FaultConfig: the probabilities of 429/503/500/drop/truncate must sum to at most 1")

    @property
    def exclusive_probabilities(self) -> tuple[float, ...]:
        """Probabilities of ``FAULT_KINDS``, in that order."""
        return (
            self.p_429_retry_after,
            self.p_429,
            self.p_429_do_not_retry,
            self.p_503,
            self.p_500,
            self.p_drop,
            self.p_truncate,
        )


class FaultDecision(NamedTuple):
    """What to do to one request."""

    kind: str | None  # one of FAULT_KINDS, or None
    slow: bool
    short_fraction: float | None  # when set, a page keeps about this fraction of pageSize (if more remain)


_NO_FAULT = FaultDecision(None, False, None)


class FaultInjector:
    """Draws a :class:`FaultDecision` per request from a seeded generator (thread-safe)."""

    def __init__(self, config: FaultConfig | None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._cumulative: list[float] = []
        acc = 0.0
        for p in self.config.exclusive_probabilities:
            acc += p
            self._cumulative.append(acc)
        self._any = acc > 0 or self.config.p_slow > 0 or self.config.short_pages > 0

    def draw(self) -> FaultDecision:
        """The faults for the next request; four draws per request keep the sequence aligned."""
        if not self._any:
            return _NO_FAULT
        with self._lock:
            u_kind, u_slow, u_short, u_frac = (self._rng.random() for _ in range(4))
        kind = None
        for name, edge in zip(FAULT_KINDS, self._cumulative, strict=True):
            if u_kind < edge:
                kind = name
                break
        short = u_frac if u_short < self.config.short_pages else None
        return FaultDecision(kind, u_slow < self.config.p_slow, short)
