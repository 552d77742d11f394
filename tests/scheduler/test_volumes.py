"""Placement with named volumes: a task goes where its volume lives; a volume without a node
gets the node of the first task placed with it, and the others follow it in the same pass."""

from __future__ import annotations

from dataclasses import replace

from shoal.model.cluster import Availability, NodeState, Task
from shoal.scheduler import Snapshot, schedule
from shoal.scheduler.filters import volumes
from shoal.scheduler.snapshot import NodeView, VolumeHome, read_requirements
from tests.scheduler.factories import node, replicas, spec, task

DATA = [{"type": "volume", "source": "data", "target": "/data"}]
BOTH = [*DATA, {"type": "volume", "source": "logs", "target": "/logs"}]


def homes(**where: str) -> dict[str, dict[str, VolumeHome]]:
    """Volumes of stack `s`: key → home (`""` = no node yet)."""
    return {"s": {key: VolumeHome(f"s_{key}", node_id) for key, node_id in where.items()}}


def placed(snapshot: Snapshot) -> dict[str, str | None]:
    return {d.task_id: d.node_id for d in schedule(snapshot)}


def test_filter_reason_names_the_volume_and_its_node() -> None:
    req = read_requirements("id-web", spec(volumes=DATA))
    here, there = NodeView(node("n1"), 0), NodeView(node("n2"), 1)
    assert volumes(req, here) is None  # no volume node: anywhere
    bound = replace(req, volume_node="n2", volume_name="s_data")
    assert volumes(bound, here) == "volume s_data lives on node n2"
    assert volumes(bound, there) is None
    broken = replace(req, volume_error="volume s_data is being removed")
    assert volumes(broken, there) == "volume s_data is being removed"


def test_tasks_go_where_the_volume_lives_even_when_it_is_the_busiest_node() -> None:
    nodes = [node("n1", cpus=8), node("n2", cpus=1), node("n3", cpus=8)]
    pending = replicas(spec(volumes=DATA, cpus=0.25), 3)
    snapshot = Snapshot(nodes, pending, pending, 0.0, homes(data="n2"))
    assert set(placed(snapshot).values()) == {"n2"}


def test_a_new_volume_gets_the_first_placement_and_every_user_follows() -> None:
    nodes = [node(f"n{i}") for i in range(1, 5)]
    web = replicas(spec(volumes=DATA), 4)
    # Another service of the stack mounting the same volume, placed later in the same pass.
    later = replicas(spec(volumes=DATA), 2, service="worker")
    worker = [t.model_copy(update={"created_at": 1.0}) for t in later]
    lone = replicas(spec(), 4, service="lone")  # no volume: spread as usual
    pending = [*web, *worker, *lone]
    decided = placed(Snapshot(nodes, pending, pending, 0.0, homes(data="")))
    with_volume = {decided[t.id] for t in [*web, *worker]}
    assert len(with_volume) == 1 and None not in with_volume
    assert len({decided[t.id] for t in lone}) == 4  # spread over the four nodes


def test_volume_node_unavailable_says_why() -> None:
    nodes = [node("n1"), node("n2", availability=Availability.DRAIN)]
    pending = replicas(spec(volumes=DATA), 2)
    [first, _] = schedule(Snapshot(nodes, pending, pending, 0.0, homes(data="n2")))
    assert first.node_id is None
    assert first.reasons["volumes"] == "volume s_data lives on node n2"
    assert first.reasons["availability"] == "1 node drained"
    assert first.reasons["summary"].startswith("no suitable node: volume s_data lives on node n2")


def test_volume_node_down_still_keeps_the_task_off_other_nodes() -> None:
    nodes = [node("n1"), node("n2", state=NodeState.DOWN)]
    pending = replicas(spec(volumes=DATA), 1)
    [decision] = schedule(Snapshot(nodes, pending, pending, 0.0, homes(data="n2")))
    assert decision.node_id is None
    assert decision.reasons["ready"] == "1 node not ready"


def test_volumes_on_different_nodes_cannot_be_mounted_together() -> None:
    nodes = [node("n1"), node("n2")]
    pending = replicas(spec(volumes=BOTH), 1)
    [decision] = schedule(Snapshot(nodes, pending, pending, 0.0, homes(data="n1", logs="n2")))
    assert decision.node_id is None
    assert decision.reasons["volumes"] == (
        "its volumes live on different nodes (s_data on node n1, s_logs on node n2)"
    )


def test_one_homed_and_one_new_volume_go_to_the_homed_node() -> None:
    nodes = [node("n1", cpus=16), node("n2", cpus=1)]
    pending = replicas(spec(volumes=BOTH), 2)
    decided = placed(Snapshot(nodes, pending, pending, 0.0, homes(data="n2", logs="")))
    assert set(decided.values()) == {"n2"}


def test_a_volume_being_removed_blocks_placement() -> None:
    pending = replicas(spec(volumes=DATA), 1)
    gone = {"s": {"data": VolumeHome("s_data", "n1", removing=True)}}
    [decision] = schedule(Snapshot([node("n1")], pending, pending, 0.0, gone))
    assert decision.node_id is None
    assert decision.reasons["volumes"] == "volume s_data is being removed"


def test_global_tasks_with_a_new_volume_all_but_one_wait() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    svc = spec(volumes=DATA, mode="global")
    pending: list[Task] = [
        task(f"g.{n.id}", svc, slot=None, node_id=n.id, service="agent") for n in nodes
    ]
    decisions = schedule(Snapshot(nodes, pending, pending, 0.0, homes(data="")))
    homed = [d for d in decisions if d.node_id]
    assert len(homed) == 1
    for d in decisions:
        if d.node_id is None:
            reason = f"volume s_data lives on node {homed[0].node_id}"
            assert d.reasons["volumes"].endswith(reason)


def test_tasks_of_another_stack_or_without_records_are_unconstrained() -> None:
    nodes = [node("n1", cpus=1), node("n2", cpus=1)]
    pending = replicas(spec(volumes=DATA, cpus=1), 2)
    other = {"t": {"data": VolumeHome("t_data", "n1")}}  # same key, another stack
    decided = placed(Snapshot(nodes, pending, pending, 0.0, other))
    # One CPU reserved each on one-CPU nodes: one task per node, so no volume pinned them.
    assert sorted(v or "" for v in decided.values()) == ["n1", "n2"]
