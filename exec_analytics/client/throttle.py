"""ThrottleGate: one throttled request pauses every thread of a client."""

from __future__ import annotations

import threading

from exec_analytics.client.clock import SYSTEM_CLOCK, Clock

__all__ = ["ThrottleGate"]


class ThrottleGate:
    """A shared pause: when one request is throttled, every thread of the client waits before its next request.

    ``trip(delay)`` closes the gate until ``now + delay`` (a later trip can only extend it); ``wait()``
    blocks until it is open. The client calls ``wait()`` before every attempt and ``trip()`` on every
    429/503, so one throttled worker slows all workers down instead of each discovering the limit on its
    own.

    Parameters
    ----------
    clock : Clock, optional
        Where time is read and slept on (default: the system clock).
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._open_at = 0.0
        self._trips = 0
        self._waited = 0.0

    def trip(self, delay: float) -> None:
        """Keep the gate closed for at least ``delay`` more seconds."""
        with self._lock:
            self._trips += 1
            self._open_at = max(self._open_at, self._clock.monotonic() + max(0.0, delay))

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        with self._lock:
            return max(0.0, self._open_at - self._clock.monotonic())

    def wait(self) -> float:
        """Block until the gate is open; return the seconds waited."""
        waited = 0.0
        while True:
            delay = self.remaining()
            if delay <= 0:
                break
            self._clock.sleep(delay)
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
