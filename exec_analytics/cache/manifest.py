"""The manifest of one resource (and filter): which stretches were fetched and when, what each day's file holds,
and which Foundry the data came from."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..errors import CacheError
from .intervals import DAY_MS, Interval, day_name, iso, normalise, parse_day, parse_iso, subtract
from .layout import Layout

#: Version of the on-disk layout and manifests, stored in ``_cache.json`` and every manifest. A cache of
#: another version is reported (``CacheError``), never read as if it were this one; a cache of version 1 is
#: migrated on first use (its file records computed), which needs write access.
#: Version 2 added the file records (rows, bytes, BLAKE2b of each partition file) and ports to sources.
#: Version 3 moved the manifests and filter files out of the data trees (to ``_meta/``, so that every engine
#: reads ``executions/`` as a plain Parquet dataset) and added the ``version_key`` column to every file.
FORMAT_VERSION = 3
#: Versions this one migrates from.
MIGRATES_FROM = (1, 2)


@dataclass(frozen=True)
class FileRecord:
    """What one partition file holds: its row count, its size and a BLAKE2b-128 digest of its bytes."""

    rows: int
    size: int
    blake2b: str

    @classmethod
    def of(cls, data: bytes, rows: int) -> FileRecord:
        return cls(rows, len(data), digest(data))

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "bytes": self.size, "blake2b": self.blake2b}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileRecord:
        return cls(int(d["rows"]), int(d["bytes"]), str(d["blake2b"]))


def digest(data: bytes) -> str:
    """The content hash of a partition file (BLAKE2b, 128 bits: fast, and no accidental collision)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


#: The states a day's file may be in: each a record, or None for "no file". One state normally; two while a
#: write is under way (the old one and the new one), so a reader, or a crash between the two renames, never
#: mistakes either legitimate version for a damaged file.
FileStates = tuple[FileRecord | None, ...]


@dataclass(frozen=True)
class Entry:
    """``[start, end)`` was read completely as far as the server listed it at ``fetched_at`` (epoch ms)."""

    start: int
    end: int
    fetched_at: int

    def settled(self, lag_ms: int, now_ms: int) -> Interval | None:
        """The settled part: before ``fetched_at - lag``; none when ``fetched_at`` is after ``now`` (a skewed
        clock wrote it, so what it claims cannot be trusted to have settled)."""
        if self.fetched_at > now_ms:
            return None
        end = min(self.end, self.fetched_at - lag_ms)
        return (self.start, end) if end > self.start else None


@dataclass
class Manifest:
    resource_rid: str
    filter: dict[str, Any] | None
    source: str | None = None
    entries: list[Entry] = field(default_factory=list)
    #: Partition file records by epoch day; a day without a record has no rows (or only a leftover file
    #: that no manifest claims, which readers ignore). None: a version-1 manifest, not yet migrated.
    files: dict[int, FileStates] | None = field(default_factory=dict)

    def settled(self, lag_ms: int, now_ms: int) -> list[Interval]:
        return normalise(iv for e in self.entries if (iv := e.settled(lag_ms, now_ms)) is not None)

    def future(self, now_ms: int) -> list[Entry]:
        """Entries fetched after ``now``: written under a clock that ran ahead."""
        return [e for e in self.entries if e.fetched_at > now_ms]

    def covered(self) -> list[Interval]:
        return normalise((e.start, e.end) for e in self.entries)

    def record(self, fetched: Sequence[Interval], fetched_at: int, lag_ms: int) -> None:
        """Mark ``fetched`` as read at ``fetched_at``: newer reads replace older ones where they overlap."""
        kept: list[Entry] = []
        for e in self.entries:
            kept += [Entry(a, b, e.fetched_at) for a, b in subtract([(e.start, e.end)], fetched)]
        kept += [Entry(a, b, fetched_at) for a, b in normalise(fetched)]
        kept.sort(key=lambda e: e.start)
        # Join neighbours read at the same time, or both wholly settled (the later read time is kept, so the
        # joined stretch is wholly settled too): the manifest stays one entry per stretch, not one per load.
        # A stretch once settled therefore stays settled if settle_lag is raised later; refresh re-reads it.
        joined: list[Entry] = []
        for e in kept:
            if joined and joined[-1].end == e.start:
                prev = joined[-1]
                if prev.fetched_at == e.fetched_at or (
                    prev.end <= prev.fetched_at - lag_ms and e.end <= e.fetched_at - lag_ms
                ):
                    joined[-1] = Entry(prev.start, e.end, max(prev.fetched_at, e.fetched_at))
                    continue
            joined.append(e)
        self.entries = joined

    def file_states(self, day: int) -> FileStates:
        return (self.files or {}).get(day, ())

    def forget_day(self, day: int) -> None:
        """Drop the coverage and the file record of one day: it will be fetched again, its file rewritten."""
        self.entries = [
            Entry(a, b, e.fetched_at)
            for e in self.entries
            for a, b in subtract([(e.start, e.end)], [(day * DAY_MS, (day + 1) * DAY_MS)])
        ]
        if self.files is not None:
            self.files.pop(day, None)

    def trim_before(self, cut: int) -> None:
        """Forget everything before ``cut`` (epoch ms): the coverage, and the records of the days wholly before it."""
        self.entries = [Entry(max(e.start, cut), e.end, e.fetched_at) for e in self.entries if e.end > cut]
        if self.files is not None:
            self.files = {d: s for d, s in self.files.items() if (d + 1) * DAY_MS > cut}

    def to_json(self) -> bytes:
        files = self.files or {}
        return orjson.dumps(
            {
                "format_version": FORMAT_VERSION,
                "resource_rid": self.resource_rid,
                "filter": self.filter,
                "source": self.source,
                "coverage": [
                    {"start": iso(e.start), "end": iso(e.end), "fetched_at": iso(e.fetched_at)} for e in self.entries
                ],
                "files": {
                    day_name(d): [None if r is None else r.to_dict() for r in states]
                    for d, states in sorted(files.items())
                },
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes, path: str) -> Manifest:
        """Parse a manifest (``path`` names it in errors); one of version 1 comes back with ``files=None``."""
        try:
            doc = orjson.loads(raw)
            version = doc.get("format_version")
            if version != FORMAT_VERSION and version not in MIGRATES_FROM:
                raise CacheError(version_message(f"coverage manifest {path}", version))
            entries = [
                Entry(parse_iso(c["start"]), parse_iso(c["end"]), parse_iso(c["fetched_at"])) for c in doc["coverage"]
            ]
            files: dict[int, FileStates] | None = None
            if version != 1:
                files = {
                    parse_day(d): tuple(None if r is None else FileRecord.from_dict(r) for r in states)
                    for d, states in doc["files"].items()
                }
            return cls(doc["resource_rid"], doc.get("filter"), doc.get("source"), entries, files)
        except CacheError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CacheError(
                f"coverage manifest {path} is unreadable ({type(exc).__name__}: {exc}); "
                f"delete it to have its resource fetched again"
            ) from None


def load_manifest(layout: Layout, key: str, rid: str, where: dict[str, Any] | None) -> Manifest:
    """The manifest of one resource in one store; an empty one when there is none yet."""
    raw = layout.storage.read(layout.manifest(key, rid))
    if raw is None:
        return Manifest(rid, where)
    return Manifest.from_json(raw, layout.url(layout.manifest(key, rid)))


def save_manifest(layout: Layout, key: str, manifest: Manifest) -> None:
    """Replace a manifest atomically and durably. Only under the resource's lock."""
    layout.storage.write(layout.manifest(key, manifest.resource_rid), manifest.to_json())


def origin(base_url: str) -> str:
    """The source a cache records for data from ``base_url``: ``host:port`` (the default port spelled out).

    Parameters
    ----------
    base_url : str
        A client's base URL, e.g. ``https://acme.palantirfoundry.com`` or ``http://127.0.0.1:8765``.

    Returns
    -------
    str
        e.g. ``acme.palantirfoundry.com:443``, ``127.0.0.1:8765``, ``[::1]:8765``.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def same_source(recorded: str, source: str) -> bool:
    """Whether data recorded from ``recorded`` and data from ``source`` come from the same Foundry.

    Version-1 manifests recorded the host alone; such a record matches that host on any port.
    """
    host = source.rpartition(":")[0].strip("[]")
    return recorded in (source, host)


def version_message(what: str, version: object, reads: int = FORMAT_VERSION) -> str:
    if isinstance(version, int) and version > reads:
        hint = "it was written by a newer exec_analytics: upgrade, or point this one at another cache directory"
    else:
        hint = (
            "it was written by an older exec_analytics and cannot be migrated: move the directory aside "
            "(or delete it) and load again"
        )
    return f"{what} has cache format {version!r}, this exec_analytics reads format {reads}; {hint}"
