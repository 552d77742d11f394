"""Merge raw Compose documents: `-f a.yml -f b.yml`, `---` documents, and `extends`.

Inputs are raw (interpolated, not yet canonicalised) YAML values, so one file may use the list
form of a field where another uses the mapping form. The rules (spec/13-merge.md, plus the
`extends` section of spec/05-services.md):

* mappings merge key by key; scalars are replaced; a `null` override keeps the inherited value
  (as compose-go does, so `services: {web: }` in an override file changes nothing);
* sequences are appended, except where an entry has an identity: ports (host ip, published,
  target, protocol), volumes/tmpfs/devices (target), secrets/configs (target, defaulted from the
  source), env files (path), blkio devices (path), ipam configs (subnet), links (service),
  volumes_from (source), and set-like lists (dns, cap_add, profiles, ...) where equal entries
  collapse. An entry that shares an identity with an earlier one takes its place; two long-form
  entries are merged key by key (the spec says "merge entries that share a unique key"), a short
  form one simply replaces;
* `command`, `entrypoint`, `healthcheck.test` and each `ulimits` entry are replaced whole;
  `logging` is replaced whole when the driver changes;
* key/value fields (environment, labels, annotations, sysctls, build args, ...) merge by key with
  the override winning. Output form: a list when both sides are lists, otherwise a mapping
  (`K=V` → `K: "V"`, a bare `K` → `K: null`). compose-go always emits a list; both are valid
  Compose and canonicalisation reads either;
* service `networks`, `models` and `depends_on` merge by name: list when both sides are lists,
  otherwise a mapping. A name listed again in short form keeps the inherited long-form settings;
  a `depends_on` entry that only exists in short form becomes `{condition: service_started}`;
* `extra_hosts` appends and drops repeated (host, ip) pairs, as compose-go does; the result is
  a list (mapping entries become `host=ip`);
* `!reset` in an override removes the key (or the list item); `!override V` replaces without
  merging (on a list item: replaces the matching entry instead of merging into it). Markers left
  in a base are stripped: the first file has nothing to reset.

`extends` (`merge_service`) uses the same rules with the spec's differences: `extra_hosts` is a
mapping (the extending service's addresses for a host replace the inherited ones), repeated
`dns`/`dns_search`/`env_file`/`tmpfs` entries are kept, and a `healthcheck` may only say
`disable: true` when the extended one is disabled too (`!override` bypasses that).

Nothing here mutates its inputs. Results share untouched subtrees with the inputs (no deep
copies: merging is on the loader's hot path), so treat both as read-only afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeAlias

from shoal.compose.syntax import as_bool, clean_target, parse_port, parse_volume, scalar_to_str
from shoal.compose.tags import Override, Reset
from shoal.model.errors import ComposeError, Invalid, KeyPath

__all__ = ["enforce_unicity", "merge_documents", "merge_service", "strip_markers"]

Merger = Callable[[Any, Any], Any]
"""`(base, override) -> merged`: base is marker-free, override is raw and never `Reset`."""
Rules: TypeAlias = "dict[str, Merger | Rules]"
"""Per-key rules below one mapping; `*` matches any key. A key without a rule merges generically."""

_DROP = object()  # strip result meaning "remove this key / item"


# --- markers -----------------------------------------------------------------------------------


def strip_markers(doc: Any) -> Any:
    """`doc` without `!reset` values (their key or item is dropped) and with `!override` unwrapped.

    Returns `doc` itself, or the very same subtrees, wherever there was nothing to strip.
    """
    out = _strip(doc)
    return None if out is _DROP else out


def _strip(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return _strip_dict(value)
    if kind is list:
        return _strip_list(value)
    if kind is Override:
        inner = _strip(value.value)
        return None if inner is _DROP else inner
    if kind is Reset:
        return _DROP
    return value


def _strip_dict(mapping: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] | None = None
    for key, value in mapping.items():
        kind = type(value)
        new = _strip(value) if kind is dict or kind is list or kind in _MARKERS else value
        if out is None:
            if new is value:
                continue
            # first change: copy the (unchanged) entries before this one
            out = {}
            for k, v in mapping.items():
                if k == key:
                    break
                out[k] = v
        if new is not _DROP:
            out[key] = new
    return mapping if out is None else out


def _strip_list(items: list[Any]) -> list[Any]:
    out: list[Any] | None = None
    for index, value in enumerate(items):
        kind = type(value)
        new = _strip(value) if kind is dict or kind is list or kind in _MARKERS else value
        if out is None:
            if new is value:
                continue
            out = items[:index]
        if new is not _DROP:
            out.append(new)
    return items if out is None else out


_MARKERS = (Override, Reset)


# --- generic merge -----------------------------------------------------------------------------


def _merge_value(base: Any, over: Any, rule: Merger | Rules | None) -> Any:
    """Merge one override value (not a `Reset`) onto a marker-free base value."""
    if type(over) is Override:
        return strip_markers(over.value)
    if callable(rule):
        return rule(base, over)
    if over is None:
        return base
    if type(base) is dict and type(over) is dict:
        return _merge_mapping(base, over, rule or _NO_RULES)
    if type(base) is list and type(over) is list:
        return base + _strip_list(over)
    # differing shapes (or scalars): the override wins; validation judges the result
    return strip_markers(over)


def _merge_mapping(base: dict[str, Any], over: dict[str, Any], rules: Rules) -> dict[str, Any]:
    out = dict(base)
    wildcard = rules.get("*")
    for key, value in over.items():
        if type(value) is Reset:
            out.pop(key, None)
        elif key in out:
            rule = rules.get(key, wildcard) if rules else None
            out[key] = _merge_value(out[key], value, rule)
        else:
            new = _strip(value)
            if new is not _DROP:
                out[key] = new
    return out


_NO_RULES: Rules = {}


def _replace(base: Any, over: Any) -> Any:
    return strip_markers(over)


def _mapping_with(rules: Rules) -> Merger:
    """A merger applying `rules` to one mapping value (a named network's settings, say)."""

    def merge(base: Any, over: Any) -> Any:
        return _merge_value(base, over, rules)

    return merge


# --- sequences with identities -----------------------------------------------------------------

KeyFn = Callable[[Any], Hashable]


def _seq(value: Any, scalar_ok: bool = True) -> list[Any] | None:
    """A sequence field's items; a lone scalar is the short form of a one-item list where the
    field is a string-or-list (`scalar_ok`). None when `value` is no such sequence."""
    if type(value) is list:
        return value
    if value is None:
        return []
    if type(value) is dict or not scalar_ok:
        return None
    return [value]


def _keyed(
    key: KeyFn, entry_rules: Rules | None = None, *, kind_field: str = "", scalar_ok: bool = False
) -> Merger:
    """Append, and let an entry replace (or merge into) the earlier entry with the same key.

    With `kind_field`, two long-form entries of a different kind (e.g. volume `type`) replace
    instead of merging, since one kind's options mean nothing to another. `scalar_ok` marks a
    string-or-list field; otherwise a non-list side is simply replaced.
    """

    def merge(base: Any, over: Any) -> Any:
        if over is None:
            return base
        base_items, over_items = _seq(base, scalar_ok), _seq(over, scalar_ok)
        if base_items is None or over_items is None:
            return strip_markers(over)
        out: list[Any] = []
        index: dict[Hashable, int] = {}
        for raw in base_items:
            _add(out, index, raw, raw, key, entry_rules, kind_field)
        for raw in over_items:
            if type(raw) is Reset:
                continue
            item = strip_markers(raw)
            _add(out, index, raw, item, key, entry_rules, kind_field)
        return out

    _DEDUPING.add(merge)
    return merge


def _add(
    out: list[Any],
    index: dict[Hashable, int],
    raw: Any,
    item: Any,
    key: KeyFn,
    entry_rules: Rules | None,
    kind_field: str,
) -> None:
    k = key(item)
    at = index.get(k)
    if at is None:
        index[k] = len(out)
        out.append(item)
        return
    old = out[at]
    if (
        entry_rules is not None
        and type(old) is dict
        and type(raw) is dict
        and not (kind_field and _differs(old, item, kind_field))
    ):
        out[at] = _merge_mapping(old, raw, entry_rules)
    else:
        out[at] = item


def _differs(old: dict[str, Any], new: dict[str, Any], field: str) -> bool:
    return field in old and field in new and old[field] != new[field]


def _hashable(value: Any) -> Hashable:
    if value is None or type(value) in (str, int, float, bool):
        return value  # type: ignore[no-any-return]
    return ("repr", repr(value))


def _unique() -> Hashable:
    return object()  # an item we cannot identify never collides with another


def _exact_key(item: Any) -> Hashable:
    return _hashable(item)


def _path_or_none(value: Any) -> str | None:
    return clean_target(value) if type(value) is str else None


def _port_key(item: Any) -> Hashable:
    try:
        if type(item) is dict:
            return ((*_long_port(item),),)
        entries = parse_port(item)
    except (Invalid, ValueError, TypeError):
        return ("raw", _hashable(item))
    return tuple(
        (e.get("host_ip", ""), e.get("published", ""), e["target"], e["protocol"]) for e in entries
    )


def _long_port(item: dict[str, Any]) -> tuple[Hashable, ...]:
    target = item.get("target")
    if type(target) is str and target.isdigit():
        target = int(target)
    published = item.get("published")
    published = "" if published is None else scalar_to_str(published)
    host_ip = item.get("host_ip") or ""
    if type(host_ip) is str and host_ip.startswith("[") and host_ip.endswith("]"):
        host_ip = host_ip[1:-1]
    protocol = item.get("protocol")
    protocol = protocol.lower() if type(protocol) is str and protocol else "tcp"
    return (_hashable(host_ip), published, _hashable(target), protocol)


def _volume_key(item: Any) -> Hashable:
    if type(item) is dict:
        return _path_or_none(item.get("target")) or _unique()
    if type(item) is str:
        try:
            target = parse_volume(item).get("target")
        except Invalid:
            return ("raw", item)
        return target if type(target) is str else ("raw", item)
    return _unique()


def _mount_key(default_dir: str) -> KeyFn:
    """Secrets and configs: the target path, by default `<default_dir>/<source>`."""

    def key(item: Any) -> Hashable:
        if type(item) is str:
            return clean_target(f"{default_dir}/{item}")
        if type(item) is dict:
            target = item.get("target")
            if type(target) is str and target:
                if not target.startswith("/") and default_dir:
                    target = f"{default_dir}/{target}"  # a relative secret target is a file name
                return clean_target(target)
            source = item.get("source")
            if type(source) is str:
                return clean_target(f"{default_dir}/{source}")
        return _unique()

    return key


def _device_key(item: Any) -> Hashable:
    if type(item) is str:
        parts = item.split(":")
        return clean_target(parts[1] if len(parts) > 1 else parts[0])
    if type(item) is dict:
        return _path_or_none(item.get("target")) or _path_or_none(item.get("source")) or _unique()
    return _unique()


def _tmpfs_key(item: Any) -> Hashable:
    if type(item) is str:
        return clean_target(item.split(":", 1)[0])
    return _hashable(item)


def _env_file_key(item: Any) -> Hashable:
    if type(item) is dict:
        path = item.get("path")
        return path if type(path) is str else _unique()
    return _hashable(item)


def _field_key(field: str) -> KeyFn:
    def key(item: Any) -> Hashable:
        if type(item) is dict and field in item:
            return (field, _hashable(item[field]))
        return _unique()

    return key


def _cap_key(item: Any) -> Hashable:
    if type(item) is str:
        return item.upper().removeprefix("CAP_")
    return _hashable(item)


def _expose_key(item: Any) -> Hashable:
    if type(item) in (str, int):
        return scalar_to_str(item).lower().removesuffix("/tcp")
    return _hashable(item)


def _link_key(item: Any) -> Hashable:
    """`service[:alias]`: one link per service (compose-go's tests also write `service=alias`)."""
    if type(item) is str:
        cut = min((i for i in (item.find(":"), item.find("=")) if i >= 0), default=len(item))
        return item[:cut]
    return _hashable(item)


def _volumes_from_key(item: Any) -> Hashable:
    """`service[:mode]` or `container:name[:mode]`: the source, whatever the mode."""
    if type(item) is str:
        parts = item.split(":")
        return ":".join(parts[:2]) if parts[0] == "container" and len(parts) > 1 else parts[0]
    return _hashable(item)


def _append_seq(base: Any, over: Any) -> Any:
    """A string-or-list field appended without removing repeats (`extends` on dns, tmpfs...)."""
    if over is None:
        return base
    base_items, over_items = _seq(base), _seq(over)
    if base_items is None or over_items is None:
        return strip_markers(over)
    return base_items + _strip_list(over_items)


# --- key/value fields --------------------------------------------------------------------------


def _kv_key(item: Any) -> Hashable:
    if type(item) is str:
        return item.partition("=")[0]
    if type(item) in (int, float, bool):
        return scalar_to_str(item).partition("=")[0]
    return _unique()


def _kv_mapping(value: Any) -> dict[str, Any] | None:
    """A marker-free key/value field as a mapping; None when it cannot be one."""
    if type(value) is dict:
        return dict(value)
    items = _seq(value)
    if items is None:
        return None
    out: dict[str, Any] = {}
    for item in items:
        if type(item) in (dict, list):
            return None
        key, sep, text = scalar_to_str(item).partition("=")
        out[key] = text if sep else None
    return out


def _merge_kv(base: Any, over: Any) -> Any:
    """environment, labels, args...: by key, the override's value winning (`!reset` deletes)."""
    if over is None:
        return base
    if base is None:
        return strip_markers(over)
    if type(base) is list and type(over) is list:
        return _dedup_list(base + _strip_list(over), _kv_key)
    merged = _kv_mapping(base)
    if merged is None:
        return strip_markers(over)
    if type(over) is dict:
        for key, value in over.items():
            if type(value) is Reset:
                merged.pop(key, None)
            else:
                merged[key] = strip_markers(value)
        return merged
    extra = _kv_mapping(strip_markers(over))
    if extra is None:
        return strip_markers(over)
    merged.update(extra)
    return merged


def _dedup_list(items: list[Any], key: KeyFn) -> list[Any]:
    out: list[Any] = []
    index: dict[Hashable, int] = {}
    for item in items:
        k = key(item)
        at = index.get(k)
        if at is None:
            index[k] = len(out)
            out.append(item)
        else:
            out[at] = item
    return out


# --- named entries: networks, models, depends_on -----------------------------------------------


def _names(value: Any, default: Callable[[], Any] | None) -> dict[str, Any] | None:
    if type(value) is dict:
        return value
    items = _seq(value)
    if items is None or any(type(item) is not str for item in items):
        return None
    return {item: default() if default else None for item in items}


def _named(entry_rules: Rules, default: Callable[[], Any] | None = None) -> Merger:
    """Merge by name; `default` is what a short-form name stands for (`None` by default)."""

    per_name: Rules = {"*": _mapping_with(entry_rules)}

    def merge(base: Any, over: Any) -> Any:
        if over is None:
            return base
        if base is None:
            return strip_markers(over)
        if type(over) is list:
            over = _strip_list(over)  # list items carry no per-name markers
            if type(base) is list:
                return _dedup_list(base + over, _exact_key)
        base_map = _names(base, default)
        over_map = _names(over, None)  # a name repeated in short form keeps its settings
        if base_map is None or over_map is None:
            return strip_markers(over)
        out = _merge_mapping(base_map, over_map, per_name)
        if default is not None:
            for name, value in out.items():
                if value is None:
                    out[name] = default()
        return out

    _DEDUPING.add(merge)
    return merge


def _started() -> dict[str, Any]:
    return {"condition": "service_started"}


# --- extra_hosts -------------------------------------------------------------------------------


def _host_entries(value: Any) -> list[tuple[Hashable, Hashable, Any]] | None:
    """(host, ip, entry) for each address; entries in the `host=ip` list form."""
    if type(value) is dict:
        out: list[tuple[Hashable, Hashable, Any]] = []
        for host, ips in value.items():
            for ip in ips if type(ips) is list else [ips]:
                text = scalar_to_str(ip)
                out.append((host, text.strip("[]"), f"{host}={text}"))
        return out
    items = _seq(value)
    if items is None:
        return None
    entries: list[tuple[Hashable, Hashable, Any]] = []
    for item in items:
        if type(item) is not str:
            entries.append((_unique(), None, item))
            continue
        host, sep, ip = item.partition("=")
        if not sep:
            host, _, ip = item.partition(":")  # the older `host:ip` form
        entries.append((host, ip.strip("[]"), item))
    return entries


def _merge_extra_hosts(base: Any, over: Any) -> Any:
    """Append, dropping a (host, ip) pair seen before (a host may have several addresses)."""
    if over is None:
        return base
    base_entries, over_entries = _host_entries(base), _host_entries(strip_markers(over))
    if base_entries is None or over_entries is None:
        return strip_markers(over)
    seen: set[tuple[Hashable, Hashable]] = set()
    out: list[Any] = []
    for host, ip, entry in base_entries + over_entries:
        if (host, ip) not in seen:
            seen.add((host, ip))
            out.append(entry)
    return out


def _extend_extra_hosts(base: Any, over: Any) -> Any:
    """`extends`: a mapping by host, the extending service's addresses replacing inherited ones."""
    if over is None:
        return base
    base_entries, over_entries = _host_entries(base), _host_entries(strip_markers(over))
    if base_entries is None or over_entries is None:
        return strip_markers(over)
    groups: dict[Hashable, list[Any]] = {}
    for host, _, entry in base_entries:
        groups.setdefault(host, []).append(entry)
    replaced: set[Hashable] = set()
    for host, _, entry in over_entries:
        if host not in replaced:
            replaced.add(host)
            groups[host] = []
        if entry not in groups[host]:
            groups[host].append(entry)
    return [entry for entries in groups.values() for entry in entries]


# --- logging, build ----------------------------------------------------------------------------


def _merge_logging(base: Any, over: Any) -> Any:
    """Options only carry over while the driver stays the same."""
    if type(base) is dict and type(over) is dict and "driver" in base and "driver" in over:
        driver = over["driver"]
        driver = driver.value if type(driver) is Override else driver
        if type(driver) is not Reset and driver is not None and driver != base["driver"]:
            return strip_markers(over)
    return _merge_value(base, over, _NO_RULES)


def _build_merger(rules: Rules) -> Merger:
    """`build: ctx` is short for `build: {context: ctx}`."""

    def merge(base: Any, over: Any) -> Any:
        if over is None:
            return base
        if type(base) is str and type(over) is str:
            return over
        base_map = {"context": base} if type(base) is str else base
        over_map = {"context": over} if type(over) is str else over
        if type(base_map) is dict and type(over_map) is dict:
            return _merge_mapping(base_map, over_map, rules)
        return strip_markers(over)

    _NESTED[merge] = rules
    return merge


# --- rule tables -------------------------------------------------------------------------------

_DEDUPING: set[Merger] = set()
"""Mergers that, given `(items, [])`, return `items` with repeated identities collapsed."""
_DEDUPING.update((_merge_kv, _merge_extra_hosts, _extend_extra_hosts))
_NESTED: dict[Merger, Rules] = {}
"""Mergers of a mapping that has its own rules (`build`), for `enforce_unicity`."""

_unique_seq = _keyed(_exact_key)
_unique_str_seq = _keyed(_exact_key, scalar_ok=True)  # string-or-list fields
_by_path = _keyed(_field_key("path"), _NO_RULES)
_secrets = _keyed(_mount_key("/run/secrets"), _NO_RULES)

_BUILD: Rules = {
    "args": _merge_kv,
    "labels": _merge_kv,
    "additional_contexts": _merge_kv,
    "ssh": _merge_kv,
    "extra_hosts": _merge_extra_hosts,
    "secrets": _secrets,
    "tags": _unique_seq,
    "platforms": _unique_seq,
    "platform": _unique_seq,  # not in the schema, but compose-go's tests merge it as a list
    "cache_from": _unique_seq,
    "cache_to": _unique_seq,
    "no_cache_filter": _unique_str_seq,
    "entitlements": _unique_seq,
    "ulimits": {"*": _replace},
}

_SERVICE: Rules = {
    "annotations": _merge_kv,
    "labels": _merge_kv,
    "environment": _merge_kv,
    "sysctls": _merge_kv,
    "build": _build_merger(_BUILD),
    "command": _replace,
    "entrypoint": _replace,
    "extends": _replace,
    "healthcheck": {"test": _replace},
    "logging": _merge_logging,
    "ulimits": {"*": _replace},
    "deploy": {
        "labels": _merge_kv,
        "placement": {"constraints": _unique_seq, "preferences": _unique_seq},
        "resources": {"reservations": {"generic_resources": _unique_seq}},
    },
    "depends_on": _named(_NO_RULES, _started),
    "networks": _named({"aliases": _unique_seq, "link_local_ips": _unique_seq}),
    "models": _named(_NO_RULES),
    "ports": _keyed(_port_key, _NO_RULES),
    "volumes": _keyed(_volume_key, {"volume": {"labels": _merge_kv}}, kind_field="type"),
    "secrets": _secrets,
    "configs": _keyed(_mount_key(""), _NO_RULES),
    "devices": _keyed(_device_key, _NO_RULES),
    "tmpfs": _keyed(_tmpfs_key, scalar_ok=True),
    "env_file": _keyed(_env_file_key, _NO_RULES, scalar_ok=True),
    "label_file": _unique_str_seq,
    "dns": _unique_str_seq,
    "dns_opt": _unique_seq,
    "dns_search": _unique_str_seq,
    "cap_add": _keyed(_cap_key),
    "cap_drop": _keyed(_cap_key),
    "expose": _keyed(_expose_key),
    "external_links": _unique_seq,
    "links": _keyed(_link_key),
    "profiles": _unique_seq,
    "security_opt": _unique_seq,
    "device_cgroup_rules": _unique_seq,
    "group_add": _keyed(_expose_key),
    "volumes_from": _keyed(_volumes_from_key),
    "extra_hosts": _merge_extra_hosts,
    "blkio_config": {
        name: _by_path
        for name in (
            "device_read_bps",
            "device_read_iops",
            "device_write_bps",
            "device_write_iops",
            "weight_device",
        )
    },
}

_EXTENDS_SERVICE: Rules = {
    **_SERVICE,
    "build": _build_merger({**_BUILD, "extra_hosts": _extend_extra_hosts}),
    "extra_hosts": _extend_extra_hosts,
    "dns": _append_seq,
    "dns_search": _append_seq,
    "env_file": _append_seq,
    "tmpfs": _append_seq,
}

_LABELLED: Rules = {"*": {"labels": _merge_kv}}

_DOCUMENT: Rules = {
    "services": {"*": _SERVICE},
    "networks": {"*": {"labels": _merge_kv, "ipam": {"config": _keyed(_field_key("subnet"), {})}}},
    "volumes": _LABELLED,
    "secrets": _LABELLED,
    "configs": _LABELLED,
}


# --- public API --------------------------------------------------------------------------------


def merge_documents(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` (a later file or document) merged onto `base`; neither is modified."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        raise ComposeError("a Compose document must be a mapping")
    return _merge_mapping(strip_markers(base), override, _DOCUMENT)


def merge_service(
    base: dict[str, Any] | None, override: dict[str, Any] | None, *, path: KeyPath = ()
) -> dict[str, Any]:
    """`extends`: the extending service `override` merged onto the service it extends.

    `path` (the extending service's key path) only serves error messages. The `extends` key
    itself is merged like any other; the caller drops it.
    """
    base = {} if base is None else base
    override = {} if override is None else override
    if not isinstance(base, dict) or not isinstance(override, dict):
        raise ComposeError("a service definition must be a mapping", path=path)
    base = strip_markers(base)
    _check_healthcheck_disable(base.get("healthcheck"), override.get("healthcheck"), path)
    return _merge_mapping(base, override, _EXTENDS_SERVICE)


def _check_healthcheck_disable(base: Any, over: Any, path: KeyPath) -> None:
    # spec/05-services.md, extends: the main mapping cannot specify `disable: true` unless the
    # referenced one does. `!override` on the healthcheck is an explicit replacement, so allowed.
    if type(base) is not dict or type(over) is not dict:
        return
    disable = over.get("disable")
    disable = disable.value if type(disable) is Override else disable
    if as_bool(disable) is True and as_bool(base.get("disable")) is not True:
        raise ComposeError(
            "healthcheck.disable: an extending service cannot disable the healthcheck it inherits",
            path=(*path, "healthcheck", "disable"),
            hint="write `healthcheck: !override {disable: true}` to replace it instead",
        )


def enforce_unicity(service: dict[str, Any]) -> dict[str, Any]:
    """`service` with repeated identities collapsed inside each of its lists (the last wins, in
    the first one's place): what a merge does, for a file nothing was merged with."""
    return _unique_in(strip_markers(service), _SERVICE)


def _unique_in(mapping: dict[str, Any], rules: Rules) -> dict[str, Any]:
    out = mapping
    for key, value in mapping.items():
        rule = rules.get(key)
        if rule is None:
            continue
        if isinstance(rule, dict) or rule in _NESTED:
            if type(value) is not dict:
                continue
            new = _unique_in(value, rule if isinstance(rule, dict) else _NESTED[rule])
        elif rule in _DEDUPING and type(value) is list:
            new = rule(value, [])
            if len(new) == len(value):
                continue  # nothing collapsed: keep the original list
        else:
            continue
        if new is not value:
            if out is mapping:
                out = dict(mapping)
            out[key] = new
    return out
