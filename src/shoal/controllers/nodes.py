"""Node liveness: a silent node goes DOWN; tasks on a node gone for good become ORPHANED.

Only the heartbeat handler sets a node READY again. A node is *lost* once it has been DOWN for
longer than a grace period after its last heartbeat (or its record is gone): its tasks are
marked ORPHANED, as Swarm does, so their slots can be filled elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from shoal.controllers.actions import Action, Emit, UpdateNode
from shoal.controllers.plan import STOP_STATES, Plan
from shoal.model.cluster import Event, Node, NodeState, Service, TaskState
from shoal.model.units import format_duration

DEFAULT_HEARTBEAT_TIMEOUT = 15.0
DEFAULT_ORPHAN_GRACE = 10.0


def _since(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(max(seconds, 0.0))))


def reconcile_node(
    node: Node, now: float, heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
) -> list[Action]:
    """Mark the node DOWN when its last heartbeat is older than `heartbeat_timeout`."""
    silent = now - node.status.heartbeat_at
    if node.status.state == NodeState.DOWN or silent <= heartbeat_timeout:
        return []
    message = f"no heartbeat for {_since(silent)}"
    status = node.status.model_copy(update={"state": NodeState.DOWN, "message": message})
    event = Event(
        time=now,
        type="node",
        action="down",
        id=node.id,
        message=f"node {node.description.hostname} is down: {message}",
    )
    return [UpdateNode(node.model_copy(update={"status": status})), Emit(event)]


def lost_reason(node: Node | None, now: float, grace: float) -> str | None:
    """Why tasks on this node are given up on; None while the node may still come back."""
    if node is None:
        return "its node is gone"
    silent = now - node.status.heartbeat_at
    if node.status.state == NodeState.DOWN and silent >= grace:
        return f"node {node.description.hostname} is down (no heartbeat for {_since(silent)})"
    return None


def orphan_lost_tasks(
    plan: Plan, service: Service, nodes: Mapping[str, Node], grace: float = DEFAULT_ORPHAN_GRACE
) -> None:
    """Mark the service's unfinished tasks on lost nodes ORPHANED and no longer wanted."""
    for task in plan.of_service(service.id):
        if task.status.state.terminal or not task.node_id:
            continue
        reason = lost_reason(nodes.get(task.node_id), plan.now, grace)
        if reason is None:
            continue
        desired = task.desired_state if task.desired_state in STOP_STATES else TaskState.SHUTDOWN
        plan.set_status(task, TaskState.ORPHANED, reason, desired_state=desired)
        plan.emit(
            "task", "orphaned", task.id, f"task {task.name} orphaned: {reason}", service=service
        )
