"""Builders of nodes, specs and tasks for scheduler tests (models constructed directly)."""

from __future__ import annotations

from typing import Any

from shoal.model.cluster import (
    Availability,
    Node,
    NodeDescription,
    NodeResources,
    NodeSpec,
    NodeState,
    NodeStatus,
    Task,
    TaskState,
    TaskStatus,
)
from shoal.model.compose_service import ServiceSpec
from shoal.scheduler import Snapshot

GIB = 1 << 30
MIB = 1 << 20
CPU = 1_000_000_000


def node(
    node_id: str,
    *,
    cpus: float = 4,
    memory: int = 8 * GIB,
    labels: dict[str, str] | None = None,
    engine_labels: dict[str, str] | None = None,
    state: NodeState = NodeState.READY,
    availability: Availability = Availability.ACTIVE,
    os: str = "linux",
    arch: str = "x86_64",
    role: str = "worker",
    runtimes: tuple[str, ...] = ("runc",),
) -> Node:
    return Node(
        id=node_id,
        spec=NodeSpec(labels=labels or {}, availability=availability, role=role),
        description=NodeDescription(
            hostname=f"host-{node_id}",
            os=os,
            arch=arch,
            resources=NodeResources(nano_cpus=round(cpus * CPU), memory_bytes=memory),
            runtimes=list(runtimes),
            engine_labels=engine_labels or {},
        ),
        status=NodeStatus(state=state),
    )


def spec(
    *,
    constraints: list[str] | None = None,
    spread: list[str] | None = None,
    max_per_node: int | None = None,
    cpus: float | None = None,
    memory: str | int | None = None,
    platform: str | None = None,
    runtime: str | None = None,
    mode: str | None = None,
    **extra: Any,
) -> ServiceSpec:
    placement: dict[str, Any] = {}
    if constraints is not None:
        placement["constraints"] = constraints
    if spread is not None:
        placement["preferences"] = [{"spread": s} for s in spread]
    if max_per_node is not None:
        placement["max_replicas_per_node"] = max_per_node
    deploy: dict[str, Any] = {"placement": placement}
    if mode is not None:
        deploy["mode"] = mode
    reservations: dict[str, Any] = {}
    if cpus is not None:
        reservations["cpus"] = cpus
    if memory is not None:
        reservations["memory"] = memory
    if reservations:
        deploy["resources"] = {"reservations": reservations}
    raw: dict[str, Any] = {"image": "example/app", "deploy": deploy, **extra}
    if platform is not None:
        raw["platform"] = platform
    if runtime is not None:
        raw["x-shoal"] = {"runtime": runtime}
    return ServiceSpec.model_validate(raw)


def task(
    task_id: str,
    service_spec: ServiceSpec,
    *,
    service: str = "web",
    slot: int | None = 1,
    node_id: str = "",
    state: TaskState = TaskState.PENDING,
    not_before: float = 0.0,
    version: int = 1,
) -> Task:
    return Task(
        id=task_id,
        stack="s",
        service=service,
        service_id=f"id-{service}",
        slot=slot,
        spec_version=version,
        spec=service_spec,
        node_id=node_id,
        status=TaskStatus(state=state),
        not_before=not_before,
    )


def replicas(service_spec: ServiceSpec, n: int, service: str = "web") -> list[Task]:
    return [task(f"{service}.{i}", service_spec, service=service, slot=i) for i in range(1, n + 1)]


def snap(
    nodes: list[Node], pending: list[Task], running: list[Task] | None = None, now: float = 0.0
) -> Snapshot:
    return Snapshot(nodes=nodes, tasks=[*(running or []), *pending], pending=pending, now=now)
