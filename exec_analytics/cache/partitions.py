"""Reading day partitions and checking each against its manifest record, so damage is never read as data.

Every file a read opens is read whole, hashed, and compared with the record its manifest keeps (see
:class:`~exec_analytics.cache.manifest.FileRecord`). A file the manifest records but that is missing, that
does not parse, or whose bytes differ from every state the manifest accepts is *damaged*. A file no manifest
records is a leftover (of a prune or a write that was killed, whose coverage was never claimed) and is
ignored.

Readers take no lock, so a writer may replace a file while it is being checked. The file is therefore read
before its manifest: a writer records a file's new state before it renames the file into place, so a
manifest read after the file accepts it, unless a later writer has moved on in between; then the file is
read again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..errors import CacheError
from .intervals import DAY_MS, Interval, days_of, normalise
from .layout import Layout
from .manifest import FileRecord, Manifest, digest, load_manifest
from .tables import CACHE_SCHEMA, Unreadable, partition_rows, read_partition

#: Reads of a file whose bytes match no state of its manifest before it is called damaged: each retry means
#: a writer replaced the file meanwhile, so three cover any reader that is not starved by back-to-back writes.
_ATTEMPTS = 3


@dataclass
class Scan:
    """What :func:`scan` found for one resource in one store."""

    manifest: Manifest
    #: Verified bytes of each day's file, and the record they match.
    blobs: dict[int, bytes] = field(default_factory=dict)
    records: dict[int, FileRecord] = field(default_factory=dict)
    #: Damaged days and why.
    damaged: dict[int, str] = field(default_factory=dict)
    #: Days without a file where the manifest accepts none (a new day whose first write was interrupted).
    absent: set[int] = field(default_factory=set)


def scan(layout: Layout, key: str, rid: str, days: Iterable[int], where: dict[str, Any] | None) -> Scan:
    """Read and check the files of ``days`` (those that exist or are recorded) of one resource's store.

    Raises :class:`CacheError` for a file or manifest of another format version; damage is returned, not
    raised, so that a load can fetch the day again.
    """
    todo = sorted(set(days))
    found = Scan(Manifest(rid, where))  # read in the loop, after the files
    for _ in range(_ATTEMPTS):
        got: dict[int, bytes | None] = {}
        for day in todo:
            path = layout.url(layout.partition(key, rid, day))
            try:
                got[day] = layout.storage.read(layout.partition(key, rid, day))
            except OSError as exc:
                raise CacheError(f"cannot read partition file {path} ({type(exc).__name__}: {exc})") from None
        manifest = found.manifest = load_manifest(layout, key, rid, where)
        if manifest.files is None:
            raise CacheError(
                f"coverage manifest {layout.url(layout.manifest(key, rid))} has no file records (format 1)"
            )
        again = []
        for day, data in got.items():
            states = manifest.file_states(day)
            if not states:
                continue  # no file recorded: an empty day, or a leftover nobody claims
            path = layout.url(layout.partition(key, rid, day))
            if data is None:
                if None in states:
                    found.absent.add(day)
                else:
                    found.damaged[day] = "the file is missing (deleted?), though the manifest records it"
                continue
            try:
                partition_rows(data, path)  # another format version raises here, before any hash
            except Unreadable as exc:
                found.damaged[day] = str(exc)
                continue
            record = next((r for r in states if r is not None and r.blake2b == digest(data)), None)
            if record is None:
                again.append(day)
                continue
            found.blobs[day], found.records[day] = data, record
        todo = again
        if not todo:
            break
    for day in todo:
        found.damaged[day] = "its bytes differ from the manifest's record (replaced or corrupted)"
    return found


def damage_error(layout: Layout, key: str, rid: str, found: Scan) -> CacheError:
    """The error for damaged files that cannot be fetched again here, naming each file."""
    shown = "; ".join(f"{layout.url(layout.partition(key, rid, d))}: {why}" for d, why in sorted(found.damaged.items()))
    return CacheError(
        f"cannot read partition file(s) of resource {rid}: {shown}. Load the window with a client "
        "(load_executions fetches damaged days again), or delete the resource's directory"
    )


def read_intervals(
    layout: Layout,
    key: str,
    rid: str,
    ivs: Sequence[Interval],
    columns: Sequence[str] | None,
    where: dict[str, Any] | None,
) -> pa.Table:
    """Verified rows of one resource with start in ``ivs``, opening only the partitions of the days touched.

    Damage raises :class:`CacheError` naming the files.
    """
    ivs = normalise(ivs)
    schema_ = CACHE_SCHEMA if columns is None else pa.schema([CACHE_SCHEMA.field(c) for c in columns])
    if not ivs:
        return schema_.empty_table()
    found = scan(layout, key, rid, {d for a, b in ivs for d in days_of(a, b)}, where)
    if found.damaged:
        raise damage_error(layout, key, rid, found)
    return rows_of(layout, key, rid, found.blobs, ivs, columns)


def rows_of(
    layout: Layout, key: str, rid: str, blobs: dict[int, bytes], ivs: Sequence[Interval], columns: Sequence[str] | None
) -> pa.Table:
    """Rows with start in ``ivs`` of day files already read and verified (``blobs``: bytes by epoch day)."""
    ivs = normalise(ivs)
    schema_ = CACHE_SCHEMA if columns is None else pa.schema([CACHE_SCHEMA.field(c) for c in columns])
    touched = {d for a, b in ivs for d in days_of(a, b)}
    # A partition holds exactly one UTC day, so bounds on midnights need no row filter.
    rows = None if all(a % DAY_MS == 0 and b % DAY_MS == 0 for a, b in ivs) else ivs
    tables = [
        read_partition(blobs[d], layout.url(layout.partition(key, rid, d)), rows, columns)
        for d in sorted(touched & blobs.keys())
    ]
    return pa.concat_tables(tables) if tables else schema_.empty_table()
