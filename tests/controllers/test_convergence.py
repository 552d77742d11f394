"""Property: whatever happened before, the service reconciler converges.

Random histories of task state changes, scale changes, spec updates, nodes going down and up,
and controller passes cut short by a crash (only a prefix of the actions applied) are followed
by rounds of reconcile → apply → agents act. Within a bounded number of rounds the service must
have exactly `replicas` active tasks, one per slot 1..replicas, and be stable; with a node
to run on, all of them run the latest spec version.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.model.cluster import Node, NodeState, Task, TaskState
from tests.controllers.builders import (
    NOW,
    Ids,
    active,
    apply,
    node,
    reconcile,
    service,
    set_state,
    simulate_agents,
)

OUTCOMES = [
    TaskState.RUNNING,
    TaskState.FAILED,
    TaskState.COMPLETE,
    TaskState.SHUTDOWN,
    TaskState.REJECTED,
]

ops = st.one_of(
    st.tuples(st.just("state"), st.integers(0, 20), st.sampled_from(OUTCOMES)),
    st.tuples(st.just("scale"), st.integers(0, 5)),
    st.tuples(st.just("update"), st.sampled_from(["stop-first", "start-first"]), st.integers(0, 2)),
    st.tuples(st.just("down"), st.integers(0, 2)),
    st.tuples(st.just("up"), st.integers(0, 2)),
    st.tuples(st.just("reconcile"), st.integers(0, 20)),
    st.tuples(st.just("agents")),
)


def _service(replicas: int, version: int, order: str, parallelism: int) -> Any:
    update = {"order": order, "parallelism": parallelism}
    return service({"replicas": replicas, "update_config": update}, version=version)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 4), st.lists(ops, max_size=25))
def test_converges_to_replicas_distinct_slots(initial: int, history: list[tuple[Any, ...]]) -> None:
    replicas, version, order, parallelism = initial, 1, "stop-first", 1
    nodes: list[Node] = [node(f"n{i}") for i in range(3)]
    store: dict[str, Task] = {}
    ids = Ids()
    now = NOW
    for op in history:
        now += 1
        svc = _service(replicas, version, order, parallelism)
        if op[0] == "state":
            live = [t for t in store.values() if not t.status.state.terminal]
            if live:
                target = live[op[1] % len(live)]
                if not target.node_id:
                    store[target.id] = target.model_copy(update={"node_id": "n0"})
                set_state(store, target.id, op[2], now, exit_code=1 if op[2] == "failed" else 0)
        elif op[0] == "scale":
            replicas = op[1]
        elif op[0] == "update":
            version, order, parallelism = version + 1, op[1], op[2]
        elif op[0] in ("down", "up"):
            i = op[1]
            state = NodeState.DOWN if op[0] == "down" else NodeState.READY
            nodes[i] = node(f"n{i}", state=state, heartbeat=now)
        elif op[0] == "reconcile":
            actions = reconcile(svc, store, nodes, now, ids)
            apply(store, actions[: op[1]])  # the controller crashed after op[1] writes
        else:
            simulate_agents(store, nodes, now)

    svc = _service(replicas, version, order, parallelism)
    for _ in range(40):
        apply(store, reconcile(svc, store, nodes, now, ids))
        simulate_agents(store, nodes, now)
        now += 60
    running = active(store)
    assert sorted(t.slot or 0 for t in running) == list(range(1, replicas + 1))
    if any(n.status.state == NodeState.READY for n in nodes):
        # A rollout waits for new tasks to run, so it only finishes where they can.
        assert all(t.spec_version == version for t in running)
    assert reconcile(svc, store, nodes, now, ids) == []
