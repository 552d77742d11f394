"""An in-process server for tests: MemoryStore + ClusterCache + the ASGI app, with a fake clock.

The cache follows the store from a background task, exactly as `shoal.server.main` runs it, so
`ctx.commit` (which waits for the cache to see its write) works. Everything is closed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from shoal.model.cluster import Node, NodeDescription, NodeState, NodeStatus
from shoal.model.codec import encode
from shoal.model.compose import ComposeProject
from shoal.server import deploy, objects
from shoal.server.app import create_app
from shoal.server.cache import ClusterCache
from shoal.server.context import ServerContext
from shoal.server.loops import reconcile_pass, schedule_pass
from shoal.store import Compare, PutOp
from shoal.store.memory import MemoryStore

TOKEN = "test-token"
START = 1_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Ids:
    """Deterministic ids that are never a prefix of one another (find_task matches prefixes)."""

    def __init__(self, prefix: str = "id") -> None:
        self.prefix = prefix
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self._count):05d}"


@dataclass
class Server:
    ctx: ServerContext
    app: FastAPI
    http: httpx.AsyncClient  # authenticated
    clock: FakeClock

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """Another client over the same app (close it yourself)."""
        return httpx.AsyncClient(
            base_url="http://test", transport=httpx.ASGITransport(app=self.app), headers=headers
        )


@contextlib.asynccontextmanager
async def running_server(data_dir: Path, clock: FakeClock | None = None) -> AsyncIterator[Server]:
    clock = clock or FakeClock()
    async with MemoryStore.open() as store:
        cache = ClusterCache(store)
        await cache.load()
        ctx = ServerContext(
            store=store, cache=cache, token=TOKEN, data_dir=data_dir, clock=clock, new_id=Ids()
        )
        follower = asyncio.create_task(cache.run())
        app = create_app(ctx)
        http = httpx.AsyncClient(
            base_url="http://test",
            transport=httpx.ASGITransport(app=app),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        try:
            yield Server(ctx, app, http, clock)
        finally:
            await http.aclose()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


def project(services: dict[str, Any], **rest: Any) -> ComposeProject:
    return ComposeProject.model_validate({"services": services, **rest})


def web(replicas: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "image": "busybox",
        "command": ["sleep", "infinity"],
        "deploy": {"replicas": replicas},
        **spec,
    }


async def put_node(ctx: ServerContext, node_id: str = "node-1") -> Node:
    """A READY node that heartbeated just now, written straight to the store."""
    node = Node(
        id=node_id,
        description=NodeDescription(hostname=f"host-{node_id}"),
        status=NodeStatus(state=NodeState.READY, heartbeat_at=ctx.clock()),
        created_at=ctx.clock(),
    )
    key = objects.node_key(node_id)
    await ctx.commit([Compare.missing(key)], [PutOp(key, encode(node))], f"node {node_id}")
    return node


async def deploy_project(ctx: ServerContext, stack: str, proj: ComposeProject) -> int:
    """What POST /v1/stacks/<stack>/deploy does, without HTTP."""
    existing = {s.name: (s, ctx.cache.revision_of(s)) for s in ctx.cache.services(stack)}
    the_plan = deploy.plan(stack, proj, [s for s, _ in existing.values()])
    entry = ctx.cache.get(objects.stack_key(stack))
    current = (entry[0], entry[1]) if entry is not None else None
    commit = deploy.build_commit(the_plan, proj, current, existing, ctx.clock(), ctx.new_id)  # type: ignore[arg-type]
    return await ctx.commit(commit.compares, commit.ops, f"stack {stack}")


async def settle(ctx: ServerContext, rounds: int = 20) -> int:
    """Run reconcile + schedule passes until one writes nothing; how many rounds wrote."""
    for round_no in range(rounds):
        written = await reconcile_pass(ctx) + await schedule_pass(ctx)
        if written == 0:
            return round_no
    raise AssertionError(f"the control loops did not settle in {rounds} rounds")
