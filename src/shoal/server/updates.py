"""The loop's update duty, and the API's manual rollback: apply `controllers.updates` verdicts.

A verdict is one compare-and-swap write of the service (its new UpdateStatus, or for a rollback
its previous version's spec as a new version) plus an event that tells the story.
"""

from __future__ import annotations

from shoal.controllers.updates import Verdict, rolled_back, supervise
from shoal.model.cluster import Event, Service, Task, UpdateState, UpdateStatus
from shoal.model.codec import decode, encode
from shoal.model.compose_service import ServiceSpec
from shoal.model.errors import Conflict, NotFound
from shoal.server import objects
from shoal.server.context import ServerContext
from shoal.store import Compare, Op, PutOp

_ACTIONS = {
    UpdateState.PAUSED: "update-paused",
    UpdateState.COMPLETED: "update-completed",
    UpdateState.ROLLBACK_STARTED: "rollback",
    UpdateState.ROLLBACK_PAUSED: "rollback-paused",
    UpdateState.ROLLBACK_COMPLETED: "rollback-completed",
}


async def previous_spec(ctx: ServerContext, service: Service) -> ServiceSpec:
    if service.previous_version is None:
        raise Conflict(
            f"service {service.stack}/{service.name} has no previous version to roll back to",
            hint="`shoal service history` lists its versions",
        )
    key = objects.version_key(service.stack, service.name, service.previous_version)
    kv = await ctx.store.get(key)
    if kv is None:
        raise NotFound(f"version {service.previous_version} of {service.name} is not kept")
    return decode(ServiceSpec, kv.value)


def _event(service: Service, status: UpdateStatus, now: float) -> Op:
    message = status.message or f"{status.state.value}: version {status.to_version}"
    return objects.event_op(
        Event(
            time=now,
            type="service",
            action=_ACTIONS.get(status.state, status.state.value),
            id=service.id,
            stack=service.stack,
            service=service.name,
            message=message,
            attributes={"from": str(status.from_version), "to": str(status.to_version)},
        )
    )


async def rollback_ops(
    ctx: ServerContext, service: Service, status: UpdateStatus, now: float
) -> tuple[Service, list[Op]]:
    """The writes that put `service` back on its previous spec, as a new version."""
    spec = await previous_spec(ctx, service)
    new = rolled_back(service, spec, status, now)
    ops: list[Op] = [
        PutOp(objects.service_key(service.stack, service.name), encode(new)),
        PutOp(objects.version_key(service.stack, service.name, new.version), encode(spec)),
        _event(new, new.update_status or status, now),
    ]
    return new, ops


async def _apply(ctx: ServerContext, service: Service, verdict: Verdict, now: float) -> bool:
    key = objects.service_key(service.stack, service.name)
    compares = [Compare.mod_revision(key, "==", ctx.cache.revision_of(service))]
    if verdict.rollback:
        try:
            _, ops = await rollback_ops(ctx, service, verdict.status, now)
        except (Conflict, NotFound) as exc:
            paused = verdict.status.model_copy(
                update={"state": UpdateState.PAUSED, "message": f"{verdict.status.message}; {exc}"}
            )
            return await _apply(ctx, service, Verdict(paused), now)
    else:
        new = service.model_copy(update={"update_status": verdict.status, "updated_at": now})
        ops = [PutOp(key, encode(new)), _event(new, verdict.status, now)]
    result = await ctx.store.txn(compares, ops, [])
    if result.succeeded:
        await ctx.cache.wait_for(result.revision)
    return result.succeeded


async def supervise_updates(
    ctx: ServerContext, services: list[Service], by_service: dict[str, list[Task]]
) -> int:
    """One pass over services with an update in flight; returns the writes made."""
    now = ctx.clock()
    written = 0
    for service in services:
        verdict = supervise(service, by_service.get(service.id, []), now)
        if verdict is not None and await _apply(ctx, service, verdict, now):
            written += 1
    return written
