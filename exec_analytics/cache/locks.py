"""One writer per resource: the storage's locks (OS file locks, or leases on an object store), taken in order."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from .storage import Storage


@contextlib.contextmanager
def hold(storage: Storage, locks: Iterable[tuple[str, str]], timeout: float) -> Iterator[None]:
    """Hold the locks ``locks`` (``(lock key, what it guards)``), taken in sorted order: no deadlock.

    Parameters
    ----------
    storage : Storage
        Where the cache lives.
    locks : iterable of (str, str)
        Lock keys and a description of each for messages.
    timeout : float
        Seconds to wait for each lock before raising :class:`~exec_analytics.errors.CacheError`.

    Returns
    -------
    contextlib.AbstractContextManager
        Holds every lock while the ``with`` block runs.
    """
    with contextlib.ExitStack() as stack:
        for key, what in sorted(set(locks)):
            stack.enter_context(storage.lock(key, timeout, what))
        yield
