"""The clock the client reads and sleeps on, injectable so retries and throttling can be tested without waiting."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    """What the client needs from time: a monotonic reading in seconds and a way to wait."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def monotonic(self) -> float:
        """Seconds from :func:`time.monotonic`."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


#: The default clock of every client and gate.
SYSTEM_CLOCK = SystemClock()
