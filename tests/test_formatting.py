"""formatting: golden outputs of every formatter, the same value reading the same in every output."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from exec_analytics import formatting as fmt

NAN = float("nan")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), (7, "7"), (1234, "1,234"), (12_345_678, "12,345,678"), (1234.4, "1,234"), (np.int64(5), "5"),
     (NAN, "–"), (None, "–"), (pd.NA, "–"), ("x", "–"), (True, "–")],
)  # fmt: skip
def test_count(value, expected):
    assert fmt.count(value) == expected


@pytest.mark.parametrize(
    ("n", "word", "many", "expected"),
    [(0, "failure", None, "0 failures"), (1, "failure", None, "1 failure"), (2, "failure", None, "2 failures"),
     (2001, "execution", None, "2,001 executions"), (1, "stretch", "stretches", "1 stretch"),
     (3, "stretch", "stretches", "3 stretches")],
)  # fmt: skip
def test_plural(n, word, many, expected):
    assert fmt.plural(n, word, many) == expected


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [(0.0123, 2, "1.23%"), (0.5, 0, "50%"), (1, 2, "100.00%"), (0.00004, 2, "0.00%"), (-0.00001, 2, "0.00%"),
     (-0.25, 0, "-25%"), (0.9995, 1, "100.0%"), (NAN, 2, "–")],
)  # fmt: skip
def test_percent(value, digits, expected):
    assert fmt.percent(value, digits) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.123, "+12%"), (-0.003, "-0.3%"), (0.0996, "+10%"), (0.094, "+9.4%"), (-1.5, "-150%"), (0.0, "0.0%"),
     (-0.0001, "0.0%"), (0.0004, "0.0%"), (NAN, "–"), (math.inf, "–")],
)  # fmt: skip
def test_signed_percent_never_reads_minus_zero(value, expected):
    assert fmt.signed_percent(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0025, "+0.25 pp"), (-0.0125, "-1.25 pp"), (0.0, "0.00 pp"), (-0.00001, "0.00 pp"), (NAN, "–")],
)
def test_pp_change(value, expected):
    assert fmt.pp_change(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0042, "4.20 ms"), (0.0123, "12.3 ms"), (0.85, "850 ms"), (0.9996, "1.00 s"), (1, "1.00 s"),
     (2, "2.00 s"), (12.345, "12.3 s"), (45.25, "45.2 s"), (59.96, "1.0 min"), (300, "5.0 min"),
     (3599.99, "1.0 h"), (5400, "1.5 h"), (0, "0 s"), (-1, "–"), (NAN, "–"), (None, "–")],
)  # fmt: skip
def test_seconds_pick_a_unit_that_fits(value, expected):
    assert fmt.seconds(value) == expected


def test_timestamp_is_utc_to_the_minute():
    assert fmt.timestamp(pd.Timestamp("2026-11-17T10:05:59+01:00")) == "2026-11-17 09:05 UTC"
    assert fmt.timestamp("2026-11-17T09:00Z") == "2026-11-17 09:00 UTC"
    assert fmt.timestamp(pd.NaT) == fmt.timestamp(None) == "–"


@pytest.mark.parametrize(
    ("value", "expected"), [(0.95, "95%"), (0.9, "90%"), (0.995, "99.5%"), (0.9995, "99.95%"), (0.99, "99%")]
)
def test_level(value, expected):
    assert fmt.level(value) == expected


def test_text_neutralises_controls_and_bidirectional_characters():
    hostile = "a\x00b\x1b[31mc\u202ed\u2066e\u200ff\x85g"
    assert fmt.text(hostile) == "a\ufffdb\ufffd[31mc\ufffdd\ufffde\ufffdf\ufffdg"
    assert fmt.text("line\r\nbreak\tand\u2028tab") == "line break and tab"
    assert fmt.text("é $\\frac{$ <b>") == "é $\\frac{$ <b>"  # printable text is left alone (escaping is the output's)
    assert fmt.text(None, fmt.NO_REASON) == "(no reason)" and fmt.text(pd.NA) == "–"
    for ch in ["\x00", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]:
        assert ch not in fmt.text(f"x{ch}y")


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("failure_rate", "failure rate"), ("failure_rate[timeout]", "failure rate (timeout)"),
     ("failure_rate[<no reason>]", "failure rate (no reason)"), ("p95", "p95"),
     ("distribution", "distribution (P(slower))")],
)  # fmt: skip
def test_metric_name_in_words(metric, expected):
    assert fmt.metric_name(metric) == expected


def _row(metric: str, judged_on: str, values: tuple[float, float, float]) -> dict[str, object]:
    on = {"ratio": ("ratio", "difference"), "difference": ("difference", "ratio")}[judged_on]
    row: dict[str, object] = {"metric": metric, "judged_on": judged_on}
    for suffix, v in zip(("", "_low", "_high"), values, strict=True):
        row[on[0] + suffix] = v
        row[on[1] + suffix] = NAN
    return row


def test_effect_in_the_units_it_was_judged_on():
    assert fmt.effect(_row("p95", "ratio", (1.4, 1.37, 1.434))) == "×1.40 [1.37, 1.43]"
    assert fmt.effect(_row("failure_rate", "difference", (0.0025, 0.001, 0.004))) == "+0.25 pp [+0.10, +0.40]"
    assert fmt.effect(_row("distribution", "difference", (0.12, 0.08, -0.01))) == "+0.120 [+0.080, -0.010]"
    assert fmt.effect(_row("p50", "ratio", (NAN, 1.0, 2.0))) == "no estimate"
    # A difference that rounds to zero has no sign, in the centre or at a bound.
    assert fmt.effect(_row("failure_rate", "difference", (-0.00001, -0.0014, 0.0013))) == "0.00 pp [-0.14, +0.13]"
    assert fmt.effect(_row("distribution", "difference", (0.0002, -0.0004, 0.01))) == "0.000 [0.000, +0.010]"


def test_table_aligns_text_left_and_numbers_right():
    out = fmt.table({"name": ["a", "longer"], "count": ["1", "12,345"]}, left=["name"])
    assert out.splitlines() == ["name     count", "a            1", "longer  12,345"]
    with pytest.raises(ValueError, match="differ in length"):
        fmt.table({"a": ["1"], "b": []})


def test_frame_writes_the_named_columns_with_units() -> None:
    data = pd.DataFrame({"rate": [0.0123, float("nan")], "p95": [0.85, 300.0], "n": [12345, 7], "kind": ["a", "b"]},
                        index=[3, 5])  # fmt: skip
    out = fmt.frame(data, percent=["rate"], seconds=["p95"], counts=["n"], digits=1)
    assert out.to_dict("list") == {"rate": ["1.2%", fmt.MISSING], "p95": ["850 ms", "5.0 min"], "n": ["12,345", "7"],
                                   "kind": ["a", "b"]}  # fmt: skip
    assert list(out.index) == [3, 5] and data["rate"].iloc[0] == 0.0123  # a copy; the input is untouched
    with pytest.raises(ValueError, match="no column"):
        fmt.frame(data, percent=["share"])
