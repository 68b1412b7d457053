"""Files that survive a crash at any moment: the one atomic-write implementation of the package.

A file is written to a hidden temporary name beside its destination, flushed and fsynced, renamed over the
destination, and the directory fsynced, so that after a crash (or a kill) the path holds either the old
file or the new one, whole, and never half of either. The temporary name is unique per writer, so two
processes writing the same path never write into each other's file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["TMP_GLOB", "fsync_dir", "remove_stale_tmp", "write_atomic"]

#: Pattern of the temporary files :func:`write_atomic` leaves behind when its process dies mid-write.
TMP_GLOB = ".*.tmp"


def fsync_dir(path: Path) -> None:
    """Make the renames and creations in directory ``path`` durable.

    Parameters
    ----------
    path : pathlib.Path
        An existing directory. Nothing is done on Windows, which cannot open a directory for fsync.

    Returns
    -------
    None
    """
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path: Path, tmp_dir: Path | None) -> Path:
    # A leading dot hides it from most readers (pyarrow and Spark skip dot files; DuckDB's *.parquet glob does
    # not match the suffix); pid and random bytes keep concurrent writers apart.
    return (tmp_dir or path.parent) / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def write_atomic(path: Path, write: Callable[[Path], object], *, tmp_dir: Path | None = None) -> None:
    """Create or replace ``path`` atomically and durably.

    Parameters
    ----------
    path : pathlib.Path
        The destination; its directory is created if missing.
    write : callable
        Called with a temporary path in the same directory, which it must create and fill (for example
        ``lambda tmp: tmp.write_bytes(data)`` or ``lambda tmp: df.to_parquet(tmp)``).
    tmp_dir : pathlib.Path, optional
        Where the temporary file is written (created if missing; default: beside ``path``). It must be on the
        same filesystem as ``path``, so that the rename stays atomic. A dataset directory that an engine scans
        whole (Polars does not skip dot files) keeps its temporary files elsewhere this way.

    Returns
    -------
    None

    Notes
    -----
    The temporary file is fsynced, renamed over ``path`` and the directory fsynced. On any failure
    (including ``KeyboardInterrupt``) the temporary file is removed and the exception passes through; a
    process killed outright leaves only a hidden ``.*.tmp`` file (see :func:`remove_stale_tmp`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, tmp_dir)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def remove_stale_tmp(directory: Path) -> None:
    """Delete the temporary files that killed writers left in ``directory``.

    Only call it while no other process can be writing there (the cache holds the resource's lock).

    Parameters
    ----------
    directory : pathlib.Path
        Directory to clean; a missing directory is fine.

    Returns
    -------
    None
    """
    if directory.is_dir():
        for p in directory.glob(TMP_GLOB):
            with contextlib.suppress(OSError):
                p.unlink()
