"""Named volumes: the record the store keeps per volume, and the pure rules around it.

A named volume belongs to the stack that declared it (`<stack>_<key>`, or the Compose `name:`),
lives on one node (`node_id`, empty until the first task using it is placed) and is served
there by the local driver: a directory the agent owns, or, with `driver_opts`, a mount at that
directory (`type: tmpfs`, a bind of an existing path, or any `mount -t TYPE -o O DEVICE`).
Another stack reaches it only by declaring it `external: true`.

Everything here is pure: the server, the scheduler, the agent and the CLI share these rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shoal.model.cluster import Task
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import ComposeError, Conflict, Invalid, KeyPath
from shoal.model.units import parse_bytes, parse_file_mode

LOCAL = "local"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""Docker's rule for volume names; the name is also a directory name on the node."""
LOCAL_OPTIONS = ("type", "device", "o")
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


class Volume(BaseModel):
    """One named volume, as the store keeps it (`/volumes/<name>`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    stack: str = Field(description="the stack that declared it (and owns it)")
    driver: str = LOCAL
    driver_opts: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    node_id: str = Field(default="", description="where it lives; empty until first placed")
    created_at: float = 0.0
    removing: bool = False


# --- names ---------------------------------------------------------------------------------


def volume_name(stack: str, key: str, decl: Mapping[str, Any] | None) -> str:
    """The volume a stack's `volumes.<key>` declaration stands for."""
    decl = decl or {}
    name = decl.get("name")
    if isinstance(name, str) and name:
        return name
    return key if decl.get("external") else f"{stack}_{key}"


def stack_volume_names(stack: str, decls: Mapping[str, Any]) -> dict[str, str]:
    """key → volume name for every volume a stack declares."""
    return {key: volume_name(stack, key, decl) for key, decl in decls.items()}


def named_sources(spec: ServiceSpec) -> list[str]:
    """The keys of the named volumes a service mounts (anonymous volumes have no source)."""
    return [v.source for v in spec.volumes or [] if v.type == "volume" and v.source]


def names_used(stack: str, decls: Mapping[str, Any], spec: ServiceSpec) -> list[str]:
    """The names of the named volumes a service of `stack` mounts."""
    return [volume_name(stack, key, decls.get(key)) for key in named_sources(spec)]


# --- the local driver's options -------------------------------------------------------------


@dataclass(frozen=True)
class LocalMount:
    """What the local driver does for a volume: a plain directory (`fstype` empty), or
    `mount -t fstype -o options device <the volume's directory>`."""

    fstype: str = ""
    device: str = ""
    options: str = ""

    @property
    def plain(self) -> bool:
        return not self.fstype

    @property
    def bind(self) -> bool:
        return "bind" in self.options.split(",") or "rbind" in self.options.split(",")


def _size_option(value: str) -> str:
    """`64m`, `1.5G`, `100MiB` → bytes (what the kernel takes); `50%` stays."""
    if value.endswith("%") and value[:-1].isdigit():
        return value
    try:
        size = parse_bytes(value)
    except ValueError:
        size = -1
    if size <= 0:
        raise ValueError(f"size={value} is not a size (use e.g. 64m, 1g or 50%)")
    return str(size)


def _mode_option(value: str) -> str:
    try:
        return f"{parse_file_mode(value):o}"
    except ValueError:
        raise ValueError(f"mode={value} is not an octal file mode (e.g. 1777)") from None


def normalise_tmpfs_options(options: str) -> str:
    """tmpfs mount options with `size` in bytes and `mode` in octal; ValueError if malformed."""
    out = []
    for option in (o.strip() for o in options.split(",")):
        if not option:
            continue
        key, eq, value = option.partition("=")
        if key == "size" and eq:
            option = f"size={_size_option(value)}"
        elif key == "mode" and eq:
            option = f"mode={_mode_option(value)}"
        out.append(option)
    return ",".join(out)


def local_mount(opts: Mapping[str, str]) -> LocalMount:
    """The local driver's reading of `driver_opts`; ValueError (user-facing) if it cannot."""
    unknown = sorted(set(opts) - set(LOCAL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]} (the local driver takes type, device, o)")
    fstype = (opts.get("type") or "").strip()
    device = (opts.get("device") or "").strip()
    options = (opts.get("o") or "").strip()
    if not fstype:
        if device or options:
            raise ValueError("device and o need a type (tmpfs, none with o: bind, or a fs type)")
        return LocalMount()
    if fstype == "tmpfs":
        return LocalMount("tmpfs", "tmpfs", normalise_tmpfs_options(options))
    mount = LocalMount(fstype, device, options)
    if not device:
        raise ValueError(f"type {fstype} needs a device")
    if mount.bind and not device.startswith("/"):
        raise ValueError(f"device {device} of a bind must be an absolute path")
    if fstype == "none" and not mount.bind:
        raise ValueError("type none is only for binds (o: bind)")
    return mount


# --- checks of a Compose project (the CLI locates them in the file; the server repeats them) -


def _check_decl(key: str, decl: Mapping[str, Any]) -> None:
    here: KeyPath = ("volumes", key)
    name = decl.get("name")
    if isinstance(name, str) and not NAME_RE.match(name):
        raise ComposeError(
            f"volumes.{key}.name: {name!r} is not a valid volume name",
            path=(*here, "name"),
            hint="letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    if decl.get("external"):
        return
    driver = decl.get("driver") or LOCAL
    if driver != LOCAL:
        raise ComposeError(
            f"volumes.{key}.driver: volume driver {driver!r} is not supported",
            path=(*here, "driver"),
            hint="use the local driver (leave `driver` out), with driver_opts",
        )
    opts = decl.get("driver_opts") or {}
    try:
        local_mount({str(k): str(v) for k, v in opts.items()})
    except ValueError as exc:
        option = next((k for k in ("o", "device", "type") if k in opts), None)
        path = (*here, "driver_opts", option) if option else (*here, "driver_opts")
        raise ComposeError(f"volumes.{key}.driver_opts: {exc}", path=path) from None


def _check_service(name: str, svc: Mapping[str, Any]) -> None:
    here: KeyPath = ("services", name)
    for i, entry in enumerate(svc.get("tmpfs") or []):
        _, _, options = str(entry).partition(":")
        try:
            normalise_tmpfs_options(options)
        except ValueError as exc:
            raise ComposeError(
                f"services.{name}.tmpfs[{i}]: {exc}", path=(*here, "tmpfs", i)
            ) from None
    for i, vol in enumerate(svc.get("volumes") or []):
        if not isinstance(vol, Mapping):
            continue
        propagation = (vol.get("bind") or {}).get("propagation")
        if propagation is not None and propagation not in PROPAGATIONS:
            raise ComposeError(
                f"services.{name}.volumes[{i}].bind.propagation: unknown propagation "
                f"{propagation!r}",
                path=(*here, "volumes", i, "bind", "propagation"),
                hint=f"one of {', '.join(PROPAGATIONS)}",
            )
        subpath = (vol.get("volume") or {}).get("subpath")
        if isinstance(subpath, str) and (subpath.startswith("/") or ".." in subpath.split("/")):
            raise ComposeError(
                f"services.{name}.volumes[{i}].volume.subpath: {subpath!r} must stay inside "
                "the volume (relative, no '..')",
                path=(*here, "volumes", i, "volume", "subpath"),
            )


def check_storage(doc: Mapping[str, Any]) -> None:
    """What the loader's schema lets through but no node could mount: tmpfs sizes in short
    syntax, the local driver's `driver_opts`, volume names. ComposeError with the key path."""
    for key, decl in (doc.get("volumes") or {}).items():
        _check_decl(str(key), decl or {})
    for name, svc in (doc.get("services") or {}).items():
        _check_service(str(name), svc or {})


# --- records a deploy creates -----------------------------------------------------------------


def _external(stack: str, key: str, name: str, existing: Mapping[str, Volume]) -> None:
    found = existing.get(name)
    if found is None:
        raise Invalid(
            f"volume {name} (volumes.{key} of stack {stack}) is external but does not exist",
            hint="deploy the stack that declares it first, or drop `external: true` so this "
            "stack creates it",
        )
    if found.removing:
        raise Conflict(f"volume {name} is being removed", hint="wait, then deploy again")


def plan_records(
    stack: str, decls: Mapping[str, Any], existing: Mapping[str, Volume], now: float
) -> tuple[list[Volume], list[str]]:
    """The records a deploy of `stack` creates, and the existing ones it relies on.

    A non-external volume whose name another stack owns is a Conflict naming the owner; an
    external one must exist (Invalid naming it). Existing records are left as they are.
    """
    create: list[Volume] = []
    used: list[str] = []
    for key, decl in sorted(decls.items()):
        decl = decl or {}
        name = volume_name(stack, key, decl)
        if decl.get("external"):
            _external(stack, key, name, existing)
            used.append(name)
            continue
        found = existing.get(name)
        if found is None:
            opts = {str(k): str(v) for k, v in (decl.get("driver_opts") or {}).items()}
            labels = {str(k): str(v) for k, v in (decl.get("labels") or {}).items()}
            create.append(
                Volume(name=name, stack=stack, driver_opts=opts, labels=labels, created_at=now)
            )
            continue
        if found.stack != stack:
            raise Conflict(
                f"volume {name} (volumes.{key}) belongs to stack {found.stack}",
                hint=f"declare it `external: true` to share stack {found.stack}'s volume, or "
                "give it another `name:`",
            )
        if found.removing:
            raise Conflict(
                f"volume {name} is being removed",
                hint="wait until `shoal volume ls` no longer lists it, then deploy again",
            )
        used.append(name)
    return create, used


def users(
    name: str, tasks: Iterable[Task], decls_of: Mapping[str, Mapping[str, Any]]
) -> list[Task]:
    """The tasks (not finished) that mount volume `name`; `decls_of` maps a stack to its
    `volumes:` declarations."""
    found: list[Task] = []
    for task in tasks:
        if task.status.state.terminal or not task.spec.volumes:
            continue
        if name in names_used(task.stack, decls_of.get(task.stack, {}), task.spec):
            found.append(task)
    return found
