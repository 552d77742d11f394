"""Validate a Compose document against the Compose Specification's JSON schema.

The schema ships inside the package (compose-spec.json, Apache-2.0, from compose-spec/compose-go).
jsonschema's messages are rewritten in the reference loader's words and carry the key path, so
the loader can add file, line and column.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from shoal.model.errors import ComposeError, KeyPath, format_path

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a integer",  # sic: the reference loader's wording, kept so scripts match
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


@cache
def schema() -> dict[str, Any]:
    text = resources.files("shoal.compose").joinpath("compose-spec.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> Any:
    import jsonschema  # imported lazily: it costs ~60 ms and `shoal --help` must stay quick

    return jsonschema.Draft202012Validator(schema())


def validate(document: dict[str, Any]) -> None:
    """Raise ComposeError (with `path`) for the most relevant schema violation, if any."""
    validator = _validator()
    errors = list(validator.iter_errors(document))
    if not errors:
        return
    from jsonschema.exceptions import best_match

    err = best_match(errors)
    while err.context:  # descend into oneOf/anyOf to the branch that came closest
        err = best_match(err.context)
    raise _translate(err)


def _describe(path: KeyPath) -> str:
    return format_path(path) if path else "top-level object"


def _translate(err: Any) -> ComposeError:
    path: KeyPath = tuple(err.absolute_path)
    where = _describe(path)
    kind = err.validator
    if kind == "additionalProperties" and len(path) == 1 and "patternProperties" in err.schema:
        bad = sorted(k for k in err.instance if not k.startswith("x-"))
        import re

        pattern = next(iter(err.schema["patternProperties"]))
        bad = [k for k in bad if not re.search(pattern, k)]
        if bad:
            return ComposeError(
                f"{where}: invalid name {bad[0]!r}: names may contain only letters, digits, "
                "'.', '_' and '-'",
                path=(*path, bad[0]),
            )
    if kind == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed and not k.startswith("x-"))
        pattern_props = err.schema.get("patternProperties", {})
        if pattern_props:
            import re

            extra = [k for k in extra if not any(re.search(p, k) for p in pattern_props)]
        name = extra[0] if extra else "?"
        prefix = f"{where} " if path else ""
        hint = None
        close = difflib.get_close_matches(name, allowed, n=1)
        if close:
            hint = f"did you mean '{close[0]}'?"
        elif not path:
            hint = "top-level keys are version, name, include, services, networks, volumes, "
            hint += "secrets, configs, models and x-* extensions"
        return ComposeError(
            f"{prefix}additional properties {', '.join(repr(e) for e in extra) or repr(name)}"
            " not allowed",
            path=(*path, name),
            hint=hint,
        )
    if kind == "type":
        wanted = err.validator_value
        types = [wanted] if isinstance(wanted, str) else list(wanted)
        words = [_TYPE_WORDS.get(t, t) for t in types]
        if len(words) > 1:
            words = sorted(w.removeprefix("a ") for w in words)
            text = "a " + ", ".join(words[:-1]) + " or " + words[-1]
        else:
            text = words[0]
        return ComposeError(f"{where} must be {text}", path=path)
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return ComposeError(f"{format_path((*path, missing))} is required", path=path)
    if kind == "minimum":
        return ComposeError(
            f"{where} must be greater than or equal to {err.validator_value}", path=path
        )
    if kind == "maximum":
        return ComposeError(
            f"{where} must be less than or equal to {err.validator_value}", path=path
        )
    if kind == "enum":
        options = ", ".join(repr(v) for v in err.validator_value)
        return ComposeError(f"{where} must be one of {options}", path=path)
    if kind == "uniqueItems":
        return ComposeError(f"{where} must not contain duplicate items", path=path)
    if kind == "pattern":
        key_hint = ""
        if isinstance(err.instance, str):
            key_hint = f" ({err.instance!r})"
        return ComposeError(
            f"{where}{key_hint} does not match pattern {err.validator_value}", path=path
        )
    if kind in ("minItems", "minProperties"):
        return ComposeError(f"{where} must not be empty", path=path)
    if kind == "not" or kind == "oneOf" or kind == "anyOf":
        return ComposeError(f"{where} is not valid: {err.message}", path=path)
    return ComposeError(f"{where}: {err.message}", path=path)
