"""What a reconcile function asks the loop to do; the loop applies them in order.

Every write is compare-and-swap against the revision the snapshot was read at: on a conflict
the loop re-reads and calls the reconcile function again, so actions carry whole objects
(never deltas) and every reconcile function is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

from shoal.model.cluster import Event, Node, Task


@dataclass(frozen=True, slots=True)
class CreateTask:
    task: Task


@dataclass(frozen=True, slots=True)
class UpdateTask:
    """Replace the task record with `task` (the full new record)."""

    task: Task


@dataclass(frozen=True, slots=True)
class DeleteTask:
    task_id: str


@dataclass(frozen=True, slots=True)
class DeleteService:
    service_id: str


@dataclass(frozen=True, slots=True)
class UpdateNode:
    node: Node


@dataclass(frozen=True, slots=True)
class Emit:
    """Append an event: a decision a user should be able to read back (`shoal events`)."""

    event: Event


Action = CreateTask | UpdateTask | DeleteTask | DeleteService | UpdateNode | Emit
