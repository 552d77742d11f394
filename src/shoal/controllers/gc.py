"""Garbage collection of finished task records.

Keeps the newest `keep` terminal tasks of each slot (each node for global services) as history
for `shoal ps`, deletes older ones, and deletes terminal tasks of services that no longer exist
or that were asked to be removed. A task that still holds its slot (settled: the job completed,
or it failed for good) or awaits a restart decision is never collected, whatever its age.

The restart window (`restarts.restarts_counted`) only sees the history kept here.
"""

from __future__ import annotations

from collections.abc import Iterable

from shoal.controllers.actions import Action, DeleteTask
from shoal.controllers.plan import age_key, is_held
from shoal.model.cluster import Service, Task, TaskState

DEFAULT_KEEP = 5


def collect_garbage(
    services: Iterable[Service], tasks: Iterable[Task], keep: int = DEFAULT_KEEP
) -> list[Action]:
    live = {s.id for s in services}
    doomed: list[str] = []
    history: dict[tuple[str, int | str], list[Task]] = {}
    for task in tasks:
        if not task.status.state.terminal:
            continue
        if task.service_id not in live or task.desired_state == TaskState.REMOVE:
            doomed.append(task.id)
            continue
        slot: int | str = task.slot if task.slot is not None else task.node_id
        history.setdefault((task.service_id, slot), []).append(task)
    for group in history.values():
        group.sort(key=age_key, reverse=True)
        doomed.extend(t.id for t in group[keep:] if not is_held(t))
    return [DeleteTask(task_id) for task_id in sorted(doomed)]
