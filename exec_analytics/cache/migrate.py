"""The cache directory's format: created on first write, checked on every use, migrated from format 1.

Format 1 manifests had no file records. Migrating computes them from the files on disk (row count from the
footer, size, BLAKE2b of the bytes), resource by resource under each resource's lock, then marks the directory
format 2. A file that no longer reads is not recorded and its day's coverage is forgotten, so the day is
fetched again instead of silently missing rows. The sources of format 1 named the host only: they keep
matching that host on any port.
"""

from __future__ import annotations

import logging

import orjson

from ..errors import CacheError
from ..files import write_atomic
from .layout import Layout
from .locks import hold
from .manifest import FORMAT_VERSION, MIGRATES_FROM, FileRecord, load_manifest, save_manifest, version_message
from .tables import Unreadable, partition_rows

log = logging.getLogger("exec_analytics.cache")


def ensure_format(layout: Layout, *, create: bool, lock_timeout: float) -> bool:
    """Check (and if asked create, or migrate) the directory's format marker.

    Returns
    -------
    bool
        True when the directory is a cache of this format; False when it does not exist yet and
        ``create`` is False.

    Raises
    ------
    CacheError
        For a marker that does not parse, another format that cannot be migrated, or a migration that cannot
        write.
    """
    marker = layout.marker
    if not marker.exists():
        if not create:
            return False
        _write_marker(layout)
        return True
    try:
        version = orjson.loads(marker.read_bytes()).get("format_version")
    except (orjson.JSONDecodeError, AttributeError, OSError) as exc:
        raise CacheError(f"{marker} is unreadable ({exc}); is {layout.root} an exec_analytics cache?") from None
    if version == FORMAT_VERSION:
        return True
    if version not in MIGRATES_FROM:
        raise CacheError(version_message(f"the cache at {layout.root}", version))
    try:
        _migrate(layout, lock_timeout)
    except PermissionError as exc:
        raise CacheError(
            f"the cache at {layout.root} has format {version} and must be migrated once to format "
            f"{FORMAT_VERSION} (its files' records are computed), which needs write access ({exc})"
        ) from None
    return True


def _write_marker(layout: Layout) -> None:
    doc = {"format_version": FORMAT_VERSION, "layout": "executions/resource=<rid>/date=<YYYY-MM-DD>"}
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    write_atomic(layout.marker, lambda tmp: tmp.write_bytes(data))


def _migrate(layout: Layout, lock_timeout: float) -> None:
    for key, where in layout.stores():
        for rid in layout.resources(key):
            with hold([(layout.lock(rid), f"resource {rid}")], lock_timeout):
                manifest = load_manifest(layout, key, rid, where)
                if manifest.files is not None:  # migrated by another process meanwhile
                    continue
                manifest.files = {}
                lost = []
                for day in layout.days(key, rid):
                    path = layout.partition(key, rid, day)
                    data = path.read_bytes()
                    try:
                        manifest.files[day] = (FileRecord.of(data, partition_rows(data, path)),)
                    except Unreadable:
                        lost.append(day)
                for day in lost:
                    manifest.forget_day(day)
                save_manifest(layout, key, manifest)
                log.info(
                    "migrated %s to cache format %d (%d damaged day(s) to fetch again)", rid, FORMAT_VERSION, len(lost)
                )
    _write_marker(layout)
