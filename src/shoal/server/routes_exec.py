"""Exec into a task and read its resource usage: proxied to the agent of the task's node.

`POST /v1/tasks/{id}/exec` runs one command in the task's container and answers its exit code
and captured output; `GET /v1/tasks/{id}/exec` upgraded to a WebSocket is the interactive
`shoal exec -i/-t`: the server opens the same WebSocket to the task's agent (query passed on,
protocol in `shoal.agent.attach`) and relays frames both ways, one at a time, so a slow end
stalls the other instead of filling the server's memory. `GET /v1/tasks/{id}/stats` and
`GET /v1/stats?stack=…` answer the cgroup counters (or /proc ones for host processes) with the
agent's clock reading, so a caller computes CPU % from two samples.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import websockets
from fastapi import APIRouter, Depends, Query, WebSocket
from pydantic import BaseModel, ConfigDict, Field
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

from shoal.model.cluster import Task, TaskState
from shoal.model.errors import Conflict, Invalid, NotFound, ShoalError, Unauthorized, Unavailable
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext

router = APIRouter(prefix="/v1")

STATS_TIMEOUT = 3.0
"""Seconds one agent gets to answer a stats request of `GET /v1/stats`."""
STATS_CONCURRENCY = 32
AGENT_CONNECT_TIMEOUT = 10.0
"""Seconds an agent gets to accept an interactive exec (its command started by then)."""
MAX_FRAME = 1024 * 1024
RELAY_QUEUE = 4
"""Frames the connection to the agent reads ahead of the client: the bound of what the server
holds per session (with MAX_FRAME)."""

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
        raise _agent_error(task, response.status_code, response.content)
    return response.json()


def _agent_error(task: Task, status: int, body: bytes) -> ShoalError:
    """An agent's error answer as the same ShoalError."""
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError):
        error = {}
    message = error.get("message") or f"HTTP {status}"
    if status == 404:
        message = f"node {task.node_id} has no container for task {task.id} (yet)"
    kind = _AGENT_ERRORS.get(status, Unavailable)
    return kind(message, hint=error.get("hint"))


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


def _authorized(websocket: WebSocket) -> ServerContext:
    """`auth.context` for a WebSocket (a bearer header, or `?token=` for browsers)."""
    ctx: ServerContext = websocket.app.state.ctx
    header = websocket.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else ""
    given = given or websocket.query_params.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), ctx.token.encode()):
        raise Unauthorized(
            "missing or wrong token",
            hint="set SHOAL_TOKEN (the admin token is in <data-dir>/token on the server)",
        )
    return ctx


async def _open_agent(ctx: ServerContext, task: Task, query: str) -> ClientConnection:
    url = ctx.agent_url(task, "exec").replace("http://", "ws://", 1) + "/exec?" + query
    try:
        return await connect(
            url,
            additional_headers={"Authorization": f"Bearer {ctx.token}"},
            open_timeout=AGENT_CONNECT_TIMEOUT,
            compression=None,
            max_size=MAX_FRAME,
            max_queue=RELAY_QUEUE,
        )
    except websockets.InvalidStatus as exc:
        raise _agent_error(
            task, exc.response.status_code, bytes(exc.response.body or b"")
        ) from None
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        raise Unavailable(
            f"agent of node {task.node_id} unreachable: {exc or type(exc).__name__}",
            hint=f"see the node's state with `shoal nodes`; the task is {task.name}",
        ) from None


async def _to_agent(client: WebSocket, agent: ClientConnection) -> None:
    """The client's frames to the agent; the client leaving closes the agent's side (which
    kills the command)."""
    while True:
        message = await client.receive()
        if message["type"] == "websocket.disconnect":
            await agent.close()
            return
        if message.get("bytes") is not None:
            await agent.send(message["bytes"])
        elif message.get("text") is not None:
            await agent.send(message["text"])


async def _to_client(client: WebSocket, agent: ClientConnection, task: Task) -> None:
    """The agent's frames to the client, then its close; a lost agent is said as an error."""
    try:
        async for frame in agent:
            if isinstance(frame, bytes):
                await client.send_bytes(frame)
            else:
                await client.send_text(frame)
    except websockets.ConnectionClosedError as exc:
        error = {
            "error": f"lost the agent of node {task.node_id} during the exec: {exc}",
            "kind": "Unavailable",
            "hint": "see the node's state with `shoal nodes`",
        }
        await client.send_text(json.dumps(error))
        await client.close(1011)
        return
    await client.close()


@router.websocket("/tasks/{task_id}/exec")
async def task_exec_session(websocket: WebSocket, task_id: str) -> None:
    """Interactive exec (WebSocket): `?cmd=…&cmd=…&tty=true&stdin=true&cols=80&rows=24`, then
    stdin/output as binary frames and JSON control frames, as `shoal.agent.attach` says."""
    ctx = _authorized(websocket)
    task, _ = ctx.find_task(task_id)
    _running(task, "exec into it")
    query = urlencode([(k, v) for k, v in websocket.query_params.multi_items() if k != "token"])
    async with await _open_agent(ctx, task, query) as agent:
        await websocket.accept()
        relays = [_to_agent(websocket, agent), _to_client(websocket, agent, task)]
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(r) for r in relays]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in tasks:
                    t.cancel()
        except* (WebSocketDisconnect, websockets.ConnectionClosed):
            pass  # one end left while the other was written to: both are closing
