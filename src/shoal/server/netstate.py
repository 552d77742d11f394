"""The server loop's networking duties: addresses for new tasks, endpoints records, and the
removal of networks whose stack is gone. Decisions are the pure functions of
`shoal.network.deployment` and `shoal.controllers.endpoints`; this module reads the cache and
writes the store."""

from __future__ import annotations

from shoal.controllers.endpoints import changed, endpoints_for
from shoal.model.cluster import Service, Task, TaskState, TaskStatus
from shoal.model.codec import encode
from shoal.model.errors import ShoalError
from shoal.model.network import Endpoints
from shoal.network.deployment import attach_task
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.store import Compare, DeleteOp, Op, PutOp


class Addresser:
    """Gives new tasks their addresses, from one snapshot of the cache (the Writer's)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._used: set[str] | None = None

    def used(self) -> set[str]:
        if self._used is None:
            used = {vip for svc in self.ctx.cache.services() for vip in svc.vips.values()}
            for task in self.ctx.cache.tasks():
                if not task.status.state.terminal:
                    used.update(a.address for a in task.networks)
            self._used = used
        return self._used

    def attach(self, task: Task) -> Task:
        """The task with its addresses, or failed with the reason when none can be given."""
        stack = self.ctx.cache.get(objects.stack_key(task.stack))
        declared = stack[0].networks if stack is not None else {}  # type: ignore[attr-defined]
        if not task.spec.networks or task.spec.network_mode:
            return task
        networks = {n.name: n for n in self.ctx.cache.networks()}
        try:
            attached = attach_task(task, declared, networks, self.used())
        except ShoalError as exc:
            status = TaskStatus(
                state=TaskState.FAILED,
                timestamp=self.ctx.clock(),
                message="no network address",
                error=str(exc),
            )
            return task.model_copy(update={"status": status})
        return task.model_copy(update={"networks": attached})


def endpoint_ops(ctx: ServerContext, services: list[Service], only: set[str] | None) -> list[Op]:
    """Puts for the endpoints records that changed, deletes for those of gone services."""
    now = ctx.clock()
    ops: list[Op] = []
    by_service: dict[str, list[Task]] = {}
    for task in ctx.cache.tasks():
        by_service.setdefault(task.service_id, []).append(task)
    live = set()
    for svc in services:
        name = f"{svc.stack}/{svc.name}"
        live.add(name)
        if only is not None and name not in only:
            continue
        key = objects.endpoints_key(svc.stack, svc.name)
        entry = ctx.cache.get(key)
        old = entry[0] if entry is not None and isinstance(entry[0], Endpoints) else None
        new = endpoints_for(svc, by_service.get(svc.id, []), now)
        if changed(old, new):
            ops.append(PutOp(key, encode(new)))
    for record in ctx.cache.endpoints():
        if f"{record.stack}/{record.service}" not in live:
            ops.append(DeleteOp(objects.endpoints_key(record.stack, record.service)))
    return ops


def unused_network_ops(ctx: ServerContext) -> tuple[list[Compare], list[Op]]:
    """Networks whose stack is gone and that no task uses any more."""
    stacks = {s.name for s in ctx.cache.stacks()}
    in_use = {a.network for t in ctx.cache.tasks() for a in t.networks}
    compares: list[Compare] = []
    ops: list[Op] = []
    for network in ctx.cache.networks():
        if network.stack not in stacks and network.name not in in_use:
            key = objects.network_key(network.name)
            compares.append(Compare.mod_revision(key, "==", ctx.cache.revision_of(network)))
            ops.append(DeleteOp(key))
    return compares, ops


async def sync(ctx: ServerContext, services: list[Service], only: set[str] | None) -> int:
    """Write what changed; returns the number of transactions."""
    written = 0
    ops = endpoint_ops(ctx, services, only)
    if ops:
        result = await ctx.store.txn([], ops, [])
        await ctx.cache.wait_for(result.revision)
        written += 1
    if only is None:
        compares, deletes = unused_network_ops(ctx)
        if deletes:
            result = await ctx.store.txn(compares, deletes, [])
            if result.succeeded:
                await ctx.cache.wait_for(result.revision)
                written += 1
    return written
