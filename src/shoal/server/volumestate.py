"""Named volume records on the server side: created by deploys, homed by the scheduler, removed
through their node's agent.

- `plan`: the records a deploy creates (and the existing ones it relies on, guarded by CAS).
- `homes` / `claim`: the scheduler reads where each volume lives; a volume without a node gets
  the node of the first task placed with it, written before that task's assignment.
- `remove` / `sweep`: the agent of the volume's node deletes its data, then the record goes.
  `shoal volume rm` removes at once; `shoal rm STACK --volumes` marks the stack's volumes
  `removing` and `sweep` (in the control loop) finishes them once no task uses them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from shoal.model.cluster import Event, Node, NodeState, Task
from shoal.model.codec import encode
from shoal.model.compose import ComposeProject
from shoal.model.errors import Conflict, NotFound, ShoalError, Unavailable
from shoal.model.volume import Volume, check_storage, plan_records, stack_volume_names, users
from shoal.scheduler.snapshot import Decision, VolumeHome
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.store import Compare, DeleteOp, Op, PutOp

log = logging.getLogger(__name__)

AGENT_TIMEOUT = 5.0
"""Seconds an agent gets to delete a volume's data."""


@dataclass
class VolumePlan:
    """The compares and writes a deploy adds for its volumes."""

    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def records(ctx: ServerContext) -> dict[str, tuple[Volume, int]]:
    """Every volume record by name, with its mod revision."""
    return {
        obj.name: (obj, rev)
        for key, (obj, rev) in ctx.cache.items.items()
        if key.startswith(objects.VOLUMES) and isinstance(obj, Volume)
    }


def declarations(ctx: ServerContext) -> dict[str, dict[str, Any]]:
    """Each stack's `volumes:` declarations."""
    return {s.name: s.volumes for s in ctx.cache.stacks()}


def event(now: float, action: str, volume: Volume, message: str = "") -> PutOp:
    return objects.event_op(
        Event(
            time=now,
            type="volume",
            action=action,
            id=volume.name,
            stack=volume.stack,
            message=message,
        )
    )


def plan(ctx: ServerContext, stack: str, project: ComposeProject) -> VolumePlan:
    """Check a deploy's storage settings and plan its volume records (Invalid / Conflict)."""
    doc = json.loads(project.model_dump_json(exclude_none=True))
    check_storage(doc)
    known = records(ctx)
    now = ctx.clock()
    create, used = plan_records(
        stack, doc.get("volumes") or {}, {n: v for n, (v, _) in known.items()}, now
    )
    out = VolumePlan()
    for volume in create:
        key = objects.volume_key(volume.name)
        out.compares.append(Compare.missing(key))
        out.ops += [PutOp(key, encode(volume)), event(now, "create", volume)]
        out.created.append(volume.name)
    for name in used:
        out.compares.append(Compare.mod_revision(objects.volume_key(name), "==", known[name][1]))
    return out


# --- placement -------------------------------------------------------------------------------


def homes(ctx: ServerContext) -> dict[str, dict[str, VolumeHome]]:
    """stack → volume key → where that volume lives, for the scheduler's snapshot."""
    known = records(ctx)
    out: dict[str, dict[str, VolumeHome]] = {}
    for stack in ctx.cache.stacks():
        for key, name in stack_volume_names(stack.name, stack.volumes).items():
            found = known.get(name)
            if found is not None:
                volume = found[0]
                home = VolumeHome(volume.name, volume.node_id, volume.removing)
                out.setdefault(stack.name, {})[key] = home
    return out


async def claim(
    ctx: ServerContext,
    decisions: list[Decision],
    pending: Sequence[Task],
    placed_homes: dict[str, dict[str, VolumeHome]],
) -> list[Decision]:
    """Write the node of every volume that had none and got one in this pass (CAS); the
    decisions of tasks whose volume was homed elsewhere meanwhile are dropped (next pass)."""
    by_id = {t.id: t for t in pending}
    wanted: dict[str, str] = {}  # volume → node
    using: dict[str, list[str]] = {}  # volume → task ids
    for decision in decisions:
        task = by_id.get(decision.task_id)
        if task is None or not decision.node_id or not task.spec.volumes:
            continue
        declared = placed_homes.get(task.stack, {})
        for key in (v.source for v in task.spec.volumes if v.type == "volume" and v.source):
            home = declared.get(key)
            if home is not None and not home.node_id:
                wanted.setdefault(home.name, decision.node_id)
                using.setdefault(home.name, []).append(task.id)
    if not wanted:
        return decisions
    known = records(ctx)
    dropped: set[str] = set()
    now = ctx.clock()
    for name, node in sorted(wanted.items()):
        found = known.get(name)
        ok = False
        if found is not None and not found[0].node_id:
            volume = found[0].model_copy(update={"node_id": node})
            key = objects.volume_key(name)
            result = await ctx.store.txn(
                [Compare.mod_revision(key, "==", found[1])],
                [PutOp(key, encode(volume)), event(now, "place", volume, f"lives on node {node}")],
                [],
            )
            ok = result.succeeded
            if ok:
                await ctx.cache.wait_for(result.revision)
        if not ok:
            dropped.update(using[name])
    return [d for d in decisions if d.task_id not in dropped]


# --- use and removal ---------------------------------------------------------------------------


def users_of(ctx: ServerContext, name: str) -> list[Task]:
    """The tasks (not finished) that mount volume `name`."""
    return users(name, ctx.cache.tasks(), declarations(ctx))


def declared_by(ctx: ServerContext, name: str) -> list[str]:
    """The stacks whose `volumes:` stand for volume `name`."""
    return sorted(
        stack
        for stack, decls in declarations(ctx).items()
        if name in stack_volume_names(stack, decls).values()
    )


def in_use_error(name: str, tasks: list[Task]) -> Conflict:
    listed = ", ".join(sorted(t.name for t in tasks)[:5]) + (" …" if len(tasks) > 5 else "")
    stacks = sorted({t.stack for t in tasks})
    return Conflict(
        f"volume {name} is in use by {len(tasks)} task(s): {listed}",
        hint=f"remove the stack using it first (`shoal rm {' '.join(stacks)}`), or wait for "
        "its tasks to finish",
    )


async def _delete_data(ctx: ServerContext, volume: Volume) -> None:
    """Ask the agent of the volume's node to delete its data (nothing to do if it never had a
    node, or the node left the cluster)."""
    if not volume.node_id:
        return
    entry = ctx.cache.get(objects.node_key(volume.node_id))
    if entry is None or not isinstance(entry[0], Node):
        return  # the node is gone, and its disk with it as far as the cluster knows
    node = entry[0]
    if node.status.state != NodeState.READY or not node.status.addr:
        raise Unavailable(
            f"node {node.id} of volume {volume.name} is {node.status.state.value}",
            hint="its data is deleted (and the record removed) once the node is back",
        )
    url = f"http://{node.status.addr}/v1/volumes/{volume.name}"
    try:
        async with httpx.AsyncClient(timeout=AGENT_TIMEOUT) as client:
            response = await client.delete(url, headers={"Authorization": f"Bearer {ctx.token}"})
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"agent of node {node.id} unreachable: {exc or type(exc).__name__}",
            hint="the volume stays marked for removal and goes once the agent answers",
        ) from None
    if response.status_code >= 400 and response.status_code != 404:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise Unavailable(
            f"node {node.id} could not delete volume {volume.name}: {message}",
            hint="fix the cause on the node; the removal is retried",
        )


async def _mark(ctx: ServerContext, volume: Volume, rev: int, removing: bool) -> tuple[Volume, int]:
    key = objects.volume_key(volume.name)
    updated = volume.model_copy(update={"removing": removing})
    revision = await ctx.commit(
        [Compare.mod_revision(key, "==", rev)],
        [PutOp(key, encode(updated))],
        f"volume {volume.name}",
    )
    return updated, revision


async def _forget(ctx: ServerContext, volume: Volume) -> None:
    key = objects.volume_key(volume.name)
    entry = ctx.cache.get(key)
    if entry is None:
        return
    await ctx.commit(
        [Compare.mod_revision(key, "==", entry[1])],
        [DeleteOp(key), event(ctx.clock(), "remove", volume)],
        f"volume {volume.name}",
    )


async def remove(ctx: ServerContext, name: str) -> Volume:
    """`shoal volume rm`: refused while a task uses it; the node deletes the data, then the
    record goes. If the node cannot be reached it stays `removing` (`sweep` finishes it)."""
    found = records(ctx).get(name)
    if found is None:
        raise NotFound(f"no volume {name!r}", hint="list volumes with `shoal volume ls`")
    volume, rev = found
    if not volume.removing:
        # Marked first: from now on no task is placed with it nor started by an agent.
        volume, rev = await _mark(ctx, volume, rev, True)
        busy = users_of(ctx, name)
        if busy:
            await _mark(ctx, volume, ctx.cache.revision_of(volume), False)
            raise in_use_error(name, busy)
    elif busy := users_of(ctx, name):
        raise in_use_error(name, busy)
    await _delete_data(ctx, volume)
    await _forget(ctx, volume)
    return volume


def mark_stack_volumes(ctx: ServerContext, stack: str) -> tuple[list[Compare], list[Op]]:
    """The writes that mark every volume `stack` owns for removal (`shoal rm --volumes`)."""
    compares: list[Compare] = []
    ops: list[Op] = []
    for volume, rev in records(ctx).values():
        if volume.stack == stack and not volume.removing:
            key = objects.volume_key(volume.name)
            compares.append(Compare.mod_revision(key, "==", rev))
            ops.append(PutOp(key, encode(volume.model_copy(update={"removing": True}))))
    return compares, ops


async def sweep(ctx: ServerContext) -> int:
    """Finish the removal of volumes marked `removing` that no task uses any more."""
    done = 0
    for volume, _ in records(ctx).values():
        if not volume.removing or users_of(ctx, volume.name):
            continue
        try:
            await _delete_data(ctx, volume)
            await _forget(ctx, volume)
            done += 1
        except ShoalError as exc:
            log.info("volume %s: removal waits: %s", volume.name, exc)
    return done


def prunable(ctx: ServerContext) -> list[Volume]:
    """Volumes no stack declares and no task uses (what `shoal rm STACK` left behind)."""
    declared = {
        name
        for stack, decls in declarations(ctx).items()
        for name in stack_volume_names(stack, decls).values()
    }
    return [
        v
        for v, _ in sorted(records(ctx).values(), key=lambda e: e[0].name)
        if v.name not in declared and not users_of(ctx, v.name)
    ]


def view(ctx: ServerContext, volume: Volume, tasks: list[Task] | None = None) -> dict[str, Any]:
    """A record as the API shows it: plus its node's hostname, users and declaring stacks."""
    tasks = users_of(ctx, volume.name) if tasks is None else tasks
    entry = ctx.cache.get(objects.node_key(volume.node_id)) if volume.node_id else None
    hostname = entry[0].description.hostname if entry and isinstance(entry[0], Node) else ""
    return {
        **json.loads(volume.model_dump_json()),
        "node": hostname,
        "state": "removing" if volume.removing else ("in use" if tasks else "unused"),
        "tasks": sorted(t.id for t in tasks),
        "declared_by": declared_by(ctx, volume.name),
    }
