"""Semantic checks a JSON schema cannot express: references, cycles, exclusive keys, clashes.

Runs on the normalised document; every error carries the key path of the offending value.
The wording follows the reference loader where it has one.
"""

from __future__ import annotations

from typing import Any

from shoal.model.errors import ComposeError

_INVALID = ": invalid compose project"


def check(doc: dict[str, Any]) -> None:
    services: dict[str, Any] = doc.get("services") or {}
    for name, svc in services.items():
        _check_service(doc, services, name, svc)
    _check_cycles(services)
    for kind in ("secrets", "configs"):
        for key, spec in (doc.get(kind) or {}).items():
            if spec.get("external"):
                continue
            if not any(spec.get(k) is not None for k in ("file", "environment", "content")):
                singular = kind[:-1]
                raise ComposeError(
                    f"{singular} {key!r} must declare either `file` or `environment`"
                    if kind == "secrets"
                    else f"config {key!r} must declare either `file`, `environment` or `content`",
                    path=(kind, key),
                )


def _check_service(
    doc: dict[str, Any], services: dict[str, Any], name: str, svc: dict[str, Any]
) -> None:
    here = ("services", name)
    if not svc.get("image") and not svc.get("build"):
        raise ComposeError(
            f'service "{name}" has neither an image nor a build context specified{_INVALID}',
            path=here,
            hint="add `image:` or `build:` to the service",
        )
    for dep, cond in (svc.get("depends_on") or {}).items():
        if dep not in services and (cond or {}).get("required", True):
            raise ComposeError(
                f'service "{name}" depends on undefined service "{dep}"{_INVALID}',
                path=(*here, "depends_on", dep),
            )
    mode = svc.get("network_mode")
    if mode and "networks" in svc:
        raise ComposeError(
            f"service {name} declares mutually exclusive `network_mode` and `networks`",
            path=(*here, "network_mode"),
        )
    for key in ("network_mode", "ipc", "pid", "uts", "cgroup"):
        value = svc.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            target = value.removeprefix("service:")
            if target not in services:
                raise ComposeError(
                    f"service \"{target}\" not found for {key} '{value}'", path=(*here, key)
                )
    for source in svc.get("volumes_from") or []:
        target = source.split(":", 1)[0]
        if not source.startswith("container:") and target not in services:
            raise ComposeError(
                f'service "{name}" depends on undefined service "{target}"{_INVALID}',
                path=(*here, "volumes_from"),
            )
    declared_networks = doc.get("networks") or {}
    for net in svc.get("networks") or {}:
        if net not in declared_networks:
            raise ComposeError(
                f'service "{name}" refers to undefined network {net}{_INVALID}',
                path=(*here, "networks", net),
                hint=f"declare it under the top-level `networks:` key ({net}: {{}})",
            )
    _check_mounts(doc, name, svc)
    for kind in ("secrets", "configs"):
        declared = doc.get(kind) or {}
        for i, ref in enumerate(svc.get(kind) or []):
            source = ref.get("source") if isinstance(ref, dict) else ref
            if source not in declared:
                raise ComposeError(
                    f'service "{name}" refers to undefined {kind[:-1]} {source}{_INVALID}',
                    path=(*here, kind, i),
                    hint=f"declare it under the top-level `{kind}:` key",
                )
    replicas = (svc.get("deploy") or {}).get("replicas")
    scale = svc.get("scale")
    if replicas is not None and scale is not None and str(replicas) != str(scale):
        raise ComposeError(
            f"services.{name}: can't set distinct values on 'scale' and 'deploy.replicas'",
            path=(*here, "scale"),
        )


def _check_mounts(doc: dict[str, Any], name: str, svc: dict[str, Any]) -> None:
    here = ("services", name)
    declared_volumes = doc.get("volumes") or {}
    seen: dict[str, str] = {}
    for i, mount in enumerate(t for t in svc.get("tmpfs") or [] if isinstance(t, str)):
        seen[mount.split(":", 1)[0]] = f"services.{name}.tmpfs[{i}]"
    for i, vol in enumerate(svc.get("volumes") or []):
        if not isinstance(vol, dict):
            continue
        source = vol.get("source")
        if vol.get("type") == "volume" and source and source not in declared_volumes:
            raise ComposeError(
                f'service "{name}" refers to undefined volume {source}{_INVALID}',
                path=(*here, "volumes", i),
                hint=f"declare it under the top-level `volumes:` key ({source}: {{}})",
            )
        target = vol.get("target")
        if isinstance(target, str):
            if target in seen:
                raise ComposeError(
                    f"services.{name}.volumes[{i}]: target {target} already mounted as "
                    f"{seen[target]}",
                    path=(*here, "volumes", i),
                )
            seen[target] = f"services.{name}.volumes[{i}]"


def _check_cycles(services: dict[str, Any]) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in services[name].get("depends_on") or {}:
            if dep not in services:
                continue
            if state.get(dep) == 1:
                loop = [*trail[trail.index(dep) :], dep] if dep in trail else [name, dep]
                raise ComposeError(
                    "dependency cycle detected: " + " -> ".join(loop),
                    path=("services", name, "depends_on", dep),
                )
            if state.get(dep) != 2:
                visit(dep, [*trail, dep])
        state[name] = 2

    for name in services:
        if name not in state:
            visit(name, [name])
