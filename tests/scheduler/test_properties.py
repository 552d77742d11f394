"""Properties over random clusters: nothing over-committed, limits kept, decisions justified."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.model.cluster import Availability, Node, NodeState, Task, TaskState
from shoal.scheduler import Snapshot, schedule
from shoal.scheduler.filters import check
from shoal.scheduler.snapshot import NodeView, build_views, read_requirements
from tests.scheduler.factories import GIB, node, spec, task

CONSTRAINTS = [
    "node.labels.zone==a",
    "node.labels.zone!=b",
    "node.role==worker",
    "node.platform.arch==arm64",
    "engine.labels.infra==physical",
    "zone=a",  # malformed
]

nodes_st = st.lists(
    st.builds(
        dict,
        cpus=st.sampled_from([0, 1, 2, 4]),
        memory=st.sampled_from([0, GIB, 2 * GIB, 4 * GIB]),
        zone=st.sampled_from(["a", "b", "c", None]),
        state=st.sampled_from([NodeState.READY] * 4 + [NodeState.DOWN]),
        availability=st.sampled_from([Availability.ACTIVE] * 4 + list(Availability)),
        arch=st.sampled_from(["x86_64", "aarch64"]),
        physical=st.booleans(),
    ),
    min_size=0,
    max_size=8,
)

services_st = st.lists(
    st.builds(
        dict,
        replicas=st.integers(1, 12),
        cpus=st.sampled_from([None, 0.5, 1.0]),
        memory=st.sampled_from([None, "256m", "1g"]),
        constraints=st.lists(st.sampled_from(CONSTRAINTS), max_size=2),
        spread=st.sampled_from([None, ["node.labels.zone"], ["node.labels.zone", "node.id"]]),
        max_per_node=st.sampled_from([None, 1, 2]),
        platform=st.sampled_from([None, "linux/amd64", "linux/arm64"]),
    ),
    min_size=1,
    max_size=4,
)


def build_nodes(raw: list[dict[str, Any]]) -> list[Node]:
    return [
        node(
            f"n{i}",
            cpus=r["cpus"],
            memory=r["memory"],
            labels={"zone": r["zone"]} if r["zone"] else {},
            engine_labels={"infra": "physical" if r["physical"] else "virtual"},
            state=r["state"],
            availability=r["availability"],
            arch=r["arch"],
        )
        for i, r in enumerate(raw)
    ]


def build_pending(raw: list[dict[str, Any]]) -> list[Task]:
    pending = []
    for s, r in enumerate(raw):
        args = {k: v for k, v in r.items() if k != "replicas"}
        service_spec = spec(**args)
        pending += [
            task(f"s{s}.{i}", service_spec, service=f"s{s}", slot=i) for i in range(r["replicas"])
        ]
    return pending


def build_running(nodes: list[Node]) -> list[Task]:
    # One fitting task per ready node, of a service without limits: occupied, not over-committed.
    running_spec = spec(cpus=0.5, memory="512m")
    return [
        task(f"old.{n.id}", running_spec, service="old", node_id=n.id, state=TaskState.RUNNING)
        for n in nodes
        if n.description.resources.nano_cpus >= 10**9 and n.description.resources.memory_bytes
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes_raw=nodes_st, services_raw=services_st)
def test_schedule_properties(
    nodes_raw: list[dict[str, Any]], services_raw: list[dict[str, Any]]
) -> None:
    nodes = build_nodes(nodes_raw)
    pending = build_pending(services_raw)
    running = build_running(nodes)
    decisions = schedule(Snapshot(nodes, [*running, *pending], pending, now=0.0))
    assert [d.task_id for d in decisions] == [t.id for t in pending]

    by_id = {t.id: t for t in pending}
    placed = [
        by_id[d.task_id].model_copy(update={"node_id": d.node_id})
        for d in decisions
        if d.node_id is not None
    ]
    final = build_views(Snapshot(nodes, [*running, *placed], [], now=0.0))
    empty = {v.id: v for v in build_views(Snapshot(nodes, [], [], now=0.0))}
    for view in final:  # no node over-committed
        assert view.free_cpu >= 0 and view.free_mem >= 0, view.id
    per_node = Counter((t.service_id, t.node_id) for t in placed)
    for d in decisions:
        t = by_id[d.task_id]
        req = read_requirements(t.service_id, t.spec)
        if d.node_id is not None:
            # The node passes every filter that does not depend on what was placed.
            static = check(req, empty[d.node_id])
            assert not static, static
            if req.max_replicas:
                assert per_node[t.service_id, d.node_id] <= req.max_replicas
        else:
            assert d.reasons and d.reasons["summary"].startswith("no suitable node")
            # Greedy but not lazy: no node could take it even now.
            fits: list[NodeView] = [v for v in final if not check(req, v)]
            assert not fits, [v.id for v in fits]
