"""Node liveness: a silent node goes DOWN."""

from __future__ import annotations

import pytest

from shoal.controllers.actions import Emit, UpdateNode
from shoal.controllers.nodes import reconcile_node
from shoal.model.cluster import NodeState
from tests.controllers.builders import NOW, node


@pytest.mark.parametrize(
    ("name", "state", "heartbeat", "down"),
    [
        ("fresh heartbeat", NodeState.READY, NOW - 1, False),
        ("exactly at the timeout", NodeState.READY, NOW - 15, False),
        ("silent too long", NodeState.READY, NOW - 16, True),
        ("never heard from", NodeState.UNKNOWN, 0.0, True),
        ("already down", NodeState.DOWN, NOW - 100, False),
    ],
)
def test_reconcile_node(name: str, state: NodeState, heartbeat: float, down: bool) -> None:
    n = node("n1", state=state, heartbeat=heartbeat)
    actions = reconcile_node(n, NOW, heartbeat_timeout=15)
    if not down:
        assert actions == []
        return
    update, emit = actions
    assert isinstance(update, UpdateNode) and isinstance(emit, Emit)
    assert update.node.status.state == NodeState.DOWN
    assert update.node.status.message.startswith("no heartbeat for ")
    assert (emit.event.type, emit.event.action, emit.event.id) == ("node", "down", "n1")
    assert reconcile_node(update.node, NOW, heartbeat_timeout=15) == []
