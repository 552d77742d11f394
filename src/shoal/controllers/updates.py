"""Supervising a rolling update: failure detection, failure_action, completion (pure).

A service being updated (or rolled back) carries an `UpdateStatus`. Each pass, `supervise`
looks at the tasks of the new version:
- a task of the new version that fails (or is rejected) within `monitor` of starting counts as
  an update failure; once failures exceed `max_failure_ratio` × replicas (default 0: the first
  failure), `failure_action` applies — `pause` (the default, as Swarm's: no more tasks are
  replaced until `shoal deploy` or `shoal update --resume`), `continue`, or `rollback` (back to
  the previous version's spec, rolled with `rollback_config`);
- once every slot runs a ready task of the new version for `monitor`, the update is complete.
The loop applies the verdict: a new UpdateStatus, or a rollback to `previous_version`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.controllers.endpoints import is_ready
from shoal.model.cluster import Service, ServiceMode, Task, TaskState, UpdateState, UpdateStatus
from shoal.model.compose_deploy import UpdateConfig
from shoal.model.compose_service import ServiceSpec

DEFAULT_MONITOR = 5.0  # seconds, Swarm's default
_FAILED = (TaskState.FAILED, TaskState.REJECTED)


def config_of(service: Service) -> UpdateConfig:
    """The policy in force: rollback_config while rolling back, else update_config."""
    deploy = service.spec.deploy
    rolling_back = service.update_status is not None and service.update_status.state.rolling_back
    chosen = None
    if deploy is not None:
        chosen = deploy.rollback_config if rolling_back else deploy.update_config
    return chosen or UpdateConfig()


def monitor_of(service: Service) -> float:
    config = config_of(service)
    return config.monitor.total_seconds() if config.monitor is not None else DEFAULT_MONITOR


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the loop must write: a new update status, and whether to roll back first."""

    status: UpdateStatus
    rollback: bool = False


def _failures(service: Service, tasks: list[Task], started: float, monitor: float) -> list[Task]:
    out = []
    for task in tasks:
        if task.spec_version != service.version or task.created_at < started:
            continue
        if task.status.state not in _FAILED:
            continue
        ran_from = task.status.started_at
        if ran_from is not None and task.status.timestamp - ran_from > monitor:
            continue  # it served for the whole monitor window: a later crash, not the update
        out.append(task)
    return out


def _done(service: Service, tasks: list[Task], now: float, monitor: float) -> bool:
    live = [t for t in tasks if not t.status.state.terminal and t.desired_state != TaskState.REMOVE]
    if any(t.spec_version < service.version for t in live):
        return False
    ready = [
        t
        for t in live
        if t.spec_version == service.version
        and is_ready(t)
        and now - (t.status.started_at or t.status.timestamp) >= monitor
    ]
    wanted = service.replicas if service.mode == ServiceMode.REPLICATED else len(live)
    return len(ready) >= wanted


def supervise(service: Service, tasks: list[Task], now: float) -> Verdict | None:
    """The update status change this pass calls for, or None."""
    update = service.update_status
    if update is None or update.state in (UpdateState.COMPLETED, UpdateState.ROLLBACK_COMPLETED):
        return None
    if update.state.paused:
        return None
    config = config_of(service)
    monitor = monitor_of(service)
    mine = [t for t in tasks if t.service_id == service.id]
    failed = _failures(service, mine, update.started_at, monitor)
    allowed = (config.max_failure_ratio or 0.0) * max(service.replicas, 1)
    action = config.failure_action or "pause"
    if failed and len(failed) > allowed and action != "continue":
        last = max(failed, key=lambda t: t.status.timestamp)
        why = f"task {last.name} {last.status.state.value}: {last.status.error or 'no reason'}"
        ratio = f"{len(failed)} of {max(service.replicas, 1)} new tasks failed"
        if update.state.rolling_back:
            return Verdict(
                update.model_copy(
                    update={"state": UpdateState.ROLLBACK_PAUSED, "message": f"{ratio}; {why}"}
                )
            )
        if action == "rollback" and service.previous_version is not None:
            status = UpdateStatus(
                state=UpdateState.ROLLBACK_STARTED,
                from_version=service.version,
                to_version=service.previous_version,
                started_at=now,
                message=f"update to version {service.version} failed ({ratio}; {why})",
            )
            return Verdict(status, rollback=True)
        message = f"update to version {service.version} paused: {ratio}; {why}"
        return Verdict(update.model_copy(update={"state": UpdateState.PAUSED, "message": message}))
    if _done(service, mine, now, monitor):
        finished = (
            UpdateState.ROLLBACK_COMPLETED if update.state.rolling_back else UpdateState.COMPLETED
        )
        return Verdict(update.model_copy(update={"state": finished, "completed_at": now}))
    return None


def rolled_back(
    service: Service, previous: ServiceSpec, status: UpdateStatus, now: float
) -> Service:
    """`service` set back to the `previous` spec (a new version, so its tasks roll again)."""
    return service.model_copy(
        update={
            "spec": previous,
            "version": service.version + 1,
            "previous_version": service.version,
            "update_status": status.model_copy(update={"to_version": service.version + 1}),
            "updated_at": now,
        }
    )
