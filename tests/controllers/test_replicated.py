"""Replicated services: slots, scaling, duplicates, restarts, lost and drained nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from shoal.controllers.actions import CreateTask
from shoal.model.cluster import Availability, Node, NodeState, Service, Task, TaskState
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
NODES = [node("n1"), node("n2")]


@dataclass
class Case:
    name: str
    svc: Service
    tasks: list[Task]
    expected: list[str]
    nodes: list[Node] = field(default_factory=lambda: NODES)


CASES = [
    Case(
        "empty service gets every slot",
        service({"replicas": 3}),
        [],
        ["create 1 v1 a0", "create 2 v1 a0", "create 3 v1 a0"],
    ),
    Case("steady state", service({"replicas": 2}), [task("a", 1), task("b", 2)], []),
    Case("compose scale counts", service(scale=2), [task("a", 1)], ["create 2 v1 a0"]),
    Case(
        "scale up", service({"replicas": 3}), [task("a", 1)], ["create 2 v1 a0", "create 3 v1 a0"]
    ),
    Case(
        "scale down stops the highest slots",
        service({"replicas": 1}),
        [task("a", 1), task("b", 2), task("c", 3)],
        ["update b desired=shutdown state=running", "update c desired=shutdown state=running"],
    ),
    Case(
        "scale down stops an unassigned task on the spot",
        service({"replicas": 1}),
        [task("a", 1), task("b", 2, state=P)],
        ["update b desired=shutdown state=shutdown"],
    ),
    Case(
        "a task without a slot is stopped",
        service({"replicas": 1}),
        [task("a", 1), task("b", None)],
        ["update b desired=shutdown state=running"],
    ),
    Case(
        "duplicate slot keeps the most advanced",
        service({"replicas": 1}),
        [task("a", 1, created=900), task("b", 1, state=P, created=950)],
        ["update b desired=shutdown state=shutdown"],
    ),
    Case(
        "duplicate slot, same state, keeps the newest",
        service({"replicas": 1}),
        [task("a", 1, created=900), task("b", 1, created=950)],
        ["update a desired=shutdown state=running"],
    ),
    Case(
        "crash between restart writes: the newer task supersedes the failed one",
        service({"replicas": 1}),
        [task("a", 1, state=F, created=900), task("b", 1, state=P, attempt=1, created=950)],
        ["update a desired=shutdown state=failed"],
    ),
    Case(
        "an old task still stopping holds its slot back",
        service({"replicas": 2}),
        [task("a", 1), task("b", 2, desired=S)],
        [],
    ),
    Case(
        "a stopped slot is refilled",
        service({"replicas": 2}),
        [task("a", 1), task("b", 2, state=S, desired=S)],
        ["create 2 v1 a0"],
    ),
    Case(
        "failure restarts with attempt + 1",
        service({"replicas": 1}),
        [task("a", 1, state=F, exit_code=1)],
        ["create 1 v1 a1", "update a desired=shutdown state=failed", "emit restart a"],
    ),
    Case(
        "a settled failure holds its slot",
        service({"replicas": 1}),
        [task("a", 1, state=F, desired=F, exit_code=1)],
        [],
    ),
    Case(
        "drained node: stopped and replaced at once",
        service({"replicas": 1}),
        [task("a", 1)],
        ["update a desired=shutdown state=running", "emit evacuate a", "create 1 v1 a0"],
        [node("n1", availability=Availability.DRAIN), node("n2")],
    ),
    Case(
        "paused node keeps its task",
        service({"replicas": 1}),
        [task("a", 1)],
        [],
        [node("n1", availability=Availability.PAUSE)],
    ),
    Case(
        "down node within the grace period keeps its task",
        service({"replicas": 1}),
        [task("a", 1)],
        [],
        [node("n1", state=NodeState.DOWN, heartbeat=NOW - 5)],
    ),
    Case(
        "down node past the grace period: orphaned and replaced",
        service({"replicas": 1}),
        [task("a", 1)],
        ["update a desired=shutdown state=orphaned", "emit orphaned a", "create 1 v1 a0"],
        [node("n1", state=NodeState.DOWN, heartbeat=NOW - 30), node("n2")],
    ),
    Case(
        "node gone: orphaned and replaced",
        service({"replicas": 1}),
        [task("a", 1, node="n9")],
        ["update a desired=shutdown state=orphaned", "emit orphaned a", "create 1 v1 a0"],
    ),
    Case(
        "a stopping task on a lost node is orphaned and stops blocking",
        service({"replicas": 1}),
        [task("a", 1, desired=S, node="n9")],
        ["update a desired=shutdown state=orphaned", "emit orphaned a", "create 1 v1 a0"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_replicated(case: Case) -> None:
    actions = assert_idempotent(case.svc, store_of(*case.tasks), case.nodes)
    assert summarize(actions) == case.expected


def test_new_tasks_copy_the_service_spec() -> None:
    svc = service({"replicas": 1}, version=4, command=["run"])
    [create] = reconcile(svc, {}, NODES)
    assert isinstance(create, CreateTask)
    t = create.task
    assert (t.spec, t.spec_version, t.slot, t.node_id, t.status.state) == (svc.spec, 4, 1, "", P)
    assert (t.created_at, t.not_before, t.name) == (NOW, 0.0, "st_web.1")


def test_restart_sets_not_before() -> None:
    store = store_of(task("a", 1, state=F, exit_code=2))
    actions = reconcile(service({"replicas": 1}), store, NODES)
    events = apply(store, actions)
    [new] = active(store)
    assert new.not_before == NOW + 5
    assert "exit code 2" in events[0].message and "restarting in 5s" in events[0].message
    assert events[0].attributes["successor"] == new.id


def test_ignores_other_services_tasks() -> None:
    store = store_of(task("x", 1, sid="other"))
    assert summarize(reconcile(service({"replicas": 1}), store, NODES)) == ["create 1 v1 a0"]


def test_scale_down_then_up_converges_once_the_agent_stops_old_tasks() -> None:
    store = store_of(task("a", 1), task("b", 2), task("c", 3))
    ids = Ids()
    for replicas in (1, 3):
        for _ in range(5):
            apply(store, reconcile(service({"replicas": replicas}), store, NODES, ids=ids))
            simulate_agents(store, NODES, NOW)
    assert [t.slot for t in active(store)] == [1, 2, 3]
    assert all(t.status.state == R for t in active(store))
