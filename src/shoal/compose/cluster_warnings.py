"""Keys that a cluster cannot honour as written: warned about by name, never silently dropped."""

from __future__ import annotations

from typing import Any

from shoal.model.errors import KeyPath

Finding = tuple[str, KeyPath]

# Keys that only make sense for a single Docker engine on the machine running the CLI.
_ENGINE_ONLY = {
    "links": "links are not needed: services reach each other by name through shoal's DNS",
    "external_links": "external_links are ignored: use a shared external network instead",
    "container_name": "",  # handled below: fine with one replica
    "cgroup_parent": "cgroup_parent is ignored: shoal places containers in its own cgroup tree",
    "use_api_socket": "use_api_socket is ignored: shoal has no Docker socket to share",
    "attach": "attach is ignored: use `shoal logs -f`",
    "stdin_open": "stdin_open is ignored: tasks run without a terminal",
    "tty": "tty is ignored: tasks run without a terminal",
    "isolation": "isolation is a Windows-only setting and is ignored",
    "credential_spec": "credential_spec is a Windows-only setting and is ignored",
    "develop": "develop (compose watch) is ignored by shoal deploy",
}


def _replicas(svc: dict[str, Any]) -> int:
    deploy = svc.get("deploy") or {}
    value = deploy.get("replicas", svc.get("scale", 1))
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def findings(doc: dict[str, Any]) -> list[Finding]:
    """Warnings for a normalised document: (message, key path)."""
    out: list[Finding] = []
    for name, svc in (doc.get("services") or {}).items():
        here = ("services", name)
        for key, why in _ENGINE_ONLY.items():
            if key in svc and why:
                out.append((f"services.{name}.{key}: {why}", (*here, key)))
        if "container_name" in svc and (
            _replicas(svc) > 1 or (svc.get("deploy") or {}).get("mode") == "global"
        ):
            out.append(
                (
                    f"services.{name}.container_name: cannot be honoured with more than one "
                    "replica; tasks are named <stack>_<service>.<slot>",
                    (*here, "container_name"),
                )
            )
        mode = svc.get("network_mode")
        if mode == "host" and svc.get("ports"):
            out.append(
                (
                    f"services.{name}.ports: ignored with network_mode: host (the container "
                    "uses the node's ports directly)",
                    (*here, "ports"),
                )
            )
        if isinstance(mode, str) and mode.startswith("container:"):
            out.append(
                (
                    f"services.{name}.network_mode: '{mode}' refers to a container outside the "
                    "stack; it only works on the node where that container runs",
                    (*here, "network_mode"),
                )
            )
        for i, vol in enumerate(svc.get("volumes") or []):
            if isinstance(vol, dict) and vol.get("type") == "bind":
                source = str(vol.get("source", ""))
                if source.endswith(("docker.sock", "podman.sock")):
                    out.append(
                        (
                            f"services.{name}.volumes[{i}]: binds the engine socket {source}; "
                            "shoal runs no Docker engine for it to talk to",
                            (*here, "volumes", i),
                        )
                    )
    return out
