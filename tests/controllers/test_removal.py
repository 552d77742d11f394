"""Removing a service: stop everything, then delete the tasks and the service."""

from __future__ import annotations

import pytest

from shoal.controllers.removal import reconcile_removal
from shoal.model.cluster import NodeState, Task, TaskState
from tests.controllers.builders import (
    NOW,
    apply,
    node,
    reconcile,
    service,
    store_of,
    summarize,
    task,
)

R, P, F, S, RM = (
    TaskState.RUNNING,
    TaskState.PENDING,
    TaskState.FAILED,
    TaskState.SHUTDOWN,
    TaskState.REMOVE,
)
REMOVING = service({"replicas": 2}, removing=True)


@pytest.mark.parametrize(
    ("name", "tasks", "expected"),
    [
        ("nothing left: delete the service", [], ["delete-service svc1", "emit remove svc1"]),
        (
            "running tasks are told to stop; nothing is deleted yet",
            [task("a", 1), task("b", 2, state=F, desired=F)],
            ["update a desired=remove state=running"],
        ),
        ("still stopping: wait", [task("a", 1, desired=RM)], []),
        (
            "stopping ones are asked to remove",
            [task("a", 1, desired=S)],
            ["update a desired=remove state=running"],
        ),
        (
            "unassigned tasks stop on the spot, then everything goes",
            [task("a", 1, state=P), task("b", 2, state=F)],
            ["delete a", "delete b", "delete-service svc1", "emit remove svc1"],
        ),
        (
            "all terminal: delete all",
            [task("a", 1, state=S, desired=RM), task("b", 2, state=F, desired=F)],
            ["delete a", "delete b", "delete-service svc1", "emit remove svc1"],
        ),
    ],
)
def test_removal(name: str, tasks: list[Task], expected: list[str]) -> None:
    first = reconcile_removal(REMOVING, tasks, NOW)
    assert summarize(first) == expected
    assert reconcile_removal(REMOVING, tasks, NOW) == first
    store = store_of(*tasks)
    apply(store, first)
    if "delete-service svc1" not in expected:
        assert reconcile_removal(REMOVING, list(store.values()), NOW) == []


def test_reconcile_service_removes_and_does_not_wait_for_a_lost_node() -> None:
    store = store_of(task("a", 1), task("b", 2, node="n2"))
    nodes = [node("n1"), node("n2", state=NodeState.DOWN, heartbeat=NOW - 60)]
    actions = reconcile(REMOVING, store, nodes)
    assert summarize(actions) == [
        "update b desired=shutdown state=orphaned",
        "emit orphaned b",
        "update a desired=remove state=running",
    ]
    apply(store, actions)
    assert reconcile(REMOVING, store, nodes) == []
    store["a"] = store["a"].model_copy(
        update={"status": store["a"].status.model_copy(update={"state": S})}
    )
    assert summarize(reconcile(REMOVING, store, nodes)) == [
        "delete a",
        "delete b",
        "delete-service svc1",
        "emit remove svc1",
    ]
