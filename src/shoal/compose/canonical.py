"""Rewrite a Compose document so every short syntax is in its long (mapping) form.

Runs after interpolation, validation and merging, before normalisation: later stages then see
one shape per key (`ports` a list of mappings, `environment` a mapping...). The input is never
modified; new dicts and lists are built only for the values that change, the rest is shared.
Values of a type a key does not allow are left as they are for the model to reject; `x-*`
extensions are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from shoal.compose.syntax import (
    BadValue,
    as_bool,
    clean_target,
    normalize_device,
    normalize_device_request,
    normalize_port,
    parse_args,
    parse_build,
    parse_depends_on,
    parse_device,
    parse_env_file,
    parse_environment,
    parse_expose,
    parse_extends,
    parse_extra_hosts,
    parse_file_mount,
    parse_gpus,
    parse_healthcheck_test,
    parse_include,
    parse_list_or_dict,
    parse_name_list,
    parse_options,
    parse_port,
    parse_ssh,
    parse_string_or_list,
    parse_ulimit,
    parse_volume,
    scalar_to_str,
    split_command,
)
from shoal.model.errors import ComposeError, Invalid, KeyPath, format_path

__all__ = ["canonicalize"]

Lookup = Callable[[str], str | None]
Warn = Callable[[str, KeyPath], None]
T = TypeVar("T")

_log = logging.getLogger(__name__)
_RESOURCE_KINDS = ("networks", "volumes", "secrets", "configs")


def canonicalize(
    doc: dict[str, Any], *, lookup: Lookup, warn: Warn | None = None
) -> dict[str, Any]:
    """`doc` with every short syntax rewritten to the long syntax of the Compose spec.

    `lookup` gives a bare environment name its value (None: unset). `warn` receives
    deprecation notices with their key path; without it they go to the `logging` module.
    Raises `ComposeError` carrying the full key path of the offending value.
    """
    out = dict(doc)
    services = doc.get("services")
    if isinstance(services, dict):
        out["services"] = {
            name: _service(spec, ("services", name), lookup) if isinstance(spec, dict) else spec
            for name, spec in services.items()
        }
    for kind in _RESOURCE_KINDS:
        section = doc.get(kind)
        if isinstance(section, dict):
            out[kind] = {
                name: _resource(kind, spec, (kind, name), warn or _log_warning)
                for name, spec in section.items()
            }
    include = doc.get("include")
    if isinstance(include, list):
        out["include"] = [_call(parse_include, e, ("include", i)) for i, e in enumerate(include)]
    return out


def _log_warning(message: str, path: KeyPath) -> None:
    _log.warning("%s", message)


def _located(exc: Invalid, path: KeyPath) -> ComposeError:
    if isinstance(exc, BadValue):
        full = (*path, *exc.rel)
        return ComposeError(format_path(full) + exc.tail, path=full, hint=exc.hint)
    if isinstance(exc, ComposeError) and exc.path:
        return exc
    return ComposeError(exc.message, path=path, hint=exc.hint)


def _call(parse: Callable[[Any], T], value: Any, path: KeyPath) -> T:
    try:
        return parse(value)
    except Invalid as exc:
        raise _located(exc, path) from exc


def _each(parse: Callable[[Any], T], items: list[Any], path: KeyPath) -> list[T]:
    return [_call(parse, item, (*path, i)) for i, item in enumerate(items)]


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a YAML value, so equal port entries can be found in O(1)."""
    if isinstance(value, dict):
        return ("{}", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("[]", tuple(_freeze(v) for v in value))
    return value


# --- services ----------------------------------------------------------------------------------

Handler = Callable[[Any, KeyPath, Lookup], Any]


def _service(spec: dict[str, Any], path: KeyPath, lookup: Lookup) -> dict[str, Any]:
    out = dict(spec)
    for key, value in spec.items():
        handler = _SERVICE_KEYS.get(key)
        if handler is not None and value is not None:
            out[key] = handler(value, (*path, key), lookup)
    return out


def _when(types: type | tuple[type, ...], parse: Callable[[Any], Any]) -> Handler:
    """A handler applying `parse` to values of the given types and leaving the others alone."""

    def handle(value: Any, path: KeyPath, lookup: Lookup) -> Any:
        if isinstance(value, bool) or not isinstance(value, types):
            return value
        return _call(parse, value, path)

    return handle


def _command(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    # '' and [] both mean "explicitly empty" (override the image's), unlike null: keep them apart.
    if isinstance(value, str | list):
        return _call(split_command, value, path)
    return value


def _environment(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if isinstance(value, list | dict):
        return _call(lambda v: parse_environment(v, lookup), value, path)
    return value


def _list_of(parse: Callable[[Any], Any], *, skip: type | tuple[type, ...] = ()) -> Handler:
    """A handler for a list whose items each have a short form (`skip`: already long)."""

    def handle(value: Any, path: KeyPath, lookup: Lookup) -> Any:
        if not isinstance(value, list):
            return value
        return [
            item if isinstance(item, skip) else _call(parse, item, (*path, i))
            for i, item in enumerate(value)
        ]

    return handle


def _ports(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, list):
        return value
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for i, entry in enumerate(value):
        if isinstance(entry, dict):
            entries = [normalize_port(entry)]
        else:
            entries = _call(parse_port, entry, (*path, i))
        for port in entries:
            key = _freeze(port)
            if key not in seen:
                seen.add(key)
                out.append(port)
    return out


def _long_volume(volume: dict[str, Any]) -> dict[str, Any]:
    out = dict(volume)
    if isinstance(out.get("target"), str):
        out["target"] = clean_target(out["target"])
    bind = out.get("bind")
    if out.get("type") == "bind" and (bind is None or isinstance(bind, dict)):
        # The spec's default, which the short syntax always had: create a missing host path.
        out["bind"] = {"create_host_path": True, **(bind or {})}
    return out


def _volumes(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, list):
        return value
    return [
        _long_volume(item) if isinstance(item, dict) else _call(parse_volume, item, (*path, i))
        for i, item in enumerate(value)
    ]


def _devices(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, list):
        return value
    return [
        normalize_device(item) if isinstance(item, dict) else _call(parse_device, item, (*path, i))
        for i, item in enumerate(value)
    ]


def _device_requests(items: list[Any], path: KeyPath) -> list[Any]:
    out = _each(normalize_device_request, items, path)
    for i, request in enumerate(out):
        if isinstance(request.get("options"), list | dict):
            where = (*path, i, "options")
            request["options"] = _call(parse_list_or_dict, request["options"], where)
    return out


def _gpus(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if isinstance(value, str):
        return _call(parse_gpus, value, path)
    return _device_requests(value, path) if isinstance(value, list) else value


def _ulimits(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, dict):
        return value
    return {name: _call(parse_ulimit, limit, (*path, name)) for name, limit in value.items()}


def _sub(value: dict[str, Any], path: KeyPath, lookup: Lookup, keys: dict[str, Handler]) -> Any:
    """`value` with the handlers of `keys` applied to its sub-keys (a copy only if one is set)."""
    out = None
    for key, handler in keys.items():
        item = value.get(key)
        if item is not None:
            if out is None:
                out = dict(value)
            out[key] = handler(item, (*path, key), lookup)
    return value if out is None else out


def _nested(keys: dict[str, Handler]) -> Handler:
    def handle(value: Any, path: KeyPath, lookup: Lookup) -> Any:
        return _sub(value, path, lookup, keys) if isinstance(value, dict) else value

    return handle


_mapping = _when((list, dict), parse_list_or_dict)
_options = _when(dict, parse_options)
_strings = _when((str, list), parse_string_or_list)
_file_mounts = _list_of(parse_file_mount, skip=dict)
_ulimits_keys = {"ulimits": _ulimits}


def _build(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, dict):
        return _call(parse_build, value, path) if isinstance(value, str) else value
    return _sub(value, path, lookup, _BUILD_KEYS)


_BUILD_KEYS: dict[str, Handler] = {
    "args": _when((list, dict), parse_args),
    "labels": _mapping,
    "additional_contexts": _when((list, dict), lambda v: parse_list_or_dict(v, strict=True)),
    "extra_hosts": _when((list, dict), parse_extra_hosts),
    "secrets": _file_mounts,
    "ssh": _when((list, dict), parse_ssh),
    "no_cache_filter": _strings,
    **_ulimits_keys,
}

_HOOK = _nested({"command": _command, "environment": _environment})


def _hooks(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, list):
        return value
    return [_HOOK(hook, (*path, i), lookup) for i, hook in enumerate(value)]


def _watch(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, list):
        return value
    # compose-go accepts a list of paths in one trigger: one trigger per path.
    expanded: list[Any] = []
    for trigger in value:
        paths = trigger.get("path") if isinstance(trigger, dict) else None
        if isinstance(paths, list):
            expanded.extend({**trigger, "path": p} for p in paths)
        else:
            expanded.append(trigger)
    keys = {"ignore": _strings, "include": _strings, "exec": _HOOK}
    return [_nested(keys)(t, (*path, i), lookup) for i, t in enumerate(expanded)]


def _service_networks(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if isinstance(value, list):
        return _call(parse_name_list, value, path)
    if not isinstance(value, dict):
        return value
    attach = _nested({"driver_opts": _options})
    return {name: attach(spec, (*path, name), lookup) for name, spec in value.items()}


def _reservations(value: Any, path: KeyPath, lookup: Lookup) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get("devices"), list):
        return value
    return {**value, "devices": _device_requests(value["devices"], (*path, "devices"))}


_DEPLOY = _nested({"labels": _mapping, "resources": _nested({"reservations": _reservations})})

_SERVICE_KEYS: dict[str, Handler] = {
    "annotations": _mapping,
    "labels": _mapping,
    "sysctls": _mapping,
    "storage_opt": _options,
    "build": _build,
    "command": _command,
    "entrypoint": _command,
    "configs": _file_mounts,
    "secrets": _file_mounts,
    "depends_on": _when((list, dict), parse_depends_on),
    "deploy": _DEPLOY,
    "develop": _nested({"watch": _watch}),
    "devices": _devices,
    "dns": _strings,
    "dns_search": _strings,
    "tmpfs": _strings,
    "label_file": _strings,
    "env_file": _when((str, list), parse_env_file),
    "environment": _environment,
    "expose": _when((str, int, list), parse_expose),
    "extends": _when(str, parse_extends),
    "extra_hosts": _when((list, dict), parse_extra_hosts),
    "gpus": _gpus,
    "group_add": _list_of(scalar_to_str),
    "healthcheck": _nested({"test": _when((str, list), parse_healthcheck_test)}),
    "logging": _nested({"options": _options}),
    "models": _when(list, parse_name_list),
    "networks": _service_networks,
    "ports": _ports,
    "post_start": _hooks,
    "pre_stop": _hooks,
    "pre_start": _hooks,
    "volumes": _volumes,
    **_ulimits_keys,
}


# --- top-level networks, volumes, secrets, configs ----------------------------------------------


def _resource(kind: str, spec: Any, path: KeyPath, warn: Warn) -> Any:
    if not isinstance(spec, dict):
        return spec
    where = format_path(path)
    out = dict(spec)
    external = out.get("external")
    if isinstance(external, dict):
        out["external"] = True
        if "name" in external:
            # The legacy `external: {name: x}` says what `name: x` + `external: true` now say.
            warn(f"{where}: external.name is deprecated. Please set name and external: true", path)
            if "name" in spec and spec["name"] != external["name"]:
                raise ComposeError(
                    f"{where}: name and external.name conflict; only use name", path=path
                )
            out["name"] = external["name"]
    elif (flag := as_bool(external)) is not None:
        out["external"] = flag
    if isinstance(out.get("labels"), list | dict):
        out["labels"] = _call(parse_list_or_dict, out["labels"], (*path, "labels"))
    if isinstance(out.get("driver_opts"), dict):
        out["driver_opts"] = _call(parse_options, out["driver_opts"], (*path, "driver_opts"))
    ipam = out.get("ipam")
    if kind == "networks" and isinstance(ipam, dict) and isinstance(ipam.get("options"), dict):
        options = _call(parse_options, ipam["options"], (*path, "ipam", "options"))
        out["ipam"] = {**ipam, "options": options}
    if out.get("external") is True:
        for key in out:
            if key not in ("name", "external") and not key.startswith("x-"):
                raise ComposeError(
                    f'{where}: conflicting parameters "external" and "{key}" specified',
                    path=path,
                )
    return out
