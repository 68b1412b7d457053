"""The fleet file: the resources a team keeps a history of, with their names, owners and SLOs, in TOML.

Example::

    # fleet.toml
    cache = "history"            # a directory (relative to this file) or an object-store URL (s3://...)
    token_kind = "user"          # "user" (5,000 requests/min, 30 in flight) or "service" (800 in flight)
    days = 30                    # the window every sync brings up to date, ending now

    [limits]                     # optional: stay below the documented limits of token_kind
    requests_per_minute = 4000
    in_flight = 20

    [[resources]]
    rid = "ri.function-registry.main.function.3d68f9a7-deb4-492f-a52b-fc67425d22f6"
    name = "pricing"
    owner = "pricing-team@example.com"
    slo = 0.995
    tags = ["tier-1", "checkout"]

Every mistake is reported with the file, the line when it can be found, and the key: unknown keys, a
missing or malformed RID (:func:`exec_analytics.rids.validate_rid`), the same RID or name twice, an SLO
outside (0, 1), a wrong type.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .client.limiter import TOKEN_KINDS, Limits
from .rids import validate_rid

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_DAYS", "Fleet", "FleetFileError", "FleetResource", "load_fleet"]

#: Days a sync brings up to date by default: about what Foundry retains.
DEFAULT_DAYS = 30

_TOP_KEYS = {"cache", "token_kind", "days", "limits", "resources"}
_LIMIT_KEYS = {"requests_per_minute", "in_flight"}
_RESOURCE_KEYS = {"rid", "name", "owner", "slo", "tags"}
#: ``scheme://`` of an object-store URL (kept as written, never resolved against the file's directory).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class FleetFileError(ValueError):
    """A fleet file that cannot be used; the message names the file, the line when known, and the key."""


@dataclass(frozen=True)
class FleetResource:
    """One resource of the fleet.

    Attributes
    ----------
    rid : str
        Function or automation RID.
    name : str
        Display name, unique in the fleet (the RID when the file gives none).
    owner : str or None
        Who answers for it.
    slo : float or None
        Success-rate objective in (0, 1).
    tags : tuple of str
        Free labels.
    """

    rid: str
    name: str
    owner: str | None = None
    slo: float | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fleet:
    """A parsed, validated fleet file.

    Attributes
    ----------
    resources : tuple of FleetResource
        In file order.
    cache : str or None
        The history's location: an absolute directory, or an object-store URL as written; None for the
        default cache directory.
    token_kind : str
        ``"user"`` or ``"service"``.
    limits : Limits
        The token kind's documented limits, with the file's overrides.
    days : int
        The window a sync brings up to date, ending now.
    path : Path or None
        The file it was read from.
    """

    resources: tuple[FleetResource, ...]
    cache: str | None = None
    token_kind: str = "user"
    limits: Limits = field(default_factory=lambda: TOKEN_KINDS["user"])
    days: int = DEFAULT_DAYS
    path: Path | None = None

    @property
    def rids(self) -> list[str]:
        """The RIDs, in file order."""
        return [r.rid for r in self.resources]

    @property
    def names(self) -> dict[str, str]:
        """RID -> display name, for outputs that show names instead of RIDs."""
        return {r.rid: r.name for r in self.resources}

    def resource(self, rid: str) -> FleetResource:
        """The resource with this RID.

        Returns
        -------
        FleetResource

        Raises
        ------
        KeyError
            When the fleet has no such resource.
        """
        for r in self.resources:
            if r.rid == rid:
                return r
        raise KeyError(f"{rid!r} is not in the fleet{f' {self.path}' if self.path else ''}")


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Read and validate a fleet file.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML file. A relative ``cache`` directory in it is taken relative to the file's directory, so a
        job started from any working directory (cron) finds the same history.

    Returns
    -------
    Fleet

    Raises
    ------
    FleetFileError
        On a file that cannot be read or parsed, or any invalid content (the message names file, line, key).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetFileError(f"{file}: cannot read the fleet file: {type(exc).__name__}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(f"{file}: not valid TOML: {exc}") from None
    return _Parser(file, text).fleet(data)


class _Parser:
    """Validation with the line of each key, found by a scan of the text (tomllib gives values only)."""

    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        n_resources = 0
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if re.match(r"^\[\[\s*resources\s*\]\]", stripped):
                table = ("resources", str(n_resources))
                n_resources += 1
                self.lines.setdefault(table, number)
            elif m := re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", stripped):
                table = (m.group(1),)
                self.lines.setdefault(table, number)
            elif m := re.match(r"^([A-Za-z0-9_-]+)\s*=", stripped):
                self.lines.setdefault((*table, m.group(1)), number)

    def error(self, where: tuple[str, ...], problem: str) -> FleetFileError:
        line = None
        for n in range(len(where), 0, -1):  # the key's own line, else its table's
            line = self.lines.get(where[:n])
            if line is not None:
                break
        key = ".".join(f"[{p}]" if p.isdigit() else p for p in where).replace(".[", "[")
        return FleetFileError(f"{self.file}{f':{line}' if line else ''}: {key}: {problem}")

    def unknown(self, table: Mapping[str, Any], allowed: set[str], where: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise self.error((*where, key), f"unknown key; expected one of {', '.join(sorted(allowed))}")

    def string(self, value: Any, where: tuple[str, ...]) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"must be a non-empty string, got {value!r:.60}")
        return value.strip()

    def positive(self, value: Any, where: tuple[str, ...]) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(where, f"must be a positive integer, got {value!r:.60}")
        return value

    def fleet(self, data: dict[str, Any]) -> Fleet:
        self.unknown(data, _TOP_KEYS, ())
        kind = data.get("token_kind", "user")
        if kind not in TOKEN_KINDS:
            raise self.error(("token_kind",), f"must be one of {', '.join(TOKEN_KINDS)}, got {kind!r:.60}")
        limits = TOKEN_KINDS[kind]
        overrides = data.get("limits", {})
        if not isinstance(overrides, dict):
            raise self.error(("limits",), "must be a table")
        self.unknown(overrides, _LIMIT_KEYS, ("limits",))
        if "requests_per_minute" in overrides:
            per_minute = self.positive(overrides["requests_per_minute"], ("limits", "requests_per_minute"))
            limits = replace(limits, per_minute=per_minute)
        if "in_flight" in overrides:
            limits = replace(limits, in_flight=self.positive(overrides["in_flight"], ("limits", "in_flight")))
        cache = None
        if "cache" in data:
            cache = self.string(data["cache"], ("cache",))
            if not _URL.match(cache):
                cache = str((self.file.parent / Path(cache).expanduser()).absolute())
        days = self.positive(data.get("days", DEFAULT_DAYS), ("days",))
        resources = data.get("resources")
        if not isinstance(resources, list) or not resources:
            raise self.error(("resources",), "the fleet needs at least one [[resources]] table")
        parsed = [self.resource(r, i) for i, r in enumerate(resources)]
        self.distinct(parsed, "rid")
        self.distinct(parsed, "name")
        return Fleet(tuple(parsed), cache, kind, limits, days, self.file)

    def resource(self, table: Any, i: int) -> FleetResource:
        where = ("resources", str(i))
        if not isinstance(table, dict):
            raise self.error(where, "must be a table")
        self.unknown(table, _RESOURCE_KEYS, where)
        if "rid" not in table:
            raise self.error(where, "missing key 'rid'")
        try:
            rid = validate_rid(table["rid"], "rid")
        except (TypeError, ValueError) as exc:
            raise self.error((*where, "rid"), str(exc)) from None
        name = self.string(table["name"], (*where, "name")) if "name" in table else rid
        owner = self.string(table["owner"], (*where, "owner")) if "owner" in table else None
        slo = table.get("slo")
        if slo is not None and (isinstance(slo, bool) or not isinstance(slo, (int, float)) or not 0 < slo < 1):
            raise self.error((*where, "slo"), f"must be a success rate strictly between 0 and 1, got {slo!r:.60}")
        tags = table.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise self.error((*where, "tags"), "must be a list of non-empty strings")
        return FleetResource(rid, name, owner, None if slo is None else float(slo), tuple(tags))

    def distinct(self, resources: list[FleetResource], key: str) -> None:
        first: dict[str, int] = {}
        for i, r in enumerate(resources):
            value = getattr(r, key)
            if value in first:
                j = first[value]
                line = self.lines.get(("resources", str(j), key), self.lines.get(("resources", str(j))))
                at = f" (line {line})" if line else ""
                raise self.error(
                    ("resources", str(i), key), f"{value!r} is already used by resources[{j}]{at}; each {key} once"
                )
            first[value] = i
