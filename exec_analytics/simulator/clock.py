"""A controllable UTC clock for the simulator.

The simulated Foundry only shows executions that have *completed* by "now". Tests need to move "now" to
make a late-finishing execution appear inside a window that was already read, so the server asks this
clock instead of the wall clock.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pandas as pd

from ..timeutil import epoch_ms, from_epoch_ms, to_utc

__all__ = ["SimClock"]


def _delta_ms(delta: timedelta | pd.Timedelta | str | float | int) -> int:
    if isinstance(delta, bool):
        raise TypeError("delta must be a timedelta, a pandas offset string like '15min' or seconds")
    if isinstance(delta, (int, float)):
        return round(delta * 1000)
    try:
        return int(pd.Timedelta(delta) // pd.Timedelta(milliseconds=1))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"delta {delta!r} is not a duration: {exc}") from None


class SimClock:
    """UTC time source with millisecond resolution, frozen or following the wall clock.

    Parameters
    ----------
    now : str, datetime or pandas.Timestamp, optional
        Freeze the clock at this timezone-aware time. When omitted the clock follows wall time.

    Notes
    -----
    :meth:`advance` moves a frozen clock forward and shifts a wall-following clock by an offset;
    :meth:`set` freezes the clock at the given time. All methods are thread-safe.
    """

    def __init__(self, now: object = None) -> None:
        self._lock = threading.Lock()
        self._frozen_ms: int | None = None if now is None else epoch_ms(to_utc(now, "now"))
        self._offset_ms = 0

    @property
    def frozen(self) -> bool:
        """True when the clock does not follow wall time."""
        return self._frozen_ms is not None

    def now_ms(self) -> int:
        """Current simulated time as integer milliseconds since the Unix epoch (UTC)."""
        frozen = self._frozen_ms
        if frozen is not None:
            return frozen
        return time.time_ns() // 1_000_000 + self._offset_ms

    def now(self) -> pd.Timestamp:
        """Current simulated time as a UTC ``Timestamp`` (millisecond resolution)."""
        return from_epoch_ms(self.now_ms())

    def set(self, ts: object) -> None:
        """Freeze the clock at ``ts`` (timezone-aware)."""
        ms = epoch_ms(to_utc(ts, "ts"))
        with self._lock:
            self._frozen_ms = ms

    def advance(self, delta: timedelta | pd.Timedelta | str | float | int) -> pd.Timestamp:
        """Move the clock forward by ``delta`` (a timedelta, ``'15min'``-style string, or seconds).

        Returns
        -------
        pandas.Timestamp
            The new current time.
        """
        ms = _delta_ms(delta)
        with self._lock:
            if self._frozen_ms is not None:
                self._frozen_ms += ms
            else:
                self._offset_ms += ms
        return self.now()

    def __repr__(self) -> str:
        mode = "frozen" if self.frozen else "wall"
        return f"SimClock({self.now().isoformat()}, {mode})"
