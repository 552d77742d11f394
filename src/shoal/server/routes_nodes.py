"""Nodes and the agent's side of the API: register, heartbeat, task status reports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from shoal.model.cluster import (
    Availability,
    Event,
    Node,
    NodeDescription,
    NodeSpec,
    NodeState,
    NodeStatus,
    Task,
    TaskState,
    TaskStatus,
)
from shoal.model.codec import encode
from shoal.model.errors import Conflict, Invalid, NotFound
from shoal.server import objects
from shoal.server.auth import context
from shoal.server.context import ServerContext
from shoal.store import Compare, PutOp

router = APIRouter(prefix="/v1")


class RegisterRequest(BaseModel):
    node_id: str | None = Field(default=None, max_length=64, pattern=r"^[a-z0-9-]+$")
    description: NodeDescription
    addr: str = ""


class HeartbeatRequest(BaseModel):
    addr: str = ""


class NodeUpdate(BaseModel):
    availability: Availability | None = None
    labels: dict[str, str | None] | None = Field(
        default=None, description="labels to set; a null value removes the label"
    )
    role: str | None = None


def _node(ctx: ServerContext, node_id: str, *, exact: bool = False) -> tuple[Node, int]:
    """A node by id; for people (not agents) also by unique id prefix or hostname."""
    entry = ctx.cache.get(objects.node_key(node_id))
    if entry is None and not exact:
        matches = [n for n in ctx.cache.nodes() if n.id.startswith(node_id)]
        matches += [n for n in ctx.cache.nodes() if n.description.hostname == node_id]
        if len({n.id for n in matches}) == 1:
            entry = ctx.cache.get(objects.node_key(matches[0].id))
    if entry is None:
        raise NotFound(f"no node {node_id!r}", hint="list nodes with `shoal nodes`")
    assert isinstance(entry[0], Node)
    return entry[0], entry[1]


async def _write_node(ctx: ServerContext, node: Node, rev: int, event: Event | None) -> None:
    key = objects.node_key(node.id)
    ops: list[Any] = [PutOp(key, encode(node))]
    if event is not None:
        ops.append(objects.event_op(event))
    await ctx.commit([Compare.mod_revision(key, "==", rev)], ops, f"node {node.id}")


@router.post("/nodes", response_model=Node, tags=["nodes"])
async def register_node(request: RegisterRequest, ctx: ServerContext = Depends(context)) -> Node:
    """Register (or re-register) the agent's node; idempotent for the same node id."""
    now = ctx.clock()
    node_id = request.node_id or ctx.new_id()
    status = NodeStatus(state=NodeState.READY, addr=request.addr, heartbeat_at=now)

    async def attempt() -> Node:
        entry = ctx.cache.get(objects.node_key(node_id))
        if entry is None:
            node = Node(id=node_id, description=request.description, status=status, created_at=now)
            rev = 0
        else:
            assert isinstance(entry[0], Node)
            node = entry[0].model_copy(
                update={"description": request.description, "status": status}
            )
            rev = entry[1]
        event = Event(
            time=now,
            type="node",
            action="register",
            id=node_id,
            message=f"{request.description.hostname} ready",
        )
        await _write_node(ctx, node, rev, event)
        return node

    return await ctx.retrying(attempt)


@router.post("/nodes/{node_id}/heartbeat", response_model=NodeStatus, tags=["nodes"])
async def heartbeat(
    node_id: str, request: HeartbeatRequest, ctx: ServerContext = Depends(context)
) -> NodeStatus:
    async def attempt() -> NodeStatus:
        node, rev = _node(ctx, node_id, exact=True)
        now = ctx.clock()
        event = None
        if node.status.state != NodeState.READY:
            event = Event(time=now, type="node", action="ready", id=node.id, message="heartbeat")
        status = NodeStatus(
            state=NodeState.READY, addr=request.addr or node.status.addr, heartbeat_at=now
        )
        await _write_node(ctx, node.model_copy(update={"status": status}), rev, event)
        return status

    return await ctx.retrying(attempt)


@router.get("/nodes", response_model=list[Node], tags=["nodes"])
async def list_nodes(ctx: ServerContext = Depends(context)) -> list[Node]:
    return ctx.cache.nodes()


@router.get("/nodes/{node_id}", response_model=Node, tags=["nodes"])
async def get_node(node_id: str, ctx: ServerContext = Depends(context)) -> Node:
    return _node(ctx, node_id)[0]


@router.patch("/nodes/{node_id}", response_model=Node, tags=["nodes"])
async def update_node(
    node_id: str, request: NodeUpdate, ctx: ServerContext = Depends(context)
) -> Node:
    """Change availability (active | pause | drain), labels or role."""
    node, rev = _node(ctx, node_id)
    labels = dict(node.spec.labels)
    for key, value in (request.labels or {}).items():
        if not key or len(key) > 253:
            raise Invalid(f"invalid label key {key!r}")
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    spec = NodeSpec(
        labels=labels,
        availability=request.availability or node.spec.availability,
        role=request.role or node.spec.role,
    )
    updated = node.model_copy(update={"spec": spec})
    event = Event(
        time=ctx.clock(),
        type="node",
        action="update",
        id=node.id,
        message=f"availability {spec.availability.value}",
    )
    await _write_node(ctx, updated, rev, event)
    return updated


class StatusReport(BaseModel):
    status: TaskStatus
    node_id: str = Field(min_length=1)


@router.put("/tasks/{task_id}/status", response_model=Task, tags=["tasks"])
async def report_status(
    task_id: str, report: StatusReport, ctx: ServerContext = Depends(context)
) -> Task:
    """The agent reports what its runtime observed for one of its tasks."""

    async def attempt() -> Task:
        task, rev = ctx.find_task(task_id)
        if task.node_id != report.node_id:
            raise Conflict(
                f"task {task_id} is assigned to node {task.node_id or '(none)'}, "
                f"not {report.node_id}"
            )
        if task.status.state.terminal and report.status.state != task.status.state:
            return task  # terminal is final: a late report must not resurrect the task
        updated = task.model_copy(update={"status": report.status, "updated_at": ctx.clock()})
        key = objects.task_key(task)
        ops: list[Any] = [PutOp(key, encode(updated))]
        if report.status.state != task.status.state and report.status.state in (
            TaskState.FAILED,
            TaskState.REJECTED,
        ):
            ops.append(
                objects.event_op(
                    Event(
                        time=ctx.clock(),
                        type="task",
                        action=report.status.state.value,
                        id=task.id,
                        stack=task.stack,
                        service=task.service,
                        message=report.status.error or report.status.message,
                        attributes={"exit_code": str(report.status.exit_code)},
                    )
                )
            )
        await ctx.commit([Compare.mod_revision(key, "==", rev)], ops, f"task {task_id}")
        return updated

    return await ctx.retrying(attempt, times=5)
