"""The ``where`` filter of listExecutions: the ExecutionFilter union, validated locally.

The API rejects a bad filter with 400 ``InvalidExecutionFilter`` and little detail; validating here gives a
``ValueError`` that names the offending path before any request is made. The same rules serve the
simulator, so the server and the client can never disagree about what is valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from fractions import Fraction
from typing import Any

import orjson

from .schema import API_FIELDS

__all__ = [
    "DURATION_UNITS",
    "FIELD_OPERATORS",
    "Filter",
    "all_of",
    "any_of",
    "as_where",
    "caller",
    "caller_in",
    "duration_at_least",
    "duration_at_most",
    "eq",
    "failure_reason",
    "failure_reason_in",
    "in_",
    "is_null",
    "not_",
    "status",
    "status_in",
    "validate_filter",
    "version",
    "version_in",
]

#: Which operators each filterable field allows (docs/endpoint.md, "Filters").
FIELD_OPERATORS: dict[str, frozenset[str]] = {
    "status": frozenset({"eq", "in"}),
    "duration": frozenset({"gte", "lte"}),
    "userId": frozenset({"eq", "in", "isNull"}),
    "callerRid": frozenset({"eq", "in", "isNull"}),
    "resourceVersion": frozenset({"eq", "in"}),
    "failureReason": frozenset({"eq", "in"}),
    "foundryTraceId": frozenset({"eq", "in"}),
    "traceOwningRid": frozenset({"eq", "in"}),
}

#: Units a duration filter accepts, in milliseconds.
DURATION_UNITS: dict[str, int] = {
    "MILLISECONDS": 1,
    "SECONDS": 1_000,
    "MINUTES": 60_000,
    "HOURS": 3_600_000,
}

_LEAF_KEYS = {
    "eq": {"type", "field", "value"},
    "in": {"type", "field", "value"},
    "gte": {"type", "field", "value"},
    "lte": {"type", "field", "value"},
    "isNull": {"type", "field"},
}
_COMPOUND_KEYS = {"and": {"type", "filters"}, "or": {"type", "filters"}, "not": {"type", "filter"}}
_MAX_DEPTH = 32


def validate_filter(where: Mapping[str, Any], *, path: str = "where") -> dict[str, Any]:
    """Check an ExecutionFilter and return it as a plain dict.

    Parameters
    ----------
    where : mapping
        One member of the ExecutionFilter union, e.g.
        ``{"type": "eq", "field": "status", "value": "FAILED"}``.
    path : str
        Where this filter sits, used in error messages (``where.filters[1].field``).

    Returns
    -------
    dict
        A deep copy made of plain dicts and lists, safe to serialise.

    Raises
    ------
    ValueError
        Naming the path and what is allowed, when the filter is not one the API accepts.
    """
    return _validate(where, path, 0)


def _validate(node: Any, path: str, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        raise ValueError(f"{path}: filter nests deeper than {_MAX_DEPTH} levels")
    if not isinstance(node, Mapping):
        raise ValueError(f"{path}: a filter must be an object with a 'type', got {type(node).__name__}")
    kind = node.get("type")
    allowed = _LEAF_KEYS.get(kind) or _COMPOUND_KEYS.get(kind)  # type: ignore[arg-type]
    if allowed is None:
        known = ", ".join(sorted([*_LEAF_KEYS, *_COMPOUND_KEYS]))
        raise ValueError(f"{path}.type: {kind!r} is not a filter type; expected one of {known}")
    missing = allowed - set(node)
    extra = set(node) - allowed
    if missing:
        raise ValueError(f"{path}: a {kind!r} filter needs {', '.join(sorted(missing))}")
    if extra:
        raise ValueError(f"{path}: a {kind!r} filter does not take {', '.join(sorted(map(str, extra)))}")

    if kind in ("and", "or"):
        filters = node["filters"]
        if not isinstance(filters, (list, tuple)):
            raise ValueError(f"{path}.filters: must be a list of filters")
        children = [_validate(f, f"{path}.filters[{i}]", depth + 1) for i, f in enumerate(filters)]
        return {"type": kind, "filters": children}
    if kind == "not":
        return {"type": "not", "filter": _validate(node["filter"], f"{path}.filter", depth + 1)}

    field = node["field"]
    if field not in FIELD_OPERATORS:
        raise ValueError(f"{path}.field: {field!r} is not filterable; expected one of {', '.join(FIELD_OPERATORS)}")
    if kind not in FIELD_OPERATORS[field]:
        ops = ", ".join(sorted(FIELD_OPERATORS[field]))
        raise ValueError(f"{path}: field {field!r} does not allow {kind!r}; it allows {ops}")
    if kind == "isNull":
        return {"type": kind, "field": field}
    value = node["value"]
    if kind == "eq":
        if not isinstance(value, str):
            raise ValueError(f"{path}.value: {field!r} eq needs a string, got {type(value).__name__}")
        return {"type": kind, "field": field, "value": value}
    if kind == "in":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{path}.value: {field!r} in needs a list of strings")
        return {"type": kind, "field": field, "value": list(value)}
    # gte / lte on duration
    if not isinstance(value, Mapping) or set(value) != {"unit", "value"}:
        raise ValueError(f"{path}.value: a duration bound is {{'unit': ..., 'value': int >= 0}}")
    unit, amount = value["unit"], value["value"]
    if unit not in DURATION_UNITS:
        raise ValueError(f"{path}.value.unit: {unit!r} is not one of {', '.join(DURATION_UNITS)}")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError(f"{path}.value.value: must be an integer >= 0, got {amount!r}")
    return {"type": kind, "field": field, "value": {"unit": unit, "value": amount}}


# ---------------------------------------------------------------------------------------------------------
# Readable builders
# ---------------------------------------------------------------------------------------------------------

# Our column names as well as the API's field names are accepted wherever a field is named. The column names
# come from the one field map, schema.API_FIELDS; userId is a filter only, never a column.
_FIELD_ALIASES: dict[str, str] = {column: api for api, column in API_FIELDS.items() if api in FIELD_OPERATORS}
_FIELD_ALIASES["user_id"] = "userId"


def _api_field(field: str) -> str:
    if not isinstance(field, str):
        raise TypeError(f"field: expected a field name (str), got {type(field).__name__}")
    if field in FIELD_OPERATORS:
        return field
    if field in _FIELD_ALIASES:
        return _FIELD_ALIASES[field]
    raise ValueError(f"field: {field!r} is not filterable; expected one of {', '.join(FIELD_OPERATORS)}")


def _canonical(node: Mapping[str, Any]) -> bytes:
    return orjson.dumps(node, option=orjson.OPT_SORT_KEYS)


class Filter:
    """An immutable, validated ExecutionFilter.

    Build one with the functions of this module (:func:`status`, :func:`duration_at_least`, …) and combine
    with ``&`` (and), ``|`` (or) and ``~`` (not). :meth:`to_dict` gives the JSON-ready ``where`` body.

    Examples
    --------
    >>> f = status("FAILED") & duration_at_least(30, "SECONDS")
    >>> f.to_dict()["type"]
    'and'
    """

    __slots__ = ("_key", "_node")
    _key: bytes
    _node: dict[str, Any]

    def __init__(self, node: Mapping[str, Any]) -> None:
        validated = validate_filter(node)
        object.__setattr__(self, "_node", validated)
        object.__setattr__(self, "_key", _canonical(validated))

    @classmethod
    def from_dict(cls, where: Mapping[str, Any]) -> Filter:
        """Validate a raw ExecutionFilter dict and wrap it."""
        return cls(where)

    def to_dict(self) -> dict[str, Any]:
        """The filter as a fresh JSON-ready dict (a copy: mutating it does not change the filter)."""
        return validate_filter(self._node)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Filter is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Filter is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __and__(self, other: Filter | Mapping[str, Any]) -> Filter:
        return all_of(self, other)

    def __rand__(self, other: Mapping[str, Any]) -> Filter:
        return all_of(other, self)

    def __or__(self, other: Filter | Mapping[str, Any]) -> Filter:
        return any_of(self, other)

    def __ror__(self, other: Mapping[str, Any]) -> Filter:
        return any_of(other, self)

    def __invert__(self) -> Filter:
        return not_(self)

    def __repr__(self) -> str:
        text = _describe(self._node)
        if self._node["type"] in ("and", "or"):
            text = text[1:-1]  # the outermost parentheses add nothing
        return f"Filter({text})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Filter, (self._node,))


def _describe(node: Mapping[str, Any]) -> str:
    kind = node["type"]
    if kind in ("and", "or"):
        joiner = " & " if kind == "and" else " | "
        return "(" + joiner.join(_describe(f) for f in node["filters"]) + ")"
    if kind == "not":
        return f"~{_describe(node['filter'])}"
    field = node["field"]
    if kind == "isNull":
        return f"{field} is null"
    value = node["value"]
    if kind == "eq":
        return f"{field} == {value!r}"
    if kind == "in":
        return f"{field} in {value!r}"
    op = ">=" if kind == "gte" else "<="
    return f"{field} {op} {value['value']} {value['unit']}"


def _coerce(obj: Filter | Mapping[str, Any], where: str) -> Filter:
    if isinstance(obj, Filter):
        return obj
    if isinstance(obj, Mapping):
        try:
            return Filter(obj)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    raise TypeError(f"{where}: expected a Filter or an ExecutionFilter dict, got {type(obj).__name__}")


def _string_values(values: tuple[Any, ...], name: str) -> list[str]:
    # Accept both in_("status", "A", "B") and in_("status", ["A", "B"]); a lone string is one value.
    if len(values) == 1 and not isinstance(values[0], str):
        try:
            values = tuple(values[0])
        except TypeError:
            raise TypeError(f"{name}: expected strings or an iterable of strings") from None
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{name}: every value must be a str, got {type(bad[0]).__name__} ({bad[0]!r})")
    if not values:
        raise ValueError(f"{name}: needs at least one value")
    return list(dict.fromkeys(values))


def eq(field: str, value: str) -> Filter:
    """``field == value``. ``field`` is an API name (``callerRid``) or a column name (``caller_rid``)."""
    return Filter({"type": "eq", "field": _api_field(field), "value": value})


def in_(field: str, *values: str | Iterable[str]) -> Filter:
    """``field`` is one of ``values`` (given as arguments or as one iterable). Repeats are dropped."""
    return Filter({"type": "in", "field": _api_field(field), "value": _string_values(values, "values")})


def is_null(field: str) -> Filter:
    """``field`` is absent (only ``callerRid`` and ``userId`` allow it)."""
    return Filter({"type": "isNull", "field": _api_field(field)})


def status(value: str) -> Filter:
    """Executions whose status is ``value`` (e.g. ``"FAILED"``)."""
    return eq("status", value)


def status_in(*values: str | Iterable[str]) -> Filter:
    """Executions whose status is one of ``values``."""
    return in_("status", *values)


def caller(rid: str) -> Filter:
    """Executions called by ``rid``."""
    return eq("callerRid", rid)


def caller_in(*rids: str | Iterable[str]) -> Filter:
    """Executions called by any of ``rids``."""
    return in_("callerRid", *rids)


def version(value: str) -> Filter:
    """Executions of resource version ``value`` (e.g. ``"1.2.0"``)."""
    return eq("resourceVersion", value)


def version_in(*values: str | Iterable[str]) -> Filter:
    """Executions of any of the resource versions ``values``."""
    return in_("resourceVersion", *values)


def failure_reason(value: str) -> Filter:
    """Executions with failure reason ``value`` (e.g. ``"timeout"``)."""
    return eq("failureReason", value)


def failure_reason_in(*values: str | Iterable[str]) -> Filter:
    """Executions with any of the failure reasons ``values``."""
    return in_("failureReason", *values)


def _duration_bound(kind: str, value: Any, unit: str, name: str) -> Filter:
    if hasattr(value, "to_pytimedelta"):  # pandas.Timedelta, numpy timedelta64 via pandas
        value = value.to_pytimedelta()
    if isinstance(value, timedelta):
        amount, unit = Fraction(value // timedelta(microseconds=1), 1000), "MILLISECONDS"
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: value must be a number or a timedelta, got {type(value).__name__}")
    else:
        if unit not in DURATION_UNITS:
            raise ValueError(f"{name}: unit {unit!r} is not one of {', '.join(DURATION_UNITS)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: value must be finite, got {value!r}")
        amount = Fraction(value)
    if amount < 0:
        raise ValueError(f"{name}: value must be >= 0, got {value!r}")
    if amount.denominator != 1:
        # The API takes whole numbers. Reported durations are whole milliseconds at the finest, so rounding
        # the bound to milliseconds (up for >=, down for <=) keeps exactly the same executions.
        millis = amount * DURATION_UNITS[unit]
        amount = Fraction(math.ceil(millis) if kind == "gte" else math.floor(millis))
        unit = "MILLISECONDS"
    return Filter({"type": kind, "field": "duration", "value": {"unit": unit, "value": int(amount)}})


def duration_at_least(value: float | Any, unit: str = "SECONDS") -> Filter:
    """Executions that took at least ``value`` ``unit`` (inclusive).

    ``value`` may be an int, a float (converted to whole milliseconds, rounding up) or a timedelta
    (``unit`` is then ignored). Units: MILLISECONDS, SECONDS, MINUTES, HOURS.
    """
    return _duration_bound("gte", value, unit, "duration_at_least")


def duration_at_most(value: float | Any, unit: str = "SECONDS") -> Filter:
    """Executions that took at most ``value`` ``unit`` (inclusive); floats round down to milliseconds."""
    return _duration_bound("lte", value, unit, "duration_at_most")


def _combine(kind: str, filters: tuple[Filter | Mapping[str, Any], ...], name: str) -> Filter:
    if len(filters) == 1 and not isinstance(filters[0], (Filter, Mapping)):
        filters = tuple(filters[0])  # all_of([a, b]) as well as all_of(a, b)
    parts = [_coerce(f, f"{name}[{i}]") for i, f in enumerate(filters)]
    if not parts:
        raise ValueError(f"{name}: needs at least one filter")
    if len(parts) == 1:
        return parts[0]
    children: list[dict[str, Any]] = []
    for part in parts:
        node = part._node
        # (a & b) & c is and(a, b, c): flatter trees, same meaning.
        children.extend(node["filters"] if node["type"] == kind else [node])
    return Filter({"type": kind, "filters": children})


def all_of(*filters: Filter | Mapping[str, Any]) -> Filter:
    """Executions matching every filter (``and``). One filter is returned as is."""
    return _combine("and", filters, "all_of")


def any_of(*filters: Filter | Mapping[str, Any]) -> Filter:
    """Executions matching at least one filter (``or``). One filter is returned as is."""
    return _combine("or", filters, "any_of")


def not_(f: Filter | Mapping[str, Any]) -> Filter:
    """Executions not matching ``f``. ``not_(not_(f))`` is ``f``."""
    inner = _coerce(f, "not_")
    node = inner._node
    if node["type"] == "not":
        return Filter(node["filter"])
    return Filter({"type": "not", "filter": node})


def as_where(obj: Filter | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Normalise a ``where`` argument: None, a :class:`Filter` or a raw ExecutionFilter dict.

    Parameters
    ----------
    obj : Filter, mapping or None
        What the caller passed as ``where``.

    Returns
    -------
    dict or None
        The validated filter as a fresh plain dict (a raw dict keeps its meaning exactly), or None.

    Raises
    ------
    ValueError
        Naming the path (``where.filters[1].field``) when the filter is not one the API accepts.
    TypeError
        When ``obj`` is neither None, a Filter nor a mapping.
    """
    if obj is None:
        return None
    if isinstance(obj, Filter):
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return validate_filter(obj)
    raise TypeError(f"where: expected None, a Filter or an ExecutionFilter dict, got {type(obj).__name__}")
