"""Where a cache keeps things: the keys of stores, resources, day partitions, manifests and locks.

Nothing here reads or writes executions or manifests; :class:`Layout` only names keys (``/``-separated paths
relative to the cache's root) and lists what its :class:`~exec_analytics.cache.storage.Storage` holds. The data
trees (``executions/``, ``filtered/<key>/``) hold Parquet files only, so any engine can read them as a
dataset; everything else lives beside them, under ``_meta/`` and ``_locks/``.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson

from .intervals import day_name, parse_day
from .storage import Storage

PART = "part-0.parquet"
FILTER_FILE = "_filter.json"
ROOT_FILE = "_cache.json"
META = "_meta"
#: The store key of the unfiltered history.
ALL = "all"
_KEY_RE = re.compile(r"^f-[0-9a-f]{16}$")
_RESOURCE_PREFIX = "resource="
_DATE_PREFIX = "date="


def resource_part(rid: str) -> str:
    """``resource=<rid>``: hive values are URL-escaped the way Spark escapes them; a RID needs none, but '/'
    or '=' would break the layout."""
    return f"{_RESOURCE_PREFIX}{quote(rid, safe='')}"


def rid_of(name: str) -> str | None:
    """The RID of a ``resource=<rid>`` name (a folder, or a manifest without its ``.json``), else None."""
    return unquote(name[len(_RESOURCE_PREFIX) :]) if name.startswith(_RESOURCE_PREFIX) else None


@dataclass(frozen=True)
class Layout:
    """The keys of one cache (see :mod:`exec_analytics.cache` for the tree)."""

    storage: Storage

    @property
    def marker(self) -> str:
        """``_cache.json``: the format version of the whole cache."""
        return ROOT_FILE

    def store_dir(self, key: str) -> str:
        """The data tree of the history (``key == ALL``) or of one filter's store."""
        return "executions" if key == ALL else f"filtered/{key}"

    def meta_dir(self, key: str) -> str:
        """Where the manifests (and the filter) of a store live, outside its data tree."""
        return f"{META}/{self.store_dir(key)}"

    def filter_file(self, key: str) -> str:
        return f"{self.meta_dir(key)}/{FILTER_FILE}"

    def resource_dir(self, key: str, rid: str) -> str:
        return f"{self.store_dir(key)}/{resource_part(rid)}"

    def manifest(self, key: str, rid: str) -> str:
        return f"{self.meta_dir(key)}/{resource_part(rid)}.json"

    def partition(self, key: str, rid: str, day: int) -> str:
        return f"{self.resource_dir(key, rid)}/{_DATE_PREFIX}{day_name(day)}/{PART}"

    def lock(self, rid: str) -> str:
        return f"_locks/{quote(rid, safe='')}.lock"

    def url(self, key: str) -> str:
        """A key as messages name it: a local path or an ``s3://`` URL."""
        return self.storage.url(key)

    def days(self, key: str, rid: str) -> list[int]:
        """Epoch days that have a partition file, sorted (one listing)."""
        out = []
        for k in self.storage.list(self.resource_dir(key, rid)):
            folder, _, name = k.rpartition("/")
            day = folder.rpartition("/")[2]
            if name == PART and day.startswith(_DATE_PREFIX):
                out.append(parse_day(day[len(_DATE_PREFIX) :]))
        return sorted(out)

    def resources(self, key: str) -> list[str]:
        """RIDs that have a manifest in a store, sorted: the one place a RID is read back from a key."""
        base = self.meta_dir(key) + "/"
        rids = []
        for k in self.storage.list(self.meta_dir(key)):
            name = k[len(base) :]
            if "/" not in name and name.endswith(".json") and (rid := rid_of(name[: -len(".json")])) is not None:
                rids.append(rid)
        return sorted(rids)

    def stores(self) -> list[tuple[str, dict[str, Any] | None]]:
        """Every store that has manifests, with its filter: the history first, then the filtered stores by key."""
        keys: set[str] = set()
        for k in self.storage.list(META):
            parts = k.split("/")
            if parts[1:2] == ["executions"]:
                keys.add(ALL)
            elif len(parts) == 4 and parts[1] == "filtered" and _KEY_RE.match(parts[2]):
                keys.add(parts[2])
        out: list[tuple[str, dict[str, Any] | None]] = []
        for key in sorted(keys, key=lambda k: (k != ALL, k)):
            where = None
            if key != ALL:
                with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
                    where = orjson.loads(self.storage.read(self.filter_file(key)) or b"{}").get("where")
            out.append((key, where))
        return out
