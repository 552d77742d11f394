"""The task runner's state machine: what to do for one task given what the runtime shows.

`decide` is pure (task record, container state, time → steps) so every transition is
table-tested; the agent loop executes the steps. Features that prepare a container (image,
network, volumes, secrets…) plug in as hooks around the `start` step, not as branches here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.model.cluster import Task, TaskState
from shoal.runtime.base import ContainerState


@dataclass(frozen=True)
class Start:
    """Create and start the task's container."""


@dataclass(frozen=True)
class Stop:
    """Stop the running container (stop signal, then SIGKILL after the grace period)."""


@dataclass(frozen=True)
class Remove:
    """Delete the container and its files (the task record is gone)."""


@dataclass(frozen=True)
class Report:
    state: TaskState
    message: str = ""
    error: str = ""
    exit_code: int | None = None


Step = Start | Stop | Remove | Report

_STARTED = (TaskState.PREPARING, TaskState.STARTING, TaskState.RUNNING)
_WAITING = (TaskState.NEW, TaskState.PENDING, TaskState.ASSIGNED)


def _finished(task: Task, container: ContainerState) -> Report:
    code = container.exit_code
    if task.desired_state != TaskState.RUNNING:
        return Report(TaskState.SHUTDOWN, "stopped", exit_code=code)
    if code == 0:
        return Report(TaskState.COMPLETE, "finished", exit_code=0)
    if container.error:
        error = container.error
    elif code is None:
        error = f"the runtime lost track of the container (status {container.status})"
    else:
        error = f"exited with code {code}"
    if container.oom_killed:
        error = f"killed: out of memory (exit code {code})"
    return Report(TaskState.FAILED, "task failed", error=error, exit_code=code)


def decide(task: Task | None, container: ContainerState | None, now: float) -> list[Step]:
    if task is None:
        return [Remove()] if container is not None else []
    state = task.status.state
    wants_running = task.desired_state == TaskState.RUNNING
    if container is None:
        if state.terminal:
            return []
        if not wants_running:
            return [Report(TaskState.SHUTDOWN, "stopped before it started")]
        if state in _WAITING:
            return [] if now < task.not_before else [Start()]
        return [Report(TaskState.FAILED, "container lost", error="the container disappeared")]
    if container.status == "running":
        if not wants_running:
            return [Stop()]
        if state != TaskState.RUNNING and not state.terminal:
            return [Report(TaskState.RUNNING, "running")]
        if state.terminal:
            return [Stop()]  # the server already gave up on it: do not let it linger
        return []
    if container.status == "created":
        if not wants_running or state.terminal:
            return [Remove()]
        # Created but never started (the agent died in between): start it. Once STARTING was
        # reported the monitor is on its way; starting twice would fail.
        return [Start()] if state in _WAITING else []
    if state.terminal:
        return []
    return [_finished(task, container)]
