"""`schedule` end to end on small clusters: spread, preferences, limits, reasons, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shoal.model.cluster import Availability, NodeState, TaskState
from shoal.scheduler import Decision, schedule
from tests.scheduler.factories import GIB, MIB, node, replicas, snap, spec, task


def placed(decisions: list[Decision]) -> Counter[str]:
    return Counter(d.node_id for d in decisions if d.node_id is not None)


@pytest.mark.parametrize(("n_tasks", "n_nodes"), [(1, 5), (3, 10), (7, 7), (10, 3), (100, 8)])
def test_spread_over_equal_nodes(n_tasks: int, n_nodes: int) -> None:
    nodes = [node(f"n{i}") for i in range(n_nodes)]
    counts = placed(schedule(snap(nodes, replicas(spec(), n_tasks))))
    per_node = [counts.get(f"n{i}", 0) for i in range(n_nodes)]
    assert sum(per_node) == n_tasks
    assert max(per_node) - min(per_node) <= 1


def test_spread_wins_over_free_resources() -> None:
    nodes = [node("big", cpus=64, memory=256 * GIB), node("small", cpus=1, memory=GIB)]
    counts = placed(schedule(snap(nodes, replicas(spec(cpus=0.1), 4))))
    assert counts == {"big": 2, "small": 2}


def test_existing_tasks_of_the_service_count_for_spread() -> None:
    nodes = [node("a"), node("b"), node("c")]
    s = spec()
    running = [
        task(f"old{i}", s, slot=10 + i, node_id="a", state=TaskState.RUNNING) for i in (1, 2)
    ]
    decisions = schedule(snap(nodes, replicas(s, 4), running))
    assert placed(decisions) == {"b": 2, "c": 2}


def test_other_services_break_ties_and_least_allocated_prefers_emptier_nodes() -> None:
    nodes = [node("a"), node("b", memory=16 * GIB)]
    other = task("db.1", spec(), service="db", node_id="a", state=TaskState.RUNNING)
    assert schedule(snap(nodes, replicas(spec(), 1), [other]))[0].node_id == "b"
    nodes = [node("a", memory=4 * GIB), node("b", memory=16 * GIB)]
    assert schedule(snap(nodes, replicas(spec(memory="1g"), 1)))[0].node_id == "b"


ZONES = {"a1": "a", "b1": "b", "b2": "b", "b3": "b", "c1": "c", "c2": "c"}


def test_preference_spread_balances_label_values() -> None:
    nodes = [node(i, labels={"zone": z}) for i, z in ZONES.items()]
    decisions = schedule(snap(nodes, replicas(spec(spread=["node.labels.zone"]), 6)))
    counts = placed(decisions)
    per_zone = Counter({z: 0 for z in "abc"})
    for node_id, n in counts.items():
        per_zone[ZONES[node_id]] += n
    assert per_zone == {"a": 2, "b": 2, "c": 2}
    assert counts["a1"] == 2  # the lone node of zone a takes both: preferences outrank spread


def test_preference_nodes_missing_the_label_form_their_own_group() -> None:
    nodes = [node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"})]
    nodes += [node(f"x{i}") for i in range(4)]
    counts = placed(schedule(snap(nodes, replicas(spec(spread=["node.labels.zone"]), 6))))
    assert counts["a1"] == 2 and counts["b1"] == 2
    assert sum(counts[f"x{i}"] for i in range(4)) == 2


def test_nested_preferences_spread_within_each_value() -> None:
    nodes = [
        node(f"{z}-{r}-{i}", labels={"zone": z, "rack": r})
        for z, racks in (("a", "12"), ("b", "1234"))
        for r in racks
        for i in range(2)
    ]
    s = spec(spread=["node.labels.zone", "node.labels.rack"])
    counts = placed(schedule(snap(nodes, replicas(s, 8))))
    by_zone = Counter({"a": 0, "b": 0})
    by_rack: Counter[tuple[str, str]] = Counter()
    for node_id, n in counts.items():
        z, r, _ = node_id.split("-")
        by_zone[z] += n
        by_rack[z, r] += n
    assert by_zone == {"a": 4, "b": 4}
    assert by_rack == {("a", "1"): 2, ("a", "2"): 2, ("b", "1"): 1, ("b", "2"): 1,
                       ("b", "3"): 1, ("b", "4"): 1}  # fmt: skip


def test_preference_counts_running_tasks() -> None:
    nodes = [node(i, labels={"zone": z}) for i, z in ZONES.items()]
    s = spec(spread=["node.labels.zone"])
    running = [
        task(f"old{i}", s, slot=9 + i, node_id="b1", state=TaskState.RUNNING) for i in (1, 2)
    ]
    counts = placed(schedule(snap(nodes, replicas(s, 4), running)))
    assert counts["a1"] == 2 and counts["c1"] + counts["c2"] == 2


def test_max_replicas_per_node() -> None:
    nodes = [node(f"n{i}") for i in range(3)]
    decisions = schedule(snap(nodes, replicas(spec(max_per_node=2), 7)))
    assert placed(decisions) == {"n0": 2, "n1": 2, "n2": 2}
    [stuck] = [d for d in decisions if d.node_id is None]
    assert stuck.reasons["max_replicas"] == "max replicas per node (2) reached on 3 nodes"


@pytest.mark.parametrize(
    ("kw", "reason_key", "reason"),
    [
        ({"state": NodeState.DOWN}, "ready", "1 node not ready"),
        ({"state": NodeState.UNKNOWN}, "ready", "1 node not ready"),
        ({"availability": Availability.DRAIN}, "availability", "1 node drained"),
        ({"availability": Availability.PAUSE}, "availability", "1 node paused"),
    ],
)
def test_unschedulable_nodes_get_no_new_tasks(kw: dict[str, object], reason_key: str,
                                              reason: str) -> None:  # fmt: skip
    nodes = [node("bad", **kw), node("good")]  # type: ignore[arg-type]
    assert placed(schedule(snap(nodes, replicas(spec(), 3)))) == {"good": 3}
    decisions = schedule(snap([node("bad", **kw)], replicas(spec(), 1)))  # type: ignore[arg-type]
    assert decisions[0].node_id is None
    assert decisions[0].reasons[reason_key] == reason


def test_reasons_are_aggregated_like_swarm() -> None:
    nodes = [
        node("d1", state=NodeState.DOWN),
        node("d2", state=NodeState.DOWN),
        node("dr", availability=Availability.DRAIN),
        *(node(f"s{i}", memory=256 * MIB) for i in range(3)),
    ]
    s = spec(memory="512m", constraints=["node.labels.zone==eu"])
    [decision] = schedule(snap(nodes, replicas(s, 1)))
    assert decision.node_id is None
    assert decision.reasons == {
        "ready": "2 nodes not ready",
        "availability": "1 node drained",
        "resources": "insufficient memory on 3 nodes (needs 512MiB, most free 256MiB)",
        "constraints": "constraint node.labels.zone==eu matched 0 of 6 nodes",
        "summary": "no suitable node: 2 nodes not ready; 1 node drained; insufficient memory on"
        " 3 nodes (needs 512MiB, most free 256MiB); constraint node.labels.zone==eu matched 0"
        " of 6 nodes",
    }


def test_resources_exhausted_leaves_the_rest_pending() -> None:
    nodes = [node("n1", cpus=2, memory=GIB), node("n2", cpus=2, memory=GIB)]
    decisions = schedule(snap(nodes, replicas(spec(cpus=0.5, memory="512m"), 5)))
    assert placed(decisions) == {"n1": 2, "n2": 2}
    [stuck] = [d for d in decisions if d.node_id is None]
    assert stuck.reasons["resources"] == (
        "insufficient memory on 2 nodes (needs 512MiB, most free 0B)"
    )
    assert stuck.reasons["summary"].startswith("no suitable node: insufficient memory")


def test_reservations_of_running_tasks_and_of_earlier_decisions_count() -> None:
    nodes = [node("n1", cpus=2, memory=4 * GIB)]
    db = task("db.1", spec(cpus=1), service="db", node_id="n1", state=TaskState.RUNNING)
    web = replicas(spec(cpus=0.5), 1, service="web")
    api = replicas(spec(cpus=0.5), 2, service="api")
    decisions = schedule(snap(nodes, [*web, *api], [db]))
    assert [d.node_id for d in decisions].count("n1") == 2
    [stuck] = [d for d in decisions if d.node_id is None]
    assert stuck.task_id == "web.1"  # equally old: groups go by service id, "id-api" first
    assert stuck.reasons["resources"] == (
        "insufficient cpu on 1 node (needs 0.5 CPUs, most free 0)"
    )


def test_older_tasks_are_placed_first() -> None:
    nodes = [node("n1", cpus=1)]
    old = task("zz.1", spec(cpus=1), service="zz")
    new = task("aa.1", spec(cpus=1), service="aa").model_copy(update={"created_at": 5.0})
    decisions = schedule(snap(nodes, [new, old]))
    assert [d.node_id for d in decisions] == [None, "n1"]


def test_pending_tasks_listed_in_tasks_do_not_occupy_their_preset_node() -> None:
    s = spec(cpus=2, mode="global")
    t = task("g.n1", s, slot=None, node_id="n1")
    [decision] = schedule(snap([node("n1", cpus=2)], [t]))  # snap lists it in tasks too
    assert decision.node_id == "n1"


def test_global_tasks_go_only_to_their_preset_node() -> None:
    s = spec(mode="global")
    nodes = [node("n1"), node("n2", state=NodeState.DOWN), node("n3", memory=0)]
    pending = [task(f"g.{n}", s, slot=None, node_id=n) for n in ("n1", "n2", "n3", "gone")]
    pending.append(task("g.n3b", spec(mode="global", memory="1g"), slot=None, node_id="n3",
                        version=2))  # fmt: skip
    d = {x.task_id: x for x in schedule(snap(nodes, pending))}
    assert d["g.n1"].node_id == "n1"
    assert d["g.n3"].node_id == "n3"  # nothing reserved, so an empty node still fits
    assert d["g.n2"].node_id is None
    assert d["g.n2"].reasons["ready"] == "node n2: node not ready (down)"
    assert d["g.gone"].reasons["node"] == "node gone is not in the cluster"
    assert d["g.n3b"].reasons == {
        "resources": "node n3: insufficient memory (needs 1GiB, free 0B)",
        "summary": "no suitable node: node n3: insufficient memory (needs 1GiB, free 0B)",
    }


def test_platform_and_runtime_pick_matching_nodes() -> None:
    nodes = [node("x86"), node("arm", arch="aarch64"), node("kata", runtimes=("runc", "kata"))]
    arm = replicas(spec(platform="linux/arm64"), 2, service="arm")
    kata = replicas(spec(runtime="kata"), 2, service="kata")
    decisions = schedule(snap(nodes, [*arm, *kata]))
    assert [d.node_id for d in decisions] == ["arm", "arm", "kata", "kata"]


def test_malformed_constraint_leaves_tasks_pending_with_the_error() -> None:
    decisions = schedule(snap([node("n1")], replicas(spec(constraints=["zone=eu"]), 2)))
    for d in decisions:
        assert d.node_id is None
        assert d.reasons["constraints"].startswith("invalid constraint 'zone=eu'")


def test_empty_cluster() -> None:
    [d] = schedule(snap([], replicas(spec(), 1)))
    assert d.node_id is None and d.reasons["nodes"] == "no nodes in the cluster"


def test_restart_delay_is_respected() -> None:
    s = spec()
    pending = [task("w.1", s, not_before=10.0), task("w.2", s, slot=2, not_before=5.0)]
    d1, d2 = schedule(snap([node("n1")], pending, now=5.0))
    assert d1.node_id is None and "restart delay" in d1.reasons["delay"]
    assert d2.node_id == "n1"


def test_deterministic_and_independent_of_pending_order() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i:02d}", cpus=rng.choice([1, 2, 4]), labels={"zone": rng.choice("ab")})
             for i in range(20)]  # fmt: skip
    pending = [
        *replicas(spec(cpus=0.5, spread=["node.labels.zone"]), 15, service="web"),
        *replicas(spec(cpus=0.25, constraints=["node.labels.zone==a"]), 10, service="api"),
        *replicas(spec(memory="1g"), 12, service="db"),
    ]
    first = {d.task_id: d.node_id for d in schedule(snap(nodes, pending))}
    assert first == {d.task_id: d.node_id for d in schedule(snap(nodes, pending))}
    shuffled = pending[:]
    rng.shuffle(shuffled)
    decisions = schedule(snap(nodes, shuffled))
    assert [d.task_id for d in decisions] == [t.id for t in shuffled]  # output in input order
    assert {d.task_id: d.node_id for d in decisions} == first
