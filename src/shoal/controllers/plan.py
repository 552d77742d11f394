"""A working view of a service's tasks plus the actions that produced it.

Reconcile steps read `plan.tasks` and change it only through `create`/`update`/`delete`, so a
later step sees the effect of an earlier one in the same pass and the pass as a whole is
idempotent: re-running it on the view it produced yields no actions. Writes to one task are
merged into one action, because the loop writes each task with compare-and-swap against the
revision it read and a second write to the same key would always conflict.

Task predicates used across the controllers live here too:

- *active*: desired RUNNING and not terminal (it runs, or will).
- *undecided*: desired RUNNING but terminal: a restart decision is due.
- *settled*: terminal, and its desired state was set to that outcome (COMPLETE, FAILED, …):
  the controller accepted it (job done, policy said no restart, max attempts reached), so the
  task keeps holding its slot and nothing is recreated.
- *held*: active, undecided or settled: the slot is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shoal.controllers.actions import (
    Action,
    CreateTask,
    DeleteService,
    DeleteTask,
    Emit,
    UpdateTask,
)
from shoal.model.cluster import Event, Service, Task, TaskState, TaskStatus

SETTLED_STATES = frozenset(
    {TaskState.COMPLETE, TaskState.FAILED, TaskState.REJECTED, TaskState.ORPHANED}
)
STOP_STATES = frozenset({TaskState.SHUTDOWN, TaskState.REMOVE})


def is_active(task: Task) -> bool:
    return task.desired_state == TaskState.RUNNING and not task.status.state.terminal


def is_undecided(task: Task) -> bool:
    return task.desired_state == TaskState.RUNNING and task.status.state.terminal


def is_settled(task: Task) -> bool:
    return task.desired_state in SETTLED_STATES


def is_held(task: Task) -> bool:
    return task.desired_state == TaskState.RUNNING or is_settled(task)


def unstarted(task: Task) -> bool:
    """Never handed to an agent: stopping it needs nobody's cooperation."""
    return task.status.state in (TaskState.NEW, TaskState.PENDING)


def age_key(task: Task) -> tuple[float, int, int, str]:
    """Sort key, oldest first; ids only break exact ties so the choice is stable."""
    return (task.created_at, task.attempt, task.spec_version, task.id)


def progress_key(task: Task) -> tuple[int, tuple[float, int, int, str]]:
    """Sort key: the most advanced state wins, then the newest."""
    return (task.status.state.order, age_key(task))


def newest(tasks: Iterable[Task]) -> Task:
    return max(tasks, key=age_key)


def most_advanced(tasks: Iterable[Task]) -> Task:
    return max(tasks, key=progress_key)


def new_task(
    service: Service,
    *,
    task_id: str,
    now: float,
    slot: int | None = None,
    node_id: str = "",
    attempt: int = 0,
    not_before: float = 0.0,
) -> Task:
    """A PENDING task running the service's current spec (the scheduler assigns the node)."""
    return Task(
        id=task_id,
        stack=service.stack,
        service=service.name,
        service_id=service.id,
        slot=slot,
        spec_version=service.version,
        spec=service.spec,
        node_id=node_id,
        status=TaskStatus(state=TaskState.PENDING, timestamp=now, message="created"),
        attempt=attempt,
        not_before=not_before,
        created_at=now,
        updated_at=now,
    )


class Plan:
    def __init__(self, tasks: Iterable[Task], now: float) -> None:
        self.now = now
        self.tasks: dict[str, Task] = {t.id: t for t in tasks}
        self._actions: list[Action | None] = []
        self._pending: dict[str, int] = {}  # task id → index of its Create/Update action

    @property
    def actions(self) -> list[Action]:
        return [a for a in self._actions if a is not None]

    def of_service(self, service_id: str) -> list[Task]:
        return sorted((t for t in self.tasks.values() if t.service_id == service_id), key=age_key)

    def create(self, task: Task) -> None:
        self.tasks[task.id] = task
        self._pending[task.id] = len(self._actions)
        self._actions.append(CreateTask(task))

    def update(self, task: Task, **changes: Any) -> Task:
        """Write `changes` to the task (no action when nothing changes); returns the new view."""
        current = self.tasks[task.id]
        changed = current.model_copy(update=changes)
        if changed == current:
            return current
        changed = changed.model_copy(update={"updated_at": self.now})
        self.tasks[task.id] = changed
        index = self._pending.get(task.id)
        if index is None:
            self._pending[task.id] = len(self._actions)
            self._actions.append(UpdateTask(changed))
        else:
            previous = self._actions[index]
            merged = (
                CreateTask(changed) if isinstance(previous, CreateTask) else UpdateTask(changed)
            )
            self._actions[index] = merged
        return changed

    def set_status(self, task: Task, state: TaskState, message: str, **changes: Any) -> Task:
        status = self.tasks[task.id].status
        new_status = status.model_copy(
            update={"state": state, "timestamp": self.now, "message": message}
        )
        return self.update(task, status=new_status, **changes)

    def stop(self, task: Task, desired: TaskState = TaskState.SHUTDOWN) -> Task:
        """Ask for the task to stop; one never handed to an agent is stopped right here."""
        current = self.tasks[task.id]
        if current.desired_state in STOP_STATES and (
            # REMOVE outranks SHUTDOWN: never downgrade a removal.
            current.desired_state.order >= desired.order or current.status.state.terminal
        ):
            return current
        if not current.status.state.terminal and unstarted(current):
            return self.set_status(
                current, TaskState.SHUTDOWN, "stopped before it started", desired_state=desired
            )
        return self.update(current, desired_state=desired)

    def delete(self, task_id: str) -> None:
        self.tasks.pop(task_id, None)
        index = self._pending.pop(task_id, None)
        created = index is not None and isinstance(self._actions[index], CreateTask)
        if index is not None:
            self._actions[index] = None
        if not created:
            self._actions.append(DeleteTask(task_id))

    def delete_service(self, service_id: str) -> None:
        self._actions.append(DeleteService(service_id))

    def emit(
        self,
        kind: str,
        action: str,
        object_id: str,
        message: str,
        *,
        service: Service | None = None,
        **attributes: str,
    ) -> None:
        event = Event(
            time=self.now,
            type=kind,
            action=action,
            id=object_id,
            stack=service.stack if service else "",
            service=service.name if service else "",
            message=message,
            attributes=attributes,
        )
        self._actions.append(Emit(event))


NewId = Callable[[], str]
