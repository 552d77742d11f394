"""Exec into a task and read its resource usage: proxied to the agent of the task's node.

`POST /v1/tasks/{id}/exec` runs one command in the task's container and answers its exit code
and captured output; `GET /v1/tasks/{id}/stats` and `GET /v1/stats?stack=…` answer the cgroup
counters (or /proc ones for host processes) with the agent's clock reading, so a caller computes
CPU % from two samples.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from shoal.model.cluster import Task, TaskState
from shoal.model.errors import Conflict, Invalid, NotFound, ShoalError, Unavailable
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext

router = APIRouter(prefix="/v1")

STATS_TIMEOUT = 3.0
"""Seconds one agent gets to answer a stats request of `GET /v1/stats`."""
STATS_CONCURRENCY = 32

_AGENT_ERRORS: dict[int, type[ShoalError]] = {404: NotFound, 409: Conflict, 400: Invalid}


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    argv: list[str] = Field(min_length=1, description="the command and its arguments")


class ExecResponse(BaseModel):
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False


async def agent_call(
    ctx: ServerContext,
    client: httpx.AsyncClient,
    task: Task,
    method: str,
    url: str,
    body: Any = None,
) -> Any:
    """One request to an agent; its errors come back as the same ShoalErrors."""
    try:
        response = await client.request(
            method, url, json=body, headers={"Authorization": f"Bearer {ctx.token}"}
        )
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"agent of node {task.node_id} unreachable: {exc or type(exc).__name__}"
        ) from None
    if response.status_code >= 400:
        try:
            error = response.json().get("error", {})
        except (ValueError, AttributeError):
            error = {}
        message = error.get("message") or f"HTTP {response.status_code}"
        if response.status_code == 404:
            message = f"node {task.node_id} has no container for task {task.id} (yet)"
        kind = _AGENT_ERRORS.get(response.status_code, Unavailable)
        raise kind(message, hint=error.get("hint"))
    return response.json()


def _running(task: Task, what: str) -> None:
    if task.status.state != TaskState.RUNNING:
        raise Conflict(
            f"task {task.name} ({task.id[:12]}) is {task.status.state.value}, not running: "
            f"cannot {what}",
            hint=f"pick a running task with `shoal ps {task.stack}`",
        )


def _describe(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "name": task.name,
        "stack": task.stack,
        "service": task.service,
        "node_id": task.node_id,
    }


@router.post("/tasks/{task_id}/exec", response_model=ExecResponse, tags=["tasks"])
async def task_exec(
    task_id: str, body: ExecRequest, ctx: ServerContext = Depends(context)
) -> ExecResponse:
    """Run a command in the task's container (no terminal); its output is captured, up to
    1 MiB per stream. Waits for the command however long it runs."""
    task, _ = ctx.find_task(task_id)
    _running(task, "exec into it")
    url = ctx.agent_url(task, "exec") + "/exec"
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
        data = await agent_call(ctx, client, task, "POST", url, body.model_dump())
    return ExecResponse.model_validate(data)


@router.get("/tasks/{task_id}/stats", tags=["tasks"])
async def task_stats(task_id: str, ctx: ServerContext = Depends(context)) -> dict[str, Any]:
    """CPU (ns used so far), memory and pids usage and limits, OOM kills, and the agent's
    clock `time`, of one running task."""
    task, _ = ctx.find_task(task_id)
    _running(task, "read its stats")
    url = ctx.agent_url(task, "stats") + "/stats"
    async with httpx.AsyncClient(timeout=STATS_TIMEOUT) as client:
        data = await agent_call(ctx, client, task, "GET", url)
    return {**_describe(task), **data}


@router.get("/stats", tags=["tasks"])
async def stats(
    stack: str | None = Query(default=None, description="only this stack's tasks"),
    ctx: ServerContext = Depends(context),
) -> list[dict[str, Any]]:
    """Stats of every running task (of `stack`), asked of their agents at once; a task whose
    agent did not answer in time carries `error` instead of numbers."""
    if stack and ctx.cache.get(objects.stack_key(stack)) is None:
        raise NotFound(f"no stack {stack!r}", hint="list stacks with `shoal ls`")
    tasks = [t for t in ctx.cache.tasks(stack) if t.status.state == TaskState.RUNNING]
    tasks.sort(key=lambda t: (t.stack, t.service, t.slot or 0, t.node_id))
    limit = asyncio.Semaphore(STATS_CONCURRENCY)

    async def one(client: httpx.AsyncClient, task: Task) -> dict[str, Any]:
        try:
            async with limit:
                data = await agent_call(
                    ctx, client, task, "GET", ctx.agent_url(task, "stats") + "/stats"
                )
        except ShoalError as exc:
            return {**_describe(task), "error": exc.message}
        return {**_describe(task), **data}

    async with httpx.AsyncClient(timeout=STATS_TIMEOUT) as client:
        return list(await asyncio.gather(*(one(client, t) for t in tasks)))
