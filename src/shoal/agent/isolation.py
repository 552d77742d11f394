"""Compose settings a container runtime enforces: mounts, capabilities, limits, namespaces.

The `process` runtime ignores these (a host process has none of them); image-based runtimes
(runc) get them as ContainerSpec fields. Binds and tmpfs mounts are made here; named and
anonymous volumes are the volumes hook's (`volumes.py`: they need the server's record and the
image's content), which adds their mounts to the spec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shoal.model.cluster import Task
from shoal.model.compose_mounts import VolumeMount
from shoal.model.errors import Invalid
from shoal.model.volume import normalise_tmpfs_options
from shoal.runtime.base import ContainerMount, ContainerResources

# What runc's rbind gives (Docker's default too); the others need the runtime's support.
_DEFAULT_PROPAGATION = ("private", "rprivate")


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


def _tmpfs_options(options: str) -> str:
    try:
        return normalise_tmpfs_options(options)
    except ValueError as exc:
        raise Invalid(f"tmpfs: {exc}") from None


def _long_tmpfs(vol: VolumeMount) -> str:
    options = []
    if vol.tmpfs and vol.tmpfs.size:
        options.append(f"size={int(vol.tmpfs.size)}")
    if vol.tmpfs and vol.tmpfs.mode is not None:
        options.append(f"mode={vol.tmpfs.mode:o}")
    return ",".join(options)


def _bind(vol: VolumeMount) -> ContainerMount:
    """A bind of a host path; a missing source is created only with `create_host_path` (the
    short syntax implies it, as in docker-compose)."""
    source, target = vol.source or "", vol.target or ""
    propagation = vol.bind.propagation if vol.bind else None
    if propagation and propagation not in _DEFAULT_PROPAGATION:
        raise Invalid(
            f"bind mount {source}: propagation {propagation} is not supported by this runtime yet",
            hint="leave it out (rprivate)",
        )
    if not os.path.exists(source):
        if not (vol.bind and vol.bind.create_host_path):
            raise Invalid(
                f"bind mount source {source} does not exist",
                hint="create it or set create_host_path",
            )
        Path(source).mkdir(parents=True, exist_ok=True)
    return ContainerMount(source=source, target=target, read_only=bool(vol.read_only))


def mounts(task: Task) -> tuple[list[ContainerMount], dict[str, str]]:
    """Binds as mounts; tmpfs entries as target → options. Volumes are left to the volumes
    hook."""
    out: list[ContainerMount] = []
    tmpfs: dict[str, str] = {}
    for entry in task.spec.tmpfs or []:
        target, _, options = entry.partition(":")
        tmpfs[target] = _tmpfs_options(options)
    for vol in task.spec.volumes or []:
        if vol.type == "tmpfs":
            tmpfs[vol.target or ""] = _long_tmpfs(vol)
        elif vol.type == "bind":
            out.append(_bind(vol))
        elif vol.type != "volume":
            raise Invalid(f"task {task.name}: volume type {vol.type!r} is not supported yet")
    return out, tmpfs


def isolation(task: Task, data_dir: Path) -> dict[str, Any]:
    """The ContainerSpec fields for an image-based runtime."""
    spec = task.spec
    mounted, tmpfs = mounts(task)
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
