"""Byte sizes, Go durations and file modes as Compose writes them, and pydantic types for them.

Values reach the model as written (`"1m30s"`, `"1.5G"`, `"0440"`) or as strings produced by
interpolation (`"555"`), so every type here parses text as well as numbers.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)

# Binary multiples, as docker/go-units `RAMInBytes` reads them: the spec lists b, k, m, g; go-units
# (what Docker and compose-go call) also takes t and p and an optional `i` (`KiB`).
_BYTE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp]?)(i?)(b?)", re.IGNORECASE | re.ASCII)
_PLAIN_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_MAX_TEXT = 64  # longer input cannot be a valid int64 size or duration

_NS_PER_US = 1_000
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000
# Go's units plus `d` and `w`: compose-go parses durations with go-str2duration, which adds them.
_DURATION_UNITS = {
    "ns": 1,
    "us": _NS_PER_US,
    "\u00b5s": _NS_PER_US,  # micro sign
    "\u03bcs": _NS_PER_US,  # Greek mu
    "ms": _NS_PER_MS,
    "s": _NS_PER_S,
    "m": 60 * _NS_PER_S,
    "h": 3600 * _NS_PER_S,
    "d": 86400 * _NS_PER_S,
    "w": 7 * 86400 * _NS_PER_S,
}
_DIGITS = frozenset("0123456789")


def parse_bytes(value: int | float | str) -> int:
    """A byte size (`"512m"`, `"1.5G"`, `"2gb"`, `2048`, `"-1"`) → bytes.

    Units are binary multiples and case-insensitive. A fraction is truncated after scaling, as
    go-units does (`"1.5k"` → 1536). Only a plain integer may be negative (`-1` means unlimited
    for `memswap_limit`).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size: {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"invalid size: {value!r}")
        result = int(value)
    elif isinstance(value, str):
        result = _parse_size_text(value)
    else:
        raise ValueError(f"invalid size: {value!r}")
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise ValueError(f"invalid size: {value!r} (out of range)")
    return result


def _parse_size_text(text: str) -> int:
    if len(text) > _MAX_TEXT:
        raise ValueError(f"invalid size: {text[:_MAX_TEXT]!r}... (too long)")
    if _PLAIN_INT_RE.fullmatch(text):
        return int(text)
    match = _SIZE_RE.fullmatch(text)
    # The pattern alone would pass `1i`, `1ib` and `1 `: `i` needs a unit letter before it, and
    # the separating space needs a unit after it.
    if match is None or (match[3] and not match[2]) or (" " in text and not match[0][-1].isalpha()):
        raise ValueError(f"invalid size: {text!r}")
    amount = Fraction(match[1])
    return int(amount * _BYTE_UNITS[match[2].lower()])


def parse_duration_ns(value: str | int | float) -> int:
    """A Go duration (`"1m30s"`, `"1.5s"`, `"-10ms"`, `"1h5m30s20ms"`) → nanoseconds.

    Bare numbers are rejected (except 0), as compose-go does: the spec always writes a unit,
    and a unitless `10` could mean seconds or nanoseconds.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration: {value!r}")
    if isinstance(value, int | float):
        if value == 0:
            return 0
        raise ValueError(f"invalid duration: {value!r} (missing unit, e.g. '10s')")
    if not isinstance(value, str):
        raise ValueError(f"invalid duration: {value!r}")
    if len(value) > _MAX_TEXT:
        raise ValueError(f"invalid duration: {value[:_MAX_TEXT]!r}... (too long)")
    return _parse_go_duration(value)


def _parse_go_duration(text: str) -> int:
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration: {text!r}")
    total = 0
    pos = 0
    while pos < len(rest):
        start = pos
        while pos < len(rest) and rest[pos] in _DIGITS:
            pos += 1
        whole = rest[start:pos]
        fraction = ""
        if pos < len(rest) and rest[pos] == ".":
            pos += 1
            frac_start = pos
            while pos < len(rest) and rest[pos] in _DIGITS:
                pos += 1
            fraction = rest[frac_start:pos]
        if not whole and not fraction:
            raise ValueError(f"invalid duration: {text!r}")
        unit_start = pos
        while pos < len(rest) and rest[pos] not in _DIGITS and rest[pos] != ".":
            pos += 1
        unit = rest[unit_start:pos]
        if not unit:
            raise ValueError(f"invalid duration: {text!r} (missing unit, e.g. '10s')")
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise ValueError(f"invalid duration: {text!r} (unknown unit {unit!r})")
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
    if total > (_INT64_MAX + 1 if negative else _INT64_MAX):
        raise ValueError(f"invalid duration: {text!r} (out of range)")
    return -total if negative else total


def parse_duration(value: str | int | float) -> timedelta:
    """A Go duration → `timedelta`. Below a microsecond is truncated (toward zero)."""
    ns = parse_duration_ns(value)
    micros = ns // _NS_PER_US if ns >= 0 else -(-ns // _NS_PER_US)
    return timedelta(microseconds=micros)


def format_duration(td: timedelta) -> str:
    """`timedelta` → Go's `time.Duration.String()` (`1m30s`, `1h0m0s`, `500ms`, `0s`)."""
    micros = (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds
    return format_duration_ns(micros * _NS_PER_US)


def format_duration_ns(ns: int) -> str:
    """Nanoseconds → Go's `time.Duration.String()`."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    size = abs(ns)
    if size < _NS_PER_US:
        return f"{sign}{size}ns"
    if size < _NS_PER_MS:
        return f"{sign}{_with_fraction(size, 3)}\u00b5s"
    if size < _NS_PER_S:
        return f"{sign}{_with_fraction(size, 6)}ms"
    whole_seconds, frac_ns = divmod(size, _NS_PER_S)
    seconds_text = _with_fraction((whole_seconds % 60) * _NS_PER_S + frac_ns, 9) + "s"
    minutes = whole_seconds // 60
    if not minutes:
        return sign + seconds_text
    # Go prints every larger unit once the value reaches it, zeros included (`1h0m0s`).
    hours = minutes // 60
    text = f"{minutes % 60}m{seconds_text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _with_fraction(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def parse_file_mode(value: int | float | str) -> int:
    """A file mode: an int stays as given; a string is octal (`"0440"`, `"0o440"`, `"555"`)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid file mode: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError(f"invalid file mode: {value!r}")
    if isinstance(value, str):
        digits = value[2:] if value[:2] in ("0o", "0O") else value
        if digits and len(digits) <= _MAX_TEXT and all(c in "01234567" for c in digits):
            return int(digits, 8)
        raise ValueError(f"invalid file mode: {value!r} (expected octal digits, e.g. '0440')")
    raise ValueError(f"invalid file mode: {value!r}")


def to_str_value(value: Any) -> Any:
    """Scalars written unquoted in YAML (`1`, `2.5`, `true`) → the string Compose reads there.

    Anything else is returned unchanged so the `str` validator reports it.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Go prints an integral float without the `.0`.
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    return value


def parse_microseconds(value: int | float | str) -> int:
    """`cpu_rt_period`/`cpu_rt_runtime`: an integer of microseconds, or a duration (`"400ms"`)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid microseconds: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _PLAIN_INT_RE.fullmatch(value):
        return int(value)
    if isinstance(value, str):
        return parse_duration_ns(value) // _NS_PER_US
    raise ValueError(f"invalid microseconds: {value!r}")


def _validate_duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"invalid duration: {value!r}")


def _validate_bytes(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return parse_bytes(value)
    raise ValueError(f"invalid size: {value!r}")


def _validate_file_mode(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return parse_file_mode(value)
    raise ValueError(f"invalid file mode: {value!r}")


def _validate_microseconds(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return parse_microseconds(value)
    raise ValueError(f"invalid microseconds: {value!r}")


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate_duration),
    PlainSerializer(format_duration, return_type=str),
]
"""A Go duration; `timedelta` in Python, Go's `Duration.String()` text when dumped."""

ByteSize = Annotated[int, BeforeValidator(_validate_bytes)]
"""A byte size; bytes as an int."""

NonNegativeByteSize = Annotated[ByteSize, Field(ge=0)]

ByteSizeString = Annotated[ByteSize, PlainSerializer(str, return_type=str)]
"""A byte size dumped as a decimal string: where the schema only allows a string
(`deploy.resources.*.memory`), as compose-go's `UnitBytes` marshals it."""

FileMode = Annotated[int, BeforeValidator(_validate_file_mode), Field(ge=0, le=0o7777)]
"""Permission bits; a string is read as octal. Dumped as an int."""

StrValue = Annotated[str, BeforeValidator(to_str_value)]
"""A string where YAML may have given a number or a bool (`driver_opts: {baz: 1}` → `"1"`)."""

Microseconds = Annotated[int, BeforeValidator(_validate_microseconds)]
"""An int of microseconds, also accepting a duration string."""
