"""The small Compose short syntaxes: a string or list standing for a mapping or a list of them.

Each function takes one plain YAML value and returns the long form the spec describes
(`build: .` → `{context: .}`, `depends_on: [db]` → `{db: {condition: ..., required: true}}`...).
A value that is already in long form gets its defaults and is otherwise returned as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shoal.compose.scalars import BadValue, as_bool, is_scalar, scalar_to_str
from shoal.model.errors import Invalid

__all__ = [
    "normalize_device",
    "normalize_device_request",
    "parse_build",
    "parse_depends_on",
    "parse_device",
    "parse_env_file",
    "parse_expose",
    "parse_extends",
    "parse_file_mount",
    "parse_gpus",
    "parse_healthcheck_test",
    "parse_include",
    "parse_name_list",
    "parse_options",
    "parse_ssh",
    "parse_string_or_list",
    "parse_ulimit",
]


def _text(value: object, rel: tuple[str | int, ...] = ()) -> str:
    if value is None or not is_scalar(value):
        raise BadValue(rel, " must be a string")
    return scalar_to_str(value)


def parse_string_or_list(value: object) -> list[str]:
    """`dns: 8.8.8.8` → `["8.8.8.8"]` (also dns_search, tmpfs, label_file, no_cache_filter...).

    An empty string (typically an unset variable) is no entry at all.
    """
    if isinstance(value, list):
        return [_text(item, (i,)) for i, item in enumerate(value)]
    text = _text(value)
    return [text] if text else []


def parse_expose(value: object) -> list[str]:
    """`expose` entries are ports or ranges, written as numbers or strings: all become strings."""
    return parse_string_or_list(value)


def parse_name_list(value: object) -> dict[str, Any]:
    """`[a, b]` → `{a: None, b: None}` (service `networks`, `models`); a mapping is kept."""
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    if isinstance(value, list):
        return {_text(item, (i,)): None for i, item in enumerate(value)}
    raise BadValue((), " must be a mapping")


def parse_options(value: object) -> dict[str, str]:
    """Driver options (`driver_opts`, `logging.options`...): every value a string, null → ""."""
    if not isinstance(value, dict):
        raise BadValue((), " must be a mapping")
    out = {}
    for key, item in value.items():
        if not is_scalar(item):
            raise BadValue((str(key),), " must be a string or a number")
        out[str(key)] = "" if item is None else scalar_to_str(item)
    return out


def parse_depends_on(value: object) -> dict[str, dict[str, Any]]:
    """`[db]` → `{db: {condition: service_started, required: true}}`; a mapping gets the same
    defaults for what it leaves out (`restart` has none: it stays absent)."""
    if isinstance(value, list):
        names = [_text(item, (i,)) for i, item in enumerate(value)]
        return {name: {"condition": "service_started", "required": True} for name in names}
    if not isinstance(value, dict):
        raise BadValue((), " must be a mapping")
    out = {}
    for name, spec in value.items():
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise BadValue((str(name),), " must be a mapping")
        entry = dict(spec)
        entry.setdefault("condition", "service_started")
        required = as_bool(entry.get("required", True))
        if required is not None:
            entry["required"] = required
        out[str(name)] = entry
    return out


def parse_file_mount(value: object) -> dict[str, Any]:
    """A service `secrets`/`configs` entry: `name` → `{source: name}`."""
    if isinstance(value, dict):
        return value
    return {"source": _text(value)}


def parse_build(value: object) -> dict[str, Any]:
    """`build: ./dir` → `{context: ./dir}`. A mapping without `context` is left for the
    normaliser to default, so an override file cannot reset a base file's context."""
    if isinstance(value, dict):
        return value
    return {"context": _text(value)}


def parse_extends(value: object) -> dict[str, Any]:
    """`extends: base` → `{service: base}`."""
    if isinstance(value, dict):
        return value
    return {"service": _text(value)}


def parse_include(value: object) -> dict[str, Any]:
    """An `include` entry: `path` → `{path: [path]}`; `path`/`env_file` strings become lists."""
    if not isinstance(value, dict):
        return {"path": [_text(value)]}
    out = dict(value)
    for key in ("path", "env_file"):
        if key in out and not isinstance(out[key], list):
            out[key] = [_text(out[key], (key,))]
    return out


def parse_env_file(value: object) -> list[dict[str, Any]]:
    """`env_file` → `[{path, required}]`; `required` defaults to true."""
    entries = value if isinstance(value, list) else [value]
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            spec = dict(entry)
            flag = as_bool(spec.get("required", True))
            spec["required"] = flag if flag is not None else spec["required"]
        else:
            spec = {"path": _text(entry, (i,) if isinstance(value, list) else ()), "required": True}
        out.append(spec)
    return out


def parse_healthcheck_test(value: object) -> list[str]:
    """`test: curl -f http://x` → `["CMD-SHELL", "curl -f http://x"]`; a list is kept."""
    if isinstance(value, list):
        return [_text(item, (i,)) for i, item in enumerate(value)]
    return ["CMD-SHELL", _text(value)]


_DEVICE_MODE = re.compile(r"[rwm]{1,3}")


def parse_device(spec: str) -> dict[str, str]:
    """`HOST[:CONTAINER[:PERMISSIONS]]` → `{source, target, permissions}` (default `rwm`).

    As in the Docker CLI, `/dev/x:rw` reads the second field as permissions, not as a path.
    """
    if not isinstance(spec, str):
        raise BadValue((), " must be a string")
    parts = spec.split(":")
    if len(parts) > 3:
        raise Invalid(f"confusing device mapping, please use long syntax: {spec}")
    source = parts[0]
    target = parts[1] if len(parts) > 1 else ""
    permissions = parts[2] if len(parts) > 2 else "rwm"
    if len(parts) == 2 and _DEVICE_MODE.fullmatch(target) and len(set(target)) == len(target):
        target, permissions = "", target
    return {"source": source, "target": target or source, "permissions": permissions}


def normalize_device(device: Mapping[str, Any]) -> dict[str, Any]:
    """Long device syntax with the short syntax's defaults: target = source, `rwm`."""
    out = dict(device)
    if not out.get("target") and "source" in out:
        out["target"] = out["source"]
    out.setdefault("permissions", "rwm")
    return out


def normalize_device_request(request: object) -> dict[str, Any]:
    """A `gpus` entry or `deploy.resources.reservations.devices` entry.

    With neither `count` nor `device_ids` every matching device is requested (`count: all`);
    giving both is an error, as the spec says.
    """
    if not isinstance(request, dict):
        raise BadValue((), " must be a mapping")
    has_count, has_ids = "count" in request, "device_ids" in request
    if has_count and has_ids:
        raise BadValue((), ': "count" and "device_ids" attributes are exclusive')
    out = dict(request)
    if not has_count and not has_ids:
        out["count"] = "all"
    return out


def parse_gpus(value: object) -> list[dict[str, Any]]:
    """`gpus: all` → `[{count: all}]`; list entries are device requests."""
    if isinstance(value, str):
        if value.lower() != "all":
            raise BadValue((), ' must be "all" or a list of device requests')
        return [{"count": "all"}]
    if not isinstance(value, list):
        raise BadValue((), ' must be "all" or a list of device requests')
    out = []
    for i, entry in enumerate(value):
        try:
            out.append(normalize_device_request(entry))
        except BadValue as exc:
            raise BadValue((i, *exc.rel), exc.tail) from None
    return out


_INT = re.compile(r"-?[0-9]+")


def _limit(value: object, rel: tuple[str | int, ...]) -> int:
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadValue(rel, " must be an integer")


def parse_ulimit(value: object) -> int | dict[str, Any]:
    """A `ulimits` entry: one number (soft = hard) or `{soft, hard}`; numeric strings → ints."""
    if isinstance(value, dict):
        out = dict(value)
        for key in ("soft", "hard"):
            if key in out:
                out[key] = _limit(out[key], (key,))
        return out
    return _limit(value, ())


def parse_ssh(value: object) -> dict[str, str | None]:
    """`build.ssh`: `[default, id=path]` → `{default: None, id: path}`."""
    if isinstance(value, dict):
        return {str(k): None if v is None else _text(v, (str(k),)) for k, v in value.items()}
    if not isinstance(value, list):
        raise BadValue((), " must be a mapping")
    out: dict[str, str | None] = {}
    for i, entry in enumerate(value):
        key, sep, path = _text(entry, (i,)).partition("=")
        if not sep and key != "default":
            raise Invalid(f'invalid ssh key "{key}"')
        out[key] = path if sep else None
    return out
