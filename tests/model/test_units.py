"""Byte sizes, Go durations, file modes and the pydantic types built on them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shoal.model.units import (
    ByteSize,
    ByteSizeString,
    Duration,
    FileMode,
    Microseconds,
    NonNegativeByteSize,
    StrValue,
    format_duration,
    format_duration_ns,
    parse_bytes,
    parse_duration,
    parse_duration_ns,
    parse_file_mode,
)
from tests.corpus import CORPUS

CASES = json.loads((CORPUS / "compose-go" / "cases.json").read_text())

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
US, MS, S = 1_000, 1_000_000, 1_000_000_000


# --- bytes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", CASES["unit_bytes"]["cases"], ids=lambda c: repr(c["input"]) if "input" in c else ""
)
def test_bytes_cases_json(case):
    if case.get("error"):
        with pytest.raises(ValueError, match="invalid size"):
            parse_bytes(case["input"])
    else:
        assert parse_bytes(case["input"]) == case["expected"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # NOTES section 8 and section 6
        ("50M", 50 * MIB),
        ("20M", 20 * MIB),
        ("640kb", 640 * KIB),
        ("2gb", 2 * GIB),
        ("1kb", 1024),
        (1024, 1024),
        (0, 0),
        (-1, -1),
        # the spec's examples (11-extension.md "Specifying byte values")
        ("2b", 2),
        ("1024kb", 1024 * KIB),
        ("2048k", 2048 * KIB),
        ("300m", 300 * MIB),
        ("1gb", GIB),
        # case-insensitive, fractions (awesome-compose/minecraft), go-units extras
        ("512M", 512 * MIB),
        ("1G", GIB),
        ("1GB", GIB),
        ("1Gb", GIB),
        ("1.5G", 1610612736),
        ("0.5k", 512),
        ("1.5", 1),
        ("1t", 1 << 40),
        ("1tb", 1 << 40),
        ("1p", 1 << 50),
        ("1KiB", KIB),
        ("1mib", MIB),
        ("1 GB", GIB),
        ("1B", 1),
        ("0", 0),
        ("+5", 5),
        (2048.0, 2048),
        (1.9, 1),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_bytes_valid(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "12xb",
        "invalid",
        "",
        " ",
        "1 ",
        " 1",
        "1  g",
        "g",
        "kb",
        "1.",
        ".5g",
        "1.2.3g",
        "-1g",
        "--1",
        "1e3",
        "1i",
        "1ib",
        "1kbb",
        "1gg",
        "0x10",
        "1_000",
        "\u0663",  # Arabic-Indic digit three: int() would take it, Compose does not
        "1\n",
        "9223372036854775808",
        "8192p",
        "9" * 200,
        True,
        False,
        None,
        float("nan"),
        float("inf"),
        [1],
    ],
)
def test_bytes_invalid(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_bytes(text)


def test_bytes_error_message_quotes_input():
    with pytest.raises(ValueError) as info:
        parse_bytes("12xb")
    assert str(info.value) == "invalid size: '12xb'"


@given(st.text(max_size=30))
def test_bytes_random_text_returns_int_or_value_error(text):
    try:
        result = parse_bytes(text)
    except ValueError:
        return
    assert isinstance(result, int)
    assert -(2**63) <= result < 2**63


@given(st.from_regex(r"\A[0-9]{1,6}(\.[0-9]{1,3})?[kKmMgG][bB]?\Z"))
def test_bytes_well_formed_always_parse(text):
    assert parse_bytes(text) >= 0


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", CASES["durations_seconds"]["cases"], ids=lambda c: c.get("input", "")
)
def test_duration_cases_json(case):
    assert parse_duration(case["input"]) == timedelta(seconds=case["expected"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the spec's examples (11-extension.md "Specifying durations")
        ("10ms", 10 * MS),
        ("40s", 40 * S),
        ("1m30s", 90 * S),
        ("1h5m30s20ms", (3600 + 5 * 60 + 30) * S + 20 * MS),
        ("1us", US),
        # Go's grammar
        ("1.5s", 1500 * MS),
        (".5s", 500 * MS),
        ("1.s", S),
        ("1.5h", 90 * 60 * S),
        ("1h1.5m", 3600 * S + 90 * S),
        ("1s1s", 2 * S),
        ("-10s", -10 * S),
        ("+10s", 10 * S),
        ("-1.5h", -90 * 60 * S),
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("1ns", 1),
        ("1\u00b5s", US),  # micro sign
        ("1\u03bcs", US),  # Greek mu
        ("0.000000001s", 1),
        ("0.0000000019s", 1),  # truncated like Go
        ("9223372036854775807ns", 2**63 - 1),
        ("-9223372036854775808ns", -(2**63)),
        # str2duration, which compose-go uses, adds days and weeks
        ("1d", 86400 * S),
        ("1w2d", 9 * 86400 * S),
        (0, 0),
        (0.0, 0),
    ],
)
def test_duration_valid(text, expected):
    assert parse_duration_ns(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "s",
        ".",
        ".s",
        "-",
        "+",
        "10",
        "1.5",
        "-3",
        "1x",
        "1S",
        "1H",
        "1 s",
        " 1s",
        "1s ",
        "1.2.3s",
        "1m-3s",
        "1e3s",
        "\u0663s",
        "9223372036854775808ns",
        "3000000h",
        "9" * 100 + "s",
        10,
        1.5,
        True,
        None,
        [],
    ],
)
def test_duration_invalid(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration_ns(text)


def test_bare_number_names_the_missing_unit():
    with pytest.raises(ValueError, match="missing unit"):
        parse_duration("10")
    with pytest.raises(ValueError, match="missing unit"):
        parse_duration(30)


def test_duration_below_a_microsecond_truncates_toward_zero():
    assert parse_duration("1500ns") == timedelta(microseconds=1)
    assert parse_duration("-1500ns") == timedelta(microseconds=-1)
    assert parse_duration("999ns") == timedelta(0)


# Go's time.Duration.String() (the `durationTests` table in Go's time package tests).
GO_STRINGS = [
    ("0s", 0),
    ("1ns", 1),
    ("1.1\u00b5s", 1100),
    ("2.2ms", 2200 * US),
    ("3.3s", 3300 * MS),
    ("4m5s", 4 * 60 * S + 5 * S),
    ("4m5.001s", 4 * 60 * S + 5001 * MS),
    ("5h6m7.001s", 5 * 3600 * S + 6 * 60 * S + 7001 * MS),
    ("8m0.000000001s", 8 * 60 * S + 1),
    ("2562047h47m16.854775807s", 2**63 - 1),
    ("-2562047h47m16.854775808s", -(2**63)),
    # and the shapes Compose prints
    ("1m30s", 90 * S),
    ("10s", 10 * S),
    ("1h0m0s", 3600 * S),
    ("1m0s", 60 * S),
    ("500ms", 500 * MS),
    ("1.5s", 1500 * MS),
    ("-5s", -5 * S),
    ("999ns", 999),
    ("1\u00b5s", US),
    ("24h0m0s", 86400 * S),
]


@pytest.mark.parametrize(("text", "ns"), GO_STRINGS)
def test_go_duration_string(text, ns):
    assert format_duration_ns(ns) == text
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=10), "10s"),
        (timedelta(hours=1), "1h0m0s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1), "1\u00b5s"),
        (timedelta(days=2, seconds=1), "48h0m1s"),
        (timedelta(seconds=-90), "-1m30s"),
        (timedelta(hours=1, minutes=5, seconds=30, milliseconds=20), "1h5m30.02s"),
    ],
)
def test_format_duration(td, text):
    assert format_duration(td) == text
    assert parse_duration(text) == td


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_go_string_round_trips_every_int64(ns):
    assert parse_duration_ns(format_duration_ns(ns)) == ns


@given(st.timedeltas(min_value=timedelta(days=-100000), max_value=timedelta(days=100000)))
def test_timedelta_round_trips(td):
    assert parse_duration(format_duration(td)) == td


@given(st.text(max_size=30))
def test_duration_random_text_returns_or_value_error(text):
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert isinstance(result, timedelta)


@given(st.text(alphabet="0123456789.+-hmsuµnwd", max_size=20))
def test_duration_near_miss_text_returns_or_value_error(text):
    try:
        result = parse_duration_ns(text)
    except ValueError:
        return
    assert -(2**63) <= result < 2**63


# --- file modes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0440", 0o440),
        ("0o440", 0o440),
        ("0O440", 0o440),
        ("440", 0o440),
        ("555", 0o555),  # NOTES section 6: the interpolated string is octal
        ("0", 0),
        ("0777", 0o777),
        (0o440, 0o440),  # PyYAML reads `mode: 0440` as this int already
        (288, 288),
        (440, 440),  # an int stays as given (decimal 440)
        (493.0, 493),
    ],
)
def test_file_mode(value, expected):
    assert parse_file_mode(value) == expected


@pytest.mark.parametrize("value", ["", "0o", "0999", "8", "rw", "0x1ff", "0440 ", 1.5, True])
def test_file_mode_invalid(value):
    with pytest.raises(ValueError, match="invalid file mode"):
        parse_file_mode(value)


# --- pydantic types --------------------------------------------------------------------------


class Holder(BaseModel):
    duration: Duration | None = None
    size: ByteSize | None = None
    size_str: ByteSizeString | None = None
    tmpfs: NonNegativeByteSize | None = None
    mode: FileMode | None = None
    text: StrValue | None = None
    micros: Microseconds | None = None


def test_duration_type_parses_and_dumps_go_string_in_both_modes():
    holder = Holder(duration="1m30s")
    assert holder.duration == timedelta(seconds=90)
    assert holder.model_dump()["duration"] == "1m30s"
    assert holder.model_dump(mode="json")["duration"] == "1m30s"
    assert Holder(duration=timedelta(seconds=5)).model_dump()["duration"] == "5s"


def test_byte_size_types():
    holder = Holder(size="1.5G", size_str="50M", tmpfs="1kb")
    assert holder.size == 1610612736
    assert holder.model_dump(mode="json") == {
        "duration": None,
        "size": 1610612736,
        "size_str": "52428800",
        "tmpfs": 1024,
        "mode": None,
        "text": None,
        "micros": None,
    }


def test_file_mode_type():
    assert Holder(mode="0440").mode == 0o440
    assert Holder(mode=0o440).model_dump(mode="json")["mode"] == 0o440


def test_str_value_type():
    assert Holder(text=1).text == "1"
    assert Holder(text=2.5).text == "2.5"
    assert Holder(text=2.0).text == "2"
    assert Holder(text=True).text == "true"
    assert Holder(text=False).text == "false"
    assert Holder(text="x").text == "x"


def test_microseconds_type():
    assert Holder(micros="400ms").micros == 400_000
    assert Holder(micros=95000).micros == 95000
    assert Holder(micros="1400us").micros == 1400
    assert Holder(micros="11000").micros == 11000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration", "10"),
        ("duration", "abc"),
        ("duration", True),
        ("duration", [1]),
        ("size", "12xb"),
        ("size", True),
        ("size", None if False else {}),
        ("tmpfs", -1),
        ("tmpfs", "-1"),
        ("mode", "0999"),
        ("mode", -1),
        ("mode", 0o10000),
        ("text", [1]),
        ("micros", "1x"),
    ],
)
def test_types_reject_garbage_with_field_loc(field, value):
    with pytest.raises(ValidationError) as info:
        Holder(**{field: value})
    assert [e["loc"] for e in info.value.errors()] == [(field,)]
