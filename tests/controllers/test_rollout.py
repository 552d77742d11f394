"""Spec changes: rolling replacement, stop-first vs start-first, parallelism and delay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from shoal.controllers.rollout import UpdatePolicy, update_policy
from shoal.model.cluster import Task, TaskState
from tests.controllers.builders import (
    NOW,
    Ids,
    active,
    apply,
    assert_idempotent,
    node,
    reconcile,
    service,
    simulate_agents,
    store_of,
    summarize,
    task,
)

R, P, F, S = TaskState.RUNNING, TaskState.PENDING, TaskState.FAILED, TaskState.SHUTDOWN
NODES = [node("n1")]


def v1_running(n: int) -> list[Task]:
    return [task(f"old{i}", i, started=NOW - 100) for i in range(1, n + 1)]


def deploy(**update_config: Any) -> dict[str, Any]:
    return {"replicas": 3, "update_config": update_config}


@dataclass
class Case:
    name: str
    update_config: dict[str, Any]
    tasks: list[Task]
    expected: list[str]


CASES = [
    Case(
        "stop-first, parallelism 1 (defaults): stop one",
        {},
        v1_running(3),
        ["update old1 desired=shutdown state=running"],
    ),
    Case(
        "stop-first waits while the old task stops",
        {},
        [task("old1", 1, desired=S), *v1_running(3)[1:]],
        [],
    ),
    Case(
        "stop-first refills once the old task is gone",
        {},
        [task("old1", 1, state=S, desired=S), *v1_running(3)[1:]],
        ["create 1 v2 a0"],
    ),
    Case(
        "the next batch waits for the new task to run",
        {},
        [
            task("old1", 1, state=S, desired=S),
            task("new1", 1, version=2, state=P),
            *v1_running(3)[1:],
        ],
        [],
    ),
    Case(
        "the next batch starts once it runs",
        {},
        [task("new1", 1, version=2, started=NOW - 1), *v1_running(3)[1:]],
        ["update old2 desired=shutdown state=running"],
    ),
    Case(
        "delay: not before the last updated task ran that long",
        {"delay": "10s"},
        [task("new1", 1, version=2, started=NOW - 1), *v1_running(3)[1:]],
        [],
    ),
    Case(
        "delay elapsed",
        {"delay": "10s"},
        [task("new1", 1, version=2, started=NOW - 11), *v1_running(3)[1:]],
        ["update old2 desired=shutdown state=running"],
    ),
    Case(
        "parallelism 2",
        {"parallelism": 2},
        v1_running(3),
        [
            "update old1 desired=shutdown state=running",
            "update old2 desired=shutdown state=running",
        ],
    ),
    Case(
        "parallelism 0: all at once",
        {"parallelism": 0},
        v1_running(3),
        [f"update old{i} desired=shutdown state=running" for i in (1, 2, 3)],
    ),
    Case(
        "tasks that are not serving go first",
        {},
        [*v1_running(2), task("old3", 3, state=P)],
        ["update old3 desired=shutdown state=shutdown", "create 3 v2 a0"],
    ),
    Case(
        "a failed-for-good old task is replaced",
        {},
        [*v1_running(2), task("old3", 3, state=F, desired=F)],
        ["update old3 desired=shutdown state=failed", "create 3 v2 a0"],
    ),
    Case(
        "start-first: start the new task first",
        {"order": "start-first", "parallelism": 2},
        v1_running(3),
        ["create 1 v2 a0", "create 2 v2 a0"],
    ),
    Case(
        "start-first: both stay while the new one starts",
        {"order": "start-first"},
        [*v1_running(3), task("new1", 1, version=2, state=P, created=NOW - 1)],
        [],
    ),
    Case(
        "start-first: the old one stops once the new one runs; next batch starts",
        {"order": "start-first"},
        [*v1_running(3), task("new1", 1, version=2, created=NOW - 1, started=NOW - 1)],
        ["update old1 desired=shutdown state=running", "create 2 v2 a0"],
    ),
    Case(
        "start-first: a failing new task restarts, the old one keeps serving",
        {"order": "start-first"},
        [*v1_running(3), task("new1", 1, version=2, state=F, exit_code=1, created=NOW - 1)],
        ["create 1 v2 a1", "update new1 desired=shutdown state=failed", "emit restart new1"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rollout(case: Case) -> None:
    svc = service(deploy(**case.update_config), version=2)
    actions = assert_idempotent(svc, store_of(*case.tasks), NODES)
    assert summarize(actions) == case.expected


@pytest.mark.parametrize(
    ("update_config", "expected"),
    [
        (None, UpdatePolicy(1, 0.0, "stop-first")),
        (
            {"parallelism": 0, "delay": "3s", "order": "start-first"},
            UpdatePolicy(0, 3.0, "start-first"),
        ),
    ],
)
def test_update_policy(update_config: dict[str, Any] | None, expected: UpdatePolicy) -> None:
    raw = {"update_config": update_config} if update_config else {}
    assert update_policy(service(raw)) == expected


@pytest.mark.parametrize("order", ["stop-first", "start-first"])
@pytest.mark.parametrize("parallelism", [1, 2, 0])
def test_rollout_completes_losing_no_more_capacity_than_allowed(
    order: str, parallelism: int
) -> None:
    n = 4
    svc = service(
        {"replicas": n, "update_config": {"order": order, "parallelism": parallelism}}, version=2
    )
    store = store_of(*v1_running(n))
    floor = n if order == "start-first" else n - (parallelism or n)
    ids = Ids()
    for _ in range(30):
        apply(store, reconcile(svc, store, NODES, ids=ids))
        assert len([t for t in active(store) if t.status.state == R]) >= floor
        simulate_agents(store, NODES, NOW)
    assert [(t.slot, t.spec_version) for t in active(store)] == [(s, 2) for s in range(1, n + 1)]
