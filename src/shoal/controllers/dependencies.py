"""`depends_on` gating: may a service's new tasks start yet? (pure)

A pending task of a service waits — with the reason shown in `shoal ps` — until every service
it depends on (same stack) meets its condition:
- `service_started`: a task of it runs (or, for a job, has completed);
- `service_healthy`: a task of it runs and is healthy (no health check: running);
- `service_completed_successfully`: a task of its current version exited 0.
This holds at deploy and at every restart, as Compose orders `up`. A dependency that is not
deployed blocks only when `required` (the default).
"""

from __future__ import annotations

from collections.abc import Mapping

from shoal.controllers.endpoints import is_ready
from shoal.model.cluster import Service, Task, TaskState

_WORDS = {
    "service_started": "started",
    "service_healthy": "healthy",
    "service_completed_successfully": "completed successfully",
}


def _met(condition: str, service: Service, tasks: list[Task]) -> bool:
    if condition == "service_completed_successfully":
        return any(
            t.status.state == TaskState.COMPLETE and t.spec_version >= service.version
            for t in tasks
        )
    if condition == "service_healthy":
        return any(is_ready(t) for t in tasks)
    return any(t.status.state in (TaskState.RUNNING, TaskState.COMPLETE) for t in tasks)


def unmet(
    service: Service, services: Mapping[str, Service], tasks: Mapping[str, list[Task]]
) -> str | None:
    """Why the service's tasks must wait, or None. `services`: the stack's services by name;
    `tasks`: tasks by service id."""
    for name, dependency in sorted((service.spec.depends_on or {}).items()):
        other = services.get(name)
        if other is None or other.removing:
            if dependency.required:
                return f"waiting for {name}: it is not deployed"
            continue
        if not _met(dependency.condition, other, tasks.get(other.id, [])):
            return f"waiting for {name} to be {_WORDS[dependency.condition]}"
    return None
