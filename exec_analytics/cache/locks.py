"""One writer per resource: exclusive file locks that the operating system releases when a process dies."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from ..errors import CacheError
from ..timeutil import epoch_ms
from .intervals import iso

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:  # Windows
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

log = logging.getLogger("exec_analytics.cache")


class FileLock:
    """An exclusive lock on one file, released by the OS if the process dies (no stale locks)."""

    def __init__(self, path: Path, timeout: float, what: str) -> None:
        self.path, self.timeout, self.what = path, timeout, what
        self._fd: int | None = None

    def _try(self, fd: int) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        if msvcrt is not None:  # pragma: no cover - Windows
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                return False
        raise CacheError(  # pragma: no cover
            "this platform has neither fcntl nor msvcrt file locking, which the cache needs to keep two "
            "processes from corrupting it; pass cache=False (or --no-cache)"
        )

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        began = time.monotonic()
        warned = False
        try:
            while not self._try(fd):
                waited = time.monotonic() - began
                if waited >= self.timeout:
                    raise CacheError(
                        f"the cache is locked for {self.what} by another process ({self._holder()}); waited "
                        f"{waited:.0f} s. Wait for it to finish, raise lock_timeout, or use another cache "
                        f"directory. Lock file: {self.path}"
                    )
                if not warned:
                    log.warning("waiting for the cache lock on %s, held by %s", self.what, self._holder())
                    warned = True
                time.sleep(min(0.05 + 0.1 * waited, 0.5))
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for the message a waiting process shows.
        note = f"pid {os.getpid()} since {iso(epoch_ms(pd.Timestamp.now(tz='UTC')))}".encode()
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, note)
        self._fd = fd

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown holder"
        except OSError:
            return "unknown holder"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            elif msvcrt is not None:  # pragma: no cover - Windows
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(fd)


@contextlib.contextmanager
def hold(paths: Iterable[tuple[Path, str]], timeout: float) -> Iterator[None]:
    """Hold the locks at ``paths`` (``(lock file, what it guards)``), taken in sorted order: no deadlock.

    Parameters
    ----------
    paths : iterable of (pathlib.Path, str)
        Lock files and a description of each for messages.
    timeout : float
        Seconds to wait for each lock before raising :class:`~exec_analytics.errors.CacheError`.

    Returns
    -------
    contextlib.AbstractContextManager
        Holds every lock while the ``with`` block runs.
    """
    locks: list[FileLock] = []
    try:
        for path, what in sorted(set(paths)):
            lock = FileLock(path, timeout, what)
            lock.acquire()
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
