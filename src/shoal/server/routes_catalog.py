"""The service catalog: every service's VIPs, ports and task endpoints, with blocking queries.

Read from the cache's copy of the Endpoints objects (`/endpoints/<stack>/<service>`, written by
the endpoints controller). A blocking query (`?index=N&wait=30s`, as in Consul) answers when
what it reads changed after revision N, or when the wait elapses, with the current state; the
header `X-Shoal-Index` is the index to pass next time. It subscribes to the cache's event feed
before checking, so a change landing between the check and the wait still wakes it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from shoal.model.errors import Invalid, NotFound
from shoal.model.network import Endpoints, EndpointTask
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext
from shoal.store import Compacted

router = APIRouter(prefix="/v1", tags=["catalog"])

INDEX_HEADER = "X-Shoal-Index"
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
_WAIT = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")
_BLOCKING_DOC = """

**Blocking query**: `?index=N` (the `X-Shoal-Index` of an earlier answer) waits until this
changes after revision N, at most `?wait=` (`500ms`, `30s`, `5m`; default 5m, at most 10m),
then answers the current state."""


def parse_wait(wait: str | None) -> float:
    if wait is None:
        return DEFAULT_WAIT
    match = _WAIT.match(wait)
    if match is None:
        raise Invalid(f"wait={wait!r} is not a duration", hint="e.g. wait=500ms, 30s or 5m")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[match.group(2) or "s"]
    return min(float(match.group(1)) * scale, MAX_WAIT)


def summary(ep: Endpoints) -> dict[str, Any]:
    return {
        "stack": ep.stack,
        "service": ep.service,
        "mode": ep.mode.value,
        "vips": ep.vips,
        "ports": [p.model_dump(mode="json") for p in ep.ports],
        "ready": len(ep.ready),
        "total": len(ep.tasks),
    }


def endpoint(task: EndpointTask, ports: list[int]) -> dict[str, Any]:
    return {
        "task": task.id,
        "node": task.node_id,
        "slot": task.slot,
        "hostname": task.hostname,
        "address": next(iter(task.addresses.values()), ""),  # on the service's first network
        "addresses": task.addresses,
        "port": ports[0] if ports else None,
        "ports": ports,
        "ready": task.ready,
    }


def detail(ep: Endpoints, revision: int, ready_only: bool) -> dict[str, Any]:
    tasks = ep.ready if ready_only else ep.tasks
    body = summary(ep)
    del body["ready"], body["total"]
    return body | {
        "target_ports": ep.target_ports,
        "endpoints": [endpoint(t, ep.target_ports) for t in tasks],
        "revision": revision,
    }


def _selects(key: str, prefix: str) -> bool:
    """A prefix ending in "/" selects what is under it; any other names one key exactly."""
    return key.startswith(prefix) if prefix.endswith("/") else key == prefix


def _catalog(ctx: ServerContext, prefix: str) -> list[tuple[Endpoints, int]]:
    found = (
        (key, obj, rev)
        for key, (obj, rev) in ctx.cache.items.items()
        if _selects(key, prefix) and isinstance(obj, Endpoints)
    )
    return [(obj, rev) for _, obj, rev in sorted(found, key=lambda f: f[0])]


def _unknown(ctx: ServerContext, stack: str, service: str | None) -> NotFound:
    names = [f"{e.stack}/{e.service}" for e, _ in _catalog(ctx, objects.ENDPOINTS)]
    what = f"{stack}/{service}" if service else f"stack {stack}"
    if service and ctx.cache.get(objects.service_key(stack, service)) is not None:
        return NotFound(
            f"service {what} has no endpoints published yet",
            hint="its tasks are being placed: ask again in a moment, or see `shoal ps`",
        )
    listing = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
    return NotFound(
        f"no {what} in the catalog",
        hint=f"the catalog has: {listing}" if names else "the catalog is empty: deploy a stack",
    )


async def _changed_since(ctx: ServerContext, prefix: str, index: int) -> bool:
    """Whether anything under `prefix` changed after revision `index` (a removal included)."""
    now = _catalog(ctx, prefix)
    if any(rev > index for _, rev in now):
        return True
    try:
        then, _ = await ctx.store.range(prefix, revision=index)
    except Compacted:
        return True  # cannot tell: a spurious answer is allowed, a missed change is not
    then = [kv for kv in then if _selects(kv.key, prefix)]
    return len(then) != len(now)  # nothing was written after `index`, so only removals differ


async def _block(ctx: ServerContext, prefix: str, index: int | None, wait: str | None) -> None:
    """Return once something under `prefix` changed after `index`, or `wait` elapsed."""
    if index is None:
        return
    timeout = parse_wait(wait)
    index = min(index, ctx.cache.revision)
    subscription = ctx.cache.subscribe()
    try:
        if await _changed_since(ctx, prefix, index):
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                event = await asyncio.wait_for(subscription.next(), left)
            except TimeoutError:
                return
            if event is None or _selects(event.kv.key, prefix):
                return  # None: the feed broke (the cache re-listed): answer what is there
    finally:
        ctx.cache.unsubscribe(subscription)


def _answer(ctx: ServerContext, body: Any) -> JSONResponse:
    return JSONResponse(body, headers={INDEX_HEADER: str(ctx.cache.revision)})


_Index = Query(None, ge=0, include_in_schema=False)  # blocking: kept out of fuzzing
_Wait = Query(None, max_length=20, include_in_schema=False)


@router.get(
    "/catalog/services",
    summary="Every service with its VIPs, ports and ready/total endpoints",
    description="Sorted by stack and service." + _BLOCKING_DOC,
)
async def list_services(
    index: int | None = _Index, wait: str | None = _Wait, ctx: ServerContext = Depends(context)
) -> JSONResponse:
    await _block(ctx, objects.ENDPOINTS, index, wait)
    return _answer(ctx, [summary(ep) for ep, _ in _catalog(ctx, objects.ENDPOINTS)])


@router.get(
    "/catalog/services/{stack}",
    summary="The services of one stack",
    description="404 when the stack has no service in the catalog." + _BLOCKING_DOC,
)
async def list_stack_services(
    stack: str,
    index: int | None = _Index,
    wait: str | None = _Wait,
    ctx: ServerContext = Depends(context),
) -> JSONResponse:
    prefix = f"{objects.ENDPOINTS}{stack}/"
    await _block(ctx, prefix, index, wait)
    found = _catalog(ctx, prefix)
    if not found:
        raise _unknown(ctx, stack, None)
    return _answer(ctx, [summary(ep) for ep, _ in found])


@router.get(
    "/catalog/services/{stack}/{service}",
    summary="One service's VIPs, ports and endpoints (task, node, address, ports, ready)",
    description="`revision` is the mod_revision of the service's endpoints; `address` is the "
    "task's address on the service's first network." + _BLOCKING_DOC,
)
async def get_service(
    stack: str,
    service: str,
    ready: bool = Query(False, description="only ready endpoints (running and healthy)"),
    index: int | None = _Index,
    wait: str | None = _Wait,
    ctx: ServerContext = Depends(context),
) -> JSONResponse:
    key = objects.endpoints_key(stack, service)
    if ctx.cache.get(key) is None:
        raise _unknown(ctx, stack, service)
    await _block(ctx, key, index, wait)
    entry = ctx.cache.get(key)
    if entry is None or not isinstance(entry[0], Endpoints):
        raise _unknown(ctx, stack, service)  # removed while we waited
    return _answer(ctx, detail(entry[0], entry[1], ready))
