"""Tasks, events and watches (Server-Sent Events), and logs proxied from the task's agent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from shoal.model.cluster import Event, Task, TaskState
from shoal.model.codec import decode
from shoal.model.errors import NotFound, Unavailable
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext
from shoal.server.sse import frame, stream
from shoal.store import EventType

router = APIRouter(prefix="/v1")


def is_current(task: Task) -> bool:
    """Shown by `shoal ps` without --all: what runs or is meant to run."""
    return task.desired_state == TaskState.RUNNING or not task.status.state.terminal


@router.get("/tasks", response_model=list[Task], tags=["tasks"])
async def list_tasks(
    stack: str | None = None,
    service: str | None = None,
    node: str | None = None,
    all: bool = Query(default=False, description="include finished tasks (history)"),
    ctx: ServerContext = Depends(context),
) -> list[Task]:
    tasks = ctx.cache.tasks(stack, service if stack else None)
    if service and not stack:
        tasks = [t for t in tasks if t.service == service]
    if node:
        tasks = [t for t in tasks if t.node_id == node]
    if not all:
        tasks = [t for t in tasks if is_current(t)]
    return sorted(tasks, key=lambda t: (t.stack, t.service, t.slot or 0, t.node_id, t.created_at))


@router.get("/tasks/{task_id}", response_model=Task, tags=["tasks"])
async def get_task(task_id: str, ctx: ServerContext = Depends(context)) -> Task:
    return ctx.find_task(task_id)[0]


@router.get("/events", response_model=list[Event], tags=["events"])
async def list_events(
    since: int = Query(default=0, ge=0, description="only events after this revision"),
    limit: int = Query(default=1000, ge=1, le=100_000),
    ctx: ServerContext = Depends(context),
) -> list[Event]:
    kvs, _ = await ctx.store.range(objects.EVENTS)
    events = [objects.decode_event(kv) for kv in kvs if kv.create_revision > since]
    return events[-limit:]


@router.get("/events/watch", tags=["events"])
async def watch_events(
    since: int | None = Query(default=None, ge=0),
    ctx: ServerContext = Depends(context),
) -> StreamingResponse:
    """SSE: each event as `event: event` with the Event as data and its revision as id."""
    # Fed from the cache's one store watch (memory fan-out), after a replay from the store
    # of what the caller missed: subscribing first means nothing falls between the two.
    subscription = ctx.cache.subscribe()
    last = since if since is not None else ctx.cache.revision

    async def source() -> AsyncIterator[bytes]:
        nonlocal last
        try:
            if since is not None and since < ctx.cache.revision:
                kvs, last = await ctx.store.range(objects.EVENTS)  # replayed up to `last`
                for kv in kvs:
                    if kv.create_revision > since:
                        event = objects.decode_event(kv)
                        yield frame("event", json.loads(event.model_dump_json()), event.revision)
            while True:
                change = await subscription.next()
                if change is None:
                    yield frame("error", {"message": "watch fell behind; resume with since"})
                    return
                if change.revision <= last or change.type is not EventType.PUT:
                    continue
                if change.kv.key.startswith(objects.EVENTS):
                    event = objects.decode_event(change.kv)
                    yield frame("event", json.loads(event.model_dump_json()), event.revision)
        finally:
            ctx.cache.unsubscribe(subscription)

    return stream(source())


@router.get("/watch/tasks", tags=["tasks"])
async def watch_tasks(
    node: str = Query(min_length=1, description="only tasks assigned to this node"),
    ctx: ServerContext = Depends(context),
) -> StreamingResponse:
    """SSE for agents: `snapshot` (every task of the node, with the revision), then `put` and
    `delete` for each change of one of them (a task moved away from the node is a delete)."""

    revision = ctx.cache.revision
    snapshot = [t for t in ctx.cache.tasks() if t.node_id == node]

    async def source() -> AsyncIterator[bytes]:
        yield frame(
            "snapshot",
            {"revision": revision, "tasks": [json.loads(t.model_dump_json()) for t in snapshot]},
            revision,
        )
        async for change in ctx.store.watch(objects.TASKS, start_revision=revision + 1):
            task = decode(Task, change.kv.value) if change.type is EventType.PUT else None
            prev = decode(Task, change.prev_kv.value) if change.prev_kv is not None else None
            if task is not None and task.node_id == node:
                yield frame("put", json.loads(task.model_dump_json()), change.revision)
            elif prev is not None and prev.node_id == node:
                yield frame("delete", {"id": prev.id}, change.revision)

    return stream(source())


@router.get("/tasks/{task_id}/logs", tags=["tasks"])
async def task_logs(
    task_id: str,
    follow: bool = False,
    tail: int | None = Query(default=None, ge=0),
    ctx: ServerContext = Depends(context),
) -> StreamingResponse:
    """The task's log lines (JSON lines: time, stream, text), read from its node's agent."""
    task, _ = ctx.find_task(task_id)
    url = ctx.agent_url(task, "logs") + "/logs"
    params: dict[str, Any] = {"follow": str(follow).lower()}
    if tail is not None:
        params["tail"] = tail
    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
    try:
        request = client.build_request(
            "GET", url, params=params, headers={"Authorization": f"Bearer {ctx.token}"}
        )
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        raise Unavailable(f"agent of node {task.node_id} unreachable: {exc}") from None
    if response.status_code == 404:
        await response.aclose()
        await client.aclose()
        raise NotFound(f"node {task.node_id} has no container for task {task.id} (yet)")

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()
            await client.aclose()

    return StreamingResponse(relay(), media_type="application/x-ndjson")
