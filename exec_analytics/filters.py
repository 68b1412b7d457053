"""The ``where`` filter of listExecutions: the ExecutionFilter union, validated locally.

The API rejects a bad filter with 400 ``InvalidExecutionFilter`` and little detail; validating here gives a
``ValueError`` that names the offending path before any request is made. The same rules serve the
simulator, so the server and the client can never disagree about what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "DURATION_UNITS",
    "FIELD_OPERATORS",
    "validate_filter",
]

#: Which operators each filterable field allows (API.md, "Fields and the operators each allows").
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
