"""The simulator's own copy of the API's rules (``simulator/spec.py``), checked on its own and against the client's."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest

from exec_analytics import filters
from exec_analytics.simulator import spec


def test_the_client_filter_table_is_the_spec() -> None:
    client = {field: set(ops) for field, ops in filters.FIELD_OPERATORS.items()}
    assert client == {field: set(ops) for field, ops in spec.FIELD_OPERATORS.items()}
    assert dict(filters.DURATION_UNITS) == dict(spec.DURATION_UNITS)


def _reference_ms(text: str) -> int:
    """Epoch ms of an RFC 3339 text by pandas, rounded up to the millisecond (executions start on whole ms)."""
    ns = pd.Timestamp(text).value
    return -(-ns // 1_000_000)


def _random_timestamps(n: int) -> list[str]:
    rng = random.Random(20261129)
    out = []
    for _ in range(n):
        when = datetime(1971, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(0, 3_000_000_000))
        minutes = rng.choice([0, 0, 60, -300, 330, 345, -720, 840, 1080, -1080, -1])
        zone = timezone(timedelta(minutes=minutes))
        local = when.astimezone(zone)
        text = local.strftime("%Y-%m-%dT%H:%M")
        if rng.random() < 0.8:
            text += local.strftime(":%S")
            digits = rng.randrange(0, 10)
            if digits:
                text += "." + "".join(rng.choice("0123456789") for _ in range(digits))
        if minutes == 0 and rng.random() < 0.5:
            text += "Z"
        else:
            sign = "+" if minutes >= 0 else "-"
            text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        out.append(text)
    return out


def test_timestamps_read_like_an_independent_parser() -> None:
    texts = [
        "2024-09-25T17:29:35.974Z",
        "2026-11-20T00:00Z",
        "2026-11-20T01:30+01:30",
        "2026-11-19T19:00:00-05:00",
        "2026-11-20T00:00:00.000000001Z",
        "2026-11-20T00:00:00.999999999Z",
        "1969-12-31T23:59:59.9995Z",
        "2028-02-29T12:00:00Z",
        "2026-11-20T00:00:00+18:00",
        *_random_timestamps(3000),
    ]
    for text in texts:
        assert spec.parse_timestamp(text, "startTime") == _reference_ms(text), text


@pytest.mark.parametrize(
    "value",
    [
        "Nov 19 2026 00:00 UTC",
        "2026-11-19",
        "2026-11-19T00:00:00",
        "2026-11-19 00:00:00Z",
        "2026-11-19T00Z",
        "20261119T000000Z",
        "2026-11-19T00:00:00+0100",
        "2026-11-19T00:00:00+01",
        "2026-11-19T00:00:00.Z",
        "2026-11-19T00:00:00.1234567890Z",
        "2026-11-19T00:00:00 Z",
        " 2026-11-19T00:00:00Z",
        "2026-11-19T00:00:00Z\n",
        "2026-11-19T00:00:00UTC",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-19T24:00:00Z",
        "2026-11-19T23:60:00Z",
        "2026-11-19T23:59:60Z",
        "2026-11-19T00:00:00+18:01",
        "2026-11-19T00:00:00+05:60",
        "0000-01-01T00:00:00Z",
        "２０２６-11-19T00:00:00Z",  # non-ASCII digits
        "",
        1763510400000,
        None,
        ["2026-11-19T00:00:00Z"],
    ],
)
def test_anything_else_is_invalid_argument_naming_the_field(value: Any) -> None:
    with pytest.raises(spec.Refusal) as info:
        spec.parse_timestamp(value, "endTime")
    assert info.value.error == spec.ERRORS["InvalidArgument"]
    assert info.value.parameters["field"] == "endTime"


def test_empty_filters_are_rejected_unless_allowed() -> None:
    empty: list[dict[str, Any]] = [
        {"type": "and", "filters": []},
        {"type": "or", "filters": []},
        {"type": "in", "field": "callerRid", "value": []},
        {"type": "not", "filter": {"type": "and", "filters": [{"type": "in", "field": "status", "value": []}]}},
    ]
    for where in empty:
        with pytest.raises(spec.Refusal) as info:
            spec.check_filter(where)
        assert info.value.error == spec.ERRORS["InvalidExecutionFilter"]
        assert spec.check_filter(where, allow_empty=True) == where


def test_a_checked_filter_is_a_copy() -> None:
    where = {"type": "and", "filters": [{"type": "in", "field": "status", "value": ["FAILED"]}]}
    checked = spec.check_filter(where)
    checked["filters"][0]["value"].append("SUCCEEDED")
    assert where["filters"][0]["value"] == ["FAILED"]


def test_the_depth_guard_answers_a_filter_error_not_a_crash() -> None:
    where: dict[str, Any] = {"type": "eq", "field": "status", "value": "FAILED"}
    for _ in range(500):
        where = {"type": "not", "filter": where}
    with pytest.raises(spec.Refusal, match="deeper"):
        spec.check_filter(where)


def test_page_size_limits() -> None:
    assert spec.check_page_size(None) == spec.DEFAULT_PAGE_SIZE
    assert spec.check_page_size(1) == 1 and spec.check_page_size(spec.MAX_PAGE_SIZE) == spec.MAX_PAGE_SIZE
    for bad in (0, spec.MAX_PAGE_SIZE + 1, -5, True, 10.0, "10"):
        with pytest.raises(spec.Refusal) as info:
            spec.check_page_size(bad)
        assert info.value.error.name == "InvalidPageSize" and info.value.error.status == 400


def test_error_codes_follow_the_http_status() -> None:
    family = {400: "INVALID_ARGUMENT", 401: "UNAUTHORIZED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 500: "INTERNAL"}
    assert all(family[e.status] == e.code for e in spec.ERRORS.values())
    assert all(name == e.name for name, e in spec.ERRORS.items())
