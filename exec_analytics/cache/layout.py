"""Where the cache keeps things: its paths, format marker, manifests, locks and day partitions.

The base of :class:`~exec_analytics.cache.ExecutionCache`; nothing here reads or writes executions.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import orjson
import pandas as pd

from ..errors import CacheError
from .files import FileLock, fsync_dir, write_atomic
from .intervals import day_name
from .manifest import FORMAT_VERSION, Manifest, version_message
from .tables import ALL

PART = "part-0.parquet"
COVERAGE = "_coverage.json"
FILTER_FILE = "_filter.json"
ROOT_FILE = "_cache.json"
_KEY_RE = re.compile(r"^f-[0-9a-f]{16}$")


class Layout:
    """Paths and metadata of a cache directory (see the package docstring for the layout)."""

    path: Path
    settle_lag: pd.Timedelta
    lock_timeout: float
    _checked_root: bool
    _root_lock: threading.Lock

    @property
    def _lag_ms(self) -> int:
        return int(self.settle_lag // pd.Timedelta(milliseconds=1))

    def _store_dir(self, key: str) -> Path:
        return self.path / "executions" if key == ALL else self.path / "filtered" / key

    def _resource_dir(self, key: str, rid: str) -> Path:
        # Hive values are URL-escaped the way Spark escapes them; a RID needs none, but '/' or '=' would break
        # the layout.
        return self._store_dir(key) / f"resource={quote(rid, safe='')}"

    def _partition(self, key: str, rid: str, day: int) -> Path:
        return self._resource_dir(key, rid) / f"date={day_name(day)}" / PART

    def _check_root(self, *, create: bool) -> None:
        if self._checked_root:
            return
        with self._root_lock:
            marker = self.path / ROOT_FILE
            if marker.exists():
                try:
                    version = orjson.loads(marker.read_bytes()).get("format_version")
                except (orjson.JSONDecodeError, AttributeError, OSError) as exc:
                    raise CacheError(
                        f"{marker} is unreadable ({exc}); is {self.path} an exec_analytics cache?"
                    ) from None
                if version != FORMAT_VERSION:
                    raise CacheError(version_message(f"the cache at {self.path}", version))
                self._checked_root = True
            elif create:
                self.path.mkdir(parents=True, exist_ok=True)
                doc = {"format_version": FORMAT_VERSION, "layout": "executions/resource=<rid>/date=<YYYY-MM-DD>"}
                write_atomic(marker, lambda f: f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2)))
                fsync_dir(self.path)
                self._checked_root = True

    @contextlib.contextmanager
    def _lock(self, rids: Iterable[str]) -> Iterator[None]:
        """Hold the write lock of every resource in ``rids`` (taken in sorted order: no deadlock)."""
        self._check_root(create=True)
        locks: list[FileLock] = []
        try:
            for rid in sorted(set(rids)):
                lock = FileLock(
                    self.path / "_locks" / f"{quote(rid, safe='')}.lock", self.lock_timeout, f"resource {rid}"
                )
                lock.acquire()
                locks.append(lock)
            yield
        finally:
            for lock in reversed(locks):
                lock.release()

    def _manifest_path(self, key: str, rid: str) -> Path:
        return self._resource_dir(key, rid) / COVERAGE

    def _manifest(self, key: str, rid: str, where: dict[str, Any] | None) -> Manifest:
        path = self._manifest_path(key, rid)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return Manifest(rid, where)
        return Manifest.from_json(raw, path)

    def _save_manifest(self, key: str, manifest: Manifest) -> None:
        path = self._manifest_path(key, manifest.resource_rid)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = manifest.to_json()
        write_atomic(path, lambda f: f.write(data))
        fsync_dir(path.parent)

    def _day_dirs(self, key: str, rid: str) -> list[int]:
        base = self._resource_dir(key, rid)
        if not base.is_dir():
            return []
        days = []
        for d in base.iterdir():
            if d.name.startswith("date=") and (d / PART).exists():
                days.append(int(np.datetime64(d.name[5:], "D").astype(np.int64)))
        return sorted(days)

    def _first_day(self, key: str, rid: str) -> int:
        days = self._day_dirs(key, rid)
        return days[0] if days else 0

    def _last_day(self, key: str, rid: str) -> int:
        days = self._day_dirs(key, rid)
        return days[-1] if days else -1

    def _stores(self) -> list[tuple[str, dict[str, Any] | None]]:
        stores: list[tuple[str, dict[str, Any] | None]] = []
        if self._store_dir(ALL).is_dir():
            stores.append((ALL, None))
        filtered = self.path / "filtered"
        if filtered.is_dir():
            for d in sorted(filtered.iterdir()):
                if not _KEY_RE.match(d.name):
                    continue
                where = None
                with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError):
                    where = orjson.loads((d / FILTER_FILE).read_bytes()).get("where")
                stores.append((d.name, where))
        return stores

    def _store_resources(self, key: str) -> list[str]:
        base = self._store_dir(key)
        if not base.is_dir():
            return []
        return sorted(unquote(d.name[9:]) for d in base.iterdir() if d.name.startswith("resource="))
