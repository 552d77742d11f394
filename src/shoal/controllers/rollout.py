"""Rolling replacement of tasks whose spec is older than their service's.

`select_updates` is the seam where update monitoring, `failure_action` and rollback will plug
in: it alone decides which stale slots to replace now. Today it honours `parallelism` (0 = all
at once) and `delay` (no new batch before the newest updated task has run that long); `order`
is applied by the caller (stop-first: stop the old task, the slot is refilled once it is gone;
start-first: start the new task, the old one is stopped once the new one runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shoal.controllers.updates import config_of
from shoal.model.cluster import Service, Task, TaskState

Order = Literal["stop-first", "start-first"]


@dataclass(frozen=True, slots=True)
class UpdatePolicy:
    parallelism: int  # 0 = unlimited
    delay: float  # seconds between batches
    order: Order


def update_policy(service: Service, *, job: bool = False) -> UpdatePolicy:
    """`update_config`, or `rollback_config` while a rollback rolls."""
    if job:
        # A new job version is a new run: every task of the old one is replaced at once.
        return UpdatePolicy(parallelism=0, delay=0.0, order="stop-first")
    config = config_of(service)
    return UpdatePolicy(
        parallelism=1 if config.parallelism is None else config.parallelism,
        delay=config.delay.total_seconds() if config.delay else 0.0,
        order=config.order or "stop-first",
    )


def select_updates(
    stale: Sequence[Task],
    in_flight: int,
    policy: UpdatePolicy,
    last_started: float | None,
    now: float,
) -> list[Task]:
    """Which stale tasks (one per slot) to replace in this pass.

    `in_flight` counts slots whose replacement has begun but is not yet running;
    `last_started` is when the newest task of the current version started.
    """
    if not stale:
        return []
    if policy.delay and last_started is not None and now < last_started + policy.delay:
        return []
    budget = len(stale) if policy.parallelism == 0 else policy.parallelism - in_flight
    # Tasks that do not serve anyway (failed, still pending) go first: replacing them costs
    # no capacity.
    ordered = sorted(
        stale, key=lambda t: (t.status.state == TaskState.RUNNING, t.slot or 0, t.node_id)
    )
    return ordered[: max(budget, 0)]
