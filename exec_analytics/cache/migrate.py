"""The cache's format: created on first write, checked on every use, migrated from formats 1 and 2.

Format 3 keeps manifests and filter files under ``_meta/``, outside the data trees, and every partition file
carries ``version_key``. Formats 1 and 2 kept ``_coverage.json`` in each ``resource=`` folder (format 1 also
lacked the file records). Migrating goes resource by resource under each resource's lock, and survives a kill
at any point:

1. the manifest is written at its new place, accepting for each day both the file on disk and its
   re-encoded successor (format 1's records are first computed from the files; a file that no longer reads
   is not recorded and its day's coverage is forgotten, so the day is fetched again);
2. the files are re-encoded with ``version_key``;
3. the manifest is saved with the new files' records alone, and the old one deleted.

A run killed in between resumes from the manifest at its new place (a file already re-encoded is simply
accepted). Filter files are copied before their store's manifests and deleted after; the directory is marked
format 3 last. The sources of format 1 named the host only: they keep matching that host on any port.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..errors import CacheError
from .layout import ALL, FILTER_FILE, Layout, rid_of
from .locks import hold
from .manifest import FORMAT_VERSION, MIGRATES_FROM, FileRecord, Manifest, digest, save_manifest, version_message
from .tables import Unreadable, partition_rows, upgrade_partition

log = logging.getLogger("exec_analytics.cache")

#: Where formats 1 and 2 kept a resource's manifest, inside its data folder.
_LEGACY_MANIFEST = "_coverage.json"


def ensure_format(layout: Layout, *, create: bool, lock_timeout: float) -> bool:
    """Check (and if asked create, or migrate) the cache's format marker.

    Returns
    -------
    bool
        True when the location is a cache of this format; False when it does not exist yet and ``create`` is
        False.

    Raises
    ------
    CacheError
        For a marker that does not parse, another format that cannot be migrated, or a migration that cannot
        write.
    """
    raw = layout.storage.read(layout.marker)
    if raw is None:
        if not create:
            return False
        _write_marker(layout)
        return True
    where = layout.url("")
    try:
        version = orjson.loads(raw).get("format_version")
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise CacheError(
            f"{layout.url(layout.marker)} is unreadable ({exc}); is {where} an exec_analytics cache?"
        ) from None
    if version == FORMAT_VERSION:
        return True
    if version not in MIGRATES_FROM:
        raise CacheError(version_message(f"the cache at {where}", version))
    try:
        _migrate(layout, lock_timeout)
    except PermissionError as exc:
        raise CacheError(
            f"the cache at {where} has format {version} and must be migrated once to format {FORMAT_VERSION} "
            f"(its manifests move to _meta/ and its files gain version_key), which needs write access ({exc})"
        ) from None
    return True


def _write_marker(layout: Layout) -> None:
    doc = {
        "format_version": FORMAT_VERSION,
        "layout": "executions/resource=<rid>/date=<YYYY-MM-DD>/part-0.parquet; manifests in _meta/",
    }
    layout.storage.write(layout.marker, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def _migrate(layout: Layout, lock_timeout: float) -> None:
    storage = layout.storage
    keys = [ALL, *sorted({k.split("/")[1] for k in storage.list("filtered") if k.count("/") >= 2})]
    for key in keys:
        legacy_filter = f"{layout.store_dir(key)}/{FILTER_FILE}"
        raw = storage.read(legacy_filter)
        if raw is not None and storage.read(layout.filter_file(key)) is None:
            storage.write(layout.filter_file(key), raw)  # before any manifest: a store never lacks its filter
        where = _where(storage.read(layout.filter_file(key))) if key != ALL else None
        legacy = [k for k in storage.list(layout.store_dir(key)) if k.endswith("/" + _LEGACY_MANIFEST)]
        for k in legacy:
            rid = rid_of(k.split("/")[-2])
            if rid is None:
                continue
            with hold(storage, [(layout.lock(rid), f"resource {rid}")], lock_timeout):
                _migrate_resource(layout, key, rid, where, k)
        if raw is not None:
            storage.delete(legacy_filter)
    _write_marker(layout)


def _where(raw: bytes | None) -> dict[str, Any] | None:
    doc = orjson.loads(raw) if raw else {}
    where: dict[str, Any] | None = doc.get("where")
    return where


def _migrate_resource(layout: Layout, key: str, rid: str, where: dict[str, Any] | None, legacy: str) -> None:
    storage = layout.storage
    raw = storage.read(layout.manifest(key, rid))
    resumed = raw is not None
    if raw is None:
        raw = storage.read(legacy)
        if raw is None:  # migrated by another process meanwhile
            return
    manifest = Manifest.from_json(raw, layout.url(layout.manifest(key, rid) if resumed else legacy))
    manifest.filter = where if manifest.filter is None else manifest.filter
    lost: list[int] = []
    if manifest.files is None:  # format 1: the records are computed from the files
        manifest.files = {}
        for day in layout.days(key, rid):
            data = storage.read(layout.partition(key, rid, day)) or b""
            try:
                rows = _rows_any_format(data, layout.url(layout.partition(key, rid, day)))
            except Unreadable:
                lost.append(day)
                continue
            manifest.files[day] = (FileRecord.of(data, rows),)
        for day in lost:
            manifest.forget_day(day)
    upgraded: dict[int, tuple[bytes, FileRecord]] = {}
    for day, states in sorted(manifest.files.items()):
        found = storage.read(layout.partition(key, rid, day))
        record = (
            None if found is None else next((r for r in states if r is not None and r.blake2b == digest(found)), None)
        )
        if found is None or record is None:
            continue  # missing or replaced: left as recorded, so that the next read reports it as damaged
        path = layout.url(layout.partition(key, rid, day))
        try:
            partition_rows(found, path)
            manifest.files[day] = (record,)  # already this format (a resumed migration)
        except CacheError:
            new, rows = upgrade_partition(found, path)
            upgraded[day] = (new, FileRecord.of(new, rows))
            manifest.files[day] = (record, upgraded[day][1])
        except Unreadable:
            continue
    save_manifest(layout, key, manifest)
    for day, (data, _) in upgraded.items():
        storage.write(layout.partition(key, rid, day), data)
    for day, (_, new_record) in upgraded.items():
        manifest.files[day] = (new_record,)
    save_manifest(layout, key, manifest)
    storage.delete(legacy)
    log.info(
        "migrated %s to cache format %d (%d file(s) re-encoded, %d damaged day(s) to fetch again)",
        rid,
        FORMAT_VERSION,
        len(upgraded),
        len(lost),
    )


def _rows_any_format(data: bytes, path: str) -> int:
    try:
        return partition_rows(data, path)
    except CacheError:
        return upgrade_partition(data, path)[1]
