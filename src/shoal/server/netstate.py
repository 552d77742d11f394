"""The server loop's networking duties: addresses for new tasks, endpoints records, and the
removal of networks whose stack is gone. Decisions are the pure functions of
`shoal.network.deployment` and `shoal.controllers.endpoints`; this module reads the cache and
writes the store."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from shoal.controllers.endpoints import changed, endpoints_for
from shoal.model.cluster import Service, Task, TaskState, TaskStatus
from shoal.model.codec import encode
from shoal.model.errors import ShoalError
from shoal.model.network import Endpoints
from shoal.network.deployment import attach_task
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.store import Compare, DeleteOp, Op, PutOp


def host_routes(path: str = "/proc/net/route") -> list[str]:
    """The IPv4 subnets this machine routes to directly (not the default route), as CIDRs:
    new networks keep clear of them, as Docker's address pools do."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000":
            continue
        dest = socket.inet_ntoa(struct.pack("<I", int(fields[1], 16)))
        mask = bin(int(fields[7], 16)).count("1")
        out.append(f"{dest}/{mask}")
    return out


class Addresser:
    """Gives new tasks their addresses, from one snapshot of the cache (the Writer's)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._used: set[str] | None = None
        self._recent: set[str] = set()  # addresses of finished tasks still on record

    def used(self) -> set[str]:
        """Addresses taken: VIPs and live tasks' (`_recent` adds finished tasks' too)."""
        if self._used is None:
            used = {vip for svc in self.ctx.cache.services() for vip in svc.vips.values()}
            recent: set[str] = set()
            for task in self.ctx.cache.tasks():
                addresses = {a.address for a in task.networks}
                (recent if task.status.state.terminal else used).update(addresses)
            self._used, self._recent = used, recent
        return self._used

    def attach(self, task: Task) -> Task:
        """The task with its addresses, or failed with the reason when none can be given."""
        stack = self.ctx.cache.get(objects.stack_key(task.stack))
        declared = stack[0].networks if stack is not None else {}  # type: ignore[attr-defined]
        if not task.spec.networks or task.spec.network_mode:
            return task
        networks = {n.name: n for n in self.ctx.cache.networks()}
        used = self.used()
        try:
            try:
                # Prefer addresses no task record mentions: one freed a moment ago, handed out
                # again at once, meets stale ARP entries for the old container's MAC address.
                attached = attach_task(task, declared, networks, used | self._recent)
                used.update(a.address for a in attached)
            except ShoalError:
                attached = attach_task(task, declared, networks, used)
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
