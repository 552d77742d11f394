"""Normalise a canonical Compose document the way `docker compose config` does.

Adds the implicit default network, `<project>_` resource names, build defaults, implicit
dependencies, default secret/config targets, folds `env_file` into `environment`, and drops
services whose profiles are not active.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from shoal.model.errors import ComposeError

Lookup = Callable[[str], str | None]
ReadEnvFile = Callable[[str], dict[str, str | None]]

_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
_NAMESPACE_KEYS = ("network_mode", "ipc", "pid", "uts", "cgroup")


def select_profiles(doc: dict[str, Any], profiles: Iterable[str]) -> dict[str, Any]:
    """Drop services whose `profiles` are all inactive (`*` activates every profile)."""
    active = set(profiles)
    services = doc.get("services") or {}
    kept = {}
    for name, svc in services.items():
        wanted = svc.get("profiles") or []
        if not wanted or "*" in active or active.intersection(wanted):
            kept[name] = svc
    if len(kept) == len(services):
        return doc
    disabled = set(services) - set(kept)
    for name, svc in kept.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep in disabled and (cond or {}).get("required", True):
                raise ComposeError(
                    f'service "{name}" depends on service "{dep}", which is disabled: '
                    f"its profiles {services[dep].get('profiles')} are not active",
                    path=("services", name, "depends_on", dep),
                    hint="activate a profile with --profile NAME or COMPOSE_PROFILES",
                )
    return {**doc, "services": kept}


def _implicit_dependencies(svc: dict[str, Any]) -> dict[str, Any]:
    deps: dict[str, Any] = dict(svc.get("depends_on") or {})
    added = False

    def need(name: str, restart: bool) -> None:
        nonlocal added
        if name not in deps:
            deps[name] = {"condition": "service_started", "required": True, "restart": restart}
            added = True

    for key in _NAMESPACE_KEYS:
        value = svc.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            need(value.removeprefix("service:"), True)
    for link in svc.get("links") or []:
        if isinstance(link, str):
            need(link.split(":", 1)[0], True)
    for source in svc.get("volumes_from") or []:
        if isinstance(source, str) and not source.startswith("container:"):
            need(source.split(":", 1)[0], False)
    if not added:
        return svc
    return {**svc, "depends_on": deps}


def _environment(svc: dict[str, Any], read_env_file: ReadEnvFile) -> dict[str, Any]:
    files = svc.get("env_file")
    if not files:
        return svc
    merged: dict[str, str | None] = {}
    for entry in files:
        path = entry["path"] if isinstance(entry, dict) else entry
        required = entry.get("required", True) if isinstance(entry, dict) else True
        try:
            merged.update(read_env_file(path))
        except FileNotFoundError:
            if required:
                raise ComposeError(
                    f"env file {path} not found",
                    path=("env_file",),
                    hint="create it, or mark it optional with `required: false`",
                ) from None
    for key, value in (svc.get("environment") or {}).items():
        if value is None and key in merged:
            continue
        merged[key] = value
    out = {k: v for k, v in svc.items() if k != "env_file"}
    out["environment"] = merged
    return out


def _build(svc: dict[str, Any], lookup: Lookup) -> dict[str, Any]:
    build = svc.get("build")
    if not isinstance(build, dict):
        return svc
    out = dict(build)
    out.setdefault("context", ".")
    if "dockerfile_inline" not in out:
        out.setdefault("dockerfile", "Dockerfile")
    args = out.get("args")
    if isinstance(args, dict):
        resolved = {}
        for key, value in args.items():
            if value is None:
                value = lookup(key)
            if value is not None:
                resolved[key] = value
        out["args"] = resolved
    return {**svc, "build": out}


def _mount_targets(svc: dict[str, Any], key: str, default_dir: str) -> dict[str, Any]:
    items = svc.get(key)
    if not items:
        return svc
    fixed = []
    for item in items:
        if isinstance(item, dict) and not item.get("target") and item.get("source"):
            item = {**item, "target": f"{default_dir}{item['source']}"}
        fixed.append(item)
    return {**svc, key: fixed}


def _pre_start_images(svc: dict[str, Any]) -> dict[str, Any]:
    """pre_start hooks run in the service's image unless they name their own."""
    hooks = svc.get("pre_start")
    image = svc.get("image")
    if not hooks or not image:
        return svc
    return {**svc, "pre_start": [h if h.get("image") else {**h, "image": image} for h in hooks]}


def _service(
    name: str, svc: dict[str, Any], lookup: Lookup, read_env_file: ReadEnvFile
) -> dict[str, Any]:
    try:
        svc = _environment(svc, read_env_file)
    except ComposeError as exc:
        exc.path = ("services", name, *exc.path)
        raise
    svc = _build(svc, lookup)
    svc = _implicit_dependencies(svc)
    svc = _mount_targets(svc, "secrets", "/run/secrets/")
    svc = _mount_targets(svc, "configs", "/")
    svc = _pre_start_images(svc)
    if "networks" not in svc and not svc.get("network_mode"):
        svc = {**svc, "networks": {"default": None}}
    return svc


def _named(kind: str, section: dict[str, Any] | None, project: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, spec in (section or {}).items():
        if not _NAME.match(key):
            raise ComposeError(
                f"{kind}: invalid name {key!r}: names may contain only letters, digits, "
                "'.', '_' and '-'",
                path=(kind, key),
            )
        if spec is not None and not isinstance(spec, dict):
            raise ComposeError(f"{kind}.{key} must be a mapping", path=(kind, key))
        spec = dict(spec or {})
        if not spec.get("name"):
            spec["name"] = key if spec.get("external") else f"{project}_{key}"
        out[key] = spec
    return out


def normalize(
    doc: dict[str, Any], project: str, lookup: Lookup, read_env_file: ReadEnvFile
) -> dict[str, Any]:
    """The canonical document `doc` with every default `docker compose config` adds."""
    out = dict(doc)
    out["name"] = project
    out.pop("version", None)
    out.pop("include", None)
    services = {
        name: _service(name, svc, lookup, read_env_file)
        for name, svc in (doc.get("services") or {}).items()
    }
    if "services" in doc:
        out["services"] = services
    networks = dict(doc.get("networks") or {})
    uses_default = any("default" in (svc.get("networks") or {}) for svc in services.values())
    if uses_default and "default" not in networks:
        networks["default"] = {}
    for key in ("networks", "volumes", "secrets", "configs"):
        section = networks if key == "networks" else doc.get(key)
        if section:
            out[key] = _named(key, section, project)
        else:
            out.pop(key, None)
    return out
