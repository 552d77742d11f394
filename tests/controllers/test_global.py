"""Global services and jobs: one task per eligible node, one completion per slot for jobs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

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
    set_state,
    simulate_agents,
    store_of,
    summarize,
    task,
)

R, P, F, C, S = (
    TaskState.RUNNING,
    TaskState.PENDING,
    TaskState.FAILED,
    TaskState.COMPLETE,
    TaskState.SHUTDOWN,
)
GLOBAL = {"mode": "global"}
THREE = [
    node("n1"),
    node("n2", availability=Availability.DRAIN),
    node("n3", state=NodeState.DOWN, heartbeat=NOW - 60),
]


@dataclass
class Case:
    name: str
    svc: Service
    tasks: list[Task]
    nodes: list[Node]
    expected: list[str]


CASES = [
    Case(
        "fresh: one task per ready active node",
        service(GLOBAL),
        [],
        [node("n1"), node("n2"), node("n3")],
        ["create n1 v1 a0", "create n2 v1 a0", "create n3 v1 a0"],
    ),
    Case(
        "three nodes, one drained, one down past the grace period",
        service(GLOBAL),
        [task("a", None, node="n1"), task("b", None, node="n2"), task("c", None, node="n3")],
        THREE,
        [
            "update c desired=shutdown state=orphaned",
            "emit orphaned c",
            "update b desired=shutdown state=running",
            "emit stop b",
        ],
    ),
    Case(
        "a node that is not ready yet gets nothing; a paused one keeps its task",
        service(GLOBAL),
        [task("b", None, node="n2")],
        [node("n1", state=NodeState.UNKNOWN), node("n2", availability=Availability.PAUSE)],
        [],
    ),
    Case(
        "constraints choose the nodes",
        service({"mode": "global", "placement": {"constraints": ["node.labels.disk==ssd"]}}),
        [task("b", None, node="n2")],
        [node("n1", labels={"disk": "ssd"}), node("n2", labels={"disk": "hdd"})],
        ["update b desired=shutdown state=running", "emit stop b", "create n1 v1 a0"],
    ),
    Case(
        "a failed global task restarts on its node",
        service(GLOBAL),
        [task("a", None, node="n1", state=F, exit_code=1)],
        [node("n1")],
        ["create n1 v1 a1", "update a desired=shutdown state=failed", "emit restart a"],
    ),
    Case(
        "job: a completed slot is done, a failed one restarts (on-failure default)",
        service({"mode": "replicated-job", "replicas": 3}),
        [task("a", 1, state=C, exit_code=0), task("b", 2, state=F, exit_code=3), task("c", 3)],
        [node("n1")],
        [
            "update a desired=complete state=complete",
            "emit complete a",
            "create 2 v1 a1",
            "update b desired=shutdown state=failed",
            "emit restart b",
        ],
    ),
    Case(
        "job: completed tasks are never restarted, even with condition any",
        service({"mode": "replicated-job", "replicas": 1, "restart_policy": {"condition": "any"}}),
        [task("a", 1, state=C, exit_code=0)],
        [node("n1")],
        ["update a desired=complete state=complete", "emit complete a"],
    ),
    Case(
        "job: condition none leaves a failed slot failed",
        service({"mode": "replicated-job", "replicas": 1, "restart_policy": {"condition": "none"}}),
        [task("a", 1, state=F, exit_code=1)],
        [node("n1")],
        ["update a desired=failed state=failed", "emit failed a"],
    ),
    Case(
        "job: a new version reruns every slot at once",
        service({"mode": "replicated-job", "replicas": 2}, version=2),
        [task("a", 1, state=C, desired=C), task("b", 2)],
        [node("n1")],
        [
            "update a desired=shutdown state=complete",
            "update b desired=shutdown state=running",
            "create 1 v2 a0",
        ],
    ),
    Case(
        "global job: one completion per node",
        service({"mode": "global-job"}),
        [task("a", None, node="n1", state=C, desired=C)],
        [node("n1"), node("n2")],
        ["create n2 v1 a0"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_global_and_jobs(case: Case) -> None:
    actions = assert_idempotent(case.svc, store_of(*case.tasks), case.nodes)
    assert summarize(actions) == case.expected


def test_global_tasks_have_their_node_preset() -> None:
    store: dict[str, Task] = {}
    apply(store, reconcile(service(GLOBAL), store, [node("n1")]))
    [t] = store.values()
    assert (t.node_id, t.slot, t.status.state, t.name) == ("n1", None, P, "st_web.n1")


def test_replicated_job_runs_until_replicas_completions() -> None:
    svc = service({"mode": "replicated-job", "replicas": 3})
    nodes = [node("n1")]
    store: dict[str, Task] = {}
    now = NOW
    failures = 0
    ids = Ids()
    for _ in range(20):
        apply(store, reconcile(svc, store, nodes, now, ids))
        running = [t for t in active(store) if t.status.state == R]
        assert len(active(store)) <= 3
        for t in running:
            # The first task of slot 2 fails once; everything else exits 0.
            if t.slot == 2 and failures == 0:
                failures += 1
                set_state(store, t.id, F, now, exit_code=1)
            else:
                set_state(store, t.id, C, now, exit_code=0)
        simulate_agents(store, nodes, now)
        now += 10
    complete = [t for t in store.values() if t.status.state == C]
    assert sorted(t.slot or 0 for t in complete) == [1, 2, 3]
    assert not active(store)
    assert reconcile(svc, store, nodes, now) == []
