"""The coverage manifest: which stretches of one resource (and filter) were fetched, and when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import CacheError
from .intervals import Interval, iso, normalise, parse_iso, subtract

#: Version of the on-disk layout and file schema. Stored in ``_cache.json`` and in every file's metadata; a
#: cache or file of another version is reported (``CacheError``), never read as if it were this one.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """``[start, end)`` was read completely as far as the server listed it at ``fetched_at`` (epoch ms)."""

    start: int
    end: int
    fetched_at: int

    def settled(self, lag_ms: int) -> Interval | None:
        end = min(self.end, self.fetched_at - lag_ms)
        return (self.start, end) if end > self.start else None


@dataclass
class Manifest:
    resource_rid: str
    filter: dict[str, Any] | None
    source: str | None = None
    entries: list[Entry] = field(default_factory=list)

    def settled(self, lag_ms: int) -> list[Interval]:
        return normalise(iv for e in self.entries if (iv := e.settled(lag_ms)) is not None)

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

    def trim_before(self, cut: int) -> None:
        self.entries = [Entry(max(e.start, cut), e.end, e.fetched_at) for e in self.entries if e.end > cut]

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "format_version": FORMAT_VERSION,
                "resource_rid": self.resource_rid,
                "filter": self.filter,
                "source": self.source,
                "coverage": [
                    {"start": iso(e.start), "end": iso(e.end), "fetched_at": iso(e.fetched_at)} for e in self.entries
                ],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> Manifest:
        try:
            doc = orjson.loads(raw)
            version = doc.get("format_version")
            if version != FORMAT_VERSION:
                raise CacheError(version_message(f"coverage manifest {path}", version))
            entries = [
                Entry(parse_iso(c["start"]), parse_iso(c["end"]), parse_iso(c["fetched_at"])) for c in doc["coverage"]
            ]
            return cls(doc["resource_rid"], doc.get("filter"), doc.get("source"), entries)
        except CacheError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CacheError(
                f"coverage manifest {path} is unreadable ({type(exc).__name__}: {exc}); "
                f"delete it to have its resource fetched again"
            ) from None


def version_message(what: str, version: object) -> str:
    if isinstance(version, int) and version > FORMAT_VERSION:
        hint = "it was written by a newer exec_analytics: upgrade, or point this one at another cache directory"
    else:
        hint = (
            "it was written by an older exec_analytics and cannot be migrated: move the directory aside "
            "(or delete it) and load again"
        )
    return f"{what} has cache format {version!r}, this exec_analytics reads format {FORMAT_VERSION}; {hint}"
