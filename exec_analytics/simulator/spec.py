"""What the listExecutions API accepts and how it refuses, as documented: the simulator's own copy.

The simulator checks requests against these rules and nothing else. They are written down here from the
published endpoint page and the project's endpoint notes (docs/endpoint.md), not imported from the client: a client
that accepts something the API rejects must meet a simulator that rejects it too. Where the documentation
says nothing, the rule is marked *simulator's choice*.

Documented rules:

- The body's fields: ``startTime``, ``endTime`` (ISO-8601 timestamps), ``where`` (the ExecutionFilter union),
  ``pageSize`` (an integer, at most 100) and ``pageToken``.
- The filter types and their keys, the fields and the operators each allows, the duration units of ``gte`` /
  ``lte`` (an integer value >= 0); anything else is 400 ``InvalidExecutionFilter``.
- The error body ``{"errorCode", "errorName", "errorInstanceId", "parameters"}`` and the documented errors
  with their HTTP status (:data:`ERRORS`).

Simulator's choices (unknown from the documentation):

- ``pageSize`` outside 1..100 or not an integer is rejected with 400 ``InvalidPageSize`` (never clamped);
  without one, pages hold :data:`DEFAULT_PAGE_SIZE` executions.
- "ISO-8601 timestamp" is read strictly, as RFC 3339 date-times: ``YYYY-MM-DDTHH:MM[:SS[.fraction]]`` and a
  zone ``Z`` or ``+HH:MM`` (the form the API returns, ``2024-09-25T17:29:35.974Z``, is one). Anything else
  (no zone, a space for ``T``, month names, epoch numbers, impossible dates) is 400 ``InvalidArgument``
  naming the field.
- An ``in`` with an empty list and an ``and`` / ``or`` without filters are 400 ``InvalidExecutionFilter``:
  the API rejects them, though the documentation does not list the case.
- Other bad arguments (a body that is not a JSON object, an unknown body field, ``endTime`` before
  ``startTime``, a malformed resource RID) are 400 ``InvalidArgument`` with ``parameters.field``; an unknown,
  revoked or expired bearer token is 401 ``InvalidToken``.
- A request throttled by the simulator's rate limits (:mod:`.limits`) is 429 with the documented error body
  shape, ``errorCode`` ``TOO_MANY_REQUESTS`` and ``errorName`` ``TooManyRequests`` (:data:`THROTTLED`): the
  documentation says only "429 or 503". Injected faults (:mod:`.faults`) keep an empty body.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_WINDOW_MS",
    "DURATION_UNITS",
    "ERRORS",
    "FIELD_OPERATORS",
    "FILTER_KEYS",
    "MAX_PAGE_SIZE",
    "REQUEST_FIELDS",
    "THROTTLED",
    "ApiError",
    "Refusal",
    "check_filter",
    "check_page_size",
    "check_rid",
    "parse_timestamp",
    "read_request",
    "resolve_window",
]

#: Fields of the request body (``ListExecutionsResourceRequest``); every one is optional.
REQUEST_FIELDS: frozenset[str] = frozenset({"startTime", "endTime", "where", "pageSize", "pageToken"})
#: The largest ``pageSize`` (documented: "Maximum value is 100").
MAX_PAGE_SIZE = 100
#: Executions per page when the request names no ``pageSize`` (simulator's choice; the default is unknown).
DEFAULT_PAGE_SIZE = 100
#: Without ``startTime`` the window starts this long before now (documented: "Defaults to 24 hours ago").
DEFAULT_WINDOW_MS = 86_400_000

#: Which operators each filterable field allows.
FIELD_OPERATORS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "status": frozenset({"eq", "in"}),
        "duration": frozenset({"gte", "lte"}),
        "userId": frozenset({"eq", "in", "isNull"}),
        "callerRid": frozenset({"eq", "in", "isNull"}),
        "resourceVersion": frozenset({"eq", "in"}),
        "failureReason": frozenset({"eq", "in"}),
        "foundryTraceId": frozenset({"eq", "in"}),
        "traceOwningRid": frozenset({"eq", "in"}),
    }
)
#: Units of a duration bound (``gte`` / ``lte``), in milliseconds.
DURATION_UNITS: Mapping[str, int] = MappingProxyType(
    {"MILLISECONDS": 1, "SECONDS": 1_000, "MINUTES": 60_000, "HOURS": 3_600_000}
)
#: The keys of each member of the ExecutionFilter union (discriminated by ``type``).
FILTER_KEYS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "eq": frozenset({"type", "field", "value"}),
        "in": frozenset({"type", "field", "value"}),
        "gte": frozenset({"type", "field", "value"}),
        "lte": frozenset({"type", "field", "value"}),
        "isNull": frozenset({"type", "field"}),
        "and": frozenset({"type", "filters"}),
        "or": frozenset({"type", "filters"}),
        "not": frozenset({"type", "filter"}),
    }
)
# A guard against unbounded recursion, far deeper than any real filter (simulator's choice).
_MAX_FILTER_DEPTH = 64
# A duration bound is a Java long on the server.
_MAX_LONG = 2**63 - 1

# ri.<service>.<instance>.<type>.<locator>; the instance may be empty.
_RID = re.compile(r"ri\.[a-z][a-z0-9-]*\.[a-z0-9-]*\.[a-z][a-z0-9-]*\.[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
# RFC 3339 date-time, seconds optional (as java.time's ISO_OFFSET_DATE_TIME reads it).
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?(?:(Z)|([+-])(\d\d):(\d\d))", re.ASCII
)
_EPOCH = datetime(1970, 1, 1)
_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class ApiError:
    """One error the API answers with: HTTP status, ``errorCode`` and ``errorName``."""

    status: int
    code: str
    name: str

    def body(self, **parameters: Any) -> bytes:
        """The JSON error body, with a fresh ``errorInstanceId``."""
        return orjson.dumps(
            {
                "errorCode": self.code,
                "errorName": self.name,
                "errorInstanceId": str(uuid.uuid4()),
                "parameters": parameters,
            }
        )


#: Every error the simulator answers with a body, by ``errorName``. ``InvalidArgument`` and
#: ``InvalidToken`` are the simulator's choices; the others are documented.
ERRORS: Mapping[str, ApiError] = MappingProxyType(
    {
        e.name: e
        for e in (
            ApiError(400, "INVALID_ARGUMENT", "InvalidExecutionFilter"),
            ApiError(400, "INVALID_ARGUMENT", "ApiFeaturePreviewUsageOnly"),
            ApiError(400, "INVALID_ARGUMENT", "InvalidPageToken"),
            ApiError(400, "INVALID_ARGUMENT", "InvalidPageSize"),
            ApiError(400, "INVALID_ARGUMENT", "InvalidArgument"),
            ApiError(401, "UNAUTHORIZED", "MissingCredentials"),
            ApiError(401, "UNAUTHORIZED", "InvalidToken"),
            ApiError(403, "PERMISSION_DENIED", "ListExecutionsPermissionDenied"),
            ApiError(403, "PERMISSION_DENIED", "ListExecutionsResourcePermissionDenied"),
            ApiError(403, "PERMISSION_DENIED", "ApiUsageDenied"),
            ApiError(404, "NOT_FOUND", "ResourceNotFound"),
            ApiError(500, "INTERNAL", "Internal"),
        )
    }
)


#: The answer past a rate limit (simulator's choice of code and name; the status is documented). Not in
#: :data:`ERRORS`: it refuses no argument of the request, only its timing.
THROTTLED = ApiError(429, "TOO_MANY_REQUESTS", "TooManyRequests")


class Refusal(ValueError):
    """A request the API refuses: the error to answer with, its parameters, and why (the message).

    Parameters
    ----------
    error_name : str
        A key of :data:`ERRORS`.
    message : str, optional
        What is wrong, for people (the API's error body carries only the parameters); default the error name.
    **parameters
        The error body's ``parameters``.
    """

    def __init__(self, error_name: str, message: str | None = None, **parameters: Any) -> None:
        super().__init__(message or error_name)
        self.error = ERRORS[error_name]
        self.parameters = parameters

    def body(self) -> bytes:
        """The JSON error body to answer with."""
        return self.error.body(**self.parameters)


def read_request(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object with only the documented fields.

    Returns
    -------
    dict
        The decoded body.

    Raises
    ------
    Refusal
        ``InvalidArgument`` naming ``body`` (not a JSON object) or the first unknown field.
    """
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Refusal("InvalidArgument", "the body is not JSON", field="body", reason="not valid JSON") from None
    if not isinstance(req, dict):
        raise Refusal("InvalidArgument", "the body is not a JSON object", field="body", reason="must be a JSON object")
    unknown = sorted(set(req) - REQUEST_FIELDS)
    if unknown:
        raise Refusal("InvalidArgument", f"unknown field {unknown[0]!r:.40}", field=unknown[0], reason="unknown field")
    return req


def resolve_window(req: Mapping[str, Any], now_ms: int) -> tuple[int, int]:
    """The window ``[start, end)`` a first-page request asks for, with the documented defaults.

    Parameters
    ----------
    req : mapping
        The request body (:func:`read_request`).
    now_ms : int
        The server's "now", epoch milliseconds.

    Returns
    -------
    (int, int)
        Start and end in epoch milliseconds; without ``startTime`` 24 hours before now, without ``endTime``
        now.

    Raises
    ------
    Refusal
        ``InvalidArgument`` for a time that is not a timestamp (:func:`parse_timestamp`) or an ``endTime``
        before ``startTime``.
    """
    start, end = req.get("startTime"), req.get("endTime")
    start_ms = now_ms - DEFAULT_WINDOW_MS if start is None else parse_timestamp(start, "startTime")
    end_ms = now_ms if end is None else parse_timestamp(end, "endTime")
    if end_ms < start_ms:
        raise Refusal(
            "InvalidArgument", "endTime is before startTime", field="endTime", reason="endTime is before startTime"
        )
    return start_ms, end_ms


def parse_timestamp(value: object, field: str) -> int:
    """Read a ``startTime`` / ``endTime`` value as the API does.

    Parameters
    ----------
    value : object
        The JSON value of the field.
    field : str
        The field's name, for the error.

    Returns
    -------
    int
        Milliseconds since the Unix epoch. A finer fraction is rounded up: executions start on whole
        milliseconds, so "at or after t" and "before t" select the same executions as with ``ceil(t)``.

    Raises
    ------
    Refusal
        ``InvalidArgument`` when ``value`` is not an RFC 3339 date-time with a zone.
    """
    m = _TIMESTAMP.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _bad_time(value, field)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = m.groups()
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        raise _bad_time(value, field) from None
    offset_s = 0
    if not zulu:
        if int(off_h) > 18 or int(off_m) > 59 or (int(off_h) == 18 and int(off_m) > 0):
            raise _bad_time(value, field)
        offset_s = (1 if sign == "+" else -1) * (int(off_h) * 3600 + int(off_m) * 60)
    seconds = (local - _EPOCH) // _ONE_SECOND - offset_s
    nanos = int((fraction or "").ljust(9, "0"))
    return seconds * 1000 + -(-nanos // 1_000_000)


def _bad_time(value: object, field: str) -> Refusal:
    return Refusal(
        "InvalidArgument",
        f"{field}: {value!r:.80} is not an ISO-8601 date-time with a zone, like 2024-09-25T17:29:35.974Z",
        field=field,
        reason="not an ISO-8601 timestamp with a zone",
    )


def check_page_size(value: object) -> int:
    """The page size a request asks for.

    Returns
    -------
    int
        ``value``, or :data:`DEFAULT_PAGE_SIZE` when it is None (absent).

    Raises
    ------
    Refusal
        ``InvalidPageSize`` unless ``value`` is an integer in 1..:data:`MAX_PAGE_SIZE`.
    """
    if value is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise Refusal("InvalidPageSize", f"pageSize must be an integer in 1..{MAX_PAGE_SIZE}", pageSize=value)
    return value


def check_rid(rid: str) -> str:
    """``rid`` if it is a well-formed resource RID, else ``InvalidArgument`` naming ``resourceRid``."""
    if _RID.fullmatch(rid) is None:
        raise Refusal("InvalidArgument", f"{rid!r:.80} is not a resource RID", field="resourceRid", resourceRid=rid)
    return rid


def check_filter(where: object, *, allow_empty: bool = False) -> dict[str, Any]:
    """Check an ExecutionFilter against the documented union and return it as plain dicts and lists.

    Parameters
    ----------
    where : object
        The JSON value of ``where``.
    allow_empty : bool
        Accept an empty ``in`` list and an ``and`` / ``or`` without filters (``and`` of nothing matches every
        execution, ``or`` of nothing none). The API rejects them; a client may still evaluate them on its
        own history, and the ground truth must then say what they mean.

    Returns
    -------
    dict
        A deep copy of the filter.

    Raises
    ------
    Refusal
        ``InvalidExecutionFilter``, the message naming the offending path (``where.filters[1].field``).
    """
    return _check(where, "where", 0, allow_empty)


def _bad_filter(message: str) -> Refusal:
    return Refusal("InvalidExecutionFilter", message)


def _check(node: object, path: str, depth: int, allow_empty: bool) -> dict[str, Any]:
    if depth > _MAX_FILTER_DEPTH:
        raise _bad_filter(f"{path}: filter nests deeper than {_MAX_FILTER_DEPTH} levels")
    if not isinstance(node, Mapping):
        raise _bad_filter(f"{path}: a filter must be an object with a 'type'")
    kind = node.get("type")
    if not isinstance(kind, str) or kind not in FILTER_KEYS:
        raise _bad_filter(f"{path}.type: {kind!r:.40} is not a filter type")
    keys = set(node)
    if keys != FILTER_KEYS[kind]:
        raise _bad_filter(f"{path}: a {kind!r} filter has exactly the keys {', '.join(sorted(FILTER_KEYS[kind]))}")

    if kind in ("and", "or"):
        filters = node["filters"]
        if not isinstance(filters, (list, tuple)):
            raise _bad_filter(f"{path}.filters: must be a list of filters")
        if not filters and not allow_empty:
            raise _bad_filter(f"{path}.filters: an {kind!r} needs at least one filter")
        children = [_check(f, f"{path}.filters[{i}]", depth + 1, allow_empty) for i, f in enumerate(filters)]
        return {"type": kind, "filters": children}
    if kind == "not":
        return {"type": "not", "filter": _check(node["filter"], f"{path}.filter", depth + 1, allow_empty)}

    field = node["field"]
    if not isinstance(field, str) or field not in FIELD_OPERATORS:
        raise _bad_filter(f"{path}.field: {field!r:.40} is not a filterable field")
    if kind not in FIELD_OPERATORS[field]:
        raise _bad_filter(f"{path}: field {field!r} does not allow {kind!r}")
    if kind == "isNull":
        return {"type": kind, "field": field}
    value = node["value"]
    if kind == "eq":
        if not isinstance(value, str):
            raise _bad_filter(f"{path}.value: {field!r} eq needs a string")
        return {"type": kind, "field": field, "value": value}
    if kind == "in":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _bad_filter(f"{path}.value: {field!r} in needs a list of strings")
        if not value and not allow_empty:
            raise _bad_filter(f"{path}.value: an 'in' needs at least one value")
        return {"type": kind, "field": field, "value": list(value)}
    # gte / lte on duration
    if not isinstance(value, Mapping) or set(value) != {"unit", "value"}:
        raise _bad_filter(f"{path}.value: a duration bound is {{'unit': ..., 'value': int >= 0}}")
    unit, amount = value["unit"], value["value"]
    if not isinstance(unit, str) or unit not in DURATION_UNITS:
        raise _bad_filter(f"{path}.value.unit: {unit!r:.40} is not one of {', '.join(DURATION_UNITS)}")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= _MAX_LONG:
        raise _bad_filter(f"{path}.value.value: must be an integer >= 0")
    return {"type": kind, "field": field, "value": {"unit": unit, "value": amount}}
