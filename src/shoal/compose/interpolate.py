"""Compose variable interpolation: `$VAR`, `${VAR:-default}` and friends.

`substitute` expands one string by the rules of the Compose specification (the same results as
compose-go's `template.Substitute`); `interpolate` applies it to every string value of a parsed
Compose document and reports failures with the key path of the offending value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

from shoal.compose.tags import Override, Reset
from shoal.model.errors import ComposeError, KeyPath, format_path

__all__ = [
    "InterpolationError",
    "InvalidTemplateError",
    "Lookup",
    "MissingRequiredError",
    "interpolate",
    "substitute",
]

Lookup: TypeAlias = Callable[[str], str | None]
"""Maps a variable name to its value; None means unset, "" means set but empty."""

log = logging.getLogger(__name__)
# Unset-variable warnings reach the user only through whatever logging the application sets up;
# without this, Python's last-resort handler would print them on stderr from inside the library.
log.addHandler(logging.NullHandler())

# The spec's `[_a-z][_a-z0-9]*`, matched case-insensitively as compose-go does; ASCII only.
_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_BRACE = re.compile(r"[{}]")
_OPERATORS = frozenset("-?+")


class InterpolationError(ComposeError):
    """A string value could not be interpolated; `path` is where it sits in the document."""


class InvalidTemplateError(InterpolationError):
    """The string is not a valid template (`${`, `${ foo}`, `${foo!}`…)."""

    def __init__(self, message: str, *, template: str, path: KeyPath = ()) -> None:
        super().__init__(message, path=path)
        self.template = template


class MissingRequiredError(InterpolationError):
    """`${VAR:?msg}` or `${VAR?msg}` met a variable without the value it requires."""

    def __init__(self, message: str, *, variable: str, reason: str, path: KeyPath = ()) -> None:
        super().__init__(message, path=path)
        self.variable = variable
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Var:
    """One `$NAME` or `${NAME<op><arg>}`; `op` is "" for a plain reference."""

    name: str
    op: str
    arg: tuple[_Part, ...]


_Part: TypeAlias = "str | _Var"


class _Invalid(Exception):
    """Raised inside the parser; `substitute` turns it into InvalidTemplateError."""


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing a `${` whose argument starts at `start`, or -1.

    Braces inside the argument nest (`${X:-{"a":1}}`). When they do not balance, the last `}`
    closes the expression, which is how compose-go reads such a default too.
    """
    depth = 1
    for m in _BRACE.finditer(text, start):
        if m.group() == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.start()
    return text.rfind("}", start)


@lru_cache(maxsize=8192)
def _parse(template: str) -> tuple[_Part, ...]:
    # Cached: the same strings (image tags, `${TAG:-latest}`) recur across services and files.
    parts: list[_Part] = []
    n = len(template)
    i = lit = 0
    while True:
        j = template.find("$", i)
        if j < 0 or j + 1 >= n:
            break
        c = template[j + 1]
        if c == "$":
            parts.append(template[lit : j + 1])
            i = lit = j + 2
            continue
        if c == "{":
            m = _NAME.match(template, j + 2)
            if m is None:
                raise _Invalid
            k = m.end()
            if k >= n:
                raise _Invalid
            c = template[k]
            if c == "}":
                var = _Var(m.group(), "", ())
                end = k + 1
            else:
                if c == ":" and k + 1 < n and template[k + 1] in _OPERATORS:
                    op = template[k : k + 2]
                elif c in _OPERATORS:
                    op = c
                else:
                    raise _Invalid
                k += len(op)
                close = _closing_brace(template, k)
                if close < 0:
                    raise _Invalid
                var = _Var(m.group(), op, _parse(template[k:close]))
                end = close + 1
        else:
            m = _NAME.match(template, j + 1)
            if m is None:
                # A `$` that starts nothing (`a $ b`, `^re$`, `$1`) is kept as written.
                i = j + 1
                continue
            var = _Var(m.group(), "", ())
            end = m.end()
        if j > lit:
            parts.append(template[lit:j])
        parts.append(var)
        i = lit = end
    if lit < n:
        parts.append(template[lit:])
    return tuple(parts)


def _evaluate(parts: tuple[_Part, ...], lookup: Lookup) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = lookup(part.name)
        op = part.op
        # Defaults, replacements and messages are expanded only when used, as in a shell:
        # `${SET:-${OTHER:?}}` does not fail when SET has a value.
        if op == "":
            if value is None:
                log.warning(
                    'The "%s" variable is not set. Defaulting to a blank string.', part.name
                )
            out.append(value or "")
        elif op == ":-":
            out.append(value if value else _evaluate(part.arg, lookup))
        elif op == "-":
            out.append(value if value is not None else _evaluate(part.arg, lookup))
        elif op == ":+":
            out.append(_evaluate(part.arg, lookup) if value else "")
        elif op == "+":
            out.append(_evaluate(part.arg, lookup) if value is not None else "")
        elif (op == ":?" and not value) or (op == "?" and value is None):
            reason = _evaluate(part.arg, lookup)
            message = f"required variable {part.name} is missing a value"
            if reason:
                message += f": {reason}"
            raise MissingRequiredError(message, variable=part.name, reason=reason)
        else:  # `:?` or `?` whose variable has the value it requires
            out.append(value or "")
    return "".join(out)


def _invalid(template: str, detail: str = "") -> InvalidTemplateError:
    # json.dumps gives the double-quoted, escaped form compose-go prints with %#v.
    message = f"Invalid template: {json.dumps(template, ensure_ascii=False)}{detail}"
    return InvalidTemplateError(message, template=template)


def substitute(template: str, lookup: Lookup) -> str:
    """Expand the variables in `template`; `$$` gives a literal `$`.

    Raises InvalidTemplateError (message contains "Invalid template") for malformed `${…}` and
    MissingRequiredError for a failed `${VAR:?msg}` / `${VAR?msg}`.
    """
    if "$" not in template:
        return template
    try:
        return _evaluate(_parse(template), lookup)
    except _Invalid:
        raise _invalid(template) from None
    except RecursionError:
        raise _invalid(template, " (nested too deeply)") from None


def interpolate(value: Any, lookup: Lookup, path: KeyPath = ()) -> Any:
    """Return a copy of the YAML tree `value` with every string value substituted.

    Keys are left alone. `!reset` markers pass through; `!override X` becomes `!override` of the
    interpolated X. Failures raise InterpolationError carrying the full key path (`path` is the
    prefix under which `value` sits).
    """
    try:
        return _walk(value, lookup)
    except InterpolationError as err:
        raise _at(err, path + err.path) from err


def _at(err: InterpolationError, path: KeyPath) -> InterpolationError:
    where = format_path(path) or "<root>"
    if isinstance(err, InvalidTemplateError):
        return InvalidTemplateError(
            f"invalid interpolation format for {where}.\n"
            f"You may need to escape any $ with another $.\n{err.template}",
            template=err.template,
            path=path,
        )
    message = f"error while interpolating {where}: {err.message}"
    if isinstance(err, MissingRequiredError):
        return MissingRequiredError(message, variable=err.variable, reason=err.reason, path=path)
    return InterpolationError(message, path=path)


def _walk(value: Any, lookup: Lookup) -> Any:
    # Exact type checks first: this runs on every node of every file, and plain str/dict/list
    # are what the YAML reader produces. Paths are collected only on the way out of a failure.
    kind = type(value)
    if kind is str:
        return substitute(value, lookup) if "$" in value else value
    if kind is dict:
        out: dict[Any, Any] = {}
        for key, item in value.items():
            try:
                out[key] = _walk(item, lookup)
            except InterpolationError as err:
                err.path = (key, *err.path)
                raise
        return out
    if kind is list:
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(_walk(item, lookup))
            except InterpolationError as err:
                err.path = (index, *err.path)
                raise
        return items
    if isinstance(value, Override):
        return Override(_walk(value.value, lookup))
    if isinstance(value, Reset):
        return value
    if isinstance(value, str):
        return substitute(str(value), lookup)
    if isinstance(value, dict):
        return _walk(dict(value), lookup)
    if isinstance(value, list | tuple):
        return _walk(list(value), lookup)
    return value
