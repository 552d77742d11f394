"""The endpoints controller: a service's discovery record from its tasks (pure).

Agents program VIPs, published ports and DNS from these records; the catalog serves them. A task
is `ready` (served) when it is desired and running and its health check, if any, passed; tasks
not ready are still listed (they ask DNS questions and need their own addresses known).
"""

from __future__ import annotations

from shoal.model.cluster import Service, Task, TaskState
from shoal.model.network import Endpoints, EndpointTask
from shoal.network.deployment import endpoint_mode


def is_ready(task: Task) -> bool:
    return (
        task.desired_state == TaskState.RUNNING
        and task.status.state == TaskState.RUNNING
        and task.status.health in ("", "healthy")
    )


def _target_ports(service: Service) -> list[int]:
    ports = {p.target for p in service.ports}
    for raw in service.spec.expose or []:
        first = str(raw).split("/")[0].split("-")[0]
        if first.isdigit():
            ports.add(int(first))
    return sorted(ports)


def endpoints_for(service: Service, tasks: list[Task], now: float) -> Endpoints:
    listed = []
    for task in sorted(tasks, key=lambda t: (t.slot if t.slot is not None else -1, t.id)):
        if task.status.state.terminal or (not task.networks and not task.node_id):
            continue
        listed.append(
            EndpointTask(
                id=task.id,
                node_id=task.node_id,
                slot=task.slot,
                addresses={a.network: a.address for a in task.networks},
                aliases={a.network: list(a.aliases) for a in task.networks if a.aliases},
                hostname=task.spec.hostname or "",
                ready=is_ready(task),
            )
        )
    return Endpoints(
        stack=service.stack,
        service=service.name,
        mode=endpoint_mode(service.spec),
        vips=dict(service.vips),
        ports=list(service.ports),
        target_ports=_target_ports(service),
        tasks=listed,
        updated_at=now,
    )


def changed(old: Endpoints | None, new: Endpoints) -> bool:
    """Whether `new` differs from `old` in anything but its timestamp."""
    if old is None:
        return True
    return old.model_copy(update={"updated_at": 0.0}) != new.model_copy(update={"updated_at": 0.0})
