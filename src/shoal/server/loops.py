"""The thin loop around the pure controllers and the scheduler: the only place they touch the store.

Each pass reads a snapshot from the cache, asks the reconcile functions and the scheduler for
actions, and writes them as compare-and-swap transactions (one per service, so a service's
actions land together or not at all). A conflict is not an error: the next pass sees the new
state and decides again. Passes run when the cache changes and at least every TICK seconds
(time-driven work: restart delays, heartbeats).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Iterable

from shoal.controllers import actions as A
from shoal.controllers.dependencies import unmet
from shoal.controllers.gc import collect_garbage
from shoal.controllers.nodes import reconcile_node
from shoal.controllers.services import reconcile_service
from shoal.model.cluster import Node, Service, Task, TaskState, TaskStatus
from shoal.model.codec import encode
from shoal.model.errors import ShoalError
from shoal.scheduler import Decision, Snapshot, schedule
from shoal.server import netstate, objects, updates, volumestate
from shoal.server.context import ServerContext
from shoal.store import Compare, DeleteOp, Op, PutOp

log = logging.getLogger(__name__)

TICK = 0.5
FULL_EVERY = 1.0
SCHEDULE_CHUNK = 500
GC_EVERY = 10.0
KEEP_EVENTS = 10_000
KEEP_REVISIONS = 50_000


class Writer:
    """Turns actions into guarded store operations, from one snapshot of the cache."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        # Every compare uses the revision read here, with the snapshot the actions came from:
        # a later one would let a stale decision overwrite a newer write.
        self.tasks: dict[str, tuple[str, int]] = {}  # task id → (key, mod_revision)
        self.services: dict[str, tuple[Service, int]] = {}  # service id → (service, rev)
        self.nodes: dict[str, int] = {}  # node id → mod_revision
        self.addresser = netstate.Addresser(ctx)
        for key, (obj, rev) in ctx.cache.items.items():
            if isinstance(obj, Task):
                self.tasks[obj.id] = (key, rev)
            elif isinstance(obj, Service):
                self.services[obj.id] = (obj, rev)
            elif isinstance(obj, Node):
                self.nodes[obj.id] = rev

    def ops(self, actions: Iterable[A.Action]) -> tuple[list[Compare], list[Op]]:
        compares: list[Compare] = []
        ops: list[Op] = []
        for action in actions:
            if isinstance(action, A.CreateTask):
                key = objects.task_key(action.task)
                compares.append(Compare.missing(key))
                ops.append(PutOp(key, encode(self.addresser.attach(action.task))))
            elif isinstance(action, A.UpdateTask):
                key = objects.task_key(action.task)
                known = self.tasks.get(action.task.id)
                compares.append(Compare.mod_revision(key, "==", known[1] if known else 0))
                ops.append(PutOp(key, encode(action.task)))
            elif isinstance(action, A.DeleteTask):
                known = self.tasks.get(action.task_id)
                if known is not None:
                    compares.append(Compare.mod_revision(known[0], "==", known[1]))
                    ops.append(DeleteOp(known[0]))
            elif isinstance(action, A.DeleteService):
                known_svc = self.services.get(action.service_id)
                if known_svc is not None:
                    svc, rev = known_svc
                    key = objects.service_key(svc.stack, svc.name)
                    compares.append(Compare.mod_revision(key, "==", rev))
                    ops.append(DeleteOp(key))
                    ops.append(DeleteOp(objects.version_key(svc.stack, svc.name, 0)[:-8], True))
            elif isinstance(action, A.UpdateNode):
                key = objects.node_key(action.node.id)
                compares.append(Compare.mod_revision(key, "==", self.nodes.get(action.node.id, 0)))
                ops.append(PutOp(key, encode(action.node)))
            elif isinstance(action, A.Emit):
                ops.append(objects.event_op(action.event))
        return compares, ops

    async def apply(self, actions: list[A.Action]) -> bool:
        if not actions:
            return True
        compares, ops = self.ops(actions)
        if not ops:
            return True
        result = await self.ctx.store.txn(compares, ops, [])
        if result.succeeded:
            # The next pass must see this write, or it would create the same task twice.
            await self.ctx.cache.wait_for(result.revision)
        return result.succeeded


async def reconcile_pass(ctx: ServerContext, only: set[str] | None = None) -> int:
    """One pass of the controllers (over `only` these "stack/service" names, or all);
    returns how many transactions were written."""
    now = ctx.clock()
    cache = ctx.cache
    writer = Writer(ctx)
    nodes = cache.nodes()
    by_service: dict[str, list[Task]] = {}
    all_tasks = cache.tasks()
    for task in all_tasks:
        by_service.setdefault(task.service_id, []).append(task)
    batches: list[list[A.Action]] = []
    if only is None:
        batches += [reconcile_node(node, now) for node in nodes]
    services = cache.services()
    for svc in services:
        if only is not None and f"{svc.stack}/{svc.name}" not in only:
            continue
        # reconcile_service handles `removing` too, after orphaning tasks on lost nodes (so a
        # dead node cannot hold a removal up forever).
        batches.append(reconcile_service(svc, by_service.get(svc.id, []), nodes, now, ctx.new_id))
    if only is None:
        batches.append(_stop_strays(all_tasks, {s.id for s in services}, now))
    written = 0
    for batch in batches:
        if batch and await writer.apply(batch):
            written += 1
        await asyncio.sleep(0)  # let API requests in between services
    written += await _finish_removed_stacks(ctx, services)
    if only is None:
        written += await volumestate.sweep(ctx)  # volumes marked by `shoal rm --volumes`
    updating = [s for s in cache.services() if only is None or f"{s.stack}/{s.name}" in only]
    written += await updates.supervise_updates(ctx, updating, by_service)
    written += await netstate.sync(ctx, cache.services(), only)
    return written


def _stop_strays(tasks: list[Task], live: set[str], now: float) -> list[A.Action]:
    """Tasks whose service record is gone (replaced under the same name): stop them."""
    out: list[A.Action] = []
    for task in tasks:
        if task.service_id in live or task.desired_state in (TaskState.SHUTDOWN, TaskState.REMOVE):
            continue
        if task.status.state.terminal:
            continue
        update: dict[str, object] = {"desired_state": TaskState.REMOVE, "updated_at": now}
        if not task.node_id:  # never handed to an agent: nobody else will mark it stopped
            update["status"] = TaskStatus(
                state=TaskState.SHUTDOWN, timestamp=now, message="service removed"
            )
        out.append(A.UpdateTask(task.model_copy(update=update)))
    return out


async def _finish_removed_stacks(ctx: ServerContext, services: list[Service]) -> int:
    """Delete the record of a stack being removed once its last service is gone."""
    written = 0
    remaining = {s.stack for s in services}
    for stack in ctx.cache.stacks():
        if stack.removing and stack.name not in remaining:
            key = objects.stack_key(stack.name)
            rev = ctx.cache.revision_of(stack)
            result = await ctx.store.txn(
                [Compare.mod_revision(key, "==", rev)], [DeleteOp(key)], []
            )
            if result.succeeded:
                await ctx.cache.wait_for(result.revision)
                written += 1
    return written


def _gated(ctx: ServerContext, pending: list[Task], tasks: list[Task]) -> dict[str, dict[str, str]]:
    """Pending tasks whose service's `depends_on` is not met yet: task id → pending reasons."""
    services = {s.id: s for s in ctx.cache.services()}
    by_stack: dict[str, dict[str, Service]] = {}
    for svc in services.values():
        by_stack.setdefault(svc.stack, {})[svc.name] = svc
    by_service: dict[str, list[Task]] = {}
    for task in tasks:
        by_service.setdefault(task.service_id, []).append(task)
    verdicts: dict[str, str | None] = {}
    out: dict[str, dict[str, str]] = {}
    for task in pending:
        owner = services.get(task.service_id)
        if owner is None or not owner.spec.depends_on:
            continue
        if owner.id not in verdicts:
            verdicts[owner.id] = unmet(owner, by_stack.get(owner.stack, {}), by_service)
        reason = verdicts[owner.id]
        if reason is not None:
            out[task.id] = {"depends_on": reason, "summary": reason}
    return out


async def schedule_pass(ctx: ServerContext) -> int:
    """Place pending tasks; record why the others stay pending."""
    now = ctx.clock()
    nodes: list[Node] = ctx.cache.nodes()
    tasks = ctx.cache.tasks()
    pending = [
        t
        for t in tasks
        if t.status.state in (TaskState.NEW, TaskState.PENDING)
        and t.desired_state == TaskState.RUNNING
    ]
    if not pending:
        return 0
    waiting = _gated(ctx, pending, tasks)
    pending = [t for t in pending if t.id not in waiting]
    occupying = [t for t in tasks if not t.status.state.terminal and t.node_id]
    homes = volumestate.homes(ctx)
    snapshot = Snapshot(nodes=nodes, tasks=occupying, pending=pending, now=now, volumes=homes)
    decisions = await volumestate.claim(ctx, schedule(snapshot), pending, homes)
    decisions += [Decision(task_id, None, reasons) for task_id, reasons in waiting.items()]
    by_id = {t.id: t for t in pending} | {t.id: t for t in tasks if t.id in waiting}
    updates: list[A.Action] = []
    for decision in decisions:
        task = by_id[decision.task_id]
        if decision.node_id:
            status = TaskStatus(state=TaskState.ASSIGNED, timestamp=now, message="assigned")
            updates.append(
                A.UpdateTask(
                    task.model_copy(
                        update={
                            "node_id": decision.node_id,
                            "status": status,
                            "pending_reasons": {},
                            "updated_at": now,
                        }
                    )
                )
            )
        elif decision.reasons != task.pending_reasons or task.status.state != TaskState.PENDING:
            status = task.status.model_copy(
                update={
                    "state": TaskState.PENDING,
                    "timestamp": now,
                    "message": decision.reasons.get("summary", "waiting for a node"),
                }
            )
            updates.append(
                A.UpdateTask(
                    task.model_copy(update={"pending_reasons": decision.reasons, "status": status})
                )
            )
    writer = Writer(ctx)
    written = 0
    for start in range(0, len(updates), SCHEDULE_CHUNK):
        chunk = updates[start : start + SCHEDULE_CHUNK]
        if await writer.apply(chunk):
            written += len(chunk)
            continue
        # Someone changed one of them meanwhile: commit one by one so the rest still land.
        for update in chunk:
            written += int(await writer.apply([update]))
    if len(updates) > SCHEDULE_CHUNK:
        _trim_heap()
    return written


def _trim_heap() -> None:
    """Hand freed heap back to the OS after a big pass (glibc keeps it otherwise, and RSS
    would stay at the high-water mark of the largest pass ever made)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


async def maintenance(ctx: ServerContext) -> None:
    """Drop old history: task records (gc), events beyond KEEP_EVENTS, store revisions."""
    writer = Writer(ctx)
    for action in collect_garbage(ctx.cache.services(), ctx.cache.tasks()):
        await writer.apply([action])
    kvs, _ = await ctx.store.range(objects.EVENTS)
    if len(kvs) > KEEP_EVENTS:
        doomed: list[Op] = [DeleteOp(kv.key) for kv in kvs[: len(kvs) - KEEP_EVENTS]]
        await ctx.store.txn([], doomed, [])
    current = await ctx.store.current_revision()
    if current > KEEP_REVISIONS:
        await ctx.store.compact(current - KEEP_REVISIONS)
    ctx.cache.gc_specs()
    _trim_heap()


async def run_loops(ctx: ServerContext) -> None:
    """Level-triggered: services whose objects changed are reconciled at once; every service
    (and every node) at least every FULL_EVERY seconds, for what time alone changes."""
    generation = -1
    last_gc = last_full = 0.0
    loop = asyncio.get_running_loop()
    while True:
        generation = await ctx.cache.wait_changed(generation, TICK)
        try:
            dirty, nodes_changed = ctx.cache.take_dirty()
            if nodes_changed or loop.time() - last_full >= FULL_EVERY:
                last_full = loop.time()
                await reconcile_pass(ctx)
            elif dirty:
                await reconcile_pass(ctx, dirty)
            await schedule_pass(ctx)
            if loop.time() - last_gc > GC_EVERY:
                last_gc = loop.time()
                await maintenance(ctx)
        except ShoalError as exc:
            log.warning("control loop pass failed: %s", exc)
        except Exception:  # a bug in one pass must not stop the control plane
            log.exception("control loop pass crashed")
            await asyncio.sleep(TICK)
