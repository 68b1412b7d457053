"""filters: validation of raw ExecutionFilter dicts and the readable builders."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import timedelta

import pandas as pd
import pytest

from exec_analytics import filters as F
from exec_analytics.filters import Filter

FAILED = {"type": "eq", "field": "status", "value": "FAILED"}
SLOW = {"type": "gte", "field": "duration", "value": {"unit": "SECONDS", "value": 30}}
API_EXAMPLE = {"type": "and", "filters": [FAILED, SLOW]}


def dur(kind: str, value: int, unit: str = "MILLISECONDS") -> dict:
    return {"type": kind, "field": "duration", "value": {"unit": unit, "value": value}}


# --------------------------------------------------------------------------------------------------------
# validate_filter (used by the simulator too)
# --------------------------------------------------------------------------------------------------------


def test_validate_filter_accepts_the_api_example_and_copies():
    where = copy.deepcopy(API_EXAMPLE)
    out = F.validate_filter(where)
    assert out == API_EXAMPLE
    out["filters"].append(FAILED)
    assert where == API_EXAMPLE  # a deep copy


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ([], r"^where: a filter must be an object"),
        ({"type": "like"}, r"^where\.type: 'like' is not a filter type"),
        ({"type": "eq", "field": "status"}, r"^where: a 'eq' filter needs value"),
        ({**FAILED, "extra": 1}, r"^where: a 'eq' filter does not take extra"),
        ({"type": "eq", "field": "userName", "value": "x"}, r"^where\.field: 'userName' is not filterable"),
        ({"type": "eq", "field": "duration", "value": "x"}, r"^where: field 'duration' does not allow 'eq'"),
        ({"type": "isNull", "field": "status"}, r"^where: field 'status' does not allow 'isNull'"),
        ({"type": "eq", "field": "status", "value": 1}, r"^where\.value: 'status' eq needs a string"),
        ({"type": "in", "field": "status", "value": "FAILED"}, r"^where\.value: 'status' in needs a list"),
        ({"type": "gte", "field": "duration", "value": 30}, r"^where\.value: a duration bound"),
        (dur("gte", 1, "DAYS"), r"^where\.value\.unit"),
        ({"type": "lte", "field": "duration", "value": {"unit": "SECONDS", "value": -1}}, r"^where\.value\.value"),
        ({"type": "lte", "field": "duration", "value": {"unit": "SECONDS", "value": 1.5}}, r"^where\.value\.value"),
        ({"type": "and", "filters": FAILED}, r"^where\.filters: must be a list"),
        (
            {"type": "and", "filters": [FAILED, {"type": "eq", "field": "x", "value": "y"}]},
            r"^where\.filters\[1\]\.field",
        ),
        ({"type": "not", "filter": {"type": "or", "filters": [{"type": "?"}]}}, r"^where\.filter\.filters\[0\]\.type"),
    ],
)
def test_validate_filter_errors_name_the_path(where, match):
    with pytest.raises(ValueError, match=match):
        F.validate_filter(where)


def test_validate_filter_limits_depth():
    node = FAILED
    for _ in range(40):
        node = {"type": "not", "filter": node}
    with pytest.raises(ValueError, match="deeper than"):
        F.validate_filter(node)


# --------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (F.status("FAILED"), FAILED),
        (F.status_in("FAILED", "SUCCEEDED"), {"type": "in", "field": "status", "value": ["FAILED", "SUCCEEDED"]}),
        (F.status_in(["FAILED"]), {"type": "in", "field": "status", "value": ["FAILED"]}),
        (F.eq("callerRid", "ri.a"), {"type": "eq", "field": "callerRid", "value": "ri.a"}),
        (F.eq("caller_rid", "ri.a"), {"type": "eq", "field": "callerRid", "value": "ri.a"}),
        (
            F.in_("resource_version", ("1.0.0", "1.1.0", "1.0.0")),
            {"type": "in", "field": "resourceVersion", "value": ["1.0.0", "1.1.0"]},
        ),
        (F.in_("foundry_trace_id", "t1"), {"type": "in", "field": "foundryTraceId", "value": ["t1"]}),
        (F.in_("traceOwningRid", iter(["ri.m"])), {"type": "in", "field": "traceOwningRid", "value": ["ri.m"]}),
        (F.is_null("callerRid"), {"type": "isNull", "field": "callerRid"}),
        (F.is_null("user_id"), {"type": "isNull", "field": "userId"}),
        (F.caller("ri.a"), {"type": "eq", "field": "callerRid", "value": "ri.a"}),
        (F.caller_in("ri.a", "ri.b"), {"type": "in", "field": "callerRid", "value": ["ri.a", "ri.b"]}),
        (F.version("1.2.0"), {"type": "eq", "field": "resourceVersion", "value": "1.2.0"}),
        (F.version_in(["1.2.0", "1.3.0"]), {"type": "in", "field": "resourceVersion", "value": ["1.2.0", "1.3.0"]}),
        (F.failure_reason("timeout"), {"type": "eq", "field": "failureReason", "value": "timeout"}),
        (F.failure_reason_in("timeout", "oom"), {"type": "in", "field": "failureReason", "value": ["timeout", "oom"]}),
        (F.duration_at_least(30, "SECONDS"), SLOW),
        (F.duration_at_least(30), SLOW),
        (F.duration_at_most(2, "HOURS"), dur("lte", 2, "HOURS")),
        (F.duration_at_least(0, "MILLISECONDS"), dur("gte", 0)),
        (F.duration_at_least(1.5), dur("gte", 1500)),
        (F.duration_at_least(2.0, "MINUTES"), dur("gte", 2, "MINUTES")),
        (F.duration_at_least(0.0015), dur("gte", 2)),
        (F.duration_at_most(0.0015), dur("lte", 1)),
        (F.duration_at_least(timedelta(minutes=1, milliseconds=5)), dur("gte", 60005)),
        (F.duration_at_most(pd.Timedelta("1.5s")), dur("lte", 1500)),
    ],
)
def test_builders(built, expected):
    assert isinstance(built, Filter)
    assert built.to_dict() == expected
    assert F.validate_filter(built.to_dict()) == expected
    json.dumps(built.to_dict())  # JSON-ready


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: F.eq("duration", "3"), ValueError, "field 'duration' does not allow 'eq'"),
        (lambda: F.eq("nope", "3"), ValueError, "'nope' is not filterable"),
        (lambda: F.eq(3, "x"), TypeError, "field"),
        (lambda: F.eq("status", 3), ValueError, "needs a string"),
        (lambda: F.is_null("status"), ValueError, "does not allow 'isNull'"),
        (lambda: F.in_("duration", "1"), ValueError, "does not allow 'in'"),
        (lambda: F.status_in(), ValueError, "at least one value"),
        (lambda: F.status_in([]), ValueError, "at least one value"),
        (lambda: F.status_in("A", 1), TypeError, "every value must be a str"),
        (lambda: F.caller_in(5), TypeError, "iterable of strings"),
        (lambda: F.duration_at_least(-1), ValueError, ">= 0"),
        (lambda: F.duration_at_least(1, "DAYS"), ValueError, "unit 'DAYS'"),
        (lambda: F.duration_at_least("30"), TypeError, "number or a timedelta"),
        (lambda: F.duration_at_least(True), TypeError, "number or a timedelta"),
        (lambda: F.duration_at_most(float("inf")), ValueError, "finite"),
        (lambda: F.duration_at_most(timedelta(seconds=-1)), ValueError, ">= 0"),
        (lambda: F.all_of(), ValueError, "at least one filter"),
        (lambda: F.any_of(F.status("A"), "status"), TypeError, r"any_of\[1\]"),
        (
            lambda: F.all_of(F.status("A"), {"type": "eq", "field": "x", "value": "y"}),
            ValueError,
            r"all_of\[1\]: where\.field",
        ),
        (lambda: F.not_(None), TypeError, "not_"),
    ],
)
def test_builders_reject_bad_arguments_before_any_request(build, error, match):
    with pytest.raises(error, match=match):
        build()


# --------------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------------


def test_and_or_not():
    f = F.status("FAILED") & F.duration_at_least(30, "SECONDS")
    assert f.to_dict() == API_EXAMPLE
    assert (F.status("FAILED") | F.is_null("callerRid")).to_dict() == {
        "type": "or",
        "filters": [FAILED, {"type": "isNull", "field": "callerRid"}],
    }
    assert (~F.status("FAILED")).to_dict() == {"type": "not", "filter": FAILED}
    assert ~~F.status("FAILED") == F.status("FAILED")


def test_same_operator_flattens_and_mixed_nests():
    a, b, c, d = F.status("A"), F.status("B"), F.caller("ri.c"), F.version("1.0.0")
    assert ((a & b) & c).to_dict() == {"type": "and", "filters": [a.to_dict(), b.to_dict(), c.to_dict()]}
    assert (a & (b & c)) == F.all_of(a, b, c) == F.all_of([a, b, c])
    mixed = (a | b) & ~(c | d)
    assert mixed.to_dict() == {
        "type": "and",
        "filters": [
            {"type": "or", "filters": [a.to_dict(), b.to_dict()]},
            {"type": "not", "filter": {"type": "or", "filters": [c.to_dict(), d.to_dict()]}},
        ],
    }
    assert F.any_of(a) is a
    assert F.all_of(FAILED) == F.status("FAILED")


def test_raw_dicts_compose_with_filters():
    assert (F.status("FAILED") & SLOW).to_dict() == API_EXAMPLE
    assert (FAILED & F.duration_at_least(30)).to_dict() == API_EXAMPLE
    assert (SLOW | F.status("FAILED")).to_dict() == {"type": "or", "filters": [SLOW, FAILED]}
    assert F.not_(FAILED).to_dict() == {"type": "not", "filter": FAILED}


def test_filter_is_immutable_hashable_and_picklable():
    f = F.status("FAILED") & F.duration_at_least(30)
    with pytest.raises(AttributeError, match="immutable"):
        f.x = 1  # type: ignore[attr-defined]
    d = f.to_dict()
    d["filters"].clear()
    assert f.to_dict() == API_EXAMPLE  # to_dict hands out copies
    assert f == Filter.from_dict(API_EXAMPLE)
    assert hash(f) == hash(Filter(API_EXAMPLE))
    assert len({f, Filter(API_EXAMPLE), F.status("FAILED")}) == 2
    assert pickle.loads(pickle.dumps(f)) == f
    assert f != API_EXAMPLE  # a Filter is not a dict


def test_repr_reads_like_the_condition():
    f = (F.status("FAILED") | F.is_null("callerRid")) & F.duration_at_least(30) & ~F.version("1.0.0")
    assert repr(f) == (
        "Filter((status == 'FAILED' | callerRid is null) & duration >= 30 SECONDS & ~resourceVersion == '1.0.0')"
    )
    assert repr(F.caller_in("a", "b")) == "Filter(callerRid in ['a', 'b'])"


def test_filter_constructor_validates():
    with pytest.raises(ValueError, match=r"where\.filters\[0\]\.type"):
        Filter({"type": "and", "filters": [{"type": "bogus"}]})


# --------------------------------------------------------------------------------------------------------
# as_where: what the client and the loader accept as `where`
# --------------------------------------------------------------------------------------------------------


def test_as_where():
    assert F.as_where(None) is None
    assert F.as_where(F.status("FAILED") & F.duration_at_least(30)) == API_EXAMPLE
    raw = copy.deepcopy(API_EXAMPLE)
    out = F.as_where(raw)
    assert out == API_EXAMPLE and out is not raw  # unchanged in meaning, never aliased
    assert F.as_where({"type": "in", "field": "status", "value": ("A", "B")}) == {
        "type": "in",
        "field": "status",
        "value": ["A", "B"],
    }


def test_as_where_rejects_bad_input_with_paths():
    with pytest.raises(ValueError, match=r"^where\.filters\[1\]\.value\.unit"):
        F.as_where({"type": "and", "filters": [FAILED, dur("lte", 1, "x")]})
    with pytest.raises(TypeError, match="where: expected None, a Filter or an ExecutionFilter dict"):
        F.as_where("status = FAILED")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="where"):
        F.as_where([FAILED])  # type: ignore[arg-type]
