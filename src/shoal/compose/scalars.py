"""Scalar helpers shared by the Compose short-syntax parsers.

YAML values arrive as plain Python after interpolation, so a number may be a string and a boolean
may be `"true"`; these helpers turn them into the text or flag Compose means.
"""

from __future__ import annotations

from shoal.model.errors import Invalid, KeyPath, format_path

__all__ = ["BadValue", "as_bool", "is_scalar", "scalar_to_str"]


class BadValue(Invalid):
    """A value inside the parsed one is wrong; `rel` locates it relative to the parsed value.

    The canonical walker prefixes its own key path, giving compose-go's
    `services.foo.environment.FOO must be ...` shape.
    """

    def __init__(self, rel: KeyPath, tail: str) -> None:
        super().__init__((format_path(rel) or "value") + tail)
        self.rel = rel
        self.tail = tail


_TRUE = frozenset({"true", "yes", "y", "on"})
_FALSE = frozenset({"false", "no", "n", "off"})


def as_bool(value: object) -> bool | None:
    """A YAML boolean, also when interpolation left it as a string; None when it is not one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def scalar_to_str(value: object) -> str:
    """The text a scalar stands for: YAML booleans are `true`/`false`, as in Go's fmt.Sprint."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_scalar(value: object) -> bool:
    return not isinstance(value, dict | list | tuple | set)
