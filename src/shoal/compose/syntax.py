"""Parsers for the Compose short syntaxes of single values.

Each takes one plain YAML value (after interpolation) and returns its long (mapping) form,
raising `Invalid` with compose-go's exact error text. This module holds shell commands,
`KEY=VAL` lists, environment and extra_hosts, and re-exports the port/volume parsers (`specs`),
the one-line forms (`shortforms`) and the scalar helpers, so callers need one import.
The walk over a whole document lives in `canonical`.
"""

from __future__ import annotations

from collections.abc import Callable

from shoal.compose.scalars import BadValue, as_bool, is_scalar, scalar_to_str
from shoal.compose.shortforms import (
    normalize_device,
    normalize_device_request,
    parse_build,
    parse_depends_on,
    parse_device,
    parse_env_file,
    parse_expose,
    parse_extends,
    parse_file_mount,
    parse_gpus,
    parse_healthcheck_test,
    parse_include,
    parse_name_list,
    parse_options,
    parse_ssh,
    parse_string_or_list,
    parse_ulimit,
)
from shoal.compose.specs import clean_target, normalize_port, parse_port, parse_volume
from shoal.model.errors import Invalid

__all__ = [
    "BadValue",
    "as_bool",
    "clean_target",
    "is_scalar",
    "normalize_device",
    "normalize_device_request",
    "normalize_port",
    "parse_args",
    "parse_build",
    "parse_depends_on",
    "parse_device",
    "parse_env_file",
    "parse_environment",
    "parse_expose",
    "parse_extends",
    "parse_extra_hosts",
    "parse_file_mount",
    "parse_gpus",
    "parse_healthcheck_test",
    "parse_include",
    "parse_list_or_dict",
    "parse_name_list",
    "parse_options",
    "parse_port",
    "parse_ssh",
    "parse_string_or_list",
    "parse_ulimit",
    "parse_volume",
    "scalar_to_str",
    "split_command",
]

# --- commands ----------------------------------------------------------------------------------

_BLANK = " \t\r\n"
_DQUOTE_ESCAPES = frozenset('"\\$`\n')  # what a backslash escapes inside "..." (POSIX)


def split_command(value: str | list[object]) -> list[str]:
    """A shell-form command → argv, with POSIX sh quoting rules; a list passes through.

    Unlike go-shellwords (compose-go) an unquoted `;`, `&&` or `|` does not silently drop the rest
    of the line: it stays a word, as with docker-compose v1's `shlex.split`.
    """
    if isinstance(value, list):
        return [scalar_to_str(item) for item in value]
    if not isinstance(value, str):
        raise Invalid(f"invalid type {type(value).__name__} for command")
    words: list[str] = []
    word: list[str] = []
    in_word = False
    index, length = 0, len(value)
    while index < length:
        char = value[index]
        if char in _BLANK:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            index += 1
        elif char == "\\":
            if index + 1 == length:
                raise Invalid("invalid command line string")
            if value[index + 1] != "\n":  # backslash-newline joins lines
                word.append(value[index + 1])
                in_word = True
            index += 2
        elif char == "'":
            close = value.find("'", index + 1)
            if close < 0:
                raise Invalid("invalid command line string")
            word.append(value[index + 1 : close])
            in_word = True
            index = close + 1
        elif char == '"':
            index = _double_quoted(value, index + 1, word)
            in_word = True
        else:
            word.append(char)
            in_word = True
            index += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(value: str, index: int, word: list[str]) -> int:
    """Append the body of a double-quoted string starting at `index`; return the index after it."""
    while index < len(value):
        char = value[index]
        if char == '"':
            return index + 1
        if char == "\\" and value[index + 1 : index + 2] in _DQUOTE_ESCAPES:
            if value[index + 1] != "\n":
                word.append(value[index + 1])
            index += 2
            continue
        word.append(char)
        index += 1
    raise Invalid("invalid command line string")


# --- key/value lists ---------------------------------------------------------------------------


def _mapping_items(value: object, sep: str = "=") -> list[tuple[str, object, bool]]:
    """(key, value, had_separator) of each entry; list items split on the first `sep`."""
    if isinstance(value, dict):
        return [(str(key), item, True) for key, item in value.items()]
    if isinstance(value, list):
        items: list[tuple[str, object, bool]] = []
        for position, entry in enumerate(value):
            if not is_scalar(entry) or entry is None:
                raise BadValue((position,), " must be a string")
            key, found, rest = scalar_to_str(entry).partition(sep)
            items.append((key, rest, bool(found)))
        return items
    raise BadValue((), " must be a mapping")


def _text_or_null(key: str, item: object) -> str | None:
    if item is None:
        return None
    if not is_scalar(item):
        raise BadValue((key,), " must be a boolean, null, number or string")
    return scalar_to_str(item)


def parse_list_or_dict(value: object, sep: str = "=", *, strict: bool = False) -> dict[str, str]:
    """`[K=V, K]` or `{K: V}` → `{K: "V"}` (labels, sysctls, annotations, options...).

    A key without a value, or with a null one, maps to the empty string, as the spec says for
    labels. `strict` (additional_contexts) rejects list items with no separator.
    """
    out: dict[str, str] = {}
    for key, item, had_sep in _mapping_items(value, sep):
        if strict and not had_sep:
            raise Invalid(f"invalid value {key}, expected key{sep}value")
        out[key] = _text_or_null(key, item) or ""
    return out


def parse_args(value: object) -> dict[str, str | None]:
    """Like `parse_list_or_dict`, but a bare key stays null: build args and other `KEY[=VAL]` maps
    where "unset" differs from "empty"."""
    return {
        key: _text_or_null(key, item) if had_sep else None
        for key, item, had_sep in _mapping_items(value)
    }


def parse_environment(value: object, lookup: Callable[[str], str | None]) -> dict[str, str | None]:
    """`environment` in either form → `{NAME: value}`.

    A bare `NAME` (or `NAME:` with no value) takes its value from `lookup`, and stays null when
    the variable is not set there; `NAME=` is the empty string.
    """
    if value is None:
        return {}
    out = parse_args(value)
    for key, item in out.items():
        if key.endswith(" "):
            raise Invalid(f"environment variable {key} is declared with a trailing space")
        if item is None:
            out[key] = lookup(key)
    return out


# --- extra_hosts -------------------------------------------------------------------------------


def _strip_brackets(ip: str) -> str:
    return ip[1:-1] if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]" else ip


def parse_extra_hosts(value: object) -> dict[str, list[str]]:
    """`[host=ip, host:ip]` or `{host: ip | [ip...]}` → `{host: [ip, ...]}`.

    `=` is tried before `:` so IPv6 addresses survive; `host=a,b` and repeated hosts collect.
    """
    hosts: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, list):
                hosts[str(key)] = [scalar_to_str(ip) for ip in item]
            elif is_scalar(item):
                hosts[str(key)] = [scalar_to_str(item) if item is not None else ""]
            else:
                raise BadValue((str(key),), " must be a string or a list of strings")
    elif isinstance(value, list):
        for position, entry in enumerate(value):
            if not is_scalar(entry) or entry is None:
                raise BadValue((position,), " must be a string")
            text = scalar_to_str(entry)
            host, sep, addresses = text.partition("=")
            if not sep:
                host, sep, addresses = text.partition(":")
            if not sep:
                raise Invalid(f"invalid additional host, missing IP: {text}")
            hosts.setdefault(host, []).extend(addresses.split(","))
    else:
        raise BadValue((), " must be a mapping")
    for host, ips in hosts.items():
        if not host or ":" in host or "=" in host:
            raise Invalid(f"bad host name '{host}'")
        hosts[host] = [_strip_brackets(ip) for ip in ips]
    return hosts
