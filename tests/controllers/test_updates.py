"""Update supervision: failure detection, failure_action, completion (pure)."""

from __future__ import annotations

from typing import Any

from shoal.controllers.rollout import update_policy
from shoal.controllers.updates import rolled_back, supervise
from shoal.model.cluster import Service, Task, TaskState, TaskStatus, UpdateState, UpdateStatus
from shoal.model.compose_service import ServiceSpec

NOW = 1000.0
S = TaskState


def service(
    update: dict[str, Any] | None = None,
    state: UpdateState = UpdateState.UPDATING,
    replicas: int = 2,
    rollback_config: dict[str, Any] | None = None,
) -> Service:
    deploy: dict[str, Any] = {"replicas": replicas}
    if update is not None:
        deploy["update_config"] = update
    if rollback_config is not None:
        deploy["rollback_config"] = rollback_config
    return Service(
        id="s1",
        stack="st",
        name="web",
        spec=ServiceSpec.model_validate({"image": "web:2", "deploy": deploy}),
        version=2,
        previous_version=1,
        update_status=UpdateStatus(state=state, from_version=1, to_version=2, started_at=NOW - 30),
    )


def task(
    tid: str,
    slot: int,
    state: TaskState,
    *,
    version: int = 2,
    ran: float = 1.0,
    health: str = "",
    created: float = NOW - 20,
    error: str = "",
) -> Task:
    return Task(
        id=tid,
        stack="st",
        service="web",
        service_id="s1",
        slot=slot,
        spec_version=version,
        spec=ServiceSpec.model_validate({"image": "x"}),
        node_id="n1",
        desired_state=S.RUNNING if not state.terminal else state,
        created_at=created,
        status=TaskStatus(
            state=state,
            timestamp=NOW - 10 + ran,
            started_at=NOW - 10,
            health=health,
            error=error,
        ),
    )


def test_first_failure_pauses_by_default() -> None:
    verdict = supervise(service(), [task("a", 1, S.FAILED, error="exit 1")], NOW)
    assert verdict is not None and not verdict.rollback
    assert verdict.status.state is UpdateState.PAUSED
    assert "1 of 2 new tasks failed" in verdict.status.message
    assert "exit 1" in verdict.status.message


def test_rollback_action_asks_for_a_rollback() -> None:
    verdict = supervise(service({"failure_action": "rollback"}), [task("a", 1, S.FAILED)], NOW)
    assert verdict is not None and verdict.rollback
    assert verdict.status.state is UpdateState.ROLLBACK_STARTED
    assert verdict.status.from_version == 2


def test_continue_and_failure_ratio_tolerate_failures() -> None:
    failed = [task("a", 1, S.FAILED)]
    assert supervise(service({"failure_action": "continue"}), failed, NOW) is None
    assert supervise(service({"max_failure_ratio": 0.5}), failed, NOW) is None
    two = [*failed, task("b", 2, S.FAILED)]
    verdict = supervise(service({"max_failure_ratio": 0.5}), two, NOW)
    assert verdict is not None and verdict.status.state is UpdateState.PAUSED


def test_failures_outside_the_update_or_after_the_monitor_do_not_count() -> None:
    old = [task("a", 1, S.FAILED, version=1)]
    before = [task("b", 1, S.FAILED, created=NOW - 60)]
    late = [task("c", 1, S.FAILED, ran=8.0)]  # ran 8 s > monitor 5 s
    for tasks in (old, before, late):
        verdict = supervise(service(), tasks, NOW)
        assert verdict is None or verdict.status.state is not UpdateState.PAUSED


def test_completion_needs_every_slot_ready_for_the_monitor() -> None:
    ready = [task("a", 1, S.RUNNING), task("b", 2, S.RUNNING)]
    verdict = supervise(service({"monitor": "5s"}), ready, NOW)
    assert verdict is not None and verdict.status.state is UpdateState.COMPLETED
    assert verdict.status.completed_at == NOW
    assert supervise(service({"monitor": "30s"}), ready, NOW) is None  # not long enough
    unhealthy = [task("a", 1, S.RUNNING, health="starting"), task("b", 2, S.RUNNING)]
    assert supervise(service(), unhealthy, NOW) is None
    stale = [*ready, task("c", 3, S.RUNNING, version=1)]
    assert supervise(service(), stale, NOW) is None


def test_rollback_failures_pause_the_rollback_and_completion_is_rollback_completed() -> None:
    rolling = service(state=UpdateState.ROLLBACK_STARTED)
    verdict = supervise(rolling, [task("a", 1, S.FAILED)], NOW)
    assert verdict is not None and verdict.status.state is UpdateState.ROLLBACK_PAUSED
    done = supervise(rolling, [task("a", 1, S.RUNNING), task("b", 2, S.RUNNING)], NOW)
    assert done is not None and done.status.state is UpdateState.ROLLBACK_COMPLETED


def test_paused_and_finished_updates_are_left_alone() -> None:
    for state in (UpdateState.PAUSED, UpdateState.COMPLETED, UpdateState.ROLLBACK_COMPLETED):
        assert supervise(service(state=state), [task("a", 1, S.FAILED)], NOW) is None


def test_rolled_back_service_is_a_new_version_with_the_old_spec() -> None:
    svc = service()
    old = ServiceSpec.model_validate({"image": "web:1"})
    status = UpdateStatus(state=UpdateState.ROLLBACK_STARTED, from_version=2, to_version=1)
    back = rolled_back(svc, old, status, NOW)
    assert (back.version, back.previous_version, back.spec.image) == (3, 2, "web:1")
    assert back.update_status is not None and back.update_status.to_version == 3


def test_rollbacks_roll_with_rollback_config() -> None:
    svc = service(
        {"parallelism": 2},
        state=UpdateState.ROLLBACK_STARTED,
        rollback_config={"parallelism": 0, "order": "start-first"},
    )
    policy = update_policy(svc)
    assert (policy.parallelism, policy.order) == (0, "start-first")
    assert update_policy(service({"parallelism": 2})).parallelism == 2
