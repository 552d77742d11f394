"""The service reconciler: make a service's tasks match its desired state.

- replicated: slots 1..replicas each hold exactly one task; higher slots are stopped.
- global: one task per node that is READY, ACTIVE and meets the placement constraints, created
  with `node_id` set (the scheduler only confirms it); drained or ineligible nodes lose theirs.
- replicated-job / global-job: the same slots, but a slot that completed is done for good, so
  the job runs until every slot has completed once (`replicas` completions, one per node).

A pass, in order: orphan tasks on lost nodes; stop what is no longer wanted; per slot, apply
the restart policy and drop duplicates; roll stale spec versions; fill empty slots. A slot whose
old task is still stopping (scale down then up, stop-first update) waits for it, unless its node
is draining or down, where waiting could take forever.
"""

from __future__ import annotations

from collections.abc import Iterable

from shoal.controllers.actions import Action
from shoal.controllers.constraints import unmet_constraint
from shoal.controllers.nodes import DEFAULT_ORPHAN_GRACE, orphan_lost_tasks
from shoal.controllers.plan import NewId, Plan, is_active, is_held, unstarted
from shoal.controllers.removal import remove_service
from shoal.controllers.restarts import (
    DEFAULT_MAX_DELAY,
    DEFAULT_RESET_AFTER,
    JOB_MODES,
    effective_policy,
)
from shoal.controllers.rollout import update_policy
from shoal.controllers.slots import (
    Key,
    SlotContext,
    drop_duplicates,
    restart_or_settle,
    roll,
)
from shoal.model.cluster import Availability, Node, NodeState, Service, ServiceMode, Task

GLOBAL_MODES = frozenset({ServiceMode.GLOBAL, ServiceMode.GLOBAL_JOB})


def reconcile_service(
    service: Service,
    tasks: Iterable[Task],
    nodes: Iterable[Node],
    now: float,
    new_id: NewId,
    *,
    grace: float = DEFAULT_ORPHAN_GRACE,
    reset_after: float = DEFAULT_RESET_AFTER,
    max_delay: float = DEFAULT_MAX_DELAY,
) -> list[Action]:
    """Actions that move `service`'s tasks towards its desired state.

    `grace`: how long a DOWN node may stay silent before its tasks are orphaned; `reset_after`:
    a task that ran this long resets the restart back-off; `max_delay`: the back-off cap.
    """
    node_map = {n.id: n for n in nodes}
    plan = Plan((t for t in tasks if t.service_id == service.id), now)
    orphan_lost_tasks(plan, service, node_map, grace)
    if service.removing:
        remove_service(plan, service)
        return plan.actions
    ctx = _context(service, node_map, new_id, reset_after=reset_after, max_delay=max_delay)
    if not ctx.by_node:
        _evacuate_drained(plan, ctx, node_map)
    _stop_unwanted(plan, ctx, node_map)
    for key, group in ctx.groups(plan).items():
        if key is not None and key in ctx.wanted:  # a paused node gets no new task
            restart_or_settle(plan, ctx, key, group)
    for key, group in ctx.groups(plan).items():
        if key is not None and key in ctx.keep:
            drop_duplicates(plan, ctx, group)
    roll(plan, ctx)
    _fill(plan, ctx, node_map)
    return plan.actions


def _context(
    service: Service,
    nodes: dict[str, Node],
    new_id: NewId,
    *,
    reset_after: float,
    max_delay: float,
) -> SlotContext:
    mode = service.mode
    by_node = mode in GLOBAL_MODES
    wanted: tuple[Key, ...]
    keep: frozenset[Key]
    if by_node:
        keep = frozenset(n.id for n in nodes.values() if _ineligible(service, n) is None)
        wanted = tuple(
            sorted(
                n.id
                for n in nodes.values()
                if n.id in keep
                and n.status.state == NodeState.READY
                and n.spec.availability == Availability.ACTIVE
            )
        )
    else:
        wanted = tuple(range(1, service.replicas + 1))
        keep = frozenset(wanted)
    job = mode in JOB_MODES
    return SlotContext(
        service=service,
        new_id=new_id,
        by_node=by_node,
        job=job,
        restart=effective_policy(service.spec, mode),
        update=update_policy(service, job=job),
        wanted=wanted,
        keep=keep,
        reset_after=reset_after,
        max_delay=max_delay,
    )


def _ineligible(service: Service, node: Node) -> str | None:
    """Why a global service's task may not stay on this node (None: it may)."""
    if node.spec.availability == Availability.DRAIN:
        return f"node {node.description.hostname} is drained"
    placement = service.spec.deploy.placement if service.spec.deploy else None
    constraints = placement.constraints if placement and placement.constraints else []
    return unmet_constraint(node, constraints)


def _evacuate_drained(plan: Plan, ctx: SlotContext, nodes: dict[str, Node]) -> None:
    """Stop replicated tasks on draining nodes; their slots are refilled elsewhere at once."""
    for task in plan.of_service(ctx.service.id):
        node = nodes.get(task.node_id)
        if is_active(task) and node and node.spec.availability == Availability.DRAIN:
            plan.stop(task)
            message = f"task {task.name} stopped: node {node.description.hostname} is drained"
            plan.emit("task", "evacuate", task.id, message, service=ctx.service)


def _stop_unwanted(plan: Plan, ctx: SlotContext, nodes: dict[str, Node]) -> None:
    """Stop tasks outside the wanted slots: scaled away, or on a node no longer eligible."""
    for task in plan.of_service(ctx.service.id):
        key = ctx.key_of(task)
        if not is_held(task) or (key is not None and key in ctx.keep):
            continue
        running = is_active(task)
        plan.stop(task)
        node = nodes.get(task.node_id)
        if ctx.by_node and running and node is not None:
            reason = _ineligible(ctx.service, node) or "node not eligible"
            plan.emit(
                "task", "stop", task.id, f"task {task.name} stopped: {reason}", service=ctx.service
            )


def _blocks(task: Task, nodes: dict[str, Node]) -> bool:
    """Is a task that was told to stop still worth waiting for before refilling its slot?"""
    if task.status.state.terminal or is_held(task) or unstarted(task) or not task.node_id:
        return False
    node = nodes.get(task.node_id)
    return (
        node is not None
        and node.spec.availability != Availability.DRAIN
        and node.status.state != NodeState.DOWN
    )


def _fill(plan: Plan, ctx: SlotContext, nodes: dict[str, Node]) -> None:
    groups = ctx.groups(plan)
    for key in ctx.wanted:
        group = groups.get(key, [])
        if any(is_held(t) or _blocks(t, nodes) for t in group):
            continue
        ctx.spawn(plan, key)
