"""Restart policy: what to do when a slot's latest task has stopped while it should run.

The effective policy comes from `deploy.restart_policy` (each field wins when given), then the
Compose `restart:` key, then Swarm's defaults (condition any — on-failure for jobs —, delay 5s,
unlimited attempts, no window). Back-off doubles the delay for every consecutive quick failure,
capped; a task that ran for at least the window (or `reset_after`) resets it. The back-off state
is carried by the task itself (`not_before - created_at` is the delay it was given), so it
survives garbage collection of old tasks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from shoal.model.cluster import ServiceMode, Task, TaskState
from shoal.model.compose_service import ServiceSpec
from shoal.model.units import format_duration

Condition = Literal["none", "on-failure", "any"]
_CONDITIONS: dict[str, Condition] = {"none": "none", "on-failure": "on-failure", "any": "any"}
DEFAULT_DELAY = 5.0
DEFAULT_RESET_AFTER = 10.0
DEFAULT_MAX_DELAY = 300.0
JOB_MODES = frozenset({ServiceMode.REPLICATED_JOB, ServiceMode.GLOBAL_JOB})


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    condition: Condition
    delay: float  # seconds
    max_attempts: int  # 0 = unlimited
    window: float | None  # seconds


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    delay: float
    reason: str  # one line for the event


def _from_compose_restart(value: str | None) -> tuple[Condition | None, int | None]:
    """Compose `restart:` → (condition, max_attempts)."""
    if value is None:
        return None, None
    if value == "no":
        return "none", None
    if value in ("always", "unless-stopped"):
        return "any", None
    if value.startswith("on-failure"):
        _, _, count = value.partition(":")
        return "on-failure", int(count) if count.strip().isdigit() else None
    return None, None


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def effective_policy(spec: ServiceSpec, mode: ServiceMode) -> EffectivePolicy:
    policy = spec.deploy.restart_policy if spec.deploy else None
    compose_condition, compose_attempts = _from_compose_restart(spec.restart)
    condition: Condition = "on-failure" if mode in JOB_MODES else "any"
    given = _CONDITIONS.get(policy.condition or "") if policy else None
    if given is not None:
        condition = given
    elif compose_condition is not None:
        condition = compose_condition
    attempts = policy.max_attempts if policy and policy.max_attempts is not None else None
    delay = _seconds(policy.delay) if policy else None
    return EffectivePolicy(
        condition=condition,
        delay=DEFAULT_DELAY if delay is None else max(delay, 0.0),
        max_attempts=attempts if attempts is not None else (compose_attempts or 0),
        window=_seconds(policy.window) if policy else None,
    )


def failed(task: Task) -> bool:
    """Did the task end badly (anything but a clean exit)?"""
    status = task.status
    return status.state != TaskState.COMPLETE or status.exit_code not in (None, 0)


def ran_for(task: Task) -> float:
    started = task.status.started_at
    return 0.0 if started is None else max(task.status.timestamp - started, 0.0)


def backoff_delay(
    policy: EffectivePolicy, task: Task, *, reset_after: float, max_delay: float
) -> float:
    """`delay × 2^(consecutive quick failures − 1)`, capped; a long run resets it."""
    threshold = policy.window if policy.window else reset_after
    given = max(task.not_before - task.created_at, 0.0)
    if ran_for(task) >= threshold or given <= 0.0:
        return policy.delay
    return max(min(given * 2, max_delay), policy.delay)


def restarts_counted(
    policy: EffectivePolicy, task: Task, history: Iterable[Task], now: float
) -> int:
    """Restarts that count against max_attempts: all of them, or those within the window."""
    if not policy.window:
        return task.attempt
    since = now - policy.window
    return sum(1 for t in history if t.attempt > 0 and t.created_at > since)


def _outcome(task: Task) -> str:
    status = task.status
    if status.state == TaskState.COMPLETE and status.exit_code in (None, 0):
        return "completed"
    if status.exit_code is not None:
        return f"{status.state.value} with exit code {status.exit_code}"
    detail = status.error or status.message
    return f"{status.state.value}" + (f" ({detail})" if detail else "")


def decide_restart(
    policy: EffectivePolicy,
    task: Task,
    history: Iterable[Task],
    now: float,
    *,
    job: bool = False,
    reset_after: float = DEFAULT_RESET_AFTER,
    max_delay: float = DEFAULT_MAX_DELAY,
) -> RestartDecision:
    """Decide for a terminal task that should have been running; `history` is its slot's tasks."""
    outcome = f"task {task.name} {_outcome(task)}"
    bad = failed(task)
    if not bad and job:
        return RestartDecision(False, 0.0, f"{outcome}: job task done")
    if policy.condition == "none":
        return RestartDecision(False, 0.0, f"{outcome}: restart policy is none, not restarted")
    if policy.condition == "on-failure" and not bad:
        return RestartDecision(
            False, 0.0, f"{outcome}: restart policy is on-failure, not restarted"
        )
    counted = restarts_counted(policy, task, history, now)
    if policy.max_attempts and counted >= policy.max_attempts:
        scope = (
            f" within {format_duration(timedelta(seconds=policy.window))}" if policy.window else ""
        )
        return RestartDecision(
            False,
            0.0,
            f"{outcome}: max attempts ({policy.max_attempts}) reached{scope}, slot stays failed",
        )
    delay = backoff_delay(policy, task, reset_after=reset_after, max_delay=max_delay)
    shown = format_duration(timedelta(seconds=delay))
    return RestartDecision(
        True, delay, f"{outcome}: restarting in {shown} (attempt {task.attempt + 1})"
    )
