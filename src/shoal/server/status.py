"""Has a stack converged? Per-service progress for `deploy --wait` and CI (pure).

Like `docker service create`'s progress, a running task counts as ready only once it has run
for the service's `update_config.monitor` (default STABLE_SECONDS): a task that crashes a
moment after starting must not let a CI pipeline go green.
"""

from __future__ import annotations

from typing import Any

from shoal.model.cluster import Service, ServiceMode, Task, TaskState, UpdateState

_FAILED = (TaskState.FAILED, TaskState.REJECTED, TaskState.ORPHANED)
STABLE_SECONDS = 3.0


def stable_for(service: Service) -> float:
    update = service.spec.deploy.update_config if service.spec.deploy else None
    if update is not None and update.monitor is not None:
        return update.monitor.total_seconds()
    return STABLE_SECONDS


def service_status(service: Service, tasks: list[Task], now: float) -> dict[str, Any]:
    mine = [t for t in tasks if t.service_id == service.id]
    current = [t for t in mine if t.spec_version >= service.version]
    job = service.mode in (ServiceMode.REPLICATED_JOB, ServiceMode.GLOBAL_JOB)
    stale = [t for t in mine if t.spec_version < service.version and not t.status.state.terminal]
    gave_up = [t for t in current if t.desired_state in _FAILED]
    if job:
        ready = sum(1 for t in current if t.status.state == TaskState.COMPLETE)
        desired = (
            service.replicas
            if service.mode == ServiceMode.REPLICATED_JOB
            else len({t.node_id for t in current})
        )
    else:
        settle = stable_for(service)
        ready = sum(
            1
            for t in current
            if t.desired_state == TaskState.RUNNING
            and t.status.state == TaskState.RUNNING
            and t.status.health in ("", "healthy")
            and now - (t.status.started_at or t.status.timestamp) >= settle
        )
        desired = (
            service.replicas
            if service.mode == ServiceMode.REPLICATED
            else sum(1 for t in current if t.desired_state == TaskState.RUNNING)
        )
    message = ""
    update = service.update_status
    if service.removing:
        state = "removing"
    elif update is not None and update.state.paused:
        state = "failed"
        message = update.message
    elif update is not None and update.state == UpdateState.ROLLBACK_COMPLETED:
        state = "rolled_back"
        message = f"rolled back (now version {update.to_version}): {update.message}"
    elif update is not None and update.state == UpdateState.ROLLBACK_STARTED:
        state = "rolling_back"
        message = update.message
    elif gave_up:
        state = "failed"
        last = max(gave_up, key=lambda t: t.updated_at)
        message = (
            f"task {last.name} {last.status.state.value}: "
            f"{last.status.error or last.status.message or 'no more restarts'}"
        )
    elif ready >= desired and not stale:
        state = "converged"
    else:
        state = "progressing"
        pending = [t for t in current if t.status.state == TaskState.PENDING and t.pending_reasons]
        if pending:
            message = pending[0].pending_reasons.get("summary", "")
    # While (or after) rolling back, the failures that caused it are the interesting ones.
    culprit = update.from_version if update is not None and update.state.rolling_back else None
    failing = sorted(
        (
            t
            for t in mine
            if t.status.state in _FAILED
            and (t.spec_version >= service.version or t.spec_version == culprit)
        ),
        key=lambda t: t.status.timestamp,
        reverse=True,
    )[:3]
    return {
        "name": service.name,
        "version": service.version,
        "previous_version": service.previous_version,
        "mode": service.mode.value,
        "state": state,
        "ready": ready,
        "desired": desired,
        "updated": sum(1 for t in current if not t.status.state.terminal),
        "stale": len(stale),
        "message": message,
        "update": update.model_dump(mode="json") if update is not None else None,
        "failing": [
            {"task": t.id, "name": t.name, "state": t.status.state.value, "error": t.status.error}
            for t in failing
        ],
    }


def stack_status(services: list[Service], tasks: list[Task], now: float) -> dict[str, Any]:
    rows = [service_status(s, tasks, now) for s in services]
    states = {r["state"] for r in rows}
    if states & {"failed", "rolled_back"}:
        overall = "failed"
    elif states <= {"converged"}:
        overall = "converged"
    else:
        overall = "progressing"
    return {"state": overall, "services": rows}
