"""Each filter on one node: None when the node passes, else its reason; constraint parsing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shoal.model.cluster import Availability, NodeState
from shoal.scheduler import filters
from shoal.scheduler.snapshot import NodeView, Requirements, parse_constraint, read_requirements
from tests.scheduler.factories import GIB, MIB, node, spec


def view(**kw: object) -> NodeView:
    return NodeView(node("n1", **kw), 0)  # type: ignore[arg-type]


def req(**kw: object) -> Requirements:
    return read_requirements("id-web", spec(**kw))  # type: ignore[arg-type]


LABELS = {"zone": "eu", "disk": "SSD"}

CASES = [
    # (filter, requirements, node, expected reason or None)
    (filters.ready, req(), view(), None),
    (filters.ready, req(), view(state=NodeState.DOWN), "node not ready (down)"),
    (filters.ready, req(), view(state=NodeState.UNKNOWN), "node not ready (unknown)"),
    (filters.availability, req(), view(), None),
    (filters.availability, req(), view(availability=Availability.DRAIN), "node drained"),
    (filters.availability, req(), view(availability=Availability.PAUSE), "node paused"),
    (filters.resources, req(cpus=4, memory="8g"), view(cpus=4, memory=8 * GIB), None),
    (
        filters.resources,
        req(memory="512m"),
        view(memory=256 * MIB),
        "insufficient memory (needs 512MiB, free 256MiB)",
    ),
    (
        filters.resources,
        req(cpus=2.5, memory="1g"),
        view(cpus=2, memory=512 * MIB),
        "insufficient cpu (needs 2.5 CPUs, free 2) and memory (needs 1GiB, free 512MiB)",
    ),
    (
        filters.resources,
        req(mem_reservation="1g"),
        view(memory=GIB - 1),
        "insufficient memory (needs 1GiB, free 1024MiB)",
    ),
    (filters.constraints, req(constraints=["node.labels.zone==eu"]), view(labels=LABELS), None),
    (filters.constraints, req(constraints=["node.labels.zone == EU"]), view(labels=LABELS), None),
    (filters.constraints, req(constraints=["node.labels.disk==ssd"]), view(labels=LABELS), None),
    (
        filters.constraints,
        req(constraints=["node.labels.zone==us"]),
        view(labels=LABELS),
        "constraint node.labels.zone==us not met",
    ),
    (filters.constraints, req(constraints=["node.labels.zone!=us"]), view(labels=LABELS), None),
    (filters.constraints, req(constraints=["node.labels.rack!=r1"]), view(), None),
    (
        filters.constraints,
        req(constraints=["node.labels.rack==r1"]),
        view(),
        "constraint node.labels.rack==r1 not met",
    ),
    (filters.constraints, req(constraints=["node.id==n1", "node.hostname==host-n1"]), view(), None),
    (filters.constraints, req(constraints=["node.role==worker"]), view(), None),
    (
        filters.constraints,
        req(constraints=["node.role==manager"]),
        view(),
        "constraint node.role==manager not met",
    ),
    (filters.constraints, req(constraints=["node.platform.os==linux"]), view(), None),
    (filters.constraints, req(constraints=["node.platform.arch==amd64"]), view(), None),
    (filters.constraints, req(constraints=["node.platform.arch==x86_64"]), view(), None),
    (
        filters.constraints,
        req(constraints=["engine.labels.infra==physical"]),
        view(engine_labels={"infra": "physical"}),
        None,
    ),
    (
        filters.constraints,
        req(constraints=["zone=eu"]),
        view(),
        "invalid constraint 'zone=eu': expected KEY==VALUE or KEY!=VALUE",
    ),
    (filters.platform, req(platform="linux/amd64"), view(arch="x86_64"), None),
    (filters.platform, req(platform="linux/arm64/v8"), view(arch="aarch64"), None),
    (filters.platform, req(platform="linux"), view(arch="aarch64"), None),
    (
        filters.platform,
        req(platform="linux/arm64"),
        view(arch="x86_64"),
        "platform linux/arm64 not supported (node is linux/amd64)",
    ),
    (
        filters.platform,
        req(platform="windows/amd64"),
        view(),
        "platform windows/amd64 not supported (node is linux/amd64)",
    ),
    (filters.runtime, req(), view(runtimes=()), None),
    (filters.runtime, req(runtime="runc"), view(runtimes=("runc", "process")), None),
    (filters.runtime, req(runtime="kata"), view(), "runtime kata not available"),
    (filters.max_replicas, req(max_per_node=2), view(), None),
    (filters.preset_node, replace(req(), preset_node="n1"), view(), None),
    (filters.preset_node, replace(req(), preset_node="n2"), view(), "not the task's node n2"),
    (filters.preferences, req(spread=["node.labels.zone"]), view(), None),
    (
        filters.preferences,
        req(spread=["zone"]),
        view(),
        "invalid placement preference spread='zone': unknown attribute 'zone' (use node.id, "
        "node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.KEY, "
        "engine.labels.KEY)",
    ),
]


@pytest.mark.parametrize(("f", "requirements", "node_view", "expected"), CASES)
def test_filter(
    f: filters.Filter, requirements: Requirements, node_view: NodeView, expected: str | None
) -> None:
    assert f(requirements, node_view) == expected


def test_max_replicas_counts_tasks_of_this_service_only() -> None:
    r = req(max_per_node=2)
    v = view()
    v.reserve("id-other", 0, 0)
    v.reserve("id-web", 0, 0)
    assert filters.max_replicas(r, v) is None
    v.reserve("id-web", 0, 0)
    assert filters.max_replicas(r, v) == "max replicas per node (2) reached"


def test_resources_subtract_reservations_on_the_node() -> None:
    r = req(cpus=1, memory="1g")
    v = view(cpus=2, memory=2 * GIB)
    v.reserve("id-db", 1_000_000_000, GIB)
    assert filters.resources(r, v) is None
    v.reserve("id-db", 1, 0)
    assert filters.resources(r, v) == "insufficient cpu (needs 1 CPUs, free 0.999)"


def test_check_lists_every_failing_filter() -> None:
    r = req(constraints=["node.labels.zone==eu"], memory="1g")
    v = view(memory=0, state=NodeState.DOWN)
    assert set(filters.check(r, v)) == {"ready", "resources", "constraints"}


@pytest.mark.parametrize(
    ("text", "key", "equal", "value"),
    [
        ("node.labels.zone==eu", "node.labels.zone", True, "eu"),
        ("node.labels.zone != eu", "node.labels.zone", False, "eu"),
        ("  node.hostname==web-1.example.com ", "node.hostname", True, "web-1.example.com"),
        ("engine.labels.infra==physical", "engine.labels.infra", True, "physical"),
        (
            "node.labels.com.example.tier==front end",
            "node.labels.com.example.tier",
            True,
            "front end",
        ),
    ],
)
def test_parse_constraint(text: str, key: str, equal: bool, value: str) -> None:
    c = parse_constraint(text)
    assert (c.key, c.equal, c.value) == (key, equal, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zone=eu", "expected KEY==VALUE or KEY!=VALUE"),
        ("node.labels.zone", "expected KEY==VALUE or KEY!=VALUE"),
        ("node.labels.zone>=3", "expected KEY==VALUE or KEY!=VALUE"),
        ("==eu", "invalid key ''"),
        ("node.labels.zone==", "invalid value ''"),
        ("node.labels.zone==a<b", "invalid value 'a<b'"),
        ("node.labels.==x", "unknown attribute 'node.labels.'"),
        ("node.name==x", "unknown attribute 'node.name'"),
        ("1node.id==x", "invalid key '1node.id'"),
    ],
)
def test_malformed_constraint_is_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_constraint(text)
    r = req(constraints=["node.role==worker", text])
    assert r.constraint_error is not None and message in r.constraint_error
    assert filters.constraints(r, view()) == r.constraint_error


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0B"), (512, "512B"), (1536, "1.5KiB"), (256 * MIB, "256MiB"), (3 * GIB // 2, "1.5GiB")],
)
def test_fmt_bytes(n: int, text: str) -> None:
    assert filters.fmt_bytes(n) == text
