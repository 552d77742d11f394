"""Builders for services, tasks and nodes, and a tiny in-memory loop to apply actions."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from shoal.controllers.actions import (
    Action,
    CreateTask,
    DeleteService,
    DeleteTask,
    Emit,
    UpdateNode,
    UpdateTask,
)
from shoal.controllers.services import reconcile_service
from shoal.model.cluster import (
    Availability,
    Event,
    Node,
    NodeDescription,
    NodeSpec,
    NodeState,
    NodeStatus,
    Service,
    Task,
    TaskState,
    TaskStatus,
)
from shoal.model.compose_service import ServiceSpec

NOW = 1_000.0
SID = "svc1"


def service(
    deploy: dict[str, Any] | None = None,
    *,
    version: int = 1,
    removing: bool = False,
    sid: str = SID,
    **spec: Any,
) -> Service:
    raw: dict[str, Any] = {"image": "x", **spec}
    if deploy is not None:
        raw["deploy"] = deploy
    return Service(
        id=sid,
        stack="st",
        name="web",
        spec=ServiceSpec.model_validate(raw),
        version=version,
        removing=removing,
    )


def task(
    tid: str,
    slot: int | None = 1,
    *,
    state: TaskState = TaskState.RUNNING,
    desired: TaskState = TaskState.RUNNING,
    version: int = 1,
    node: str = "n1",
    attempt: int = 0,
    created: float = NOW - 100,
    not_before: float = 0.0,
    started: float | None = None,
    ended: float | None = None,
    exit_code: int | None = None,
    sid: str = SID,
) -> Task:
    if state in (TaskState.NEW, TaskState.PENDING) and slot is not None:
        node = ""
    return Task(
        id=tid,
        stack="st",
        service="web",
        service_id=sid,
        slot=slot,
        spec_version=version,
        spec=ServiceSpec.model_validate({"image": "x"}),
        node_id=node,
        desired_state=desired,
        status=TaskStatus(
            state=state,
            timestamp=ended if ended is not None else created,
            started_at=started,
            exit_code=exit_code,
        ),
        attempt=attempt,
        not_before=not_before,
        created_at=created,
    )


def node(
    nid: str,
    *,
    state: NodeState = NodeState.READY,
    availability: Availability = Availability.ACTIVE,
    heartbeat: float = NOW,
    labels: dict[str, str] | None = None,
    role: str = "worker",
) -> Node:
    return Node(
        id=nid,
        spec=NodeSpec(labels=labels or {}, availability=availability, role=role),
        description=NodeDescription(hostname=f"host-{nid}"),
        status=NodeStatus(state=state, heartbeat_at=heartbeat),
    )


class Ids:
    """Deterministic task ids: t-new-1, t-new-2, …"""

    def __init__(self) -> None:
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"t-new-{next(self._count)}"


def apply(store: dict[str, Task], actions: Iterable[Action]) -> list[Event]:
    """Apply task actions to an in-memory store; returns the emitted events."""
    events: list[Event] = []
    for action in actions:
        if isinstance(action, CreateTask):
            assert action.task.id not in store
            store[action.task.id] = action.task
        elif isinstance(action, UpdateTask):
            assert action.task.id in store
            store[action.task.id] = action.task
        elif isinstance(action, DeleteTask):
            del store[action.task_id]
        elif isinstance(action, Emit):
            events.append(action.event)
        else:
            assert isinstance(action, DeleteService | UpdateNode)
    return events


def store_of(*tasks: Task) -> dict[str, Task]:
    return {t.id: t for t in tasks}


def reconcile(
    svc: Service,
    store: dict[str, Task],
    nodes: list[Node],
    now: float = NOW,
    ids: Ids | None = None,
    **kw: Any,
) -> list[Action]:
    """One pass; multi-round tests share `ids` so new tasks never collide."""
    return reconcile_service(svc, list(store.values()), nodes, now, ids or Ids(), **kw)


def assert_idempotent(
    svc: Service, store: dict[str, Task], nodes: list[Node], now: float = NOW, **kw: Any
) -> list[Action]:
    """Same snapshot → same actions; the snapshot after applying them → no actions."""
    first = reconcile(svc, store, nodes, now, **kw)
    assert reconcile(svc, store, nodes, now, **kw) == first
    after = dict(store)
    apply(after, first)
    again = reconcile(svc, after, nodes, now, **kw)
    assert again == [], again
    return first


def active(store: dict[str, Task]) -> list[Task]:
    return sorted(
        (
            t
            for t in store.values()
            if t.desired_state == TaskState.RUNNING and not t.status.state.terminal
        ),
        key=lambda t: (t.slot or 0, t.node_id),
    )


def simulate_agents(store: dict[str, Task], nodes: list[Node], now: float) -> None:
    """Scheduler + agents in one step: start what may start, stop what was told to stop."""
    ready = [n.id for n in nodes if n.status.state == NodeState.READY]
    alive = set(ready)
    for t in list(store.values()):
        if t.status.state.terminal:
            continue
        if t.desired_state != TaskState.RUNNING:
            if t.node_id in alive or not t.node_id:
                store[t.id] = t.model_copy(
                    update={
                        "status": t.status.model_copy(
                            update={"state": TaskState.SHUTDOWN, "timestamp": now}
                        )
                    }
                )
            continue
        if t.status.state == TaskState.PENDING and t.not_before <= now and ready:
            target = t.node_id or ready[(t.slot or 0) % len(ready)]
            if target in alive:
                status = TaskStatus(state=TaskState.RUNNING, timestamp=now, started_at=now)
                store[t.id] = t.model_copy(update={"node_id": target, "status": status})


def set_state(
    store: dict[str, Task], tid: str, state: TaskState, now: float, exit_code: int | None = None
) -> None:
    t = store[tid]
    status = t.status.model_copy(update={"state": state, "timestamp": now, "exit_code": exit_code})
    store[tid] = t.model_copy(update={"status": status})


def summarize(actions: Iterable[Action]) -> list[str]:
    """Actions as short strings, so tables can state them."""
    out: list[str] = []
    for a in actions:
        if isinstance(a, CreateTask):
            where = a.task.slot if a.task.slot is not None else a.task.node_id
            out.append(f"create {where} v{a.task.spec_version} a{a.task.attempt}")
        elif isinstance(a, UpdateTask):
            t = a.task
            out.append(
                f"update {t.id} desired={t.desired_state.value} state={t.status.state.value}"
            )
        elif isinstance(a, DeleteTask):
            out.append(f"delete {a.task_id}")
        elif isinstance(a, DeleteService):
            out.append(f"delete-service {a.service_id}")
        elif isinstance(a, UpdateNode):
            out.append(f"node {a.node.id} {a.node.status.state.value}")
        else:
            out.append(f"emit {a.event.action} {a.event.id}")
    return out
