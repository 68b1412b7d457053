"""Where a cache directory keeps things: paths of stores, resources, day partitions, manifests and locks.

Nothing here reads or writes executions or manifests; :class:`Layout` only names paths and lists what is there.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import orjson

from .intervals import day_name, parse_day

PART = "part-0.parquet"
COVERAGE = "_coverage.json"
FILTER_FILE = "_filter.json"
ROOT_FILE = "_cache.json"
#: The store key of the unfiltered history.
ALL = "all"
_KEY_RE = re.compile(r"^f-[0-9a-f]{16}$")
_RESOURCE_PREFIX = "resource="


@dataclass(frozen=True)
class Layout:
    """The paths of one cache directory (see :mod:`exec_analytics.cache` for the tree)."""

    root: Path

    @property
    def marker(self) -> Path:
        """``_cache.json``: the format version of the whole directory."""
        return self.root / ROOT_FILE

    def store_dir(self, key: str) -> Path:
        """The directory of the history (``key == ALL``) or of one filter's store."""
        return self.root / "executions" if key == ALL else self.root / "filtered" / key

    def filter_file(self, key: str) -> Path:
        return self.store_dir(key) / FILTER_FILE

    def resource_dir(self, key: str, rid: str) -> Path:
        # Hive values are URL-escaped the way Spark escapes them; a RID needs none, but '/' or '=' would break
        # the layout.
        return self.store_dir(key) / f"{_RESOURCE_PREFIX}{quote(rid, safe='')}"

    def manifest(self, key: str, rid: str) -> Path:
        return self.resource_dir(key, rid) / COVERAGE

    def partition(self, key: str, rid: str, day: int) -> Path:
        return self.resource_dir(key, rid) / f"date={day_name(day)}" / PART

    def lock(self, rid: str) -> Path:
        return self.root / "_locks" / f"{quote(rid, safe='')}.lock"

    def days(self, key: str, rid: str) -> list[int]:
        """Epoch days that have a partition file on disk, sorted."""
        base = self.resource_dir(key, rid)
        if not base.is_dir():
            return []
        return sorted(
            parse_day(d.name[5:]) for d in base.iterdir() if d.name.startswith("date=") and (d / PART).exists()
        )

    def resources(self, key: str) -> list[str]:
        """RIDs that have a directory in a store, sorted: the one place a RID is read back from a path."""
        base = self.store_dir(key)
        if not base.is_dir():
            return []
        n = len(_RESOURCE_PREFIX)
        return sorted(unquote(d.name[n:]) for d in base.iterdir() if d.name.startswith(_RESOURCE_PREFIX))

    def stores(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Every store on disk with its filter: the history first, then the filtered stores by key."""
        stores: list[tuple[str, dict[str, Any] | None]] = []
        if self.store_dir(ALL).is_dir():
            stores.append((ALL, None))
        filtered = self.root / "filtered"
        if filtered.is_dir():
            for d in sorted(filtered.iterdir()):
                if not _KEY_RE.match(d.name):
                    continue
                where = None
                with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError):
                    where = orjson.loads((d / FILTER_FILE).read_bytes()).get("where")
                stores.append((d.name, where))
        return stores
