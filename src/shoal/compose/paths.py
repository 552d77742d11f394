"""Make the relative paths of one raw Compose document absolute against its base directory.

Runs per document, before merging, because each file's paths have their own base: the project
directory for `-f` files, the included file's directory for `include`, the extended file's
directory for `extends: {file: …}`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from shoal.compose.tags import Override

_REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*://|git@|github\.com/)", re.IGNORECASE)
_WINDOWS_ABS = re.compile(r"^[a-zA-Z]:[\\/]")


def absolute(path: str, base: Path) -> str:
    """`path` made absolute against `base` (`~` is the user's home); remote URLs untouched."""
    if not path or _REMOTE.match(path) or _WINDOWS_ABS.match(path):
        return path
    if path.startswith("~"):
        return os.path.expanduser(path)
    if os.path.isabs(path):
        return os.path.normpath(path)
    return os.path.normpath(os.path.join(base, path))


def _is_local_source(source: str) -> bool:
    return source.startswith((".", "/", "~")) or bool(_WINDOWS_ABS.match(source))


def _short_volume(spec: str, base: Path) -> str:
    if spec.startswith((".", "~")):
        source, sep, rest = spec.partition(":")
        if sep:
            return absolute(source, base) + ":" + rest
    return spec


def _volume(item: Any, base: Path) -> Any:
    if isinstance(item, str):
        return _short_volume(item, base)
    if isinstance(item, dict) and item.get("type", "volume") == "bind":
        source = item.get("source")
        if isinstance(source, str) and source:  # a bind's source is always a host path
            return {**item, "source": absolute(source, base)}
    return item


def _env_file(value: Any, base: Path) -> Any:
    if isinstance(value, str):
        return absolute(value, base)
    if isinstance(value, list):
        return [_env_file(v, base) for v in value]
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        return {**value, "path": absolute(value["path"], base)}
    return value


def _build(value: Any, base: Path) -> Any:
    if isinstance(value, str):
        return absolute(value, base)
    if isinstance(value, dict):
        out = dict(value)
        context = out.get("context")
        out["context"] = absolute(context if isinstance(context, str) else ".", base)
        contexts = out.get("additional_contexts")
        if isinstance(contexts, dict):
            out["additional_contexts"] = {
                k: absolute(v, base) if isinstance(v, str) and _is_local_source(v) else v
                for k, v in contexts.items()
            }
        return out
    return value


def _service(service: Any, base: Path) -> Any:
    if not isinstance(service, dict):
        return service
    out = dict(service)
    for key, fix in (("build", _build), ("env_file", _env_file), ("label_file", _env_file)):
        if key in out:
            out[key] = _unwrap_apply(out[key], lambda v, f=fix: f(v, base))
    if isinstance(out.get("volumes"), list):
        out["volumes"] = [_volume(v, base) for v in out["volumes"]]
    extends = out.get("extends")
    if isinstance(extends, dict) and isinstance(extends.get("file"), str):
        out["extends"] = {**extends, "file": absolute(extends["file"], base)}
    return out


def _unwrap_apply(value: Any, fn: Any) -> Any:
    if isinstance(value, Override):
        return Override(fn(value.value))
    return fn(value)


def _file_resources(section: Any, base: Path) -> Any:
    if not isinstance(section, dict):
        return section
    out = {}
    for name, spec in section.items():
        if isinstance(spec, dict) and isinstance(spec.get("file"), str):
            spec = {**spec, "file": absolute(spec["file"], base)}
        out[name] = spec
    return out


def resolve_document(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of `doc` with every local path absolute against `base` (subtrees shared)."""
    out = dict(doc)
    services = out.get("services")
    if isinstance(services, dict):
        out["services"] = {name: _service(svc, base) for name, svc in services.items()}
    for key in ("secrets", "configs"):
        if key in out:
            out[key] = _file_resources(out[key], base)
    return out
