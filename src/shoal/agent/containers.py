"""From a task to the runtime's ContainerSpec: argv, environment, labels, stop settings."""

from __future__ import annotations

from pathlib import Path

from shoal.model.cluster import Task
from shoal.runtime.base import ContainerSpec

LABEL_TASK = "shoal.task"
LABEL_STACK = "shoal.stack"
LABEL_SERVICE = "shoal.service"


def argv(task: Task) -> list[str]:
    """entrypoint + command, as Compose writes them (image defaults come with the image store)."""
    spec = task.spec
    return [*(spec.entrypoint or []), *(spec.command or [])]


def container_spec(task: Task, data_dir: Path) -> ContainerSpec:
    spec = task.spec
    env = {k: v for k, v in (spec.environment or {}).items() if v is not None}
    grace = spec.stop_grace_period.total_seconds() if spec.stop_grace_period else 10.0
    return ContainerSpec(
        id=task.id,
        name=task.name,
        labels={LABEL_TASK: task.id, LABEL_STACK: task.stack, LABEL_SERVICE: task.service},
        image=spec.image or "",
        command=argv(task),
        env=env,
        working_dir=spec.working_dir,
        user=spec.user,
        stop_signal=spec.stop_signal or "SIGTERM",
        stop_grace_period=grace,
        hostname=spec.hostname or task.name.replace("_", "-").replace(".", "-"),
    )
