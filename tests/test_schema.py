"""schema: decoding checked against an independent json.loads + plain-Python reference."""

from __future__ import annotations

import json
import random
import warnings
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exec_analytics import schema
from exec_analytics.decode import SchemaWarning, decode, decode_pages
from exec_analytics.errors import SchemaError

# Written out independently of schema.UNIT_SECONDS, as exact fractions.
REF_UNITS = {
    "MILLISECONDS": Fraction(1, 1000),
    "SECONDS": Fraction(1),
    "MINUTES": Fraction(60),
    "HOURS": Fraction(3600),
    "DAYS": Fraction(86400),
    "WEEKS": Fraction(7 * 86400),
    "MONTHS": Fraction("30.436875") * 86400,
    "YEARS": Fraction("365.2425") * 86400,
}
API_TO_COLUMN = {
    "status": "status",
    "failureReason": "failure_reason",
    "resourceRid": "resource_rid",
    "resourceVersion": "resource_version",
    "callerRid": "caller_rid",
    "traceOwningRid": "trace_owning_rid",
    "foundryTraceId": "foundry_trace_id",
}
KNOWN = {"startTime", "duration", *API_TO_COLUMN}

EXAMPLE = {
    "duration": {"unit": "SECONDS", "value": 30},
    "foundryTraceId": "1f168a0f-8f5a-648c-8ce4-21d9f1ce17c2",
    "resourceVersion": "1.2.0",
    "failureReason": "timeout",
    "traceOwningRid": "ri.object-sentinel.main.monitor.f7c14421-54f4-4e9f-b6f2-1971b79d612b",
    "resourceRid": "ri.function-registry.main.function.c26f11c8-cdb3-4f44-9f5d-9816ea1c82da",
    "startTime": "2024-09-25T17:29:35.974Z",
    "callerRid": "ri.workshop.main.module.f1e2d3c4-b5a6-7890-1234-567890abcdef",
    "status": "SUCCEEDED",
}


def execution(**changes):
    item = {**EXAMPLE, **changes}
    return {k: v for k, v in item.items() if v is not ...}  # `...` means "leave the key out"


def page(*items, token="v1.abc", **top) -> bytes:
    body = {"data": list(items), **top}
    if token:
        body["nextPageToken"] = token
    return json.dumps(body).encode()


# --------------------------------------------------------------------------------------------------------
# The reference: what a careful person would write by hand, one execution at a time.
# --------------------------------------------------------------------------------------------------------


def ref_time(text: str) -> pd.Timestamp:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    ts = pd.Timestamp(dt).tz_convert("UTC")
    return ts.floor("ms")


def ref_frame(bodies: list[bytes]) -> pd.DataFrame:
    rows = []
    for body in bodies:
        for item in json.loads(body).get("data") or []:
            unit = item["duration"]["unit"]
            value = item["duration"]["value"]
            seconds = float(Fraction(value) * REF_UNITS[unit]) if unit in REF_UNITS else float("nan")
            row = {"start_time": ref_time(item["startTime"]), "duration_s": seconds}
            row.update({col: item.get(api) for api, col in API_TO_COLUMN.items()})
            extra = {k: v for k, v in item.items() if k not in KNOWN and v is not None}
            extra.update(
                {
                    f"duration.{k}": v
                    for k, v in item["duration"].items()
                    if k not in ("unit", "value") and v is not None
                }
            )
            row["extra"] = json.dumps(extra, sort_keys=True, separators=(",", ":")) if extra else None
            rows.append(row)
    df = pd.DataFrame(rows, columns=[*schema.COLUMNS, "extra"])
    out = pd.DataFrame(
        {
            "start_time": pd.Series(list(df["start_time"]), dtype="datetime64[ms, UTC]"),
            "duration_s": df["duration_s"].astype("float64"),
        }
    )
    for col in ("status", "failure_reason", "resource_rid", "caller_rid", "trace_owning_rid"):
        out[col] = pd.Categorical([v for v in df[col]], categories=pd.unique(df[col].dropna()))
    versions = [v for v in df["resource_version"]]
    out["resource_version"] = pd.Categorical(versions, categories=ref_version_order(versions), ordered=True)
    out["foundry_trace_id"] = df["foundry_trace_id"].astype("string")
    if df["extra"].notna().any():
        out["extra"] = df["extra"].astype("string")
    return out[[c for c in (*schema.COLUMNS, "extra") if c in out.columns]]


def ref_version_order(values) -> list[str]:
    """Semver precedence by brute force: tuples of ints, a release after its pre-releases."""
    seen = list(dict.fromkeys(v for v in values if isinstance(v, str)))

    def key(v):
        core, _, pre = v.lstrip("v").split("+")[0].partition("-")
        parts = core.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            return (1, seen.index(v))
        ids = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")] if pre else []
        return (0, *map(int, parts), (1,) if not pre else (0, *ids), seen.index(v))

    return sorted(seen, key=key)


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same values and dtypes; category order is compared only where it means something (versions)."""
    assert list(actual.columns) == list(expected.columns)
    for col in expected.columns:
        a, e = actual[col], expected[col]
        assert a.dtype == e.dtype or (
            isinstance(a.dtype, pd.CategoricalDtype) and isinstance(e.dtype, pd.CategoricalDtype)
        ), col
        if isinstance(e.dtype, pd.CategoricalDtype):
            assert a.cat.ordered == e.cat.ordered, col
            if e.cat.ordered:
                assert list(a.cat.categories) == list(e.cat.categories), col
            assert set(a.cat.categories) == set(e.cat.categories), col
            a, e = a.astype(object), e.astype(object)
        pd.testing.assert_series_equal(a, e, check_names=False, check_dtype=False)


# --------------------------------------------------------------------------------------------------------
# A small generator of page bodies with everything the API may send.
# --------------------------------------------------------------------------------------------------------

VERSIONS = ["1.2.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "2.0.0", "2.0.0-rc.10", "2.0.0-alpha", "nightly", "0.1.0"]


def random_pages(seed: int, n_pages: int = 40, units=tuple(REF_UNITS), extras: bool = False) -> list[bytes]:
    rnd = random.Random(seed)
    t = datetime(2026, 3, 1, tzinfo=timezone.utc)
    bodies = []
    for p in range(n_pages):
        kind = rnd.random()
        if kind < 0.05:
            bodies.append(b'{"nextPageToken": "v1.x"}')  # no data at all
            continue
        if kind < 0.08:
            bodies.append(b'{"data": null}')
            continue
        items = []
        for _ in range(rnd.choice([0, 1, 7, 30, 100])):
            t -= timedelta(milliseconds=rnd.randint(0, 5000))
            item = {
                "startTime": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
                "duration": {"value": rnd.randint(0, 10**7), "unit": rnd.choice(units)},
                "status": rnd.choice(["SUCCEEDED"] * 8 + ["FAILED", "CANCELLED"]),
                "resourceRid": rnd.choice(["ri.function-registry.main.function.a", "ri.automation.main.b"]),
                "resourceVersion": rnd.choice(VERSIONS),
                "traceOwningRid": f"ri.object-sentinel.main.monitor.{rnd.randint(0, 3)}",
                "foundryTraceId": f"{rnd.getrandbits(128):032x}",
            }
            if rnd.random() < 0.7:
                item["callerRid"] = f"ri.workshop.main.module.{rnd.randint(0, 9)}"
            elif rnd.random() < 0.5:
                item["callerRid"] = None
            if rnd.random() < 0.2:
                item["failureReason"] = rnd.choice(["timeout", "invalid_parameter"])
            if extras and rnd.random() < 0.1:
                item["futureField"] = rnd.choice([1, "two", [3], {"four": 4}])
            keys = list(item)
            rnd.shuffle(keys)
            items.append({k: item[k] for k in keys})
        body = {"data": items}
        if p < n_pages - 1:
            body["nextPageToken"] = f"v1.{p}"
        style = rnd.random()
        if style < 0.1:
            bodies.append(json.dumps(body, indent=2).encode())
        elif style < 0.15:
            bodies.append(json.dumps(body).encode() + b"\n")
        else:
            bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def decode_quietly(bodies, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SchemaWarning)
        return decode(bodies, **kwargs)


# --------------------------------------------------------------------------------------------------------
# Reference equality
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_pages", [1, 7, 100])
def test_random_pages_match_reference(seed, batch_pages):
    bodies = random_pages(seed)
    actual = decode_quietly(bodies, batch_pages=batch_pages, workers=2)
    assert_same(actual, ref_frame(bodies))


def test_random_pages_with_unknown_fields_match_reference():
    bodies = random_pages(5, extras=True)
    with pytest.warns(SchemaWarning, match="futureField"):
        actual = decode(bodies, batch_pages=5)
    expected = ref_frame(bodies)
    assert "extra" in expected.columns
    assert_same(actual, expected)


def test_one_worker_and_many_give_the_same_table():
    bodies = random_pages(3, n_pages=60)
    one = decode_pages(bodies, workers=1, batch_pages=4)
    many = decode_pages(bodies, workers=4, batch_pages=4)
    assert one.equals(many)


def test_the_published_example():
    df = decode([page(EXAMPLE)])
    assert df.shape == (1, len(schema.COLUMNS))
    row = df.iloc[0]
    assert row.start_time == pd.Timestamp("2024-09-25T17:29:35.974Z")
    assert row.duration_s == 30.0
    assert row.status == "SUCCEEDED"
    assert row.failure_reason == "timeout"  # kept as sent, even on a success
    assert row.resource_version == "1.2.0"
    assert row.foundry_trace_id == EXAMPLE["foundryTraceId"]


@pytest.mark.parametrize("unit", list(REF_UNITS))
@pytest.mark.parametrize("value", [0, 1, 7, 999, 123_456_789])
def test_every_unit_is_converted_exactly(unit, value):
    df = decode([page(execution(duration={"unit": unit, "value": value}))])
    assert df.duration_s.iloc[0] == float(Fraction(value) * REF_UNITS[unit])


def test_unit_seconds_covers_every_time_unit():
    assert set(schema.UNIT_SECONDS) == set(REF_UNITS)
    for unit, seconds in schema.UNIT_SECONDS.items():
        assert seconds == pytest.approx(float(REF_UNITS[unit]), rel=1e-15)
    assert schema.UNIT_SECONDS["MONTHS"] * 12 == pytest.approx(schema.UNIT_SECONDS["YEARS"])


# --------------------------------------------------------------------------------------------------------
# What the API may add or leave out
# --------------------------------------------------------------------------------------------------------


def test_unknown_unit_gives_nan_and_one_warning_with_counts():
    items = [
        execution(duration={"unit": "FORTNIGHTS", "value": 1}),
        execution(duration={"unit": "SECONDS", "value": 2}),
        execution(duration={"unit": "FORTNIGHTS", "value": 3}),
        execution(duration={"unit": "NANOSECONDS", "value": 4}),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = decode([page(*items[:2]), page(*items[2:])], batch_pages=1)
    unit_warnings = [w for w in caught if issubclass(w.category, SchemaWarning)]
    assert len(unit_warnings) == 1
    message = str(unit_warnings[0].message)
    assert "'FORTNIGHTS' x2" in message and "'NANOSECONDS' x1" in message
    assert len(df) == 4
    assert np.isnan(df.duration_s[[0, 2, 3]]).all() and df.duration_s[1] == 2.0


def test_unknown_status_is_kept():
    df = decode([page(execution(status="CANCELLED"), execution(status="FAILED"))])
    assert list(df.status) == ["CANCELLED", "FAILED"]
    assert list(schema.failed(df)) == [True, True]


def test_unknown_fields_go_to_extra_as_json():
    items = [
        execution(),
        execution(userId="u-1", newThing={"a": [1, 2]}),
        execution(duration={"unit": "SECONDS", "value": 1, "nanos": 5}),
        execution(maybe=None),  # a null unknown field carries nothing
    ]
    with pytest.warns(SchemaWarning, match="kept as JSON in the 'extra' column") as record:
        df = decode([page(*items)])
    assert df.extra.dtype == pd.StringDtype()
    assert df.extra.isna().tolist() == [True, False, False, True]
    assert json.loads(df.extra[1]) == {"userId": "u-1", "newThing": {"a": [1, 2]}}
    assert json.loads(df.extra[2]) == {"duration.nanos": 5}
    assert "'userId' x1" in str(record[0].message)
    assert list(df.columns) == [*schema.COLUMNS, "extra"]


def test_unknown_field_whose_type_changes_between_pages_is_kept_exactly():
    bodies = [page(execution(zz=1)), page(execution(zz="one")), page(execution())]
    with pytest.warns(SchemaWarning, match="'zz' x2"):
        df = decode(bodies)
    assert df.extra.tolist()[:2] == ['{"zz":1}', '{"zz":"one"}']
    assert pd.isna(df.extra[2])


def test_unknown_fields_round_trip_exactly():
    items = [
        execution(big=12345678901234567890, o={"x": 1}),
        execution(o={}),
        execution(f=0.1, flag=False),
    ]
    with pytest.warns(SchemaWarning):
        df = decode([page(*items)])
    assert df.extra.tolist() == ['{"big":12345678901234567890,"o":{"x":1}}', '{"o":{}}', '{"f":0.1,"flag":false}']


def test_flat_unknown_fields_on_every_row():
    items = [execution(userId=f"u{i}", attempt=i, retried=i % 2 == 0) for i in range(5)]
    with pytest.warns(SchemaWarning, match="'userId' x5"):
        df = decode([page(*items[:2]), page(*items[2:])], batch_pages=1)
    assert [json.loads(x) for x in df.extra] == [
        {"userId": f"u{i}", "attempt": i, "retried": i % 2 == 0} for i in range(5)
    ]


def test_no_extra_column_without_unknown_fields():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = decode([page(execution()), page(execution(), foo="top-level fields are response metadata")])
    assert list(df.columns) == list(schema.COLUMNS)


def test_missing_optional_fields_are_na():
    df = decode([page(execution(failureReason=..., callerRid=...), execution(callerRid=None))])
    assert df.failure_reason.isna().tolist() == [True, False]
    assert df.caller_rid.isna().all()
    assert df.caller_rid.dtype == "category"


def test_missing_identity_field_is_na_with_a_warning():
    with pytest.warns(SchemaWarning, match="'resourceVersion' x1"):
        df = decode([page(execution(resourceVersion=...), execution())])
    assert df.resource_version.isna().tolist() == [True, False]


@pytest.mark.parametrize(
    "bodies",
    [
        [],
        [b"{}"],
        [b'{"data": null}'],
        [b'{"data": []}', b'{"nextPageToken": "v1.x"}'],
    ],
)
def test_no_rows(bodies):
    df = decode(bodies)
    assert len(df) == 0
    assert dict(df.dtypes) == dict(schema.empty_frame().dtypes)
    assert decode_pages(bodies).schema == schema.ARROW_SCHEMA


def test_empty_pages_between_full_ones():
    bodies = [page(execution(foundryTraceId="a")), b'{"data": []}', b"{}", page(execution(foundryTraceId="b"))]
    assert decode(bodies, batch_pages=2).foundry_trace_id.tolist() == ["a", "b"]


def test_pretty_printed_crlf_and_trailing_newline_bodies():
    body = {"data": [execution(foundryTraceId="p")], "nextPageToken": "v1.y"}
    bodies = [
        json.dumps(body, indent=2).encode(),
        json.dumps(body, indent="\t").replace("\n", "\r\n").encode(),
        json.dumps(body).encode() + b"\r\n",
        b"\n  " + json.dumps(body).encode(),
        page(execution(foundryTraceId="q")),
    ]
    df = decode(bodies, batch_pages=10)
    assert df.foundry_trace_id.tolist() == ["p", "p", "p", "p", "q"]
    assert (df.duration_s == 30).all()


def test_accepts_str_bytearray_and_page_objects():
    raw = page(execution())
    bodies = [raw, raw.decode(), bytearray(raw), SimpleNamespace(body=raw)]
    assert len(decode(bodies)) == 4
    with pytest.raises(TypeError, match="bodies"):
        decode_pages([42])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-09-25T17:29:35.974Z", "2024-09-25T17:29:35.974Z"),
        ("2024-09-25T17:29:35Z", "2024-09-25T17:29:35.000Z"),
        ("2024-09-25T17:29:35.9Z", "2024-09-25T17:29:35.900Z"),
        ("2024-09-25T19:29:35.974+02:00", "2024-09-25T17:29:35.974Z"),
        ("2024-09-25T12:29:35.974-05:00", "2024-09-25T17:29:35.974Z"),
        ("2024-09-25T17:29:35.974123Z", "2024-09-25T17:29:35.974Z"),  # truncated to the millisecond
        ("2024-09-25T17:29:35.974999999Z", "2024-09-25T17:29:35.974Z"),
        ("2024-09-25T17:29:35.974", "2024-09-25T17:29:35.974Z"),  # no offset: UTC, as the API promises
    ],
)
def test_timestamp_forms(text, expected):
    bodies = [page(execution(startTime=text)), page(execution())]
    df = decode(bodies)
    assert df.start_time.iloc[0] == pd.Timestamp(expected)
    assert df.start_time.dtype == schema.DTYPES["start_time"]


# --------------------------------------------------------------------------------------------------------
# Malformed bodies
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (b"", "page 1: body is empty"),
        (b"   ", "page 1: body is empty"),
        (b'{"data": [', "page 1: body is not valid JSON"),
        (b"<html>502 Bad Gateway</html>", "page 1: body is not valid JSON"),
        (b"[]", "page 1: body must be one JSON object, got list"),
        (b'"data"', "page 1: body must be one JSON object"),
        (page(execution()) + page(execution()), "page 1"),
        (b'{"data": {"a": 1}}', r"page 1: field data must be a JSON array"),
        (b'{"data": [1]}', r"page 1: field data\[\] must be a JSON object"),
        (
            page(execution(duration={"unit": "SECONDS", "value": "30"})),
            r"data\[\]\.duration\.value must be a JSON number",
        ),
        (page(execution(duration={"unit": "SECONDS", "value": True})), r"data\[\]\.duration\.value"),
        (page(execution(duration=30)), r"data\[\]\.duration must be a JSON object"),
        (page(execution(status=1)), r"data\[\]\.status must be a JSON string"),
        (page(execution(callerRid=["x"])), r"data\[\]\.callerRid must be a JSON string"),
        (page(execution(startTime=1727285375974)), r"data\[\]\.startTime"),
        (page(execution(), execution(startTime="yesterday")), "page 1, execution 1: startTime 'yesterday'"),
        (page(execution(), execution(startTime=...)), "page 1, execution 1: required field 'startTime'"),
        (page(execution(duration=...)), "required field 'duration.value'"),
        (page(execution(duration={"value": 3})), "required field 'duration.unit'"),
        (page(execution(status=None)), "required field 'status'"),
        (page(execution(), None), "page 1, execution 1: required field 'startTime'"),
    ],
)
def test_malformed_bodies_raise_schema_error(bad, match):
    bodies = [page(execution()), bad, page(execution())]
    with pytest.raises(SchemaError, match=match) as info:
        decode(bodies, batch_pages=2)
    assert isinstance(info.value, ValueError)  # SchemaError is also a ValueError
    assert "pyarrow" not in str(info.value)


def test_error_names_the_page_in_a_later_batch():
    bodies = [page(execution())] * 250 + [b"nope"]
    with pytest.raises(SchemaError, match="page 250: body is not valid JSON"):
        decode_pages(bodies, batch_pages=100)


def test_batch_pages_must_be_positive():
    with pytest.raises(ValueError, match="batch_pages"):
        decode_pages([], batch_pages=0)


# --------------------------------------------------------------------------------------------------------
# Versions, dtypes, frames
# --------------------------------------------------------------------------------------------------------


def test_order_versions():
    values = [
        "1.9.0",
        "nightly",
        "1.10.0",
        "1.2.0",
        "2.0.0",
        "2.0.0-rc.1",
        "2.0.0-rc.10",
        "2.0.0-rc.2",
        "2.0.0-alpha",
        "2.0.0-alpha.1",
        "2.0.0-1",
        "abc",
        "1.9.0",
        None,
        float("nan"),
        "v1.3.0",
        "1.2.0+build.7",
    ]
    assert schema.order_versions(values) == [
        "1.2.0", "1.2.0+build.7", "v1.3.0", "1.9.0", "1.10.0",
        "2.0.0-1", "2.0.0-alpha", "2.0.0-alpha.1", "2.0.0-rc.1", "2.0.0-rc.2", "2.0.0-rc.10", "2.0.0",
        "nightly", "abc",
    ]  # fmt: skip
    assert schema.order_versions([]) == []
    assert schema.order_versions(pd.Series(["b", "a", "b"])) == ["b", "a"]


def test_resource_version_is_ordered_by_version():
    bodies = [page(*(execution(resourceVersion=v) for v in ["1.10.0", "zeta", "1.9.0", "alpha", "1.9.0-rc.1"]))]
    df = decode(bodies)
    assert df.resource_version.cat.ordered
    assert list(df.resource_version.cat.categories) == ["1.9.0-rc.1", "1.9.0", "1.10.0", "zeta", "alpha"]
    assert df.resource_version.max() == "alpha"
    assert (df.resource_version > "1.9.0").tolist() == [True, True, False, True, False]


def test_dtypes_are_exactly_the_design():
    df = decode_quietly(random_pages(1))
    expected = {
        "start_time": "datetime64[ms, UTC]",
        "duration_s": "float64",
        "status": "category",
        "failure_reason": "category",
        "resource_rid": "category",
        "resource_version": "category",
        "caller_rid": "category",
        "trace_owning_rid": "category",
        "foundry_trace_id": "string",
    }
    assert list(df.columns) == list(expected) == list(schema.DTYPES)
    for col, dtype in expected.items():
        assert df[col].dtype == dtype, col
        assert df[col].dtype == schema.DTYPES[col], col
    assert df.foundry_trace_id.dtype == pd.StringDtype()
    assert str(df.start_time.dtype.tz) == "UTC"
    unordered = [c for c in schema.COLUMNS if df[c].dtype == "category" and c != "resource_version"]
    assert all(not df[c].cat.ordered for c in unordered)
    assert isinstance(df.index, pd.RangeIndex)
    empty = schema.empty_frame()
    assert list(empty.columns) == list(expected)
    assert all(empty[c].dtype == d for c, d in expected.items())
    assert empty.resource_version.cat.ordered


def test_arrow_table_types():
    table = decode_quietly_pages(random_pages(2))
    assert table.schema == schema.ARROW_SCHEMA
    assert pa.types.is_dictionary(table.schema.field("status").type)


def decode_quietly_pages(bodies):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SchemaWarning)
        return decode_pages(bodies)


def test_to_frame_drops_unused_categories_and_rejects_foreign_tables():
    table = decode_pages([page(execution(status="FAILED"), execution(status="SUCCEEDED"))])
    df = schema.to_frame(table.slice(1))
    assert list(df.status.cat.categories) == ["SUCCEEDED"]
    with pytest.raises(ValueError, match="missing column"):
        schema.to_frame(pa.table({"x": [1]}))


# --------------------------------------------------------------------------------------------------------
# dedupe
# --------------------------------------------------------------------------------------------------------


def test_dedupe_keeps_the_last_copy_of_each_execution():
    a, b, c = (execution(foundryTraceId=t) for t in "abc")
    b_failed = execution(foundryTraceId="b", status="FAILED")  # the same execution, reported again: it wins
    nan_dur = execution(foundryTraceId="n", duration={"unit": "WHATEVER", "value": 1})
    bodies = [page(a, b, nan_dur), page(b, c, b_failed), page(a, nan_dur)]
    with pytest.warns(SchemaWarning):
        table = decode_pages(bodies, batch_pages=1)
    deduped, dropped = schema.dedupe(table)
    assert dropped == 4
    df = schema.to_frame(deduped)
    # Each kept at its last position: c (row 4), b as FAILED (row 5), a (row 6), n (row 7).
    assert df.foundry_trace_id.tolist() == ["c", "b", "a", "n"]
    assert df.status.tolist() == ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED"]
    again, none = schema.dedupe(deduped)
    assert none == 0 and again.num_rows == deduped.num_rows


def test_one_identity_a_millisecond_of_duration_does_not_make_two_executions():
    first = execution(duration={"unit": "MILLISECONDS", "value": 1500})
    later = execution(duration={"unit": "MILLISECONDS", "value": 1501})
    other_resource = execution(resourceRid="ri.function-registry.main.function.other")
    other_start = execution(startTime="2024-09-25T17:29:35.975Z")
    deduped, dropped = schema.dedupe(decode_pages([page(first, other_resource), page(later, other_start)]))
    assert dropped == 1
    df = schema.to_frame(deduped)
    assert sorted(df.duration_s.tolist()) == [1.501, 30.0, 30.0]


def test_rows_without_a_trace_id_are_the_same_execution_only_when_every_column_is():
    no_trace = execution(foundryTraceId=None)
    slower = execution(foundryTraceId=None, duration={"unit": "SECONDS", "value": 31})
    with pytest.warns(SchemaWarning):  # a required identity field is absent
        table = decode_pages([page(no_trace, slower, no_trace, execution())])
    deduped, dropped = schema.dedupe(table)
    assert dropped == 1
    df = schema.to_frame(deduped)
    assert df.duration_s.tolist() == [31.0, 30.0, 30.0]
    assert df.foundry_trace_id.isna().tolist() == [True, True, False]


def test_dedupe_matches_pandas_duplicated():
    bodies = random_pages(7, n_pages=30)
    rnd = random.Random(1)
    # Whole pages seen twice, and executions reported again with another duration and status.
    again = []
    for body in rnd.sample([b for b in bodies if b.count(b"startTime") > 3], 5):
        items = json.loads(body)["data"][:3]
        again.append(page(*[{**i, "duration": {"unit": "SECONDS", "value": 1}, "status": "FAILED"} for i in items]))
    bodies = bodies + [rnd.choice(bodies) for _ in range(10)] + again
    table = decode_quietly_pages(bodies)
    deduped, dropped = schema.dedupe(table)
    df = schema.to_frame(table)
    keep = ~df[list(schema.IDENTITY_COLUMNS)].astype(object).duplicated(keep="last")
    expected = df[keep].reset_index(drop=True)
    assert dropped == int((~keep).sum()) > 10 * 7
    assert_same(schema.to_frame(deduped), expected)
    assert (expected.status == "FAILED").sum() >= 15


def test_dedupe_small_tables():
    empty = schema.ARROW_SCHEMA.empty_table()
    assert schema.dedupe(empty) == (empty, 0)


# --------------------------------------------------------------------------------------------------------
# concat_frames, failed, end_time
# --------------------------------------------------------------------------------------------------------


def test_concat_frames_unions_categories_and_reorders_versions():
    one = decode([page(execution(resourceVersion="1.10.0", status="FAILED", callerRid=...))])
    two = decode([page(execution(resourceVersion="1.9.0", callerRid="ri.c"))])
    three = decode([page(execution())])
    with pytest.warns(SchemaWarning):
        with_extra = decode([page(execution(resourceVersion="2.0.0", futureField="x"))])
    out = schema.concat_frames([one, two, three, with_extra, schema.empty_frame()])
    assert len(out) == 4
    for col in ("status", "failure_reason", "resource_rid", "caller_rid", "trace_owning_rid", "resource_version"):
        assert out[col].dtype == "category", col
    assert list(out.resource_version.cat.categories) == ["1.2.0", "1.9.0", "1.10.0", "2.0.0"]
    assert out.resource_version.cat.ordered
    assert out.status.tolist() == ["FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    assert out.caller_rid.isna().tolist() == [True, False, False, False]
    assert out.extra.dtype == pd.StringDtype()
    assert out.extra.isna().tolist() == [True, True, True, False]
    assert list(out.columns) == [*schema.COLUMNS, "extra"]
    assert out.start_time.dtype == "datetime64[ms, UTC]"
    assert out.foundry_trace_id.dtype == "string"


def test_concat_frames_equals_decoding_everything_at_once():
    bodies = random_pages(11, n_pages=30)
    parts = [decode_quietly(bodies[i : i + 7]) for i in range(0, 30, 7)]
    assert_same(schema.concat_frames(parts), decode_quietly(bodies))


def test_concat_frames_edge_cases():
    assert list(schema.concat_frames([]).columns) == list(schema.COLUMNS)
    frame = decode([page(execution())])
    frame.attrs["resource"] = "ri.x"
    out = schema.concat_frames([frame, frame.copy()])
    assert out.attrs == {"resource": "ri.x"}
    other = frame.copy()
    other.attrs = {"resource": "ri.y"}
    assert schema.concat_frames([frame, other]).attrs == {}
    # categories held as object (e.g. a frame built by hand or read by an older pandas) still union
    legacy = frame.copy()
    legacy["status"] = pd.Categorical(["FAILED"], categories=pd.Index(["FAILED"], dtype=object))
    assert schema.concat_frames([frame, legacy]).status.tolist() == ["SUCCEEDED", "FAILED"]


def test_failed_uses_status_only():
    df = decode([page(execution(status="SUCCEEDED"), execution(status="FAILED"), execution(status="SKIPPED"))])
    assert schema.failed(df).tolist() == [False, True, True]
    assert schema.failed(df, success_statuses=("SUCCEEDED", "SKIPPED")).tolist() == [False, True, False]
    assert schema.failed(df, success_statuses="FAILED").tolist() == [True, False, True]
    assert schema.failed(df).dtype == bool
    assert schema.failed(df).name == "failed"


def test_end_time():
    items = [
        execution(duration={"unit": "MILLISECONDS", "value": 1500}),
        execution(duration={"unit": "HOURS", "value": 2}),
        execution(duration={"unit": "MARS_DAYS", "value": 1}),
    ]
    with pytest.warns(SchemaWarning):
        df = decode([page(*items)])
    end = schema.end_time(df)
    start = pd.Timestamp(EXAMPLE["startTime"])
    assert end.tolist()[:2] == [start + pd.Timedelta("1.5s"), start + pd.Timedelta("2h")]
    assert pd.isna(end.iloc[2])
    assert end.dtype == "datetime64[ms, UTC]"
    assert end.name == "end_time"
