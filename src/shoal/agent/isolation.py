"""Compose settings a container runtime enforces: mounts, capabilities, limits, namespaces.

The `process` runtime ignores these (a host process has none of them); image-based runtimes
(runc) get them as ContainerSpec fields. Named volumes are directories the agent owns
(`<agent data>/volumes/<name>`), created on first use and kept across task replacements.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shoal.model.cluster import Task
from shoal.model.errors import Invalid
from shoal.runtime.base import ContainerMount, ContainerResources

_SIZE_OPTION = "size={}"


def resources(task: Task) -> ContainerResources:
    spec = task.spec
    limits = spec.deploy.resources.limits if spec.deploy and spec.deploy.resources else None
    reserve = spec.deploy.resources.reservations if spec.deploy and spec.deploy.resources else None
    cpus = (limits.cpus if limits else None) or spec.cpus or None
    memory = (int(limits.memory) if limits and limits.memory else None) or spec.mem_limit
    pids = (limits.pids if limits else None) or spec.pids_limit
    soft = (int(reserve.memory) if reserve and reserve.memory else None) or spec.mem_reservation
    return ContainerResources(
        cpus=cpus or None,
        memory=memory if memory and memory > 0 else None,
        pids=pids if pids and pids > 0 else None,
        memory_reservation=soft if soft and soft > 0 else None,
    )


def mounts(task: Task, volumes_dir: Path) -> tuple[list[ContainerMount], dict[str, str]]:
    """Binds and named volumes as mounts; tmpfs entries as target → options."""
    out: list[ContainerMount] = []
    tmpfs: dict[str, str] = {}
    for entry in task.spec.tmpfs or []:
        target, _, options = entry.partition(":")
        tmpfs[target] = options
    for vol in task.spec.volumes or []:
        target = vol.target or ""
        if vol.type == "tmpfs":
            size = vol.tmpfs.size if vol.tmpfs and vol.tmpfs.size else None
            tmpfs[target] = _SIZE_OPTION.format(size) if size else ""
            continue
        if vol.type == "bind":
            source = vol.source or ""
            if not os.path.exists(source):
                create = vol.bind.create_host_path if vol.bind else True
                if not create:
                    raise Invalid(
                        f"bind mount source {source} does not exist",
                        hint="create it, or set bind.create_host_path: true",
                    )
                Path(source).mkdir(parents=True, exist_ok=True)
        elif vol.type == "volume":
            name = vol.source or f"anon-{task.id}-{abs(hash(target)) % 10**8}"
            source = str(volumes_dir / f"{task.stack}_{name}" if vol.source else volumes_dir / name)
            Path(source).mkdir(parents=True, exist_ok=True)
        else:
            raise Invalid(f"task {task.name}: volume type {vol.type!r} is not supported yet")
        out.append(ContainerMount(source=source, target=target, read_only=bool(vol.read_only)))
    return out, tmpfs


def isolation(task: Task, data_dir: Path) -> dict[str, Any]:
    """The ContainerSpec fields for an image-based runtime."""
    spec = task.spec
    mounted, tmpfs = mounts(task, data_dir / "volumes")
    fields: dict[str, Any] = {
        "read_only": bool(spec.read_only),
        "tmpfs": tmpfs,
        "mounts": mounted,
        "cap_add": list(spec.cap_add or []),
        "cap_drop": list(spec.cap_drop or []),
        "privileged": bool(spec.privileged),
        "sysctls": dict(spec.sysctls or {}),
        "ulimits": {k: (u.soft, u.hard) for k, u in (spec.ulimits or {}).items()},
        "init": spec.init is not False,
        "no_new_privileges": "no-new-privileges:false" not in (spec.security_opt or []),
        "seccomp": "seccomp=unconfined" not in (spec.security_opt or []),
        "resources": resources(task),
    }
    if spec.network_mode == "host":
        # Until CNI networks exist, host networking is how a container reaches the outside.
        fields["netns"] = f"/proc/{os.getpid()}/ns/net"
    return fields
