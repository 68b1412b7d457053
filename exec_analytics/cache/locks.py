"""Files that survive a crash at any moment: atomic replacement, and one writer per resource."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def fsync_dir(path: Path) -> None:
    # A rename is durable only once its directory is; Windows cannot open a directory for fsync.
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    # A leading dot hides it from every reader (pyarrow, Spark and Polars skip dot files; DuckDB's
    # *.parquet glob does not match the suffix).
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``write(fileobj)`` to a temporary file, fsync it, and rename it over ``path``."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_stale_tmp(directory: Path) -> None:
    """Temporary files left by a crashed writer; only called while holding the resource's lock."""
    if directory.is_dir():
        for p in directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


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
