"""Placement constraints matched against nodes."""

from __future__ import annotations

import pytest

from shoal.controllers.constraints import unmet_constraint
from shoal.model.cluster import Node, NodeDescription, NodeSpec

NODE = Node(
    id="abc",
    spec=NodeSpec(labels={"zone": "a"}, role="manager"),
    description=NodeDescription(hostname="h1", arch="x86_64", engine_labels={"infra": "virtual"}),
)


@pytest.mark.parametrize(
    ("constraint", "reason"),
    [
        ("node.id==abc", None),
        ("node.hostname == h1", None),
        ("node.hostname!=h1", "not met (node.hostname is 'h1')"),
        ("node.role==manager", None),
        ("node.labels.zone==a", None),
        ("node.labels.zone!=b", None),
        ("node.labels.missing==x", "node.labels.missing is unset"),
        ("node.labels.missing!=x", None),
        ("engine.labels.infra==virtual", None),
        ("node.platform.os==linux", None),
        ("node.platform.arch==amd64", None),
        ("node.platform.arch==arm64", "not met"),
        ("node.color==red", "unknown attribute 'node.color'"),
        ("zone", "expected KEY==VALUE or KEY!=VALUE"),
    ],
)
def test_constraint(constraint: str, reason: str | None) -> None:
    got = unmet_constraint(NODE, [constraint])
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_all_constraints_must_hold() -> None:
    assert unmet_constraint(NODE, ["node.role==manager", "node.labels.zone==b"]) is not None
    assert unmet_constraint(NODE, []) is None
