"""From a task (and its image's config) to the runtime's ContainerSpec.

The command/entrypoint rules are Docker's: a service `entrypoint` replaces the image's and also
drops the image's CMD; a service `command` replaces the image's CMD. Environment is the image's
`Env` overlaid with the service's; working dir, user and stop signal fall back to the image's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shoal.agent.isolation import isolation
from shoal.model.cluster import Task
from shoal.model.errors import Invalid
from shoal.runtime.base import ContainerSpec

LABEL_TASK = "shoal.task"
LABEL_STACK = "shoal.stack"
LABEL_SERVICE = "shoal.service"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageDefaults(Protocol):
    """What an image config contributes (OCI/Docker `config` field names)."""

    Entrypoint: list[str] | None
    Cmd: list[str] | None
    Env: list[str] | None
    WorkingDir: str | None
    User: str | None
    StopSignal: str | None


def argv(task: Task, image: ImageDefaults | None = None) -> list[str]:
    spec = task.spec
    if spec.entrypoint is not None:
        entrypoint = list(spec.entrypoint)
        cmd = list(spec.command) if spec.command is not None else []
    else:
        entrypoint = list(image.Entrypoint or []) if image else []
        if spec.command is not None:
            cmd = list(spec.command)
        else:
            cmd = list(image.Cmd or []) if image else []
    return [*entrypoint, *cmd]


def environment(task: Task, image: ImageDefaults | None = None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in (image.Env or []) if image else []:
        key, _, value = item.partition("=")
        env[key] = value
    for key, given in (task.spec.environment or {}).items():
        if given is not None:
            env[key] = given
    if image is not None:  # a container always gets a PATH (a host process keeps the agent's)
        env.setdefault("PATH", DEFAULT_PATH)
    return env


def container_spec(
    task: Task, data_dir: Path, image: ImageDefaults | None = None, rootfs: str | None = None
) -> ContainerSpec:
    spec = task.spec
    command = argv(task, image)
    if not command:
        raise Invalid(
            f"task {task.name}: nothing to run",
            hint="set `command:` (or `entrypoint:`) on the service, or use an image with a CMD",
        )
    grace = spec.stop_grace_period.total_seconds() if spec.stop_grace_period else 10.0
    extra: dict[str, object] = {}
    if rootfs is not None:  # an image-based runtime: isolation settings apply
        extra["rootfs"] = rootfs
        extra.update(isolation(task, data_dir))
    return ContainerSpec(
        id=task.id,
        name=task.name,
        labels={LABEL_TASK: task.id, LABEL_STACK: task.stack, LABEL_SERVICE: task.service},
        image=spec.image or "",
        command=command,
        env=environment(task, image),
        working_dir=spec.working_dir or (image.WorkingDir if image else None) or None,
        user=spec.user or (image.User if image else None) or None,
        stop_signal=spec.stop_signal or (image.StopSignal if image else None) or "SIGTERM",
        stop_grace_period=grace,
        hostname=spec.hostname or task.name.replace("_", "-").replace(".", "-"),
        **extra,
    )
