"""Removing a service: stop every task, then delete the records and the service.

Tasks get desired state REMOVE (stop, then the record goes); ones never handed to an agent are
stopped on the spot. Nothing is deleted while any task may still be running, so a container is
never left behind without a record that tells its agent to stop it.
"""

from __future__ import annotations

from shoal.controllers.actions import Action
from shoal.controllers.plan import Plan
from shoal.model.cluster import Service, Task, TaskState


def remove_service(plan: Plan, service: Service) -> None:
    for task in plan.of_service(service.id):
        if not task.status.state.terminal:
            plan.stop(task, TaskState.REMOVE)
    tasks = plan.of_service(service.id)
    if any(not t.status.state.terminal for t in tasks):
        return
    for task in tasks:
        plan.delete(task.id)
    plan.delete_service(service.id)
    plan.emit(
        "service", "remove", service.id, f"service {service.full_name} removed", service=service
    )


def reconcile_removal(service: Service, tasks: list[Task], now: float) -> list[Action]:
    """Actions for a service marked `removing`; `tasks` are its task records.

    `services.reconcile_service` calls this after orphaning tasks on lost nodes, so a dead
    node cannot hold a removal up forever.
    """
    plan = Plan((t for t in tasks if t.service_id == service.id), now)
    remove_service(plan, service)
    return plan.actions
