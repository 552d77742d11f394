"""Networks and endpoints: `shoal network ls | inspect`, and the agents' network watch.

`GET /v1/watch/network` is what every agent follows to plumb its node: a `snapshot` of every
network and endpoints record, then `put` / `delete` frames as they change (from the cache's
in-memory fan-out, so a hundred agents cost one store watch).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from shoal.model.codec import decode
from shoal.model.errors import NotFound
from shoal.model.network import Endpoints, Network
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext
from shoal.server.sse import frame, stream
from shoal.store import EventType

router = APIRouter(prefix="/v1")


def _network_view(ctx: ServerContext, network: Network) -> dict[str, Any]:
    tasks = [t for t in ctx.cache.tasks() if any(a.network == network.name for a in t.networks)]
    live = [t for t in tasks if not t.status.state.terminal]
    services = sorted(
        f"{s.stack}/{s.name}" for s in ctx.cache.services() if network.name in s.vips
    ) or sorted({f"{t.stack}/{t.service}" for t in live})
    return {**json.loads(network.model_dump_json()), "services": services, "tasks": len(live)}


@router.get("/networks", tags=["networks"])
async def list_networks(ctx: ServerContext = Depends(context)) -> list[dict[str, Any]]:
    """Every network with the services on it and its live task count."""
    return [_network_view(ctx, n) for n in ctx.cache.networks()]


@router.get("/networks/{name}", tags=["networks"])
async def get_network(name: str, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """One network, with every live task's address on it."""
    entry = ctx.cache.get(objects.network_key(name))
    if entry is None or not isinstance(entry[0], Network):
        known = ", ".join(n.name for n in ctx.cache.networks()) or "none"
        raise NotFound(f"network {name} not found", hint=f"networks: {known}")
    view = _network_view(ctx, entry[0])
    view["endpoints"] = [
        {"task": t.id, "name": t.name, "address": a.address, "aliases": a.aliases}
        for t in ctx.cache.tasks()
        if not t.status.state.terminal
        for a in t.networks
        if a.network == name
    ]
    return view


_WATCHED = (objects.NETWORKS, objects.ENDPOINTS)


@router.get("/watch/network", tags=["networks"])
async def watch_network(ctx: ServerContext = Depends(context)) -> StreamingResponse:
    """SSE for agents: `snapshot` {revision, networks, endpoints}, then `put` {kind, object}
    and `delete` {kind, key} for every change of a network or an endpoints record."""
    subscription = ctx.cache.subscribe()
    revision = ctx.cache.revision
    networks = ctx.cache.networks()
    endpoints = ctx.cache.endpoints()

    async def source() -> AsyncIterator[bytes]:
        try:
            yield frame(
                "snapshot",
                {
                    "revision": revision,
                    "networks": [json.loads(n.model_dump_json()) for n in networks],
                    "endpoints": [json.loads(e.model_dump_json()) for e in endpoints],
                },
                revision,
            )
            while True:
                change = await subscription.next()
                if change is None:
                    return  # fell behind: the agent reconnects and gets a new snapshot
                key = change.kv.key
                if change.revision <= revision or not key.startswith(_WATCHED):
                    continue
                kind = "network" if key.startswith(objects.NETWORKS) else "endpoints"
                if change.type is EventType.DELETE:
                    yield frame("delete", {"kind": kind, "key": key}, change.revision)
                    continue
                cls: type[Network] | type[Endpoints] = Network if kind == "network" else Endpoints
                obj = decode(cls, change.kv.value)
                body = {"kind": kind, "key": key, "object": json.loads(obj.model_dump_json())}
                yield frame("put", body, change.revision)
        finally:
            ctx.cache.unsubscribe(subscription)

    return stream(source())
