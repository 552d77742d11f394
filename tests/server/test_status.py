"""`service_status` / `stack_status`: when is a service converged, progressing, failed?"""

from __future__ import annotations

from typing import Any

import pytest

from shoal.model.cluster import Service, Task, TaskState, TaskStatus
from shoal.model.compose_service import ServiceSpec
from shoal.server.status import STABLE_SECONDS, service_status, stable_for, stack_status

NOW = 10_000.0
S = TaskState


def svc(
    deploy: dict[str, Any] | None = None,
    *,
    sid: str = "s1",
    name: str = "web",
    version: int = 1,
    removing: bool = False,
) -> Service:
    raw: dict[str, Any] = {"image": "x"}
    if deploy is not None:
        raw["deploy"] = deploy
    return Service(
        id=sid,
        stack="st",
        name=name,
        spec=ServiceSpec.model_validate(raw),
        version=version,
        removing=removing,
    )


def task(
    tid: str,
    *,
    slot: int | None = 1,
    state: TaskState = S.RUNNING,
    desired: TaskState = S.RUNNING,
    version: int = 1,
    started: float | None = NOW - 60,
    timestamp: float = NOW - 60,
    health: str = "",
    node: str = "n1",
    sid: str = "s1",
    error: str = "",
    message: str = "",
    updated: float = 0.0,
    reasons: dict[str, str] | None = None,
) -> Task:
    return Task(
        id=tid,
        stack="st",
        service="web",
        service_id=sid,
        slot=slot,
        spec_version=version,
        spec=ServiceSpec.model_validate({"image": "x"}),
        node_id=node,
        desired_state=desired,
        status=TaskStatus(
            state=state,
            timestamp=timestamp,
            started_at=started,
            health=health,
            error=error,
            message=message,
        ),
        pending_reasons=reasons or {},
        updated_at=updated,
    )


def brief(row: dict[str, Any]) -> tuple[str, int, int]:
    return row["state"], row["ready"], row["desired"]


# --- replicated --------------------------------------------------------------------------------


def test_stable_for_defaults_and_monitor() -> None:
    assert stable_for(svc()) == STABLE_SECONDS
    assert stable_for(svc({"update_config": {"parallelism": 1}})) == STABLE_SECONDS
    assert stable_for(svc({"update_config": {"monitor": "10s"}})) == 10.0


@pytest.mark.parametrize(
    ("ran_for", "expected"),
    [(0.0, "progressing"), (9.9, "progressing"), (10.0, "converged"), (60.0, "converged")],
)
def test_a_replica_is_ready_once_it_ran_for_the_monitor_window(
    ran_for: float, expected: str
) -> None:
    service = svc({"replicas": 2, "update_config": {"monitor": "10s"}})
    tasks = [task("a", slot=1, started=NOW - ran_for), task("b", slot=2, started=NOW - 60)]
    ready = 2 if expected == "converged" else 1
    assert brief(service_status(service, tasks, NOW)) == (expected, ready, 2)


def test_default_window_is_stable_seconds() -> None:
    service = svc({"replicas": 1})
    just = [task("a", started=NOW - STABLE_SECONDS + 0.1)]
    assert brief(service_status(service, just, NOW)) == ("progressing", 0, 1)
    settled = [task("a", started=NOW - STABLE_SECONDS)]
    assert brief(service_status(service, settled, NOW)) == ("converged", 1, 1)


def test_without_started_at_the_status_timestamp_counts() -> None:
    service = svc({"replicas": 1})
    assert brief(service_status(service, [task("a", started=None, timestamp=NOW - 1)], NOW)) == (
        "progressing",
        0,
        1,
    )
    assert brief(service_status(service, [task("a", started=None, timestamp=NOW - 5)], NOW)) == (
        "converged",
        1,
        1,
    )


@pytest.mark.parametrize(
    ("health", "ready"), [("", 1), ("healthy", 1), ("starting", 0), ("unhealthy", 0)]
)
def test_health_gates_readiness(health: str, ready: int) -> None:
    row = service_status(svc({"replicas": 1}), [task("a", health=health)], NOW)
    assert row["ready"] == ready
    assert row["state"] == ("converged" if ready else "progressing")


@pytest.mark.parametrize(
    ("state", "desired"),
    [(S.STARTING, S.RUNNING), (S.ASSIGNED, S.RUNNING), (S.RUNNING, S.SHUTDOWN)],
)
def test_only_running_tasks_meant_to_run_are_ready(state: TaskState, desired: TaskState) -> None:
    row = service_status(svc({"replicas": 1}), [task("a", state=state, desired=desired)], NOW)
    assert brief(row) == ("progressing", 0, 1)


def test_replicas_default_to_one_and_scale_counts() -> None:
    assert service_status(svc(), [], NOW)["desired"] == 1
    row = service_status(svc(), [task("a")], NOW)
    assert row == {
        "name": "web",
        "version": 1,
        "mode": "replicated",
        "state": "converged",
        "ready": 1,
        "desired": 1,
        "message": "",
        "previous_version": None,
        "updated": 1,
        "stale": 0,
        "update": None,
        "failing": [],
    }


def test_zero_replicas_is_converged_at_once() -> None:
    assert brief(service_status(svc({"replicas": 0}), [], NOW)) == ("converged", 0, 0)


def test_tasks_of_other_services_do_not_count() -> None:
    row = service_status(svc({"replicas": 1}), [task("a", sid="other")], NOW)
    assert brief(row) == ("progressing", 0, 1)


# --- stale versions ------------------------------------------------------------------------------


def test_old_version_tasks_still_running_keep_it_progressing() -> None:
    service = svc({"replicas": 2}, version=2)
    tasks = [
        task("new1", slot=1, version=2),
        task("new2", slot=2, version=2),
        task("old", slot=1, version=1, desired=S.SHUTDOWN),
    ]
    assert brief(service_status(service, tasks, NOW)) == ("progressing", 2, 2)


def test_old_version_tasks_do_not_count_as_ready() -> None:
    service = svc({"replicas": 1}, version=2)
    assert brief(service_status(service, [task("old", version=1)], NOW)) == ("progressing", 0, 1)


def test_finished_old_version_tasks_do_not_block() -> None:
    service = svc({"replicas": 1}, version=2)
    tasks = [
        task("new", version=2),
        task("old", version=1, state=S.SHUTDOWN, desired=S.SHUTDOWN),
    ]
    assert brief(service_status(service, tasks, NOW)) == ("converged", 1, 1)


# --- failed, removing, pending -----------------------------------------------------------------


def test_desired_failed_means_the_service_failed_with_the_latest_reason() -> None:
    tasks = [
        task("a", slot=1, state=S.FAILED, desired=S.FAILED, error="old", updated=NOW - 20),
        task("b", slot=2, state=S.FAILED, desired=S.FAILED, error="exit 3", updated=NOW - 1),
        task("c", slot=3),
    ]
    row = service_status(svc({"replicas": 3}), tasks, NOW)
    assert brief(row) == ("failed", 1, 3)
    assert row["message"] == "task st_web.2 failed: exit 3"


def test_failed_message_falls_back_to_status_message_then_default() -> None:
    t = task("a", state=S.REJECTED, desired=S.REJECTED, message="start failed")
    assert service_status(svc(), [t], NOW)["message"] == "task st_web.1 rejected: start failed"
    t = task("a", state=S.ORPHANED, desired=S.ORPHANED)
    assert service_status(svc(), [t], NOW)["message"] == "task st_web.1 orphaned: no more restarts"


def test_a_failed_task_that_will_be_restarted_is_not_failure() -> None:
    tasks = [task("a", state=S.FAILED, desired=S.SHUTDOWN), task("b", state=S.PENDING)]
    assert service_status(svc(), tasks, NOW)["state"] == "progressing"


def test_removing_wins() -> None:
    tasks = [task("a", state=S.FAILED, desired=S.FAILED)]
    assert service_status(svc(removing=True), tasks, NOW)["state"] == "removing"


def test_progressing_names_why_a_task_is_pending() -> None:
    reasons = {"summary": "no suitable node (1 node drained)", "availability": "1 node"}
    tasks = [task("a", state=S.PENDING, node="", started=None, reasons=reasons)]
    row = service_status(svc(), tasks, NOW)
    assert brief(row) == ("progressing", 0, 1)
    assert row["message"] == "no suitable node (1 node drained)"


# --- global and jobs ---------------------------------------------------------------------------


def test_global_wants_one_running_task_per_current_node() -> None:
    service = svc({"mode": "global"})
    tasks = [
        task("a", slot=None, node="n1"),
        task("b", slot=None, node="n2", started=NOW - 1),
        task("c", slot=None, node="n3", state=S.SHUTDOWN, desired=S.SHUTDOWN),
    ]
    row = service_status(service, tasks, NOW)
    assert row["mode"] == "global"
    assert brief(row) == ("progressing", 1, 2)
    settled = service_status(service, tasks, NOW + 10)
    assert brief(settled) == ("converged", 2, 2)


def test_global_without_nodes_is_converged() -> None:
    assert brief(service_status(svc({"mode": "global"}), [], NOW)) == ("converged", 0, 0)


def test_replicated_job_counts_completions() -> None:
    service = svc({"mode": "replicated-job", "replicas": 3})
    done: dict[str, Any] = {"state": S.COMPLETE, "desired": S.COMPLETE}
    tasks = [task("a", slot=1, **done), task("b", slot=2, **done), task("c", slot=3)]
    assert brief(service_status(service, tasks, NOW)) == ("progressing", 2, 3)
    tasks[2] = task("c", slot=3, **done)
    row = service_status(service, tasks, NOW)
    assert brief(row) == ("converged", 3, 3)
    assert row["mode"] == "replicated-job"


def test_global_job_wants_a_completion_per_node() -> None:
    service = svc({"mode": "global-job"})
    done: dict[str, Any] = {"state": S.COMPLETE, "desired": S.COMPLETE}
    tasks = [task("a", slot=None, node="n1", **done), task("b", slot=None, node="n2")]
    assert brief(service_status(service, tasks, NOW)) == ("progressing", 1, 2)
    tasks[1] = task("b", slot=None, node="n2", **done)
    assert brief(service_status(service, tasks, NOW)) == ("converged", 2, 2)


def test_a_job_that_gave_up_failed() -> None:
    service = svc({"mode": "replicated-job", "replicas": 1})
    t = task("a", state=S.FAILED, desired=S.FAILED, error="exited with code 1")
    assert service_status(service, [t], NOW)["state"] == "failed"


# --- stack ---------------------------------------------------------------------------------------


def test_stack_status_rolls_up() -> None:
    web = svc({"replicas": 1}, sid="s1", name="web")
    db = svc({"replicas": 1}, sid="s2", name="db")
    up = [task("a", sid="s1"), task("b", sid="s2")]
    assert stack_status([web, db], up, NOW)["state"] == "converged"
    assert stack_status([], [], NOW) == {"state": "converged", "services": []}

    starting = [task("a", sid="s1"), task("b", sid="s2", state=S.STARTING)]
    result = stack_status([web, db], starting, NOW)
    assert result["state"] == "progressing"
    assert [(r["name"], r["state"]) for r in result["services"]] == [
        ("web", "converged"),
        ("db", "progressing"),
    ]

    failing = [task("a", sid="s1"), task("b", sid="s2", state=S.FAILED, desired=S.FAILED)]
    assert stack_status([web, db], failing, NOW)["state"] == "failed"

    removing = svc({"replicas": 1}, sid="s2", name="db", removing=True)
    assert stack_status([web, removing], up, NOW)["state"] == "progressing"
