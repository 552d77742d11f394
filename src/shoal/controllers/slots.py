"""Per-slot decisions of the service reconciler: restarts, duplicates and rolling updates.

A *slot* is a replica number (replicated services and jobs) or a node id (global ones). Each
step works on the plan's current view, so steps compose within one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.controllers.plan import (
    NewId,
    Plan,
    is_active,
    is_held,
    is_settled,
    is_undecided,
    most_advanced,
    new_task,
    newest,
    unstarted,
)
from shoal.controllers.restarts import EffectivePolicy, decide_restart, failed
from shoal.controllers.rollout import UpdatePolicy, select_updates
from shoal.model.cluster import Service, Task, TaskState

Key = int | str


@dataclass(frozen=True, slots=True)
class SlotContext:
    service: Service
    new_id: NewId
    by_node: bool  # global modes: the slot is the node id
    job: bool
    restart: EffectivePolicy
    update: UpdatePolicy
    wanted: tuple[Key, ...]  # slots that must hold a task, in order
    keep: frozenset[Key]  # slots whose tasks may stay (wanted + e.g. paused nodes)
    reset_after: float
    max_delay: float

    def key_of(self, task: Task) -> Key | None:
        if self.by_node:
            return task.node_id or None
        return task.slot

    def spawn(self, plan: Plan, key: Key, *, attempt: int = 0, not_before: float = 0.0) -> Task:
        task = new_task(
            self.service,
            task_id=self.new_id(),
            now=plan.now,
            slot=None if self.by_node else int(key),
            node_id=str(key) if self.by_node else "",
            attempt=attempt,
            not_before=not_before,
        )
        plan.create(task)
        return task

    def groups(self, plan: Plan) -> dict[Key | None, list[Task]]:
        out: dict[Key | None, list[Task]] = {}
        for task in plan.of_service(self.service.id):
            out.setdefault(self.key_of(task), []).append(task)
        return out


def restart_or_settle(plan: Plan, ctx: SlotContext, key: Key, group: list[Task]) -> None:
    """Apply the restart policy when the slot's newest task stopped while it should run."""
    held = [t for t in group if is_held(t)]
    if not held:
        return
    latest = newest(held)
    for task in held:
        if task is not latest and is_undecided(task):
            plan.stop(task)  # superseded by a newer task (e.g. a crash between two writes)
    if not is_undecided(latest):
        return
    decision = decide_restart(
        ctx.restart,
        latest,
        group,
        plan.now,
        job=ctx.job,
        reset_after=ctx.reset_after,
        max_delay=ctx.max_delay,
    )
    attrs = {"slot": str(key), "attempt": str(latest.attempt)}
    if decision.restart:
        # Create before stopping the old record: a crash in between leaves a newer task that
        # supersedes the old one, never an empty slot that forgets the attempt count.
        successor = ctx.spawn(
            plan, key, attempt=latest.attempt + 1, not_before=plan.now + decision.delay
        )
        plan.stop(latest)
        attrs |= {"successor": successor.id, "delay": f"{decision.delay:g}"}
        plan.emit("task", "restart", latest.id, decision.reason, service=ctx.service, **attrs)
        return
    plan.update(latest, desired_state=latest.status.state)
    action = "failed" if failed(latest) else "complete"
    plan.emit("task", action, latest.id, decision.reason, service=ctx.service, **attrs)


def drop_duplicates(plan: Plan, ctx: SlotContext, group: list[Task]) -> None:
    """Leave one task per slot: the most advanced of the current version (then the newest).

    During a start-first update the old task stays until its successor runs.
    """
    held = [t for t in group if is_held(t)]
    version = ctx.service.version
    current = [t for t in held if is_active(t) and t.spec_version >= version]
    old = [t for t in held if is_active(t) and t.spec_version < version]
    keep: list[Task] = []
    if current:
        keep.append(most_advanced(current))
        if old and not _serving(keep[0]):  # start-first: the old one serves until then
            keep.append(most_advanced(old))
    else:
        finished = [t for t in held if is_settled(t) and t.spec_version >= version]
        if finished:
            keep.append(newest(finished))
        if old:
            keep.append(most_advanced(old))
        elif not finished and held:
            keep.append(newest(held))
    kept = {t.id for t in keep}
    for task in held:
        if task.id not in kept:
            plan.stop(task)


def _serving(task: Task) -> bool:
    """Running and, if it has a health check, healthy: a replacement counts from then on."""
    return task.status.state == TaskState.RUNNING and task.status.health in ("", "healthy")


def roll(plan: Plan, ctx: SlotContext) -> None:
    """Replace tasks of an older spec version, as many at a time as the update policy allows;
    nothing while the update is paused."""
    update = ctx.service.update_status
    if update is not None and update.state.paused:
        return
    version = ctx.service.version
    groups = ctx.groups(plan)
    stale: list[Task] = []
    in_flight = 0
    for key in ctx.wanted:
        held = [t for t in groups.get(key, []) if is_held(t)]
        current = [t for t in held if t.spec_version >= version]
        if current:
            in_flight += any(is_active(t) and not _serving(t) for t in current)
        elif held:
            stale.append(most_advanced(held))
        else:
            in_flight += 1  # empty: its old task is stopping, or it is about to be filled
    started = [
        t.status.started_at
        for t in plan.of_service(ctx.service.id)
        if t.spec_version >= version and t.status.started_at is not None
    ]
    last_started = max(started, default=None)
    for task in select_updates(stale, in_flight, ctx.update, last_started, plan.now):
        slot = ctx.key_of(task)
        start_first = ctx.update.order == "start-first" and is_active(task) and not unstarted(task)
        if start_first and slot is not None:
            ctx.spawn(plan, slot)
        else:
            plan.stop(task)
